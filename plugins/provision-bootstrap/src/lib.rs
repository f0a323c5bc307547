//! `bootstrap`: what every device gets when it first registers (Inform `0 BOOTSTRAP`, also after
//! a factory reset): its periodic Inform interval, fresh connection-request credentials, and the
//! organization's tag.
//!
//! Arguments (all optional):
//! - `interval`: periodic Inform interval in seconds (default 3600; 30 to 86400);
//! - `lab`: `true` lowers the interval's floor to 1 s, for simulated devices in a lab. The floor
//!   is there because a fleet of real CPEs told to inform every few seconds is a load the ISP
//!   inflicts on itself; a lab opts out of it by name, not by accident;
//! - `tag`: a tag to add (the organization's, for example);
//! - `username-prefix`: prefix of the connection-request user name (default `roost-`); the rest is
//!   the device's serial number.
//!
//! The password is drawn from the session's generator, so it is the same in every round of the
//! session and new at every bootstrap. Roost keeps it, sealed, to wake the device later.

use roost_plugin_sdk::ManagementSettings;
use roost_plugin_sdk::prelude::*;

pub struct Bootstrap;

impl Provision for Bootstrap {
    fn run(args: &Args) -> Result<()> {
        let interval: u32 = args.parse("interval")?.unwrap_or(3600);
        let lab = args.parse("lab")?.unwrap_or(false);
        let allowed = allowed_intervals(lab);
        if !allowed.contains(&interval) {
            return Err(Error::invalid_argument(format!(
                "interval {interval} is outside {}..={} seconds{}",
                allowed.start(),
                allowed.end(),
                if interval < *allowed.start() && !lab {
                    " (a lab's simulated devices may go lower with \"lab\": \"true\")"
                } else {
                    ""
                }
            )));
        }
        let prefix = args.get("username-prefix").unwrap_or("roost-");
        let serial = device::facts().serial_number;
        let settings = ManagementSettings {
            periodic_inform_interval: Some(interval),
            connection_request_username: Some(format!("{prefix}{serial}")),
            connection_request_password: Some(random::alphanumeric(24)),
        };
        match intents::configure_management(&settings) {
            // `ManagementServer` is the same object in both data models, so a device whose
            // adapter leaves it out, whose tree is not known yet, or that has no adapter is still
            // bootstrapped.
            Err(e) if matches!(e.kind, ErrorKind::Unsupported) => standard_management(&settings),
            other => other?,
        }
        if let Some(tag) = args.get("tag") {
            tags::add(tag)?;
        }
        Ok(())
    }
}

/// The periodic Inform intervals the provision sets, in seconds.
fn allowed_intervals(lab: bool) -> std::ops::RangeInclusive<u32> {
    if lab { 1..=86_400 } else { 30..=86_400 }
}

fn standard_management(settings: &ManagementSettings) {
    // Read once if never read: a device whose tree is not known yet gets its management server
    // listed first, then written.
    const IF_NEVER_READ: Duration = Duration::from_secs(365 * 86_400);
    let ms = format!("{}.ManagementServer.", device::root());
    if let Some(interval) = settings.periodic_inform_interval {
        declare(format!("{ms}PeriodicInformEnable")).value(true).refresh(IF_NEVER_READ);
        declare(format!("{ms}PeriodicInformInterval")).value(interval).refresh(IF_NEVER_READ);
    }
    if let Some(username) = &settings.connection_request_username {
        declare(format!("{ms}ConnectionRequestUsername")).value(username.as_str()).refresh(IF_NEVER_READ);
    }
    if let Some(password) = &settings.connection_request_password {
        declare(format!("{ms}ConnectionRequestPassword")).value(password.as_str()).refresh(IF_NEVER_READ);
    }
}

export_provision!(Bootstrap);

#[cfg(test)]
mod tests {

    use roost_plugin_sdk::testing::TestDevice;

    use super::*;

    const HUAWEI: &str = roost_plugin_sdk::testing::exports::HUAWEI_EG8145V5_TR098;
    const TPLINK: &str = roost_plugin_sdk::testing::exports::TPLINK_XX230V_TR181;

    fn value(device: &TestDevice, path: &str) -> String {
        device.tree.get(path).and_then(|n| n.value.clone()).unwrap_or_default()
    }

    #[test]
    fn sets_interval_and_per_device_credentials_through_the_adapter() {
        let mut device = TestDevice::from_genieacs_csv(HUAWEI).unwrap();
        device.with_adapter::<adapter_huawei::Huawei>();
        let converged = device.converge::<Bootstrap>(&[("interval", "900"), ("tag", "isp-a")]).unwrap();
        assert_eq!(converged.rounds, 2, "{:?}", converged.changes);
        let ms = "InternetGatewayDevice.ManagementServer.";
        assert_eq!(value(&device, &format!("{ms}PeriodicInformInterval")), "900");
        let serial = device.facts.serial_number.clone();
        assert_eq!(value(&device, &format!("{ms}ConnectionRequestUsername")), format!("roost-{serial}"));
        assert_eq!(value(&device, &format!("{ms}ConnectionRequestPassword")).len(), 24);
        assert!(device.tags.contains(&"isp-a".to_string()));
    }

    #[test]
    fn without_a_capable_adapter_writes_the_standard_object() {
        let mut device = TestDevice::from_genieacs_csv(TPLINK).unwrap();
        let converged = device.converge::<Bootstrap>(&[("username-prefix", "acs-")]).unwrap();
        assert!(converged.rounds <= 2, "{:?}", converged.changes);
        let serial = device.facts.serial_number.clone();
        assert_eq!(value(&device, "Device.ManagementServer.ConnectionRequestUsername"), format!("acs-{serial}"));
        assert_eq!(value(&device, "Device.ManagementServer.PeriodicInformInterval"), "3600");
        assert!(matches!(value(&device, "Device.ManagementServer.PeriodicInformEnable").as_str(), "1" | "true"));
    }

    #[test]
    fn a_new_session_draws_a_new_password() {
        let mut device = TestDevice::from_genieacs_csv(TPLINK).unwrap();
        device.converge::<Bootstrap>(&[]).unwrap();
        let first = value(&device, "Device.ManagementServer.ConnectionRequestPassword");
        device.seed ^= 0xdead_beef;
        device.converge::<Bootstrap>(&[]).unwrap();
        assert_ne!(value(&device, "Device.ManagementServer.ConnectionRequestPassword"), first);
    }

    #[test]
    fn refuses_an_interval_out_of_range() {
        let mut device = TestDevice::from_genieacs_csv(TPLINK).unwrap();
        let error = device.converge::<Bootstrap>(&[("interval", "5")]).unwrap_err();
        assert!(error.message.contains("30..=86400") && error.message.contains("\"lab\""), "{error:?}");
        let error = device.converge::<Bootstrap>(&[("interval", "0"), ("lab", "true")]).unwrap_err();
        assert!(error.message.contains("1..=86400"), "{error:?}");
        let error = device.converge::<Bootstrap>(&[("interval", "90000")]).unwrap_err();
        assert!(!error.message.contains("\"lab\""), "no use above the range: {error:?}");
        let error = device.converge::<Bootstrap>(&[("interval", "5"), ("lab", "yes")]).unwrap_err();
        assert!(error.message.contains("`lab`"), "{error:?}");
    }

    #[test]
    fn a_lab_may_set_a_short_interval_by_saying_so() {
        let mut device = TestDevice::from_genieacs_csv(TPLINK).unwrap();
        device.converge::<Bootstrap>(&[("interval", "10"), ("lab", "true")]).unwrap();
        assert_eq!(device.text("Device.ManagementServer.PeriodicInformInterval").as_deref(), Some("10"));
    }
}
