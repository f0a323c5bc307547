//! Firmware rollouts over REST: `POST /rollouts` takes a stored image and a target, resolves the
//! target to devices at once (a rollout's devices are fixed when it is made), and the runner
//! (`rollouts::runner`) does the rest. Progress per batch and per device at `GET
//! /rollouts/{id}`; `pause`, `resume`, `abort`, `rollback` change its state.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Extension;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::audit::AuditOrg;
use super::authenticate::Caller;
use super::error::{ApiError, ApiResult, ErrorCode};
use super::extract::{Json, Path, Query};
use super::{JobDevicesQuery, ListResponse, Page, optional_timestamp, timestamp};
use crate::app::App;
use crate::permissions::Permission;
use crate::rollouts::{DeviceState, RolloutState, Window};
use crate::store::devices::Device;
use crate::store::devices::filter::{Comparison, Field, Filter, Scalar, Test};
use crate::store::events::EventType;
use crate::store::files::FileRow;
use crate::store::orgs;
use crate::store::rollouts::{self, Member, NewRollout, RolloutDevice, RolloutRow, Transition};
use crate::store::{devices, files};

pub fn router() -> OpenApiRouter<Arc<App>> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(show))
        .routes(routes!(pause))
        .routes(routes!(resume))
        .routes(routes!(abort))
        .routes(routes!(rollback))
}

/// The most devices one rollout takes.
pub const MAX_DEVICES: u64 = 100_000;

/// Which devices a rollout is for; every condition given must hold. Left out: devices already
/// running the image's version, devices of another product class or OUI than the image says it
/// is for, and devices in another rollout that has not finished (one rollout at a time).
#[derive(Debug, Default, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Target {
    /// The organization (slug) whose devices, and those of the organizations below it; the
    /// caller's own when absent. The rollout belongs to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub org: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub product_class: Option<String>,
    /// Only devices running this version now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub software_version: Option<String>,
    /// Devices carrying every one of these tags.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// A device query as the NBI takes it (docs/NBI.md), without `$regex`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub query: Option<Value>,
}

/// A daily window in which devices start (those under way finish whenever they do).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WindowRequest {
    /// `HH:MM`.
    pub start: String,
    /// `HH:MM`; before `start`, the window runs over midnight.
    pub end: String,
    /// IANA name; the organization's (`PATCH /orgs/{slug}` `time_zone`) when absent.
    pub time_zone: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateRollout {
    /// The image: a stored file's id or name (`GET /files`), a firmware image with a `version`.
    #[schema(value_type = String)]
    pub file: Value,
    #[serde(default)]
    pub target: Target,
    /// Devices upgraded first, on their own; any failure among them pauses the rollout.
    #[serde(default)]
    pub canary: u64,
    /// Devices per batch after the canary.
    pub batch_size: u64,
    /// Seconds between one batch settling and the next starting.
    #[serde(default)]
    pub batch_interval_s: u64,
    /// The fraction (0 to 1) of a batch's devices that may fail before the rollout pauses.
    #[serde(default = "default_threshold")]
    pub failure_threshold: f64,
    /// Seconds a device has from its start to pass its gate (downloaded, rebooted, new version,
    /// WAN up).
    #[serde(default = "default_gate_timeout")]
    pub gate_timeout_s: u64,
    pub window: Option<WindowRequest>,
    /// Make it paused: its devices are fixed and shown, and nothing starts until it is resumed.
    #[serde(default)]
    pub paused: bool,
}

fn default_threshold() -> f64 {
    0.1
}

fn default_gate_timeout() -> u64 {
    1800
}

/// A batch's devices by state.
#[derive(Debug, Default, Serialize, ToSchema)]
pub struct BatchView {
    /// 0 is the canary.
    pub batch: i64,
    pub devices: u64,
    pub waiting: u64,
    pub upgrading: u64,
    pub passed: u64,
    pub failed: u64,
    pub skipped: u64,
    pub reverting: u64,
    pub reverted: u64,
    pub revert_failed: u64,
}

/// One device of a rollout.
#[derive(Debug, Serialize, ToSchema)]
pub struct RolloutDeviceView {
    pub device_id: String,
    pub batch: i64,
    /// `waiting`, `upgrading`, `passed`, `failed`, `skipped`, `reverting`, `reverted`,
    /// `revert_failed`.
    pub state: String,
    /// What the gate of an upgrading or reverting device waits for: `download`, `boot`, `wan`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
    /// The version it ran when the rollout was made.
    pub from_version: String,
    pub software_version: String,
    /// Whether a stored image of `from_version` was found for it (to roll back with).
    pub rollback_image: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub task_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deadline: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
    /// Why it passed, failed or was skipped; while its WAN is read again, why it was down.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl RolloutDeviceView {
    fn new(device: &RolloutDevice) -> Self {
        Self {
            device_id: device.device_id.clone(),
            batch: device.batch,
            state: device.state.clone(),
            step: device.step.clone(),
            from_version: device.from_version.clone(),
            software_version: device.software_version.clone(),
            rollback_image: device.rollback_file_id.is_some(),
            task_id: device.task_id.map(|id| id.to_string()),
            started_at: optional_timestamp(device.started_at),
            deadline: optional_timestamp(device.deadline),
            finished_at: optional_timestamp(device.finished_at),
            reason: device.reason.clone(),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct WindowView {
    pub start: String,
    pub end: String,
    pub time_zone: String,
}

/// A rollout as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct RolloutView {
    pub id: String,
    /// The organization's slug.
    pub org: String,
    /// `running`, `paused`, `completed`, `aborted`, `rolling_back`, `rolled_back`.
    pub state: String,
    /// Why it paused (by itself, or by whom).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub paused_reason: Option<String>,
    /// The image's file id (null once the file was deleted).
    pub file: Option<String>,
    /// The SoftwareVersion the image installs.
    pub version: String,
    #[schema(value_type = Object)]
    pub target: Value,
    pub canary: i64,
    pub batch_size: i64,
    pub batch_interval_s: i64,
    pub failure_threshold: f64,
    pub gate_timeout_s: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub window: Option<WindowView>,
    /// The batch devices start from now (0: the canary).
    pub batch: i64,
    pub batches: i64,
    pub devices: u64,
    /// All devices by state.
    pub totals: HashMap<String, u64>,
    /// Each batch by state (included in `GET /rollouts/{id}`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub progress: Option<Vec<BatchView>>,
    pub created_by: String,
    pub created_at: String,
    pub updated_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
}

/// A rollout with a page of its devices.
#[derive(Debug, Serialize, ToSchema)]
pub struct RolloutDetail {
    #[serde(flatten)]
    pub rollout: RolloutView,
    /// A page of its devices in rollout order (`device_state`, `cursor`, `limit`).
    pub device_page: ListResponse<RolloutDeviceView>,
}

async fn view(app: &App, rollout: &RolloutRow, with_batches: bool) -> ApiResult<RolloutView> {
    let counts = rollouts::counts(&app.api_store, rollout.id).await?;
    let mut totals: HashMap<String, u64> = HashMap::new();
    let mut batches: Vec<BatchView> = Vec::new();
    for (batch, state, n) in &counts {
        *totals.entry(state.as_str().to_owned()).or_default() += n;
        let view = match batches.last_mut() {
            Some(view) if view.batch == *batch => view,
            _ => {
                batches.push(BatchView { batch: *batch, ..BatchView::default() });
                let Some(view) = batches.last_mut() else { continue };
                view
            }
        };
        view.devices += n;
        *match state {
            DeviceState::Waiting => &mut view.waiting,
            DeviceState::Upgrading => &mut view.upgrading,
            DeviceState::Passed => &mut view.passed,
            DeviceState::Failed => &mut view.failed,
            DeviceState::Skipped => &mut view.skipped,
            DeviceState::Reverting => &mut view.reverting,
            DeviceState::Reverted => &mut view.reverted,
            DeviceState::RevertFailed => &mut view.revert_failed,
        } += n;
    }
    Ok(RolloutView {
        id: rollout.id.to_string(),
        org: super::org_slug(app, rollout.org_id).await?,
        state: rollout.state.clone(),
        paused_reason: rollout.paused_reason.clone(),
        file: rollout.file_id.map(|id| id.to_string()),
        version: rollout.version.clone(),
        target: serde_json::from_str(&rollout.target).unwrap_or(Value::Null),
        canary: rollout.canary,
        batch_size: rollout.batch_size,
        batch_interval_s: rollout.batch_interval_s,
        failure_threshold: rollout.failure_threshold,
        gate_timeout_s: rollout.gate_timeout_s,
        window: rollout.window().map(|w| WindowView {
            start: Window::text(w.start),
            end: Window::text(w.end),
            time_zone: rollout.time_zone.clone(),
        }),
        batch: rollout.batch,
        batches: rollout.batches,
        devices: counts.iter().map(|(_, _, n)| n).sum(),
        totals,
        progress: with_batches.then_some(batches),
        created_by: rollout.created_by.clone(),
        created_at: timestamp(rollout.created_at),
        updated_at: timestamp(rollout.updated_at),
        finished_at: optional_timestamp(rollout.finished_at),
    })
}

fn invalid(detail: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, ErrorCode::InvalidRollout, detail)
}

/// What a new rollout's numbers must be.
fn check(request: &CreateRollout) -> Result<Option<Window>, String> {
    if !(1..=10_000).contains(&request.batch_size) {
        return Err("batch_size: 1 to 10000".into());
    }
    if request.canary > 1000 {
        return Err("canary: 0 to 1000 devices".into());
    }
    if !(0.0..=1.0).contains(&request.failure_threshold) {
        return Err("failure_threshold: a fraction from 0 to 1".into());
    }
    if !(10..=7 * 24 * 3600).contains(&request.gate_timeout_s) {
        return Err("gate_timeout_s: 10 seconds to 7 days".into());
    }
    if request.batch_interval_s > 7 * 24 * 3600 {
        return Err("batch_interval_s: at most 7 days".into());
    }
    request.window.as_ref().map(|w| Window::parse(&w.start, &w.end)).transpose()
}

/// The target's conditions as a device filter (the organization is the scope's).
fn target_filter(target: &Target, file: &FileRow) -> Result<Filter, String> {
    let text = |column: &'static str, value: &str| {
        Filter::Test(Field::Text(column), Test::Compare(Comparison::Eq, Scalar::Text(value.to_owned())))
    };
    let mut all = Vec::new();
    for (column, value) in [("product_class", &target.product_class), ("software_version", &target.software_version)] {
        if let Some(value) = value {
            all.push(text(column, value));
        }
    }
    for tag in &target.tags {
        all.push(Filter::Test(Field::Tags, Test::Compare(Comparison::Eq, Scalar::Text(tag.clone()))));
    }
    if let Some(query) = &target.query {
        let parsed = super::nbi::query::parse(query).map_err(|e| format!("target.query: {e}"))?;
        if !crate::store::devices::filter::regexes(&parsed).is_empty() {
            return Err("target.query: $regex is not taken in a rollout's target".into());
        }
        all.push(parsed);
    }
    // An image for one model never goes to another.
    if let Some(class) = &file.product_class {
        all.push(text("product_class", class));
    }
    if let Some(oui) = &file.oui {
        all.push(text("oui", oui));
    }
    Ok(Filter::And(all))
}

/// The stored image a device rolls back with: of the version it runs, for its product class
/// and OUI (or for any), of the rollout's organization or one above, the nearest one's first.
fn rollback_image(images: &[FileRow], ancestry: &[i64], device: &Device) -> Option<i64> {
    rollback_image_of(images, ancestry, (&device.software_version, &device.product_class, &device.oui))
}

fn rollback_image_of(images: &[FileRow], ancestry: &[i64], (version, class, oui): (&str, &str, &str)) -> Option<i64> {
    let fits = |file: &&FileRow| {
        file.version.as_deref() == Some(version)
            && file.product_class.as_deref().is_none_or(|c| c == class)
            && file.oui.as_deref().is_none_or(|o| o == oui)
    };
    ancestry.iter().find_map(|org| images.iter().filter(|f| f.org_id == *org).find(fits).map(|f| f.id))
}

/// Starts a rollout: its devices are the target's now, in device order, the canary first.
/// 422 for a target that matches nothing, a batch size of 0, an image without a version.
#[utoipa::path(post, path = "/rollouts", tag = "firmware", request_body = CreateRollout,
    responses((status = 201, description = "Started", body = RolloutView)))]
async fn create(
    State(app): State<Arc<App>>,
    caller: Caller,
    Json(request): Json<CreateRollout>,
) -> ApiResult<(StatusCode, Extension<AuditOrg>, Json<RolloutView>)> {
    caller.require(Permission::ManageRollouts)?;
    let window = check(&request).map_err(invalid)?;
    let org = super::orgs::named_or_own(&app, &caller, request.target.org.as_deref())
        .await
        .map_err(|e| e.on_field("target"))?;
    let ancestry = orgs::ancestry(&app.api_store, org.id).await?;
    let ancestor_ids: Vec<i64> = ancestry.iter().map(|o| o.id).collect();
    let file = find_file(&app, &caller, &request.file, &ancestor_ids).await?;
    let version = file.version.clone().filter(|_| file.file_type == crate::files::DEFAULT_FILE_TYPE).ok_or_else(|| {
        invalid(format!(
            "file: {} is not a firmware image with a version (upload it with file_type \"1 Firmware Upgrade Image\" and version)",
            file.name
        ))
    })?;
    let time_zone = match request.window.as_ref().and_then(|w| w.time_zone.clone()) {
        Some(zone) => {
            crate::rollouts::time_zone(&zone).map_err(|e| invalid(format!("window.time_zone: {e}")))?;
            zone
        }
        None => orgs::time_zone_of(&ancestry),
    };
    let filter = target_filter(&request.target, &file).map_err(invalid)?;
    let scope = caller.scope.within(orgs::subtree(&app.api_store, org.id).await?);
    let query =
        devices::DeviceQuery::new(Some(&filter), &[], app.api_store.backend(), 0, MAX_DEVICES + 1).map_err(invalid)?;
    let found = devices::find(&app.api_store, &scope, &query).await?;
    if found.len() as u64 > MAX_DEVICES {
        return Err(invalid(format!("the target matches more than {MAX_DEVICES} devices; split the rollout")));
    }
    let matched = found.len();
    let images = files::versioned_firmware(&app.api_store, &ancestor_ids).await?;
    let busy = rollouts::busy_devices(&app.api_store, None).await?;
    let members: Vec<Member> = found
        .iter()
        .map(|(device, _)| device)
        .filter(|device| device.software_version != version && !busy.contains(&device.id.0))
        .map(|device| Member {
            device_pk: device.id,
            from_version: device.software_version.clone(),
            rollback_file_id: rollback_image(&images, &ancestor_ids, device),
        })
        .collect();
    if members.is_empty() {
        return Err(invalid(if matched == 0 {
            "target: no device matches it".to_owned()
        } else {
            format!(
                "target: the {matched} devices it matches run {version} already or are in another unfinished rollout"
            )
        }));
    }
    let target = serde_json::to_string(&request.target).map_err(anyhow::Error::from)?;
    let rollout = rollouts::create(
        &app.api_store,
        NewRollout {
            org_id: org.id,
            file_id: file.id,
            version: &version,
            target: &target,
            canary: request.canary,
            batch_size: request.batch_size,
            batch_interval_s: request.batch_interval_s,
            failure_threshold: request.failure_threshold,
            gate_timeout_s: request.gate_timeout_s,
            window,
            time_zone: &time_zone,
            created_by: &caller.actor(),
            paused: request.paused,
        },
        &members,
    )
    .await?
    .ok_or_else(|| {
        ApiError::conflict(
            ErrorCode::RolloutState,
            "some of the target's devices joined another rollout meanwhile; make it again",
        )
    })?;
    Ok((StatusCode::CREATED, Extension(AuditOrg(Some(org.id))), Json(view(&app, &rollout, true).await?)))
}

/// The image a request names, by id or name, of the organization or one above it.
async fn find_file(app: &App, caller: &Caller, reference: &Value, orgs: &[i64]) -> ApiResult<FileRow> {
    let by_id = match reference {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.parse().ok(),
        _ => return Err(invalid("file: the id or the name of a stored file")),
    };
    let candidates = match (by_id, reference.as_str()) {
        (Some(id), _) => files::visible(&app.api_store, &caller.scope, id).await?.into_iter().collect(),
        (None, Some(name)) => files::list(&app.api_store, &caller.scope, Some(name), None, 100).await?,
        (None, None) => Vec::new(),
    };
    // The nearest organization's file of that name wins.
    orgs.iter()
        .find_map(|org| candidates.iter().find(|f| f.org_id == *org))
        .cloned()
        .ok_or_else(|| invalid(format!("file: no stored file {reference} of the organization or one above it")))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct ListQuery {
    #[serde(flatten)]
    #[param(ignore)] // documented by `Page` itself
    page: Page,
}

/// Rollouts of the caller's organizations, newest first.
#[utoipa::path(get, path = "/rollouts", tag = "firmware", params(ListQuery, Page),
    responses((status = 200, description = "A page of rollouts", body = ListResponse<RolloutView>)))]
async fn list(
    State(app): State<Arc<App>>,
    caller: Caller,
    Query(query): Query<ListQuery>,
) -> ApiResult<Json<ListResponse<RolloutView>>> {
    caller.require(Permission::ReadFleet)?;
    let limit = query.page.limit()?;
    let rows = rollouts::list(&app.api_store, &caller.scope, query.page.id_cursor()?, limit).await?;
    let mut items = Vec::with_capacity(rows.len());
    for row in &rows {
        items.push(view(&app, row, false).await?);
    }
    Ok(Json(ListResponse::new(items, limit, rows.last().map(|r| r.id.to_string()))))
}

/// A rollout's id in a path.
#[derive(Debug, utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)] // documents the path; handlers read it with `Path<String>`
struct RolloutId {
    id: String,
}

async fn visible(app: &App, caller: &Caller, id: &str) -> ApiResult<RolloutRow> {
    let id: i64 = id.parse().map_err(|_| ApiError::not_found("rollout"))?;
    rollouts::visible(&app.api_store, &caller.scope, id).await?.ok_or_else(|| ApiError::not_found("rollout"))
}

/// A rollout's progress: its state, each batch by state, and a page of its devices.
#[utoipa::path(get, path = "/rollouts/{id}", tag = "firmware", params(RolloutId, JobDevicesQuery, Page),
    responses((status = 200, description = "The rollout", body = RolloutDetail)))]
async fn show(
    State(app): State<Arc<App>>,
    caller: Caller,
    Path(id): Path<String>,
    Query(query): Query<JobDevicesQuery>,
) -> ApiResult<Json<RolloutDetail>> {
    caller.require(Permission::ReadFleet)?;
    let rollout = visible(&app, &caller, &id).await?;
    let states = query.states(DeviceState::parse)?;
    let limit = query.page.limit()?;
    let page = rollouts::devices(&app.api_store, rollout.id, &states, query.page.id_cursor()?, limit).await?;
    let last = page.last().map(|d| d.position.to_string());
    let items = page.iter().map(RolloutDeviceView::new).collect();
    Ok(Json(RolloutDetail {
        rollout: view(&app, &rollout, true).await?,
        device_page: ListResponse::new(items, limit, last),
    }))
}

/// A state change an operator asks for.
struct Action {
    from: &'static [RolloutState],
    to: RolloutState,
    event: EventType,
    /// What the devices not started become (those whose download was never sent included).
    unstarted: Option<(DeviceState, &'static str)>,
}

async fn act(
    app: &App,
    caller: &Caller,
    id: &str,
    action: Action,
) -> ApiResult<(Extension<AuditOrg>, Json<RolloutView>)> {
    caller.require(Permission::ManageRollouts)?;
    let rollout = visible(app, caller, id).await?;
    let reason = (action.to == RolloutState::Paused).then(|| format!("paused by {}", caller.actor()));
    let change = Transition {
        from: action.from,
        to: action.to,
        reason: reason.as_deref(),
        event: Some(action.event),
        finished: false,
        acknowledge_failures: action.to == RolloutState::Running,
        unstarted: action.unstarted,
    };
    if !rollouts::transition(&app.api_store, &rollout, change).await? {
        let allowed: Vec<&str> = action.from.iter().map(|s| s.as_str()).collect();
        return Err(ApiError::conflict(
            ErrorCode::RolloutState,
            format!("the rollout is {}; this takes one that is {}", rollout.state, allowed.join(" or ")),
        ));
    }
    let rollout = rollouts::by_id(&app.api_store, rollout.id).await?.ok_or_else(|| ApiError::not_found("rollout"))?;
    Ok((Extension(AuditOrg(Some(rollout.org_id))), Json(view(app, &rollout, true).await?)))
}

/// Stops starting devices; those under way finish their gates.
#[utoipa::path(post, path = "/rollouts/{id}/pause", tag = "firmware", params(RolloutId),
    responses((status = 200, description = "The rollout as it is now", body = RolloutView)))]
async fn pause(
    State(app): State<Arc<App>>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<(Extension<AuditOrg>, Json<RolloutView>)> {
    let action = Action {
        from: &[RolloutState::Running],
        to: RolloutState::Paused,
        event: EventType::RolloutPaused,
        unstarted: None,
    };
    act(&app, &caller, &id, action).await
}

/// Starts devices again; the failures of the current batch so far no longer count toward its
/// threshold.
#[utoipa::path(post, path = "/rollouts/{id}/resume", tag = "firmware", params(RolloutId),
    responses((status = 200, description = "The rollout as it is now", body = RolloutView)))]
async fn resume(
    State(app): State<Arc<App>>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<(Extension<AuditOrg>, Json<RolloutView>)> {
    let action = Action {
        from: &[RolloutState::Paused],
        to: RolloutState::Running,
        event: EventType::RolloutResumed,
        unstarted: None,
    };
    act(&app, &caller, &id, action).await
}

/// Ends a rollout: no device starts again; those under way finish their gates.
#[utoipa::path(post, path = "/rollouts/{id}/abort", tag = "firmware", params(RolloutId),
    responses((status = 200, description = "The rollout as it is now", body = RolloutView)))]
async fn abort(
    State(app): State<Arc<App>>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<(Extension<AuditOrg>, Json<RolloutView>)> {
    let action = Action {
        from: &[RolloutState::Running, RolloutState::Paused],
        to: RolloutState::Aborted,
        event: EventType::RolloutAborted,
        unstarted: Some((DeviceState::Skipped, "the rollout was aborted before it started")),
    };
    act(&app, &caller, &id, action).await
}

/// Puts every device the rollout changed back on the version it had, with its stored image
/// (found when the rollout was made), under the organization's download cap and outside any
/// window: a rollback is the way out of a bad night.
#[utoipa::path(post, path = "/rollouts/{id}/rollback", tag = "firmware", params(RolloutId),
    responses((status = 200, description = "The rollout as it is now", body = RolloutView)))]
async fn rollback(
    State(app): State<Arc<App>>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<(Extension<AuditOrg>, Json<RolloutView>)> {
    let action = Action {
        from: &[RolloutState::Running, RolloutState::Paused, RolloutState::Completed, RolloutState::Aborted],
        to: RolloutState::RollingBack,
        event: EventType::RolloutRollingBack,
        unstarted: Some((DeviceState::Skipped, "the rollout was rolled back before it started")),
    };
    act(&app, &caller, &id, action).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(id: i64, org_id: i64, version: &str, class: Option<&str>) -> FileRow {
        FileRow {
            id,
            org_id,
            name: format!("f{id}"),
            file_type: crate::files::DEFAULT_FILE_TYPE.into(),
            oui: None,
            product_class: class.map(str::to_owned),
            version: Some(version.into()),
            size: 1,
            sha256: String::new(),
            storage_key: String::new(),
            created_at: 0,
        }
    }

    #[test]
    fn a_rollback_image_is_of_the_devices_version_and_model_nearest_first() {
        let images = [
            file(1, 1, "V1", None),
            file(2, 5, "V1", Some("F660")),
            file(3, 5, "V1", Some("HG8245H")),
            file(4, 5, "V2", Some("HG8245H")),
        ];
        let device = ("V1", "HG8245H", "00E0FC");
        assert_eq!(rollback_image_of(&images, &[5, 1], device), Some(3));
        assert_eq!(rollback_image_of(&images[..2], &[5, 1], device), Some(1));
        assert_eq!(rollback_image_of(&images, &[5, 1], ("V0", "HG8245H", "00E0FC")), None);
    }

    #[test]
    fn a_rollouts_numbers_are_checked() {
        let request = |batch_size, threshold: f64| CreateRollout {
            file: Value::Null,
            target: Target::default(),
            canary: 0,
            batch_size,
            batch_interval_s: 0,
            failure_threshold: threshold,
            gate_timeout_s: 600,
            window: None,
            paused: false,
        };
        assert!(check(&request(0, 0.1)).unwrap_err().contains("batch_size"));
        assert!(check(&request(10, 1.5)).unwrap_err().contains("failure_threshold"));
        assert_eq!(check(&request(10, 0.1)), Ok(None));
    }
}
