//! Configuration: command-line flags and `ROOST_*` environment variables (the contract in
//! DESIGN.md), over an optional TOML file, over defaults.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use serde::Deserialize;

pub use crate::plugins::PluginSettings;

/// How CPEs must authenticate to the CWMP endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum CpeAuthMode {
    /// Every CPE must present valid credentials (Digest; Basic only over TLS).
    Required,
    /// No CPE authentication: for development and labs only.
    Open,
}

/// Flags shared by every subcommand that opens the database.
#[derive(Debug, Clone, clap::Args)]
pub struct DatabaseArgs {
    /// Where Roost keeps its files (the SQLite database, the master key).
    #[arg(long, env = "ROOST_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,
    /// `sqlite://…` or `postgres://…`; defaults to SQLite at `<data-dir>/roost.db`.
    #[arg(long, env = "ROOST_DATABASE_URL")]
    pub database_url: Option<String>,
}

impl DatabaseArgs {
    pub fn database_url(&self) -> String {
        self.database_url
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}?mode=rwc", self.data_dir.join("roost.db").display()))
    }
}

/// `roost serve` flags.
#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub database: DatabaseArgs,
    #[arg(long, env = "ROOST_CWMP_LISTEN", default_value = "0.0.0.0:7547")]
    pub cwmp_listen: SocketAddr,
    #[arg(long, env = "ROOST_HTTP_LISTEN", default_value = "0.0.0.0:8080")]
    pub http_listen: SocketAddr,
    /// Optional TOML file with the settings below and more.
    #[arg(long, env = "ROOST_CONFIG")]
    pub config: Option<PathBuf>,
    /// CPE authentication: `required` (default) or `open` (development only).
    #[arg(long, env = "ROOST_CPE_AUTH")]
    pub cpe_auth: Option<CpeAuthMode>,
    /// Components installed as the platform's plugins at start (`<name>@<version>.wasm`);
    /// default `plugins/dist`, where `scripts/build-plugins.sh` puts the shipped ones.
    #[arg(long, env = "ROOST_PLUGINS_DIR")]
    pub plugins_dir: Option<PathBuf>,
    /// The built web portal, served at `/` on the HTTP listener; default `web/dist`, where
    /// `scripts/build-web.sh` puts it.
    #[arg(long, env = "ROOST_WEB_DIR")]
    pub web_dir: Option<PathBuf>,
    /// TLS certificate chain (PEM) of both listeners, unless `[tls]` gives one its own.
    #[arg(long, env = "ROOST_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The certificate's private key (PEM).
    #[arg(long, env = "ROOST_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// The STUN server for devices behind NAT (TR-111), UDP; `off` runs none.
    #[arg(long, env = "ROOST_STUN_LISTEN", default_value = "0.0.0.0:3478")]
    pub stun_listen: StunListen,
}

/// `--stun-listen`: an address, or `off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StunListen(pub Option<SocketAddr>);

impl std::str::FromStr for StunListen {
    type Err = String;

    fn from_str(text: &str) -> std::result::Result<Self, Self::Err> {
        if text.trim().eq_ignore_ascii_case("off") {
            return Ok(Self(None));
        }
        text.trim()
            .parse()
            .map(|address| Self(Some(address)))
            .map_err(|_| format!("`{text}` is neither an address such as 0.0.0.0:3478 nor `off`"))
    }
}

/// Everything the server needs, resolved.
#[derive(Debug, Clone)]
pub struct Config {
    pub data_dir: PathBuf,
    pub database_url: String,
    pub cwmp_listen: SocketAddr,
    pub http_listen: SocketAddr,
    pub cwmp: CwmpSettings,
    pub api: ApiSettings,
    pub tasks: TaskSettings,
    pub connection_request: ConnectionRequestSettings,
    pub plugins: PluginSettings,
    pub diagnostics: DiagnosticsSettings,
    pub health: crate::health::HealthSettings,
    pub files: FileSettings,
    pub jobs: JobSettings,
    pub rollouts: RolloutSettings,
    pub events: EventSettings,
    pub tls: TlsSettings,
    pub metrics: MetricsSettings,
    /// Where the STUN server listens (`--stun-listen`); `None`: no STUN server.
    pub stun_listen: Option<SocketAddr>,
    pub stun: StunSettings,
    /// Where the built portal is (`index.html` and `assets/`); none: no portal.
    pub web_dir: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CwmpSettings {
    pub auth: CpeAuthMode,
    /// Digest realm presented to CPEs.
    pub realm: String,
    /// A CPE silent this long mid-session is gone (rebooted, agent restarted).
    #[serde(with = "seconds")]
    pub session_timeout: Duration,
    /// Largest SOAP body accepted from a CPE. The largest legitimate message is a
    /// GetParameterValuesResponse or GetParameterNamesResponse of a whole tree: about 1 MiB for
    /// the largest real device export in `tests/data/cpe/` (6,408 nodes); the default leaves
    /// four times that (a test holds it to that).
    pub max_body_bytes: usize,
    /// Bytes of request bodies held at once across all CPE connections; past it a request
    /// waits briefly, then is answered 503.
    pub max_body_memory: usize,
    /// A request must arrive whole within this time of its first byte.
    #[serde(with = "seconds")]
    pub request_deadline: Duration,
    /// Open CWMP connections at most; past it new ones are answered 503 and closed. `None`: the
    /// process's file limit (raised at start to its hard limit) less a reserve for the HTTP
    /// listener, the database and files.
    pub max_connections: Option<usize>,
    /// Open CWMP connections per client address at most (CPEs behind one NAT address share it).
    pub max_connections_per_address: usize,
    /// Reverse proxies in front of the CWMP listener: from these peers the client's address is
    /// the last `X-Forwarded-For` entry, sessions are found by cookie only (a proxy's pooled
    /// connections carry many CPEs) and bound to that address, and the per-address connection
    /// limit does not apply.
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// Parameters per GetParameterValues during discovery: large enough to be quick, small
    /// enough for the weakest agents' buffers.
    pub discovery_batch: usize,
    /// Accept Basic credentials on plain HTTP. Off: Basic sends the password in clear text.
    pub allow_basic_without_tls: bool,
    /// What a session cookie is bound to: a request carrying the cookie from elsewhere is
    /// refused (the cookie alone is not a credential).
    pub session_binding: SessionBinding,
}

/// What a CWMP session is bound to, beyond its cookie.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum SessionBinding {
    /// The client's IP address: a CPE may open a new TCP connection mid-session (TR-069 allows
    /// it, and some do), but another host may not use its cookie.
    #[default]
    Address,
    /// The TCP connection that opened the session (address and port): the strictest, for CPEs
    /// that keep one connection per session.
    Connection,
}

impl Default for CwmpSettings {
    fn default() -> Self {
        Self {
            auth: CpeAuthMode::Required,
            realm: "roost".into(),
            session_timeout: Duration::from_secs(60),
            max_body_bytes: 4 * 1024 * 1024,
            max_body_memory: 64 * 1024 * 1024,
            request_deadline: Duration::from_secs(30),
            max_connections: None,
            max_connections_per_address: 256,
            trusted_proxies: Vec::new(),
            discovery_batch: 256,
            allow_basic_without_tls: false,
            session_binding: SessionBinding::Address,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApiSettings {
    #[serde(with = "seconds")]
    pub access_token_ttl: Duration,
    pub max_body_bytes: usize,
    /// API requests served at once; more wait (up to `queue_timeout`), then get 503. With the
    /// API's own database pool of this size, CPE sessions keep their connections and most of
    /// the CPU however many integrations call at once.
    pub max_concurrent_requests: u32,
    #[serde(with = "seconds")]
    pub queue_timeout: Duration,
    /// Requests a minute an API key may make, unless the key sets its own.
    pub api_key_rate_limit_per_minute: u64,
    /// Replaced by `[health]` (a device is online within the grace its periodic interval
    /// earns): still read, so that a file written for an earlier version loads, and ignored
    /// with a warning.
    pub online_window: Option<u64>,
}

impl Default for ApiSettings {
    fn default() -> Self {
        Self {
            access_token_ttl: Duration::from_secs(15 * 60),
            max_body_bytes: 4 * 1024 * 1024,
            max_concurrent_requests: 4,
            queue_timeout: Duration::from_secs(10),
            api_key_rate_limit_per_minute: 600,
            online_window: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TaskSettings {
    /// A task not run within this time faults as expired.
    #[serde(with = "seconds")]
    pub default_expiry: Duration,
    /// How long `?connection_request=true` waits for the device to run the task.
    #[serde(with = "seconds")]
    pub connection_request_wait: Duration,
}

impl Default for TaskSettings {
    fn default() -> Self {
        Self { default_expiry: Duration::from_secs(7 * 24 * 3600), connection_request_wait: Duration::from_secs(10) }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConnectionRequestSettings {
    #[serde(with = "seconds")]
    pub timeout: Duration,
    /// A device whose listener did not answer this many connection requests in a row is not
    /// woken by fleet jobs for `breaker_cool_down`, doubling per further failure up to
    /// `breaker_max`; then one request probes it. An operator's own request always goes.
    pub breaker_failures: u32,
    #[serde(with = "seconds")]
    pub breaker_cool_down: Duration,
    #[serde(with = "seconds")]
    pub breaker_max: Duration,
}

impl Default for ConnectionRequestSettings {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(5),
            breaker_failures: 3,
            breaker_cool_down: Duration::from_secs(60),
            breaker_max: Duration::from_secs(1800),
        }
    }
}

/// `[diagnostics]`: how Roost follows a diagnostic its device does not report done.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DiagnosticsSettings {
    /// A run still requested this long after it was requested (or last polled) is collected
    /// anyway, the device woken for it: some firmware never sends `8 DIAGNOSTICS COMPLETE`.
    #[serde(with = "seconds")]
    pub poll_after: Duration,
    /// A run not over this long after it was asked for ends as `timeout`.
    #[serde(with = "seconds")]
    pub timeout: Duration,
    /// How often the poll looks.
    #[serde(with = "seconds")]
    pub poll_interval: Duration,
    /// The largest speed test Roost's own TR-143 endpoints serve or take, in bytes.
    pub max_transfer_bytes: u64,
}

impl Default for DiagnosticsSettings {
    fn default() -> Self {
        Self {
            poll_after: Duration::from_secs(120),
            timeout: Duration::from_secs(30 * 60),
            poll_interval: Duration::from_secs(15),
            max_transfer_bytes: crate::tasks::intent::MAX_TRANSFER_BYTES,
        }
    }
}

/// `[files]`: the file store (firmware images and configuration files for devices).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FileSettings {
    /// The largest file an upload may store, in bytes.
    pub max_bytes: u64,
    /// How long the URL a `download` task gives its device stays good: the device may be
    /// offline, delay the download (`delaySeconds`) and retry it.
    #[serde(with = "seconds")]
    pub download_ttl: Duration,
}

impl Default for FileSettings {
    fn default() -> Self {
        Self { max_bytes: 1024 * 1024 * 1024, download_ttl: Duration::from_secs(7 * 24 * 3600) }
    }
}

/// `[jobs]`: the fleet jobs (rollouts, bulk actions) and how fast they wake devices.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct JobSettings {
    /// How often the jobs move along: gates settled, devices started.
    #[serde(with = "seconds")]
    pub tick: Duration,
    /// Connection requests sent per second per organization, its rollouts and bulk actions
    /// together.
    pub connection_requests_per_second: u32,
    /// A device whose task a job queued has not run this long after Roost woke it is woken
    /// again: a connection request is one attempt, and a device that missed it would otherwise
    /// wait for its next periodic Inform (a rollout's gate has a deadline).
    #[serde(with = "seconds")]
    pub rewake_after: Duration,
}

impl Default for JobSettings {
    fn default() -> Self {
        Self { tick: Duration::from_secs(5), connection_requests_per_second: 20, rewake_after: Duration::from_secs(60) }
    }
}

/// `[rollouts]`: how firmware rollouts pace their devices.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RolloutSettings {
    /// Downloads of rollouts under way at once per organization (its devices upgrading or
    /// reverting), whatever the rollouts' batch sizes: an image server and an access network
    /// take only so many.
    pub max_concurrent_downloads: u64,
    /// How long after a read that found a device's WAN down the gate reads it again (until the
    /// gate's deadline): a WAN comes up some seconds after the boot.
    #[serde(with = "seconds")]
    pub wan_recheck: Duration,
}

impl Default for RolloutSettings {
    fn default() -> Self {
        Self { max_concurrent_downloads: 100, wan_recheck: Duration::from_secs(15) }
    }
}

/// `[events]`: how events leave Roost, by webhook and by NATS JetStream.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EventSettings {
    /// NATS server to publish every event to (`nats://host:4222`); none when absent.
    pub nats_url: Option<String>,
    /// The JetStream stream holding the events (subjects `<nats_prefix>.>`), made if missing.
    pub nats_stream: String,
    /// The first token of the subjects: events go on `<nats_prefix>.<org>.<type>`.
    pub nats_prefix: String,
    /// How often the outbox is read for new events, and due deliveries looked for.
    #[serde(with = "millis")]
    pub poll: Duration,
    /// How long a webhook receiver has to answer a delivery, connecting included.
    #[serde(with = "seconds")]
    pub timeout: Duration,
    /// The first retry of a failed delivery waits this long, doubling per attempt up to
    /// `retry_max` (less a random part, so failures do not come back together).
    #[serde(with = "seconds")]
    pub retry_base: Duration,
    #[serde(with = "seconds")]
    pub retry_max: Duration,
    /// Failed attempts in a row after which a webhook's circuit opens: nothing is sent to it
    /// until one delivery, tried after a backoff, gets through.
    pub breaker_failures: u32,
    /// A webhook failing for this long is disabled (an event and an audit entry say so).
    #[serde(with = "seconds")]
    pub disable_after: Duration,
    /// Deliveries in flight at once, all webhooks together …
    pub concurrency: usize,
    /// … and to one webhook: a receiver that hangs holds no more than these.
    pub webhook_concurrency: usize,
    /// CA certificates (PEM) trusted for https receivers beside the system's: a receiver whose
    /// certificate a private CA signed (an ISP's own CRM).
    pub ca_file: Option<PathBuf>,
}

impl Default for EventSettings {
    fn default() -> Self {
        Self {
            nats_url: None,
            nats_stream: "ROOST".into(),
            nats_prefix: "roost".into(),
            poll: Duration::from_millis(500),
            timeout: Duration::from_secs(10),
            retry_base: Duration::from_secs(5),
            retry_max: Duration::from_secs(3600),
            breaker_failures: 5,
            disable_after: Duration::from_secs(3 * 24 * 3600),
            concurrency: 64,
            webhook_concurrency: 16,
            ca_file: None,
        }
    }
}

/// `[metrics]`: who may read `GET /metrics` on the HTTP listener.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsSettings {
    /// A scraper presenting `Authorization: Bearer <token>` may read the metrics from anywhere.
    /// Without it, only a client on this machine may (over loopback): the figures are the
    /// whole platform's.
    pub token: Option<String>,
}

/// `[stun]`: devices behind NAT (TR-069 Annex G, TR-111 part 2).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StunSettings {
    /// The STUN server the built-in `stun` provision gives devices: `host` or `host:port`, as
    /// devices reach it (a load balancer's name, say). Default: the host each device reaches the
    /// ACS at (its `ManagementServer.URL`) and the port the server listens on.
    pub advertise: Option<String>,
    /// Copies of each UDP connection request, sent `copy_interval` apart with one message id:
    /// UDP may lose any one of them, and the CPE acts on the first it gets.
    pub copies: u32,
    #[serde(with = "millis")]
    pub copy_interval: Duration,
    /// How long the server remembers a device's binding without asking its store; a Binding
    /// Request from the remembered address is a keepalive and costs no database work.
    #[serde(with = "seconds")]
    pub binding_memory: Duration,
    /// How often a device's keepalives tell the store its binding is still in use (one write
    /// per device per interval).
    #[serde(with = "seconds")]
    pub binding_refresh: Duration,
    /// A binding the store has not heard of for this long is not used: the NAT has likely
    /// dropped it, and its address may be someone else's by now.
    #[serde(with = "seconds")]
    pub binding_lifetime: Duration,
}

impl Default for StunSettings {
    fn default() -> Self {
        Self {
            advertise: None,
            copies: 3,
            copy_interval: Duration::from_millis(500),
            binding_memory: Duration::from_secs(3600),
            binding_refresh: Duration::from_secs(1800),
            binding_lifetime: Duration::from_secs(7200),
        }
    }
}

impl StunSettings {
    /// `advertise` split into its host and its port, if it names one.
    pub fn advertised(&self) -> Result<Option<(String, Option<u16>)>> {
        let Some(text) = self.advertise.as_deref().map(str::trim) else { return Ok(None) };
        if text.is_empty() || text.contains('/') || text.contains(' ') {
            anyhow::bail!("[stun] advertise is a host or host:port, not `{text}`");
        }
        // An IPv6 address is bracketed when a port follows it.
        let (host, port) = match text.rsplit_once(':') {
            Some((host, port)) if !host.contains(':') || host.ends_with(']') => {
                let port: u16 =
                    port.parse().map_err(|_| anyhow::anyhow!("[stun] advertise: `{port}` is not a port"))?;
                (host.trim_start_matches('[').trim_end_matches(']'), Some(port))
            }
            _ => (text, None),
        };
        Ok(Some((host.to_owned(), port)))
    }
}

/// `[tls]`: the listeners' certificates. `cert` and `key` serve both listeners unless one has
/// its own pair (`cwmp_cert`/`cwmp_key`, `http_cert`/`http_key`); a listener with none speaks
/// plain HTTP.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsSettings {
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    pub cwmp_cert: Option<PathBuf>,
    pub cwmp_key: Option<PathBuf>,
    pub http_cert: Option<PathBuf>,
    pub http_key: Option<PathBuf>,
    /// CA certificates (PEM) that CPEs' client certificates must chain to: mutual TLS on the
    /// CWMP listener.
    pub client_ca: Option<PathBuf>,
    /// With `client_ca`: `required` (a CPE without a certificate fails the handshake) or
    /// `optional` (one without authenticates as usual).
    pub client_auth: crate::tls::ClientAuth,
    /// How often the files are looked at for a change (SIGHUP reads them at once).
    #[serde(with = "seconds")]
    pub reload_interval: Duration,
    /// A client must finish its TLS handshake within this time of connecting.
    #[serde(with = "seconds")]
    pub handshake_timeout: Duration,
}

impl Default for TlsSettings {
    fn default() -> Self {
        Self {
            cert: None,
            key: None,
            cwmp_cert: None,
            cwmp_key: None,
            http_cert: None,
            http_key: None,
            client_ca: None,
            client_auth: crate::tls::ClientAuth::Required,
            reload_interval: Duration::from_secs(10),
            handshake_timeout: Duration::from_secs(10),
        }
    }
}

impl TlsSettings {
    /// The CWMP listener's TLS, if it has any.
    pub fn cwmp(&self) -> Result<Option<crate::tls::ListenerTls>> {
        let pair = pair("cwmp", &self.cwmp_cert, &self.cwmp_key, &self.cert, &self.key)?;
        match (pair, &self.client_ca) {
            (None, Some(_)) => anyhow::bail!("[tls] client_ca needs a certificate on the CWMP listener"),
            (None, None) => Ok(None),
            (Some((cert, key)), client_ca) => Ok(Some(crate::tls::ListenerTls {
                cert,
                key,
                client_ca: client_ca.clone(),
                client_auth: self.client_auth,
            })),
        }
    }

    /// The HTTP listener's TLS, if it has any.
    pub fn http(&self) -> Result<Option<crate::tls::ListenerTls>> {
        Ok(pair("http", &self.http_cert, &self.http_key, &self.cert, &self.key)?.map(|(cert, key)| {
            crate::tls::ListenerTls { cert, key, client_ca: None, client_auth: crate::tls::ClientAuth::Required }
        }))
    }
}

/// A listener's certificate and key: its own pair, else the shared one, else none; half a pair
/// is an error.
fn pair(
    listener: &str,
    own_cert: &Option<PathBuf>,
    own_key: &Option<PathBuf>,
    cert: &Option<PathBuf>,
    key: &Option<PathBuf>,
) -> Result<Option<(PathBuf, PathBuf)>> {
    match (own_cert, own_key, cert, key) {
        (Some(c), Some(k), _, _) => Ok(Some((c.clone(), k.clone()))),
        (Some(_), None, _, _) => anyhow::bail!("[tls] {listener}_cert needs {listener}_key"),
        (None, Some(_), _, _) => anyhow::bail!("[tls] {listener}_key needs {listener}_cert"),
        (None, None, Some(c), Some(k)) => Ok(Some((c.clone(), k.clone()))),
        (None, None, Some(_), None) => anyhow::bail!("a TLS certificate needs its key (--tls-key, [tls] key)"),
        (None, None, None, Some(_)) => anyhow::bail!("a TLS key needs its certificate (--tls-cert, [tls] cert)"),
        (None, None, None, None) => Ok(None),
    }
}

/// Where `scripts/build-plugins.sh` puts the shipped plugins, from the repository's root.
pub const DEFAULT_PLUGINS_DIR: &str = "plugins/dist";

/// Where `scripts/build-web.sh` puts the built portal, from the repository's root.
pub const DEFAULT_WEB_DIR: &str = "web/dist";

/// The TOML file: every section optional.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct FileConfig {
    cwmp: CwmpSettings,
    api: ApiSettings,
    tasks: TaskSettings,
    connection_request: ConnectionRequestSettings,
    plugins: PluginSettings,
    diagnostics: DiagnosticsSettings,
    health: crate::health::HealthSettings,
    files: FileSettings,
    jobs: JobSettings,
    rollouts: RolloutSettings,
    events: EventSettings,
    tls: TlsSettings,
    metrics: MetricsSettings,
    stun: StunSettings,
}

impl Config {
    pub fn resolve(args: &ServeArgs) -> Result<Self> {
        let file = match &args.config {
            Some(path) => read_file(path)?,
            None => FileConfig::default(),
        };
        if file.api.online_window.is_some() {
            tracing::warn!(
                "[api] online_window is ignored: a device is online within the grace its periodic interval earns ([health])"
            );
        }
        let mut cwmp = file.cwmp;
        if let Some(mode) = args.cpe_auth {
            cwmp.auth = mode;
        }
        if file.metrics.token.as_deref().is_some_and(|t| t.trim().is_empty()) {
            anyhow::bail!("[metrics] token is empty: give it a secret, or leave it out (loopback only)");
        }
        if file.tls.reload_interval.is_zero() || file.tls.handshake_timeout.is_zero() {
            anyhow::bail!("[tls] reload_interval and handshake_timeout are at least 1 second");
        }
        file.stun.advertised()?;
        if file.stun.copies == 0 {
            anyhow::bail!("[stun] copies is at least 1");
        }
        if file.stun.binding_refresh.is_zero()
            || file.stun.binding_lifetime <= file.stun.binding_refresh
            || file.stun.binding_lifetime <= file.stun.binding_memory
        {
            anyhow::bail!(
                "[stun] binding_lifetime must be longer than binding_refresh and binding_memory (each at least 1 second)"
            );
        }
        let mut tls = file.tls;
        if args.tls_cert.is_some() {
            tls.cert = args.tls_cert.clone();
            tls.key = args.tls_key.clone();
        }
        Ok(Self {
            data_dir: args.database.data_dir.clone(),
            database_url: args.database.database_url(),
            cwmp_listen: args.cwmp_listen,
            http_listen: args.http_listen,
            cwmp,
            api: file.api,
            tasks: file.tasks,
            connection_request: file.connection_request,
            diagnostics: file.diagnostics,
            health: file.health,
            files: file.files,
            jobs: file.jobs,
            rollouts: file.rollouts,
            events: file.events,
            tls,
            metrics: file.metrics,
            stun_listen: args.stun_listen.0,
            stun: file.stun,
            plugins: PluginSettings {
                install_dir: args
                    .plugins_dir
                    .clone()
                    .or(file.plugins.install_dir.clone())
                    .or_else(|| Some(PathBuf::from(DEFAULT_PLUGINS_DIR))),
                ..file.plugins
            },
            web_dir: Some(args.web_dir.clone().unwrap_or_else(|| PathBuf::from(DEFAULT_WEB_DIR))),
        })
    }

    /// Defaults for a server on ephemeral loopback ports: what tests and tools embed.
    pub fn for_loopback(data_dir: PathBuf, database_url: Option<String>) -> Self {
        let database = DatabaseArgs { data_dir: data_dir.clone(), database_url };
        Self {
            database_url: database.database_url(),
            data_dir,
            cwmp_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            http_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            cwmp: CwmpSettings::default(),
            api: ApiSettings::default(),
            tasks: TaskSettings::default(),
            connection_request: ConnectionRequestSettings::default(),
            plugins: PluginSettings::default(),
            diagnostics: DiagnosticsSettings::default(),
            health: crate::health::HealthSettings::default(),
            files: FileSettings::default(),
            jobs: JobSettings::default(),
            rollouts: RolloutSettings::default(),
            events: EventSettings::default(),
            tls: TlsSettings::default(),
            metrics: MetricsSettings::default(),
            stun_listen: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
            stun: StunSettings::default(),
            web_dir: None,
        }
    }
}

fn read_file(path: &Path) -> Result<FileConfig> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading config file {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("parsing config file {}", path.display()))
}

pub(crate) mod millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_millis(u64::deserialize(deserializer)?))
    }
}

pub(crate) mod seconds {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_secs(u64::deserialize(deserializer)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(p: &str) -> Option<PathBuf> {
        Some(PathBuf::from(p))
    }

    #[test]
    fn a_listener_takes_its_own_pair_else_the_shared_one() {
        let shared = TlsSettings { cert: path("all.pem"), key: path("all.key"), ..TlsSettings::default() };
        let cwmp = shared.cwmp().unwrap().unwrap();
        assert_eq!((cwmp.cert, cwmp.key), (PathBuf::from("all.pem"), PathBuf::from("all.key")));
        let own = TlsSettings { http_cert: path("api.pem"), http_key: path("api.key"), ..shared.clone() };
        assert_eq!(own.http().unwrap().unwrap().cert, PathBuf::from("api.pem"));
        assert_eq!(own.cwmp().unwrap().unwrap().cert, PathBuf::from("all.pem"));
        let none = TlsSettings::default();
        assert!(none.cwmp().unwrap().is_none() && none.http().unwrap().is_none());
    }

    #[test]
    fn the_configuration_files_shipped_in_deploy_are_read() {
        for (name, text) in [
            ("deploy/tls/roost-tls.toml", include_str!("../../deploy/tls/roost-tls.toml")),
            ("deploy/kubernetes/roost.toml", include_str!("../../deploy/kubernetes/roost.toml")),
        ] {
            let file: FileConfig = toml::from_str(text).unwrap_or_else(|e| panic!("{name}: {e}"));
            file.stun.advertised().unwrap_or_else(|e| panic!("{name}: {e}"));
            file.tls.cwmp().unwrap_or_else(|e| panic!("{name}: {e}"));
            file.tls.http().unwrap_or_else(|e| panic!("{name}: {e}"));
        }
    }

    #[test]
    fn the_stun_address_to_advertise_is_a_host_and_maybe_a_port() {
        let advertise =
            |text: &str| StunSettings { advertise: Some(text.into()), ..StunSettings::default() }.advertised();
        assert_eq!(advertise("stun.isp.example").unwrap(), Some(("stun.isp.example".into(), None)));
        assert_eq!(advertise("stun.isp.example:3479").unwrap(), Some(("stun.isp.example".into(), Some(3479))));
        assert_eq!(advertise("[2001:db8::1]:3478").unwrap(), Some(("2001:db8::1".into(), Some(3478))));
        assert_eq!(advertise("2001:db8::1").unwrap(), Some(("2001:db8::1".into(), None)));
        assert!(advertise("stun.isp.example:x").is_err());
        assert!(advertise("http://stun.isp.example/").is_err());
        assert_eq!(StunSettings::default().advertised().unwrap(), None);
        assert_eq!("off".parse::<StunListen>(), Ok(StunListen(None)));
        assert_eq!(
            "127.0.0.1:3478".parse::<StunListen>(),
            Ok(StunListen(Some(SocketAddr::from(([127, 0, 0, 1], 3478)))))
        );
        assert!("3478".parse::<StunListen>().unwrap_err().contains("`off`"));
    }

    #[test]
    fn half_a_pair_and_a_client_ca_without_tls_are_refused() {
        let half = TlsSettings { cwmp_cert: path("c.pem"), ..TlsSettings::default() };
        assert!(half.cwmp().unwrap_err().to_string().contains("cwmp_key"));
        let shared_half = TlsSettings { key: path("k.pem"), ..TlsSettings::default() };
        assert!(shared_half.http().is_err());
        let ca_only = TlsSettings { client_ca: path("ca.pem"), ..TlsSettings::default() };
        assert!(ca_only.cwmp().unwrap_err().to_string().contains("client_ca"));
        // The HTTP listener asks no client certificate, whatever the CWMP listener does.
        let mtls = TlsSettings { cert: path("c"), key: path("k"), client_ca: path("ca"), ..TlsSettings::default() };
        assert_eq!(mtls.cwmp().unwrap().unwrap().client_ca, path("ca"));
        assert_eq!(mtls.http().unwrap().unwrap().client_ca, None);
    }
}
