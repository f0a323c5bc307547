//! The provision of the plugin tutorial (docs/PLUGINS.md, section 3): a guest Wi-Fi network,
//! created when missing, and the primary networks' passphrase through the device's adapter.

use roost_plugin_sdk::prelude::*;

pub struct GuestWifi;

impl Provision for GuestWifi {
    fn run(args: &Args) -> Result<()> {
        let ssid = args.get("ssid").unwrap_or("Guest");
        // One guest SSID instance, created if missing, enabled.
        declare(format!("Device.WiFi.SSID.[SSID:{ssid}]")).instances(1);
        declare(format!("Device.WiFi.SSID.[SSID:{ssid}].Enable")).value(true);
        // Through the device's adapter, whatever its vendor:
        intents::configure_wifi(&WifiSettings {
            target: WifiTarget::All,
            ssid: None,
            passphrase: args.get("passphrase").map(str::to_owned),
            enabled: None,
        })?;
        if !tags::has("guest-wifi") {
            tags::add("guest-wifi")?;
        }
        log::info(&format!("guest network {ssid}"));
        Ok(())
    }
}

export_provision!(GuestWifi);

#[cfg(test)]
mod tests {

    use roost_plugin_sdk::pattern::Pattern;
    use roost_plugin_sdk::testing::TestDevice;

    use super::*;

    const EXPORT: &str = include_str!("../../../tests/data/cpe/tplink-xx230v_tr181_genieacs-export.csv");

    #[test]
    fn converges_with_the_tutorial_adapter() {
        let mut device = TestDevice::from_genieacs_csv(EXPORT).unwrap();
        device.facts.oui = "00D0D0".into();
        device.with_adapter::<tutorial_adapter::Acme>();
        let converged = device.converge::<GuestWifi>(&[("ssid", "Guest"), ("passphrase", "correct horse")]).unwrap();
        assert!(converged.rounds >= 2, "the guest network is added, then enabled: {} rounds", converged.rounds);
        let guest = device.tree.expand(&Pattern::parse("Device.WiFi.SSID.[SSID:Guest].").unwrap());
        assert_eq!(guest.len(), 1, "one guest network");
        assert!(device.tags.contains(&"guest-wifi".to_string()));
    }
}
