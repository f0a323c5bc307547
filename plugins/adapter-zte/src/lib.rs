//! `adapter-zte`: ZTE TR-098 (`InternetGatewayDevice.`) devices. The ZXHN home gateway family
//! (ZXHN H199A, H198A, H298A; the F660, F670L, F680 GPON ONTs: ProductClass `ZXHN H199A` with its
//! space, or bare `F660`) scores 80; any other ZTE TR-098 device scores 50 and gets the same
//! mapping, which falls back to the standard parameters wherever the vendor ones are missing. ZTE
//! devices with a TR-181 root are left to the generic adapter.
//!
//! What differs from the standard model (seen in the ZXHN H199A export, V9.1.0P4N3_MUL):
//! - band: there is no band parameter (`X_ZTE-COM_WlanStandard` only repeats `Standard`); the
//!   channel tells it (`3` for SSID1–4, `116` for SSID5–8), then `Standard` (`b,g,n`,
//!   `a,n,ac`). SSID1 and SSID5 are the primary networks, the standard rule;
//! - passphrase: `PreSharedKey.1.KeyPassphrase` and `KeyPassphrase` both exist and are written
//!   together, the standard mapping;
//! - CPU: `InternetGatewayDevice.DeviceInfo.X_ZTE-COM_CpuUsed` (percent) on the F6xx ONTs; the
//!   H199A has only the standard `ProcessStatus.CPUUsage` (`1`), used when the vendor one is
//!   missing. Memory stays on the standard `MemoryStatus` (KiB);
//! - optical power (GPON models): `InternetGatewayDevice.WANDevice.1.X_ZTE-COM_WANPONInterfaceConfig.RXPower`
//!   and `TXPower`, in units of 0.1 µW (0.0001 mW: `152` is 10·log10(0.0152) = −18.2 dBm),
//!   converted to dBm; 0 (no light) is no figure. The H199A has an Ethernet WAN
//!   (`WANAccessType` `Ethernet`) and no such object, so it reports no optical figures;
//! - internet connection: `Layer3Forwarding.DefaultConnectionService` names the PPPoE connection
//!   (`WANConnectionDevice.1.WANPPPConnection.2`, service list `INTERNET_TR069_IPTV`), the
//!   standard choice.

use std::time::Duration;

use adapter_kit::{Metric, Profile, tr098};
use roost_plugin_sdk::prelude::*;
use roost_plugin_sdk::{
    Diagnostic, DiagnosticKind, DiagnosticReport, HealthReport, ManagementSettings, PppoeSettings, WifiNetwork,
};

/// OUIs ZTE ships these devices with (`C0B101`: ZXHN H199A; the others ZTE's older blocks). The
/// manufacturer string (`ZTE`, `ZTE Corporation`) covers the rest.
const OUIS: &[&str] = &["C0B101", "001E73", "0015EB", "0019C6", "002293"];

const VENDOR_CPU: &str = "InternetGatewayDevice.DeviceInfo.X_ZTE-COM_CpuUsed";
#[cfg(test)]
const STANDARD_CPU: &str = "InternetGatewayDevice.DeviceInfo.ProcessStatus.CPUUsage";

pub const PROFILE: Profile = Profile {
    cpu_percent: Some(Metric { path: VENDOR_CPU, convert: adapter_kit::number }),
    optical_rx_dbm: Some(Metric {
        path: "InternetGatewayDevice.WANDevice.1.X_ZTE-COM_WANPONInterfaceConfig.RXPower",
        convert: dbm_from_tenth_microwatts,
    }),
    optical_tx_dbm: Some(Metric {
        path: "InternetGatewayDevice.WANDevice.1.X_ZTE-COM_WANPONInterfaceConfig.TXPower",
        convert: dbm_from_tenth_microwatts,
    }),
    ..Profile::STANDARD
};

/// dBm from ZTE's optical power in 0.1 µW; nothing for zero or negative readings (no light).
pub fn dbm_from_tenth_microwatts(value: &Value) -> Option<f64> {
    let tenth_microwatts = value.as_f64()?;
    (tenth_microwatts > 0.0).then(|| 10.0 * (tenth_microwatts / 10_000.0).log10())
}

pub struct Zte;

fn is_zte(facts: &DeviceFacts) -> bool {
    OUIS.iter().any(|oui| facts.oui.eq_ignore_ascii_case(oui))
        || facts.manufacturer.trim().to_ascii_lowercase().starts_with("zte")
}

/// Whether a model name is of the ZXHN family: `ZXHN …`, or a bare `F660`, `F670L`, `H199A`.
fn is_zxhn_model(name: &str) -> bool {
    let name = name.trim().to_ascii_uppercase();
    if name.starts_with("ZXHN") {
        return true;
    }
    let mut chars = name.chars();
    matches!(chars.next(), Some('F' | 'H')) && chars.take(3).filter(char::is_ascii_digit).count() == 3
}

impl Adapter for Zte {
    fn identify(facts: &DeviceFacts) -> Option<Identification> {
        if facts.root != tr098::ROOT || !is_zte(facts) {
            return None;
        }
        let family = is_zxhn_model(&facts.product_class) || facts.model_name.as_deref().is_some_and(is_zxhn_model);
        Some(if family {
            Identification { score: 80, family: "zte-zxhn".into() }
        } else {
            Identification { score: 50, family: "zte".into() }
        })
    }

    fn wifi(max_age: Duration) -> Result<Vec<WifiNetwork>> {
        tr098::wifi(&PROFILE, max_age)
    }

    fn configure_wifi(settings: &WifiSettings) -> Result<()> {
        tr098::configure_wifi(&PROFILE, settings)
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
        tr098::start_diagnostic(request)
    }

    fn diagnostic_result(kind: DiagnosticKind, max_age: Duration) -> Result<Option<DiagnosticReport>> {
        tr098::diagnostic_result(kind, max_age)
    }

    fn firmware_version() -> Option<String> {
        tr098::firmware_version()
    }
}

export_adapter!(Zte);

#[cfg(test)]
mod tests {
    use super::*;
    use roost_plugin_sdk::pattern::Pattern;
    use roost_plugin_sdk::testing::{Run, TestDevice};
    use roost_plugin_sdk::{PingTest, Value};

    const H199A: &str = roost_plugin_sdk::testing::exports::ZTE_ZXHN_H199A_TR098;
    const WLAN: &str = "InternetGatewayDevice.LANDevice.1.WLANConfiguration.";
    const PON: &str = "InternetGatewayDevice.WANDevice.1.X_ZTE-COM_WANPONInterfaceConfig.";

    fn load(csv: &str) -> TestDevice {
        TestDevice::from_genieacs_csv(csv).unwrap()
    }

    fn values(run: &Run) -> Vec<(String, Value)> {
        run.declarations.iter().filter_map(|d| d.value.clone().map(|v| (d.path.clone(), v))).collect()
    }

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
    fn identifies_the_zxhn_family_despite_the_space_and_nothing_else() {
        let device = load(H199A);
        assert_eq!(device.facts.product_class, "ZXHN H199A");
        let family = device.identify::<Zte>().unwrap();
        assert_eq!((family.score, family.family.as_str()), (80, "zte-zxhn"));

        for other in [
            roost_plugin_sdk::testing::exports::HUAWEI_EG8145V5_TR098,
            roost_plugin_sdk::testing::exports::HUAWEI_BM632W_TR098,
            roost_plugin_sdk::testing::exports::NOKIA_G1425GA_TR098,
            roost_plugin_sdk::testing::exports::TPLINK_XX230V_TR181,
        ] {
            let device = load(other);
            assert!(device.identify::<Zte>().is_none(), "claimed {:?}", device.facts.product_class);
        }

        let mut f660 = device.facts.clone();
        f660.product_class = "F660".into();
        f660.model_name = Some("F660".into());
        assert_eq!(Zte::identify(&f660).map(|i| i.score), Some(80));
        let mut other_zte = device.facts.clone();
        other_zte.product_class = "MF286".into();
        other_zte.model_name = None;
        other_zte.oui = "000000".into();
        assert_eq!(Zte::identify(&other_zte).map(|i| (i.score, i.family)), Some((50, "zte".to_owned())));
        let mut tr181 = device.facts.clone();
        tr181.root = "Device".into();
        assert!(Zte::identify(&tr181).is_none());
        // A non-ZTE device with a ZXHN-like name is not claimed.
        let mut lookalike = device.facts;
        lookalike.manufacturer = "Other".into();
        lookalike.oui = "123456".into();
        assert!(Zte::identify(&lookalike).is_none());
    }

    #[test]
    fn wifi_tells_the_band_by_channel_and_marks_ssid1_and_ssid5_primary() {
        let mut device = load(H199A);
        let (networks, run) = device.call(|| Zte::wifi(Duration::from_secs(60)));
        let networks = networks.unwrap();
        assert_eq!(networks.len(), 8);
        let primary: Vec<(&str, Option<Band>, Option<u32>)> =
            networks.iter().filter(|n| n.primary).map(|n| (n.ssid.as_str(), n.band, n.channel)).collect();
        assert_eq!(
            primary,
            [("Anlix-ZTE-H199", Some(Band::Band24), Some(3)), ("Anlix-ZTE-H199-5G", Some(Band::Band5), Some(116))]
        );
        assert_eq!(networks[0].key, format!("{WLAN}1."));
        assert_eq!((networks[0].clients, networks[0].security.as_deref()), (Some(1), Some("11i")));
        assert_eq!(
            (networks[1].ssid.as_str(), networks[1].enabled, networks[1].band),
            ("SSID2", false, Some(Band::Band24))
        );
        assert_eq!((networks[7].ssid.as_str(), networks[7].band), ("SSID8", Some(Band::Band5)));
        assert_paths_exist(&device, &refreshed(&run));
    }

    #[test]
    fn wifi_falls_back_to_the_standard_when_the_channel_is_auto() {
        let mut device = load(H199A);
        device.set(&format!("{WLAN}5.Channel"), "0", "xsd:unsignedInt");
        let (networks, _) = device.call(|| Zte::wifi(Duration::ZERO));
        assert_eq!(networks.unwrap()[4].band, Some(Band::Band5));
    }

    #[test]
    fn configure_wifi_writes_both_passphrase_places_of_the_band() {
        let mut device = load(H199A);
        let settings = WifiSettings {
            target: WifiTarget::Band(Band::Band24),
            ssid: Some("Roost".into()),
            passphrase: Some("correct horse battery".into()),
            enabled: None,
        };
        let (result, run) = device.call(|| Zte::configure_wifi(&settings));
        result.unwrap();
        let passphrase = Value::Text("correct horse battery".into());
        assert_eq!(
            values(&run),
            [
                (format!("{WLAN}1.SSID"), Value::Text("Roost".into())),
                (format!("{WLAN}1.PreSharedKey.1.KeyPassphrase"), passphrase.clone()),
                (format!("{WLAN}1.KeyPassphrase"), passphrase),
            ]
        );
    }

    #[test]
    fn configure_pppoe_uses_the_default_connection_service() {
        let mut device = load(H199A);
        let settings = PppoeSettings { username: "roost@isp".into(), password: "secret-pw".into(), connection: None };
        let (result, run) = device.call(|| Zte::configure_pppoe(&settings));
        result.unwrap();
        let connection = "InternetGatewayDevice.WANDevice.1.WANConnectionDevice.1.WANPPPConnection.2.";
        assert_eq!(
            values(&run),
            [
                (format!("{connection}Username"), Value::Text("roost@isp".into())),
                (format!("{connection}Password"), Value::Text("secret-pw".into())),
            ]
        );
    }

    #[test]
    fn configure_management_declares_the_four_values() {
        let mut device = load(H199A);
        let settings = ManagementSettings {
            periodic_inform_interval: Some(600),
            connection_request_username: Some("roost".into()),
            connection_request_password: Some("cr-secret".into()),
        };
        let (result, run) = device.call(|| Zte::configure_management(&settings));
        result.unwrap();
        let ms = "InternetGatewayDevice.ManagementServer.";
        assert_eq!(
            values(&run),
            [
                (format!("{ms}PeriodicInformEnable"), Value::Boolean(true)),
                (format!("{ms}PeriodicInformInterval"), Value::Unsigned(600)),
                (format!("{ms}ConnectionRequestUsername"), Value::Text("roost".into())),
                (format!("{ms}ConnectionRequestPassword"), Value::Text("cr-secret".into())),
            ]
        );
    }

    #[test]
    fn health_of_the_h199a_uses_the_standard_cpu_and_has_no_optics() {
        let mut device = load(H199A);
        let (report, run) = device.call(|| Zte::health(Duration::from_secs(300)));
        let report = report.unwrap();
        assert_eq!(report.uptime_seconds, Some(2_468));
        assert_eq!(report.cpu_percent, Some(1));
        assert_eq!((report.memory_total_kib, report.memory_free_kib), (Some(131_072), Some(53_380)));
        assert_eq!((report.wan_bytes_sent, report.wan_bytes_received), (Some(3_458_530), Some(3_019_822)));
        assert_eq!(report.wifi_clients, Some(1));
        assert_eq!((report.optical_rx_dbm, report.optical_tx_dbm), (None, None));

        let refreshed = refreshed(&run);
        assert!(refreshed.iter().any(|p| p == STANDARD_CPU));
        assert!(!refreshed.iter().any(|p| p.starts_with(PON) || p == VENDOR_CPU));
        assert_paths_exist(&device, &refreshed);
    }

    #[test]
    fn health_of_a_gpon_model_converts_tenth_microwatts_to_dbm() {
        // The F6xx ONTs' parameters, added to the H199A tree (no GPON export is at hand).
        let mut device = load(H199A);
        device.set(&format!("{PON}RXPower"), "152", "xsd:int");
        device.set(&format!("{PON}TXPower"), "20000", "xsd:int");
        device.set(VENDOR_CPU, "23", "xsd:unsignedInt");
        let (report, run) = device.call(|| Zte::health(Duration::ZERO));
        let report = report.unwrap();
        let rx = report.optical_rx_dbm.unwrap();
        assert!((rx - -18.18).abs() < 0.01, "{rx}");
        let tx = report.optical_tx_dbm.unwrap();
        assert!((tx - 3.01).abs() < 0.01, "{tx}");
        assert_eq!(report.cpu_percent, Some(23));
        let refreshed = refreshed(&run);
        assert!(refreshed.iter().any(|p| p == VENDOR_CPU) && !refreshed.iter().any(|p| p == STANDARD_CPU));
        assert!(refreshed.contains(&format!("{PON}RXPower")));
    }

    #[test]
    fn no_light_is_no_figure() {
        assert_eq!(dbm_from_tenth_microwatts(&Value::Signed(0)), None);
        assert_eq!(dbm_from_tenth_microwatts(&Value::Text("--".into())), None);
        assert_eq!(dbm_from_tenth_microwatts(&Value::Unsigned(10_000)), Some(0.0));
    }

    #[test]
    fn ping_is_requested_at_ip_ping_diagnostics() {
        let mut device = load(H199A);
        let ping =
            Diagnostic::Ping(PingTest { host: "example.net".into(), count: None, timeout_ms: Some(1000), size: None });
        let (result, run) = device.call(|| Zte::start_diagnostic(&ping));
        result.unwrap();
        let object = "InternetGatewayDevice.IPPingDiagnostics.";
        assert_eq!(
            values(&run),
            [
                (format!("{object}Host"), Value::Text("example.net".into())),
                (format!("{object}Timeout"), Value::Unsigned(1000)),
                (format!("{object}DiagnosticsState"), Value::Text("Requested".into())),
            ]
        );
    }

    struct RenameWifi;

    impl Provision for RenameWifi {
        fn run(args: &Args) -> Result<()> {
            intents::configure_wifi(&WifiSettings {
                target: WifiTarget::Band(Band::Band5),
                ssid: Some(args.require("ssid")?.to_owned()),
                passphrase: None,
                enabled: None,
            })
        }
    }

    #[test]
    fn a_provision_converges_through_the_adapter() {
        let mut device = load(H199A);
        device.with_adapter::<Zte>();
        let converged = device.converge::<RenameWifi>(&[("ssid", "Roost-5G")]).unwrap();
        assert_eq!(converged.rounds, 2);
        assert_eq!(converged.changes, [format!("set {WLAN}5.SSID = Roost-5G")]);
        assert_eq!(device.text(&format!("{WLAN}5.SSID")).as_deref(), Some("Roost-5G"));
        assert_eq!(device.text(&format!("{WLAN}1.SSID")).as_deref(), Some("Anlix-ZTE-H199"));
    }
}
