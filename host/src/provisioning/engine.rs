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
//! Plugin calls block (up to their deadline), so a round runs on the blocking pool; reads of the
//! store it needs there go through the runtime handle. The exception is a settled device's first
//! round over a kept view ([`super::reads`]): when every provision's output is a replay and the
//! view holds all the round reads, it runs on the async worker, without a sandbox.
//!
//! A fault (a plugin's, a CPE's, a declaration that cannot be carried out) is recorded against
//! the device with the preset or plugin it came from. A faulting preset sits out the rest of the
//! session and its declarations of that run are dropped; a CPE fault ends provisioning for the
//! session, since the next round would plan the same call again.

use std::cell::Cell;
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use roost_cwmp::session::Unanswered;
use roost_cwmp::{AcsRequest, CpeResponse, Download, ParameterValue, ValueType, is_secret_parameter};
use roost_plugin_sdk::Value as SdkValue;
use roost_plugin_sdk::pattern::{Pattern, Segment};
use roost_plugin_sdk::tree::Node;
use serde_json::json;
use tokio::runtime::Handle;

use super::adapters;
use super::plan::{self, Clock, NewInstance, Plan, PlanError};
use super::presets::{ActivePreset, OrgProvisioning};
use super::reads::{DeviceReads, RunMemo};
use crate::app::App;
use crate::cwmp::driver::{Answer, describe_unanswered, spv_fault_detail};
use crate::cwmp::refresh::Refresh;
use crate::plugins::bindings::provision::roost::plugin::log::Level;
use crate::plugins::{Declared, DeviceView, Loaded, PluginFault, TreeLoader};
use crate::store::devices::{self, Device};
use crate::store::{faults, now_millis, parameters, presets as preset_store};

/// Rounds after which provisioning gives up, as the SDK's test harness does.
pub const MAX_ROUNDS: usize = roost_plugin_sdk::testing::MAX_ROUNDS;

/// The ParameterKey of provisioning's writes: the device reports it in later Informs.
const PARAMETER_KEY: &str = "roost-provision";

/// Rows of one device's subtree a view loads at most: far above any real device's tree.
const SUBTREE_LIMIT: u64 = 200_000;

/// A device-changing command a built-in preset asks for; sent once, after the declarations
/// converged.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Command {
    Reboot,
    FactoryReset,
    Download { url: String, file_type: String },
}

/// One call of a round.
#[derive(Debug)]
enum Call {
    Refresh(String),
    GetValues(Vec<String>),
    Add(NewInstance),
    Delete(String),
    Set(Vec<(String, String, String)>),
    Command { preset: String, command: Command },
}

/// The call whose answer is awaited.
#[derive(Debug)]
enum InFlight {
    Refresh(Refresh),
    GetValues(Vec<String>),
    /// AddObject sent; then the new instance is refreshed, then its alias values are written.
    Add(NewInstance),
    AddRefresh {
        instance: NewInstance,
        refresh: Refresh,
    },
    Delete(String),
    Set(Vec<(String, String, String)>),
    Command(Command),
}

/// A fault to record.
#[derive(Debug)]
struct FaultNote {
    channel: String,
    code: String,
    message: String,
    detail: Option<serde_json::Value>,
}

/// What a round produced.
#[derive(Debug, Default)]
struct RoundOutcome {
    plan: Option<Result<Plan, PlanError>>,
    faults: Vec<FaultNote>,
    failed: Vec<String>,
    ran: Vec<Arc<ActivePreset>>,
    tags_added: Vec<String>,
    tags_removed: Vec<String>,
    commands: Vec<(String, Command)>,
    /// The outputs of its plugin runs that the next session may replay, when it memoizes.
    memos: Vec<(String, Arc<RunMemo>)>,
    /// Plugin runs in the sandbox, and outputs replayed instead.
    sandboxed: u64,
    replayed: u64,
    /// What the plugins logged (or logged when their output was made), by plugin name.
    logs: Vec<(String, Level, String)>,
}

/// The adapter of the session's device.
#[derive(Debug)]
struct SessionAdapter {
    name: String,
    hash: String,
    loaded: Arc<Loaded>,
}

/// What one round needs, owned, for the blocking pool.
struct Round {
    org: Arc<OrgProvisioning>,
    presets: Vec<Arc<ActivePreset>>,
    events: Vec<String>,
    view: Arc<DeviceView>,
    adapter: Option<Arc<SessionAdapter>>,
    clock: Clock,
    /// Whether this round's plugin outputs may be replayed and kept: the first round, over a
    /// view of the tree at the Inform's revision.
    memoize: bool,
    /// What the previous session at this revision kept.
    kept: Option<Arc<DeviceReads>>,
}

/// One session's provisioning.
pub struct Provisioning {
    device_pk: i64,
    org_id: Option<i64>,
    device_id: String,
    root: String,
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
    last_plan: Option<Plan>,
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

/// Loads a device's subtree from the store into a view, from the blocking pool.
struct StoreLoader {
    app: Arc<App>,
    device_pk: i64,
    handle: Handle,
}

impl TreeLoader for StoreLoader {
    fn load(&self, prefix: &str) -> Result<Vec<(String, Node)>> {
        self.handle.block_on(load_subtree(&self.app, self.device_pk, prefix))
    }

    fn load_matching(&self, prefix: &str, pattern: &Pattern) -> Result<Vec<(String, Node)>> {
        let like = like_of(pattern);
        let rows = self.handle.block_on(parameters::list_like(
            &self.app.store,
            self.device_pk,
            prefix,
            &like,
            SUBTREE_LIMIT,
        ))?;
        Ok(nodes(rows))
    }

    fn tags(&self) -> Result<Vec<String>> {
        self.handle.block_on(devices::tags(&self.app.store, self.device_pk))
    }
}

/// A pattern as SQL `LIKE` text: each wildcard segment becomes `%`.
fn like_of(pattern: &Pattern) -> String {
    let mut like: String = pattern
        .segments()
        .iter()
        .map(|segment| match segment {
            Segment::Name(name) => name.as_str(),
            Segment::Any | Segment::Alias(_) => "%",
        })
        .collect::<Vec<_>>()
        .join(".");
    if pattern.is_object() {
        like.push_str(".%");
    }
    like
}

async fn load_subtree(app: &App, device_pk: i64, prefix: &str) -> Result<Vec<(String, Node)>> {
    let rows = parameters::list(&app.store, device_pk, prefix, None, SUBTREE_LIMIT).await?;
    Ok(nodes(rows))
}

fn nodes(rows: Vec<parameters::Parameter>) -> Vec<(String, Node)> {
    rows.into_iter()
        .map(|p| {
            let node = Node {
                value: if p.is_object { None } else { p.value },
                value_type: p.value_type,
                writable: p.writable,
                updated_ms: u64::try_from(p.refreshed_at).unwrap_or(0),
            };
            (p.path, node)
        })
        .collect()
}

/// Secret values Roost set on the device (the device reads them back empty): read from the store
/// when first compared, and remembered as this session sets them.
struct SessionSecrets {
    app: Arc<App>,
    device_pk: i64,
    handle: Handle,
    known: Mutex<HashMap<String, Option<String>>>,
}

impl SessionSecrets {
    fn set(&self, path: &str, text: &str) {
        self.known.lock().unwrap_or_else(|p| p.into_inner()).insert(path.to_owned(), Some(text.to_owned()));
    }
}

/// The session's secrets as far as known without reading the store, for a round on an async
/// worker: one it would have to read makes the round run again on the blocking pool.
struct KnownSecrets<'a> {
    secrets: &'a SessionSecrets,
    unknown: Cell<bool>,
}

impl plan::Secrets for KnownSecrets<'_> {
    fn holds(&self, path: &str, text: &str) -> bool {
        match self.secrets.known.lock().unwrap_or_else(|p| p.into_inner()).get(path) {
            Some(held) => held.as_deref() == Some(text),
            None => {
                self.unknown.set(true);
                false
            }
        }
    }
}

impl plan::Secrets for SessionSecrets {
    fn holds(&self, path: &str, text: &str) -> bool {
        let mut known = self.known.lock().unwrap_or_else(|p| p.into_inner());
        let held = known.entry(path.to_owned()).or_insert_with(|| {
            let sealed = self.handle.block_on(parameters::remembered_secret(&self.app.store, self.device_pk, path));
            match sealed {
                Ok(Some(sealed)) => self.app.secrets.open_string(&sealed).ok(),
                Ok(None) => None,
                Err(error) => {
                    tracing::warn!(path, "reading a remembered secret failed: {error:#}");
                    None
                }
            }
        });
        held.as_deref() == Some(text)
    }
}

impl Provisioning {
    /// Provisioning for this session, or `None` when no preset can apply: the common periodic
    /// Inform costs no query here (the organization's presets are cached). `tree_rev` is the
    /// revision the Inform returned, or `None` when the session may have written to the tree
    /// since (discovery, a task).
    pub async fn start(
        app: &Arc<App>,
        device: &Device,
        events: &[String],
        session_start_ms: i64,
        tree_rev: Option<i64>,
    ) -> Result<Option<Self>> {
        let org = app.provisioning.org(app, device.org_id).await?;
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
            let runs = preset_store::last_runs(&app.store, device.id).await?;
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
            let tags = devices::tags(&app.store, device.id).await?;
            // Provisions can add tags, but only provisions that run: if none selects now, none will.
            if !candidates.iter().any(|p| p.selects(events, &tags)) {
                return Ok(None);
            }
            Some(tags)
        } else {
            None
        };
        let handle = Handle::current();
        let kept = tree_rev.and_then(|rev| app.provisioning.reads.get(device.id, rev));
        let facts = match &kept {
            Some(kept) => adapters::facts_with_model(device, kept.model_name.clone()),
            None => adapters::facts(app, device).await?,
        };
        let mut view = DeviceView::lazy(
            facts,
            device.device_id.clone(),
            events.to_vec(),
            tags,
            Box::new(StoreLoader { app: app.clone(), device_pk: device.id, handle: handle.clone() }),
        );
        if let Some(kept) = &kept {
            view = view.with_snapshot(kept.view.clone());
        }
        let view = Arc::new(view.with_clock(u64::try_from(session_start_ms).unwrap_or(0), rand::random()));
        let adapter = if candidates.iter().any(|p| p.plugin.is_some()) {
            match adapters::for_device(app, device, &org, Some(view.clone())).await {
                Ok(chosen) => chosen
                    .map(|c| Arc::new(SessionAdapter { name: c.plugin.name, hash: c.plugin.hash, loaded: c.loaded })),
                Err(error) => {
                    // Provisions that need no adapter still run; those that do fail clearly.
                    tracing::error!(device = %device.device_id, "choosing an adapter failed: {error:#}");
                    None
                }
            }
        } else {
            None
        };
        Ok(Some(Provisioning {
            device_pk: device.id,
            org_id: device.org_id,
            device_id: device.device_id.clone(),
            root: match adapters::root(device) {
                "" => String::new(),
                root => format!("{root}."),
            },
            events: events.to_vec(),
            org,
            candidates,
            failed: HashSet::new(),
            ran_scheduled: Vec::new(),
            view,
            adapter,
            secrets: Arc::new(SessionSecrets {
                app: app.clone(),
                device_pk: device.id,
                handle,
                known: Mutex::new(HashMap::new()),
            }),
            session_start_ms: u64::try_from(session_start_ms).unwrap_or(0),
            tree_rev,
            kept,
            memos: Vec::new(),
            rounds: 0,
            queue: VecDeque::new(),
            in_flight: None,
            commands: Vec::new(),
            commands_queued: false,
            last_plan: None,
            refused: HashSet::new(),
            settled: false,
            unsettled: false,
            discovery_batch: device.discovery_batch,
        }))
    }

    /// Feeds the CPE's answer to the call in flight and returns the next request, or `None` when
    /// provisioning is over for this session.
    pub async fn next(&mut self, app: &Arc<App>, answer: Answer) -> Result<Option<AcsRequest>> {
        if let Some(in_flight) = self.in_flight.take() {
            match answer {
                Answer::Response(response) => {
                    if let Some(request) = self.on_response(app, in_flight, response).await? {
                        return Ok(Some(request));
                    }
                }
                Answer::Fault(fault) => {
                    let message = format!("{} was refused: {}", describe(&in_flight), fault.string);
                    self.fault(app, "provisioning", &fault.code.to_string(), &message, spv_fault_detail(&fault))
                        .await?;
                    let InFlight::Set(values) = in_flight else { return self.finish(app, false).await };
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
                    let code = match reason {
                        Unanswered::EmptyPost => "no_response",
                        Unanswered::WrongResponse { .. } => "wrong_response",
                    };
                    let message = format!("{}: {}", describe(&in_flight), describe_unanswered(&reason));
                    self.fault(app, "provisioning", code, &message, None).await?;
                    return self.finish(app, false).await;
                }
                Answer::Nothing => return self.finish(app, false).await,
            }
        }
        loop {
            if let Some(call) = self.queue.pop_front() {
                return Ok(Some(self.send(call)));
            }
            if self.commands_queued {
                return self.finish(app, true).await;
            }
            let outcome = self.round(app).await?;
            let mut plan = match outcome {
                None => return self.finish(app, true).await,
                Some(plan) => plan,
            };
            plan.set_values.retain(|(name, _, _)| !self.refused.contains(name));
            if plan.is_empty() {
                self.commands_queued = true;
                for (preset, command) in std::mem::take(&mut self.commands) {
                    self.queue.push_back(Call::Command { preset, command });
                }
                continue;
            }
            if self.rounds >= MAX_ROUNDS {
                let message = format!(
                    "Provisioning did not settle after {MAX_ROUNDS} rounds; the last round still wanted {}. \
                     Presets may declare conflicting values, or the device may not keep what is set.",
                    summarize(&plan)
                );
                self.fault(app, "provisioning", "provisioning.not_converging", &message, None).await?;
                return self.finish(app, false).await;
            }
            self.rounds += 1;
            // The batch this device's firmware survives, when discovery had to learn it.
            let batch = match usize::try_from(self.discovery_batch) {
                Ok(batch) if batch > 0 => batch,
                _ => app.config.cwmp.discovery_batch.max(1),
            };
            self.queue.extend(plan.get_names.iter().cloned().map(Call::Refresh));
            for chunk in plan.get_values.chunks(batch) {
                self.queue.push_back(Call::GetValues(chunk.to_vec()));
            }
            self.queue.extend(plan.delete_objects.iter().cloned().map(Call::Delete));
            self.queue.extend(plan.add_objects.iter().cloned().map(Call::Add));
            // Connection-request credentials go alone: a CPE that refuses another value of a
            // shared SetParameterValues may apply some of it and fault all of it, and Roost must
            // know for sure what wakes the device.
            let (credentials, others): (Vec<_>, Vec<_>) =
                plan.set_values.iter().cloned().partition(|(name, _, _)| is_connection_request_credential(name));
            for values in [credentials, others] {
                if !values.is_empty() {
                    self.queue.push_back(Call::Set(values));
                }
            }
            self.last_plan = Some(plan);
        }
    }

    /// Runs one round; `None` when provisioning must stop (a fault was recorded).
    async fn round(&mut self, app: &Arc<App>) -> Result<Option<Plan>> {
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
                app.provisioning.counters.inline_rounds.fetch_add(1, Ordering::Relaxed);
                outcome
            }
            None => {
                let app2 = app.clone();
                let secrets = self.secrets.clone();
                let handle = Handle::current();
                let _permit = app.provisioning.rounds.acquire().await.context("the round limiter is closed")?;
                tokio::task::spawn_blocking(move || round.run_blocking(&app2, &handle, &*secrets))
                    .await
                    .context("a provisioning round panicked")?
            }
        };
        for (plugin, level, message) in &outcome.logs {
            tracing::info!(device = %self.device_id, plugin = %plugin, level = ?level, "{message}");
        }
        app.provisioning.counters.sandboxed_runs.fetch_add(outcome.sandboxed, Ordering::Relaxed);
        app.provisioning.counters.replayed_runs.fetch_add(outcome.replayed, Ordering::Relaxed);
        if memoize {
            self.memos = outcome.memos;
        }

        for note in &outcome.faults {
            self.fault(app, &note.channel, &note.code, &note.message, note.detail.clone()).await?;
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
                None => devices::tags(&app.store, self.device_pk).await?,
            };
            for tag in &outcome.tags_added {
                devices::add_tag(&app.store, self.device_pk, tag).await?;
                if !tags.contains(tag) {
                    tags.push(tag.clone());
                }
            }
            for tag in &outcome.tags_removed {
                devices::remove_tag(&app.store, self.device_pk, tag).await?;
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
        match outcome.plan {
            None => Ok(Some(Plan::default())),
            Some(Ok(plan)) => Ok(Some(plan)),
            Some(Err(error)) => {
                let message = format!("A declaration cannot be carried out: {error}");
                self.fault(app, "provisioning", "provisioning.invalid_declaration", &message, None).await?;
                Ok(None)
            }
        }
    }

    fn send(&mut self, call: Call) -> AcsRequest {
        let (in_flight, request) = match call {
            Call::Refresh(prefix) => {
                let mut refresh = Refresh::with_batch(prefix, usize::try_from(self.discovery_batch).unwrap_or(0));
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
                let request = AcsRequest::SetParameterValues {
                    values: values
                        .iter()
                        .map(|(name, value, value_type)| ParameterValue {
                            name: name.clone(),
                            value: value.clone(),
                            value_type: ValueType::parse(value_type),
                        })
                        .collect(),
                    parameter_key: PARAMETER_KEY.into(),
                };
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

    /// Stores an answer; `Some` when the call needs another request.
    async fn on_response(
        &mut self,
        app: &Arc<App>,
        in_flight: InFlight,
        response: CpeResponse,
    ) -> Result<Option<AcsRequest>> {
        let now = now_millis();
        let now_ms = u64::try_from(now).unwrap_or(0);
        match (in_flight, response) {
            (InFlight::Refresh(mut refresh), response) => {
                if let Some(request) = refresh.on_response(app, self.device_pk, response).await? {
                    self.in_flight = Some(InFlight::Refresh(refresh));
                    return Ok(Some(request));
                }
                self.reload(app, &refresh.prefix, now_ms).await?;
            }
            (InFlight::GetValues(names), CpeResponse::GetParameterValues { parameters: values }) => {
                if values.is_empty() {
                    let message = format!("GetParameterValues of {} returned no values", names.join(", "));
                    self.fault(app, "provisioning", "empty_response", &message, None).await?;
                    self.queue.clear();
                    self.commands_queued = true;
                    return Ok(None);
                }
                {
                    let _guard = app.store.write_guard().await;
                    parameters::upsert_values(app.store.db(), self.device_pk, &values, now).await?;
                }
                self.view.update(|tree| {
                    for value in &values {
                        let text = if is_secret_parameter(&value.name) { String::new() } else { value.value.clone() };
                        let node = tree.get_mut(&value.name);
                        match node {
                            Some(node) => {
                                node.value = Some(text);
                                node.value_type = value.value_type.as_str().to_owned();
                                node.updated_ms = now_ms;
                            }
                            None => tree.insert(
                                value.name.clone(),
                                Node {
                                    value: Some(text),
                                    value_type: value.value_type.as_str().to_owned(),
                                    writable: false,
                                    updated_ms: now_ms,
                                },
                            ),
                        }
                    }
                });
            }
            (InFlight::Add(instance), CpeResponse::AddObject { instance_number, status }) => {
                if status > 1 || instance_number == 0 {
                    let message = format!(
                        "AddObject {} answered InstanceNumber {instance_number} with Status {status}: no object was created",
                        instance.table
                    );
                    self.fault(app, "provisioning", "invalid_response", &message, None).await?;
                    self.queue.clear();
                    self.commands_queued = true;
                    return Ok(None);
                }
                let mut refresh = Refresh::with_batch(
                    format!("{}{instance_number}.", instance.table),
                    usize::try_from(self.discovery_batch).unwrap_or(0),
                );
                let request = refresh.first_request();
                self.in_flight = Some(InFlight::AddRefresh { instance, refresh });
                return Ok(Some(request));
            }
            (InFlight::AddRefresh { instance, mut refresh }, response) => {
                if let Some(request) = refresh.on_response(app, self.device_pk, response).await? {
                    self.in_flight = Some(InFlight::AddRefresh { instance, refresh });
                    return Ok(Some(request));
                }
                self.reload(app, &refresh.prefix, now_ms).await?;
                // The table's listing is no longer complete for this session's count; the new
                // instance is, and its alias values make it match the pattern that asked for it.
                if !instance.alias.is_empty() {
                    let values: Vec<(String, String, String)> = self
                        .view
                        .read(&refresh.prefix, |tree| {
                            instance
                                .alias
                                .iter()
                                .filter_map(|(key, value)| {
                                    let path = format!("{}{key}", refresh.prefix);
                                    let node = tree.get(&path)?;
                                    roost_plugin_sdk::coerce(
                                        &SdkValue::Text(value.clone()),
                                        &node.value_type,
                                        node.value.as_deref(),
                                    )
                                    .ok()
                                    .map(|(text, value_type)| (path, text, value_type))
                                })
                                .collect()
                        })
                        .unwrap_or_default();
                    if !values.is_empty() {
                        self.queue.push_front(Call::Set(values));
                    }
                }
            }
            (InFlight::Delete(object), CpeResponse::DeleteObject { .. }) => {
                {
                    let _guard = app.store.write_guard().await;
                    parameters::delete_subtree(app.store.db(), self.device_pk, &object).await?;
                }
                self.view.update(|tree| tree.remove(&object));
            }
            (InFlight::Set(values), CpeResponse::SetParameterValues { .. }) => {
                let written: Vec<ParameterValue> = values
                    .iter()
                    .map(|(name, value, value_type)| ParameterValue {
                        name: name.clone(),
                        value: value.clone(),
                        value_type: ValueType::parse(value_type),
                    })
                    .collect();
                {
                    let _guard = app.store.write_guard().await;
                    parameters::upsert_values(app.store.db(), self.device_pk, &written, now).await?;
                    for secret in written.iter().filter(|p| is_secret_parameter(&p.name)) {
                        let sealed = app.secrets.seal(secret.value.as_bytes());
                        parameters::remember_secret(app.store.db(), self.device_pk, &secret.name, sealed).await?;
                    }
                }
                for secret in written.iter().filter(|p| is_secret_parameter(&p.name)) {
                    self.secrets.set(&secret.name, &secret.value);
                }
                self.view.update(|tree| {
                    for (name, value, value_type) in &values {
                        let text = if is_secret_parameter(name) { String::new() } else { value.clone() };
                        let writable = tree.get(name).is_none_or(|n| n.writable);
                        tree.insert(
                            name.clone(),
                            Node { value: Some(text), value_type: value_type.clone(), writable, updated_ms: now_ms },
                        );
                    }
                });
                crate::cwmp::driver::note_connection_request_credentials(app, self.device_pk, &self.root, &written)
                    .await?;
            }
            (InFlight::Command(command), response) => {
                let expected = matches!(
                    (&command, &response),
                    (Command::Reboot, CpeResponse::Reboot)
                        | (Command::FactoryReset, CpeResponse::FactoryReset)
                        | (Command::Download { .. }, CpeResponse::Download { .. })
                );
                if !expected {
                    let message = format!("Unexpected {}Response to {command:?}", response.method_name());
                    self.fault(app, "provisioning", "wrong_response", &message, None).await?;
                }
                if expected && matches!(command, Command::FactoryReset) {
                    // What Roost configured is gone, and some agents come back with `1 BOOT` only.
                    devices::mark_reset(&app.store, self.device_pk).await?;
                }
                if matches!(command, Command::Reboot | Command::FactoryReset) {
                    // The device goes away when the session ends: nothing else is worth sending.
                    self.queue.clear();
                }
            }
            (in_flight, other) => {
                let message = format!("Unexpected {}Response to {}", other.method_name(), describe(&in_flight));
                self.fault(app, "provisioning", "wrong_response", &message, None).await?;
                self.queue.clear();
                self.commands_queued = true;
            }
        }
        Ok(None)
    }

    /// After a refresh of `prefix`: the view takes what the store now holds there.
    async fn reload(&self, app: &App, prefix: &str, now_ms: u64) -> Result<()> {
        let rows = load_subtree(app, self.device_pk, prefix).await?;
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

    async fn finish(&mut self, app: &App, converged: bool) -> Result<Option<AcsRequest>> {
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
            app.provisioning.reads.keep(self.device_pk, kept);
        }
        if converged && !self.unsettled {
            let now = now_millis();
            for preset in std::mem::take(&mut self.ran_scheduled) {
                preset_store::record_run(&app.store, self.device_pk, preset.org_id, &preset.name, now).await?;
            }
        }
        Ok(None)
    }

    async fn fault(
        &self,
        app: &App,
        channel: &str,
        code: &str,
        message: &str,
        detail: Option<serde_json::Value>,
    ) -> Result<()> {
        tracing::info!(device = %self.device_id, channel, code, message, "provisioning fault");
        faults::record(&app.store, self.device_pk, self.org_id, channel, code, message, detail.as_ref()).await
    }
}

/// `ManagementServer.ConnectionRequestUsername`/`Password` in either data model.
fn is_connection_request_credential(path: &str) -> bool {
    path.strip_prefix("InternetGatewayDevice.").or_else(|| path.strip_prefix("Device.")).is_some_and(|rest| {
        matches!(rest, "ManagementServer.ConnectionRequestUsername" | "ManagementServer.ConnectionRequestPassword")
    })
}

/// What to do after a CPE refused a SetParameterValues.
#[derive(Debug, PartialEq, Eq)]
enum AfterRefusal {
    /// The fault names the parameters it refused: send the others again, alone.
    Retry { refused: Vec<String>, rest: Vec<(String, String, String)> },
    /// Every parameter was refused: nothing to send again; later rounds leave them out.
    Skip { refused: Vec<String> },
    /// The fault does not say which parameters it refused: read back what the CPE now holds of
    /// the non-secret ones (some firmware applies part of a SetParameterValues it faults) and
    /// stop for this session.
    Reread { names: Vec<String> },
}

fn after_refused_set(values: Vec<(String, String, String)>, fault: &roost_cwmp::Fault) -> AfterRefusal {
    let named: HashSet<&str> = fault.set_parameter_values_faults.iter().map(|f| f.parameter_name.as_str()).collect();
    let (refused, rest): (Vec<_>, Vec<_>) = values.into_iter().partition(|(name, _, _)| named.contains(name.as_str()));
    let refused: Vec<String> = refused.into_iter().map(|(name, _, _)| name).collect();
    match (refused.is_empty(), rest.is_empty()) {
        (false, false) => AfterRefusal::Retry { refused, rest },
        (false, true) => AfterRefusal::Skip { refused },
        (true, _) => AfterRefusal::Reread {
            names: rest.into_iter().map(|(name, _, _)| name).filter(|name| !is_secret_parameter(name)).collect(),
        },
    }
}

/// How a round runs its plugin presets.
enum Runner<'a> {
    /// On the blocking pool: plugins run in the sandbox (or are replayed), the view loads from
    /// the store.
    Blocking { app: &'a Arc<App>, handle: &'a Handle },
    /// On an async worker: replays only; a plugin that would have to run sets `missed`.
    Replay { missed: &'a Cell<bool> },
}

impl Round {
    /// The round from replays and the view alone, or `None` if it needs more: a plugin run, a
    /// load from the store, a secret to read.
    fn run_inline(&self, secrets: &SessionSecrets) -> Option<RoundOutcome> {
        let missed = Cell::new(false);
        let secrets = KnownSecrets { secrets, unknown: Cell::new(false) };
        let outcome = self.view.without_loading(|| self.run(&Runner::Replay { missed: &missed }, &secrets))?;
        (!missed.get() && !secrets.unknown.get()).then_some(outcome)
    }

    fn run_blocking(&self, app: &Arc<App>, handle: &Handle, secrets: &dyn plan::Secrets) -> RoundOutcome {
        self.run(&Runner::Blocking { app, handle }, secrets)
    }

    /// Which presets apply now, their runs, and the plan.
    fn run(&self, runner: &Runner<'_>, secrets: &dyn plan::Secrets) -> RoundOutcome {
        let view = &self.view;
        let mut outcome = RoundOutcome::default();
        let mut declarations: Vec<Declared> = Vec::new();
        let tags = if self.presets.iter().any(|p| !p.definition.tags.is_empty()) { view.tags() } else { Vec::new() };
        for preset in &self.presets {
            if !preset.selects(&self.events, &tags) {
                continue;
            }
            let holds = preset.precondition_patterns().all(|p| view.read_pattern(&p, |_| ()).is_ok())
                && view.read_loaded(|tree| preset.precondition_holds(tree));
            if !holds {
                continue;
            }
            outcome.ran.push(preset.clone());
            let channel = format!("preset:{}", preset.name);
            let definition = &preset.definition;
            let result = match definition.provision.as_str() {
                "refresh" | "value" | "tag" | "reboot" | "reset" | "download" => {
                    built_in(preset, &mut declarations, &mut outcome).map_err(|message| FaultNote {
                        channel: channel.clone(),
                        code: "preset.invalid".into(),
                        message,
                        detail: None,
                    })
                }
                _ => {
                    let result = self.run_plugin(runner, preset, &mut declarations, &mut outcome);
                    if let Runner::Replay { missed } = runner
                        && missed.get()
                    {
                        return outcome;
                    }
                    result
                }
            };
            if let Err(note) = result {
                outcome.failed.push(preset.name.clone());
                outcome.faults.push(note);
            }
        }
        for d in &declarations {
            // The plan reads every declared pattern's whole subtree: whether a table was ever
            // listed is told by what lies below its literal prefix.
            if let Err(error) = view.read(&d.pattern.literal_prefix(), |_| ()) {
                outcome.faults.push(FaultNote {
                    channel: "provisioning".into(),
                    code: "provisioning.store".into(),
                    message: error.message,
                    detail: None,
                });
                return outcome;
            }
        }
        outcome.plan = Some(view.read_loaded(|tree| plan::plan(tree, &declarations, self.clock, secrets)));
        outcome
    }

    /// Runs (or replays) a provision plugin once; its declarations join the round's, its tag
    /// changes the outcome.
    fn run_plugin(
        &self,
        runner: &Runner<'_>,
        preset: &ActivePreset,
        declarations: &mut Vec<Declared>,
        outcome: &mut RoundOutcome,
    ) -> Result<(), FaultNote> {
        let channel = format!("preset:{}", preset.name);
        let Some(plugin) = &preset.plugin else {
            return Err(FaultNote {
                channel,
                code: "preset.unknown_provision".into(),
                message: format!("No provision named {:?} is installed any more", preset.definition.provision),
                detail: None,
            });
        };
        let config = self.org.config.get(&plugin.name).cloned().unwrap_or_default();
        let key = self.memoize.then(|| {
            // Everything the run saw besides the tree, which the revision stands for.
            format!(
                "{:?}",
                (
                    &plugin.hash,
                    self.adapter.as_ref().map(|a| &a.hash),
                    &preset.definition.args,
                    &config,
                    self.org.limits,
                    &self.events,
                    &self.view.facts,
                )
            )
        });
        let replay = key.as_ref().and_then(|key| {
            let kept = self.kept.as_ref()?;
            kept.runs.iter().find(|(k, _)| k == key).map(|(_, memo)| memo.clone())
        });
        let (memo, replayable) = match (replay, runner) {
            (Some(memo), _) => {
                outcome.replayed += 1;
                (memo, true)
            }
            (None, Runner::Replay { missed }) => {
                missed.set(true);
                return Ok(());
            }
            (None, Runner::Blocking { app, handle }) => {
                outcome.sandboxed += 1;
                self.run_sandboxed(app, handle, plugin, config, preset, &channel, outcome)?
            }
        };
        outcome.logs.extend(memo.logs.iter().map(|(level, message)| (plugin.name.clone(), *level, message.clone())));
        declarations.extend(memo.declarations.iter().cloned());
        outcome.tags_added.extend(memo.tags_added.iter().cloned());
        outcome.tags_removed.extend(memo.tags_removed.iter().cloned());
        if let Some(key) = key.filter(|_| replayable) {
            outcome.memos.push((key, memo));
        }
        Ok(())
    }

    /// Runs the plugin in the sandbox: its output, and whether a later session may replay it.
    #[allow(clippy::too_many_arguments)]
    fn run_sandboxed(
        &self,
        app: &Arc<App>,
        handle: &Handle,
        plugin: &crate::store::plugins::PluginRow,
        config: Vec<(String, String)>,
        preset: &ActivePreset,
        channel: &str,
        outcome: &mut RoundOutcome,
    ) -> Result<(Arc<RunMemo>, bool), FaultNote> {
        let loaded = adapters::load_blocking(app, handle, plugin).map_err(|error| FaultNote {
            channel: channel.to_owned(),
            code: "plugin.instantiate".into(),
            message: format!("{error:#}"),
            detail: None,
        })?;
        let args: Vec<(String, String)> = preset.definition.args.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        let (result, output) = app.plugins.run_provision(
            &loaded,
            self.view.clone(),
            self.adapter.as_ref().map(|a| a.loaded.clone()),
            self.org.limits,
            config,
            &args,
        );
        for fault in &output.adapter_faults {
            let name = self.adapter.as_ref().map_or("adapter", |a| a.name.as_str());
            outcome.faults.push(FaultNote {
                channel: format!("adapter:{name}"),
                code: fault.code().into(),
                message: format!("{name}, called by {}: {fault}", plugin.name),
                detail: None,
            });
        }
        if let Err(fault) = result {
            outcome.logs.extend(output.logs.into_iter().map(|(level, message)| (plugin.name.clone(), level, message)));
            return Err(plugin_fault(channel.to_owned(), plugin.name.as_str(), &plugin.version, &fault));
        }
        let replayable = !output.impure && output.adapter_faults.is_empty();
        let memo = RunMemo {
            declarations: output.declarations,
            tags_added: output.tags_added,
            tags_removed: output.tags_removed,
            logs: output.logs,
        };
        Ok((Arc::new(memo), replayable))
    }
}

/// Whether two sets of runs are the same outputs under the same keys.
fn same_runs(a: &[(String, Arc<RunMemo>)], b: &[(String, Arc<RunMemo>)]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|((ka, ma), (kb, mb))| ka == kb && Arc::ptr_eq(ma, mb))
}

fn plugin_fault(channel: String, name: &str, version: &str, fault: &PluginFault) -> FaultNote {
    FaultNote {
        channel,
        code: fault.code().into(),
        message: format!("{name} {version}: {fault}"),
        detail: Some(json!({ "plugin": name, "version": version })),
    }
}

/// The built-in provisions, on the same footing as plugins: they declare, tag, or ask for a
/// command. Their arguments were checked when the preset was written.
fn built_in(preset: &ActivePreset, declarations: &mut Vec<Declared>, outcome: &mut RoundOutcome) -> Result<(), String> {
    let d = &preset.definition;
    let arg = |name: &str| d.args.get(name).map(String::as_str);
    let pattern = || Pattern::parse(arg("path").unwrap_or_default()).map_err(|e| format!("{}: {e}", d.provision));
    match d.provision.as_str() {
        "refresh" => {
            let seconds: u64 = arg("max-age").and_then(|a| a.parse().ok()).unwrap_or(0);
            declarations.push(Declared {
                pattern: pattern()?,
                value: None,
                max_age: Some(Duration::from_secs(seconds)),
                instances: None,
            });
        }
        "value" => {
            let pattern = pattern()?;
            // The value's leaves must be known to be written: fetch them when never seen.
            declarations.push(Declared {
                pattern,
                value: Some(SdkValue::Text(arg("value").unwrap_or_default().to_owned())),
                max_age: Some(Duration::MAX),
                instances: None,
            });
        }
        "tag" => {
            outcome.tags_added.extend(arg("add").map(str::to_owned));
            outcome.tags_removed.extend(arg("remove").map(str::to_owned));
        }
        "reboot" => outcome.commands.push((preset.name.clone(), Command::Reboot)),
        "reset" => outcome.commands.push((preset.name.clone(), Command::FactoryReset)),
        "download" => outcome.commands.push((
            preset.name.clone(),
            Command::Download {
                url: arg("url").unwrap_or_default().to_owned(),
                file_type: arg("file-type").unwrap_or("1 Firmware Upgrade Image").to_owned(),
            },
        )),
        other => return Err(format!("{other} is not a built-in provision")),
    }
    Ok(())
}

fn describe(in_flight: &InFlight) -> String {
    match in_flight {
        InFlight::Refresh(r) => format!("GetParameterNames {}", r.prefix),
        InFlight::GetValues(names) => format!("GetParameterValues of {}", names.join(", ")),
        InFlight::Add(i) => format!("AddObject {}", i.table),
        InFlight::AddRefresh { refresh, .. } => format!("GetParameterNames {}", refresh.prefix),
        InFlight::Delete(o) => format!("DeleteObject {o}"),
        InFlight::Set(values) => {
            let names: Vec<&str> = values.iter().map(|(n, _, _)| n.as_str()).collect();
            format!("SetParameterValues of {}", names.join(", "))
        }
        InFlight::Command(c) => format!("{c:?}"),
    }
}

fn summarize(plan: &Plan) -> String {
    let mut parts = Vec::new();
    let list = |items: Vec<&str>| {
        let shown: Vec<&str> = items.iter().take(5).copied().collect();
        let more = items.len().saturating_sub(5);
        if more > 0 { format!("{} and {more} more", shown.join(", ")) } else { shown.join(", ") }
    };
    if !plan.get_names.is_empty() {
        parts.push(format!("to list {}", list(plan.get_names.iter().map(String::as_str).collect())));
    }
    if !plan.get_values.is_empty() {
        parts.push(format!("to read {}", list(plan.get_values.iter().map(String::as_str).collect())));
    }
    if !plan.add_objects.is_empty() {
        parts.push(format!("to add to {}", list(plan.add_objects.iter().map(|a| a.table.as_str()).collect())));
    }
    if !plan.delete_objects.is_empty() {
        parts.push(format!("to delete {}", list(plan.delete_objects.iter().map(String::as_str).collect())));
    }
    if !plan.set_values.is_empty() {
        let sets: Vec<String> = plan
            .set_values
            .iter()
            .map(|(p, v, _)| if is_secret_parameter(p) { format!("{p} (secret)") } else { format!("{p} = {v:?}") })
            .collect();
        parts.push(format!("to set {}", list(sets.iter().map(String::as_str).collect())));
    }
    parts.join("; ")
}

#[cfg(test)]
mod tests {
    use roost_cwmp::Fault;
    use roost_cwmp::fault::SetParameterValuesFault;

    use super::*;

    fn values(names: &[&str]) -> Vec<(String, String, String)> {
        names.iter().map(|n| ((*n).to_owned(), "1".to_owned(), "xsd:boolean".to_owned())).collect()
    }

    fn refusing(names: &[&str]) -> Fault {
        let mut fault = Fault::new(9003, "Invalid arguments");
        fault.set_parameter_values_faults = names
            .iter()
            .map(|n| SetParameterValuesFault {
                parameter_name: (*n).to_owned(),
                code: 9008,
                string: "read-only".into(),
            })
            .collect();
        fault
    }

    const ENABLE: &str = "InternetGatewayDevice.ManagementServer.PeriodicInformEnable";
    const INTERVAL: &str = "InternetGatewayDevice.ManagementServer.PeriodicInformInterval";
    const PASSWORD: &str = "InternetGatewayDevice.ManagementServer.ConnectionRequestPassword";

    #[test]
    fn a_refusal_naming_some_parameters_retries_the_others() {
        let outcome = after_refused_set(values(&[ENABLE, INTERVAL]), &refusing(&[ENABLE]));
        assert_eq!(outcome, AfterRefusal::Retry { refused: vec![ENABLE.into()], rest: values(&[INTERVAL]) });
    }

    #[test]
    fn a_refusal_of_everything_skips() {
        let outcome = after_refused_set(values(&[ENABLE]), &refusing(&[ENABLE]));
        assert_eq!(outcome, AfterRefusal::Skip { refused: vec![ENABLE.into()] });
    }

    #[test]
    fn a_refusal_that_names_nothing_rereads_what_can_be_read() {
        let outcome = after_refused_set(values(&[ENABLE, PASSWORD]), &Fault::new(9002, "Internal error"));
        assert_eq!(outcome, AfterRefusal::Reread { names: vec![ENABLE.into()] });
    }

    #[test]
    fn connection_request_credentials_are_recognised_in_both_models() {
        assert!(is_connection_request_credential(PASSWORD));
        assert!(is_connection_request_credential("Device.ManagementServer.ConnectionRequestUsername"));
        assert!(!is_connection_request_credential(ENABLE));
        assert!(!is_connection_request_credential("Device.ManagementServer.Password"));
    }
}
