//! Platform-wide settings shared by every replica.

use anyhow::{Context, Result};
use sea_orm::ConnectionTrait;

use super::Store;

pub async fn get(store: &Store, name: &str) -> Result<Option<Vec<u8>>> {
    let stmt = store.statement("SELECT value FROM settings WHERE name = ?", [name.into()]);
    let row = super::first_row(store.db(), stmt).await.context("loading setting")?;
    row.map(|row| row.try_get_by_index::<Vec<u8>>(0).context("setting value")).transpose()
}

/// Stores `value` unless the setting exists, and returns what is stored: replicas starting
/// together agree on one value.
pub async fn get_or_insert(store: &Store, name: &str, value: Vec<u8>) -> Result<Vec<u8>> {
    {
        let _guard = store.write_guard().await;
        let stmt = store.statement(
            "INSERT INTO settings (name, value) VALUES (?, ?) ON CONFLICT (name) DO NOTHING",
            [name.into(), value.into()],
        );
        store.db().execute_raw(stmt).await.context("storing setting")?;
    }
    get(store, name).await?.context("setting vanished right after it was stored")
}
