//! Plugins: upload a WebAssembly component, list and delete them.
//!
//! `POST /plugins?name=&version=` with the component as the body (`application/wasm`). The upload
//! is compiled and checked before it is stored: a file that is not a component, implements neither
//! world, or imports anything beyond `roost:plugin@0.1.0` is refused with 400 and the reason.
//!
//! Around them:
//! - `GET /plugin-limits`: the sandbox limits the caller's organization runs under;
//!   `PUT/DELETE /orgs/{slug}/plugin-limits` (platform admins) sets or clears an organization's
//!   overrides (a JSON object of the fields that differ), which its subtree inherits;
//! - `GET/PUT /plugin-config/{plugin}`: the settings an organization gives a plugin (`config`
//!   in the WIT), a JSON object of strings; a sub-organization's value of a key wins.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::routing::{delete, get};
use serde::Deserialize;
use serde_json::{Value, json};

use super::authenticate::Caller;
use super::error::{ApiError, ApiResult, ErrorCode};
use super::extract::{Json, Path, Query};
use super::{Page, list_response, timestamp};
use crate::app::App;
use crate::permissions::Permission;
use crate::plugins::API_VERSION;
use crate::store::plugins::{self, InsertError, NewPlugin, PluginRow};

/// Largest component accepted: shipped adapters are ~16–200 KB; a JavaScript plugin ~2 MB.
pub const MAX_COMPONENT_BYTES: usize = 16 * 1024 * 1024;

pub fn router() -> Router<Arc<App>> {
    Router::new()
        .route("/plugins", get(list).post(upload).layer(DefaultBodyLimit::max(MAX_COMPONENT_BYTES)))
        .route("/plugins/{id}", delete(remove).get(show))
        .route("/plugin-limits", get(show_limits))
        .route("/orgs/{slug}/plugin-limits", axum::routing::put(put_limits).delete(delete_limits))
        .route("/plugin-config/{plugin}", get(show_config).put(put_config))
}

async fn show_limits(State(app): State<Arc<App>>, caller: Caller) -> ApiResult<axum::Json<Value>> {
    let org = app.provisioning.org(&app, Some(caller.org_id)).await?;
    let own = plugins::limits(&app.api_store, caller.org_id).await?;
    let own: Value = own.and_then(|json| serde_json::from_str(&json).ok()).unwrap_or_else(|| json!({}));
    Ok(axum::Json(json!({ "effective": org.limits, "overrides": own })))
}

async fn org_by_slug(app: &App, caller: &Caller, slug: &str) -> ApiResult<i64> {
    caller.require(Permission::ManagePluginLimits)?;
    let org =
        crate::store::orgs::by_slug(&app.api_store, slug).await?.ok_or_else(|| ApiError::not_found("organization"))?;
    Ok(org.id)
}

async fn put_limits(
    State(app): State<Arc<App>>,
    caller: Caller,
    Path(slug): Path<String>,
    Json(overrides): Json<Value>,
) -> ApiResult<axum::Json<Value>> {
    let org_id = org_by_slug(&app, &caller, &slug).await?;
    let text = overrides.to_string();
    // Checked against the defaults; the effective limits are checked again when loaded.
    app.plugins
        .default_limits()
        .with_override(&text)
        .map_err(|reason| ApiError::bad_request(ErrorCode::InvalidLimits, reason))?;
    plugins::set_limits(&app.api_store, org_id, Some(&text)).await?;
    app.provisioning.invalidate();
    let org = app.provisioning.org(&app, Some(org_id)).await?;
    Ok(axum::Json(json!({ "effective": org.limits, "overrides": overrides })))
}

async fn delete_limits(State(app): State<Arc<App>>, caller: Caller, Path(slug): Path<String>) -> ApiResult<StatusCode> {
    let org_id = org_by_slug(&app, &caller, &slug).await?;
    plugins::set_limits(&app.api_store, org_id, None).await?;
    app.provisioning.invalidate();
    Ok(StatusCode::NO_CONTENT)
}

async fn show_config(
    State(app): State<Arc<App>>,
    caller: Caller,
    Path(plugin): Path<String>,
) -> ApiResult<axum::Json<Value>> {
    check_name(&plugin)?;
    let entries: serde_json::Map<String, Value> = plugins::config(&app.api_store, caller.org_id)
        .await?
        .into_iter()
        .filter(|(p, _, _)| *p == plugin)
        .map(|(_, k, v)| (k, Value::String(v)))
        .collect();
    Ok(axum::Json(Value::Object(entries)))
}

/// Most keys one organization may give one plugin, and their sizes.
const MAX_CONFIG_KEYS: usize = 64;
const MAX_CONFIG_VALUE_BYTES: usize = 4096;

async fn put_config(
    State(app): State<Arc<App>>,
    caller: Caller,
    Path(plugin): Path<String>,
    Json(config): Json<std::collections::BTreeMap<String, String>>,
) -> ApiResult<axum::Json<Value>> {
    caller.require(Permission::ManageProvisioning)?;
    check_name(&plugin)?;
    if config.len() > MAX_CONFIG_KEYS {
        return Err(ApiError::bad_request(ErrorCode::InvalidConfig, format!("at most {MAX_CONFIG_KEYS} keys")));
    }
    if let Some((key, _)) =
        config.iter().find(|(k, v)| k.is_empty() || k.len() > 64 || v.len() > MAX_CONFIG_VALUE_BYTES)
    {
        return Err(ApiError::bad_request(
            ErrorCode::InvalidConfig,
            format!("{key:?}: keys have 1 to 64 bytes, values at most {MAX_CONFIG_VALUE_BYTES}"),
        ));
    }
    let entries: Vec<(String, String)> = config.clone().into_iter().collect();
    plugins::set_config(&app.api_store, caller.org_id, &plugin, &entries).await?;
    app.provisioning.invalidate();
    Ok(axum::Json(json!(config)))
}

pub fn plugin_json(plugin: &PluginRow) -> Value {
    json!({
        "id": plugin.id.to_string(),
        "name": plugin.name,
        "version": plugin.version,
        "world": plugin.world,
        "api_version": plugin.api_version,
        "hash": plugin.hash,
        "size": plugin.size,
        "org": plugin.org_slug,
        "created_at": timestamp(plugin.created_at),
    })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UploadQuery {
    name: String,
    version: String,
}

/// Plugin names are what presets refer to: lowercase letters, digits and hyphens.
pub fn check_name(name: &str) -> ApiResult<()> {
    let valid = (1..=64).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if valid {
        Ok(())
    } else {
        Err(ApiError::bad_request(
            ErrorCode::InvalidName,
            "name must be 1 to 64 lowercase letters, digits and hyphens, starting with a letter",
        ))
    }
}

/// Versions are semantic versions: `1.2.3`, `1.2.3-beta.1`.
fn check_version(version: &str) -> ApiResult<()> {
    let (core, suffix) = match version.split_once(['-', '+']) {
        Some((core, suffix)) => (core, Some(suffix)),
        None => (version, None),
    };
    let numbers: Vec<&str> = core.split('.').collect();
    let valid = version.len() <= 64
        && numbers.len() == 3
        && numbers.iter().all(|n| !n.is_empty() && n.len() <= 9 && n.bytes().all(|b| b.is_ascii_digit()))
        && suffix.is_none_or(|s| {
            !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '+'))
        });
    if valid {
        Ok(())
    } else {
        Err(ApiError::bad_request(ErrorCode::InvalidVersion, "version must be a semantic version such as 1.0.0"))
    }
}

async fn upload(
    State(app): State<Arc<App>>,
    caller: Caller,
    Query(query): Query<UploadQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<(StatusCode, axum::Json<Value>)> {
    caller.require(Permission::ManageProvisioning)?;
    check_name(&query.name)?;
    check_version(&query.version)?;
    if let Some(content_type) = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok())
        && !matches!(content_type, "application/wasm" | "application/octet-stream")
    {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ErrorCode::UnsupportedMediaType,
            "send the component as application/wasm",
        ));
    }
    if body.is_empty() {
        return Err(ApiError::bad_request(ErrorCode::InvalidPlugin, "the body is empty: send the component"));
    }
    let runtime = app.plugins.clone();
    let bytes = body.clone();
    let validated = tokio::task::spawn_blocking(move || runtime.validate(&bytes))
        .await
        .map_err(|e| ApiError::from(anyhow::anyhow!("plugin validation task: {e}")))?
        .map_err(|e| ApiError::bad_request(ErrorCode::InvalidPlugin, e.to_string()))?;
    let stored = plugins::insert(
        &app.api_store,
        &NewPlugin {
            org_id: caller.org_id,
            name: &query.name,
            version: &query.version,
            world: validated.world.as_str(),
            api_version: API_VERSION,
            hash: &validated.hash,
            component: &body,
        },
    )
    .await
    .map_err(|e| match e {
        InsertError::Exists(..) => ApiError::conflict(ErrorCode::PluginExists, e.to_string()),
        InsertError::Other(e) => ApiError::from(e),
    })?;
    app.provisioning.invalidate();
    Ok((StatusCode::CREATED, axum::Json(plugin_json(&stored))))
}

async fn list(State(app): State<Arc<App>>, caller: Caller, Query(page): Query<Page>) -> ApiResult<axum::Json<Value>> {
    let limit = page.limit()?;
    let after = page
        .cursor()?
        .map(|c| c.parse::<i64>())
        .transpose()
        .map_err(|_| ApiError::bad_request(ErrorCode::InvalidCursor, "cursor is not one this API returned"))?;
    let rows = plugins::list(&app.api_store, &caller.scope, after, limit).await?;
    let last = rows.last().map(|r| r.id.to_string());
    let items: Vec<Value> = rows.iter().map(plugin_json).collect();
    Ok(axum::Json(list_response(items, limit, last)))
}

fn parse_id(id: &str) -> ApiResult<i64> {
    id.parse().map_err(|_| ApiError::not_found("plugin"))
}

async fn show(State(app): State<Arc<App>>, caller: Caller, Path(id): Path<String>) -> ApiResult<axum::Json<Value>> {
    let row = plugins::by_id(&app.api_store, &caller.scope, parse_id(&id)?)
        .await?
        .ok_or_else(|| ApiError::not_found("plugin"))?;
    Ok(axum::Json(plugin_json(&row)))
}

async fn remove(State(app): State<Arc<App>>, caller: Caller, Path(id): Path<String>) -> ApiResult<StatusCode> {
    caller.require(Permission::ManageProvisioning)?;
    if plugins::delete(&app.api_store, &caller.scope, parse_id(&id)?).await? {
        app.provisioning.invalidate();
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found("plugin"))
    }
}
