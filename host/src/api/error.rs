//! The one error type of the REST API: RFC 9457 problem details with a stable `code`.
//! Internal errors are logged in full and reach the client only as a generic 500.

use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

/// What a 503 asks the client to wait: about what a database restart or failover takes.
const RETRY_AFTER_SECONDS: u64 = 5;
/// What a 429 asks the client to wait: the throttles' window.
const THROTTLED_SECONDS: u64 = 60;

/// The stable, machine-readable `code` of every API error. Integrators branch on these: a code
/// is never renamed or reused for another meaning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    // Requests the API cannot read.
    InvalidBody,
    InvalidQuery,
    InvalidPath,
    InvalidCursor,
    BodyTooLarge,
    BodyTimeout,
    UriTooLong,
    UnsupportedMediaType,
    MethodNotAllowed,
    // Who is calling.
    Unauthorized,
    Forbidden,
    TooManyAttempts,
    RefreshTokenReused,
    RateLimited,
    // What was asked for.
    NotFound,
    InvalidTask,
    InvalidTag,
    InvalidPreset,
    InvalidPlugin,
    InvalidName,
    InvalidVersion,
    InvalidConfig,
    InvalidLimits,
    InvalidOrganization,
    InvalidUser,
    InvalidRole,
    InvalidApiKey,
    InvalidIdempotencyKey,
    InvalidSerials,
    InvalidCredential,
    InvalidParameter,
    InvalidSubscriber,
    InvalidDiagnostic,
    InvalidFile,
    InvalidRollout,
    InvalidBulk,
    InvalidWebhook,
    UnknownProvision,
    // Conflicts with what exists.
    PluginExists,
    SlugTaken,
    EmailTaken,
    HostTaken,
    UsernameTaken,
    OrganizationNotEmpty,
    NotFaulted,
    IdempotencyKeyReused,
    DeviceMoved,
    FileExists,
    /// A rollout is not in a state that allows the action (resume a running one, …).
    RolloutState,
    /// A file an unfinished rollout uses cannot be deleted.
    FileInUse,
    /// A bulk action that is not running is not cancelled.
    BulkState,
    // The server.
    Busy,
    DatabaseUnavailable,
    Internal,
}

impl ErrorCode {
    /// The name on the wire.
    pub fn name(self) -> String {
        match serde_json::to_value(self) {
            Ok(serde_json::Value::String(name)) => name,
            _ => "internal".into(),
        }
    }
}

/// An error as the client sees it: an RFC 9457 problem document.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct Problem {
    /// A URI naming the kind of problem; its last segment is `code`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The HTTP status's reason phrase.
    pub title: String,
    pub status: u16,
    pub code: ErrorCode,
    /// What went wrong, for a person to read.
    pub detail: String,
    /// The request body's member the problem is about (`ssid`, `email`, `host`…), when it is
    /// about one: a form shows `detail` next to that field.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: ErrorCode,
    pub detail: String,
    /// Seconds for `Retry-After` on a 429 or 503, when not the defaults.
    pub retry_after: Option<u64>,
    /// The request member at fault (`Problem::field`).
    pub field: Option<String>,
}

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub fn new(status: StatusCode, code: ErrorCode, detail: impl Into<String>) -> Self {
        Self { status, code, detail: detail.into(), retry_after: None, field: None }
    }

    pub fn bad_request(code: ErrorCode, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, detail)
    }

    pub fn not_found(what: &str) -> Self {
        Self::new(StatusCode::NOT_FOUND, ErrorCode::NotFound, format!("{what} not found"))
    }

    pub fn unauthorized(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, ErrorCode::Unauthorized, detail)
    }

    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, ErrorCode::Forbidden, detail)
    }

    pub fn conflict(code: ErrorCode, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, code, detail)
    }

    /// Names the request member the problem is about.
    pub fn on_field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }

    pub fn with_retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds);
        self
    }
}

impl From<anyhow::Error> for ApiError {
    fn from(error: anyhow::Error) -> Self {
        if crate::store::is_unavailable(&error) {
            tracing::warn!("database unavailable: {error:#}");
            return Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorCode::DatabaseUnavailable,
                "The database cannot be reached; retry later",
            );
        }
        tracing::error!("internal error: {error:#}");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::Internal,
            "An internal error occurred; it has been logged",
        )
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        Self::new(rejection.status(), ErrorCode::InvalidBody, rejection.body_text())
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        Self::bad_request(ErrorCode::InvalidQuery, rejection.body_text())
    }
}

impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> Self {
        Self::bad_request(ErrorCode::InvalidPath, rejection.body_text())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Problem {
            kind: format!("https://roost.dev/problems/{}", self.code.name()),
            title: self.status.canonical_reason().unwrap_or("Error").to_owned(),
            status: self.status.as_u16(),
            code: self.code,
            detail: self.detail,
            field: self.field,
        };
        let mut response = (self.status, Json(body)).into_response();
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, header::HeaderValue::from_static("application/problem+json"));
        let retry_after = match (self.retry_after, self.status) {
            (Some(seconds), _) => Some(seconds),
            (None, StatusCode::SERVICE_UNAVAILABLE) => Some(RETRY_AFTER_SECONDS),
            (None, StatusCode::TOO_MANY_REQUESTS) => Some(THROTTLED_SECONDS),
            _ => None,
        };
        if let Some(seconds) = retry_after {
            response.headers_mut().insert(header::RETRY_AFTER, header::HeaderValue::from(seconds));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Bearer"));
        }
        response
    }
}
