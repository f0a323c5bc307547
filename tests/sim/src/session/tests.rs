//! Whole sessions against a tiny scripted ACS: a hyper server on 127.0.0.1 that answers each
//! POST with the next hand-written CWMP message of its script (and 204 when the script runs
//! out), records every request, and serves files for Download/Upload.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{HeaderMap, Request, Response};
use hyper_util::rt::TokioIo;
use roost_cwmp::{CpeBody, CpeRequest, CpeResponse, CwmpVersion, decode_cpe_message};
use tokio::net::TcpListener;

use crate::auth::{Challenge, verify_digest};
use crate::session::SessionError;
use crate::tree::{DataModel, DataModelKind};
use crate::{Fleet, FleetConfig, StartMode, bundled_model_path};

#[derive(Debug, Clone)]
struct Recorded {
    /// The CPE's end of the TCP connection: tells connections apart.
    peer: std::net::SocketAddr,
    method: String,
    path: String,
    headers: HeaderMap,
    body: String,
}

impl Recorded {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    fn decoded(&self) -> CpeBody {
        decode_cpe_message(self.body.as_bytes()).unwrap_or_else(|e| panic!("{e}: {}", self.body)).body
    }

    fn id(&self) -> String {
        decode_cpe_message(self.body.as_bytes()).ok().and_then(|e| e.header.id).unwrap_or_default()
    }
}

struct Reply {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: String,
}

impl Reply {
    fn soap(body: String) -> Self {
        Self { status: 200, headers: vec![("content-type", "text/xml; charset=\"utf-8\"".into())], body }
    }

    fn status(status: u16) -> Self {
        Self { status, headers: Vec::new(), body: String::new() }
    }

    fn with(mut self, name: &'static str, value: &str) -> Self {
        self.headers.push((name, value.to_owned()));
        self
    }
}

type Step = Box<dyn FnOnce(&Recorded) -> Reply + Send>;

#[derive(Clone, Default)]
struct Acs {
    log: Arc<Mutex<Vec<Recorded>>>,
    steps: Arc<Mutex<VecDeque<Step>>>,
    files: Arc<Mutex<HashMap<String, Vec<u8>>>>,
}

impl Acs {
    async fn start() -> (Self, String) {
        let acs = Self::default();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let server = acs.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, peer)) = listener.accept().await else { return };
                let acs = server.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |request: Request<Incoming>| {
                        let acs = acs.clone();
                        async move { Ok::<_, Infallible>(acs.serve(peer, request).await) }
                    });
                    let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
                });
            }
        });
        (acs, base)
    }

    async fn serve(&self, peer: std::net::SocketAddr, request: Request<Incoming>) -> Response<Full<Bytes>> {
        let (parts, body) = request.into_parts();
        let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
        let recorded = Recorded {
            peer,
            method: parts.method.to_string(),
            path: parts.uri.path().to_owned(),
            headers: parts.headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        };
        let reply = if recorded.path.starts_with("/files/") {
            let mut files = self.files.lock().unwrap();
            match recorded.method.as_str() {
                "PUT" => {
                    files.insert(recorded.path.clone(), body.to_vec());
                    Reply::status(201)
                }
                _ => match files.get(&recorded.path) {
                    Some(content) => {
                        Reply { status: 200, headers: Vec::new(), body: String::from_utf8_lossy(content).into_owned() }
                    }
                    None => Reply::status(404),
                },
            }
        } else {
            let step = self.steps.lock().unwrap().pop_front();
            match step {
                Some(step) => step(&recorded),
                None => Reply::status(204),
            }
        };
        self.log.lock().unwrap().push(recorded);
        let mut response = Response::new(Full::new(Bytes::from(reply.body)));
        *response.status_mut() = hyper::StatusCode::from_u16(reply.status).unwrap();
        for (name, value) in reply.headers {
            response.headers_mut().append(name, value.parse().unwrap());
        }
        response
    }

    fn script(&self, step: impl FnOnce(&Recorded) -> Reply + Send + 'static) {
        self.steps.lock().unwrap().push_back(Box::new(step));
    }

    /// Answers the Inform with an InformResponse echoing its ID.
    fn inform_response(&self) {
        self.script(|r| {
            Reply::soap(soap(&r.id(), "<cwmp:InformResponse><MaxEnvelopes>1</MaxEnvelopes></cwmp:InformResponse>"))
        });
    }

    /// Answers the next POST with this ACS request.
    fn request(&self, id: &str, body: &str) {
        let message = soap(id, body);
        self.script(move |_| Reply::soap(message));
    }

    fn posts(&self) -> Vec<Recorded> {
        self.log.lock().unwrap().iter().filter(|r| r.method == "POST").cloned().collect()
    }

    fn informs(&self) -> Vec<roost_cwmp::Inform> {
        self.posts()
            .iter()
            .filter_map(|r| match decode_cpe_message(r.body.as_bytes()).map(|e| e.body) {
                Ok(CpeBody::Request(CpeRequest::Inform(inform))) => Some(inform),
                _ => None,
            })
            .collect()
    }

    fn pending_steps(&self) -> usize {
        self.steps.lock().unwrap().len()
    }
}

/// An ACS message written by hand, prefixes and all as a Java ACS would write them.
fn soap(id: &str, body: &str) -> String {
    format!(
        r#"<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:soapenc="http://schemas.xmlsoap.org/soap/encoding/" xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xmlns:cwmp="urn:dslforum-org:cwmp-1-0"><soapenv:Header><cwmp:ID soapenv:mustUnderstand="1">{id}</cwmp:ID></soapenv:Header><soapenv:Body>{body}</soapenv:Body></soapenv:Envelope>"#
    )
}

fn model() -> Arc<DataModel> {
    static MODEL: OnceLock<Arc<DataModel>> = OnceLock::new();
    MODEL.get_or_init(|| Arc::new(DataModel::load(bundled_model_path(DataModelKind::Tr181)).unwrap())).clone()
}

fn config(base: &str) -> FleetConfig {
    let mut config = FleetConfig::new(format!("{base}/acs"), model());
    config.start = StartMode::Manual;
    config.retry = false;
    config.reboot_delay = Duration::from_millis(100);
    config
}

const WAIT: Duration = Duration::from_secs(10);

fn inform_of(r: &Recorded) -> roost_cwmp::Inform {
    match r.decoded() {
        CpeBody::Request(CpeRequest::Inform(inform)) => inform,
        other => panic!("expected an Inform, got {other:?}"),
    }
}

fn event_codes(inform: &roost_cwmp::Inform) -> Vec<(String, String)> {
    inform.events.iter().map(|e| (e.code.clone(), e.command_key.clone())).collect()
}

#[tokio::test]
async fn one_full_session_inform_empty_post_gpv_unknown_method_and_204() {
    let (acs, base) = Acs::start().await;
    acs.script(|r| {
        Reply::soap(soap(&r.id(), "<cwmp:InformResponse><MaxEnvelopes>1</MaxEnvelopes></cwmp:InformResponse>"))
            .with("set-cookie", "acs-session=abc123; Path=/; HttpOnly")
    });
    acs.request(
        "gpv-1",
        r#"<cwmp:GetParameterValues><ParameterNames soapenc:arrayType="xsd:string[2]"><string>Device.ManagementServer.PeriodicInformInterval</string><string>Device.ManagementServer.ConnectionRequestPassword</string></ParameterNames></cwmp:GetParameterValues>"#,
    );
    acs.request("x-1", "<cwmp:X_Frobnicate><Foo>1</Foo></cwmp:X_Frobnicate>");
    let fleet = Fleet::start(config(&base)).await.unwrap();
    let device = fleet.device(0);
    let report = device.inform_now(&[]).await.unwrap();

    assert!(report.is_ok(), "{:?}", report.error);
    assert_eq!(report.methods(), ["GetParameterValues", "X_Frobnicate"]);
    assert_eq!(report.faults().iter().map(|f| f.code).collect::<Vec<_>>(), [9000]);
    assert_eq!(report.http_statuses, [200, 200, 200, 204]);
    assert_eq!(report.seq, 0);
    assert_eq!(acs.pending_steps(), 0);

    let posts = acs.posts();
    assert_eq!(posts.len(), 4);
    // The Inform: first contact, identity from the tree, forced parameters.
    let inform = inform_of(&posts[0]);
    assert_eq!(event_codes(&inform), [("0 BOOTSTRAP".into(), String::new()), ("1 BOOT".into(), String::new())]);
    assert_eq!(inform.device_id.serial_number, "SIM000000");
    assert_eq!(inform.device_id.product_class, "Device2");
    assert_eq!(inform.device_id.oui, "1C61B4");
    assert_eq!(inform.retry_count, 0);
    let param = |name: &str| inform.parameters.iter().find(|p| p.name == name).map(|p| p.value.clone());
    assert_eq!(param("Device.ManagementServer.ConnectionRequestURL").as_deref(), Some(device.connection_request_url()));
    assert!(device.connection_request_url().starts_with("http://127.0.0.1:"));
    assert!(device.connection_request_url().ends_with("/SIM000000"));
    assert_eq!(param("Device.ManagementServer.ParameterKey").as_deref(), Some(""));
    assert!(param("Device.RootDataModelVersion").is_some());
    assert!(param("Device.DeviceInfo.SoftwareVersion").is_some());
    assert!(posts[0].body.contains("urn:dslforum-org:cwmp-1-0"));
    assert!(posts[0].header("content-type").unwrap().starts_with("text/xml"));
    assert_eq!(posts[0].header("cookie"), None, "no cookie before the ACS sets one");

    // The empty POST: no body, Content-Length 0, no Content-Type, the cookie echoed bare.
    assert_eq!(posts[1].body, "");
    assert_eq!(posts[1].header("content-length"), Some("0"));
    assert_eq!(posts[1].header("content-type"), None);
    for post in &posts[1..] {
        assert_eq!(post.header("cookie"), Some("acs-session=abc123"));
    }

    // The GPV answer echoes the ID, and the password reads back empty.
    assert_eq!(posts[2].id(), "gpv-1");
    match posts[2].decoded() {
        CpeBody::Response(CpeResponse::GetParameterValues { parameters }) => {
            assert_eq!(parameters.len(), 2);
            assert_eq!(parameters[0].value, "60", "periodic off keeps the model's interval");
            assert_eq!(parameters[1].value, "");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(posts[3].id(), "x-1");
    match posts[3].decoded() {
        CpeBody::Fault(fault) => assert_eq!(fault.code, 9000),
        other => panic!("{other:?}"),
    }

    // Delivered events are gone: the next Inform carries only what is new.
    acs.inform_response();
    let second = device.inform_now(&["6 CONNECTION REQUEST"]).await.unwrap();
    assert!(second.is_ok());
    assert_eq!(second.seq, 1);
    assert_eq!(event_codes(&inform_of(&acs.posts()[4])), [("6 CONNECTION REQUEST".into(), String::new())]);
    assert_eq!(acs.posts()[4].header("cookie"), None, "cookies do not outlive their session");

    // One TCP connection per session, as firmware does: kept alive within, not reused after.
    let posts = acs.posts();
    assert!(posts[..4].iter().all(|p| p.peer == posts[0].peer), "one session, one connection");
    assert_ne!(posts[4].peer, posts[0].peer, "a new session opens a new connection");
}

#[tokio::test]
async fn digest_authentication_to_the_acs_and_nonce_reuse() {
    let (acs, base) = Acs::start().await;
    let challenge = r#"Digest realm="acs", qop="auth", nonce="n-1", opaque="o-1", algorithm=MD5"#;
    let verify = |r: &Recorded| {
        r.header("authorization")
            .is_some_and(|h| verify_digest(h, "POST", "/acs", "acs", "cpe-SIM000000", "pw", |n| n == "n-1").is_ok())
    };
    acs.script(move |_| Reply::status(401).with("www-authenticate", challenge));
    acs.script(move |r| {
        if verify(r) {
            Reply::soap(soap(&r.id(), "<cwmp:InformResponse><MaxEnvelopes>1</MaxEnvelopes></cwmp:InformResponse>"))
        } else {
            Reply::status(401).with("www-authenticate", challenge)
        }
    });
    acs.script(move |r| if verify(r) { Reply::status(204) } else { Reply::status(401) });
    let mut config = config(&base);
    config.acs_username = Some("cpe-{serial}".into());
    config.acs_password = Some("pw".into());
    let fleet = Fleet::start(config).await.unwrap();
    let device = fleet.device(0);
    assert_eq!(device.value("Device.ManagementServer.Username").as_deref(), Some("cpe-SIM000000"));

    let report = device.inform_now(&[]).await.unwrap();
    assert!(report.is_ok(), "{:?}", report.error);
    assert_eq!(report.http_statuses, [401, 200, 204]);
    let posts = acs.posts();
    assert_eq!(posts[0].header("authorization"), None);
    assert!(posts[1].header("authorization").unwrap().contains("nc=00000001"));
    assert!(posts[2].header("authorization").unwrap().contains("nc=00000002"), "the empty POST authenticates too");

    // The next session authenticates up front with the same nonce and a higher count.
    acs.script(move |r| {
        if verify(r) {
            Reply::soap(soap(&r.id(), "<cwmp:InformResponse><MaxEnvelopes>1</MaxEnvelopes></cwmp:InformResponse>"))
        } else {
            Reply::status(401)
        }
    });
    let report = device.inform_now(&["2 PERIODIC"]).await.unwrap();
    assert!(report.is_ok(), "{:?}", report.error);
    assert_eq!(report.http_statuses, [200, 204]);
    assert!(acs.posts()[3].header("authorization").unwrap().contains("nc=00000003"));

    // Wrong credentials: one retry, then the session fails and the next Inform counts it.
    acs.script(move |_| Reply::status(401).with("www-authenticate", challenge));
    acs.script(move |_| Reply::status(401).with("www-authenticate", challenge));
    device.set("Device.ManagementServer.Password", "wrong").unwrap();
    let failed = device.inform_now(&["2 PERIODIC"]).await.unwrap();
    assert_eq!(failed.error, Some(SessionError::Unauthorized));
    assert_eq!(failed.http_statuses, [401, 401]);
    device.set("Device.ManagementServer.Password", "pw").unwrap();
    acs.inform_response();
    let retried = device.inform_now(&[]).await.unwrap();
    assert_eq!(retried.retry_count, 1);
    assert!(retried.has_event("2 PERIODIC"), "undelivered events are kept: {:?}", retried.events);
}

async fn get(url: &str, authorization: Option<String>) -> reqwest::Response {
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let mut request = client.get(url);
    if let Some(value) = authorization {
        request = request.header("authorization", value);
    }
    request.send().await.unwrap()
}

/// A connection request the way an ACS makes it: unauthenticated GET, then Digest.
async fn connection_request(url: &str, user: &str, password: &str) -> (u16, Option<String>) {
    let first = get(url, None).await;
    if first.status() != 401 {
        return (first.status().as_u16(), None);
    }
    let offered =
        first.headers().get_all("www-authenticate").iter().filter_map(|v| v.to_str().ok()).collect::<Vec<_>>();
    let mut challenge = Challenge::select(offered).unwrap();
    let path = reqwest::Url::parse(url).unwrap().path().to_owned();
    let authorization = challenge.authorization("GET", &path, user, password);
    let second = get(url, Some(authorization.clone())).await;
    (second.status().as_u16(), Some(authorization))
}

/// The connection-request throttle of tests that assert it.
const THROTTLED_FOR: Duration = Duration::from_secs(3);

#[tokio::test]
async fn connection_requests_use_the_credentials_the_acs_set() {
    let (acs, base) = Acs::start().await;
    acs.inform_response();
    acs.request(
        "spv-cr",
        r#"<cwmp:SetParameterValues><ParameterList soapenc:arrayType="cwmp:ParameterValueStruct[2]"><ParameterValueStruct><Name>Device.ManagementServer.ConnectionRequestUsername</Name><Value xsi:type="xsd:string">acs-user</Value></ParameterValueStruct><ParameterValueStruct><Name>Device.ManagementServer.ConnectionRequestPassword</Name><Value xsi:type="xsd:string">acs-pass</Value></ParameterValueStruct></ParameterList><ParameterKey>bootstrap-1</ParameterKey></cwmp:SetParameterValues>"#,
    );
    // Throttled for 3 s rather than firmware's usual 1 s: the throttle is asserted after a
    // woken session and two exchanges, which a loaded runner can take a second over.
    let mut config = config(&base);
    config.cr_min_interval = THROTTLED_FOR;
    let fleet = Fleet::start(config).await.unwrap();
    let device = fleet.device(0);
    let boot = device.inform_now(&[]).await.unwrap();
    assert!(boot.is_ok(), "{:?}", boot.error);
    assert_eq!(device.value("Device.ManagementServer.ParameterKey").as_deref(), Some("bootstrap-1"));
    let url = device.connection_request_url().to_owned();

    // Wrong password: challenged again, no session.
    let (status, _) = connection_request(&url, "acs-user", "nope").await;
    assert_eq!(status, 401);
    // Unknown device path.
    let unknown = format!("{}/NOSUCHDEVICE", &url[..url.rfind('/').unwrap()]);
    assert_eq!(get(&unknown, None).await.status(), 404);

    let mark = device.session_count();
    acs.inform_response();
    let (status, authorization) = connection_request(&url, "acs-user", "acs-pass").await;
    assert_eq!(status, 200);
    let woken = device.wait_for_session(mark, WAIT, |r| r.has_event("6 CONNECTION REQUEST")).await.unwrap();
    assert!(woken.is_ok(), "{:?}", woken.error);
    assert_eq!(woken.events.len(), 1);

    // The nonce was single-use: replaying the accepted header is refused.
    assert_eq!(get(&url, authorization).await.status(), 401);
    // A second request within the interval is throttled.
    let (status, _) = connection_request(&url, "acs-user", "acs-pass").await;
    assert_eq!(status, 503);
    tokio::time::sleep(THROTTLED_FOR + Duration::from_millis(100)).await;
    acs.inform_response();
    let mark = device.session_count();
    let (status, _) = connection_request(&url, "acs-user", "acs-pass").await;
    assert_eq!(status, 200);
    device.wait_for_session(mark, WAIT, |r| r.has_event("6 CONNECTION REQUEST")).await.unwrap();
}

#[tokio::test]
async fn firmware_download_then_reboot_then_transfer_complete() {
    let (acs, base) = Acs::start().await;
    let firmware = b"ROOST-FIRMWARE-IMAGE".to_vec();
    acs.files.lock().unwrap().insert("/files/XX230v-2.0.1.bin".into(), firmware.clone());
    acs.inform_response();
    acs.request(
        "dl-1",
        &format!(
            "<cwmp:Download><CommandKey>fw-key</CommandKey><FileType>1 Firmware Upgrade Image</FileType><URL>{base}/files/XX230v-2.0.1.bin</URL><Username></Username><Password></Password><FileSize>{}</FileSize><TargetFileName></TargetFileName><DelaySeconds>0</DelaySeconds><SuccessURL></SuccessURL><FailureURL></FailureURL></cwmp:Download>",
            firmware.len()
        ),
    );
    let fleet = Fleet::start(config(&base)).await.unwrap();
    let device = fleet.device(0);
    let mark = device.session_count();
    acs.script(|_| Reply::status(204));
    // The session after the reboot: InformResponse, then TransferCompleteResponse.
    acs.inform_response();
    acs.script(|r| Reply::soap(soap(&r.id(), "<cwmp:TransferCompleteResponse></cwmp:TransferCompleteResponse>")));
    let first = device.inform_now(&[]).await.unwrap();
    assert!(first.is_ok(), "{:?}", first.error);
    match &first.rpcs[0].response {
        CpeBody::Response(CpeResponse::Download { status, .. }) => assert_eq!(*status, 1),
        other => panic!("{other:?}"),
    }

    let done = device.wait_for_session(mark + 1, WAIT, |r| r.has_event("7 TRANSFER COMPLETE")).await.unwrap();
    assert!(done.is_ok(), "{:?}", done.error);
    assert!(done.has_event("1 BOOT"), "firmware upgrades reboot: {:?}", done.events);
    assert_eq!(done.command_key("M Download"), Some("fw-key"));
    assert_eq!(done.transfer_completes.len(), 1);
    assert_eq!(done.transfer_completes[0].fault.code, 0);
    assert_eq!(done.transfer_completes[0].command_key, "fw-key");
    assert_eq!(device.value("Device.DeviceInfo.SoftwareVersion").as_deref(), Some("XX230v-2.0.1"));
    assert!(device.pending_transfer_completes().is_empty());
    assert!(acs.log.lock().unwrap().iter().any(|r| r.method == "GET" && r.path == "/files/XX230v-2.0.1.bin"));
    let inform = acs.informs().pop().unwrap();
    assert!(
        inform.parameters.iter().any(|p| p.name == "Device.DeviceInfo.SoftwareVersion" && p.value == "XX230v-2.0.1")
    );
}

#[tokio::test]
async fn failed_download_reports_9010_and_is_resent_until_acknowledged() {
    let (acs, base) = Acs::start().await;
    acs.inform_response();
    acs.request(
        "dl-2",
        &format!("<cwmp:Download><CommandKey>missing</CommandKey><FileType>1 Firmware Upgrade Image</FileType><URL>{base}/files/nope.bin</URL><DelaySeconds>0</DelaySeconds></cwmp:Download>"),
    );
    let fleet = Fleet::start(config(&base)).await.unwrap();
    let device = fleet.device(0);
    let version = device.value("Device.DeviceInfo.SoftwareVersion");
    acs.script(|_| Reply::status(204));
    // The ACS fails the TransferComplete session once...
    acs.inform_response();
    acs.script(|_| Reply::status(500));
    let mark = device.session_count();
    device.inform_now(&[]).await.unwrap();
    let failed = device.wait_for_session(mark + 1, WAIT, |_| true).await.unwrap();
    assert!(failed.has_event("7 TRANSFER COMPLETE"));
    assert!(!failed.has_event("1 BOOT"), "a failed firmware download does not reboot");
    assert_eq!(failed.error, Some(SessionError::Http(500)));
    assert_eq!(device.pending_transfer_completes()[0].fault.code, 9010);
    assert!(device.pending_transfer_completes()[0].fault.string.contains("404"));
    assert_eq!(device.value("Device.DeviceInfo.SoftwareVersion"), version);

    // ...so the next session sends it again, with its events.
    acs.inform_response();
    acs.script(|r| Reply::soap(soap(&r.id(), "<cwmp:TransferCompleteResponse></cwmp:TransferCompleteResponse>")));
    let again = device.inform_now(&["2 PERIODIC"]).await.unwrap();
    assert!(again.is_ok(), "{:?}", again.error);
    assert!(again.has_event("7 TRANSFER COMPLETE") && again.command_key("M Download") == Some("missing"));
    assert_eq!(again.transfer_completes[0].fault.code, 9010);
    assert!(device.pending_transfer_completes().is_empty());
}

#[tokio::test]
async fn reboot_informs_boot_with_the_command_key_and_resets_uptime() {
    let (acs, base) = Acs::start().await;
    acs.inform_response();
    acs.request("rb", "<cwmp:Reboot><CommandKey>rb-1</CommandKey></cwmp:Reboot>");
    let fleet = Fleet::start(config(&base)).await.unwrap();
    let device = fleet.device(0);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_ne!(device.value("Device.DeviceInfo.UpTime").as_deref(), Some("0"));
    let mark = device.session_count();
    acs.script(|_| Reply::status(204));
    acs.inform_response();
    let first = device.inform_now(&[]).await.unwrap();
    assert_eq!(first.methods(), ["Reboot"]);
    let booted = device.wait_for_session(mark + 1, WAIT, |_| true).await.unwrap();
    assert!(booted.is_ok(), "{:?}", booted.error);
    assert_eq!(booted.events.iter().map(|e| e.code.as_str()).collect::<Vec<_>>(), ["1 BOOT", "M Reboot"]);
    assert_eq!(booted.command_key("M Reboot"), Some("rb-1"));
    assert_eq!(device.value("Device.DeviceInfo.UpTime").as_deref(), Some("0"));
}

#[tokio::test]
async fn factory_reset_loses_acs_settings_and_bootstraps_again() {
    let (acs, base) = Acs::start().await;
    acs.inform_response();
    acs.request(
        "spv",
        r#"<cwmp:SetParameterValues><ParameterList><ParameterValueStruct><Name>Device.ManagementServer.ConnectionRequestPassword</Name><Value xsi:type="xsd:string">acs-pass</Value></ParameterValueStruct></ParameterList><ParameterKey>k</ParameterKey></cwmp:SetParameterValues>"#,
    );
    acs.request("fr", "<cwmp:FactoryReset></cwmp:FactoryReset>");
    let fleet = Fleet::start(config(&base)).await.unwrap();
    let device = fleet.device(0);
    let mark = device.session_count();
    acs.script(|_| Reply::status(204));
    acs.inform_response();
    let first = device.inform_now(&[]).await.unwrap();
    assert_eq!(first.methods(), ["SetParameterValues", "FactoryReset"]);
    let reborn = device.wait_for_session(mark + 1, WAIT, |_| true).await.unwrap();
    assert_eq!(reborn.events.iter().map(|e| e.code.as_str()).collect::<Vec<_>>(), ["0 BOOTSTRAP", "1 BOOT"]);
    assert_ne!(device.value("Device.ManagementServer.ConnectionRequestPassword").as_deref(), Some("acs-pass"));
    assert_eq!(device.value("Device.ManagementServer.ParameterKey").as_deref(), Some(""));
    // The unit keeps what makes it this unit.
    assert_eq!(device.value("Device.DeviceInfo.SerialNumber").as_deref(), Some("SIM000000"));
    assert_eq!(
        device.value("Device.ManagementServer.ConnectionRequestURL").as_deref(),
        Some(device.connection_request_url())
    );
}

#[tokio::test]
async fn upload_puts_a_configuration_file() {
    let (acs, base) = Acs::start().await;
    acs.inform_response();
    acs.request(
        "ul",
        &format!("<cwmp:Upload><CommandKey>ul-1</CommandKey><FileType>1 Vendor Configuration File</FileType><URL>{base}/files/backup.xml</URL><Username></Username><Password></Password><DelaySeconds>0</DelaySeconds></cwmp:Upload>"),
    );
    let fleet = Fleet::start(config(&base)).await.unwrap();
    let device = fleet.device(0);
    let mark = device.session_count();
    acs.script(|_| Reply::status(204));
    acs.inform_response();
    acs.script(|r| Reply::soap(soap(&r.id(), "<cwmp:TransferCompleteResponse></cwmp:TransferCompleteResponse>")));
    device.inform_now(&[]).await.unwrap();
    let done = device.wait_for_session(mark + 1, WAIT, |r| r.has_event("7 TRANSFER COMPLETE")).await.unwrap();
    assert_eq!(done.command_key("M Upload"), Some("ul-1"));
    assert_eq!(done.transfer_completes[0].fault.code, 0);
    let files = acs.files.lock().unwrap();
    let uploaded = String::from_utf8_lossy(&files["/files/backup.xml"]).into_owned();
    assert!(uploaded.contains("serialNumber=\"SIM000000\""));
    assert!(uploaded.contains("Device.WiFi.SSID.1.SSID"));
    assert!(!uploaded.contains("ConnectionRequestPassword"), "secrets stay out of backups");
}

#[tokio::test]
async fn failed_sessions_are_retried_with_backoff_and_retry_count() {
    let (acs, base) = Acs::start().await;
    acs.script(|_| Reply::status(503));
    acs.inform_response();
    let mut config = config(&base);
    config.retry = true;
    config.retry_min_wait = Duration::from_millis(50);
    let fleet = Fleet::start(config).await.unwrap();
    let device = fleet.device(0);
    let failed = device.inform_now(&[]).await.unwrap();
    assert_eq!(failed.error, Some(SessionError::Http(503)));
    let retried = device.wait_for_session(1, WAIT, |_| true).await.unwrap();
    assert!(retried.is_ok(), "{:?}", retried.error);
    assert_eq!(retried.retry_count, 1);
    assert!(retried.has_event("0 BOOTSTRAP"), "bootstrap is retried until delivered");
    let stats = fleet.stats().total();
    assert_eq!((stats.sessions, stats.failures), (1, 1));
}

#[tokio::test]
async fn unreachable_acs_is_a_transport_error() {
    // Bind and drop to get a port nobody listens on.
    let port = TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap().port();
    let fleet = Fleet::start(config(&format!("http://127.0.0.1:{port}"))).await.unwrap();
    let report = fleet.device(0).inform_now(&[]).await.unwrap();
    assert!(matches!(report.error, Some(SessionError::Transport(_))), "{:?}", report.error);
    assert!(report.http_statuses.is_empty());
}

#[tokio::test]
async fn scheduled_inform_and_cwmp_1_2_namespace() {
    let (acs, base) = Acs::start().await;
    acs.inform_response();
    acs.request(
        "si",
        "<cwmp:ScheduleInform><DelaySeconds>0</DelaySeconds><CommandKey>sched</CommandKey></cwmp:ScheduleInform>",
    );
    let mut config = config(&base);
    config.cwmp_version = CwmpVersion::V1_2;
    let fleet = Fleet::start(config).await.unwrap();
    let device = fleet.device(0);
    acs.script(|_| Reply::status(204));
    acs.inform_response();
    let first = device.inform_now(&[]).await.unwrap();
    assert!(first.is_ok(), "{:?}", first.error);
    let scheduled = device.wait_for_session(1, WAIT, |_| true).await.unwrap();
    assert_eq!(
        scheduled.events.iter().map(|e| e.code.as_str()).collect::<Vec<_>>(),
        ["3 SCHEDULED", "M ScheduleInform"]
    );
    assert_eq!(scheduled.command_key("M ScheduleInform"), Some("sched"));
    assert!(acs.posts().iter().filter(|p| !p.body.is_empty()).all(|p| p.body.contains("urn:dslforum-org:cwmp-1-2")));
}

#[tokio::test]
async fn many_devices_share_the_model_and_listener() {
    let (acs, base) = Acs::start().await;
    let mut config = config(&base);
    config.devices = 200;
    let fleet = Fleet::start(config).await.unwrap();
    assert_eq!(fleet.len(), 200);
    let urls: std::collections::HashSet<_> =
        fleet.devices().iter().map(|d| d.connection_request_url().to_owned()).collect();
    assert_eq!(urls.len(), 200);
    assert_eq!(fleet.device(199).serial_number(), "SIM000199");
    assert_eq!(fleet.by_serial("SIM000042").unwrap().index(), 42);
    // Each device holds only its differences from the shared model.
    assert!(fleet.devices().iter().all(|d| d.overlay_len() <= 8), "{}", fleet.device(0).overlay_len());
    // All of them can hold a session at once (the script is empty: every POST gets 204, so
    // each session fails for lack of an InformResponse, which is fine here).
    let tasks: Vec<_> = fleet
        .devices()
        .iter()
        .cloned()
        .map(|d| tokio::spawn(async move { d.inform_now(&[]).await.unwrap() }))
        .collect();
    for task in tasks {
        let report = task.await.unwrap();
        assert_eq!(report.error, Some(SessionError::Http(204)), "a 204 is no InformResponse");
    }
    let informs = acs.informs();
    assert_eq!(informs.len(), 200);
    let serials: std::collections::HashSet<_> = informs.iter().map(|i| i.device_id.serial_number.clone()).collect();
    assert_eq!(serials.len(), 200);
}

#[tokio::test]
async fn cwmp_1_4_offers_its_versions_and_follows_the_acs_choice() {
    let (acs, base) = Acs::start().await;
    acs.script(|r| {
        let body = format!(
            r#"<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:cwmp="urn:dslforum-org:cwmp-1-2"><soapenv:Header><cwmp:ID soapenv:mustUnderstand="1">{}</cwmp:ID><cwmp:UseCWMPVersion soapenv:mustUnderstand="1">1.2</cwmp:UseCWMPVersion></soapenv:Header><soapenv:Body><cwmp:InformResponse><MaxEnvelopes>1</MaxEnvelopes></cwmp:InformResponse></soapenv:Body></soapenv:Envelope>"#,
            r.id()
        );
        Reply::soap(body)
    });
    let mut config = config(&base);
    config.cwmp_version = CwmpVersion::V1_4;
    let fleet = Fleet::start(config).await.unwrap();
    let report = fleet.device(0).inform_now(&[]).await.unwrap();
    assert!(report.is_ok(), "{:?}", report.error);
    assert_eq!(report.cwmp_version, CwmpVersion::V1_2);
    let inform = decode_cpe_message(acs.posts()[0].body.as_bytes()).unwrap();
    assert_eq!(inform.header.supported_cwmp_versions.as_deref(), Some("1.0,1.1,1.2,1.3,1.4"));
}

#[tokio::test]
async fn requested_diagnostics_complete_after_the_session() {
    let (acs, base) = Acs::start().await;
    acs.inform_response();
    acs.request(
        "ping",
        r#"<cwmp:SetParameterValues><ParameterList><ParameterValueStruct><Name>Device.IP.Diagnostics.IPPing.Host</Name><Value xsi:type="xsd:string">192.0.2.9</Value></ParameterValueStruct><ParameterValueStruct><Name>Device.IP.Diagnostics.IPPing.DiagnosticsState</Name><Value xsi:type="xsd:string">Requested</Value></ParameterValueStruct></ParameterList><ParameterKey></ParameterKey></cwmp:SetParameterValues>"#,
    );
    let fleet = Fleet::start(config(&base)).await.unwrap();
    let device = fleet.device(0);
    acs.script(|_| Reply::status(204));
    acs.inform_response();
    let first = device.inform_now(&[]).await.unwrap();
    assert!(first.is_ok(), "{:?}", first.error);
    let done = device.wait_for_session(1, WAIT, |_| true).await.unwrap();
    assert_eq!(done.events.iter().map(|e| e.code.as_str()).collect::<Vec<_>>(), ["8 DIAGNOSTICS COMPLETE"]);
    assert_eq!(device.value("Device.IP.Diagnostics.IPPing.DiagnosticsState").as_deref(), Some("Complete"));
    assert_ne!(device.value("Device.IP.Diagnostics.IPPing.SuccessCount").as_deref(), Some("0"));
}

#[tokio::test]
async fn active_notification_informs_value_change_with_the_parameter() {
    let (acs, base) = Acs::start().await;
    acs.inform_response();
    acs.request(
        "spa",
        r#"<cwmp:SetParameterAttributes><ParameterList><SetParameterAttributesStruct><Name>Device.WiFi.SSID.1.SSID</Name><NotificationChange>1</NotificationChange><Notification>2</Notification><AccessListChange>0</AccessListChange><AccessList></AccessList></SetParameterAttributesStruct></ParameterList></cwmp:SetParameterAttributes>"#,
    );
    let fleet = Fleet::start(config(&base)).await.unwrap();
    let device = fleet.device(0);
    let first = device.inform_now(&[]).await.unwrap();
    assert!(first.is_ok(), "{:?}", first.error);
    assert_eq!(device.attributes("Device.WiFi.SSID.1.SSID").notification, 2);

    acs.inform_response();
    let mark = device.session_count();
    device.set("Device.WiFi.SSID.1.SSID", "Neighbour").unwrap();
    let changed = device.wait_for_session(mark, WAIT, |_| true).await.unwrap();
    assert_eq!(changed.events.iter().map(|e| e.code.as_str()).collect::<Vec<_>>(), ["4 VALUE CHANGE"]);
    let inform = acs.informs().pop().unwrap();
    assert!(inform.parameters.iter().any(|p| p.name == "Device.WiFi.SSID.1.SSID" && p.value == "Neighbour"));
    // Reported once: the next Inform no longer carries it.
    acs.inform_response();
    device.inform_now(&["2 PERIODIC"]).await.unwrap();
    assert!(!acs.informs().pop().unwrap().parameters.iter().any(|p| p.name == "Device.WiFi.SSID.1.SSID"));
}

mod quirks;
