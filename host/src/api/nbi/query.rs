//! GenieACS-style device queries: the MongoDB-flavoured JSON that GenieACS users write
//! (`{"_tags": "office", "InternetGatewayDevice.DeviceInfo.SoftwareVersion": {"$ne": "1.2"}}`),
//! parsed into a [`Filter`], which the store turns into SQL (`store::devices::filter`).
//!
//! `$regex` runs the `regex` crate (linear time, bounded size) in the server, not in the
//! database: its conditions are taken out of the SQL (which then selects a superset) and
//! checked on each candidate. So that the superset stays exact elsewhere, a `$regex` may stand
//! only at the top level of the query or in its top-level `$and`, not inside `$or`.

use regex::{Regex, RegexBuilder};
use serde_json::Value as Json;

use crate::store::devices::filter::{Comparison, Field, Filter, Scalar, Test};

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
    let Json::Object(operators) = value else { return Ok(vec![Test::Compare(Comparison::Eq, scalar(value)?)]) };
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
        let compare = |comparison| Ok::<_, String>(Test::Compare(comparison, scalar(argument)?));
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
                Test::In(items.iter().map(scalar).collect::<Result<_, _>>()?)
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

/// A value a query compares with.
fn scalar(value: &Json) -> Result<Scalar, String> {
    Ok(match value {
        Json::String(text) => Scalar::Text(text.clone()),
        Json::Number(number) => Scalar::Number(number.as_f64().ok_or("a number out of range")?),
        Json::Bool(flag) => Scalar::Bool(*flag),
        Json::Null => Scalar::Null,
        other => return Err(format!("{other} is not a value a query compares with")),
    })
}

#[cfg(test)]
mod tests {

    use serde_json::json;

    use super::*;
    use crate::store::devices::filter::{PARAMETER, TAG, regexes, to_sql};
    use sea_orm::DbBackend;

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
