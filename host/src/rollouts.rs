//! Staged firmware rollouts: the decisions, as plain functions. A rollout installs one stored
//! image on the devices its target matched when it was created: the canary first, then batches,
//! each device's upgrade confirmed only by its gate (`gate`); a batch whose failures pass the
//! threshold pauses the rollout (`batch_verdict`); no device starts outside the maintenance
//! window (`Window`). The runner (`rollouts/runner.rs`) gathers the facts from the store and
//! carries out what these functions decide; the state lives in the database (`store::rollouts`),
//! so a restart resumes a rollout where it was.

use roost_cwmp::DataModel;

pub mod runner;

/// A rollout's state. `Running`, `Paused` and `RollingBack` are live; a rollout `Aborted` still
/// settles the gates of the devices already upgrading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RolloutState {
    Running,
    Paused,
    Completed,
    Aborted,
    RollingBack,
    RolledBack,
}

impl RolloutState {
    pub const ALL: [Self; 6] =
        [Self::Running, Self::Paused, Self::Completed, Self::Aborted, Self::RollingBack, Self::RolledBack];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Paused => "paused",
            Self::Completed => "completed",
            Self::Aborted => "aborted",
            Self::RollingBack => "rolling_back",
            Self::RolledBack => "rolled_back",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }
}

/// Where one device is in a rollout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceState {
    /// Not started: its batch has not come, or the rollout waits (paused, outside its window).
    Waiting,
    /// Its download is queued or under way; the gate decides.
    Upgrading,
    Passed,
    Failed,
    /// Never started: the rollout was aborted or rolled back first.
    Skipped,
    /// Being put back on the version it had, with its stored image.
    Reverting,
    Reverted,
    RevertFailed,
}

impl DeviceState {
    pub const ALL: [Self; 8] = [
        Self::Waiting,
        Self::Upgrading,
        Self::Passed,
        Self::Failed,
        Self::Skipped,
        Self::Reverting,
        Self::Reverted,
        Self::RevertFailed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Waiting => "waiting",
            Self::Upgrading => "upgrading",
            Self::Passed => "passed",
            Self::Failed => "failed",
            Self::Skipped => "skipped",
            Self::Reverting => "reverting",
            Self::Reverted => "reverted",
            Self::RevertFailed => "revert_failed",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }

    /// Whether the device's gate is open: a download of the rollout is under way on it.
    pub fn is_open(self) -> bool {
        matches!(self, Self::Upgrading | Self::Reverting)
    }
}

/// What an open device's gate waits for, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Its TransferComplete (the download task is pending).
    Download,
    /// An Inform with `1 BOOT` after the download started (the new image runs after a reboot).
    Boot,
    /// The read of its WAN connections' status.
    Wan,
}

impl Step {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Download => "download",
            Self::Boot => "boot",
            Self::Wan => "wan",
        }
    }

    fn awaited(self) -> &'static str {
        match self {
            Self::Download => "no successful TransferComplete",
            Self::Boot => "no boot into the new image",
            Self::Wan => "no WAN status read",
        }
    }
}

/// A task's state as a gate sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskFact {
    Pending,
    Done,
    Fault(String),
    /// Deleted (by an operator, or with its device).
    Gone,
}

/// The WAN check's task, once queued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WanFact {
    NotQueued,
    Queued(TaskFact),
    /// Its task is done: what the values say, and when they were read.
    Read(WanVerdict, i64),
}

/// What an open device's gate knows.
#[derive(Debug, Clone)]
pub struct GateFacts<'a> {
    pub download: TaskFact,
    /// The device informed with `1 BOOT` after its download started.
    pub booted: bool,
    pub software_version: &'a str,
    /// The version the download installs (the rollout's, or the device's own before it).
    pub expected_version: &'a str,
    pub wan: WanFact,
    /// Why the last read found the WAN down, when a read is being repeated.
    pub last_wan_down: Option<&'a str>,
    pub now: i64,
    pub deadline: i64,
    /// How long after a read that found the WAN down it is read again (a WAN comes up some
    /// seconds after the boot: PPP, DHCP).
    pub wan_recheck_ms: i64,
}

/// What a gate decides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Gate {
    Wait(Step),
    /// Everything but the WAN is confirmed: read its status now.
    CheckWan,
    Passed,
    Failed(String),
}

/// The post-upgrade health gate: the download's TransferComplete succeeded, the device booted
/// after it, it reports the expected `SoftwareVersion`, and a WAN connection is up; each in turn,
/// all before the deadline. A WAN found down is read again until the deadline.
pub fn gate(facts: &GateFacts<'_>) -> Gate {
    let timed_out = |step: Step| {
        if facts.now >= facts.deadline {
            Gate::Failed(format!("{} before the deadline", step.awaited()))
        } else {
            Gate::Wait(step)
        }
    };
    match &facts.download {
        TaskFact::Fault(message) => return Gate::Failed(format!("the download failed: {message}")),
        TaskFact::Gone => return Gate::Failed("the download task was deleted".into()),
        TaskFact::Pending => return timed_out(Step::Download),
        TaskFact::Done => {}
    }
    if !facts.booted {
        return timed_out(Step::Boot);
    }
    if facts.software_version != facts.expected_version {
        return Gate::Failed(format!(
            "it came back with SoftwareVersion {:?}, not {:?}",
            facts.software_version, facts.expected_version
        ));
    }
    match &facts.wan {
        WanFact::NotQueued => Gate::CheckWan,
        // A read repeated up to the deadline that does not come back in time (its task expires
        // with the gate) leaves the last one's verdict.
        WanFact::Queued(TaskFact::Pending | TaskFact::Done | TaskFact::Fault(_))
            if facts.now >= facts.deadline && facts.last_wan_down.is_some() =>
        {
            Gate::Failed(format!("its WAN is not up: {}", facts.last_wan_down.unwrap_or_default()))
        }
        WanFact::Queued(TaskFact::Pending) | WanFact::Queued(TaskFact::Done) => timed_out(Step::Wan),
        WanFact::Queued(TaskFact::Fault(message)) => Gate::Failed(format!("reading its WAN status failed: {message}")),
        WanFact::Queued(TaskFact::Gone) => Gate::Failed("the WAN status read was deleted".into()),
        WanFact::Read(WanVerdict::Up(_), _) => Gate::Passed,
        WanFact::Read(WanVerdict::Down(why), _) if facts.now >= facts.deadline => {
            Gate::Failed(format!("its WAN is not up: {why}"))
        }
        WanFact::Read(WanVerdict::Down(_), read_at) if facts.now.saturating_sub(*read_at) >= facts.wan_recheck_ms => {
            Gate::CheckWan
        }
        WanFact::Read(WanVerdict::Down(_), _) => Gate::Wait(Step::Wan),
    }
}

/// What a device's WAN status values say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WanVerdict {
    /// The connection found up.
    Up(String),
    /// Why none counts as up.
    Down(String),
}

/// The parameters a WAN check reads, from the device's stored names: TR-098's
/// `WANDevice.{i}.WANConnectionDevice.{j}.WAN{PPP,IP}Connection.{k}.ConnectionStatus`; TR-181's
/// `PPP.Interface.{i}.Status`, `IP.Interface.{i}.Status` with `LowerLayers`, and
/// `Ethernet.Link.{i}.LowerLayers` (an IP interface counts as WAN over PPP, a VLAN termination,
/// a cellular interface, or an Ethernet link that is not a bridge port: the LAN bridge is an IP
/// interface too, and always up).
pub fn wan_status_paths<'a>(model: DataModel, stored: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let mut paths: Vec<String> = stored
        .into_iter()
        .filter(|path| match model {
            DataModel::Tr098 => {
                path.starts_with("InternetGatewayDevice.WANDevice.")
                    && (path.contains(".WANPPPConnection.") || path.contains(".WANIPConnection."))
                    && path.ends_with(".ConnectionStatus")
                    && path.matches('.').count() == 7
            }
            DataModel::Tr181 => {
                let ppp = path.starts_with("Device.PPP.Interface.") && path.ends_with(".Status");
                let ip = path.starts_with("Device.IP.Interface.")
                    && (path.ends_with(".Status") || path.ends_with(".LowerLayers"));
                let link = path.starts_with("Device.Ethernet.Link.") && path.ends_with(".LowerLayers");
                (ppp || ip || link) && path.matches('.').count() == 4
            }
        })
        .map(str::to_owned)
        .collect();
    paths.sort();
    paths
}

/// Whether the values a WAN check read show a WAN connection up (see [`wan_status_paths`]).
pub fn wan_verdict(values: &[(String, String)]) -> WanVerdict {
    let value = |path: &str| values.iter().find(|(p, _)| p == path).map(|(_, v)| v.trim());
    let mut seen = Vec::new();
    for (path, status) in values {
        let status = status.trim();
        let is_wan = if path.starts_with("InternetGatewayDevice.") {
            path.ends_with(".ConnectionStatus")
        } else if path.starts_with("Device.PPP.Interface.") {
            path.ends_with(".Status")
        } else if let Some(interface) =
            path.strip_prefix("Device.IP.Interface.").and_then(|rest| rest.strip_suffix(".Status"))
        {
            value(&format!("Device.IP.Interface.{interface}.LowerLayers")).is_some_and(|lower| {
                lower.split(',').map(str::trim).any(|layer| {
                    ["Device.PPP.", "Device.Ethernet.VLANTermination.", "Device.Cellular."]
                        .iter()
                        .any(|wan| layer.starts_with(wan))
                        || (layer.starts_with("Device.Ethernet.Link.")
                            && value(&format!("{}.LowerLayers", layer.trim_end_matches('.')))
                                .is_some_and(|below| !below.starts_with("Device.Bridging.")))
                })
            })
        } else {
            false
        };
        if !is_wan {
            continue;
        }
        if status.eq_ignore_ascii_case("Connected") || status.eq_ignore_ascii_case("Up") {
            return WanVerdict::Up(path.clone());
        }
        seen.push(format!("{path} = {status:?}"));
    }
    if seen.is_empty() {
        WanVerdict::Down("the device reports no WAN connection".into())
    } else {
        WanVerdict::Down(seen.join(", "))
    }
}

/// The batch of each position of a rollout's devices: the first `canary` are batch 0, then
/// `batch_size` a batch from 1 (batch 0 is empty without a canary).
pub fn batch_of(position: u64, canary: u64, batch_size: u64) -> u64 {
    if position < canary { 0 } else { 1 + (position - canary) / batch_size.max(1) }
}

/// How many batches `devices` devices make (batch 0 included, empty or not).
pub fn batch_count(devices: u64, canary: u64, batch_size: u64) -> u64 {
    if devices == 0 { 1 } else { batch_of(devices - 1, canary, batch_size) + 1 }
}

/// When the batch after one that settled at `done_at` (milliseconds) may start: `interval_s`
/// later. None when nothing settled (an empty canary): at once.
pub fn next_batch_due(done_at: Option<i64>, interval_s: i64) -> Option<i64> {
    done_at.map(|done| done.saturating_add(interval_s.saturating_mul(1000)))
}

/// A batch's devices by state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BatchCount {
    pub waiting: u64,
    pub open: u64,
    pub passed: u64,
    pub failed: u64,
    /// Skipped or otherwise out of the count.
    pub other: u64,
}

impl BatchCount {
    pub fn total(&self) -> u64 {
        self.waiting + self.open + self.passed + self.failed + self.other
    }
}

/// What a running rollout does about its current batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BatchVerdict {
    /// Devices still to start or to settle.
    Continue,
    /// Too many failed: stop starting devices.
    Pause(String),
    /// Every device settled within the threshold.
    Settled,
}

/// Whether a batch's failures pass the threshold (a fraction of the batch), checked as failures
/// come, so a bad batch stops before the rest of it starts. The canary (batch 0) tolerates none.
pub fn batch_verdict(batch: u64, count: &BatchCount, failure_threshold: f64) -> BatchVerdict {
    let total = count.total();
    let allowed = if batch == 0 { 0.0 } else { failure_threshold * total as f64 };
    if count.failed as f64 > allowed {
        let what = if batch == 0 { "the canary".to_owned() } else { format!("batch {batch}") };
        return BatchVerdict::Pause(format!(
            "{} of {total} devices of {what} failed their upgrade (threshold {:.0} %)",
            count.failed,
            if batch == 0 { 0.0 } else { failure_threshold * 100.0 }
        ));
    }
    if count.waiting == 0 && count.open == 0 { BatchVerdict::Settled } else { BatchVerdict::Continue }
}

/// A daily maintenance window, in minutes after midnight of a time zone; one that ends before it
/// starts runs over midnight (22:00–04:00).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub start: u16,
    pub end: u16,
}

impl Window {
    /// From `HH:MM` texts; the window must not be empty.
    pub fn parse(start: &str, end: &str) -> Result<Self, String> {
        let window = Self { start: minute_of_day(start)?, end: minute_of_day(end)? };
        if window.start == window.end {
            return Err("window: start and end must differ".into());
        }
        Ok(window)
    }

    pub fn contains(&self, minute: u16) -> bool {
        if self.start < self.end {
            (self.start..self.end).contains(&minute)
        } else {
            minute >= self.start || minute < self.end
        }
    }

    pub fn text(minute: u16) -> String {
        format!("{:02}:{:02}", minute / 60, minute % 60)
    }
}

fn minute_of_day(text: &str) -> Result<u16, String> {
    let bad = || format!("window: {text:?} is not a time of day as HH:MM");
    let (hours, minutes) = text.trim().split_once(':').ok_or_else(bad)?;
    let (hours, minutes): (u16, u16) = (hours.parse().map_err(|_| bad())?, minutes.parse().map_err(|_| bad())?);
    if hours > 23 || minutes > 59 || text.trim().len() != 5 {
        return Err(bad());
    }
    Ok(hours * 60 + minutes)
}

/// The minute of the day at `at` (epoch milliseconds) in the IANA time zone `zone`.
pub fn local_minute(at: i64, zone: &str) -> Result<u16, String> {
    let zone = time_zone(zone)?;
    let time = jiff::Timestamp::from_millisecond(at).map_err(|e| e.to_string())?.to_zoned(zone);
    Ok(u16::try_from(time.hour()).unwrap_or(0) * 60 + u16::try_from(time.minute()).unwrap_or(0))
}

/// An IANA time zone by name (`Europe/Lisbon`, `UTC`).
pub fn time_zone(name: &str) -> Result<jiff::tz::TimeZone, String> {
    jiff::tz::TimeZone::get(name).map_err(|_| format!("{name:?} is not an IANA time zone (like Europe/Lisbon)"))
}

/// What a rollback does to one of its rollout's settled devices: it reverts those that run the
/// rollout's version, and leaves alone those something else changed since (another rollout, an
/// operator).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Revert {
    /// Queue the image of the version it had.
    Download,
    /// It runs the version it had already (its download failed before installing).
    AlreadyThere,
    /// It runs another version than the rollout's, or another rollout has it now.
    Elsewhere,
    /// No stored image of its version was found when the rollout was made.
    NoImage,
}

pub struct RevertFacts<'a> {
    pub software_version: &'a str,
    pub from_version: &'a str,
    pub rollout_version: &'a str,
    pub in_another_rollout: bool,
    pub has_image: bool,
}

pub fn revert(facts: &RevertFacts<'_>) -> Revert {
    if facts.in_another_rollout {
        Revert::Elsewhere
    } else if facts.software_version == facts.from_version {
        Revert::AlreadyThere
    } else if facts.software_version != facts.rollout_version {
        Revert::Elsewhere
    } else if facts.has_image {
        Revert::Download
    } else {
        Revert::NoImage
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_next_batch_is_due_its_interval_after_the_last_settled() {
        assert_eq!(next_batch_due(Some(1_000), 10), Some(11_000));
        assert_eq!(next_batch_due(None, 10), None, "an empty batch holds nothing back");
    }

    fn facts<'a>(download: TaskFact, booted: bool, version: &'a str, wan: WanFact) -> GateFacts<'a> {
        GateFacts {
            download,
            booted,
            software_version: version,
            expected_version: "V2",
            wan,
            last_wan_down: None,
            now: 100,
            deadline: 200,
            wan_recheck_ms: 30,
        }
    }

    #[test]
    fn the_gate_confirms_download_then_boot_then_version_then_wan() {
        use TaskFact::*;
        assert_eq!(gate(&facts(Pending, false, "V1", WanFact::NotQueued)), Gate::Wait(Step::Download));
        assert_eq!(gate(&facts(Done, false, "V1", WanFact::NotQueued)), Gate::Wait(Step::Boot));
        assert_eq!(gate(&facts(Done, true, "V2", WanFact::NotQueued)), Gate::CheckWan);
        assert_eq!(gate(&facts(Done, true, "V2", WanFact::Queued(Pending))), Gate::Wait(Step::Wan));
        assert_eq!(gate(&facts(Done, true, "V2", WanFact::Read(WanVerdict::Up("x".into()), 90))), Gate::Passed);
        // A boot Inform carries the version: once booted, the wrong one is final.
        assert!(matches!(gate(&facts(Done, true, "V1", WanFact::NotQueued)), Gate::Failed(m) if m.contains("\"V1\"")));
        assert!(
            matches!(gate(&facts(Fault("9010 Download failure".into()), false, "V1", WanFact::NotQueued)), Gate::Failed(m) if m.contains("9010"))
        );
        // A WAN down right after the boot is read again (every `wan_recheck_ms`) until the deadline.
        let down = |read_at| WanFact::Read(WanVerdict::Down("ppp down".into()), read_at);
        assert_eq!(gate(&facts(Done, true, "V2", down(90))), Gate::Wait(Step::Wan));
        assert_eq!(gate(&facts(Done, true, "V2", down(70))), Gate::CheckWan);
        let mut late = facts(Done, true, "V2", down(190));
        late.now = 200;
        assert!(matches!(gate(&late), Gate::Failed(m) if m.contains("ppp down")));
        // The repeated read that expires with the gate reports the last verdict.
        let mut expired = facts(Done, true, "V2", WanFact::Queued(Fault("task.expired".into())));
        expired.now = 200;
        expired.last_wan_down = Some("ppp down");
        assert!(matches!(gate(&expired), Gate::Failed(m) if m.contains("WAN is not up: ppp down")));
    }

    #[test]
    fn a_gate_past_its_deadline_fails_naming_what_never_came() {
        let mut late = facts(TaskFact::Done, false, "V1", WanFact::NotQueued);
        late.now = 200;
        assert_eq!(gate(&late), Gate::Failed("no boot into the new image before the deadline".into()));
        late.download = TaskFact::Pending;
        assert_eq!(gate(&late), Gate::Failed("no successful TransferComplete before the deadline".into()));
    }

    fn names(text: &str) -> Vec<&str> {
        text.lines().map(str::trim).filter(|l| !l.is_empty()).collect()
    }

    #[test]
    fn wan_checks_read_the_connection_status_of_real_trees() {
        // The shape of the ZTE H199A and TP-Link XX230v exports (tests/data/cpe/).
        let tr098 = names(
            "InternetGatewayDevice.WANDevice.1.WANConnectionDevice.1.WANPPPConnection.1.ConnectionStatus
             InternetGatewayDevice.WANDevice.1.WANConnectionDevice.2.WANIPConnection.1.ConnectionStatus
             InternetGatewayDevice.WANDevice.1.WANConnectionDevice.1.WANPPPConnection.1.Username
             InternetGatewayDevice.LANDevice.1.LANHostConfigManagement.DHCPServerEnable",
        );
        assert_eq!(wan_status_paths(DataModel::Tr098, tr098.iter().copied()).len(), 2);
        let tr181 = names(
            "Device.IP.Interface.1.LowerLayers
             Device.IP.Interface.1.Status
             Device.IP.Interface.1.Name
             Device.IP.Interface.6.LowerLayers
             Device.IP.Interface.6.Status
             Device.IP.Interface.6.IPv4Address.1.Status
             Device.PPP.Interface.3.Status",
        );
        assert_eq!(
            wan_status_paths(DataModel::Tr181, tr181.iter().copied()),
            [
                "Device.IP.Interface.1.LowerLayers",
                "Device.IP.Interface.1.Status",
                "Device.IP.Interface.6.LowerLayers",
                "Device.IP.Interface.6.Status",
                "Device.PPP.Interface.3.Status"
            ]
        );
        let pairs = |list: &[(&str, &str)]| -> Vec<(String, String)> {
            list.iter().map(|(p, v)| (p.to_string(), v.to_string())).collect()
        };
        // The LAN bridge is up on every device: it is not a WAN.
        let lan_only = pairs(&[
            ("Device.IP.Interface.1.LowerLayers", "Device.Ethernet.Link.1."),
            ("Device.IP.Interface.1.Status", "Up"),
            ("Device.IP.Interface.6.LowerLayers", "Device.PPP.Interface.3."),
            ("Device.IP.Interface.6.Status", "Down"),
        ]);
        assert!(matches!(wan_verdict(&lan_only), WanVerdict::Down(why) if why.contains("Interface.6.Status")));
        // IPoE: an IP interface over an Ethernet link that is not a bridge port is a WAN.
        let ipoe = pairs(&[
            ("Device.Ethernet.Link.1.LowerLayers", "Device.Bridging.Bridge.1.Port.1."),
            ("Device.Ethernet.Link.2.LowerLayers", "Device.Ethernet.Interface.6."),
            ("Device.IP.Interface.1.LowerLayers", "Device.Ethernet.Link.1."),
            ("Device.IP.Interface.1.Status", "Up"),
            ("Device.IP.Interface.3.LowerLayers", "Device.Ethernet.Link.2."),
            ("Device.IP.Interface.3.Status", "Up"),
        ]);
        assert_eq!(wan_verdict(&ipoe), WanVerdict::Up("Device.IP.Interface.3.Status".into()));
        assert!(matches!(wan_verdict(&ipoe[..4]), WanVerdict::Down(_)), "the bridge alone is no WAN");
        let ppp_up = pairs(&[("Device.PPP.Interface.3.Status", "Up")]);
        assert_eq!(wan_verdict(&ppp_up), WanVerdict::Up("Device.PPP.Interface.3.Status".into()));
        let igd = pairs(&[
            (
                "InternetGatewayDevice.WANDevice.1.WANConnectionDevice.1.WANPPPConnection.1.ConnectionStatus",
                "Disconnected",
            ),
            ("InternetGatewayDevice.WANDevice.1.WANConnectionDevice.2.WANIPConnection.1.ConnectionStatus", "Connected"),
        ]);
        assert!(matches!(wan_verdict(&igd), WanVerdict::Up(path) if path.contains("WANIPConnection")));
        assert_eq!(wan_verdict(&[]), WanVerdict::Down("the device reports no WAN connection".into()));
    }

    #[test]
    fn batches_put_the_canary_first_then_fixed_sizes() {
        let batches: Vec<u64> = (0..8).map(|p| batch_of(p, 2, 3)).collect();
        assert_eq!(batches, [0, 0, 1, 1, 1, 2, 2, 2]);
        assert_eq!(batch_count(8, 2, 3), 3);
        assert_eq!(batch_count(9, 2, 3), 4);
        // Without a canary, batch 0 is empty and the first devices are batch 1.
        assert_eq!(batch_of(0, 0, 50), 1);
        assert_eq!(batch_count(100, 0, 50), 3);
    }

    #[test]
    fn a_batch_pauses_once_its_failures_pass_the_threshold() {
        let count = |failed, passed, waiting| BatchCount { waiting, open: 0, passed, failed, other: 0 };
        // 2 of 10 at 20 % is within; the third failure passes it, before the rest settle.
        assert_eq!(batch_verdict(1, &count(2, 8, 0), 0.2), BatchVerdict::Settled);
        assert!(matches!(batch_verdict(1, &count(3, 0, 7), 0.2), BatchVerdict::Pause(why) if why.contains("3 of 10")));
        assert_eq!(batch_verdict(1, &count(1, 1, 8), 0.2), BatchVerdict::Continue);
        // The canary tolerates no failure.
        assert!(matches!(batch_verdict(0, &count(1, 4, 0), 0.5), BatchVerdict::Pause(why) if why.contains("canary")));
        assert_eq!(batch_verdict(0, &BatchCount::default(), 0.1), BatchVerdict::Settled);
    }

    #[test]
    fn windows_may_run_over_midnight() {
        let night = Window::parse("01:00", "05:00").unwrap();
        assert!(night.contains(60) && night.contains(299) && !night.contains(300) && !night.contains(59));
        let over = Window::parse("22:00", "04:00").unwrap();
        assert!(over.contains(23 * 60) && over.contains(0) && over.contains(239) && !over.contains(240));
        assert!(Window::parse("1:00", "05:00").is_err());
        assert!(Window::parse("24:00", "05:00").is_err());
        assert!(Window::parse("05:00", "05:00").is_err());
    }

    #[test]
    fn the_local_minute_follows_the_zone_and_its_summer_time() {
        // 2026-07-01T00:30Z is 02:30 in Paris (CEST), 00:30 UTC; 2026-01-01T00:30Z is 01:30 there.
        let summer = 1_782_865_800_000;
        assert_eq!(local_minute(summer, "UTC"), Ok(30));
        assert_eq!(local_minute(summer, "Europe/Paris"), Ok(150));
        assert_eq!(local_minute(1_767_227_400_000, "Europe/Paris"), Ok(90));
        assert!(local_minute(summer, "Mars/Olympus").is_err());
    }

    #[test]
    fn a_rollback_reverts_what_runs_the_rollouts_version_only() {
        let facts = |software_version, in_another_rollout, has_image| RevertFacts {
            software_version,
            from_version: "V1",
            rollout_version: "V2",
            in_another_rollout,
            has_image,
        };
        assert_eq!(revert(&facts("V2", false, true)), Revert::Download);
        assert_eq!(revert(&facts("V1", false, true)), Revert::AlreadyThere);
        assert_eq!(revert(&facts("V2", false, false)), Revert::NoImage);
        // Something else changed it since: left alone.
        assert_eq!(revert(&facts("V3", false, true)), Revert::Elsewhere);
        assert_eq!(revert(&facts("V2", true, true)), Revert::Elsewhere);
    }
}
