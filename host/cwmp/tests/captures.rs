//! Decoding real wire captures from three independent CPE implementations (netcwmp,
//! genieacs-sim, softov/cwmp-sim) and a real Cisco femtocell GetParameterValuesResponse.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Instant;

use roost_cwmp::fault::SetParameterValuesFault;
use roost_cwmp::{
    AcsBody, AcsRequest, AcsResponse, CpeBody, CpeRequest, CpeResponse, CwmpVersion, DecodeError, Envelope,
    EventStruct, Fault, ParameterValue, ValueType, decode_acs_message, decode_cpe_message,
};

const CAPTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/data/cpe/captures/");
const CISCO_GPV: &str =
    concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/data/cpe/cisco-femto-microcell_igd-fap_gpv-response.xml");

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    /// A POST from the CPE to the ACS.
    CpePost,
    /// Any other CPE->ACS request (file downloads).
    CpeOther,
    /// The ACS's answer to whatever the CPE sent just before.
    Acs,
    /// Annotations from the scripted ACS.
    Stub,
}

#[derive(Debug)]
struct Block {
    heading: String,
    direction: Direction,
    content_length: Option<usize>,
    body: String,
}

/// Splits a transcript into blocks: a `===== HH:MM:SS <what>` line, HTTP headers, a blank
/// line, then the body up to the next `=====` line.
fn split(transcript: &str) -> Vec<Block> {
    let mut blocks = Vec::new();
    let mut lines = transcript.lines().peekable();
    while let Some(line) = lines.next() {
        let Some(heading) = line.strip_prefix("===== ") else {
            assert!(line.trim().is_empty(), "text outside a block: {line:?}");
            continue;
        };
        let what = heading.split_once(' ').map_or("", |(_, what)| what);
        let direction = if what.starts_with("CPE->ACS POST") {
            Direction::CpePost
        } else if what.starts_with("CPE->ACS") {
            Direction::CpeOther
        } else if what.starts_with("ACS->CPE") {
            Direction::Acs
        } else if what.starts_with("STUB") {
            Direction::Stub
        } else {
            panic!("unknown block heading {heading:?}");
        };
        let mut content_length = None;
        while let Some(header) = lines.next_if(|l| !l.is_empty() && !l.starts_with("=====")) {
            if let Some(value) = header.strip_prefix("Content-Length:") {
                content_length = Some(value.trim().parse().unwrap());
            }
        }
        // The blank line between headers and body.
        lines.next_if(|l| l.is_empty());
        let mut body = String::new();
        while let Some(body_line) = lines.next_if(|l| !l.starts_with("=====")) {
            if body_line.starts_with("STUB") {
                continue;
            }
            body.push_str(body_line);
            body.push('\n');
        }
        let body = body.trim_end().to_owned();
        blocks.push(Block { heading: heading.to_owned(), direction, content_length, body });
    }
    blocks
}

fn load(name: &str) -> Vec<Block> {
    let path = format!("{CAPTURES}{name}");
    let transcript = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let blocks = split(&transcript);
    for block in &blocks {
        if let Some(length) = block.content_length {
            // The transcript adds at most one newline after a body.
            let body = block.body.len();
            assert!(length == body || length == body + 1, "{}: Content-Length {length}, body {body}", block.heading);
        }
    }
    blocks
}

/// Every non-empty body a CPE POSTed, decoded.
fn cpe_messages(blocks: &[Block]) -> Vec<Envelope<CpeBody>> {
    blocks
        .iter()
        .filter(|b| b.direction == Direction::CpePost && !b.body.is_empty())
        .map(|b| decode_cpe_message(b.body.as_bytes()).unwrap_or_else(|e| panic!("{}: {e}\n{}", b.heading, b.body)))
        .collect()
}

/// Every non-empty body the ACS answered a POST with, decoded (or the error).
fn acs_messages(blocks: &[Block]) -> Vec<Result<Envelope<AcsBody>, DecodeError>> {
    let mut previous = Direction::Stub;
    let mut messages = Vec::new();
    for block in blocks {
        if block.direction == Direction::Acs && previous == Direction::CpePost && !block.body.is_empty() {
            messages.push(decode_acs_message(block.body.as_bytes()));
        }
        if block.direction != Direction::Stub {
            previous = block.direction;
        }
    }
    messages
}

/// The ACS side of the stub sent one method no CPE knows, to see what each one does with it.
fn assert_all_acs_bodies_decode(blocks: &[Block], expected: usize, expected_unknown: usize) {
    let messages = acs_messages(blocks);
    assert_eq!(messages.len(), expected);
    let mut unknown = 0;
    for message in messages {
        match message {
            Ok(envelope) => assert_eq!(envelope.version, CwmpVersion::V1_0),
            Err(DecodeError::UnknownMethod { method }) => {
                assert_eq!(method, "X_STUB_Frobnicate");
                unknown += 1;
            }
            Err(other) => panic!("ACS body failed: {other}"),
        }
    }
    assert_eq!(unknown, expected_unknown);
}

fn with_id<'a, B>(messages: &'a [Envelope<B>], id: &str) -> &'a B {
    &messages
        .iter()
        .find(|m| m.header.id.as_deref() == Some(id))
        .unwrap_or_else(|| panic!("no message with ID {id}"))
        .body
}

fn value_of<'a>(parameters: &'a [ParameterValue], name: &str) -> &'a ParameterValue {
    parameters.iter().find(|p| p.name == name).unwrap_or_else(|| panic!("no parameter {name}"))
}

#[test]
fn netcwmp_session_decodes() {
    let blocks = load("netcwmp_vs-stub.wire.txt");
    let messages = cpe_messages(&blocks);
    assert_eq!(messages.len(), 14);
    assert!(messages.iter().all(|m| m.version == CwmpVersion::V1_0));

    let first = &messages[0];
    assert_eq!(first.header.id.as_deref(), Some("1"));
    let CpeBody::Request(CpeRequest::Inform(inform)) = &first.body else { panic!("{:?}", first.body) };
    assert_eq!(inform.device_id.manufacturer, "ChinaNMS");
    assert_eq!(inform.device_id.oui, "A00001");
    assert_eq!(inform.device_id.product_class, "OT2800");
    assert_eq!(inform.device_id.serial_number, "30000000000000000");
    assert_eq!(inform.events, [EventStruct { code: "0 BOOTSTRAP".into(), command_key: String::new() }]);
    assert_eq!((inform.max_envelopes, inform.retry_count), (1, 0));
    assert_eq!(inform.current_time, "2026-11-21T17:03:23", "kept without a time zone");
    assert_eq!(inform.parameters.len(), 17);
    assert_eq!(inform.parameters[0].name, "InternetGatewayDevice.DeviceSummary");
    assert_eq!(inform.parameters[0].value, "");
    let url = value_of(&inform.parameters, "InternetGatewayDevice.ManagementServer.URL");
    assert_eq!((url.value.as_str(), &url.value_type), ("http://127.0.0.1:17547/acs", &ValueType::String));

    let CpeBody::Response(CpeResponse::GetRpcMethods { methods }) = with_id(&messages, "stub-rpcmethods") else {
        panic!()
    };
    assert_eq!(methods.len(), 11);
    assert_eq!((methods[0].as_str(), methods[10].as_str()), ("GetRPCMethods", "Inform"));

    // netcwmp nests <detail> inside <faultstring>.
    assert_eq!(
        with_id(&messages, "stub-spv"),
        &CpeBody::Fault(Fault {
            code: 9003,
            string: "Invalid arguments".into(),
            set_parameter_values_faults: vec![SetParameterValuesFault {
                parameter_name: "InternetGatewayDevice.ManagementServer.PeriodicInformInterval".into(),
                code: 9008,
                string: "Attempt to set a non-writable parameter".into(),
            }],
        })
    );
    assert_eq!(with_id(&messages, "stub-add"), &CpeBody::Fault(Fault::new(9005, "Invalid parameter name")));

    let CpeBody::Response(CpeResponse::GetParameterValues { parameters }) = with_id(&messages, "stub-gpvpartial")
    else {
        panic!()
    };
    assert_eq!(parameters[0].value_type, ValueType::Other("object".into()));
    assert_eq!(
        with_id(&messages, "stub-gpvbad"),
        &CpeBody::Response(CpeResponse::GetParameterValues { parameters: vec![] })
    );

    let CpeBody::Response(CpeResponse::GetParameterNames { parameters }) = with_id(&messages, "stub-gpn") else {
        panic!()
    };
    assert_eq!(parameters.len(), 20);
    assert!(!parameters[0].writable && parameters[1].writable);

    assert_eq!(
        with_id(&messages, "stub-download"),
        &CpeBody::Response(CpeResponse::Download {
            status: 1,
            start_time: String::new(),
            complete_time: String::new()
        })
    );
    assert_eq!(with_id(&messages, "stub-reboot"), &CpeBody::Response(CpeResponse::Reboot));

    let CpeBody::Request(CpeRequest::TransferComplete(complete)) = with_id(&messages, "3") else { panic!() };
    assert_eq!(complete.command_key, "stub-dl");
    assert_eq!((complete.fault.code, complete.fault.string.as_str()), (9001, "Request denied"));

    let CpeBody::Request(CpeRequest::Inform(after_reboot)) = with_id(&messages, "2") else { panic!() };
    assert_eq!(after_reboot.events[0].code, "1 BOOT");

    assert_all_acs_bodies_decode(&blocks, 15, 1);
}

#[test]
fn netcwmp_digest_session_decodes() {
    let blocks = load("netcwmp_digest_vs-stub.wire.txt");
    let messages = cpe_messages(&blocks);
    assert_eq!(messages.len(), 1);
    let CpeBody::Request(CpeRequest::Inform(inform)) = &messages[0].body else { panic!() };
    assert_eq!(inform.parameters.len(), 17);
    assert_all_acs_bodies_decode(&blocks, 1, 0);
}

#[test]
fn genieacs_sim_session_decodes() {
    let blocks = load("genieacs-sim_vs-stub.wire.txt");
    let messages = cpe_messages(&blocks);
    assert_eq!(messages.len(), 17);

    let CpeBody::Request(CpeRequest::Inform(inform)) = &messages[0].body else { panic!() };
    assert_eq!(inform.device_id.manufacturer, "Huawei Technologies Co., Ltd.");
    assert_eq!(inform.device_id.product_class, "BM632w");
    assert_eq!(inform.events[0].code, "2 PERIODIC");
    assert_eq!(inform.current_time, "2026-11-21T16:56:43.301Z");
    // genieacs-sim's arrayType says 16 but it sends 7: the list, not the count, is the truth.
    assert_eq!(inform.parameters.len(), 7);
    assert_eq!(value_of(&inform.parameters, "InternetGatewayDevice.DeviceInfo.ProvisioningCode").value, "");

    let CpeBody::Response(CpeResponse::GetParameterValues { parameters }) = with_id(&messages, "stub-gpv") else {
        panic!()
    };
    assert_eq!(
        parameters,
        &[
            ParameterValue {
                name: "InternetGatewayDevice.DeviceInfo.SoftwareVersion".into(),
                value: "V100R001IRQC56B017".into(),
                value_type: ValueType::String,
            },
            ParameterValue {
                name: "InternetGatewayDevice.ManagementServer.PeriodicInformInterval".into(),
                value: "300".into(),
                value_type: ValueType::UnsignedInt,
            },
        ]
    );
    assert_eq!(with_id(&messages, "stub-rpcmethods"), &CpeBody::Fault(Fault::new(9000, "Method not supported")));
    assert_eq!(with_id(&messages, "stub-spv"), &CpeBody::Response(CpeResponse::SetParameterValues { status: 0 }));
    assert_eq!(
        with_id(&messages, "stub-add"),
        &CpeBody::Response(CpeResponse::AddObject { instance_number: 1, status: 0 })
    );
    assert_eq!(with_id(&messages, "stub-del"), &CpeBody::Response(CpeResponse::DeleteObject { status: 0 }));

    let CpeBody::Request(CpeRequest::TransferComplete(complete)) = with_id(&messages, "4q6p50z5") else { panic!() };
    assert_eq!(complete.command_key, "stub-dl");
    assert_eq!(complete.fault.code, 0);
    assert_eq!(complete.start_time, "2026-11-21T16:56:43.699Z");

    assert_all_acs_bodies_decode(&blocks, 17, 0);
}

#[test]
fn softov_session_decodes() {
    let blocks = load("softov-cwmp-sim_digest_vs-stub.wire.txt");
    let messages = cpe_messages(&blocks);
    assert_eq!(messages.len(), 21);

    let CpeBody::Request(CpeRequest::Inform(inform)) = &messages[0].body else { panic!() };
    assert_eq!(inform.device_id.product_class, "ZXHN H199A");
    assert_eq!(inform.events[0].code, "1 BOOT");

    // `soap:Fault` with no xmlns:soap declaration anywhere.
    assert_eq!(
        with_id(&messages, "stub-spvbad"),
        &CpeBody::Fault(Fault::new(
            9008,
            "Unable to set parameter(s): InternetGatewayDevice.DeviceInfo.SoftwareVersion"
        ))
    );
    assert_eq!(with_id(&messages, "stub-unknown"), &CpeBody::Fault(Fault::new(9000, "Method not supported.")));

    let CpeBody::Response(CpeResponse::GetParameterValues { parameters }) = with_id(&messages, "stub-gpvpartial")
    else {
        panic!()
    };
    assert_eq!(parameters.len(), 26);
    let enable = value_of(parameters, "InternetGatewayDevice.ManagementServer.EnableCWMP");
    assert_eq!((enable.value.as_str(), &enable.value_type), ("true", &ValueType::Boolean));

    let CpeBody::Response(CpeResponse::GetParameterNames { parameters }) = with_id(&messages, "stub-gpn") else {
        panic!()
    };
    assert_eq!(parameters.len(), 27);
    assert!(parameters[0].writable, "`true` is a boolean too");

    let CpeBody::Response(CpeResponse::GetParameterAttributes { parameters }) = with_id(&messages, "stub-gpa") else {
        panic!()
    };
    assert_eq!(parameters.len(), 1);
    assert_eq!(parameters[0].name, "InternetGatewayDevice.DeviceInfo.SoftwareVersion");
    assert_eq!(parameters[0].notification, 0);
    assert!(parameters[0].access_list.is_empty());

    // A failure that is not a fault: the session layer must notice it, the codec keeps it.
    assert_eq!(
        with_id(&messages, "stub-add"),
        &CpeBody::Response(CpeResponse::AddObject { instance_number: 0, status: 9005 })
    );
    assert_eq!(
        with_id(&messages, "stub-upload"),
        &CpeBody::Response(CpeResponse::Upload {
            status: 1,
            start_time: "0001-01-01T00:00:00Z".into(),
            complete_time: "0001-01-01T00:00:00Z".into(),
        })
    );

    let transfers: Vec<_> = messages
        .iter()
        .filter_map(|m| match &m.body {
            CpeBody::Request(CpeRequest::TransferComplete(complete)) => Some(complete),
            _ => None,
        })
        .collect();
    assert_eq!(transfers.len(), 2);
    assert_eq!((transfers[0].command_key.as_str(), transfers[0].fault.code), ("stub-dl", 0));
    assert_eq!(transfers[1].command_key, "stub-ul");
    assert_eq!(transfers[1].fault.code, 9010);
    assert_eq!(transfers[1].fault.string, "Unknown FileType: 3 Vendor Log File");

    let CpeBody::Request(CpeRequest::Inform(after_reboot)) = with_id(&messages, "frb9j3yf") else { panic!() };
    let codes: Vec<_> = after_reboot.events.iter().map(|e| e.code.as_str()).collect();
    assert_eq!(codes, ["1 BOOT", "M Reboot"]);

    assert_all_acs_bodies_decode(&blocks, 20, 1);
}

#[test]
fn acs_requests_in_captures_decode_to_their_content() {
    let blocks = load("softov-cwmp-sim_digest_vs-stub.wire.txt");
    let messages: Vec<_> = acs_messages(&blocks).into_iter().filter_map(Result::ok).collect();
    let AcsBody::Request(AcsRequest::Download(download)) = with_id(&messages, "stub-download") else { panic!() };
    assert_eq!(download.command_key, "stub-dl");
    assert_eq!(download.file_type, "1 Firmware Upgrade Image");
    assert_eq!(download.url, "http://127.0.0.1:17547/files/fw.bin");
    assert_eq!((download.file_size, download.delay_seconds), (16, 0));
    assert_eq!(
        with_id(&messages, "stub-spv"),
        &AcsBody::Request(AcsRequest::SetParameterValues {
            values: vec![ParameterValue {
                name: "InternetGatewayDevice.ManagementServer.PeriodicInformInterval".into(),
                value: "300".into(),
                value_type: ValueType::UnsignedInt,
            }],
            parameter_key: "stub-key-1".into(),
        })
    );
    assert_eq!(
        with_id(&messages, "stub-gpn"),
        &AcsBody::Request(AcsRequest::GetParameterNames {
            parameter_path: "InternetGatewayDevice.ManagementServer.".into(),
            next_level: true,
        })
    );
    assert_eq!(
        with_id(&messages, "stub-reboot"),
        &AcsBody::Request(AcsRequest::Reboot { command_key: "stub-reboot".into() })
    );
    assert_eq!(with_id(&messages, "7wbsubba"), &AcsBody::Response(AcsResponse::Inform));
}

fn cisco_parameters() -> Vec<ParameterValue> {
    let bytes = std::fs::read(CISCO_GPV).unwrap();
    let message = decode_cpe_message(&bytes).unwrap();
    assert_eq!(message.version, CwmpVersion::V1_0);
    assert_eq!(message.header.id.as_deref(), Some("16781903"));
    match message.body {
        CpeBody::Response(CpeResponse::GetParameterValues { parameters }) => parameters,
        other => panic!("{other:?}"),
    }
}

#[test]
fn cisco_femto_gpv_has_every_parameter_whatever_arraytype_says() {
    let parameters = cisco_parameters();
    // The arrayType attribute claims 213.
    assert_eq!(parameters.len(), 227);
    assert_eq!(parameters[0].name, "InternetGatewayDevice.DeviceSummary");
    assert_eq!(parameters[0].value, "FAPService:1.0(Baseline:1)");
    assert_eq!(value_of(&parameters, "InternetGatewayDevice.DeviceInfo.SoftwareVersion").value, "CJJ005B00009_1.0.5");
    let last = &parameters[226];
    assert_eq!(
        last.name,
        "InternetGatewayDevice.Services.FAPService.1.CellConfig.UMTS.RAN.FDDFAP.NeighborList.InterFreqCell.4.PCPICHTxPower"
    );
    assert_eq!((last.value.as_str(), &last.value_type), ("220", &ValueType::Int));
    let count = |t: ValueType| parameters.iter().filter(|p| p.value_type == t).count();
    assert_eq!(count(ValueType::UnsignedInt), 107);
    assert_eq!(count(ValueType::Boolean), 34);
    assert_eq!(count(ValueType::String), 64);
    assert_eq!(count(ValueType::DateTime), 7);
    assert_eq!(count(ValueType::Int), 15);
}

/// Rough throughput check; the budget is loose enough for a busy debug build, and tight
/// enough to catch quadratic work (which would take minutes at 50,000 parameters).
#[test]
fn decoding_is_fast_and_linear() {
    let cisco = std::fs::read(CISCO_GPV).unwrap();
    // The fastest of many rounds: other work on a shared machine only ever adds time.
    let per_cisco = (0..50)
        .map(|_| {
            let started = Instant::now();
            assert!(decode_cpe_message(&cisco).is_ok());
            started.elapsed()
        })
        .min()
        .unwrap();

    let mut big = String::from(
        r#"<soap-env:Envelope xmlns:soap-env="http://schemas.xmlsoap.org/soap/envelope/" xmlns:cwmp="urn:dslforum-org:cwmp-1-0"><soap-env:Body><cwmp:GetParameterValuesResponse><ParameterList>"#,
    );
    for i in 0..50_000 {
        big.push_str(&format!(
            "<ParameterValueStruct><Name>Device.X.{i}.Value</Name><Value xsi:type=\"xsd:unsignedInt\">{i}</Value></ParameterValueStruct>"
        ));
    }
    big.push_str("</ParameterList></cwmp:GetParameterValuesResponse></soap-env:Body></soap-env:Envelope>");
    let started = Instant::now();
    let decoded = decode_cpe_message(big.as_bytes()).unwrap();
    let per_big = started.elapsed();
    let CpeBody::Response(CpeResponse::GetParameterValues { parameters }) = decoded.body else { panic!() };
    assert_eq!(parameters.len(), 50_000);
    assert_eq!(parameters[49_999].value, "49999");

    eprintln!("Cisco 227-parameter GPV: {per_cisco:?} per decode; 50,000 parameters: {per_big:?}");
    let (cisco_budget_ms, big_budget_ms) = if cfg!(debug_assertions) { (20, 4_000) } else { (1, 200) };
    assert!(per_cisco.as_millis() < cisco_budget_ms, "{per_cisco:?}");
    assert!(per_big.as_millis() < big_budget_ms, "{per_big:?}");
}

/// Truncated and corrupted copies of every real body: truncation must always be an error
/// (a cut-off GetParameterValuesResponse must never pass as a shorter one), and no
/// corruption may panic.
#[test]
fn damaged_captures_fail_cleanly() {
    let mut bodies = Vec::new();
    for name in ["netcwmp_vs-stub.wire.txt", "genieacs-sim_vs-stub.wire.txt", "softov-cwmp-sim_digest_vs-stub.wire.txt"]
    {
        bodies.extend(load(name).into_iter().map(|b| b.body).filter(|b| b.starts_with('<')));
    }
    assert!(bodies.len() > 60);

    // A fixed xorshift sequence keeps failures reproducible.
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut random = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for body in &bodies {
        let bytes = body.as_bytes();
        let root_end = bytes.iter().rposition(|&b| b == b'>').unwrap();
        for cut in (0..root_end).step_by(97) {
            let prefix = &bytes[..cut];
            assert!(decode_cpe_message(prefix).is_err(), "prefix of {cut} bytes accepted: {body}");
            assert!(decode_acs_message(prefix).is_err());
        }
        for _ in 0..20 {
            let mut damaged = bytes.to_vec();
            for _ in 0..1 + random() % 4 {
                let at = (random() % damaged.len() as u64) as usize;
                damaged[at] = (random() % 256) as u8;
            }
            // Either outcome is fine; panicking or hanging is not.
            let _ = decode_cpe_message(&damaged);
            let _ = decode_acs_message(&damaged);
        }
    }
}
