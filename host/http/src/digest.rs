//! HTTP Digest (RFC 7616 with MD5, and RFC 2069 without qop, which old CPE agents still send):
//! parsing challenge/credential headers and computing responses, for both directions.

use md5::{Digest as _, Md5};

/// The `key=value` pairs of a `Digest …` header, quotes removed. Keys are lowercased.
pub fn parse_params(header: &str) -> Option<Vec<(String, String)>> {
    let rest = header.trim();
    let rest = rest.strip_prefix("Digest").or_else(|| rest.strip_prefix("digest"))?.trim_start();
    let mut params = Vec::new();
    let mut chars = rest.char_indices().peekable();
    let bytes = rest;
    loop {
        while let Some((_, c)) = chars.peek() {
            if *c == ',' || c.is_whitespace() {
                chars.next();
            } else {
                break;
            }
        }
        let Some(&(key_start, _)) = chars.peek() else { break };
        let mut key_end = key_start;
        while let Some(&(i, c)) = chars.peek() {
            if c == '=' {
                break;
            }
            key_end = i + c.len_utf8();
            chars.next();
        }
        chars.next()?; // '='
        let key = bytes[key_start..key_end].trim().to_ascii_lowercase();
        let mut value = String::new();
        if let Some(&(_, '"')) = chars.peek() {
            chars.next();
            let mut escaped = false;
            for (_, c) in chars.by_ref() {
                if escaped {
                    value.push(c);
                    escaped = false;
                } else if c == '\\' {
                    escaped = true;
                } else if c == '"' {
                    break;
                } else {
                    value.push(c);
                }
            }
        } else {
            // A token ends at a comma or, in challenges that leave the commas out
            // (`qop=auth nonce="…"`), at white space.
            while let Some(&(_, c)) = chars.peek() {
                if c == ',' || c.is_whitespace() {
                    break;
                }
                value.push(c);
                chars.next();
            }
            value = value.trim().to_owned();
        }
        params.push((key, value));
    }
    Some(params)
}

pub fn param<'a>(params: &'a [(String, String)], key: &str) -> Option<&'a str> {
    params.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

pub fn md5_hex(input: &str) -> String {
    hex::encode(Md5::digest(input.as_bytes()))
}

/// The expected `response` value. With `qop` (auth) per RFC 7616; without, per RFC 2069.
pub fn response(
    username: &str,
    realm: &str,
    password: &str,
    method: &str,
    uri: &str,
    nonce: &str,
    qop: Option<(&str, &str, &str)>, // (qop, nc, cnonce)
) -> String {
    let ha1 = md5_hex(&format!("{username}:{realm}:{password}"));
    let ha2 = md5_hex(&format!("{method}:{uri}"));
    match qop {
        Some((qop, nc, cnonce)) => md5_hex(&format!("{ha1}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}")),
        None => md5_hex(&format!("{ha1}:{nonce}:{ha2}")),
    }
}

/// Constant-time comparison, so response checks leak nothing through timing.
pub fn constant_time_eq(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_2617_example_response() {
        // RFC 2617 §3.5.
        let r = response(
            "Mufasa",
            "testrealm@host.com",
            "Circle Of Life",
            "GET",
            "/dir/index.html",
            "dcd98b7102dd2f0e8b11d0f600bfb0c093",
            Some(("auth", "00000001", "0a4f113b")),
        );
        assert_eq!(r, "6629fae49393a05397450978507c4ef1");
    }

    #[test]
    fn headers_parse_with_and_without_quotes() {
        let p = parse_params(
            r#"Digest username="u", realm="roost", nonce="abc", uri="", qop=auth, nc=00000001, cnonce="x,y", response="r""#,
        )
        .unwrap_or_default();
        assert_eq!(param(&p, "username"), Some("u"));
        assert_eq!(param(&p, "uri"), Some(""));
        assert_eq!(param(&p, "qop"), Some("auth"));
        assert_eq!(param(&p, "cnonce"), Some("x,y"));
        assert_eq!(param(&p, "response"), Some("r"));
        assert!(parse_params("Basic abc").is_none());
    }

    #[test]
    fn challenges_without_commas_parse() {
        // A CPE's connection-request challenge, as sent.
        let p = parse_params(r#"Digest qop="auth" nonce="4f1c9a" realm="cwmpd""#).unwrap_or_default();
        assert_eq!(param(&p, "qop"), Some("auth"));
        assert_eq!(param(&p, "nonce"), Some("4f1c9a"));
        assert_eq!(param(&p, "realm"), Some("cwmpd"));
        let p = parse_params("Digest qop=auth nonce=4f1c9a realm=cwmpd algorithm=MD5").unwrap_or_default();
        assert_eq!(param(&p, "qop"), Some("auth"));
        assert_eq!(param(&p, "nonce"), Some("4f1c9a"));
        assert_eq!(param(&p, "algorithm"), Some("MD5"));
    }
}
