//! Provisioning in sessions: presets select devices, provisions declare, the engine converges
//! round after round with a simulated device, and hostile plugins stay contained.

use std::time::Duration;

use reqwest::StatusCode;
use roost::config::CpeAuthMode;
use roost_tests::on_both_backends;

use super::plugins::{component, upload};
use super::*;

async fn put_preset(h: &Harness, name: &str, preset: JsonValue) {
    let (status, body) = h.put(&format!("/api/v1/presets/{name}"), preset).await;
    assert!(status.is_success(), "preset {name}: {status} {body}");
}

async fn faults(h: &Harness, id: &str) -> Vec<JsonValue> {
    let (status, body) = h.get(&format!("/api/v1/devices/{}/faults", encode_id(id))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["items"].as_array().unwrap().clone()
}

async fn built_in_presets_declare_tag_and_reboot(backend: Backend) {
    let h = Harness::start(backend).await;
    let fleet = h.fleet(DataModelKind::Tr098, 2, "BUILTIN").await;
    for i in 0..2 {
        assert!(fleet.device(i).inform_now(&[]).await.unwrap().is_ok());
    }
    let interval = "InternetGatewayDevice.ManagementServer.PeriodicInformInterval";
    put_preset(
        &h,
        "interval",
        json!({"events": ["2 PERIODIC"], "provision": "value", "args": {"path": interval, "value": "1234"}}),
    )
    .await;
    // Only where the precondition holds: the second device is made to differ.
    let software = "InternetGatewayDevice.DeviceInfo.SoftwareVersion";
    let first_software = h.stored_value(&fleet.device(0).device_id(), software).await.unwrap();
    put_preset(
        &h,
        "mark",
        json!({
            "events": ["2 PERIODIC"],
            "precondition": [{"path": software, "op": "eq", "value": first_software}],
            "provision": "tag",
            "args": {"add": "current-firmware"}
        }),
    )
    .await;
    // A reboot asked for by tag, and the tag taken away by a heavier preset in the same round:
    // the reboot is sent once, after the declarations settled.
    put_preset(&h, "reboot-on-request", json!({"weight": 1, "tags": ["reboot-me"], "provision": "reboot"})).await;
    put_preset(
        &h,
        "reboot-once",
        json!({"weight": 2, "tags": ["reboot-me"], "provision": "tag", "args": {"remove": "reboot-me"}}),
    )
    .await;

    let other = fleet.device(1);
    other.set(software, "0.0.1-other").unwrap();
    assert!(other.inform_now(&["4 VALUE CHANGE"]).await.unwrap().is_ok());

    let cpe = fleet.device(0);
    let id = cpe.device_id();
    let (status, _) = h.put(&format!("/api/v1/devices/{}/tags/reboot-me", encode_id(&id)), json!({})).await;
    assert!(status.is_success());
    let mark = cpe.session_count();
    let report = cpe.inform_now(&["2 PERIODIC"]).await.unwrap();
    assert!(report.is_ok(), "{:?}", report.error);
    let methods = report.methods();
    assert_eq!(methods.last(), Some(&"Reboot"), "{methods:?}");
    assert_eq!(methods.iter().filter(|m| **m == "Reboot").count(), 1, "{methods:?}");
    assert_eq!(cpe.value(interval).as_deref(), Some("1234"));
    let back = cpe
        .wait_for_session(mark, Duration::from_secs(15), |r| r.has_event("M Reboot"))
        .await
        .expect("the device reboots");
    assert_eq!(back.command_key("M Reboot"), Some("roost-preset-reboot-on-request"));
    let device = h.device(&id).await;
    let tags: Vec<&str> = device["tags"].as_array().unwrap().iter().map(|t| t.as_str().unwrap()).collect();
    assert!(tags.contains(&"current-firmware"), "{tags:?}");
    assert!(!tags.contains(&"reboot-me"), "{tags:?}");

    let report = other.inform_now(&["2 PERIODIC"]).await.unwrap();
    assert!(report.is_ok(), "{:?}", report.error);
    assert!(!report.methods().contains(&"Reboot"), "untagged: {:?}", report.methods());
    assert_eq!(other.value(interval).as_deref(), Some("1234"));
    let tags = h.device(&other.device_id()).await["tags"].clone();
    assert!(!tags.as_array().unwrap().iter().any(|t| t == "current-firmware"), "precondition failed: {tags}");
    fleet.stop().await;
    h.finish().await;
}

async fn hostile_provisions_fault_their_device_only(backend: Backend) {
    let h = Harness::start(backend).await;
    let (status, hostile) = upload(&h, &h.token, "name=hostile&version=1.0.0", component("hostile")).await;
    assert_eq!(status, StatusCode::CREATED, "{hostile}");
    let fleet = h.fleet(DataModelKind::Tr098, 6, "SANDBOX").await;
    for i in 0..6 {
        assert!(fleet.device(i).inform_now(&[]).await.unwrap().is_ok());
    }
    let attacks = [("loop", "plugin.cpu_time"), ("memory", "plugin.memory"), ("trap", "plugin.trap")];
    for (i, (mode, _)) in attacks.iter().enumerate() {
        put_preset(&h, mode, json!({"tags": [mode], "provision": "hostile", "args": {"mode": mode}})).await;
        let id = fleet.device(i).device_id();
        let (status, _) = h.put(&format!("/api/v1/devices/{}/tags/{mode}", encode_id(&id)), json!({})).await;
        assert!(status.is_success());
    }
    let interval = "InternetGatewayDevice.ManagementServer.PeriodicInformInterval";
    put_preset(&h, "interval", json!({"weight": 5, "provision": "value", "args": {"path": interval, "value": "900"}}))
        .await;

    // Every device at once: the attackers' sessions run beside the others'.
    let devices: Vec<_> = (0..6).map(|i| fleet.device(i)).collect();
    let sessions = devices.iter().map(|d| d.inform_now(&["2 PERIODIC"]));
    let reports = futures::future::join_all(sessions).await;
    for (i, report) in reports.into_iter().enumerate() {
        let report = report.unwrap();
        assert!(report.is_ok(), "device {i}: {:?}", report.error);
        // The other preset still provisions every device, attacked or not.
        assert_eq!(fleet.device(i).value(interval).as_deref(), Some("900"), "device {i}");
    }
    for (i, (mode, code)) in attacks.iter().enumerate() {
        let recorded = faults(&h, &fleet.device(i).device_id()).await;
        assert_eq!(recorded.len(), 1, "{mode}: {recorded:?}");
        assert_eq!(recorded[0]["code"], *code, "{mode}: {recorded:?}");
        assert_eq!(recorded[0]["channel"], format!("preset:{mode}"));
    }
    for i in 3..6 {
        assert!(faults(&h, &fleet.device(i).device_id()).await.is_empty(), "device {i}");
    }
    // The host is fine: the API answers and the next session of an attacked device runs again
    // (and faults again, once: the same fault, counted).
    let report = fleet.device(0).inform_now(&["2 PERIODIC"]).await.unwrap();
    assert!(report.is_ok(), "{:?}", report.error);
    let again = faults(&h, &fleet.device(0).device_id()).await;
    assert_eq!(again.len(), 1, "{again:?}");
    assert_eq!(again[0]["occurrences"], 2, "{again:?}");
    fleet.stop().await;
    h.finish().await;
}

async fn misbehaving_identify_faults_its_adapter_once(backend: Backend) {
    let h = Harness::start(backend).await;
    let (status, body) = upload(&h, &h.token, "name=hostile-adapter&version=1.0.0", component("hostile-adapter")).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["world"], "adapter");
    // Its identify panics for serial numbers TRAP…, spins for SPIN…; the devices' first sessions
    // run the bootstrap preset, which asks for an adapter.
    let traps = h.fleet(DataModelKind::Tr098, 2, "TRAP").await;
    let spins = h.fleet(DataModelKind::Tr181, 1, "SPIN").await;
    for (cpe, code) in [(traps.device(0), "plugin.trap"), (spins.device(0), "plugin.cpu_time")] {
        let report = cpe.inform_now(&[]).await.unwrap();
        assert!(report.is_ok(), "{:?}", report.error);
        let recorded = faults(&h, &cpe.device_id()).await;
        assert_eq!(recorded.len(), 1, "{recorded:?}");
        assert_eq!(recorded[0]["channel"], "adapter:hostile-adapter", "{recorded:?}");
        assert_eq!(recorded[0]["code"], code, "{recorded:?}");
        assert!(recorded[0]["message"].as_str().unwrap().starts_with("identify "), "{recorded:?}");
        // The shipped adapter of its data model still handles it.
        let device = h.device(&cpe.device_id()).await;
        assert_eq!(device["adapter"]["owner"], "platform", "{device}");
    }
    // A preset change drops the cached adapter choices; the device's twin is identified again,
    // without asking the adapter that failed for devices like it.
    put_preset(&h, "noop", json!({"tags": ["nobody"], "provision": "value", "args": {"path": "X.Y", "value": "1"}}))
        .await;
    let twin = traps.device(1);
    assert!(twin.inform_now(&[]).await.unwrap().is_ok());
    assert_eq!(faults(&h, &twin.device_id()).await, Vec::<JsonValue>::new());
    assert_eq!(faults(&h, &traps.device(0).device_id()).await.len(), 1);
    traps.stop().await;
    spins.stop().await;
    h.finish().await;
}

async fn logs(h: &Harness, id: &str, query: &str) -> JsonValue {
    let (status, body) = h.get(&format!("/api/v1/devices/{}/logs{query}", encode_id(id))).await;
    assert_eq!(status, StatusCode::OK, "{query}: {body}");
    body
}

fn messages(page: &JsonValue) -> Vec<String> {
    page["items"].as_array().unwrap().iter().map(|line| line["message"].as_str().unwrap().to_owned()).collect()
}

async fn plugin_log_lines_are_kept_per_device_and_served(backend: Backend) {
    let h = Harness::start_configured(backend, CpeAuthMode::Open, |config| config.plugins.device_log_lines = 300).await;
    let (status, body) = upload(&h, &h.token, "name=hostile&version=1.0.0", component("hostile")).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    // 250 lines a run: the run keeps 200 and says how many it dropped.
    put_preset(
        &h,
        "chatty",
        json!({"tags": ["chatty"], "provision": "hostile", "args": {"mode": "log", "count": "250"}}),
    )
    .await;
    let fleet = h.fleet(DataModelKind::Tr098, 2, "LOGS").await;
    let (cpe, quiet) = (fleet.device(0), fleet.device(1));
    for device in [&cpe, &quiet] {
        assert!(device.inform_now(&[]).await.unwrap().is_ok());
    }
    let id = cpe.device_id();
    let (status, _) = h.put(&format!("/api/v1/devices/{}/tags/chatty", encode_id(&id)), json!({})).await;
    assert!(status.is_success());
    let report = cpe.inform_now(&["2 PERIODIC"]).await.unwrap();
    assert!(report.is_ok(), "{:?}", report.error);

    let all = logs(&h, &id, "?limit=1000").await;
    let lines = all["items"].as_array().unwrap();
    assert_eq!(lines.len(), 201, "{all}");
    // Newest first: the host's line about the drops, then the run's last line.
    assert_eq!(lines[0]["level"], "warn");
    assert!(
        lines[0]["message"].as_str().unwrap().starts_with("roost: dropped 50 more log messages of this run"),
        "{}",
        lines[0]
    );
    assert!(lines[1]["message"].as_str().unwrap().starts_with("line 199 at "), "{}", lines[1]);
    assert_eq!((lines[1]["plugin"].as_str(), lines[1]["preset"].as_str()), (Some("hostile"), Some("chatty")));
    assert_eq!(lines[200]["level"], "debug");
    assert!(all["next_cursor"].is_null());

    // Filters: a minimum level, the plugin, the preset, a time window.
    let errors = logs(&h, &id, "?level=error&limit=1000").await;
    assert_eq!(errors["items"].as_array().unwrap().len(), 50, "{errors}");
    assert!(errors["items"].as_array().unwrap().iter().all(|line| line["level"] == "error"));
    let warnings = logs(&h, &id, "?level=warn&limit=1000").await;
    assert_eq!(warnings["items"].as_array().unwrap().len(), 101, "50 warn, 50 error and the drop line");
    assert_eq!(messages(&logs(&h, &id, "?preset=chatty&plugin=hostile&limit=1000").await).len(), 201);
    assert!(messages(&logs(&h, &id, "?preset=other").await).is_empty());
    assert!(messages(&logs(&h, &id, "?plugin=other").await).is_empty());
    assert!(messages(&logs(&h, &id, "?since=2999-01-01T00:00:00Z").await).is_empty());
    assert_eq!(messages(&logs(&h, &id, "?until=2999-01-01T00:00:00Z&limit=1000").await).len(), 201);
    let (status, body) = h.get(&format!("/api/v1/devices/{}/logs?level=fatal", encode_id(&id))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body.to_string().contains("unknown variant `fatal`, expected one of `debug`, `info`, `warn`, `error`"),
        "{body}"
    );

    // Cursor paging walks the same lines, newest first, without overlap.
    let first = logs(&h, &id, "?limit=150").await;
    let cursor = first["next_cursor"].as_str().expect("a full page has a cursor").to_owned();
    let second = logs(&h, &id, &format!("?limit=150&cursor={cursor}")).await;
    let paged: Vec<String> = messages(&first).into_iter().chain(messages(&second)).collect();
    assert_eq!(paged, messages(&all));

    // A second session: the device keeps its newest 300 lines, the whole of this session's run
    // and the newest 99 of the first's.
    let report = cpe.inform_now(&["2 PERIODIC"]).await.unwrap();
    assert!(report.is_ok(), "{:?}", report.error);
    let kept = logs(&h, &id, "?limit=1000").await;
    let kept = kept["items"].as_array().unwrap();
    assert_eq!(kept.len(), 300);
    let sessions: Vec<&str> = kept.iter().map(|line| line["session_at"].as_str().unwrap()).collect();
    assert_ne!(sessions[0], sessions[299], "both sessions' lines");
    assert_eq!(sessions.iter().filter(|s| **s == sessions[0]).count(), 201);
    assert_eq!(kept[299]["message"], lines[98]["message"], "the oldest kept line");

    // Lines are the device's own; a device whose runs logged nothing has none.
    assert!(messages(&logs(&h, &quiet.device_id(), "").await).is_empty());
    fleet.stop().await;
    h.finish().await;
}

on_both_backends! {
    async fn plugin_logs_are_stored_and_served(backend: Backend) {
        plugin_log_lines_are_kept_per_device_and_served(backend).await
    }

    async fn an_adapter_whose_identify_misbehaves_is_a_fault_of_that_adapter(backend: Backend) {
        misbehaving_identify_faults_its_adapter_once(backend).await
    }

    async fn built_in_presets_run_through_the_engine(backend: Backend) {
        built_in_presets_declare_tag_and_reboot(backend).await
    }

    async fn hostile_plugins_are_contained(backend: Backend) {
        hostile_provisions_fault_their_device_only(backend).await
    }
}

async fn per_organization_limits_and_plugin_config(backend: Backend) {
    let h = Harness::start(backend).await;
    let (status, limits) = h.get("/api/v1/plugin-limits").await;
    assert_eq!(status, StatusCode::OK, "{limits}");
    assert_eq!(limits["effective"]["wall_clock_ms"], test_plugin_limits().wall_clock_ms, "the configuration's");
    assert_eq!(limits["effective"]["cpu_time_ms"], test_plugin_limits().cpu_time_ms);
    assert_eq!(limits["overrides"], json!({}));

    // The name the CPU budget had before it was one: an integrator's old request still works.
    let (status, body) = h.put("/api/v1/orgs/platform/plugin-limits", json!({"deadline_ms": 20})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["effective"]["cpu_time_ms"], 20, "{body}");

    // Devices nobody has claimed run under the platform's limits: too little memory for any Rust
    // component, and the bootstrap preset faults instead of the host.
    let (status, body) = h.put("/api/v1/orgs/platform/plugin-limits", json!({"memory_bytes": 1_048_576})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["effective"]["memory_bytes"], 1_048_576);
    let (status, body) = h.put("/api/v1/orgs/platform/plugin-limits", json!({"cpu_time_ms": 60_000})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "above the ceiling: {body}");
    let (status, _) = h.put("/api/v1/orgs/nowhere/plugin-limits", json!({})).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let fleet = h.fleet(DataModelKind::Tr098, 2, "LIMITS").await;
    let cpe = fleet.device(0);
    let report = cpe.inform_now(&[]).await.unwrap();
    assert!(report.is_ok(), "{:?}", report.error);
    let recorded = faults(&h, &cpe.device_id()).await;
    // The preset faults, and so does every adapter asked to identify the device: none fits.
    let (bootstrap, adapters): (Vec<&JsonValue>, Vec<&JsonValue>) =
        recorded.iter().partition(|fault| fault["channel"] == "preset:bootstrap");
    assert_eq!(bootstrap.len(), 1, "{recorded:?}");
    assert!(!adapters.is_empty(), "{recorded:?}");
    assert!(adapters.iter().all(|f| f["channel"].as_str().unwrap().starts_with("adapter:")), "{recorded:?}");
    assert!(
        recorded.iter().all(|f| matches!(f["code"].as_str(), Some("plugin.memory" | "plugin.instantiate"))),
        "{recorded:?}"
    );
    assert_eq!(h.device(&cpe.device_id()).await["connection_request"]["credentials_set"], false);

    let (status, _) = h.request(reqwest::Method::DELETE, "/api/v1/orgs/platform/plugin-limits", None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let other = fleet.device(1);
    assert!(other.inform_now(&[]).await.unwrap().is_ok());
    let other_faults = faults(&h, &other.device_id()).await;
    assert!(other_faults.is_empty(), "{other_faults:?}");
    let device = h.device(&other.device_id()).await;
    assert_eq!(device["connection_request"]["credentials_set"], true);
    // The adapters that failed under the old limits were asked again under the new ones.
    assert_eq!(device["adapter"]["owner"], "platform", "{device}");

    // Plugin configuration: an object of strings, per organization and plugin.
    let (status, body) = h.put("/api/v1/plugin-config/wifi", json!({"default-ssid": "ISP", "channel": "auto"})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, stored) = h.get("/api/v1/plugin-config/wifi").await;
    assert_eq!(stored, json!({"channel": "auto", "default-ssid": "ISP"}));
    let (_, other_plugin) = h.get("/api/v1/plugin-config/pppoe").await;
    assert_eq!(other_plugin, json!({}));
    let (status, _) = h.put("/api/v1/plugin-config/wifi", json!({"": "x"})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = h.put("/api/v1/plugin-config/wifi", json!({"n": 1})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "values are strings");
    let (status, _) = h.put("/api/v1/plugin-config/Not_A_Name", json!({})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    fleet.stop().await;
    h.finish().await;
}

on_both_backends! {
    async fn limits_and_config_are_per_organization(backend: Backend) {
        per_organization_limits_and_plugin_config(backend).await
    }
}

async fn a_tag_preset_alone_tags_the_device(backend: Backend) {
    let h = Harness::start(backend).await;
    let fleet = h.fleet(DataModelKind::Tr181, 1, "TAGONLY").await;
    let cpe = fleet.device(0);
    assert!(cpe.inform_now(&[]).await.unwrap().is_ok());
    // No preset depends on tags, so the session starts without reading them; the tag the
    // preset adds is merged with the ones the device already has.
    let id = cpe.device_id();
    let (status, _) = h.put(&format!("/api/v1/devices/{}/tags/existing", encode_id(&id)), json!({})).await;
    assert!(status.is_success());
    put_preset(&h, "mark", json!({"events": ["2 PERIODIC"], "provision": "tag", "args": {"add": "seen"}})).await;
    let report = cpe.inform_now(&["2 PERIODIC"]).await.unwrap();
    assert!(report.is_ok(), "{:?}", report.error);
    let tags = h.device(&id).await["tags"].clone();
    assert_eq!(tags, json!(["existing", "seen"]));
    fleet.stop().await;
    h.finish().await;
}

on_both_backends! {
    async fn a_tag_preset_needs_no_tag_conditions(backend: Backend) {
        a_tag_preset_alone_tags_the_device(backend).await
    }
}

/// The device's row as the store has it (primary key and tree revision).
/// Stores an unsigned value in the device's tree as another replica's session would.
async fn store_as_another_writer(h: &Harness, device_pk: roost::store::DevicePk, path: &str, value: &str) {
    let reported = roost_cwmp::ParameterValue {
        name: path.to_owned(),
        value: value.to_owned(),
        value_type: roost_cwmp::ValueType::parse("xsd:unsignedInt"),
    };
    let store = &h.app().store;
    roost::store::parameters::store_read(store, device_pk, &[reported], roost::store::now_millis()).await.unwrap();
}

async fn stored_device(h: &Harness, id: &str) -> roost::store::devices::Device {
    roost::store::devices::by_device_id(&h.app().store, id).await.unwrap().expect("registered")
}

/// What a session keeps of what it read serves the next session only while nothing wrote to the
/// device's tree: not after another replica stored what the device reported, nor after a task
/// earlier in the same session.
async fn kept_reads_serve_only_an_unchanged_tree(backend: Backend) {
    let h = Harness::start_configured(backend, roost::config::CpeAuthMode::Open, quiet_loops).await;
    let fleet = h.fleet(DataModelKind::Tr098, 1, "KEPT").await;
    let cpe = fleet.device(0);
    assert!(cpe.inform_now(&[]).await.unwrap().is_ok());
    let interval = "InternetGatewayDevice.ManagementServer.PeriodicInformInterval";
    put_preset(
        &h,
        "interval",
        json!({"events": ["2 PERIODIC"], "provision": "value", "args": {"path": interval, "value": "1234"}}),
    )
    .await;
    let periodic = || async {
        let report = cpe.inform_now(&["2 PERIODIC"]).await.unwrap();
        assert!(report.is_ok(), "{:?}", report.error);
        report.methods().iter().map(|m| (*m).to_owned()).collect::<Vec<String>>()
    };
    assert_eq!(periodic().await, ["SetParameterValues"]);
    assert_eq!(cpe.value(interval).as_deref(), Some("1234"));
    // Nothing to do now: this session's view is kept for the next, at the tree's revision.
    assert!(periodic().await.is_empty());
    let id = cpe.device_id();
    let device = stored_device(&h, &id).await;
    assert!(h.app().provisioning.reads.get(device.id, device.tree_rev).is_some(), "the view was kept");
    let store = &h.app().store;
    let before = store.statements_executed();
    assert!(periodic().await.is_empty());
    assert_eq!(store.statements_executed() - before, 1, "served from the kept view: the Inform's statement only");

    // Another replica's session stored what the device reported after a local change.
    cpe.set(interval, "600").unwrap();
    store_as_another_writer(&h, device.id, interval, "600").await;
    assert!(stored_device(&h, &id).await.tree_rev > device.tree_rev);
    assert_eq!(periodic().await, ["SetParameterValues"], "the kept view must not hide the change");
    assert_eq!(cpe.value(interval).as_deref(), Some("1234"));

    // A task earlier in the same session writes the tree after the Inform returned its revision.
    assert!(periodic().await.is_empty());
    let device = stored_device(&h, &id).await;
    assert!(h.app().provisioning.reads.get(device.id, device.tree_rev).is_some(), "kept again");
    let (status, task) = h
        .post(
            &format!("/api/v1/devices/{}/tasks", encode_id(&id)),
            json!({"name": "setParameterValues", "parameterValues": [[interval, "900"]]}),
        )
        .await;
    assert!(status.is_success(), "{status} {task}");
    assert_eq!(periodic().await, ["SetParameterValues", "SetParameterValues"], "the task's, then the preset's");
    assert_eq!(cpe.value(interval).as_deref(), Some("1234"));
    assert_eq!(h.stored_value(&id, interval).await.as_deref(), Some("1234"));
    fleet.stop().await;
    h.finish().await;
}

on_both_backends! {
    async fn kept_reads_follow_the_tree_revision(backend: Backend) {
        kept_reads_serve_only_an_unchanged_tree(backend).await
    }
}

/// A settled device's periodic session replays what its provisions declared last time instead of
/// running them: only while the tree, the preset and the plugin are unchanged, and never for a
/// run that read the clock.
async fn settled_runs_replay_only_what_cannot_differ(backend: Backend) {
    let h = Harness::start_configured(backend, roost::config::CpeAuthMode::Open, quiet_loops).await;
    let fleet = h.fleet(DataModelKind::Tr098, 1, "REPLAY").await;
    let cpe = fleet.device(0);
    assert!(cpe.inform_now(&[]).await.unwrap().is_ok());
    let id = cpe.device_id();
    let health = |max_age: &str| json!({"events": ["2 PERIODIC"], "provision": "health", "args": {"max-age": max_age}});
    put_preset(&h, "health", health("3600")).await;
    let app = h.app();
    let counters = &app.provisioning.counters;
    let counts = || {
        [&counters.sandboxed_runs, &counters.replayed_runs, &counters.inline_rounds]
            .map(|c| c.load(std::sync::atomic::Ordering::Relaxed))
    };
    let periodic = || async {
        let before = counts();
        let report = cpe.inform_now(&["2 PERIODIC"]).await.unwrap();
        assert!(report.is_ok(), "{:?}", report.error);
        let after = counts();
        let methods: Vec<String> = report.methods().iter().map(|m| (*m).to_owned()).collect();
        (methods, [0, 1, 2].map(|i| after[i] - before[i]))
    };

    // The figures are as fresh as the bootstrap's discovery: the run declares nothing to fetch,
    // and its output is kept with the view.
    assert_eq!(periodic().await, (vec![], [1, 0, 0]));
    let device = stored_device(&h, &id).await;
    let kept = app.provisioning.reads.get(device.id, device.tree_rev).expect("kept");
    assert_eq!(kept.runs.len(), 1, "the health run");
    assert!(!kept.runs[0].1.declarations.is_empty());
    let before = app.store.statements_executed();
    assert_eq!(periodic().await, (vec![], [0, 1, 1]), "replayed on the async worker");
    assert_eq!(app.store.statements_executed() - before, 1, "the Inform's statement only");

    // The preset's arguments are part of what the run saw.
    put_preset(&h, "health", health("3599")).await;
    assert_eq!(periodic().await, (vec![], [1, 0, 0]));
    assert_eq!(periodic().await, (vec![], [0, 1, 1]));

    // So is the tree: a write by anyone else moves its revision.
    store_as_another_writer(&h, device.id, "InternetGatewayDevice.DeviceInfo.UpTime", "77").await;
    assert_eq!(periodic().await, (vec![], [1, 0, 0]));
    assert_eq!(periodic().await, (vec![], [0, 1, 1]));

    // A replayed declaration is planned against the session's clock: once the figures are older
    // than the max-age, the replay reads them, and the next round runs the provision again.
    put_preset(&h, "health", health("2")).await;
    let mut settled = false;
    for _ in 0..10 {
        // Until a session finds every figure younger than 2 s, plans nothing and keeps its run.
        if periodic().await == (vec![], [1, 0, 0]) {
            settled = true;
            break;
        }
    }
    assert!(settled, "no session found the figures fresh");
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let (methods, counts) = periodic().await;
    assert!(methods.iter().any(|m| m == "GetParameterValues"), "the replay asks for the figures: {methods:?}");
    assert_eq!(counts, [1, 1, 1], "replayed on the worker, run in the sandbox after the read");
    put_preset(&h, "health", health("3600")).await;
    assert_eq!(periodic().await, (vec![], [1, 0, 0]), "that session wrote: nothing was kept");

    // A run that reads the clock runs every session; the health run beside it is still replayed.
    let (status, hostile) = upload(&h, &h.token, "name=hostile&version=1.0.0", component("hostile")).await;
    assert_eq!(status, StatusCode::CREATED, "{hostile}");
    put_preset(&h, "stamp", json!({"events": ["2 PERIODIC"], "provision": "hostile", "args": {"mode": "stamp"}})).await;
    let seen = || async {
        let device = h.device(&id).await;
        let tags = device["tags"].as_array().unwrap().clone();
        tags.iter().filter(|t| t.as_str().unwrap().starts_with("seen-")).count()
    };
    for session in 1..=3 {
        assert_eq!(periodic().await, (vec![], [1, 1, 0]), "session {session}");
        assert_eq!(seen().await, session, "a new stamp each session");
    }
    assert!(faults(&h, &id).await.is_empty(), "{:?}", faults(&h, &id).await);
    fleet.stop().await;
    h.finish().await;
}

on_both_backends! {
    async fn settled_provisions_are_replayed(backend: Backend) {
        settled_runs_replay_only_what_cannot_differ(backend).await
    }
}

/// A provision that reads a leaf the device does not have: its object's last listing shows it
/// absent. Within the declaration's max-age (here since discovery) nothing is fetched at all; with
/// a max-age of 0 ("this session's value") the object is listed once per session, not again in
/// every round until the session runs out of rounds.
#[tokio::test]
async fn a_declared_leaf_the_device_lacks_is_looked_for_once() {
    let h = Harness::start_configured(Backend::Sqlite, CpeAuthMode::Open, quiet_loops).await;
    let fleet = h.fleet(DataModelKind::Tr181, 1, "LACKS").await;
    let cpe = fleet.device(0);
    assert!(cpe.inform_now(&[]).await.unwrap().is_ok());
    let missing = "Device.DeviceInfo.NoSuchFigure";
    assert!(cpe.value(missing).is_none(), "the device has no such leaf");
    let session = || async {
        let report = cpe.inform_now(&["2 PERIODIC"]).await.unwrap();
        assert!(report.is_ok(), "{:?}", report.error);
        report.methods().iter().map(|m| (*m).to_owned()).collect::<Vec<String>>()
    };
    let listings = |methods: &[String]| methods.iter().filter(|m| *m == "GetParameterNames").count();
    let lacking = |max_age: &str| json!({"events": ["2 PERIODIC"], "provision": "refresh", "args": {"path": missing, "max-age": max_age}});

    put_preset(&h, "lacking", lacking("3600")).await;
    let within = session().await;
    assert!(within.is_empty(), "discovery listed its object within the hour: {within:?}");

    put_preset(&h, "lacking", lacking("0")).await;
    for _ in 0..2 {
        let methods = session().await;
        assert_eq!(listings(&methods), 1, "its object listed once a session: {methods:?}");
    }
    assert!(faults(&h, &cpe.device_id()).await.is_empty(), "nothing failed");
    fleet.stop().await;
    h.finish().await;
}
