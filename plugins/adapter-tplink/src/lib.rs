//! `adapter-tplink`: TP-Link routers and ONTs on TR-181 (`Device.` with `X_TP_…` extensions): the
//! Archer family and the XX230v GPON router (`0.6.0 3.0.0 v6066.0`). The XX230v reports
//! ProductClass `Device2`, so models are told apart by ModelName (`XX230v`). TP-Link firmware on
//! TR-098 is left to adapter-tr098.
//!
//! What differs from the standard TR-181 mapping, as the XX230v reports it:
//! - **Internet connection**: `PPP.Interface.1` runs over a USB modem (`LowerLayers`
//!   `Device.USB.Interface.1.`, IP interface `X_TP_ConnType` `PPP3G`), and the first IPv4 default
//!   route (`Routing.Router.1.IPv4Forwarding.1`, `Enable` false, `Status` `Disabled`) points at it;
//!   the real PPPoE session is `PPP.Interface.3` (over `Ethernet.VLANTermination.3`), behind the
//!   enabled default route `IPv4Forwarding.5` and the IP interface with `X_TP_ServiceType`
//!   `Internet,TR069`. Only enabled routes count here.
//! - **Which networks are up**: every `WiFi.SSID.{i}.Enable` reads `true`; the switch that matters
//!   is `WiFi.AccessPoint.{i}.Enable` (guest SSIDs are `false`, with BSSID `00:00:00:00:00:00`).
//!   A network is enabled when both are, and enabling or disabling writes both.
//! - **Primary networks**: `WiFi.AccessPoint.{i}.X_TP_APType` says `Primary`, `Guest`,
//!   `GuestNetwork`, `Backhaul` (EasyMesh, hidden) or `Public`; only `Primary` is primary.
//! - **Optics**: `Optical.Interface.1.OpticalSignalLevel` and `TransmitOpticalLevel` read `0`; the
//!   real figures are `Optical.Interface.1.X_TP_GPON_Config.RXPower` and `.TXPower`, in 0.1 µW.
//! - **WPA3**: a passphrase also goes to `Security.SAEPassphrase` when the access point's mode
//!   includes WPA3 (`ModesSupported` offers `WPA3-Personal`, `WPA2-WPA3-Personal`).
//! - Standard places that are right: band and channel on `WiFi.Radio.{i}` (`2.4GHz`, `5GHz`), CPU
//!   `DeviceInfo.ProcessStatus.CPUUsage`, memory `DeviceInfo.MemoryStatus` (KiB), the passphrase
//!   in `AccessPoint.{i}.Security.KeyPassphrase`, diagnostics under `IP.Diagnostics.` (which
//!   report `Completed`, not `Complete`; the kit accepts both). There is no UDP echo client.

use std::time::Duration;

use adapter_kit::{
    HealthPlaces, Metric, Profile, exists, mark_primary, read, refresh_if_present, set, targets, text, tr181,
};
use roost_plugin_sdk::prelude::*;
use roost_plugin_sdk::{
    CellularReport, Diagnostic, DiagnosticKind, DiagnosticReport, HealthReport, ManagementSettings, PppoeSettings,
    WifiNetwork,
};

pub struct TpLink;

/// ManufacturerOUIs of TP-Link (TP-LINK TECHNOLOGIES CO.,LTD.); `1C61B4` is the XX230v's.
const OUIS: &[&str] = &["1C61B4", "50C7BF", "14CC20", "F4F26D", "EC086B", "C46E1F", "98DAC4", "30B5C2"];

/// Model families, by ModelName or ProductClass prefix.
const FAMILIES: &[(&str, &str)] = &[("XX230V", "tplink-xx230v"), ("ARCHER", "tplink-archer")];

const ACCESS_POINTS: &str = "Device.WiFi.AccessPoint.*";
const OPTICAL_RX: &str = "Device.Optical.Interface.1.X_TP_GPON_Config.RXPower";
const OPTICAL_TX: &str = "Device.Optical.Interface.1.X_TP_GPON_Config.TXPower";

/// The XX230v reports `RXPower` `5624` and `TXPower` `14880` (xsd:int) in units of 0.1 µW
/// (0.0001 mW, as SFP diagnostics count): -2.50 dBm received and +1.73 dBm sent, a GPON ONT's
/// transmit range (+0.5 to +5 dBm) and the same short lab fibre as the Nokia export's -3.4 dBm.
/// Read as tenths or thousandths of a dBm they would be +562 or +5.6 dBm received, which no
/// GPON optic survives. Anlix's Flashman, where the export comes from, converts the same way.
pub const PROFILE: Profile = Profile {
    band_parameter: None,
    cpu_percent: None,
    optical_rx_dbm: Some(Metric { path: OPTICAL_RX, convert: tenth_microwatts_to_dbm }),
    optical_tx_dbm: Some(Metric { path: OPTICAL_TX, convert: tenth_microwatts_to_dbm }),
    primary_per_band: None,
};

/// dBm from a power in 0.1 µW; no light (0) has no dBm figure.
fn tenth_microwatts_to_dbm(value: &Value) -> Option<f64> {
    let tenth_microwatts = value.as_f64().filter(|v| v.is_finite() && *v > 0.0)?;
    Some(10.0 * (tenth_microwatts / 10_000.0).log10())
}

fn is_tplink(facts: &DeviceFacts) -> bool {
    let manufacturer = facts.manufacturer.trim().to_ascii_lowercase();
    OUIS.iter().any(|oui| facts.oui.eq_ignore_ascii_case(oui))
        || manufacturer.starts_with("tp-link")
        || manufacturer.starts_with("tplink")
}

/// An object reference as firmware writes it (with or without the final dot, maybe a list: the
/// first entry counts), as an object path.
fn reference(path: &str) -> Option<String> {
    let first = text(path)?.split(',').next()?.trim().trim_end_matches('.').to_owned();
    (!first.is_empty()).then(|| format!("{first}."))
}

fn over_usb(ppp: &str) -> bool {
    reference(&format!("{ppp}LowerLayers")).is_some_and(|l| l.starts_with("Device.USB."))
}

/// A route the device uses: not switched off, and not reported disabled or in error.
fn route_active(route: &str) -> bool {
    let enabled = read(&format!("{route}Enable")).and_then(|v| v.as_bool()) != Some(false);
    let status = text(&format!("{route}Status"));
    enabled && status.is_none_or(|s| s == "Enabled")
}

/// The PPP interface carrying the internet: the one under an active IPv4 default route, else the
/// one whose IP interface TP-Link marks `X_TP_ServiceType` `Internet`, else the first not over
/// USB, else the first.
pub fn internet_connection() -> Result<Option<String>> {
    let ppp = device::instances("Device.PPP.Interface.*")?;
    for route in device::instances("Device.Routing.Router.*.IPv4Forwarding.*")? {
        let destination = text(&format!("{route}DestIPAddress")).unwrap_or_default();
        if !(destination.is_empty() || destination == "0.0.0.0") || !route_active(&route) {
            continue;
        }
        if let Some(ip) = reference(&format!("{route}Interface"))
            && let Some(lower) = reference(&format!("{ip}LowerLayers"))
            && ppp.contains(&lower)
        {
            return Ok(Some(lower));
        }
    }
    for ip in device::instances("Device.IP.Interface.*")? {
        let serves_internet = text(&format!("{ip}X_TP_ServiceType"))
            .is_some_and(|services| services.split(',').any(|s| s.trim().eq_ignore_ascii_case("Internet")));
        if serves_internet
            && let Some(lower) = reference(&format!("{ip}LowerLayers"))
            && ppp.contains(&lower)
            && !over_usb(&lower)
        {
            return Ok(Some(lower));
        }
    }
    Ok(ppp.iter().find(|p| !over_usb(p)).or(ppp.first()).cloned())
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

/// The access point serving an SSID object.
fn access_point_of(ssid: &str) -> Result<Option<String>> {
    for ap in device::instances(ACCESS_POINTS)? {
        if reference(&format!("{ap}SSIDReference")).as_deref() == Some(ssid) {
            return Ok(Some(ap));
        }
    }
    Ok(None)
}

/// The Wi-Fi networks as stored, with TP-Link's enable switch and primary marking.
fn networks() -> Result<Vec<WifiNetwork>> {
    let mut networks = tr181::networks(&PROFILE)?;
    let mut types = Vec::with_capacity(networks.len());
    for network in &mut networks {
        let ap = access_point_of(&network.key)?;
        let field = |name: &str| ap.as_ref().and_then(|ap| read(&format!("{ap}{name}")));
        if field("Enable").and_then(|v| v.as_bool()) == Some(false) {
            network.enabled = false;
        }
        types.push(field("X_TP_APType").map(|v| v.to_text()));
    }
    if types.iter().any(Option::is_some) {
        for (network, ap_type) in networks.iter_mut().zip(&types) {
            network.primary = ap_type.as_deref() == Some("Primary");
        }
    } else {
        // Without TP-Link's marking, the standard rule, on the corrected enable states.
        networks.iter_mut().for_each(|n| n.primary = false);
        mark_primary(&mut networks, 1);
    }
    Ok(networks)
}

/// HealthReport figures: the kit's, with the WAN counters of the real internet connection and
/// the vendor's optics where the standard ones are not filled in.
fn health(max_age: Duration) -> Result<HealthReport> {
    let clients: Option<u32> = {
        let counts: Vec<u64> = device::get(&format!("{ACCESS_POINTS}.AssociatedDeviceNumberOfEntries"))?
            .into_iter()
            .filter_map(|p| {
                declare(p.path.as_str()).refresh(max_age);
                p.value.and_then(|v| v.as_u64())
            })
            .collect();
        (!counts.is_empty()).then(|| u32::try_from(counts.iter().sum::<u64>()).unwrap_or(u32::MAX))
    };
    let wan = wan_ip_interface()?.map(|ip| (format!("{ip}Stats.BytesSent"), format!("{ip}Stats.BytesReceived")));
    // TP-Link routers without an optic (Archers) may still fill in the standard levels.
    let standard = |path: &'static str| exists(path).then_some(Metric { path, convert: thousandths_of_dbm });
    let profile = Profile {
        optical_rx_dbm: if exists(OPTICAL_RX) {
            PROFILE.optical_rx_dbm
        } else {
            standard("Device.Optical.Interface.1.OpticalSignalLevel")
        },
        optical_tx_dbm: if exists(OPTICAL_TX) {
            PROFILE.optical_tx_dbm
        } else {
            standard("Device.Optical.Interface.1.TransmitOpticalLevel")
        },
        ..PROFILE
    };
    let cellular = exists("Device.Cellular.Interface.1.RSRP")
        .then_some(Metric { path: "Device.Cellular.Interface.1.RSRP", convert: adapter_kit::number });
    Ok(adapter_kit::health(
        HealthPlaces {
            uptime: "Device.DeviceInfo.UpTime",
            cpu: "Device.DeviceInfo.ProcessStatus.CPUUsage",
            memory_total: "Device.DeviceInfo.MemoryStatus.Total",
            memory_free: "Device.DeviceInfo.MemoryStatus.Free",
        },
        &profile,
        wan,
        clients,
        cellular,
        max_age,
    ))
}

/// TR-181 optical levels are in thousandths of a dBm.
fn thousandths_of_dbm(value: &Value) -> Option<f64> {
    value.as_f64().map(|v| v / 1000.0)
}

impl Adapter for TpLink {
    fn identify(facts: &DeviceFacts) -> Option<Identification> {
        if facts.root != tr181::ROOT || !is_tplink(facts) {
            return None;
        }
        // ProductClass is `Device2` on the XX230v: the model is in ModelName.
        let models = [facts.model_name.as_deref().unwrap_or(""), facts.product_class.as_str()];
        let family = FAMILIES
            .iter()
            .find(|(prefix, _)| models.iter().any(|m| m.trim().to_ascii_uppercase().starts_with(prefix)));
        Some(match family {
            Some((_, family)) => Identification { score: 80, family: (*family).into() },
            None => Identification { score: 50, family: "tplink".into() },
        })
    }

    fn wifi(max_age: Duration) -> Result<Vec<WifiNetwork>> {
        tr181::wifi(&PROFILE, max_age)?;
        for ap in device::instances(ACCESS_POINTS)? {
            for name in ["Enable", "X_TP_APType"] {
                refresh_if_present(&format!("{ap}{name}"), max_age);
            }
        }
        networks()
    }

    fn configure_wifi(settings: &WifiSettings) -> Result<()> {
        adapter_kit::check_wifi(settings)?;
        let networks = networks()?;
        if networks.is_empty() {
            return tr181::configure_wifi(&PROFILE, settings);
        }
        for network in targets(&networks, &settings.target)? {
            // The kit writes the SSID and the passphrase of exactly this network; the enable
            // switches are TP-Link's two.
            let one =
                WifiSettings { target: WifiTarget::Network(network.key.clone()), enabled: None, ..settings.clone() };
            tr181::configure_wifi(&PROFILE, &one)?;
            let ap = access_point_of(&network.key)?;
            if let Some(enabled) = settings.enabled {
                set(&format!("{}Enable", network.key), enabled)?;
                if let Some(ap) = &ap {
                    set(&format!("{ap}Enable"), enabled)?;
                }
            }
            if let (Some(passphrase), Some(ap)) = (&settings.passphrase, &ap) {
                let wpa3 = text(&format!("{ap}Security.ModeEnabled")).is_some_and(|m| m.contains("WPA3"));
                let sae = format!("{ap}Security.SAEPassphrase");
                if wpa3 && exists(&sae) {
                    declare(sae).value(passphrase.as_str());
                }
            }
        }
        Ok(())
    }

    fn configure_pppoe(settings: &PppoeSettings) -> Result<()> {
        let connection = match &settings.connection {
            Some(c) => format!("{}.", c.trim_end_matches('.')),
            None => internet_connection()?.ok_or_else(|| Error::unsupported("the device has no PPP interface"))?,
        };
        adapter_kit::configure_pppoe_at(&connection, settings)
    }

    fn configure_management(settings: &ManagementSettings) -> Result<()> {
        adapter_kit::configure_management(tr181::ROOT, settings)
    }

    fn health(max_age: Duration) -> Result<HealthReport> {
        health(max_age)
    }

    fn start_diagnostic(request: &Diagnostic) -> Result<()> {
        tr181::start_diagnostic(request)
    }

    fn diagnostic_result(kind: DiagnosticKind, max_age: Duration) -> Result<Option<DiagnosticReport>> {
        tr181::diagnostic_result(kind, max_age)
    }

    fn firmware_version() -> Option<String> {
        tr181::firmware_version()
    }

    fn cellular(max_age: Duration) -> Result<CellularReport> {
        tr181::cellular(max_age)
    }
}

export_adapter!(TpLink);

#[cfg(test)]
mod tests {
    use super::*;
    use roost_plugin_sdk::pattern::Pattern;
    use roost_plugin_sdk::testing::{Declared, TestDevice};
    use roost_plugin_sdk::{DiagnosticResults, PingResults, PingTest, UdpEchoTest};

    fn tplink() -> TestDevice {
        let csv = roost_plugin_sdk::testing::exports::TPLINK_XX230V_TR181;
        match TestDevice::from_genieacs_csv(csv) {
            Ok(device) => device,
            Err(e) => panic!("the TP-Link export does not load: {e}"),
        }
    }

    fn other(csv: &str) -> TestDevice {
        match TestDevice::from_genieacs_csv(csv) {
            Ok(device) => device,
            Err(e) => panic!("an export does not load: {e}"),
        }
    }

    fn values(declarations: &[Declared]) -> Vec<(String, String)> {
        declarations.iter().filter_map(|d| d.value.as_ref().map(|v| (d.path.clone(), v.to_text()))).collect()
    }

    fn pairs(expected: &[(&str, &str)]) -> Vec<(String, String)> {
        expected.iter().map(|(p, v)| ((*p).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn identifies_the_xx230v_by_model_name_and_no_other_vendor() {
        let device = tplink();
        assert_eq!(device.facts.product_class, "Device2");
        let id = device.identify::<TpLink>().expect("the XX230v is a TP-Link");
        assert_eq!((id.score, id.family.as_str()), (80, "tplink-xx230v"));

        for csv in [
            roost_plugin_sdk::testing::exports::NOKIA_G1425GA_TR098,
            roost_plugin_sdk::testing::exports::HUAWEI_EG8145V5_TR098,
            roost_plugin_sdk::testing::exports::ZTE_ZXHN_H199A_TR098,
        ] {
            let device = other(csv);
            assert!(device.identify::<TpLink>().is_none(), "claimed {:?}", device.facts);
        }
        // Another vendor on TR-181 is not claimed either.
        let mut foreign = tplink();
        foreign.facts.manufacturer = "Huawei Technologies Co., Ltd".into();
        foreign.facts.oui = "00259E".into();
        assert!(foreign.identify::<TpLink>().is_none());
    }

    #[test]
    fn identifies_archers_and_other_tplinks() {
        let mut device = tplink();
        device.facts.model_name = Some("Archer AX10".into());
        assert_eq!(device.identify::<TpLink>().map(|i| (i.score, i.family)), Some((80, "tplink-archer".into())));
        device.facts.model_name = Some("EX220".into());
        device.facts.manufacturer = "TP-LINK".into();
        device.facts.oui = "000000".into();
        assert_eq!(device.identify::<TpLink>().map(|i| (i.score, i.family)), Some((50, "tplink".into())));
        device.facts.root = "InternetGatewayDevice".into();
        assert!(device.identify::<TpLink>().is_none());
    }

    #[test]
    fn the_internet_connection_is_the_pppoe_session_not_the_usb_modem() {
        let mut device = tplink();
        assert_eq!(device.text("Device.PPP.Interface.1.LowerLayers").as_deref(), Some("Device.USB.Interface.1."));
        let (found, _) = device.call(internet_connection);
        assert_eq!(found.expect("internet_connection").as_deref(), Some("Device.PPP.Interface.3."));

        // Without the default route, TP-Link's service marking still finds it.
        device.set("Device.Routing.Router.1.IPv4Forwarding.5.Enable", "false", "xsd:boolean");
        let (found, _) = device.call(internet_connection);
        assert_eq!(found.expect("internet_connection").as_deref(), Some("Device.PPP.Interface.3."));
    }

    #[test]
    fn wifi_reads_fourteen_networks_and_two_primaries() {
        let mut device = tplink();
        let (result, run) = device.call(|| TpLink::wifi(Duration::from_secs(3600)));
        let networks = result.expect("wifi");
        assert_eq!(networks.len(), 14);
        let primary: Vec<_> = networks
            .iter()
            .filter(|n| n.primary)
            .map(|n| (n.key.as_str(), n.ssid.as_str(), n.band, n.channel, n.clients))
            .collect();
        assert_eq!(
            primary,
            [
                ("Device.WiFi.SSID.1.", "TP-Link_2AC8", Some(Band::Band24), Some(10), Some(0)),
                ("Device.WiFi.SSID.3.", "TP-Link_2AC8_5G", Some(Band::Band5), Some(153), Some(1)),
            ]
        );
        assert!(networks.iter().filter(|n| n.primary).all(|n| n.enabled));
        assert_eq!(networks[0].security.as_deref(), Some("WPA2-Personal"));

        let by_key = |key: &str| networks.iter().find(|n| n.key == key).expect(key);
        // Guest networks: SSID.Enable true, AccessPoint.Enable false.
        let guest = by_key("Device.WiFi.SSID.6.");
        assert_eq!((guest.ssid.as_str(), guest.enabled, guest.primary), ("TP-Link_2AC8_Guest", false, false));
        // EasyMesh backhaul: up, on 5 GHz, but not primary.
        let backhaul = by_key("Device.WiFi.SSID.10.");
        assert_eq!((backhaul.enabled, backhaul.primary, backhaul.band), (true, false, Some(Band::Band5)));

        assert!(run.declarations.iter().any(|d| d.path == "Device.WiFi.AccessPoint.3.X_TP_APType"));
        assert!(run.declarations.iter().any(|d| d.path == "Device.WiFi.Radio.2.OperatingFrequencyBand"));
    }

    #[test]
    fn configure_wifi_on_5ghz_writes_ssid_3_and_its_access_point() {
        let mut device = tplink();
        let settings = WifiSettings {
            target: WifiTarget::Band(Band::Band5),
            ssid: Some("Roost-5".into()),
            passphrase: Some("correct horse battery".into()),
            enabled: Some(true),
        };
        let (result, run) = device.call(|| TpLink::configure_wifi(&settings));
        result.expect("configure_wifi");
        assert_eq!(
            values(&run.declarations),
            pairs(&[
                ("Device.WiFi.SSID.3.SSID", "Roost-5"),
                ("Device.WiFi.AccessPoint.3.Security.KeyPassphrase", "correct horse battery"),
                ("Device.WiFi.SSID.3.Enable", "true"),
                ("Device.WiFi.AccessPoint.3.Enable", "true"),
            ])
        );
    }

    #[test]
    fn disabling_24ghz_switches_the_access_point_off_and_wpa3_gets_the_sae_passphrase() {
        let mut device = tplink();
        device.set("Device.WiFi.AccessPoint.1.Security.ModeEnabled", "WPA2-WPA3-Personal", "xsd:string");
        let settings = WifiSettings {
            target: WifiTarget::Band(Band::Band24),
            ssid: None,
            passphrase: Some("correct horse battery".into()),
            enabled: Some(false),
        };
        let (result, run) = device.call(|| TpLink::configure_wifi(&settings));
        result.expect("configure_wifi");
        assert_eq!(
            values(&run.declarations),
            pairs(&[
                ("Device.WiFi.AccessPoint.1.Security.KeyPassphrase", "correct horse battery"),
                ("Device.WiFi.SSID.1.Enable", "false"),
                ("Device.WiFi.AccessPoint.1.Enable", "false"),
                ("Device.WiFi.AccessPoint.1.Security.SAEPassphrase", "correct horse battery"),
            ])
        );
    }

    #[test]
    fn configure_pppoe_writes_ppp_interface_3() {
        let mut device = tplink();
        let settings = PppoeSettings { username: "subscriber".into(), password: "s3cret".into(), connection: None };
        let (result, run) = device.call(|| TpLink::configure_pppoe(&settings));
        result.expect("configure_pppoe");
        assert_eq!(
            values(&run.declarations),
            pairs(&[("Device.PPP.Interface.3.Username", "subscriber"), ("Device.PPP.Interface.3.Password", "s3cret")])
        );
    }

    #[test]
    fn configure_management_declares_the_four_values() {
        let mut device = tplink();
        let settings = ManagementSettings {
            periodic_inform_interval: Some(900),
            connection_request_username: Some("acs".into()),
            connection_request_password: Some("cr-pass".into()),
        };
        let (result, run) = device.call(|| TpLink::configure_management(&settings));
        result.expect("configure_management");
        assert_eq!(
            values(&run.declarations),
            pairs(&[
                ("Device.ManagementServer.PeriodicInformEnable", "true"),
                ("Device.ManagementServer.PeriodicInformInterval", "900"),
                ("Device.ManagementServer.ConnectionRequestUsername", "acs"),
                ("Device.ManagementServer.ConnectionRequestPassword", "cr-pass"),
            ])
        );
    }

    #[test]
    fn health_reports_the_exported_figures_and_refreshes_only_real_paths() {
        let mut device = tplink();
        let (result, run) = device.call(|| TpLink::health(Duration::from_secs(300)));
        let health = result.expect("health");
        assert_eq!(health.uptime_seconds, Some(15_687));
        assert_eq!(health.cpu_percent, Some(0));
        assert_eq!(health.memory_total_kib, Some(212_544));
        assert_eq!(health.memory_free_kib, Some(73_940));
        // IP.Interface.6 (ppp0), over PPP.Interface.3, not the USB modem's IP.Interface.2.
        assert_eq!(health.wan_bytes_sent, Some(6_460_103));
        assert_eq!(health.wan_bytes_received, Some(3_570_326));
        assert_eq!(health.wifi_clients, Some(1));
        let rx = health.optical_rx_dbm.expect("RX power");
        let tx = health.optical_tx_dbm.expect("TX power");
        assert!((rx - -2.4996).abs() < 0.001, "RX {rx} dBm");
        assert!((tx - 1.7260).abs() < 0.001, "TX {tx} dBm");
        assert_eq!(health.cellular_rsrp_dbm, None);

        assert!(!run.declarations.is_empty());
        for d in &run.declarations {
            assert_eq!(d.max_age, Some(Duration::from_secs(300)), "{}", d.path);
            let pattern = Pattern::parse(&d.path).expect("a valid path");
            assert!(!device.tree.expand(&pattern).is_empty(), "refreshes {}, which the device lacks", d.path);
        }
        let paths: Vec<&str> = run.declarations.iter().map(|d| d.path.as_str()).collect();
        assert!(paths.contains(&OPTICAL_RX) && paths.contains(&"Device.IP.Interface.6.Stats.BytesSent"));
        assert!(!paths.iter().any(|p| p.starts_with("Device.IP.Interface.2.")));
    }

    #[test]
    fn cellular_figures_come_from_the_cellular_interface_where_there_is_one() {
        // The exported XX230v has a USB modem port but no modem: no cellular interface, no figures,
        // nothing refreshed.
        let mut device = tplink();
        let (report, run) = device.call(|| TpLink::cellular(Duration::from_secs(300)));
        assert_eq!(report.expect("cellular"), CellularReport { cellular_rssi_dbm: None, cellular_sinr_db: None });
        assert!(run.declarations.is_empty(), "{:?}", run.declarations);

        // With an LTE modem: TR-181's RSSI, and the SINR under the firmware's own name.
        let interface = "Device.Cellular.Interface.1.";
        device.tree.insert(interface, roost_plugin_sdk::tree::Node { updated_ms: 1, ..Default::default() });
        device.set(&format!("{interface}RSSI"), "-71", "xsd:int");
        device.set(&format!("{interface}RSRP"), "-97", "xsd:int");
        device.set(&format!("{interface}X_TP_SINR"), "13.5", "xsd:string");
        // A plain SNR is the last resort, behind a SINR of any name; a sub-object's is not the
        // interface's.
        device.set(&format!("{interface}SNR"), "9", "xsd:int");
        device.set(&format!("{interface}Stats.SINR"), "1", "xsd:int");
        let (report, run) = device.call(|| TpLink::cellular(Duration::from_secs(60)));
        assert_eq!(
            report.expect("cellular"),
            CellularReport { cellular_rssi_dbm: Some(-71.0), cellular_sinr_db: Some(13.5) }
        );
        let refreshed: Vec<&str> = run.declarations.iter().map(|d| d.path.as_str()).collect();
        assert_eq!(refreshed, [format!("{interface}RSSI"), format!("{interface}X_TP_SINR")]);
        // RSRP stays with `health`.
        let (health, _) = device.call(|| TpLink::health(Duration::from_secs(60)));
        assert_eq!(health.expect("health").cellular_rsrp_dbm, Some(-97.0));
    }

    #[test]
    fn no_light_is_no_optical_figure() {
        let mut device = tplink();
        device.set(OPTICAL_RX, "0", "xsd:int");
        let (result, _) = device.call(|| TpLink::health(Duration::from_secs(300)));
        assert_eq!(result.expect("health").optical_rx_dbm, None);
    }

    #[test]
    fn ping_is_requested_at_ip_diagnostics_ipping_and_completed_results_are_read() {
        let mut device = tplink();
        let request =
            Diagnostic::Ping(PingTest { host: "192.0.2.1".into(), count: None, timeout_ms: None, size: None });
        let (result, run) = device.call(|| TpLink::start_diagnostic(&request));
        result.expect("start_diagnostic");
        assert_eq!(
            values(&run.declarations),
            pairs(&[
                ("Device.IP.Diagnostics.IPPing.Host", "192.0.2.1"),
                ("Device.IP.Diagnostics.IPPing.DiagnosticsState", "Requested"),
            ])
        );

        // The export holds a finished ping to 8.8.8.8, reported `Completed`.
        let (report, _) = device.call(|| TpLink::diagnostic_result(DiagnosticKind::Ping, Duration::from_secs(60)));
        let report = report.expect("diagnostic_result").expect("a ping report");
        assert_eq!(report.state, "Completed");
        assert_eq!(
            report.results,
            Some(DiagnosticResults::Ping(PingResults {
                success_count: Some(3),
                failure_count: Some(0),
                average_ms: Some(3),
                minimum_ms: Some(3),
                maximum_ms: Some(3),
            }))
        );
    }

    #[test]
    fn there_is_no_udp_echo_client() {
        let mut device = tplink();
        let request = Diagnostic::UdpEcho(UdpEchoTest { host: "192.0.2.7".into(), port: 7, count: None });
        let (result, run) = device.call(|| TpLink::start_diagnostic(&request));
        assert_eq!(result.map_err(|e| e.kind), Err(ErrorKind::Unsupported));
        assert!(run.declarations.is_empty());
    }

    struct RenameWifi;

    impl Provision for RenameWifi {
        fn run(args: &Args) -> Result<()> {
            intents::configure_wifi(&WifiSettings {
                target: WifiTarget::Band(Band::Band24),
                ssid: Some(args.require("ssid")?.to_owned()),
                passphrase: None,
                enabled: None,
            })
        }
    }

    #[test]
    fn a_provision_converges_to_the_new_ssid() {
        let mut device = tplink();
        device.with_adapter::<TpLink>();
        let converged = device.converge::<RenameWifi>(&[("ssid", "Roost")]).expect("converges");
        assert_eq!(
            (converged.rounds, converged.changes.as_slice()),
            (2, ["set Device.WiFi.SSID.1.SSID = Roost".to_owned()].as_slice())
        );
        assert_eq!(device.text("Device.WiFi.SSID.1.SSID").as_deref(), Some("Roost"));
        assert_eq!(device.text("Device.WiFi.SSID.3.SSID").as_deref(), Some("TP-Link_2AC8_5G"));
    }
}
