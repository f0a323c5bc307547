//! Live events for people watching (the portal's task, diagnostic and rollout progress): each
//! replica reads the outbox for its own listeners, from its tail, in commit order, while at
//! least one listens — a task finished in a session held by another replica reaches them all,
//! with no coordination beyond the database. A listener's stream is filtered by `wanted`; one
//! that falls behind is told so (`Lagged`) and reloads what it shows.

use std::collections::HashMap;
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
/// Streams one caller (a user or a key) holds at once on a replica: a portal tab holds one, so
/// this leaves room for several tabs and an integration, and one caller cannot take the places
/// of every other tenant.
pub const MAX_STREAMS_PER_CALLER: usize = 8;

/// An event as listeners get it: the event, and its body as webhooks carry it.
#[derive(Debug)]
pub struct LiveEvent {
    pub event: Event,
    pub body: String,
}

pub struct Live {
    sender: broadcast::Sender<Arc<LiveEvent>>,
    streams: Arc<Semaphore>,
    /// Streams held per caller (`Caller::actor`).
    held: Arc<std::sync::Mutex<HashMap<String, usize>>>,
    /// Whether the reader runs; changed only under this lock, with listeners subscribing under
    /// it too, so that the reader never stops while someone has just started to listen.
    reading: Arc<std::sync::Mutex<bool>>,
    /// Set when the server stops: every stream ends (a graceful shutdown waits for open
    /// connections, and a stream would hold it for its whole lifetime).
    closing: tokio::sync::watch::Sender<bool>,
}

/// Why a stream was not opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Every place of this replica is taken.
    Full,
    /// This caller holds `MAX_STREAMS_PER_CALLER` already.
    CallerFull,
}

/// What a listener holds: its places among the streams, the events, and the server's stop.
pub struct Listener {
    pub place: Place,
    pub events: broadcast::Receiver<Arc<LiveEvent>>,
    pub closing: tokio::sync::watch::Receiver<bool>,
}

/// A stream's places, the replica's and its caller's, given back when it is dropped.
pub struct Place {
    _replica: OwnedSemaphorePermit,
    caller: String,
    held: Arc<std::sync::Mutex<HashMap<String, usize>>>,
}

impl Drop for Place {
    fn drop(&mut self) {
        let mut held = self.held.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(count) = held.get_mut(&self.caller) {
            *count -= 1;
            if *count == 0 {
                held.remove(&self.caller);
            }
        }
    }
}

impl Default for Live {
    fn default() -> Self {
        Self {
            sender: broadcast::channel(BACKLOG).0,
            streams: Arc::new(Semaphore::new(MAX_STREAMS)),
            held: Arc::new(std::sync::Mutex::new(HashMap::new())),
            reading: Arc::new(std::sync::Mutex::new(false)),
            closing: tokio::sync::watch::channel(false).0,
        }
    }
}

impl Live {
    /// Places for `caller`'s stream and the events from now on. When no reader runs, the
    /// outbox's tail is read before this returns, so an event committed once the caller has its
    /// stream is on it.
    pub async fn listen(&self, store: &Store, caller: &str) -> Result<Listener, Refusal> {
        let replica = self.streams.clone().try_acquire_owned().map_err(|_| Refusal::Full)?;
        {
            let mut held = self.held.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            let count = held.entry(caller.to_owned()).or_default();
            if *count >= MAX_STREAMS_PER_CALLER {
                return Err(Refusal::CallerFull);
            }
            *count += 1;
        }
        let place = Place { _replica: replica, caller: caller.to_owned(), held: self.held.clone() };
        let (events, start) = {
            let mut reading = self.reading.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            let events = self.sender.subscribe();
            let start = !*reading;
            *reading = true;
            (events, start)
        };
        if start {
            // A tail that cannot be read now is read by the reader's first round.
            let cursor = webhooks::tail(store).await.ok();
            tokio::spawn(read(store.clone(), self.sender.clone(), self.reading.clone(), cursor));
        }
        Ok(Listener { place, events, closing: self.closing.subscribe() })
    }

    /// Ends every stream: the server is stopping.
    pub fn close(&self) {
        self.closing.send_replace(true);
    }
}

/// Marks the reader stopped if its task ends otherwise than by deciding to (a panic), so the
/// next listener starts another.
struct Unexpected {
    reading: Arc<std::sync::Mutex<bool>>,
    armed: bool,
}

impl Drop for Unexpected {
    fn drop(&mut self) {
        if self.armed {
            *self.reading.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = false;
        }
    }
}

/// Reads the outbox past `cursor` (its tail when none) and passes each event on, until nobody
/// listens.
async fn read(
    store: Store,
    sender: broadcast::Sender<Arc<LiveEvent>>,
    reading: Arc<std::sync::Mutex<bool>>,
    mut cursor: Option<webhooks::Cursor>,
) {
    let mut unexpected = Unexpected { reading: reading.clone(), armed: true };
    loop {
        {
            // Stopping is decided under the lock listeners subscribe under; once decided, a
            // listener may start the next reader at once, which this one must not undo.
            let mut running = reading.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            if sender.receiver_count() == 0 {
                *running = false;
                unexpected.armed = false;
                return;
            }
        }
        if let Err(error) = round(&store, &sender, &mut cursor).await {
            tracing::debug!("reading the outbox for live events: {error:#}");
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Passes on what the outbox holds past `cursor`, moving it past each batch sent (a failure
/// half-way sends nothing twice).
async fn round(
    store: &Store,
    sender: &broadcast::Sender<Arc<LiveEvent>>,
    cursor: &mut Option<webhooks::Cursor>,
) -> anyhow::Result<()> {
    let Some(after) = cursor else {
        *cursor = Some(webhooks::tail(store).await?);
        return Ok(());
    };
    let mut after = *after;
    loop {
        let events = webhooks::read(store, after, BATCH).await?;
        let Some((last, _)) = events.last() else { return Ok(()) };
        let last = *last;
        let slugs = crate::store::orgs::slugs(store).await?;
        let count = events.len() as u64;
        for (_, event) in events {
            let slug = event.org_id.and_then(|id| slugs.get(&id)).map(String::as_str);
            let body = super::outbox::body(&event, slug).to_string();
            // No receiver left: the next round stops the reader.
            let _ = sender.send(Arc::new(LiveEvent { event, body }));
        }
        after = last;
        *cursor = Some(last);
        if count < BATCH {
            return Ok(());
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
