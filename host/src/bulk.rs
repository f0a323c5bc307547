//! Bulk actions: one action over the devices a query matched when it was made, fanned out at
//! the organization's pace (`jobs.rs`). The decisions are plain functions here: what an action
//! is (`BulkAction::parse`), the task each device gets (`BulkAction::task`), a made-up Wi-Fi key
//! (`wifi_key`), and how a started device ends (`outcome`). The runner (`bulk/runner.rs`)
//! carries them out; the state is the database's (`store::bulk`), so a restart resumes a bulk
//! action where it was.

use serde_json::{Value, json};

use crate::permissions::Permission;
use crate::rollouts::TaskFact;

pub mod runner;

/// What a bulk action does to each device.
#[derive(Debug, Clone, PartialEq)]
pub enum BulkAction {
    /// A new WPA passphrase, made up for each device, on its primary networks of `band` (all
    /// bands by default), through its adapter (`configureWifi`).
    RotateWifiKey {
        band: Option<String>,
    },
    /// A `setParameterValues` task, the same for each device.
    SetParameterValues {
        task: Value,
    },
    Reboot,
    /// A refresh of `object`, or of the whole tree.
    Refresh {
        object: Option<String>,
    },
    /// The device is configured again as if new: its bootstrap presets run in its next session.
    RerunPresets,
}

pub const ACTION_NAMES: [&str; 5] = ["rotateWifiKey", "setParameterValues", "reboot", "refresh", "rerunPresets"];

impl BulkAction {
    /// From `{"name": …, …}`; the message names what is wrong.
    pub fn parse(action: &Value) -> Result<Self, String> {
        let object = action.as_object().ok_or("action: an object with a name")?;
        let name = object.get("name").and_then(Value::as_str).ok_or("action.name is missing")?;
        let allow = |fields: &[&str]| -> Result<(), String> {
            match object.keys().find(|k| k.as_str() != "name" && !fields.contains(&k.as_str())) {
                Some(extra) => Err(format!("action: {name} takes no field {extra:?}")),
                None => Ok(()),
            }
        };
        let text = |field: &str| -> Result<Option<String>, String> {
            match object.get(field) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.clone())),
                Some(_) => Err(format!("action.{field} must be a string")),
            }
        };
        Ok(match name {
            "rotateWifiKey" => {
                allow(&["band"])?;
                let band = text("band")?;
                if let Some(band) = band.as_deref().filter(|b| *b != "all") {
                    crate::tasks::Band::parse(band)
                        .ok_or_else(|| format!("action.band: {band:?} is not 2.4, 5, 6 or all"))?;
                }
                Self::RotateWifiKey { band }
            }
            "setParameterValues" => {
                allow(&["parameterValues"])?;
                crate::tasks::TaskSpec::parse(action).map_err(|e| format!("action: {e}"))?;
                Self::SetParameterValues { task: action.clone() }
            }
            "reboot" => {
                allow(&[])?;
                Self::Reboot
            }
            "refresh" => {
                allow(&["objectName"])?;
                let object = text("objectName")?;
                if let Some(object) = &object {
                    crate::tasks::TaskSpec::parse(&json!({"name": "refreshObject", "objectName": object}))
                        .map_err(|e| format!("action: {e}"))?;
                }
                Self::Refresh { object }
            }
            "rerunPresets" => {
                allow(&[])?;
                Self::RerunPresets
            }
            other => {
                return Err(format!("action: unknown name {other:?}; expected one of {}", ACTION_NAMES.join(", ")));
            }
        })
    }

    pub fn name(&self) -> &'static str {
        match self {
            Self::RotateWifiKey { .. } => "rotateWifiKey",
            Self::SetParameterValues { .. } => "setParameterValues",
            Self::Reboot => "reboot",
            Self::Refresh { .. } => "refresh",
            Self::RerunPresets => "rerunPresets",
        }
    }

    /// What the caller needs beside `ManageBulk`: what the action's tasks need one by one.
    pub fn permission(&self) -> Permission {
        match self {
            Self::RotateWifiKey { .. } | Self::Reboot | Self::Refresh { .. } => Permission::OperateDevices,
            Self::SetParameterValues { .. } | Self::RerunPresets => Permission::ConfigureDevices,
        }
    }

    /// Whether each device gets a secret made up for it (kept sealed, shown to the action's
    /// readers who may operate devices).
    pub fn makes_secret(&self) -> bool {
        matches!(self, Self::RotateWifiKey { .. })
    }

    /// The task one device gets, for its data model's `root`; `None` for an action that queues
    /// none. `secret`: what `makes_secret` made for it.
    pub fn task(&self, root: &str, secret: Option<&str>) -> Option<Value> {
        Some(match self {
            Self::RotateWifiKey { band } => json!({
                "name": "configureWifi",
                "band": band.as_deref().unwrap_or("all"),
                "passphrase": secret.unwrap_or_default(),
            }),
            Self::SetParameterValues { task } => task.clone(),
            Self::Reboot => json!({"name": "reboot"}),
            Self::Refresh { object } => {
                json!({"name": "refreshObject", "objectName": object.as_deref().unwrap_or(root)})
            }
            Self::RerunPresets => return None,
        })
    }
}

/// Letters and digits nobody misreads on a sticker or over the phone (no 0/O, 1/l/I).
const KEY_ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";

/// A new Wi-Fi key: 16 characters of `KEY_ALPHABET`, about 93 bits.
pub fn wifi_key() -> String {
    use rand::Rng;
    let mut rng = rand::rng();
    (0..16).map(|_| char::from(KEY_ALPHABET[rng.random_range(0..KEY_ALPHABET.len())])).collect()
}

/// A bulk action's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BulkState {
    Running,
    Completed,
    Cancelled,
}

impl BulkState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Completed => "completed",
            Self::Cancelled => "cancelled",
        }
    }
}

/// Where one device is in a bulk action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceState {
    Waiting,
    Started,
    Done,
    Failed,
    Cancelled,
}

impl DeviceState {
    pub const ALL: [Self; 5] = [Self::Waiting, Self::Started, Self::Done, Self::Failed, Self::Cancelled];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Waiting => "waiting",
            Self::Started => "started",
            Self::Done => "done",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }
}

/// How a started device stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Open,
    Done,
    Failed(String),
}

/// A started device's end: its task's, or (presets run again, no task) whether a session
/// configured it since it started, before `deadline`.
pub fn outcome(task: Option<TaskFact>, configured_since_start: bool, now: i64, deadline: i64) -> Outcome {
    match task {
        Some(TaskFact::Pending) => Outcome::Open,
        Some(TaskFact::Done) => Outcome::Done,
        Some(TaskFact::Fault(why)) => Outcome::Failed(why),
        Some(TaskFact::Gone) => Outcome::Failed("its task was deleted".into()),
        None if configured_since_start => Outcome::Done,
        None if now >= deadline => Outcome::Failed("no session configured it before the deadline".into()),
        None => Outcome::Open,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_parse_with_their_fields_only() {
        assert_eq!(BulkAction::parse(&json!({"name": "rotateWifiKey"})), Ok(BulkAction::RotateWifiKey { band: None }));
        assert_eq!(
            BulkAction::parse(&json!({"name": "rotateWifiKey", "band": "5"})),
            Ok(BulkAction::RotateWifiKey { band: Some("5".into()) })
        );
        assert!(BulkAction::parse(&json!({"name": "rotateWifiKey", "band": "7"})).unwrap_err().contains("band"));
        assert!(BulkAction::parse(&json!({"name": "reboot", "delay": 3})).unwrap_err().contains("delay"));
        assert!(BulkAction::parse(&json!({"name": "factoryReset"})).unwrap_err().contains("unknown name"));
        assert!(BulkAction::parse(&json!("reboot")).is_err());
        let set = json!({"name": "setParameterValues", "parameterValues": [["Device.X", "1", "xsd:string"]]});
        assert_eq!(BulkAction::parse(&set), Ok(BulkAction::SetParameterValues { task: set.clone() }));
        let bad = json!({"name": "setParameterValues", "parameterValues": "no"});
        assert!(BulkAction::parse(&bad).is_err());
        assert!(BulkAction::parse(&json!({"name": "refresh", "objectName": ""})).is_err());
    }

    #[test]
    fn each_device_gets_its_task_with_its_own_key_and_root() {
        let rotate = BulkAction::RotateWifiKey { band: None };
        assert_eq!(
            rotate.task("Device.", Some("k3y")),
            Some(json!({"name": "configureWifi", "band": "all", "passphrase": "k3y"}))
        );
        let refresh = BulkAction::Refresh { object: None };
        assert_eq!(
            refresh.task("InternetGatewayDevice.", None),
            Some(json!({"name": "refreshObject", "objectName": "InternetGatewayDevice."}))
        );
        assert_eq!(BulkAction::RerunPresets.task("Device.", None), None);
        // Every task an action makes is one the task queue takes.
        for action in [rotate, refresh, BulkAction::Reboot] {
            let task = action.task("Device.", Some("abcdefgh12345678")).unwrap();
            assert!(crate::tasks::TaskSpec::parse(&task).is_ok(), "{task}");
        }
    }

    #[test]
    fn a_made_up_key_is_a_wpa_passphrase_nobody_misreads() {
        let key = wifi_key();
        assert_eq!(key.len(), 16);
        assert!(key.bytes().all(|b| KEY_ALPHABET.contains(&b)));
        assert!(!key.contains(['0', 'O', '1', 'l', 'I']));
        assert_ne!(wifi_key(), key);
    }

    #[test]
    fn a_started_device_ends_with_its_task_or_its_configuration() {
        assert_eq!(outcome(Some(TaskFact::Pending), false, 0, 10), Outcome::Open);
        assert_eq!(outcome(Some(TaskFact::Done), false, 20, 10), Outcome::Done);
        assert_eq!(outcome(Some(TaskFact::Fault("9001: x".into())), false, 0, 10), Outcome::Failed("9001: x".into()));
        assert_eq!(outcome(None, true, 0, 10), Outcome::Done);
        assert_eq!(outcome(None, false, 5, 10), Outcome::Open);
        assert!(matches!(outcome(None, false, 10, 10), Outcome::Failed(_)));
    }
}
