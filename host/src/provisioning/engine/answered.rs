//! What the CPE's answer to one of provisioning's calls means, as plain functions: what it
//! changes in the store and in the session's view of the tree, what fault it is, and what
//! provisioning does next. The engine (`super`) performs it; the answers to listings are a
//! [`Refresh`](crate::answers::refresh::Refresh)'s own and are fed to it by the engine.

use roost_cwmp::{CpeResponse, DataModel, ParameterValue, ValueType, is_secret_parameter};
use roost_params::Value;
use roost_params::tree::{Node, ParameterTree};

use super::calls::{Command, InFlight, describe};
use crate::answers::{self, StoreWrite};
use crate::fault_code::FaultCode;
use crate::provisioning::plan::NewInstance;

/// What an answer decided.
#[derive(Debug, PartialEq)]
pub(super) struct Answered {
    /// What it changes in the store.
    pub(super) writes: Vec<StoreWrite>,
    /// What it changes in the session's view, which the next round's provisions read.
    pub(super) view: Option<ViewChange>,
    /// A failure to record against the device.
    pub(super) fault: Option<(FaultCode, String)>,
    pub(super) then: Then,
}

/// What provisioning does after an answer.
#[derive(Debug, PartialEq)]
pub(super) enum Then {
    /// The next call of the round, or the next round.
    GoOn,
    /// AddObject created an instance: it is listed and read (`prefix`) before provisioning goes
    /// on, and its alias values are written then ([`alias_values`]).
    ReadInstance { instance: NewInstance, prefix: String },
    /// The device goes away when the session ends (reboot, factory reset): nothing else of the
    /// round is worth sending.
    DropCalls,
    /// The answer is a failure: the round's remaining calls are dropped, and so are the
    /// built-in presets' commands, since the device is not as provisioning believes.
    GiveUp,
}

/// A change to the session's view of the tree.
#[derive(Debug, PartialEq)]
pub(super) enum ViewChange {
    /// Values the device reported.
    Read(Vec<ParameterValue>),
    /// Values the device accepted.
    Written(Vec<ParameterValue>),
    /// An object the device deleted, with everything below it.
    Removed(String),
}

impl ViewChange {
    /// Records the change in `tree` at `now_ms`. Secrets are kept as empty text, as the store
    /// keeps them: the device reads them back empty, and the provisions never see them.
    pub(super) fn apply(&self, tree: &mut ParameterTree, now_ms: u64) {
        let text =
            |value: &ParameterValue| if is_secret_parameter(&value.name) { String::new() } else { value.value.clone() };
        match self {
            ViewChange::Read(values) => {
                for value in values {
                    let value_type = value.value_type.as_str().to_owned();
                    match tree.get_mut(&value.name) {
                        Some(node) => {
                            node.value = Some(text(value));
                            node.value_type = value_type;
                            node.updated_ms = now_ms;
                        }
                        // Never listed: whether it is writable is unknown, so it is not
                        // offered for writing.
                        None => tree.insert(
                            value.name.clone(),
                            Node { value: Some(text(value)), value_type, writable: false, updated_ms: now_ms },
                        ),
                    }
                }
            }
            ViewChange::Written(values) => {
                for value in values {
                    let writable = tree.get(&value.name).is_none_or(|node| node.writable);
                    let value_type = value.value_type.as_str().to_owned();
                    tree.insert(
                        value.name.clone(),
                        Node { value: Some(text(value)), value_type, writable, updated_ms: now_ms },
                    );
                }
            }
            ViewChange::Removed(object) => tree.remove(object),
        }
    }
}

/// What `response` to `in_flight` decides, for a device of data model `model`, at `now`.
/// `in_flight` is not a listing (those are a refresh's to read).
pub(super) fn answered(in_flight: InFlight, response: CpeResponse, model: Option<DataModel>, now: i64) -> Answered {
    let stored = |writes, view| Answered { writes, view: Some(view), fault: None, then: Then::GoOn };
    let give_up =
        |code, message| Answered { writes: Vec::new(), view: None, fault: Some((code, message)), then: Then::GiveUp };
    match (in_flight, response) {
        (InFlight::GetValues(names), CpeResponse::GetParameterValues { parameters: values }) => {
            if values.is_empty() {
                let message = format!("GetParameterValues of {} returned no values", names.join(", "));
                return give_up(FaultCode::EmptyResponse, message);
            }
            stored(vec![StoreWrite::Read { values: values.clone(), at: now }], ViewChange::Read(values))
        }
        (InFlight::Add(instance), CpeResponse::AddObject { instance_number, status }) => {
            match answers::added_instance(instance_number, status) {
                Ok(number) => {
                    let prefix = format!("{}{number}.", instance.table);
                    Answered {
                        writes: Vec::new(),
                        view: None,
                        fault: None,
                        then: Then::ReadInstance { instance, prefix },
                    }
                }
                Err(why) => give_up(FaultCode::InvalidResponse, format!("AddObject {} {why}", instance.table)),
            }
        }
        (InFlight::Delete(object), CpeResponse::DeleteObject { .. }) => {
            stored(vec![StoreWrite::Deleted { object: object.clone() }], ViewChange::Removed(object))
        }
        (InFlight::Set(values), CpeResponse::SetParameterValues { .. }) => {
            stored(vec![StoreWrite::Accepted { values: values.clone(), model, at: now }], ViewChange::Written(values))
        }
        (InFlight::Command(command), response) => {
            let expected = matches!(
                (&command, &response),
                (Command::Reboot, CpeResponse::Reboot)
                    | (Command::FactoryReset, CpeResponse::FactoryReset)
                    | (Command::Download { .. }, CpeResponse::Download { .. })
            );
            let fault = (!expected).then(|| {
                (FaultCode::WrongResponse, format!("Unexpected {}Response to {command:?}", response.method_name()))
            });
            let writes =
                if expected && command == Command::FactoryReset { vec![StoreWrite::Reset] } else { Vec::new() };
            let then = match command {
                Command::Reboot | Command::FactoryReset => Then::DropCalls,
                Command::Download { .. } => Then::GoOn,
            };
            Answered { writes, view: None, fault, then }
        }
        (in_flight, other) => give_up(
            FaultCode::WrongResponse,
            format!("Unexpected {}Response to {}", other.method_name(), describe(&in_flight)),
        ),
    }
}

/// The values that make a new instance match the alias pattern that asked for it
/// (`[SSID:guest]`), in the types the device reported for them; empty when it has no alias.
/// `tree` holds the instance as the device listed it under `prefix`.
pub(super) fn alias_values(instance: &NewInstance, prefix: &str, tree: &ParameterTree) -> Vec<ParameterValue> {
    instance
        .alias
        .iter()
        .filter_map(|(key, value)| {
            let path = format!("{prefix}{key}");
            let node = tree.get(&path)?;
            let (value, value_type) =
                roost_params::coerce(&Value::Text(value.clone()), &node.value_type, node.value.as_deref()).ok()?;
            Some(ParameterValue { name: path, value, value_type: ValueType::parse(&value_type) })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use roost_cwmp::ValueType;

    use super::*;

    fn value(name: &str, text: &str, value_type: ValueType) -> ParameterValue {
        ParameterValue { name: name.into(), value: text.into(), value_type }
    }

    fn leaf(text: &str, value_type: &str, writable: bool) -> Node {
        Node { value: Some(text.into()), value_type: value_type.into(), writable, updated_ms: 1 }
    }

    const SSID: &str = "Device.WiFi.SSID.1.SSID";
    const KEY: &str = "Device.WiFi.AccessPoint.1.Security.KeyPassphrase";

    #[test]
    fn values_read_are_stored_and_shown_to_the_next_round_but_secrets_stay_blank() {
        let read = vec![value(SSID, "home", ValueType::String), value(KEY, "hunter22", ValueType::String)];
        let decided = answered(
            InFlight::GetValues(vec![SSID.into(), KEY.into()]),
            CpeResponse::GetParameterValues { parameters: read.clone() },
            None,
            7,
        );
        assert_eq!(decided.writes, vec![StoreWrite::Read { values: read.clone(), at: 7 }]);
        assert_eq!((decided.fault, decided.then), (None, Then::GoOn));

        let mut tree = ParameterTree::new();
        tree.insert(SSID, leaf("old", "xsd:string", true));
        decided.view.as_ref().expect("a view change").apply(&mut tree, 9);
        assert_eq!(
            tree.get(SSID),
            Some(&Node { value: Some("home".into()), value_type: "xsd:string".into(), writable: true, updated_ms: 9 })
        );
        // Never listed: not offered for writing; a secret: blank.
        assert_eq!(
            tree.get(KEY),
            Some(&Node { value: Some(String::new()), value_type: "xsd:string".into(), writable: false, updated_ms: 9 })
        );
    }

    #[test]
    fn an_empty_read_is_a_fault_that_ends_the_round() {
        let decided = answered(
            InFlight::GetValues(vec![SSID.into()]),
            CpeResponse::GetParameterValues { parameters: vec![] },
            None,
            7,
        );
        assert_eq!(
            decided.fault,
            Some((FaultCode::EmptyResponse, format!("GetParameterValues of {SSID} returned no values")))
        );
        assert_eq!((decided.writes, decided.view, decided.then), (vec![], None, Then::GiveUp));
    }

    #[test]
    fn accepted_values_are_stored_for_the_data_model_and_keep_their_writability() {
        let set = vec![value(SSID, "roost", ValueType::String)];
        let decided = answered(
            InFlight::Set(set.clone()),
            CpeResponse::SetParameterValues { status: 0 },
            Some(DataModel::Tr181),
            3,
        );
        assert_eq!(
            decided.writes,
            vec![StoreWrite::Accepted { values: set.clone(), model: Some(DataModel::Tr181), at: 3 }]
        );
        let mut tree = ParameterTree::new();
        tree.insert(SSID, leaf("home", "xsd:string", true));
        decided.view.as_ref().expect("a view change").apply(&mut tree, 4);
        assert_eq!(tree.get(SSID).and_then(|n| n.value.as_deref()), Some("roost"));
        assert_eq!(tree.get(SSID).map(|n| (n.writable, n.updated_ms)), Some((true, 4)));
    }

    #[test]
    fn a_deleted_object_goes_with_everything_below_it() {
        let object = "Device.WiFi.SSID.2.";
        let decided = answered(InFlight::Delete(object.into()), CpeResponse::DeleteObject { status: 0 }, None, 5);
        assert_eq!(decided.writes, vec![StoreWrite::Deleted { object: object.into() }]);
        let mut tree = ParameterTree::new();
        tree.insert(object, Node::default());
        tree.insert("Device.WiFi.SSID.2.SSID", leaf("guest", "xsd:string", true));
        tree.insert(SSID, leaf("home", "xsd:string", true));
        decided.view.as_ref().expect("a view change").apply(&mut tree, 6);
        assert_eq!(tree.iter().map(|(path, _)| path.as_str()).collect::<Vec<_>>(), vec![SSID]);
    }

    #[test]
    fn an_added_instance_is_read_before_anything_else_and_a_refused_add_gives_up() {
        let instance = NewInstance { table: "Device.WiFi.SSID.".into(), alias: vec![("SSID".into(), "guest".into())] };
        let added = answered(
            InFlight::Add(instance.clone()),
            CpeResponse::AddObject { instance_number: 3, status: 0 },
            None,
            1,
        );
        assert_eq!(added.then, Then::ReadInstance { instance: instance.clone(), prefix: "Device.WiFi.SSID.3.".into() });
        assert_eq!((added.writes, added.fault), (vec![], None));

        let refused =
            answered(InFlight::Add(instance), CpeResponse::AddObject { instance_number: 0, status: 0 }, None, 1);
        assert!(
            matches!(refused.fault, Some((FaultCode::InvalidResponse, ref m)) if m.starts_with("AddObject Device.WiFi.SSID. ")),
            "{refused:?}"
        );
        assert_eq!(refused.then, Then::GiveUp);
    }

    #[test]
    fn a_new_instance_takes_its_alias_values_in_the_devices_types() {
        let instance = NewInstance {
            table: "Device.WiFi.SSID.".into(),
            alias: vec![
                ("SSID".into(), "guest".into()),
                ("Enable".into(), "true".into()),
                ("Missing".into(), "x".into()),
            ],
        };
        let mut tree = ParameterTree::new();
        tree.insert("Device.WiFi.SSID.3.SSID", leaf("", "xsd:string", true));
        tree.insert("Device.WiFi.SSID.3.Enable", leaf("0", "xsd:boolean", true));
        assert_eq!(
            alias_values(&instance, "Device.WiFi.SSID.3.", &tree),
            vec![
                value("Device.WiFi.SSID.3.SSID", "guest", ValueType::String),
                // The device spells booleans 0/1: so is the value sent.
                value("Device.WiFi.SSID.3.Enable", "1", ValueType::Boolean),
            ]
        );
    }

    #[test]
    fn a_reboot_answered_ends_the_round_and_a_reset_also_forgets_the_configuration() {
        let reboot = answered(InFlight::Command(Command::Reboot), CpeResponse::Reboot, None, 1);
        assert_eq!(reboot, Answered { writes: vec![], view: None, fault: None, then: Then::DropCalls });
        let reset = answered(InFlight::Command(Command::FactoryReset), CpeResponse::FactoryReset, None, 1);
        assert_eq!(reset, Answered { writes: vec![StoreWrite::Reset], view: None, fault: None, then: Then::DropCalls });
        let download =
            Command::Download { url: "http://fw/x.bin".into(), file_type: "1 Firmware Upgrade Image".into() };
        let accepted = answered(
            InFlight::Command(download),
            CpeResponse::Download { status: 1, start_time: String::new(), complete_time: String::new() },
            None,
            1,
        );
        assert_eq!(accepted.then, Then::GoOn);
    }

    #[test]
    fn a_wrong_answer_is_a_fault_and_a_wrong_answer_to_a_reset_resets_nothing() {
        let wrong = answered(InFlight::Command(Command::FactoryReset), CpeResponse::Reboot, None, 1);
        assert_eq!(wrong.fault, Some((FaultCode::WrongResponse, "Unexpected RebootResponse to FactoryReset".into())));
        assert_eq!((wrong.writes, wrong.then), (vec![], Then::DropCalls));

        let mixed = answered(InFlight::Delete("Device.X.1.".into()), CpeResponse::Reboot, None, 1);
        assert_eq!(
            mixed.fault,
            Some((FaultCode::WrongResponse, "Unexpected RebootResponse to DeleteObject Device.X.1.".into()))
        );
        assert_eq!(mixed.then, Then::GiveUp);
    }
}
