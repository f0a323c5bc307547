//! Connection requests (TR-069 §3.2.2): an HTTP GET to the URL the CPE reported in its Inform,
//! authenticated with the credentials Roost gave that device. A 200 or 204 means the CPE will
//! open a session soon; it is not the session itself.
//!
//! A device behind NAT cannot be reached that way. When its HTTP listener does not answer (or
//! sits at a private address) and its STUN client keeps a UDP binding open (TR-111), the
//! request goes as a signed UDP datagram through that binding instead (TR-069 Annex G), from
//! the STUN server's socket. Nothing answers a UDP request: the session it starts is the proof.

use std::net::SocketAddr;
use std::sync::Arc;

use base64::Engine;
use rand::RngCore;
use reqwest::StatusCode;
use reqwest::header::{AUTHORIZATION, WWW_AUTHENTICATE};

use crate::app::App;
use crate::replicas::Signal;
use crate::secrets::Secrets;
use crate::store::devices::{self, Device};
use crate::store::now_millis;
use roost_cwmp::stun::UdpConnectionRequest;
use roost_http::digest;

/// What happened, as recorded on the device and returned to the API caller.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    /// The CPE accepted; it will open a session.
    Accepted,
    /// Sent over UDP to the device's NAT binding (its HTTP listener unreachable); UDP has no
    /// answer, so only the session that follows tells that it arrived.
    UdpSent { address: String },
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
            Self::UdpSent { .. } => "sent",
            Self::NoUrl => "no_url",
            Self::NoCredentials => "no_credentials",
            Self::Unauthorized => "unauthorized",
            Self::Throttled => "throttled",
            Self::Status { .. } => "status",
            Self::Unreachable { .. } => "unreachable",
        }
    }

    /// How it travelled, as `/metrics` counts it.
    pub fn transport(&self) -> &'static str {
        match self {
            Self::UdpSent { .. } => "udp",
            _ => "http",
        }
    }

    /// Whether the request reached the device, as far as Roost can know: the session that
    /// follows is worth waiting for.
    pub fn is_delivered(&self) -> bool {
        matches!(self, Self::Accepted | Self::UdpSent { .. })
    }

    pub fn as_record(&self) -> String {
        match self {
            Self::Accepted => "accepted".into(),
            Self::UdpSent { address } => format!("udp_sent: {address}"),
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
    let udp = udp_binding(app, device);
    let outcome = if udp.is_some() && is_private_listener(&device.connection_request_url) {
        // Behind NAT, with a binding: its private URL is no use from here.
        Outcome::Unreachable { error: "its URL is a private address".into() }
    } else {
        let outcome = attempt(&app.http, &app.secrets, device).await;
        // Any HTTP answer means the listener is there; only silence counts against it.
        let target = target(&device.connection_request_url);
        app.connection_request_breakers.record(&target, !matches!(outcome, Outcome::Unreachable { .. }));
        outcome
    };
    let outcome = match (outcome, udp) {
        (Outcome::Unreachable { .. } | Outcome::NoUrl, Some(binding)) => send_udp(app, device, binding).await,
        (outcome, _) => outcome,
    };
    record(app, device, outcome).await
}

/// [`send`], unless the device's listener has not answered its last requests: a fleet job's
/// wake-up then waits for the breaker's next probe rather than spend a timeout on it again (a
/// device with a UDP binding is sent to over UDP meanwhile).
pub async fn send_unless_silent(app: &Arc<App>, device: &Device) -> anyhow::Result<Outcome> {
    let target = target(&device.connection_request_url);
    match app.connection_request_breakers.admit(&target) {
        Ok(()) => send(app, device).await,
        Err(until) => {
            let outcome = match udp_binding(app, device) {
                Some(binding) => send_udp(app, device, binding).await,
                None => Outcome::Unreachable {
                    error: format!(
                        "not sent: its listener answered none of the last requests; the next goes in {} s",
                        until.saturating_duration_since(std::time::Instant::now()).as_secs()
                    ),
                },
            };
            record(app, device, outcome).await
        }
    }
}

/// The device's UDP binding, as its STUN client last proved it, unless the store has not heard
/// of it for `[stun] binding_lifetime`.
fn udp_binding(app: &App, device: &Device) -> Option<SocketAddr> {
    let lifetime = i64::try_from(app.config.stun.binding_lifetime.as_millis()).unwrap_or(i64::MAX);
    if !is_fresh(device.udp_binding_at, now_millis(), lifetime) {
        return None;
    }
    device.udp_connection_request_address.parse().ok()
}

fn is_fresh(at: Option<i64>, now: i64, lifetime: i64) -> bool {
    at.is_some_and(|at| now.saturating_sub(at) <= lifetime)
}

/// Whether the listener's URL names a private address (RFC 1918, carrier-grade NAT, link-local,
/// IPv6 unique local): what a CPE behind NAT reports. Loopback is not: a lab's devices live
/// there.
fn is_private_listener(url: &str) -> bool {
    let Ok(url) = reqwest::Url::parse(url.trim()) else { return false };
    let host = url.host_str().unwrap_or_default();
    match host.trim_start_matches('[').trim_end_matches(']').parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(ip)) => {
            let [a, b, ..] = ip.octets();
            ip.is_private() || ip.is_link_local() || (a == 100 && (64..128).contains(&b))
        }
        // Unique local and link-local IPv6 (fc00::/7, fe80::/10).
        Ok(std::net::IpAddr::V6(ip)) => (ip.segments()[0] & 0xfe00) == 0xfc00 || (ip.segments()[0] & 0xffc0) == 0xfe80,
        Err(_) => false,
    }
}

/// Sends the signed UDP connection request through the device's binding, from the STUN
/// server's socket.
async fn send_udp(app: &Arc<App>, device: &Device, binding: SocketAddr) -> Outcome {
    let Some(server) = app.stun.get() else {
        return Outcome::Unreachable { error: "its UDP binding needs the STUN server, which is off".into() };
    };
    let Some(password) = password(&app.secrets, device) else {
        return Outcome::NoCredentials;
    };
    let address = binding.to_string();
    let mut cnonce = [0u8; 8];
    rand::rng().fill_bytes(&mut cnonce);
    let message = UdpConnectionRequest {
        timestamp: u64::try_from(now_millis() / 1000).unwrap_or(0),
        id: rand::random(),
        username: device.connection_request_username.clone(),
        cnonce: hex::encode(cnonce),
    };
    let datagram = message.encode(&address, &password).into_bytes();
    let stun = &app.config.stun;
    // With several replicas, the device's NAT lets in only the one its STUN requests reach:
    // unless that is this one, it sends the same message (the others do nothing).
    if !server.remembers(&device.device_id, binding) {
        let wake =
            Signal::UdpWake { device_id: device.device_id.clone(), address: binding, datagram: datagram.clone() };
        crate::replicas::tell_others(app, wake);
    }
    match server.send_copies(binding, datagram, stun.copies, stun.copy_interval).await {
        Ok(()) => Outcome::UdpSent { address },
        Err(error) => Outcome::Unreachable { error: format!("UDP: {error:#}") },
    }
}

async fn record(app: &Arc<App>, device: &Device, outcome: Outcome) -> anyhow::Result<Outcome> {
    tracing::info!(device = %device.device_id, outcome = %outcome.as_record(), "connection request");
    app.metrics.connection_requests.inc(outcome.transport(), outcome.label());
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_binding_the_store_has_not_heard_of_for_its_lifetime_is_not_used() {
        assert!(is_fresh(Some(1_000), 5_000, 4_000));
        assert!(!is_fresh(Some(1_000), 5_001, 4_000));
        assert!(!is_fresh(None, 5_000, 4_000));
    }

    #[test]
    fn a_private_listener_is_told_from_a_reachable_one() {
        for private in [
            "http://192.168.1.1:7547/",
            "http://10.0.0.2/cr",
            "http://172.20.0.1:30005/",
            "http://100.72.1.9:7547",
            "http://169.254.0.5:7547/",
            "http://[fd00::1]:7547/",
            "http://[fe80::1]:7547/",
        ] {
            assert!(is_private_listener(private), "{private}");
        }
        for reachable in [
            "http://127.0.0.1:7547/",
            "http://203.0.113.9:7547/",
            "http://[2001:db8::1]/",
            "http://cpe.example/",
            "",
            "nonsense",
        ] {
            assert!(!is_private_listener(reachable), "{reachable}");
        }
    }
}
