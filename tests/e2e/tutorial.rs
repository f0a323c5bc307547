//! docs/PLUGINS.md, followed literally, as a newcomer would: its `sh tutorial` blocks' commands
//! run (`roost plugin new`, the native `cargo test`, `roost plugin build`), its `file=` and
//! `append=` blocks are the crates' code, the components its upload commands name are uploaded,
//! its presets put, and a device simulated as its `roost-sim` command says. So the tutorial
//! cannot drift from what compiles and works.
//!
//! Its own test binary: it changes the process's working directory as the tutorial's `cd` does,
//! and its cargo builds should not crowd other tests.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::Command;

use clap::Parser;
use reqwest::StatusCode;
use roost::config::CpeAuthMode;
use roost_tests::*;

const DOC: &str = include_str!("../../docs/PLUGINS.md");

/// One fenced block of the page.
#[derive(Debug)]
struct Block {
    info: String,
    text: String,
}

fn blocks(doc: &str) -> Vec<Block> {
    let mut blocks = Vec::new();
    let mut open: Option<Block> = None;
    for line in doc.lines() {
        match (&mut open, line.trim_end().strip_prefix("```")) {
            (None, Some(info)) => open = Some(Block { info: info.trim().to_owned(), text: String::new() }),
            (Some(_), Some("")) => blocks.extend(open.take()),
            (Some(block), _) => {
                block.text.push_str(line);
                block.text.push('\n');
            }
            (None, None) => {}
        }
    }
    assert!(open.is_none(), "an unclosed code block in docs/PLUGINS.md");
    blocks
}

/// `file=PATH` or `append=PATH` of a block's info string.
fn target<'a>(info: &'a str, key: &str) -> Option<&'a str> {
    info.split_whitespace().find_map(|word| word.strip_prefix(key)?.strip_prefix('='))
}

/// Runs one line of a `sh tutorial` block: commands joined by `&&`, each `cd`, `roost` (this
/// build's, in process) or `cargo`.
async fn run_line(line: &str) {
    for command in line.split("&&") {
        let words: Vec<&str> = command.split_whitespace().collect();
        assert!(!command.contains(['"', '\'', '$', '|', ';']), "keep tutorial commands plain words: {command}");
        match words.as_slice() {
            ["cd", dir] => std::env::set_current_dir(dir).unwrap_or_else(|e| panic!("cd {dir}: {e}")),
            ["roost", ..] => {
                let cli =
                    roost::cli::Cli::try_parse_from(words.iter().copied()).unwrap_or_else(|e| panic!("{command}: {e}"));
                roost::cli::run(cli).await.unwrap_or_else(|e| panic!("{command}: {e:#}"));
            }
            ["cargo", args @ ..] => {
                // What this test's own cargo leaks into its environment is not the author's.
                let status = Command::new("cargo")
                    .args(args)
                    .env_remove("CARGO_TARGET_DIR")
                    .env_remove("RUSTFLAGS")
                    .env_remove("CARGO_ENCODED_RUSTFLAGS")
                    .status()
                    .unwrap();
                assert!(status.success(), "{command}: {status}");
            }
            _ => panic!("the tutorial's commands are roost, cargo and cd: {command}"),
        }
    }
}

/// `(name=…&version=…, component path)` of each upload command on the page.
fn uploads(blocks: &[Block]) -> Vec<(String, PathBuf)> {
    let text: String = blocks.iter().filter(|b| b.info == "sh").map(|b| b.text.as_str()).collect();
    let mut uploads = Vec::new();
    let mut query = None;
    for line in text.lines() {
        if let Some(rest) = line.split("/api/v1/plugins?").nth(1) {
            query = Some(rest.split('"').next().unwrap().to_owned());
        }
        if let Some(path) = line.split("--data-binary @").nth(1) {
            uploads.push((query.take().expect("a --data-binary without its POST"), PathBuf::from(path.trim())));
        }
    }
    uploads
}

/// `(name, body)` of each preset the page PUTs.
fn presets(blocks: &[Block]) -> Vec<(String, JsonValue)> {
    blocks
        .iter()
        .filter(|b| b.info == "sh" && b.text.contains("/api/v1/presets/"))
        .map(|b| {
            let name = b.text.split("/api/v1/presets/").nth(1).unwrap().split('"').next().unwrap().to_owned();
            let body = b.text.split("-d '").nth(1).unwrap().rsplit_once('\'').unwrap().0;
            let preset = serde_json::from_str(body).unwrap_or_else(|e| panic!("preset {name}: {e}: {body}"));
            (name, preset)
        })
        .collect()
}

/// The value of `--flag` on the page's `roost-sim` command.
fn sim_flag(blocks: &[Block], flag: &str) -> String {
    let line = blocks.iter().flat_map(|b| b.text.lines()).find(|l| l.starts_with("roost-sim ")).unwrap();
    let words: Vec<&str> = line.split_whitespace().collect();
    let at = words.iter().position(|w| *w == flag).unwrap_or_else(|| panic!("{flag} in {line}"));
    words[at + 1].to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_plugin_tutorial_works_as_written() {
    let blocks = blocks(DOC);
    let work = tempfile::tempdir().unwrap();
    // The tutorial's crates share one target directory that outlives the test, so the standard
    // library (built from source with Debian's rustc-web) and the SDK build once per machine.
    let targets = Path::new(env!("CARGO_TARGET_TMPDIR")).join("tutorial-target");
    std::fs::create_dir_all(work.path().join(".cargo")).unwrap();
    std::fs::write(
        work.path().join(".cargo/config.toml"),
        format!("[build]\ntarget-dir = {:?}\n", targets.display().to_string()),
    )
    .unwrap();
    // What an earlier run built must not stand in for what this one builds.
    let release = targets.join("wasm32-unknown-unknown/release");
    for entry in std::fs::read_dir(&release).into_iter().flatten().flatten() {
        if entry.path().extension().is_some_and(|e| e == "wasm") {
            std::fs::remove_file(entry.path()).unwrap();
        }
    }
    std::env::set_current_dir(work.path()).unwrap();

    let mut commands = 0;
    for block in &blocks {
        if block.info == "sh tutorial" {
            for line in block.text.lines().filter(|l| !l.trim().is_empty()) {
                run_line(line).await;
                commands += 1;
            }
        } else if let Some(path) = target(&block.info, "file") {
            std::fs::write(work.path().join(path), &block.text).unwrap_or_else(|e| panic!("{path}: {e}"));
        } else if let Some(path) = target(&block.info, "append") {
            let path = work.path().join(path);
            let mut text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            text.push_str(&block.text);
            std::fs::write(&path, text).unwrap();
        }
        assert_eq!(
            std::env::current_dir().unwrap(),
            work.path().canonicalize().unwrap(),
            "a block ends where it began"
        );
    }
    assert!(commands >= 6, "new ×2, cargo test ×2, build ×2: {commands} commands");
    // The manifest the page shows is the one `roost plugin new` wrote, but for where the SDK is.
    let shown = blocks
        .iter()
        .find(|b| b.info == "toml" && b.text.contains("name = \"acme-adapter\""))
        .expect("the page shows the new crate's manifest");
    let sdk = roost::plugins::authoring::sdk_of_this_checkout().unwrap();
    let written = std::fs::read_to_string(work.path().join("acme-adapter/Cargo.toml")).unwrap();
    assert_eq!(shown.text, written.replace(&sdk.display().to_string(), "/home/you/roost/plugin-sdk"));
    // What `roost plugin new` writes builds and passes its own test before anyone edits it.
    for world in ["adapter", "provision"] {
        let name = format!("fresh-{world}");
        run_line(&format!("roost plugin new {world} {name} && cd {name} && cargo test && cd ..")).await;
        run_line(&format!("roost plugin build {name}")).await;
        assert!(release.join(format!("{}.wasm", name.replace('-', "_"))).is_file(), "{name} built");
    }

    // The components are where the upload commands say (through the shared target directory).
    // A server that, as `roost serve` does by default, wants CPEs to authenticate: with the
    // credential the page creates and hands to roost-sim.
    let h = Harness::start_with(Backend::Sqlite, CpeAuthMode::Required).await;
    let (username, password) = (sim_flag(&blocks, "--acs-username"), sim_flag(&blocks, "--acs-password"));
    assert!(
        DOC.contains(&format!("echo {password} | roost cpe-credential create --username {username} --password-stdin"))
    );
    let app = h.app();
    roost::store::credentials::create(&app.store, Default::default(), &username, app.secrets.seal(password.as_bytes()))
        .await
        .unwrap();
    let uploads = uploads(&blocks);
    assert_eq!(uploads.len(), 2, "{uploads:?}");
    for (query, path) in &uploads {
        let crate_dir = path.iter().next().unwrap();
        assert!(work.path().join(crate_dir).join("Cargo.toml").is_file(), "{}: no such crate", path.display());
        let relative = path.iter().skip_while(|part| *part != "target").skip(1).collect::<PathBuf>();
        let component = std::fs::read(targets.join(&relative)).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let response = h
            .http
            .post(h.url(&format!("/api/v1/plugins?{query}")))
            .bearer_auth(&h.token)
            .header("Content-Type", "application/wasm")
            .body(component)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::CREATED, "{query}: {}", response.text().await.unwrap());
    }
    for (name, preset) in presets(&blocks) {
        let (status, body) = h.put(&format!("/api/v1/presets/{name}"), preset).await;
        assert!(status.is_success(), "preset {name}: {status} {body}");
    }

    // The device `roost-sim --model tr181 --oui … --manufacturer …` plays.
    let mut model = DataModel::bundled(DataModelKind::Tr181).unwrap();
    model.rebadge(&roost_sim::Badge {
        oui: Some(sim_flag(&blocks, "--oui")),
        manufacturer: Some(sim_flag(&blocks, "--manufacturer")),
        product_class: None,
    });
    let mut config = FleetConfig::new(h.cwmp_url(), std::sync::Arc::new(model));
    config.serial_prefix = "SIM".into();
    config.start = StartMode::Manual;
    config.retry = false;
    config.acs_username = Some(username);
    config.acs_password = Some(password);
    let fleet = roost_sim::Fleet::start(config).await.unwrap();
    let cpe = fleet.device(0);
    let id = cpe.device_id();
    assert!(DOC.contains(&format!("GET /api/v1/devices/{id}`")), "the page names the simulated device {id}");
    let ssids = "Device.WiFi.SSID.";
    let ssids_before = cpe.with_state(|s| s.tree.instances(ssids).len());
    let report = cpe.inform_now(&[]).await.unwrap();
    assert!(report.is_ok(), "{:?}", report.error);
    let methods = report.methods();
    // Discovery, then provisioning: list the SSID table, add the guest network and name it, then
    // enable it and set the primary network's passphrase through the Acme adapter.
    let add = methods.iter().position(|m| *m == "AddObject").unwrap_or_else(|| panic!("{methods:?}"));
    let sets = methods[add..].iter().filter(|m| **m == "SetParameterValues").count();
    assert!(sets >= 2, "the alias after AddObject, then Enable and the passphrase: {methods:?}");

    let guest: Vec<String> = cpe.with_state(|s| {
        s.tree
            .instances(ssids)
            .into_iter()
            .map(|i| format!("{ssids}{i}.SSID"))
            .filter(|p| s.tree.get(p).is_some_and(|(v, _)| v == "Guest"))
            .collect()
    });
    assert_eq!(guest.len(), 1, "one guest SSID: {guest:?}");
    let instance = guest[0].trim_end_matches("SSID");
    assert!(matches!(cpe.value(&format!("{instance}Enable")).as_deref(), Some("1" | "true")), "guest enabled");
    assert_eq!(cpe.value("Device.WiFi.AccessPoint.1.Security.KeyPassphrase").as_deref(), Some("correct horse battery"));
    assert_eq!(cpe.with_state(|s| s.tree.instances(ssids).len()), ssids_before + 1, "one added, none deleted");
    // The lab's bootstrap preset: the short interval it asked for.
    assert_eq!(cpe.value("Device.ManagementServer.PeriodicInformInterval").as_deref(), Some("10"));

    let device = h.device(&id).await;
    assert_eq!(device["adapter"]["plugin"], "acme", "the highest score wins: {device}");
    assert_eq!(device["adapter"]["score"], 50);
    assert!(device["tags"].as_array().unwrap().iter().any(|t| t == "guest-wifi"), "{device}");
    let (status, faults) = h.get(&format!("/api/v1/devices/{}/faults", encode_id(&id))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(faults["items"], serde_json::json!([]), "{faults}");
    assert_eq!(h.stored_value(&id, &guest[0]).await.as_deref(), Some("Guest"));
    // The provision's log line, over the API, as the page asks for it.
    let query = blocks
        .iter()
        .flat_map(|b| b.text.lines())
        .find_map(|l| l.split("/logs?").nth(1))
        .expect("the page reads a device's logs")
        .split('"')
        .next()
        .unwrap();
    let (status, logs) = h.get(&format!("/api/v1/devices/{}/logs?{query}", encode_id(&id))).await;
    assert_eq!(status, StatusCode::OK, "{logs}");
    let lines: Vec<&str> = logs["items"].as_array().unwrap().iter().filter_map(|l| l["message"].as_str()).collect();
    assert!(lines.contains(&"guest network Guest"), "{logs}");

    // The preset runs on bootstrap only; a periodic Inform has nothing to do.
    let periodic = cpe.inform_now(&["2 PERIODIC"]).await.unwrap();
    assert!(periodic.is_ok(), "{:?}", periodic.error);
    assert!(periodic.methods().is_empty(), "{:?}", periodic.methods());
    fleet.stop().await;
    h.finish().await;
}
