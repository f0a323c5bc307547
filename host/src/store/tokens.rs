//! JWT signing keys and refresh tokens.

use anyhow::{Context, Result};
use sea_orm::{ConnectionTrait, FromQueryResult, TransactionTrait};

use super::{Store, now_millis};

#[derive(Debug, Clone, FromQueryResult)]
pub struct SigningKey {
    pub kid: String,
    /// Sealed with the master key.
    pub sealed_key: Vec<u8>,
    pub created_at: i64,
}

/// Every signing key, newest first.
pub async fn signing_keys(store: &Store) -> Result<Vec<SigningKey>> {
    let stmt = store.statement("SELECT * FROM signing_keys ORDER BY created_at DESC, kid DESC", []);
    SigningKey::find_by_statement(stmt).all(store.db()).await.context("loading signing keys")
}

/// Adds a signing key and drops those rotated out more than `keep_ms` ago (every token they
/// signed has expired).
pub async fn add_signing_key(store: &Store, kid: &str, sealed_key: Vec<u8>, keep_ms: i64) -> Result<()> {
    let _guard = store.write_guard().await;
    let now = now_millis();
    let txn = store.db().begin().await.context("starting the key rotation")?;
    let backend = txn.get_database_backend();
    // A key is rotated out when the next one is created: keep every key whose successor is
    // younger than `keep_ms`, i.e. drop keys older than the newest key created before the cutoff.
    txn.execute_raw(super::statement(
        backend,
        "DELETE FROM signing_keys WHERE created_at < (SELECT MAX(created_at) FROM signing_keys WHERE created_at < ?)",
        [(now - keep_ms).into()],
    ))
    .await
    .context("dropping expired signing keys")?;
    txn.execute_raw(super::statement(
        backend,
        "INSERT INTO signing_keys (kid, sealed_key, created_at) VALUES (?, ?, ?)",
        [kid.into(), sealed_key.into(), now.into()],
    ))
    .await
    .context("storing the signing key")?;
    txn.commit().await.context("committing the key rotation")
}

/// Adds the first signing key unless some replica did already.
pub async fn add_first_signing_key(store: &Store, kid: &str, sealed_key: Vec<u8>) -> Result<()> {
    let _guard = store.write_guard().await;
    let stmt = store.statement(
        "INSERT INTO signing_keys (kid, sealed_key, created_at)
         SELECT ?, ?, ? WHERE NOT EXISTS (SELECT 1 FROM signing_keys)",
        [kid.into(), sealed_key.into(), now_millis().into()],
    );
    store.db().execute_raw(stmt).await.context("storing the first signing key")?;
    Ok(())
}

#[derive(Debug, Clone, FromQueryResult)]
pub struct RefreshToken {
    pub id: i64,
    pub token_hash: String,
    pub family: String,
    pub user_id: i64,
    pub created_at: i64,
    pub expires_at: i64,
    pub used_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

pub async fn insert_refresh(store: &Store, token_hash: &str, family: &str, user_id: i64, ttl_ms: i64) -> Result<()> {
    let _guard = store.write_guard().await;
    let now = now_millis();
    // A user's expired tokens go when the user logs in again: the table holds live logins.
    let stmt = store
        .statement("DELETE FROM refresh_tokens WHERE user_id = ? AND expires_at < ?", [user_id.into(), now.into()]);
    store.db().execute_raw(stmt).await.context("dropping expired refresh tokens")?;
    let stmt = store.statement(
        "INSERT INTO refresh_tokens (token_hash, family, user_id, created_at, expires_at) VALUES (?, ?, ?, ?, ?)",
        [token_hash.into(), family.into(), user_id.into(), now.into(), (now + ttl_ms).into()],
    );
    store.db().execute_raw(stmt).await.context("storing refresh token")?;
    Ok(())
}

/// What presenting a refresh token came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Redemption {
    /// Valid: it is now used, and `next_hash` stored in its family.
    Redeemed { user_id: i64 },
    /// Used before: its whole family is now revoked.
    Reused { user_id: i64 },
    /// Unknown, expired or revoked.
    Invalid,
}

/// Uses a refresh token once, storing its successor in the same transaction, so that two
/// concurrent refreshes with one token cannot both succeed.
pub async fn redeem_refresh(store: &Store, token_hash: &str, next_hash: &str, ttl_ms: i64) -> Result<Redemption> {
    let _guard = store.write_guard().await;
    let now = now_millis();
    let txn = store.db().begin().await.context("starting the refresh")?;
    let backend = txn.get_database_backend();
    let token = RefreshToken::find_by_statement(super::statement(
        backend,
        "SELECT * FROM refresh_tokens WHERE token_hash = ?",
        [token_hash.into()],
    ))
    .all(&txn)
    .await
    .context("loading refresh token")?
    .into_iter()
    .next();
    let Some(token) = token else { return Ok(Redemption::Invalid) };
    if token.revoked_at.is_some() || token.expires_at <= now {
        return Ok(Redemption::Invalid);
    }
    // Claim it: only one of two concurrent redemptions updates the row.
    let claimed = txn
        .execute_raw(super::statement(
            backend,
            "UPDATE refresh_tokens SET used_at = ? WHERE id = ? AND used_at IS NULL",
            [now.into(), token.id.into()],
        ))
        .await
        .context("using refresh token")?;
    if token.used_at.is_some() || claimed.rows_affected() == 0 {
        txn.execute_raw(super::statement(
            backend,
            "UPDATE refresh_tokens SET revoked_at = ? WHERE family = ? AND revoked_at IS NULL",
            [now.into(), token.family.clone().into()],
        ))
        .await
        .context("revoking a reused login")?;
        txn.commit().await.context("committing the revocation")?;
        return Ok(Redemption::Reused { user_id: token.user_id });
    }
    txn.execute_raw(super::statement(
        backend,
        "INSERT INTO refresh_tokens (token_hash, family, user_id, created_at, expires_at) VALUES (?, ?, ?, ?, ?)",
        [next_hash.into(), token.family.clone().into(), token.user_id.into(), now.into(), (now + ttl_ms).into()],
    ))
    .await
    .context("storing the next refresh token")?;
    txn.commit().await.context("committing the refresh")?;
    Ok(Redemption::Redeemed { user_id: token.user_id })
}

/// Revokes the login (family) a refresh token belongs to; whether there was one.
pub async fn revoke_family_of(store: &Store, token_hash: &str) -> Result<bool> {
    let _guard = store.write_guard().await;
    let stmt = store.statement(
        "UPDATE refresh_tokens SET revoked_at = ?
         WHERE revoked_at IS NULL AND family = (SELECT family FROM refresh_tokens WHERE token_hash = ?)",
        [now_millis().into(), token_hash.into()],
    );
    Ok(store.db().execute_raw(stmt).await.context("revoking login")?.rows_affected() > 0)
}

/// Revokes every login of a user (password change, disable).
pub async fn revoke_user<C: ConnectionTrait>(db: &C, user_id: i64) -> Result<()> {
    let stmt = super::statement(
        db.get_database_backend(),
        "UPDATE refresh_tokens SET revoked_at = ? WHERE user_id = ? AND revoked_at IS NULL",
        [now_millis().into(), user_id.into()],
    );
    db.execute_raw(stmt).await.context("revoking the user's logins")?;
    Ok(())
}
