//! Roost's own TR-143 test endpoints, on the CWMP port, so a speed test needs no server of its
//! own: `GET /tr143/download/{token}?size=N` sends N bytes made as they go, and
//! `PUT`/`POST /tr143/upload/{token}` counts what it is sent and keeps none of it. The same door
//! serves stored files to devices (`GET /files/{token}`, `cwmp/files.rs`).
//!
//! A connection whose first request line names `/tr143/` or `/files/` is served here instead of
//! by the CWMP framer, which holds whole bodies in memory: a test moves up to
//! `[diagnostics] max_transfer_bytes` as a stream. The token in the path is the credential, one
//! per test and good while its run is open; it is checked from the request head, before a byte
//! of an upload is read, and a wrong one costs a 404 and the connection.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Method, Request, Response, StatusCode};

use crate::app::App;
use crate::store::diagnostics;

/// What a test may take at most, whatever its size: a slow line moving a large test.
const TEST_DEADLINE: Duration = Duration::from_secs(15 * 60);

/// How long the first request line may take to arrive before the connection is taken for CWMP.
const SNIFF_DEADLINE: Duration = Duration::from_secs(5);

/// How long a test request's head may take.
const HEAD_DEADLINE: Duration = Duration::from_secs(10);

/// The bytes a download is made of: the same block sent again and again.
static BLOCK: [u8; 64 * 1024] = [0x5a; 64 * 1024];

/// A request to one of the endpoints.
#[derive(Debug, PartialEq, Eq)]
pub enum Endpoint<'a> {
    Download { token: &'a str, size: u64 },
    Upload { token: &'a str },
}

/// The request lines served here rather than by the CWMP framer.
const STREAMED: [&str; 6] =
    ["GET /tr143/", "HEAD /tr143/", "PUT /tr143/", "POST /tr143/", "GET /files/", "HEAD /files/"];

/// Whether a connection's first bytes are a request line for the test endpoints or a file.
pub fn is_test_request(first: &[u8]) -> bool {
    STREAMED.iter().any(|start| first.starts_with(start.as_bytes()))
}

/// The endpoint a request names, or `None` (404). `size` must be a whole number of bytes up to
/// `max`.
pub fn route<'a>(method: &Method, path: &'a str, query: Option<&str>, max: u64) -> Option<Endpoint<'a>> {
    let token_of = |rest: &'a str| {
        (!rest.is_empty() && rest.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')).then_some(rest)
    };
    if let Some(rest) = path.strip_prefix("/tr143/download/") {
        if *method != Method::GET && *method != Method::HEAD {
            return None;
        }
        let size = query?.split('&').find_map(|pair| pair.strip_prefix("size="))?.parse::<u64>().ok()?;
        return (size <= max).then_some(Endpoint::Download { token: token_of(rest)?, size });
    }
    if let Some(rest) = path.strip_prefix("/tr143/upload/") {
        if *method != Method::PUT && *method != Method::POST {
            return None;
        }
        return Some(Endpoint::Upload { token: token_of(rest)? });
    }
    None
}

/// What a connection's first bytes say: a test (or file) request, CWMP, or not yet known.
fn classify(seen: &[u8]) -> Option<bool> {
    if is_test_request(seen) {
        return Some(true);
    }
    let could_be = STREAMED.iter().any(|s| s.as_bytes().starts_with(seen));
    (!could_be).then_some(false)
}

/// The most bytes [`classify`] needs.
const SNIFFED: usize = 13;

/// Waits for a connection's first bytes (without consuming them) to tell a test from CWMP.
pub async fn sniff(stream: &tokio::net::TcpStream) -> bool {
    let mut first = [0u8; SNIFFED];
    let deadline = tokio::time::Instant::now() + SNIFF_DEADLINE;
    loop {
        let peeked = tokio::time::timeout_at(deadline, stream.peek(&mut first)).await;
        let Ok(Ok(n)) = peeked else { return false };
        if n == 0 {
            return false;
        }
        if let Some(test) = classify(&first[..n]) {
            return test;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        // More of the line is on its way.
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// [`sniff`] over a stream that cannot be peeked (TLS): the first bytes are read, and given
/// back to be read again before the rest of the stream.
pub async fn sniff_read<S: tokio::io::AsyncRead + Unpin>(stream: &mut S) -> (bool, Vec<u8>) {
    use tokio::io::AsyncReadExt;
    let mut first = [0u8; SNIFFED];
    let mut n = 0;
    let deadline = tokio::time::Instant::now() + SNIFF_DEADLINE;
    while n < SNIFFED {
        match tokio::time::timeout_at(deadline, stream.read(&mut first[n..])).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(read)) => n += read,
        }
        if let Some(test) = classify(&first[..n]) {
            return (test, first[..n].to_vec());
        }
    }
    (false, first[..n].to_vec())
}

/// Serves a test connection until it closes or its deadline passes.
pub async fn serve<S>(stream: S, app: Arc<App>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    let service = hyper::service::service_fn(move |request| {
        let app = app.clone();
        async move { Ok::<_, std::convert::Infallible>(answer(&app, request).await) }
    });
    // One test per connection, its head within a few seconds: a client cannot hold the
    // connection by trickling heads or by asking again with guessed tokens.
    let connection = hyper::server::conn::http1::Builder::new()
        .keep_alive(false)
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(HEAD_DEADLINE)
        .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
    let _ = tokio::time::timeout(TEST_DEADLINE, connection).await;
}

/// A streamed answer: generated, or read from the file store (which may fail midway, and whose
/// stream is `Send` but not `Sync`: hyper needs no more).
pub type TestBody = http_body_util::combinators::UnsyncBoxBody<Bytes, std::io::Error>;

/// No body.
pub fn no_body() -> TestBody {
    http_body_util::Empty::new().map_err(|never| match never {}).boxed_unsync()
}

pub fn empty(status: StatusCode) -> Response<TestBody> {
    let mut response = Response::new(no_body());
    *response.status_mut() = status;
    response
}

async fn answer(app: &App, request: Request<Incoming>) -> Response<TestBody> {
    if request.uri().path().starts_with(crate::api::files::DEVICE_PATH) {
        return super::files::answer(app, &request).await;
    }
    let max = app.config.diagnostics.max_transfer_bytes;
    let (method, uri) = (request.method().clone(), request.uri().clone());
    let Some(endpoint) = route(&method, uri.path(), uri.query(), max) else { return empty(StatusCode::NOT_FOUND) };
    let token = match &endpoint {
        Endpoint::Download { token, .. } | Endpoint::Upload { token } => *token,
    };
    match diagnostics::by_token(&app.store, &crate::secrets::token_hash(token)).await {
        Ok(Some(_)) => {}
        Ok(None) => return empty(StatusCode::NOT_FOUND),
        Err(error) => {
            tracing::warn!("checking a speed-test token: {error:#}");
            return empty(StatusCode::SERVICE_UNAVAILABLE);
        }
    }
    match endpoint {
        Endpoint::Download { size, .. } => {
            let mut response = Response::new(if method == Method::HEAD { no_body() } else { generated(size) });
            let headers = response.headers_mut();
            headers.insert(hyper::header::CONTENT_LENGTH, size.into());
            headers.insert(
                hyper::header::CONTENT_TYPE,
                hyper::header::HeaderValue::from_static("application/octet-stream"),
            );
            headers.insert(hyper::header::CACHE_CONTROL, hyper::header::HeaderValue::from_static("no-store"));
            response
        }
        Endpoint::Upload { .. } => match discard(request.into_body(), max).await {
            Ok(_) => empty(StatusCode::OK),
            Err(status) => empty(status),
        },
    }
}

/// `size` bytes, a block at a time, made as the connection takes them.
fn generated(size: u64) -> TestBody {
    let blocks = futures::stream::unfold(size, |left| async move {
        if left == 0 {
            return None;
        }
        let n = usize::try_from(left.min(BLOCK.len() as u64)).unwrap_or(BLOCK.len());
        let block = Bytes::from_static(&BLOCK[..n]);
        Some((Ok::<_, std::io::Error>(Frame::data(block)), left - n as u64))
    });
    BodyExt::boxed_unsync(StreamBody::new(blocks))
}

/// Reads an upload to its end, keeping nothing: the bytes it held, or why it was cut.
async fn discard(mut body: Incoming, max: u64) -> Result<u64, StatusCode> {
    let mut received: u64 = 0;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|_| StatusCode::BAD_REQUEST)?;
        if let Some(data) = frame.data_ref() {
            received += data.len() as u64;
            if received > max {
                return Err(StatusCode::PAYLOAD_TOO_LARGE);
            }
        }
    }
    Ok(received)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_is_told_apart_by_its_first_bytes() {
        assert_eq!(classify(b"GET /tr143/download/x"), Some(true));
        assert_eq!(classify(b"HEAD /files/"), Some(true));
        assert_eq!(classify(b"POST /cwmp"), Some(false));
        assert_eq!(classify(b"POST / HTTP/1.1"), Some(false));
        assert_eq!(classify(b"GET /tr"), None, "more to read");
        assert_eq!(classify(b"P"), None);
    }

    #[test]
    fn only_the_two_endpoints_with_a_plain_token_are_served() {
        let max = 1 << 30;
        assert_eq!(
            route(&Method::GET, "/tr143/download/abc_123", Some("size=1048576"), max),
            Some(Endpoint::Download { token: "abc_123", size: 1_048_576 })
        );
        assert_eq!(route(&Method::PUT, "/tr143/upload/abc", None, max), Some(Endpoint::Upload { token: "abc" }));
        assert_eq!(route(&Method::POST, "/tr143/upload/abc", None, max), Some(Endpoint::Upload { token: "abc" }));
        assert_eq!(route(&Method::GET, "/tr143/download/abc", Some("size=-1"), max), None);
        assert_eq!(route(&Method::GET, "/tr143/download/abc", Some("size=2000000000"), max), None, "over the max");
        assert_eq!(route(&Method::GET, "/tr143/download/abc", None, max), None, "no size");
        assert_eq!(route(&Method::GET, "/tr143/download/../etc", Some("size=1"), max), None);
        assert_eq!(route(&Method::GET, "/tr143/download/a%2Fb", Some("size=1"), max), None);
        assert_eq!(route(&Method::GET, "/tr143/download/", Some("size=1"), max), None);
        assert_eq!(route(&Method::GET, "/tr143/upload/abc", None, max), None, "an upload is sent");
        assert_eq!(route(&Method::DELETE, "/tr143/download/abc", Some("size=1"), max), None);
    }

    #[test]
    fn test_connections_are_told_from_cwmp_by_their_first_line() {
        assert!(is_test_request(b"GET /tr143/download/x?size=1 HTTP/1.1\r\n"));
        assert!(is_test_request(b"PUT /tr143/upload/x HTTP/1.1\r\n"));
        assert!(!is_test_request(b"POST / HTTP/1.1\r\n"));
        assert!(!is_test_request(b"POST /cwmp/tr143/ HTTP/1.1"));
        assert!(!is_test_request(b"GET /tr14"), "a partial line is not yet one");
        assert!(is_test_request(b"GET /files/abc HTTP/1.1\r\n"));
        assert!(is_test_request(b"HEAD /files/abc HTTP/1.1\r\n"));
        assert!(!is_test_request(b"POST /files/abc HTTP/1.1\r\n"), "files are only read");
    }
}
