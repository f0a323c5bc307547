//! Onboarding per tenant: pending devices and claims, pre-registered serials, routing by an
//! organization's own host name, and each device's own CWMP credential.

use reqwest::{Method, StatusCode};
use roost::config::CpeAuthMode;
use roost::store::orgs::Scope;
use roost_tests::on_both_backends;

use super::*;

const XML: (&str, &str) = ("Content-Type", "text/xml");

/// The events of the outbox, as `(type, org id, subject)`.
async fn events(h: &Harness) -> Vec<(String, Option<i64>, String)> {
    roost::store::events::list(&h.app().store, &Scope::All, None, None, 1000)
        .await
        .unwrap()
        .into_iter()
        .map(|e| (e.r#type, e.org_id, e.subject))
        .collect()
}

async fn org_id(h: &Harness, slug: &str) -> i64 {
    roost::store::orgs::by_slug(&h.app().store, slug).await.unwrap().unwrap().id
}

on_both_backends! {
    async fn pending_devices_wait_for_a_claim_and_preregistered_ones_join_at_once(backend: Backend) {
        let h = Harness::start(backend).await;
        h.org("isp-a", None).await;
        h.org("isp-b", None).await;
        let advanced = h.user("isp-a", "noc@isp-a.example", "advanced").await;
        let fleet = h.fleet(DataModelKind::Tr098, 3, "PEND").await;
        let serial = |i: usize| fleet.device(i).serial_number().to_owned();

        // ISP A expects device 0: a CSV of serials, as exported from a warehouse system.
        let csv = format!("serial_number,note\n{},first batch\n", serial(0));
        let response = h
            .http
            .post(h.url("/api/v1/preregistrations"))
            .bearer_auth(&advanced)
            .header("content-type", "text/csv")
            .body(csv)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::CREATED);
        assert_eq!(response.json::<JsonValue>().await.unwrap()["added"], 1);
        let (status, problem) = h.request_as(&advanced, Method::POST, "/api/v1/preregistrations", Some(json!({"serials": ["bad serial"]}))).await;
        assert_eq!((status, problem["code"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_serials")));

        for i in 0..3 {
            fleet.device(i).inform_now(&[]).await.unwrap();
        }
        let device = h.device(&fleet.device(0).device_id()).await;
        assert_eq!(device["org"], "isp-a", "a pre-registered serial joins at its first Inform");

        // The others wait, seen only by the platform.
        let (status, pending) = h.get("/api/v1/pending-devices").await;
        assert_eq!(status, StatusCode::OK);
        let pending: Vec<&str> = pending["items"].as_array().unwrap().iter().map(|d| d["serial_number"].as_str().unwrap()).collect();
        assert_eq!(pending, [serial(1), serial(2)]);
        let (status, _) = h.request_as(&advanced, Method::GET, "/api/v1/pending-devices", None).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        let (status, list) = h.request_as(&advanced, Method::GET, "/api/v1/devices", None).await;
        assert_eq!((status, list["items"].as_array().unwrap().len()), (StatusCode::OK, 1));

        // ISP A claims device 1 by serial; not into a sibling, and unknown serials are named.
        let claim = json!({"serials": [serial(1), "NOT-A-DEVICE"], "org": "isp-b"});
        let (status, problem) = h.request_as(&advanced, Method::POST, "/api/v1/pending-devices/claim", Some(claim)).await;
        assert_eq!((status, problem["code"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_organization")));
        let claim = json!({"serials": [serial(1), "NOT-A-DEVICE"]});
        let (status, claimed) = h.request_as(&advanced, Method::POST, "/api/v1/pending-devices/claim", Some(claim)).await;
        assert_eq!(status, StatusCode::OK, "{claimed}");
        assert_eq!(claimed["claimed"][0]["serial_number"], serial(1));
        assert_eq!(claimed["not_found"], json!(["NOT-A-DEVICE"]));
        let (_, list) = h.request_as(&advanced, Method::GET, "/api/v1/devices", None).await;
        assert_eq!(list["items"].as_array().unwrap().len(), 2);
        let (_, pending) = h.get("/api/v1/pending-devices").await;
        assert_eq!(pending["items"].as_array().unwrap().len(), 1);
        let (_, of_a) = h.get("/api/v1/devices?org=isp-a&fields=org").await;
        assert_eq!(of_a["items"], json!([{"org": "isp-a"}, {"org": "isp-a"}]), "the platform filters by organization");
        let (status, _) = h.request_as(&advanced, Method::GET, "/api/v1/devices?org=isp-b", None).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "not another tenant's");
        // Claiming it again finds nothing: it is nobody's pending device any more.
        let claim = json!({"serials": [serial(1)]});
        let (_, again) = h.request_as(&advanced, Method::POST, "/api/v1/pending-devices/claim", Some(claim)).await;
        assert_eq!(again["claimed"], json!([]));

        // The outbox has both, for ISP A.
        let isp_a = org_id(&h, "isp-a").await;
        let recorded = events(&h).await;
        assert!(recorded.contains(&("device.registered".into(), Some(isp_a), fleet.device(0).device_id())), "{recorded:?}");
        assert!(recorded.contains(&("device.claimed".into(), Some(isp_a), fleet.device(1).device_id())), "{recorded:?}");
        // The device that joined at once is online from its first Inform, and says so.
        assert!(recorded.contains(&("device.online".into(), Some(isp_a), fleet.device(0).device_id())), "{recorded:?}");
        assert_eq!(recorded.len(), 3, "pending arrivals are no organization's event: {recorded:?}");
        h.finish().await;
    }

    async fn a_parent_moves_devices_between_its_regions_and_each_move_is_an_event(backend: Backend) {
        let h = Harness::start(backend).await;
        h.org("isp", None).await;
        h.org("isp-a", Some("isp")).await;
        h.org("isp-b", Some("isp")).await;
        let parent_admin = h.user("isp", "admin@isp.example", "org-admin").await;
        let a_admin = h.user("isp-a", "admin@isp-a.example", "org-admin").await;
        let a_basic = h.user("isp-a", "desk@isp-a.example", "basic").await;
        let fleet = h.fleet(DataModelKind::Tr098, 1, "MOVE").await;
        fleet.device(0).inform_now(&[]).await.unwrap();
        let id = fleet.device(0).device_id();
        let path = format!("/api/v1/devices/{}", encode_id(&id));
        let to = |slug: &str| Some(json!({"org": slug}));

        // A pending device moved by the platform is claimed.
        let (status, device) = h.request(Method::PATCH, &path, to("isp-a")).await;
        assert_eq!((status, device["org"].as_str()), (StatusCode::OK, Some("isp-a")), "{device}");
        let (status, task) = h.request_as(&a_admin, Method::POST, &format!("{path}/tasks"), Some(json!({"name": "reboot"}))).await;
        assert_eq!(status, StatusCode::CREATED, "{task}");

        // Within one's subtree only, and only with the right to claim.
        let (status, problem) = h.request_as(&a_admin, Method::PATCH, &path, to("isp-b")).await;
        assert_eq!((status, problem["code"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_organization")));
        let (status, _) = h.request_as(&a_basic, Method::PATCH, &path, to("isp-a")).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        let (status, problem) = h.request_as(&a_admin, Method::PATCH, &path, Some(json!({"org": "isp-a", "name": "x"}))).await;
        assert!(status.is_client_error() && problem["code"] == "invalid_body", "{status} {problem}");

        // What the parent does to a region's device is in the region's audit log.
        let (status, _) = h.request_as(&parent_admin, Method::PUT, &format!("{path}/tags/watched"), None).await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        let (_, audit) = h.request_as(&a_admin, Method::GET, "/api/v1/audit?action=PUT", None).await;
        let entry = &audit["items"][0];
        assert_eq!((entry["actor_name"].as_str(), entry["org"].as_str()), (Some("admin@isp.example"), Some("isp-a")), "{audit}");

        // The parent moves it to the other region, with its task.
        let (status, device) = h.request_as(&parent_admin, Method::PATCH, &path, to("isp-b")).await;
        assert_eq!((status, device["org"].as_str()), (StatusCode::OK, Some("isp-b")), "{device}");
        let (status, _) = h.request_as(&a_admin, Method::GET, &path, None).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "gone from the region it left");
        let task_path = format!("/api/v1/tasks/{}", task["id"].as_str().unwrap());
        let (status, _) = h.request_as(&a_admin, Method::GET, &task_path, None).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "its tasks went with it");
        let (_, in_b) = h.request_as(&parent_admin, Method::GET, "/api/v1/devices?org=isp-b&fields=id", None).await;
        assert_eq!(in_b["items"], json!([{"id": id}]));
        // Moving it where it is changes nothing and records nothing.
        let (status, _) = h.request_as(&parent_admin, Method::PATCH, &path, to("isp-b")).await;
        assert_eq!(status, StatusCode::OK);

        // The outbox: claimed into isp-a, then moved to isp-b (under isp-b, naming both).
        let outbox = roost::store::events::list(&h.app().store, &Scope::All, None, None, 1000).await.unwrap();
        let kinds: Vec<(&str, Option<i64>)> = outbox.iter().map(|e| (e.r#type.as_str(), e.org_id)).collect();
        let (isp_a, isp_b) = (org_id(&h, "isp-a").await, org_id(&h, "isp-b").await);
        assert_eq!(kinds, [("device.claimed", Some(isp_a)), ("device.moved", Some(isp_b))]);
        let moved: JsonValue = serde_json::from_str(&outbox[1].payload).unwrap();
        assert_eq!((moved["from"].as_str(), moved["to"].as_str()), (Some("isp-a"), Some("isp-b")));
        assert_eq!(moved["device_id"], id);

        // The region it left sees who took it, in its own audit log.
        let (_, audit) = h.request_as(&a_admin, Method::GET, "/api/v1/audit?action=PATCH", None).await;
        let actors: Vec<&str> = audit["items"].as_array().unwrap().iter().map(|e| e["actor_name"].as_str().unwrap()).collect();
        assert!(actors.contains(&"admin@isp.example"), "{audit}");
        h.finish().await;
    }

    async fn a_tenants_own_host_name_routes_its_devices_and_onboarded_ones_stay(backend: Backend) {
        let h = Harness::start(backend).await;
        h.org("isp-a", None).await;
        h.org("isp-b", None).await;
        let admin_a = h.user("isp-a", "admin@isp-a.example", "org-admin").await;
        // Only the platform names hosts: a tenant naming another's would capture its devices.
        let (status, _) = h.request_as(&admin_a, Method::PATCH, "/api/v1/orgs/isp-a", Some(json!({"cwmp_host": "acs.isp-a.example"}))).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        let (status, org) = h.request(Method::PATCH, "/api/v1/orgs/isp-a", Some(json!({"cwmp_host": "acs.isp-a.example"}))).await;
        assert_eq!((status, org["cwmp_host"].as_str()), (StatusCode::OK, Some("acs.isp-a.example")), "{org}");
        let (status, problem) = h.request(Method::PATCH, "/api/v1/orgs/isp-b", Some(json!({"cwmp_host": "acs.isp-a.example"}))).await;
        assert_eq!((status, problem["code"].as_str()), (StatusCode::CONFLICT, Some("host_taken")));

        let inform = capture_bodies("genieacs-sim_vs-stub.wire.txt", "CPE->ACS").remove(0);
        let mut cpe = RawCpe::connect(&h.cwmp_url()).await.presenting_host("ACS.isp-a.example:7547");
        assert_eq!(cpe.post("/", &inform, &[XML], false).await.status, 200);
        cpe.end_session("/").await;
        let (_, list) = h.request_as(&admin_a, Method::GET, "/api/v1/devices", None).await;
        let device_id = list["items"][0]["id"].as_str().expect("the device joined ISP A by its host name").to_owned();
        let isp_a = org_id(&h, "isp-a").await;
        assert!(events(&h).await.contains(&("device.registered".into(), Some(isp_a), device_id.clone())));

        // Informing at another tenant's URL later changes nothing.
        let mut cpe = RawCpe::connect(&h.cwmp_url()).await;
        assert_eq!(cpe.post("/cwmp/isp-b", &inform, &[XML], false).await.status, 200);
        cpe.end_session("/cwmp/isp-b").await;
        assert_eq!(h.device(&device_id).await["org"], "isp-a");
        h.finish().await;
    }

    async fn onboarded_devices_get_their_own_credential_and_a_leaked_model_password_opens_nothing(backend: Backend) {
        let h = Harness::start_with(backend, CpeAuthMode::Required).await;
        h.org("isp-a", None).await;
        let admin_a = h.user("isp-a", "admin@isp-a.example", "org-admin").await;
        let model = std::sync::Arc::new(DataModel::bundled(DataModelKind::Tr098).unwrap());
        let mut config = FleetConfig::new(format!("{}cwmp/isp-a", h.cwmp_url()), model.clone());
        config.start = StartMode::Manual;
        config.retry = false;
        config.serial_prefix = "OWN".into();
        config.devices = 2;
        config.acs_username = Some("isp-a-model".into());
        config.acs_password = Some("model-password".into());
        let fleet = Fleet::start(config.clone()).await.unwrap();
        let product_class = fleet.device(0).identity().product_class.clone();

        // ISP A's onboarding credential for this model only.
        let body = json!({"username": "isp-a-model", "password": "model-password", "product_class": product_class});
        let (status, created) = h.request_as(&admin_a, Method::POST, "/api/v1/cpe-credentials", Some(body)).await;
        assert_eq!((status, created["org"].as_str()), (StatusCode::CREATED, Some("isp-a")), "{created}");
        assert!(created.get("password").is_none());
        let (status, problem) = h.request_as(&admin_a, Method::POST, "/api/v1/cpe-credentials", Some(json!({"username": "isp-a-model", "password": "another-password"}))).await;
        assert_eq!((status, problem["code"].as_str()), (StatusCode::CONFLICT, Some("username_taken")));

        // First contact: on the model's credential, and the device is given its own.
        let device_id = fleet.device(0).device_id();
        let report = fleet.device(0).inform_now(&[]).await.unwrap();
        assert!(report.is_ok(), "{:?}", report.error);
        assert_eq!(h.device(&device_id).await["org"], "isp-a");
        let own = roost::store::credentials::own_of(&h.app().store, &device_id).await.unwrap().expect("its own credential");
        assert_ne!(own.username, "isp-a-model");
        assert!(!roost::store::devices::has_own_credential(&h.app().store, &device_id).await.unwrap(), "not taken yet");

        // Next session: on its own credential, which marks it taken.
        let report = fleet.device(0).inform_now(&[]).await.unwrap();
        assert!(report.is_ok(), "{:?}", report.error);
        assert!(roost::store::devices::has_own_credential(&h.app().store, &device_id).await.unwrap());

        // Someone holding the model's password poses as the onboarded device: refused, and the
        // device is as it was.
        let before = h.device(&device_id).await["last_inform_at"].clone();
        let impostor = Fleet::start(config.clone()).await.unwrap();
        assert_eq!(impostor.device(0).device_id(), device_id);
        let report = impostor.device(0).inform_now(&[]).await.unwrap();
        assert!(!report.is_ok(), "the impostor was let in");
        assert!(report.http_statuses.contains(&401));
        assert_eq!(h.device(&device_id).await["last_inform_at"], before);
        // The model's credential still onboards new devices of the model.
        let newcomer = fleet.device(1).inform_now(&[]).await.unwrap();
        assert!(newcomer.is_ok(), "{:?}", newcomer.error);
        // And it fits no other model.
        config.serial_prefix = "OTHER".into();
        let other_model = std::sync::Arc::new(DataModel::bundled(DataModelKind::Tr181).unwrap());
        config.model = other_model;
        let other = Fleet::start(config).await.unwrap();
        if other.device(0).identity().product_class != product_class {
            assert!(!other.device(0).inform_now(&[]).await.unwrap().is_ok(), "another model on this model's credential");
        }
        h.finish().await;
    }
}
