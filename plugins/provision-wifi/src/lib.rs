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
            let tail = &serial[serial.len().saturating_sub(6)..];
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
