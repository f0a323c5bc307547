//! Staged firmware rollouts with simulated devices of two models (Huawei EG8145V5 on TR-098,
//! TP-Link XX230v on TR-181), some of them made to fail their upgrade three ways: the image
//! fails its check (TransferComplete 9010), the device boots its old image, or it comes back
//! with its WAN down. The rollout's canary and first batch pass; the bad batch pauses it by
//! itself; it resumes across a server restart and completes; then it rolls back, each device
//! to the version it had, with its stored image. Before that, a rollout outside its window
//! starts nobody and is aborted; wrong requests are refused.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use roost::config::{Config, CpeAuthMode};
use roost::store::orgs::Scope;
use roost_sim::{FirmwareFailure, FirmwareFailureMode, firmware_image};
use roost_tests::on_both_backends;

use super::*;

const NEW: &str = "V9R001C00S001";
/// Downloads under way at once for the organization (`[rollouts] max_concurrent_downloads`).
const CAP: u64 = 6;

fn paced(config: &mut Config) {
    config.jobs.tick = Duration::from_millis(200);
    config.rollouts.max_concurrent_downloads = CAP;
    config.jobs.connection_requests_per_second = 100;
    // A device that missed its wake-up (the server restarting under it) is woken again soon.
    config.jobs.rewake_after = Duration::from_secs(1);
    // A WAN found down is read again each second until the gate's deadline.
    config.rollouts.wan_recheck = Duration::from_secs(1);
}

/// Devices of `kind` onboarded into `isp-fw` through its URL, informed once (registered and
/// discovered), each failing an upgrade to `NEW` as `failure` says.
async fn fleet(
    h: &Harness,
    kind: DataModelKind,
    count: usize,
    prefix: &str,
    failure: Option<FirmwareFailureMode>,
) -> Fleet {
    h.informed_fleet(Some("isp-fw"), kind, count, prefix, |config| {
        config.firmware_failure = failure.map(|mode| FirmwareFailure { version: NEW.into(), mode });
    })
    .await
}

async fn upload(h: &Harness, query: &str, body: Vec<u8>) -> JsonValue {
    let response =
        h.http.post(h.url(&format!("/api/v1/files?{query}"))).bearer_auth(&h.token).body(body).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    response.json().await.unwrap()
}

/// Polls a rollout until `done` holds of it, checking on the way that the organization's cap on
/// downloads under way is never passed.
async fn wait_rollout(h: &Harness, id: &str, what: &str, done: impl Fn(&JsonValue) -> bool) -> JsonValue {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let (status, rollout) = h.get(&format!("/api/v1/rollouts/{id}?limit=1000")).await;
        assert_eq!(status, StatusCode::OK, "{rollout}");
        let under_way =
            rollout["totals"]["upgrading"].as_u64().unwrap_or(0) + rollout["totals"]["reverting"].as_u64().unwrap_or(0);
        assert!(under_way <= CAP, "{under_way} downloads under way, past the cap of {CAP}: {rollout}");
        if done(&rollout) {
            return rollout;
        }
        assert!(Instant::now() < deadline, "waiting for {what}: {rollout:#}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn devices_in<'a>(rollout: &'a JsonValue, state: &str) -> Vec<&'a JsonValue> {
    rollout["device_page"]["items"].as_array().unwrap().iter().filter(|d| d["state"] == state).collect()
}

/// How many events of a kind were recorded.
async fn events(h: &Harness, kind: &str) -> usize {
    roost::store::events::list(&h.app().store, &Scope::All, Some(kind), None, 1000).await.unwrap().len()
}

fn version_of(cpe: &roost_sim::DeviceHandle) -> String {
    cpe.value(&format!("{}DeviceInfo.SoftwareVersion", cpe.root())).unwrap()
}

on_both_backends! {
    async fn a_rollout_pauses_on_a_bad_batch_resumes_across_a_restart_and_rolls_back(backend: Backend) {
        let mut h = Harness::start_configured(backend, CpeAuthMode::Open, paced).await;
        h.org("isp-fw", None).await;
        // Rollout order is registration order: the canary (2) and batch 1 (10) are good,
        // batch 2 (10) has 5 bad devices, batch 3 (10) is good.
        let a1 = fleet(&h, DataModelKind::Tr098, 10, "RA", None).await;
        let b1 = fleet(&h, DataModelKind::Tr181, 2, "RB", None).await;
        let a_fault = fleet(&h, DataModelKind::Tr098, 2, "RAF", Some(FirmwareFailureMode::TransferFault)).await;
        let a_old = fleet(&h, DataModelKind::Tr098, 1, "RAO", Some(FirmwareFailureMode::BootsOldImage)).await;
        let b_wan = fleet(&h, DataModelKind::Tr181, 2, "RBW", Some(FirmwareFailureMode::WanDown)).await;
        let b2 = fleet(&h, DataModelKind::Tr181, 5, "RBG", None).await;
        let a2 = fleet(&h, DataModelKind::Tr098, 10, "RAG", None).await;
        let fleets = [&a1, &b1, &a_fault, &a_old, &b_wan, &b2, &a2];
        let all: Vec<roost_sim::DeviceHandle> = fleets.iter().flat_map(|f| f.devices().iter().cloned()).collect();
        assert_eq!(all.len(), 32);
        let huawei_version = version_of(&a1.device(0));
        let tplink_version = version_of(&b1.device(0));

        // The new image, for both models; each model's current image, kept to roll back with.
        let image = upload(&h, &format!("name=fleet-{NEW}.bin&version={NEW}&org=isp-fw"), firmware_image(NEW, 64 * 1024)).await;
        let file = image["id"].as_str().unwrap().to_owned();
        upload(&h, &format!("name=huawei-old.bin&version={huawei_version}&product_class=EG8145V5&org=isp-fw"),
            firmware_image(&huawei_version, 48 * 1024)).await;
        let tplink_query = format!("name=tplink-old.bin&version={}&product_class=Device2&org=isp-fw",
            tplink_version.replace(' ', "%20"));
        upload(&h, &tplink_query, firmware_image(&tplink_version, 48 * 1024)).await;
        let config_file = upload(&h, "name=settings.xml&file_type=3 Vendor Configuration File&org=isp-fw", vec![b'<'; 10]).await;

        // Wrong requests: 4xx problems, nothing made.
        let rollout = |extra: JsonValue| {
            let mut body = json!({"file": file, "target": {"org": "isp-fw"}, "canary": 2, "batch_size": 10,
                "failure_threshold": 0.2, "gate_timeout_s": 15});
            for (k, v) in extra.as_object().unwrap() {
                body[k] = v.clone();
            }
            body
        };
        for (body, detail) in [
            (rollout(json!({"batch_size": 0})), "batch_size"),
            (rollout(json!({"target": {"org": "isp-fw", "tags": ["nowhere"]}})), "no device matches"),
            (rollout(json!({"file": config_file["id"]})), "not a firmware image"),
            (rollout(json!({"failure_threshold": 2})), "failure_threshold"),
            (rollout(json!({"window": {"start": "25:00", "end": "05:00"}})), "HH:MM"),
            (rollout(json!({"window": {"start": "01:00", "end": "05:00", "time_zone": "Mars/Olympus"}})), "IANA"),
            (rollout(json!({"target": {"org": "isp-fw", "query": {"_id": {"$regex": "^RA"}}}})), "$regex"),
        ] {
            let (status, problem) = h.post("/api/v1/rollouts", body).await;
            assert_eq!((status, problem["code"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("invalid_rollout")), "{problem}");
            assert!(problem["detail"].as_str().unwrap().contains(detail), "{detail}: {problem}");
        }

        // Outside its window nobody starts; aborted, its devices are free for the next one.
        let minute = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() / 60 % 1440;
        let hh_mm = |m: u64| format!("{:02}:{:02}", m % 1440 / 60, m % 60);
        let closed = json!({"start": hh_mm(minute + 120), "end": hh_mm(minute + 180), "time_zone": "UTC"});
        let (status, night) = h.post("/api/v1/rollouts", rollout(json!({"window": closed}))).await;
        assert_eq!(status, StatusCode::CREATED, "{night}");
        assert_eq!((night["devices"].as_u64(), night["batches"].as_i64()), (Some(32), Some(4)), "{night}");
        let night_id = night["id"].as_str().unwrap().to_owned();
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let (_, waited) = h.get(&format!("/api/v1/rollouts/{night_id}")).await;
        assert_eq!(waited["totals"]["waiting"], 32, "{waited}");
        let (status, busy) = h.post("/api/v1/rollouts", rollout(json!({}))).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "a device is in one rollout at a time: {busy}");
        let (status, aborted) = h.post(&format!("/api/v1/rollouts/{night_id}/abort"), json!({})).await;
        assert_eq!((status, aborted["state"].as_str(), aborted["totals"]["skipped"].as_u64()), (StatusCode::OK, Some("aborted"), Some(32)), "{aborted}");
        let (status, again) = h.post(&format!("/api/v1/rollouts/{night_id}/resume"), json!({})).await;
        assert_eq!((status, again["code"].as_str()), (StatusCode::CONFLICT, Some("rollout_state")), "{again}");
        wait_rollout(&h, &night_id, "the aborted rollout to finish", |r| r["finished_at"].is_string()).await;

        // The real one: canary, then batches of 10; the bad batch pauses it by itself.
        let (status, created) = h.post("/api/v1/rollouts", rollout(json!({}))).await;
        assert_eq!(status, StatusCode::CREATED, "{created}");
        let id = created["id"].as_str().unwrap().to_owned();
        let (status, in_use) = h.request(reqwest::Method::DELETE, &format!("/api/v1/files/{file}"), None).await;
        assert_eq!((status, in_use["code"].as_str()), (StatusCode::CONFLICT, Some("file_in_use")), "{in_use}");
        // The totals and the page are two reads: both must show every device settled.
        let paused = wait_rollout(&h, &id, "the bad batch to pause the rollout", |r| {
            r["state"] == "paused"
                && r["totals"]["upgrading"].as_u64().unwrap_or(0) == 0
                && devices_in(r, "upgrading").is_empty()
        })
        .await;
        assert!(paused["paused_reason"].as_str().unwrap().contains("of 10 devices of batch 2 failed"), "{paused}");
        let progress = paused["progress"].as_array().unwrap();
        assert_eq!((progress[0]["passed"].as_u64(), progress[1]["passed"].as_u64()), (Some(2), Some(10)), "{paused}");
        assert_eq!(progress[3]["waiting"], 10, "batch 3 never started: {paused}");
        let failed = devices_in(&paused, "failed");
        let reason_of = |prefix: &str| -> String {
            failed.iter().find(|d| d["device_id"].as_str().unwrap().contains(prefix)).map(|d| d["reason"].as_str().unwrap().to_owned()).unwrap_or_default()
        };
        assert!(reason_of("RAF").contains("9010"), "{paused}");
        assert!(reason_of("RAO").contains("came back with SoftwareVersion"), "{paused}");
        assert!(reason_of("RBW").contains("WAN is not up"), "{paused}");
        let passed = devices_in(&paused, "passed");
        assert!(passed.iter().all(|d| d["software_version"] == NEW && d["reason"].as_str().unwrap().contains("is up")), "{paused}");
        assert_eq!(version_of(&a1.device(0)), NEW);
        assert_eq!(events(&h, "rollout.paused").await, 1);
        assert!(events(&h, "rollout.progress").await >= 12 + 5);

        // A restart keeps it paused, every device where it was.
        h.restart().await;
        let (_, kept) = h.get(&format!("/api/v1/rollouts/{id}?limit=1000")).await;
        assert_eq!((kept["state"].as_str(), &kept["totals"]), (Some("paused"), &paused["totals"]), "{kept}");

        // Resumed past those failures, it goes on; a restart in the middle of batch 3 resumes
        // it there, and it completes.
        let (status, resumed) = h.post(&format!("/api/v1/rollouts/{id}/resume"), json!({})).await;
        assert_eq!((status, resumed["state"].as_str()), (StatusCode::OK, Some("running")), "{resumed}");
        wait_rollout(&h, &id, "batch 3 to start", |r| r["progress"][3]["waiting"].as_u64().unwrap_or(10) < 10).await;
        h.restart().await;
        let completed = wait_rollout(&h, &id, "the rollout to complete", |r| r["state"] == "completed").await;
        // Besides the five planned failures, a device of batch 3 downloading from this server
        // as it restarted lost its download (as a CPE would) and failed: whether one was in the
        // middle of it is timing.
        let failed = devices_in(&completed, "failed");
        let cut: Vec<&&JsonValue> =
            failed.iter().filter(|d| d["reason"].as_str().unwrap().contains("error sending request")).collect();
        assert_eq!(failed.len() - cut.len(), 5, "{completed}");
        assert!(cut.iter().all(|d| d["batch"] == 3), "{completed}");
        assert_eq!(completed["totals"]["passed"].as_u64(), Some(32 - failed.len() as u64), "{completed}");
        assert_eq!(events(&h, "rollout.completed").await, 1);
        assert_eq!(version_of(&a2.device(9)), NEW);

        // Rolled back: every device runs the version it had, with its model's stored image.
        let (status, rolling) = h.post(&format!("/api/v1/rollouts/{id}/rollback"), json!({})).await;
        assert_eq!((status, rolling["state"].as_str()), (StatusCode::OK, Some("rolling_back")), "{rolling}");
        let rolled = wait_rollout(&h, &id, "the rollback to end", |r| r["state"] == "rolled_back").await;
        assert_eq!(rolled["totals"]["reverted"], 32, "{rolled:#}");
        for cpe in &all {
            let expected = if cpe.root().starts_with("Device.") { &tplink_version } else { &huawei_version };
            assert_eq!(&version_of(cpe), expected, "{}", cpe.serial_number());
        }
        // The WAN of the devices that lost it is back with their old image.
        let reverted_wan = devices_in(&rolled, "reverted").into_iter().find(|d| d["device_id"].as_str().unwrap().contains("RBW")).unwrap();
        assert!(reverted_wan["reason"].as_str().unwrap().contains("is up"), "{reverted_wan}");
        assert_eq!(events(&h, "rollout.rolled_back").await, 1);

        // No device was sent a download twice, restarts and rewakes included: one to upgrade,
        // one to revert when it needed one.
        for device in rolled["device_page"]["items"].as_array().unwrap() {
            let id = device["device_id"].as_str().unwrap();
            let pk = roost::store::devices::by_device_id(&h.app().store, id).await.unwrap().unwrap().id;
            let tasks = roost::store::tasks::list_for_device(&h.app().store, pk, None, 100).await.unwrap();
            let downloads = tasks.iter().filter(|t| t.name == "download").count();
            let reverted_by_download = !device["reason"].as_str().unwrap().contains("already");
            // The night rollout was aborted before it started anyone.
            assert_eq!(downloads, 1 + usize::from(reverted_by_download), "{device}");
        }
        h.finish().await;
    }
}

on_both_backends! {
    async fn a_lease_is_held_by_one_replica_at_a_time(backend: Backend) {
        use roost::store::leases::{hold, release};
        let h = Harness::start(backend).await;
        let store = &h.app().store;
        assert!(hold(store, "probe", "replica-a", 60_000).await.unwrap());
        assert!(!hold(store, "probe", "replica-b", 60_000).await.unwrap(), "held by a");
        assert!(hold(store, "probe", "replica-a", 60_000).await.unwrap(), "renewed by its holder");
        assert!(hold(store, "other", "replica-b", 60_000).await.unwrap(), "leases are by name");
        release(store, "probe", "replica-b").await.unwrap();
        assert!(!hold(store, "probe", "replica-b", 60_000).await.unwrap(), "only its holder releases it");
        release(store, "probe", "replica-a").await.unwrap();
        assert!(hold(store, "probe", "replica-b", 1).await.unwrap(), "released");
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(hold(store, "probe", "replica-a", 60_000).await.unwrap(), "taken over once expired");
        h.finish().await;
    }
}
