//! The CWMP front door against the habits of real firmware (`../shared/INTEROP.md`) and against
//! clients that are not what they claim: first contact without `0 BOOTSTRAP`, listeners without
//! authentication, challenges asked for with an empty POST, sockets closed after a 401, agents
//! that crash on large batches or list leaves only, non-atomic SetParameterValues, and sessions
//! that must not mix on shared connections or travel with a copied cookie.

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use roost::config::{CpeAuthMode, SessionBinding};
use roost_sim::{CrAuth, FirstContact, Quirks};
use roost_tests::on_both_backends;

use super::*;

const XML: (&str, &str) = ("Content-Type", "text/xml; charset=utf-8");

/// One manually started device of `kind` with `quirks`, informing with `first_contact`.
async fn quirky_fleet(
    h: &Harness,
    kind: DataModelKind,
    prefix: &str,
    first_contact: FirstContact,
    quirks: Quirks,
) -> Fleet {
    let model = Arc::new(DataModel::bundled(kind).unwrap());
    let mut config = FleetConfig::new(h.cwmp_url(), model);
    config.start = StartMode::Manual;
    config.serial_prefix = prefix.into();
    config.first_contact = first_contact;
    config.retry = false;
    config.quirks = quirks;
    Fleet::start(config).await.unwrap()
}

/// Posts a task with `?connection_request=true` and returns the answer and how long it took.
async fn task_waking_the_device(h: &Harness, device_id: &str, body: JsonValue) -> (JsonValue, Duration) {
    let started = Instant::now();
    let (status, task) =
        h.post(&format!("/api/v1/devices/{}/tasks?connection_request=true", encode_id(device_id)), body).await;
    assert!(status.is_success(), "{status}: {task}");
    (task, started.elapsed())
}

fn uptime_task(root: &str) -> JsonValue {
    json!({"name": "getParameterValues", "parameterNames": [format!("{root}DeviceInfo.UpTime")]})
}

/// A Digest `Authorization` (RFC 2069 style, for `POST /`) answering the challenge of a 401.
fn answer_challenge(challenge: &RawResponse, username: &str, password: &str) -> String {
    let header = challenge.header("www-authenticate").expect("a challenge");
    let nonce = header.split("nonce=\"").nth(1).and_then(|r| r.split('"').next()).expect("a nonce");
    let ha1 = roost_http::digest::md5_hex(&format!("{username}:roost:{password}"));
    let ha2 = roost_http::digest::md5_hex("POST:/");
    let response = roost_http::digest::md5_hex(&format!("{ha1}:{nonce}:{ha2}"));
    format!("Digest username=\"{username}\", realm=\"roost\", nonce=\"{nonce}\", uri=\"/\", response=\"{response}\"")
}

on_both_backends! {
    async fn a_captured_digest_header_opens_no_other_session(backend: Backend) {
        let h = Harness::start_with(backend, CpeAuthMode::Required).await;
        let app = h.app().clone();
        roost::store::credentials::create(&app.store, Default::default(), "fleet", app.secrets.seal(b"fleet-pass")).await.unwrap();
        let inform = capture_bodies("genieacs-sim_vs-stub.wire.txt", "CPE->ACS").remove(0);
        let other = inform.replace("<SerialNumber>000000<", "<SerialNumber>000009<");
        let mut cpe = RawCpe::connect(&h.cwmp_url()).await;
        let challenge = cpe.post("/", &inform, &[XML], false).await;
        let authorization = answer_challenge(&challenge, "fleet", "fleet-pass");
        assert_eq!(cpe.post("/", &inform, &[XML, ("Authorization", &authorization)], false).await.status, 200);
        cpe.end_session("/").await;
        // The same header again, for the same device or another, opens nothing: the nonce is
        // used, and the CPE is told to take a new one.
        for body in [&inform, &other] {
            let mut replay = RawCpe::connect(&h.cwmp_url()).await;
            let refused = replay.post("/", body, &[XML, ("Authorization", &authorization)], false).await;
            assert_eq!(refused.status, 401, "{}", refused.body);
            assert!(refused.header("www-authenticate").unwrap().contains("stale=true"));
        }
        // From another address, a nonce issued to this one is not ours at all.
        let mut elsewhere = RawCpe::connect_from(&h.cwmp_url(), Ipv4Addr::new(127, 0, 0, 4)).await;
        let fresh = RawCpe::connect(&h.cwmp_url()).await.post("/", &other, &[XML], false).await;
        let stolen = answer_challenge(&fresh, "fleet", "fleet-pass");
        let refused = elsewhere.post("/", &other, &[XML, ("Authorization", &stolen)], false).await;
        assert_eq!(refused.status, 401);
        assert!(!refused.header("www-authenticate").unwrap().contains("stale"));
        let (_, list) = h.get("/api/v1/devices").await;
        assert_eq!(list["items"].as_array().unwrap().len(), 1, "only the first session registered a device");
        h.finish().await;
    }

    async fn authentication_failures_are_throttled_without_slowing_other_cpes(backend: Backend) {
        let h = Harness::start_with(backend, CpeAuthMode::Required).await;
        let app = h.app().clone();
        roost::store::credentials::create(&app.store, Default::default(), "fleet", app.secrets.seal(b"fleet-pass")).await.unwrap();
        let inform = capture_bodies("genieacs-sim_vs-stub.wire.txt", "CPE->ACS").remove(0);
        let mut guesser = RawCpe::connect_from(&h.cwmp_url(), Ipv4Addr::new(127, 0, 0, 5)).await;
        let mut statuses = Vec::new();
        for attempt in 0..15 {
            let challenge = guesser.post("/", &inform, &[XML], false).await;
            assert_eq!(challenge.status, 401);
            let wrong = answer_challenge(&challenge, "fleet", &format!("guess-{attempt}"));
            let answer = guesser.post("/", &inform, &[XML, ("Authorization", &wrong)], false).await;
            if answer.status == 503 {
                assert_eq!(answer.header("retry-after"), Some("60"));
            }
            statuses.push(answer.status);
        }
        assert_eq!(&statuses[..10], &[401; 10], "{statuses:?}");
        assert_eq!(&statuses[10..], &[503; 5], "{statuses:?}");
        // Even the right password waits out the window from that address…
        let challenge = guesser.post("/", &inform, &[XML], false).await;
        let right = answer_challenge(&challenge, "fleet", "fleet-pass");
        assert_eq!(guesser.post("/", &inform, &[XML, ("Authorization", &right)], false).await.status, 503);
        // …while a CPE elsewhere with the same username is served as usual.
        let mut cpe = RawCpe::connect(&h.cwmp_url()).await;
        let challenge = cpe.post("/", &inform, &[XML], false).await;
        let right = answer_challenge(&challenge, "fleet", "fleet-pass");
        assert_eq!(cpe.post("/", &inform, &[XML, ("Authorization", &right)], false).await.status, 200);
        h.finish().await;
    }

    async fn a_periodic_first_contact_is_bootstrapped_and_woken(backend: Backend) {
        let h = Harness::start(backend).await;
        // An agent whose first Inform is `2 PERIODIC`, with a Digest-protected listener.
        let fleet = quirky_fleet(&h, DataModelKind::Tr181, "PER", FirstContact::Periodic, Quirks::default()).await;
        let cpe = fleet.device(0);
        let report = cpe.inform_now(&[]).await.unwrap();
        assert!(report.is_ok(), "{:?}", report.error);
        assert!(!report.has_event("0 BOOTSTRAP"), "the device never says BOOTSTRAP");
        let device = h.device(&cpe.device_id()).await;
        assert!(device["configured_at"].is_string(), "configured at its first session: {device}");
        assert_eq!(device["connection_request"]["credentials_set"], true, "{device}");
        let root = cpe.root();
        assert!(
            cpe.value(&format!("{root}ManagementServer.ConnectionRequestUsername")).is_some_and(|u| u.starts_with("roost-")),
            "the bootstrap preset ran"
        );
        // The next periodic session is an ordinary one: bootstrap does not run again.
        let report = cpe.inform_now(&["2 PERIODIC"]).await.unwrap();
        assert!(!report.methods().contains(&"SetParameterValues"), "{:?}", report.methods());

        // Woken by the connection request: the task is done in the API's answer, long before the
        // next periodic Inform (the bound is loose: a loaded CI runner, a debug build).
        let (task, took) = task_waking_the_device(&h, &cpe.device_id(), uptime_task(&root)).await;
        assert_eq!(task["connection_request"]["outcome"], "accepted", "{task}");
        assert_eq!(task["status"], "done", "{task}");
        assert!(took < Duration::from_secs(10), "woken in {took:?}");
        fleet.stop().await;
        h.finish().await;
    }

    async fn a_listener_without_authentication_is_woken_without_credentials(backend: Backend) {
        let h = Harness::start(backend).await;
        // No preset gives the device credentials: Roost has none for it.
        let (status, _) = h.request(reqwest::Method::DELETE, "/api/v1/presets/bootstrap", None).await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        let quirks = Quirks { cr_auth: CrAuth::None, ..Quirks::default() };
        let fleet = quirky_fleet(&h, DataModelKind::Tr098, "NOAUTH", FirstContact::Periodic, quirks).await;
        let cpe = fleet.device(0);
        assert!(cpe.inform_now(&[]).await.unwrap().is_ok());
        assert_eq!(h.device(&cpe.device_id()).await["connection_request"]["credentials_set"], false);
        let (task, took) = task_waking_the_device(&h, &cpe.device_id(), uptime_task(&cpe.root())).await;
        assert_eq!(task["connection_request"]["outcome"], "accepted", "{task}");
        assert_eq!(task["status"], "done", "{task}");
        assert!(took < Duration::from_secs(10), "woken in {took:?}");
        fleet.stop().await;
        h.finish().await;
    }

    async fn a_cpe_that_closes_after_its_challenge_is_woken(backend: Backend) {
        let h = Harness::start(backend).await;
        // 401 on HTTP/1.1 without `Connection: close`, then the socket closes; no commas.
        let quirks = Quirks { cr_close_after_challenge: true, ..Quirks::default() };
        let fleet = quirky_fleet(&h, DataModelKind::Tr098, "CLOSE", FirstContact::Bootstrap, quirks).await;
        let cpe = fleet.device(0);
        assert!(cpe.inform_now(&[]).await.unwrap().is_ok());
        for _ in 0..2 {
            let (status, outcome) =
                h.post(&format!("/api/v1/devices/{}/connection-request", encode_id(&cpe.device_id())), json!({})).await;
            assert_eq!(status, StatusCode::OK, "{outcome}");
            assert_eq!(outcome["outcome"], "accepted");
            tokio::time::sleep(Duration::from_millis(1100)).await; // the device throttles at 1/s
        }
        fleet.stop().await;
        h.finish().await;
    }

    async fn a_cpe_that_asks_for_its_challenge_with_an_empty_post_onboards(backend: Backend) {
        let h = Harness::start_with(backend, CpeAuthMode::Required).await;
        let app = h.app().clone();
        roost::store::credentials::create(&app.store, Default::default(), "fleet", app.secrets.seal(b"fleet-pass")).await.unwrap();
        // Without a session, a bare empty POST gets a challenge, not a 204.
        let mut raw = RawCpe::connect(&h.cwmp_url()).await;
        let response = raw.post("/", "", &[], false).await;
        assert_eq!(response.status, 401);
        assert!(response.header("www-authenticate").unwrap_or_default().starts_with("Digest "));

        let model = Arc::new(DataModel::bundled(DataModelKind::Tr098).unwrap());
        let mut config = FleetConfig::new(h.cwmp_url(), model);
        config.start = StartMode::Manual;
        config.retry = false;
        config.serial_prefix = "EMPTY".into();
        config.acs_username = Some("fleet".into());
        config.acs_password = Some("fleet-pass".into());
        config.quirks = Quirks { challenge_with_empty_post: true, ..Quirks::default() };
        let fleet = Fleet::start(config).await.unwrap();
        let report = fleet.device(0).inform_now(&[]).await.unwrap();
        assert!(report.is_ok(), "{:?}", report.error);
        assert!(report.methods().contains(&"GetParameterNames"), "{:?}", report.methods());
        let device = h.device(&fleet.device(0).device_id()).await;
        assert!(device["discovered_at"].is_string(), "{device}");
        fleet.stop().await;
        h.finish().await;
    }

    async fn discovery_that_kills_the_agent_shrinks_its_batches_and_never_starves_tasks(backend: Backend) {
        let h = Harness::start(backend).await;
        let model = Arc::new(DataModel::bundled(DataModelKind::Tr098).unwrap());
        let mut config = FleetConfig::new(h.cwmp_url(), model);
        config.start = StartMode::Manual;
        config.serial_prefix = "CRASH".into();
        config.retry = false;
        config.quirks = Quirks { gpv_crash_at: Some(32), ..Quirks::default() };
        let fleet = Fleet::start(config).await.unwrap();
        let cpe = fleet.device(0);
        let root = cpe.root();
        // The first session dies on discovery's first batch.
        let first = cpe.inform_now(&[]).await.unwrap();
        assert!(!first.is_ok(), "the agent crashed");
        let id = cpe.device_id();
        let (_, task) = h.post(&format!("/api/v1/devices/{}/tasks", encode_id(&id)), uptime_task(&root)).await;
        let task_id = task["id"].as_str().unwrap().to_owned();
        // Each session that dies halves the batch; the queued task runs in the very next one.
        let mut sessions = 1;
        loop {
            let report = cpe.inform_now(&["1 BOOT"]).await.unwrap();
            sessions += 1;
            if sessions == 2 {
                assert_eq!(report.methods().first(), Some(&"GetParameterValues"), "the task first: {:?}", report.methods());
                let (_, now) = h.get(&format!("/api/v1/tasks/{task_id}")).await;
                assert_eq!(now["status"], "done", "{now}");
            }
            if report.is_ok() {
                break;
            }
            assert!(sessions < 8, "discovery never completed");
        }
        let device = h.device(&id).await;
        assert!(device["discovered_at"].is_string(), "{device}");
        assert_eq!(device["discovery"]["batch"], 16, "{device}");
        assert_eq!(device["discovery"]["failed_sessions"], 0, "{device}");
        assert_eq!(sessions, 5, "256, 128, 64 and 32 names died; 16 passed");
        let leaves = h.parameters(&id, &format!("{root}DeviceInfo.")).await;
        assert!(leaves.iter().any(|p| p["value"].is_string()), "values were read");
        fleet.stop().await;
        h.finish().await;
    }

    async fn a_leaves_only_listing_still_gives_object_nodes(backend: Backend) {
        let h = Harness::start(backend).await;
        let quirks = Quirks { gpn_leaves_only: true, ..Quirks::default() };
        let fleet = quirky_fleet(&h, DataModelKind::Tr098, "LEAF", FirstContact::Bootstrap, quirks).await;
        let cpe = fleet.device(0);
        assert!(cpe.inform_now(&[]).await.unwrap().is_ok());
        let id = cpe.device_id();
        let wlan = "InternetGatewayDevice.LANDevice.1.WLANConfiguration.";
        let nodes = h.parameters(&id, wlan).await;
        let paths: Vec<&str> = nodes.iter().filter_map(|p| p["path"].as_str()).collect();
        assert!(paths.contains(&wlan), "the table: {paths:?}");
        assert!(paths.contains(&format!("{wlan}1.").as_str()), "its first instance: {paths:?}");
        // An instance added by AddObject is there, under its table, with its parameters.
        let table = "InternetGatewayDevice.WANDevice.1.WANConnectionDevice.";
        let result = h.run_task(&id, json!({"name": "addObject", "objectName": table})).await;
        let instance = result["result"]["instanceNumber"].as_u64().expect("an instance number");
        let added = format!("{table}{instance}.");
        let nodes = h.parameters(&id, &added).await;
        let paths: Vec<&str> = nodes.iter().filter_map(|p| p["path"].as_str()).collect();
        assert!(paths.contains(&added.as_str()), "the new instance: {paths:?}");
        assert!(paths.iter().any(|p| p.len() > added.len()), "with its parameters: {paths:?}");
        fleet.stop().await;
        h.finish().await;
    }

    async fn a_non_atomic_set_keeps_credentials_and_records_what_was_refused(backend: Backend) {
        let h = Harness::start(backend).await;
        let quirks = Quirks { spv_refuse: vec![("ManagementServer.PeriodicInformEnable".into(), 9008)], ..Quirks::default() };
        let fleet = quirky_fleet(&h, DataModelKind::Tr098, "NONATOMIC", FirstContact::Bootstrap, quirks).await;
        let cpe = fleet.device(0);
        // The factory state: periodic informs off, so the bootstrap preset wants them on.
        let root = cpe.root();
        cpe.set(&format!("{root}ManagementServer.PeriodicInformEnable"), "0").unwrap();
        let report = cpe.inform_now(&[]).await.unwrap();
        assert!(report.is_ok(), "{:?}", report.error);
        let id = cpe.device_id();
        let ms = format!("{root}ManagementServer.");
        // What the CPE holds is what Roost recorded: the interval and the credentials, not Enable.
        assert_eq!(cpe.value(&format!("{ms}PeriodicInformInterval")).as_deref(), Some("3600"));
        assert_eq!(h.stored_value(&id, &format!("{ms}PeriodicInformInterval")).await.as_deref(), Some("3600"));
        assert_eq!(h.stored_value(&id, &format!("{ms}PeriodicInformEnable")).await, cpe.value(&format!("{ms}PeriodicInformEnable")));
        let device = h.device(&id).await;
        assert_eq!(device["connection_request"]["credentials_set"], true, "{device}");
        assert!(device["configured_at"].is_string(), "{device}");
        let (_, faults) = h.get(&format!("/api/v1/devices/{}/faults", encode_id(&id))).await;
        let text = faults.to_string();
        assert!(text.contains("9003") && text.contains("PeriodicInformEnable"), "{faults}");
        // Roost can wake it: the credentials it recorded are the ones the CPE holds.
        let (status, outcome) = h.post(&format!("/api/v1/devices/{}/connection-request", encode_id(&id)), json!({})).await;
        assert_eq!((status, outcome["outcome"].as_str()), (StatusCode::OK, Some("accepted")), "{outcome}");
        fleet.stop().await;
        h.finish().await;
    }

    async fn sessions_on_a_shared_connection_never_mix(backend: Backend) {
        let h = Harness::start(backend).await;
        let a = capture_bodies("genieacs-sim_vs-stub.wire.txt", "CPE->ACS").remove(0);
        // Device B: another serial, a TR-181 tree, so each session's first RPC names its root.
        let b = a.replace("InternetGatewayDevice.", "Device.").replace("<SerialNumber>000000<", "<SerialNumber>000001<");
        let mut proxy = RawCpe::connect(&h.cwmp_url()).await;
        let informed = proxy.post("/", &a, &[XML], false).await;
        assert_eq!(informed.status, 200);
        let cookie_a = RawCpe::session_cookie(&informed);
        // B's Inform on the same connection, without a cookie: it must not take A's place.
        let informed = proxy.post("/", &b, &[XML], false).await;
        assert_eq!(informed.status, 200);
        let next_a = proxy.post("/", "", &[("Cookie", &cookie_a)], false).await;
        assert!(next_a.body.contains("<ParameterPath>InternetGatewayDevice.</ParameterPath>"), "A's own work: {}", next_a.body);
        // Without a cookie, the connection's newest session: B.
        let next_b = proxy.post("/", "", &[], false).await;
        assert!(next_b.body.contains("<ParameterPath>Device.</ParameterPath>"), "B's own work: {}", next_b.body);

        // A's cookie from another host is refused and leaves A's session alone.
        let mut thief = RawCpe::connect_from(&h.cwmp_url(), Ipv4Addr::new(127, 0, 0, 2)).await;
        let stolen = thief.post("/", "", &[("Cookie", &cookie_a)], false).await;
        assert_eq!(stolen.status, 204, "{}", stolen.body);
        assert!(stolen.body.is_empty());
        // A cookie that names no live session is refused, not attached to the connection's.
        let stale = proxy.post("/", "", &[("Cookie", "roost_session=0123456789abcdef")], false).await;
        assert_eq!(stale.status, 204, "{}", stale.body);
        // A carries on where it was: its GetParameterNames is still outstanding.
        let resumed = proxy.post("/", "", &[("Cookie", &cookie_a)], false).await;
        assert_eq!(resumed.status, 200, "A's session is alive: {}", resumed.body);
        h.finish().await;
    }

    async fn behind_a_trusted_proxy_sessions_follow_the_forwarded_address(backend: Backend) {
        let h = Harness::start_configured(backend, CpeAuthMode::Open, |config| {
            config.cwmp.trusted_proxies = vec![Ipv4Addr::LOCALHOST.into()];
        })
        .await;
        let inform = capture_bodies("genieacs-sim_vs-stub.wire.txt", "CPE->ACS").remove(0);
        let client = ("X-Forwarded-For", "203.0.113.50, 198.51.100.1");
        let mut proxy = RawCpe::connect(&h.cwmp_url()).await;
        let informed = proxy.post("/", &inform, &[XML, client], false).await;
        assert_eq!(informed.status, 200);
        let cookie = RawCpe::session_cookie(&informed);
        let device = h.device("202BC1-BM632w-000000").await;
        assert_eq!(device["remote_address"], "198.51.100.1", "the address the proxy vouches for");
        // The proxy's connection carries many clients: without a cookie, no session is found on it.
        assert_eq!(proxy.post("/", "", &[client], false).await.status, 204);
        // The cookie for another client behind the proxy is refused.
        let other = ("X-Forwarded-For", "198.51.100.2");
        assert_eq!(proxy.post("/", "", &[("Cookie", &cookie), other], false).await.status, 204);
        // The same client through another pooled upstream connection is served.
        let mut pooled = RawCpe::connect(&h.cwmp_url()).await;
        let next = pooled.post("/", "", &[("Cookie", &cookie), client], false).await;
        assert!(next.body.contains("<ParameterPath>InternetGatewayDevice.</ParameterPath>"), "{}", next.body);
        // A client that is not a trusted proxy cannot claim an address.
        let mut liar = RawCpe::connect_from(&h.cwmp_url(), Ipv4Addr::new(127, 0, 0, 9)).await;
        let stolen = liar.post("/", "", &[("Cookie", &cookie), client], false).await;
        assert_eq!(stolen.status, 204);
        h.finish().await;
    }

    async fn a_session_bound_to_its_connection_refuses_the_cookie_elsewhere(backend: Backend) {
        let h = Harness::start_configured(backend, CpeAuthMode::Open, |config| {
            config.cwmp.session_binding = SessionBinding::Connection;
        })
        .await;
        let inform = capture_bodies("genieacs-sim_vs-stub.wire.txt", "CPE->ACS").remove(0);
        let mut cpe = RawCpe::connect(&h.cwmp_url()).await;
        let informed = cpe.post("/", &inform, &[XML], false).await;
        let cookie = RawCpe::session_cookie(&informed);
        // Same host, another connection: refused under this binding.
        let mut other = RawCpe::connect(&h.cwmp_url()).await;
        assert_eq!(other.post("/", "", &[("Cookie", &cookie)], false).await.status, 204);
        let own = cpe.post("/", "", &[("Cookie", &cookie)], false).await;
        assert!(own.body.contains("GetParameterNames"), "{}", own.body);
        h.finish().await;
    }

    async fn a_cookie_from_another_host_is_refused_under_authentication(backend: Backend) {
        let h = Harness::start_with(backend, CpeAuthMode::Required).await;
        let app = h.app().clone();
        roost::store::credentials::create(&app.store, Default::default(), "fleet", app.secrets.seal(b"fleet-pass")).await.unwrap();
        let model = Arc::new(DataModel::bundled(DataModelKind::Tr098).unwrap());
        let mut config = FleetConfig::new(h.cwmp_url(), model);
        config.start = StartMode::Manual;
        config.retry = false;
        config.serial_prefix = "VICTIM".into();
        config.acs_username = Some("fleet".into());
        config.acs_password = Some("fleet-pass".into());
        let fleet = Fleet::start(config).await.unwrap();
        assert!(fleet.device(0).inform_now(&[]).await.unwrap().is_ok());
        // A session opened by hand with valid credentials, then its cookie used from elsewhere.
        let inform = capture_bodies("genieacs-sim_vs-stub.wire.txt", "CPE->ACS").remove(0);
        let mut cpe = RawCpe::connect(&h.cwmp_url()).await;
        let challenge = cpe.post("/", &inform, &[XML], false).await;
        assert_eq!(challenge.status, 401);
        let authorization = answer_challenge(&challenge, "fleet", "fleet-pass");
        let informed = cpe.post("/", &inform, &[XML, ("Authorization", &authorization)], false).await;
        assert_eq!(informed.status, 200, "{}", informed.body);
        let cookie = RawCpe::session_cookie(&informed);
        let mut thief = RawCpe::connect_from(&h.cwmp_url(), Ipv4Addr::new(127, 0, 0, 3)).await;
        let stolen = thief.post("/", "", &[("Cookie", &cookie)], false).await;
        assert_eq!(stolen.status, 401, "challenged, not served: {}", stolen.body);
        let own = cpe.post("/", "", &[("Cookie", &cookie)], false).await;
        // Served: on a shared credential, the device is first given its own.
        assert!(own.body.contains("ManagementServer.Username"), "{}", own.body);
        fleet.stop().await;
        h.finish().await;
    }

    async fn a_request_sent_before_a_half_close_is_answered(backend: Backend) {
        let h = Harness::start(backend).await;
        let inform = capture_bodies("netcwmp_vs-stub.wire.txt", "CPE->ACS").remove(0);
        let mut cpe = RawCpe::connect(&h.cwmp_url()).await;
        let response = cpe.post_and_half_close("/acs", &inform, &[XML]).await;
        assert_eq!(response.status, 200, "{}", response.body);
        assert!(response.body.contains("InformResponse"), "{}", response.body);
        h.device("A00001-OT2800-30000000000000000").await;
        h.finish().await;
    }

    async fn task_posts_are_authorized_before_their_bodies_are_examined(backend: Backend) {
        let h = Harness::start(backend).await;
        let app = h.app().clone();
        let platform = roost::store::orgs::by_slug(&app.store, "platform").await.unwrap().unwrap();
        let hash = roost::api::auth::hash_password("read-only-password").unwrap();
        roost::store::users::create(&app.store, platform.id, "viewer@example.com", &hash, "read-only").await.unwrap();
        let viewer = h.login("viewer@example.com", "read-only-password").await.unwrap();
        let names: Vec<String> = (0..60_000).map(|i| format!("Device.X.{i}")).collect();
        let body = json!({"name": "getParameterValues", "parameterNames": names});
        // A read-only caller is refused for the task, whatever its body holds.
        let response = h
            .http
            .post(h.url("/api/v1/devices/NOPE-NOPE-NOPE/tasks"))
            .bearer_auth(&viewer)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
        // An operator asking for an unknown device learns that before anything else.
        let (status, problem) = h.post("/api/v1/devices/NOPE-NOPE-NOPE/tasks", body.clone()).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{problem}");
        // On a real device, the list is refused for its size.
        let fleet = h.fleet(DataModelKind::Tr098, 1, "CAP").await;
        assert!(fleet.device(0).inform_now(&[]).await.unwrap().is_ok());
        let (status, problem) =
            h.post(&format!("/api/v1/devices/{}/tasks", encode_id(&fleet.device(0).device_id())), body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{problem}");
        assert!(problem["detail"].as_str().unwrap().contains("at most 1024"), "{problem}");
        fleet.stop().await;
        h.finish().await;
    }

    async fn the_http_listener_answers_every_error_as_problem_json(backend: Backend) {
        let h = Harness::start(backend).await;
        let response = h.http.put(h.url("/healthz")).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(response.headers()["content-type"], "application/problem+json");
        let problem: JsonValue = response.json().await.unwrap();
        assert_eq!(problem["code"], "method_not_allowed");
        let response = h.http.patch(h.url("/api/v1/devices")).bearer_auth(&h.token).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
        let problem: JsonValue = response.json().await.unwrap();
        assert_eq!(problem["code"], "method_not_allowed");
        let long = format!("/api/v1/devices?serial_number={}", "x".repeat(10_000));
        let response = h.http.get(h.url(&long)).bearer_auth(&h.token).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::URI_TOO_LONG);
        assert_eq!(response.headers()["content-type"], "application/problem+json");
        let problem: JsonValue = response.json().await.unwrap();
        assert_eq!(problem["code"], "uri_too_long");
        h.finish().await;
    }
}

/// The body limit is sized from the real device exports: the largest legitimate message is a
/// whole tree's GetParameterValuesResponse (or GetParameterNamesResponse), and the default
/// limit holds four of the largest.
#[test]
fn the_body_limit_holds_the_largest_real_tree_four_times() {
    use roost_cwmp::{CpeBody, CpeResponse, CwmpVersion, Header, ParameterInfo, ParameterValue};
    let limit = roost::config::CwmpSettings::default().max_body_bytes;
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("data/cpe");
    let mut largest = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "csv") {
            continue;
        }
        let model = DataModel::load(&path).unwrap();
        let values = CpeBody::Response(CpeResponse::GetParameterValues {
            parameters: model
                .iter()
                .filter(|(_, node)| !node.object)
                .map(|(name, node)| ParameterValue {
                    name: name.to_owned(),
                    value: node.value.clone(),
                    value_type: node.value_type.clone(),
                })
                .collect(),
        });
        let names = CpeBody::Response(CpeResponse::GetParameterNames {
            parameters: model
                .iter()
                .map(|(name, node)| ParameterInfo { name: name.to_owned(), writable: node.writable })
                .collect(),
        });
        for body in [values, names] {
            largest = largest.max(roost_cwmp::encode_cpe_message(CwmpVersion::V1_0, &Header::default(), &body).len());
        }
    }
    assert!(largest > 500_000, "the exports are whole trees: {largest} bytes");
    assert!(4 * largest <= limit, "the largest real tree's message is {largest} bytes; the limit is {limit}");
}

on_both_backends! {
    async fn an_unauthenticated_body_is_refused_before_it_is_read(backend: Backend) {
        let h = Harness::start_with(backend, CpeAuthMode::Required).await;
        // A 3 MB Inform (under the body limit) announced without credentials: the answer comes
        // on the head alone.
        let mut cpe = RawCpe::connect(&h.cwmp_url()).await;
        cpe.write(b"POST / HTTP/1.1\r\nHost: acs\r\nContent-Length: 3000000\r\n\r\n").await.unwrap();
        let response = cpe.response().await;
        assert_eq!(response.status, 401);
        assert!(response.header("www-authenticate").unwrap().starts_with("Digest "));
        assert_eq!(response.header("connection"), Some("close"), "the unread body ends the connection");
        assert!(cpe.is_closed_within(Duration::from_secs(5)).await);
        // A small one is read and dropped, and the connection stays for the authenticated retry.
        let inform = capture_bodies("genieacs-sim_vs-stub.wire.txt", "CPE->ACS").remove(0);
        let mut cpe = RawCpe::connect(&h.cwmp_url()).await;
        assert_eq!(cpe.post("/", &inform, &[XML], false).await.status, 401);
        assert_eq!(cpe.post("/", &inform, &[XML], false).await.status, 401, "the connection is still usable");
        h.finish().await;
    }

    async fn a_body_over_the_limit_is_refused_unread(backend: Backend) {
        let h = Harness::start(backend).await;
        let mut cpe = RawCpe::connect(&h.cwmp_url()).await;
        cpe.write(b"POST / HTTP/1.1\r\nHost: acs\r\nContent-Length: 5000000\r\n\r\n").await.unwrap();
        assert_eq!(cpe.response().await.status, 413);
        h.finish().await;
    }

    async fn connections_over_the_limit_are_shed_and_the_api_stays_up(backend: Backend) {
        let h = Harness::start_configured(backend, CpeAuthMode::Open, |config| {
            config.cwmp.max_connections = Some(8);
            config.cwmp.max_connections_per_address = 6;
        })
        .await;
        let hold = |from: Ipv4Addr| {
            let url = h.cwmp_url();
            async move {
                let mut cpe = RawCpe::connect_from(&url, from).await;
                cpe.write(b"POST / HTTP/1.1\r\n").await.unwrap(); // half a head: the connection is held
                cpe
            }
        };
        let shed = |from: Ipv4Addr| {
            let url = h.cwmp_url();
            async move {
                let response = RawCpe::connect_from(&url, from).await.response().await;
                (response.status, response.header("retry-after").map(str::to_owned))
            }
        };
        let attacker = Ipv4Addr::new(127, 0, 0, 6);
        let mut idle = Vec::new();
        for _ in 0..6 {
            idle.push(hold(attacker).await);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(shed(attacker).await, (503, Some("30".to_owned())), "one address has at most 6");
        // Other addresses still get in, up to the limit of all.
        for _ in 0..2 {
            idle.push(hold(Ipv4Addr::new(127, 0, 0, 7)).await);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(shed(Ipv4Addr::LOCALHOST).await.0, 503, "8 in all");
        let health = h.http.get(h.url("/healthz")).send().await.unwrap();
        assert_eq!(health.status(), StatusCode::OK, "the HTTP listener is not starved");
        // Room again once connections go.
        idle.truncate(5);
        let inform = capture_bodies("genieacs-sim_vs-stub.wire.txt", "CPE->ACS").remove(0);
        // The server sees the closed connections as it reads them: shed until then.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let status = RawCpe::connect(&h.cwmp_url()).await.post("/", &inform, &[XML], false).await.status;
            if status == 200 {
                break;
            }
            assert_eq!(status, 503);
            assert!(Instant::now() < deadline, "still shed 10 s after three connections went");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        h.finish().await;
    }

    async fn a_retried_task_post_with_an_idempotency_key_queues_one_task(backend: Backend) {
        let h = Harness::start(backend).await;
        let fleet = h.fleet(DataModelKind::Tr098, 1, "IDEM").await;
        assert!(fleet.device(0).inform_now(&[]).await.unwrap().is_ok());
        let tasks = h.url(&format!("/api/v1/devices/{}/tasks", encode_id(&fleet.device(0).device_id())));
        let post = |key: Option<&'static str>, body: JsonValue| {
            let mut request = h.http.post(&tasks).bearer_auth(&h.token).json(&body);
            if let Some(key) = key {
                request = request.header("Idempotency-Key", key);
            }
            request.send()
        };
        let reboot = json!({"name": "reboot"});
        let first = post(Some("crm-order-42"), reboot.clone()).await.unwrap();
        assert_eq!(first.status(), StatusCode::CREATED);
        let first: JsonValue = first.json().await.unwrap();
        // The client saw an error and retries: the same task, not a second one.
        let retry = post(Some("crm-order-42"), reboot.clone()).await.unwrap();
        assert_eq!(retry.status(), StatusCode::OK);
        assert_eq!(retry.headers()["idempotent-replayed"], "true");
        let retry: JsonValue = retry.json().await.unwrap();
        assert_eq!(retry["id"], first["id"]);
        // The same key with another request is a mistake, said so.
        let other = post(Some("crm-order-42"), json!({"name": "factoryReset"})).await.unwrap();
        assert_eq!(other.status(), StatusCode::UNPROCESSABLE_ENTITY);
        let problem: JsonValue = other.json().await.unwrap();
        assert_eq!(problem["code"], "idempotency_key_reused");
        // Without a key, or with another, a new task.
        assert_eq!(post(None, reboot.clone()).await.unwrap().status(), StatusCode::CREATED);
        assert_eq!(post(Some("crm-order-43"), reboot.clone()).await.unwrap().status(), StatusCode::CREATED);
        let bad = post(Some("with spaces"), reboot).await.unwrap();
        assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
        let (_, list) = h.get(&format!("/api/v1/devices/{}/tasks", encode_id(&fleet.device(0).device_id()))).await;
        assert_eq!(list["items"].as_array().unwrap().len(), 3, "{list}");
        fleet.stop().await;
        h.finish().await;
    }

    async fn a_partial_path_is_sent_only_when_asked_for(backend: Backend) {
        let h = Harness::start(backend).await;
        let fleet = h.fleet(DataModelKind::Tr098, 1, "PARTIAL").await;
        let cpe = fleet.device(0);
        assert!(cpe.inform_now(&[]).await.unwrap().is_ok());
        let id = cpe.device_id();
        let interval = "InternetGatewayDevice.ManagementServer.PeriodicInformInterval";
        let object = "InternetGatewayDevice.DeviceInfo.";
        let asked_partial = |report: &roost_sim::SessionReport| {
            report.rpcs.iter().any(|rpc| {
                matches!(&rpc.request, Some(roost_cwmp::AcsRequest::GetParameterValues { names }) if names.iter().any(|n| n.ends_with('.')))
            })
        };
        // By default an object is read as discovery reads trees: names, then leaves by name.
        let mark = cpe.session_count();
        let task = h.run_task(&id, json!({"name": "getParameterValues", "parameterNames": [object, interval]})).await;
        assert_eq!(task["status"], "done", "{task}");
        let values = task["result"]["parameterValues"].as_array().unwrap();
        let names: Vec<&str> = values.iter().filter_map(|v| v[0].as_str()).collect();
        assert!(names.contains(&"InternetGatewayDevice.DeviceInfo.SerialNumber"), "{names:?}");
        assert!(names.contains(&interval), "{names:?}");
        assert!(names.iter().all(|n| n.starts_with(object) || *n == interval), "{names:?}");
        let session = cpe.wait_for_session(mark, Duration::from_secs(10), |r| !r.rpcs.is_empty()).await.unwrap();
        assert!(session.methods().contains(&"GetParameterNames"), "{:?}", session.methods());
        assert!(!asked_partial(&session), "no partial path was sent");
        // Asked for explicitly, it goes as it is.
        let mark = cpe.session_count();
        let task = h
            .run_task(&id, json!({"name": "getParameterValues", "parameterNames": [object], "partialPath": true}))
            .await;
        assert_eq!(task["status"], "done", "{task}");
        let session = cpe.wait_for_session(mark, Duration::from_secs(10), |r| !r.rpcs.is_empty()).await.unwrap();
        assert!(asked_partial(&session), "{:?}", session.methods());
        fleet.stop().await;
        h.finish().await;
    }

    async fn oversized_informs_and_fault_strings_are_clamped(backend: Backend) {
        use roost_cwmp::{CpeBody, CpeRequest, CwmpVersion, EventStruct, Fault, Header, Inform, ParameterValue, ValueType};
        let h = Harness::start(backend).await;
        let fleet = h.fleet(DataModelKind::Tr098, 1, "CLAMP").await;
        let cpe = fleet.device(0);
        assert!(cpe.inform_now(&[]).await.unwrap().is_ok());
        let id = cpe.device_id();
        let (_, task) = h
            .post(
                &format!("/api/v1/devices/{}/tasks", encode_id(&id)),
                json!({"name": "getParameterValues", "parameterNames": ["InternetGatewayDevice.DeviceInfo.UpTime"]}),
            )
            .await;
        // 1,500 parameters, the first with a 100 KB value.
        let code = "InternetGatewayDevice.DeviceInfo.ProvisioningCode";
        let mut parameters = vec![ParameterValue { name: code.into(), value: "x".repeat(100_000), value_type: ValueType::default() }];
        parameters.extend((1..1500).map(|i| ParameterValue {
            name: format!("InternetGatewayDevice.X_Flood.P{i}"),
            value: "v".into(),
            value_type: ValueType::default(),
        }));
        let inform = Inform {
            device_id: cpe.identity().clone(),
            events: vec![EventStruct { code: "2 PERIODIC".into(), command_key: String::new() }],
            max_envelopes: 1,
            current_time: "2026-12-03T00:00:00Z".into(),
            retry_count: 0,
            parameters,
        };
        let body = roost_cwmp::encode_cpe_message(CwmpVersion::V1_0, &Header::default(), &CpeBody::Request(CpeRequest::Inform(inform)));
        let mut raw = RawCpe::connect(&h.cwmp_url()).await;
        assert_eq!(raw.post("/", &body, &[XML], false).await.status, 200);
        let request = raw.post("/", "", &[], false).await;
        assert!(request.body.contains("GetParameterValues"), "{}", request.body);
        // The task is answered with a fault whose FaultString is 100 KB.
        let fault = roost_cwmp::encode_cpe_message(CwmpVersion::V1_0, &Header::default(), &CpeBody::Fault(Fault::new(9002, "y".repeat(100_000))));
        let _ = raw.post("/", &fault, &[XML], false).await;
        raw.end_session("/").await;
        let stored = h.stored_value(&id, code).await.unwrap();
        assert_eq!(stored.len(), 32 * 1024, "the value is cut at 32 KiB");
        let flood = h.parameters(&id, "InternetGatewayDevice.X_Flood.").await;
        assert_eq!(flood.len(), 1023, "the Inform kept its first 1,024 parameters");
        let (_, failed) = h.get(&format!("/api/v1/tasks/{}", task["id"].as_str().unwrap())).await;
        assert_eq!(failed["status"], "fault", "{failed}");
        assert!(failed["fault"]["message"].as_str().unwrap().len() <= 1024, "the FaultString is cut at 1 KiB");
        fleet.stop().await;
        h.finish().await;
    }

    async fn api_requests_past_the_limit_wait_then_get_503(backend: Backend) {
        let h = Harness::start_configured(backend, CpeAuthMode::Open, |config| {
            config.api.max_concurrent_requests = 1;
            config.api.queue_timeout = Duration::from_millis(300);
        })
        .await;
        // A slow request holding the only place, until the test lets it go: a route of its own
        // behind the same limiter.
        let (entered, release) = (Arc::new(tokio::sync::Notify::new()), Arc::new(tokio::sync::Notify::new()));
        let handler = {
            let (entered, release) = (entered.clone(), release.clone());
            move || async move {
                entered.notify_one();
                release.notified().await;
                "done"
            }
        };
        let slow_route = axum::Router::new()
            .route("/slow", axum::routing::get(handler))
            .layer(axum::middleware::from_fn_with_state(h.app().clone(), roost::api::take_slot));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, slow_route).await });
        let slow = tokio::spawn(reqwest::get(format!("http://{addr}/slow")));
        tokio::time::timeout(Duration::from_secs(10), entered.notified()).await.expect("the slow request holds the place");
        let (status, problem) = h.get("/api/v1/devices").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{problem}");
        assert_eq!(problem["code"], "busy");
        release.notify_one();
        assert_eq!(slow.await.unwrap().unwrap().status(), StatusCode::OK);
        let (status, _) = h.get("/api/v1/devices").await;
        assert_eq!(status, StatusCode::OK, "the place is free again");
        h.finish().await;
    }

    async fn a_trickling_client_is_cut_at_the_request_deadline(backend: Backend) {
        let h = Harness::start_configured(backend, CpeAuthMode::Open, |config| {
            config.cwmp.request_deadline = Duration::from_secs(1);
        })
        .await;
        let mut slow = RawCpe::connect(&h.cwmp_url()).await;
        let mut closed = false;
        // One byte every 300 ms: never idle for long, never done. The session timeout (idle
        // time) of test servers is 20 s; the request deadline is 1 s.
        for byte in b"POST / HTTP/1.1\r\nHost: acs\r\nContent-Length: 10\r\n\r\n0123456789".iter() {
            if slow.write(&[*byte]).await.is_err() || slow.is_closed_within(Duration::from_millis(300)).await {
                closed = true;
                break;
            }
        }
        assert!(closed, "the trickle was cut");
        h.finish().await;
    }
}

/// A lost database: the API says so with 503 and `Retry-After`, not 500, and recovers by itself;
/// the replica is not ready meanwhile (`/readyz`), and alive throughout (`/healthz`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_answers_503_while_the_database_is_lost() {
    let h = Harness::start(Backend::Postgres).await;
    let (status, _) = h.get("/api/v1/devices").await;
    assert_eq!(status, StatusCode::OK);
    let probe = |path: &'static str| {
        let (http, url) = (h.http.clone(), h.url(path));
        async move { http.get(url).send().await.unwrap().status() }
    };
    assert_eq!(probe("/readyz").await, StatusCode::OK);
    // No new connections, and the open ones are gone: the server's pool finds nothing that works.
    h.postgres_admin("ALTER DATABASE {db} ALLOW_CONNECTIONS false").await;
    h.postgres_admin("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{db}'").await;
    let response = h.http.get(h.url("/api/v1/devices")).bearer_auth(&h.token).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.headers()["retry-after"], "5");
    assert_eq!(response.headers()["content-type"], "application/problem+json");
    let problem: JsonValue = response.json().await.unwrap();
    assert_eq!(problem["code"], "database_unavailable", "{problem}");
    assert_eq!(probe("/readyz").await, StatusCode::SERVICE_UNAVAILABLE, "not ready without its database");
    assert_eq!(probe("/healthz").await, StatusCode::OK, "alive: a restart would not bring the database back");
    h.postgres_admin("ALTER DATABASE {db} ALLOW_CONNECTIONS true").await;
    let mut recovered = false;
    for _ in 0..50 {
        if h.get("/api/v1/devices").await.0 == StatusCode::OK {
            recovered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(recovered, "the API recovers once the database is back");
    assert_eq!(probe("/readyz").await, StatusCode::OK, "ready again");
    h.finish().await;
}
