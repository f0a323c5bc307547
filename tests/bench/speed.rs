//! `roost-bench speed-test`: a TR-143 speed test through Roost's own endpoints on loopback, as
//! a support desk asks for it: a simulated TR-098 device, `POST /devices/{id}/speed-test`, the
//! device really downloading from and uploading to the server. Prints the throughput the device
//! measured each way and the CPU time the server spent (from `/proc/<pid>/stat`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use roost_sim::{DataModel, DataModelKind, Fleet, FleetConfig, StartMode};

/// The server's user and system CPU time so far.
fn cpu_time(pid: u32) -> Result<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).context("reading the server's /proc stat")?;
    // Fields after the command (which may hold spaces) end with ')'.
    let fields: Vec<&str> = stat.rsplit_once(')').context("a /proc stat line")?.1.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok()).unwrap_or(0);
    // utime and stime are fields 14 and 15, the 12th and 13th after the command.
    // USER_HZ: 100 on every Linux architecture Roost runs on.
    let hz = 100.0;
    Ok(Duration::from_secs_f64((ticks(11) + ticks(12)) as f64 / hz))
}

pub async fn run(
    cwmp: SocketAddr,
    http: SocketAddr,
    token: &str,
    server_pid: u32,
    bytes: u64,
    runs: usize,
) -> Result<()> {
    let model = Arc::new(DataModel::bundled(DataModelKind::Tr098)?);
    let mut config = FleetConfig::new(format!("http://{cwmp}/"), model);
    config.devices = 1;
    config.serial_prefix = "SPEED".into();
    config.start = StartMode::Manual;
    config.retry = false;
    config.cr_min_interval = Duration::from_millis(0);
    config.transfer_timeout = Duration::from_secs(600);
    let fleet = Fleet::start(config).await?;
    let cpe = fleet.device(0);
    ensure!(cpe.inform_now(&[]).await?.is_ok(), "the device's first session failed");
    let id: String = cpe.device_id();
    let encoded: String = id
        .bytes()
        .map(|b| if b.is_ascii_alphanumeric() { (b as char).to_string() } else { format!("%{b:02X}") })
        .collect();
    let client = reqwest::Client::builder().timeout(Duration::from_secs(900)).build()?;
    println!("| Run | Direction | Bytes | Device-measured Gbit/s | Wall s |");
    println!("|---|---|---|---|---|");
    let mut cpu_total = Duration::ZERO;
    let mut wall_total = Duration::ZERO;
    for i in 1..=runs {
        let cpu_before = cpu_time(server_pid)?;
        let started = Instant::now();
        let response = client
            .post(format!("http://{http}/api/v1/devices/{encoded}/speed-test?wait=300"))
            .bearer_auth(token)
            .json(&serde_json::json!({"size": bytes}))
            .send()
            .await?;
        let status = response.status();
        let answer: serde_json::Value = response.json().await?;
        ensure!(status.is_success(), "speed test: {status} {answer}");
        let wall = started.elapsed();
        cpu_total += cpu_time(server_pid)?.saturating_sub(cpu_before);
        wall_total += wall;
        for run in answer["runs"].as_array().context("runs")? {
            ensure!(run["status"] == "complete", "a run did not complete: {run}");
            let bps = run["summary"]["throughput_bps"].as_f64().unwrap_or(0.0);
            println!(
                "| {i} | {} | {} | {:.2} | {:.1} |",
                run["kind"].as_str().unwrap_or("?"),
                bytes,
                bps / 1e9,
                wall.as_secs_f64()
            );
        }
    }
    println!();
    println!(
        "Server CPU: {:.2} s for {} bytes each way, {runs} runs ({:.0}% of one core over {:.1} s of tests)",
        cpu_total.as_secs_f64(),
        bytes,
        cpu_total.as_secs_f64() * 100.0 / wall_total.as_secs_f64().max(1e-9),
        wall_total.as_secs_f64()
    );
    fleet.stop().await;
    Ok(())
}
