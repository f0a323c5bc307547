//! Faults recorded against devices.

use anyhow::{Context, Result};
use sea_orm::{ConnectionTrait, FromQueryResult, Value};

use super::DevicePk;
use super::Store;
use crate::fault_code::FaultCode;

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
    pub created_at: i64,
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

/// Records a fault that belongs to no task (e.g. a bootstrap step the CPE refused).
pub async fn record(
    store: &Store,
    device_pk: DevicePk,
    org_id: Option<i64>,
    channel: &str,
    code: FaultCode,
    message: &str,
    detail: Option<&serde_json::Value>,
) -> Result<()> {
    use sea_orm::ConnectionTrait;
    let _guard = store.write_guard().await;
    store
        .db()
        .execute_raw(store.statement(
            "INSERT INTO faults (device_id, org_id, task_id, channel, code, message, detail, created_at)
             VALUES (?, ?, NULL, ?, ?, ?, ?, ?)",
            [
                device_pk.into(),
                org_id.into(),
                channel.into(),
                code.to_string().into(),
                message.into(),
                detail.map(|d| d.to_string()).into(),
                super::now_millis().into(),
            ],
        ))
        .await
        .context("recording fault")?;
    Ok(())
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
    rows.iter()
        .map(|row| {
            let fault = FaultRow::from_query_result(row, "").context("reading fault")?;
            let device: String = row.try_get("", "device_name").context("reading fault's device")?;
            Ok((fault, device))
        })
        .collect()
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
