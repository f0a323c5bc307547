//! The web portal in Debian's Chromium (`web/tests/portal.mjs`, driven by playwright-core): the
//! release layout (`roost serve` serving `web/dist` at `/`) with simulated devices and users of
//! each role, on SQLite. The platform administrator filters the fleet, saves a filter and claims
//! a pending device; a basic support agent finds a device, changes its Wi-Fi, runs a ping and a
//! speed test and reads the results, offered nothing beyond the role; a read-only user is
//! offered nothing to do; the organization's administrator creates a user and an API key and
//! changes its password; an advanced user creates a subscriber and links its device (its PPPoE
//! account pushed), writes a parameter in place, refreshes two ticked devices in bulk, uploads a firmware image and follows its
//! rollout to the end on the open page. axe-core scans every page; screenshots go to `docs/screenshots/`. The
//! test command (`scripts/test.sh`) installs Chromium and builds the portal first.

use std::path::PathBuf;
use std::time::Duration;

use super::*;

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

const WLAN: &str = "InternetGatewayDevice.LANDevice.1.WLANConfiguration.";
const PPP: &str = "InternetGatewayDevice.WANDevice.1.WANConnectionDevice.4.WANPPPConnection.1.";
const INTERVAL: &str = "InternetGatewayDevice.ManagementServer.PeriodicInformInterval";
/// The version the rollout's image installs.
const NEW: &str = "V9R001C00S001";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_role_does_what_it_may_in_the_portal_in_chromium() {
    let web = workspace().join("web");
    let dist = web.join("dist");
    assert!(
        dist.join("index.html").exists(),
        "the portal is not built: run scripts/build-web.sh (scripts/test.sh does)"
    );
    assert!(
        web.join("node_modules/playwright-core").exists(),
        "run scripts/build-web.sh (it installs web/'s packages)"
    );
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        std::path::Path::new(&chromium).exists(),
        "no Chromium at {chromium}: apt-get install chromium (scripts/test.sh does)"
    );

    let served = dist.clone();
    let h = Harness::start_configured(Backend::Sqlite, roost::config::CpeAuthMode::Open, move |config| {
        config.web_dir = Some(served.clone());
        // A rollout's batches follow each other at once, gates read again within a second.
        config.jobs.tick = Duration::from_millis(200);
        config.jobs.connection_requests_per_second = 100;
        config.jobs.rewake_after = Duration::from_secs(1);
        config.rollouts.wan_recheck = Duration::from_secs(1);
    })
    .await;
    h.org("isp-portal", None).await;
    let fleet = h.informed_fleet(Some("isp-portal"), DataModelKind::Tr098, 3, "PORTAL", |_| {}).await;
    let serials: Vec<&str> = fleet.devices().iter().map(|d| d.serial_number()).collect();
    // Health figures for the agent's device: the `health` provision reads them each periodic
    // session past its max-age, and they are written in a batch.
    let preset = json!({"events": ["2 PERIODIC"], "provision": "health", "args": {"max-age": "1"}});
    let (status, body) = h.put("/api/v1/presets/health", preset).await;
    assert!(status.is_success(), "{body}");
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(1100)).await;
        assert!(fleet.device(0).inform_now(&["2 PERIODIC"]).await.unwrap().is_ok());
    }
    roost::health::jobs::flush(h.app()).await;
    // A device of no organization yet, for the administrator to claim.
    let stray = h.informed_fleet(None, DataModelKind::Tr098, 1, "STRAY", |_| {}).await;
    let pending = stray.device(0).serial_number().to_owned();
    for (email, role) in [
        ("agent@isp-portal.example", "basic"),
        ("reader@isp-portal.example", "read-only"),
        ("boss@isp-portal.example", "org-admin"),
        ("lead@isp-portal.example", "advanced"),
    ] {
        h.user("isp-portal", email, role).await;
    }
    // The image the advanced user uploads and rolls out.
    let firmware = tempfile::tempdir().unwrap();
    let image = firmware.path().join(format!("eg8145v5-{NEW}.bin"));
    std::fs::write(&image, roost_sim::firmware_image(NEW, 256 * 1024)).unwrap();
    let (_, dashboard) = h.get("/api/v1/dashboard").await;
    let (_, listed) = h.get("/api/v1/devices").await;

    // The portal's page for any page path; the API's 404 for the API's paths.
    let page = h.http.get(h.url("/devices?serial=x")).send().await.unwrap();
    assert_eq!(page.status(), reqwest::StatusCode::OK);
    assert_eq!(page.headers()["cache-control"], "no-cache");
    assert!(page.headers()["content-security-policy"].to_str().unwrap().contains("frame-ancestors 'none'"));
    assert!(page.text().await.unwrap().contains("<div id=\"app\">"));
    let (status, problem) = h.get("/api/v1/no-such-route").await;
    assert_eq!((status.as_u16(), problem["code"].as_str()), (404, Some("not_found")), "{problem}");

    let mut child = std::process::Command::new("node")
        .arg(web.join("tests/portal.mjs"))
        .current_dir(&web)
        .env("ROOST_URL", h.url("/"))
        .env("ROOST_EMAIL", ADMIN_EMAIL)
        .env("ROOST_PASSWORD", ADMIN_PASSWORD)
        .env("ROOST_SERIALS", serials.join(","))
        .env("ROOST_LISTED", listed["items"].as_array().unwrap().len().to_string())
        .env("ROOST_TOTAL", dashboard["devices"]["total"].to_string())
        .env("ROOST_PENDING", &pending)
        .env("ROOST_ORG_NAME", "ISP-PORTAL")
        .env("ROOST_AGENT", "agent@isp-portal.example")
        .env("ROOST_READER", "reader@isp-portal.example")
        .env("ROOST_ORG_ADMIN", "boss@isp-portal.example")
        .env("ROOST_ADVANCED", "lead@isp-portal.example")
        .env("ROOST_FIRMWARE", &image)
        .env("ROOST_FIRMWARE_VERSION", NEW)
        .env("ROOST_USER_PASSWORD", USER_PASSWORD)
        .env("CHROMIUM", &chromium)
        .env("SCREENSHOTS", workspace().join("docs/screenshots"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("running node");
    // The server runs on this test's runtime: the browser run is waited for off it, bounded.
    let deadline = std::time::Instant::now() + Duration::from_secs(420);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            child.kill().unwrap();
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let output = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "the portal run failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("ok: the rollout completed on the open page"), "{stdout}");

    // What the browser did reached the devices and the store.
    let agent_box = fleet.device(0);
    for network in [1, 5] {
        assert_eq!(
            agent_box.value(&format!("{WLAN}{network}.SSID")).as_deref(),
            Some("Agent-Net"),
            "network {network}"
        );
    }
    let claimed = h.device(&stray.device(0).device_id()).await;
    assert_eq!(claimed["org"], "isp-portal", "{claimed}");
    let (_, users) = h.get("/api/v1/users?org=isp-portal").await;
    let tech = users["items"].as_array().unwrap().iter().find(|u| u["email"] == "tech@isp-portal.example").cloned();
    assert_eq!(tech.map(|u| u["role"].clone()), Some(json!("basic")), "{users}");
    // The advanced user's subscriber, parameter and rollout.
    let subscriber_box = fleet.device(2);
    assert_eq!(subscriber_box.value(&format!("{PPP}Username")).as_deref(), Some("carol@isp"));
    assert_eq!(fleet.device(1).value(INTERVAL).as_deref(), Some("600"));
    for device in fleet.devices().iter().chain(stray.devices()) {
        let version = device.value("InternetGatewayDevice.DeviceInfo.SoftwareVersion");
        assert_eq!(version.as_deref(), Some(NEW), "{}", device.serial_number());
    }
    let (_, bulk) = h.get("/api/v1/bulk").await;
    assert_eq!(bulk["items"][0]["devices"], 2, "{bulk}");
    assert_eq!(bulk["items"][0]["action"]["name"], "refresh", "{bulk}");
    let (_, runs) = h.get(&format!("/api/v1/devices/{}/diagnostics", encode_id(&agent_box.device_id()))).await;
    let kinds: Vec<&str> = runs["latest"].as_array().unwrap().iter().map(|r| r["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["download", "ping", "upload"], "{runs}");
    stray.stop().await;
    fleet.stop().await;
    h.finish().await;
}
