//! `roost-bench plugins`: what the plugin runtime costs, measured in-process on the shipped
//! components: compiling each one (once per process), instantiating from the warm pool, and
//! whole provision runs — a run, its adapter calls and the plan of its declarations — against
//! the stored tree of a real device. Prints percentiles per measurement.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use roost::plugins::bindings::types::DeviceFacts;
use roost::plugins::{DeviceView, Loaded, PluginLimits, PluginRuntime, PluginSettings};
use roost::provisioning::plan::{Clock, NoSecrets, plan};
use roost_plugin_sdk::testing::TestDevice;

struct Stats(Vec<Duration>);

impl Stats {
    fn line(mut self, label: &str) -> String {
        self.0.sort();
        let at = |q: f64| self.0[((self.0.len() as f64 - 1.0) * q).round() as usize];
        let mean = self.0.iter().sum::<Duration>() / self.0.len() as u32;
        let us = |d: Duration| d.as_secs_f64() * 1e6;
        format!(
            "{label:<44} n={:<6} p50={:>8.1} µs  p99={:>8.1} µs  mean={:>8.1} µs  max={:>8.1} µs",
            self.0.len(),
            us(at(0.5)),
            us(at(0.99)),
            us(mean),
            us(*self.0.last().unwrap_or(&Duration::ZERO))
        )
    }
}

fn measure(runs: usize, mut f: impl FnMut()) -> Stats {
    for _ in 0..runs / 10 {
        f();
    }
    Stats(
        (0..runs)
            .map(|_| {
                let start = Instant::now();
                f();
                start.elapsed()
            })
            .collect(),
    )
}

pub fn run(dist: &Path, export: &Path, runs: usize) -> Result<()> {
    let runtime = Arc::new(PluginRuntime::new(PluginSettings::default())?);
    let mut loaded = std::collections::HashMap::new();
    println!("compile (once per process and component, cached by hash afterwards):");
    for name in ["health", "bootstrap", "huawei", "tr098"] {
        let path = roost::plugins::install::shipped_component(dist, name)
            .with_context(|| format!("no {name}@<version>.wasm in {}: run scripts/build-plugins.sh", dist.display()))?;
        let bytes =
            std::fs::read(&path).with_context(|| format!("{}: run scripts/build-plugins.sh", path.display()))?;
        let start = Instant::now();
        let validated = runtime.validate(&bytes).map_err(|e| anyhow::anyhow!("{name}: {e}"))?;
        println!("  {name:<10} {:>7} bytes  {:>6.1} ms", bytes.len(), start.elapsed().as_secs_f64() * 1e3);
        loaded.insert(name, validated.loaded);
    }
    let get = |name: &str| -> Arc<Loaded> { loaded[name].clone() };

    let csv = std::fs::read_to_string(export).with_context(|| format!("reading {}", export.display()))?;
    let device = TestDevice::from_genieacs_csv(&csv).map_err(anyhow::Error::msg)?;
    let f = &device.facts;
    let facts = DeviceFacts {
        manufacturer: f.manufacturer.clone(),
        oui: f.oui.clone(),
        product_class: f.product_class.clone(),
        serial_number: f.serial_number.clone(),
        model_name: f.model_name.clone(),
        software_version: f.software_version.clone(),
        hardware_version: f.hardware_version.clone(),
        root: f.root.clone(),
    };
    // A periodic session a minute after the health figures were last read.
    let read_at = device.tree.iter().map(|(_, n)| n.updated_ms).max().unwrap_or(0);
    let now = read_at + 60_000;
    let view = Arc::new(
        DeviceView::new(facts, "bench".into(), vec!["2 PERIODIC".into()], Vec::new(), device.tree.clone())
            .with_clock(now, 7),
    );
    let limits = PluginLimits::default();
    let clock = Clock { now_ms: now, session_start_ms: now };
    println!(
        "{} parameters in the tree ({}); {runs} runs each, after {} warm-up runs:",
        device.tree.len(),
        export.display(),
        runs / 10
    );

    let adapter = get("huawei");
    let stats = measure(runs, || {
        runtime.identify(&adapter, view.clone(), limits).ok();
    });
    println!("  {}", stats.line("instantiate adapter + identify"));

    let health = get("health");
    let args = vec![("max-age".to_owned(), "300".to_owned())];
    let mut declared = 0;
    let stats = measure(runs, || {
        let (result, output) =
            runtime.run_provision(&health, view.clone(), Some(adapter.clone()), limits, Vec::new(), &args);
        result.ok();
        declared = output.declarations.len();
    });
    println!("  {}", stats.line("health run (provision + adapter.health)"));
    let stats = measure(runs, || {
        let (_, output) =
            runtime.run_provision(&health, view.clone(), Some(adapter.clone()), limits, Vec::new(), &args);
        let round = view.read_loaded(|tree| plan(tree, &output.declarations, clock, &NoSecrets));
        assert!(round.is_ok_and(|p| p.is_empty()), "figures a minute old: nothing to fetch");
    });
    println!("  {}", stats.line(&format!("health round (run + plan of {declared} declarations)")));

    // The floor: a provision that declares one refresh (the sandbox tests' plugin, `behave`).
    let hostile = dist.join("../target/wasm32-unknown-unknown/release/hostile.wasm");
    if let Ok(bytes) = std::fs::read(&hostile) {
        let minimal = runtime.validate(&bytes).map_err(|e| anyhow::anyhow!("hostile: {e}"))?.loaded;
        let behave = vec![("mode".to_owned(), "behave".to_owned())];
        let stats = measure(runs, || {
            runtime.run_provision(&minimal, view.clone(), None, limits, Vec::new(), &behave).0.ok();
        });
        println!("  {}", stats.line("minimal run (one declaration, no adapter)"));
    }

    let bootstrap = get("bootstrap");
    let stats = measure(runs, || {
        runtime.run_provision(&bootstrap, view.clone(), Some(adapter.clone()), limits, Vec::new(), &[]).0.ok();
    });
    println!("  {}", stats.line("bootstrap run (provision + adapter)"));
    Ok(())
}
