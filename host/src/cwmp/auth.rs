//! CPE authentication to the CWMP endpoint.
//!
//! Digest with MD5 and qop=auth when the connection is not encrypted; Basic only over TLS
//! (or when an operator explicitly allows it). Nonces are stateless — a timestamp and an HMAC
//! under a per-process key — so a CPE may reuse one across connections (some do, with
//! `nc=00000001` each time) until it expires, and no nonce table grows with the fleet.
//! A CPE authenticates once per session: many send credentials only on POSTs with a body.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;

use super::digest;
use crate::app::App;
use crate::store::credentials::{self, CpeCredential};

const NONCE_LIFETIME: Duration = Duration::from_secs(300);

/// Signs Digest nonces.
pub struct NonceKey([u8; 32]);

impl std::fmt::Debug for NonceKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NonceKey(..)")
    }
}

impl NonceKey {
    pub fn random() -> Self {
        let mut key = [0u8; 32];
        rand::rng().fill_bytes(&mut key);
        Self(key)
    }

    fn sign(&self, timestamp: u64) -> String {
        // HMAC accepts keys of any length.
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&self.0) else { return String::new() };
        mac.update(&timestamp.to_be_bytes());
        let tag = mac.finalize().into_bytes();
        format!("{timestamp:x}.{}", hex::encode(&tag[..16]))
    }

    pub fn issue(&self) -> String {
        self.sign(unix_seconds())
    }

    /// Whether the nonce is ours: `Some(true)` if fresh, `Some(false)` if expired (stale).
    fn check(&self, nonce: &str) -> Option<bool> {
        let (timestamp, _) = nonce.split_once('.')?;
        let timestamp = u64::from_str_radix(timestamp, 16).ok()?;
        if !digest::constant_time_eq(&self.sign(timestamp), nonce) {
            return None;
        }
        Some(unix_seconds().saturating_sub(timestamp) <= NONCE_LIFETIME.as_secs())
    }
}

fn unix_seconds() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// The outcome of checking an `Authorization` header.
#[derive(Debug)]
pub enum Verdict {
    Accepted(CpeCredential),
    /// Challenge again; `stale` tells the CPE only its nonce was old.
    Challenge {
        stale: bool,
    },
}

/// Checks an Authorization header on a POST to `uri`.
pub async fn verify(app: &App, authorization: Option<&str>, tls: bool) -> anyhow::Result<Verdict> {
    let Some(header) = authorization.map(str::trim) else {
        return Ok(Verdict::Challenge { stale: false });
    };
    if let Some(encoded) = header.strip_prefix("Basic ").or_else(|| header.strip_prefix("basic ")) {
        if !tls && !app.config.cwmp.allow_basic_without_tls {
            tracing::warn!("CPE sent Basic credentials over plain HTTP; refused");
            return Ok(Verdict::Challenge { stale: false });
        }
        let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(encoded.trim()) else {
            return Ok(Verdict::Challenge { stale: false });
        };
        let decoded = String::from_utf8_lossy(&decoded);
        let Some((username, password)) = decoded.split_once(':') else {
            return Ok(Verdict::Challenge { stale: false });
        };
        return Ok(match lookup(app, username).await? {
            Some((credential, stored)) if digest::constant_time_eq(&stored, password) => Verdict::Accepted(credential),
            _ => Verdict::Challenge { stale: false },
        });
    }
    let Some(params) = digest::parse_params(header) else {
        return Ok(Verdict::Challenge { stale: false });
    };
    let field = |k: &str| digest::param(&params, k);
    let (Some(username), Some(nonce), Some(given)) = (field("username"), field("nonce"), field("response")) else {
        return Ok(Verdict::Challenge { stale: false });
    };
    let fresh = match app.nonce_key.check(nonce) {
        Some(fresh) => fresh,
        None => return Ok(Verdict::Challenge { stale: false }),
    };
    let Some((credential, password)) = lookup(app, username).await? else {
        return Ok(Verdict::Challenge { stale: false });
    };
    let realm = field("realm").unwrap_or(&app.config.cwmp.realm);
    // Agents send uri="" or the full URL; the response is computed over what they sent.
    let uri = field("uri").unwrap_or("");
    let qop = match field("qop") {
        Some(qop) => Some((qop, field("nc").unwrap_or(""), field("cnonce").unwrap_or(""))),
        None => None,
    };
    let expected = digest::response(username, realm, &password, "POST", uri, nonce, qop);
    if !digest::constant_time_eq(&expected, &given.to_ascii_lowercase()) {
        return Ok(Verdict::Challenge { stale: false });
    }
    if !fresh {
        return Ok(Verdict::Challenge { stale: true });
    }
    Ok(Verdict::Accepted(credential))
}

async fn lookup(app: &App, username: &str) -> anyhow::Result<Option<(CpeCredential, String)>> {
    let Some(credential) = credentials::by_username(&app.store, username).await? else {
        return Ok(None);
    };
    let password = app.secrets.open_string(&credential.password)?;
    Ok(Some((credential, password)))
}

/// The `WWW-Authenticate` header value for a challenge.
pub fn challenge(app: &App, stale: bool) -> String {
    let stale = if stale { ", stale=true" } else { "" };
    format!(
        "Digest realm=\"{}\", qop=\"auth\", nonce=\"{}\", algorithm=MD5{stale}",
        app.config.cwmp.realm,
        app.nonce_key.issue()
    )
}

/// Whether `credential` may be used by the device `device_id` onboarding into `org` (the org
/// its URL names, if any): a device-scoped credential fits only its device, an
/// organization-scoped one only that organization's URL.
pub fn permits(credential: &CpeCredential, device_id: &str, url_org: Option<i64>) -> bool {
    if credential.device_id.as_deref().is_some_and(|d| d != device_id) {
        return false;
    }
    match (credential.org_id, url_org) {
        (Some(credential_org), Some(url_org)) => credential_org == url_org,
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nonces_verify_and_forgeries_do_not() {
        let key = NonceKey::random();
        let nonce = key.issue();
        assert_eq!(key.check(&nonce), Some(true));
        assert_eq!(NonceKey::random().check(&nonce), None);
        assert_eq!(key.check("0.deadbeef"), None);
        let old = key.sign(unix_seconds() - 3600);
        assert_eq!(key.check(&old), Some(false));
    }
}
