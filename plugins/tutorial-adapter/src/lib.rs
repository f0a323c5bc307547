//! The adapter of the plugin tutorial (docs/PLUGINS.md, section 2): a TR-181 device by the
//! fictional vendor Acme (OUI `00D0D0`), whose access points are numbered like its SSIDs.

use roost_plugin_sdk::WifiNetwork;
use roost_plugin_sdk::prelude::*;

pub struct Acme;

const SSIDS: &str = "Device.WiFi.SSID.*";

impl Adapter for Acme {
    fn identify(facts: &DeviceFacts) -> Option<Identification> {
        (facts.oui == "00D0D0").then(|| Identification { score: 50, family: "acme".into() })
    }

    fn wifi(max_age: Duration) -> Result<Vec<WifiNetwork>> {
        // Ask for fresh values; they arrive in the next round, when Roost calls us again.
        declare(format!("{SSIDS}.SSID")).refresh(max_age);
        let mut networks = Vec::new();
        for ssid in device::instances(SSIDS)? {
            networks.push(WifiNetwork {
                key: ssid.clone(),
                band: None,
                primary: ssid.ends_with(".1."),
                ssid: device::text(&format!("{ssid}SSID"))?.unwrap_or_default(),
                enabled: device::value(&format!("{ssid}Enable"))?.and_then(|v| v.as_bool()).unwrap_or(false),
                security: None,
                channel: None,
                clients: None,
            });
        }
        Ok(networks)
    }

    fn configure_wifi(settings: &WifiSettings) -> Result<()> {
        for network in Self::wifi(Duration::from_secs(3600))? {
            let wanted = match &settings.target {
                WifiTarget::All => network.primary,
                WifiTarget::Band(band) => network.primary && network.band == Some(*band),
                WifiTarget::Network(key) => network.key == *key,
            };
            if !wanted {
                continue;
            }
            if let Some(ssid) = &settings.ssid {
                declare(format!("{}SSID", network.key)).value(ssid.as_str());
            }
            if let Some(passphrase) = &settings.passphrase {
                let access_point = network.key.replace(".SSID.", ".AccessPoint.");
                declare(format!("{access_point}Security.KeyPassphrase")).value(passphrase.as_str());
            }
        }
        Ok(())
    }
}

export_adapter!(Acme);

#[cfg(test)]
mod tests {

    use roost_plugin_sdk::testing::TestDevice;

    use super::*;

    const EXPORT: &str = include_str!("../../../tests/data/cpe/tplink-xx230v_tr181_genieacs-export.csv");

    #[test]
    fn identifies_acme_only() {
        let mut device = TestDevice::from_genieacs_csv(EXPORT).unwrap();
        assert!(device.identify::<Acme>().is_none(), "a TP-Link is not an Acme");
        device.facts.oui = "00D0D0".into();
        assert_eq!(device.identify::<Acme>().unwrap().score, 50);
    }

    #[test]
    fn renames_the_primary_network_and_sets_its_passphrase() {
        let mut device = TestDevice::from_genieacs_csv(EXPORT).unwrap();
        let settings = WifiSettings {
            target: WifiTarget::All,
            ssid: Some("Roost".into()),
            passphrase: Some("correct horse".into()),
            enabled: None,
        };
        let (result, run) = device.call(|| Acme::configure_wifi(&settings));
        result.unwrap();
        let paths: Vec<&str> = run.declarations.iter().filter(|d| d.value.is_some()).map(|d| d.path.as_str()).collect();
        assert_eq!(paths, ["Device.WiFi.SSID.1.SSID", "Device.WiFi.AccessPoint.1.Security.KeyPassphrase"]);
    }
}
