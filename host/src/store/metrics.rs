//! Health time series: raw points and their hourly roll-ups (`device_metrics`,
//! `device_metrics_hourly`), written in batches by `health::flush`, read per device, pruned by
//! age.

use anyhow::{Context, Result};
use sea_orm::{ConnectionTrait, DbBackend, TransactionTrait, Value};

use super::{DevicePk, Store, statement};
use crate::health::{HourlyDelta, Metric, Point, SeriesQuery, SeriesSource, hourly};

/// Rows per INSERT: SQLite takes 32,766 parameters per statement, PostgreSQL 65,535.
const ROWS_PER_STATEMENT: usize = 2_000;

/// Stores a batch of points and adds it to the hourly roll-ups, in one transaction: a point is
/// in both or in neither, so a write that fails can be retried whole. A point already stored
/// (same device, figure and millisecond: a retry of a write whose commit went through though
/// this side saw it fail) is not stored or counted again.
pub async fn insert(store: &Store, points: &[Point]) -> Result<()> {
    if points.is_empty() {
        return Ok(());
    }
    let _guard = store.write_guard().await;
    let txn = store.db().begin().await.context("starting the metrics write")?;
    let backend = txn.get_database_backend();
    let mut fresh: Vec<Point> = Vec::with_capacity(points.len());
    for chunk in points.chunks(ROWS_PER_STATEMENT) {
        let mut sql = String::from("INSERT INTO device_metrics (device_id, metric, at, value) VALUES ");
        let mut args: Vec<Value> = Vec::with_capacity(chunk.len() * 4);
        for (i, p) in chunk.iter().enumerate() {
            sql.push_str(if i == 0 { "(?, ?, ?, ?)" } else { ", (?, ?, ?, ?)" });
            args.extend([p.device_pk.into(), p.metric.code().into(), p.at.into(), p.value.into()]);
        }
        sql.push_str(" ON CONFLICT (device_id, metric, at) DO NOTHING RETURNING device_id, metric, at, value");
        let rows = txn.query_all_raw(statement(backend, &sql, args)).await.context("storing health points")?;
        for row in rows {
            let code: i16 = row.try_get_by_index(1).context("reading a stored point")?;
            fresh.push(Point {
                device_pk: DevicePk(row.try_get_by_index(0)?),
                metric: Metric::from_code(code).context("a stored point of an unknown figure")?,
                at: row.try_get_by_index(2)?,
                value: row.try_get_by_index(3)?,
            });
        }
    }
    for chunk in hourly(&fresh).chunks(ROWS_PER_STATEMENT) {
        txn.execute_raw(roll_up(backend, chunk)).await.context("rolling health points up by the hour")?;
    }
    txn.commit().await.context("committing health points")
}

/// Adds deltas to their hours: the least and greatest of both, the sums of both.
fn roll_up(backend: DbBackend, deltas: &[HourlyDelta]) -> sea_orm::Statement {
    let (least, greatest) = match backend {
        DbBackend::Postgres => ("LEAST", "GREATEST"),
        _ => ("MIN", "MAX"),
    };
    let mut sql =
        String::from("INSERT INTO device_metrics_hourly (device_id, metric, hour, min, max, sum, count) VALUES ");
    let mut args: Vec<Value> = Vec::with_capacity(deltas.len() * 7);
    for (i, d) in deltas.iter().enumerate() {
        sql.push_str(if i == 0 { "(?, ?, ?, ?, ?, ?, ?)" } else { ", (?, ?, ?, ?, ?, ?, ?)" });
        args.extend([
            d.device_pk.into(),
            d.metric.code().into(),
            d.hour.into(),
            d.min.into(),
            d.max.into(),
            d.sum.into(),
            d.count.into(),
        ]);
    }
    sql.push_str(&format!(
        " ON CONFLICT (device_id, metric, hour) DO UPDATE SET \
         min = {least}(device_metrics_hourly.min, excluded.min), \
         max = {greatest}(device_metrics_hourly.max, excluded.max), \
         sum = device_metrics_hourly.sum + excluded.sum, count = device_metrics_hourly.count + excluded.count"
    ));
    statement(backend, &sql, args)
}

/// One point of a served series: a raw value, or a bucket's least, mean and greatest.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SeriesPoint {
    /// The point's time, or its bucket's start.
    pub at: i64,
    pub min: f64,
    pub avg: f64,
    pub max: f64,
    /// Raw points in the bucket (1 for a raw point).
    pub count: i64,
}

/// A device's series of one figure over a query's range, oldest first. Raw answers hold at most
/// `limit` points (one more tells the caller there were more); buckets are as many as the
/// query's step makes.
pub async fn series(
    store: &Store,
    device_pk: DevicePk,
    metric: Metric,
    query: &SeriesQuery,
    limit: u64,
) -> Result<Vec<SeriesPoint>> {
    let base: Vec<Value> = vec![device_pk.into(), metric.code().into(), query.from.into(), query.to.into()];
    let (sql, args) = match query.source {
        SeriesSource::Raw => (
            "SELECT at, value AS min, value AS avg, value AS max, CAST(1 AS BIGINT) AS count FROM device_metrics \
             WHERE device_id = ? AND metric = ? AND at >= ? AND at < ? ORDER BY at LIMIT ?"
                .to_owned(),
            [base, vec![i64::try_from(limit).unwrap_or(i64::MAX).into()]].concat(),
        ),
        SeriesSource::RawBuckets(step) => (
            "SELECT (at / ?) * ? AS at, MIN(value) AS min, AVG(value) AS avg, MAX(value) AS max, \
             CAST(COUNT(*) AS BIGINT) AS count FROM device_metrics \
             WHERE device_id = ? AND metric = ? AND at >= ? AND at < ? GROUP BY 1 ORDER BY 1"
                .to_owned(),
            [vec![step.into(), step.into()], base].concat(),
        ),
        SeriesSource::Hourly(step) => (
            "SELECT (hour / ?) * ? AS at, MIN(min) AS min, SUM(sum) / CAST(SUM(count) AS DOUBLE PRECISION) AS avg, MAX(max) AS max, \
             CAST(SUM(count) AS BIGINT) AS count FROM device_metrics_hourly \
             WHERE device_id = ? AND metric = ? AND hour >= ? AND hour < ? GROUP BY 1 ORDER BY 1"
                .to_owned(),
            // The bucket holding `from` starts at or before it: its hours count from its start.
            [vec![step.into(), step.into()], hourly_base(device_pk, metric, query, step)].concat(),
        ),
    };
    let rows = store.db().query_all_raw(store.statement(&sql, args)).await.context("reading a health series")?;
    rows.iter()
        .map(|row| {
            Ok(SeriesPoint {
                at: row.try_get("", "at")?,
                min: row.try_get("", "min")?,
                avg: row.try_get("", "avg")?,
                max: row.try_get("", "max")?,
                count: row.try_get("", "count")?,
            })
        })
        .collect::<Result<_, sea_orm::DbErr>>()
        .context("reading a health series")
}

fn hourly_base(device_pk: DevicePk, metric: Metric, query: &SeriesQuery, step: i64) -> Vec<Value> {
    let from = query.from.div_euclid(step) * step;
    vec![device_pk.into(), metric.code().into(), from.into(), query.to.into()]
}

/// Rows one prune statement deletes at most: a backlog (after an outage, or a shorter
/// retention) goes in short statements, between which the Informs waiting on SQLite's writer
/// get their turn.
pub const PRUNE_BATCH: u64 = 20_000;

/// Deletes raw points older than `raw_before` and roll-ups of hours before `hourly_before`,
/// `batch` rows a statement; how many rows went.
pub async fn prune(store: &Store, raw_before: i64, hourly_before: i64, batch: u64) -> Result<u64> {
    let batch = i64::try_from(batch.max(1)).unwrap_or(i64::MAX);
    let mut pruned = 0;
    for (table, time, before) in
        [("device_metrics", "at", raw_before), ("device_metrics_hourly", "hour", hourly_before)]
    {
        // The key's rows, found through the time's index (`device_metrics_at`, `…_hourly_hour`).
        let sql = format!(
            "DELETE FROM {table} WHERE (device_id, metric, {time}) IN \
             (SELECT device_id, metric, {time} FROM {table} WHERE {time} < ? LIMIT ?)"
        );
        loop {
            let deleted = {
                let _guard = store.write_guard().await;
                store
                    .db()
                    .execute_raw(store.statement(&sql, [before.into(), batch.into()]))
                    .await
                    .with_context(|| format!("pruning {table}"))?
                    .rows_affected()
            };
            pruned += deleted;
            if deleted < batch.unsigned_abs() {
                break;
            }
        }
    }
    Ok(pruned)
}
