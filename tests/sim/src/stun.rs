//! A CPE behind NAT (TR-069 Annex G, TR-111 part 2): the STUN client a device runs once the ACS
//! turns `ManagementServer.STUNEnable` on, the NAT in front of it, and the UDP connection
//! requests that come back through it.
//!
//! Written apart from the ACS's own STUN code, from the standards, so that the two check each
//! other: classic STUN (RFC 3489) as TR-111 asks, MESSAGE-INTEGRITY over the message padded to
//! 64 bytes.
//!
//! The NAT is a UDP socket of the device's own on 127.0.0.1 (so each device has its own public
//! port) that lets in only datagrams from the address the device last sent to, as a
//! port-restricted cone NAT does: a UDP connection request reaches the device only if the ACS
//! sends it from its STUN server's address.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hmac::{Hmac, Mac};
use sha1::Sha1;
use tokio::net::UdpSocket;

use crate::device::{Command, DeviceShared};
use crate::inform::event;

const CONNECTION_REQUEST_BINDING: u16 = 0xC001;
const BINDING_CHANGE: u16 = 0xC002;
const USERNAME: u16 = 0x0006;
const MESSAGE_INTEGRITY: u16 = 0x0008;
const MAPPED_ADDRESS: u16 = 0x0001;
const ERROR_CODE: u16 = 0x0009;

/// The device's STUN settings, as the ACS wrote them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StunSettings {
    pub server: SocketAddr,
    pub username: String,
    pub password: String,
    /// Between keepalive Binding Requests (`STUNMinimumKeepAlivePeriod`, at least 1 s).
    pub keepalive: Duration,
}

impl StunSettings {
    /// The settings in the device's tree, when `STUNEnable` is on and they name a server this
    /// simulator can reach (an IP address, or `localhost`).
    pub(crate) fn read(value: impl Fn(&str) -> String) -> Option<Self> {
        if !matches!(value("STUNEnable").trim(), "1" | "true") {
            return None;
        }
        let host = value("STUNServerAddress");
        let host = if host.trim() == "localhost" { "127.0.0.1".to_owned() } else { host.trim().to_owned() };
        let port: u16 = value("STUNServerPort").trim().parse().ok().filter(|p| *p > 0).unwrap_or(3478);
        let server = format!("{host}:{port}").parse().or_else(|_| format!("[{host}]:{port}").parse()).ok()?;
        let keepalive = value("STUNMinimumKeepAlivePeriod").trim().parse::<u64>().unwrap_or(0).max(1);
        Some(Self {
            server,
            username: value("STUNUsername"),
            password: value("STUNPassword"),
            keepalive: Duration::from_secs(keepalive),
        })
    }
}

/// What the device's STUN client has seen, for tests.
#[derive(Debug, Clone, Default)]
pub struct StunStatus {
    /// The public address the STUN server mapped the device to.
    pub public_address: Option<SocketAddr>,
    /// The server answered a signed Binding Request for that address (the binding is known).
    pub bound: bool,
    /// UDP connection requests that verified and started a session.
    pub udp_connection_requests: u64,
    /// Datagrams refused: from an address the NAT does not let in, or unsigned, stale,
    /// repeated or badly signed connection requests.
    pub refused: u64,
}

/// A Binding Request: `binding` adds CONNECTION-REQUEST-BINDING and USERNAME, `change`
/// BINDING-CHANGE, `password` signs it.
pub fn binding_request(transaction: [u8; 16], binding: Option<&str>, change: bool, password: Option<&str>) -> Vec<u8> {
    let mut body = Vec::new();
    let mut put = |kind: u16, value: &[u8]| {
        body.extend_from_slice(&kind.to_be_bytes());
        body.extend_from_slice(&(value.len() as u16).to_be_bytes());
        body.extend_from_slice(value);
        while !body.len().is_multiple_of(4) {
            body.push(0);
        }
    };
    if let Some(username) = binding {
        put(USERNAME, username.as_bytes());
        put(CONNECTION_REQUEST_BINDING, b"dslforum.org/TR-111 ");
        if change {
            put(BINDING_CHANGE, &[]);
        }
    }
    let length = body.len() + if password.is_some() { 24 } else { 0 };
    let mut message = vec![0x00, 0x01];
    message.extend_from_slice(&(length as u16).to_be_bytes());
    message.extend_from_slice(&transaction);
    message.extend_from_slice(&body);
    if let Some(password) = password {
        // RFC 3489 §11.2.8: HMAC-SHA1 over the message so far, padded with zeros to 64 bytes.
        let mut text = message.clone();
        while !text.len().is_multiple_of(64) {
            text.push(0);
        }
        let Ok(mut mac) = Hmac::<Sha1>::new_from_slice(password.as_bytes()) else { return message };
        mac.update(&text);
        message.extend_from_slice(&MESSAGE_INTEGRITY.to_be_bytes());
        message.extend_from_slice(&20u16.to_be_bytes());
        message.extend_from_slice(&mac.finalize().into_bytes());
    }
    message
}

/// What the server answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    Mapped(SocketAddr),
    Error(u16),
}

/// Reads a Binding Response or Binding Error Response to `transaction`.
pub fn read_answer(bytes: &[u8], transaction: &[u8; 16]) -> Option<Answer> {
    if bytes.len() < 20 || &bytes[4..20] != transaction {
        return None;
    }
    let kind = u16::from_be_bytes([bytes[0], bytes[1]]);
    let mut at = 20;
    while at + 4 <= bytes.len() {
        let attribute = u16::from_be_bytes([bytes[at], bytes[at + 1]]);
        let length = usize::from(u16::from_be_bytes([bytes[at + 2], bytes[at + 3]]));
        let value = bytes.get(at + 4..at + 4 + length)?;
        match (kind, attribute) {
            (0x0101, MAPPED_ADDRESS) if value.len() == 8 && value[1] == 1 => {
                let port = u16::from_be_bytes([value[2], value[3]]);
                let ip = std::net::Ipv4Addr::new(value[4], value[5], value[6], value[7]);
                return Some(Answer::Mapped(SocketAddr::from((ip, port))));
            }
            (0x0111, ERROR_CODE) if value.len() >= 4 => {
                return Some(Answer::Error(u16::from(value[2] & 0x7) * 100 + u16::from(value[3])));
            }
            _ => {}
        }
        at += 4 + length.div_ceil(4) * 4;
    }
    None
}

/// Whether a response carries a MESSAGE-INTEGRITY that checks out under `password` (RFC 3489
/// §11.2.8: HMAC-SHA1 over the message before the attribute, zero-padded to 64 bytes).
pub fn response_signed(bytes: &[u8], password: &str) -> bool {
    let mut at = 20;
    while at + 4 <= bytes.len() {
        let attribute = u16::from_be_bytes([bytes[at], bytes[at + 1]]);
        let length = usize::from(u16::from_be_bytes([bytes[at + 2], bytes[at + 3]]));
        if attribute == MESSAGE_INTEGRITY {
            let Some(mac) = bytes.get(at + 4..at + 24) else { return false };
            let mut text = bytes[..at].to_vec();
            while !text.len().is_multiple_of(64) {
                text.push(0);
            }
            let Ok(mut expected) = Hmac::<Sha1>::new_from_slice(password.as_bytes()) else { return false };
            expected.update(&text);
            return expected.verify_slice(mac).is_ok();
        }
        at += 4 + length.div_ceil(4) * 4;
    }
    false
}

/// Checks a UDP connection request (Annex G.2.1.3) against the device's connection-request
/// credentials; `Some((ts, id))` when it is one to act on.
pub(crate) fn check_connection_request(message: &str, username: &str, password: &str) -> Option<(u64, String)> {
    let line = message.lines().next()?;
    let target = line.strip_prefix("GET ")?.strip_suffix(" HTTP/1.1")?;
    let query = target.split_once('?')?.1;
    let field =
        |name: &str| query.split('&').find_map(|pair| pair.strip_prefix(name)?.strip_prefix('=')).map(percent_decode);
    let (ts, id, un, cn, sig) = (field("ts")?, field("id")?, field("un")?, field("cn")?, field("sig")?);
    if un != username {
        return None;
    }
    let mut mac = Hmac::<Sha1>::new_from_slice(password.as_bytes()).ok()?;
    mac.update(format!("{ts}{id}{un}{cn}").as_bytes());
    let expected: String = mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect();
    if !expected.eq_ignore_ascii_case(&sig) {
        return None;
    }
    Some((ts.parse().ok()?, id))
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match (bytes[i], text.get(i + 1..i + 3).and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Runs the device's STUN client behind its NAT until the task is aborted.
pub(crate) async fn run(device: Arc<DeviceShared>, settings: StunSettings) {
    let nat = match UdpSocket::bind("127.0.0.1:0").await {
        Ok(socket) => socket,
        Err(error) => {
            tracing::warn!(%error, "the simulated NAT could not bind");
            return;
        }
    };
    let mut buffer = [0u8; 1500];
    let mut last_request: Option<(u64, String)> = None;
    let mut mapped: Option<SocketAddr> = None;
    let mut signed_next = false;
    let mut keepalive = tokio::time::interval(settings.keepalive);
    loop {
        tokio::select! {
            _ = keepalive.tick() => {
                let transaction: [u8; 16] = rand::random();
                // First learn the public address; then keep the binding open, signing when it is
                // new (BINDING-CHANGE) or when the server asked.
                let mut signed = false;
                let request = match mapped {
                    None => binding_request(transaction, None, false, None),
                    Some(_) => {
                        let change = !device.lock().stun.bound;
                        signed = change || signed_next;
                        signed_next = false;
                        binding_request(transaction, Some(&settings.username), change, signed.then_some(settings.password.as_str()))
                    }
                };
                if nat.send_to(&request, settings.server).await.is_err() {
                    continue;
                }
                // The answer, or the next tick.
                let Ok(Ok((length, from))) = tokio::time::timeout(settings.keepalive.min(Duration::from_secs(2)), nat.recv_from(&mut buffer)).await else { continue };
                let discovering = mapped.is_none();
                handle_datagram(&device, &settings, from, &buffer[..length], &mut last_request, Some((&transaction, signed)), &mut mapped, &mut signed_next);
                if signed_next || (discovering && mapped.is_some()) {
                    // Challenged, or the address just learnt: say so at once rather than at the
                    // next keepalive.
                    keepalive.reset_immediately();
                }
            }
            received = nat.recv_from(&mut buffer) => {
                let Ok((length, from)) = received else { continue };
                handle_datagram(&device, &settings, from, &buffer[..length], &mut last_request, None, &mut mapped, &mut signed_next);
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn handle_datagram(
    device: &DeviceShared,
    settings: &StunSettings,
    from: SocketAddr,
    bytes: &[u8],
    last_request: &mut Option<(u64, String)>,
    transaction: Option<(&[u8; 16], bool)>,
    mapped: &mut Option<SocketAddr>,
    signed_next: &mut bool,
) {
    // The NAT lets in only what comes from where the device sent.
    if from != settings.server {
        device.lock().stun.refused += 1;
        return;
    }
    if bytes.starts_with(b"GET ") {
        let mut state = device.lock();
        let root = state.cpe.tree.root().to_owned();
        let value =
            |name: &str| state.cpe.value(&format!("{root}ManagementServer.{name}")).map(|(v, _)| v).unwrap_or_default();
        let (username, password) = (value("ConnectionRequestUsername"), value("ConnectionRequestPassword"));
        let text = String::from_utf8_lossy(bytes);
        match check_connection_request(&text, &username, &password) {
            // A copy of the message just taken (copies share its id): nothing more to do.
            Some((_, id)) if last_request.as_ref().is_some_and(|(_, last)| *last == id) => {}
            // An older timestamp than the last taken: a replay.
            Some((ts, _)) if last_request.as_ref().is_some_and(|(last, _)| ts < *last) => state.stun.refused += 1,
            Some(request) => {
                *last_request = Some(request);
                state.stun.udp_connection_requests += 1;
                drop(state);
                let _ = device
                    .commands
                    .send(Command::Inform { events: vec![event("6 CONNECTION REQUEST", "")], reply: None });
            }
            None => state.stun.refused += 1,
        }
        return;
    }
    let Some((transaction, signed)) = transaction else { return };
    match read_answer(bytes, transaction) {
        Some(Answer::Mapped(public)) => {
            let mut state = device.lock();
            if signed {
                // The answer to a signed request names the binding the server now has, and is
                // signed itself (RFC 3489 §9.2): one that is not is not the server's.
                if response_signed(bytes, &settings.password) {
                    state.stun.bound = state.stun.public_address == Some(public);
                } else {
                    state.stun.refused += 1;
                    return;
                }
            }
            if *mapped != Some(public) {
                state.stun.bound = false;
            }
            *mapped = Some(public);
            if state.stun.public_address != Some(public) {
                state.stun.public_address = Some(public);
                let root = state.cpe.tree.root().to_owned();
                // The device tells the ACS its address (TR-111: UDPConnectionRequestAddress) and
                // that it is behind NAT.
                state
                    .cpe
                    .set_local(&format!("{root}ManagementServer.UDPConnectionRequestAddress"), &public.to_string());
                state.cpe.set_local(&format!("{root}ManagementServer.NATDetected"), "true");
            }
        }
        Some(Answer::Error(401)) => *signed_next = true,
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_request_verifies_only_with_its_own_credentials() {
        let mut mac = Hmac::<Sha1>::new_from_slice(b"pw").unwrap();
        mac.update(b"1700000000");
        mac.update(b"42cpe-1abc");
        let sig: String = mac.finalize().into_bytes().iter().map(|b| format!("{b:02X}")).collect();
        let message = format!(
            "GET http://127.0.0.1:5000?ts=1700000000&id=42&un=cpe-1&cn=abc&sig={sig} HTTP/1.1\r\nHost: 127.0.0.1:5000\r\n\r\n"
        );
        assert_eq!(check_connection_request(&message, "cpe-1", "pw"), Some((1_700_000_000, "42".into())));
        assert_eq!(check_connection_request(&message, "cpe-1", "other"), None);
        assert_eq!(check_connection_request(&message, "cpe-2", "pw"), None);
        assert_eq!(check_connection_request("GET / HTTP/1.1\r\n\r\n", "cpe-1", "pw"), None);
    }

    #[test]
    fn answers_are_read_by_their_transaction() {
        let transaction = [5u8; 16];
        let mut response = vec![0x01, 0x01, 0x00, 0x0c];
        response.extend_from_slice(&transaction);
        response.extend_from_slice(&[0x00, 0x01, 0x00, 0x08, 0x00, 0x01, 0x13, 0x88, 127, 0, 0, 1]);
        assert_eq!(read_answer(&response, &transaction), Some(Answer::Mapped("127.0.0.1:5000".parse().unwrap())));
        assert_eq!(read_answer(&response, &[6u8; 16]), None);
        let mut error = vec![0x01, 0x11, 0x00, 0x08];
        error.extend_from_slice(&transaction);
        error.extend_from_slice(&[0x00, 0x09, 0x00, 0x04, 0, 0, 4, 1]);
        assert_eq!(read_answer(&error, &transaction), Some(Answer::Error(401)));
    }
}
