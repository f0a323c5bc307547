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
    by_id(store, &Scope::All, &[], id).await?.context("plugin vanished right after it was stored").map_err(Into::into)
}

/// Plugins visible in `scope` (and the platform's), newest version first within a name.
/// Plugins a caller sees: those of its subtree (`scope`), and those its organization can use,
/// installed by the organizations above it (`ancestors`, from [`org_path`]).
pub async fn list(
    store: &Store,
    scope: &Scope,
    ancestors: &[i64],
    after_id: Option<i64>,
    limit: u64,
) -> Result<Vec<PluginRow>> {
    let (condition, mut values) = visible(scope, ancestors);
    values.push(after_id.unwrap_or(0).into());
    values.push((limit as i64).into());
    let sql = format!(
        "SELECT {COLUMNS} FROM plugins p JOIN organizations o ON o.id = p.org_id
         WHERE {condition} AND p.id > ? ORDER BY p.id LIMIT ?"
    );
    let stmt = store.statement(&sql, values);
    PluginRow::find_by_statement(stmt).all(store.db()).await.context("listing plugins")
}

pub async fn by_id(store: &Store, scope: &Scope, ancestors: &[i64], id: i64) -> Result<Option<PluginRow>> {
    let (condition, mut values) = visible(scope, ancestors);
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

/// An organization's own plugin of this name and version.
pub async fn by_name_version(store: &Store, org_id: i64, name: &str, version: &str) -> Result<Option<PluginRow>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM plugins p JOIN organizations o ON o.id = p.org_id
         WHERE p.org_id = ? AND p.name = ? AND p.version = ?"
    );
    let stmt = store.statement(&sql, [org_id.into(), name.into(), version.into()]);
    super::first::<PluginRow, _>(store.db(), stmt).await.context("looking up a plugin version")
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

/// The condition for plugins a caller may see: its subtree's, and those of the organizations
/// above it, whose plugins it runs and whose names its presets use.
fn visible(scope: &Scope, ancestors: &[i64]) -> (String, Vec<Value>) {
    let (own, mut values) = scope.condition("p.org_id");
    if ancestors.is_empty() {
        return (own, values);
    }
    values.extend(ancestors.iter().map(|id| Value::from(*id)));
    (format!("({own} OR p.org_id IN ({}))", super::placeholders(ancestors.len())), values)
}

/// Adapters visible along `org_path` (nearest first): for each name, the latest upload of the
/// nearest owner.
pub async fn adapters(store: &Store, org_path: &[i64]) -> Result<Vec<PluginRow>> {
    if org_path.is_empty() {
        return Ok(Vec::new());
    }
    let values: Vec<Value> = org_path.iter().map(|id| Value::from(*id)).collect();
    let sql = format!(
        "SELECT {COLUMNS} FROM plugins p JOIN organizations o ON o.id = p.org_id
         WHERE p.world = 'adapter' AND p.org_id IN ({}) ORDER BY p.id DESC",
        super::placeholders(org_path.len())
    );
    let rows = PluginRow::find_by_statement(store.statement(&sql, values))
        .all(store.db())
        .await
        .context("listing adapters")?;
    let mut chosen: Vec<PluginRow> = Vec::new();
    for org in org_path {
        for row in rows.iter().filter(|r| r.org_id == *org) {
            if !chosen.iter().any(|c| c.name == row.name) {
                chosen.push(row.clone());
            }
        }
    }
    Ok(chosen)
}

/// An organization's own overrides of the plugin sandbox limits (JSON), if any.
pub async fn limits(store: &Store, org_id: i64) -> Result<Option<String>> {
    let stmt = store.statement("SELECT limits FROM plugin_limits WHERE org_id = ?", [org_id.into()]);
    let row = super::first_row(store.db(), stmt).await.context("loading plugin limits")?;
    row.map(|row| row.try_get_by_index::<String>(0).context("limits")).transpose()
}

/// Replaces an organization's limit overrides (`None`: back to the defaults).
pub async fn set_limits(store: &Store, org_id: i64, limits: Option<&str>) -> Result<()> {
    let _guard = store.write_guard().await;
    let stmt = match limits {
        Some(json) => store.statement(
            "INSERT INTO plugin_limits (org_id, limits) VALUES (?, ?)
             ON CONFLICT (org_id) DO UPDATE SET limits = excluded.limits",
            [org_id.into(), json.into()],
        ),
        None => store.statement("DELETE FROM plugin_limits WHERE org_id = ?", [org_id.into()]),
    };
    store.db().execute_raw(stmt).await.context("storing plugin limits")?;
    Ok(())
}

/// An organization's own plugin configuration: (plugin, key, value), ordered.
pub async fn config(store: &Store, org_id: i64) -> Result<Vec<(String, String, String)>> {
    let stmt = store.statement(
        "SELECT plugin, key, value FROM plugin_config WHERE org_id = ? ORDER BY plugin, key",
        [org_id.into()],
    );
    let rows = store.db().query_all_raw(stmt).await.context("loading plugin configuration")?;
    rows.iter()
        .map(|row| {
            Ok((
                row.try_get_by_index::<String>(0).context("plugin")?,
                row.try_get_by_index::<String>(1).context("key")?,
                row.try_get_by_index::<String>(2).context("value")?,
            ))
        })
        .collect()
}

/// Replaces an organization's configuration of one plugin.
pub async fn set_config(store: &Store, org_id: i64, plugin: &str, entries: &[(String, String)]) -> Result<()> {
    let _guard = store.write_guard().await;
    let txn = sea_orm::TransactionTrait::begin(store.db()).await.context("starting a transaction")?;
    txn.execute_raw(
        store.statement("DELETE FROM plugin_config WHERE org_id = ? AND plugin = ?", [org_id.into(), plugin.into()]),
    )
    .await
    .context("clearing plugin configuration")?;
    for (key, value) in entries {
        txn.execute_raw(store.statement(
            "INSERT INTO plugin_config (org_id, plugin, key, value) VALUES (?, ?, ?, ?)",
            [org_id.into(), plugin.into(), key.as_str().into(), value.as_str().into()],
        ))
        .await
        .context("storing plugin configuration")?;
    }
    txn.commit().await.context("committing plugin configuration")?;
    Ok(())
}

/// The platform organization's id.
pub async fn platform_id(store: &Store) -> Result<i64> {
    let stmt = store.statement("SELECT id FROM organizations WHERE slug = ?", [PLATFORM_SLUG.into()]);
    let row = super::first_row(store.db(), stmt).await.context("finding the platform organization")?;
    row.context("the platform organization is missing")?.try_get_by_index(0).context("platform id")
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
    let platform = platform_id(store).await?;
    if !path.contains(&platform) {
        path.push(platform);
    }
    Ok(path)
}
