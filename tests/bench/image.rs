//! What roost-sim's devices look like to the ACS once discovered: their identity, the tree a
//! full discovery would have stored, and the parameters their periodic Informs carry.
//!
//! roost-sim makes each unit distinct by writing a few "factory" values over the shared model
//! (serial number, connection-request URL, ACS URL, periodic-inform settings, WAN address):
//! [`FactoryTemplate`]. This module applies the same template with the settings the benchmark
//! runs the simulator with, and a test below checks the result against a real `Fleet`, so the
//! database the benchmark seeds matches what the simulator reports and a periodic Inform
//! changes nothing.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use roost_cwmp::{DeviceIdStruct, ParameterValue, ValueType};
use roost_sim::connection_request::path_for;
use roost_sim::rpc::is_secret;
use roost_sim::{CpeState, DataModel, DataModelKind, FactoryTemplate, FleetConfig, Node, ParameterTree, inform};

/// How the simulator will be run: everything that changes what its devices report.
#[derive(Debug, Clone)]
pub struct SimSettings {
    pub serial_prefix: String,
    /// `host:port` the simulator's connection-request listener is reachable at (its
    /// `--cr-listen`, or `--cr-advertise`).
    pub cr_advertise: String,
    /// The simulator's `--acs`, written into `ManagementServer.URL`.
    pub acs_url: String,
    /// The simulator's `--interval`.
    pub interval: Duration,
}

/// One node of the tree a full discovery stores, as a row of `parameters` holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateRow {
    pub path: String,
    /// `None` for objects (discovery stores names without values for them).
    pub value: Option<String>,
    /// `xsd:…`, empty for objects.
    pub value_type: String,
    pub writable: bool,
    pub is_object: bool,
    /// Whether a periodic Inform carries this parameter.
    pub inform: bool,
}

/// The devices of one simulated fleet, as the ACS sees them.
#[derive(Debug)]
pub struct FleetImage {
    model: Arc<DataModel>,
    settings: SimSettings,
    template: FactoryTemplate,
    /// The simulator's configuration as its command line builds it from `settings`.
    config: FleetConfig,
}

impl FleetImage {
    pub fn new(model: Arc<DataModel>, settings: SimSettings) -> Self {
        let template = FactoryTemplate::new(&model);
        // roost-sim's command line sets no ACS or connection-request credentials of its own, and
        // always turns periodic informs on.
        let mut config = FleetConfig::new(settings.acs_url.clone(), model.clone());
        config.periodic_interval = Some(settings.interval);
        Self { model, settings, template, config }
    }

    pub fn kind(&self) -> DataModelKind {
        self.model.kind()
    }

    /// `tr098` or `tr181`, as `devices.data_model` holds it.
    pub fn data_model(&self) -> &'static str {
        match self.kind() {
            DataModelKind::Tr098 => "tr098",
            DataModelKind::Tr181 => "tr181",
        }
    }

    /// The serial number of the device numbered `number` (roost-sim's `--serial-start` + index).
    pub fn serial(&self, number: u64) -> String {
        format!("{}{number:06}", self.settings.serial_prefix)
    }

    /// The identity the device's Informs carry.
    pub fn identity(&self, number: u64) -> DeviceIdStruct {
        DeviceIdStruct { serial_number: self.serial(number), ..self.template.identity().clone() }
    }

    /// The GenieACS-style id the ACS files the device under.
    pub fn device_id(&self, number: u64) -> String {
        let id = self.template.identity();
        roost_cwmp::device_id::device_id(&id.oui, &id.product_class, &self.serial(number))
    }

    /// The values that make one unit distinct, as the simulator writes them.
    pub fn factory(&self, number: u64) -> Vec<(String, String, ValueType)> {
        let serial = self.serial(number);
        let cr_url = format!("http://{}{}", self.settings.cr_advertise, path_for(&serial));
        self.template.factory(&self.config, self.model.root(), &serial, &cr_url, number)
    }

    /// The device's state as the simulator creates it (the model with its factory values).
    pub fn cpe(&self, number: u64) -> CpeState {
        let mut cpe = CpeState::new(ParameterTree::new(self.model.clone()));
        for (path, value, value_type) in self.factory(number) {
            if !cpe.tree.set_value(&path, &value) {
                cpe.tree.insert(path, Node::parameter(value, value_type, false));
            }
        }
        cpe
    }

    /// The parameters the device's periodic Informs carry.
    pub fn inform_parameters(&self, number: u64) -> Vec<ParameterValue> {
        inform::parameters(&self.cpe(number)).0
    }

    /// The tree a full discovery of device 0 stores (values as GetParameterValues returns them:
    /// secrets empty), each row flagged when the Inform carries it. Other devices differ only
    /// in the values of [`factory`](Self::factory) paths.
    pub fn template(&self) -> Vec<TemplateRow> {
        let cpe = self.cpe(0);
        let inform: BTreeSet<String> = inform::parameters(&cpe).0.into_iter().map(|p| p.name).collect();
        cpe.tree
            .walk("")
            .map(|(path, node)| {
                let (value, value_type) = if node.object {
                    (None, String::new())
                } else {
                    (Some(visible(path, &node.value, &node.value_type)), node.value_type.as_str().to_owned())
                };
                TemplateRow {
                    path: path.to_owned(),
                    value,
                    value_type,
                    writable: node.writable,
                    is_object: node.object,
                    inform: inform.contains(path),
                }
            })
            .collect()
    }

    /// The per-device values written over the template: the factory values as
    /// GetParameterValues would read them back.
    pub fn overrides(&self, number: u64) -> Vec<(String, String)> {
        self.factory(number)
            .into_iter()
            .map(|(path, value, value_type)| {
                // An existing node keeps its own type (`set_value` changes only the value).
                let value_type = self.model.node(&path).map_or(value_type, |n| n.value_type.clone());
                let value = visible(&path, &value, &value_type);
                (path, value)
            })
            .collect()
    }
}

/// A value as Roost stores it: empty for secrets, both those the simulator reads back empty
/// and those Roost refuses to keep in clear.
fn visible(path: &str, value: &str, value_type: &ValueType) -> String {
    if is_secret(path, value_type) || roost_cwmp::is_secret_parameter(path) { String::new() } else { value.to_owned() }
}

/// The digest Roost keeps of the parameters of a device's last Inform (`devices.inform_digest`).
pub use roost::store::devices::inform_digest;

#[cfg(test)]
mod tests {

    use roost_sim::{Fleet, FleetConfig, StartMode};

    use super::*;

    /// The mirror must agree with the simulator itself: identity, Inform parameters and every
    /// factory value, for both bundled models.
    #[tokio::test]
    async fn image_matches_what_roost_sim_devices_report() {
        for kind in [DataModelKind::Tr098, DataModelKind::Tr181] {
            let model = Arc::new(DataModel::bundled(kind).unwrap());
            let mut config = FleetConfig::new("http://127.0.0.1:9/", model.clone());
            config.devices = 3;
            config.serial_prefix = "BENCH".to_owned();
            config.first_serial = 0;
            config.start = StartMode::Manual;
            config.periodic_interval = Some(Duration::from_secs(3600));
            let fleet = Fleet::start(config).await.unwrap();
            let settings = SimSettings {
                serial_prefix: "BENCH".to_owned(),
                cr_advertise: fleet.connection_request_addr().to_string(),
                acs_url: "http://127.0.0.1:9/".to_owned(),
                interval: Duration::from_secs(3600),
            };
            let image = FleetImage::new(model, settings);
            for (i, device) in fleet.devices().iter().enumerate() {
                let n = i as u64;
                assert_eq!(device.identity(), &image.identity(n), "{kind:?}");
                assert_eq!(device.device_id(), image.device_id(n));
                let sim_inform = device.with_state(|cpe| inform::parameters(cpe).0);
                assert_eq!(sim_inform, image.inform_parameters(n), "{kind:?}");
                for (path, value) in image.overrides(n) {
                    assert_eq!(device.value(&path).as_deref(), Some(value.as_str()), "{path}");
                }
                // The whole tree, node for node.
                let theirs: Vec<(String, Node)> =
                    device.with_state(|cpe| cpe.tree.walk("").map(|(k, v)| (k.to_owned(), v.clone())).collect());
                let cpe = image.cpe(n);
                let ours: Vec<(String, Node)> = cpe.tree.walk("").map(|(k, v)| (k.to_owned(), v.clone())).collect();
                assert!(theirs == ours, "{kind:?}: trees differ for device {n}");
            }
            let template = image.template();
            assert_eq!(template.iter().filter(|r| r.inform).count(), image.inform_parameters(0).len());
            assert!(template.iter().any(|r| r.is_object && r.path == image.model.root()));
            fleet.stop().await;
        }
    }
}
