//! Faults recorded against devices.

use anyhow::{Context, Result};
use sea_orm::{FromQueryResult, Value};

use super::Store;

#[derive(Debug, Clone, FromQueryResult)]
pub struct FaultRow {
    pub id: i64,
    pub device_id: i64,
    pub org_id: Option<i64>,
    pub task_id: Option<i64>,
    pub channel: String,
    pub code: String,
    pub message: String,
    pub detail: Option<String>,
    pub created_at: i64,
}

pub async fn list_for_device(store: &Store, device_pk: i64, after: Option<i64>, limit: u64) -> Result<Vec<FaultRow>> {
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
    device_pk: i64,
    org_id: Option<i64>,
    channel: &str,
    code: &str,
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
                code.into(),
                message.into(),
                detail.map(|d| d.to_string()).into(),
                super::now_millis().into(),
            ],
        ))
        .await
        .context("recording fault")?;
    Ok(())
}
