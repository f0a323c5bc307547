//! The connection-request listener: one HTTP server for the whole fleet, each device under
//! its own path (`/<escaped serial>`), as the ACS learns from `ConnectionRequestURL`.
//!
//! Behaves as firmware does (TR-069 §3.2.2): GET only; Digest (MD5, qop=auth) checked against
//! the device's *current* `ConnectionRequestUsername`/`ConnectionRequestPassword`, with a
//! fresh single-use nonce on every 401; 200 and then a session with `6 CONNECTION REQUEST`
//! (queued behind a running session rather than run alongside it); 503 when requests come
//! faster than one per second, or while the device reboots.

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{AUTHORIZATION, RETRY_AFTER, WWW_AUTHENTICATE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::auth::{digest_challenge, new_nonce, verify_digest};
use crate::device::{Command, DeviceShared, DeviceState};
use crate::inform::event;

/// The Digest realm the simulated CPEs announce.
pub const REALM: &str = "roost-sim";
/// How long an issued nonce stays good: long enough for the ACS's immediate retry.
const NONCE_TTL: Duration = Duration::from_secs(60);
/// Nonces remembered per device; older ones are forgotten first.
const MAX_NONCES: usize = 8;

/// Per-device connection-request bookkeeping.
#[derive(Debug, Default)]
pub(crate) struct CrGuard {
    nonces: VecDeque<(String, Instant)>,
    last_accepted: Option<Instant>,
}

impl CrGuard {
    fn issue_nonce(&mut self) -> String {
        let nonce = new_nonce();
        self.nonces.push_back((nonce.clone(), Instant::now()));
        while self.nonces.len() > MAX_NONCES {
            self.nonces.pop_front();
        }
        nonce
    }

    /// Whether the nonce was issued here and is still fresh; it is used up either way.
    fn take_nonce(&mut self, nonce: &str) -> bool {
        let Some(i) = self.nonces.iter().position(|(n, _)| n == nonce) else { return false };
        self.nonces.remove(i).is_some_and(|(_, issued)| issued.elapsed() < NONCE_TTL)
    }
}

/// What the device answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    Accepted,
    Challenge { nonce: String },
    Throttled,
    Offline,
}

/// Decides on one connection request. `target` is the request's path and query.
pub(crate) fn check(
    state: &mut DeviceState,
    authorization: Option<&str>,
    target: &str,
    min_interval: Duration,
) -> Verdict {
    if state.offline {
        return Verdict::Offline;
    }
    let root = state.cpe.tree.root().to_owned();
    let value =
        |name: &str| state.cpe.value(&format!("{root}ManagementServer.{name}")).map(|(v, _)| v).unwrap_or_default();
    let username = value("ConnectionRequestUsername");
    let password = value("ConnectionRequestPassword");
    let verified = authorization.is_some_and(|header| {
        let result = verify_digest(header, "GET", target, REALM, &username, &password, |n| state.cr.take_nonce(n));
        if let Err(reason) = &result {
            tracing::debug!(%reason, "connection request refused");
        }
        result.is_ok()
    });
    if !verified {
        return Verdict::Challenge { nonce: state.cr.issue_nonce() };
    }
    let now = Instant::now();
    if state.cr.last_accepted.is_some_and(|last| now.duration_since(last) < min_interval) {
        return Verdict::Throttled;
    }
    state.cr.last_accepted = Some(now);
    Verdict::Accepted
}

/// Devices by the path of their connection-request URL.
pub(crate) type Routes = HashMap<String, Arc<DeviceShared>>;

/// The path a device's connection-request URL uses.
pub fn path_for(serial_number: &str) -> String {
    format!("/{}", roost_cwmp::device_id::escape_part(serial_number))
}

fn lookup<'a>(routes: &'a Routes, path: &str) -> Option<&'a Arc<DeviceShared>> {
    routes.get(path).or_else(|| {
        // An ACS may normalise `%2D` back to `-`: match on the decoded serial as well.
        let decoded = percent_decode(path.strip_prefix('/')?)?;
        routes.get(&path_for(&decoded))
    })
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

fn respond(status: StatusCode) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = status;
    response
}

fn handle(routes: &Routes, request: &Request<Incoming>, min_interval: Duration) -> Response<Full<Bytes>> {
    let Some(device) = lookup(routes, request.uri().path()) else {
        return respond(StatusCode::NOT_FOUND);
    };
    if request.method() != Method::GET {
        return respond(StatusCode::METHOD_NOT_ALLOWED);
    }
    let target = request.uri().path_and_query().map_or("/", |pq| pq.as_str());
    let authorization = request.headers().get(AUTHORIZATION).and_then(|v| v.to_str().ok());
    let verdict = check(&mut device.lock(), authorization, target, min_interval);
    match verdict {
        Verdict::Accepted => {
            let _ =
                device.commands.send(Command::Inform { events: vec![event("6 CONNECTION REQUEST", "")], reply: None });
            respond(StatusCode::OK)
        }
        Verdict::Challenge { nonce } => {
            let mut response = respond(StatusCode::UNAUTHORIZED);
            if let Ok(value) = digest_challenge(REALM, &nonce).parse() {
                response.headers_mut().insert(WWW_AUTHENTICATE, value);
            }
            response
        }
        Verdict::Throttled | Verdict::Offline => {
            let mut response = respond(StatusCode::SERVICE_UNAVAILABLE);
            response.headers_mut().insert(RETRY_AFTER, hyper::header::HeaderValue::from_static("1"));
            response
        }
    }
}

/// Serves connection requests until the task is dropped.
pub(crate) async fn serve(listener: TcpListener, routes: Arc<Routes>, min_interval: Duration) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                // Out of file descriptors under load: back off instead of spinning.
                tracing::warn!(%error, "connection-request accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let routes = routes.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request: Request<Incoming>| {
                let response = handle(&routes, &request, min_interval);
                async move { Ok::<_, Infallible>(response) }
            });
            if let Err(error) = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await {
                tracing::debug!(%peer, %error, "connection-request connection ended");
            }
        });
    }
}

/// Binds the listener; the bound address goes into every device's `ConnectionRequestURL`.
pub(crate) async fn bind(addr: SocketAddr) -> std::io::Result<(TcpListener, SocketAddr)> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    Ok((listener, local))
}
