//! Faults across the caller's fleet: what went wrong, where, how often. A fault that repeats
//! (the same device, channel and code) is one row with its occurrences and first and last time.
//! Clearing one forgets it; retrying one re-queues its task, or wakes its device so that the
//! session's presets run again (a discovery given up is tried again).

use std::sync::Arc;

use axum::Extension;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::audit::AuditOrg;
use super::authenticate::Caller;
use super::devices::FaultView;
use super::error::{ApiError, ApiResult, ErrorCode};
use super::extract::{Json, Path, Query};
use super::{ListResponse, Page, parse_timestamp};
use crate::app::App;
use crate::cwmp::connection_request;
use crate::fault_code::{FaultCode, FaultKind};
use crate::permissions::Permission;
use crate::store::faults::{self, FaultCursor, FaultFilter, FaultRow};
use crate::store::{devices, orgs, tasks};

pub fn router() -> OpenApiRouter<Arc<App>> {
    OpenApiRouter::new().routes(routes!(list)).routes(routes!(clear)).routes(routes!(retry))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct FaultQuery {
    #[serde(flatten)]
    #[param(ignore)] // documented by `Page` itself
    page: Page,
    /// Only this organization and those below it (within the caller's).
    org: Option<String>,
    /// Only this device's (its CWMP id).
    device: Option<String>,
    /// Only this code (`cwmp.9002`, `plugin.timeout`, …).
    code: Option<String>,
    /// `cpe` (the device's CWMP faults), `plugin` or `provisioning` (tasks, presets, discovery).
    kind: Option<String>,
    /// Last seen at or after (RFC 3339).
    #[param(format = DateTime)]
    since: Option<String>,
    /// Last seen before (RFC 3339).
    #[param(format = DateTime)]
    until: Option<String>,
}

#[utoipa::path(get, path = "/faults", tag = "faults", params(FaultQuery, Page),
    responses((status = 200, description = "A page of the faults, the most recently seen first", body = ListResponse<FaultView>)))]
async fn list(
    State(app): State<Arc<App>>,
    caller: Caller,
    Query(query): Query<FaultQuery>,
) -> ApiResult<Json<ListResponse<FaultView>>> {
    caller.require(Permission::ReadFleet)?;
    let limit = query.page.limit()?;
    let after = query
        .page
        .cursor()?
        .map(|c| {
            serde_json::from_str::<FaultCursor>(&c)
                .map_err(|_| ApiError::bad_request(ErrorCode::InvalidCursor, "cursor is not one this API returned"))
        })
        .transpose()?;
    let kind = query
        .kind
        .as_deref()
        .map(|k| {
            FaultKind::parse(k).ok_or_else(|| {
                ApiError::bad_request(ErrorCode::InvalidQuery, format!("kind: cpe, plugin or provisioning, got {k:?}"))
            })
        })
        .transpose()?;
    let mut filter = FaultFilter {
        code: query.code.clone(),
        kind,
        since: query.since.as_deref().map(|t| parse_timestamp("since", t)).transpose()?,
        until: query.until.as_deref().map(|t| parse_timestamp("until", t)).transpose()?,
        ..FaultFilter::default()
    };
    if let Some(slug) = &query.org {
        let org = super::orgs::visible(&app, &caller, slug).await?;
        filter.orgs = Some(orgs::subtree(&app.api_store, org.id).await?);
    }
    if let Some(id) = &query.device {
        filter.device_pk = Some(super::devices::visible_device(&app, &caller, id).await?.id);
    }
    let rows = faults::list(&app.api_store, &caller.scope, &filter, after, limit).await?;
    let last = rows.last().map(|(f, _)| {
        serde_json::to_string(&FaultCursor { last_seen_at: f.last_seen_at, id: f.id }).unwrap_or_default()
    });
    let items = rows.iter().map(|(f, device)| FaultView::new(f, device)).collect();
    Ok(Json(ListResponse::new(items, limit, last)))
}

/// A fault the caller may see, or 404.
async fn visible_fault(app: &App, caller: &Caller, id: &str) -> ApiResult<(FaultRow, String)> {
    let id: i64 = id.parse().map_err(|_| ApiError::not_found("fault"))?;
    faults::visible(&app.api_store, &caller.scope, id).await?.ok_or_else(|| ApiError::not_found("fault"))
}

#[utoipa::path(delete, path = "/faults/{id}", tag = "faults", params(("id" = String, Path, description = "The fault's id")),
    responses((status = 204, description = "Cleared")))]
async fn clear(
    State(app): State<Arc<App>>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<(Extension<AuditOrg>, StatusCode)> {
    caller.require(Permission::ConfigureDevices)?;
    let (fault, _) = visible_fault(&app, &caller, &id).await?;
    if !faults::delete_scoped(&app.api_store, &caller.scope, fault.id).await? {
        return Err(ApiError::not_found("fault"));
    }
    Ok((Extension(AuditOrg(fault.org_id)), StatusCode::NO_CONTENT))
}

/// What a retry did.
#[derive(Debug, Serialize, ToSchema)]
pub struct RetryView {
    /// The fault, cleared.
    pub fault_id: String,
    /// The task put back in the queue, for a task's fault.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub task_id: Option<String>,
    /// How waking the device went: its next session carries the retry out.
    pub connection_request: connection_request::Outcome,
}

#[utoipa::path(post, path = "/faults/{id}/retry", tag = "faults", params(("id" = String, Path, description = "The fault's id")),
    responses((status = 200, description = "The fault is cleared and the device woken", body = RetryView)))]
async fn retry(
    State(app): State<Arc<App>>,
    caller: Caller,
    Extension(slot): Extension<crate::api::ApiSlot>,
    Path(id): Path<String>,
) -> ApiResult<(Extension<AuditOrg>, Json<RetryView>)> {
    // A device's fault is retried by a new session, which any operator may ask for; re-running a
    // task is configuring the device as the task does.
    caller.require(Permission::OperateDevices)?;
    let (fault, device_id) = visible_fault(&app, &caller, &id).await?;
    if fault.task_id.is_some() {
        caller.require(Permission::ConfigureDevices)?;
    }
    let device =
        devices::by_device_id(&app.api_store, &device_id).await?.ok_or_else(|| ApiError::not_found("fault"))?;
    match fault.task_id {
        Some(task_id) => {
            // Also clears the task's fault.
            if !tasks::retry(&app.api_store, task_id).await? {
                return Err(ApiError::conflict(ErrorCode::NotFaulted, "the fault's task is no longer faulted"));
            }
        }
        None => {
            if fault.code == FaultCode::DiscoveryAbandoned.to_string() {
                devices::set_discovery_state(&app.api_store, device.id, device.discovery_batch, 0).await?;
            }
            faults::delete_scoped(&app.api_store, &caller.scope, fault.id).await?;
        }
    }
    slot.release();
    let outcome = connection_request::send(&app, &device).await?;
    Ok((
        Extension(AuditOrg(fault.org_id)),
        Json(RetryView {
            fault_id: fault.id.to_string(),
            task_id: fault.task_id.map(|t| t.to_string()),
            connection_request: outcome,
        }),
    ))
}
