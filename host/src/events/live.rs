//! Live events for people watching (the portal's task, diagnostic and rollout progress): each
//! replica reads the outbox for its own listeners, from its tail, in commit order, while at
//! least one listens — a task finished in a session held by another replica reaches them all,
//! with no coordination beyond the database. A listener's stream is filtered by `wanted`; one
//! that falls behind is told so (`Lagged`) and reloads what it shows.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, broadcast};

use crate::store::Store;
use crate::store::events::Event;
use crate::store::orgs::Scope;
use crate::store::webhooks;

/// How often the outbox is read while someone listens: what "live" means on screen.
const POLL: Duration = Duration::from_millis(500);
/// Events read per round.
const BATCH: u64 = 500;
/// Events kept for a listener that has not taken them yet; past this it lags.
const BACKLOG: usize = 1024;
/// Streams a replica serves at once: each costs a task and a receiver, no database work.
pub const MAX_STREAMS: usize = 1000;

/// An event as listeners get it: the event, and its body as webhooks carry it.
#[derive(Debug)]
pub struct LiveEvent {
    pub event: Event,
    pub body: String,
}

pub struct Live {
    sender: broadcast::Sender<Arc<LiveEvent>>,
    streams: Arc<Semaphore>,
    /// Whether the reader runs; changed only under this lock, with listeners subscribing under
    /// it too, so that the reader never stops while someone has just started to listen.
    reading: Arc<std::sync::Mutex<bool>>,
    /// Set when the server stops: every stream ends (a graceful shutdown waits for open
    /// connections, and a stream would hold it for its whole lifetime).
    closing: tokio::sync::watch::Sender<bool>,
}

/// What a listener holds: its place among the streams, the events, and the server's stop.
pub struct Listener {
    pub place: OwnedSemaphorePermit,
    pub events: broadcast::Receiver<Arc<LiveEvent>>,
    pub closing: tokio::sync::watch::Receiver<bool>,
}

impl Default for Live {
    fn default() -> Self {
        Self {
            sender: broadcast::channel(BACKLOG).0,
            streams: Arc::new(Semaphore::new(MAX_STREAMS)),
            reading: Arc::new(std::sync::Mutex::new(false)),
            closing: tokio::sync::watch::channel(false).0,
        }
    }
}

impl Live {
    /// A place among the streams and the events from now on; None when every place is taken.
    pub fn listen(&self, store: &Store) -> Option<Listener> {
        let place = self.streams.clone().try_acquire_owned().ok()?;
        let mut reading = self.reading.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let events = self.sender.subscribe();
        if !*reading {
            *reading = true;
            tokio::spawn(read(store.clone(), self.sender.clone(), self.reading.clone()));
        }
        Some(Listener { place, events, closing: self.closing.subscribe() })
    }

    /// Ends every stream: the server is stopping.
    pub fn close(&self) {
        self.closing.send_replace(true);
    }
}

/// Reads the outbox from its tail and passes each event on, until nobody listens.
async fn read(store: Store, sender: broadcast::Sender<Arc<LiveEvent>>, reading: Arc<std::sync::Mutex<bool>>) {
    let mut cursor = None;
    loop {
        {
            let mut running = reading.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            if sender.receiver_count() == 0 {
                *running = false;
                return;
            }
        }
        match round(&store, &sender, cursor).await {
            Ok(next) => cursor = Some(next),
            Err(error) => tracing::debug!("reading the outbox for live events: {error:#}"),
        }
        tokio::time::sleep(POLL).await;
    }
}

async fn round(
    store: &Store,
    sender: &broadcast::Sender<Arc<LiveEvent>>,
    cursor: Option<webhooks::Cursor>,
) -> anyhow::Result<webhooks::Cursor> {
    let Some(mut cursor) = cursor else { return webhooks::tail(store).await };
    loop {
        let events = webhooks::read(store, cursor, BATCH).await?;
        let Some((last, _)) = events.last() else { return Ok(cursor) };
        cursor = *last;
        let slugs = crate::store::orgs::slugs(store).await?;
        let count = events.len() as u64;
        for (_, event) in events {
            let slug = event.org_id.and_then(|id| slugs.get(&id)).map(String::as_str);
            let body = super::outbox::body(&event, slug).to_string();
            // No receiver left: the next round stops the reader.
            let _ = sender.send(Arc::new(LiveEvent { event, body }));
        }
        if count < BATCH {
            return Ok(cursor);
        }
    }
}

/// What a listener asked to see.
#[derive(Debug, Clone)]
pub struct Interest {
    pub scope: Scope,
    /// Event types, as webhooks subscribe (`*`, `task.done`, `rollout.*`); all when empty.
    pub patterns: Vec<String>,
    /// Only events about this subject (a device's id).
    pub subject: Option<String>,
}

/// Whether a listener sees an event: of its organizations (events of no organization, about
/// devices no one claimed, are the platform's), of a type and subject it asked for.
pub fn wanted(interest: &Interest, event: &Event) -> bool {
    let visible = match &interest.scope {
        Scope::All => true,
        Scope::Orgs(orgs) => event.org_id.is_some_and(|org| orgs.contains(&org)),
    };
    visible
        && (interest.patterns.is_empty() || super::subscribed(&interest.patterns, &event.r#type))
        && interest.subject.as_ref().is_none_or(|subject| *subject == event.subject)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(kind: &str, org: Option<i64>, subject: &str) -> Event {
        Event { id: 1, r#type: kind.into(), org_id: org, subject: subject.into(), payload: "{}".into(), created_at: 0 }
    }

    #[test]
    fn a_listener_sees_its_organizations_types_and_subject() {
        let tenant = Interest { scope: Scope::Orgs(vec![2, 3]), patterns: vec![], subject: None };
        assert!(wanted(&tenant, &event("task.done", Some(3), "D1")));
        assert!(!wanted(&tenant, &event("task.done", Some(4), "D1")), "another tenant's");
        assert!(!wanted(&tenant, &event("device.online", None, "D1")), "an unclaimed device's are the platform's");
        let platform = Interest { scope: Scope::All, patterns: vec![], subject: None };
        assert!(wanted(&platform, &event("device.online", None, "D1")));

        let tasks = Interest { patterns: vec!["task.*".into()], subject: Some("D1".into()), ..tenant };
        assert!(wanted(&tasks, &event("task.fault", Some(2), "D1")));
        assert!(!wanted(&tasks, &event("diagnostics.completed", Some(2), "D1")), "another type");
        assert!(!wanted(&tasks, &event("task.done", Some(2), "D2")), "another device");
    }
}
