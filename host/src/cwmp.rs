//! The CWMP listener: HTTP in, `roost-cwmp` sessions, the driver, HTTP out.
//!
//! A session is found by its cookie or, for CPEs that never echo cookies, by the TCP connection
//! it arrived on. An Inform always starts a new session, whatever cookie it carries (some CPEs
//! keep a stale one). Sessions silent past the timeout are dropped; the task that was in flight
//! stays queued and runs in the next session.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::Extension;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use rand::RngCore;
use roost_cwmp::fault::acs_codes;
use roost_cwmp::limits::{MessageLimits, clamp_cpe_message};
use roost_cwmp::session::{Incoming, Reply, Session};
use roost_cwmp::{AcsResponse, CpeBody, CpeRequest, Envelope, Fault, Inform, decode_cpe_message};
use tracing::Instrument;

use roost_http::framing;

use crate::app::App;
use crate::config::CpeAuthMode;
use crate::store::{self, devices, orgs};

pub mod auth;
pub mod connection_request;
pub mod driver;
pub mod files;
mod listener;
mod sessions;
pub mod stun;
pub mod tr143;

pub use listener::{connection_limit, serve};
use sessions::{Live, Lookup};
pub use sessions::{Origin, Sessions};

use crate::answers::Answer;
use driver::Driver;

const COOKIE: &str = "roost_session";

/// The methods this ACS answers (GetRPCMethods from a CPE).
const ACS_METHODS: &[&str] =
    &["Inform", "GetRPCMethods", "TransferComplete", "AutonomousTransferComplete", "RequestDownload"];

/// Winds up sessions that died with work in flight (timed out, or replaced by the device's new
/// Inform): what was in flight may be what kills the CPE, and the driver remembers that.
pub async fn wind_up(app: &Arc<App>, drivers: Vec<Driver>) {
    for driver in drivers {
        if let Err(error) = driver.abandoned(app).await {
            tracing::error!(device = %driver.device().device_id, "recording an abandoned session failed: {error:#}");
        }
    }
}

/// What the framer's gate decided about a request from its head, before its body was read
/// (see [`framing`]); handlers find it in the request's extensions.
#[derive(Debug, Clone)]
pub enum Gated {
    /// In a live session, or CPE authentication is off: the handler decides.
    Admitted,
    /// Its `Authorization` verified: the session it opens is this credential's.
    Authenticated(crate::store::credentials::CpeCredential),
    /// Answer 401 with a challenge.
    Challenge { stale: bool },
    /// Too many authentication failures from this address or for this username.
    Throttled,
    /// Larger than the body limit.
    TooLarge,
    /// No room in the body budget, or the database could not be asked.
    Busy,
}

impl framing::Verdict for Gated {
    fn admits(&self) -> bool {
        matches!(self, Self::Admitted | Self::Authenticated(_))
    }
    fn too_large() -> Self {
        Self::TooLarge
    }
    fn busy() -> Self {
        Self::Busy
    }
}

/// The gate: under `--cpe-auth required`, a request's body is read only if it belongs to a live
/// session or its credentials verify. Credentials are checked here once (a nonce count is
/// good once); requests of a live session are admitted without looking at theirs, since many
/// CPEs repeat the session's `Authorization` on every POST with a body. `tls`: whether the
/// connection is encrypted (Basic credentials are taken only then).
async fn gate(app: &App, peer: SocketAddr, head: framing::RequestHead, tls: bool) -> Gated {
    if app.config.cwmp.auth == CpeAuthMode::Open {
        return Gated::Admitted;
    }
    let origin = Origin::of(peer, head.forwarded_for.as_deref(), &app.config.cwmp.trusted_proxies).over_tls(tls);
    let cookie = head.cookie.as_deref().and_then(cookie_value);
    if let Lookup::Found(..) = app.sessions.find(cookie.as_deref(), origin, app.config.cwmp.session_binding) {
        return Gated::Admitted;
    }
    let Some(authorization) = head.authorization.as_deref() else {
        return Gated::Challenge { stale: false };
    };
    match authenticate(app, origin, authorization).await {
        Ok(Ok(credential)) => Gated::Authenticated(credential),
        Ok(Err(refusal)) => refusal,
        Err(error) => {
            tracing::error!("database unavailable during CPE authentication: {error:#}");
            Gated::Busy
        }
    }
}

/// Verifies credentials, throttling failures per address and username; `Ok(Err(_))` is the
/// refusal to answer with.
async fn authenticate(
    app: &App,
    origin: Origin,
    authorization: &str,
) -> anyhow::Result<Result<crate::store::credentials::CpeCredential, Gated>> {
    let client = origin.client;
    let claimed = auth::claimed_username(Some(authorization));
    match app.auth_failures.check(client, claimed.as_deref()) {
        // Refused before any work: a guesser costs nothing but this check.
        auth::Throttle::Refuse => return Ok(Err(Gated::Throttled)),
        auth::Throttle::Delay => tokio::time::sleep(auth::USERNAME_DELAY).await,
        auth::Throttle::No => {}
    }
    match auth::verify(app, Some(authorization), client, origin.encrypted).await? {
        auth::Verdict::Accepted(credential) => {
            app.auth_failures.record_success(client);
            Ok(Ok(credential))
        }
        auth::Verdict::Challenge { stale } => {
            if !stale {
                note_failure(&app.auth_failures, origin, claimed.as_deref(), "wrong credentials");
            }
            Ok(Err(Gated::Challenge { stale }))
        }
    }
}

/// Counts an authentication failure; logs only what `FailureThrottle` says is worth it.
fn note_failure(throttle: &auth::FailureThrottle, origin: Origin, username: Option<&str>, reason: &str) {
    if let Some(what) = throttle.record_failure(origin.client, username) {
        tracing::warn!(client = %origin.client, peer = %origin.peer, username = username.unwrap_or(""), reason, "{what}");
    }
}

/// Follows diagnostic runs their devices do not report done: collects them after
/// `[diagnostics] poll_after` (waking the device) and ends them after `timeout`. Every replica
/// runs it; the store's write transaction makes each run collected once per interval.
pub async fn diagnostics_poll(app: Arc<App>, mut stopped: tokio::sync::watch::Receiver<bool>) -> anyhow::Result<()> {
    let settings = app.config.diagnostics.clone();
    let mut tick = tokio::time::interval(settings.poll_interval);
    let millis = |d: std::time::Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stopped.changed() => return Ok(()),
        }
        match crate::store::diagnostics::any_open(&app.store).await {
            Ok(true) => {}
            Ok(false) => continue,
            Err(error) => {
                tracing::warn!("looking for open diagnostics: {error:#}");
                continue;
            }
        }
        let now = crate::store::now_millis();
        if let Err(error) = crate::store::diagnostics::expire(&app.store, now, millis(settings.timeout)).await {
            tracing::warn!("ending diagnostics past their time: {error:#}");
        }
        let devices = match crate::store::diagnostics::poll(&app.store, now, millis(settings.poll_after)).await {
            Ok(devices) => devices,
            Err(error) => {
                tracing::warn!("polling diagnostics: {error:#}");
                continue;
            }
        };
        for pk in devices {
            let app = app.clone();
            tokio::spawn(async move {
                let device = match devices::by_pk(&app.store, pk).await {
                    Ok(Some(device)) => device,
                    _ => return,
                };
                if let Err(error) = connection_request::send(&app, &device).await {
                    tracing::debug!(device = %device.device_id, "waking the device to collect a diagnostic: {error:#}");
                }
            });
        }
    }
}

pub fn router(app: Arc<App>) -> Router {
    let limit = app.config.cwmp.max_body_bytes;
    // Operators put any path in ManagementServer.URL (`/acs`, `/tr069`, …): every path but the
    // onboarding URLs is the organization-less endpoint.
    Router::new()
        .route("/cwmp/{org}", post(with_org))
        .fallback(without_org)
        .layer(DefaultBodyLimit::max(limit))
        .with_state(app)
}

async fn without_org(
    State(app): State<Arc<App>>,
    Extension(origin): Extension<Origin>,
    gated: Option<Extension<Gated>>,
    method: axum::http::Method,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if method != axum::http::Method::POST {
        return (StatusCode::METHOD_NOT_ALLOWED, [(header::ALLOW, "POST")]).into_response();
    }
    handle(app, origin, gated.map(|Extension(g)| g), None, headers, body).await
}

async fn with_org(
    State(app): State<Arc<App>>,
    Extension(origin): Extension<Origin>,
    gated: Option<Extension<Gated>>,
    Path(org): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    handle(app, origin, gated.map(|Extension(g)| g), Some(org), headers, body).await
}

/// The answer to a request the gate refused, if it did.
fn refusal(app: &App, origin: Origin, gated: &Gated) -> Option<Response> {
    let reason = match gated {
        Gated::Admitted | Gated::Authenticated(_) => return None,
        Gated::Challenge { .. } => "challenged",
        Gated::Throttled => "throttled",
        Gated::TooLarge => "too_large",
        Gated::Busy => "busy",
    };
    app.metrics.cpe_refusals.inc(reason);
    Some(match gated {
        Gated::Admitted | Gated::Authenticated(_) => return None,
        Gated::Challenge { stale } => unauthorized(app, origin.client, *stale),
        Gated::Throttled => throttled(),
        Gated::TooLarge => plain(StatusCode::PAYLOAD_TOO_LARGE, "request body too large"),
        Gated::Busy => retry_later(),
    })
}

async fn handle(
    app: Arc<App>,
    origin: Origin,
    gated: Option<Gated>,
    org_slug: Option<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(response) = gated.as_ref().and_then(|g| refusal(&app, origin, g)) {
        return response;
    }
    // Every request the framer passes on under authentication carries a verdict: one without
    // is refused rather than trusted.
    if gated.is_none() && app.config.cwmp.auth == CpeAuthMode::Required {
        return unauthorized(&app, origin.client, false);
    }
    let peer = origin.peer;
    let now = Instant::now();
    let cookie_token = session_cookie(&headers);
    let envelope = if body.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        match decode_cpe_message(&body) {
            Ok(mut envelope) => {
                let clamped = clamp_cpe_message(&mut envelope.body, &MessageLimits::default());
                if !clamped.is_empty() {
                    tracing::warn!(%peer, ?clamped, "a CPE message exceeded the message limits and was clamped");
                }
                Some(envelope)
            }
            Err(error) => {
                tracing::warn!(%peer, "malformed SOAP from CPE: {error}");
                return malformed(&app, cookie_token.as_deref(), origin, &error.to_string());
            }
        }
    };
    if let Some(Envelope { body: CpeBody::Request(CpeRequest::Inform(inform)), .. }) = &envelope {
        // A new session whatever cookie the Inform carries (some CPEs keep a stale one); it ends
        // only this device's previous session (see `Sessions::insert`).
        if app.is_draining() {
            return retry_later();
        }
        let credential = match gated {
            Some(Gated::Authenticated(credential)) => Some(credential),
            _ => None,
        };
        // Every log line of the session carries its trace id (and the device), from here to its
        // last request: `ROOST_LOG_FORMAT=json` puts them in each line's span.
        let trace = new_trace_id();
        let device = roost_cwmp::device_id::device_id(
            &inform.device_id.oui,
            &inform.device_id.product_class,
            &inform.device_id.serial_number,
        );
        let span = tracing::info_span!("cwmp_session", trace = %trace, device = %device);
        let session = start_session(app, origin, org_slug, &headers, credential, inform.clone(), envelope, now, trace);
        return session.instrument(span).await;
    }
    let (token, live) = match app.sessions.find(cookie_token.as_deref(), origin, app.config.cwmp.session_binding) {
        Lookup::Found(token, live) => (token, live),
        lookup => {
            if matches!(lookup, Lookup::Foreign) {
                tracing::warn!(%peer, "a session cookie was presented from another address or connection than the session's; refused");
            }
            // Under authentication, nothing but an authenticated session's requests gets past this
            // point: a CPE that opens with an empty POST is asking for its challenge.
            if app.config.cwmp.auth == CpeAuthMode::Required {
                return unauthorized(&app, origin.client, false);
            }
            // No session: a CPE carrying on after a restart of the ACS, or one that never informed.
            let mut orphan = Session::new(now, app.config.cwmp.session_timeout);
            let reply = match orphan.receive_envelope(envelope, now) {
                Ok(_) => Reply { status: 204, body: String::new() },
                Err((_, reply)) => reply,
            };
            return to_response(reply, None);
        }
    };
    let mut live = live.lock().await;
    let span = tracing::info_span!("cwmp_session", trace = %live.trace, device = %live.device_id);
    let reply = continue_session(&app, &mut live, envelope, now).instrument(span).await;
    if reply.ends_session() || live.cwmp.is_ended() {
        let started = live.started;
        drop(live);
        if app.sessions.remove(&token) {
            app.metrics.sessions_ended.inc("completed");
            app.metrics.session_seconds.observe(started.elapsed());
        }
    }
    to_response(reply, None)
}

/// How a session relates to the device's own CWMP credential.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OwnCredential {
    /// Opened with a shared onboarding credential: the device gets its own in this session.
    Issue,
    /// Opened with the device's own.
    Presented,
}

/// How long an organization found by onboarding URL or Host is remembered (and an unknown one
/// forgotten): Informs at an organization's URL cost no query for it.
pub const ORG_ROUTE_TTL: std::time::Duration = std::time::Duration::from_secs(10);

/// The organization an Inform's URL (`/cwmp/{slug}`) or, failing that, its `Host` (an
/// organization's own `cwmp_host`) names. `None` for a slug means no such organization.
async fn routed_org(app: &App, slug: Option<&str>, headers: &HeaderMap) -> anyhow::Result<Option<devices::Onboarding>> {
    use devices::{Onboarding, OnboardingVia};
    if let Some(slug) = slug {
        let key = format!("slug:{slug}");
        let found = app
            .org_routes
            .try_get_with(key, async { anyhow::Ok(orgs::by_slug(&app.store, slug).await?.map(|o| o.id)) })
            .await
            .map_err(|e| anyhow::anyhow!("{e:#}"))?;
        return Ok(found.map(|org_id| Onboarding { org_id, via: OnboardingVia::Url }));
    }
    let Some(host) = headers.get(header::HOST).and_then(|v| v.to_str().ok()).map(host_name) else { return Ok(None) };
    if host.parse::<std::net::IpAddr>().is_ok() || !host.contains('.') {
        return Ok(None);
    }
    let key = format!("host:{host}");
    let found = app
        .org_routes
        .try_get_with(key, async { anyhow::Ok(orgs::by_cwmp_host(&app.store, &host).await?.map(|o| o.id)) })
        .await
        .map_err(|e| anyhow::anyhow!("{e:#}"))?;
    Ok(found.map(|org_id| Onboarding { org_id, via: OnboardingVia::Host }))
}

/// A `Host` header's name: without its port, lowercase, without a trailing dot.
fn host_name(host: &str) -> String {
    let name = if host.starts_with('[') {
        host.split(']').next().map(|h| format!("{h}]")).unwrap_or_default()
    } else {
        host.rsplit_once(':').map_or(host, |(name, _)| name).to_owned()
    };
    name.trim_end_matches('.').to_ascii_lowercase()
}

#[allow(clippy::too_many_arguments)]
async fn start_session(
    app: Arc<App>,
    origin: Origin,
    org_slug: Option<String>,
    headers: &HeaderMap,
    credential: Option<crate::store::credentials::CpeCredential>,
    inform: Inform,
    envelope: Option<Envelope<CpeBody>>,
    now: Instant,
    trace: String,
) -> Response {
    let peer = origin.peer;
    let device_id = roost_cwmp::device_id::device_id(
        &inform.device_id.oui,
        &inform.device_id.product_class,
        &inform.device_id.serial_number,
    );
    let routed = match routed_org(&app, org_slug.as_deref(), headers).await {
        Ok(Some(routed)) => Some(routed),
        Ok(None) if org_slug.is_some() => return plain(StatusCode::NOT_FOUND, "no such organization onboarding URL"),
        Ok(None) => None,
        Err(error) => return database_unavailable(&error),
    };
    let url_org = routed.map(|r| r.org_id);
    let mut onboarding = routed;
    let mut own_credential = None;
    if app.config.cwmp.auth == CpeAuthMode::Required {
        // Verified by the gate, or here when the gate admitted the Inform for its connection's
        // live session (a cookie-less CPE starting its next session on the same connection).
        let credential = match credential {
            Some(credential) => credential,
            None => {
                let Some(authorization) = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) else {
                    return unauthorized(&app, origin.client, false);
                };
                match authenticate(&app, origin, authorization).await {
                    Ok(Ok(credential)) => credential,
                    Ok(Err(refused)) => return refusal(&app, origin, &refused).unwrap_or_else(retry_later),
                    Err(error) => return database_unavailable(&error),
                }
            }
        };
        if !auth::permits(&credential, &device_id, &inform.device_id.product_class, url_org) {
            note_failure(
                &app.auth_failures,
                origin,
                Some(&credential.username),
                "credential not valid for this device or URL",
            );
            return unauthorized(&app, origin.client, false);
        }
        if credential.device_id.is_none() {
            // An onboarding credential (an organization's or a model's, shared by many
            // devices): once a device took its own, a leaked shared one cannot open its
            // sessions. A device still on a shared one gets its own in this session.
            match devices::has_own_credential(&app.store, &device_id).await {
                Ok(true) => {
                    note_failure(
                        &app.auth_failures,
                        origin,
                        Some(&credential.username),
                        "an onboarded device must use its own credential",
                    );
                    return unauthorized(&app, origin.client, false);
                }
                Ok(false) => own_credential = Some(OwnCredential::Issue),
                Err(error) => return database_unavailable(&error),
            }
        } else {
            own_credential = Some(OwnCredential::Presented);
        }
        if onboarding.is_none()
            && let Some(org_id) = credential.org_id
        {
            onboarding = Some(devices::Onboarding { org_id, via: devices::OnboardingVia::Credential });
        }
    }

    // The device's previous session, if still open, died (the CPE gave up on it): wind it up
    // before this Inform loads the device, so that this session knows what killed the last.
    if let Some(previous) = app.sessions.take_device(&device_id) {
        let driver = previous.lock().await.driver.take();
        // Counted by whoever takes its driver: this Inform, or the sweep that found it silent.
        if driver.is_some() {
            app.metrics.sessions_ended.inc("replaced");
        }
        wind_up(&app, driver.into_iter().collect()).await;
    }

    let mut cwmp = Session::new(now, app.config.cwmp.session_timeout);
    let (inform, turn) = match cwmp.receive_envelope(envelope, now) {
        Ok(Incoming::Inform { inform, turn }) => (inform, turn),
        Ok(_) => return plain(StatusCode::BAD_REQUEST, "expected an Inform"),
        Err((rejection, reply)) => {
            tracing::warn!(%peer, device = %device_id, "Inform refused: {rejection}");
            return to_response(reply, None);
        }
    };
    let record = devices::InformRecord {
        device_id: &device_id,
        identity: &inform.device_id,
        onboarding,
        events: &inform.events,
        parameters: &inform.parameters,
        remote_address: &origin.client.to_string(),
        cwmp_version: cwmp.version().as_str(),
        now: store::now_millis(),
    };
    let outcome = match devices::record_inform(&app.store, &record).await {
        Ok(outcome) => outcome,
        Err(error) => {
            // Nothing is lost: the CPE keeps its events until an InformResponse acknowledges them.
            tracing::error!(device = %device_id, "storing Inform failed: {error:#}");
            let reply = cwmp.reject_inform(
                turn,
                Fault::new(acs_codes::RETRY_REQUEST, "Retry request: the ACS could not store the Inform"),
            );
            return to_response(reply, None);
        }
    };
    if outcome.created {
        tracing::info!(device = %device_id, %peer, "new device registered");
    }
    if own_credential == Some(OwnCredential::Presented) && outcome.device.own_credential_at.is_none() {
        // The first session on the credential Roost made for it: the device took it.
        if let Err(error) = devices::mark_own_credential(&app.store, outcome.device.id, store::now_millis()).await {
            tracing::warn!(device = %device_id, "recording the device's own credential: {error:#}");
        }
    }
    let reply = cwmp.accept_inform(turn);
    app.metrics.sessions_started.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    for event in &inform.events {
        app.metrics.informs.inc(&event.code);
    }
    let token = new_token();
    let previous = app.sessions.insert(
        token.clone(),
        &device_id,
        origin,
        Live {
            cwmp,
            driver: Some(
                Driver::new(
                    outcome.device,
                    outcome.has_queued_tasks,
                    inform.events.iter().map(|e| e.code.clone()).collect(),
                )
                .issuing_own_credential(own_credential == Some(OwnCredential::Issue)),
            ),
            peer,
            started: now,
            trace,
            device_id: device_id.clone(),
        },
    );
    if let Some(previous) = previous {
        let driver = previous.lock().await.driver.take();
        if driver.is_some() {
            app.metrics.sessions_ended.inc("replaced");
        }
        wind_up(&app, driver.into_iter().collect()).await;
    }
    to_response(reply, Some(&token))
}

async fn continue_session(app: &Arc<App>, live: &mut Live, envelope: Option<Envelope<CpeBody>>, now: Instant) -> Reply {
    let incoming = match live.cwmp.receive_envelope(envelope, now) {
        Ok(incoming) => incoming,
        Err((rejection, reply)) => {
            tracing::warn!(peer = %live.peer, "session message refused: {rejection}");
            return reply;
        }
    };
    let Some(driver) = live.driver.as_mut() else {
        return Reply { status: 204, body: String::new() };
    };
    let (answer, turn) = match incoming {
        Incoming::Inform { .. } => return Reply { status: 400, body: String::new() },
        Incoming::Request { request, turn } => {
            let result = answer_cpe_request(app, driver, &request).await;
            return match result {
                Ok(Ok(response)) => live.cwmp.answer(turn, response),
                Ok(Err(fault)) => live.cwmp.answer_fault(turn, fault),
                Err(error) => {
                    tracing::error!(device = %driver.device().device_id, "handling {} failed: {error:#}", request.method_name());
                    live.cwmp.answer_fault(turn, Fault::new(acs_codes::RETRY_REQUEST, "Retry request"))
                }
            };
        }
        Incoming::Response { response, turn, .. } => (Answer::Response(response), turn),
        Incoming::Fault { fault, turn, .. } => (Answer::Fault(fault), turn),
        Incoming::Unanswered { reason, turn, .. } => (Answer::Unanswered(reason), turn),
        Incoming::Empty { turn } => (Answer::Nothing, turn),
        Incoming::Stray { method, turn } => {
            tracing::debug!(device = %driver.device().device_id, %method, "stray message ignored");
            (Answer::Nothing, turn)
        }
    };
    match driver.next(app, answer).await {
        Ok(Some(request)) => live.cwmp.send(turn, request),
        Ok(None) => live.cwmp.finish(turn),
        Err(error) => {
            // The store failed mid-session: end cleanly; pending work stays queued for next time.
            tracing::error!(device = %driver.device().device_id, "session work failed: {error:#}");
            live.cwmp.finish(turn)
        }
    }
}

/// Answers a CPE request; `Ok(Err(fault))` is a CWMP fault for the CPE.
async fn answer_cpe_request(
    app: &Arc<App>,
    driver: &Driver,
    request: &CpeRequest,
) -> anyhow::Result<Result<AcsResponse, Fault>> {
    Ok(match request {
        CpeRequest::TransferComplete(complete) => {
            driver::transfer_complete(app, driver.device(), complete).await?;
            Ok(AcsResponse::TransferComplete)
        }
        CpeRequest::AutonomousTransferComplete(transfer) => {
            tracing::info!(device = %driver.device().device_id, url = %transfer.transfer_url, code = transfer.fault.code, "autonomous transfer");
            Ok(AcsResponse::AutonomousTransferComplete)
        }
        CpeRequest::GetRpcMethods => {
            Ok(AcsResponse::GetRpcMethods { methods: ACS_METHODS.iter().map(|m| (*m).to_owned()).collect() })
        }
        CpeRequest::RequestDownload(request) => {
            tracing::info!(device = %driver.device().device_id, file_type = %request.file_type, "CPE requested a download");
            Ok(AcsResponse::RequestDownload)
        }
        other => {
            Err(Fault::new(acs_codes::METHOD_NOT_SUPPORTED, format!("Method not supported: {}", other.method_name())))
        }
    })
}

fn session_cookie(headers: &HeaderMap) -> Option<String> {
    headers.get_all(header::COOKIE).iter().filter_map(|v| v.to_str().ok()).find_map(cookie_value)
}

/// The session token in a `Cookie` header's value.
fn cookie_value(header: &str) -> Option<String> {
    header
        // Some CPEs echo the whole Set-Cookie, attributes included: each `;` part is checked.
        .split(';')
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| name.trim() == COOKIE)
        .map(|(_, value)| value.trim().trim_matches('"').to_owned())
}

/// A session's trace id: 16 hex digits, random, told to no one but the logs (the cookie token
/// opens the session, so it is never logged).
fn new_trace_id() -> String {
    hex::encode(rand::random::<[u8; 8]>())
}

/// A session cookie: 256 random bits, unguessable.
fn new_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

fn to_response(reply: Reply, set_cookie: Option<&str>) -> Response {
    let status = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = if reply.body.is_empty() {
        status.into_response()
    } else {
        (status, [(header::CONTENT_TYPE, "text/xml; charset=\"utf-8\"")], reply.body).into_response()
    };
    if let Some(token) = set_cookie
        && let Ok(value) = HeaderValue::from_str(&format!("{COOKIE}={token}; Path=/; HttpOnly"))
    {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

fn malformed(app: &App, token: Option<&str>, origin: Origin, reason: &str) -> Response {
    // The session (if any) is over: the CPE will start again with an Inform.
    if let Lookup::Found(token, _) = app.sessions.find(token, origin, app.config.cwmp.session_binding)
        && app.sessions.remove(&token)
    {
        app.metrics.sessions_ended.inc("malformed");
    }
    let fault = Fault::new(acs_codes::INVALID_ARGUMENTS, format!("Invalid arguments: malformed SOAP ({reason})"));
    let body = roost_cwmp::encode_acs_message(
        roost_cwmp::CwmpVersion::default(),
        &roost_cwmp::Header::default(),
        &roost_cwmp::AcsBody::Fault(fault),
    );
    to_response(Reply { status: 400, body }, None)
}

fn unauthorized(app: &App, client: std::net::IpAddr, stale: bool) -> Response {
    let mut response = StatusCode::UNAUTHORIZED.into_response();
    if let Ok(value) = HeaderValue::from_str(&app.nonce_key.challenge(&app.config.cwmp.realm, client, stale)) {
        response.headers_mut().insert(header::WWW_AUTHENTICATE, value);
    }
    response
}

/// A client throttled after repeated authentication failures: 503 and `Retry-After`, which
/// CWMP clients honour (TR-069 §3.7.1.5 retries), at the cost of nothing else.
fn throttled() -> Response {
    let seconds = auth::FAILURE_WINDOW.as_secs().to_string();
    let mut response = StatusCode::SERVICE_UNAVAILABLE.into_response();
    if let Ok(value) = HeaderValue::from_str(&seconds) {
        response.headers_mut().insert(header::RETRY_AFTER, value);
    }
    response
}

fn retry_later() -> Response {
    (StatusCode::SERVICE_UNAVAILABLE, [(header::RETRY_AFTER, "30")]).into_response()
}

fn database_unavailable(error: &anyhow::Error) -> Response {
    tracing::error!("database unavailable during CWMP request: {error:#}");
    retry_later()
}

fn plain(status: StatusCode, message: &'static str) -> Response {
    (status, message).into_response()
}
