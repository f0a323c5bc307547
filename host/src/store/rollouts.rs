//! Rollouts in the database (`rollouts`, `rollout_devices`): everything a rollout is and has
//! done, so that any replica, after any restart, carries on from here. Each change a rollout's
//! integrators care about is recorded with its event in one transaction.

use anyhow::{Context, Result};
use sea_orm::{ConnectionTrait, FromQueryResult, TransactionTrait, Value};

use super::events::{self, EventType};
use super::orgs::Scope;
use super::tasks::{NewTask, TaskRow};
use super::{DevicePk, Store, now_millis};
use crate::rollouts::{BatchCount, DeviceState, RolloutState, Step};

#[derive(Debug, Clone, FromQueryResult)]
pub struct RolloutRow {
    pub id: i64,
    pub org_id: i64,
    /// `None` once the file was deleted (after the rollout finished).
    pub file_id: Option<i64>,
    /// The `SoftwareVersion` the image installs.
    pub version: String,
    /// The target as it was given (JSON).
    pub target: String,
    pub canary: i64,
    pub batch_size: i64,
    pub batch_interval_s: i64,
    pub failure_threshold: f64,
    pub gate_timeout_s: i64,
    pub window_start: Option<i64>,
    pub window_end: Option<i64>,
    pub time_zone: String,
    pub state: String,
    pub paused_reason: Option<String>,
    /// The batch devices start from now.
    pub batch: i64,
    pub batches: i64,
    /// When the batch before `batch` settled.
    pub batch_done_at: Option<i64>,
    /// The current batch's failures an operator resumed past: the threshold counts the others.
    pub acknowledged_failures: i64,
    pub created_by: String,
    pub created_at: i64,
    pub updated_at: i64,
    pub finished_at: Option<i64>,
}

impl RolloutRow {
    pub fn state(&self) -> RolloutState {
        RolloutState::parse(&self.state).unwrap_or(RolloutState::Aborted)
    }

    pub fn window(&self) -> Option<crate::rollouts::Window> {
        let minute = |m: i64| u16::try_from(m).ok();
        Some(crate::rollouts::Window { start: minute(self.window_start?)?, end: minute(self.window_end?)? })
    }
}

/// A rollout to create.
#[derive(Debug)]
pub struct NewRollout<'a> {
    pub org_id: i64,
    pub file_id: i64,
    pub version: &'a str,
    pub target: &'a str,
    pub canary: u64,
    pub batch_size: u64,
    pub batch_interval_s: u64,
    pub failure_threshold: f64,
    pub gate_timeout_s: u64,
    pub window: Option<crate::rollouts::Window>,
    pub time_zone: &'a str,
    pub created_by: &'a str,
    /// Made paused: nothing starts until it is resumed.
    pub paused: bool,
}

/// A device a new rollout takes, in the order it takes them.
#[derive(Debug, Clone)]
pub struct Member {
    pub device_pk: DevicePk,
    pub from_version: String,
    /// A stored image of `from_version` for it, to roll back with.
    pub rollback_file_id: Option<i64>,
}

/// Rows of `rollout_devices` inserted per statement.
const INSERT_CHUNK: usize = 500;

/// Serializes rollout creation on PostgreSQL (SQLite's writer lock already does): a device is in
/// one unfinished rollout at a time, which two concurrent creations would each check alone.
const CREATE_LOCK: i64 = 0x0072_6f6c_6c6f_7574;

/// Creates a rollout over `members`, all in one transaction; `None` when one of them is in
/// another unfinished rollout by then.
pub async fn create(store: &Store, new: NewRollout<'_>, members: &[Member]) -> Result<Option<RolloutRow>> {
    let now = now_millis();
    let batches = crate::rollouts::batch_count(members.len() as u64, new.canary, new.batch_size);
    let _guard = store.write_guard().await;
    let txn = store.db().begin().await.context("starting transaction")?;
    let backend = txn.get_database_backend();
    if backend == sea_orm::DbBackend::Postgres {
        txn.execute_raw(super::statement(backend, "SELECT pg_advisory_xact_lock(?)", [CREATE_LOCK.into()]))
            .await
            .context("locking rollout creation")?;
    }
    let rollout = super::first::<RolloutRow, _>(
        &txn,
        super::statement(
            backend,
            "INSERT INTO rollouts (org_id, file_id, version, target, canary, batch_size, batch_interval_s,
             failure_threshold, gate_timeout_s, window_start, window_end, time_zone, state, batch, batches,
             created_by, created_at, updated_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, ?, ?, ?, ?) RETURNING *",
            [
                new.org_id.into(),
                new.file_id.into(),
                new.version.into(),
                new.target.into(),
                super::count_value(new.canary),
                super::count_value(new.batch_size),
                super::count_value(new.batch_interval_s),
                new.failure_threshold.into(),
                super::count_value(new.gate_timeout_s),
                new.window.map(|w| i64::from(w.start)).into(),
                new.window.map(|w| i64::from(w.end)).into(),
                new.time_zone.into(),
                if new.paused { RolloutState::Paused } else { RolloutState::Running }.as_str().into(),
                super::count_value(batches),
                new.created_by.into(),
                now.into(),
                now.into(),
            ],
        ),
    )
    .await
    .context("creating rollout")?
    .context("the database returned no rollout")?;
    for (chunk_index, chunk) in members.chunks(INSERT_CHUNK).enumerate() {
        let mut sql = String::from(
            "INSERT INTO rollout_devices (rollout_id, device_id, batch, position, state, from_version, rollback_file_id) VALUES ",
        );
        let mut args: Vec<Value> = Vec::with_capacity(chunk.len() * 6);
        for (i, member) in chunk.iter().enumerate() {
            let position = (chunk_index * INSERT_CHUNK + i) as u64;
            if i > 0 {
                sql.push_str(", ");
            }
            sql.push_str("(?, ?, ?, ?, 'waiting', ?, ?)");
            args.extend([
                rollout.id.into(),
                member.device_pk.into(),
                super::count_value(crate::rollouts::batch_of(position, new.canary, new.batch_size)),
                super::count_value(position),
                member.from_version.as_str().into(),
                member.rollback_file_id.into(),
            ]);
        }
        txn.execute_raw(super::statement(backend, &sql, args)).await.context("adding rollout devices")?;
    }
    let busy = super::first_row(
        &txn,
        super::statement(
            backend,
            "SELECT 1 FROM rollout_devices mine JOIN rollout_devices other ON other.device_id = mine.device_id
             JOIN rollouts r ON r.id = other.rollout_id
             WHERE mine.rollout_id = ? AND other.rollout_id <> ? AND r.finished_at IS NULL LIMIT 1",
            [rollout.id.into(), rollout.id.into()],
        ),
    )
    .await
    .context("checking the devices' other rollouts")?;
    if busy.is_some() {
        txn.rollback().await.context("rolling back")?;
        return Ok(None);
    }
    txn.commit().await.context("committing rollout")?;
    Ok(Some(rollout))
}

pub async fn by_id(store: &Store, id: i64) -> Result<Option<RolloutRow>> {
    super::first(store.db(), store.statement("SELECT * FROM rollouts WHERE id = ?", [id.into()]))
        .await
        .context("loading rollout")
}

/// A rollout of the scope.
pub async fn visible(store: &Store, scope: &Scope, id: i64) -> Result<Option<RolloutRow>> {
    let (condition, mut args) = scope.condition("org_id");
    args.insert(0, id.into());
    super::first(store.db(), store.statement(&format!("SELECT * FROM rollouts WHERE id = ? AND {condition}"), args))
        .await
        .context("loading rollout")
}

/// Rollouts of the scope, newest first, before `before`.
pub async fn list(store: &Store, scope: &Scope, before: Option<i64>, limit: u64) -> Result<Vec<RolloutRow>> {
    let (condition, mut args) = scope.condition("org_id");
    let mut sql = format!("SELECT * FROM rollouts WHERE {condition}");
    super::newest_first(&mut sql, &mut args, (None, None), before, limit);
    RolloutRow::find_by_statement(store.statement(&sql, args)).all(store.db()).await.context("listing rollouts")
}

/// Rollouts with work to do: live ones, and aborted ones whose open gates have not settled.
pub async fn active(store: &Store) -> Result<Vec<RolloutRow>> {
    RolloutRow::find_by_statement(store.statement(
        "SELECT * FROM rollouts WHERE state IN ('running', 'paused', 'rolling_back')
         OR (state = 'aborted' AND finished_at IS NULL) ORDER BY id",
        [],
    ))
    .all(store.db())
    .await
    .context("listing active rollouts")
}

/// The devices of live rollouts (running, paused, rolling back) by state, for `/metrics`.
pub async fn live_progress(store: &Store) -> Result<Vec<(String, i64)>> {
    #[derive(FromQueryResult)]
    struct Row {
        state: String,
        devices: i64,
    }
    let rows = Row::find_by_statement(store.statement(
        "SELECT rd.state AS state, COUNT(*) AS devices FROM rollout_devices rd
         JOIN rollouts r ON r.id = rd.rollout_id
         WHERE r.state IN ('running', 'paused', 'rolling_back') GROUP BY rd.state ORDER BY rd.state",
        [],
    ))
    .all(store.db())
    .await
    .context("counting live rollouts' devices")?;
    Ok(rows.into_iter().map(|r| (r.state, r.devices)).collect())
}

/// A device of a rollout, with what its gate reads.
#[derive(Debug, Clone, FromQueryResult)]
pub struct RolloutDevice {
    pub device_pk: i64,
    pub device_id: String,
    pub batch: i64,
    pub position: i64,
    pub state: String,
    pub step: Option<String>,
    pub from_version: String,
    pub rollback_file_id: Option<i64>,
    pub task_id: Option<i64>,
    pub check_task_id: Option<i64>,
    pub started_at: Option<i64>,
    pub deadline: Option<i64>,
    pub finished_at: Option<i64>,
    pub reason: Option<String>,
    pub software_version: String,
    pub last_boot_at: Option<i64>,
    /// When Roost last sent the device a connection request.
    pub connection_request_at: Option<i64>,
    pub task_status: Option<String>,
    /// `queued` until the task's RPC is sent.
    pub task_stage: Option<String>,
    pub task_fault_code: Option<String>,
    pub task_fault: Option<String>,
    pub check_status: Option<String>,
    pub check_stage: Option<String>,
    pub check_done_at: Option<i64>,
    pub check_result: Option<String>,
    pub check_fault_code: Option<String>,
    pub check_fault: Option<String>,
}

impl RolloutDevice {
    pub fn state(&self) -> DeviceState {
        DeviceState::parse(&self.state).unwrap_or(DeviceState::Skipped)
    }

    pub fn pk(&self) -> DevicePk {
        DevicePk(self.device_pk)
    }
}

const DEVICE_COLUMNS: &str = "rd.device_id AS device_pk, d.device_id, rd.batch, rd.position, rd.state, rd.step,
    rd.from_version, rd.rollback_file_id, rd.task_id, rd.check_task_id, rd.started_at, rd.deadline, rd.finished_at,
    rd.reason, d.software_version, d.last_boot_at, d.connection_request_at,
    t.status AS task_status, t.stage AS task_stage, t.fault_code AS task_fault_code, t.fault_message AS task_fault,
    c.status AS check_status, c.stage AS check_stage, c.done_at AS check_done_at, c.result AS check_result, c.fault_code AS check_fault_code, c.fault_message AS check_fault
    FROM rollout_devices rd JOIN devices d ON d.id = rd.device_id
    LEFT JOIN tasks t ON t.id = rd.task_id LEFT JOIN tasks c ON c.id = rd.check_task_id";

/// The devices of a rollout in some states, in rollout order, after position `after`.
pub async fn devices(
    store: &Store,
    rollout_id: i64,
    states: &[DeviceState],
    after: Option<i64>,
    limit: u64,
) -> Result<Vec<RolloutDevice>> {
    let mut sql = format!("SELECT {DEVICE_COLUMNS} WHERE rd.rollout_id = ?");
    let mut args: Vec<Value> = vec![rollout_id.into()];
    if !states.is_empty() {
        sql.push_str(&format!(" AND rd.state IN ({})", super::placeholders(states.len())));
        args.extend(states.iter().map(|s| Value::from(s.as_str())));
    }
    if let Some(after) = after {
        sql.push_str(" AND rd.position > ?");
        args.push(after.into());
    }
    sql.push_str(" ORDER BY rd.position LIMIT ?");
    args.push(super::count_value(limit));
    RolloutDevice::find_by_statement(store.statement(&sql, args))
        .all(store.db())
        .await
        .context("listing rollout devices")
}

/// The devices of one batch waiting to start, in order.
pub async fn waiting(store: &Store, rollout_id: i64, batch: i64, limit: u64) -> Result<Vec<RolloutDevice>> {
    let sql = format!(
        "SELECT {DEVICE_COLUMNS} WHERE rd.rollout_id = ? AND rd.state = 'waiting' AND rd.batch = ? ORDER BY rd.position LIMIT ?"
    );
    RolloutDevice::find_by_statement(
        store.statement(&sql, [rollout_id.into(), batch.into(), super::count_value(limit)]),
    )
    .all(store.db())
    .await
    .context("listing waiting devices")
}

/// A rollout's devices by batch and state.
pub async fn counts(store: &Store, rollout_id: i64) -> Result<Vec<(i64, DeviceState, u64)>> {
    let rows = store
        .db()
        .query_all_raw(store.statement(
            "SELECT batch, state, COUNT(*) FROM rollout_devices WHERE rollout_id = ? GROUP BY batch, state ORDER BY batch",
            [rollout_id.into()],
        ))
        .await
        .context("counting rollout devices")?;
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let batch: i64 = row.try_get_by_index(0)?;
        let state: String = row.try_get_by_index(1)?;
        let count: i64 = row.try_get_by_index(2)?;
        if let Some(state) = DeviceState::parse(&state) {
            out.push((batch, state, u64::try_from(count).unwrap_or(0)));
        }
    }
    Ok(out)
}

/// One batch's devices by state.
pub fn batch_count(counts: &[(i64, DeviceState, u64)], batch: i64) -> BatchCount {
    let mut count = BatchCount::default();
    for (_, state, n) in counts.iter().filter(|(b, _, _)| *b == batch) {
        match state {
            DeviceState::Waiting => count.waiting += n,
            DeviceState::Upgrading | DeviceState::Reverting => count.open += n,
            DeviceState::Passed => count.passed += n,
            DeviceState::Failed => count.failed += n,
            _ => count.other += n,
        }
    }
    count
}

/// Devices with an open gate in the organization's rollouts: its downloads under way.
pub async fn open_in_org(store: &Store, org_id: i64) -> Result<u64> {
    let row = super::first_row(
        store.db(),
        store.statement(
            "SELECT COUNT(*) FROM rollout_devices rd JOIN rollouts r ON r.id = rd.rollout_id
             WHERE r.org_id = ? AND rd.state IN ('upgrading', 'reverting')",
            [org_id.into()],
        ),
    )
    .await
    .context("counting downloads under way")?;
    let count: i64 = row.map(|r| r.try_get_by_index(0)).transpose()?.unwrap_or(0);
    Ok(u64::try_from(count).unwrap_or(0))
}

/// A device's download to start: the grant of its file, the task, and the device's new state,
/// in one transaction, so a device is never started twice nor left with a task its rollout
/// does not know.
pub struct Start<'a> {
    pub rollout: &'a RolloutRow,
    pub device_pk: DevicePk,
    /// The states the device may start from (`waiting` for an upgrade; settled ones for a revert).
    pub from: &'a [DeviceState],
    /// The state the rollout must still be in (a pause that landed since the tick read it
    /// starts nothing more).
    pub rollout_state: RolloutState,
    pub to: DeviceState,
    pub file_id: i64,
    pub token_hash: &'a str,
    pub grant_expires_at: i64,
    pub task: NewTask<'a>,
    pub deadline: i64,
}

/// `None` when the device was no longer in a state it starts from.
pub async fn start(store: &Store, start: Start<'_>) -> Result<Option<TaskRow>> {
    let now = now_millis();
    let _guard = store.write_guard().await;
    let txn = store.db().begin().await.context("starting transaction")?;
    let backend = txn.get_database_backend();
    let task = super::tasks::insert_row(&txn, start.task).await?;
    let mut args: Vec<Value> = vec![
        start.to.as_str().into(),
        Step::Download.as_str().into(),
        task.id.into(),
        now.into(),
        start.deadline.into(),
        start.rollout.id.into(),
        start.device_pk.into(),
    ];
    args.extend(start.from.iter().map(|s| Value::from(s.as_str())));
    args.extend([start.rollout.id.into(), start.rollout_state.as_str().into()]);
    let moved = txn
        .execute_raw(super::statement(
            backend,
            &format!(
                "UPDATE rollout_devices SET state = ?, step = ?, task_id = ?, check_task_id = NULL, started_at = ?,
                 deadline = ?, finished_at = NULL, reason = NULL WHERE rollout_id = ? AND device_id = ? AND state IN ({})
                 AND EXISTS (SELECT 1 FROM rollouts WHERE id = ? AND state = ?)",
                super::placeholders(start.from.len())
            ),
            args,
        ))
        .await
        .context("starting a rollout device")?;
    if moved.rows_affected() == 0 {
        txn.rollback().await.context("rolling back")?;
        return Ok(None);
    }
    txn.execute_raw(super::statement(
        backend,
        "INSERT INTO file_downloads (token_hash, file_id, device_id, expires_at) VALUES (?, ?, ?, ?)",
        [start.token_hash.into(), start.file_id.into(), start.device_pk.into(), start.grant_expires_at.into()],
    ))
    .await
    .context("granting the download")?;
    txn.commit().await.context("committing the start")?;
    Ok(Some(task))
}

/// Records what an open gate waits for now.
pub async fn set_step(store: &Store, rollout_id: i64, device: DevicePk, step: Step) -> Result<()> {
    let _guard = store.write_guard().await;
    store
        .db()
        .execute_raw(store.statement(
            "UPDATE rollout_devices SET step = ? WHERE rollout_id = ? AND device_id = ?",
            [step.as_str().into(), rollout_id.into(), device.into()],
        ))
        .await
        .context("recording a gate's step")?;
    Ok(())
}

/// Queues a device's WAN check and records it, in one transaction.
/// `previous`: the check this one replaces (a re-read of a WAN found down), which must still be
/// the device's, so two runners never queue two; `last_down`: why that one found it down, kept
/// as the device's reason until the gate ends.
pub async fn check_wan(
    store: &Store,
    rollout_id: i64,
    device: DevicePk,
    previous: Option<i64>,
    last_down: Option<&str>,
    task: NewTask<'_>,
) -> Result<()> {
    let _guard = store.write_guard().await;
    let txn = store.db().begin().await.context("starting transaction")?;
    let task = super::tasks::insert_row(&txn, task).await?;
    let same = if previous.is_some() { "check_task_id = ?" } else { "check_task_id IS NULL AND ? IS NULL" };
    let moved = txn
        .execute_raw(super::statement(
            txn.get_database_backend(),
            &format!(
                "UPDATE rollout_devices SET step = 'wan', check_task_id = ?, reason = ? WHERE rollout_id = ?
                 AND device_id = ? AND state IN ('upgrading', 'reverting') AND {same}"
            ),
            [task.id.into(), last_down.into(), rollout_id.into(), device.into(), previous.into()],
        ))
        .await
        .context("recording the WAN check")?;
    if moved.rows_affected() == 0 {
        txn.rollback().await.context("rolling back")?;
        return Ok(());
    }
    txn.commit().await.context("committing the WAN check")
}

/// Settles a device (an open gate's end, or a device a rollback or abort leaves), with its
/// `rollout.progress` event. `false` when it was no longer in one of `from`.
pub async fn settle(
    store: &Store,
    rollout: &RolloutRow,
    device: &RolloutDevice,
    from: &[DeviceState],
    to: DeviceState,
    reason: Option<&str>,
) -> Result<bool> {
    let now = now_millis();
    let _guard = store.write_guard().await;
    let txn = store.db().begin().await.context("starting transaction")?;
    let mut args: Vec<Value> =
        vec![to.as_str().into(), reason.into(), now.into(), rollout.id.into(), device.device_pk.into()];
    args.extend(from.iter().map(|s| Value::from(s.as_str())));
    let moved = txn
        .execute_raw(super::statement(
            txn.get_database_backend(),
            &format!(
                "UPDATE rollout_devices SET state = ?, step = NULL, reason = ?, finished_at = ?
                 WHERE rollout_id = ? AND device_id = ? AND state IN ({})",
                super::placeholders(from.len())
            ),
            args,
        ))
        .await
        .context("settling a rollout device")?;
    if moved.rows_affected() == 0 {
        txn.rollback().await.context("rolling back")?;
        return Ok(false);
    }
    let payload = serde_json::json!({
        "rollout_id": rollout.id.to_string(),
        "device_id": device.device_id,
        "batch": device.batch,
        "state": to.as_str(),
        "reason": reason,
    });
    events::record(&txn, EventType::RolloutProgress, Some(rollout.org_id), &device.device_id, &payload).await?;
    txn.commit().await.context("committing a rollout device")?;
    Ok(true)
}

/// A change of a rollout's state, with its event.
pub struct Transition<'a> {
    pub from: &'a [RolloutState],
    pub to: RolloutState,
    pub reason: Option<&'a str>,
    pub event: Option<EventType>,
    /// Whether the rollout is finished with this change (its gates all settled).
    pub finished: bool,
    /// A resume: the current batch's failures so far no longer count toward its threshold.
    pub acknowledge_failures: bool,
    /// What its devices not started become, and those whose download was queued but never
    /// sent (the download is deleted): an abort or a rollback.
    pub unstarted: Option<(DeviceState, &'a str)>,
}

/// `false` when the rollout was in none of `from` (another request or replica moved it first).
pub async fn transition(store: &Store, rollout: &RolloutRow, change: Transition<'_>) -> Result<bool> {
    let now = now_millis();
    let _guard = store.write_guard().await;
    let txn = store.db().begin().await.context("starting transaction")?;
    let mut args: Vec<Value> = vec![
        change.to.as_str().into(),
        change.reason.into(),
        now.into(),
        change.finished.then_some(now).into(),
        rollout.id.into(),
    ];
    args.extend(change.from.iter().map(|s| Value::from(s.as_str())));
    let moved = txn
        .execute_raw(super::statement(
            txn.get_database_backend(),
            &format!(
                "UPDATE rollouts SET state = ?, paused_reason = ?, updated_at = ?, finished_at = ?
                 WHERE id = ? AND state IN ({})",
                super::placeholders(change.from.len())
            ),
            args,
        ))
        .await
        .context("changing a rollout's state")?;
    if moved.rows_affected() == 0 {
        txn.rollback().await.context("rolling back")?;
        return Ok(false);
    }
    let backend = txn.get_database_backend();
    if change.acknowledge_failures {
        txn.execute_raw(super::statement(
            backend,
            "UPDATE rollouts SET acknowledged_failures = (SELECT COUNT(*) FROM rollout_devices
             WHERE rollout_id = rollouts.id AND batch = rollouts.batch AND state = 'failed') WHERE id = ?",
            [rollout.id.into()],
        ))
        .await
        .context("acknowledging a batch's failures")?;
    }
    if let Some((to, reason)) = change.unstarted {
        let unsent = "SELECT id FROM tasks WHERE status = 'pending' AND stage = 'queued' AND attempts = 0";
        txn.execute_raw(super::statement(
            backend,
            &format!(
                "DELETE FROM tasks WHERE id IN (SELECT task_id FROM rollout_devices WHERE rollout_id = ?
                 AND state IN ('upgrading', 'reverting') AND task_id IN ({unsent}))"
            ),
            [rollout.id.into()],
        ))
        .await
        .context("deleting downloads never sent")?;
        txn.execute_raw(super::statement(
            backend,
            "UPDATE rollout_devices SET state = ?, step = NULL, reason = ?, finished_at = ? WHERE rollout_id = ?
             AND (state = 'waiting' OR (state IN ('upgrading', 'reverting')
             AND NOT EXISTS (SELECT 1 FROM tasks t WHERE t.id = rollout_devices.task_id)))",
            [to.as_str().into(), reason.into(), now.into(), rollout.id.into()],
        ))
        .await
        .context("settling the devices not started")?;
    }
    if let Some(event) = change.event {
        let payload = serde_json::json!({
            "rollout_id": rollout.id.to_string(),
            "state": change.to.as_str(),
            "reason": change.reason,
        });
        events::record(&txn, event, Some(rollout.org_id), &rollout.id.to_string(), &payload).await?;
    }
    txn.commit().await.context("committing a rollout's state")?;
    Ok(true)
}

/// Marks an aborted rollout finished once its last gate settled.
pub async fn finish(store: &Store, rollout_id: i64) -> Result<()> {
    let _guard = store.write_guard().await;
    store
        .db()
        .execute_raw(store.statement(
            "UPDATE rollouts SET finished_at = ?, updated_at = ? WHERE id = ? AND finished_at IS NULL",
            [now_millis().into(), now_millis().into(), rollout_id.into()],
        ))
        .await
        .context("finishing a rollout")?;
    Ok(())
}

/// Moves a running rollout to its next batch, which starts `batch_interval_s` after `done_at`
/// (at once without it); the failures acknowledged in the batch before are forgotten.
pub async fn advance(store: &Store, rollout_id: i64, settled_batch: i64, done_at: Option<i64>) -> Result<bool> {
    let now = now_millis();
    let _guard = store.write_guard().await;
    let moved = store
        .db()
        .execute_raw(store.statement(
            "UPDATE rollouts SET batch = batch + 1, batch_done_at = ?, acknowledged_failures = 0, updated_at = ?
             WHERE id = ? AND batch = ? AND state = 'running'",
            [done_at.into(), now.into(), rollout_id.into(), settled_batch.into()],
        ))
        .await
        .context("advancing a rollout")?;
    Ok(moved.rows_affected() > 0)
}

/// The devices of unfinished rollouts but `except` (a device is in one rollout at a time).
pub async fn busy_devices(store: &Store, except: Option<i64>) -> Result<std::collections::HashSet<i64>> {
    let rows = store
        .db()
        .query_all_raw(store.statement(
            "SELECT DISTINCT rd.device_id FROM rollout_devices rd JOIN rollouts r ON r.id = rd.rollout_id
             WHERE r.finished_at IS NULL AND r.id <> ?",
            [except.unwrap_or(0).into()],
        ))
        .await
        .context("listing devices in rollouts")?;
    rows.iter().map(|row| row.try_get_by_index::<i64>(0).context("device")).collect()
}

/// Whether an unfinished rollout uses the file (its image, or a device's rollback image).
pub async fn uses_file(store: &Store, file_id: i64) -> Result<bool> {
    let row = super::first_row(
        store.db(),
        store.statement(
            "SELECT 1 FROM rollouts r WHERE r.finished_at IS NULL AND r.state NOT IN ('completed', 'rolled_back')
             AND (r.file_id = ? OR EXISTS (SELECT 1 FROM rollout_devices rd WHERE rd.rollout_id = r.id AND rd.rollback_file_id = ?))
             LIMIT 1",
            [file_id.into(), file_id.into()],
        ),
    )
    .await
    .context("checking the file's rollouts")?;
    Ok(row.is_some())
}
