//! The client webhook deliveries go out on: HTTP/1.1, plain or over TLS, idle connections kept
//! per receiver. TLS is rustls over ring, as on the listeners, checking a receiver's certificate
//! against the system's trusted CAs and `[events] ca_file` (`tls::client_config`).
//!
//! Not reqwest, which the rest of Roost's outbound HTTP uses (connection requests, `roost
//! probe`): its rustls backend takes its crypto from aws-lc-rs (a C build with cmake) or from a
//! provider installed process-wide, which every other client of the process would then need
//! before it is built. hyper-rustls takes our configuration as it is.
//!
//! Deliveries connect directly: `HTTP_PROXY`, `HTTPS_PROXY` and `ALL_PROXY` are not followed
//! (a warning at start says so when they are set).

use std::error::Error as _;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use anyhow::{Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::{HeaderName, HeaderValue, USER_AGENT};
use hyper::{Method, Request, StatusCode, Uri};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tokio::time::Instant;

use crate::config::EventSettings;

/// What of a receiver's answer is read, so that its connection can carry the next delivery;
/// a longer answer is dropped unread with its connection.
const ANSWER_READ: usize = 64 * 1024;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Why a delivery got no status from its receiver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendFailure {
    /// No answer within `[events] timeout`, connecting included.
    Timeout(Duration),
    /// No connection: the name did not resolve, or the address refused or dropped it.
    Unreachable,
    /// The receiver's certificate was refused: why, as rustls says it.
    Certificate(String),
    /// TLS failed otherwise: no common version or suite, an alert, the connection closed in the
    /// handshake.
    Tls(String),
    /// The connection ended, or the answer was not HTTP, before a status.
    Connection,
    /// The request could not be made of the stored webhook (its URL or a header).
    Request(String),
}

impl std::fmt::Display for SendFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SendFailure::Timeout(timeout) => write!(f, "no answer within {} s", timeout.as_secs_f32()),
            SendFailure::Unreachable => f.write_str("the receiver could not be reached"),
            SendFailure::Certificate(why) => write!(f, "the receiver's certificate was refused: {why}"),
            SendFailure::Tls(why) => write!(f, "TLS with the receiver failed: {why}"),
            SendFailure::Connection => f.write_str("the connection failed before an answer"),
            SendFailure::Request(why) => write!(f, "the request could not be made: {why}"),
        }
    }
}

/// Sends deliveries.
#[derive(Clone, Debug)]
pub struct WebhookClient {
    client: Client<Bounded<HttpsConnector<HttpConnector>>, Full<Bytes>>,
    timeout: Duration,
}

impl WebhookClient {
    /// A client bounded by `settings.timeout`, trusting the system's CAs and `settings.ca_file`:
    /// a CA file that cannot be read stops the server at start.
    pub fn new(settings: &EventSettings) -> Result<Self> {
        let tls = crate::tls::client_config(settings.ca_file.as_deref()).context("the webhooks' TLS")?;
        let mut http = HttpConnector::new();
        // https URLs reach this connector too, for the TLS layer to wrap.
        http.enforce_http(false);
        http.set_nodelay(true);
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            // Without a timer, idle connections would only be dropped when their receiver is
            // sent to again: a webhook moved elsewhere would keep its old ones open.
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(settings.webhook_concurrency.max(1))
            .build(Bounded { inner: https, timeout: settings.timeout });
        for proxy in ["HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"] {
            if std::env::var_os(proxy).is_some_and(|value| !value.is_empty()) {
                tracing::warn!("{proxy} is set: webhook deliveries do not go through proxies, they connect directly");
                break;
            }
        }
        Ok(Self { client, timeout: settings.timeout })
    }

    /// POSTs `body` to `url` with `headers`: the receiver's status, or why there is none. The
    /// status counts once it arrives within the timeout: what follows it is read (to keep the
    /// connection) only while time is left, so a 2xx with a slow body is still delivered.
    pub async fn post(
        &self,
        url: &str,
        headers: &[(HeaderName, String)],
        body: String,
    ) -> Result<StatusCode, SendFailure> {
        let uri: Uri = url.parse().map_err(|e: hyper::http::uri::InvalidUri| SendFailure::Request(e.to_string()))?;
        let mut request = Request::builder().method(Method::POST).uri(uri);
        request = request.header(USER_AGENT, concat!("Roost-Webhooks/", env!("CARGO_PKG_VERSION")));
        for (name, value) in headers {
            let value = HeaderValue::from_str(value).map_err(|e| SendFailure::Request(format!("{name}: {e}")))?;
            request = request.header(name, value);
        }
        let request = request.body(Full::new(Bytes::from(body))).map_err(|e| SendFailure::Request(e.to_string()))?;
        let deadline = Instant::now() + self.timeout;
        let response = match tokio::time::timeout_at(deadline, self.client.request(request)).await {
            Err(_) => return Err(SendFailure::Timeout(self.timeout)),
            Ok(Err(error)) => return Err(failure(&error, self.timeout)),
            Ok(Ok(response)) => response,
        };
        let status = response.status();
        let _ = tokio::time::timeout_at(deadline, Limited::new(response.into_body(), ANSWER_READ).collect()).await;
        Ok(status)
    }
}

/// A connector whose connections, TLS handshake included, take at most `timeout`. The request's
/// own timeout does not cover them all: the pool finishes a connection it started in the
/// background when another frees up first, and only this bounds that one.
#[derive(Clone, Debug)]
struct Bounded<C> {
    inner: C,
    timeout: Duration,
}

/// A connection not made within [`Bounded`]'s time.
#[derive(Debug)]
struct ConnectTimeout;

impl std::fmt::Display for ConnectTimeout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connecting took too long")
    }
}

impl std::error::Error for ConnectTimeout {}

impl<C> tower_service::Service<Uri> for Bounded<C>
where
    C: tower_service::Service<Uri>,
    C::Error: Into<BoxError>,
    C::Future: Send + 'static,
{
    type Response = C::Response;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<C::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let connecting = self.inner.call(uri);
        let timeout = self.timeout;
        Box::pin(async move {
            match tokio::time::timeout(timeout, connecting).await {
                Ok(connected) => connected.map_err(Into::into),
                Err(_) => Err(Box::new(ConnectTimeout) as BoxError),
            }
        })
    }
}

/// Says why a request failed. hyper-rustls hands a failure of the TLS stage as an io::Error and
/// one of the TCP stage as the TCP connector's own error, so a connection closed in the
/// handshake is told from one never made.
fn failure(error: &hyper_util::client::legacy::Error, timeout: Duration) -> SendFailure {
    let cause = error.source();
    match cause.and_then(rustls_error) {
        Some(rustls::Error::InvalidCertificate(why)) => return SendFailure::Certificate(why.to_string()),
        Some(other) => return SendFailure::Tls(other.to_string()),
        None => {}
    }
    match cause {
        Some(cause) if cause.is::<ConnectTimeout>() => SendFailure::Timeout(timeout),
        Some(cause) if error.is_connect() && cause.is::<std::io::Error>() => SendFailure::Tls(cause.to_string()),
        _ if error.is_connect() => SendFailure::Unreachable,
        _ => SendFailure::Connection,
    }
}

/// The rustls error `error` wraps, however deep. tokio-rustls hands it inside an io::Error,
/// and hyper-rustls wraps that in another; an io::Error keeps what it wraps in `get_ref`,
/// which its `source` skips.
fn rustls_error<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    if let Some(tls) = error.downcast_ref::<rustls::Error>() {
        return Some(tls);
    }
    let inner = match error.downcast_ref::<std::io::Error>() {
        Some(io) => io.get_ref().map(|inner| inner as &(dyn std::error::Error + 'static)),
        None => error.source(),
    };
    inner.and_then(rustls_error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rustls_error_is_found_inside_the_io_errors_around_it() {
        let refused = rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
        // As hyper-rustls returns it: io::Error::other around tokio-rustls's io::Error.
        let handshake = std::io::Error::new(std::io::ErrorKind::InvalidData, refused.clone());
        let connector: BoxError = Box::new(std::io::Error::other(handshake));
        assert_eq!(rustls_error(connector.as_ref()), Some(&refused));
        let refused_connection: BoxError = Box::new(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        assert_eq!(rustls_error(refused_connection.as_ref()), None);
    }
}
