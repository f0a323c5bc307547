//! Connection requests (TR-069 §3.2.2): an HTTP GET to the URL the CPE reported in its Inform,
//! authenticated with the credentials Roost gave that device. A 200 or 204 means the CPE will
//! open a session soon; it is not the session itself.

use std::sync::Arc;

use base64::Engine;
use rand::RngCore;
use reqwest::StatusCode;
use reqwest::header::{AUTHORIZATION, WWW_AUTHENTICATE};

use crate::app::App;
use crate::secrets::Secrets;
use crate::store::devices::{self, Device};
use crate::store::now_millis;
use roost_http::digest;

/// What happened, as recorded on the device and returned to the API caller.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    /// The CPE accepted; it will open a session.
    Accepted,
    /// No connection-request URL is known yet (the device has not informed one).
    NoUrl,
    /// The CPE asked for credentials and Roost has none for it (it has not finished its
    /// bootstrap).
    NoCredentials,
    /// The CPE refused our credentials.
    Unauthorized,
    /// The CPE is rate-limiting connection requests (503).
    Throttled,
    /// Any other HTTP status.
    Status { status: u16 },
    /// No HTTP answer: unreachable, refused, timed out (typically behind NAT: see TR-111).
    Unreachable { error: String },
}

impl Outcome {
    /// Its kind, as `/metrics` counts it.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Accepted => "accepted",
            Self::NoUrl => "no_url",
            Self::NoCredentials => "no_credentials",
            Self::Unauthorized => "unauthorized",
            Self::Throttled => "throttled",
            Self::Status { .. } => "status",
            Self::Unreachable { .. } => "unreachable",
        }
    }

    pub fn as_record(&self) -> String {
        match self {
            Self::Accepted => "accepted".into(),
            Self::NoUrl => "no_url".into(),
            Self::NoCredentials => "no_credentials".into(),
            Self::Unauthorized => "unauthorized".into(),
            Self::Throttled => "throttled".into(),
            Self::Status { status } => format!("status_{status}"),
            Self::Unreachable { error } => format!("unreachable: {error}"),
        }
    }
}

/// Wakes the device and records the attempt (and its listener's breaker).
pub async fn send(app: &Arc<App>, device: &Device) -> anyhow::Result<Outcome> {
    let outcome = attempt(&app.http, &app.secrets, device).await;
    let target = target(&device.connection_request_url);
    // Any HTTP answer means the listener is there; only silence counts against it.
    app.connection_request_breakers.record(&target, !matches!(outcome, Outcome::Unreachable { .. }));
    record(app, device, outcome).await
}

/// [`send`], unless the device's listener has not answered its last requests: a fleet job's
/// wake-up then waits for the breaker's next probe rather than spend a timeout on it again.
pub async fn send_unless_silent(app: &Arc<App>, device: &Device) -> anyhow::Result<Outcome> {
    let target = target(&device.connection_request_url);
    match app.connection_request_breakers.admit(&target) {
        Ok(()) => send(app, device).await,
        Err(until) => {
            let error = format!(
                "not sent: its listener answered none of the last requests; the next goes in {} s",
                until.saturating_duration_since(std::time::Instant::now()).as_secs()
            );
            record(app, device, Outcome::Unreachable { error }).await
        }
    }
}

async fn record(app: &Arc<App>, device: &Device, outcome: Outcome) -> anyhow::Result<Outcome> {
    tracing::info!(device = %device.device_id, outcome = %outcome.as_record(), "connection request");
    app.metrics.connection_requests.inc(outcome.label());
    devices::record_connection_request(&app.store, device.id, now_millis(), &outcome.as_record()).await?;
    Ok(outcome)
}

/// What a breaker is kept for: the device's listener, its whole URL. Not its host and port:
/// devices reached through one relay (a connection-request proxy, each device a path of it)
/// would all go silent for the few that do not answer.
fn target(url: &str) -> String {
    url.trim().to_owned()
}

async fn attempt(http: &reqwest::Client, secrets: &Secrets, device: &Device) -> Outcome {
    let url = device.connection_request_url.trim();
    if url.is_empty() {
        return Outcome::NoUrl;
    }
    // Many CPEs' listeners need no authentication at all: the request is always sent, and
    // credentials are needed only if a challenge comes.
    let first = match http.get(url).send().await {
        Ok(response) => response,
        Err(error) => return Outcome::Unreachable { error: describe(&error) },
    };
    let status = first.status();
    if status != StatusCode::UNAUTHORIZED {
        return classify(status);
    }
    let Some(password) = password(secrets, device) else {
        return Outcome::NoCredentials;
    };
    let username = device.connection_request_username.as_str();
    let challenge = first
        .headers()
        .get_all(WWW_AUTHENTICATE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(str::to_owned)
        .collect::<Vec<_>>();
    let authorization = match challenge.iter().find(|c| c.trim_start().to_ascii_lowercase().starts_with("digest")) {
        Some(digest_challenge) => digest_authorization(digest_challenge, username, &password, url),
        // Basic only when the CPE offers nothing better.
        None if challenge.iter().any(|c| c.trim_start().to_ascii_lowercase().starts_with("basic")) => Some(format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"))
        )),
        None => None,
    };
    let Some(authorization) = authorization else {
        return Outcome::Unauthorized;
    };
    // A new connection (the client pools none): some CPEs close theirs after the 401.
    match http.get(url).header(AUTHORIZATION, authorization).send().await {
        Ok(response) if response.status() == StatusCode::UNAUTHORIZED => Outcome::Unauthorized,
        Ok(response) => classify(response.status()),
        Err(error) => Outcome::Unreachable { error: describe(&error) },
    }
}

/// The connection-request password Roost gave the device, if any.
fn password(secrets: &Secrets, device: &Device) -> Option<String> {
    let sealed = device.connection_request_password.as_ref()?;
    match secrets.open_string(sealed) {
        Ok(password) => Some(password),
        Err(error) => {
            tracing::error!(device = %device.device_id, "cannot open the connection-request password: {error:#}");
            None
        }
    }
}

fn classify(status: StatusCode) -> Outcome {
    match status.as_u16() {
        200 | 204 => Outcome::Accepted,
        401 => Outcome::Unauthorized,
        503 => Outcome::Throttled,
        other => Outcome::Status { status: other },
    }
}

fn describe(error: &reqwest::Error) -> String {
    if error.is_timeout() {
        "timed out".into()
    } else if error.is_connect() {
        "connection failed".into()
    } else {
        error.to_string()
    }
}

fn digest_authorization(challenge: &str, username: &str, password: &str, url: &str) -> Option<String> {
    let params = digest::parse_params(challenge)?;
    let realm = digest::param(&params, "realm").unwrap_or("");
    let nonce = digest::param(&params, "nonce")?;
    let opaque = digest::param(&params, "opaque");
    let offers_auth = digest::param(&params, "qop").is_some_and(|q| q.split(',').any(|q| q.trim() == "auth"));
    // The request-target: the path (and query) of the URL, which may be more than "/".
    let uri = reqwest::Url::parse(url)
        .map(|u| match u.query() {
            Some(q) => format!("{}?{q}", u.path()),
            None => u.path().to_owned(),
        })
        .unwrap_or_else(|_| "/".into());
    let mut cnonce = [0u8; 8];
    rand::rng().fill_bytes(&mut cnonce);
    let cnonce = hex::encode(cnonce);
    let nc = "00000001";
    let (response, qop_fields) = if offers_auth {
        let response = digest::response(username, realm, password, "GET", &uri, nonce, Some(("auth", nc, &cnonce)));
        (response, format!(", qop=auth, nc={nc}, cnonce=\"{cnonce}\""))
    } else {
        (digest::response(username, realm, password, "GET", &uri, nonce, None), String::new())
    };
    let opaque = opaque.map(|o| format!(", opaque=\"{o}\"")).unwrap_or_default();
    Some(format!(
        "Digest username=\"{username}\", realm=\"{realm}\", nonce=\"{nonce}\", uri=\"{uri}\", algorithm=MD5, response=\"{response}\"{qop_fields}{opaque}"
    ))
}
