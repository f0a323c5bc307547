//! Device actions: what a support desk does to one device, each a task (GenieACS task body or
//! one of Roost's intent tasks, which go through the device's adapter) queued with the same
//! checks, roles and `Idempotency-Key` handling as `POST /devices/{id}/tasks`; the device is
//! woken at once, and `?wait=SECONDS` waits for the outcome.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Extension;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::audit::AuditOrg;
use super::authenticate::Caller;
use super::devices::{DeviceId, visible_device};
use super::error::{ApiError, ApiResult, ErrorCode};
use super::extract::{Json, Path, Query};
use super::tasks::{Submitted, TaskView, submit, wake_and_wait};
use crate::app::App;
use crate::permissions::Permission;
use crate::store::{parameters, subscribers};
use roost_cwmp::ValueType;

pub fn router() -> OpenApiRouter<Arc<App>> {
    OpenApiRouter::new()
        .routes(routes!(reboot))
        .routes(routes!(factory_reset))
        .routes(routes!(wifi))
        .routes(routes!(set_parameters))
        .routes(routes!(refresh))
        .routes(routes!(assign_subscriber))
        .routes(routes!(unassign_subscriber))
}

/// The longest `?wait` an action or a diagnostic accepts.
const MAX_WAIT_SECONDS: u64 = 300;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct WaitQuery {
    /// Seconds to wait for the device to carry the action out, or for a diagnostic's results
    /// (0 to 300; default 0: answer once the device is woken).
    #[serde(default)]
    wait: u64,
}

impl WaitQuery {
    pub fn duration(&self) -> ApiResult<Duration> {
        if self.wait > MAX_WAIT_SECONDS {
            return Err(ApiError::bad_request(
                ErrorCode::InvalidQuery,
                format!("wait must be 0 to {MAX_WAIT_SECONDS} seconds"),
            ));
        }
        Ok(Duration::from_secs(self.wait))
    }
}

/// What an action queued, each task as it is when the action answers (with how waking the
/// device went).
#[derive(Debug, Serialize, ToSchema)]
pub struct ActionView {
    pub tasks: Vec<TaskView>,
}

/// 200 when every task is over, 202 while one is still pending.
fn answered(tasks: Vec<TaskView>, org: Option<i64>) -> Response {
    let status = if tasks.iter().all(|t| t.status != "pending") { StatusCode::OK } else { StatusCode::ACCEPTED };
    let mut response = (status, Json(ActionView { tasks })).into_response();
    response.extensions_mut().insert(AuditOrg(org));
    response
}

/// Queues the task through `submit` (the task route's checks and idempotency), wakes the
/// device and waits as asked.
async fn act(
    app: &Arc<App>,
    slot: &crate::api::ApiSlot,
    caller: &Caller,
    id: &str,
    body: Value,
    wait: &WaitQuery,
    headers: &HeaderMap,
) -> ApiResult<Response> {
    let wait = wait.duration()?;
    let submitted = submit(app, slot, caller, id, &body, Some(wait), Some(headers)).await?;
    let device_id = &submitted.device_id;
    let (task, view) = match submitted.outcome {
        Submitted::Replayed(task) | Submitted::Queued(task) => {
            let view = TaskView::new(&task, device_id);
            (task, view)
        }
        Submitted::Woken { task, connection_request } => {
            let view = TaskView { connection_request: Some(connection_request), ..TaskView::new(&task, device_id) };
            (task, view)
        }
    };
    Ok(answered(vec![view], task.org_id))
}

#[utoipa::path(post, path = "/devices/{id}/reboot", tag = "device actions", params(DeviceId, WaitQuery),
    responses(
        (status = 202, description = "Queued and the device woken", body = ActionView),
        (status = 200, description = "Carried out within the wait", body = ActionView),
    ))]
async fn reboot(
    State(app): State<Arc<App>>,
    Extension(slot): Extension<crate::api::ApiSlot>,
    caller: Caller,
    Path(id): Path<String>,
    Query(wait): Query<WaitQuery>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    act(&app, &slot, &caller, &id, json!({"name": "reboot"}), &wait, &headers).await
}

/// Resets the device to its factory defaults: it comes back blank with `0 BOOTSTRAP`, and
/// Roost configures it again (presets, the subscriber's PPPoE credentials).
#[utoipa::path(post, path = "/devices/{id}/factory-reset", tag = "device actions", params(DeviceId, WaitQuery),
    responses(
        (status = 202, description = "Queued and the device woken", body = ActionView),
        (status = 200, description = "Carried out within the wait", body = ActionView),
    ))]
async fn factory_reset(
    State(app): State<Arc<App>>,
    Extension(slot): Extension<crate::api::ApiSlot>,
    caller: Caller,
    Path(id): Path<String>,
    Query(wait): Query<WaitQuery>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    act(&app, &slot, &caller, &id, json!({"name": "factoryReset"}), &wait, &headers).await
}

/// A Wi-Fi change. Fields left out stay as they are.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WifiRequest {
    /// `2.4`, `5`, `6`, or `all` (the default): the primary networks of that band.
    #[serde(skip_serializing_if = "Option::is_none")]
    band: Option<String>,
    /// One network instead, by the `key` the adapter gives it (its object path).
    #[serde(skip_serializing_if = "Option::is_none")]
    network: Option<String>,
    /// 1 to 32 bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    ssid: Option<String>,
    /// WPA2: 8 to 63 printable ASCII characters, or 64 hex digits.
    #[serde(skip_serializing_if = "Option::is_none")]
    passphrase: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    enabled: Option<bool>,
}

/// Changes the device's Wi-Fi through its adapter (TR-098, TR-181 and each vendor's own
/// parameters alike): a `configureWifi` task, checked before it is queued.
#[utoipa::path(post, path = "/devices/{id}/wifi", tag = "device actions", params(DeviceId, WaitQuery),
    request_body = WifiRequest,
    responses(
        (status = 202, description = "Queued and the device woken", body = ActionView),
        (status = 200, description = "Carried out within the wait", body = ActionView),
    ))]
async fn wifi(
    State(app): State<Arc<App>>,
    Extension(slot): Extension<crate::api::ApiSlot>,
    caller: Caller,
    Path(id): Path<String>,
    Query(wait): Query<WaitQuery>,
    headers: HeaderMap,
    Json(request): Json<WifiRequest>,
) -> ApiResult<Response> {
    let mut body = serde_json::to_value(&request).map_err(anyhow::Error::from)?;
    if let Some(object) = body.as_object_mut() {
        object.insert("name".into(), json!("configureWifi"));
    }
    act(&app, &slot, &caller, &id, body, &wait, &headers).await
}

/// A value to write, for the document: checked against the parameter's stored type.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(untagged)]
#[allow(dead_code)] // documents the body; the handler reads JSON values
enum WriteValue {
    Text(String),
    Number(f64),
    Flag(bool),
}

/// Parameters to write, by path; values as strings, numbers or booleans.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ParametersRequest {
    #[schema(value_type = BTreeMap<String, WriteValue>)]
    values: BTreeMap<String, Value>,
}

/// Writes parameters. Each must be one the device reported, writable, and the value of its
/// stored type; the task is queued only if all are.
#[utoipa::path(post, path = "/devices/{id}/parameters", tag = "device actions", params(DeviceId, WaitQuery),
    request_body = ParametersRequest,
    responses(
        (status = 202, description = "Queued and the device woken", body = ActionView),
        (status = 200, description = "Carried out within the wait", body = ActionView),
    ))]
async fn set_parameters(
    State(app): State<Arc<App>>,
    Extension(slot): Extension<crate::api::ApiSlot>,
    caller: Caller,
    Path(id): Path<String>,
    Query(wait): Query<WaitQuery>,
    headers: HeaderMap,
    Json(request): Json<ParametersRequest>,
) -> ApiResult<Response> {
    caller.require(Permission::ConfigureDevices)?;
    let device = visible_device(&app, &caller, &id).await?;
    if request.values.is_empty() {
        return Err(invalid_parameter("values must name at least one parameter"));
    }
    if request.values.len() > crate::tasks::MAX_NAMES_PER_TASK {
        return Err(invalid_parameter(format!("at most {} parameters at once", crate::tasks::MAX_NAMES_PER_TASK)));
    }
    let paths: Vec<&str> = request.values.keys().map(String::as_str).collect();
    let stored = parameters::by_paths(&app.api_store, device.id, &paths).await?;
    let mut triples = Vec::with_capacity(request.values.len());
    for (path, value) in &request.values {
        let parameter = stored
            .get(path)
            .ok_or_else(|| invalid_parameter(format!("values.{path}: the device has reported no such parameter")))?;
        let value = check_value(path, value, parameter)?;
        triples.push(json!([path, value, parameter.value_type]));
    }
    let body = json!({"name": "setParameterValues", "parameterValues": triples});
    act(&app, &slot, &caller, &id, body, &wait, &headers).await
}

fn invalid_parameter(detail: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, ErrorCode::InvalidParameter, detail)
}

/// A value as the parameter's stored row allows it: a writable leaf, of its type.
fn check_value(path: &str, value: &Value, parameter: &parameters::Parameter) -> ApiResult<String> {
    if parameter.is_object {
        return Err(invalid_parameter(format!("values.{path}: an object, not a parameter")));
    }
    if !parameter.writable {
        return Err(invalid_parameter(format!("values.{path}: the device reports it read-only")));
    }
    let text = match value {
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        _ => return Err(invalid_parameter(format!("values.{path}: a string, number or boolean"))),
    };
    let value_type = ValueType::parse(&parameter.value_type);
    if !value_type.accepts(&text) {
        return Err(invalid_parameter(format!("values.{path}: {text:?} is not a valid {}", value_type.as_str())));
    }
    Ok(text)
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefreshRequest {
    /// The subtree to read again (an object path); the whole tree when absent.
    path: Option<String>,
}

/// Reads a subtree of the device again (names and values).
#[utoipa::path(post, path = "/devices/{id}/refresh", tag = "device actions", params(DeviceId, WaitQuery),
    request_body(content = Option<RefreshRequest>, description = "The subtree; none: the whole tree"),
    responses(
        (status = 202, description = "Queued and the device woken", body = ActionView),
        (status = 200, description = "Carried out within the wait", body = ActionView),
    ))]
async fn refresh(
    State(app): State<Arc<App>>,
    Extension(slot): Extension<crate::api::ApiSlot>,
    caller: Caller,
    Path(id): Path<String>,
    Query(wait): Query<WaitQuery>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> ApiResult<Response> {
    caller.require(Permission::OperateDevices)?;
    let request: RefreshRequest = if body.iter().all(u8::is_ascii_whitespace) {
        RefreshRequest::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, ErrorCode::InvalidBody, e.to_string()))?
    };
    let path = match request.path {
        Some(path) => path,
        None => {
            let device = visible_device(&app, &caller, &id).await?;
            let model = device.model().ok_or_else(|| {
                ApiError::new(
                    StatusCode::CONFLICT,
                    ErrorCode::InvalidTask,
                    "the device has not shown its data model yet; name a path",
                )
            })?;
            model.root().to_owned()
        }
    };
    act(&app, &slot, &caller, &id, json!({"name": "refreshObject", "objectName": path}), &wait, &headers).await
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AssignRequest {
    /// The subscriber: its username in the device's organization, or its id.
    subscriber: String,
}

/// Links the device to a subscriber of its organization: tags it `sub:<username>` and
/// `plan:<plan>`, pushes the subscriber's PPPoE credentials now (the device is woken) and again
/// whenever it comes back blank (`0 BOOTSTRAP`). Records `subscriber.assigned`.
#[utoipa::path(post, path = "/devices/{id}/assign-subscriber", tag = "device actions", params(DeviceId, WaitQuery),
    request_body = AssignRequest,
    responses(
        (status = 202, description = "Linked; the push is queued and the device woken", body = ActionView),
        (status = 200, description = "Linked and pushed within the wait", body = ActionView),
    ))]
async fn assign_subscriber(
    State(app): State<Arc<App>>,
    Extension(slot): Extension<crate::api::ApiSlot>,
    caller: Caller,
    Path(id): Path<String>,
    Query(wait): Query<WaitQuery>,
    Json(request): Json<AssignRequest>,
) -> ApiResult<Response> {
    caller.require(Permission::ManageSubscribers)?;
    let wait = wait.duration()?;
    let device = visible_device(&app, &caller, &id).await?;
    let Some(org_id) = device.org_id else {
        return Err(ApiError::conflict(ErrorCode::InvalidSubscriber, "claim the device into an organization first"));
    };
    let subscriber = super::subscribers::in_org(&app, org_id, &request.subscriber).await?.ok_or_else(|| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            ErrorCode::InvalidSubscriber,
            format!("subscriber: no subscriber {:?} in the device's organization", request.subscriber),
        )
    })?;
    let finished = app.task_events.subscribe();
    let task = subscribers::assign(&app.api_store, &device, &subscriber, &caller.actor()).await?;
    let (task, connection_request) = wake_and_wait(&app, &slot, &device, finished, task.id, wait).await?;
    let view = TaskView { connection_request: Some(connection_request), ..TaskView::new(&task, &device.device_id) };
    Ok(answered(vec![view], device.org_id))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UnassignedView {
    /// Whether the device had a subscriber.
    pub unassigned: bool,
}

/// Removes the device's subscriber link and its tags. What was pushed stays on the device.
#[utoipa::path(post, path = "/devices/{id}/unassign-subscriber", tag = "device actions", params(DeviceId),
    responses((status = 200, description = "The link is gone", body = UnassignedView)))]
async fn unassign_subscriber(
    State(app): State<Arc<App>>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<(Extension<AuditOrg>, Json<UnassignedView>)> {
    caller.require(Permission::ManageSubscribers)?;
    let device = visible_device(&app, &caller, &id).await?;
    let unassigned = subscribers::unassign(&app.api_store, &device, &caller.actor()).await?;
    Ok((Extension(AuditOrg(device.org_id)), Json(UnassignedView { unassigned })))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parameter(value_type: &str, writable: bool) -> parameters::Parameter {
        parameters::Parameter {
            path: "Device.X".into(),
            value: Some("1".into()),
            value_type: value_type.into(),
            writable,
            is_object: false,
            refreshed_at: 0,
            remembered: false,
        }
    }

    fn refused(value: Value, parameter: &parameters::Parameter) -> String {
        check_value("Device.X", &value, parameter).err().map(|e| e.detail).unwrap_or_default()
    }

    #[test]
    fn values_must_fit_the_stored_type_and_writable_flag() {
        assert_eq!(check_value("Device.X", &json!(300), &parameter("xsd:unsignedInt", true)).ok(), Some("300".into()));
        assert_eq!(check_value("Device.X", &json!(true), &parameter("xsd:boolean", true)).ok(), Some("true".into()));
        assert!(refused(json!("-5"), &parameter("xsd:unsignedInt", true)).contains("not a valid xsd:unsignedInt"));
        assert!(refused(json!("yes"), &parameter("xsd:boolean", true)).contains("not a valid xsd:boolean"));
        assert!(refused(json!("x"), &parameter("xsd:string", false)).contains("read-only"));
        assert!(refused(json!(["x"]), &parameter("xsd:string", true)).contains("a string, number or boolean"));
        let refusal = refused(json!("x"), &parameter("xsd:string", false));
        assert!(refusal.starts_with("values.Device.X:"), "names the field: {refusal}");
    }
}
