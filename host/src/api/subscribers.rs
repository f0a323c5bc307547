//! Subscribers: an organization's customers, their plan and PPPoE account, and their devices.
//! The PPPoE password is sealed at rest and never served; changing it (or the PPPoE user name)
//! pushes the new credentials to the subscriber's devices.

use std::sync::Arc;

use axum::Extension;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::audit::AuditOrg;
use super::authenticate::Caller;
use super::error::{ApiError, ApiResult, ErrorCode};
use super::extract::{Json, Path, Query};
use super::tasks::TaskView;
use super::{ListResponse, Page, org_slugs, timestamp};
use crate::app::App;
use crate::permissions::Permission;
use crate::store::subscribers::{self, Change, NewSubscriber, Preassigned, Subscriber};

pub fn router() -> OpenApiRouter<Arc<App>> {
    OpenApiRouter::new().routes(routes!(list, create)).routes(routes!(show, change, remove)).routes(routes!(preassign))
}

/// A subscriber as the API shows it (never the PPPoE password).
#[derive(Debug, Serialize, ToSchema)]
pub struct SubscriberView {
    pub id: String,
    /// The organization's slug.
    pub org: String,
    pub username: String,
    pub name: String,
    pub plan: String,
    pub pppoe_username: String,
    /// Whether a PPPoE password is set (it is never shown).
    pub pppoe_password_set: bool,
    /// The devices linked to the subscriber (their ids), in a single subscriber's view.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub devices: Option<Vec<String>>,
    /// Serials that will link their device at its first Inform, in a single subscriber's view.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expected_serials: Option<Vec<String>>,
    pub created_at: String,
    pub updated_at: String,
}

impl SubscriberView {
    fn new(subscriber: &Subscriber, org: &str) -> Self {
        Self {
            id: subscriber.id.to_string(),
            org: org.to_owned(),
            username: subscriber.username.clone(),
            name: subscriber.name.clone(),
            plan: subscriber.plan.clone(),
            pppoe_username: subscriber.pppoe_username.clone(),
            pppoe_password_set: subscriber.pppoe_password.is_some(),
            devices: None,
            expected_serials: None,
            created_at: timestamp(subscriber.created_at),
            updated_at: timestamp(subscriber.updated_at),
        }
    }
}

fn invalid(detail: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, ErrorCode::InvalidSubscriber, detail)
}

/// A username and a plan are also device tags (`sub:<username>`, `plan:<plan>`): letters,
/// digits, `-`, `_`, `.` or `:`, short enough for the tag.
fn check_tag_part(field: &str, prefix: &str, value: &str) -> ApiResult<()> {
    if value.is_empty() || roost_params::check_tag(&format!("{prefix}{value}")).is_err() {
        return Err(invalid(format!(
            "{field}: {value:?} must be 1 to {} letters, digits, '-', '_', '.' or ':'",
            64 - prefix.len()
        ))
        .on_field(field));
    }
    Ok(())
}

fn check_username(username: &str) -> ApiResult<()> {
    check_tag_part("username", subscribers::SUBSCRIBER_TAG, username)
}

fn check_plan(plan: &str) -> ApiResult<()> {
    check_tag_part("plan", subscribers::PLAN_TAG, plan)
}

fn check_name(name: &str) -> ApiResult<()> {
    if name.len() > 256 || name.chars().any(char::is_control) {
        return Err(invalid("name: at most 256 bytes, no control characters").on_field("name"));
    }
    Ok(())
}

fn check_pppoe(username: &str, password: &str) -> ApiResult<()> {
    crate::tasks::intent::check_pppoe(username, password).map_err(|e| {
        let problem = invalid(format!("pppoe_{}", e.message));
        match e.field {
            Some(field) => problem.on_field(format!("pppoe_{field}")),
            None => problem,
        }
    })
}

/// The subscriber `key` names in an organization: its username there, or its id.
pub async fn in_org(app: &App, org_id: i64, key: &str) -> ApiResult<Option<Subscriber>> {
    let scope = crate::store::orgs::Scope::Orgs(vec![org_id]);
    if let Some(found) = subscribers::list(&app.api_store, &scope, Some(key), None, 1).await?.pop() {
        return Ok(Some(found));
    }
    let Ok(id) = key.parse::<i64>() else { return Ok(None) };
    Ok(subscribers::visible(&app.api_store, &scope, id).await?)
}

async fn visible(app: &App, caller: &Caller, id: &str) -> ApiResult<Subscriber> {
    let id: i64 = id.parse().map_err(|_| ApiError::not_found("subscriber"))?;
    subscribers::visible(&app.api_store, &caller.scope, id).await?.ok_or_else(|| ApiError::not_found("subscriber"))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct ListQuery {
    #[serde(flatten)]
    #[param(ignore)] // documented by `Page` itself
    page: Page,
    /// Only the subscriber of this username.
    username: Option<String>,
}

#[utoipa::path(get, path = "/subscribers", tag = "subscribers", params(ListQuery, Page),
    responses((status = 200, description = "A page of subscribers", body = ListResponse<SubscriberView>)))]
async fn list(
    State(app): State<Arc<App>>,
    caller: Caller,
    Query(query): Query<ListQuery>,
) -> ApiResult<Json<ListResponse<SubscriberView>>> {
    caller.require(Permission::ReadFleet)?;
    let limit = query.page.limit()?;
    let rows =
        subscribers::list(&app.api_store, &caller.scope, query.username.as_deref(), query.page.id_cursor()?, limit)
            .await?;
    let slugs = org_slugs(&app).await?;
    let last = rows.last().map(|s| s.id.to_string());
    let items = rows
        .iter()
        .map(|s| SubscriberView::new(s, slugs.get(&s.org_id).map(String::as_str).unwrap_or_default()))
        .collect();
    Ok(Json(ListResponse::new(items, limit, last)))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateSubscriber {
    /// Unique in the organization; also the device tag `sub:<username>`.
    username: String,
    /// The subscriber's name as the CRM knows it.
    #[serde(default)]
    name: String,
    /// Also the device tag `plan:<plan>`.
    plan: String,
    pppoe_username: String,
    /// Sealed at rest; never served.
    #[serde(default)]
    pppoe_password: String,
    /// The organization's slug; the caller's own when absent.
    org: Option<String>,
}

#[utoipa::path(post, path = "/subscribers", tag = "subscribers", request_body = CreateSubscriber,
    responses((status = 201, description = "The new subscriber", body = SubscriberView)))]
async fn create(
    State(app): State<Arc<App>>,
    caller: Caller,
    Json(request): Json<CreateSubscriber>,
) -> ApiResult<(StatusCode, Extension<AuditOrg>, Json<SubscriberView>)> {
    caller.require(Permission::ManageSubscribers)?;
    check_username(&request.username)?;
    check_plan(&request.plan)?;
    check_name(&request.name)?;
    check_pppoe(&request.pppoe_username, &request.pppoe_password)?;
    let org = super::orgs::named_or_own(&app, &caller, request.org.as_deref()).await?;
    let new = NewSubscriber {
        org_id: org.id,
        username: &request.username,
        name: &request.name,
        plan: &request.plan,
        pppoe_username: &request.pppoe_username,
        pppoe_password: Some(app.secrets.seal(request.pppoe_password.as_bytes())),
    };
    let created = subscribers::create(&app.api_store, new).await?.ok_or_else(|| {
        ApiError::conflict(
            ErrorCode::UsernameTaken,
            format!("username: {} has a subscriber {:?} already", org.slug, request.username),
        )
        .on_field("username")
    })?;
    let view = SubscriberView { devices: Some(Vec::new()), ..SubscriberView::new(&created, &org.slug) };
    Ok((StatusCode::CREATED, Extension(AuditOrg(Some(org.id))), Json(view)))
}

/// A subscriber's id in a path.
#[derive(Debug, utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)] // documents the path; handlers read it with `Path<String>`
struct SubscriberId {
    id: String,
}

/// A subscriber with its devices and the serials it expects.
#[utoipa::path(get, path = "/subscribers/{id}", tag = "subscribers", params(SubscriberId),
    responses((status = 200, description = "The subscriber", body = SubscriberView)))]
async fn show(State(app): State<Arc<App>>, caller: Caller, Path(id): Path<String>) -> ApiResult<Json<SubscriberView>> {
    caller.require(Permission::ReadFleet)?;
    let subscriber = visible(&app, &caller, &id).await?;
    Ok(Json(detailed(&app, &subscriber).await?))
}

async fn detailed(app: &App, subscriber: &Subscriber) -> ApiResult<SubscriberView> {
    let devices = subscribers::devices_of(app.api_store.db(), subscriber.id).await?;
    let expected = subscribers::expected_serials(&app.api_store, subscriber.id).await?;
    Ok(SubscriberView {
        devices: Some(devices.into_iter().map(|d| d.device_id).collect()),
        expected_serials: Some(expected),
        ..SubscriberView::new(subscriber, &super::org_slug(app, subscriber.org_id).await?)
    })
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangeSubscriber {
    name: Option<String>,
    /// A new plan retags the subscriber's devices.
    plan: Option<String>,
    /// New PPPoE credentials are pushed to the subscriber's devices.
    pppoe_username: Option<String>,
    pppoe_password: Option<String>,
}

/// The subscriber as changed, with the pushes it queued.
#[derive(Debug, Serialize, ToSchema)]
pub struct ChangedSubscriber {
    #[serde(flatten)]
    pub subscriber: SubscriberView,
    /// The tasks pushing new PPPoE credentials, one per device.
    pub tasks: Vec<TaskView>,
}

#[utoipa::path(patch, path = "/subscribers/{id}", tag = "subscribers", params(SubscriberId),
    request_body = ChangeSubscriber,
    responses((status = 200, description = "The subscriber as changed", body = ChangedSubscriber)))]
async fn change(
    State(app): State<Arc<App>>,
    caller: Caller,
    Path(id): Path<String>,
    Json(request): Json<ChangeSubscriber>,
) -> ApiResult<(Extension<AuditOrg>, Json<ChangedSubscriber>)> {
    caller.require(Permission::ManageSubscribers)?;
    let before = visible(&app, &caller, &id).await?;
    if let Some(plan) = &request.plan {
        check_plan(plan)?;
    }
    if let Some(name) = &request.name {
        check_name(name)?;
    }
    check_pppoe(
        request.pppoe_username.as_deref().unwrap_or(&before.pppoe_username),
        request.pppoe_password.as_deref().unwrap_or_default(),
    )?;
    let change = Change {
        name: request.name.as_deref(),
        plan: request.plan.as_deref(),
        pppoe_username: request.pppoe_username.as_deref(),
        pppoe_password: request.pppoe_password.as_deref().map(|p| app.secrets.seal(p.as_bytes())),
    };
    let (after, pushed) = subscribers::update(&app.api_store, &before, change).await?;
    let devices = subscribers::devices_of(app.api_store.db(), after.id).await?;
    let device_id = |pk| devices.iter().find(|d| d.id == pk).map(|d| d.device_id.clone()).unwrap_or_default();
    let tasks = pushed.iter().map(|t| TaskView::new(t, &device_id(t.device_pk))).collect();
    // The devices are woken to take their new credentials now.
    for device in devices.iter().filter(|d| pushed.iter().any(|t| t.device_pk == d.id)) {
        let app = app.clone();
        let device = device.clone();
        tokio::spawn(async move {
            if let Err(error) = crate::cwmp::connection_request::send(&app, &device).await {
                tracing::warn!(device = %device.device_id, "waking the device for its new PPPoE credentials: {error:#}");
            }
        });
    }
    let subscriber = detailed(&app, &after).await?;
    Ok((Extension(AuditOrg(Some(after.org_id))), Json(ChangedSubscriber { subscriber, tasks })))
}

/// Deletes the subscriber; its devices are unlinked and untagged (what was pushed stays on
/// them), its expected serials left expected by the organization alone.
#[utoipa::path(delete, path = "/subscribers/{id}", tag = "subscribers", params(SubscriberId),
    responses((status = 204, description = "Deleted")))]
async fn remove(
    State(app): State<Arc<App>>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<(StatusCode, Extension<AuditOrg>)> {
    caller.require(Permission::ManageSubscribers)?;
    let subscriber = visible(&app, &caller, &id).await?;
    subscribers::delete(&app.api_store, &subscriber, &caller.actor()).await?;
    Ok((StatusCode::NO_CONTENT, Extension(AuditOrg(Some(subscriber.org_id)))))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PreassignRequest {
    /// The serial number of the subscriber's device, as the device reports it.
    serial: String,
}

/// What pre-assigning a serial did.
#[derive(Debug, Serialize, ToSchema)]
pub struct PreassignedView {
    /// `linked`: the organization has the device (or claimed it from the pending devices),
    /// linked now; `expected`: it links at its first Inform, which also brings it into the
    /// organization.
    pub status: String,
    /// The linked device's id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device_id: Option<String>,
    /// The PPPoE push queued for a linked device.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub task: Option<TaskView>,
}

/// Links the subscriber's device by serial, before or after it first connects: zero-touch
/// provisioning (its organization, tags and PPPoE credentials at its first Inform). A device of
/// that serial waiting among the pending devices is claimed into the subscriber's organization
/// and linked now (for callers who may claim devices).
#[utoipa::path(post, path = "/subscribers/{id}/devices", tag = "subscribers", params(SubscriberId),
    request_body = PreassignRequest,
    responses(
        (status = 200, description = "The device was known and is linked now", body = PreassignedView),
        (status = 201, description = "The serial is expected", body = PreassignedView),
    ))]
async fn preassign(
    State(app): State<Arc<App>>,
    caller: Caller,
    Path(id): Path<String>,
    Json(request): Json<PreassignRequest>,
) -> ApiResult<(StatusCode, Extension<AuditOrg>, Json<PreassignedView>)> {
    caller.require(Permission::ManageSubscribers)?;
    let subscriber = visible(&app, &caller, &id).await?;
    let serial = request.serial.trim();
    let valid = !serial.is_empty()
        && serial.chars().count() <= 64
        && serial.chars().all(|c| c.is_ascii_graphic() && c != ',' && c != ';');
    if !valid {
        return Err(invalid(format!("serial: {serial:?} is not a serial number")).on_field("serial"));
    }
    let audit = Extension(AuditOrg(Some(subscriber.org_id)));
    let may_claim = caller.require(Permission::ClaimDevices).is_ok();
    Ok(match subscribers::preassign(&app.api_store, &subscriber, serial, may_claim, &caller.actor()).await? {
        Preassigned::Linked { device, task } => {
            let view = PreassignedView {
                status: "linked".into(),
                device_id: Some(device.device_id.clone()),
                task: Some(TaskView::new(&task, &device.device_id)),
            };
            let app = app.clone();
            tokio::spawn(async move {
                if let Err(error) = crate::cwmp::connection_request::send(&app, &device).await {
                    tracing::warn!(device = %device.device_id, "waking the subscriber's device: {error:#}");
                }
            });
            (StatusCode::OK, audit, Json(view))
        }
        Preassigned::Ambiguous { pending } => {
            return Err(ApiError::conflict(
                ErrorCode::InvalidSubscriber,
                format!(
                    "serial: {pending} pending devices have the serial {serial:?}; move the subscriber's into \
                     the organization by its id (PATCH /api/v1/devices/{{id}} {{\"org\": …}}), then assign it"
                ),
            ));
        }
        Preassigned::Expected => (
            StatusCode::CREATED,
            audit,
            Json(PreassignedView { status: "expected".into(), device_id: None, task: None }),
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames_and_plans_stay_device_tags() {
        assert!(check_username("alice.smith-2").is_ok());
        assert!(check_plan("fiber-300").is_ok());
        assert!(check_username(&"u".repeat(60)).is_ok(), "sub: and 60 bytes make 64");
        for bad in ["", "two words", "alice@isp", &"u".repeat(61)] {
            let refused = check_username(bad).err().map(|e| e.detail).unwrap_or_default();
            assert!(refused.starts_with("username:"), "{bad:?}: {refused}");
        }
        assert!(check_plan(&"p".repeat(59)).is_ok());
        assert!(check_plan(&"p".repeat(60)).is_err(), "plan: and 60 bytes make 65");
    }
}
