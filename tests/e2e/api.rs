//! The REST API: authentication, problem+json errors, device filters and pagination, tenancy.

use reqwest::StatusCode;
use roost_tests::on_both_backends;

use super::*;

on_both_backends! {
    async fn authentication_and_errors_are_problem_json(backend: Backend) {
        let h = Harness::start(backend).await;
        let login = |password: &'static str| {
            let http = h.http.clone();
            let url = h.url("/api/v1/auth/login");
            async move { http.post(url).json(&json!({"email": ADMIN_EMAIL, "password": password})).send().await.unwrap() }
        };
        let wrong = login("not the password").await;
        assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(wrong.headers()["content-type"], "application/problem+json");
        let body: JsonValue = wrong.json().await.unwrap();
        assert_eq!(body["code"], "unauthorized");

        let good: JsonValue = login(ADMIN_PASSWORD).await.json().await.unwrap();
        assert_eq!(good["token_type"], "Bearer");
        assert!(good["expires_in"].as_u64().unwrap() > 0);

        // Every other route needs a token, and only an access token.
        let anonymous = h.http.get(h.url("/api/v1/devices")).send().await.unwrap();
        assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
        let refresh_as_access =
            h.http.get(h.url("/api/v1/devices")).bearer_auth(good["refresh_token"].as_str().unwrap()).send().await.unwrap();
        assert_eq!(refresh_as_access.status(), StatusCode::UNAUTHORIZED);
        let refreshed = h
            .http
            .post(h.url("/api/v1/auth/refresh"))
            .json(&json!({"refresh_token": good["refresh_token"]}))
            .send()
            .await
            .unwrap();
        assert_eq!(refreshed.status(), StatusCode::OK);
        let garbage = h.http.get(h.url("/api/v1/devices")).bearer_auth("not.a.jwt").send().await.unwrap();
        assert_eq!(garbage.status(), StatusCode::UNAUTHORIZED);

        // Bad requests say what is wrong, with a stable code.
        let fleet = h.fleet(DataModelKind::Tr181, 1, "ERR").await;
        fleet.device(0).inform_now(&[]).await.unwrap();
        let tasks = format!("/api/v1/devices/{}/tasks", encode_id(&fleet.device(0).device_id()));
        let (status, problem) = h.post(&tasks, json!({"name": "frobnicate"})).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(problem["code"], "invalid_task");
        assert!(problem["detail"].as_str().unwrap().contains("frobnicate"));
        let (status, problem) = h.post(&tasks, json!({"name": "setParameterValues", "parameterValues": [["Device.X", "-5", "xsd:unsignedInt"]]})).await;
        assert_eq!((status, problem["code"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_task")));
        let raw = h.http.post(h.url(&tasks)).bearer_auth(&h.token).header("content-type", "application/json").body("{not json").send().await.unwrap();
        assert_eq!(raw.status(), StatusCode::BAD_REQUEST);
        assert_eq!(raw.json::<JsonValue>().await.unwrap()["code"], "invalid_body");
        let (status, problem) = h.get("/api/v1/devices/NOPE-NOPE").await;
        assert_eq!((status, problem["code"].as_str()), (StatusCode::NOT_FOUND, Some("not_found")));
        let (status, problem) = h.get("/api/v1/devices?limit=0").await;
        assert_eq!((status, problem["code"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_query")));
        let (status, problem) = h.get("/api/v1/devices?cursor=%%%").await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{problem}");
        let (status, _) = h.get("/api/v1/tasks/999999").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        // Nothing was queued by the refused requests.
        let (_, list) = h.get(&tasks).await;
        assert_eq!(list["items"].as_array().unwrap().len(), 0);
        fleet.stop().await;
        h.finish().await;
    }

    async fn device_filters_and_pagination(backend: Backend) {
        let h = Harness::start(backend).await;
        let huawei = h.fleet(DataModelKind::Tr098, 3, "HW").await;
        let tplink = h.fleet(DataModelKind::Tr181, 2, "TP").await;
        for device in huawei.devices().iter().chain(tplink.devices()) {
            let report = device.inform_now(&[]).await.unwrap();
            assert!(report.is_ok(), "{:?}", report.error);
        }
        let ids = |page: &JsonValue| -> Vec<String> {
            page["items"].as_array().unwrap().iter().map(|d| d["id"].as_str().unwrap().to_owned()).collect()
        };
        let (_, all) = h.get("/api/v1/devices").await;
        assert_eq!(ids(&all).len(), 5);
        assert!(all["next_cursor"].is_null());

        let class = huawei.device(0).identity().product_class.clone();
        let (_, page) = h.get(&format!("/api/v1/devices?product_class={class}")).await;
        assert_eq!(ids(&page).len(), 3);
        let (_, page) = h.get(&format!("/api/v1/devices?serial_number={}", tplink.device(1).serial_number())).await;
        assert_eq!(ids(&page), vec![tplink.device(1).device_id()]);
        let (_, page) = h.get(&format!("/api/v1/devices?oui={}", tplink.device(0).identity().oui)).await;
        assert_eq!(ids(&page).len(), 2);
        let version = tplink.device(0).value("Device.DeviceInfo.SoftwareVersion").unwrap();
        let (_, page) = h.get(&format!("/api/v1/devices?software_version={}", encode_id(&version))).await;
        assert_eq!(ids(&page).len(), 2);
        let (_, page) = h.get("/api/v1/devices?last_inform_after=2999-01-01T00:00:00Z").await;
        assert_eq!(ids(&page).len(), 0);
        let (_, page) = h.get("/api/v1/devices?last_inform_after=2020-01-01T00:00:00Z").await;
        assert_eq!(ids(&page).len(), 5);

        let tagged = huawei.device(2).device_id();
        let (status, _) = h.request(reqwest::Method::PUT, &format!("/api/v1/devices/{}/tags/vip", encode_id(&tagged)), None).await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        let (_, page) = h.get("/api/v1/devices?tag=vip").await;
        assert_eq!(ids(&page), vec![tagged.clone()]);
        assert_eq!(h.device(&tagged).await["tags"], json!(["vip"]));

        // Pages of two, following the cursor, cover every device exactly once.
        let mut seen = Vec::new();
        let mut path = "/api/v1/devices?limit=2".to_owned();
        loop {
            let (status, page) = h.get(&path).await;
            assert_eq!(status, StatusCode::OK);
            seen.extend(ids(&page));
            match page["next_cursor"].as_str() {
                Some(cursor) => path = format!("/api/v1/devices?limit=2&cursor={cursor}"),
                None => break,
            }
        }
        let mut expected = ids(&all);
        expected.sort();
        seen.sort();
        assert_eq!(seen, expected);

        // By stored parameter values, equal or by prefix; online; sorted; projected.
        let root_version = "Device.DeviceInfo.SoftwareVersion";
        let (status, page) = h.get(&format!("/api/v1/devices?param.{root_version}={}", encode_id(&version))).await;
        assert_eq!((status, ids(&page).len()), (StatusCode::OK, 2), "{page}");
        let prefix: String = version.chars().take(2).collect();
        let (_, page) = h.get(&format!("/api/v1/devices?param_prefix.{root_version}={}", encode_id(&prefix))).await;
        assert_eq!(ids(&page).len(), 2);
        let (_, page) = h.get(&format!("/api/v1/devices?param.{root_version}=no-such-version")).await;
        assert_eq!(ids(&page).len(), 0);
        let (_, page) = h.get("/api/v1/devices?online=true").await;
        assert_eq!(ids(&page).len(), 5);
        let (_, page) = h.get("/api/v1/devices?online=false").await;
        assert_eq!(ids(&page).len(), 0);
        let (_, page) = h.get("/api/v1/devices?sort=-serial_number&fields=id,serial_number,tags,online").await;
        let serials: Vec<&str> = page["items"].as_array().unwrap().iter().map(|d| d["serial_number"].as_str().unwrap()).collect();
        let mut descending = serials.clone();
        descending.sort();
        descending.reverse();
        assert_eq!(serials, descending);
        let first = page["items"][0].as_object().unwrap();
        let mut keys: Vec<&str> = first.keys().map(String::as_str).collect();
        keys.sort();
        assert_eq!(keys, ["id", "online", "serial_number", "tags"]);
        // Sorted pages follow the cursor too.
        let mut sorted_seen = Vec::new();
        let mut path = "/api/v1/devices?limit=2&sort=-last_inform_at".to_owned();
        loop {
            let (_, page) = h.get(&path).await;
            sorted_seen.extend(ids(&page));
            match page["next_cursor"].as_str() {
                Some(cursor) => path = format!("/api/v1/devices?limit=2&sort=-last_inform_at&cursor={cursor}"),
                None => break,
            }
        }
        sorted_seen.sort();
        assert_eq!(sorted_seen, expected);
        for bad in ["sort=colour", "fields=password", "frobnicate=1", "online=maybe", "param.=x"] {
            let (status, problem) = h.get(&format!("/api/v1/devices?{bad}")).await;
            assert_eq!((status, problem["code"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_query")), "{bad}");
        }

        let (status, _) = h.request(reqwest::Method::DELETE, &format!("/api/v1/devices/{}", encode_id(&tagged)), None).await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        let (status, _) = h.get(&format!("/api/v1/devices/{}", encode_id(&tagged))).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        huawei.stop().await;
        tplink.stop().await;
        h.finish().await;
    }

    async fn tenants_see_only_their_devices(backend: Backend) {
        let h = Harness::start(backend).await;
        let app = h.app().clone();
        let isp = roost::store::orgs::create(&app.store, "ISP A", "isp-a", None).await.unwrap();
        let hash = roost::api::auth::hash_password("isp-a-password").unwrap();
        roost::store::users::create(&app.store, isp.id, "ops@isp-a.example", &hash, "advanced").await.unwrap();
        let isp_token = h.login("ops@isp-a.example", "isp-a-password").await.unwrap();

        // One device onboards through ISP A's URL, one through the organization-less URL.
        let model = std::sync::Arc::new(DataModel::bundled(DataModelKind::Tr098).unwrap());
        let mut config = FleetConfig::new(format!("{}cwmp/isp-a", h.cwmp_url()), model.clone());
        config.start = StartMode::Manual;
        config.serial_prefix = "ISPA".into();
        let theirs = Fleet::start(config).await.unwrap();
        assert!(theirs.device(0).inform_now(&[]).await.unwrap().is_ok());
        let others = h.fleet(DataModelKind::Tr098, 1, "NOBODY").await;
        assert!(others.device(0).inform_now(&[]).await.unwrap().is_ok());

        let as_isp = |path: String| {
            let request = h.http.get(h.url(&path)).bearer_auth(&isp_token);
            async move {
                let response = request.send().await.unwrap();
                (response.status(), response.json::<JsonValue>().await.unwrap_or(JsonValue::Null))
            }
        };
        let (status, list) = as_isp("/api/v1/devices".into()).await;
        assert_eq!(status, StatusCode::OK);
        let visible: Vec<&str> = list["items"].as_array().unwrap().iter().map(|d| d["id"].as_str().unwrap()).collect();
        assert_eq!(visible, vec![theirs.device(0).device_id().as_str()]);
        assert_eq!(list["items"][0]["org"], "isp-a");
        let (status, _) = as_isp(format!("/api/v1/devices/{}", encode_id(&others.device(0).device_id()))).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "another tenant's (or an unclaimed) device does not exist for them");
        let (status, _) = as_isp(format!("/api/v1/devices/{}/parameters", encode_id(&others.device(0).device_id()))).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        // The platform administrator sees both.
        let (_, all) = h.get("/api/v1/devices").await;
        assert_eq!(all["items"].as_array().unwrap().len(), 2);
        // An unknown onboarding URL is refused before anything is stored.
        let inform = capture_bodies("netcwmp_vs-stub.wire.txt", "CPE->ACS").remove(0);
        let mut raw = RawCpe::connect(&h.cwmp_url()).await;
        let response = raw.post("/cwmp/no-such-isp", &inform, &[("Content-Type", "text/xml")], false).await;
        assert_eq!(response.status, 404);
        theirs.stop().await;
        others.stop().await;
        h.finish().await;
    }
}

on_both_backends! {
    async fn failed_logins_are_throttled_per_account_and_address(backend: Backend) {
        let h = Harness::start(backend).await;
        let login = |email: &'static str, password: &'static str| {
            h.http.post(h.url("/api/v1/auth/login")).json(&json!({"email": email, "password": password})).send()
        };
        let mut statuses = Vec::new();
        for _ in 0..12 {
            statuses.push(login(ADMIN_EMAIL, "wrong guess").await.unwrap().status());
        }
        assert_eq!(&statuses[..10], &[StatusCode::UNAUTHORIZED; 10], "{statuses:?}");
        assert_eq!(&statuses[10..], &[StatusCode::TOO_MANY_REQUESTS; 2], "{statuses:?}");
        // The right password waits out the window too: a brute force cannot succeed.
        let refused = login(ADMIN_EMAIL, ADMIN_PASSWORD).await.unwrap();
        assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(refused.headers()["retry-after"], "60");
        let problem: JsonValue = refused.json().await.unwrap();
        assert_eq!(problem["code"], "too_many_attempts");
        // Another account is not affected, and tokens issued before keep working.
        let app = h.app().clone();
        let platform = roost::store::orgs::by_slug(&app.store, "platform").await.unwrap().unwrap();
        let hash = roost::api::auth::hash_password("another-password").unwrap();
        roost::store::users::create(&app.store, platform.id, "ops@example.com", &hash, "read-only").await.unwrap();
        assert_eq!(login("ops@example.com", "another-password").await.unwrap().status(), StatusCode::OK);
        let (status, _) = h.get("/api/v1/devices").await;
        assert_eq!(status, StatusCode::OK);
        h.finish().await;
    }
}
