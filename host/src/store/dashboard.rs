//! The fleet at a glance, for a scope: each figure one query over an index that covers it
//! (m0014), never the parameter table.

use anyhow::{Context, Result};
use sea_orm::{ConnectionTrait, Value};

use super::Store;
use super::orgs::Scope;

/// A device counts as stale once it has been offline this long.
pub const STALE_AFTER_MS: i64 = 3_600_000;

/// Devices of one organization of the scope (`None`: pending), and how many of them the
/// presence sweep last reported online.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrgPresence {
    pub org_id: Option<i64>,
    pub devices: i64,
    pub online: i64,
}

/// Devices of one model and software version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionGroup {
    pub manufacturer: String,
    pub product_class: String,
    pub software_version: String,
    pub devices: i64,
}

async fn rows(store: &Store, sql: &str, args: Vec<Value>) -> Result<Vec<sea_orm::QueryResult>> {
    store.db().query_all_raw(store.statement(sql, args)).await.context("reading the dashboard")
}

/// The scope's devices per organization (pending devices as `None`, in the platform's scope),
/// online among them as the presence sweep last reported (`devices.reported_online`, which the
/// periodic Inform never writes): one walk of the index `(org_id, reported_online)`, from which
/// the totals are summed.
pub async fn by_org(store: &Store, scope: &Scope) -> Result<Vec<OrgPresence>> {
    let (condition, scope_args) = scope.condition("org_id");
    let sql = format!(
        "SELECT org_id, CAST(COUNT(*) AS BIGINT), \
         CAST(COALESCE(SUM(CASE WHEN reported_online = TRUE THEN 1 ELSE 0 END), 0) AS BIGINT) \
         FROM devices WHERE {condition} GROUP BY org_id ORDER BY org_id"
    );
    rows(store, &sql, scope_args)
        .await?
        .iter()
        .map(|row| {
            Ok(OrgPresence {
                org_id: row.try_get_by_index(0)?,
                devices: row.try_get_by_index(1)?,
                online: row.try_get_by_index(2)?,
            })
        })
        .collect()
}

/// Devices of the scope reported offline since before `before` (or never informed): among the
/// devices reported offline, through their partial index.
pub async fn stale(store: &Store, scope: &Scope, before: i64) -> Result<i64> {
    let (condition, scope_args) = scope.condition("org_id");
    let sql = format!(
        "SELECT CAST(COUNT(*) AS BIGINT) FROM devices \
         WHERE reported_online = FALSE AND (offline_at IS NULL OR offline_at <= ?) AND {condition}"
    );
    let row = rows(store, &sql, [vec![before.into()], scope_args].concat())
        .await?
        .into_iter()
        .next()
        .context("a count without a row")?;
    Ok(row.try_get_by_index(0)?)
}

/// Devices of the scope per software version and model: one walk of the index `(software_version,
/// manufacturer, product_class, org_id)`, in its order; the models' counts are summed from it.
pub async fn by_version(store: &Store, scope: &Scope) -> Result<Vec<VersionGroup>> {
    let (condition, args) = scope.condition("org_id");
    let sql = format!(
        "SELECT software_version, manufacturer, product_class, CAST(COUNT(*) AS BIGINT) FROM devices \
         WHERE {condition} GROUP BY software_version, manufacturer, product_class"
    );
    rows(store, &sql, args)
        .await?
        .iter()
        .map(|row| {
            Ok(VersionGroup {
                software_version: row.try_get_by_index(0)?,
                manufacturer: row.try_get_by_index(1)?,
                product_class: row.try_get_by_index(2)?,
                devices: row.try_get_by_index(3)?,
            })
        })
        .collect()
}

/// Faults of the scope seen since `since` (a repeated fault once), per code, the most frequent
/// first.
pub async fn faults_since(store: &Store, scope: &Scope, since: i64) -> Result<Vec<(String, i64)>> {
    let (condition, scope_args) = scope.condition("org_id");
    let sql = format!(
        "SELECT code, CAST(COUNT(*) AS BIGINT) AS n FROM faults WHERE {condition} AND last_seen_at >= ? \
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
