//! A staged rollout at fleet scale: a Roost server in this process (SQLite in a temporary
//! directory, or a fresh PostgreSQL database), `devices` simulated devices of two models
//! onboarded into one organization, one image for both, and one rollout of a canary and
//! batches of `batch_size` with `batch_interval_s` between them. When it completes, the
//! benchmark reads from the store when each batch's devices started and settled and prints,
//! per batch, how late its first device started against the time the rollout promised
//! (the batch before settled, plus the interval), and how long its devices took.
//!
//! "On time" is the runner's promise: a batch starts within a fleet-jobs tick of its due
//! time, because the runner looks once a tick; anything later is lag the fleet's size added.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use futures::StreamExt;
use roost::config::CpeAuthMode;
use roost_sim::{DataModel, DataModelKind, Fleet, FleetConfig, StartMode, firmware_image};
use roost_tests::{ADMIN_EMAIL, ADMIN_PASSWORD, Backend, Harness};
use sea_orm::FromQueryResult;
use serde_json::json;

#[derive(Debug, clap::Args)]
pub struct Plan {
    /// Run on PostgreSQL (a fresh database on `ROOST_TEST_POSTGRES_URL`'s server); SQLite in a
    /// temporary directory otherwise.
    #[arg(long)]
    pub postgres: bool,
    #[arg(long, default_value_t = 10_000)]
    pub devices: usize,
    #[arg(long, default_value_t = 20)]
    pub canary: u64,
    #[arg(long, default_value_t = 1_000)]
    pub batch_size: u64,
    #[arg(long, default_value_t = 10)]
    pub batch_interval_s: u64,
    /// The organization's paced wake-ups (`[jobs] connection_requests_per_second`).
    #[arg(long, default_value_t = 200)]
    pub connection_requests_per_second: u32,
    /// `[rollouts] max_concurrent_downloads`.
    #[arg(long, default_value_t = 200)]
    pub max_concurrent_downloads: u64,
    /// Size of the image each device downloads.
    #[arg(long, default_value_t = 64)]
    pub image_kib: usize,
}

const NEW: &str = "V9R001C00S777";

#[derive(Debug, FromQueryResult)]
struct BatchTimes {
    batch: i64,
    devices: i64,
    passed: i64,
    first_start: i64,
    last_start: i64,
    last_settled: i64,
}

pub async fn run(plan: Plan) -> Result<()> {
    let backend = if plan.postgres { Backend::Postgres } else { Backend::Sqlite };
    let (rate, cap) = (plan.connection_requests_per_second, plan.max_concurrent_downloads);
    let mut h = Harness::start_configured(backend, CpeAuthMode::Open, move |config| {
        config.jobs.connection_requests_per_second = rate;
        config.rollouts.max_concurrent_downloads = cap;
        config.cwmp.session_timeout = Duration::from_secs(60);
    })
    .await;
    let tick = h.app().config.jobs.tick;
    h.org("bench-fw", None).await;

    // Two models, half each, onboarded by their first Inform.
    let started = Instant::now();
    let mut fleets = Vec::new();
    for (kind, prefix, count) in [
        (DataModelKind::Tr098, "BRA", plan.devices / 2),
        (DataModelKind::Tr181, "BRB", plan.devices - plan.devices / 2),
    ] {
        let model = Arc::new(DataModel::bundled(kind).context("bundled model")?);
        let mut config = FleetConfig::new(format!("{}cwmp/bench-fw", h.cwmp_url()), model);
        config.devices = count;
        config.serial_prefix = prefix.to_owned();
        config.start = StartMode::Manual;
        config.retry = true;
        config.retry_min_wait = Duration::from_secs(1);
        config.reboot_delay = Duration::from_millis(500);
        config.cr_min_interval = Duration::ZERO;
        config.max_concurrent_sessions = 256;
        config.http_timeout = Duration::from_secs(60);
        // Each device's last sessions only: a discovery's reports hold its whole tree.
        config.history = 2;
        fleets.push(Fleet::start(config).await.context("starting the fleet")?);
    }
    let devices: Vec<_> = fleets.iter().flat_map(|f| f.devices().iter().cloned()).collect();
    let informed = futures::stream::iter(devices.iter().cloned())
        .map(|device| async move { device.inform_now(&[]).await.map(|report| report.is_ok()).unwrap_or(false) })
        .buffer_unordered(64)
        .filter(|ok| futures::future::ready(*ok))
        .count()
        .await;
    ensure!(informed == devices.len(), "only {informed} of {} devices onboarded", devices.len());
    println!("onboarded {} devices in {:.1} s", devices.len(), started.elapsed().as_secs_f64());

    // Onboarding takes longer than an access token lives.
    h.token = h.login(ADMIN_EMAIL, ADMIN_PASSWORD).await?;
    let image = h
        .http
        .post(h.url(&format!("/api/v1/files?name=bench-{NEW}.bin&version={NEW}&org=bench-fw")))
        .bearer_auth(&h.token)
        .body(firmware_image(NEW, plan.image_kib * 1024))
        .send()
        .await?
        .error_for_status()?
        .json::<serde_json::Value>()
        .await?;
    let (status, created) = h
        .post(
            "/api/v1/rollouts",
            json!({"file": image["id"], "target": {"org": "bench-fw"}, "canary": plan.canary,
                "batch_size": plan.batch_size, "batch_interval_s": plan.batch_interval_s,
                "failure_threshold": 0.05, "gate_timeout_s": 300}),
        )
        .await;
    ensure!(status.is_success(), "creating the rollout: {created}");
    let id = created["id"].as_str().context("rollout id")?.to_owned();
    let created_at = Instant::now();

    // Progress read as an operator's console would, once a second; its latency is reported.
    let mut reads = Vec::new();
    let deadline = created_at + Duration::from_secs(3600);
    loop {
        let asked = Instant::now();
        let (mut status, mut rollout) = h.get(&format!("/api/v1/rollouts/{id}")).await;
        reads.push(asked.elapsed());
        if status == reqwest::StatusCode::UNAUTHORIZED {
            h.token = h.login(ADMIN_EMAIL, ADMIN_PASSWORD).await?;
            (status, rollout) = h.get(&format!("/api/v1/rollouts/{id}")).await;
        }
        ensure!(status.is_success(), "reading the rollout: {rollout}");
        match rollout["state"].as_str() {
            Some("completed") => break,
            Some("running") => {}
            other => bail!("the rollout is {other:?}: {rollout:#}"),
        }
        ensure!(Instant::now() < deadline, "the rollout did not complete in an hour: {rollout:#}");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let took = created_at.elapsed();

    let store = &h.app().store;
    let rollout_pk: i64 = id.parse().context("rollout id is a number")?;
    let batches = BatchTimes::find_by_statement(store.statement(
        "SELECT batch, COUNT(*) AS devices, SUM(CASE WHEN state = 'passed' THEN 1 ELSE 0 END) AS passed,
                MIN(started_at) AS first_start, MAX(started_at) AS last_start, MAX(finished_at) AS last_settled
         FROM rollout_devices WHERE rollout_id = ? GROUP BY batch ORDER BY batch",
        [rollout_pk.into()],
    ))
    .all(store.db())
    .await
    .context("reading the batches' times")?;
    let passed: i64 = batches.iter().map(|b| b.passed).sum();
    ensure!(passed as usize == devices.len(), "{passed} of {} devices passed", devices.len());
    let upgraded = devices
        .iter()
        .filter(|d| d.value(&format!("{}DeviceInfo.SoftwareVersion", d.root())).as_deref() == Some(NEW))
        .count();
    ensure!(upgraded == devices.len(), "{upgraded} of {} simulated devices run {NEW}", devices.len());

    let backend_name = if plan.postgres { "postgres" } else { "sqlite" };
    println!(
        "rollout {backend_name}: {} devices, canary {}, batches of {}, {} s apart, {} wakes/s, {} downloads at once, \
         tick {} ms: completed in {:.1} s",
        devices.len(),
        plan.canary,
        plan.batch_size,
        plan.batch_interval_s,
        rate,
        cap,
        tick.as_millis(),
        took.as_secs_f64()
    );
    println!("| batch | devices | due → first start (s) | first → last start (s) | first start → last settled (s) |");
    let mut worst_lag: f64 = 0.0;
    let interval_ms = i64::try_from(plan.batch_interval_s * 1000).unwrap_or(i64::MAX);
    for (i, batch) in batches.iter().enumerate() {
        let lag = i.checked_sub(1).map(|before| {
            let due = batches[before].last_settled + interval_ms;
            (batch.first_start - due) as f64 / 1000.0
        });
        if let Some(lag) = lag {
            worst_lag = worst_lag.max(lag);
        }
        println!(
            "| {} | {} | {} | {:.1} | {:.1} |",
            batch.batch,
            batch.devices,
            lag.map(|l| format!("{l:.1}")).unwrap_or_else(|| "—".into()),
            (batch.last_start - batch.first_start) as f64 / 1000.0,
            (batch.last_settled - batch.first_start) as f64 / 1000.0
        );
    }
    reads.sort();
    let median = reads[reads.len() / 2];
    let worst = reads.last().copied().unwrap_or_default();
    println!(
        "worst start after due: {worst_lag:.1} s (tick {:.1} s); GET /rollouts/{{id}} median {:.1} ms, worst {:.1} ms over {} reads",
        tick.as_secs_f64(),
        median.as_secs_f64() * 1000.0,
        worst.as_secs_f64() * 1000.0,
        reads.len()
    );
    drop(fleets);
    h.finish().await;
    Ok(())
}
