//! Device health over REST: the `health` preset's figures stored as time series (raw points and
//! hourly roll-ups) on the Huawei EG8145V5 (TR-098, with its GPON optics) and TP-Link XX230v
//! (TR-181) trees; presence from the last Inform against the periodic interval, with
//! `device.online` / `device.offline`; and the dashboard over the caller's scope.

use std::time::Duration;

use reqwest::StatusCode;
use roost::config::CpeAuthMode;
use roost::store::devices::presence;
use roost::store::now_millis;
use roost_tests::on_both_backends;
use sea_orm::ConnectionTrait;

use super::*;

async fn events_of(h: &Harness, kind: &str) -> Vec<JsonValue> {
    let rows = roost::store::events::list(&h.app().store, &roost::store::orgs::Scope::All, Some(kind), None, 100)
        .await
        .unwrap();
    rows.into_iter().map(|e| serde_json::from_str(&e.payload).unwrap()).collect()
}

async fn put_preset(h: &Harness, name: &str, preset: JsonValue) {
    let (status, body) = h.put(&format!("/api/v1/presets/{name}"), preset).await;
    assert!(status.is_success(), "{body}");
}

fn health_preset(max_age: &str) -> JsonValue {
    json!({"events": ["2 PERIODIC"], "provision": "health", "args": {"max-age": max_age}})
}

async fn metrics(h: &Harness, id: &str, query: &str) -> JsonValue {
    let (status, answer) = h.get(&format!("/api/v1/devices/{}/metrics{query}", encode_id(id))).await;
    assert_eq!(status, StatusCode::OK, "{query}: {answer}");
    answer
}

fn series<'a>(answer: &'a JsonValue, name: &str) -> &'a Vec<JsonValue> {
    answer["series"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("no {name}: {answer}"))["points"]
        .as_array()
        .unwrap()
}

/// The test writes and sweeps itself, at the moments it checks.
fn quiet_background(config: &mut roost::config::Config) {
    config.health.flush_interval = Duration::from_secs(3600);
    config.health.presence_interval = Duration::from_secs(3600);
}

/// Moves a device's presence deadline, as if its last Inform were ten minutes before it.
async fn set_offline_at(h: &Harness, id: &str, at: i64) {
    let store = &h.app().store;
    let sql = "UPDATE devices SET offline_at = ?, last_inform_at = ? WHERE device_id = ?";
    store.db().execute_raw(store.statement(sql, [at.into(), (at - 600_000).into(), id.into()])).await.unwrap();
}

const GRACE: i64 = 600_000;

on_both_backends! {
    async fn health_figures_become_time_series_on_both_data_models(backend: Backend) {
        let h = Harness::start_configured(backend, CpeAuthMode::Open, quiet_background).await;
        let huawei = h.fleet(DataModelKind::Tr098, 1, "HEALTH").await;
        let tplink = h.fleet(DataModelKind::Tr181, 1, "HEALTH").await;
        let buffer = &h.app().provisioning.metrics;
        put_preset(&h, "health", health_preset("1")).await;
        for (fleet, model_figures) in [
            (&huawei, &["cpu_percent", "memory_free_kib", "wan_bytes_received", "optical_rx_dbm", "optical_tx_dbm"][..]),
            (&tplink, &["cpu_percent", "memory_free_kib", "wan_bytes_received", "wifi_clients"][..]),
        ] {
            let cpe = fleet.device(0);
            let id = cpe.device_id();
            assert!(cpe.inform_now(&[]).await.unwrap().is_ok());
            // Each periodic session past the max-age reads the figures again: fresh ones, stored.
            for _ in 0..3 {
                tokio::time::sleep(Duration::from_millis(1100)).await;
                let report = cpe.inform_now(&["2 PERIODIC"]).await.unwrap();
                assert!(report.is_ok(), "{:?}", report.error);
            }
            assert!(!buffer.is_empty(), "the figures wait for the batched write");
            roost::health::jobs::flush(h.app()).await;
            assert!(buffer.is_empty());

            let raw = metrics(&h, &id, "").await;
            assert_eq!(raw["device_id"], id.as_str());
            let uptime = series(&raw, "uptime_seconds");
            assert!(uptime.len() >= 3, "a point per fresh report: {raw}");
            let values: Vec<f64> = uptime.iter().map(|p| p["value"].as_f64().unwrap()).collect();
            assert!(values.windows(2).all(|w| w[0] < w[1]), "uptime grows: {values:?}");
            for figure in model_figures {
                assert!(!series(&raw, figure).is_empty(), "{figure}: {raw}");
            }
            let rx = series(&raw, "wan_bytes_received");
            assert!(rx.last().unwrap()["value"].as_f64() > rx[0]["value"].as_f64(), "the counters move: {rx:?}");

            // The hourly roll-up holds the same points: count, least, mean, greatest.
            let hourly = metrics(&h, &id, "?names=uptime_seconds,cpu_percent&step=1h").await;
            assert_eq!(hourly["step_seconds"], 3600);
            assert_eq!(hourly["series"].as_array().unwrap().len(), 2, "only the figures asked for");
            let buckets = series(&hourly, "uptime_seconds");
            let count: i64 = buckets.iter().map(|b| b["count"].as_i64().unwrap()).sum();
            assert_eq!(count, uptime.len() as i64, "{hourly}");
            let last = buckets.last().unwrap();
            assert!(last["min"].as_f64() <= last["avg"].as_f64() && last["avg"].as_f64() <= last["max"].as_f64());
            assert_eq!(last["max"].as_f64(), Some(*values.last().unwrap()));
            let five = metrics(&h, &id, "?names=uptime_seconds&step=5m").await;
            let count: i64 = series(&five, "uptime_seconds").iter().map(|b| b["count"].as_i64().unwrap()).sum();
            assert_eq!(count, uptime.len() as i64, "buckets of raw points: {five}");
            // A range with none of the points.
            let old = metrics(&h, &id, "?from=2020-01-01T00:00:00Z&to=2020-01-02T00:00:00Z&step=1h").await;
            assert!(series(&old, "uptime_seconds").is_empty(), "{old}");
        }

        // Past their retention, points go, a few a statement; the roll-ups outlive them.
        let store = &h.app().store;
        let id = tplink.device(0).device_id();
        let raw_points = |answer: &JsonValue| -> usize {
            answer["series"].as_array().unwrap().iter().map(|s| s["points"].as_array().unwrap().len()).sum()
        };
        let before = raw_points(&metrics(&h, &id, "").await);
        assert!(before > 3, "{before}");
        let everything_raw = now_millis() + 1;
        let pruned = roost::store::metrics::prune(store, everything_raw, 0, 2).await.unwrap();
        assert!(pruned >= before as u64, "both devices' raw points: {pruned}");
        assert_eq!(raw_points(&metrics(&h, &id, "").await), 0);
        let hourly = metrics(&h, &id, "?names=uptime_seconds&step=1h").await;
        assert!(!series(&hourly, "uptime_seconds").is_empty(), "{hourly}");
        assert!(roost::store::metrics::prune(store, 0, now_millis() + 3_600_000, 3).await.unwrap() > 0);
        let hourly = metrics(&h, &id, "?names=uptime_seconds&step=1h").await;
        assert!(series(&hourly, "uptime_seconds").is_empty(), "{hourly}");

        // Figures younger than the max-age are replayed as they were: nothing to store.
        put_preset(&h, "health", health_preset("3600")).await;
        let cpe = huawei.device(0);
        for _ in 0..3 {
            assert!(cpe.inform_now(&["2 PERIODIC"]).await.unwrap().is_ok());
        }
        let written = buffer.len();
        for _ in 0..3 {
            assert!(cpe.inform_now(&["2 PERIODIC"]).await.unwrap().is_ok());
        }
        assert_eq!(buffer.len(), written, "unchanged figures cost nothing");

        // Bad queries name their field and read nothing.
        let id = cpe.device_id();
        for (query, field) in [
            ("?names=cpu", "names"),
            ("?step=90m", "step"),
            ("?step=soon", "step"),
            ("?step=1s&from=2026-01-01T00:00:00Z&to=2026-01-01T23:00:00Z", "step"),
            ("?from=2026-01-02T00:00:00Z&to=2026-01-01T00:00:00Z", "from"),
            ("?from=yesterday", "from"),
        ] {
            let (status, problem) = h.get(&format!("/api/v1/devices/{}/metrics{query}", encode_id(&id))).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {problem}");
            assert_eq!(problem["code"], "invalid_query");
            assert!(problem["detail"].as_str().unwrap().starts_with(field), "{query}: {problem}");
        }
        huawei.stop().await;
        tplink.stop().await;
        h.finish().await;
    }
}

on_both_backends! {
    async fn a_wireless_wan_gateway_s_signal_becomes_time_series(backend: Backend) {
        // The Huawei BM632w (WiMAX, TR-098) reports its signal as text with units: RSSI
        // `-43.70dBm` and CINR `30.53dB`. The shipped Huawei adapter reads them through `radio`
        // (roost:plugin 0.1.1), the shipped `health` provision asks for them.
        let h = Harness::start_configured(backend, CpeAuthMode::Open, quiet_background).await;
        let model = DataModel::load(roost_sim::data_dir().join("huawei-bm632w_tr098_genieacs-sim.csv")).unwrap();
        let gateways = h.fleet_of(model, 1, "WIMAX").await;
        put_preset(&h, "health", health_preset("1")).await;
        let cpe = gateways.device(0);
        let id = cpe.device_id();
        assert!(cpe.inform_now(&[]).await.unwrap().is_ok());
        // Past the preset's max-age of 1 s with room to spare: on a loaded machine the first
        // session's reads can land late in it.
        tokio::time::sleep(Duration::from_millis(2500)).await;
        let report = cpe.inform_now(&["2 PERIODIC"]).await.unwrap();
        assert!(report.is_ok(), "{:?}", report.error);
        roost::health::jobs::flush(h.app()).await;

        let raw = metrics(&h, &id, "?names=cellular_rssi_dbm,cellular_sinr_db,uptime_seconds").await;
        let last = |name: &str| series(&raw, name).last().unwrap_or_else(|| panic!("no {name}: {raw}"))["value"].as_f64();
        assert_eq!(last("cellular_rssi_dbm"), Some(-43.7), "{raw}");
        assert_eq!(last("cellular_sinr_db"), Some(30.53), "{raw}");
        assert!(last("uptime_seconds").is_some(), "{raw}");
        // No provisioning fault on the way.
        let (status, faults) = h.get(&format!("/api/v1/devices/{}/faults", encode_id(&id))).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(faults["items"].as_array().map(Vec::len), Some(0), "{faults}");
        gateways.stop().await;
        h.finish().await;
    }
}

on_both_backends! {
    async fn presence_follows_the_periodic_interval_and_is_reported_once(backend: Backend) {
        let h = Harness::start_configured(backend, CpeAuthMode::Open, quiet_background).await;
        let fleet = h.fleet(DataModelKind::Tr181, 1, "PRESENCE").await;
        let cpe = fleet.device(0);
        let id = cpe.device_id();
        assert!(cpe.inform_now(&[]).await.unwrap().is_ok());
        let (status, claimed) =
            h.post("/api/v1/pending-devices/claim", json!({"serials": [cpe.serial_number()], "org": "platform"})).await;
        assert_eq!(status, StatusCode::OK, "{claimed}");
        let store = &h.app().store;
        let stored = || async { roost::store::devices::by_device_id(store, &id).await.unwrap().unwrap() };

        // The interval the device holds is read with its tree.
        let interval = "Device.ManagementServer.PeriodicInformInterval";
        let held: i64 = cpe.value(interval).unwrap().parse().unwrap();
        assert_eq!(stored().await.inform_interval_s, Some(held));
        let set_interval = |seconds: u32| {
            let h = &h;
            let id = &id;
            async move {
                let url = format!("/api/v1/devices/{}/parameters?wait=30", encode_id(id));
                let (status, done) = h.post(&url, json!({"values": {interval: seconds}})).await;
                assert_eq!(status, StatusCode::OK, "{done}");
            }
        };
        // A device informing every minute gets the ten-minute floor …
        set_interval(60).await;
        assert_eq!(stored().await.inform_interval_s, Some(60));
        assert!(cpe.inform_now(&["2 PERIODIC"]).await.unwrap().is_ok());
        let device = stored().await;
        assert_eq!(device.offline_at.unwrap() - device.last_inform_at.unwrap(), 600_000, "ten minutes at least");
        assert_eq!(h.device(&id).await["online"], true);
        // … an hourly one two intervals and a minute, from the write on: not only from its next
        // Inform, an hour away, which the ten minutes before would not have waited for.
        set_interval(3600).await;
        let device = stored().await;
        assert_eq!(device.offline_at.unwrap() - device.last_inform_at.unwrap(), 2 * 3_600_000 + 60_000, "at the write");
        assert!(cpe.inform_now(&["2 PERIODIC"]).await.unwrap().is_ok());
        let device = stored().await;
        assert_eq!(device.offline_at.unwrap() - device.last_inform_at.unwrap(), 2 * 3_600_000 + 60_000);

        // Online since it first informed (a pending arrival, so no organization's event): the
        // sweep has nothing to report.
        assert!(events_of(&h, "device.online").await.is_empty());
        assert_eq!(presence::sweep(store, now_millis(), GRACE).await.unwrap(), (0, 0));

        // Two hours of silence are within its grace; three are not: offline, once.
        assert_eq!(presence::sweep(store, now_millis() + 2 * 3_600_000, GRACE).await.unwrap(), (0, 0));
        let later = now_millis() + 3 * 3_600_000;
        assert_eq!(presence::sweep(store, later, GRACE).await.unwrap(), (1, 0));
        assert_eq!(presence::sweep(store, later, GRACE).await.unwrap(), (0, 0));
        let offline = events_of(&h, "device.offline").await;
        assert_eq!(offline.len(), 1);
        assert_eq!(offline[0]["device_id"], id.as_str());
        assert!(offline[0]["offline_at"].is_string(), "{}", offline[0]);

        // Back: its next Inform moves the deadline, and the sweep says so.
        set_offline_at(&h, &id, now_millis() - 1).await;
        assert_eq!(h.device(&id).await["online"], false);
        let (_, offline_list) = h.get("/api/v1/devices?online=false").await;
        assert_eq!(offline_list["items"].as_array().unwrap().len(), 1, "{offline_list}");
        assert!(cpe.inform_now(&["2 PERIODIC"]).await.unwrap().is_ok());
        assert_eq!(h.device(&id).await["online"], true);
        let (_, online_list) = h.get("/api/v1/devices?online=true").await;
        assert_eq!(online_list["items"].as_array().unwrap().len(), 1, "{online_list}");
        assert_eq!(presence::sweep(store, now_millis(), GRACE).await.unwrap(), (0, 1));
        let online = events_of(&h, "device.online").await;
        assert_eq!(online.len(), 1, "{online:?}");
        assert_eq!(online[0]["device_id"], id.as_str());
        fleet.stop().await;
        h.finish().await;
    }
}

on_both_backends! {
    async fn the_dashboard_counts_the_callers_fleet(backend: Backend) {
        let h = Harness::start_configured(backend, CpeAuthMode::Open, quiet_background).await;
        h.org("acme", None).await;
        h.org("acme-north", Some("acme")).await;
        h.org("globex", None).await;
        let acme = h.fleet(DataModelKind::Tr098, 2, "DASH-A").await;
        let north = h.fleet(DataModelKind::Tr181, 1, "DASH-N").await;
        let globex = h.fleet(DataModelKind::Tr181, 1, "DASH-G").await;
        let pending = h.fleet(DataModelKind::Tr181, 1, "DASH-P").await;
        for (fleet, org) in [(&acme, Some("acme")), (&north, Some("acme-north")), (&globex, Some("globex")), (&pending, None)] {
            for i in 0..fleet.len() {
                let cpe = fleet.device(i);
                assert!(cpe.inform_now(&[]).await.unwrap().is_ok());
                if let Some(org) = org {
                    let (status, claimed) =
                        h.post("/api/v1/pending-devices/claim", json!({"serials": [cpe.serial_number()], "org": org})).await;
                    assert_eq!(status, StatusCode::OK, "{claimed}");
                }
            }
        }
        // One of acme's devices silent for two hours: offline and stale, once the sweep says so.
        let silent = acme.device(1).device_id();
        set_offline_at(&h, &silent, now_millis() - 2 * 3_600_000).await;
        assert_eq!(presence::sweep(&h.app().store, now_millis(), GRACE).await.unwrap(), (1, 0));
        // A task waiting for it, and a fault of the last day.
        let (status, task) = h.post(&format!("/api/v1/devices/{}/tasks", encode_id(&silent)), json!({"name": "reboot"})).await;
        assert!(status.is_success(), "{task}");
        let device = roost::store::devices::by_device_id(&h.app().store, &silent).await.unwrap().unwrap();
        roost::store::faults::record(
            &h.app().store, device.id, "preset:x", roost::fault_code::FaultCode::Cwmp(9002), "refused", None,
        )
        .await
        .unwrap();

        let acme_admin = h.user("acme", "ops@acme.example", "org-admin").await;
        let (status, board) = h.request_as(&acme_admin, reqwest::Method::GET, "/api/v1/dashboard", None).await;
        assert_eq!(status, StatusCode::OK, "{board}");
        assert_eq!(board["devices"]["total"], 3, "acme and the organization below it: {board}");
        assert_eq!(board["devices"]["online"], 2);
        assert_eq!(board["devices"]["offline"], 1);
        assert_eq!(board["devices"]["stale"], 1);
        assert!(board["devices"].get("pending").is_none(), "pending devices are the platform's: {board}");
        let models = board["models"].as_array().unwrap();
        assert_eq!(models.len(), 2, "{board}");
        assert_eq!(models[0]["devices"], 2, "the largest first: {board}");
        assert!(!board["software_versions"].as_array().unwrap().is_empty());
        let orgs: Vec<(String, i64, i64)> = board["organizations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| (o["org"].as_str().unwrap().to_owned(), o["devices"].as_i64().unwrap(), o["online"].as_i64().unwrap()))
            .collect();
        assert_eq!(orgs, [("acme".to_owned(), 2, 1), ("acme-north".to_owned(), 1, 1)]);
        assert_eq!(board["faults_last_24h"]["total"], 1, "{board}");
        assert_eq!(board["faults_last_24h"]["by_code"][0]["name"], "cwmp.9002");
        assert_eq!(board["tasks_in_flight"]["total"], 1);
        assert_eq!(board["tasks_in_flight"]["by_name"][0]["name"], "reboot");

        // Narrowed to an organization of the caller's.
        let (_, narrowed) = h.request_as(&acme_admin, reqwest::Method::GET, "/api/v1/dashboard?org=acme-north", None).await;
        assert_eq!(narrowed["devices"]["total"], 1, "{narrowed}");
        assert_eq!(narrowed["tasks_in_flight"]["total"], 0);

        // The platform sees every organization and the pending devices.
        let (_, all) = h.get("/api/v1/dashboard").await;
        assert_eq!(all["devices"]["total"], 5, "{all}");
        assert_eq!(all["devices"]["pending"], 1, "{all}");

        // As CSV.
        let response = h
            .http
            .get(h.url("/api/v1/dashboard?format=csv"))
            .bearer_auth(&acme_admin)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert!(response.headers()["content-type"].to_str().unwrap().starts_with("text/csv"));
        let csv = response.text().await.unwrap();
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(lines[0], "section,key,devices,online");
        assert!(lines.contains(&"devices,total,3,2"), "{csv}");
        assert!(lines.contains(&"organization,acme-north,1,1"), "{csv}");
        let (status, problem) = h.get("/api/v1/dashboard?format=xml").await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{problem}");

        for fleet in [acme, north, globex, pending] {
            fleet.stop().await;
        }
        h.finish().await;
    }
}
