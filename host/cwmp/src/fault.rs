//! CWMP faults (A.5): the SOAP `Fault` element with its `cwmp:Fault` detail.

/// One `SetParameterValuesFault` inside a 9003 fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetParameterValuesFault {
    pub parameter_name: String,
    pub code: u32,
    pub string: String,
}

/// A CWMP fault. Codes 8000–8899 come from the ACS, 9000–9899 from the CPE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    pub code: u32,
    pub string: String,
    pub set_parameter_values_faults: Vec<SetParameterValuesFault>,
}

impl Fault {
    pub fn new(code: u32, string: impl Into<String>) -> Self {
        Self { code, string: string.into(), set_parameter_values_faults: Vec::new() }
    }

    /// SOAP `faultcode`: `Client` for faults caused by the request, `Server` otherwise.
    pub fn soap_fault_code(&self) -> &'static str {
        if self.is_client_fault() { "Client" } else { "Server" }
    }

    fn is_client_fault(&self) -> bool {
        // A.5.1 Table 58/59: the "Client" column.
        matches!(
            self.code,
            8001 | 8003
                | 8005
                | 8006
                | 9001
                | 9003
                | 9004
                | 9005
                | 9006
                | 9007
                | 9008
                | 9011
                | 9012
                | 9013
                | 9014
                | 9015
                | 9016
                | 9017
                | 9018
                | 9019
                | 9020
                | 9021
                | 9022
                | 9023
                | 9024
                | 9025
                | 9026
                | 9027
                | 9028
                | 9029
                | 9030
                | 9031
                | 9032
        )
    }
}

/// Fault codes an ACS answers a CPE with (A.5.1, Table 58).
pub mod acs_codes {
    pub const METHOD_NOT_SUPPORTED: u32 = 8000;
    pub const REQUEST_DENIED: u32 = 8001;
    pub const INTERNAL_ERROR: u32 = 8002;
    pub const INVALID_ARGUMENTS: u32 = 8003;
    pub const RESOURCES_EXCEEDED: u32 = 8004;
    pub const RETRY_REQUEST: u32 = 8005;
    pub const VERSION_NOT_SUPPORTED: u32 = 8006;
}

/// Fault codes a CPE answers the ACS with (A.5.1, Table 59).
pub mod cpe_codes {
    pub const METHOD_NOT_SUPPORTED: u32 = 9000;
    pub const REQUEST_DENIED: u32 = 9001;
    pub const INTERNAL_ERROR: u32 = 9002;
    pub const INVALID_ARGUMENTS: u32 = 9003;
    pub const RESOURCES_EXCEEDED: u32 = 9004;
    pub const INVALID_PARAMETER_NAME: u32 = 9005;
    pub const INVALID_PARAMETER_TYPE: u32 = 9006;
    pub const INVALID_PARAMETER_VALUE: u32 = 9007;
    pub const NON_WRITABLE_PARAMETER: u32 = 9008;
    pub const NOTIFICATION_REQUEST_REJECTED: u32 = 9009;
    pub const DOWNLOAD_FAILURE: u32 = 9010;
    pub const UPLOAD_FAILURE: u32 = 9011;
    pub const UNSUPPORTED_PROTOCOL: u32 = 9013;
    pub const FILE_TRANSFER_AUTH_FAILURE: u32 = 9012;
}
