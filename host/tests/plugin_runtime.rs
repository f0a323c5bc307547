//! The plugin runtime against real components built from `plugins/` (scripts/build-plugins.sh,
//! which the test command runs first): validation, limits, and containment of hostile plugins.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use roost::plugins::bindings::types::DeviceFacts;
use roost::plugins::{
    DeviceView, InvalidPlugin, Loaded, PluginFault, PluginLimits, PluginRuntime, PluginSettings, World,
};
use roost_params::tree::{Node, ParameterTree};

fn component(crate_name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../plugins/target/wasm32-unknown-unknown/release")
        .join(format!("{}.wasm", crate_name.replace('-', "_")));
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!("{}: {e}; build the plugins first: scripts/build-plugins.sh --install", path.display())
    })
}

fn runtime() -> Arc<PluginRuntime> {
    Arc::new(PluginRuntime::new(PluginSettings { concurrent_instances: 16, ..PluginSettings::default() }).unwrap())
}

fn load(runtime: &PluginRuntime, crate_name: &str) -> Arc<Loaded> {
    runtime.validate(&component(crate_name)).unwrap().loaded
}

fn facts() -> DeviceFacts {
    DeviceFacts {
        manufacturer: "Roost".into(),
        oui: "00AABB".into(),
        product_class: "Lab".into(),
        serial_number: "HOSTILE01".into(),
        model_name: None,
        software_version: None,
        hardware_version: None,
        root: "Device".into(),
    }
}

fn view() -> Arc<DeviceView> {
    let mut tree = ParameterTree::new();
    tree.insert(
        "Device.DeviceInfo.UpTime",
        Node { value: Some("42".into()), value_type: "xsd:unsignedInt".into(), writable: false, updated_ms: 1 },
    );
    Arc::new(DeviceView::new(facts(), "00AABB-Lab-HOSTILE01".into(), vec!["2 PERIODIC".into()], vec![], tree))
}

fn run(
    runtime: &Arc<PluginRuntime>,
    loaded: &Loaded,
    args: &[(&str, &str)],
) -> (Result<(), PluginFault>, roost::plugins::RunOutput) {
    let args: Vec<(String, String)> = args.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect();
    runtime.run_provision(loaded, view(), None, PluginLimits::default(), Vec::new(), &args)
}

#[test]
fn validation_tells_the_world_and_refuses_what_is_not_ours() {
    let runtime = runtime();
    let provision = runtime.validate(&component("provision-health")).unwrap();
    assert_eq!(provision.world, World::Provision);
    assert_eq!(provision.hash.len(), 64);

    let foreign = runtime.validate(&component("hostile-import")).unwrap_err();
    let InvalidPlugin::WrongInterface(message) = &foreign else { panic!("{foreign:?}") };
    // Named in the author's terms, once: what it imports that its world does not offer.
    assert!(message.contains("imports `evil:plugin/socket`, which the `provision` world does not offer"), "{message}");
    assert!(message.contains("roost:plugin/{device, declare, tags"), "{message}");
    assert_eq!(message.matches("evil:plugin/socket").count(), 1, "{message}");

    // An adapter whose `radio` has the right names and the wrong types, which only instantiation
    // finds: refused at upload, not failing each later call.
    let wrong_radio = runtime.validate(&component("hostile-export")).unwrap_err();
    let InvalidPlugin::WrongInterface(message) = &wrong_radio else { panic!("{wrong_radio:?}") };
    assert!(message.starts_with("as an adapter: ") && message.contains("expected `u64` found `u32`"), "{message}");

    let garbage = runtime.validate(b"definitely not wasm").unwrap_err();
    assert!(matches!(garbage, InvalidPlugin::NotAComponent(_)), "{garbage:?}");

    // A core module (the output of a plain wasm32 build without the component linker).
    let core = [0, b'a', b's', b'm', 1, 0, 0, 0];
    let core = runtime.validate(&core).unwrap_err();
    assert!(core.to_string().contains("core WebAssembly module"), "{core}");
}

#[test]
fn a_well_behaved_run_returns_its_declarations() {
    let runtime = runtime();
    let hostile = load(&runtime, "hostile");
    let (result, output) = run(&runtime, &hostile, &[("mode", "behave")]);
    result.unwrap();
    assert_eq!(output.declarations.len(), 1);
    assert_eq!(output.declarations[0].pattern.to_string(), "Device.DeviceInfo.UpTime");
    assert_eq!(output.declarations[0].max_age, Some(Duration::from_secs(60)));
}

#[test]
fn every_attack_becomes_the_right_fault() {
    let _turn = CPU_MEASURED.lock().unwrap_or_else(|p| p.into_inner());
    let runtime = runtime();
    let hostile = load(&runtime, "hostile");
    // The count limits are what is under test for the declaration floods, not the CPU budget:
    // 20,000 host calls can take longer than 50 ms in an unoptimised test build.
    let generous = PluginLimits { cpu_time_ms: 2000, ..PluginLimits::default() };
    let cases: [(&str, &str, PluginLimits); 6] = [
        ("loop", "plugin.cpu_time", PluginLimits::default()),
        ("memory", "plugin.memory", PluginLimits::default()),
        ("recursion", "plugin.trap", PluginLimits::default()),
        ("declarations", "plugin.limit", generous),
        ("huge-value", "plugin.limit", generous),
        ("trap", "plugin.trap", PluginLimits::default()),
    ];
    for (mode, code, limits) in cases {
        let started = Instant::now();
        let args = vec![("mode".to_owned(), mode.to_owned())];
        let (result, _) = runtime.run_provision(&hostile, view(), None, limits, Vec::new(), &args);
        let fault = result.expect_err(mode);
        assert_eq!(fault.code().to_string(), code, "{mode}: {fault}");
        if mode == "recursion" {
            // Said as what it is, whichever stack ran out first.
            assert!(fault.to_string().contains("stack overflow"), "{fault}");
        }
        // Stopped by its budget, well before the backstop: not after seconds of damage.
        assert!(started.elapsed() < limits.wall_clock(), "{mode} took {:?}", started.elapsed());
    }
    // The runtime is still healthy afterwards.
    run(&runtime, &hostile, &[("mode", "behave")]).0.unwrap();
}

#[test]
fn a_spinning_plugin_does_not_hold_up_other_runs() {
    let _turn = CPU_MEASURED.lock().unwrap_or_else(|p| p.into_inner());
    let runtime = runtime();
    let hostile = load(&runtime, "hostile");
    let limits = PluginLimits { cpu_time_ms: 400, ..PluginLimits::default() };
    let spinning = {
        let (runtime, hostile) = (runtime.clone(), hostile.clone());
        std::thread::spawn(move || {
            let args = vec![("mode".to_owned(), "loop".to_owned())];
            runtime.run_provision(&hostile, view(), None, limits, Vec::new(), &args).0
        })
    };
    std::thread::sleep(Duration::from_millis(50));
    let mut completed = 0;
    // The default budget for the well-behaved runs: a run descheduled while the other spins
    // keeps its budget, as it counts CPU time.
    let behave = vec![("mode".to_owned(), "behave".to_owned())];
    while !spinning.is_finished() {
        runtime.run_provision(&hostile, view(), None, PluginLimits::default(), Vec::new(), &behave).0.unwrap();
        completed += 1;
    }
    assert_eq!(spinning.join().unwrap().unwrap_err().code().to_string(), "plugin.cpu_time");
    assert!(completed > 10, "only {completed} runs completed beside the spinning one");
}

#[test]
fn a_lower_memory_limit_is_enforced_per_call() {
    // A 3 MB value under the default budget: not beside the busy-machine test's hogs.
    let _turn = CPU_MEASURED.lock().unwrap_or_else(|p| p.into_inner());
    let runtime = runtime();
    let hostile = load(&runtime, "hostile");
    let tight = PluginLimits { memory_bytes: 2 * 1024 * 1024, ..PluginLimits::default() };
    let args = vec![("mode".to_owned(), "huge-value".to_owned()), ("bytes".to_owned(), "3000000".to_owned())];
    let (result, _) = runtime.run_provision(&hostile, view(), None, tight, Vec::new(), &args);
    assert_eq!(result.unwrap_err().code().to_string(), "plugin.memory");
    // The same call with the default limit gets as far as the declaration-size limit.
    let (result, _) = runtime.run_provision(&hostile, view(), None, PluginLimits::default(), Vec::new(), &args);
    result.unwrap();
}

/// A store that answers slowly, as one under load does.
struct SlowStore(ParameterTree);

impl roost::plugins::TreeLoader for SlowStore {
    fn load(&self, prefix: &str) -> anyhow::Result<Vec<(String, Node)>> {
        std::thread::sleep(Duration::from_millis(40));
        Ok(self.0.range(prefix).map(|(k, n)| (k.clone(), n.clone())).collect())
    }
}

#[test]
fn time_spent_loading_parameters_does_not_count_against_the_budget() {
    // Provision and adapter instantiated under the default budget: not beside the hogs.
    let _turn = CPU_MEASURED.lock().unwrap_or_else(|p| p.into_inner());
    let runtime = runtime();
    let health = load(&runtime, "provision-health");
    let adapter = load(&runtime, "adapter-tr181");
    let mut tree = ParameterTree::new();
    for (path, value) in [("Device.DeviceInfo.UpTime", "42"), ("Device.DeviceInfo.MemoryStatus.Free", "1000")] {
        tree.insert(
            path,
            Node { value: Some(value.into()), value_type: "xsd:unsignedInt".into(), writable: false, updated_ms: 1 },
        );
    }
    let view = Arc::new(DeviceView::lazy(facts(), "slow".into(), vec![], Some(vec![]), Box::new(SlowStore(tree))));
    let args = vec![("max-age".to_owned(), "300".to_owned())];
    let started = Instant::now();
    let (result, output) =
        runtime.run_provision(&health, view.clone(), Some(adapter), PluginLimits::default(), Vec::new(), &args);
    // Several loads of 40 ms each: far past the 50 ms budget in wall-clock time, well within
    // it in the plugin's own time.
    assert!(started.elapsed() > Duration::from_millis(100), "the loads did happen");
    assert!(view.tree_loads() >= 2, "{} loads", view.tree_loads());
    result.unwrap();
    assert!(output.declarations.iter().any(|d| d.pattern.to_string() == "Device.DeviceInfo.UpTime"));
}

#[test]
fn a_store_stuck_past_the_wall_clock_backstop_stops_the_run_as_a_timeout() {
    let runtime = runtime();
    let hostile = load(&runtime, "hostile");
    let view = Arc::new(DeviceView::lazy(
        facts(),
        "stuck".into(),
        vec![],
        Some(vec![]),
        Box::new(SlowStore(ParameterTree::new())),
    ));
    // Ten loads of 40 ms: a few ms of CPU time, 400 ms of wall-clock time.
    let limits = PluginLimits { wall_clock_ms: 150, ..PluginLimits::default() };
    let args = vec![("mode".to_owned(), "reads".to_owned()), ("count".to_owned(), "10".to_owned())];
    let (result, _) = runtime.run_provision(&hostile, view.clone(), None, limits, Vec::new(), &args);
    let fault = result.unwrap_err();
    assert_eq!(fault.code().to_string(), "plugin.timeout", "{fault}");
    assert!(fault.to_string().contains("150 ms (the wall-clock backstop)"), "{fault}");
    // Stopped at the first check after the backstop, not after every load.
    assert!(view.tree_loads() < 10, "{} loads", view.tree_loads());
}

/// Processes that spin on the CPU the calling thread is pinned to, while they live: the load
/// another tenant's work, a backup or a noisy neighbour puts on a server. Pinned together, the
/// thread gets 1/(count + 1) of that CPU whatever the machine's cores and however a CPU quota
/// spreads them (unpinned, a CI run's thread kept nearly its full speed beside six hogs, as a
/// quota over more cores than it grants would let it). libtest runs each test on a thread of its own, so the pin ends with the
/// test. Killed, by PID, when dropped.
struct CpuHogs(Vec<std::process::Child>);

impl CpuHogs {
    fn pinned_beside_this_thread(count: usize) -> Self {
        use std::process::Command;
        // "<pid>/task/<tid>"
        let thread = std::fs::read_link("/proc/thread-self").expect("/proc/thread-self");
        let tid = thread.file_name().and_then(|t| t.to_str()).expect("a thread id").to_owned();
        let status = std::fs::read_to_string("/proc/thread-self/status").expect("the thread's status");
        let allowed = status.lines().find_map(|l| l.strip_prefix("Cpus_allowed_list:")).expect("Cpus_allowed_list");
        let cpu: String = allowed.trim().chars().take_while(char::is_ascii_digit).collect();
        let pinned = Command::new("taskset").args(["-pc", &cpu, &tid]).output().expect("running taskset");
        assert!(pinned.status.success(), "pinning the test thread: {}", String::from_utf8_lossy(&pinned.stderr));
        let hogs = (0..count)
            .map(|_| {
                // taskset execs the shell: the child's PID is the spinning process.
                Command::new("taskset")
                    .args(["-c", &cpu, "sh", "-c", "while :; do :; done"])
                    .spawn()
                    .expect("starting sh")
            })
            .collect();
        // On the CPU before the runs start.
        std::thread::sleep(Duration::from_millis(100));
        CpuHogs(hogs)
    }
}

impl Drop for CpuHogs {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Runs the hostile plugin's `spin` mode: its result and wall-clock time.
fn spin(
    runtime: &Arc<PluginRuntime>,
    hostile: &Loaded,
    iterations: u64,
    limits: PluginLimits,
) -> (Result<(), PluginFault>, Duration) {
    let args = vec![("mode".to_owned(), "spin".to_owned()), ("iterations".to_owned(), iterations.to_string())];
    let started = Instant::now();
    let (result, _) = runtime.run_provision(hostile, view(), None, limits, Vec::new(), &args);
    (result, started.elapsed())
}

/// Tests that measure the machine's CPU or load it, and heavy runs that must fit the default
/// budget, take turns: one's spinning (or hogs) does not skew another.
static CPU_MEASURED: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn a_busy_machine_does_not_fault_a_provision_that_fits_its_budget() {
    let _turn = CPU_MEASURED.lock().unwrap_or_else(|p| p.into_inner());
    let runtime = runtime();
    let hostile = load(&runtime, "hostile");
    // The work that takes 20 ms here, on a quiet machine: the fastest of three timed runs (wall
    // time is at least CPU time, so this errs towards less work). Less than half the budget:
    // the same work costs more CPU time on a loaded machine (caches shared with the hogs, a
    // hypervisor's steal time counted as ours), by over a quarter in one CI run, and that must not fault.
    let generous = PluginLimits { cpu_time_ms: 5_000, ..PluginLimits::default() };
    let probe = 4_000_000;
    let fastest = (0..3)
        .map(|_| spin(&runtime, &hostile, probe, generous))
        .map(|(r, took)| r.map(|()| took).unwrap())
        .min()
        .unwrap();
    let twenty_ms = (probe as f64 * 20.0 / fastest.as_secs_f64() / 1000.0) as u64;

    // The same work under the default 50 ms budget, with three hogs on the run's CPU: the run
    // waits for it three quarters of the time, and that wait is not the plugin's.
    let hogs = CpuHogs::pinned_beside_this_thread(3);
    let runs: Vec<(Result<(), PluginFault>, Duration)> =
        (0..12).map(|_| spin(&runtime, &hostile, twenty_ms, PluginLimits::default())).collect();
    drop(hogs);
    let faults: Vec<String> = runs.iter().filter_map(|(r, _)| r.as_ref().err().map(ToString::to_string)).collect();
    let took: Vec<Duration> = runs.iter().map(|(_, took)| *took).collect();
    assert!(
        faults.is_empty(),
        "{} of 12 runs faulted ({twenty_ms} iterations, {fastest:?} for {probe} when quiet; took {took:?}): {faults:?}",
        faults.len()
    );
    // The load was real: runs took longer than the budget in wall-clock time, which a wall-clock
    // deadline would have faulted.
    let slowest = *took.iter().max().unwrap();
    assert!(slowest > Duration::from_millis(50), "the slowest run took {slowest:?}: the hogs did not load the machine");
}

/// A store that is down.
struct BrokenStore;

impl roost::plugins::TreeLoader for BrokenStore {
    fn load(&self, _prefix: &str) -> anyhow::Result<Vec<(String, Node)>> {
        anyhow::bail!("connection refused")
    }
}

#[test]
fn a_run_is_replayable_only_if_it_saw_nothing_but_the_tree_and_its_inputs() {
    let runtime = runtime();
    let health = load(&runtime, "provision-health");
    let adapter = load(&runtime, "adapter-tr181");
    let args = vec![("max-age".to_owned(), "300".to_owned())];
    let (result, output) =
        runtime.run_provision(&health, view(), Some(adapter.clone()), PluginLimits::default(), Vec::new(), &args);
    result.unwrap();
    assert!(!output.impure, "health reads the tree through its adapter, nothing else");

    // The clock, read by the provision itself.
    let (result, output) = run(&runtime, &load(&runtime, "hostile"), &[("mode", "stamp")]);
    result.unwrap();
    assert!(output.impure);
    assert!(output.tags_added[0].starts_with("seen-"), "{:?}", output.tags_added);

    // A read the store failed: the run went on without what it wanted to see.
    let broken = Arc::new(DeviceView::lazy(facts(), "broken".into(), vec![], Some(vec![]), Box::new(BrokenStore)));
    let (_, output) = runtime.run_provision(&health, broken, Some(adapter), PluginLimits::default(), Vec::new(), &args);
    assert!(output.impure);
}

#[test]
fn a_view_without_loading_answers_only_from_what_it_holds() {
    let mut tree = ParameterTree::new();
    tree.insert(
        "Device.DeviceInfo.UpTime",
        Node { value: Some("42".into()), value_type: "xsd:unsignedInt".into(), writable: false, updated_ms: 1 },
    );
    let view = DeviceView::lazy(facts(), "lazy".into(), vec![], None, Box::new(SlowStore(tree)));
    let uptime = |tree: &ParameterTree| tree.get("Device.DeviceInfo.UpTime").and_then(|n| n.value.clone());
    assert!(view.without_loading(|| view.read("Device.DeviceInfo.", uptime)).is_none(), "nothing loaded yet");
    assert_eq!(view.without_loading(|| view.tags()), None, "the tags are not loaded either");
    assert_eq!(view.tree_loads(), 0);

    assert_eq!(view.read("Device.DeviceInfo.", uptime).unwrap().as_deref(), Some("42"), "loads again after");
    let pattern = roost_params::pattern::Pattern::parse("Device.DeviceInfo.UpTime").unwrap();
    let held = view.without_loading(|| view.read_pattern(&pattern, uptime).unwrap());
    assert_eq!(held.flatten().as_deref(), Some("42"), "covered by the loaded prefix");
}

/// A component as built against roost:plugin 0.1.0, kept in `tests/data/plugins/` (its README
/// says from what).
fn component_of_0_1_0(crate_name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/data/plugins/roost-plugin@0.1.0")
        .join(format!("{}.wasm", crate_name.replace('-', "_")));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A TR-181 device with an LTE modem: the health figures, and RSSI and a vendor SINR.
fn cellular_view() -> Arc<DeviceView> {
    let mut tree = ParameterTree::new();
    let leaf = |value: &str, value_type: &str| Node {
        value: Some(value.into()),
        value_type: value_type.into(),
        writable: false,
        updated_ms: 1,
    };
    tree.insert("Device.DeviceInfo.UpTime", leaf("4242", "xsd:unsignedInt"));
    tree.insert("Device.Cellular.Interface.1.", Node { updated_ms: 1, ..Node::default() });
    tree.insert("Device.Cellular.Interface.1.RSRP", leaf("-97", "xsd:int"));
    tree.insert("Device.Cellular.Interface.1.RSSI", leaf("-71", "xsd:int"));
    tree.insert("Device.Cellular.Interface.1.X_ACME_SINR", leaf("13", "xsd:int"));
    Arc::new(DeviceView::new(facts(), "00AABB-Lab-LTE01".into(), vec!["2 PERIODIC".into()], vec![], tree))
}

#[test]
fn provisions_and_adapters_of_either_api_version_work_together() {
    use roost::health::Metric;
    // Four components instantiated under the default budget: not beside the hogs.
    let _turn = CPU_MEASURED.lock().unwrap_or_else(|p| p.into_inner());
    let runtime = runtime();
    let validate = |bytes: Vec<u8>| runtime.validate(&bytes).unwrap();
    let provisions = [
        ("0.1.0", validate(component_of_0_1_0("provision-health"))),
        ("0.1.1", validate(component("provision-health"))),
    ];
    let adapters =
        [("0.1.0", validate(component_of_0_1_0("adapter-tr181"))), ("0.1.1", validate(component("adapter-tr181")))];
    for (version, validated) in provisions.iter().chain(&adapters) {
        assert_eq!(validated.loaded.api_version(), *version);
    }
    assert_eq!(provisions[0].1.world, World::Provision);
    assert_eq!(adapters[0].1.world, World::Adapter);
    // Only an adapter built with `radio` has it.
    assert!(!adapters[0].1.loaded.has_radio() && adapters[1].1.loaded.has_radio());

    for (provision_version, provision) in &provisions {
        for (adapter_version, adapter) in &adapters {
            let pair = format!("provision {provision_version}, adapter {adapter_version}");
            let (result, output) = runtime.run_provision(
                &provision.loaded,
                cellular_view(),
                Some(adapter.loaded.clone()),
                PluginLimits::default(),
                Vec::new(),
                &[],
            );
            result.unwrap_or_else(|fault| panic!("{pair}: {fault}"));
            assert!(output.adapter_faults.is_empty(), "{pair}: {:?}", output.adapter_faults);
            let figures = output.health.unwrap_or_else(|| panic!("{pair}: no health figures"));
            let figure = |metric: Metric| figures.0.iter().find(|(m, _)| *m == metric).map(|(_, v)| *v);
            // `health` is the same in both versions.
            assert_eq!(figure(Metric::UptimeSeconds), Some(4242.0), "{pair}");
            assert_eq!(figure(Metric::CellularRsrpDbm), Some(-97.0), "{pair}");
            // `radio` needs a provision that asks and an adapter that answers.
            let both_new = *provision_version == "0.1.1" && *adapter_version == "0.1.1";
            let radio = (figure(Metric::CellularRssiDbm), figure(Metric::CellularSinrDb));
            assert_eq!(radio, if both_new { (Some(-71.0), Some(13.0)) } else { (None, None) }, "{pair}");
            let refreshes_rssi =
                output.declarations.iter().any(|d| d.pattern.to_string() == "Device.Cellular.Interface.1.RSSI");
            assert_eq!(refreshes_rssi, both_new, "{pair}: {:?}", output.declarations);
        }
    }
}

#[test]
fn a_provision_asking_an_adapter_without_radio_gets_unsupported() {
    let runtime = runtime();
    // The hostile provision's `radio` mode returns what `radio::cellular` answered, as its error.
    let hostile = load(&runtime, "hostile");
    let old_adapter = runtime.validate(&component_of_0_1_0("adapter-tr181")).unwrap().loaded;
    let args = vec![("mode".to_owned(), "radio".to_owned())];
    let (result, _) =
        runtime.run_provision(&hostile, cellular_view(), Some(old_adapter), PluginLimits::default(), Vec::new(), &args);
    let fault = result.unwrap_err();
    let PluginFault::Returned { kind, message } = &fault else { panic!("{fault:?}") };
    assert_eq!(kind, "unsupported");
    assert!(message.contains("built against roost:plugin@0.1.0, without `radio`"), "{message}");
    // No adapter at all: the same kind.
    let (result, _) =
        runtime.run_provision(&hostile, cellular_view(), None, PluginLimits::default(), Vec::new(), &args);
    assert!(matches!(result.unwrap_err(), PluginFault::Returned { kind, .. } if kind == "unsupported"));
}

#[test]
fn plugins_of_the_first_api_version_are_held_to_the_same_limits() {
    // Floods of host calls and memory growth: CPU-heavy, so not beside a test that measures.
    let _turn = CPU_MEASURED.lock().unwrap_or_else(|p| p.into_inner());
    let runtime = runtime();
    let hostile = runtime.validate(&component_of_0_1_0("hostile")).unwrap();
    assert_eq!(hostile.loaded.api_version(), "0.1.0");
    let generous = PluginLimits { cpu_time_ms: 2000, ..PluginLimits::default() };
    for (mode, code) in [("declarations", "plugin.limit"), ("huge-value", "plugin.limit"), ("memory", "plugin.memory")]
    {
        let args = vec![("mode".to_owned(), mode.to_owned())];
        let (result, _) = runtime.run_provision(&hostile.loaded, view(), None, generous, Vec::new(), &args);
        assert_eq!(result.expect_err(mode).code().to_string(), code, "{mode}");
    }
    let (result, output) = run(&runtime, &hostile.loaded, &[("mode", "huge-log"), ("bytes", "2000000")]);
    result.unwrap();
    assert_eq!(output.logs_dropped, 1);
}

#[test]
fn a_component_of_an_api_version_the_host_does_not_run_is_refused() {
    // The 0.1.0 adapter with its interface names rewritten to a version of another track (same
    // length, so the component stays well-formed): what a plugin built for a future Roost is.
    let mut bytes = component_of_0_1_0("adapter-tr181");
    let (from, to) = (b"roost:plugin/types@0.1.0", b"roost:plugin/types@0.2.0");
    let mut replaced = 0;
    let mut i = 0;
    while i + from.len() <= bytes.len() {
        if &bytes[i..i + from.len()] == from {
            bytes[i..i + from.len()].copy_from_slice(to);
            replaced += 1;
        }
        i += 1;
    }
    assert!(replaced > 0, "the fixture names roost:plugin/types@0.1.0");
    let refused = runtime().validate(&bytes).unwrap_err();
    let InvalidPlugin::WrongInterface(message) = &refused else { panic!("{refused:?}") };
    assert!(message.contains("`roost:plugin/types@0.2.0`"), "{message}");
    assert!(refused.to_string().contains("roost:plugin@0.1.0–0.1.1"), "{refused}");
}
