//! The provisioning engine: one session's provisioning of one device.
//!
//! Each round runs, in weight order, the presets that select the device (events, tags,
//! precondition, schedule), each preset's provision once — a built-in one natively, a plugin in
//! the sandbox — and merges what they declared in that order ([`plan`]: the last declaration of
//! a parameter wins). The round's calls go out one by one: listings, reads, instance adds and
//! deletes, then one SetParameterValues; their answers are stored and mirrored into the view the
//! provisions read, and the next round runs. A round that plans nothing ends provisioning, after
//! the reboots, resets and downloads built-in presets asked for. A round count above
//! [`MAX_ROUNDS`] is a fault: the provisions disagree with each other or with the device.
//!
//! Plugin calls block (up to their wall-clock backstop), so a round runs on the blocking pool; reads of the
//! store it needs there go through the runtime handle. The exception is a settled device's first
//! round over a kept view ([`super::reads`]): when every provision's output is a replay and the
//! view holds all the round reads, it runs on the async worker, without a sandbox.
//!
//! A fault (a plugin's, a CPE's, a declaration that cannot be carried out) is recorded against
//! the device with the preset or plugin it came from. A faulting preset sits out the rest of the
//! session and its declarations of that run are dropped; a CPE fault ends provisioning for the
//! session, since the next round would plan the same call again.

mod answered;
mod calls;
mod round;
mod tree;

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use roost_cwmp::{AcsRequest, CpeResponse, DataModel, Download, is_secret_parameter};
use roost_params::tree::Node;
use tokio::runtime::Handle;

use super::Provisioner;
use super::adapters;
use super::intent::Intent;
use super::plan::{Clock, Plan};
use super::presets::{ActivePreset, OrgProvisioning};
use super::reads::{DeviceReads, RunMemo};
use crate::answers::refresh::Refresh;
use crate::answers::{self, Answer, describe_unanswered, spv_fault_detail, unanswered_code};
use crate::fault_code::FaultCode;
use crate::plugins::DeviceView;
use crate::store::DevicePk;
use crate::store::devices::{self, Device};
use crate::store::{faults, now_millis, plugin_logs, presets as preset_store};
use answered::{Then, ViewChange, alias_values, answered};
use calls::{AfterPlan, AfterRefusal, Call, Command, InFlight, after_plan, after_refused_set, describe};
use round::{Round, SessionAdapter, same_runs};
use tree::{SessionSecrets, StoreLoader, load_subtree};

/// Rounds after which provisioning gives up, as the SDK promises plugin authors (its test device
/// gives up after as many).
pub const MAX_ROUNDS: usize = roost_params::session::MAX_ROUNDS;

/// The ParameterKey of provisioning's writes: the device reports it in later Informs.
const PARAMETER_KEY: &str = "roost-provision";

/// One session's provisioning.
pub struct Provisioning {
    device_pk: DevicePk,
    device_id: String,
    /// The device's data model, which names its connection-request credentials.
    model: Option<DataModel>,
    events: Vec<String>,
    org: Arc<OrgProvisioning>,
    /// Presets the Inform's events and the schedule allow; tags and preconditions are checked
    /// every round, as provisions change both.
    candidates: Vec<Arc<ActivePreset>>,
    failed: HashSet<String>,
    /// Presets with a schedule that ran: their run is recorded when provisioning ends.
    ran_scheduled: Vec<Arc<ActivePreset>>,
    view: Arc<DeviceView>,
    adapter: Option<Arc<SessionAdapter>>,
    secrets: Arc<SessionSecrets>,
    session_start_ms: u64,
    /// The tree revision the view was loaded at, if nothing wrote to the tree since the Inform
    /// returned it: the view is then kept for the next session ([`super::reads`]).
    tree_rev: Option<i64>,
    /// What the previous session at this revision kept.
    kept: Option<Arc<DeviceReads>>,
    /// The first round's replayable outputs, for the next session.
    memos: Vec<(String, Arc<RunMemo>)>,
    rounds: usize,
    queue: VecDeque<Call>,
    in_flight: Option<InFlight>,
    commands: Vec<(String, Command)>,
    commands_queued: bool,
    /// Parameters the CPE refused in this session's SetParameterValues: left out of later
    /// rounds, so that one refused value neither blocks the others nor loops.
    refused: HashSet<String>,
    /// Whether provisioning ended with every selected preset carried out (refused parameters
    /// aside, which are faults of their own): the device is then configured.
    settled: bool,
    /// A refusal left the device in a state this session cannot tell apart.
    unsettled: bool,
    /// The device's learnt GetParameterValues batch (`devices.discovery_batch`, 0: default).
    discovery_batch: i64,
    /// A task's intent, when this provisioning carries out a task ([`Provisioning::for_intent`])
    /// instead of the presets. Its faults are the task's: the first is kept for it, not recorded
    /// against the device on its own.
    intent: Option<Arc<Intent>>,
    task_fault: Option<TaskFault>,
    /// What the intent returned in the last round.
    intent_value: serde_json::Value,
    /// The health figures of the latest round that read them: fresh once provisioning settles,
    /// since a round whose figures were stale planned their reads and another round followed.
    health: Option<Arc<crate::health::HealthFigures>>,
}

/// Why a task carried out by provisioning failed.
#[derive(Debug, Clone)]
pub struct TaskFault {
    pub code: FaultCode,
    pub message: String,
    pub detail: Option<serde_json::Value>,
}

impl std::fmt::Debug for Provisioning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Provisioning")
            .field("device", &self.device_id)
            .field("rounds", &self.rounds)
            .field("in_flight", &self.in_flight)
            .finish_non_exhaustive()
    }
}

impl Provisioning {
    /// Provisioning for this session, or `None` when no preset can apply: the common periodic
    /// Inform costs no query here (the organization's presets are cached). `tree_rev` is the
    /// revision the Inform returned, or `None` when the session may have written to the tree
    /// since (discovery, a task).
    pub async fn start(
        p: &Arc<Provisioner>,
        device: &Device,
        events: &[String],
        session_start_ms: i64,
        tree_rev: Option<i64>,
    ) -> Result<Option<Self>> {
        let org = p.org(device.org_id).await?;
        let mut candidates: Vec<Arc<ActivePreset>> = org
            .presets
            .iter()
            .filter(|p| {
                let d = &p.definition;
                d.enabled && (d.events.is_empty() || d.events.iter().any(|e| events.contains(e)))
            })
            .cloned()
            .collect();
        if candidates.is_empty() {
            return Ok(None);
        }
        let now = now_millis();
        if candidates.iter().any(|p| p.definition.schedule.is_some()) {
            let runs = preset_store::last_runs(&p.store, device.id).await?;
            candidates.retain(|p| match &p.definition.schedule {
                None => true,
                Some(schedule) => runs.get(&(p.org_id, p.name.clone())).is_none_or(|last| {
                    now.saturating_sub(*last) >= i64::try_from(schedule.interval_seconds * 1000).unwrap_or(i64::MAX)
                }),
            });
        }
        // Tags are read now only when a preset depends on them; provisions that read them load
        // them on first use.
        let tags = if candidates.iter().any(|p| !p.definition.tags.is_empty()) {
            let tags = devices::tags(&p.store, device.id).await?;
            // Provisions can add tags, but only provisions that run: if none selects now, none will.
            if !candidates.iter().any(|p| p.selects(events, &tags)) {
                return Ok(None);
            }
            Some(tags)
        } else {
            None
        };
        let kept = tree_rev.and_then(|rev| p.reads.get(device.id, rev));
        let facts = match &kept {
            Some(kept) => adapters::facts_with_model(device, kept.model_name.clone()),
            None => adapters::facts(&p.store, device).await?,
        };
        let view = session_view(p, device, facts, events, tags, kept.as_ref(), session_start_ms);
        let adapter = if candidates.iter().any(|p| p.plugin.is_some()) {
            session_adapter(p, device, &org, &view).await
        } else {
            None
        };
        let mut provisioning = Self::assemble(p, device, org, events, view, adapter, session_start_ms);
        provisioning.candidates = candidates;
        provisioning.tree_rev = tree_rev;
        provisioning.kept = kept;
        Ok(Some(provisioning))
    }

    /// Provisioning that carries out a task's intent through the device's adapter, presets
    /// aside; its outcome is [`Provisioning::task_outcome`].
    pub async fn for_intent(
        p: &Arc<Provisioner>,
        device: &Device,
        intent: Intent,
        session_start_ms: i64,
    ) -> Result<Self> {
        let org = p.org(device.org_id).await?;
        let facts = adapters::facts(&p.store, device).await?;
        let view = session_view(p, device, facts, &[], None, None, session_start_ms);
        let adapter = session_adapter(p, device, &org, &view).await;
        let mut provisioning = Self::assemble(p, device, org, &[], view, adapter, session_start_ms);
        provisioning.intent = Some(Arc::new(intent));
        Ok(provisioning)
    }

    fn assemble(
        p: &Arc<Provisioner>,
        device: &Device,
        org: Arc<OrgProvisioning>,
        events: &[String],
        view: Arc<DeviceView>,
        adapter: Option<Arc<SessionAdapter>>,
        session_start_ms: i64,
    ) -> Self {
        Provisioning {
            device_pk: device.id,
            device_id: device.device_id.clone(),
            model: device.model(),
            events: events.to_vec(),
            org,
            candidates: Vec::new(),
            failed: HashSet::new(),
            ran_scheduled: Vec::new(),
            view,
            adapter,
            secrets: Arc::new(SessionSecrets {
                p: p.clone(),
                device_pk: device.id,
                handle: Handle::current(),
                known: Mutex::new(HashMap::new()),
            }),
            session_start_ms: u64::try_from(session_start_ms).unwrap_or(0),
            tree_rev: None,
            kept: None,
            memos: Vec::new(),
            rounds: 0,
            queue: VecDeque::new(),
            in_flight: None,
            commands: Vec::new(),
            commands_queued: false,
            refused: HashSet::new(),
            settled: false,
            unsettled: false,
            discovery_batch: device.discovery_batch,
            intent: None,
            task_fault: None,
            intent_value: serde_json::Value::Null,
            health: None,
        }
    }

    /// How the task this provisioning carried out ended: once its intent settled, what the
    /// intent returned in the last round (over what the device holds then).
    pub fn task_outcome(&self) -> Result<serde_json::Value, TaskFault> {
        match &self.task_fault {
            Some(fault) => Err(fault.clone()),
            None if self.settled => Ok(self.intent_value.clone()),
            None => Err(TaskFault {
                code: FaultCode::NotConverging,
                message: "The change was not carried out in this session".into(),
                detail: None,
            }),
        }
    }

    /// Feeds the CPE's answer to the call in flight and returns the next request, or `None` when
    /// provisioning is over for this session.
    pub async fn next(&mut self, p: &Arc<Provisioner>, answer: Answer) -> Result<Option<AcsRequest>> {
        if let Some(in_flight) = self.in_flight.take() {
            match answer {
                Answer::Response(response) => {
                    if let Some(request) = self.on_response(p, in_flight, response).await? {
                        return Ok(Some(request));
                    }
                }
                Answer::Fault(fault) => {
                    let message = format!("{} was refused: {}", describe(&in_flight), fault.string);
                    self.fault(p, "provisioning", FaultCode::Cwmp(fault.code), &message, spv_fault_detail(&fault))
                        .await?;
                    let InFlight::Set(values) = in_flight else { return self.finish(p, false).await };
                    // SetParameterValues is all-or-nothing by the standard, not on every CPE: what
                    // a refusal leaves behind is decided by `after_refused_set`.
                    match after_refused_set(values, &fault) {
                        AfterRefusal::Retry { refused, rest } => {
                            self.refused.extend(refused);
                            self.queue.push_front(Call::Set(rest));
                        }
                        AfterRefusal::Skip { refused } => self.refused.extend(refused),
                        AfterRefusal::Reread { names } => {
                            self.unsettled = true;
                            self.queue.clear();
                            self.commands_queued = true;
                            if !names.is_empty() {
                                self.queue.push_back(Call::GetValues(names));
                            }
                        }
                    }
                    // On with what is queued, or the next round.
                }
                Answer::Unanswered(reason) => {
                    let code = unanswered_code(&reason);
                    let message = format!("{}: {}", describe(&in_flight), describe_unanswered(&reason));
                    self.fault(p, "provisioning", code, &message, None).await?;
                    return self.finish(p, false).await;
                }
                Answer::Nothing => return self.finish(p, false).await,
            }
        }
        loop {
            if let Some(call) = self.queue.pop_front() {
                return Ok(Some(self.send(call)));
            }
            if self.commands_queued {
                return self.finish(p, true).await;
            }
            let outcome = self.round(p).await?;
            let plan = match outcome {
                None => return self.finish(p, true).await,
                Some(plan) => plan,
            };
            // The batch this device's firmware survives, when discovery had to learn it.
            let batch = match self.learnt_batch() {
                0 => p.discovery_batch,
                learnt => learnt,
            };
            match after_plan(plan, &self.refused, self.rounds, batch) {
                AfterPlan::Settled => {
                    self.commands_queued = true;
                    for (preset, command) in std::mem::take(&mut self.commands) {
                        self.queue.push_back(Call::Command { preset, command });
                    }
                    continue;
                }
                AfterPlan::NotConverging { wanted } => {
                    let message = format!(
                        "Provisioning did not settle after {MAX_ROUNDS} rounds; the last round still wanted {wanted}. \
                         Presets may declare conflicting values, or the device may not keep what is set."
                    );
                    self.fault(p, "provisioning", FaultCode::NotConverging, &message, None).await?;
                    return self.finish(p, false).await;
                }
                AfterPlan::Send(calls) => {
                    self.rounds += 1;
                    self.queue.extend(calls);
                }
            }
        }
    }

    /// What a `stun` preset would write to this device, when one may run and a STUN server is on.
    fn stun_write(&self, p: &Provisioner) -> Option<Arc<super::StunWrite>> {
        let offer = p.stun.get()?;
        if !self.candidates.iter().any(|preset| preset.definition.provision == "stun") {
            return None;
        }
        Some(Arc::new(super::StunWrite {
            host: offer.host.clone(),
            port: offer.port,
            username: self.device_id.clone(),
            password: crate::cwmp::stun::password(&p.secrets, &self.device_id),
        }))
    }

    /// Runs one round; `None` when provisioning must stop (a fault was recorded).
    async fn round(&mut self, p: &Arc<Provisioner>) -> Result<Option<Plan>> {
        let memoize = self.rounds == 0 && self.tree_rev.is_some();
        let round = Round {
            org: self.org.clone(),
            presets: self.candidates.iter().filter(|p| !self.failed.contains(&p.name)).cloned().collect(),
            events: self.events.clone(),
            view: self.view.clone(),
            adapter: self.adapter.clone(),
            clock: Clock { now_ms: u64::try_from(now_millis()).unwrap_or(0), session_start_ms: self.session_start_ms },
            memoize,
            kept: if memoize { self.kept.clone() } else { None },
            intent: self.intent.clone(),
            trigger_diagnostic: self.rounds == 0
                && matches!(self.intent.as_deref(), Some(super::intent::Intent::StartDiagnostic(_))),
            stun: self.stun_write(p),
        };
        let inline = match round.kept {
            // A panic in the round (the plan, a precondition) stays this session's, as it would
            // on the blocking pool.
            Some(_) => std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| round.run_inline(&self.secrets)))
                .map_err(|_| anyhow::anyhow!("a provisioning round panicked"))?,
            None => None,
        };
        let outcome = match inline {
            Some(outcome) => {
                p.counters.inline_rounds.fetch_add(1, Ordering::Relaxed);
                outcome
            }
            None => {
                let p2 = p.clone();
                let secrets = self.secrets.clone();
                let handle = Handle::current();
                let _permit = p.rounds.acquire().await.context("the round limiter is closed")?;
                tokio::task::spawn_blocking(move || round.run_blocking(&p2, &handle, &*secrets))
                    .await
                    .context("a provisioning round panicked")?
            }
        };
        // The lines are the operator's to read; failing to store them does not stop provisioning.
        let session_at = i64::try_from(self.session_start_ms).unwrap_or(i64::MAX);
        if let Err(error) =
            plugin_logs::append(&p.store, self.device_pk, session_at, &outcome.logs, p.log_lines_per_device).await
        {
            tracing::warn!(device = %self.device_id, lines = outcome.logs.len(), "{error:#}");
        }
        p.counters.sandboxed_runs.fetch_add(outcome.sandboxed, Ordering::Relaxed);
        p.counters.replayed_runs.fetch_add(outcome.replayed, Ordering::Relaxed);
        if memoize {
            self.memos = outcome.memos;
        }

        for note in &outcome.faults {
            self.fault(p, &note.channel, note.code, &note.message, note.detail.clone()).await?;
        }
        self.failed.extend(outcome.failed);
        for preset in outcome.ran {
            if preset.definition.schedule.is_some() && !self.ran_scheduled.iter().any(|p| Arc::ptr_eq(p, &preset)) {
                self.ran_scheduled.push(preset);
            }
        }
        if !outcome.tags_added.is_empty() || !outcome.tags_removed.is_empty() {
            let mut tags = match self.view.loaded_tags() {
                Some(tags) => tags,
                None => devices::tags(&p.store, self.device_pk).await?,
            };
            for tag in &outcome.tags_added {
                devices::add_tag(&p.store, self.device_pk, tag).await?;
                if !tags.contains(tag) {
                    tags.push(tag.clone());
                }
            }
            for tag in &outcome.tags_removed {
                devices::remove_tag(&p.store, self.device_pk, tag).await?;
                tags.retain(|t| t != tag);
            }
            tags.sort();
            self.view.set_tags(tags);
        }
        for command in outcome.commands {
            if !self.commands.iter().any(|c| c.1 == command.1) {
                self.commands.push(command);
            }
        }
        if outcome.intent_failed {
            return Ok(None);
        }
        if let Some(value) = outcome.intent_value {
            self.intent_value = value;
        }
        // The last round's figures, not a blend with earlier rounds': those read values the
        // session has refreshed since, and a figure a later round no longer has is gone.
        if outcome.health.is_some() {
            self.health = outcome.health;
        }
        match outcome.plan {
            None => Ok(Some(Plan::default())),
            Some(Ok(plan)) => Ok(Some(plan)),
            Some(Err(error)) => {
                let message = format!("A declaration cannot be carried out: {error}");
                self.fault(p, "provisioning", FaultCode::InvalidDeclaration, &message, None).await?;
                Ok(None)
            }
        }
    }

    fn send(&mut self, call: Call) -> AcsRequest {
        let (in_flight, request) = match call {
            Call::Refresh(prefix) => {
                let mut refresh = Refresh::new(prefix, self.learnt_batch(), now_millis());
                let request = refresh.first_request();
                (InFlight::Refresh(refresh), request)
            }
            Call::GetValues(names) => (InFlight::GetValues(names.clone()), AcsRequest::GetParameterValues { names }),
            Call::Add(instance) => {
                let request =
                    AcsRequest::AddObject { object_name: instance.table.clone(), parameter_key: PARAMETER_KEY.into() };
                (InFlight::Add(instance), request)
            }
            Call::Delete(object) => {
                let request =
                    AcsRequest::DeleteObject { object_name: object.clone(), parameter_key: PARAMETER_KEY.into() };
                (InFlight::Delete(object), request)
            }
            Call::Set(values) => {
                let request =
                    AcsRequest::SetParameterValues { values: values.clone(), parameter_key: PARAMETER_KEY.into() };
                (InFlight::Set(values), request)
            }
            Call::Command { preset, command } => {
                let command_key = format!("roost-preset-{preset}");
                let request = match &command {
                    Command::Reboot => AcsRequest::Reboot { command_key },
                    Command::FactoryReset => AcsRequest::FactoryReset,
                    Command::Download { url, file_type } => AcsRequest::Download(Download {
                        command_key,
                        file_type: file_type.clone(),
                        url: url.clone(),
                        username: String::new(),
                        password: String::new(),
                        file_size: 0,
                        target_file_name: String::new(),
                        delay_seconds: 0,
                        success_url: String::new(),
                        failure_url: String::new(),
                    }),
                };
                (InFlight::Command(command), request)
            }
        };
        self.in_flight = Some(in_flight);
        request
    }

    /// Performs what an answer decided ([`answered`]); `Some` when the call needs another
    /// request. Listings are fed to their refresh here.
    async fn on_response(
        &mut self,
        p: &Arc<Provisioner>,
        in_flight: InFlight,
        response: CpeResponse,
    ) -> Result<Option<AcsRequest>> {
        let now = now_millis();
        let now_ms = u64::try_from(now).unwrap_or(0);
        let decided = match in_flight {
            InFlight::Refresh(mut refresh) => {
                if let Some(request) = self.refreshed(p, &mut refresh, response, now).await? {
                    self.in_flight = Some(InFlight::Refresh(refresh));
                    return Ok(Some(request));
                }
                self.reload(p, &refresh.prefix, now_ms).await?;
                return Ok(None);
            }
            InFlight::AddRefresh { instance, mut refresh } => {
                if let Some(request) = self.refreshed(p, &mut refresh, response, now).await? {
                    self.in_flight = Some(InFlight::AddRefresh { instance, refresh });
                    return Ok(Some(request));
                }
                self.reload(p, &refresh.prefix, now_ms).await?;
                // The table's listing is no longer complete for this session's count; the new
                // instance is, and its alias values make it match the pattern that asked for it.
                if !instance.alias.is_empty() {
                    let values = self
                        .view
                        .read(&refresh.prefix, |tree| alias_values(&instance, &refresh.prefix, tree))
                        .unwrap_or_default();
                    if !values.is_empty() {
                        self.queue.push_front(Call::Set(values));
                    }
                }
                return Ok(None);
            }
            in_flight => answered(in_flight, response, self.model, now),
        };
        if let Some((code, message)) = &decided.fault {
            self.fault(p, "provisioning", *code, message, None).await?;
        }
        if let Some(ViewChange::Written(values)) = &decided.view {
            for secret in values.iter().filter(|p| is_secret_parameter(&p.name)) {
                self.secrets.set(&secret.name, &secret.value);
            }
        }
        if !decided.writes.is_empty() {
            answers::apply(&p.store, &p.secrets, self.device_pk, decided.writes).await?;
        }
        if let Some(change) = decided.view {
            self.view.update(|tree| change.apply(tree, now_ms));
        }
        match decided.then {
            Then::GoOn => Ok(None),
            Then::ReadInstance { instance, prefix } => {
                let mut refresh = Refresh::new(prefix, self.learnt_batch(), now);
                let request = refresh.first_request();
                self.in_flight = Some(InFlight::AddRefresh { instance, refresh });
                Ok(Some(request))
            }
            Then::DropCalls => {
                self.queue.clear();
                Ok(None)
            }
            Then::GiveUp => {
                self.queue.clear();
                self.commands_queued = true;
                Ok(None)
            }
        }
    }

    /// Feeds an answer to a refresh and writes what it changed; the refresh's next request, if
    /// any.
    async fn refreshed(
        &self,
        p: &Provisioner,
        refresh: &mut Refresh,
        response: CpeResponse,
        now: i64,
    ) -> Result<Option<AcsRequest>> {
        let (writes, next) = refresh.on_response(response, p.discovery_batch, now);
        answers::apply(&p.store, &p.secrets, self.device_pk, writes).await?;
        Ok(next)
    }

    /// The GetParameterValues batch this device's firmware survives (0: the default).
    fn learnt_batch(&self) -> usize {
        usize::try_from(self.discovery_batch).unwrap_or(0)
    }

    /// After a refresh of `prefix`: the view takes what the store now holds there.
    async fn reload(&self, p: &Provisioner, prefix: &str, now_ms: u64) -> Result<()> {
        let rows = load_subtree(&p.store, self.device_pk, prefix).await?;
        self.view.replace(prefix, rows);
        // Agents differ on whether a listing names the object itself; it was listed now either way.
        self.view.update(|tree| match tree.get_mut(prefix) {
            Some(node) => node.updated_ms = now_ms,
            None => tree.insert(prefix.to_owned(), Node { writable: true, updated_ms: now_ms, ..Node::default() }),
        });
        Ok(())
    }

    /// Whether provisioning ended with every selected preset carried out (see `settled`).
    pub fn settled(&self) -> bool {
        self.settled
    }

    async fn finish(&mut self, p: &Provisioner, converged: bool) -> Result<Option<AcsRequest>> {
        self.queue.clear();
        self.settled = converged && self.failed.is_empty() && !self.unsettled;
        // Only a session that sent no call that writes the tree keeps its view: commands
        // (reboot, download) leave the stored tree as it was. A kept view that loaded nothing
        // more, with the same runs, is kept already.
        if let Some(rev) = self.tree_rev.take()
            && self.rounds == 0
            && self.kept.as_ref().is_none_or(|kept| self.view.tree_loads() > 0 || !same_runs(&kept.runs, &self.memos))
        {
            let kept = DeviceReads {
                rev,
                model_name: self.view.facts.model_name.clone(),
                view: self.view.snapshot(),
                runs: std::mem::take(&mut self.memos),
            };
            p.reads.keep(self.device_pk, kept);
        }
        if converged && !self.unsettled {
            let now = now_millis();
            if let Some(figures) = self.health.take() {
                p.metrics.offer(self.device_pk, now, &figures);
            }
            for preset in std::mem::take(&mut self.ran_scheduled) {
                preset_store::record_run(&p.store, self.device_pk, preset.org_id, &preset.name, now).await?;
            }
        }
        Ok(None)
    }

    async fn fault(
        &mut self,
        p: &Provisioner,
        channel: &str,
        code: FaultCode,
        message: &str,
        detail: Option<serde_json::Value>,
    ) -> Result<()> {
        tracing::info!(device = %self.device_id, channel, %code, message, "provisioning fault");
        if self.intent.is_some() {
            // The task's fault, recorded with the task.
            self.task_fault.get_or_insert(TaskFault { code, message: message.to_owned(), detail });
            return Ok(());
        }
        faults::record(&p.store, self.device_pk, channel, code, message, detail.as_ref()).await
    }
}

/// The session's view of the device: loaded from the store on demand, starting from what the
/// previous session kept when it is still current.
fn session_view(
    p: &Arc<Provisioner>,
    device: &Device,
    facts: crate::plugins::bindings::types::DeviceFacts,
    events: &[String],
    tags: Option<Vec<String>>,
    kept: Option<&Arc<DeviceReads>>,
    session_start_ms: i64,
) -> Arc<DeviceView> {
    let loader = StoreLoader { p: p.clone(), device_pk: device.id, handle: Handle::current() };
    let mut view = DeviceView::lazy(facts, device.device_id.clone(), events.to_vec(), tags, Box::new(loader));
    if let Some(kept) = kept {
        view = view.with_snapshot(kept.view.clone());
    }
    Arc::new(view.with_clock(u64::try_from(session_start_ms).unwrap_or(0), rand::random()))
}

/// The adapter the device's intents go through, if one handles it.
async fn session_adapter(
    p: &Arc<Provisioner>,
    device: &Device,
    org: &Arc<OrgProvisioning>,
    view: &Arc<DeviceView>,
) -> Option<Arc<SessionAdapter>> {
    match adapters::for_device(p, device, org, Some(view.clone())).await {
        Ok(chosen) => {
            chosen.map(|c| Arc::new(SessionAdapter { name: c.plugin.name, hash: c.plugin.hash, loaded: c.loaded }))
        }
        Err(error) => {
            // Provisions that need no adapter still run; those that do fail clearly.
            tracing::error!(device = %device.device_id, "choosing an adapter failed: {error:#}");
            None
        }
    }
}
