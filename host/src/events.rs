//! Events delivered: the outbox (`store::events`, written in the transaction of each change) is
//! read in commit order by two readers under one lease (`outbox`): the webhook fan-out, which
//! turns each event into a delivery per subscribed webhook, and the NATS JetStream publisher
//! (`[events] nats_url`); and by each replica for the people watching it live (`live`, the
//! API's event stream). Deliveries are sent by `deliver`: signed, retried with backoff and
//! jitter, in order per subject (a device), each webhook behind a circuit breaker.
//!
//! What is decided here, as plain functions: what a webhook subscribes to, the signatures, the
//! backoff, when a circuit opens and a webhook is disabled, which URLs are taken.

pub mod client;
pub mod deliver;
pub mod live;
pub mod outbox;

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// What a webhook subscribes to: `*`, an exact type (`task.done`), or a family (`rollout.*`).
pub fn subscribed(patterns: &[String], kind: &str) -> bool {
    patterns.iter().any(|pattern| match pattern.strip_suffix(".*") {
        _ if pattern == "*" => true,
        Some(family) => kind.strip_prefix(family).is_some_and(|rest| rest.starts_with('.')),
        None => pattern == kind,
    })
}

/// Checks a subscription pattern: `*`, a known type, or a family of known types.
pub fn check_pattern(pattern: &str) -> Result<(), String> {
    let known = crate::store::events::EventType::ALL.iter().map(|kind| kind.as_str());
    let matches = known.clone().any(|kind| subscribed(&[pattern.to_owned()], kind));
    if matches {
        Ok(())
    } else {
        let families: std::collections::BTreeSet<&str> =
            known.filter_map(|kind| kind.split_once('.').map(|(family, _)| family)).collect();
        Err(format!(
            "events: {pattern:?} is no event type; give \"*\", a type such as \"task.done\", or a family ({})",
            families.into_iter().map(|f| format!("\"{f}.*\"")).collect::<Vec<_>>().join(", ")
        ))
    }
}

type HmacSha256 = Hmac<Sha256>;

fn hmac(secret: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    // HMAC takes a key of any length: this never fails.
    let Ok(mut mac) = HmacSha256::new_from_slice(secret) else { return Vec::new() };
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().to_vec()
}

/// `X-Roost-Signature`: `sha256=<hex HMAC-SHA256 of the body>`.
pub fn roost_signature(secret: &[u8], body: &[u8]) -> String {
    format!("sha256={}", hex::encode(hmac(secret, &[body])))
}

/// `webhook-signature` (Standard Webhooks): `v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`.
/// It covers the timestamp, which a receiver checks against replays: a body signed alone could be
/// sent again later unchanged.
pub fn standard_signature(secret: &[u8], message_id: &str, timestamp: i64, body: &[u8]) -> String {
    use base64::Engine;
    let timestamp = timestamp.to_string();
    let mac = hmac(secret, &[message_id.as_bytes(), b".", timestamp.as_bytes(), b".", body]);
    format!("v1,{}", base64::engine::general_purpose::STANDARD.encode(mac))
}

/// How long after its `attempts`-th failed attempt a delivery is tried again: `base` doubled per
/// attempt, at most `max`, less a random part of up to half (`jitter` in 0..1), so that
/// deliveries failed together do not come back together.
pub fn backoff(attempts: u32, base: Duration, max: Duration, jitter: f64) -> Duration {
    let exponent = attempts.saturating_sub(1).min(30);
    let full = base.saturating_mul(1u32 << exponent).min(max);
    full.mul_f64(1.0 - 0.5 * jitter.clamp(0.0, 1.0))
}

/// A webhook's breaker, as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BreakerState {
    /// Failed attempts in a row, the first at `failing_since`.
    pub failures: u32,
    pub failing_since: Option<i64>,
    /// Times it opened in a row: each open period is twice the one before.
    pub opened: u32,
    /// Nothing goes to it until then; after, one delivery probes it.
    pub open_until: Option<i64>,
    /// Disabled by this failure.
    pub disabled: bool,
}

/// The breaker after a delivery to its webhook succeeded: closed, and forgotten.
pub fn after_success() -> BreakerState {
    BreakerState::default()
}

/// The breaker after a failed attempt at `now`. Past `breaker_failures` in a row it opens for
/// `retry_base` doubled per opening (up to `retry_max`); attempts under way when it opened end
/// without opening it again (a hanging receiver fails a whole batch at once: one opening, not
/// one per delivery). A streak lasting `disable_after` disables the webhook.
pub fn after_failure(state: BreakerState, now: i64, settings: &crate::config::EventSettings) -> BreakerState {
    let failures = state.failures.saturating_add(1);
    let failing_since = state.failing_since.unwrap_or(now);
    let mut next = BreakerState { failures, failing_since: Some(failing_since), ..state };
    if failures < settings.breaker_failures.max(1) {
        return next;
    }
    if now.saturating_sub(failing_since) >= millis(settings.disable_after) {
        next.disabled = true;
        return next;
    }
    let open = state.open_until.is_some_and(|until| until > now);
    if !open {
        next.opened = state.opened.saturating_add(1);
        let wait = backoff(next.opened, settings.retry_base, settings.retry_max, 0.0);
        next.open_until = Some(now.saturating_add(millis(wait)));
    }
    next
}

pub fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

/// Checks a webhook URL: http or https, a host, no credentials in it, one a request can be
/// made of, and not Roost itself (a
/// webhook to its own API would feed on its own events). `own` are the server's listening
/// addresses.
pub fn check_url(url: &str, own: &[SocketAddr]) -> Result<reqwest::Url, String> {
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("url: {e}"))?;
    // What the delivery client takes (`events::client`): a longer URL than it does would fail
    // every delivery.
    parsed.as_str().parse::<hyper::Uri>().map_err(|e| format!("url: {e}"))?;
    match parsed.scheme() {
        "http" | "https" => {}
        other => return Err(format!("url: {other}: is not http or https")),
    }
    let Some(host) = parsed.host_str() else { return Err("url: it has no host".into()) };
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err("url: credentials go in the secret, not in the URL".into());
    }
    let port = parsed.port_or_known_default().unwrap_or(80);
    if let Ok(ip) = host.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>() {
        check_address(SocketAddr::new(ip, port), own).map_err(|e| format!("url: {host}: {e}"))?;
    } else if host.eq_ignore_ascii_case("localhost") && own.iter().any(|addr| addr.port() == port) {
        return Err(format!("url: {host}:{port} is this server"));
    }
    Ok(parsed)
}

fn points_at(ip: IpAddr, port: u16, own: &[SocketAddr]) -> bool {
    let local = |ip: IpAddr| ip.is_loopback() || ip.is_unspecified();
    own.iter().any(|addr| addr.port() == port && (addr.ip() == ip || (local(addr.ip()) && local(ip))))
}

fn is_link_local(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_link_local(),
        // fe80::/10, and AWS's IPv6 metadata address fd00:ec2::254.
        IpAddr::V6(v6) => {
            (v6.segments()[0] & 0xffc0) == 0xfe80 || v6.segments() == [0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254]
        }
    }
}

/// Checks an address a webhook's host is or resolves to: not this server, not link-local
/// (IPv4 written as IPv6, `::ffff:a.b.c.d`, is judged as the IPv4 it is).
pub fn check_address(address: SocketAddr, own: &[SocketAddr]) -> Result<(), String> {
    let ip = address.ip().to_canonical();
    if points_at(ip, address.port(), own) {
        return Err(format!("{ip}:{} is this server", address.port()));
    }
    if is_link_local(ip) {
        return Err(format!("{ip} is link-local (a cloud's metadata service lives there)"));
    }
    Ok(())
}

/// The NATS subject of an event: `<prefix>.<org>.<type>`; events of no organization (a device
/// not claimed yet) under `<prefix>._`.
pub fn nats_subject(prefix: &str, org_slug: Option<&str>, kind: &str) -> String {
    format!("{prefix}.{}.{kind}", org_slug.unwrap_or("_"))
}

/// The organization an event belongs to and those above it: whose webhooks it goes to.
pub fn chain(org: Option<i64>, parents: &std::collections::HashMap<i64, Option<i64>>) -> Vec<i64> {
    let mut chain = Vec::new();
    let mut next = org;
    while let Some(id) = next {
        if chain.contains(&id) {
            break;
        }
        chain.push(id);
        next = parents.get(&id).copied().flatten();
    }
    chain
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_a_type_a_family_or_all() {
        let p = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert!(subscribed(&p(&["*"]), "task.done"));
        assert!(subscribed(&p(&["rollout.*"]), "rollout.paused"));
        assert!(!subscribed(&p(&["rollout.*"]), "rollouts.paused"));
        assert!(!subscribed(&p(&["task.done"]), "task.fault"));
        assert!(subscribed(&p(&["task.fault", "task.done"]), "task.done"));
        assert!(!subscribed(&[], "task.done"));
        assert!(check_pattern("device.*").is_ok());
        assert!(check_pattern("bulk.completed").is_ok());
        let error = check_pattern("nope.*").unwrap_err();
        assert!(error.contains("\"rollout.*\""), "{error}");
        assert!(check_pattern("task").is_err());
    }

    #[test]
    fn signatures_are_those_a_receiver_computes() {
        // RFC 2104's HMAC-SHA256 of the well-known sentence under "key".
        assert_eq!(
            roost_signature(b"key", b"The quick brown fox jumps over the lazy dog"),
            "sha256=f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8"
        );
        // The Standard Webhooks example: whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw, msg_p5jXN8AQM9LWM0D4loKWxJek,
        // 1614265330, {"test": 2432232314} → v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=
        use base64::Engine;
        let key = base64::engine::general_purpose::STANDARD.decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        assert_eq!(
            standard_signature(&key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, br#"{"test": 2432232314}"#),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn backoff_doubles_to_its_cap_and_jitter_takes_up_to_half() {
        let base = Duration::from_secs(5);
        let max = Duration::from_secs(3600);
        assert_eq!(backoff(1, base, max, 0.0), Duration::from_secs(5));
        assert_eq!(backoff(2, base, max, 0.0), Duration::from_secs(10));
        assert_eq!(backoff(4, base, max, 0.0), Duration::from_secs(40));
        assert_eq!(backoff(20, base, max, 0.0), max);
        assert_eq!(backoff(u32::MAX, base, max, 0.0), max);
        assert_eq!(backoff(2, base, max, 1.0), Duration::from_secs(5));
        assert_eq!(backoff(2, base, max, 7.0), Duration::from_secs(5), "jitter is clamped");
    }

    #[test]
    fn the_breaker_opens_once_per_batch_doubling_and_disables_after_a_long_streak() {
        let settings = crate::config::EventSettings {
            retry_base: Duration::from_secs(1),
            retry_max: Duration::from_secs(8),
            breaker_failures: 3,
            disable_after: Duration::from_secs(100),
            ..Default::default()
        };
        let mut state = BreakerState::default();
        for _ in 0..2 {
            state = after_failure(state, 1_000, &settings);
            assert_eq!((state.open_until, state.failing_since), (None, Some(1_000)));
        }
        state = after_failure(state, 2_000, &settings);
        assert_eq!((state.opened, state.open_until), (1, Some(3_000)));
        // The rest of a batch that hung together: still one opening.
        for _ in 0..20 {
            state = after_failure(state, 2_500, &settings);
        }
        assert_eq!((state.opened, state.open_until, state.failures), (1, Some(3_000), 23));
        // Its probe fails: open twice as long.
        state = after_failure(state, 3_100, &settings);
        assert_eq!((state.opened, state.open_until), (2, Some(5_100)));
        for at in [6_000, 10_000, 20_000] {
            state = after_failure(state, at, &settings);
        }
        assert_eq!(state.open_until, Some(28_000), "at most retry_max");
        assert!(!state.disabled);
        assert!(after_failure(state, 101_000, &settings).disabled, "failing for disable_after");
        assert_eq!(after_success(), BreakerState::default());
    }

    #[test]
    fn urls_are_http_or_https_and_not_roost_itself() {
        let own = [SocketAddr::from(([0, 0, 0, 0], 8080)), SocketAddr::from(([127, 0, 0, 1], 7547))];
        assert!(check_url("http://crm.example.net/hooks/roost", &own).is_ok());
        assert!(check_url("https://crm.example.net/hooks/roost", &own).is_ok());
        // Roost's own listeners, over TLS as well.
        assert!(check_url("https://127.0.0.1:8080/api/v1/devices", &own).unwrap_err().contains("this server"));
        assert!(check_url("https://169.254.169.254/", &own).unwrap_err().contains("link-local"));
        assert!(check_url("http://127.0.0.1:9000/hook", &own).is_ok());
        assert!(check_url("ftp://crm.example.net/x", &own).unwrap_err().contains("not http or https"));
        assert!(check_url("not a url", &own).is_err());
        assert!(check_url("http://127.0.0.1:8080/api/v1/devices", &own).unwrap_err().contains("this server"));
        assert!(check_url("http://localhost:7547/", &own).unwrap_err().contains("this server"));
        assert!(check_url("http://[::1]:8080/", &own).unwrap_err().contains("this server"));
        assert!(check_url("http://169.254.169.254/latest/meta-data", &own).unwrap_err().contains("link-local"));
        assert!(check_url("http://[::ffff:169.254.169.254]/", &own).unwrap_err().contains("link-local"));
        assert!(check_url("http://[::ffff:127.0.0.1]:8080/", &own).unwrap_err().contains("this server"));
        assert!(check_url("http://[fd00:ec2::254]/", &own).unwrap_err().contains("link-local"));
        assert!(check_url("http://user:pw@crm.example.net/", &own).unwrap_err().contains("credentials"));
    }

    #[test]
    fn an_event_goes_to_its_organization_and_those_above() {
        let parents = std::collections::HashMap::from([(1, None), (2, Some(1)), (3, Some(2)), (9, Some(9))]);
        assert_eq!(chain(Some(3), &parents), vec![3, 2, 1]);
        assert_eq!(chain(None, &parents), Vec::<i64>::new());
        assert_eq!(chain(Some(9), &parents), vec![9], "a loop ends");
        assert_eq!(nats_subject("roost", Some("isp-a"), "task.done"), "roost.isp-a.task.done");
        assert_eq!(nats_subject("roost", None, "device.registered"), "roost._.device.registered");
    }
}
