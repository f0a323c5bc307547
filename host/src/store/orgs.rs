//! Organizations: the tenant tree. A grant on an organization covers its whole subtree.

use anyhow::{Context, Result, bail};
use sea_orm::{ConnectionTrait, FromQueryResult, Value};

use super::{Store, now_millis};
use crate::diagnostics::SpeedTestServer;

#[derive(Debug, Clone, FromQueryResult, serde::Serialize)]
pub struct Organization {
    pub id: i64,
    pub slug: String,
    pub name: String,
    pub parent_id: Option<i64>,
    pub created_at: i64,
    /// The tenant's own host name for the ACS; CPEs informing at it join the organization.
    pub cwmp_host: Option<String>,
    /// The organization's own TR-143 test server (`speed_test_server`), each direction optional.
    pub speed_test_download_url: Option<String>,
    pub speed_test_upload_url: Option<String>,
    /// The IANA time zone of its rollouts' windows; `None`: its nearest ancestor's.
    pub time_zone: Option<String>,
}

impl Organization {
    /// The test server this organization set itself, if any (not an ancestor's).
    pub fn speed_test_server(&self) -> Option<SpeedTestServer> {
        SpeedTestServer::of(self.speed_test_download_url.clone(), self.speed_test_upload_url.clone())
    }
}

/// The organizations a caller may see: every one (platform administrators) or a subtree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    All,
    Orgs(Vec<i64>),
}

impl Scope {
    /// A SQL condition restricting `column` (an organization id) to this scope. Rows with no
    /// organization (unclaimed devices) are visible only to the platform scope.
    pub fn condition(&self, column: &str) -> (String, Vec<Value>) {
        match self {
            Self::All => ("1 = 1".into(), Vec::new()),
            Self::Orgs(ids) if ids.is_empty() => ("1 = 0".into(), Vec::new()),
            Self::Orgs(ids) => (
                format!("{column} IN ({})", super::placeholders(ids.len())),
                ids.iter().map(|id| Value::from(*id)).collect(),
            ),
        }
    }

    /// The organizations of `subtree` this scope sees: what a job over an organization's
    /// devices (a rollout, a bulk action) may reach for this caller.
    pub fn within(&self, subtree: Vec<i64>) -> Scope {
        match self {
            Self::All => Self::Orgs(subtree),
            Self::Orgs(mine) => Self::Orgs(subtree.into_iter().filter(|id| mine.contains(id)).collect()),
        }
    }

    pub fn contains(&self, org_id: Option<i64>) -> bool {
        match (self, org_id) {
            (Self::All, _) => true,
            (Self::Orgs(ids), Some(id)) => ids.contains(&id),
            (Self::Orgs(_), None) => false,
        }
    }
}

pub const PLATFORM_SLUG: &str = "platform";

/// Slugs appear in onboarding URLs (`/cwmp/{slug}`): lowercase letters, digits and hyphens.
pub fn validate_slug(slug: &str) -> Result<()> {
    let valid = !slug.is_empty()
        && slug.len() <= 63
        && slug.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !slug.starts_with('-')
        && !slug.ends_with('-');
    if !valid {
        bail!("an organization slug is 1-63 lowercase letters, digits and inner hyphens: {slug:?}");
    }
    Ok(())
}

pub async fn by_slug(store: &Store, slug: &str) -> Result<Option<Organization>> {
    let stmt = store.statement("SELECT * FROM organizations WHERE slug = ?", [slug.into()]);
    super::first::<Organization, _>(store.db(), stmt).await.context("loading organization")
}

/// Every organization's slug, by id.
pub async fn slugs(store: &Store) -> Result<std::collections::HashMap<i64, String>> {
    let rows = store
        .db()
        .query_all_raw(store.statement("SELECT id, slug FROM organizations", []))
        .await
        .context("listing organization slugs")?;
    rows.iter().map(|r| Ok((r.try_get_by_index::<i64>(0)?, r.try_get_by_index::<String>(1)?))).collect()
}

pub async fn by_id(store: &Store, id: i64) -> Result<Option<Organization>> {
    let stmt = store.statement("SELECT * FROM organizations WHERE id = ?", [id.into()]);
    super::first::<Organization, _>(store.db(), stmt).await.context("loading organization")
}

pub async fn create(store: &Store, name: &str, slug: &str, parent: Option<i64>) -> Result<Organization> {
    validate_slug(slug)?;
    let _guard = store.write_guard().await;
    let stmt = store.statement(
        "INSERT INTO organizations (slug, name, parent_id, created_at) VALUES (?, ?, ?, ?) RETURNING *",
        [slug.into(), name.into(), parent.into(), now_millis().into()],
    );
    super::first::<Organization, _>(store.db(), stmt)
        .await
        .context("creating organization")?
        .context("the database returned no row for the new organization")
}

/// The ids of an organization and all its descendants.
pub async fn subtree(store: &Store, root: i64) -> Result<Vec<i64>> {
    let stmt = store.statement(
        "WITH RECURSIVE tree(id) AS (
             SELECT id FROM organizations WHERE id = ?
             UNION ALL
             SELECT o.id FROM organizations o JOIN tree t ON o.parent_id = t.id
         ) SELECT id FROM tree",
        [root.into()],
    );
    let rows = store.db().query_all_raw(stmt).await.context("loading organization subtree")?;
    rows.iter().map(|row| row.try_get_by_index::<i64>(0).context("organization id")).collect()
}

/// Organizations of a scope, by id, after `after`.
pub async fn list(store: &Store, scope: &Scope, after: Option<i64>, limit: u64) -> Result<Vec<Organization>> {
    let (condition, mut args) = scope.condition("id");
    let mut sql = format!("SELECT * FROM organizations WHERE {condition}");
    super::page_by_id(&mut sql, &mut args, after, limit);
    Organization::find_by_statement(store.statement(&sql, args)).all(store.db()).await.context("listing organizations")
}

pub async fn rename(store: &Store, id: i64, name: &str) -> Result<()> {
    let _guard = store.write_guard().await;
    let stmt = store.statement("UPDATE organizations SET name = ? WHERE id = ?", [name.into(), id.into()]);
    store.db().execute_raw(stmt).await.context("renaming organization")?;
    Ok(())
}

/// What keeps an organization from being deleted.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Remaining {
    pub devices: i64,
    pub users: i64,
    pub children: i64,
    /// Files of the file store: deleted by hand, so their contents go with them.
    pub files: i64,
}

impl Remaining {
    pub fn is_empty(&self) -> bool {
        self.devices == 0 && self.users == 0 && self.children == 0 && self.files == 0
    }
}

/// The organization's own configuration, deleted with it: nothing outside it refers to these.
const OWNED_CONFIGURATION: &[&str] = &[
    "api_keys",
    "presets",
    "plugin_config",
    "plugin_limits",
    "plugins",
    "cpe_credentials",
    "preset_runs",
    "preregistrations",
    "subscribers",
];

/// Deletes an organization with its own configuration (keys, presets, plugins, CPE
/// credentials) if no device, user or child organization remains; else says what remains.
/// Checked and deleted in one transaction, so nothing joins it in between.
pub async fn delete(store: &Store, id: i64) -> Result<Result<(), Remaining>> {
    use sea_orm::TransactionTrait;
    let _guard = store.write_guard().await;
    let txn = store.db().begin().await.context("starting the organization deletion")?;
    let backend = txn.get_database_backend();
    let count = async |sql: &str| -> Result<i64> {
        let row = super::first_row(&txn, super::statement(backend, sql, [id.into()]))
            .await
            .context("counting what remains in an organization")?;
        row.map(|r| r.try_get_by_index::<i64>(0)).transpose().context("count").map(|n| n.unwrap_or(0))
    };
    let remaining = Remaining {
        devices: count("SELECT COUNT(*) FROM devices WHERE org_id = ?").await?,
        users: count("SELECT COUNT(*) FROM users WHERE org_id = ?").await?,
        children: count("SELECT COUNT(*) FROM organizations WHERE parent_id = ?").await?,
        files: count("SELECT COUNT(*) FROM files WHERE org_id = ?").await?,
    };
    if !remaining.is_empty() {
        return Ok(Err(remaining));
    }
    super::webhooks::delete_for_org(&txn, id).await?;
    for table in OWNED_CONFIGURATION {
        txn.execute_raw(super::statement(backend, &format!("DELETE FROM {table} WHERE org_id = ?"), [id.into()]))
            .await
            .with_context(|| format!("deleting the organization's {table}"))?;
    }
    // Rows that outlive their devices (tasks and faults cascade from devices; these do not).
    // Rollouts and bulk actions are the organization's history; their device rows cascade.
    for table in ["tasks", "faults", "device_events", "rollouts", "bulk_actions"] {
        txn.execute_raw(super::statement(backend, &format!("DELETE FROM {table} WHERE org_id = ?"), [id.into()]))
            .await
            .with_context(|| format!("deleting the organization's {table}"))?;
    }
    txn.execute_raw(super::statement(backend, "DELETE FROM organizations WHERE id = ?", [id.into()]))
        .await
        .context("deleting organization")?;
    txn.commit().await.context("committing the organization deletion")?;
    Ok(Ok(()))
}

pub async fn by_cwmp_host(store: &Store, host: &str) -> Result<Option<Organization>> {
    let stmt = store.statement("SELECT * FROM organizations WHERE cwmp_host = ?", [host.into()]);
    super::first::<Organization, _>(store.db(), stmt).await.context("loading organization by host")
}

/// Sets or clears an organization's own CWMP host name (lowercase, without port).
pub async fn set_cwmp_host(store: &Store, id: i64, host: Option<&str>) -> Result<()> {
    let _guard = store.write_guard().await;
    let stmt = store.statement("UPDATE organizations SET cwmp_host = ? WHERE id = ?", [host.into(), id.into()]);
    store.db().execute_raw(stmt).await.context("setting the organization's CWMP host")?;
    Ok(())
}

/// Sets or clears an organization's own TR-143 test server.
pub async fn set_speed_test_server(store: &Store, id: i64, server: Option<&SpeedTestServer>) -> Result<()> {
    let _guard = store.write_guard().await;
    let (download, upload) = server.map_or((None, None), |s| (s.download_url.clone(), s.upload_url.clone()));
    let stmt = store.statement(
        "UPDATE organizations SET speed_test_download_url = ?, speed_test_upload_url = ? WHERE id = ?",
        [download.into(), upload.into(), id.into()],
    );
    store.db().execute_raw(stmt).await.context("setting the organization's speed-test server")?;
    Ok(())
}

pub async fn set_time_zone(store: &Store, id: i64, zone: Option<&str>) -> Result<()> {
    let _guard = store.write_guard().await;
    let stmt = store.statement("UPDATE organizations SET time_zone = ? WHERE id = ?", [zone.into(), id.into()]);
    store.db().execute_raw(stmt).await.context("setting the organization's time zone")?;
    Ok(())
}

/// An organization and its ancestors, nearest first.
pub async fn ancestry(store: &Store, id: i64) -> Result<Vec<Organization>> {
    let stmt = store.statement(
        "WITH RECURSIVE up (id, depth) AS (
             SELECT id, 0 FROM organizations WHERE id = ?
             UNION ALL
             SELECT o.parent_id, up.depth + 1 FROM organizations o JOIN up ON o.id = up.id WHERE o.parent_id IS NOT NULL
         )
         SELECT o.* FROM organizations o JOIN up ON o.id = up.id ORDER BY up.depth",
        [id.into()],
    );
    Organization::find_by_statement(stmt).all(store.db()).await.context("loading the organization's ancestry")
}

/// The time zone an organization's windows are in: its own, its nearest ancestor's, else UTC.
pub fn time_zone_of(ancestry: &[Organization]) -> String {
    ancestry.iter().find_map(|org| org.time_zone.clone()).unwrap_or_else(|| "UTC".to_owned())
}

/// The test server an organization's devices use: its own, or its nearest ancestor's.
pub async fn speed_test_server_for(store: &Store, org_id: i64) -> Result<Option<SpeedTestServer>> {
    let stmt = store.statement(
        "WITH RECURSIVE up (id, parent_id, download_url, upload_url, depth) AS (
             SELECT id, parent_id, speed_test_download_url, speed_test_upload_url, 0 FROM organizations WHERE id = ?
             UNION ALL
             SELECT o.id, o.parent_id, o.speed_test_download_url, o.speed_test_upload_url, up.depth + 1
             FROM organizations o JOIN up ON o.id = up.parent_id
         )
         SELECT download_url, upload_url FROM up
         WHERE download_url IS NOT NULL OR upload_url IS NOT NULL ORDER BY depth LIMIT 1",
        [org_id.into()],
    );
    let row = super::first_row(store.db(), stmt).await.context("loading the speed-test server")?;
    row.map(|row| -> Result<Option<SpeedTestServer>> {
        Ok(SpeedTestServer::of(row.try_get_by_index(0)?, row.try_get_by_index(1)?))
    })
    .transpose()
    .map(Option::flatten)
}

/// A host name as an organization's `cwmp_host`: lowercase letters, digits, hyphens and dots,
/// at least two labels.
pub fn validate_host(host: &str) -> Result<()> {
    let labels: Vec<&str> = host.split('.').collect();
    let valid = host.len() <= 253
        && labels.len() >= 2
        && labels.iter().all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        });
    if !valid {
        bail!("a CWMP host is a lowercase DNS name such as acs.isp.example: {host:?}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scope_within_a_subtree_keeps_what_it_sees_of_it() {
        assert_eq!(Scope::All.within(vec![3, 4]), Scope::Orgs(vec![3, 4]));
        assert_eq!(Scope::Orgs(vec![2, 4]).within(vec![3, 4]), Scope::Orgs(vec![4]));
        assert_eq!(Scope::Orgs(vec![2]).within(vec![3, 4]), Scope::Orgs(vec![]));
    }
}
