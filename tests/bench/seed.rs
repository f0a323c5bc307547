//! Filling a database with devices that are registered, discovered and given connection-request
//! credentials already, so that their periodic Informs need no bootstrap work; and checking
//! afterwards what the benchmark's Informs changed.
//!
//! Speed: the schema comes from Roost's own migrations, the `devices` rows and a one-device
//! template of the tree from multi-row INSERTs, and the tens of millions of `parameters` rows
//! from `INSERT … SELECT` joins of devices × template (with per-device values patched in from a
//! small overrides table), so the database builds them itself and nothing crosses the
//! connection per row. Rows go in primary-key order, which is an append for both backends'
//! B-trees.

use std::collections::{BTreeSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use roost::store::{Store, first_row, now_millis, statement};
use sea_orm::sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteLockingMode, SqliteSynchronous};
use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DatabaseTransaction, DbBackend, TransactionTrait,
    Value,
};
use tokio::task::JoinSet;

use crate::image::FleetImage;

/// Rows of `parameters` one `INSERT … SELECT` writes: big enough that per-statement costs vanish,
/// small enough to report progress every second or so.
const PARAMETER_ROWS_PER_STATEMENT: u64 = 250_000;

/// Rows per multi-row INSERT of devices, template nodes and overrides (at most 21 values a row:
/// under SQLite's 32,766 and PostgreSQL's 65,535 bound parameters).
const ROWS_PER_INSERT: usize = 500;

/// The connection-request username every seeded device has: any non-empty one tells Roost the
/// device needs no new credentials.
const CR_USERNAME: &str = "roost-bench";

/// Helper tables, dropped when the seed is done: the tree of one device, its Inform rows alone,
/// and the per-device values written over them.
const TEMPLATE: &str = "roost_bench_template";
const INFORM_TEMPLATE: &str = "roost_bench_template_inform";
const OVERRIDES: &str = "roost_bench_overrides";
const HELPERS_DROP: &str = "DROP TABLE IF EXISTS roost_bench_template; \
    DROP TABLE IF EXISTS roost_bench_template_inform; DROP TABLE IF EXISTS roost_bench_overrides;";

#[derive(Debug)]
pub struct SeedPlan {
    pub database_url: String,
    pub devices: u64,
    pub full_trees: u64,
    /// Organizations `bench-org-000` … under the platform; device n belongs to org n mod this
    /// (0: devices belong to none).
    pub orgs: u64,
}

pub async fn seed(plan: &SeedPlan, image: &FleetImage) -> Result<()> {
    ensure!(plan.devices > 0, "--devices must be at least 1");
    ensure!(plan.full_trees <= plan.devices, "--full-trees ({}) exceeds --devices ({})", plan.full_trees, plan.devices);
    let started = Instant::now();

    // Roost's own migrations make the schema, exactly as `roost serve` would.
    let store = Store::open_migrated(&plan.database_url).await?;
    let existing = count(store.db(), "SELECT COUNT(*) FROM devices").await?;
    if existing > 0 {
        bail!("the database already has {existing} devices: seed a fresh one");
    }
    let platform = roost::store::orgs::by_slug(&store, "platform").await?.context("no platform organization")?;
    let mut org_ids = Vec::new();
    for n in 0..plan.orgs {
        let slug = format!("bench-org-{n:03}");
        org_ids.push(roost::store::orgs::create(&store, &slug.to_uppercase(), &slug, Some(platform.id)).await?.id);
    }
    store.close().await?;

    let workers = if plan.database_url.starts_with("sqlite:") {
        1
    } else {
        std::thread::available_parallelism().map_or(1, usize::from)
    };
    let db = bulk_connection(&plan.database_url, workers).await?;
    let backend = db.get_database_backend();
    let superuser = match backend {
        DbBackend::Postgres => {
            let row = first_row(&db, statement(backend, "SELECT current_setting('is_superuser')", []))
                .await
                .context("asking whether we are a superuser")?
                .context("no answer to current_setting")?;
            row.try_get_by_index::<String>(0).context("is_superuser")? == "on"
        }
        _ => false,
    };
    let bulk = Bulk { db: &db, backend, superuser, workers };
    let now = now_millis();
    let template = image.template();
    let inform_paths: BTreeSet<&str> = template.iter().filter(|r| r.inform).map(|r| r.path.as_str()).collect();
    println!(
        "roost-bench seed: {} devices ({} with the full {}-node {} tree, the rest {} Inform parameters), serials {}…{}",
        plan.devices,
        plan.full_trees,
        template.len(),
        image.data_model(),
        inform_paths.len(),
        image.serial(0),
        image.serial(plan.devices - 1),
    );

    let phase = Instant::now();
    bulk.insert_devices(image, plan.devices, &org_ids, now).await?;
    println!("  devices: {} rows in {:.1} s", plan.devices, phase.elapsed().as_secs_f64());

    let phase = Instant::now();
    bulk.create_helpers().await?;
    bulk.insert_template(&template).await?;
    let overrides = bulk.insert_overrides(image, plan, &inform_paths).await?;
    println!("  template and per-device values: {overrides} rows in {:.1} s", phase.elapsed().as_secs_f64());

    let phase = Instant::now();
    let full_rows = plan.full_trees * template.len() as u64;
    let inform_rows = (plan.devices - plan.full_trees) * inform_paths.len() as u64;
    let total = full_rows + inform_rows;
    let progress = Arc::new(Mutex::new(Progress::new(total)));
    bulk.insert_parameters(1, plan.full_trees, TEMPLATE, template.len() as u64, now, &progress).await?;
    let per_device = inform_paths.len() as u64;
    bulk.insert_parameters(plan.full_trees + 1, plan.devices, INFORM_TEMPLATE, per_device, now, &progress).await?;
    let parameter_seconds = phase.elapsed().as_secs_f64();
    let inserted = progress.lock().map_err(|_| anyhow::anyhow!("a seeding worker panicked"))?.done;
    println!(
        "  parameters: {} rows in {parameter_seconds:.1} s ({:.0} rows/s)",
        inserted,
        inserted as f64 / parameter_seconds.max(1e-9)
    );
    ensure!(inserted == total, "inserted {} parameter rows, expected {total}", inserted);

    let phase = Instant::now();
    bulk.finish(plan.devices).await?;
    println!("  finishing ({}): {:.1} s", bulk.finish_description(), phase.elapsed().as_secs_f64());
    db.close().await.context("closing the database")?;
    println!(
        "roost-bench seeded devices={} full_trees={} parameters={} seconds={:.1}",
        plan.devices,
        plan.full_trees,
        inserted,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// The connections of the load (`workers` of them). On SQLite the one connection is ours alone,
/// so durability can be traded for speed: no journal, no fsync (a crash mid-seed means seeding
/// again anyway).
async fn bulk_connection(url: &str, workers: usize) -> Result<DatabaseConnection> {
    let workers = u32::try_from(workers).unwrap_or(1).max(1);
    let mut options = ConnectOptions::new(url.to_owned());
    options
        .sqlx_logging(false)
        .max_connections(workers)
        .min_connections(1)
        .acquire_timeout(Duration::from_secs(60))
        // The load may take longer than the pool's default connection lifetime; PostgreSQL's
        // session settings must not vanish with a recycled connection halfway.
        .idle_timeout(None)
        .max_lifetime(None);
    if url.starts_with("sqlite:") {
        options.map_sqlx_sqlite_opts(|opts: SqliteConnectOptions| {
            opts.journal_mode(SqliteJournalMode::Off)
                .synchronous(SqliteSynchronous::Off)
                .locking_mode(SqliteLockingMode::Exclusive)
                .foreign_keys(false)
                .pragma("cache_size", "-262144")
                .pragma("temp_store", "MEMORY")
        });
    }
    Database::connect(options).await.with_context(|| format!("connecting to {}", roost::store::redact_url(url)))
}

async fn count<C: ConnectionTrait>(conn: &C, sql: &str) -> Result<i64> {
    let row = first_row(conn, statement(conn.get_database_backend(), sql, []))
        .await
        .with_context(|| format!("running {sql}"))?
        .with_context(|| format!("no row from {sql}"))?;
    row.try_get_by_index::<i64>(0).with_context(|| format!("reading the result of {sql}"))
}

/// Progress of the big insert, printed at most every two seconds.
struct Progress {
    total: u64,
    done: u64,
    started: Instant,
    last: Instant,
}

impl Progress {
    fn new(total: u64) -> Self {
        let now = Instant::now();
        Self { total, done: 0, started: now, last: now }
    }

    fn add(&mut self, rows: u64) {
        self.done += rows;
        if self.last.elapsed() >= Duration::from_secs(2) || self.done == self.total {
            self.last = Instant::now();
            let elapsed = self.started.elapsed().as_secs_f64().max(1e-9);
            let rate = self.done as f64 / elapsed;
            let eta = if rate > 0.0 { (self.total - self.done.min(self.total)) as f64 / rate } else { 0.0 };
            println!(
                "  parameters {}/{} ({:.1}%) {:.0} rows/s, {:.0} s left",
                self.done,
                self.total,
                100.0 * self.done as f64 / self.total.max(1) as f64,
                rate,
                eta
            );
        }
    }
}

struct Bulk<'a> {
    db: &'a DatabaseConnection,
    backend: DbBackend,
    /// PostgreSQL only: whether foreign-key triggers may be skipped during the load.
    superuser: bool,
    /// Connections inserting parameter rows at once.
    workers: usize,
}

/// A transaction with PostgreSQL's load-friendly session settings.
async fn begin(db: &DatabaseConnection, backend: DbBackend, superuser: bool) -> Result<DatabaseTransaction> {
    let txn = db.begin().await.context("starting a transaction")?;
    if backend == DbBackend::Postgres {
        // Losing the last commits on a crash is harmless here; sorting in memory is faster.
        txn.execute_unprepared("SET LOCAL synchronous_commit = off; SET LOCAL work_mem = '256MB'")
            .await
            .context("setting load options")?;
        if superuser {
            // Every row's device exists (the devices go in first): checking the foreign key
            // 38 million times would only cost time.
            txn.execute_unprepared("SET LOCAL session_replication_role = replica")
                .await
                .context("turning foreign-key triggers off")?;
        }
    }
    Ok(txn)
}

impl Bulk<'_> {
    async fn begin(&self) -> Result<DatabaseTransaction> {
        begin(self.db, self.backend, self.superuser).await
    }

    async fn insert_rows(
        &self,
        txn: &DatabaseTransaction,
        head: &str,
        row: &str,
        rows: Vec<Vec<Value>>,
        what: &str,
    ) -> Result<()> {
        for chunk in rows.chunks(ROWS_PER_INSERT) {
            let mut sql = String::with_capacity(head.len() + chunk.len() * (row.len() + 2));
            sql.push_str(head);
            let mut args = Vec::with_capacity(chunk.len() * chunk.first().map_or(0, Vec::len));
            for (i, values) in chunk.iter().enumerate() {
                if i > 0 {
                    sql.push_str(", ");
                }
                sql.push_str(row);
                args.extend(values.iter().cloned());
            }
            txn.execute_raw(statement(self.backend, &sql, args)).await.with_context(|| format!("inserting {what}"))?;
        }
        Ok(())
    }

    async fn insert_devices(&self, image: &FleetImage, devices: u64, orgs: &[i64], now: i64) -> Result<()> {
        let head = "INSERT INTO devices (id, device_id, org_id, oui, product_class, serial_number, manufacturer, \
                    software_version, hardware_version, data_model, cwmp_version, remote_address, parameter_key, \
                    connection_request_url, connection_request_username, connection_request_password, last_events, \
                    inform_digest, registered_at, last_inform_at, last_boot_at, discovered_at, configured_at, \
                    inform_interval_s, offline_at, reported_online) VALUES ";
        let row = "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";
        let day = 24 * 3600 * 1000;
        let txn = self.begin().await?;
        let mut number = 0;
        while number < devices {
            let end = (number + 10 * ROWS_PER_INSERT as u64).min(devices);
            let mut rows = Vec::with_capacity((end - number) as usize);
            for n in number..end {
                let identity = image.identity(n);
                let inform = image.inform_parameters(n);
                // What Roost's Inform handler would have filed from these parameters.
                let value = |suffix: &str| {
                    inform.iter().find(|p| p.name.ends_with(suffix)).map(|p| p.value.clone()).unwrap_or_default()
                };
                let id = i64::try_from(n + 1).context("device number out of range")?;
                let org: Option<i64> =
                    if orgs.is_empty() { None } else { orgs.get((n % orgs.len() as u64) as usize).copied() };
                rows.push(vec![
                    id.into(),
                    image.device_id(n).into(),
                    org.into(),
                    identity.oui.into(),
                    identity.product_class.into(),
                    identity.serial_number.into(),
                    identity.manufacturer.into(),
                    value(".DeviceInfo.SoftwareVersion").into(),
                    value(".DeviceInfo.HardwareVersion").into(),
                    image.data_model().into(),
                    "1.0".into(),
                    "127.0.0.1".into(),
                    value(".ManagementServer.ParameterKey").into(),
                    value(".ManagementServer.ConnectionRequestURL").into(),
                    CR_USERNAME.into(),
                    // Sealed with the master key in real life; never opened unless Roost sends a
                    // connection request, which the benchmark does not.
                    b"not-a-sealed-password".to_vec().into(),
                    "2 PERIODIC".into(),
                    // As if the last Inform had carried these same parameters: an unchanged
                    // periodic Inform is then recognised without comparing them one by one.
                    crate::image::inform_digest(&inform).into(),
                    (now - 7 * day).into(),
                    (now - 60_000).into(),
                    (now - 7 * day).into(),
                    (now - 7 * day).into(),
                    // Configured by Roost a week ago: the bootstrap presets are done with it.
                    (now - 7 * day).into(),
                    // Informing every five minutes, online (one in ten silent for two hours, which
                    // the dashboard counts as offline and stale).
                    300_i64.into(),
                    if n % 10 == 9 { now - 2 * 3_600_000 } else { now - 60_000 + 660_000 }.into(),
                    (n % 10 != 9).into(),
                ]);
            }
            self.insert_rows(&txn, head, row, rows, "devices").await?;
            number = end;
        }
        txn.commit().await.context("committing devices")?;
        Ok(())
    }

    async fn create_helpers(&self) -> Result<()> {
        let (path, without_rowid) = match self.backend {
            DbBackend::Postgres => ("TEXT COLLATE \"C\"", ""),
            _ => ("TEXT", " WITHOUT ROWID"),
        };
        // The Inform rows get a template of their own: filtering the whole template for each of
        // 100,000 devices would visit a few hundred million rows to keep eight per device.
        let mut sql = String::from(HELPERS_DROP);
        for table in [TEMPLATE, INFORM_TEMPLATE] {
            sql.push_str(&format!(
                "CREATE TABLE {table} (path {path} PRIMARY KEY, value TEXT, value_type TEXT NOT NULL,
                     writable BOOLEAN NOT NULL, is_object BOOLEAN NOT NULL, inform BOOLEAN NOT NULL){without_rowid};"
            ));
        }
        sql.push_str(&format!(
            "CREATE TABLE {OVERRIDES} (device_id BIGINT NOT NULL, path {path} NOT NULL, value TEXT NOT NULL,
                 PRIMARY KEY (device_id, path)){without_rowid};"
        ));
        self.db.execute_unprepared(&sql).await.context("creating the seeding helper tables")?;
        Ok(())
    }

    async fn insert_template(&self, template: &[crate::image::TemplateRow]) -> Result<()> {
        let rows = template
            .iter()
            .map(|r| {
                vec![
                    r.path.as_str().into(),
                    r.value.clone().into(),
                    r.value_type.as_str().into(),
                    r.writable.into(),
                    r.is_object.into(),
                    r.inform.into(),
                ]
            })
            .collect();
        let txn = self.begin().await?;
        self.insert_rows(
            &txn,
            &format!("INSERT INTO {TEMPLATE} (path, value, value_type, writable, is_object, inform) VALUES "),
            "(?, ?, ?, ?, ?, ?)",
            rows,
            "the tree template",
        )
        .await?;
        txn.execute_unprepared(&format!("INSERT INTO {INFORM_TEMPLATE} SELECT * FROM {TEMPLATE} WHERE inform"))
            .await
            .context("copying the Inform rows of the template")?;
        txn.commit().await.context("committing the template")?;
        Ok(())
    }

    /// Per-device values; devices without a full tree need only those the Inform carries.
    async fn insert_overrides(&self, image: &FleetImage, plan: &SeedPlan, inform: &BTreeSet<&str>) -> Result<u64> {
        let txn = self.begin().await?;
        let mut written = 0;
        let mut number = 0;
        while number < plan.devices {
            let end = (number + 10 * ROWS_PER_INSERT as u64).min(plan.devices);
            let mut rows = Vec::new();
            for n in number..end {
                let id = i64::try_from(n + 1).context("device number out of range")?;
                for (path, value) in image.overrides(n) {
                    if n < plan.full_trees || inform.contains(path.as_str()) {
                        rows.push(vec![id.into(), path.into(), value.into()]);
                    }
                }
            }
            written += rows.len() as u64;
            self.insert_rows(
                &txn,
                &format!("INSERT INTO {OVERRIDES} (device_id, path, value) VALUES "),
                "(?, ?, ?)",
                rows,
                "per-device values",
            )
            .await?;
            number = end;
        }
        txn.commit().await.context("committing per-device values")?;
        Ok(written)
    }

    /// Devices `first..=last` get every row of `template`, in key order.
    async fn insert_parameters(
        &self,
        first: u64,
        last: u64,
        template: &str,
        rows_per_device: u64,
        now: i64,
        progress: &Arc<Mutex<Progress>>,
    ) -> Result<()> {
        if first > last || rows_per_device == 0 {
            return Ok(());
        }
        let per_statement = (PARAMETER_ROWS_PER_STATEMENT / rows_per_device).max(1);
        let sql = format!(
            "INSERT INTO parameters (device_id, path, value, value_type, writable, is_object, refreshed_at)
             SELECT d.id, t.path, COALESCE(o.value, t.value), t.value_type, t.writable, t.is_object, ?
             FROM devices d CROSS JOIN {template} t
             LEFT JOIN {OVERRIDES} o ON o.device_id = d.id AND o.path = t.path
             WHERE d.id >= ? AND d.id <= ?
             ORDER BY d.id, t.path"
        );
        let mut chunks = VecDeque::new();
        let mut from = first;
        while from <= last {
            let to = (from + per_statement - 1).min(last);
            chunks.push_back((from, to));
            from = to + 1;
        }
        // PostgreSQL builds the rows in the backend process, one CPU per connection: as many
        // connections as CPUs, each taking the next range. SQLite has one writer.
        let chunks = Arc::new(Mutex::new(chunks));
        let sql: Arc<str> = sql.into();
        let mut workers = JoinSet::new();
        for _ in 0..self.workers {
            let (chunks, sql, progress) = (chunks.clone(), sql.clone(), progress.clone());
            let (db, backend, superuser) = (self.db.clone(), self.backend, self.superuser);
            workers.spawn(async move {
                loop {
                    let next = chunks.lock().map_err(|_| anyhow::anyhow!("a seeding worker panicked"))?.pop_front();
                    let Some((from, to)) = next else { return anyhow::Ok(()) };
                    let txn = begin(&db, backend, superuser).await?;
                    let args: [Value; 3] = [now.into(), i64::try_from(from)?.into(), i64::try_from(to)?.into()];
                    let result = txn
                        .execute_raw(statement(backend, &sql, args))
                        .await
                        .with_context(|| format!("inserting the parameters of devices {from}..={to}"))?;
                    txn.commit().await.context("committing parameters")?;
                    progress
                        .lock()
                        .map_err(|_| anyhow::anyhow!("a seeding worker panicked"))?
                        .add(result.rows_affected());
                }
            });
        }
        while let Some(done) = workers.join_next().await {
            done.context("a seeding worker failed")??;
        }
        Ok(())
    }

    fn finish_description(&self) -> &'static str {
        match self.backend {
            DbBackend::Postgres => "identity sequence, VACUUM ANALYZE, CHECKPOINT",
            _ => "back to WAL",
        }
    }

    async fn finish(&self, devices: u64) -> Result<()> {
        self.db.execute_unprepared(HELPERS_DROP).await.context("dropping the seeding helper tables")?;
        match self.backend {
            DbBackend::Postgres => {
                // Explicit ids leave the identity sequence behind.
                let devices = i64::try_from(devices)?;
                self.db
                    .execute_raw(statement(
                        self.backend,
                        "SELECT setval(pg_get_serial_sequence('devices', 'id'), ?)",
                        [devices.into()],
                    ))
                    .await
                    .context("advancing the devices id sequence")?;
                // Statistics and the visibility map now, rather than autovacuum waking up on
                // tens of millions of new rows in the middle of a measurement; and the same for
                // writing the load's pages out (a checkpoint needs a superuser or pg_checkpoint).
                for table in ["devices", "parameters"] {
                    self.db
                        .execute_unprepared(&format!("VACUUM (ANALYZE) {table}"))
                        .await
                        .with_context(|| format!("vacuuming {table}"))?;
                }
                if self.superuser {
                    self.db.execute_unprepared("CHECKPOINT").await.context("checkpointing")?;
                }
            }
            _ => {
                // Roost runs in WAL mode; the file remembers it.
                self.db.execute_unprepared("PRAGMA journal_mode = WAL").await.context("switching back to WAL")?;
            }
        }
        Ok(())
    }
}

/// What a benchmark run did to the seeded devices: how many informed since `since`, and
/// whether any of their Informs rewrote a parameter or triggered bootstrap work (none should).
pub async fn check(database_url: &str, image: &FleetImage, since: i64) -> Result<()> {
    let store = Store::connect(database_url).await?;
    let db = store.db();
    let backend = db.get_database_backend();
    let one = |sql: &str, args: Vec<Value>| statement(backend, sql, args);
    let scalar = |stmt| async move {
        let row = first_row(db, stmt).await.context("running a check query")?.context("no row")?;
        row.try_get_by_index::<i64>(0).context("reading a count")
    };
    let devices = scalar(one("SELECT COUNT(*) FROM devices", vec![])).await?;
    let informed = scalar(one("SELECT COUNT(*) FROM devices WHERE last_inform_at >= ?", vec![since.into()])).await?;
    let needs_work = scalar(one(
        "SELECT COUNT(*) FROM devices WHERE discovered_at IS NULL OR configured_at IS NULL OR connection_request_username = ''",
        vec![],
    ))
    .await?;
    let paths: Vec<String> = image.inform_parameters(0).into_iter().map(|p| p.name).collect();
    let mut args: Vec<Value> = vec![since.into()];
    args.extend(paths.iter().map(|p| Value::from(p.as_str())));
    args.push(since.into());
    let rewritten = scalar(one(
        &format!(
            "SELECT COUNT(*) FROM devices d JOIN parameters p ON p.device_id = d.id
             WHERE d.last_inform_at >= ? AND p.path IN ({}) AND p.refreshed_at >= ?",
            roost::store::placeholders(paths.len())
        ),
        args,
    ))
    .await?;
    // Devices whose stored Inform digest is not the one the seed computed: their first Inform
    // took the slow path (compare parameters, store the digest).
    let rows = db
        .query_all_raw(one("SELECT id, inform_digest FROM devices WHERE last_inform_at >= ?", vec![since.into()]))
        .await
        .context("loading Inform digests")?;
    let mut digest_mismatch = 0;
    for row in rows {
        let id = row.try_get_by_index::<i64>(0).context("device id")?;
        let stored = row.try_get_by_index::<String>(1).context("inform_digest")?;
        let number = u64::try_from(id - 1).context("device id below 1")?;
        if stored != crate::image::inform_digest(&image.inform_parameters(number)) {
            digest_mismatch += 1;
        }
    }
    let events = scalar(one("SELECT COUNT(*) FROM device_events", vec![])).await?;
    let faults = scalar(one("SELECT COUNT(*) FROM faults", vec![])).await?;
    let tasks = scalar(one("SELECT COUNT(*) FROM tasks", vec![])).await?;
    println!(
        "roost-bench check devices={devices} informed={informed} parameters_rewritten={rewritten} \
         digest_mismatch={digest_mismatch} needing_bootstrap={needs_work} device_events={events} faults={faults} \
         tasks={tasks}"
    );
    store.close().await?;
    Ok(())
}
