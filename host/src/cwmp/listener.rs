//! The CWMP port's listener: connection limits (in all and per address), and each
//! connection's bytes through the framer ([`framing`]) into the HTTP server.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::Router;
use axum::response::Response;
use roost_http::framing;

use super::sessions::Origin;
use super::{Gated, auth, gate, router};
use crate::app::App;
use crate::config::CpeAuthMode;

/// File descriptors kept free of CWMP connections: the HTTP listener's connections, the
/// database pool, plugin and data files; a quarter of the limit, at most this many.
const RESERVED_FILES: usize = 1024;

/// Raises the process's open-file limit to its hard limit (where allowed) and returns how many
/// CWMP connections to allow: the configured number, or what the limit leaves after the
/// reserve ([`connections_for_files`]).
pub fn connection_limit(configured: Option<usize>) -> usize {
    let files = match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => usize::try_from(limit).unwrap_or(usize::MAX),
        Err(error) => {
            tracing::warn!("cannot read or raise the open-file limit: {error}");
            1024
        }
    };
    configured.unwrap_or_else(|| connections_for_files(files))
}

/// CWMP connections for an open-file limit of `files`: the rest after a reserve of a quarter,
/// at most [`RESERVED_FILES`].
fn connections_for_files(files: usize) -> usize {
    files.saturating_sub((files / 4).min(RESERVED_FILES))
}

/// Open CWMP connections per client address: one host cannot take every connection, and CPEs
/// sharing an address behind NAT still have room.
#[derive(Debug, Default)]
struct PerAddress {
    open: Mutex<HashMap<std::net::IpAddr, usize>>,
}

impl PerAddress {
    /// Counts a connection from `client` if it has room; the count drops when the returned
    /// guard does.
    fn admit(self: &Arc<Self>, client: std::net::IpAddr, limit: usize) -> Option<AddressGuard> {
        let mut open = self.open.lock().ok()?;
        let count = open.entry(client).or_insert(0);
        if *count >= limit {
            return None;
        }
        *count += 1;
        Some(AddressGuard { counts: self.clone(), client })
    }
}

struct AddressGuard {
    counts: Arc<PerAddress>,
    client: std::net::IpAddr,
}

impl Drop for AddressGuard {
    fn drop(&mut self) {
        if let Ok(mut open) = self.counts.open.lock()
            && let Some(count) = open.get_mut(&self.client)
        {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.client);
            }
        }
    }
}

/// Says, at most every few seconds, how many connections were shed since it last said so.
#[derive(Default)]
struct ShedLog {
    shed: std::sync::atomic::AtomicU64,
    last: Mutex<Option<Instant>>,
}

impl ShedLog {
    fn note(&self, limit: usize) {
        let shed = self.shed.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        let Ok(mut last) = self.last.lock() else { return };
        if last.is_none_or(|at| at.elapsed() >= std::time::Duration::from_secs(10)) {
            *last = Some(Instant::now());
            self.shed.store(0, std::sync::atomic::Ordering::Relaxed);
            tracing::warn!(
                limit,
                shed,
                "CWMP connection limit reached (in all or for one address): new connections are answered 503 and closed"
            );
        }
    }
}

/// The answer of a connection over the limit, written without waiting and before closing.
const OVER_CAPACITY: &[u8] =
    b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 30\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";

/// Serves CWMP on `listener` until `stop` turns true. Each connection's requests pass through
/// [`framing::serve_requests`] (admission, limits, repairs) before the HTTP parser, and carry
/// the peer address (the session key of CPEs without cookies) and the gate's verdict.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Arc<App>,
    tls: Option<Arc<crate::tls::Reloading>>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let router = router(app.clone());
    let settings = framing::Settings {
        max_body: app.config.cwmp.max_body_bytes,
        idle: app.config.cwmp.session_timeout,
        request_deadline: app.config.cwmp.request_deadline,
        budget: Some(framing::Settings::budget_of(app.config.cwmp.max_body_memory)),
        strict: app.config.cwmp.auth == CpeAuthMode::Required,
    };
    let limit = connection_limit(app.config.cwmp.max_connections);
    let per_address_limit = app.config.cwmp.max_connections_per_address.min(limit);
    let open = Arc::new(tokio::sync::Semaphore::new(limit));
    let per_address = Arc::new(PerAddress::default());
    let shed = ShedLog::default();
    let trusted: Arc<[std::net::IpAddr]> = app.config.cwmp.trusted_proxies.clone().into();
    tracing::info!(limit, per_address = per_address_limit, "CWMP connections allowed");
    let mut connections = tokio::task::JoinSet::new();
    let for_connections = stop.clone();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => match (open.clone().try_acquire_owned(), per_address.admit(auth::address_key(peer.ip()), if app.config.cwmp.trusted_proxies.contains(&peer.ip()) { limit } else { per_address_limit })) {
                    (Ok(permit), Some(counted)) => {
                        let test_app = app.clone();
                        let gate_app = app.clone();
                        let encrypted = tls.is_some();
                        let gate: framing::Gate<Gated> = Arc::new(move |head| {
                            let app = gate_app.clone();
                            Box::pin(async move { gate(&app, peer, head, encrypted).await })
                        });
                        let (router, settings, trusted, stop) = (router.clone(), settings.clone(), trusted.clone(), for_connections.clone());
                        let acceptor = tls.as_ref().map(|tls| tls.acceptor());
                        let handshake = app.config.tls.handshake_timeout;
                        connections.spawn(async move {
                            let _ = stream.set_nodelay(true);
                            match acceptor {
                                // A speed test's connection goes to the TR-143 endpoints, whose
                                // bodies stream instead of being held.
                                None if super::tr143::sniff(&stream).await => super::tr143::serve(stream, test_app).await,
                                None => serve_connection(stream, peer, false, router, settings, gate, trusted, stop).await,
                                Some(acceptor) => {
                                    // The handshake is bounded like a request's head: a client
                                    // that stalls in it holds its place no longer.
                                    match tokio::time::timeout(handshake, acceptor.accept(stream)).await {
                                        Ok(Ok(mut stream)) => {
                                            let (test, first) = super::tr143::sniff_read(&mut stream).await;
                                            let stream = Replayed::new(first, stream);
                                            if test {
                                                super::tr143::serve(stream, test_app).await;
                                            } else {
                                                serve_connection(stream, peer, true, router, settings, gate, trusted, stop).await;
                                            }
                                        }
                                        Ok(Err(error)) => {
                                            test_app.metrics.tls_handshake_failures.inc("cwmp");
                                            tracing::debug!(%peer, "CWMP TLS handshake failed: {error}");
                                        }
                                        Err(_) => {
                                            test_app.metrics.tls_handshake_failures.inc("cwmp");
                                            tracing::debug!(%peer, "CWMP TLS handshake timed out");
                                        }
                                    }
                                }
                            }
                            drop((permit, counted));
                        });
                    }
                    _ => {
                        // Over the limit: a word to the client if its socket takes it now, then
                        // the descriptor is given back at once.
                        let _ = stream.try_write(OVER_CAPACITY);
                        shed.note(limit);
                    }
                },
                Err(error) => {
                    // Out of file descriptors and the like: wait instead of spinning.
                    tracing::warn!("CWMP accept failed: {error}");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            },
            _ = stop.changed() => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    while connections.join_next().await.is_some() {}
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn serve_connection<S>(
    stream: S,
    peer: SocketAddr,
    encrypted: bool,
    router: Router,
    settings: framing::Settings,
    gate: framing::Gate<Gated>,
    trusted_proxies: Arc<[std::net::IpAddr]>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    use tokio::io::AsyncWriteExt;
    let idle = settings.idle;
    let (from_cpe, mut to_cpe) = tokio::io::split(stream);
    let (server_side, framer_side) = tokio::io::duplex(16 * 1024);
    let (mut responses, requests) = tokio::io::split(framer_side);
    let verdicts: framing::Verdicts<Gated> = Arc::default();
    let inbound = tokio::spawn(framing::serve_requests(from_cpe, requests, settings, gate, verdicts.clone()));
    let outbound = tokio::spawn(async move {
        // A client that stops reading its answers is gone after the idle time, with its
        // connection: nothing waits on it forever.
        let mut chunk = vec![0u8; 16 * 1024];
        loop {
            use tokio::io::AsyncReadExt;
            let n = match responses.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            match tokio::time::timeout(idle, to_cpe.write_all(&chunk[..n])).await {
                Ok(Ok(())) => {}
                _ => break,
            }
        }
        let _ = to_cpe.shutdown().await;
    });
    let service = hyper::service::service_fn(move |mut request: axum::http::Request<hyper::body::Incoming>| {
        // The last header line, as the framer reads it: a proxy appends its own.
        let forwarded_for =
            request.headers().get_all("x-forwarded-for").iter().next_back().and_then(|v| v.to_str().ok());
        let origin = Origin::of(peer, forwarded_for, &trusted_proxies).over_tls(encrypted);
        request.extensions_mut().insert(origin);
        // One verdict per framed request, in order; none past a switch to pass-through.
        if let Some(verdict) = verdicts.lock().ok().and_then(|mut queue| queue.pop_front()) {
            request.extensions_mut().insert(verdict);
        }
        let router = router.clone();
        async move { tower_call(router, request).await }
    });
    let mut connection = Box::pin(
        hyper::server::conn::http1::Builder::new()
            .keep_alive(true)
            // A CPE may shut its write side down once its request is sent (shutdown(SHUT_WR)):
            // the request is complete and gets its answer before the connection closes.
            .half_close(true)
            .serve_connection(hyper_util::rt::TokioIo::new(server_side), service),
    );
    let stopping = tokio::select! {
        result = connection.as_mut() => {
            if let Err(error) = result {
                tracing::debug!(%peer, "CWMP connection ended: {error}");
            }
            false
        }
        _ = stop.changed() => true,
    };
    if stopping {
        connection.as_mut().graceful_shutdown();
        let _ = tokio::time::timeout(idle, connection.as_mut()).await;
    }
    // Dropping the HTTP connection drops its end of the pipe, which ends the response pump
    // (hyper does not always shut its write side down when the client goes away).
    drop(connection);
    inbound.abort();
    let _ = outbound.await;
}

/// A stream whose first bytes were read already (to tell a test from CWMP), given back to its
/// reader before the rest.
struct Replayed<S> {
    first: Vec<u8>,
    at: usize,
    inner: S,
}

impl<S> Replayed<S> {
    fn new(first: Vec<u8>, inner: S) -> Self {
        Self { first, at: 0, inner }
    }
}

impl<S: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for Replayed<S> {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if this.at < this.first.len() {
            let n = buf.remaining().min(this.first.len() - this.at);
            buf.put_slice(&this.first[this.at..this.at + n]);
            this.at += n;
            return std::task::Poll::Ready(Ok(()));
        }
        std::pin::Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl<S: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for Replayed<S> {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

async fn tower_call(
    router: Router,
    request: axum::http::Request<hyper::body::Incoming>,
) -> Result<Response, std::convert::Infallible> {
    use hyper_util::service::TowerToHyperService;
    hyper::service::Service::call(&TowerToHyperService::new(router), request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn replayed_bytes_come_before_the_rest() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (mut near, far) = tokio::io::duplex(64);
        near.write_all(b" /cwmp HTTP/1.1").await.unwrap();
        drop(near);
        let mut replayed = Replayed::new(b"POST".to_vec(), far);
        let mut all = String::new();
        replayed.read_to_string(&mut all).await.unwrap();
        assert_eq!(all, "POST /cwmp HTTP/1.1");
    }

    #[test]
    fn the_file_limit_keeps_a_reserve() {
        assert_eq!(connections_for_files(1024), 768);
        assert_eq!(connections_for_files(1_048_576), 1_048_576 - 1024);
    }

    #[test]
    fn one_address_cannot_take_every_connection() {
        let counts = Arc::new(PerAddress::default());
        let one: std::net::IpAddr = [192, 0, 2, 1].into();
        let other: std::net::IpAddr = [192, 0, 2, 2].into();
        let first = counts.admit(one, 2);
        let second = counts.admit(one, 2);
        assert!(first.is_some() && second.is_some());
        assert!(counts.admit(one, 2).is_none());
        assert!(counts.admit(other, 2).is_some(), "other addresses still have room");
        drop(first);
        assert!(counts.admit(one, 2).is_some(), "room again when a connection goes");
    }
}
