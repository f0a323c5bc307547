//! Presets: when to run which provision, per organization.

use std::collections::HashMap;

use anyhow::{Context, Result};
use sea_orm::{ConnectionTrait, FromQueryResult};

use super::DevicePk;
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
    store.db().execute_raw(stmt).await.context("storing the preset")?;
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
    let result = store.db().execute_raw(stmt).await.context("deleting the preset")?;
    Ok(result.rows_affected() > 0)
}

/// When each scheduled preset last ran for a device, by (owner organization, preset name).
pub async fn last_runs(store: &Store, device_pk: DevicePk) -> Result<HashMap<(i64, String), i64>> {
    let stmt =
        store.statement("SELECT org_id, preset, last_run_at FROM preset_runs WHERE device_id = ?", [device_pk.into()]);
    let rows = store.db().query_all_raw(stmt).await.context("loading preset runs")?;
    rows.iter()
        .map(|row| {
            Ok((
                (row.try_get_by_index::<i64>(0).context("org")?, row.try_get_by_index::<String>(1).context("preset")?),
                row.try_get_by_index::<i64>(2).context("last run")?,
            ))
        })
        .collect()
}

pub async fn record_run(store: &Store, device_pk: DevicePk, org_id: i64, preset: &str, at: i64) -> Result<()> {
    let _guard = store.write_guard().await;
    let stmt = store.statement(
        "INSERT INTO preset_runs (device_id, org_id, preset, last_run_at) VALUES (?, ?, ?, ?)
         ON CONFLICT (device_id, org_id, preset) DO UPDATE SET last_run_at = excluded.last_run_at",
        [device_pk.into(), org_id.into(), preset.into(), at.into()],
    );
    store.db().execute_raw(stmt).await.context("recording a preset run")?;
    Ok(())
}
