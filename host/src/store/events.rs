//! The events outbox: changes integrators care about, written in the transaction of the change
//! (so an event exists exactly when its change does) and delivered later by webhooks and NATS.

use anyhow::{Context, Result};
use sea_orm::{ConnectionTrait, FromQueryResult};

use super::orgs::Scope;
use super::{Store, now_millis};

/// The event types Roost records. Dotted names, stable: integrators subscribe to them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    /// A device joined an organization on its own: at first contact through the organization's
    /// onboarding URL or Host, or because its serial was pre-registered.
    DeviceRegistered,
    /// A pending device was claimed into an organization.
    DeviceClaimed,
    /// A device was moved from one organization to another (recorded under the one it joined).
    DeviceMoved,
    /// A known device sent `0 BOOTSTRAP`: it forgot its configuration (a factory reset, a new
    /// ACS URL), and Roost configures it again.
    DeviceBootstrapped,
    /// A device was linked to a subscriber (its PPPoE credentials are being pushed).
    SubscriberAssigned,
    /// A device's subscriber link was removed.
    SubscriberUnassigned,
    /// A diagnostic run ended: complete, error, fault or timeout.
    DiagnosticsCompleted,
    /// A task finished; `task.fault` when it failed.
    TaskDone,
    TaskFault,
    /// A device informed again after it had counted as offline, or for the first time.
    DeviceOnline,
    /// A device missed its Informs past its grace (`[health]`).
    DeviceOffline,
    /// A device of a rollout settled: its upgrade (or revert) passed its gate, failed, or was
    /// skipped.
    RolloutProgress,
    /// A rollout stopped starting devices: paused by an operator, or by itself when a batch's
    /// failures passed the threshold.
    RolloutPaused,
    RolloutResumed,
    /// Every device of a rollout settled.
    RolloutCompleted,
    RolloutAborted,
    /// A rollout's rollback began (`rollout.rolling_back`) and ended (`rollout.rolled_back`).
    RolloutRollingBack,
    RolloutRolledBack,
    /// Every device of a bulk action ended; or the action was cancelled.
    BulkCompleted,
    BulkCancelled,
    /// A webhook was disabled after failing past `[events] disable_after`.
    WebhookDisabled,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::DeviceRegistered => "device.registered",
            Self::DeviceClaimed => "device.claimed",
            Self::DeviceMoved => "device.moved",
            Self::DeviceBootstrapped => "device.bootstrapped",
            Self::SubscriberAssigned => "subscriber.assigned",
            Self::SubscriberUnassigned => "subscriber.unassigned",
            Self::DiagnosticsCompleted => "diagnostics.completed",
            Self::TaskDone => "task.done",
            Self::TaskFault => "task.fault",
            Self::DeviceOnline => "device.online",
            Self::DeviceOffline => "device.offline",
            Self::RolloutProgress => "rollout.progress",
            Self::RolloutPaused => "rollout.paused",
            Self::RolloutResumed => "rollout.resumed",
            Self::RolloutCompleted => "rollout.completed",
            Self::RolloutAborted => "rollout.aborted",
            Self::RolloutRollingBack => "rollout.rolling_back",
            Self::RolloutRolledBack => "rollout.rolled_back",
            Self::BulkCompleted => "bulk.completed",
            Self::BulkCancelled => "bulk.cancelled",
            Self::WebhookDisabled => "webhook.disabled",
        }
    }

    /// Every type, for checking what a webhook subscribes to.
    pub const ALL: [Self; 21] = [
        Self::DeviceRegistered,
        Self::DeviceClaimed,
        Self::DeviceMoved,
        Self::DeviceBootstrapped,
        Self::SubscriberAssigned,
        Self::SubscriberUnassigned,
        Self::DiagnosticsCompleted,
        Self::TaskDone,
        Self::TaskFault,
        Self::DeviceOnline,
        Self::DeviceOffline,
        Self::RolloutProgress,
        Self::RolloutPaused,
        Self::RolloutResumed,
        Self::RolloutCompleted,
        Self::RolloutAborted,
        Self::RolloutRollingBack,
        Self::RolloutRolledBack,
        Self::BulkCompleted,
        Self::BulkCancelled,
        Self::WebhookDisabled,
    ];
}

#[derive(Debug, Clone, FromQueryResult)]
pub struct Event {
    pub id: i64,
    pub r#type: String,
    pub org_id: Option<i64>,
    pub subject: String,
    pub payload: String,
    pub created_at: i64,
}

/// Writes an event on `db`, which is the transaction of the change it reports.
pub async fn record<C: ConnectionTrait>(
    db: &C,
    kind: EventType,
    org_id: Option<i64>,
    subject: &str,
    payload: &serde_json::Value,
) -> Result<()> {
    let stmt = super::statement(
        db.get_database_backend(),
        "INSERT INTO events (type, org_id, subject, payload, created_at) VALUES (?, ?, ?, ?, ?)",
        [kind.as_str().into(), org_id.into(), subject.into(), payload.to_string().into(), now_millis().into()],
    );
    db.execute_raw(stmt).await.with_context(|| format!("recording event {}", kind.as_str()))?;
    Ok(())
}

/// Events of the scope, oldest first, after `after`.
pub async fn list(
    store: &Store,
    scope: &Scope,
    kind: Option<&str>,
    after: Option<i64>,
    limit: u64,
) -> Result<Vec<Event>> {
    let (condition, mut args) = scope.condition("org_id");
    let mut sql = format!("SELECT * FROM events WHERE {condition}");
    if let Some(kind) = kind {
        sql.push_str(" AND type = ?");
        args.push(kind.into());
    }
    super::page_by_id(&mut sql, &mut args, after, limit);
    Event::find_by_statement(store.statement(&sql, args)).all(store.db()).await.context("listing events")
}
