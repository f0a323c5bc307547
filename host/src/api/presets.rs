//! Presets: `GET /presets`, `GET/PUT/DELETE /presets/{name}`, per organization (the caller's).
//!
//! A preset says when a provision runs for a device: on which Inform events, for which tags, under
//! which precondition on its parameters, at most how often, and with which arguments. Presets run
//! in weight order (then name). The provision is a built-in one or a provision plugin visible to
//! the organization; a preset naming anything else is refused when it is written, not when a
//! device's session finds out.

use std::sync::Arc;

use axum::Extension;
use axum::extract::State;
use axum::http::StatusCode;
use roost_params::pattern::Pattern;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::audit::AuditOrg;
use super::authenticate::Caller;
use super::error::{ApiError, ApiResult, ErrorCode};
use super::extract::{Json, Path, Query};
use super::plugins::check_name;
use super::timestamp;
use crate::app::App;
use crate::permissions::Permission;
use crate::provisioning::presets::{BUILT_IN, ConditionOp, PresetDefinition};
use crate::store::plugins;
use crate::store::presets::{self, PresetRow};

pub fn router() -> OpenApiRouter<Arc<App>> {
    OpenApiRouter::new().routes(routes!(list)).routes(routes!(show, put, remove))
}

/// A preset's name in a path.
#[derive(Debug, utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)] // documents the path; handlers read it with `Path<String>`
pub struct PresetName {
    /// Letters, digits, `-` and `_`.
    name: String,
}

/// A preset of the caller's organization: its definition's fields beside these.
#[derive(Debug, Serialize)]
pub struct PresetView {
    pub name: String,
    #[serde(flatten)]
    pub definition: PresetDefinition,
    pub updated_at: String,
}

// The definition refuses unknown fields as a request body, so its schema forbids additional
// properties; a preset's view is that schema with `name` and `updated_at` added.
impl utoipa::PartialSchema for PresetView {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{AdditionalProperties, Object, Schema, Type};
        use utoipa::openapi::{RefOr, schema::ObjectBuilder};
        let mut schema = <PresetDefinition as utoipa::PartialSchema>::schema();
        if let RefOr::T(Schema::Object(object)) = &mut schema {
            let object: &mut Object = object;
            object.additional_properties = None::<Box<AdditionalProperties<Schema>>>;
            object.description = Some("A preset of the caller's organization.".into());
            for name in ["name", "updated_at"] {
                object.properties.insert(name.into(), ObjectBuilder::new().schema_type(Type::String).into());
                object.required.push(name.into());
            }
        }
        schema
    }
}

impl ToSchema for PresetView {
    fn schemas(schemas: &mut Vec<(String, utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>)>) {
        <PresetDefinition as ToSchema>::schemas(schemas);
    }
}

/// Every preset of the organization, in one page.
#[derive(Debug, Serialize, ToSchema)]
pub struct PresetList {
    pub items: Vec<PresetView>,
    /// Always null: presets come in one page.
    pub next_cursor: Option<String>,
}

fn invalid(detail: impl Into<String>) -> ApiError {
    ApiError::bad_request(ErrorCode::InvalidPreset, detail)
}

fn arg<'a>(d: &'a PresetDefinition, name: &str) -> ApiResult<&'a str> {
    d.args.get(name).map(String::as_str).ok_or_else(|| invalid(format!("{} needs the argument `{name}`", d.provision)))
}

fn only_args(d: &PresetDefinition, allowed: &[&str]) -> ApiResult<()> {
    match d.args.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(extra) => {
            Err(invalid(format!("{} takes no argument `{extra}` (it takes: {})", d.provision, allowed.join(", "))))
        }
        None => Ok(()),
    }
}

fn check_pattern(path: &str) -> ApiResult<Pattern> {
    Pattern::parse(path).map_err(|e| invalid(e.to_string()))
}

/// Checks everything but whether a plugin provision exists.
pub fn validate(d: &PresetDefinition) -> ApiResult<()> {
    for event in &d.events {
        if event.trim().is_empty() || event.len() > 64 {
            return Err(invalid(format!("event code {event:?} must be 1 to 64 characters")).on_field("events"));
        }
    }
    for tag in &d.tags {
        roost_params::check_tag(tag.strip_prefix('-').unwrap_or(tag))
            .map_err(|e| invalid(e.to_string()).on_field("tags"))?;
    }
    for condition in &d.precondition {
        check_pattern(&condition.path).map_err(|e| e.on_field("precondition"))?;
        let needs_value = matches!(condition.op, ConditionOp::Eq | ConditionOp::Ne | ConditionOp::Prefix);
        if needs_value != condition.value.is_some() {
            return Err(invalid(format!(
                "condition on {}: {:?} {} a value",
                condition.path,
                condition.op,
                if needs_value { "needs" } else { "takes no" }
            ))
            .on_field("precondition"));
        }
    }
    if let Some(schedule) = &d.schedule
        && !(60..=30 * 86_400).contains(&schedule.interval_seconds)
    {
        return Err(invalid("schedule.interval_seconds must be between 60 and 2592000 (30 days)").on_field("schedule"));
    }
    for (name, value) in &d.args {
        if name.is_empty() || name.len() > 64 || value.len() > 4096 {
            return Err(invalid("argument names have 1 to 64 bytes, values at most 4096").on_field("args"));
        }
    }
    match d.provision.as_str() {
        plugin if !BUILT_IN.contains(&plugin) => check_name(plugin).map_err(|e| e.on_field("provision")),
        _ => check_arguments(d).map_err(|e| e.on_field("args")),
    }
}

/// A built-in provision's arguments.
fn check_arguments(d: &PresetDefinition) -> ApiResult<()> {
    match d.provision.as_str() {
        "refresh" => {
            only_args(d, &["path", "max-age"])?;
            check_pattern(arg(d, "path")?)?;
            if let Some(age) = d.args.get("max-age") {
                age.parse::<u64>().map_err(|_| invalid("refresh: max-age is a number of seconds"))?;
            }
        }
        "value" => {
            only_args(d, &["path", "value"])?;
            let pattern = check_pattern(arg(d, "path")?)?;
            if pattern.is_object() || pattern.names_instances() {
                return Err(invalid("value: path must name parameters, not objects"));
            }
            arg(d, "value")?;
        }
        "tag" => {
            only_args(d, &["add", "remove"])?;
            if d.args.is_empty() {
                return Err(invalid("tag needs `add` or `remove`"));
            }
            for tag in d.args.values() {
                roost_params::check_tag(tag).map_err(|e| invalid(e.to_string()))?;
            }
        }
        "reboot" | "reset" | "stun" => only_args(d, &[])?,
        "download" => {
            only_args(d, &["url", "file-type"])?;
            let url = arg(d, "url")?;
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(invalid("download: url must be http:// or https://"));
            }
        }
        _ => {}
    }
    Ok(())
}

fn view(row: &PresetRow) -> ApiResult<PresetView> {
    let definition = serde_json::from_str::<PresetDefinition>(&row.definition)
        .map_err(|e| anyhow::anyhow!("preset {} is stored unreadable: {e}", row.name))?;
    Ok(PresetView { name: row.name.clone(), definition, updated_at: timestamp(row.updated_at) })
}

/// Whose presets a request is about: `?org=`, an organization at or below the caller's.
#[derive(Debug, Default, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PresetOwner {
    /// The organization's slug; the caller's own when absent.
    org: Option<String>,
}

impl PresetOwner {
    /// The organization's id; another tenant's is "not found".
    async fn resolve(&self, app: &App, caller: &Caller) -> ApiResult<i64> {
        match &self.org {
            None => Ok(caller.org_id),
            Some(slug) => Ok(super::orgs::visible(app, caller, slug).await?.id),
        }
    }
}

pub(super) async fn list_presets(app: &App, org_id: i64) -> ApiResult<PresetList> {
    let rows = presets::list(&app.api_store, org_id).await?;
    Ok(PresetList { items: rows.iter().map(view).collect::<ApiResult<_>>()?, next_cursor: None })
}

pub(super) async fn show_preset(app: &App, org_id: i64, name: &str) -> ApiResult<PresetView> {
    let row = presets::get(&app.api_store, org_id, name).await?.ok_or_else(|| ApiError::not_found("preset"))?;
    view(&row)
}

/// Creates or replaces a preset of `org_id` (the caller may manage its presets); `true` when it
/// is new. Its provision must be one the organization's devices can run.
pub(super) async fn put_preset(
    app: &App,
    org_id: i64,
    name: &str,
    definition: PresetDefinition,
) -> ApiResult<(bool, PresetView)> {
    check_name(name).map_err(|e| e.on_field("name"))?;
    validate(&definition)?;
    if !BUILT_IN.contains(&definition.provision.as_str()) {
        let path = plugins::org_path(&app.api_store, org_id).await?;
        match plugins::resolve(&app.api_store, &path, &definition.provision).await? {
            Some(plugin) if plugin.world == "provision" => {}
            Some(plugin) => {
                return Err(ApiError::bad_request(
                    ErrorCode::UnknownProvision,
                    format!("{} is an {} plugin, not a provision", plugin.name, plugin.world),
                )
                .on_field("provision"));
            }
            None => {
                return Err(ApiError::bad_request(
                    ErrorCode::UnknownProvision,
                    format!(
                        "no provision named {:?}: upload it (POST /api/v1/plugins) or use a built-in one ({})",
                        definition.provision,
                        BUILT_IN.join(", ")
                    ),
                )
                .on_field("provision"));
            }
        }
    }
    let text = serde_json::to_string(&definition).map_err(|e| ApiError::from(anyhow::anyhow!(e)))?;
    let created = presets::put(&app.api_store, org_id, name, definition.weight.into(), &text).await?;
    crate::replicas::publish(app, crate::replicas::Signal::Provisioning);
    Ok((created, show_preset(app, org_id, name).await?))
}

pub(super) async fn remove_preset(app: &App, org_id: i64, name: &str) -> ApiResult<()> {
    if presets::delete(&app.api_store, org_id, name).await? {
        crate::replicas::publish(app, crate::replicas::Signal::Provisioning);
        Ok(())
    } else {
        Err(ApiError::not_found("preset"))
    }
}

/// The presets of the caller's organization, or of one below it (`?org=`).
#[utoipa::path(get, path = "/presets", tag = "presets", params(PresetOwner),
    responses((status = 200, description = "The organization's presets", body = PresetList)))]
async fn list(
    State(app): State<Arc<App>>,
    caller: Caller,
    Query(owner): Query<PresetOwner>,
) -> ApiResult<Json<PresetList>> {
    let org_id = owner.resolve(&app, &caller).await?;
    Ok(Json(list_presets(&app, org_id).await?))
}

#[utoipa::path(get, path = "/presets/{name}", tag = "presets", params(PresetName, PresetOwner),
    responses((status = 200, description = "The preset", body = PresetView)))]
async fn show(
    State(app): State<Arc<App>>,
    caller: Caller,
    Path(name): Path<String>,
    Query(owner): Query<PresetOwner>,
) -> ApiResult<Json<PresetView>> {
    let org_id = owner.resolve(&app, &caller).await?;
    Ok(Json(show_preset(&app, org_id, &name).await?))
}

/// Creates or replaces a preset of the caller's organization, or of one below it (`?org=`). Its
/// provision must be built in or a provision plugin that organization's devices run.
#[utoipa::path(put, path = "/presets/{name}", tag = "presets", params(PresetName, PresetOwner),
    request_body = PresetDefinition,
    responses(
        (status = 201, description = "Created", body = PresetView),
        (status = 200, description = "Replaced", body = PresetView),
    ))]
async fn put(
    State(app): State<Arc<App>>,
    caller: Caller,
    Path(name): Path<String>,
    Query(owner): Query<PresetOwner>,
    Json(definition): Json<PresetDefinition>,
) -> ApiResult<(StatusCode, Extension<AuditOrg>, Json<PresetView>)> {
    caller.require(Permission::ManageProvisioning)?;
    let org_id = owner.resolve(&app, &caller).await?;
    let (created, view) = put_preset(&app, org_id, &name, definition).await?;
    let status = if created { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Extension(AuditOrg(Some(org_id))), Json(view)))
}

#[utoipa::path(delete, path = "/presets/{name}", tag = "presets", params(PresetName, PresetOwner),
    responses((status = 204, description = "Deleted")))]
async fn remove(
    State(app): State<Arc<App>>,
    caller: Caller,
    Path(name): Path<String>,
    Query(owner): Query<PresetOwner>,
) -> ApiResult<(Extension<AuditOrg>, StatusCode)> {
    caller.require(Permission::ManageProvisioning)?;
    let org_id = owner.resolve(&app, &caller).await?;
    remove_preset(&app, org_id, &name).await?;
    Ok((Extension(AuditOrg(Some(org_id))), StatusCode::NO_CONTENT))
}
