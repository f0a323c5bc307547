//! Bulk actions over simulated devices: a Wi-Fi key rotation over 220 devices of one plan whose
//! connection requests, observed at the devices, keep to the organization's rate, across a
//! server restart in the middle, each device ending with a key of its own; a cancel that stops
//! what has not started; wrong requests refused.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use reqwest::StatusCode;
use roost::config::{Config, CpeAuthMode};
use roost_tests::on_both_backends;

use super::*;

/// Connection requests per second the organization's devices are woken at.
const RATE: u32 = 40;
const DEVICES: usize = 220;

fn paced(config: &mut Config) {
    config.jobs.tick = Duration::from_millis(200);
    config.jobs.connection_requests_per_second = RATE;
    config.jobs.rewake_after = Duration::from_secs(2);
}

async fn wait_bulk(h: &Harness, id: &str, what: &str, done: impl Fn(&JsonValue) -> bool) -> JsonValue {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (status, bulk) = h.get(&format!("/api/v1/bulk/{id}?limit=1000")).await;
        assert_eq!(status, StatusCode::OK, "{bulk}");
        if done(&bulk) {
            return bulk;
        }
        assert!(Instant::now() < deadline, "waiting for {what}: {}", bulk["totals"]);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

on_both_backends! {
    async fn a_wifi_key_rotation_over_a_plan_keeps_to_the_rate_across_a_restart(backend: Backend) {
        let mut h = Harness::start_configured(backend, CpeAuthMode::Open, paced).await;
        h.org("isp-bulk", None).await;
        let model = Arc::new(DataModel::bundled(DataModelKind::Tr098).unwrap());
        let mut config = FleetConfig::new(format!("{}cwmp/isp-bulk", h.cwmp_url()), model);
        config.devices = DEVICES;
        config.serial_prefix = "BLK".into();
        config.start = StartMode::Manual;
        config.retry = false;
        config.reboot_delay = Duration::from_millis(200);
        config.cr_min_interval = Duration::ZERO;
        let fleet = Fleet::start(config).await.unwrap();
        futures::stream::iter(fleet.devices().iter().cloned())
            .for_each_concurrent(8, |cpe| async move { assert!(cpe.inform_now(&[]).await.unwrap().is_ok()) })
            .await;
        // The plan: every device but the last 20 carries its tag.
        for cpe in &fleet.devices()[..DEVICES - 20] {
            let path = format!("/api/v1/devices/{}/tags/plan-gold", encode_id(&cpe.device_id()));
            let (status, body) = h.put(&path, json!({})).await;
            assert!(status.is_success(), "{status} {body}");
        }

        // Wrong requests: 422 problems, nothing made.
        for (body, detail) in [
            (json!({"query": "{not json", "action": {"name": "reboot"}}), "does not parse"),
            (json!({"query": {"_tags": "plan-none"}, "action": {"name": "reboot"}}), "no device"),
            (json!({"query": {"_tags": "plan-gold"}, "action": {"name": "selfDestruct"}}), "unknown name"),
            (json!({"query": {"_tags": "plan-gold"}, "action": {"name": "rotateWifiKey", "band": "9"}}), "band"),
            (json!({"query": {"_nonsense": 1}, "action": {"name": "reboot"}}), "query"),
        ] {
            let (status, problem) = h.post("/api/v1/bulk", body).await;
            assert_eq!((status, problem["code"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("invalid_bulk")), "{problem}");
            assert!(problem["detail"].as_str().unwrap().contains(detail), "{detail}: {problem}");
        }

        let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
        let query = json!({"_tags": "plan-gold", "_deviceId._ProductClass": "EG8145V5"});
        let (status, created) = h.post("/api/v1/bulk", json!({"query": query, "action": {"name": "rotateWifiKey"}, "org": "isp-bulk"})).await;
        assert_eq!(status, StatusCode::CREATED, "{created}");
        assert_eq!(created["devices"], DEVICES - 20, "{created}");
        let id = created["id"].as_str().unwrap().to_owned();

        // A restart in the middle: the action goes on where it was.
        wait_bulk(&h, &id, "a quarter of the devices to be done", |b| b["totals"]["done"].as_u64().unwrap_or(0) >= 50).await;
        h.restart().await;
        let done = wait_bulk(&h, &id, "the rotation to complete", |b| b["state"] == "completed").await;
        assert_eq!(done["totals"]["done"], DEVICES - 20, "{}", done["totals"]);

        // Each device has a key of its own, the one the action reports (Huawei keeps it in
        // `PreSharedKey.1.PreSharedKey`), and got one task.
        let items = done["device_page"]["items"].as_array().unwrap();
        let mut keys = std::collections::HashSet::new();
        for item in items {
            let key = item["wifi_key"].as_str().unwrap();
            assert!(keys.insert(key.to_owned()), "a key given twice: {key}");
            let cpe = fleet.devices().iter().find(|d| d.device_id() == item["device_id"].as_str().unwrap()).unwrap();
            let applied = cpe.with_state(|state| state.tree.walk(state.tree.root()).any(|(path, node)| (path.ends_with("KeyPassphrase") || path.ends_with("PreSharedKey")) && node.value == key));
            assert!(applied, "{} does not have its key {key}", item["device_id"]);
            let pk = roost::store::devices::by_device_id(&h.app().store, item["device_id"].as_str().unwrap()).await.unwrap().unwrap().id;
            let tasks = roost::store::tasks::list_for_device(&h.app().store, pk, None, 100).await.unwrap();
            assert_eq!(tasks.iter().filter(|t| t.name == "configureWifi").count(), 1, "{}", item["device_id"]);
            // The stored task shows no key.
            assert!(tasks.iter().all(|t| !t.body.contains(key)));
        }
        // The devices outside the plan were left alone.
        for cpe in &fleet.devices()[DEVICES - 20..] {
            assert!(cpe.sessions().iter().all(|s| !s.has_event("6 CONNECTION REQUEST")), "{}", cpe.serial_number());
        }

        // The connection requests, as the devices saw them: never much more than the rate in any
        // second, and so spread over the time the rate takes, not a storm. Roost paces the
        // requests it sends; the devices see them after a lookup, an HTTP exchange and a session's
        // start, whose time varies on a loaded runner: a quarter of the rate more (250 ms of such
        // jitter) is allowed. A burst, such as a restart resending what it had sent, is far more.
        let mut woken: Vec<i64> = fleet.devices()[..DEVICES - 20]
            .iter()
            .flat_map(|cpe| cpe.sessions())
            .filter(|s| s.started_at.timestamp_millis() >= since && s.has_event("6 CONNECTION REQUEST"))
            .map(|s| s.started_at.timestamp_millis())
            .collect();
        woken.sort_unstable();
        assert!(woken.len() >= DEVICES - 20, "{} sessions woken", woken.len());
        let busiest = woken.iter().enumerate().map(|(i, at)| woken[i..].iter().take_while(|t| **t < at + 1000).count()).max().unwrap();
        assert!(busiest <= (RATE + RATE / 4) as usize, "{busiest} connection requests within one second, past the rate of {RATE}");
        let spread = woken.last().unwrap() - woken.first().unwrap();
        let least = (DEVICES as i64 - 20 - 1) * 1000 / i64::from(RATE);
        assert!(spread >= least * 9 / 10, "{} devices woken within {spread} ms", woken.len());
        let completed = roost::store::events::list(&h.app().store, &roost::store::orgs::Scope::All, Some("bulk.completed"), None, 10).await.unwrap();
        assert_eq!(completed.len(), 1);

        // A cancel stops what has not started; a cancelled action cannot be cancelled again.
        let (status, reboot) = h.post("/api/v1/bulk", json!({"query": {}, "action": {"name": "reboot"}, "org": "isp-bulk"})).await;
        assert_eq!((status, reboot["devices"].as_u64()), (StatusCode::CREATED, Some(DEVICES as u64)), "{reboot}");
        let reboot_id = reboot["id"].as_str().unwrap().to_owned();
        let (status, cancelled) = h.post(&format!("/api/v1/bulk/{reboot_id}/cancel"), json!({})).await;
        assert_eq!((status, cancelled["state"].as_str()), (StatusCode::OK, Some("cancelled")), "{cancelled}");
        assert!(cancelled["totals"]["cancelled"].as_u64().unwrap() > 100, "{cancelled}");
        let (status, again) = h.post(&format!("/api/v1/bulk/{reboot_id}/cancel"), json!({})).await;
        assert_eq!((status, again["code"].as_str()), (StatusCode::CONFLICT, Some("bulk_state")), "{again}");
        let finished = wait_bulk(&h, &reboot_id, "the cancelled action to finish", |b| b["finished_at"].is_string()).await;
        let started = finished["totals"]["done"].as_u64().unwrap_or(0) + finished["totals"]["failed"].as_u64().unwrap_or(0);
        assert_eq!(started + finished["totals"]["cancelled"].as_u64().unwrap(), DEVICES as u64, "{}", finished["totals"]);
        h.finish().await;
    }
}
