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
use roost_cwmp::{AcsRequest, CpeResponse, DataModel, ParameterValue, ValueType};

use crate::answers::refresh::{Refresh, Step};
use crate::answers::{self, Answer, describe_unanswered, unanswered_code};
use crate::app::App;
use crate::fault_code::FaultCode;
use crate::provisioning::engine::Provisioning;
use crate::secrets::Secrets;
use crate::store::devices::Device;
use crate::store::{Store, devices, faults, now_millis};

mod task;

use task::TaskRun;
pub use task::transfer_complete;

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

/// A kind of work a session does once the CPE has nothing more to say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WorkKind {
    /// Give the device its own CWMP credential.
    OwnCredential,
    /// List and read the device's whole tree.
    Discovery,
    /// The next queued task.
    Task,
    /// Run the presets that select the device.
    Provisioning,
}

/// Where a session stands, as far as choosing its next work goes.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Progress {
    /// The device's data model is known (its Inform showed a root).
    pub(crate) model_known: bool,
    /// The session was opened with a shared onboarding credential, not yet replaced.
    pub(crate) own_credential_due: bool,
    /// Discovery was started in this session.
    pub(crate) discovery_attempted: bool,
    /// The tree was discovered in an earlier session.
    pub(crate) discovered: bool,
    /// Sessions in a row that died during discovery.
    pub(crate) discovery_failures: i64,
    /// The task queue may hold a task.
    pub(crate) may_have_tasks: bool,
    pub(crate) provisioning_attempted: bool,
}

/// The work a session tries next, in order: the first that has something to send goes.
/// The device's own credential first (a shared one must stop opening its sessions); then
/// discovery, unless it has killed a session before — queued tasks must not wait behind a
/// discovery that may kill this one too; then the queued tasks, in the order they were queued;
/// then provisioning, once per session.
pub(crate) fn work_order(progress: Progress) -> impl Iterator<Item = WorkKind> {
    let discovery_due = progress.model_known
        && !progress.discovery_attempted
        && !progress.discovered
        && progress.discovery_failures < MAX_DISCOVERY_DEATHS;
    let tasks_first = progress.discovery_failures > 0;
    // A fixed array, not a Vec: this runs in every session, the periodic no-op included.
    [
        (WorkKind::OwnCredential, progress.own_credential_due && progress.model_known),
        (WorkKind::Discovery, discovery_due && !tasks_first),
        (WorkKind::Task, progress.may_have_tasks),
        (WorkKind::Discovery, discovery_due && tasks_first),
        (WorkKind::Provisioning, !progress.provisioning_attempted),
    ]
    .into_iter()
    .filter_map(|(kind, due)| due.then_some(kind))
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
                        self.record_fault(&app.store, "credentials", FaultCode::Cwmp(fault.code), &message).await?;
                    }
                    _ => {}
                }
                Ok(None)
            }
            Work::Provisioning(mut provisioning) => match provisioning.next(&app.provisioning, answer).await? {
                Some(request) => {
                    self.work = Some(Work::Provisioning(provisioning));
                    Ok(Some(request))
                }
                None => {
                    self.provisioning_ended(&app.store, &provisioning).await?;
                    Ok(None)
                }
            },
            Work::Discovery(mut refresh) => match answer {
                Answer::Response(response) => match self.refreshed(app, &mut refresh, response).await? {
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
                    self.record_fault(&app.store, "discovery", FaultCode::Cwmp(fault.code), &fault.string).await?;
                    match refresh.next_batch(app.config.cwmp.discovery_batch) {
                        Some(request) if refresh.names_done => {
                            self.work = Some(Work::Discovery(refresh));
                            Ok(Some(request))
                        }
                        _ => Ok(None),
                    }
                }
                Answer::Unanswered(reason) => {
                    self.record_fault(&app.store, "discovery", unanswered_code(&reason), &describe_unanswered(&reason))
                        .await?;
                    Ok(None)
                }
                Answer::Nothing => Ok(None),
            },
            Work::Task(run) => self.continue_task(app, run, answer).await,
        }
    }

    fn progress(&self) -> Progress {
        Progress {
            model_known: self.device.model().is_some(),
            own_credential_due: self.issue_own_credential,
            discovery_attempted: self.discovery_attempted,
            discovered: self.device.discovered_at.is_some(),
            discovery_failures: self.device.discovery_failures,
            may_have_tasks: self.may_have_tasks,
            provisioning_attempted: self.provisioning_attempted,
        }
    }

    /// Starts the first work of [`work_order`] that has something to do.
    async fn pick_work(&mut self, app: &Arc<App>) -> Result<Option<(Work, Option<AcsRequest>)>> {
        let model = self.device.model();
        for kind in work_order(self.progress()) {
            match (kind, model) {
                (WorkKind::OwnCredential, Some(model)) => {
                    self.issue_own_credential = false;
                    let request = own_credential_request(&app.store, &app.secrets, &self.device, model).await?;
                    return Ok(Some((Work::OwnCredential, Some(request))));
                }
                (WorkKind::Discovery, _) => return Ok(Some(self.start_discovery(model))),
                (WorkKind::Task, _) => {
                    if let Some(picked) = self.next_task(app).await? {
                        return Ok(Some(picked));
                    }
                }
                (WorkKind::Provisioning, _) => {
                    self.provisioning_attempted = true;
                    // Any call sent before now (discovery, a task) may have written to the tree
                    // since the Inform returned its revision.
                    let tree_rev = (self.rpcs == 0).then_some(self.device.tree_rev);
                    let events = selection_events(&self.events, self.device.is_configured());
                    if let Some(mut provisioning) =
                        Provisioning::start(&app.provisioning, &self.device, &events, self.started_at, tree_rev).await?
                    {
                        let request = provisioning.next(&app.provisioning, Answer::Nothing).await?;
                        if request.is_none() {
                            self.provisioning_ended(&app.store, &provisioning).await?;
                        }
                        return Ok(Some((Work::Provisioning(Box::new(provisioning)), request)));
                    }
                }
                (WorkKind::OwnCredential, None) => {}
            }
        }
        Ok(None)
    }

    /// The GetParameterValues batch this device's firmware survives (0: the default).
    fn learnt_batch(&self) -> usize {
        usize::try_from(self.device.discovery_batch).unwrap_or(0)
    }

    fn start_discovery(&mut self, model: Option<DataModel>) -> (Work, Option<AcsRequest>) {
        self.discovery_attempted = true;
        let root = model.map_or("", DataModel::root);
        let mut refresh = Refresh::new(root.to_owned(), self.learnt_batch(), now_millis());
        let request = refresh.first_request();
        (Work::Discovery(refresh), Some(request))
    }

    /// Feeds an answer to a refresh and writes what it changed; the refresh's next request, if
    /// any.
    async fn refreshed(&self, app: &App, refresh: &mut Refresh, response: CpeResponse) -> Result<Option<AcsRequest>> {
        let (writes, next) = refresh.on_response(response, app.config.cwmp.discovery_batch, now_millis());
        answers::apply(&app.store, &app.secrets, self.device.id, writes).await?;
        Ok(next)
    }

    /// A device whose provisioning settled is configured: `0 BOOTSTRAP` presets stop applying
    /// to its sessions until it bootstraps again or Roost resets it.
    async fn provisioning_ended(&mut self, store: &Store, provisioning: &Provisioning) -> Result<()> {
        if provisioning.settled() && !self.device.is_configured() {
            let now = now_millis();
            devices::mark_configured(store, self.device.id, now).await?;
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
                self.record_fault(&app.store, "discovery", FaultCode::DiscoveryAbandoned, &message).await?;
                devices::set_discovery_state(&app.store, device.id, device.discovery_batch, MAX_DISCOVERY_DEATHS).await
            }
        }
    }

    async fn record_fault(&self, store: &Store, channel: &str, code: FaultCode, message: &str) -> Result<()> {
        tracing::info!(device = %self.device.device_id, channel, %code, message, "device fault");
        faults::record(store, self.device.id, channel, code, message, None).await
    }
}

/// The SetParameterValues that gives a device its own CWMP credential. The credential is stored
/// before it is sent, so a device that took it but whose answer was lost can still authenticate;
/// a device asked again (its earlier answer never came) is sent the same one.
async fn own_credential_request(
    store: &Store,
    secrets: &Secrets,
    device: &Device,
    model: DataModel,
) -> Result<AcsRequest> {
    use crate::store::credentials;
    let (username, password) = match credentials::own_of(store, &device.device_id).await? {
        Some(existing) => {
            let password = secrets.open(&existing.password)?;
            (existing.username, String::from_utf8(password).unwrap_or_default())
        }
        None => {
            let username = format!("cpe-{}", crate::secrets::random_token("").get(..20).unwrap_or_default());
            let password = crate::secrets::random_token("").get(..24).unwrap_or_default().to_owned();
            let scope = credentials::CredentialScope { device_id: Some(&device.device_id), ..Default::default() };
            credentials::create(store, scope, &username, secrets.seal(password.as_bytes())).await?;
            (username, password)
        }
    };
    let value = |name: &str, value: String| ParameterValue {
        name: format!("{}ManagementServer.{name}", model.root()),
        value,
        value_type: ValueType::String,
    };
    Ok(AcsRequest::SetParameterValues {
        values: vec![value("Username", username), value("Password", password)],
        parameter_key: String::new(),
    })
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
    fn a_session_gives_the_own_credential_then_discovers_then_runs_tasks_then_provisions() {
        use WorkKind::*;
        let new = Progress { model_known: true, own_credential_due: true, may_have_tasks: true, ..Progress::default() };
        assert_eq!(work_order(new).collect::<Vec<_>>(), vec![OwnCredential, Discovery, Task, Provisioning]);
        let discovered = Progress { own_credential_due: false, discovered: true, ..new };
        assert_eq!(work_order(discovered).collect::<Vec<_>>(), vec![Task, Provisioning]);
        let nothing_queued = Progress { may_have_tasks: false, ..discovered };
        assert_eq!(work_order(nothing_queued).collect::<Vec<_>>(), vec![Provisioning]);
        let done = Progress { provisioning_attempted: true, ..nothing_queued };
        assert_eq!(work_order(done).collect::<Vec<_>>(), vec![]);
    }

    #[test]
    fn tasks_go_before_a_discovery_that_killed_a_session_and_a_given_up_one_is_not_tried() {
        use WorkKind::*;
        let killed_once =
            Progress { model_known: true, discovery_failures: 1, may_have_tasks: true, ..Progress::default() };
        assert_eq!(work_order(killed_once).collect::<Vec<_>>(), vec![Task, Discovery, Provisioning]);
        let given_up = Progress { discovery_failures: MAX_DISCOVERY_DEATHS, ..killed_once };
        assert_eq!(work_order(given_up).collect::<Vec<_>>(), vec![Task, Provisioning]);
        let tried_this_session = Progress { discovery_attempted: true, discovery_failures: 0, ..killed_once };
        assert_eq!(work_order(tried_this_session).collect::<Vec<_>>(), vec![Task, Provisioning]);
    }

    #[test]
    fn without_a_known_data_model_there_is_neither_credential_nor_discovery() {
        // Neither the credential's parameter names nor the tree's root are known.
        let unknown = Progress { own_credential_due: true, may_have_tasks: true, ..Progress::default() };
        assert_eq!(work_order(unknown).collect::<Vec<_>>(), vec![WorkKind::Task, WorkKind::Provisioning]);
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
