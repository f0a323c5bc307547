//! Provisioning: what provisions declare, turned into CWMP calls.
//!
//! A session runs the presets that match the device ([`presets`]); their provisions declare;
//! [`plan`] turns the declarations and the device's tree into the calls of one round; the
//! [`engine`] sends them, stores the answers, and runs the provisions again until a round plans
//! nothing. [`adapters`] picks the vendor adapter that provisions' intents go through.

pub mod adapters;
pub mod engine;
pub mod intent;
pub mod plan;
pub mod presets;
pub mod reads;

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use anyhow::Result;

use crate::plugins::{PluginRuntime, PluginSettings};
use crate::secrets::Secrets;
use crate::store::Store;
use presets::OrgProvisioning;

/// How long an organization's presets, adapters, limits and plugin configuration are reused
/// before being read again. Writes through this replica's API drop them at once; other replicas
/// see a change within this time.
const ORG_TTL: Duration = Duration::from_secs(10);
/// Adapter choices depend on uploads (which drop them) and device facts (part of the key).
const ADAPTER_TTL: Duration = Duration::from_secs(300);

/// What provisioning needs of the application (the store, the keys, the plugin runtime), and
/// what sessions reuse of it between devices. Provisioning sees nothing else of the `App`.
pub struct Provisioner {
    pub store: Store,
    pub secrets: Secrets,
    pub plugins: Arc<PluginRuntime>,
    /// Names per GetParameterValues when a device has not had to learn a smaller batch
    /// (`[cwmp] discovery_batch`).
    pub discovery_batch: usize,
    orgs: moka::future::Cache<i64, Arc<OrgProvisioning>>,
    adapters: moka::sync::Cache<String, adapters::Choice>,
    /// Adapters whose `identify` failed for devices like these (`adapters::failure_key`): not
    /// asked about them again until their code (and so their hash) or the limits change.
    failed_identify: moka::sync::Cache<String, ()>,
    /// What provisions read of each device, for its next session.
    pub reads: reads::Reads,
    /// Plugin log lines kept per device.
    pub log_lines_per_device: u64,
    /// Provisioning rounds running at once: plugin runs are CPU work, and more of them than
    /// cores only stretch each one's wall-clock time (towards the backstop) without finishing
    /// any sooner.
    pub rounds: tokio::sync::Semaphore,
    pub counters: Counters,
    /// Health figures of settled sessions, until the next batched write.
    pub metrics: Arc<crate::health::MetricsBuffer>,
    /// The STUN server devices are told of, once it listens.
    pub stun: std::sync::OnceLock<StunOffer>,
}

/// The STUN server the built-in `stun` provision points devices at.
#[derive(Debug, Clone)]
pub struct StunOffer {
    /// `[stun] advertise`'s host; `None`: the host of each device's `ManagementServer.URL`.
    pub host: Option<String>,
    pub port: u16,
}

/// What the built-in `stun` provision writes to one device.
#[derive(Debug)]
pub struct StunWrite {
    pub host: Option<String>,
    pub port: u16,
    /// The device id: the STUN server's key to the device.
    pub username: String,
    /// Derived from the device id (`cwmp::stun::password`).
    pub password: String,
}

/// What provisioning cost so far, in the units that matter for its throughput.
#[derive(Debug, Default)]
pub struct Counters {
    /// Provision runs in the sandbox.
    pub sandboxed_runs: AtomicU64,
    /// Provision outputs replayed from a kept entry instead of a run ([`reads`]).
    pub replayed_runs: AtomicU64,
    /// Rounds that ran on an async worker, needing neither a sandbox nor the store.
    pub inline_rounds: AtomicU64,
}

impl std::fmt::Debug for Provisioner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Provisioner").finish_non_exhaustive()
    }
}

impl Provisioner {
    pub fn new(
        store: Store,
        secrets: Secrets,
        plugins: Arc<PluginRuntime>,
        discovery_batch: usize,
        settings: &PluginSettings,
        metrics: Arc<crate::health::MetricsBuffer>,
    ) -> Self {
        Provisioner {
            store,
            secrets,
            plugins,
            discovery_batch,
            orgs: moka::future::Cache::builder().max_capacity(10_000).time_to_live(ORG_TTL).build(),
            adapters: moka::sync::Cache::builder().max_capacity(100_000).time_to_live(ADAPTER_TTL).build(),
            failed_identify: moka::sync::Cache::builder().max_capacity(100_000).build(),
            reads: reads::Reads::new(settings.device_reads_mib.saturating_mul(1024 * 1024)),
            log_lines_per_device: settings.device_log_lines,
            rounds: tokio::sync::Semaphore::new(
                2 * std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get),
            ),
            counters: Counters::default(),
            metrics,
            stun: std::sync::OnceLock::new(),
        }
    }

    /// What applies to devices of `org_id` (`None`: not yet claimed).
    pub async fn org(&self, org_id: Option<i64>) -> Result<Arc<OrgProvisioning>> {
        let key = org_id.unwrap_or(0);
        self.orgs
            .try_get_with(key, async {
                OrgProvisioning::load(&self.store, org_id, self.plugins.default_limits()).await.map(Arc::new)
            })
            .await
            .map_err(|e| anyhow::anyhow!("{e:#}"))
    }

    pub fn adapter_choice(&self, key: &str) -> Option<adapters::Choice> {
        self.adapters.get(key)
    }

    pub fn remember_adapter_choice(&self, key: String, choice: adapters::Choice) {
        self.adapters.insert(key, choice);
    }

    /// Whether an adapter's `identify` failed for devices with this key before.
    pub fn identify_failed(&self, failure_key: &str) -> bool {
        self.failed_identify.contains_key(failure_key)
    }

    pub fn remember_identify_failure(&self, failure_key: String) {
        self.failed_identify.insert(failure_key, ());
    }

    /// After a change to presets, plugins, limits or plugin configuration.
    pub fn invalidate(&self) {
        self.orgs.invalidate_all();
        self.adapters.invalidate_all();
    }
}
