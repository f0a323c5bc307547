//! On SQLite, the Informs of concurrent sessions (all but `1 BOOT` and `0 BOOTSTRAP`, which set
//! more columns) update their devices' rows in one statement.
//!
//! sqlx runs each SQLite connection on a thread of its own and hands every statement to it and
//! its rows back: thread wake-ups per statement, which a profile of the periodic-Inform ceiling
//! found to be most of the server's time (futex waits and `try_to_wake_up`, against ~3 % in
//! SQLite itself). SQLite takes one writer at a time anyway, so the Informs that arrive while one
//! statement runs wait here and go together in the next: one
//! `WITH v(…) AS (VALUES …) UPDATE devices … FROM v … RETURNING` for up to [`MAX_ROWS`]
//! devices, one hand-off and one commit for all of them; a lone Inform is that statement with
//! one row. PostgreSQL runs its Informs side by side on a pool and does not need this.
//!
//! Whatever the writer cannot do (its statement failed, a row did not read back, the writer is
//! gone) falls back to the caller, which writes that Inform alone as before: a failure here
//! costs speed, never an Inform. Two sessions of one device at once (a misbehaving CPE) may see
//! a grouped Inform land after a `1 BOOT` one sent later, which takes the direct path; its row
//! then keeps the grouped Inform's time and events until the next Inform.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::{Context, Result};
use sea_orm::{ConnectionTrait, DatabaseConnection, Value};
use tokio::sync::{Mutex, mpsc, oneshot};

use super::{Device, HAS_QUEUED_TASKS, INFORM_COLUMNS, InformRecord, inform_assignments, inform_row, updated_device};
use crate::health::OfflineGrace;

/// The most devices one statement updates: 64 rows of 13 values stay far below SQLite's
/// 32,766 placeholders, and beyond the sessions a server has in flight at once a bigger batch
/// gains nothing.
const MAX_ROWS: usize = 64;

/// Informs waiting for the writer: one per session in flight, which the CWMP port caps; past
/// this, senders wait.
const QUEUE: usize = 4096;

/// What one device's row became, and whether tasks are queued for it; `None` when the writer
/// did not update it (no device has its id, or the writer could not): the caller then writes
/// the Inform itself.
type Updated = Option<(Device, bool)>;

/// Hands periodic Informs to the one task that writes them.
#[derive(Clone, Debug)]
pub struct InformWriter {
    queue: mpsc::Sender<Pending>,
    /// Informs handed over and not yet answered (`roost_inform_writer_waiting`).
    waiting: Arc<AtomicUsize>,
}

#[derive(Debug)]
struct Pending {
    device_id: String,
    /// [`inform_row`], then the grace the Inform's `offline_at` is reckoned by.
    values: Vec<Value>,
    reply: oneshot::Sender<Updated>,
}

/// Counts an Inform as waiting until its answer comes or its session gives up on it.
struct Waiting<'a>(&'a AtomicUsize);

impl<'a> Waiting<'a> {
    fn start(count: &'a AtomicUsize) -> Self {
        count.fetch_add(1, Ordering::Relaxed);
        Self(count)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl InformWriter {
    /// Starts the writer on `db`, taking `write_lock` (the store's SQLite writer lock) for each
    /// statement. It stops once every clone of the returned handle is gone.
    pub fn spawn(db: DatabaseConnection, write_lock: Arc<Mutex<()>>) -> Self {
        let (queue, waiting) = mpsc::channel(QUEUE);
        tokio::spawn(write(db, write_lock, waiting));
        Self { queue, waiting: Arc::default() }
    }

    /// How many Informs wait for the writer now: queued, or in the statement that runs.
    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::Relaxed)
    }

    /// Updates a known device from an Inform that carries neither `1 BOOT` nor `0 BOOTSTRAP`
    /// (those set more columns: `update_known`), in the next statement the writer runs.
    pub async fn update(&self, record: &InformRecord<'_>, grace: OfflineGrace) -> Updated {
        let mut values: Vec<Value> = inform_row(record).into();
        values.extend([grace.per_interval_second_ms.into(), grace.min_ms.into()]);
        let (reply, answer) = oneshot::channel();
        let pending = Pending { device_id: record.device_id.to_owned(), values, reply };
        // A writer gone (it panicked) drops the queue and the replies: the caller writes.
        self.queue.send(pending).await.ok()?;
        // Counted once queued: the writer takes it in its next statement.
        let _waiting = Waiting::start(&self.waiting);
        answer.await.ok().flatten()
    }
}

async fn write(db: DatabaseConnection, write_lock: Arc<Mutex<()>>, mut queue: mpsc::Receiver<Pending>) {
    let mut waiting: Vec<Pending> = Vec::new();
    loop {
        if waiting.is_empty() {
            match queue.recv().await {
                Some(pending) => waiting.push(pending),
                None => return,
            }
        }
        let guard = write_lock.lock().await;
        // Whatever arrived while the previous statement ran, or while another writer held the
        // lock, joins this one.
        while waiting.len() < 4 * MAX_ROWS {
            match queue.try_recv() {
                Ok(pending) => waiting.push(pending),
                Err(_) => break,
            }
        }
        let batch = take_batch(&mut waiting, MAX_ROWS, |p| p.device_id.as_str());
        let mut updated = match update_all(&db, &batch).await {
            Ok(updated) => updated,
            Err(error) => {
                tracing::warn!("grouped Informs not written, each is written alone: {error:#}");
                HashMap::new()
            }
        };
        drop(guard);
        for pending in batch {
            // A session gone meanwhile is no error of the writer's.
            let _ = pending.reply.send(updated.remove(&pending.device_id));
        }
    }
}

/// Takes from `waiting`, in order, up to `max` items of distinct keys: one statement cannot
/// update a device twice (an `UPDATE … FROM` row matched twice takes one of the two, either).
/// The rest stay in `waiting`, in order, for the next statement.
fn take_batch<T>(waiting: &mut Vec<T>, max: usize, key: impl Fn(&T) -> &str) -> Vec<T> {
    let mut keys = HashSet::new();
    let mut batch = Vec::new();
    let mut rest = Vec::new();
    for item in waiting.drain(..) {
        if batch.len() < max && keys.insert(key(&item).to_owned()) {
            batch.push(item);
        } else {
            rest.push(item);
        }
    }
    *waiting = rest;
    batch
}

/// The rows of a statement for `devices` devices: a power of two, so that at most
/// log2([`MAX_ROWS`]) + 1 shapes of the statement exist, each prepared once per connection.
fn rows_for(devices: usize) -> usize {
    devices.next_power_of_two()
}

/// The group-committed update of `rows` rows of `v`, whose columns are the device id, then
/// [`INFORM_COLUMNS`], then the grace.
fn batch_sql(rows: usize) -> String {
    let columns: Vec<&str> = std::iter::once("device_id")
        .chain(INFORM_COLUMNS.iter().map(|&(column, _)| column))
        .chain(["per_interval_second_ms", "min_ms"])
        .collect();
    let row = format!("({})", vec!["?"; columns.len()].join(", "));
    format!(
        "WITH v({}) AS (VALUES {}) UPDATE devices SET {} FROM v WHERE devices.device_id = v.device_id \
         RETURNING *, {HAS_QUEUED_TASKS}",
        columns.join(", "),
        vec![row.as_str(); rows].join(", "),
        inform_assignments(|column| format!("v.{column}")),
    )
}

/// Runs one statement for `batch`; padding rows (a NULL device id) match no device.
async fn update_all(db: &DatabaseConnection, batch: &[Pending]) -> Result<HashMap<String, (Device, bool)>> {
    let width = 1 + INFORM_COLUMNS.len() + 2;
    let rows = rows_for(batch.len());
    let mut args: Vec<Value> = Vec::with_capacity(rows * width);
    for pending in batch {
        args.push(pending.device_id.as_str().into());
        args.extend(pending.values.iter().cloned());
    }
    args.resize(rows * width, Value::String(None));
    let statement = super::statement(db.get_database_backend(), &batch_sql(rows), args);
    let rows = db.query_all_raw(statement).await.context("recording Informs")?;
    let mut updated = HashMap::with_capacity(rows.len());
    for row in &rows {
        // A row that does not read back is left to its caller, which writes it again.
        match updated_device(row) {
            Ok((device, queued)) => {
                updated.insert(device.device_id.clone(), (device, queued));
            }
            Err(error) => tracing::warn!("a grouped Inform's row: {error:#}"),
        }
    }
    Ok(updated)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_takes_distinct_devices_in_order_up_to_its_size() {
        let mut waiting = vec!["a", "b", "a", "c", "d", "b", "e"];
        let batch = take_batch(&mut waiting, 3, |s| s);
        assert_eq!(batch, ["a", "b", "c"]);
        assert_eq!(waiting, ["a", "d", "b", "e"], "the rest keep their order for the next statement");
        let batch = take_batch(&mut waiting, 3, |s| s);
        assert_eq!(batch, ["a", "d", "b"]);
        assert_eq!(waiting, ["e"]);
        assert_eq!(take_batch(&mut waiting, 3, |s| s), ["e"]);
        assert!(waiting.is_empty());
    }

    #[test]
    fn statements_come_in_few_shapes() {
        let shapes: HashSet<usize> = (1..=MAX_ROWS).map(rows_for).collect();
        assert_eq!(shapes.len(), 7, "{shapes:?}");
        assert!((1..=MAX_ROWS).all(|n| rows_for(n) >= n && rows_for(n) <= MAX_ROWS));
    }

    #[test]
    fn the_statement_has_a_placeholder_per_value() {
        let sql = batch_sql(4);
        assert_eq!(sql.matches('?').count(), 4 * (1 + INFORM_COLUMNS.len() + 2));
        assert!(sql.contains("COALESCE(v.software_version, devices.software_version)"), "{sql}");
        assert!(sql.contains("offline_at = v.last_inform_at + CASE"), "{sql}");
    }
}
