//! The ACS side of one CWMP session, as a state machine without I/O.
//!
//! The driver feeds each HTTP POST body to [`Session::receive`] and gets back what the CPE
//! said together with a *turn*: a token that can be spent on exactly the replies that are legal
//! at that point. An Inform can only be answered with an InformResponse (or a fault), a CPE
//! request only with its response, and the ACS can only send a request or end the session after
//! an empty POST or a CPE response — so the rules of TR-069 §3.7 that ACSs most often break
//! (sending requests in reply to CPE requests, ending a session with work queued, looping on an
//! RPC the CPE could not parse) cannot be written by the driver.
//!
//! Time comes in as [`Instant`]s from the caller: the session never reads a clock.

use std::time::{Duration, Instant};

use crate::codec::{DecodeError, decode_cpe_message, encode_acs_message};
use crate::fault::{Fault, acs_codes};
use crate::rpc::{AcsBody, AcsRequest, AcsResponse, CpeBody, CpeRequest, Envelope, Header, Inform};
use crate::version::CwmpVersion;

/// What goes back to the CPE: an HTTP status and a body (empty for 204).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    pub body: String,
}

impl Reply {
    fn soap(status: u16, body: String) -> Self {
        Self { status, body }
    }

    fn end() -> Self {
        Self { status: 204, body: String::new() }
    }

    /// Whether this reply ends the session (HTTP 204, empty body).
    pub fn ends_session(&self) -> bool {
        self.status == 204
    }
}

/// An ACS request sent and not yet answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outstanding {
    /// The `cwmp:ID` it was sent with.
    pub id: String,
    pub method: &'static str,
}

/// Spent to answer an Inform.
#[derive(Debug)]
#[must_use = "an Inform must be answered"]
pub struct InformTurn(());

/// Spent to answer a CPE request other than Inform.
#[derive(Debug)]
#[must_use = "a CPE request must be answered"]
pub struct RequestTurn {
    id: Option<String>,
}

/// Spent by the ACS to send its next request or to end the session.
#[derive(Debug)]
#[must_use = "the ACS must send a request or end the session"]
pub struct AcsTurn(());

/// Why an outstanding request got no usable answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unanswered {
    /// An empty POST while a request was outstanding: the CPE could not parse or would not run
    /// it. Sending it again would loop forever, so the caller fails it.
    EmptyPost,
    /// The CPE answered with the response to another method.
    WrongResponse { got: &'static str },
}

/// What the CPE said in one POST.
#[derive(Debug)]
pub enum Incoming {
    Inform {
        inform: Inform,
        turn: InformTurn,
    },
    Request {
        request: CpeRequest,
        turn: RequestTurn,
    },
    Response {
        request: Outstanding,
        response: crate::rpc::CpeResponse,
        turn: AcsTurn,
    },
    Fault {
        request: Outstanding,
        fault: Fault,
        turn: AcsTurn,
    },
    Unanswered {
        request: Outstanding,
        reason: Unanswered,
        turn: AcsTurn,
    },
    /// An empty POST: the CPE has no more requests; the ACS has the floor.
    Empty {
        turn: AcsTurn,
    },
    /// A response or fault with no request outstanding (a CPE repeating itself); ignored.
    Stray {
        method: String,
        turn: AcsTurn,
    },
}

/// Why a POST was refused. The session has already decided the reply; a fatal rejection also
/// ended the session.
#[derive(Debug, thiserror::Error)]
pub enum Rejection {
    #[error("malformed SOAP: {0}")]
    Malformed(#[from] DecodeError),
    #[error("the session must start with an Inform, got {0}")]
    NotInformFirst(String),
    #[error("the CPE supports none of our CWMP versions ({0})")]
    NoCommonVersion(String),
    #[error("a new Inform arrived inside an open session")]
    InformInOpenSession,
    #[error("the session has ended")]
    Ended,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    AwaitingInform,
    Open,
    Ended,
}

/// One CWMP session, from the Inform to the final 204.
#[derive(Debug)]
pub struct Session {
    phase: Phase,
    version: CwmpVersion,
    /// Set when the CPE offered `SupportedCWMPVersions`: every message then carries
    /// `UseCWMPVersion` so the CPE knows which rules we follow.
    negotiated: Option<CwmpVersion>,
    hold_requests: bool,
    /// The Inform's `cwmp:ID`, echoed in the InformResponse.
    pending_id: Option<String>,
    outstanding: Option<Outstanding>,
    requests_sent: u64,
    last_activity: Instant,
    idle_timeout: Duration,
}

impl Session {
    pub fn new(now: Instant, idle_timeout: Duration) -> Self {
        Self {
            phase: Phase::AwaitingInform,
            version: CwmpVersion::default(),
            negotiated: None,
            hold_requests: false,
            pending_id: None,
            outstanding: None,
            requests_sent: 0,
            last_activity: now,
            idle_timeout,
        }
    }

    /// The version this session speaks: the CPE's own, or the negotiated one for CWMP 1.4.
    pub fn version(&self) -> CwmpVersion {
        self.negotiated.unwrap_or(self.version)
    }

    pub fn is_ended(&self) -> bool {
        self.phase == Phase::Ended
    }

    /// Whether the CPE has been silent longer than the idle timeout (it rebooted, lost power or
    /// its agent restarted): the caller drops the session and keeps any outstanding task queued.
    pub fn is_expired(&self, now: Instant) -> bool {
        now.saturating_duration_since(self.last_activity) > self.idle_timeout
    }

    /// When the CPE was last heard from.
    pub fn last_activity(&self) -> Instant {
        self.last_activity
    }

    /// The request sent and not yet answered, if any.
    pub fn outstanding(&self) -> Option<&Outstanding> {
        self.outstanding.as_ref()
    }

    /// Asks the CPE to hold its own requests (TR-069 A.4.1.2) from the next message on.
    pub fn set_hold_requests(&mut self, hold: bool) {
        self.hold_requests = hold;
    }

    /// Decodes a POST body and feeds it to the session. An empty (or all-whitespace) body is the
    /// CPE's empty POST.
    pub fn receive(&mut self, body: &[u8], now: Instant) -> Result<Incoming, (Rejection, Reply)> {
        if is_empty_post(body) {
            return self.receive_envelope(None, now);
        }
        match decode_cpe_message(body) {
            Ok(envelope) => self.receive_envelope(Some(envelope), now),
            Err(error) => {
                let reply = self.fault_reply(
                    None,
                    Fault::new(acs_codes::INVALID_ARGUMENTS, format!("Malformed SOAP: {error}")),
                    400,
                );
                self.phase = Phase::Ended;
                Err((Rejection::Malformed(error), reply))
            }
        }
    }

    /// As [`Session::receive`], for a body the caller already decoded (`None`: an empty POST).
    /// The HTTP layer decodes first to see whether a POST carries an Inform, since an Inform
    /// always starts a new session whatever cookie it came with.
    pub fn receive_envelope(
        &mut self,
        envelope: Option<Envelope<CpeBody>>,
        now: Instant,
    ) -> Result<Incoming, (Rejection, Reply)> {
        self.last_activity = now;
        match self.phase {
            Phase::Ended => Err((Rejection::Ended, Reply::end())),
            Phase::AwaitingInform => self.receive_first(envelope),
            Phase::Open => self.receive_in_session(envelope),
        }
    }

    fn receive_first(&mut self, envelope: Option<Envelope<CpeBody>>) -> Result<Incoming, (Rejection, Reply)> {
        let Some(envelope) = envelope else {
            self.phase = Phase::Ended;
            return Err((Rejection::NotInformFirst("an empty POST".into()), Reply::end()));
        };
        let Envelope { version, header, body } = envelope;
        self.version = version;
        let CpeBody::Request(CpeRequest::Inform(inform)) = body else {
            let got = describe(&body);
            let fault = Fault::new(acs_codes::REQUEST_DENIED, "A session must start with Inform");
            let reply = self.fault_reply(header.id, fault, 400);
            self.phase = Phase::Ended;
            return Err((Rejection::NotInformFirst(got), reply));
        };
        if let Some(offered) = header.supported_cwmp_versions.as_deref() {
            match CwmpVersion::negotiate(offered) {
                Some(version) => self.negotiated = Some(version),
                None => {
                    let fault = Fault::new(
                        acs_codes::VERSION_NOT_SUPPORTED,
                        format!("No common CWMP version; this ACS supports 1.0 to 1.4, the CPE offered {offered}"),
                    );
                    let reply = self.fault_reply(header.id, fault, 500);
                    self.phase = Phase::Ended;
                    return Err((Rejection::NoCommonVersion(offered.to_owned()), reply));
                }
            }
        }
        self.phase = Phase::Open;
        self.pending_id = header.id;
        Ok(Incoming::Inform { inform, turn: InformTurn(()) })
    }

    fn receive_in_session(&mut self, envelope: Option<Envelope<CpeBody>>) -> Result<Incoming, (Rejection, Reply)> {
        let Some(Envelope { header, body, .. }) = envelope else {
            return Ok(match self.outstanding.take() {
                Some(request) => Incoming::Unanswered { request, reason: Unanswered::EmptyPost, turn: AcsTurn(()) },
                None => Incoming::Empty { turn: AcsTurn(()) },
            });
        };
        match body {
            CpeBody::Request(CpeRequest::Inform(_)) => {
                // The CPE started over (it kept a stale cookie): this session is finished and the
                // caller starts a new one with the same envelope.
                self.phase = Phase::Ended;
                Err((Rejection::InformInOpenSession, Reply::end()))
            }
            CpeBody::Request(request) => Ok(Incoming::Request { request, turn: RequestTurn { id: header.id } }),
            CpeBody::Response(response) => Ok(match self.outstanding.take() {
                Some(request) if request.method == response.method_name() => {
                    Incoming::Response { request, response, turn: AcsTurn(()) }
                }
                Some(request) => Incoming::Unanswered {
                    request,
                    reason: Unanswered::WrongResponse { got: response.method_name() },
                    turn: AcsTurn(()),
                },
                None => Incoming::Stray { method: response.method_name().to_owned(), turn: AcsTurn(()) },
            }),
            CpeBody::Fault(fault) => Ok(match self.outstanding.take() {
                Some(request) => Incoming::Fault { request, fault, turn: AcsTurn(()) },
                None => Incoming::Stray { method: format!("Fault {}", fault.code), turn: AcsTurn(()) },
            }),
        }
    }

    /// Answers the Inform with an InformResponse.
    pub fn accept_inform(&mut self, _turn: InformTurn) -> Reply {
        let id = self.pending_id.take();
        Reply::soap(200, self.encode(id, AcsBody::Response(AcsResponse::Inform)))
    }

    /// Refuses the Inform (8005 to shed load, 8001 for a device that may not connect) and ends
    /// the session.
    pub fn reject_inform(&mut self, _turn: InformTurn, fault: Fault) -> Reply {
        let id = self.pending_id.take();
        self.phase = Phase::Ended;
        self.fault_reply(id, fault, 500)
    }

    /// Answers a CPE request.
    pub fn answer(&mut self, turn: RequestTurn, response: AcsResponse) -> Reply {
        Reply::soap(200, self.encode(turn.id, AcsBody::Response(response)))
    }

    /// Answers a CPE request with a fault (8000 for methods this ACS does not implement).
    pub fn answer_fault(&mut self, turn: RequestTurn, fault: Fault) -> Reply {
        self.fault_reply(turn.id, fault, 500)
    }

    /// Sends the next ACS request.
    pub fn send(&mut self, _turn: AcsTurn, request: AcsRequest) -> Reply {
        self.requests_sent += 1;
        let id = self.requests_sent.to_string();
        self.outstanding = Some(Outstanding { id: id.clone(), method: request.method_name() });
        Reply::soap(200, self.encode(Some(id), AcsBody::Request(request)))
    }

    /// Ends the session with 204 No Content.
    pub fn finish(&mut self, _turn: AcsTurn) -> Reply {
        self.phase = Phase::Ended;
        Reply::end()
    }

    fn fault_reply(&self, id: Option<String>, fault: Fault, status: u16) -> Reply {
        Reply::soap(status, self.encode(id, AcsBody::Fault(fault)))
    }

    fn encode(&self, id: Option<String>, body: AcsBody) -> String {
        let header = Header {
            id,
            hold_requests: self.hold_requests.then_some(true),
            use_cwmp_version: self.negotiated.map(|v| v.as_str().to_owned()),
            ..Header::default()
        };
        encode_acs_message(self.version(), &header, &body)
    }
}

fn is_empty_post(body: &[u8]) -> bool {
    body.iter().all(u8::is_ascii_whitespace)
}

fn describe(body: &CpeBody) -> String {
    match body {
        CpeBody::Request(request) => request.method_name().to_owned(),
        CpeBody::Response(response) => format!("{}Response", response.method_name()),
        CpeBody::Fault(fault) => format!("a fault {}", fault.code),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{decode_acs_message, encode_cpe_message};
    use crate::rpc::{CpeResponse, DeviceIdStruct, EventStruct, ParameterValue, TransferComplete};
    use crate::value::ValueType;

    const TIMEOUT: Duration = Duration::from_secs(30);

    fn cpe(version: CwmpVersion, header: Header, body: CpeBody) -> Vec<u8> {
        encode_cpe_message(version, &header, &body).into_bytes()
    }

    fn inform(version: CwmpVersion, header: Header) -> Vec<u8> {
        let inform = Inform {
            device_id: DeviceIdStruct {
                manufacturer: "Acme".into(),
                oui: "A1B2C3".into(),
                product_class: "Box".into(),
                serial_number: "S1".into(),
            },
            events: vec![EventStruct { code: "2 PERIODIC".into(), command_key: String::new() }],
            max_envelopes: 1,
            current_time: "2026-11-21T10:00:00".into(),
            retry_count: 0,
            parameters: vec![ParameterValue {
                name: "Device.DeviceInfo.SoftwareVersion".into(),
                value: "1.0".into(),
                value_type: ValueType::String,
            }],
        };
        cpe(version, header, CpeBody::Request(CpeRequest::Inform(inform)))
    }

    /// A session past its Inform, answered.
    fn opened(version: CwmpVersion) -> (Instant, Session) {
        let t0 = Instant::now();
        let mut session = Session::new(t0, TIMEOUT);
        let Ok(Incoming::Inform { turn, .. }) = session.receive(&inform(version, Header::default()), t0) else {
            panic!("expected the Inform")
        };
        let _ = session.accept_inform(turn);
        (t0, session)
    }

    fn with_id(id: &str) -> Header {
        Header { id: Some(id.into()), ..Header::default() }
    }

    fn acs(reply: &Reply) -> Envelope<AcsBody> {
        decode_acs_message(reply.body.as_bytes()).expect("the ACS must send valid SOAP")
    }

    #[test]
    fn a_whole_session_inform_request_response_and_204() {
        let t0 = Instant::now();
        let mut session = Session::new(t0, TIMEOUT);
        let Incoming::Inform { inform, turn } = session.receive(&inform(CwmpVersion::V1_0, with_id("42")), t0).unwrap()
        else {
            panic!("expected the Inform")
        };
        assert_eq!(inform.device_id.serial_number, "S1");
        let reply = session.accept_inform(turn);
        assert_eq!(reply.status, 200);
        let answer = acs(&reply);
        assert_eq!(answer.header.id.as_deref(), Some("42"), "cwmp:ID is echoed");
        assert_eq!(answer.body, AcsBody::Response(AcsResponse::Inform));
        assert_eq!(answer.version, CwmpVersion::V1_0, "answered in the CPE's namespace");

        // The CPE has a request of its own before the empty POST.
        let tc = CpeBody::Request(CpeRequest::TransferComplete(TransferComplete {
            command_key: "k".into(),
            ..TransferComplete::default()
        }));
        let Incoming::Request { request, turn } =
            session.receive(&cpe(CwmpVersion::V1_0, with_id("43"), tc), t0).unwrap()
        else {
            panic!("expected a request")
        };
        assert_eq!(request.method_name(), "TransferComplete");
        let reply = session.answer(turn, AcsResponse::TransferComplete);
        assert_eq!(acs(&reply).header.id.as_deref(), Some("43"));

        let Incoming::Empty { turn } = session.receive(b"", t0).unwrap() else { panic!("expected the empty POST") };
        let reply = session.send(turn, AcsRequest::GetParameterValues { names: vec!["Device.".into()] });
        let sent_id = acs(&reply).header.id.expect("requests carry an ID");
        assert_eq!(session.outstanding().map(|o| o.method), Some("GetParameterValues"));

        let response = CpeBody::Response(CpeResponse::GetParameterValues { parameters: vec![] });
        let Incoming::Response { request, turn, .. } =
            session.receive(&cpe(CwmpVersion::V1_0, with_id(&sent_id), response), t0).unwrap()
        else {
            panic!("expected the response")
        };
        assert_eq!(request.id, sent_id);
        let reply = session.finish(turn);
        assert!(reply.ends_session());
        assert!(reply.body.is_empty());
        assert!(session.is_ended());
        assert!(matches!(session.receive(b"", t0), Err((Rejection::Ended, _))));
    }

    #[test]
    fn an_empty_post_while_a_request_is_outstanding_fails_it_instead_of_looping() {
        let (t0, mut session) = opened(CwmpVersion::V1_1);
        let Incoming::Empty { turn } = session.receive(b"\r\n", t0).unwrap() else { panic!() };
        let _ = session.send(turn, AcsRequest::FactoryReset);
        let Incoming::Unanswered { request, reason, .. } = session.receive(b"", t0).unwrap() else {
            panic!("an empty POST must not count as an answer")
        };
        assert_eq!(request.method, "FactoryReset");
        assert_eq!(reason, Unanswered::EmptyPost);
        assert!(session.outstanding().is_none());
    }

    #[test]
    fn a_response_to_another_method_is_reported_not_accepted() {
        let (t0, mut session) = opened(CwmpVersion::V1_2);
        let Incoming::Empty { turn } = session.receive(b"", t0).unwrap() else { panic!() };
        let _ = session.send(turn, AcsRequest::Reboot { command_key: "r".into() });
        let body = cpe(CwmpVersion::V1_2, Header::default(), CpeBody::Response(CpeResponse::FactoryReset));
        let Incoming::Unanswered { reason, .. } = session.receive(&body, t0).unwrap() else { panic!() };
        assert_eq!(reason, Unanswered::WrongResponse { got: "FactoryReset" });
    }

    #[test]
    fn cwmp_1_4_negotiates_and_announces_the_version() {
        let t0 = Instant::now();
        let mut session = Session::new(t0, TIMEOUT);
        let header = Header { supported_cwmp_versions: Some("1.0,1.1,1.2,1.3,1.4".into()), ..Header::default() };
        let Incoming::Inform { turn, .. } = session.receive(&inform(CwmpVersion::V1_2, header), t0).unwrap() else {
            panic!()
        };
        let reply = session.accept_inform(turn);
        assert!(reply.body.contains("UseCWMPVersion"), "{}", reply.body);
        assert!(reply.body.contains("urn:dslforum-org:cwmp-1-2"), "1.4 shares the 1.2 namespace");
        assert_eq!(acs(&reply).header.use_cwmp_version.as_deref(), Some("1.4"));
        assert_eq!(session.version(), CwmpVersion::V1_4);
    }

    #[test]
    fn no_common_version_is_fault_8006() {
        let t0 = Instant::now();
        let mut session = Session::new(t0, TIMEOUT);
        let header = Header { supported_cwmp_versions: Some("2.0".into()), ..Header::default() };
        let Err((Rejection::NoCommonVersion(_), reply)) = session.receive(&inform(CwmpVersion::V1_2, header), t0)
        else {
            panic!("expected a version rejection")
        };
        let AcsBody::Fault(fault) = acs(&reply).body else { panic!("expected a fault") };
        assert_eq!(fault.code, 8006);
        assert!(session.is_ended());
    }

    #[test]
    fn the_first_message_must_be_an_inform() {
        let t0 = Instant::now();
        let mut session = Session::new(t0, TIMEOUT);
        let body = cpe(CwmpVersion::V1_0, Header::default(), CpeBody::Request(CpeRequest::GetRpcMethods));
        let Err((Rejection::NotInformFirst(got), reply)) = session.receive(&body, t0) else { panic!() };
        assert_eq!(got, "GetRPCMethods");
        assert_eq!(reply.status, 400);
        let mut session = Session::new(t0, TIMEOUT);
        let Err((Rejection::NotInformFirst(_), reply)) = session.receive(b"", t0) else { panic!() };
        assert!(reply.ends_session(), "an empty POST outside a session just ends it");
    }

    #[test]
    fn malformed_soap_is_answered_with_a_fault_and_ends_the_session() {
        let t0 = Instant::now();
        let mut session = Session::new(t0, TIMEOUT);
        let Err((Rejection::Malformed(_), reply)) = session.receive(b"<not-soap", t0) else { panic!() };
        assert_eq!(reply.status, 400);
        let AcsBody::Fault(fault) = acs(&reply).body else { panic!() };
        assert_eq!(fault.code, 8003);
        assert!(session.is_ended());
    }

    #[test]
    fn a_new_inform_inside_a_session_ends_it() {
        let (t0, mut session) = opened(CwmpVersion::V1_0);
        let again = session.receive(&inform(CwmpVersion::V1_0, Header::default()), t0);
        assert!(matches!(again, Err((Rejection::InformInOpenSession, _))));
    }

    #[test]
    fn unsupported_cpe_requests_get_fault_8000() {
        let (t0, mut session) = opened(CwmpVersion::V1_0);
        let body =
            cpe(CwmpVersion::V1_0, with_id("7"), CpeBody::Request(CpeRequest::Unsupported { method: "Kicked".into() }));
        let Incoming::Request { request, turn } = session.receive(&body, t0).unwrap() else { panic!() };
        let reply =
            session.answer_fault(turn, Fault::new(8000, format!("Method not supported: {}", request.method_name())));
        assert_eq!(reply.status, 500);
        let answer = acs(&reply);
        assert_eq!(answer.header.id.as_deref(), Some("7"));
        assert!(matches!(answer.body, AcsBody::Fault(Fault { code: 8000, .. })));
    }

    #[test]
    fn idle_sessions_expire_by_the_callers_clock() {
        let (t0, mut session) = opened(CwmpVersion::V1_0);
        assert!(!session.is_expired(t0 + TIMEOUT));
        assert!(session.is_expired(t0 + TIMEOUT + Duration::from_millis(1)));
        // Activity moves the deadline.
        let later = t0 + Duration::from_secs(20);
        let _ = session.receive(b"", later).unwrap();
        assert!(!session.is_expired(t0 + TIMEOUT + Duration::from_secs(1)));
    }

    #[test]
    fn hold_requests_is_sent_once_set() {
        let t0 = Instant::now();
        let mut session = Session::new(t0, TIMEOUT);
        let Incoming::Inform { turn, .. } = session.receive(&inform(CwmpVersion::V1_0, Header::default()), t0).unwrap()
        else {
            panic!()
        };
        session.set_hold_requests(true);
        let reply = session.accept_inform(turn);
        assert_eq!(acs(&reply).header.hold_requests, Some(true));
    }
}
