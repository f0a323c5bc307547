//! The CWMP endpoint against what real firmware sends: captured messages from independent
//! agents, cookie-less sessions, chunked bodies, malformed SOAP, empty POSTs mid-RPC, and CPE
//! authentication.

use reqwest::StatusCode;
use roost::config::CpeAuthMode;
use roost_tests::on_both_backends;

use super::*;

const XML: (&str, &str) = ("Content-Type", "text/xml; charset=utf-8");

on_both_backends! {
    async fn real_agents_informs_register_devices(backend: Backend) {
        let h = Harness::start(backend).await;
        // netcwmp (C agent): SOAP-ENV prefixes, 1999 schema namespaces, 0 BOOTSTRAP.
        let inform = capture_bodies("netcwmp_vs-stub.wire.txt", "CPE->ACS").remove(0);
        let mut cpe = RawCpe::connect(&h.cwmp_url()).await;
        let response = cpe.post("/acs", &inform, &[XML], false).await;
        assert_eq!(response.status, 200, "{}", response.body);
        assert!(response.body.contains("<cwmp:InformResponse>"), "{}", response.body);
        assert!(response.body.contains("urn:dslforum-org:cwmp-1-0"), "answered in the agent's namespace");
        assert!(!response.body.starts_with("<?xml"), "no XML declaration for agents that cannot parse one");
        // This agent never sends cookies: the session is found by its connection.
        let next = cpe.post("/acs", "", &[], false).await;
        assert_eq!(next.status, 200);
        assert!(next.body.contains("<cwmp:GetParameterNames>"), "discovery: {}", next.body);
        let device = h.device("A00001-OT2800-30000000000000000").await;
        assert_eq!(device["manufacturer"], "ChinaNMS");
        assert!(device["last_events"].as_array().unwrap().contains(&json!("0 BOOTSTRAP")));
        cpe.end_session("/acs").await;

        // softov cwmp-sim (a ZTE H199A model): product class with a space, escaped like GenieACS.
        let inform = capture_bodies("softov-cwmp-sim_digest_vs-stub.wire.txt", "CPE->ACS").remove(0);
        let mut cpe = RawCpe::connect(&h.cwmp_url()).await;
        let response = cpe.post("/", &inform, &[("Content-Type", "text/xml")], true).await;
        assert_eq!(response.status, 200, "{}", response.body);
        let (status, list) = h.get("/api/v1/devices?product_class=ZXHN%20H199A").await;
        assert_eq!(status, StatusCode::OK);
        let id = list["items"][0]["id"].as_str().expect("the ZTE device is registered").to_owned();
        assert!(id.contains("-ZXHN%20H199A-"), "{id}");
        h.device(&id).await;
        cpe.end_session("/").await;

        // genieacs-sim: a periodic first contact is enough to register.
        let inform = capture_bodies("genieacs-sim_vs-stub.wire.txt", "CPE->ACS").remove(0);
        let mut cpe = RawCpe::connect(&h.cwmp_url()).await;
        let response = cpe.post("/", &inform, &[XML], false).await;
        assert_eq!(response.status, 200, "{}", response.body);
        cpe.end_session("/").await;
        h.finish().await;
    }

    async fn a_content_length_counted_in_characters_is_repaired(backend: Backend) {
        let h = Harness::start(backend).await;
        let capture = capture_bodies("netcwmp_vs-stub.wire.txt", "CPE->ACS").remove(0);
        // The same Inform, with a ProvisioningCode-style value in another script.
        let inform = capture.replace(
            "<Name xsi:type=\"xsd:string\">InternetGatewayDevice.DeviceSummary</Name>\n<Value xsi:type=\"xsd:string\"></Value>",
            "<Name xsi:type=\"xsd:string\">InternetGatewayDevice.DeviceSummary</Name>\n<Value xsi:type=\"xsd:string\">Маршрутизатор Café ☕</Value>",
        );
        assert_ne!(inform, capture, "the capture changed: adjust the test");
        assert!(inform.chars().count() < inform.len());
        let mut cpe = RawCpe::connect(&h.cwmp_url()).await;
        let response = cpe.post_counting_characters("/acs", &inform, &[XML]).await;
        assert_eq!(response.status, 200, "{}", response.body);
        // The connection is intact: the session goes on with the empty POST.
        let next = cpe.post("/acs", "", &[], false).await;
        assert!(next.body.contains("GetParameterNames"), "{}", next.body);
        cpe.end_session("/acs").await;
        let stored = h.stored_value("A00001-OT2800-30000000000000000", "InternetGatewayDevice.DeviceSummary").await;
        assert_eq!(stored.as_deref(), Some("Маршрутизатор Café ☕"));
        h.finish().await;
    }

    async fn malformed_soap_gets_a_fault_and_loses_nothing(backend: Backend) {
        let h = Harness::start(backend).await;
        let mut cpe = RawCpe::connect(&h.cwmp_url()).await;
        let response = cpe.post("/", "<SOAP-ENV:Envelope><SOAP-ENV:Body><cwmp:Inform>", &[XML], false).await;
        assert_eq!(response.status, 400);
        assert!(response.body.contains("<FaultCode>8003</FaultCode>"), "{}", response.body);
        let response = cpe.post("/", "<!DOCTYPE x [<!ENTITY a \"aaaa\">]><x>&a;</x>", &[XML], false).await;
        assert_eq!(response.status, 400, "entities are refused, never expanded");
        // The server is unharmed and the next well-formed session works.
        let fleet = h.fleet(DataModelKind::Tr098, 1, "MAL").await;
        let report = fleet.device(0).inform_now(&[]).await.unwrap();
        assert!(report.is_ok(), "{:?}", report.error);
        fleet.stop().await;
        h.finish().await;
    }

    async fn an_empty_post_instead_of_an_answer_fails_the_work_without_looping(backend: Backend) {
        let h = Harness::start(backend).await;
        let inform = capture_bodies("netcwmp_vs-stub.wire.txt", "CPE->ACS").remove(0);
        let mut cpe = RawCpe::connect(&h.cwmp_url()).await;
        assert_eq!(cpe.post("/", &inform, &[XML], false).await.status, 200);
        let first = cpe.post("/", "", &[], false).await;
        assert!(first.body.contains("GetParameterNames"), "discovery: {}", first.body);
        // "I could not parse that": an empty POST while the request is outstanding.
        let second = cpe.post("/", "", &[], false).await;
        let device_faults = h.get(&format!("/api/v1/devices/{}/faults", encode_id("A00001-OT2800-30000000000000000"))).await;
        assert!(
            second.body.contains("<ParameterPath>InternetGatewayDevice.ManagementServer.</ParameterPath>"),
            "moves on to provisioning, whose bootstrap preset must list the management server: {} {device_faults:?}",
            second.body
        );
        let third = cpe.post("/", "", &[], false).await;
        assert_eq!(third.status, 204, "nothing else to do: the session ends: {}", third.body);
        let (_, faults) = h.get(&format!("/api/v1/devices/{}/faults", encode_id("A00001-OT2800-30000000000000000"))).await;
        let channels: Vec<(&str, &str)> = faults["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| (f["channel"].as_str().unwrap(), f["code"].as_str().unwrap()))
            .collect();
        assert_eq!(channels, vec![("discovery", "cwmp.no_response"), ("provisioning", "cwmp.no_response")]);
        h.finish().await;
    }

    async fn cpe_authentication_with_digest(backend: Backend) {
        let h = Harness::start_with(backend, CpeAuthMode::Required).await;
        let app = h.app().clone();
        let org = roost::store::orgs::create(&app.store, "ISP A", "isp-a", None).await.unwrap();
        roost::store::credentials::create(&app.store, roost::store::credentials::CredentialScope { org_id: Some(org.id), ..Default::default() }, "isp-a-fleet", app.secrets.seal(b"s3cret-pass"))
            .await
            .unwrap();

        // Without credentials: a Digest challenge, and nothing registered.
        let inform = capture_bodies("netcwmp_vs-stub.wire.txt", "CPE->ACS").remove(0);
        let mut raw = RawCpe::connect(&h.cwmp_url()).await;
        let response = raw.post("/", &inform, &[XML], false).await;
        assert_eq!(response.status, 401);
        let challenge = response.header("www-authenticate").unwrap_or_default();
        assert!(challenge.starts_with("Digest ") && challenge.contains("qop=\"auth\""), "{challenge}");
        let (_, list) = h.get("/api/v1/devices").await;
        assert_eq!(list["items"].as_array().unwrap().len(), 0);

        // With the right credentials the device authenticates with Digest and onboards into the
        // credential's organization.
        let model = std::sync::Arc::new(DataModel::bundled(DataModelKind::Tr098).unwrap());
        let mut config = FleetConfig::new(h.cwmp_url(), model.clone());
        config.start = StartMode::Manual;
        config.retry = false;
        config.serial_prefix = "AUTH".into();
        config.acs_username = Some("isp-a-fleet".into());
        config.acs_password = Some("s3cret-pass".into());
        let good = Fleet::start(config.clone()).await.unwrap();
        let report = good.device(0).inform_now(&[]).await.unwrap();
        assert!(report.is_ok(), "{:?}", report.error);
        assert!(report.http_statuses.contains(&401), "challenged first: {:?}", report.http_statuses);
        let device = h.device(&good.device(0).device_id()).await;
        assert_eq!(device["org"], "isp-a");

        // A wrong password is refused and registers nothing.
        config.serial_prefix = "EVIL".into();
        config.acs_password = Some("guess".into());
        let bad = Fleet::start(config).await.unwrap();
        let report = bad.device(0).inform_now(&[]).await.unwrap();
        assert!(!report.is_ok());
        let (status, _) = h.get(&format!("/api/v1/devices/{}", encode_id(&bad.device(0).device_id()))).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        good.stop().await;
        bad.stop().await;
        h.finish().await;
    }
}

on_both_backends! {
    async fn a_task_whose_sessions_keep_dying_is_resent_then_failed(backend: Backend) {
        let h = Harness::start(backend).await;
        let fleet = h.fleet(DataModelKind::Tr098, 1, "DIE").await;
        let cpe = fleet.device(0);
        assert!(cpe.inform_now(&[]).await.unwrap().is_ok());
        let tasks = format!("/api/v1/devices/{}/tasks", encode_id(&cpe.device_id()));
        let (_, task) = h.post(&tasks, json!({"name": "getParameterValues", "parameterNames": ["InternetGatewayDevice.DeviceInfo.UpTime"]})).await;
        let inform = periodic_inform(&cpe);
        // Three sessions die (the CPE reboots mid-session): the task is sent each time and stays
        // pending, since nothing answered it.
        for attempt in 1..=3 {
            let mut raw = RawCpe::connect(&h.cwmp_url()).await;
            assert_eq!(raw.post("/", &inform, &[("Content-Type", "text/xml")], false).await.status, 200);
            let request = raw.post("/", "", &[], false).await;
            assert!(request.body.contains("<cwmp:GetParameterValues>"), "attempt {attempt}: {}", request.body);
            drop(raw);
            let (_, now) = h.get(&format!("/api/v1/tasks/{}", task["id"].as_str().unwrap())).await;
            assert_eq!((now["status"].as_str(), now["attempts"].as_i64()), (Some("pending"), Some(attempt)));
        }
        // The fourth session does not send it again: it is what kills the sessions.
        let mut raw = RawCpe::connect(&h.cwmp_url()).await;
        assert_eq!(raw.post("/", &inform, &[("Content-Type", "text/xml")], false).await.status, 200);
        assert_eq!(raw.post("/", "", &[], false).await.status, 204);
        let (_, failed) = h.get(&format!("/api/v1/tasks/{}", task["id"].as_str().unwrap())).await;
        assert_eq!(failed["status"], "fault");
        assert_eq!(failed["fault"]["code"], "task.too_many_attempts");
        fleet.stop().await;
        h.finish().await;
    }

    async fn cwmp_1_4_devices_negotiate_and_are_answered_in_their_namespace(backend: Backend) {
        let h = Harness::start(backend).await;
        let model = std::sync::Arc::new(DataModel::bundled(DataModelKind::Tr181).unwrap());
        let mut config = FleetConfig::new(h.cwmp_url(), model);
        config.start = StartMode::Manual;
        config.serial_prefix = "V14".into();
        config.cwmp_version = roost_cwmp::CwmpVersion::V1_4;
        let fleet = Fleet::start(config).await.unwrap();
        let report = fleet.device(0).inform_now(&[]).await.unwrap();
        assert!(report.is_ok(), "{:?}", report.error);
        assert_eq!(report.cwmp_version, roost_cwmp::CwmpVersion::V1_4);
        let device = h.device(&fleet.device(0).device_id()).await;
        assert_eq!(device["cwmp_version"], "1.4");
        assert!(device["discovered_at"].is_string());
        fleet.stop().await;
        h.finish().await;
    }

    async fn basic_authentication_needs_tls_or_an_explicit_setting(backend: Backend) {
        use base64::Engine;
        let basic = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode("lab:lab-password"));
        let inform = capture_bodies("netcwmp_vs-stub.wire.txt", "CPE->ACS").remove(0);
        let credential = |h: &Harness| {
            let app = h.app().clone();
            async move {
                roost::store::credentials::create(&app.store, Default::default(), "lab", app.secrets.seal(b"lab-password")).await.unwrap();
            }
        };

        let h = Harness::start_with(backend, CpeAuthMode::Required).await;
        credential(&h).await;
        let mut raw = RawCpe::connect(&h.cwmp_url()).await;
        let response = raw.post("/", &inform, &[XML, ("Authorization", &basic)], false).await;
        assert_eq!(response.status, 401, "Basic over plain HTTP sends the password in clear: refused");
        h.finish().await;

        let h = Harness::start_configured(backend, CpeAuthMode::Required, |c| c.cwmp.allow_basic_without_tls = true).await;
        credential(&h).await;
        let mut raw = RawCpe::connect(&h.cwmp_url()).await;
        let response = raw.post("/", &inform, &[XML, ("Authorization", &basic)], false).await;
        assert_eq!(response.status, 200, "{}", response.body);
        // Credentials only on the Inform: the bare empty POST of the same session is accepted.
        let next = raw.post("/", "", &[], false).await;
        assert_eq!(next.status, 200, "{}", next.body);
        raw.end_session("/").await;
        h.finish().await;
    }
}
