//! `adapter-nokia`: Nokia (Alcatel-Lucent, Manufacturer `ALCL`) GPON ONTs on TR-098, such as the
//! G-240W-A and the G-1425G-A (`InternetGatewayDevice.`, declaring `urn:broadband-forum-org:tr-098-1-8-0`
//! with `X_ALU-COM_…` and `X_ALU_COM_…` extensions).
//!
//! Mostly the standard TR-098 mapping; what differs, as the G-1425G-A (3FE49568IJIJ23) reports it:
//! - **Band**: there is no `OperatingFrequencyBand`; each `WLANConfiguration` names its radio's
//!   band in `SupportedFrequencyBands` (`2.4GHz` for instances 1–4, `ra0`–`ra3`; `5GHz` for 5–8,
//!   `rai0`–`rai3`).
//! - **Guest networks** are flagged by `WLANConfiguration.{i}.X_ALU_COM_IsGuestSSID`; they are never
//!   primary.
//! - **Optics** live outside `WANDevice`: `InternetGatewayDevice.X_ALU_OntOpticalParam.RXPower` and
//!   `.TXPower`, strings already in dBm (`"-3.409399"`, `"2.360332"`).
//! - **UDP echo**: unlike plain TR-098 the device has a TR-143 client at
//!   `InternetGatewayDevice.UDPEchoDiagnostics.` (`Host`, `Port`, `NumberOfRepetitions`, …).
//! - Standard places that are right: CPU `DeviceInfo.ProcessStatus.CPUUsage`, memory
//!   `DeviceInfo.MemoryStatus.Total`/`Free` (KiB), the internet connection named by
//!   `Layer3Forwarding.DefaultConnectionService` (`…WANConnectionDevice.1.WANPPPConnection.1`),
//!   the passphrase in `PreSharedKey.1.KeyPassphrase` (and the `KeyPassphrase` shortcut), and the
//!   CWMP client in `ManagementServer.` (`X_ALU-COM_SaaSManagementServer.` is a second client, for
//!   Nokia's cloud, and is left alone).

use std::time::Duration;

use adapter_kit::{Metric, Profile, mark_primary, read, refresh_if_present, targets, tr098};
use roost_plugin_sdk::prelude::*;
use roost_plugin_sdk::{
    Diagnostic, DiagnosticKind, DiagnosticReport, HealthReport, ManagementSettings, PppoeSettings, WifiNetwork,
};

pub struct Nokia;

/// ManufacturerOUIs of Nokia's ONTs: `9075BC` is the G-1425G-A's.
const OUIS: &[&str] = &["9075BC"];

/// Model families (ProductClass or ModelName prefixes) this adapter knows by their exports.
const FAMILIES: &[(&str, &str)] = &[("G-240W-", "nokia-g-240w"), ("G-1425G-", "nokia-g-1425g")];

const GUEST_FLAG: &str = "X_ALU_COM_IsGuestSSID";
const UDP_ECHO: &str = "InternetGatewayDevice.UDPEchoDiagnostics.";

/// The G-1425G-A reports `RXPower` `"-3.409399"` and `TXPower` `"2.360332"` as xsd:string, in dBm:
/// the same object's thresholds (`RXPowerLower` `"-27.958799"`, `RXPowerUpper` `"-7.000571"`,
/// `LowerTransmitPowerThreshold` `"-0.499761"`, `UpperTransmitPowerThreshold` `"6.000031"`) are the
/// GPON class B+ window in dBm. (The lab ONT's -3.4 dBm is above its upper threshold: a short fibre.)
pub const PROFILE: Profile = Profile {
    band_parameter: Some("SupportedFrequencyBands"),
    cpu_percent: None,
    optical_rx_dbm: Some(Metric { path: "InternetGatewayDevice.X_ALU_OntOpticalParam.RXPower", convert: dbm }),
    optical_tx_dbm: Some(Metric { path: "InternetGatewayDevice.X_ALU_OntOpticalParam.TXPower", convert: dbm }),
    primary_per_band: None,
};

/// A dBm reading; text such as `-inf` (an absent optic) parses as a float but is no figure.
fn dbm(value: &Value) -> Option<f64> {
    value.as_f64().filter(|v| v.is_finite())
}

fn is_nokia(facts: &DeviceFacts) -> bool {
    let manufacturer = facts.manufacturer.trim().to_ascii_lowercase();
    OUIS.iter().any(|oui| facts.oui.eq_ignore_ascii_case(oui))
        || manufacturer == "alcl"
        || manufacturer.starts_with("nokia")
        || manufacturer.starts_with("alcatel")
}

/// The Wi-Fi networks as stored, guests never primary.
fn networks() -> Result<Vec<WifiNetwork>> {
    let mut networks = tr098::networks(&PROFILE)?;
    let guest: Vec<bool> = networks
        .iter()
        .map(|n| read(&format!("{}{GUEST_FLAG}", n.key)).and_then(|v| v.as_bool()).unwrap_or(false))
        .collect();
    if guest.contains(&true) {
        // The kit marked primaries among all networks; mark them again among the non-guests only.
        let mut hosts: Vec<WifiNetwork> = networks
            .iter()
            .zip(&guest)
            .filter(|(_, is_guest)| !**is_guest)
            .map(|(n, _)| WifiNetwork { primary: false, ..n.clone() })
            .collect();
        mark_primary(&mut hosts, 1);
        for network in &mut networks {
            network.primary = hosts.iter().any(|h| h.primary && h.key == network.key);
        }
    }
    Ok(networks)
}

impl Adapter for Nokia {
    fn identify(facts: &DeviceFacts) -> Option<Identification> {
        // Nokia's TR-181 devices (Beacons, FastMile) are another data model: adapter-tr181's.
        if facts.root != tr098::ROOT || !is_nokia(facts) {
            return None;
        }
        let models = [facts.product_class.as_str(), facts.model_name.as_deref().unwrap_or("")];
        let family = FAMILIES
            .iter()
            .find(|(prefix, _)| models.iter().any(|m| m.trim().to_ascii_uppercase().starts_with(prefix)));
        Some(match family {
            Some((_, family)) => Identification { score: 80, family: (*family).into() },
            None => Identification { score: 50, family: "nokia".into() },
        })
    }

    fn wifi(max_age: Duration) -> Result<Vec<WifiNetwork>> {
        tr098::wifi(&PROFILE, max_age)?;
        for network in tr098::networks(&PROFILE)? {
            refresh_if_present(&format!("{}{GUEST_FLAG}", network.key), max_age);
        }
        networks()
    }

    fn configure_wifi(settings: &WifiSettings) -> Result<()> {
        adapter_kit::check_wifi(settings)?;
        let networks = networks()?;
        if networks.is_empty() {
            return tr098::configure_wifi(&PROFILE, settings);
        }
        // Target by key, so the kit writes exactly the networks chosen with guests left out.
        for network in targets(&networks, &settings.target)? {
            let one = WifiSettings { target: WifiTarget::Network(network.key.clone()), ..settings.clone() };
            tr098::configure_wifi(&PROFILE, &one)?;
        }
        Ok(())
    }

    fn configure_pppoe(settings: &PppoeSettings) -> Result<()> {
        tr098::configure_pppoe(settings)
    }

    fn configure_management(settings: &ManagementSettings) -> Result<()> {
        adapter_kit::configure_management(tr098::ROOT, settings)
    }

    fn health(max_age: Duration) -> Result<HealthReport> {
        tr098::health(&PROFILE, max_age)
    }

    fn start_diagnostic(request: &Diagnostic) -> Result<()> {
        match request {
            Diagnostic::UdpEcho(_) => adapter_kit::start_diagnostic(UDP_ECHO, request),
            _ => tr098::start_diagnostic(request),
        }
    }

    fn diagnostic_result(kind: DiagnosticKind, max_age: Duration) -> Result<Option<DiagnosticReport>> {
        match kind {
            DiagnosticKind::UdpEcho => adapter_kit::diagnostic_result(UDP_ECHO, kind, max_age, ("", "", "", "")),
            _ => tr098::diagnostic_result(kind, max_age),
        }
    }

    fn firmware_version() -> Option<String> {
        tr098::firmware_version()
    }
}

export_adapter!(Nokia);

#[cfg(test)]
mod tests {
    use super::*;
    use roost_plugin_sdk::pattern::Pattern;
    use roost_plugin_sdk::testing::{Declared, TestDevice};
    use roost_plugin_sdk::{PingTest, UdpEchoTest};

    const WLAN: &str = "InternetGatewayDevice.LANDevice.1.WLANConfiguration.";
    const PPP: &str = "InternetGatewayDevice.WANDevice.1.WANConnectionDevice.1.WANPPPConnection.1.";

    fn nokia() -> TestDevice {
        let csv = roost_plugin_sdk::testing::exports::NOKIA_G1425GA_TR098;
        match TestDevice::from_genieacs_csv(csv) {
            Ok(device) => device,
            Err(e) => panic!("the Nokia export does not load: {e}"),
        }
    }

    fn other(csv: &str) -> TestDevice {
        match TestDevice::from_genieacs_csv(csv) {
            Ok(device) => device,
            Err(e) => panic!("an export does not load: {e}"),
        }
    }

    /// The values declared, as (path, text) pairs in order.
    fn values(declarations: &[Declared]) -> Vec<(String, String)> {
        declarations.iter().filter_map(|d| d.value.as_ref().map(|v| (d.path.clone(), v.to_text()))).collect()
    }

    fn pairs(expected: &[(&str, &str)]) -> Vec<(String, String)> {
        expected.iter().map(|(p, v)| ((*p).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn identifies_the_g_1425g_a_and_no_other_vendor() {
        let device = nokia();
        assert_eq!(device.facts.manufacturer, "ALCL");
        let id = device.identify::<Nokia>().expect("the G-1425G-A is a Nokia");
        assert_eq!((id.score, id.family.as_str()), (80, "nokia-g-1425g"));

        for csv in [
            roost_plugin_sdk::testing::exports::HUAWEI_EG8145V5_TR098,
            roost_plugin_sdk::testing::exports::ZTE_ZXHN_H199A_TR098,
            roost_plugin_sdk::testing::exports::HUAWEI_BM632W_TR098,
            roost_plugin_sdk::testing::exports::TPLINK_XX230V_TR181,
        ] {
            let device = other(csv);
            assert!(device.identify::<Nokia>().is_none(), "claimed {:?}", device.facts);
        }
    }

    #[test]
    fn identifies_other_nokia_models_as_the_vendor_and_tr181_nokias_not_at_all() {
        let mut device = nokia();
        device.facts.product_class = "G-240W-A".into();
        device.facts.model_name = Some("G-240W-A".into());
        assert_eq!(device.identify::<Nokia>().map(|i| (i.score, i.family)), Some((80, "nokia-g-240w".into())));

        device.facts.product_class = "I-240W-Q".into();
        device.facts.model_name = None;
        assert_eq!(device.identify::<Nokia>().map(|i| (i.score, i.family)), Some((50, "nokia".into())));

        // Known by its OUI alone, whatever the manufacturer string says.
        device.facts.manufacturer = "Nokia Solutions and Networks".into();
        assert_eq!(device.identify::<Nokia>().map(|i| i.score), Some(50));
        device.facts.manufacturer = "Somebody".into();
        device.facts.oui = "00259E".into();
        assert!(device.identify::<Nokia>().is_none());

        let mut tr181 = nokia();
        tr181.facts.root = "Device".into();
        assert!(tr181.identify::<Nokia>().is_none());
    }

    #[test]
    fn wifi_reads_the_eight_networks_with_their_bands() {
        let mut device = nokia();
        let (result, run) = device.call(|| Nokia::wifi(Duration::from_secs(3600)));
        let networks = result.expect("wifi");
        assert_eq!(networks.len(), 8);
        for (i, n) in networks.iter().enumerate() {
            let band = if i < 4 { Band::Band24 } else { Band::Band5 };
            assert_eq!(n.key, format!("{WLAN}{}.", i + 1));
            assert_eq!(n.band, Some(band), "{}", n.key);
        }
        let primary: Vec<_> = networks
            .iter()
            .filter(|n| n.primary)
            .map(|n| (n.key.as_str(), n.ssid.as_str(), n.band, n.enabled))
            .collect();
        assert_eq!(
            primary,
            [
                (
                    "InternetGatewayDevice.LANDevice.1.WLANConfiguration.1.",
                    "Anlix-Nokia-1425GA",
                    Some(Band::Band24),
                    true
                ),
                (
                    "InternetGatewayDevice.LANDevice.1.WLANConfiguration.5.",
                    "Anlix-Nokia-1425GA-5G",
                    Some(Band::Band5),
                    true
                ),
            ]
        );
        assert_eq!(networks[0].channel, Some(1));
        assert_eq!(networks[0].clients, Some(1));
        assert_eq!(networks[0].security.as_deref(), Some("WPAand11i"));
        assert_eq!(networks[4].channel, Some(161));
        assert_eq!((networks[1].ssid.as_str(), networks[1].enabled), ("ALHN-5D6F-2", false));

        // The band comes from the vendor's parameter, and it is kept fresh.
        let band_refresh = format!("{WLAN}1.SupportedFrequencyBands");
        assert!(
            run.declarations.iter().any(|d| d.path == band_refresh && d.max_age == Some(Duration::from_secs(3600)))
        );
        assert!(run.declarations.iter().any(|d| d.path == format!("{WLAN}8.{GUEST_FLAG}")));
    }

    #[test]
    fn the_band_survives_a_channel_the_kit_cannot_place() {
        let mut device = nokia();
        // Channel 0 while auto-channel scans; the Standard says nothing about 802.11ax.
        device.set(&format!("{WLAN}5.Channel"), "0", "xsd:unsignedInt");
        device.set(&format!("{WLAN}5.Standard"), "ax", "xsd:string");
        let (result, _) = device.call(|| Nokia::wifi(Duration::from_secs(60)));
        assert_eq!(result.expect("wifi")[4].band, Some(Band::Band5));
    }

    #[test]
    fn guest_networks_are_never_primary() {
        let mut device = nokia();
        device.set(&format!("{WLAN}1.{GUEST_FLAG}"), "true", "xsd:boolean");
        device.set(&format!("{WLAN}3.Enable"), "true", "xsd:boolean");
        let (result, _) = device.call(|| Nokia::wifi(Duration::from_secs(60)));
        let primary: Vec<String> = result.expect("wifi").into_iter().filter(|n| n.primary).map(|n| n.key).collect();
        assert_eq!(primary, [format!("{WLAN}3."), format!("{WLAN}5.")]);

        let settings = WifiSettings {
            target: WifiTarget::Band(Band::Band24),
            ssid: Some("Home".into()),
            passphrase: None,
            enabled: None,
        };
        let (result, run) = device.call(|| Nokia::configure_wifi(&settings));
        result.expect("configure_wifi");
        assert_eq!(values(&run.declarations), pairs(&[(&format!("{WLAN}3.SSID"), "Home")]));
    }

    #[test]
    fn configure_wifi_on_24ghz_writes_the_first_network() {
        let mut device = nokia();
        let settings = WifiSettings {
            target: WifiTarget::Band(Band::Band24),
            ssid: Some("Roost-24".into()),
            passphrase: Some("correct horse battery".into()),
            enabled: Some(true),
        };
        let (result, run) = device.call(|| Nokia::configure_wifi(&settings));
        result.expect("configure_wifi");
        assert_eq!(
            values(&run.declarations),
            pairs(&[
                ("InternetGatewayDevice.LANDevice.1.WLANConfiguration.1.SSID", "Roost-24"),
                ("InternetGatewayDevice.LANDevice.1.WLANConfiguration.1.Enable", "true"),
                (
                    "InternetGatewayDevice.LANDevice.1.WLANConfiguration.1.PreSharedKey.1.KeyPassphrase",
                    "correct horse battery"
                ),
                ("InternetGatewayDevice.LANDevice.1.WLANConfiguration.1.KeyPassphrase", "correct horse battery"),
            ])
        );
    }

    #[test]
    fn configure_wifi_on_5ghz_writes_the_fifth_network() {
        let mut device = nokia();
        let settings = WifiSettings {
            target: WifiTarget::Band(Band::Band5),
            ssid: Some("Roost-5".into()),
            passphrase: None,
            enabled: None,
        };
        let (result, run) = device.call(|| Nokia::configure_wifi(&settings));
        result.expect("configure_wifi");
        assert_eq!(
            values(&run.declarations),
            pairs(&[("InternetGatewayDevice.LANDevice.1.WLANConfiguration.5.SSID", "Roost-5")])
        );
    }

    #[test]
    fn configure_pppoe_uses_the_default_connection_service() {
        let mut device = nokia();
        assert_eq!(
            device.text("InternetGatewayDevice.Layer3Forwarding.DefaultConnectionService").as_deref(),
            Some("InternetGatewayDevice.WANDevice.1.WANConnectionDevice.1.WANPPPConnection.1")
        );
        let settings = PppoeSettings { username: "subscriber".into(), password: "s3cret".into(), connection: None };
        let (result, run) = device.call(|| Nokia::configure_pppoe(&settings));
        result.expect("configure_pppoe");
        assert_eq!(
            values(&run.declarations),
            pairs(&[(&format!("{PPP}Username"), "subscriber"), (&format!("{PPP}Password"), "s3cret")])
        );
    }

    #[test]
    fn configure_management_declares_the_four_values() {
        let mut device = nokia();
        let settings = ManagementSettings {
            periodic_inform_interval: Some(300),
            connection_request_username: Some("acs".into()),
            connection_request_password: Some("cr-pass".into()),
        };
        let (result, run) = device.call(|| Nokia::configure_management(&settings));
        result.expect("configure_management");
        assert_eq!(
            values(&run.declarations),
            pairs(&[
                ("InternetGatewayDevice.ManagementServer.PeriodicInformEnable", "true"),
                ("InternetGatewayDevice.ManagementServer.PeriodicInformInterval", "300"),
                ("InternetGatewayDevice.ManagementServer.ConnectionRequestUsername", "acs"),
                ("InternetGatewayDevice.ManagementServer.ConnectionRequestPassword", "cr-pass"),
            ])
        );
    }

    #[test]
    fn health_reports_the_exported_figures_and_refreshes_only_real_paths() {
        let mut device = nokia();
        let (result, run) = device.call(|| Nokia::health(Duration::from_secs(300)));
        let health = result.expect("health");
        assert_eq!(health.uptime_seconds, Some(3211));
        assert_eq!(health.cpu_percent, Some(3));
        assert_eq!(health.memory_total_kib, Some(426_116));
        assert_eq!(health.memory_free_kib, Some(292_952));
        assert_eq!(health.wan_bytes_sent, Some(9_753_906));
        assert_eq!(health.wan_bytes_received, Some(18_496_306));
        assert_eq!(health.wifi_clients, Some(1));
        assert_eq!(health.optical_rx_dbm, Some(-3.409399));
        assert_eq!(health.optical_tx_dbm, Some(2.360332));
        assert_eq!(health.cellular_rsrp_dbm, None);

        assert!(!run.declarations.is_empty());
        for d in &run.declarations {
            assert_eq!(d.max_age, Some(Duration::from_secs(300)), "{}", d.path);
            let pattern = Pattern::parse(&d.path).expect("a valid path");
            assert!(!device.tree.expand(&pattern).is_empty(), "refreshes {}, which the device lacks", d.path);
        }
        assert!(run.declarations.iter().any(|d| d.path == "InternetGatewayDevice.X_ALU_OntOpticalParam.RXPower"));
    }

    #[test]
    fn an_absent_optic_is_no_figure() {
        let mut device = nokia();
        device.set("InternetGatewayDevice.X_ALU_OntOpticalParam.RXPower", "-inf", "xsd:string");
        device.set("InternetGatewayDevice.X_ALU_OntOpticalParam.TXPower", "", "xsd:string");
        let (result, _) = device.call(|| Nokia::health(Duration::from_secs(300)));
        let health = result.expect("health");
        assert_eq!((health.optical_rx_dbm, health.optical_tx_dbm), (None, None));
    }

    #[test]
    fn ping_is_requested_at_ip_ping_diagnostics() {
        let mut device = nokia();
        let request =
            Diagnostic::Ping(PingTest { host: "192.0.2.1".into(), count: Some(4), timeout_ms: None, size: None });
        let (result, run) = device.call(|| Nokia::start_diagnostic(&request));
        result.expect("start_diagnostic");
        assert_eq!(
            values(&run.declarations),
            pairs(&[
                ("InternetGatewayDevice.IPPingDiagnostics.Host", "192.0.2.1"),
                ("InternetGatewayDevice.IPPingDiagnostics.NumberOfRepetitions", "4"),
                ("InternetGatewayDevice.IPPingDiagnostics.DiagnosticsState", "Requested"),
            ])
        );
    }

    #[test]
    fn udp_echo_uses_the_vendors_tr143_client() {
        let mut device = nokia();
        let request = Diagnostic::UdpEcho(UdpEchoTest { host: "192.0.2.7".into(), port: 7, count: None });
        let (result, run) = device.call(|| Nokia::start_diagnostic(&request));
        result.expect("start_diagnostic");
        assert_eq!(
            values(&run.declarations),
            pairs(&[
                ("InternetGatewayDevice.UDPEchoDiagnostics.Host", "192.0.2.7"),
                ("InternetGatewayDevice.UDPEchoDiagnostics.Port", "7"),
                ("InternetGatewayDevice.UDPEchoDiagnostics.DiagnosticsState", "Requested"),
            ])
        );
        let (report, _) = device.call(|| Nokia::diagnostic_result(DiagnosticKind::UdpEcho, Duration::from_secs(60)));
        assert_eq!(report.expect("diagnostic_result").map(|r| r.state), Some("None".to_owned()));
    }

    #[test]
    fn firmware_version_is_the_software_version() {
        let mut device = nokia();
        let (version, _) = device.call(|| Ok(Nokia::firmware_version()));
        assert_eq!(version.expect("firmware_version").as_deref(), Some("3FE49568IJIJ23"));
    }

    struct RenameWifi;

    impl Provision for RenameWifi {
        fn run(args: &Args) -> Result<()> {
            intents::configure_wifi(&WifiSettings {
                target: WifiTarget::All,
                ssid: Some(args.require("ssid")?.to_owned()),
                passphrase: None,
                enabled: None,
            })
        }
    }

    #[test]
    fn a_provision_converges_to_the_new_ssid() {
        let mut device = nokia();
        device.with_adapter::<Nokia>();
        let converged = device.converge::<RenameWifi>(&[("ssid", "Roost")]).expect("converges");
        assert_eq!(converged.rounds, 2);
        assert_eq!(device.text(&format!("{WLAN}1.SSID")).as_deref(), Some("Roost"));
        assert_eq!(device.text(&format!("{WLAN}5.SSID")).as_deref(), Some("Roost"));
        assert_eq!(device.text(&format!("{WLAN}2.SSID")).as_deref(), Some("ALHN-5D6F-2"));
    }
}
