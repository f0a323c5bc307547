//! The fleet at a glance, for a scope: each figure one query over an index that covers it
//! (m0014), never the parameter table.

use anyhow::{Context, Result};
use sea_orm::{ConnectionTrait, Value};

use super::Store;
use super::orgs::Scope;

/// A device counts as stale once it has been offline this long.
pub const STALE_AFTER_MS: i64 = 3_600_000;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceCounts {
    pub total: i64,
    pub online: i64,
    /// Offline for more than [`STALE_AFTER_MS`] (or never informed).
    pub stale: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Breakdown {
    /// The grouping's values, in its order (e.g. manufacturer, product class).
    pub key: Vec<String>,
    pub devices: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrgCounts {
    pub org_id: i64,
    pub devices: i64,
    pub online: i64,
}

async fn rows(store: &Store, sql: &str, args: Vec<Value>) -> Result<Vec<sea_orm::QueryResult>> {
    store.db().query_all_raw(store.statement(sql, args)).await.context("reading the dashboard")
}

/// Devices of the scope: all, online at `now`, stale.
pub async fn device_counts(store: &Store, scope: &Scope, now: i64) -> Result<DeviceCounts> {
    let (condition, scope_args) = scope.condition("org_id");
    let sql = format!(
        "SELECT CAST(COUNT(*) AS BIGINT), \
         CAST(COALESCE(SUM(CASE WHEN offline_at > ? THEN 1 ELSE 0 END), 0) AS BIGINT), \
         CAST(COALESCE(SUM(CASE WHEN offline_at IS NULL OR offline_at <= ? THEN 1 ELSE 0 END), 0) AS BIGINT) \
         FROM devices WHERE {condition}"
    );
    let args = [vec![now.into(), (now - STALE_AFTER_MS).into()], scope_args].concat();
    let row = rows(store, &sql, args).await?.into_iter().next().context("a count without a row")?;
    Ok(DeviceCounts {
        total: row.try_get_by_index(0)?,
        online: row.try_get_by_index(1)?,
        stale: row.try_get_by_index(2)?,
    })
}

/// Devices no organization has claimed.
pub async fn pending(store: &Store) -> Result<i64> {
    let row = rows(store, "SELECT CAST(COUNT(*) AS BIGINT) FROM devices WHERE org_id IS NULL", Vec::new())
        .await?
        .into_iter()
        .next()
        .context("a count without a row")?;
    Ok(row.try_get_by_index(0)?)
}

/// Devices of the scope by manufacturer and product class, or (with `versions`) by software
/// version too; the largest groups first, at most `limit`.
pub async fn by_model(store: &Store, scope: &Scope, versions: bool, limit: u64) -> Result<Vec<Breakdown>> {
    let (condition, mut args) = scope.condition("org_id");
    let columns =
        if versions { "manufacturer, product_class, software_version" } else { "manufacturer, product_class" };
    let width = if versions { 3 } else { 2 };
    let sql = format!(
        "SELECT {columns}, CAST(COUNT(*) AS BIGINT) AS devices FROM devices WHERE {condition} \
         GROUP BY {columns} ORDER BY devices DESC, {columns} LIMIT ?"
    );
    args.push(i64::try_from(limit).unwrap_or(i64::MAX).into());
    rows(store, &sql, args)
        .await?
        .iter()
        .map(|row| {
            let key = (0..width).map(|i| row.try_get_by_index::<String>(i)).collect::<Result<Vec<_>, _>>()?;
            Ok(Breakdown { key, devices: row.try_get_by_index(width)? })
        })
        .collect()
}

/// Devices of the scope per organization, online at `now` among them (pending devices aside).
pub async fn by_org(store: &Store, scope: &Scope, now: i64) -> Result<Vec<OrgCounts>> {
    let (condition, scope_args) = scope.condition("org_id");
    let sql = format!(
        "SELECT org_id, CAST(COUNT(*) AS BIGINT), \
         CAST(COALESCE(SUM(CASE WHEN offline_at > ? THEN 1 ELSE 0 END), 0) AS BIGINT) \
         FROM devices WHERE org_id IS NOT NULL AND {condition} GROUP BY org_id ORDER BY org_id"
    );
    let args = [vec![now.into()], scope_args].concat();
    rows(store, &sql, args)
        .await?
        .iter()
        .map(|row| {
            Ok(OrgCounts {
                org_id: row.try_get_by_index(0)?,
                devices: row.try_get_by_index(1)?,
                online: row.try_get_by_index(2)?,
            })
        })
        .collect()
}

/// Faults of the scope recorded since `since`, per code, the most frequent first.
pub async fn faults_since(store: &Store, scope: &Scope, since: i64) -> Result<Vec<(String, i64)>> {
    let (condition, scope_args) = scope.condition("org_id");
    let sql = format!(
        "SELECT code, CAST(COUNT(*) AS BIGINT) AS n FROM faults WHERE {condition} AND created_at >= ? \
         GROUP BY code ORDER BY n DESC, code"
    );
    let args = [scope_args, vec![since.into()]].concat();
    rows(store, &sql, args).await?.iter().map(|row| Ok((row.try_get_by_index(0)?, row.try_get_by_index(1)?))).collect()
}

/// Tasks of the scope not done yet, per name.
pub async fn tasks_in_flight(store: &Store, scope: &Scope) -> Result<Vec<(String, i64)>> {
    let (condition, scope_args) = scope.condition("org_id");
    let sql = format!(
        "SELECT name, CAST(COUNT(*) AS BIGINT) AS n FROM tasks WHERE {condition} AND status = 'pending' \
         GROUP BY name ORDER BY n DESC, name"
    );
    rows(store, &sql, scope_args)
        .await?
        .iter()
        .map(|row| Ok((row.try_get_by_index(0)?, row.try_get_by_index(1)?)))
        .collect()
}
