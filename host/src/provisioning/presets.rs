//! Presets: when a provision runs for a device, and what of an organization's provisioning a
//! session needs (its presets with their plugins resolved, its adapters, limits and plugin
//! configuration), loaded once and cached.
//!
//! A device is provisioned by the presets of its organization and of every organization above
//! it up to the platform's; a nearer organization's preset shadows a farther one of the same
//! name. A device nobody has claimed yet gets the platform's presets only.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use anyhow::Result;
use roost_params::pattern::Pattern;
use roost_params::tree::{ParameterTree, parse_bool};
use serde::{Deserialize, Serialize};

use crate::plugins::PluginLimits;
use crate::store::Store;
use crate::store::plugins::{self, PluginRow};

/// A preset as clients write it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PresetDefinition {
    /// Lower runs first; on conflicting declarations the later (heavier) preset wins.
    #[serde(default)]
    pub weight: i32,
    #[serde(default = "enabled_by_default")]
    pub enabled: bool,
    /// Inform event codes (`0 BOOTSTRAP`, `2 PERIODIC`, …); any one matches. Empty: every session.
    #[serde(default)]
    pub events: Vec<String>,
    /// Tags the device must have; `-tag`: must not have.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Conditions on the device's stored parameters, all of which must hold.
    #[serde(default)]
    pub precondition: Vec<Condition>,
    /// Run at most once per interval per device.
    #[serde(default)]
    pub schedule: Option<Schedule>,
    /// A built-in provision (`refresh`, `value`, `tag`, `reboot`, `reset`, `download`, `stun`)
    /// or the name of a provision plugin.
    pub provision: String,
    /// The provision's arguments (passed sorted by name).
    #[serde(default)]
    pub args: BTreeMap<String, String>,
}

fn enabled_by_default() -> bool {
    true
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Condition {
    /// A parameter pattern; the condition holds when any matching leaf satisfies it.
    pub path: String,
    pub op: ConditionOp,
    #[serde(default)]
    pub value: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ConditionOp {
    Eq,
    Ne,
    Prefix,
    Exists,
    Absent,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Schedule {
    pub interval_seconds: u64,
}

/// The built-in provisions, run by the host through the same engine as plugins.
pub const BUILT_IN: [&str; 7] = ["refresh", "value", "tag", "reboot", "reset", "download", "stun"];

/// A preset in force for a device's organization.
#[derive(Debug, Clone)]
pub struct ActivePreset {
    /// The organization that owns it.
    pub org_id: i64,
    pub name: String,
    pub definition: PresetDefinition,
    /// The provision plugin it names, resolved from the owner's point of view; `None` for a
    /// built-in provision or a plugin deleted since (a fault when the preset matches).
    pub plugin: Option<PluginRow>,
}

impl ActivePreset {
    /// Whether the Inform's events and the device's tags select the preset.
    pub fn selects(&self, events: &[String], tags: &[String]) -> bool {
        let d = &self.definition;
        d.enabled
            && (d.events.is_empty() || d.events.iter().any(|e| events.contains(e)))
            && d.tags.iter().all(|t| match t.strip_prefix('-') {
                Some(absent) => !tags.iter().any(|x| x == absent),
                None => tags.contains(t),
            })
    }

    /// Whether every precondition holds on the device's stored parameters.
    pub fn precondition_holds(&self, tree: &ParameterTree) -> bool {
        self.definition.precondition.iter().all(|c| c.holds(tree))
    }

    /// The patterns of the tree its precondition reads.
    pub fn precondition_patterns(&self) -> impl Iterator<Item = Pattern> + '_ {
        self.definition.precondition.iter().filter_map(|c| Pattern::parse(&c.path).ok())
    }
}

impl Condition {
    /// Holds when any matching leaf satisfies it (`absent`: when none matches). Booleans compare
    /// by meaning, so `true` matches a device that says `1`.
    pub fn holds(&self, tree: &ParameterTree) -> bool {
        let Ok(pattern) = Pattern::parse(&self.path) else { return false };
        let leaves = tree.leaves(&pattern);
        let expected = self.value.as_deref().unwrap_or("");
        let equal = |path: &String| {
            let Some(node) = tree.get(path) else { return false };
            let actual = node.value.as_deref().unwrap_or("");
            if node.value_type.ends_with("boolean")
                && let (Some(a), Some(b)) = (parse_bool(actual), parse_bool(expected))
            {
                return a == b;
            }
            actual == expected
        };
        match self.op {
            ConditionOp::Exists => !leaves.is_empty(),
            ConditionOp::Absent => leaves.is_empty(),
            ConditionOp::Eq => leaves.iter().any(equal),
            ConditionOp::Ne => leaves.iter().any(|p| !equal(p)),
            ConditionOp::Prefix => leaves
                .iter()
                .any(|p| tree.get(p).and_then(|n| n.value.as_deref()).is_some_and(|v| v.starts_with(expected))),
        }
    }
}

/// What a session needs of an organization's provisioning, cached per organization.
#[derive(Debug, Default)]
pub struct OrgProvisioning {
    /// In the order they run: weight, then name.
    pub presets: Vec<Arc<ActivePreset>>,
    /// Adapters visible to the organization, nearest owner first, latest upload of each name.
    pub adapters: Vec<PluginRow>,
    /// The sandbox limits of its plugin calls.
    pub limits: PluginLimits,
    /// Configuration per plugin name (nearest organization's value of a key wins).
    pub config: HashMap<String, Vec<(String, String)>>,
}

impl OrgProvisioning {
    /// Loads what applies to devices of `org_id` (`None`: a device not yet claimed).
    pub async fn load(store: &Store, org_id: Option<i64>, default_limits: PluginLimits) -> Result<Self> {
        let path = match org_id {
            Some(org) => plugins::org_path(store, org).await?,
            None => plugins::org_path(store, plugins::platform_id(store).await?).await?,
        };
        let mut by_name: BTreeMap<String, Arc<ActivePreset>> = BTreeMap::new();
        // Farthest first, so that a nearer organization's preset replaces it.
        for org in path.iter().rev() {
            for row in crate::store::presets::list(store, *org).await? {
                let definition: PresetDefinition = match serde_json::from_str(&row.definition) {
                    Ok(d) => d,
                    Err(error) => {
                        tracing::error!(preset = %row.name, org = row.org_id, "stored preset unreadable: {error}");
                        continue;
                    }
                };
                let plugin = if BUILT_IN.contains(&definition.provision.as_str()) {
                    None
                } else {
                    let owner_path = &path[path.iter().position(|o| o == org).unwrap_or(0)..];
                    plugins::resolve(store, owner_path, &definition.provision).await?
                };
                by_name.insert(
                    row.name.clone(),
                    Arc::new(ActivePreset { org_id: *org, name: row.name, definition, plugin }),
                );
            }
        }
        let mut presets: Vec<Arc<ActivePreset>> = by_name.into_values().collect();
        presets.sort_by(|a, b| a.definition.weight.cmp(&b.definition.weight).then_with(|| a.name.cmp(&b.name)));

        let mut limits = default_limits;
        for org in path.iter().rev() {
            if let Some(json) = crate::store::plugins::limits(store, *org).await? {
                match limits.with_override(&json) {
                    Ok(l) => limits = l,
                    Err(error) => tracing::error!(org, "stored plugin limits unusable: {error}"),
                }
            }
        }
        let mut config: HashMap<String, BTreeMap<String, String>> = HashMap::new();
        for org in path.iter().rev() {
            for (plugin, key, value) in crate::store::plugins::config(store, *org).await? {
                config.entry(plugin).or_default().insert(key, value);
            }
        }
        Ok(OrgProvisioning {
            presets,
            adapters: plugins::adapters(store, &path).await?,
            limits,
            config: config.into_iter().map(|(k, v)| (k, v.into_iter().collect())).collect(),
        })
    }
}

#[cfg(test)]
mod tests {

    use roost_params::tree::Node;

    use super::*;

    fn preset(json: serde_json::Value) -> ActivePreset {
        ActivePreset { org_id: 1, name: "p".into(), definition: serde_json::from_value(json).unwrap(), plugin: None }
    }

    #[test]
    fn events_and_tags_select() {
        let p = preset(serde_json::json!({"provision": "reboot", "events": ["1 BOOT"], "tags": ["vip", "-lab"]}));
        let events = |e: &[&str]| e.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(p.selects(&events(&["1 BOOT", "4 VALUE CHANGE"]), &events(&["vip"])));
        assert!(!p.selects(&events(&["2 PERIODIC"]), &events(&["vip"])), "wrong event");
        assert!(!p.selects(&events(&["1 BOOT"]), &events(&[])), "missing tag");
        assert!(!p.selects(&events(&["1 BOOT"]), &events(&["vip", "lab"])), "excluded tag");
        let any = preset(serde_json::json!({"provision": "reboot", "enabled": false}));
        assert!(!any.selects(&events(&["1 BOOT"]), &[]), "disabled");
    }

    #[test]
    fn preconditions_read_the_tree_with_booleans_by_meaning() {
        let mut tree = ParameterTree::new();
        let leaf = |v: &str, t: &str| Node { value: Some(v.into()), value_type: t.into(), ..Node::default() };
        tree.insert("Device.WiFi.SSID.1.SSID", leaf("home", "xsd:string"));
        tree.insert("Device.WiFi.SSID.2.SSID", leaf("guest-2g", "xsd:string"));
        tree.insert("Device.WiFi.SSID.1.Enable", leaf("1", "xsd:boolean"));
        let condition = |path: &str, op: ConditionOp, value: Option<&str>| Condition {
            path: path.into(),
            op,
            value: value.map(str::to_owned),
        };
        assert!(condition("Device.WiFi.SSID.*.SSID", ConditionOp::Eq, Some("home")).holds(&tree));
        assert!(condition("Device.WiFi.SSID.*.SSID", ConditionOp::Prefix, Some("guest")).holds(&tree));
        assert!(!condition("Device.WiFi.SSID.*.SSID", ConditionOp::Eq, Some("office")).holds(&tree));
        assert!(condition("Device.WiFi.SSID.1.Enable", ConditionOp::Eq, Some("true")).holds(&tree));
        assert!(!condition("Device.WiFi.SSID.1.Enable", ConditionOp::Ne, Some("true")).holds(&tree));
        assert!(condition("Device.WiFi.SSID.[SSID:home].Enable", ConditionOp::Exists, None).holds(&tree));
        assert!(condition("Device.Cellular.Interface.*.Status", ConditionOp::Absent, None).holds(&tree));
        assert!(!condition("Device.WiFi.SSID.*.SSID", ConditionOp::Absent, None).holds(&tree));
    }
}
