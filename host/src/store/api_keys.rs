//! API keys of integrations, stored by hash.

use anyhow::{Context, Result};
use sea_orm::{ConnectionTrait, FromQueryResult};

use super::orgs::Scope;
use super::{Store, now_millis};

#[derive(Debug, Clone, FromQueryResult)]
pub struct ApiKey {
    pub id: i64,
    pub org_id: i64,
    pub name: String,
    pub role: String,
    pub prefix: String,
    pub key_hash: String,
    pub rate_limit_per_minute: Option<i64>,
    pub created_by: String,
    pub created_at: i64,
    pub expires_at: Option<i64>,
    pub last_used_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

#[derive(Debug)]
pub struct NewApiKey<'a> {
    pub org_id: i64,
    pub name: &'a str,
    pub role: &'a str,
    pub prefix: &'a str,
    pub key_hash: &'a str,
    pub rate_limit_per_minute: Option<i64>,
    pub created_by: &'a str,
    pub expires_at: Option<i64>,
}

pub async fn create(store: &Store, key: NewApiKey<'_>) -> Result<ApiKey> {
    let _guard = store.write_guard().await;
    let stmt = store.statement(
        "INSERT INTO api_keys (org_id, name, role, prefix, key_hash, rate_limit_per_minute, created_by, created_at, expires_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING *",
        [
            key.org_id.into(),
            key.name.into(),
            key.role.into(),
            key.prefix.into(),
            key.key_hash.into(),
            key.rate_limit_per_minute.into(),
            key.created_by.into(),
            now_millis().into(),
            key.expires_at.into(),
        ],
    );
    super::first::<ApiKey, _>(store.db(), stmt)
        .await
        .context("creating API key")?
        .context("the database returned no row for the new API key")
}

/// A key that is neither revoked nor expired, by the hash of its text.
pub async fn usable_by_hash(store: &Store, key_hash: &str) -> Result<Option<ApiKey>> {
    let stmt = store.statement(
        "SELECT * FROM api_keys WHERE key_hash = ? AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > ?)",
        [key_hash.into(), now_millis().into()],
    );
    super::first::<ApiKey, _>(store.db(), stmt).await.context("loading API key")
}

/// Keys of the scope that are not revoked, by id.
pub async fn list(store: &Store, scope: &Scope, after: Option<i64>, limit: u64) -> Result<Vec<ApiKey>> {
    let (condition, mut args) = scope.condition("org_id");
    let mut sql = format!("SELECT * FROM api_keys WHERE revoked_at IS NULL AND {condition}");
    super::page_by_id(&mut sql, &mut args, after, limit);
    ApiKey::find_by_statement(store.statement(&sql, args)).all(store.db()).await.context("listing API keys")
}

pub async fn visible(store: &Store, scope: &Scope, id: i64) -> Result<Option<ApiKey>> {
    let (condition, mut args) = scope.condition("org_id");
    args.insert(0, id.into());
    let stmt =
        store.statement(&format!("SELECT * FROM api_keys WHERE id = ? AND revoked_at IS NULL AND {condition}"), args);
    super::first::<ApiKey, _>(store.db(), stmt).await.context("loading API key")
}

pub async fn revoke(store: &Store, id: i64) -> Result<bool> {
    let _guard = store.write_guard().await;
    let stmt = store.statement(
        "UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
        [now_millis().into(), id.into()],
    );
    Ok(store.db().execute_raw(stmt).await.context("revoking API key")?.rows_affected() > 0)
}

/// Records that a key was used; callers do it at most once a minute per key.
pub async fn touch(store: &Store, id: i64) -> Result<()> {
    let _guard = store.write_guard().await;
    let stmt = store.statement("UPDATE api_keys SET last_used_at = ? WHERE id = ?", [now_millis().into(), id.into()]);
    store.db().execute_raw(stmt).await.context("recording API key use")?;
    Ok(())
}
