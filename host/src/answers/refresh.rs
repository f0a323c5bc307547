//! Reading a subtree of a device's parameters, as discovery, a refreshObject task and
//! provisioning do: names first, then the values of the leaves in batches, then what the device
//! no longer has is dropped. A plain state machine: it returns the requests to send and the
//! [`StoreWrite`]s each answer makes; the caller sends and writes.

use roost_cwmp::{AcsRequest, CpeResponse, ParameterInfo};

use super::StoreWrite;

/// Reads a subtree from the device.
#[derive(Debug)]
pub struct Refresh {
    pub prefix: String,
    /// When the refresh began: what its listing did not touch since is gone at the end.
    pub started_at: i64,
    leaves: Vec<String>,
    pub names_done: bool,
    /// Names per GetParameterValues; 0 for the configured default.
    batch: usize,
    /// The request sent last and not answered yet.
    in_flight: Option<Step>,
}

/// A request of a refresh.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Names,
    /// A GetParameterValues of this many names.
    Values(usize),
}

impl Refresh {
    /// A refresh begun at `started_at` whose GetParameterValues name at most `batch`
    /// parameters (0: the default).
    pub fn new(prefix: String, batch: usize, started_at: i64) -> Self {
        Self { prefix, started_at, leaves: Vec::new(), names_done: false, batch, in_flight: None }
    }

    pub fn first_request(&mut self) -> AcsRequest {
        self.in_flight = Some(Step::Names);
        AcsRequest::GetParameterNames { parameter_path: self.prefix.clone(), next_level: false }
    }

    /// What was sent last and never answered, if anything.
    pub fn in_flight(&self) -> Option<Step> {
        self.in_flight
    }

    pub fn next_batch(&mut self, default_batch: usize) -> Option<AcsRequest> {
        if self.leaves.is_empty() {
            self.in_flight = None;
            return None;
        }
        let batch = if self.batch == 0 { default_batch } else { self.batch };
        let take = batch.max(1).min(self.leaves.len());
        let names: Vec<String> = self.leaves.drain(..take).collect();
        self.in_flight = Some(Step::Values(names.len()));
        Some(AcsRequest::GetParameterValues { names })
    }

    /// Feeds an answer received at `now`: what it writes, and the next request (`None` when
    /// the subtree is complete, the last write then dropping what is gone).
    pub fn on_response(
        &mut self,
        response: CpeResponse,
        default_batch: usize,
        now: i64,
    ) -> (Vec<StoreWrite>, Option<AcsRequest>) {
        let mut writes = Vec::new();
        match response {
            CpeResponse::GetParameterNames { parameters: infos } if !self.names_done => {
                self.names_done = true;
                let names = with_parent_objects(&self.prefix, within(&self.prefix, infos));
                self.leaves = names.iter().filter(|i| !i.name.ends_with('.')).map(|i| i.name.clone()).collect();
                writes.push(StoreWrite::Listed { names, at: self.started_at });
            }
            CpeResponse::GetParameterValues { parameters: values } => {
                writes.push(StoreWrite::Read { values, at: now });
            }
            _ => {}
        }
        self.in_flight = None;
        let next = self.next_batch(default_batch);
        if next.is_none() {
            writes.push(StoreWrite::Stale { prefix: self.prefix.clone(), since: self.started_at });
        }
        (writes, next)
    }
}

/// Keeps only names under the requested prefix: some agents answer a subtree request with
/// their whole tree.
fn within(prefix: &str, infos: Vec<ParameterInfo>) -> Vec<ParameterInfo> {
    infos.into_iter().filter(|i| i.name.starts_with(prefix) && !i.name.is_empty()).collect()
}

/// Adds the object nodes a listing implies but does not name: some agents list leaves only.
/// Every ancestor of a listed name, down to the requested object itself, is an object. An
/// inferred object is marked not writable: the listing said nothing of it.
fn with_parent_objects(prefix: &str, mut infos: Vec<ParameterInfo>) -> Vec<ParameterInfo> {
    let mut known: std::collections::HashSet<String> = infos.iter().map(|i| i.name.clone()).collect();
    // The requested object itself, when it is one (a single-leaf refresh asks for a leaf).
    let floor = if prefix.ends_with('.') { prefix.len() } else { usize::MAX };
    let mut inferred = Vec::new();
    for info in &infos {
        let name = info.name.as_str();
        // Each `.` but a trailing one closes an ancestor object.
        for (i, _) in name.match_indices('.').filter(|(i, _)| i + 1 < name.len()) {
            let parent = &name[..=i];
            if parent.len() >= floor && known.insert(parent.to_owned()) {
                inferred.push(ParameterInfo { name: parent.to_owned(), writable: false });
            }
        }
    }
    infos.extend(inferred);
    infos
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(name: &str) -> ParameterInfo {
        ParameterInfo { name: name.to_owned(), writable: true }
    }

    fn names(infos: &[ParameterInfo]) -> Vec<&str> {
        let mut names: Vec<&str> = infos.iter().map(|i| i.name.as_str()).collect();
        names.sort_unstable();
        names
    }

    #[test]
    fn a_leaves_only_listing_gets_its_objects() {
        let listed = vec![
            info("InternetGatewayDevice.DeviceInfo.SerialNumber"),
            info("InternetGatewayDevice.LANDevice.1.WLANConfiguration.2.SSID"),
        ];
        let all = with_parent_objects("InternetGatewayDevice.", listed);
        assert_eq!(
            names(&all),
            vec![
                "InternetGatewayDevice.",
                "InternetGatewayDevice.DeviceInfo.",
                "InternetGatewayDevice.DeviceInfo.SerialNumber",
                "InternetGatewayDevice.LANDevice.",
                "InternetGatewayDevice.LANDevice.1.",
                "InternetGatewayDevice.LANDevice.1.WLANConfiguration.",
                "InternetGatewayDevice.LANDevice.1.WLANConfiguration.2.",
                "InternetGatewayDevice.LANDevice.1.WLANConfiguration.2.SSID",
            ]
        );
        let inferred = all.iter().find(|i| i.name == "InternetGatewayDevice.LANDevice.1.").map(|i| i.writable);
        assert_eq!(inferred, Some(false));
    }

    #[test]
    fn listed_objects_are_kept_as_listed_and_nothing_above_the_prefix_is_added() {
        let listed = vec![info("Device.IP.Interface.1."), info("Device.IP.Interface.1.Enable")];
        let all = with_parent_objects("Device.IP.Interface.1.", listed);
        assert_eq!(names(&all), vec!["Device.IP.Interface.1.", "Device.IP.Interface.1.Enable"]);
        assert!(all.iter().all(|i| i.writable), "the listed object keeps what the CPE said of it");
        // A refresh of one leaf adds no object.
        let all = with_parent_objects("Device.IP.Interface.1.Enable", vec![info("Device.IP.Interface.1.Enable")]);
        assert_eq!(names(&all), vec!["Device.IP.Interface.1.Enable"]);
    }

    fn listing(names: &[&str]) -> CpeResponse {
        CpeResponse::GetParameterNames { parameters: names.iter().map(|n| info(n)).collect() }
    }

    fn read(names: &[&str]) -> CpeResponse {
        CpeResponse::GetParameterValues {
            parameters: names
                .iter()
                .map(|n| roost_cwmp::ParameterValue {
                    name: (*n).into(),
                    value: "1".into(),
                    value_type: roost_cwmp::ValueType::String,
                })
                .collect(),
        }
    }

    fn asked(request: Option<AcsRequest>) -> Vec<String> {
        match request {
            Some(AcsRequest::GetParameterValues { names }) => names,
            other => panic!("expected a GetParameterValues, got {other:?}"),
        }
    }

    #[test]
    fn a_subtree_is_listed_then_read_in_batches_then_pruned() {
        let mut refresh = Refresh::new("Device.WiFi.".into(), 2, 1_000);
        assert_eq!(
            refresh.first_request(),
            AcsRequest::GetParameterNames { parameter_path: "Device.WiFi.".into(), next_level: false }
        );
        assert_eq!(refresh.in_flight(), Some(Step::Names));
        // An agent that answers with its whole tree: only the subtree is kept.
        let (writes, next) = refresh.on_response(
            listing(&[
                "Device.WiFi.SSID.1.SSID",
                "Device.WiFi.SSID.1.Enable",
                "Device.WiFi.Radio.1.Channel",
                "Device.Time.Enable",
            ]),
            256,
            1_500,
        );
        let [StoreWrite::Listed { names, at: 1_000 }] = writes.as_slice() else { panic!("{writes:?}") };
        assert!(names.iter().all(|n| n.name.starts_with("Device.WiFi.")), "{names:?}");
        assert!(names.iter().any(|n| n.name == "Device.WiFi.SSID.1."), "objects the listing implies are added");
        assert_eq!(
            asked(next),
            ["Device.WiFi.SSID.1.SSID", "Device.WiFi.SSID.1.Enable"],
            "the learnt batch, not the default"
        );
        assert_eq!(refresh.in_flight(), Some(Step::Values(2)));

        let (writes, next) =
            refresh.on_response(read(&["Device.WiFi.SSID.1.SSID", "Device.WiFi.SSID.1.Enable"]), 256, 2_000);
        assert!(
            matches!(writes.as_slice(), [StoreWrite::Read { values, at: 2_000 }] if values.len() == 2),
            "{writes:?}"
        );
        assert_eq!(asked(next), ["Device.WiFi.Radio.1.Channel"]);

        let (writes, next) = refresh.on_response(read(&["Device.WiFi.Radio.1.Channel"]), 256, 3_000);
        assert_eq!(next, None);
        assert_eq!(refresh.in_flight(), None);
        assert!(
            matches!(
                writes.as_slice(),
                [StoreWrite::Read { at: 3_000, .. }, StoreWrite::Stale { prefix, since: 1_000 }] if prefix == "Device.WiFi."
            ),
            "what the listing did not touch since the refresh began is gone: {writes:?}"
        );
    }

    #[test]
    fn an_empty_listing_prunes_the_whole_subtree_at_once() {
        let mut refresh = Refresh::new("Device.Hosts.".into(), 0, 7);
        refresh.first_request();
        let (writes, next) = refresh.on_response(listing(&[]), 256, 9);
        assert_eq!(next, None);
        assert_eq!(
            writes,
            vec![
                StoreWrite::Listed { names: vec![], at: 7 },
                StoreWrite::Stale { prefix: "Device.Hosts.".into(), since: 7 }
            ]
        );
    }

    #[test]
    fn without_a_learnt_batch_the_default_applies() {
        let mut refresh = Refresh::new("Device.".into(), 0, 0);
        refresh.first_request();
        let (_, next) = refresh.on_response(listing(&["Device.A", "Device.B", "Device.C"]), 2, 0);
        assert_eq!(asked(next), ["Device.A", "Device.B"]);
    }
}
