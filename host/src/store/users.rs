//! Users of the REST API and the portal.

use anyhow::{Context, Result};
use sea_orm::FromQueryResult;

use super::{Store, now_millis};

#[derive(Debug, Clone, FromQueryResult)]
pub struct User {
    pub id: i64,
    pub org_id: i64,
    pub email: String,
    pub password_hash: String,
    pub role: String,
    pub disabled: bool,
    pub created_at: i64,
}

pub async fn create(store: &Store, org_id: i64, email: &str, password_hash: &str, role: &str) -> Result<User> {
    let _guard = store.write_guard().await;
    let stmt = store.statement(
        "INSERT INTO users (org_id, email, password_hash, role, disabled, created_at)
         VALUES (?, ?, ?, ?, FALSE, ?) RETURNING *",
        [org_id.into(), email.into(), password_hash.into(), role.into(), now_millis().into()],
    );
    super::first::<User, _>(store.db(), stmt)
        .await
        .context("creating user")?
        .context("the database returned no row for the new user")
}

/// Emails are matched case-insensitively: people type them every which way.
pub async fn by_email(store: &Store, email: &str) -> Result<Option<User>> {
    let stmt = store.statement("SELECT * FROM users WHERE lower(email) = lower(?)", [email.into()]);
    super::first::<User, _>(store.db(), stmt).await.context("loading user")
}

pub async fn by_id(store: &Store, id: i64) -> Result<Option<User>> {
    let stmt = store.statement("SELECT * FROM users WHERE id = ?", [id.into()]);
    super::first::<User, _>(store.db(), stmt).await.context("loading user")
}
