//! Organizations: the tenant tree. A grant on an organization covers its whole subtree.

use anyhow::{Context, Result, bail};
use sea_orm::{ConnectionTrait, FromQueryResult, Value};

use super::{Store, now_millis};

#[derive(Debug, Clone, FromQueryResult, serde::Serialize)]
pub struct Organization {
    pub id: i64,
    pub slug: String,
    pub name: String,
    pub parent_id: Option<i64>,
    pub created_at: i64,
}

/// The organizations a caller may see: every one (platform administrators) or a subtree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    All,
    Orgs(Vec<i64>),
}

impl Scope {
    /// A SQL condition restricting `column` (an organization id) to this scope. Rows with no
    /// organization (unclaimed devices) are visible only to the platform scope.
    pub fn condition(&self, column: &str) -> (String, Vec<Value>) {
        match self {
            Self::All => ("1 = 1".into(), Vec::new()),
            Self::Orgs(ids) if ids.is_empty() => ("1 = 0".into(), Vec::new()),
            Self::Orgs(ids) => (
                format!("{column} IN ({})", super::placeholders(ids.len())),
                ids.iter().map(|id| Value::from(*id)).collect(),
            ),
        }
    }

    pub fn contains(&self, org_id: Option<i64>) -> bool {
        match (self, org_id) {
            (Self::All, _) => true,
            (Self::Orgs(ids), Some(id)) => ids.contains(&id),
            (Self::Orgs(_), None) => false,
        }
    }
}

pub const PLATFORM_SLUG: &str = "platform";

/// Slugs appear in onboarding URLs (`/cwmp/{slug}`): lowercase letters, digits and hyphens.
pub fn validate_slug(slug: &str) -> Result<()> {
    let valid = !slug.is_empty()
        && slug.len() <= 63
        && slug.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !slug.starts_with('-')
        && !slug.ends_with('-');
    if !valid {
        bail!("an organization slug is 1-63 lowercase letters, digits and inner hyphens: {slug:?}");
    }
    Ok(())
}

pub async fn by_slug(store: &Store, slug: &str) -> Result<Option<Organization>> {
    let stmt = store.statement("SELECT * FROM organizations WHERE slug = ?", [slug.into()]);
    super::first::<Organization, _>(store.db(), stmt).await.context("loading organization")
}

pub async fn by_id(store: &Store, id: i64) -> Result<Option<Organization>> {
    let stmt = store.statement("SELECT * FROM organizations WHERE id = ?", [id.into()]);
    super::first::<Organization, _>(store.db(), stmt).await.context("loading organization")
}

pub async fn create(store: &Store, name: &str, slug: &str, parent: Option<i64>) -> Result<Organization> {
    validate_slug(slug)?;
    let _guard = store.write_guard().await;
    let stmt = store.statement(
        "INSERT INTO organizations (slug, name, parent_id, created_at) VALUES (?, ?, ?, ?) RETURNING *",
        [slug.into(), name.into(), parent.into(), now_millis().into()],
    );
    super::first::<Organization, _>(store.db(), stmt)
        .await
        .context("creating organization")?
        .context("the database returned no row for the new organization")
}

/// The ids of an organization and all its descendants.
pub async fn subtree(store: &Store, root: i64) -> Result<Vec<i64>> {
    let stmt = store.statement(
        "WITH RECURSIVE tree(id) AS (
             SELECT id FROM organizations WHERE id = ?
             UNION ALL
             SELECT o.id FROM organizations o JOIN tree t ON o.parent_id = t.id
         ) SELECT id FROM tree",
        [root.into()],
    );
    let rows = store.db().query_all_raw(stmt).await.context("loading organization subtree")?;
    rows.iter().map(|row| row.try_get_by_index::<i64>(0).context("organization id")).collect()
}
