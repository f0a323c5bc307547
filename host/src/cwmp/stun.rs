//! The STUN server of TR-111 part 2: devices behind NAT keep a UDP binding open to it, and UDP
//! connection requests go back through that binding, from this server's socket (a NAT that
//! filters by address and port lets in only what comes from where the device sent).
//!
//! A device's STUN username is its device id and its password is derived from it under the
//! master key (`Secrets::derived_token`): the built-in `stun` provision writes both, and a
//! signed request is checked with no lookup. A binding is recorded only from a signed request
//! whose signature checks out; an unsigned request that claims a new address is challenged
//! (401), which a TR-111 CPE answers by signing. Keepalives from the address already recorded
//! are answered from memory.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use roost_cwmp::stun::{self, BindingRequest, Dialect};
use tokio::net::UdpSocket;
use tokio::sync::{Semaphore, watch};

use crate::app::App;
use crate::secrets::Secrets;
use crate::store::devices;
use crate::store::now_millis;

/// The purpose a device's STUN password is derived for.
const PASSWORD_PURPOSE: &str = "stun-password";
/// Requests waiting on the store at once; beyond, a request is dropped (the CPE retries).
const LOOKUPS_IN_FLIGHT: usize = 64;
/// Bindings remembered (one per device behind NAT).
const REMEMBERED_BINDINGS: u64 = 2_000_000;

/// The STUN password of the device with id `device_id`.
pub fn password(secrets: &Secrets, device_id: &str) -> String {
    secrets.derived_token(PASSWORD_PURPOSE, device_id)
}

/// What to do with a Binding Request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Answer with the mapped address, unsigned; record nothing. `keepalive`: a device's
    /// binding request from the address already recorded for it.
    Answer { keepalive: bool },
    /// Answer signed in `dialect`; `record` the source as the device's binding (once the
    /// device is found).
    AnswerSigned { dialect: Dialect, record: bool },
    /// Ask for MESSAGE-INTEGRITY: an unsigned request may not move a binding.
    Challenge,
    /// Say nothing: its signature does not check out under the username's password.
    Drop,
}

/// The decision for `request` from `source`, given the username's password and the binding
/// recorded for it (`None`: none, or not known yet). Plain address discovery (no
/// CONNECTION-REQUEST-BINDING) is answered to anyone, as any STUN server does.
pub fn decide(
    request: &BindingRequest<'_>,
    source: SocketAddr,
    password: Option<&str>,
    recorded: Option<SocketAddr>,
) -> Decision {
    let binds = request.connection_request_binding && request.username.is_some();
    if request.has_integrity() {
        return match password.and_then(|p| request.verify(p.as_bytes())) {
            Some(dialect) => Decision::AnswerSigned {
                dialect,
                record: binds && (request.binding_change || recorded != Some(source)),
            },
            None => Decision::Drop,
        };
    }
    if !binds {
        return Decision::Answer { keepalive: false };
    }
    if recorded == Some(source) && !request.binding_change {
        Decision::Answer { keepalive: true }
    } else {
        Decision::Challenge
    }
}

/// A binding this server remembers: where, and when the store last heard of it.
#[derive(Debug, Clone, Copy)]
struct Remembered {
    address: SocketAddr,
    written: Instant,
}

/// The bound socket and what it remembers.
pub struct StunServer {
    /// `None` once the server stopped: the port is free for the next start in this process
    /// (the `App` holding this may outlive the listeners a little).
    socket: std::sync::Mutex<Option<Arc<UdpSocket>>>,
    pub local_addr: SocketAddr,
    /// Device id → the binding last recorded or read for it.
    bindings: moka::sync::Cache<String, Remembered>,
    /// Signed requests seen (device id and transaction) → where from: a captured request
    /// replayed from another address is dropped, a retransmission from its own is answered.
    signed: moka::sync::Cache<(String, [u8; 16]), SocketAddr>,
    lookups: Arc<Semaphore>,
    /// How often a keepalive from a remembered binding tells the store it is still there.
    refresh: Duration,
}

impl std::fmt::Debug for StunServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StunServer").field("local_addr", &self.local_addr).finish_non_exhaustive()
    }
}

impl StunServer {
    pub async fn bind(address: SocketAddr, settings: &crate::config::StunSettings) -> Result<Self> {
        let socket =
            UdpSocket::bind(address).await.with_context(|| format!("binding the STUN server on {address} (UDP)"))?;
        let local_addr = socket.local_addr()?;
        Ok(Self {
            socket: std::sync::Mutex::new(Some(Arc::new(socket))),
            local_addr,
            bindings: moka::sync::Cache::builder()
                .max_capacity(REMEMBERED_BINDINGS)
                .time_to_live(settings.binding_memory)
                .build(),
            signed: moka::sync::Cache::builder()
                .max_capacity(REMEMBERED_BINDINGS)
                .time_to_live(settings.binding_lifetime)
                .build(),
            lookups: Arc::new(Semaphore::new(LOOKUPS_IN_FLIGHT)),
            refresh: settings.binding_refresh,
        })
    }

    fn socket(&self) -> Option<Arc<UdpSocket>> {
        self.socket.lock().ok()?.clone()
    }

    /// Lets the port go.
    fn close(&self) {
        if let Ok(mut socket) = self.socket.lock() {
            socket.take();
        }
    }

    /// Whether this server holds `device_id`'s binding at `address` (its keepalives come here).
    pub fn remembers(&self, device_id: &str, address: SocketAddr) -> bool {
        self.bindings.get(device_id).is_some_and(|known| known.address == address)
    }

    /// Forgets what it remembers of a device (deleted, or reset).
    pub fn forget(&self, device_id: &str) {
        self.bindings.invalidate(device_id);
    }

    /// Sends `message` to `target` `copies` times, `interval` apart; the first copy before
    /// returning, the others in the background (none once the server stops).
    pub async fn send_copies(
        self: &Arc<Self>,
        target: SocketAddr,
        message: Vec<u8>,
        copies: u32,
        interval: Duration,
    ) -> Result<()> {
        let socket = self.socket().context("the STUN server has stopped")?;
        socket.send_to(&message, target).await.with_context(|| format!("sending to {target}"))?;
        drop(socket);
        if copies > 1 {
            let server = Arc::downgrade(self);
            tokio::spawn(async move {
                for _ in 1..copies {
                    tokio::time::sleep(interval).await;
                    let Some(socket) = server.upgrade().and_then(|s| s.socket()) else { return };
                    if let Err(error) = socket.send_to(&message, target).await {
                        tracing::debug!(%target, "a UDP connection request copy was not sent: {error}");
                        return;
                    }
                }
            });
        }
        Ok(())
    }
}

/// Answers Binding Requests until stopped.
pub async fn serve(server: Arc<StunServer>, app: Arc<App>, mut stopped: watch::Receiver<bool>) -> Result<()> {
    tracing::info!(address = %server.local_addr, "STUN server listening (UDP)");
    let Some(socket) = server.socket() else { return Ok(()) };
    // One byte more than a message may have: a datagram that fills it is too long.
    let mut buffer = vec![0u8; stun::MAX_MESSAGE + 1];
    loop {
        let (length, source) = tokio::select! {
            received = socket.recv_from(&mut buffer) => match received {
                Ok(received) => received,
                // ICMP errors from earlier sends surface here on some systems: not fatal.
                Err(error) => {
                    tracing::debug!("STUN receive: {error}");
                    continue;
                }
            },
            _ = stopped.wait_for(|stop| *stop) => {
                server.close();
                return Ok(());
            }
        };
        handle(&server, &app, &buffer[..length], source).await;
    }
}

/// Decides at once from the request and memory; only a request whose signature checked out
/// and that moves a binding waits on the store. An unsigned request never costs a query: a
/// flood of them with made-up usernames is answered 401 from here.
async fn handle(server: &Arc<StunServer>, app: &Arc<App>, bytes: &[u8], source: SocketAddr) {
    let request = match BindingRequest::decode(bytes) {
        Ok(request) => request,
        Err(error) => {
            app.metrics.stun.inc("malformed");
            tracing::debug!(%source, "STUN message dropped: {error}");
            return;
        }
    };
    let password = request.username.map(|username| password(&app.secrets, username));
    let remembered = request.username.and_then(|username| server.bindings.get(username));
    let decision = decide(&request, source, password.as_deref(), remembered.map(|r| r.address));
    if let (Decision::AnswerSigned { .. }, Some(username)) = (decision, request.username) {
        let key = (username.to_owned(), request.transaction);
        match server.signed.get(&key) {
            Some(first) if first != source => {
                app.metrics.stun.inc("replayed");
                tracing::debug!(%source, username, "a signed STUN request seen from another address dropped");
                return;
            }
            Some(_) => {}
            None => server.signed.insert(key, source),
        }
    }
    match (decision, request.username, remembered) {
        (Decision::AnswerSigned { record: true, .. }, Some(username), _) => {
            record(server, app, bytes, username, source);
        }
        (
            Decision::Answer { keepalive: true } | Decision::AnswerSigned { record: false, .. },
            Some(username),
            Some(known),
        ) => {
            if known.written.elapsed() >= server.refresh {
                touch(server, app, username, known);
            }
            reply(server, app, &request, source, decision, password.as_deref()).await;
        }
        _ => reply(server, app, &request, source, decision, password.as_deref()).await,
    }
}

/// Records a binding a signed request proved, then answers it: off the receive loop, and only
/// so many at once.
fn record(server: &Arc<StunServer>, app: &Arc<App>, bytes: &[u8], username: &str, source: SocketAddr) {
    let Ok(permit) = server.lookups.clone().try_acquire_owned() else {
        app.metrics.stun.inc("busy");
        return;
    };
    let (owned, username) = (bytes.to_vec(), username.to_owned());
    let (server, app) = (server.clone(), app.clone());
    tokio::spawn(async move {
        let _permit = permit;
        let known = match devices::udp_binding(&app.store, &username).await {
            Ok(known) => known,
            Err(error) => {
                tracing::warn!("STUN: the device's binding could not be read: {error:#}");
                app.metrics.stun.inc("busy");
                return;
            }
        };
        let Some((device_pk, _)) = known else {
            // Signed with the password of a device id that is not registered (deleted since).
            app.metrics.stun.inc("unknown_device");
            return;
        };
        if let Err(error) = devices::record_udp_binding(&app.store, device_pk, &source.to_string(), now_millis()).await
        {
            tracing::warn!(device = username, "STUN: the binding was not recorded: {error:#}");
            app.metrics.stun.inc("busy");
            return;
        }
        tracing::info!(device = username, binding = %source, "UDP connection-request binding recorded");
        app.metrics.stun.inc("bound");
        server.bindings.insert(username.clone(), Remembered { address: source, written: Instant::now() });
        // Decoded again here: the request borrowed the receive buffer.
        let Ok(request) = BindingRequest::decode(&owned) else { return };
        let password = self::password(&app.secrets, &username);
        let decision = decide(&request, source, Some(&password), None);
        reply(&server, &app, &request, source, decision, Some(&password)).await;
    });
}

/// Tells the store that a remembered binding is still in use, so that connection requests
/// (from any replica) keep trusting it; skipped when the store is busy.
fn touch(server: &Arc<StunServer>, app: &Arc<App>, username: &str, known: Remembered) {
    let Ok(permit) = server.lookups.clone().try_acquire_owned() else { return };
    // Marked now, so that the keepalives in between do not each try.
    server.bindings.insert(username.to_owned(), Remembered { written: Instant::now(), ..known });
    let (username, app) = (username.to_owned(), app.clone());
    tokio::spawn(async move {
        let _permit = permit;
        let address = known.address.to_string();
        if let Err(error) = devices::touch_udp_binding(&app.store, &username, &address, now_millis()).await {
            tracing::debug!(device = username, "STUN: the binding's time was not moved: {error:#}");
        }
    });
}

async fn reply(
    server: &StunServer,
    app: &App,
    request: &BindingRequest<'_>,
    source: SocketAddr,
    decision: Decision,
    password: Option<&str>,
) {
    let answer = match decision {
        Decision::Answer { keepalive } => {
            app.metrics.stun.inc(if keepalive { "keepalive" } else { "answered" });
            stun::binding_response(request, source, None)
        }
        Decision::AnswerSigned { dialect, record } => {
            if !record {
                app.metrics.stun.inc("answered");
            }
            stun::binding_response(request, source, password.map(|p| (p.as_bytes(), dialect)))
        }
        Decision::Challenge => {
            app.metrics.stun.inc("challenged");
            stun::binding_error(request, 401, "Unauthorized")
        }
        Decision::Drop => {
            app.metrics.stun.inc("bad_integrity");
            tracing::debug!(%source, username = request.username.unwrap_or(""), "STUN request with a bad signature dropped");
            return;
        }
    };
    let Some(socket) = server.socket() else { return };
    if let Err(error) = socket.send_to(&answer, source).await {
        tracing::debug!(%source, "STUN answer not sent: {error}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A TR-111 Binding Request, built by hand as a classic client would (no cookie, MESSAGE-
    /// INTEGRITY over the message padded to 64 bytes).
    fn request(username: &str, password: Option<&str>, change: bool) -> Vec<u8> {
        use hmac::{Hmac, Mac};
        let mut attributes = Vec::new();
        let mut push = |kind: u16, value: &[u8]| {
            attributes.extend_from_slice(&kind.to_be_bytes());
            attributes.extend_from_slice(&u16::try_from(value.len()).unwrap().to_be_bytes());
            attributes.extend_from_slice(value);
            attributes.resize(attributes.len().div_ceil(4) * 4, 0);
        };
        push(0x0006, username.as_bytes());
        push(0xC001, stun::CONNECTION_REQUEST_BINDING_VALUE);
        if change {
            push(0xC002, &[]);
        }
        let signed_length = attributes.len() + if password.is_some() { 24 } else { 0 };
        let mut out = vec![0, 1];
        out.extend_from_slice(&u16::try_from(signed_length).unwrap().to_be_bytes());
        out.extend_from_slice(&[9; 16]);
        out.extend_from_slice(&attributes);
        if let Some(password) = password {
            let mut padded = out.clone();
            padded.resize(padded.len().div_ceil(64) * 64, 0);
            let mut mac = Hmac::<sha1::Sha1>::new_from_slice(password.as_bytes()).unwrap();
            mac.update(&padded);
            out.extend_from_slice(&[0, 8, 0, 20]);
            out.extend_from_slice(&mac.finalize().into_bytes());
        }
        out
    }

    const HOME: &str = "198.51.100.4:40000";
    const MOVED: &str = "198.51.100.4:40001";

    #[test]
    fn a_signed_request_records_a_new_binding_and_an_unsigned_one_never_does() {
        let addr = |s: &str| s.parse::<SocketAddr>().unwrap();
        let signed = request("dev-1", Some("pw"), true);
        let signed = BindingRequest::decode(&signed).unwrap();
        assert_eq!(
            decide(&signed, addr(HOME), Some("pw"), None),
            Decision::AnswerSigned { dialect: Dialect::Rfc3489, record: true }
        );
        // BINDING-CHANGE from the address already recorded still records (its time moves).
        assert_eq!(
            decide(&signed, addr(HOME), Some("pw"), Some(addr(HOME))),
            Decision::AnswerSigned { dialect: Dialect::Rfc3489, record: true }
        );
        // Another device's password: the request claims a username that is not its own.
        assert_eq!(decide(&signed, addr(HOME), Some("other"), None), Decision::Drop);

        let keepalive = request("dev-1", None, false);
        let keepalive = BindingRequest::decode(&keepalive).unwrap();
        assert_eq!(decide(&keepalive, addr(HOME), Some("pw"), Some(addr(HOME))), Decision::Answer { keepalive: true });
        // From elsewhere, unsigned: challenged, nothing recorded.
        assert_eq!(decide(&keepalive, addr(MOVED), Some("pw"), Some(addr(HOME))), Decision::Challenge);
        assert_eq!(decide(&keepalive, addr(HOME), Some("pw"), None), Decision::Challenge);
        let changed = request("dev-1", None, true);
        let changed = BindingRequest::decode(&changed).unwrap();
        assert_eq!(decide(&changed, addr(HOME), Some("pw"), Some(addr(HOME))), Decision::Challenge);
    }

    #[test]
    fn signed_keepalives_from_the_recorded_address_record_nothing_new() {
        let addr = |s: &str| s.parse::<SocketAddr>().unwrap();
        let signed = request("dev-1", Some("pw"), false);
        let signed = BindingRequest::decode(&signed).unwrap();
        assert_eq!(
            decide(&signed, addr(HOME), Some("pw"), Some(addr(HOME))),
            Decision::AnswerSigned { dialect: Dialect::Rfc3489, record: false }
        );
    }

    #[test]
    fn plain_address_discovery_is_answered_to_anyone() {
        let mut bytes = vec![0, 1, 0, 0];
        bytes.extend_from_slice(&[3; 16]);
        let discovery = BindingRequest::decode(&bytes).unwrap();
        assert_eq!(decide(&discovery, HOME.parse().unwrap(), None, None), Decision::Answer { keepalive: false });
    }

    #[test]
    fn a_device_password_is_the_same_in_every_replica() {
        let a = Secrets::from_key(&[1; 32]);
        let b = Secrets::from_key(&[1; 32]);
        assert_eq!(password(&a, "00259E-HG8245H-1"), password(&b, "00259E-HG8245H-1"));
        assert_ne!(password(&a, "00259E-HG8245H-1"), password(&a, "00259E-HG8245H-2"));
    }
}
