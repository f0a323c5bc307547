//! A plugin's oversized text is refused where it lies, in the plugin's own memory: the host does
//! not copy a 64 MiB declaration or log line only to refuse it. Measured as the growth of the
//! process's peak resident memory, so this is a test binary of its own, one test long: nothing
//! else may allocate beside it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use roost::plugins::bindings::types::DeviceFacts;
use roost::plugins::{DeviceView, PluginLimits, PluginRuntime, PluginSettings};
use roost_params::tree::ParameterTree;

const MIB: u64 = 1024 * 1024;
const VALUE: u64 = 64 * MIB;

fn component(crate_name: &str) -> Vec<u8> {
    let path = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../plugins/target/wasm32-unknown-unknown/release")
        .join(format!("{}.wasm", crate_name.replace('-', "_")));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}; run scripts/build-plugins.sh --install", path.display()))
}

/// The hostile plugin as built against roost:plugin 0.1.0 (tests/data/plugins/README.md): its
/// `declare` and `log` imports name 0.1.0, and must reach the same measuring host functions.
fn hostile_of_0_1_0() -> Vec<u8> {
    let path = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/data/plugins/roost-plugin@0.1.0/hostile.wasm");
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A line of /proc/self/status, in bytes.
fn status(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with(field)).unwrap_or_else(|| panic!("no {field}"));
    line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() * 1024
}

/// How much the peak resident memory grows above today's while `f` runs.
fn peak_growth(f: impl FnOnce()) -> u64 {
    // Writing 5 resets the peak (VmHWM) to the current resident size (Linux ≥ 4.0).
    std::fs::write("/proc/self/clear_refs", "5").unwrap();
    let before = status("VmRSS:");
    f();
    status("VmHWM:").saturating_sub(before)
}

#[test]
fn oversized_declarations_and_log_lines_are_refused_without_a_copy() {
    let runtime =
        Arc::new(PluginRuntime::new(PluginSettings { concurrent_instances: 2, ..PluginSettings::default() }).unwrap());
    // Today's SDK and the first released API: both name their imports by their own version.
    for (built_against, bytes) in [("0.1.1", component("hostile")), ("0.1.0", hostile_of_0_1_0())] {
        let hostile = runtime.validate(&bytes).unwrap().loaded;
        assert_eq!(hostile.api_version(), built_against);
        refuses_without_a_copy(&runtime, &hostile, built_against);
    }
}

fn refuses_without_a_copy(runtime: &Arc<PluginRuntime>, hostile: &roost::plugins::Loaded, built_against: &str) {
    let facts = DeviceFacts {
        manufacturer: "Roost".into(),
        oui: "00AABB".into(),
        product_class: "Lab".into(),
        serial_number: "COPY01".into(),
        model_name: None,
        software_version: None,
        hardware_version: None,
        root: "Device".into(),
    };
    let view =
        || Arc::new(DeviceView::new(facts.clone(), "00AABB-Lab-COPY01".into(), vec![], vec![], ParameterTree::new()));
    // Room for the plugin to build the text in its own memory; the run's limits refuse it.
    // Time enough, in a debug build, to copy it: what is measured is memory.
    let limits = PluginLimits {
        memory_bytes: 256 * MIB as usize,
        cpu_time_ms: 5_000,
        wall_clock_ms: 30_000,
        ..PluginLimits::default()
    };
    let run = |mode: &str, bytes: u64| {
        let args = vec![("mode".to_owned(), mode.to_owned()), ("bytes".to_owned(), bytes.to_string())];
        runtime.run_provision(hostile, view(), None, limits, Vec::new(), &args)
    };
    // A first small run of each, so that what is allocated once (instances, code) is there.
    run("huge-value", 1024).0.unwrap();
    run("huge-log", 1024).0.unwrap();

    let mut fault = None;
    let declared = peak_growth(|| fault = run("huge-value", VALUE).0.err());
    assert_eq!(fault.unwrap().code().to_string(), "plugin.limit");
    let mut output = None;
    let logged = peak_growth(|| output = Some(run("huge-log", VALUE)));
    let (result, output) = output.unwrap();
    result.unwrap();
    assert_eq!(output.logs_dropped, 1, "the line is dropped, and counted");

    // The plugin's own memory holds the text once; a copy into the host would hold it again.
    for (what, growth) in [("declaration", declared), ("log line", logged)] {
        assert!(growth < VALUE + VALUE / 2, "{built_against}: a 64 MiB {what} grew the peak by {} MiB", growth / MIB);
    }
}
