//! The REST API on the HTTP listener: `/api/v1/...` with one router per area, and `/healthz`.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine;
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;

use crate::app::App;

pub mod actions;
pub mod adapters;
pub mod api_keys;
pub mod audit;
pub mod auth;
pub mod authenticate;
pub mod bulk;
pub mod dashboard;
pub mod devices;
pub mod diagnostics;
pub mod error;
pub mod events;
pub mod extract;
pub mod faults;
pub mod files;
pub mod health;
pub mod nbi;
pub mod onboarding;
pub mod openapi;
pub mod orgs;
pub mod plugins;
pub mod presets;
pub mod rollouts;
pub mod subscribers;
pub mod tasks;
pub mod users;
pub mod webhooks;

use error::{ApiError, ApiResult, ErrorCode};

pub fn router(app: Arc<App>) -> Router {
    let limit = app.config.api.max_body_bytes;
    let (routes, document) = documented_routes(&app).split_for_parts();
    let document: Arc<str> = serde_json::to_string(&openapi::finish(document)).unwrap_or_default().into();
    let serve_document = move || {
        let document = document.clone();
        async move { ([(header::CONTENT_TYPE, "application/json")], document.to_string()) }
    };
    routes
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/api/v1/openapi.json", get(serve_document))
        .route("/api/docs", get(|| async { axum::response::Html(openapi::DOCS_PAGE) }))
        // The portal's files and pages; the API's 404 for anything else.
        .fallback(crate::portal::serve)
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                ErrorCode::MethodNotAllowed,
                "This route does not take that method",
            )
        })
        .layer(DefaultBodyLimit::max(limit))
        .layer(axum::middleware::from_fn(limit_uri))
        .with_state(app)
}

/// `/api/v1` and `/nbi`, each operation in the router and in the OpenAPI document at once,
/// behind authentication and the API's admission limit.
pub fn documented_routes(app: &Arc<App>) -> OpenApiRouter<Arc<App>> {
    // Route layers run after routing, inside out: the caller is known (and a key over its rate
    // limit refused) before a place is taken, and the audit sees the matched route.
    let guarded = |routes: OpenApiRouter<Arc<App>>| {
        routes
            .route_layer(axum::middleware::from_fn_with_state(app.clone(), take_slot))
            .route_layer(axum::middleware::from_fn_with_state(app.clone(), authenticate::authenticate))
    };
    OpenApiRouter::with_openapi(openapi::base())
        .nest("/api/v1", guarded(v1_routes()))
        .nest("/nbi", guarded(nbi::router()))
}

fn v1_routes() -> OpenApiRouter<Arc<App>> {
    OpenApiRouter::new()
        .merge(auth::router())
        .merge(devices::router())
        .merge(tasks::router())
        .merge(plugins::router())
        .merge(presets::router())
        .merge(orgs::router())
        .merge(users::router())
        .merge(api_keys::router())
        .merge(audit::router())
        .merge(onboarding::router())
        .merge(actions::router())
        .merge(diagnostics::router())
        .merge(health::router())
        .merge(dashboard::router())
        .merge(faults::router())
        .merge(subscribers::router())
        .merge(files::router())
        .merge(rollouts::router())
        .merge(bulk::router())
        .merge(webhooks::router())
        .merge(adapters::router())
        .merge(events::router())
}

/// The OpenAPI document the server serves, without a server (`roost openapi`).
pub fn openapi_document() -> utoipa::openapi::OpenApi {
    let routes = OpenApiRouter::<Arc<App>>::with_openapi(openapi::base())
        .nest("/api/v1", v1_routes())
        .nest("/nbi", nbi::router());
    openapi::finish(routes.into_openapi())
}

/// The longest request target the API reads. Longer ones are refused as problem+json here;
/// hyper refuses targets beyond its own buffer (64 KiB and more) before any handler runs.
const MAX_URI_BYTES: usize = 8 * 1024;

async fn limit_uri(request: Request, next: Next) -> Response {
    let length = request.uri().path_and_query().map_or(0, |p| p.as_str().len());
    if length > MAX_URI_BYTES {
        return ApiError::new(
            StatusCode::URI_TOO_LONG,
            ErrorCode::UriTooLong,
            format!("The request target is {length} bytes; at most {MAX_URI_BYTES} are read"),
        )
        .into_response();
    }
    next.run(request).await
}

/// A place among the API requests served at once (`[api] max_concurrent_requests`), held by the
/// request until it answers or gives it back (before waiting on a device, which costs nothing).
#[derive(Clone, Debug)]
pub struct ApiSlot(Arc<std::sync::Mutex<Option<tokio::sync::OwnedSemaphorePermit>>>);

impl ApiSlot {
    /// Gives the place back early: what follows waits on something other than this server.
    pub fn release(&self) {
        if let Ok(mut permit) = self.0.lock() {
            permit.take();
        }
    }
}

/// Admits an API request when a place is free; waits for one up to `[api] queue_timeout`, then
/// answers 503. Bounds what integrations take of the database pool and the CPU from CPE
/// sessions.
pub async fn take_slot(State(app): State<Arc<App>>, request: Request, next: Next) -> Response {
    // A file upload streams to the file store as it arrives (bounded by its own slots, in
    // `api/files.rs`): buffered here, an image would sit in memory.
    // (Inside `/api/v1`'s nest the path is the nested one; the original is the whole.)
    let path = request.extensions().get::<axum::extract::OriginalUri>().map_or(request.uri().path(), |o| o.path());
    let streamed = (request.method() == axum::http::Method::POST && path == files::UPLOAD_PATH)
        || (request.method() == axum::http::Method::PUT && path.starts_with(nbi::files::UPLOAD_PREFIX));
    if streamed {
        return next.run(request).await;
    }
    // The body first, within the queue time: a client that sends its body slowly (or never)
    // holds no place while it does.
    let (parts, body) = request.into_parts();
    // Components are uploaded whole; every other body is JSON.
    let limit = if parts.uri.path().ends_with("/plugins") {
        plugins::MAX_COMPONENT_BYTES
    } else {
        app.config.api.max_body_bytes
    };
    let bytes = match tokio::time::timeout(app.config.api.queue_timeout, axum::body::to_bytes(body, limit)).await {
        Ok(Ok(bytes)) => bytes,
        Ok(Err(_)) => {
            return ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                ErrorCode::BodyTooLarge,
                format!("The request body is larger than {limit} bytes, or was cut short"),
            )
            .into_response();
        }
        Err(_) => {
            return ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                ErrorCode::BodyTimeout,
                "The request body did not arrive in time",
            )
            .into_response();
        }
    };
    let mut request = Request::from_parts(parts, axum::body::Body::from(bytes));
    let waited = tokio::time::timeout(app.config.api.queue_timeout, app.api_slots.clone().acquire_owned()).await;
    let Ok(Ok(permit)) = waited else {
        let mut response = ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::Busy,
            "Too many API requests at once; retry later",
        )
        .into_response();
        response.headers_mut().insert(axum::http::header::RETRY_AFTER, axum::http::HeaderValue::from_static("1"));
        return response;
    };
    let slot = ApiSlot(Arc::new(std::sync::Mutex::new(Some(permit))));
    request.extensions_mut().insert(slot.clone());
    let response = next.run(request).await;
    slot.release();
    response
}

/// 200 once the database answers; 503 otherwise, so load balancers route around a replica that
/// lost its database.
/// Alive: the process answers. A liveness probe restarts what fails it, and a database outage
/// is not mended by restarting Roost, so the database is not asked here (see [`readyz`]).
async fn healthz() -> impl IntoResponse {
    (StatusCode::OK, "ok")
}

/// Ready to serve: the database answers and the server is not draining. Migrations run before
/// the listener serves, so a replica starting (or waiting for another's migrations) is not
/// ready either: its probe is not answered yet.
async fn readyz(State(app): State<Arc<App>>) -> impl IntoResponse {
    if app.is_draining() {
        return (StatusCode::SERVICE_UNAVAILABLE, "draining");
    }
    match tokio::time::timeout(READY_CHECK, app.api_store.ping()).await {
        Ok(Ok(())) => (StatusCode::OK, "ready"),
        Ok(Err(error)) => {
            tracing::warn!("readiness check: {error:#}");
            (StatusCode::SERVICE_UNAVAILABLE, "database unavailable")
        }
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "database not answering"),
    }
}

/// The process's metrics in Prometheus text format, to a scraper with the `[metrics] token` or,
/// without one configured, on this machine.
async fn metrics(
    State(app): State<Arc<App>>,
    axum::extract::ConnectInfo(peer): axum::extract::ConnectInfo<std::net::SocketAddr>,
    headers: axum::http::HeaderMap,
) -> Response {
    let presented = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    if !may_scrape(app.config.metrics.token.as_deref(), presented, peer.ip()) {
        return ApiError::new(StatusCode::FORBIDDEN, ErrorCode::Forbidden, "Metrics are for the platform's scraper")
            .into_response();
    }
    // Read before the scrape is written; a database that does not answer leaves the family out
    // (`/readyz` says why), not the whole scrape.
    let rollouts =
        tokio::time::timeout(std::time::Duration::from_secs(1), crate::store::rollouts::live_progress(&app.api_store))
            .await
            .ok()
            .and_then(Result::ok);
    let text = app.metrics.render(|out| {
        let store = app.store.counters();
        crate::metrics::counter(
            out,
            "roost_db_statements_total",
            "Database statements executed (both pools), and those that failed",
            &[
                ("outcome=\"ok\"", store.ok_statements.load(Ordering::Relaxed)),
                ("outcome=\"failed\"", store.failed_statements.load(Ordering::Relaxed)),
            ],
        );
        store.statement_seconds.render(
            out,
            "roost_db_statement_duration_seconds",
            "Database statements, from sent to answered",
        );
        store.faults.render(
            out,
            "roost_faults_recorded_total",
            "Faults recorded on devices, by kind (a repeat counts again)",
        );
        let runs = &app.provisioning.counters;
        crate::metrics::counter(
            out,
            "roost_plugin_runs_total",
            "Provision runs: in the sandbox, or replayed from a kept output instead",
            &[
                ("how=\"sandboxed\"", runs.sandboxed_runs.load(Ordering::Relaxed)),
                ("how=\"replayed\"", runs.replayed_runs.load(Ordering::Relaxed)),
            ],
        );
        if let Some(rollouts) = &rollouts {
            let samples: Vec<(String, f64)> =
                rollouts.iter().map(|(state, devices)| (format!("state=\"{state}\""), *devices as f64)).collect();
            let samples: Vec<(&str, f64)> = samples.iter().map(|(l, v)| (l.as_str(), *v)).collect();
            crate::metrics::gauge(
                out,
                "roost_rollout_devices",
                "Devices of running, paused or rolling-back firmware rollouts, by state",
                &samples,
            );
        }
        crate::metrics::gauge(
            out,
            "roost_cwmp_sessions_live",
            "CWMP sessions open now",
            &[("", app.sessions.len() as f64)],
        );
        let mut pools = Vec::new();
        for (name, store) in [("cwmp", &app.store), ("api", &app.api_store)] {
            let (open, idle) = store.pool_connections();
            pools.push((format!("pool=\"{name}\",state=\"idle\""), idle as f64));
            pools.push((format!("pool=\"{name}\",state=\"in_use\""), open.saturating_sub(idle as u32) as f64));
        }
        let pools: Vec<(&str, f64)> = pools.iter().map(|(labels, value)| (labels.as_str(), *value)).collect();
        crate::metrics::gauge(out, "roost_db_pool_connections", "Database connections of each pool, by state", &pools);
        if let Some(writer) = app.store.inform_writer() {
            crate::metrics::gauge(
                out,
                "roost_inform_writer_waiting",
                "Periodic Informs waiting for the SQLite writer to record them in a grouped statement",
                &[("", writer.waiting() as f64)],
            );
        }
        crate::metrics::gauge(
            out,
            "roost_draining",
            "1 while the server drains for a stop",
            &[("", f64::from(u8::from(app.is_draining())))],
        );
    });
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], text).into_response()
}

/// Whether a scraper may read the metrics: with the configured token (compared in constant
/// time), or, when none is configured, over loopback. Not from private addresses: behind a
/// proxy every request comes from one, and an ISP's CPEs often have one too.
fn may_scrape(token: Option<&str>, authorization: Option<&str>, client: std::net::IpAddr) -> bool {
    match token {
        Some(token) => authorization
            .and_then(|value| value.strip_prefix("Bearer "))
            .is_some_and(|presented| roost_http::digest::constant_time_eq(presented, token)),
        None => client.to_canonical().is_loopback(),
    }
}

#[cfg(test)]
mod scrape_tests {
    use super::may_scrape;

    #[test]
    fn without_a_token_only_loopback_scrapes() {
        for near in ["127.0.0.1", "127.0.0.2", "::1", "::ffff:127.0.0.1"] {
            assert!(may_scrape(None, None, near.parse().unwrap()), "{near}");
        }
        for far in ["10.1.2.3", "192.168.0.9", "fd00::5", "203.0.113.5", "2001:db8::1", "::ffff:10.0.0.1"] {
            assert!(!may_scrape(None, None, far.parse().unwrap()), "{far}");
        }
    }

    #[test]
    fn with_a_token_the_token_and_nothing_else() {
        let far = "203.0.113.5".parse().unwrap();
        assert!(may_scrape(Some("s3cret"), Some("Bearer s3cret"), far));
        assert!(!may_scrape(Some("s3cret"), Some("Bearer s3cre"), far));
        assert!(!may_scrape(Some("s3cret"), None, "127.0.0.1".parse().unwrap()), "the token is asked of everyone");
    }
}

/// How long the readiness check waits for the database: a probe has its own timeout, and an
/// answer is better than none.
const READY_CHECK: std::time::Duration = std::time::Duration::from_secs(2);

/// `limit` and `cursor` of every list.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Page {
    /// At most this many items (1 to 1000; 100 when absent).
    #[param(minimum = 1, maximum = 1000)]
    #[serde(default, deserialize_with = "number_in_query")]
    pub limit: Option<u64>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// A number from a query string. Needed where `Page` is flattened into another query: serde
/// then hands the value over as text, which a plain `u64` refuses (`?limit=10` answered 400).
fn number_in_query<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<u64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Text {
        Number(u64),
        Text(String),
    }
    match Option::<Text>::deserialize(deserializer)? {
        None => Ok(None),
        Some(Text::Number(n)) => Ok(Some(n)),
        Some(Text::Text(text)) => text
            .parse()
            .map(Some)
            .map_err(|_| serde::de::Error::custom(format!("limit must be a number, got {text:?}"))),
    }
}

impl Page {
    pub const DEFAULT_LIMIT: u64 = 100;
    pub const MAX_LIMIT: u64 = 1000;

    pub fn limit(&self) -> ApiResult<u64> {
        match self.limit {
            None => Ok(Self::DEFAULT_LIMIT),
            Some(n) if (1..=Self::MAX_LIMIT).contains(&n) => Ok(n),
            Some(n) => Err(ApiError::bad_request(
                ErrorCode::InvalidQuery,
                format!("limit must be 1 to {}, got {n}", Self::MAX_LIMIT),
            )),
        }
    }

    /// The decoded cursor: an opaque token to clients, the last key of the previous page here.
    pub fn cursor(&self) -> ApiResult<Option<String>> {
        self.cursor
            .as_deref()
            .map(|c| {
                base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(c)
                    .ok()
                    .and_then(|b| String::from_utf8(b).ok())
                    .ok_or_else(|| {
                        ApiError::bad_request(ErrorCode::InvalidCursor, "cursor is not one this API returned")
                    })
            })
            .transpose()
    }

    pub fn id_cursor(&self) -> ApiResult<Option<i64>> {
        self.cursor()?
            .map(|c| {
                c.parse()
                    .map_err(|_| ApiError::bad_request(ErrorCode::InvalidCursor, "cursor is not one this API returned"))
            })
            .transpose()
    }
}

/// A page of a fleet job's devices (a rollout's, a bulk action's), optionally in one state.
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct JobDevicesQuery {
    #[serde(flatten)]
    #[param(ignore)] // documented by `Page` itself
    pub page: Page,
    /// Only devices in this state.
    pub device_state: Option<String>,
}

impl JobDevicesQuery {
    /// The state asked for, read by `parse` (none: every state).
    pub fn states<S>(&self, parse: fn(&str) -> Option<S>) -> ApiResult<Vec<S>> {
        match self.device_state.as_deref() {
            None => Ok(Vec::new()),
            Some(state) => Ok(vec![parse(state).ok_or_else(|| {
                ApiError::bad_request(ErrorCode::InvalidQuery, format!("device_state: no state {state:?}"))
            })?]),
        }
    }
}

pub fn encode_cursor(key: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(key)
}

/// A page of a list: `{"items": [...], "next_cursor": ...}`. `next_cursor` is set when the page
/// was full: the client passes it as `cursor` for the next page.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct ListResponse<T> {
    pub items: Vec<T>,
    /// Set when the page was full: pass it as `cursor` for the next page.
    pub next_cursor: Option<String>,
}

impl<T> ListResponse<T> {
    /// A page of at most `limit` items, the last of which has the key `last_key`.
    pub fn new(items: Vec<T>, limit: u64, last_key: Option<String>) -> Self {
        let next_cursor = if items.len() as u64 == limit { last_key.map(|k| encode_cursor(&k)) } else { None };
        Self { items, next_cursor }
    }
}

pub use crate::store::timestamp;

pub fn optional_timestamp(millis: Option<i64>) -> Option<String> {
    millis.map(timestamp)
}

/// Parses an RFC 3339 query value into epoch milliseconds.
pub fn parse_timestamp(field: &str, value: &str) -> ApiResult<i64> {
    chrono::DateTime::parse_from_rfc3339(value).map(|t| t.timestamp_millis()).map_err(|_| {
        ApiError::bad_request(ErrorCode::InvalidQuery, format!("{field} must be an RFC 3339 time, got {value:?}"))
            .on_field(field)
    })
}

/// Organization slugs by id, for rendering.
pub async fn org_slugs(app: &App) -> anyhow::Result<HashMap<i64, String>> {
    crate::store::orgs::slugs(&app.api_store).await
}

/// One organization's slug (empty if it is gone).
pub async fn org_slug(app: &App, org_id: i64) -> ApiResult<String> {
    Ok(crate::store::orgs::by_id(&app.api_store, org_id).await?.map(|o| o.slug).unwrap_or_default())
}

#[cfg(test)]
mod tests {

    use super::*;

    #[derive(Debug, Deserialize)]
    struct Flattened {
        #[serde(flatten)]
        page: Page,
        #[allow(dead_code)]
        org: Option<String>,
    }

    #[test]
    fn a_page_reads_its_limit_alone_and_flattened_into_another_query() {
        let uri: axum::http::Uri = "/x?limit=10&cursor=abc&org=isp".parse().unwrap();
        let axum::extract::Query(page) = axum::extract::Query::<Page>::try_from_uri(&uri).unwrap();
        assert_eq!((page.limit, page.cursor.as_deref()), (Some(10), Some("abc")));
        let axum::extract::Query(query) = axum::extract::Query::<Flattened>::try_from_uri(&uri).unwrap();
        assert_eq!(query.page.limit, Some(10));
        let bad: axum::http::Uri = "/x?limit=ten".parse().unwrap();
        assert!(axum::extract::Query::<Flattened>::try_from_uri(&bad).is_err());
        let none: axum::http::Uri = "/x?org=isp".parse().unwrap();
        assert_eq!(axum::extract::Query::<Flattened>::try_from_uri(&none).unwrap().page.limit, None);
    }
}
