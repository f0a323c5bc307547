//! Bulk actions over REST: `POST /bulk {query, action}` fixes the devices the query matches now
//! and the runner (`bulk::runner`) fans the action out at the organization's pace. Progress and
//! each device's result at `GET /bulk/{id}`; `POST /bulk/{id}/cancel`.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Extension;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::audit::AuditOrg;
use super::authenticate::Caller;
use super::error::{ApiError, ApiResult, ErrorCode};
use super::extract::{Json, Path, Query};
use super::{JobDevicesQuery, ListResponse, Page, optional_timestamp, timestamp};
use crate::app::App;
use crate::bulk::{BulkAction, DeviceState};
use crate::permissions::Permission;
use crate::store::bulk::{self, BulkDevice, BulkRow, NewBulk};
use crate::store::devices;
use crate::store::orgs;

pub fn router() -> OpenApiRouter<Arc<App>> {
    OpenApiRouter::new().routes(routes!(list, create)).routes(routes!(show)).routes(routes!(cancel))
}

/// The most devices one bulk action takes.
pub const MAX_DEVICES: u64 = 100_000;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateBulk {
    /// The devices: a query as the NBI takes it (docs/NBI.md), as an object or as its JSON
    /// text, without `$regex`; `{}` for every device of the organization.
    #[schema(value_type = Object)]
    pub query: Value,
    /// `{"name": "rotateWifiKey", "band"?}`, `{"name": "setParameterValues", "parameterValues":
    /// [...]}`, `{"name": "reboot"}`, `{"name": "refresh", "objectName"?}`,
    /// `{"name": "rerunPresets"}`.
    #[schema(value_type = Object)]
    pub action: Value,
    /// The organization (slug) whose devices, and those below it; the caller's own when absent.
    pub org: Option<String>,
}

/// One device of a bulk action.
#[derive(Debug, Serialize, ToSchema)]
pub struct BulkDeviceView {
    pub device_id: String,
    /// `waiting`, `started`, `done`, `failed`, `cancelled`.
    pub state: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub task_id: Option<String>,
    /// The Wi-Fi key a `rotateWifiKey` gave it, once it took it (shown to callers who may
    /// change Wi-Fi).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wifi_key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
    /// Why it failed or was cancelled.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// A bulk action as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct BulkView {
    pub id: String,
    pub org: String,
    /// `running`, `completed`, `cancelled`.
    pub state: String,
    /// The action (secrets blanked).
    #[schema(value_type = Object)]
    pub action: Value,
    #[schema(value_type = Object)]
    pub query: Value,
    pub devices: u64,
    /// Devices by state.
    pub totals: HashMap<String, u64>,
    pub created_by: String,
    pub created_at: String,
    pub updated_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BulkDetail {
    #[serde(flatten)]
    pub bulk: BulkView,
    /// A page of its devices in order (`device_state`, `cursor`, `limit`).
    pub device_page: ListResponse<BulkDeviceView>,
}

async fn view(app: &App, row: &BulkRow) -> ApiResult<BulkView> {
    let counts = bulk::counts(&app.api_store, row.id).await?;
    Ok(BulkView {
        id: row.id.to_string(),
        org: super::org_slug(app, row.org_id).await?,
        state: row.state.clone(),
        action: serde_json::from_str(&row.action).unwrap_or(Value::Null),
        query: serde_json::from_str(&row.query).unwrap_or(Value::Null),
        devices: counts.iter().map(|(_, n)| n).sum(),
        totals: counts.iter().map(|(state, n)| (state.as_str().to_owned(), *n)).collect(),
        created_by: row.created_by.clone(),
        created_at: timestamp(row.created_at),
        updated_at: timestamp(row.updated_at),
        finished_at: optional_timestamp(row.finished_at),
    })
}

fn invalid(detail: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, ErrorCode::InvalidBulk, detail)
}

/// The query as an object: given as one, or as its JSON text.
fn query_object(query: &Value) -> Result<Value, String> {
    match query {
        Value::Object(_) => Ok(query.clone()),
        Value::String(text) => match serde_json::from_str::<Value>(text) {
            Ok(parsed @ Value::Object(_)) => Ok(parsed),
            Ok(_) => Err("query: a JSON object".into()),
            Err(e) => Err(format!("query does not parse: {e}")),
        },
        _ => Err("query: a JSON object (or its text)".into()),
    }
}

/// Starts a bulk action over the devices the query matches now. 422 for a query that does not
/// parse, one that matches nothing, an unknown action.
#[utoipa::path(post, path = "/bulk", tag = "bulk", request_body = CreateBulk,
    responses((status = 201, description = "Started", body = BulkView)))]
async fn create(
    State(app): State<Arc<App>>,
    caller: Caller,
    Json(request): Json<CreateBulk>,
) -> ApiResult<(StatusCode, Extension<AuditOrg>, Json<BulkView>)> {
    caller.require(Permission::ManageBulk)?;
    let action = BulkAction::parse(&request.action).map_err(invalid)?;
    caller.require(action.permission())?;
    let query = query_object(&request.query).map_err(invalid)?;
    let filter = super::nbi::query::parse(&query).map_err(|e| invalid(format!("query: {e}")))?;
    if !crate::store::devices::filter::regexes(&filter).is_empty() {
        return Err(invalid("query: $regex is not taken in a bulk action"));
    }
    let org = super::orgs::named_or_own(&app, &caller, request.org.as_deref()).await?;
    let scope = caller.scope.within(orgs::subtree(&app.api_store, org.id).await?);
    let found = devices::find(
        &app.api_store,
        &scope,
        &devices::DeviceQuery::new(Some(&filter), &[], app.api_store.backend(), 0, MAX_DEVICES + 1)
            .map_err(|e| invalid(format!("query: {e}")))?,
    )
    .await?;
    if found.is_empty() {
        return Err(invalid("query: no device of the organization matches it"));
    }
    if found.len() as u64 > MAX_DEVICES {
        return Err(invalid(format!("query: it matches more than {MAX_DEVICES} devices; split the action")));
    }
    let pks: Vec<_> = found.iter().map(|(device, _)| device.id).collect();
    let shown = crate::tasks::redact(&request.action).unwrap_or_else(|| request.action.clone());
    let row = bulk::create(
        &app.api_store,
        NewBulk {
            org_id: org.id,
            name: action.name(),
            action: &shown.to_string(),
            sealed_action: app.secrets.seal(request.action.to_string().as_bytes()),
            query: &query.to_string(),
            created_by: &caller.actor(),
        },
        &pks,
    )
    .await?;
    Ok((StatusCode::CREATED, Extension(AuditOrg(Some(org.id))), Json(view(&app, &row).await?)))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct ListQuery {
    #[serde(flatten)]
    #[param(ignore)] // documented by `Page` itself
    page: Page,
}

/// Bulk actions of the caller's organizations, newest first.
#[utoipa::path(get, path = "/bulk", tag = "bulk", params(ListQuery, Page),
    responses((status = 200, description = "A page of bulk actions", body = ListResponse<BulkView>)))]
async fn list(
    State(app): State<Arc<App>>,
    caller: Caller,
    Query(query): Query<ListQuery>,
) -> ApiResult<Json<ListResponse<BulkView>>> {
    caller.require(Permission::ReadFleet)?;
    let limit = query.page.limit()?;
    let rows = bulk::list(&app.api_store, &caller.scope, query.page.id_cursor()?, limit).await?;
    let mut items = Vec::with_capacity(rows.len());
    for row in &rows {
        items.push(view(&app, row).await?);
    }
    Ok(Json(ListResponse::new(items, limit, rows.last().map(|r| r.id.to_string()))))
}

/// A bulk action's id in a path.
#[derive(Debug, utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)] // documents the path; handlers read it with `Path<String>`
struct BulkId {
    id: String,
}

async fn visible(app: &App, caller: &Caller, id: &str) -> ApiResult<BulkRow> {
    let id: i64 = id.parse().map_err(|_| ApiError::not_found("bulk action"))?;
    bulk::visible(&app.api_store, &caller.scope, id).await?.ok_or_else(|| ApiError::not_found("bulk action"))
}

/// A bulk action's progress and a page of its devices with their results.
#[utoipa::path(get, path = "/bulk/{id}", tag = "bulk", params(BulkId, JobDevicesQuery, Page),
    responses((status = 200, description = "The bulk action", body = BulkDetail)))]
async fn show(
    State(app): State<Arc<App>>,
    caller: Caller,
    Path(id): Path<String>,
    Query(query): Query<JobDevicesQuery>,
) -> ApiResult<Json<BulkDetail>> {
    caller.require(Permission::ReadFleet)?;
    let row = visible(&app, &caller, &id).await?;
    let states = query.states(DeviceState::parse)?;
    let limit = query.page.limit()?;
    let page = bulk::devices(&app.api_store, row.id, &states, query.page.id_cursor()?, limit).await?;
    let reveal = caller.role.allows(Permission::OperateDevices);
    let items = page.iter().map(|device| device_view(&app, device, reveal)).collect();
    let last = page.last().map(|d| d.position.to_string());
    Ok(Json(BulkDetail { bulk: view(&app, &row).await?, device_page: ListResponse::new(items, limit, last) }))
}

fn device_view(app: &App, device: &BulkDevice, reveal: bool) -> BulkDeviceView {
    BulkDeviceView {
        device_id: device.device_id.clone(),
        state: device.state.clone(),
        task_id: device.task_id.map(|id| id.to_string()),
        // Only a key the device took: a failed or cancelled device keeps its old one.
        wifi_key: device
            .secret
            .as_deref()
            .filter(|_| reveal && device.state() == DeviceState::Done)
            .and_then(|sealed| app.secrets.open_string(sealed).ok()),
        started_at: optional_timestamp(device.started_at),
        finished_at: optional_timestamp(device.finished_at),
        reason: device.reason.clone(),
    }
}

/// Stops a bulk action: devices not started are cancelled, and so are started ones whose task
/// the device has not taken yet (the task is deleted); tasks under way finish.
#[utoipa::path(post, path = "/bulk/{id}/cancel", tag = "bulk", params(BulkId),
    responses((status = 200, description = "The bulk action as it is now", body = BulkView)))]
async fn cancel(
    State(app): State<Arc<App>>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<(Extension<AuditOrg>, Json<BulkView>)> {
    caller.require(Permission::ManageBulk)?;
    let row = visible(&app, &caller, &id).await?;
    if !bulk::cancel(&app.api_store, &row, &caller.actor()).await? {
        return Err(ApiError::conflict(
            ErrorCode::BulkState,
            format!("the bulk action is {}; only a running one is cancelled", row.state),
        ));
    }
    let row = bulk::by_id(&app.api_store, row.id).await?.ok_or_else(|| ApiError::not_found("bulk action"))?;
    Ok((Extension(AuditOrg(Some(row.org_id))), Json(view(&app, &row).await?)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_query_is_an_object_or_its_text() {
        assert_eq!(query_object(&serde_json::json!({"_tags": "x"})), Ok(serde_json::json!({"_tags": "x"})));
        assert_eq!(query_object(&Value::String("{\"_tags\":\"x\"}".into())), Ok(serde_json::json!({"_tags": "x"})));
        assert!(query_object(&Value::String("{nope".into())).unwrap_err().contains("does not parse"));
        assert!(query_object(&serde_json::json!([1])).is_err());
    }
}
