//! `pppoe`: the subscriber's PPPoE credentials on the device's internet connection.
//!
//! Arguments: `username` and `password` (required); `connection` (optional), the object path of
//! the WAN connection when the adapter's choice is not the right one.

use roost_plugin_sdk::PppoeSettings;
use roost_plugin_sdk::prelude::*;

pub struct Pppoe;

impl Provision for Pppoe {
    fn run(args: &Args) -> Result<()> {
        let username = args.require("username")?;
        let password = args.require("password")?;
        if username.is_empty() || username.len() > 256 || password.len() > 256 {
            return Err(Error::invalid_argument("username must be 1 to 256 bytes, password at most 256"));
        }
        intents::configure_pppoe(&PppoeSettings {
            username: username.to_owned(),
            password: password.to_owned(),
            connection: args.get("connection").map(str::to_owned),
        })
    }
}

export_provision!(Pppoe);

#[cfg(test)]
mod tests {

    use roost_plugin_sdk::testing::TestDevice;

    use super::*;

    const EG8145V5: &str = roost_plugin_sdk::testing::exports::HUAWEI_EG8145V5_TR098;
    const H199A: &str = roost_plugin_sdk::testing::exports::ZTE_ZXHN_H199A_TR098;
    const XX230V: &str = roost_plugin_sdk::testing::exports::TPLINK_XX230V_TR181;
    const CREDENTIALS: &[(&str, &str)] = &[("username", "roost@isp"), ("password", "s3cret-pw")];

    fn credentials(device: &TestDevice, connection: &str) -> (String, String) {
        let field = |name: &str| device.text(&format!("{connection}{name}")).unwrap();
        (field("Username"), field("Password"))
    }

    fn roost_credentials() -> (String, String) {
        ("roost@isp".into(), "s3cret-pw".into())
    }

    #[test]
    fn huawei_ont_gets_the_credentials_on_its_connected_internet_connection() {
        let mut device = TestDevice::from_genieacs_csv(EG8145V5).unwrap();
        device.with_adapter::<adapter_huawei::Huawei>();
        let converged = device.converge::<Pppoe>(CREDENTIALS).unwrap();
        assert_eq!(converged.rounds, 2);
        assert_eq!(converged.changes.len(), 2, "{:?}", converged.changes);
        let wan = "InternetGatewayDevice.WANDevice.1.WANConnectionDevice.";
        assert_eq!(credentials(&device, &format!("{wan}4.WANPPPConnection.1.")), roost_credentials());
        // The disconnected leftover the generic rule would pick keeps its own account.
        assert_eq!(credentials(&device, &format!("{wan}1.WANPPPConnection.1.")).0, "iadtest@pppoe");
        // Once written, a later session has nothing to change.
        assert!(device.converge::<Pppoe>(CREDENTIALS).unwrap().changes.is_empty());
    }

    #[test]
    fn generic_tr098_adapter_follows_the_default_connection_service() {
        let mut device = TestDevice::from_genieacs_csv(H199A).unwrap();
        device.with_adapter::<adapter_tr098::Tr098>();
        device.converge::<Pppoe>(CREDENTIALS).unwrap();
        let connection = "InternetGatewayDevice.WANDevice.1.WANConnectionDevice.1.WANPPPConnection.2.";
        assert_eq!(credentials(&device, connection), roost_credentials());
    }

    #[test]
    fn tr181_router_gets_the_credentials_on_its_pppoe_interface_not_the_usb_modem() {
        let tplink = {
            let mut device = TestDevice::from_genieacs_csv(XX230V).unwrap();
            device.with_adapter::<adapter_tplink::TpLink>();
            device
        };
        let generic = {
            let mut device = TestDevice::from_genieacs_csv(XX230V).unwrap();
            device.with_adapter::<adapter_tr181::Tr181>();
            device
        };
        for mut device in [tplink, generic] {
            device.converge::<Pppoe>(CREDENTIALS).unwrap();
            assert_eq!(credentials(&device, "Device.PPP.Interface.3."), roost_credentials());
            assert_eq!(credentials(&device, "Device.PPP.Interface.1."), (String::new(), String::new()));
        }
    }

    #[test]
    fn connection_argument_overrides_the_adapter_choice() {
        let mut device = TestDevice::from_genieacs_csv(XX230V).unwrap();
        device.with_adapter::<adapter_tplink::TpLink>();
        let args = [CREDENTIALS, &[("connection", "Device.PPP.Interface.1")]].concat();
        device.converge::<Pppoe>(&args).unwrap();
        assert_eq!(credentials(&device, "Device.PPP.Interface.1."), roost_credentials());
        assert_eq!(credentials(&device, "Device.PPP.Interface.3.").0, "admin123");
    }

    #[test]
    fn missing_or_out_of_range_credentials_are_refused_without_declarations() {
        let long = "u".repeat(257);
        for args in [
            vec![("username", "roost@isp")],
            vec![("password", "s3cret-pw")],
            vec![("username", ""), ("password", "s3cret-pw")],
            vec![("username", long.as_str()), ("password", "s3cret-pw")],
            vec![("username", "roost@isp"), ("password", long.as_str())],
        ] {
            let mut device = TestDevice::from_genieacs_csv(XX230V).unwrap();
            device.with_adapter::<adapter_tplink::TpLink>();
            let run = device.run::<Pppoe>(&args);
            assert_eq!(run.result.unwrap_err().kind, ErrorKind::InvalidArgument, "{args:?}");
            assert!(run.declarations.is_empty(), "{args:?}: {:?}", run.declarations);
        }
    }
}
