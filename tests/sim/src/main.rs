//! `roost-sim`: run a fleet of simulated CPEs against an ACS and report session throughput.
//!
//! Output (stdout), one line per report, `key=value` so it greps and parses:
//!
//! ```text
//! roost-sim progress devices=1000 sessions=812 sessions_per_s=162.4 p50_ms=4.1 p99_ms=19.8 max_ms=31.0 failures=0 elapsed_s=5.0
//! roost-sim total devices=1000 sessions=9731 sessions_per_s=162.2 p50_ms=4.0 p99_ms=21.3 max_ms=88.7 failures=0 elapsed_s=60.0
//! ```
//!
//! `progress` lines cover the window since the previous line; the final `total` line covers
//! the whole run. Logs go to stderr (`RUST_LOG=roost_sim=debug` for per-session failures).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Parser, ValueEnum};
use roost_cwmp::CwmpVersion;
use roost_sim::{Badge, DataModel, DataModelKind, FirstContact, Fleet, FleetConfig, StartMode, bundled_model_path};

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Model {
    Tr098,
    Tr181,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Switch {
    On,
    Off,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum First {
    Bootstrap,
    Boot,
    Periodic,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Start {
    /// Spread first informs over one interval.
    Spread,
    /// Every device informs at once.
    Immediate,
}

/// Simulated TR-069 CPEs against an ACS: end-to-end checks and load.
#[derive(Debug, Parser)]
#[command(name = "roost-sim", version)]
struct Cli {
    /// ACS URL, e.g. http://127.0.0.1:7547/
    #[arg(long)]
    acs: String,
    /// Number of devices.
    #[arg(long, default_value_t = 1)]
    devices: usize,
    /// Data model; picks the default export (tr098: Huawei EG8145V5, tr181: TP-Link XX230v).
    #[arg(long, value_enum, required_unless_present = "data")]
    model: Option<Model>,
    /// A GenieACS export (12 columns) or genieacs-sim (5 columns) CSV to use instead.
    #[arg(long)]
    data: Option<PathBuf>,
    /// Report this manufacturer OUI instead of the tree's (`DeviceInfo.ManufacturerOUI` and the
    /// Inform's DeviceId): to try an adapter against a real vendor's tree.
    #[arg(long, value_parser = oui)]
    oui: Option<String>,
    /// Report this manufacturer instead of the tree's.
    #[arg(long)]
    manufacturer: Option<String>,
    /// Report this product class instead of the tree's.
    #[arg(long)]
    product_class: Option<String>,
    /// Periodic inform interval in seconds.
    #[arg(long, default_value_t = 300)]
    interval: u64,
    /// Each periodic wait varies by up to this fraction of the interval.
    #[arg(long, default_value_t = 0.05)]
    jitter: f64,
    /// Serial numbers are this prefix followed by a six-digit number.
    #[arg(long, default_value = "SIM")]
    serial_prefix: String,
    /// Number of the first serial (for running several simulators against one ACS).
    #[arg(long, default_value_t = 0)]
    serial_start: u64,
    /// Connection-request listener address.
    #[arg(long, default_value = "127.0.0.1:0")]
    cr_listen: SocketAddr,
    /// host:port to advertise in ConnectionRequestURL instead of the bound address.
    #[arg(long)]
    cr_advertise: Option<String>,
    /// CPE→ACS username ({serial} is replaced by the serial number).
    #[arg(long)]
    acs_username: Option<String>,
    /// CPE→ACS password ({serial} is replaced by the serial number).
    #[arg(long)]
    acs_password: Option<String>,
    /// Stop after this many seconds (default: run until Ctrl-C).
    #[arg(long)]
    duration: Option<f64>,
    /// Sessions in flight at once.
    #[arg(long, default_value_t = 256)]
    concurrency: usize,
    /// CWMP version to speak: 1.0, 1.1, 1.2, 1.3 or 1.4.
    #[arg(long, default_value = "1.0")]
    cwmp_version: String,
    /// Events of each device's first Inform.
    #[arg(long, value_enum, default_value = "bootstrap")]
    first: First,
    /// When the first informs happen.
    #[arg(long, value_enum, default_value = "spread")]
    start: Start,
    /// Seconds between progress lines.
    #[arg(long, default_value_t = 5.0)]
    report_every: f64,
    /// HTTP timeout towards the ACS, in seconds.
    #[arg(long, default_value_t = 30.0)]
    timeout: f64,
    /// For an `https://` ACS: the CA certificates (PEM) its certificate must chain to.
    #[arg(long)]
    ca_file: Option<std::path::PathBuf>,
    /// Whether devices resume TLS sessions the ACS offered (tickets, session ids): `off` makes
    /// every session a full handshake, as firmware that keeps no TLS session does.
    #[arg(long, value_enum, default_value = "on", requires = "ca_file")]
    tls_resumption: Switch,
    /// For mutual TLS: the devices' certificate chain (PEM), presented when the ACS asks.
    #[arg(long, requires_all = ["client_key", "ca_file"])]
    client_cert: Option<std::path::PathBuf>,
    /// Its private key (PEM).
    #[arg(long, requires = "client_cert")]
    client_key: Option<std::path::PathBuf>,
    /// Put the devices behind NAT: their connection-request URL unreachable, a STUN client
    /// (once the ACS enables it) keeping a UDP binding open for UDP connection requests.
    #[arg(long)]
    nat: bool,
}

/// An OUI is six hexadecimal digits (TR-069 DeviceIdStruct), written in capitals.
fn oui(value: &str) -> Result<String, String> {
    if value.len() == 6 && value.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(value.to_ascii_uppercase())
    } else {
        Err(format!("{value:?} is not an OUI (six hexadecimal digits, e.g. 00D0D0)"))
    }
}

fn seconds(value: f64, flag: &str) -> anyhow::Result<Duration> {
    Duration::try_from_secs_f64(value).with_context(|| format!("--{flag} must be a non-negative number of seconds"))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("roost_sim=info")),
        )
        .init();
    let cli = Cli::parse();

    let path = match (&cli.data, cli.model) {
        (Some(path), _) => path.clone(),
        (None, Some(Model::Tr098)) => bundled_model_path(DataModelKind::Tr098),
        (None, Some(Model::Tr181)) => bundled_model_path(DataModelKind::Tr181),
        (None, None) => bail!("--model or --data is required"),
    };
    let mut model = DataModel::load(&path).with_context(|| format!("loading {}", path.display()))?;
    model.rebadge(&Badge {
        oui: cli.oui.clone(),
        manufacturer: cli.manufacturer.clone(),
        product_class: cli.product_class.clone(),
    });
    if let (Some(wanted), true) = (cli.model, cli.data.is_some()) {
        let expected = match wanted {
            Model::Tr098 => DataModelKind::Tr098,
            Model::Tr181 => DataModelKind::Tr181,
        };
        if model.kind() != expected {
            bail!("{} is a {:?} tree, not {wanted:?}", path.display(), model.kind());
        }
    }
    tracing::info!(
        file = %path.display(),
        parameters = model.parameter_count(),
        objects = model.object_count(),
        "model loaded"
    );
    let Some(version) = CwmpVersion::parse(&cli.cwmp_version) else {
        bail!("--cwmp-version must be one of 1.0, 1.1, 1.2, 1.3, 1.4");
    };
    let interval = Duration::from_secs(cli.interval.max(1));

    let mut config = FleetConfig::new(cli.acs.clone(), Arc::new(model));
    config.devices = cli.devices;
    config.serial_prefix = cli.serial_prefix.clone();
    config.first_serial = cli.serial_start;
    config.cr_listen = cli.cr_listen;
    config.cr_advertise = cli.cr_advertise.clone();
    config.acs_username = cli.acs_username.clone();
    config.acs_password = cli.acs_password.clone();
    config.cwmp_version = version;
    config.periodic_interval = Some(interval);
    config.jitter = cli.jitter;
    config.max_concurrent_sessions = cli.concurrency.max(1);
    config.http_timeout = seconds(cli.timeout, "timeout")?;
    config.history = 1;
    config.nat = cli.nat;
    if let Some(ca) = &cli.ca_file {
        let identity = cli.client_cert.as_deref().zip(cli.client_key.as_deref());
        let mut tls = roost_sim::fleet::client_tls(ca, identity).context("--ca-file")?;
        if cli.tls_resumption == Switch::Off {
            let mut without = (*tls).clone();
            without.resumption = rustls::client::Resumption::disabled();
            tls = std::sync::Arc::new(without);
        }
        config.tls = Some(tls);
    }
    config.first_contact = match cli.first {
        First::Bootstrap => FirstContact::Bootstrap,
        First::Boot => FirstContact::Boot,
        First::Periodic => FirstContact::Periodic,
    };
    config.start = match cli.start {
        Start::Spread => StartMode::Spread(interval),
        Start::Immediate => StartMode::Immediate,
    };

    let fleet = Fleet::start(config).await.context("starting the fleet")?;
    tracing::info!(
        devices = fleet.len(),
        connection_requests = %fleet.connection_request_addr(),
        acs = %cli.acs,
        "fleet started"
    );
    let stats = fleet.stats();
    let devices = fleet.len();
    let every = seconds(cli.report_every, "report-every")?.max(Duration::from_millis(100));
    let reporter = {
        let stats = stats.clone();
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(every);
            ticker.tick().await;
            loop {
                ticker.tick().await;
                println!("roost-sim progress devices={devices} {}", stats.take_window());
            }
        })
    };

    let stop = async {
        match cli.duration {
            Some(d) => tokio::time::sleep(seconds(d, "duration")?).await,
            None => tokio::signal::ctrl_c().await.context("waiting for Ctrl-C")?,
        }
        anyhow::Ok(())
    };
    let ended = tokio::select! {
        result = stop => result,
        _ = tokio::signal::ctrl_c() => Ok(()),
    };
    reporter.abort();
    let tls = match cli.ca_file {
        Some(_) => {
            let (full, resumed) = stats.tls_handshakes();
            format!(" tls_full={full} tls_resumed={resumed}")
        }
        None => String::new(),
    };
    println!("roost-sim total devices={devices} {}{tls}", stats.total());
    fleet.stop().await;
    ended
}
