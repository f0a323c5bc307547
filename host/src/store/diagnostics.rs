//! Diagnostic runs (`crate::diagnostics`): created with the task that starts them, moved along
//! by the tasks that start and collect them, polled when a device never says it is done.

use anyhow::{Context, Result};
use sea_orm::{ConnectionTrait, FromQueryResult, TransactionTrait, Value};

use super::devices::Device;
use super::events::EventType;
use super::tasks::{IdempotencyKey, NewTask, TaskRow};
use super::{DevicePk, Store, now_millis, statement};
use crate::diagnostics::RunStatus;
use crate::fault_code::FaultCode;
use crate::tasks::DiagnosticKind;

stored_names!(RunStatus {
    Waiting => "waiting",
    Queued => "queued",
    Requested => "requested",
    Complete => "complete",
    Error => "error",
    Fault => "fault",
    Timeout => "timeout",
});

#[derive(Debug, Clone, FromQueryResult)]
pub struct Run {
    pub id: i64,
    #[sea_orm(from_alias = "device_id")]
    pub device_pk: DevicePk,
    pub kind: String,
    pub status: RunStatus,
    /// The `startDiagnostic` task body.
    pub request: String,
    pub state: Option<String>,
    pub results: Option<String>,
    pub raw: Option<String>,
    pub summary: Option<String>,
    pub fault_code: Option<String>,
    pub fault_message: Option<String>,
    pub start_task_id: Option<i64>,
    pub collect_task_id: Option<i64>,
    pub after_id: Option<i64>,
    pub token_hash: Option<String>,
    pub created_at: i64,
    pub requested_at: Option<i64>,
    pub polled_at: Option<i64>,
    pub completed_at: Option<i64>,
}

impl Run {
    pub fn kind(&self) -> Option<DiagnosticKind> {
        DiagnosticKind::parse(&self.kind)
    }
}

/// A run to create: its `startDiagnostic` body, and the SHA-256 of its endpoint token.
#[derive(Debug)]
pub struct NewRun {
    pub kind: DiagnosticKind,
    pub body: serde_json::Value,
    pub token_hash: Option<String>,
}

/// Creates runs for a device, the first queued with its start task, each later one waiting for
/// the one before it to end (a speed test's upload after its download). In one transaction,
/// with the request's `Idempotency-Key` remembered for the start task when there is one:
/// `Ok(None)` when a concurrent retry took the key first (look it up again).
pub async fn create(
    store: &Store,
    device: &Device,
    runs: Vec<NewRun>,
    key: Option<IdempotencyKey<'_>>,
) -> Result<Option<Vec<Run>>> {
    let _guard = store.write_guard().await;
    let txn = store.db().begin().await.context("starting the diagnostic")?;
    let backend = txn.get_database_backend();
    let now = now_millis();
    let mut created: Vec<Run> = Vec::new();
    for run in runs {
        let after = created.last().map(|r| r.id);
        let status = if after.is_some() { RunStatus::Waiting } else { RunStatus::Queued };
        let row = super::first::<Run, _>(
            &txn,
            statement(
                backend,
                "INSERT INTO diagnostics (device_id, kind, status, request, after_id, token_hash, created_at)
                 VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING *",
                [
                    device.id.into(),
                    run.kind.as_str().into(),
                    status.as_str().into(),
                    run.body.to_string().into(),
                    after.into(),
                    run.token_hash.into(),
                    now.into(),
                ],
            ),
        )
        .await
        .context("recording the diagnostic")?
        .context("no row for the new diagnostic")?;
        let row = match after {
            Some(_) => row,
            None => {
                let (row, task) = queue_start(&txn, device.id, device.org_id, row).await?;
                if let Some(key) = key
                    && !super::tasks::remember_key(&txn, key, task.id).await?
                {
                    txn.rollback().await.context("rolling back a repeated diagnostic")?;
                    return Ok(None);
                }
                row
            }
        };
        created.push(row);
    }
    txn.commit().await.context("committing the diagnostic")?;
    Ok(Some(created))
}

/// The runs one request created for a device, in order: the one its start task (`task_id`)
/// started, and those that waited for it. (Within the device's runs: neither column is indexed.)
pub async fn started_by(store: &Store, device_pk: DevicePk, task_id: i64) -> Result<Vec<Run>> {
    let stmt = store.statement(
        "SELECT * FROM diagnostics WHERE device_id = ? AND start_task_id = ?",
        [device_pk.into(), task_id.into()],
    );
    let mut runs: Vec<Run> =
        super::first::<Run, _>(store.db(), stmt).await.context("loading a diagnostic")?.into_iter().collect();
    while let Some(last) = runs.last() {
        let stmt = store.statement(
            "SELECT * FROM diagnostics WHERE device_id = ? AND after_id = ?",
            [device_pk.into(), last.id.into()],
        );
        match super::first::<Run, _>(store.db(), stmt).await.context("loading a diagnostic")? {
            Some(next) => runs.push(next),
            None => break,
        }
    }
    Ok(runs)
}

async fn queue_start<C: ConnectionTrait>(
    db: &C,
    device_pk: DevicePk,
    org_id: Option<i64>,
    run: Run,
) -> Result<(Run, TaskRow)> {
    let task = super::tasks::insert_row(
        db,
        NewTask { device_pk, org_id, name: "startDiagnostic", body: &run.request, sealed_body: None, expires_at: None },
    )
    .await?;
    let row = super::first::<Run, _>(
        db,
        statement(
            db.get_database_backend(),
            "UPDATE diagnostics SET status = 'queued', start_task_id = ? WHERE id = ? RETURNING *",
            [task.id.into(), run.id.into()],
        ),
    )
    .await
    .context("linking the diagnostic to its task")?
    .context("the diagnostic vanished")?;
    Ok((row, task))
}

pub async fn by_id(store: &Store, id: i64) -> Result<Option<Run>> {
    let stmt = store.statement("SELECT * FROM diagnostics WHERE id = ?", [id.into()]);
    super::first::<Run, _>(store.db(), stmt).await.context("loading a diagnostic")
}

/// Ends the open run a deleted task was for, and the runs that waited for it (a speed test's
/// upload behind its download): deleting the task called the request off.
pub(super) async fn cancel_with_task(store: &Store, device_pk: DevicePk, task_id: i64) -> Result<()> {
    let Some(mut run) = of_task(store, device_pk, task_id).await? else { return Ok(()) };
    let Some(device) = super::devices::by_pk(store, device_pk).await? else { return Ok(()) };
    let mut message = "The diagnostic's task was deleted";
    while let Some(next) = end_run(store, &device, &run, FaultCode::TaskCancelled, message).await? {
        let Some(waiting) = of_task(store, device_pk, next.id).await? else { break };
        run = waiting;
        message = "The diagnostic it waited for was called off";
    }
    Ok(())
}

/// The run a task of the device starts or collects. (Within the device's runs: neither task
/// column is indexed.)
pub async fn of_task(store: &Store, device_pk: DevicePk, task_id: i64) -> Result<Option<Run>> {
    let stmt = store.statement(
        "SELECT * FROM diagnostics WHERE device_id = ? AND (start_task_id = ? OR collect_task_id = ?) ORDER BY id LIMIT 1",
        [device_pk.into(), task_id.into(), task_id.into()],
    );
    super::first::<Run, _>(store.db(), stmt).await.context("loading a task's diagnostic")
}

/// Ends as a fault the open run a task starts or collects, when the task failed or was deleted
/// before it could move the run along (a task faulted before it began, say after too many
/// attempts): else the run would wait for its timeout. The task queued for the run that waited
/// for it, if any.
pub async fn end_with_task(
    store: &Store,
    device: &Device,
    task_id: i64,
    code: FaultCode,
    message: &str,
) -> Result<Option<TaskRow>> {
    let Some(run) = of_task(store, device.id, task_id).await? else { return Ok(None) };
    end_run(store, device, &run, code, message).await
}

/// Ends a run as a fault unless it is over; the task queued for the run that waited for it.
async fn end_run(store: &Store, device: &Device, run: &Run, code: FaultCode, message: &str) -> Result<Option<TaskRow>> {
    if run.status.is_over() {
        return Ok(None);
    }
    let collected =
        Collected { status: RunStatus::Fault, state: run.state.clone(), results: None, raw: None, summary: None };
    finish(store, run, device, collected, Some((code, message))).await
}

/// The device has the run's inputs and `DiagnosticsState=Requested`.
pub async fn requested(store: &Store, run: &Run) -> Result<()> {
    let _guard = store.write_guard().await;
    let now = now_millis();
    let stmt = store.statement(
        "UPDATE diagnostics SET status = 'requested', requested_at = ?, polled_at = ? WHERE id = ? AND status = 'queued'",
        [now.into(), now.into(), run.id.into()],
    );
    store.db().execute_raw(stmt).await.context("marking the diagnostic requested")?;
    Ok(())
}

/// What collecting a run found.
#[derive(Debug)]
pub struct Collected {
    pub status: RunStatus,
    pub state: Option<String>,
    pub results: Option<serde_json::Value>,
    pub raw: Option<serde_json::Value>,
    pub summary: Option<serde_json::Value>,
}

/// Ends a run (or fails it: `Collected { status: Fault, .. }` with `fault`) and records
/// `diagnostics.completed`; the run waiting for it gets its start task. Still `Requested`: the
/// run stays open for the next poll. In one transaction. The task queued for the next run.
pub async fn finish(
    store: &Store,
    run: &Run,
    device: &Device,
    collected: Collected,
    fault: Option<(FaultCode, &str)>,
) -> Result<Option<TaskRow>> {
    let _guard = store.write_guard().await;
    let txn = store.db().begin().await.context("starting the diagnostic's end")?;
    let backend = txn.get_database_backend();
    let now = now_millis();
    let json = |v: &Option<serde_json::Value>| -> Value { v.as_ref().map(|v| v.to_string()).into() };
    if !collected.status.is_over() {
        txn.execute_raw(statement(
            backend,
            "UPDATE diagnostics SET state = ? WHERE id = ?",
            [collected.state.clone().into(), run.id.into()],
        ))
        .await
        .context("noting the diagnostic's state")?;
        txn.commit().await.context("committing the diagnostic's state")?;
        return Ok(None);
    }
    let ended = txn
        .execute_raw(statement(
            backend,
            "UPDATE diagnostics SET status = ?, state = ?, results = ?, raw = ?, summary = ?, fault_code = ?,
             fault_message = ?, completed_at = ?, token_hash = NULL
             WHERE id = ? AND status IN ('queued', 'requested')",
            [
                collected.status.as_str().into(),
                collected.state.clone().into(),
                json(&collected.results),
                json(&collected.raw),
                json(&collected.summary),
                fault.map(|f| f.0.to_string()).into(),
                fault.map(|f| f.1).into(),
                now.into(),
                run.id.into(),
            ],
        ))
        .await
        .context("ending the diagnostic")?
        .rows_affected();
    if ended == 0 {
        return Ok(None);
    }
    // A run that ended without the device (timeout, a fault) must not start later behind it.
    // Its tasks are closed, not deleted: an `Idempotency-Key` names the start task, and a retry
    // must still find the runs it made.
    let (code, message) = fault.unwrap_or((FaultCode::TaskCancelled, "The diagnostic ended before this task ran"));
    for task in [run.start_task_id, run.collect_task_id].into_iter().flatten() {
        txn.execute_raw(statement(
            backend,
            "UPDATE tasks SET status = 'fault', fault_code = ?, fault_message = ?, done_at = ?
             WHERE id = ? AND status = 'pending' AND stage = 'queued'",
            [code.to_string().into(), message.into(), now.into(), task.into()],
        ))
        .await
        .context("closing the ended diagnostic's tasks")?;
    }
    let payload = serde_json::json!({
        "device_id": device.device_id,
        "diagnostic_id": run.id.to_string(),
        "kind": run.kind,
        "status": collected.status,
        "summary": collected.summary,
    });
    super::events::record(&txn, EventType::DiagnosticsCompleted, device.org_id, &device.device_id, &payload).await?;
    let next = super::first::<Run, _>(
        &txn,
        statement(
            backend,
            "SELECT * FROM diagnostics WHERE device_id = ? AND after_id = ? AND status = 'waiting'",
            [device.id.into(), run.id.into()],
        ),
    )
    .await
    .context("finding the diagnostic that waits")?;
    let task = match next {
        Some(next) => Some(queue_start(&txn, device.id, device.org_id, next).await?.1),
        None => None,
    };
    txn.commit().await.context("committing the diagnostic's end")?;
    Ok(task)
}

/// In the transaction of an Inform with `8 DIAGNOSTICS COMPLETE`: a collect task for each run
/// the device has that is not being collected already. Whether one was queued.
pub(super) async fn queue_collections<C: ConnectionTrait>(db: &C, device: &Device) -> Result<bool> {
    let runs = Run::find_by_statement(statement(
        db.get_database_backend(),
        "SELECT * FROM diagnostics d WHERE d.device_id = ? AND d.status = 'requested'
         AND NOT EXISTS (SELECT 1 FROM tasks t WHERE t.id = d.collect_task_id AND t.status = 'pending')",
        [device.id.into()],
    ))
    .all(db)
    .await
    .context("finding diagnostics to collect")?;
    let mut queued = false;
    for run in &runs {
        queued |= queue_collect(db, device.id, device.org_id, run, now_millis()).await?.is_some();
    }
    Ok(queued)
}

/// Queues the collection of a requested run, unless another took it since `run` was read:
/// the poll of another replica, or the device's `8 DIAGNOSTICS COMPLETE` on another. The run is
/// claimed first by moving `polled_at` from what was read (under PostgreSQL's row lock, the
/// later of two claims finds it moved and stands down), so one collection is queued, not two.
async fn queue_collect<C: ConnectionTrait>(
    db: &C,
    device_pk: DevicePk,
    org_id: Option<i64>,
    run: &Run,
    now: i64,
) -> Result<Option<TaskRow>> {
    let backend = db.get_database_backend();
    let claimed = db
        .execute_raw(statement(
            backend,
            "UPDATE diagnostics SET polled_at = ? WHERE id = ? AND status = 'requested' AND COALESCE(polled_at, -1) = ?",
            [now.max(run.polled_at.unwrap_or(0) + 1).into(), run.id.into(), run.polled_at.unwrap_or(-1).into()],
        ))
        .await
        .context("claiming the diagnostic's collection")?
        .rows_affected();
    if claimed == 0 {
        return Ok(None);
    }
    let body = serde_json::json!({"name": "collectDiagnostic", "diagnostic": run.kind}).to_string();
    let task = super::tasks::insert_row(
        db,
        NewTask { device_pk, org_id, name: "collectDiagnostic", body: &body, sealed_body: None, expires_at: None },
    )
    .await?;
    db.execute_raw(statement(
        backend,
        "UPDATE diagnostics SET collect_task_id = ? WHERE id = ?",
        [task.id.into(), run.id.into()],
    ))
    .await
    .context("linking the diagnostic to its collection")?;
    Ok(Some(task))
}

/// The device's open run that would share a diagnostic object with a new run of `kind`: one of
/// the same kind (a device has one object per kind), or any speed test for a speed test (its
/// two directions run one after the other).
pub async fn open_conflicting(store: &Store, device_pk: DevicePk, kind: DiagnosticKind) -> Result<Option<Run>> {
    let transfer = matches!(kind, DiagnosticKind::Download | DiagnosticKind::Upload);
    let kinds = if transfer { "('download', 'upload')" } else { "(?)" };
    let mut args: Vec<Value> = vec![device_pk.into()];
    if !transfer {
        args.push(kind.as_str().into());
    }
    let stmt = store.statement(
        &format!(
            "SELECT * FROM diagnostics WHERE device_id = ? AND kind IN {kinds}
             AND status IN ('waiting', 'queued', 'requested') ORDER BY id LIMIT 1"
        ),
        args,
    );
    super::first::<Run, _>(store.db(), stmt).await.context("looking for an open diagnostic")
}

/// Whether any run is still open: the poll's one statement while there is nothing to follow
/// (an index probe, no transaction).
pub async fn any_open(store: &Store) -> Result<bool> {
    let stmt = store.statement(
        "SELECT 1 FROM diagnostics WHERE status IN ('waiting', 'queued', 'requested') LIMIT 1",
        Vec::<Value>::new(),
    );
    Ok(super::first_row(store.db(), stmt).await.context("looking for open diagnostics")?.is_some())
}

/// Runs requested at least `poll_after` ms ago (or polled that long ago) whose device never
/// reported them done, with no collection pending: each gets a collect task. The devices to
/// wake, once each.
pub async fn poll(store: &Store, now: i64, poll_after: i64) -> Result<Vec<DevicePk>> {
    let _guard = store.write_guard().await;
    let txn = store.db().begin().await.context("starting the diagnostics poll")?;
    let runs = Run::find_by_statement(statement(
        txn.get_database_backend(),
        "SELECT * FROM diagnostics d WHERE d.status = 'requested' AND d.polled_at <= ?
         AND NOT EXISTS (SELECT 1 FROM tasks t WHERE t.id = d.collect_task_id AND t.status = 'pending')
         ORDER BY d.polled_at, d.id LIMIT 1000",
        [(now - poll_after).into()],
    ))
    .all(&txn)
    .await
    .context("finding diagnostics to poll")?;
    let mut devices = Vec::new();
    for run in &runs {
        let org = super::first_row(
            &txn,
            statement(txn.get_database_backend(), "SELECT org_id FROM devices WHERE id = ?", [run.device_pk.into()]),
        )
        .await
        .context("the diagnostic's device")?
        .and_then(|row| row.try_get_by_index::<Option<i64>>(0).ok())
        .flatten();
        if queue_collect(&txn, run.device_pk, org, run, now).await?.is_none() {
            continue;
        }
        if !devices.contains(&run.device_pk) {
            devices.push(run.device_pk);
        }
    }
    txn.commit().await.context("committing the diagnostics poll")?;
    Ok(devices)
}

/// Runs not over `timeout` ms after they were created: ended as `timeout`, with their event.
pub async fn expire(store: &Store, now: i64, timeout: i64) -> Result<u64> {
    let stale = Run::find_by_statement(store.statement(
        "SELECT * FROM diagnostics WHERE status IN ('waiting', 'queued', 'requested') AND created_at <= ? LIMIT 1000",
        [(now - timeout).into()],
    ))
    .all(store.db())
    .await
    .context("finding diagnostics past their time")?;
    let mut expired = 0;
    for run in &stale {
        // Ending one run may have started the next (a speed test's upload): act on each as it is now.
        let Some(run) = by_id(store, run.id).await? else { continue };
        let run = &run;
        if run.status.is_over() {
            continue;
        }
        let Some(device) = super::devices::by_pk(store, run.device_pk).await? else { continue };
        let collected =
            Collected { status: RunStatus::Timeout, state: run.state.clone(), results: None, raw: None, summary: None };
        if run.status == RunStatus::Waiting {
            // Never started: its predecessor's end would have queued it.
            let stmt = store.statement(
                "UPDATE diagnostics SET status = 'timeout', completed_at = ?, token_hash = NULL
                 WHERE id = ? AND status = 'waiting'",
                [now.into(), run.id.into()],
            );
            let _guard = store.write_guard().await;
            store.db().execute_raw(stmt).await.context("expiring a waiting diagnostic")?;
        } else {
            finish(
                store,
                run,
                &device,
                collected,
                Some((FaultCode::DiagnosticTimeout, "The device never reported the diagnostic done")),
            )
            .await?;
        }
        expired += 1;
    }
    Ok(expired)
}

/// A device's runs (of one kind, when given), newest first, before `before`.
pub async fn list_for_device(
    store: &Store,
    device_pk: DevicePk,
    kind: Option<DiagnosticKind>,
    before: Option<i64>,
    limit: u64,
) -> Result<Vec<Run>> {
    let mut sql = String::from("SELECT * FROM diagnostics WHERE device_id = ?");
    let mut args: Vec<Value> = vec![device_pk.into()];
    if let Some(kind) = kind {
        sql.push_str(" AND kind = ?");
        args.push(kind.as_str().into());
    }
    if let Some(before) = before {
        sql.push_str(" AND id < ?");
        args.push(before.into());
    }
    sql.push_str(" ORDER BY id DESC LIMIT ?");
    args.push(i64::try_from(limit).unwrap_or(i64::MAX).into());
    Run::find_by_statement(store.statement(&sql, args)).all(store.db()).await.context("listing diagnostics")
}

/// The newest run of each kind of a device.
pub async fn latest_for_device(store: &Store, device_pk: DevicePk) -> Result<Vec<Run>> {
    let stmt = store.statement(
        "SELECT * FROM diagnostics WHERE id IN (SELECT MAX(id) FROM diagnostics WHERE device_id = ? GROUP BY kind)
         ORDER BY kind",
        [device_pk.into()],
    );
    Run::find_by_statement(stmt).all(store.db()).await.context("listing the latest diagnostics")
}

/// The open speed-test run a TR-143 endpoint token belongs to.
pub async fn by_token(store: &Store, token_hash: &str) -> Result<Option<Run>> {
    let stmt = store.statement(
        "SELECT * FROM diagnostics WHERE token_hash = ? AND status IN ('waiting', 'queued', 'requested')",
        [token_hash.into()],
    );
    super::first::<Run, _>(store.db(), stmt).await.context("looking up a test endpoint token")
}
