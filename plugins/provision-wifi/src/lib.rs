//! `wifi`: Wi-Fi defaults for the device's primary networks.
//!
//! Arguments (at least one of the first three):
//! - `ssid`: the network name (1 to 32 bytes); `{serial}` is replaced by the serial number's last
//!   six characters, so every home gets its own name from one preset;
//! - `passphrase`: WPA passphrase (8 to 63 printable ASCII characters);
//! - `enabled`: `true` or `false`;
//! - `band`: `2.4`, `5`, `6` or `all` (default `all`).

use roost_plugin_sdk::prelude::*;

pub struct Wifi;

impl Provision for Wifi {
    fn run(args: &Args) -> Result<()> {
        let target = match args.get("band").unwrap_or("all") {
            "all" => WifiTarget::All,
            "2.4" => WifiTarget::Band(Band::Band24),
            "5" => WifiTarget::Band(Band::Band5),
            "6" => WifiTarget::Band(Band::Band6),
            other => return Err(Error::invalid_argument(format!("band {other:?} is not 2.4, 5, 6 or all"))),
        };
        let ssid = args.get("ssid").map(|s| {
            let serial = device::facts().serial_number;
            // By characters: a byte offset could fall inside a multi-byte one and panic.
            let tail = serial.char_indices().rev().nth(5).map_or(serial.as_str(), |(i, _)| &serial[i..]);
            s.replace("{serial}", tail)
        });
        if let Some(ssid) = &ssid
            && (ssid.is_empty() || ssid.len() > 32)
        {
            return Err(Error::invalid_argument(format!("SSID {ssid:?} must be 1 to 32 bytes")));
        }
        let passphrase = args.get("passphrase");
        if let Some(p) = passphrase
            && !(8..=63).contains(&p.len())
        {
            return Err(Error::invalid_argument("passphrase must be 8 to 63 characters"));
        }
        let enabled: Option<bool> = args.parse("enabled")?;
        if ssid.is_none() && passphrase.is_none() && enabled.is_none() {
            return Err(Error::invalid_argument("give at least one of ssid, passphrase, enabled"));
        }
        intents::configure_wifi(&WifiSettings { target, ssid, passphrase: passphrase.map(str::to_owned), enabled })
    }
}

export_provision!(Wifi);

#[cfg(test)]
mod tests {

    use roost_plugin_sdk::testing::TestDevice;

    use super::*;

    const XX230V: &str = roost_plugin_sdk::testing::exports::TPLINK_XX230V_TR181;
    const EG8145V5: &str = roost_plugin_sdk::testing::exports::HUAWEI_EG8145V5_TR098;
    const WLAN: &str = "InternetGatewayDevice.LANDevice.1.WLANConfiguration.";

    fn tplink() -> TestDevice {
        let mut device = TestDevice::from_genieacs_csv(XX230V).unwrap();
        device.with_adapter::<adapter_tplink::TpLink>();
        device
    }

    fn huawei() -> TestDevice {
        let mut device = TestDevice::from_genieacs_csv(EG8145V5).unwrap();
        device.with_adapter::<adapter_huawei::Huawei>();
        device
    }

    fn text(device: &TestDevice, path: &str) -> String {
        device.text(path).unwrap()
    }

    #[test]
    fn both_primary_networks_of_a_band_split_router_get_the_ssid_and_passphrase() {
        let mut device = tplink();
        let args = [("ssid", "Roost-{serial}"), ("passphrase", "correct horse battery")];
        let converged = device.converge::<Wifi>(&args).unwrap();
        assert_eq!(converged.rounds, 2);
        // SSID.1 is the 2.4 GHz primary network, SSID.3 the 5 GHz one (serial 22275A7000395).
        for (ssid, ap) in [
            ("Device.WiFi.SSID.1.", "Device.WiFi.AccessPoint.1."),
            ("Device.WiFi.SSID.3.", "Device.WiFi.AccessPoint.3."),
        ] {
            assert_eq!(text(&device, &format!("{ssid}SSID")), "Roost-000395");
            assert_eq!(text(&device, &format!("{ap}Security.KeyPassphrase")), "correct horse battery");
        }
        // Guest and backhaul networks are not primary.
        assert_eq!(text(&device, "Device.WiFi.SSID.2.SSID"), "TP-Link_2AC8_1");
        assert_eq!(text(&device, "Device.WiFi.AccessPoint.9.Security.KeyPassphrase"), "");
        assert_eq!(converged.changes.len(), 4, "{:?}", converged.changes);
    }

    #[test]
    fn band_argument_changes_only_that_band() {
        let mut device = huawei();
        device
            .converge::<Wifi>(&[("band", "5"), ("ssid", "Roost-5G"), ("passphrase", "correct horse battery")])
            .unwrap();
        assert_eq!(text(&device, &format!("{WLAN}5.SSID")), "Roost-5G");
        // Huawei firmware takes the passphrase in PreSharedKey.1.PreSharedKey.
        assert_eq!(text(&device, &format!("{WLAN}5.PreSharedKey.1.PreSharedKey")), "correct horse battery");
        assert_eq!(text(&device, &format!("{WLAN}1.SSID")), "Anlix-EG8145");
        assert_eq!(text(&device, &format!("{WLAN}1.PreSharedKey.1.PreSharedKey")), "");
    }

    #[test]
    fn enabled_false_turns_off_the_primary_network_of_the_band() {
        let mut device = tplink();
        device.converge::<Wifi>(&[("band", "2.4"), ("enabled", "false")]).unwrap();
        assert_eq!(text(&device, "Device.WiFi.SSID.1.Enable"), "false");
        assert_eq!(text(&device, "Device.WiFi.AccessPoint.1.Enable"), "false");
        assert_eq!(text(&device, "Device.WiFi.AccessPoint.3.Enable"), "true");
    }

    #[test]
    fn serial_placeholder_takes_the_last_six_characters_of_a_non_ascii_serial() {
        let mut device = tplink();
        device.facts.serial_number = "ABCÉÉÉ1".into();
        device.converge::<Wifi>(&[("band", "2.4"), ("ssid", "Roost-{serial}")]).unwrap();
        assert_eq!(text(&device, "Device.WiFi.SSID.1.SSID"), "Roost-BCÉÉÉ1");
    }

    #[test]
    fn invalid_arguments_are_refused_without_declarations() {
        let (long_ssid, long_passphrase) = ("x".repeat(33), "p".repeat(64));
        for args in [
            vec![("passphrase", "short")],
            vec![("passphrase", long_passphrase.as_str())],
            vec![("ssid", "")],
            vec![("ssid", long_ssid.as_str())],
            vec![("band", "7"), ("ssid", "Roost")],
            vec![("enabled", "maybe")],
            vec![("band", "5")],
            vec![],
        ] {
            let run = tplink().run::<Wifi>(&args);
            assert_eq!(run.result.unwrap_err().kind, ErrorKind::InvalidArgument, "{args:?}");
            assert!(run.declarations.is_empty(), "{args:?}: {:?}", run.declarations);
        }
    }
}
