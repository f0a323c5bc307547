//! Credentials CPEs present to the CWMP endpoint.

use anyhow::{Context, Result};
use sea_orm::FromQueryResult;

use super::{Store, now_millis};

#[derive(Debug, Clone, FromQueryResult)]
pub struct CpeCredential {
    pub id: i64,
    pub org_id: Option<i64>,
    /// When set, only this device (GenieACS-style id) may use the credential.
    pub device_id: Option<String>,
    pub username: String,
    /// Sealed with the master key.
    pub password: Vec<u8>,
    pub created_at: i64,
}

pub async fn create(
    store: &Store,
    org_id: Option<i64>,
    device_id: Option<&str>,
    username: &str,
    sealed_password: Vec<u8>,
) -> Result<CpeCredential> {
    let _guard = store.write_guard().await;
    let stmt = store.statement(
        "INSERT INTO cpe_credentials (org_id, device_id, username, password, created_at)
         VALUES (?, ?, ?, ?, ?) RETURNING *",
        [org_id.into(), device_id.into(), username.into(), sealed_password.into(), now_millis().into()],
    );
    super::first::<CpeCredential, _>(store.db(), stmt)
        .await
        .context("creating CPE credential")?
        .context("the database returned no row for the new credential")
}

pub async fn by_username(store: &Store, username: &str) -> Result<Option<CpeCredential>> {
    let stmt = store.statement("SELECT * FROM cpe_credentials WHERE username = ?", [username.into()]);
    super::first::<CpeCredential, _>(store.db(), stmt).await.context("loading CPE credential")
}
