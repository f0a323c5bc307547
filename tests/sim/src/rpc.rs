//! The CPE side of the ACS's RPCs, applied to one device's parameter tree with the answers and
//! faults real firmware gives.
//!
//! Everything here is synchronous and free of I/O: [`CpeState::handle`] takes a decoded
//! request and returns the response body plus, for RPCs whose work happens after the session
//! (Reboot, Download, …), an [`AfterSession`] for the session driver to carry out.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use roost_cwmp::fault::{SetParameterValuesFault, cpe_codes};
use roost_cwmp::{
    AcsRequest, CpeBody, CpeResponse, Download, Fault, ParameterAttribute, ParameterInfo, ParameterValue,
    SetParameterAttribute, Upload, ValueType,
};

use crate::quirks::Quirks;
use crate::tree::{DataModelKind, Node, ParameterTree, last_segment, natural_cmp, parent};

/// What this CPE answers to GetRPCMethods: the methods [`CpeState::handle`] implements.
pub const SUPPORTED_METHODS: [&str; 13] = [
    "GetRPCMethods",
    "SetParameterValues",
    "GetParameterValues",
    "GetParameterNames",
    "SetParameterAttributes",
    "GetParameterAttributes",
    "AddObject",
    "DeleteObject",
    "Reboot",
    "Download",
    "Upload",
    "FactoryReset",
    "ScheduleInform",
];

/// Timestamps CWMP uses for "unknown" (DownloadResponse with Status 1, for instance).
pub const UNKNOWN_TIME: &str = "0001-01-01T00:00:00Z";

/// Work an RPC asks for that a real CPE does only once the session has ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AfterSession {
    Reboot {
        command_key: String,
    },
    FactoryReset,
    Download(Download),
    Upload(Upload),
    ScheduleInform {
        delay_seconds: u32,
        command_key: String,
    },
    /// `DiagnosticsState` was set to `Requested` on this object (e.g. `…IPPingDiagnostics.`).
    Diagnostics {
        object: String,
    },
}

/// The answer to one ACS request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handled {
    pub body: CpeBody,
    pub after: Option<AfterSession>,
}

impl Handled {
    fn response(response: CpeResponse) -> Self {
        Self { body: CpeBody::Response(response), after: None }
    }

    fn fault(fault: Fault) -> Self {
        Self { body: CpeBody::Fault(fault), after: None }
    }

    fn from_result(result: Result<CpeResponse, Fault>) -> Self {
        match result {
            Ok(response) => Self::response(response),
            Err(fault) => Self::fault(fault),
        }
    }
}

/// Notification and access list of one parameter (SetParameterAttributes).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Attributes {
    pub notification: u32,
    pub access_list: Vec<String>,
}

/// A device's configuration state: its tree, attributes and the bookkeeping RPCs need.
#[derive(Debug, Clone)]
pub struct CpeState {
    pub tree: ParameterTree,
    attributes: HashMap<String, Attributes>,
    /// Highest instance number ever handed out per table, so deleted numbers are not reused.
    last_instance: HashMap<String, u32>,
    booted_at: Instant,
    /// Parameters with passive or active notification whose value the device changed itself,
    /// reported with `4 VALUE CHANGE` in the next Inform.
    changed: BTreeSet<String>,
    /// Refuse a SetParameterValues whose `xsi:type` differs from the parameter's (9006), as
    /// strict firmware does; lenient firmware converts.
    pub strict_types: bool,
    /// Firmware habits the RPC handlers reproduce ([`Quirks::gpn_leaves_only`],
    /// [`Quirks::spv_refuse`]); shared by a fleet's devices.
    pub quirks: Arc<Quirks>,
}

/// A health figure as a live device shows it `up` seconds after boot, from its exported value:
/// traffic counters grow (100 kbit/s each way), the CPU load and free memory wander, every ten
/// seconds. Diagnostics' own byte counts (`TotalBytesReceived` of a speed test) stay as set.
fn live_figure(path: &str, exported: &str, up: u64) -> Option<String> {
    let base: u64 = exported.trim().parse().ok()?;
    let step = up / 10;
    if path.ends_with(".Stats.BytesSent")
        || path.ends_with(".Stats.BytesReceived")
        || path.ends_with("WANCommonInterfaceConfig.TotalBytesSent")
        || path.ends_with("WANCommonInterfaceConfig.TotalBytesReceived")
    {
        Some(base.saturating_add(up.saturating_mul(12_500)).to_string())
    } else if path.ends_with("ProcessStatus.CPUUsage") || path.ends_with("DeviceInfo.X_HW_CpuUsed") {
        Some(((base + step * 7) % 60 + 1).to_string())
    } else if path.ends_with("MemoryStatus.Free") {
        Some(base.saturating_sub(step % 16 * 1024).to_string())
    } else {
        None
    }
}

impl CpeState {
    pub fn new(tree: ParameterTree) -> Self {
        Self {
            tree,
            attributes: HashMap::new(),
            last_instance: HashMap::new(),
            booted_at: Instant::now(),
            changed: BTreeSet::new(),
            strict_types: true,
            quirks: Arc::default(),
        }
    }

    fn path(&self, relative: &str) -> String {
        format!("{}{relative}", self.tree.root())
    }

    fn uptime_path(&self) -> String {
        self.path("DeviceInfo.UpTime")
    }

    fn parameter_key_path(&self) -> String {
        self.path("ManagementServer.ParameterKey")
    }

    /// A parameter's real value (passwords included) and type; `DeviceInfo.UpTime` counts
    /// from the last boot, and the other health figures move as on a live device
    /// ([`live_figure`]).
    pub fn value(&self, path: &str) -> Option<(String, ValueType)> {
        let (value, value_type) = self.tree.get(path)?;
        let up = self.booted_at.elapsed().as_secs();
        if path == self.uptime_path() {
            return Some((up.to_string(), value_type.clone()));
        }
        if let Some(live) = live_figure(path, value, up) {
            return Some((live, value_type.clone()));
        }
        Some((value.to_owned(), value_type.clone()))
    }

    /// The value as GetParameterValues and Informs show it: secrets read back empty.
    pub fn visible_value(&self, path: &str) -> Option<ParameterValue> {
        let (value, value_type) = self.value(path)?;
        let value = if is_secret(path, &value_type) { String::new() } else { value };
        Some(ParameterValue { name: path.to_owned(), value, value_type })
    }

    pub fn attributes(&self, path: &str) -> Attributes {
        self.attributes.get(path).cloned().unwrap_or_default()
    }

    /// Changes a value as the device itself would (a user on the web UI, a DHCP lease).
    /// Returns the parameter's notification setting, `None` when there is no such parameter.
    pub fn set_local(&mut self, path: &str, value: &str) -> Option<u32> {
        let old = self.tree.get(path)?.0.to_owned();
        self.tree.set_value(path, value);
        let notification = self.attributes(path).notification;
        if notification > 0 && old != value {
            self.changed.insert(path.to_owned());
        }
        Some(notification)
    }

    /// Parameters changed locally since the last delivered Inform.
    pub fn changed_parameters(&self) -> impl Iterator<Item = &str> {
        self.changed.iter().map(String::as_str)
    }

    /// Forgets the changes an acknowledged Inform reported.
    pub fn clear_changed(&mut self, delivered: &[String]) {
        for path in delivered {
            self.changed.remove(path);
        }
    }

    /// Restarts the uptime counter.
    pub fn reboot(&mut self) {
        self.booted_at = Instant::now();
    }

    /// Back to the shipped configuration: every change, attribute and instance counter is lost.
    pub fn factory_reset(&mut self) {
        self.tree.reset();
        self.attributes.clear();
        self.last_instance.clear();
        self.changed.clear();
        self.booted_at = Instant::now();
    }

    /// Applies one ACS request.
    pub fn handle(&mut self, request: &AcsRequest) -> Handled {
        match request {
            AcsRequest::GetRpcMethods => Handled::response(CpeResponse::GetRpcMethods {
                methods: SUPPORTED_METHODS.iter().map(|m| (*m).to_owned()).collect(),
            }),
            AcsRequest::GetParameterNames { parameter_path, next_level } => Handled::from_result(
                self.get_parameter_names(parameter_path, *next_level)
                    .map(|parameters| CpeResponse::GetParameterNames { parameters }),
            ),
            AcsRequest::GetParameterValues { names } => Handled::from_result(
                self.get_parameter_values(names).map(|parameters| CpeResponse::GetParameterValues { parameters }),
            ),
            AcsRequest::SetParameterValues { values, parameter_key } => {
                let (result, diagnostics) = self.apply_parameter_values(values, parameter_key);
                let after = diagnostics.map(|object| AfterSession::Diagnostics { object });
                match result {
                    Ok(()) => Handled { body: CpeBody::Response(CpeResponse::SetParameterValues { status: 0 }), after },
                    // A non-atomic refusal may still have requested a diagnostic.
                    Err(fault) => Handled { body: CpeBody::Fault(fault), after },
                }
            }
            AcsRequest::GetParameterAttributes { names } => Handled::from_result(
                self.get_parameter_attributes(names)
                    .map(|parameters| CpeResponse::GetParameterAttributes { parameters }),
            ),
            AcsRequest::SetParameterAttributes { attributes } => Handled::from_result(
                self.set_parameter_attributes(attributes).map(|()| CpeResponse::SetParameterAttributes),
            ),
            AcsRequest::AddObject { object_name, parameter_key } => Handled::from_result(
                self.add_object(object_name, parameter_key)
                    .map(|instance_number| CpeResponse::AddObject { instance_number, status: 0 }),
            ),
            AcsRequest::DeleteObject { object_name, parameter_key } => Handled::from_result(
                self.delete_object(object_name, parameter_key).map(|()| CpeResponse::DeleteObject { status: 0 }),
            ),
            AcsRequest::Reboot { command_key } => Handled {
                body: CpeBody::Response(CpeResponse::Reboot),
                after: Some(AfterSession::Reboot { command_key: command_key.clone() }),
            },
            AcsRequest::FactoryReset => {
                Handled { body: CpeBody::Response(CpeResponse::FactoryReset), after: Some(AfterSession::FactoryReset) }
            }
            AcsRequest::Download(download) => match check_transfer_url(&download.url) {
                Err(fault) => Handled::fault(fault),
                Ok(()) => Handled {
                    body: CpeBody::Response(CpeResponse::Download {
                        status: 1,
                        start_time: UNKNOWN_TIME.to_owned(),
                        complete_time: UNKNOWN_TIME.to_owned(),
                    }),
                    after: Some(AfterSession::Download(download.clone())),
                },
            },
            AcsRequest::Upload(upload) => match check_transfer_url(&upload.url) {
                Err(fault) => Handled::fault(fault),
                Ok(()) => Handled {
                    body: CpeBody::Response(CpeResponse::Upload {
                        status: 1,
                        start_time: UNKNOWN_TIME.to_owned(),
                        complete_time: UNKNOWN_TIME.to_owned(),
                    }),
                    after: Some(AfterSession::Upload(upload.clone())),
                },
            },
            AcsRequest::ScheduleInform { delay_seconds, command_key } => Handled {
                body: CpeBody::Response(CpeResponse::ScheduleInform),
                after: Some(AfterSession::ScheduleInform {
                    delay_seconds: *delay_seconds,
                    command_key: command_key.clone(),
                }),
            },
            _ => Handled::fault(method_not_supported()),
        }
    }

    /// GetParameterNames (A.3.2.3).
    pub fn get_parameter_names(&self, path: &str, next_level: bool) -> Result<Vec<ParameterInfo>, Fault> {
        let info = |(name, node): (&str, &Node)| ParameterInfo { name: name.to_owned(), writable: node.writable };
        // Quirk: firmware that lists leaves only when asked for a whole subtree.
        let listed = |node: &Node| !(self.quirks.gpn_leaves_only && node.object);
        if path.is_empty() {
            let root = self.tree.root();
            return if next_level {
                Ok(self.tree.node(root).map(|n| info((root, n))).into_iter().collect())
            } else {
                Ok(sorted(self.tree.walk("").filter(|(_, n)| listed(n)).map(info).collect()))
            };
        }
        let node = self.tree.node(path).ok_or_else(invalid_name)?;
        if !node.object {
            // A full parameter name allows only NextLevel=false.
            return if next_level { Err(invalid_arguments()) } else { Ok(vec![info((path, node))]) };
        }
        let list = if next_level {
            self.tree.children(path).map(info).collect()
        } else {
            self.tree.walk(path).filter(|(_, n)| listed(n)).map(info).collect()
        };
        Ok(sorted(list))
    }

    /// Parameters a name refers to: itself, every parameter below a partial path, or
    /// everything for the empty path.
    fn expand(&self, name: &str) -> Result<Vec<String>, Fault> {
        if name.is_empty() || name.ends_with('.') {
            if !name.is_empty() && !self.tree.node(name).is_some_and(|n| n.object) {
                return Err(invalid_name());
            }
            let mut leaves: Vec<String> =
                self.tree.walk(name).filter(|(_, n)| !n.object).map(|(k, _)| k.to_owned()).collect();
            leaves.sort_by(|a, b| natural_cmp(a, b));
            Ok(leaves)
        } else if self.tree.has_parameter(name) {
            Ok(vec![name.to_owned()])
        } else {
            Err(invalid_name())
        }
    }

    /// GetParameterValues (A.3.2.2); secrets read back empty.
    pub fn get_parameter_values(&self, names: &[String]) -> Result<Vec<ParameterValue>, Fault> {
        let mut out = Vec::new();
        for name in names {
            for path in self.expand(name)? {
                out.extend(self.visible_value(&path));
            }
        }
        Ok(out)
    }

    /// SetParameterValues (A.3.2.1): all or nothing. Returns the diagnostics object whose
    /// `DiagnosticsState` became `Requested`, if any.
    ///
    /// With [`Quirks::spv_refuse`], a request naming a refused parameter faults with 9003 yet
    /// applies its valid parameters (see [`Quirks`]).
    pub fn set_parameter_values(
        &mut self,
        values: &[ParameterValue],
        parameter_key: &str,
    ) -> Result<Option<String>, Fault> {
        let (result, diagnostics) = self.apply_parameter_values(values, parameter_key);
        result.map(|()| diagnostics)
    }

    /// [`set_parameter_values`](Self::set_parameter_values), with the diagnostics object also
    /// when a non-atomic refusal faults the request after applying the rest.
    fn apply_parameter_values(
        &mut self,
        values: &[ParameterValue],
        parameter_key: &str,
    ) -> (Result<(), Fault>, Option<String>) {
        let mut faults = Vec::new();
        let mut seen = HashSet::new();
        let mut valid = Vec::with_capacity(values.len());
        let mut refused = false;
        for pv in values {
            let bad = |code: u32, string: &str| SetParameterValuesFault {
                parameter_name: pv.name.clone(),
                code,
                string: string.to_owned(),
            };
            if !seen.insert(pv.name.as_str()) {
                faults.push(bad(cpe_codes::INVALID_ARGUMENTS, "Parameter set twice in one request"));
                continue;
            }
            if let Some(code) = self.quirks.refusal(&pv.name) {
                refused = true;
                faults.push(bad(code, refusal_string(code)));
                continue;
            }
            let Some(node) = self.tree.node(&pv.name).filter(|n| !n.object) else {
                faults.push(bad(cpe_codes::INVALID_PARAMETER_NAME, "Invalid parameter name"));
                continue;
            };
            if !node.writable {
                faults.push(bad(cpe_codes::NON_WRITABLE_PARAMETER, "Attempt to set a non-writable parameter"));
            } else if self.strict_types && types_conflict(&pv.value_type, &node.value_type) {
                faults.push(bad(cpe_codes::INVALID_PARAMETER_TYPE, "Invalid parameter type"));
            } else if !node.value_type.accepts(&pv.value) {
                faults.push(bad(cpe_codes::INVALID_PARAMETER_VALUE, "Invalid parameter value"));
            } else {
                valid.push(pv);
            }
        }
        // Standard firmware applies nothing when anything is wrong; the non-atomic kind
        // (a refused parameter) applies what it could before faulting.
        if !faults.is_empty() && !refused {
            valid.clear();
        }
        let mut diagnostics = None;
        for pv in valid {
            self.tree.set_value(&pv.name, &pv.value);
            if last_segment(&pv.name) == "DiagnosticsState" && pv.value == "Requested" {
                diagnostics = parent(&pv.name).map(str::to_owned);
            }
        }
        if !faults.is_empty() {
            // The ParameterKey marks fully applied configuration only.
            let mut fault = invalid_arguments();
            fault.set_parameter_values_faults = faults;
            return (Err(fault), diagnostics);
        }
        self.set_parameter_key(parameter_key);
        (Ok(()), diagnostics)
    }

    fn set_parameter_key(&mut self, key: &str) {
        let path = self.parameter_key_path();
        self.tree.set_value(&path, key);
    }

    /// GetParameterAttributes (A.3.2.5).
    pub fn get_parameter_attributes(&self, names: &[String]) -> Result<Vec<ParameterAttribute>, Fault> {
        let mut out = Vec::new();
        for name in names {
            for path in self.expand(name)? {
                let a = self.attributes(&path);
                out.push(ParameterAttribute { name: path, notification: a.notification, access_list: a.access_list });
            }
        }
        Ok(out)
    }

    /// SetParameterAttributes (A.3.2.4): validated in full before anything changes.
    pub fn set_parameter_attributes(&mut self, attributes: &[SetParameterAttribute]) -> Result<(), Fault> {
        let mut plan = Vec::new();
        for attr in attributes {
            if attr.notification_change && attr.notification > 6 {
                return Err(invalid_arguments());
            }
            plan.push((self.expand(&attr.name)?, attr));
        }
        for (paths, attr) in plan {
            for path in paths {
                let entry = self.attributes.entry(path).or_default();
                if attr.notification_change {
                    entry.notification = attr.notification;
                }
                if attr.access_list_change {
                    entry.access_list = attr.access_list.clone();
                }
            }
        }
        self.attributes.retain(|_, a| *a != Attributes::default());
        Ok(())
    }

    /// AddObject (A.3.2.6): a new instance numbered after the highest ever used, shaped like
    /// an existing instance with default values.
    pub fn add_object(&mut self, table: &str, parameter_key: &str) -> Result<u32, Fault> {
        if !table.ends_with('.') || !self.tree.is_table(table) {
            return Err(invalid_name());
        }
        if !self.tree.node(table).is_some_and(|n| n.writable) {
            // A fixed table (Ethernet interfaces, hosts) is read-only to the ACS.
            return Err(invalid_name());
        }
        let existing = self.tree.instances(table);
        let highest = existing.last().copied().unwrap_or(0).max(self.last_instance.get(table).copied().unwrap_or(0));
        let number =
            highest.checked_add(1).ok_or_else(|| Fault::new(cpe_codes::RESOURCES_EXCEEDED, "Resources exceeded"))?;
        self.last_instance.insert(table.to_owned(), number);

        let instance = format!("{table}{number}.");
        let template = existing.first().map(|n| format!("{table}{n}."));
        let mut nodes = vec![(instance.clone(), Node::object(true))];
        if let Some(template) = &template {
            for (path, node) in self.tree.walk(template) {
                let rest = &path[template.len()..];
                if rest.is_empty() {
                    nodes[0].1.writable = node.writable;
                    continue;
                }
                // Nested tables start empty, as on a freshly created instance.
                if rest.split('.').any(|s| s.parse::<u32>().is_ok()) {
                    continue;
                }
                let mut copy = node.clone();
                if !copy.object {
                    copy.value = default_value(&copy.value_type).to_owned();
                }
                nodes.push((format!("{instance}{rest}"), copy));
            }
        }
        for (path, node) in nodes {
            self.tree.insert(path, node);
        }
        if self.tree.kind() == DataModelKind::Tr181 {
            // TR-181 instances get an Alias the CPE picks, `cpe-` prefixed.
            self.tree.set_value(&format!("{instance}Alias"), &format!("cpe-{number}"));
        }
        self.update_entry_count(table);
        self.set_parameter_key(parameter_key);
        Ok(number)
    }

    /// DeleteObject (A.3.2.7).
    pub fn delete_object(&mut self, instance: &str, parameter_key: &str) -> Result<(), Fault> {
        let is_instance = instance.ends_with('.')
            && last_segment(instance).parse::<u32>().is_ok()
            && self.tree.node(instance).is_some_and(|n| n.object);
        let table = parent(instance).map(str::to_owned);
        let Some(table) = table.filter(|t| is_instance && self.tree.is_table(t)) else {
            return Err(invalid_name());
        };
        self.tree.remove_subtree(instance);
        self.attributes.retain(|k, _| !k.starts_with(instance));
        self.changed.retain(|k| !k.starts_with(instance));
        self.update_entry_count(&table);
        self.set_parameter_key(parameter_key);
        Ok(())
    }

    /// Keeps `<Table>NumberOfEntries` in the parent object true, as firmware does.
    fn update_entry_count(&mut self, table: &str) {
        let Some(owner) = parent(table) else { return };
        let name = last_segment(table);
        // TR-098 names a few counters irregularly.
        let irregular = match name {
            "WANConnectionDevice" => "WANConnection",
            "LANEthernetInterfaceConfig" => "LANEthernetInterface",
            "LANUSBInterfaceConfig" => "LANUSBInterface",
            "WLANConfiguration" => "LANWLANConfiguration",
            other => other,
        };
        let count = self.tree.instances(table).len().to_string();
        for counter in [format!("{owner}{name}NumberOfEntries"), format!("{owner}{irregular}NumberOfEntries")] {
            if self.tree.set_value(&counter, &count) {
                break;
            }
        }
    }
}

/// Whether a parameter is one firmware never reads back: passwords, passphrases, keys.
pub fn is_secret(path: &str, value_type: &ValueType) -> bool {
    if *value_type != ValueType::String {
        // `X_HW_PasswordMode` and friends are settings, not secrets.
        return false;
    }
    let name = last_segment(path).to_ascii_lowercase();
    ["password", "passphrase", "presharedkey", "wepkey"].iter().any(|s| name.contains(s))
}

/// Whether an `xsi:type` the ACS sent contradicts the parameter's type. Unknown spellings are
/// given the benefit of the doubt.
fn types_conflict(sent: &ValueType, stored: &ValueType) -> bool {
    !matches!(sent, ValueType::Other(_)) && !matches!(stored, ValueType::Other(_)) && sent != stored
}

fn default_value(value_type: &ValueType) -> &'static str {
    match value_type {
        ValueType::Int | ValueType::UnsignedInt | ValueType::Long | ValueType::UnsignedLong => "0",
        ValueType::Boolean => "false",
        ValueType::DateTime => UNKNOWN_TIME,
        _ => "",
    }
}

fn sorted(mut list: Vec<ParameterInfo>) -> Vec<ParameterInfo> {
    list.sort_by(|a, b| natural_cmp(&a.name, &b.name));
    list
}

/// The FaultString firmware puts beside a refusal code.
fn refusal_string(code: u32) -> &'static str {
    match code {
        cpe_codes::INTERNAL_ERROR => "Internal error",
        cpe_codes::INVALID_PARAMETER_NAME => "Invalid parameter name",
        cpe_codes::INVALID_PARAMETER_TYPE => "Invalid parameter type",
        cpe_codes::INVALID_PARAMETER_VALUE => "Invalid parameter value",
        cpe_codes::NON_WRITABLE_PARAMETER => "Attempt to set a non-writable parameter",
        // 9001 and anything else.
        _ => "Request denied",
    }
}

fn check_transfer_url(url: &str) -> Result<(), Fault> {
    let scheme = url.split_once("://").map(|(s, _)| s.to_ascii_lowercase());
    match scheme.as_deref() {
        Some("http" | "https") => Ok(()),
        _ => Err(Fault::new(cpe_codes::UNSUPPORTED_PROTOCOL, "Unsupported protocol for file transfer")),
    }
}

pub fn method_not_supported() -> Fault {
    Fault::new(cpe_codes::METHOD_NOT_SUPPORTED, "Method not supported")
}

fn invalid_name() -> Fault {
    Fault::new(cpe_codes::INVALID_PARAMETER_NAME, "Invalid parameter name")
}

fn invalid_arguments() -> Fault {
    Fault::new(cpe_codes::INVALID_ARGUMENTS, "Invalid arguments")
}

#[cfg(test)]
mod tests;
