//! The CWMP messages of TR-069 Amendment 6, as plain data.
//!
//! Names follow the specification (Annex A) so a reader can look each field up there. Every
//! value the CPE controls stays a `String` unless the protocol gives it a fixed meaning: real
//! firmware sends dates without time zones, counts that do not match, and odd type names, and
//! the ACS must keep what it received rather than fail on it.

use crate::fault::Fault;
use crate::value::ValueType;

/// SOAP header fields CWMP defines (A.4.1).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Header {
    /// `cwmp:ID`: echoed verbatim in the answer to a request.
    pub id: Option<String>,
    /// `cwmp:HoldRequests`: from the ACS, asks the CPE to send no requests of its own.
    pub hold_requests: Option<bool>,
    /// `cwmp:SessionTimeout` (CWMP 1.3+): seconds the CPE waits for the ACS.
    pub session_timeout: Option<u32>,
    /// `cwmp:SupportedCWMPVersions` (CWMP 1.4): comma-separated, e.g. `1.0,1.1,1.2,1.3,1.4`.
    pub supported_cwmp_versions: Option<String>,
    /// `cwmp:UseCWMPVersion` (CWMP 1.4): the ACS's choice, sent with mustUnderstand=1.
    pub use_cwmp_version: Option<String>,
    /// `cwmp:NoMoreRequests` (deprecated in 1.1, still sent by old firmware).
    pub no_more_requests: Option<bool>,
}

/// `DeviceIdStruct` from an Inform.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceIdStruct {
    pub manufacturer: String,
    pub oui: String,
    pub product_class: String,
    pub serial_number: String,
}

/// One `EventStruct`: an event code such as `0 BOOTSTRAP` or `M Reboot` and its CommandKey.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventStruct {
    pub code: String,
    pub command_key: String,
}

/// One `ParameterValueStruct`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParameterValue {
    pub name: String,
    pub value: String,
    /// The `xsi:type` the peer sent (or that we send); `ValueType::String` when absent.
    pub value_type: ValueType,
}

/// One `ParameterInfoStruct` from GetParameterNamesResponse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParameterInfo {
    /// A parameter, or an object when it ends with `.`.
    pub name: String,
    pub writable: bool,
}

/// One `ParameterAttributeStruct` from GetParameterAttributesResponse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParameterAttribute {
    pub name: String,
    /// 0 off, 1 passive, 2 active (3–6 in later amendments).
    pub notification: u32,
    pub access_list: Vec<String>,
}

/// One `SetParameterAttributesStruct`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetParameterAttribute {
    pub name: String,
    pub notification_change: bool,
    pub notification: u32,
    pub access_list_change: bool,
    pub access_list: Vec<String>,
}

/// `FaultStruct` inside TransferComplete: code 0 means success.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TransferFault {
    pub code: u32,
    pub string: String,
}

/// `Inform` (A.3.3.1).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Inform {
    pub device_id: DeviceIdStruct,
    pub events: Vec<EventStruct>,
    pub max_envelopes: u32,
    /// As sent: often without a time zone, sometimes the epoch on a CPE with no NTP yet.
    pub current_time: String,
    pub retry_count: u32,
    pub parameters: Vec<ParameterValue>,
}

/// `TransferComplete` (A.3.3.2).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TransferComplete {
    pub command_key: String,
    pub fault: TransferFault,
    pub start_time: String,
    pub complete_time: String,
}

/// `AutonomousTransferComplete` (A.3.3.3): a transfer the ACS did not ask for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AutonomousTransferComplete {
    pub announce_url: String,
    pub transfer_url: String,
    pub is_download: bool,
    pub file_type: String,
    pub file_size: u64,
    pub target_file_name: String,
    pub fault: TransferFault,
    pub start_time: String,
    pub complete_time: String,
}

/// `RequestDownload` (A.4.2.1): the CPE asks the ACS to start a Download.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestDownload {
    pub file_type: String,
    pub file_type_args: Vec<(String, String)>,
}

/// Requests a CPE sends to the ACS.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CpeRequest {
    Inform(Inform),
    TransferComplete(TransferComplete),
    AutonomousTransferComplete(AutonomousTransferComplete),
    GetRpcMethods,
    RequestDownload(RequestDownload),
    /// A well-formed request this ACS does not implement (e.g. `Kicked`): answered with fault 8000.
    Unsupported {
        method: String,
    },
}

impl CpeRequest {
    pub fn method_name(&self) -> &str {
        match self {
            Self::Inform(_) => "Inform",
            Self::TransferComplete(_) => "TransferComplete",
            Self::AutonomousTransferComplete(_) => "AutonomousTransferComplete",
            Self::GetRpcMethods => "GetRPCMethods",
            Self::RequestDownload(_) => "RequestDownload",
            Self::Unsupported { method } => method,
        }
    }
}

/// Responses a CPE sends to the ACS's requests.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CpeResponse {
    GetRpcMethods {
        methods: Vec<String>,
    },
    GetParameterNames {
        parameters: Vec<ParameterInfo>,
    },
    GetParameterValues {
        parameters: Vec<ParameterValue>,
    },
    /// Status 0: applied; 1: applied but takes effect after a reboot the CPE will do itself.
    SetParameterValues {
        status: u32,
    },
    GetParameterAttributes {
        parameters: Vec<ParameterAttribute>,
    },
    SetParameterAttributes,
    AddObject {
        instance_number: u32,
        status: u32,
    },
    DeleteObject {
        status: u32,
    },
    Reboot,
    FactoryReset,
    /// Status 0: done (times are meaningful); 1: not finished yet, TransferComplete follows.
    Download {
        status: u32,
        start_time: String,
        complete_time: String,
    },
    Upload {
        status: u32,
        start_time: String,
        complete_time: String,
    },
    ScheduleInform,
}

impl CpeResponse {
    /// The method this answers, as the ACS request named it.
    pub fn method_name(&self) -> &'static str {
        match self {
            Self::GetRpcMethods { .. } => "GetRPCMethods",
            Self::GetParameterNames { .. } => "GetParameterNames",
            Self::GetParameterValues { .. } => "GetParameterValues",
            Self::SetParameterValues { .. } => "SetParameterValues",
            Self::GetParameterAttributes { .. } => "GetParameterAttributes",
            Self::SetParameterAttributes => "SetParameterAttributes",
            Self::AddObject { .. } => "AddObject",
            Self::DeleteObject { .. } => "DeleteObject",
            Self::Reboot => "Reboot",
            Self::FactoryReset => "FactoryReset",
            Self::Download { .. } => "Download",
            Self::Upload { .. } => "Upload",
            Self::ScheduleInform => "ScheduleInform",
        }
    }
}

/// `Download` arguments (A.3.2.8).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Download {
    pub command_key: String,
    pub file_type: String,
    pub url: String,
    pub username: String,
    pub password: String,
    pub file_size: u64,
    pub target_file_name: String,
    pub delay_seconds: u32,
    pub success_url: String,
    pub failure_url: String,
}

/// `Upload` arguments (A.4.1.5).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Upload {
    pub command_key: String,
    pub file_type: String,
    pub url: String,
    pub username: String,
    pub password: String,
    pub delay_seconds: u32,
}

/// Requests the ACS sends to a CPE.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum AcsRequest {
    GetRpcMethods,
    GetParameterNames { parameter_path: String, next_level: bool },
    GetParameterValues { names: Vec<String> },
    SetParameterValues { values: Vec<ParameterValue>, parameter_key: String },
    GetParameterAttributes { names: Vec<String> },
    SetParameterAttributes { attributes: Vec<SetParameterAttribute> },
    AddObject { object_name: String, parameter_key: String },
    DeleteObject { object_name: String, parameter_key: String },
    Reboot { command_key: String },
    FactoryReset,
    Download(Download),
    Upload(Upload),
    ScheduleInform { delay_seconds: u32, command_key: String },
}

impl AcsRequest {
    pub fn method_name(&self) -> &'static str {
        match self {
            Self::GetRpcMethods => "GetRPCMethods",
            Self::GetParameterNames { .. } => "GetParameterNames",
            Self::GetParameterValues { .. } => "GetParameterValues",
            Self::SetParameterValues { .. } => "SetParameterValues",
            Self::GetParameterAttributes { .. } => "GetParameterAttributes",
            Self::SetParameterAttributes { .. } => "SetParameterAttributes",
            Self::AddObject { .. } => "AddObject",
            Self::DeleteObject { .. } => "DeleteObject",
            Self::Reboot { .. } => "Reboot",
            Self::FactoryReset => "FactoryReset",
            Self::Download(_) => "Download",
            Self::Upload(_) => "Upload",
            Self::ScheduleInform { .. } => "ScheduleInform",
        }
    }
}

/// Responses the ACS sends to a CPE's requests.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum AcsResponse {
    /// MaxEnvelopes is always 1: no ACS or CPE in the field sends more than one per POST.
    Inform,
    TransferComplete,
    AutonomousTransferComplete,
    GetRpcMethods {
        methods: Vec<String>,
    },
    RequestDownload,
}

/// What a CPE can POST: a request, a response to the ACS, or a SOAP fault answering the ACS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CpeBody {
    Request(CpeRequest),
    Response(CpeResponse),
    Fault(Fault),
}

/// What the ACS can send back in an HTTP response body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AcsBody {
    Request(AcsRequest),
    Response(AcsResponse),
    Fault(Fault),
}

/// One decoded SOAP envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope<B> {
    /// The version the namespace (and, for 1.3/1.4, the header) shows.
    pub version: crate::CwmpVersion,
    pub header: Header,
    pub body: B,
}
