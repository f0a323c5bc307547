//! What operators watch: `/metrics` in Prometheus text format counting what happened (sessions
//! and their length, Inform events, tasks, connection requests, refusals), and who may read it.

use reqwest::StatusCode;
use roost::config::CpeAuthMode;

use super::*;

/// The value of one sample (`name{labels}`) in a scrape; 0 when absent.
pub(super) fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')))
        .and_then(|value| value.parse().ok())
        .unwrap_or(0.0)
}

pub(super) async fn scrape(h: &Harness) -> String {
    let response = h.http.get(h.url("/metrics")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers()["content-type"].to_str().unwrap().starts_with("text/plain; version=0.0.4"));
    response.text().await.unwrap()
}

#[tokio::test]
async fn metrics_count_sessions_events_tasks_and_wake_ups() {
    let h = Harness::start(Backend::Sqlite).await;
    let before = scrape(&h).await;
    let fleet = h.fleet(DataModelKind::Tr098, 2, "METRIC").await;
    for device in fleet.devices() {
        assert!(device.inform_now(&[]).await.unwrap().is_ok());
    }
    let cpe = fleet.device(0);
    assert!(cpe.inform_now(&["2 PERIODIC"]).await.unwrap().is_ok());
    // A task done in a session woken by a connection request.
    let tasks = format!("/api/v1/devices/{}/tasks?connection_request=true", encode_id(&cpe.device_id()));
    let (status, task) = h
        .post(&tasks, json!({"name": "getParameterValues", "parameterNames": ["InternetGatewayDevice.DeviceInfo.SoftwareVersion"]}))
        .await;
    assert!(status.is_success(), "{task}");
    // The API answers once the task is done; the session's end follows.
    let completed = "roost_cwmp_sessions_ended_total{outcome=\"completed\"}";
    let mut after = scrape(&h).await;
    for _ in 0..50 {
        if sample(&after, completed) - sample(&before, completed) >= 4.0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        after = scrape(&h).await;
    }
    let grew = |series: &str| sample(&after, series) - sample(&before, series);
    assert_eq!(grew("roost_cwmp_sessions_started_total"), 4.0, "{after}");
    assert_eq!(grew("roost_cwmp_sessions_ended_total{outcome=\"completed\"}"), 4.0, "{after}");
    assert_eq!(grew("roost_cwmp_session_duration_seconds_count"), 4.0);
    assert_eq!(grew("roost_cwmp_session_duration_seconds_bucket{le=\"+Inf\"}"), 4.0);
    assert!(sample(&after, "roost_cwmp_session_duration_seconds_sum") > 0.0);
    assert_eq!(grew("roost_cwmp_informs_total{event=\"0 BOOTSTRAP\"}"), 2.0, "{after}");
    assert_eq!(grew("roost_cwmp_informs_total{event=\"2 PERIODIC\"}"), 1.0);
    assert_eq!(grew("roost_cwmp_informs_total{event=\"6 CONNECTION REQUEST\"}"), 1.0);
    assert_eq!(grew("roost_connection_requests_total{transport=\"http\",outcome=\"accepted\"}"), 1.0);
    assert_eq!(grew("roost_tasks_finished_total{name=\"getParameterValues\",outcome=\"done\"}"), 1.0, "{after}");
    assert_eq!(sample(&after, "roost_cwmp_sessions_live"), 0.0);
    assert!(after.contains("# TYPE roost_cwmp_session_duration_seconds histogram\n"));
    assert!(after.contains("roost_db_pool_connections{pool=\"cwmp\",state=\"idle\"}"), "{after}");
    // SQLite's grouped Inform writer, idle once the sessions are done.
    assert!(after.contains("# TYPE roost_inform_writer_waiting gauge\n"), "{after}");
    assert_eq!(sample(&after, "roost_inform_writer_waiting"), 0.0);
    // The store's statements, timed; the bootstrap provision's runs; the families always there.
    assert!(grew("roost_db_statements_total{outcome=\"ok\"}") > 10.0, "{after}");
    assert!(grew("roost_db_statement_duration_seconds_count") > 10.0, "{after}");
    assert!(
        grew("roost_plugin_runs_total{how=\"sandboxed\"}") >= 2.0,
        "each device's bootstrap ran in the sandbox: {after}"
    );
    for family in [
        "roost_faults_recorded_total",
        "roost_webhook_deliveries_total",
        "roost_rollout_devices",
        "roost_stun_requests_total",
    ] {
        assert!(after.contains(&format!("# TYPE {family} ")), "{family} in {after}");
    }
    fleet.stop().await;
    h.finish().await;
}

#[tokio::test]
async fn refusals_are_counted_and_a_token_guards_the_metrics() {
    let h = Harness::start_configured(Backend::Sqlite, CpeAuthMode::Required, |config| {
        config.metrics.token = Some("scrape-secret".into());
    })
    .await;
    // Even from loopback, a configured token is asked for.
    let refused = h.http.get(h.url("/metrics")).send().await.unwrap();
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    let wrong = h.http.get(h.url("/metrics")).bearer_auth("scrape-secreT").send().await.unwrap();
    assert_eq!(wrong.status(), StatusCode::FORBIDDEN);
    let read = |h: &Harness| {
        let request = h.http.get(h.url("/metrics")).bearer_auth("scrape-secret");
        async move { request.send().await.unwrap().text().await.unwrap() }
    };
    let before = read(&h).await;
    let inform = capture_bodies("genieacs-sim_vs-stub.wire.txt", "CPE->ACS").remove(0);
    let mut cpe = RawCpe::connect(&h.cwmp_url()).await;
    assert_eq!(cpe.post("/", &inform, &[("Content-Type", "text/xml")], false).await.status, 401);
    let after = read(&h).await;
    let series = "roost_cwmp_refused_total{reason=\"challenged\"}";
    assert_eq!(sample(&after, series) - sample(&before, series), 1.0, "{after}");
    assert_eq!(
        sample(&after, "roost_cwmp_sessions_started_total"),
        sample(&before, "roost_cwmp_sessions_started_total")
    );
    h.finish().await;
}
