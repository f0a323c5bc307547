//! The audit log: every mutation through the API is recorded by the authentication middleware
//! (who, in which organization, what, on what, from where, and how it ended), and read at
//! `GET /audit`, scoped like everything else.

use std::sync::Arc;

use axum::extract::State;
use axum::response::Response;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::authenticate::Caller;
use super::error::ApiResult;
use super::extract::{Json, Query};
use super::{ListResponse, Page, parse_timestamp, timestamp};
use crate::app::App;
use crate::permissions::Permission;
use crate::store::audit::{self, AuditEntry, AuditFilter};
use crate::store::users::User;

/// Who a request without a caller acted as, when its handler found out (a login): put in the
/// response's extensions for the audit record.
#[derive(Debug, Clone)]
pub struct AuditActor {
    pub actor: String,
    pub name: String,
    pub org_id: i64,
}

/// The organization a mutation concerns, when its handler knows it and it is not the caller's
/// own (a platform administrator acting on a tenant's device): the tenant sees it in its log.
#[derive(Debug, Clone, Copy)]
pub struct AuditOrg(pub Option<i64>);

/// Marks a response as acting for `user`.
pub fn as_actor(mut response: Response, user: &User) -> Response {
    response.extensions_mut().insert(AuditActor {
        actor: format!("user:{}", user.id),
        name: user.email.clone(),
        org_id: user.org_id,
    });
    response
}

/// What the audit needs of a response (a response itself cannot be held across an await: its
/// body is not `Sync`).
#[derive(Debug, Clone)]
pub struct Outcome {
    pub status: u16,
    pub actor: Option<AuditActor>,
    pub org: Option<AuditOrg>,
}

impl Outcome {
    pub fn of(response: &Response) -> Self {
        Self {
            status: response.status().as_u16(),
            actor: response.extensions().get::<AuditActor>().cloned(),
            org: response.extensions().get::<AuditOrg>().copied(),
        }
    }
}

/// Records a mutation. A mutation nobody can be named for (no credentials, and a handler that
/// found no user) changed nothing and is not recorded: unauthenticated floods cannot fill the
/// log. A failure to record is logged; the mutation has happened and its answer stands.
pub async fn record(
    app: &App,
    caller: Option<&Caller>,
    action: &str,
    target: &str,
    client: std::net::IpAddr,
    outcome: Outcome,
) {
    let (actor, name, own_org) = match (caller, &outcome.actor) {
        (Some(caller), _) => (caller.actor(), caller.actor_name().to_owned(), caller.org_id),
        (None, Some(named)) => (named.actor.clone(), named.name.clone(), named.org_id),
        (None, None) => return,
    };
    let org_id = match outcome.org {
        Some(AuditOrg(org)) => org,
        None => Some(own_org),
    };
    let entry = audit::NewEntry {
        org_id,
        actor: &actor,
        actor_name: &name,
        action,
        target,
        source_address: &client.to_string(),
        status: outcome.status,
    };
    if let Err(error) = audit::record(&app.api_store, entry).await {
        tracing::error!(action, target, actor, "recording an audit entry failed: {error:#}");
    }
}

pub fn router() -> OpenApiRouter<Arc<App>> {
    OpenApiRouter::new().routes(routes!(list))
}

/// One audit entry.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditView {
    pub id: i64,
    /// The organization's slug; null once it was deleted.
    pub org: Option<String>,
    /// `user:<id>` or `api-key:<id>`.
    pub actor: String,
    /// The user's email or the key's name, as they were then.
    pub actor_name: String,
    /// Method and route, e.g. `POST /api/v1/orgs`.
    pub action: String,
    /// The request path.
    pub target: String,
    pub source_address: String,
    /// The HTTP status the request was answered with.
    pub status: u16,
    pub success: bool,
    pub time: String,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct AuditQuery {
    #[serde(flatten)]
    #[param(ignore)] // documented by `Page` itself
    page: Page,
    actor: Option<String>,
    /// A prefix of the action, e.g. `POST` or `DELETE /api/v1/devices`.
    action: Option<String>,
    /// A prefix of the target path.
    target: Option<String>,
    since: Option<String>,
    until: Option<String>,
    #[serde(default)]
    failed: bool,
}

/// Mutations in the caller's subtree, newest first.
#[utoipa::path(get, path = "/audit", tag = "audit", params(AuditQuery, Page),
    responses((status = 200, description = "A page of audit entries", body = ListResponse<AuditView>)))]
async fn list(
    State(app): State<Arc<App>>,
    caller: Caller,
    Query(query): Query<AuditQuery>,
) -> ApiResult<Json<ListResponse<AuditView>>> {
    caller.require(Permission::ReadAudit)?;
    let limit = query.page.limit()?;
    let filter = AuditFilter {
        actor: query.actor,
        action_prefix: query.action,
        target_prefix: query.target,
        since: query.since.as_deref().map(|v| parse_timestamp("since", v)).transpose()?,
        until: query.until.as_deref().map(|v| parse_timestamp("until", v)).transpose()?,
        failed_only: query.failed,
    };
    let rows = audit::list(&app.api_store, &caller.scope, &filter, query.page.id_cursor()?, limit).await?;
    let slugs = super::org_slugs(&app).await?;
    let last = rows.last().map(|r| r.id.to_string());
    let items = rows.iter().map(|row| view(row, &slugs)).collect();
    Ok(Json(ListResponse::new(items, limit, last)))
}

fn view(row: &AuditEntry, slugs: &std::collections::HashMap<i64, String>) -> AuditView {
    let status = u16::try_from(row.status).unwrap_or(0);
    AuditView {
        id: row.id,
        org: row.org_id.and_then(|id| slugs.get(&id).cloned()),
        actor: row.actor.clone(),
        actor_name: row.actor_name.clone(),
        action: row.action.clone(),
        target: row.target.clone(),
        source_address: row.source_address.clone(),
        status,
        success: status < 400,
        time: timestamp(row.created_at),
    }
}
