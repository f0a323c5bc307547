//! Webhook delivery throughput: a Roost server in this process (SQLite in a temporary directory,
//! or the PostgreSQL given), one webhook to a loopback receiver that answers 204 at once, and a
//! burst of events written to the outbox as changes write them (in transactions of a thousand),
//! spread over `subjects` devices. It prints how long the fan-out and the deliveries took, and
//! the events per second the receiver saw from its first delivery to its last. With `tls`, the
//! receiver speaks https under a CA made for the run, which Roost is told to trust.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use sea_orm::TransactionTrait;

pub struct Plan {
    pub database_url: Option<String>,
    pub events: u64,
    pub subjects: u64,
    pub tls: bool,
}

pub async fn run(plan: Plan) -> Result<()> {
    let dir = tempfile::tempdir().context("a temporary data directory")?;
    let mut config = roost::config::Config::for_loopback(dir.path().to_path_buf(), plan.database_url.clone());
    let pki = plan.tls.then(|| roost_tests::Pki::new("bench"));
    config.events.ca_file = pki.as_ref().map(roost_tests::Pki::ca);
    let server = roost::app::Server::start(config).await.context("starting Roost")?;
    let app = server.app().clone();

    let received = Arc::new(AtomicU64::new(0));
    let first = Arc::new(std::sync::OnceLock::<Instant>::new());
    let router = {
        let (received, first) = (received.clone(), first.clone());
        axum::Router::new().route(
            "/hook",
            axum::routing::post(move |_body: bytes::Bytes| {
                let (received, first) = (received.clone(), first.clone());
                async move {
                    first.get_or_init(Instant::now);
                    received.fetch_add(1, Ordering::Relaxed);
                    axum::http::StatusCode::NO_CONTENT
                }
            }),
        )
    };
    // Kept to the end of the run: dropped, they stop the receiver.
    let (url, _stop) = match &pki {
        None => {
            let (addr, stop) = roost_tests::serve_loopback(router).await;
            (format!("http://{addr}/hook"), stop)
        }
        Some(pki) => {
            let (cert, key) = pki.issue("receiver", false);
            let (addr, stop) = roost_tests::serve_loopback_tls(router, &cert, &key).await;
            (format!("https://{addr}/hook"), stop)
        }
    };

    let store = &app.store;
    let org = roost::store::orgs::create(store, "Bench hooks", "bench-hooks", None).await?;
    roost::store::webhooks::create(
        store,
        roost::store::webhooks::NewWebhook {
            org_id: org.id,
            url: &url,
            sealed_secret: app.secrets.seal(b"a benchmark secret"),
            events: &["*".to_owned()],
            description: None,
            created_by: "bench",
        },
    )
    .await?;
    tokio::time::sleep(Duration::from_millis(50)).await;

    let started = Instant::now();
    let payload = serde_json::json!({"task": "1", "name": "getParameterValues", "status": "done"});
    let mut written = 0;
    while written < plan.events {
        let _guard = store.write_guard().await;
        let txn = store.db().begin().await?;
        for _ in 0..1000.min(plan.events - written) {
            let subject = format!("BENCH-{:06}", written % plan.subjects.max(1));
            roost::store::events::record(
                &txn,
                roost::store::events::EventType::TaskDone,
                Some(org.id),
                &subject,
                &payload,
            )
            .await?;
            written += 1;
        }
        txn.commit().await?;
    }
    let wrote = started.elapsed();
    let deadline = Instant::now() + Duration::from_secs(600);
    while received.load(Ordering::Relaxed) < plan.events {
        anyhow::ensure!(
            Instant::now() < deadline,
            "only {} of {} delivered in 10 min",
            received.load(Ordering::Relaxed),
            plan.events
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let done = started.elapsed();
    let span = first.get().map(|f| f.elapsed()).unwrap_or(done);
    let backend = if plan.database_url.is_some() { "postgres" } else { "sqlite" };
    let scheme = if plan.tls { "https" } else { "http" };
    println!(
        "webhooks {backend} {scheme}: {} events over {} subjects written in {:.2} s; all delivered {:.2} s after the first write; \
         {:.0} deliveries/s from the first delivery to the last",
        plan.events,
        plan.subjects,
        wrote.as_secs_f64(),
        done.as_secs_f64(),
        plan.events as f64 / span.as_secs_f64()
    );
    server.shutdown().await?;
    Ok(())
}
