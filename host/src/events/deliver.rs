//! Webhook deliveries: due ones are sent concurrently (`[events] concurrency`), each bounded by
//! `[events] timeout`; a device's deliveries to a webhook go one at a time, in order (`due`
//! hands out the oldest pending one of each webhook and subject, and one in flight holds its
//! subject back). Outcomes are written in batches. A failure is retried after a backoff with
//! jitter; a webhook failing `breaker_failures` times in a row has its circuit opened: nothing
//! goes to it until one delivery, after a backoff, gets through; failing past `disable_after`,
//! it is disabled. A receiver that hangs costs its deliveries' timeouts, nothing more: sessions
//! never wait on webhooks.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Result;
use futures::StreamExt;
use futures::stream::FuturesUnordered;

use super::{Breaker, after_failure, backoff, millis};
use crate::app::App;
use crate::store::events::Event;
use crate::store::now_millis;
use crate::store::webhooks::{self, Attempt, BreakerState, Delivery, Webhook};

/// What a receiver's answer may say about its failure, kept in the log.
const ERROR_CHARS: usize = 300;
/// Why a delivery whose event was deleted (with its organization) is given up.
const GONE: &str = "the event no longer exists";

pub async fn run(
    app: Arc<App>,
    held: Arc<AtomicBool>,
    wake: Arc<tokio::sync::Notify>,
    mut stopped: tokio::sync::watch::Receiver<bool>,
) -> Result<()> {
    let settings = &app.config.events;
    let concurrency = settings.concurrency.max(1);
    let mut running = FuturesUnordered::new();
    // Deliveries in flight, and their webhook and subject, which wait for them.
    let mut in_flight: HashSet<i64> = HashSet::new();
    let mut busy: HashSet<(i64, String)> = HashSet::new();
    loop {
        // Each round, after anything ended or was woken: the claim is one query.
        if held.load(Ordering::Relaxed) && running.len() < concurrency {
            match claim(&app, &in_flight, &busy, concurrency - running.len()).await {
                Ok(claimed) => {
                    for (delivery, webhook, event) in claimed {
                        in_flight.insert(delivery.id);
                        busy.insert((delivery.webhook_id, delivery.subject.clone()));
                        let app = app.clone();
                        // A task of its own: a send goes on while this loop writes outcomes,
                        // and holds no database connection (the event came with the claim).
                        let sending = tokio::spawn(async move {
                            let (status, error) = send(&app, &webhook, &delivery, event.as_ref()).await;
                            (delivery, webhook, status, error)
                        });
                        running.push(sending);
                    }
                }
                Err(error) => tracing::warn!("finding webhook deliveries: {error:#}"),
            }
        }
        tokio::select! {
            Some(first) = running.next(), if !running.is_empty() => {
                let mut joined = vec![first];
                while let Some(Some(more)) = futures::FutureExt::now_or_never(running.next()) {
                    joined.push(more);
                }
                // A send that panicked is tried again after a restart; the others are written.
                let ended: Vec<_> = joined.into_iter().filter_map(Result::ok).collect();
                for (delivery, _, _, _) in &ended {
                    in_flight.remove(&delivery.id);
                    busy.remove(&(delivery.webhook_id, delivery.subject.clone()));
                }
                if let Err(error) = record(&app, ended).await {
                    tracing::warn!("recording webhook deliveries: {error:#}");
                }
            }
            () = wake.notified() => {}
            () = tokio::time::sleep(settings.poll) => {}
            _ = stopped.changed() => {
                // What is in flight is sent again by whoever holds the lease next.
                return Ok(());
            }
        }
    }
}

/// A delivery, its webhook, and its event with the organization's slug (none when the event is
/// gone).
type Claimed = (Delivery, Arc<Webhook>, Option<(Event, Option<String>)>);

/// Due deliveries not held back by one in flight; one per webhook whose circuit is half open.
async fn claim(
    app: &App,
    in_flight: &HashSet<i64>,
    busy: &HashSet<(i64, String)>,
    room: usize,
) -> Result<Vec<Claimed>> {
    let now = now_millis();
    let due = webhooks::due(&app.store, now, (room + in_flight.len()) as u64).await?;
    let due: Vec<Delivery> = due
        .into_iter()
        .filter(|d| !in_flight.contains(&d.id) && !busy.contains(&(d.webhook_id, d.subject.clone())))
        .take(room)
        .collect();
    if due.is_empty() {
        return Ok(Vec::new());
    }
    let hooks: HashMap<i64, Arc<Webhook>> =
        webhooks::enabled(&app.store).await?.into_iter().map(|w| (w.id, Arc::new(w))).collect();
    let event_ids: Vec<i64> = due.iter().map(|d| d.event_id).collect();
    let mut events: HashMap<i64, Event> =
        webhooks::events_by_id(&app.store, &event_ids).await?.into_iter().map(|e| (e.id, e)).collect();
    let slugs = crate::store::orgs::slugs(&app.store).await?;
    let threshold = i64::from(app.config.events.breaker_failures.max(1));
    let mut probing: HashSet<i64> = busy.iter().map(|(webhook, _)| *webhook).collect();
    let mut claimed = Vec::new();
    for delivery in due {
        let Some(webhook) = hooks.get(&delivery.webhook_id) else { continue };
        // Half open: one delivery probes the webhook; the rest wait for its outcome.
        if webhook.failures >= threshold && !probing.insert(webhook.id) {
            continue;
        }
        let event = events.remove(&delivery.event_id).map(|event| {
            let slug = event.org_id.and_then(|id| slugs.get(&id).cloned());
            (event, slug)
        });
        claimed.push((delivery, webhook.clone(), event));
    }
    Ok(claimed)
}

/// Sends one delivery: the receiver's status, and why it failed if it did.
async fn send(
    app: &App,
    webhook: &Webhook,
    delivery: &Delivery,
    event: Option<&(Event, Option<String>)>,
) -> (Option<u16>, Option<String>) {
    let Some((event, slug)) = event else { return (None, Some(GONE.into())) };
    let secret = match app.secrets.open(&webhook.sealed_secret) {
        Ok(secret) => secret,
        Err(error) => return (None, Some(format!("its secret cannot be opened: {error}"))),
    };
    let body = super::outbox::body(event, slug.as_deref()).to_string();
    let timestamp = now_millis() / 1000;
    let message_id = event.id.to_string();
    let request = app
        .webhook_http
        .post(&webhook.url)
        .timeout(app.config.events.timeout)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header("X-Roost-Event", &event.r#type)
        .header("X-Roost-Delivery", delivery.id.to_string())
        .header("X-Roost-Timestamp", timestamp.to_string())
        .header("X-Roost-Signature", super::roost_signature(&secret, body.as_bytes()))
        .header("webhook-id", &message_id)
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", super::standard_signature(&secret, &message_id, timestamp, body.as_bytes()))
        .body(body);
    match request.send().await {
        Ok(response) if response.status().is_success() => (Some(response.status().as_u16()), None),
        Ok(response) => {
            let status = response.status();
            let said = tokio::time::timeout(app.config.events.timeout, response.text()).await.ok().and_then(Result::ok);
            let said: String = said.unwrap_or_default().chars().take(ERROR_CHARS).collect();
            (
                Some(status.as_u16()),
                Some(format!(
                    "the receiver answered {status}{}",
                    if said.is_empty() { String::new() } else { format!(": {said}") }
                )),
            )
        }
        Err(error) if error.is_timeout() => {
            (None, Some(format!("no answer within {} s", app.config.events.timeout.as_secs_f32())))
        }
        Err(error) => (None, Some(format!("{error:#}").chars().take(ERROR_CHARS).collect())),
    }
}

/// Writes the outcomes of ended deliveries and what they did to their webhooks' breakers.
/// A delivery sent: the receiver's status, when it answered, and why it failed, when it did.
type Ended = (Delivery, Arc<Webhook>, Option<u16>, Option<String>);

async fn record(app: &App, ended: Vec<Ended>) -> Result<()> {
    let settings = &app.config.events;
    let now = now_millis();
    let threshold = settings.breaker_failures.max(1);
    let mut attempts = Vec::with_capacity(ended.len());
    // The breakers as they are now: other rounds may have moved them since these were claimed.
    let current: HashMap<i64, Webhook> = webhooks::enabled(&app.store).await?.into_iter().map(|w| (w.id, w)).collect();
    let mut breakers: HashMap<i64, (BreakerState, bool)> = HashMap::new();
    for (delivery, webhook, status, error) in ended {
        let now_state = current.get(&webhook.id).unwrap_or(&webhook);
        let (breaker, moved) = breakers.entry(webhook.id).or_insert_with(|| {
            let state = BreakerState {
                webhook_id: webhook.id,
                org_id: webhook.org_id,
                failures: now_state.failures,
                failing_since: now_state.failing_since,
                open_until: now_state.open_until,
                disabled: None,
            };
            (state, false)
        });
        // A webhook disabled or deleted meanwhile keeps what it has.
        *moved |= current.contains_key(&webhook.id) && (error.is_some() || breaker.failures > 0);
        let gone = error.as_deref() == Some(GONE);
        let retry_at = match &error {
            Some(_) if !gone => {
                let tries = u32::try_from(delivery.attempts + 1).unwrap_or(u32::MAX);
                Some(now + millis(backoff(tries, settings.retry_base, settings.retry_max, rand::random::<f64>())))
            }
            _ => None,
        };
        if error.is_none() {
            breaker.failures = 0;
            breaker.failing_since = None;
            breaker.open_until = None;
        } else if !gone {
            breaker.failures += 1;
            let since = *breaker.failing_since.get_or_insert(now);
            let failures = u32::try_from(breaker.failures).unwrap_or(u32::MAX);
            match after_failure(failures, since, now, threshold, settings) {
                Breaker::Closed => {}
                Breaker::OpenUntil(until) => breaker.open_until = Some(until),
                Breaker::Disable => {
                    let days = settings.disable_after.as_secs_f64() / 86_400.0;
                    breaker.disabled = Some(format!(
                        "it failed {failures} deliveries in a row over {}; the last: {}",
                        if days >= 1.0 {
                            format!("{days:.1} days")
                        } else {
                            format!("{} s", settings.disable_after.as_secs())
                        },
                        error.as_deref().unwrap_or_default()
                    ));
                }
            }
        }
        attempts.push(Attempt { delivery_id: delivery.id, webhook_id: webhook.id, at: now, status, error, retry_at });
    }
    let moved: Vec<BreakerState> = breakers.into_values().filter(|(_, moved)| *moved).map(|(b, _)| b).collect();
    webhooks::record_attempts(&app.store, &attempts, &moved).await
}
