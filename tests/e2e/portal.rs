//! The web portal in Debian's Chromium (`web/tests/portal.mjs`, driven by playwright-core): the
//! release layout (`roost serve` serving `web/dist` at `/`) with simulated devices, on SQLite.
//! Signing in (refused, then accepted), the dashboard's count, the device list filtered by
//! serial, Spanish and the dark theme kept across a reload, a phone-sized screen, signing out;
//! axe-core scans every page. Screenshots go to `docs/screenshots/`. The test command
//! (`scripts/test.sh`) installs Chromium and builds the portal first.

use std::path::PathBuf;
use std::time::Duration;

use super::*;

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_portal_signs_in_lists_and_filters_devices_and_speaks_spanish_in_chromium() {
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
    })
    .await;
    h.org("isp-portal", None).await;
    let model = std::sync::Arc::new(DataModel::bundled(DataModelKind::Tr098).unwrap());
    let mut config = FleetConfig::new(format!("{}cwmp/isp-portal", h.cwmp_url()), model);
    config.start = StartMode::Manual;
    config.devices = 3;
    config.serial_prefix = "PORTAL".into();
    let fleet = Fleet::start(config).await.unwrap();
    for device in fleet.devices() {
        assert!(device.inform_now(&[]).await.unwrap().is_ok());
    }
    let serials: Vec<&str> = fleet.devices().iter().map(|d| d.serial_number()).collect();

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
        .env("CHROMIUM", &chromium)
        .env("SCREENSHOTS", workspace().join("docs/screenshots"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("running node");
    // The server runs on this test's runtime: the browser run is waited for off it, bounded.
    let deadline = std::time::Instant::now() + Duration::from_secs(180);
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
    assert!(stdout.contains("ok: signed out"), "{stdout}");
    h.finish().await;
}
