//! Loading a [`DataModel`] from the two CSV layouts real device dumps come in.
//!
//! Both layouts name their columns, so columns are found by header name; the layout is still
//! detected (by the GenieACS-only `Object timestamp` column) because it tells where the file
//! came from and whether the `DeviceID.*`/`Events.*` bookkeeping rows are to be expected.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use roost_cwmp::{DeviceIdStruct, ValueType};

use super::{DataModel, DataModelKind, Node};

/// The CSV layout a model came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CsvLayout {
    /// GenieACS device export, 12 columns: `Parameter,Object,Object timestamp,Writable,…`.
    GenieAcsExport,
    /// genieacs-sim data model, 5 columns: `Parameter,Object,Writable,Value,Value type`.
    GenieAcsSim,
    /// Built in code with [`DataModel::from_nodes`].
    Programmatic,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    #[error("reading {path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("CSV: {0}")]
    Csv(#[from] csv::Error),
    #[error("CSV header lacks column {0:?}: not a GenieACS export nor a genieacs-sim data model")]
    MissingColumn(&'static str),
    #[error("no device parameters in the file")]
    Empty,
    #[error("parameters under several roots ({0} and {1}): one file must describe one device")]
    SeveralRoots(String, String),
    #[error("unknown data model root {0:?}: expected InternetGatewayDevice or Device")]
    UnknownRoot(String),
}

/// First path segments GenieACS writes for its own bookkeeping, not the device's.
const VIRTUAL_ROOTS: [&str; 2] = ["DeviceID", "Events"];

impl DataModel {
    /// Loads either CSV layout from a file.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, LoadError> {
        let path = path.as_ref();
        let file =
            std::fs::File::open(path).map_err(|source| LoadError::Io { path: path.display().to_string(), source })?;
        Self::from_csv(file)
    }

    /// Loads either CSV layout from a reader.
    pub fn from_csv(reader: impl Read) -> Result<Self, LoadError> {
        let mut csv = csv::ReaderBuilder::new().flexible(true).from_reader(reader);
        let headers = csv.headers()?.clone();
        let column =
            |name: &'static str| headers.iter().position(|h| h.trim() == name).ok_or(LoadError::MissingColumn(name));
        let layout = if headers.iter().any(|h| h.trim() == "Object timestamp") {
            CsvLayout::GenieAcsExport
        } else {
            CsvLayout::GenieAcsSim
        };
        let (c_param, c_object, c_writable, c_value, c_type) =
            (column("Parameter")?, column("Object")?, column("Writable")?, column("Value")?, column("Value type")?);

        let mut nodes = Vec::new();
        let mut identity = DeviceIdStruct::default();
        let mut has_identity = false;
        for record in csv.records() {
            let record = record?;
            let field = |i: usize| record.get(i).unwrap_or("").trim();
            let name = field(c_param);
            if name.is_empty() {
                continue;
            }
            let first = name.split('.').next().unwrap_or(name);
            if VIRTUAL_ROOTS.contains(&first) {
                let value = record.get(c_value).unwrap_or("").to_owned();
                has_identity = true;
                match name {
                    "DeviceID.Manufacturer" => identity.manufacturer = value,
                    "DeviceID.OUI" => identity.oui = value,
                    "DeviceID.ProductClass" => identity.product_class = value,
                    "DeviceID.SerialNumber" => identity.serial_number = value,
                    _ => {}
                }
                continue;
            }
            let is_object = field(c_object) == "true";
            let writable = field(c_writable) == "true";
            let name = name.trim_end_matches('.');
            if is_object {
                nodes.push((format!("{name}."), Node::object(writable)));
            } else {
                let raw_type = field(c_type);
                let value_type = if raw_type.is_empty() { ValueType::String } else { ValueType::parse(raw_type) };
                // Values keep their spaces: they are what the device returned.
                let value = record.get(c_value).unwrap_or("").to_owned();
                nodes.push((name.to_owned(), Node::parameter(value, value_type, writable)));
            }
        }
        build(nodes, layout, has_identity.then_some(identity))
    }
}

pub(super) fn build(
    nodes: impl IntoIterator<Item = (String, Node)>,
    layout: CsvLayout,
    export_identity: Option<DeviceIdStruct>,
) -> Result<DataModel, LoadError> {
    let mut map: BTreeMap<String, Node> = BTreeMap::new();
    let mut root: Option<String> = None;
    for (path, node) in nodes {
        let first = path.split('.').next().unwrap_or(&path).to_owned();
        match &root {
            None => root = Some(first),
            Some(r) if *r != first => return Err(LoadError::SeveralRoots(r.clone(), first)),
            Some(_) => {}
        }
        // Dumps list objects before their contents, but a 5-column file may skip one: create
        // missing ancestors so walks and GetParameterNames see a complete hierarchy.
        let mut end = 0;
        while let Some(i) = path[end..].find('.') {
            end += i + 1;
            if end < path.len() {
                map.entry(path[..end].to_owned()).or_insert_with(|| Node::object(false));
            }
        }
        map.insert(path, node);
    }
    let root = root.ok_or(LoadError::Empty)?;
    let kind = match root.as_str() {
        "InternetGatewayDevice" => DataModelKind::Tr098,
        "Device" => DataModelKind::Tr181,
        _ => return Err(LoadError::UnknownRoot(root)),
    };
    let root = format!("{root}.");
    map.entry(root.clone()).or_insert_with(|| Node::object(false));
    Ok(DataModel { nodes: map, root, kind, layout, export_identity })
}
