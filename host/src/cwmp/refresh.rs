//! Reading a subtree of a device's parameters into the store, as discovery, a refreshObject task
//! and provisioning do.

use anyhow::Result;
use roost_cwmp::{AcsRequest, CpeResponse, ParameterInfo};

use crate::app::App;
use crate::store::{now_millis, parameters};

/// Reads a subtree from the device: names first, then values of the leaves in batches, then
/// drops what the device no longer has.
#[derive(Debug)]
pub(crate) struct Refresh {
    pub(crate) prefix: String,
    pub(crate) started_at: i64,
    leaves: Vec<String>,
    pub(crate) names_done: bool,
}

impl Refresh {
    pub(crate) fn new(prefix: String) -> Self {
        Self { prefix, started_at: now_millis(), leaves: Vec::new(), names_done: false }
    }

    pub(crate) fn first_request(&self) -> AcsRequest {
        AcsRequest::GetParameterNames { parameter_path: self.prefix.clone(), next_level: false }
    }

    pub(crate) fn next_batch(&mut self, batch: usize) -> Option<AcsRequest> {
        if self.leaves.is_empty() {
            return None;
        }
        let take = batch.min(self.leaves.len());
        let names: Vec<String> = self.leaves.drain(..take).collect();
        Some(AcsRequest::GetParameterValues { names })
    }

    /// Feeds a response; returns the next request, or `None` when the subtree is complete.
    pub(crate) async fn on_response(
        &mut self,
        app: &App,
        device_pk: i64,
        response: CpeResponse,
    ) -> Result<Option<AcsRequest>> {
        match response {
            CpeResponse::GetParameterNames { parameters: infos } if !self.names_done => {
                self.names_done = true;
                let infos = within(&self.prefix, infos);
                let _guard = app.store.write_guard().await;
                parameters::upsert_names(app.store.db(), device_pk, &infos, self.started_at).await?;
                self.leaves = infos.into_iter().filter(|i| !i.name.ends_with('.')).map(|i| i.name).collect();
            }
            CpeResponse::GetParameterValues { parameters: values } => {
                let _guard = app.store.write_guard().await;
                parameters::upsert_values(app.store.db(), device_pk, &values, now_millis()).await?;
            }
            _ => {}
        }
        if let Some(next) = self.next_batch(app.config.cwmp.discovery_batch) {
            return Ok(Some(next));
        }
        let _guard = app.store.write_guard().await;
        parameters::delete_stale(app.store.db(), device_pk, &self.prefix, self.started_at).await?;
        Ok(None)
    }
}

/// Keeps only names under the requested prefix: some agents answer a subtree request with
/// their whole tree.
fn within(prefix: &str, infos: Vec<ParameterInfo>) -> Vec<ParameterInfo> {
    infos.into_iter().filter(|i| i.name.starts_with(prefix) && !i.name.is_empty()).collect()
}
