//! `bootstrap`: what every device gets when it first registers (Inform `0 BOOTSTRAP`, also after
//! a factory reset): its periodic Inform interval, fresh connection-request credentials, and the
//! organization's tag.
//!
//! Arguments (all optional):
//! - `interval`: periodic Inform interval in seconds (default 3600; 30 to 86400);
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
        if !(30..=86_400).contains(&interval) {
            return Err(Error::invalid_argument(format!("interval {interval} is outside 30..=86400 seconds")));
        }
        let prefix = args.get("username-prefix").unwrap_or("roost-");
        let serial = device::facts().serial_number;
        intents::configure_management(&ManagementSettings {
            periodic_inform_interval: Some(interval),
            connection_request_username: Some(format!("{prefix}{serial}")),
            connection_request_password: Some(random::alphanumeric(24)),
        })?;
        if let Some(tag) = args.get("tag") {
            tags::add(tag)?;
        }
        Ok(())
    }
}

export_provision!(Bootstrap);
