//! The audit log: every mutation through the API, who made it and how it ended.

use anyhow::{Context, Result};
use sea_orm::{ConnectionTrait, FromQueryResult, Value};

use super::orgs::Scope;
use super::{Store, now_millis};

#[derive(Debug, Clone, FromQueryResult)]
pub struct AuditEntry {
    pub id: i64,
    pub org_id: Option<i64>,
    pub actor: String,
    pub actor_name: String,
    pub action: String,
    pub target: String,
    pub source_address: String,
    pub status: i64,
    pub created_at: i64,
}

#[derive(Debug)]
pub struct NewEntry<'a> {
    pub org_id: Option<i64>,
    pub actor: &'a str,
    pub actor_name: &'a str,
    pub action: &'a str,
    pub target: &'a str,
    pub source_address: &'a str,
    pub status: u16,
}

pub async fn record(store: &Store, entry: NewEntry<'_>) -> Result<()> {
    let _guard = store.write_guard().await;
    insert(store.db(), entry).await
}

/// Writes an entry on `db`: the transaction of a change Roost makes by itself (a webhook
/// disabled), whose entry exists exactly when the change does.
pub async fn insert<C: ConnectionTrait>(db: &C, entry: NewEntry<'_>) -> Result<()> {
    let stmt = super::statement(
        db.get_database_backend(),
        "INSERT INTO audit_log (org_id, actor, actor_name, action, target, source_address, status, created_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        [
            entry.org_id.into(),
            entry.actor.into(),
            entry.actor_name.into(),
            entry.action.into(),
            entry.target.into(),
            entry.source_address.into(),
            i64::from(entry.status).into(),
            now_millis().into(),
        ],
    );
    db.execute_raw(stmt).await.context("recording audit entry")?;
    Ok(())
}

/// Filters of `GET /audit`.
#[derive(Debug, Default)]
pub struct AuditFilter {
    pub actor: Option<String>,
    pub action_prefix: Option<String>,
    pub target_prefix: Option<String>,
    pub since: Option<i64>,
    pub until: Option<i64>,
    pub failed_only: bool,
}

/// Entries of the scope, newest first, before `before` (an id).
pub async fn list(
    store: &Store,
    scope: &Scope,
    filter: &AuditFilter,
    before: Option<i64>,
    limit: u64,
) -> Result<Vec<AuditEntry>> {
    let (condition, mut args) = scope.condition("org_id");
    let mut sql = format!("SELECT * FROM audit_log WHERE {condition}");
    let mut push = |clause: &str, value: Value| {
        sql.push_str(clause);
        args.push(value);
    };
    if let Some(actor) = &filter.actor {
        push(" AND actor = ?", actor.clone().into());
    }
    if let Some(prefix) = &filter.action_prefix {
        push(" AND substr(action, 1, CAST(? AS INTEGER)) = ?", (prefix.chars().count() as i64).into());
        push("", prefix.clone().into());
    }
    if let Some(prefix) = &filter.target_prefix {
        push(" AND substr(target, 1, CAST(? AS INTEGER)) = ?", (prefix.chars().count() as i64).into());
        push("", prefix.clone().into());
    }
    if filter.failed_only {
        sql.push_str(" AND status >= 400");
    }
    super::newest_first(&mut sql, &mut args, (filter.since, filter.until), before, limit);
    AuditEntry::find_by_statement(store.statement(&sql, args)).all(store.db()).await.context("listing audit entries")
}
