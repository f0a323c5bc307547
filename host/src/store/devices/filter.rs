//! A filter over devices, as the NBI's GenieACS-style queries express it (parsed by
//! `api::nbi::query`), and its SQL over `devices d` and the device's parameter and tag rows.

use regex::Regex;
use sea_orm::{DbBackend, Value};

use crate::store::placeholders;

/// What a query names.
#[derive(Debug, Clone, PartialEq)]
pub enum Field {
    /// `_id`: the device id.
    Id,
    /// `_tags`.
    Tags,
    /// A column of `devices`: `_deviceId._SerialNumber` and the like.
    Text(&'static str),
    /// A time column (`_lastInform`, `_registered`, …), in epoch milliseconds.
    Time(&'static str),
    /// A parameter's value, by path (`X.Y.Z` or `X.Y.Z._value`).
    Parameter(String),
}

impl Field {
    pub fn parse(name: &str) -> Result<Self, String> {
        Ok(match name {
            "_id" => Self::Id,
            "_tags" => Self::Tags,
            "_deviceId._SerialNumber" => Self::Text("serial_number"),
            "_deviceId._OUI" => Self::Text("oui"),
            "_deviceId._ProductClass" => Self::Text("product_class"),
            "_deviceId._Manufacturer" => Self::Text("manufacturer"),
            "_lastInform" => Self::Time("last_inform_at"),
            "_registered" => Self::Time("registered_at"),
            "_lastBoot" => Self::Time("last_boot_at"),
            "_lastBootstrap" => Self::Time("last_bootstrap_at"),
            _ if name.starts_with('_') => return Err(format!("unknown field {name:?}")),
            _ => {
                let path = name.strip_suffix("._value").unwrap_or(name);
                if path.is_empty() || path.ends_with('.') || path.split('.').any(|part| part.starts_with('_')) {
                    return Err(format!("{name:?} is not a parameter path (only ._value of a parameter is queried)"));
                }
                Self::Parameter(path.to_owned())
            }
        })
    }

    /// The column a sort or a regex reads, when the field is one.
    pub fn column(&self) -> Option<&'static str> {
        match self {
            Self::Id => Some("device_id"),
            Self::Text(column) | Self::Time(column) => Some(column),
            Self::Tags | Self::Parameter(_) => None,
        }
    }
}

/// A value a query compares with.
#[derive(Debug, Clone, PartialEq)]
pub enum Scalar {
    Text(String),
    Number(f64),
    Bool(bool),
    Null,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Comparison {
    Eq,
    Ne,
    Gt,
    Gte,
    Lt,
    Lte,
}

impl Comparison {
    fn sql(self) -> &'static str {
        match self {
            Self::Eq => "=",
            Self::Ne => "<>",
            Self::Gt => ">",
            Self::Gte => ">=",
            Self::Lt => "<",
            Self::Lte => "<=",
        }
    }
}

#[derive(Debug, Clone)]
pub enum Test {
    Compare(Comparison, Scalar),
    In(Vec<Scalar>),
    Exists(bool),
    Regex(Regex),
}

#[derive(Debug, Clone)]
pub enum Filter {
    And(Vec<Filter>),
    Or(Vec<Filter>),
    Test(Field, Test),
}

/// The `$regex` conditions of a filter (the NBI's parser allows them at its top level only).
pub fn regexes(filter: &Filter) -> Vec<(Field, Regex)> {
    match filter {
        Filter::Test(field, Test::Regex(regex)) => vec![(field.clone(), regex.clone())],
        Filter::Test(..) | Filter::Or(_) => Vec::new(),
        Filter::And(children) => children.iter().flat_map(regexes).collect(),
    }
}

/// Parses a time given as RFC 3339 text or epoch milliseconds.
fn time(value: &Scalar) -> Result<i64, String> {
    match value {
        Scalar::Number(ms) => Ok(*ms as i64),
        Scalar::Text(text) => chrono::DateTime::parse_from_rfc3339(text)
            .map(|t| t.timestamp_millis())
            .map_err(|_| format!("{text:?} is not an RFC 3339 time")),
        other => Err(format!("{other:?} is not a time")),
    }
}

/// Text a stored value is compared with.
fn text(value: &Scalar) -> String {
    match value {
        Scalar::Text(text) => text.clone(),
        Scalar::Number(number) => number.to_string(),
        Scalar::Bool(flag) => flag.to_string(),
        Scalar::Null => String::new(),
    }
}

/// SQL conditions over `devices d`, with their values. `$regex` conditions are `1 = 1` here:
/// the database selects a superset, and the caller checks the expressions on the values it
/// asked back ([`super::DeviceQuery::with_values_of`]).
pub fn to_sql(filter: &Filter, backend: DbBackend) -> Result<(String, Vec<Value>), String> {
    let mut args = Vec::new();
    let sql = node_sql(filter, backend, &mut args)?;
    Ok((sql, args))
}

fn node_sql(filter: &Filter, backend: DbBackend, args: &mut Vec<Value>) -> Result<String, String> {
    match filter {
        // `{}`: every device.
        Filter::And(children) if children.is_empty() => Ok("1 = 1".into()),
        Filter::And(children) | Filter::Or(children) => {
            let joiner = if matches!(filter, Filter::And(_)) { " AND " } else { " OR " };
            let parts = children.iter().map(|c| node_sql(c, backend, args)).collect::<Result<Vec<_>, _>>()?;
            Ok(format!("({})", parts.join(joiner)))
        }
        Filter::Test(field, test) => test_sql(field, test, backend, args),
    }
}

pub(crate) const PARAMETER: &str = "SELECT 1 FROM parameters p WHERE p.device_id = d.id AND p.path = ?";
pub(crate) const TAG: &str = "SELECT 1 FROM device_tags t WHERE t.device_id = d.id";

fn test_sql(field: &Field, test: &Test, backend: DbBackend, args: &mut Vec<Value>) -> Result<String, String> {
    if matches!(test, Test::Regex(_)) {
        return Ok("1 = 1".into());
    }
    match field {
        Field::Tags => match test {
            Test::Compare(Comparison::Eq, value) => {
                args.push(text(value).into());
                Ok(format!("EXISTS ({TAG} AND t.tag = ?)"))
            }
            Test::Compare(Comparison::Ne, value) => {
                args.push(text(value).into());
                Ok(format!("NOT EXISTS ({TAG} AND t.tag = ?)"))
            }
            Test::In(values) => {
                args.extend(values.iter().map(|v| Value::from(text(v))));
                Ok(format!("EXISTS ({TAG} AND t.tag IN ({}))", placeholders(values.len())))
            }
            Test::Exists(true) => Ok(format!("EXISTS ({TAG})")),
            Test::Exists(false) => Ok(format!("NOT EXISTS ({TAG})")),
            _ => Err("_tags takes equality, $ne, $in and $exists".into()),
        },
        Field::Id | Field::Text(_) => {
            let column = field.column().unwrap_or("device_id");
            match test {
                Test::Compare(comparison, value) => {
                    args.push(text(value).into());
                    Ok(format!("d.{column} {} ?", comparison.sql()))
                }
                Test::In(values) => {
                    args.extend(values.iter().map(|v| Value::from(text(v))));
                    Ok(format!("d.{column} IN ({})", placeholders(values.len())))
                }
                Test::Exists(exists) => Ok(if *exists { "1 = 1" } else { "1 = 0" }.into()),
                Test::Regex(_) => Ok("1 = 1".into()),
            }
        }
        Field::Time(column) => match test {
            Test::Compare(comparison, Scalar::Null) => Ok(match comparison {
                Comparison::Eq => format!("d.{column} IS NULL"),
                Comparison::Ne => format!("d.{column} IS NOT NULL"),
                _ => return Err("null is compared with $eq and $ne only".into()),
            }),
            Test::Compare(comparison, value) => {
                args.push(time(value)?.into());
                Ok(format!("d.{column} {} ?", comparison.sql()))
            }
            Test::In(values) => {
                for value in values {
                    args.push(time(value)?.into());
                }
                Ok(format!("d.{column} IN ({})", placeholders(values.len())))
            }
            Test::Exists(exists) => Ok(format!("d.{column} IS {}NULL", if *exists { "NOT " } else { "" })),
            Test::Regex(_) => Ok("1 = 1".into()),
        },
        Field::Parameter(path) => {
            args.push(path.as_str().into());
            match test {
                Test::Exists(true) => Ok(format!("EXISTS ({PARAMETER})")),
                Test::Exists(false) => Ok(format!("NOT EXISTS ({PARAMETER})")),
                // As in GenieACS, `$ne` also matches devices without the parameter.
                Test::Compare(Comparison::Ne, value) => {
                    let condition = value_condition(Comparison::Eq, value, backend, args);
                    Ok(format!("NOT EXISTS ({PARAMETER} AND {condition})"))
                }
                Test::Compare(comparison, value) => {
                    let condition = value_condition(*comparison, value, backend, args);
                    Ok(format!("EXISTS ({PARAMETER} AND {condition})"))
                }
                Test::In(values) => {
                    let conditions: Vec<String> =
                        values.iter().map(|v| value_condition(Comparison::Eq, v, backend, args)).collect();
                    Ok(format!("EXISTS ({PARAMETER} AND ({}))", conditions.join(" OR ")))
                }
                Test::Regex(_) => Ok("1 = 1".into()),
            }
        }
    }
}

/// A stored parameter value `p.value` against a query value: numbers compare as numbers (the
/// stored text read as one only where it is one: a cast that fails would fail the query on
/// PostgreSQL), booleans as CWMP writes them (`1`/`true`), everything else as text.
fn value_condition(comparison: Comparison, value: &Scalar, backend: DbBackend, args: &mut Vec<Value>) -> String {
    let op = comparison.sql();
    match value {
        Scalar::Number(number) => {
            args.push((*number).into());
            let numeric = match backend {
                DbBackend::Postgres => {
                    "CASE WHEN p.value ~ '^\\s*-{0,1}[0-9]+(\\.[0-9]+){0,1}([eE][-+]{0,1}[0-9]+){0,1}\\s*$' \
                     THEN CAST(p.value AS DOUBLE PRECISION) END"
                }
                _ => {
                    "CASE WHEN trim(p.value) <> '' AND trim(p.value) NOT GLOB '*[^0-9.eE+-]*' \
                     THEN CAST(p.value AS REAL) END"
                }
            };
            format!("{numeric} {op} ?")
        }
        Scalar::Bool(flag) => {
            let (word, digit) = if *flag { ("true", "1") } else { ("false", "0") };
            args.push(word.into());
            args.push(digit.into());
            if comparison == Comparison::Eq {
                "lower(p.value) IN (?, ?)".into()
            } else {
                "lower(p.value) NOT IN (?, ?)".into()
            }
        }
        Scalar::Null => {
            args.push("".into());
            format!("COALESCE(p.value, '') {op} ?")
        }
        Scalar::Text(text) => {
            args.push(text.as_str().into());
            format!("p.value {op} ?")
        }
    }
}
