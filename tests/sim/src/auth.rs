//! HTTP authentication both ways: the CPE answering the ACS's challenge (Digest or Basic), and
//! the CPE challenging connection requests (Digest only, as TR-069 requires without TLS).
//!
//! Only MD5 with `qop="auth"` is spoken, because that is what CPE firmware implements; the
//! client also copes with RFC 2069 challenges (no qop) since some ACSs still send them.

use std::fmt::Write;

use base64::Engine;
use md5::{Digest as _, Md5};
use rand::Rng;

/// An authentication challenge from a `WWW-Authenticate` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    Basic,
    Digest(DigestChallenge),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DigestChallenge {
    pub realm: String,
    pub nonce: String,
    pub opaque: Option<String>,
    /// Whether the server offered `qop=auth`; without it the RFC 2069 response is computed.
    pub qop_auth: bool,
    /// Counts requests made with this nonce (`nc`), as a client that reuses the nonce must.
    pub nonce_count: u32,
}

impl Challenge {
    /// Picks the strongest usable challenge among a response's `WWW-Authenticate` headers.
    pub fn select<'a>(headers: impl IntoIterator<Item = &'a str>) -> Option<Self> {
        let mut basic = false;
        for header in headers {
            let (scheme, rest) = header.trim().split_once(' ').unwrap_or((header.trim(), ""));
            if scheme.eq_ignore_ascii_case("digest") {
                let params = parse_params(rest);
                let get = |k: &str| params.iter().find(|(n, _)| n.eq_ignore_ascii_case(k)).map(|(_, v)| v.clone());
                let algorithm_ok = get("algorithm").is_none_or(|a| a.eq_ignore_ascii_case("MD5"));
                let Some(nonce) = get("nonce") else { continue };
                if !algorithm_ok {
                    continue;
                }
                let qop_auth = get("qop").is_some_and(|q| q.split(',').any(|t| t.trim().eq_ignore_ascii_case("auth")));
                return Some(Self::Digest(DigestChallenge {
                    realm: get("realm").unwrap_or_default(),
                    nonce,
                    opaque: get("opaque"),
                    qop_auth,
                    nonce_count: 0,
                }));
            }
            if scheme.eq_ignore_ascii_case("basic") {
                basic = true;
            }
        }
        basic.then_some(Self::Basic)
    }

    /// The `Authorization` header for the next request; advances the nonce count.
    pub fn authorization(&mut self, method: &str, uri: &str, username: &str, password: &str) -> String {
        match self {
            Self::Basic => basic_authorization(username, password),
            Self::Digest(d) => {
                d.nonce_count = d.nonce_count.wrapping_add(1);
                let ha1 = md5_hex(&format!("{username}:{}:{password}", d.realm));
                let ha2 = md5_hex(&format!("{method}:{uri}"));
                let mut header = format!(
                    "Digest username=\"{}\", realm=\"{}\", nonce=\"{}\", uri=\"{}\", algorithm=MD5",
                    quote(username),
                    quote(&d.realm),
                    quote(&d.nonce),
                    quote(uri)
                );
                let response = if d.qop_auth {
                    let nc = format!("{:08x}", d.nonce_count);
                    let cnonce = random_hex(16);
                    let response = md5_hex(&format!("{ha1}:{}:{nc}:{cnonce}:auth:{ha2}", d.nonce));
                    let _ = write!(header, ", qop=auth, nc={nc}, cnonce=\"{cnonce}\"");
                    response
                } else {
                    md5_hex(&format!("{ha1}:{}:{ha2}", d.nonce))
                };
                let _ = write!(header, ", response=\"{response}\"");
                if let Some(opaque) = &d.opaque {
                    let _ = write!(header, ", opaque=\"{}\"", quote(opaque));
                }
                header
            }
        }
    }
}

impl DigestChallenge {
    /// An RFC 2069 `Authorization` header, the way some firmware answers any challenge
    /// ([`Quirks::challenge_with_empty_post`](crate::Quirks::challenge_with_empty_post)): no
    /// `qop`, `nc` or `cnonce` even when `qop="auth"` was offered, no `algorithm`, and
    /// `response = MD5(HA1:nonce:HA2)` with `HA2 = MD5(method:uri)` for whatever `uri` the
    /// firmware writes (`""` in practice). The nonce count is left alone.
    pub fn rfc2069_authorization(&self, method: &str, uri: &str, username: &str, password: &str) -> String {
        let ha1 = md5_hex(&format!("{username}:{}:{password}", self.realm));
        let ha2 = md5_hex(&format!("{method}:{uri}"));
        let response = md5_hex(&format!("{ha1}:{}:{ha2}", self.nonce));
        let mut header = format!(
            "Digest username=\"{}\", realm=\"{}\", nonce=\"{}\", uri=\"{}\", response=\"{response}\"",
            quote(username),
            quote(&self.realm),
            quote(&self.nonce),
            quote(uri)
        );
        if let Some(opaque) = &self.opaque {
            let _ = write!(header, ", opaque=\"{}\"", quote(opaque));
        }
        header
    }
}

pub fn basic_authorization(username: &str, password: &str) -> String {
    let token = base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"));
    format!("Basic {token}")
}

/// The `WWW-Authenticate` value a CPE sends to a connection request without valid credentials.
pub fn digest_challenge(realm: &str, nonce: &str) -> String {
    format!("Digest realm=\"{realm}\", qop=\"auth\", nonce=\"{nonce}\", algorithm=MD5")
}

/// [`digest_challenge`] as some firmware writes it, with no commas between the parameters
/// ([`Quirks::cr_close_after_challenge`](crate::Quirks::cr_close_after_challenge)).
pub fn digest_challenge_without_commas(realm: &str, nonce: &str) -> String {
    format!("Digest qop=\"auth\" nonce=\"{nonce}\" realm=\"{realm}\"")
}

/// A fresh unguessable nonce.
pub fn new_nonce() -> String {
    random_hex(16)
}

/// Why a Digest `Authorization` header was refused: kept for the log, never sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DigestRejection {
    #[error("no Digest credentials")]
    NotDigest,
    #[error("missing field {0}")]
    Missing(&'static str),
    #[error("unknown user")]
    WrongUser,
    #[error("wrong realm")]
    WrongRealm,
    #[error("nonce not issued here or expired")]
    UnknownNonce,
    #[error("only MD5 with qop=auth is accepted")]
    Unsupported,
    #[error("digest-uri does not name the requested resource")]
    WrongUri,
    #[error("wrong response (password mismatch)")]
    WrongResponse,
}

/// Checks a Digest `Authorization` header as a CPE checks a connection request.
///
/// `request_path` is the path the request was sent to; the digest-uri may be that path or an
/// absolute URL ending with it. `nonce_is_ours` says whether the nonce was issued by this CPE
/// recently, so a captured header cannot be replayed forever.
pub fn verify_digest(
    header: &str,
    method: &str,
    request_path: &str,
    realm: &str,
    username: &str,
    password: &str,
    nonce_is_ours: impl FnOnce(&str) -> bool,
) -> Result<(), DigestRejection> {
    let (scheme, rest) = header.trim().split_once(' ').ok_or(DigestRejection::NotDigest)?;
    if !scheme.eq_ignore_ascii_case("digest") {
        return Err(DigestRejection::NotDigest);
    }
    let params = parse_params(rest);
    let get = |k: &'static str| {
        params
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(k))
            .map(|(_, v)| v.as_str())
            .ok_or(DigestRejection::Missing(k))
    };
    if get("username")? != username {
        return Err(DigestRejection::WrongUser);
    }
    if get("realm")? != realm {
        return Err(DigestRejection::WrongRealm);
    }
    if let Ok(algorithm) = get("algorithm")
        && !algorithm.eq_ignore_ascii_case("MD5")
    {
        return Err(DigestRejection::Unsupported);
    }
    let nonce = get("nonce")?;
    let uri = get("uri")?;
    let response = get("response")?;
    let qop = get("qop").map_err(|_| DigestRejection::Unsupported)?;
    if !qop.eq_ignore_ascii_case("auth") {
        return Err(DigestRejection::Unsupported);
    }
    let nc = get("nc")?;
    let cnonce = get("cnonce")?;
    let uri_path = uri.split_once("://").map_or(uri, |(_, rest)| rest.find('/').map_or("/", |i| &rest[i..]));
    if uri_path != request_path {
        return Err(DigestRejection::WrongUri);
    }
    let ha1 = md5_hex(&format!("{username}:{realm}:{password}"));
    let ha2 = md5_hex(&format!("{method}:{uri}"));
    let expected = md5_hex(&format!("{ha1}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}"));
    if !constant_time_eq(expected.as_bytes(), response.to_ascii_lowercase().as_bytes()) {
        return Err(DigestRejection::WrongResponse);
    }
    // Checked last so a stale nonce with otherwise right credentials reads as such.
    if !nonce_is_ours(nonce) {
        return Err(DigestRejection::UnknownNonce);
    }
    Ok(())
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

pub fn md5_hex(input: &str) -> String {
    hex::encode(Md5::digest(input.as_bytes()))
}

fn random_hex(bytes: usize) -> String {
    let mut rng = rand::rng();
    let raw: Vec<u8> = (0..bytes).map(|_| rng.random()).collect();
    hex::encode(raw)
}

fn quote(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

/// Parses `k=v, k="v, with comma"` auth parameters.
fn parse_params(input: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut chars = input.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace() || *c == ',') {
            chars.next();
        }
        let mut name = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' || c == ',' {
                break;
            }
            name.push(c);
            chars.next();
        }
        if name.trim().is_empty() {
            return out;
        }
        let mut value = String::new();
        if chars.peek() == Some(&'=') {
            chars.next();
            while chars.peek().is_some_and(|c| c.is_whitespace()) {
                chars.next();
            }
            if chars.peek() == Some(&'"') {
                chars.next();
                while let Some(c) = chars.next() {
                    match c {
                        '\\' => {
                            if let Some(escaped) = chars.next() {
                                value.push(escaped);
                            }
                        }
                        '"' => break,
                        c => value.push(c),
                    }
                }
            } else {
                while let Some(&c) = chars.peek() {
                    if c == ',' {
                        break;
                    }
                    value.push(c);
                    chars.next();
                }
            }
        }
        out.push((name.trim().to_owned(), value.trim().to_owned()));
    }
}

#[cfg(test)]
mod tests {

    use super::*;

    #[test]
    fn rfc_2617_example_response() {
        // RFC 2617 §3.5: user Mufasa, password "Circle Of Life".
        let header = r#"Digest username="Mufasa", realm="testrealm@host.com", nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", uri="/dir/index.html", qop=auth, nc=00000001, cnonce="0a4f113b", response="6629fae49393a05397450978507c4ef1", opaque="5ccc069c403ebaf9f0171e9517f40e41""#;
        let ok = |n: &str| n == "dcd98b7102dd2f0e8b11d0f600bfb0c093";
        assert_eq!(
            verify_digest(header, "GET", "/dir/index.html", "testrealm@host.com", "Mufasa", "Circle Of Life", ok),
            Ok(())
        );
        assert_eq!(
            verify_digest(header, "GET", "/dir/index.html", "testrealm@host.com", "Mufasa", "circle of life", ok),
            Err(DigestRejection::WrongResponse)
        );
        assert_eq!(
            verify_digest(header, "GET", "/dir/index.html", "testrealm@host.com", "Mufasa", "Circle Of Life", |_| {
                false
            }),
            Err(DigestRejection::UnknownNonce)
        );
        assert_eq!(
            verify_digest(header, "GET", "/other", "testrealm@host.com", "Mufasa", "Circle Of Life", ok),
            Err(DigestRejection::WrongUri)
        );
        assert_eq!(
            verify_digest(header, "GET", "/dir/index.html", "testrealm@host.com", "Simba", "Circle Of Life", ok),
            Err(DigestRejection::WrongUser)
        );
    }

    #[test]
    fn client_and_server_agree() {
        let mut challenge = Challenge::select(["Basic realm=\"x\"", &digest_challenge("roost-sim", "abc123")]).unwrap();
        let header = challenge.authorization("GET", "/SIM1", "user", "p\"w, d");
        assert!(header.contains("nc=00000001"));
        verify_digest(&header, "GET", "/SIM1", "roost-sim", "user", "p\"w, d", |n| n == "abc123").unwrap();
        let second = challenge.authorization("GET", "/SIM1", "user", "p\"w, d");
        assert!(second.contains("nc=00000002"), "a reused nonce must count up: {second}");
        assert_eq!(
            verify_digest(&header, "GET", "/SIM1", "roost-sim", "user", "wrong", |_| true),
            Err(DigestRejection::WrongResponse)
        );
    }

    #[test]
    fn digest_without_qop_is_refused_by_the_cpe() {
        let mut challenge = Challenge::Digest(DigestChallenge {
            realm: "r".into(),
            nonce: "n".into(),
            opaque: None,
            qop_auth: false,
            nonce_count: 0,
        });
        let header = challenge.authorization("GET", "/x", "u", "p");
        assert!(!header.contains("qop"));
        assert_eq!(verify_digest(&header, "GET", "/x", "r", "u", "p", |_| true), Err(DigestRejection::Unsupported));
    }

    #[test]
    fn rfc_2069_response_with_an_empty_uri() {
        let challenge = Challenge::select([r#"Digest realm="acs", qop="auth", nonce="n-1", algorithm=MD5"#]).unwrap();
        let Challenge::Digest(digest) = challenge else { panic!("{challenge:?}") };
        let header = digest.rfc2069_authorization("POST", "", "cpe", "pw");
        let ha1 = md5_hex("cpe:acs:pw");
        let expected = md5_hex(&format!("{ha1}:n-1:{}", md5_hex("POST:")));
        assert_eq!(
            header,
            format!(r#"Digest username="cpe", realm="acs", nonce="n-1", uri="", response="{expected}""#)
        );
        for absent in ["qop", "nc=", "cnonce", "algorithm"] {
            assert!(!header.contains(absent), "{absent} in {header}");
        }
        assert_eq!(digest.nonce_count, 0);
    }

    #[test]
    fn challenge_without_commas_parses_and_verifies() {
        let value = digest_challenge_without_commas("roost-sim", "abc");
        assert_eq!(value, r#"Digest qop="auth" nonce="abc" realm="roost-sim""#);
        let mut challenge = Challenge::select([value.as_str()]).unwrap();
        match &challenge {
            Challenge::Digest(d) => {
                assert_eq!((d.realm.as_str(), d.nonce.as_str(), d.qop_auth), ("roost-sim", "abc", true));
            }
            other => panic!("{other:?}"),
        }
        let header = challenge.authorization("GET", "/S1", "u", "p");
        verify_digest(&header, "GET", "/S1", "roost-sim", "u", "p", |n| n == "abc").unwrap();
    }

    #[test]
    fn basic_only_challenge_and_absolute_uri() {
        assert_eq!(Challenge::select(["Basic realm=\"acs\""]), Some(Challenge::Basic));
        assert_eq!(basic_authorization("Aladdin", "open sesame"), "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==");
        let mut challenge = Challenge::select([digest_challenge("r", "n").as_str()]).unwrap();
        let header = challenge.authorization("GET", "http://127.0.0.1:1234/S1", "u", "p");
        verify_digest(&header, "GET", "/S1", "r", "u", "p", |_| true).unwrap();
    }
}
