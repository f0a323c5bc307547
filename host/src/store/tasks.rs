//! The durable task queue: tasks survive restarts and run in id order in the device's next
//! session.

use anyhow::{Context, Result};
use sea_orm::{ConnectionTrait, FromQueryResult, TransactionTrait, Value};

use super::DevicePk;
use super::events::EventType;
use super::orgs::Scope;
use super::{Store, now_millis};
use crate::fault_code::FaultCode;

/// Whether a task is still to run or finished, and how: `tasks.status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskStatus {
    /// Waiting for a session, or in one.
    Pending,
    Done,
    Fault,
}

/// Where a pending task is in its life: `tasks.stage`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskStage {
    /// Waiting for a session.
    Queued,
    /// Download/Upload accepted by the CPE; TransferComplete with `command_key` closes it.
    Transferring,
}

stored_names!(TaskStatus { Pending => "pending", Done => "done", Fault => "fault" });
stored_names!(TaskStage { Queued => "queued", Transferring => "transferring" });

#[derive(Debug, Clone, FromQueryResult)]
pub struct TaskRow {
    pub id: i64,
    #[sea_orm(from_alias = "device_id")]
    pub device_pk: DevicePk,
    pub org_id: Option<i64>,
    pub name: String,
    /// The request with secrets redacted (what the API shows).
    pub body: String,
    /// The original request, sealed, when it carried secrets.
    pub sealed_body: Option<Vec<u8>>,
    pub status: TaskStatus,
    pub stage: TaskStage,
    pub command_key: String,
    pub fault_code: Option<String>,
    pub fault_message: Option<String>,
    pub fault_detail: Option<String>,
    pub result: Option<String>,
    pub attempts: i64,
    pub created_at: i64,
    pub done_at: Option<i64>,
    pub expires_at: Option<i64>,
}

/// A task to queue.
#[derive(Debug)]
pub struct NewTask<'a> {
    pub device_pk: DevicePk,
    pub org_id: Option<i64>,
    pub name: &'a str,
    pub body: &'a str,
    pub sealed_body: Option<Vec<u8>>,
    pub expires_at: Option<i64>,
}

pub async fn insert(store: &Store, task: NewTask<'_>) -> Result<TaskRow> {
    let _guard = store.write_guard().await;
    insert_row(store.db(), task).await
}

pub(super) async fn insert_row<C: ConnectionTrait>(db: &C, task: NewTask<'_>) -> Result<TaskRow> {
    let stmt = super::statement(
        db.get_database_backend(),
        "INSERT INTO tasks (device_id, org_id, name, body, sealed_body, status, stage, created_at, expires_at)
         VALUES (?, ?, ?, ?, ?, 'pending', 'queued', ?, ?) RETURNING *",
        [
            task.device_pk.into(),
            task.org_id.into(),
            task.name.into(),
            task.body.into(),
            task.sealed_body.into(),
            now_millis().into(),
            task.expires_at.into(),
        ],
    );
    super::first::<TaskRow, _>(db, stmt)
        .await
        .context("queueing task")?
        .context("the database returned no row for the new task")
}

/// How long an `Idempotency-Key` is remembered.
pub const IDEMPOTENCY_TTL_MS: i64 = 24 * 3600 * 1000;

/// An `Idempotency-Key` with who sent it and a digest of the request it came with.
#[derive(Debug, Clone, Copy)]
pub struct IdempotencyKey<'a> {
    pub principal: &'a str,
    pub key: &'a str,
    pub request_hash: &'a str,
}

/// What a key was used for before, as remembered: the id of the task the same request queued
/// (its first, for a request that queued several), or another request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyUse {
    Task(i64),
    OtherRequest,
}

/// How this key was used within a day, if it was.
pub async fn key_use(store: &Store, key: IdempotencyKey<'_>) -> Result<Option<KeyUse>> {
    let stmt = store.statement(
        "SELECT request_hash, task_id FROM idempotency_keys WHERE principal = ? AND key = ? AND created_at >= ?",
        [key.principal.into(), key.key.into(), (now_millis() - IDEMPOTENCY_TTL_MS).into()],
    );
    let Some(row) = super::first_row(store.db(), stmt).await.context("looking up an idempotency key")? else {
        return Ok(None);
    };
    let hash: String = row.try_get("", "request_hash").context("request_hash")?;
    if hash != key.request_hash {
        return Ok(Some(KeyUse::OtherRequest));
    }
    Ok(Some(KeyUse::Task(row.try_get("", "task_id").context("task_id")?)))
}

/// Queues a task and remembers `key` for it, in one transaction: a retry after any failure
/// either finds the task or queues it, never twice. `Ok(None)` when the key was taken
/// meanwhile (a concurrent retry): look it up again.
pub async fn insert_idempotent(store: &Store, task: NewTask<'_>, key: IdempotencyKey<'_>) -> Result<Option<TaskRow>> {
    let _guard = store.write_guard().await;
    let txn = store.db().begin().await.context("starting the task transaction")?;
    let row = insert_row(&txn, task).await?;
    if !remember_key(&txn, key, row.id).await? {
        txn.rollback().await.context("rolling back a duplicate task")?;
        return Ok(None);
    }
    txn.commit().await.context("committing the task")?;
    Ok(Some(row))
}

/// Remembers `key` for the task it queued, in the caller's transaction; `false` when the key
/// was taken meanwhile (roll back: a concurrent retry queued it).
pub(super) async fn remember_key<C: ConnectionTrait>(txn: &C, key: IdempotencyKey<'_>, task_id: i64) -> Result<bool> {
    let backend = txn.get_database_backend();
    let now = now_millis();
    // Expired keys of this caller go when it uses a new one: the table holds a day of keys.
    txn.execute_raw(super::statement(
        backend,
        "DELETE FROM idempotency_keys WHERE principal = ? AND created_at < ?",
        [key.principal.into(), (now - IDEMPOTENCY_TTL_MS).into()],
    ))
    .await
    .context("dropping expired idempotency keys")?;
    let inserted = txn
        .execute_raw(super::statement(
            backend,
            "INSERT INTO idempotency_keys (principal, key, request_hash, task_id, created_at) VALUES (?, ?, ?, ?, ?)
             ON CONFLICT (principal, key) DO NOTHING",
            [key.principal.into(), key.key.into(), key.request_hash.into(), task_id.into(), now.into()],
        ))
        .await
        .context("remembering the idempotency key")?;
    Ok(inserted.rows_affected() > 0)
}

/// The next task for a session to run: the oldest queued one.
pub async fn next_queued(store: &Store, device_pk: DevicePk) -> Result<Option<TaskRow>> {
    let stmt = store.statement(
        "SELECT * FROM tasks WHERE device_id = ? AND status = 'pending' AND stage = 'queued' ORDER BY id LIMIT 1",
        [device_pk.into()],
    );
    super::first::<TaskRow, _>(store.db(), stmt).await.context("loading next task")
}

pub async fn by_id(store: &Store, id: i64) -> Result<Option<TaskRow>> {
    let stmt = store.statement("SELECT * FROM tasks WHERE id = ?", [id.into()]);
    super::first::<TaskRow, _>(store.db(), stmt).await.context("loading task")
}

/// A task the caller's scope may see (through its device's organization).
pub async fn visible(store: &Store, scope: &Scope, id: i64) -> Result<Option<TaskRow>> {
    let (condition, mut args) = scope.condition("d.org_id");
    args.insert(0, id.into());
    let stmt = store.statement(
        &format!("SELECT t.* FROM tasks t JOIN devices d ON d.id = t.device_id WHERE t.id = ? AND {condition}"),
        args,
    );
    super::first::<TaskRow, _>(store.db(), stmt).await.context("loading task")
}

pub async fn list_for_device(
    store: &Store,
    device_pk: DevicePk,
    after: Option<i64>,
    limit: u64,
) -> Result<Vec<TaskRow>> {
    let mut args: Vec<Value> = vec![device_pk.into()];
    let mut sql = String::from("SELECT * FROM tasks WHERE device_id = ?");
    if let Some(after) = after {
        sql.push_str(" AND id > ?");
        args.push(after.into());
    }
    sql.push_str(" ORDER BY id LIMIT ?");
    args.push((limit as i64).into());
    TaskRow::find_by_statement(store.statement(&sql, args)).all(store.db()).await.context("listing tasks")
}

/// The transfer task a TransferComplete answers, matched by CommandKey. A CPE re-sends
/// TransferComplete until acknowledged, so a task already closed matches too and the handler
/// stays idempotent.
pub async fn by_command_key(store: &Store, device_pk: DevicePk, command_key: &str) -> Result<Option<TaskRow>> {
    let stmt = store.statement(
        "SELECT * FROM tasks WHERE device_id = ? AND command_key = ? ORDER BY id DESC LIMIT 1",
        [device_pk.into(), command_key.into()],
    );
    super::first::<TaskRow, _>(store.db(), stmt).await.context("loading transfer task")
}

pub async fn mark_attempt(store: &Store, id: i64) -> Result<()> {
    exec(store, "UPDATE tasks SET attempts = attempts + 1 WHERE id = ?", vec![id.into()]).await
}

pub async fn mark_transferring(store: &Store, id: i64, command_key: &str) -> Result<()> {
    exec(
        store,
        "UPDATE tasks SET stage = 'transferring', command_key = ? WHERE id = ? AND status = 'pending'",
        vec![command_key.into(), id.into()],
    )
    .await
}

/// Sets the CommandKey before the RPC goes out, so a TransferComplete or `M Reboot` arriving in a
/// later session finds its task even if this session dies right after.
pub async fn set_command_key(store: &Store, id: i64, command_key: &str) -> Result<()> {
    exec(store, "UPDATE tasks SET command_key = ? WHERE id = ?", vec![command_key.into(), id.into()]).await
}

/// A task done, with its `task.done` event, in one transaction.
pub async fn mark_done(store: &Store, id: i64, result: Option<&serde_json::Value>) -> Result<()> {
    let result = result.map(|r| r.to_string());
    let _guard = store.write_guard().await;
    let txn = store.db().begin().await.context("starting transaction")?;
    let done = super::first::<TaskRow, _>(
        &txn,
        super::statement(
            txn.get_database_backend(),
            "UPDATE tasks SET status = 'done', stage = 'queued', result = ?, done_at = ?,
             fault_code = NULL, fault_message = NULL, fault_detail = NULL WHERE id = ? AND status = 'pending' RETURNING *",
            [result.into(), now_millis().into(), id.into()],
        ),
    )
    .await
    .context("marking task done")?;
    if let Some(task) = done {
        record_event(&txn, &task, EventType::TaskDone, None).await?;
    }
    txn.commit().await.context("committing task done")
}

/// `task.done` or `task.fault`, under the task's organization, its device as the subject.
async fn record_event<C: ConnectionTrait>(
    db: &C,
    task: &TaskRow,
    kind: EventType,
    fault: Option<(&str, &str)>,
) -> Result<()> {
    let device = super::first_row(
        db,
        super::statement(
            db.get_database_backend(),
            "SELECT device_id FROM devices WHERE id = ?",
            [task.device_pk.into()],
        ),
    )
    .await
    .context("the task's device")?
    .and_then(|row| row.try_get_by_index::<String>(0).ok())
    .unwrap_or_default();
    let mut payload = serde_json::json!({"device_id": device, "task_id": task.id.to_string(), "name": task.name});
    if let Some((code, message)) = fault {
        payload["fault"] = serde_json::json!({"code": code, "message": message});
    }
    super::events::record(db, kind, task.org_id, &device, &payload).await
}

/// Faults a task and records the fault against its device, in one transaction.
pub async fn mark_fault(
    store: &Store,
    task: &TaskRow,
    code: FaultCode,
    message: &str,
    detail: Option<&serde_json::Value>,
) -> Result<()> {
    use sea_orm::TransactionTrait;
    let detail = detail.map(|d| d.to_string());
    let code = code.to_string();
    let code_text = code.clone();
    let now = now_millis();
    let _guard = store.write_guard().await;
    let txn = store.db().begin().await.context("starting transaction")?;
    let backend = txn.get_database_backend();
    txn.execute_raw(super::statement(
        backend,
        "UPDATE tasks SET status = 'fault', stage = 'queued', fault_code = ?, fault_message = ?, fault_detail = ?, done_at = ?
         WHERE id = ? AND status = 'pending'",
        [code.as_str().into(), message.into(), detail.clone().into(), now.into(), task.id.into()],
    ))
    .await
    .context("faulting task")?;
    txn.execute_raw(super::statement(
        backend,
        "INSERT INTO faults (device_id, org_id, task_id, channel, code, message, detail, created_at, last_seen_at)
         VALUES (?, ?, ?, 'task', ?, ?, ?, ?, ?)",
        [
            task.device_pk.into(),
            task.org_id.into(),
            task.id.into(),
            code.into(),
            message.into(),
            detail.into(),
            now.into(),
            now.into(),
        ],
    ))
    .await
    .context("recording device fault")?;
    record_event(&txn, task, EventType::TaskFault, Some((code_text.as_str(), message))).await?;
    txn.commit().await.context("committing task fault")
}

/// Puts a faulted task back in the queue; its fault record is cleared.
pub async fn retry(store: &Store, id: i64) -> Result<bool> {
    use sea_orm::TransactionTrait;
    let _guard = store.write_guard().await;
    let txn = store.db().begin().await.context("starting transaction")?;
    let backend = txn.get_database_backend();
    let updated = txn
        .execute_raw(super::statement(
            backend,
            "UPDATE tasks SET status = 'pending', stage = 'queued', fault_code = NULL, fault_message = NULL,
             fault_detail = NULL, done_at = NULL, attempts = 0 WHERE id = ? AND status = 'fault'",
            [id.into()],
        ))
        .await
        .context("retrying task")?
        .rows_affected();
    txn.execute_raw(super::statement(backend, "DELETE FROM faults WHERE task_id = ?", [id.into()]))
        .await
        .context("clearing task fault")?;
    txn.commit().await.context("committing retry")?;
    Ok(updated > 0)
}

/// Deletes a task, whatever asked (the API, the NBI). A pending task a diagnostic's run waited
/// for calls that request off: else the run would wait for its timeout.
pub async fn delete(store: &Store, task: &TaskRow) -> Result<bool> {
    let deleted = {
        let _guard = store.write_guard().await;
        store
            .db()
            .execute_raw(store.statement("DELETE FROM tasks WHERE id = ?", [task.id.into()]))
            .await
            .context("deleting task")?
            .rows_affected()
            > 0
    };
    if deleted && task.status == TaskStatus::Pending {
        super::diagnostics::cancel_with_task(store, task.device_pk, task.id).await?;
    }
    Ok(deleted)
}

/// Faults every pending task past its expiry; returns how many.
pub async fn expire(store: &Store, device_pk: DevicePk, now: i64) -> Result<Vec<TaskRow>> {
    let stmt = store.statement(
        "SELECT * FROM tasks WHERE device_id = ? AND status = 'pending' AND expires_at IS NOT NULL AND expires_at < ?",
        [device_pk.into(), now.into()],
    );
    let expired = TaskRow::find_by_statement(stmt).all(store.db()).await.context("finding expired tasks")?;
    for task in &expired {
        mark_fault(store, task, FaultCode::TaskExpired, "The task expired before the device ran it", None).await?;
    }
    Ok(expired)
}

async fn exec(store: &Store, sql: &str, args: Vec<Value>) -> Result<()> {
    let _guard = store.write_guard().await;
    store.db().execute_raw(store.statement(sql, args)).await.with_context(|| format!("running {sql}"))?;
    Ok(())
}

/// Tasks of the scope (through their device's organization), oldest first, optionally of one
/// device and of one name.
pub async fn list_scoped(
    store: &Store,
    scope: &Scope,
    device_pk: Option<DevicePk>,
    name: Option<&str>,
    offset: u64,
    limit: u64,
) -> Result<Vec<(TaskRow, String)>> {
    let (condition, mut args) = scope.condition("d.org_id");
    let mut sql = format!(
        "SELECT t.*, d.device_id AS device_name FROM tasks t JOIN devices d ON d.id = t.device_id WHERE {condition}"
    );
    if let Some(pk) = device_pk {
        sql.push_str(" AND t.device_id = ?");
        args.push(pk.into());
    }
    if let Some(name) = name {
        sql.push_str(" AND t.name = ?");
        args.push(name.into());
    }
    sql.push_str(" ORDER BY t.id LIMIT ? OFFSET ?");
    args.push(Value::from(i64::try_from(limit).unwrap_or(i64::MAX)));
    args.push(Value::from(i64::try_from(offset).unwrap_or(i64::MAX)));
    let rows = store.db().query_all_raw(store.statement(&sql, args)).await.context("listing tasks")?;
    rows.iter()
        .map(|row| {
            let task = TaskRow::from_query_result(row, "").context("reading task")?;
            let device: String = row.try_get("", "device_name").context("reading task's device")?;
            Ok((task, device))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_and_stages_are_stored_by_name() {
        for status in [TaskStatus::Pending, TaskStatus::Done, TaskStatus::Fault] {
            assert_eq!(TaskStatus::parse(status.as_str()), Some(status));
        }
        for stage in [TaskStage::Queued, TaskStage::Transferring] {
            assert_eq!(TaskStage::parse(stage.as_str()), Some(stage));
        }
        // The names the SQL here writes.
        assert_eq!((TaskStatus::Pending.as_str(), TaskStage::Queued.as_str()), ("pending", "queued"));
        assert_eq!(TaskStatus::parse("running"), None);
        assert_eq!(TaskStage::parse("Queued"), None, "names are exact");
    }
}
