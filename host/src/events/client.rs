//! The client webhook deliveries go out on: HTTP/1.1, plain or over TLS, a connection pool per
//! receiver. TLS is rustls over ring, as on the listeners, checking a receiver's certificate
//! against the system's trusted CAs and `[events] ca_file` (`tls::client_config`).
//!
//! Not reqwest, which the rest of Roost's outbound HTTP uses (connection requests, `roost
//! probe`): its rustls backend takes its crypto from aws-lc-rs (a C build with cmake) or from a
//! provider installed process-wide, which every other client of the process would then need
//! before it is built. hyper-rustls takes our configuration as it is.

use std::error::Error as _;
use std::time::Duration;

use anyhow::{Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::{HeaderName, HeaderValue, USER_AGENT};
use hyper::{Method, Request, StatusCode, Uri};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use crate::config::EventSettings;

/// What of a receiver's answer is read, so that its connection can carry the next delivery;
/// a longer answer is dropped unread with its connection.
const ANSWER_READ: usize = 64 * 1024;

/// Why a delivery got no status from its receiver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendFailure {
    /// No answer within `[events] timeout`, connecting included.
    Timeout(Duration),
    /// The receiver's address refused or did not take the connection.
    Unreachable,
    /// The receiver's certificate was refused: why, as rustls says it.
    Certificate(String),
    /// The TLS handshake failed otherwise (no common version or suite, an alert).
    Handshake(String),
    /// The connection ended, or the answer was not HTTP, before a status.
    Connection,
    /// The stored URL is not one a request can go to (it was checked when the webhook was made).
    Url(String),
}

impl std::fmt::Display for SendFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SendFailure::Timeout(timeout) => write!(f, "no answer within {} s", timeout.as_secs_f32()),
            SendFailure::Unreachable => f.write_str("the receiver could not be reached"),
            SendFailure::Certificate(why) => write!(f, "the receiver's certificate was refused: {why}"),
            SendFailure::Handshake(why) => write!(f, "the TLS handshake with the receiver failed: {why}"),
            SendFailure::Connection => f.write_str("the connection failed before an answer"),
            SendFailure::Url(why) => write!(f, "its URL cannot be requested: {why}"),
        }
    }
}

/// Sends deliveries.
#[derive(Clone, Debug)]
pub struct WebhookClient {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
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
        http.set_connect_timeout(Some(settings.timeout));
        http.set_nodelay(true);
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new()).pool_idle_timeout(Duration::from_secs(30)).build(connector);
        Ok(Self { client, timeout: settings.timeout })
    }

    /// POSTs `body` to `url` with `headers`: the receiver's status, or why there is none.
    pub async fn post(
        &self,
        url: &str,
        headers: &[(HeaderName, String)],
        body: String,
    ) -> Result<StatusCode, SendFailure> {
        let uri: Uri = url.parse().map_err(|e: hyper::http::uri::InvalidUri| SendFailure::Url(e.to_string()))?;
        let mut request = Request::builder().method(Method::POST).uri(uri);
        request = request.header(USER_AGENT, concat!("Roost-Webhooks/", env!("CARGO_PKG_VERSION")));
        for (name, value) in headers {
            let value = HeaderValue::from_str(value).map_err(|e| SendFailure::Url(format!("{name}: {e}")))?;
            request = request.header(name, value);
        }
        let request = request.body(Full::new(Bytes::from(body))).map_err(|e| SendFailure::Url(e.to_string()))?;
        let exchange = async {
            let response = self.client.request(request).await.map_err(|e| failure(&e))?;
            let status = response.status();
            // Read (and drop) a short answer, so the connection goes back to the pool.
            let _ = Limited::new(response.into_body(), ANSWER_READ).collect().await;
            Ok(status)
        };
        tokio::time::timeout(self.timeout, exchange).await.unwrap_or(Err(SendFailure::Timeout(self.timeout)))
    }
}

/// Says why a request failed: a rustls error (the certificate, or the handshake otherwise), a
/// connection not made, or one that ended before an answer.
fn failure(error: &hyper_util::client::legacy::Error) -> SendFailure {
    match error.source().and_then(rustls_error) {
        Some(rustls::Error::InvalidCertificate(why)) => SendFailure::Certificate(why.to_string()),
        Some(other) => SendFailure::Handshake(other.to_string()),
        None if error.is_connect() => SendFailure::Unreachable,
        None => SendFailure::Connection,
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
        let connector: Box<dyn std::error::Error + Send + Sync> = Box::new(std::io::Error::other(handshake));
        assert_eq!(rustls_error(connector.as_ref()), Some(&refused));
        let refused_connection: Box<dyn std::error::Error + Send + Sync> =
            Box::new(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        assert_eq!(rustls_error(refused_connection.as_ref()), None);
    }
}
