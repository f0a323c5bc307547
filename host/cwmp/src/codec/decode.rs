//! Mapping the element tree to CWMP messages.
//!
//! Field rules, applied everywhere: a missing optional field takes its default (empty string,
//! 0, false); numbers and booleans are trimmed before parsing and an empty one counts as
//! missing; names, event codes, URLs, file types and times are trimmed (whitespace there is
//! never data); parameter values, CommandKeys, ParameterKeys, IDs, credentials, fault strings
//! and DeviceId fields are kept exactly as sent, because they are echoed, compared or shown.
//! Array children are taken whatever their element name and however many `arrayType` claims.
//! Method names are matched ignoring ASCII case (no two CWMP methods differ only by case);
//! field names exactly, since SOAP's `faultcode` and CWMP's `FaultCode` do.

use std::str::FromStr;

use super::DecodeError;
use super::xml::{Document, Id};
use crate::CwmpVersion;
use crate::fault::{Fault, SetParameterValuesFault};
use crate::rpc::{
    AcsBody, AcsRequest, AcsResponse, AutonomousTransferComplete, CpeBody, CpeRequest, CpeResponse, DeviceIdStruct,
    Download, Envelope, EventStruct, Header, Inform, ParameterAttribute, ParameterInfo, ParameterValue,
    RequestDownload, SetParameterAttribute, TransferComplete, TransferFault, Upload,
};
use crate::value::ValueType;

/// Decodes what a CPE POSTs to the ACS: a request, a response to the ACS's request, or a fault.
///
/// A request method the ACS does not implement decodes to [`CpeRequest::Unsupported`] (the
/// ACS answers it with fault 8000); an unknown *response* is an error, since the ACS never
/// asked for it.
pub fn decode_cpe_message(bytes: &[u8]) -> Result<Envelope<CpeBody>, DecodeError> {
    let (mut doc, header, method) = open_envelope(bytes)?;
    let body = cpe_body(&mut doc, method)?;
    let version = detect_version(&doc, &header);
    Ok(Envelope { version, header, body })
}

/// Decodes what an ACS answers a CPE with (the simulator's side). Any method outside the
/// set in [`AcsRequest`]/[`AcsResponse`] is [`DecodeError::UnknownMethod`], whose name the
/// CPE can answer with fault 9000.
pub fn decode_acs_message(bytes: &[u8]) -> Result<Envelope<AcsBody>, DecodeError> {
    let (mut doc, header, method) = open_envelope(bytes)?;
    let body = acs_body(&mut doc, method)?;
    let version = detect_version(&doc, &header);
    Ok(Envelope { version, header, body })
}

fn open_envelope(bytes: &[u8]) -> Result<(Document, Header, Id), DecodeError> {
    let mut doc = Document::parse(bytes)?;
    let envelope = doc.root();
    if !doc.is(envelope, "Envelope") {
        return Err(DecodeError::NoEnvelope { found: doc.name(envelope).to_owned() });
    }
    let header = match doc.child(envelope, "Header") {
        Some(element) => header(&mut doc, element)?,
        None => Header::default(),
    };
    let body = doc.child(envelope, "Body").ok_or(DecodeError::NoBody)?;
    let method = doc.first_child(body).ok_or(DecodeError::EmptyBody)?;
    Ok((doc, header, method))
}

/// The namespace gives 1.0, 1.1 or "1.2 or later"; the headers only 1.3+ peers send narrow
/// the latter down. Without any cwmp namespace the oldest version is the safest guess.
fn detect_version(doc: &Document, header: &Header) -> CwmpVersion {
    let mut version = doc.namespace_version.unwrap_or_default();
    if version >= CwmpVersion::V1_2 {
        if header.session_timeout.is_some() {
            version = version.max(CwmpVersion::V1_3);
        }
        if header.supported_cwmp_versions.is_some() {
            version = version.max(CwmpVersion::V1_4);
        }
        // The ACS's explicit choice after 1.4 negotiation, which may be 1.2 or 1.3.
        if let Some(chosen) = header.use_cwmp_version.as_deref().and_then(CwmpVersion::parse) {
            version = version.max(chosen);
        }
    }
    version
}

fn header(doc: &mut Document, element: Id) -> Result<Header, DecodeError> {
    let mut header = Header::default();
    let mut fields = doc.children(element);
    while let Some(field) = fields.next_in(doc) {
        let name = doc.name(field);
        if name == "ID" {
            header.id = Some(doc.take_text(field));
        } else if name == "HoldRequests" {
            header.hold_requests = Some(parse_bool(doc.text(field), "HoldRequests")?);
        } else if name == "SessionTimeout" {
            header.session_timeout = Some(parse_number(doc.text(field), "SessionTimeout")?);
        } else if name == "SupportedCWMPVersions" {
            header.supported_cwmp_versions = Some(take_token(doc, field));
        } else if name == "UseCWMPVersion" {
            header.use_cwmp_version = Some(take_token(doc, field));
        } else if name == "NoMoreRequests" {
            header.no_more_requests = Some(parse_bool(doc.text(field), "NoMoreRequests")?);
        }
    }
    Ok(header)
}

fn cpe_body(doc: &mut Document, m: Id) -> Result<CpeBody, DecodeError> {
    let method = doc.name(m).to_ascii_lowercase();
    Ok(match method.as_str() {
        "fault" => CpeBody::Fault(fault(doc, m)?),
        "inform" => CpeBody::Request(CpeRequest::Inform(inform(doc, m)?)),
        "transfercomplete" => CpeBody::Request(CpeRequest::TransferComplete(TransferComplete {
            command_key: text(doc, m, "CommandKey"),
            fault: transfer_fault(doc, m)?,
            start_time: token(doc, m, "StartTime"),
            complete_time: token(doc, m, "CompleteTime"),
        })),
        "autonomoustransfercomplete" => {
            CpeBody::Request(CpeRequest::AutonomousTransferComplete(AutonomousTransferComplete {
                announce_url: token(doc, m, "AnnounceURL"),
                transfer_url: token(doc, m, "TransferURL"),
                is_download: boolean(doc, m, "IsDownload")?,
                file_type: token(doc, m, "FileType"),
                file_size: number(doc, m, "FileSize")?,
                target_file_name: text(doc, m, "TargetFileName"),
                fault: transfer_fault(doc, m)?,
                start_time: token(doc, m, "StartTime"),
                complete_time: token(doc, m, "CompleteTime"),
            }))
        }
        "getrpcmethods" => CpeBody::Request(CpeRequest::GetRpcMethods),
        "requestdownload" => CpeBody::Request(CpeRequest::RequestDownload(RequestDownload {
            file_type: token(doc, m, "FileType"),
            file_type_args: file_type_args(doc, m),
        })),
        "getrpcmethodsresponse" => {
            CpeBody::Response(CpeResponse::GetRpcMethods { methods: string_list(doc, m, "MethodList") })
        }
        "getparameternamesresponse" => {
            CpeBody::Response(CpeResponse::GetParameterNames { parameters: parameter_infos(doc, m)? })
        }
        "getparametervaluesresponse" => CpeBody::Response(CpeResponse::GetParameterValues {
            parameters: parameter_values(doc, m, "ParameterList")?,
        }),
        "setparametervaluesresponse" => {
            CpeBody::Response(CpeResponse::SetParameterValues { status: number(doc, m, "Status")? })
        }
        "getparameterattributesresponse" => {
            CpeBody::Response(CpeResponse::GetParameterAttributes { parameters: parameter_attributes(doc, m)? })
        }
        "setparameterattributesresponse" => CpeBody::Response(CpeResponse::SetParameterAttributes),
        "addobjectresponse" => CpeBody::Response(CpeResponse::AddObject {
            instance_number: number(doc, m, "InstanceNumber")?,
            status: number(doc, m, "Status")?,
        }),
        "deleteobjectresponse" => CpeBody::Response(CpeResponse::DeleteObject { status: number(doc, m, "Status")? }),
        "rebootresponse" => CpeBody::Response(CpeResponse::Reboot),
        "factoryresetresponse" => CpeBody::Response(CpeResponse::FactoryReset),
        "downloadresponse" => CpeBody::Response(CpeResponse::Download {
            status: number(doc, m, "Status")?,
            start_time: token(doc, m, "StartTime"),
            complete_time: token(doc, m, "CompleteTime"),
        }),
        "uploadresponse" => CpeBody::Response(CpeResponse::Upload {
            status: number(doc, m, "Status")?,
            start_time: token(doc, m, "StartTime"),
            complete_time: token(doc, m, "CompleteTime"),
        }),
        "scheduleinformresponse" => CpeBody::Response(CpeResponse::ScheduleInform),
        _ if method.ends_with("response") => {
            return Err(DecodeError::UnknownMethod { method: doc.name(m).to_owned() });
        }
        // quick-xml takes any run of bytes for a name; what the ACS may echo back (the fault
        // for an unsupported method names it) must be one.
        _ => CpeBody::Request(CpeRequest::Unsupported { method: super::encode::element_name(doc.name(m)) }),
    })
}

fn acs_body(doc: &mut Document, m: Id) -> Result<AcsBody, DecodeError> {
    let method = doc.name(m).to_ascii_lowercase();
    Ok(match method.as_str() {
        "fault" => AcsBody::Fault(fault(doc, m)?),
        "getrpcmethods" => AcsBody::Request(AcsRequest::GetRpcMethods),
        "getparameternames" => AcsBody::Request(AcsRequest::GetParameterNames {
            parameter_path: token(doc, m, "ParameterPath"),
            next_level: boolean(doc, m, "NextLevel")?,
        }),
        "getparametervalues" => {
            AcsBody::Request(AcsRequest::GetParameterValues { names: string_list(doc, m, "ParameterNames") })
        }
        "setparametervalues" => AcsBody::Request(AcsRequest::SetParameterValues {
            values: parameter_values(doc, m, "ParameterList")?,
            parameter_key: text(doc, m, "ParameterKey"),
        }),
        "getparameterattributes" => {
            AcsBody::Request(AcsRequest::GetParameterAttributes { names: string_list(doc, m, "ParameterNames") })
        }
        "setparameterattributes" => {
            AcsBody::Request(AcsRequest::SetParameterAttributes { attributes: set_parameter_attributes(doc, m)? })
        }
        "addobject" => AcsBody::Request(AcsRequest::AddObject {
            object_name: token(doc, m, "ObjectName"),
            parameter_key: text(doc, m, "ParameterKey"),
        }),
        "deleteobject" => AcsBody::Request(AcsRequest::DeleteObject {
            object_name: token(doc, m, "ObjectName"),
            parameter_key: text(doc, m, "ParameterKey"),
        }),
        "reboot" => AcsBody::Request(AcsRequest::Reboot { command_key: text(doc, m, "CommandKey") }),
        "factoryreset" => AcsBody::Request(AcsRequest::FactoryReset),
        "download" => AcsBody::Request(AcsRequest::Download(Download {
            command_key: text(doc, m, "CommandKey"),
            file_type: token(doc, m, "FileType"),
            url: token(doc, m, "URL"),
            username: text(doc, m, "Username"),
            password: text(doc, m, "Password"),
            file_size: number(doc, m, "FileSize")?,
            target_file_name: text(doc, m, "TargetFileName"),
            delay_seconds: number(doc, m, "DelaySeconds")?,
            success_url: token(doc, m, "SuccessURL"),
            failure_url: token(doc, m, "FailureURL"),
        })),
        "upload" => AcsBody::Request(AcsRequest::Upload(Upload {
            command_key: text(doc, m, "CommandKey"),
            file_type: token(doc, m, "FileType"),
            url: token(doc, m, "URL"),
            username: text(doc, m, "Username"),
            password: text(doc, m, "Password"),
            delay_seconds: number(doc, m, "DelaySeconds")?,
        })),
        "scheduleinform" => AcsBody::Request(AcsRequest::ScheduleInform {
            delay_seconds: number(doc, m, "DelaySeconds")?,
            command_key: text(doc, m, "CommandKey"),
        }),
        "informresponse" => AcsBody::Response(AcsResponse::Inform),
        "transfercompleteresponse" => AcsBody::Response(AcsResponse::TransferComplete),
        "autonomoustransfercompleteresponse" => AcsBody::Response(AcsResponse::AutonomousTransferComplete),
        "getrpcmethodsresponse" => {
            AcsBody::Response(AcsResponse::GetRpcMethods { methods: string_list(doc, m, "MethodList") })
        }
        "requestdownloadresponse" => AcsBody::Response(AcsResponse::RequestDownload),
        _ => {
            return Err(DecodeError::UnknownMethod { method: doc.name(m).to_owned() });
        }
    })
}

fn inform(doc: &mut Document, m: Id) -> Result<Inform, DecodeError> {
    // Without DeviceId the ACS cannot tell which device is talking: nothing to default to.
    let device = doc.child(m, "DeviceId").ok_or(DecodeError::MissingField { within: "Inform", field: "DeviceId" })?;
    let device_id = DeviceIdStruct {
        manufacturer: text(doc, device, "Manufacturer"),
        oui: text(doc, device, "OUI"),
        product_class: text(doc, device, "ProductClass"),
        serial_number: text(doc, device, "SerialNumber"),
    };
    let mut events = Vec::new();
    if let Some(list) = doc.child(m, "Event") {
        let mut items = doc.children(list);
        while let Some(item) = items.next_in(doc) {
            events
                .push(EventStruct { code: token(doc, item, "EventCode"), command_key: text(doc, item, "CommandKey") });
        }
    }
    Ok(Inform {
        device_id,
        events,
        max_envelopes: number(doc, m, "MaxEnvelopes")?,
        current_time: token(doc, m, "CurrentTime"),
        retry_count: number(doc, m, "RetryCount")?,
        parameters: parameter_values(doc, m, "ParameterList")?,
    })
}

fn transfer_fault(doc: &mut Document, m: Id) -> Result<TransferFault, DecodeError> {
    let Some(fault) = doc.child(m, "FaultStruct") else {
        return Ok(TransferFault::default());
    };
    Ok(TransferFault { code: number(doc, fault, "FaultCode")?, string: text(doc, fault, "FaultString") })
}

fn file_type_args(doc: &mut Document, m: Id) -> Vec<(String, String)> {
    let mut args = Vec::new();
    if let Some(list) = doc.child(m, "FileTypeArg") {
        let mut items = doc.children(list);
        while let Some(item) = items.next_in(doc) {
            args.push((token(doc, item, "Name"), text(doc, item, "Value")));
        }
    }
    args
}

fn parameter_values(doc: &mut Document, m: Id, list: &str) -> Result<Vec<ParameterValue>, DecodeError> {
    let Some(list) = doc.child(m, list) else {
        return Ok(Vec::new());
    };
    let mut values = Vec::new();
    let mut items = doc.children(list);
    while let Some(item) = items.next_in(doc) {
        let name = doc
            .child(item, "Name")
            .ok_or(DecodeError::MissingField { within: "ParameterValueStruct", field: "Name" })?;
        let name = take_token(doc, name);
        let (value, value_type) = match doc.child(item, "Value") {
            Some(value) => {
                let value_type = doc.xsi_type(value).cloned().unwrap_or_default();
                (doc.take_text(value), value_type)
            }
            None => (String::new(), ValueType::String),
        };
        values.push(ParameterValue { name, value, value_type });
    }
    Ok(values)
}

fn parameter_infos(doc: &mut Document, m: Id) -> Result<Vec<ParameterInfo>, DecodeError> {
    let Some(list) = doc.child(m, "ParameterList") else {
        return Ok(Vec::new());
    };
    let mut infos = Vec::new();
    let mut items = doc.children(list);
    while let Some(item) = items.next_in(doc) {
        let name = doc
            .child(item, "Name")
            .ok_or(DecodeError::MissingField { within: "ParameterInfoStruct", field: "Name" })?;
        infos.push(ParameterInfo { name: take_token(doc, name), writable: boolean(doc, item, "Writable")? });
    }
    Ok(infos)
}

fn parameter_attributes(doc: &mut Document, m: Id) -> Result<Vec<ParameterAttribute>, DecodeError> {
    let Some(list) = doc.child(m, "ParameterList") else {
        return Ok(Vec::new());
    };
    let mut attributes = Vec::new();
    let mut items = doc.children(list);
    while let Some(item) = items.next_in(doc) {
        let name = doc
            .child(item, "Name")
            .ok_or(DecodeError::MissingField { within: "ParameterAttributeStruct", field: "Name" })?;
        attributes.push(ParameterAttribute {
            name: take_token(doc, name),
            notification: number(doc, item, "Notification")?,
            access_list: string_list(doc, item, "AccessList"),
        });
    }
    Ok(attributes)
}

fn set_parameter_attributes(doc: &mut Document, m: Id) -> Result<Vec<SetParameterAttribute>, DecodeError> {
    let Some(list) = doc.child(m, "ParameterList") else {
        return Ok(Vec::new());
    };
    let mut attributes = Vec::new();
    let mut items = doc.children(list);
    while let Some(item) = items.next_in(doc) {
        let name = doc
            .child(item, "Name")
            .ok_or(DecodeError::MissingField { within: "SetParameterAttributesStruct", field: "Name" })?;
        attributes.push(SetParameterAttribute {
            name: take_token(doc, name),
            notification_change: boolean(doc, item, "NotificationChange")?,
            notification: number(doc, item, "Notification")?,
            access_list_change: boolean(doc, item, "AccessListChange")?,
            access_list: string_list(doc, item, "AccessList"),
        });
    }
    Ok(attributes)
}

/// A SOAP fault carrying a `cwmp:Fault`. The detail normally sits in `<detail>`, but netcwmp
/// nests `<detail>` inside `<faultstring>` and some agents drop `<detail>` or the
/// `cwmp:Fault` wrapper, so the whole fault is searched.
fn fault(doc: &mut Document, soap_fault: Id) -> Result<Fault, DecodeError> {
    let missing = DecodeError::MissingField { within: "Fault", field: "FaultCode" };
    let detail = match doc.descendant(soap_fault, "Fault") {
        Some(detail) => detail,
        None => doc.descendant(soap_fault, "FaultCode").map(|code| doc.parent(code)).ok_or(missing)?,
    };
    let code =
        doc.child(detail, "FaultCode").ok_or(DecodeError::MissingField { within: "Fault", field: "FaultCode" })?;
    let code = parse_number(doc.text(code), "FaultCode")?;
    let string = text(doc, detail, "FaultString");
    let mut set_parameter_values_faults = Vec::new();
    let mut items = doc.children(detail);
    while let Some(item) = items.next_in(doc) {
        if doc.is(item, "SetParameterValuesFault") {
            set_parameter_values_faults.push(SetParameterValuesFault {
                parameter_name: token(doc, item, "ParameterName"),
                code: number(doc, item, "FaultCode")?,
                string: text(doc, item, "FaultString"),
            });
        }
    }
    Ok(Fault { code, string, set_parameter_values_faults })
}

/// A child's text exactly as sent; empty when the child is missing.
fn text(doc: &mut Document, parent: Id, field: &str) -> String {
    doc.child(parent, field).map(|child| doc.take_text(child)).unwrap_or_default()
}

/// A child's text, trimmed; empty when the child is missing.
fn token(doc: &mut Document, parent: Id, field: &str) -> String {
    doc.child(parent, field).map(|child| take_token(doc, child)).unwrap_or_default()
}

fn take_token(doc: &mut Document, id: Id) -> String {
    let text = doc.take_text(id);
    let trimmed = text.trim();
    if trimmed.len() == text.len() { text } else { trimmed.to_owned() }
}

/// The texts of a list element's children (`<string>` items, or whatever the peer named them).
fn string_list(doc: &mut Document, parent: Id, field: &str) -> Vec<String> {
    let Some(list) = doc.child(parent, field) else {
        return Vec::new();
    };
    let mut strings = Vec::new();
    let mut items = doc.children(list);
    while let Some(item) = items.next_in(doc) {
        strings.push(take_token(doc, item));
    }
    strings
}

fn number<T: FromStr + Default>(doc: &Document, parent: Id, field: &'static str) -> Result<T, DecodeError> {
    match doc.child(parent, field) {
        Some(child) => parse_number(doc.text(child), field),
        None => Ok(T::default()),
    }
}

fn boolean(doc: &Document, parent: Id, field: &'static str) -> Result<bool, DecodeError> {
    match doc.child(parent, field) {
        Some(child) => parse_bool(doc.text(child), field),
        None => Ok(false),
    }
}

fn parse_number<T: FromStr + Default>(raw: &str, field: &'static str) -> Result<T, DecodeError> {
    let trimmed = raw.trim();
    if trimmed.is_empty() {
        return Ok(T::default());
    }
    trimmed.parse().map_err(|_| DecodeError::BadNumber { field, value: excerpt(raw) })
}

fn parse_bool(raw: &str, field: &'static str) -> Result<bool, DecodeError> {
    let trimmed = raw.trim();
    if trimmed.is_empty() || trimmed == "0" || trimmed.eq_ignore_ascii_case("false") {
        Ok(false)
    } else if trimmed == "1" || trimmed.eq_ignore_ascii_case("true") {
        Ok(true)
    } else {
        Err(DecodeError::BadBoolean { field, value: excerpt(raw) })
    }
}

/// Bounds what a hostile value can put into an error message (and so into logs).
fn excerpt(raw: &str) -> String {
    const MAX_CHARS: usize = 64;
    match raw.char_indices().nth(MAX_CHARS) {
        Some((cut, _)) => format!("{}…", &raw[..cut]),
        None => raw.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NS_10: &str = "urn:dslforum-org:cwmp-1-0";

    fn envelope(namespace: &str, header: &str, body: &str) -> String {
        format!(
            r#"<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/" xmlns:cwmp="{namespace}"><soap:Header>{header}</soap:Header><soap:Body>{body}</soap:Body></soap:Envelope>"#
        )
    }

    fn cpe(body: &str) -> Envelope<CpeBody> {
        decode_cpe_message(envelope(NS_10, "", body).as_bytes()).unwrap()
    }

    fn gpv_values(body: &str) -> Vec<ParameterValue> {
        match cpe(body).body {
            CpeBody::Response(CpeResponse::GetParameterValues { parameters }) => parameters,
            other => panic!("not a GPV response: {other:?}"),
        }
    }

    #[test]
    fn value_whitespace_is_kept_but_names_and_numbers_are_trimmed() {
        let values = gpv_values(
            "<cwmp:GetParameterValuesResponse><ParameterList>\
             <ParameterValueStruct><Name> A.B </Name><Value xsi:type=\"xsd:string\">  two  words </Value></ParameterValueStruct>\
             <ParameterValueStruct><Name>A.C</Name><Value/></ParameterValueStruct>\
             <ParameterValueStruct><Name>A.D</Name></ParameterValueStruct>\
             </ParameterList></cwmp:GetParameterValuesResponse>",
        );
        assert_eq!(values[0].name, "A.B");
        assert_eq!(values[0].value, "  two  words ");
        assert_eq!(values[1].value, "");
        assert_eq!(values[1].value_type, ValueType::String, "no xsi:type means string");
        assert_eq!(values[2].value, "", "a missing Value defaults to empty");

        match cpe("<cwmp:SetParameterValuesResponse><Status>\n 1 \n</Status></cwmp:SetParameterValuesResponse>").body {
            CpeBody::Response(CpeResponse::SetParameterValues { status }) => assert_eq!(status, 1),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn odd_types_are_normalised_and_unknown_ones_kept() {
        let values = gpv_values(
            "<cwmp:GetParameterValuesResponse><ParameterList>\
             <P><Name>a</Name><Value xsi:type=\"xsd:unsignedint\">1</Value></P>\
             <P><Name>b</Name><Value xsi:type=\"XSD:Int\">-1</Value></P>\
             <P><Name>c.</Name><Value xsi:type=\"object\"></Value></P>\
             </ParameterList></cwmp:GetParameterValuesResponse>",
        );
        assert_eq!(values[0].value_type, ValueType::UnsignedInt);
        assert_eq!(values[1].value_type, ValueType::Int);
        assert_eq!(values[2].value_type, ValueType::Other("object".into()));
    }

    #[test]
    fn booleans_accept_any_case_and_digits() {
        for (raw, expected) in [("1", true), ("0", false), ("TRUE", true), (" False ", false), ("true", true)] {
            assert_eq!(parse_bool(raw, "x").unwrap(), expected, "{raw}");
        }
        let error = parse_bool("yes", "Writable").unwrap_err();
        assert_eq!(error.to_string(), r#"Writable: "yes" is not a valid boolean"#);
    }

    #[test]
    fn bad_numbers_name_the_field_and_value() {
        let xml =
            envelope(NS_10, "", "<cwmp:AddObjectResponse><InstanceNumber>x1</InstanceNumber></cwmp:AddObjectResponse>");
        match decode_cpe_message(xml.as_bytes()) {
            Err(DecodeError::BadNumber { field, value }) => {
                assert_eq!((field, value.as_str()), ("InstanceNumber", "x1"));
            }
            other => panic!("{other:?}"),
        }
        let long = "9".repeat(500);
        let error = parse_number::<u32>(&long, "Status").unwrap_err().to_string();
        assert!(error.len() < 120, "error message is bounded: {error}");
    }

    #[test]
    fn missing_optional_fields_default() {
        match cpe("<cwmp:Inform><DeviceId><OUI>A</OUI></DeviceId></cwmp:Inform>").body {
            CpeBody::Request(CpeRequest::Inform(inform)) => {
                assert_eq!(inform.device_id.oui, "A");
                assert_eq!(inform.device_id.serial_number, "");
                assert_eq!((inform.max_envelopes, inform.retry_count), (0, 0));
                assert!(inform.events.is_empty() && inform.parameters.is_empty());
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn missing_required_fields_are_named() {
        let xml = envelope(NS_10, "", "<cwmp:Inform><Event/></cwmp:Inform>");
        let error = decode_cpe_message(xml.as_bytes()).unwrap_err();
        assert!(matches!(error, DecodeError::MissingField { within: "Inform", field: "DeviceId" }));
        assert_eq!(error.to_string(), "Inform: missing required field DeviceId");

        let xml =
            envelope(NS_10, "", "<soap:Fault><faultcode>Client</faultcode><faultstring>x</faultstring></soap:Fault>");
        assert!(matches!(
            decode_cpe_message(xml.as_bytes()),
            Err(DecodeError::MissingField { field: "FaultCode", .. })
        ));
    }

    #[test]
    fn unknown_requests_are_unsupported_but_unknown_responses_are_errors() {
        assert_eq!(
            cpe("<cwmp:Kicked><Command>x</Command></cwmp:Kicked>").body,
            CpeBody::Request(CpeRequest::Unsupported { method: "Kicked".into() })
        );
        let xml = envelope(NS_10, "", "<cwmp:GetQueuedTransfersResponse/>");
        match decode_cpe_message(xml.as_bytes()) {
            Err(DecodeError::UnknownMethod { method }) => {
                assert_eq!(method, "GetQueuedTransfersResponse")
            }
            other => panic!("{other:?}"),
        }
        let xml = envelope(NS_10, "", "<cwmp:X_Frob/>");
        let error = decode_acs_message(xml.as_bytes()).unwrap_err();
        assert_eq!(error.to_string(), "unknown CWMP method X_Frob");
    }

    #[test]
    fn get_rpc_methods_depends_on_direction() {
        let request = envelope(NS_10, "", "<cwmp:GetRPCMethods/>");
        assert_eq!(decode_cpe_message(request.as_bytes()).unwrap().body, CpeBody::Request(CpeRequest::GetRpcMethods));
        assert_eq!(decode_acs_message(request.as_bytes()).unwrap().body, AcsBody::Request(AcsRequest::GetRpcMethods));
        let response = envelope(
            NS_10,
            "",
            "<cwmp:GetRPCMethodsResponse><MethodList><string>Inform</string></MethodList></cwmp:GetRPCMethodsResponse>",
        );
        let methods = vec!["Inform".to_owned()];
        assert_eq!(
            decode_cpe_message(response.as_bytes()).unwrap().body,
            CpeBody::Response(CpeResponse::GetRpcMethods { methods: methods.clone() })
        );
        assert_eq!(
            decode_acs_message(response.as_bytes()).unwrap().body,
            AcsBody::Response(AcsResponse::GetRpcMethods { methods })
        );
    }

    #[test]
    fn header_fields_and_version_refinement() {
        let ns12 = "urn:dslforum-org:cwmp-1-2";
        let header = "<cwmp:ID soap:mustUnderstand=\"1\"> id 1 </cwmp:ID><cwmp:HoldRequests>1</cwmp:HoldRequests>\
                      <cwmp:NoMoreRequests>0</cwmp:NoMoreRequests><cwmp:Unknown>x</cwmp:Unknown>";
        let message = decode_cpe_message(envelope(ns12, header, "<cwmp:GetRPCMethods/>").as_bytes()).unwrap();
        assert_eq!(message.header.id.as_deref(), Some(" id 1 "), "ID is echoed verbatim");
        assert_eq!(message.header.hold_requests, Some(true));
        assert_eq!(message.header.no_more_requests, Some(false));
        assert_eq!(message.version, CwmpVersion::V1_2);

        let with_timeout = envelope(ns12, "<cwmp:SessionTimeout>30</cwmp:SessionTimeout>", "<cwmp:GetRPCMethods/>");
        let message = decode_cpe_message(with_timeout.as_bytes()).unwrap();
        assert_eq!((message.version, message.header.session_timeout), (CwmpVersion::V1_3, Some(30)));

        let with_versions = envelope(
            ns12,
            "<cwmp:SessionTimeout>30</cwmp:SessionTimeout><cwmp:SupportedCWMPVersions>1.0,1.4</cwmp:SupportedCWMPVersions>",
            "<cwmp:GetRPCMethods/>",
        );
        assert_eq!(decode_cpe_message(with_versions.as_bytes()).unwrap().version, CwmpVersion::V1_4);

        // SessionTimeout does not turn a 1.0 namespace into 1.3.
        let old = envelope(NS_10, "<cwmp:SessionTimeout>30</cwmp:SessionTimeout>", "<cwmp:GetRPCMethods/>");
        assert_eq!(decode_cpe_message(old.as_bytes()).unwrap().version, CwmpVersion::V1_0);

        let no_namespace = "<Envelope><Body><Inform><DeviceId/></Inform></Body></Envelope>";
        let message = decode_cpe_message(no_namespace.as_bytes()).unwrap();
        assert_eq!(message.version, CwmpVersion::V1_0);
        assert_eq!(message.header, Header::default(), "no Header element at all");
    }

    #[test]
    fn faults_are_found_with_or_without_detail() {
        let nested = "<soap:Fault><faultcode>Client</faultcode><faultstring><detail><cwmp:Fault>\
                      <FaultCode> 9003 </FaultCode><FaultString>Invalid arguments</FaultString>\
                      <SetParameterValuesFault><ParameterName>A.B</ParameterName><FaultCode>9007</FaultCode>\
                      <FaultString>bad</FaultString></SetParameterValuesFault></cwmp:Fault></detail></faultstring></soap:Fault>";
        let expected = Fault {
            code: 9003,
            string: "Invalid arguments".into(),
            set_parameter_values_faults: vec![SetParameterValuesFault {
                parameter_name: "A.B".into(),
                code: 9007,
                string: "bad".into(),
            }],
        };
        assert_eq!(cpe(nested).body, CpeBody::Fault(expected));

        let bare = "<soap:Fault><faultcode>Server</faultcode><detail><FaultCode>9002</FaultCode></detail></soap:Fault>";
        assert_eq!(cpe(bare).body, CpeBody::Fault(Fault::new(9002, "")));
    }

    #[test]
    fn envelope_shape_errors_are_clear() {
        assert!(matches!(
            decode_cpe_message(b"<html><body/></html>"),
            Err(DecodeError::NoEnvelope { found }) if found == "html"
        ));
        assert!(matches!(decode_cpe_message(b"<s:Envelope><s:Header/></s:Envelope>"), Err(DecodeError::NoBody)));
        assert!(matches!(
            decode_cpe_message(b"<s:Envelope><s:Body> </s:Body></s:Envelope>"),
            Err(DecodeError::EmptyBody)
        ));
        let laughs = br#"<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;">]><soap:Envelope><soap:Body><cwmp:Inform>&lol2;</cwmp:Inform></soap:Body></soap:Envelope>"#;
        assert!(matches!(decode_cpe_message(laughs), Err(DecodeError::DoctypeRefused)));
        let error = decode_cpe_message(b"GET / HTTP/1.1").unwrap_err();
        assert!(matches!(error, DecodeError::NotXml { .. }), "{error}");
    }

    #[test]
    fn excerpt_cuts_on_character_boundaries() {
        let cut = excerpt(&"é".repeat(100));
        assert_eq!(cut.chars().count(), 65);
        assert_eq!(excerpt("short"), "short");
    }
}
