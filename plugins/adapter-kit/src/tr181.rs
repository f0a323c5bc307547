//! The TR-181 (`Device.`) mappings.
//!
//! Wi-Fi in TR-181 is three tables: `Radio` (band, channel), `SSID` (name, enable; its
//! `LowerLayers` names the radio) and `AccessPoint` (security, passphrase, clients; its
//! `SSIDReference` names the SSID). A network here is an SSID, with what its radio and access
//! point say.

use super::*;

pub const ROOT: &str = "Device";
const SSIDS: &str = "Device.WiFi.SSID.*";
const ACCESS_POINTS: &str = "Device.WiFi.AccessPoint.*";

fn reference(path: &str) -> Option<String> {
    // References are object paths; firmware writes them with or without the final dot, and
    // some write a comma-separated list: the first entry counts.
    let first = text(path)?.split(',').next()?.trim().trim_end_matches('.').to_owned();
    (!first.is_empty()).then(|| format!("{first}."))
}

/// The access point serving an SSID.
fn access_point_of(ssid: &str) -> Result<Option<String>> {
    for ap in device::instances(ACCESS_POINTS)? {
        if reference(&format!("{ap}SSIDReference")).as_deref() == Some(ssid) {
            return Ok(Some(ap));
        }
    }
    Ok(None)
}

/// The Wi-Fi networks, refreshing what is older than `max_age`.
pub fn wifi(profile: &Profile, max_age: Duration) -> Result<Vec<WifiNetwork>> {
    let ssids = device::instances(SSIDS)?;
    if ssids.is_empty() {
        declare(SSIDS).refresh(max_age);
    }
    for ssid in &ssids {
        for name in ["SSID", "Enable", "LowerLayers"] {
            refresh_if_present(&format!("{ssid}{name}"), max_age);
        }
        if let Some(radio) = reference(&format!("{ssid}LowerLayers")) {
            for name in ["OperatingFrequencyBand", "Channel"] {
                refresh_if_present(&format!("{radio}{name}"), max_age);
            }
        }
    }
    for ap in device::instances(ACCESS_POINTS)? {
        for name in ["SSIDReference", "Enable", "AssociatedDeviceNumberOfEntries", "Security.ModeEnabled"] {
            refresh_if_present(&format!("{ap}{name}"), max_age);
        }
    }
    networks(profile)
}

/// The Wi-Fi networks as stored.
pub fn networks(profile: &Profile) -> Result<Vec<WifiNetwork>> {
    let mut networks = Vec::new();
    for ssid in device::instances(SSIDS)? {
        let radio = reference(&format!("{ssid}LowerLayers")).filter(|r| r.starts_with("Device.WiFi.Radio."));
        let ap = access_point_of(&ssid)?;
        let band = profile
            .band_parameter
            .and_then(|p| text(&format!("{ssid}{p}")))
            .and_then(|t| band_from_text(&t))
            .or_else(|| {
                radio
                    .as_ref()
                    .and_then(|r| text(&format!("{r}OperatingFrequencyBand")))
                    .and_then(|t| band_from_text(&t))
            })
            .or_else(|| {
                radio
                    .as_ref()
                    .and_then(|r| read(&format!("{r}Channel")))
                    .and_then(|v| v.as_u64())
                    .and_then(band_from_channel)
            });
        let channel = radio.as_ref().and_then(|r| read(&format!("{r}Channel"))).and_then(|v| v.as_u64());
        let ap_field = |name: &str| ap.as_ref().and_then(|ap| read(&format!("{ap}{name}")));
        // In TR-181 both the SSID and its access point have an Enable; a network is up when both are.
        let ssid_enabled = read(&format!("{ssid}Enable")).and_then(|v| v.as_bool()).unwrap_or(false);
        let ap_enabled = ap_field("Enable").and_then(|v| v.as_bool()).unwrap_or(true);
        networks.push(WifiNetwork {
            key: ssid.clone(),
            band,
            primary: false,
            ssid: text(&format!("{ssid}SSID")).unwrap_or_default(),
            enabled: ssid_enabled && ap_enabled,
            security: ap_field("Security.ModeEnabled").map(|v| v.to_text()),
            channel: channel.and_then(|c| u32::try_from(c).ok()),
            clients: ap_field("AssociatedDeviceNumberOfEntries")
                .and_then(|v| v.as_u64())
                .and_then(|c| u32::try_from(c).ok()),
        });
    }
    mark_primary(&mut networks, profile.primary_per_band.unwrap_or(1));
    Ok(networks)
}

/// Declares a Wi-Fi change; the passphrase goes to the SSID's access point.
pub fn configure_wifi(profile: &Profile, settings: &WifiSettings) -> Result<()> {
    check_wifi(settings)?;
    let networks = networks(profile)?;
    if networks.is_empty() {
        declare(SSIDS).refresh(Duration::ZERO);
        declare(ACCESS_POINTS).refresh(Duration::ZERO);
        return Ok(());
    }
    for network in targets(&networks, &settings.target)? {
        if let Some(ssid) = &settings.ssid {
            set(&format!("{}SSID", network.key), ssid.as_str())?;
        }
        if let Some(enabled) = settings.enabled {
            set(&format!("{}Enable", network.key), enabled)?;
        }
        if let Some(passphrase) = &settings.passphrase {
            let ap = access_point_of(&network.key)?
                .ok_or_else(|| Error::unsupported(format!("no access point serves {}", network.key)))?;
            set(&format!("{ap}Security.KeyPassphrase"), passphrase.as_str())?;
        }
    }
    Ok(())
}

/// The PPP interface carrying the internet: the one under the IPv4 default route's interface,
/// else the first whose lower layer is not a USB modem, else the first.
pub fn internet_connection() -> Result<Option<String>> {
    let ppp = device::instances("Device.PPP.Interface.*")?;
    for route in device::instances("Device.Routing.Router.*.IPv4Forwarding.*")? {
        let destination = text(&format!("{route}DestIPAddress")).unwrap_or_default();
        if !(destination.is_empty() || destination == "0.0.0.0") {
            continue;
        }
        // A disabled default route (a backup modem's, say) carries nothing.
        let enabled = read(&format!("{route}Enable")).and_then(|v| v.as_bool()).unwrap_or(true);
        let status = text(&format!("{route}Status")).unwrap_or_else(|| "Enabled".into());
        if !enabled || status != "Enabled" {
            continue;
        }
        if let Some(ip) = reference(&format!("{route}Interface"))
            && let Some(lower) = reference(&format!("{ip}LowerLayers"))
            && ppp.contains(&lower)
        {
            return Ok(Some(lower));
        }
    }
    let wired =
        ppp.iter().find(|p| !reference(&format!("{p}LowerLayers")).is_some_and(|l| l.starts_with("Device.USB.")));
    Ok(wired.or(ppp.first()).cloned())
}

/// Declares PPPoE credentials.
pub fn configure_pppoe(settings: &PppoeSettings) -> Result<()> {
    let connection = match &settings.connection {
        Some(c) => format!("{}.", c.trim_end_matches('.')),
        None => internet_connection()?.ok_or_else(|| Error::unsupported("the device has no PPP interface"))?,
    };
    configure_pppoe_at(&connection, settings)
}

/// The IP interface over the internet connection, for traffic figures.
fn wan_ip_interface() -> Result<Option<String>> {
    let Some(ppp) = internet_connection()? else { return Ok(None) };
    for ip in device::instances("Device.IP.Interface.*")? {
        if reference(&format!("{ip}LowerLayers")).as_deref() == Some(ppp.as_str()) {
            return Ok(Some(ip));
        }
    }
    Ok(None)
}

/// HealthReport figures.
pub fn health(profile: &Profile, max_age: Duration) -> Result<HealthReport> {
    let clients: Option<u32> = {
        let counts: Vec<u64> = device::get("Device.WiFi.AccessPoint.*.AssociatedDeviceNumberOfEntries")?
            .into_iter()
            .filter_map(|p| {
                declare(p.path.as_str()).refresh(max_age);
                p.value.and_then(|v| v.as_u64())
            })
            .collect();
        (!counts.is_empty()).then(|| u32::try_from(counts.iter().sum::<u64>()).unwrap_or(u32::MAX))
    };
    let wan = wan_ip_interface()?.map(|ip| (format!("{ip}Stats.BytesSent"), format!("{ip}Stats.BytesReceived")));
    let optical = Profile {
        optical_rx_dbm: profile.optical_rx_dbm.or_else(|| {
            exists("Device.Optical.Interface.1.OpticalSignalLevel")
                .then_some(Metric { path: "Device.Optical.Interface.1.OpticalSignalLevel", convert: thousandths })
        }),
        optical_tx_dbm: profile.optical_tx_dbm.or_else(|| {
            exists("Device.Optical.Interface.1.TransmitOpticalLevel")
                .then_some(Metric { path: "Device.Optical.Interface.1.TransmitOpticalLevel", convert: thousandths })
        }),
        ..*profile
    };
    let cellular = exists("Device.Cellular.Interface.1.RSRP")
        .then_some(Metric { path: "Device.Cellular.Interface.1.RSRP", convert: number });
    Ok(super::health(
        HealthPlaces {
            uptime: "Device.DeviceInfo.UpTime",
            cpu: "Device.DeviceInfo.ProcessStatus.CPUUsage",
            memory_total: "Device.DeviceInfo.MemoryStatus.Total",
            memory_free: "Device.DeviceInfo.MemoryStatus.Free",
        },
        &optical,
        wan,
        clients,
        cellular,
        max_age,
    ))
}

/// TR-181 optical levels are in thousandths of a dBm. Exactly 0 is what firmware leaves in an
/// unfilled level (seen on the TP-Link XX230v), not a reading of 0 dBm.
fn thousandths(value: &Value) -> Option<f64> {
    value.as_f64().filter(|v| *v != 0.0).map(|v| v / 1000.0)
}

/// Where TR-181 keeps each diagnostic.
pub fn diagnostic_object(kind: DiagnosticKind) -> &'static str {
    match kind {
        DiagnosticKind::Ping => "Device.IP.Diagnostics.IPPing.",
        DiagnosticKind::TraceRoute => "Device.IP.Diagnostics.TraceRoute.",
        DiagnosticKind::Download => "Device.IP.Diagnostics.DownloadDiagnostics.",
        DiagnosticKind::Upload => "Device.IP.Diagnostics.UploadDiagnostics.",
        DiagnosticKind::UdpEcho => "Device.IP.Diagnostics.UDPEchoDiagnostics.",
    }
}

/// Declares a diagnostic.
pub fn start_diagnostic(request: &Diagnostic) -> Result<()> {
    let kind = match request {
        Diagnostic::Download(_) => DiagnosticKind::Download,
        Diagnostic::Upload(_) => DiagnosticKind::Upload,
        Diagnostic::UdpEcho(_) => DiagnosticKind::UdpEcho,
        Diagnostic::Ping(_) => DiagnosticKind::Ping,
        Diagnostic::TraceRoute(_) => DiagnosticKind::TraceRoute,
    };
    super::start_diagnostic(diagnostic_object(kind), request)
}

/// The last diagnostic of a kind.
pub fn diagnostic_result(kind: DiagnosticKind, max_age: Duration) -> Result<Option<DiagnosticReport>> {
    super::diagnostic_result(diagnostic_object(kind), kind, max_age, ("RouteHops", "Host", "HostAddress", "RTTimes"))
}

/// The running firmware version.
pub fn firmware_version() -> Option<String> {
    text("Device.DeviceInfo.SoftwareVersion")
}

/// The cellular interface whose figures Roost reads: the first, as `health` reads its RSRP.
const CELLULAR: &str = "Device.Cellular.Interface.1.";

/// The cellular interface's figures: TR-181's `RSSI` (dBm), and a SINR where the firmware has
/// one. TR-181 defines none, so firmware names its own: `SINR`, else `X_<vendor>_SINR`, else
/// `SNR`.
pub fn cellular(max_age: Duration) -> Result<CellularReport> {
    if !exists(CELLULAR) {
        return Ok(CellularReport { cellular_rssi_dbm: None, cellular_sinr_db: None });
    }
    // The interface's own leaves, not those of its `Stats.` or other sub-objects.
    let names: Vec<String> = device::get(CELLULAR)?
        .into_iter()
        .filter_map(|p| p.path.strip_prefix(CELLULAR).filter(|name| !name.contains('.')).map(str::to_owned))
        .collect();
    let vendor_sinr = |name: &&String| name.starts_with("X_") && name.ends_with("_SINR");
    let sinr = names
        .iter()
        .find(|name| *name == "SINR")
        .or_else(|| names.iter().find(vendor_sinr))
        .or_else(|| names.iter().find(|name| *name == "SNR"))
        .map(|name| format!("{CELLULAR}{name}"));
    Ok(super::cellular(Some(&format!("{CELLULAR}RSSI")), sinr.as_deref(), max_age))
}
