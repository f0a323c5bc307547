//! `health`: keeps the device's health figures (uptime, CPU, memory, traffic, Wi-Fi clients,
//! optical or cellular signal: RSRP from `health`, RSSI and SINR from `radio`) fresh, for
//! dashboards and alerts.
//!
//! Argument: `max-age`, in seconds (default 300): figures older than this are read again. On a
//! periodic Inform more frequent than `max-age`, a run declares nothing to fetch and costs no
//! CWMP round trip.

use roost_plugin_sdk::prelude::*;

pub struct Health;

impl Provision for Health {
    fn run(args: &Args) -> Result<()> {
        let max_age: u64 = args.parse("max-age")?.unwrap_or(300);
        let max_age = Duration::from_secs(max_age);
        intents::health(max_age)?;
        // The radio figures are extra: adapters without them (built against roost:plugin 0.1.0,
        // or for devices with no wireless WAN) answer `unsupported`, and any other failure (the
        // host records an adapter's own fault) must not cost the figures `health` read.
        match radio::cellular(max_age) {
            Ok(_) => {}
            Err(e) if e.kind == ErrorKind::Unsupported => {}
            Err(e) => log::warn(&format!("no radio figures: {}", e.message)),
        }
        Ok(())
    }
}

export_provision!(Health);

#[cfg(test)]
mod tests {

    use roost_plugin_sdk::pattern::Pattern;
    use roost_plugin_sdk::testing::{Run, TestDevice};

    use super::*;

    const XX230V: &str = roost_plugin_sdk::testing::exports::TPLINK_XX230V_TR181;
    const EG8145V5: &str = roost_plugin_sdk::testing::exports::HUAWEI_EG8145V5_TR098;

    /// The leaves the host would fetch for a run's declarations: TestDevice records refreshes
    /// without judging them, so this applies the host's rule (older than the max-age, or any
    /// age for a max-age of 0).
    fn to_fetch(device: &TestDevice, run: &Run) -> Vec<String> {
        let mut stale = Vec::new();
        for d in &run.declarations {
            let Some(max_age) = d.max_age else { continue };
            for leaf in device.tree.leaves(&Pattern::parse(&d.path).unwrap()) {
                let age = device.now_ms - device.tree.get(&leaf).unwrap().updated_ms;
                if max_age.is_zero() || u128::from(age) > max_age.as_millis() {
                    stale.push(leaf);
                }
            }
        }
        stale
    }

    #[test]
    fn first_run_fetches_every_health_figure_and_writes_nothing() {
        let mut device = TestDevice::from_genieacs_csv(XX230V).unwrap();
        device.with_adapter::<adapter_tplink::TpLink>();
        let run = device.run::<Health>(&[]);
        run.result.clone().unwrap();
        let fetched = to_fetch(&device, &run);
        for figure in [
            "Device.DeviceInfo.UpTime",
            "Device.DeviceInfo.ProcessStatus.CPUUsage",
            "Device.DeviceInfo.MemoryStatus.Total",
            "Device.DeviceInfo.MemoryStatus.Free",
            // The PPPoE session's IP interface, not the USB modem's.
            "Device.IP.Interface.6.Stats.BytesSent",
            "Device.IP.Interface.6.Stats.BytesReceived",
            "Device.Optical.Interface.1.X_TP_GPON_Config.RXPower",
            "Device.WiFi.AccessPoint.1.AssociatedDeviceNumberOfEntries",
        ] {
            assert!(fetched.iter().any(|p| p == figure), "{figure} not fetched: {fetched:?}");
        }
        assert!(run.declarations.iter().all(|d| d.max_age == Some(Duration::from_secs(300))), "the default max-age");
        assert!(run.declarations.iter().all(|d| d.value.is_none() && d.instances.is_none()));
        assert!(device.converge::<Health>(&[]).unwrap().changes.is_empty());
    }

    #[test]
    fn figures_younger_than_max_age_are_not_fetched_again() {
        let mut device = TestDevice::from_genieacs_csv(EG8145V5).unwrap();
        device.with_adapter::<adapter_huawei::Huawei>();
        let first = device.run::<Health>(&[("max-age", "600")]);
        let fetched = to_fetch(&device, &first);
        assert!(fetched.iter().any(|p| p == "InternetGatewayDevice.DeviceInfo.X_HW_CpuUsed"), "{fetched:?}");
        // The host fetched them; the next periodic Inform comes seven minutes later, past the
        // default max-age, so only the argument keeps them fresh.
        for path in &fetched {
            device.tree.get_mut(path).unwrap().updated_ms = device.now_ms;
        }
        device.now_ms += 420_000;
        let second = device.run::<Health>(&[("max-age", "600")]);
        second.result.clone().unwrap();
        assert!(!second.declarations.is_empty());
        assert_eq!(to_fetch(&device, &second), Vec::<String>::new());
        // With a max-age below their age, the same figures are due again.
        let shorter = device.run::<Health>(&[("max-age", "120")]);
        assert_eq!(to_fetch(&device, &shorter), fetched);
    }

    #[test]
    fn a_wireless_wan_s_signal_is_fetched_where_the_device_has_one() {
        const BM632W: &str = roost_plugin_sdk::testing::exports::HUAWEI_BM632W_TR098;
        let mut device = TestDevice::from_genieacs_csv(BM632W).unwrap();
        device.with_adapter::<adapter_huawei::Huawei>();
        let run = device.run::<Health>(&[]);
        run.result.clone().unwrap();
        let fetched = to_fetch(&device, &run);
        for figure in ["InternetGatewayDevice.WiMAX.Status.RSSI", "InternetGatewayDevice.WiMAX.Status.CINR1"] {
            assert!(fetched.iter().any(|p| p == figure), "{figure} not fetched: {fetched:?}");
        }
    }

    #[test]
    fn an_adapter_without_radio_figures_is_no_failure() {
        // An adapter that implements `health` and not `cellular` (as the ZTE and Nokia ones):
        // `radio` answers `unsupported`, and the run succeeds with the `health` figures.
        struct NoRadio;
        impl Adapter for NoRadio {
            fn identify(_: &DeviceFacts) -> Option<Identification> {
                None
            }
            fn health(max_age: Duration) -> Result<roost_plugin_sdk::HealthReport> {
                <adapter_huawei::Huawei as Adapter>::health(max_age)
            }
        }
        let mut device = TestDevice::from_genieacs_csv(EG8145V5).unwrap();
        device.with_adapter::<NoRadio>();
        let run = device.run::<Health>(&[]);
        run.result.clone().unwrap();
        assert!(to_fetch(&device, &run).iter().any(|p| p == "InternetGatewayDevice.DeviceInfo.X_HW_CpuUsed"));
    }

    #[test]
    fn unparsable_max_age_is_refused_without_declarations() {
        for max_age in ["5m", "-1", ""] {
            let mut device = TestDevice::from_genieacs_csv(EG8145V5).unwrap();
            device.with_adapter::<adapter_huawei::Huawei>();
            let run = device.run::<Health>(&[("max-age", max_age)]);
            assert_eq!(run.result.unwrap_err().kind, ErrorKind::InvalidArgument, "{max_age:?}");
            assert!(run.declarations.is_empty());
        }
    }
}
