//! Faults recorded against devices.

use anyhow::{Context, Result};
use sea_orm::{ConnectionTrait, FromQueryResult, Value};

use super::DevicePk;
use super::Store;
use crate::fault_code::{FaultCode, FaultKind};

#[derive(Debug, Clone, FromQueryResult)]
pub struct FaultRow {
    pub id: i64,
    #[sea_orm(from_alias = "device_id")]
    pub device_pk: DevicePk,
    pub org_id: Option<i64>,
    pub task_id: Option<i64>,
    pub channel: String,
    pub code: String,
    pub message: String,
    pub detail: Option<String>,
    /// When it first happened.
    pub created_at: i64,
    /// How often it happened: a fault that repeats (same device, channel and code, outside a
    /// task) is one row.
    pub occurrences: i64,
    pub last_seen_at: i64,
}

pub async fn list_for_device(
    store: &Store,
    device_pk: DevicePk,
    after: Option<i64>,
    limit: u64,
) -> Result<Vec<FaultRow>> {
    let mut args: Vec<Value> = vec![device_pk.into()];
    let mut sql = String::from("SELECT * FROM faults WHERE device_id = ?");
    if let Some(after) = after {
        sql.push_str(" AND id > ?");
        args.push(after.into());
    }
    sql.push_str(" ORDER BY id LIMIT ?");
    args.push((limit as i64).into());
    FaultRow::find_by_statement(store.statement(&sql, args)).all(store.db()).await.context("listing faults")
}

/// Records a fault that belongs to no task (e.g. a bootstrap step the CPE refused). The same
/// fault again (device, channel and code) counts as another occurrence of the one recorded, with
/// its latest message: a preset refused every session is one row, not one per session. Its
/// organization is the device's as it is now, not as the session that saw the fault began (a
/// device moved meanwhile belongs to its new organization's counts).
pub async fn record(
    store: &Store,
    device_pk: DevicePk,
    channel: &str,
    code: FaultCode,
    message: &str,
    detail: Option<&serde_json::Value>,
) -> Result<()> {
    use sea_orm::ConnectionTrait;
    let _guard = store.write_guard().await;
    let now = super::now_millis();
    store
        .db()
        .execute_raw(store.statement(
            "INSERT INTO faults (device_id, org_id, task_id, channel, code, message, detail, created_at, last_seen_at)
             VALUES (?, (SELECT org_id FROM devices WHERE id = ?), NULL, ?, ?, ?, ?, ?, ?)
             ON CONFLICT (device_id, channel, code) WHERE task_id IS NULL DO UPDATE SET
             occurrences = faults.occurrences + 1, last_seen_at = excluded.last_seen_at,
             message = excluded.message, detail = excluded.detail, org_id = excluded.org_id",
            [
                device_pk.into(),
                device_pk.into(),
                channel.into(),
                code.to_string().into(),
                message.into(),
                detail.map(|d| d.to_string()).into(),
                now.into(),
                now.into(),
            ],
        ))
        .await
        .context("recording fault")?;
    let kind = match crate::fault_code::FaultKind::of(&code.to_string()) {
        crate::fault_code::FaultKind::Cpe => "cpe",
        crate::fault_code::FaultKind::Plugin => "plugin",
        crate::fault_code::FaultKind::Provisioning => "provisioning",
    };
    store.counters().faults.inc(kind);
    Ok(())
}

/// What `GET /api/v1/faults` narrows to.
#[derive(Debug, Clone, Default)]
pub struct FaultFilter {
    /// Only faults of these organizations (a subtree within the caller's scope).
    pub orgs: Option<Vec<i64>>,
    pub device_pk: Option<DevicePk>,
    pub code: Option<String>,
    pub kind: Option<FaultKind>,
    /// Last seen at or after.
    pub since: Option<i64>,
    /// Last seen before.
    pub until: Option<i64>,
}

/// Where a page of faults, newest first, continues: after this last-seen time and id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FaultCursor {
    pub last_seen_at: i64,
    pub id: i64,
}

/// Faults of the scope that match, the most recently seen first, with their device's id.
pub async fn list(
    store: &Store,
    scope: &super::orgs::Scope,
    filter: &FaultFilter,
    after: Option<FaultCursor>,
    limit: u64,
) -> Result<Vec<(FaultRow, String)>> {
    // A fault's organization is its device's: moved with it, and read from it when recorded.
    let (condition, mut args) = scope.condition("f.org_id");
    let mut sql = format!(
        "SELECT f.*, d.device_id AS device_name FROM faults f JOIN devices d ON d.id = f.device_id WHERE {condition}"
    );
    if let Some(orgs) = &filter.orgs {
        let (condition, more) = super::orgs::Scope::Orgs(orgs.clone()).condition("f.org_id");
        sql.push_str(&format!(" AND {condition}"));
        args.extend(more);
    }
    if let Some(pk) = filter.device_pk {
        sql.push_str(" AND f.device_id = ?");
        args.push(pk.into());
    }
    if let Some(code) = &filter.code {
        sql.push_str(" AND f.code = ?");
        args.push(code.as_str().into());
    }
    let (cpe, plugin) = FaultKind::prefixes();
    match filter.kind {
        Some(FaultKind::Cpe) => {
            sql.push_str(" AND f.code LIKE ?");
            args.push(format!("{cpe}%").into());
        }
        Some(FaultKind::Plugin) => {
            sql.push_str(" AND f.code LIKE ?");
            args.push(format!("{plugin}%").into());
        }
        Some(FaultKind::Provisioning) => {
            sql.push_str(" AND f.code NOT LIKE ? AND f.code NOT LIKE ?");
            args.extend([format!("{cpe}%").into(), format!("{plugin}%").into()]);
        }
        None => {}
    }
    if let Some(since) = filter.since {
        sql.push_str(" AND f.last_seen_at >= ?");
        args.push(since.into());
    }
    if let Some(until) = filter.until {
        sql.push_str(" AND f.last_seen_at < ?");
        args.push(until.into());
    }
    if let Some(after) = after {
        sql.push_str(" AND (f.last_seen_at < ? OR (f.last_seen_at = ? AND f.id < ?))");
        args.extend([after.last_seen_at.into(), after.last_seen_at.into(), after.id.into()]);
    }
    sql.push_str(" ORDER BY f.last_seen_at DESC, f.id DESC LIMIT ?");
    args.push(Value::from(i64::try_from(limit).unwrap_or(i64::MAX)));
    let rows = store.db().query_all_raw(store.statement(&sql, args)).await.context("listing faults")?;
    rows.iter().map(with_device).collect()
}

/// A fault of the scope, with its device's id.
pub async fn visible(store: &Store, scope: &super::orgs::Scope, id: i64) -> Result<Option<(FaultRow, String)>> {
    let (condition, mut args) = scope.condition("d.org_id");
    args.insert(0, id.into());
    let sql = format!(
        "SELECT f.*, d.device_id AS device_name FROM faults f JOIN devices d ON d.id = f.device_id \
         WHERE f.id = ? AND {condition}"
    );
    let row = super::first_row(store.db(), store.statement(&sql, args)).await.context("reading fault")?;
    row.as_ref().map(with_device).transpose()
}

/// A fault row selected with its device's id (`device_name`).
fn with_device(row: &sea_orm::QueryResult) -> Result<(FaultRow, String)> {
    let fault = FaultRow::from_query_result(row, "").context("reading fault")?;
    let device: String = row.try_get("", "device_name").context("reading fault's device")?;
    Ok((fault, device))
}

/// Faults of the scope (through their device's organization), oldest first, optionally of one
/// device.
pub async fn list_scoped(
    store: &Store,
    scope: &super::orgs::Scope,
    device_pk: Option<DevicePk>,
    offset: u64,
    limit: u64,
) -> Result<Vec<(FaultRow, String)>> {
    let (condition, mut args) = scope.condition("d.org_id");
    let mut sql = format!(
        "SELECT f.*, d.device_id AS device_name FROM faults f JOIN devices d ON d.id = f.device_id WHERE {condition}"
    );
    if let Some(pk) = device_pk {
        sql.push_str(" AND f.device_id = ?");
        args.push(pk.into());
    }
    sql.push_str(" ORDER BY f.id LIMIT ? OFFSET ?");
    args.push(Value::from(i64::try_from(limit).unwrap_or(i64::MAX)));
    args.push(Value::from(i64::try_from(offset).unwrap_or(i64::MAX)));
    let rows = store.db().query_all_raw(store.statement(&sql, args)).await.context("listing faults")?;
    rows.iter().map(with_device).collect()
}

/// Deletes a fault of the scope; whether there was one.
pub async fn delete_scoped(store: &Store, scope: &super::orgs::Scope, id: i64) -> Result<bool> {
    let _guard = store.write_guard().await;
    let (condition, mut args) = scope.condition("d.org_id");
    args.insert(0, id.into());
    let stmt = store.statement(
        &format!("DELETE FROM faults WHERE id = ? AND device_id IN (SELECT d.id FROM devices d WHERE {condition})"),
        args,
    );
    Ok(store.db().execute_raw(stmt).await.context("deleting fault")?.rows_affected() > 0)
}
