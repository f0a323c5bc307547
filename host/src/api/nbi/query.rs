//! GenieACS-style device queries: the MongoDB-flavoured JSON that GenieACS users write
//! (`{"_tags": "office", "InternetGatewayDevice.DeviceInfo.SoftwareVersion": {"$ne": "1.2"}}`),
//! parsed into a [`Filter`] and turned into SQL over `devices d` and its parameter rows.
//!
//! `$regex` runs the `regex` crate (linear time, bounded size) in the server, not in the
//! database: its conditions are taken out of the SQL (which then selects a superset) and
//! checked on each candidate. So that the superset stays exact elsewhere, a `$regex` may stand
//! only at the top level of the query or in its top-level `$and`, not inside `$or`.

use regex::{Regex, RegexBuilder};
use sea_orm::{DbBackend, Value};
use serde_json::Value as Json;

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

impl Scalar {
    fn parse(value: &Json) -> Result<Self, String> {
        Ok(match value {
            Json::String(text) => Self::Text(text.clone()),
            Json::Number(number) => Self::Number(number.as_f64().ok_or("a number out of range")?),
            Json::Bool(flag) => Self::Bool(*flag),
            Json::Null => Self::Null,
            other => return Err(format!("{other} is not a value a query compares with")),
        })
    }
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

/// Regular expressions are compiled within these bounds: a pattern whose automaton would be
/// larger is refused rather than built.
const REGEX_SIZE_LIMIT: usize = 256 * 1024;
/// The most conditions one query holds.
const MAX_CONDITIONS: usize = 64;
const MAX_DEPTH: usize = 8;

pub fn parse(query: &Json) -> Result<Filter, String> {
    let mut budget = MAX_CONDITIONS;
    let filter = parse_document(query, 0, &mut budget)?;
    check_regex_placement(&filter, true)?;
    Ok(filter)
}

fn parse_document(document: &Json, depth: usize, budget: &mut usize) -> Result<Filter, String> {
    if depth > MAX_DEPTH {
        return Err(format!("a query nests at most {MAX_DEPTH} levels"));
    }
    let Json::Object(map) = document else { return Err("a query is a JSON object".into()) };
    let mut parts = Vec::new();
    for (key, value) in map {
        match key.as_str() {
            "$and" | "$or" => {
                let Json::Array(items) = value else { return Err(format!("{key} takes an array of queries")) };
                if items.is_empty() {
                    return Err(format!("{key} takes at least one query"));
                }
                let children =
                    items.iter().map(|item| parse_document(item, depth + 1, budget)).collect::<Result<Vec<_>, _>>()?;
                parts.push(if key == "$and" { Filter::And(children) } else { Filter::Or(children) });
            }
            other if other.starts_with('$') => return Err(format!("unknown operator {other}")),
            name => {
                let field = Field::parse(name)?;
                for test in parse_tests(value)? {
                    *budget =
                        budget.checked_sub(1).ok_or(format!("a query holds at most {MAX_CONDITIONS} conditions"))?;
                    parts.push(Filter::Test(field.clone(), test));
                }
            }
        }
    }
    Ok(if parts.len() == 1 { parts.remove(0) } else { Filter::And(parts) })
}

fn parse_tests(value: &Json) -> Result<Vec<Test>, String> {
    let Json::Object(operators) = value else { return Ok(vec![Test::Compare(Comparison::Eq, Scalar::parse(value)?)]) };
    if !operators.keys().any(|k| k.starts_with('$')) {
        return Err("comparing with a whole object is not supported; use operators".into());
    }
    let options = match operators.get("$options") {
        None => "",
        Some(Json::String(options)) => options.as_str(),
        Some(_) => return Err("$options is a string".into()),
    };
    let mut tests = Vec::new();
    for (operator, argument) in operators {
        let compare = |comparison| Ok::<_, String>(Test::Compare(comparison, Scalar::parse(argument)?));
        tests.push(match operator.as_str() {
            "$eq" => compare(Comparison::Eq)?,
            "$ne" => compare(Comparison::Ne)?,
            "$gt" => compare(Comparison::Gt)?,
            "$gte" => compare(Comparison::Gte)?,
            "$lt" => compare(Comparison::Lt)?,
            "$lte" => compare(Comparison::Lte)?,
            "$in" => {
                let Json::Array(items) = argument else { return Err("$in takes an array".into()) };
                if items.len() > 1000 {
                    return Err("$in takes at most 1000 values".into());
                }
                Test::In(items.iter().map(Scalar::parse).collect::<Result<_, _>>()?)
            }
            "$exists" => match argument {
                Json::Bool(flag) => Test::Exists(*flag),
                _ => return Err("$exists takes true or false".into()),
            },
            "$regex" => {
                let Json::String(pattern) = argument else { return Err("$regex takes a string".into()) };
                Test::Regex(compile(pattern, options)?)
            }
            "$options" => continue,
            other => return Err(format!("unknown operator {other}")),
        });
    }
    Ok(tests)
}

fn compile(pattern: &str, options: &str) -> Result<Regex, String> {
    if let Some(unknown) = options.chars().find(|c| !matches!(c, 'i' | 'm' | 's' | 'x')) {
        return Err(format!("unknown $options flag {unknown:?}"));
    }
    RegexBuilder::new(pattern)
        .case_insensitive(options.contains('i'))
        .multi_line(options.contains('m'))
        .dot_matches_new_line(options.contains('s'))
        .ignore_whitespace(options.contains('x'))
        .size_limit(REGEX_SIZE_LIMIT)
        .dfa_size_limit(REGEX_SIZE_LIMIT)
        .nest_limit(32)
        .build()
        .map_err(|e| format!("$regex {pattern:?}: {e}"))
}

fn check_regex_placement(filter: &Filter, top: bool) -> Result<(), String> {
    match filter {
        Filter::Test(_, Test::Regex(_)) if !top => Err("$regex is supported at the top level and in $and only".into()),
        Filter::Test(Field::Tags, Test::Regex(_)) => Err("$regex on _tags is not supported".into()),
        Filter::Test(..) => Ok(()),
        Filter::And(children) => children.iter().try_for_each(|c| check_regex_placement(c, top)),
        Filter::Or(children) => children.iter().try_for_each(|c| check_regex_placement(c, false)),
    }
}

/// The `$regex` conditions of a filter (all at its top level, see [`parse`]).
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

/// SQL conditions over `devices d`, with their values. `$regex` conditions are `1 = 1` here
/// (see the module's note).
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

const PARAMETER: &str = "SELECT 1 FROM parameters p WHERE p.device_id = d.id AND p.path = ?";
const TAG: &str = "SELECT 1 FROM device_tags t WHERE t.device_id = d.id";

fn placeholders(n: usize) -> String {
    vec!["?"; n].join(", ")
}

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

#[cfg(test)]
mod tests {

    use serde_json::json;

    use super::*;

    fn sql(query: Json) -> (String, usize) {
        let (sql, args) = to_sql(&parse(&query).unwrap(), DbBackend::Sqlite).unwrap();
        (sql, args.len())
    }

    #[test]
    fn the_operators_genieacs_users_write_become_sql() {
        assert_eq!(sql(json!({})), ("1 = 1".into(), 0));
        assert_eq!(sql(json!({"_id": "A-B-1"})), ("d.device_id = ?".into(), 1));
        assert_eq!(sql(json!({"_tags": "office"})).0, format!("EXISTS ({TAG} AND t.tag = ?)"));
        assert_eq!(
            sql(json!({"_deviceId._SerialNumber": {"$in": ["1", "2"]}})),
            ("d.serial_number IN (?, ?)".into(), 2)
        );
        let (text, args) = sql(json!({"_lastInform": {"$lt": "2026-01-01T00:00:00Z", "$gte": 0}}));
        assert_eq!((text.as_str(), args), ("(d.last_inform_at >= ? AND d.last_inform_at < ?)", 2));
        let (text, _) = sql(json!({"InternetGatewayDevice.DeviceInfo.SoftwareVersion._value": {"$ne": "1.2"}}));
        assert_eq!(text, format!("NOT EXISTS ({PARAMETER} AND p.value = ?)"));
        let (text, _) = sql(json!({"$or": [{"_tags": "a"}, {"Device.X": {"$exists": false}}]}));
        assert_eq!(text, format!("(EXISTS ({TAG} AND t.tag = ?) OR NOT EXISTS ({PARAMETER}))"));
        let (text, _) = sql(json!({"Device.X.Uptime": {"$gt": 100}}));
        assert!(text.contains("CAST(p.value AS REAL) END > ?"), "{text}");
    }

    #[test]
    fn bad_queries_say_what_is_wrong() {
        let error = |query: Json| parse(&query).unwrap_err();
        assert!(error(json!({"_id": {"$where": "1"}})).contains("unknown operator $where"));
        assert!(error(json!({"$nor": []})).contains("unknown operator $nor"));
        assert!(error(json!({"_secret": 1})).contains("unknown field"));
        assert!(error(json!([1])).contains("JSON object"));
        assert!(error(json!({"_id": {"$regex": "("}})).contains("$regex"));
        assert!(error(json!({"$or": [{"_id": {"$regex": "^a"}}]})).contains("top level"));
        assert!(error(json!({"_id": {"$in": "x"}})).contains("array"));
        // An automaton too large to build is refused, not built.
        assert!(error(json!({"_id": {"$regex": "(\\w{100}){100}"}})).contains("$regex"));
    }

    #[test]
    fn regexes_run_in_linear_time_outside_the_sql() {
        let filter = parse(&json!({"_id": {"$regex": "^(a+)+$", "$options": "i"}, "_tags": "x"})).unwrap();
        let found = regexes(&filter);
        assert_eq!(found.len(), 1);
        // The catastrophic pattern of backtracking engines answers at once here.
        let subject = format!("{}b", "A".repeat(50_000));
        assert!(!found[0].1.is_match(&subject));
        assert!(found[0].1.is_match("aaa"));
        assert_eq!(to_sql(&filter, DbBackend::Sqlite).unwrap().0, format!("(1 = 1 AND EXISTS ({TAG} AND t.tag = ?))"));
    }
}
