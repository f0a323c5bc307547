//! Reading a subtree of a device's parameters into the store, as discovery, a refreshObject task
//! and provisioning do.

use anyhow::Result;
use roost_cwmp::{AcsRequest, CpeResponse, ParameterInfo};

use crate::app::App;
use crate::store::{now_millis, parameters};

/// Reads a subtree from the device: names first, then values of the leaves in batches, then
/// drops what the device no longer has.
#[derive(Debug)]
pub(crate) struct Refresh {
    pub(crate) prefix: String,
    pub(crate) started_at: i64,
    leaves: Vec<String>,
    pub(crate) names_done: bool,
    /// Names per GetParameterValues; 0 for the configured default.
    batch: usize,
    /// The request sent last and not answered yet.
    in_flight: Option<Step>,
}

/// A request of a refresh.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    Names,
    /// A GetParameterValues of this many names.
    Values(usize),
}

impl Refresh {
    /// A refresh whose GetParameterValues name at most `batch` parameters (0: the default).
    pub(crate) fn with_batch(prefix: String, batch: usize) -> Self {
        Self { prefix, started_at: now_millis(), leaves: Vec::new(), names_done: false, batch, in_flight: None }
    }

    pub(crate) fn first_request(&mut self) -> AcsRequest {
        self.in_flight = Some(Step::Names);
        AcsRequest::GetParameterNames { parameter_path: self.prefix.clone(), next_level: false }
    }

    /// What was sent last and never answered, if anything.
    pub(crate) fn in_flight(&self) -> Option<Step> {
        self.in_flight
    }

    pub(crate) fn next_batch(&mut self, default_batch: usize) -> Option<AcsRequest> {
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

    /// Feeds a response; returns the next request, or `None` when the subtree is complete.
    pub(crate) async fn on_response(
        &mut self,
        app: &App,
        device_pk: i64,
        response: CpeResponse,
    ) -> Result<Option<AcsRequest>> {
        match response {
            CpeResponse::GetParameterNames { parameters: infos } if !self.names_done => {
                self.names_done = true;
                let infos = with_parent_objects(&self.prefix, within(&self.prefix, infos));
                let _guard = app.store.write_guard().await;
                parameters::upsert_names(app.store.db(), device_pk, &infos, self.started_at).await?;
                self.leaves = infos.into_iter().filter(|i| !i.name.ends_with('.')).map(|i| i.name).collect();
            }
            CpeResponse::GetParameterValues { parameters: values } => {
                let _guard = app.store.write_guard().await;
                parameters::upsert_values(app.store.db(), device_pk, &values, now_millis()).await?;
            }
            _ => {}
        }
        self.in_flight = None;
        if let Some(next) = self.next_batch(app.config.cwmp.discovery_batch) {
            return Ok(Some(next));
        }
        let _guard = app.store.write_guard().await;
        parameters::delete_stale(app.store.db(), device_pk, &self.prefix, self.started_at).await?;
        Ok(None)
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
}
