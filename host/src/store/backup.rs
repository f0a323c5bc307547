//! `roost backup` and `roost restore` for the embedded SQLite database.
//!
//! A backup is taken while the server runs: `VACUUM INTO` reads one consistent snapshot (a
//! single read transaction, so writers go on) and writes it compacted to a new file, which is
//! then checked. A restore needs the server stopped: it checks the backup, refuses while any
//! process has the database open, keeps the database it replaces beside it, and leaves the
//! backup's schema to be migrated forward at the next start.
//!
//! Neither touches the master key (`<data-dir>/master.key` or `ROOST_MASTER_KEY`): a backup
//! holds sealed secrets only, which open with the key of the server that sealed them, so keep
//! the key with the backups, apart from them. PostgreSQL has its own tools (docs/DEPLOY.md).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use sea_orm::{ConnectionTrait, Database, DatabaseConnection};

/// The SQLite file a `sqlite:` URL names; `None` for another database.
pub fn sqlite_file(url: &str) -> Option<PathBuf> {
    let rest = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next()?;
    (!path.is_empty() && path != ":memory:").then(|| PathBuf::from(path))
}

fn refuse_other_databases(url: &str) -> Result<PathBuf> {
    sqlite_file(url).with_context(|| {
        format!(
            "{} is not the embedded SQLite database: back PostgreSQL up with pg_dump and restore it with pg_restore (docs/DEPLOY.md)",
            super::redact_url(url)
        )
    })
}

async fn connect(file: &Path, mode: &str) -> Result<DatabaseConnection> {
    let url = format!("sqlite://{}?mode={mode}", file.display());
    let mut options = sea_orm::ConnectOptions::new(url);
    options.max_connections(1).min_connections(1).sqlx_logging(false);
    Database::connect(options).await.with_context(|| format!("opening {}", file.display()))
}

/// What a backup holds, for the operator to see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    pub bytes: u64,
    pub devices: i64,
    pub migrations: i64,
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} bytes, {} devices, schema at migration {}", self.bytes, self.devices, self.migrations)
    }
}

/// Checks that `file` is a sound Roost database and says what it holds.
pub async fn check(file: &Path) -> Result<Summary> {
    let bytes = std::fs::metadata(file).with_context(|| format!("reading {}", file.display()))?.len();
    let db = connect(file, "ro").await?;
    let integrity = scalar_text(&db, "PRAGMA quick_check").await.context("checking the backup's integrity")?;
    if integrity != "ok" {
        bail!("{} is damaged: {integrity}", file.display());
    }
    let migrations = scalar_i64(&db, "SELECT COUNT(*) FROM seaql_migrations")
        .await
        .with_context(|| format!("{} is not a Roost database (no migrations table)", file.display()))?;
    let devices = scalar_i64(&db, "SELECT COUNT(*) FROM devices").await.context("counting the backup's devices")?;
    db.close().await.ok();
    Ok(Summary { bytes, devices, migrations })
}

/// Writes a consistent copy of the database at `url` to `file`, which must not exist.
pub async fn backup(url: &str, file: &Path) -> Result<Summary> {
    let database = refuse_other_databases(url)?;
    if !database.exists() {
        bail!("there is no database at {} to back up", database.display());
    }
    if file.exists() {
        bail!("{} exists already: a backup never overwrites a file", file.display());
    }
    let db = connect(&database, "rw").await?;
    let target = file.display().to_string().replace('\'', "''");
    db.execute_unprepared(&format!("VACUUM INTO '{target}'"))
        .await
        .with_context(|| format!("writing the backup to {}", file.display()))?;
    db.close().await.ok();
    // Password hashes and the audit trail are in it: its owner's alone.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o600))
            .with_context(|| format!("restricting {} to its owner", file.display()))?;
    }
    check(file).await
}

/// Whether a process has the database open: with WAL, exclusive locking is granted only to a
/// connection that is alone on the file.
async fn in_use(database: &Path) -> Result<bool> {
    let db = connect(database, "rw").await?;
    let taken = async {
        db.execute_unprepared("PRAGMA busy_timeout = 0").await?;
        db.execute_unprepared("PRAGMA locking_mode = EXCLUSIVE").await?;
        db.execute_unprepared("BEGIN EXCLUSIVE").await?;
        db.execute_unprepared("SELECT COUNT(*) FROM sqlite_master").await?;
        db.execute_unprepared("COMMIT").await
    }
    .await;
    db.close().await.ok();
    match taken {
        Ok(_) => Ok(false),
        Err(error) if error.to_string().contains("locked") || error.to_string().contains("busy") => Ok(true),
        Err(error) => Err(error).context("checking whether the database is in use"),
    }
}

/// Replaces the database at `url` with the backup `file`. The database replaced is kept beside
/// it as `<name>.replaced-<unix seconds>-<nanoseconds>`; the path of that file is returned with
/// the summary. Run it as the user the server runs as: the restored file is the caller's.
pub async fn restore(url: &str, file: &Path) -> Result<(Summary, Option<PathBuf>)> {
    let database = refuse_other_databases(url)?;
    let summary = check(file).await?;
    if database.exists() && in_use(&database).await? {
        bail!("{} is in use: stop `roost serve` (every process on this data directory) first", database.display());
    }
    let directory = database.parent().map(Path::to_path_buf).unwrap_or_default();
    std::fs::create_dir_all(&directory).with_context(|| format!("creating {}", directory.display()))?;
    let name = database.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "roost.db".into());
    // The copy lands beside the database first, so that the switch is one rename.
    let incoming = directory.join(format!("{name}.restoring"));
    std::fs::copy(file, &incoming).with_context(|| format!("copying {} to {}", file.display(), incoming.display()))?;
    std::fs::File::open(&incoming).and_then(|f| f.sync_all()).context("flushing the restored copy")?;
    let kept = if database.exists() {
        let since_epoch = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        let kept =
            directory.join(format!("{name}.replaced-{}-{:09}", since_epoch.as_secs(), since_epoch.subsec_nanos()));
        // A rename replaces its target: a kept database is never the target.
        if kept.exists() {
            bail!("{} exists already; try again", kept.display());
        }
        std::fs::rename(&database, &kept).with_context(|| format!("keeping the old database as {}", kept.display()))?;
        Some(kept)
    } else {
        None
    };
    // The old database's write-ahead log belongs to it, not to the backup.
    for suffix in ["-wal", "-shm"] {
        let stale = directory.join(format!("{name}{suffix}"));
        if stale.exists() {
            let moved = kept.as_ref().map(|k| PathBuf::from(format!("{}{suffix}", k.display())));
            match moved {
                Some(moved) => std::fs::rename(&stale, &moved),
                None => std::fs::remove_file(&stale),
            }
            .with_context(|| format!("moving {} aside", stale.display()))?;
        }
    }
    std::fs::rename(&incoming, &database)
        .with_context(|| format!("putting the backup in place at {}", database.display()))?;
    Ok((summary, kept))
}

/// The first column of the first row. Every row is read: a statement left half-read would pin
/// SQLite's write-ahead log (see `store::first`).
async fn first_value<T: sea_orm::TryGetable>(db: &DatabaseConnection, sql: &str) -> Result<T> {
    let rows = db.query_all_raw(sea_orm::Statement::from_string(db.get_database_backend(), sql)).await?;
    let row = rows.into_iter().next().context("no answer")?;
    Ok(row.try_get_by_index::<T>(0)?)
}

async fn scalar_i64(db: &DatabaseConnection, sql: &str) -> Result<i64> {
    first_value(db, sql).await
}

async fn scalar_text(db: &DatabaseConnection, sql: &str) -> Result<String> {
    first_value(db, sql).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sqlite_file_is_read_from_the_url() {
        assert_eq!(sqlite_file("sqlite://./data/roost.db?mode=rwc"), Some(PathBuf::from("./data/roost.db")));
        assert_eq!(sqlite_file("sqlite:///var/lib/roost/roost.db"), Some(PathBuf::from("/var/lib/roost/roost.db")));
        assert_eq!(sqlite_file("sqlite::memory:"), None);
        assert_eq!(sqlite_file("postgres://roost@db/roost"), None);
    }

    #[tokio::test]
    async fn a_backup_taken_while_in_use_restores_and_an_open_database_is_not_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("roost.db").display());
        let store = crate::store::Store::open_migrated(&url).await.unwrap();
        store.db().execute_unprepared("INSERT INTO devices (device_id, oui, product_class, serial_number, manufacturer, registered_at) VALUES ('A-B-C', 'A', 'B', 'C', 'M', 1)").await.unwrap();

        // Taken while the store is open, as `roost serve` would have it.
        let file = dir.path().join("backup.db");
        let summary = backup(&url, &file).await.unwrap();
        assert_eq!(summary.devices, 1);
        assert!(summary.migrations > 20, "{summary}");
        assert!(backup(&url, &file).await.unwrap_err().to_string().contains("exists already"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
        }
        // Not while the database is open.
        let error = restore(&url, &file).await.unwrap_err();
        assert!(error.to_string().contains("in use"), "{error:#}");

        store.db().execute_unprepared("INSERT INTO devices (device_id, oui, product_class, serial_number, manufacturer, registered_at) VALUES ('A-B-D', 'A', 'B', 'D', 'M', 2)").await.unwrap();
        // Stopped: its connections (the checkpointer's last) go within a few seconds.
        drop(store);
        let mut attempts = 0;
        let (restored, kept) = loop {
            match restore(&url, &file).await {
                Err(error) if error.to_string().contains("in use") && attempts < 100 => {
                    attempts += 1;
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
                other => break other.unwrap(),
            }
        };
        assert_eq!(restored.devices, 1);
        let kept = kept.expect("the replaced database is kept");
        assert_eq!(check(&kept).await.unwrap().devices, 2, "nothing is lost: the replaced database is beside it");
        let reopened = crate::store::Store::open_migrated(&url).await.unwrap();
        let count = scalar_i64(reopened.db(), "SELECT COUNT(*) FROM devices").await.unwrap();
        assert_eq!(count, 1);

        // A file that is not a database is refused before anything moves.
        let junk = dir.path().join("junk.db");
        std::fs::write(&junk, b"not a database").unwrap();
        drop(reopened);
        let refused = restore(&url, &junk).await.unwrap_err();
        assert!(format!("{refused:#}").contains("junk.db"), "{refused:#}");
        assert_eq!(check(&dir.path().join("roost.db")).await.unwrap().devices, 1, "the database stayed");
        assert!(
            backup("postgres://roost@db/roost", &dir.path().join("x.db"))
                .await
                .unwrap_err()
                .to_string()
                .contains("pg_dump")
        );
    }
}
