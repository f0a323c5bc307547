//! The health background work every replica runs: writing buffered points on a timer (and once
//! more on shutdown), pruning them by age, and reporting presence changes.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::app::App;
use crate::store::{devices::presence, metrics, now_millis};

/// The shortest interval either loop takes (a configured 0 would spin).
const MIN_INTERVAL: Duration = Duration::from_millis(100);
/// Points per metrics transaction.
const POINTS_PER_WRITE: usize = 20_000;
/// Old points are pruned at most this often.
const PRUNE_EVERY: Duration = Duration::from_secs(60);

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Writes what the sessions buffered, every `[health] flush_interval`, as one batch.
pub async fn flush_loop(app: Arc<App>, mut stopped: watch::Receiver<bool>) -> anyhow::Result<()> {
    let settings = app.config.health.clone();
    let mut tick = tokio::time::interval(settings.flush_interval.max(MIN_INTERVAL));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut pruned_at: Option<tokio::time::Instant> = None;
    loop {
        let stopping = tokio::select! {
            _ = tick.tick() => false,
            _ = stopped.changed() => true,
        };
        flush(&app).await;
        if stopping {
            return Ok(());
        }
        if pruned_at.is_none_or(|at| at.elapsed() >= PRUNE_EVERY) {
            pruned_at = Some(tokio::time::Instant::now());
            let now = now_millis();
            let raw_before = now - millis(settings.raw_retention);
            let hourly_before = now - millis(settings.hourly_retention);
            match metrics::prune(&app.store, raw_before, hourly_before, metrics::PRUNE_BATCH).await {
                Ok(0) => {}
                Ok(rows) => tracing::debug!(rows, "pruned old health points"),
                Err(error) => tracing::warn!("pruning health points: {error:#}"),
            }
        }
    }
}

/// One batched write of everything buffered; what fails to be written is kept for the next.
pub async fn flush(app: &App) {
    let buffer = &app.provisioning.metrics;
    let dropped = buffer.take_dropped();
    if dropped > 0 {
        tracing::warn!(dropped, "health points dropped: the buffer was full (is the database reachable?)");
    }
    let mut points = buffer.take();
    // In transactions of a bounded size: a catch-up after an outage must not hold SQLite's
    // writer (and every Inform behind it) for the whole backlog.
    while !points.is_empty() {
        let rest = points.split_off(points.len().min(POINTS_PER_WRITE));
        if let Err(error) = metrics::insert(&app.store, &points).await {
            tracing::warn!(
                points = points.len() + rest.len(),
                "writing health points (kept for the next try): {error:#}"
            );
            points.extend(rest);
            buffer.put_back(points);
            return;
        }
        points = rest;
    }
}

/// Reports presence changes every `[health] presence_interval`.
pub async fn presence_loop(app: Arc<App>, mut stopped: watch::Receiver<bool>) -> anyhow::Result<()> {
    let mut tick = tokio::time::interval(app.config.health.presence_interval.max(MIN_INTERVAL));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stopped.changed() => return Ok(()),
        }
        let grace = crate::health::OfflineGrace::of(&app.config.health);
        match presence::sweep(&app.store, now_millis(), grace.min_ms).await {
            Ok((0, 0)) => {}
            Ok((offline, online)) => tracing::info!(offline, online, "device presence changed"),
            Err(error) => tracing::warn!("sweeping device presence: {error:#}"),
        }
    }
}
