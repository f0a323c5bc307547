//! One CWMP session over HTTP, as firmware runs it.
//!
//! Inform → InformResponse; then each pending TransferComplete → TransferCompleteResponse;
//! then an empty POST, and from there every ACS request is applied and answered until the ACS
//! answers with HTTP 204 or an empty body. Cookies are kept for the session (first `;` segment
//! of each `Set-Cookie`), a 401 is answered once with Digest or Basic credentials, and the
//! Digest challenge is kept so later requests (and later sessions) authenticate up front with
//! an increasing nonce count, as real CPEs do.
//!
//! Two firmware habits ([`Quirks`]) change this: a session opened with a bare empty POST to be
//! challenged, then RFC 2069 credentials ([`Quirks::challenge_with_empty_post`]); and an agent
//! that crashes on a large GetParameterValues, dropping the connection unanswered
//! ([`Quirks::gpv_crash_at`]).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use chrono::{SecondsFormat, Utc};
use hyper::HeaderMap;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, COOKIE, SET_COOKIE, WWW_AUTHENTICATE};
use rand::Rng;
use roost_cwmp::{
    AcsBody, AcsRequest, AcsResponse, CpeBody, CpeRequest, CwmpVersion, DecodeError, EventStruct, Fault, Header,
    TransferComplete, decode_acs_message, encode_cpe_message,
};

use crate::auth::{Challenge, basic_authorization};
use crate::device::DeviceState;
use crate::inform;
use crate::quirks::Quirks;
use crate::rpc::{AfterSession, method_not_supported};

mod transport;

use transport::Transport;

/// Most ACS requests one session may carry before the CPE gives up on a looping ACS.
const MAX_RPCS_PER_SESSION: usize = 10_000;

/// What happened in one session, for tests and the load statistics.
#[derive(Debug, Clone)]
pub struct SessionReport {
    /// Position of this session in the device's life, from 0.
    pub seq: u64,
    /// Index of the device in its fleet.
    pub device: usize,
    pub serial_number: String,
    /// The events the Inform carried, in order.
    pub events: Vec<EventStruct>,
    /// The Inform's RetryCount.
    pub retry_count: u32,
    pub started_at: chrono::DateTime<Utc>,
    /// From the Inform POST to the end of the session.
    pub duration: Duration,
    /// The CWMP version the session was spoken in (after 1.4 negotiation).
    pub cwmp_version: CwmpVersion,
    /// TransferCompletes the ACS acknowledged in this session.
    pub transfer_completes: Vec<TransferComplete>,
    /// ACS requests received, in order, each with what the CPE answered.
    pub rpcs: Vec<RpcExchange>,
    /// Status of every HTTP response, 401 challenges included.
    pub http_statuses: Vec<u16>,
    /// `None` when the ACS ended the session with 204 / an empty body.
    pub error: Option<SessionError>,
    /// Over TLS, one entry per handshake of the session: whether it resumed a TLS session of
    /// an earlier one (a ticket or session id the ACS gave).
    pub tls_resumed: Vec<bool>,
}

/// One ACS request and the CPE's answer.
#[derive(Debug, Clone)]
pub struct RpcExchange {
    /// The method name as the ACS sent it (unknown methods included).
    pub method: String,
    /// `None` for a method the codec does not know (answered with fault 9000).
    pub request: Option<AcsRequest>,
    pub response: CpeBody,
}

impl RpcExchange {
    pub fn fault(&self) -> Option<&Fault> {
        match &self.response {
            CpeBody::Fault(fault) => Some(fault),
            _ => None,
        }
    }
}

impl SessionReport {
    /// Whether the ACS ended the session properly.
    pub fn is_ok(&self) -> bool {
        self.error.is_none()
    }

    /// The ACS's RPC methods, in the order received.
    pub fn methods(&self) -> Vec<&str> {
        self.rpcs.iter().map(|r| r.method.as_str()).collect()
    }

    /// Faults the CPE returned, in order.
    pub fn faults(&self) -> Vec<&Fault> {
        self.rpcs.iter().filter_map(RpcExchange::fault).collect()
    }

    /// Whether the Inform carried an event with this code (`"6 CONNECTION REQUEST"`).
    pub fn has_event(&self, code: &str) -> bool {
        self.events.iter().any(|e| e.code == code)
    }

    /// The CommandKey of the first event with this code.
    pub fn command_key(&self, code: &str) -> Option<&str> {
        self.events.iter().find(|e| e.code == code).map(|e| e.command_key.as_str())
    }
}

/// Why a session ended without the ACS's 204.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SessionError {
    #[error("HTTP {0} from the ACS")]
    Http(u16),
    #[error("the ACS refused the credentials (401 after authenticating)")]
    Unauthorized,
    #[error("connecting to or talking with the ACS: {0}")]
    Transport(String),
    #[error("no answer from the ACS within {0:?}")]
    Timeout(Duration),
    #[error("undecodable message from the ACS: {0}")]
    Decode(String),
    #[error("the ACS answered with fault {} {}", .0.code, .0.string)]
    AcsFault(Fault),
    #[error("unexpected message from the ACS: {0}")]
    Unexpected(String),
    #[error("the ACS sent more than {MAX_RPCS_PER_SESSION} requests in one session")]
    TooManyRequests,
    #[error("bad ACS URL {0:?}")]
    BadUrl(String),
    /// [`Quirks::challenge_with_empty_post`]: the ACS answered the bare empty POST that opens
    /// the session with this status (or a 401 without a Digest challenge) instead of a Digest
    /// 401, and the firmware cannot go on.
    #[error("the ACS answered the empty POST asking for a challenge with HTTP {0}, not a Digest 401")]
    NoChallenge(u16),
    /// [`Quirks::gpv_crash_at`]: the agent crashed on a GetParameterValues too large for it,
    /// leaving it unanswered and dropping the connection.
    #[error("the CPE agent crashed on a GetParameterValues too large for it (connection dropped)")]
    AgentCrashed,
}

/// Fleet-wide settings a session needs.
pub(crate) struct SessionSettings {
    pub version: CwmpVersion,
    pub http_timeout: Duration,
    pub quirks: Arc<Quirks>,
    /// [`Quirks::challenge_with_empty_post`] applies: the quirk is on and the fleet gave the
    /// devices ACS credentials.
    pub ask_for_challenge: bool,
    /// For an `https://` ACS (see [`crate::fleet::FleetConfig::tls`]).
    pub tls: Option<Arc<rustls::ClientConfig>>,
}

/// Where a session's HTTP goes and with which credentials, read from the device's tree at
/// session start (the ACS may change `ManagementServer.URL` or the credentials).
struct Exchange {
    transport: Transport,
    /// Request target, also the Digest `uri`.
    target: String,
    username: String,
    password: String,
    challenge: Option<Challenge>,
    cookies: Vec<(String, String)>,
    statuses: Vec<u16>,
    /// [`Quirks::challenge_with_empty_post`] firmware: RFC 2069 credentials with `uri=""`,
    /// sent only on POSTs with a body (and on the retry after a 401).
    rfc2069: bool,
}

impl Exchange {
    /// The `Authorization` for the next POST, if any.
    fn authorization(&mut self, has_body: bool, retrying: bool) -> Option<String> {
        let challenge = self.challenge.as_mut()?;
        if !self.rfc2069 {
            return Some(challenge.authorization("POST", &self.target, &self.username, &self.password));
        }
        if !has_body && !retrying {
            // The empty POST arrives bare.
            return None;
        }
        Some(match challenge {
            Challenge::Digest(digest) => digest.rfc2069_authorization("POST", "", &self.username, &self.password),
            Challenge::Basic => basic_authorization(&self.username, &self.password),
        })
    }

    /// Keeps the first `;` segment of each `Set-Cookie` for the rest of the session.
    fn keep_cookies(&mut self, headers: &HeaderMap) {
        for cookie in headers.get_all(SET_COOKIE) {
            let Ok(cookie) = cookie.to_str() else { continue };
            let pair = cookie.split(';').next().unwrap_or("").trim();
            if let Some((name, value)) = pair.split_once('=') {
                let (name, value) = (name.trim().to_owned(), value.trim().to_owned());
                match self.cookies.iter_mut().find(|(k, _)| *k == name) {
                    Some(slot) => slot.1 = value,
                    None => self.cookies.push((name, value)),
                }
            }
        }
    }

    /// [`Quirks::challenge_with_empty_post`]: opens the session with a bare empty POST and
    /// takes the Digest challenge it must draw; from here on credentials are RFC 2069's.
    async fn ask_for_challenge(&mut self) -> Result<(), SessionError> {
        self.challenge = None;
        let reply = self.transport.post(&self.target, &[], Bytes::new()).await?;
        self.statuses.push(reply.status);
        self.keep_cookies(&reply.headers);
        let offered = Challenge::select(reply.headers.get_all(WWW_AUTHENTICATE).iter().filter_map(|v| v.to_str().ok()));
        match offered {
            Some(challenge @ Challenge::Digest(_)) if reply.status == 401 => {
                self.challenge = Some(challenge);
                self.rfc2069 = true;
                Ok(())
            }
            _ => Err(SessionError::NoChallenge(reply.status)),
        }
    }

    async fn post(&mut self, body: Option<&str>) -> Result<(u16, Bytes), SessionError> {
        let mut challenged = false;
        loop {
            let mut headers = Vec::new();
            // The empty POST has no Content-Type, as firmware sends it.
            if body.is_some() {
                headers.push((CONTENT_TYPE, "text/xml; charset=\"utf-8\"".to_owned()));
            }
            if !self.cookies.is_empty() {
                let jar: Vec<String> = self.cookies.iter().map(|(k, v)| format!("{k}={v}")).collect();
                headers.push((COOKIE, jar.join("; ")));
            }
            if let Some(authorization) = self.authorization(body.is_some(), challenged) {
                headers.push((AUTHORIZATION, authorization));
            }
            let payload = body.map_or_else(Bytes::new, |b| Bytes::copy_from_slice(b.as_bytes()));
            let reply = self.transport.post(&self.target, &headers, payload).await?;
            self.statuses.push(reply.status);
            self.keep_cookies(&reply.headers);
            if reply.status == 401 {
                let offered =
                    Challenge::select(reply.headers.get_all(WWW_AUTHENTICATE).iter().filter_map(|v| v.to_str().ok()));
                // One retry: a second 401 means the credentials are wrong, not stale.
                match offered {
                    Some(challenge) if !challenged => {
                        challenged = true;
                        self.challenge = Some(challenge);
                        continue;
                    }
                    _ => return Err(SessionError::Unauthorized),
                }
            }
            return Ok((reply.status, reply.body));
        }
    }
}

/// Runs one session for a device. Events and TransferCompletes stay pending in `state`
/// until the ACS acknowledges them; the caller publishes the report and carries out the
/// returned after-session work.
pub(crate) async fn run(
    settings: &SessionSettings,
    state: &Mutex<DeviceState>,
    device: usize,
    seq: u64,
) -> (SessionReport, Vec<AfterSession>) {
    let started = Instant::now();
    let prepared = lock(state).prepare_inform();
    let mut report = SessionReport {
        seq,
        device,
        serial_number: prepared.inform.device_id.serial_number.clone(),
        events: prepared.inform.events.clone(),
        retry_count: prepared.inform.retry_count,
        started_at: Utc::now(),
        duration: Duration::ZERO,
        cwmp_version: settings.version,
        transfer_completes: Vec::new(),
        rpcs: Vec::new(),
        http_statuses: Vec::new(),
        error: None,
        tls_resumed: Vec::new(),
    };
    let mut after = Vec::new();
    let mut exchange = reqwest::Url::parse(&prepared.acs_url)
        .map_err(|_| SessionError::BadUrl(prepared.acs_url.clone()))
        .and_then(|url| {
            let mut target = url.path().to_owned();
            if let Some(query) = url.query() {
                target.push('?');
                target.push_str(query);
            }
            Ok(Exchange {
                transport: Transport::new(&url, settings.http_timeout, settings.tls.as_ref())?,
                target,
                username: prepared.username.clone(),
                password: prepared.password.clone(),
                challenge: prepared.challenge.clone(),
                cookies: Vec::new(),
                statuses: Vec::new(),
                rfc2069: false,
            })
        });
    let result = match &mut exchange {
        Ok(exchange) => converse(exchange, settings, state, &prepared, &mut report, &mut after).await,
        Err(error) => Err(error.clone()),
    };
    report.duration = started.elapsed();
    report.error = result.err();
    let mut guard = lock(state);
    if let Ok(mut exchange) = exchange {
        report.http_statuses = std::mem::take(&mut exchange.statuses);
        report.tls_resumed = std::mem::take(&mut exchange.transport.tls_resumed);
        // RFC 2069 firmware asks for a fresh challenge every session: nothing to keep.
        if !exchange.rfc2069 {
            guard.challenge = exchange.challenge;
        }
    }
    guard.finish_session(report.error.is_none());
    (report, after)
}

fn lock(state: &Mutex<DeviceState>) -> std::sync::MutexGuard<'_, DeviceState> {
    match state.lock() {
        Ok(guard) => guard,
        Err(poisoned) => poisoned.into_inner(),
    }
}

async fn converse(
    exchange: &mut Exchange,
    settings: &SessionSettings,
    state: &Mutex<DeviceState>,
    prepared: &inform::Prepared,
    report: &mut SessionReport,
    after: &mut Vec<AfterSession>,
) -> Result<(), SessionError> {
    let mut version = settings.version;
    let mut header = Header { id: Some(new_id()), ..Header::default() };
    if version >= CwmpVersion::V1_3 {
        header.session_timeout = Some(settings.http_timeout.as_secs().max(1).try_into().unwrap_or(u32::MAX));
    }
    if version == CwmpVersion::V1_4 {
        header.supported_cwmp_versions = Some("1.0,1.1,1.2,1.3,1.4".to_owned());
    }
    let inform_body =
        encode_cpe_message(version, &header, &CpeBody::Request(CpeRequest::Inform(prepared.inform.clone())));
    if settings.ask_for_challenge {
        exchange.ask_for_challenge().await?;
    }
    let (status, body) = exchange.post(Some(&inform_body)).await?;
    let answer = expect_response(status, &body, "InformResponse")?;
    if !matches!(answer.body, AcsBody::Response(AcsResponse::Inform)) {
        return Err(unexpected(&answer.body, "InformResponse"));
    }
    // A 1.4 ACS may pick an older version for the rest of the session, never a newer one.
    if let Some(chosen) = answer.header.use_cwmp_version.as_deref().and_then(CwmpVersion::parse)
        && chosen <= version
    {
        version = chosen;
    }
    report.cwmp_version = version;
    lock(state).inform_delivered(&prepared.inform.events, &prepared.changed);
    let hold_requests = answer.header.hold_requests == Some(true);

    if !hold_requests {
        for transfer in &prepared.transfers {
            let header = Header { id: Some(new_id()), ..Header::default() };
            let message = CpeBody::Request(CpeRequest::TransferComplete(transfer.clone()));
            let (status, body) = exchange.post(Some(&encode_cpe_message(version, &header, &message))).await?;
            let answer = expect_response(status, &body, "TransferCompleteResponse")?;
            if !matches!(answer.body, AcsBody::Response(AcsResponse::TransferComplete)) {
                return Err(unexpected(&answer.body, "TransferCompleteResponse"));
            }
            lock(state).transfer_acknowledged(transfer);
            report.transfer_completes.push(transfer.clone());
        }
    }

    let mut outgoing: Option<String> = None;
    loop {
        let (status, body) = exchange.post(outgoing.as_deref()).await?;
        if status == 204 || (status == 200 && body.iter().all(u8::is_ascii_whitespace)) {
            return Ok(());
        }
        if status != 200 {
            return Err(SessionError::Http(status));
        }
        if report.rpcs.len() >= MAX_RPCS_PER_SESSION {
            return Err(SessionError::TooManyRequests);
        }
        let (id, exchange_record, answer) = match decode_acs_message(&body) {
            Ok(envelope) => match envelope.body {
                AcsBody::Request(request) => {
                    if settings.quirks.crashes_on(&request) {
                        // The agent dies: no answer, and its socket goes with it.
                        exchange.transport.close();
                        return Err(SessionError::AgentCrashed);
                    }
                    let handled = lock(state).cpe.handle(&request);
                    after.extend(handled.after);
                    let record = RpcExchange {
                        method: request.method_name().to_owned(),
                        request: Some(request),
                        response: handled.body.clone(),
                    };
                    (envelope.header.id, record, handled.body)
                }
                other => return Err(unexpected(&other, "a request or the end of the session")),
            },
            Err(DecodeError::UnknownMethod { method }) => {
                let fault = CpeBody::Fault(method_not_supported());
                let record = RpcExchange { method, request: None, response: fault.clone() };
                (scan_id(&body), record, fault)
            }
            Err(error) => return Err(SessionError::Decode(error.to_string())),
        };
        report.rpcs.push(exchange_record);
        let header = Header { id, ..Header::default() };
        outgoing = Some(encode_cpe_message(version, &header, &answer));
    }
}

fn expect_response(status: u16, body: &[u8], expected: &str) -> Result<roost_cwmp::Envelope<AcsBody>, SessionError> {
    if status != 200 {
        return Err(SessionError::Http(status));
    }
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(SessionError::Unexpected(format!("empty body instead of {expected}")));
    }
    let envelope = decode_acs_message(body).map_err(|e| SessionError::Decode(e.to_string()))?;
    if let AcsBody::Fault(fault) = envelope.body {
        return Err(SessionError::AcsFault(fault));
    }
    Ok(envelope)
}

fn unexpected(body: &AcsBody, expected: &str) -> SessionError {
    let got = match body {
        AcsBody::Request(request) => request.method_name().to_owned(),
        AcsBody::Response(response) => format!("{response:?}"),
        AcsBody::Fault(fault) => format!("fault {}", fault.code),
    };
    SessionError::Unexpected(format!("{got} instead of {expected}"))
}

/// The `cwmp:ID` of a message the codec could not decode, so the 9000 fault still echoes it.
fn scan_id(body: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(body);
    let mut rest = text.as_ref();
    while let Some(open) = rest.find('<') {
        rest = &rest[open + 1..];
        let end = rest.find('>')?;
        let tag = &rest[..end];
        let name = tag.split_whitespace().next().unwrap_or("");
        let local = name.rsplit(':').next().unwrap_or(name);
        if local == "ID" && !tag.ends_with('/') {
            let content = &rest[end + 1..];
            let close = content.find('<')?;
            return Some(content[..close].to_owned());
        }
    }
    None
}

fn new_id() -> String {
    format!("{:08x}", rand::rng().random::<u32>())
}

/// Now, as CWMP dateTimes are written.
pub(crate) fn now_string() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true)
}

#[cfg(test)]
mod tests;
