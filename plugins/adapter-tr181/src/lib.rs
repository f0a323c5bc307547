//! `adapter-tr181`: any `Device.` device, by the standard TR-181 parameters. Vendor adapters score
//! higher for their devices; this one catches the rest.

use adapter_kit::{Profile, standard_operations, tr181};
use roost_plugin_sdk::prelude::*;

pub struct Tr181;

impl Adapter for Tr181 {
    fn identify(facts: &DeviceFacts) -> Option<Identification> {
        (facts.root == tr181::ROOT).then(|| Identification { score: 10, family: "tr181-generic".into() })
    }

    standard_operations!(tr181, Profile::STANDARD);
}

export_adapter!(Tr181);

#[cfg(test)]
mod tests {

    use roost_plugin_sdk::testing::TestDevice;

    use super::*;

    fn tplink() -> TestDevice {
        TestDevice::from_genieacs_csv(roost_plugin_sdk::testing::exports::TPLINK_XX230V_TR181).unwrap()
    }

    #[test]
    fn claims_every_tr181_device_at_the_lowest_score() {
        assert_eq!(tplink().identify::<Tr181>().unwrap().score, 10);
    }

    #[test]
    fn the_standard_mapping_follows_the_enabled_default_route() {
        let mut device = tplink();
        // IPv4Forwarding.1 (disabled) points at a USB modem's PPP; the enabled default route
        // leads to PPP.Interface.3.
        let (connection, _) = device.call(tr181::internet_connection);
        assert_eq!(connection.unwrap().as_deref(), Some("Device.PPP.Interface.3."));
        let (networks, _) = device.call(|| Tr181::wifi(Duration::from_secs(3600)));
        let networks = networks.unwrap();
        let first = networks.iter().find(|n| n.key == "Device.WiFi.SSID.1.").unwrap();
        assert_eq!(first.ssid, "TP-Link_2AC8");
        assert_eq!(first.band, Some(Band::Band24));
        assert_eq!(first.channel, Some(10));
        let (health, _) = device.call(|| Tr181::health(Duration::from_secs(300)));
        let health = health.unwrap();
        assert_eq!(health.uptime_seconds, Some(15687));
        assert_eq!(health.wan_bytes_sent, Some(6_460_103));
        assert_eq!(health.optical_rx_dbm, None, "an unfilled 0 is no reading");
    }
}
