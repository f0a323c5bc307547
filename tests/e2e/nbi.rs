//! The GenieACS-compatible NBI: what a billing integration written for GenieACS sends, with an
//! API key, scoped to the key's organization.

use std::time::Duration;

use reqwest::StatusCode;
use roost_tests::on_both_backends;

use super::*;

/// A GET of the NBI with an API key in `X-API-Key`, as GenieACS clients add a header.
async fn nbi_get(h: &Harness, key: &str, path: &str, query: &[(&str, &str)]) -> (StatusCode, JsonValue) {
    let url = reqwest::Url::parse_with_params(&h.url(path), query).unwrap();
    let response = h.http.get(url).header("X-API-Key", key).send().await.unwrap();
    let status = response.status();
    (status, response.json().await.unwrap_or(JsonValue::Null))
}

fn ids(documents: &JsonValue) -> Vec<String> {
    documents.as_array().unwrap().iter().map(|d| d["_id"].as_str().unwrap().to_owned()).collect()
}

async fn fleet_in(h: &Harness, org: &str, devices: usize, prefix: &str) -> Fleet {
    let model = std::sync::Arc::new(DataModel::bundled(DataModelKind::Tr098).unwrap());
    let mut config = FleetConfig::new(format!("{}cwmp/{org}", h.cwmp_url()), model);
    config.start = StartMode::Manual;
    config.retry = false;
    config.devices = devices;
    config.serial_prefix = prefix.into();
    config.cr_min_interval = Duration::from_millis(0);
    let fleet = Fleet::start(config).await.unwrap();
    for i in 0..devices {
        assert!(fleet.device(i).inform_now(&[]).await.unwrap().is_ok());
    }
    fleet
}

on_both_backends! {
    async fn a_genieacs_integration_works_with_a_new_base_url_and_a_key(backend: Backend) {
        let h = Harness::start(backend).await;
        h.org("isp-a", None).await;
        h.org("isp-b", None).await;
        let admin_a = h.user("isp-a", "admin@isp-a.example", "org-admin").await;
        let (status, created) = h
            .request_as(&admin_a, reqwest::Method::POST, "/api/v1/api-keys", Some(json!({"name": "billing", "role": "advanced"})))
            .await;
        assert_eq!(status, StatusCode::CREATED);
        let key = created["key"].as_str().unwrap().to_owned();
        let ours = fleet_in(&h, "isp-a", 3, "NBIA").await;
        let theirs = fleet_in(&h, "isp-b", 1, "NBIB").await;
        let first = ours.device(0).device_id();

        // Everything of ours, nothing of theirs.
        let (status, all) = nbi_get(&h, &key, "/nbi/devices/", &[("query", "{}")]).await;
        assert_eq!(status, StatusCode::OK, "{all}");
        assert_eq!(ids(&all).len(), 3);
        assert!(!all.to_string().contains("NBIB"));
        let query = json!({"_deviceId._SerialNumber": theirs.device(0).serial_number()}).to_string();
        let (_, none) = nbi_get(&h, &key, "/nbi/devices/", &[("query", &query)]).await;
        assert_eq!(none, json!([]), "another tenant's serial finds nothing");

        // A query and a projection as GenieACS users write them.
        let serial = ours.device(0).serial_number().to_owned();
        let query = json!({"_deviceId._SerialNumber": serial}).to_string();
        let projection = "_deviceId._SerialNumber,InternetGatewayDevice.DeviceInfo.SoftwareVersion";
        let (_, found) = nbi_get(&h, &key, "/nbi/devices/", &[("query", &query), ("projection", projection)]).await;
        assert_eq!(ids(&found), vec![first.clone()]);
        let document = &found[0];
        assert_eq!(document["_deviceId"]["_SerialNumber"], serial);
        let version = &document["InternetGatewayDevice"]["DeviceInfo"]["SoftwareVersion"];
        assert!(version["_value"].is_string(), "{document}");
        assert_eq!(version["_type"], "xsd:string");
        assert!(version["_timestamp"].is_string());
        assert!(document.get("_tags").is_none() && document["InternetGatewayDevice"].get("LANDevice").is_none(), "projected: {document}");
        let stored = h.stored_value(&first, "InternetGatewayDevice.DeviceInfo.SoftwareVersion").await.unwrap();
        let query = json!({"InternetGatewayDevice.DeviceInfo.SoftwareVersion._value": stored}).to_string();
        let (_, by_value) = nbi_get(&h, &key, "/nbi/devices/", &[("query", &query), ("projection", "_id")]).await;
        assert_eq!(ids(&by_value).len(), 3, "by a parameter's value");
        let query = json!({"InternetGatewayDevice.DeviceInfo.SoftwareVersion": {"$ne": stored}}).to_string();
        let (_, other) = nbi_get(&h, &key, "/nbi/devices/", &[("query", &query)]).await;
        assert_eq!(other, json!([]));
        let query = json!({"_lastInform": {"$gt": "2020-01-01T00:00:00Z"}, "_id": {"$in": [first.clone(), "nope"]}}).to_string();
        let (_, recent) = nbi_get(&h, &key, "/nbi/devices/", &[("query", &query), ("projection", "_id")]).await;
        assert_eq!(ids(&recent), vec![first.clone()]);
        let pattern = format!("{}$", ours.device(2).serial_number().to_lowercase());
        let query = json!({"_id": {"$regex": pattern, "$options": "i"}}).to_string();
        let (_, by_regex) = nbi_get(&h, &key, "/nbi/devices/", &[("query", &query), ("projection", "_id")]).await;
        assert_eq!(ids(&by_regex), [ours.device(2).device_id()]);
        let (_, sorted) = nbi_get(&h, &key, "/nbi/devices/", &[("query", "{}"), ("projection", "_id"), ("sort", r#"{"_id": -1}"#), ("limit", "2")]).await;
        let mut expected: Vec<String> = (0..3).map(|i| ours.device(i).device_id()).collect();
        expected.sort();
        expected.reverse();
        assert_eq!(ids(&sorted), expected[..2]);

        // Tags, then a query by tag.
        let tag_path = format!("/nbi/devices/{}/tags/vip", encode_id(&first));
        let tagged = h.http.post(h.url(&tag_path)).header("X-API-Key", &key).send().await.unwrap();
        assert_eq!(tagged.status(), StatusCode::OK, "as GenieACS answers");
        let (_, vip) = nbi_get(&h, &key, "/nbi/devices/", &[("query", r#"{"_tags": "vip"}"#), ("projection", "_id,_tags")]).await;
        assert_eq!(ids(&vip), vec![first.clone()]);
        assert_eq!(vip[0]["_tags"], json!(["vip"]));

        // A task run now (200), one queued (202), listed and deleted.
        let task = json!({"name": "getParameterValues", "parameterNames": ["InternetGatewayDevice.DeviceInfo.UpTime"]});
        let path = format!("/nbi/devices/{}/tasks?connection_request&timeout=15000", encode_id(&first));
        let ran = h.http.post(h.url(&path)).header("X-API-Key", &key).json(&task).send().await.unwrap();
        assert_eq!(ran.status(), StatusCode::OK);
        let ran: JsonValue = ran.json().await.unwrap();
        assert_eq!((ran["device"].as_str(), ran["name"].as_str()), (Some(first.as_str()), Some("getParameterValues")));
        assert!(ran["_id"].is_string());
        let path = format!("/nbi/devices/{}/tasks", encode_id(&ours.device(1).device_id()));
        let queued = h.http.post(h.url(&path)).header("X-API-Key", &key).json(&json!({"name": "reboot"})).send().await.unwrap();
        assert_eq!(queued.status(), StatusCode::ACCEPTED);
        let queued: JsonValue = queued.json().await.unwrap();
        let query = json!({"device": ours.device(1).device_id()}).to_string();
        let (_, listed) = nbi_get(&h, &key, "/nbi/tasks/", &[("query", &query)]).await;
        assert_eq!(ids(&listed), [queued["_id"].as_str().unwrap().to_owned()]);
        let deleted = h.http.delete(h.url(&format!("/nbi/tasks/{}", queued["_id"].as_str().unwrap()))).header("X-API-Key", &key).send().await.unwrap();
        assert_eq!(deleted.status(), StatusCode::OK);
        let (_, faults) = nbi_get(&h, &key, "/nbi/faults/", &[]).await;
        assert_eq!(faults, json!([]));

        // Presets, in Roost's shape.
        let preset = json!({"provision": "reboot", "weight": 0, "events": ["0 BOOTSTRAP"], "tags": ["never"]});
        let put = h.http.put(h.url("/nbi/presets/nbi-test")).header("X-API-Key", &key).json(&preset).send().await.unwrap();
        assert_eq!(put.status(), StatusCode::OK, "as GenieACS answers");
        let (status, shown) = nbi_get(&h, &key, "/nbi/presets/nbi-test", &[]).await;
        assert_eq!((status, shown["provision"].as_str()), (StatusCode::OK, Some("reboot")));
        let removed = h.http.delete(h.url("/nbi/presets/nbi-test")).header("X-API-Key", &key).send().await.unwrap();
        assert_eq!(removed.status(), StatusCode::OK, "as GenieACS answers");

        // Malformed queries are 400s that say what is wrong.
        for (query, says) in [
            ("{not json", "not JSON"),
            (r#"{"_id": {"$where": "sleep(1)"}}"#, "unknown operator $where"),
            (r#"{"_id": {"$regex": "(x{1000}){1000}"}}"#, "$regex"),
            (r#"{"$or": [{"_id": {"$regex": "a"}}]}"#, "top level"),
        ] {
            let (status, problem) = nbi_get(&h, &key, "/nbi/devices/", &[("query", query)]).await;
            assert_eq!((status, problem["code"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_query")), "{query}");
            assert!(problem["detail"].as_str().unwrap().contains(says), "{query}: {problem}");
        }
        // Without a key, nothing.
        let anonymous = h.http.get(h.url("/nbi/devices/")).send().await.unwrap();
        assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
        h.finish().await;
    }
}

/// A PUT of a file as GenieACS clients send one: the name in the path, the labels in headers.
async fn nbi_put_file(
    h: &Harness,
    key: &str,
    name: &str,
    labels: &[(&str, &str)],
    contents: Vec<u8>,
) -> (StatusCode, JsonValue) {
    let mut request = h.http.put(h.url(&format!("/nbi/files/{name}"))).header("X-API-Key", key).body(contents);
    for (header, value) in labels {
        request = request.header(*header, *value);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    (status, response.json().await.unwrap_or(JsonValue::Null))
}

on_both_backends! {
    async fn files_are_put_by_name_replaced_downloaded_and_deleted_as_genieacs_clients_do(backend: Backend) {
        let h = Harness::start(backend).await;
        h.org("isp-a", None).await;
        h.org("isp-b", None).await;
        let key_of = |org: &'static str, role: &'static str| {
            let h = &h;
            async move {
                let admin = h.user(org, &format!("admin-{role}@{org}.example"), "org-admin").await;
                let (status, created) = h
                    .request_as(&admin, reqwest::Method::POST, "/api/v1/api-keys", Some(json!({"name": role, "role": role})))
                    .await;
                assert_eq!(status, StatusCode::CREATED, "{created}");
                created["key"].as_str().unwrap().to_owned()
            }
        };
        let key = key_of("isp-a", "advanced").await;
        let reader = key_of("isp-a", "read-only").await;
        let theirs = key_of("isp-b", "advanced").await;
        let ours = fleet_in(&h, "isp-a", 1, "NBIF").await;
        let cpe = ours.device(0);
        let version_path = format!("{}DeviceInfo.SoftwareVersion", cpe.root());

        let labels = [("fileType", "1 Firmware Upgrade Image"), ("oui", "00259E"), ("productClass", "HG8245H"), ("version", "V2")];
        let first = roost_sim::firmware_image("V2", 8 * 1024);
        let (status, put) = nbi_put_file(&h, &key, "fw.bin", &labels, first.clone()).await;
        assert_eq!(status, StatusCode::OK, "as GenieACS answers: {put}");
        assert_eq!((put["_id"].as_str(), put["filename"].as_str(), put["length"].as_u64()), (Some("fw.bin"), Some("fw.bin"), Some(first.len() as u64)), "{put}");
        assert_eq!(put["metadata"]["productClass"], "HG8245H", "{put}");
        assert_eq!(put["metadata"]["version"], "V2", "{put}");
        // The same file as the firmware store shows it, in the key's organization.
        let (_, stored) = h.get("/api/v1/files?name=fw.bin").await;
        let id = stored["items"][0]["id"].as_str().unwrap().to_owned();
        assert_eq!(stored["items"][0]["org"], "isp-a", "{stored}");

        // Listed and queried as GenieACS lists files; another tenant sees none of it.
        let (status, listed) = nbi_get(&h, &key, "/nbi/files/", &[]).await;
        assert_eq!((status, ids(&listed)), (StatusCode::OK, vec!["fw.bin".to_owned()]), "{listed}");
        let (_, found) = nbi_get(&h, &key, "/nbi/files/", &[("query", r#"{"filename": "fw.bin"}"#)]).await;
        assert_eq!(ids(&found), ["fw.bin"]);
        let (_, none) = nbi_get(&h, &key, "/nbi/files/", &[("query", r#"{"metadata.version": "V1"}"#)]).await;
        assert_eq!(none, json!([]));
        let (_, foreign) = nbi_get(&h, &theirs, "/nbi/files/", &[]).await;
        assert_eq!(foreign, json!([]), "another tenant's key");
        let (status, problem) = nbi_get(&h, &key, "/nbi/files/", &[("query", r#"{"length": 1}"#)]).await;
        assert_eq!((status, problem["code"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_query")), "{problem}");

        // Put again: replaced in place, its id kept; a download task by name installs the new one.
        let second = roost_sim::firmware_image("V3", 12 * 1024);
        let labels = [("fileType", "1 Firmware Upgrade Image"), ("version", "V3")];
        let (status, replaced) = nbi_put_file(&h, &key, "fw.bin", &labels, second.clone()).await;
        assert_eq!((status, replaced["length"].as_u64()), (StatusCode::OK, Some(second.len() as u64)), "{replaced}");
        assert!(replaced["metadata"].get("productClass").is_none(), "labels are the new put's: {replaced}");
        let (_, shown) = h.get(&format!("/api/v1/files/{id}")).await;
        assert_eq!((shown["version"].as_str(), shown["size"].as_u64()), (Some("V3"), Some(second.len() as u64)), "{shown}");
        assert_eq!(std::fs::read_dir(h.app().config.data_dir.join("files")).unwrap().count(), 1, "the first contents are gone");
        let path = format!("/nbi/devices/{}/tasks?connection_request&timeout=20000", encode_id(&cpe.device_id()));
        let task = json!({"name": "download", "file": "fw.bin"});
        let ran = h.http.post(h.url(&path)).header("X-API-Key", &key).json(&task).send().await.unwrap();
        assert_eq!(ran.status(), StatusCode::OK, "{:?}", ran.text().await);
        assert_eq!(cpe.value(&version_path).as_deref(), Some("V3"), "the replaced image was the one served");

        // Refused: a read-only key, a file type CWMP has not, another tenant deleting it.
        let (status, _) = nbi_put_file(&h, &reader, "other.bin", &[], vec![1; 10]).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        let (status, problem) = nbi_put_file(&h, &key, "other.bin", &[("fileType", "9 Nonsense")], vec![1; 10]).await;
        assert_eq!((status, problem["code"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_file")), "{problem}");
        let gone = h.http.delete(h.url("/nbi/files/fw.bin")).header("X-API-Key", &theirs).send().await.unwrap();
        assert_eq!(gone.status(), StatusCode::NOT_FOUND, "not theirs to delete");
        let (_, still) = nbi_get(&h, &key, "/nbi/files/", &[]).await;
        assert_eq!(ids(&still), ["fw.bin"]);

        // Deleted by name, as GenieACS answers; then nothing to delete.
        let deleted = h.http.delete(h.url("/nbi/files/fw.bin")).header("X-API-Key", &key).send().await.unwrap();
        assert_eq!(deleted.status(), StatusCode::OK);
        let (_, after) = nbi_get(&h, &key, "/nbi/files/", &[]).await;
        assert_eq!(after, json!([]));
        assert_eq!(std::fs::read_dir(h.app().config.data_dir.join("files")).unwrap().count(), 0);
        let again = h.http.delete(h.url("/nbi/files/fw.bin")).header("X-API-Key", &key).send().await.unwrap();
        assert_eq!(again.status(), StatusCode::NOT_FOUND);
        h.finish().await;
    }
}
