//! Fleet jobs: firmware rollouts (`rollouts`) and bulk actions (`bulk`), moved along every
//! `[jobs] tick` by whichever replica holds the `fleet-jobs` lease (`store::leases`): two
//! replicas would start each device twice. Their state is the database's; what lives here, in
//! memory, is only the pacing of connection requests: one queue per organization, drained at
//! `[jobs] connection_requests_per_second`, so an organization's rollouts and bulk actions
//! together never wake its devices faster than that, and a batch of 5,000 is never 5,000
//! connection requests at once.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use tokio::sync::mpsc;

use crate::app::App;
use crate::cwmp::connection_request;
use crate::store::{DevicePk, devices, leases};

const LEASE: &str = "fleet-jobs";

/// The connection requests waiting to go out, per organization.
pub struct Wakers {
    app: Arc<App>,
    queues: std::sync::Mutex<HashMap<i64, Queue>>,
}

struct Queue {
    sender: mpsc::UnboundedSender<DevicePk>,
    /// Devices queued and not sent yet (shared with the draining task).
    backlog: Arc<std::sync::atomic::AtomicU64>,
}

impl Wakers {
    pub fn new(app: Arc<App>) -> Self {
        Self { app, queues: std::sync::Mutex::new(HashMap::new()) }
    }

    /// Queues connection requests to `devices` of the organization `org_id`.
    pub fn wake(&self, org_id: i64, devices: Vec<DevicePk>) {
        if devices.is_empty() {
            return;
        }
        let mut queues = self.queues.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let queue = queues.entry(org_id).or_insert_with(|| self.drain(org_id));
        for device in devices {
            queue.backlog.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            if queue.sender.send(device).is_err() {
                queue.backlog.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
            }
        }
    }

    /// Connection requests the organization has waiting.
    pub fn backlog(&self, org_id: i64) -> u64 {
        let queues = self.queues.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        queues.get(&org_id).map_or(0, |q| q.backlog.load(std::sync::atomic::Ordering::Relaxed))
    }

    /// The task that sends one organization's connection requests at the configured rate.
    fn drain(&self, org_id: i64) -> Queue {
        let (sender, mut receiver) = mpsc::unbounded_channel::<DevicePk>();
        let backlog = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let app = self.app.clone();
        let pending = backlog.clone();
        let per_second = app.config.jobs.connection_requests_per_second.max(1);
        tokio::spawn(async move {
            let mut pace = tokio::time::interval(Duration::from_secs(1) / per_second);
            pace.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            while let Some(pk) = receiver.recv().await {
                pace.tick().await;
                pending.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
                // Each request on its own task: a device that does not answer costs the
                // request's timeout, not the next device's turn.
                let app = app.clone();
                tokio::spawn(async move {
                    let Ok(Some(device)) = devices::by_pk(&app.store, pk).await else { return };
                    if let Err(error) = connection_request::send_unless_silent(&app, &device).await {
                        tracing::debug!(device = %device.device_id, org = org_id, "waking a device: {error:#}");
                    }
                });
            }
        });
        Queue { sender, backlog }
    }
}

/// How long from `now` until `due` (milliseconds since the epoch), and a little past it: the
/// pass that wakes then finds the batch due, not a millisecond early.
pub fn until(due: i64, now: i64) -> Duration {
    Duration::from_millis(u64::try_from(due.saturating_sub(now)).unwrap_or(0).saturating_add(5))
}

/// Connection requests one tick may queue for an organization: a tick's worth at the rate,
/// less what still waits from before.
pub fn wake_budget(per_second: u32, tick: Duration, backlog: u64) -> u64 {
    let per_tick = (f64::from(per_second) * tick.as_secs_f64()).ceil().max(1.0) as u64;
    per_tick.saturating_sub(backlog)
}

/// This replica's hold on the fleet jobs. Held three ticks from its last renewal: a replica that
/// stops loses it soon; one that works keeps it, renewing it before each job it moves (a tick
/// over thousands of devices may outlast the lease).
pub struct Lease {
    app: Arc<App>,
    owner: String,
    ttl: i64,
}

impl Lease {
    /// Whether this replica still holds it (renewed for another `ttl`).
    pub async fn renew(&self) -> Result<bool> {
        leases::hold(&self.app.store, LEASE, &self.owner, self.ttl).await
    }
}

pub async fn run(app: Arc<App>, mut stopped: tokio::sync::watch::Receiver<bool>) -> Result<()> {
    let owner = uuid::Uuid::now_v7().to_string();
    let tick_every = app.config.jobs.tick;
    let ttl = i64::try_from((tick_every * 3).max(Duration::from_secs(1)).as_millis()).unwrap_or(i64::MAX);
    let lease = Lease { app: app.clone(), owner: owner.clone(), ttl };
    let wakers = Wakers::new(app.clone());
    let mut tick = tokio::time::interval(tick_every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // When a rollout's next batch is due, if before the next tick: a pass runs then.
    let mut batch_due: Option<tokio::time::Instant> = None;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = tokio::time::sleep_until(batch_due.unwrap_or_else(tokio::time::Instant::now)), if batch_due.is_some() => {}
            _ = stopped.changed() => {
                if let Err(error) = leases::release(&app.store, LEASE, &owner).await {
                    tracing::debug!("releasing the fleet-jobs lease: {error:#}");
                }
                return Ok(());
            }
        }
        batch_due = None;
        match lease.renew().await {
            Ok(true) => {}
            Ok(false) => continue,
            Err(error) => {
                tracing::warn!("taking the fleet-jobs lease: {error:#}");
                continue;
            }
        }
        match crate::rollouts::runner::tick_once(&app, &lease, &wakers).await {
            Ok(due) => batch_due = due.map(|due| tokio::time::Instant::now() + until(due, crate::store::now_millis())),
            Err(error) => tracing::warn!("moving rollouts along: {error:#}"),
        }
        if let Err(error) = crate::bulk::runner::tick_once(&app, &lease, &wakers).await {
            tracing::warn!("moving bulk actions along: {error:#}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_due_batch_is_waited_for_until_just_past_its_time() {
        assert_eq!(until(10_000, 4_000), Duration::from_millis(6_005));
        assert_eq!(until(4_000, 10_000), Duration::from_millis(5), "already due: at once");
    }

    #[test]
    fn a_tick_queues_its_share_of_the_rate_less_the_backlog() {
        assert_eq!(wake_budget(20, Duration::from_secs(5), 0), 100);
        assert_eq!(wake_budget(20, Duration::from_secs(5), 30), 70);
        assert_eq!(wake_budget(20, Duration::from_secs(5), 500), 0);
        assert_eq!(wake_budget(20, Duration::from_millis(10), 0), 1, "at least one a tick");
    }
}
