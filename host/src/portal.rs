//! The web portal's files (`web/`, built into `[web] dir`), served at `/` on the HTTP listener.
//! A path that names a built file gets it; any other page path gets `index.html`, so that a
//! reload or a shared link of a portal page (`/devices?serial=…`) opens that page. `/api/` and
//! `/nbi/` stay the API's: a route it does not have is its own 404 problem, never the portal.
//! Hashed assets (`/assets/index-<hash>.js`) are cached for good; the page itself never.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};

use crate::api::error::{ApiError, ErrorCode};
use crate::app::App;

/// What a request path is to the portal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolved {
    /// A file of the built portal, relative to its directory.
    File(PathBuf),
    /// A page of the portal: `index.html` answers, the portal routes it.
    Page,
    /// The API's, or nothing the portal could have built.
    NotPortal,
}

/// Where a request path leads. Only plain names below the directory: `..`, empty segments,
/// backslashes and hidden files never reach the file system.
pub fn resolve(path: &str) -> Resolved {
    if path == "/api" || path.starts_with("/api/") || path == "/nbi" || path.starts_with("/nbi/") {
        return Resolved::NotPortal;
    }
    let relative = path.trim_start_matches('/');
    if relative.is_empty() {
        return Resolved::Page;
    }
    let segments: Vec<&str> = relative.split('/').collect();
    let plain = segments.iter().all(|s| !s.is_empty() && !s.starts_with('.') && !s.contains('\\') && !s.contains('\0'));
    if !plain {
        return Resolved::NotPortal;
    }
    // A name with an extension is a file, or nothing; one without is a page of the portal.
    if segments.last().is_some_and(|last| last.contains('.')) {
        Resolved::File(PathBuf::from(relative))
    } else {
        Resolved::Page
    }
}

/// The type a built file is served with.
pub fn content_type(file: &Path) -> &'static str {
    match file.extension().and_then(|e| e.to_str()) {
        Some("html") => "text/html; charset=utf-8",
        Some("js" | "mjs") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("json") => "application/json",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("ico") => "image/x-icon",
        Some("woff2") => "font/woff2",
        Some("txt") => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

/// Hashed assets never change under their name; everything else is checked each time.
pub fn cache_control(file: &Path) -> &'static str {
    if file.starts_with("assets") { "public, max-age=31536000, immutable" } else { "no-cache" }
}

/// The portal's page may load its own scripts and styles and talk to its own origin, nothing
/// else; no other site may frame it.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; \
     object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'";

/// The HTTP listener's fallback: the portal for GET and HEAD of its paths, the API's 404 (or
/// 405) for anything else.
pub async fn serve(State(app): State<Arc<App>>, method: Method, uri: Uri) -> Response {
    let not_found = || ApiError::not_found("route").into_response();
    if method != Method::GET && method != Method::HEAD {
        return not_found();
    }
    let Some(dir) = app.config.web_dir.as_deref() else { return not_found() };
    let file = match resolve(uri.path()) {
        Resolved::NotPortal => return not_found(),
        Resolved::File(file) => file,
        Resolved::Page => PathBuf::from("index.html"),
    };
    let contents = match tokio::fs::read(dir.join(&file)).await {
        Ok(contents) => contents,
        Err(_) if file == Path::new("index.html") => {
            return ApiError::new(
                StatusCode::NOT_FOUND,
                ErrorCode::NotFound,
                format!(
                    "The web portal is not built in {}: run scripts/build-web.sh (scripts/run.sh does)",
                    dir.display()
                ),
            )
            .into_response();
        }
        Err(_) => return not_found(),
    };
    let mut headers = HeaderMap::new();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type(&file)));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache_control(&file)));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CONTENT_SECURITY_POLICY));
    if method == Method::HEAD {
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(contents.len()));
        return (StatusCode::OK, headers).into_response();
    }
    (StatusCode::OK, headers, contents).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_resolve_to_files_pages_or_not_the_portal() {
        assert_eq!(resolve("/"), Resolved::Page);
        assert_eq!(resolve("/devices"), Resolved::Page);
        assert_eq!(resolve("/devices/00259E-HG8245H-ABC"), Resolved::Page);
        assert_eq!(resolve("/assets/index-abc123.js"), Resolved::File("assets/index-abc123.js".into()));
        assert_eq!(resolve("/favicon.ico"), Resolved::File("favicon.ico".into()));
        // The API's own paths, however close.
        assert_eq!(resolve("/api/v1/nothing"), Resolved::NotPortal);
        assert_eq!(resolve("/api"), Resolved::NotPortal);
        assert_eq!(resolve("/nbi/devices"), Resolved::NotPortal);
        assert_eq!(resolve("/apis"), Resolved::Page, "only the API's own prefix");
        // Nothing outside the directory, nothing hidden.
        for path in ["/../roost.db", "/assets/../../master.key", "/.env", "/assets//x.js", "/a\\..\\b.js", "/x\0.js"] {
            assert_eq!(resolve(path), Resolved::NotPortal, "{path}");
        }
    }

    #[test]
    fn assets_are_cached_for_good_and_pages_never() {
        assert_eq!(cache_control(Path::new("assets/index-abc.js")), "public, max-age=31536000, immutable");
        assert_eq!(cache_control(Path::new("index.html")), "no-cache");
        assert_eq!(content_type(Path::new("assets/index-abc.js")), "text/javascript; charset=utf-8");
        assert_eq!(content_type(Path::new("index.html")), "text/html; charset=utf-8");
        assert_eq!(content_type(Path::new("data.bin")), "application/octet-stream");
    }
}
