//! `adapter-tr098`: any `InternetGatewayDevice.` device, by the standard TR-098 parameters. Vendor
//! adapters score higher for their devices; this one catches the rest.

use adapter_kit::{Profile, standard_operations, tr098};
use roost_plugin_sdk::prelude::*;

pub struct Tr098;

impl Adapter for Tr098 {
    fn identify(facts: &DeviceFacts) -> Option<Identification> {
        (facts.root == tr098::ROOT).then(|| Identification { score: 10, family: "tr098-generic".into() })
    }

    standard_operations!(tr098, Profile::STANDARD);
}

export_adapter!(Tr098);

#[cfg(test)]
mod tests {

    use roost_plugin_sdk::testing::TestDevice;
    use roost_plugin_sdk::{ManagementSettings, PppoeSettings};

    use super::*;

    fn nokia() -> TestDevice {
        TestDevice::from_genieacs_csv(roost_plugin_sdk::testing::exports::NOKIA_G1425GA_TR098).unwrap()
    }

    #[test]
    fn claims_every_tr098_device_at_the_lowest_score_and_no_tr181_one() {
        assert_eq!(nokia().identify::<Tr098>().unwrap().score, 10);
        let tplink = TestDevice::from_genieacs_csv(roost_plugin_sdk::testing::exports::TPLINK_XX230V_TR181).unwrap();
        assert!(tplink.identify::<Tr098>().is_none());
    }

    #[test]
    fn the_standard_mapping_reads_and_writes_a_real_tree() {
        let mut device = nokia();
        let (networks, _) = device.call(|| Tr098::wifi(Duration::from_secs(3600)));
        let networks = networks.unwrap();
        assert_eq!(networks.len(), 8);
        assert_eq!(networks[0].ssid, "Anlix-Nokia-1425GA");
        assert!(networks[0].primary);
        let (result, run) = device.call(|| {
            Tr098::configure_pppoe(&PppoeSettings { username: "u@isp".into(), password: "p".into(), connection: None })
        });
        result.unwrap();
        let ppp = "InternetGatewayDevice.WANDevice.1.WANConnectionDevice.1.WANPPPConnection.1.";
        let paths: Vec<&str> = run.declarations.iter().map(|d| d.path.as_str()).collect();
        assert_eq!(paths, [format!("{ppp}Username"), format!("{ppp}Password")]);
        let (result, run) = device.call(|| {
            Tr098::configure_management(&ManagementSettings {
                periodic_inform_interval: Some(600),
                connection_request_username: None,
                connection_request_password: None,
            })
        });
        result.unwrap();
        assert_eq!(run.declarations.len(), 2);
        assert_eq!(run.declarations[1].path, "InternetGatewayDevice.ManagementServer.PeriodicInformInterval");
        assert_eq!(run.declarations[1].value, Some(Value::Unsigned(600)));
        let (health, _) = device.call(|| Tr098::health(Duration::from_secs(300)));
        let health = health.unwrap();
        assert_eq!(health.uptime_seconds, Some(3211));
        assert_eq!(health.memory_total_kib, Some(426_116));
        assert_eq!(health.wan_bytes_sent, Some(9_753_906));
    }
}
