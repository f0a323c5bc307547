//! The live CWMP sessions: found by cookie, by connection for CPEs without cookies, and by
//! device, so that a device's new Inform ends its own previous session and nobody else's.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use roost_cwmp::session::Session;

use super::driver::Driver;
use crate::config::SessionBinding;

/// One live session.
pub(super) struct Live {
    pub(super) cwmp: Session,
    pub(super) driver: Option<Driver>,
    pub(super) peer: SocketAddr,
    /// When its Inform came (its duration, for `/metrics`).
    pub(super) started: Instant,
    /// In every log line of the session.
    pub(super) trace: String,
    pub(super) device_id: String,
}

/// Live sessions by cookie token; by connection for CPEs without cookies; by device, so that a
/// device's new Inform ends its own previous session and nobody else's.
#[derive(Default)]
pub struct Sessions {
    inner: Mutex<SessionMaps>,
}

#[derive(Default)]
struct SessionMaps {
    by_token: HashMap<String, Entry>,
    by_peer: HashMap<SocketAddr, String>,
    by_device: HashMap<String, String>,
}

struct Entry {
    live: Arc<tokio::sync::Mutex<Live>>,
    /// Where the session was opened from (and authenticated, when authentication is on).
    origin: Origin,
    device_id: String,
}

/// Where a request comes from: the TCP peer, and the client behind it. They differ only when
/// the peer is a trusted proxy (`[cwmp] trusted_proxies`) that says whom it forwards for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Origin {
    pub peer: SocketAddr,
    pub client: std::net::IpAddr,
    /// Through a trusted proxy: its upstream connections carry many clients' requests.
    pub proxied: bool,
    /// Over TLS to this server (CPE Basic credentials are taken only then).
    pub encrypted: bool,
}

impl Origin {
    /// The origin of a request from `peer` with this `X-Forwarded-For` value. Only a trusted
    /// proxy is believed, and only for the address it appended itself (the last one): what a
    /// client put before it is the client's word.
    pub fn of(peer: SocketAddr, forwarded_for: Option<&str>, trusted_proxies: &[std::net::IpAddr]) -> Self {
        if !trusted_proxies.contains(&peer.ip()) {
            return Self { peer, client: peer.ip(), proxied: false, encrypted: false };
        }
        let client = forwarded_for
            .and_then(|value| value.rsplit(',').next())
            .and_then(|last| last.trim().parse().ok())
            .unwrap_or(peer.ip());
        Self { peer, client, proxied: true, encrypted: false }
    }

    /// The same origin, reached over TLS or not.
    pub fn over_tls(self, encrypted: bool) -> Self {
        Self { encrypted, ..self }
    }
}

/// How a request relates to the live sessions.
pub(super) enum Lookup {
    Found(String, Arc<tokio::sync::Mutex<Live>>),
    /// No session: none was opened, or its cookie names one that is gone.
    None,
    /// The cookie names a live session opened from elsewhere: a stolen or mixed-up cookie.
    Foreign,
}

/// Whether a request from `now` may use a session opened from `opener`. Behind a trusted
/// proxy the connection says nothing of the client, so the binding is to its address.
fn binding_allows(binding: SessionBinding, opener: Origin, now: Origin) -> bool {
    match binding {
        SessionBinding::Connection if !opener.proxied && !now.proxied => opener.peer == now.peer,
        _ => opener.client == now.client,
    }
}

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Sessions({})", self.len())
    }
}

impl Sessions {
    pub fn len(&self) -> usize {
        self.inner.lock().map(|m| m.by_token.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The session a (non-Inform) request belongs to: by its cookie when it carries one (never
    /// by connection then: a cookie that names no live session finds nothing), else by the
    /// connection it arrived on, for CPEs that never echo cookies.
    pub(super) fn find(&self, token: Option<&str>, origin: Origin, binding: SessionBinding) -> Lookup {
        let Ok(maps) = self.inner.lock() else { return Lookup::None };
        let token = match token {
            Some(token) => token.to_owned(),
            // A proxy's connection carries many clients: only cookies find sessions through it.
            None if origin.proxied => return Lookup::None,
            None => match maps.by_peer.get(&origin.peer) {
                Some(token) => token.clone(),
                None => return Lookup::None,
            },
        };
        match maps.by_token.get(&token) {
            Some(entry) if binding_allows(binding, entry.origin, origin) => Lookup::Found(token, entry.live.clone()),
            Some(_) => Lookup::Foreign,
            None => Lookup::None,
        }
    }

    /// Removes the device's open session, if any, to be wound up.
    pub(super) fn take_device(&self, device_id: &str) -> Option<Arc<tokio::sync::Mutex<Live>>> {
        let mut maps = self.inner.lock().ok()?;
        let token = maps.by_device.get(device_id)?.clone();
        maps.remove(&token)
    }

    /// Registers a new session; the device's previous session, if one is still open (the CPE
    /// gave up on it and started again), is removed and returned to be wound up.
    pub(super) fn insert(
        &self,
        token: String,
        device_id: &str,
        origin: Origin,
        live: Live,
    ) -> Option<Arc<tokio::sync::Mutex<Live>>> {
        let live = Arc::new(tokio::sync::Mutex::new(live));
        let Ok(mut maps) = self.inner.lock() else { return None };
        let previous = maps.by_device.get(device_id).cloned().and_then(|old| maps.remove(&old));
        if !origin.proxied {
            maps.by_peer.insert(origin.peer, token.clone());
        }
        maps.by_device.insert(device_id.to_owned(), token.clone());
        maps.by_token.insert(token, Entry { live, origin, device_id: device_id.to_owned() });
        previous
    }

    /// Removes a session; `false` when it was gone already (another request, the sweep or the
    /// device's next Inform ended it first), so that an end is counted once.
    pub(super) fn remove(&self, token: &str) -> bool {
        self.inner.lock().is_ok_and(|mut maps| maps.remove(token).is_some())
    }

    /// Drops sessions silent past their timeout, or past `idle_cap` when given (while draining
    /// for shutdown, a CPE silent for seconds is gone, not slow); returns their drivers, whose
    /// work in flight died with the session.
    pub async fn sweep(
        &self,
        now: Instant,
        idle_cap: Option<std::time::Duration>,
        metrics: &crate::metrics::Metrics,
    ) -> Vec<Driver> {
        let candidates: Vec<(String, Arc<tokio::sync::Mutex<Live>>)> = match self.inner.lock() {
            Ok(maps) => maps.by_token.iter().map(|(t, e)| (t.clone(), e.live.clone())).collect(),
            Err(_) => return Vec::new(),
        };
        let mut dropped = Vec::new();
        for (token, live) in candidates {
            // A session busy right now is not idle.
            let Ok(mut live) = live.try_lock() else { continue };
            let idle_too_long =
                idle_cap.is_some_and(|cap| now.saturating_duration_since(live.cwmp.last_activity()) > cap);
            if live.cwmp.is_expired(now) || live.cwmp.is_ended() || idle_too_long {
                let ended = live.cwmp.is_ended();
                if let Some(driver) = live.driver.take() {
                    if !ended {
                        tracing::info!(device = %driver.device().device_id, task = ?driver.current_task(), "session timed out");
                        metrics.sessions_ended.inc("timed_out");
                    }
                    dropped.push(driver);
                }
                drop(live);
                self.remove(&token);
            }
        }
        dropped
    }
}

impl SessionMaps {
    fn remove(&mut self, token: &str) -> Option<Arc<tokio::sync::Mutex<Live>>> {
        let entry = self.by_token.remove(token)?;
        if self.by_peer.get(&entry.origin.peer).is_some_and(|t| t == token) {
            self.by_peer.remove(&entry.origin.peer);
        }
        if self.by_device.get(&entry.device_id).is_some_and(|t| t == token) {
            self.by_device.remove(&entry.device_id);
        }
        Some(entry.live)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PROXY: std::net::IpAddr = std::net::IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1));

    #[test]
    fn only_a_trusted_proxy_says_who_the_client_is() {
        let peer = SocketAddr::from(([10, 0, 0, 1], 40000));
        let proxied = Origin::of(peer, Some("203.0.113.9, 198.51.100.4"), &[PROXY]);
        assert_eq!(
            proxied.client,
            "198.51.100.4".parse::<std::net::IpAddr>().unwrap_or(PROXY),
            "the entry it appended"
        );
        assert!(proxied.proxied);
        let direct = Origin::of(peer, Some("198.51.100.4"), &[]);
        assert_eq!((direct.client, direct.proxied), (PROXY, false), "anyone else's header is ignored");
        assert_eq!(Origin::of(peer, Some("garbage"), &[PROXY]).client, PROXY);
    }

    #[test]
    fn behind_a_proxy_a_session_is_bound_to_the_client_address() {
        let via = |port: u16, client: [u8; 4]| Origin {
            peer: SocketAddr::from(([10, 0, 0, 1], port)),
            client: client.into(),
            proxied: true,
            encrypted: false,
        };
        let opener = via(40000, [198, 51, 100, 4]);
        // Another pooled upstream connection, the same client: allowed even under "connection".
        assert!(binding_allows(SessionBinding::Connection, opener, via(40001, [198, 51, 100, 4])));
        assert!(!binding_allows(SessionBinding::Connection, opener, via(40000, [198, 51, 100, 5])));
        assert!(!binding_allows(SessionBinding::Address, opener, via(40000, [198, 51, 100, 5])));
        let direct = |port: u16| Origin {
            peer: SocketAddr::from(([192, 0, 2, 1], port)),
            client: [192, 0, 2, 1].into(),
            proxied: false,
            encrypted: false,
        };
        assert!(binding_allows(SessionBinding::Address, direct(1), direct(2)));
        assert!(!binding_allows(SessionBinding::Connection, direct(1), direct(2)));
    }
}
