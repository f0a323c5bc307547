//! Shared logic of Roost's shipped adapters: the standard TR-098 (`InternetGatewayDevice.`) and
//! TR-181 (`Device.`) mappings of every canonical operation, with a [`Profile`] for what a vendor
//! does differently (its band parameter, its CPU and optical figures, which networks are primary).
//!
//! Every operation reads the stored tree and declares; a read also declares a refresh of what it
//! read, so a provision calling it converges in the next round. Only paths the device has are ever
//! declared: refreshing a parameter the device lacks would fail the whole GetParameterValues.

use std::time::Duration;

use roost_plugin_sdk::prelude::*;
use roost_plugin_sdk::{
    CellularReport, Diagnostic, DiagnosticKind, DiagnosticReport, DiagnosticResults, HealthReport, Hop,
    ManagementSettings, PingResults, PppoeSettings, TransferResults, WifiNetwork,
};

pub mod tr098;
pub mod tr181;

#[doc(hidden)]
pub use roost_plugin_sdk as __sdk;

/// Implements every [`Adapter`] operation but `identify` with the mappings of one data model
/// (`tr098` or `tr181`) and a [`Profile`]:
///
/// ```ignore
/// impl Adapter for Acme {
///     fn identify(facts: &DeviceFacts) -> Option<Identification> { … }
///     adapter_kit::standard_operations!(tr098, ACME_PROFILE);
/// }
/// ```
///
/// An adapter that differs in some operation writes that one itself and delegates the others to
/// the data model's functions (`adapter_kit::tr098::health(&PROFILE, max_age)`, …).
#[macro_export]
macro_rules! standard_operations {
    ($model:ident, $profile:expr) => {
        fn wifi(max_age: ::std::time::Duration) -> $crate::__sdk::Result<::std::vec::Vec<$crate::__sdk::WifiNetwork>> {
            $crate::$model::wifi(&$profile, max_age)
        }
        fn configure_wifi(settings: &$crate::__sdk::WifiSettings) -> $crate::__sdk::Result<()> {
            $crate::$model::configure_wifi(&$profile, settings)
        }
        fn configure_pppoe(settings: &$crate::__sdk::PppoeSettings) -> $crate::__sdk::Result<()> {
            $crate::$model::configure_pppoe(settings)
        }
        fn configure_management(settings: &$crate::__sdk::ManagementSettings) -> $crate::__sdk::Result<()> {
            $crate::configure_management($crate::$model::ROOT, settings)
        }
        fn health(max_age: ::std::time::Duration) -> $crate::__sdk::Result<$crate::__sdk::HealthReport> {
            $crate::$model::health(&$profile, max_age)
        }
        fn start_diagnostic(request: &$crate::__sdk::Diagnostic) -> $crate::__sdk::Result<()> {
            $crate::$model::start_diagnostic(request)
        }
        fn diagnostic_result(
            kind: $crate::__sdk::DiagnosticKind,
            max_age: ::std::time::Duration,
        ) -> $crate::__sdk::Result<::std::option::Option<$crate::__sdk::DiagnosticReport>> {
            $crate::$model::diagnostic_result(kind, max_age)
        }
        fn firmware_version() -> ::std::option::Option<::std::string::String> {
            $crate::$model::firmware_version()
        }
        fn cellular(max_age: ::std::time::Duration) -> $crate::__sdk::Result<$crate::__sdk::CellularReport> {
            $crate::$model::cellular(max_age)
        }
    };
}

/// A figure read from a vendor parameter, converted to the canonical unit.
#[derive(Debug, Clone, Copy)]
pub struct Metric {
    /// Absolute path of the parameter.
    pub path: &'static str,
    /// From the stored value to the canonical unit (`None`: unusable, such as an absent optic).
    pub convert: fn(&Value) -> Option<f64>,
}

/// What a vendor does differently from the standard data model.
#[derive(Debug, Clone, Copy)]
pub struct Profile {
    /// A parameter of each Wi-Fi network (relative to it) naming its band (`X_HW_RFBand`: `2.4GHz`,
    /// `5GHz`), tried before the standard ones.
    pub band_parameter: Option<&'static str>,
    /// CPU usage in percent, when not at the standard place.
    pub cpu_percent: Option<Metric>,
    /// Optical receive and transmit power in dBm.
    pub optical_rx_dbm: Option<Metric>,
    pub optical_tx_dbm: Option<Metric>,
    /// How many networks per band count as primary (the rest are guest or backhaul networks);
    /// `None` keeps the standard rule: the lowest-numbered enabled network of each band.
    pub primary_per_band: Option<usize>,
}

impl Profile {
    /// The standard data model with nothing vendor-specific.
    pub const STANDARD: Profile = Profile {
        band_parameter: None,
        cpu_percent: None,
        optical_rx_dbm: None,
        optical_tx_dbm: None,
        primary_per_band: None,
    };
}

/// The value as a number, parsed from text where a device stores numbers as strings.
pub fn number(value: &Value) -> Option<f64> {
    value.as_f64()
}

/// A number that may carry its unit, as some firmware writes signal levels in text
/// (`-43.70dBm`, `30.53dB`, `-97 dBm`: the Huawei BM632w's WiMAX status).
pub fn number_with_unit(value: &Value) -> Option<f64> {
    let Value::Text(text) = value else { return value.as_f64() };
    let text = text.trim();
    let number = ["dBm", "dB"]
        .iter()
        .find_map(|unit| {
            let split = text.len().checked_sub(unit.len())?;
            let (number, suffix) = (text.get(..split)?, text.get(split..)?);
            suffix.eq_ignore_ascii_case(unit).then_some(number)
        })
        .unwrap_or(text);
    number.trim().parse::<f64>().ok().filter(|n| n.is_finite())
}

/// The cellular link's figures, from the leaves that hold them (absent: `none`), each refreshed
/// when older than `max_age`.
pub fn cellular(rssi: Option<&str>, sinr: Option<&str>, max_age: Duration) -> CellularReport {
    let figure = |path: Option<&str>| {
        let path = path?;
        refresh_if_present(path, max_age);
        read(path).and_then(|value| number_with_unit(&value))
    };
    CellularReport { cellular_rssi_dbm: figure(rssi), cellular_sinr_db: figure(sinr) }
}

/// Reads a leaf's value; absent or never fetched → `None`.
pub fn read(path: &str) -> Option<Value> {
    device::value(path).ok().flatten()
}

/// Reads a leaf as text.
pub fn text(path: &str) -> Option<String> {
    read(path).map(|v| v.to_text())
}

/// Whether the device has this leaf (or, ending in `.`, this object).
pub fn exists(path: &str) -> bool {
    device::names(path).map(|n| !n.is_empty()).unwrap_or(false)
}

/// Declares a refresh of `path` when the device has it.
pub fn refresh_if_present(path: &str, max_age: Duration) {
    if exists(path) {
        declare(path).refresh(max_age);
    }
}

/// Declares `value` for `path` when the device has it; an error naming the path otherwise.
pub fn set(path: &str, value: impl Into<Value>) -> Result<()> {
    if !exists(path) {
        return Err(Error::unsupported(format!("the device has no {path}")));
    }
    declare(path).value(value);
    Ok(())
}

/// The band of a frequency text such as `2.4GHz`, `5GHz`, `6GHz`, `2.4G`.
pub fn band_from_text(text: &str) -> Option<Band> {
    let t = text.trim().to_ascii_lowercase();
    if t.starts_with("2.4") || t.starts_with("2,4") {
        Some(Band::Band24)
    } else if t.starts_with('5') {
        Some(Band::Band5)
    } else if t.starts_with('6') {
        Some(Band::Band6)
    } else {
        None
    }
}

/// The band of a channel number: 1–14 are 2.4 GHz, 32–177 are 5 GHz.
pub fn band_from_channel(channel: u64) -> Option<Band> {
    match channel {
        1..=14 => Some(Band::Band24),
        32..=177 => Some(Band::Band5),
        _ => None,
    }
}

/// The band implied by an 802.11 standard list (`11ac`, `a,n,ac,ax`, `b,g,n`, `11na`):
/// `a`/`ac` only exist at 5 GHz, `b`/`g` only at 2.4 GHz; `n`, `ax` and `be` run on every band.
pub fn band_from_standard(standard: &str) -> Option<Band> {
    let lower = standard.to_ascii_lowercase().replace("802.11", "").replace("11", "");
    let mut parts: Vec<String> = Vec::new();
    for token in lower.split(|c: char| c == ',' || c == '/' || c.is_whitespace()).filter(|t| !t.is_empty()) {
        // A run of letters such as `bgn` or `na` lists several standards.
        let mut rest = token;
        while !rest.is_empty() {
            let take = ["ac", "ax", "be"].iter().find(|s| rest.starts_with(**s)).map_or(1, |s| s.len());
            parts.push(rest[..take].to_owned());
            rest = &rest[take..];
        }
    }
    if parts.iter().any(|p| p == "ac" || p == "a") {
        Some(Band::Band5)
    } else if parts.iter().any(|p| p == "b" || p == "g") {
        Some(Band::Band24)
    } else {
        None
    }
}

/// Marks the primary networks: per band, the `per_band` lowest-numbered enabled ones (or the
/// lowest-numbered one if none is enabled).
pub fn mark_primary(networks: &mut [WifiNetwork], per_band: usize) {
    for band in [Some(Band::Band24), Some(Band::Band5), Some(Band::Band6), None] {
        let mut indices: Vec<usize> = (0..networks.len()).filter(|&i| networks[i].band == band).collect();
        indices.sort_by_key(|&i| (!networks[i].enabled, instance_number(&networks[i].key)));
        for &i in indices.iter().take(per_band.max(1)) {
            networks[i].primary = true;
        }
    }
}

/// The instance number at the end of an object path (`….WLANConfiguration.5.` → 5).
pub fn instance_number(path: &str) -> u64 {
    path.trim_end_matches('.').rsplit('.').next().and_then(|n| n.parse().ok()).unwrap_or(u64::MAX)
}

/// The networks a Wi-Fi change applies to.
pub fn targets<'a>(networks: &'a [WifiNetwork], target: &WifiTarget) -> Result<Vec<&'a WifiNetwork>> {
    let chosen: Vec<&WifiNetwork> = match target {
        WifiTarget::All => networks.iter().filter(|n| n.primary).collect(),
        WifiTarget::Band(band) => networks.iter().filter(|n| n.primary && n.band == Some(*band)).collect(),
        WifiTarget::Network(key) => networks.iter().filter(|n| n.key == *key).collect(),
    };
    if chosen.is_empty() && !networks.is_empty() {
        return Err(Error::invalid_argument(format!("no Wi-Fi network matches {target:?}")));
    }
    Ok(chosen)
}

/// Checks a Wi-Fi change before declaring it.
pub fn check_wifi(settings: &WifiSettings) -> Result<()> {
    if let Some(ssid) = &settings.ssid
        && (ssid.is_empty() || ssid.len() > 32)
    {
        return Err(Error::invalid_argument("an SSID has 1 to 32 bytes"));
    }
    if let Some(p) = &settings.passphrase {
        let hex_key = p.len() == 64 && p.bytes().all(|b| b.is_ascii_hexdigit());
        let passphrase = (8..=63).contains(&p.len()) && p.bytes().all(|b| (0x20..0x7f).contains(&b));
        if !hex_key && !passphrase {
            return Err(Error::invalid_argument(
                "a WPA passphrase has 8 to 63 printable ASCII characters, or 64 hex digits",
            ));
        }
    }
    Ok(())
}

/// Declares management server settings under `root` (`InternetGatewayDevice` or `Device`).
pub fn configure_management(root: &str, settings: &ManagementSettings) -> Result<()> {
    let ms = format!("{root}.ManagementServer.");
    if let Some(interval) = settings.periodic_inform_interval {
        if interval == 0 {
            return Err(Error::invalid_argument("the periodic Inform interval must be at least 1 second"));
        }
        set(&format!("{ms}PeriodicInformEnable"), true)?;
        set(&format!("{ms}PeriodicInformInterval"), interval)?;
    }
    if let Some(username) = &settings.connection_request_username {
        set(&format!("{ms}ConnectionRequestUsername"), username.as_str())?;
    }
    if let Some(password) = &settings.connection_request_password {
        set(&format!("{ms}ConnectionRequestPassword"), password.as_str())?;
    }
    Ok(())
}

/// A figure, refreshed when older than `max_age`.
fn metric(metric: Option<Metric>, max_age: Duration) -> Option<f64> {
    let metric = metric?;
    refresh_if_present(metric.path, max_age);
    read(metric.path).and_then(|v| (metric.convert)(&v))
}

/// A standard leaf as an unsigned number, refreshed when older than `max_age`.
fn unsigned(path: &str, max_age: Duration) -> Option<u64> {
    refresh_if_present(path, max_age);
    read(path).and_then(|v| v.as_u64())
}

/// Where a data model keeps one diagnostic: its object and the names of its fields.
#[derive(Debug, Clone, Copy)]
pub struct DiagnosticPlace {
    pub object: &'static str,
    pub kind: DiagnosticKind,
}

/// Declares a diagnostic's inputs and `DiagnosticsState = Requested` at `object` (ending in `.`).
pub fn start_diagnostic(object: &str, request: &Diagnostic) -> Result<()> {
    if !exists(object) {
        return Err(Error::unsupported(format!("the device has no {object}")));
    }
    let field = |name: &str| format!("{object}{name}");
    let set_if = |name: &str, value: Option<Value>| -> Result<()> {
        match value {
            Some(v) => set(&field(name), v),
            None => Ok(()),
        }
    };
    match request {
        Diagnostic::Ping(p) => {
            set(&field("Host"), p.host.as_str())?;
            set_if("NumberOfRepetitions", p.count.map(Value::from))?;
            set_if("Timeout", p.timeout_ms.map(Value::from))?;
            set_if("DataBlockSize", p.size.map(Value::from))?;
        }
        Diagnostic::TraceRoute(t) => {
            set(&field("Host"), t.host.as_str())?;
            set_if("MaxHopCount", t.max_hops.map(Value::from))?;
            set_if("Timeout", t.timeout_ms.map(Value::from))?;
        }
        Diagnostic::Download(t) => set(&field("DownloadURL"), t.url.as_str())?,
        Diagnostic::Upload(t) => {
            set(&field("UploadURL"), t.url.as_str())?;
            set(&field("TestFileLength"), t.length.unwrap_or(10 * 1024 * 1024))?;
        }
        Diagnostic::UdpEcho(u) => {
            set(&field("Host"), u.host.as_str())?;
            set(&field("Port"), u32::from(u.port))?;
            set_if("NumberOfRepetitions", u.count.map(Value::from))?;
        }
    }
    set(&field("DiagnosticsState"), "Requested")
}

/// Reads the state and results of the diagnostic at `object`, refreshing them when older than
/// `max_age`; `hops` is the name of the trace route's hop table and its fields.
pub fn diagnostic_result(
    object: &str,
    kind: DiagnosticKind,
    max_age: Duration,
    hops: (&str, &str, &str, &str),
) -> Result<Option<DiagnosticReport>> {
    if !exists(object) {
        return Ok(None);
    }
    declare(object).refresh(max_age);
    let field = |name: &str| read(&format!("{object}{name}"));
    let u32_of = |name: &str| field(name).and_then(|v| v.as_u64()).and_then(|n| u32::try_from(n).ok());
    let u64_of = |name: &str| field(name).and_then(|v| v.as_u64());
    let text_of = |name: &str| field(name).map(|v| v.to_text()).filter(|t| !t.is_empty() && !t.starts_with("0001-"));
    let Some(state) = field("DiagnosticsState").map(|v| v.to_text()) else { return Ok(None) };
    let results = (state == "Complete" || state == "Completed").then(|| match kind {
        DiagnosticKind::Ping | DiagnosticKind::UdpEcho => {
            let ping = PingResults {
                success_count: u32_of("SuccessCount"),
                failure_count: u32_of("FailureCount"),
                average_ms: u32_of("AverageResponseTime"),
                minimum_ms: u32_of("MinimumResponseTime"),
                maximum_ms: u32_of("MaximumResponseTime"),
            };
            if kind == DiagnosticKind::Ping { DiagnosticResults::Ping(ping) } else { DiagnosticResults::UdpEcho(ping) }
        }
        DiagnosticKind::Download => DiagnosticResults::Download(TransferResults {
            begin: text_of("BOMTime"),
            end: text_of("EOMTime"),
            test_bytes: u64_of("TestBytesReceived"),
            total_bytes: u64_of("TotalBytesReceived"),
        }),
        DiagnosticKind::Upload => DiagnosticResults::Upload(TransferResults {
            begin: text_of("BOMTime"),
            end: text_of("EOMTime"),
            test_bytes: u64_of("TestFileLength"),
            total_bytes: u64_of("TotalBytesSent"),
        }),
        DiagnosticKind::TraceRoute => {
            let (table, host, address, rtts) = hops;
            let instances = device::instances(&format!("{object}{table}.*")).unwrap_or_default();
            DiagnosticResults::TraceRoute(
                instances
                    .iter()
                    .map(|hop| Hop {
                        host: text(&format!("{hop}{host}")).filter(|t| !t.is_empty()),
                        address: text(&format!("{hop}{address}")).filter(|t| !t.is_empty()),
                        rtt_ms: text(&format!("{hop}{rtts}"))
                            .map(|t| t.split(',').filter_map(|n| n.trim().parse().ok()).collect())
                            .unwrap_or_default(),
                    })
                    .collect(),
            )
        }
    });
    Ok(Some(DiagnosticReport { state, results }))
}

/// HealthReport figures common to both data models, given where each lives.
#[derive(Debug, Clone, Copy)]
pub struct HealthPlaces<'a> {
    pub uptime: &'a str,
    pub cpu: &'a str,
    pub memory_total: &'a str,
    pub memory_free: &'a str,
}

/// Reads health figures, refreshing each when older than `max_age`.
pub fn health(
    places: HealthPlaces<'_>,
    profile: &Profile,
    wan: Option<(String, String)>,
    wifi_clients: Option<u32>,
    cellular_rsrp: Option<Metric>,
    max_age: Duration,
) -> HealthReport {
    // A vendor's CPU figure where the firmware has it, else the standard one.
    let cpu = match profile.cpu_percent.filter(|m| exists(m.path)) {
        Some(vendor) => metric(Some(vendor), max_age).map(|v| v.round() as u64),
        None => unsigned(places.cpu, max_age),
    };
    let (wan_bytes_sent, wan_bytes_received) = match &wan {
        Some((sent, received)) => (unsigned(sent, max_age), unsigned(received, max_age)),
        None => (None, None),
    };
    HealthReport {
        uptime_seconds: unsigned(places.uptime, max_age),
        cpu_percent: cpu.and_then(|c| u32::try_from(c.min(100)).ok()),
        memory_total_kib: unsigned(places.memory_total, max_age),
        memory_free_kib: unsigned(places.memory_free, max_age),
        wan_bytes_sent,
        wan_bytes_received,
        wifi_clients,
        optical_rx_dbm: metric(profile.optical_rx_dbm, max_age),
        optical_tx_dbm: metric(profile.optical_tx_dbm, max_age),
        cellular_rsrp_dbm: metric(cellular_rsrp, max_age),
    }
}

/// PPPoE credentials on the connection object `connection` (ending in `.`).
pub fn configure_pppoe_at(connection: &str, settings: &PppoeSettings) -> Result<()> {
    if settings.username.is_empty() {
        return Err(Error::invalid_argument("the PPPoE user name is empty"));
    }
    set(&format!("{connection}Username"), settings.username.as_str())?;
    set(&format!("{connection}Password"), settings.password.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signal_levels_are_read_with_or_without_their_unit() {
        let text = |t: &str| number_with_unit(&Value::Text(t.into()));
        assert_eq!(text("-43.70dBm"), Some(-43.7));
        assert_eq!(text("30.53dB"), Some(30.53));
        assert_eq!(text(" -97 dBm "), Some(-97.0));
        assert_eq!(text("12.5 DB"), Some(12.5));
        assert_eq!(text("-80"), Some(-80.0));
        assert_eq!(number_with_unit(&Value::Signed(-71)), Some(-71.0));
        for unusable in ["", "dBm", "n/a", "inf dB", "NaN"] {
            assert_eq!(text(unusable), None, "{unusable:?}");
        }
    }

    #[test]
    fn bands_from_the_texts_real_firmware_uses() {
        assert_eq!(band_from_text("2.4GHz"), Some(Band::Band24));
        assert_eq!(band_from_text("5GHz"), Some(Band::Band5));
        assert_eq!(band_from_text(" 6GHz"), Some(Band::Band6));
        assert_eq!(band_from_text("auto"), None);
        assert_eq!(band_from_standard("11bgn"), Some(Band::Band24));
        assert_eq!(band_from_standard("b,g,n"), Some(Band::Band24));
        assert_eq!(band_from_standard("11ac"), Some(Band::Band5));
        assert_eq!(band_from_standard("a,n,ac"), Some(Band::Band5));
        assert_eq!(band_from_standard("ax"), None);
        assert_eq!(band_from_standard("a,n,ac,ax"), Some(Band::Band5));
        assert_eq!(band_from_standard("11na"), Some(Band::Band5));
        assert_eq!(band_from_standard("b,g,n,ax"), Some(Band::Band24));
        assert_eq!(band_from_standard("n"), None);
        assert_eq!(band_from_channel(6), Some(Band::Band24));
        assert_eq!(band_from_channel(36), Some(Band::Band5));
        assert_eq!(band_from_channel(0), None);
    }

    #[test]
    fn wifi_settings_are_checked() {
        let ok = WifiSettings {
            target: WifiTarget::All,
            ssid: Some("Roost".into()),
            passphrase: Some("correct horse".into()),
            enabled: None,
        };
        assert!(check_wifi(&ok).is_ok());
        let long = WifiSettings { ssid: Some("x".repeat(33)), ..ok.clone() };
        assert!(check_wifi(&long).is_err());
        let short = WifiSettings { passphrase: Some("short".into()), ..ok.clone() };
        assert!(check_wifi(&short).is_err());
        let hex = WifiSettings { passphrase: Some("a".repeat(64)), ..ok };
        assert!(check_wifi(&hex).is_ok());
    }
}
