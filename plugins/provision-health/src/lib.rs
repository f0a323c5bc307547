//! `health`: keeps the device's health figures (uptime, CPU, memory, traffic, Wi-Fi clients,
//! optical or cellular signal) fresh, for dashboards and alerts.
//!
//! Argument: `max-age`, in seconds (default 300): figures older than this are read again. On a
//! periodic Inform more frequent than `max-age`, a run declares nothing to fetch and costs no
//! CWMP round trip.

use roost_plugin_sdk::prelude::*;

pub struct Health;

impl Provision for Health {
    fn run(args: &Args) -> Result<()> {
        let max_age: u64 = args.parse("max-age")?.unwrap_or(300);
        intents::health(Duration::from_secs(max_age))?;
        Ok(())
    }
}

export_provision!(Health);
