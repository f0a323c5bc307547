//! Which devices use which adapter: the caller's fleet by kind (organization and the device
//! facts an adapter is chosen by), each kind with the adapter that claims it, and the totals per
//! adapter. The choice is the one sessions make (`provisioning::adapters::for_device`, cached
//! per kind), asked of one device of each kind.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::authenticate::Caller;
use super::devices::AdapterView;
use super::error::ApiResult;
use super::extract::{Json, Query};
use super::org_slugs;
use crate::app::App;
use crate::permissions::Permission;
use crate::provisioning::adapters;
use crate::store::devices::{self, DeviceKind};
use crate::store::orgs::{self, PLATFORM_SLUG, Scope};

/// Kinds reported at most: a fleet has a few models times a few versions per organization; the
/// rarest kinds beyond this are left out (`truncated`).
const MAX_KINDS: u64 = 1000;

pub fn router() -> OpenApiRouter<Arc<App>> {
    OpenApiRouter::new().routes(routes!(usage))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct UsageQuery {
    /// Only this organization and those below it (within the caller's).
    org: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AdapterUsage {
    /// Per adapter (plugin name and version), the most devices first; devices no adapter
    /// claimed are the kinds whose `adapter` is null.
    pub adapters: Vec<AdapterTotal>,
    /// The devices by kind, the most numerous first.
    pub kinds: Vec<KindUsage>,
    /// Devices no adapter claimed.
    pub unclaimed: i64,
    /// More kinds than were listed (1000): the rarest are left out of every figure.
    pub truncated: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AdapterTotal {
    pub plugin_id: String,
    pub plugin: String,
    pub version: String,
    /// `platform` or `organization`: who installed it.
    pub owner: String,
    pub devices: i64,
    pub kinds: u64,
}

/// Devices alike in what an adapter is chosen by; `GET /devices` lists them with these fields
/// as filters (`org` with `subtree=false`; `pending=true` for a null `org`).
#[derive(Debug, Serialize, ToSchema)]
pub struct KindUsage {
    /// The organization's slug; null for pending devices.
    pub org: Option<String>,
    pub manufacturer: String,
    pub oui: String,
    pub product_class: String,
    pub software_version: String,
    pub hardware_version: String,
    pub data_model: String,
    pub devices: i64,
    /// The adapter that claims these devices; null when none does.
    pub adapter: Option<KindAdapter>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct KindAdapter {
    pub plugin_id: String,
    #[serde(flatten)]
    pub chosen: AdapterView,
}

#[utoipa::path(get, path = "/adapter-usage", tag = "plugins", params(UsageQuery),
    responses((status = 200, description = "Which devices use which adapter", body = AdapterUsage)))]
async fn usage(
    State(app): State<Arc<App>>,
    caller: Caller,
    Query(query): Query<UsageQuery>,
) -> ApiResult<Json<AdapterUsage>> {
    caller.require(Permission::ReadFleet)?;
    let scope = match &query.org {
        Some(slug) => {
            let org = super::orgs::visible(&app, &caller, slug).await?;
            Scope::Orgs(orgs::subtree(&app.api_store, org.id).await?)
        }
        None => caller.scope.clone(),
    };
    let mut found = devices::kinds(&app.api_store, &scope, MAX_KINDS + 1).await?;
    let truncated = found.len() as u64 > MAX_KINDS;
    found.truncate(MAX_KINDS as usize);
    let slugs = org_slugs(&app).await?;
    let mut kinds = Vec::with_capacity(found.len());
    for kind in found {
        // One kind's failure (its sample's adapter does not load) leaves that kind without an
        // adapter in the report, not the whole report unanswered.
        let adapter = adapter_of(&app, &kind).await.unwrap_or_else(|error| {
            tracing::warn!(sample = kind.sample.0, "adapter usage: no adapter choice for a kind: {error:#}");
            None
        });
        kinds.push(KindUsage {
            org: kind.org_id.and_then(|o| slugs.get(&o).cloned()),
            manufacturer: kind.manufacturer,
            oui: kind.oui,
            product_class: kind.product_class,
            software_version: kind.software_version,
            hardware_version: kind.hardware_version,
            data_model: kind.data_model,
            devices: kind.devices,
            adapter,
        });
    }
    let unclaimed = kinds.iter().filter(|k| k.adapter.is_none()).map(|k| k.devices).sum();
    Ok(Json(AdapterUsage { adapters: totals(&kinds), kinds, unclaimed, truncated }))
}

/// The adapter sessions choose for devices of this kind, asked of its sample device (gone
/// since the count: none).
async fn adapter_of(app: &App, kind: &DeviceKind) -> anyhow::Result<Option<KindAdapter>> {
    let Some(device) = devices::by_pk(&app.api_store, kind.sample).await? else {
        return Ok(None);
    };
    let org = app.provisioning.org(device.org_id).await?;
    Ok(adapters::for_device(&app.provisioning, &device, &org, None).await?.map(|chosen| KindAdapter {
        plugin_id: chosen.plugin.id.to_string(),
        chosen: AdapterView {
            owner: if chosen.plugin.org_slug == PLATFORM_SLUG { "platform" } else { "organization" }.into(),
            plugin: chosen.plugin.name,
            version: chosen.plugin.version,
            family: chosen.family,
            score: chosen.score,
        },
    }))
}

/// Devices and kinds per adapter, the most devices first (ties by name and version).
fn totals(kinds: &[KindUsage]) -> Vec<AdapterTotal> {
    let mut by_plugin: BTreeMap<(&str, &str, &str), AdapterTotal> = BTreeMap::new();
    for kind in kinds {
        let Some(adapter) = &kind.adapter else { continue };
        let total = by_plugin
            .entry((&adapter.chosen.plugin, &adapter.chosen.version, &adapter.plugin_id))
            .or_insert_with(|| AdapterTotal {
                plugin_id: adapter.plugin_id.clone(),
                plugin: adapter.chosen.plugin.clone(),
                version: adapter.chosen.version.clone(),
                owner: adapter.chosen.owner.clone(),
                devices: 0,
                kinds: 0,
            });
        total.devices += kind.devices;
        total.kinds += 1;
    }
    let mut totals: Vec<AdapterTotal> = by_plugin.into_values().collect();
    totals.sort_by_key(|t| std::cmp::Reverse(t.devices));
    totals
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(devices: i64, adapter: Option<(&str, &str, &str)>) -> KindUsage {
        KindUsage {
            org: Some("isp".into()),
            manufacturer: "Huawei".into(),
            oui: "00E0FC".into(),
            product_class: "HG8245H".into(),
            software_version: format!("V{devices}"),
            hardware_version: String::new(),
            data_model: "InternetGatewayDevice".into(),
            devices,
            adapter: adapter.map(|(id, plugin, version)| KindAdapter {
                plugin_id: id.into(),
                chosen: AdapterView {
                    plugin: plugin.into(),
                    version: version.into(),
                    owner: "platform".into(),
                    family: "huawei".into(),
                    score: 90,
                },
            }),
        }
    }

    #[test]
    fn totals_sum_each_adapters_kinds_the_most_devices_first() {
        let kinds = [
            kind(5, Some(("1", "huawei", "1.0.0"))),
            kind(40, Some(("2", "zte", "1.0.0"))),
            kind(7, None),
            kind(30, Some(("1", "huawei", "1.0.0"))),
            kind(2, Some(("3", "huawei", "1.1.0"))),
        ];
        let totals = totals(&kinds);
        let seen: Vec<_> = totals.iter().map(|t| (t.plugin.as_str(), t.version.as_str(), t.devices, t.kinds)).collect();
        assert_eq!(seen, [("zte", "1.0.0", 40, 1), ("huawei", "1.0.0", 35, 2), ("huawei", "1.1.0", 2, 1)]);
    }

    #[test]
    fn no_adapter_no_total() {
        assert!(totals(&[kind(3, None)]).is_empty());
    }
}
