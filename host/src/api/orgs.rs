//! Organizations: `GET/POST /orgs`, `GET/PATCH/DELETE /orgs/{slug}`. A caller sees its own
//! organization and those below it, and manages (creates, renames, deletes) only those strictly
//! below: nobody can delete or rename the organization that grants its own rights.

use std::collections::HashMap;
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
use super::error::{ApiError, ApiResult, ErrorCode};
use super::extract::{Json, Path, Query};
use super::{ListResponse, Page, timestamp};
use crate::app::App;
use crate::diagnostics::SpeedTestServer;
use crate::permissions::{Permission, Role};
use crate::store::orgs::{self, Organization};

pub fn router() -> OpenApiRouter<Arc<App>> {
    OpenApiRouter::new().routes(routes!(list, create)).routes(routes!(show, update, remove))
}

/// An organization's slug in a path.
#[derive(Debug, utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)] // documents the path; handlers read it with `Path<String>`
struct Slug {
    slug: String,
}

/// An organization as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct OrganizationView {
    pub slug: String,
    pub name: String,
    /// The parent's slug; null for the platform.
    pub parent: Option<String>,
    /// The tenant's own host name for the ACS: CPEs informing at it join the organization, as
    /// at `/cwmp/{slug}`.
    pub cwmp_host: Option<String>,
    /// The organization's own TR-143 test server for speed tests (null: its nearest ancestor's,
    /// else Roost's own endpoints).
    pub speed_test_server: Option<SpeedTestServer>,
    /// Its own time zone for rollout windows (null: its nearest ancestor's, else UTC).
    pub time_zone: Option<String>,
    pub created_at: String,
}

fn view(org: &Organization, slugs: &HashMap<i64, String>) -> OrganizationView {
    OrganizationView {
        slug: org.slug.clone(),
        name: org.name.clone(),
        parent: org.parent_id.and_then(|id| slugs.get(&id).cloned()),
        cwmp_host: org.cwmp_host.clone(),
        speed_test_server: org.speed_test_server(),
        time_zone: org.time_zone.clone(),
        created_at: timestamp(org.created_at),
    }
}

/// An organization the caller may see, by slug; any other is "not found", whether it exists or
/// not, so that tenants cannot learn each other's slugs.
pub async fn visible(app: &App, caller: &Caller, slug: &str) -> ApiResult<Organization> {
    orgs::by_slug(&app.api_store, slug)
        .await?
        .filter(|org| caller.covers(org.id))
        .ok_or_else(|| ApiError::not_found(&format!("organization {slug:?}")))
}

/// The organization named in a request body (`org`), or the caller's own when none is.
pub async fn named_or_own(app: &App, caller: &Caller, slug: Option<&str>) -> ApiResult<Organization> {
    match slug {
        Some(slug) => orgs::by_slug(&app.api_store, slug).await?.filter(|org| caller.covers(org.id)).ok_or_else(|| {
            ApiError::bad_request(ErrorCode::InvalidOrganization, format!("no organization {slug:?} at or below yours"))
                .on_field("org")
        }),
        None => orgs::by_id(&app.api_store, caller.org_id)
            .await?
            .ok_or_else(|| anyhow::anyhow!("the caller's organization {} is gone", caller.org_id).into()),
    }
}

/// Whether the caller may manage `org`: strictly below its own organization (the platform's
/// administrators manage every organization but the platform itself).
fn manageable(caller: &Caller, org: &Organization) -> ApiResult<()> {
    caller.require(Permission::ManageOrganizations)?;
    let below = if caller.role == Role::PlatformAdmin { org.parent_id.is_some() } else { org.id != caller.org_id };
    if below {
        Ok(())
    } else {
        Err(ApiError::forbidden("an organization is managed from above it: this one is yours or the platform's"))
    }
}

/// The caller's organization and those below it.
#[utoipa::path(get, path = "/orgs", tag = "organizations", params(Page),
    responses((status = 200, description = "A page of organizations", body = ListResponse<OrganizationView>)))]
async fn list(
    State(app): State<Arc<App>>,
    caller: Caller,
    Query(page): Query<Page>,
) -> ApiResult<Json<ListResponse<OrganizationView>>> {
    caller.require(Permission::ReadFleet)?;
    let limit = page.limit()?;
    let rows = orgs::list(&app.api_store, &caller.scope, page.id_cursor()?, limit).await?;
    let slugs = super::org_slugs(&app).await?;
    let last = rows.last().map(|r| r.id.to_string());
    Ok(Json(ListResponse::new(rows.iter().map(|o| view(o, &slugs)).collect(), limit, last)))
}

#[utoipa::path(get, path = "/orgs/{slug}", tag = "organizations", params(Slug),
    responses((status = 200, description = "The organization", body = OrganizationView)))]
async fn show(
    State(app): State<Arc<App>>,
    caller: Caller,
    Path(slug): Path<String>,
) -> ApiResult<Json<OrganizationView>> {
    caller.require(Permission::ReadFleet)?;
    let org = visible(&app, &caller, &slug).await?;
    Ok(Json(view(&org, &super::org_slugs(&app).await?)))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct CreateOrganization {
    name: String,
    slug: String,
    /// The parent's slug; the caller's own organization when absent.
    parent: Option<String>,
    cwmp_host: Option<String>,
}

const MAX_NAME_CHARS: usize = 200;

fn check_name(name: &str) -> ApiResult<()> {
    let length = name.trim().chars().count();
    if length == 0 || length > MAX_NAME_CHARS || name.chars().any(char::is_control) {
        return Err(ApiError::bad_request(
            ErrorCode::InvalidOrganization,
            format!("an organization name is 1 to {MAX_NAME_CHARS} printable characters"),
        ));
    }
    Ok(())
}

/// A new organization below the caller's (or below `parent`, in the caller's subtree).
#[utoipa::path(post, path = "/orgs", tag = "organizations", request_body = CreateOrganization,
    responses((status = 201, description = "Created", body = OrganizationView)))]
async fn create(
    State(app): State<Arc<App>>,
    caller: Caller,
    Json(request): Json<CreateOrganization>,
) -> ApiResult<(StatusCode, Extension<AuditOrg>, Json<OrganizationView>)> {
    caller.require(Permission::ManageOrganizations)?;
    check_name(&request.name).map_err(|e| e.on_field("name"))?;
    orgs::validate_slug(&request.slug)
        .map_err(|e| ApiError::bad_request(ErrorCode::InvalidOrganization, e.to_string()).on_field("slug"))?;
    let parent = named_or_own(&app, &caller, request.parent.as_deref()).await.map_err(|e| e.on_field("parent"))?;
    if let Some(host) = &request.cwmp_host {
        check_host(&app, &caller, host).await?;
    }
    let taken =
        || ApiError::conflict(ErrorCode::SlugTaken, format!("the slug {:?} is taken", request.slug)).on_field("slug");
    if orgs::by_slug(&app.api_store, &request.slug).await?.is_some() {
        return Err(taken());
    }
    let org = match orgs::create(&app.api_store, request.name.trim(), &request.slug, Some(parent.id)).await {
        Ok(org) => org,
        // Two requests for one slug at once: the database's uniqueness decides.
        Err(_) if orgs::by_slug(&app.api_store, &request.slug).await?.is_some() => return Err(taken()),
        Err(error) => return Err(error.into()),
    };
    if let Some(host) = &request.cwmp_host {
        orgs::set_cwmp_host(&app.api_store, org.id, Some(host)).await?;
    }
    let org = orgs::by_id(&app.api_store, org.id).await?.unwrap_or(org);
    // Subtrees just grew: scopes cached here must include the new organization now; so must
    // the onboarding routes.
    crate::replicas::publish(&app, crate::replicas::Signal::Principals);
    crate::replicas::publish(&app, crate::replicas::Signal::OrgRoutes);
    Ok((StatusCode::CREATED, Extension(AuditOrg(Some(parent.id))), Json(view(&org, &super::org_slugs(&app).await?))))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct UpdateOrganization {
    name: Option<String>,
    /// A host name, or null to remove it.
    #[serde(default, deserialize_with = "present")]
    cwmp_host: Option<Option<String>>,
    /// The organization's own test server for speed tests, or null to remove it. Unlike the name
    /// and host, an organization's administrators set it for their own organization too.
    #[serde(default, deserialize_with = "present")]
    speed_test_server: Option<Option<SpeedTestServer>>,
    /// The IANA time zone its rollouts' maintenance windows are in (`Europe/Lisbon`), or null to
    /// use its nearest ancestor's (UTC at the top). Set by its administrators, like the test
    /// server.
    #[serde(default, deserialize_with = "present")]
    time_zone: Option<Option<String>>,
}

/// A field that may be absent (`None`), null (`Some(None)`) or a value.
fn present<'de, D: serde::Deserializer<'de>, T: Deserialize<'de>>(
    deserializer: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(deserializer).map(Some)
}

/// A host name the caller may give an organization: well-formed and no other's.
async fn check_host(app: &App, caller: &Caller, host: &str) -> ApiResult<()> {
    caller.require(Permission::ManageCwmpHosts)?;
    orgs::validate_host(host).map_err(|e| ApiError::bad_request(ErrorCode::InvalidOrganization, e.to_string()))?;
    if orgs::by_cwmp_host(&app.api_store, host).await?.is_some() {
        return Err(ApiError::conflict(ErrorCode::HostTaken, format!("the CWMP host {host:?} is taken")));
    }
    Ok(())
}

/// Renames an organization below the caller's, or sets or removes its CWMP host; sets or removes
/// the test server of the caller's organization or one below it.
#[utoipa::path(patch, path = "/orgs/{slug}", tag = "organizations", params(Slug), request_body = UpdateOrganization,
    responses((status = 200, description = "The organization as it is now", body = OrganizationView)))]
async fn update(
    State(app): State<Arc<App>>,
    caller: Caller,
    Path(slug): Path<String>,
    Json(request): Json<UpdateOrganization>,
) -> ApiResult<(Extension<AuditOrg>, Json<OrganizationView>)> {
    let org = visible(&app, &caller, &slug).await?;
    if request.name.is_some() || request.cwmp_host.is_some() {
        manageable(&caller, &org)?;
    } else {
        caller.require(Permission::ManageOrganizations)?;
    }
    if let Some(name) = &request.name {
        check_name(name)?;
    }
    if let Some(Some(server)) = &request.speed_test_server {
        server.check("speed_test_server").map_err(|why| ApiError::bad_request(ErrorCode::InvalidOrganization, why))?;
    }
    if let Some(Some(zone)) = &request.time_zone {
        crate::rollouts::time_zone(zone)
            .map_err(|why| ApiError::bad_request(ErrorCode::InvalidOrganization, format!("time_zone: {why}")))?;
    }
    if let Some(host) = &request.cwmp_host {
        match host {
            Some(host) if org.cwmp_host.as_deref() != Some(host) => check_host(&app, &caller, host).await?,
            _ => caller.require(Permission::ManageCwmpHosts)?,
        }
    }
    if let Some(name) = &request.name {
        orgs::rename(&app.api_store, org.id, name.trim()).await?;
    }
    if let Some(host) = &request.cwmp_host {
        orgs::set_cwmp_host(&app.api_store, org.id, host.as_deref()).await?;
        crate::replicas::publish(&app, crate::replicas::Signal::OrgRoutes);
    }
    if let Some(server) = &request.speed_test_server {
        orgs::set_speed_test_server(&app.api_store, org.id, server.as_ref()).await?;
    }
    if let Some(zone) = &request.time_zone {
        orgs::set_time_zone(&app.api_store, org.id, zone.as_deref()).await?;
    }
    let org = orgs::by_id(&app.api_store, org.id).await?.ok_or_else(|| ApiError::not_found("organization"))?;
    // Recorded where the organization's managers read it: above it, or its own for a change its
    // own administrators made (its test server).
    let audit = if org.id == caller.org_id { Some(org.id) } else { org.parent_id };
    Ok((Extension(AuditOrg(audit)), Json(view(&org, &super::org_slugs(&app).await?))))
}

/// Deletes an empty organization below the caller's, with its own configuration; one that
/// still has devices, users, children or files is refused (409 `organization_not_empty`).
#[utoipa::path(delete, path = "/orgs/{slug}", tag = "organizations", params(Slug),
    responses((status = 204, description = "Deleted")))]
async fn remove(
    State(app): State<Arc<App>>,
    caller: Caller,
    Path(slug): Path<String>,
) -> ApiResult<(StatusCode, Extension<AuditOrg>)> {
    let org = visible(&app, &caller, &slug).await?;
    manageable(&caller, &org)?;
    match orgs::delete(&app.api_store, org.id).await? {
        Ok(()) => {
            crate::replicas::publish(&app, crate::replicas::Signal::Principals);
            crate::replicas::publish(&app, crate::replicas::Signal::OrgRoutes);
            // Recorded with the parent: the organization itself is gone.
            Ok((StatusCode::NO_CONTENT, Extension(AuditOrg(org.parent_id))))
        }
        Err(remaining) => Err(ApiError::conflict(
            ErrorCode::OrganizationNotEmpty,
            format!("organization {slug:?} still has {}", describe(&remaining)),
        )),
    }
}

/// "3 devices, 1 user and 2 child organizations".
fn describe(remaining: &orgs::Remaining) -> String {
    let mut parts = Vec::new();
    for (count, one, many) in [
        (remaining.devices, "device", "devices"),
        (remaining.users, "user", "users"),
        (remaining.children, "child organization", "child organizations"),
        (remaining.files, "file", "files"),
    ] {
        if count > 0 {
            parts.push(format!("{count} {}", if count == 1 { one } else { many }));
        }
    }
    match parts.len() {
        0 => "nothing".into(),
        1 => parts.remove(0),
        _ => {
            let last = parts.pop().unwrap_or_default();
            format!("{} and {last}", parts.join(", "))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_remains_reads_as_a_sentence() {
        let remaining = orgs::Remaining { devices: 3, users: 1, children: 2, files: 0 };
        assert_eq!(describe(&remaining), "3 devices, 1 user and 2 child organizations");
        assert_eq!(
            describe(&orgs::Remaining { devices: 0, users: 2, children: 1, files: 1 }),
            "2 users, 1 child organization and 1 file"
        );
        assert_eq!(describe(&orgs::Remaining { devices: 1, users: 0, children: 0, files: 0 }), "1 device");
    }
}
