//! Durability: tasks queued before a restart run after it, in order; expired tasks fault.

use std::time::Duration;

use reqwest::StatusCode;
use roost_tests::on_both_backends;

use super::*;

const INTERVAL: &str = "InternetGatewayDevice.ManagementServer.PeriodicInformInterval";
const SOFTWARE: &str = "InternetGatewayDevice.DeviceInfo.SoftwareVersion";

on_both_backends! {
    async fn tasks_survive_a_restart_and_run_in_order(backend: Backend) {
        let mut h = Harness::start(backend).await;
        let fleet = h.fleet(DataModelKind::Tr098, 1, "DUR").await;
        let cpe = fleet.device(0);
        assert!(cpe.inform_now(&[]).await.unwrap().is_ok());
        let tasks = format!("/api/v1/devices/{}/tasks", encode_id(&cpe.device_id()));
        let (status, first) = h.post(&tasks, json!({"name": "setParameterValues", "parameterValues": [[INTERVAL, "1234", "xsd:unsignedInt"]]})).await;
        assert_eq!(status, StatusCode::CREATED, "{first}");
        assert_eq!(first["status"], "pending");
        let (_, second) = h.post(&tasks, json!({"name": "getParameterValues", "parameterNames": [INTERVAL]})).await;
        let (_, third) = h.post(&tasks, json!({"name": "reboot"})).await;

        h.restart().await;

        let report = cpe.inform_now(&["2 PERIODIC"]).await.unwrap();
        assert!(report.is_ok(), "{:?}", report.error);
        assert_eq!(report.methods(), vec!["SetParameterValues", "GetParameterValues", "Reboot"], "queued order");
        for task in [&first, &second, &third] {
            let task = h.wait_task(task["id"].as_str().unwrap()).await;
            assert_eq!(task["status"], "done", "{task}");
        }
        let (_, second) = h.get(&format!("/api/v1/tasks/{}", second["id"].as_str().unwrap())).await;
        assert_eq!(second["result"]["parameterValues"][0][1], "1234", "the read after the write sees it");
        // Tokens survive the restart too (the signing key is in the database).
        let (status, _) = h.get("/api/v1/devices").await;
        assert_eq!(status, StatusCode::OK);
        fleet.stop().await;
        h.finish().await;
    }

    async fn expired_tasks_fault_instead_of_running(backend: Backend) {
        let h = Harness::start(backend).await;
        let fleet = h.fleet(DataModelKind::Tr098, 1, "EXP").await;
        let cpe = fleet.device(0);
        assert!(cpe.inform_now(&[]).await.unwrap().is_ok());
        let tasks = format!("/api/v1/devices/{}/tasks", encode_id(&cpe.device_id()));
        let (_, task) = h.post(&tasks, json!({"name": "getParameterValues", "parameterNames": [SOFTWARE], "expiry": 1})).await;
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let report = cpe.inform_now(&["2 PERIODIC"]).await.unwrap();
        assert!(report.methods().is_empty(), "{:?}", report.methods());
        let (_, task) = h.get(&format!("/api/v1/tasks/{}", task["id"].as_str().unwrap())).await;
        assert_eq!(task["status"], "fault");
        assert_eq!(task["fault"]["code"], "task.expired");
        fleet.stop().await;
        h.finish().await;
    }
}

/// A replica draining for a stop is not ready (a load balancer sends it nothing new) while its
/// sessions in flight finish, and is alive all along.
#[tokio::test]
async fn a_draining_server_is_not_ready_while_its_sessions_finish() {
    let data = tempfile::tempdir().unwrap();
    let mut config = roost::config::Config::for_loopback(data.path().to_owned(), None);
    config.cwmp.auth = roost::config::CpeAuthMode::Open;
    let server = roost::app::Server::start(config).await.unwrap();
    let (cwmp, http) = (format!("http://{}/", server.cwmp_addr), server.http_addr);
    let probe =
        |path: &'static str| async move { reqwest::get(format!("http://{http}{path}")).await.unwrap().status() };
    assert_eq!(probe("/readyz").await, StatusCode::OK);
    // A session in flight: the Inform answered, the CPE's empty POST not sent yet.
    let inform = capture_bodies("genieacs-sim_vs-stub.wire.txt", "CPE->ACS").remove(0);
    let mut cpe = RawCpe::connect(&cwmp).await;
    assert_eq!(cpe.post("/", &inform, &[("Content-Type", "text/xml")], false).await.status, 200);
    let stopping = tokio::spawn(server.shutdown());
    let mut draining = false;
    for _ in 0..50 {
        if probe("/readyz").await == StatusCode::SERVICE_UNAVAILABLE {
            draining = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(draining, "a draining server says it is not ready");
    assert_eq!(probe("/healthz").await, StatusCode::OK, "and is alive");
    cpe.end_session("/").await;
    stopping.await.unwrap().unwrap();
}
