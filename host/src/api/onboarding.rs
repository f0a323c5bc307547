//! Onboarding per tenant: pending devices and claiming them (`/pending-devices`,
//! `/pending-devices/claim`), serials an organization expects (`/preregistrations`), and the
//! credentials CPEs onboard with (`/cpe-credentials`). Serials come as JSON (`{"serials": [...]}`)
//! or as CSV (`text/csv`, one serial per line, its first column; a `serial` header is skipped).

use std::sync::Arc;

use axum::Extension;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::audit::AuditOrg;
use super::authenticate::Caller;
use super::devices::DeviceView;
use super::error::{ApiError, ApiResult, ErrorCode};
use super::extract::{Json, Path, Query};
use super::{ListResponse, Page, org_slugs, timestamp};
use crate::app::App;
use crate::permissions::Permission;
use crate::store::credentials::{self, CpeCredential, CredentialScope};
use crate::store::devices::{self, DeviceFilter, MAX_CLAIM};
use crate::store::orgs::Scope;
use crate::store::preregistrations;

pub fn router() -> OpenApiRouter<Arc<App>> {
    OpenApiRouter::new()
        .routes(routes!(pending))
        .routes(routes!(claim))
        .routes(routes!(list_preregistrations, preregister))
        .routes(routes!(remove_preregistration))
        .routes(routes!(list_credentials, create_credential))
        .routes(routes!(remove_credential))
}

fn invalid(detail: impl Into<String>) -> ApiError {
    ApiError::bad_request(ErrorCode::InvalidSerials, detail)
}

/// A serial as CPEs report it: printable, no separators a list would split on.
fn check_serial(serial: &str) -> ApiResult<()> {
    let valid = !serial.is_empty()
        && serial.chars().count() <= 64
        && serial.chars().all(|c| c.is_ascii_graphic() && c != ',' && c != ';');
    if valid { Ok(()) } else { Err(invalid(format!("{serial:?} is not a serial number")).on_field("serials")) }
}

/// Serials (and an organization) from a JSON or CSV body.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct SerialsRequest {
    /// 1 to 10,000 serial numbers.
    serials: Vec<String>,
    /// The organization's slug; the caller's own when absent.
    org: Option<String>,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct OrgQuery {
    /// The organization's slug, for a CSV body (a JSON body says it in `org`).
    org: Option<String>,
}

fn serials_from(headers: &HeaderMap, body: &Bytes, query_org: Option<String>) -> ApiResult<SerialsRequest> {
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let mut request = if content_type.starts_with("text/csv") {
        let text = std::str::from_utf8(body).map_err(|_| invalid("the CSV is not UTF-8"))?;
        let serials = text
            .lines()
            .map(|line| line.split(',').next().unwrap_or_default().trim().trim_matches('"').to_owned())
            .filter(|serial| !serial.is_empty())
            .enumerate()
            .filter(|(i, serial)| !(*i == 0 && serial.to_ascii_lowercase().starts_with("serial")))
            .map(|(_, serial)| serial)
            .collect();
        SerialsRequest { serials, org: None }
    } else if content_type.starts_with("application/json") {
        serde_json::from_slice(body)
            .map_err(|e| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, ErrorCode::InvalidBody, e.to_string()))?
    } else {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ErrorCode::UnsupportedMediaType,
            "send application/json ({\"serials\": [...], \"org\": ...}) or text/csv (one serial per line)",
        ));
    };
    request.org = request.org.or(query_org);
    if request.serials.is_empty() {
        return Err(invalid("no serials").on_field("serials"));
    }
    if request.serials.len() > MAX_CLAIM {
        return Err(
            invalid(format!("at most {MAX_CLAIM} serials at once, got {}", request.serials.len())).on_field("serials")
        );
    }
    for serial in &request.serials {
        check_serial(serial)?;
    }
    request.serials.sort();
    request.serials.dedup();
    Ok(request)
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct PendingQuery {
    #[serde(flatten)]
    #[param(ignore)] // documented by `Page` itself
    page: Page,
    serial_number: Option<String>,
    product_class: Option<String>,
}

/// Devices that informed with no organization to join, waiting to be claimed.
#[utoipa::path(get, path = "/pending-devices", tag = "onboarding", params(PendingQuery, Page),
    responses((status = 200, description = "A page of pending devices", body = ListResponse<DeviceView>)))]
async fn pending(
    State(app): State<Arc<App>>,
    caller: Caller,
    Query(query): Query<PendingQuery>,
) -> ApiResult<Json<ListResponse<DeviceView>>> {
    caller.require(Permission::ReadPendingDevices)?;
    let limit = query.page.limit()?;
    let filter = DeviceFilter {
        serial_number: query.serial_number,
        product_class: query.product_class,
        pending: true,
        ..DeviceFilter::default()
    };
    let after = query.page.id_cursor()?.map(|id| devices::After { value: devices::SortValue::Number(id), id });
    let rows =
        devices::list(&app.api_store, &Scope::All, &filter, devices::Sort::default(), after.as_ref(), limit).await?;
    let last = rows.last().map(|d| d.id.to_string());
    Ok(Json(ListResponse::new(rows.iter().map(|d| DeviceView::new(d, None, None)).collect(), limit, last)))
}

/// What a claim did.
#[derive(Debug, Serialize, ToSchema)]
pub struct ClaimResult {
    /// The organization's slug.
    pub org: String,
    pub claimed: Vec<ClaimedDevice>,
    /// Serials of no pending device (unknown, or in an organization already).
    pub not_found: Vec<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ClaimedDevice {
    pub id: String,
    pub serial_number: String,
}

/// Moves pending devices, by serial, into an organization at or below the caller's.
#[utoipa::path(post, path = "/pending-devices/claim", tag = "onboarding", params(OrgQuery),
    request_body(content((SerialsRequest = "application/json"), (String = "text/csv")),
        description = "JSON, or CSV with one serial per line (its first column; a `serial` header is skipped)"),
    responses((status = 200, description = "What was claimed and what was not found", body = ClaimResult)))]
async fn claim(
    State(app): State<Arc<App>>,
    caller: Caller,
    Query(query): Query<OrgQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<(Extension<AuditOrg>, Json<ClaimResult>)> {
    caller.require(Permission::ClaimDevices)?;
    let request = serials_from(&headers, &body, query.org)?;
    let org = super::orgs::named_or_own(&app, &caller, request.org.as_deref()).await?;
    let claimed = devices::claim(&app.api_store, &request.serials, org.id, &caller.actor()).await?;
    let not_found =
        request.serials.iter().filter(|s| !claimed.iter().any(|c| &c.serial_number == *s)).cloned().collect();
    let claimed =
        claimed.into_iter().map(|c| ClaimedDevice { id: c.device_id, serial_number: c.serial_number }).collect();
    Ok((Extension(AuditOrg(Some(org.id))), Json(ClaimResult { org: org.slug, claimed, not_found })))
}

/// A serial an organization expects.
#[derive(Debug, Serialize, ToSchema)]
pub struct PreregistrationView {
    pub serial_number: String,
    pub org: String,
    pub created_by: String,
    pub created_at: String,
}

#[utoipa::path(get, path = "/preregistrations", tag = "onboarding", params(Page),
    responses((status = 200, description = "A page of expected serials", body = ListResponse<PreregistrationView>)))]
async fn list_preregistrations(
    State(app): State<Arc<App>>,
    caller: Caller,
    Query(page): Query<Page>,
) -> ApiResult<Json<ListResponse<PreregistrationView>>> {
    caller.require(Permission::ClaimDevices)?;
    let limit = page.limit()?;
    let after = page
        .cursor()?
        .map(|c| {
            c.split_once(':')
                .and_then(|(org, serial)| Some((org.parse().ok()?, serial.to_owned())))
                .ok_or_else(|| ApiError::bad_request(ErrorCode::InvalidCursor, "cursor is not one this API returned"))
        })
        .transpose()?;
    let rows = preregistrations::list(&app.api_store, &caller.scope, after, limit).await?;
    let slugs = org_slugs(&app).await?;
    let last = rows.last().map(|r| format!("{}:{}", r.org_id, r.serial_number));
    let items = rows
        .iter()
        .map(|r| PreregistrationView {
            serial_number: r.serial_number.clone(),
            org: slugs.get(&r.org_id).cloned().unwrap_or_default(),
            created_by: r.created_by.clone(),
            created_at: timestamp(r.created_at),
        })
        .collect();
    Ok(Json(ListResponse::new(items, limit, last)))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PreregistrationResult {
    pub org: String,
    /// Serials the organization did not expect before.
    pub added: u64,
}

/// Serials an organization expects: each device joins it at its first Inform.
#[utoipa::path(post, path = "/preregistrations", tag = "onboarding", params(OrgQuery),
    request_body(content((SerialsRequest = "application/json"), (String = "text/csv")),
        description = "JSON, or CSV with one serial per line (its first column; a `serial` header is skipped)"),
    responses((status = 201, description = "Recorded", body = PreregistrationResult)))]
async fn preregister(
    State(app): State<Arc<App>>,
    caller: Caller,
    Query(query): Query<OrgQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<(StatusCode, Extension<AuditOrg>, Json<PreregistrationResult>)> {
    caller.require(Permission::ClaimDevices)?;
    let request = serials_from(&headers, &body, query.org)?;
    let org = super::orgs::named_or_own(&app, &caller, request.org.as_deref()).await?;
    let added = preregistrations::add(&app.api_store, org.id, &request.serials, &caller.actor()).await?;
    Ok((StatusCode::CREATED, Extension(AuditOrg(Some(org.id))), Json(PreregistrationResult { org: org.slug, added })))
}

#[utoipa::path(delete, path = "/preregistrations/{serial}", tag = "onboarding",
    params(("serial" = String, Path, description = "The serial number")),
    responses((status = 204, description = "No longer expected")))]
async fn remove_preregistration(
    State(app): State<Arc<App>>,
    caller: Caller,
    Path(serial): Path<String>,
) -> ApiResult<StatusCode> {
    caller.require(Permission::ClaimDevices)?;
    if preregistrations::remove(&app.api_store, &caller.scope, &serial).await? == 0 {
        return Err(ApiError::not_found("pre-registration"));
    }
    Ok(StatusCode::NO_CONTENT)
}

/// An onboarding credential (never its password).
#[derive(Debug, Serialize, ToSchema)]
pub struct CpeCredentialView {
    pub id: i64,
    pub username: String,
    /// The organization's slug; null: any organization's URL (the platform's credentials).
    pub org: Option<String>,
    /// Only devices of this product class may use it.
    pub product_class: Option<String>,
    pub created_at: String,
}

fn credential_view(credential: &CpeCredential, slugs: &std::collections::HashMap<i64, String>) -> CpeCredentialView {
    CpeCredentialView {
        id: credential.id,
        username: credential.username.clone(),
        org: credential.org_id.and_then(|id| slugs.get(&id).cloned()),
        product_class: credential.product_class.clone(),
        created_at: timestamp(credential.created_at),
    }
}

#[utoipa::path(get, path = "/cpe-credentials", tag = "onboarding", params(Page),
    responses((status = 200, description = "A page of onboarding credentials", body = ListResponse<CpeCredentialView>)))]
async fn list_credentials(
    State(app): State<Arc<App>>,
    caller: Caller,
    Query(page): Query<Page>,
) -> ApiResult<Json<ListResponse<CpeCredentialView>>> {
    caller.require(Permission::ManageOnboarding)?;
    let limit = page.limit()?;
    let rows = credentials::list_onboarding(&app.api_store, &caller.scope, page.id_cursor()?, limit).await?;
    let slugs = org_slugs(&app).await?;
    let last = rows.last().map(|c| c.id.to_string());
    Ok(Json(ListResponse::new(rows.iter().map(|c| credential_view(c, &slugs)).collect(), limit, last)))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct CreateCredential {
    username: String,
    password: String,
    /// The organization's slug; the caller's own when absent.
    org: Option<String>,
    product_class: Option<String>,
}

/// A username and password CPEs onboard with at the organization's URL; the password is
/// stored sealed and never shown again.
#[utoipa::path(post, path = "/cpe-credentials", tag = "onboarding", request_body = CreateCredential,
    responses((status = 201, description = "Created", body = CpeCredentialView)))]
async fn create_credential(
    State(app): State<Arc<App>>,
    caller: Caller,
    Json(request): Json<CreateCredential>,
) -> ApiResult<(StatusCode, Extension<AuditOrg>, Json<CpeCredentialView>)> {
    caller.require(Permission::ManageOnboarding)?;
    let bad = |detail: &str| ApiError::bad_request(ErrorCode::InvalidCredential, detail);
    let username = request.username.trim();
    if username.is_empty() || username.len() > 128 || username.contains(':') || username.chars().any(char::is_control) {
        return Err(bad("a CPE username is 1 to 128 printable characters without ':'"));
    }
    if request.password.chars().count() < 8 || request.password.len() > 256 {
        return Err(bad("a CPE password has 8 to 256 characters"));
    }
    if let Some(class) = &request.product_class
        && (class.is_empty() || class.len() > 64)
    {
        return Err(bad("a product class is 1 to 64 characters"));
    }
    let org = super::orgs::named_or_own(&app, &caller, request.org.as_deref()).await?;
    let taken = || ApiError::conflict(ErrorCode::UsernameTaken, format!("the CPE username {username:?} is taken"));
    if credentials::by_username(&app.api_store, username).await?.is_some() {
        return Err(taken());
    }
    let scope =
        CredentialScope { org_id: Some(org.id), device_id: None, product_class: request.product_class.as_deref() };
    let sealed = app.secrets.seal(request.password.as_bytes());
    let created = match credentials::create(&app.api_store, scope, username, sealed).await {
        Ok(created) => created,
        Err(_) if credentials::by_username(&app.api_store, username).await?.is_some() => return Err(taken()),
        Err(error) => return Err(error.into()),
    };
    let view = credential_view(&created, &org_slugs(&app).await?);
    Ok((StatusCode::CREATED, Extension(AuditOrg(Some(org.id))), Json(view)))
}

#[utoipa::path(delete, path = "/cpe-credentials/{id}", tag = "onboarding",
    params(("id" = i64, Path, description = "The credential's id")),
    responses((status = 204, description = "Deleted")))]
async fn remove_credential(State(app): State<Arc<App>>, caller: Caller, Path(id): Path<i64>) -> ApiResult<StatusCode> {
    caller.require(Permission::ManageOnboarding)?;
    // The platform's own credentials (no organization) are in the platform's scope only.
    if !credentials::delete_onboarding(&app.api_store, &caller.scope, id).await? {
        return Err(ApiError::not_found("CPE credential"));
    }
    Ok(StatusCode::NO_CONTENT)
}
