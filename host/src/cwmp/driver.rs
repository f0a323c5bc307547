//! The session driver: what the ACS does with each turn of a CWMP session.
//!
//! After the Inform is stored, the ACS's own work runs in a fixed order, one item at a time:
//! 1. discovery of the whole parameter tree (GetParameterNames, then GetParameterValues of
//!    explicit leaves in batches — partial-path GetParameterValues crashes some agents);
//! 2. queued tasks, oldest first;
//! 3. provisioning: the presets that match the device, round after round
//!    ([`crate::provisioning::engine`]). Connection-request credentials come from there too (the
//!    `bootstrap` provision); whoever sets them, Roost keeps what was set to wake the device.
//!
//! Each item is a small state machine fed the CPE's answers; a CPE fault fails the item, never
//! the session. When nothing is left the session ends with 204.

use std::sync::Arc;

use anyhow::Result;
use roost_cwmp::session::Unanswered;
use roost_cwmp::{AcsRequest, CpeResponse, Download, Fault, ParameterValue, TransferComplete, Upload, ValueType};
use serde_json::{Value, json};

use super::refresh::{Refresh, Step};
use crate::app::App;
use crate::provisioning::engine::Provisioning;
use crate::store::devices::Device;
use crate::store::tasks::TaskRow;
use crate::store::{devices, faults, now_millis, parameters, tasks};
use crate::tasks::TaskSpec;

/// A task that has been sent this many times without an answer (each time the session died) is
/// failed instead of being sent again: it is probably what kills the session.
const MAX_ATTEMPTS: i64 = 3;

/// Upper bound on RPCs in one session, so that a CPE that keeps changing under us cannot hold
/// a session forever.
const MAX_RPCS_PER_SESSION: u32 = 4096;

/// Sessions in a row that may die during discovery before it is given up (a fault is recorded):
/// enough to halve the default batch down to one name.
const MAX_DISCOVERY_DEATHS: i64 = devices::DISCOVERY_GIVEN_UP;
/// Deaths on a request that cannot be made smaller (GetParameterNames, or one name) after
/// which discovery is given up.
const MAX_UNSHRINKABLE_DEATHS: i64 = 3;

/// The event under which presets configure a device from scratch.
const BOOTSTRAP: &str = "0 BOOTSTRAP";

/// The events presets are selected by: the Inform's, and `0 BOOTSTRAP` for a device Roost has
/// not configured yet, whatever it sent. Several agents' first contact is `2 PERIODIC` or
/// `1 BOOT`; a device is new to Roost when Roost has no record of having set it up.
pub(crate) fn selection_events(inform_events: &[String], configured: bool) -> Vec<String> {
    let mut events = inform_events.to_vec();
    if !configured && !events.iter().any(|e| e.trim().eq_ignore_ascii_case(BOOTSTRAP)) {
        events.push(BOOTSTRAP.to_owned());
    }
    events
}

/// What follows a session that died with a discovery request unanswered.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum AfterDeath {
    /// Try again next session with batches of `batch` names.
    Retry { batch: i64, failures: i64 },
    /// Stop trying: record a fault.
    GiveUp,
}

/// `batch`: the batch in use (learnt, or the configured default); `failures`: sessions in a row
/// that died during discovery before this one. Only a death on a full batch says the batch is
/// too large: the last, shorter batch of a tree comes after full ones that passed.
pub(crate) fn after_discovery_death(step: Step, batch: i64, failures: i64) -> AfterDeath {
    let failures = failures + 1;
    let (batch, shrank) = match step {
        Step::Values(sent) => {
            let sent = i64::try_from(sent).unwrap_or(i64::MAX);
            if sent > 1 && sent >= batch { ((sent / 2).max(1), true) } else { (batch, false) }
        }
        Step::Names => (batch, false),
    };
    if failures >= MAX_DISCOVERY_DEATHS || (!shrank && failures >= MAX_UNSHRINKABLE_DEATHS) {
        AfterDeath::GiveUp
    } else {
        AfterDeath::Retry { batch, failures }
    }
}

/// What the CPE's last message meant for the work in progress.
#[derive(Debug)]
pub enum Answer {
    /// An empty POST with nothing outstanding, or a stray message: just continue.
    Nothing,
    Response(CpeResponse),
    Fault(Fault),
    Unanswered(Unanswered),
}

/// The ACS's state for one session with one device, beyond the protocol state machine.
#[derive(Debug)]
pub struct Driver {
    device: Device,
    /// False once the queue is known to be empty: a periodic session with nothing to do ends
    /// without another query.
    may_have_tasks: bool,
    work: Option<Work>,
    /// The Inform's event codes.
    events: Vec<String>,
    started_at: i64,
    discovery_attempted: bool,
    provisioning_attempted: bool,
    /// The session was opened with a shared onboarding credential: the device is given its own
    /// first thing (see `own_credential_request`).
    issue_own_credential: bool,
    rpcs: u32,
}

#[derive(Debug)]
enum Work {
    /// Writing the device's own CWMP credential to `ManagementServer.Username/Password`.
    OwnCredential,
    Discovery(Refresh),
    Task(Box<TaskRun>),
    Provisioning(Box<Provisioning>),
}

#[derive(Debug)]
struct TaskRun {
    task: TaskRow,
    spec: TaskSpec,
    /// The subtree refresh a refreshObject runs, or an addObject runs on its new instance
    /// (with the instance number to report).
    follow_up: Option<(Option<u32>, Refresh)>,
    /// A getParameterValues naming objects, read object by object.
    expansion: Option<Expansion>,
}

/// A getParameterValues whose object paths are read as discovery reads trees: each object's
/// names, then its leaves by name; then the leaves the task named, in one call.
#[derive(Debug, Default)]
struct Expansion {
    objects: std::collections::VecDeque<String>,
    leaves: Vec<String>,
    /// The values read so far, for the task's result.
    values: Vec<ParameterValue>,
}

impl Expansion {
    /// `None` when no name is an object, or the caller asked for partial paths as they are.
    fn of(spec: &TaskSpec) -> Option<Self> {
        let TaskSpec::GetParameterValues { names, partial_path: false } = spec else { return None };
        let (objects, leaves): (Vec<String>, Vec<String>) = names.iter().cloned().partition(|n| n.ends_with('.'));
        (!objects.is_empty()).then(|| Self { objects: objects.into(), leaves, values: Vec::new() })
    }
}

/// How a task ended.
enum Outcome {
    Continue(AcsRequest),
    Done(Value),
    /// Download/Upload accepted with Status 1: TransferComplete will close the task later.
    Transferring,
    Failed {
        code: String,
        message: String,
        detail: Option<Value>,
    },
}

impl Driver {
    pub fn new(device: Device, has_queued_tasks: bool, events: Vec<String>) -> Self {
        Self {
            device,
            may_have_tasks: has_queued_tasks,
            work: None,
            events,
            started_at: now_millis(),
            discovery_attempted: false,
            provisioning_attempted: false,
            issue_own_credential: false,
            rpcs: 0,
        }
    }

    /// Gives the device its own CWMP credential in this session.
    pub fn issuing_own_credential(mut self, issue: bool) -> Self {
        self.issue_own_credential = issue;
        self
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The task whose RPC is outstanding, if any (re-queued implicitly: it stays pending).
    pub fn current_task(&self) -> Option<i64> {
        match &self.work {
            Some(Work::Task(run)) => Some(run.task.id),
            _ => None,
        }
    }

    /// Feeds the CPE's answer to the work in progress and returns the next request to send, or
    /// `None` to end the session. While the server drains for shutdown, the item in progress
    /// finishes but no new one starts.
    pub async fn next(&mut self, app: &Arc<App>, answer: Answer) -> Result<Option<AcsRequest>> {
        if let Some(work) = self.work.take()
            && let Some(request) = self.continue_work(app, work, answer).await?
        {
            return Ok(self.count(request));
        }
        if app.is_draining() {
            return Ok(None);
        }
        if self.rpcs >= MAX_RPCS_PER_SESSION {
            tracing::warn!(device = %self.device.device_id, "session reached {MAX_RPCS_PER_SESSION} RPCs; ending it");
            return Ok(None);
        }
        while let Some((work, request)) = self.pick_work(app).await? {
            self.work = Some(work);
            if let Some(request) = request {
                return Ok(self.count(request));
            }
            // Work that needs no RPC (finished while starting) was already completed.
            self.work = None;
        }
        Ok(None)
    }

    fn count(&mut self, request: AcsRequest) -> Option<AcsRequest> {
        self.rpcs += 1;
        Some(request)
    }

    async fn continue_work(&mut self, app: &Arc<App>, work: Work, answer: Answer) -> Result<Option<AcsRequest>> {
        match work {
            Work::OwnCredential => {
                match answer {
                    // It authenticates with the new credential from its next session on, which
                    // marks it as taken (`devices.own_credential_at`).
                    Answer::Response(CpeResponse::SetParameterValues { .. }) => {
                        tracing::info!(device = %self.device.device_id, "the device took its own CWMP credential");
                    }
                    Answer::Fault(fault) => {
                        let message = format!("the device refused its own CWMP credential: {}", fault.string);
                        self.record_fault(app, "credentials", &fault.code.to_string(), &message).await?;
                    }
                    _ => {}
                }
                Ok(None)
            }
            Work::Provisioning(mut provisioning) => match provisioning.next(app, answer).await? {
                Some(request) => {
                    self.work = Some(Work::Provisioning(provisioning));
                    Ok(Some(request))
                }
                None => {
                    self.provisioning_ended(app, &provisioning).await?;
                    Ok(None)
                }
            },
            Work::Discovery(mut refresh) => match answer {
                Answer::Response(response) => match refresh.on_response(app, self.device.id, response).await? {
                    Some(request) => {
                        self.work = Some(Work::Discovery(refresh));
                        Ok(Some(request))
                    }
                    None => {
                        let now = now_millis();
                        devices::mark_discovered(&app.store, self.device.id, now).await?;
                        self.device.discovered_at = Some(now);
                        Ok(None)
                    }
                },
                Answer::Fault(fault) => {
                    // A batch the agent refuses should not cost the rest of the tree.
                    self.record_fault(app, "discovery", &fault.code.to_string(), &fault.string).await?;
                    match refresh.next_batch(app.config.cwmp.discovery_batch) {
                        Some(request) if refresh.names_done => {
                            self.work = Some(Work::Discovery(refresh));
                            Ok(Some(request))
                        }
                        _ => Ok(None),
                    }
                }
                Answer::Unanswered(reason) => {
                    self.record_fault(app, "discovery", "no_response", &describe_unanswered(&reason)).await?;
                    Ok(None)
                }
                Answer::Nothing => Ok(None),
            },
            Work::Task(run) => self.continue_task(app, run, answer).await,
        }
    }

    async fn pick_work(&mut self, app: &Arc<App>) -> Result<Option<(Work, Option<AcsRequest>)>> {
        let root = match self.device.data_model.as_str() {
            "tr098" => Some("InternetGatewayDevice."),
            "tr181" => Some("Device."),
            _ => None,
        };
        if self.issue_own_credential
            && let Some(root) = root
        {
            self.issue_own_credential = false;
            let request = own_credential_request(app, &self.device, root).await?;
            return Ok(Some((Work::OwnCredential, Some(request))));
        }
        let discovery_due = root.is_some()
            && !self.discovery_attempted
            && self.device.discovered_at.is_none()
            && self.device.discovery_failures < MAX_DISCOVERY_DEATHS;
        // Discovery comes first, unless it has killed a session before: queued tasks must not
        // wait behind a discovery that may kill this one too.
        let tasks_first = self.device.discovery_failures > 0;
        if discovery_due && !tasks_first {
            return Ok(Some(self.start_discovery(root)));
        }
        if self.may_have_tasks
            && let Some(picked) = self.next_task(app).await?
        {
            return Ok(Some(picked));
        }
        if discovery_due {
            return Ok(Some(self.start_discovery(root)));
        }
        if !self.provisioning_attempted {
            self.provisioning_attempted = true;
            // Any call sent before now (discovery, a task) may have written to the tree since the
            // Inform returned its revision.
            let tree_rev = (self.rpcs == 0).then_some(self.device.tree_rev);
            let events = selection_events(&self.events, self.device.is_configured());
            if let Some(mut provisioning) =
                Provisioning::start(app, &self.device, &events, self.started_at, tree_rev).await?
            {
                let request = provisioning.next(app, Answer::Nothing).await?;
                if request.is_none() {
                    self.provisioning_ended(app, &provisioning).await?;
                }
                return Ok(Some((Work::Provisioning(Box::new(provisioning)), request)));
            }
        }
        Ok(None)
    }

    /// The GetParameterValues batch this device's firmware survives (0: the default).
    fn learnt_batch(&self) -> usize {
        usize::try_from(self.device.discovery_batch).unwrap_or(0)
    }

    fn start_discovery(&mut self, root: Option<&str>) -> (Work, Option<AcsRequest>) {
        self.discovery_attempted = true;
        let mut refresh = Refresh::with_batch(root.unwrap_or_default().to_owned(), self.learnt_batch());
        let request = refresh.first_request();
        (Work::Discovery(refresh), Some(request))
    }

    /// A device whose provisioning settled is configured: `0 BOOTSTRAP` presets stop applying
    /// to its sessions until it bootstraps again or Roost resets it.
    async fn provisioning_ended(&mut self, app: &App, provisioning: &Provisioning) -> Result<()> {
        if provisioning.settled() && !self.device.is_configured() {
            let now = now_millis();
            devices::mark_configured(&app.store, self.device.id, now).await?;
            self.device.configured_at = Some(now);
        }
        Ok(())
    }

    /// The session died (timed out, or the device started a new one) with this driver's work
    /// in flight. A discovery request that kills the CPE is sent smaller next time, and given
    /// up after a bound; a task's attempts are already counted.
    pub async fn abandoned(&self, app: &App) -> Result<()> {
        let Some(Work::Discovery(refresh)) = &self.work else { return Ok(()) };
        let Some(step) = refresh.in_flight() else { return Ok(()) };
        if app.is_draining() {
            // Ended by this server's shutdown, not by the CPE.
            return Ok(());
        }
        let device = &self.device;
        let in_use = match device.discovery_batch {
            0 => i64::try_from(app.config.cwmp.discovery_batch).unwrap_or(i64::MAX),
            learnt => learnt,
        };
        match after_discovery_death(step, in_use, device.discovery_failures) {
            AfterDeath::Retry { batch, failures } => {
                tracing::warn!(device = %device.device_id, ?step, batch, failures, "the session died during discovery; retrying with smaller batches");
                devices::set_discovery_state(&app.store, device.id, batch, failures).await
            }
            AfterDeath::GiveUp => {
                let message = format!(
                    "Discovery was given up: the CPE dropped {} sessions in a row on {}",
                    device.discovery_failures + 1,
                    match step {
                        Step::Names => "GetParameterNames".to_owned(),
                        Step::Values(n) => format!("a GetParameterValues of {n} names"),
                    }
                );
                self.record_fault(app, "discovery", "discovery.abandoned", &message).await?;
                devices::set_discovery_state(&app.store, device.id, device.discovery_batch, MAX_DISCOVERY_DEATHS).await
            }
        }
    }

    async fn next_task(&mut self, app: &Arc<App>) -> Result<Option<(Work, Option<AcsRequest>)>> {
        let now = now_millis();
        for task in tasks::expire(&app.store, self.device.id, now).await? {
            app.task_finished(task.id);
        }
        let Some(task) = tasks::next_queued(&app.store, self.device.id).await? else {
            self.may_have_tasks = false;
            return Ok(None);
        };
        let body = match &task.sealed_body {
            Some(sealed) => app.secrets.open_string(sealed).unwrap_or_else(|error| {
                tracing::error!(task = task.id, "cannot open the sealed task body: {error:#}");
                String::new()
            }),
            None => task.body.clone(),
        };
        let spec = match serde_json::from_str::<Value>(&body)
            .map_err(|e| e.to_string())
            .and_then(|body| TaskSpec::parse(&body).map(|(_, spec)| spec).map_err(|e| e.0))
        {
            Ok(spec) => spec,
            Err(error) => {
                // Only possible for rows written by hand or by an older version: fail, don't loop.
                tasks::mark_fault(&app.store, &task, "invalid_task", &error, None).await?;
                app.task_finished(task.id);
                return Ok(Some((
                    Work::Task(Box::new(TaskRun { task, spec: TaskSpec::Reboot, follow_up: None, expansion: None })),
                    None,
                )));
            }
        };
        if task.attempts >= MAX_ATTEMPTS {
            let message = format!("Sent {MAX_ATTEMPTS} times without an answer; the session died each time");
            tasks::mark_fault(&app.store, &task, "too_many_attempts", &message, None).await?;
            app.task_finished(task.id);
            return Ok(Some((Work::Task(Box::new(TaskRun { task, spec, follow_up: None, expansion: None })), None)));
        }
        let request = self.first_task_request(app, &task, &spec).await?;
        // On success the store takes what was sent, with the type sent: a value given without
        // one was sent with the stored type, which must not become the default xsd:string.
        let spec = match (spec, &request) {
            (TaskSpec::SetParameterValues { .. }, AcsRequest::SetParameterValues { values, .. }) => {
                TaskSpec::SetParameterValues {
                    values: values
                        .iter()
                        .map(|p| (p.name.clone(), p.value.clone(), Some(p.value_type.clone())))
                        .collect(),
                }
            }
            (spec, _) => spec,
        };
        tasks::mark_attempt(&app.store, task.id).await?;
        let mut run = TaskRun { task, spec, follow_up: None, expansion: None };
        let request = match Expansion::of(&run.spec) {
            Some(mut expansion) => {
                let Some(object) = expansion.objects.pop_front() else { return Ok(None) };
                let mut refresh = Refresh::with_batch(object, self.learnt_batch());
                let request = refresh.first_request();
                run.follow_up = Some((None, refresh));
                run.expansion = Some(expansion);
                request
            }
            None => request,
        };
        Ok(Some((Work::Task(Box::new(run)), Some(request))))
    }

    async fn first_task_request(&self, app: &Arc<App>, task: &TaskRow, spec: &TaskSpec) -> Result<AcsRequest> {
        let command_key = format!("roost-{}", task.id);
        let needs_key = matches!(
            spec,
            TaskSpec::Reboot | TaskSpec::Download(_) | TaskSpec::Upload(_) | TaskSpec::ScheduleInform { .. }
        );
        if needs_key && task.command_key != command_key {
            tasks::set_command_key(&app.store, task.id, &command_key).await?;
        }
        Ok(match spec {
            TaskSpec::GetParameterValues { names, .. } => AcsRequest::GetParameterValues { names: names.clone() },
            TaskSpec::SetParameterValues { values } => {
                let untyped: Vec<&str> =
                    values.iter().filter(|(_, _, t)| t.is_none()).map(|(p, _, _)| p.as_str()).collect();
                let stored = if untyped.is_empty() {
                    Default::default()
                } else {
                    parameters::values_of(app.store.db(), self.device.id, &untyped).await?
                };
                let values = values
                    .iter()
                    .map(|(path, value, value_type)| ParameterValue {
                        name: path.clone(),
                        value: value.clone(),
                        // Always send xsi:type: the stored one when the caller gave none.
                        value_type: value_type.clone().unwrap_or_else(|| {
                            stored
                                .get(path)
                                .map(|(_, t)| ValueType::parse(t))
                                .filter(|t| !t.as_str().is_empty())
                                .unwrap_or_default()
                        }),
                    })
                    .collect();
                AcsRequest::SetParameterValues { values, parameter_key: command_key }
            }
            TaskSpec::RefreshObject { object } => {
                AcsRequest::GetParameterNames { parameter_path: object.clone(), next_level: false }
            }
            TaskSpec::AddObject { object } => {
                AcsRequest::AddObject { object_name: object.clone(), parameter_key: command_key }
            }
            TaskSpec::DeleteObject { object } => {
                AcsRequest::DeleteObject { object_name: object.clone(), parameter_key: command_key }
            }
            TaskSpec::Reboot => AcsRequest::Reboot { command_key },
            TaskSpec::FactoryReset => AcsRequest::FactoryReset,
            TaskSpec::Download(d) => AcsRequest::Download(Download {
                command_key,
                file_type: d.file_type.clone(),
                url: d.url.clone(),
                username: d.username.clone(),
                password: d.password.clone(),
                file_size: d.file_size,
                target_file_name: d.target_file_name.clone(),
                delay_seconds: d.delay_seconds,
                success_url: String::new(),
                failure_url: String::new(),
            }),
            TaskSpec::Upload(u) => AcsRequest::Upload(Upload {
                command_key,
                file_type: u.file_type.clone(),
                url: u.url.clone(),
                username: u.username.clone(),
                password: u.password.clone(),
                delay_seconds: u.delay_seconds,
            }),
            TaskSpec::ScheduleInform { delay_seconds } => {
                AcsRequest::ScheduleInform { delay_seconds: *delay_seconds, command_key }
            }
            TaskSpec::GetParameterAttributes { names } => AcsRequest::GetParameterAttributes { names: names.clone() },
            TaskSpec::SetParameterAttributes { attributes } => {
                AcsRequest::SetParameterAttributes { attributes: attributes.clone() }
            }
        })
    }

    async fn continue_task(
        &mut self,
        app: &Arc<App>,
        mut run: Box<TaskRun>,
        answer: Answer,
    ) -> Result<Option<AcsRequest>> {
        let outcome = match answer {
            Answer::Nothing => return Ok(None),
            Answer::Fault(fault) => Outcome::Failed {
                code: fault.code.to_string(),
                message: fault.string.clone(),
                detail: spv_fault_detail(&fault),
            },
            Answer::Unanswered(reason) => Outcome::Failed {
                code: match reason {
                    Unanswered::EmptyPost => "no_response".into(),
                    Unanswered::WrongResponse { .. } => "wrong_response".into(),
                },
                message: describe_unanswered(&reason),
                detail: None,
            },
            Answer::Response(response) => self.task_response(app, &mut run, response).await?,
        };
        match outcome {
            Outcome::Continue(request) => {
                self.work = Some(Work::Task(run));
                Ok(Some(request))
            }
            Outcome::Done(result) => {
                tasks::mark_done(&app.store, run.task.id, Some(&result)).await?;
                app.task_finished(run.task.id);
                Ok(None)
            }
            Outcome::Transferring => {
                tasks::mark_transferring(&app.store, run.task.id, &format!("roost-{}", run.task.id)).await?;
                Ok(None)
            }
            Outcome::Failed { code, message, detail } => {
                tasks::mark_fault(&app.store, &run.task, &code, &message, detail.as_ref()).await?;
                app.task_finished(run.task.id);
                Ok(None)
            }
        }
    }

    async fn task_response(&mut self, app: &Arc<App>, run: &mut TaskRun, response: CpeResponse) -> Result<Outcome> {
        let device_pk = self.device.id;
        let now = now_millis();
        if let Some((instance, refresh)) = run.follow_up.as_mut() {
            let instance = *instance;
            if let Some(request) = refresh.on_response(app, device_pk, response).await? {
                return Ok(Outcome::Continue(request));
            }
            let Some(expansion) = run.expansion.as_mut() else {
                return Ok(Outcome::Done(match instance {
                    Some(n) => json!({ "instanceNumber": n }),
                    None => json!({}),
                }));
            };
            // One object read: its leaves join the result; then the next object, the named
            // leaves, or the end.
            let paths = parameters::leaf_paths(&app.store, device_pk, &refresh.prefix).await?;
            let path_refs: Vec<&str> = paths.iter().map(String::as_str).collect();
            let stored = parameters::values_of(app.store.db(), device_pk, &path_refs).await?;
            expansion.values.extend(paths.iter().filter_map(|path| {
                let (value, value_type) = stored.get(path)?;
                Some(ParameterValue {
                    name: path.clone(),
                    value: value.clone().unwrap_or_default(),
                    value_type: ValueType::parse(value_type),
                })
            }));
            if let Some(object) = expansion.objects.pop_front() {
                let mut next = Refresh::with_batch(object, self.learnt_batch());
                let request = next.first_request();
                run.follow_up = Some((None, next));
                return Ok(Outcome::Continue(request));
            }
            run.follow_up = None;
            if !expansion.leaves.is_empty() {
                return Ok(Outcome::Continue(AcsRequest::GetParameterValues { names: expansion.leaves.clone() }));
            }
            return Ok(Outcome::Done(json!({ "parameterValues": values_json(&expansion.values) })));
        }
        Ok(match (&run.spec, response) {
            (TaskSpec::GetParameterValues { names, .. }, CpeResponse::GetParameterValues { parameters: values }) => {
                if values.is_empty() {
                    // INTEROP: an empty list for explicit names is a failure without a fault.
                    return Ok(Outcome::Failed {
                        code: "empty_response".into(),
                        message: format!("The CPE returned no values for {}", names.join(", ")),
                        detail: None,
                    });
                }
                let _guard = app.store.write_guard().await;
                parameters::upsert_values(app.store.db(), device_pk, &values, now).await?;
                let mut all = run.expansion.take().map(|e| e.values).unwrap_or_default();
                all.extend(values);
                Outcome::Done(json!({ "parameterValues": values_json(&all) }))
            }
            (TaskSpec::SetParameterValues { .. }, CpeResponse::SetParameterValues { status }) => {
                if let TaskSpec::SetParameterValues { values } = &run.spec {
                    let written: Vec<ParameterValue> = values
                        .iter()
                        .map(|(path, value, value_type)| ParameterValue {
                            name: path.clone(),
                            value: value.clone(),
                            value_type: value_type.clone().unwrap_or_default(),
                        })
                        .collect();
                    let _guard = app.store.write_guard().await;
                    parameters::upsert_values(app.store.db(), device_pk, &written, now).await?;
                    for secret in written.iter().filter(|p| roost_cwmp::is_secret_parameter(&p.name)) {
                        let sealed = app.secrets.seal(secret.value.as_bytes());
                        parameters::remember_secret(app.store.db(), device_pk, &secret.name, sealed).await?;
                    }
                    drop(_guard);
                    let root = match crate::provisioning::adapters::root(&self.device) {
                        "" => String::new(),
                        root => format!("{root}."),
                    };
                    note_connection_request_credentials(app, device_pk, &root, &written).await?;
                }
                Outcome::Done(json!({ "status": status }))
            }
            (TaskSpec::RefreshObject { object }, response @ CpeResponse::GetParameterNames { .. }) => {
                let mut refresh = Refresh::with_batch(object.clone(), self.learnt_batch());
                refresh.started_at = run.task.created_at.min(now);
                let next = refresh.on_response(app, device_pk, response).await?;
                match next {
                    Some(request) => {
                        run.follow_up = Some((None, refresh));
                        Outcome::Continue(request)
                    }
                    None => Outcome::Done(json!({})),
                }
            }
            (TaskSpec::AddObject { object }, CpeResponse::AddObject { instance_number, status }) => {
                if status > 1 || instance_number == 0 {
                    return Ok(Outcome::Failed {
                        code: "invalid_response".into(),
                        message: format!(
                            "AddObject answered InstanceNumber {instance_number} with Status {status}: no object was created"
                        ),
                        detail: None,
                    });
                }
                let mut refresh = Refresh::with_batch(format!("{object}{instance_number}."), self.learnt_batch());
                let request = refresh.first_request();
                run.follow_up = Some((Some(instance_number), refresh));
                Outcome::Continue(request)
            }
            (TaskSpec::DeleteObject { object }, CpeResponse::DeleteObject { status }) => {
                if status > 1 {
                    return Ok(Outcome::Failed {
                        code: "invalid_response".into(),
                        message: format!("DeleteObject answered Status {status}"),
                        detail: None,
                    });
                }
                let _guard = app.store.write_guard().await;
                parameters::delete_subtree(app.store.db(), device_pk, object).await?;
                Outcome::Done(json!({ "status": status }))
            }
            (TaskSpec::Reboot, CpeResponse::Reboot)
            | (TaskSpec::ScheduleInform { .. }, CpeResponse::ScheduleInform)
            | (TaskSpec::SetParameterAttributes { .. }, CpeResponse::SetParameterAttributes) => {
                Outcome::Done(json!({}))
            }
            (TaskSpec::FactoryReset, CpeResponse::FactoryReset) => {
                // What Roost configured is gone, and some agents come back with `1 BOOT` only.
                devices::mark_reset(&app.store, device_pk).await?;
                Outcome::Done(json!({}))
            }
            (TaskSpec::Download(_), CpeResponse::Download { status, start_time, complete_time })
            | (TaskSpec::Upload(_), CpeResponse::Upload { status, start_time, complete_time }) => match status {
                0 => Outcome::Done(json!({ "startTime": start_time, "completeTime": complete_time })),
                _ => Outcome::Transferring,
            },
            (
                TaskSpec::GetParameterAttributes { .. },
                CpeResponse::GetParameterAttributes { parameters: attributes },
            ) => {
                let attributes: Vec<Value> = attributes
                    .iter()
                    .map(|a| json!({ "name": a.name, "notification": a.notification, "accessList": a.access_list }))
                    .collect();
                Outcome::Done(json!({ "parameterAttributes": attributes }))
            }
            (_, other) => Outcome::Failed {
                code: "wrong_response".into(),
                message: format!("Unexpected {}Response for task {}", other.method_name(), run.task.name),
                detail: None,
            },
        })
    }

    async fn record_fault(&self, app: &App, channel: &str, code: &str, message: &str) -> Result<()> {
        tracing::info!(device = %self.device.device_id, channel, code, message, "device fault");
        faults::record(&app.store, self.device.id, self.device.org_id, channel, code, message, None).await
    }
}

/// Closes the transfer task a TransferComplete reports on. Idempotent: the CPE re-sends until it
/// gets the response, and a task already closed stays as it is.
pub async fn transfer_complete(app: &Arc<App>, device: &Device, complete: &TransferComplete) -> Result<()> {
    let Some(task) = tasks::by_command_key(&app.store, device.id, &complete.command_key).await? else {
        if let Some(preset) = complete.command_key.strip_prefix("roost-preset-")
            && complete.fault.code != 0
        {
            let message = format!("The download preset {preset} failed: {}", complete.fault.string);
            let code = complete.fault.code.to_string();
            faults::record(&app.store, device.id, device.org_id, &format!("preset:{preset}"), &code, &message, None)
                .await?;
            return Ok(());
        }
        tracing::info!(device = %device.device_id, command_key = %complete.command_key, "TransferComplete for no known task");
        return Ok(());
    };
    if task.status != tasks::PENDING {
        return Ok(());
    }
    if complete.fault.code == 0 {
        let result = json!({ "startTime": complete.start_time, "completeTime": complete.complete_time });
        tasks::mark_done(&app.store, task.id, Some(&result)).await?;
    } else {
        let message = if complete.fault.string.is_empty() {
            format!("Transfer failed with fault {}", complete.fault.code)
        } else {
            complete.fault.string.clone()
        };
        tasks::mark_fault(&app.store, &task, &complete.fault.code.to_string(), &message, None).await?;
    }
    app.task_finished(task.id);
    Ok(())
}

/// The SetParameterValues that gives a device its own CWMP credential. The credential is stored
/// before it is sent, so a device that took it but whose answer was lost can still authenticate;
/// a device asked again (its earlier answer never came) is sent the same one.
async fn own_credential_request(app: &App, device: &Device, root: &str) -> Result<AcsRequest> {
    use crate::store::credentials;
    let (username, password) = match credentials::own_of(&app.store, &device.device_id).await? {
        Some(existing) => {
            let password = app.secrets.open(&existing.password)?;
            (existing.username, String::from_utf8(password).unwrap_or_default())
        }
        None => {
            let username = format!("cpe-{}", crate::api::auth::random_token("").get(..20).unwrap_or_default());
            let password = crate::api::auth::random_token("").get(..24).unwrap_or_default().to_owned();
            let scope = credentials::CredentialScope { device_id: Some(&device.device_id), ..Default::default() };
            credentials::create(&app.store, scope, &username, app.secrets.seal(password.as_bytes())).await?;
            (username, password)
        }
    };
    let value = |name: &str, value: String| ParameterValue {
        name: format!("{root}ManagementServer.{name}"),
        value,
        value_type: ValueType::String,
    };
    Ok(AcsRequest::SetParameterValues {
        values: vec![value("Username", username), value("Password", password)],
        parameter_key: String::new(),
    })
}

/// Keeps the connection-request credentials just written to the device (by a task or a
/// provision), so that Roost can wake it: `root` is `InternetGatewayDevice.` or `Device.`.
pub(crate) async fn note_connection_request_credentials(
    app: &App,
    device_pk: i64,
    root: &str,
    written: &[ParameterValue],
) -> Result<()> {
    if root.is_empty() {
        return Ok(());
    }
    let find = |name: &str| {
        let path = format!("{root}ManagementServer.{name}");
        written.iter().find(|p| p.name == path).map(|p| p.value.clone())
    };
    let (username, password) = (find("ConnectionRequestUsername"), find("ConnectionRequestPassword"));
    if username.is_none() && password.is_none() {
        return Ok(());
    }
    let Some(device) = devices::by_pk(&app.store, device_pk).await? else { return Ok(()) };
    let username = match username {
        Some(username) => username,
        None => {
            let path = format!("{root}ManagementServer.ConnectionRequestUsername");
            let stored = parameters::values_of(app.store.db(), device_pk, &[path.as_str()]).await?;
            stored.get(&path).and_then(|(v, _)| v.clone()).unwrap_or(device.connection_request_username)
        }
    };
    let sealed = match password {
        Some(password) => app.secrets.seal(password.as_bytes()),
        None => device.connection_request_password.unwrap_or_else(|| app.secrets.seal(b"")),
    };
    devices::set_connection_request_credentials(&app.store, device_pk, &username, sealed).await
}

fn values_json(values: &[ParameterValue]) -> Vec<Value> {
    values.iter().map(|p| json!([p.name, p.value, p.value_type.as_str()])).collect()
}

pub(crate) fn spv_fault_detail(fault: &Fault) -> Option<Value> {
    if fault.set_parameter_values_faults.is_empty() {
        return None;
    }
    let entries: Vec<Value> = fault
        .set_parameter_values_faults
        .iter()
        .map(|f| json!({ "parameterName": f.parameter_name, "code": f.code, "message": f.string }))
        .collect();
    Some(json!({ "setParameterValuesFaults": entries }))
}

pub(crate) fn describe_unanswered(reason: &Unanswered) -> String {
    match reason {
        Unanswered::EmptyPost => {
            "The CPE sent an empty POST instead of answering (it could not run the request)".into()
        }
        Unanswered::WrongResponse { got } => format!("The CPE answered with {got}Response"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unconfigured_device_is_bootstrapped_whatever_it_sends() {
        let periodic = vec!["2 PERIODIC".to_owned()];
        assert_eq!(selection_events(&periodic, false), vec!["2 PERIODIC", "0 BOOTSTRAP"]);
        assert_eq!(selection_events(&periodic, true), vec!["2 PERIODIC"]);
        let bootstrap = vec!["0 bootstrap".to_owned(), "1 BOOT".to_owned()];
        assert_eq!(selection_events(&bootstrap, false), bootstrap, "never twice");
    }

    #[test]
    fn a_batch_that_kills_the_session_is_halved_down_to_one_name() {
        let mut batch = 256;
        let mut failures = 0;
        let mut sent = 256;
        let mut deaths = 0;
        // A CPE that dies on 32 names or more.
        while sent >= 32 {
            let outcome = after_discovery_death(Step::Values(sent), batch, failures);
            let AfterDeath::Retry { batch: b, failures: f } = outcome else {
                unreachable!("gave up at {sent} names: {outcome:?}")
            };
            (batch, failures) = (b, f);
            sent = usize::try_from(batch).unwrap_or(1);
            deaths += 1;
        }
        assert_eq!((sent, deaths), (16, 4));
        assert_eq!(
            after_discovery_death(Step::Values(2), 2, 5),
            AfterDeath::Retry { batch: 1, failures: 6 },
            "down to one name"
        );
    }

    #[test]
    fn discovery_that_keeps_dying_is_given_up() {
        assert_eq!(after_discovery_death(Step::Values(1), 1, 1), AfterDeath::Retry { batch: 1, failures: 2 });
        // The short last batch of a tree dying is not the batch size's fault.
        assert_eq!(after_discovery_death(Step::Values(3), 256, 0), AfterDeath::Retry { batch: 256, failures: 1 });
        assert_eq!(after_discovery_death(Step::Values(1), 1, 2), AfterDeath::GiveUp);
        assert_eq!(after_discovery_death(Step::Names, 0, 1), AfterDeath::Retry { batch: 0, failures: 2 });
        assert_eq!(after_discovery_death(Step::Names, 0, 2), AfterDeath::GiveUp);
        assert_eq!(after_discovery_death(Step::Values(64), 64, MAX_DISCOVERY_DEATHS - 1), AfterDeath::GiveUp);
    }
}
