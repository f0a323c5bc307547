//! The device's tree and secrets as a round reads them: loaded from the store on demand.

use std::cell::Cell;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use anyhow::Result;
use roost_params::pattern::{Pattern, Segment};
use roost_params::tree::Node;
use tokio::runtime::Handle;

use crate::plugins::TreeLoader;
use crate::provisioning::Provisioner;
use crate::provisioning::plan;
use crate::store::DevicePk;
use crate::store::devices;
use crate::store::{Store, parameters};

/// Rows of one device's subtree a view loads at most: far above any real device's tree.
const SUBTREE_LIMIT: u64 = 200_000;

/// Loads a device's subtree from the store into a view, from the blocking pool.
pub(super) struct StoreLoader {
    pub(super) p: Arc<Provisioner>,
    pub(super) device_pk: DevicePk,
    pub(super) handle: Handle,
}

impl TreeLoader for StoreLoader {
    fn load(&self, prefix: &str) -> Result<Vec<(String, Node)>> {
        self.handle.block_on(load_subtree(&self.p.store, self.device_pk, prefix))
    }

    fn load_matching(&self, prefix: &str, pattern: &Pattern) -> Result<Vec<(String, Node)>> {
        let like = like_of(pattern);
        let rows =
            self.handle.block_on(parameters::list_like(&self.p.store, self.device_pk, prefix, &like, SUBTREE_LIMIT))?;
        Ok(nodes(rows))
    }

    fn tags(&self) -> Result<Vec<String>> {
        self.handle.block_on(devices::tags(&self.p.store, self.device_pk))
    }
}

/// A pattern as SQL `LIKE` text: each wildcard segment becomes `%`.
pub(super) fn like_of(pattern: &Pattern) -> String {
    let mut like: String = pattern
        .segments()
        .iter()
        .map(|segment| match segment {
            Segment::Name(name) => name.as_str(),
            Segment::Any | Segment::Alias(_) => "%",
        })
        .collect::<Vec<_>>()
        .join(".");
    if pattern.is_object() {
        like.push_str(".%");
    }
    like
}

pub(super) async fn load_subtree(store: &Store, device_pk: DevicePk, prefix: &str) -> Result<Vec<(String, Node)>> {
    let rows = parameters::list(store, device_pk, prefix, None, SUBTREE_LIMIT).await?;
    Ok(nodes(rows))
}

pub(super) fn nodes(rows: Vec<parameters::Parameter>) -> Vec<(String, Node)> {
    rows.into_iter()
        .map(|p| {
            let node = Node {
                value: if p.is_object { None } else { p.value },
                value_type: p.value_type,
                writable: p.writable,
                updated_ms: u64::try_from(p.refreshed_at).unwrap_or(0),
            };
            (p.path, node)
        })
        .collect()
}

/// Secret values Roost set on the device (the device reads them back empty): read from the store
/// when first compared, and remembered as this session sets them.
pub(super) struct SessionSecrets {
    pub(super) p: Arc<Provisioner>,
    pub(super) device_pk: DevicePk,
    pub(super) handle: Handle,
    pub(super) known: Mutex<HashMap<String, Option<String>>>,
}

impl SessionSecrets {
    pub(super) fn set(&self, path: &str, text: &str) {
        self.known.lock().unwrap_or_else(|p| p.into_inner()).insert(path.to_owned(), Some(text.to_owned()));
    }
}

/// The session's secrets as far as known without reading the store, for a round on an async
/// worker: one it would have to read makes the round run again on the blocking pool.
pub(super) struct KnownSecrets<'a> {
    pub(super) secrets: &'a SessionSecrets,
    pub(super) unknown: Cell<bool>,
}

impl plan::Secrets for KnownSecrets<'_> {
    fn holds(&self, path: &str, text: &str) -> bool {
        match self.secrets.known.lock().unwrap_or_else(|p| p.into_inner()).get(path) {
            Some(held) => held.as_deref() == Some(text),
            None => {
                self.unknown.set(true);
                false
            }
        }
    }
}

impl plan::Secrets for SessionSecrets {
    fn holds(&self, path: &str, text: &str) -> bool {
        let mut known = self.known.lock().unwrap_or_else(|p| p.into_inner());
        let held = known.entry(path.to_owned()).or_insert_with(|| {
            let sealed = self.handle.block_on(parameters::remembered_secret(&self.p.store, self.device_pk, path));
            match sealed {
                Ok(Some(sealed)) => self.p.secrets.open_string(&sealed).ok(),
                Ok(None) => None,
                Err(error) => {
                    tracing::warn!(path, "reading a remembered secret failed: {error:#}");
                    None
                }
            }
        });
        held.as_deref() == Some(text)
    }
}
