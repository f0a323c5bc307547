//! What goes into an Inform: the identity, the pending events, and the parameters firmware
//! always reports for its data model (the "forced inform" parameters) plus any changed
//! parameters the ACS asked to be notified about.

use roost_cwmp::{DeviceIdStruct, EventStruct, Inform, ParameterValue, TransferComplete};

use crate::auth::Challenge;
use crate::rpc::CpeState;
use crate::tree::DataModelKind;

/// TR-098 forced Inform parameters, relative to `InternetGatewayDevice.`.
const TR098_FORCED: [&str; 7] = [
    "DeviceSummary",
    "DeviceInfo.SpecVersion",
    "DeviceInfo.HardwareVersion",
    "DeviceInfo.SoftwareVersion",
    "DeviceInfo.ProvisioningCode",
    "ManagementServer.ConnectionRequestURL",
    "ManagementServer.ParameterKey",
];

/// TR-181 forced Inform parameters, relative to `Device.`.
const TR181_FORCED: [&str; 7] = [
    "RootDataModelVersion",
    "DeviceInfo.HardwareVersion",
    "DeviceInfo.SoftwareVersion",
    "DeviceInfo.ProvisioningCode",
    "ManagementServer.ConnectionRequestURL",
    "ManagementServer.ParameterKey",
    "ManagementServer.AliasBasedAddressing",
];

/// Everything a session needs from the device's state, taken in one lock at session start.
#[derive(Debug, Clone)]
pub(crate) struct Prepared {
    pub inform: Inform,
    pub acs_url: String,
    pub username: String,
    pub password: String,
    pub challenge: Option<Challenge>,
    pub transfers: Vec<TransferComplete>,
    /// The value-change parameters this Inform reports.
    pub changed: Vec<String>,
}

/// Builds an event.
pub fn event(code: &str, command_key: &str) -> EventStruct {
    EventStruct { code: code.to_owned(), command_key: command_key.to_owned() }
}

/// Adds an event unless already pending. Single events (`0 BOOTSTRAP` … `8 DIAGNOSTICS
/// COMPLETE`) are not cumulative; `M` events are distinct per CommandKey.
pub fn push_event(events: &mut Vec<EventStruct>, new: EventStruct) {
    let duplicate =
        events.iter().any(|e| e.code == new.code && (!new.code.starts_with("M ") || e.command_key == new.command_key));
    if !duplicate {
        // `0 BOOTSTRAP` goes first: some ACSs only look at the first event.
        if new.code == "0 BOOTSTRAP" {
            events.insert(0, new);
        } else {
            events.push(new);
        }
    }
}

/// The WAN address parameter firmware reports in TR-098 Informs: the first connection with an
/// address, else the first such parameter at all.
pub fn wan_address_parameter(cpe: &CpeState) -> Option<String> {
    let root = format!("{}WANDevice.", cpe.tree.root());
    let mut first = None;
    for (path, node) in cpe.tree.walk(&root) {
        let is_address = !node.object
            && path.ends_with(".ExternalIPAddress")
            && (path.contains(".WANIPConnection.") || path.contains(".WANPPPConnection."));
        if !is_address {
            continue;
        }
        if !node.value.is_empty() {
            return Some(path.to_owned());
        }
        first.get_or_insert_with(|| path.to_owned());
    }
    first
}

/// The Inform parameter list: forced parameters that exist in the tree, then changed ones.
pub fn parameters(cpe: &CpeState) -> (Vec<ParameterValue>, Vec<String>) {
    let root = cpe.tree.root().to_owned();
    let forced: &[&str] = match cpe.tree.kind() {
        DataModelKind::Tr098 => &TR098_FORCED,
        DataModelKind::Tr181 => &TR181_FORCED,
    };
    let mut names: Vec<String> = forced.iter().map(|p| format!("{root}{p}")).collect();
    if cpe.tree.kind() == DataModelKind::Tr098 {
        names.extend(wan_address_parameter(cpe));
    }
    let changed: Vec<String> = cpe.changed_parameters().map(str::to_owned).collect();
    for path in &changed {
        if !names.contains(path) {
            names.push(path.clone());
        }
    }
    let values = names.iter().filter_map(|name| cpe.visible_value(name)).collect();
    (values, changed)
}

/// Builds the Inform itself.
pub fn build(
    cpe: &CpeState,
    identity: &DeviceIdStruct,
    events: Vec<EventStruct>,
    retry_count: u32,
    current_time: String,
) -> (Inform, Vec<String>) {
    let (parameters, changed) = parameters(cpe);
    let inform =
        Inform { device_id: identity.clone(), events, max_envelopes: 1, current_time, retry_count, parameters };
    (inform, changed)
}
