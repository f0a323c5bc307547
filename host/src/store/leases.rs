//! Leases: work that one replica at a time must do (the rollout runner starts downloads; two
//! runners would start each device twice) is done by whoever holds its lease. A lease is a row
//! `{name, owner, until}` taken or renewed by one statement, the same on SQLite and PostgreSQL:
//! it is written only if it has expired or is the caller's already.

use anyhow::{Context, Result};
use sea_orm::ConnectionTrait;

use super::{Store, now_millis};

/// Takes or renews the lease `name` for `owner` until `ttl_ms` from now; whether `owner` holds it.
pub async fn hold(store: &Store, name: &str, owner: &str, ttl_ms: i64) -> Result<bool> {
    let now = now_millis();
    let _guard = store.write_guard().await;
    let held = store
        .db()
        .execute_raw(store.statement(
            "INSERT INTO leases (name, owner, until) VALUES (?, ?, ?)
             ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, until = excluded.until
             WHERE leases.until < ? OR leases.owner = excluded.owner",
            [name.into(), owner.into(), now.saturating_add(ttl_ms).into(), now.into()],
        ))
        .await
        .with_context(|| format!("holding the lease {name}"))?;
    Ok(held.rows_affected() > 0)
}

/// Gives a lease up (at shutdown), so another replica need not wait for it to expire.
pub async fn release(store: &Store, name: &str, owner: &str) -> Result<()> {
    let _guard = store.write_guard().await;
    store
        .db()
        .execute_raw(store.statement("DELETE FROM leases WHERE name = ? AND owner = ?", [name.into(), owner.into()]))
        .await
        .with_context(|| format!("releasing the lease {name}"))?;
    Ok(())
}
