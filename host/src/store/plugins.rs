//! Uploaded plugins: components with their name, version, world and owner.
//!
//! A plugin of the platform organization is visible to every tenant; any other only within its
//! organization's subtree. Names resolve to the nearest owner: a tenant's own `wifi` shadows the
//! platform's.

use anyhow::{Context, Result};
use sea_orm::{ConnectionTrait, FromQueryResult, Value};

use super::orgs::{PLATFORM_SLUG, Scope};
use super::{Store, now_millis};

#[derive(Debug, Clone, FromQueryResult)]
pub struct PluginRow {
    pub id: i64,
    pub org_id: i64,
    pub org_slug: String,
    pub name: String,
    pub version: String,
    pub world: String,
    pub api_version: String,
    pub hash: String,
    pub size: i64,
    pub created_at: i64,
}

const COLUMNS: &str =
    "p.id, p.org_id, o.slug AS org_slug, p.name, p.version, p.world, p.api_version, p.hash, p.size, p.created_at";

/// A plugin to store.
#[derive(Debug)]
pub struct NewPlugin<'a> {
    pub org_id: i64,
    pub name: &'a str,
    pub version: &'a str,
    pub world: &'a str,
    pub api_version: &'a str,
    pub hash: &'a str,
    pub component: &'a [u8],
}

/// Why an insert was refused.
#[derive(Debug, thiserror::Error)]
pub enum InsertError {
    #[error("{0} {1} exists already; versions are immutable: upload a new version")]
    Exists(String, String),
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

pub async fn insert(store: &Store, plugin: &NewPlugin<'_>) -> Result<PluginRow, InsertError> {
    let _guard = store.write_guard().await;
    let stmt = store.statement(
        "INSERT INTO plugins (org_id, name, version, world, api_version, hash, size, component, created_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (org_id, name, version) DO NOTHING RETURNING id",
        [
            plugin.org_id.into(),
            plugin.name.into(),
            plugin.version.into(),
            plugin.world.into(),
            plugin.api_version.into(),
            plugin.hash.into(),
            (plugin.component.len() as i64).into(),
            plugin.component.to_vec().into(),
            now_millis().into(),
        ],
    );
    let row = super::first_row(store.db(), stmt).await.context("storing the plugin")?;
    let Some(row) = row else {
        return Err(InsertError::Exists(plugin.name.to_owned(), plugin.version.to_owned()));
    };
    let id: i64 = row.try_get_by_index(0).context("plugin id")?;
    drop(_guard);
    by_id(store, &Scope::All, id).await?.context("plugin vanished right after it was stored").map_err(Into::into)
}

/// Plugins visible in `scope` (and the platform's), newest version first within a name.
pub async fn list(store: &Store, scope: &Scope, after_id: Option<i64>, limit: u64) -> Result<Vec<PluginRow>> {
    let (condition, mut values) = visible(scope);
    values.push(after_id.unwrap_or(0).into());
    values.push((limit as i64).into());
    let sql = format!(
        "SELECT {COLUMNS} FROM plugins p JOIN organizations o ON o.id = p.org_id
         WHERE {condition} AND p.id > ? ORDER BY p.id LIMIT ?"
    );
    let stmt = store.statement(&sql, values);
    PluginRow::find_by_statement(stmt).all(store.db()).await.context("listing plugins")
}

pub async fn by_id(store: &Store, scope: &Scope, id: i64) -> Result<Option<PluginRow>> {
    let (condition, mut values) = visible(scope);
    values.push(id.into());
    let sql = format!(
        "SELECT {COLUMNS} FROM plugins p JOIN organizations o ON o.id = p.org_id WHERE {condition} AND p.id = ?"
    );
    super::first::<PluginRow, _>(store.db(), store.statement(&sql, values)).await.context("loading plugin")
}

/// The plugin `name` as organization `org_path` sees it: the newest version of the nearest
/// owner, `org_path` listing the organization and its ancestors, nearest first (the platform last).
pub async fn resolve(store: &Store, org_path: &[i64], name: &str) -> Result<Option<PluginRow>> {
    if org_path.is_empty() {
        return Ok(None);
    }
    let mut values: Vec<Value> = vec![name.into()];
    values.extend(org_path.iter().map(|id| Value::from(*id)));
    let sql = format!(
        "SELECT {COLUMNS} FROM plugins p JOIN organizations o ON o.id = p.org_id
         WHERE p.name = ? AND p.org_id IN ({}) ORDER BY p.id DESC",
        super::placeholders(org_path.len())
    );
    let rows = PluginRow::find_by_statement(store.statement(&sql, values))
        .all(store.db())
        .await
        .context("resolving plugin")?;
    // Nearest owner first; within an owner, the latest upload (ids grow).
    Ok(org_path.iter().find_map(|org| rows.iter().find(|r| r.org_id == *org).cloned()))
}

/// The stored component bytes.
pub async fn component(store: &Store, id: i64) -> Result<Vec<u8>> {
    let stmt = store.statement("SELECT component FROM plugins WHERE id = ?", [id.into()]);
    let row =
        super::first_row(store.db(), stmt).await.context("loading plugin component")?.context("plugin is gone")?;
    row.try_get_by_index::<Vec<u8>>(0).context("plugin component")
}

/// Deletes a plugin owned within `scope`; false when there is none.
pub async fn delete(store: &Store, scope: &Scope, id: i64) -> Result<bool> {
    let (condition, mut values) = scope.condition("org_id");
    values.push(id.into());
    let _guard = store.write_guard().await;
    let stmt = store.statement(&format!("DELETE FROM plugins WHERE {condition} AND id = ?"), values);
    let result = store.db().execute_raw(stmt).await.context("deleting plugin")?;
    Ok(result.rows_affected() > 0)
}

/// The condition for plugins a scope may see: its own and the platform's.
fn visible(scope: &Scope) -> (String, Vec<Value>) {
    let (own, mut values) = scope.condition("p.org_id");
    values.push(PLATFORM_SLUG.into());
    (format!("({own} OR o.slug = ?)"), values)
}

/// The organization and its ancestors, nearest first.
pub async fn org_path(store: &Store, org_id: i64) -> Result<Vec<i64>> {
    let mut path = vec![org_id];
    let mut current = org_id;
    // Organization trees are shallow; a bound guards against a cycle written by hand.
    for _ in 0..32 {
        let stmt = store.statement("SELECT parent_id FROM organizations WHERE id = ?", [current.into()]);
        let Some(row) = super::first_row(store.db(), stmt).await.context("walking the organization tree")? else {
            break;
        };
        match row.try_get_by_index::<Option<i64>>(0).context("parent id")? {
            Some(parent) => {
                path.push(parent);
                current = parent;
            }
            None => break,
        }
    }
    let stmt = store.statement("SELECT id FROM organizations WHERE slug = ?", [PLATFORM_SLUG.into()]);
    if let Some(row) = super::first_row(store.db(), stmt).await.context("finding the platform organization")? {
        let platform: i64 = row.try_get_by_index(0).context("platform id")?;
        if !path.contains(&platform) {
            path.push(platform);
        }
    }
    Ok(path)
}
