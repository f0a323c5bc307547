//! The TR-098 (`InternetGatewayDevice.`) mappings.

use super::*;

pub const ROOT: &str = "InternetGatewayDevice";
const WLAN: &str = "InternetGatewayDevice.LANDevice.*.WLANConfiguration.*";

/// The Wi-Fi networks (`LANDevice.*.WLANConfiguration.*`), refreshing what is older than
/// `max_age`.
pub fn wifi(profile: &Profile, max_age: Duration) -> Result<Vec<WifiNetwork>> {
    let instances = device::instances(WLAN)?;
    if instances.is_empty() {
        declare(WLAN).refresh(max_age);
    }
    for wlan in &instances {
        for name in ["SSID", "Enable", "Channel", "TotalAssociations", "BeaconType", "Standard"] {
            refresh_if_present(&format!("{wlan}{name}"), max_age);
        }
        if let Some(vendor) = profile.band_parameter {
            refresh_if_present(&format!("{wlan}{vendor}"), max_age);
        }
    }
    networks(profile)
}

/// The Wi-Fi networks as stored.
pub fn networks(profile: &Profile) -> Result<Vec<WifiNetwork>> {
    let mut networks = Vec::new();
    for wlan in device::instances(WLAN)? {
        let field = |name: &str| format!("{wlan}{name}");
        let band = profile
            .band_parameter
            .and_then(|p| text(&field(p)))
            .and_then(|t| band_from_text(&t))
            .or_else(|| text(&field("OperatingFrequencyBand")).and_then(|t| band_from_text(&t)))
            .or_else(|| read(&field("Channel")).and_then(|v| v.as_u64()).and_then(band_from_channel))
            .or_else(|| text(&field("Standard")).and_then(|t| band_from_standard(&t)));
        networks.push(WifiNetwork {
            key: wlan.clone(),
            band,
            primary: false,
            ssid: text(&field("SSID")).unwrap_or_default(),
            enabled: read(&field("Enable")).and_then(|v| v.as_bool()).unwrap_or(false),
            security: text(&field("BeaconType")),
            channel: read(&field("Channel")).and_then(|v| v.as_u64()).and_then(|c| u32::try_from(c).ok()),
            clients: read(&field("TotalAssociations")).and_then(|v| v.as_u64()).and_then(|c| u32::try_from(c).ok()),
        });
    }
    mark_primary(&mut networks, profile.primary_per_band.unwrap_or(1));
    Ok(networks)
}

/// Declares a Wi-Fi change. The passphrase goes where the device keeps it:
/// `PreSharedKey.1.KeyPassphrase` (the TR-098 place) and the `KeyPassphrase` shortcut where present.
pub fn configure_wifi(profile: &Profile, settings: &WifiSettings) -> Result<()> {
    check_wifi(settings)?;
    let networks = networks(profile)?;
    if networks.is_empty() {
        // Nothing known yet: fetch the table this session; the next round declares the change.
        declare(WLAN).refresh(Duration::ZERO);
        return Ok(());
    }
    for network in targets(&networks, &settings.target)? {
        let field = |name: &str| format!("{}{name}", network.key);
        if let Some(ssid) = &settings.ssid {
            set(&field("SSID"), ssid.as_str())?;
        }
        if let Some(enabled) = settings.enabled {
            set(&field("Enable"), enabled)?;
        }
        if let Some(passphrase) = &settings.passphrase {
            let places: Vec<String> = ["PreSharedKey.1.KeyPassphrase", "KeyPassphrase"]
                .iter()
                .map(|p| field(p))
                .filter(|p| exists(p))
                .collect();
            if places.is_empty() {
                return Err(Error::unsupported(format!("{} has no passphrase parameter", network.key)));
            }
            for place in places {
                declare(place).value(passphrase.as_str());
            }
        }
    }
    Ok(())
}

/// The internet connection: `Layer3Forwarding.DefaultConnectionService` when it names a PPP
/// connection, else the first routed PPP connection, else the first.
pub fn internet_connection() -> Result<Option<String>> {
    let ppp = device::instances("InternetGatewayDevice.WANDevice.*.WANConnectionDevice.*.WANPPPConnection.*")?;
    if let Some(default) = text("InternetGatewayDevice.Layer3Forwarding.DefaultConnectionService") {
        let default = format!("{}.", default.trim().trim_end_matches('.'));
        if ppp.contains(&default) {
            return Ok(Some(default));
        }
    }
    let routed = ppp.iter().find(|c| text(&format!("{c}ConnectionType")).as_deref() == Some("IP_Routed"));
    Ok(routed.or(ppp.first()).cloned())
}

/// Declares PPPoE credentials.
pub fn configure_pppoe(settings: &PppoeSettings) -> Result<()> {
    let connection = match &settings.connection {
        Some(c) => format!("{}.", c.trim_end_matches('.')),
        None => internet_connection()?.ok_or_else(|| Error::unsupported("the device has no PPP connection"))?,
    };
    configure_pppoe_at(&connection, settings)
}

/// HealthReport figures.
pub fn health(profile: &Profile, max_age: Duration) -> Result<HealthReport> {
    let clients: Option<u32> = {
        let counts: Vec<u64> = device::get("InternetGatewayDevice.LANDevice.*.WLANConfiguration.*.TotalAssociations")?
            .into_iter()
            .filter_map(|p| {
                declare(p.path.as_str()).refresh(max_age);
                p.value.and_then(|v| v.as_u64())
            })
            .collect();
        (!counts.is_empty()).then(|| u32::try_from(counts.iter().sum::<u64>()).unwrap_or(u32::MAX))
    };
    let wan = "InternetGatewayDevice.WANDevice.1.WANCommonInterfaceConfig.";
    Ok(super::health(
        HealthPlaces {
            uptime: "InternetGatewayDevice.DeviceInfo.UpTime",
            cpu: "InternetGatewayDevice.DeviceInfo.ProcessStatus.CPUUsage",
            memory_total: "InternetGatewayDevice.DeviceInfo.MemoryStatus.Total",
            memory_free: "InternetGatewayDevice.DeviceInfo.MemoryStatus.Free",
        },
        profile,
        Some((format!("{wan}TotalBytesSent"), format!("{wan}TotalBytesReceived"))),
        clients,
        None,
        max_age,
    ))
}

/// Where TR-098 keeps each diagnostic (it has no UDP echo client).
pub fn diagnostic_object(kind: DiagnosticKind) -> Option<&'static str> {
    match kind {
        DiagnosticKind::Ping => Some("InternetGatewayDevice.IPPingDiagnostics."),
        DiagnosticKind::TraceRoute => Some("InternetGatewayDevice.TraceRouteDiagnostics."),
        DiagnosticKind::Download => Some("InternetGatewayDevice.DownloadDiagnostics."),
        DiagnosticKind::Upload => Some("InternetGatewayDevice.UploadDiagnostics."),
        DiagnosticKind::UdpEcho => None,
    }
}

fn kind_of(request: &Diagnostic) -> DiagnosticKind {
    match request {
        Diagnostic::Download(_) => DiagnosticKind::Download,
        Diagnostic::Upload(_) => DiagnosticKind::Upload,
        Diagnostic::UdpEcho(_) => DiagnosticKind::UdpEcho,
        Diagnostic::Ping(_) => DiagnosticKind::Ping,
        Diagnostic::TraceRoute(_) => DiagnosticKind::TraceRoute,
    }
}

/// Declares a diagnostic.
pub fn start_diagnostic(request: &Diagnostic) -> Result<()> {
    let object = diagnostic_object(kind_of(request))
        .ok_or_else(|| Error::unsupported("TR-098 devices have no UDP echo client diagnostic"))?;
    super::start_diagnostic(object, request)
}

/// The last diagnostic of a kind.
pub fn diagnostic_result(kind: DiagnosticKind, max_age: Duration) -> Result<Option<DiagnosticReport>> {
    match diagnostic_object(kind) {
        Some(object) => {
            super::diagnostic_result(object, kind, max_age, ("RouteHops", "HopHost", "HopHostAddress", "HopRTTimes"))
        }
        None => Ok(None),
    }
}

/// The running firmware version.
pub fn firmware_version() -> Option<String> {
    text("InternetGatewayDevice.DeviceInfo.SoftwareVersion")
}

/// Where TR-098 firmware with a wireless WAN keeps its signal. TR-098 has no cellular object;
/// the Huawei BM632w (WiMAX) reports `WiMAX.Status.RSSI` (`-43.70dBm`) and the CINR of
/// frequency reuse 1 and 3 (`CINR1`, `CINR3`, `30.53dB`): reuse 1, measured over the whole
/// channel, is its SINR.
const WIMAX_STATUS: &str = "InternetGatewayDevice.WiMAX.Status.";

/// The wireless WAN's figures, where the device has them (none otherwise).
pub fn cellular(max_age: Duration) -> Result<CellularReport> {
    if !exists(WIMAX_STATUS) {
        return Ok(CellularReport { cellular_rssi_dbm: None, cellular_sinr_db: None });
    }
    let rssi = format!("{WIMAX_STATUS}RSSI");
    let sinr = format!("{WIMAX_STATUS}CINR1");
    Ok(super::cellular(Some(&rssi), Some(&sinr), max_age))
}
