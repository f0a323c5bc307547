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
use sea_orm::{ConnectOptions, Database, DatabaseConnection, DbBackend, Statement, Value};
use sea_orm_migration::MigratorTrait;
use tokio::sync::{Mutex, MutexGuard};

pub mod credentials;
pub mod devices;
pub mod faults;
pub mod orgs;
pub mod parameters;
pub mod settings;
pub mod tasks;
pub mod users;

#[derive(Clone, Debug)]
pub struct Store {
    db: DatabaseConnection,
    /// SQLite allows one writer: transactions that write take this first, so they queue here
    /// instead of failing with SQLITE_BUSY when a deferred transaction upgrades its lock.
    sqlite_writer: Option<Arc<Mutex<()>>>,
    /// Statements executed since start (transaction BEGIN/COMMIT not included): the cost of a
    /// code path, measured rather than estimated.
    statements: Arc<AtomicU64>,
}

/// Held for the length of a write transaction (a no-op on PostgreSQL).
pub struct WriteGuard<'a>(#[allow(dead_code)] Option<MutexGuard<'a, ()>>);

impl Store {
    /// Connects (creating the SQLite file and its directory if needed).
    pub async fn connect(url: &str) -> Result<Self> {
        let mut options = ConnectOptions::new(url.to_owned());
        // A ping before every use doubled the round trips of the periodic Inform (measured: 3 per
        // session on PostgreSQL, 2 of them pings); only connections idle long enough to have been
        // dropped by the server or a proxy are checked. A broken one fails its query, which the
        // caller answers as retryable, and is discarded.
        options
            .sqlx_logging(false)
            .acquire_timeout(Duration::from_secs(10))
            .test_before_acquire_if_idle_for(Duration::from_secs(30));
        let is_sqlite = url.starts_with("sqlite:");
        if is_sqlite {
            if let Some(dir) = sqlite_directory(url) {
                std::fs::create_dir_all(&dir).with_context(|| format!("creating data directory {}", dir.display()))?;
            }
            options.max_connections(8).min_connections(1).map_sqlx_sqlite_opts(|opts: SqliteConnectOptions| {
                opts.journal_mode(SqliteJournalMode::Wal)
                    // With WAL, NORMAL loses no committed transaction on a crash of the
                    // process, only possibly the last ones on a power loss.
                    .synchronous(SqliteSynchronous::Normal)
                    .busy_timeout(Duration::from_secs(10))
                    .foreign_keys(true)
                    .create_if_missing(true)
            });
        } else {
            options.max_connections(32).min_connections(2);
        }
        let mut db = Database::connect(options)
            .await
            .with_context(|| format!("connecting to the database at {}", redact_url(url)))?;
        let statements = Arc::new(AtomicU64::new(0));
        let counter = statements.clone();
        db.set_metric_callback(move |_| {
            counter.fetch_add(1, Ordering::Relaxed);
        });
        Ok(Self { db, sqlite_writer: is_sqlite.then(|| Arc::new(Mutex::new(()))), statements })
    }

    pub async fn migrate(&self) -> Result<()> {
        roost_migrations::Migrator::up(&self.db, None).await.context("running database migrations")
    }

    /// Statements executed so far on this store.
    pub fn statements_executed(&self) -> u64 {
        self.statements.load(Ordering::Relaxed)
    }

    pub fn db(&self) -> &DatabaseConnection {
        &self.db
    }

    pub fn backend(&self) -> DbBackend {
        self.db.get_database_backend()
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

/// Milliseconds since the Unix epoch: how every time is stored.
pub fn now_millis() -> i64 {
    chrono::Utc::now().timestamp_millis()
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
