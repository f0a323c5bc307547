//! Faults over REST: a fault that repeats every session is one row with its count and first and
//! last time; the fleet's faults filtered by kind, code, device, organization and time, paged;
//! clearing one, and retrying a task's (its task queued again) and a device's (a new session).

use reqwest::StatusCode;
use roost_tests::on_both_backends;

use super::plugins::{component, upload};
use super::*;

async fn faults(h: &Harness, query: &str) -> Vec<JsonValue> {
    let (status, page) = h.get(&format!("/api/v1/faults{query}")).await;
    assert_eq!(status, StatusCode::OK, "{query}: {page}");
    page["items"].as_array().unwrap().clone()
}

on_both_backends! {
    async fn a_repeated_fault_is_one_row_and_faults_are_filtered_cleared_and_retried(backend: Backend) {
        let h = Harness::start(backend).await;
        let fleet = h.fleet(DataModelKind::Tr098, 2, "FAULTS").await;
        let cpe = fleet.device(0);
        let other = fleet.device(1);
        for device in [&cpe, &other] {
            assert!(device.inform_now(&[]).await.unwrap().is_ok());
        }
        let id = cpe.device_id();
        let (status, plugin) = upload(&h, &h.token, "name=hostile&version=1.0.0", component("hostile")).await;
        assert_eq!(status, StatusCode::CREATED, "{plugin}");
        let (status, preset) = h
            .put("/api/v1/presets/crash", json!({"events": ["2 PERIODIC"], "provision": "hostile", "args": {"mode": "trap"}}))
            .await;
        assert!(status.is_success(), "{preset}");

        // The same trap, three sessions: one fault, three occurrences.
        for _ in 0..3 {
            assert!(cpe.inform_now(&["2 PERIODIC"]).await.unwrap().is_ok());
        }
        let mine = faults(&h, &format!("?device={}", encode_id(&id))).await;
        assert_eq!(mine.len(), 1, "{mine:?}");
        let trap = &mine[0];
        assert_eq!(trap["code"], "plugin.trap");
        assert_eq!(trap["kind"], "plugin");
        assert_eq!(trap["channel"], "preset:crash");
        assert_eq!(trap["occurrences"], 3, "{trap}");
        assert!(trap["created_at"].as_str() < trap["last_seen_at"].as_str(), "{trap}");
        let (_, of_device) = h.get(&format!("/api/v1/devices/{}/faults", encode_id(&id))).await;
        assert_eq!(of_device["items"].as_array().unwrap().len(), 1, "{of_device}");
        let response = h.http.delete(h.url("/api/v1/presets/crash")).bearer_auth(&h.token).send().await.unwrap();
        assert!(response.status().is_success());

        // A task the device refuses: a CPE fault, of its own.
        let (status, task) = h
            .post(
                &format!("/api/v1/devices/{}/tasks", encode_id(&id)),
                json!({"name": "getParameterValues", "parameterNames": ["InternetGatewayDevice.NoSuchThing."]}),
            )
            .await;
        assert!(status.is_success(), "{task}");
        let task_id = task["id"].as_str().unwrap().to_owned();
        assert!(cpe.inform_now(&["6 CONNECTION REQUEST"]).await.unwrap().is_ok());
        let (_, task) = h.get(&format!("/api/v1/tasks/{task_id}")).await;
        assert_eq!(task["status"], "fault", "{task}");

        // Filters.
        let all = faults(&h, "").await;
        assert_eq!(all.len(), 2, "{all:?}");
        assert_eq!(all[0]["task_id"], task_id.as_str(), "the most recently seen first: {all:?}");
        let cpe_faults = faults(&h, "?kind=cpe").await;
        assert_eq!(cpe_faults.len(), 1, "{cpe_faults:?}");
        assert!(cpe_faults[0]["code"].as_str().unwrap().starts_with("cwmp."));
        assert_eq!(faults(&h, "?kind=plugin").await.len(), 1);
        assert!(faults(&h, "?kind=provisioning").await.is_empty());
        assert_eq!(faults(&h, "?code=plugin.trap").await.len(), 1);
        assert!(faults(&h, &format!("?device={}", encode_id(&other.device_id()))).await.is_empty());
        assert!(faults(&h, "?since=2999-01-01T00:00:00Z").await.is_empty());
        assert_eq!(faults(&h, "?until=2999-01-01T00:00:00Z").await.len(), 2);
        let (status, first) = h.get("/api/v1/faults?limit=1").await;
        assert_eq!(status, StatusCode::OK);
        let cursor = first["next_cursor"].as_str().expect("a next page");
        let (_, second) = h.get(&format!("/api/v1/faults?limit=1&cursor={}", encode_id(cursor))).await;
        assert_eq!(second["items"][0]["id"], trap["id"], "{second}");
        for bad in ["?kind=cosmic", "?since=yesterday", "?cursor=nonsense"] {
            let (status, problem) = h.get(&format!("/api/v1/faults{bad}")).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {problem}");
        }
        let (status, _) = h.get("/api/v1/faults?device=NO-SUCH-DEVICE").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let (_, board) = h.get("/api/v1/dashboard").await;
        assert_eq!(board["faults_last_24h"]["total"], 2, "a repeated fault once: {board}");

        // Retrying the task's fault queues the task again, and the device runs it.
        let task_fault = all[0]["id"].as_str().unwrap();
        let (status, retried) = h.post(&format!("/api/v1/faults/{task_fault}/retry"), json!({})).await;
        assert_eq!(status, StatusCode::OK, "{retried}");
        assert_eq!(retried["task_id"], task_id.as_str());
        assert!(retried["connection_request"]["outcome"].is_string(), "{retried}");
        let (_, task) = h.get(&format!("/api/v1/tasks/{task_id}")).await;
        assert!(task["status"] == "pending" || task["status"] == "fault", "{task}");
        assert!(faults(&h, "?kind=cpe").await.len() <= 1);

        // Retrying a device's fault clears it and wakes the device.
        let trap_id = trap["id"].as_str().unwrap();
        let (status, retried) = h.post(&format!("/api/v1/faults/{trap_id}/retry"), json!({})).await;
        assert_eq!(status, StatusCode::OK, "{retried}");
        assert!(retried.get("task_id").is_none(), "{retried}");
        assert!(faults(&h, "?kind=plugin").await.is_empty());
        let (status, _) = h.post(&format!("/api/v1/faults/{trap_id}/retry"), json!({})).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "gone");

        // Cleared, a fault that comes back starts counting again.
        h.put("/api/v1/presets/crash", json!({"events": ["2 PERIODIC"], "provision": "hostile", "args": {"mode": "trap"}})).await;
        assert!(cpe.inform_now(&["2 PERIODIC"]).await.unwrap().is_ok());
        let back = faults(&h, "?kind=plugin").await;
        assert_eq!(back.len(), 1);
        assert_eq!(back[0]["occurrences"], 1, "{back:?}");
        let back_id = back[0]["id"].as_str().unwrap();
        let response = h.http.delete(h.url(&format!("/api/v1/faults/{back_id}"))).bearer_auth(&h.token).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::NO_CONTENT);
        assert!(faults(&h, "?kind=plugin").await.is_empty());
        fleet.stop().await;
        h.finish().await;
    }
}
