//! Where what a CPE answers becomes stored state.
//!
//! The task driver (`cwmp::driver`) and the provisioning engine send different calls for
//! different reasons, but a device's answer means the same to the store whoever asked: values
//! read are stored, values the device accepted are stored with their secrets sealed and its
//! connection-request credentials kept, a listing replaces a subtree, a deleted object goes,
//! a factory reset forgets what Roost configured. Both decide what an answer changes as
//! [`StoreWrite`]s, with the plain functions here ([`added_instance`], [`unanswered_code`] …),
//! and both hand them to [`apply`], the one place that writes them.
//!
//! [`refresh`] reads a subtree (names, then values in batches, then what is gone) for
//! discovery, tasks and provisioning alike, and returns its writes the same way.

pub mod refresh;

use anyhow::Result;
use roost_cwmp::session::Unanswered;
use roost_cwmp::{CpeResponse, DataModel, Fault, ParameterInfo, ParameterValue, is_secret_parameter};
use serde_json::{Value, json};

use crate::fault_code::FaultCode;
use crate::secrets::Secrets;
use crate::store::DevicePk;
use crate::store::{Store, devices, parameters};

/// What the CPE's last message meant for the work in progress.
#[derive(Debug)]
pub enum Answer {
    /// An empty POST with nothing outstanding, or a stray message: just continue.
    Nothing,
    Response(CpeResponse),
    Fault(Fault),
    Unanswered(Unanswered),
}

/// A change to a device's stored state that a CPE's answer makes.
#[derive(Debug, Clone, PartialEq)]
pub enum StoreWrite {
    /// A GetParameterNames listing, stored as read at `at`.
    Listed { names: Vec<ParameterInfo>, at: i64 },
    /// Values the device reported (GetParameterValues).
    Read { values: Vec<ParameterValue>, at: i64 },
    /// Values the device accepted (SetParameterValues): stored, the secrets among them kept
    /// sealed (the device reads them back empty), and the connection-request credentials among
    /// them kept to wake it. `model` is the device's data model, which names those credentials;
    /// `None` when its Inform showed neither.
    Accepted { values: Vec<ParameterValue>, model: Option<DataModel>, at: i64 },
    /// A refresh of `prefix` begun at `since` is complete: what it did not list is gone.
    Stale { prefix: String, since: i64 },
    /// The device deleted `object` (DeleteObject).
    Deleted { object: String },
    /// The device was reset to its factory state: what Roost configured is gone, and some
    /// agents come back with `1 BOOT` only.
    Reset,
}

/// Writes what an answer changed: the one executor of [`StoreWrite`]s.
pub async fn apply(store: &Store, secrets: &Secrets, device_pk: DevicePk, writes: Vec<StoreWrite>) -> Result<()> {
    for write in writes {
        match write {
            StoreWrite::Listed { names, at } => parameters::store_listing(store, device_pk, &names, at).await?,
            StoreWrite::Read { values, at } => parameters::store_read(store, device_pk, &values, at).await?,
            StoreWrite::Accepted { values, model, at } => {
                let sealed = values
                    .iter()
                    .filter(|p| is_secret_parameter(&p.name))
                    .map(|p| (p.name.clone(), secrets.seal(p.value.as_bytes())))
                    .collect();
                parameters::store_set(store, device_pk, &values, sealed, at).await?;
                if let Some(credentials) = model.and_then(|model| connection_request_credentials(model, &values)) {
                    keep_connection_request_credentials(store, secrets, device_pk, credentials).await?;
                }
            }
            StoreWrite::Stale { prefix, since } => parameters::drop_stale(store, device_pk, &prefix, since).await?,
            StoreWrite::Deleted { object } => parameters::drop_subtree(store, device_pk, &object).await?,
            StoreWrite::Reset => devices::mark_reset(store, device_pk).await?,
        }
    }
    Ok(())
}

/// The connection-request credentials a SetParameterValues wrote, each `None` when it left
/// that one alone; `None` when it wrote neither.
#[derive(Debug, PartialEq, Eq)]
pub struct WrittenCredentials {
    pub username: Option<String>,
    pub password: Option<String>,
}

/// `ManagementServer.ConnectionRequestUsername`/`Password` among `written`.
pub fn connection_request_credentials(model: DataModel, written: &[ParameterValue]) -> Option<WrittenCredentials> {
    let find = |name: &str| {
        written
            .iter()
            .find(|p| model.relative(&p.name).and_then(|rest| rest.strip_prefix("ManagementServer.")) == Some(name))
            .map(|p| p.value.clone())
    };
    let credentials =
        WrittenCredentials { username: find("ConnectionRequestUsername"), password: find("ConnectionRequestPassword") };
    (credentials.username.is_some() || credentials.password.is_some()).then_some(credentials)
}

/// Whether `path` is `ManagementServer.ConnectionRequestUsername`/`Password` in either model.
pub fn is_connection_request_credential(path: &str) -> bool {
    DataModel::of_path(path).and_then(|model| model.relative(path)).is_some_and(|rest| {
        matches!(rest, "ManagementServer.ConnectionRequestUsername" | "ManagementServer.ConnectionRequestPassword")
    })
}

/// Keeps the connection-request credentials just written to the device, so that Roost can
/// wake it; the half not written stays as the device has it.
async fn keep_connection_request_credentials(
    store: &Store,
    secrets: &Secrets,
    device_pk: DevicePk,
    written: WrittenCredentials,
) -> Result<()> {
    let Some(device) = devices::by_pk(store, device_pk).await? else { return Ok(()) };
    let username = match written.username {
        Some(username) => username,
        None => {
            let path =
                format!("{}ManagementServer.ConnectionRequestUsername", device.model().map_or("", DataModel::root));
            let stored = parameters::stored_values(store, device_pk, &[path.as_str()]).await?;
            stored.get(&path).and_then(|(v, _)| v.clone()).unwrap_or(device.connection_request_username)
        }
    };
    let sealed = match written.password {
        Some(password) => secrets.seal(password.as_bytes()),
        None => device.connection_request_password.unwrap_or_else(|| secrets.seal(b"")),
    };
    devices::set_connection_request_credentials(store, device_pk, &username, sealed).await
}

/// The instance an AddObject answer created, or why it created none: a Status above 1 or an
/// InstanceNumber of 0 is no object, whatever else the answer says.
pub fn added_instance(instance_number: u32, status: u32) -> Result<u32, String> {
    if status > 1 || instance_number == 0 {
        return Err(format!("answered InstanceNumber {instance_number} with Status {status}: no object was created"));
    }
    Ok(instance_number)
}

/// The device fault code of a request the CPE did not answer.
pub fn unanswered_code(reason: &Unanswered) -> FaultCode {
    match reason {
        Unanswered::EmptyPost => FaultCode::NoResponse,
        Unanswered::WrongResponse { .. } => FaultCode::WrongResponse,
    }
}

pub fn describe_unanswered(reason: &Unanswered) -> String {
    match reason {
        Unanswered::EmptyPost => {
            "The CPE sent an empty POST instead of answering (it could not run the request)".into()
        }
        Unanswered::WrongResponse { got } => format!("The CPE answered with {got}Response"),
    }
}

/// The per-parameter faults of a refused SetParameterValues, as a fault's detail.
pub fn spv_fault_detail(fault: &Fault) -> Option<Value> {
    if fault.set_parameter_values_faults.is_empty() {
        return None;
    }
    let entries: Vec<Value> = fault
        .set_parameter_values_faults
        .iter()
        .map(|f| json!({ "parameterName": f.parameter_name, "code": f.code, "message": f.string }))
        .collect();
    Some(json!({ "setParameterValuesFaults": entries }))
}

#[cfg(test)]
mod tests {
    use roost_cwmp::ValueType;

    use roost_cwmp::fault::cpe_codes;

    use super::*;

    fn value(name: &str, value: &str) -> ParameterValue {
        ParameterValue { name: name.into(), value: value.into(), value_type: ValueType::String }
    }

    #[test]
    fn connection_request_credentials_are_found_under_the_devices_own_root() {
        let written = vec![
            value("InternetGatewayDevice.ManagementServer.PeriodicInformInterval", "300"),
            value("InternetGatewayDevice.ManagementServer.ConnectionRequestPassword", "s3cret"),
        ];
        assert_eq!(
            connection_request_credentials(DataModel::Tr098, &written),
            Some(WrittenCredentials { username: None, password: Some("s3cret".into()) })
        );
        // Written under the other model's root, they are not this device's credentials.
        assert_eq!(connection_request_credentials(DataModel::Tr181, &written), None);
        let both = vec![
            value("Device.ManagementServer.ConnectionRequestUsername", "acs"),
            value("Device.ManagementServer.ConnectionRequestPassword", ""),
        ];
        assert_eq!(
            connection_request_credentials(DataModel::Tr181, &both),
            Some(WrittenCredentials { username: Some("acs".into()), password: Some(String::new()) })
        );
        assert_eq!(connection_request_credentials(DataModel::Tr181, &[value("Device.X_Username", "a")]), None);
    }

    #[test]
    fn connection_request_credentials_are_recognised_in_both_models() {
        assert!(is_connection_request_credential("InternetGatewayDevice.ManagementServer.ConnectionRequestPassword"));
        assert!(is_connection_request_credential("Device.ManagementServer.ConnectionRequestUsername"));
        assert!(!is_connection_request_credential("InternetGatewayDevice.ManagementServer.PeriodicInformEnable"));
        assert!(!is_connection_request_credential("Device.ManagementServer.Password"));
        assert!(!is_connection_request_credential("X.ManagementServer.ConnectionRequestUsername"));
    }

    #[test]
    fn an_add_object_answer_without_an_instance_created_nothing() {
        assert_eq!(added_instance(3, 0), Ok(3));
        assert_eq!(added_instance(3, 1), Ok(3), "Status 1: created, applied after a reboot");
        assert!(added_instance(0, 0).is_err(), "instance 0 does not exist");
        assert_eq!(added_instance(4, 2), Err("answered InstanceNumber 4 with Status 2: no object was created".into()));
    }

    #[test]
    fn unanswered_requests_have_their_codes() {
        assert_eq!(unanswered_code(&Unanswered::EmptyPost), FaultCode::NoResponse);
        assert_eq!(unanswered_code(&Unanswered::WrongResponse { got: "Reboot" }), FaultCode::WrongResponse);
        assert_eq!(
            describe_unanswered(&Unanswered::WrongResponse { got: "Reboot" }),
            "The CPE answered with RebootResponse"
        );
    }

    #[test]
    fn refused_parameters_become_the_faults_detail() {
        assert_eq!(spv_fault_detail(&Fault::new(cpe_codes::INTERNAL_ERROR, "Internal error")), None);
        let mut fault = Fault::new(cpe_codes::INVALID_ARGUMENTS, "Invalid arguments");
        fault.set_parameter_values_faults = vec![roost_cwmp::fault::SetParameterValuesFault {
            parameter_name: "Device.X".into(),
            code: cpe_codes::NON_WRITABLE_PARAMETER,
            string: "read-only".into(),
        }];
        assert_eq!(
            spv_fault_detail(&fault),
            Some(
                json!({ "setParameterValuesFaults": [{ "parameterName": "Device.X", "code": 9008, "message": "read-only" }] })
            )
        );
    }
}
