//! One round of provisioning: from declarations and the device's tree to the CWMP calls that
//! bring the device closer to what was declared. Pure: no I/O, no clock (times are passed in).
//!
//! A round either fetches or changes, never both: when structure is unknown or stale
//! (GetParameterNames), the provisions must see the new structure before anything is written,
//! because their patterns expand differently. Otherwise the round fetches stale values and makes
//! every change at once; the driver sends GetParameterValues, then AddObject/DeleteObject, then
//! one SetParameterValues.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use roost_cwmp::{ParameterValue, ValueType};
use roost_params::pattern::{Pattern, Segment};
use roost_params::tree::ParameterTree;

use crate::plugins::Declared;

/// When the round happens.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    pub now_ms: u64,
    /// When the session began: `max-age 0` means "fetched in this session".
    pub session_start_ms: u64,
}

impl Clock {
    fn is_stale(&self, updated_ms: u64, max_age: Duration) -> bool {
        if max_age.is_zero() {
            return updated_ms < self.session_start_ms;
        }
        let max_age_ms = u64::try_from(max_age.as_millis()).unwrap_or(u64::MAX);
        self.now_ms.saturating_sub(updated_ms) > max_age_ms
    }
}

/// An instance to add: AddObject on `table`, then the alias values written into it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewInstance {
    /// The table, ending in `.`.
    pub table: String,
    /// Alias keys (relative paths) and their values, from an alias pattern.
    pub alias: Vec<(String, String)>,
}

/// The calls of one round.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Objects to list (GetParameterNames with NextLevel false), ending in `.`.
    pub get_names: Vec<String>,
    /// Leaves to read.
    pub get_values: Vec<String>,
    pub add_objects: Vec<NewInstance>,
    /// Instances to delete, ending in `.`.
    pub delete_objects: Vec<String>,
    /// Leaves to write: path, CWMP text, xsd type.
    pub set_values: Vec<ParameterValue>,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.get_names.is_empty()
            && self.get_values.is_empty()
            && self.add_objects.is_empty()
            && self.delete_objects.is_empty()
            && self.set_values.is_empty()
    }
}

/// A declaration that cannot be carried out; recorded as a fault of the device.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {reason}")]
pub struct PlanError {
    pub path: String,
    pub reason: String,
}

/// Whether a secret parameter (stored as `''`) already holds `text` because Roost set it.
pub trait Secrets {
    fn holds(&self, path: &str, text: &str) -> bool;
}

/// No secret is known to be set.
pub struct NoSecrets;

impl Secrets for NoSecrets {
    fn holds(&self, _path: &str, _text: &str) -> bool {
        false
    }
}

/// The tables (objects ending in `.`) that the instances of an instance pattern live in.
fn tables_of(tree: &ParameterTree, pattern: &Pattern) -> Vec<String> {
    match pattern.parent() {
        Some(parent) if parent.is_literal() => vec![parent.literal_prefix()],
        Some(parent) => tree.expand(&parent),
        None => Vec::new(),
    }
}

/// The object whose names must be known for `pattern` to expand: its literal prefix.
fn structure_root(pattern: &Pattern) -> Option<String> {
    let prefix = pattern.literal_prefix();
    prefix.ends_with('.').then_some(prefix)
}

/// Plans one round. `declarations` are in the order they were made, presets by weight: for one
/// parameter, the last declared value wins.
pub fn plan(
    tree: &ParameterTree,
    declarations: &[Declared],
    clock: Clock,
    secrets: &dyn Secrets,
) -> Result<Plan, PlanError> {
    let mut names: BTreeSet<String> = BTreeSet::new();
    let mut values: BTreeSet<String> = BTreeSet::new();
    let node_stale =
        |path: &str, max_age: Duration| tree.get(path).is_none_or(|n| clock.is_stale(n.updated_ms, max_age));

    // Structure first: what must be listed before patterns can be trusted.
    for d in declarations {
        let pattern = &d.pattern;
        let wants_structure = d.instances.is_some() || pattern.is_object() || pattern.names_instances();
        if let Some(max_age) = d.max_age.filter(|_| wants_structure) {
            let objects = if pattern.names_instances() { tables_of(tree, pattern) } else { tree.expand(pattern) };
            let objects = if objects.is_empty() { structure_root(pattern).into_iter().collect() } else { objects };
            names.extend(objects.into_iter().filter(|o| node_stale(o, max_age)));
        }
        if d.instances.is_some() {
            // Counting instances needs this session's list of the table.
            let tables = tables_of(tree, pattern);
            let tables = if tables.is_empty() { structure_root(pattern).into_iter().collect() } else { tables };
            names.extend(tables.into_iter().filter(|t| node_stale(t, Duration::ZERO)));
        }
        if !pattern.is_literal() && !wants_structure && d.max_age.is_some() {
            // A wildcard leaf pattern over a table never listed: list it first.
            if let Some(root) = structure_root(pattern)
                && tree.get(&root).is_none()
                && tree.range(&root).next().is_none()
            {
                names.insert(root);
            }
        }
        if let Some(max_age) = d.max_age.filter(|_| !wants_structure) {
            let leaves = tree.leaves(pattern);
            if leaves.is_empty() && pattern.is_literal() && tree.get(&pattern.to_string()).is_none() {
                // A literal leaf the tree does not know: its object must be listed, unless it
                // was within the declaration's max-age. Then the device has no such leaf (since
                // that listing), and listing again each round would find none again.
                if let Some(parent) = pattern.parent() {
                    let object = parent.literal_prefix();
                    if node_stale(&object, max_age) {
                        names.insert(object);
                    }
                }
            }
            values.extend(leaves.into_iter().filter(|leaf| node_stale(leaf, max_age)));
        }
    }
    // A listed object is re-read whole: drop names below another listed one.
    let names: Vec<String> = {
        let mut kept: Vec<String> = Vec::new();
        for name in names {
            if !kept.iter().any(|k| name.starts_with(k.as_str())) {
                kept.push(name);
            }
        }
        kept
    };
    if !names.is_empty() {
        let values = values.into_iter().filter(|v| !names.iter().any(|n| v.starts_with(n.as_str()))).collect();
        return Ok(Plan { get_names: names, get_values: values, ..Plan::default() });
    }

    let mut plan = Plan { get_values: values.into_iter().collect(), ..Plan::default() };
    let mut sets: BTreeMap<String, (String, String)> = BTreeMap::new();
    let mut deleted: BTreeSet<String> = BTreeSet::new();
    for d in declarations {
        let pattern = &d.pattern;
        if let Some((min, max)) = d.instances {
            let alias: Vec<(String, String)> = match pattern.segments().last() {
                Some(Segment::Alias(keys)) => keys.iter().map(|k| (k.path.clone(), k.value.clone())).collect(),
                _ => Vec::new(),
            };
            let matching = tree.expand(pattern);
            for table in tables_of(tree, pattern) {
                let mut here: Vec<&String> = matching.iter().filter(|m| m.starts_with(table.as_str())).collect();
                here.sort_by_key(|m| instance_number(m));
                let count = u32::try_from(here.len()).unwrap_or(u32::MAX);
                for extra in here.iter().rev().take(count.saturating_sub(max) as usize) {
                    if deleted.insert((*extra).clone()) {
                        plan.delete_objects.push((*extra).clone());
                    }
                }
                for _ in count..min {
                    plan.add_objects.push(NewInstance { table: table.clone(), alias: alias.clone() });
                }
            }
        }
        if let Some(value) = &d.value {
            let leaves = tree.expand(pattern);
            if leaves.is_empty() && pattern.is_literal() {
                return Err(PlanError {
                    path: pattern.to_string(),
                    reason: "the device has no such parameter (declare a refresh of its object first?)".into(),
                });
            }
            for leaf in leaves {
                let Some(node) = tree.get(&leaf) else { continue };
                let (text, value_type) = roost_params::coerce(value, &node.value_type, node.value.as_deref())
                    .map_err(|reason| PlanError { path: leaf.clone(), reason })?;
                let secret = roost_cwmp::is_secret_parameter(&leaf);
                let holds =
                    if secret { secrets.holds(&leaf, &text) } else { node.value.as_deref() == Some(text.as_str()) };
                if holds {
                    sets.remove(&leaf);
                } else {
                    sets.insert(leaf, (text, value_type));
                }
            }
        }
    }
    plan.set_values = sets
        .into_iter()
        .filter(|(path, _)| !deleted.iter().any(|d| path.starts_with(d.as_str())))
        .map(|(name, (value, value_type))| ParameterValue { name, value, value_type: ValueType::parse(&value_type) })
        .collect();
    Ok(plan)
}

fn instance_number(path: &str) -> u64 {
    path.trim_end_matches('.').rsplit('.').next().and_then(|n| n.parse().ok()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {

    use roost_params::Value;
    use roost_params::tree::Node;

    use super::*;

    fn set(name: &str, value: &str, value_type: ValueType) -> ParameterValue {
        ParameterValue { name: name.into(), value: value.into(), value_type }
    }

    const HOUR: Duration = Duration::from_secs(3600);
    const CLOCK: Clock = Clock { now_ms: 10_000_000, session_start_ms: 9_999_000 };

    fn leaf(value: &str, value_type: &str, updated_ms: u64) -> Node {
        Node { value: Some(value.into()), value_type: value_type.into(), writable: true, updated_ms }
    }

    fn object(updated_ms: u64) -> Node {
        Node { writable: true, updated_ms, ..Node::default() }
    }

    /// A TR-181 Wi-Fi table with two SSIDs, listed and read an hour and a half ago.
    fn tree() -> ParameterTree {
        let old = CLOCK.now_ms - 5_400_000;
        let mut t = ParameterTree::new();
        t.insert("Device.WiFi.SSID.", object(old));
        for (i, ssid, enable) in [(1, "home", "1"), (2, "guest", "0")] {
            t.insert(format!("Device.WiFi.SSID.{i}."), object(old));
            t.insert(format!("Device.WiFi.SSID.{i}.SSID"), leaf(ssid, "xsd:string", old));
            t.insert(format!("Device.WiFi.SSID.{i}.Enable"), leaf(enable, "xsd:boolean", old));
        }
        t.insert("Device.ManagementServer.PeriodicInformInterval", leaf("3600", "xsd:unsignedInt", CLOCK.now_ms));
        t.insert("Device.ManagementServer.ConnectionRequestPassword", leaf("", "xsd:string", CLOCK.now_ms));
        t
    }

    fn declared(path: &str) -> Declared {
        Declared { pattern: Pattern::parse(path).unwrap(), value: None, max_age: None, instances: None }
    }

    #[test]
    fn stale_values_are_fetched_and_fresh_ones_are_not() {
        let t = tree();
        let d = vec![
            Declared { max_age: Some(HOUR), ..declared("Device.WiFi.SSID.*.SSID") },
            Declared { max_age: Some(HOUR), ..declared("Device.ManagementServer.PeriodicInformInterval") },
        ];
        let p = plan(&t, &d, CLOCK, &NoSecrets).unwrap();
        assert_eq!(p.get_values, ["Device.WiFi.SSID.1.SSID", "Device.WiFi.SSID.2.SSID"]);
        assert!(p.get_names.is_empty() && p.set_values.is_empty());
        // Two hours of tolerance: nothing to do.
        let d = vec![Declared { max_age: Some(2 * HOUR), ..declared("Device.WiFi.SSID.*.SSID") }];
        assert!(plan(&t, &d, CLOCK, &NoSecrets).unwrap().is_empty());
    }

    #[test]
    fn values_are_written_only_where_they_differ_in_the_devices_own_spelling() {
        let t = tree();
        let d = vec![
            Declared { value: Some(Value::Boolean(true)), ..declared("Device.WiFi.SSID.*.Enable") },
            Declared {
                value: Some(Value::Text("3600".into())),
                ..declared("Device.ManagementServer.PeriodicInformInterval")
            },
        ];
        let p = plan(&t, &d, CLOCK, &NoSecrets).unwrap();
        // SSID 1 is enabled already ("1"); SSID 2 gets "1", not "true"; the interval is unchanged.
        assert_eq!(p.set_values, [set("Device.WiFi.SSID.2.Enable", "1", ValueType::Boolean)]);
    }

    #[test]
    fn the_last_declaration_of_a_parameter_wins() {
        let t = tree();
        let d = vec![
            Declared { value: Some(Value::Text("first".into())), ..declared("Device.WiFi.SSID.1.SSID") },
            Declared { value: Some(Value::Text("second".into())), ..declared("Device.WiFi.SSID.*.SSID") },
            Declared { value: Some(Value::Text("home".into())), ..declared("Device.WiFi.SSID.1.SSID") },
        ];
        let p = plan(&t, &d, CLOCK, &NoSecrets).unwrap();
        assert_eq!(p.set_values, [set("Device.WiFi.SSID.2.SSID", "second", ValueType::String)]);
    }

    #[test]
    fn secrets_are_compared_with_what_roost_set() {
        struct Remembered;
        impl Secrets for Remembered {
            fn holds(&self, path: &str, text: &str) -> bool {
                path.ends_with("ConnectionRequestPassword") && text == "s3cret"
            }
        }
        let t = tree();
        let d = vec![Declared {
            value: Some(Value::Text("s3cret".into())),
            ..declared("Device.ManagementServer.ConnectionRequestPassword")
        }];
        assert_eq!(plan(&t, &d, CLOCK, &NoSecrets).unwrap().set_values.len(), 1);
        assert!(plan(&t, &d, CLOCK, &Remembered).unwrap().is_empty());
    }

    #[test]
    fn instance_counts_list_the_table_first_then_add_or_delete() {
        let t = tree();
        let d = vec![Declared { instances: Some((1, 1)), ..declared("Device.WiFi.SSID.[SSID:iot]") }];
        // The table was not listed in this session: list it, change nothing yet.
        let p = plan(&t, &d, CLOCK, &NoSecrets).unwrap();
        assert_eq!(p.get_names, ["Device.WiFi.SSID."]);
        assert!(p.add_objects.is_empty());
        // Listed now: one instance to add, with its alias value.
        let mut listed = t.clone();
        listed.get_mut("Device.WiFi.SSID.").unwrap().updated_ms = CLOCK.now_ms;
        let p = plan(&listed, &d, CLOCK, &NoSecrets).unwrap();
        assert_eq!(
            p.add_objects,
            [NewInstance { table: "Device.WiFi.SSID.".into(), alias: vec![("SSID".into(), "iot".into())] }]
        );
        // No instance at all: the highest-numbered ones go first, and nothing is written into them.
        let d = vec![
            Declared { instances: Some((0, 1)), ..declared("Device.WiFi.SSID.*") },
            Declared { value: Some(Value::Text("x".into())), ..declared("Device.WiFi.SSID.*.SSID") },
        ];
        let p = plan(&listed, &d, CLOCK, &NoSecrets).unwrap();
        assert_eq!(p.delete_objects, ["Device.WiFi.SSID.2."]);
        assert_eq!(p.set_values, [set("Device.WiFi.SSID.1.SSID", "x", ValueType::String)]);
    }

    #[test]
    fn unknown_structure_is_listed_before_anything_is_written() {
        let t = tree();
        let d = vec![
            Declared { max_age: Some(HOUR), ..declared("Device.Hosts.Host.*.HostName") },
            Declared { value: Some(Value::Text("x".into())), ..declared("Device.WiFi.SSID.1.SSID") },
        ];
        let p = plan(&t, &d, CLOCK, &NoSecrets).unwrap();
        assert_eq!(p.get_names, ["Device.Hosts.Host."]);
        assert!(p.set_values.is_empty(), "writes wait for the structure");
    }

    #[test]
    fn a_leaf_the_device_lacks_is_listed_for_once_per_max_age() {
        let mut t = tree();
        let lacking = |max_age| vec![Declared { max_age: Some(max_age), ..declared("Device.WiFi.SSID.1.Missing") }];
        // The object was listed an hour and a half ago: older than an hour, so it is listed again.
        assert_eq!(plan(&t, &lacking(HOUR), CLOCK, &NoSecrets).unwrap().get_names, ["Device.WiFi.SSID.1."]);
        // Within two hours, that listing showed the leaf absent: nothing to fetch.
        assert!(plan(&t, &lacking(2 * HOUR), CLOCK, &NoSecrets).unwrap().is_empty());
        // Listed in this session, the leaf still absent: "this session's value" cannot be had.
        t.get_mut("Device.WiFi.SSID.1.").unwrap().updated_ms = CLOCK.now_ms;
        assert!(plan(&t, &lacking(Duration::ZERO), CLOCK, &NoSecrets).unwrap().is_empty());
        // An object never listed is listed.
        let d = vec![Declared { max_age: Some(HOUR), ..declared("Device.Hosts.HostNumberOfEntries") }];
        assert_eq!(plan(&t, &d, CLOCK, &NoSecrets).unwrap().get_names, ["Device.Hosts."]);
    }

    #[test]
    fn impossible_declarations_are_errors_with_the_path() {
        let t = tree();
        let d = vec![Declared {
            value: Some(Value::Text("abc".into())),
            ..declared("Device.ManagementServer.PeriodicInformInterval")
        }];
        let e = plan(&t, &d, CLOCK, &NoSecrets).unwrap_err();
        assert_eq!(e.path, "Device.ManagementServer.PeriodicInformInterval");
        assert!(e.reason.contains("not an unsigned integer"), "{e}");
        let d = vec![Declared { value: Some(Value::Text("x".into())), ..declared("Device.No.Such.Thing") }];
        assert!(plan(&t, &d, CLOCK, &NoSecrets).unwrap_err().reason.contains("no such parameter"));
    }
}
