//! Devices: the fleet, one device, its parameter tree, tags, faults and connection requests.

use std::sync::Arc;

use axum::Extension;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post, put};

use super::extract::{Json, Path, Query};
use serde::Deserialize;
use serde_json::{Value, json};

use super::authenticate::Caller;
use super::error::{ApiError, ApiResult, ErrorCode};
use super::{Page, list_response, optional_timestamp, org_slugs, parse_timestamp, timestamp};
use crate::app::App;
use crate::cwmp::connection_request;
use crate::permissions::Permission;
use crate::store::devices::{self, Device, DeviceFilter};
use crate::store::{faults, parameters};

pub fn router() -> Router<Arc<App>> {
    Router::new()
        .route("/devices", get(list))
        .route("/devices/{id}", get(show).delete(remove))
        .route("/devices/{id}/parameters", get(parameters_of))
        .route("/devices/{id}/faults", get(faults_of))
        .route("/devices/{id}/tags/{tag}", put(add_tag).delete(remove_tag))
        .route("/devices/{id}/connection-request", post(wake))
}

/// Loads a device the caller may see, or 404 (never 403: other tenants' ids are not confirmed).
pub async fn visible_device(app: &App, caller: &Caller, id: &str) -> ApiResult<Device> {
    devices::visible(&app.api_store, &caller.scope, id).await?.ok_or_else(|| ApiError::not_found("device"))
}

pub fn device_json(device: &Device, org_slug: Option<&str>, tags: Option<Vec<String>>) -> Value {
    let events: Vec<&str> = device.last_events.split(',').filter(|e| !e.is_empty()).collect();
    let mut value = json!({
        "id": device.device_id,
        "oui": device.oui,
        "product_class": device.product_class,
        "serial_number": device.serial_number,
        "manufacturer": device.manufacturer,
        "software_version": device.software_version,
        "hardware_version": device.hardware_version,
        "data_model": device.data_model,
        "cwmp_version": device.cwmp_version,
        "org": org_slug,
        "remote_address": device.remote_address,
        "parameter_key": device.parameter_key,
        "last_events": events,
        "registered_at": timestamp(device.registered_at),
        "last_inform_at": optional_timestamp(device.last_inform_at),
        "last_boot_at": optional_timestamp(device.last_boot_at),
        "last_bootstrap_at": optional_timestamp(device.last_bootstrap_at),
        "discovered_at": optional_timestamp(device.discovered_at),
        "configured_at": optional_timestamp(device.configured_at),
        "discovery": {
            "batch": device.discovery_batch,
            "failed_sessions": device.discovery_failures,
        },
        "connection_request": {
            "url": device.connection_request_url,
            "credentials_set": !device.connection_request_username.is_empty(),
            "last_attempt_at": optional_timestamp(device.connection_request_at),
            "last_outcome": device.connection_request_outcome,
        },
    });
    if let (Some(tags), Some(object)) = (tags, value.as_object_mut()) {
        object.insert("tags".into(), json!(tags));
    }
    value
}

#[derive(Debug, Deserialize)]
struct ListQuery {
    serial_number: Option<String>,
    oui: Option<String>,
    product_class: Option<String>,
    software_version: Option<String>,
    last_inform_after: Option<String>,
    last_inform_before: Option<String>,
    tag: Option<String>,
    limit: Option<u64>,
    cursor: Option<String>,
}

async fn list(State(app): State<Arc<App>>, caller: Caller, Query(q): Query<ListQuery>) -> ApiResult<Json<Value>> {
    let page = Page { limit: q.limit, cursor: q.cursor.clone() };
    let limit = page.limit()?;
    let filter = DeviceFilter {
        serial_number: q.serial_number,
        oui: q.oui,
        product_class: q.product_class,
        software_version: q.software_version,
        last_inform_after: q
            .last_inform_after
            .as_deref()
            .map(|v| parse_timestamp("last_inform_after", v))
            .transpose()?,
        last_inform_before: q
            .last_inform_before
            .as_deref()
            .map(|v| parse_timestamp("last_inform_before", v))
            .transpose()?,
        tag: q.tag,
        pending: false,
    };
    let rows = devices::list(&app.api_store, &caller.scope, &filter, page.id_cursor()?, limit).await?;
    let slugs = org_slugs(&app).await?;
    let last = rows.last().map(|d| d.id.to_string());
    let items: Vec<Value> =
        rows.iter().map(|d| device_json(d, d.org_id.and_then(|o| slugs.get(&o)).map(String::as_str), None)).collect();
    Ok(Json(list_response(items, limit, last)))
}

async fn show(State(app): State<Arc<App>>, caller: Caller, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    let device = visible_device(&app, &caller, &id).await?;
    let tags = devices::tags(&app.api_store, device.id).await?;
    let slugs = org_slugs(&app).await?;
    let mut value = device_json(&device, device.org_id.and_then(|o| slugs.get(&o)).map(String::as_str), Some(tags));
    let events = devices::recent_events(&app.api_store, device.id, 20).await?;
    let parameter_count = parameters::count(&app.api_store, device.id).await?;
    let adapter = crate::provisioning::adapters::describe(&app, &device).await?;
    if let Some(object) = value.as_object_mut() {
        object.insert("parameter_count".into(), json!(parameter_count));
        object.insert("adapter".into(), adapter);
        object.insert(
            "recent_events".into(),
            json!(
                events
                    .iter()
                    .map(|e| json!({
                        "codes": e.codes.split(',').collect::<Vec<_>>(),
                        "command_keys": e.command_keys.split(',').collect::<Vec<_>>(),
                        "received_at": timestamp(e.received_at),
                    }))
                    .collect::<Vec<_>>()
            ),
        );
    }
    Ok(Json(value))
}

async fn remove(State(app): State<Arc<App>>, caller: Caller, Path(id): Path<String>) -> ApiResult<StatusCode> {
    caller.require(Permission::ConfigureDevices)?;
    let device = visible_device(&app, &caller, &id).await?;
    devices::delete(&app.api_store, device.id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize)]
struct ParameterQuery {
    #[serde(default)]
    prefix: String,
    limit: Option<u64>,
    cursor: Option<String>,
}

async fn parameters_of(
    State(app): State<Arc<App>>,
    caller: Caller,
    Path(id): Path<String>,
    Query(q): Query<ParameterQuery>,
) -> ApiResult<Json<Value>> {
    let page = Page { limit: q.limit, cursor: q.cursor };
    let limit = page.limit()?;
    let device = visible_device(&app, &caller, &id).await?;
    let rows = parameters::list(&app.api_store, device.id, &q.prefix, page.cursor()?.as_deref(), limit).await?;
    let last = rows.last().map(|p| p.path.clone());
    let items: Vec<Value> = rows
        .iter()
        .map(|p| {
            json!({
                "path": p.path,
                "object": p.is_object,
                "writable": p.writable,
                "value": p.value,
                "type": if p.is_object { None } else { Some(&p.value_type) },
                "refreshed_at": timestamp(p.refreshed_at),
                "secret": roost_cwmp::is_secret_parameter(&p.path) && !p.is_object,
                "remembered": p.remembered,
            })
        })
        .collect();
    Ok(Json(list_response(items, limit, last)))
}

async fn faults_of(
    State(app): State<Arc<App>>,
    caller: Caller,
    Path(id): Path<String>,
    Query(page): Query<Page>,
) -> ApiResult<Json<Value>> {
    let limit = page.limit()?;
    let device = visible_device(&app, &caller, &id).await?;
    let rows = faults::list_for_device(&app.api_store, device.id, page.id_cursor()?, limit).await?;
    let last = rows.last().map(|f| f.id.to_string());
    let items: Vec<Value> = rows
        .iter()
        .map(|f| {
            json!({
                "id": f.id.to_string(),
                "device_id": device.device_id,
                "task_id": f.task_id.map(|t| t.to_string()),
                "channel": f.channel,
                "code": f.code,
                "message": f.message,
                "detail": f.detail.as_deref().and_then(|d| serde_json::from_str::<Value>(d).ok()),
                "created_at": timestamp(f.created_at),
            })
        })
        .collect();
    Ok(Json(list_response(items, limit, last)))
}

fn check_tag(tag: &str) -> ApiResult<()> {
    let valid = !tag.is_empty()
        && tag.len() <= 128
        && tag.chars().all(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | '.' | ':' | '/'));
    if valid {
        Ok(())
    } else {
        Err(ApiError::bad_request(ErrorCode::InvalidTag, "a tag is 1-128 letters, digits and - _ . : /"))
    }
}

async fn add_tag(
    State(app): State<Arc<App>>,
    caller: Caller,
    Path((id, tag)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    caller.require(Permission::ConfigureDevices)?;
    check_tag(&tag)?;
    let device = visible_device(&app, &caller, &id).await?;
    devices::add_tag(&app.api_store, device.id, &tag).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn remove_tag(
    State(app): State<Arc<App>>,
    caller: Caller,
    Path((id, tag)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    caller.require(Permission::ConfigureDevices)?;
    let device = visible_device(&app, &caller, &id).await?;
    if devices::remove_tag(&app.api_store, device.id, &tag).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found("tag"))
    }
}

async fn wake(
    State(app): State<Arc<App>>,
    Extension(slot): Extension<crate::api::ApiSlot>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<(StatusCode, Json<connection_request::Outcome>)> {
    caller.require(Permission::OperateDevices)?;
    let device = visible_device(&app, &caller, &id).await?;
    slot.release();
    let outcome = connection_request::send(&app, &device).await?;
    let status = match outcome {
        connection_request::Outcome::Accepted => StatusCode::OK,
        _ => StatusCode::BAD_GATEWAY,
    };
    Ok((status, Json(outcome)))
}
