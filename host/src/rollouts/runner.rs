//! The rollout runner: every tick of the fleet jobs (`jobs.rs`: one replica at a time), it
//! settles the gates of devices under way, moves each rollout's batches along and starts
//! devices within the window and the organization's cap, waking them through the
//! organization's paced queue. It keeps nothing in memory between ticks: the store is the
//! state, so a restart, or another replica taking the lease over, carries on where the last
//! tick left off.

use std::sync::Arc;

use anyhow::Result;
use serde_json::{Value, json};

use super::{
    BatchVerdict, DeviceState, Gate, GateFacts, Revert, RevertFacts, RolloutState, Step, TaskFact, WanFact, WanVerdict,
    batch_verdict, gate, local_minute, next_batch_due, revert, wan_status_paths, wan_verdict,
};
use crate::app::App;
use crate::jobs::{Lease, Wakers};
use crate::store::events::EventType;
use crate::store::files::{self, FileRow};
use crate::store::rollouts::{self, RolloutDevice, RolloutRow, Start, Transition};
use crate::store::tasks::NewTask;
use crate::store::{DevicePk, devices, now_millis, parameters};

/// Settled devices a rollback looks at per tick.
const REVERT_SCAN: u64 = 1000;

/// One pass over every rollout with work to do. Returns when, in milliseconds since the epoch,
/// the soonest batch waiting out its interval is due: the jobs loop runs a pass then rather than
/// at its next tick, so a batch starts when it is due, not up to a tick later.
pub async fn tick_once(app: &Arc<App>, lease: &Lease, wakers: &Wakers) -> Result<Option<i64>> {
    let mut soonest: Option<i64> = None;
    for rollout in rollouts::active(&app.store).await? {
        if !lease.renew().await? {
            return Ok(None);
        }
        match advance(app, wakers, &rollout).await {
            Ok(Some(due)) => soonest = Some(soonest.map_or(due, |s| s.min(due))),
            Ok(None) => {}
            Err(error) => tracing::warn!(rollout = rollout.id, "moving a rollout along: {error:#}"),
        }
    }
    Ok(soonest)
}

/// Moves one rollout along; `Some(due)` when its next batch waits out its interval until `due`.
async fn advance(app: &Arc<App>, wakers: &Wakers, rollout: &RolloutRow) -> Result<Option<i64>> {
    let open =
        rollouts::devices(&app.store, rollout.id, &[DeviceState::Upgrading, DeviceState::Reverting], None, u64::MAX)
            .await?;
    let mut still_open = 0;
    let mut to_wake = Vec::new();
    for device in &open {
        match settle_gate(app, rollout, device).await? {
            Settled::Yes => {}
            Settled::No => still_open += 1,
            Settled::NoAndWake => {
                still_open += 1;
                to_wake.push(device.pk());
            }
        }
    }
    wakers.wake(rollout.org_id, to_wake);
    match rollout.state() {
        RolloutState::Running => run_batches(app, wakers, rollout).await,
        RolloutState::RollingBack => run_rollback(app, wakers, rollout, still_open).await.map(|()| None),
        RolloutState::Aborted if still_open == 0 => rollouts::finish(&app.store, rollout.id).await.map(|()| None),
        _ => Ok(None),
    }
}

/// A task row's state; a fault says its code and message (`9010: Download failure …`).
pub(crate) fn task_fact(status: Option<&str>, code: Option<&str>, message: Option<&str>) -> TaskFact {
    match status {
        Some("pending") => TaskFact::Pending,
        Some("done") => TaskFact::Done,
        Some(_) => TaskFact::Fault(match (code, message) {
            (Some(code), Some(message)) => format!("{code}: {message}"),
            (code, message) => code.or(message).unwrap_or("fault").to_owned(),
        }),
        None => TaskFact::Gone,
    }
}

/// The `[path, value]` pairs of a getParameterValues task's result.
fn read_values(result: Option<&str>) -> Vec<(String, String)> {
    let parsed: Value = result.and_then(|r| serde_json::from_str(r).ok()).unwrap_or(Value::Null);
    parsed["parameterValues"]
        .as_array()
        .map(|values| {
            values
                .iter()
                .filter_map(|v| Some((v.get(0)?.as_str()?.to_owned(), v.get(1)?.as_str()?.to_owned())))
                .collect()
        })
        .unwrap_or_default()
}

/// Whether an open device's gate settled, and whether to wake the device.
enum Settled {
    Yes,
    No,
    /// Its request waits unsent since Roost last woke it, `[jobs] rewake_after` ago or more
    /// (or it was never woken: its WAN check was just queued).
    NoAndWake,
}

impl From<bool> for Settled {
    fn from(settled: bool) -> Self {
        if settled { Self::Yes } else { Self::No }
    }
}

/// Moves an open device's gate along.
async fn settle_gate(app: &Arc<App>, rollout: &RolloutRow, device: &RolloutDevice) -> Result<Settled> {
    let reverting = device.state() == DeviceState::Reverting;
    let expected = if reverting { device.from_version.as_str() } else { rollout.version.as_str() };
    let wan = match device.check_task_id {
        None => WanFact::NotQueued,
        Some(_) => match task_fact(
            device.check_status.as_deref(),
            device.check_fault_code.as_deref(),
            device.check_fault.as_deref(),
        ) {
            TaskFact::Done => WanFact::Read(
                wan_verdict(&read_values(device.check_result.as_deref())),
                device.check_done_at.unwrap_or(0),
            ),
            other => WanFact::Queued(other),
        },
    };
    let started = device.started_at.unwrap_or(i64::MAX);
    let facts = GateFacts {
        download: task_fact(
            device.task_status.as_deref(),
            device.task_fault_code.as_deref(),
            device.task_fault.as_deref(),
        ),
        booted: device.last_boot_at.is_some_and(|boot| boot >= started),
        software_version: &device.software_version,
        expected_version: expected,
        wan,
        last_wan_down: device.reason.as_deref(),
        now: now_millis(),
        deadline: device.deadline.unwrap_or(i64::MAX),
        wan_recheck_ms: i64::try_from(app.config.rollouts.wan_recheck.as_millis()).unwrap_or(i64::MAX),
    };
    let (passed, failed) = if reverting {
        (DeviceState::Reverted, DeviceState::RevertFailed)
    } else {
        (DeviceState::Passed, DeviceState::Failed)
    };
    let from = [device.state()];
    match gate(&facts) {
        Gate::Wait(step) => {
            if device.step.as_deref() != Some(step.as_str()) {
                rollouts::set_step(&app.store, rollout.id, device.pk(), step).await?;
            }
            let unsent = match step {
                Step::Download => device.task_stage.as_deref() == Some("queued"),
                Step::Wan => device.check_stage.as_deref() == Some("queued"),
                Step::Boot => false,
            };
            let rewake = i64::try_from(app.config.jobs.rewake_after.as_millis()).unwrap_or(i64::MAX);
            // Woken last when its request went out, or (still on its way) when it started.
            let woken = device.connection_request_at.map_or(started, |at| at.max(started));
            let woken_long_ago = facts.now.saturating_sub(woken) >= rewake;
            Ok(if unsent && woken_long_ago { Settled::NoAndWake } else { Settled::No })
        }
        Gate::CheckWan => {
            let Some(model) = devices::by_pk(&app.store, device.pk()).await?.and_then(|d| d.model()) else {
                let reason = "its data model is unknown";
                return Ok(rollouts::settle(&app.store, rollout, device, &from, failed, Some(reason)).await?.into());
            };
            let stored = parameters::leaf_paths(&app.store, device.pk(), model.root()).await?;
            let paths = wan_status_paths(model, stored.iter().map(String::as_str));
            if paths.is_empty() {
                let reason = "Roost knows no WAN connection of the device (its tree was never discovered?)";
                return Ok(rollouts::settle(&app.store, rollout, device, &from, failed, Some(reason)).await?.into());
            }
            let body = json!({"name": "getParameterValues", "parameterNames": paths}).to_string();
            let task = new_task(device.pk(), rollout.org_id, "getParameterValues", &body, None, device.deadline);
            let last_down = match &facts.wan {
                WanFact::Read(WanVerdict::Down(why), _) => Some(why.as_str()),
                _ => None,
            };
            rollouts::check_wan(&app.store, rollout.id, device.pk(), device.check_task_id, last_down, task).await?;
            Ok(Settled::NoAndWake)
        }
        Gate::Passed => {
            let reason = match &facts.wan {
                WanFact::Read(WanVerdict::Up(path), _) => format!("runs {expected}; {path} is up"),
                _ => format!("runs {expected}"),
            };
            Ok(rollouts::settle(&app.store, rollout, device, &from, passed, Some(&reason)).await?.into())
        }
        Gate::Failed(reason) => {
            Ok(rollouts::settle(&app.store, rollout, device, &from, failed, Some(&reason)).await?.into())
        }
    }
}

fn new_task<'a>(
    device: DevicePk,
    org_id: i64,
    name: &'a str,
    body: &'a str,
    sealed_body: Option<Vec<u8>>,
    expires_at: Option<i64>,
) -> NewTask<'a> {
    NewTask { device_pk: device, org_id: Some(org_id), name, body, sealed_body, expires_at }
}

/// Settles the current batch or starts its devices; `Some(due)` while the batch waits out its
/// interval until `due`.
async fn run_batches(app: &Arc<App>, wakers: &Wakers, rollout: &RolloutRow) -> Result<Option<i64>> {
    let counts = rollouts::counts(&app.store, rollout.id).await?;
    let mut count = rollouts::batch_count(&counts, rollout.batch);
    let batch = u64::try_from(rollout.batch).unwrap_or(0);
    count.failed = count.failed.saturating_sub(u64::try_from(rollout.acknowledged_failures).unwrap_or(0));
    match batch_verdict(batch, &count, rollout.failure_threshold) {
        BatchVerdict::Pause(reason) => {
            let change = Transition {
                from: &[RolloutState::Running],
                to: RolloutState::Paused,
                reason: Some(&reason),
                event: Some(EventType::RolloutPaused),
                finished: false,
                acknowledge_failures: false,
                unstarted: None,
            };
            rollouts::transition(&app.store, rollout, change).await?;
            return Ok(None);
        }
        BatchVerdict::Settled => {
            if rollout.batch + 1 >= rollout.batches {
                let change = Transition {
                    from: &[RolloutState::Running],
                    to: RolloutState::Completed,
                    reason: None,
                    event: Some(EventType::RolloutCompleted),
                    finished: true,
                    acknowledge_failures: false,
                    unstarted: None,
                };
                rollouts::transition(&app.store, rollout, change).await?;
                return Ok(None);
            }
            // An empty batch (no canary) makes the next one wait for nothing.
            let done_at = (count.total() > 0).then(now_millis);
            rollouts::advance(&app.store, rollout.id, rollout.batch, done_at).await?;
            return Ok(next_batch_due(done_at, rollout.batch_interval_s));
        }
        BatchVerdict::Continue => {}
    }
    if count.waiting == 0 {
        return Ok(None);
    }
    let now = now_millis();
    if let Some(due) = next_batch_due(rollout.batch_done_at, rollout.batch_interval_s)
        && now < due
    {
        return Ok(Some(due));
    }
    if let Some(window) = rollout.window() {
        match local_minute(now, &rollout.time_zone) {
            Ok(minute) if window.contains(minute) => {}
            Ok(_) => return Ok(None),
            Err(error) => {
                tracing::warn!(rollout = rollout.id, "placing the window: {error}");
                return Ok(None);
            }
        }
    }
    let room = room(app, rollout).await?;
    if room == 0 {
        return Ok(None);
    }
    let Some(file) = image(app, rollout).await? else { return Ok(None) };
    let starting = rollouts::waiting(&app.store, rollout.id, rollout.batch, room).await?;
    let mut started = Vec::with_capacity(starting.len());
    for device in &starting {
        if start(app, rollout, device, &file, &[DeviceState::Waiting], DeviceState::Upgrading).await? {
            started.push(device.pk());
        }
    }
    wakers.wake(rollout.org_id, started);
    Ok(None)
}

/// Downloads the organization may start now, under `[rollouts] max_concurrent_downloads`.
async fn room(app: &Arc<App>, rollout: &RolloutRow) -> Result<u64> {
    let open = rollouts::open_in_org(&app.store, rollout.org_id).await?;
    Ok(app.config.rollouts.max_concurrent_downloads.saturating_sub(open))
}

/// The rollout's image; a rollout whose image is gone pauses, saying so.
async fn image(app: &Arc<App>, rollout: &RolloutRow) -> Result<Option<FileRow>> {
    let file = match rollout.file_id {
        Some(id) => files::by_id(&app.store, id).await?,
        None => None,
    };
    if file.is_none() {
        let change = Transition {
            from: &[RolloutState::Running],
            to: RolloutState::Paused,
            reason: Some("its image was deleted"),
            event: Some(EventType::RolloutPaused),
            finished: false,
            acknowledge_failures: false,
            unstarted: None,
        };
        rollouts::transition(&app.store, rollout, change).await?;
    }
    Ok(file)
}

/// Starts one device's download of `file`: its grant, its task and its state in one
/// transaction. `false` when it could not start (no ACS URL known, or moved meanwhile).
async fn start(
    app: &Arc<App>,
    rollout: &RolloutRow,
    device: &RolloutDevice,
    file: &FileRow,
    from: &[DeviceState],
    to: DeviceState,
) -> Result<bool> {
    let Some(row) = devices::by_pk(&app.store, device.pk()).await? else { return Ok(false) };
    let failed = if to == DeviceState::Reverting { DeviceState::RevertFailed } else { DeviceState::Failed };
    let Some(base) = devices::acs_base(&app.store, &row).await? else {
        let reason = "its ACS URL is not known, so Roost cannot give it a download URL of its own";
        rollouts::settle(&app.store, rollout, device, from, failed, Some(reason)).await?;
        return Ok(false);
    };
    let token = crate::secrets::random_token("");
    let now = now_millis();
    let deadline = now.saturating_add(rollout.gate_timeout_s.saturating_mul(1000));
    let body = json!({
        "name": "download",
        "file": file.id.to_string(),
        "url": crate::files::device_url(&base, &token, &file.name),
        "fileType": file.file_type,
        "fileSize": file.bytes(),
    });
    let stored = crate::tasks::redact(&body).unwrap_or_else(|| body.clone()).to_string();
    let task = new_task(
        device.pk(),
        rollout.org_id,
        "download",
        &stored,
        Some(app.secrets.seal(body.to_string().as_bytes())),
        Some(deadline),
    );
    let started = rollouts::start(
        &app.store,
        Start {
            rollout,
            device_pk: device.pk(),
            from,
            rollout_state: if to == DeviceState::Reverting { RolloutState::RollingBack } else { RolloutState::Running },
            to,
            file_id: file.id,
            token_hash: &crate::secrets::token_hash(&token),
            grant_expires_at: deadline,
            task,
            deadline,
        },
    )
    .await?;
    Ok(started.is_some())
}

async fn run_rollback(app: &Arc<App>, wakers: &Wakers, rollout: &RolloutRow, still_open: u64) -> Result<()> {
    let settled =
        rollouts::devices(&app.store, rollout.id, &[DeviceState::Passed, DeviceState::Failed], None, REVERT_SCAN)
            .await?;
    if settled.is_empty() {
        if still_open == 0 {
            let change = Transition {
                from: &[RolloutState::RollingBack],
                to: RolloutState::RolledBack,
                reason: None,
                event: Some(EventType::RolloutRolledBack),
                finished: true,
                acknowledge_failures: false,
                unstarted: None,
            };
            rollouts::transition(&app.store, rollout, change).await?;
        }
        return Ok(());
    }
    let from = [DeviceState::Passed, DeviceState::Failed];
    let mut room = room(app, rollout).await?;
    let mut started = Vec::new();
    let elsewhere = rollouts::busy_devices(&app.store, Some(rollout.id)).await?;
    for device in &settled {
        let facts = RevertFacts {
            software_version: &device.software_version,
            from_version: &device.from_version,
            rollout_version: &rollout.version,
            in_another_rollout: elsewhere.contains(&device.device_pk),
            has_image: device.rollback_file_id.is_some(),
        };
        match revert(&facts) {
            Revert::Elsewhere => {
                let reason = format!("left alone: it runs {} now, or another rollout has it", device.software_version);
                rollouts::settle(&app.store, rollout, device, &from, DeviceState::Skipped, Some(&reason)).await?;
            }
            Revert::AlreadyThere => {
                let reason = format!("it runs {} already", device.from_version);
                rollouts::settle(&app.store, rollout, device, &from, DeviceState::Reverted, Some(&reason)).await?;
            }
            Revert::NoImage => {
                let reason = format!("no stored image of version {} for it", device.from_version);
                rollouts::settle(&app.store, rollout, device, &from, DeviceState::RevertFailed, Some(&reason)).await?;
            }
            Revert::Download if room > 0 => {
                let file = match device.rollback_file_id {
                    Some(id) => files::by_id(&app.store, id).await?,
                    None => None,
                };
                let Some(file) = file else {
                    let reason = format!("its image of version {} was deleted", device.from_version);
                    rollouts::settle(&app.store, rollout, device, &from, DeviceState::RevertFailed, Some(&reason))
                        .await?;
                    continue;
                };
                if start(app, rollout, device, &file, &from, DeviceState::Reverting).await? {
                    room -= 1;
                    started.push(device.pk());
                }
            }
            Revert::Download => {}
        }
    }
    wakers.wake(rollout.org_id, started);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wan_read_is_the_pairs_of_its_result() {
        let result = r#"{"parameterValues":[["Device.PPP.Interface.1.Status","Up","xsd:string"],["bad"]]}"#;
        assert_eq!(read_values(Some(result)), [("Device.PPP.Interface.1.Status".to_owned(), "Up".to_owned())]);
        assert!(read_values(None).is_empty());
        assert!(read_values(Some("not json")).is_empty());
    }

    #[test]
    fn a_task_row_reads_as_a_gate_fact() {
        assert_eq!(task_fact(Some("pending"), None, None), TaskFact::Pending);
        assert_eq!(
            task_fact(Some("fault"), Some("9010"), Some("Download failure")),
            TaskFact::Fault("9010: Download failure".into())
        );
        assert_eq!(task_fact(Some("fault"), None, Some("expired")), TaskFact::Fault("expired".into()));
        assert_eq!(task_fact(None, None, None), TaskFact::Gone);
    }
}
