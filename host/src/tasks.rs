//! Tasks: what an operator or integrator asks a device to do, in the GenieACS NBI body format
//! (so existing integrations carry over), checked here before anything is queued.

use roost_cwmp::{SetParameterAttribute, ValueType};
use serde_json::Value;

pub mod intent;

pub use intent::{Band, DiagnosticKind, DiagnosticRequest, PppoeCredentials, WifiChange, WifiTarget};

/// One value a setParameterValues task writes. The type is the caller's, when it gave one;
/// without, the stored type is sent (see `cwmp::driver`), never a default that would retype
/// the parameter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParameterWrite {
    pub path: String,
    pub value: String,
    pub value_type: Option<ValueType>,
}

/// A validated task body.
#[derive(Debug, Clone, PartialEq)]
pub enum TaskSpec {
    /// `partial_path`: send object paths (ending in `.`) as they are; otherwise each object is
    /// read as discovery reads trees, GetParameterNames then its leaves by name (some agents
    /// crash on a partial-path GetParameterValues, or answer it with the object alone).
    GetParameterValues {
        names: Vec<String>,
        partial_path: bool,
    },
    SetParameterValues {
        values: Vec<ParameterWrite>,
    },
    RefreshObject {
        object: String,
    },
    AddObject {
        object: String,
    },
    DeleteObject {
        object: String,
    },
    Reboot,
    FactoryReset,
    Download(DownloadSpec),
    Upload(UploadSpec),
    ScheduleInform {
        delay_seconds: u32,
    },
    GetParameterAttributes {
        names: Vec<String>,
    },
    SetParameterAttributes {
        attributes: Vec<SetParameterAttribute>,
    },
    /// Through the device's adapter ([`intent`]).
    ConfigureWifi(WifiChange),
    ConfigurePppoe(PppoeCredentials),
    /// Sets a diagnostic's inputs and requests it.
    StartDiagnostic(DiagnosticRequest),
    /// Reads the results of the last diagnostic of a kind.
    CollectDiagnostic(DiagnosticKind),
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct DownloadSpec {
    pub file_type: String,
    pub url: String,
    pub file_size: u64,
    pub target_file_name: String,
    pub username: String,
    pub password: String,
    pub delay_seconds: u32,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct UploadSpec {
    pub file_type: String,
    pub url: String,
    pub username: String,
    pub password: String,
    pub delay_seconds: u32,
}

/// Why a task body was refused; the message names the field, and `field` holds it where the
/// refusal is about one member (for the API's `Problem::field`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct InvalidTask {
    pub message: String,
    pub field: Option<String>,
}

fn invalid(message: impl Into<String>) -> InvalidTask {
    InvalidTask { message: message.into(), field: None }
}

/// A refusal of one member's value.
fn invalid_field(field: &str, message: impl Into<String>) -> InvalidTask {
    InvalidTask { message: message.into(), field: Some(field.to_owned()) }
}

pub const TASK_NAMES: &[&str] = &[
    "getParameterValues",
    "setParameterValues",
    "refreshObject",
    "addObject",
    "deleteObject",
    "reboot",
    "factoryReset",
    "download",
    "upload",
    "scheduleInform",
    "getParameterAttributes",
    "setParameterAttributes",
    "configureWifi",
    "configurePppoe",
    "startDiagnostic",
    "collectDiagnostic",
];

/// The longest path CWMP allows (A.3.2.1: 256 characters).
const MAX_PATH: usize = 256;

/// The most parameters one task may name. A whole subtree is read with `refreshObject`; a list
/// longer than this is a mistake or an attack, and costs every session of the device.
pub const MAX_NAMES_PER_TASK: usize = 1024;

impl TaskSpec {
    /// Parses and checks a task body. Returns the task name too (the body's `name`).
    pub fn parse(body: &Value) -> Result<(String, Self), InvalidTask> {
        let object = body.as_object().ok_or_else(|| invalid("a task body must be a JSON object"))?;
        let name =
            object.get("name").and_then(Value::as_str).ok_or_else(|| invalid("a task needs a string \"name\""))?;
        let spec = match name {
            "getParameterValues" => Self::GetParameterValues {
                names: path_list(body, "parameterNames")?,
                partial_path: match body.get("partialPath") {
                    None | Some(Value::Null) => false,
                    Some(Value::Bool(b)) => *b,
                    Some(_) => return Err(invalid("partialPath must be true or false")),
                },
            },
            "setParameterValues" => Self::SetParameterValues { values: parameter_values(body)? },
            "refreshObject" => Self::RefreshObject { object: path_field(body, "objectName", true)? },
            "addObject" => Self::AddObject { object: object_path(body)? },
            "deleteObject" => Self::DeleteObject { object: object_path(body)? },
            "reboot" => Self::Reboot,
            "factoryReset" => Self::FactoryReset,
            "download" => Self::Download(download(body)?),
            "upload" => Self::Upload(upload(body)?),
            "scheduleInform" => Self::ScheduleInform { delay_seconds: u32_field(body, "delaySeconds")?.unwrap_or(0) },
            "getParameterAttributes" => Self::GetParameterAttributes { names: path_list(body, "parameterNames")? },
            "setParameterAttributes" => Self::SetParameterAttributes { attributes: attributes(body)? },
            "configureWifi" => Self::ConfigureWifi(intent::wifi(body)?),
            "configurePppoe" => Self::ConfigurePppoe(intent::pppoe(body)?),
            "startDiagnostic" => Self::StartDiagnostic(intent::diagnostic(body)?),
            "collectDiagnostic" => Self::CollectDiagnostic(intent::diagnostic_kind(body)?),
            other => {
                return Err(invalid(format!("unknown task name {other:?}; expected one of {}", TASK_NAMES.join(", "))));
            }
        };
        Ok((name.to_owned(), spec))
    }

    /// Whether the task goes through the device's adapter, run by the provisioning engine
    /// rather than as one RPC.
    pub fn is_intent(&self) -> bool {
        matches!(
            self,
            Self::ConfigureWifi(_) | Self::ConfigurePppoe(_) | Self::StartDiagnostic(_) | Self::CollectDiagnostic(_)
        )
    }

    /// Tasks that change the device, for the role check (everything but reads).
    pub fn is_read_only(&self) -> bool {
        matches!(
            self,
            Self::GetParameterValues { .. }
                | Self::RefreshObject { .. }
                | Self::GetParameterAttributes { .. }
                | Self::CollectDiagnostic(_)
        )
    }
}

/// What stands in for a secret in stored and displayed task bodies.
pub const REDACTED: &str = "********";

/// The body with every secret replaced by [`REDACTED`]: passwords (Download, Upload,
/// configurePppoe), Wi-Fi passphrases and values of secret parameters. `None` when it carries
/// no secret.
pub fn redact(body: &Value) -> Option<Value> {
    let mut redacted = body.clone();
    let mut changed = false;
    if let Some(object) = redacted.as_object_mut() {
        for field in ["password", "passphrase"] {
            if let Some(secret) = object.get_mut(field).filter(|p| p.as_str().is_some_and(|p| !p.is_empty())) {
                *secret = Value::String(REDACTED.into());
                changed = true;
            }
        }
        // A download of a stored file: its URL (`…/files/<token>/<name>`) carries the token
        // that fetches the file; the task shows the file it names.
        if object.contains_key("file")
            && let Some(Value::String(url)) = object.get_mut("url")
            && let Some(at) = url.find(crate::api::files::DEVICE_PATH)
        {
            let start = at + crate::api::files::DEVICE_PATH.len();
            let end = url[start..].find('/').map_or(url.len(), |i| start + i);
            url.replace_range(start..end, REDACTED);
            changed = true;
        }
        if let Some(Value::Array(values)) = object.get_mut("parameterValues") {
            for triple in values.iter_mut().filter_map(Value::as_array_mut) {
                let secret = triple.first().and_then(Value::as_str).is_some_and(roost_cwmp::is_secret_parameter);
                if let (true, Some(value)) = (secret, triple.get_mut(1)) {
                    *value = Value::String(REDACTED.into());
                    changed = true;
                }
            }
        }
    }
    changed.then_some(redacted)
}

fn check_count(count: usize, field: &str) -> Result<(), InvalidTask> {
    if count > MAX_NAMES_PER_TASK {
        return Err(invalid(format!("{field} names {count} parameters; a task may name at most {MAX_NAMES_PER_TASK}")));
    }
    Ok(())
}

fn check_path(path: &str, field: &str) -> Result<(), InvalidTask> {
    if path.is_empty() {
        return Err(invalid(format!("{field}: a parameter path must not be empty")));
    }
    if path.len() > MAX_PATH {
        return Err(invalid(format!("{field}: {path:?} is longer than {MAX_PATH} characters")));
    }
    if path.starts_with('.') || path.contains("..") || path.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(invalid(format!("{field}: {path:?} is not a valid parameter path")));
    }
    Ok(())
}

fn path_field(body: &Value, field: &str, allow_leaf: bool) -> Result<String, InvalidTask> {
    let path = body.get(field).and_then(Value::as_str).ok_or_else(|| invalid(format!("{field} must be a string")))?;
    check_path(path, field)?;
    if !allow_leaf && !path.ends_with('.') {
        return Ok(format!("{path}."));
    }
    Ok(path.to_owned())
}

/// Object paths are accepted with or without the trailing dot, and sent with it.
fn object_path(body: &Value) -> Result<String, InvalidTask> {
    path_field(body, "objectName", false)
}

fn path_list(body: &Value, field: &str) -> Result<Vec<String>, InvalidTask> {
    let items = body
        .get(field)
        .and_then(Value::as_array)
        .ok_or_else(|| invalid(format!("{field} must be an array of parameter paths")))?;
    if items.is_empty() {
        return Err(invalid(format!("{field} must not be empty")));
    }
    check_count(items.len(), field)?;
    let mut seen = std::collections::HashSet::with_capacity(items.len());
    let mut out: Vec<String> = Vec::with_capacity(items.len());
    for item in items {
        let path = item.as_str().ok_or_else(|| invalid(format!("{field} must contain only strings")))?;
        check_path(path, field)?;
        if seen.insert(path) {
            out.push(path.to_owned());
        }
    }
    Ok(out)
}

fn parameter_values(body: &Value) -> Result<Vec<ParameterWrite>, InvalidTask> {
    let items = body
        .get("parameterValues")
        .and_then(Value::as_array)
        .ok_or_else(|| invalid("parameterValues must be an array of [path, value, type?] triples"))?;
    if items.is_empty() {
        return Err(invalid("parameterValues must not be empty"));
    }
    check_count(items.len(), "parameterValues")?;
    let mut seen = std::collections::HashSet::with_capacity(items.len());
    let mut out: Vec<ParameterWrite> = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let triple = item
            .as_array()
            .filter(|t| (2..=3).contains(&t.len()))
            .ok_or_else(|| invalid(format!("parameterValues[{i}] must be [path, value] or [path, value, type]")))?;
        let path =
            triple[0].as_str().ok_or_else(|| invalid(format!("parameterValues[{i}][0] must be a path string")))?;
        check_path(path, "parameterValues")?;
        if path.ends_with('.') {
            return Err(invalid(format!("parameterValues[{i}]: {path:?} is an object, not a parameter")));
        }
        // Booleans and numbers are accepted as JSON values, as GenieACS does.
        let value = match &triple[1] {
            Value::String(s) => s.clone(),
            Value::Bool(b) => b.to_string(),
            Value::Number(n) => n.to_string(),
            _ => return Err(invalid(format!("parameterValues[{i}][1] must be a string, number or boolean"))),
        };
        let value_type = match triple.get(2) {
            None | Some(Value::Null) => None,
            Some(Value::String(t)) => {
                let parsed = ValueType::parse(t);
                if matches!(parsed, ValueType::Other(_)) {
                    return Err(invalid(format!("parameterValues[{i}][2]: unknown type {t:?}")));
                }
                if !parsed.accepts(&value) {
                    return Err(invalid(format!("parameterValues[{i}]: {value:?} is not a valid {}", parsed.as_str())));
                }
                Some(parsed)
            }
            Some(_) => return Err(invalid(format!("parameterValues[{i}][2] must be an xsd type string"))),
        };
        // CWMP forbids a name twice in one SetParameterValues (the CPE answers 9003).
        if !seen.insert(path) {
            return Err(invalid(format!("parameterValues: {path:?} appears twice")));
        }
        out.push(ParameterWrite { path: path.to_owned(), value, value_type });
    }
    Ok(out)
}

fn u32_field(body: &Value, field: &str) -> Result<Option<u32>, InvalidTask> {
    match body.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .map(Some)
            .ok_or_else(|| invalid(format!("{field} must be a whole number from 0 to 4294967295"))),
    }
}

fn string_field(body: &Value, field: &str) -> Result<Option<String>, InvalidTask> {
    match body.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(invalid_field(field, format!("{field} must be a string"))),
    }
}

fn transfer_url(body: &Value) -> Result<String, InvalidTask> {
    let url = string_field(body, "url")?.ok_or_else(|| {
        invalid("url is required (a stored \"file\" reference becomes available with the firmware store)")
    })?;
    let scheme_ok = ["http://", "https://", "ftp://"].iter().any(|s| url.to_ascii_lowercase().starts_with(s));
    if !scheme_ok || url.len() > 1024 {
        return Err(invalid(format!("url must be an http, https or ftp URL of at most 1024 characters: {url:?}")));
    }
    Ok(url)
}

fn download(body: &Value) -> Result<DownloadSpec, InvalidTask> {
    let file_type = string_field(body, "fileType")?.unwrap_or_else(|| "1 Firmware Upgrade Image".into());
    let file_size = match body.get("fileSize") {
        None | Some(Value::Null) => 0,
        Some(v) => v.as_u64().ok_or_else(|| invalid("fileSize must be a whole number of bytes"))?,
    };
    Ok(DownloadSpec {
        file_type,
        url: transfer_url(body)?,
        file_size,
        target_file_name: string_field(body, "targetFileName")?.unwrap_or_default(),
        username: string_field(body, "username")?.unwrap_or_default(),
        password: string_field(body, "password")?.unwrap_or_default(),
        delay_seconds: u32_field(body, "delaySeconds")?.unwrap_or(0),
    })
}

fn upload(body: &Value) -> Result<UploadSpec, InvalidTask> {
    Ok(UploadSpec {
        file_type: string_field(body, "fileType")?.unwrap_or_else(|| "1 Vendor Configuration File".into()),
        url: transfer_url(body)?,
        username: string_field(body, "username")?.unwrap_or_default(),
        password: string_field(body, "password")?.unwrap_or_default(),
        delay_seconds: u32_field(body, "delaySeconds")?.unwrap_or(0),
    })
}

/// `parameterAttributes`: objects `{name, notification?, accessList?}` or GenieACS-style
/// `[name, notification, accessList?]` arrays.
fn attributes(body: &Value) -> Result<Vec<SetParameterAttribute>, InvalidTask> {
    let items = body
        .get("parameterAttributes")
        .and_then(Value::as_array)
        .filter(|items| !items.is_empty())
        .ok_or_else(|| invalid("parameterAttributes must be a non-empty array"))?;
    check_count(items.len(), "parameterAttributes")?;
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let (name, notification, access_list) = match item {
                Value::Object(o) => (o.get("name"), o.get("notification"), o.get("accessList")),
                Value::Array(a) => (a.first(), a.get(1), a.get(2)),
                _ => return Err(invalid(format!("parameterAttributes[{i}] must be an object or an array"))),
            };
            let name = name
                .and_then(Value::as_str)
                .ok_or_else(|| invalid(format!("parameterAttributes[{i}] needs a name")))?;
            check_path(name, "parameterAttributes")?;
            let notification = match notification {
                None | Some(Value::Null) => None,
                Some(v) => Some(
                    v.as_u64()
                        .filter(|n| *n <= 6)
                        .ok_or_else(|| invalid(format!("parameterAttributes[{i}].notification must be 0 to 6")))?
                        as u32,
                ),
            };
            let access_list = match access_list {
                None | Some(Value::Null) => None,
                Some(Value::Array(entries)) => Some(
                    entries
                        .iter()
                        .map(|e| e.as_str().map(str::to_owned))
                        .collect::<Option<Vec<_>>>()
                        .ok_or_else(|| invalid(format!("parameterAttributes[{i}].accessList must hold strings")))?,
                ),
                Some(_) => return Err(invalid(format!("parameterAttributes[{i}].accessList must be an array"))),
            };
            if notification.is_none() && access_list.is_none() {
                return Err(invalid(format!(
                    "parameterAttributes[{i}] changes nothing: give notification or accessList"
                )));
            }
            Ok(SetParameterAttribute {
                name: name.to_owned(),
                notification_change: notification.is_some(),
                notification: notification.unwrap_or(0),
                access_list_change: access_list.is_some(),
                access_list: access_list.unwrap_or_default(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn parse(body: Value) -> Result<TaskSpec, InvalidTask> {
        TaskSpec::parse(&body).map(|(_, spec)| spec)
    }

    #[test]
    fn genieacs_bodies_parse() {
        assert_eq!(
            parse(
                json!({"name": "setParameterValues", "parameterValues": [["A.B", "x"], ["A.C", 5, "xsd:unsignedInt"], ["A.D", true]]})
            ),
            Ok(TaskSpec::SetParameterValues {
                values: vec![
                    ParameterWrite { path: "A.B".into(), value: "x".into(), value_type: None },
                    ParameterWrite { path: "A.C".into(), value: "5".into(), value_type: Some(ValueType::UnsignedInt) },
                    ParameterWrite { path: "A.D".into(), value: "true".into(), value_type: None },
                ]
            })
        );
        assert_eq!(
            parse(json!({"name": "addObject", "objectName": "A.B"})),
            Ok(TaskSpec::AddObject { object: "A.B.".into() })
        );
        assert_eq!(parse(json!({"name": "reboot"})), Ok(TaskSpec::Reboot));
        assert!(matches!(
            parse(json!({"name": "download", "url": "http://h/fw.bin", "fileSize": 10})),
            Ok(TaskSpec::Download(DownloadSpec { file_size: 10, .. }))
        ));
    }

    #[test]
    fn secrets_are_redacted_and_nothing_else() {
        let body = json!({"name": "setParameterValues", "parameterValues": [
            ["Device.PPP.Interface.1.Password", "hunter2"], ["Device.PPP.Interface.1.Username", "alice"]
        ]});
        let redacted = redact(&body).unwrap_or_default();
        assert_eq!(redacted["parameterValues"][0][1], REDACTED);
        assert_eq!(redacted["parameterValues"][1][1], "alice");
        let download = json!({"name": "download", "url": "http://h/f", "username": "u", "password": "p"});
        assert_eq!(redact(&download).unwrap_or_default()["password"], REDACTED);
        let wifi = json!({"name": "configureWifi", "ssid": "Home", "passphrase": "correct horse"});
        let redacted = redact(&wifi).unwrap_or_default();
        assert_eq!((redacted["passphrase"].as_str(), redacted["ssid"].as_str()), (Some(REDACTED), Some("Home")));
        assert_eq!(redact(&json!({"name": "reboot"})), None);
        // A stored file's download: the token in its URL fetches the file; a URL of the task's
        // own giving is the task's and stays.
        let stored = json!({"name": "download", "file": "7", "url": "http://acs:7547/files/tok3n"});
        assert_eq!(redact(&stored).unwrap_or_default()["url"], format!("http://acs:7547/files/{REDACTED}").as_str());
        // The file's name after the token stays: it is no secret, and tells what was sent.
        let named = json!({"name": "download", "file": "7", "url": "http://acs:7547/files/tok3n/fw-2.bin"});
        assert_eq!(
            redact(&named).unwrap_or_default()["url"],
            format!("http://acs:7547/files/{REDACTED}/fw-2.bin").as_str()
        );
        assert_eq!(redact(&json!({"name": "download", "url": "http://h/fw.bin"})), None);
    }

    #[test]
    fn bad_bodies_say_what_is_wrong() {
        let message = |body: Value| parse(body).err().map(|e| e.message).unwrap_or_default();
        assert!(message(json!({"name": "frobnicate"})).contains("unknown task name"));
        assert!(message(json!([1])).contains("JSON object"));
        assert!(message(json!({"name": "getParameterValues"})).contains("parameterNames"));
        assert!(
            message(json!({"name": "setParameterValues", "parameterValues": [["A.B", "-1", "xsd:unsignedInt"]]}))
                .contains("not a valid xsd:unsignedInt")
        );
        assert!(
            message(json!({"name": "setParameterValues", "parameterValues": [["A.B", "1"], ["A.B", "2"]]}))
                .contains("twice")
        );
        assert!(message(json!({"name": "download", "url": "file:///etc/passwd"})).contains("http"));
        assert!(message(json!({"name": "getParameterValues", "parameterNames": ["A..B"]})).contains("not a valid"));
        let many: Vec<String> = (0..=MAX_NAMES_PER_TASK).map(|i| format!("Device.X.{i}")).collect();
        assert!(message(json!({"name": "getParameterValues", "parameterNames": many})).contains("at most 1024"));
    }
}
