//! The bulk runner: every tick of the fleet jobs (`jobs.rs`), it settles the devices whose
//! tasks ended and starts as many waiting devices as the organization's connection-request
//! budget for the tick allows (`jobs::wake_budget`, shared by the organization's bulk actions
//! in order of creation), each one's task and state in one transaction, then wakes them through
//! the organization's paced queue. Nothing is kept between ticks.

use std::collections::HashMap;
use std::sync::Arc;

use anyhow::{Context, Result};

use super::{BulkAction, DeviceState, Outcome, outcome};
use crate::app::App;
use crate::jobs::{Lease, Wakers, wake_budget};
use crate::rollouts::runner::task_fact;
use crate::store::bulk::{self, BulkDevice, BulkRow};
use crate::store::now_millis;
use crate::store::tasks::NewTask;

pub async fn tick_once(app: &Arc<App>, lease: &Lease, wakers: &Wakers) -> Result<()> {
    let mut budgets: HashMap<i64, u64> = HashMap::new();
    for row in bulk::active(&app.store).await? {
        if !lease.renew().await? {
            return Ok(());
        }
        if let Err(error) = advance(app, wakers, &row, &mut budgets).await {
            tracing::warn!(bulk = row.id, "moving a bulk action along: {error:#}");
        }
    }
    Ok(())
}

fn millis(duration: std::time::Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

async fn advance(app: &Arc<App>, wakers: &Wakers, row: &BulkRow, budgets: &mut HashMap<i64, u64>) -> Result<()> {
    let now = now_millis();
    let expiry = millis(app.config.tasks.default_expiry);
    let rewake = millis(app.config.jobs.rewake_after);
    let started = bulk::devices(&app.store, row.id, &[DeviceState::Started], None, u64::MAX).await?;
    let mut open = 0u64;
    let mut to_wake = Vec::new();
    for device in &started {
        let since = device.started_at.unwrap_or(now);
        let task = device.task_id.map(|_| {
            task_fact(device.task_status.as_deref(), device.task_fault_code.as_deref(), device.task_fault.as_deref())
        });
        let configured = device.configured_at.is_some_and(|at| at >= since);
        match outcome(task, configured, now, since.saturating_add(expiry)) {
            Outcome::Open => {
                open += 1;
                let unsent = device.task_stage.as_deref().is_none_or(|stage| stage == "queued");
                // Woken last when its request went out, or (still on its way) when it started.
                let woken = device.connection_request_at.map_or(since, |at| at.max(since));
                if unsent && now.saturating_sub(woken) >= rewake {
                    to_wake.push(device.pk());
                }
            }
            Outcome::Done => bulk::settle(&app.store, row.id, device.pk(), DeviceState::Done, None).await?,
            Outcome::Failed(why) => {
                bulk::settle(&app.store, row.id, device.pk(), DeviceState::Failed, Some(&why)).await?;
            }
        }
    }
    if row.state == super::BulkState::Cancelled.as_str() {
        wakers.wake(row.org_id, to_wake);
        if open == 0 {
            bulk::finish(&app.store, row.id).await?;
        }
        return Ok(());
    }
    // The rewakes come out of the tick's budget first.
    let budget = budgets.entry(row.org_id).or_insert_with(|| {
        wake_budget(app.config.jobs.connection_requests_per_second, app.config.jobs.tick, wakers.backlog(row.org_id))
    });
    to_wake.truncate(usize::try_from(*budget).unwrap_or(usize::MAX));
    *budget -= to_wake.len() as u64;
    let waiting = if *budget > 0 {
        bulk::devices(&app.store, row.id, &[DeviceState::Waiting], None, *budget).await?
    } else {
        Vec::new()
    };
    if waiting.is_empty() && open == 0 {
        // Nothing started, nothing left: done (a device settled this tick is counted above).
        let left = bulk::devices(&app.store, row.id, &[DeviceState::Waiting], None, 1).await?;
        if left.is_empty() {
            bulk::complete(&app.store, row).await?;
        }
        wakers.wake(row.org_id, to_wake);
        return Ok(());
    }
    let sealed = app.secrets.open_string(&row.sealed_action).context("opening the bulk action")?;
    let action = serde_json::from_str(&sealed)
        .map_err(|e| e.to_string())
        .and_then(|value| BulkAction::parse(&value))
        .map_err(|why| anyhow::anyhow!("the stored bulk action no longer parses: {why}"))?;
    for device in &waiting {
        match start(app, row, &action, device).await {
            Ok(true) => {
                *budget = budget.saturating_sub(1);
                to_wake.push(device.pk());
            }
            Ok(false) => {}
            // The devices started before it are woken all the same.
            Err(error) => {
                tracing::warn!(bulk = row.id, device = %device.device_id, "starting a bulk device: {error:#}");
                break;
            }
        }
    }
    wakers.wake(row.org_id, to_wake);
    Ok(())
}

/// Starts one device: its task (with a key made up for it, sealed in the stored task and in
/// the bulk's row), or its presets marked to run again.
async fn start(app: &Arc<App>, row: &BulkRow, action: &BulkAction, device: &BulkDevice) -> Result<bool> {
    let secret = action.makes_secret().then(super::wifi_key);
    let root = roost_cwmp::DataModel::from_name(&device.data_model).map_or("", |m| m.root());
    let sealed_secret = secret.as_ref().map(|s| app.secrets.seal(s.as_bytes()));
    let Some(body) = action.task(root, secret.as_deref()) else {
        return bulk::start(&app.store, row.id, device.pk(), None, sealed_secret).await;
    };
    let name = body.get("name").and_then(serde_json::Value::as_str).unwrap_or_default().to_owned();
    let redacted = crate::tasks::redact(&body);
    let stored = redacted.as_ref().unwrap_or(&body).to_string();
    let task = NewTask {
        device_pk: device.pk(),
        org_id: Some(row.org_id),
        name: &name,
        body: &stored,
        sealed_body: redacted.is_some().then(|| app.secrets.seal(body.to_string().as_bytes())),
        expires_at: Some(now_millis().saturating_add(millis(app.config.tasks.default_expiry))),
    };
    bulk::start(&app.store, row.id, device.pk(), Some(task), sealed_secret).await
}
