//! The plugin runtime: WebAssembly components (WIT `roost:plugin@0.1.1`, and every earlier
//! version of the 0.1 track) run in wasmtime.
//!
//! One process-wide [`Engine`] with the pooling allocator; each component is compiled once and
//! kept, pre-instantiated against our linker, in a cache keyed by its SHA-256; every call gets a
//! fresh `Store` with the caller's [`PluginLimits`]: a budget of CPU time with a wall-clock
//! backstop (`budget`; a 1 ms ticker thread advances the epoch at which the budget is checked), a
//! memory and table limiter, and caps on what the plugin may hand the host.
//! A trap, an overrun or a limit breach comes back as a [`PluginFault`] for the caller to record
//! against the device; it never unwinds into the host.
//!
//! Components may import nothing but our WIT: the linker has no WASI, so a component importing
//! anything else fails validation at upload ("matching implementation was not found").
//!
//! One host serves the whole 0.1 track. The bindings are generated from the newest version, and
//! wasmtime matches names semver-wise in both directions: a 0.1.0 component's `device@0.1.0`
//! import finds the host's `device@0.1.1`, and the host's lookup of `intents@0.1.1` finds a 0.1.0
//! adapter's `intents@0.1.0` export. That holds because a patch version only adds interfaces
//! (types.wit says so); an adapter without the 0.1.1 `radio` export is still an adapter, and its
//! device's provisions get `unsupported` from `radio`.
//!
//! Compiled code stays in memory only. Caching it on disk would need `deserialize`, which trusts
//! its input (`unsafe`), and this crate forbids `unsafe`; compiling a shipped adapter takes
//! 70–180 ms once per process.

pub mod authoring;
mod budget;
mod host_api;
pub mod install;
pub mod limits;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::fault_code::FaultCode;

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};
use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store, Trap, UpdateDeadline};

pub use bindings::intent_types::HealthReport;
pub use bindings::radio_types::CellularReport;
pub use host_api::{Declared, DeviceView, RunOutput, TreeLoader, ViewSnapshot};
pub use limits::PluginLimits;

/// The WIT package version this host implements: the newest of its track.
pub const API_VERSION: &str = "0.1.1";

/// The oldest version of the track the host still runs: what a component that names no version
/// (it imports and exports no interface of ours) was built against, as far as anyone can tell.
pub const OLDEST_API_VERSION: &str = "0.1.0";

/// Code generated from `plugin-sdk/wit`. The adapter worlds reuse the provision world's
/// interfaces, so one set of host implementations serves all three.
pub mod bindings {
    pub mod provision {
        wasmtime::component::bindgen!({
            world: "provision",
            path: "../plugin-sdk/wit/roost-plugin@0.1.1",
        });
    }
    /// Every adapter: `identify` and `intents`.
    pub mod adapter {
        wasmtime::component::bindgen!({
            world: "adapter",
            path: "../plugin-sdk/wit/roost-plugin@0.1.1",
            with: {
                "roost:plugin/types": super::provision::roost::plugin::types,
                "roost:plugin/intent-types": super::provision::roost::plugin::intent_types,
                "roost:plugin/device": super::provision::roost::plugin::device,
                "roost:plugin/declare": super::provision::roost::plugin::declare,
                "roost:plugin/log": super::provision::roost::plugin::log,
            },
        });
    }
    /// An adapter that also exports `radio` (0.1.1): looked for in each adapter, optional.
    pub mod radio_adapter {
        wasmtime::component::bindgen!({
            world: "radio-adapter",
            path: "../plugin-sdk/wit/roost-plugin@0.1.1",
            with: {
                "roost:plugin/types": super::provision::roost::plugin::types,
                "roost:plugin/intent-types": super::provision::roost::plugin::intent_types,
                "roost:plugin/radio-types": super::provision::roost::plugin::radio_types,
                "roost:plugin/device": super::provision::roost::plugin::device,
                "roost:plugin/declare": super::provision::roost::plugin::declare,
                "roost:plugin/log": super::provision::roost::plugin::log,
            },
        });
    }
    pub use provision::roost::plugin::{intent_types, radio_types, types};
}

use bindings::adapter::{Adapter, AdapterPre, Identification};
use bindings::provision::{Provision, ProvisionPre};
use bindings::radio_adapter::{RadioAdapter, RadioAdapterPre};
use bindings::types::{DeviceFacts, ErrorKind};

/// Which world a component implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum World {
    Provision,
    Adapter,
}

impl World {
    pub fn as_str(self) -> &'static str {
        match self {
            World::Provision => "provision",
            World::Adapter => "adapter",
        }
    }

    pub fn parse(s: &str) -> Option<World> {
        match s {
            "provision" => Some(World::Provision),
            "adapter" => Some(World::Adapter),
            _ => None,
        }
    }

    /// The world's name with its article, for messages: "a provision", "an adapter".
    pub fn with_article(self) -> &'static str {
        match self {
            World::Provision => "a provision",
            World::Adapter => "an adapter",
        }
    }

    /// The function a component of this world exports, by which its intent is known.
    fn entry_point(self) -> &'static str {
        match self {
            World::Provision => "run",
            World::Adapter => "identify",
        }
    }

    /// The interfaces of `roost:plugin` this world lets a component import, as the WIT the host
    /// was built with declares them (`import NAME;` in the world), and the interfaces of types
    /// alone that those use.
    pub fn offered_imports(self) -> Vec<&'static str> {
        let header = format!("world {} {{", self.as_str());
        let body = WORLDS_WIT.split_once(header.as_str()).map_or("", |(_, rest)| rest);
        let body = body.split_once("\n}").map_or(body, |(body, _)| body);
        body.lines()
            .filter_map(|line| line.trim().strip_prefix("import ")?.strip_suffix(';'))
            .chain(TYPE_INTERFACES)
            .collect()
    }
}

/// The WIT worlds the host implements.
const WORLDS_WIT: &str = include_str!("../../plugin-sdk/wit/roost-plugin@0.1.1/worlds.wit");

/// Interfaces that hold only types: a component imports those its functions' types come from.
const TYPE_INTERFACES: [&str; 3] = ["types", "intent-types", "radio-types"];

/// A version of our package, `major.minor.patch`.
fn api_version(text: &str) -> Option<(u64, u64, u64)> {
    let mut parts = text.split('.').map(|part| part.parse::<u64>().ok());
    let version = (parts.next()??, parts.next()??, parts.next()??);
    parts.next().is_none().then_some(version)
}

/// Whether the host runs components built against `version`: those of its own track (same major
/// and, below 1.0, same minor) no newer than [`API_VERSION`].
fn runs_api_version(version: &str) -> bool {
    let (Some(theirs), Some(ours)) = (api_version(version), api_version(API_VERSION)) else { return false };
    theirs.0 == ours.0 && theirs.1 == ours.1 && theirs.2 <= ours.2
}

/// The short name and version of an interface of our package (`roost:plugin/device@0.1.0` →
/// `device`, `0.1.0`).
fn own_interface(name: &str) -> Option<(&str, &str)> {
    name.strip_prefix("roost:plugin/")?.split_once('@')
}

/// The version of our package a component was built against: the newest its imports and exports
/// name. One that names none (a provision calling nothing of ours) runs on any version of the
/// track: it is recorded as the oldest.
fn component_api_version<'a>(names: impl IntoIterator<Item = &'a str>) -> String {
    names
        .into_iter()
        .filter_map(|name| own_interface(name).map(|(_, version)| version))
        .filter(|version| runs_api_version(version))
        .max_by_key(|version| api_version(version))
        .unwrap_or(OLDEST_API_VERSION)
        .to_owned()
}

/// A compiled, pre-instantiated component.
#[derive(Clone)]
pub struct Loaded {
    kind: LoadedKind,
    api_version: String,
}

#[derive(Clone)]
enum LoadedKind {
    Provision(ProvisionPre<host_api::RunState>),
    Adapter {
        pre: AdapterPre<host_api::RunState>,
        /// The same component seen as a `radio-adapter`, when it exports `radio` (0.1.1 on).
        /// Boxed, so that every cached component does not take the size of the largest kind.
        radio: Option<Box<RadioAdapterPre<host_api::RunState>>>,
    },
}

impl std::fmt::Debug for Loaded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Loaded").field("world", &self.world()).field("api_version", &self.api_version).finish()
    }
}

impl Loaded {
    pub fn world(&self) -> World {
        match self.kind {
            LoadedKind::Provision(_) => World::Provision,
            LoadedKind::Adapter { .. } => World::Adapter,
        }
    }

    /// The version of `roost:plugin` it was built against (see [`component_api_version`]).
    pub fn api_version(&self) -> &str {
        &self.api_version
    }

    /// Whether it is an adapter exporting `radio`.
    pub fn has_radio(&self) -> bool {
        matches!(self.kind, LoadedKind::Adapter { radio: Some(_), .. })
    }
}

/// What validation found out about an uploaded component.
#[derive(Debug, Clone)]
pub struct Validated {
    pub world: World,
    pub hash: String,
    pub loaded: Arc<Loaded>,
}

/// Why a component cannot be used.
#[derive(Debug, Clone, thiserror::Error)]
pub enum InvalidPlugin {
    #[error("not a WebAssembly component: {0}")]
    NotAComponent(String),
    #[error("the component does not fit roost:plugin@{OLDEST_API_VERSION}–{API_VERSION}: {0}")]
    WrongInterface(String),
}

/// Why a plugin call did not return normally. Recorded as a fault of the device and plugin.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PluginFault {
    /// The plugin returned an error.
    #[error("{message}")]
    Returned { kind: String, message: String },
    /// It used its budget of CPU time: its own code ran too long.
    #[error("used its {0} ms of CPU time")]
    CpuTime(u64),
    /// It was still running at the wall-clock backstop, within its CPU budget: a host call it
    /// made did not return in time, or the server was overloaded.
    #[error("was still running after {0} ms (the wall-clock backstop), within its CPU time")]
    Timeout(u64),
    /// It asked for more memory than its limit.
    #[error("{0}")]
    Memory(String),
    /// It trapped (a Rust panic, an out-of-bounds access, a stack overflow, …).
    #[error("trapped: {0}")]
    Trap(String),
    /// It could not be instantiated (the instance pool is exhausted, a limit too low).
    #[error("could not be started: {0}")]
    Instantiate(String),
}

impl PluginFault {
    /// The fault code stored with the device's fault.
    pub fn code(&self) -> FaultCode {
        match self {
            PluginFault::Returned { kind, .. } if kind == "limit" => FaultCode::PluginLimit,
            PluginFault::Returned { .. } => FaultCode::PluginError,
            PluginFault::CpuTime(_) => FaultCode::PluginCpuTime,
            PluginFault::Timeout(_) => FaultCode::PluginTimeout,
            PluginFault::Memory(_) => FaultCode::PluginMemory,
            PluginFault::Trap(_) => FaultCode::PluginTrap,
            PluginFault::Instantiate(_) => FaultCode::PluginInstantiate,
        }
    }

    /// Whether the same call, on the same input under the same limits, would fault again: the
    /// plugin's own doing. A backstop reached while the store was slow, or an instance pool that
    /// was full, say nothing about the plugin.
    pub fn repeats(&self) -> bool {
        match self {
            PluginFault::Returned { .. } | PluginFault::CpuTime(_) | PluginFault::Memory(_) | PluginFault::Trap(_) => {
                true
            }
            PluginFault::Timeout(_) | PluginFault::Instantiate(_) => false,
        }
    }
}

/// Engine-wide settings (`[plugins]` in the configuration file).
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PluginSettings {
    /// Default limits of every call, before per-organization overrides.
    pub limits: PluginLimits,
    /// Plugin calls that may run at once (slots of the pooling allocator).
    pub concurrent_instances: u32,
    /// Compiled components kept in memory.
    pub cached_components: u64,
    /// Components installed as the platform's at start (`<name>@<version>.wasm`): the shipped
    /// plugins. `--plugins-dir`; `None` installs nothing.
    pub install_dir: Option<std::path::PathBuf>,
    /// Memory for what provisions read of each device, kept for its next session
    /// (`provisioning::reads`), in MiB; 0 keeps nothing.
    pub device_reads_mib: u64,
    /// Plugin log lines kept per device (`GET /api/v1/devices/{id}/logs`); older ones are dropped.
    pub device_log_lines: u64,
}

impl Default for PluginSettings {
    fn default() -> Self {
        PluginSettings {
            limits: PluginLimits::default(),
            concurrent_instances: 256,
            cached_components: 512,
            install_dir: None,
            device_reads_mib: 128,
            device_log_lines: 1_000,
        }
    }
}

/// The process-wide runtime.
pub struct PluginRuntime {
    engine: Engine,
    provision_linker: Linker<host_api::RunState>,
    adapter_linker: Linker<host_api::RunState>,
    cache: moka::sync::Cache<String, Arc<Loaded>>,
    settings: PluginSettings,
    ticker_stop: Arc<AtomicBool>,
}

impl std::fmt::Debug for PluginRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginRuntime").field("cached", &self.cache.entry_count()).finish_non_exhaustive()
    }
}

impl Drop for PluginRuntime {
    fn drop(&mut self) {
        self.ticker_stop.store(true, Ordering::Relaxed);
    }
}

/// Bytes of a pooled linear memory kept mapped between calls (see `PluginRuntime::new`).
const KEEP_RESIDENT: usize = 1024 * 1024;

/// How often the epoch advances: how often a running plugin's budget can be checked.
const EPOCH_TICK: Duration = Duration::from_millis(1);

/// Epoch ticks covering `time`, at least one.
fn ticks(time: Duration) -> u64 {
    u64::try_from(time.as_millis().div_ceil(EPOCH_TICK.as_millis())).unwrap_or(u64::MAX).max(1)
}

impl PluginRuntime {
    pub fn new(settings: PluginSettings) -> Result<Self> {
        settings.limits.validate().map_err(anyhow::Error::msg).context("[plugins] limits")?;
        let mut pool = PoolingAllocationConfig::default();
        pool.total_component_instances(settings.concurrent_instances)
            .total_core_instances(settings.concurrent_instances * 4)
            .total_memories(settings.concurrent_instances * 2)
            .total_tables(settings.concurrent_instances * 2)
            .max_memories_per_component(4)
            .max_tables_per_component(4)
            .max_memory_size(limits::MEMORY_CEILING)
            .table_elements(settings.limits.max_table_elements.max(10_000))
            // A reused slot's memory is reset with memset (only its touched pages, where the
            // kernel can list them) instead of madvise: a provision run touches a few hundred
            // KiB, and page faults on fresh pages were most of its instantiation cost.
            .linear_memory_keep_resident(KEEP_RESIDENT)
            .table_keep_resident(64 * 1024)
            .pagemap_scan(wasmtime::Enabled::Auto);
        let mut config = Config::new();
        config
            .wasm_component_model(true)
            .epoch_interruption(true)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool))
            // Reserve exactly the ceiling, with a guard region: address space is plentiful on
            // 64-bit hosts, and bounds checks stay elided.
            .memory_reservation(limits::MEMORY_CEILING as u64)
            .memory_guard_size(64 * 1024 * 1024)
            .max_wasm_stack(512 * 1024)
            // Enough frames to tell a recursion that ran out of stack (`is_deep_recursion`).
            .wasm_backtrace_max_frames(Some(BACKTRACE_FRAMES));
        let engine = Engine::new(&config).map_err(|e| anyhow::anyhow!("{e:#}")).context("starting wasmtime")?;

        let mut provision_linker = Linker::new(&engine);
        Provision::add_to_linker::<_, HasSelf<_>>(&mut provision_linker, |state| state)
            .map_err(|e| anyhow::anyhow!("{e:#}"))?;
        // The `radio-adapter` world's imports are the `adapter` world's and the types of `radio`:
        // one linker serves adapters with and without it.
        let mut adapter_linker = Linker::new(&engine);
        RadioAdapter::add_to_linker::<_, HasSelf<_>>(&mut adapter_linker, |state| state)
            .map_err(|e| anyhow::anyhow!("{e:#}"))?;
        // `declare` and `log` measure a plugin's text before copying it (host_api/unlifted.rs).
        for linker in [&mut provision_linker, &mut adapter_linker] {
            host_api::shadow_generated(linker).map_err(|e| anyhow::anyhow!("{e:#}"))?;
        }

        let ticker_stop = Arc::new(AtomicBool::new(false));
        {
            let engine = engine.clone();
            let stop = ticker_stop.clone();
            std::thread::Builder::new()
                .name("roost-plugin-epoch".into())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(EPOCH_TICK);
                        engine.increment_epoch();
                    }
                })
                .context("starting the plugin epoch ticker")?;
        }
        Ok(PluginRuntime {
            engine,
            provision_linker,
            adapter_linker,
            cache: moka::sync::Cache::builder().max_capacity(settings.cached_components).build(),
            settings,
            ticker_stop,
        })
    }

    pub fn default_limits(&self) -> PluginLimits {
        self.settings.limits
    }

    /// SHA-256 of a component, hex: its identity in the cache and the database.
    pub fn hash(bytes: &[u8]) -> String {
        hex::encode(Sha256::digest(bytes))
    }

    /// Compiles and checks a component: it must be a component and implement one of our worlds
    /// with nothing else imported. Blocking (compilation takes up to a few hundred ms): call it
    /// off the async workers.
    pub fn validate(&self, bytes: &[u8]) -> Result<Validated, InvalidPlugin> {
        let hash = Self::hash(bytes);
        if let Some(loaded) = self.cache.get(&hash) {
            // The same bytes validated before: compiling them again would give the same answer.
            return Ok(Validated { world: loaded.world(), hash, loaded });
        }
        let loaded = Arc::new(self.compile(bytes)?);
        self.cache.insert(hash.clone(), loaded.clone());
        Ok(Validated { world: loaded.world(), hash, loaded })
    }

    /// The pre-instantiated component with this hash, compiling `bytes` on a miss. Blocking.
    pub fn load(&self, hash: &str, bytes: impl FnOnce() -> Result<Vec<u8>>) -> Result<Arc<Loaded>> {
        if let Some(loaded) = self.cache.get(hash) {
            return Ok(loaded);
        }
        let bytes = bytes()?;
        let actual = Self::hash(&bytes);
        anyhow::ensure!(actual == hash, "stored component hash {actual} differs from the recorded {hash}");
        let loaded = Arc::new(self.compile(&bytes)?);
        self.cache.insert(hash.to_owned(), loaded.clone());
        Ok(loaded)
    }

    /// The cached component with this hash, if compiled already.
    pub fn cached(&self, hash: &str) -> Option<Arc<Loaded>> {
        self.cache.get(hash)
    }

    fn compile(&self, bytes: &[u8]) -> Result<Loaded, InvalidPlugin> {
        if is_core_module(bytes) {
            return Err(InvalidPlugin::NotAComponent(
                "this is a core WebAssembly module; link it as a component (see docs/PLUGINS.md)".into(),
            ));
        }
        let component =
            Component::new(&self.engine, bytes).map_err(|e| InvalidPlugin::NotAComponent(format!("{e:#}")))?;
        let component_type = component.component_type();
        let exports: Vec<String> = component_type.exports(&self.engine).map(|(name, _)| name.to_owned()).collect();
        let imports: Vec<String> = component_type.imports(&self.engine).map(|(name, _)| name.to_owned()).collect();
        let intended = intended_world(&exports);
        if let Some(world) = intended {
            let offered = world.offered_imports();
            let refused = refused_imports(&imports, &offered);
            if !refused.is_empty() {
                return Err(InvalidPlugin::WrongInterface(format!(
                    "it exports `{}`, so it is {}, but it imports {}, which the `{}` world does not offer; \
                     {} may import roost:plugin/{{{}}}@{API_VERSION} (or an earlier 0.1 version) and nothing \
                     else (no WASI: build with the SDK, without std's file or network use)",
                    world.entry_point(),
                    world.with_article(),
                    refused.iter().map(|name| format!("`{name}`")).collect::<Vec<_>>().join(", "),
                    world.as_str(),
                    world.with_article(),
                    offered.join(", "),
                )));
            }
        }
        let api_version = component_api_version(imports.iter().chain(&exports).map(String::as_str));
        let as_provision = self
            .provision_linker
            .instantiate_pre(&component)
            .map_err(|e| format!("{e:#}"))
            .and_then(|pre| ProvisionPre::new(pre).map_err(|e| format!("{e:#}")));
        let provision_error = match as_provision.map(LoadedKind::Provision) {
            Ok(kind) => {
                self.check_export_types(&kind)
                    .map_err(|e| InvalidPlugin::WrongInterface(format!("as a provision: {e}")))?;
                return Ok(Loaded { kind, api_version });
            }
            Err(e) => e,
        };
        let exports_radio = exports.iter().any(|name| own_interface(name).is_some_and(|(name, _)| name == "radio"));
        let as_adapter =
            self.adapter_linker.instantiate_pre(&component).map_err(|e| format!("{e:#}")).and_then(|pre| {
                let adapter = AdapterPre::new(pre.clone()).map_err(|e| format!("{e:#}"))?;
                // An adapter need not export `radio`; one that does must export it as the WIT says.
                let radio = exports_radio
                    .then(|| RadioAdapterPre::new(pre).map(Box::new).map_err(|e| format!("its `radio` export: {e:#}")))
                    .transpose()?;
                Ok(LoadedKind::Adapter { pre: adapter, radio })
            });
        match as_adapter {
            Ok(kind) => {
                self.check_export_types(&kind)
                    .map_err(|e| InvalidPlugin::WrongInterface(format!("as an adapter: {e}")))?;
                Ok(Loaded { kind, api_version })
            }
            Err(adapter_error) => Err(InvalidPlugin::WrongInterface(match intended {
                Some(World::Provision) => format!("as a provision: {provision_error}"),
                Some(World::Adapter) => format!("as an adapter: {adapter_error}"),
                None => format!(
                    "it exports neither `run` (a provision) nor `identify` (an adapter); \
                     as a provision: {provision_error}; as an adapter: {adapter_error}"
                ),
            })),
        }
    }

    /// Instantiates the component once, under the default limits, and drops the instance. The
    /// generated `*Pre::new` finds the exports by name; only instantiation checks their types (a
    /// `run` whose error is a string, a `cellular` taking a `u32`). Such a component is refused
    /// here, at upload, rather than failing every later call.
    fn check_export_types(&self, kind: &LoadedKind) -> Result<(), String> {
        let facts = DeviceFacts {
            manufacturer: String::new(),
            oui: String::new(),
            product_class: String::new(),
            serial_number: String::new(),
            model_name: None,
            software_version: None,
            hardware_version: None,
            root: String::new(),
        };
        let view = Arc::new(DeviceView::new(facts, String::new(), Vec::new(), Vec::new(), Default::default()));
        let store =
            || self.store(host_api::RunState::new(view.clone(), self.settings.limits, None, budget::Started::now()));
        let instantiated = match kind {
            LoadedKind::Provision(pre) => pre.instantiate(&mut store()).map(drop),
            LoadedKind::Adapter { pre, radio } => pre.instantiate(&mut store()).map(drop).and_then(|()| match radio {
                Some(radio) => radio.instantiate(&mut store()).map(drop),
                None => Ok(()),
            }),
        };
        instantiated.map_err(|e| format!("{e:#}"))
    }

    fn store(&self, state: host_api::RunState) -> Store<host_api::RunState> {
        // An exhausted budget (an adapter called when its provision had nothing left) is found
        // at the first check, one tick in.
        let first_check = state.first_check();
        let mut store = Store::new(&self.engine, state);
        store.limiter(|state| &mut state.limiter);
        store.set_epoch_deadline(ticks(first_check));
        store.epoch_deadline_callback(|mut context| {
            let state = context.data_mut();
            Ok(match state.check_budget() {
                budget::Verdict::Continue(next) => UpdateDeadline::Continue(ticks(next)),
                budget::Verdict::Stop(overrun) => {
                    state.overrun = Some(overrun);
                    UpdateDeadline::Interrupt
                }
            })
        });
        store
    }

    /// Runs a provision once. Blocking (up to the wall-clock backstop): call it off the async
    /// workers.
    pub fn run_provision(
        self: &Arc<Self>,
        loaded: &Loaded,
        view: Arc<DeviceView>,
        adapter: Option<Arc<Loaded>>,
        limits: PluginLimits,
        config: Vec<(String, String)>,
        args: &[(String, String)],
    ) -> (Result<(), PluginFault>, RunOutput) {
        let LoadedKind::Provision(pre) = &loaded.kind else {
            return (Err(PluginFault::Instantiate("not a provision".into())), RunOutput::default());
        };
        let mut state =
            host_api::RunState::new(view, limits, adapter.map(|a| (self.clone(), a)), budget::Started::now());
        state.config = config;
        let mut store = self.store(state);
        let result = match pre.instantiate(&mut store) {
            Ok(instance) => match instance.call_run(&mut store, args) {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(returned(e)),
                Err(e) => Err(classify(e, store.data())),
            },
            Err(e) => Err(classify_instantiate(e, store.data())),
        };
        let output = std::mem::take(&mut store.data_mut().output);
        (result, output)
    }

    /// Asks an adapter whether it handles a device. Blocking.
    pub fn identify(
        &self,
        loaded: &Loaded,
        view: Arc<DeviceView>,
        limits: PluginLimits,
    ) -> Result<Option<Identification>, PluginFault> {
        let LoadedKind::Adapter { pre, .. } = &loaded.kind else {
            return Err(PluginFault::Instantiate("not an adapter".into()));
        };
        let facts: DeviceFacts = view.facts.clone();
        let state = host_api::RunState::new(view, limits, None, budget::Started::now());
        let mut store = self.store(state);
        let instance = pre.instantiate(&mut store).map_err(|e| classify_instantiate(e, store.data()))?;
        instance.call_identify(&mut store, &facts).map_err(|e| classify(e, store.data()))
    }

    /// Calls one canonical operation of an adapter on the host's behalf (a device action),
    /// with a budget of its own. Blocking. Its declarations and logs are in the output.
    pub fn run_intent<R>(
        &self,
        loaded: &Loaded,
        view: Arc<DeviceView>,
        limits: PluginLimits,
        call: impl FnOnce(&Adapter, &mut Store<host_api::RunState>) -> wasmtime::Result<Result<R, bindings::types::Error>>,
    ) -> (Result<R, PluginFault>, RunOutput) {
        let mut output = RunOutput::default();
        let baseline = view.load_cpu_time();
        let result = self
            .call_adapter(loaded, view, limits, (budget::Started::now(), baseline), &mut output, call)
            .and_then(|returned| returned.map_err(self::returned));
        (result, output)
    }

    /// Calls one canonical operation of an adapter, within what is left of the calling
    /// provision's budget (its start and load baseline), with the caller's limits. Its
    /// declarations go to `output`.
    pub(crate) fn call_adapter<R>(
        &self,
        loaded: &Loaded,
        view: Arc<DeviceView>,
        limits: PluginLimits,
        (started, load_baseline): (budget::Started, Duration),
        output: &mut RunOutput,
        call: impl FnOnce(&Adapter, &mut Store<host_api::RunState>) -> wasmtime::Result<R>,
    ) -> Result<R, PluginFault> {
        let LoadedKind::Adapter { pre, .. } = &loaded.kind else {
            return Err(PluginFault::Instantiate("not an adapter".into()));
        };
        self.in_adapter(view, limits, (started, load_baseline), output, |store| pre.instantiate(store), call)
    }

    /// Calls the `radio` export of an adapter as [`Self::call_adapter`] calls its intents;
    /// `None` when the adapter does not export `radio`.
    pub(crate) fn call_radio<R>(
        &self,
        loaded: &Loaded,
        view: Arc<DeviceView>,
        limits: PluginLimits,
        clocks: (budget::Started, Duration),
        output: &mut RunOutput,
        call: impl FnOnce(&RadioAdapter, &mut Store<host_api::RunState>) -> wasmtime::Result<R>,
    ) -> Option<Result<R, PluginFault>> {
        let LoadedKind::Adapter { radio: Some(pre), .. } = &loaded.kind else { return None };
        Some(self.in_adapter(view, limits, clocks, output, |store| pre.instantiate(store), call))
    }

    /// Instantiates an adapter in a store of its own, within its caller's clocks, and calls it;
    /// what it declares and logs goes to `output`.
    fn in_adapter<I, R>(
        &self,
        view: Arc<DeviceView>,
        limits: PluginLimits,
        (started, load_baseline): (budget::Started, Duration),
        output: &mut RunOutput,
        instantiate: impl FnOnce(&mut Store<host_api::RunState>) -> wasmtime::Result<I>,
        call: impl FnOnce(&I, &mut Store<host_api::RunState>) -> wasmtime::Result<R>,
    ) -> Result<R, PluginFault> {
        let mut state = host_api::RunState::new(view, limits, None, started);
        state.output = std::mem::take(output);
        // The provision's clocks: an adapter runs within what is left of its caller's budget.
        state.load_baseline = load_baseline;
        let mut store = self.store(state);
        let result = match instantiate(&mut store) {
            Ok(instance) => call(&instance, &mut store).map_err(|e| classify(e, store.data())),
            Err(e) => Err(classify_instantiate(e, store.data())),
        };
        *output = std::mem::take(&mut store.data_mut().output);
        result
    }
}

fn returned(e: bindings::types::Error) -> PluginFault {
    let kind = match e.kind {
        ErrorKind::InvalidPath => "invalid-path",
        ErrorKind::InvalidArgument => "invalid-argument",
        ErrorKind::Unsupported => "unsupported",
        ErrorKind::Limit => "limit",
        ErrorKind::Other => "other",
    };
    PluginFault::Returned { kind: kind.into(), message: e.message }
}

fn classify(e: wasmtime::Error, state: &host_api::RunState) -> PluginFault {
    if let Some(message) = &state.limiter.breached {
        return PluginFault::Memory(message.clone());
    }
    match e.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => match state.overrun {
            Some(budget::Overrun::WallClock) => PluginFault::Timeout(state.limits.wall_clock_ms),
            Some(budget::Overrun::CpuTime) | None => PluginFault::CpuTime(state.limits.cpu_time_ms),
        },
        Some(Trap::StackOverflow) => PluginFault::Trap("stack overflow (recursion too deep)".into()),
        // Rust keeps its stack frames' locals on a stack in linear memory below the data; a
        // recursion that runs it out moves the stack pointer below zero, and the next store is
        // out of bounds. The backtrace tells it from any other stray access.
        Some(Trap::MemoryOutOfBounds)
            if e.downcast_ref::<wasmtime::WasmBacktrace>()
                .is_some_and(|trace| is_deep_recursion(trace.frames().iter().map(|frame| frame.func_index()))) =>
        {
            PluginFault::Trap(
                "stack overflow (recursion too deep: the stack in linear memory ran out, \
                 reported by WebAssembly as an out-of-bounds memory access)"
                    .into(),
            )
        }
        Some(Trap::UnreachableCodeReached) => {
            PluginFault::Trap("unreachable code reached (a panic in the plugin?)".into())
        }
        Some(trap) => PluginFault::Trap(trap.to_string()),
        None => PluginFault::Trap(format!("{e:#}")),
    }
}

fn classify_instantiate(e: wasmtime::Error, state: &host_api::RunState) -> PluginFault {
    if state.limiter.breached.is_some() || e.downcast_ref::<Trap>().is_some() {
        return classify(e, state);
    }
    PluginFault::Instantiate(format!("{e:#}"))
}

/// Frames captured in a trap's backtrace (wasmtime's default is 20).
const BACKTRACE_FRAMES: std::num::NonZeroUsize = std::num::NonZeroUsize::new(64).unwrap();

/// Whether a trap's backtrace (innermost frame first, at most [`BACKTRACE_FRAMES`]) is a
/// recursion that ran out of stack: the capture is full, and the innermost function calls itself
/// over and over in it.
fn is_deep_recursion(functions: impl Iterator<Item = u32>) -> bool {
    let mut functions = functions.take(BACKTRACE_FRAMES.get()).peekable();
    let Some(&innermost) = functions.peek() else { return false };
    let (depth, repeats) =
        functions.fold((0usize, 0usize), |(depth, repeats), f| (depth + 1, repeats + usize::from(f == innermost)));
    depth == BACKTRACE_FRAMES.get() && repeats * 4 >= depth
}

/// The world a component means to implement, by the function it exports; `None` if it exports
/// neither entry point (or, oddly, both).
fn intended_world(exports: &[String]) -> Option<World> {
    let exports_fn = |world: World| exports.iter().any(|name| name == world.entry_point());
    match (exports_fn(World::Provision), exports_fn(World::Adapter)) {
        (true, false) => Some(World::Provision),
        (false, true) => Some(World::Adapter),
        _ => None,
    }
}

/// The imports a world does not offer: anything outside our package and the versions the host
/// runs, or an interface of it the world leaves out.
fn refused_imports<'a>(imports: &'a [String], offered: &[&str]) -> Vec<&'a str> {
    imports
        .iter()
        .map(String::as_str)
        .filter(|import| {
            own_interface(import).is_none_or(|(name, version)| !offered.contains(&name) || !runs_api_version(version))
        })
        .collect()
}

/// A core module starts with the same magic as a component but a different layer/version field.
fn is_core_module(bytes: &[u8]) -> bool {
    bytes.len() >= 8 && bytes[..4] == *b"\0asm" && bytes[4..8] == [1, 0, 0, 0]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_world_offers_the_imports_its_wit_declares() {
        let provision = World::Provision.offered_imports();
        for name in ["device", "declare", "tags", "log", "clock", "random", "config", "intents", "types"] {
            assert!(provision.contains(&name), "{name}: {provision:?}");
        }
        assert!(provision.contains(&"radio") && provision.contains(&"radio-types"), "{provision:?}");
        let adapter = World::Adapter.offered_imports();
        assert!(adapter.contains(&"device") && adapter.contains(&"types"), "{adapter:?}");
        // An adapter answers intents and radio; it cannot set tags, read the clock or call them.
        for name in ["tags", "clock", "random", "config", "intents", "radio"] {
            assert!(!adapter.contains(&name), "{name}: {adapter:?}");
        }
    }

    #[test]
    fn only_the_plugins_own_failures_repeat() {
        assert!(PluginFault::CpuTime(50).repeats());
        assert!(PluginFault::Trap("unreachable".into()).repeats());
        assert!(PluginFault::Memory("2 MiB".into()).repeats());
        assert!(!PluginFault::Timeout(5000).repeats());
        assert!(!PluginFault::Instantiate("pool exhausted".into()).repeats());
    }

    #[test]
    fn a_component_is_known_by_its_entry_point() {
        let names = |list: &[&str]| list.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        assert_eq!(intended_world(&names(&["run"])), Some(World::Provision));
        assert_eq!(intended_world(&names(&["identify", "roost:plugin/intents@0.1.0"])), Some(World::Adapter));
        assert_eq!(intended_world(&names(&["main"])), None);
        assert_eq!(intended_world(&names(&["run", "identify"])), None);
    }

    #[test]
    fn imports_outside_the_world_are_named() {
        let imports: Vec<String> = [
            "roost:plugin/types@0.1.0",
            "roost:plugin/device@0.1.0",
            "roost:plugin/device@0.1.1",
            "roost:plugin/radio-types@0.1.1",
            "roost:plugin/tags@0.1.0",
            "roost:plugin/radio@0.1.1",
            "roost:plugin/device@0.2.0",
            "roost:plugin/device@0.1.2",
            "roost:plugin/device",
            "evil:net/socket",
            "wasi:filesystem/types@0.2.0",
        ]
        .map(String::from)
        .to_vec();
        // Another track, a newer patch, no version, another package: refused by every world.
        let foreign = [
            "roost:plugin/device@0.2.0",
            "roost:plugin/device@0.1.2",
            "roost:plugin/device",
            "evil:net/socket",
            "wasi:filesystem/types@0.2.0",
        ];
        let adapter_refuses: Vec<&str> =
            ["roost:plugin/tags@0.1.0", "roost:plugin/radio@0.1.1"].into_iter().chain(foreign).collect();
        assert_eq!(refused_imports(&imports, &World::Adapter.offered_imports()), adapter_refuses);
        assert_eq!(refused_imports(&imports, &World::Provision.offered_imports()), foreign);
    }

    fn wit_dir() -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugin-sdk/wit")
    }

    /// Released WIT, file by file. Components in the field were built against these bytes: a
    /// change is a new version in a new directory, never an edit (types.wit says so).
    const RELEASED_WIT: [(&str, &str); 9] = [
        ("roost-plugin@0.1.0/host.wit", "719eb672a0b3e6b0d21fafc28b068c44b8967ec31b32b79f17f12f8601445ff8"),
        ("roost-plugin@0.1.0/intents.wit", "aa92908dcbb250be443fc77085dcfe43a560582a28981755f0e651cc6f155eea"),
        ("roost-plugin@0.1.0/types.wit", "a40eea12507f7629a0d03c1b26087093ddbb33bbd0a7ec361838a633be4571b7"),
        ("roost-plugin@0.1.0/worlds.wit", "4b0b13cda3174a9fc70d6f532b15b3d1f255ccca1abc5c8e2927e6f15869ba29"),
        ("roost-plugin@0.1.1/host.wit", "31f243bb0bc9f831940c8c6f6f5213dd72df26376344460a292ff578c3b96917"),
        ("roost-plugin@0.1.1/intents.wit", "1e30fc945c5cad6792776796ee779fdadb670eabb9c5cc2eb50b53d1381e8085"),
        ("roost-plugin@0.1.1/radio.wit", "0a5684783d1e6eeb05fc95f8db40554c75cdd6b1799141401c9f76b0f79b9417"),
        ("roost-plugin@0.1.1/types.wit", "b292e8770dfa98ca7c778f785890e05202ab8a7bcf570c88ca960680d31b8036"),
        ("roost-plugin@0.1.1/worlds.wit", "d10f7f8ebcf1d5dbf0913d2f1a2a6b697b4ebf9990e0a603c91085592c52c2de"),
    ];

    #[test]
    fn released_wit_is_frozen() {
        let mut found = Vec::new();
        for version in std::fs::read_dir(wit_dir()).unwrap() {
            let version = version.unwrap();
            for file in std::fs::read_dir(version.path()).unwrap() {
                let file = file.unwrap();
                found.push(format!("{}/{}", version.file_name().to_string_lossy(), file.file_name().to_string_lossy()));
            }
        }
        found.sort();
        let listed: Vec<&str> = RELEASED_WIT.iter().map(|(file, _)| *file).collect();
        assert_eq!(found, listed, "every WIT file is a released one (a new version: add its files here)");
        for (file, sha256) in RELEASED_WIT {
            let bytes = std::fs::read(wit_dir().join(file)).unwrap();
            assert_eq!(hex::encode(Sha256::digest(&bytes)), sha256, "{file} changed after its release");
        }
        // The newest version is what the host implements.
        let newest = listed
            .iter()
            .filter_map(|file| file.strip_prefix("roost-plugin@")?.split_once('/'))
            .filter_map(|(version, _)| api_version(version))
            .max();
        assert_eq!(newest, api_version(API_VERSION));
    }

    /// The interfaces and worlds of one version's WIT, by name, each as its items (comments and
    /// layout dropped): `interface device { … }` → `device` → [`use types.{…};`, `facts: func() ->
    /// device-facts;`, …].
    fn wit_items(version: &str) -> std::collections::BTreeMap<String, Vec<String>> {
        let mut text = String::new();
        for file in std::fs::read_dir(wit_dir().join(format!("roost-plugin@{version}"))).unwrap() {
            let source = std::fs::read_to_string(file.unwrap().path()).unwrap();
            for line in source.lines() {
                text.push_str(line.split_once("//").map_or(line, |(code, _)| code));
                text.push('\n');
            }
        }
        let tokens: Vec<&str> = text.split_whitespace().collect();
        let mut blocks = std::collections::BTreeMap::new();
        let mut i = 0;
        while i < tokens.len() {
            let (kind, name) = (tokens[i], tokens.get(i + 1).copied().unwrap_or_default());
            if !matches!(kind, "interface" | "world") {
                i += 1;
                continue;
            }
            let (mut depth, mut items, mut item) = (0, Vec::new(), Vec::new());
            i += 2;
            while i < tokens.len() {
                let token = tokens[i];
                i += 1;
                if depth == 0 && token == "{" {
                    depth = 1;
                    continue;
                }
                if depth == 1 && token == "}" {
                    break;
                }
                depth += token.matches('{').count();
                depth -= token.matches('}').count();
                item.push(token);
                if depth == 1 && (token.ends_with(';') || token.ends_with('}')) {
                    items.push(item.join(" "));
                    item.clear();
                }
            }
            blocks.insert(format!("{kind} {name}"), items);
        }
        blocks
    }

    #[test]
    fn a_patch_version_only_adds_to_the_one_before() {
        // wasmtime matches a 0.1.0 component against the host's 0.1.1 interfaces by name, then
        // by type: every interface of 0.1.0 must be in 0.1.1 exactly as it was (a record field or
        // a function added, or a parameter changed, breaks every 0.1.0 component that uses it),
        // and every world must export what it did. A world may import more (a component imports
        // only what it uses), and 0.1.1 may add interfaces and worlds.
        let (before, after) = (wit_items("0.1.0"), wit_items("0.1.1"));
        assert_eq!(before.len(), 12, "ten interfaces and two worlds: {:?}", before.keys());
        for (name, items) in &before {
            let now = after.get(name).unwrap_or_else(|| panic!("0.1.1 has no {name}"));
            if name.starts_with("interface ") {
                assert_eq!(now, items, "{name} changed in 0.1.1");
                continue;
            }
            let is_import = |item: &&String| item.starts_with("import ");
            let (kept, added): (Vec<&String>, Vec<&String>) = now.iter().partition(|item| items.contains(item));
            assert_eq!(kept.len(), items.len(), "{name} lost items in 0.1.1: {items:?} → {now:?}");
            assert!(added.iter().all(is_import), "{name} may only import more in 0.1.1: {added:?}");
        }
        assert!(after.contains_key("interface radio") && after.contains_key("world radio-adapter"));
    }

    #[test]
    fn the_host_runs_its_own_track_up_to_its_version() {
        assert_eq!(API_VERSION, "0.1.1");
        for runs in ["0.1.0", "0.1.1"] {
            assert!(runs_api_version(runs), "{runs}");
        }
        for refused in ["0.1.2", "0.2.0", "1.1.0", "0.0.9", "0.1", "0.1.1.0", "0.1.x", ""] {
            assert!(!runs_api_version(refused), "{refused}");
        }
        assert!(runs_api_version(OLDEST_API_VERSION));
    }

    #[test]
    fn a_component_is_as_new_as_the_newest_interface_it_names() {
        let of = |names: &[&str]| component_api_version(names.iter().copied());
        assert_eq!(of(&["roost:plugin/types@0.1.0", "roost:plugin/intents@0.1.0", "identify"]), "0.1.0");
        assert_eq!(of(&["roost:plugin/types@0.1.1", "roost:plugin/radio@0.1.1", "identify"]), "0.1.1");
        assert_eq!(of(&["roost:plugin/device@0.1.0", "roost:plugin/radio@0.1.1"]), "0.1.1");
        // Nothing of ours named: it runs on the whole track.
        assert_eq!(of(&["run"]), OLDEST_API_VERSION);
        // A version the host does not run is no evidence (validation refuses such imports).
        assert_eq!(of(&["roost:plugin/device@0.1.0", "roost:plugin/device@0.2.0"]), "0.1.0");
    }

    #[test]
    fn a_deep_backtrace_of_one_function_is_a_recursion() {
        // A recursion of one function, or of a cycle of four, under a few outer frames.
        assert!(is_deep_recursion(std::iter::repeat_n(7, 5000).chain([1, 2, 3])));
        assert!(is_deep_recursion([7, 8, 9, 10].into_iter().cycle().take(4000)));
        // Shallow, or deep without the innermost function recurring: another stray access.
        assert!(!is_deep_recursion(std::iter::repeat_n(7, 20)));
        assert!(!is_deep_recursion(0..5000));
        assert!(!is_deep_recursion(std::iter::empty()));
    }

    #[test]
    fn the_world_is_named_with_its_article() {
        assert_eq!(World::Adapter.with_article(), "an adapter");
        assert_eq!(World::Provision.with_article(), "a provision");
    }
}
