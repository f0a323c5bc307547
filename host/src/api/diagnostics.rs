//! Diagnostics of one device: ping, trace route, UDP echo and speed tests (TR-143 download and
//! upload, against Roost's own endpoints unless URLs are given), each a run with its history.
//! A request is checked and the device's data model must have the diagnostic before anything is
//! queued; the device is woken at once, and `?wait=SECONDS` waits for the results.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::actions::WaitQuery;
use super::audit::AuditOrg;
use super::authenticate::Caller;
use super::devices::{DeviceId, visible_device};
use super::error::{ApiError, ApiResult, ErrorCode};
use super::extract::{Json, Path, Query};
use super::tasks::IdempotencyRequest;
use super::{ListResponse, Page, optional_timestamp, timestamp};
use crate::app::App;
use crate::diagnostics::RunStatus;
use crate::permissions::Permission;
use crate::store::devices::Device;
use crate::store::diagnostics::{self, NewRun, Run};
use crate::store::{orgs, parameters, tasks};
use crate::tasks::{DiagnosticKind, TaskSpec};

pub fn router() -> OpenApiRouter<Arc<App>> {
    OpenApiRouter::new()
        .routes(routes!(ping))
        .routes(routes!(traceroute))
        .routes(routes!(udp_echo))
        .routes(routes!(speed_test))
        .routes(routes!(list))
}

/// One diagnostic run.
#[derive(Debug, Serialize, ToSchema)]
pub struct DiagnosticView {
    pub id: String,
    pub device_id: String,
    /// `ping`, `traceroute`, `download`, `upload` or `udp-echo`.
    pub kind: String,
    pub status: RunStatus,
    /// The inputs (a `startDiagnostic` task body).
    #[schema(value_type = Object)]
    pub request: Value,
    /// `DiagnosticsState` as the device last reported it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// The results in Roost's canonical names (`success_count`, `average_ms`, `test_bytes`, …).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub results: Option<Value>,
    /// The diagnostic object's parameters as the device's data model names them.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub raw: Option<Value>,
    /// Normalized figures: `throughput_bps`; `rtt_min_ms`, `rtt_avg_ms`, `rtt_max_ms`,
    /// `loss_percent`; `hops`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub summary: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fault: Option<DiagnosticFault>,
    pub created_at: String,
    pub requested_at: Option<String>,
    pub completed_at: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DiagnosticFault {
    pub code: Option<String>,
    pub message: Option<String>,
}

impl DiagnosticView {
    fn new(run: &Run, device_id: &str) -> Self {
        let json = |text: &Option<String>| text.as_deref().and_then(|t| serde_json::from_str::<Value>(t).ok());
        Self {
            id: run.id.to_string(),
            device_id: device_id.to_owned(),
            kind: run.kind.clone(),
            status: run.status,
            request: serde_json::from_str(&run.request).unwrap_or(Value::Null),
            state: run.state.clone(),
            results: json(&run.results),
            raw: json(&run.raw),
            summary: json(&run.summary),
            fault: (run.fault_code.is_some() || run.fault_message.is_some())
                .then(|| DiagnosticFault { code: run.fault_code.clone(), message: run.fault_message.clone() }),
            created_at: timestamp(run.created_at),
            requested_at: optional_timestamp(run.requested_at),
            completed_at: optional_timestamp(run.completed_at),
        }
    }
}

/// What a diagnostic request queued: its runs (two for a speed test of both directions).
#[derive(Debug, Serialize, ToSchema)]
pub struct DiagnosticRuns {
    pub runs: Vec<DiagnosticView>,
}

fn invalid(detail: impl Into<String>) -> ApiError {
    ApiError::bad_request(ErrorCode::InvalidTask, detail)
}

/// Checks, creates the runs, wakes the device and waits as asked.
async fn run(
    app: &Arc<App>,
    slot: &crate::api::ApiSlot,
    caller: &Caller,
    id: &str,
    diagnose: Diagnose,
    wait: &WaitQuery,
    headers: &HeaderMap,
) -> ApiResult<Response> {
    let wait = wait.duration()?;
    let device = visible_device(app, caller, id).await?;
    let idempotency = IdempotencyRequest::from_headers(headers, caller, &device.device_id, &diagnose.digest)?;
    // A retry is answered before the checks of the device's state: its runs may be running
    // (which would refuse a new one) or over.
    if let Some(replay) = replay(app, &device, idempotency.as_ref()).await? {
        return Ok(replay);
    }
    let mut runs = Vec::with_capacity(diagnose.bodies.len());
    for (body, token_hash) in diagnose.bodies {
        let (_, spec) = TaskSpec::parse(&body).map_err(|mut error| {
            // The task's members by the names of this API's bodies.
            // The task's members by the names of this API's bodies; a URL may be one the body
            // never held (the organization's test server), so it names no member.
            error.field = error.field.and_then(|field| match field.as_str() {
                "timeoutMs" => Some("timeout_ms".to_owned()),
                "maxHops" => Some("max_hops".to_owned()),
                "length" => Some("size".to_owned()),
                "url" => None,
                _ => Some(field),
            });
            super::tasks::refused(error)
        })?;
        let TaskSpec::StartDiagnostic(request) = spec else { return Err(invalid("not a diagnostic")) };
        check_supported(app, &device, request.kind()).await?;
        if let Some(open) = diagnostics::open_conflicting(&app.api_store, device.id, request.kind()).await? {
            // The open run may be this key's own, created since the look above (a double
            // submit): the retry gets it, not a refusal.
            if let Some(replay) = replay(app, &device, idempotency.as_ref()).await? {
                return Ok(replay);
            }
            return Err(ApiError::conflict(
                ErrorCode::InvalidDiagnostic,
                format!(
                    "diagnostic: the device is still running {} {} (run {}); wait for it or its timeout",
                    if open.kind == "upload" || open.kind == "download" { "a speed test's" } else { "a" },
                    open.kind,
                    open.id
                ),
            ));
        }
        runs.push(NewRun { kind: request.kind(), body: request.body(), token_hash });
    }
    let Some(created) =
        diagnostics::create(&app.api_store, &device, runs, idempotency.as_ref().map(|r| r.key())).await?
    else {
        // A concurrent retry with the same key created them first.
        return replay(app, &device, idempotency.as_ref())
            .await?
            .ok_or_else(|| anyhow::anyhow!("an idempotency key vanished while it was used").into());
    };
    slot.release();
    if let Err(error) = crate::cwmp::connection_request::send(app, &device).await {
        tracing::warn!(device = %device.device_id, "waking the device for a diagnostic: {error:#}");
    }
    let deadline = tokio::time::Instant::now() + wait;
    let mut current = created;
    loop {
        let mut now = Vec::with_capacity(current.len());
        for run in &current {
            now.push(diagnostics::by_id(&app.api_store, run.id).await?.unwrap_or_else(|| run.clone()));
        }
        current = now;
        if current.iter().all(|r| r.status.is_over()) || tokio::time::Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(answer(current, &device, false))
}

/// A diagnostic request: the `startDiagnostic` bodies of its runs (with their endpoint tokens'
/// hashes), and what an `Idempotency-Key` sent with it is checked against (the request as
/// given: a speed test's bodies hold fresh tokens each time).
struct Diagnose {
    bodies: Vec<(Value, Option<String>)>,
    digest: Value,
}

impl Diagnose {
    /// A request of one run, its digest tagged with the action: a task POST of the same body
    /// under the same key is another request.
    fn one(action: &str, body: Value) -> Self {
        Diagnose { digest: json!({ action: body }), bodies: vec![(body, None)] }
    }
}

/// The answer to a retry: the runs an earlier request with this key created, as they are now;
/// `None` when there is no key or it is new; an error when it came with another request.
async fn replay(app: &App, device: &Device, request: Option<&IdempotencyRequest>) -> ApiResult<Option<Response>> {
    let Some(request) = request else { return Ok(None) };
    match tasks::key_use(&app.api_store, request.key()).await? {
        None => Ok(None),
        Some(tasks::KeyUse::OtherRequest) => Err(IdempotencyRequest::reused()),
        Some(tasks::KeyUse::Task(task_id)) => {
            let runs = diagnostics::started_by(&app.api_store, device.id, task_id).await?;
            Ok((!runs.is_empty()).then(|| answer(runs, device, true)))
        }
    }
}

/// 200 when every run is over, 202 while one is not; a replay says so in a header.
fn answer(runs: Vec<Run>, device: &Device, replayed: bool) -> Response {
    let status = if runs.iter().all(|r| r.status.is_over()) { StatusCode::OK } else { StatusCode::ACCEPTED };
    let views = runs.iter().map(|r| DiagnosticView::new(r, &device.device_id)).collect();
    let mut response = (status, Json(DiagnosticRuns { runs: views })).into_response();
    if replayed {
        response.headers_mut().insert("idempotent-replayed", axum::http::HeaderValue::from_static("true"));
    }
    response.extensions_mut().insert(AuditOrg(device.org_id));
    response
}

/// A diagnostic the device's data model has no object for is refused before anything is queued.
async fn check_supported(app: &App, device: &Device, kind: DiagnosticKind) -> ApiResult<()> {
    let model = device.model().ok_or_else(|| {
        ApiError::conflict(ErrorCode::InvalidDiagnostic, "the device has not shown its data model yet")
    })?;
    let unsupported = || {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            ErrorCode::InvalidDiagnostic,
            format!("diagnostic: the device ({}) has no {} diagnostic", model.name(), kind.as_str()),
        )
    };
    let object = crate::diagnostics::object(model, kind).ok_or_else(unsupported)?;
    if parameters::list(&app.api_store, device.id, object, None, 1).await?.is_empty() {
        return Err(unsupported());
    }
    Ok(())
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PingRequest {
    /// A host name or an IP address.
    host: String,
    /// Repetitions (default 10).
    count: Option<u32>,
    /// Timeout of each, milliseconds (default 5,000).
    timeout_ms: Option<u32>,
    /// Payload bytes.
    size: Option<u32>,
}

#[utoipa::path(post, path = "/devices/{id}/ping", tag = "diagnostics", params(DeviceId, WaitQuery),
    request_body = PingRequest,
    responses(
        (status = 202, description = "Queued and the device woken", body = DiagnosticRuns),
        (status = 200, description = "Done within the wait", body = DiagnosticRuns),
    ))]
async fn ping(
    State(app): State<Arc<App>>,
    axum::Extension(slot): axum::Extension<crate::api::ApiSlot>,
    caller: Caller,
    Path(id): Path<String>,
    Query(wait): Query<WaitQuery>,
    headers: HeaderMap,
    Json(request): Json<PingRequest>,
) -> ApiResult<Response> {
    caller.require(Permission::OperateDevices)?;
    let body = json!({"name": "startDiagnostic", "diagnostic": "ping", "host": request.host,
        "count": request.count, "timeoutMs": request.timeout_ms, "size": request.size});
    run(&app, &slot, &caller, &id, Diagnose::one("ping", body), &wait, &headers).await
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TracerouteRequest {
    host: String,
    max_hops: Option<u32>,
    timeout_ms: Option<u32>,
}

#[utoipa::path(post, path = "/devices/{id}/traceroute", tag = "diagnostics", params(DeviceId, WaitQuery),
    request_body = TracerouteRequest,
    responses(
        (status = 202, description = "Queued and the device woken", body = DiagnosticRuns),
        (status = 200, description = "Done within the wait", body = DiagnosticRuns),
    ))]
async fn traceroute(
    State(app): State<Arc<App>>,
    axum::Extension(slot): axum::Extension<crate::api::ApiSlot>,
    caller: Caller,
    Path(id): Path<String>,
    Query(wait): Query<WaitQuery>,
    headers: HeaderMap,
    Json(request): Json<TracerouteRequest>,
) -> ApiResult<Response> {
    caller.require(Permission::OperateDevices)?;
    let body = json!({"name": "startDiagnostic", "diagnostic": "traceroute", "host": request.host,
        "maxHops": request.max_hops, "timeoutMs": request.timeout_ms});
    run(&app, &slot, &caller, &id, Diagnose::one("traceroute", body), &wait, &headers).await
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UdpEchoRequest {
    /// The UDP echo server: a host name or an IP address.
    host: String,
    port: u16,
    count: Option<u32>,
}

/// A TR-143 UDP echo test, where the device's data model has one (TR-181).
#[utoipa::path(post, path = "/devices/{id}/udp-echo", tag = "diagnostics", params(DeviceId, WaitQuery),
    request_body = UdpEchoRequest,
    responses(
        (status = 202, description = "Queued and the device woken", body = DiagnosticRuns),
        (status = 200, description = "Done within the wait", body = DiagnosticRuns),
    ))]
async fn udp_echo(
    State(app): State<Arc<App>>,
    axum::Extension(slot): axum::Extension<crate::api::ApiSlot>,
    caller: Caller,
    Path(id): Path<String>,
    Query(wait): Query<WaitQuery>,
    headers: HeaderMap,
    Json(request): Json<UdpEchoRequest>,
) -> ApiResult<Response> {
    caller.require(Permission::OperateDevices)?;
    let body = json!({"name": "startDiagnostic", "diagnostic": "udp-echo", "host": request.host,
        "port": request.port, "count": request.count});
    run(&app, &slot, &caller, &id, Diagnose::one("udpEcho", body), &wait, &headers).await
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Download,
    Upload,
    /// The download, then the upload.
    #[default]
    Both,
}

#[derive(Debug, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SpeedTestRequest {
    #[serde(default)]
    direction: Direction,
    /// Bytes to move each way (default 10 MiB).
    size: Option<u64>,
    /// An external server's download URL instead of the organization's test server or Roost's
    /// own endpoint (http, https or ftp; at most 256 characters).
    download_url: Option<String>,
    /// An external server's upload URL instead of the organization's test server or Roost's own
    /// endpoint.
    upload_url: Option<String>,
}

/// A TR-143 speed test: the device downloads from and uploads to Roost's own endpoints on the
/// CWMP port (a test token each, good while the run is open), or to the URLs given, or to the
/// test server of its organization (`speed_test_server`, or its nearest ancestor's).
#[utoipa::path(post, path = "/devices/{id}/speed-test", tag = "diagnostics", params(DeviceId, WaitQuery),
    request_body = SpeedTestRequest,
    responses(
        (status = 202, description = "Queued and the device woken", body = DiagnosticRuns),
        (status = 200, description = "Done within the wait", body = DiagnosticRuns),
    ))]
async fn speed_test(
    State(app): State<Arc<App>>,
    axum::Extension(slot): axum::Extension<crate::api::ApiSlot>,
    caller: Caller,
    Path(id): Path<String>,
    Query(wait): Query<WaitQuery>,
    headers: HeaderMap,
    Json(request): Json<SpeedTestRequest>,
) -> ApiResult<Response> {
    caller.require(Permission::OperateDevices)?;
    let digest = json!({"speedTest": serde_json::to_value(&request).map_err(anyhow::Error::from)?});
    let device = visible_device(&app, &caller, &id).await?;
    let max = app.config.diagnostics.max_transfer_bytes;
    let size = request.size.unwrap_or(crate::tasks::intent::DEFAULT_TRANSFER_BYTES);
    if size == 0 || size > max {
        return Err(invalid(format!("size must be 1 to {max} bytes")).on_field("size"));
    }
    for (field, url) in [("download_url", &request.download_url), ("upload_url", &request.upload_url)] {
        if let Some(url) = url {
            crate::diagnostics::check_transfer_url(url)
                .map_err(|why| invalid(format!("{field}: {why}")).on_field(field))?;
        }
    }
    // A URL given wins; then the test server of the device's organization (or its nearest
    // ancestor's); then Roost's own endpoint.
    let server = match device.org_id {
        Some(org) => orgs::speed_test_server_for(&app.api_store, org).await?,
        None => None,
    };
    let download_url = request.download_url.or_else(|| server.as_ref().and_then(|s| s.download_url.clone()));
    let upload_url = request.upload_url.or_else(|| server.and_then(|s| s.upload_url));
    let own = (request.direction != Direction::Upload && download_url.is_none())
        || (request.direction != Direction::Download && upload_url.is_none());
    let base = if own { Some(endpoint_base(&app, &device).await?) } else { None };
    let mut bodies = Vec::new();
    let test = |url: Option<String>, own_url: &dyn Fn(&str, &str) -> String| -> ApiResult<(String, Option<String>)> {
        Ok(match (url, &base) {
            (Some(url), _) => (url, None),
            (None, Some(base)) => {
                let token = crate::secrets::random_token("");
                (own_url(base, &token), Some(crate::secrets::token_hash(&token)))
            }
            (None, None) => return Err(anyhow::anyhow!("no endpoint base for an own test").into()),
        })
    };
    if request.direction != Direction::Upload {
        let (url, token) = test(download_url, &|base, token| crate::diagnostics::download_url(base, token, size))?;
        bodies.push((json!({"name": "startDiagnostic", "diagnostic": "download", "url": url}), token));
    }
    if request.direction != Direction::Download {
        let (url, token) = test(upload_url, &|base, token| crate::diagnostics::upload_url(base, token))?;
        bodies.push((json!({"name": "startDiagnostic", "diagnostic": "upload", "url": url, "length": size}), token));
    }
    run(&app, &slot, &caller, &id, Diagnose { bodies, digest }, &wait, &headers).await
}

/// Where the device reaches this server: the base of its `ManagementServer.URL`, once known.
pub async fn device_base(app: &App, device: &Device) -> ApiResult<Option<String>> {
    Ok(crate::store::devices::acs_base(&app.api_store, device).await?)
}

/// [`device_base`], for a speed test on Roost's own endpoints.
async fn endpoint_base(app: &App, device: &Device) -> ApiResult<String> {
    device_base(app, device).await?.ok_or_else(|| {
        ApiError::conflict(
            ErrorCode::InvalidDiagnostic,
            "download_url: the device's ACS URL is not known yet, so Roost cannot give it its own test \
             endpoint; give download_url and upload_url, or set the organization's speed_test_server",
        )
    })
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct ListQuery {
    #[serde(flatten)]
    #[param(ignore)] // documented by `Page` itself
    page: Page,
    /// Only runs of this kind.
    kind: Option<String>,
}

/// A device's diagnostics: the latest run of each kind, and the history, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct DiagnosticsView {
    pub latest: Vec<DiagnosticView>,
    #[serde(flatten)]
    pub history: ListResponse<DiagnosticView>,
}

#[utoipa::path(get, path = "/devices/{id}/diagnostics", tag = "diagnostics", params(DeviceId, ListQuery, Page),
    responses((status = 200, description = "The latest run of each kind and a page of the history", body = DiagnosticsView)))]
async fn list(
    State(app): State<Arc<App>>,
    caller: Caller,
    Path(id): Path<String>,
    Query(query): Query<ListQuery>,
) -> ApiResult<Json<DiagnosticsView>> {
    let device = visible_device(&app, &caller, &id).await?;
    let limit = query.page.limit()?;
    let kind = match query.kind.as_deref() {
        None => None,
        Some(kind) => Some(DiagnosticKind::parse(kind).ok_or_else(|| {
            ApiError::bad_request(ErrorCode::InvalidQuery, format!("kind: {kind:?} is not a diagnostic"))
        })?),
    };
    let rows = diagnostics::list_for_device(&app.api_store, device.id, kind, query.page.id_cursor()?, limit).await?;
    let latest = diagnostics::latest_for_device(&app.api_store, device.id).await?;
    let last = rows.last().map(|r| r.id.to_string());
    let view = |r: &Run| DiagnosticView::new(r, &device.device_id);
    let latest = latest.iter().filter(|r| kind.is_none_or(|k| r.kind == k.as_str())).map(view).collect();
    Ok(Json(DiagnosticsView { latest, history: ListResponse::new(rows.iter().map(view).collect(), limit, last) }))
}
