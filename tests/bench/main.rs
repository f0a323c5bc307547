//! `roost-bench`: the helpers behind `scripts/bench.sh`, Roost's periodic-Inform benchmark.
//!
//! - `seed` fills a fresh database (SQLite or PostgreSQL, schema from Roost's migrations) with
//!   devices exactly as roost-sim will present them with the same `--serial-prefix`, already
//!   registered, discovered and given connection-request credentials, so that their periodic
//!   Informs need no bootstrap work; the first `--full-trees` of them with the whole parameter
//!   tree of the model, the others with just the Inform parameters.
//! - `check` reports what a run did to those devices (informed, parameters rewritten, bootstrap
//!   work): a no-op periodic Inform must rewrite nothing.
//! - `pg-count` is a PostgreSQL wire-protocol proxy that traces the statements and round trips
//!   Roost issues; `ops-report` sums a time window of that trace per session.
//! - `plugins` measures the plugin runtime: compile, instantiate, provision runs and rounds.
//! - `ports` prints free loopback TCP ports for the script to use.
//! - `cert` writes a CA and a server certificate it signed, for the TLS runs.
//! - `speed-test` runs TR-143 speed tests through Roost's own endpoints (`scripts/bench-speed.sh`).
//! - `webhooks` measures webhook delivery: a burst of events to a loopback receiver.
//! - `rollout` runs a staged firmware rollout over a simulated fleet and times its batches.
//! - `hostile` runs the hostile cases of the CWMP front door against a running server beside
//!   real CPE sessions (`scripts/hostile.sh`).
//!
//! The benchmark itself is a command anyone can run (`scripts/bench.sh`), not a timed test; the
//! results and how to read them are in `docs/BENCHMARKS.md`.

mod api_list;
mod balance;
mod hostile;
mod image;
mod nullacs;
mod pgcount;
mod plugins;
mod rollout;
mod seed;
mod speed;
mod webhooks;

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};
use roost_sim::{DataModel, DataModelKind};

use crate::image::{FleetImage, SimSettings};

#[derive(Debug, Parser)]
#[command(name = "roost-bench", about = "Helpers of Roost's periodic-Inform benchmark (scripts/bench.sh)")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Fill a fresh database with registered, discovered devices matching roost-sim's.
    Seed {
        #[command(flatten)]
        fleet: FleetArgs,
        /// `sqlite://…?mode=rwc` or `postgres://…`; the schema is created by Roost's migrations.
        #[arg(long)]
        database_url: String,
        /// Number of devices (serials `<prefix>000000` upwards, as roost-sim `--serial-start 0`).
        #[arg(long)]
        devices: u64,
        /// How many of them (the first ones) get the full parameter tree of the model.
        #[arg(long, default_value_t = 0)]
        full_trees: u64,
        /// Organizations to spread the devices over (0: none; devices are pending).
        #[arg(long, default_value_t = 0)]
        orgs: u64,
    },
    /// Time `GET /api/v1/devices` with the filters integrations use (scripts/bench-api.sh).
    ApiList {
        #[arg(long)]
        http: SocketAddr,
        /// Bearer tokens or API keys, each as `label=token`.
        #[arg(long, required = true)]
        caller: Vec<String>,
        /// A stored software version to filter by.
        #[arg(long)]
        software_version: String,
        /// Requests per query and caller.
        #[arg(long, default_value_t = 200)]
        requests: usize,
    },
    /// Report what a run did to the seeded devices since a time.
    Check {
        #[command(flatten)]
        fleet: FleetArgs,
        #[arg(long)]
        database_url: String,
        /// Milliseconds since the Unix epoch: the start of the runs.
        #[arg(long)]
        since: i64,
    },
    /// Proxy PostgreSQL connections and trace the statements and round trips on them.
    PgCount {
        #[arg(long)]
        listen: SocketAddr,
        /// host:port of PostgreSQL.
        #[arg(long, default_value = "127.0.0.1:5432")]
        upstream: String,
        /// Trace file (appended to).
        #[arg(long)]
        trace: PathBuf,
    },
    /// Sum a window of a `pg-count` trace per session.
    OpsReport {
        #[arg(long)]
        trace: PathBuf,
        /// Window start, milliseconds since the Unix epoch.
        #[arg(long)]
        from: u128,
        /// Window end, milliseconds since the Unix epoch.
        #[arg(long)]
        to: u128,
        /// Sessions that ran in the window.
        #[arg(long)]
        sessions: u64,
    },
    /// Measure the plugin runtime: compile, instantiate, provision runs (docs/BENCHMARKS.md).
    Plugins {
        /// Where the shipped components are (scripts/build-plugins.sh).
        #[arg(long, default_value = "plugins/dist")]
        dist: PathBuf,
        /// A GenieACS export of the device the runs read.
        #[arg(long, default_value = "tests/data/cpe/huawei-eg8145v5_tr098_genieacs-export.csv")]
        export: PathBuf,
        #[arg(long, default_value_t = 20_000)]
        runs: usize,
    },
    /// The hostile cases of the CWMP front door, beside real CPE sessions (scripts/hostile.sh).
    Hostile {
        #[arg(long)]
        cwmp: SocketAddr,
        #[arg(long)]
        http: SocketAddr,
        /// The server's process id, whose memory and descriptors are read from /proc.
        #[arg(long)]
        server_pid: u32,
        /// A CPE credential the server knows.
        #[arg(long)]
        username: String,
        #[arg(long)]
        password: String,
        /// A bearer token for the API clients.
        #[arg(long)]
        api_token: String,
        #[arg(long, default_value_t = 20)]
        devices: usize,
        /// CPE sessions offered per second.
        #[arg(long, default_value_t = 50)]
        rate: u64,
        /// Seconds per phase.
        #[arg(long, default_value_t = 10)]
        phase: u64,
    },
    /// TR-143 speed tests of a simulated device through the server's own endpoints.
    SpeedTest {
        #[arg(long)]
        cwmp: SocketAddr,
        #[arg(long)]
        http: SocketAddr,
        /// A bearer token of a user who may run diagnostics.
        #[arg(long)]
        api_token: String,
        /// The server's process id, whose CPU time is read from /proc.
        #[arg(long)]
        server_pid: u32,
        /// Bytes each way.
        #[arg(long, default_value_t = 256 * 1024 * 1024)]
        bytes: u64,
        #[arg(long, default_value_t = 3)]
        runs: usize,
    },
    /// Webhook delivery throughput: a burst of events to a loopback receiver, through a server
    /// in this process.
    Webhooks {
        /// PostgreSQL to run on (a fresh database); SQLite in a temporary directory when absent.
        #[arg(long)]
        database_url: Option<String>,
        #[arg(long, default_value_t = 20_000)]
        events: u64,
        /// Devices the events are about (a device's events are delivered one after another).
        #[arg(long, default_value_t = 2_000)]
        subjects: u64,
        /// The receiver speaks https, with a certificate of a CA made for the run
        /// (`[events] ca_file`).
        #[arg(long)]
        tls: bool,
    },
    /// A staged firmware rollout over simulated devices of two models, through a server in this
    /// process: whether each batch started when it was due.
    Rollout(rollout::Plan),
    /// Write a test CA (`ca.pem`) and a server certificate for localhost and 127.0.0.1 it
    /// signed (`server.pem`, `server.key`) into `--dir`: TLS runs of the benchmark.
    Cert {
        #[arg(long)]
        dir: PathBuf,
    },
    /// The null ACS: canned answers to periodic-Inform sessions, the yardstick of the ceiling.
    NullAcs {
        #[arg(long)]
        listen: SocketAddr,
    },
    /// A round-robin TCP balancer in front of replicas (`--to` once per replica).
    Balance {
        #[arg(long)]
        listen: SocketAddr,
        #[arg(long, required = true)]
        to: Vec<SocketAddr>,
    },
    /// Print free TCP ports on 127.0.0.1, one per line.
    Ports {
        #[arg(long, default_value_t = 1)]
        count: usize,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Model {
    Tr098,
    Tr181,
}

/// How roost-sim will be run: what its devices report depends on it.
#[derive(Debug, Args)]
struct FleetArgs {
    /// roost-sim's `--model`.
    #[arg(long, value_enum)]
    model: Model,
    /// roost-sim's `--serial-prefix`.
    #[arg(long, default_value = "SIM")]
    serial_prefix: String,
    /// host:port of roost-sim's connection-request listener (its `--cr-listen`), which goes into
    /// every device's ConnectionRequestURL.
    #[arg(long, default_value = "127.0.0.1:7548")]
    cr_advertise: String,
    /// roost-sim's `--acs` (the tree's ManagementServer.URL).
    #[arg(long, default_value = "http://127.0.0.1:7547/")]
    acs_url: String,
    /// roost-sim's `--interval` in seconds (the tree's PeriodicInformInterval).
    #[arg(long, default_value_t = 300)]
    interval: u64,
}

impl FleetArgs {
    fn image(&self) -> Result<FleetImage> {
        let kind = match self.model {
            Model::Tr098 => DataModelKind::Tr098,
            Model::Tr181 => DataModelKind::Tr181,
        };
        let path = roost_sim::bundled_model_path(kind);
        let model = DataModel::load(&path).with_context(|| format!("loading {}", path.display()))?;
        Ok(FleetImage::new(
            Arc::new(model),
            SimSettings {
                serial_prefix: self.serial_prefix.clone(),
                cr_advertise: self.cr_advertise.clone(),
                acs_url: self.acs_url.clone(),
                interval: Duration::from_secs(self.interval),
            },
        ))
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    match Cli::parse().command {
        Command::ApiList { http, caller, software_version, requests } => {
            api_list::run(http, &caller, &software_version, requests).await
        }
        Command::Seed { fleet, database_url, devices, full_trees, orgs } => {
            let plan = seed::SeedPlan { database_url, devices, full_trees, orgs };
            seed::seed(&plan, &fleet.image()?).await
        }
        Command::Check { fleet, database_url, since } => seed::check(&database_url, &fleet.image()?, since).await,
        Command::PgCount { listen, upstream, trace } => pgcount::proxy(listen, upstream, trace).await,
        Command::OpsReport { trace, from, to, sessions } => pgcount::report(&trace, from, to, sessions),
        Command::Plugins { dist, export, runs } => {
            tokio::task::spawn_blocking(move || plugins::run(&dist, &export, runs)).await.context("plugin benchmark")?
        }
        Command::Hostile { cwmp, http, server_pid, username, password, api_token, devices, rate, phase } => {
            hostile::run(hostile::Plan {
                cwmp,
                http,
                server_pid,
                username,
                password,
                api_token,
                devices,
                rate,
                phase: Duration::from_secs(phase),
            })
            .await
        }
        Command::SpeedTest { cwmp, http, api_token, server_pid, bytes, runs } => {
            speed::run(cwmp, http, &api_token, server_pid, bytes, runs).await
        }
        Command::Webhooks { database_url, events, subjects, tls } => {
            webhooks::run(webhooks::Plan { database_url, events, subjects, tls }).await
        }
        Command::Rollout(plan) => rollout::run(plan).await,
        Command::Cert { dir } => write_certificates(&dir),
        Command::NullAcs { listen } => nullacs::serve(listen).await,
        Command::Balance { listen, to } => balance::serve(listen, to).await,
        Command::Ports { count } => {
            // Held together so the ports differ; released on return for the caller to bind.
            let listeners = (0..count)
                .map(|_| TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("binding a loopback port"))
                .collect::<Result<Vec<_>>>()?;
            for listener in &listeners {
                println!("{}", listener.local_addr().context("reading a bound port")?.port());
            }
            Ok(())
        }
    }
}

/// A CA and a server certificate (ECDSA P-256, as a CA would issue today) for the TLS runs.
fn write_certificates(dir: &std::path::Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let ca_key = rcgen::KeyPair::generate()?;
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new())?;
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.distinguished_name.push(rcgen::DnType::CommonName, "roost-bench CA");
    ca.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign, rcgen::KeyUsagePurpose::DigitalSignature];
    std::fs::write(dir.join("ca.pem"), ca.self_signed(&ca_key)?.pem())?;
    let issuer = rcgen::Issuer::new(ca, ca_key);
    let key = rcgen::KeyPair::generate()?;
    let mut server = rcgen::CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])?;
    server.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    std::fs::write(dir.join("server.pem"), server.signed_by(&key, &issuer)?.pem())?;
    std::fs::write(dir.join("server.key"), key.serialize_pem())?;
    Ok(())
}
