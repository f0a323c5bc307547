//! Which adapter handles a device: every adapter visible to its organization is asked to
//! `identify` the device, and the highest score wins (on a tie, the nearer owner, then the later
//! upload). The choice is cached by organization and device facts, so a fleet of one model costs
//! one round of `identify` calls per process, not one per session.
//!
//! An adapter whose `identify` fails (spins, traps) cannot handle the device: the failure is
//! recorded as a fault of that adapter against the device. When the failure is the adapter's own
//! doing ([`PluginFault::repeats`]), the adapter is not asked about devices like it again until
//! its code changes (an upload of other bytes, a new hash) or the organization's plugin limits
//! do; a failure of the moment (the backstop, a full instance pool) is asked again next time.

use std::sync::Arc;

use anyhow::{Context, Result};
use roost_cwmp::DataModel;

use super::Provisioner;
use super::presets::OrgProvisioning;
use crate::plugins::bindings::types::DeviceFacts;
use crate::plugins::{DeviceView, Loaded, PluginFault, PluginLimits};
use crate::store::devices::Device;
use crate::store::faults;
use crate::store::plugins::{self, PluginRow};
use crate::store::{Store, parameters};

/// The adapter chosen for a device.
#[derive(Debug, Clone)]
pub struct Chosen {
    pub plugin: PluginRow,
    pub score: u32,
    pub family: String,
    pub loaded: Arc<Loaded>,
}

/// What the cache keeps: the plugin's id, its score and family; `None` when no adapter claimed
/// the device.
pub type Choice = Option<(i64, u32, String)>;

/// What adapters are told about a device, from its row; the model name is read from the tree
/// (it is not in the Inform's DeviceId).
pub async fn facts(store: &Store, device: &Device) -> Result<DeviceFacts> {
    let model_path = format!("{}DeviceInfo.ModelName", device.model().map_or("", DataModel::root));
    let stored = parameters::stored_values(store, device.id, &[model_path.as_str()]).await?;
    let model_name = stored.get(&model_path).and_then(|(v, _)| v.clone()).filter(|v| !v.is_empty());
    Ok(facts_with_model(device, model_name))
}

/// The facts, with the model name already known.
pub fn facts_with_model(device: &Device, model_name: Option<String>) -> DeviceFacts {
    let non_empty = |s: &str| (!s.is_empty()).then(|| s.to_owned());
    DeviceFacts {
        manufacturer: device.manufacturer.clone(),
        oui: device.oui.clone(),
        product_class: device.product_class.clone(),
        serial_number: device.serial_number.clone(),
        model_name,
        software_version: non_empty(&device.software_version),
        hardware_version: non_empty(&device.hardware_version),
        root: device.model().map_or("", DataModel::root_name).to_owned(),
    }
}

/// The key of an adapter's failed `identify` for devices with this cache key under these limits:
/// the adapter's hash is part of it, so a new upload is asked again, and so are the limits, since
/// an adapter that ran out of memory under one limit may fit the next.
fn failure_key(hash: &str, key: &str, limits: &PluginLimits) -> String {
    format!("{hash}\u{1f}{key}\u{1f}{limits:?}")
}

/// An adapter whose `identify` failed.
#[derive(Debug)]
struct FailedIdentify {
    plugin: PluginRow,
    fault: PluginFault,
}

fn cache_key(org_id: Option<i64>, device: &Device) -> String {
    // Fields joined with a byte no CWMP string carries.
    [
        org_id.map_or_else(String::new, |o| o.to_string()).as_str(),
        &device.oui,
        &device.product_class,
        &device.manufacturer,
        &device.software_version,
        &device.hardware_version,
        &device.data_model,
    ]
    .join("\u{1f}")
}

/// Compiles (or takes from the runtime's cache) a stored plugin. Blocking on a miss.
pub fn load_blocking(p: &Provisioner, handle: &tokio::runtime::Handle, plugin: &PluginRow) -> Result<Arc<Loaded>> {
    p.plugins
        .load(&plugin.hash, || handle.block_on(plugins::component(&p.store, plugin.id)))
        .with_context(|| format!("loading plugin {} {}", plugin.name, plugin.version))
}

/// The adapter for `device`, choosing (and caching the choice) when needed. `view` is the view
/// adapters identify against; one is made from the device's row when `None`.
pub async fn for_device(
    p: &Arc<Provisioner>,
    device: &Device,
    org: &Arc<OrgProvisioning>,
    view: Option<Arc<DeviceView>>,
) -> Result<Option<Chosen>> {
    if org.adapters.is_empty() {
        return Ok(None);
    }
    let key = cache_key(device.org_id, device);
    let choice = match p.adapter_choice(&key) {
        Some(choice) => choice,
        None => {
            let view = match view {
                Some(view) => view,
                None => Arc::new(DeviceView::new(
                    facts(&p.store, device).await?,
                    device.device_id.clone(),
                    Vec::new(),
                    Vec::new(),
                    Default::default(),
                )),
            };
            let p2 = p.clone();
            let org2 = org.clone();
            let handle = tokio::runtime::Handle::current();
            let key2 = key.clone();
            let (choice, failed) = tokio::task::spawn_blocking(move || identify_all(&p2, &handle, &org2, view, &key2))
                .await
                .context("choosing an adapter")?;
            for failure in failed {
                record_failed_identify(p, device, &failure).await;
                if failure.fault.repeats() {
                    p.remember_identify_failure(failure_key(&failure.plugin.hash, &key, &org.limits));
                }
            }
            p.remember_adapter_choice(key, choice.clone());
            choice
        }
    };
    let Some((plugin_id, score, family)) = choice else { return Ok(None) };
    let Some(plugin) = org.adapters.iter().find(|p| p.id == plugin_id).cloned() else { return Ok(None) };
    let loaded = match p.plugins.cached(&plugin.hash) {
        Some(loaded) => loaded,
        None => {
            let p2 = p.clone();
            let plugin2 = plugin.clone();
            let handle = tokio::runtime::Handle::current();
            tokio::task::spawn_blocking(move || load_blocking(&p2, &handle, &plugin2))
                .await
                .context("loading the adapter")??
        }
    };
    Ok(Some(Chosen { plugin, score, family, loaded }))
}

/// Records an adapter's failed `identify` as its fault against the device. A store that cannot
/// take it is logged: the session goes on with the other adapters either way.
async fn record_failed_identify(p: &Provisioner, device: &Device, failure: &FailedIdentify) {
    let FailedIdentify { plugin, fault } = failure;
    let message = if fault.repeats() {
        format!(
            "identify {}: {fault}; {} {} is not asked about devices like this one again until other code of it is uploaded or the plugin limits change",
            device.device_id, plugin.name, plugin.version
        )
    } else {
        format!("identify {}: {fault}", device.device_id)
    };
    let detail = serde_json::json!({"plugin": plugin.name, "version": plugin.version, "call": "identify"});
    let channel = format!("adapter:{}", plugin.name);
    if let Err(error) = faults::record(&p.store, device.id, &channel, fault.code(), &message, Some(&detail)).await {
        tracing::warn!(plugin = %plugin.name, device = %device.device_id, "{message}; recording the fault failed: {error:#}");
    }
}

/// Asks every adapter that has not failed for devices like this one before; those that fail now
/// are returned with their fault (they cannot handle the device).
fn identify_all(
    p: &Provisioner,
    handle: &tokio::runtime::Handle,
    org: &OrgProvisioning,
    view: Arc<DeviceView>,
    key: &str,
) -> (Choice, Vec<FailedIdentify>) {
    let mut best: Choice = None;
    let mut failed = Vec::new();
    for plugin in org.adapters.iter().filter(|plugin| !p.identify_failed(&failure_key(&plugin.hash, key, &org.limits)))
    {
        let loaded = match load_blocking(p, handle, plugin) {
            Ok(loaded) => loaded,
            Err(error) => {
                tracing::error!(plugin = %plugin.name, "{error:#}");
                continue;
            }
        };
        match p.plugins.identify(&loaded, view.clone(), org.limits) {
            Ok(Some(found)) => {
                if best.as_ref().is_none_or(|(_, score, _)| found.score > *score) {
                    best = Some((plugin.id, found.score, found.family));
                }
            }
            Ok(None) => {}
            Err(fault) => failed.push(FailedIdentify { plugin: plugin.clone(), fault }),
        }
    }
    (best, failed)
}
