//! The calls a round sends, and what a refused SetParameterValues leaves to send.

use std::collections::HashSet;

use roost_cwmp::{ParameterValue, is_secret_parameter};

use super::MAX_ROUNDS;
use crate::answers::is_connection_request_credential;
use crate::answers::refresh::Refresh;
use crate::provisioning::plan::{NewInstance, Plan};

/// A device-changing command a built-in preset asks for; sent once, after the declarations
/// converged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Command {
    Reboot,
    FactoryReset,
    Download { url: String, file_type: String },
}

/// One call of a round.
#[derive(Debug, PartialEq)]
pub(super) enum Call {
    Refresh(String),
    GetValues(Vec<String>),
    Add(NewInstance),
    Delete(String),
    Set(Vec<ParameterValue>),
    Command { preset: String, command: Command },
}

/// The call whose answer is awaited.
#[derive(Debug)]
pub(super) enum InFlight {
    Refresh(Refresh),
    GetValues(Vec<String>),
    /// AddObject sent; then the new instance is refreshed, then its alias values are written.
    Add(NewInstance),
    AddRefresh {
        instance: NewInstance,
        refresh: Refresh,
    },
    Delete(String),
    Set(Vec<ParameterValue>),
    Command(Command),
}

/// What follows a round's plan.
#[derive(Debug, PartialEq)]
pub(super) enum AfterPlan {
    /// The provisions want nothing more: the built-in presets' commands go out, then
    /// provisioning ends.
    Settled,
    /// They still want changes after [`MAX_ROUNDS`] rounds: they disagree with each other or
    /// with the device. `wanted` sums up what the last round still wanted.
    NotConverging { wanted: String },
    /// The round's calls, in the order they go out.
    Send(Vec<Call>),
}

/// What follows `plan`, after `rounds` rounds were sent: values the CPE refused this session
/// are left out (they would be refused again), reads go in batches of `batch` names (what the
/// device's firmware survives), and connection-request credentials go in a SetParameterValues
/// of their own — a CPE that refuses another value of a shared one may apply some of it and
/// fault all of it, and Roost must know for sure what wakes the device.
pub(super) fn after_plan(mut plan: Plan, refused: &HashSet<String>, rounds: usize, batch: usize) -> AfterPlan {
    plan.set_values.retain(|value| !refused.contains(&value.name));
    if plan.is_empty() {
        return AfterPlan::Settled;
    }
    if rounds >= MAX_ROUNDS {
        return AfterPlan::NotConverging { wanted: summarize(&plan) };
    }
    let mut calls: Vec<Call> = plan.get_names.iter().cloned().map(Call::Refresh).collect();
    calls.extend(plan.get_values.chunks(batch.max(1)).map(|chunk| Call::GetValues(chunk.to_vec())));
    calls.extend(plan.delete_objects.iter().cloned().map(Call::Delete));
    calls.extend(plan.add_objects.iter().cloned().map(Call::Add));
    let (credentials, others): (Vec<_>, Vec<_>) =
        plan.set_values.iter().cloned().partition(|value| is_connection_request_credential(&value.name));
    calls.extend([credentials, others].into_iter().filter(|values| !values.is_empty()).map(Call::Set));
    AfterPlan::Send(calls)
}

/// What to do after a CPE refused a SetParameterValues.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum AfterRefusal {
    /// The fault names the parameters it refused: send the others again, alone.
    Retry { refused: Vec<String>, rest: Vec<ParameterValue> },
    /// Every parameter was refused: nothing to send again; later rounds leave them out.
    Skip { refused: Vec<String> },
    /// The fault does not say which parameters it refused: read back what the CPE now holds of
    /// the non-secret ones (some firmware applies part of a SetParameterValues it faults) and
    /// stop for this session.
    Reread { names: Vec<String> },
}

pub(super) fn after_refused_set(values: Vec<ParameterValue>, fault: &roost_cwmp::Fault) -> AfterRefusal {
    let named: HashSet<&str> = fault.set_parameter_values_faults.iter().map(|f| f.parameter_name.as_str()).collect();
    let (refused, rest): (Vec<_>, Vec<_>) = values.into_iter().partition(|value| named.contains(value.name.as_str()));
    let refused: Vec<String> = refused.into_iter().map(|value| value.name).collect();
    match (refused.is_empty(), rest.is_empty()) {
        (false, false) => AfterRefusal::Retry { refused, rest },
        (false, true) => AfterRefusal::Skip { refused },
        (true, _) => AfterRefusal::Reread {
            names: rest.into_iter().map(|value| value.name).filter(|name| !is_secret_parameter(name)).collect(),
        },
    }
}

pub(super) fn describe(in_flight: &InFlight) -> String {
    match in_flight {
        InFlight::Refresh(r) => format!("GetParameterNames {}", r.prefix),
        InFlight::GetValues(names) => format!("GetParameterValues of {}", names.join(", ")),
        InFlight::Add(i) => format!("AddObject {}", i.table),
        InFlight::AddRefresh { refresh, .. } => format!("GetParameterNames {}", refresh.prefix),
        InFlight::Delete(o) => format!("DeleteObject {o}"),
        InFlight::Set(values) => {
            let names: Vec<&str> = values.iter().map(|v| v.name.as_str()).collect();
            format!("SetParameterValues of {}", names.join(", "))
        }
        InFlight::Command(c) => format!("{c:?}"),
    }
}

pub(super) fn summarize(plan: &Plan) -> String {
    let mut parts = Vec::new();
    let list = |items: Vec<&str>| {
        let shown: Vec<&str> = items.iter().take(5).copied().collect();
        let more = items.len().saturating_sub(5);
        if more > 0 { format!("{} and {more} more", shown.join(", ")) } else { shown.join(", ") }
    };
    if !plan.get_names.is_empty() {
        parts.push(format!("to list {}", list(plan.get_names.iter().map(String::as_str).collect())));
    }
    if !plan.get_values.is_empty() {
        parts.push(format!("to read {}", list(plan.get_values.iter().map(String::as_str).collect())));
    }
    if !plan.add_objects.is_empty() {
        parts.push(format!("to add to {}", list(plan.add_objects.iter().map(|a| a.table.as_str()).collect())));
    }
    if !plan.delete_objects.is_empty() {
        parts.push(format!("to delete {}", list(plan.delete_objects.iter().map(String::as_str).collect())));
    }
    if !plan.set_values.is_empty() {
        let sets: Vec<String> = plan
            .set_values
            .iter()
            .map(|v| {
                if is_secret_parameter(&v.name) {
                    format!("{} (secret)", v.name)
                } else {
                    format!("{} = {:?}", v.name, v.value)
                }
            })
            .collect();
        parts.push(format!("to set {}", list(sets.iter().map(String::as_str).collect())));
    }
    parts.join("; ")
}

#[cfg(test)]
mod tests {
    use roost_cwmp::Fault;
    use roost_cwmp::fault::SetParameterValuesFault;

    use roost_cwmp::ValueType;
    use roost_cwmp::fault::cpe_codes;

    use super::*;

    fn values(names: &[&str]) -> Vec<ParameterValue> {
        names
            .iter()
            .map(|n| ParameterValue { name: (*n).to_owned(), value: "1".to_owned(), value_type: ValueType::Boolean })
            .collect()
    }

    fn refusing(names: &[&str]) -> Fault {
        let mut fault = Fault::new(cpe_codes::INVALID_ARGUMENTS, "Invalid arguments");
        fault.set_parameter_values_faults = names
            .iter()
            .map(|n| SetParameterValuesFault {
                parameter_name: (*n).to_owned(),
                code: cpe_codes::NON_WRITABLE_PARAMETER,
                string: "read-only".into(),
            })
            .collect();
        fault
    }

    const ENABLE: &str = "InternetGatewayDevice.ManagementServer.PeriodicInformEnable";
    const INTERVAL: &str = "InternetGatewayDevice.ManagementServer.PeriodicInformInterval";
    const PASSWORD: &str = "InternetGatewayDevice.ManagementServer.ConnectionRequestPassword";

    #[test]
    fn a_refusal_naming_some_parameters_retries_the_others() {
        let outcome = after_refused_set(values(&[ENABLE, INTERVAL]), &refusing(&[ENABLE]));
        assert_eq!(outcome, AfterRefusal::Retry { refused: vec![ENABLE.into()], rest: values(&[INTERVAL]) });
    }

    #[test]
    fn a_refusal_of_everything_skips() {
        let outcome = after_refused_set(values(&[ENABLE]), &refusing(&[ENABLE]));
        assert_eq!(outcome, AfterRefusal::Skip { refused: vec![ENABLE.into()] });
    }

    #[test]
    fn a_refusal_that_names_nothing_rereads_what_can_be_read() {
        let outcome =
            after_refused_set(values(&[ENABLE, PASSWORD]), &Fault::new(cpe_codes::INTERNAL_ERROR, "Internal error"));
        assert_eq!(outcome, AfterRefusal::Reread { names: vec![ENABLE.into()] });
    }

    fn writing(names: &[&str]) -> Plan {
        Plan { set_values: values(names), ..Plan::default() }
    }

    #[test]
    fn a_plan_with_nothing_left_settles_once_refusals_are_left_out() {
        let refused = HashSet::from([ENABLE.to_owned()]);
        assert!(matches!(after_plan(writing(&[ENABLE]), &refused, 3, 256), AfterPlan::Settled));
        assert!(matches!(after_plan(Plan::default(), &HashSet::new(), 0, 256), AfterPlan::Settled));
    }

    #[test]
    fn a_plan_still_wanting_changes_after_the_last_round_does_not_converge() {
        let after = after_plan(writing(&[INTERVAL]), &HashSet::new(), MAX_ROUNDS, 256);
        assert_eq!(after, AfterPlan::NotConverging { wanted: format!("to set {INTERVAL} = \"1\"") });
        let after = after_plan(writing(&[INTERVAL]), &HashSet::new(), MAX_ROUNDS - 1, 256);
        assert!(matches!(after, AfterPlan::Send(_)), "the last round still goes out");
    }

    #[test]
    fn a_rounds_calls_go_listings_reads_deletes_adds_then_sets_with_credentials_alone() {
        let plan = Plan {
            get_names: vec!["Device.WiFi.SSID.".into()],
            get_values: vec!["Device.A".into(), "Device.B".into(), "Device.C".into()],
            add_objects: vec![NewInstance { table: "Device.NAT.PortMapping.".into(), alias: vec![] }],
            delete_objects: vec!["Device.NAT.PortMapping.9.".into()],
            set_values: values(&[ENABLE, PASSWORD, INTERVAL]),
        };
        let after = after_plan(plan, &HashSet::new(), 0, 2);
        assert_eq!(
            after,
            AfterPlan::Send(vec![
                Call::Refresh("Device.WiFi.SSID.".into()),
                Call::GetValues(vec!["Device.A".into(), "Device.B".into()]),
                Call::GetValues(vec!["Device.C".into()]),
                Call::Delete("Device.NAT.PortMapping.9.".into()),
                Call::Add(NewInstance { table: "Device.NAT.PortMapping.".into(), alias: vec![] }),
                Call::Set(values(&[PASSWORD])),
                Call::Set(values(&[ENABLE, INTERVAL])),
            ])
        );
    }
}
