//! The connection-request listener: one HTTP server for the whole fleet, each device under
//! its own path (`/<escaped serial>`), as the ACS learns from `ConnectionRequestURL`.
//!
//! Behaves as firmware does (TR-069 §3.2.2): GET only; Digest (MD5, qop=auth) checked against
//! the device's *current* `ConnectionRequestUsername`/`ConnectionRequestPassword`, with a
//! fresh single-use nonce on every 401; 200 and then a session with `6 CONNECTION REQUEST`
//! (queued behind a running session rather than run alongside it); 503 when requests come
//! faster than one per second, or while the device reboots.
//!
//! Two firmware habits can be switched on per fleet ([`Quirks`](crate::Quirks)): an open
//! listener that checks nothing ([`CrAuth::None`]), and one that closes the TCP connection right
//! after its 401 without having said `Connection: close`, writing its challenge without commas
//! ([`Quirks::cr_close_after_challenge`](crate::Quirks::cr_close_after_challenge)).

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{AUTHORIZATION, RETRY_AFTER, WWW_AUTHENTICATE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

use crate::auth::{digest_challenge, digest_challenge_without_commas, new_nonce, verify_digest};
use crate::device::{Command, DeviceShared, DeviceState};
use crate::inform::event;
use crate::quirks::CrAuth;

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

/// How the listener behaves, from the fleet's configuration.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Settings {
    /// Connection requests closer together than this are refused with 503.
    pub min_interval: Duration,
    pub auth: CrAuth,
    /// Close the connection after each 401, without `Connection: close`, with a comma-less
    /// challenge.
    pub close_after_challenge: bool,
}

/// What the device answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    Accepted,
    Challenge { nonce: String },
    Throttled,
    Offline,
}

/// Decides on one connection request. `target` is the request's path and query; with
/// [`CrAuth::None`] the credentials are not looked at.
pub(crate) fn check(
    state: &mut DeviceState,
    authorization: Option<&str>,
    target: &str,
    min_interval: Duration,
    auth: CrAuth,
) -> Verdict {
    if state.offline {
        return Verdict::Offline;
    }
    if auth == CrAuth::None {
        return throttle(state, min_interval);
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
    throttle(state, min_interval)
}

/// Accepts an authenticated request unless the last one is too recent.
fn throttle(state: &mut DeviceState, min_interval: Duration) -> Verdict {
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

/// Answers one request. `close` is raised when the connection must end after this answer.
fn handle(
    routes: &Routes,
    request: &Request<Incoming>,
    settings: Settings,
    close: &AtomicBool,
) -> Response<Full<Bytes>> {
    let Some(device) = lookup(routes, request.uri().path()) else {
        return respond(StatusCode::NOT_FOUND);
    };
    if request.method() != Method::GET {
        return respond(StatusCode::METHOD_NOT_ALLOWED);
    }
    let target = request.uri().path_and_query().map_or("/", |pq| pq.as_str());
    let authorization = request.headers().get(AUTHORIZATION).and_then(|v| v.to_str().ok());
    let verdict = check(&mut device.lock(), authorization, target, settings.min_interval, settings.auth);
    match verdict {
        Verdict::Accepted => {
            let _ =
                device.commands.send(Command::Inform { events: vec![event("6 CONNECTION REQUEST", "")], reply: None });
            respond(StatusCode::OK)
        }
        Verdict::Challenge { nonce } => {
            let mut response = respond(StatusCode::UNAUTHORIZED);
            let challenge = if settings.close_after_challenge {
                close.store(true, Ordering::SeqCst);
                digest_challenge_without_commas(REALM, &nonce)
            } else {
                digest_challenge(REALM, &nonce)
            };
            if let Ok(value) = challenge.parse() {
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
pub(crate) async fn serve(listener: TcpListener, routes: Arc<Routes>, settings: Settings) {
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
            let close = Arc::new(AtomicBool::new(false));
            let stream = CloseAfterAnswer { inner: stream, close: close.clone(), answered: false, eof: false };
            let service = service_fn(move |request: Request<Incoming>| {
                let response = handle(&routes, &request, settings, &close);
                async move { Ok::<_, Infallible>(response) }
            });
            if let Err(error) = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await {
                tracing::debug!(%peer, %error, "connection-request connection ended");
            }
        });
    }
}

/// The listener's side of a TCP connection, able to end the connection after an answer
/// without the `Connection: close` hyper would write if keep-alive were turned off.
///
/// Once `close` is raised (by the service, before hyper encodes the answer), the next write
/// and flush carry that answer; after it, reads report end of stream, so hyper sees a client
/// that hung up, finishes and shuts the socket down. Never raised, it is a plain `TcpStream`.
struct CloseAfterAnswer {
    inner: TcpStream,
    close: Arc<AtomicBool>,
    /// Bytes were written since `close` was raised.
    answered: bool,
    /// The answer is flushed: reads end.
    eof: bool,
}

impl AsyncRead for CloseAfterAnswer {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        if self.eof {
            // The firmware keeps the socket open after its 401 (so a pooling client sees a live
            // connection) and closes it, unanswered, when the next request arrives on it.
            let mut scratch = [0u8; 1024];
            let mut discard = ReadBuf::new(&mut scratch);
            return match Pin::new(&mut self.inner).poll_read(cx, &mut discard) {
                Poll::Ready(_) => Poll::Ready(Ok(())),
                Poll::Pending => Poll::Pending,
            };
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl CloseAfterAnswer {
    fn wrote(&mut self, result: &Poll<io::Result<usize>>) {
        if matches!(result, Poll::Ready(Ok(n)) if *n > 0) && self.close.load(Ordering::SeqCst) {
            self.answered = true;
        }
    }
}

impl AsyncWrite for CloseAfterAnswer {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.wrote(&result);
        result
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.wrote(&result);
        result
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let result = Pin::new(&mut self.inner).poll_flush(cx);
        if matches!(result, Poll::Ready(Ok(()))) && self.answered && !self.eof {
            self.eof = true;
        }
        result
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Binds the listener; the bound address goes into every device's `ConnectionRequestURL`.
pub(crate) async fn bind(addr: SocketAddr) -> std::io::Result<(TcpListener, SocketAddr)> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    Ok((listener, local))
}
