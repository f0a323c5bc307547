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
