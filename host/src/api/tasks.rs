//! Tasks: queue work for a device (GenieACS NBI bodies), watch it, retry or drop it.

use std::sync::Arc;
use std::time::Duration;

use axum::Extension;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};

use super::extract::{Json, Path, Query};
use serde::Deserialize;
use serde_json::{Value, json};

use super::auth::{Caller, Role};
use super::devices::visible_device;
use super::error::{ApiError, ApiResult};
use super::{Page, list_response, optional_timestamp, timestamp};
use crate::app::App;
use crate::cwmp::connection_request;
use crate::store::tasks::{self, TaskRow};
use crate::store::{devices, now_millis};
use crate::tasks::TaskSpec;

pub fn router() -> Router<Arc<App>> {
    Router::new()
        .route("/devices/{id}/tasks", get(list).post(create))
        .route("/tasks/{id}", get(show).delete(remove))
        .route("/tasks/{id}/retry", post(retry))
}

pub fn task_json(task: &TaskRow, device_id: &str) -> Value {
    let mut value = json!({
        "id": task.id.to_string(),
        "device_id": device_id,
        "name": task.name,
        "status": task.status,
        "request": serde_json::from_str::<Value>(&task.body).unwrap_or(Value::Null),
        "created_at": timestamp(task.created_at),
        "done_at": optional_timestamp(task.done_at),
        "expires_at": optional_timestamp(task.expires_at),
        "attempts": task.attempts,
    });
    let Some(object) = value.as_object_mut() else { return value };
    if task.status == tasks::FAULT {
        object.insert(
            "fault".into(),
            json!({
                "code": task.fault_code,
                "message": task.fault_message,
                "detail": task.fault_detail.as_deref().and_then(|d| serde_json::from_str::<Value>(d).ok()),
            }),
        );
    }
    if let Some(result) = task.result.as_deref().and_then(|r| serde_json::from_str::<Value>(r).ok()) {
        object.insert("result".into(), result);
    }
    if task.status == tasks::PENDING && task.stage == tasks::stage::TRANSFERRING {
        object.insert("stage".into(), json!("transferring"));
    }
    value
}

/// The role a task needs: reads and reboots are `basic`, anything that writes is `advanced`.
/// The role a task needs, by its name alone: authorization comes before the body is examined,
/// so that a caller without the right pays for nothing but this.
fn required_role(name: &str) -> Role {
    match name {
        "getParameterValues"
        | "refreshObject"
        | "getParameterAttributes"
        | "reboot"
        | "factoryReset"
        | "scheduleInform" => Role::Basic,
        _ => Role::Advanced,
    }
}

#[derive(Debug, Deserialize)]
struct CreateQuery {
    #[serde(default)]
    connection_request: bool,
}

async fn create(
    State(app): State<Arc<App>>,
    Extension(slot): Extension<crate::api::ApiSlot>,
    caller: Caller,
    Path(id): Path<String>,
    Query(query): Query<CreateQuery>,
    Json(body): Json<Value>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let name = body.get("name").and_then(Value::as_str).unwrap_or_default();
    caller.require(required_role(name))?;
    let device = visible_device(&app, &caller, &id).await?;
    let (name, _spec) = TaskSpec::parse(&body).map_err(|e| ApiError::bad_request("invalid_task", e.0))?;
    let expiry = match body.get("expiry") {
        None | Some(Value::Null) => app.config.tasks.default_expiry,
        Some(v) => Duration::from_secs(
            v.as_u64()
                .filter(|s| *s > 0)
                .ok_or_else(|| ApiError::bad_request("invalid_task", "expiry must be a positive number of seconds"))?,
        ),
    };
    let expires_at = now_millis().saturating_add(i64::try_from(expiry.as_millis()).unwrap_or(i64::MAX));
    // Subscribe before queueing so a fast device cannot finish before we listen.
    let mut finished = app.task_events.subscribe();
    let redacted = crate::tasks::redact(&body);
    let task = tasks::insert(
        &app.api_store,
        tasks::NewTask {
            device_pk: device.id,
            org_id: device.org_id,
            name: &name,
            body: &redacted.as_ref().unwrap_or(&body).to_string(),
            sealed_body: redacted.is_some().then(|| app.secrets.seal(body.to_string().as_bytes())),
            expires_at: Some(expires_at),
        },
    )
    .await?;
    if !query.connection_request {
        return Ok((StatusCode::CREATED, Json(task_json(&task, &device.device_id))));
    }
    // Waking the device and waiting for it cost this server nothing: the place goes to others.
    slot.release();
    let outcome = connection_request::send(&app, &device).await?;
    if outcome == connection_request::Outcome::Accepted {
        let wait = app.config.tasks.connection_request_wait;
        let _ = tokio::time::timeout(wait, async {
            loop {
                match finished.recv().await {
                    Ok(id) if id == task.id => break,
                    Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                        // Lagging means we may have missed ours: look it up.
                        if matches!(tasks::by_id(&app.api_store, task.id).await, Ok(Some(t)) if t.status != tasks::PENDING)
                        {
                            break;
                        }
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
                }
            }
        })
        .await;
    }
    let task = tasks::by_id(&app.api_store, task.id).await?.ok_or_else(|| ApiError::not_found("task"))?;
    let status = if task.status == tasks::PENDING { StatusCode::ACCEPTED } else { StatusCode::OK };
    let mut value = task_json(&task, &device.device_id);
    if let Some(object) = value.as_object_mut() {
        object.insert("connection_request".into(), json!(outcome));
    }
    Ok((status, Json(value)))
}

async fn list(
    State(app): State<Arc<App>>,
    caller: Caller,
    Path(id): Path<String>,
    Query(page): Query<Page>,
) -> ApiResult<Json<Value>> {
    let limit = page.limit()?;
    let device = visible_device(&app, &caller, &id).await?;
    let rows = tasks::list_for_device(&app.api_store, device.id, page.id_cursor()?, limit).await?;
    let last = rows.last().map(|t| t.id.to_string());
    let items: Vec<Value> = rows.iter().map(|t| task_json(t, &device.device_id)).collect();
    Ok(Json(list_response(items, limit, last)))
}

async fn visible_task(app: &App, caller: &Caller, id: &str) -> ApiResult<(TaskRow, String)> {
    let id: i64 = id.parse().map_err(|_| ApiError::not_found("task"))?;
    let task = tasks::visible(&app.api_store, &caller.scope, id).await?.ok_or_else(|| ApiError::not_found("task"))?;
    let device = devices::by_pk(&app.api_store, task.device_id).await?.ok_or_else(|| ApiError::not_found("task"))?;
    Ok((task, device.device_id))
}

async fn show(State(app): State<Arc<App>>, caller: Caller, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    let (task, device_id) = visible_task(&app, &caller, &id).await?;
    Ok(Json(task_json(&task, &device_id)))
}

async fn remove(State(app): State<Arc<App>>, caller: Caller, Path(id): Path<String>) -> ApiResult<StatusCode> {
    caller.require(Role::Advanced)?;
    let (task, _) = visible_task(&app, &caller, &id).await?;
    tasks::delete(&app.api_store, task.id).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn retry(State(app): State<Arc<App>>, caller: Caller, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    caller.require(Role::Advanced)?;
    let (task, device_id) = visible_task(&app, &caller, &id).await?;
    if !tasks::retry(&app.api_store, task.id).await? {
        return Err(ApiError::conflict("not_faulted", "only a faulted task can be retried"));
    }
    let task = tasks::by_id(&app.api_store, task.id).await?.ok_or_else(|| ApiError::not_found("task"))?;
    Ok(Json(task_json(&task, &device_id)))
}
