//! What provisions read of each device, kept for its next session.
//!
//! A periodic session reads what the one before it read: the health figures, the settings a
//! preset checks. From the store that is a query per pattern, and most of the session's cost.
//! So the view a session ends with is kept, tagged with the tree revision its Inform returned
//! (`devices.tree_rev`, moved in the same statement as any write to the device's parameter
//! rows), and the next session starts from it only when its own Inform returns the same
//! revision. A write in between, by a task, an API call or another replica's session, makes it
//! miss: no replica provisions from a tree that changed behind it.
//!
//! A session that wrote to the tree keeps nothing: its view mixes loaded rows with what it sent,
//! and its own writes moved the revision past its tag anyway. The next session reloads.
//!
//! The entry also keeps what the session's first round of provisions produced, run by run. A
//! provision sees only what the WIT world hands it: the tree, the device's facts and events, its
//! arguments and configuration, and the clock, generator and tags. A run that used none of the
//! last three and met no failed read ([`crate::plugins::RunOutput::impure`]) nor adapter fault
//! declares the same again over the same tree, so the next session at the same revision replays
//! it instead of instantiating the plugin; the key holds everything else it saw.

use std::sync::Arc;

use roost_params::Value;

use crate::plugins::{Declared, ViewSnapshot};
use crate::store::DevicePk;

/// One device's entry.
#[derive(Debug)]
pub struct DeviceReads {
    /// `devices.tree_rev` when the view was loaded.
    pub rev: i64,
    /// `DeviceInfo.ModelName`, which adapters are told (it is not in the Inform's DeviceId).
    pub model_name: Option<String>,
    pub view: ViewSnapshot,
    /// Outputs of the first round's runs, by [`RunMemo`] key.
    pub runs: Vec<(String, Arc<RunMemo>)>,
}

impl DeviceReads {
    fn weight(&self) -> usize {
        self.view.weight() + self.runs.iter().map(|(key, memo)| key.len() + memo.weight()).sum::<usize>()
    }
}

/// What a provision run produced that the session acts on. Its log lines are not kept: they were
/// stored when it ran, and a replay is not a run.
#[derive(Debug)]
pub struct RunMemo {
    pub declarations: Vec<Declared>,
    pub tags_added: Vec<String>,
    pub tags_removed: Vec<String>,
    /// The health figures the run read: a replay reports them again (and, being the same as
    /// last time, costs nothing in the metrics buffer).
    pub health: Option<Arc<crate::health::HealthFigures>>,
}

impl RunMemo {
    fn weight(&self) -> usize {
        const OVERHEAD: usize = 64;
        let declarations: usize = self
            .declarations
            .iter()
            .map(|d| OVERHEAD + d.pattern.to_string().len() + d.value.as_ref().map_or(0, value_bytes))
            .sum();
        let texts: usize = self.tags_added.iter().chain(&self.tags_removed).map(|t| 24 + t.len()).sum();
        let health = self.health.as_ref().map_or(0, |h| OVERHEAD + 16 * h.0.len());
        OVERHEAD + declarations + texts + health
    }
}

/// Entries by device, weighed by the bytes they hold.
pub struct Reads {
    entries: moka::sync::Cache<DevicePk, Arc<DeviceReads>>,
    max_entry_bytes: usize,
}

impl std::fmt::Debug for Reads {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reads").field("entries", &self.entries.entry_count()).finish_non_exhaustive()
    }
}

impl Reads {
    pub fn new(capacity_bytes: u64) -> Self {
        Reads {
            entries: moka::sync::Cache::builder()
                .max_capacity(capacity_bytes)
                .weigher(|_, entry: &Arc<DeviceReads>| u32::try_from(entry.weight()).unwrap_or(u32::MAX))
                .build(),
            // A provision that reads a whole subtree would crowd out hundreds of devices that
            // read a dozen figures each: an entry may hold at most 1/64 of the whole.
            max_entry_bytes: usize::try_from(capacity_bytes / 64).unwrap_or(usize::MAX),
        }
    }

    /// The device's entry if it still describes the tree at revision `rev`.
    pub fn get(&self, device_pk: DevicePk, rev: i64) -> Option<Arc<DeviceReads>> {
        self.entries.get(&device_pk).filter(|entry| entry.rev == rev)
    }

    pub fn keep(&self, device_pk: DevicePk, mut entry: DeviceReads) {
        if entry.weight() > self.max_entry_bytes {
            // The view saves the session's queries, a replay only a plugin run: the view stays.
            entry.runs.clear();
        }
        if entry.weight() <= self.max_entry_bytes {
            self.entries.insert(device_pk, Arc::new(entry));
        } else {
            self.entries.invalidate(&device_pk);
        }
    }
}

fn value_bytes(value: &Value) -> usize {
    match value {
        Value::Text(s) | Value::DateTime(s) | Value::Base64(s) | Value::HexBinary(s) => s.len(),
        Value::Signed(_) | Value::Unsigned(_) | Value::Boolean(_) => 8,
    }
}

#[cfg(test)]
mod tests {
    use roost_params::tree::Node;

    use super::*;

    fn entry(rev: i64, leaves: usize) -> DeviceReads {
        let mut view = ViewSnapshot::default();
        for i in 0..leaves {
            view.tree.insert(
                format!("Device.Hosts.Host.{i}.HostName"),
                Node { value: Some("laptop".into()), value_type: "xsd:string".into(), ..Node::default() },
            );
        }
        view.prefixes.push("Device.Hosts.".into());
        DeviceReads { rev, model_name: None, view, runs: Vec::new() }
    }

    #[test]
    fn an_entry_serves_only_the_revision_it_was_loaded_at() {
        let reads = Reads::new(1 << 20);
        reads.keep(DevicePk(7), entry(3, 2));
        assert!(reads.get(DevicePk(7), 3).is_some());
        assert!(reads.get(DevicePk(7), 4).is_none(), "the tree was written since");
        assert!(reads.get(DevicePk(8), 3).is_none());
    }

    #[test]
    fn an_oversized_view_is_not_kept_and_drops_the_older_entry() {
        let reads = Reads::new(64 * 1024);
        reads.keep(DevicePk(7), entry(1, 2));
        assert!(reads.get(DevicePk(7), 1).is_some());
        // 1/64 of 64 KiB is 1 KiB: a hundred hosts are far more.
        reads.keep(DevicePk(7), entry(2, 100));
        assert!(reads.get(DevicePk(7), 2).is_none());
        assert!(reads.get(DevicePk(7), 1).is_none());
    }

    #[test]
    fn runs_too_large_to_keep_leave_the_view_kept_without_them() {
        let reads = Reads::new(64 * 1024);
        let mut kept = entry(1, 2);
        let memo = RunMemo {
            declarations: Vec::new(),
            tags_added: vec!["x".repeat(2048)],
            tags_removed: Vec::new(),
            health: None,
        };
        kept.runs.push(("health".into(), Arc::new(memo)));
        reads.keep(DevicePk(7), kept);
        let kept = reads.get(DevicePk(7), 1);
        assert!(kept.as_ref().is_some_and(|kept| kept.runs.is_empty()), "the view is kept, without the runs");
        let Some(kept) = kept else { return };
        assert_eq!(kept.view.tree.len(), 2);
    }
}
