//! `roost-bench hostile`: the hostile cases of the CWMP front door against a running
//! `roost serve --cpe-auth required`, each for a few seconds while real CPE sessions go on beside
//! it, with the server's memory and file descriptors read from `/proc`.
//!
//! The CPEs are roost-sim devices with valid credentials, informing `2 PERIODIC` at a fixed
//! rate from 127.0.0.1; attackers connect from other loopback addresses (127.0.0.2…), as other
//! hosts would. One markdown row per phase: the CPE sessions' latency and failures, the
//! server's peak and final RSS and peak descriptors, and what the attackers got.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use roost_sim::{DataModel, DataModelKind, Fleet, FleetConfig, StartMode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Mutex;

/// What `roost-bench hostile` is pointed at.
#[derive(Debug)]
pub struct Plan {
    pub cwmp: SocketAddr,
    pub http: SocketAddr,
    pub server_pid: u32,
    pub username: String,
    pub password: String,
    /// A bearer token for the API clients.
    pub api_token: String,
    pub devices: usize,
    /// CPE sessions offered per second.
    pub rate: u64,
    pub phase: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Attack {
    None,
    UnauthenticatedBodies,
    IdleConnections,
    WrongPasswords,
    ApiClients,
}

impl Attack {
    fn label(self) -> &'static str {
        match self {
            Self::None => "no attack",
            Self::UnauthenticatedBodies => "40 concurrent 3 MB Informs without credentials",
            Self::IdleConnections => "1,100 idle connections from one address",
            Self::WrongPasswords => "wrong Digest passwords, as fast as answered",
            Self::ApiClients => "20 API clients listing devices",
        }
    }
}

/// What the attackers got: outcomes by name.
#[derive(Default)]
struct Tally(std::sync::Mutex<BTreeMap<String, u64>>);

impl Tally {
    fn add(&self, outcome: impl Into<String>) {
        if let Ok(mut map) = self.0.lock() {
            *map.entry(outcome.into()).or_default() += 1;
        }
    }

    fn summary(&self) -> String {
        let map = self.0.lock().map(|m| m.clone()).unwrap_or_default();
        map.iter().map(|(k, v)| format!("{k}: {v}")).collect::<Vec<_>>().join(", ")
    }
}

/// Server memory and descriptors over a phase.
#[derive(Debug, Default, Clone, Copy)]
struct Resources {
    peak_rss_kib: u64,
    end_rss_kib: u64,
    peak_fds: u64,
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn fds(pid: u32) -> u64 {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map(|d| d.count() as u64).unwrap_or(0)
}

pub async fn run(plan: Plan) -> Result<()> {
    let fleet = victims(&plan).await?;
    println!(
        "| Attack ({} s each; CPE sessions offered at {}/s) | CPE sessions | p50 ms | p99 ms | max ms | failed | RSS peak / end MiB | fds peak | attackers got |",
        plan.phase.as_secs(),
        plan.rate
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    let before = Resources {
        peak_rss_kib: rss_kib(plan.server_pid),
        end_rss_kib: rss_kib(plan.server_pid),
        peak_fds: fds(plan.server_pid),
    };
    eprintln!("server before: RSS {} MiB, {} fds", before.end_rss_kib / 1024, before.peak_fds);
    for attack in [
        Attack::None,
        Attack::UnauthenticatedBodies,
        Attack::IdleConnections,
        Attack::WrongPasswords,
        Attack::ApiClients,
    ] {
        phase(&plan, &fleet, attack).await?;
        // Let the server settle (connections close, buffers go) before the next phase.
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    eprintln!("server after: RSS {} MiB, {} fds", rss_kib(plan.server_pid) / 1024, fds(plan.server_pid));
    fleet.stop().await;
    Ok(())
}

/// The CPEs: registered, discovered and configured before the phases start.
async fn victims(plan: &Plan) -> Result<Fleet> {
    let model = Arc::new(DataModel::load(roost_sim::bundled_model_path(DataModelKind::Tr098))?);
    let mut config = FleetConfig::new(format!("http://{}/", plan.cwmp), model);
    config.devices = plan.devices;
    config.start = StartMode::Manual;
    config.serial_prefix = "VICTIM".into();
    config.acs_username = Some(plan.username.clone());
    config.acs_password = Some(plan.password.clone());
    config.retry = false;
    let fleet = Fleet::start(config).await.context("starting the CPEs")?;
    for i in 0..plan.devices {
        let report = fleet.device(i).inform_now(&[]).await.context("bootstrapping a CPE")?;
        anyhow::ensure!(report.is_ok(), "bootstrapping CPE {i} failed: {:?}", report.error);
    }
    Ok(fleet)
}

async fn phase(plan: &Plan, fleet: &Fleet, attack: Attack) -> Result<()> {
    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Tally::default());
    let mut attackers = tokio::task::JoinSet::new();
    match attack {
        Attack::None => {}
        Attack::UnauthenticatedBodies => {
            for i in 0..40u8 {
                let (stop, tally, cwmp) = (stop.clone(), tally.clone(), plan.cwmp);
                attackers.spawn(async move {
                    while !stop.load(Ordering::Relaxed) {
                        tally.add(big_unauthenticated_inform(cwmp, Ipv4Addr::new(127, 0, 1, i)).await);
                    }
                });
            }
        }
        Attack::IdleConnections => {
            let (stop, tally, cwmp) = (stop.clone(), tally.clone(), plan.cwmp);
            attackers.spawn(async move { hold_idle_connections(cwmp, 1_100, &stop, &tally).await });
        }
        Attack::WrongPasswords => {
            let (stop, tally, cwmp, username) = (stop.clone(), tally.clone(), plan.cwmp, plan.username.clone());
            attackers.spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    tally.add(wrong_password(cwmp, &username).await);
                }
            });
        }
        Attack::ApiClients => {
            let client = reqwest::Client::new();
            for _ in 0..20 {
                let (stop, tally, client) = (stop.clone(), tally.clone(), client.clone());
                let url = format!("http://{}/api/v1/devices?limit=100", plan.http);
                let token = plan.api_token.clone();
                attackers.spawn(async move {
                    while !stop.load(Ordering::Relaxed) {
                        let outcome = match client.get(&url).bearer_auth(&token).send().await {
                            Ok(response) => {
                                let status = response.status().as_u16();
                                let _ = response.bytes().await;
                                format!("{status}")
                            }
                            Err(_) => "error".into(),
                        };
                        tally.add(outcome);
                    }
                });
            }
        }
    }
    // Give the attack a moment to take hold, then measure.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let sampler = {
        let stop = stop.clone();
        let pid = plan.server_pid;
        tokio::spawn(async move {
            let mut seen = Resources::default();
            while !stop.load(Ordering::Relaxed) {
                seen.peak_rss_kib = seen.peak_rss_kib.max(rss_kib(pid));
                seen.peak_fds = seen.peak_fds.max(fds(pid));
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            seen
        })
    };
    let latencies = sessions(plan, fleet).await;
    stop.store(true, Ordering::Relaxed);
    attackers.abort_all();
    while attackers.join_next().await.is_some() {}
    let mut resources = sampler.await.unwrap_or_default();
    tokio::time::sleep(Duration::from_secs(2)).await;
    resources.end_rss_kib = rss_kib(plan.server_pid);
    let (mut ok, failed) = latencies;
    ok.sort_unstable();
    let pick = |q: f64| ok.get(((ok.len() as f64 * q) as usize).min(ok.len().saturating_sub(1))).copied().unwrap_or(0);
    println!(
        "| {} | {} | {:.1} | {:.1} | {:.1} | {} | {} / {} | {} | {} |",
        attack.label(),
        ok.len() + failed,
        pick(0.5) as f64 / 1000.0,
        pick(0.99) as f64 / 1000.0,
        ok.last().copied().unwrap_or(0) as f64 / 1000.0,
        failed,
        resources.peak_rss_kib / 1024,
        resources.end_rss_kib / 1024,
        resources.peak_fds,
        tally.summary()
    );
    Ok(())
}

/// CPE sessions at the plan's rate for one phase: latencies (µs) of those that succeeded, and
/// the number that failed.
async fn sessions(plan: &Plan, fleet: &Fleet) -> (Vec<u64>, usize) {
    let results = Arc::new(Mutex::new((Vec::new(), 0usize)));
    let busy: Arc<Vec<AtomicBool>> = Arc::new((0..plan.devices).map(|_| AtomicBool::new(false)).collect());
    let skipped = Arc::new(AtomicU64::new(0));
    let mut running = tokio::task::JoinSet::new();
    let every = Duration::from_micros(1_000_000 / plan.rate.max(1));
    let mut tick = tokio::time::interval(every);
    let end = Instant::now() + plan.phase;
    let mut next = 0;
    while Instant::now() < end {
        tick.tick().await;
        let device = next % plan.devices;
        next += 1;
        if busy[device].swap(true, Ordering::AcqRel) {
            skipped.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        let handle = fleet.device(device);
        let (results, busy) = (results.clone(), busy.clone());
        running.spawn(async move {
            let started = Instant::now();
            let outcome = tokio::time::timeout(Duration::from_secs(30), handle.inform_now(&["2 PERIODIC"])).await;
            let elapsed = started.elapsed().as_micros() as u64;
            let mut results = results.lock().await;
            match outcome {
                Ok(Ok(report)) if report.is_ok() => results.0.push(elapsed),
                _ => results.1 += 1,
            }
            busy[device].store(false, Ordering::Release);
        });
    }
    while running.join_next().await.is_some() {}
    let skipped = skipped.load(Ordering::Relaxed);
    if skipped > 0 {
        eprintln!("{skipped} sessions not offered: their device was still in a session");
    }
    let results = results.lock().await;
    (results.0.clone(), results.1)
}

async fn connect_from(cwmp: SocketAddr, from: Ipv4Addr) -> std::io::Result<tokio::net::TcpStream> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind(SocketAddr::from((from, 0)))?;
    socket.connect(cwmp).await
}

/// The status line's code of what the server answers, or what went wrong.
async fn status_of(stream: &mut tokio::net::TcpStream) -> String {
    let mut buf = [0u8; 1024];
    match tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf)).await {
        Ok(Ok(0)) => "closed".into(),
        Ok(Ok(n)) => String::from_utf8_lossy(&buf[..n]).split_whitespace().nth(1).unwrap_or("?").to_owned(),
        Ok(Err(_)) => "reset".into(),
        Err(_) => "no answer in 10 s".into(),
    }
}

async fn big_unauthenticated_inform(cwmp: SocketAddr, from: Ipv4Addr) -> String {
    const SIZE: usize = 3_000_000;
    let Ok(mut stream) = connect_from(cwmp, from).await else { return "connect failed".into() };
    let head = format!("POST / HTTP/1.1\r\nHost: acs\r\nContent-Type: text/xml\r\nContent-Length: {SIZE}\r\n\r\n");
    if stream.write_all(head.as_bytes()).await.is_err() {
        return "write failed".into();
    }
    // The body goes out in the background of the answer, as a client that does not wait would.
    let chunk = vec![b'x'; 64 * 1024];
    let (mut reader, mut writer) = stream.into_split();
    let sender = tokio::spawn(async move {
        for _ in 0..SIZE / chunk.len() {
            if writer.write_all(&chunk).await.is_err() {
                break;
            }
        }
    });
    let mut buf = [0u8; 1024];
    let status = match tokio::time::timeout(Duration::from_secs(10), reader.read(&mut buf)).await {
        Ok(Ok(n)) if n > 0 => String::from_utf8_lossy(&buf[..n]).split_whitespace().nth(1).unwrap_or("?").to_owned(),
        Ok(_) => "closed".into(),
        Err(_) => "no answer in 10 s".into(),
    };
    sender.abort();
    status
}

async fn hold_idle_connections(cwmp: SocketAddr, count: usize, stop: &AtomicBool, tally: &Tally) {
    let mut held = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        // Opened a hundred at a time: a server that never answers must not slow the attack.
        while held.len() < count && !stop.load(Ordering::Relaxed) {
            let batch = (count - held.len()).min(100);
            let attempts = (0..batch).map(|_| async move {
                let Ok(mut stream) = connect_from(cwmp, Ipv4Addr::new(127, 0, 0, 2)).await else {
                    return (None, "connect failed".to_owned());
                };
                // Half a head, then silence; a shed connection is answered 503 at once.
                let _ = stream.write_all(b"POST / HTTP/1.1\r\n").await;
                let mut probe = [0u8; 64];
                match tokio::time::timeout(Duration::from_millis(200), stream.read(&mut probe)).await {
                    Ok(Ok(n)) if n > 0 => (
                        None,
                        format!(
                            "shed {}",
                            String::from_utf8_lossy(&probe[..n]).split_whitespace().nth(1).unwrap_or("?")
                        ),
                    ),
                    Ok(_) => (None, "closed".to_owned()),
                    Err(_) => (Some(stream), "held".to_owned()),
                }
            });
            let mut failed = false;
            for (stream, outcome) in futures::future::join_all(attempts).await {
                failed |= outcome == "connect failed";
                tally.add(outcome);
                held.extend(stream);
            }
            if failed {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        // Re-open what the server closed (deadline, idle time).
        held.retain(|s| s.peer_addr().is_ok());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn wrong_password(cwmp: SocketAddr, username: &str) -> String {
    let Ok(mut stream) = connect_from(cwmp, Ipv4Addr::new(127, 0, 0, 3)).await else { return "connect failed".into() };
    let inform = guessers_inform();
    let inform = inform.as_str();
    let request = |authorization: &str| {
        format!("POST / HTTP/1.1\r\nHost: acs\r\n{authorization}Content-Length: {}\r\n\r\n{inform}", inform.len())
    };
    if stream.write_all(request("").as_bytes()).await.is_err() {
        return "write failed".into();
    }
    let mut buf = vec![0u8; 4096];
    let Ok(Ok(n)) = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf)).await else {
        return "no challenge".into();
    };
    let text = String::from_utf8_lossy(&buf[..n]).into_owned();
    let Some(nonce) = text.split("nonce=\"").nth(1).and_then(|r| r.split('"').next()) else {
        return format!("no challenge ({})", text.split_whitespace().nth(1).unwrap_or("?"));
    };
    let authorization = format!(
        "Authorization: Digest username=\"{username}\", realm=\"roost\", nonce=\"{nonce}\", uri=\"/\", response=\"{}\"\r\n",
        "0".repeat(32)
    );
    if stream.write_all(request(&authorization).as_bytes()).await.is_err() {
        return "write failed".into();
    }
    status_of(&mut stream).await
}

/// A well-formed Inform of a device that does not exist, for the guesser to send.
fn guessers_inform() -> String {
    use roost_cwmp::{CpeBody, CpeRequest, CwmpVersion, DeviceIdStruct, EventStruct, Header, Inform};
    let inform = Inform {
        device_id: DeviceIdStruct {
            manufacturer: "Guess".into(),
            oui: "000000".into(),
            product_class: "Guess".into(),
            serial_number: "GUESS0001".into(),
        },
        events: vec![EventStruct { code: "0 BOOTSTRAP".into(), command_key: String::new() }],
        max_envelopes: 1,
        current_time: "2026-12-03T00:00:00Z".into(),
        retry_count: 0,
        parameters: vec![],
    };
    roost_cwmp::encode_cpe_message(CwmpVersion::V1_0, &Header::default(), &CpeBody::Request(CpeRequest::Inform(inform)))
}
