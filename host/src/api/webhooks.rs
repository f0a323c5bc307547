//! Webhooks over REST: an organization's receivers of its events (and those of the
//! organizations below it), each delivery signed with the webhook's secret (`events`). The
//! delivery log, and replays of one delivery or of a time range.

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
use super::{ListResponse, Page, optional_timestamp, parse_timestamp, timestamp};
use crate::app::App;
use crate::permissions::Permission;
use crate::store::webhooks::{self, Delivery, NewWebhook, Webhook, WebhookChange};

pub fn router() -> OpenApiRouter<Arc<App>> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(show, change, delete))
        .routes(routes!(deliveries))
        .routes(routes!(replay_delivery))
        .routes(routes!(replay_range))
}

/// The most events one range replay queues.
pub const MAX_REPLAY: u64 = 100_000;
/// The shortest secret taken.
const MIN_SECRET: usize = 16;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateWebhook {
    /// Where deliveries are POSTed: http or https (the receiver's certificate checked against
    /// the system's CAs and `[events] ca_file`), not Roost itself.
    pub url: String,
    /// The signing secret (at least 16 characters); made up and shown once when absent.
    pub secret: Option<String>,
    /// Event types: `"*"`, a type (`"task.done"`), a family (`"rollout.*"`); every type when
    /// absent.
    pub events: Option<Vec<String>>,
    pub description: Option<String>,
    /// The organization (slug) whose events, and those of the organizations below it; the
    /// caller's own when absent.
    pub org: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangeWebhook {
    pub url: Option<String>,
    /// A new signing secret (at least 16 characters).
    pub secret: Option<String>,
    pub events: Option<Vec<String>>,
    pub description: Option<String>,
    /// `true` enables it again (its failure streak forgotten); `false` stops its deliveries.
    pub enabled: Option<bool>,
}

/// A webhook as the API shows it (never its secret, but once at creation).
#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookView {
    pub id: String,
    pub org: String,
    pub url: String,
    pub events: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub enabled: bool,
    /// Why it is disabled.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disabled_reason: Option<String>,
    /// Failed attempts in a row, and since when.
    pub failures: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failing_since: Option<String>,
    /// Nothing is sent to it until then (its circuit is open).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub open_until: Option<String>,
    /// The signing secret: in the answer to its creation (or a change of it) only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    pub created_by: String,
    pub created_at: String,
    pub updated_at: String,
}

async fn view(app: &App, row: &Webhook, secret: Option<String>) -> ApiResult<WebhookView> {
    Ok(view_in(row, super::org_slug(app, row.org_id).await?, secret))
}

fn view_in(row: &Webhook, org: String, secret: Option<String>) -> WebhookView {
    WebhookView {
        id: row.id.to_string(),
        org,
        url: row.url.clone(),
        events: row.patterns(),
        description: row.description.clone(),
        enabled: row.enabled,
        disabled_reason: row.disabled_reason.clone(),
        failures: u64::try_from(row.failures).unwrap_or(0),
        failing_since: optional_timestamp(row.failing_since),
        open_until: optional_timestamp(row.open_until),
        secret,
        created_by: row.created_by.clone(),
        created_at: timestamp(row.created_at),
        updated_at: timestamp(row.updated_at),
    }
}

fn invalid(detail: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, ErrorCode::InvalidWebhook, detail)
}

/// A webhook URL as `events::check_url` takes it, its host name resolved now and each address
/// checked too (a name for a metadata service or for Roost itself is refused like the address).
async fn checked_url(app: &App, url: &str) -> ApiResult<String> {
    resolved_url(app, url).await.map_err(|e| e.on_field("url"))
}

async fn resolved_url(app: &App, url: &str) -> ApiResult<String> {
    let own = app.listening.get().cloned().unwrap_or_else(|| vec![app.config.cwmp_listen, app.config.http_listen]);
    let parsed = crate::events::check_url(url, &own).map_err(invalid)?;
    let host = parsed.host_str().unwrap_or_default().trim_start_matches('[').trim_end_matches(']').to_owned();
    let port = parsed.port_or_known_default().unwrap_or(80);
    if host.parse::<std::net::IpAddr>().is_err() {
        let addresses =
            tokio::time::timeout(std::time::Duration::from_secs(5), tokio::net::lookup_host((host.as_str(), port)))
                .await
                .map_err(|_| invalid(format!("url: {host} did not resolve within 5 s")))?
                .map_err(|e| invalid(format!("url: {host} does not resolve: {e}")))?;
        for address in addresses {
            crate::events::check_address(address, &own).map_err(|e| invalid(format!("url: {host} resolves to {e}")))?;
        }
    }
    Ok(parsed.to_string())
}

fn checked_events(events: Option<Vec<String>>) -> ApiResult<Vec<String>> {
    let events = events.unwrap_or_else(|| vec!["*".to_owned()]);
    if events.is_empty() {
        return Err(invalid("events: at least one type (or \"*\")").on_field("events"));
    }
    for pattern in &events {
        crate::events::check_pattern(pattern).map_err(|why| invalid(why).on_field("events"))?;
    }
    Ok(events)
}

fn checked_secret(secret: &str) -> ApiResult<()> {
    if secret.chars().count() < MIN_SECRET {
        return Err(invalid(format!("secret: at least {MIN_SECRET} characters")).on_field("secret"));
    }
    Ok(())
}

/// Creates a webhook. 422 for a URL that is not http or https or is Roost itself, an unknown event
/// type, a short secret.
#[utoipa::path(post, path = "/webhooks", tag = "webhooks", request_body = CreateWebhook,
    responses((status = 201, description = "Created; `secret` shown this once", body = WebhookView)))]
async fn create(
    State(app): State<Arc<App>>,
    caller: Caller,
    Json(request): Json<CreateWebhook>,
) -> ApiResult<(StatusCode, Extension<AuditOrg>, Json<WebhookView>)> {
    caller.require(Permission::ManageWebhooks)?;
    let url = checked_url(&app, &request.url).await?;
    let events = checked_events(request.events)?;
    let secret = match request.secret {
        Some(secret) => {
            checked_secret(&secret)?;
            secret
        }
        None => crate::secrets::random_token("whsec_"),
    };
    let org = super::orgs::named_or_own(&app, &caller, request.org.as_deref()).await?;
    let row = webhooks::create(
        &app.api_store,
        NewWebhook {
            org_id: org.id,
            url: &url,
            sealed_secret: app.secrets.seal(secret.as_bytes()),
            events: &events,
            description: request.description.as_deref(),
            created_by: &caller.actor(),
        },
    )
    .await?;
    Ok((StatusCode::CREATED, Extension(AuditOrg(Some(org.id))), Json(view(&app, &row, Some(secret)).await?)))
}

/// Webhooks of the caller's organizations.
#[utoipa::path(get, path = "/webhooks", tag = "webhooks", params(Page),
    responses((status = 200, description = "A page of webhooks", body = ListResponse<WebhookView>)))]
async fn list(
    State(app): State<Arc<App>>,
    caller: Caller,
    Query(page): Query<Page>,
) -> ApiResult<Json<ListResponse<WebhookView>>> {
    caller.require(Permission::ManageWebhooks)?;
    let limit = page.limit()?;
    let rows = webhooks::list(&app.api_store, &caller.scope, page.id_cursor()?, limit).await?;
    let slugs = super::org_slugs(&app).await?;
    let items =
        rows.iter().map(|row| view_in(row, slugs.get(&row.org_id).cloned().unwrap_or_default(), None)).collect();
    Ok(Json(ListResponse::new(items, limit, rows.last().map(|r| r.id.to_string()))))
}

/// A webhook's id in a path.
#[derive(Debug, utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)] // documents the path; handlers read it with `Path<String>`
struct WebhookId {
    id: String,
}

async fn visible(app: &App, caller: &Caller, id: &str) -> ApiResult<Webhook> {
    caller.require(Permission::ManageWebhooks)?;
    let id: i64 = id.parse().map_err(|_| ApiError::not_found("webhook"))?;
    webhooks::visible(&app.api_store, &caller.scope, id).await?.ok_or_else(|| ApiError::not_found("webhook"))
}

#[utoipa::path(get, path = "/webhooks/{id}", tag = "webhooks", params(WebhookId),
    responses((status = 200, description = "The webhook", body = WebhookView)))]
async fn show(State(app): State<Arc<App>>, caller: Caller, Path(id): Path<String>) -> ApiResult<Json<WebhookView>> {
    let row = visible(&app, &caller, &id).await?;
    Ok(Json(view(&app, &row, None).await?))
}

/// Changes a webhook; `{"enabled": true}` enables one that was disabled.
#[utoipa::path(patch, path = "/webhooks/{id}", tag = "webhooks", params(WebhookId), request_body = ChangeWebhook,
    responses((status = 200, description = "The webhook as it is now", body = WebhookView)))]
async fn change(
    State(app): State<Arc<App>>,
    caller: Caller,
    Path(id): Path<String>,
    Json(request): Json<ChangeWebhook>,
) -> ApiResult<(Extension<AuditOrg>, Json<WebhookView>)> {
    let row = visible(&app, &caller, &id).await?;
    let url = match request.url.as_deref() {
        Some(url) => Some(checked_url(&app, url).await?),
        None => None,
    };
    let events = request.events.map(|events| checked_events(Some(events))).transpose()?;
    if let Some(secret) = &request.secret {
        checked_secret(secret)?;
    }
    let change = WebhookChange {
        url,
        events,
        description: request.description.map(Some),
        sealed_secret: request.secret.as_deref().map(|secret| app.secrets.seal(secret.as_bytes())),
        enabled: request.enabled,
    };
    let row = webhooks::update(&app.api_store, row.id, change).await?.ok_or_else(|| ApiError::not_found("webhook"))?;
    Ok((Extension(AuditOrg(Some(row.org_id))), Json(view(&app, &row, request.secret).await?)))
}

/// Deletes a webhook and its delivery log.
#[utoipa::path(delete, path = "/webhooks/{id}", tag = "webhooks", params(WebhookId),
    responses((status = 204, description = "Deleted")))]
async fn delete(
    State(app): State<Arc<App>>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<(StatusCode, Extension<AuditOrg>)> {
    let row = visible(&app, &caller, &id).await?;
    webhooks::delete(&app.api_store, row.id).await?;
    Ok((StatusCode::NO_CONTENT, Extension(AuditOrg(Some(row.org_id)))))
}

/// One delivery of the log.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryView {
    pub id: String,
    pub event_id: String,
    pub event_type: Option<String>,
    /// What the event is about (a device's id, a rollout's): a subject's deliveries go in order.
    pub subject: String,
    /// `pending`, `delivered`, `failed` (given up: its event no longer exists).
    pub state: String,
    pub attempts: u64,
    /// When it is tried next (pending).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_attempt_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_status: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_attempt_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delivered_at: Option<String>,
    /// The delivery this one replays.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replay_of: Option<String>,
    pub created_at: String,
}

fn delivery_view(delivery: &Delivery, event_type: Option<String>) -> DeliveryView {
    DeliveryView {
        id: delivery.id.to_string(),
        event_id: delivery.event_id.to_string(),
        event_type,
        subject: delivery.subject.clone(),
        state: delivery.state.clone(),
        attempts: u64::try_from(delivery.attempts).unwrap_or(0),
        next_attempt_at: (delivery.state == "pending").then(|| timestamp(delivery.next_attempt_at)),
        last_status: delivery.last_status.and_then(|s| u16::try_from(s).ok()),
        last_error: delivery.last_error.clone(),
        last_attempt_at: optional_timestamp(delivery.last_attempt_at),
        delivered_at: optional_timestamp(delivery.delivered_at),
        replay_of: delivery.replay_of.map(|id| id.to_string()),
        created_at: timestamp(delivery.created_at),
    }
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct DeliveriesQuery {
    #[serde(flatten)]
    #[param(ignore)] // documented by `Page` itself
    page: Page,
    /// Only deliveries in this state: `pending`, `delivered`, `failed`.
    state: Option<String>,
}

/// A webhook's delivery log, newest first.
#[utoipa::path(get, path = "/webhooks/{id}/deliveries", tag = "webhooks", params(WebhookId, DeliveriesQuery, Page),
    responses((status = 200, description = "A page of deliveries", body = ListResponse<DeliveryView>)))]
async fn deliveries(
    State(app): State<Arc<App>>,
    caller: Caller,
    Path(id): Path<String>,
    Query(query): Query<DeliveriesQuery>,
) -> ApiResult<Json<ListResponse<DeliveryView>>> {
    let row = visible(&app, &caller, &id).await?;
    if let Some(state) = query.state.as_deref()
        && !matches!(state, "pending" | "delivered" | "failed")
    {
        return Err(ApiError::bad_request(ErrorCode::InvalidQuery, format!("state: no state {state:?}")));
    }
    let limit = query.page.limit()?;
    let rows =
        webhooks::deliveries(&app.api_store, row.id, query.state.as_deref(), query.page.id_cursor()?, limit).await?;
    let event_ids: Vec<i64> = rows.iter().map(|d| d.event_id).collect();
    let types: std::collections::HashMap<i64, String> =
        webhooks::events_by_id(&app.api_store, &event_ids).await?.into_iter().map(|e| (e.id, e.r#type)).collect();
    let items = rows.iter().map(|d| delivery_view(d, types.get(&d.event_id).cloned())).collect();
    Ok(Json(ListResponse::new(items, limit, rows.last().map(|d| d.id.to_string()))))
}

#[derive(Debug, utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)] // documents the path; handlers read it with `Path<(String, String)>`
struct DeliveryId {
    id: String,
    delivery_id: String,
}

/// What a replay queued.
#[derive(Debug, Serialize, ToSchema)]
pub struct Replayed {
    /// Deliveries queued, each after the pending ones of its subject.
    pub queued: u64,
}

/// Sends a delivery's event again (a new delivery of the log).
#[utoipa::path(post, path = "/webhooks/{id}/deliveries/{delivery_id}/replay", tag = "webhooks", params(DeliveryId),
    responses((status = 202, description = "Queued", body = Replayed)))]
async fn replay_delivery(
    State(app): State<Arc<App>>,
    caller: Caller,
    Path((id, delivery_id)): Path<(String, String)>,
) -> ApiResult<(StatusCode, Extension<AuditOrg>, Json<Replayed>)> {
    let row = visible(&app, &caller, &id).await?;
    let not_found = || ApiError::not_found("delivery");
    let delivery_id: i64 = delivery_id.parse().map_err(|_| not_found())?;
    let delivery = webhooks::delivery(&app.api_store, row.id, delivery_id).await?.ok_or_else(not_found)?;
    let events = webhooks::events_by_id(&app.api_store, &[delivery.event_id]).await?;
    if events.is_empty() {
        return Err(invalid("the delivery's event no longer exists"));
    }
    let queued = webhooks::replay(&app.api_store, row.id, &events, Some(delivery.id)).await?;
    Ok((StatusCode::ACCEPTED, Extension(AuditOrg(Some(row.org_id))), Json(Replayed { queued })))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplayRange {
    /// RFC 3339: events made at or after this time …
    pub from: String,
    /// … and before this one (now when absent).
    pub to: Option<String>,
}

/// Sends again every event of a time range the webhook subscribes to, in order: what it missed
/// while it was down or disabled.
#[utoipa::path(post, path = "/webhooks/{id}/replay", tag = "webhooks", params(WebhookId), request_body = ReplayRange,
    responses((status = 202, description = "Queued", body = Replayed)))]
async fn replay_range(
    State(app): State<Arc<App>>,
    caller: Caller,
    Path(id): Path<String>,
    Json(request): Json<ReplayRange>,
) -> ApiResult<(StatusCode, Extension<AuditOrg>, Json<Replayed>)> {
    let row = visible(&app, &caller, &id).await?;
    let from = parse_timestamp("from", &request.from).map_err(|e| invalid(e.detail).on_field("from"))?;
    let to = match request.to.as_deref() {
        Some(to) => parse_timestamp("to", to).map_err(|e| invalid(e.detail).on_field("to"))?,
        None => crate::store::now_millis(),
    };
    if to <= from {
        return Err(invalid("to: after from").on_field("to"));
    }
    let subtree = crate::store::orgs::subtree(&app.api_store, row.org_id).await?;
    let events = webhooks::events_between(&app.api_store, &subtree, from, to, MAX_REPLAY + 1).await?;
    if events.len() as u64 > MAX_REPLAY {
        return Err(
            invalid(format!("the range holds more than {MAX_REPLAY} events; replay it in parts")).on_field("from")
        );
    }
    let patterns = row.patterns();
    let events: Vec<_> = events.into_iter().filter(|e| crate::events::subscribed(&patterns, &e.r#type)).collect();
    let queued = webhooks::replay(&app.api_store, row.id, &events, None).await?;
    Ok((StatusCode::ACCEPTED, Extension(AuditOrg(Some(row.org_id))), Json(Replayed { queued })))
}
