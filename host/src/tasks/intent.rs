//! The tasks that go through the device's adapter (the canonical intents of the `adapter`
//! world) rather than naming parameters: the same body works on TR-098 and TR-181 devices and
//! on each vendor's own parameters. Roost's additions to the GenieACS task names.

use serde_json::Value;

use super::{InvalidTask, invalid, invalid_field, string_field};

/// A Wi-Fi frequency band.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Band {
    Band24,
    Band5,
    Band6,
}

impl Band {
    /// `2.4`, `5` or `6`, as the API writes bands.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "2.4" => Some(Self::Band24),
            "5" => Some(Self::Band5),
            "6" => Some(Self::Band6),
            _ => None,
        }
    }
}

/// Which of the device's networks a Wi-Fi change applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WifiTarget {
    /// Every primary network.
    All,
    /// The primary networks of one band.
    Band(Band),
    /// One network, by the key the adapter gives it (its object path).
    Network(String),
}

/// A Wi-Fi change; `None` fields stay as they are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WifiChange {
    pub target: WifiTarget,
    pub ssid: Option<String>,
    pub passphrase: Option<String>,
    pub enabled: Option<bool>,
}

/// Where the PPPoE credentials of a `configurePppoe` task come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PppoeCredentials {
    /// The subscriber the device is linked to, read when the task runs.
    Subscriber,
    /// Given in the task.
    Given { username: String, password: String, connection: Option<String> },
}

/// An SSID is 1 to 32 bytes (IEEE 802.11).
pub fn check_ssid(ssid: &str) -> Result<(), InvalidTask> {
    if ssid.is_empty() || ssid.len() > 32 {
        return Err(invalid_field("ssid", format!("ssid must be 1 to 32 bytes; it is {} bytes", ssid.len())));
    }
    if ssid.chars().any(char::is_control) {
        return Err(invalid_field("ssid", "ssid must not contain control characters"));
    }
    Ok(())
}

/// A WPA2 passphrase is 8 to 63 printable ASCII characters, or a 64-hex-digit pre-shared key
/// (IEEE 802.11i, annex H.4).
pub fn check_passphrase(passphrase: &str) -> Result<(), InvalidTask> {
    let printable = passphrase.bytes().all(|b| (0x20..=0x7e).contains(&b));
    let hex_key = passphrase.len() == 64 && passphrase.bytes().all(|b| b.is_ascii_hexdigit());
    if hex_key || (printable && (8..=63).contains(&passphrase.len())) {
        return Ok(());
    }
    Err(invalid_field(
        "passphrase",
        if !printable {
            "passphrase must be printable ASCII (or 64 hex digits)".to_owned()
        } else {
            format!("passphrase must be 8 to 63 characters (or 64 hex digits); it is {}", passphrase.len())
        },
    ))
}

/// `configureWifi`: `band` (`2.4`, `5`, `6` or `all`, the default) or `network` (a key the
/// adapter reported), and at least one of `ssid`, `passphrase`, `enabled`.
pub(super) fn wifi(body: &Value) -> Result<WifiChange, InvalidTask> {
    let band = string_field(body, "band")?;
    let network = string_field(body, "network")?;
    let target = match (band.as_deref(), network) {
        (Some(_), Some(_)) => return Err(invalid("give band or network, not both")),
        (None | Some("all"), None) => WifiTarget::All,
        (Some(band), None) => WifiTarget::Band(
            Band::parse(band)
                .ok_or_else(|| invalid_field("band", format!("band must be 2.4, 5, 6 or all, not {band:?}")))?,
        ),
        (None, Some(network)) => {
            super::check_path(&network, "network")?;
            WifiTarget::Network(network)
        }
    };
    let ssid = string_field(body, "ssid")?;
    if let Some(ssid) = &ssid {
        check_ssid(ssid)?;
    }
    let passphrase = string_field(body, "passphrase")?;
    if let Some(passphrase) = &passphrase {
        check_passphrase(passphrase)?;
    }
    let enabled = match body.get("enabled") {
        None | Some(Value::Null) => None,
        Some(Value::Bool(b)) => Some(*b),
        Some(_) => return Err(invalid_field("enabled", "enabled must be true or false")),
    };
    if ssid.is_none() && passphrase.is_none() && enabled.is_none() {
        return Err(invalid("a Wi-Fi change needs ssid, passphrase or enabled"));
    }
    Ok(WifiChange { target, ssid, passphrase, enabled })
}

/// `configurePppoe`: `username` and `password` (with an optional `connection`, the WAN
/// connection's object path), or neither: the linked subscriber's.
pub(super) fn pppoe(body: &Value) -> Result<PppoeCredentials, InvalidTask> {
    let username = string_field(body, "username")?;
    let password = string_field(body, "password")?;
    let connection = string_field(body, "connection")?;
    if let Some(connection) = &connection {
        super::check_path(connection, "connection")?;
    }
    match (username, password) {
        (None, None) if connection.is_none() => Ok(PppoeCredentials::Subscriber),
        (Some(username), Some(password)) => {
            check_pppoe(&username, &password)?;
            Ok(PppoeCredentials::Given { username, password, connection })
        }
        _ => Err(invalid("give both username and password, or neither to push the linked subscriber's")),
    }
}

/// PPP user names and passwords as devices store them: 1 to 256 and at most 256 bytes, no
/// control characters.
pub fn check_pppoe(username: &str, password: &str) -> Result<(), InvalidTask> {
    if username.is_empty() || username.len() > 256 || username.chars().any(char::is_control) {
        return Err(invalid_field("username", "username must be 1 to 256 bytes without control characters"));
    }
    if password.len() > 256 || password.chars().any(char::is_control) {
        return Err(invalid_field("password", "password must be at most 256 bytes without control characters"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn message(result: Result<impl std::fmt::Debug, InvalidTask>) -> String {
        result.err().map(|e| e.message).unwrap_or_default()
    }

    #[test]
    fn ssids_are_one_to_32_bytes() {
        assert_eq!(check_ssid("x"), Ok(()));
        assert_eq!(check_ssid(&"x".repeat(32)), Ok(()));
        // 11 two-byte characters: 22 bytes.
        assert_eq!(check_ssid(&"ñ".repeat(11)), Ok(()));
        assert!(message(check_ssid(&"x".repeat(33))).contains("33 bytes"));
        assert!(message(check_ssid(&"ñ".repeat(17))).contains("34 bytes"), "counted in bytes, not characters");
        assert!(message(check_ssid("")).contains("1 to 32"));
    }

    #[test]
    fn passphrases_are_8_to_63_printable_or_64_hex() {
        assert_eq!(check_passphrase("12345678"), Ok(()));
        assert_eq!(check_passphrase(&"a b~".repeat(15)), Ok(()));
        assert_eq!(check_passphrase(&"0123456789abcdef".repeat(4)), Ok(()));
        assert!(message(check_passphrase("1234567")).contains("it is 7"));
        assert!(message(check_passphrase(&"x".repeat(64))).contains("it is 64"), "64 characters must be hex");
        assert!(message(check_passphrase("pässwörd1")).contains("printable ASCII"));
        assert!(message(check_passphrase("tab\there1")).contains("printable ASCII"));
    }

    #[test]
    fn wifi_bodies_name_their_target() {
        let change = wifi(&json!({"band": "5", "ssid": "Home"})).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(change.target, WifiTarget::Band(Band::Band5));
        assert_eq!(wifi(&json!({"ssid": "Home"})).map(|c| c.target), Ok(WifiTarget::All));
        assert_eq!(wifi(&json!({"band": "all", "enabled": false})).map(|c| c.enabled), Ok(Some(false)));
        let network = wifi(&json!({"network": "Device.WiFi.SSID.3.", "ssid": "Guest"})).map(|c| c.target);
        assert_eq!(network, Ok(WifiTarget::Network("Device.WiFi.SSID.3.".into())));
        assert!(message(wifi(&json!({"band": "60", "ssid": "x"}))).contains("band must be"));
        assert!(message(wifi(&json!({"band": "5"}))).contains("needs ssid"));
        assert!(message(wifi(&json!({"band": "5", "network": "A.", "ssid": "x"}))).contains("not both"));
        assert!(message(wifi(&json!({"passphrase": "short"}))).contains("passphrase"));
    }

    #[test]
    fn a_refused_member_is_named_for_the_form_that_sent_it() {
        let field = |body: serde_json::Value| wifi(&body).err().and_then(|e| e.field);
        assert_eq!(field(json!({"passphrase": "short"})).as_deref(), Some("passphrase"));
        assert_eq!(field(json!({"ssid": ""})).as_deref(), Some("ssid"));
        assert_eq!(field(json!({"ssid": 5})).as_deref(), Some("ssid"));
        assert_eq!(field(json!({"band": "60", "ssid": "x"})).as_deref(), Some("band"));
        assert_eq!(field(json!({"band": "5"})), None, "a refusal of the whole body names no member");
        let ping = |body: serde_json::Value| diagnostic(&body).err().and_then(|e| e.field);
        assert_eq!(ping(json!({"diagnostic": "ping", "host": "a;b"})).as_deref(), Some("host"));
        assert_eq!(ping(json!({"diagnostic": "ping", "host": "a", "count": 0})).as_deref(), Some("count"));
    }

    #[test]
    fn pppoe_bodies_give_both_credentials_or_neither() {
        assert_eq!(pppoe(&json!({})), Ok(PppoeCredentials::Subscriber));
        assert!(matches!(
            pppoe(&json!({"username": "a@isp", "password": "pw"})),
            Ok(PppoeCredentials::Given { connection: None, .. })
        ));
        assert!(message(pppoe(&json!({"username": "a@isp"}))).contains("both"));
        assert!(message(pppoe(&json!({"username": "", "password": "x"}))).contains("username"));
    }
}

/// The kinds of diagnostic, as the API and task bodies name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum DiagnosticKind {
    Ping,
    Traceroute,
    Download,
    Upload,
    UdpEcho,
}

impl DiagnosticKind {
    pub const ALL: [Self; 5] = [Self::Ping, Self::Traceroute, Self::Download, Self::Upload, Self::UdpEcho];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ping => "ping",
            Self::Traceroute => "traceroute",
            Self::Download => "download",
            Self::Upload => "upload",
            Self::UdpEcho => "udp-echo",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == text)
    }
}

/// A diagnostic to start, checked: hosts are names or addresses (never anything a shell or a
/// URL parser could read otherwise), URLs http(s), figures within what devices accept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DiagnosticRequest {
    Ping { host: String, count: u32, timeout_ms: u32, size: Option<u32> },
    Traceroute { host: String, max_hops: Option<u32>, timeout_ms: Option<u32> },
    Download { url: String },
    Upload { url: String, length: u64 },
    UdpEcho { host: String, port: u16, count: Option<u32> },
}

impl DiagnosticRequest {
    /// The `startDiagnostic` body of the request, its defaults filled in and nothing unset.
    pub fn body(&self) -> Value {
        let mut body = match self {
            Self::Ping { host, count, timeout_ms, size } => {
                serde_json::json!({"host": host, "count": count, "timeoutMs": timeout_ms, "size": size})
            }
            Self::Traceroute { host, max_hops, timeout_ms } => {
                serde_json::json!({"host": host, "maxHops": max_hops, "timeoutMs": timeout_ms})
            }
            Self::Download { url } => serde_json::json!({"url": url}),
            Self::Upload { url, length } => serde_json::json!({"url": url, "length": length}),
            Self::UdpEcho { host, port, count } => serde_json::json!({"host": host, "port": port, "count": count}),
        };
        if let Some(object) = body.as_object_mut() {
            object.retain(|_, v| !v.is_null());
            object.insert("name".into(), "startDiagnostic".into());
            object.insert("diagnostic".into(), self.kind().as_str().into());
        }
        body
    }

    pub fn kind(&self) -> DiagnosticKind {
        match self {
            Self::Ping { .. } => DiagnosticKind::Ping,
            Self::Traceroute { .. } => DiagnosticKind::Traceroute,
            Self::Download { .. } => DiagnosticKind::Download,
            Self::Upload { .. } => DiagnosticKind::Upload,
            Self::UdpEcho { .. } => DiagnosticKind::UdpEcho,
        }
    }
}

/// Pings default to 10 repetitions of 5 seconds at most each.
pub const PING_COUNT: u32 = 10;
pub const PING_TIMEOUT_MS: u32 = 5_000;

/// A host name (RFC 1123 labels) or an IPv4/IPv6 address, and nothing else: GenieACS once
/// passed a ping host to a shell.
pub fn check_host(host: &str) -> Result<(), InvalidTask> {
    if host.parse::<std::net::IpAddr>().is_ok() {
        return Ok(());
    }
    let labels: Vec<&str> = host.strip_suffix('.').unwrap_or(host).split('.').collect();
    let valid = !host.is_empty()
        && host.len() <= 253
        && labels.iter().all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        });
    if valid {
        Ok(())
    } else {
        Err(invalid_field("host", format!("host: {host:?} is not a host name or an IP address")))
    }
}

/// `startDiagnostic`: `diagnostic` (`ping`, `traceroute`, `download`, `upload`, `udp-echo`) and
/// its inputs: `host`, `count`, `timeoutMs`, `size`, `maxHops`, `url`, `length`, `port`.
pub(super) fn diagnostic(body: &Value) -> Result<DiagnosticRequest, InvalidTask> {
    let kind = diagnostic_kind(body)?;
    let number = |field: &str, range: std::ops::RangeInclusive<u64>| -> Result<Option<u64>, InvalidTask> {
        match body.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v.as_u64().filter(|n| range.contains(n)).map(Some).ok_or_else(|| {
                invalid_field(
                    field,
                    format!("{field} must be a whole number from {} to {}", range.start(), range.end()),
                )
            }),
        }
    };
    let small = |field: &str, range: std::ops::RangeInclusive<u64>| -> Result<Option<u32>, InvalidTask> {
        Ok(number(field, range)?.and_then(|n| u32::try_from(n).ok()))
    };
    let host = || -> Result<String, InvalidTask> {
        let host = string_field(body, "host")?.ok_or_else(|| invalid_field("host", "host is required"))?;
        check_host(&host)?;
        Ok(host)
    };
    let url = || -> Result<String, InvalidTask> {
        let url = string_field(body, "url")?.ok_or_else(|| invalid_field("url", "url is required"))?;
        let lower = url.to_ascii_lowercase();
        let scheme = lower.starts_with("http://") || lower.starts_with("https://");
        if !scheme || url.len() > 1024 || url.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(invalid_field(
                "url",
                format!("url must be an http or https URL of at most 1024 characters: {url:?}"),
            ));
        }
        Ok(url)
    };
    Ok(match kind {
        DiagnosticKind::Ping => DiagnosticRequest::Ping {
            host: host()?,
            count: small("count", 1..=1000)?.unwrap_or(PING_COUNT),
            timeout_ms: small("timeoutMs", 1..=600_000)?.unwrap_or(PING_TIMEOUT_MS),
            size: small("size", 1..=65_535)?,
        },
        DiagnosticKind::Traceroute => DiagnosticRequest::Traceroute {
            host: host()?,
            max_hops: small("maxHops", 1..=64)?,
            timeout_ms: small("timeoutMs", 1..=600_000)?,
        },
        DiagnosticKind::Download => DiagnosticRequest::Download { url: url()? },
        DiagnosticKind::Upload => DiagnosticRequest::Upload {
            url: url()?,
            length: number("length", 1..=MAX_TRANSFER_BYTES)?.unwrap_or(DEFAULT_TRANSFER_BYTES),
        },
        DiagnosticKind::UdpEcho => DiagnosticRequest::UdpEcho {
            host: host()?,
            port: small("port", 1..=65_535)?
                .and_then(|p| u16::try_from(p).ok())
                .ok_or_else(|| invalid_field("port", "port is required"))?,
            count: small("count", 1..=1000)?,
        },
    })
}

/// `collectDiagnostic`: `diagnostic`, the kind whose results to read.
pub(super) fn diagnostic_kind(body: &Value) -> Result<DiagnosticKind, InvalidTask> {
    let name = string_field(body, "diagnostic")?.ok_or_else(|| invalid("diagnostic is required"))?;
    DiagnosticKind::parse(&name).ok_or_else(|| {
        invalid(format!("diagnostic must be ping, traceroute, download, upload or udp-echo, not {name:?}"))
    })
}

/// What a speed test moves by default, and at most.
pub const DEFAULT_TRANSFER_BYTES: u64 = 10 * 1024 * 1024;
pub const MAX_TRANSFER_BYTES: u64 = 4 * 1024 * 1024 * 1024;

#[cfg(test)]
mod diagnostic_tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn hosts_are_names_or_addresses_and_nothing_a_shell_would_read() {
        for good in ["example.com", "8.8.8.8", "2001:db8::1", "a-b.c1.example.", "localhost"] {
            assert_eq!(check_host(good), Ok(()), "{good}");
        }
        for bad in ["", "8.8.8.8; rm -rf /", "$(reboot)", "a b", "-x.example", "host`id`", "x..y", "http://h"] {
            let refused = check_host(bad).err().map(|e| e.message).unwrap_or_default();
            assert!(refused.starts_with("host:"), "{bad:?}: {refused}");
        }
    }

    #[test]
    fn a_ping_gets_the_defaults_and_bounds() {
        let ping = diagnostic(&json!({"diagnostic": "ping", "host": "192.0.2.1"}));
        assert_eq!(
            ping.clone(),
            Ok(DiagnosticRequest::Ping { host: "192.0.2.1".into(), count: 10, timeout_ms: 5000, size: None })
        );
        let message = |body| diagnostic(&body).err().map(|e| e.message).unwrap_or_default();
        assert!(message(json!({"diagnostic": "ping", "host": "h", "count": 0})).contains("count"));
        assert!(message(json!({"diagnostic": "ping"})).contains("host is required"));
        assert!(message(json!({"diagnostic": "nslookup", "host": "h"})).contains("diagnostic must be"));
        assert!(message(json!({"diagnostic": "download", "url": "ftp://h/f"})).contains("http or https"));
        assert!(message(json!({"diagnostic": "udp-echo", "host": "h"})).contains("port"));
        let ping = ping.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            ping.body(),
            json!({"name": "startDiagnostic", "diagnostic": "ping", "host": "192.0.2.1", "count": 10, "timeoutMs": 5000})
        );
        assert_eq!(diagnostic(&ping.body()), Ok(ping), "the body parses back to the request");
        let upload = diagnostic(&json!({"diagnostic": "upload", "url": "http://h/u"}));
        assert_eq!(upload, Ok(DiagnosticRequest::Upload { url: "http://h/u".into(), length: DEFAULT_TRANSFER_BYTES }));
    }
}
