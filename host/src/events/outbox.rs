//! The outbox's readers, run by whichever replica holds the `events` lease: the webhook fan-out
//! (each event becomes a delivery for each enabled webhook that subscribes to it: the webhook's
//! organization is the event's or one above it) and the NATS JetStream publisher. Each reads
//! past its cursor and moves it only once what it read is queued or acknowledged: a crash or a
//! restart in between sends again (receivers deduplicate by event id: the `webhook-id` header,
//! JetStream's `Nats-Msg-Id`), never loses.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, Result};
use sea_orm::FromQueryResult;

use crate::app::App;
use crate::store::events::Event;
use crate::store::webhooks::{self, NewDelivery, Webhook};
use crate::store::{Store, leases};

const LEASE: &str = "events";
/// Events read per round.
const BATCH: u64 = 1000;
/// Deliveries queued in one catch-up after which the planner's statistics are refreshed, at
/// most once per `STATISTICS_EVERY`.
const STATISTICS_AFTER: u64 = 1000;
const STATISTICS_EVERY: Duration = Duration::from_secs(60);

/// Runs the readers and the deliveries while this replica holds the lease.
pub async fn run(app: Arc<App>, mut stopped: tokio::sync::watch::Receiver<bool>) -> Result<()> {
    let owner = uuid::Uuid::now_v7().to_string();
    let poll = app.config.events.poll;
    // Held for 15 s (or six polls), renewed every third of that: not a write per poll, which on
    // SQLite would queue behind and before the sessions' writes.
    let hold_for = (poll * 6).max(Duration::from_secs(15));
    let ttl = super::millis(hold_for);
    let mut renewed: Option<tokio::time::Instant> = None;
    let mut analyzed: Option<tokio::time::Instant> = None;
    let held = Arc::new(AtomicBool::new(false));
    let wake = Arc::new(tokio::sync::Notify::new());
    let mut workers = tokio::task::JoinSet::new();
    workers.spawn(super::deliver::run(app.clone(), held.clone(), wake.clone(), stopped.clone()));
    if let Some(url) = app.config.events.nats_url.clone() {
        workers.spawn(publish_loop(app.clone(), url, held.clone(), stopped.clone()));
    }
    let mut tick = tokio::time::interval(poll);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stopped.changed() => break,
        }
        if renewed.is_none_or(|at| at.elapsed() >= hold_for / 3) {
            match leases::hold(&app.store, LEASE, &owner, ttl).await {
                Ok(holding) => {
                    held.store(holding, Ordering::Relaxed);
                    renewed = holding.then(tokio::time::Instant::now);
                }
                Err(error) => {
                    held.store(false, Ordering::Relaxed);
                    renewed = None;
                    tracing::warn!("taking the events lease: {error:#}");
                    continue;
                }
            }
        }
        if !held.load(Ordering::Relaxed) {
            continue;
        }
        // Until the outbox is caught up: a burst is fanned out in rounds back to back, the lease
        // renewed on the way (a cursor moved by another holder makes a round undo itself).
        let mut queued = 0u64;
        loop {
            if renewed.is_none_or(|at| at.elapsed() >= hold_for / 3) {
                match leases::hold(&app.store, LEASE, &owner, ttl).await {
                    Ok(true) => renewed = Some(tokio::time::Instant::now()),
                    _ => {
                        held.store(false, Ordering::Relaxed);
                        renewed = None;
                        break;
                    }
                }
            }
            match fan_out_once(&app.store).await {
                Ok((0, _)) => break,
                Ok((read, deliveries)) => {
                    queued += deliveries;
                    wake.notify_one();
                    if read < BATCH {
                        break;
                    }
                }
                Err(error) => {
                    tracing::warn!("fanning events out to webhooks: {error:#}");
                    break;
                }
            }
        }
        // A burst grows the pending deliveries faster than PostgreSQL's statistics follow (the
        // autovacuum analyzes a minute or more later): with them stale, the planner sorts every
        // pending row for each claim instead of walking the few it needs.
        if queued >= STATISTICS_AFTER && analyzed.is_none_or(|at| at.elapsed() >= STATISTICS_EVERY) {
            analyzed = Some(tokio::time::Instant::now());
            if let Err(error) = webhooks::refresh_statistics(&app.store).await {
                tracing::debug!("analyzing webhook_deliveries: {error:#}");
            }
        }
    }
    held.store(false, Ordering::Relaxed);
    while workers.join_next().await.is_some() {}
    if let Err(error) = leases::release(&app.store, LEASE, &owner).await {
        tracing::debug!("releasing the events lease: {error:#}");
    }
    Ok(())
}

#[derive(Debug, FromQueryResult)]
struct OrgNode {
    id: i64,
    parent_id: Option<i64>,
    slug: String,
}

/// The organization tree: parents and slugs.
struct Orgs {
    parents: HashMap<i64, Option<i64>>,
    slugs: HashMap<i64, String>,
}

async fn orgs(store: &Store) -> Result<Orgs> {
    let nodes = OrgNode::find_by_statement(store.statement("SELECT id, parent_id, slug FROM organizations", []))
        .all(store.db())
        .await
        .context("reading the organizations")?;
    Ok(Orgs {
        parents: nodes.iter().map(|n| (n.id, n.parent_id)).collect(),
        slugs: nodes.into_iter().map(|n| (n.id, n.slug)).collect(),
    })
}

/// The webhooks an event goes to: enabled, made before it, of its organization or one above,
/// subscribed to its type. Events of no organization (a device no one claimed) go to none: what
/// they tell is the platform's (NATS carries them).
fn recipients<'a>(event: &Event, webhooks: &'a [Webhook], patterns: &[Vec<String>], orgs: &Orgs) -> Vec<&'a Webhook> {
    let chain = super::chain(event.org_id, &orgs.parents);
    webhooks
        .iter()
        .zip(patterns)
        .filter(|(webhook, patterns)| {
            chain.contains(&webhook.org_id)
                && webhook.created_at <= event.created_at
                && super::subscribed(patterns, &event.r#type)
        })
        .map(|(webhook, _)| webhook)
        .collect()
}

/// Fans one round of events out; how many events it read.
/// Fans one round of events out: how many events it read, and deliveries it queued.
async fn fan_out_once(store: &Store) -> Result<(u64, u64)> {
    let after = webhooks::cursor(store, webhooks::WEBHOOK_READER).await?;
    let events = webhooks::read(store, after, BATCH).await?;
    let Some((last, _)) = events.last() else { return Ok((0, 0)) };
    let last = *last;
    let enabled = webhooks::enabled(store).await?;
    let patterns: Vec<Vec<String>> = enabled.iter().map(Webhook::patterns).collect();
    let tree =
        if enabled.is_empty() { Orgs { parents: HashMap::new(), slugs: HashMap::new() } } else { orgs(store).await? };
    let mut deliveries = Vec::new();
    for (_, event) in &events {
        for webhook in recipients(event, &enabled, &patterns, &tree) {
            deliveries.push(NewDelivery {
                webhook_id: webhook.id,
                event_id: event.id,
                subject: &event.subject,
                replay_of: None,
            });
        }
    }
    if !webhooks::fan_out(store, &deliveries, after, last).await? {
        anyhow::bail!("another replica moved the webhook reader: the events lease changed hands");
    }
    Ok((events.len() as u64, deliveries.len() as u64))
}

/// An event as receivers get it, by webhook and on NATS.
pub fn body(event: &Event, org_slug: Option<&str>) -> serde_json::Value {
    serde_json::json!({
        "id": event.id.to_string(),
        "type": event.r#type,
        "org": org_slug,
        "subject": event.subject,
        "payload": serde_json::from_str::<serde_json::Value>(&event.payload).unwrap_or(serde_json::Value::Null),
        "time": crate::api::timestamp(event.created_at),
    })
}

/// Publishes the outbox to NATS JetStream, reconnecting as the client does; an event is past
/// the cursor once the stream acknowledged it.
async fn publish_loop(
    app: Arc<App>,
    url: String,
    held: Arc<AtomicBool>,
    mut stopped: tokio::sync::watch::Receiver<bool>,
) -> Result<()> {
    let mut stream: Option<async_nats::jetstream::Context> = None;
    let mut tick = tokio::time::interval(app.config.events.poll);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stopped.changed() => return Ok(()),
        }
        if !held.load(Ordering::Relaxed) {
            continue;
        }
        if stream.is_none() {
            match connect(&url, &app.config.events.nats_stream, &app.config.events.nats_prefix).await {
                Ok(context) => stream = Some(context),
                Err(error) => {
                    tracing::warn!(url = %crate::store::redact_url(&url), "connecting to NATS: {error:#}");
                    continue;
                }
            }
        }
        let Some(context) = &stream else { continue };
        loop {
            match publish_once(&app.store, context, &app.config.events.nats_prefix).await {
                Ok(read) if read < BATCH => break,
                Ok(_) => {}
                Err(error) => {
                    tracing::warn!(url = %crate::store::redact_url(&url), "publishing events to NATS: {error:#}");
                    break;
                }
            }
        }
    }
}

async fn connect(url: &str, stream: &str, prefix: &str) -> Result<async_nats::jetstream::Context> {
    let client = async_nats::ConnectOptions::new()
        .name("roost")
        .connection_timeout(Duration::from_secs(5))
        .connect(url)
        .await
        .context("connecting")?;
    let context = async_nats::jetstream::new(client);
    context
        .get_or_create_stream(async_nats::jetstream::stream::Config {
            name: stream.to_owned(),
            subjects: vec![format!("{prefix}.>")],
            // A publish retried after a lost acknowledgement is kept once.
            duplicate_window: Duration::from_secs(600),
            ..Default::default()
        })
        .await
        .with_context(|| format!("making the stream {stream}"))?;
    Ok(context)
}

/// Publishes one round; how many events it read.
async fn publish_once(store: &Store, context: &async_nats::jetstream::Context, prefix: &str) -> Result<u64> {
    let after = webhooks::cursor(store, webhooks::NATS_READER).await?;
    let events = webhooks::read(store, after, BATCH).await?;
    let Some((last, _)) = events.last() else { return Ok(0) };
    let last = *last;
    let tree = orgs(store).await?;
    let mut acks = Vec::with_capacity(events.len());
    for (_, event) in &events {
        let slug = event.org_id.and_then(|id| tree.slugs.get(&id)).map(String::as_str);
        let subject = super::nats_subject(prefix, slug, &event.r#type);
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Msg-Id", event.id.to_string().as_str());
        let payload = body(event, slug).to_string();
        let ack = context
            .publish_with_headers(subject, headers, payload.into())
            .await
            .with_context(|| format!("publishing event {}", event.id))?;
        acks.push(ack);
    }
    for ack in acks {
        ack.await.context("waiting for JetStream's acknowledgement")?;
    }
    if !webhooks::published(store, after, last).await? {
        anyhow::bail!("another replica moved the NATS reader: the events lease changed hands");
    }
    Ok(events.len() as u64)
}
