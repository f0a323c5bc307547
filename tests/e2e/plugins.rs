//! Plugins over REST: upload (validated), list by tenant, refuse what is not ours, delete.

use reqwest::StatusCode;
use roost_tests::on_both_backends;
use serde_json::Value as JsonValue;

use super::*;

pub(crate) fn component(crate_name: &str) -> Vec<u8> {
    let path = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../plugins/target/wasm32-unknown-unknown/release")
        .join(format!("{}.wasm", crate_name.replace('-', "_")));
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!("{}: {e}; build the plugins first: scripts/build-plugins.sh --install", path.display())
    })
}

pub(crate) async fn upload(h: &Harness, token: &str, query: &str, body: Vec<u8>) -> (StatusCode, JsonValue) {
    let response = h
        .http
        .post(h.url(&format!("/api/v1/plugins?{query}")))
        .bearer_auth(token)
        .header("Content-Type", "application/wasm")
        .body(body)
        .send()
        .await
        .unwrap();
    (response.status(), response.json().await.unwrap_or(JsonValue::Null))
}

async fn list(h: &Harness, token: &str) -> Vec<String> {
    let response = h.http.get(h.url("/api/v1/plugins")).bearer_auth(token).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body: JsonValue = response.json().await.unwrap();
    // The shipped plugins every server installs are not what these tests look at.
    let shipped: Vec<String> = std::fs::read_dir(shipped_plugins())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().trim_end_matches(".wasm").to_owned())
        .collect();
    body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| format!("{}@{}", p["name"].as_str().unwrap(), p["version"].as_str().unwrap()))
        .filter(|p| !shipped.contains(p))
        .collect()
}

on_both_backends! {
    async fn plugins_are_validated_at_upload_and_scoped_to_their_tenant(backend: Backend) {
        let h = Harness::start(backend).await;
        let app = h.app().clone();
        let admin = h.token.clone();

        // The platform's plugins: a provision and an adapter, recognised by what they export.
        let (status, health) = upload(&h, &admin, "name=health&version=1.0.0", component("provision-health")).await;
        assert_eq!(status, StatusCode::CREATED, "{health}");
        assert_eq!(health["world"], "provision");
        assert_eq!(health["api_version"], "0.1.1");
        assert_eq!(health["org"], "platform");
        assert_eq!(health["hash"].as_str().unwrap().len(), 64);
        let (status, adapter) = upload(&h, &admin, "name=tr098&version=1.0.0", component("adapter-tr098")).await;
        assert_eq!(status, StatusCode::CREATED, "{adapter}");
        assert_eq!(adapter["world"], "adapter");
        // A component built against the first API version is still taken, and said to be one.
        let old = std::fs::read(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("data/plugins/roost-plugin@0.1.0/adapter_tr181.wasm"),
        )
        .unwrap();
        let (status, old) = upload(&h, &admin, "name=tr181-old&version=1.0.0", old).await;
        assert_eq!(status, StatusCode::CREATED, "{old}");
        assert_eq!((old["world"].as_str(), old["api_version"].as_str()), (Some("adapter"), Some("0.1.0")));
        let old_path = format!("/api/v1/plugins/{}", old["id"].as_str().unwrap());
        let response = h.http.delete(h.url(&old_path)).bearer_auth(&admin).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::NO_CONTENT);

        // Versions are immutable.
        let (status, again) = upload(&h, &admin, "name=health&version=1.0.0", component("provision-wifi")).await;
        assert_eq!(status, StatusCode::CONFLICT, "{again}");
        assert_eq!(again["code"], "plugin_exists");

        // Refused before anything is stored, with the reason.
        let (status, foreign) = upload(&h, &admin, "name=sockets&version=1.0.0", component("hostile-import")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(foreign["code"], "invalid_plugin");
        assert!(foreign["detail"].as_str().unwrap().contains("evil:plugin/socket"), "{foreign}");
        let (status, garbage) = upload(&h, &admin, "name=garbage&version=1.0.0", b"MZ not wasm".to_vec()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{garbage}");
        assert_eq!(garbage["code"], "invalid_plugin");
        let (status, bad_name) = upload(&h, &admin, "name=Bad_Name&version=1.0.0", component("provision-wifi")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(bad_name["code"], "invalid_name");
        let (status, bad_version) = upload(&h, &admin, "name=wifi&version=latest", component("provision-wifi")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(bad_version["code"], "invalid_version");
        let (status, _) = upload(&h, &admin, "name=wifi", component("provision-wifi")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "version is required");

        // Two tenants: each sees the platform's plugins and its own, never the other's.
        let mut tokens = Vec::new();
        for (slug, role) in [("isp-a", "advanced"), ("isp-b", "advanced"), ("isp-c", "basic")] {
            let org = roost::store::orgs::create(&app.store, slug, slug, None).await.unwrap();
            let hash = roost::api::auth::hash_password("tenant-password").unwrap();
            let email = format!("ops@{slug}.example");
            roost::store::users::create(&app.store, org.id, &email, &hash, role).await.unwrap();
            tokens.push(h.login(&email, "tenant-password").await.unwrap());
        }
        let (status, own) = upload(&h, &tokens[0], "name=wifi&version=2.1.0-beta.1", component("provision-wifi")).await;
        assert_eq!(status, StatusCode::CREATED, "{own}");
        assert_eq!(own["org"], "isp-a");
        assert_eq!(list(&h, &tokens[0]).await, ["health@1.0.0", "tr098@1.0.0", "wifi@2.1.0-beta.1"]);
        assert_eq!(list(&h, &tokens[1]).await, ["health@1.0.0", "tr098@1.0.0"]);
        let own_path = format!("/api/v1/plugins/{}", own["id"].as_str().unwrap());
        let as_b = h.http.get(h.url(&own_path)).bearer_auth(&tokens[1]).send().await.unwrap();
        assert_eq!(as_b.status(), StatusCode::NOT_FOUND);
        // Uploading and deleting need the advanced role, and only one's own plugins can go.
        let (status, _) = upload(&h, &tokens[2], "name=wifi&version=1.0.0", component("provision-wifi")).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        let platform_path = format!("/api/v1/plugins/{}", health["id"].as_str().unwrap());
        let response = h.http.delete(h.url(&platform_path)).bearer_auth(&tokens[0]).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "a tenant cannot delete the platform's plugin");
        let response = h.http.delete(h.url(&own_path)).bearer_auth(&tokens[0]).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::NO_CONTENT);
        assert_eq!(list(&h, &tokens[0]).await, ["health@1.0.0", "tr098@1.0.0"]);

        // The stored component is the uploaded one, and resolves by name for a tenant.
        let path = roost::store::plugins::org_path(&app.store, roost::store::orgs::by_slug(&app.store, "isp-b").await.unwrap().unwrap().id).await.unwrap();
        let resolved = roost::store::plugins::resolve(&app.store, &path, "health").await.unwrap().expect("visible");
        let stored = roost::store::plugins::component(&app.store, resolved.id).await.unwrap();
        assert_eq!(stored, component("provision-health"));
        h.finish().await;
    }
}

async fn put_preset(h: &Harness, token: &str, name: &str, body: JsonValue) -> (StatusCode, JsonValue) {
    let response =
        h.http.put(h.url(&format!("/api/v1/presets/{name}"))).bearer_auth(token).json(&body).send().await.unwrap();
    (response.status(), response.json().await.unwrap_or(JsonValue::Null))
}

on_both_backends! {
    async fn presets_are_checked_when_written_and_belong_to_one_organization(backend: Backend) {
        let h = Harness::start(backend).await;
        let app = h.app().clone();
        let admin = h.token.clone();
        let (status, _) = upload(&h, &admin, "name=wifi&version=1.0.0", component("provision-wifi")).await;
        assert_eq!(status, StatusCode::CREATED);
        let (status, _) = upload(&h, &admin, "name=tr181&version=1.0.0", component("adapter-tr181")).await;
        assert_eq!(status, StatusCode::CREATED);
        let org = roost::store::orgs::create(&app.store, "ISP A", "isp-a", None).await.unwrap();
        let hash = roost::api::auth::hash_password("tenant-password").unwrap();
        roost::store::users::create(&app.store, org.id, "ops@isp-a.example", &hash, "advanced").await.unwrap();
        let tenant = h.login("ops@isp-a.example", "tenant-password").await.unwrap();

        // A tenant's preset may name the platform's provision plugin.
        let wifi = json!({
            "weight": 10,
            "events": ["0 BOOTSTRAP"],
            "tags": ["-no-wifi"],
            "precondition": [{"path": "Device.DeviceInfo.ModelName", "op": "prefix", "value": "XX230"}],
            "provision": "wifi",
            "args": {"ssid": "ISP-{serial}", "passphrase": "correct horse"}
        });
        let (status, created) = put_preset(&h, &tenant, "default-wifi", wifi.clone()).await;
        assert_eq!(status, StatusCode::CREATED, "{created}");
        assert_eq!(created["name"], "default-wifi");
        assert_eq!(created["provision"], "wifi");
        assert_eq!(created["enabled"], true);
        let (status, replaced) = put_preset(&h, &tenant, "default-wifi", json!({"provision": "reboot", "weight": -1})).await;
        assert_eq!(status, StatusCode::OK, "{replaced}");
        assert_eq!(replaced["provision"], "reboot");
        let (status, _) = put_preset(&h, &tenant, "health", json!({"provision": "refresh", "args": {"path": "Device.DeviceInfo.UpTime", "max-age": "300"}, "schedule": {"interval_seconds": 3600}})).await;
        assert_eq!(status, StatusCode::CREATED);
        let response = h.http.get(h.url("/api/v1/presets")).bearer_auth(&tenant).send().await.unwrap();
        let listed: JsonValue = response.json().await.unwrap();
        let names: Vec<&str> = listed["items"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
        assert_eq!(names, ["default-wifi", "health"], "weight order: -1 before 0");

        // Refused with the reason, nothing stored.
        let cases = [
            (json!({"provision": "no-such-thing"}), "unknown_provision"),
            (json!({"provision": "tr181"}), "unknown_provision"),
            (json!({"provision": "value", "args": {"path": "Device.WiFi.", "value": "x"}}), "invalid_preset"),
            (json!({"provision": "refresh", "args": {"path": "Device..X"}}), "invalid_preset"),
            (json!({"provision": "reboot", "args": {"delay": "5"}}), "invalid_preset"),
            (json!({"provision": "reboot", "tags": ["bad tag"]}), "invalid_preset"),
            (json!({"provision": "reboot", "schedule": {"interval_seconds": 1}}), "invalid_preset"),
            (json!({"provision": "reboot", "precondition": [{"path": "Device.X", "op": "eq"}]}), "invalid_preset"),
            (json!({"provision": "download", "args": {"url": "ftp://x/fw.bin"}}), "invalid_preset"),
        ];
        for (body, code) in cases {
            let (status, problem) = put_preset(&h, &tenant, "broken", body.clone()).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {problem}");
            assert_eq!(problem["code"], code, "{body}: {problem}");
        }
        let (status, problem) = put_preset(&h, &tenant, "broken", json!({"provision": "reboot", "colour": "red"})).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "unknown fields are refused: {problem}");
        assert_eq!(problem["code"], "invalid_body");
        let response = h.http.get(h.url("/api/v1/presets/broken")).bearer_auth(&tenant).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::NOT_FOUND);

        // The platform's presets are its own; the tenant's are not visible there.
        let response = h.http.get(h.url("/api/v1/presets/health")).bearer_auth(&admin).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
        let response = h.http.delete(h.url("/api/v1/presets/health")).bearer_auth(&tenant).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::NO_CONTENT);
        let response = h.http.delete(h.url("/api/v1/presets/health")).bearer_auth(&tenant).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
        h.finish().await;
    }
}

on_both_backends! {
    async fn adapter_usage_names_the_adapter_each_kind_of_device_gets(backend: Backend) {
        let h = Harness::start(backend).await;
        let tr098 = h.fleet(DataModelKind::Tr098, 3, "KINDA").await;
        let tr181 = h.fleet(DataModelKind::Tr181, 2, "KINDB").await;
        for fleet in [&tr098, &tr181] {
            for i in 0..fleet.len() {
                let report = fleet.device(i).inform_now(&[]).await.unwrap();
                assert!(report.is_ok(), "{:?}", report.error);
            }
        }
        let (status, usage) = h.get("/api/v1/adapter-usage").await;
        assert_eq!(status, StatusCode::OK, "{usage}");
        let kinds = usage["kinds"].as_array().unwrap();
        for (fleet, devices) in [(&tr098, 3), (&tr181, 2)] {
            // The kind is the one the device page describes, and its adapter is the one the
            // device page names: the choice sessions make.
            let device = h.device(&fleet.device(0).device_id()).await;
            let kind = kinds
                .iter()
                .find(|k| {
                    ["oui", "product_class", "software_version", "hardware_version", "manufacturer", "data_model"]
                        .iter()
                        .all(|field| k[field] == device[field])
                })
                .unwrap_or_else(|| panic!("no kind for {device} in {usage}"));
            assert_eq!(kind["devices"], devices, "{kind}");
            assert!(device["adapter"].is_object(), "a shipped adapter handles it: {device}");
            assert_eq!(kind["adapter"]["plugin"], device["adapter"]["plugin"], "{kind} vs {device}");
            assert_eq!(kind["adapter"]["version"], device["adapter"]["version"], "{kind} vs {device}");
            assert_eq!(kind["adapter"]["owner"], "platform", "{kind}");
            // The kind's fields, as device-list filters, list exactly its devices.
            // (The fleet's devices are pending: no organization claimed them.)
            assert!(kind["org"].is_null(), "{kind}");
            let mut filter: Vec<String> =
                ["manufacturer", "oui", "product_class", "software_version", "hardware_version", "data_model"]
                    .iter()
                    .map(|f| format!("{f}={}", encode_id(kind[f].as_str().unwrap())))
                    .collect();
            filter.push("pending=true".into());
            let (status, listed) = h.get(&format!("/api/v1/devices?fields=id&{}", filter.join("&"))).await;
            assert_eq!(status, StatusCode::OK, "{listed}");
            let mut ids: Vec<&str> = listed["items"].as_array().unwrap().iter().map(|d| d["id"].as_str().unwrap()).collect();
            ids.sort_unstable();
            let mut expected: Vec<String> = (0..fleet.len()).map(|i| fleet.device(i).device_id()).collect();
            expected.sort_unstable();
            assert_eq!(ids, expected, "{filter:?}");
        }
        // Per adapter, the devices whose own page names it.
        let mut expected: std::collections::BTreeMap<String, i64> = Default::default();
        for fleet in [&tr098, &tr181] {
            for i in 0..fleet.len() {
                let device = h.device(&fleet.device(i).device_id()).await;
                let plugin = device["adapter"]["plugin"].as_str().unwrap().to_owned();
                *expected.entry(plugin).or_default() += 1;
            }
        }
        let totals: std::collections::BTreeMap<String, i64> = usage["adapters"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| (a["plugin"].as_str().unwrap().to_owned(), a["devices"].as_i64().unwrap()))
            .collect();
        assert_eq!(totals, expected, "{usage}");
        assert_eq!(usage["unclaimed"], 0, "{usage}");
        // An organization the caller cannot see is not found.
        let (status, problem) = h.get("/api/v1/adapter-usage?org=nowhere").await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{problem}");
        tr098.stop().await;
        tr181.stop().await;
        h.finish().await;
    }
}
