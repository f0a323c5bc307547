//! The TCP connection one session runs on.
//!
//! Firmware opens a connection when a session starts, keeps it alive for every POST of the
//! session and closes it at the end; it never lends it to another device. A pooled HTTP
//! client would do exactly that under load — hand device B the idle connection device A is
//! still in session on — which an ACS that finds sessions by connection (for CPEs that drop
//! cookies) cannot tell from a protocol violation. So each session gets its own connection,
//! reopened only if the ACS closes it between requests.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::header::{CONNECTION, CONTENT_LENGTH, HOST, HeaderMap, HeaderName, USER_AGENT};
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

use super::SessionError;

/// What firmware puts in `User-Agent`; ACSs log it, none should depend on it.
const AGENT: &str = concat!("roost-sim/", env!("CARGO_PKG_VERSION"));

pub(crate) struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
}

struct Connection {
    sender: SendRequest<Full<Bytes>>,
    driver: JoinHandle<()>,
}

pub(crate) struct Transport {
    host: String,
    port: u16,
    authority: String,
    timeout: Duration,
    /// For `https://`: how the ACS is checked (its CA) and, for mutual TLS, this device's
    /// certificate.
    tls: Option<Arc<rustls::ClientConfig>>,
    connection: Option<Connection>,
    /// One entry per TLS handshake made so far: whether it resumed an earlier TLS session.
    pub tls_resumed: Vec<bool>,
}

impl Transport {
    pub fn new(
        url: &reqwest::Url,
        timeout: Duration,
        tls: Option<&Arc<rustls::ClientConfig>>,
    ) -> Result<Self, SessionError> {
        let tls = match (url.scheme(), tls) {
            ("http", _) => None,
            ("https", Some(tls)) => Some(tls.clone()),
            ("https", None) => {
                return Err(SessionError::BadUrl(format!("{url}: https needs the ACS's CA (--ca-file)")));
            }
            _ => return Err(SessionError::BadUrl(format!("{url}: http:// or https:// only"))),
        };
        let host = url.host_str().ok_or_else(|| SessionError::BadUrl(url.to_string()))?;
        let port = url.port_or_known_default().unwrap_or(80);
        let authority = match url.port() {
            Some(port) => format!("{host}:{port}"),
            None => host.to_owned(),
        };
        // `Url` keeps IPv6 literals bracketed; the socket API wants them bare.
        let host = host.trim_start_matches('[').trim_end_matches(']').to_owned();
        Ok(Self { host, port, authority, timeout, tls, connection: None, tls_resumed: Vec::new() })
    }

    /// A new connection, and for TLS whether its handshake resumed an earlier session.
    async fn connect(&self) -> Result<(Connection, Option<bool>), SessionError> {
        let stream = TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(|e| SessionError::Transport(format!("connecting to {}: {e}", self.authority)))?;
        // Each CWMP message is one small write; do not let Nagle hold it back.
        let _ = stream.set_nodelay(true);
        let Some(tls) = &self.tls else { return Ok((self.speak(stream).await?, None)) };
        let name = rustls::pki_types::ServerName::try_from(self.host.clone())
            .map_err(|e| SessionError::BadUrl(format!("{}: {e}", self.host)))?;
        let stream = tokio_rustls::TlsConnector::from(tls.clone())
            .connect(name, stream)
            .await
            .map_err(|e| SessionError::Transport(format!("TLS handshake with {}: {e}", self.authority)))?;
        let resumed = stream.get_ref().1.handshake_kind() == Some(rustls::HandshakeKind::Resumed);
        Ok((self.speak(stream).await?, Some(resumed)))
    }

    /// HTTP/1.1 over an open connection, plain or TLS.
    async fn speak<T>(&self, io: T) -> Result<Connection, SessionError>
    where
        T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
    {
        let (sender, connection) = http1::handshake(TokioIo::new(io))
            .await
            .map_err(|e| SessionError::Transport(format!("HTTP handshake with {}: {e}", self.authority)))?;
        let driver = tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(Connection { sender, driver })
    }

    /// Sends one POST to `target` and reads the whole answer.
    pub async fn post(
        &mut self,
        target: &str,
        headers: &[(HeaderName, String)],
        body: Bytes,
    ) -> Result<Reply, SessionError> {
        let timeout = self.timeout;
        tokio::time::timeout(timeout, self.post_inner(target, headers, body))
            .await
            .map_err(|_| SessionError::Timeout(timeout))?
    }

    async fn post_inner(
        &mut self,
        target: &str,
        headers: &[(HeaderName, String)],
        body: Bytes,
    ) -> Result<Reply, SessionError> {
        loop {
            let reused = match self.connection.take() {
                Some(c) if !c.sender.is_closed() => {
                    self.connection = Some(c);
                    true
                }
                _ => {
                    let (connection, resumed) = self.connect().await?;
                    self.tls_resumed.extend(resumed);
                    self.connection = Some(connection);
                    false
                }
            };
            let Some(connection) = self.connection.as_mut() else { continue };
            let mut request = Request::builder()
                .method(Method::POST)
                .uri(target)
                .header(HOST, &self.authority)
                .header(USER_AGENT, AGENT)
                .header(CONTENT_LENGTH, body.len());
            for (name, value) in headers {
                request = request.header(name, value);
            }
            let request = request
                .body(Full::new(body.clone()))
                .map_err(|e| SessionError::Transport(format!("building the request: {e}")))?;
            let sent = match connection.sender.ready().await {
                Ok(()) => connection.sender.send_request(request).await,
                Err(e) => Err(e),
            };
            let response = match sent {
                Ok(response) => response,
                // The ACS closed the kept-alive connection between two requests: nothing
                // was processed, so the request goes again on a fresh connection.
                Err(e) if reused && (e.is_canceled() || e.is_closed() || e.is_incomplete_message()) => {
                    self.close();
                    continue;
                }
                Err(e) => {
                    self.close();
                    return Err(SessionError::Transport(e.to_string()));
                }
            };
            let (parts, incoming) = response.into_parts();
            let body =
                incoming.collect().await.map_err(|e| SessionError::Transport(format!("reading the answer: {e}")))?;
            let closing = parts
                .headers
                .get(CONNECTION)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.eq_ignore_ascii_case("close"));
            if closing {
                self.close();
            }
            return Ok(Reply { status: parts.status.as_u16(), headers: parts.headers, body: body.to_bytes() });
        }
    }

    /// Drops the connection (aborting its driver closes the socket).
    pub(crate) fn close(&mut self) {
        if let Some(connection) = self.connection.take() {
            connection.driver.abort();
        }
    }
}

impl Drop for Transport {
    fn drop(&mut self) {
        self.close();
    }
}
