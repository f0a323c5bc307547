//! Parameter trees: one shared [`DataModel`] per device model, one [`ParameterTree`] per device.
//!
//! A simulated fleet holds thousands of copies of the same 6,000-node tree, so the base tree is
//! loaded once, frozen behind an `Arc`, and each device keeps only a copy-on-write overlay of
//! what differs (its serial number, values the ACS set, objects it added or deleted). Reads
//! look in the overlay first; ordered walks merge both maps.
//!
//! Paths are stored in their canonical CWMP spelling: objects end with `.`
//! (`Device.WiFi.SSID.1.`), parameters do not (`Device.WiFi.SSID.1.SSID`). Because `.` sorts
//! before every letter and digit, everything below an object is one contiguous range of the
//! ordered map, which is what makes partial-path walks cheap.

mod load;

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::iter::Peekable;
use std::ops::Bound;
use std::sync::Arc;

use roost_cwmp::{DeviceIdStruct, ValueType};

pub use load::{CsvLayout, LoadError};

/// Which root the tree uses, which decides the forced Inform parameters and a few result names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DataModelKind {
    /// TR-098: `InternetGatewayDevice.`
    Tr098,
    /// TR-181 (Device:2): `Device.`
    Tr181,
}

/// One node of a parameter tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// Objects have no value; their `writable` flag means "AddObject/DeleteObject allowed", as
    /// GetParameterNames reports it.
    pub object: bool,
    pub writable: bool,
    pub value: String,
    pub value_type: ValueType,
}

impl Node {
    pub fn object(writable: bool) -> Self {
        Self { object: true, writable, value: String::new(), value_type: ValueType::String }
    }

    pub fn parameter(value: impl Into<String>, value_type: ValueType, writable: bool) -> Self {
        Self { object: false, writable, value: value.into(), value_type }
    }
}

/// A device model's parameter tree as exported from a real device, shared by every simulated
/// device of that model.
#[derive(Debug, Clone)]
pub struct DataModel {
    nodes: BTreeMap<String, Node>,
    root: String,
    kind: DataModelKind,
    layout: CsvLayout,
    /// The GenieACS `DeviceID.*` bookkeeping rows, when the export had them: not device
    /// parameters, but the best fallback for an identity the tree itself lacks.
    export_identity: Option<DeviceIdStruct>,
}

impl DataModel {
    /// Builds a model from canonical paths; parents missing from `nodes` are created as
    /// non-writable objects so every walk finds a complete hierarchy.
    pub fn from_nodes(nodes: impl IntoIterator<Item = (String, Node)>) -> Result<Self, LoadError> {
        load::build(nodes, CsvLayout::Programmatic, None)
    }

    /// The root object, e.g. `InternetGatewayDevice.` or `Device.`.
    pub fn root(&self) -> &str {
        &self.root
    }

    pub fn kind(&self) -> DataModelKind {
        self.kind
    }

    /// Which CSV layout the model was loaded from.
    pub fn layout(&self) -> CsvLayout {
        self.layout
    }

    /// Number of parameters (leaves).
    pub fn parameter_count(&self) -> usize {
        self.nodes.values().filter(|n| !n.object).count()
    }

    /// Number of objects, the root included.
    pub fn object_count(&self) -> usize {
        self.nodes.values().filter(|n| n.object).count()
    }

    /// The exact node at a canonical path.
    pub fn node(&self, path: &str) -> Option<&Node> {
        self.nodes.get(path)
    }

    /// Every node, in path order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Node)> {
        self.nodes.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// The identity recorded by a GenieACS export outside the data model (`DeviceID.*` rows).
    pub fn export_identity(&self) -> Option<&DeviceIdStruct> {
        self.export_identity.as_ref()
    }

    /// Makes the tree report another identity: each given field replaces the tree's
    /// `DeviceInfo.` value (added when the tree lacks it) and the export's `DeviceID.*` row. For
    /// trying a vendor adapter against a real device's tree before that vendor's own export is at
    /// hand (`roost-sim --oui`, docs/PLUGINS.md).
    pub fn rebadge(&mut self, badge: &Badge) {
        let fields = [
            ("ManufacturerOUI", badge.oui.as_deref()),
            ("Manufacturer", badge.manufacturer.as_deref()),
            ("ProductClass", badge.product_class.as_deref()),
        ];
        for (name, value) in fields {
            let Some(value) = value else { continue };
            let path = format!("{}DeviceInfo.{name}", self.root);
            match self.nodes.get_mut(&path) {
                Some(node) if !node.object => node.value = value.to_owned(),
                _ => {
                    self.nodes.insert(path, Node::parameter(value, ValueType::String, false));
                }
            }
        }
        if let Some(export) = &mut self.export_identity {
            if let Some(oui) = &badge.oui {
                export.oui.clone_from(oui);
            }
            if let Some(manufacturer) = &badge.manufacturer {
                export.manufacturer.clone_from(manufacturer);
            }
            if let Some(product_class) = &badge.product_class {
                export.product_class.clone_from(product_class);
            }
        }
    }

    fn range<'a>(&'a self, prefix: &'a str) -> impl Iterator<Item = (&'a str, &'a Node)> + 'a {
        self.nodes
            .range::<str, _>((Bound::Included(prefix), Bound::Unbounded))
            .take_while(move |(k, _)| k.starts_with(prefix))
            .map(|(k, v)| (k.as_str(), v))
    }
}

/// The identity [`DataModel::rebadge`] gives a tree; `None` keeps the tree's own.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Badge {
    pub oui: Option<String>,
    pub manufacturer: Option<String>,
    pub product_class: Option<String>,
}

/// One device's view of a [`DataModel`]: the shared base plus a private overlay.
#[derive(Debug, Clone)]
pub struct ParameterTree {
    base: Arc<DataModel>,
    /// `Some` replaces or adds a node, `None` hides a base node (deleted instance).
    overlay: BTreeMap<String, Option<Node>>,
}

impl ParameterTree {
    pub fn new(base: Arc<DataModel>) -> Self {
        Self { base, overlay: BTreeMap::new() }
    }

    pub fn model(&self) -> &Arc<DataModel> {
        &self.base
    }

    pub fn root(&self) -> &str {
        self.base.root()
    }

    pub fn kind(&self) -> DataModelKind {
        self.base.kind()
    }

    /// Number of paths this device holds privately: a measure of its memory cost.
    pub fn overlay_len(&self) -> usize {
        self.overlay.len()
    }

    /// Drops every local change: the tree becomes the base model again.
    pub fn reset(&mut self) {
        self.overlay.clear();
    }

    /// The node at a canonical path (objects with their trailing `.`).
    pub fn node(&self, path: &str) -> Option<&Node> {
        match self.overlay.get(path) {
            Some(entry) => entry.as_ref(),
            None => self.base.node(path),
        }
    }

    /// A parameter's stored value and type; `None` for objects and unknown paths.
    pub fn get(&self, path: &str) -> Option<(&str, &ValueType)> {
        self.node(path).filter(|n| !n.object).map(|n| (n.value.as_str(), &n.value_type))
    }

    /// Whether a parameter exists (not an object).
    pub fn has_parameter(&self, path: &str) -> bool {
        self.get(path).is_some()
    }

    /// Replaces an existing parameter's value, ignoring its writable flag: the device itself
    /// may change anything. Returns false when there is no such parameter.
    pub fn set_value(&mut self, path: &str, value: &str) -> bool {
        let Some(node) = self.node(path).filter(|n| !n.object) else {
            return false;
        };
        if node.value == value {
            return true;
        }
        let mut node = node.clone();
        node.value = value.to_owned();
        self.overlay.insert(path.to_owned(), Some(node));
        true
    }

    /// Adds or replaces a node. Parents are not created: callers insert top-down.
    pub fn insert(&mut self, path: impl Into<String>, node: Node) {
        let path = path.into();
        if self.base.node(&path) == Some(&node) {
            self.overlay.remove(&path);
        } else {
            self.overlay.insert(path, Some(node));
        }
    }

    /// Removes a node and, for an object path (ending with `.`), everything below it.
    pub fn remove_subtree(&mut self, path: &str) {
        let doomed: Vec<String> = if path.ends_with('.') {
            self.walk(path).map(|(k, _)| k.to_owned()).collect()
        } else {
            vec![path.to_owned()]
        };
        for key in doomed {
            if self.base.node(&key).is_some() {
                self.overlay.insert(key, None);
            } else {
                self.overlay.remove(&key);
            }
        }
    }

    /// The node at `prefix` (if `prefix` is an object) and everything below it, in path order.
    /// The empty prefix walks the whole tree.
    pub fn walk<'a>(&'a self, prefix: &'a str) -> impl Iterator<Item = (&'a str, &'a Node)> + 'a {
        let overlay = self
            .overlay
            .range::<str, _>((Bound::Included(prefix), Bound::Unbounded))
            .take_while(move |(k, _)| k.starts_with(prefix))
            .map(|(k, v)| (k.as_str(), v.as_ref()));
        Merge { base: self.base.range(prefix).peekable(), overlay: overlay.peekable() }
    }

    /// The direct children of an object: parameters and sub-objects one level down.
    pub fn children<'a>(&'a self, object: &'a str) -> impl Iterator<Item = (&'a str, &'a Node)> + 'a {
        self.walk(object).filter(move |(k, _)| is_direct_child(object, k))
    }

    /// Whether an object is a multi-instance table: its name is not an instance number and
    /// its children, if any, are all instances. An object with parameters of its own is never
    /// a table, whatever its writable flag says (Huawei marks plain objects writable).
    pub fn is_table(&self, object: &str) -> bool {
        let Some(node) = self.node(object) else { return false };
        if !node.object || last_segment(object).parse::<u32>().is_ok() || object == self.root() {
            return false;
        }
        let mut children = self.children(object).peekable();
        if children.peek().is_none() {
            // An empty object is a table only if the device lets the ACS add to it.
            return node.writable;
        }
        children.all(|(k, n)| n.object && last_segment(k).parse::<u32>().is_ok())
    }

    /// Instance numbers present in a table, ascending.
    pub fn instances(&self, table: &str) -> Vec<u32> {
        let mut numbers: Vec<u32> =
            self.children(table).filter(|(_, n)| n.object).filter_map(|(k, _)| last_segment(k).parse().ok()).collect();
        numbers.sort_unstable();
        numbers
    }
}

/// The last path segment without its trailing dot: `SSID` for `Device.WiFi.SSID.`.
pub fn last_segment(path: &str) -> &str {
    let trimmed = path.strip_suffix('.').unwrap_or(path);
    trimmed.rsplit('.').next().unwrap_or(trimmed)
}

/// The object containing a path: `Device.WiFi.` for both `Device.WiFi.SSID.` and
/// `Device.WiFi.Enable`; `None` for a root.
pub fn parent(path: &str) -> Option<&str> {
    let trimmed = path.strip_suffix('.').unwrap_or(path);
    trimmed.rfind('.').map(|i| &path[..=i])
}

fn is_direct_child(object: &str, path: &str) -> bool {
    let Some(rest) = path.strip_prefix(object) else { return false };
    if rest.is_empty() {
        return false;
    }
    match rest.find('.') {
        None => true,
        Some(i) => i + 1 == rest.len(),
    }
}

/// Orders paths as firmware lists them: segment by segment, instance numbers numerically
/// (`SSID.2.` before `SSID.10.`), an object before its contents.
pub fn natural_cmp(a: &str, b: &str) -> Ordering {
    let mut xs = a.split('.');
    let mut ys = b.split('.');
    loop {
        match (xs.next(), ys.next()) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(x), Some(y)) => {
                let ord = match (x.parse::<u64>(), y.parse::<u64>()) {
                    (Ok(m), Ok(n)) => m.cmp(&n).then_with(|| x.cmp(y)),
                    _ => x.cmp(y),
                };
                if ord != Ordering::Equal {
                    return ord;
                }
            }
        }
    }
}

struct Merge<'a, B, O>
where
    B: Iterator<Item = (&'a str, &'a Node)>,
    O: Iterator<Item = (&'a str, Option<&'a Node>)>,
{
    base: Peekable<B>,
    overlay: Peekable<O>,
}

impl<'a, B, O> Iterator for Merge<'a, B, O>
where
    B: Iterator<Item = (&'a str, &'a Node)>,
    O: Iterator<Item = (&'a str, Option<&'a Node>)>,
{
    type Item = (&'a str, &'a Node);

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let order = match (self.base.peek(), self.overlay.peek()) {
                (None, None) => return None,
                (Some(_), None) => Ordering::Less,
                (None, Some(_)) => Ordering::Greater,
                (Some((b, _)), Some((o, _))) => b.cmp(o),
            };
            let (key, node) = match order {
                Ordering::Less => match self.base.next() {
                    Some((k, n)) => (k, Some(n)),
                    None => return None,
                },
                Ordering::Greater => self.overlay.next()?,
                Ordering::Equal => {
                    self.base.next();
                    self.overlay.next()?
                }
            };
            if let Some(node) = node {
                return Some((key, node));
            }
        }
    }
}

#[cfg(test)]
mod tests {

    use super::*;

    fn tiny() -> Arc<DataModel> {
        let nodes = [
            ("Device.", Node::object(false)),
            ("Device.A.", Node::object(true)),
            ("Device.A.1.", Node::object(true)),
            ("Device.A.1.X", Node::parameter("x1", ValueType::String, true)),
            ("Device.A.2.", Node::object(true)),
            ("Device.A.2.X", Node::parameter("x2", ValueType::String, true)),
            ("Device.B", Node::parameter("7", ValueType::UnsignedInt, true)),
        ];
        Arc::new(DataModel::from_nodes(nodes.map(|(k, n)| (k.to_owned(), n))).unwrap())
    }

    #[test]
    fn rebadge_changes_the_identity_a_device_reports_and_keeps_the_rest() {
        let mut model = DataModel::bundled(DataModelKind::Tr181).unwrap();
        let before = crate::FactoryTemplate::new(&Arc::new(model.clone())).identity().clone();
        assert_eq!((before.oui.as_str(), before.manufacturer.as_str()), ("1C61B4", "TP-Link"));
        model.rebadge(&Badge { oui: Some("00D0D0".into()), manufacturer: Some("Acme".into()), product_class: None });
        let after = crate::FactoryTemplate::new(&Arc::new(model.clone())).identity().clone();
        assert_eq!((after.oui.as_str(), after.manufacturer.as_str()), ("00D0D0", "Acme"));
        assert_eq!(after.product_class, before.product_class);
        assert_eq!(model.node("Device.DeviceInfo.ManufacturerOUI").unwrap().value, "00D0D0");

        // A tree without the parameter gets it.
        let mut tiny = (*tiny()).clone();
        tiny.rebadge(&Badge { product_class: Some("A1".into()), ..Badge::default() });
        assert_eq!(tiny.node("Device.DeviceInfo.ProductClass").unwrap().value, "A1");
    }

    #[test]
    fn overlay_shadows_adds_and_hides_base_nodes_in_order() {
        let mut tree = ParameterTree::new(tiny());
        assert!(tree.set_value("Device.A.1.X", "changed"));
        tree.insert("Device.A.3.", Node::object(true));
        tree.insert("Device.A.3.X", Node::parameter("", ValueType::String, true));
        tree.remove_subtree("Device.A.2.");
        let walked: Vec<_> = tree.walk("Device.A.").map(|(k, n)| (k, n.value.as_str())).collect();
        assert_eq!(
            walked,
            [
                ("Device.A.", ""),
                ("Device.A.1.", ""),
                ("Device.A.1.X", "changed"),
                ("Device.A.3.", ""),
                ("Device.A.3.X", "")
            ]
        );
        // The shared base is untouched.
        assert_eq!(tree.model().node("Device.A.1.X").unwrap().value, "x1");
        assert!(tree.model().node("Device.A.2.X").is_some());
        tree.reset();
        assert_eq!(tree.get("Device.A.2.X").unwrap().0, "x2");
    }

    #[test]
    fn setting_a_value_back_to_the_base_value_costs_no_memory_when_inserted() {
        let mut tree = ParameterTree::new(tiny());
        tree.insert("Device.B", Node::parameter("7", ValueType::UnsignedInt, true));
        assert_eq!(tree.overlay_len(), 0);
    }

    #[test]
    fn children_are_one_level_down_only() {
        let tree = ParameterTree::new(tiny());
        let kids: Vec<_> = tree.children("Device.").map(|(k, _)| k).collect();
        assert_eq!(kids, ["Device.A.", "Device.B"]);
        assert!(tree.is_table("Device.A."));
        assert!(!tree.is_table("Device.A.1."));
        assert!(!tree.is_table("Device."));
        assert_eq!(tree.instances("Device.A."), [1, 2]);
    }

    #[test]
    fn natural_order_puts_instance_numbers_in_numeric_order() {
        let mut paths = vec!["D.S.10.", "D.S.2.", "D.S.2.A", "D.S.1.", "D.S."];
        paths.sort_by(|a, b| natural_cmp(a, b));
        assert_eq!(paths, ["D.S.", "D.S.1.", "D.S.2.", "D.S.2.A", "D.S.10."]);
        assert_eq!(parent("D.S.2.A"), Some("D.S.2."));
        assert_eq!(parent("D.S.2."), Some("D.S."));
        assert_eq!(parent("D."), None);
        assert_eq!(last_segment("D.S.2."), "2");
    }
}
