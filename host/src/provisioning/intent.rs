//! Device actions carried out through the device's adapter: a task's Wi-Fi or PPPoE change
//! becomes a call of the adapter's canonical intent, whose declarations the engine converges
//! like a provision's ([`super::engine::Provisioning::for_intent`]).

use std::sync::Arc;

use crate::plugins::bindings::intent_types::{Band as WitBand, PppoeSettings, WifiSettings, WifiTarget as WitTarget};
use crate::plugins::{DeviceView, Loaded, PluginFault, PluginLimits, PluginRuntime, RunOutput};
use crate::tasks::{Band, WifiChange, WifiTarget};

/// What a task asks of the device's adapter.
#[derive(Debug, Clone)]
pub enum Intent {
    ConfigureWifi(WifiSettings),
    ConfigurePppoe(PppoeSettings),
}

impl Intent {
    pub fn wifi(change: &WifiChange) -> Self {
        let band = |band: Band| match band {
            Band::Band24 => WitBand::Band24,
            Band::Band5 => WitBand::Band5,
            Band::Band6 => WitBand::Band6,
        };
        Self::ConfigureWifi(WifiSettings {
            target: match &change.target {
                WifiTarget::All => WitTarget::All,
                WifiTarget::Band(b) => WitTarget::Band(band(*b)),
                WifiTarget::Network(key) => WitTarget::Network(key.clone()),
            },
            ssid: change.ssid.clone(),
            passphrase: change.passphrase.clone(),
            enabled: change.enabled,
        })
    }

    pub fn pppoe(username: String, password: String, connection: Option<String>) -> Self {
        Self::ConfigurePppoe(PppoeSettings { username, password, connection })
    }

    /// The intent's name in the `intents` interface, for faults and logs.
    pub fn name(&self) -> &'static str {
        match self {
            Self::ConfigureWifi(_) => "configure-wifi",
            Self::ConfigurePppoe(_) => "configure-pppoe",
        }
    }

    /// Calls the adapter once. Blocking.
    pub(super) fn call(
        &self,
        runtime: &PluginRuntime,
        adapter: &Loaded,
        view: Arc<DeviceView>,
        limits: PluginLimits,
    ) -> (Result<(), PluginFault>, RunOutput) {
        match self {
            Self::ConfigureWifi(settings) => runtime.run_intent(adapter, view, limits, |a, store| {
                a.roost_plugin_intents().call_configure_wifi(store, settings)
            }),
            Self::ConfigurePppoe(settings) => runtime.run_intent(adapter, view, limits, |a, store| {
                a.roost_plugin_intents().call_configure_pppoe(store, settings)
            }),
        }
    }
}
