//! Credentials CPEs present to the CWMP endpoint: onboarding credentials of an organization
//! (optionally for one device model), and each device's own.

use anyhow::{Context, Result};
use sea_orm::{ConnectionTrait, FromQueryResult};

use super::orgs::Scope;
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
    /// When set, only devices of this product class may use the credential.
    pub product_class: Option<String>,
}

/// What a new credential may be used for.
#[derive(Debug, Default, Clone, Copy)]
pub struct CredentialScope<'a> {
    pub org_id: Option<i64>,
    pub device_id: Option<&'a str>,
    pub product_class: Option<&'a str>,
}

pub async fn create(
    store: &Store,
    scope: CredentialScope<'_>,
    username: &str,
    sealed_password: Vec<u8>,
) -> Result<CpeCredential> {
    let _guard = store.write_guard().await;
    let stmt = store.statement(
        "INSERT INTO cpe_credentials (org_id, device_id, product_class, username, password, created_at)
         VALUES (?, ?, ?, ?, ?, ?) RETURNING *",
        [
            scope.org_id.into(),
            scope.device_id.into(),
            scope.product_class.into(),
            username.into(),
            sealed_password.into(),
            now_millis().into(),
        ],
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

/// Onboarding credentials of the scope (not devices' own), by id.
pub async fn list_onboarding(
    store: &Store,
    scope: &Scope,
    after: Option<i64>,
    limit: u64,
) -> Result<Vec<CpeCredential>> {
    let (condition, mut args) = scope.condition("org_id");
    let mut sql = format!("SELECT * FROM cpe_credentials WHERE device_id IS NULL AND {condition}");
    super::page_by_id(&mut sql, &mut args, after, limit);
    CpeCredential::find_by_statement(store.statement(&sql, args)).all(store.db()).await.context("listing credentials")
}

/// Deletes one of the scope's onboarding credentials; whether there was one.
pub async fn delete_onboarding(store: &Store, scope: &Scope, id: i64) -> Result<bool> {
    let _guard = store.write_guard().await;
    let (condition, mut args) = scope.condition("org_id");
    args.insert(0, id.into());
    let stmt = store
        .statement(&format!("DELETE FROM cpe_credentials WHERE id = ? AND device_id IS NULL AND {condition}"), args);
    Ok(store.db().execute_raw(stmt).await.context("deleting credential")?.rows_affected() > 0)
}

/// The credential Roost made for a device, if it made one.
pub async fn own_of(store: &Store, device_id: &str) -> Result<Option<CpeCredential>> {
    let stmt =
        store.statement("SELECT * FROM cpe_credentials WHERE device_id = ? ORDER BY id LIMIT 1", [device_id.into()]);
    super::first::<CpeCredential, _>(store.db(), stmt).await.context("loading the device's credential")
}
