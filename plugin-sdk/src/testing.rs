//! Unit-test plugins without a server: run them natively against an in-memory device.
//!
//! ```ignore
//! use roost_plugin_sdk::testing::{TestDevice, exports};
//!
//! // A real device's tree; `include_str!` one of your own the same way.
//! let mut device = TestDevice::from_genieacs_csv(exports::HUAWEI_EG8145V5_TR098)?;
//! let run = device.run::<MyProvision>(&[("ssid", "Roost")]);
//! assert!(run.result.is_ok());
//! assert_eq!(run.declarations[0].path, "InternetGatewayDevice.LANDevice.1.WLANConfiguration.*.SSID");
//! let converged = device.converge::<MyProvision>(&[("ssid", "Roost")]).unwrap();
//! assert_eq!(device.text("InternetGatewayDevice.LANDevice.1.WLANConfiguration.1.SSID"), Some("Roost".into()));
//! ```
//!
//! [`TestDevice::converge`] applies declarations the way the host does (values written where they
//! differ, instances added and deleted) and runs the plugin again until nothing changes, so a test
//! sees the rounds a real session would take.

use std::cell::RefCell;
use std::marker::PhantomData;
use std::rc::Rc;
use std::time::Duration;

use crate::bindings::provision::roost::plugin::declare::Declaration as WitDeclaration;
use crate::pattern::{Pattern, Segment};
use crate::sys::Host;
use crate::tree::{Node, ParameterTree};
use crate::{
    Adapter, CellularReport, DeviceFacts, Diagnostic, DiagnosticKind, DiagnosticReport, Error, ErrorKind, HealthReport,
    Identification, Level, ManagementSettings, Parameter, PppoeSettings, Provision, Result, Value, WifiNetwork,
    WifiSettings,
};

/// Real devices' parameter trees, as GenieACS (or genieacs-sim) holds them, for [`TestDevice::from_genieacs_csv`]:
/// the exports in Roost's `tests/data/cpe/` (whose README says where each comes from).
///
/// ```ignore
/// let mut device = TestDevice::from_genieacs_csv(exports::TPLINK_XX230V_TR181).unwrap();
/// ```
pub mod exports {
    /// TP-Link XX230v, TR-181 (`Device.`), 5,420 parameters.
    pub const TPLINK_XX230V_TR181: &str = include_str!("../../tests/data/cpe/tplink-xx230v_tr181_genieacs-export.csv");
    /// Huawei EG8145V5 GPON ONT, TR-098 (`InternetGatewayDevice.`), 3,147 parameters.
    pub const HUAWEI_EG8145V5_TR098: &str =
        include_str!("../../tests/data/cpe/huawei-eg8145v5_tr098_genieacs-export.csv");
    /// ZTE ZXHN H199A, TR-098, 1,457 parameters.
    pub const ZTE_ZXHN_H199A_TR098: &str =
        include_str!("../../tests/data/cpe/zte-zxhn-h199a_tr098_genieacs-export.csv");
    /// Huawei BM632w WiMAX gateway, TR-098 1.1, 792 parameters (genieacs-sim's 5-column layout).
    pub const HUAWEI_BM632W_TR098: &str = include_str!("../../tests/data/cpe/huawei-bm632w_tr098_genieacs-sim.csv");
    /// Nokia G-1425G-A ONT, TR-098, 3,188 parameters.
    pub const NOKIA_G1425GA_TR098: &str =
        include_str!("../../tests/data/cpe/nokia-g-1425g-a_tr098_genieacs-export.csv");
}

/// Rounds after which [`TestDevice::converge`] gives up, as the host does.
pub use crate::MAX_ROUNDS;

/// Declarations one run may make before `declare` fails with `limit`, as the host's default.
pub const MAX_DECLARATIONS: usize = 10_000;

/// One declaration a run made.
#[derive(Debug, Clone, PartialEq)]
pub struct Declared {
    /// The pattern.
    pub path: String,
    /// The desired value.
    pub value: Option<Value>,
    /// The freshness wanted.
    pub max_age: Option<Duration>,
    /// The desired instance count (min, max).
    pub instances: Option<(u32, u32)>,
}

/// What one run did.
#[derive(Debug, Clone)]
pub struct Run {
    /// What the plugin returned (or the first refused declaration).
    pub result: Result<()>,
    /// Its declarations, in order (adapter declarations made on its behalf included).
    pub declarations: Vec<Declared>,
    /// Its log messages.
    pub logs: Vec<(Level, String)>,
}

/// What [`TestDevice::converge`] did.
#[derive(Debug, Clone)]
pub struct Converged {
    /// Runs it took, the last one changing nothing.
    pub rounds: usize,
    /// Each change applied, as `set <path> = <value>`, `add <object>` or `delete <object>`.
    pub changes: Vec<String>,
    /// Log messages of every round.
    pub logs: Vec<(Level, String)>,
}

/// An in-memory device a plugin runs against.
#[derive(Debug, Clone)]
pub struct TestDevice {
    /// The parameter tree; inspect or edit it freely between runs.
    pub tree: ParameterTree,
    /// The facts `device::facts()` returns.
    pub facts: DeviceFacts,
    /// The Inform events of the session.
    pub events: Vec<String>,
    /// The device's tags.
    pub tags: Vec<String>,
    /// The plugin's configuration.
    pub config: Vec<(String, String)>,
    /// The session's clock.
    pub now_ms: u64,
    /// The seed of the generator; each run restarts it, as each round of a session does.
    pub seed: u64,
    adapter: Option<Rc<dyn AdapterCalls>>,
}

impl TestDevice {
    /// An empty device with these facts.
    pub fn new(facts: DeviceFacts) -> Self {
        TestDevice {
            tree: ParameterTree::new(),
            facts,
            events: vec!["2 PERIODIC".into()],
            tags: Vec::new(),
            config: Vec::new(),
            now_ms: 1_767_225_600_000,
            seed: 0x5eed,
            adapter: None,
        }
    }

    /// A device loaded from a GenieACS export (12 columns) or a genieacs-sim data model (5
    /// columns); its facts come from `DeviceInfo`.
    pub fn from_genieacs_csv(csv: &str) -> std::result::Result<Self, String> {
        let mut rows = parse_csv(csv).into_iter().filter(|r| !(r.len() == 1 && r[0].trim().is_empty()));
        let header = rows.next().ok_or("the CSV is empty")?;
        let col = |name: &str| header.iter().position(|h| h == name);
        let (path_col, object_col, writable_col, value_col, type_col) = (
            col("Parameter").ok_or("no Parameter column")?,
            col("Object").ok_or("no Object column")?,
            col("Writable").ok_or("no Writable column")?,
            col("Value").ok_or("no Value column")?,
            col("Value type").ok_or("no `Value type` column")?,
        );
        let mut tree = ParameterTree::new();
        for row in rows {
            let field = |i: usize| row.get(i).map(String::as_str).unwrap_or("");
            let path = field(path_col);
            if path.is_empty() || path.starts_with("DeviceID.") || path.starts_with("Events.") {
                continue;
            }
            let writable = field(writable_col) == "true";
            if field(object_col) == "true" {
                tree.insert(format!("{path}."), Node { writable, updated_ms: 1, ..Node::default() });
            } else {
                let value_type = field(type_col);
                tree.insert(
                    path,
                    Node {
                        value: Some(field(value_col).to_owned()),
                        value_type: if value_type.is_empty() { "xsd:string".into() } else { value_type.into() },
                        writable,
                        updated_ms: 1,
                    },
                );
            }
        }
        let root = ["InternetGatewayDevice", "Device"]
            .into_iter()
            .find(|r| tree.exists(&format!("{r}.")))
            .ok_or("neither InternetGatewayDevice. nor Device. in the CSV")?;
        let info = |name: &str| tree.get(&format!("{root}.DeviceInfo.{name}")).and_then(|n| n.value.clone());
        let facts = DeviceFacts {
            manufacturer: info("Manufacturer").unwrap_or_default(),
            oui: info("ManufacturerOUI").unwrap_or_default().to_ascii_uppercase(),
            product_class: info("ProductClass").unwrap_or_default(),
            serial_number: info("SerialNumber").unwrap_or_default(),
            model_name: info("ModelName"),
            software_version: info("SoftwareVersion"),
            hardware_version: info("HardwareVersion"),
            root: root.to_owned(),
        };
        let mut device = TestDevice::new(facts);
        device.tree = tree;
        Ok(device)
    }

    /// Set a leaf (creating it) with text and xsd type.
    pub fn set(&mut self, path: &str, text: &str, value_type: &str) -> &mut Self {
        self.tree.insert(
            path,
            Node { value: Some(text.into()), value_type: value_type.into(), writable: true, updated_ms: self.now_ms },
        );
        self
    }

    /// The text of a leaf.
    pub fn text(&self, path: &str) -> Option<String> {
        self.tree.get(path).and_then(|n| n.value.clone())
    }

    /// Route `intents` calls of provisions to adapter `A`, as the host does for the adapter it
    /// picked.
    pub fn with_adapter<A: Adapter + 'static>(&mut self) -> &mut Self {
        self.adapter = Some(Rc::new(AdapterRoute::<A>(PhantomData)));
        self
    }

    /// What adapter `A` says of this device.
    pub fn identify<A: Adapter>(&self) -> Option<Identification> {
        A::identify(&self.facts)
    }

    /// Run one adapter operation (`|| MyAdapter::configure_wifi(&settings)`) against the device.
    pub fn call<R>(&mut self, operation: impl FnOnce() -> Result<R>) -> (Result<R>, Run) {
        let mut out = None;
        let run = self.session(|| {
            let r = crate::__private::finish(operation());
            let status = r.as_ref().map(|_| ()).map_err(Clone::clone);
            out = Some(r);
            status
        });
        let result = out.unwrap_or_else(|| Err(Error::other("the operation did not run")));
        (result, run)
    }

    /// Run provision `P` once with `args`.
    pub fn run<P: Provision>(&mut self, args: &[(&str, &str)]) -> Run {
        let args: Vec<(String, String)> = args.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect();
        self.session(|| crate::__private::run_provision::<P>(args))
    }

    /// Run provision `P` round after round, applying its declarations, until a round changes
    /// nothing; an error when a run fails or after [`MAX_ROUNDS`].
    pub fn converge<P: Provision>(&mut self, args: &[(&str, &str)]) -> Result<Converged> {
        let mut changes = Vec::new();
        let mut logs = Vec::new();
        for round in 1..=MAX_ROUNDS {
            let run = self.run::<P>(args);
            logs.extend(run.logs);
            run.result?;
            let applied = self.apply(&run.declarations)?;
            if applied.is_empty() {
                return Ok(Converged { rounds: round, changes, logs });
            }
            changes.extend(applied);
        }
        Err(Error::other(format!("the provision did not converge in {MAX_ROUNDS} rounds")))
    }

    /// Apply declarations as the host would; returns the changes.
    pub fn apply(&mut self, declarations: &[Declared]) -> Result<Vec<String>> {
        let mut changes = Vec::new();
        for d in declarations {
            let pattern = Pattern::parse(&d.path)?;
            if let Some((min, max)) = d.instances {
                changes.extend(self.apply_instances(&pattern, min, max)?);
            }
            if let Some(value) = &d.value {
                for path in self.tree.expand(&pattern) {
                    if path.ends_with('.') {
                        continue;
                    }
                    let Some(node) = self.tree.get_mut(&path) else { continue };
                    let (text, value_type) = roost_params::coerce(value, &node.value_type, node.value.as_deref())
                        .map_err(|m| Error::invalid_argument(format!("{path}: {m}")))?;
                    if node.value.as_deref() != Some(text.as_str()) {
                        changes.push(format!("set {path} = {text}"));
                        node.value = Some(text);
                        node.value_type = value_type;
                        node.updated_ms = self.now_ms;
                    }
                }
            }
        }
        Ok(changes)
    }

    fn apply_instances(&mut self, pattern: &Pattern, min: u32, max: u32) -> Result<Vec<String>> {
        if !pattern.names_instances() {
            return Err(Error::invalid_argument(format!("{pattern} does not name instances of a table")));
        }
        let table = pattern.parent().map(|p| self.tree.expand(&p)).unwrap_or_default();
        let mut changes = Vec::new();
        for table in table {
            let matching: Vec<String> =
                self.tree.expand(pattern).into_iter().filter(|p| p.starts_with(&table)).collect();
            let count = u32::try_from(matching.len()).unwrap_or(u32::MAX);
            for extra in matching.iter().rev().take(count.saturating_sub(max) as usize) {
                self.tree.remove(extra);
                changes.push(format!("delete {extra}"));
            }
            for _ in count..min {
                let next =
                    self.tree.children(&table).iter().filter_map(|(n, _)| n.parse::<u32>().ok()).max().unwrap_or(0) + 1;
                let instance = format!("{table}{next}.");
                self.tree.insert(instance.clone(), Node { writable: true, updated_ms: self.now_ms, ..Node::default() });
                if let Some(Segment::Alias(keys)) = pattern.segments().last() {
                    for key in keys {
                        self.set(&format!("{instance}{}", key.path), &key.value, "xsd:string");
                    }
                }
                changes.push(format!("add {instance}"));
            }
        }
        Ok(changes)
    }

    fn session(&mut self, body: impl FnOnce() -> Result<()>) -> Run {
        let state = Rc::new(Session {
            device: RefCell::new(self.clone()),
            declarations: RefCell::new(Vec::new()),
            logs: RefCell::new(Vec::new()),
            rng: RefCell::new(self.seed),
        });
        let previous = CURRENT.with(|c| c.replace(Some(state.clone())));
        let result = body();
        CURRENT.with(|c| c.replace(previous));
        self.tags = state.device.borrow().tags.clone();
        Run { result, declarations: state.declarations.take(), logs: state.logs.take() }
    }
}

thread_local! {
    static CURRENT: RefCell<Option<Rc<Session>>> = const { RefCell::new(None) };
}

pub(crate) fn with_current<R>(f: impl FnOnce(&dyn Host) -> R) -> R {
    let session = CURRENT.with(|c| c.borrow().clone());
    match session {
        Some(session) => f(&*session),
        #[allow(clippy::panic)]
        None => panic!(
            "a Roost plugin API was called outside a plugin run: in tests, call the plugin through \
             roost_plugin_sdk::testing::TestDevice"
        ),
    }
}

struct Session {
    device: RefCell<TestDevice>,
    declarations: RefCell<Vec<Declared>>,
    logs: RefCell<Vec<(Level, String)>>,
    rng: RefCell<u64>,
}

impl Session {
    fn adapter(&self) -> Result<Rc<dyn AdapterCalls>> {
        self.device
            .borrow()
            .adapter
            .clone()
            .ok_or_else(|| Error::unsupported("no adapter handles this device (TestDevice::with_adapter sets one)"))
    }
}

fn param(path: &str, node: &Node) -> Parameter {
    Parameter {
        path: path.to_owned(),
        value: node.value.as_deref().map(|v| Value::from_cwmp(v, &node.value_type)),
        writable: node.writable,
        updated_ms: node.updated_ms,
    }
}

impl Host for Session {
    fn facts(&self) -> DeviceFacts {
        self.device.borrow().facts.clone()
    }
    fn id(&self) -> String {
        let d = self.device.borrow();
        format!("{}-{}-{}", d.facts.oui, d.facts.product_class, d.facts.serial_number)
    }
    fn events(&self) -> Vec<String> {
        self.device.borrow().events.clone()
    }
    fn get(&self, pattern: &str) -> Result<Vec<Parameter>> {
        let pattern = Pattern::parse(pattern)?;
        let d = self.device.borrow();
        Ok(d.tree.leaves(&pattern).iter().filter_map(|p| d.tree.get(p).map(|n| param(p, n))).collect())
    }
    fn value(&self, pattern: &str) -> Result<Option<Value>> {
        Ok(self.get(pattern)?.into_iter().find_map(|p| p.value))
    }
    fn names(&self, pattern: &str) -> Result<Vec<String>> {
        let pattern = Pattern::parse(pattern)?;
        let d = self.device.borrow();
        let mut names = d.tree.expand(&pattern);
        if !pattern.is_object() && !pattern.names_instances() && names.is_empty() {
            let object = Pattern::parse(&format!("{pattern}."))?;
            names = d.tree.expand(&object);
        }
        Ok(names)
    }
    fn instances(&self, pattern: &str) -> Result<Vec<String>> {
        let pattern = Pattern::parse(pattern)?;
        if !pattern.names_instances() {
            return Err(Error::new(ErrorKind::InvalidPath, format!("{pattern} does not name instances of a table")));
        }
        let d = self.device.borrow();
        let mut found = d.tree.expand(&pattern);
        found.sort_by_key(|p| instance_number(p));
        Ok(found)
    }
    fn declare(&self, declaration: &WitDeclaration) -> Result<()> {
        Pattern::parse(&declaration.path)?;
        if declaration.max_age_ms.is_none() && declaration.value.is_none() && declaration.instances.is_none() {
            return Err(Error::invalid_argument(format!("declaration of {} asks for nothing", declaration.path)));
        }
        if let Some(c) = declaration.instances
            && c.min > c.max
        {
            return Err(Error::invalid_argument(format!("{}: instance minimum above maximum", declaration.path)));
        }
        let mut list = self.declarations.borrow_mut();
        if list.len() >= MAX_DECLARATIONS {
            return Err(Error::new(ErrorKind::Limit, format!("more than {MAX_DECLARATIONS} declarations in one run")));
        }
        list.push(Declared {
            path: declaration.path.clone(),
            value: declaration.value.clone(),
            max_age: declaration.max_age_ms.map(Duration::from_millis),
            instances: declaration.instances.map(|c| (c.min, c.max)),
        });
        Ok(())
    }
    fn tags(&self) -> Vec<String> {
        let mut tags = self.device.borrow().tags.clone();
        tags.sort();
        tags
    }
    fn add_tag(&self, tag: &str) -> Result<()> {
        roost_params::check_tag(tag)?;
        let mut d = self.device.borrow_mut();
        if !d.tags.iter().any(|t| t == tag) {
            d.tags.push(tag.to_owned());
        }
        Ok(())
    }
    fn remove_tag(&self, tag: &str) -> Result<()> {
        roost_params::check_tag(tag)?;
        self.device.borrow_mut().tags.retain(|t| t != tag);
        Ok(())
    }
    fn log(&self, level: Level, message: &str) {
        self.logs.borrow_mut().push((level, message.to_owned()));
    }
    fn now_ms(&self) -> u64 {
        self.device.borrow().now_ms
    }
    fn next_u64(&self) -> u64 {
        roost_params::session::splitmix64(&mut self.rng.borrow_mut())
    }
    fn config_get(&self, key: &str) -> Option<String> {
        self.device.borrow().config.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone())
    }
    fn config_entries(&self) -> Vec<(String, String)> {
        let mut entries = self.device.borrow().config.clone();
        entries.sort();
        entries
    }
    fn wifi(&self, max_age_ms: u64) -> Result<Vec<WifiNetwork>> {
        self.adapter()?.wifi(max_age_ms)
    }
    fn configure_wifi(&self, settings: &WifiSettings) -> Result<()> {
        self.adapter()?.configure_wifi(settings)
    }
    fn configure_pppoe(&self, settings: &PppoeSettings) -> Result<()> {
        self.adapter()?.configure_pppoe(settings)
    }
    fn configure_management(&self, settings: &ManagementSettings) -> Result<()> {
        self.adapter()?.configure_management(settings)
    }
    fn health(&self, max_age_ms: u64) -> Result<HealthReport> {
        self.adapter()?.health(max_age_ms)
    }
    fn start_diagnostic(&self, request: &Diagnostic) -> Result<()> {
        self.adapter()?.start_diagnostic(request)
    }
    fn diagnostic_result(&self, kind: DiagnosticKind, max_age_ms: u64) -> Result<Option<DiagnosticReport>> {
        self.adapter()?.diagnostic_result(kind, max_age_ms)
    }
    fn firmware_version(&self) -> Option<String> {
        self.adapter().ok()?.firmware_version()
    }
    fn cellular(&self, max_age_ms: u64) -> Result<CellularReport> {
        self.adapter()?.cellular(max_age_ms)
    }
}

fn instance_number(path: &str) -> u64 {
    path.trim_end_matches('.').rsplit('.').next().and_then(|n| n.parse().ok()).unwrap_or(u64::MAX)
}

/// The adapter a provision's `intents` calls reach, called as a component's export would be.
trait AdapterCalls {
    fn wifi(&self, max_age_ms: u64) -> Result<Vec<WifiNetwork>>;
    fn configure_wifi(&self, settings: &WifiSettings) -> Result<()>;
    fn configure_pppoe(&self, settings: &PppoeSettings) -> Result<()>;
    fn configure_management(&self, settings: &ManagementSettings) -> Result<()>;
    fn health(&self, max_age_ms: u64) -> Result<HealthReport>;
    fn start_diagnostic(&self, request: &Diagnostic) -> Result<()>;
    fn diagnostic_result(&self, kind: DiagnosticKind, max_age_ms: u64) -> Result<Option<DiagnosticReport>>;
    fn firmware_version(&self) -> Option<String>;
    fn cellular(&self, max_age_ms: u64) -> Result<CellularReport>;
}

impl std::fmt::Debug for dyn AdapterCalls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("adapter")
    }
}

struct AdapterRoute<A>(PhantomData<A>);

impl<A: Adapter> AdapterCalls for AdapterRoute<A> {
    fn wifi(&self, max_age_ms: u64) -> Result<Vec<WifiNetwork>> {
        A::wifi(Duration::from_millis(max_age_ms))
    }
    fn configure_wifi(&self, settings: &WifiSettings) -> Result<()> {
        A::configure_wifi(settings)
    }
    fn configure_pppoe(&self, settings: &PppoeSettings) -> Result<()> {
        A::configure_pppoe(settings)
    }
    fn configure_management(&self, settings: &ManagementSettings) -> Result<()> {
        A::configure_management(settings)
    }
    fn health(&self, max_age_ms: u64) -> Result<HealthReport> {
        A::health(Duration::from_millis(max_age_ms))
    }
    fn start_diagnostic(&self, request: &Diagnostic) -> Result<()> {
        A::start_diagnostic(request)
    }
    fn diagnostic_result(&self, kind: DiagnosticKind, max_age_ms: u64) -> Result<Option<DiagnosticReport>> {
        A::diagnostic_result(kind, Duration::from_millis(max_age_ms))
    }
    fn firmware_version(&self) -> Option<String> {
        A::firmware_version()
    }
    fn cellular(&self, max_age_ms: u64) -> Result<CellularReport> {
        A::cellular(Duration::from_millis(max_age_ms))
    }
}

/// CSV records, with RFC 4180 quoting: quoted fields may hold commas (ZTE's `Standard` is
/// `"b,g,n"`), doubled quotes and line breaks.
fn parse_csv(text: &str) -> Vec<Vec<String>> {
    let mut records = Vec::new();
    let mut record = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                field.push('"');
                chars.next();
            }
            ('"', _) => quoted = !quoted,
            (',', false) => record.push(std::mem::take(&mut field)),
            ('\r', false) => {}
            ('\n', false) => {
                record.push(std::mem::take(&mut field));
                records.push(std::mem::take(&mut record));
            }
            (c, _) => field.push(c),
        }
    }
    if !field.is_empty() || !record.is_empty() {
        record.push(field);
        records.push(record);
    }
    records
}
