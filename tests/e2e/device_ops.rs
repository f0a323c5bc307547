//! Day-to-day device operations over REST: subscribers and their zero-touch PPPoE, Wi-Fi
//! through the device's adapter, parameters checked against the store, reboots and resets — on
//! the Huawei EG8145V5 (TR-098) and TP-Link XX230v (TR-181) trees.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use roost_tests::on_both_backends;

use roost_sim::DeviceHandle;

use super::*;

/// The Huawei ONT's internet connection (the connected PPP one, not the leftover on 1).
const HUAWEI_PPP: &str = "InternetGatewayDevice.WANDevice.1.WANConnectionDevice.4.WANPPPConnection.1.";
const WLAN: &str = "InternetGatewayDevice.LANDevice.1.WLANConfiguration.";

async fn create_subscriber(h: &Harness, org: &str, username: &str, password: &str) -> String {
    let (status, created) = h
        .post(
            "/api/v1/subscribers",
            json!({"username": username, "name": "Alice Example", "plan": "fiber-300",
                   "pppoe_username": format!("{username}@isp"), "pppoe_password": password, "org": org}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert!(created.get("pppoe_password").is_none(), "the password is never served: {created}");
    assert_eq!(created["pppoe_password_set"], true);
    created["id"].as_str().unwrap().to_owned()
}

/// Polls until the simulated device holds `value` at `path`.
async fn until_value(cpe: &DeviceHandle, path: &str, value: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while cpe.value(path).as_deref() != Some(value) {
        assert!(tokio::time::Instant::now() < deadline, "{path} is {:?}, not {value:?}", cpe.value(path));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn tags(device: &JsonValue) -> Vec<String> {
    device["tags"].as_array().unwrap().iter().map(|t| t.as_str().unwrap().to_owned()).collect()
}

async fn events_of(h: &Harness, kind: &str) -> Vec<JsonValue> {
    let app = h.app();
    let rows =
        roost::store::events::list(&app.store, &roost::store::orgs::Scope::All, Some(kind), None, 100).await.unwrap();
    rows.into_iter().map(|e| serde_json::from_str(&e.payload).unwrap()).collect()
}

/// Claims a pending device into an organization.
async fn claim(h: &Harness, cpe: &DeviceHandle, org: &str) {
    let (status, claimed) =
        h.post("/api/v1/pending-devices/claim", json!({"serials": [cpe.serial_number()], "org": org})).await;
    assert_eq!(status, StatusCode::OK, "{claimed}");
    assert_eq!(claimed["claimed"].as_array().unwrap().len(), 1, "{claimed}");
}

async fn task_count(h: &Harness, id: &str) -> usize {
    let (status, page) = h.get(&format!("/api/v1/devices/{}/tasks", encode_id(id))).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    page["items"].as_array().unwrap().len()
}

on_both_backends! {
    async fn a_preassigned_subscriber_is_provisioned_at_first_inform_and_after_a_factory_reset(backend: Backend) {
        let h = Harness::start(backend).await;
        h.org("isp", None).await;
        let subscriber = create_subscriber(&h, "isp", "alice", "s3cret-pw").await;
        let fleet = h.fleet(DataModelKind::Tr098, 1, "ZTP").await;
        let cpe = fleet.device(0);
        let serial = cpe.serial_number();

        // Before the device ever connected: its serial is expected for the subscriber.
        let (status, expected) =
            h.post(&format!("/api/v1/subscribers/{subscriber}/devices"), json!({"serial": serial})).await;
        assert_eq!(status, StatusCode::CREATED, "{expected}");
        assert_eq!(expected["status"], "expected");

        // Zero touch: the first Inform brings it into the organization, linked, tagged, and
        // its PPPoE credentials set in that very session.
        let report = cpe.inform_now(&[]).await.unwrap();
        assert!(report.is_ok(), "{:?}", report.error);
        assert_eq!(cpe.value(&format!("{HUAWEI_PPP}Username")).as_deref(), Some("alice@isp"));
        assert_eq!(cpe.value(&format!("{HUAWEI_PPP}Password")).as_deref(), Some("s3cret-pw"));
        let id = cpe.device_id();
        let device = h.device(&id).await;
        assert_eq!(device["org"], "isp", "{device}");
        assert!(tags(&device).contains(&"sub:alice".to_owned()), "{device}");
        assert!(tags(&device).contains(&"plan:fiber-300".to_owned()), "{device}");
        let (_, shown) = h.get(&format!("/api/v1/subscribers/{subscriber}")).await;
        assert_eq!(shown["devices"], json!([id]), "{shown}");
        let assigned = events_of(&h, "subscriber.assigned").await;
        assert_eq!(assigned.len(), 1, "{assigned:?}");
        assert_eq!((assigned[0]["device_id"].as_str(), assigned[0]["subscriber"].as_str()), (Some(id.as_str()), Some("alice")));
        // The pushed password is stored sealed, never in clear, and not in the task either.
        let (_, tasks) = h.get(&format!("/api/v1/devices/{}/tasks", encode_id(&id))).await;
        assert!(!tasks.to_string().contains("s3cret-pw"), "{tasks}");
        assert_eq!(tasks["items"][0]["name"], "configurePppoe");
        assert_eq!(tasks["items"][0]["status"], "done", "{tasks}");
        let done = events_of(&h, "task.done").await;
        assert!(done.iter().any(|e| e["name"] == "configurePppoe" && e["device_id"] == id.as_str()), "{done:?}");

        // A factory reset: the device comes back blank with 0 BOOTSTRAP and gets them again.
        let mark = cpe.session_count();
        let (status, reset) = h.post(&format!("/api/v1/devices/{}/factory-reset?wait=10", encode_id(&id)), json!({})).await;
        assert_eq!(status, StatusCode::OK, "{reset}");
        assert_eq!(reset["tasks"][0]["status"], "done", "{reset}");
        cpe.wait_for_session(mark, Duration::from_secs(20), |r| r.has_event("0 BOOTSTRAP")).await.expect("back after the reset");
        until_value(&cpe, &format!("{HUAWEI_PPP}Username"), "alice@isp").await;
        until_value(&cpe, &format!("{HUAWEI_PPP}Password"), "s3cret-pw").await;
        assert_eq!(events_of(&h, "device.bootstrapped").await.len(), 1);

        // A new password is pushed to the device at once.
        let (status, changed) =
            h.request(Method::PATCH, &format!("/api/v1/subscribers/{subscriber}"), Some(json!({"pppoe_password": "n3w-secret"}))).await;
        assert_eq!(status, StatusCode::OK, "{changed}");
        assert_eq!(changed["tasks"].as_array().unwrap().len(), 1, "{changed}");
        until_value(&cpe, &format!("{HUAWEI_PPP}Password"), "n3w-secret").await;

        // A new plan retags; unassigning drops the link and its tags.
        let (status, _) = h.request(Method::PATCH, &format!("/api/v1/subscribers/{subscriber}"), Some(json!({"plan": "fiber-1000"}))).await;
        assert_eq!(status, StatusCode::OK);
        let device = h.device(&id).await;
        assert!(tags(&device).contains(&"plan:fiber-1000".to_owned()) && !tags(&device).contains(&"plan:fiber-300".to_owned()), "{device}");
        let (status, gone) = h.post(&format!("/api/v1/devices/{}/unassign-subscriber", encode_id(&id)), json!({})).await;
        assert_eq!((status, gone["unassigned"].as_bool()), (StatusCode::OK, Some(true)), "{gone}");
        let device = h.device(&id).await;
        assert!(!tags(&device).iter().any(|t| t.starts_with("sub:") || t.starts_with("plan:")), "{device}");
        let (_, shown) = h.get(&format!("/api/v1/subscribers/{subscriber}")).await;
        assert_eq!(shown["devices"], json!([]), "{shown}");
        fleet.stop().await;
        h.finish().await;
    }

    async fn assigning_a_subscriber_pushes_pppoe_to_a_tr181_router_now(backend: Backend) {
        let h = Harness::start(backend).await;
        let fleet = h.fleet(DataModelKind::Tr181, 1, "ASSIGN").await;
        let cpe = fleet.device(0);
        assert!(cpe.inform_now(&[]).await.unwrap().is_ok());
        let id = cpe.device_id();
        let subscriber = create_subscriber(&h, "platform", "bob", "bobs-secret").await;
        // A pending device has no organization, so no subscriber of one.
        let (status, refused) =
            h.post(&format!("/api/v1/devices/{}/assign-subscriber", encode_id(&id)), json!({"subscriber": "bob"})).await;
        assert_eq!((status, refused["code"].as_str()), (StatusCode::CONFLICT, Some("invalid_subscriber")), "{refused}");
        claim(&h, &cpe, "platform").await;
        // Unknown subscribers and bad bodies are refused, and nothing is queued.
        let before = task_count(&h, &id).await;
        let (status, refused) =
            h.post(&format!("/api/v1/devices/{}/assign-subscriber", encode_id(&id)), json!({"subscriber": "nobody"})).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{refused}");
        assert_eq!(refused["code"], "invalid_subscriber");
        assert_eq!(task_count(&h, &id).await, before);

        let (status, assigned) = h
            .post(&format!("/api/v1/devices/{}/assign-subscriber?wait=10", encode_id(&id)), json!({"subscriber": "bob"}))
            .await;
        assert_eq!(status, StatusCode::OK, "{assigned}");
        let task = &assigned["tasks"][0];
        assert_eq!((task["name"].as_str(), task["status"].as_str()), (Some("configurePppoe"), Some("done")), "{assigned}");
        assert_eq!(task["connection_request"]["outcome"], "accepted");
        // The TP-Link adapter writes the PPPoE interface carrying the default route (3), not the
        // unused one.
        assert_eq!(cpe.value("Device.PPP.Interface.3.Username").as_deref(), Some("bob@isp"));
        assert_eq!(cpe.value("Device.PPP.Interface.3.Password").as_deref(), Some("bobs-secret"));
        // By id as well as by username; the same subscriber again changes nothing but re-pushes.
        let (status, again) = h
            .post(&format!("/api/v1/devices/{}/assign-subscriber", encode_id(&id)), json!({"subscriber": subscriber}))
            .await;
        assert!(status.is_success(), "{again}");
        let device = h.device(&id).await;
        assert_eq!(tags(&device).iter().filter(|t| t.starts_with("sub:")).count(), 1, "{device}");
        // Deleting the subscriber unlinks its device.
        let (status, _) = h.request(Method::DELETE, &format!("/api/v1/subscribers/{subscriber}"), None).await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        assert!(!tags(&h.device(&id).await).iter().any(|t| t.starts_with("sub:")));
        fleet.stop().await;
        h.finish().await;
    }

    async fn preassigning_the_serial_of_a_pending_device_claims_and_provisions_it(backend: Backend) {
        let h = Harness::start(backend).await;
        h.org("isp", None).await;
        // The ONT was plugged in before the order reached the CRM: it waits, pending.
        let fleet = h.fleet(DataModelKind::Tr181, 1, "EARLY").await;
        let cpe = fleet.device(0);
        assert!(cpe.inform_now(&[]).await.unwrap().is_ok());
        let id = cpe.device_id();
        assert!(h.device(&id).await["org"].is_null());
        let subscriber = create_subscriber(&h, "isp", "carol", "carols-pw").await;

        let (status, linked) =
            h.post(&format!("/api/v1/subscribers/{subscriber}/devices"), json!({"serial": cpe.serial_number()})).await;
        assert_eq!(status, StatusCode::OK, "{linked}");
        assert_eq!((linked["status"].as_str(), linked["device_id"].as_str()), (Some("linked"), Some(id.as_str())), "{linked}");
        assert_eq!(linked["task"]["name"], "configurePppoe", "{linked}");
        // Woken at once, it takes the subscriber's credentials.
        until_value(&cpe, "Device.PPP.Interface.3.Username", "carol@isp").await;
        until_value(&cpe, "Device.PPP.Interface.3.Password", "carols-pw").await;
        let device = h.device(&id).await;
        assert_eq!(device["org"], "isp", "{device}");
        assert!(tags(&device).contains(&"sub:carol".to_owned()), "{device}");
        let claimed = events_of(&h, "device.claimed").await;
        assert_eq!(claimed.len(), 1, "{claimed:?}");
        assert_eq!(claimed[0]["device_id"], id.as_str());

        // Two makers' boxes with one serial, both pending: which is the subscriber's is not
        // guessed; nothing is claimed.
        let ont = h.fleet(DataModelKind::Tr098, 1, "TWIN").await;
        let router = h.fleet(DataModelKind::Tr181, 1, "TWIN").await;
        for twin in [ont.device(0), router.device(0)] {
            assert!(twin.inform_now(&[]).await.unwrap().is_ok());
        }
        let (status, refused) = h
            .post(&format!("/api/v1/subscribers/{subscriber}/devices"), json!({"serial": ont.device(0).serial_number()}))
            .await;
        assert_eq!(status, StatusCode::CONFLICT, "{refused}");
        assert!(refused["detail"].as_str().unwrap().starts_with("serial: 2 pending devices"), "{refused}");
        for twin in [ont.device(0), router.device(0)] {
            assert!(h.device(&twin.device_id()).await["org"].is_null(), "still pending");
        }
        ont.stop().await;
        router.stop().await;
        fleet.stop().await;
        h.finish().await;
    }

    async fn wifi_goes_through_each_devices_adapter(backend: Backend) {
        let h = Harness::start(backend).await;
        let huawei = h.fleet(DataModelKind::Tr098, 1, "WIFI").await;
        let tplink = h.fleet(DataModelKind::Tr181, 1, "WIFI").await;
        for cpe in [huawei.device(0), tplink.device(0)] {
            assert!(cpe.inform_now(&[]).await.unwrap().is_ok());
        }
        let body = json!({"band": "5", "ssid": "Roost-5G", "passphrase": "correct horse battery"});
        for cpe in [huawei.device(0), tplink.device(0)] {
            let url = format!("/api/v1/devices/{}/wifi?wait=10", encode_id(&cpe.device_id()));
            let (status, done) = h.post(&url, body.clone()).await;
            assert_eq!(status, StatusCode::OK, "{done}");
            assert_eq!(done["tasks"][0]["status"], "done", "{done}");
            // The passphrase is not kept in the task as shown.
            assert_eq!(done["tasks"][0]["request"]["passphrase"], "********", "{done}");
        }
        // Huawei: the 5 GHz network is WLANConfiguration.5, its key in PreSharedKey.1.PreSharedKey.
        let cpe = huawei.device(0);
        assert_eq!(cpe.value(&format!("{WLAN}5.SSID")).as_deref(), Some("Roost-5G"));
        assert_eq!(cpe.value(&format!("{WLAN}5.PreSharedKey.1.PreSharedKey")).as_deref(), Some("correct horse battery"));
        assert_ne!(cpe.value(&format!("{WLAN}1.SSID")).as_deref(), Some("Roost-5G"), "2.4 GHz left alone");
        // TP-Link: SSID.3 and AccessPoint.3 are its 5 GHz primary network.
        let cpe = tplink.device(0);
        assert_eq!(cpe.value("Device.WiFi.SSID.3.SSID").as_deref(), Some("Roost-5G"));
        assert_eq!(cpe.value("Device.WiFi.AccessPoint.3.Security.KeyPassphrase").as_deref(), Some("correct horse battery"));
        assert_ne!(cpe.value("Device.WiFi.SSID.1.SSID").as_deref(), Some("Roost-5G"));

        // Bad input: a 4xx naming the field, nothing queued.
        let id = cpe.device_id();
        let before = task_count(&h, &id).await;
        // A refusal of one member names it in `field`, for a form to show it there.
        for (bad, says, field) in [
            (json!({"passphrase": "1234567"}), "passphrase", Some("passphrase")),
            (json!({"ssid": "x".repeat(33)}), "ssid", Some("ssid")),
            (json!({"band": "7", "ssid": "x"}), "band", Some("band")),
            (json!({"band": "5"}), "ssid", None),
        ] {
            let (status, problem) = h.post(&format!("/api/v1/devices/{}/wifi", encode_id(&id)), bad.clone()).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {problem}");
            assert_eq!(problem["code"], "invalid_task");
            assert!(problem["detail"].as_str().unwrap().contains(says), "{bad}: {problem}");
            assert_eq!(problem["field"].as_str(), field, "{bad}: {problem}");
        }
        assert_eq!(task_count(&h, &id).await, before, "nothing queued");
        huawei.stop().await;
        tplink.stop().await;
        h.finish().await;
    }

    async fn parameters_are_checked_against_the_store_and_roles_hold(backend: Backend) {
        let h = Harness::start(backend).await;
        let fleet = h.fleet(DataModelKind::Tr098, 1, "PARAM").await;
        let cpe = fleet.device(0);
        assert!(cpe.inform_now(&[]).await.unwrap().is_ok());
        claim(&h, &cpe, "platform").await;
        let id = cpe.device_id();
        let url = |action: &str| format!("/api/v1/devices/{}/{action}", encode_id(&id));
        let interval = "InternetGatewayDevice.ManagementServer.PeriodicInformInterval";

        let (status, done) = h.post(&format!("{}?wait=10", url("parameters")), json!({"values": {interval: 1800}})).await;
        assert_eq!(status, StatusCode::OK, "{done}");
        assert_eq!(cpe.value(interval).as_deref(), Some("1800"));
        let before = task_count(&h, &id).await;
        for (bad, says) in [
            (json!({"values": {interval: "soon"}}), "not a valid xsd:unsignedInt"),
            (json!({"values": {"InternetGatewayDevice.DeviceInfo.SerialNumber": "X"}}), "read-only"),
            (json!({"values": {"InternetGatewayDevice.NoSuch.Thing": "1"}}), "no such parameter"),
            (json!({"values": {}}), "at least one"),
        ] {
            let (status, problem) = h.post(&url("parameters"), bad.clone()).await;
            assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}: {problem}");
            assert_eq!(problem["code"], "invalid_parameter");
            assert!(problem["detail"].as_str().unwrap().contains(says), "{bad}: {problem}");
        }
        assert_eq!(task_count(&h, &id).await, before, "nothing queued");

        // A refresh of a subtree, and a reboot the device carries out.
        let (status, refreshed) =
            h.post(&format!("{}?wait=10", url("refresh")), json!({"path": "InternetGatewayDevice.DeviceInfo."})).await;
        assert_eq!((status, refreshed["tasks"][0]["name"].as_str()), (StatusCode::OK, Some("refreshObject")), "{refreshed}");
        let mark = cpe.session_count();
        let (status, rebooted) = h.post(&format!("{}?wait=10", url("reboot")), json!({})).await;
        assert_eq!(status, StatusCode::OK, "{rebooted}");
        cpe.wait_for_session(mark, Duration::from_secs(15), |r| r.has_event("M Reboot")).await.expect("rebooted");

        // Role tiers: basic operates (Wi-Fi, reboot), only advanced writes parameters or links
        // subscribers; read-only does neither.
        let basic = h.user("platform", "basic@example.com", "basic").await;
        let reader = h.user("platform", "reader@example.com", "read-only").await;
        let wifi = json!({"band": "2.4", "ssid": "Desk"});
        let (status, queued) = h.request_as(&basic, Method::POST, &url("wifi"), Some(wifi.clone())).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{queued}");
        let (status, _) = h.request_as(&basic, Method::POST, &url("parameters"), Some(json!({"values": {interval: 60}}))).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        let (status, _) = h.request_as(&basic, Method::POST, &url("assign-subscriber"), Some(json!({"subscriber": "x"}))).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        let (status, _) = h.request_as(&reader, Method::POST, &url("reboot"), None).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        let (status, _) = h.request_as(&reader, Method::POST, "/api/v1/subscribers", Some(json!({"username": "x", "plan": "p", "pppoe_username": "u"}))).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        fleet.stop().await;
        h.finish().await;
    }
}
