//! First contact: registration, connection-request credentials, discovery of the whole tree.

use std::time::Duration;

use reqwest::StatusCode;
use roost_tests::on_both_backends;

use super::*;

async fn bootstraps_and_discovers(backend: Backend, kind: DataModelKind) {
    let h = Harness::start(backend).await;
    let fleet = h.fleet(kind, 1, "BOOT").await;
    let cpe = fleet.device(0);
    let report = cpe.inform_now(&[]).await.unwrap();
    assert!(report.is_ok(), "{:?}", report.error);
    assert!(report.has_event("0 BOOTSTRAP"));
    let methods = report.methods();
    // Discovery first; then the platform's `bootstrap` preset (the shipped provision) sets the
    // connection-request credentials and the periodic settings, in one round that settles: the
    // credentials in a SetParameterValues of their own (a CPE refusing another value must not
    // take them down with it), then the rest.
    assert_eq!(methods.first(), Some(&"GetParameterNames"), "discovery first: {methods:?}");
    assert_eq!(methods.last(), Some(&"SetParameterValues"), "settings last: {methods:?}");
    assert_eq!(methods.iter().filter(|m| **m == "SetParameterValues").count(), 2, "{methods:?}");
    assert!(methods.iter().filter(|m| **m == "GetParameterValues").count() > 3, "{methods:?}");

    let id = cpe.device_id();
    let device = h.device(&id).await;
    assert_eq!(device["id"], id);
    assert_eq!(device["serial_number"], cpe.serial_number());
    assert_eq!(device["data_model"], if kind == DataModelKind::Tr098 { "tr098" } else { "tr181" });
    assert!(device["discovered_at"].is_string(), "{device}");
    assert!(device["last_events"].as_array().unwrap().iter().any(|e| e == "0 BOOTSTRAP"));
    assert_eq!(device["connection_request"]["credentials_set"], true);
    assert_eq!(device["connection_request"]["url"], cpe.connection_request_url());

    // The whole tree is stored: every node the device has, with its value.
    let root = cpe.root();
    let nodes = cpe.with_state(|s| s.tree.model().iter().count());
    let stored = device["parameter_count"].as_i64().unwrap() as usize;
    assert!(stored + 2 >= nodes && stored <= nodes + 2, "stored {stored} nodes, the device has {nodes}");
    let software = format!("{root}DeviceInfo.SoftwareVersion");
    assert_eq!(h.stored_value(&id, &software).await, cpe.value(&software));
    let params = h.parameters(&id, &format!("{root}DeviceInfo.")).await;
    assert!(params.iter().any(|p| p["path"] == format!("{root}DeviceInfo.") && p["object"] == true));
    let leaf = params.iter().find(|p| p["path"] == software).unwrap();
    assert_eq!(leaf["type"], "xsd:string");
    assert_eq!(leaf["object"], false);

    // The credentials Roost set are the ones the device now holds (and reads back empty).
    let username = cpe.value(&format!("{root}ManagementServer.ConnectionRequestUsername")).unwrap();
    assert_eq!(username, format!("roost-{}", cpe.serial_number()));
    let password = cpe.value(&format!("{root}ManagementServer.ConnectionRequestPassword")).unwrap();
    assert_eq!(password.len(), 24, "a fresh random password: {password:?}");
    assert_eq!(cpe.value(&format!("{root}ManagementServer.PeriodicInformInterval")).as_deref(), Some("3600"));
    assert_eq!(device["adapter"]["owner"], "platform", "{device}");
    assert_eq!(
        h.stored_value(&id, &format!("{root}ManagementServer.ConnectionRequestPassword")).await.as_deref(),
        Some("")
    );

    // A periodic Inform changes nothing and needs no work.
    let periodic = cpe.inform_now(&["2 PERIODIC"]).await.unwrap();
    assert!(periodic.is_ok(), "{:?}", periodic.error);
    assert!(periodic.methods().is_empty(), "nothing to do: {:?}", periodic.methods());

    // And a connection request wakes it.
    let mark = cpe.session_count();
    let (status, outcome) = h.post(&format!("/api/v1/devices/{}/connection-request", encode_id(&id)), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{outcome}");
    assert_eq!(outcome["outcome"], "accepted");
    let woken = cpe.wait_for_session(mark, Duration::from_secs(10), |r| r.has_event("6 CONNECTION REQUEST")).await;
    assert!(woken.is_ok(), "{woken:?}");
    let device = h.device(&id).await;
    assert_eq!(device["connection_request"]["last_outcome"], "accepted");
    fleet.stop().await;
    h.finish().await;
}

on_both_backends! {
    async fn tr098_huawei_bootstraps_and_is_discovered(backend: Backend) {
        bootstraps_and_discovers(backend, DataModelKind::Tr098).await
    }

    async fn tr181_tplink_bootstraps_and_is_discovered(backend: Backend) {
        bootstraps_and_discovers(backend, DataModelKind::Tr181).await
    }
}

on_both_backends! {
    async fn a_periodic_inform_that_changes_nothing_costs_one_statement(backend: Backend) {
        let h = Harness::start_configured(backend, roost::config::CpeAuthMode::Open, quiet_loops).await;
        let fleet = h.fleet(DataModelKind::Tr181, 1, "HOT").await;
        let cpe = fleet.device(0);
        assert!(cpe.inform_now(&[]).await.unwrap().is_ok());
        // The first periodic Inform after discovery compares its parameters one by one.
        assert!(cpe.inform_now(&["2 PERIODIC"]).await.unwrap().is_ok());
        let store = &h.app().store;
        let before = store.statements_executed();
        let report = cpe.inform_now(&["2 PERIODIC"]).await.unwrap();
        assert!(report.is_ok(), "{:?}", report.error);
        assert_eq!(store.statements_executed() - before, 1, "one UPDATE … RETURNING and nothing else");

        // A changed value in the Inform is written (and only then does it cost more).
        let software = "Device.DeviceInfo.SoftwareVersion";
        cpe.set(software, "9.9.9-hot").unwrap();
        assert!(cpe.inform_now(&["2 PERIODIC"]).await.unwrap().is_ok());
        assert_eq!(h.stored_value(&cpe.device_id(), software).await.as_deref(), Some("9.9.9-hot"));
        assert_eq!(h.device(&cpe.device_id()).await["software_version"], "9.9.9-hot");
        let before = store.statements_executed();
        assert!(cpe.inform_now(&["2 PERIODIC"]).await.unwrap().is_ok());
        assert_eq!(store.statements_executed() - before, 1, "and back to one statement");

        // Queued work is noticed by that same statement.
        let tasks = format!("/api/v1/devices/{}/tasks", encode_id(&cpe.device_id()));
        let (_, task) = h.post(&tasks, json!({"name": "getParameterValues", "parameterNames": [software]})).await;
        let report = cpe.inform_now(&["2 PERIODIC"]).await.unwrap();
        assert_eq!(report.methods(), vec!["GetParameterValues"]);
        assert_eq!(h.wait_task(task["id"].as_str().unwrap()).await["status"], "done");
        fleet.stop().await;
        h.finish().await;
    }
}

/// On SQLite the periodic Informs of concurrent sessions are written together
/// (`store::devices::group_commit`): eight sessions whose Informs arrive while the writer waits
/// for the database cost one statement between them, and each device gets its own row back
/// (the tasks queued for two of them are run in those two sessions, and only there).
#[tokio::test]
async fn concurrent_periodic_informs_on_sqlite_are_written_by_one_statement() {
    let h = Harness::start_configured(Backend::Sqlite, roost::config::CpeAuthMode::Open, quiet_loops).await;
    let fleet = h.fleet(DataModelKind::Tr181, 8, "GROUP").await;
    let devices: Vec<_> = (0..8).map(|i| fleet.device(i)).collect();
    for cpe in &devices {
        assert!(cpe.inform_now(&[]).await.unwrap().is_ok());
        assert!(cpe.inform_now(&["2 PERIODIC"]).await.unwrap().is_ok());
    }
    let store = h.app().store.clone();
    let burst = |devices: Vec<roost_sim::DeviceHandle>| async {
        // The writer takes its lock for each statement: held here, the eight Informs queue up.
        let held = store.write_guard().await;
        let sessions: Vec<_> = devices
            .into_iter()
            .map(|cpe| tokio::spawn(async move { cpe.inform_now(&["2 PERIODIC"]).await.unwrap() }))
            .collect();
        // All eight wait for the writer before it may write.
        let writer = store.inform_writer().expect("SQLite has the writer");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while writer.waiting() < 8 {
            assert!(tokio::time::Instant::now() < deadline, "{} of 8 Informs reached the writer", writer.waiting());
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let before = store.statements_executed();
        drop(held);
        let mut reports = Vec::new();
        for session in sessions {
            reports.push(session.await.unwrap());
        }
        (store.statements_executed() - before, reports)
    };
    let informed = |device: serde_json::Value| device["last_inform_at"].as_str().unwrap_or_default().to_owned();
    let mut last = Vec::new();
    for cpe in &devices {
        last.push(informed(h.device(&cpe.device_id()).await));
    }
    let (statements, reports) = burst(devices.clone()).await;
    assert!(reports.iter().all(|r| r.is_ok() && r.methods().is_empty()), "{reports:?}");
    assert_eq!(statements, 1, "eight no-op periodic Informs, one statement");
    for (cpe, last) in devices.iter().zip(&last) {
        assert_ne!(&informed(h.device(&cpe.device_id()).await), last, "{} recorded", cpe.device_id());
    }

    let software = "Device.DeviceInfo.SoftwareVersion";
    for i in [1, 6] {
        let tasks = format!("/api/v1/devices/{}/tasks", encode_id(&devices[i].device_id()));
        let (status, _) = h.post(&tasks, json!({"name": "getParameterValues", "parameterNames": [software]})).await;
        assert_eq!(status, StatusCode::CREATED);
    }
    let (_, reports) = burst(devices.clone()).await;
    for (i, report) in reports.iter().enumerate() {
        let expected: &[&str] = if i == 1 || i == 6 { &["GetParameterValues"] } else { &[] };
        assert_eq!(report.methods(), expected, "device {i}: its own row says whether tasks wait for it");
    }
    fleet.stop().await;
    h.finish().await;
}
