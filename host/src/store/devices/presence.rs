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
/// at least that long ago, which is how `last_inform_at`'s index finds it (`offline_at` has no
/// index of online devices: every Inform moves it). Replicas may sweep at once: a row another
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
    let _guard = store.write_guard().await;
    let txn = store.db().begin().await.context("starting the presence sweep")?;
    let backend = txn.get_database_backend();
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
        let sql = format!(
            "UPDATE devices SET reported_online = ? WHERE id IN \
             (SELECT id FROM devices WHERE {condition} LIMIT ?) AND {condition} \
             RETURNING device_id, org_id, last_inform_at, offline_at"
        );
        let args: Vec<Value> =
            [vec![to_online.into()], condition_args.clone(), vec![BATCH.into()], condition_args].concat();
        let rows = txn.query_all_raw(statement(backend, &sql, args)).await.context("sweeping presence")?;
        for row in &rows {
            let device_id: String = row.try_get("", "device_id")?;
            let org_id: Option<i64> = row.try_get("", "org_id")?;
            let last_inform_at: Option<i64> = row.try_get("", "last_inform_at")?;
            let offline_at: Option<i64> = row.try_get("", "offline_at")?;
            let payload = serde_json::json!({
                "device_id": device_id,
                "last_inform_at": last_inform_at.map(rfc3339),
                "offline_at": offline_at.map(rfc3339),
            });
            // A pending device's presence is no organization's event (as its arrival is not).
            if org_id.is_some() {
                super::super::events::record(&txn, kind, org_id, &device_id, &payload).await?;
            }
        }
        counts[i] = rows.len() as u64;
    }
    txn.commit().await.context("committing the presence sweep")?;
    Ok((counts[0], counts[1]))
}

/// Event payloads carry times as the API serves them: RFC 3339, UTC, milliseconds.
pub(crate) fn rfc3339(millis: i64) -> String {
    chrono::DateTime::from_timestamp_millis(millis)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}
