//! The story, end to end through REST alone, as an ISP's support agent: a subscriber
//! created, their new ONT provisioned with PPPoE at its first Inform and again after a factory
//! reset, its Wi-Fi changed, a speed test and a ping run and read, its health over the last day,
//! and the device on the dashboard — for a TR-098 ONT (Huawei EG8145V5) and a TR-181 router
//! (TP-Link XX230v), on both databases.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use roost::config::CpeAuthMode;
use roost_sim::DeviceHandle;
use roost_tests::on_both_backends;

use super::*;

/// Where each model keeps what the story checks on the device itself.
struct Paths {
    ppp_username: &'static str,
    ppp_password: &'static str,
    ssid_24: &'static str,
}

const HUAWEI: Paths = Paths {
    ppp_username: "InternetGatewayDevice.WANDevice.1.WANConnectionDevice.4.WANPPPConnection.1.Username",
    ppp_password: "InternetGatewayDevice.WANDevice.1.WANConnectionDevice.4.WANPPPConnection.1.Password",
    ssid_24: "InternetGatewayDevice.LANDevice.1.WLANConfiguration.1.SSID",
};

const TPLINK: Paths = Paths {
    ppp_username: "Device.PPP.Interface.3.Username",
    ppp_password: "Device.PPP.Interface.3.Password",
    ssid_24: "Device.WiFi.SSID.1.SSID",
};

/// Health points are written on a short timer, as an operator would see them arrive.
fn prompt_health(config: &mut roost::config::Config) {
    config.health.flush_interval = Duration::from_millis(200);
}

async fn until_value(cpe: &DeviceHandle, path: &str, value: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while cpe.value(path).as_deref() != Some(value) {
        assert!(tokio::time::Instant::now() < deadline, "{path} is {:?}, not {value:?}", cpe.value(path));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

on_both_backends! {
    async fn a_support_agent_provisions_operates_and_watches_a_subscribers_device(backend: Backend) {
        let h = Harness::start_configured(backend, CpeAuthMode::Open, prompt_health).await;
        // The ISP's set-up, once: its organization, the health preset, an agent.
        h.org("isp", None).await;
        let (status, preset) = h
            .put("/api/v1/presets/health", json!({"events": ["2 PERIODIC"], "provision": "health", "args": {"max-age": "1"}}))
            .await;
        assert!(status.is_success(), "{preset}");
        let agent = h.user("isp", "agent@isp.example", "advanced").await;
        let call = |method: Method, path: String, body: Option<JsonValue>| {
            let agent = agent.clone();
            let h = &h;
            async move { h.request_as(&agent, method, &path, body).await }
        };

        let huawei = h.fleet(DataModelKind::Tr098, 1, "STORYONT").await;
        let tplink = h.fleet(DataModelKind::Tr181, 1, "STORYRTR").await;
        for (n, (fleet, paths)) in [(&huawei, &HUAWEI), (&tplink, &TPLINK)].into_iter().enumerate() {
            let cpe = fleet.device(0);
            let username = format!("customer{n}");

            // A new subscriber, and the serial on the box the technician brings.
            let (status, subscriber) = call(
                Method::POST,
                "/api/v1/subscribers".into(),
                Some(json!({"username": username, "name": "A Customer", "plan": "fiber-500",
                            "pppoe_username": format!("{username}@isp"), "pppoe_password": "line-secret-1"})),
            )
            .await;
            assert_eq!(status, StatusCode::CREATED, "{subscriber}");
            let subscriber = subscriber["id"].as_str().unwrap().to_owned();
            let (status, expected) = call(
                Method::POST,
                format!("/api/v1/subscribers/{subscriber}/devices"),
                Some(json!({"serial": cpe.serial_number()})),
            )
            .await;
            assert_eq!((status, expected["status"].as_str()), (StatusCode::CREATED, Some("expected")), "{expected}");

            // Plugged in: provisioned in its first session.
            assert!(cpe.inform_now(&[]).await.unwrap().is_ok());
            assert_eq!(cpe.value(paths.ppp_username).as_deref(), Some(format!("{username}@isp").as_str()));
            assert_eq!(cpe.value(paths.ppp_password).as_deref(), Some("line-secret-1"));
            let id = cpe.device_id();
            let device = format!("/api/v1/devices/{}", encode_id(&id));
            let (_, shown) = call(Method::GET, device.clone(), None).await;
            assert_eq!(shown["org"], "isp", "{shown}");

            // Reset by the customer: blank again, and provisioned again by itself.
            let mark = cpe.session_count();
            let (status, reset) = call(Method::POST, format!("{device}/factory-reset?wait=10"), Some(json!({}))).await;
            assert_eq!(status, StatusCode::OK, "{reset}");
            cpe.wait_for_session(mark, Duration::from_secs(20), |r| r.has_event("0 BOOTSTRAP")).await.expect("back");
            until_value(&cpe, paths.ppp_username, &format!("{username}@isp")).await;
            until_value(&cpe, paths.ppp_password, "line-secret-1").await;

            // A new Wi-Fi name and key on 2.4 GHz.
            let wifi = json!({"band": "2.4", "ssid": format!("Home-{n}"), "passphrase": "a long enough key"});
            let (status, done) = call(Method::POST, format!("{device}/wifi?wait=10"), Some(wifi)).await;
            assert_eq!((status, done["tasks"][0]["status"].as_str()), (StatusCode::OK, Some("done")), "{done}");
            assert_eq!(cpe.value(paths.ssid_24).as_deref(), Some(format!("Home-{n}").as_str()));

            // A speed test and a ping, read back from the history.
            let (status, test) =
                call(Method::POST, format!("{device}/speed-test?wait=30"), Some(json!({"size": 1_048_576}))).await;
            assert_eq!(status, StatusCode::OK, "{test}");
            let (status, ping) =
                call(Method::POST, format!("{device}/ping?wait=30"), Some(json!({"host": "192.0.2.1"}))).await;
            assert_eq!(status, StatusCode::OK, "{ping}");
            let (_, diagnostics) = call(Method::GET, format!("{device}/diagnostics"), None).await;
            let latest = diagnostics["latest"].as_array().unwrap();
            for kind in ["download", "upload", "ping"] {
                let run = latest.iter().find(|r| r["kind"] == kind).unwrap_or_else(|| panic!("{kind}: {diagnostics}"));
                assert_eq!(run["status"], "complete", "{run}");
                let figure = if kind == "ping" { "rtt_avg_ms" } else { "throughput_bps" };
                assert!(run["summary"][figure].as_f64().unwrap() > 0.0, "{run}");
            }

            // Its periodic sessions report health; the agent looks at the last day.
            for _ in 0..2 {
                tokio::time::sleep(Duration::from_millis(1100)).await;
                assert!(cpe.inform_now(&["2 PERIODIC"]).await.unwrap().is_ok());
            }
            let yesterday = roost::api::timestamp(roost::store::now_millis() - 24 * 3_600_000);
            let day = format!("{device}/metrics?names=uptime_seconds,cpu_percent&from={yesterday}&step=1h");
            let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
            loop {
                let (status, health) = call(Method::GET, day.clone(), None).await;
                assert_eq!(status, StatusCode::OK, "{health}");
                let counted: i64 = health["series"][0]["points"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|b| b["count"].as_i64().unwrap_or(0))
                    .sum();
                if counted >= 2 {
                    break;
                }
                assert!(tokio::time::Instant::now() < deadline, "no health yet: {health}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }

            // And on the dashboard, online, under its model.
            let (status, board) = call(Method::GET, "/api/v1/dashboard".into(), None).await;
            assert_eq!(status, StatusCode::OK, "{board}");
            assert_eq!(board["devices"]["total"], n + 1, "{board}");
            assert_eq!(board["devices"]["online"], n + 1, "{board}");
            let model = shown["product_class"].as_str().unwrap();
            assert!(board["models"].as_array().unwrap().iter().any(|m| m["product_class"] == model), "{model}: {board}");
        }
        huawei.stop().await;
        tplink.stop().await;
        h.finish().await;
    }
}
