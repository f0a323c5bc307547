//! Users: `GET/POST /users`, `GET/PATCH/DELETE /users/{id}`. Administrators manage the users of
//! their subtree up to their own role; everyone may read themselves and change their own
//! password (given the current one).

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
use super::authenticate::{Caller, Principal};
use super::error::{ApiError, ApiResult, ErrorCode};
use super::extract::{Json, Path, Query};
use super::{ListResponse, Page, timestamp};
use crate::app::App;
use crate::permissions::{Permission, Role, may_grant};
use crate::store::orgs;
use crate::store::users::{self, User, UserChange};

pub fn router() -> OpenApiRouter<Arc<App>> {
    OpenApiRouter::new().routes(routes!(list, create)).routes(routes!(show, update, remove))
}

/// A user's id in a path.
#[derive(Debug, utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)] // documents the path; handlers read it with `Path<i64>`
struct UserId {
    id: i64,
}

/// A user as the API shows it (never its password hash).
#[derive(Debug, Serialize, ToSchema)]
pub struct UserView {
    pub id: i64,
    pub email: String,
    pub role: Role,
    /// The organization's slug.
    pub org: String,
    pub disabled: bool,
    pub created_at: String,
}

fn view(user: &User, slugs: &HashMap<i64, String>) -> ApiResult<UserView> {
    Ok(UserView {
        id: user.id,
        email: user.email.clone(),
        role: Role::parse(&user.role).ok_or_else(|| anyhow::anyhow!("user {} has unknown role", user.id))?,
        org: slugs.get(&user.org_id).cloned().unwrap_or_default(),
        disabled: user.disabled,
        created_at: timestamp(user.created_at),
    })
}

fn is_self(caller: &Caller, id: i64) -> bool {
    matches!(caller.principal, Principal::User { id: own, .. } if own == id)
}

fn invalid(detail: impl Into<String>) -> ApiError {
    ApiError::bad_request(ErrorCode::InvalidUser, detail)
}

fn check_email(email: &str) -> ApiResult<()> {
    let valid = email.len() <= 254
        && !email.chars().any(|c| c.is_whitespace() || c.is_control())
        && email.split_once('@').is_some_and(|(local, domain)| !local.is_empty() && domain.contains('.'));
    if valid { Ok(()) } else { Err(invalid(format!("{email:?} is not an email address")).on_field("email")) }
}

fn check_password(password: &str) -> ApiResult<()> {
    super::auth::check_password_strength(password).map_err(|why| invalid(why).on_field("password"))
}

/// A user the caller may see: itself, or (as a user manager) one of its subtree.
async fn visible(app: &App, caller: &Caller, id: i64) -> ApiResult<User> {
    if !is_self(caller, id) {
        caller.require(Permission::ManageUsers)?;
    }
    users::visible(&app.api_store, &caller.scope, id).await?.ok_or_else(|| ApiError::not_found("user"))
}

/// A user the caller may change: in its subtree, not above its own role.
async fn manageable(app: &App, caller: &Caller, id: i64) -> ApiResult<User> {
    caller.require(Permission::ManageUsers)?;
    let user = users::visible(&app.api_store, &caller.scope, id).await?.ok_or_else(|| ApiError::not_found("user"))?;
    let role = Role::parse(&user.role).ok_or_else(|| anyhow::anyhow!("user {} has unknown role", user.id))?;
    if role > caller.role {
        return Err(ApiError::forbidden(format!("a {} cannot change a {}", caller.role.as_str(), role.as_str())));
    }
    Ok(user)
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct UserListQuery {
    #[serde(flatten)]
    #[param(ignore)] // documented by `Page` itself
    page: Page,
    /// Only this organization's users (a slug).
    org: Option<String>,
}

/// The users of the caller's subtree (user managers only).
#[utoipa::path(get, path = "/users", tag = "users", params(UserListQuery, Page),
    responses((status = 200, description = "A page of users", body = ListResponse<UserView>)))]
async fn list(
    State(app): State<Arc<App>>,
    caller: Caller,
    Query(query): Query<UserListQuery>,
) -> ApiResult<Json<ListResponse<UserView>>> {
    caller.require(Permission::ManageUsers)?;
    let limit = query.page.limit()?;
    let org = match &query.org {
        Some(slug) => Some(super::orgs::visible(&app, &caller, slug).await?.id),
        None => None,
    };
    let rows = users::list(&app.api_store, &caller.scope, org, query.page.id_cursor()?, limit).await?;
    let slugs = super::org_slugs(&app).await?;
    let last = rows.last().map(|u| u.id.to_string());
    let items = rows.iter().map(|u| view(u, &slugs)).collect::<ApiResult<_>>()?;
    Ok(Json(ListResponse::new(items, limit, last)))
}

/// A user of the caller's subtree, or the caller itself.
#[utoipa::path(get, path = "/users/{id}", tag = "users", params(UserId),
    responses((status = 200, description = "The user", body = UserView)))]
async fn show(State(app): State<Arc<App>>, caller: Caller, Path(id): Path<i64>) -> ApiResult<Json<UserView>> {
    let user = visible(&app, &caller, id).await?;
    Ok(Json(view(&user, &super::org_slugs(&app).await?)?))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct CreateUser {
    email: String,
    password: String,
    role: Role,
    /// The organization's slug; the caller's own when absent.
    org: Option<String>,
}

/// A new user, with a role no higher than the caller's own.
#[utoipa::path(post, path = "/users", tag = "users", request_body = CreateUser,
    responses((status = 201, description = "Created", body = UserView)))]
async fn create(
    State(app): State<Arc<App>>,
    caller: Caller,
    Json(request): Json<CreateUser>,
) -> ApiResult<(StatusCode, Extension<AuditOrg>, Json<UserView>)> {
    caller.require(Permission::ManageUsers)?;
    let email = request.email.trim();
    check_email(email)?;
    check_password(&request.password)?;
    let org = super::orgs::named_or_own(&app, &caller, request.org.as_deref()).await?;
    may_grant(caller.role, request.role, org.slug == orgs::PLATFORM_SLUG)
        .map_err(|e| ApiError::new(StatusCode::FORBIDDEN, ErrorCode::InvalidRole, e.to_string()).on_field("role"))?;
    let taken = || {
        ApiError::conflict(ErrorCode::EmailTaken, format!("a user with email {email:?} exists already"))
            .on_field("email")
    };
    if users::by_email(&app.api_store, email).await?.is_some() {
        return Err(taken());
    }
    let hash = super::auth::hash_password_off_the_runtime(&app, request.password).await?;
    let user = match users::create(&app.api_store, org.id, email, &hash, request.role.as_str()).await {
        Ok(user) => user,
        Err(_) if users::by_email(&app.api_store, email).await?.is_some() => return Err(taken()),
        Err(error) => return Err(error.into()),
    };
    // Recorded in the log of the organization the user joins.
    Ok((StatusCode::CREATED, Extension(AuditOrg(Some(org.id))), Json(view(&user, &super::org_slugs(&app).await?)?)))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct UpdateUser {
    role: Option<Role>,
    disabled: Option<bool>,
    password: Option<String>,
    /// Required when changing one's own password.
    current_password: Option<String>,
}

/// Changes a user's role, disables or enables it, or sets its password (the caller's own needs
/// `current_password`). A password change or disabling revokes the user's logins.
#[utoipa::path(patch, path = "/users/{id}", tag = "users", params(UserId), request_body = UpdateUser,
    responses((status = 200, description = "The user as it is now", body = UserView)))]
async fn update(
    State(app): State<Arc<App>>,
    caller: Caller,
    Path(id): Path<i64>,
    Json(request): Json<UpdateUser>,
) -> ApiResult<(Extension<AuditOrg>, Json<UserView>)> {
    let own = is_self(&caller, id);
    if own && (request.role.is_some() || request.disabled.is_some()) {
        return Err(invalid("nobody changes their own role or disables themselves; ask another administrator"));
    }
    let user = if own { visible(&app, &caller, id).await? } else { manageable(&app, &caller, id).await? };
    if let Some(role) = request.role {
        let org = orgs::by_id(&app.api_store, user.org_id).await?.ok_or_else(|| ApiError::not_found("user"))?;
        may_grant(caller.role, role, org.slug == orgs::PLATFORM_SLUG).map_err(|e| {
            ApiError::new(StatusCode::FORBIDDEN, ErrorCode::InvalidRole, e.to_string()).on_field("role")
        })?;
    }
    let password_hash = match request.password {
        Some(password) => {
            check_password(&password)?;
            if own {
                let current = request.current_password.unwrap_or_default();
                if !super::auth::verify_password_off_the_runtime(&app, current, user.password_hash.clone()).await? {
                    return Err(invalid("current_password is missing or wrong").on_field("current_password"));
                }
            }
            Some(super::auth::hash_password_off_the_runtime(&app, password).await?)
        }
        None => None,
    };
    let change =
        UserChange { role: request.role.map(|r| r.as_str().to_owned()), disabled: request.disabled, password_hash };
    let user = users::update(&app.api_store, id, change).await?.ok_or_else(|| ApiError::not_found("user"))?;
    crate::replicas::publish(&app, crate::replicas::Signal::Principals);
    Ok((Extension(AuditOrg(Some(user.org_id))), Json(view(&user, &super::org_slugs(&app).await?)?)))
}

#[utoipa::path(delete, path = "/users/{id}", tag = "users", params(UserId),
    responses((status = 204, description = "Deleted; its logins are revoked")))]
async fn remove(
    State(app): State<Arc<App>>,
    caller: Caller,
    Path(id): Path<i64>,
) -> ApiResult<(StatusCode, Extension<AuditOrg>)> {
    if is_self(&caller, id) {
        return Err(invalid("nobody deletes themselves; ask another administrator"));
    }
    let user = manageable(&app, &caller, id).await?;
    users::delete(&app.api_store, id).await?;
    crate::replicas::publish(&app, crate::replicas::Signal::Principals);
    Ok((StatusCode::NO_CONTENT, Extension(AuditOrg(Some(user.org_id)))))
}
