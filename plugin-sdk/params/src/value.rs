//! Typed CWMP values, as plugins declare them and the host sends them.

use crate::tree;

/// A parameter value with its CWMP type: what plugins read and declare. The host converts a
/// declared value to the type the device reported for that parameter before it sends it
/// ([`coerce`]), and fails the declaration with a clear error when it cannot (`"abc"` for an
/// `xsd:unsignedInt`).
///
/// It is the WIT type `roost:plugin/types.value`: the SDK's bindings use this very type, so the
/// host, the SDK and its test device share one definition.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// `xsd:string`.
    Text(String),
    /// `xsd:int` and `xsd:long`.
    Signed(i64),
    /// `xsd:unsignedInt` and `xsd:unsignedLong`.
    Unsigned(u64),
    /// `xsd:boolean`.
    Boolean(bool),
    /// `xsd:dateTime`, as the ISO 8601 text the device sent (`0001-01-01T00:00:00Z` = unknown).
    DateTime(String),
    /// `xsd:base64Binary`, as its base64 text.
    Base64(String),
    /// `xsd:hexBinary`, as its hex text.
    HexBinary(String),
}

impl Value {
    /// The value as CWMP text (`true` for booleans, decimal for numbers).
    pub fn to_text(&self) -> String {
        match self {
            Value::Text(s) | Value::DateTime(s) | Value::Base64(s) | Value::HexBinary(s) => s.clone(),
            Value::Signed(n) => n.to_string(),
            Value::Unsigned(n) => n.to_string(),
            Value::Boolean(b) => b.to_string(),
        }
    }

    /// The text of a text-like value.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Text(s) | Value::DateTime(s) | Value::Base64(s) | Value::HexBinary(s) => Some(s),
            _ => None,
        }
    }

    /// The value as a boolean: booleans, and `1`/`0`/`true`/`false` text, as firmware sends them.
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Boolean(b) => Some(*b),
            Value::Text(s) => tree::parse_bool(s),
            Value::Signed(n) => Some(*n != 0),
            Value::Unsigned(n) => Some(*n != 0),
            _ => None,
        }
    }

    /// The value as an unsigned number, parsing text where a device stores numbers as strings.
    pub fn as_u64(&self) -> Option<u64> {
        match self {
            Value::Unsigned(n) => Some(*n),
            Value::Signed(n) => u64::try_from(*n).ok(),
            Value::Text(s) => s.trim().parse().ok(),
            _ => None,
        }
    }

    /// The value as a signed number, parsing text where a device stores numbers as strings.
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Value::Signed(n) => Some(*n),
            Value::Unsigned(n) => i64::try_from(*n).ok(),
            Value::Text(s) => s.trim().parse().ok(),
            _ => None,
        }
    }

    /// The value as a decimal number (`-18.5` dBm, or a vendor's `"-185"` in tenths: divide yourself).
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Signed(n) => Some(*n as f64),
            Value::Unsigned(n) => Some(*n as f64),
            Value::Text(s) => s.trim().parse().ok(),
            _ => None,
        }
    }

    /// The typed value of CWMP `text` with xsd type `value_type` (prefix and case ignored);
    /// unknown types and unparsable numbers stay text.
    pub fn from_cwmp(text: &str, value_type: &str) -> Value {
        let kind = value_type.rsplit(':').next().unwrap_or("").to_ascii_lowercase();
        match kind.as_str() {
            "boolean" => tree::parse_bool(text).map_or_else(|| Value::Text(text.to_owned()), Value::Boolean),
            "int" | "long" => text.trim().parse().map_or_else(|_| Value::Text(text.to_owned()), Value::Signed),
            "unsignedint" | "unsignedlong" => {
                text.trim().parse().map_or_else(|_| Value::Text(text.to_owned()), Value::Unsigned)
            }
            "datetime" => Value::DateTime(text.to_owned()),
            "base64" | "base64binary" => Value::Base64(text.to_owned()),
            "hexbinary" => Value::HexBinary(text.to_owned()),
            _ => Value::Text(text.to_owned()),
        }
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Value::Text(s.to_owned())
    }
}
impl From<String> for Value {
    fn from(s: String) -> Self {
        Value::Text(s)
    }
}
impl From<bool> for Value {
    fn from(b: bool) -> Self {
        Value::Boolean(b)
    }
}
impl From<u32> for Value {
    fn from(n: u32) -> Self {
        Value::Unsigned(n.into())
    }
}
impl From<u64> for Value {
    fn from(n: u64) -> Self {
        Value::Unsigned(n)
    }
}
impl From<i32> for Value {
    fn from(n: i32) -> Self {
        Value::Signed(n.into())
    }
}
impl From<i64> for Value {
    fn from(n: i64) -> Self {
        Value::Signed(n)
    }
}

/// The CWMP text and xsd type to send for `value` to a parameter the device reported with
/// `value_type` and current text `current` (an empty type: the value's own). Booleans follow the
/// device's own spelling (`1`/`0` or `true`/`false`), so an unchanged value compares equal.
pub fn coerce(value: &Value, value_type: &str, current: Option<&str>) -> std::result::Result<(String, String), String> {
    let kind = value_type.rsplit(':').next().unwrap_or("").to_ascii_lowercase();
    let own_type = || match value {
        Value::Text(_) => "xsd:string",
        Value::Signed(_) => "xsd:int",
        Value::Unsigned(_) => "xsd:unsignedInt",
        Value::Boolean(_) => "xsd:boolean",
        Value::DateTime(_) => "xsd:dateTime",
        Value::Base64(_) => "xsd:base64",
        Value::HexBinary(_) => "xsd:hexBinary",
    };
    let text = match kind.as_str() {
        "" => return Ok((value.to_text(), own_type().to_owned())),
        "boolean" => {
            let b = value.as_bool().ok_or_else(|| format!("{} is not a boolean", value.to_text()))?;
            let numeric = current.is_some_and(|c| matches!(c.trim(), "0" | "1"));
            match (b, numeric) {
                (true, true) => "1".to_owned(),
                (false, true) => "0".to_owned(),
                (b, false) => b.to_string(),
            }
        }
        "int" | "long" => {
            let n = value.as_i64().ok_or_else(|| format!("{} is not an integer", value.to_text()))?;
            if kind == "int" && i32::try_from(n).is_err() {
                return Err(format!("{n} does not fit an xsd:int"));
            }
            n.to_string()
        }
        "unsignedint" | "unsignedlong" => {
            let n = value.as_u64().ok_or_else(|| format!("{} is not an unsigned integer", value.to_text()))?;
            if kind == "unsignedint" && u32::try_from(n).is_err() {
                return Err(format!("{n} does not fit an xsd:unsignedInt"));
            }
            n.to_string()
        }
        _ => value.to_text(),
    };
    Ok((text, value_type.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cwmp_text_becomes_the_typed_value_whatever_the_prefix_and_case() {
        assert_eq!(Value::from_cwmp("1", "xsd:boolean"), Value::Boolean(true));
        assert_eq!(Value::from_cwmp("TRUE", "boolean"), Value::Boolean(true));
        assert_eq!(Value::from_cwmp(" 42 ", "xsd:unsignedint"), Value::Unsigned(42));
        assert_eq!(Value::from_cwmp("-7", "cwmp:Int"), Value::Signed(-7));
        assert_eq!(Value::from_cwmp("abc", "xsd:unsignedInt"), Value::Text("abc".into()));
        assert_eq!(Value::from_cwmp("x", "vendor:thing"), Value::Text("x".into()));
        assert_eq!(Value::from_cwmp("AQID", "xsd:base64Binary"), Value::Base64("AQID".into()));
    }

    #[test]
    fn a_declared_value_is_sent_in_the_devices_type_and_spelling() {
        let ok = |v: Value, t: &str, current: Option<&str>| coerce(&v, t, current).unwrap_or_default();
        // Booleans follow the device's own spelling, so an unchanged value compares equal.
        assert_eq!(ok(Value::Boolean(true), "xsd:boolean", Some("0")), ("1".into(), "xsd:boolean".into()));
        assert_eq!(ok(Value::Boolean(true), "xsd:boolean", Some("false")), ("true".into(), "xsd:boolean".into()));
        assert_eq!(ok(Value::Text("7".into()), "xsd:unsignedInt", None), ("7".into(), "xsd:unsignedInt".into()));
        // An unknown type: the value's own.
        assert_eq!(ok(Value::Unsigned(3), "", None), ("3".into(), "xsd:unsignedInt".into()));
    }

    #[test]
    fn a_value_that_does_not_fit_the_devices_type_is_refused_with_why() {
        assert_eq!(
            coerce(&Value::Text("abc".into()), "xsd:unsignedInt", None),
            Err("abc is not an unsigned integer".into())
        );
        assert_eq!(
            coerce(&Value::Unsigned(1 << 32), "xsd:unsignedInt", None),
            Err("4294967296 does not fit an xsd:unsignedInt".into())
        );
        assert_eq!(coerce(&Value::Signed(-1), "xsd:unsignedLong", None), Err("-1 is not an unsigned integer".into()));
        assert_eq!(coerce(&Value::Text("maybe".into()), "xsd:boolean", None), Err("maybe is not a boolean".into()));
    }
}
