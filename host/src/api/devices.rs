//! Devices: the fleet, one device, its parameter tree, tags, faults, plugin logs and connection
//! requests.

use std::sync::Arc;

use axum::Extension;
use axum::extract::State;
use axum::http::StatusCode;

use super::extract::{Json, Path, Query};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::audit::AuditOrg;
use super::authenticate::Caller;
use super::error::{ApiError, ApiResult, ErrorCode};
use super::{ListResponse, Page, optional_timestamp, org_slugs, parse_timestamp, timestamp};
use crate::app::App;
use crate::cwmp::connection_request;
use crate::permissions::Permission;
use crate::provisioning::adapters;
use crate::store::devices::{self, After, Device, DeviceFilter, ParameterMatch, Sort, SortKey};
use crate::store::plugin_logs::{self, LogFilter, LogLevel};
use crate::store::{faults, now_millis, orgs, parameters};

pub fn router() -> OpenApiRouter<Arc<App>> {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(show, remove, change))
        .routes(routes!(parameters_of))
        .routes(routes!(faults_of))
        .routes(routes!(logs_of))
        .routes(routes!(add_tag, remove_tag))
        .routes(routes!(wake))
}

/// Loads a device the caller may see, or 404 (never 403: other tenants' ids are not confirmed).
pub async fn visible_device(app: &App, caller: &Caller, id: &str) -> ApiResult<Device> {
    devices::visible(&app.api_store, &caller.scope, id).await?.ok_or_else(|| ApiError::not_found("device"))
}

/// A device as lists and `GET /devices/{id}` show it. Times are RFC 3339, UTC.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeviceView {
    /// The CWMP device id, `OUI-ProductClass-SerialNumber` (URL-encode it in paths).
    pub id: String,
    pub oui: String,
    pub product_class: String,
    pub serial_number: String,
    pub manufacturer: String,
    pub software_version: String,
    pub hardware_version: String,
    /// `InternetGatewayDevice` (TR-098) or `Device` (TR-181).
    pub data_model: String,
    pub cwmp_version: String,
    /// The organization's slug; null while the device is pending.
    pub org: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<String>>,
    /// Informed within the grace its periodic interval earns: by default, no more than two
    /// intervals ago, or ten minutes (`[health]`).
    pub online: bool,
    /// When it counts as offline unless it informs again.
    pub offline_at: Option<String>,
    pub remote_address: String,
    pub parameter_key: String,
    /// The event codes of the last Inform.
    pub last_events: Vec<String>,
    pub registered_at: String,
    pub last_inform_at: Option<String>,
    pub last_boot_at: Option<String>,
    pub last_bootstrap_at: Option<String>,
    pub discovered_at: Option<String>,
    pub configured_at: Option<String>,
    pub discovery: DiscoveryView,
    pub connection_request: ConnectionRequestView,
}

/// How the device's parameter tree is read.
#[derive(Debug, Serialize, ToSchema)]
pub struct DiscoveryView {
    /// The GetParameterValues batch the firmware survives (0: the configured default).
    pub batch: i64,
    /// Sessions in a row that died during discovery.
    pub failed_sessions: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ConnectionRequestView {
    pub url: String,
    /// Whether Roost holds connection-request credentials for the device (never shown).
    pub credentials_set: bool,
    pub last_attempt_at: Option<String>,
    pub last_outcome: String,
    /// Where UDP connection requests reach the device through its NAT (TR-111), as its last
    /// signed STUN Binding Request proved; absent when none did.
    pub udp_address: Option<String>,
    pub udp_binding_at: Option<String>,
}

impl DeviceView {
    pub fn new(device: &Device, org_slug: Option<&str>, tags: Option<Vec<String>>) -> Self {
        Self {
            id: device.device_id.clone(),
            oui: device.oui.clone(),
            product_class: device.product_class.clone(),
            serial_number: device.serial_number.clone(),
            manufacturer: device.manufacturer.clone(),
            software_version: device.software_version.clone(),
            hardware_version: device.hardware_version.clone(),
            data_model: device.data_model.clone(),
            cwmp_version: device.cwmp_version.clone(),
            org: org_slug.map(str::to_owned),
            tags,
            online: device.is_online(now_millis()),
            offline_at: optional_timestamp(device.offline_at),
            remote_address: device.remote_address.clone(),
            parameter_key: device.parameter_key.clone(),
            last_events: device.last_events.split(',').filter(|e| !e.is_empty()).map(str::to_owned).collect(),
            registered_at: timestamp(device.registered_at),
            last_inform_at: optional_timestamp(device.last_inform_at),
            last_boot_at: optional_timestamp(device.last_boot_at),
            last_bootstrap_at: optional_timestamp(device.last_bootstrap_at),
            discovered_at: optional_timestamp(device.discovered_at),
            configured_at: optional_timestamp(device.configured_at),
            discovery: DiscoveryView { batch: device.discovery_batch, failed_sessions: device.discovery_failures },
            connection_request: ConnectionRequestView {
                url: device.connection_request_url.clone(),
                credentials_set: !device.connection_request_username.is_empty(),
                last_attempt_at: optional_timestamp(device.connection_request_at),
                last_outcome: device.connection_request_outcome.clone(),
                udp_address: Some(device.udp_connection_request_address.clone()).filter(|a| !a.is_empty()),
                udp_binding_at: optional_timestamp(device.udp_binding_at),
            },
        }
    }
}

/// A device in `GET /devices`: a [`DeviceView`] whose fields are those `fields=` asked for (all
/// when absent), so its schema requires none.
#[derive(Debug, Serialize)]
#[serde(transparent)]
pub struct DeviceListItem(serde_json::Map<String, Value>);

impl utoipa::PartialSchema for DeviceListItem {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        let mut schema = <DeviceView as utoipa::PartialSchema>::schema();
        if let utoipa::openapi::RefOr::T(utoipa::openapi::schema::Schema::Object(object)) = &mut schema {
            object.required.clear();
        }
        schema
    }
}

impl ToSchema for DeviceListItem {
    fn schemas(schemas: &mut Vec<(String, utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>)>) {
        <DeviceView as ToSchema>::schemas(schemas);
    }
}

/// `GET /devices/{id}`: the device, what is known about it, and its last events.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeviceDetail {
    #[serde(flatten)]
    pub device: DeviceView,
    /// Parameters stored for the device.
    pub parameter_count: i64,
    /// The vendor adapter that claimed the device; null when none did.
    pub adapter: Option<AdapterView>,
    /// The latest Informs' events, newest first.
    pub recent_events: Vec<InformEventsView>,
    /// The subscriber the device serves; null when it serves none.
    pub subscriber: Option<SubscriberRef>,
}

/// The subscriber a device serves, as its page names it.
#[derive(Debug, Serialize, ToSchema)]
pub struct SubscriberRef {
    pub id: i64,
    pub username: String,
    pub name: String,
    pub plan: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AdapterView {
    pub plugin: String,
    pub version: String,
    /// `platform` or `organization`: who installed the adapter.
    pub owner: String,
    pub family: String,
    pub score: u32,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct InformEventsView {
    pub codes: Vec<String>,
    pub command_keys: Vec<String>,
    pub received_at: String,
}

/// The query of `GET /devices`, read from its pairs: besides the named filters, any number of
/// `tag=…` (all must match), `param.<path>=<value>` (the stored value equals) and
/// `param_prefix.<path>=<prefix>` (the stored value starts with).
#[derive(Debug)]
struct ListQuery {
    filter: DeviceFilter,
    org: Option<String>,
    /// With `org`: its subtree (the default), or only its own devices.
    subtree: bool,
    online: Option<bool>,
    sort: Sort,
    fields: Option<Vec<String>>,
    page: Page,
}

impl Default for ListQuery {
    fn default() -> Self {
        Self {
            filter: DeviceFilter::default(),
            org: None,
            subtree: true,
            online: None,
            sort: Sort::default(),
            fields: None,
            page: Page::default(),
        }
    }
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
                "manufacturer" => query.filter.manufacturer = Some(value),
                "hardware_version" => query.filter.hardware_version = Some(value),
                "data_model" => query.filter.data_model = Some(value),
                "pending" => {
                    query.filter.pending =
                        value.parse().map_err(|_| bad(format!("pending is true or false, got {value:?}")))?
                }
                "subtree" => {
                    query.subtree =
                        value.parse().map_err(|_| bad(format!("subtree is true or false, got {value:?}")))?
                }
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

/// The fleet the caller may see, filtered, sorted and paged. Besides the named parameters, any
/// number of `param.<path>=<value>` (the stored value equals) and `param_prefix.<path>=<prefix>`
/// (it starts with), and `tag` more than once (all must match).
#[utoipa::path(get, path = "/devices", tag = "devices",
    params(
        ("serial_number" = Option<String>, Query, description = "Equals"),
        ("oui" = Option<String>, Query, description = "Equals"),
        ("product_class" = Option<String>, Query, description = "Equals (also as `model`)"),
        ("software_version" = Option<String>, Query, description = "Equals"),
        ("manufacturer" = Option<String>, Query, description = "Equals"),
        ("hardware_version" = Option<String>, Query, description = "Equals"),
        ("data_model" = Option<String>, Query, description = "Equals: `tr098` or `tr181`"),
        ("pending" = Option<bool>, Query, description = "Only devices no organization has claimed (seen by those who may claim)"),
        ("subtree" = Option<bool>, Query, description = "With `org`: its subtree (true, the default) or only its own devices"),
        ("last_inform_after" = Option<String>, Query, format = DateTime, description = "RFC 3339"),
        ("last_inform_before" = Option<String>, Query, format = DateTime, description = "RFC 3339"),
        ("tag" = Option<String>, Query, description = "Has this tag; repeat for several"),
        ("org" = Option<String>, Query, description = "In this organization's subtree (slug)"),
        ("online" = Option<bool>, Query, description = "Online (informed within the grace its periodic interval earns), or not"),
        ("sort" = Option<String>, Query, description = "`id`, `serial_number`, `last_inform_at` or `registered_at`, after `-` for descending"),
        ("fields" = Option<String>, Query, description = "Comma-separated fields of each device to return"),
        Page,
    ),
    responses((status = 200, description = "A page of devices", body = ListResponse<DeviceListItem>)))]
async fn list(
    State(app): State<Arc<App>>,
    caller: Caller,
    Query(pairs): Query<Vec<(String, String)>>,
) -> ApiResult<Json<ListResponse<DeviceListItem>>> {
    let mut q = ListQuery::parse(pairs)?;
    let limit = q.page.limit()?;
    if let Some(slug) = &q.org {
        let org = super::orgs::visible(&app, &caller, slug).await?;
        q.filter.orgs = Some(if q.subtree { orgs::subtree(&app.api_store, org.id).await? } else { vec![org.id] });
    }
    q.filter.online_at = q.online.map(|online| devices::OnlineAt { online, at: now_millis() });
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
    let last = rows
        .last()
        .map(|d| serde_json::to_string(&After { value: q.sort.key.value_of(d), id: d.id.0 }).unwrap_or_default());
    let mut items = Vec::with_capacity(rows.len());
    for d in &rows {
        let org = d.org_id.and_then(|o| slugs.get(&o)).map(String::as_str);
        let view = DeviceView::new(d, org, Some(tags.remove(&d.id).unwrap_or_default()));
        let Value::Object(mut object) = serde_json::to_value(view).map_err(anyhow::Error::from)? else {
            return Err(anyhow::anyhow!("a device view is not an object").into());
        };
        if let Some(fields) = &q.fields {
            object.retain(|key, _| fields.iter().any(|f| f == key));
        }
        items.push(DeviceListItem(object));
    }
    Ok(Json(ListResponse::new(items, limit, last)))
}

#[utoipa::path(get, path = "/devices/{id}", tag = "devices", params(DeviceId),
    responses((status = 200, description = "The device", body = DeviceDetail)))]
async fn show(State(app): State<Arc<App>>, caller: Caller, Path(id): Path<String>) -> ApiResult<Json<DeviceDetail>> {
    let device = visible_device(&app, &caller, &id).await?;
    let tags = devices::tags(&app.api_store, device.id).await?;
    let slugs = org_slugs(&app).await?;
    let view = DeviceView::new(&device, device.org_id.and_then(|o| slugs.get(&o)).map(String::as_str), Some(tags));
    let events = devices::recent_events(&app.api_store, device.id, 20).await?;
    let parameter_count = parameters::count(&app.api_store, device.id).await?;
    let org = app.provisioning.org(device.org_id).await?;
    let adapter = adapters::for_device(&app.provisioning, &device, &org, None).await?.map(|chosen| AdapterView {
        owner: if chosen.plugin.org_slug == orgs::PLATFORM_SLUG { "platform" } else { "organization" }.into(),
        plugin: chosen.plugin.name,
        version: chosen.plugin.version,
        family: chosen.family,
        score: chosen.score,
    });
    let recent_events = events
        .iter()
        .map(|e| InformEventsView {
            codes: e.codes.split(',').map(str::to_owned).collect(),
            command_keys: e.command_keys.split(',').map(str::to_owned).collect(),
            received_at: timestamp(e.received_at),
        })
        .collect();
    let subscriber = match device.subscriber_id {
        Some(id) => crate::store::subscribers::by_id(app.api_store.db(), id).await?.map(|s| SubscriberRef {
            id: s.id,
            username: s.username,
            name: s.name,
            plan: s.plan,
        }),
        None => None,
    };
    Ok(Json(DeviceDetail { device: view, parameter_count, adapter, recent_events, subscriber }))
}

/// A device's id in a path.
#[derive(Debug, utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)] // documents the path; handlers read it with `Path<String>`
pub struct DeviceId {
    /// The CWMP device id, URL-encoded.
    id: String,
}

#[utoipa::path(delete, path = "/devices/{id}", tag = "devices", params(DeviceId),
    responses((status = 204, description = "The device and all it holds are deleted")))]
async fn remove(
    State(app): State<Arc<App>>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<(Extension<AuditOrg>, StatusCode)> {
    caller.require(Permission::ConfigureDevices)?;
    let device = visible_device(&app, &caller, &id).await?;
    devices::delete(&app.api_store, device.id).await?;
    crate::replicas::publish(&app, crate::replicas::Signal::DeviceDeleted(device.device_id.clone()));
    Ok((audited_under(&device), StatusCode::NO_CONTENT))
}

/// A change to a device is logged under the device's organization, whoever made it (a platform
/// administrator, a parent's admin): its tenant sees it in its own audit log.
pub(super) fn audited_under(device: &Device) -> Extension<AuditOrg> {
    Extension(AuditOrg(device.org_id))
}

/// `PATCH /devices/{id}`: what may change.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct DeviceChange {
    /// Move the device (with its tasks, faults and events) to this organization, at or below
    /// the caller's. A pending device moved is claimed.
    org: String,
}

/// Moves a device to another organization of the caller's subtree; records `device.moved`.
#[utoipa::path(patch, path = "/devices/{id}", tag = "devices", params(DeviceId), request_body = DeviceChange,
    responses((status = 200, description = "The device, where it is now", body = DeviceView)))]
async fn change(
    State(app): State<Arc<App>>,
    caller: Caller,
    Path(id): Path<String>,
    Json(request): Json<DeviceChange>,
) -> ApiResult<(Extension<AuditOrg>, Json<DeviceView>)> {
    caller.require(Permission::ClaimDevices)?;
    let device = visible_device(&app, &caller, &id).await?;
    let to = super::orgs::named_or_own(&app, &caller, Some(&request.org)).await?;
    let slugs = org_slugs(&app).await?;
    let from_slug = device.org_id.and_then(|id| slugs.get(&id)).map(String::as_str);
    if device.org_id != Some(to.id) {
        let moved = devices::move_to(
            &app.api_store,
            &device,
            devices::Move { to_org_id: to.id, to_slug: &to.slug, from_slug, actor: &caller.actor() },
        )
        .await?;
        if !moved {
            return Err(ApiError::conflict(
                ErrorCode::DeviceMoved,
                "the device moved while this request was on its way; read it again",
            ));
        }
    }
    let moved = devices::by_pk(&app.api_store, device.id).await?.ok_or_else(|| ApiError::not_found("device"))?;
    let tags = devices::tags(&app.api_store, device.id).await?;
    // Logged where the device was: the tenant it left sees who took it (the one it joined gets
    // the event).
    Ok((audited_under(&device), Json(DeviceView::new(&moved, Some(&to.slug), Some(tags)))))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct ParameterQuery {
    /// Only paths that start with this.
    #[serde(default)]
    prefix: String,
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u64>,
    cursor: Option<String>,
}

/// A stored parameter or object of a device's tree.
#[derive(Debug, Serialize, ToSchema)]
pub struct ParameterView {
    pub path: String,
    /// Whether the path is an object (ends with `.`).
    pub object: bool,
    pub writable: bool,
    /// Empty for secrets, whatever the device reported.
    pub value: Option<String>,
    /// The xsd type; null for objects.
    #[serde(rename = "type")]
    pub value_type: Option<String>,
    pub refreshed_at: String,
    pub secret: bool,
    /// For a secret: whether Roost holds (sealed) the value it set.
    pub remembered: bool,
}

/// A fault: a CWMP fault, or a provisioning or task failure.
#[derive(Debug, Serialize, ToSchema)]
pub struct FaultView {
    pub id: String,
    pub device_id: String,
    pub task_id: Option<String>,
    /// Where it arose: `task`, `provisioning`, `discovery`, `credentials`, `preset:<name>`,
    /// `adapter:<name>`.
    pub channel: String,
    /// `area.reason`: `cwmp.9003` (the CPE's CWMP fault), `cwmp.no_response`,
    /// `task.expired`, `provisioning.not_converging`, `plugin.timeout`, … (`roost::fault_code`).
    pub code: String,
    pub message: String,
    /// `cpe` (the device's CWMP faults and answers that are none), `plugin`, or `provisioning`
    /// (tasks, presets, discovery, declarations).
    pub kind: crate::fault_code::FaultKind,
    /// What else is known, as recorded (of the latest occurrence).
    #[schema(value_type = Option<Object>)]
    pub detail: Option<Value>,
    /// When it first happened.
    pub created_at: String,
    /// How often it happened: the same fault again (same device, channel and code, outside a
    /// task) counts here instead of adding a fault.
    pub occurrences: i64,
    pub last_seen_at: String,
}

impl FaultView {
    pub fn new(fault: &faults::FaultRow, device_id: &str) -> Self {
        Self {
            id: fault.id.to_string(),
            device_id: device_id.to_owned(),
            task_id: fault.task_id.map(|t| t.to_string()),
            channel: fault.channel.clone(),
            code: fault.code.clone(),
            message: fault.message.clone(),
            kind: crate::fault_code::FaultKind::of(&fault.code),
            detail: fault.detail.as_deref().and_then(|d| serde_json::from_str::<Value>(d).ok()),
            created_at: timestamp(fault.created_at),
            occurrences: fault.occurrences,
            last_seen_at: timestamp(fault.last_seen_at),
        }
    }
}

#[utoipa::path(get, path = "/devices/{id}/parameters", tag = "devices", params(DeviceId, ParameterQuery),
    responses((status = 200, description = "A page of the device's parameters, by path", body = ListResponse<ParameterView>)))]
async fn parameters_of(
    State(app): State<Arc<App>>,
    caller: Caller,
    Path(id): Path<String>,
    Query(q): Query<ParameterQuery>,
) -> ApiResult<Json<ListResponse<ParameterView>>> {
    let page = Page { limit: q.limit, cursor: q.cursor };
    let limit = page.limit()?;
    let device = visible_device(&app, &caller, &id).await?;
    let rows = parameters::list(&app.api_store, device.id, &q.prefix, page.cursor()?.as_deref(), limit).await?;
    let last = rows.last().map(|p| p.path.clone());
    let items = rows
        .into_iter()
        .map(|p| ParameterView {
            secret: roost_cwmp::is_secret_parameter(&p.path) && !p.is_object,
            object: p.is_object,
            writable: p.writable,
            value: p.value,
            value_type: (!p.is_object).then_some(p.value_type),
            refreshed_at: timestamp(p.refreshed_at),
            remembered: p.remembered,
            path: p.path,
        })
        .collect();
    Ok(Json(ListResponse::new(items, limit, last)))
}

#[utoipa::path(get, path = "/devices/{id}/faults", tag = "devices", params(DeviceId, Page),
    responses((status = 200, description = "A page of the device's faults, oldest first", body = ListResponse<FaultView>)))]
async fn faults_of(
    State(app): State<Arc<App>>,
    caller: Caller,
    Path(id): Path<String>,
    Query(page): Query<Page>,
) -> ApiResult<Json<ListResponse<FaultView>>> {
    let limit = page.limit()?;
    let device = visible_device(&app, &caller, &id).await?;
    let rows = faults::list_for_device(&app.api_store, device.id, page.id_cursor()?, limit).await?;
    let last = rows.last().map(|f| f.id.to_string());
    let items = rows.iter().map(|f| FaultView::new(f, &device.device_id)).collect();
    Ok(Json(ListResponse::new(items, limit, last)))
}

/// One line a plugin logged while provisioning the device, or one the host wrote about a run
/// (`roost: dropped …`).
#[derive(Debug, Serialize, ToSchema)]
pub struct LogLineView {
    pub id: String,
    /// The provision whose run it was, by name (an adapter's lines, logged while the provision
    /// called it, are the provision's run's).
    pub plugin: String,
    /// The preset whose run it was.
    pub preset: String,
    pub level: LogLevel,
    pub message: String,
    /// When the session that ran the plugin started: lines of one session share it.
    pub session_at: String,
    pub time: String,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct LogQuery {
    #[serde(flatten)]
    #[param(ignore)] // documented by `Page` itself
    page: Page,
    /// Lines of this plugin only.
    plugin: Option<String>,
    /// Lines of this preset's runs only.
    preset: Option<String>,
    /// This level and above.
    level: Option<LogLevel>,
    /// Lines written at or after this RFC 3339 time.
    since: Option<String>,
    /// Lines written before this RFC 3339 time.
    until: Option<String>,
}

/// What plugins logged while provisioning the device, newest first. The server keeps a bounded
/// number of lines per device (`[plugins] device_log_lines`), dropping the oldest.
#[utoipa::path(get, path = "/devices/{id}/logs", tag = "devices", params(DeviceId, LogQuery, Page),
    responses((status = 200, description = "A page of the device's plugin log lines, newest first", body = ListResponse<LogLineView>)))]
async fn logs_of(
    State(app): State<Arc<App>>,
    caller: Caller,
    Path(id): Path<String>,
    Query(query): Query<LogQuery>,
) -> ApiResult<Json<ListResponse<LogLineView>>> {
    let limit = query.page.limit()?;
    let filter = LogFilter {
        plugin: query.plugin,
        preset: query.preset,
        min_level: query.level,
        since: query.since.as_deref().map(|v| parse_timestamp("since", v)).transpose()?,
        until: query.until.as_deref().map(|v| parse_timestamp("until", v)).transpose()?,
    };
    let device = visible_device(&app, &caller, &id).await?;
    let rows = plugin_logs::list(&app.api_store, device.id, &filter, query.page.id_cursor()?, limit).await?;
    let last = rows.last().map(|r| r.id.to_string());
    let items = rows
        .into_iter()
        .map(|row| LogLineView {
            id: row.id.to_string(),
            level: row.level,
            plugin: row.plugin,
            preset: row.preset,
            message: row.message,
            session_at: timestamp(row.session_at),
            time: timestamp(row.created_at),
        })
        .collect();
    Ok(Json(ListResponse::new(items, limit, last)))
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

/// A device's id and one of its tags in a path.
#[derive(Debug, utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)] // documents the path; handlers read it with `Path<(String, String)>`
pub struct DeviceTag {
    /// The CWMP device id, URL-encoded.
    id: String,
    /// 1-128 letters, digits and `- _ . : /`.
    tag: String,
}

#[utoipa::path(put, path = "/devices/{id}/tags/{tag}", tag = "devices", params(DeviceTag),
    responses((status = 204, description = "The device has the tag")))]
async fn add_tag(
    State(app): State<Arc<App>>,
    caller: Caller,
    Path((id, tag)): Path<(String, String)>,
) -> ApiResult<(Extension<AuditOrg>, StatusCode)> {
    let device = tag_device(&app, &caller, &id, &tag).await?;
    Ok((audited_under(&device), StatusCode::NO_CONTENT))
}

/// Tags a device the caller may configure (also the NBI's); the device.
pub(super) async fn tag_device(app: &App, caller: &Caller, id: &str, tag: &str) -> ApiResult<Device> {
    caller.require(Permission::ConfigureDevices)?;
    check_tag(tag)?;
    let device = visible_device(app, caller, id).await?;
    devices::add_tag(&app.api_store, device.id, tag).await?;
    Ok(device)
}

#[utoipa::path(delete, path = "/devices/{id}/tags/{tag}", tag = "devices", params(DeviceTag),
    responses((status = 204, description = "The tag is removed")))]
async fn remove_tag(
    State(app): State<Arc<App>>,
    caller: Caller,
    Path((id, tag)): Path<(String, String)>,
) -> ApiResult<(Extension<AuditOrg>, StatusCode)> {
    let device = untag_device(&app, &caller, &id, &tag).await?;
    Ok((audited_under(&device), StatusCode::NO_CONTENT))
}

/// Removes a device's tag (also the NBI's); a tag the device does not have is "not found".
pub(super) async fn untag_device(app: &App, caller: &Caller, id: &str, tag: &str) -> ApiResult<Device> {
    caller.require(Permission::ConfigureDevices)?;
    let device = visible_device(app, caller, id).await?;
    if devices::remove_tag(&app.api_store, device.id, tag).await? {
        Ok(device)
    } else {
        Err(ApiError::not_found("tag"))
    }
}

/// Asks the device to open a session now (a connection request).
#[utoipa::path(post, path = "/devices/{id}/connection-request", tag = "devices", params(DeviceId),
    responses(
        (status = 200, description = "The device accepted", body = connection_request::Outcome),
        (status = 202, description = "Sent over UDP through the device's NAT binding (TR-111): UDP has no answer, the session that follows is the proof", body = connection_request::Outcome),
        (status = 502, description = "The device did not accept; the outcome says why", body = connection_request::Outcome),
    ))]
async fn wake(
    State(app): State<Arc<App>>,
    Extension(slot): Extension<crate::api::ApiSlot>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<(StatusCode, Extension<AuditOrg>, Json<connection_request::Outcome>)> {
    caller.require(Permission::OperateDevices)?;
    let device = visible_device(&app, &caller, &id).await?;
    slot.release();
    let outcome = connection_request::send(&app, &device).await?;
    let status = match outcome {
        connection_request::Outcome::Accepted => StatusCode::OK,
        connection_request::Outcome::UdpSent { .. } => StatusCode::ACCEPTED,
        _ => StatusCode::BAD_GATEWAY,
    };
    Ok((status, audited_under(&device), Json(outcome)))
}
