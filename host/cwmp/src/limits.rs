//! Bounds on what one CPE message may make the ACS store.
//!
//! The body cap bounds the bytes of a message; these bound what its contents cost afterwards:
//! an Inform of 100,000 parameters fits in a few megabytes and, stored, is 100,000 rows per
//! device; a FaultString of 100 KB is kept with every failed task. Beyond a bound the message is
//! *clamped* rather than refused: a CPE whose Inform is refused can never inform again, while a
//! clamped one stays managed. What was clamped is reported, for the caller to log.

use crate::{CpeBody, CpeRequest, CpeResponse};

/// The bounds. The defaults sit far above what real firmware sends (the Informs of the agents in
/// `tests/data/cpe/captures/` carry 7 to 30 parameters; the longest values of the real device
/// exports are a few hundred bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MessageLimits {
    /// Parameters of one Inform: the forced ones, plus those with active notification whose
    /// value changed.
    pub inform_parameters: usize,
    /// Bytes of one parameter value (the longest TR-069 strings are `string(32768)`).
    pub value_bytes: usize,
    /// Bytes of a FaultString, of a CWMP fault or a transfer's.
    pub fault_string_bytes: usize,
}

impl Default for MessageLimits {
    fn default() -> Self {
        Self { inform_parameters: 1024, value_bytes: 32 * 1024, fault_string_bytes: 1024 }
    }
}

/// What [`clamp_cpe_message`] changed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Clamped {
    /// Inform parameters dropped past [`MessageLimits::inform_parameters`].
    pub dropped_parameters: usize,
    /// Values cut at [`MessageLimits::value_bytes`].
    pub truncated_values: usize,
    /// Fault strings cut at [`MessageLimits::fault_string_bytes`].
    pub truncated_faults: usize,
}

impl Clamped {
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// Clamps a decoded CPE message to `limits`, in place.
pub fn clamp_cpe_message(body: &mut CpeBody, limits: &MessageLimits) -> Clamped {
    let mut clamped = Clamped::default();
    let value = |text: &mut String, clamped: &mut Clamped| {
        if truncate_at_char(text, limits.value_bytes) {
            clamped.truncated_values += 1;
        }
    };
    let fault = |text: &mut String, clamped: &mut Clamped| {
        if truncate_at_char(text, limits.fault_string_bytes) {
            clamped.truncated_faults += 1;
        }
    };
    match body {
        CpeBody::Request(CpeRequest::Inform(inform)) => {
            if inform.parameters.len() > limits.inform_parameters {
                clamped.dropped_parameters = inform.parameters.len() - limits.inform_parameters;
                inform.parameters.truncate(limits.inform_parameters);
            }
            for parameter in &mut inform.parameters {
                value(&mut parameter.value, &mut clamped);
            }
        }
        CpeBody::Request(CpeRequest::TransferComplete(complete)) => fault(&mut complete.fault.string, &mut clamped),
        CpeBody::Request(CpeRequest::AutonomousTransferComplete(complete)) => {
            fault(&mut complete.fault.string, &mut clamped);
        }
        CpeBody::Response(CpeResponse::GetParameterValues { parameters }) => {
            for parameter in parameters {
                value(&mut parameter.value, &mut clamped);
            }
        }
        CpeBody::Fault(cwmp_fault) => {
            fault(&mut cwmp_fault.string, &mut clamped);
            for entry in &mut cwmp_fault.set_parameter_values_faults {
                fault(&mut entry.string, &mut clamped);
            }
        }
        _ => {}
    }
    clamped
}

/// Cuts `text` to at most `max` bytes, at a character boundary; whether it was cut.
fn truncate_at_char(text: &mut String, max: usize) -> bool {
    if text.len() <= max {
        return false;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fault::SetParameterValuesFault;
    use crate::{DeviceIdStruct, Fault, Inform, ParameterValue, TransferComplete, TransferFault, ValueType};

    fn inform(parameters: usize, value: &str) -> CpeBody {
        CpeBody::Request(CpeRequest::Inform(Inform {
            device_id: DeviceIdStruct::default(),
            events: vec![],
            max_envelopes: 1,
            current_time: String::new(),
            retry_count: 0,
            parameters: (0..parameters)
                .map(|i| ParameterValue {
                    name: format!("Device.X.{i}"),
                    value: value.to_owned(),
                    value_type: ValueType::default(),
                })
                .collect(),
        }))
    }

    #[test]
    fn an_inform_keeps_its_first_parameters_and_short_values() {
        let limits = MessageLimits { inform_parameters: 3, value_bytes: 4, fault_string_bytes: 8 };
        let mut body = inform(5, "é-long");
        let clamped = clamp_cpe_message(&mut body, &limits);
        assert_eq!(clamped, Clamped { dropped_parameters: 2, truncated_values: 3, truncated_faults: 0 });
        let CpeBody::Request(CpeRequest::Inform(inform)) = body else { unreachable!() };
        assert_eq!(inform.parameters.len(), 3);
        assert_eq!(inform.parameters[2].name, "Device.X.2");
        // "é" is two bytes: four bytes end inside nothing, "é-l" is exactly 4.
        assert_eq!(inform.parameters[0].value, "é-l");
    }

    #[test]
    fn a_message_within_the_limits_is_untouched() {
        let mut body = inform(10, "value");
        let before = body.clone();
        assert!(clamp_cpe_message(&mut body, &MessageLimits::default()).is_empty());
        assert_eq!(body, before);
    }

    #[test]
    fn fault_strings_are_cut_at_a_character_boundary() {
        let limits = MessageLimits { fault_string_bytes: 5, ..MessageLimits::default() };
        let mut body = CpeBody::Request(CpeRequest::TransferComplete(TransferComplete {
            command_key: "k".into(),
            fault: TransferFault { code: 9010, string: "ab€€€".into() },
            start_time: String::new(),
            complete_time: String::new(),
        }));
        assert_eq!(clamp_cpe_message(&mut body, &limits).truncated_faults, 1);
        let CpeBody::Request(CpeRequest::TransferComplete(complete)) = body else { unreachable!() };
        assert_eq!(complete.fault.string, "ab€");

        let mut fault = Fault::new(9003, "x".repeat(100));
        fault.set_parameter_values_faults.push(SetParameterValuesFault {
            parameter_name: "Device.A".into(),
            code: 9007,
            string: "y".repeat(100),
        });
        let mut body = CpeBody::Fault(fault);
        assert_eq!(clamp_cpe_message(&mut body, &limits).truncated_faults, 2);
    }
}
