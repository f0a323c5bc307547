//! `GET /events/stream`: the caller's events as they happen, as Server-Sent Events — for the
//! portal (tasks, diagnostics and rollouts progressing on screen) and any integration that
//! would rather hold a connection than receive webhooks. Authenticated and scoped like every
//! route: a caller sees its organizations' events (the platform's also those of unclaimed
//! devices). A stream lasts at most `STREAM_LIFETIME`, then ends: the client connects again
//! with its credentials as they are then (a revoked key or an ended session gets no more).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Extension;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use futures::Stream;
use serde::Deserialize;
use tokio::sync::broadcast::error::RecvError;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::authenticate::Caller;
use super::error::{ApiError, ApiResult, ErrorCode};
use super::extract::Query;
use crate::app::App;
use crate::events::live::{self, Interest};
use crate::permissions::Permission;

pub fn router() -> OpenApiRouter<Arc<App>> {
    OpenApiRouter::new().routes(routes!(stream))
}

/// How long one stream lasts before the client must connect (and authenticate) again.
const STREAM_LIFETIME: Duration = Duration::from_secs(10 * 60);
/// A comment this often keeps proxies from closing a quiet stream.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct StreamQuery {
    /// Comma-separated event types as webhooks subscribe to them: `*`, `task.done`,
    /// `rollout.*`; all when absent.
    types: Option<String>,
    /// Only events about this subject: a device's id (tasks, diagnostics, device and rollout
    /// progress events are about a device).
    subject: Option<String>,
}

/// The caller's events from now on, as `text/event-stream`: each `event:` is the event's type,
/// `id:` its id, `data:` the JSON webhooks carry (`id`, `type`, `org`, `subject`, `payload`,
/// `time`). An `event: lagged` means events were missed (the client fell behind): reload what
/// is shown. The stream ends after ten minutes; connect again. A caller holds at most eight
/// streams on a server at once.
#[utoipa::path(get, path = "/events/stream", tag = "events", params(StreamQuery),
    responses(
        (status = 200, description = "Server-Sent Events", content_type = "text/event-stream", body = String),
        (status = 429, description = "The caller holds as many streams as it may", body = super::error::Problem),
        (status = 503, description = "This replica serves as many streams as it can", body = super::error::Problem),
    ))]
async fn stream(
    State(app): State<Arc<App>>,
    Extension(slot): Extension<crate::api::ApiSlot>,
    caller: Caller,
    Query(query): Query<StreamQuery>,
) -> ApiResult<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>> {
    caller.require(Permission::ReadFleet)?;
    let patterns: Vec<String> = query
        .types
        .as_deref()
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(str::to_owned)
        .collect();
    for pattern in &patterns {
        crate::events::check_pattern(pattern)
            .map_err(|why| ApiError::bad_request(ErrorCode::InvalidQuery, why).on_field("types"))?;
    }
    let interest = Interest { scope: caller.scope.clone(), patterns, subject: query.subject };
    let listener = app.live.listen(&app.store, &caller.actor()).await.map_err(|refusal| match refusal {
        live::Refusal::Full => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::Busy,
            format!("this server streams events to {} clients already; retry later", live::MAX_STREAMS),
        ),
        live::Refusal::CallerFull => ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::RateLimited,
            format!("you hold {} event streams on this server already; close one", live::MAX_STREAMS_PER_CALLER),
        ),
    })?;
    // A stream is held for minutes: it must not hold one of the API's places.
    slot.release();
    let ends = tokio::time::Instant::now() + STREAM_LIFETIME;
    // The listener (and its place) is the stream's state: given back when the stream ends or
    // the client goes.
    let events = futures::stream::unfold((listener, interest), move |(mut listener, interest)| async move {
        loop {
            let received = tokio::select! {
                received = tokio::time::timeout_at(ends, listener.events.recv()) => received,
                _ = listener.closing.wait_for(|closing| *closing) => return None,
            };
            let event = match received {
                Err(_) | Ok(Err(RecvError::Closed)) => return None,
                // How many were missed counts every tenant's events: not told.
                Ok(Err(RecvError::Lagged(_))) => SseEvent::default().event("lagged").data("{}"),
                Ok(Ok(event)) if live::wanted(&interest, &event.event) => SseEvent::default()
                    .event(event.event.r#type.as_str())
                    .id(event.event.id.to_string())
                    .data(event.body.as_str()),
                Ok(Ok(_)) => continue,
            };
            return Some((Ok(event), (listener, interest)));
        }
    });
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(KEEP_ALIVE)))
}
