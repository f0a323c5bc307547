//! Diagnostics over REST: ping, trace route and TR-143 speed tests that really move bytes to and
//! from Roost's own endpoints, on the Huawei EG8145V5 (TR-098) and TP-Link XX230v (TR-181)
//! trees; results collected on `8 DIAGNOSTICS COMPLETE`, or by polling a device that never says.

use std::time::Duration;

use reqwest::StatusCode;
use roost::config::CpeAuthMode;
use roost_sim::Quirks;
use roost_tests::on_both_backends;

use super::*;

async fn events_of(h: &Harness, kind: &str) -> Vec<JsonValue> {
    let rows = roost::store::events::list(&h.app().store, &roost::store::orgs::Scope::All, Some(kind), None, 100)
        .await
        .unwrap();
    rows.into_iter().map(|e| serde_json::from_str(&e.payload).unwrap()).collect()
}

fn run<'a>(answer: &'a JsonValue, kind: &str) -> &'a JsonValue {
    answer["runs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind}: {answer}"))
}

/// Devices that never send `8 DIAGNOSTICS COMPLETE`: Roost must poll them for their results.
async fn silent_fleet(h: &Harness, kind: DataModelKind, devices: usize, prefix: &str) -> Fleet {
    let quirks = Quirks { silent_diagnostics: true, ..Quirks::default() };
    h.fleet_with_quirks(DataModel::bundled(kind).unwrap(), devices, prefix, quirks).await
}

/// The id of the device's queued `startDiagnostic` task.
async fn start_task(h: &Harness, id: &str) -> String {
    let (_, tasks) = h.get(&format!("/api/v1/devices/{}/tasks", encode_id(id))).await;
    let task = tasks["items"].as_array().unwrap().iter().find(|t| t["name"] == "startDiagnostic").cloned();
    task.unwrap_or_else(|| panic!("no start task: {tasks}"))["id"].as_str().unwrap().to_owned()
}

/// The device's one diagnostic run.
async fn only_run(h: &Harness, id: &str) -> JsonValue {
    let (_, listed) = h.get(&format!("/api/v1/devices/{}/diagnostics", encode_id(id))).await;
    assert_eq!(listed["items"].as_array().unwrap().len(), 1, "{listed}");
    listed["items"][0].clone()
}

async fn diagnose(h: &Harness, id: &str, action: &str, body: JsonValue) -> JsonValue {
    let (status, answer) = h.post(&format!("/api/v1/devices/{}/{action}?wait=30", encode_id(id)), body).await;
    assert_eq!(status, StatusCode::OK, "{action}: {answer}");
    answer
}

on_both_backends! {
    async fn ping_traceroute_and_a_real_speed_test_on_both_data_models(backend: Backend) {
        let h = Harness::start(backend).await;
        let huawei = h.fleet(DataModelKind::Tr098, 1, "DIAG").await;
        let tplink = h.fleet(DataModelKind::Tr181, 1, "DIAG").await;
        for fleet in [&huawei, &tplink] {
            let cpe = fleet.device(0);
            assert!(cpe.inform_now(&[]).await.unwrap().is_ok());
            let id = cpe.device_id();

            let ping = diagnose(&h, &id, "ping", json!({"host": "192.0.2.1"})).await;
            let ping = run(&ping, "ping");
            assert_eq!(ping["status"], "complete", "{ping}");
            assert_eq!(ping["request"]["count"], 10, "the default repetitions: {ping}");
            assert_eq!(ping["results"]["success_count"], 10, "{ping}");
            assert_eq!(ping["summary"]["loss_percent"], 0.0, "{ping}");
            assert_eq!(ping["summary"]["rtt_avg_ms"], 2.0, "{ping}");
            assert!(ping["raw"]["SuccessCount"].is_string(), "the data model's own names: {ping}");

            // A run the device never ran leaves the store saying `Requested`: the next run must
            // still send the trigger, or the device never starts it.
            let model_root = if fleet.device(0).value("Device.DeviceInfo.SerialNumber").is_some() { "Device.IP.Diagnostics.IPPing." } else { "InternetGatewayDevice.IPPingDiagnostics." };
            let device = roost::store::devices::by_device_id(&h.app().store, &id).await.unwrap().unwrap();
            let stale = roost_cwmp::ParameterValue {
                name: format!("{model_root}DiagnosticsState"),
                value: "Requested".into(),
                value_type: roost_cwmp::ValueType::String,
            };
            roost::store::parameters::store_read(&h.app().store, device.id, &[stale], roost::store::now_millis()).await.unwrap();
            let again = diagnose(&h, &id, "ping", json!({"host": "192.0.2.1", "count": 4})).await;
            assert_eq!(run(&again, "ping")["results"]["success_count"], 4, "{again}");

            let route = diagnose(&h, &id, "traceroute", json!({"host": "example.com"})).await;
            assert_eq!(run(&route, "traceroute")["summary"]["hops"], 1, "{route}");

            // Both directions, one after the other, through Roost's own endpoints.
            let size = 3 * 1024 * 1024;
            let test = diagnose(&h, &id, "speed-test", json!({"size": size})).await;
            for kind in ["download", "upload"] {
                let transfer = run(&test, kind);
                assert_eq!(transfer["status"], "complete", "{kind}: {test}");
                assert_eq!(transfer["summary"]["bytes"], f64::from(size), "{kind}: {transfer}");
                assert!(transfer["summary"]["throughput_bps"].as_f64().unwrap() > 0.0, "{transfer}");
                let url = transfer["request"]["url"].as_str().unwrap();
                assert!(url.starts_with(&format!("{}/tr143/{kind}/", h.cwmp_url().trim_end_matches('/'))), "{url}");
            }
            // The test's token is good only while its run is open.
            let url = run(&test, "download")["request"]["url"].as_str().unwrap().to_owned();
            let again = reqwest::get(&url).await.unwrap();
            assert_eq!(again.status(), StatusCode::NOT_FOUND, "{url}");
            let upload = run(&test, "upload")["request"]["url"].as_str().unwrap().to_owned();
            let refused = reqwest::Client::new().put(&upload).body(vec![0u8; 1024]).send().await.unwrap();
            assert_eq!(refused.status(), StatusCode::NOT_FOUND, "{upload}");
            let guessed = format!("{}tr143/download/guessed?size=10", h.cwmp_url());
            assert_eq!(reqwest::get(&guessed).await.unwrap().status(), StatusCode::NOT_FOUND);

            let (status, listed) = h.get(&format!("/api/v1/devices/{}/diagnostics", encode_id(&id))).await;
            assert_eq!(status, StatusCode::OK, "{listed}");
            assert_eq!(listed["items"].as_array().unwrap().len(), 5, "history, newest first: {listed}");
            assert_eq!(listed["items"][0]["kind"], "upload");
            let latest: Vec<&str> = listed["latest"].as_array().unwrap().iter().map(|r| r["kind"].as_str().unwrap()).collect();
            assert_eq!(latest, ["download", "ping", "traceroute", "upload"], "{listed}");
        }
        assert_eq!(events_of(&h, "diagnostics.completed").await.len(), 10);

        // Bad input: 4xx naming the field, nothing queued.
        let id = huawei.device(0).device_id();
        let before = h.get(&format!("/api/v1/devices/{}/diagnostics", encode_id(&id))).await.1["items"].as_array().unwrap().len();
        for (action, body, status, says) in [
            ("ping", json!({"host": "8.8.8.8; reboot"}), StatusCode::BAD_REQUEST, "host"),
            ("ping", json!({"host": "$(id)"}), StatusCode::BAD_REQUEST, "host"),
            ("ping", json!({"host": "h", "count": 0}), StatusCode::BAD_REQUEST, "count"),
            ("udp-echo", json!({"host": "192.0.2.7", "port": 7}), StatusCode::UNPROCESSABLE_ENTITY, "diagnostic"),
            ("speed-test", json!({"size": 0}), StatusCode::BAD_REQUEST, "size"),
        ] {
            let (got, problem) = h.post(&format!("/api/v1/devices/{}/{action}", encode_id(&id)), body.clone()).await;
            assert_eq!(got, status, "{action} {body}: {problem}");
            assert!(problem["detail"].as_str().unwrap().contains(says), "{action} {body}: {problem}");
        }
        let after = h.get(&format!("/api/v1/devices/{}/diagnostics", encode_id(&id))).await.1["items"].as_array().unwrap().len();
        assert_eq!(after, before, "nothing queued");
        huawei.stop().await;
        tplink.stop().await;
        h.finish().await;
    }

    async fn an_organizations_own_test_server_serves_its_speed_tests(backend: Backend) {
        let h = Harness::start(backend).await;
        h.org("acme", None).await;
        h.org("acme-north", Some("acme")).await;
        let admin = h.user("acme", "admin@acme.example", "org-admin").await;
        let basic = h.user("acme", "desk@acme.example", "basic").await;
        let server = FileServer::start().await;
        let file = vec![7u8; 256 * 1024];
        let download_url = server.put_file("256k.bin", &file);
        let upload_url = server.url("/uploads/from-cpe");

        // Set by the organization's own administrator (a name or host it may not change).
        let harness = &h;
        let patch = |token: &str, body: JsonValue| {
            let token = token.to_owned();
            async move { harness.request_as(&token, reqwest::Method::PATCH, "/api/v1/orgs/acme", Some(body)).await }
        };
        let server_of = json!({"speed_test_server": {"download_url": download_url, "upload_url": upload_url}});
        let (status, refused) = patch(&basic, server_of.clone()).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{refused}");
        let (status, renamed) = patch(&admin, json!({"name": "Mine now"})).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{renamed}");
        let bad = StatusCode::BAD_REQUEST;
        for (body, expected, says) in [
            (json!({"speed_test_server": {"download_url": "file:///etc/passwd"}}), bad, "speed_test_server.download_url"),
            (json!({"speed_test_server": {"upload_url": "http://"}}), bad, "speed_test_server.upload_url"),
            // Shown to every organization below: no password in it.
            (json!({"speed_test_server": {"upload_url": "ftp://isp:secret@ftp.isp.example/in/"}}), bad, "no user name or password"),
            (json!({"speed_test_server": {}}), bad, "speed_test_server"),
            // A body that does not parse, as every other.
            (json!({"speed_test_server": {"download_url": "http://a/", "port": 80}}), StatusCode::UNPROCESSABLE_ENTITY, "speed_test_server.port"),
        ] {
            let (status, problem) = patch(&admin, body.clone()).await;
            assert_eq!(status, expected, "{body}: {problem}");
            assert!(problem["detail"].as_str().unwrap().contains(says), "{body}: {problem}");
        }
        let (status, org) = patch(&admin, server_of).await;
        assert_eq!(status, StatusCode::OK, "{org}");
        assert_eq!(org["speed_test_server"]["download_url"], download_url.as_str(), "{org}");

        // A device of the child organization uses its parent's server, both ways.
        let fleet = h.fleet(DataModelKind::Tr181, 1, "EXTST").await;
        let cpe = fleet.device(0);
        assert!(cpe.inform_now(&[]).await.unwrap().is_ok());
        let (status, claimed) =
            h.post("/api/v1/pending-devices/claim", json!({"serials": [cpe.serial_number()], "org": "acme-north"})).await;
        assert_eq!(status, StatusCode::OK, "{claimed}");
        let id = cpe.device_id();
        let test = diagnose(&h, &id, "speed-test", json!({"size": 64 * 1024})).await;
        let download = run(&test, "download");
        assert_eq!(download["status"], "complete", "{test}");
        assert_eq!(download["request"]["url"], download_url.as_str(), "{test}");
        assert_eq!(download["summary"]["bytes"], file.len() as f64, "what the server sent: {download}");
        let upload = run(&test, "upload");
        assert_eq!(upload["status"], "complete", "{test}");
        assert_eq!(upload["request"]["url"], upload_url.as_str(), "{test}");
        assert_eq!(server.uploaded("from-cpe").map(|b| b.len()), Some(64 * 1024), "the server got the upload");

        // A URL in the request wins; a bad one is refused, naming it, with nothing queued.
        let other = server.put_file("other.bin", &[1u8; 1000]);
        let test = diagnose(&h, &id, "speed-test", json!({"direction": "download", "download_url": other})).await;
        assert_eq!(run(&test, "download")["request"]["url"], other.as_str(), "{test}");
        let path = format!("/api/v1/devices/{}/speed-test", encode_id(&id));
        for (body, says) in [
            (json!({"download_url": "gopher://x/"}), "download_url"),
            (json!({"upload_url": format!("http://a/{}", "x".repeat(300))}), "upload_url"),
        ] {
            let (status, problem) = h.post(&path, body.clone()).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {problem}");
            assert!(problem["detail"].as_str().unwrap().contains(says), "{body}: {problem}");
        }

        // The child's own server (upload only) is nearer; removed, Roost's own endpoint again.
        let child_upload = server.url("/uploads/north");
        let (status, child) = h
            .request(reqwest::Method::PATCH, "/api/v1/orgs/acme-north", Some(json!({"speed_test_server": {"upload_url": child_upload}})))
            .await;
        assert_eq!(status, StatusCode::OK, "{child}");
        let test = diagnose(&h, &id, "speed-test", json!({"size": 4096})).await;
        assert_eq!(run(&test, "upload")["request"]["url"], child_upload.as_str(), "{test}");
        let own = run(&test, "download")["request"]["url"].as_str().unwrap();
        assert!(own.contains("/tr143/download/"), "the child's server has no download: {own}");
        for org in ["acme-north", "acme"] {
            let (status, cleared) = h
                .request(reqwest::Method::PATCH, &format!("/api/v1/orgs/{org}"), Some(json!({"speed_test_server": null})))
                .await;
            assert_eq!(status, StatusCode::OK, "{cleared}");
            assert!(cleared["speed_test_server"].is_null(), "{cleared}");
        }
        let test = diagnose(&h, &id, "speed-test", json!({"size": 4096})).await;
        for kind in ["download", "upload"] {
            let url = run(&test, kind)["request"]["url"].as_str().unwrap();
            assert!(url.contains(&format!("/tr143/{kind}/")), "{url}");
        }
        fleet.stop().await;
        h.finish().await;
    }

    async fn a_retried_diagnostic_with_an_idempotency_key_runs_once(backend: Backend) {
        let h = Harness::start(backend).await;
        let fleet = h.fleet(DataModelKind::Tr098, 1, "IDEMDIAG").await;
        let cpe = fleet.device(0);
        assert!(cpe.inform_now(&[]).await.unwrap().is_ok());
        let id = cpe.device_id();
        let post = |action: &str, key: &str, body: JsonValue| {
            h.http
                .post(h.url(&format!("/api/v1/devices/{}/{action}", encode_id(&id))))
                .bearer_auth(&h.token)
                .header("Idempotency-Key", key)
                .json(&body)
                .send()
        };
        let ids = |answer: &JsonValue| -> Vec<JsonValue> {
            answer["runs"].as_array().unwrap().iter().map(|r| r["id"].clone()).collect()
        };

        // A speed test whose answer was lost: the retry gets its runs, still running, instead of
        // a refusal for a test in progress or a second test.
        let test = json!({"size": 65536});
        let first = post("speed-test", "crm-ticket-7", test.clone()).await.unwrap();
        assert_eq!(first.status(), StatusCode::ACCEPTED);
        let first: JsonValue = first.json().await.unwrap();
        assert_eq!(ids(&first).len(), 2, "{first}");
        let retry = post("speed-test", "crm-ticket-7", test.clone()).await.unwrap();
        assert!(retry.status().is_success(), "{}", retry.status());
        assert_eq!(retry.headers()["idempotent-replayed"], "true");
        let retry: JsonValue = retry.json().await.unwrap();
        assert_eq!(ids(&retry), ids(&first), "{retry}");
        let other = post("speed-test", "crm-ticket-7", json!({"size": 1024})).await.unwrap();
        assert_eq!(other.status(), StatusCode::UNPROCESSABLE_ENTITY);
        let other: JsonValue = other.json().await.unwrap();
        assert_eq!(other["code"], "idempotency_key_reused", "{other}");

        // A ping, done, retried: the same run, its results, and nothing queued again.
        let ping = json!({"host": "192.0.2.1", "count": 3});
        let done = post("ping", "crm-ticket-8", ping.clone()).await.unwrap();
        let done: JsonValue = done.json().await.unwrap();
        let path = format!("/api/v1/devices/{}/diagnostics?kind=ping", encode_id(&id));
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let (_, listed) = h.get(&path).await;
            if listed["items"][0]["status"] == "complete" {
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "{listed}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let again = post("ping", "crm-ticket-8", ping).await.unwrap();
        assert_eq!(again.status(), StatusCode::OK);
        let again: JsonValue = again.json().await.unwrap();
        assert_eq!(ids(&again), ids(&done), "{again}");
        assert_eq!(again["runs"][0]["results"]["success_count"], 3, "{again}");
        let (_, listed) = h.get(&path).await;
        assert_eq!(listed["items"].as_array().unwrap().len(), 1, "one ping run: {listed}");
        // A task POST with the same key is another request, said so (not a server error).
        let task = h
            .http
            .post(h.url(&format!("/api/v1/devices/{}/tasks", encode_id(&id))))
            .bearer_auth(&h.token)
            .header("Idempotency-Key", "crm-ticket-10")
            .json(&json!({"name": "startDiagnostic", "diagnostic": "ping", "host": "192.0.2.1", "count": 3,
                          "timeoutMs": null, "size": null}))
            .send()
            .await
            .unwrap();
        assert!(task.status().is_success(), "{}", task.status());
        let ping_again = post("ping", "crm-ticket-10", json!({"host": "192.0.2.1", "count": 3})).await.unwrap();
        assert_eq!(ping_again.status(), StatusCode::UNPROCESSABLE_ENTITY);
        fleet.stop().await;
        h.finish().await;
    }

    async fn a_run_whose_task_is_deleted_or_unreadable_ends_at_once(backend: Backend) {
        use sea_orm::ConnectionTrait;
        let h = Harness::start(backend).await;
        let fleet = h.fleet(DataModelKind::Tr181, 3, "ENDRUN").await;
        for i in 0..3 {
            let cpe = fleet.device(i);
            assert!(cpe.inform_now(&[]).await.unwrap().is_ok());
            // Connection requests fail from now on: the runs' tasks stay queued until we say.
            cpe.set("Device.ManagementServer.ConnectionRequestPassword", "changed-behind-roosts-back").unwrap();
        }

        // An integrator drops, through the GenieACS NBI, the task of a ping the device never
        // picked up: however a task goes, its run goes with it.
        let deleted = fleet.device(0).device_id();
        let (status, queued) =
            h.post(&format!("/api/v1/devices/{}/ping", encode_id(&deleted)), json!({"host": "192.0.2.1"})).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{queued}");
        let task = start_task(&h, &deleted).await;
        let (status, key) = h.post("/api/v1/api-keys", json!({"name": "crm", "role": "platform-admin"})).await;
        assert_eq!(status, StatusCode::CREATED, "{key}");
        let dropped = h
            .http
            .delete(h.url(&format!("/nbi/tasks/{task}")))
            .header("X-API-Key", key["key"].as_str().unwrap())
            .send()
            .await
            .unwrap();
        assert_eq!(dropped.status(), StatusCode::OK);
        let run = only_run(&h, &deleted).await;
        assert_eq!((run["status"].as_str(), run["fault"]["code"].as_str()), (Some("fault"), Some("task.cancelled")), "{run}");

        // Deleting a speed test's download calls the whole test off: its upload does not start.
        let (status, queued) =
            h.post(&format!("/api/v1/devices/{}/speed-test", encode_id(&deleted)), json!({"size": 4096})).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{queued}");
        let task = start_task(&h, &deleted).await;
        let (status, _) = h.request(reqwest::Method::DELETE, &format!("/api/v1/tasks/{task}"), None).await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        let (_, listed) = h.get(&format!("/api/v1/devices/{}/diagnostics?kind=upload", encode_id(&deleted))).await;
        assert_eq!(listed["items"][0]["status"], "fault", "{listed}");
        assert_eq!(listed["items"][0]["fault"]["code"], "task.cancelled", "{listed}");
        let (_, tasks) = h.get(&format!("/api/v1/devices/{}/tasks", encode_id(&deleted))).await;
        assert!(tasks["items"].as_array().unwrap().iter().all(|t| t["status"] != "pending"), "nothing left to run: {tasks}");

        // A start task the queue cannot read faults when the device comes; its run with it.
        let unreadable = fleet.device(1).device_id();
        let (status, queued) =
            h.post(&format!("/api/v1/devices/{}/ping", encode_id(&unreadable)), json!({"host": "192.0.2.1"})).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{queued}");
        let task = start_task(&h, &unreadable).await;
        h.app()
            .store
            .db()
            .execute_unprepared(&format!("UPDATE tasks SET body = '{{\"name\": \"startDiagnostic\"}}' WHERE id = {task}"))
            .await
            .unwrap();
        assert!(fleet.device(1).inform_now(&[]).await.unwrap().is_ok());
        let run = only_run(&h, &unreadable).await;
        assert_eq!((run["status"].as_str(), run["fault"]["code"].as_str()), (Some("fault"), Some("task.invalid")), "{run}");
        assert_eq!(events_of(&h, "diagnostics.completed").await.len(), 4, "each run's end is said");

        // A run that timed out keeps its Idempotency-Key: a retry gets that run, not a new test.
        let timing_out = fleet.device(2).device_id();
        let post = || {
            h.http
                .post(h.url(&format!("/api/v1/devices/{}/ping", encode_id(&timing_out))))
                .bearer_auth(&h.token)
                .header("Idempotency-Key", "crm-ticket-9")
                .json(&json!({"host": "192.0.2.1"}))
                .send()
        };
        let first: JsonValue = post().await.unwrap().json().await.unwrap();
        let later = roost::store::now_millis() + 3_600_000;
        assert_eq!(roost::store::diagnostics::expire(&h.app().store, later, 1000).await.unwrap(), 1);
        let retry = post().await.unwrap();
        assert_eq!(retry.headers()["idempotent-replayed"], "true");
        let retry: JsonValue = retry.json().await.unwrap();
        assert_eq!(retry["runs"][0]["id"], first["runs"][0]["id"], "{retry}");
        assert_eq!(retry["runs"][0]["status"], "timeout", "{retry}");
        fleet.stop().await;
        h.finish().await;
    }

    async fn replicas_polling_at_once_queue_one_collection_per_run(backend: Backend) {
        use sea_orm::ConnectionTrait;
        // The test polls by hand, as two replicas would at the same moment. On PostgreSQL the
        // two polls race for the rows (this is the case the claim is for); on SQLite one process
        // serializes them, and the test pins that the outcome is the same.
        let h = Harness::start_configured(backend, CpeAuthMode::Open, |config| {
            config.diagnostics.poll_after = Duration::from_secs(3600);
            config.diagnostics.poll_interval = Duration::from_secs(3600);
        })
        .await;
        let fleet = silent_fleet(&h, DataModelKind::Tr181, 20, "REPLICA").await;
        for i in 0..20 {
            let cpe = fleet.device(i);
            assert!(cpe.inform_now(&[]).await.unwrap().is_ok());
            let (status, queued) =
                h.post(&format!("/api/v1/devices/{}/ping", encode_id(&cpe.device_id())), json!({"host": "192.0.2.1"})).await;
            assert_eq!(status, StatusCode::ACCEPTED, "{queued}");
        }
        let store = &h.app().store;
        let count = |sql: &'static str| async move {
            let row = store.db().query_all_raw(store.statement(sql, [])).await.unwrap();
            row[0].try_get_by_index::<i64>(0).unwrap()
        };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while count("SELECT COUNT(*) FROM diagnostics WHERE status = 'requested'").await < 20 {
            assert!(tokio::time::Instant::now() < deadline, "the devices never took their pings");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }

        let later = roost::store::now_millis() + 7_200_000;
        let (a, b) = tokio::join!(
            roost::store::diagnostics::poll(store, later, 3_600_000),
            roost::store::diagnostics::poll(store, later, 3_600_000),
        );
        let woken = a.unwrap().len() + b.unwrap().len();
        assert_eq!(woken, 20, "each device woken by one of them");
        assert_eq!(count("SELECT COUNT(*) FROM tasks WHERE name = 'collectDiagnostic'").await, 20, "one collection a run");
        fleet.stop().await;
        h.finish().await;
    }

    async fn a_device_that_never_reports_its_diagnostic_done_is_polled(backend: Backend) {
        let h = Harness::start_configured(backend, CpeAuthMode::Open, |config| {
            config.diagnostics.poll_after = Duration::from_secs(1);
            config.diagnostics.poll_interval = Duration::from_millis(300);
        })
        .await;
        let fleet = silent_fleet(&h, DataModelKind::Tr098, 1, "SILENT").await;
        let cpe = fleet.device(0);
        assert!(cpe.inform_now(&[]).await.unwrap().is_ok());
        let id = cpe.device_id();
        let (status, first) =
            h.post(&format!("/api/v1/devices/{}/ping", encode_id(&id)), json!({"host": "192.0.2.9"})).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{first}");
        // One ping object per device: a second ping waits for the first to end.
        let (status, refused) =
            h.post(&format!("/api/v1/devices/{}/ping", encode_id(&id)), json!({"host": "192.0.2.1"})).await;
        assert_eq!((status, refused["code"].as_str()), (StatusCode::CONFLICT, Some("invalid_diagnostic")), "{refused}");
        let first_id = first["runs"][0]["id"].as_str().unwrap().to_owned();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let (_, listed) = h.get(&format!("/api/v1/devices/{}/diagnostics", encode_id(&id))).await;
            let first = listed["items"].as_array().unwrap().iter().find(|r| r["id"] == first_id.as_str()).cloned().unwrap();
            if first["status"] == "complete" {
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "never collected: {first}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let (_, listed) = h.get(&format!("/api/v1/devices/{}/diagnostics", encode_id(&id))).await;
        assert_eq!(listed["items"].as_array().unwrap().len(), 1, "the refused ping queued nothing: {listed}");
        let answer = diagnose(&h, &id, "ping", json!({"host": "192.0.2.1", "count": 3})).await;
        let ping = run(&answer, "ping");
        assert_eq!(ping["status"], "complete", "{answer}");
        assert_eq!(ping["results"]["success_count"], 3);
        // No session ever carried the event: Roost woke the device to read the results.
        assert!(cpe.sessions().iter().all(|r| !r.has_event("8 DIAGNOSTICS COMPLETE")));
        fleet.stop().await;
        h.finish().await;
    }
}
