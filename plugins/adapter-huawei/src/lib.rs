//! `adapter-huawei`: Huawei TR-098 (`InternetGatewayDevice.`) devices. The GPON ONT family
//! (HG8245H, HG8145V5, EG8145V5, EG8145X6, HS8546V and relatives: model names `HG8…`, `EG8…`,
//! `HS8…`, `HN8…`) scores 80; any other Huawei TR-098 device (such as the BM632w WiMAX gateway)
//! scores 50 and gets the same mapping, which falls back to the standard parameters wherever the
//! vendor ones are missing. Huawei devices with a TR-181 root are left to the generic adapter.
//!
//! What differs from the standard model (seen in the EG8145V5 export, V5R020C00S280):
//! - band: `…WLANConfiguration.{i}.X_HW_RFBand` (`2.4GHz`, `5GHz`); 2.4 GHz networks are
//!   instances 1–4 and 5 GHz ones 5–8, so the standard "lowest enabled per band" rule picks the
//!   primary ones;
//! - passphrase: Huawei firmware takes the WPA passphrase in `…PreSharedKey.1.PreSharedKey`
//!   (the BM632w has no `KeyPassphrase` at all); the standard places are used only where it is
//!   missing;
//! - CPU: `InternetGatewayDevice.DeviceInfo.X_HW_CpuUsed` (percent, what the device's own web page
//!   shows: 14 in the export, while `ProcessStatus.CPUUsage` said 57); firmware without it keeps
//!   the standard `ProcessStatus.CPUUsage`. Memory stays on the standard `MemoryStatus` (KiB);
//!   `X_HW_MemUsed` is only a percentage;
//! - optical power: `InternetGatewayDevice.WANDevice.1.X_GponInterafceConfig.RXPower` and
//!   `TXPower` (the object name really is misspelt `Interafce`), already in dBm: `-3` and `2`
//!   (`xsd:int`) in the export, decimal text such as `-18.52` on other firmware;
//! - internet connection: `Layer3Forwarding.DefaultConnectionService` is empty on these ONTs, and
//!   the first routed PPP connection is often a disconnected leftover (`WANConnectionDevice.1` in
//!   the export). The PPP connection whose `X_HW_SERVICELIST` includes `INTERNET` (`INTERNET`,
//!   `TR069_INTERNET`, …) and that is `Connected` is the one carrying traffic.

use std::time::Duration;

use adapter_kit::{Metric, Profile, tr098};
use roost_plugin_sdk::prelude::*;
use roost_plugin_sdk::{
    CellularReport, Diagnostic, DiagnosticKind, DiagnosticReport, HealthReport, ManagementSettings, PppoeSettings,
    WifiNetwork,
};

/// OUIs Huawei ships these devices with (`00259E`: EG8145V5 and HG8546M; `202BC1`: BM632w;
/// `00E0FC`, `001882`, `00464B`, `E0247F`: older ONTs and gateways). The manufacturer string
/// covers the rest.
const OUIS: &[&str] = &["00259E", "00E0FC", "001882", "00464B", "202BC1", "E0247F"];

/// Model name prefixes of Huawei's GPON ONTs (`HG8245H`, `EG8145V5`, `HS8546V5`, `HN8245Q`).
const ONT_PREFIXES: &[&str] = &["HG8", "EG8", "HS8", "HN8"];

const VENDOR_CPU: &str = "InternetGatewayDevice.DeviceInfo.X_HW_CpuUsed";
#[cfg(test)]
const STANDARD_CPU: &str = "InternetGatewayDevice.DeviceInfo.ProcessStatus.CPUUsage";
const PPP_CONNECTIONS: &str = "InternetGatewayDevice.WANDevice.*.WANConnectionDevice.*.WANPPPConnection.*";
const DEFAULT_CONNECTION: &str = "InternetGatewayDevice.Layer3Forwarding.DefaultConnectionService";

pub const PROFILE: Profile = Profile {
    band_parameter: Some("X_HW_RFBand"),
    cpu_percent: Some(Metric { path: VENDOR_CPU, convert: adapter_kit::number }),
    optical_rx_dbm: Some(Metric {
        path: "InternetGatewayDevice.WANDevice.1.X_GponInterafceConfig.RXPower",
        convert: adapter_kit::number,
    }),
    optical_tx_dbm: Some(Metric {
        path: "InternetGatewayDevice.WANDevice.1.X_GponInterafceConfig.TXPower",
        convert: adapter_kit::number,
    }),
    ..Profile::STANDARD
};

pub struct Huawei;

fn is_huawei(facts: &DeviceFacts) -> bool {
    OUIS.iter().any(|oui| facts.oui.eq_ignore_ascii_case(oui))
        || facts.manufacturer.to_ascii_lowercase().contains("huawei")
}

fn is_ont_model(name: &str) -> bool {
    let name = name.trim().to_ascii_uppercase();
    ONT_PREFIXES
        .iter()
        .any(|prefix| name.strip_prefix(prefix).is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_digit())))
}

/// Whether a PPP connection is routed and serves internet traffic by its `X_HW_SERVICELIST`
/// (firmware without the list: any routed connection).
fn carries_internet(connection: &str) -> bool {
    let routed = adapter_kit::text(&format!("{connection}ConnectionType")).as_deref() == Some("IP_Routed");
    let services = adapter_kit::text(&format!("{connection}X_HW_SERVICELIST"));
    routed && services.is_none_or(|list| list.split('_').any(|service| service.trim().eq_ignore_ascii_case("INTERNET")))
}

/// The internet connection: `DefaultConnectionService` when it names a PPP connection, else the
/// connected PPP connection serving internet, else the first one serving internet, else the
/// standard choice.
fn internet_connection() -> Result<Option<String>> {
    let connections = device::instances(PPP_CONNECTIONS)?;
    if let Some(default) = adapter_kit::text(DEFAULT_CONNECTION) {
        let default = format!("{}.", default.trim().trim_end_matches('.'));
        if connections.contains(&default) {
            return Ok(Some(default));
        }
    }
    let internet: Vec<&String> = connections.iter().filter(|c| carries_internet(c)).collect();
    let connected =
        internet.iter().find(|c| adapter_kit::text(&format!("{c}ConnectionStatus")).as_deref() == Some("Connected"));
    match connected.or(internet.first()) {
        Some(connection) => Ok(Some((*connection).clone())),
        None => tr098::internet_connection(),
    }
}

impl Adapter for Huawei {
    fn identify(facts: &DeviceFacts) -> Option<Identification> {
        if facts.root != tr098::ROOT || !is_huawei(facts) {
            return None;
        }
        let ont = is_ont_model(&facts.product_class) || facts.model_name.as_deref().is_some_and(is_ont_model);
        Some(if ont {
            Identification { score: 80, family: "huawei-ont".into() }
        } else {
            Identification { score: 50, family: "huawei".into() }
        })
    }

    fn wifi(max_age: Duration) -> Result<Vec<WifiNetwork>> {
        tr098::wifi(&PROFILE, max_age)
    }

    fn configure_wifi(settings: &WifiSettings) -> Result<()> {
        adapter_kit::check_wifi(settings)?;
        tr098::configure_wifi(&PROFILE, &WifiSettings { passphrase: None, ..settings.clone() })?;
        let Some(passphrase) = &settings.passphrase else { return Ok(()) };
        let networks = tr098::networks(&PROFILE)?;
        for network in adapter_kit::targets(&networks, &settings.target)? {
            let field = |name: &str| format!("{}{name}", network.key);
            let huawei_place = field("PreSharedKey.1.PreSharedKey");
            let places: Vec<String> = if adapter_kit::exists(&huawei_place) {
                vec![huawei_place]
            } else {
                ["PreSharedKey.1.KeyPassphrase", "KeyPassphrase"]
                    .iter()
                    .map(|p| field(p))
                    .filter(|p| adapter_kit::exists(p))
                    .collect()
            };
            if places.is_empty() {
                return Err(Error::unsupported(format!("{} has no passphrase parameter", network.key)));
            }
            for place in places {
                declare(place).value(passphrase.as_str());
            }
        }
        Ok(())
    }

    fn configure_pppoe(settings: &PppoeSettings) -> Result<()> {
        let connection = match &settings.connection {
            Some(c) => format!("{}.", c.trim_end_matches('.')),
            None => internet_connection()?.ok_or_else(|| Error::unsupported("the device has no PPP connection"))?,
        };
        adapter_kit::configure_pppoe_at(&connection, settings)
    }

    fn configure_management(settings: &ManagementSettings) -> Result<()> {
        adapter_kit::configure_management(tr098::ROOT, settings)
    }

    fn health(max_age: Duration) -> Result<HealthReport> {
        tr098::health(&PROFILE, max_age)
    }

    fn start_diagnostic(request: &Diagnostic) -> Result<()> {
        tr098::start_diagnostic(request)
    }

    fn diagnostic_result(kind: DiagnosticKind, max_age: Duration) -> Result<Option<DiagnosticReport>> {
        tr098::diagnostic_result(kind, max_age)
    }

    fn firmware_version() -> Option<String> {
        tr098::firmware_version()
    }

    fn cellular(max_age: Duration) -> Result<CellularReport> {
        tr098::cellular(max_age)
    }
}

export_adapter!(Huawei);

#[cfg(test)]
mod tests {
    use super::*;
    use roost_plugin_sdk::pattern::Pattern;
    use roost_plugin_sdk::testing::{Run, TestDevice};
    use roost_plugin_sdk::{PingTest, Value};

    const EG8145V5: &str = roost_plugin_sdk::testing::exports::HUAWEI_EG8145V5_TR098;
    const BM632W: &str = roost_plugin_sdk::testing::exports::HUAWEI_BM632W_TR098;
    const WLAN_24: &str = "InternetGatewayDevice.LANDevice.1.WLANConfiguration.1.";
    const WLAN_5: &str = "InternetGatewayDevice.LANDevice.1.WLANConfiguration.5.";

    fn load(csv: &str) -> TestDevice {
        TestDevice::from_genieacs_csv(csv).unwrap()
    }

    /// The values a run declared, in order.
    fn values(run: &Run) -> Vec<(String, Value)> {
        run.declarations.iter().filter_map(|d| d.value.clone().map(|v| (d.path.clone(), v))).collect()
    }

    /// The paths a run asked to refresh.
    fn refreshed(run: &Run) -> Vec<String> {
        run.declarations.iter().filter(|d| d.max_age.is_some()).map(|d| d.path.clone()).collect()
    }

    fn assert_paths_exist(device: &TestDevice, paths: &[String]) {
        for path in paths {
            let pattern = Pattern::parse(path).unwrap();
            assert!(!device.tree.expand(&pattern).is_empty(), "{path} is not in the export");
        }
    }

    #[test]
    fn identifies_the_ont_family_the_vendor_and_nothing_else() {
        let ont = load(EG8145V5).identify::<Huawei>().unwrap();
        assert_eq!((ont.score, ont.family.as_str()), (80, "huawei-ont"));

        // The BM632w is Huawei (X_HUAWEI_ parameters, "… Co., Ltd." with a dot) but not an ONT.
        let bm632w = load(BM632W);
        assert_eq!(bm632w.facts.manufacturer, "Huawei Technologies Co., Ltd.");
        let vendor = bm632w.identify::<Huawei>().unwrap();
        assert_eq!((vendor.score, vendor.family.as_str()), (50, "huawei"));

        for other in [
            roost_plugin_sdk::testing::exports::ZTE_ZXHN_H199A_TR098,
            roost_plugin_sdk::testing::exports::NOKIA_G1425GA_TR098,
            roost_plugin_sdk::testing::exports::TPLINK_XX230V_TR181,
        ] {
            let device = load(other);
            assert!(device.identify::<Huawei>().is_none(), "claimed {:?}", device.facts.product_class);
        }

        // A Huawei ONT reporting a TR-181 root is not for this TR-098 mapping.
        let mut tr181 = load(EG8145V5).facts;
        tr181.root = "Device".into();
        assert!(Huawei::identify(&tr181).is_none());
        // The OUI alone is enough.
        let mut by_oui = load(EG8145V5).facts;
        by_oui.manufacturer = "ISP branded".into();
        assert_eq!(Huawei::identify(&by_oui).map(|i| i.score), Some(80));
    }

    #[test]
    fn wifi_reads_the_band_from_x_hw_rfband() {
        let mut device = load(EG8145V5);
        let (networks, run) = device.call(|| Huawei::wifi(Duration::from_secs(60)));
        let networks = networks.unwrap();
        assert_eq!(networks.len(), 2);
        let (n24, n5) = (&networks[0], &networks[1]);
        assert_eq!(n24.key, WLAN_24);
        assert_eq!(
            (n24.ssid.as_str(), n24.band, n24.primary, n24.enabled),
            ("Anlix-EG8145", Some(Band::Band24), true, true)
        );
        assert_eq!((n24.channel, n24.clients, n24.security.as_deref()), (Some(2), Some(0), Some("WPAand11i")));
        assert_eq!(n5.key, WLAN_5);
        assert_eq!((n5.ssid.as_str(), n5.band, n5.primary), ("Anlix-EG8145-5G", Some(Band::Band5), true));
        assert_eq!(n5.channel, Some(36));

        let refreshed = refreshed(&run);
        assert!(refreshed.contains(&format!("{WLAN_24}X_HW_RFBand")));
        assert!(refreshed.contains(&format!("{WLAN_5}X_HW_RFBand")));
        assert_paths_exist(&device, &refreshed);
    }

    #[test]
    fn x_hw_rfband_wins_over_the_channel() {
        let mut device = load(EG8145V5);
        // Channel 36 alone would say 5 GHz; the vendor's band parameter is tried first.
        device.set(&format!("{WLAN_5}X_HW_RFBand"), "2.4GHz", "xsd:string");
        let (networks, _) = device.call(|| Huawei::wifi(Duration::ZERO));
        assert!(networks.unwrap().iter().all(|n| n.band == Some(Band::Band24)));
    }

    #[test]
    fn wifi_of_the_bm632w_falls_back_to_the_channel() {
        let mut device = load(BM632W);
        let (networks, run) = device.call(|| Huawei::wifi(Duration::ZERO));
        let networks = networks.unwrap();
        assert_eq!(networks.len(), 1);
        let network = &networks[0];
        assert_eq!(
            (network.ssid.as_str(), network.band, network.primary),
            ("404 WiMAX Not Found", Some(Band::Band24), true)
        );
        assert_eq!((network.channel, network.clients), (Some(6), Some(3)));
        let refreshed = refreshed(&run);
        assert!(!refreshed.iter().any(|p| p.ends_with("X_HW_RFBand")));
        assert_paths_exist(&device, &refreshed);
    }

    #[test]
    fn configure_wifi_writes_the_ssid_and_the_huawei_passphrase_place() {
        let mut device = load(EG8145V5);
        let settings = WifiSettings {
            target: WifiTarget::Band(Band::Band5),
            ssid: Some("Roost-5G".into()),
            passphrase: Some("correct horse battery".into()),
            enabled: Some(true),
        };
        let (result, run) = device.call(|| Huawei::configure_wifi(&settings));
        result.unwrap();
        assert_eq!(
            values(&run),
            [
                (format!("{WLAN_5}SSID"), Value::Text("Roost-5G".into())),
                (format!("{WLAN_5}Enable"), Value::Boolean(true)),
                (format!("{WLAN_5}PreSharedKey.1.PreSharedKey"), Value::Text("correct horse battery".into())),
            ]
        );
    }

    #[test]
    fn configure_wifi_checks_the_passphrase() {
        let mut device = load(EG8145V5);
        let settings = WifiSettings {
            target: WifiTarget::All,
            ssid: Some("Roost".into()),
            passphrase: Some("short".into()),
            enabled: None,
        };
        let (result, run) = device.call(|| Huawei::configure_wifi(&settings));
        assert_eq!(result.unwrap_err().kind, ErrorKind::InvalidArgument);
        assert!(run.declarations.is_empty());
    }

    #[test]
    fn the_bm632w_passphrase_goes_to_its_only_key_parameter() {
        let mut device = load(BM632W);
        let settings = WifiSettings {
            target: WifiTarget::All,
            ssid: None,
            passphrase: Some("correct horse battery".into()),
            enabled: None,
        };
        let (result, run) = device.call(|| Huawei::configure_wifi(&settings));
        result.unwrap();
        assert_eq!(
            values(&run),
            [(format!("{WLAN_24}PreSharedKey.1.PreSharedKey"), Value::Text("correct horse battery".into()))]
        );
    }

    #[test]
    fn configure_pppoe_picks_the_connected_internet_connection() {
        let mut device = load(EG8145V5);
        let settings = PppoeSettings { username: "roost@isp".into(), password: "secret-pw".into(), connection: None };
        let (result, run) = device.call(|| Huawei::configure_pppoe(&settings));
        result.unwrap();
        // WANConnectionDevice.1 is routed and serves INTERNET too, but is Disconnected; .4
        // (TR069_INTERNET, Connected, 192.168.89.198) is the one the ACS reached the device through.
        let connection = "InternetGatewayDevice.WANDevice.1.WANConnectionDevice.4.WANPPPConnection.1.";
        assert_eq!(
            values(&run),
            [
                (format!("{connection}Username"), Value::Text("roost@isp".into())),
                (format!("{connection}Password"), Value::Text("secret-pw".into())),
            ]
        );
    }

    #[test]
    fn configure_pppoe_follows_the_default_connection_service_and_an_explicit_choice() {
        let mut device = load(EG8145V5);
        let first = "InternetGatewayDevice.WANDevice.1.WANConnectionDevice.1.WANPPPConnection.1";
        device.set(DEFAULT_CONNECTION, first, "xsd:string");
        let settings = PppoeSettings { username: "roost@isp".into(), password: "pw".into(), connection: None };
        let (result, run) = device.call(|| Huawei::configure_pppoe(&settings));
        result.unwrap();
        assert_eq!(run.declarations[0].path, format!("{first}.Username"));

        let explicit = PppoeSettings { connection: Some(first.into()), ..settings };
        let mut device = load(EG8145V5);
        let (result, run) = device.call(|| Huawei::configure_pppoe(&explicit));
        result.unwrap();
        assert_eq!(run.declarations[1].path, format!("{first}.Password"));
    }

    #[test]
    fn configure_management_declares_the_four_values() {
        let mut device = load(EG8145V5);
        let settings = ManagementSettings {
            periodic_inform_interval: Some(300),
            connection_request_username: Some("roost".into()),
            connection_request_password: Some("cr-secret".into()),
        };
        let (result, run) = device.call(|| Huawei::configure_management(&settings));
        result.unwrap();
        let ms = "InternetGatewayDevice.ManagementServer.";
        assert_eq!(
            values(&run),
            [
                (format!("{ms}PeriodicInformEnable"), Value::Boolean(true)),
                (format!("{ms}PeriodicInformInterval"), Value::Unsigned(300)),
                (format!("{ms}ConnectionRequestUsername"), Value::Text("roost".into())),
                (format!("{ms}ConnectionRequestPassword"), Value::Text("cr-secret".into())),
            ]
        );
    }

    #[test]
    fn health_reads_x_hw_cpu_and_the_gpon_optics() {
        let mut device = load(EG8145V5);
        let (report, run) = device.call(|| Huawei::health(Duration::from_secs(300)));
        let report = report.unwrap();
        assert_eq!(report.uptime_seconds, Some(89_910));
        assert_eq!(report.cpu_percent, Some(14));
        assert_eq!((report.memory_total_kib, report.memory_free_kib), (Some(262_144), Some(120_072)));
        assert_eq!((report.wan_bytes_sent, report.wan_bytes_received), (Some(12_459_761), Some(28_319_238)));
        assert_eq!(report.wifi_clients, Some(0));
        assert_eq!(report.optical_rx_dbm, Some(-3.0));
        assert_eq!(report.optical_tx_dbm, Some(2.0));
        assert_eq!(report.cellular_rsrp_dbm, None);

        let refreshed = refreshed(&run);
        for path in [
            VENDOR_CPU,
            "InternetGatewayDevice.WANDevice.1.X_GponInterafceConfig.RXPower",
            "InternetGatewayDevice.WANDevice.1.X_GponInterafceConfig.TXPower",
            "InternetGatewayDevice.DeviceInfo.UpTime",
        ] {
            assert!(refreshed.iter().any(|p| p == path), "{path} not refreshed");
        }
        assert!(!refreshed.iter().any(|p| p == STANDARD_CPU));
        assert!(run.declarations.iter().all(|d| d.max_age == Some(Duration::from_secs(300))));
        assert_paths_exist(&device, &refreshed);
    }

    #[test]
    fn health_parses_decimal_dbm_and_falls_back_to_the_standard_cpu() {
        let mut device = load(EG8145V5);
        device.set("InternetGatewayDevice.WANDevice.1.X_GponInterafceConfig.RXPower", "-18.52", "xsd:string");
        device.tree.remove(VENDOR_CPU);
        let (report, run) = device.call(|| Huawei::health(Duration::ZERO));
        let report = report.unwrap();
        assert_eq!(report.optical_rx_dbm, Some(-18.52));
        assert_eq!(report.cpu_percent, Some(57));
        let refreshed = refreshed(&run);
        assert!(refreshed.iter().any(|p| p == STANDARD_CPU));
        assert_paths_exist(&device, &refreshed);
    }

    #[test]
    fn health_of_the_bm632w_declares_only_what_it_has() {
        let mut device = load(BM632W);
        let (report, run) = device.call(|| Huawei::health(Duration::ZERO));
        let report = report.unwrap();
        assert_eq!(report.uptime_seconds, Some(213_138));
        assert_eq!((report.cpu_percent, report.optical_rx_dbm, report.optical_tx_dbm), (None, None, None));
        assert_paths_exist(&device, &refreshed(&run));
    }

    #[test]
    fn the_bm632w_reports_its_wimax_signal_as_cellular_figures() {
        let mut device = load(BM632W);
        // Its own text: `-43.70dBm`, `30.53dB`.
        let (report, run) = device.call(|| Huawei::cellular(Duration::from_secs(300)));
        let report = report.unwrap();
        assert_eq!((report.cellular_rssi_dbm, report.cellular_sinr_db), (Some(-43.7), Some(30.53)));
        let refreshed = refreshed(&run);
        assert_eq!(
            refreshed,
            ["InternetGatewayDevice.WiMAX.Status.RSSI", "InternetGatewayDevice.WiMAX.Status.CINR1"],
            "each figure refreshed, nothing else"
        );
        assert!(run.declarations.iter().all(|d| d.max_age == Some(Duration::from_secs(300))));
        // An ONT has no wireless WAN: no figures, nothing declared.
        let mut ont = load(EG8145V5);
        let (report, run) = ont.call(|| Huawei::cellular(Duration::ZERO));
        assert_eq!(report.unwrap(), CellularReport { cellular_rssi_dbm: None, cellular_sinr_db: None });
        assert!(run.declarations.is_empty(), "{:?}", run.declarations);
    }

    #[test]
    fn ping_is_requested_at_ip_ping_diagnostics() {
        let mut device = load(EG8145V5);
        let ping =
            Diagnostic::Ping(PingTest { host: "192.0.2.1".into(), count: Some(3), timeout_ms: None, size: None });
        let (result, run) = device.call(|| Huawei::start_diagnostic(&ping));
        result.unwrap();
        let object = "InternetGatewayDevice.IPPingDiagnostics.";
        assert_eq!(
            values(&run),
            [
                (format!("{object}Host"), Value::Text("192.0.2.1".into())),
                (format!("{object}NumberOfRepetitions"), Value::Unsigned(3)),
                (format!("{object}DiagnosticsState"), Value::Text("Requested".into())),
            ]
        );
    }

    struct RenameWifi;

    impl Provision for RenameWifi {
        fn run(args: &Args) -> Result<()> {
            intents::configure_wifi(&WifiSettings {
                target: WifiTarget::Band(Band::Band24),
                ssid: Some(args.require("ssid")?.to_owned()),
                passphrase: Some("correct horse battery".into()),
                enabled: None,
            })
        }
    }

    #[test]
    fn a_provision_converges_through_the_adapter() {
        let mut device = load(EG8145V5);
        device.with_adapter::<Huawei>();
        let converged = device.converge::<RenameWifi>(&[("ssid", "Roost-Home")]).unwrap();
        assert_eq!(converged.rounds, 2);
        assert_eq!(device.text(&format!("{WLAN_24}SSID")).as_deref(), Some("Roost-Home"));
        assert_eq!(
            device.text(&format!("{WLAN_24}PreSharedKey.1.PreSharedKey")).as_deref(),
            Some("correct horse battery")
        );
        assert_eq!(device.text(&format!("{WLAN_5}SSID")).as_deref(), Some("Anlix-EG8145-5G"));
    }
}
