//! Stored files served to devices: `GET`/`HEAD /files/{token}` on the CWMP listener, the URL a
//! `download` task of a stored file gives its device (`api/files.rs::download_body`).
//!
//! The token is the credential, one per device and file, good until its grant expires or the
//! file is deleted; a wrong one is a 404 (a CPE cannot answer a 401 for a URL it was given
//! without credentials). One byte range is served (`206`), so a device that lost its
//! connection can resume; the ETag is the file's SHA-256.

use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};

use super::tr143::{TestBody, empty, no_body};
use crate::app::App;
use crate::files::{ByteRange, RangeRequest, range_request};
use crate::store::files;

/// The token of a file URL's path (`/files/<token>`, or `/files/<token>/<name>` as Roost gives
/// it: the name is for the device's eyes, the token alone finds the file), if it is one.
pub fn token_of(path: &str) -> Option<&str> {
    let rest = path.strip_prefix(crate::api::files::DEVICE_PATH)?;
    let token = rest.split_once('/').map_or(rest, |(token, _)| token);
    (!token.is_empty() && token.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')).then_some(token)
}

pub async fn answer(app: &App, request: &Request<Incoming>) -> Response<TestBody> {
    let method = request.method();
    if *method != Method::GET && *method != Method::HEAD {
        return empty(StatusCode::METHOD_NOT_ALLOWED);
    }
    let Some(token) = token_of(request.uri().path()) else { return empty(StatusCode::NOT_FOUND) };
    let file = match files::by_token(&app.store, &crate::secrets::token_hash(token)).await {
        Ok(Some(file)) => file,
        Ok(None) => return empty(StatusCode::NOT_FOUND),
        Err(error) => {
            tracing::warn!("checking a file download token: {error:#}");
            return empty(StatusCode::SERVICE_UNAVAILABLE);
        }
    };
    let size = file.bytes();
    // A range is of a GET only (RFC 9110 §14.2): a HEAD describes the whole file.
    let range = request.headers().get(header::RANGE).and_then(|v| v.to_str().ok()).filter(|_| *method == Method::GET);
    let (status, bytes) = match range_request(range, size) {
        RangeRequest::Unsatisfiable => {
            let mut response = empty(StatusCode::RANGE_NOT_SATISFIABLE);
            if let Ok(value) = HeaderValue::from_str(&format!("bytes */{size}")) {
                response.headers_mut().insert(header::CONTENT_RANGE, value);
            }
            return response;
        }
        RangeRequest::Whole => (StatusCode::OK, ByteRange::whole(size)),
        RangeRequest::Part(part) => (StatusCode::PARTIAL_CONTENT, Some(part)),
    };
    let body = match bytes {
        Some(bytes) if *method == Method::GET => match app.files.read(&file.storage_key, bytes).await {
            Ok(chunks) => {
                BodyExt::boxed_unsync(StreamBody::new(futures::StreamExt::map(chunks, |chunk| chunk.map(Frame::data))))
            }
            Err(error) => {
                tracing::warn!(file = file.id, "reading a stored file: {error:#}");
                return empty(StatusCode::SERVICE_UNAVAILABLE);
            }
        },
        _ => no_body(),
    };
    let mut response = Response::new(body);
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_LENGTH, bytes.map_or(0, |b| b.len()).into());
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
    headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if let Ok(etag) = HeaderValue::from_str(&format!("\"{}\"", file.sha256)) {
        headers.insert(header::ETAG, etag);
    }
    if let (StatusCode::PARTIAL_CONTENT, Some(part)) = (status, bytes)
        && let Ok(value) = HeaderValue::from_str(&format!("bytes {}-{}/{size}", part.start, part.end))
    {
        headers.insert(header::CONTENT_RANGE, value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_url_carries_a_plain_token() {
        assert_eq!(token_of("/files/abc-_123"), Some("abc-_123"));
        assert_eq!(token_of("/files/"), None);
        assert_eq!(token_of("/files/abc/HG8245H-V3R017.bin"), Some("abc"));
        assert_eq!(token_of("/files//x.bin"), None);
        assert_eq!(token_of("/files/../etc/passwd"), None);
        assert_eq!(token_of("/files/a%2Fb"), None);
        assert_eq!(token_of("/tr143/download/abc"), None);
    }
}
