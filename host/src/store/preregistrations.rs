//! Serials an organization expects: a device with one joins that organization at its first
//! Inform, without waiting among the pending devices.

use anyhow::{Context, Result};
use sea_orm::{ConnectionTrait, FromQueryResult, TransactionTrait, Value};

use super::orgs::Scope;
use super::{Store, now_millis};

#[derive(Debug, Clone, FromQueryResult)]
pub struct Preregistration {
    pub org_id: i64,
    pub serial_number: String,
    pub created_by: String,
    pub created_at: i64,
}

/// Adds serials for an organization; those it expects already are left as they are. Returns how
/// many were new.
pub async fn add(store: &Store, org_id: i64, serials: &[String], created_by: &str) -> Result<u64> {
    let _guard = store.write_guard().await;
    let txn = store.db().begin().await.context("starting the pre-registration")?;
    let backend = txn.get_database_backend();
    let now = now_millis();
    let mut added = 0;
    for serial in serials {
        let result = txn
            .execute_raw(super::statement(
                backend,
                "INSERT INTO preregistrations (org_id, serial_number, created_by, created_at) VALUES (?, ?, ?, ?)
                 ON CONFLICT (org_id, serial_number) DO NOTHING",
                [org_id.into(), serial.as_str().into(), created_by.into(), now.into()],
            ))
            .await
            .context("pre-registering a serial")?;
        added += result.rows_affected();
    }
    txn.commit().await.context("committing the pre-registration")?;
    Ok(added)
}

/// Pre-registrations of the scope, by organization and serial, after `after` (an
/// `org_id:serial` key).
pub async fn list(
    store: &Store,
    scope: &Scope,
    after: Option<(i64, String)>,
    limit: u64,
) -> Result<Vec<Preregistration>> {
    let (condition, mut args) = scope.condition("org_id");
    let mut sql = format!("SELECT * FROM preregistrations WHERE {condition}");
    if let Some((org, serial)) = after {
        sql.push_str(" AND (org_id > ? OR (org_id = ? AND serial_number > ?))");
        args.extend([org.into(), org.into(), serial.into()]);
    }
    sql.push_str(" ORDER BY org_id, serial_number LIMIT ?");
    args.push(Value::from(i64::try_from(limit).unwrap_or(i64::MAX)));
    Preregistration::find_by_statement(store.statement(&sql, args))
        .all(store.db())
        .await
        .context("listing pre-registrations")
}

/// Removes one of the scope's pre-registrations; whether there was one.
pub async fn remove(store: &Store, scope: &Scope, serial: &str) -> Result<u64> {
    let _guard = store.write_guard().await;
    let (condition, mut args) = scope.condition("org_id");
    args.insert(0, serial.into());
    let stmt = store.statement(&format!("DELETE FROM preregistrations WHERE serial_number = ? AND {condition}"), args);
    Ok(store.db().execute_raw(stmt).await.context("removing pre-registration")?.rows_affected())
}

/// The organization that expects `serial`, if exactly one does: when several do, none is
/// believed and the device waits among the pending devices for someone to claim it.
pub async fn only_org_expecting<C: ConnectionTrait>(db: &C, serial: &str) -> Result<Option<i64>> {
    let rows = db
        .query_all_raw(super::statement(
            db.get_database_backend(),
            "SELECT org_id FROM preregistrations WHERE serial_number = ? LIMIT 2",
            [serial.into()],
        ))
        .await
        .context("looking up pre-registrations")?;
    if rows.len() != 1 {
        return Ok(None);
    }
    rows.first().map(|row| row.try_get_by_index::<i64>(0).context("organization id")).transpose()
}
