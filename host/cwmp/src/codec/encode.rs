//! Writing CWMP envelopes straight into one `String`.
//!
//! The output is deliberately plain: the least capable agents in the field compare prefixes
//! literally, choke on an XML declaration, and read booleans with `atoi`. So: `SOAP-ENV`,
//! `SOAP-ENC`, `cwmp`, `xsd` and `xsi` prefixes, 2001 schema namespaces, no declaration,
//! `cwmp:` on the method element only, Annex A field order, `0`/`1` booleans, explicit
//! `<a></a>` pairs rather than `<a/>`, and `xsi:type` on every `Value`.

use std::fmt::{Display, Write};

use crate::CwmpVersion;
use crate::fault::Fault;
use crate::rpc::{
    AcsBody, AcsRequest, AcsResponse, CpeBody, CpeRequest, CpeResponse, Header, ParameterValue, TransferFault,
};

const ENVELOPE_OPEN: &str = concat!(
    r#"<SOAP-ENV:Envelope xmlns:SOAP-ENV="http://schemas.xmlsoap.org/soap/envelope/""#,
    r#" xmlns:SOAP-ENC="http://schemas.xmlsoap.org/soap/encoding/""#,
    r#" xmlns:xsd="http://www.w3.org/2001/XMLSchema""#,
    r#" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xmlns:cwmp=""#,
);
const ENVELOPE_CLOSE: &str = "</SOAP-ENV:Body></SOAP-ENV:Envelope>";

/// Encodes a message from the ACS to a CPE, in `version`'s namespace.
pub fn encode_acs_message(version: CwmpVersion, header: &Header, body: &AcsBody) -> String {
    let mut out = Out::envelope(version, header, acs_size_hint(body));
    match body {
        AcsBody::Request(request) => out.acs_request(request),
        AcsBody::Response(response) => out.acs_response(response),
        AcsBody::Fault(fault) => out.fault(fault),
    }
    out.finish()
}

/// Encodes a message from a CPE to the ACS (what the simulator sends), in `version`'s namespace.
pub fn encode_cpe_message(version: CwmpVersion, header: &Header, body: &CpeBody) -> String {
    let mut out = Out::envelope(version, header, cpe_size_hint(body));
    match body {
        CpeBody::Request(request) => out.cpe_request(request),
        CpeBody::Response(response) => out.cpe_response(response),
        CpeBody::Fault(fault) => out.fault(fault),
    }
    out.finish()
}

/// Fixed cost of an envelope with an ID header and a method element.
const BASE_SIZE: usize = 640;
/// Markup around one `ParameterValueStruct`, type included.
const VALUE_STRUCT_SIZE: usize = 100;
/// Markup around one list item or scalar field.
const ITEM_SIZE: usize = 40;

fn values_size(values: &[ParameterValue]) -> usize {
    values.iter().map(|v| VALUE_STRUCT_SIZE + v.name.len() + v.value.len()).sum()
}

fn names_size(names: &[String]) -> usize {
    names.iter().map(|n| ITEM_SIZE + n.len()).sum()
}

fn acs_size_hint(body: &AcsBody) -> usize {
    BASE_SIZE
        + match body {
            AcsBody::Request(AcsRequest::GetParameterValues { names })
            | AcsBody::Request(AcsRequest::GetParameterAttributes { names }) => names_size(names),
            AcsBody::Request(AcsRequest::SetParameterValues { values, .. }) => values_size(values),
            AcsBody::Request(AcsRequest::SetParameterAttributes { attributes }) => {
                attributes.iter().map(|a| 4 * ITEM_SIZE + a.name.len() + names_size(&a.access_list)).sum()
            }
            AcsBody::Response(AcsResponse::GetRpcMethods { methods }) => names_size(methods),
            AcsBody::Fault(fault) => fault
                .set_parameter_values_faults
                .iter()
                .map(|f| 3 * ITEM_SIZE + f.parameter_name.len() + f.string.len())
                .sum(),
            _ => 0,
        }
}

fn cpe_size_hint(body: &CpeBody) -> usize {
    BASE_SIZE
        + match body {
            CpeBody::Request(CpeRequest::Inform(inform)) => {
                values_size(&inform.parameters) + inform.events.len() * 3 * ITEM_SIZE + 4 * ITEM_SIZE
            }
            CpeBody::Response(CpeResponse::GetParameterValues { parameters }) => values_size(parameters),
            CpeBody::Response(CpeResponse::GetParameterNames { parameters }) => {
                parameters.iter().map(|p| 2 * ITEM_SIZE + p.name.len()).sum()
            }
            CpeBody::Response(CpeResponse::GetParameterAttributes { parameters }) => {
                parameters.iter().map(|p| 3 * ITEM_SIZE + p.name.len() + names_size(&p.access_list)).sum()
            }
            CpeBody::Response(CpeResponse::GetRpcMethods { methods }) => names_size(methods),
            CpeBody::Fault(fault) => fault
                .set_parameter_values_faults
                .iter()
                .map(|f| 3 * ITEM_SIZE + f.parameter_name.len() + f.string.len())
                .sum(),
            _ => 0,
        }
}

struct Out {
    buf: String,
}

impl Out {
    fn envelope(version: CwmpVersion, header: &Header, size_hint: usize) -> Self {
        let mut out = Self { buf: String::with_capacity(size_hint) };
        out.raw(ENVELOPE_OPEN);
        out.raw(version.namespace());
        out.raw("\">");
        out.header(header);
        out.raw("<SOAP-ENV:Body>");
        out
    }

    fn finish(mut self) -> String {
        self.raw(ENVELOPE_CLOSE);
        self.buf
    }

    fn header(&mut self, header: &Header) {
        let Header { id, hold_requests, session_timeout, supported_cwmp_versions, use_cwmp_version, no_more_requests } =
            header;
        if id.is_none()
            && hold_requests.is_none()
            && session_timeout.is_none()
            && supported_cwmp_versions.is_none()
            && use_cwmp_version.is_none()
            && no_more_requests.is_none()
        {
            return;
        }
        self.raw("<SOAP-ENV:Header>");
        // TR-069 A.4.1: ID, HoldRequests and UseCWMPVersion must be understood; the others
        // are informative and carry mustUnderstand="0".
        if let Some(id) = id {
            self.header_field("ID", "1", id);
        }
        if let Some(hold) = hold_requests {
            self.header_field("HoldRequests", "1", bool_text(*hold));
        }
        if let Some(version) = use_cwmp_version {
            self.header_field("UseCWMPVersion", "1", version);
        }
        if let Some(timeout) = session_timeout {
            self.raw("<cwmp:SessionTimeout SOAP-ENV:mustUnderstand=\"0\">");
            self.display(timeout);
            self.raw("</cwmp:SessionTimeout>");
        }
        if let Some(versions) = supported_cwmp_versions {
            self.header_field("SupportedCWMPVersions", "0", versions);
        }
        if let Some(no_more) = no_more_requests {
            self.header_field("NoMoreRequests", "0", bool_text(*no_more));
        }
        self.raw("</SOAP-ENV:Header>");
    }

    fn header_field(&mut self, name: &str, must_understand: &str, value: &str) {
        self.raw("<cwmp:");
        self.raw(name);
        self.raw(" SOAP-ENV:mustUnderstand=\"");
        self.raw(must_understand);
        self.raw("\">");
        self.text(value);
        self.raw("</cwmp:");
        self.raw(name);
        self.raw(">");
    }

    fn acs_request(&mut self, request: &AcsRequest) {
        let method = request.method_name();
        self.open_method(method);
        match request {
            AcsRequest::GetRpcMethods | AcsRequest::FactoryReset => {}
            AcsRequest::GetParameterNames { parameter_path, next_level } => {
                self.field("ParameterPath", parameter_path);
                self.field("NextLevel", bool_text(*next_level));
            }
            AcsRequest::GetParameterValues { names } | AcsRequest::GetParameterAttributes { names } => {
                self.string_array("ParameterNames", names);
            }
            AcsRequest::SetParameterValues { values, parameter_key } => {
                self.parameter_values(values);
                self.field("ParameterKey", parameter_key);
            }
            AcsRequest::SetParameterAttributes { attributes } => {
                self.array_open("ParameterList", "cwmp:SetParameterAttributesStruct", attributes.len());
                for attribute in attributes {
                    self.raw("<SetParameterAttributesStruct>");
                    self.field("Name", &attribute.name);
                    self.field("NotificationChange", bool_text(attribute.notification_change));
                    self.number("Notification", attribute.notification);
                    self.field("AccessListChange", bool_text(attribute.access_list_change));
                    self.string_array("AccessList", &attribute.access_list);
                    self.raw("</SetParameterAttributesStruct>");
                }
                self.raw("</ParameterList>");
            }
            AcsRequest::AddObject { object_name, parameter_key }
            | AcsRequest::DeleteObject { object_name, parameter_key } => {
                self.field("ObjectName", object_name);
                self.field("ParameterKey", parameter_key);
            }
            AcsRequest::Reboot { command_key } => self.field("CommandKey", command_key),
            AcsRequest::Download(download) => {
                self.field("CommandKey", &download.command_key);
                self.field("FileType", &download.file_type);
                self.field("URL", &download.url);
                self.field("Username", &download.username);
                self.field("Password", &download.password);
                self.number("FileSize", download.file_size);
                self.field("TargetFileName", &download.target_file_name);
                self.number("DelaySeconds", download.delay_seconds);
                self.field("SuccessURL", &download.success_url);
                self.field("FailureURL", &download.failure_url);
            }
            AcsRequest::Upload(upload) => {
                self.field("CommandKey", &upload.command_key);
                self.field("FileType", &upload.file_type);
                self.field("URL", &upload.url);
                self.field("Username", &upload.username);
                self.field("Password", &upload.password);
                self.number("DelaySeconds", upload.delay_seconds);
            }
            AcsRequest::ScheduleInform { delay_seconds, command_key } => {
                self.number("DelaySeconds", *delay_seconds);
                self.field("CommandKey", command_key);
            }
        }
        self.close_method(method);
    }

    fn acs_response(&mut self, response: &AcsResponse) {
        let method = match response {
            AcsResponse::Inform => "InformResponse",
            AcsResponse::TransferComplete => "TransferCompleteResponse",
            AcsResponse::AutonomousTransferComplete => "AutonomousTransferCompleteResponse",
            AcsResponse::GetRpcMethods { .. } => "GetRPCMethodsResponse",
            AcsResponse::RequestDownload => "RequestDownloadResponse",
        };
        self.open_method(method);
        match response {
            AcsResponse::Inform => self.number("MaxEnvelopes", 1),
            AcsResponse::GetRpcMethods { methods } => self.string_array("MethodList", methods),
            AcsResponse::TransferComplete | AcsResponse::AutonomousTransferComplete | AcsResponse::RequestDownload => {}
        }
        self.close_method(method);
    }

    fn cpe_request(&mut self, request: &CpeRequest) {
        let sanitized;
        let method = match request {
            CpeRequest::Unsupported { method } => {
                sanitized = element_name(method);
                sanitized.as_str()
            }
            other => other.method_name(),
        };
        self.open_method(method);
        match request {
            CpeRequest::Inform(inform) => {
                let device = &inform.device_id;
                self.raw("<DeviceId>");
                self.field("Manufacturer", &device.manufacturer);
                self.field("OUI", &device.oui);
                self.field("ProductClass", &device.product_class);
                self.field("SerialNumber", &device.serial_number);
                self.raw("</DeviceId>");
                self.array_open("Event", "cwmp:EventStruct", inform.events.len());
                for event in &inform.events {
                    self.raw("<EventStruct>");
                    self.field("EventCode", &event.code);
                    self.field("CommandKey", &event.command_key);
                    self.raw("</EventStruct>");
                }
                self.raw("</Event>");
                self.number("MaxEnvelopes", inform.max_envelopes);
                self.field("CurrentTime", &inform.current_time);
                self.number("RetryCount", inform.retry_count);
                self.parameter_values(&inform.parameters);
            }
            CpeRequest::TransferComplete(complete) => {
                self.field("CommandKey", &complete.command_key);
                self.transfer_fault(&complete.fault);
                self.field("StartTime", &complete.start_time);
                self.field("CompleteTime", &complete.complete_time);
            }
            CpeRequest::AutonomousTransferComplete(complete) => {
                self.field("AnnounceURL", &complete.announce_url);
                self.field("TransferURL", &complete.transfer_url);
                self.field("IsDownload", bool_text(complete.is_download));
                self.field("FileType", &complete.file_type);
                self.number("FileSize", complete.file_size);
                self.field("TargetFileName", &complete.target_file_name);
                self.transfer_fault(&complete.fault);
                self.field("StartTime", &complete.start_time);
                self.field("CompleteTime", &complete.complete_time);
            }
            CpeRequest::RequestDownload(request) => {
                self.field("FileType", &request.file_type);
                self.array_open("FileTypeArg", "cwmp:ArgStruct", request.file_type_args.len());
                for (name, value) in &request.file_type_args {
                    self.raw("<ArgStruct>");
                    self.field("Name", name);
                    self.field("Value", value);
                    self.raw("</ArgStruct>");
                }
                self.raw("</FileTypeArg>");
            }
            CpeRequest::GetRpcMethods | CpeRequest::Unsupported { .. } => {}
        }
        self.close_method(method);
    }

    fn cpe_response(&mut self, response: &CpeResponse) {
        let method = match response {
            CpeResponse::GetRpcMethods { .. } => "GetRPCMethodsResponse",
            CpeResponse::GetParameterNames { .. } => "GetParameterNamesResponse",
            CpeResponse::GetParameterValues { .. } => "GetParameterValuesResponse",
            CpeResponse::SetParameterValues { .. } => "SetParameterValuesResponse",
            CpeResponse::GetParameterAttributes { .. } => "GetParameterAttributesResponse",
            CpeResponse::SetParameterAttributes => "SetParameterAttributesResponse",
            CpeResponse::AddObject { .. } => "AddObjectResponse",
            CpeResponse::DeleteObject { .. } => "DeleteObjectResponse",
            CpeResponse::Reboot => "RebootResponse",
            CpeResponse::FactoryReset => "FactoryResetResponse",
            CpeResponse::Download { .. } => "DownloadResponse",
            CpeResponse::Upload { .. } => "UploadResponse",
            CpeResponse::ScheduleInform => "ScheduleInformResponse",
        };
        self.open_method(method);
        match response {
            CpeResponse::GetRpcMethods { methods } => self.string_array("MethodList", methods),
            CpeResponse::GetParameterNames { parameters } => {
                self.array_open("ParameterList", "cwmp:ParameterInfoStruct", parameters.len());
                for info in parameters {
                    self.raw("<ParameterInfoStruct>");
                    self.field("Name", &info.name);
                    self.field("Writable", bool_text(info.writable));
                    self.raw("</ParameterInfoStruct>");
                }
                self.raw("</ParameterList>");
            }
            CpeResponse::GetParameterValues { parameters } => self.parameter_values(parameters),
            CpeResponse::SetParameterValues { status } | CpeResponse::DeleteObject { status } => {
                self.number("Status", *status);
            }
            CpeResponse::GetParameterAttributes { parameters } => {
                self.array_open("ParameterList", "cwmp:ParameterAttributeStruct", parameters.len());
                for attribute in parameters {
                    self.raw("<ParameterAttributeStruct>");
                    self.field("Name", &attribute.name);
                    self.number("Notification", attribute.notification);
                    self.string_array("AccessList", &attribute.access_list);
                    self.raw("</ParameterAttributeStruct>");
                }
                self.raw("</ParameterList>");
            }
            CpeResponse::AddObject { instance_number, status } => {
                self.number("InstanceNumber", *instance_number);
                self.number("Status", *status);
            }
            CpeResponse::Download { status, start_time, complete_time }
            | CpeResponse::Upload { status, start_time, complete_time } => {
                self.number("Status", *status);
                self.field("StartTime", start_time);
                self.field("CompleteTime", complete_time);
            }
            CpeResponse::SetParameterAttributes
            | CpeResponse::Reboot
            | CpeResponse::FactoryReset
            | CpeResponse::ScheduleInform => {}
        }
        self.close_method(method);
    }

    fn fault(&mut self, fault: &Fault) {
        self.raw("<SOAP-ENV:Fault><faultcode>");
        self.raw(fault.soap_fault_code());
        self.raw("</faultcode><faultstring>CWMP fault</faultstring><detail><cwmp:Fault>");
        self.number("FaultCode", fault.code);
        self.field("FaultString", &fault.string);
        for entry in &fault.set_parameter_values_faults {
            self.raw("<SetParameterValuesFault>");
            self.field("ParameterName", &entry.parameter_name);
            self.number("FaultCode", entry.code);
            self.field("FaultString", &entry.string);
            self.raw("</SetParameterValuesFault>");
        }
        self.raw("</cwmp:Fault></detail></SOAP-ENV:Fault>");
    }

    fn transfer_fault(&mut self, fault: &TransferFault) {
        self.raw("<FaultStruct>");
        self.number("FaultCode", fault.code);
        self.field("FaultString", &fault.string);
        self.raw("</FaultStruct>");
    }

    fn parameter_values(&mut self, values: &[ParameterValue]) {
        self.array_open("ParameterList", "cwmp:ParameterValueStruct", values.len());
        for value in values {
            self.raw("<ParameterValueStruct>");
            self.field("Name", &value.name);
            self.raw("<Value xsi:type=\"");
            self.text(value.value_type.as_str());
            self.raw("\">");
            self.text(&value.value);
            self.raw("</Value></ParameterValueStruct>");
        }
        self.raw("</ParameterList>");
    }

    fn string_array(&mut self, name: &str, items: &[String]) {
        self.array_open(name, "xsd:string", items.len());
        for item in items {
            self.field("string", item);
        }
        self.raw("</");
        self.raw(name);
        self.raw(">");
    }

    fn array_open(&mut self, name: &str, item_type: &str, len: usize) {
        self.raw("<");
        self.raw(name);
        self.raw(" SOAP-ENC:arrayType=\"");
        self.raw(item_type);
        self.raw("[");
        self.display(len);
        self.raw("]\">");
    }

    fn open_method(&mut self, method: &str) {
        self.raw("<cwmp:");
        self.raw(method);
        self.raw(">");
    }

    fn close_method(&mut self, method: &str) {
        self.raw("</cwmp:");
        self.raw(method);
        self.raw(">");
    }

    fn field(&mut self, name: &str, value: &str) {
        self.raw("<");
        self.raw(name);
        self.raw(">");
        self.text(value);
        self.raw("</");
        self.raw(name);
        self.raw(">");
    }

    fn number(&mut self, name: &str, value: impl Display) {
        self.raw("<");
        self.raw(name);
        self.raw(">");
        self.display(value);
        self.raw("</");
        self.raw(name);
        self.raw(">");
    }

    fn display(&mut self, value: impl Display) {
        // Writing into a String cannot fail.
        let _ = write!(self.buf, "{value}");
    }

    fn raw(&mut self, markup: &str) {
        self.buf.push_str(markup);
    }

    fn text(&mut self, text: &str) {
        escape_into(&mut self.buf, text);
    }
}

fn bool_text(value: bool) -> &'static str {
    if value { "1" } else { "0" }
}

/// Escapes the five XML special characters, so the result is safe in text and in
/// double- or single-quoted attributes alike.
pub(super) fn escape_into(out: &mut String, text: &str) {
    let mut rest = text;
    while let Some(at) = rest.find(['&', '<', '>', '"', '\'']) {
        let (before, special) = rest.split_at(at);
        out.push_str(before);
        let mut chars = special.chars();
        out.push_str(match chars.next() {
            Some('&') => "&amp;",
            Some('<') => "&lt;",
            Some('>') => "&gt;",
            Some('"') => "&quot;",
            _ => "&apos;",
        });
        rest = chars.as_str();
    }
    out.push_str(rest);
}

/// A method name usable as an element name: the simulator may be asked to send anything, and
/// the decoder keeps an unsupported method's name only as far as it can be written back.
pub(super) fn element_name(method: &str) -> String {
    let mut name: String = method
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.') { c } else { '_' })
        .collect();
    if !name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_') {
        name.insert_str(0, "X_");
    }
    name
}

#[cfg(test)]
mod tests {
    use super::*;

    fn escape(text: &str) -> String {
        let mut out = String::new();
        escape_into(&mut out, text);
        out
    }

    #[test]
    fn escapes_all_five_specials_and_nothing_else() {
        assert_eq!(escape(r#"a&b<c>d"e'f"#), "a&amp;b&lt;c&gt;d&quot;e&apos;f");
        assert_eq!(escape("plain ünïcode \n\t"), "plain ünïcode \n\t");
        assert_eq!(escape("&&"), "&amp;&amp;");
        assert_eq!(escape(""), "");
    }

    #[test]
    fn header_is_omitted_when_empty_and_ordered_when_set() {
        let body = AcsBody::Request(AcsRequest::FactoryReset);
        let bare = encode_acs_message(CwmpVersion::V1_0, &Header::default(), &body);
        assert!(!bare.contains("Header"), "{bare}");
        assert!(bare.contains("<SOAP-ENV:Body><cwmp:FactoryReset></cwmp:FactoryReset></SOAP-ENV:Body>"));

        let header = Header {
            id: Some("a<b".into()),
            hold_requests: Some(false),
            use_cwmp_version: Some("1.4".into()),
            ..Header::default()
        };
        let full = encode_acs_message(CwmpVersion::V1_4, &header, &body);
        assert!(full.contains(
            "<SOAP-ENV:Header><cwmp:ID SOAP-ENV:mustUnderstand=\"1\">a&lt;b</cwmp:ID>\
             <cwmp:HoldRequests SOAP-ENV:mustUnderstand=\"1\">0</cwmp:HoldRequests>\
             <cwmp:UseCWMPVersion SOAP-ENV:mustUnderstand=\"1\">1.4</cwmp:UseCWMPVersion></SOAP-ENV:Header>"
        ));
        assert!(full.contains("xmlns:cwmp=\"urn:dslforum-org:cwmp-1-2\""), "1.4 writes the 1.2 namespace");
    }

    #[test]
    fn array_counts_match_the_lists() {
        let body = AcsBody::Request(AcsRequest::SetParameterValues {
            values: vec![
                ParameterValue { name: "A".into(), value: "1".into(), value_type: crate::ValueType::Boolean },
                ParameterValue { name: "B".into(), value: "x".into(), value_type: crate::ValueType::String },
            ],
            parameter_key: "k".into(),
        });
        let xml = encode_acs_message(CwmpVersion::V1_1, &Header::default(), &body);
        assert!(xml.contains(
            "<cwmp:SetParameterValues><ParameterList SOAP-ENC:arrayType=\"cwmp:ParameterValueStruct[2]\">\
             <ParameterValueStruct><Name>A</Name><Value xsi:type=\"xsd:boolean\">1</Value></ParameterValueStruct>"
        ));
        assert!(xml.ends_with("</ParameterList><ParameterKey>k</ParameterKey></cwmp:SetParameterValues></SOAP-ENV:Body></SOAP-ENV:Envelope>"));
    }

    #[test]
    fn unsupported_method_names_still_make_well_formed_xml() {
        assert_eq!(element_name("Kicked"), "Kicked");
        assert_eq!(element_name("a b<c"), "a_b_c");
        assert_eq!(element_name("9x"), "X_9x");
        assert_eq!(element_name(""), "X_");
    }

    #[test]
    fn size_hint_covers_typical_messages() {
        let values: Vec<ParameterValue> = (0..100)
            .map(|i| ParameterValue {
                name: format!("InternetGatewayDevice.X.{i}.Name"),
                value: "value".into(),
                value_type: crate::ValueType::String,
            })
            .collect();
        let body = CpeBody::Response(CpeResponse::GetParameterValues { parameters: values });
        let hint = cpe_size_hint(&body);
        let xml = encode_cpe_message(CwmpVersion::V1_0, &Header { id: Some("1".into()), ..Header::default() }, &body);
        assert!(hint >= xml.len(), "hint {hint} < actual {}", xml.len());
        assert!(hint < xml.len() * 2, "hint {hint} wastes memory for {}", xml.len());
    }
}
