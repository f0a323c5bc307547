//! Two replicas over one PostgreSQL database, a CPE reaching them through a balancer: a task
//! posted on one runs in a session held by the other and the API call waiting for it hears
//! (LISTEN/NOTIFY); a connection request asked of either reaches the device; a preset written
//! on one applies on the other at once; a Digest challenge from one is answered on the other;
//! a replica killed mid-session loses nothing.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use roost::config::CpeAuthMode;

use super::*;

fn tr181_fleet_config(url: String, prefix: &str) -> FleetConfig {
    let mut config = FleetConfig::new(url, std::sync::Arc::new(DataModel::bundled(DataModelKind::Tr181).unwrap()));
    config.serial_prefix = prefix.to_owned();
    config.start = StartMode::Manual;
    config.retry = true;
    config.retry_min_wait = Duration::from_millis(300);
    config.cr_min_interval = Duration::ZERO;
    config
}

/// Replicas A and B on one PostgreSQL, a TCP balancer in front of them, and a fleet of one TR-181
/// device behind it, its serials starting with `prefix`.
async fn two_replicas_behind_a_balancer(prefix: &str) -> (Harness, roost::app::Server, Balancer, Fleet) {
    let a = Harness::start(Backend::Postgres).await;
    let b = a.replica().await;
    let balancer = Balancer::start(&[a.cwmp_addr(), b.cwmp_addr]).await;
    let fleet = Fleet::start(tr181_fleet_config(format!("http://{}/", balancer.addr), prefix)).await.unwrap();
    (a, b, balancer, fleet)
}

/// Queues a GetParameterValues of `path` for `cpe` on A, then opens a session for the device on
/// the replica at `replica` and asks it for work: the task's id, the session's connection, and
/// the ACS's request (the task's).
async fn session_holding_a_task(
    a: &Harness,
    replica: std::net::SocketAddr,
    cpe: &roost_sim::DeviceHandle,
    path: &str,
) -> (String, RawCpe, RawResponse) {
    let tasks = format!("/api/v1/devices/{}/tasks", encode_id(&cpe.device_id()));
    let (status, queued) = a.post(&tasks, json!({"name": "getParameterValues", "parameterNames": [path]})).await;
    assert_eq!(status, StatusCode::CREATED, "{queued}");
    let task_id = queued["id"].as_str().unwrap().to_owned();
    let mut raw = RawCpe::connect(&format!("http://{replica}/")).await;
    assert_eq!(raw.post("/", &periodic_inform(cpe), &[("Content-Type", "text/xml")], false).await.status, 200);
    let request = raw.post("/", "", &[], false).await;
    (task_id, raw, request)
}

/// CWMP sessions a replica has started.
fn started(app: &roost::app::App) -> u64 {
    app.metrics.sessions_started.load(std::sync::atomic::Ordering::Relaxed)
}

#[tokio::test]
async fn two_replicas_on_one_postgresql_share_tasks_waits_caches_and_sessions() {
    let (a, b, balancer, fleet) = two_replicas_behind_a_balancer("REPL").await;
    let cpe = fleet.device(0);
    let id = cpe.device_id();
    // Its sessions alternate between the replicas: bootstrap on one, the next on the other.
    assert!(cpe.inform_now(&[]).await.unwrap().is_ok());
    assert!(cpe.inform_now(&["2 PERIODIC"]).await.unwrap().is_ok());
    assert!(started(b.app()) >= 1 && started(a.app()) >= 1, "both replicas held a session");

    // A task posted on A runs in a session on B; A's waiting call is told (NOTIFY). It waits less
    // than the 10 s after which it would look at the task itself: only being told ends it in time.
    balancer.only(Some(b.cwmp_addr));
    let tasks = format!("/nbi/devices/{}/tasks?connection_request&timeout=8000", encode_id(&id));
    let software = "Device.DeviceInfo.SoftwareVersion";
    let before_b = started(b.app());
    let (status, task) = a
        .request(Method::POST, &tasks, Some(json!({"name": "getParameterValues", "parameterNames": [software]})))
        .await;
    assert_eq!(status, StatusCode::OK, "done within the wait, as GenieACS answers: {task}");
    assert_eq!(started(b.app()), before_b + 1, "the session was B's");

    // A connection request asked of B for a device last reached through A.
    balancer.only(Some(a.cwmp_addr()));
    assert!(cpe.inform_now(&["2 PERIODIC"]).await.unwrap().is_ok());
    let mark = cpe.session_count();
    let path = format!("/api/v1/devices/{}/connection-request", encode_id(&id));
    let (status, outcome) = a.request_to(&b, Method::POST, &path, Some(json!({}))).await;
    assert_eq!(status, StatusCode::OK, "{outcome}");
    assert!(cpe.wait_for_session(mark, Duration::from_secs(10), |r| r.has_event("6 CONNECTION REQUEST")).await.is_ok());

    // B has the organization's presets cached from its sessions; a preset written on A applies
    // in B's next session, well within the cache's time to live.
    balancer.only(Some(b.cwmp_addr));
    assert!(cpe.inform_now(&["2 PERIODIC"]).await.unwrap().is_ok());
    let preset = json!({"events": ["2 PERIODIC"], "provision": "tag", "args": {"add": "seen-on-b"}});
    // Told by NOTIFY, which takes a moment to arrive: B's session runs once B has received it.
    // (Waiting out the cache's 10 s life would pass without it; this does not.)
    let received = |app: &roost::app::App| {
        let text = app.metrics.render(|_| {});
        super::observability::sample(
            &text,
            "roost_replica_signals_total{direction=\"received\",signal=\"provisioning\"}",
        )
    };
    let before = received(b.app());
    let (status, body) = a.put("/api/v1/presets/mark-on-b", preset).await;
    assert!(status.is_success(), "{body}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while received(b.app()) <= before {
        assert!(tokio::time::Instant::now() < deadline, "B heard nothing of the preset written on A");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(cpe.inform_now(&["2 PERIODIC"]).await.unwrap().is_ok());
    let tags = a.device(&id).await["tags"].clone();
    assert!(tags.as_array().unwrap().iter().any(|t| t == "seen-on-b"), "{tags}");

    // B dies in the middle of a session that carries a task: the task stays pending, and the
    // device's next session, on A, runs it. Nothing is lost.
    let (task_id, raw, request) = session_holding_a_task(&a, b.cwmp_addr, &cpe, software).await;
    assert!(request.body.contains("GetParameterValues"), "{}", request.body);
    drop(b);
    drop(raw);
    balancer.only(None);
    let report = cpe.inform_now(&["2 PERIODIC"]).await.unwrap();
    assert!(report.is_ok(), "{:?}", report.error);
    let done = a.wait_task(&task_id).await;
    assert_eq!(done["status"], "done", "{done}");
    fleet.stop().await;
    a.finish().await;
}

#[tokio::test]
async fn a_digest_challenge_from_one_replica_is_answered_on_the_other() {
    let a = Harness::start_with(Backend::Postgres, CpeAuthMode::Required).await;
    let b = a.replica().await;
    roost::store::credentials::create(&a.app().store, Default::default(), "fleet", a.app().secrets.seal(b"fleet-pw"))
        .await
        .unwrap();
    let inform = capture_bodies("netcwmp_vs-stub.wire.txt", "CPE->ACS").remove(0);
    let mut first = RawCpe::connect(&a.cwmp_url()).await;
    let challenge = first.post("/", &inform, &[("Content-Type", "text/xml")], false).await;
    assert_eq!(challenge.status, 401);
    let header = challenge.header("www-authenticate").expect("a challenge").to_owned();
    let params = roost_http::digest::parse_params(&header).unwrap();
    let realm = roost_http::digest::param(&params, "realm").unwrap().to_owned();
    let nonce = roost_http::digest::param(&params, "nonce").unwrap().to_owned();
    let response = roost_http::digest::response(
        "fleet",
        &realm,
        "fleet-pw",
        "POST",
        "/",
        &nonce,
        Some(("auth", "00000001", "0a4f113b")),
    );
    let authorization = format!(
        "Digest username=\"fleet\", realm=\"{realm}\", nonce=\"{nonce}\", uri=\"/\", qop=auth, nc=00000001, cnonce=\"0a4f113b\", response=\"{response}\", algorithm=MD5"
    );
    // The balancer sent the answer to the other replica: it knows the nonce.
    let mut second = RawCpe::connect(&format!("http://{}/", b.cwmp_addr)).await;
    let answered =
        second.post("/", &inform, &[("Content-Type", "text/xml"), ("Authorization", &authorization)], false).await;
    assert_eq!(answered.status, 200, "{}", answered.body);
    assert!(answered.body.contains("InformResponse"));
    drop(b);
    a.finish().await;
}

#[tokio::test]
async fn replicas_starting_together_on_a_new_database_migrate_once() {
    let (database, url) = TestDatabase::create().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    // The master key they share (what ROOST_MASTER_KEY gives real replicas).
    roost::secrets::Secrets::load_or_create(dir.path()).unwrap();
    let config = || {
        let mut config = roost::config::Config::for_loopback(dir.path().to_path_buf(), Some(url.clone()));
        config.plugins.install_dir = Some(shipped_plugins());
        config
    };
    let (a, b, c) = tokio::join!(
        roost::app::Server::start(config()),
        roost::app::Server::start(config()),
        roost::app::Server::start(config())
    );
    let servers: Vec<roost::app::Server> =
        [a, b, c].into_iter().map(|s| s.unwrap_or_else(|e| panic!("a replica did not start: {e:#}"))).collect();
    // One schema, one set of defaults: every replica sees the same presets.
    let presets = roost::store::presets::list(
        &servers[0].app().store,
        roost::store::plugins::platform_id(&servers[0].app().store).await.unwrap(),
    )
    .await
    .unwrap();
    let mut names: Vec<&str> = presets.iter().map(|p| p.name.as_str()).collect();
    names.sort_unstable();
    assert_eq!(names, ["bootstrap", "stun"]);
    for server in servers {
        server.shutdown().await.unwrap();
    }
    database.drop_now().await.unwrap();
}

#[tokio::test]
async fn a_device_behind_nat_bound_to_one_replica_is_woken_through_another() {
    let a = Harness::start(Backend::Postgres).await;
    let b = a.replica().await;
    let model = DataModel::load(roost_sim::data_dir().join("zte-zxhn-h199a_tr098_genieacs-export.csv")).unwrap();
    let mut config = FleetConfig::new(format!("http://{}/", b.cwmp_addr), std::sync::Arc::new(model));
    config.serial_prefix = "NATREPL".into();
    config.start = StartMode::Manual;
    config.cr_min_interval = Duration::ZERO;
    config.nat = true;
    let fleet = Fleet::start(config).await.unwrap();
    let cpe = fleet.device(0);
    assert!(cpe.inform_now(&[]).await.unwrap().is_ok());
    // Bootstrapped by B, its STUN client keeps its binding open to B's STUN server.
    for _ in 0..100 {
        if cpe.stun_status().bound {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(cpe.stun_status().bound, "{:?}", cpe.stun_status());
    // Asked of A: A's own datagrams are dropped by the device's NAT; B, told, sends the message.
    let mark = cpe.session_count();
    let path = format!("/api/v1/devices/{}/connection-request", encode_id(&cpe.device_id()));
    let (status, outcome) = a.post(&path, json!({})).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{outcome}");
    assert!(cpe.wait_for_session(mark, Duration::from_secs(10), |r| r.has_event("6 CONNECTION REQUEST")).await.is_ok());
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let status = cpe.stun_status();
    assert_eq!(status.udp_connection_requests, 1, "{status:?}");
    assert!(status.refused >= 1, "A's own copies did not get through the NAT: {status:?}");
    fleet.stop().await;
    drop(b);
    a.finish().await;
}

/// The rolling upgrade of docs/DEPLOY.md, one replica at a time. B is told to stop: it is not
/// ready, tells a new Inform to retry, and runs the session it holds, task and all, to its end
/// before it exits. Its upgrade starts on the same database (the migrations find nothing to
/// do), takes its place behind the balancer, and serves: a task posted on A runs in a session
/// on the new B, and the device alternates between A and it. Nothing is lost.
#[tokio::test]
async fn a_rolling_upgrade_drains_a_replica_and_resumes_on_its_successor() {
    use roost_cwmp::{AcsBody, AcsRequest, CpeBody, CpeResponse, CwmpVersion, Header, ParameterValue, ValueType};

    let (a, b, balancer, fleet) = two_replicas_behind_a_balancer("ROLL").await;
    let cpe = fleet.device(0);
    let id = cpe.device_id();
    assert!(cpe.inform_now(&[]).await.unwrap().is_ok());

    // B holds a session with a task in flight when it is told to stop.
    let software = "Device.DeviceInfo.SoftwareVersion";
    let (task_id, mut held, request) = session_holding_a_task(&a, b.cwmp_addr, &cpe, software).await;
    let request = roost_cwmp::decode_acs_message(request.body.as_bytes()).expect("the ACS's request");
    assert!(matches!(request.body, AcsBody::Request(AcsRequest::GetParameterValues { .. })), "{:?}", request.body);

    let (b_cwmp, b_http) = (b.cwmp_addr, b.http_addr);
    let stopping = tokio::spawn(b.shutdown());
    let ready = |http: std::net::SocketAddr| async move {
        reqwest::get(format!("http://{http}/readyz")).await.map(|r| r.status()).ok()
    };
    let mut draining = false;
    for _ in 0..100 {
        if ready(b_http).await == Some(StatusCode::SERVICE_UNAVAILABLE) {
            draining = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(draining, "a draining replica is not ready: a balancer that checks readiness sends it nothing new");
    let mut late = RawCpe::connect(&format!("http://{b_cwmp}/")).await;
    let refused = late.post("/", &periodic_inform(&cpe), &[("Content-Type", "text/xml")], false).await;
    assert_eq!(refused.status, 503, "a new Inform is told to retry: {}", refused.body);
    // The held session answers its request and ends; only then does B exit.
    assert!(!stopping.is_finished(), "B waits for the session it holds");
    let values = CpeBody::Response(CpeResponse::GetParameterValues {
        parameters: vec![ParameterValue {
            name: software.into(),
            value: "9.9.9-drained".into(),
            value_type: ValueType::parse("xsd:string"),
        }],
    });
    let header = Header { id: request.header.id.clone(), ..Header::default() };
    let answer = roost_cwmp::encode_cpe_message(CwmpVersion::V1_0, &header, &values);
    let end = held.post("/", &answer, &[("Content-Type", "text/xml")], false).await;
    assert_eq!(end.status, 204, "the session ends once its work is done: {}", end.body);
    tokio::time::timeout(Duration::from_secs(20), stopping).await.expect("B exits").unwrap().expect("cleanly");
    let done = a.wait_task(&task_id).await;
    assert_eq!(done["status"], "done", "{done}");
    assert_eq!(a.stored_value(&id, software).await.as_deref(), Some("9.9.9-drained"));

    // Its upgrade starts on the same database and takes its place.
    let successor = a.replica().await;
    assert_eq!(ready(successor.http_addr).await, Some(StatusCode::OK));
    balancer.replace(b_cwmp, successor.cwmp_addr);
    balancer.only(Some(successor.cwmp_addr));
    let tasks = format!("/nbi/devices/{}/tasks?connection_request&timeout=8000", encode_id(&id));
    let (status, task) = a
        .request(Method::POST, &tasks, Some(json!({"name": "getParameterValues", "parameterNames": [software]})))
        .await;
    assert_eq!(status, StatusCode::OK, "run on the successor, told to A: {task}");
    assert_eq!(started(successor.app()), 1, "the session was the successor's");
    balancer.only(None);
    let before = (started(a.app()), started(successor.app()));
    for _ in 0..2 {
        assert!(cpe.inform_now(&["2 PERIODIC"]).await.unwrap().is_ok());
    }
    assert!(
        started(a.app()) > before.0 && started(successor.app()) > before.1,
        "the device alternates between A and the successor"
    );
    fleet.stop().await;
    drop(successor);
    a.finish().await;
}
