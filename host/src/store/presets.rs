//! Presets: when to run which provision, per organization.

use anyhow::{Context, Result};
use sea_orm::FromQueryResult;

use super::{Store, now_millis};

#[derive(Debug, Clone, FromQueryResult)]
pub struct PresetRow {
    pub id: i64,
    pub org_id: i64,
    pub name: String,
    pub weight: i64,
    /// The preset's JSON, as validated by the API.
    pub definition: String,
    pub updated_at: i64,
}

/// Creates or replaces the preset `name` of an organization; true when it was created.
pub async fn put(store: &Store, org_id: i64, name: &str, weight: i64, definition: &str) -> Result<bool> {
    let _guard = store.write_guard().await;
    let existed = super::first_row(
        store.db(),
        store.statement("SELECT id FROM presets WHERE org_id = ? AND name = ?", [org_id.into(), name.into()]),
    )
    .await
    .context("looking up the preset")?
    .is_some();
    let stmt = store.statement(
        "INSERT INTO presets (org_id, name, weight, definition, updated_at) VALUES (?, ?, ?, ?, ?)
         ON CONFLICT (org_id, name) DO UPDATE SET weight = excluded.weight, definition = excluded.definition,
         updated_at = excluded.updated_at",
        [org_id.into(), name.into(), weight.into(), definition.into(), now_millis().into()],
    );
    sea_orm::ConnectionTrait::execute_raw(store.db(), stmt).await.context("storing the preset")?;
    Ok(!existed)
}

pub async fn get(store: &Store, org_id: i64, name: &str) -> Result<Option<PresetRow>> {
    let stmt = store.statement("SELECT * FROM presets WHERE org_id = ? AND name = ?", [org_id.into(), name.into()]);
    super::first::<PresetRow, _>(store.db(), stmt).await.context("loading the preset")
}

/// An organization's presets in the order they run: weight, then name.
pub async fn list(store: &Store, org_id: i64) -> Result<Vec<PresetRow>> {
    let stmt = store.statement("SELECT * FROM presets WHERE org_id = ? ORDER BY weight, name", [org_id.into()]);
    PresetRow::find_by_statement(stmt).all(store.db()).await.context("listing presets")
}

pub async fn delete(store: &Store, org_id: i64, name: &str) -> Result<bool> {
    let _guard = store.write_guard().await;
    let stmt = store.statement("DELETE FROM presets WHERE org_id = ? AND name = ?", [org_id.into(), name.into()]);
    let result = sea_orm::ConnectionTrait::execute_raw(store.db(), stmt).await.context("deleting the preset")?;
    Ok(result.rows_affected() > 0)
}
