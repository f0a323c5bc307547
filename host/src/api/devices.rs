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
use super::{ListResponse, Page, list_response, optional_timestamp, org_slugs, parse_timestamp, timestamp};
use crate::app::App;
use crate::cwmp::connection_request;
use crate::permissions::Permission;
use crate::store::devices::{self, After, Device, DeviceFilter, ParameterMatch, Sort, SortKey};
use crate::store::{faults, now_millis, orgs, parameters};

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

/// The query of `GET /devices`, read from its pairs: besides the named filters, any number of
/// `tag=…` (all must match), `param.<path>=<value>` (the stored value equals) and
/// `param_prefix.<path>=<prefix>` (the stored value starts with).
#[derive(Debug, Default)]
struct ListQuery {
    filter: DeviceFilter,
    org: Option<String>,
    online: Option<bool>,
    sort: Sort,
    fields: Option<Vec<String>>,
    page: Page,
}

/// The fields a device in a list has, for `fields=`.
const LIST_FIELDS: &[&str] = &[
    "id",
    "oui",
    "product_class",
    "serial_number",
    "manufacturer",
    "software_version",
    "hardware_version",
    "data_model",
    "cwmp_version",
    "org",
    "tags",
    "online",
    "remote_address",
    "parameter_key",
    "last_events",
    "registered_at",
    "last_inform_at",
    "last_boot_at",
    "last_bootstrap_at",
    "discovered_at",
    "configured_at",
    "discovery",
    "connection_request",
];

/// The most parameter conditions one list takes.
const MAX_PARAMETER_FILTERS: usize = 16;

impl ListQuery {
    fn parse(pairs: Vec<(String, String)>) -> ApiResult<Self> {
        let bad = |detail: String| ApiError::bad_request(ErrorCode::InvalidQuery, detail);
        let time = |field: &str, value: &str| parse_timestamp(field, value);
        let mut query = Self::default();
        for (key, value) in pairs {
            match key.as_str() {
                "serial_number" => query.filter.serial_number = Some(value),
                "oui" => query.filter.oui = Some(value),
                "product_class" | "model" => query.filter.product_class = Some(value),
                "software_version" => query.filter.software_version = Some(value),
                "last_inform_after" => query.filter.last_inform_after = Some(time(&key, &value)?),
                "last_inform_before" => query.filter.last_inform_before = Some(time(&key, &value)?),
                "tag" => {
                    check_tag(&value)?;
                    query.filter.tags.push(value);
                }
                "org" => query.org = Some(value),
                "online" => {
                    query.online =
                        Some(value.parse().map_err(|_| bad(format!("online is true or false, got {value:?}")))?)
                }
                "sort" => {
                    let (name, descending) = value.strip_prefix('-').map_or((value.as_str(), false), |n| (n, true));
                    let key = SortKey::parse(name).ok_or_else(|| {
                        bad(format!(
                            "sort is id, serial_number, last_inform_at or registered_at, optionally after '-', got {value:?}"
                        ))
                    })?;
                    query.sort = Sort { key, descending };
                }
                "fields" => {
                    let fields: Vec<String> =
                        value.split(',').map(|f| f.trim().to_owned()).filter(|f| !f.is_empty()).collect();
                    if let Some(unknown) = fields.iter().find(|f| !LIST_FIELDS.contains(&f.as_str())) {
                        return Err(bad(format!("unknown field {unknown:?}; fields are {}", LIST_FIELDS.join(", "))));
                    }
                    query.fields = Some(fields);
                }
                "limit" => {
                    query.page.limit =
                        Some(value.parse().map_err(|_| bad(format!("limit is a number, got {value:?}")))?)
                }
                "cursor" => query.page.cursor = Some(value),
                _ => {
                    let (path, matching) = if let Some(path) = key.strip_prefix("param.") {
                        (path, ParameterMatch::Equals(value))
                    } else if let Some(path) = key.strip_prefix("param_prefix.") {
                        (path, ParameterMatch::Prefix(value))
                    } else {
                        return Err(bad(format!("unknown query parameter {key:?}")));
                    };
                    if path.is_empty() || path.ends_with('.') {
                        return Err(bad(format!("{key:?} does not name a parameter")));
                    }
                    query.filter.parameters.push((path.to_owned(), matching));
                    if query.filter.parameters.len() > MAX_PARAMETER_FILTERS {
                        return Err(bad(format!("at most {MAX_PARAMETER_FILTERS} parameter conditions")));
                    }
                }
            }
        }
        Ok(query)
    }
}

async fn list(
    State(app): State<Arc<App>>,
    caller: Caller,
    Query(pairs): Query<Vec<(String, String)>>,
) -> ApiResult<Json<ListResponse<Value>>> {
    let mut q = ListQuery::parse(pairs)?;
    let limit = q.page.limit()?;
    if let Some(slug) = &q.org {
        let org = super::orgs::visible(&app, &caller, slug).await?;
        q.filter.orgs = Some(orgs::subtree(&app.api_store, org.id).await?);
    }
    if let Some(online) = q.online {
        let since = now_millis() - i64::try_from(app.config.api.online_window.as_millis()).unwrap_or(i64::MAX);
        if online {
            q.filter.last_inform_after = Some(q.filter.last_inform_after.map_or(since, |t| t.max(since)));
        } else {
            q.filter.last_inform_before = Some(q.filter.last_inform_before.map_or(since, |t| t.min(since)));
        }
    }
    let after = q
        .page
        .cursor()?
        .map(|c| {
            serde_json::from_str::<After>(&c)
                .map_err(|_| ApiError::bad_request(ErrorCode::InvalidCursor, "cursor is not one this API returned"))
        })
        .transpose()?;
    let rows = devices::list(&app.api_store, &caller.scope, &q.filter, q.sort, after.as_ref(), limit).await?;
    let slugs = org_slugs(&app).await?;
    let wants = |field: &str| q.fields.as_ref().is_none_or(|fields| fields.iter().any(|f| f == field));
    let mut tags = if wants("tags") {
        devices::tags_of(&app.api_store, &rows.iter().map(|d| d.id).collect::<Vec<_>>()).await?
    } else {
        Default::default()
    };
    let online_since = now_millis() - i64::try_from(app.config.api.online_window.as_millis()).unwrap_or(i64::MAX);
    let last = rows
        .last()
        .map(|d| serde_json::to_string(&After { value: q.sort.key.value_of(d), id: d.id }).unwrap_or_default());
    let items: Vec<Value> = rows
        .iter()
        .map(|d| {
            let org = d.org_id.and_then(|o| slugs.get(&o)).map(String::as_str);
            let mut value = device_json(d, org, Some(tags.remove(&d.id).unwrap_or_default()));
            if let Some(object) = value.as_object_mut() {
                object.insert("online".into(), json!(d.last_inform_at.is_some_and(|t| t >= online_since)));
                if let Some(fields) = &q.fields {
                    object.retain(|key, _| fields.iter().any(|f| f == key));
                }
            }
            value
        })
        .collect();
    Ok(Json(ListResponse::new(items, limit, last)))
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

pub(super) async fn add_tag(
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

pub(super) async fn remove_tag(
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
