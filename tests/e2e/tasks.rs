//! Every task type, run through the REST API against a simulated device woken by connection
//! requests, including the faults real devices return.

use std::time::Duration;

use reqwest::StatusCode;
use roost_tests::on_both_backends;

use super::*;

const WAN: &str = "InternetGatewayDevice.WANDevice.1.WANConnectionDevice.";
const INTERVAL: &str = "InternetGatewayDevice.ManagementServer.PeriodicInformInterval";
const PARAMETER_KEY: &str = "InternetGatewayDevice.ManagementServer.ParameterKey";
const SOFTWARE: &str = "InternetGatewayDevice.DeviceInfo.SoftwareVersion";

async fn bootstrapped(h: &Harness, prefix: &str) -> (Fleet, String) {
    let fleet = h.fleet(DataModelKind::Tr098, 1, prefix).await;
    let report = fleet.device(0).inform_now(&[]).await.unwrap();
    assert!(report.is_ok(), "{:?}", report.error);
    let id = fleet.device(0).device_id();
    (fleet, id)
}

on_both_backends! {
    async fn parameter_and_object_tasks(backend: Backend) {
        let h = Harness::start(backend).await;
        let (fleet, id) = bootstrapped(&h, "TASK").await;
        let cpe = fleet.device(0);

        // getParameterValues
        let task = h.run_task(&id, json!({"name": "getParameterValues", "parameterNames": [SOFTWARE, INTERVAL]})).await;
        assert_eq!(task["status"], "done", "{task}");
        assert_eq!(task["connection_request"]["outcome"], "accepted");
        let values = task["result"]["parameterValues"].as_array().unwrap();
        assert!(values.contains(&json!([SOFTWARE, cpe.value(SOFTWARE).unwrap(), "xsd:string"])), "{task}");

        // setParameterValues: applied on the device, stored, ParameterKey moves to the task's key.
        let task = h.run_task(&id, json!({"name": "setParameterValues", "parameterValues": [[INTERVAL, "600"]]})).await;
        assert_eq!(task["status"], "done", "{task}");
        assert_eq!(cpe.value(INTERVAL).as_deref(), Some("600"));
        assert_eq!(cpe.get(INTERVAL).map(|(_, t)| t.as_str().to_owned()).as_deref(), Some("xsd:unsignedInt"));
        assert_eq!(cpe.value(PARAMETER_KEY), Some(format!("roost-{}", task["id"].as_str().unwrap())));
        assert_eq!(h.stored_value(&id, INTERVAL).await.as_deref(), Some("600"));
        // Stored with the type it was sent with (the stored one), not as a string.
        let stored = h.parameters(&id, INTERVAL).await.into_iter().find(|p| p["path"] == INTERVAL).unwrap();
        assert_eq!(stored["type"], "xsd:unsignedInt", "{stored}");

        // setParameterValues that the device refuses: all-or-nothing 9003 with per-parameter detail.
        let task = h
            .run_task(&id, json!({"name": "setParameterValues", "parameterValues": [
                [INTERVAL, "900"], [SOFTWARE, "hacked"], ["InternetGatewayDevice.NoSuchThing.X", "1"]
            ]}))
            .await;
        assert_eq!(task["status"], "fault", "{task}");
        assert_eq!(task["fault"]["code"], "cwmp.9003");
        // Integrators hear of it: task.fault, in the transaction of the fault.
        let app = h.app();
        let faulted = roost::store::events::list(&app.store, &roost::store::orgs::Scope::All, Some("task.fault"), None, 10)
            .await
            .unwrap();
        assert!(
            faulted.iter().any(|e| e.payload.contains(task["id"].as_str().unwrap()) && e.payload.contains("cwmp.9003")),
            "{faulted:?}"
        );
        let details = task["fault"]["detail"]["setParameterValuesFaults"].as_array().unwrap();
        let codes: Vec<(String, u64)> = details
            .iter()
            .map(|d| (d["parameterName"].as_str().unwrap().to_owned(), d["code"].as_u64().unwrap()))
            .collect();
        assert!(codes.contains(&(SOFTWARE.to_owned(), 9008)), "{codes:?}");
        assert!(codes.contains(&("InternetGatewayDevice.NoSuchThing.X".to_owned(), 9005)), "{codes:?}");
        assert_eq!(cpe.value(INTERVAL).as_deref(), Some("600"), "nothing applied");
        let (_, faults) = h.get(&format!("/api/v1/devices/{}/faults", encode_id(&id))).await;
        let fault = faults["items"].as_array().unwrap().iter().find(|f| f["task_id"] == task["id"]).cloned();
        assert_eq!(fault.map(|f| f["code"].clone()), Some(json!("cwmp.9003")), "{faults}");

        // A faulted task can be retried (and faults again: the device has not changed), or deleted.
        let task_id = task["id"].as_str().unwrap().to_owned();
        let (status, retried) = h.post(&format!("/api/v1/tasks/{task_id}/retry"), json!({})).await;
        assert_eq!(status, StatusCode::OK, "{retried}");
        assert_eq!(retried["status"], "pending");
        let (status, _) = h.request(reqwest::Method::DELETE, &format!("/api/v1/tasks/{task_id}"), None).await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        let (status, _) = h.get(&format!("/api/v1/tasks/{task_id}")).await;
        assert_eq!(status, StatusCode::NOT_FOUND);

        // addObject: a new instance, numbered after the existing ones, discovered into the store.
        let task = h.run_task(&id, json!({"name": "addObject", "objectName": WAN})).await;
        assert_eq!(task["status"], "done", "{task}");
        let instance = task["result"]["instanceNumber"].as_u64().unwrap();
        assert_eq!(instance, 6, "the real tree has instances 1, 2, 4 and 5");
        let new_object = format!("{WAN}{instance}.");
        assert!(cpe.exists(&new_object));
        let on_device: Vec<String> = cpe.with_state(|s| s.tree.walk(&new_object).map(|(p, _)| p.to_owned()).collect());
        let stored: Vec<String> =
            h.parameters(&id, &new_object).await.iter().map(|p| p["path"].as_str().unwrap().to_owned()).collect();
        assert!(on_device.len() > 1, "{on_device:?}");
        assert_eq!(stored, on_device, "the new instance's subtree is stored as the device has it");

        // deleteObject: gone on the device and from the store.
        let task = h.run_task(&id, json!({"name": "deleteObject", "objectName": new_object})).await;
        assert_eq!(task["status"], "done", "{task}");
        assert!(!cpe.exists(&new_object));
        assert!(h.parameters(&id, &new_object).await.is_empty());

        // A deleted instance number is not reused.
        let task = h.run_task(&id, json!({"name": "addObject", "objectName": WAN})).await;
        assert_eq!(task["result"]["instanceNumber"], 7, "{task}");

        // deleteObject of something that does not exist: the device's 9005.
        let task = h.run_task(&id, json!({"name": "deleteObject", "objectName": format!("{WAN}99.")})).await;
        assert_eq!(task["status"], "fault", "{task}");
        assert_eq!(task["fault"]["code"], "cwmp.9005");

        // refreshObject: a value changed on the device behind the ACS's back is read again.
        cpe.set(SOFTWARE, "V9.9.9").unwrap();
        let task = h.run_task(&id, json!({"name": "refreshObject", "objectName": "InternetGatewayDevice.DeviceInfo."})).await;
        assert_eq!(task["status"], "done", "{task}");
        assert_eq!(h.stored_value(&id, SOFTWARE).await.as_deref(), Some("V9.9.9"));

        // getParameterValues of an unknown name: 9005 from the device.
        let task = h.run_task(&id, json!({"name": "getParameterValues", "parameterNames": ["InternetGatewayDevice.Nope"]})).await;
        assert_eq!(task["status"], "fault", "{task}");
        assert_eq!(task["fault"]["code"], "cwmp.9005");

        // Attributes.
        let task = h
            .run_task(&id, json!({"name": "setParameterAttributes", "parameterAttributes": [{"name": SOFTWARE, "notification": 2}]}))
            .await;
        assert_eq!(task["status"], "done", "{task}");
        let task = h.run_task(&id, json!({"name": "getParameterAttributes", "parameterNames": [SOFTWARE]})).await;
        assert_eq!(task["status"], "done", "{task}");
        assert_eq!(task["result"]["parameterAttributes"][0]["notification"], 2, "{task}");

        // Secrets: the device gets the password, Roost keeps it only sealed, the API shows none.
        let ppp_password = format!("{WAN}1.WANPPPConnection.1.Password");
        let task = h
            .run_task(&id, json!({"name": "setParameterValues", "parameterValues": [[ppp_password.clone(), "hunter2-secret"]]}))
            .await;
        assert_eq!(task["status"], "done", "{task}");
        assert_eq!(cpe.value(&ppp_password).as_deref(), Some("hunter2-secret"));
        assert_eq!(task["request"]["parameterValues"][0][1], "********", "{task}");
        let stored = h.parameters(&id, &ppp_password).await;
        assert_eq!(stored[0]["value"], "");
        assert_eq!((stored[0]["secret"].clone(), stored[0]["remembered"].clone()), (json!(true), json!(true)));
        let store = &h.app().store;
        let row = roost::store::tasks::by_id(store, task["id"].as_str().unwrap().parse().unwrap()).await.unwrap().unwrap();
        assert!(!row.body.contains("hunter2"), "no plaintext in the task row: {}", row.body);
        let device_pk = roost::store::devices::by_device_id(store, &id).await.unwrap().unwrap().id;
        let sealed = roost::store::parameters::remembered_secret(store, device_pk, &ppp_password).await.unwrap().unwrap();
        assert_eq!(h.app().secrets.open_string(&sealed).unwrap(), "hunter2-secret");

        // The device's task list shows them in order.
        let (_, list) = h.get(&format!("/api/v1/devices/{}/tasks?limit=3", encode_id(&id))).await;
        assert_eq!(list["items"].as_array().unwrap().len(), 3);
        assert!(list["next_cursor"].is_string());
        fleet.stop().await;
        h.finish().await;
    }

    async fn reboot_factory_reset_and_schedule_inform(backend: Backend) {
        let h = Harness::start(backend).await;
        let (fleet, id) = bootstrapped(&h, "BOOT").await;
        let cpe = fleet.device(0);

        let mark = cpe.session_count();
        let task = h.run_task(&id, json!({"name": "reboot"})).await;
        assert_eq!(task["status"], "done", "{task}");
        let after = cpe
            .wait_for_session(mark, Duration::from_secs(15), |r| r.has_event("M Reboot"))
            .await
            .expect("the device comes back after its reboot");
        assert!(after.has_event("1 BOOT"));
        assert_eq!(after.command_key("M Reboot"), Some(format!("roost-{}", task["id"].as_str().unwrap()).as_str()));
        let device = h.device(&id).await;
        assert!(device["last_boot_at"].as_str() > device["registered_at"].as_str());

        let mark = cpe.session_count();
        let task = h.run_task(&id, json!({"name": "scheduleInform", "delaySeconds": 1})).await;
        assert_eq!(task["status"], "done", "{task}");
        cpe.wait_for_session(mark, Duration::from_secs(15), |r| r.has_event("3 SCHEDULED")).await.unwrap();

        // Factory reset: the device forgets everything, comes back with 0 BOOTSTRAP, and Roost
        // gives it new connection-request credentials and rediscovers it.
        let old_password = cpe.value("InternetGatewayDevice.ManagementServer.ConnectionRequestPassword");
        let mark = cpe.session_count();
        let task = h.run_task(&id, json!({"name": "factoryReset"})).await;
        assert_eq!(task["status"], "done", "{task}");
        let back = cpe
            .wait_for_session(mark, Duration::from_secs(15), |r| r.has_event("0 BOOTSTRAP"))
            .await
            .expect("bootstrap after factory reset");
        assert!(back.methods().contains(&"GetParameterNames"), "{:?}", back.methods());
        let new_password = cpe.value("InternetGatewayDevice.ManagementServer.ConnectionRequestPassword");
        assert_ne!(new_password, old_password, "new credentials at every bootstrap");
        let username = cpe.value("InternetGatewayDevice.ManagementServer.ConnectionRequestUsername");
        assert!(username.unwrap_or_default().starts_with("roost-"));
        // And it can still be woken with the new credentials.
        let task = h.run_task(&id, json!({"name": "getParameterValues", "parameterNames": [SOFTWARE]})).await;
        assert_eq!(task["status"], "done", "{task}");
        fleet.stop().await;
        h.finish().await;
    }

    async fn download_and_upload_complete_with_transfer_complete(backend: Backend) {
        let h = Harness::start(backend).await;
        let files = FileServer::start().await;
        let (fleet, id) = bootstrapped(&h, "XFER").await;
        let cpe = fleet.device(0);

        let url = files.put_file("V5R021C00S100.bin", &[7u8; 4096]);
        let mark = cpe.session_count();
        let task = h
            .run_task(&id, json!({"name": "download", "fileType": "1 Firmware Upgrade Image", "url": url, "fileSize": 4096}))
            .await;
        let task_id = task["id"].as_str().unwrap().to_owned();
        let done = if task["status"] == "pending" {
            assert_eq!(task["stage"], "transferring", "{task}");
            cpe.wait_for_session(mark, Duration::from_secs(20), |r| r.has_event("7 TRANSFER COMPLETE")).await.unwrap();
            h.wait_task(&task_id).await
        } else {
            task
        };
        assert_eq!(done["status"], "done", "{done}");
        assert!(done["result"]["completeTime"].is_string(), "{done}");
        assert_eq!(cpe.value(SOFTWARE).as_deref(), Some("V5R021C00S100"));

        // A download the device cannot fetch: its TransferComplete carries 9010.
        let task = h
            .run_task(&id, json!({"name": "download", "url": files.url("/files/missing.bin")}))
            .await;
        let failed = h.wait_task(task["id"].as_str().unwrap()).await;
        assert_eq!(failed["status"], "fault", "{failed}");
        assert_eq!(failed["fault"]["code"], "cwmp.9010");

        let task = h
            .run_task(&id, json!({"name": "upload", "fileType": "1 Vendor Configuration File", "url": files.url("/uploads/config.xml")}))
            .await;
        let uploaded = h.wait_task(task["id"].as_str().unwrap()).await;
        assert_eq!(uploaded["status"], "done", "{uploaded}");
        assert!(files.uploaded("config.xml").is_some_and(|b| !b.is_empty()));
        fleet.stop().await;
        h.finish().await;
    }
}
