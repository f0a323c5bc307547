//! One simulated CPE: its state, the task that runs its sessions, and the handle tests use.
//!
//! Each device is one tokio task (no thread) that sleeps until something is due: a periodic
//! Inform, a retry after a failed session, a connection request, a reboot finishing, a
//! transfer finishing. Sessions of one device never overlap: whatever arrives during a session
//! (a connection request, say) is queued and served by one more session afterwards.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rand::Rng;
use roost_cwmp::{DeviceIdStruct, EventStruct, TransferComplete, ValueType};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::SimError;
use crate::auth::Challenge;
use crate::connection_request::CrGuard;
use crate::fleet::FleetShared;
use crate::inform::{self, Prepared, event, push_event};
use crate::rpc::{AfterSession, Attributes, CpeState};
use crate::session::{self, SessionReport, SessionSettings};
use crate::tree::Node;
use crate::{diagnostics, transfer};

/// A TransferComplete waiting for the ACS's acknowledgement, with the `M` event that goes with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PendingTransfer {
    pub complete: TransferComplete,
    /// `M Download` or `M Upload`.
    pub method_event: &'static str,
}

/// Everything about a device that changes, behind one lock that is never held across an await.
#[derive(Debug)]
pub(crate) struct DeviceState {
    pub cpe: CpeState,
    pub identity: DeviceIdStruct,
    /// Values written over the model when the device is created and after a factory reset:
    /// what makes this unit distinct from the others of its model.
    factory: Vec<(String, String, ValueType)>,
    pub pending_events: Vec<EventStruct>,
    pub pending_transfers: Vec<PendingTransfer>,
    pub retry_count: u32,
    /// The ACS's last Digest challenge, reused with a growing nonce count.
    pub challenge: Option<Challenge>,
    /// Rebooting: no sessions, connection requests refused.
    pub offline: bool,
    pub cr: CrGuard,
    /// The STUN client's view, behind NAT ([`crate::stun`]).
    pub stun: crate::stun::StunStatus,
    /// Used when the tree has no `ManagementServer.URL`.
    fallback_acs_url: String,
}

impl DeviceState {
    /// Brings the WAN connections that were up in the model down, or back up.
    fn set_wan(&mut self, up: bool) {
        let paths: Vec<String> = self.cpe.tree.walk(self.cpe.tree.root()).map(|(path, _)| path.to_owned()).collect();
        let tree = &self.cpe.tree;
        let statuses =
            transfer::wan_statuses(paths.iter().map(String::as_str), |path| tree.get(path).map(|(v, _)| v.to_owned()));
        for (path, up_value, down_value) in statuses {
            let as_modelled =
                self.cpe.tree.model().node(&path).filter(|n| !n.object).map(|n| n.value.trim().to_owned());
            if as_modelled.as_deref() != Some(up_value) {
                continue;
            }
            self.cpe.tree.set_value(&path, if up { up_value } else { down_value });
        }
    }

    fn path(&self, relative: &str) -> String {
        format!("{}{relative}", self.cpe.tree.root())
    }

    fn apply_factory(&mut self) {
        for (path, value, value_type) in &self.factory {
            if !self.cpe.tree.set_value(path, value) {
                self.cpe.tree.insert(path.clone(), Node::parameter(value.clone(), value_type.clone(), false));
            }
        }
    }

    fn factory_reset(&mut self) {
        self.cpe.factory_reset();
        self.apply_factory();
        self.pending_events = vec![event("0 BOOTSTRAP", ""), event("1 BOOT", "")];
        self.pending_transfers.clear();
        self.challenge = None;
        self.retry_count = 0;
    }

    /// Takes what the next session needs; pending TransferCompletes re-announce themselves.
    pub(crate) fn prepare_inform(&mut self) -> Prepared {
        for transfer in &self.pending_transfers {
            push_event(&mut self.pending_events, event("7 TRANSFER COMPLETE", ""));
            push_event(&mut self.pending_events, event(transfer.method_event, &transfer.complete.command_key));
        }
        let mut events = self.pending_events.clone();
        if events.is_empty() {
            events.push(event("2 PERIODIC", ""));
        }
        let (inform, changed) =
            inform::build(&self.cpe, &self.identity, events, self.retry_count, session::now_string());
        let value = |p: &str| self.cpe.value(&self.path(p)).map(|(v, _)| v).unwrap_or_default();
        let url = value("ManagementServer.URL");
        Prepared {
            inform,
            acs_url: if url.trim().is_empty() { self.fallback_acs_url.clone() } else { url },
            username: value("ManagementServer.Username"),
            password: value("ManagementServer.Password"),
            challenge: self.challenge.clone(),
            transfers: self.pending_transfers.iter().map(|t| t.complete.clone()).collect(),
            changed,
        }
    }

    /// The InformResponse arrived: the events it carried are delivered.
    pub(crate) fn inform_delivered(&mut self, events: &[EventStruct], changed: &[String]) {
        self.pending_events.retain(|e| !events.contains(e));
        self.cpe.clear_changed(changed);
    }

    pub(crate) fn transfer_acknowledged(&mut self, complete: &TransferComplete) {
        self.pending_transfers.retain(|t| t.complete != *complete);
    }

    pub(crate) fn finish_session(&mut self, ok: bool) {
        if ok {
            self.retry_count = 0;
        } else {
            self.retry_count = self.retry_count.saturating_add(1);
        }
    }

    /// `ManagementServer.PeriodicInformInterval` when periodic informs are enabled.
    fn periodic_interval(&self) -> Option<Duration> {
        let enabled = self
            .cpe
            .value(&self.path("ManagementServer.PeriodicInformEnable"))
            .is_some_and(|(v, _)| matches!(v.trim(), "1" | "true"));
        let seconds = self
            .cpe
            .value(&self.path("ManagementServer.PeriodicInformInterval"))
            .and_then(|(v, _)| v.trim().parse::<u64>().ok())
            .unwrap_or(0);
        (enabled && seconds > 0).then(|| Duration::from_secs(seconds))
    }
}

/// Requests to a device's task.
pub(crate) enum Command {
    /// Run a session with these events added (a connection request, inform_now, …).
    Inform {
        events: Vec<EventStruct>,
        reply: Option<oneshot::Sender<Arc<SessionReport>>>,
    },
    /// The reboot (or factory reset) delay is over.
    Booted {
        events: Vec<EventStruct>,
        factory_reset: bool,
    },
    PowerCycle,
    TransferDone {
        transfer: PendingTransfer,
        /// A firmware image installed: the device reboots into it.
        installed: Option<transfer::Install>,
    },
    DiagnosticsDone {
        object: String,
        /// What a speed test really moved (`Err`: the state its failure is reported with).
        measured: Option<Result<transfer::Measured, String>>,
    },
}

/// The parts of a device shared between its task, its handles and the connection-request
/// listener.
pub(crate) struct DeviceShared {
    pub index: usize,
    pub identity: DeviceIdStruct,
    pub connection_request_url: String,
    pub state: Mutex<DeviceState>,
    pub commands: mpsc::UnboundedSender<Command>,
    history: Mutex<VecDeque<Arc<SessionReport>>>,
    completed: watch::Sender<u64>,
}

impl DeviceShared {
    pub(crate) fn lock(&self) -> MutexGuard<'_, DeviceState> {
        match self.state.lock() {
            Ok(guard) => guard,
            // A panic elsewhere must not take the whole fleet down with it.
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    fn publish(&self, report: Arc<SessionReport>, keep: usize) {
        {
            let mut history = match self.history.lock() {
                Ok(h) => h,
                Err(poisoned) => poisoned.into_inner(),
            };
            history.push_back(report.clone());
            while history.len() > keep.max(1) {
                history.pop_front();
            }
        }
        self.completed.send_replace(report.seq + 1);
    }

    fn find(&self, since: u64, predicate: &dyn Fn(&SessionReport) -> bool) -> Option<Arc<SessionReport>> {
        let history = match self.history.lock() {
            Ok(h) => h,
            Err(poisoned) => poisoned.into_inner(),
        };
        history.iter().find(|r| r.seq >= since && predicate(r)).cloned()
    }
}

/// What creating a device needs beyond the fleet's settings.
pub(crate) struct DeviceSpec {
    pub index: usize,
    pub identity: DeviceIdStruct,
    pub connection_request_url: String,
    pub factory: Vec<(String, String, ValueType)>,
    pub first_events: Vec<EventStruct>,
    pub acs_url: String,
}

pub(crate) fn create(spec: DeviceSpec, cpe: CpeState) -> (Arc<DeviceShared>, mpsc::UnboundedReceiver<Command>) {
    let (commands, receiver) = mpsc::unbounded_channel();
    let mut state = DeviceState {
        cpe,
        identity: spec.identity.clone(),
        factory: spec.factory,
        pending_events: spec.first_events,
        pending_transfers: Vec::new(),
        retry_count: 0,
        challenge: None,
        offline: false,
        cr: CrGuard::default(),
        stun: crate::stun::StunStatus::default(),
        fallback_acs_url: spec.acs_url,
    };
    state.apply_factory();
    let shared = Arc::new(DeviceShared {
        index: spec.index,
        identity: spec.identity,
        connection_request_url: spec.connection_request_url,
        state: Mutex::new(state),
        commands,
        history: Mutex::new(VecDeque::new()),
        completed: watch::Sender::new(0),
    });
    (shared, receiver)
}

/// When a device's first session happens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartMode {
    /// Inform as soon as the fleet starts, as a device does when powered on.
    Immediate,
    /// Each device waits a random time up to this long first, so a large fleet does not
    /// arrive at the ACS all at once.
    Spread(Duration),
    /// Never inform on its own until told to ([`DeviceHandle::inform_now`]), woken by a
    /// connection request, or due for a periodic Inform.
    Manual,
}

/// The device's task.
pub(crate) struct Actor {
    pub shared: Arc<DeviceShared>,
    pub fleet: Arc<FleetShared>,
    pub commands: mpsc::UnboundedReceiver<Command>,
    pub start: StartMode,
}

struct Running {
    shared: Arc<DeviceShared>,
    fleet: Arc<FleetShared>,
    jobs: JoinSet<Command>,
    waiters: Vec<oneshot::Sender<Arc<SessionReport>>>,
    want_session: bool,
    next_seq: u64,
    boot_at: Option<Instant>,
    retry_at: Option<Instant>,
    next_periodic: Option<Instant>,
    periodic: Option<Duration>,
    /// The STUN client behind the fleet's NAT, with the settings it runs with.
    stun: Option<crate::stun::StunSettings>,
    stun_task: JoinSet<()>,
}

impl Actor {
    pub(crate) async fn run(mut self) {
        let mut running = Running {
            shared: self.shared,
            fleet: self.fleet,
            jobs: JoinSet::new(),
            waiters: Vec::new(),
            want_session: false,
            next_seq: 0,
            boot_at: None,
            retry_at: None,
            next_periodic: None,
            periodic: None,
            stun: None,
            stun_task: JoinSet::new(),
        };
        let now = Instant::now();
        match self.start {
            StartMode::Immediate => running.want_session = true,
            StartMode::Spread(window) => {
                let offset = window.mul_f64(rand::rng().random_range(0.0..1.0));
                running.boot_at = Some(now + offset);
            }
            StartMode::Manual => {}
        }
        running.refresh_periodic(running.boot_at.unwrap_or(now));
        loop {
            if running.want_session && !running.shared.lock().offline {
                running.want_session = false;
                running.session().await;
                continue;
            }
            tokio::select! {
                command = self.commands.recv() => match command {
                    Some(command) => running.on_command(command),
                    None => return,
                },
                Some(done) = running.jobs.join_next(), if !running.jobs.is_empty() => {
                    if let Ok(command) = done {
                        running.on_command(command);
                    }
                }
                () = sleep_until(running.boot_at), if running.boot_at.is_some() => {
                    running.boot_at = None;
                    running.want_session = true;
                }
                () = sleep_until(running.retry_at), if running.retry_at.is_some() => {
                    running.retry_at = None;
                    running.want_session = true;
                }
                () = sleep_until(running.next_periodic), if running.next_periodic.is_some() => {
                    push_event(&mut running.shared.lock().pending_events, event("2 PERIODIC", ""));
                    running.want_session = true;
                    running.next_periodic = running.periodic.map(|p| Instant::now() + running.jittered(p));
                }
            }
            while let Ok(command) = self.commands.try_recv() {
                running.on_command(command);
            }
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

impl Running {
    fn jittered(&self, period: Duration) -> Duration {
        let jitter = self.fleet.config.jitter.clamp(0.0, 0.9);
        if jitter == 0.0 {
            return period;
        }
        period.mul_f64(1.0 + rand::rng().random_range(-jitter..=jitter))
    }

    /// Follows `PeriodicInformEnable`/`PeriodicInformInterval`, which the ACS may change.
    fn refresh_periodic(&mut self, anchor: Instant) {
        let interval = self.shared.lock().periodic_interval();
        if interval != self.periodic || (interval.is_some() && self.next_periodic.is_none()) {
            self.periodic = interval;
            self.next_periodic = interval.map(|p| anchor + self.jittered(p));
        }
    }

    fn on_command(&mut self, command: Command) {
        match command {
            Command::Inform { events, reply } => {
                let mut state = self.shared.lock();
                for e in events {
                    push_event(&mut state.pending_events, e);
                }
                drop(state);
                self.waiters.extend(reply);
                self.want_session = true;
            }
            Command::Booted { events, factory_reset } => {
                let mut state = self.shared.lock();
                state.offline = false;
                if factory_reset {
                    state.factory_reset();
                } else {
                    state.cpe.reboot();
                }
                for e in events {
                    push_event(&mut state.pending_events, e);
                }
                drop(state);
                // A reboot restarts the periodic timer.
                self.periodic = None;
                self.next_periodic = None;
                self.refresh_periodic(Instant::now());
                self.want_session = true;
            }
            Command::PowerCycle => self.go_offline(vec![event("1 BOOT", "")], false),
            Command::TransferDone { transfer, installed } => {
                let mut state = self.shared.lock();
                push_event(&mut state.pending_events, event("7 TRANSFER COMPLETE", ""));
                push_event(&mut state.pending_events, event(transfer.method_event, &transfer.complete.command_key));
                state.pending_transfers.push(transfer);
                if let Some(install) = &installed {
                    if let Some(version) = &install.version {
                        let path = format!("{}DeviceInfo.SoftwareVersion", state.cpe.tree.root());
                        state.cpe.tree.set_value(&path, version);
                    }
                    state.set_wan(!install.wan_down);
                }
                drop(state);
                if installed.is_some() {
                    // New firmware takes effect by rebooting into it.
                    self.go_offline(vec![event("1 BOOT", "")], false);
                } else {
                    self.want_session = true;
                }
            }
            Command::DiagnosticsDone { object, measured } => {
                let mut state = self.shared.lock();
                diagnostics::complete(&mut state.cpe, &object, measured.as_ref());
                if self.fleet.quirks.silent_diagnostics {
                    return;
                }
                push_event(&mut state.pending_events, event("8 DIAGNOSTICS COMPLETE", ""));
                drop(state);
                self.want_session = true;
            }
        }
    }

    fn go_offline(&mut self, events: Vec<EventStruct>, factory_reset: bool) {
        self.shared.lock().offline = true;
        let delay = self.fleet.config.reboot_delay;
        self.jobs.spawn(async move {
            tokio::time::sleep(delay).await;
            Command::Booted { events, factory_reset }
        });
    }

    async fn session(&mut self) {
        let permit = self.fleet.sessions.clone().acquire_owned().await.ok();
        let waiters = std::mem::take(&mut self.waiters);
        let seq = self.next_seq;
        self.next_seq += 1;
        let settings = SessionSettings {
            version: self.fleet.config.cwmp_version,
            http_timeout: self.fleet.config.http_timeout,
            quirks: self.fleet.quirks.clone(),
            ask_for_challenge: self.fleet.quirks.challenge_with_empty_post
                && (self.fleet.config.acs_username.is_some() || self.fleet.config.acs_password.is_some()),
            tls: self.fleet.config.tls.clone(),
        };
        let (report, after) = session::run(&settings, &self.shared.state, self.shared.index, seq).await;
        drop(permit);
        if let Some(error) = &report.error {
            tracing::debug!(serial = %report.serial_number, %error, "session failed");
        }
        let report = Arc::new(report);
        self.fleet.stats.record(&report);
        self.shared.publish(report.clone(), self.fleet.config.history);
        for waiter in waiters {
            let _ = waiter.send(report.clone());
        }
        if report.is_ok() {
            self.retry_at = None;
        } else if self.fleet.config.retry {
            let retries = self.shared.lock().retry_count;
            self.retry_at = Some(Instant::now() + backoff(retries, self.fleet.config.retry_min_wait));
        }
        for work in after {
            self.after_session(work);
        }
        self.refresh_periodic(Instant::now());
        self.refresh_stun();
    }

    /// Behind NAT, (re)starts the STUN client when the ACS changed its settings, and stops it
    /// when the ACS turned it off.
    fn refresh_stun(&mut self) {
        if !self.fleet.config.nat {
            return;
        }
        let settings = {
            let state = self.shared.lock();
            let root = state.cpe.tree.root().to_owned();
            crate::stun::StunSettings::read(|name| {
                state.cpe.value(&format!("{root}ManagementServer.{name}")).map(|(v, _)| v).unwrap_or_default()
            })
        };
        if settings == self.stun {
            return;
        }
        self.stun_task.abort_all();
        self.shared.lock().stun.bound = false;
        if let Some(settings) = &settings {
            self.stun_task.spawn(crate::stun::run(self.shared.clone(), settings.clone()));
        }
        self.stun = settings;
    }

    fn after_session(&mut self, work: AfterSession) {
        match work {
            AfterSession::Reboot { command_key } => {
                self.go_offline(vec![event("1 BOOT", ""), event("M Reboot", &command_key)], false);
            }
            AfterSession::FactoryReset => self.go_offline(Vec::new(), true),
            AfterSession::ScheduleInform { delay_seconds, command_key } => {
                self.jobs.spawn(async move {
                    tokio::time::sleep(Duration::from_secs(delay_seconds.into())).await;
                    Command::Inform {
                        events: vec![event("3 SCHEDULED", ""), event("M ScheduleInform", &command_key)],
                        reply: None,
                    }
                });
            }
            AfterSession::Diagnostics { object } => {
                let delay = self.fleet.config.diagnostics_delay;
                // A speed test moves its bytes for real, to and from the URL it was given.
                let test = {
                    let state = self.shared.lock();
                    let field = |name: &str| state.cpe.value(&format!("{object}{name}")).map(|(v, _)| v);
                    if object.contains("DownloadDiagnostics.") {
                        field("DownloadURL").map(|url| (url, None))
                    } else if object.contains("UploadDiagnostics.") {
                        let length = field("TestFileLength").and_then(|l| l.parse::<u64>().ok()).unwrap_or(0);
                        field("UploadURL").map(|url| (url, Some(length)))
                    } else {
                        None
                    }
                };
                let client = self.fleet.client.clone();
                let timeout = self.fleet.config.transfer_timeout;
                self.jobs.spawn(async move {
                    tokio::time::sleep(delay).await;
                    let measured = match test {
                        Some((url, None)) => Some(transfer::speed_download(&client, &url, timeout).await),
                        Some((url, Some(length))) => Some(transfer::speed_upload(&client, &url, length, timeout).await),
                        None => None,
                    };
                    Command::DiagnosticsDone { object, measured }
                });
            }
            AfterSession::Download(download) => {
                let client = self.fleet.client.clone();
                let timeout = self.fleet.config.transfer_timeout;
                let failure = self.fleet.config.firmware_failure.clone();
                self.jobs.spawn(async move {
                    tokio::time::sleep(Duration::from_secs(download.delay_seconds.into())).await;
                    let mut outcome = transfer::download(&client, &download, timeout).await;
                    let installed = transfer::install(&download, &mut outcome, failure.as_ref());
                    Command::TransferDone {
                        transfer: PendingTransfer { complete: outcome.complete, method_event: "M Download" },
                        installed,
                    }
                });
            }
            AfterSession::Upload(upload) => {
                let client = self.fleet.client.clone();
                let timeout = self.fleet.config.transfer_timeout;
                let shared = self.shared.clone();
                self.jobs.spawn(async move {
                    tokio::time::sleep(Duration::from_secs(upload.delay_seconds.into())).await;
                    let file = {
                        let state = shared.lock();
                        transfer::upload_file(&state.cpe, &state.identity, &upload.file_type)
                    };
                    let outcome = transfer::upload(&client, &upload, file, timeout).await;
                    Command::TransferDone {
                        transfer: PendingTransfer { complete: outcome.complete, method_event: "M Upload" },
                        installed: None,
                    }
                });
            }
        }
    }
}

/// TR-069 §3.2.1.1 retry wait after the n-th consecutive failure: a random time between
/// m·2^(n−1) and m·2^n, with n capped at 10 as the standard's table is.
pub fn backoff(retry_count: u32, min_wait: Duration) -> Duration {
    let n = retry_count.clamp(1, 10);
    let low = min_wait.mul_f64(2f64.powi(i32::try_from(n - 1).unwrap_or(9)));
    let high = low * 2;
    low + (high - low).mul_f64(rand::rng().random_range(0.0..1.0))
}

/// A handle on one simulated device. Cheap to clone.
#[derive(Clone)]
pub struct DeviceHandle {
    pub(crate) shared: Arc<DeviceShared>,
}

impl std::fmt::Debug for DeviceHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceHandle")
            .field("index", &self.shared.index)
            .field("serial_number", &self.shared.identity.serial_number)
            .finish()
    }
}

impl DeviceHandle {
    /// Position in the fleet.
    pub fn index(&self) -> usize {
        self.shared.index
    }

    /// Manufacturer, OUI, ProductClass and SerialNumber, as the Inform's DeviceId carries them.
    pub fn identity(&self) -> &DeviceIdStruct {
        &self.shared.identity
    }

    pub fn serial_number(&self) -> &str {
        &self.shared.identity.serial_number
    }

    /// The GenieACS-style device id the ACS files the device under (`OUI-ProductClass-Serial`).
    pub fn device_id(&self) -> String {
        let id = &self.shared.identity;
        roost_cwmp::device_id::device_id(&id.oui, &id.product_class, &id.serial_number)
    }

    /// Where this device listens for connection requests.
    pub fn connection_request_url(&self) -> &str {
        &self.shared.connection_request_url
    }

    /// A parameter's real stored value and type (passwords included, unlike
    /// GetParameterValues); `None` for objects and unknown paths.
    pub fn get(&self, path: &str) -> Option<(String, ValueType)> {
        self.shared.lock().cpe.value(path)
    }

    /// Just the value of [`get`](Self::get).
    pub fn value(&self, path: &str) -> Option<String> {
        self.get(path).map(|(v, _)| v)
    }

    /// Whether an object or parameter exists (objects spelled with their trailing `.`).
    pub fn exists(&self, path: &str) -> bool {
        self.shared.lock().cpe.tree.node(path).is_some()
    }

    /// Notification and access list the ACS set on a parameter.
    pub fn attributes(&self, path: &str) -> Attributes {
        self.shared.lock().cpe.attributes(path)
    }

    /// The device's root object, `InternetGatewayDevice.` or `Device.`.
    pub fn root(&self) -> String {
        self.shared.lock().cpe.tree.root().to_owned()
    }

    /// Reads the whole device state under its lock.
    pub fn with_state<R>(&self, f: impl FnOnce(&CpeState) -> R) -> R {
        f(&self.shared.lock().cpe)
    }

    /// What the device's STUN client has seen (behind the fleet's NAT).
    pub fn stun_status(&self) -> crate::stun::StunStatus {
        self.shared.lock().stun.clone()
    }

    /// Changes a value as the device itself would (a user on the web UI), writable or not.
    /// With passive notification set, the change is reported in the next Inform with
    /// `4 VALUE CHANGE`; with active notification, a session starts now.
    pub fn set(&self, path: &str, value: &str) -> Result<(), SimError> {
        let mut state = self.shared.lock();
        let notification =
            state.cpe.set_local(path, value).ok_or_else(|| SimError::NoSuchParameter(path.to_owned()))?;
        let changed = state.cpe.changed_parameters().any(|p| p == path);
        if notification > 0 && changed {
            push_event(&mut state.pending_events, event("4 VALUE CHANGE", ""));
        }
        drop(state);
        if notification >= 2 && changed {
            self.trigger(&[]);
        }
        Ok(())
    }

    /// Runs a session now (after the current one, if any) with these events added to the
    /// pending ones, and returns its report. Session failures are in the report's `error`;
    /// `Err` only means the device has stopped.
    ///
    /// Pending events are those not yet delivered: a new device starts with its first-contact
    /// events (`0 BOOTSTRAP` + `1 BOOT` by default), so `inform_now(&[])` is its boot Inform.
    /// With nothing pending and no events given, the Inform says `2 PERIODIC`.
    pub async fn inform_now(&self, events: &[&str]) -> Result<Arc<SessionReport>, SimError> {
        self.inform_now_with(events.iter().map(|code| event(code, "")).collect()).await
    }

    /// [`inform_now`](Self::inform_now) with CommandKeys.
    pub async fn inform_now_with(&self, events: Vec<EventStruct>) -> Result<Arc<SessionReport>, SimError> {
        let (reply, answer) = oneshot::channel();
        self.shared.commands.send(Command::Inform { events, reply: Some(reply) }).map_err(|_| SimError::Stopped)?;
        answer.await.map_err(|_| SimError::Stopped)
    }

    /// Asks for a session with these events without waiting for it.
    pub fn trigger(&self, events: &[&str]) {
        let events = events.iter().map(|code| event(code, "")).collect();
        let _ = self.shared.commands.send(Command::Inform { events, reply: None });
    }

    /// Turns the device off and on: after the reboot delay it informs with `1 BOOT`.
    pub fn power_cycle(&self) {
        let _ = self.shared.commands.send(Command::PowerCycle);
    }

    /// Number of sessions finished so far; also the `seq` the next session will have. Take it
    /// before causing a session, then [`wait_for_session`](Self::wait_for_session) from it.
    pub fn session_count(&self) -> u64 {
        *self.shared.completed.borrow()
    }

    /// Recent session reports, oldest first (as many as the fleet's `history` setting keeps).
    pub fn sessions(&self) -> Vec<Arc<SessionReport>> {
        match self.shared.history.lock() {
            Ok(h) => h.iter().cloned().collect(),
            Err(poisoned) => poisoned.into_inner().iter().cloned().collect(),
        }
    }

    /// The latest finished session.
    pub fn last_session(&self) -> Option<Arc<SessionReport>> {
        self.sessions().pop()
    }

    /// Waits for a finished session with `seq >= since` that satisfies `predicate` — one
    /// already finished counts — or fails after `timeout`.
    pub async fn wait_for_session(
        &self,
        since: u64,
        timeout: Duration,
        predicate: impl Fn(&SessionReport) -> bool,
    ) -> Result<Arc<SessionReport>, SimError> {
        let deadline = Instant::now() + timeout;
        let mut completed = self.shared.completed.subscribe();
        loop {
            if let Some(report) = self.shared.find(since, &predicate) {
                return Ok(report);
            }
            match tokio::time::timeout_at(deadline, completed.changed()).await {
                Err(_) => return Err(SimError::Timeout(timeout)),
                Ok(Err(_)) => return Err(SimError::Stopped),
                Ok(Ok(())) => {}
            }
        }
    }

    /// Waits for the next session to finish, whatever it was.
    pub async fn next_session(&self, timeout: Duration) -> Result<Arc<SessionReport>, SimError> {
        self.wait_for_session(self.session_count(), timeout, |_| true).await
    }

    /// Events waiting for the next Inform.
    pub fn pending_events(&self) -> Vec<EventStruct> {
        self.shared.lock().pending_events.clone()
    }

    /// TransferCompletes the ACS has not acknowledged yet.
    pub fn pending_transfer_completes(&self) -> Vec<TransferComplete> {
        self.shared.lock().pending_transfers.iter().map(|t| t.complete.clone()).collect()
    }

    /// Whether the device is rebooting (no sessions, connection requests refused).
    pub fn is_offline(&self) -> bool {
        self.shared.lock().offline
    }

    /// How many paths this device holds apart from the shared model.
    pub fn overlay_len(&self) -> usize {
        self.shared.lock().cpe.tree.overlay_len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_follows_the_tr069_table() {
        let m = Duration::from_secs(5);
        for _ in 0..50 {
            let first = backoff(1, m);
            assert!(first >= Duration::from_secs(5) && first <= Duration::from_secs(10), "{first:?}");
            let third = backoff(3, m);
            assert!(third >= Duration::from_secs(20) && third <= Duration::from_secs(40), "{third:?}");
            let capped = backoff(50, m);
            assert!(capped >= Duration::from_secs(2560) && capped <= Duration::from_secs(5120), "{capped:?}");
        }
    }
}
