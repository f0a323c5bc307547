//! Webhook deliveries: due ones are sent concurrently (`[events] concurrency` in all, at most
//! `webhook_concurrency` to one webhook, so a receiver that hangs holds only its own slots),
//! each bounded by `[events] timeout`; a device's deliveries to a webhook go one at a time, in
//! order (`due` hands out the oldest pending one of each webhook and subject, and one in flight
//! holds its subject back). Outcomes are written in batches. A failure is retried after a
//! backoff with jitter; the webhook's breaker (`events::after_failure`) opens after
//! `breaker_failures` in a row: nothing goes to it until one delivery, after a backoff, gets
//! through; failing past `disable_after`, it is disabled. Sessions never wait on any of this.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Result;
use futures::stream::FuturesUnordered;
use futures::{FutureExt, StreamExt};
use hyper::header::{CONTENT_TYPE, HeaderName};

use super::{BreakerState, after_failure, after_success, backoff, millis};
use crate::app::App;
use crate::store::events::Event;
use crate::store::now_millis;
use crate::store::webhooks::{self, Attempt, BreakerWrite, Delivery, Webhook};

/// Why a delivery whose event was deleted (with its organization) is given up.
const GONE: &str = "the event no longer exists";

/// A delivery sent: the receiver's status, when it answered, and why it failed, when it did.
type Ended = (Delivery, Arc<Webhook>, Option<u16>, Option<String>);

/// Deliveries in flight, and what they hold back: their subject, and a share of their webhook.
#[derive(Default)]
struct InFlight {
    ids: HashSet<i64>,
    subjects: HashSet<(i64, String)>,
    per_webhook: HashMap<i64, usize>,
}

impl InFlight {
    fn start(&mut self, delivery: &Delivery) {
        self.ids.insert(delivery.id);
        self.subjects.insert((delivery.webhook_id, delivery.subject.clone()));
        *self.per_webhook.entry(delivery.webhook_id).or_default() += 1;
    }

    fn end(&mut self, delivery: &Delivery) {
        self.ids.remove(&delivery.id);
        self.subjects.remove(&(delivery.webhook_id, delivery.subject.clone()));
        if let Some(count) = self.per_webhook.get_mut(&delivery.webhook_id) {
            *count = count.saturating_sub(1);
        }
    }

    fn of(&self, webhook: i64) -> usize {
        self.per_webhook.get(&webhook).copied().unwrap_or(0)
    }
}

pub async fn run(
    app: Arc<App>,
    held: Arc<AtomicBool>,
    wake: Arc<tokio::sync::Notify>,
    mut stopped: tokio::sync::watch::Receiver<bool>,
) -> Result<()> {
    let settings = &app.config.events;
    let concurrency = settings.concurrency.max(1);
    let mut running = FuturesUnordered::new();
    let mut in_flight = InFlight::default();
    let mut slugs = Slugs::default();
    loop {
        // Each round, after anything ended or was woken: the claim is one query.
        if held.load(Ordering::Relaxed) && running.len() < concurrency {
            match claim(&app, &in_flight, &mut slugs, concurrency - running.len()).await {
                Ok(claimed) => {
                    for (delivery, webhook, event) in claimed {
                        in_flight.start(&delivery);
                        let app = app.clone();
                        // A task of its own: a send goes on while this loop writes outcomes,
                        // and holds no database connection (the event came with the claim).
                        let sending = tokio::spawn(async move {
                            let sent = std::panic::AssertUnwindSafe(send(&app, &webhook, &delivery, event.as_ref()));
                            let (status, error) = sent
                                .catch_unwind()
                                .await
                                .unwrap_or_else(|_| (None, Some("Roost failed sending it (a bug)".into())));
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
                while let Some(Some(more)) = running.next().now_or_never() {
                    joined.push(more);
                }
                finish(&app, &mut in_flight, joined).await;
            }
            () = wake.notified() => {}
            () = tokio::time::sleep(settings.poll) => {}
            _ = stopped.changed() => {
                // What is under way ends (within its timeout) and is written before the lease
                // goes: the next holder would send it again, perhaps after its successor.
                let mut joined = Vec::new();
                while let Some(ended) = running.next().await {
                    joined.push(ended);
                }
                finish(&app, &mut in_flight, joined).await;
                return Ok(());
            }
        }
    }
}

async fn finish(app: &App, in_flight: &mut InFlight, joined: Vec<Result<Ended, tokio::task::JoinError>>) {
    // A send cannot panic out of its task (it is caught); a task cancelled at shutdown is sent
    // again by the next holder of the lease.
    let ended: Vec<Ended> = joined.into_iter().filter_map(Result::ok).collect();
    for (delivery, ..) in &ended {
        in_flight.end(delivery);
    }
    if let Err(error) = record(app, ended).await {
        tracing::warn!("recording webhook deliveries: {error:#}");
    }
}

/// A delivery, its webhook, and its event with the organization's slug (none when the event is
/// gone).
type Claimed = (Delivery, Arc<Webhook>, Option<(Event, Option<String>)>);

/// Organization slugs, for the events' `org`, read again every few seconds (a rename shows
/// within that), not at every claim.
#[derive(Default)]
struct Slugs {
    read_at: Option<std::time::Instant>,
    by_org: HashMap<i64, String>,
}

impl Slugs {
    const FRESH: std::time::Duration = std::time::Duration::from_secs(5);

    async fn get(&mut self, app: &App) -> Result<&HashMap<i64, String>> {
        if self.read_at.is_none_or(|at| at.elapsed() >= Self::FRESH) {
            self.by_org = crate::store::orgs::slugs(&app.store).await?;
            self.read_at = Some(std::time::Instant::now());
        }
        Ok(&self.by_org)
    }
}

/// Due deliveries not held back by one in flight, within each webhook's share; one at a time
/// for a webhook whose circuit is half open. Two queries: the deliveries with their webhooks,
/// and their events.
async fn claim(app: &App, in_flight: &InFlight, slugs: &mut Slugs, room: usize) -> Result<Vec<Claimed>> {
    let settings = &app.config.events;
    let threshold = settings.breaker_failures.max(1);
    let share = settings.webhook_concurrency.max(1);
    let now = now_millis();
    let saturated: Vec<i64> =
        in_flight.per_webhook.iter().filter(|(_, going)| **going >= share).map(|(webhook, _)| *webhook).collect();
    let due = webhooks::due(&app.store, now, threshold, &saturated, (room + in_flight.ids.len()) as u64).await?;
    let mut hooks: HashMap<i64, Arc<Webhook>> = HashMap::new();
    let mut taken: HashMap<i64, usize> = HashMap::new();
    let mut picked = Vec::new();
    for (delivery, webhook) in due {
        if picked.len() == room {
            break;
        }
        let webhook = hooks.entry(webhook.id).or_insert_with(|| Arc::new(webhook));
        let held_back = in_flight.ids.contains(&delivery.id)
            || in_flight.subjects.contains(&(delivery.webhook_id, delivery.subject.clone()));
        let going = in_flight.of(webhook.id) + taken.get(&webhook.id).copied().unwrap_or(0);
        let half_open = webhook.failures >= i64::from(threshold);
        if held_back || going >= share || (half_open && going > 0) {
            continue;
        }
        *taken.entry(webhook.id).or_default() += 1;
        picked.push((delivery, webhook.clone()));
    }
    if picked.is_empty() {
        return Ok(Vec::new());
    }
    let event_ids: Vec<i64> = picked.iter().map(|(d, _)| d.event_id).collect();
    let events: HashMap<i64, Event> =
        webhooks::events_by_id(&app.store, &event_ids).await?.into_iter().map(|e| (e.id, e)).collect();
    let slugs = slugs.get(app).await?;
    Ok(picked
        .into_iter()
        .map(|(delivery, webhook)| {
            // Each webhook subscribed to an event has a delivery of it, often in the same round.
            let event = events.get(&delivery.event_id).map(|event| {
                let slug = event.org_id.and_then(|id| slugs.get(&id).cloned());
                (event.clone(), slug)
            });
            (delivery, webhook, event)
        })
        .collect())
}

/// Sends one delivery: the receiver's status, and why it failed if it did. What a receiver
/// answers beyond its status is not kept: the log would hand it to whoever reads it.
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
    let headers = [
        (CONTENT_TYPE, "application/json".to_owned()),
        (HeaderName::from_static("x-roost-event"), event.r#type.clone()),
        (HeaderName::from_static("x-roost-delivery"), delivery.id.to_string()),
        (HeaderName::from_static("x-roost-timestamp"), timestamp.to_string()),
        (HeaderName::from_static("x-roost-signature"), super::roost_signature(&secret, body.as_bytes())),
        (HeaderName::from_static("webhook-id"), message_id.clone()),
        (HeaderName::from_static("webhook-timestamp"), timestamp.to_string()),
        (
            HeaderName::from_static("webhook-signature"),
            super::standard_signature(&secret, &message_id, timestamp, body.as_bytes()),
        ),
    ];
    match app.webhook_http.post(&webhook.url, &headers, body).await {
        Ok(status) if status.is_success() => (Some(status.as_u16()), None),
        Ok(status) => (Some(status.as_u16()), Some(format!("the receiver answered {status}"))),
        Err(failure) => (None, Some(failure.to_string())),
    }
}

/// Writes the outcomes of ended deliveries and what they did to their webhooks' breakers.
async fn record(app: &App, ended: Vec<Ended>) -> Result<()> {
    if ended.is_empty() {
        return Ok(());
    }
    let settings = &app.config.events;
    let now = now_millis();
    // The breakers as they are now: other rounds may have moved them since these were claimed.
    let mut ids: Vec<i64> = ended.iter().map(|(_, webhook, ..)| webhook.id).collect();
    ids.sort_unstable();
    ids.dedup();
    let current: HashMap<i64, Webhook> =
        webhooks::enabled_of(&app.store, &ids).await?.into_iter().map(|w| (w.id, w)).collect();
    let mut breakers: HashMap<i64, (BreakerWrite, BreakerState)> = HashMap::new();
    let mut attempts = Vec::with_capacity(ended.len());
    for (delivery, webhook, status, error) in ended {
        let gone = error.as_deref() == Some(GONE);
        app.metrics.webhook_deliveries.inc(match (&error, gone) {
            (None, _) => "delivered",
            (Some(_), true) => "gone",
            (Some(_), false) => "failed",
        });
        let retry_at = match &error {
            Some(_) if !gone => {
                let tries = u32::try_from(delivery.attempts + 1).unwrap_or(u32::MAX);
                Some(now + millis(backoff(tries, settings.retry_base, settings.retry_max, rand::random::<f64>())))
            }
            _ => None,
        };
        // A webhook disabled or deleted meanwhile keeps what it has.
        if let Some(stored) = current.get(&webhook.id)
            && !gone
        {
            let (_, state) = breakers.entry(webhook.id).or_insert_with(|| (BreakerWrite::of(stored), state_of(stored)));
            *state = if error.is_none() { after_success() } else { after_failure(*state, now, settings) };
        }
        attempts.push(Attempt { delivery_id: delivery.id, at: now, status, error, retry_at });
    }
    let writes: Vec<BreakerWrite> = breakers
        .into_values()
        .filter_map(|(write, state)| {
            let before = current.get(&write.webhook_id).map(state_of);
            (before != Some(state)).then(|| write.with(state, settings))
        })
        .collect();
    webhooks::record_attempts(&app.store, &attempts, &writes, now).await
}

fn state_of(webhook: &Webhook) -> BreakerState {
    BreakerState {
        failures: u32::try_from(webhook.failures).unwrap_or(u32::MAX),
        failing_since: webhook.failing_since,
        opened: u32::try_from(webhook.opened).unwrap_or(u32::MAX),
        open_until: webhook.open_until,
        disabled: !webhook.enabled,
    }
}
