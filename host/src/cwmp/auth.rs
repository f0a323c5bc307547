//! CPE authentication to the CWMP endpoint.
//!
//! Digest with MD5 and qop=auth when the connection is not encrypted; Basic only over TLS
//! (or when an operator explicitly allows it). A CPE authenticates once per session: many send
//! credentials only on POSTs with a body.
//!
//! Nonces are signed rather than stored — a timestamp and an HMAC over it and the client's
//! address, under a key derived from the master key (the same in every replica) — so no table grows with the challenges an attacker asks
//! for, and a nonce is good only from the address it was issued to. What is stored is the use
//! of a nonce, once a response over it verified: the highest nonce count seen, so that a
//! captured `Authorization` header cannot open another session (a repeated or lower `nc` is
//! refused as stale; a nonce without `nc`, RFC 2069 style, opens one session). A nonce must be
//! first used within [`UNUSED_NONCE_LIFETIME`] of its challenge, and is good for
//! [`NONCE_LIFETIME`] in all.
//!
//! Failures are counted per address and per username ([`FailureThrottle`]): past a bound the
//! CPE is told to come back later (503 and `Retry-After`, which CWMP clients honour) before any
//! work is done for it, and the log says so once per window rather than once per attempt.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;

use crate::app::App;
use crate::secrets::Secrets;
use crate::store::Store;
use crate::store::credentials::{self, CpeCredential};
use roost_http::digest;

/// How long a nonce is good once used.
const NONCE_LIFETIME: Duration = Duration::from_secs(300);
/// How long a nonce is good before its first use: a CPE answers its challenge at once.
pub const UNUSED_NONCE_LIFETIME: Duration = Duration::from_secs(30);

/// Signs Digest nonces and remembers their use.
pub struct NonceKey {
    key: [u8; 32],
    /// Nonce → the highest nonce count a verified response used, and when it was first used.
    used: Mutex<HashMap<String, (u32, Instant)>>,
    /// When expired uses were last dropped.
    pruned: Mutex<Instant>,
}

/// How often expired nonce uses are dropped.
const PRUNE_EVERY: Duration = Duration::from_secs(10);

impl std::fmt::Debug for NonceKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NonceKey(..)")
    }
}

/// What a nonce is worth.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NonceState {
    /// Issued here, to this address, and still good.
    Fresh,
    /// Issued here, to this address, but too old: the CPE is challenged again with `stale`.
    Stale,
    /// Not ours, or issued to another address.
    Foreign,
}

impl NonceKey {
    /// The `WWW-Authenticate` header value for a challenge to `client` in `realm`, with a fresh
    /// nonce.
    pub fn challenge(&self, realm: &str, client: IpAddr, stale: bool) -> String {
        let stale = if stale { ", stale=true" } else { "" };
        format!("Digest realm=\"{realm}\", qop=\"auth\", nonce=\"{}\", algorithm=MD5{stale}", self.issue(client))
    }

    pub fn random() -> Self {
        let mut key = [0u8; 32];
        rand::rng().fill_bytes(&mut key);
        Self::keyed(key)
    }

    /// The key every replica with this master key shares: a CPE that the load balancer moves
    /// to another replica between its challenge and its answer is not challenged again.
    pub fn shared(secrets: &Secrets) -> Self {
        Self::keyed(secrets.derived_key("cwmp-digest-nonces"))
    }

    fn keyed(key: [u8; 32]) -> Self {
        Self { key, used: Mutex::new(HashMap::new()), pruned: Mutex::new(Instant::now()) }
    }

    /// `timestamp.salt.tag`: the salt makes every challenge's nonce its own, so that one use
    /// never spends another challenge's.
    fn sign(&self, timestamp: u64, salt: u64, client: IpAddr) -> String {
        // HMAC accepts keys of any length.
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&self.key) else { return String::new() };
        mac.update(&timestamp.to_be_bytes());
        mac.update(&salt.to_be_bytes());
        mac.update(client.to_string().as_bytes());
        let tag = mac.finalize().into_bytes();
        format!("{timestamp:x}.{salt:x}.{}", hex::encode(&tag[..16]))
    }

    pub fn issue(&self, client: IpAddr) -> String {
        self.sign(unix_seconds(), rand::random(), client)
    }

    fn check(&self, nonce: &str, client: IpAddr) -> NonceState {
        let mut parts = nonce.splitn(3, '.');
        let (Some(timestamp), Some(salt)) = (parts.next(), parts.next()) else { return NonceState::Foreign };
        let (Ok(timestamp), Ok(salt)) = (u64::from_str_radix(timestamp, 16), u64::from_str_radix(salt, 16)) else {
            return NonceState::Foreign;
        };
        if !digest::constant_time_eq(&self.sign(timestamp, salt, client), nonce) {
            return NonceState::Foreign;
        }
        let age = unix_seconds().saturating_sub(timestamp);
        let used = self.used.lock().map(|used| used.contains_key(nonce)).unwrap_or(false);
        if age > NONCE_LIFETIME.as_secs() || (!used && age > UNUSED_NONCE_LIFETIME.as_secs()) {
            NonceState::Stale
        } else {
            NonceState::Fresh
        }
    }

    /// Records a verified use of `nonce` with nonce count `nc` (`None`: RFC 2069, no count);
    /// false if that count was used already (a replay).
    fn take(&self, nonce: &str, nc: Option<u32>) -> bool {
        let Ok(mut used) = self.used.lock() else { return false };
        let now = Instant::now();
        // Expired uses go at most every few seconds, not on every login of a large fleet.
        if let Ok(mut last) = self.pruned.lock()
            && now.duration_since(*last) >= PRUNE_EVERY
        {
            *last = now;
            used.retain(|_, (_, first)| now.duration_since(*first) <= NONCE_LIFETIME);
        }
        let count = nc.unwrap_or(0);
        match used.get_mut(nonce) {
            Some((highest, _)) if nc.is_none() || count <= *highest => false,
            Some((highest, _)) => {
                *highest = count;
                true
            }
            None => {
                used.insert(nonce.to_owned(), (count, now));
                true
            }
        }
    }
}

fn unix_seconds() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// Counts authentication failures per client address and per username, in fixed windows.
pub struct FailureThrottle {
    by_address: moka::sync::Cache<IpAddr, std::sync::Arc<AtomicU32>>,
    by_username: moka::sync::Cache<String, std::sync::Arc<AtomicU32>>,
    /// Addresses that authenticated lately: a username under attack from elsewhere still lets
    /// its own devices in.
    trusted: moka::sync::Cache<IpAddr, ()>,
}

impl std::fmt::Debug for FailureThrottle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FailureThrottle(..)")
    }
}

/// The window failures are counted in; also the `Retry-After` of a throttled CPE.
pub const FAILURE_WINDOW: Duration = Duration::from_secs(60);
/// Failures from one address within a window before it is throttled.
const MAX_FAILURES_PER_ADDRESS: u32 = 10;
/// Failures for one username, from anywhere, within a window before its requests are delayed
/// (but for addresses that authenticated lately).
const MAX_FAILURES_PER_USERNAME: u32 = 100;
/// How long an address that authenticated stays trusted by a throttled username.
const TRUSTED_FOR: Duration = Duration::from_secs(3600);

impl Default for FailureThrottle {
    fn default() -> Self {
        Self {
            by_address: moka::sync::Cache::builder().max_capacity(100_000).time_to_live(FAILURE_WINDOW).build(),
            by_username: moka::sync::Cache::builder().max_capacity(100_000).time_to_live(FAILURE_WINDOW).build(),
            trusted: moka::sync::Cache::builder().max_capacity(1_000_000).time_to_live(TRUSTED_FOR).build(),
        }
    }
}

/// What the throttle makes of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Throttle {
    No,
    /// Its address failed too often: refuse it unexamined.
    Refuse,
    /// Its username is under attack from elsewhere: examine it, but only after a pause. A
    /// username is shared by a fleet, so refusing it would lock the fleet out for the attacker.
    Delay,
}

/// The pause of a request whose username is under attack.
pub const USERNAME_DELAY: Duration = Duration::from_secs(1);

/// The key an address is counted under: an IPv6 host is its /64, which one subscriber holds
/// whole.
pub fn address_key(client: IpAddr) -> IpAddr {
    match client {
        IpAddr::V4(_) => client,
        IpAddr::V6(v6) => {
            let bits = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(std::net::Ipv6Addr::from(bits))
        }
    }
}

impl FailureThrottle {
    /// What to do with a request from `client` for `username`.
    pub fn check(&self, client: IpAddr, username: Option<&str>) -> Throttle {
        let over = |counter: Option<std::sync::Arc<AtomicU32>>, limit: u32| {
            counter.is_some_and(|c| c.load(Ordering::Relaxed) >= limit)
        };
        if over(self.by_address.get(&address_key(client)), MAX_FAILURES_PER_ADDRESS) {
            return Throttle::Refuse;
        }
        let username_attacked = username.is_some_and(|username| {
            over(self.by_username.get(username), MAX_FAILURES_PER_USERNAME) && !self.trusted.contains_key(&client)
        });
        if username_attacked { Throttle::Delay } else { Throttle::No }
    }

    /// Counts a failure; returns what is worth a log line (the first of a window, and the one
    /// that starts throttling), so that an attack does not flood the log.
    pub fn record_failure(&self, client: IpAddr, username: Option<&str>) -> Option<&'static str> {
        let count = |counter: std::sync::Arc<AtomicU32>| counter.fetch_add(1, Ordering::Relaxed) + 1;
        let by_address = count(self.by_address.get_with(address_key(client), Default::default));
        let by_username = username.map(|u| count(self.by_username.get_with(u.to_owned(), Default::default)));
        if by_address == MAX_FAILURES_PER_ADDRESS {
            Some("address throttled after repeated authentication failures")
        } else if by_username == Some(MAX_FAILURES_PER_USERNAME) {
            Some("username delayed after repeated authentication failures")
        } else if by_address == 1 {
            Some("CPE authentication failed")
        } else {
            None
        }
    }

    pub fn record_success(&self, client: IpAddr) {
        self.trusted.insert(client, ());
    }
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

/// The username an `Authorization` header claims, if any (for throttling before any work).
pub fn claimed_username(authorization: Option<&str>) -> Option<String> {
    let header = authorization?.trim();
    if let Some(encoded) = header.strip_prefix("Basic ").or_else(|| header.strip_prefix("basic ")) {
        let decoded = base64::engine::general_purpose::STANDARD.decode(encoded.trim()).ok()?;
        let decoded = String::from_utf8_lossy(&decoded);
        return decoded.split_once(':').map(|(user, _)| user.to_owned());
    }
    digest::parse_params(header).and_then(|params| digest::param(&params, "username").map(str::to_owned))
}

/// Checks an Authorization header on a POST from `client`.
pub async fn verify(app: &App, authorization: Option<&str>, client: IpAddr, tls: bool) -> anyhow::Result<Verdict> {
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
        return Ok(match lookup(&app.store, &app.secrets, username).await? {
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
    let state = app.nonce_key.check(nonce, client);
    if state == NonceState::Foreign {
        return Ok(Verdict::Challenge { stale: false });
    }
    let Some((credential, password)) = lookup(&app.store, &app.secrets, username).await? else {
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
    if state == NonceState::Stale {
        return Ok(Verdict::Challenge { stale: true });
    }
    // The right password over a nonce count already used: a replay, or a CPE that reuses its
    // nonce across sessions; either way it gets a new nonce.
    // Without qop the count is not part of the hash: a replay could add any `nc` it likes, so
    // such a nonce opens one session whatever `nc` says.
    let nc = qop.map(|(_, nc, _)| u32::from_str_radix(nc, 16).unwrap_or(0));
    if !app.nonce_key.take(nonce, nc) {
        return Ok(Verdict::Challenge { stale: true });
    }
    Ok(Verdict::Accepted(credential))
}

async fn lookup(store: &Store, secrets: &Secrets, username: &str) -> anyhow::Result<Option<(CpeCredential, String)>> {
    let Some(credential) = credentials::by_username(store, username).await? else {
        return Ok(None);
    };
    let password = secrets.open_string(&credential.password)?;
    Ok(Some((credential, password)))
}

/// Whether `credential` may be used by the device `device_id` of `product_class` onboarding
/// into `org` (the org its URL or Host names, if any): a device-scoped credential fits only its
/// device, a model's only devices of that product class, an organization-scoped one only that
/// organization's URL.
pub fn permits(credential: &CpeCredential, device_id: &str, product_class: &str, url_org: Option<i64>) -> bool {
    if credential.device_id.as_deref().is_some_and(|d| d != device_id) {
        return false;
    }
    if credential.product_class.as_deref().is_some_and(|p| p != product_class) {
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

    const HOME: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1));
    const ELSEWHERE: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(198, 51, 100, 7));

    #[test]
    fn nonces_verify_and_forgeries_do_not() {
        let key = NonceKey::random();
        let nonce = key.issue(HOME);
        assert_eq!(key.check(&nonce, HOME), NonceState::Fresh);
        assert_eq!(NonceKey::random().check(&nonce, HOME), NonceState::Foreign);
        assert_eq!(key.check("0.deadbeef", HOME), NonceState::Foreign);
        let old = key.sign(unix_seconds() - 3600, 7, HOME);
        assert_eq!(key.check(&old, HOME), NonceState::Stale);
    }

    #[test]
    fn a_nonce_is_good_only_from_the_address_it_was_issued_to() {
        let key = NonceKey::random();
        let nonce = key.issue(HOME);
        assert_eq!(key.check(&nonce, ELSEWHERE), NonceState::Foreign);
    }

    #[test]
    fn a_nonce_count_is_good_once() {
        let key = NonceKey::random();
        let nonce = key.issue(HOME);
        assert!(key.take(&nonce, Some(1)));
        assert!(!key.take(&nonce, Some(1)), "replayed");
        assert!(key.take(&nonce, Some(2)), "the next count");
        assert!(!key.take(&nonce, Some(1)), "an older count");
        // RFC 2069: no count, one use.
        let bare = key.issue(HOME);
        assert!(key.take(&bare, None));
        assert!(!key.take(&bare, None));
    }

    #[test]
    fn a_nonce_never_used_expires_sooner_than_one_in_use() {
        let key = NonceKey::random();
        let issued = unix_seconds() - UNUSED_NONCE_LIFETIME.as_secs() - 5;
        let unused = key.sign(issued, 1, HOME);
        assert_eq!(key.check(&unused, HOME), NonceState::Stale);
        let in_use = key.sign(issued - 1, 2, HOME);
        key.used.lock().unwrap().insert(in_use.clone(), (1, Instant::now()));
        assert_eq!(key.check(&in_use, HOME), NonceState::Fresh);
    }

    #[test]
    fn failures_throttle_the_address_and_then_the_username_but_not_its_trusted_devices() {
        let throttle = FailureThrottle::default();
        for _ in 0..MAX_FAILURES_PER_ADDRESS {
            assert_eq!(throttle.check(HOME, Some("fleet")), Throttle::No);
            throttle.record_failure(HOME, Some("fleet"));
        }
        assert_eq!(throttle.check(HOME, Some("fleet")), Throttle::Refuse);
        assert_eq!(throttle.check(HOME, None), Throttle::Refuse, "any username from that address");
        assert_eq!(throttle.check(ELSEWHERE, Some("fleet")), Throttle::No, "other addresses are not slowed");
        // Many addresses guessing one username.
        let trusted = IpAddr::V4(std::net::Ipv4Addr::new(203, 0, 113, 9));
        throttle.record_success(trusted);
        for i in 0..MAX_FAILURES_PER_USERNAME {
            let attacker = IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + i));
            throttle.record_failure(attacker, Some("fleet"));
        }
        assert_eq!(throttle.check(ELSEWHERE, Some("fleet")), Throttle::Delay, "delayed, never locked out");
        assert_eq!(throttle.check(ELSEWHERE, Some("other-fleet")), Throttle::No);
        assert_eq!(throttle.check(trusted, Some("fleet")), Throttle::No, "a device that authenticated lately");
    }

    #[test]
    fn an_ipv6_subscriber_is_counted_as_its_prefix() {
        let throttle = FailureThrottle::default();
        for host in 0..MAX_FAILURES_PER_ADDRESS {
            let address: IpAddr = format!("2001:db8:1:2::{:x}", host + 1).parse().unwrap();
            throttle.record_failure(address, None);
        }
        let same_prefix: IpAddr = "2001:db8:1:2:ffff::1".parse().unwrap();
        let other_prefix: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(throttle.check(same_prefix, None), Throttle::Refuse);
        assert_eq!(throttle.check(other_prefix, None), Throttle::No);
    }

    #[test]
    fn a_nonce_without_qop_opens_one_session_whatever_its_count() {
        let key = NonceKey::random();
        let nonce = key.issue(HOME);
        assert!(key.take(&nonce, None));
        assert!(!key.take(&nonce, None), "the count is not in the hash: it proves nothing");
    }

    #[test]
    fn failure_logs_come_once_per_window() {
        let throttle = FailureThrottle::default();
        let logged: Vec<_> = (0..50).filter_map(|_| throttle.record_failure(HOME, Some("fleet"))).collect();
        assert_eq!(logged.len(), 2, "{logged:?}");
    }

    #[test]
    fn credentials_fit_their_device_model_and_organization_only() {
        let credential = |org_id: Option<i64>, device_id: Option<&str>, product_class: Option<&str>| CpeCredential {
            id: 1,
            org_id,
            device_id: device_id.map(str::to_owned),
            username: "u".into(),
            password: Vec::new(),
            created_at: 0,
            product_class: product_class.map(str::to_owned),
        };
        let platform = credential(None, None, None);
        assert!(permits(&platform, "A-HG8245H-1", "HG8245H", None));
        assert!(permits(&platform, "A-HG8245H-1", "HG8245H", Some(7)));
        let org = credential(Some(7), None, None);
        assert!(permits(&org, "A-HG8245H-1", "HG8245H", Some(7)));
        assert!(!permits(&org, "A-HG8245H-1", "HG8245H", Some(8)), "another organization's URL");
        let model = credential(Some(7), None, Some("HG8245H"));
        assert!(permits(&model, "A-HG8245H-1", "HG8245H", Some(7)));
        assert!(!permits(&model, "A-F660-1", "F660", Some(7)), "another model");
        let own = credential(None, Some("A-HG8245H-1"), None);
        assert!(permits(&own, "A-HG8245H-1", "HG8245H", Some(8)));
        assert!(!permits(&own, "A-HG8245H-2", "HG8245H", None), "another device");
    }
}
