//! Every message type survives encode → decode unchanged, in every CWMP version, and the
//! encoder's exact output shape is pinned by golden strings.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use quick_xml::events::Event;
use quick_xml::name::ResolveResult;
use quick_xml::reader::NsReader;
use roost_cwmp::fault::SetParameterValuesFault;
use roost_cwmp::{
    AcsBody, AcsRequest, AcsResponse, AutonomousTransferComplete, CpeBody, CpeRequest, CpeResponse, CwmpVersion,
    DeviceIdStruct, Download, Envelope, EventStruct, Fault, Header, Inform, ParameterAttribute, ParameterInfo,
    ParameterValue, RequestDownload, SetParameterAttribute, TransferComplete, TransferFault, Upload, ValueType,
    decode_acs_message, decode_cpe_message, encode_acs_message, encode_cpe_message,
};

/// Free text with every character XML cares about, and edges that must not be trimmed.
const AWKWARD: &str = " <a href=\"x\">Tom & 'Jerry'</a> ünï€ \t";

fn value(name: &str, value: &str, value_type: ValueType) -> ParameterValue {
    ParameterValue { name: name.into(), value: value.into(), value_type }
}

fn sample_values() -> Vec<ParameterValue> {
    vec![
        value("InternetGatewayDevice.DeviceInfo.ProvisioningCode", AWKWARD, ValueType::String),
        value("InternetGatewayDevice.ManagementServer.PeriodicInformInterval", "300", ValueType::UnsignedInt),
        value("Device.X.Int", "-5", ValueType::Int),
        value("Device.X.Long", "-9000000000", ValueType::Long),
        value("Device.X.ULong", "18446744073709551615", ValueType::UnsignedLong),
        value("Device.X.Enable", "true", ValueType::Boolean),
        value("Device.X.Time", "0001-01-01T00:00:00Z", ValueType::DateTime),
        value("Device.X.Blob", "AAEC/w==", ValueType::Base64),
        value("Device.X.Hex", "00ff", ValueType::HexBinary),
        value("Device.X.Uri", "http://a/?b=1&c=2", ValueType::Other("xsd:anyURI".into())),
        value("Device.X.Empty", "", ValueType::String),
        value("Device.X.Spaces", "   ", ValueType::String),
        value("Device.X.Lines", "line 1\r\nline 2\n", ValueType::String),
    ]
}

fn acs_requests() -> Vec<AcsRequest> {
    vec![
        AcsRequest::GetRpcMethods,
        AcsRequest::GetParameterNames { parameter_path: "InternetGatewayDevice.LANDevice.".into(), next_level: true },
        AcsRequest::GetParameterNames { parameter_path: String::new(), next_level: false },
        AcsRequest::GetParameterValues {
            names: vec!["InternetGatewayDevice.DeviceInfo.".into(), "InternetGatewayDevice.WANDevice.1.".into()],
        },
        AcsRequest::GetParameterValues { names: vec![] },
        AcsRequest::SetParameterValues { values: sample_values(), parameter_key: AWKWARD.into() },
        AcsRequest::GetParameterAttributes { names: vec!["Device.WiFi.SSID.1.SSID".into()] },
        AcsRequest::SetParameterAttributes {
            attributes: vec![
                SetParameterAttribute {
                    name: "Device.WiFi.SSID.1.SSID".into(),
                    notification_change: true,
                    notification: 2,
                    access_list_change: true,
                    access_list: vec!["Subscriber".into()],
                },
                SetParameterAttribute {
                    name: "Device.DeviceInfo.SoftwareVersion".into(),
                    notification_change: false,
                    notification: 0,
                    access_list_change: false,
                    access_list: vec![],
                },
            ],
        },
        AcsRequest::AddObject {
            object_name: "InternetGatewayDevice.WANDevice.1.WANConnectionDevice.1.WANIPConnection.1.PortMapping."
                .into(),
            parameter_key: "add-1".into(),
        },
        AcsRequest::DeleteObject { object_name: "Device.NAT.PortMapping.3.".into(), parameter_key: String::new() },
        AcsRequest::Reboot { command_key: AWKWARD.into() },
        AcsRequest::FactoryReset,
        AcsRequest::Download(Download {
            command_key: "fw-2024".into(),
            file_type: "1 Firmware Upgrade Image".into(),
            url: "https://files.example/fw.bin?token=a&b=c".into(),
            username: "user".into(),
            password: "p&ss<word>".into(),
            file_size: 5_000_000_000,
            target_file_name: "fw.bin".into(),
            delay_seconds: 30,
            success_url: "https://ok.example/".into(),
            failure_url: "https://fail.example/".into(),
        }),
        AcsRequest::Download(Download::default()),
        AcsRequest::Upload(Upload {
            command_key: "log".into(),
            file_type: "2 Vendor Log File".into(),
            url: "https://up.example/log".into(),
            username: String::new(),
            password: String::new(),
            delay_seconds: 4_294_967_295,
        }),
        AcsRequest::ScheduleInform { delay_seconds: 60, command_key: "later".into() },
    ]
}

fn acs_responses() -> Vec<AcsResponse> {
    vec![
        AcsResponse::Inform,
        AcsResponse::TransferComplete,
        AcsResponse::AutonomousTransferComplete,
        AcsResponse::GetRpcMethods {
            methods: vec!["Inform".into(), "TransferComplete".into(), "GetRPCMethods".into()],
        },
        AcsResponse::RequestDownload,
    ]
}

fn cpe_requests() -> Vec<CpeRequest> {
    vec![
        CpeRequest::Inform(Inform {
            device_id: DeviceIdStruct {
                manufacturer: "Huawei Technologies Co., Ltd".into(),
                oui: "00259E".into(),
                product_class: "ZXHN H199A".into(),
                serial_number: "48575443A94196A5".into(),
            },
            events: vec![
                EventStruct { code: "1 BOOT".into(), command_key: String::new() },
                EventStruct { code: "M Reboot".into(), command_key: AWKWARD.into() },
            ],
            max_envelopes: 1,
            current_time: "2026-11-21T17:03:23".into(),
            retry_count: 3,
            parameters: sample_values(),
        }),
        CpeRequest::Inform(Inform::default()),
        CpeRequest::TransferComplete(TransferComplete {
            command_key: "fw-2024".into(),
            fault: TransferFault { code: 9010, string: "Download failed: <timeout>".into() },
            start_time: "2026-11-21T17:03:23Z".into(),
            complete_time: "2026-11-21T17:04:23Z".into(),
        }),
        CpeRequest::AutonomousTransferComplete(AutonomousTransferComplete {
            announce_url: "https://announce.example/".into(),
            transfer_url: "https://files.example/fw.bin".into(),
            is_download: true,
            file_type: "1 Firmware Upgrade Image".into(),
            file_size: 12_345,
            target_file_name: "fw.bin".into(),
            fault: TransferFault::default(),
            start_time: "0001-01-01T00:00:00Z".into(),
            complete_time: "0001-01-01T00:00:00Z".into(),
        }),
        CpeRequest::GetRpcMethods,
        CpeRequest::RequestDownload(RequestDownload {
            file_type: "2 Web Content".into(),
            file_type_args: vec![("Version".into(), " 1 & 2 ".into()), ("Empty".into(), String::new())],
        }),
        CpeRequest::Unsupported { method: "Kicked".into() },
        CpeRequest::Unsupported { method: "DUStateChangeComplete".into() },
    ]
}

fn cpe_responses() -> Vec<CpeResponse> {
    vec![
        CpeResponse::GetRpcMethods { methods: vec!["GetRPCMethods".into(), "Download".into()] },
        CpeResponse::GetParameterNames {
            parameters: vec![
                ParameterInfo { name: "Device.WiFi.".into(), writable: false },
                ParameterInfo { name: "Device.WiFi.SSID.1.SSID".into(), writable: true },
            ],
        },
        CpeResponse::GetParameterValues { parameters: sample_values() },
        CpeResponse::GetParameterValues { parameters: vec![] },
        CpeResponse::SetParameterValues { status: 1 },
        CpeResponse::GetParameterAttributes {
            parameters: vec![ParameterAttribute {
                name: "Device.WiFi.SSID.1.SSID".into(),
                notification: 2,
                access_list: vec!["Subscriber".into(), "Other".into()],
            }],
        },
        CpeResponse::SetParameterAttributes,
        CpeResponse::AddObject { instance_number: 7, status: 0 },
        CpeResponse::DeleteObject { status: 1 },
        CpeResponse::Reboot,
        CpeResponse::FactoryReset,
        CpeResponse::Download {
            status: 0,
            start_time: "2026-11-21T17:03:23Z".into(),
            complete_time: "2026-11-21T17:03:25Z".into(),
        },
        CpeResponse::Upload { status: 1, start_time: String::new(), complete_time: String::new() },
        CpeResponse::ScheduleInform,
    ]
}

fn faults() -> Vec<Fault> {
    vec![
        Fault::new(8000, "Method not supported"),
        Fault::new(8002, AWKWARD),
        Fault::new(9002, "Internal error"),
        Fault {
            code: 9003,
            string: "Invalid arguments".into(),
            set_parameter_values_faults: vec![
                SetParameterValuesFault {
                    parameter_name: "Device.X.Int".into(),
                    code: 9007,
                    string: "Invalid parameter value".into(),
                },
                SetParameterValuesFault {
                    parameter_name: "Device.DeviceInfo.SoftwareVersion".into(),
                    code: 9008,
                    string: "Attempt to set a non-writable parameter".into(),
                },
            ],
        },
    ]
}

/// A header that shows `version` the way a CPE would: 1.3 by SessionTimeout, 1.4 by
/// SupportedCWMPVersions; the rest only by namespace.
fn cpe_header(version: CwmpVersion) -> Header {
    let mut header = Header { id: Some(format!(" id&<{version}> ")), ..Header::default() };
    match version {
        CwmpVersion::V1_0 | CwmpVersion::V1_1 => header.no_more_requests = Some(true),
        CwmpVersion::V1_2 => {}
        CwmpVersion::V1_3 => header.session_timeout = Some(60),
        CwmpVersion::V1_4 => {
            header.session_timeout = Some(30);
            header.supported_cwmp_versions = Some("1.0,1.1,1.2,1.3,1.4".into());
        }
    }
    header
}

/// A header as an ACS sends it: after 1.4 negotiation it names its choice in UseCWMPVersion.
fn acs_header(version: CwmpVersion) -> Header {
    let mut header = Header { id: Some(format!("acs-{version}")), hold_requests: Some(false), ..Header::default() };
    if version >= CwmpVersion::V1_3 {
        header.use_cwmp_version = Some(version.as_str().into());
    }
    header
}

/// Checks what a strict, namespace-aware parser makes of the output: well-formed, every
/// prefix declared, the method element in the cwmp namespace.
fn assert_strictly_well_formed(xml: &str, version: CwmpVersion) {
    let mut reader = NsReader::from_str(xml);
    let mut depth = 0;
    loop {
        let (resolved, event) = reader.read_resolved_event().unwrap_or_else(|e| panic!("{e}: {xml}"));
        match event {
            Event::Start(ref start) | Event::Empty(ref start) => {
                let name = String::from_utf8_lossy(start.local_name().as_ref()).into_owned();
                let prefixed = start.name().prefix().is_some();
                match resolved {
                    ResolveResult::Bound(ns) if depth == 2 && name != "Fault" => {
                        assert_eq!(ns.as_ref(), version.namespace().as_bytes(), "method {name}");
                    }
                    ResolveResult::Unknown(prefix) => {
                        panic!("undeclared prefix {}", String::from_utf8_lossy(&prefix))
                    }
                    ResolveResult::Unbound => assert!(!prefixed, "{name}"),
                    _ => {}
                }
                if matches!(event, Event::Start(_)) {
                    depth += 1;
                }
            }
            Event::End(_) => depth -= 1,
            Event::Decl(_) => panic!("no XML declaration may be written"),
            Event::Eof => break,
            _ => {}
        }
    }
    assert_eq!(depth, 0);
}

#[test]
fn acs_messages_round_trip_in_every_version() {
    let mut bodies: Vec<AcsBody> = acs_requests().into_iter().map(AcsBody::Request).collect();
    bodies.extend(acs_responses().into_iter().map(AcsBody::Response));
    bodies.extend(faults().into_iter().map(AcsBody::Fault));
    for version in CwmpVersion::ALL {
        let header = acs_header(version);
        for body in &bodies {
            let xml = encode_acs_message(version, &header, body);
            assert_strictly_well_formed(&xml, version);
            let decoded = decode_acs_message(xml.as_bytes()).unwrap_or_else(|e| panic!("{e}: {xml}"));
            assert_eq!(decoded, Envelope { version, header: header.clone(), body: body.clone() }, "{xml}");
        }
    }
}

#[test]
fn cpe_messages_round_trip_in_every_version() {
    let mut bodies: Vec<CpeBody> = cpe_requests().into_iter().map(CpeBody::Request).collect();
    bodies.extend(cpe_responses().into_iter().map(CpeBody::Response));
    bodies.extend(faults().into_iter().map(CpeBody::Fault));
    for version in CwmpVersion::ALL {
        let header = cpe_header(version);
        for body in &bodies {
            let xml = encode_cpe_message(version, &header, body);
            assert_strictly_well_formed(&xml, version);
            let decoded = decode_cpe_message(xml.as_bytes()).unwrap_or_else(|e| panic!("{e}: {xml}"));
            assert_eq!(decoded, Envelope { version, header: header.clone(), body: body.clone() }, "{xml}");
        }
    }
}

#[test]
fn headerless_messages_round_trip() {
    let body = CpeBody::Response(CpeResponse::Reboot);
    let xml = encode_cpe_message(CwmpVersion::V1_1, &Header::default(), &body);
    assert!(!xml.contains("Header"));
    let decoded = decode_cpe_message(xml.as_bytes()).unwrap();
    assert_eq!(decoded, Envelope { version: CwmpVersion::V1_1, header: Header::default(), body });
}

#[test]
fn cpe_and_acs_get_rpc_methods_are_told_apart() {
    let methods = vec!["Inform".to_owned()];
    let from_acs = encode_acs_message(
        CwmpVersion::V1_0,
        &Header::default(),
        &AcsBody::Response(AcsResponse::GetRpcMethods { methods: methods.clone() }),
    );
    assert_eq!(
        decode_cpe_message(from_acs.as_bytes()).unwrap().body,
        CpeBody::Response(CpeResponse::GetRpcMethods { methods })
    );
    let from_cpe =
        encode_cpe_message(CwmpVersion::V1_0, &Header::default(), &CpeBody::Request(CpeRequest::GetRpcMethods));
    assert_eq!(decode_acs_message(from_cpe.as_bytes()).unwrap().body, AcsBody::Request(AcsRequest::GetRpcMethods));
}

const ENVELOPE_OPEN_1_0: &str = concat!(
    r#"<SOAP-ENV:Envelope xmlns:SOAP-ENV="http://schemas.xmlsoap.org/soap/envelope/""#,
    r#" xmlns:SOAP-ENC="http://schemas.xmlsoap.org/soap/encoding/""#,
    r#" xmlns:xsd="http://www.w3.org/2001/XMLSchema""#,
    r#" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance""#,
    r#" xmlns:cwmp="urn:dslforum-org:cwmp-1-0">"#,
);

#[test]
fn golden_inform_response() {
    let header = Header { id: Some("1".into()), ..Header::default() };
    let xml = encode_acs_message(CwmpVersion::V1_0, &header, &AcsBody::Response(AcsResponse::Inform));
    let expected = [
        ENVELOPE_OPEN_1_0,
        r#"<SOAP-ENV:Header><cwmp:ID SOAP-ENV:mustUnderstand="1">1</cwmp:ID></SOAP-ENV:Header>"#,
        "<SOAP-ENV:Body><cwmp:InformResponse><MaxEnvelopes>1</MaxEnvelopes></cwmp:InformResponse>",
        "</SOAP-ENV:Body></SOAP-ENV:Envelope>",
    ]
    .concat();
    assert_eq!(xml, expected);
}

#[test]
fn golden_get_parameter_values() {
    let header = Header { id: Some("gpv-1".into()), ..Header::default() };
    let body = AcsBody::Request(AcsRequest::GetParameterValues {
        names: vec![
            "InternetGatewayDevice.DeviceInfo.SoftwareVersion".into(),
            "InternetGatewayDevice.ManagementServer.".into(),
        ],
    });
    let xml = encode_acs_message(CwmpVersion::V1_0, &header, &body);
    let expected = [
        ENVELOPE_OPEN_1_0,
        r#"<SOAP-ENV:Header><cwmp:ID SOAP-ENV:mustUnderstand="1">gpv-1</cwmp:ID></SOAP-ENV:Header>"#,
        r#"<SOAP-ENV:Body><cwmp:GetParameterValues><ParameterNames SOAP-ENC:arrayType="xsd:string[2]">"#,
        "<string>InternetGatewayDevice.DeviceInfo.SoftwareVersion</string>",
        "<string>InternetGatewayDevice.ManagementServer.</string>",
        "</ParameterNames></cwmp:GetParameterValues></SOAP-ENV:Body></SOAP-ENV:Envelope>",
    ]
    .concat();
    assert_eq!(xml, expected);
}

#[test]
fn golden_fault_and_set_parameter_values() {
    let fault = Fault {
        code: 9003,
        string: "Invalid arguments".into(),
        set_parameter_values_faults: vec![SetParameterValuesFault {
            parameter_name: "A.B".into(),
            code: 9007,
            string: "x<y".into(),
        }],
    };
    let xml = encode_cpe_message(CwmpVersion::V1_0, &Header::default(), &CpeBody::Fault(fault));
    let expected = [
        ENVELOPE_OPEN_1_0,
        "<SOAP-ENV:Body><SOAP-ENV:Fault><faultcode>Client</faultcode><faultstring>CWMP fault</faultstring>",
        "<detail><cwmp:Fault><FaultCode>9003</FaultCode><FaultString>Invalid arguments</FaultString>",
        "<SetParameterValuesFault><ParameterName>A.B</ParameterName><FaultCode>9007</FaultCode>",
        "<FaultString>x&lt;y</FaultString></SetParameterValuesFault></cwmp:Fault></detail></SOAP-ENV:Fault>",
        "</SOAP-ENV:Body></SOAP-ENV:Envelope>",
    ]
    .concat();
    assert_eq!(xml, expected);

    let server = encode_acs_message(CwmpVersion::V1_0, &Header::default(), &AcsBody::Fault(Fault::new(8002, "oops")));
    assert!(server.contains("<faultcode>Server</faultcode>"), "{server}");

    let spv = AcsBody::Request(AcsRequest::SetParameterValues {
        values: vec![value("A.B", "1", ValueType::UnsignedInt)],
        parameter_key: "k1".into(),
    });
    let xml = encode_acs_message(CwmpVersion::V1_0, &Header::default(), &spv);
    assert!(xml.ends_with(concat!(
        r#"<SOAP-ENV:Body><cwmp:SetParameterValues><ParameterList SOAP-ENC:arrayType="cwmp:ParameterValueStruct[1]">"#,
        r#"<ParameterValueStruct><Name>A.B</Name><Value xsi:type="xsd:unsignedInt">1</Value></ParameterValueStruct>"#,
        "</ParameterList><ParameterKey>k1</ParameterKey></cwmp:SetParameterValues></SOAP-ENV:Body></SOAP-ENV:Envelope>",
    )));
}

#[test]
fn download_fields_follow_annex_a_order() {
    let xml = encode_acs_message(
        CwmpVersion::V1_0,
        &Header::default(),
        &AcsBody::Request(AcsRequest::Download(Download::default())),
    );
    let order = [
        "<CommandKey>",
        "<FileType>",
        "<URL>",
        "<Username>",
        "<Password>",
        "<FileSize>",
        "<TargetFileName>",
        "<DelaySeconds>",
        "<SuccessURL>",
        "<FailureURL>",
    ];
    let positions: Vec<usize> = order.iter().map(|tag| xml.find(tag).unwrap()).collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "{xml}");
}
