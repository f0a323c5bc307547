//! Presence: which devices went offline or came back since the last look, each change reported
//! once as `device.online` / `device.offline` (`devices.reported_online`). Whether a device is
//! online is `offline_at` against the clock, which every Inform moves: the Inform itself pays
//! nothing more for presence.

use anyhow::{Context, Result};
use sea_orm::{ConnectionTrait, TransactionTrait, Value};

use super::super::events::EventType;
use super::super::{Store, statement};

/// Devices changed per statement: a sweep after a long outage works through them in bounded
/// transactions.
const BATCH: i64 = 1_000;

/// Flips the reported presence of devices whose presence changed by `now` and records an event
/// for each, in one transaction per batch; how many went offline and came online. `min_grace_ms`
/// is the least grace any Inform gives (`OfflineGrace::min_ms`): a device going offline informed
/// at least that long ago, which narrows the walk to `last_inform_at`'s index (`offline_at` has
/// no index of online devices: every Inform moves it). Replicas may sweep at once: a row another
/// replica flipped first no longer matches, so no change is reported twice.
pub async fn sweep(store: &Store, now: i64, min_grace_ms: i64) -> Result<(u64, u64)> {
    let mut offline = 0;
    let mut online = 0;
    loop {
        let (went, came) = sweep_batch(store, now, min_grace_ms).await?;
        offline += went;
        online += came;
        if went < BATCH as u64 && came < BATCH as u64 {
            return Ok((offline, online));
        }
    }
}

async fn sweep_batch(store: &Store, now: i64, min_grace_ms: i64) -> Result<(u64, u64)> {
    let backend = store.backend();
    let mut counts = [0u64; 2];
    let informed_before = now - min_grace_ms;
    for (i, (to_online, condition, condition_args, kind)) in [
        (
            false,
            "reported_online = TRUE AND last_inform_at <= ? AND offline_at <= ?",
            vec![Value::from(informed_before), now.into()],
            EventType::DeviceOffline,
        ),
        // The partial index of the devices reported offline (m0014) has this very condition.
        (true, "reported_online = FALSE AND offline_at > ?", vec![Value::from(now)], EventType::DeviceOnline),
    ]
    .into_iter()
    .enumerate()
    {
        // Found before SQLite's writer is taken: the walk towards offline reads the rows of
        // every online device that informed at least the least grace ago (most of a fleet that
        // informs hourly), and the Informs queued on the writer need not wait for that.
        let found = store
            .db()
            .query_all_raw(statement(backend, &format!("SELECT id FROM devices WHERE {condition} LIMIT ?"), {
                let mut args = condition_args.clone();
                args.push(BATCH.into());
                args
            }))
            .await
            .context("finding devices whose presence changed")?;
        if found.is_empty() {
            continue;
        }
        let ids: Vec<Value> =
            found.iter().map(|row| row.try_get_by_index::<i64>(0).map(Value::from)).collect::<Result<_, _>>()?;
        // The condition again: a device that informed since, or that another replica reported
        // first, no longer matches.
        let sql = format!(
            "UPDATE devices SET reported_online = ? WHERE id IN ({}) AND {condition} \
             RETURNING device_id, org_id, last_inform_at, offline_at",
            super::super::placeholders(ids.len())
        );
        let ids_len = ids.len();
        let args: Vec<Value> = [vec![to_online.into()], ids, condition_args].concat();
        let _guard = store.write_guard().await;
        let txn = store.db().begin().await.context("starting the presence sweep")?;
        let rows = txn.query_all_raw(statement(backend, &sql, args)).await.context("sweeping presence")?;
        for row in &rows {
            let device_id: String = row.try_get("", "device_id")?;
            let org_id: Option<i64> = row.try_get("", "org_id")?;
            // A pending device's presence is no organization's event (as its arrival is not).
            if org_id.is_some() {
                let payload = payload(&device_id, row.try_get("", "last_inform_at")?, row.try_get("", "offline_at")?);
                super::super::events::record(&txn, kind, org_id, &device_id, &payload).await?;
            }
        }
        txn.commit().await.context("committing the presence sweep")?;
        // A full batch found means there may be more, even if some changed back meanwhile.
        counts[i] = if ids_len as i64 == BATCH { ids_len as u64 } else { rows.len() as u64 };
    }
    Ok((counts[0], counts[1]))
}

/// What `device.online` and `device.offline` say: the device, when it last informed, and when it
/// counts (or counted) as offline.
pub(crate) fn payload(device_id: &str, last_inform_at: Option<i64>, offline_at: Option<i64>) -> serde_json::Value {
    serde_json::json!({
        "device_id": device_id,
        "last_inform_at": last_inform_at.map(super::super::timestamp),
        "offline_at": offline_at.map(super::super::timestamp),
    })
}
