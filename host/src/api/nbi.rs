//! A GenieACS-compatible northbound interface under `/nbi/`, so that an integration written for
//! GenieACS's NBI works by changing its base URL and adding an API key. Scoped and tiered like
//! `/api/v1` (the same middleware authenticates it); `docs/NBI.md` lists what is supported.

pub mod files;
pub mod query;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Extension;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::authenticate::Caller;
use super::error::{ApiError, ApiResult, ErrorCode};
use super::extract::{Json, Path, Query};
use super::tasks::{Submitted, submit};
use super::{devices as device_routes, presets, timestamp};
use crate::app::App;
use crate::permissions::Permission;
use crate::provisioning::presets::PresetDefinition;
use crate::store::DevicePk;
use crate::store::devices::filter::{self, Field};
use crate::store::devices::{self, Device};
use crate::store::tasks::TaskStatus;
use crate::store::{faults, parameters, tasks};

/// GenieACS clients write collections with and without the trailing slash (`/devices/?query=`);
/// both are served, and documented, as the same operation.
pub fn router() -> OpenApiRouter<Arc<App>> {
    OpenApiRouter::new()
        .routes(routes!(find_devices))
        .routes(routes!(find_devices_slash))
        .routes(routes!(create_task))
        .routes(routes!(add_tag, remove_tag))
        .routes(routes!(find_tasks))
        .routes(routes!(find_tasks_slash))
        .routes(routes!(delete_task))
        .routes(routes!(find_faults))
        .routes(routes!(find_faults_slash))
        .routes(routes!(delete_fault))
        .routes(routes!(list_presets))
        .routes(routes!(list_presets_slash))
        .routes(routes!(show_preset, put_preset, remove_preset))
        .merge(files::router())
}

/// A device as GenieACS's NBI shows it: `_id`, `_deviceId`, `_registered`, `_lastInform`,
/// `_tags`, and the parameter tree as nested objects whose leaves hold `_value`, `_type`,
/// `_writable` and `_timestamp`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(transparent)]
#[schema(value_type = Object)]
pub struct NbiDevice(Map<String, Value>);

/// A task as GenieACS's NBI shows it: its request's members beside these.
#[derive(Debug, Serialize, ToSchema)]
pub struct NbiTask {
    #[serde(rename = "_id")]
    pub id: String,
    pub device: String,
    pub timestamp: String,
    /// `pending`, `done` or `fault`.
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fault: Option<NbiTaskFault>,
    /// `name` and the task's own members.
    #[serde(flatten)]
    pub request: Map<String, Value>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct NbiTaskFault {
    /// `area.reason`: `cwmp.9003` (the CPE's CWMP fault), `cwmp.no_response`,
    /// `task.expired`, `provisioning.not_converging`, `plugin.timeout`, … (`roost::fault_code`).
    pub code: String,
    pub message: Option<String>,
}

/// A fault as GenieACS's NBI shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct NbiFault {
    #[serde(rename = "_id")]
    pub id: String,
    pub device: String,
    pub channel: String,
    /// `area.reason`: `cwmp.9003` (the CPE's CWMP fault), `cwmp.no_response`,
    /// `task.expired`, `provisioning.not_converging`, `plugin.timeout`, … (`roost::fault_code`).
    pub code: String,
    pub message: String,
    #[schema(value_type = Option<Object>)]
    pub detail: Option<Value>,
    /// When it last happened.
    pub timestamp: String,
    /// Occurrences after the first, as GenieACS counts a fault's retries.
    pub retries: i64,
}

fn invalid_query(detail: impl Into<String>) -> ApiError {
    ApiError::bad_request(ErrorCode::InvalidQuery, detail)
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct FindQuery {
    /// MongoDB-style JSON, e.g. `{"_deviceId._SerialNumber": "ABC123"}`.
    query: Option<String>,
    /// Comma-separated paths.
    projection: Option<String>,
    /// JSON such as `{"_lastInform": -1}`.
    sort: Option<String>,
    skip: Option<u64>,
    /// 1 to 1000; 100 when absent.
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u64>,
}

/// Without `limit`, a page of this many: GenieACS answers every match, which for a fleet's
/// whole trees is more than any client wants at once.
const DEFAULT_LIMIT: u64 = 100;
const MAX_LIMIT: u64 = 1000;
/// Candidates a `$regex` query may examine before it is refused as too broad.
const MAX_REGEX_SCAN: u64 = 100_000;
const REGEX_BATCH: u64 = 500;

impl FindQuery {
    fn parsed(&self) -> ApiResult<Option<Value>> {
        self.query
            .as_deref()
            .filter(|q| !q.trim().is_empty())
            .map(|q| serde_json::from_str(q).map_err(|e| invalid_query(format!("query is not JSON: {e}"))))
            .transpose()
    }

    fn limit(&self) -> ApiResult<u64> {
        match self.limit {
            None => Ok(DEFAULT_LIMIT),
            Some(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
            Some(n) => Err(invalid_query(format!("limit is 1 to {MAX_LIMIT}, got {n}"))),
        }
    }
}

/// A JSON object's members in the order written: `serde_json::Map` sorts its keys, and the
/// order of a sort's keys is its meaning.
struct Members(Vec<(String, Value)>);

impl<'de> Deserialize<'de> for Members {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = Members;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Members, A::Error> {
                let mut members = Vec::new();
                while let Some(member) = map.next_entry::<String, Value>()? {
                    members.push(member);
                }
                Ok(Members(members))
            }
        }
        deserializer.deserialize_map(Visit)
    }
}

/// The fields of a GenieACS `sort`, in the order written, each descending when `true`:
/// columns only.
fn sort_fields(sort: Option<&str>) -> ApiResult<Vec<(Field, bool)>> {
    let Some(sort) = sort.filter(|s| !s.trim().is_empty()) else { return Ok(Vec::new()) };
    let Members(fields) = serde_json::from_str(sort).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => invalid_query("sort is a JSON object such as {\"_lastInform\": -1}"),
        _ => invalid_query(format!("sort is not JSON: {e}")),
    })?;
    let mut parts = Vec::new();
    for (name, direction) in &fields {
        let field = Field::parse(name).map_err(invalid_query)?;
        if field.column().is_none() {
            return Err(invalid_query(format!("cannot sort by {name}")));
        }
        let descending = match direction.as_i64() {
            Some(1) => false,
            Some(-1) => true,
            _ => return Err(invalid_query("a sort direction is 1 or -1")),
        };
        parts.push((field, descending));
    }
    Ok(parts)
}

/// Devices matching a MongoDB-style query (see docs/NBI.md for the operators and fields).
#[utoipa::path(get, path = "/devices", tag = "nbi", params(FindQuery),
    responses((status = 200, description = "Matching devices", body = Vec<NbiDevice>)))]
async fn find_devices(
    State(app): State<Arc<App>>,
    caller: Caller,
    Query(params): Query<FindQuery>,
) -> ApiResult<Json<Vec<NbiDevice>>> {
    caller.require(Permission::ReadFleet)?;
    let filter = match params.parsed()? {
        Some(query) => Some(query::parse(&query).map_err(invalid_query)?),
        None => None,
    };
    let regexes = filter.as_ref().map(filter::regexes).unwrap_or_default();
    let limit = params.limit()?;
    let skip = params.skip.unwrap_or(0);
    let sort = sort_fields(params.sort.as_deref())?;
    let mut query = devices::DeviceQuery::new(filter.as_ref(), &sort, app.api_store.backend(), skip, limit)
        .map_err(invalid_query)?;
    let found = if regexes.is_empty() {
        devices::find(&app.api_store, &caller.scope, &query).await?
    } else {
        // The database selects a superset; the expressions pick from it, batch by batch.
        let fields: Vec<Field> = regexes.iter().map(|(field, _)| field.clone()).collect();
        query = query.with_values_of(&fields);
        query.limit = REGEX_BATCH;
        query.offset = 0;
        let mut matched = Vec::new();
        while (matched.len() as u64) < skip + limit {
            if query.offset >= MAX_REGEX_SCAN {
                return Err(invalid_query(format!(
                    "this $regex query examines more than {MAX_REGEX_SCAN} devices; narrow it with other conditions"
                )));
            }
            let batch = devices::find(&app.api_store, &caller.scope, &query).await?;
            let exhausted = (batch.len() as u64) < REGEX_BATCH;
            query.offset += REGEX_BATCH;
            matched.extend(batch.into_iter().filter(|(_, values)| {
                regexes
                    .iter()
                    .zip(values)
                    .all(|((_, regex), value)| value.as_deref().is_some_and(|v| regex.is_match(v)))
            }));
            if exhausted {
                break;
            }
        }
        matched.into_iter().skip(usize::try_from(skip).unwrap_or(usize::MAX)).take(limit as usize).collect()
    };
    let projection = Projection::parse(params.projection.as_deref());
    let mut documents = Vec::with_capacity(found.len());
    for (device, _) in &found {
        documents.push(document(&app, device, &projection).await?);
    }
    Ok(Json(documents))
}

/// Which parts of a device document a request wants (GenieACS's `projection`).
#[derive(Debug, Default)]
struct Projection {
    /// `None`: everything.
    paths: Option<Vec<String>>,
}

impl Projection {
    fn parse(projection: Option<&str>) -> Self {
        let paths = projection
            .filter(|p| !p.trim().is_empty())
            .map(|p| p.split(',').map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()).collect());
        Self { paths }
    }

    fn wants(&self, field: &str) -> bool {
        self.paths.as_ref().is_none_or(|paths| paths.iter().any(|p| p == field || p.starts_with(&format!("{field}."))))
    }

    /// The parameter prefixes to load: `""` for the whole tree.
    fn parameter_prefixes(&self) -> Vec<String> {
        match &self.paths {
            None => vec![String::new()],
            Some(paths) => {
                paths.iter().filter(|p| !p.starts_with('_')).map(|p| p.trim_end_matches("._value").to_owned()).collect()
            }
        }
    }
}

/// The most parameter rows one device document holds.
const MAX_DOCUMENT_PARAMETERS: u64 = 100_000;

/// A device as GenieACS's NBI shows it: `_id`, `_deviceId`, times, `_tags`, and the parameter
/// tree with `_value`, `_type`, `_timestamp` and `_writable` on leaves and `_object` on objects.
async fn document(app: &App, device: &Device, projection: &Projection) -> ApiResult<NbiDevice> {
    let mut root = Map::new();
    root.insert("_id".into(), json!(device.device_id));
    if projection.wants("_deviceId") {
        root.insert(
            "_deviceId".into(),
            json!({
                "_Manufacturer": device.manufacturer,
                "_OUI": device.oui,
                "_ProductClass": device.product_class,
                "_SerialNumber": device.serial_number,
            }),
        );
    }
    for (field, millis) in [
        ("_registered", Some(device.registered_at)),
        ("_lastInform", device.last_inform_at),
        ("_lastBoot", device.last_boot_at),
        ("_lastBootstrap", device.last_bootstrap_at),
    ] {
        if let Some(millis) = millis
            && projection.wants(field)
        {
            root.insert(field.into(), json!(timestamp(millis)));
        }
    }
    if projection.wants("_tags") {
        let tags = devices::tags(&app.api_store, device.id).await?;
        if !tags.is_empty() {
            root.insert("_tags".into(), json!(tags));
        }
    }
    let mut rows = BTreeMap::new();
    for prefix in projection.parameter_prefixes() {
        // A leaf named exactly, or a subtree.
        let subtree = if prefix.is_empty() || prefix.ends_with('.') { prefix.clone() } else { format!("{prefix}.") };
        for row in parameters::list(&app.api_store, device.id, &subtree, None, MAX_DOCUMENT_PARAMETERS).await? {
            rows.insert(row.path.clone(), row);
        }
        if !prefix.is_empty() && !prefix.ends_with('.') {
            for row in parameters::list(&app.api_store, device.id, &prefix, None, 1).await? {
                if row.path == prefix || row.path == subtree {
                    rows.insert(row.path.clone(), row);
                }
            }
        }
    }
    for row in rows.values() {
        let parts: Vec<&str> = row.path.trim_end_matches('.').split('.').collect();
        let timestamp = timestamp(row.refreshed_at);
        let mut node = json!({"_writable": row.writable, "_timestamp": timestamp});
        if let Value::Object(attributes) = &mut node {
            if row.is_object {
                attributes.insert("_object".into(), json!(true));
            } else if let Some(value) = &row.value {
                attributes.insert("_value".into(), typed(value, &row.value_type));
                attributes.insert("_type".into(), json!(row.value_type));
            }
        }
        place(&mut root, &parts, node);
    }
    Ok(NbiDevice(root))
}

/// Puts a node's attributes at its path, making the objects above it as needed.
fn place(node: &mut Map<String, Value>, parts: &[&str], attributes: Value) {
    match parts {
        [] => {}
        [last] => {
            let entry = node.entry((*last).to_owned()).or_insert_with(|| json!({}));
            if let (Value::Object(existing), Value::Object(attributes)) = (entry, attributes) {
                existing.extend(attributes);
            }
        }
        [first, rest @ ..] => {
            let entry = node.entry((*first).to_owned()).or_insert_with(|| json!({"_object": true}));
            if let Value::Object(child) = entry {
                place(child, rest, attributes);
            }
        }
    }
}

/// A stored value as GenieACS shows it: numbers and booleans as JSON ones.
fn typed(value: &str, value_type: &str) -> Value {
    match value_type {
        "xsd:boolean" => match value.trim() {
            "1" | "true" => json!(true),
            "0" | "false" => json!(false),
            _ => json!(value),
        },
        "xsd:int" | "xsd:unsignedInt" | "xsd:long" | "xsd:unsignedLong" => {
            value.trim().parse::<i64>().map_or_else(|_| json!(value), |n| json!(n))
        }
        _ => json!(value),
    }
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct TaskQuery {
    /// Present (any value, or none): wake the device.
    connection_request: Option<String>,
    /// Milliseconds to wait for the device to run the task, with `connection_request`.
    timeout: Option<u64>,
}

/// The longest `timeout` honoured.
const MAX_TASK_TIMEOUT: Duration = Duration::from_secs(120);

fn task_document(task: &tasks::TaskRow, device_id: &str) -> NbiTask {
    let request = match serde_json::from_str(&task.body) {
        Ok(Value::Object(object)) => object,
        _ => Map::new(),
    };
    NbiTask {
        id: task.id.to_string(),
        device: device_id.to_owned(),
        timestamp: timestamp(task.created_at),
        status: task.status.as_str().to_owned(),
        fault: task
            .fault_code
            .as_ref()
            .map(|code| NbiTaskFault { code: code.clone(), message: task.fault_message.clone() }),
        request,
    }
}

/// `POST /devices/{id}/tasks[?connection_request][&timeout=ms]`: 200 and the task when it ran
/// within the timeout, 202 when it is queued.
#[utoipa::path(post, path = "/devices/{id}/tasks", tag = "nbi", params(super::devices::DeviceId, TaskQuery),
    request_body = super::tasks::TaskRequest,
    responses(
        (status = 200, description = "The device ran the task within the timeout", body = NbiTask),
        (status = 202, description = "Queued", body = NbiTask),
    ))]
async fn create_task(
    State(app): State<Arc<App>>,
    Extension(slot): Extension<super::ApiSlot>,
    caller: Caller,
    Path(id): Path<String>,
    Query(query): Query<TaskQuery>,
    Json(body): Json<Value>,
) -> ApiResult<Response> {
    let wait = query.connection_request.is_some().then(|| {
        query.timeout.map_or(app.config.tasks.connection_request_wait, Duration::from_millis).min(MAX_TASK_TIMEOUT)
    });
    let submitted = submit(&app, &slot, &caller, &id, &body, wait, None).await?;
    let (task, done) = match submitted.outcome {
        Submitted::Queued(task) | Submitted::Replayed(task) => (task, false),
        Submitted::Woken { task, .. } => {
            let done = task.status == TaskStatus::Done;
            (task, done)
        }
    };
    let status = if done { StatusCode::OK } else { StatusCode::ACCEPTED };
    let org = Extension(super::audit::AuditOrg(task.org_id));
    Ok((status, org, Json(task_document(&task, &submitted.device_id))).into_response())
}

/// The device a GenieACS `query` of tasks or faults names (`{"device": "<id>"}`), if any.
async fn device_of_query(
    app: &App,
    caller: &Caller,
    query: Option<Value>,
) -> ApiResult<(Option<DevicePk>, Option<String>)> {
    let Some(query) = query else { return Ok((None, None)) };
    let Value::Object(fields) = query else { return Err(invalid_query("a query is a JSON object")) };
    let mut device = None;
    let mut name = None;
    for (key, value) in fields {
        let Value::String(value) = value else {
            return Err(invalid_query(format!("{key}: only equality with a string is supported here")));
        };
        match key.as_str() {
            "device" => {
                // An unknown or another tenant's device has no tasks or faults here.
                device =
                    Some(devices::visible(&app.api_store, &caller.scope, &value).await?.map_or(DevicePk(-1), |d| d.id));
            }
            "name" => name = Some(value),
            other => return Err(invalid_query(format!("querying by {other:?} is not supported here (device, name)"))),
        }
    }
    Ok((device, name))
}

/// Tasks, optionally of one device (`{"device": "<id>"}`) or name (`{"name": "reboot"}`).
#[utoipa::path(get, path = "/tasks", tag = "nbi", params(FindQuery),
    responses((status = 200, description = "Tasks", body = Vec<NbiTask>)))]
async fn find_tasks(
    State(app): State<Arc<App>>,
    caller: Caller,
    Query(params): Query<FindQuery>,
) -> ApiResult<Json<Vec<NbiTask>>> {
    caller.require(Permission::ReadFleet)?;
    let (device, name) = device_of_query(&app, &caller, params.parsed()?).await?;
    let limit = params.limit()?;
    let rows =
        tasks::list_scoped(&app.api_store, &caller.scope, device, name.as_deref(), params.skip.unwrap_or(0), limit)
            .await?;
    Ok(Json(rows.iter().map(|(task, device)| task_document(task, device)).collect()))
}

#[utoipa::path(delete, path = "/tasks/{id}", tag = "nbi", params(("id" = String, Path, description = "The task's id")),
    responses((status = 200, description = "Deleted")))]
async fn delete_task(
    State(app): State<Arc<App>>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<(Extension<super::audit::AuditOrg>, StatusCode)> {
    caller.require(Permission::ConfigureDevices)?;
    let id: i64 = id.parse().map_err(|_| ApiError::not_found("task"))?;
    let task = tasks::visible(&app.api_store, &caller.scope, id).await?.ok_or_else(|| ApiError::not_found("task"))?;
    tasks::delete(&app.api_store, &task).await?;
    Ok((Extension(super::audit::AuditOrg(task.org_id)), StatusCode::OK))
}

/// Faults, optionally of one device (`{"device": "<id>"}`).
#[utoipa::path(get, path = "/faults", tag = "nbi", params(FindQuery),
    responses((status = 200, description = "Faults", body = Vec<NbiFault>)))]
async fn find_faults(
    State(app): State<Arc<App>>,
    caller: Caller,
    Query(params): Query<FindQuery>,
) -> ApiResult<Json<Vec<NbiFault>>> {
    caller.require(Permission::ReadFleet)?;
    let (device, name) = device_of_query(&app, &caller, params.parsed()?).await?;
    if name.is_some() {
        return Err(invalid_query("faults are queried by device only"));
    }
    let limit = params.limit()?;
    let rows = faults::list_scoped(&app.api_store, &caller.scope, device, params.skip.unwrap_or(0), limit).await?;
    Ok(Json(
        rows.iter()
            .map(|(fault, device)| NbiFault {
                id: fault.id.to_string(),
                device: device.clone(),
                channel: fault.channel.clone(),
                code: fault.code.clone(),
                message: fault.message.clone(),
                detail: fault.detail.as_deref().and_then(|d| serde_json::from_str::<Value>(d).ok()),
                timestamp: timestamp(fault.last_seen_at),
                retries: fault.occurrences - 1,
            })
            .collect(),
    ))
}

#[utoipa::path(delete, path = "/faults/{id}", tag = "nbi", params(("id" = String, Path, description = "The fault's id")),
    responses((status = 200, description = "Deleted")))]
async fn delete_fault(State(app): State<Arc<App>>, caller: Caller, Path(id): Path<String>) -> ApiResult<StatusCode> {
    caller.require(Permission::ConfigureDevices)?;
    let id: i64 = id.parse().map_err(|_| ApiError::not_found("fault"))?;
    if !faults::delete_scoped(&app.api_store, &caller.scope, id).await? {
        return Err(ApiError::not_found("fault"));
    }
    Ok(StatusCode::OK)
}

#[utoipa::path(get, path = "/devices/", tag = "nbi", params(FindQuery),
    responses((status = 200, description = "Matching devices", body = Vec<NbiDevice>)))]
async fn find_devices_slash(
    state: State<Arc<App>>,
    caller: Caller,
    params: Query<FindQuery>,
) -> ApiResult<Json<Vec<NbiDevice>>> {
    find_devices(state, caller, params).await
}

#[utoipa::path(get, path = "/tasks/", tag = "nbi", params(FindQuery),
    responses((status = 200, description = "Tasks", body = Vec<NbiTask>)))]
async fn find_tasks_slash(
    state: State<Arc<App>>,
    caller: Caller,
    params: Query<FindQuery>,
) -> ApiResult<Json<Vec<NbiTask>>> {
    find_tasks(state, caller, params).await
}

#[utoipa::path(get, path = "/faults/", tag = "nbi", params(FindQuery),
    responses((status = 200, description = "Faults", body = Vec<NbiFault>)))]
async fn find_faults_slash(
    state: State<Arc<App>>,
    caller: Caller,
    params: Query<FindQuery>,
) -> ApiResult<Json<Vec<NbiFault>>> {
    find_faults(state, caller, params).await
}

#[utoipa::path(post, path = "/devices/{id}/tags/{tag}", tag = "nbi", params(super::devices::DeviceTag),
    responses((status = 200, description = "The device has the tag")))]
async fn add_tag(
    State(app): State<Arc<App>>,
    caller: Caller,
    Path((id, tag)): Path<(String, String)>,
) -> ApiResult<(Extension<super::audit::AuditOrg>, StatusCode)> {
    let device = device_routes::tag_device(&app, &caller, &id, &tag).await?;
    Ok((device_routes::audited_under(&device), StatusCode::OK))
}

#[utoipa::path(delete, path = "/devices/{id}/tags/{tag}", tag = "nbi", params(super::devices::DeviceTag),
    responses((status = 200, description = "The tag is removed")))]
async fn remove_tag(
    State(app): State<Arc<App>>,
    caller: Caller,
    Path((id, tag)): Path<(String, String)>,
) -> ApiResult<(Extension<super::audit::AuditOrg>, StatusCode)> {
    let device = device_routes::untag_device(&app, &caller, &id, &tag).await?;
    Ok((device_routes::audited_under(&device), StatusCode::OK))
}

/// The presets of the key's organization, in Roost's shape (see docs/NBI.md).
#[utoipa::path(get, path = "/presets", tag = "nbi",
    responses((status = 200, description = "The organization's presets", body = presets::PresetList)))]
async fn list_presets(State(app): State<Arc<App>>, caller: Caller) -> ApiResult<Json<presets::PresetList>> {
    Ok(Json(presets::list_presets(&app, caller.org_id).await?))
}

#[utoipa::path(get, path = "/presets/", tag = "nbi",
    responses((status = 200, description = "The organization's presets", body = presets::PresetList)))]
async fn list_presets_slash(State(app): State<Arc<App>>, caller: Caller) -> ApiResult<Json<presets::PresetList>> {
    Ok(Json(presets::list_presets(&app, caller.org_id).await?))
}

#[utoipa::path(get, path = "/presets/{name}", tag = "nbi", params(presets::PresetName),
    responses((status = 200, description = "The preset", body = presets::PresetView)))]
async fn show_preset(
    State(app): State<Arc<App>>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<Json<presets::PresetView>> {
    Ok(Json(presets::show_preset(&app, caller.org_id, &name).await?))
}

#[utoipa::path(put, path = "/presets/{name}", tag = "nbi", params(presets::PresetName),
    request_body = PresetDefinition,
    responses((status = 200, description = "Created or replaced", body = presets::PresetView)))]
async fn put_preset(
    State(app): State<Arc<App>>,
    caller: Caller,
    Path(name): Path<String>,
    Json(definition): Json<PresetDefinition>,
) -> ApiResult<Json<presets::PresetView>> {
    caller.require(Permission::ManageProvisioning)?;
    Ok(Json(presets::put_preset(&app, caller.org_id, &name, definition).await?.1))
}

#[utoipa::path(delete, path = "/presets/{name}", tag = "nbi", params(presets::PresetName),
    responses((status = 200, description = "Deleted")))]
async fn remove_preset(State(app): State<Arc<App>>, caller: Caller, Path(name): Path<String>) -> ApiResult<StatusCode> {
    caller.require(Permission::ManageProvisioning)?;
    presets::remove_preset(&app, caller.org_id, &name).await?;
    Ok(StatusCode::OK)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn projections_name_fields_and_subtrees() {
        let projection = Projection::parse(Some("_deviceId._SerialNumber, InternetGatewayDevice.DeviceInfo._value"));
        assert!(projection.wants("_deviceId"));
        assert!(!projection.wants("_tags"));
        assert_eq!(projection.parameter_prefixes(), ["InternetGatewayDevice.DeviceInfo"]);
        assert_eq!(Projection::parse(None).parameter_prefixes(), [""]);
    }

    #[test]
    fn sorts_are_columns_only() {
        // In the order written, which is not the keys' alphabetical order.
        let sort = sort_fields(Some(r#"{"_lastInform": -1, "_id": 1}"#)).unwrap_or_default();
        assert_eq!(sort, [(Field::Time("last_inform_at"), true), (Field::Id, false)]);
        assert!(sort_fields(Some(r#"{"Device.X": 1}"#)).is_err());
        assert!(sort_fields(Some(r#"{"_id": 2}"#)).is_err());
        assert_eq!(sort_fields(None).unwrap_or_default(), []);
        assert!(sort_fields(Some(r#"{"_id": 1"#)).is_err(), "not JSON");
        assert!(sort_fields(Some("[1]")).is_err(), "not an object");
    }

    #[test]
    fn values_are_typed_as_genieacs_shows_them() {
        assert_eq!(typed("1", "xsd:boolean"), json!(true));
        assert_eq!(typed("42", "xsd:unsignedInt"), json!(42));
        assert_eq!(typed("abc", "xsd:string"), json!("abc"));
    }
}
