//! A fleet of simulated devices of one model against one ACS, sharing one HTTP client, one
//! connection-request listener and one base parameter tree.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use roost_cwmp::{CwmpVersion, DeviceIdStruct, EventStruct, ValueType};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::SimError;
use crate::connection_request::{self, Routes, path_for};
use crate::device::{self, Actor, DeviceHandle, DeviceSpec, StartMode};
use crate::inform::{event, wan_address_parameter};
use crate::load::Stats;
use crate::quirks::Quirks;
use crate::rpc::CpeState;
use crate::tree::{DataModel, DataModelKind, ParameterTree};

/// The events of a device's very first Inform.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FirstContact {
    /// `0 BOOTSTRAP` + `1 BOOT`: a device fresh from the factory.
    Bootstrap,
    /// `1 BOOT` only: a device the ACS should already know (or that lost track of bootstrap).
    Boot,
    /// `2 PERIODIC`: as if the simulator had just been restarted mid-life.
    Periodic,
}

/// How to run a fleet. Start from [`FleetConfig::new`] and change fields.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct FleetConfig {
    /// The ACS URL, written into each device's `ManagementServer.URL` (which the device then
    /// follows, so the ACS can move it).
    pub acs_url: String,
    pub model: Arc<DataModel>,
    pub devices: usize,
    /// Serial numbers are this prefix and a zero-padded number: `SIM000000`, `SIM000001`, …
    pub serial_prefix: String,
    /// Number of the first device's serial.
    pub first_serial: u64,
    /// Where the connection-request listener binds.
    pub cr_listen: SocketAddr,
    /// `host:port` to put into `ConnectionRequestURL` instead of the bound address (for an
    /// ACS that reaches the simulator through NAT or a container network).
    pub cr_advertise: Option<String>,
    /// CPE→ACS credentials, written into `ManagementServer.Username`/`Password`; `{serial}`
    /// is replaced by the device's serial number. `None` keeps the model's values.
    pub acs_username: Option<String>,
    pub acs_password: Option<String>,
    /// Factory connection-request credentials. `None` keeps the model's values (usually
    /// empty: the ACS sets its own on bootstrap).
    pub cr_username: Option<String>,
    pub cr_password: Option<String>,
    /// The namespace the devices speak; 1.4 also offers `SupportedCWMPVersions`.
    pub cwmp_version: CwmpVersion,
    pub start: StartMode,
    pub first_contact: FirstContact,
    /// Written into `PeriodicInformInterval` (with `PeriodicInformEnable` true); `None` turns
    /// periodic informs off until the ACS turns them on.
    pub periodic_interval: Option<Duration>,
    /// Each periodic wait is the interval ± this fraction of it, so devices drift apart.
    pub jitter: f64,
    /// Sessions in flight at once across the fleet.
    pub max_concurrent_sessions: usize,
    /// Limit on each HTTP exchange with the ACS.
    pub http_timeout: Duration,
    /// Limit on a whole Download or Upload.
    pub transfer_timeout: Duration,
    /// How long a reboot or factory reset keeps the device offline.
    pub reboot_delay: Duration,
    /// How long a requested diagnostic takes.
    pub diagnostics_delay: Duration,
    /// Whether a failed session is retried on its own (TR-069 backoff).
    pub retry: bool,
    /// The backoff's m: the first retry waits between m and 2m.
    pub retry_min_wait: Duration,
    /// Connection requests closer together than this are refused with 503.
    pub cr_min_interval: Duration,
    /// SetParameterValues with an `xsi:type` other than the parameter's fails with 9006.
    pub strict_types: bool,
    /// Session reports kept per device for [`DeviceHandle::sessions`] and waiting.
    pub history: usize,
    /// Real-firmware habits to reproduce (see [`Quirks`]); all off by default.
    pub quirks: Quirks,
    /// How the fleet's devices fail a firmware upgrade, if they do.
    pub firmware_failure: Option<crate::transfer::FirmwareFailure>,
    /// TLS to an `https://` ACS: the CA its certificate must chain to, and for mutual TLS the
    /// devices' certificate ([`client_tls`]).
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// Devices sit behind NAT ([`crate::stun`]): the connection-request URL they report cannot
    /// be reached (a closed port on 127.0.0.1, where a private address would be), and once the
    /// ACS turns their STUN client on, each keeps a UDP binding of its own open to the ACS's
    /// STUN server and takes UDP connection requests through it.
    pub nat: bool,
}

/// The connection-request address devices behind NAT report: port 1 of loopback, where nothing
/// listens (a private address would leave this machine).
const UNREACHABLE_LISTENER: &str = "127.0.0.1:1";

/// How devices check an `https://` ACS: against the CA certificates (PEM) in `ca`, presenting
/// `identity` (a certificate chain and its key, PEM) when the ACS asks for one.
pub fn client_tls(
    ca: &std::path::Path,
    identity: Option<(&std::path::Path, &std::path::Path)>,
) -> anyhow::Result<Arc<rustls::ClientConfig>> {
    use anyhow::Context;
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).with_context(|| format!("reading {}", ca.display()))? {
        roots.add(cert.with_context(|| format!("reading {}", ca.display()))?)?;
    }
    // ring: no C toolchain beyond what ring builds itself. Its provider has no post-quantum
    // key exchange, which rustls now flags; aws-lc-rs has it, at the price of cmake.
    #[allow(deprecated)]
    let mut provider = rustls::crypto::ring::default_provider();
    // Firmware's TLS libraries (OpenSSL, mbedTLS, wolfSSL) offer X25519 first, then P-256; the
    // ring provider's own order starts with P-384, which the ACS then follows, and whose key
    // generation in ring is generic big-number code: half an ACS's time per handshake went
    // there, a cost no real fleet would bring.
    {
        use rustls::crypto::ring::kx_group::{SECP256R1, SECP384R1, X25519};
        provider.kx_groups = vec![X25519, SECP256R1, SECP384R1];
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(provider))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots);
    let config = match identity {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => {
            let chain = CertificateDer::pem_file_iter(cert)
                .with_context(|| format!("reading {}", cert.display()))?
                .collect::<Result<Vec<_>, _>>()
                .with_context(|| format!("reading {}", cert.display()))?;
            let key = PrivateKeyDer::from_pem_file(key).with_context(|| format!("reading {}", key.display()))?;
            builder.with_client_auth_cert(chain, key)?
        }
    };
    Ok(Arc::new(config))
}

impl FleetConfig {
    /// One device, informing immediately with `0 BOOTSTRAP` + `1 BOOT`, no periodic
    /// informs, CWMP 1.0, retries after 5–10 s.
    pub fn new(acs_url: impl Into<String>, model: Arc<DataModel>) -> Self {
        Self {
            acs_url: acs_url.into(),
            model,
            devices: 1,
            serial_prefix: "SIM".to_owned(),
            first_serial: 0,
            cr_listen: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0),
            cr_advertise: None,
            acs_username: None,
            acs_password: None,
            cr_username: None,
            cr_password: None,
            cwmp_version: CwmpVersion::V1_0,
            start: StartMode::Immediate,
            first_contact: FirstContact::Bootstrap,
            periodic_interval: None,
            jitter: 0.05,
            max_concurrent_sessions: 1024,
            http_timeout: Duration::from_secs(30),
            transfer_timeout: Duration::from_secs(300),
            reboot_delay: Duration::from_millis(500),
            diagnostics_delay: Duration::from_millis(200),
            retry: true,
            retry_min_wait: Duration::from_secs(5),
            cr_min_interval: Duration::from_secs(1),
            strict_types: true,
            history: 64,
            quirks: Quirks::default(),
            firmware_failure: None,
            tls: None,
            nat: false,
        }
    }
}

/// State every device task shares.
pub(crate) struct FleetShared {
    pub client: reqwest::Client,
    pub config: FleetConfig,
    pub sessions: Arc<Semaphore>,
    pub stats: Arc<Stats>,
    /// `config.quirks`, shared by every device's state and sessions.
    pub quirks: Arc<Quirks>,
}

/// A running fleet. Dropping it stops every device and the listener.
pub struct Fleet {
    devices: Vec<DeviceHandle>,
    by_serial: HashMap<String, usize>,
    cr_addr: SocketAddr,
    shared: Arc<FleetShared>,
    tasks: JoinSet<()>,
}

impl std::fmt::Debug for Fleet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fleet")
            .field("devices", &self.devices.len())
            .field("connection_request_addr", &self.cr_addr)
            .finish()
    }
}

impl Fleet {
    /// Binds the connection-request listener and starts every device.
    pub async fn start(config: FleetConfig) -> Result<Self, SimError> {
        let client = reqwest::Client::builder()
            .no_proxy()
            .pool_idle_timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| SimError::Client(e.to_string()))?;
        let (listener, cr_addr) = connection_request::bind(config.cr_listen)
            .await
            .map_err(|source| SimError::Bind { addr: config.cr_listen, source })?;
        let advertised =
            config.cr_advertise.clone().or_else(|| config.nat.then(|| UNREACHABLE_LISTENER.to_owned())).unwrap_or_else(
                || {
                    let ip = if cr_addr.ip().is_unspecified() { IpAddr::V4(Ipv4Addr::LOCALHOST) } else { cr_addr.ip() };
                    SocketAddr::new(ip, cr_addr.port()).to_string()
                },
            );
        let model = config.model.clone();
        let root = model.root().to_owned();
        let template = FactoryTemplate::new(&model);

        let shared = Arc::new(FleetShared {
            client,
            sessions: Arc::new(Semaphore::new(config.max_concurrent_sessions.max(1))),
            stats: Arc::new(Stats::new()),
            quirks: Arc::new(config.quirks.clone()),
            config,
        });
        let config = &shared.config;
        let first_events: Vec<EventStruct> = match config.first_contact {
            FirstContact::Bootstrap => vec![event("0 BOOTSTRAP", ""), event("1 BOOT", "")],
            FirstContact::Boot => vec![event("1 BOOT", "")],
            FirstContact::Periodic => vec![event("2 PERIODIC", "")],
        };

        let mut devices = Vec::with_capacity(config.devices);
        let mut by_serial = HashMap::with_capacity(config.devices);
        let mut routes: Routes = HashMap::with_capacity(config.devices);
        let mut actors = Vec::with_capacity(config.devices);
        for index in 0..config.devices {
            let number = config.first_serial + index as u64;
            let serial = format!("{}{number:06}", config.serial_prefix);
            let path = path_for(&serial);
            let cr_url = format!("http://{advertised}{path}");
            let identity = DeviceIdStruct { serial_number: serial.clone(), ..template.identity.clone() };
            let factory = template.factory(config, &root, &serial, &cr_url, number);
            let mut cpe = CpeState::new(ParameterTree::new(model.clone()));
            cpe.strict_types = config.strict_types;
            cpe.quirks = shared.quirks.clone();
            let (device, commands) = device::create(
                DeviceSpec {
                    index,
                    identity,
                    connection_request_url: cr_url,
                    factory,
                    first_events: first_events.clone(),
                    acs_url: config.acs_url.clone(),
                },
                cpe,
            );
            routes.insert(path, device.clone());
            by_serial.insert(serial, index);
            actors.push(Actor { shared: device.clone(), fleet: shared.clone(), commands, start: config.start });
            devices.push(DeviceHandle { shared: device });
        }

        let mut tasks = JoinSet::new();
        let listener_settings = connection_request::Settings {
            min_interval: config.cr_min_interval,
            auth: config.quirks.cr_auth,
            close_after_challenge: config.quirks.cr_close_after_challenge,
        };
        tasks.spawn(connection_request::serve(listener, Arc::new(routes), listener_settings));
        for actor in actors {
            tasks.spawn(actor.run());
        }
        Ok(Self { devices, by_serial, cr_addr, shared, tasks })
    }

    pub fn len(&self) -> usize {
        self.devices.len()
    }

    pub fn is_empty(&self) -> bool {
        self.devices.is_empty()
    }

    /// The `i`-th device. Panics when `i >= len()`, like slice indexing; see [`get`](Self::get).
    pub fn device(&self, i: usize) -> DeviceHandle {
        self.devices[i].clone()
    }

    pub fn get(&self, i: usize) -> Option<DeviceHandle> {
        self.devices.get(i).cloned()
    }

    pub fn devices(&self) -> &[DeviceHandle] {
        &self.devices
    }

    pub fn by_serial(&self, serial_number: &str) -> Option<DeviceHandle> {
        self.by_serial.get(serial_number).and_then(|&i| self.get(i))
    }

    /// The address the connection-request listener is bound to.
    pub fn connection_request_addr(&self) -> SocketAddr {
        self.cr_addr
    }

    /// Session counts and latencies across the fleet.
    pub fn stats(&self) -> Arc<Stats> {
        self.shared.stats.clone()
    }

    pub fn config(&self) -> &FleetConfig {
        &self.shared.config
    }

    /// Stops every device and the listener, waiting for their tasks to end.
    pub async fn stop(mut self) {
        self.tasks.shutdown().await;
    }
}

/// What every device of a model shares at creation, and the few values that make each unit
/// distinct. Public so that tools seeding an ACS's database (roost-bench) store exactly what the
/// simulator's devices will report.
#[derive(Debug, Clone)]
pub struct FactoryTemplate {
    identity: DeviceIdStruct,
    wan_address: Option<String>,
    has: HashMap<&'static str, ValueType>,
}

/// Parameters (relative to the root) a device's factory settings may touch.
const FACTORY_PARAMETERS: [&str; 8] = [
    "ManagementServer.Username",
    "ManagementServer.Password",
    "ManagementServer.ConnectionRequestUsername",
    "ManagementServer.ConnectionRequestPassword",
    "ManagementServer.PeriodicInformEnable",
    "ManagementServer.PeriodicInformInterval",
    "ManagementServer.ParameterKey",
    "DeviceInfo.SerialNumber",
];

impl FactoryTemplate {
    pub fn new(model: &Arc<DataModel>) -> Self {
        let root = model.root();
        let value = |relative: &str| {
            model
                .node(&format!("{root}{relative}"))
                .filter(|n| !n.object && !n.value.trim().is_empty())
                .map(|n| n.value.clone())
        };
        let export = model.export_identity();
        let pick = |relative: &str, exported: fn(&DeviceIdStruct) -> &String, default: &str| {
            value(relative)
                .or_else(|| export.map(exported).filter(|v| !v.is_empty()).cloned())
                .unwrap_or_else(|| default.to_owned())
        };
        let identity = DeviceIdStruct {
            manufacturer: pick("DeviceInfo.Manufacturer", |d| &d.manufacturer, "Roost"),
            oui: pick("DeviceInfo.ManufacturerOUI", |d| &d.oui, "000000"),
            product_class: pick("DeviceInfo.ProductClass", |d| &d.product_class, ""),
            serial_number: String::new(),
        };
        let wan_address = (model.kind() == DataModelKind::Tr098)
            .then(|| wan_address_parameter(&CpeState::new(ParameterTree::new(model.clone()))))
            .flatten();
        let has = FACTORY_PARAMETERS
            .iter()
            .filter_map(|p| model.node(&format!("{root}{p}")).filter(|n| !n.object).map(|n| (*p, n.value_type.clone())))
            .collect();
        Self { identity, wan_address, has }
    }

    /// The identity every unit shares (its serial number empty).
    pub fn identity(&self) -> &DeviceIdStruct {
        &self.identity
    }

    /// The values that make one unit distinct: written at creation and after a factory reset.
    /// `cr_url` is the unit's connection-request URL, `number` its serial number's counter.
    pub fn factory(
        &self,
        config: &FleetConfig,
        root: &str,
        serial: &str,
        cr_url: &str,
        number: u64,
    ) -> Vec<(String, String, ValueType)> {
        let string = ValueType::String;
        let mut out = vec![
            (format!("{root}DeviceInfo.SerialNumber"), serial.to_owned(), string.clone()),
            (format!("{root}ManagementServer.ConnectionRequestURL"), cr_url.to_owned(), string.clone()),
            (format!("{root}ManagementServer.URL"), config.acs_url.clone(), string.clone()),
        ];
        if !self.has.contains_key("ManagementServer.ParameterKey") {
            out.push((format!("{root}ManagementServer.ParameterKey"), String::new(), string.clone()));
        }
        let mut optional = |relative: &'static str, value: String| {
            if let Some(value_type) = self.has.get(relative) {
                out.push((format!("{root}{relative}"), value, value_type.clone()));
            }
        };
        let with_serial = |s: &String| s.replace("{serial}", serial);
        if let Some(user) = &config.acs_username {
            optional("ManagementServer.Username", with_serial(user));
        }
        if let Some(password) = &config.acs_password {
            optional("ManagementServer.Password", with_serial(password));
        }
        if let Some(user) = &config.cr_username {
            optional("ManagementServer.ConnectionRequestUsername", with_serial(user));
        }
        if let Some(password) = &config.cr_password {
            optional("ManagementServer.ConnectionRequestPassword", with_serial(password));
        }
        match config.periodic_interval {
            Some(interval) => {
                optional("ManagementServer.PeriodicInformEnable", "true".to_owned());
                optional("ManagementServer.PeriodicInformInterval", interval.as_secs().max(1).to_string());
            }
            None => optional("ManagementServer.PeriodicInformEnable", "false".to_owned()),
        }
        if let Some(path) = &self.wan_address {
            // A distinct address per unit, from TEST-NET-free private space.
            let n = number + 1;
            let address = format!("10.{}.{}.{}", (n >> 16) & 0xff, (n >> 8) & 0xff, n & 0xff);
            out.push((path.clone(), address, string));
        }
        out
    }
}
