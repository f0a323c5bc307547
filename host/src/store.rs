//! The device store: repository functions per aggregate over sea-orm, on SQLite (embedded
//! default, WAL) or PostgreSQL.
//!
//! Queries are hand-written SQL with `?` placeholders (rewritten to `$n` for PostgreSQL): the
//! hot paths (the Inform, discovery's bulk upserts, prefix scans of the parameter tree) are
//! easier to keep to one round trip each when the SQL is in plain sight.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, Result};
use sea_orm::sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbBackend, DbErr, FromQueryResult, QueryResult,
    Statement, Value,
};
use sea_orm_migration::MigratorTrait;
use tokio::sync::{Mutex, MutexGuard};

/// A column of fixed names stored as text, as the store's SQL writes them.
macro_rules! stored_names {
    ($type:ty { $($variant:ident => $name:literal),+ $(,)? }) => {
        impl $type {
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $name),+
                }
            }

            pub fn parse(name: &str) -> Option<Self> {
                match name {
                    $($name => Some(Self::$variant),)+
                    _ => None,
                }
            }
        }

        impl sea_orm::TryGetable for $type {
            fn try_get_by<I: sea_orm::ColIdx>(
                row: &sea_orm::QueryResult,
                index: I,
            ) -> Result<Self, sea_orm::TryGetError> {
                let name = String::try_get_by(row, index)?;
                Self::parse(&name).ok_or_else(|| {
                    sea_orm::TryGetError::DbErr(sea_orm::DbErr::Type(format!(
                        "{name:?} is not a {}",
                        stringify!($type)
                    )))
                })
            }
        }
    };
}

pub mod api_keys;
pub mod audit;
pub mod backup;
pub mod bulk;
pub mod credentials;
pub mod dashboard;
pub mod devices;
pub mod diagnostics;
pub mod events;
pub mod faults;
pub mod files;
pub mod leases;
pub mod metrics;
pub mod orgs;
pub mod parameters;
pub mod plugin_logs;
pub mod plugins;
pub mod preregistrations;
pub mod presets;
pub mod rollouts;
pub mod settings;
pub mod subscribers;
pub mod tasks;
pub mod tokens;
pub mod users;
pub mod webhooks;

/// The first row a statement returns, after stepping it to completion.
///
/// Never fetch just one row (sea-orm's `one`, `query_one_raw`): on SQLite, sqlx leaves such a
/// statement active on its pooled connection, and an active statement keeps a read snapshot, so
/// no checkpoint can restart the WAL. Measured with the periodic Inform's `UPDATE … RETURNING`:
/// the WAL grew by ~19 KB per session (2 GiB in a two-minute benchmark) and every commit paid
/// for it; stepping to completion kept it at 4 MiB and raised the ceiling from 1,660 to 2,790
/// sessions/s (docs/BENCHMARKS.md). `clippy.toml` forbids the one-row calls.
pub async fn first_row<C: ConnectionTrait>(db: &C, statement: Statement) -> Result<Option<QueryResult>, DbErr> {
    Ok(db.query_all_raw(statement).await?.into_iter().next())
}

/// [`first_row`], read as a model.
pub async fn first<M: FromQueryResult, C: ConnectionTrait>(db: &C, statement: Statement) -> Result<Option<M>, DbErr> {
    Ok(M::find_by_statement(statement).all(db).await?.into_iter().next())
}

/// Whether an error means the database cannot be reached (down, restarting, out of
/// connections) rather than that the request was wrong: callers answer 503 with `Retry-After`,
/// as `/healthz` does, instead of 500.
pub fn is_unavailable(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| match cause.downcast_ref::<DbErr>() {
        Some(DbErr::Conn(_) | DbErr::ConnectionAcquire(_)) => true,
        Some(DbErr::Query(runtime) | DbErr::Exec(runtime)) => {
            let sea_orm::RuntimeErr::SqlxError(error) = runtime else { return false };
            match error.as_ref() {
                sea_orm::sqlx::Error::Io(_)
                | sea_orm::sqlx::Error::PoolTimedOut
                | sea_orm::sqlx::Error::PoolClosed
                | sea_orm::sqlx::Error::WorkerCrashed => true,
                // PostgreSQL's own word: connection exceptions (08…), an administrator or a crash
                // ending the connection (57…, e.g. 57P01 when a server shuts down or fails
                // over), too many connections (53300).
                sea_orm::sqlx::Error::Database(error) => {
                    error.code().is_some_and(|code| code.starts_with("08") || code.starts_with("57") || code == "53300")
                }
                _ => false,
            }
        }
        _ => false,
    })
}

#[derive(Clone, Debug)]
pub struct Store {
    db: DatabaseConnection,
    /// SQLite allows one writer: transactions that write take this first, so they queue here
    /// instead of failing with SQLITE_BUSY when a deferred transaction upgrades its lock.
    sqlite_writer: Option<Arc<Mutex<()>>>,
    /// Statements executed since start (transaction BEGIN/COMMIT not included): the cost of a
    /// code path, measured rather than estimated.
    counters: Arc<StoreCounters>,
    /// Background work (the SQLite checkpointer) stops once every clone of the store is gone.
    _alive: Arc<()>,
    /// The presence rule every write of `offline_at` applies (`[health]`).
    offline_grace: crate::health::OfflineGrace,
    /// SQLite's Informs, grouped into shared statements (`devices::group_commit`).
    inform_writer: Option<devices::group_commit::InformWriter>,
}

/// How often SQLite's WAL is checkpointed.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(200);

/// The WAL length (frames) at which the checkpointer briefly holds writers back so that the WAL
/// can restart from its beginning: 16 MiB of 4 KiB pages.
const WAL_RESTART_FRAMES: i64 = 4096;

/// Checkpoints the SQLite WAL on a connection of its own.
///
/// SQLite's automatic checkpoint runs inside the commit that crosses its threshold: one write in
/// a thousand then waited for a thousand random page writes and an fsync of the database file,
/// while every other writer queued behind it (p99 129 ms at 2,000 periodic Informs/s). Here a
/// passive checkpoint copies pages beside the writers; but the WAL only restarts from its
/// beginning after a checkpoint that caught up with every write, which under steady load never
/// happens by chance (it grew to 1 GiB in 20 s). So once it is long, one more checkpoint runs
/// under the write guard: only the few pages written meanwhile are left to copy.
async fn checkpoint_loop(url: String, writer: Arc<Mutex<()>>, alive: std::sync::Weak<()>) {
    use sea_orm::sqlx::{ConnectOptions as _, Connection as _};
    use std::str::FromStr;

    let options = match SqliteConnectOptions::from_str(&url) {
        Ok(options) => options.busy_timeout(Duration::from_secs(10)),
        Err(error) => {
            tracing::error!("SQLite checkpointer: {error}; the WAL will grow");
            return;
        }
    };
    let wal = {
        let mut name = options.get_filename().as_os_str().to_owned();
        name.push("-wal");
        std::path::PathBuf::from(name)
    };
    let mut connection = match options.connect().await {
        Ok(connection) => connection,
        Err(error) => {
            tracing::error!("SQLite checkpointer could not connect: {error}; the WAL will grow");
            return;
        }
    };
    let checkpoint = async |connection: &mut sea_orm::sqlx::SqliteConnection| {
        // All rows: a statement stepped once would itself pin the WAL (see `first_row`).
        let rows =
            sea_orm::sqlx::query_as::<_, (i64, i64, i64)>("PRAGMA wal_checkpoint(PASSIVE)").fetch_all(connection).await;
        match rows.map(|rows| rows.first().copied()) {
            Ok(Some((_, frames, _))) => frames,
            Ok(None) => 0,
            Err(error) => {
                tracing::warn!("SQLite checkpoint failed: {error}");
                0
            }
        }
    };
    let mut tick = tokio::time::interval(CHECKPOINT_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut checkpointed_size = 0;
    loop {
        tick.tick().await;
        if alive.upgrade().is_none() {
            break;
        }
        // Only when the WAL file grew: after a restart, writers reuse it from the start, and a
        // quiet server costs no statement at all.
        let size = std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
        if size <= checkpointed_size {
            checkpointed_size = size;
            continue;
        }
        checkpointed_size = size;
        if checkpoint(&mut connection).await >= WAL_RESTART_FRAMES {
            let _writers_wait = writer.lock().await;
            checkpoint(&mut connection).await;
        }
    }
    let _ = connection.close().await;
}

/// The PostgreSQL advisory lock that migrations hold (an arbitrary number of Roost's own:
/// "roost" in ASCII, then the lock's purpose).
const MIGRATION_LOCK: i64 = 0x726f_6f73_7400_0001;

/// A pool of `max_connections` on `url`, set up as every pool of the store is.
async fn connect_pool(url: &str, max_connections: u32) -> Result<DatabaseConnection> {
    let mut options = ConnectOptions::new(url.to_owned());
    // A ping before every use doubled the round trips of the periodic Inform (measured: 3 per
    // session on PostgreSQL, 2 of them pings); only connections idle long enough to have been
    // dropped by the server or a proxy are checked. A broken one fails its query, which the
    // caller answers as retryable, and is discarded.
    options
        .sqlx_logging(false)
        .acquire_timeout(Duration::from_secs(10))
        .test_before_acquire_if_idle_for(Duration::from_secs(30))
        .max_connections(max_connections);
    if url.starts_with("sqlite:") {
        if let Some(dir) = sqlite_directory(url) {
            std::fs::create_dir_all(&dir).with_context(|| format!("creating data directory {}", dir.display()))?;
        }
        options.min_connections(1).map_sqlx_sqlite_opts(|opts: SqliteConnectOptions| {
            opts.journal_mode(SqliteJournalMode::Wal)
                // With WAL, NORMAL loses no committed transaction on a crash of the
                // process, only possibly the last ones on a power loss.
                .synchronous(SqliteSynchronous::Normal)
                .busy_timeout(Duration::from_secs(10))
                .foreign_keys(true)
                .create_if_missing(true)
                // Checkpoints run in the background (`checkpoint_loop`), not in a commit.
                .pragma("wal_autocheckpoint", "0")
                .pragma("journal_size_limit", "67108864")
        });
    } else {
        options.min_connections(2);
    }
    Database::connect(options).await.with_context(|| format!("connecting to the database at {}", redact_url(url)))
}

/// What the store did, for `/metrics`: shared by every pool of one database.
#[derive(Debug)]
pub struct StoreCounters {
    pub statements: AtomicU64,
    pub ok_statements: AtomicU64,
    pub failed_statements: AtomicU64,
    pub statement_seconds: crate::metrics::Histogram,
    /// Faults recorded on devices, by kind (`crate::metrics::FAULT_KINDS`).
    pub faults: crate::metrics::Labeled,
}

impl Default for StoreCounters {
    fn default() -> Self {
        Self {
            statements: AtomicU64::new(0),
            ok_statements: AtomicU64::new(0),
            failed_statements: AtomicU64::new(0),
            statement_seconds: crate::metrics::Histogram::new(crate::metrics::STATEMENT_SECONDS),
            faults: crate::metrics::Labeled::new("kind", crate::metrics::FAULT_KINDS),
        }
    }
}

/// Counts and times the statements `db` executes into `counters`.
fn count_statements(db: &mut DatabaseConnection, counters: &Arc<StoreCounters>) {
    let counters = counters.clone();
    db.set_metric_callback(move |info| {
        counters.statements.fetch_add(1, Ordering::Relaxed);
        counters.statement_seconds.observe(info.elapsed);
        // Each outcome its own counter: one derived from two reads could go down.
        let outcome = if info.failed { &counters.failed_statements } else { &counters.ok_statements };
        outcome.fetch_add(1, Ordering::Relaxed);
    });
}

/// Held for the length of a write transaction (a no-op on PostgreSQL).
pub struct WriteGuard<'a>(#[allow(dead_code)] Option<MutexGuard<'a, ()>>);

impl Store {
    /// Connects (creating the SQLite file and its directory if needed).
    pub async fn connect(url: &str) -> Result<Self> {
        let is_sqlite = url.starts_with("sqlite:");
        let mut db = connect_pool(url, if is_sqlite { 8 } else { 32 }).await?;
        let counters = Arc::new(StoreCounters::default());
        count_statements(&mut db, &counters);
        let alive = Arc::new(());
        let sqlite_writer = is_sqlite.then(|| Arc::new(Mutex::new(())));
        if let Some(writer) = &sqlite_writer {
            tokio::spawn(checkpoint_loop(url.to_owned(), writer.clone(), Arc::downgrade(&alive)));
        }
        let inform_writer =
            sqlite_writer.as_ref().map(|lock| devices::group_commit::InformWriter::spawn(db.clone(), lock.clone()));
        Ok(Self { db, sqlite_writer, counters, _alive: alive, offline_grace: Default::default(), inform_writer })
    }

    /// The same database through a pool of its own of `max_connections`, sharing this store's
    /// writer lock and statement count: the REST API's, so that its readers never take the
    /// connections CPE sessions wait for.
    /// This store, writing `offline_at` by `grace` (the configured `[health]`).
    pub fn with_offline_grace(self, grace: crate::health::OfflineGrace) -> Self {
        Self { offline_grace: grace, ..self }
    }

    pub fn offline_grace(&self) -> crate::health::OfflineGrace {
        self.offline_grace
    }

    pub async fn with_own_pool(&self, url: &str, max_connections: u32) -> Result<Self> {
        let mut db = connect_pool(url, max_connections).await?;
        count_statements(&mut db, &self.counters);
        Ok(Self { db, ..self.clone() })
    }

    /// Runs the migrations, then connects. The migrations run on a connection of their own: an
    /// SQLite connection that ran an `ALTER TABLE … ADD COLUMN` keeps the table's old column
    /// count for later `RETURNING *` statements and panics in sqlx reading their rows (seen with
    /// `roost org create` on a database that `m0008` had just altered). That connection closes
    /// only once the store's pool is open: closing the last connection deletes SQLite's WAL,
    /// and a server starting on a new WAL pays for growing it (measured: a third fewer periodic
    /// sessions a second over a 20 s benchmark).
    pub async fn open_migrated(url: &str) -> Result<Self> {
        let migration = connect_pool(url, 1).await?;
        // Replicas starting together on one PostgreSQL take turns: the first migrates, the
        // others then find nothing to do. The lock is held by a connection of its own for the
        // whole migration (a pooled one could be replaced midway), and goes with it if this
        // process dies.
        let lock = if url.starts_with("postgres") {
            use sea_orm::sqlx::Connection as _;
            let mut connection = sea_orm::sqlx::PgConnection::connect(url)
                .await
                .with_context(|| format!("connecting to {} for the migrations' lock", redact_url(url)))?;
            sea_orm::sqlx::query("SELECT pg_advisory_lock($1)")
                .bind(MIGRATION_LOCK)
                .execute(&mut connection)
                .await
                .context("waiting for another replica's migrations")?;
            Some(connection)
        } else {
            None
        };
        roost_migrations::Migrator::up(&migration, None).await.context("running database migrations")?;
        if let Some(mut connection) = lock {
            use sea_orm::sqlx::Connection as _;
            sea_orm::sqlx::query("SELECT pg_advisory_unlock($1)")
                .bind(MIGRATION_LOCK)
                .execute(&mut connection)
                .await
                .context("ending the migrations")?;
            connection.close().await.ok();
        }
        let store = Self::connect(url).await?;
        migration.close().await.context("closing the migration connection")?;
        Ok(store)
    }

    /// Statements executed so far on this store.
    pub fn statements_executed(&self) -> u64 {
        self.counters.statements.load(Ordering::Relaxed)
    }

    /// What the store did, for `/metrics`.
    pub fn counters(&self) -> &StoreCounters {
        &self.counters
    }

    /// The pool's connections: open, and idle among them (`/metrics`).
    pub fn pool_connections(&self) -> (u32, usize) {
        match self.db.get_database_backend() {
            DbBackend::Sqlite => {
                let pool = self.db.get_sqlite_connection_pool();
                (pool.size(), pool.num_idle())
            }
            DbBackend::Postgres => {
                let pool = self.db.get_postgres_connection_pool();
                (pool.size(), pool.num_idle())
            }
            _ => (0, 0),
        }
    }

    pub fn db(&self) -> &DatabaseConnection {
        &self.db
    }

    pub fn backend(&self) -> DbBackend {
        self.db.get_database_backend()
    }

    /// The writer that groups the Informs of concurrent sessions on SQLite; `None` on PostgreSQL.
    pub fn inform_writer(&self) -> Option<&devices::group_commit::InformWriter> {
        self.inform_writer.as_ref()
    }

    /// Serialises writers on SQLite; see [`Store::sqlite_writer`].
    pub async fn write_guard(&self) -> WriteGuard<'_> {
        match &self.sqlite_writer {
            Some(lock) => WriteGuard(Some(lock.lock().await)),
            None => WriteGuard(None),
        }
    }

    /// A statement for this backend from SQL written with `?` placeholders.
    pub fn statement(&self, sql: &str, values: impl IntoIterator<Item = Value>) -> Statement {
        statement(self.backend(), sql, values)
    }

    pub async fn ping(&self) -> Result<()> {
        self.db.ping().await.context("database ping")
    }

    pub async fn close(self) -> Result<()> {
        self.db.close().await.context("closing the database")
    }
}

/// Ends a listing of rows with `id` and `created_at`, newest first: written in `[since, until)`,
/// below the id `before` (the cursor of the previous page), at most `limit`.
pub(crate) fn newest_first(
    sql: &mut String,
    args: &mut Vec<Value>,
    (since, until): (Option<i64>, Option<i64>),
    before: Option<i64>,
    limit: u64,
) {
    for (clause, value) in [(" AND created_at >= ?", since), (" AND created_at < ?", until), (" AND id < ?", before)] {
        if let Some(value) = value {
            sql.push_str(clause);
            args.push(value.into());
        }
    }
    sql.push_str(" ORDER BY id DESC LIMIT ?");
    args.push(i64::try_from(limit).unwrap_or(i64::MAX).into());
}

/// Builds a statement, rewriting `?` to `$1…$n` for PostgreSQL. `?` never appears inside our
/// SQL's string literals, so a plain scan is enough.
pub fn statement(backend: DbBackend, sql: &str, values: impl IntoIterator<Item = Value>) -> Statement {
    let sql = match backend {
        DbBackend::Postgres => {
            let mut out = String::with_capacity(sql.len() + 16);
            let mut n = 0;
            for ch in sql.chars() {
                if ch == '?' {
                    n += 1;
                    out.push('$');
                    out.push_str(&n.to_string());
                } else {
                    out.push(ch);
                }
            }
            out
        }
        _ => sql.to_owned(),
    };
    Statement::from_sql_and_values(backend, sql, values)
}

/// Keyset paging by id: appends `AND id > after ORDER BY id LIMIT limit` to a query whose
/// `WHERE` clause is written.
pub fn page_by_id(sql: &mut String, args: &mut Vec<Value>, after: Option<i64>, limit: u64) {
    if let Some(after) = after {
        sql.push_str(" AND id > ?");
        args.push(after.into());
    }
    sql.push_str(" ORDER BY id LIMIT ?");
    args.push(Value::from(i64::try_from(limit).unwrap_or(i64::MAX)));
}

/// A count or position as the database stores it (BIGINT), saturating.
pub(crate) fn count_value(n: u64) -> Value {
    Value::from(i64::try_from(n).unwrap_or(i64::MAX))
}

/// `?, ?, …` for `n` values.
pub fn placeholders(n: usize) -> String {
    let mut out = String::with_capacity(n * 3);
    for i in 0..n {
        if i > 0 {
            out.push_str(", ");
        }
        out.push('?');
    }
    out
}

/// A device's key in the store (`devices.id`, what rows of other tables point at), never to be
/// confused with its GenieACS-style id (`devices.device_id`, the `String` the API and CPEs use).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DevicePk(pub i64);

impl std::fmt::Display for DevicePk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl From<DevicePk> for sea_orm::Value {
    fn from(pk: DevicePk) -> Self {
        pk.0.into()
    }
}

impl sea_orm::TryGetable for DevicePk {
    fn try_get_by<I: sea_orm::ColIdx>(row: &sea_orm::QueryResult, index: I) -> Result<Self, sea_orm::TryGetError> {
        i64::try_get_by(row, index).map(DevicePk)
    }
}

/// Milliseconds since the Unix epoch: how every time is stored.
pub fn now_millis() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// A stored time as the API and event payloads show it: RFC 3339 in UTC with milliseconds.
pub fn timestamp(millis: i64) -> String {
    chrono::DateTime::from_timestamp_millis(millis)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}

fn sqlite_directory(url: &str) -> Option<std::path::PathBuf> {
    let path = url.trim_start_matches("sqlite://").trim_start_matches("sqlite:");
    let path = path.split('?').next()?;
    if path.is_empty() || path == ":memory:" {
        return None;
    }
    std::path::Path::new(path).parent().filter(|p| !p.as_os_str().is_empty()).map(Into::into)
}

/// Hides a password in a database URL before it reaches a log or an error.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let userinfo = &url[scheme_end + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}://{user}:***{}", &url[..scheme_end], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postgres_placeholders_are_numbered() {
        let stmt = statement(
            DbBackend::Postgres,
            "SELECT ? WHERE a = ? AND b IN (?)",
            [1i64.into(), 2i64.into(), 3i64.into()],
        );
        assert_eq!(stmt.sql, "SELECT $1 WHERE a = $2 AND b IN ($3)");
        let stmt = statement(DbBackend::Sqlite, "SELECT ?", [1i64.into()]);
        assert_eq!(stmt.sql, "SELECT ?");
    }

    #[test]
    fn passwords_in_urls_are_redacted() {
        assert_eq!(redact_url("postgres://u:secret@db:5432/x"), "postgres://u:***@db:5432/x");
        assert_eq!(redact_url("postgres://u@db/x"), "postgres://u@db/x");
        assert_eq!(redact_url("sqlite://./data/roost.db?mode=rwc"), "sqlite://./data/roost.db?mode=rwc");
    }

    #[test]
    fn sqlite_directory_is_found_for_relative_and_absolute_paths() {
        assert_eq!(sqlite_directory("sqlite://./data/roost.db?mode=rwc"), Some("./data".into()));
        assert_eq!(sqlite_directory("sqlite:///tmp/x/roost.db"), Some("/tmp/x".into()));
        assert_eq!(sqlite_directory("sqlite::memory:"), None);
    }
}
