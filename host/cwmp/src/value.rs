//! `xsi:type` values, normalised.
//!
//! Real firmware writes `xsd:unsignedint`, `xsd:Int`, `xsd:unsignedLong`, `xsd:base64` or no
//! type at all; the ACS keeps the canonical spelling so stored trees and outgoing requests are
//! uniform, and keeps unknown types verbatim rather than guessing.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum ValueType {
    #[default]
    String,
    Int,
    UnsignedInt,
    Long,
    UnsignedLong,
    Boolean,
    DateTime,
    Base64,
    HexBinary,
    /// Anything else, kept as the peer wrote it (prefix included).
    Other(String),
}

impl ValueType {
    /// Parses an `xsi:type` attribute value, ignoring its prefix and the case of the local name.
    pub fn parse(raw: &str) -> Self {
        let raw = raw.trim();
        let local = raw.rsplit_once(':').map_or(raw, |(_, local)| local);
        match local.to_ascii_lowercase().as_str() {
            "string" => Self::String,
            "int" | "integer" => Self::Int,
            "unsignedint" => Self::UnsignedInt,
            "long" => Self::Long,
            "unsignedlong" => Self::UnsignedLong,
            "boolean" | "bool" => Self::Boolean,
            "datetime" => Self::DateTime,
            "base64" | "base64binary" => Self::Base64,
            "hexbinary" => Self::HexBinary,
            _ => Self::Other(raw.to_owned()),
        }
    }

    /// The canonical `xsd:` spelling, as sent on the wire and stored.
    pub fn as_str(&self) -> &str {
        match self {
            Self::String => "xsd:string",
            Self::Int => "xsd:int",
            Self::UnsignedInt => "xsd:unsignedInt",
            Self::Long => "xsd:long",
            Self::UnsignedLong => "xsd:unsignedLong",
            Self::Boolean => "xsd:boolean",
            Self::DateTime => "xsd:dateTime",
            Self::Base64 => "xsd:base64",
            Self::HexBinary => "xsd:hexBinary",
            Self::Other(raw) => raw,
        }
    }

    /// Whether `value` is acceptable for this type; CPEs answer 9007 when it is not.
    pub fn accepts(&self, value: &str) -> bool {
        match self {
            Self::Int => value.trim().parse::<i32>().is_ok(),
            Self::UnsignedInt => value.trim().parse::<u32>().is_ok(),
            Self::Long => value.trim().parse::<i64>().is_ok(),
            Self::UnsignedLong => value.trim().parse::<u64>().is_ok(),
            Self::Boolean => matches!(value.trim(), "0" | "1" | "true" | "false"),
            _ => true,
        }
    }
}

impl fmt::Display for ValueType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn odd_spellings_from_real_firmware_normalise() {
        assert_eq!(ValueType::parse("xsd:unsignedint"), ValueType::UnsignedInt);
        assert_eq!(ValueType::parse("xsd:Int"), ValueType::Int);
        assert_eq!(ValueType::parse("unsignedLong"), ValueType::UnsignedLong);
        assert_eq!(ValueType::parse("xsd:base64"), ValueType::Base64);
        assert_eq!(ValueType::parse("cwmp:EventStruct"), ValueType::Other("cwmp:EventStruct".into()));
        assert_eq!(ValueType::UnsignedInt.as_str(), "xsd:unsignedInt");
    }

    #[test]
    fn accepts_checks_ranges() {
        assert!(ValueType::UnsignedInt.accepts("4294967295"));
        assert!(!ValueType::UnsignedInt.accepts("-1"));
        assert!(ValueType::Boolean.accepts("true"));
        assert!(!ValueType::Boolean.accepts("yes"));
    }
}

/// Whether a parameter holds a secret (a password, passphrase or key). CPEs read these back as
/// empty strings (TR-069 A.3.2.1 and the data models), and an ACS must never store or log them
/// in clear. Matched on the end of the last path segment, so `X_HW_PasswordMode` or
/// `PasswordEnable`-style settings are not mistaken for secrets.
pub fn is_secret_parameter(path: &str) -> bool {
    let name = path.trim_end_matches('.').rsplit('.').next().unwrap_or(path).to_ascii_lowercase();
    ["password", "passphrase", "presharedkey", "wepkey", "secret"].iter().any(|suffix| name.ends_with(suffix))
}

#[cfg(test)]
mod secret_tests {
    use super::is_secret_parameter;

    #[test]
    fn secrets_are_recognised_by_their_last_segment() {
        for path in [
            "InternetGatewayDevice.ManagementServer.ConnectionRequestPassword",
            "InternetGatewayDevice.LANDevice.1.WLANConfiguration.1.KeyPassphrase",
            "InternetGatewayDevice.LANDevice.1.WLANConfiguration.1.PreSharedKey.1.PreSharedKey",
            "InternetGatewayDevice.LANDevice.1.WLANConfiguration.1.WEPKey.1.WEPKey",
            "Device.PPP.Interface.1.Password",
            "Device.WiFi.AccessPoint.1.Security.X_TP_Password",
        ] {
            assert!(is_secret_parameter(path), "{path}");
        }
        for path in [
            "InternetGatewayDevice.X_HW_Security.X_HW_PasswordMode",
            "InternetGatewayDevice.ManagementServer.Username",
            "InternetGatewayDevice.LANDevice.1.WLANConfiguration.1.PreSharedKey.1.",
            "Device.Users.User.1.PasswordEnable",
        ] {
            assert!(!is_secret_parameter(path), "{path}");
        }
    }
}
