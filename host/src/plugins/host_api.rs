//! What plugins import: the host side of every `roost:plugin` interface.
//!
//! A call's [`RunState`] holds a shared [`DeviceView`] (what the plugin may read) and its own
//! [`RunOutput`] (what it declared, tagged and logged). Everything a plugin hands over is
//! counted against its [`PluginLimits`] before the host keeps it; text of any size (`declare`,
//! `log`) before the host even copies it (`unlifted.rs`).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::budget::{self, Started};
use roost_params::pattern::Pattern;
use roost_params::tree::{Node, ParameterTree};
use wasmtime::ResourceLimiter;

use super::bindings::provision::roost::plugin::{
    clock, config, declare, device, intent_types, intents, log, radio, radio_types, random, tags, types,
};
use super::bindings::types::{DeviceFacts, Error, ErrorKind, Parameter, Value};
use super::{Loaded, PluginFault, PluginLimits, PluginRuntime};

mod unlifted;
pub(super) use unlifted::shadow_generated;

/// Loads the parameters below a prefix, for a view that reads the store lazily.
pub trait TreeLoader: Send + Sync {
    fn load(&self, prefix: &str) -> anyhow::Result<Vec<(String, Node)>>;
    /// The parameters below `prefix` that may match `pattern` (a superset is fine).
    fn load_matching(&self, prefix: &str, pattern: &Pattern) -> anyhow::Result<Vec<(String, Node)>> {
        let _ = pattern;
        self.load(prefix)
    }
    /// The device's tags, for a view made without them.
    fn tags(&self) -> anyhow::Result<Vec<String>> {
        Ok(Vec::new())
    }
}

/// What a lazy view loaded from the store: the nodes, and the prefixes and patterns they cover
/// completely. A later session's view of the same, unchanged tree starts from it
/// (`provisioning::reads`).
#[derive(Debug, Clone, Default)]
pub struct ViewSnapshot {
    pub tree: ParameterTree,
    pub prefixes: Vec<String>,
    pub patterns: Vec<String>,
}

impl ViewSnapshot {
    /// Roughly the bytes it holds.
    pub fn weight(&self) -> usize {
        const NODE_OVERHEAD: usize = 64;
        let nodes: usize = self
            .tree
            .iter()
            .map(|(path, node)| {
                NODE_OVERHEAD + path.len() + node.value.as_ref().map_or(0, String::len) + node.value_type.len()
            })
            .sum();
        let covers: usize = self.prefixes.iter().chain(&self.patterns).map(|p| 24 + p.len()).sum();
        nodes + covers
    }
}

/// The device as plugins of one round see it.
pub struct DeviceView {
    pub facts: DeviceFacts,
    pub id: String,
    pub events: Vec<String>,
    /// The device's tags as the engine last stored them (a run's own changes are in its output);
    /// `None` until first needed, for a lazy view.
    tags: Mutex<Option<Vec<String>>>,
    pub now_ms: u64,
    /// Seeds `random`: per device and session.
    pub seed: u64,
    tree: Mutex<ParameterTree>,
    loader: Option<Box<dyn TreeLoader>>,
    /// Prefixes loaded whole, and patterns whose own parameters were loaded.
    loaded: Mutex<Vec<String>>,
    loaded_patterns: Mutex<Vec<String>>,
    /// CPU time spent in the loader: the store's work, not the plugin's, so it does not count
    /// against a plugin's budget (time spent waiting on the store is no CPU time at all).
    load_cpu_nanos: AtomicU64,
    /// Loads of parameters from the store so far.
    tree_loads: AtomicU64,
    /// While set, reads that would load from the store fail instead, and `refused` records it:
    /// the engine runs a round on an async worker only if it needs nothing but the view.
    offline: AtomicBool,
    refused: AtomicBool,
}

impl std::fmt::Debug for DeviceView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceView").field("id", &self.id).finish_non_exhaustive()
    }
}

impl DeviceView {
    /// A view of a complete tree.
    pub fn new(facts: DeviceFacts, id: String, events: Vec<String>, tags: Vec<String>, tree: ParameterTree) -> Self {
        DeviceView {
            facts,
            id,
            events,
            tags: Mutex::new(Some(tags)),
            now_ms: 0,
            seed: 0,
            tree: Mutex::new(tree),
            loader: None,
            loaded: Mutex::new(vec![String::new()]),
            loaded_patterns: Mutex::new(Vec::new()),
            load_cpu_nanos: AtomicU64::new(0),
            tree_loads: AtomicU64::new(0),
            offline: AtomicBool::new(false),
            refused: AtomicBool::new(false),
        }
    }

    /// A view that loads the parts of the tree plugins read, by path prefix, when first read.
    pub fn lazy(
        facts: DeviceFacts,
        id: String,
        events: Vec<String>,
        tags: Option<Vec<String>>,
        loader: Box<dyn TreeLoader>,
    ) -> Self {
        DeviceView {
            loader: Some(loader),
            loaded: Mutex::new(Vec::new()),
            tags: Mutex::new(tags),
            ..Self::new(facts, id, events, Vec::new(), ParameterTree::new())
        }
    }

    /// A lazy view that starts with what an earlier session's view had loaded.
    pub fn with_snapshot(self, snapshot: ViewSnapshot) -> Self {
        *self.tree.lock().unwrap_or_else(|p| p.into_inner()) = snapshot.tree;
        *self.loaded.lock().unwrap_or_else(|p| p.into_inner()) = snapshot.prefixes;
        *self.loaded_patterns.lock().unwrap_or_else(|p| p.into_inner()) = snapshot.patterns;
        self
    }

    /// What the view holds and covers now.
    pub fn snapshot(&self) -> ViewSnapshot {
        ViewSnapshot {
            tree: self.tree.lock().unwrap_or_else(|p| p.into_inner()).clone(),
            prefixes: self.loaded.lock().unwrap_or_else(|p| p.into_inner()).clone(),
            patterns: self.loaded_patterns.lock().unwrap_or_else(|p| p.into_inner()).clone(),
        }
    }

    pub fn with_clock(mut self, now_ms: u64, seed: u64) -> Self {
        self.now_ms = now_ms;
        self.seed = seed;
        self
    }

    /// The device's tags (loaded on first use by a lazy view; empty if they cannot be read).
    /// Blocking on a lazy view: call it off the async workers, or use [`Self::loaded_tags`].
    pub fn tags(&self) -> Vec<String> {
        let mut tags = self.tags.lock().unwrap_or_else(|p| p.into_inner());
        if tags.is_none() {
            if self.loader.is_some() && self.refuses_load() {
                return Vec::new();
            }
            let loaded = match &self.loader {
                Some(loader) => self.timed(|| loader.tags()).unwrap_or_else(|error| {
                    tracing::warn!(device = %self.id, "loading tags failed: {error:#}");
                    Vec::new()
                }),
                None => Vec::new(),
            };
            *tags = Some(loaded);
        }
        tags.clone().unwrap_or_default()
    }

    /// The tags if they were loaded: for async callers, which must not load through the
    /// blocking loader.
    pub fn loaded_tags(&self) -> Option<Vec<String>> {
        self.tags.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn set_tags(&self, tags: Vec<String>) {
        *self.tags.lock().unwrap_or_else(|p| p.into_inner()) = Some(tags);
    }

    /// Puts what the store now holds below the object `prefix` in place of what the view had
    /// there: after a refresh, which may have removed nodes as well as added them.
    pub fn replace(&self, prefix: &str, rows: Vec<(String, Node)>) {
        let mut tree = self.tree.lock().unwrap_or_else(|p| p.into_inner());
        tree.remove(prefix);
        for (path, node) in rows {
            tree.insert(path, node);
        }
        let mut loaded = self.loaded.lock().unwrap_or_else(|p| p.into_inner());
        if !loaded.iter().any(|p| prefix.starts_with(p.as_str())) {
            loaded.push(prefix.to_owned());
        }
    }

    /// Runs `f` on the tree with everything below `prefix` loaded.
    pub fn read<R>(&self, prefix: &str, f: impl FnOnce(&ParameterTree) -> R) -> Result<R, Error> {
        self.ensure_loaded(prefix)?;
        let tree = self.tree.lock().unwrap_or_else(|p| p.into_inner());
        Ok(f(&tree))
    }

    /// Runs `f` on the tree with what `pattern` can match loaded: for a wildcard pattern, only the
    /// parameters matching its shape, not the whole subtree of its literal prefix (a Wi-Fi client
    /// count must not load every host table of the LAN side).
    pub fn read_pattern<R>(&self, pattern: &Pattern, f: impl FnOnce(&ParameterTree) -> R) -> Result<R, Error> {
        let prefix = pattern.literal_prefix();
        let has_alias = pattern.segments().iter().any(|s| matches!(s, roost_params::pattern::Segment::Alias(_)));
        if pattern.is_literal() || has_alias || self.covered(&prefix) {
            return self.read(&prefix, f);
        }
        let key = pattern.to_string();
        let known = self.loaded_patterns.lock().unwrap_or_else(|p| p.into_inner()).contains(&key);
        if !known && let Some(loader) = &self.loader {
            if self.refuses_load() {
                return Err(not_loaded());
            }
            let rows = self.timed(|| loader.load_matching(&prefix, pattern)).map_err(|e| Error {
                kind: ErrorKind::Other,
                message: format!("the device's parameters could not be read: {e:#}"),
            })?;
            self.insert_loaded(rows);
            self.loaded_patterns.lock().unwrap_or_else(|p| p.into_inner()).push(key);
        }
        let tree = self.tree.lock().unwrap_or_else(|p| p.into_inner());
        Ok(f(&tree))
    }

    /// How many times parameters were loaded from the store: none means the view holds what it
    /// started with.
    pub fn tree_loads(&self) -> u64 {
        self.tree_loads.load(Ordering::Relaxed)
    }

    /// Runs `f` with loading from the store forbidden: `None` if `f` wanted to load (what it
    /// returned then rests on reads that failed, and is dropped).
    pub fn without_loading<R>(&self, f: impl FnOnce() -> R) -> Option<R> {
        struct Online<'a>(&'a AtomicBool);
        impl Drop for Online<'_> {
            fn drop(&mut self) {
                self.0.store(false, Ordering::Relaxed);
            }
        }
        self.refused.store(false, Ordering::Relaxed);
        self.offline.store(true, Ordering::Relaxed);
        let result = {
            let _online = Online(&self.offline);
            f()
        };
        (!self.refused.swap(false, Ordering::Relaxed)).then_some(result)
    }

    fn refuses_load(&self) -> bool {
        let offline = self.offline.load(Ordering::Relaxed);
        if offline {
            self.refused.store(true, Ordering::Relaxed);
        }
        offline
    }

    /// CPU time the loading threads spent loading from the store so far: what a plugin's budget
    /// gives back (a plugin's loads run on its own thread).
    pub fn load_cpu_time(&self) -> Duration {
        Duration::from_nanos(self.load_cpu_nanos.load(Ordering::Relaxed))
    }

    fn timed<R>(&self, f: impl FnOnce() -> R) -> R {
        let start = budget::thread_cpu_time();
        let result = f();
        let nanos = u64::try_from(budget::thread_cpu_time().saturating_sub(start).as_nanos()).unwrap_or(u64::MAX);
        self.load_cpu_nanos.fetch_add(nanos, Ordering::Relaxed);
        result
    }

    fn covered(&self, prefix: &str) -> bool {
        self.loader.is_none()
            || self.loaded.lock().unwrap_or_else(|p| p.into_inner()).iter().any(|p| prefix.starts_with(p.as_str()))
    }

    fn insert_loaded(&self, rows: Vec<(String, Node)>) {
        self.tree_loads.fetch_add(1, Ordering::Relaxed);
        let mut tree = self.tree.lock().unwrap_or_else(|p| p.into_inner());
        for (path, node) in rows {
            // What the engine wrote this session wins over what was loaded before it.
            if tree.get(&path).is_none() {
                tree.insert(path, node);
            }
        }
    }

    /// Runs `f` on the tree as loaded so far (the caller loaded what it needs with `read`).
    pub fn read_loaded<R>(&self, f: impl FnOnce(&ParameterTree) -> R) -> R {
        let tree = self.tree.lock().unwrap_or_else(|p| p.into_inner());
        f(&tree)
    }

    /// Changes the tree (the engine records what the device now holds).
    pub fn update(&self, f: impl FnOnce(&mut ParameterTree)) {
        let mut tree = self.tree.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut tree);
    }

    fn ensure_loaded(&self, prefix: &str) -> Result<(), Error> {
        let Some(loader) = &self.loader else { return Ok(()) };
        let mut loaded = self.loaded.lock().unwrap_or_else(|p| p.into_inner());
        if loaded.iter().any(|p| prefix.starts_with(p.as_str())) {
            return Ok(());
        }
        if self.refuses_load() {
            return Err(not_loaded());
        }
        let rows = self.timed(|| loader.load(prefix)).map_err(|e| Error {
            kind: ErrorKind::Other,
            message: format!("the device's parameters could not be read: {e:#}"),
        })?;
        self.insert_loaded(rows);
        loaded.push(prefix.to_owned());
        Ok(())
    }
}

/// One declaration, checked and converted.
#[derive(Debug, Clone, PartialEq)]
pub struct Declared {
    pub pattern: Pattern,
    pub value: Option<roost_params::Value>,
    pub max_age: Option<Duration>,
    pub instances: Option<(u32, u32)>,
}

/// What one call produced.
#[derive(Debug, Default)]
pub struct RunOutput {
    pub declarations: Vec<Declared>,
    declaration_bytes: usize,
    pub tags_added: Vec<String>,
    pub tags_removed: Vec<String>,
    pub logs: Vec<(log::Level, String)>,
    pub logs_dropped: usize,
    log_bytes: usize,
    /// Faults of adapters called on the plugin's behalf.
    pub adapter_faults: Vec<PluginFault>,
    /// Whether the run saw anything besides the tree, facts, events, arguments and configuration:
    /// the clock, the generator, the tags, or a failed read of the store. A run that did not
    /// would declare the same again over the same tree (`provisioning::reads`).
    pub impure: bool,
    /// The figures the run's `health` and `radio` calls read, the later call's laid over the
    /// earlier's: what a session that settles keeps as the device's health time series
    /// (`health::MetricsBuffer`).
    pub health: Option<std::sync::Arc<crate::health::HealthFigures>>,
}

/// Memory and table limits of one store; remembers a breach so that the trap it causes is
/// reported as what it is.
#[derive(Debug)]
pub struct Limiter {
    limits: PluginLimits,
    pub breached: Option<String>,
}

impl ResourceLimiter for Limiter {
    fn memory_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        if desired > self.limits.memory_bytes {
            let message = format!(
                "asked for {} MiB of memory; its limit is {} MiB",
                desired.div_ceil(1024 * 1024),
                self.limits.memory_bytes / (1024 * 1024)
            );
            self.breached = Some(message.clone());
            return Err(wasmtime::Error::msg(message));
        }
        Ok(true)
    }

    fn table_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        if desired > self.limits.max_table_elements {
            let message =
                format!("asked for a table of {desired} elements; its limit is {}", self.limits.max_table_elements);
            self.breached = Some(message.clone());
            return Err(wasmtime::Error::msg(message));
        }
        Ok(true)
    }

    fn instances(&self) -> usize {
        self.limits.max_instances
    }

    fn tables(&self) -> usize {
        self.limits.max_tables
    }

    fn memories(&self) -> usize {
        self.limits.max_instances
    }
}

/// The data of one plugin call's `Store`.
pub struct RunState {
    pub(crate) limits: PluginLimits,
    pub(crate) limiter: Limiter,
    pub(crate) output: RunOutput,
    pub(crate) config: Vec<(String, String)>,
    view: Arc<DeviceView>,
    rng: u64,
    started: Started,
    /// The view's load CPU time when the call (or the provision that made it) started.
    pub(crate) load_baseline: Duration,
    /// Which limit stopped the call, when one did.
    pub(crate) overrun: Option<budget::Overrun>,
    adapter: Option<(Arc<PluginRuntime>, Arc<Loaded>)>,
}

impl RunState {
    pub(crate) fn new(
        view: Arc<DeviceView>,
        limits: PluginLimits,
        adapter: Option<(Arc<PluginRuntime>, Arc<Loaded>)>,
        started: Started,
    ) -> Self {
        RunState {
            limits,
            limiter: Limiter { limits, breached: None },
            output: RunOutput::default(),
            config: Vec::new(),
            rng: view.seed,
            load_baseline: view.load_cpu_time(),
            overrun: None,
            view,
            started,
            adapter,
        }
    }

    /// When to check the call first ([`budget::first_check`]).
    pub(crate) fn first_check(&self) -> Duration {
        budget::first_check(self.started.wall.elapsed(), &self.limits)
    }

    /// Whether the call may go on: its own CPU time, leaving out what the host spent loading
    /// parameters for it (a slow store must not make a plugin look like it loops), against its
    /// budget, and the wall-clock time against the backstop.
    pub(crate) fn check_budget(&self) -> budget::Verdict {
        let loading = self.view.load_cpu_time().saturating_sub(self.load_baseline);
        let own_cpu = budget::thread_cpu_time().saturating_sub(self.started.cpu).saturating_sub(loading);
        budget::check(own_cpu, self.started.wall.elapsed(), &self.limits)
    }

    /// A read the store failed depends on more than the tree.
    fn note_failed_read<R>(&mut self, read: Result<R, Error>) -> Result<R, Error> {
        if read.is_err() {
            self.output.impure = true;
        }
        read
    }

    /// The device's adapter, for a provision's call.
    fn adapter(&self) -> Result<(Arc<PluginRuntime>, Arc<Loaded>), Error> {
        self.adapter.clone().ok_or_else(|| error(ErrorKind::Unsupported, "no adapter handles this device".into()))
    }

    fn call_adapter<R>(
        &mut self,
        call: impl FnOnce(
            &super::bindings::adapter::Adapter,
            &mut wasmtime::Store<RunState>,
        ) -> wasmtime::Result<Result<R, Error>>,
    ) -> Result<R, Error> {
        let (runtime, loaded) = self.adapter()?;
        let (started, baseline) = (self.started, self.load_baseline);
        match runtime.call_adapter(&loaded, self.view.clone(), self.limits, (started, baseline), &mut self.output, call)
        {
            Ok(result) => result,
            Err(fault) => Err(self.adapter_failed(fault)),
        }
    }

    fn call_radio<R>(
        &mut self,
        call: impl FnOnce(
            &super::bindings::radio_adapter::RadioAdapter,
            &mut wasmtime::Store<RunState>,
        ) -> wasmtime::Result<Result<R, Error>>,
    ) -> Result<R, Error> {
        let (runtime, loaded) = self.adapter()?;
        let clocks = (self.started, self.load_baseline);
        match runtime.call_radio(&loaded, self.view.clone(), self.limits, clocks, &mut self.output, call) {
            None => Err(error(
                ErrorKind::Unsupported,
                format!(
                    "the device's adapter does not report radio figures (it was built against roost:plugin@{}, \
                     without `radio`)",
                    loaded.api_version()
                ),
            )),
            Some(Ok(result)) => result,
            Some(Err(fault)) => Err(self.adapter_failed(fault)),
        }
    }

    /// What a provision sees of an adapter's fault, which is recorded against the adapter.
    fn adapter_failed(&mut self, fault: PluginFault) -> Error {
        let message = format!("the device's adapter failed: {fault}");
        self.output.adapter_faults.push(fault);
        error(ErrorKind::Other, message)
    }
}

impl RunOutput {
    /// Lays figures an adapter reported over those the run had.
    fn add_health(&mut self, figures: crate::health::HealthFigures) {
        let older = self.health.as_deref();
        self.health = Some(Arc::new(crate::health::HealthFigures::overlay(older, &figures)));
    }
}

fn not_loaded() -> Error {
    error(ErrorKind::Other, "the device's parameters are not loaded".into())
}

fn error(kind: ErrorKind, message: String) -> Error {
    Error { kind, message }
}

fn parse(pattern: &str) -> Result<Pattern, Error> {
    Pattern::parse(pattern).map_err(|e| error(ErrorKind::InvalidPath, e.to_string()))
}

/// The WIT value the plugin sees of a shared [`roost_params::Value`].
pub fn wit_value(value: roost_params::Value) -> Value {
    use roost_params::Value as V;
    match value {
        V::Text(s) => Value::Text(s),
        V::Signed(n) => Value::Signed(n),
        V::Unsigned(n) => Value::Unsigned(n),
        V::Boolean(b) => Value::Boolean(b),
        V::DateTime(s) => Value::DateTime(s),
        V::Base64(s) => Value::Base64(s),
        V::HexBinary(s) => Value::HexBinary(s),
    }
}

/// The shared [`roost_params::Value`] of a value a plugin declared.
fn params_value(value: Value) -> roost_params::Value {
    use roost_params::Value as V;
    match value {
        Value::Text(s) => V::Text(s),
        Value::Signed(n) => V::Signed(n),
        Value::Unsigned(n) => V::Unsigned(n),
        Value::Boolean(b) => V::Boolean(b),
        Value::DateTime(s) => V::DateTime(s),
        Value::Base64(s) => V::Base64(s),
        Value::HexBinary(s) => V::HexBinary(s),
    }
}

fn parameter(path: &str, node: &Node) -> Parameter {
    Parameter {
        path: path.to_owned(),
        value: node.value.as_deref().map(|v| wit_value(roost_params::Value::from_cwmp(v, &node.value_type))),
        writable: node.writable,
        updated_ms: node.updated_ms,
    }
}

impl types::Host for RunState {}
impl intent_types::Host for RunState {}
impl radio_types::Host for RunState {}

impl device::Host for RunState {
    fn facts(&mut self) -> DeviceFacts {
        self.view.facts.clone()
    }

    fn id(&mut self) -> String {
        self.view.id.clone()
    }

    fn events(&mut self) -> Vec<String> {
        self.view.events.clone()
    }

    fn get(&mut self, pattern: String) -> Result<Vec<Parameter>, Error> {
        let pattern = parse(&pattern)?;
        let read = self.view.read_pattern(&pattern, |tree| {
            tree.leaves(&pattern).iter().filter_map(|p| tree.get(p).map(|n| parameter(p, n))).collect()
        });
        self.note_failed_read(read)
    }

    fn value_of(&mut self, pattern: String) -> Result<Option<Value>, Error> {
        Ok(self.get(pattern)?.into_iter().find_map(|p| p.value))
    }

    fn names(&mut self, pattern: String) -> Result<Vec<String>, Error> {
        let pattern = parse(&pattern)?;
        let read = self.view.read_pattern(&pattern, |tree| tree.expand(&pattern));
        self.note_failed_read(read)
    }

    fn instances(&mut self, pattern: String) -> Result<Vec<String>, Error> {
        let pattern = parse(&pattern)?;
        if !pattern.names_instances() {
            return Err(error(ErrorKind::InvalidPath, format!("{pattern} does not name instances of a table")));
        }
        let read = self.view.read_pattern(&pattern, |tree| tree.expand(&pattern));
        let mut found = self.note_failed_read(read)?;
        found.sort_by_key(|p| {
            p.trim_end_matches('.').rsplit('.').next().and_then(|n| n.parse::<u64>().ok()).unwrap_or(u64::MAX)
        });
        Ok(found)
    }
}

/// What a number or a boolean counts towards `max_declaration_bytes`; text counts its length.
const SCALAR_VALUE_BYTES: usize = 8;

impl RunState {
    fn too_many_declarations(&self) -> Error {
        error(ErrorKind::Limit, format!("more than {} declarations in one run", self.limits.max_declarations))
    }

    fn declarations_too_large(&self) -> Error {
        error(ErrorKind::Limit, format!("declarations of one run exceed {} bytes", self.limits.max_declaration_bytes))
    }
}

impl declare::Host for RunState {
    fn declare(&mut self, declaration: declare::Declaration) -> Result<(), Error> {
        let out = &mut self.output;
        if out.declarations.len() >= self.limits.max_declarations {
            return Err(self.too_many_declarations());
        }
        let bytes = declaration.path.len()
            + declaration.value.as_ref().map_or(0, |v| match v {
                Value::Text(s) | Value::DateTime(s) | Value::Base64(s) | Value::HexBinary(s) => s.len(),
                Value::Signed(_) | Value::Unsigned(_) | Value::Boolean(_) => SCALAR_VALUE_BYTES,
            });
        if out.declaration_bytes + bytes > self.limits.max_declaration_bytes {
            return Err(self.declarations_too_large());
        }
        let pattern = parse(&declaration.path)?;
        if declaration.max_age_ms.is_none() && declaration.value.is_none() && declaration.instances.is_none() {
            return Err(error(ErrorKind::InvalidArgument, format!("the declaration of {pattern} asks for nothing")));
        }
        if let Some(count) = declaration.instances {
            if count.min > count.max {
                return Err(error(ErrorKind::InvalidArgument, format!("{pattern}: instance minimum above maximum")));
            }
            if !pattern.names_instances() {
                return Err(error(
                    ErrorKind::InvalidArgument,
                    format!("{pattern} does not name instances of a table, so it has no instance count"),
                ));
            }
        }
        if declaration.value.is_some() && (pattern.is_object() || pattern.names_instances()) {
            return Err(error(ErrorKind::InvalidArgument, format!("{pattern} names objects, which have no value")));
        }
        out.declaration_bytes += bytes;
        out.declarations.push(Declared {
            pattern,
            value: declaration.value.map(params_value),
            max_age: declaration.max_age_ms.map(Duration::from_millis),
            instances: declaration.instances.map(|c| (c.min, c.max)),
        });
        Ok(())
    }
}

impl tags::Host for RunState {
    fn list(&mut self) -> Vec<String> {
        self.output.impure = true;
        let mut tags: Vec<String> = self
            .view
            .tags()
            .iter()
            .filter(|t| !self.output.tags_removed.contains(t))
            .chain(self.output.tags_added.iter())
            .cloned()
            .collect();
        tags.sort();
        tags.dedup();
        tags
    }

    fn add(&mut self, tag: String) -> Result<(), Error> {
        roost_params::check_tag(&tag).map_err(|e| error(ErrorKind::InvalidArgument, e.to_string()))?;
        self.output.tags_removed.retain(|t| *t != tag);
        if !self.output.tags_added.contains(&tag) {
            if self.output.tags_added.len() >= 64 {
                return Err(error(ErrorKind::Limit, "more than 64 tags added in one run".into()));
            }
            self.output.tags_added.push(tag);
        }
        Ok(())
    }

    fn remove(&mut self, tag: String) -> Result<(), Error> {
        roost_params::check_tag(&tag).map_err(|e| error(ErrorKind::InvalidArgument, e.to_string()))?;
        // Whether the tag is there to remove is read from the device's tags.
        self.output.impure = true;
        self.output.tags_added.retain(|t| *t != tag);
        if !self.output.tags_removed.contains(&tag) && self.view.tags().contains(&tag) {
            self.output.tags_removed.push(tag);
        }
        Ok(())
    }
}

impl log::Host for RunState {
    fn log(&mut self, level: log::Level, message: String) {
        let out = &mut self.output;
        if out.logs.len() >= self.limits.max_log_messages || out.log_bytes + message.len() > self.limits.max_log_bytes {
            out.logs_dropped += 1;
            return;
        }
        out.log_bytes += message.len();
        out.logs.push((level, message));
    }
}

impl clock::Host for RunState {
    fn now_ms(&mut self) -> u64 {
        self.output.impure = true;
        self.view.now_ms
    }
}

impl random::Host for RunState {
    fn next_u64(&mut self) -> u64 {
        self.output.impure = true;
        roost_params::session::splitmix64(&mut self.rng)
    }
}

impl config::Host for RunState {
    fn get(&mut self, key: String) -> Option<String> {
        self.config.iter().find(|(k, _)| *k == key).map(|(_, v)| v.clone())
    }

    fn entries(&mut self) -> Vec<(String, String)> {
        self.config.clone()
    }
}

impl intents::Host for RunState {
    fn wifi(&mut self, max_age_ms: u64) -> Result<Vec<intent_types::WifiNetwork>, Error> {
        self.call_adapter(|a, store| a.roost_plugin_intents().call_wifi(store, max_age_ms))
    }

    fn configure_wifi(&mut self, settings: intent_types::WifiSettings) -> Result<(), Error> {
        self.call_adapter(|a, store| a.roost_plugin_intents().call_configure_wifi(store, &settings))
    }

    fn configure_pppoe(&mut self, settings: intent_types::PppoeSettings) -> Result<(), Error> {
        self.call_adapter(|a, store| a.roost_plugin_intents().call_configure_pppoe(store, &settings))
    }

    fn configure_management(&mut self, settings: intent_types::ManagementSettings) -> Result<(), Error> {
        self.call_adapter(|a, store| a.roost_plugin_intents().call_configure_management(store, &settings))
    }

    fn health(&mut self, max_age_ms: u64) -> Result<intent_types::HealthReport, Error> {
        let report = self.call_adapter(|a, store| a.roost_plugin_intents().call_health(store, max_age_ms))?;
        self.output.add_health(crate::health::HealthFigures::of(&report));
        Ok(report)
    }

    fn start_diagnostic(&mut self, request: intent_types::Diagnostic) -> Result<(), Error> {
        self.call_adapter(|a, store| a.roost_plugin_intents().call_start_diagnostic(store, &request))
    }

    fn diagnostic_result(
        &mut self,
        kind: intent_types::DiagnosticKind,
        max_age_ms: u64,
    ) -> Result<Option<intent_types::DiagnosticReport>, Error> {
        self.call_adapter(|a, store| a.roost_plugin_intents().call_diagnostic_result(store, kind, max_age_ms))
    }

    fn firmware_version(&mut self) -> Option<String> {
        self.call_adapter(|a, store| a.roost_plugin_intents().call_firmware_version(store).map(Ok)).ok().flatten()
    }
}

impl radio::Host for RunState {
    fn cellular(&mut self, max_age_ms: u64) -> Result<radio_types::CellularReport, Error> {
        let report = self.call_radio(|a, store| a.roost_plugin_radio().call_cellular(store, max_age_ms))?;
        self.output.add_health(crate::health::HealthFigures::of_cellular(&report));
        Ok(report)
    }
}
