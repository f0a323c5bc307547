//! API keys for integrations: `GET/POST /api-keys`, `DELETE /api-keys/{id}`. A key acts for an
//! organization (and its subtree) with a role, like a user; it is shown once, at creation, and
//! stored as a hash.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Extension;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::audit::AuditOrg;
use super::authenticate::{API_KEY_PREFIX, Caller};
use super::error::{ApiError, ApiResult, ErrorCode};
use super::extract::{Json, Path, Query};
use super::{ListResponse, Page, optional_timestamp, parse_timestamp, timestamp};
use crate::app::App;
use crate::permissions::{Permission, Role, may_grant};
use crate::store::api_keys::{self, ApiKey, NewApiKey};
use crate::store::{now_millis, orgs};

pub fn router() -> OpenApiRouter<Arc<App>> {
    OpenApiRouter::new().routes(routes!(list, create)).routes(routes!(revoke))
}

/// An API key as lists show it: never the key itself.
#[derive(Debug, Serialize, ToSchema)]
pub struct ApiKeyView {
    pub id: i64,
    pub name: String,
    pub role: Role,
    /// The organization's slug.
    pub org: String,
    /// The key's first characters, to tell keys apart.
    pub prefix: String,
    /// Requests a minute; null: the server's default (`[api] api_key_rate_limit_per_minute`).
    pub rate_limit_per_minute: Option<i64>,
    /// `user:<id>` or `api-key:<id>`.
    pub created_by: String,
    pub created_at: String,
    pub expires_at: Option<String>,
    pub last_used_at: Option<String>,
}

/// A key just created: the only time its text is shown.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedApiKey {
    #[serde(flatten)]
    pub view: ApiKeyView,
    pub key: String,
}

fn view(key: &ApiKey, slugs: &HashMap<i64, String>) -> ApiResult<ApiKeyView> {
    Ok(ApiKeyView {
        id: key.id,
        name: key.name.clone(),
        role: Role::parse(&key.role).ok_or_else(|| anyhow::anyhow!("API key {} has unknown role", key.id))?,
        org: slugs.get(&key.org_id).cloned().unwrap_or_default(),
        prefix: key.prefix.clone(),
        rate_limit_per_minute: key.rate_limit_per_minute,
        created_by: key.created_by.clone(),
        created_at: timestamp(key.created_at),
        expires_at: optional_timestamp(key.expires_at),
        last_used_at: optional_timestamp(key.last_used_at),
    })
}

fn invalid(detail: impl Into<String>) -> ApiError {
    ApiError::bad_request(ErrorCode::InvalidApiKey, detail)
}

/// The keys of the caller's subtree (never the keys themselves).
#[utoipa::path(get, path = "/api-keys", tag = "api-keys", params(Page),
    responses((status = 200, description = "A page of API keys", body = ListResponse<ApiKeyView>)))]
async fn list(
    State(app): State<Arc<App>>,
    caller: Caller,
    Query(page): Query<Page>,
) -> ApiResult<Json<ListResponse<ApiKeyView>>> {
    caller.require(Permission::ManageUsers)?;
    let limit = page.limit()?;
    let rows = api_keys::list(&app.api_store, &caller.scope, page.id_cursor()?, limit).await?;
    let slugs = super::org_slugs(&app).await?;
    let last = rows.last().map(|k| k.id.to_string());
    let items = rows.iter().map(|k| view(k, &slugs)).collect::<ApiResult<_>>()?;
    Ok(Json(ListResponse::new(items, limit, last)))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct CreateApiKey {
    name: String,
    role: Role,
    /// The organization's slug; the caller's own when absent.
    org: Option<String>,
    /// RFC 3339; the key stops working then.
    expires_at: Option<String>,
    rate_limit_per_minute: Option<i64>,
}

const MAX_RATE_LIMIT: i64 = 1_000_000;
const PREFIX_CHARS: usize = 12;

/// A new key for an integration, with a role no higher than the caller's own. The answer is
/// the only time the key is shown.
#[utoipa::path(post, path = "/api-keys", tag = "api-keys", request_body = CreateApiKey,
    responses((status = 201, description = "Created", body = CreatedApiKey)))]
async fn create(
    State(app): State<Arc<App>>,
    caller: Caller,
    Json(request): Json<CreateApiKey>,
) -> ApiResult<(StatusCode, Extension<AuditOrg>, Json<CreatedApiKey>)> {
    caller.require(Permission::ManageUsers)?;
    let name = request.name.trim();
    if name.is_empty() || name.chars().count() > 200 || name.chars().any(char::is_control) {
        return Err(invalid("a key's name is 1 to 200 printable characters").on_field("name"));
    }
    let org = super::orgs::named_or_own(&app, &caller, request.org.as_deref()).await?;
    may_grant(caller.role, request.role, org.slug == orgs::PLATFORM_SLUG)
        .map_err(|e| ApiError::new(StatusCode::FORBIDDEN, ErrorCode::InvalidRole, e.to_string()).on_field("role"))?;
    let expires_at = request.expires_at.as_deref().map(|v| parse_timestamp("expires_at", v)).transpose()?;
    if expires_at.is_some_and(|at| at <= now_millis()) {
        return Err(invalid("expires_at is in the past").on_field("expires_at"));
    }
    if let Some(limit) = request.rate_limit_per_minute
        && !(1..=MAX_RATE_LIMIT).contains(&limit)
    {
        return Err(invalid(format!("rate_limit_per_minute is 1 to {MAX_RATE_LIMIT}, got {limit}"))
            .on_field("rate_limit_per_minute"));
    }
    let key = crate::secrets::random_token(API_KEY_PREFIX);
    let prefix: String = key.chars().take(PREFIX_CHARS).collect();
    let row = api_keys::create(
        &app.api_store,
        NewApiKey {
            org_id: org.id,
            name,
            role: request.role.as_str(),
            prefix: &prefix,
            key_hash: &super::auth::token_hash(&key),
            rate_limit_per_minute: request.rate_limit_per_minute,
            created_by: &caller.actor(),
            expires_at,
        },
    )
    .await?;
    let view = view(&row, &super::org_slugs(&app).await?)?;
    Ok((StatusCode::CREATED, Extension(AuditOrg(Some(org.id))), Json(CreatedApiKey { view, key })))
}

#[utoipa::path(delete, path = "/api-keys/{id}", tag = "api-keys",
    params(("id" = i64, Path, description = "The key's id")),
    responses((status = 204, description = "Revoked: the key stops working at once")))]
async fn revoke(
    State(app): State<Arc<App>>,
    caller: Caller,
    Path(id): Path<i64>,
) -> ApiResult<(StatusCode, Extension<AuditOrg>)> {
    caller.require(Permission::ManageUsers)?;
    let key =
        api_keys::visible(&app.api_store, &caller.scope, id).await?.ok_or_else(|| ApiError::not_found("API key"))?;
    let role = Role::parse(&key.role).ok_or_else(|| anyhow::anyhow!("API key {} has unknown role", key.id))?;
    if role > caller.role {
        return Err(ApiError::forbidden(format!("a {} cannot revoke a {} key", caller.role.as_str(), role.as_str())));
    }
    api_keys::revoke(&app.api_store, id).await?;
    crate::replicas::publish(&app, crate::replicas::Signal::Principals);
    Ok((StatusCode::NO_CONTENT, Extension(AuditOrg(Some(key.org_id)))))
}
