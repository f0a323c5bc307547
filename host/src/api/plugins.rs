//! Plugins: upload a WebAssembly component, list and delete them.
//!
//! `POST /plugins?name=&version=` with the component as the body (`application/wasm`). The upload
//! is compiled and checked before it is stored: a file that is not a component, implements neither
//! world, or imports anything beyond `roost:plugin@0.1.1` (or an earlier 0.1 version) is refused with
//! 400 and the reason.
//!
//! Around them:
//! - `GET /plugin-limits`: the sandbox limits the caller's organization runs under;
//!   `PUT/DELETE /orgs/{slug}/plugin-limits` (platform admins) sets or clears an organization's
//!   overrides (a JSON object of the fields that differ), which its subtree inherits;
//! - `GET/PUT /plugin-config/{plugin}`: the settings an organization gives a plugin (`config`
//!   in the WIT), a JSON object of strings; a sub-organization's value of a key wins.

use std::sync::Arc;

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode, header};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::authenticate::Caller;
use super::error::{ApiError, ApiResult, ErrorCode};
use super::extract::{Json, Path, Query};
use super::{ListResponse, Page, timestamp};
use crate::app::App;
use crate::permissions::Permission;
use crate::plugins::limits::PluginLimits;
use crate::store::plugins::{self, InsertError, NewPlugin, PluginRow};

/// Largest component accepted: shipped adapters are ~16–200 KB; a JavaScript plugin ~2 MB.
pub const MAX_COMPONENT_BYTES: usize = 16 * 1024 * 1024;

pub fn router() -> OpenApiRouter<Arc<App>> {
    // Components are uploaded whole, so their route reads bodies up to their own limit.
    let uploads = OpenApiRouter::new().routes(routes!(list, upload)).layer(DefaultBodyLimit::max(MAX_COMPONENT_BYTES));
    OpenApiRouter::new()
        .merge(uploads)
        .routes(routes!(show, remove))
        .routes(routes!(show_limits))
        .routes(routes!(put_limits, delete_limits))
        .routes(routes!(show_config, put_config))
}

/// A plugin as the API shows it (not its component).
#[derive(Debug, Serialize, ToSchema)]
pub struct PluginView {
    pub id: String,
    pub name: String,
    pub version: String,
    /// `adapter` or `provision`.
    pub world: String,
    /// The WIT package version it was built against.
    pub api_version: String,
    /// SHA-256 of the component, hex.
    pub hash: String,
    /// Bytes.
    pub size: i64,
    /// The slug of the organization that uploaded it.
    pub org: String,
    pub created_at: String,
}

impl PluginView {
    fn new(plugin: &PluginRow) -> Self {
        Self {
            id: plugin.id.to_string(),
            name: plugin.name.clone(),
            version: plugin.version.clone(),
            world: plugin.world.clone(),
            api_version: plugin.api_version.clone(),
            hash: plugin.hash.clone(),
            size: plugin.size,
            org: plugin.org_slug.clone(),
            created_at: timestamp(plugin.created_at),
        }
    }
}

/// The sandbox limits an organization's plugins run under.
#[derive(Debug, Serialize, ToSchema)]
pub struct LimitsView {
    /// What applies: the defaults with the overrides of the organization and those above it.
    pub effective: PluginLimits,
    /// The organization's own overrides: only the fields that differ.
    #[schema(value_type = Object)]
    pub overrides: Value,
}

/// A WebAssembly component, as bytes.
#[derive(Debug, ToSchema)]
#[schema(value_type = String, format = Binary)]
#[allow(dead_code)] // documents the body; the handler reads it as bytes
pub struct WasmComponent(Vec<u8>);

/// A plugin's name in a path.
#[derive(Debug, utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)] // documents the path; handlers read it with `Path<String>`
struct PluginName {
    /// Lowercase letters, digits and hyphens.
    plugin: String,
}

/// An organization's slug in a path.
#[derive(Debug, utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)] // documents the path; handlers read it with `Path<String>`
struct OrgSlug {
    slug: String,
}

/// The limits the caller's organization's plugins run under.
#[utoipa::path(get, path = "/plugin-limits", tag = "plugins",
    responses((status = 200, description = "Effective limits and the organization's own overrides", body = LimitsView)))]
async fn show_limits(State(app): State<Arc<App>>, caller: Caller) -> ApiResult<Json<LimitsView>> {
    let org = app.provisioning.org(Some(caller.org_id)).await?;
    let own = plugins::limits(&app.api_store, caller.org_id).await?;
    let overrides: Value =
        own.and_then(|json| serde_json::from_str(&json).ok()).unwrap_or_else(|| Value::Object(Default::default()));
    Ok(Json(LimitsView { effective: org.limits, overrides }))
}

async fn org_by_slug(app: &App, caller: &Caller, slug: &str) -> ApiResult<i64> {
    caller.require(Permission::ManagePluginLimits)?;
    let org =
        crate::store::orgs::by_slug(&app.api_store, slug).await?.ok_or_else(|| ApiError::not_found("organization"))?;
    Ok(org.id)
}

/// Sets an organization's overrides (the fields that differ from the defaults), which its
/// subtree inherits. Platform administrators only.
#[utoipa::path(put, path = "/orgs/{slug}/plugin-limits", tag = "plugins", params(OrgSlug),
    request_body(content = PluginLimits, description = "Any of the fields"),
    responses((status = 200, description = "The organization's limits now", body = LimitsView)))]
async fn put_limits(
    State(app): State<Arc<App>>,
    caller: Caller,
    Path(slug): Path<String>,
    Json(overrides): Json<Value>,
) -> ApiResult<Json<LimitsView>> {
    let org_id = org_by_slug(&app, &caller, &slug).await?;
    let text = overrides.to_string();
    // Checked against the defaults; the effective limits are checked again when loaded.
    app.plugins
        .default_limits()
        .with_override(&text)
        .map_err(|reason| ApiError::bad_request(ErrorCode::InvalidLimits, reason))?;
    plugins::set_limits(&app.api_store, org_id, Some(&text)).await?;
    crate::replicas::publish(&app, crate::replicas::Signal::Provisioning);
    let org = app.provisioning.org(Some(org_id)).await?;
    Ok(Json(LimitsView { effective: org.limits, overrides }))
}

/// Clears an organization's overrides: it runs under what it inherits.
#[utoipa::path(delete, path = "/orgs/{slug}/plugin-limits", tag = "plugins", params(OrgSlug),
    responses((status = 204, description = "Cleared")))]
async fn delete_limits(State(app): State<Arc<App>>, caller: Caller, Path(slug): Path<String>) -> ApiResult<StatusCode> {
    let org_id = org_by_slug(&app, &caller, &slug).await?;
    plugins::set_limits(&app.api_store, org_id, None).await?;
    crate::replicas::publish(&app, crate::replicas::Signal::Provisioning);
    Ok(StatusCode::NO_CONTENT)
}

/// The settings the caller's organization gives a plugin.
#[utoipa::path(get, path = "/plugin-config/{plugin}", tag = "plugins", params(PluginName),
    responses((status = 200, description = "Keys and values", body = BTreeMap<String, String>)))]
async fn show_config(
    State(app): State<Arc<App>>,
    caller: Caller,
    Path(plugin): Path<String>,
) -> ApiResult<Json<BTreeMap<String, String>>> {
    check_name(&plugin)?;
    let entries = plugins::config(&app.api_store, caller.org_id)
        .await?
        .into_iter()
        .filter(|(p, _, _)| *p == plugin)
        .map(|(_, k, v)| (k, v))
        .collect();
    Ok(Json(entries))
}

/// Most keys one organization may give one plugin, and their sizes.
const MAX_CONFIG_KEYS: usize = 64;
const MAX_CONFIG_VALUE_BYTES: usize = 4096;

/// Replaces the settings the caller's organization gives a plugin (the `config` of the WIT).
#[utoipa::path(put, path = "/plugin-config/{plugin}", tag = "plugins", params(PluginName),
    request_body = BTreeMap<String, String>,
    responses((status = 200, description = "The settings now", body = BTreeMap<String, String>)))]
async fn put_config(
    State(app): State<Arc<App>>,
    caller: Caller,
    Path(plugin): Path<String>,
    Json(config): Json<BTreeMap<String, String>>,
) -> ApiResult<Json<BTreeMap<String, String>>> {
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
    crate::replicas::publish(&app, crate::replicas::Signal::Provisioning);
    Ok(Json(config))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct UploadQuery {
    /// What presets call it: lowercase letters, digits and hyphens.
    name: String,
    /// A semantic version, e.g. `1.0.0`.
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

/// Uploads a component. It is compiled and checked before it is stored: one that is not a
/// component, implements neither world, or imports beyond `roost:plugin` is refused.
#[utoipa::path(post, path = "/plugins", tag = "plugins", params(UploadQuery),
    request_body(content((WasmComponent = "application/wasm"), (WasmComponent = "application/octet-stream"))),
    responses((status = 201, description = "Stored", body = PluginView)))]
async fn upload(
    State(app): State<Arc<App>>,
    caller: Caller,
    Query(query): Query<UploadQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<PluginView>)> {
    caller.require(Permission::ManageProvisioning)?;
    check_name(&query.name).map_err(|e| e.on_field("name"))?;
    check_version(&query.version).map_err(|e| e.on_field("version"))?;
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
            api_version: validated.loaded.api_version(),
            hash: &validated.hash,
            component: &body,
        },
    )
    .await
    .map_err(|e| match e {
        InsertError::Exists(..) => ApiError::conflict(ErrorCode::PluginExists, e.to_string()),
        InsertError::Other(e) => ApiError::from(e),
    })?;
    crate::replicas::publish(&app, crate::replicas::Signal::Provisioning);
    Ok((StatusCode::CREATED, Json(PluginView::new(&stored))))
}

/// The plugins the caller sees: its subtree's, and those of the organizations above it (which
/// its devices run and its presets may name).
#[utoipa::path(get, path = "/plugins", tag = "plugins", params(Page),
    responses((status = 200, description = "A page of plugins", body = ListResponse<PluginView>)))]
async fn list(
    State(app): State<Arc<App>>,
    caller: Caller,
    Query(page): Query<Page>,
) -> ApiResult<Json<ListResponse<PluginView>>> {
    let limit = page.limit()?;
    let after = page
        .cursor()?
        .map(|c| c.parse::<i64>())
        .transpose()
        .map_err(|_| ApiError::bad_request(ErrorCode::InvalidCursor, "cursor is not one this API returned"))?;
    let ancestors = plugins::org_path(&app.api_store, caller.org_id).await?;
    let rows = plugins::list(&app.api_store, &caller.scope, &ancestors, after, limit).await?;
    let last = rows.last().map(|r| r.id.to_string());
    Ok(Json(ListResponse::new(rows.iter().map(PluginView::new).collect(), limit, last)))
}

fn parse_id(id: &str) -> ApiResult<i64> {
    id.parse().map_err(|_| ApiError::not_found("plugin"))
}

/// A plugin's id in a path.
#[derive(Debug, utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)] // documents the path; handlers read it with `Path<String>`
struct PluginId {
    id: String,
}

#[utoipa::path(get, path = "/plugins/{id}", tag = "plugins", params(PluginId),
    responses((status = 200, description = "The plugin", body = PluginView)))]
async fn show(State(app): State<Arc<App>>, caller: Caller, Path(id): Path<String>) -> ApiResult<Json<PluginView>> {
    let ancestors = plugins::org_path(&app.api_store, caller.org_id).await?;
    let row = plugins::by_id(&app.api_store, &caller.scope, &ancestors, parse_id(&id)?)
        .await?
        .ok_or_else(|| ApiError::not_found("plugin"))?;
    Ok(Json(PluginView::new(&row)))
}

/// Deletes a plugin of the caller's subtree.
#[utoipa::path(delete, path = "/plugins/{id}", tag = "plugins", params(PluginId),
    responses((status = 204, description = "Deleted")))]
async fn remove(State(app): State<Arc<App>>, caller: Caller, Path(id): Path<String>) -> ApiResult<StatusCode> {
    caller.require(Permission::ManageProvisioning)?;
    if plugins::delete(&app.api_store, &caller.scope, parse_id(&id)?).await? {
        crate::replicas::publish(&app, crate::replicas::Signal::Provisioning);
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found("plugin"))
    }
}
