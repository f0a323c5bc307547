//! # Roost plugin SDK
//!
//! Write the two kinds of Roost plugins in Rust and build them into WebAssembly components:
//!
//! - a **provision** (world `provision`) reads a device and [`declare`]s what it should look like;
//!   Roost works out the CWMP calls and runs the provision again until the device matches;
//! - an **adapter** (world `adapter`) knows a vendor's data model: it [identifies](Adapter::identify)
//!   its devices and implements Roost's canonical operations ([`Adapter`]) for them.
//!
//! ```ignore
//! use roost_plugin_sdk::prelude::*;
//!
//! struct GuestWifi;
//!
//! impl Provision for GuestWifi {
//!     fn run(args: &Args) -> Result<()> {
//!         let ssid = args.get("ssid").unwrap_or("Guest");
//!         declare("Device.WiFi.SSID.[SSID:guest].Enable").value(true);
//!         declare("Device.WiFi.SSID.*.SSID").refresh(Duration::from_secs(3600));
//!         log::info(&format!("guest network {ssid}"));
//!         Ok(())
//!     }
//! }
//!
//! export_provision!(GuestWifi);
//! ```
//!
//! Plugins see nothing but this API: no files, sockets or threads, the session's clock
//! ([`clock::now`]) and a host-seeded generator ([`random`]). Unit-test them on your machine with
//! [`testing::TestDevice`], which runs them against an in-memory parameter tree. The tutorial is
//! `docs/PLUGINS.md` in the Roost repository.

// The generated code names this crate by its external name, as it does inside plugins.
extern crate self as roost_plugin_sdk;

#[doc(hidden)]
pub mod bindings;
mod sys;
#[cfg(not(target_arch = "wasm32"))]
pub mod testing;

pub use roost_params::{pattern, tree};

use std::cell::RefCell;
use std::time::Duration;

/// Rounds of a session's provisioning after which the host gives up with a fault
/// (`provisioning.not_converging`); [`testing::TestDevice::converge`] gives up after as many.
pub use roost_params::session::MAX_ROUNDS;

pub use bindings::adapter::Identification;
pub use bindings::provision::roost::plugin::declare::InstanceCount;
pub use bindings::provision::roost::plugin::intent_types::{
    Band, Diagnostic, DiagnosticKind, DiagnosticReport, DiagnosticResults, HealthReport, Hop, ManagementSettings,
    PingResults, PingTest, PppoeSettings, TraceRouteTest, TransferResults, TransferTest, UdpEchoTest, WifiNetwork,
    WifiSettings, WifiTarget,
};
pub use bindings::provision::roost::plugin::log::Level;
pub use bindings::provision::roost::plugin::radio_types::CellularReport;
pub use bindings::provision::roost::plugin::types::{DeviceFacts, Error, ErrorKind, Parameter};
pub use roost_params::Value;

/// The result type of every fallible SDK call and plugin entry point.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What a plugin needs, in one `use`.
pub mod prelude {
    pub use crate::{
        Adapter, Args, Band, DeviceFacts, Error, ErrorKind, Identification, Provision, Result, Value, WifiSettings,
        WifiTarget, clock, config, declare, device, export_adapter, export_provision, intents, log, radio, random,
        tags,
    };
    pub use std::time::Duration;
}

impl Error {
    /// An error of `kind` with `message`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error { kind, message: message.into() }
    }

    /// A preset argument or declaration out of range.
    pub fn invalid_argument(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidArgument, message)
    }

    /// Something this plugin or the device does not support.
    pub fn unsupported(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unsupported, message)
    }

    /// Anything else.
    pub fn other(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Other, message)
    }
}

impl From<pattern::PatternError> for Error {
    fn from(e: pattern::PatternError) -> Self {
        Error::new(ErrorKind::InvalidPath, e.to_string())
    }
}

impl From<roost_params::InvalidTag> for Error {
    fn from(e: roost_params::InvalidTag) -> Self {
        Error::invalid_argument(e.to_string())
    }
}

/// Reading the device as the host stored it. Patterns are described in [`pattern`].
pub mod device {
    use super::*;

    /// The identity from the device's last Inform.
    pub fn facts() -> DeviceFacts {
        sys::with(|h| h.facts())
    }

    /// The GenieACS-style device id.
    pub fn id() -> String {
        sys::with(|h| h.id())
    }

    /// The event codes of the Inform that opened the session (`0 BOOTSTRAP`, `2 PERIODIC`, …).
    pub fn events() -> Vec<String> {
        sys::with(|h| h.events())
    }

    /// Whether the session's Inform carried `code` (`"0 BOOTSTRAP"`).
    pub fn has_event(code: &str) -> bool {
        events().iter().any(|e| e == code)
    }

    /// Every stored leaf matching `pattern`.
    pub fn get(pattern: &str) -> Result<Vec<Parameter>> {
        sys::with(|h| h.get(pattern))
    }

    /// The value of the first leaf matching `pattern`.
    pub fn value(pattern: &str) -> Result<Option<Value>> {
        sys::with(|h| h.value(pattern))
    }

    /// The text of the first leaf matching `pattern`; `None` when absent or never fetched.
    pub fn text(pattern: &str) -> Result<Option<String>> {
        Ok(value(pattern)?.map(|v| v.to_text()))
    }

    /// Every stored node matching `pattern` (objects end in `.`).
    pub fn names(pattern: &str) -> Result<Vec<String>> {
        sys::with(|h| h.names(pattern))
    }

    /// The instances of a table matching an instance pattern, as object paths ending in `.`.
    pub fn instances(pattern: &str) -> Result<Vec<String>> {
        sys::with(|h| h.instances(pattern))
    }

    /// The data model root of the device: `InternetGatewayDevice` or `Device`.
    pub fn root() -> String {
        facts().root
    }
}

/// Start a declaration for `path` (a pattern); it is recorded when the builder is dropped, at the
/// end of the statement:
///
/// ```ignore
/// declare("Device.WiFi.SSID.*.SSID").value("Roost").refresh(Duration::from_secs(3600));
/// declare("Device.Hosts.Host.*").refresh(Duration::ZERO);
/// declare("Device.WiFi.SSID.[SSID:guest]").instances(1);
/// ```
///
/// A declaration the host refuses (an invalid pattern, a limit) does not stop the run; the first
/// such error becomes the run's result, so it is recorded as a fault.
pub fn declare(path: impl Into<String>) -> Declaration {
    Declaration { path: path.into(), max_age_ms: None, value: None, instances: None }
}

/// A declaration being built; see [`declare`].
#[derive(Debug)]
pub struct Declaration {
    path: String,
    max_age_ms: Option<u64>,
    value: Option<Value>,
    instances: Option<InstanceCount>,
}

impl Declaration {
    /// The value every matching leaf should have.
    pub fn value(mut self, value: impl Into<Value>) -> Self {
        self.value = Some(value.into());
        self
    }

    /// Fetch matching values (or names below an object) last read longer ago than `max_age`;
    /// `Duration::ZERO` fetches them in this session whatever their age.
    pub fn refresh(mut self, max_age: Duration) -> Self {
        self.max_age_ms = Some(u64::try_from(max_age.as_millis()).unwrap_or(u64::MAX));
        self
    }

    /// Exactly `count` instances of the table (an instance pattern).
    pub fn instances(mut self, count: u32) -> Self {
        self.instances = Some(InstanceCount { min: count, max: count });
        self
    }

    /// Between `min` and `max` instances of the table.
    pub fn instances_between(mut self, min: u32, max: u32) -> Self {
        self.instances = Some(InstanceCount { min, max });
        self
    }
}

impl Drop for Declaration {
    fn drop(&mut self) {
        let declaration = bindings::provision::roost::plugin::declare::Declaration {
            path: std::mem::take(&mut self.path),
            max_age_ms: self.max_age_ms,
            value: self.value.take(),
            instances: self.instances,
        };
        if let Err(e) = sys::with(|h| h.declare(&declaration)) {
            defer_error(e);
        }
    }
}

thread_local! {
    static DEFERRED: RefCell<Option<Error>> = const { RefCell::new(None) };
}

fn defer_error(e: Error) {
    DEFERRED.with(|d| {
        d.borrow_mut().get_or_insert(e);
    });
}

fn take_deferred() -> Option<Error> {
    DEFERRED.with(|d| d.borrow_mut().take())
}

/// The device's tags.
///
/// A run that reads them ([`list`](tags::list), [`has`](tags::has), [`remove`](tags::remove))
/// runs again in every session. One that reads neither tags, [`clock`] nor [`random`] may have its
/// last output replayed instead while the device's tree is unchanged: it must be a function of
/// what it reads (docs/PLUGINS.md §7).
pub mod tags {
    use super::*;

    /// The tags the device has now, sorted.
    pub fn list() -> Vec<String> {
        sys::with(|h| h.tags())
    }

    /// Whether the device has `tag`.
    pub fn has(tag: &str) -> bool {
        list().iter().any(|t| t == tag)
    }

    /// Add a tag.
    pub fn add(tag: &str) -> Result<()> {
        sys::with(|h| h.add_tag(tag))
    }

    /// Remove a tag.
    pub fn remove(tag: &str) -> Result<()> {
        sys::with(|h| h.remove_tag(tag))
    }
}

/// Messages for the operator, kept with the session.
pub mod log {
    use super::*;

    /// Record `message` at `level`.
    pub fn log(level: Level, message: &str) {
        sys::with(|h| h.log(level, message));
    }
    /// A debug message.
    pub fn debug(message: &str) {
        log(Level::Debug, message);
    }
    /// An informational message.
    pub fn info(message: &str) {
        log(Level::Info, message);
    }
    /// A warning.
    pub fn warn(message: &str) {
        log(Level::Warn, message);
    }
    /// An error message (it does not fail the run: return an [`Error`] for that).
    pub fn error(message: &str) {
        log(Level::Error, message);
    }
}

/// The session's clock. A run that reads it runs again in every session, never replayed.
pub mod clock {
    use super::*;

    /// The session's time in milliseconds since the UNIX epoch, fixed for the whole session.
    pub fn now_ms() -> u64 {
        sys::with(|h| h.now_ms())
    }

    /// The session's time. (`SystemTime::now()` traps inside a plugin: use this.)
    pub fn now() -> std::time::SystemTime {
        std::time::UNIX_EPOCH + Duration::from_millis(now_ms())
    }
}

/// The host-seeded generator: the same sequence in every round of a session. A run that reads
/// it runs again in every session, never replayed.
pub mod random {
    use super::*;

    /// The next number.
    pub fn next_u64() -> u64 {
        sys::with(|h| h.next_u64())
    }

    /// `len` characters from `[A-Za-z0-9]`, for generated credentials.
    pub fn alphanumeric(len: usize) -> String {
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
        (0..len).map(|_| ALPHABET[(next_u64() % ALPHABET.len() as u64) as usize] as char).collect()
    }
}

/// Settings the owner organization stores for the plugin.
pub mod config {
    /// One setting.
    pub fn get(key: &str) -> Option<String> {
        crate::sys::with(|h| h.config_get(key))
    }

    /// Every setting, sorted by key.
    pub fn entries() -> Vec<(String, String)> {
        crate::sys::with(|h| h.config_entries())
    }
}

/// Roost's canonical operations, answered by the adapter chosen for the device (provisions only).
pub mod intents {
    use super::*;

    /// The Wi-Fi networks; refreshes what is older than `max_age`.
    pub fn wifi(max_age: Duration) -> Result<Vec<WifiNetwork>> {
        sys::with(|h| h.wifi(millis(max_age)))
    }
    /// Declare a Wi-Fi change.
    pub fn configure_wifi(settings: &WifiSettings) -> Result<()> {
        sys::with(|h| h.configure_wifi(settings))
    }
    /// Declare PPPoE credentials.
    pub fn configure_pppoe(settings: &PppoeSettings) -> Result<()> {
        sys::with(|h| h.configure_pppoe(settings))
    }
    /// Declare management server settings.
    pub fn configure_management(settings: &ManagementSettings) -> Result<()> {
        sys::with(|h| h.configure_management(settings))
    }
    /// HealthReport figures; refreshes what is older than `max_age`.
    pub fn health(max_age: Duration) -> Result<HealthReport> {
        sys::with(|h| h.health(millis(max_age)))
    }
    /// Declare a diagnostic's inputs and request it.
    pub fn start_diagnostic(request: &Diagnostic) -> Result<()> {
        sys::with(|h| h.start_diagnostic(request))
    }
    /// The last diagnostic of a kind; refreshes its state and results when older than `max_age`.
    pub fn diagnostic_result(kind: DiagnosticKind, max_age: Duration) -> Result<Option<DiagnosticReport>> {
        sys::with(|h| h.diagnostic_result(kind, millis(max_age)))
    }
    /// The running firmware version.
    pub fn firmware_version() -> Option<String> {
        sys::with(|h| h.firmware_version())
    }
}

/// Radio figures of the device's wireless WAN, answered by its adapter (provisions only; since
/// roost:plugin 0.1.1). An adapter built against 0.1.0, or one that does not implement
/// [`Adapter::cellular`], answers `unsupported`: a provision that reads them where present treats
/// that as "no figures".
pub mod radio {
    use super::*;

    /// The cellular link's figures (RSSI, SINR); refreshes what is older than `max_age`.
    pub fn cellular(max_age: Duration) -> Result<CellularReport> {
        sys::with(|h| h.cellular(millis(max_age)))
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The arguments a preset passes to a provision: name/value pairs in the preset's order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Args(Vec<(String, String)>);

impl Args {
    /// Arguments from pairs.
    pub fn new(pairs: Vec<(String, String)>) -> Self {
        Args(pairs)
    }

    /// The value of argument `name`, if given.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// The value of argument `name`, or an `invalid-argument` error naming it.
    pub fn require(&self, name: &str) -> Result<&str> {
        self.get(name).ok_or_else(|| Error::invalid_argument(format!("argument `{name}` is required")))
    }

    /// Argument `name` parsed as `T`, `None` when absent, an error naming it when unparsable.
    pub fn parse<T: std::str::FromStr>(&self, name: &str) -> Result<Option<T>> {
        self.get(name)
            .map(|v| {
                v.parse().map_err(|_| Error::invalid_argument(format!("argument `{name}` has an invalid value {v:?}")))
            })
            .transpose()
    }

    /// Every pair.
    pub fn pairs(&self) -> &[(String, String)] {
        &self.0
    }
}

/// A provision: tenant logic that reads the device and declares.
pub trait Provision {
    /// One run. It must depend only on what it reads: the host runs it again each round.
    fn run(args: &Args) -> Result<()>;
}

/// A vendor adapter. Every operation defaults to `unsupported`; implement those the vendor has.
pub trait Adapter {
    /// Whether this adapter handles the device, and how well.
    fn identify(facts: &DeviceFacts) -> Option<Identification>;

    /// The Wi-Fi networks; declare a refresh of what is older than `max_age`.
    fn wifi(max_age: Duration) -> Result<Vec<WifiNetwork>> {
        let _ = max_age;
        Err(Error::unsupported("this adapter does not read Wi-Fi"))
    }
    /// Declare a Wi-Fi change.
    fn configure_wifi(settings: &WifiSettings) -> Result<()> {
        let _ = settings;
        Err(Error::unsupported("this adapter does not configure Wi-Fi"))
    }
    /// Declare PPPoE credentials.
    fn configure_pppoe(settings: &PppoeSettings) -> Result<()> {
        let _ = settings;
        Err(Error::unsupported("this adapter does not configure PPPoE"))
    }
    /// Declare management server settings.
    fn configure_management(settings: &ManagementSettings) -> Result<()> {
        let _ = settings;
        Err(Error::unsupported("this adapter does not configure the management server"))
    }
    /// HealthReport figures; declare a refresh of what is older than `max_age`.
    fn health(max_age: Duration) -> Result<HealthReport> {
        let _ = max_age;
        Err(Error::unsupported("this adapter does not read health figures"))
    }
    /// Declare a diagnostic's inputs and request it.
    fn start_diagnostic(request: &Diagnostic) -> Result<()> {
        let _ = request;
        Err(Error::unsupported("this adapter does not run diagnostics"))
    }
    /// The last diagnostic of a kind.
    fn diagnostic_result(kind: DiagnosticKind, max_age: Duration) -> Result<Option<DiagnosticReport>> {
        let _ = (kind, max_age);
        Ok(None)
    }
    /// The running firmware version.
    fn firmware_version() -> Option<String> {
        None
    }
    /// The cellular link's figures (RSSI, SINR); declare a refresh of what is older than
    /// `max_age`. The RSRP is part of [`Adapter::health`].
    fn cellular(max_age: Duration) -> Result<CellularReport> {
        let _ = max_age;
        Err(Error::unsupported("this adapter does not read cellular figures"))
    }
}

/// Make a type implementing [`Provision`] the component's export. Once per crate.
#[macro_export]
macro_rules! export_provision {
    ($provision:ty) => {
        #[doc(hidden)]
        pub struct __RoostProvisionExport;

        impl $crate::__private::bindings::provision::Guest for __RoostProvisionExport {
            fn run(args: ::std::vec::Vec<(::std::string::String, ::std::string::String)>) -> $crate::Result<()> {
                $crate::__private::run_provision::<$provision>(args)
            }
        }

        #[cfg(target_arch = "wasm32")]
        $crate::__private::bindings::provision::__roost_export_provision_world!(__RoostProvisionExport with_types_in $crate::__private::bindings::provision);
    };
}

/// Make a type implementing [`Adapter`] the component's export. Once per crate.
#[macro_export]
macro_rules! export_adapter {
    ($adapter:ty) => {
        #[doc(hidden)]
        pub struct __RoostAdapterExport;

        impl $crate::__private::bindings::adapter::Guest for __RoostAdapterExport {
            fn identify(facts: $crate::DeviceFacts) -> ::std::option::Option<$crate::Identification> {
                <$adapter as $crate::Adapter>::identify(&facts)
            }
        }

        impl $crate::__private::bindings::adapter::exports::roost::plugin::intents::Guest for __RoostAdapterExport {
            fn wifi(max_age_ms: u64) -> $crate::Result<::std::vec::Vec<$crate::WifiNetwork>> {
                $crate::__private::finish(<$adapter as $crate::Adapter>::wifi($crate::__private::ms(max_age_ms)))
            }
            fn configure_wifi(settings: $crate::WifiSettings) -> $crate::Result<()> {
                $crate::__private::finish(<$adapter as $crate::Adapter>::configure_wifi(&settings))
            }
            fn configure_pppoe(settings: $crate::PppoeSettings) -> $crate::Result<()> {
                $crate::__private::finish(<$adapter as $crate::Adapter>::configure_pppoe(&settings))
            }
            fn configure_management(settings: $crate::ManagementSettings) -> $crate::Result<()> {
                $crate::__private::finish(<$adapter as $crate::Adapter>::configure_management(&settings))
            }
            fn health(max_age_ms: u64) -> $crate::Result<$crate::HealthReport> {
                $crate::__private::finish(<$adapter as $crate::Adapter>::health($crate::__private::ms(max_age_ms)))
            }
            fn start_diagnostic(request: $crate::Diagnostic) -> $crate::Result<()> {
                $crate::__private::finish(<$adapter as $crate::Adapter>::start_diagnostic(&request))
            }
            fn diagnostic_result(
                kind: $crate::DiagnosticKind,
                max_age_ms: u64,
            ) -> $crate::Result<::std::option::Option<$crate::DiagnosticReport>> {
                $crate::__private::finish(<$adapter as $crate::Adapter>::diagnostic_result(
                    kind,
                    $crate::__private::ms(max_age_ms),
                ))
            }
            fn firmware_version() -> ::std::option::Option<::std::string::String> {
                <$adapter as $crate::Adapter>::firmware_version()
            }
        }

        impl $crate::__private::bindings::adapter::exports::roost::plugin::radio::Guest for __RoostAdapterExport {
            fn cellular(max_age_ms: u64) -> $crate::Result<$crate::CellularReport> {
                $crate::__private::finish(<$adapter as $crate::Adapter>::cellular($crate::__private::ms(max_age_ms)))
            }
        }

        #[cfg(target_arch = "wasm32")]
        $crate::__private::bindings::adapter::__roost_export_adapter_world!(__RoostAdapterExport with_types_in $crate::__private::bindings::adapter);
    };
}

#[doc(hidden)]
pub mod __private {
    pub use crate::bindings;
    pub use wit_bindgen;

    use super::*;

    pub fn run_provision<P: Provision>(args: Vec<(String, String)>) -> Result<()> {
        let _ = take_deferred();
        finish(P::run(&Args::new(args)))
    }

    /// A call's result, or the first declaration error it swallowed.
    pub fn finish<T>(result: Result<T>) -> Result<T> {
        let deferred = take_deferred();
        match (result, deferred) {
            (Ok(_), Some(e)) => Err(e),
            (result, _) => result,
        }
    }

    pub fn ms(ms: u64) -> Duration {
        Duration::from_millis(ms)
    }
}
