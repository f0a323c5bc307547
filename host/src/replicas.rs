//! What one replica tells the others sharing its PostgreSQL database: a task finished (an API
//! call on another replica may be waiting for it), or a cache is out of date (presets, plugins,
//! users and keys, organization routes, a device's STUN binding). PostgreSQL's LISTEN/NOTIFY
//! carries it; nothing else is shared between replicas but the database.
//!
//! A signal is applied here at once and sent to the others; a replica skips its own. A signal
//! lost (a listener reconnecting) costs only latency: task waits also look at the task in the
//! database now and then, and every cache has a time to live. SQLite has one process: signals
//! stay local.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use sea_orm::ConnectionTrait;
use tokio::sync::watch;

use crate::app::App;

/// The channel the replicas of one database talk on.
const CHANNEL: &str = "roost_replicas";

/// Something the other replicas must know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Signal {
    /// A task ended (done or fault).
    TaskFinished(i64),
    /// Presets, plugins, plugin limits or configuration changed.
    Provisioning,
    /// Users, API keys or the organization tree changed.
    Principals,
    /// Organizations' onboarding slugs or CWMP hosts changed.
    OrgRoutes,
    /// A device was deleted: its STUN binding is forgotten.
    DeviceDeleted(String),
    /// A UDP connection request for a device behind NAT: sent again by the replica whose STUN
    /// server holds the device's binding, since the device's NAT lets in only what comes from
    /// where its STUN requests went. The datagram is the signed message itself (the same id, so
    /// the CPE acts on one copy).
    UdpWake { device_id: String, address: std::net::SocketAddr, datagram: Vec<u8> },
}

/// Every [`Signal::kind`], for the metrics' labels.
pub const SIGNAL_KINDS: &[&str] = &["task", "provisioning", "principals", "org-routes", "device-deleted", "udp-wake"];

impl Signal {
    /// The signal's name, as its payload and the metrics say it.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::TaskFinished(_) => "task",
            Self::Provisioning => "provisioning",
            Self::Principals => "principals",
            Self::OrgRoutes => "org-routes",
            Self::DeviceDeleted(_) => "device-deleted",
            Self::UdpWake { .. } => "udp-wake",
        }
    }

    /// The notification's payload: `<replica> <kind>[ <argument>]`.
    pub fn encode(&self, replica: &str) -> String {
        let kind = self.kind();
        match self {
            Self::TaskFinished(id) => format!("{replica} {kind} {id}"),
            Self::Provisioning | Self::Principals | Self::OrgRoutes => format!("{replica} {kind}"),
            Self::DeviceDeleted(device_id) => format!("{replica} {kind} {device_id}"),
            Self::UdpWake { device_id, address, datagram } => {
                format!("{replica} {kind} {address} {} {device_id}", hex::encode(datagram))
            }
        }
    }

    /// The sender and the signal of a payload; `None` for one this version does not know (a
    /// newer replica during a rolling upgrade), which is ignored.
    pub fn decode(payload: &str) -> Option<(&str, Self)> {
        let (replica, rest) = payload.split_once(' ')?;
        let (kind, argument) = rest.split_once(' ').map_or((rest, None), |(k, a)| (k, Some(a)));
        let signal = match (kind, argument) {
            ("task", Some(id)) => Self::TaskFinished(id.parse().ok()?),
            ("provisioning", None) => Self::Provisioning,
            ("principals", None) => Self::Principals,
            ("org-routes", None) => Self::OrgRoutes,
            ("device-deleted", Some(device_id)) => Self::DeviceDeleted(device_id.to_owned()),
            ("udp-wake", Some(rest)) => {
                let mut parts = rest.splitn(3, ' ');
                let address = parts.next()?.parse().ok()?;
                let datagram = hex::decode(parts.next()?).ok()?;
                Self::UdpWake { device_id: parts.next()?.to_owned(), address, datagram }
            }
            _ => return None,
        };
        Some((replica, signal))
    }
}

/// Applies `signal` to this replica's own state.
fn apply(app: &App, signal: &Signal) {
    match signal {
        // No receiver is fine: nobody is waiting.
        Signal::TaskFinished(id) => drop(app.task_events.send(*id)),
        Signal::Provisioning => app.provisioning.invalidate(),
        Signal::Principals => app.auth.principals.forget(),
        Signal::OrgRoutes => app.org_routes.invalidate_all(),
        Signal::DeviceDeleted(device_id) => {
            if let Some(stun) = app.stun.get() {
                stun.forget(device_id);
            }
        }
        Signal::UdpWake { device_id, address, datagram } => {
            let Some(stun) = app.stun.get() else { return };
            if !stun.remembers(device_id, *address) {
                return;
            }
            let (stun, address, datagram) = (stun.clone(), *address, datagram.clone());
            let (copies, interval) = (app.config.stun.copies, app.config.stun.copy_interval);
            tokio::spawn(async move {
                if let Err(error) = stun.send_copies(address, datagram, copies, interval).await {
                    tracing::debug!("a UDP connection request asked of another replica was not sent: {error:#}");
                }
            });
        }
    }
}

/// Applies `signal` here and tells the other replicas (PostgreSQL), without waiting.
pub fn publish(app: &App, signal: Signal) {
    apply(app, &signal);
    tell_others(app, signal);
}

/// Tells the other replicas only (PostgreSQL), without waiting.
pub fn tell_others(app: &App, signal: Signal) {
    if app.store.backend() != sea_orm::DbBackend::Postgres {
        return;
    }
    let payload = signal.encode(&app.replica);
    let store = app.store.clone();
    app.metrics.replica_signals.inc("sent", signal.kind());
    tokio::spawn(async move {
        let statement = store.statement("SELECT pg_notify(?, ?)", [CHANNEL.into(), payload.into()]);
        if let Err(error) = store.db().execute_raw(statement).await {
            // The others' caches expire; their task waits look again.
            tracing::debug!("telling the other replicas: {error}");
        }
    });
}

/// Listens for the other replicas' signals until stopped (PostgreSQL only), reconnecting when
/// the database goes away.
pub async fn listen(app: Arc<App>, mut stopped: watch::Receiver<bool>) -> Result<()> {
    if app.store.backend() != sea_orm::DbBackend::Postgres {
        // Nothing to listen to; the server takes a task that ends early for a failure.
        let _ = stopped.wait_for(|stop| *stop).await;
        return Ok(());
    }
    let mut backoff = Duration::from_millis(200);
    loop {
        let session = listen_once(&app);
        tokio::select! {
            result = session => {
                if let Err(error) = result {
                    tracing::warn!("{error:#}; listening again in {} ms", backoff.as_millis());
                }
            }
            _ = stopped.wait_for(|stop| *stop) => return Ok(()),
        }
        tokio::select! {
            () = tokio::time::sleep(backoff) => backoff = (backoff * 2).min(Duration::from_secs(10)),
            _ = stopped.wait_for(|stop| *stop) => return Ok(()),
        }
    }
}

/// One connection's worth of listening; returns only with the error that ended it.
async fn listen_once(app: &App) -> Result<()> {
    let mut listener = sea_orm::sqlx::postgres::PgListener::connect(&app.config.database_url)
        .await
        .context("connecting the replicas' listener")?;
    listener.listen(CHANNEL).await.context("listening for the other replicas")?;
    loop {
        let notification = listener.recv().await.context("the replicas' listener")?;
        match Signal::decode(notification.payload()) {
            Some((replica, _)) if replica == app.replica => {}
            Some((_, signal)) => {
                apply(app, &signal);
                app.metrics.replica_signals.inc("received", signal.kind());
            }
            None => tracing::debug!(payload = notification.payload(), "an unknown replica signal ignored"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_survive_their_payload_and_unknown_ones_are_ignored() {
        for signal in [
            Signal::TaskFinished(42),
            Signal::Provisioning,
            Signal::Principals,
            Signal::OrgRoutes,
            Signal::DeviceDeleted("00259E-HG8245H-48 5754".into()),
            Signal::UdpWake {
                device_id: "00259E-HG8245H-48 5754".into(),
                address: "198.51.100.7:40001".parse().unwrap(),
                datagram: b"GET http://198.51.100.7:40001?ts=1&id=2&un=u&cn=c&sig=s HTTP/1.1\r\n\r\n".to_vec(),
            },
        ] {
            let payload = signal.encode("r1");
            assert!(SIGNAL_KINDS.contains(&signal.kind()), "{payload}");
            assert_eq!(Signal::decode(&payload), Some(("r1", signal)), "{payload}");
        }
        assert_eq!(Signal::decode("r1 task x"), None);
        assert_eq!(Signal::decode("r1 something-new 7"), None);
        assert_eq!(Signal::decode("r1"), None);
        assert_eq!(Signal::decode("r1 provisioning extra"), None);
    }
}
