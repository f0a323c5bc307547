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

#[tokio::test]
async fn two_replicas_on_one_postgresql_share_tasks_waits_caches_and_sessions() {
    let a = Harness::start(Backend::Postgres).await;
    let b = a.replica().await;
    let balancer = Balancer::start(&[a.cwmp_addr(), b.cwmp_addr]).await;
    let fleet = Fleet::start(tr181_fleet_config(format!("http://{}/", balancer.addr), "REPL")).await.unwrap();
    let cpe = fleet.device(0);
    let id = cpe.device_id();
    // Its sessions alternate between the replicas: bootstrap on one, the next on the other.
    assert!(cpe.inform_now(&[]).await.unwrap().is_ok());
    assert!(cpe.inform_now(&["2 PERIODIC"]).await.unwrap().is_ok());
    let started = |app: &roost::app::App| app.metrics.sessions_started.load(std::sync::atomic::Ordering::Relaxed);
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
    let (status, body) = a.put("/api/v1/presets/mark-on-b", preset).await;
    assert!(status.is_success(), "{body}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(cpe.inform_now(&["2 PERIODIC"]).await.unwrap().is_ok());
    let tags = a.device(&id).await["tags"].clone();
    assert!(tags.as_array().unwrap().iter().any(|t| t == "seen-on-b"), "{tags}");

    // B dies in the middle of a session that carries a task: the task stays pending, and the
    // device's next session, on A, runs it. Nothing is lost.
    let (status, queued) = a
        .post(
            &format!("/api/v1/devices/{}/tasks", encode_id(&id)),
            json!({"name": "getParameterValues", "parameterNames": [software]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{queued}");
    let task_id = queued["id"].as_str().unwrap().to_owned();
    let mut raw = RawCpe::connect(&format!("http://{}/", b.cwmp_addr)).await;
    let inform = periodic_inform(&cpe);
    assert_eq!(raw.post("/", &inform, &[("Content-Type", "text/xml")], false).await.status, 200);
    let request = raw.post("/", "", &[], false).await;
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
