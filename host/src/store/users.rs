//! Users of the REST API and the portal.

use anyhow::{Context, Result};
use sea_orm::{ConnectionTrait, FromQueryResult, TransactionTrait, Value};

use super::orgs::Scope;
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
    /// Access tokens issued before this time (ms) are refused.
    pub credentials_changed_at: i64,
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

/// A user the scope may see.
pub async fn visible(store: &Store, scope: &Scope, id: i64) -> Result<Option<User>> {
    let (condition, mut args) = scope.condition("org_id");
    args.insert(0, id.into());
    let stmt = store.statement(&format!("SELECT * FROM users WHERE id = ? AND {condition}"), args);
    super::first::<User, _>(store.db(), stmt).await.context("loading user")
}

/// Users of the scope, by id, after `after`.
pub async fn list(store: &Store, scope: &Scope, org: Option<i64>, after: Option<i64>, limit: u64) -> Result<Vec<User>> {
    let (condition, mut args) = scope.condition("org_id");
    let mut sql = format!("SELECT * FROM users WHERE {condition}");
    if let Some(org) = org {
        sql.push_str(" AND org_id = ?");
        args.push(org.into());
    }
    super::page_by_id(&mut sql, &mut args, after, limit);
    User::find_by_statement(store.statement(&sql, args)).all(store.db()).await.context("listing users")
}

/// A change to a user; `None` leaves a field as it is.
#[derive(Debug, Default)]
pub struct UserChange {
    pub role: Option<String>,
    pub disabled: Option<bool>,
    pub password_hash: Option<String>,
}

/// Applies a change. A new password or disabling ends every login of the user: its refresh
/// tokens are revoked and its access tokens refused, in the same transaction.
pub async fn update(store: &Store, id: i64, change: UserChange) -> Result<Option<User>> {
    let _guard = store.write_guard().await;
    let txn = store.db().begin().await.context("starting the user change")?;
    let backend = txn.get_database_backend();
    let ends_logins = change.password_hash.is_some() || change.disabled == Some(true);
    let mut sets = Vec::new();
    let mut args: Vec<Value> = Vec::new();
    if let Some(role) = change.role {
        sets.push("role = ?");
        args.push(role.into());
    }
    if let Some(disabled) = change.disabled {
        sets.push("disabled = ?");
        args.push(disabled.into());
    }
    if let Some(hash) = change.password_hash {
        sets.push("password_hash = ?");
        args.push(hash.into());
    }
    if ends_logins {
        sets.push("credentials_changed_at = ?");
        args.push(now_millis().into());
    }
    if !sets.is_empty() {
        args.push(id.into());
        txn.execute_raw(super::statement(backend, &format!("UPDATE users SET {} WHERE id = ?", sets.join(", ")), args))
            .await
            .context("changing user")?;
    }
    if ends_logins {
        super::tokens::revoke_user(&txn, id).await?;
    }
    let user = User::find_by_statement(super::statement(backend, "SELECT * FROM users WHERE id = ?", [id.into()]))
        .all(&txn)
        .await
        .context("loading user")?
        .into_iter()
        .next();
    txn.commit().await.context("committing the user change")?;
    Ok(user)
}

/// Deletes a user (its refresh tokens go with it); API keys it created stay, as they belong to
/// the organization.
pub async fn delete(store: &Store, id: i64) -> Result<bool> {
    let _guard = store.write_guard().await;
    let txn = store.db().begin().await.context("starting the user deletion")?;
    let backend = txn.get_database_backend();
    txn.execute_raw(super::statement(backend, "DELETE FROM refresh_tokens WHERE user_id = ?", [id.into()]))
        .await
        .context("deleting the user's logins")?;
    let deleted = txn
        .execute_raw(super::statement(backend, "DELETE FROM users WHERE id = ?", [id.into()]))
        .await
        .context("deleting user")?;
    txn.commit().await.context("committing the user deletion")?;
    Ok(deleted.rows_affected() > 0)
}
