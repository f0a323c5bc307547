//! What a task's request is and what the CPE's answer to it means, as plain functions: the
//! request a spec sends, whether a task may be sent at all, the task's outcome and what the
//! answer changes in the store. The driver (`super`) reads the queue, sends, runs follow-up
//! reads and writes; what is decided here is unit-tested below, without a database or a socket.

use std::collections::HashMap;

use roost_cwmp::{AcsRequest, CpeResponse, DataModel, Download, ParameterValue, Upload, ValueType};
use serde_json::{Value, json};

use crate::answers::{self, Answer, StoreWrite, describe_unanswered, spv_fault_detail, unanswered_code};
use crate::fault_code::FaultCode;
use crate::tasks::{ParameterWrite, TaskSpec};

/// A task that has been sent this many times without an answer (each time the session died) is
/// failed instead of being sent again: it is probably what kills the session.
pub(super) const MAX_ATTEMPTS: i64 = 3;

/// Why a task failed, as its row keeps it.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Failure {
    pub(super) code: FaultCode,
    pub(super) message: String,
    pub(super) detail: Option<Value>,
}

impl Failure {
    pub(super) fn new(code: FaultCode, message: String) -> Self {
        Self { code, message, detail: None }
    }
}

/// What the answer to a task's own request decided.
#[derive(Debug, PartialEq)]
pub(super) enum Decided {
    /// Done with this result, once `writes` are stored.
    Done {
        result: Value,
        writes: Vec<StoreWrite>,
    },
    /// Download/Upload accepted with Status 1: TransferComplete closes the task later.
    Transferring,
    /// The answer is the listing of a refreshObject's object: its refresh reads on from it.
    Refresh {
        object: String,
        listing: CpeResponse,
    },
    /// AddObject created `instance`: it is read (`prefix`) before the task is done.
    ReadInstance {
        prefix: String,
        instance: u32,
    },
    Failed(Failure),
}

/// Whether a queued task is sent: its body as the queue holds it parsed (`Err`: why it
/// cannot be), and how often it was sent before without an answer.
pub(super) fn opening(spec: Result<TaskSpec, String>, attempts: i64) -> Result<TaskSpec, Failure> {
    // Only possible for rows written by hand or by an older version: fail, don't loop.
    let spec = spec.map_err(|error| Failure::new(FaultCode::InvalidTask, error))?;
    if attempts >= MAX_ATTEMPTS {
        let message = format!("Sent {MAX_ATTEMPTS} times without an answer; the session died each time");
        return Err(Failure::new(FaultCode::TooManyAttempts, message));
    }
    Ok(spec)
}

/// Whether the task's request carries its CommandKey (`roost-<id>`): what the device reports
/// back in a later TransferComplete or Inform (`M Reboot`, `M ScheduleInform`).
pub(super) fn needs_command_key(spec: &TaskSpec) -> bool {
    matches!(spec, TaskSpec::Reboot | TaskSpec::Download(_) | TaskSpec::Upload(_) | TaskSpec::ScheduleInform { .. })
}

/// The parameters whose type the request needs from the store: a setParameterValues value the
/// caller gave without one.
pub(super) fn untyped(spec: &TaskSpec) -> Vec<&str> {
    match spec {
        TaskSpec::SetParameterValues { values } => {
            values.iter().filter(|w| w.value_type.is_none()).map(|w| w.path.as_str()).collect()
        }
        _ => Vec::new(),
    }
}

/// The request a task sends first; `None` for a task carried out through the device's adapter
/// ([`TaskSpec::is_intent`]). `stored`: the stored value and type of [`untyped`]'s paths.
pub(super) fn task_request(
    spec: &TaskSpec,
    command_key: String,
    stored: &HashMap<String, (Option<String>, String)>,
) -> Option<AcsRequest> {
    Some(match spec {
        TaskSpec::GetParameterValues { names, .. } => AcsRequest::GetParameterValues { names: names.clone() },
        TaskSpec::SetParameterValues { values } => {
            let values = values
                .iter()
                .map(|write| ParameterValue {
                    name: write.path.clone(),
                    value: write.value.clone(),
                    // Always send xsi:type: the stored one when the caller gave none.
                    value_type: write.value_type.clone().unwrap_or_else(|| {
                        stored
                            .get(&write.path)
                            .map(|(_, t)| ValueType::parse(t))
                            .filter(|t| !t.as_str().is_empty())
                            .unwrap_or_default()
                    }),
                })
                .collect();
            AcsRequest::SetParameterValues { values, parameter_key: command_key }
        }
        TaskSpec::RefreshObject { object } => {
            AcsRequest::GetParameterNames { parameter_path: object.clone(), next_level: false }
        }
        TaskSpec::AddObject { object } => {
            AcsRequest::AddObject { object_name: object.clone(), parameter_key: command_key }
        }
        TaskSpec::DeleteObject { object } => {
            AcsRequest::DeleteObject { object_name: object.clone(), parameter_key: command_key }
        }
        TaskSpec::Reboot => AcsRequest::Reboot { command_key },
        TaskSpec::FactoryReset => AcsRequest::FactoryReset,
        TaskSpec::Download(d) => AcsRequest::Download(Download {
            command_key,
            file_type: d.file_type.clone(),
            url: d.url.clone(),
            username: d.username.clone(),
            password: d.password.clone(),
            file_size: d.file_size,
            target_file_name: d.target_file_name.clone(),
            delay_seconds: d.delay_seconds,
            success_url: String::new(),
            failure_url: String::new(),
        }),
        TaskSpec::Upload(u) => AcsRequest::Upload(Upload {
            command_key,
            file_type: u.file_type.clone(),
            url: u.url.clone(),
            username: u.username.clone(),
            password: u.password.clone(),
            delay_seconds: u.delay_seconds,
        }),
        TaskSpec::ScheduleInform { delay_seconds } => {
            AcsRequest::ScheduleInform { delay_seconds: *delay_seconds, command_key }
        }
        TaskSpec::GetParameterAttributes { names } => AcsRequest::GetParameterAttributes { names: names.clone() },
        TaskSpec::SetParameterAttributes { attributes } => {
            AcsRequest::SetParameterAttributes { attributes: attributes.clone() }
        }
        TaskSpec::ConfigureWifi(_)
        | TaskSpec::ConfigurePppoe(_)
        | TaskSpec::StartDiagnostic(_)
        | TaskSpec::CollectDiagnostic(_) => return None,
    })
}

/// The spec as sent: on success the store takes what was sent, with the type sent. A value
/// given without one was sent with the stored type, which must not become the default
/// xsd:string.
pub(super) fn as_sent(spec: TaskSpec, request: &AcsRequest) -> TaskSpec {
    match (spec, request) {
        (TaskSpec::SetParameterValues { .. }, AcsRequest::SetParameterValues { values, .. }) => {
            TaskSpec::SetParameterValues {
                values: values
                    .iter()
                    .map(|p| ParameterWrite {
                        path: p.name.clone(),
                        value: p.value.clone(),
                        value_type: Some(p.value_type.clone()),
                    })
                    .collect(),
            }
        }
        (spec, _) => spec,
    }
}

/// The failure a fault or a missing answer makes of a task; `None` for a response (or for
/// nothing outstanding).
pub(super) fn failure(answer: &Answer) -> Option<Failure> {
    match answer {
        Answer::Fault(fault) => Some(Failure {
            code: FaultCode::Cwmp(fault.code),
            message: fault.string.clone(),
            detail: spv_fault_detail(fault),
        }),
        Answer::Unanswered(reason) => Some(Failure::new(unanswered_code(reason), describe_unanswered(reason))),
        Answer::Nothing | Answer::Response(_) => None,
    }
}

/// What the CPE's response to the task's own request decides, received at `now`; `earlier`:
/// values a getParameterValues of objects read before its named leaves.
pub(super) fn decide(
    spec: &TaskSpec,
    task_name: &str,
    response: CpeResponse,
    model: Option<DataModel>,
    earlier: Vec<ParameterValue>,
    now: i64,
) -> Decided {
    let done = |result: Value| Decided::Done { result, writes: Vec::new() };
    match (spec, response) {
        (TaskSpec::GetParameterValues { names, .. }, CpeResponse::GetParameterValues { parameters: values }) => {
            if values.is_empty() {
                // INTEROP: an empty list for explicit names is a failure without a fault.
                let message = format!("The CPE returned no values for {}", names.join(", "));
                return Decided::Failed(Failure::new(FaultCode::EmptyResponse, message));
            }
            let mut all = earlier;
            all.extend(values.iter().cloned());
            Decided::Done {
                result: json!({ "parameterValues": values_json(&all) }),
                writes: vec![StoreWrite::Read { values, at: now }],
            }
        }
        (TaskSpec::SetParameterValues { values }, CpeResponse::SetParameterValues { status }) => {
            let written = values
                .iter()
                .map(|write| ParameterValue {
                    name: write.path.clone(),
                    value: write.value.clone(),
                    value_type: write.value_type.clone().unwrap_or_default(),
                })
                .collect();
            Decided::Done {
                result: json!({ "status": status }),
                writes: vec![StoreWrite::Accepted { values: written, model, at: now }],
            }
        }
        (TaskSpec::RefreshObject { object }, listing @ CpeResponse::GetParameterNames { .. }) => {
            Decided::Refresh { object: object.clone(), listing }
        }
        (TaskSpec::AddObject { object }, CpeResponse::AddObject { instance_number, status }) => {
            match answers::added_instance(instance_number, status) {
                Ok(instance) => Decided::ReadInstance { prefix: format!("{object}{instance}."), instance },
                Err(why) => Decided::Failed(Failure::new(FaultCode::InvalidResponse, format!("AddObject {why}"))),
            }
        }
        (TaskSpec::DeleteObject { object }, CpeResponse::DeleteObject { status }) => {
            if status > 1 {
                let message = format!("DeleteObject answered Status {status}");
                return Decided::Failed(Failure::new(FaultCode::InvalidResponse, message));
            }
            Decided::Done {
                result: json!({ "status": status }),
                writes: vec![StoreWrite::Deleted { object: object.clone() }],
            }
        }
        (TaskSpec::Reboot, CpeResponse::Reboot)
        | (TaskSpec::ScheduleInform { .. }, CpeResponse::ScheduleInform)
        | (TaskSpec::SetParameterAttributes { .. }, CpeResponse::SetParameterAttributes) => done(json!({})),
        (TaskSpec::FactoryReset, CpeResponse::FactoryReset) => {
            Decided::Done { result: json!({}), writes: vec![StoreWrite::Reset] }
        }
        (TaskSpec::Download(_), CpeResponse::Download { status, start_time, complete_time })
        | (TaskSpec::Upload(_), CpeResponse::Upload { status, start_time, complete_time }) => match status {
            0 => done(json!({ "startTime": start_time, "completeTime": complete_time })),
            _ => Decided::Transferring,
        },
        (TaskSpec::GetParameterAttributes { .. }, CpeResponse::GetParameterAttributes { parameters: attributes }) => {
            let attributes: Vec<Value> = attributes
                .iter()
                .map(|a| json!({ "name": a.name, "notification": a.notification, "accessList": a.access_list }))
                .collect();
            done(json!({ "parameterAttributes": attributes }))
        }
        (_, other) => Decided::Failed(Failure::new(
            FaultCode::WrongResponse,
            format!("Unexpected {}Response for task {task_name}", other.method_name()),
        )),
    }
}

pub(super) fn values_json(values: &[ParameterValue]) -> Vec<Value> {
    values.iter().map(|p| json!([p.name, p.value, p.value_type.as_str()])).collect()
}

#[cfg(test)]
mod tests {
    use roost_cwmp::Fault;
    use roost_cwmp::fault::{SetParameterValuesFault, cpe_codes};
    use roost_cwmp::session::Unanswered;

    use super::*;

    const SSID: &str = "InternetGatewayDevice.LANDevice.1.WLANConfiguration.1.SSID";
    const INTERVAL: &str = "InternetGatewayDevice.ManagementServer.PeriodicInformInterval";

    fn value(name: &str, value: &str, value_type: ValueType) -> ParameterValue {
        ParameterValue { name: name.into(), value: value.into(), value_type }
    }

    fn set(values: Vec<ParameterWrite>) -> TaskSpec {
        TaskSpec::SetParameterValues { values }
    }

    fn write(path: &str, value: &str, value_type: Option<ValueType>) -> ParameterWrite {
        ParameterWrite { path: path.into(), value: value.into(), value_type }
    }

    #[test]
    fn a_task_that_keeps_killing_the_session_is_failed_not_sent() {
        assert_eq!(opening(Ok(TaskSpec::Reboot), MAX_ATTEMPTS - 1), Ok(TaskSpec::Reboot));
        let failed = opening(Ok(TaskSpec::Reboot), MAX_ATTEMPTS).err().map(|f| f.code);
        assert_eq!(failed, Some(FaultCode::TooManyAttempts));
        let unreadable = opening(Err("expected value at line 1".into()), 0);
        assert_eq!(unreadable, Err(Failure::new(FaultCode::InvalidTask, "expected value at line 1".into())));
    }

    #[test]
    fn values_given_without_a_type_are_sent_with_the_stored_one() {
        let spec = set(vec![
            write(SSID, "home", None),
            write(INTERVAL, "300", None),
            write("Device.X", "1", Some(ValueType::Boolean)),
        ]);
        assert_eq!(untyped(&spec), vec![SSID, INTERVAL]);
        let stored = HashMap::from([(INTERVAL.to_owned(), (Some("60".to_owned()), "xsd:unsignedInt".to_owned()))]);
        let request = task_request(&spec, "roost-7".into(), &stored).unwrap_or(AcsRequest::FactoryReset);
        let AcsRequest::SetParameterValues { values, parameter_key } = &request else { panic!("{request:?}") };
        assert_eq!(parameter_key, "roost-7");
        assert_eq!(
            values,
            &vec![
                value(SSID, "home", ValueType::String),
                value(INTERVAL, "300", ValueType::UnsignedInt),
                value("Device.X", "1", ValueType::Boolean)
            ],
            "unknown to the store: xsd:string; stored: its type; given: as given"
        );
        // What the store keeps on success is what was sent.
        let TaskSpec::SetParameterValues { values } = as_sent(spec, &request) else { panic!() };
        assert_eq!(values[1], write(INTERVAL, "300", Some(ValueType::UnsignedInt)));
    }

    #[test]
    fn only_requests_the_device_reports_back_carry_the_command_key() {
        assert!(needs_command_key(&TaskSpec::Reboot));
        assert!(needs_command_key(&TaskSpec::ScheduleInform { delay_seconds: 5 }));
        assert!(!needs_command_key(&TaskSpec::FactoryReset));
        assert!(!needs_command_key(&set(vec![write(SSID, "x", None)])));
    }

    #[test]
    fn values_read_are_stored_and_returned_with_those_read_before() {
        let spec = TaskSpec::GetParameterValues { names: vec![SSID.into()], partial_path: false };
        let read = vec![value(SSID, "home", ValueType::String)];
        let earlier = vec![value(INTERVAL, "300", ValueType::UnsignedInt)];
        let decided = decide(
            &spec,
            "getParameterValues",
            CpeResponse::GetParameterValues { parameters: read.clone() },
            None,
            earlier,
            42,
        );
        assert_eq!(
            decided,
            Decided::Done {
                result: json!({ "parameterValues": [[INTERVAL, "300", "xsd:unsignedInt"], [SSID, "home", "xsd:string"]] }),
                writes: vec![StoreWrite::Read { values: read, at: 42 }],
            }
        );
        let empty = decide(
            &spec,
            "getParameterValues",
            CpeResponse::GetParameterValues { parameters: vec![] },
            None,
            vec![],
            42,
        );
        assert!(
            matches!(empty, Decided::Failed(Failure { ref code, .. }) if *code == FaultCode::EmptyResponse),
            "{empty:?}"
        );
    }

    #[test]
    fn values_accepted_are_stored_with_the_devices_model() {
        let spec = set(vec![write(SSID, "home", Some(ValueType::String))]);
        let decided = decide(
            &spec,
            "setParameterValues",
            CpeResponse::SetParameterValues { status: 1 },
            Some(DataModel::Tr098),
            vec![],
            9,
        );
        assert_eq!(
            decided,
            Decided::Done {
                result: json!({ "status": 1 }),
                writes: vec![StoreWrite::Accepted {
                    values: vec![value(SSID, "home", ValueType::String)],
                    model: Some(DataModel::Tr098),
                    at: 9
                }],
            }
        );
    }

    #[test]
    fn objects_added_are_read_and_objects_deleted_are_dropped() {
        let add = TaskSpec::AddObject { object: "Device.WiFi.SSID.".into() };
        let created =
            decide(&add, "addObject", CpeResponse::AddObject { instance_number: 3, status: 0 }, None, vec![], 0);
        assert_eq!(created, Decided::ReadInstance { prefix: "Device.WiFi.SSID.3.".into(), instance: 3 });
        let none = decide(&add, "addObject", CpeResponse::AddObject { instance_number: 0, status: 0 }, None, vec![], 0);
        assert!(
            matches!(none, Decided::Failed(Failure { ref code, .. }) if *code == FaultCode::InvalidResponse),
            "{none:?}"
        );

        let delete = TaskSpec::DeleteObject { object: "Device.WiFi.SSID.3.".into() };
        let deleted = decide(&delete, "deleteObject", CpeResponse::DeleteObject { status: 0 }, None, vec![], 0);
        assert_eq!(
            deleted,
            Decided::Done {
                result: json!({ "status": 0 }),
                writes: vec![StoreWrite::Deleted { object: "Device.WiFi.SSID.3.".into() }]
            }
        );
        let refused = decide(&delete, "deleteObject", CpeResponse::DeleteObject { status: 2 }, None, vec![], 0);
        assert_eq!(
            refused,
            Decided::Failed(Failure::new(FaultCode::InvalidResponse, "DeleteObject answered Status 2".into()))
        );
    }

    #[test]
    fn a_factory_reset_forgets_and_transfers_wait_for_their_completion() {
        let reset = decide(&TaskSpec::FactoryReset, "factoryReset", CpeResponse::FactoryReset, None, vec![], 0);
        assert_eq!(reset, Decided::Done { result: json!({}), writes: vec![StoreWrite::Reset] });
        let download = TaskSpec::Download(Default::default());
        let accepted = CpeResponse::Download { status: 1, start_time: String::new(), complete_time: String::new() };
        assert_eq!(decide(&download, "download", accepted, None, vec![], 0), Decided::Transferring);
        let finished = CpeResponse::Download { status: 0, start_time: "a".into(), complete_time: "b".into() };
        assert_eq!(
            decide(&download, "download", finished, None, vec![], 0),
            Decided::Done { result: json!({ "startTime": "a", "completeTime": "b" }), writes: vec![] }
        );
    }

    #[test]
    fn another_methods_response_fails_the_task() {
        let decided = decide(&TaskSpec::Reboot, "reboot", CpeResponse::FactoryReset, None, vec![], 0);
        assert_eq!(
            decided,
            Decided::Failed(Failure::new(
                FaultCode::WrongResponse,
                "Unexpected FactoryResetResponse for task reboot".into()
            ))
        );
    }

    #[test]
    fn faults_and_missing_answers_fail_the_task_with_what_the_cpe_said() {
        let mut fault = Fault::new(cpe_codes::INVALID_ARGUMENTS, "Invalid arguments");
        fault.set_parameter_values_faults = vec![SetParameterValuesFault {
            parameter_name: SSID.into(),
            code: cpe_codes::INVALID_PARAMETER_VALUE,
            string: "too long".into(),
        }];
        let failed = failure(&Answer::Fault(fault)).map(|f| (f.code, f.message, f.detail.is_some()));
        assert_eq!(failed, Some((FaultCode::Cwmp(9003), "Invalid arguments".into(), true)));
        let silent = failure(&Answer::Unanswered(Unanswered::EmptyPost)).map(|f| f.code);
        assert_eq!(silent, Some(FaultCode::NoResponse));
        assert_eq!(failure(&Answer::Nothing), None);
    }
}
