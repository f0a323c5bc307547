//! Webhooks and their deliveries (`webhooks`, `webhook_deliveries`), and the outbox's readers
//! (`outbox_cursors`): how far each has read the events, advanced in the transaction that acts
//! on what it read, so that an event is fanned out once, whatever restarts.

use anyhow::{Context, Result};
use sea_orm::{ConnectionTrait, DbBackend, FromQueryResult, TransactionTrait, Value};

use super::events::{self, Event, EventType};
use super::orgs::Scope;
use super::{Store, now_millis};

#[derive(Debug, Clone, FromQueryResult)]
pub struct Webhook {
    pub id: i64,
    pub org_id: i64,
    pub url: String,
    /// The signing secret, sealed with the master key.
    pub sealed_secret: Vec<u8>,
    /// What it subscribes to (a JSON array of patterns).
    pub events: String,
    pub description: Option<String>,
    pub enabled: bool,
    pub disabled_reason: Option<String>,
    /// Failed attempts in a row.
    pub failures: i64,
    pub failing_since: Option<i64>,
    /// Times its circuit opened in a row.
    pub opened: i64,
    /// Its circuit is open until then.
    pub open_until: Option<i64>,
    pub created_by: String,
    pub created_at: i64,
    pub updated_at: i64,
}

impl Webhook {
    pub fn patterns(&self) -> Vec<String> {
        serde_json::from_str(&self.events).unwrap_or_default()
    }
}

pub struct NewWebhook<'a> {
    pub org_id: i64,
    pub url: &'a str,
    pub sealed_secret: Vec<u8>,
    pub events: &'a [String],
    pub description: Option<&'a str>,
    pub created_by: &'a str,
}

pub async fn create(store: &Store, new: NewWebhook<'_>) -> Result<Webhook> {
    let now = now_millis();
    let _guard = store.write_guard().await;
    super::first(
        store.db(),
        store.statement(
            "INSERT INTO webhooks (org_id, url, sealed_secret, events, description, enabled, created_by, created_at, updated_at)
             VALUES (?, ?, ?, ?, ?, TRUE, ?, ?, ?) RETURNING *",
            [
                new.org_id.into(),
                new.url.into(),
                new.sealed_secret.into(),
                serde_json::to_string(new.events).unwrap_or_default().into(),
                new.description.map(str::to_owned).into(),
                new.created_by.into(),
                now.into(),
                now.into(),
            ],
        ),
    )
    .await
    .context("creating a webhook")?
    .context("the new webhook was not returned")
}

/// Webhooks of the scope, in id order after `after`.
pub async fn list(store: &Store, scope: &Scope, after: Option<i64>, limit: u64) -> Result<Vec<Webhook>> {
    let (condition, mut args) = scope.condition("org_id");
    let mut sql = format!("SELECT * FROM webhooks WHERE {condition}");
    super::page_by_id(&mut sql, &mut args, after, limit);
    Webhook::find_by_statement(store.statement(&sql, args)).all(store.db()).await.context("listing webhooks")
}

pub async fn visible(store: &Store, scope: &Scope, id: i64) -> Result<Option<Webhook>> {
    let (condition, mut args) = scope.condition("org_id");
    args.insert(0, id.into());
    super::first(store.db(), store.statement(&format!("SELECT * FROM webhooks WHERE id = ? AND {condition}"), args))
        .await
        .context("reading a webhook")
}

/// The enabled webhooks of `ids`, as they are now.
pub async fn enabled_of(store: &Store, ids: &[i64]) -> Result<Vec<Webhook>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let sql = format!("SELECT * FROM webhooks WHERE enabled = TRUE AND id IN ({})", super::placeholders(ids.len()));
    Webhook::find_by_statement(store.statement(&sql, ids.iter().map(|id| Value::from(*id))))
        .all(store.db())
        .await
        .context("reading webhooks")
}

/// The enabled webhooks: those the fan-out gives events to.
pub async fn enabled(store: &Store) -> Result<Vec<Webhook>> {
    Webhook::find_by_statement(store.statement("SELECT * FROM webhooks WHERE enabled = TRUE ORDER BY id", []))
        .all(store.db())
        .await
        .context("reading the enabled webhooks")
}

/// What a `PATCH` changes.
#[derive(Debug, Default)]
pub struct WebhookChange {
    pub url: Option<String>,
    pub events: Option<Vec<String>>,
    pub description: Option<Option<String>>,
    pub sealed_secret: Option<Vec<u8>>,
    /// Enabling clears the failure streak and closes the circuit.
    pub enabled: Option<bool>,
}

pub async fn update(store: &Store, id: i64, change: WebhookChange) -> Result<Option<Webhook>> {
    let mut sets = vec!["updated_at = ?".to_owned()];
    let mut args: Vec<Value> = vec![now_millis().into()];
    if let Some(url) = change.url {
        sets.push("url = ?".into());
        args.push(url.into());
    }
    if let Some(events) = change.events {
        sets.push("events = ?".into());
        args.push(serde_json::to_string(&events).unwrap_or_default().into());
    }
    if let Some(description) = change.description {
        sets.push("description = ?".into());
        args.push(description.into());
    }
    if let Some(secret) = change.sealed_secret {
        sets.push("sealed_secret = ?".into());
        args.push(secret.into());
    }
    match change.enabled {
        Some(true) => sets.push(
            "enabled = TRUE, disabled_reason = NULL, failures = 0, failing_since = NULL, opened = 0, open_until = NULL"
                .into(),
        ),
        Some(false) => sets.push("enabled = FALSE, disabled_reason = 'disabled by a user'".into()),
        None => {}
    }
    args.push(id.into());
    let enabling = change.enabled == Some(true);
    let _guard = store.write_guard().await;
    let txn = store.db().begin().await.context("starting transaction")?;
    let backend = txn.get_database_backend();
    let changed = super::first::<Webhook, _>(
        &txn,
        super::statement(backend, &format!("UPDATE webhooks SET {} WHERE id = ? RETURNING *", sets.join(", ")), args),
    )
    .await
    .context("changing a webhook")?;
    if enabling {
        // What waited for it goes now, not at the end of its last backoff.
        reschedule(&txn, id, now_millis()).await?;
    }
    txn.commit().await.context("committing a webhook change")?;
    Ok(changed)
}

/// Makes a webhook's pending deliveries due at `now`.
async fn reschedule<C: ConnectionTrait>(db: &C, webhook_id: i64, now: i64) -> Result<()> {
    db.execute_raw(super::statement(
        db.get_database_backend(),
        "UPDATE webhook_deliveries SET next_attempt_at = ? WHERE webhook_id = ? AND state = 'pending' AND next_attempt_at > ?",
        [now.into(), webhook_id.into(), now.into()],
    ))
    .await
    .context("rescheduling deliveries")?;
    Ok(())
}

/// Deletes a webhook and its delivery log.
pub async fn delete(store: &Store, id: i64) -> Result<()> {
    let _guard = store.write_guard().await;
    let txn = store.db().begin().await.context("starting transaction")?;
    let backend = txn.get_database_backend();
    for sql in ["DELETE FROM webhook_deliveries WHERE webhook_id = ?", "DELETE FROM webhooks WHERE id = ?"] {
        txn.execute_raw(super::statement(backend, sql, [id.into()])).await.context("deleting a webhook")?;
    }
    txn.commit().await.context("committing")?;
    Ok(())
}

/// Deletes the webhooks of an organization being deleted, on its transaction.
pub async fn delete_for_org<C: ConnectionTrait>(db: &C, org_id: i64) -> Result<()> {
    let backend = db.get_database_backend();
    for sql in [
        "DELETE FROM webhook_deliveries WHERE webhook_id IN (SELECT id FROM webhooks WHERE org_id = ?)",
        "DELETE FROM webhooks WHERE org_id = ?",
    ] {
        db.execute_raw(super::statement(backend, sql, [org_id.into()])).await.context("deleting webhooks")?;
    }
    Ok(())
}

// ---- The outbox's readers ----

/// A reader's place in the outbox: past every event at or below `(txid, event_id)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, FromQueryResult)]
pub struct Cursor {
    pub txid: i64,
    pub event_id: i64,
}

pub async fn cursor(store: &Store, reader: &str) -> Result<Cursor> {
    Ok(super::first(
        store.db(),
        store.statement("SELECT txid, event_id FROM outbox_cursors WHERE name = ?", [reader.into()]),
    )
    .await
    .context("reading an outbox cursor")?
    .unwrap_or(Cursor { txid: 0, event_id: 0 }))
}

/// Moves a reader from `from` to `to`; false if it was not at `from` (another replica, which
/// took the lease over meanwhile, moved it): the caller rolls back what it did on that reading.
async fn advance<C: ConnectionTrait>(db: &C, reader: &str, from: Cursor, to: Cursor) -> Result<bool> {
    let moved = db
        .execute_raw(super::statement(
            db.get_database_backend(),
            "UPDATE outbox_cursors SET txid = ?, event_id = ? WHERE name = ? AND txid = ? AND event_id = ?",
            [to.txid.into(), to.event_id.into(), reader.into(), from.txid.into(), from.event_id.into()],
        ))
        .await
        .context("advancing an outbox cursor")?;
    Ok(moved.rows_affected() == 1)
}

/// The events past `after`, in commit order, up to `limit`. On PostgreSQL only those written by
/// transactions older than every one still running: a running transaction may commit an event
/// whose id is below ids already visible, and the reader would step past it.
pub async fn read(store: &Store, after: Cursor, limit: u64) -> Result<Vec<(Cursor, Event)>> {
    let limit = super::count_value(limit);
    let statement = match store.backend() {
        DbBackend::Postgres => store.statement(
            "SELECT txid, id, type, org_id, subject, payload, created_at FROM events
             WHERE (txid, id) > (?, ?) AND txid < pg_snapshot_xmin(pg_current_snapshot())::text::bigint
             ORDER BY txid, id LIMIT ?",
            [after.txid.into(), after.event_id.into(), limit],
        ),
        _ => store.statement(
            "SELECT txid, id, type, org_id, subject, payload, created_at FROM events WHERE id > ? ORDER BY id LIMIT ?",
            [after.event_id.into(), limit],
        ),
    };
    let rows = store.db().query_all_raw(statement).await.context("reading the outbox")?;
    rows.iter()
        .map(|row| {
            let event = Event::from_query_result(row, "").context("reading an event")?;
            let txid: i64 = row.try_get("", "txid").context("reading an event's txid")?;
            Ok((Cursor { txid, event_id: event.id }, event))
        })
        .collect()
}

/// Where a new reader starts to see only what is written from now on: past the newest event
/// `read` would return now (on PostgreSQL, of transactions older than every one still running,
/// so that one of those committing later is still read).
pub async fn tail(store: &Store) -> Result<Cursor> {
    let statement = match store.backend() {
        DbBackend::Postgres => store.statement(
            "SELECT txid, id AS event_id FROM events
             WHERE txid < pg_snapshot_xmin(pg_current_snapshot())::text::bigint
             ORDER BY txid DESC, id DESC LIMIT 1",
            [],
        ),
        _ => store.statement("SELECT txid, id AS event_id FROM events ORDER BY id DESC LIMIT 1", []),
    };
    Ok(super::first(store.db(), statement)
        .await
        .context("reading the outbox's tail")?
        .unwrap_or(Cursor { txid: 0, event_id: 0 }))
}

/// Moves the NATS reader past what it published; false if another replica moved it first.
pub async fn published(store: &Store, from: Cursor, to: Cursor) -> Result<bool> {
    let _guard = store.write_guard().await;
    advance(store.db(), NATS_READER, from, to).await
}

pub const WEBHOOK_READER: &str = "webhooks";
pub const NATS_READER: &str = "nats";

/// A delivery to make: an event for a webhook.
#[derive(Debug, Clone, Copy)]
pub struct NewDelivery<'a> {
    pub webhook_id: i64,
    pub event_id: i64,
    pub subject: &'a str,
    pub replay_of: Option<i64>,
}

/// Rows inserted per statement.
const INSERT_CHUNK: usize = 300;

async fn insert_deliveries<C: ConnectionTrait>(db: &C, deliveries: &[NewDelivery<'_>], now: i64) -> Result<()> {
    let backend = db.get_database_backend();
    for chunk in deliveries.chunks(INSERT_CHUNK) {
        let rows = vec!["(?, ?, ?, 'pending', 0, ?, ?, ?)"; chunk.len()].join(", ");
        let mut full: Vec<Value> = Vec::with_capacity(chunk.len() * 6);
        for delivery in chunk {
            full.extend([
                delivery.webhook_id.into(),
                delivery.event_id.into(),
                delivery.subject.into(),
                delivery.replay_of.into(),
                now.into(),
                now.into(),
            ]);
        }
        db.execute_raw(super::statement(
            backend,
            &format!(
                "INSERT INTO webhook_deliveries (webhook_id, event_id, subject, state, attempts, replay_of, next_attempt_at, created_at)
                 VALUES {rows}"
            ),
            full,
        ))
        .await
        .context("queueing webhook deliveries")?;
    }
    Ok(())
}

/// Queues `deliveries` and moves the webhook reader from `from` to `to`, in one transaction;
/// nothing, and false, if the reader was not at `from` any more.
pub async fn fan_out(store: &Store, deliveries: &[NewDelivery<'_>], from: Cursor, to: Cursor) -> Result<bool> {
    let _guard = store.write_guard().await;
    let txn = store.db().begin().await.context("starting transaction")?;
    if !advance(&txn, WEBHOOK_READER, from, to).await? {
        txn.rollback().await.context("rolling back")?;
        return Ok(false);
    }
    insert_deliveries(&txn, deliveries, now_millis()).await?;
    txn.commit().await.context("committing the fan-out")?;
    Ok(true)
}

#[derive(Debug, Clone, FromQueryResult)]
pub struct Delivery {
    pub id: i64,
    pub webhook_id: i64,
    pub event_id: i64,
    pub subject: String,
    pub state: String,
    pub attempts: i64,
    pub next_attempt_at: i64,
    pub last_status: Option<i64>,
    pub last_error: Option<String>,
    pub last_attempt_at: Option<i64>,
    pub delivered_at: Option<i64>,
    pub replay_of: Option<i64>,
    pub created_at: i64,
}

/// Refreshes the planner's statistics of the deliveries (PostgreSQL; SQLite plans without them).
pub async fn refresh_statistics(store: &Store) -> Result<()> {
    if store.backend() == DbBackend::Postgres {
        store.db().execute_unprepared("ANALYZE webhook_deliveries").await.context("analyzing")?;
    }
    Ok(())
}

/// Deliveries due now, each the oldest pending one of its webhook and subject (a device's
/// events reach a webhook in order: a later one waits while an earlier one is retried), of
/// enabled webhooks whose circuit is not open; of a half-open one (`threshold` failures in a
/// row), only its oldest due subject head, which probes it (a probe rotates over subjects as
/// their backoffs come due).
pub async fn due(
    store: &Store,
    now: i64,
    threshold: u32,
    saturated: &[i64],
    limit: u64,
) -> Result<Vec<(Delivery, Webhook)>> {
    // The webhook comes with each delivery (its columns prefixed `w_`): no second query. The
    // deliveries are found first, by themselves, so that the planner walks the pending ones in
    // id order and stops at the limit (joined at once, PostgreSQL sorted every pending row).
    let webhook_columns =
        WEBHOOK_COLUMNS.iter().map(|column| format!("w.{column} AS w_{column}")).collect::<Vec<_>>().join(", ");
    // Webhooks with their share in flight take no room in the window: a backlogged one would
    // fill it and hold the others back.
    let saturated_ids = if saturated.is_empty() {
        String::new()
    } else {
        format!("AND d.webhook_id NOT IN ({})", super::placeholders(saturated.len()))
    };
    let sql = format!(
        "SELECT d.*, {webhook_columns} FROM (
           SELECT * FROM (
             SELECT d.* FROM webhook_deliveries d
             WHERE d.state = 'pending' AND d.next_attempt_at <= ?
               AND d.webhook_id IN (SELECT id FROM webhooks WHERE enabled = TRUE AND failures < ?
                                      AND (open_until IS NULL OR open_until <= ?))
               {saturated_ids}
               AND NOT EXISTS (SELECT 1 FROM webhook_deliveries e
                               WHERE e.webhook_id = d.webhook_id AND e.subject = d.subject
                                 AND e.state = 'pending' AND e.id < d.id)
             ORDER BY d.id LIMIT ?) closed
           UNION ALL
           SELECT d.* FROM webhook_deliveries d
           WHERE d.next_attempt_at <= ?
             AND d.id IN (SELECT (SELECT MIN(p.id) FROM webhook_deliveries p
                                  WHERE p.webhook_id = h.id AND p.state = 'pending' AND p.next_attempt_at <= ?
                                    AND NOT EXISTS (SELECT 1 FROM webhook_deliveries q
                                                    WHERE q.webhook_id = p.webhook_id AND q.subject = p.subject
                                                      AND q.state = 'pending' AND q.id < p.id))
                          FROM webhooks h WHERE h.enabled = TRUE AND h.failures >= ?
                            AND (h.open_until IS NULL OR h.open_until <= ?))
         ) d JOIN webhooks w ON w.id = d.webhook_id
         ORDER BY d.id"
    );
    let threshold = i64::from(threshold);
    let mut args: Vec<Value> = vec![now.into(), threshold.into(), now.into()];
    args.extend(saturated.iter().map(|id| Value::from(*id)));
    args.extend([super::count_value(limit), now.into(), now.into(), threshold.into(), now.into()]);
    let rows = store.db().query_all_raw(store.statement(&sql, args)).await.context("finding due webhook deliveries")?;
    rows.iter()
        .map(|row| {
            let delivery = Delivery::from_query_result(row, "").context("reading a delivery")?;
            let webhook = Webhook::from_query_result(row, "w_").context("reading a delivery's webhook")?;
            Ok((delivery, webhook))
        })
        .collect()
}

/// The columns of `webhooks`, as `Webhook` reads them.
const WEBHOOK_COLUMNS: [&str; 15] = [
    "id",
    "org_id",
    "url",
    "sealed_secret",
    "events",
    "description",
    "enabled",
    "disabled_reason",
    "failures",
    "failing_since",
    "opened",
    "open_until",
    "created_by",
    "created_at",
    "updated_at",
];

pub async fn events_by_id(store: &Store, ids: &[i64]) -> Result<Vec<Event>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let sql = format!("SELECT * FROM events WHERE id IN ({})", super::placeholders(ids.len()));
    Event::find_by_statement(store.statement(&sql, ids.iter().map(|id| Value::from(*id))))
        .all(store.db())
        .await
        .context("reading events")
}

/// How an attempt ended.
#[derive(Debug, Clone)]
pub struct Attempt {
    pub delivery_id: i64,
    pub at: i64,
    /// The receiver's status, when it answered.
    pub status: Option<u16>,
    /// Why it failed; none when delivered.
    pub error: Option<String>,
    /// When to try again; none when delivered, or given up.
    pub retry_at: Option<i64>,
}

/// A webhook's breaker to write, if the webhook was not changed since it was read.
#[derive(Debug, Clone)]
pub struct BreakerWrite {
    pub webhook_id: i64,
    pub org_id: i64,
    /// The webhook's `updated_at` when read: a change through the API since (enabling it
    /// again, say) wins over this write.
    pub updated_at: i64,
    pub state: crate::events::BreakerState,
    /// Why it is disabled, when this write disables it.
    pub disabled: Option<String>,
}

impl BreakerWrite {
    pub fn of(webhook: &Webhook) -> Self {
        Self {
            webhook_id: webhook.id,
            org_id: webhook.org_id,
            updated_at: webhook.updated_at,
            state: crate::events::BreakerState::default(),
            disabled: None,
        }
    }

    pub fn with(self, state: crate::events::BreakerState, settings: &crate::config::EventSettings) -> Self {
        let disabled = state.disabled.then(|| {
            format!(
                "it failed {} deliveries in a row over {} s or more",
                state.failures,
                settings.disable_after.as_secs()
            )
        });
        Self { state, disabled, ..self }
    }
}

/// Writes a round's attempts and the breakers they moved, in one transaction; a webhook disabled
/// gets its `webhook.disabled` event and audit entry there too, and one whose breaker closed has
/// its pending deliveries made due at once.
pub async fn record_attempts(store: &Store, attempts: &[Attempt], breakers: &[BreakerWrite], now: i64) -> Result<()> {
    let _guard = store.write_guard().await;
    let txn = store.db().begin().await.context("starting transaction")?;
    let backend = txn.get_database_backend();
    for attempt in attempts {
        let (state, next) = match (&attempt.error, attempt.retry_at) {
            (None, _) => ("delivered", attempt.at),
            (Some(_), Some(retry_at)) => ("pending", retry_at),
            (Some(_), None) => ("failed", attempt.at),
        };
        txn.execute_raw(super::statement(
            backend,
            "UPDATE webhook_deliveries SET state = ?, attempts = attempts + 1, next_attempt_at = ?, last_status = ?,
                 last_error = ?, last_attempt_at = ?, delivered_at = CASE WHEN ? = 'delivered' THEN ? ELSE delivered_at END
             WHERE id = ?",
            [
                state.into(),
                next.into(),
                attempt.status.map(i64::from).into(),
                attempt.error.clone().into(),
                attempt.at.into(),
                state.into(),
                attempt.at.into(),
                attempt.delivery_id.into(),
            ],
        ))
        .await
        .context("recording a delivery attempt")?;
    }
    for breaker in breakers {
        let disable = breaker.disabled.is_some();
        let state = &breaker.state;
        let written = txn
            .execute_raw(super::statement(
                backend,
                "UPDATE webhooks SET failures = ?, failing_since = ?, opened = ?, open_until = ?,
                     enabled = CASE WHEN ? THEN FALSE ELSE enabled END,
                     disabled_reason = CASE WHEN ? THEN ? ELSE disabled_reason END
                 WHERE id = ? AND updated_at = ? AND enabled = TRUE",
                [
                    i64::from(state.failures).into(),
                    state.failing_since.into(),
                    i64::from(state.opened).into(),
                    state.open_until.into(),
                    disable.into(),
                    disable.into(),
                    breaker.disabled.clone().into(),
                    breaker.webhook_id.into(),
                    breaker.updated_at.into(),
                ],
            ))
            .await
            .context("recording a webhook's breaker")?;
        if written.rows_affected() == 0 {
            continue;
        }
        if state.failures == 0 {
            reschedule(&txn, breaker.webhook_id, now).await?;
        }
        if let Some(reason) = &breaker.disabled {
            let subject = breaker.webhook_id.to_string();
            let payload = serde_json::json!({"webhook": subject, "reason": reason});
            events::record(&txn, EventType::WebhookDisabled, Some(breaker.org_id), &subject, &payload).await?;
            super::audit::insert(
                &txn,
                super::audit::NewEntry {
                    org_id: Some(breaker.org_id),
                    actor: "system",
                    actor_name: "Roost",
                    action: "webhook.disable",
                    target: &format!("/api/v1/webhooks/{subject}"),
                    source_address: "",
                    status: 200,
                },
            )
            .await?;
        }
    }
    txn.commit().await.context("committing delivery attempts")?;
    Ok(())
}

/// A webhook's delivery log, newest first, before `before`, of one state if given.
pub async fn deliveries(
    store: &Store,
    webhook_id: i64,
    state: Option<&str>,
    before: Option<i64>,
    limit: u64,
) -> Result<Vec<Delivery>> {
    let mut sql = "SELECT * FROM webhook_deliveries WHERE webhook_id = ?".to_owned();
    let mut args: Vec<Value> = vec![webhook_id.into()];
    if let Some(state) = state {
        sql.push_str(" AND state = ?");
        args.push(state.into());
    }
    if let Some(before) = before {
        sql.push_str(" AND id < ?");
        args.push(before.into());
    }
    sql.push_str(" ORDER BY id DESC LIMIT ?");
    args.push(super::count_value(limit));
    Delivery::find_by_statement(store.statement(&sql, args)).all(store.db()).await.context("listing deliveries")
}

pub async fn delivery(store: &Store, webhook_id: i64, id: i64) -> Result<Option<Delivery>> {
    super::first(
        store.db(),
        store.statement(
            "SELECT * FROM webhook_deliveries WHERE id = ? AND webhook_id = ?",
            [id.into(), webhook_id.into()],
        ),
    )
    .await
    .context("reading a delivery")
}

/// Queues again what a webhook was sent (or should have been): one delivery, or each event of
/// `events` in order. Returns how many were queued.
pub async fn replay(store: &Store, webhook_id: i64, events: &[Event], replay_of: Option<i64>) -> Result<u64> {
    let deliveries: Vec<NewDelivery> = events
        .iter()
        .map(|event| NewDelivery { webhook_id, event_id: event.id, subject: &event.subject, replay_of })
        .collect();
    // In chunks of their own: a long transaction would hold every other writer (SQLite) or the
    // outbox's horizon (PostgreSQL) back.
    let mut queued = 0;
    for chunk in deliveries.chunks(INSERT_CHUNK) {
        let _guard = store.write_guard().await;
        insert_deliveries(store.db(), chunk, now_millis()).await?;
        queued += chunk.len() as u64;
    }
    Ok(queued)
}

/// The events of `orgs` made in `[from, to)`, in commit order, up to `limit`.
pub async fn events_between(store: &Store, orgs: &[i64], from: i64, to: i64, limit: u64) -> Result<Vec<Event>> {
    if orgs.is_empty() {
        return Ok(Vec::new());
    }
    let mut args: Vec<Value> = orgs.iter().map(|id| Value::from(*id)).collect();
    args.extend([from.into(), to.into(), super::count_value(limit)]);
    Event::find_by_statement(store.statement(
        &format!(
            "SELECT * FROM events WHERE org_id IN ({}) AND created_at >= ? AND created_at < ? ORDER BY txid, id LIMIT ?",
            super::placeholders(orgs.len())
        ),
        args,
    ))
    .all(store.db())
    .await
    .context("reading events of a time range")
}
