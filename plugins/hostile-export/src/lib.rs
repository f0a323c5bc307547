//! An adapter whose `radio` export has the wrong types (see `wit/world.wit`).

mod adapter {
    wit_bindgen::generate!({ world: "adapter", path: "../../plugin-sdk/wit/roost-plugin@0.1.1" });
}

mod wrong {
    wit_bindgen::generate!({ world: "wrong-radio", path: "wit" });
}

use adapter::exports::roost::plugin::intents;
use adapter::roost::plugin::intent_types::{
    Diagnostic, DiagnosticKind, DiagnosticReport, HealthReport, ManagementSettings, PppoeSettings, WifiNetwork,
    WifiSettings,
};
use adapter::roost::plugin::types::{DeviceFacts, Error, ErrorKind};

struct WrongRadio;

fn unsupported<T>() -> Result<T, Error> {
    Err(Error { kind: ErrorKind::Unsupported, message: "never called: the host refuses the component".into() })
}

impl adapter::Guest for WrongRadio {
    fn identify(_facts: DeviceFacts) -> Option<adapter::Identification> {
        None
    }
}

impl intents::Guest for WrongRadio {
    fn wifi(_max_age_ms: u64) -> Result<Vec<WifiNetwork>, Error> {
        unsupported()
    }
    fn configure_wifi(_settings: WifiSettings) -> Result<(), Error> {
        unsupported()
    }
    fn configure_pppoe(_settings: PppoeSettings) -> Result<(), Error> {
        unsupported()
    }
    fn configure_management(_settings: ManagementSettings) -> Result<(), Error> {
        unsupported()
    }
    fn health(_max_age_ms: u64) -> Result<HealthReport, Error> {
        unsupported()
    }
    fn start_diagnostic(_request: Diagnostic) -> Result<(), Error> {
        unsupported()
    }
    fn diagnostic_result(_kind: DiagnosticKind, _max_age_ms: u64) -> Result<Option<DiagnosticReport>, Error> {
        unsupported()
    }
    fn firmware_version() -> Option<String> {
        None
    }
}

impl wrong::exports::roost::plugin::radio::Guest for WrongRadio {
    fn cellular(max_age_ms: u32) -> u32 {
        max_age_ms
    }
}

adapter::export!(WrongRadio with_types_in adapter);
wrong::export!(WrongRadio with_types_in wrong);
