//! Devices behind NAT (TR-069 Annex G, TR-111 part 2), without I/O: the STUN Binding messages
//! a CPE keeps its NAT binding open with, and the signed UDP connection request sent through
//! that binding.
//!
//! TR-111 builds on classic STUN (RFC 3489); CPE firmware of the last decade often speaks RFC
//! 5389 instead (the magic cookie in the header). Both are read; an answer is written in the
//! request's own dialect, and its MESSAGE-INTEGRITY is computed the way the request's was.
//!
//! A CPE that wants UDP connection requests sends Binding Requests carrying
//! CONNECTION-REQUEST-BINDING and its `STUNUsername`; when its public address changed it adds
//! BINDING-CHANGE and signs the request with its `STUNPassword` (MESSAGE-INTEGRITY).

use std::net::{IpAddr, SocketAddr};

use hmac::{Hmac, Mac};
use sha1::Sha1;

/// The largest message read: a Binding Request is a few dozen bytes, and RFC 5389 keeps
/// messages within 576 bytes where the path MTU is unknown.
pub const MAX_MESSAGE: usize = 576;
const HEADER: usize = 20;
/// RFC 5389's constant in the header's bytes 4..8; RFC 3489 has 16 random bytes there.
pub const MAGIC_COOKIE: u32 = 0x2112_A442;

const BINDING_REQUEST: u16 = 0x0001;
const BINDING_RESPONSE: u16 = 0x0101;
const BINDING_ERROR_RESPONSE: u16 = 0x0111;

const MAPPED_ADDRESS: u16 = 0x0001;
const USERNAME: u16 = 0x0006;
const MESSAGE_INTEGRITY: u16 = 0x0008;
const ERROR_CODE: u16 = 0x0009;
const XOR_MAPPED_ADDRESS: u16 = 0x0020;
/// TR-111: the Binding Request comes from the port the CPE listens on for UDP connection
/// requests.
const CONNECTION_REQUEST_BINDING: u16 = 0xC001;
/// TR-111: the binding changed since the CPE last said so.
const BINDING_CHANGE: u16 = 0xC002;
/// The value of CONNECTION-REQUEST-BINDING, with its trailing space.
pub const CONNECTION_REQUEST_BINDING_VALUE: &[u8; 20] = b"dslforum.org/TR-111 ";

/// Why bytes are not a Binding Request we answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StunError {
    #[error("shorter than a STUN header")]
    TooShort,
    #[error("longer than {MAX_MESSAGE} bytes")]
    TooLong,
    #[error("the header's length does not match the datagram's")]
    LengthMismatch,
    #[error("message type {0:#06x} is not a Binding Request")]
    NotBindingRequest(u16),
    #[error("attribute {0:#06x} runs past the end of the message")]
    TruncatedAttribute(u16),
    #[error("MESSAGE-INTEGRITY is not 20 bytes")]
    BadIntegrity,
    #[error("USERNAME is not UTF-8")]
    UsernameNotUtf8,
}

/// How a MESSAGE-INTEGRITY was computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// RFC 3489: over the message up to the attribute, as sent, zero-padded to a multiple of 64
    /// bytes.
    Rfc3489,
    /// RFC 5389: over the message up to the attribute, its header's length ending at the
    /// attribute.
    Rfc5389,
    /// Vovida's stund and the client libraries derived from it: over the message up to the
    /// attribute, its header's length zero, unpadded.
    ZeroLength,
}

/// A decoded Binding Request, borrowing the datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindingRequest<'a> {
    /// Header bytes 4..20: the magic cookie and transaction id of RFC 5389, or RFC 3489's
    /// 128-bit transaction id. Echoed in the answer.
    pub transaction: [u8; 16],
    /// `STUNUsername`, trailing NUL padding removed (RFC 3489 pads it to four bytes).
    pub username: Option<&'a str>,
    pub connection_request_binding: bool,
    pub binding_change: bool,
    /// Offset of the MESSAGE-INTEGRITY attribute and its HMAC.
    integrity: Option<(usize, [u8; 20])>,
    bytes: &'a [u8],
}

impl<'a> BindingRequest<'a> {
    /// Reads a Binding Request. Attributes Roost does not use (RESPONSE-ADDRESS, CHANGE-REQUEST,
    /// SOFTWARE, …) are skipped: the answer always goes back to the request's source address,
    /// never to an address the request names (which would make the server a relay). A forged
    /// source still gets an answer it did not ask for, about twice the request's size, as from
    /// any STUN server.
    pub fn decode(bytes: &'a [u8]) -> Result<Self, StunError> {
        if bytes.len() < HEADER {
            return Err(StunError::TooShort);
        }
        if bytes.len() > MAX_MESSAGE {
            return Err(StunError::TooLong);
        }
        let kind = u16::from_be_bytes([bytes[0], bytes[1]]);
        let length = usize::from(u16::from_be_bytes([bytes[2], bytes[3]]));
        if HEADER + length != bytes.len() {
            return Err(StunError::LengthMismatch);
        }
        if kind != BINDING_REQUEST {
            return Err(StunError::NotBindingRequest(kind));
        }
        let mut transaction = [0u8; 16];
        transaction.copy_from_slice(&bytes[4..HEADER]);
        let mut request = Self {
            transaction,
            username: None,
            connection_request_binding: false,
            binding_change: false,
            integrity: None,
            bytes,
        };
        let mut at = HEADER;
        while at + 4 <= bytes.len() {
            let kind = u16::from_be_bytes([bytes[at], bytes[at + 1]]);
            let length = usize::from(u16::from_be_bytes([bytes[at + 2], bytes[at + 3]]));
            let value = bytes.get(at + 4..at + 4 + length).ok_or(StunError::TruncatedAttribute(kind))?;
            match kind {
                USERNAME if request.username.is_none() => {
                    let end = value.iter().rposition(|b| *b != 0).map_or(0, |i| i + 1);
                    request.username =
                        Some(std::str::from_utf8(&value[..end]).map_err(|_| StunError::UsernameNotUtf8)?);
                }
                CONNECTION_REQUEST_BINDING => request.connection_request_binding = true,
                BINDING_CHANGE => request.binding_change = true,
                MESSAGE_INTEGRITY => {
                    let mac: [u8; 20] = value.try_into().map_err(|_| StunError::BadIntegrity)?;
                    request.integrity = Some((at, mac));
                    // What follows MESSAGE-INTEGRITY is not covered by it (RFC 5389 §15.4): a
                    // FINGERPRINT, or anything an attacker appended.
                    break;
                }
                _ => {}
            }
            // Values are padded to four bytes in both dialects.
            at += 4 + length.div_ceil(4) * 4;
        }
        Ok(request)
    }

    /// RFC 5389's magic cookie is in the header.
    pub fn is_rfc5389(&self) -> bool {
        self.transaction[..4] == MAGIC_COOKIE.to_be_bytes()
    }

    pub fn has_integrity(&self) -> bool {
        self.integrity.is_some()
    }

    /// Whether MESSAGE-INTEGRITY verifies under `password`, and how it was computed.
    pub fn verify(&self, password: &[u8]) -> Option<Dialect> {
        let (offset, mac) = self.integrity?;
        let body = &self.bytes[..offset];
        [Dialect::Rfc5389, Dialect::Rfc3489, Dialect::ZeroLength]
            .into_iter()
            .find(|dialect| constant_time_eq(&integrity(body, offset, *dialect, password), &mac))
    }
}

/// The HMAC-SHA1 of `body` (a message up to its MESSAGE-INTEGRITY attribute at `offset`).
fn integrity(body: &[u8], offset: usize, dialect: Dialect, password: &[u8]) -> [u8; 20] {
    let Ok(mut mac) = Hmac::<Sha1>::new_from_slice(password) else { return [0; 20] };
    match dialect {
        Dialect::Rfc5389 => {
            // The length as if MESSAGE-INTEGRITY were the last attribute.
            let length = u16::try_from(offset - HEADER + 24).unwrap_or(u16::MAX);
            mac.update(&body[..2]);
            mac.update(&length.to_be_bytes());
            mac.update(&body[4..]);
        }
        Dialect::Rfc3489 => {
            mac.update(body);
            let padding = (64 - body.len() % 64) % 64;
            mac.update(&[0u8; 64][..padding]);
        }
        Dialect::ZeroLength => {
            mac.update(&body[..2]);
            mac.update(&[0, 0]);
            mac.update(&body[4..]);
        }
    }
    mac.finalize().into_bytes().into()
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The Binding Response to `request`: the address it came from (MAPPED-ADDRESS, and
/// XOR-MAPPED-ADDRESS for an RFC 5389 client), signed with `password` in `dialect` when the
/// request was signed (RFC 3489 §9.2 asks it).
pub fn binding_response(request: &BindingRequest<'_>, source: SocketAddr, signed: Option<(&[u8], Dialect)>) -> Vec<u8> {
    let mut out = header(BINDING_RESPONSE, &request.transaction);
    attribute(&mut out, MAPPED_ADDRESS, &address_value(source, None));
    if request.is_rfc5389() {
        attribute(&mut out, XOR_MAPPED_ADDRESS, &address_value(source, Some(&request.transaction)));
    }
    if let Some((password, dialect)) = signed {
        sign(&mut out, password, dialect);
    }
    out
}

/// A Binding Error Response: `401` asks an unsigned request for MESSAGE-INTEGRITY.
pub fn binding_error(request: &BindingRequest<'_>, code: u16, reason: &str) -> Vec<u8> {
    let mut out = header(BINDING_ERROR_RESPONSE, &request.transaction);
    let mut value = vec![0, 0, u8::try_from(code / 100).unwrap_or(6), u8::try_from(code % 100).unwrap_or(0)];
    value.extend_from_slice(reason.as_bytes());
    attribute(&mut out, ERROR_CODE, &value);
    out
}

fn header(kind: u16, transaction: &[u8; 16]) -> Vec<u8> {
    let mut out = Vec::with_capacity(96);
    out.extend_from_slice(&kind.to_be_bytes());
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(transaction);
    out
}

/// Appends an attribute, padded to four bytes, and keeps the header's length current.
fn attribute(out: &mut Vec<u8>, kind: u16, value: &[u8]) {
    out.extend_from_slice(&kind.to_be_bytes());
    out.extend_from_slice(&u16::try_from(value.len()).unwrap_or(u16::MAX).to_be_bytes());
    out.extend_from_slice(value);
    out.resize(out.len().div_ceil(4) * 4, 0);
    let length = u16::try_from(out.len() - HEADER).unwrap_or(u16::MAX);
    out[2..4].copy_from_slice(&length.to_be_bytes());
}

/// Appends MESSAGE-INTEGRITY as the last attribute.
fn sign(out: &mut Vec<u8>, password: &[u8], dialect: Dialect) {
    let offset = out.len();
    // RFC 3489 covers the header as sent, which counts the attribute about to be added.
    let length = u16::try_from(offset - HEADER + 24).unwrap_or(u16::MAX);
    out[2..4].copy_from_slice(&length.to_be_bytes());
    let mac = integrity(out, offset, dialect, password);
    attribute(out, MESSAGE_INTEGRITY, &mac);
}

/// MAPPED-ADDRESS, or XOR-MAPPED-ADDRESS when `xor` holds the cookie and transaction id.
fn address_value(address: SocketAddr, xor: Option<&[u8; 16]>) -> Vec<u8> {
    // A dual-stack socket sees IPv4 clients as `::ffff:a.b.c.d`: they are told an IPv4 address.
    let address = SocketAddr::new(address.ip().to_canonical(), address.port());
    let mask = |i: usize| xor.map_or(0, |t| t[i]);
    let port = address.port().to_be_bytes();
    let mut value = vec![0, 0, port[0] ^ mask(0), port[1] ^ mask(1)];
    match address.ip() {
        IpAddr::V4(ip) => {
            value[1] = 1;
            value.extend(ip.octets().iter().enumerate().map(|(i, b)| b ^ mask(i)));
        }
        IpAddr::V6(ip) => {
            value[1] = 2;
            value.extend(ip.octets().iter().enumerate().map(|(i, b)| b ^ mask(i)));
        }
    }
    value
}

/// A UDP connection request (TR-069 Annex G.2.1.3): an HTTP GET in one datagram, signed with
/// the connection-request password. The CPE ignores a message whose `id` it has seen, so
/// copies of one message may be sent to beat packet loss.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UdpConnectionRequest {
    /// Seconds since the Unix epoch: the CPE refuses messages older than the last it took.
    pub timestamp: u64,
    /// Equal in the copies of one message.
    pub id: u32,
    /// The connection-request username.
    pub username: String,
    /// A random string, so that two messages in one second differ.
    pub cnonce: String,
}

impl UdpConnectionRequest {
    /// The signature: hex HMAC-SHA1 over `ts`, `id`, `un` and `cn` concatenated, keyed with the
    /// connection-request password.
    pub fn signature(&self, password: &str) -> String {
        let Ok(mut mac) = Hmac::<Sha1>::new_from_slice(password.as_bytes()) else { return String::new() };
        mac.update(self.timestamp.to_string().as_bytes());
        mac.update(self.id.to_string().as_bytes());
        mac.update(self.username.as_bytes());
        mac.update(self.cnonce.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }

    /// The datagram to send to the CPE's `address` (`host:port`, its
    /// `UDPConnectionRequestAddress`).
    pub fn encode(&self, address: &str, password: &str) -> String {
        format!(
            "GET http://{address}?ts={}&id={}&un={}&cn={}&sig={} HTTP/1.1\r\nHost: {address}\r\n\r\n",
            self.timestamp,
            self.id,
            query_escape(&self.username),
            query_escape(&self.cnonce),
            self.signature(password),
        )
    }
}

/// Percent-escapes what would end a query value; the signature covers the raw value.
fn query_escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 5769 §2.1: a request signed with a short-term credential, with a FINGERPRINT after
    /// its MESSAGE-INTEGRITY.
    const RFC5769_REQUEST: [u8; 108] = [
        0x00, 0x01, 0x00, 0x58, 0x21, 0x12, 0xa4, 0x42, 0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6, 0x86, 0xfa, 0x87,
        0xdf, 0xae, 0x80, 0x22, 0x00, 0x10, 0x53, 0x54, 0x55, 0x4e, 0x20, 0x74, 0x65, 0x73, 0x74, 0x20, 0x63, 0x6c,
        0x69, 0x65, 0x6e, 0x74, 0x00, 0x24, 0x00, 0x04, 0x6e, 0x00, 0x01, 0xff, 0x80, 0x29, 0x00, 0x08, 0x93, 0x2f,
        0xf9, 0xb1, 0x51, 0x26, 0x3b, 0x36, 0x00, 0x06, 0x00, 0x09, 0x65, 0x76, 0x74, 0x6a, 0x3a, 0x68, 0x36, 0x76,
        0x59, 0x20, 0x20, 0x20, 0x00, 0x08, 0x00, 0x14, 0x9a, 0xea, 0xa7, 0x0c, 0xbf, 0xd8, 0xcb, 0x56, 0x78, 0x1e,
        0xf2, 0xb5, 0xb2, 0xd3, 0xf2, 0x49, 0xc1, 0xb5, 0x71, 0xa2, 0x80, 0x28, 0x00, 0x04, 0xe5, 0x7a, 0x3b, 0xcf,
    ];

    #[test]
    fn reads_and_verifies_the_rfc_5769_sample_request() {
        let request = BindingRequest::decode(&RFC5769_REQUEST).unwrap();
        assert!(request.is_rfc5389());
        assert_eq!(request.username, Some("evtj:h6vY"));
        assert_eq!(request.verify(b"VOkJxbRl1RmTxUk/WvJxBt"), Some(Dialect::Rfc5389));
        assert_eq!(request.verify(b"VOkJxbRl1RmTxUk/WvJxBT"), None);
        assert!(!request.connection_request_binding && !request.binding_change);
    }

    /// A TR-111 Binding Request as a classic client builds it: no cookie, username padded
    /// with NULs, MESSAGE-INTEGRITY over the message padded to 64 bytes.
    fn classic_request(username: &str, password: &[u8], change: bool) -> Vec<u8> {
        let mut out = header(BINDING_REQUEST, &[7; 16]);
        let mut name = username.as_bytes().to_vec();
        name.resize(name.len().div_ceil(4) * 4, 0);
        attribute(&mut out, USERNAME, &name);
        attribute(&mut out, CONNECTION_REQUEST_BINDING, CONNECTION_REQUEST_BINDING_VALUE);
        if change {
            attribute(&mut out, BINDING_CHANGE, &[]);
        }
        sign(&mut out, password, Dialect::Rfc3489);
        out
    }

    #[test]
    fn reads_a_classic_tr111_request_and_answers_in_its_dialect() {
        let bytes = classic_request("00259E-HG8245H-48575443A1B2", b"pw", true);
        let request = BindingRequest::decode(&bytes).unwrap();
        assert!(!request.is_rfc5389());
        assert_eq!(request.username, Some("00259E-HG8245H-48575443A1B2"));
        assert!(request.connection_request_binding && request.binding_change);
        assert_eq!(request.verify(b"pw"), Some(Dialect::Rfc3489));
        assert_eq!(request.verify(b"other"), None);

        let source: SocketAddr = "203.0.113.7:40001".parse().unwrap();
        let response = binding_response(&request, source, Some((b"pw", Dialect::Rfc3489)));
        assert_eq!(&response[..2], &BINDING_RESPONSE.to_be_bytes());
        assert_eq!(&response[4..20], &[7; 16]);
        assert_eq!(usize::from(u16::from_be_bytes([response[2], response[3]])), response.len() - HEADER);
        // MAPPED-ADDRESS first: family 1, port, address; no XOR-MAPPED-ADDRESS for a classic client.
        assert_eq!(&response[20..32], &[0, 1, 0, 8, 0, 1, 0x9c, 0x41, 203, 0, 113, 7]);
        assert_eq!(&response[32..34], &MESSAGE_INTEGRITY.to_be_bytes());
        // Its integrity, computed here from RFC 3489 §11.2.8 rather than by the code under test:
        // HMAC-SHA1 over the message before the attribute (its header counting the attribute),
        // zero-padded to 64 bytes.
        let mut text = response[..32].to_vec();
        text.resize(64, 0);
        let mut mac = Hmac::<Sha1>::new_from_slice(b"pw").unwrap();
        mac.update(&text);
        assert_eq!(&response[36..56], mac.finalize().into_bytes().as_slice());
    }

    #[test]
    fn a_stund_style_signature_is_accepted_and_answered_alike() {
        // Built by hand as stund's encoder does: the length field zero while signing, no padding.
        let mut bytes = header(BINDING_REQUEST, &[8; 16]);
        attribute(&mut bytes, USERNAME, b"dev1");
        attribute(&mut bytes, CONNECTION_REQUEST_BINDING, CONNECTION_REQUEST_BINDING_VALUE);
        let mut text = bytes.clone();
        text[2..4].copy_from_slice(&[0, 0]);
        let mut mac = Hmac::<Sha1>::new_from_slice(b"pw").unwrap();
        mac.update(&text);
        attribute(&mut bytes, MESSAGE_INTEGRITY, mac.finalize().into_bytes().as_slice());
        let request = BindingRequest::decode(&bytes).unwrap();
        assert_eq!(request.verify(b"pw"), Some(Dialect::ZeroLength));
        assert_eq!(request.verify(b"no"), None);
    }

    #[test]
    fn an_rfc_5389_client_also_gets_the_xor_mapped_address() {
        let mut bytes = header(BINDING_REQUEST, &[0x21, 0x12, 0xa4, 0x42, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
        attribute(&mut bytes, CONNECTION_REQUEST_BINDING, CONNECTION_REQUEST_BINDING_VALUE);
        let request = BindingRequest::decode(&bytes).unwrap();
        let response = binding_response(&request, "192.0.2.1:32853".parse().unwrap(), None);
        // RFC 5769 §2.2's mapped address and its XOR form.
        assert_eq!(&response[32..44], &[0, 0x20, 0, 8, 0, 1, 0xa1, 0x47, 0xe1, 0x12, 0xa6, 0x43]);
    }

    #[test]
    fn a_signed_request_is_checked_up_to_its_integrity_only() {
        let mut bytes = classic_request("dev", b"pw", false);
        // Bytes after MESSAGE-INTEGRITY are not covered and not read.
        let mut extra = Vec::new();
        attribute_raw(&mut extra, BINDING_CHANGE, &[]);
        bytes.extend_from_slice(&extra);
        let length = u16::try_from(bytes.len() - HEADER).unwrap();
        bytes[2..4].copy_from_slice(&length.to_be_bytes());
        let request = BindingRequest::decode(&bytes).unwrap();
        assert!(!request.binding_change, "an attribute after the signature is ignored");
    }

    fn attribute_raw(out: &mut Vec<u8>, kind: u16, value: &[u8]) {
        out.extend_from_slice(&kind.to_be_bytes());
        out.extend_from_slice(&u16::try_from(value.len()).unwrap().to_be_bytes());
        out.extend_from_slice(value);
    }

    #[test]
    fn malformed_messages_are_refused_with_a_reason() {
        assert_eq!(BindingRequest::decode(&[0; 10]), Err(StunError::TooShort));
        assert_eq!(BindingRequest::decode(&[0; MAX_MESSAGE + 1]), Err(StunError::TooLong));
        let good = classic_request("dev", b"pw", false);
        let mut short = good.clone();
        short.pop();
        assert_eq!(BindingRequest::decode(&short), Err(StunError::LengthMismatch));
        let mut response = good.clone();
        response[1] = 0x01;
        response[0] = 0x01;
        assert_eq!(BindingRequest::decode(&response), Err(StunError::NotBindingRequest(0x0101)));
        // An attribute claiming more bytes than there are.
        let mut truncated = header(BINDING_REQUEST, &[1; 16]);
        attribute_raw(&mut truncated, USERNAME, &[b'a'; 4]);
        truncated[22..24].copy_from_slice(&200u16.to_be_bytes());
        let length = u16::try_from(truncated.len() - HEADER).unwrap();
        truncated[2..4].copy_from_slice(&length.to_be_bytes());
        assert_eq!(BindingRequest::decode(&truncated), Err(StunError::TruncatedAttribute(USERNAME)));
        let mut bad_name = header(BINDING_REQUEST, &[1; 16]);
        attribute(&mut bad_name, USERNAME, &[0xff, 0xfe, 0, 0]);
        assert_eq!(BindingRequest::decode(&bad_name), Err(StunError::UsernameNotUtf8));
    }

    #[test]
    fn arbitrary_bytes_never_panic_the_reader() {
        // Mutations of a valid request and plain noise, from a fixed xorshift sequence.
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let valid = classic_request("device", b"pw", true);
        for round in 0..20_000 {
            let mut bytes = if round % 2 == 0 { valid.clone() } else { vec![0; (next() % 96) as usize] };
            for _ in 0..(next() % 8) {
                if bytes.is_empty() {
                    break;
                }
                let at = (next() as usize) % bytes.len();
                bytes[at] = next() as u8;
            }
            // Keep the header's length honest half the time, so attributes get read.
            if bytes.len() >= HEADER && round % 4 < 2 {
                let length = u16::try_from(bytes.len() - HEADER).unwrap();
                bytes[2..4].copy_from_slice(&length.to_be_bytes());
                bytes[0..2].copy_from_slice(&BINDING_REQUEST.to_be_bytes());
            }
            if let Ok(request) = BindingRequest::decode(&bytes) {
                let _ = request.verify(b"pw");
                let _ = binding_response(&request, "192.0.2.1:1".parse().unwrap(), Some((b"pw", Dialect::Rfc3489)));
            }
        }
    }

    #[test]
    fn an_error_response_carries_its_code_and_reason() {
        let bytes = classic_request("dev", b"pw", false);
        let request = BindingRequest::decode(&bytes).unwrap();
        let error = binding_error(&request, 401, "Unauthorized");
        assert_eq!(&error[..2], &BINDING_ERROR_RESPONSE.to_be_bytes());
        assert_eq!(&error[20..28], &[0, 9, 0, 16, 0, 0, 4, 1]);
        assert_eq!(&error[28..40], b"Unauthorized");
    }

    #[test]
    fn a_udp_connection_request_is_signed_over_its_fields() {
        let message = UdpConnectionRequest {
            timestamp: 1_120_673_700,
            id: 1234,
            username: "CPE57689".into(),
            cnonce: "XTGRWIPC6D3IPXS3".into(),
        };
        let mut mac = Hmac::<Sha1>::new_from_slice(b"secret").unwrap();
        mac.update(b"11206737001234CPE57689XTGRWIPC6D3IPXS3");
        let expected = hex::encode(mac.finalize().into_bytes());
        assert_eq!(message.signature("secret"), expected);
        assert_eq!(
            message.encode("10.1.1.1:8080", "secret"),
            format!(
                "GET http://10.1.1.1:8080?ts=1120673700&id=1234&un=CPE57689&cn=XTGRWIPC6D3IPXS3&sig={expected} HTTP/1.1\r\nHost: 10.1.1.1:8080\r\n\r\n"
            )
        );
        let odd = UdpConnectionRequest { username: "a b&c".into(), ..message };
        assert!(odd.encode("h:1", "s").contains("un=a%20b%26c&"));
    }
}
