//! Where SDK calls go: the host's imports inside a component, the test harness elsewhere.

use crate::bindings::provision::roost::plugin as wit;
use crate::{
    CellularReport, DeviceFacts, Diagnostic, DiagnosticKind, DiagnosticReport, HealthReport, Level, ManagementSettings,
    Parameter, PppoeSettings, Result, Value, WifiNetwork, WifiSettings,
};

/// Everything a plugin can ask of its host.
pub(crate) trait Host {
    fn facts(&self) -> DeviceFacts;
    fn id(&self) -> String;
    fn events(&self) -> Vec<String>;
    fn get(&self, pattern: &str) -> Result<Vec<Parameter>>;
    fn value(&self, pattern: &str) -> Result<Option<Value>>;
    fn names(&self, pattern: &str) -> Result<Vec<String>>;
    fn instances(&self, pattern: &str) -> Result<Vec<String>>;
    fn declare(&self, declaration: &wit::declare::Declaration) -> Result<()>;
    fn tags(&self) -> Vec<String>;
    fn add_tag(&self, tag: &str) -> Result<()>;
    fn remove_tag(&self, tag: &str) -> Result<()>;
    fn log(&self, level: Level, message: &str);
    fn now_ms(&self) -> u64;
    fn next_u64(&self) -> u64;
    fn config_get(&self, key: &str) -> Option<String>;
    fn config_entries(&self) -> Vec<(String, String)>;
    fn wifi(&self, max_age_ms: u64) -> Result<Vec<WifiNetwork>>;
    fn configure_wifi(&self, settings: &WifiSettings) -> Result<()>;
    fn configure_pppoe(&self, settings: &PppoeSettings) -> Result<()>;
    fn configure_management(&self, settings: &ManagementSettings) -> Result<()>;
    fn health(&self, max_age_ms: u64) -> Result<HealthReport>;
    fn start_diagnostic(&self, request: &Diagnostic) -> Result<()>;
    fn diagnostic_result(&self, kind: DiagnosticKind, max_age_ms: u64) -> Result<Option<DiagnosticReport>>;
    fn firmware_version(&self) -> Option<String>;
    fn cellular(&self, max_age_ms: u64) -> Result<CellularReport>;
}

#[cfg(target_arch = "wasm32")]
pub(crate) fn with<R>(f: impl FnOnce(&dyn Host) -> R) -> R {
    f(&Imports)
}

#[cfg(not(target_arch = "wasm32"))]
pub(crate) fn with<R>(f: impl FnOnce(&dyn Host) -> R) -> R {
    crate::testing::with_current(f)
}

/// The component's imports.
#[cfg(target_arch = "wasm32")]
struct Imports;

#[cfg(target_arch = "wasm32")]
impl Host for Imports {
    fn facts(&self) -> DeviceFacts {
        wit::device::facts()
    }
    fn id(&self) -> String {
        wit::device::id()
    }
    fn events(&self) -> Vec<String> {
        wit::device::events()
    }
    fn get(&self, pattern: &str) -> Result<Vec<Parameter>> {
        wit::device::get(pattern)
    }
    fn value(&self, pattern: &str) -> Result<Option<Value>> {
        wit::device::value_of(pattern)
    }
    fn names(&self, pattern: &str) -> Result<Vec<String>> {
        wit::device::names(pattern)
    }
    fn instances(&self, pattern: &str) -> Result<Vec<String>> {
        wit::device::instances(pattern)
    }
    fn declare(&self, declaration: &wit::declare::Declaration) -> Result<()> {
        wit::declare::declare(declaration)
    }
    fn tags(&self) -> Vec<String> {
        wit::tags::list()
    }
    fn add_tag(&self, tag: &str) -> Result<()> {
        wit::tags::add(tag)
    }
    fn remove_tag(&self, tag: &str) -> Result<()> {
        wit::tags::remove(tag)
    }
    fn log(&self, level: Level, message: &str) {
        wit::log::log(level, message)
    }
    fn now_ms(&self) -> u64 {
        wit::clock::now_ms()
    }
    fn next_u64(&self) -> u64 {
        wit::random::next_u64()
    }
    fn config_get(&self, key: &str) -> Option<String> {
        wit::config::get(key)
    }
    fn config_entries(&self) -> Vec<(String, String)> {
        wit::config::entries()
    }
    fn wifi(&self, max_age_ms: u64) -> Result<Vec<WifiNetwork>> {
        wit::intents::wifi(max_age_ms)
    }
    fn configure_wifi(&self, settings: &WifiSettings) -> Result<()> {
        wit::intents::configure_wifi(settings)
    }
    fn configure_pppoe(&self, settings: &PppoeSettings) -> Result<()> {
        wit::intents::configure_pppoe(settings)
    }
    fn configure_management(&self, settings: &ManagementSettings) -> Result<()> {
        wit::intents::configure_management(settings)
    }
    fn health(&self, max_age_ms: u64) -> Result<HealthReport> {
        wit::intents::health(max_age_ms)
    }
    fn start_diagnostic(&self, request: &Diagnostic) -> Result<()> {
        wit::intents::start_diagnostic(request)
    }
    fn diagnostic_result(&self, kind: DiagnosticKind, max_age_ms: u64) -> Result<Option<DiagnosticReport>> {
        wit::intents::diagnostic_result(kind, max_age_ms)
    }
    fn firmware_version(&self) -> Option<String> {
        wit::intents::firmware_version()
    }
    fn cellular(&self, max_age_ms: u64) -> Result<CellularReport> {
        wit::radio::cellular(max_age_ms)
    }
}
