//! Bulk actions in the database (`bulk_actions`, `bulk_devices`): what each device of an action
//! got and how it ended, so any replica, after any restart, carries on from here.

use anyhow::{Context, Result};
use sea_orm::{ConnectionTrait, FromQueryResult, TransactionTrait, Value};

use super::events::{self, EventType};
use super::orgs::Scope;
use super::tasks::NewTask;
use super::{DevicePk, Store, now_millis};
use crate::bulk::{BulkState, DeviceState};

#[derive(Debug, Clone, FromQueryResult)]
pub struct BulkRow {
    pub id: i64,
    pub org_id: i64,
    /// The action's name (`rotateWifiKey`, …).
    pub name: String,
    /// The action as given, secrets blanked (JSON).
    pub action: String,
    /// The action as given, sealed with the master key.
    pub sealed_action: Vec<u8>,
    /// The device query (JSON).
    pub query: String,
    pub state: String,
    pub created_by: String,
    pub created_at: i64,
    pub updated_at: i64,
    pub finished_at: Option<i64>,
}

pub struct NewBulk<'a> {
    pub org_id: i64,
    pub name: &'a str,
    pub action: &'a str,
    pub sealed_action: Vec<u8>,
    pub query: &'a str,
    pub created_by: &'a str,
}

/// Rows of `bulk_devices` inserted per statement.
const INSERT_CHUNK: usize = 500;

/// Creates a bulk action over `devices`, in that order, in one transaction.
pub async fn create(store: &Store, new: NewBulk<'_>, devices: &[DevicePk]) -> Result<BulkRow> {
    let now = now_millis();
    let _guard = store.write_guard().await;
    let txn = store.db().begin().await.context("starting transaction")?;
    let backend = txn.get_database_backend();
    let bulk = super::first::<BulkRow, _>(
        &txn,
        super::statement(
            backend,
            "INSERT INTO bulk_actions (org_id, name, action, sealed_action, query, state, created_by, created_at, updated_at)
             VALUES (?, ?, ?, ?, ?, 'running', ?, ?, ?) RETURNING *",
            [
                new.org_id.into(),
                new.name.into(),
                new.action.into(),
                new.sealed_action.into(),
                new.query.into(),
                new.created_by.into(),
                now.into(),
                now.into(),
            ],
        ),
    )
    .await
    .context("creating bulk action")?
    .context("the database returned no bulk action")?;
    for (chunk_index, chunk) in devices.chunks(INSERT_CHUNK).enumerate() {
        let mut sql = String::from("INSERT INTO bulk_devices (bulk_id, device_id, position, state) VALUES ");
        let mut args: Vec<Value> = Vec::with_capacity(chunk.len() * 3);
        for (i, device) in chunk.iter().enumerate() {
            if i > 0 {
                sql.push_str(", ");
            }
            sql.push_str("(?, ?, ?, 'waiting')");
            args.extend([
                bulk.id.into(),
                (*device).into(),
                super::count_value((chunk_index * INSERT_CHUNK + i) as u64),
            ]);
        }
        txn.execute_raw(super::statement(backend, &sql, args)).await.context("adding bulk devices")?;
    }
    txn.commit().await.context("committing bulk action")?;
    Ok(bulk)
}

pub async fn by_id(store: &Store, id: i64) -> Result<Option<BulkRow>> {
    super::first(store.db(), store.statement("SELECT * FROM bulk_actions WHERE id = ?", [id.into()]))
        .await
        .context("loading bulk action")
}

pub async fn visible(store: &Store, scope: &Scope, id: i64) -> Result<Option<BulkRow>> {
    let (condition, mut args) = scope.condition("org_id");
    args.insert(0, id.into());
    super::first(store.db(), store.statement(&format!("SELECT * FROM bulk_actions WHERE id = ? AND {condition}"), args))
        .await
        .context("loading bulk action")
}

/// Bulk actions of the scope, newest first, below `before`.
pub async fn list(store: &Store, scope: &Scope, before: Option<i64>, limit: u64) -> Result<Vec<BulkRow>> {
    let (condition, mut args) = scope.condition("org_id");
    let mut sql = format!("SELECT * FROM bulk_actions WHERE {condition}");
    super::newest_first(&mut sql, &mut args, (None, None), before, limit);
    BulkRow::find_by_statement(store.statement(&sql, args)).all(store.db()).await.context("listing bulk actions")
}

/// Bulk actions with work to do: running ones, and cancelled ones with devices still started.
pub async fn active(store: &Store) -> Result<Vec<BulkRow>> {
    BulkRow::find_by_statement(store.statement(
        "SELECT * FROM bulk_actions WHERE state = 'running' OR (state = 'cancelled' AND finished_at IS NULL) ORDER BY id",
        [],
    ))
    .all(store.db())
    .await
    .context("listing active bulk actions")
}

/// A device of a bulk action, with its task and what tells whether presets ran.
#[derive(Debug, Clone, FromQueryResult)]
pub struct BulkDevice {
    pub device_pk: i64,
    pub device_id: String,
    pub data_model: String,
    pub position: i64,
    pub state: String,
    pub task_id: Option<i64>,
    pub secret: Option<Vec<u8>>,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    pub reason: Option<String>,
    pub configured_at: Option<i64>,
    pub connection_request_at: Option<i64>,
    pub task_status: Option<String>,
    pub task_stage: Option<String>,
    pub task_fault_code: Option<String>,
    pub task_fault: Option<String>,
}

impl BulkDevice {
    pub fn pk(&self) -> DevicePk {
        DevicePk(self.device_pk)
    }

    pub fn state(&self) -> DeviceState {
        DeviceState::parse(&self.state).unwrap_or(DeviceState::Cancelled)
    }
}

const DEVICE_COLUMNS: &str = "bd.device_id AS device_pk, d.device_id, d.data_model, bd.position, bd.state, bd.task_id,
    bd.secret, bd.started_at, bd.finished_at, bd.reason, d.configured_at, d.connection_request_at,
    t.status AS task_status, t.stage AS task_stage, t.fault_code AS task_fault_code, t.fault_message AS task_fault
    FROM bulk_devices bd JOIN devices d ON d.id = bd.device_id LEFT JOIN tasks t ON t.id = bd.task_id";

/// Devices of a bulk action in some states (all without), in order, after position `after`.
pub async fn devices(
    store: &Store,
    bulk_id: i64,
    states: &[DeviceState],
    after: Option<i64>,
    limit: u64,
) -> Result<Vec<BulkDevice>> {
    let mut sql = format!("SELECT {DEVICE_COLUMNS} WHERE bd.bulk_id = ?");
    let mut args: Vec<Value> = vec![bulk_id.into()];
    if !states.is_empty() {
        sql.push_str(&format!(" AND bd.state IN ({})", super::placeholders(states.len())));
        args.extend(states.iter().map(|s| Value::from(s.as_str())));
    }
    if let Some(after) = after {
        sql.push_str(" AND bd.position > ?");
        args.push(after.into());
    }
    sql.push_str(" ORDER BY bd.position LIMIT ?");
    args.push(super::count_value(limit));
    BulkDevice::find_by_statement(store.statement(&sql, args)).all(store.db()).await.context("listing bulk devices")
}

/// A bulk action's devices by state.
pub async fn counts(store: &Store, bulk_id: i64) -> Result<Vec<(DeviceState, u64)>> {
    let rows =
        store
            .db()
            .query_all_raw(store.statement(
                "SELECT state, COUNT(*) FROM bulk_devices WHERE bulk_id = ? GROUP BY state",
                [bulk_id.into()],
            ))
            .await
            .context("counting bulk devices")?;
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let state: String = row.try_get_by_index(0)?;
        let count: i64 = row.try_get_by_index(1)?;
        if let Some(state) = DeviceState::parse(&state) {
            out.push((state, u64::try_from(count).unwrap_or(0)));
        }
    }
    Ok(out)
}

/// One device's start: its task (none for presets run again, which clears `configured_at`
/// instead) and the secret made for it, with its new state, in one transaction. `false` when
/// it was no longer waiting.
pub async fn start(
    store: &Store,
    bulk_id: i64,
    device: DevicePk,
    task: Option<NewTask<'_>>,
    secret: Option<Vec<u8>>,
) -> Result<bool> {
    let now = now_millis();
    let _guard = store.write_guard().await;
    let txn = store.db().begin().await.context("starting transaction")?;
    let backend = txn.get_database_backend();
    let task_id = match task {
        Some(task) => Some(super::tasks::insert_row(&txn, task).await?.id),
        None => {
            txn.execute_raw(super::statement(
                backend,
                "UPDATE devices SET configured_at = NULL WHERE id = ?",
                [device.into()],
            ))
            .await
            .context("marking the device for its presets")?;
            None
        }
    };
    let moved = txn
        .execute_raw(super::statement(
            backend,
            "UPDATE bulk_devices SET state = 'started', task_id = ?, secret = ?, started_at = ?
             WHERE bulk_id = ? AND device_id = ? AND state = 'waiting'",
            [task_id.into(), secret.into(), now.into(), bulk_id.into(), device.into()],
        ))
        .await
        .context("starting a bulk device")?;
    if moved.rows_affected() == 0 {
        txn.rollback().await.context("rolling back")?;
        return Ok(false);
    }
    txn.commit().await.context("committing the start")?;
    Ok(true)
}

/// A started device's end.
pub async fn settle(
    store: &Store,
    bulk_id: i64,
    device: DevicePk,
    to: DeviceState,
    reason: Option<&str>,
) -> Result<()> {
    let _guard = store.write_guard().await;
    store
        .db()
        .execute_raw(store.statement(
            "UPDATE bulk_devices SET state = ?, reason = ?, finished_at = ?
             WHERE bulk_id = ? AND device_id = ? AND state = 'started'",
            [to.as_str().into(), reason.into(), now_millis().into(), bulk_id.into(), device.into()],
        ))
        .await
        .context("settling a bulk device")?;
    Ok(())
}

/// A running bulk action completed, with its event.
pub async fn complete(store: &Store, bulk: &BulkRow) -> Result<()> {
    let now = now_millis();
    let _guard = store.write_guard().await;
    let txn = store.db().begin().await.context("starting transaction")?;
    let moved = txn
        .execute_raw(super::statement(
            txn.get_database_backend(),
            "UPDATE bulk_actions SET state = 'completed', updated_at = ?, finished_at = ? WHERE id = ? AND state = 'running'",
            [now.into(), now.into(), bulk.id.into()],
        ))
        .await
        .context("completing a bulk action")?;
    if moved.rows_affected() > 0 {
        let payload = serde_json::json!({"bulk_id": bulk.id.to_string(), "action": bulk.name, "state": BulkState::Completed.as_str()});
        events::record(&txn, EventType::BulkCompleted, Some(bulk.org_id), &bulk.id.to_string(), &payload).await?;
    }
    txn.commit().await.context("committing a bulk action")
}

/// Cancels a running bulk action: devices not started, and started ones whose task was never
/// sent (deleted), are cancelled; tasks under way finish. With its event, in one transaction.
/// `false` when it was not running.
pub async fn cancel(store: &Store, bulk: &BulkRow, by: &str) -> Result<bool> {
    let now = now_millis();
    let reason = format!("cancelled by {by}");
    let _guard = store.write_guard().await;
    let txn = store.db().begin().await.context("starting transaction")?;
    let backend = txn.get_database_backend();
    let moved = txn
        .execute_raw(super::statement(
            backend,
            "UPDATE bulk_actions SET state = 'cancelled', updated_at = ? WHERE id = ? AND state = 'running'",
            [now.into(), bulk.id.into()],
        ))
        .await
        .context("cancelling a bulk action")?;
    if moved.rows_affected() == 0 {
        txn.rollback().await.context("rolling back")?;
        return Ok(false);
    }
    // The started devices' tasks that no session took are deleted first, and exactly those
    // devices are cancelled: on PostgreSQL a session may take a task while this runs, and the
    // delete, which re-reads each row it removes, leaves a task taken meanwhile (its device then
    // finishes with the task's outcome).
    let deleted = txn
        .query_all_raw(super::statement(
            backend,
            "DELETE FROM tasks WHERE status = 'pending' AND stage = 'queued' AND attempts = 0 AND id IN
             (SELECT task_id FROM bulk_devices WHERE bulk_id = ? AND state = 'started' AND task_id IS NOT NULL)
             RETURNING id",
            [bulk.id.into()],
        ))
        .await
        .context("deleting the cancelled tasks")?;
    let task_ids = deleted.iter().map(|row| row.try_get_by_index::<i64>(0)).collect::<Result<Vec<_>, _>>()?;
    for chunk in task_ids.chunks(500) {
        let sql = format!(
            "UPDATE bulk_devices SET state = 'cancelled', reason = ?, finished_at = ? WHERE bulk_id = ? AND state = 'started'
             AND task_id IN ({})",
            super::placeholders(chunk.len())
        );
        let mut args: Vec<Value> = vec![reason.as_str().into(), now.into(), bulk.id.into()];
        args.extend(chunk.iter().map(|id| Value::from(*id)));
        txn.execute_raw(super::statement(backend, &sql, args)).await.context("cancelling started bulk devices")?;
    }
    for sql in [
        "UPDATE bulk_devices SET state = 'cancelled', reason = ?, finished_at = ? WHERE bulk_id = ? AND state = 'waiting'",
        // Presets run again have no task: their devices are marked already, and stop counting.
        "UPDATE bulk_devices SET state = 'cancelled', reason = ?, finished_at = ? WHERE bulk_id = ? AND state = 'started'
         AND task_id IS NULL",
    ] {
        txn.execute_raw(super::statement(backend, sql, [reason.as_str().into(), now.into(), bulk.id.into()]))
            .await
            .context("cancelling bulk devices")?;
    }
    let payload = serde_json::json!({"bulk_id": bulk.id.to_string(), "action": bulk.name, "state": BulkState::Cancelled.as_str()});
    events::record(&txn, EventType::BulkCancelled, Some(bulk.org_id), &bulk.id.to_string(), &payload).await?;
    txn.commit().await.context("committing the cancel")?;
    Ok(true)
}

/// A cancelled bulk action's last started device settled.
pub async fn finish(store: &Store, bulk_id: i64) -> Result<()> {
    let _guard = store.write_guard().await;
    store
        .db()
        .execute_raw(store.statement(
            "UPDATE bulk_actions SET finished_at = ?, updated_at = ? WHERE id = ? AND finished_at IS NULL",
            [now_millis().into(), now_millis().into(), bulk_id.into()],
        ))
        .await
        .context("finishing a bulk action")?;
    Ok(())
}
