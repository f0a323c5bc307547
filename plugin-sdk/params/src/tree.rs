//! A device's parameter tree in memory, and pattern matching over it.
//!
//! Paths are keys of one ordered map; objects end in `.`, as CWMP names them. Both the host (a
//! session's view of the store) and the test harness use it, so matching is the same everywhere.

use std::collections::BTreeMap;
use std::ops::Bound;

use crate::pattern::{Pattern, Segment, is_instance_number};

/// One node as stored.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Node {
    /// The value as CWMP text; `None` for objects and for leaves whose value was never fetched.
    pub value: Option<String>,
    /// The xsd type the device reported (`xsd:string`, `xsd:unsignedInt`, …); empty when unknown.
    pub value_type: String,
    /// Whether the device reported the node writable.
    pub writable: bool,
    /// When the node was last read from or written to the device (ms since the UNIX epoch).
    pub updated_ms: u64,
}

/// The parameters of one device.
#[derive(Debug, Clone, Default)]
pub struct ParameterTree {
    nodes: BTreeMap<String, Node>,
}

impl ParameterTree {
    /// An empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// Insert or replace a node (objects end in `.`). Objects above it need not be present.
    pub fn insert(&mut self, path: impl Into<String>, node: Node) {
        self.nodes.insert(path.into(), node);
    }

    /// Remove a node, and everything below it when it is an object.
    pub fn remove(&mut self, path: &str) {
        if path.ends_with('.') {
            let below: Vec<String> = self.range(path).map(|(k, _)| k.clone()).collect();
            for key in below {
                self.nodes.remove(&key);
            }
        } else {
            self.nodes.remove(path);
        }
    }

    /// The node at `path`.
    pub fn get(&self, path: &str) -> Option<&Node> {
        self.nodes.get(path)
    }

    /// The node at `path`, mutable.
    pub fn get_mut(&mut self, path: &str) -> Option<&mut Node> {
        self.nodes.get_mut(path)
    }

    /// Every node, in path order.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &Node)> {
        self.nodes.iter()
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether the tree is empty.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Every node whose path starts with `prefix`, in path order.
    pub fn range<'a>(&'a self, prefix: &str) -> impl Iterator<Item = (&'a String, &'a Node)> + 'a {
        let prefix = prefix.to_owned();
        self.nodes
            .range::<str, _>((Bound::Included(prefix.as_str()), Bound::Unbounded))
            .take_while(move |(k, _)| k.starts_with(&prefix))
    }

    /// Whether anything exists at or below `path` (an object path ends in `.`).
    pub fn exists(&self, path: &str) -> bool {
        self.range(path).next().is_some_and(|(k, _)| k == path || path.ends_with('.'))
    }

    /// The names of the direct children of `object` (which ends in `.`), in path order, each with
    /// whether it is an object. Objects need not be stored themselves: a leaf below implies them.
    pub fn children(&self, object: &str) -> Vec<(String, bool)> {
        let mut out: Vec<(String, bool)> = Vec::new();
        let mut cursor = object.to_owned();
        loop {
            let next = self
                .nodes
                .range::<str, _>((Bound::Excluded(cursor.as_str()), Bound::Unbounded))
                .next()
                .filter(|(k, _)| k.starts_with(object));
            let Some((key, _)) = next else { break };
            let rest = &key[object.len()..];
            let (name, is_object) = match rest.find('.') {
                Some(dot) => (&rest[..dot], true),
                None => (rest, false),
            };
            if name.is_empty() {
                break;
            }
            out.push((name.to_owned(), is_object));
            // Skip the child's subtree: '/' sorts right after '.', so `<child>/` is past every
            // `<child>.…` key but before `<child>0`.
            cursor = format!("{object}{name}/");
        }
        out
    }

    /// The paths a pattern matches: leaves for a leaf pattern, objects (ending in `.`) for an
    /// object or instance pattern, in path order.
    pub fn expand(&self, pattern: &Pattern) -> Vec<String> {
        let segments = pattern.segments();
        let mut current = vec![String::new()];
        for (i, segment) in segments.iter().enumerate() {
            let last = i + 1 == segments.len();
            let want_object = !last || pattern.is_object() || !matches!(segment, Segment::Name(_));
            let mut next = Vec::new();
            for base in &current {
                match segment {
                    Segment::Name(name) => {
                        let candidate = if want_object { format!("{base}{name}.") } else { format!("{base}{name}") };
                        if self.exists(&candidate) {
                            next.push(candidate);
                        }
                    }
                    Segment::Any => {
                        for (name, is_object) in self.children(base) {
                            if is_object == want_object {
                                next.push(if is_object { format!("{base}{name}.") } else { format!("{base}{name}") });
                            }
                        }
                    }
                    Segment::Alias(keys) => {
                        for (name, is_object) in self.children(base) {
                            if !is_object || !is_instance_number(&name) {
                                continue;
                            }
                            let instance = format!("{base}{name}.");
                            let matches = keys.iter().all(|key| {
                                self.get(&format!("{instance}{}", key.path)).is_some_and(|node| {
                                    node.value.as_deref().is_some_and(|v| alias_value_matches(v, node, &key.value))
                                })
                            });
                            if matches {
                                next.push(instance);
                            }
                        }
                    }
                }
            }
            current = next;
            if current.is_empty() {
                break;
            }
        }
        current
    }

    /// Every leaf a pattern covers: the matching leaves, or every leaf below matching objects.
    pub fn leaves(&self, pattern: &Pattern) -> Vec<String> {
        let mut out = Vec::new();
        for path in self.expand(pattern) {
            if path.ends_with('.') {
                out.extend(self.range(&path).filter(|(k, _)| !k.ends_with('.')).map(|(k, _)| k.clone()));
            } else {
                out.push(path);
            }
        }
        out
    }
}

/// Alias values compare as text, except booleans, where `1` and `true` are the same.
fn alias_value_matches(stored: &str, node: &Node, wanted: &str) -> bool {
    if node.value_type.eq_ignore_ascii_case("xsd:boolean") {
        return parse_bool(stored).is_some() && parse_bool(stored) == parse_bool(wanted);
    }
    stored == wanted
}

/// A CWMP boolean: `1`/`true` or `0`/`false` (any case, as real firmware sends).
pub fn parse_bool(text: &str) -> Option<bool> {
    match text.trim() {
        "1" => Some(true),
        "0" => Some(false),
        t if t.eq_ignore_ascii_case("true") => Some(true),
        t if t.eq_ignore_ascii_case("false") => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {

    use super::*;

    fn leaf(value: &str, value_type: &str) -> Node {
        Node { value: Some(value.into()), value_type: value_type.into(), writable: true, updated_ms: 1 }
    }

    fn sample() -> ParameterTree {
        let mut t = ParameterTree::new();
        for (i, ssid, enable) in [(1, "home", "1"), (2, "guest", "0"), (10, "guest", "true")] {
            t.insert(format!("Device.WiFi.SSID.{i}."), Node::default());
            t.insert(format!("Device.WiFi.SSID.{i}.SSID"), leaf(ssid, "xsd:string"));
            t.insert(format!("Device.WiFi.SSID.{i}.Enable"), leaf(enable, "xsd:boolean"));
            t.insert(format!("Device.WiFi.SSID.{i}.Stats.BytesSent"), leaf("5", "xsd:unsignedInt"));
        }
        t.insert("Device.WiFi.SSIDNumberOfEntries", leaf("3", "xsd:unsignedInt"));
        t
    }

    fn expand(t: &ParameterTree, p: &str) -> Vec<String> {
        t.expand(&Pattern::parse(p).unwrap())
    }

    #[test]
    fn wildcards_match_every_instance_in_order() {
        let t = sample();
        assert_eq!(
            expand(&t, "Device.WiFi.SSID.*.SSID"),
            ["Device.WiFi.SSID.1.SSID", "Device.WiFi.SSID.10.SSID", "Device.WiFi.SSID.2.SSID"]
        );
        assert_eq!(expand(&t, "Device.WiFi.SSID.*").len(), 3);
        assert!(expand(&t, "Device.WiFi.SSID.*")[0].ends_with('.'));
        assert_eq!(expand(&t, "Device.WiFi.*"), ["Device.WiFi.SSID."]);
        assert_eq!(expand(&t, "Device.WiFi.SSIDNumberOfEntries"), ["Device.WiFi.SSIDNumberOfEntries"]);
        assert!(expand(&t, "Device.WiFi.Radio.*.Enable").is_empty());
    }

    #[test]
    fn aliases_select_by_child_values_and_booleans_compare_as_booleans() {
        let t = sample();
        assert_eq!(
            expand(&t, "Device.WiFi.SSID.[SSID:guest].Enable"),
            ["Device.WiFi.SSID.10.Enable", "Device.WiFi.SSID.2.Enable"]
        );
        assert_eq!(expand(&t, "Device.WiFi.SSID.[SSID:guest,Enable:1]"), ["Device.WiFi.SSID.10."]);
        assert_eq!(expand(&t, "Device.WiFi.SSID.[Enable:false]"), ["Device.WiFi.SSID.2."]);
        assert!(expand(&t, "Device.WiFi.SSID.[SSID:none]").is_empty());
    }

    #[test]
    fn leaves_cover_whole_objects_and_children_skip_subtrees() {
        let t = sample();
        let leaves = t.leaves(&Pattern::parse("Device.WiFi.SSID.1.").unwrap());
        assert_eq!(
            leaves,
            ["Device.WiFi.SSID.1.Enable", "Device.WiFi.SSID.1.SSID", "Device.WiFi.SSID.1.Stats.BytesSent"]
        );
        let names: Vec<String> = t.children("Device.WiFi.SSID.").into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["1", "10", "2"]);
        let mut t2 = t.clone();
        t2.remove("Device.WiFi.SSID.1.");
        assert!(!t2.exists("Device.WiFi.SSID.1."));
        assert!(t2.exists("Device.WiFi.SSID.10."));
    }
}
