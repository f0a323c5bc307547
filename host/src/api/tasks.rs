//! Tasks: queue work for a device (GenieACS NBI bodies), watch it, retry or drop it.

use std::sync::Arc;
use std::time::Duration;

use axum::Extension;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use super::extract::{Json, Path, Query};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::audit::AuditOrg;
use super::authenticate::Caller;
use super::devices::visible_device;
use super::error::{ApiError, ApiResult, ErrorCode};
use super::{ListResponse, Page, optional_timestamp, timestamp};
use crate::app::App;
use crate::cwmp::connection_request;
use crate::permissions::Permission;
use crate::store::tasks::{self, TaskRow, TaskStage, TaskStatus};
use crate::store::{devices, now_millis};
use crate::tasks::TaskSpec;

pub fn router() -> OpenApiRouter<Arc<App>> {
    OpenApiRouter::new().routes(routes!(list, create)).routes(routes!(show, remove)).routes(routes!(retry))
}

/// A refused task body as a problem, naming the member at fault where there is one.
pub(super) fn refused(error: crate::tasks::InvalidTask) -> ApiError {
    let problem = ApiError::bad_request(ErrorCode::InvalidTask, error.message);
    match error.field {
        Some(field) => problem.on_field(field),
        None => problem,
    }
}

/// A task as the API shows it. Times are RFC 3339, UTC.
#[derive(Debug, Serialize, ToSchema)]
pub struct TaskView {
    pub id: String,
    pub device_id: String,
    /// The GenieACS task name: `getParameterValues`, `setParameterValues`, `reboot`, …
    pub name: String,
    /// `pending`, `done` or `fault`.
    pub status: String,
    /// The body the task was queued with (secrets blanked).
    #[schema(value_type = Object)]
    pub request: Value,
    pub created_at: String,
    pub done_at: Option<String>,
    pub expires_at: Option<String>,
    /// Sessions that tried it.
    pub attempts: i64,
    /// Why it failed, when its status is `fault`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fault: Option<TaskFaultView>,
    /// What it returned, for tasks that return something (a diagnostic, an upload).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub result: Option<Value>,
    /// `transferring` while a download or upload the device accepted is under way.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stage: Option<String>,
    /// When the task was submitted with `?connection_request`: how the wake-up went.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connection_request: Option<connection_request::Outcome>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TaskFaultView {
    /// `area.reason`: `cwmp.9003` (the CPE's CWMP fault), `cwmp.no_response`,
    /// `task.expired`, `provisioning.not_converging`, `plugin.timeout`, … (`roost::fault_code`).
    pub code: Option<String>,
    pub message: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub detail: Option<Value>,
}

impl TaskView {
    pub fn new(task: &TaskRow, device_id: &str) -> Self {
        Self {
            id: task.id.to_string(),
            device_id: device_id.to_owned(),
            name: task.name.clone(),
            status: task.status.as_str().to_owned(),
            request: serde_json::from_str::<Value>(&task.body).unwrap_or(Value::Null),
            created_at: timestamp(task.created_at),
            done_at: optional_timestamp(task.done_at),
            expires_at: optional_timestamp(task.expires_at),
            attempts: task.attempts,
            fault: (task.status == TaskStatus::Fault).then(|| TaskFaultView {
                code: task.fault_code.clone(),
                message: task.fault_message.clone(),
                detail: task.fault_detail.as_deref().and_then(|d| serde_json::from_str::<Value>(d).ok()),
            }),
            result: task.result.as_deref().and_then(|r| serde_json::from_str::<Value>(r).ok()),
            stage: (task.status == TaskStatus::Pending && task.stage == TaskStage::Transferring)
                .then(|| "transferring".to_owned()),
            connection_request: None,
        }
    }
}

/// A task to queue: a GenieACS NBI task body. `name` says which; the other members are the
/// task's own (`parameterNames`, `parameterValues`, `objectName`, `fileType`, `url`, …).
#[derive(Debug, ToSchema)]
#[allow(dead_code)] // documents the body; handlers read it as JSON and `TaskSpec::parse` it
pub struct TaskRequest {
    /// `getParameterValues`, `setParameterValues`, `refreshObject`, `addObject`, `deleteObject`,
    /// `reboot`, `factoryReset`, `download`, `upload`, `scheduleInform`,
    /// `getParameterAttributes`, `setParameterAttributes`; or, through the device's adapter,
    /// `configureWifi` (`band` or `network`, `ssid`, `passphrase`, `enabled`) and
    /// `configurePppoe` (`username`, `password`, `connection`; none: the linked subscriber's).
    name: String,
    #[serde(flatten)]
    members: std::collections::HashMap<String, Value>,
}

/// The permission a task needs, by its name alone: reads and reboots operate a device, anything
/// that writes configures it. Authorization comes before the body is examined, so that a caller
/// without the right pays for nothing but this.
fn required_permission(name: &str) -> Permission {
    match name {
        "getParameterValues"
        | "refreshObject"
        | "getParameterAttributes"
        | "reboot"
        | "factoryReset"
        | "scheduleInform"
        | "configureWifi"
        | "startDiagnostic"
        | "collectDiagnostic" => Permission::OperateDevices,
        _ => Permission::ConfigureDevices,
    }
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct CreateQuery {
    /// Wake the device now and wait (up to `[tasks] connection_request_wait`) for the task.
    #[serde(default)]
    connection_request: bool,
}

/// Queues a task for the device. With an `Idempotency-Key` header, a retried request answers
/// the task the first one queued (`Idempotent-Replayed: true`) instead of queueing another.
#[utoipa::path(post, path = "/devices/{id}/tasks", tag = "tasks",
    params(super::devices::DeviceId, CreateQuery,
        ("Idempotency-Key" = Option<String>, Header, description = "1 to 255 visible ASCII characters")),
    request_body = TaskRequest,
    responses(
        (status = 201, description = "Queued for the device's next session", body = TaskView),
        (status = 200, description = "Done within the wait (or an idempotent replay)", body = TaskView),
        (status = 202, description = "The device was woken but has not finished the task yet", body = TaskView),
    ))]
async fn create(
    State(app): State<Arc<App>>,
    Extension(slot): Extension<crate::api::ApiSlot>,
    caller: Caller,
    Path(id): Path<String>,
    Query(query): Query<CreateQuery>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> ApiResult<Response> {
    let wait = query.connection_request.then_some(app.config.tasks.connection_request_wait);
    let submitted = submit(&app, &slot, &caller, &id, &body, wait, Some(&headers)).await?;
    let device_id = &submitted.device_id;
    let (org, mut response) = match submitted.outcome {
        Submitted::Replayed(task) => (task.org_id, replayed(&task, device_id)),
        Submitted::Queued(task) => {
            (task.org_id, (StatusCode::CREATED, Json(TaskView::new(&task, device_id))).into_response())
        }
        Submitted::Woken { task, connection_request } => {
            let status = if task.status == TaskStatus::Pending { StatusCode::ACCEPTED } else { StatusCode::OK };
            let view = TaskView { connection_request: Some(connection_request), ..TaskView::new(&task, device_id) };
            (task.org_id, (status, Json(view)).into_response())
        }
    };
    // Logged under the device's organization, whoever queued it.
    response.extensions_mut().insert(AuditOrg(org));
    Ok(response)
}

/// What submitting a task came to.
pub enum Submitted {
    /// Queued for the device's next session.
    Queued(TaskRow),
    /// Queued, the device woken, and waited for: the task as it is now (pending if the device
    /// did not run it in time).
    Woken { task: TaskRow, connection_request: connection_request::Outcome },
    /// An `Idempotency-Key` seen before: the task its first request queued, as it is now.
    Replayed(TaskRow),
}

pub struct Submission {
    pub device_id: String,
    pub outcome: Submitted,
}

/// Queues a task (a GenieACS NBI body) for a device the caller sees, and when `wait` is given,
/// wakes the device and waits that long (which may be no time) for the task to finish. Shared
/// by `/api/v1`, its device actions and the NBI.
pub async fn submit(
    app: &Arc<App>,
    slot: &crate::api::ApiSlot,
    caller: &Caller,
    id: &str,
    body: &Value,
    wait: Option<Duration>,
    headers: Option<&HeaderMap>,
) -> ApiResult<Submission> {
    let name = body.get("name").and_then(Value::as_str).unwrap_or_default();
    caller.require(required_permission(name))?;
    let device = visible_device(app, caller, id).await?;
    let submission = |outcome| Submission { device_id: device.device_id.clone(), outcome };
    let idempotency = match headers {
        Some(headers) => IdempotencyRequest::from_headers(headers, caller, &device.device_id, body)?,
        None => None,
    };
    if let Some(request) = &idempotency
        && let Some(earlier) = request.earlier(app).await?
    {
        return Ok(submission(Submitted::Replayed(earlier)));
    }
    // A download of a stored file gets its URL (and a grant for it) only when it is queued.
    let resolved = super::files::download_body(app, caller, &device, body).await?;
    let body = resolved.as_ref().unwrap_or(body);
    let (name, _spec) = TaskSpec::parse(body).map_err(refused)?;
    let expiry = match body.get("expiry") {
        None | Some(Value::Null) => app.config.tasks.default_expiry,
        Some(v) => Duration::from_secs(v.as_u64().filter(|s| *s > 0).ok_or_else(|| {
            ApiError::bad_request(ErrorCode::InvalidTask, "expiry must be a positive number of seconds")
        })?),
    };
    let expires_at = now_millis().saturating_add(i64::try_from(expiry.as_millis()).unwrap_or(i64::MAX));
    // Subscribe before queueing so a fast device cannot finish before we listen.
    let finished = app.task_events.subscribe();
    let redacted = crate::tasks::redact(body);
    let stored_body = redacted.as_ref().unwrap_or(body).to_string();
    let new_task = tasks::NewTask {
        device_pk: device.id,
        org_id: device.org_id,
        name: &name,
        body: &stored_body,
        sealed_body: redacted.is_some().then(|| app.secrets.seal(body.to_string().as_bytes())),
        expires_at: Some(expires_at),
    };
    let task = match &idempotency {
        None => tasks::insert(&app.api_store, new_task).await?,
        Some(request) => match tasks::insert_idempotent(&app.api_store, new_task, request.key()).await? {
            Some(task) => task,
            // A concurrent retry with the same key queued it first.
            None => match request.earlier(app).await? {
                Some(earlier) => return Ok(submission(Submitted::Replayed(earlier))),
                None => return Err(anyhow::anyhow!("an idempotency key vanished while it was used").into()),
            },
        },
    };
    let Some(wait) = wait else { return Ok(submission(Submitted::Queued(task))) };
    let (task, connection_request) = wake_and_wait(app, slot, &device, finished, task.id, wait).await?;
    Ok(submission(Submitted::Woken { task, connection_request }))
}

/// How often a waiting API call looks at its task in the database, besides being told.
const LOOK_AGAIN: Duration = Duration::from_secs(10);

/// Wakes the device and waits up to `wait` for a task to finish; the task as it is then.
/// `finished` listens to `App::task_events` since before the task was queued, so that a fast
/// device cannot finish it unheard.
pub async fn wake_and_wait(
    app: &Arc<App>,
    slot: &crate::api::ApiSlot,
    device: &crate::store::devices::Device,
    mut finished: tokio::sync::broadcast::Receiver<i64>,
    task_id: i64,
    wait: Duration,
) -> ApiResult<(TaskRow, connection_request::Outcome)> {
    // Waking the device and waiting for it cost this server nothing: the place goes to others.
    slot.release();
    let outcome = connection_request::send(app, device).await?;
    if outcome.is_delivered() && !wait.is_zero() {
        let _ = tokio::time::timeout(wait, async {
            // Another replica's session tells us through `replicas`; should its word be lost (a
            // listener reconnecting), the task is looked at now and then anyway.
            let mut look = tokio::time::interval(LOOK_AGAIN);
            look.tick().await;
            loop {
                let look_up = tokio::select! {
                    received = finished.recv() => match received {
                        Ok(id) if id == task_id => break,
                        Ok(_) => false,
                        // Lagging means we may have missed ours.
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => true,
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
                    },
                    _ = look.tick() => true,
                };
                if look_up
                    && matches!(tasks::by_id(&app.api_store, task_id).await, Ok(Some(t)) if t.status != TaskStatus::Pending)
                {
                    break;
                }
            }
        })
        .await;
    }
    let task = tasks::by_id(&app.api_store, task_id).await?.ok_or_else(|| ApiError::not_found("task"))?;
    Ok((task, outcome))
}

/// An `Idempotency-Key` on a POST that queues tasks, with who sent it and what it was sent with.
pub(super) struct IdempotencyRequest {
    principal: String,
    key: String,
    request_hash: String,
}

impl IdempotencyRequest {
    /// `None` without the header; the key must be 1 to 255 visible ASCII characters.
    pub(super) fn from_headers(
        headers: &HeaderMap,
        caller: &Caller,
        device_id: &str,
        body: &Value,
    ) -> ApiResult<Option<Self>> {
        let Some(value) = headers.get("idempotency-key") else { return Ok(None) };
        let key = value
            .to_str()
            .ok()
            .filter(|k| (1..=255).contains(&k.len()) && k.bytes().all(|b| b.is_ascii_graphic()))
            .ok_or_else(|| {
                ApiError::bad_request(
                    ErrorCode::InvalidIdempotencyKey,
                    "Idempotency-Key must be 1 to 255 visible ASCII characters",
                )
            })?;
        use sha2::Digest;
        let mut hasher = sha2::Sha256::new();
        hasher.update(device_id.as_bytes());
        hasher.update([0]);
        hasher.update(body.to_string().as_bytes());
        Ok(Some(Self { principal: caller.actor(), key: key.to_owned(), request_hash: hex::encode(hasher.finalize()) }))
    }

    pub(super) fn key(&self) -> tasks::IdempotencyKey<'_> {
        tasks::IdempotencyKey { principal: &self.principal, key: &self.key, request_hash: &self.request_hash }
    }

    /// The task this key queued before, if it did; an error if it came with another request.
    async fn earlier(&self, app: &App) -> ApiResult<Option<TaskRow>> {
        match tasks::key_use(&app.api_store, self.key()).await? {
            None => Ok(None),
            Some(tasks::KeyUse::Task(task_id)) => Ok(tasks::by_id(&app.api_store, task_id).await?),
            Some(tasks::KeyUse::OtherRequest) => Err(Self::reused()),
        }
    }

    /// The answer to a key sent again with another request.
    pub(super) fn reused() -> ApiError {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            ErrorCode::IdempotencyKeyReused,
            "This Idempotency-Key was used with another request",
        )
    }
}

/// The answer to a retried POST: the task its first attempt queued, as it is now.
fn replayed(task: &TaskRow, device_id: &str) -> Response {
    let mut response = (StatusCode::OK, Json(TaskView::new(task, device_id))).into_response();
    response.headers_mut().insert("idempotent-replayed", axum::http::HeaderValue::from_static("true"));
    response
}

#[utoipa::path(get, path = "/devices/{id}/tasks", tag = "tasks", params(super::devices::DeviceId, Page),
    responses((status = 200, description = "A page of the device's tasks, oldest first", body = ListResponse<TaskView>)))]
async fn list(
    State(app): State<Arc<App>>,
    caller: Caller,
    Path(id): Path<String>,
    Query(page): Query<Page>,
) -> ApiResult<Json<ListResponse<TaskView>>> {
    let limit = page.limit()?;
    let device = visible_device(&app, &caller, &id).await?;
    let rows = tasks::list_for_device(&app.api_store, device.id, page.id_cursor()?, limit).await?;
    let last = rows.last().map(|t| t.id.to_string());
    let items = rows.iter().map(|t| TaskView::new(t, &device.device_id)).collect();
    Ok(Json(ListResponse::new(items, limit, last)))
}

async fn visible_task(app: &App, caller: &Caller, id: &str) -> ApiResult<(TaskRow, String)> {
    let id: i64 = id.parse().map_err(|_| ApiError::not_found("task"))?;
    let task = tasks::visible(&app.api_store, &caller.scope, id).await?.ok_or_else(|| ApiError::not_found("task"))?;
    let device = devices::by_pk(&app.api_store, task.device_pk).await?.ok_or_else(|| ApiError::not_found("task"))?;
    Ok((task, device.device_id))
}

/// A task's id in a path.
#[derive(Debug, utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)] // documents the path; handlers read it with `Path<String>`
struct TaskId {
    id: String,
}

#[utoipa::path(get, path = "/tasks/{id}", tag = "tasks", params(TaskId),
    responses((status = 200, description = "The task", body = TaskView)))]
async fn show(State(app): State<Arc<App>>, caller: Caller, Path(id): Path<String>) -> ApiResult<Json<TaskView>> {
    let (task, device_id) = visible_task(&app, &caller, &id).await?;
    Ok(Json(TaskView::new(&task, &device_id)))
}

#[utoipa::path(delete, path = "/tasks/{id}", tag = "tasks", params(TaskId),
    responses((status = 204, description = "The task is dropped")))]
async fn remove(
    State(app): State<Arc<App>>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<(Extension<AuditOrg>, StatusCode)> {
    caller.require(Permission::ConfigureDevices)?;
    let (task, _) = visible_task(&app, &caller, &id).await?;
    tasks::delete(&app.api_store, &task).await?;
    Ok((Extension(AuditOrg(task.org_id)), StatusCode::NO_CONTENT))
}

/// Queues a faulted task again.
#[utoipa::path(post, path = "/tasks/{id}/retry", tag = "tasks", params(TaskId),
    responses((status = 200, description = "The task, pending again", body = TaskView)))]
async fn retry(
    State(app): State<Arc<App>>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<(Extension<AuditOrg>, Json<TaskView>)> {
    caller.require(Permission::ConfigureDevices)?;
    let (task, device_id) = visible_task(&app, &caller, &id).await?;
    if !tasks::retry(&app.api_store, task.id).await? {
        return Err(ApiError::conflict(ErrorCode::NotFaulted, "only a faulted task can be retried"));
    }
    let task = tasks::by_id(&app.api_store, task.id).await?.ok_or_else(|| ApiError::not_found("task"))?;
    Ok((Extension(AuditOrg(task.org_id)), Json(TaskView::new(&task, &device_id))))
}
