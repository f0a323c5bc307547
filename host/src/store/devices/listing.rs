//! Finding devices: the filtered, sorted, paged list of the REST API and the NBI's queries.

use anyhow::{Context, Result};
use sea_orm::{ConnectionTrait, DbBackend, FromQueryResult, Value};

use super::Device;
use super::filter::{self, Field, Filter};
use crate::store::Store;
use crate::store::orgs::Scope;

/// Filters of `GET /api/v1/devices`.
#[derive(Debug, Default, Clone)]
pub struct DeviceFilter {
    pub serial_number: Option<String>,
    pub oui: Option<String>,
    pub product_class: Option<String>,
    pub software_version: Option<String>,
    pub manufacturer: Option<String>,
    pub hardware_version: Option<String>,
    /// The column's value: `tr098` or `tr181`.
    pub data_model: Option<String>,
    pub last_inform_after: Option<i64>,
    pub last_inform_before: Option<i64>,
    /// Devices carrying every one of these tags.
    pub tags: Vec<String>,
    /// Stored parameter values, by path.
    pub parameters: Vec<(String, ParameterMatch)>,
    /// Only devices of these organizations (a subtree within the caller's scope).
    pub orgs: Option<Vec<i64>>,
    /// Only devices no organization has (pending devices).
    pub pending: bool,
    /// Only devices online (or offline) at a time (`devices.offline_at`).
    pub online_at: Option<OnlineAt>,
}

/// Whether a device is online at `at`: its `offline_at` is later.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OnlineAt {
    pub online: bool,
    pub at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParameterMatch {
    Equals(String),
    Prefix(String),
}

/// What a device list is ordered by; ties (and `Id`) by id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortKey {
    Id,
    SerialNumber,
    LastInform,
    Registered,
}

impl SortKey {
    pub fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "id" => Self::Id,
            "serial_number" => Self::SerialNumber,
            "last_inform_at" => Self::LastInform,
            "registered_at" => Self::Registered,
            _ => return None,
        })
    }

    /// The column ordered by, with an index in that order (`m0009`). `last_inform_at` is never
    /// NULL in practice: a device row is made by its first Inform.
    fn expression(self) -> &'static str {
        match self {
            Self::Id => "id",
            Self::SerialNumber => "serial_number",
            Self::LastInform => "last_inform_at",
            Self::Registered => "registered_at",
        }
    }

    /// The value of a device's sort key, for the next page's cursor.
    pub fn value_of(self, device: &Device) -> SortValue {
        match self {
            Self::Id => SortValue::Number(device.id.0),
            Self::SerialNumber => SortValue::Text(device.serial_number.clone()),
            Self::LastInform => SortValue::Number(device.last_inform_at.unwrap_or(0)),
            Self::Registered => SortValue::Number(device.registered_at),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(untagged)]
pub enum SortValue {
    Number(i64),
    Text(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sort {
    pub key: SortKey,
    pub descending: bool,
}

impl Default for Sort {
    fn default() -> Self {
        Self { key: SortKey::Id, descending: false }
    }
}

/// Where a page starts: after the device with this sort value and id.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct After {
    pub value: SortValue,
    pub id: i64,
}

/// A page of devices in `sort` order after `after`.
pub async fn list(
    store: &Store,
    scope: &Scope,
    filter: &DeviceFilter,
    sort: Sort,
    after: Option<&After>,
    limit: u64,
) -> Result<Vec<Device>> {
    let (scope_sql, mut args) = scope.condition("org_id");
    let mut sql = format!("SELECT * FROM devices WHERE {scope_sql}");
    if filter.pending {
        sql.push_str(" AND org_id IS NULL");
    }
    if let Some(orgs) = &filter.orgs {
        if orgs.is_empty() {
            sql.push_str(" AND 1 = 0");
        } else {
            sql.push_str(&format!(" AND org_id IN ({})", crate::store::placeholders(orgs.len())));
            args.extend(orgs.iter().map(|id| Value::from(*id)));
        }
    }
    let mut add = |clause: &str, values: Vec<Value>| {
        sql.push_str(" AND ");
        sql.push_str(clause);
        args.extend(values);
    };
    if let Some(v) = &filter.serial_number {
        add("serial_number = ?", vec![v.as_str().into()]);
    }
    if let Some(v) = &filter.oui {
        add("oui = ?", vec![v.as_str().into()]);
    }
    if let Some(v) = &filter.product_class {
        add("product_class = ?", vec![v.as_str().into()]);
    }
    if let Some(v) = &filter.software_version {
        add("software_version = ?", vec![v.as_str().into()]);
    }
    if let Some(v) = &filter.manufacturer {
        add("manufacturer = ?", vec![v.as_str().into()]);
    }
    if let Some(v) = &filter.hardware_version {
        add("hardware_version = ?", vec![v.as_str().into()]);
    }
    if let Some(v) = &filter.data_model {
        add("data_model = ?", vec![v.as_str().into()]);
    }
    if let Some(v) = filter.last_inform_after {
        add("last_inform_at >= ?", vec![v.into()]);
    }
    if let Some(v) = filter.last_inform_before {
        add("last_inform_at < ?", vec![v.into()]);
    }
    match filter.online_at {
        Some(OnlineAt { online: true, at }) => add("offline_at > ?", vec![at.into()]),
        Some(OnlineAt { online: false, at }) => add("(offline_at IS NULL OR offline_at <= ?)", vec![at.into()]),
        None => {}
    }
    for tag in &filter.tags {
        add("id IN (SELECT device_id FROM device_tags WHERE tag = ?)", vec![tag.as_str().into()]);
    }
    for (path, matching) in &filter.parameters {
        match matching {
            ParameterMatch::Equals(value) => add(
                "EXISTS (SELECT 1 FROM parameters p WHERE p.device_id = devices.id AND p.path = ? AND p.value = ?)",
                vec![path.as_str().into(), value.as_str().into()],
            ),
            ParameterMatch::Prefix(prefix) => add(
                "EXISTS (SELECT 1 FROM parameters p WHERE p.device_id = devices.id AND p.path = ? \
                 AND substr(p.value, 1, CAST(? AS INTEGER)) = ?)",
                vec![path.as_str().into(), (prefix.chars().count() as i64).into(), prefix.as_str().into()],
            ),
        }
    }
    let key = sort.key.expression();
    let (after_op, direction) = if sort.descending { ("<", "DESC") } else { (">", "ASC") };
    if let Some(after) = after {
        let value: Value = match &after.value {
            SortValue::Number(n) => (*n).into(),
            SortValue::Text(t) => t.as_str().into(),
        };
        if sort.key == SortKey::Id {
            add(&format!("id {after_op} ?"), vec![after.id.into()]);
        } else {
            add(
                &format!("({key} {after_op} ? OR ({key} = ? AND id {after_op} ?))"),
                vec![value.clone(), value, after.id.into()],
            );
        }
    }
    if sort.key == SortKey::Id {
        sql.push_str(&format!(" ORDER BY id {direction} LIMIT ?"));
    } else {
        sql.push_str(&format!(" ORDER BY {key} {direction}, id {direction} LIMIT ?"));
    }
    args.push((limit as i64).into());
    Device::find_by_statement(store.statement(&sql, args)).all(store.db()).await.context("listing devices")
}

/// A query over devices (the NBI's): a filter, an order, the stored values of some fields to
/// bring back with each device (those whose `$regex` the caller checks) and a page. Built by
/// [`DeviceQuery::new`], which writes its SQL.
#[derive(Debug, Clone)]
pub struct DeviceQuery {
    condition: String,
    args: Vec<Value>,
    extra: Vec<(String, Vec<Value>)>,
    order: String,
    pub offset: u64,
    pub limit: u64,
}

impl DeviceQuery {
    /// `sort`: the fields to order by, each descending when `true`, ties broken by the row id.
    /// An error says what of the filter or the sort cannot be queried.
    pub fn new(
        filter: Option<&Filter>,
        sort: &[(Field, bool)],
        backend: DbBackend,
        offset: u64,
        limit: u64,
    ) -> Result<Self, String> {
        let (condition, args) = match filter {
            Some(filter) => filter::to_sql(filter, backend)?,
            None => ("1 = 1".into(), Vec::new()),
        };
        let mut order = Vec::with_capacity(sort.len() + 1);
        for (field, descending) in sort {
            let column = field.column().ok_or("devices are sorted by their own columns, not by tags or parameters")?;
            order.push(format!("d.{column} {}", if *descending { "DESC" } else { "ASC" }));
        }
        order.push("d.id".into());
        Ok(Self { condition, args, extra: Vec::new(), order: order.join(", "), offset, limit })
    }

    /// Brings back the stored value of each of `fields` with each device, in that order.
    pub fn with_values_of(mut self, fields: &[Field]) -> Self {
        self.extra = fields
            .iter()
            .map(|field| match field {
                Field::Parameter(path) => (
                    "SELECT p.value FROM parameters p WHERE p.device_id = d.id AND p.path = ?".to_owned(),
                    vec![path.as_str().into()],
                ),
                other => (format!("d.{}", other.column().unwrap_or("device_id")), Vec::new()),
            })
            .collect();
        self
    }
}

/// Devices of the scope matching a [`DeviceQuery`], with the values of its extra expressions.
pub async fn find(store: &Store, scope: &Scope, query: &DeviceQuery) -> Result<Vec<(Device, Vec<Option<String>>)>> {
    let (scope_sql, scope_args) = scope.condition("d.org_id");
    let mut columns = String::from("d.*");
    let mut args: Vec<Value> = Vec::new();
    for (i, (expression, values)) in query.extra.iter().enumerate() {
        columns.push_str(&format!(", ({expression}) AS extra_{i}"));
        args.extend(values.iter().cloned());
    }
    args.extend(scope_args);
    args.extend(query.args.iter().cloned());
    args.push(Value::from(i64::try_from(query.limit).unwrap_or(i64::MAX)));
    args.push(Value::from(i64::try_from(query.offset).unwrap_or(i64::MAX)));
    let sql = format!(
        "SELECT {columns} FROM devices d WHERE {scope_sql} AND {} ORDER BY {} LIMIT ? OFFSET ?",
        query.condition, query.order
    );
    let rows = store.db().query_all_raw(store.statement(&sql, args)).await.context("querying devices")?;
    rows.iter()
        .map(|row| {
            let device = Device::from_query_result(row, "").context("reading device")?;
            let values = (0..query.extra.len())
                .map(|i| row.try_get::<Option<String>>("", &format!("extra_{i}")).context("reading a queried value"))
                .collect::<Result<Vec<_>>>()?;
            Ok((device, values))
        })
        .collect()
}

/// Devices alike in what chooses their adapter (`provisioning::adapters`' cache key): their
/// organization and the device facts of their Informs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceKind {
    pub org_id: Option<i64>,
    pub manufacturer: String,
    pub oui: String,
    pub product_class: String,
    pub software_version: String,
    pub hardware_version: String,
    pub data_model: String,
    pub devices: i64,
    /// One device of the kind, to ask the adapters about.
    pub sample: crate::store::DevicePk,
}

/// The scope's devices by kind, the most numerous first, at most `limit` kinds: one walk of the
/// scope's devices (a report, off every hot path).
pub async fn kinds(store: &Store, scope: &Scope, limit: u64) -> Result<Vec<DeviceKind>> {
    let (condition, mut args) = scope.condition("org_id");
    let sql = format!(
        "SELECT org_id, manufacturer, oui, product_class, software_version, hardware_version, data_model, \
         CAST(COUNT(*) AS BIGINT) AS n, MIN(id) FROM devices WHERE {condition} \
         GROUP BY org_id, manufacturer, oui, product_class, software_version, hardware_version, data_model \
         ORDER BY n DESC, MIN(id) LIMIT ?"
    );
    args.push(crate::store::count_value(limit));
    let rows = store.db().query_all_raw(store.statement(&sql, args)).await.context("counting devices by kind")?;
    rows.iter()
        .map(|row| {
            Ok(DeviceKind {
                org_id: row.try_get_by_index(0)?,
                manufacturer: row.try_get_by_index(1)?,
                oui: row.try_get_by_index(2)?,
                product_class: row.try_get_by_index(3)?,
                software_version: row.try_get_by_index(4)?,
                hardware_version: row.try_get_by_index(5)?,
                data_model: row.try_get_by_index(6)?,
                devices: row.try_get_by_index(7)?,
                sample: crate::store::DevicePk(row.try_get_by_index(8)?),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_device_query_orders_by_columns_then_id_and_brings_back_what_regexes_check() {
        let sort = [(Field::Time("last_inform_at"), true), (Field::Id, false)];
        let query = DeviceQuery::new(None, &sort, DbBackend::Sqlite, 20, 10).unwrap();
        assert_eq!(
            (query.condition.as_str(), query.order.as_str()),
            ("1 = 1", "d.last_inform_at DESC, d.device_id ASC, d.id")
        );
        assert!(DeviceQuery::new(None, &[(Field::Tags, false)], DbBackend::Sqlite, 0, 10).is_err());
        let query = query.with_values_of(&[Field::Parameter("Device.X".into()), Field::Id]);
        let expressions: Vec<&str> = query.extra.iter().map(|(sql, _)| sql.as_str()).collect();
        assert_eq!(
            expressions,
            ["SELECT p.value FROM parameters p WHERE p.device_id = d.id AND p.path = ?", "d.device_id"]
        );
    }
}
