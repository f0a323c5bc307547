//! Device health: the figures of the adapters' `health` intent as time series, and whether a
//! device is online. Plain types and decisions here; the buffer that batches the points between
//! sessions is `health/buffer.rs`, the background work `health/jobs.rs`, their SQL
//! `store::metrics`, presence `store::devices::presence`.

use std::time::Duration;

use serde::Deserialize;

pub mod buffer;
pub mod jobs;

pub use buffer::MetricsBuffer;

/// A health figure, as stored (`device_metrics.metric`, its `code`) and served (its `name`).
/// Codes are stable: never renumber one, add new figures at the end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    UptimeSeconds,
    CpuPercent,
    MemoryTotalKib,
    MemoryFreeKib,
    WanBytesSent,
    WanBytesReceived,
    WifiClients,
    OpticalRxDbm,
    OpticalTxDbm,
    CellularRsrpDbm,
    /// From the adapter's `radio` export (roost:plugin 0.1.1).
    CellularRssiDbm,
    CellularSinrDb,
}

impl Metric {
    pub const ALL: [Metric; 12] = [
        Metric::UptimeSeconds,
        Metric::CpuPercent,
        Metric::MemoryTotalKib,
        Metric::MemoryFreeKib,
        Metric::WanBytesSent,
        Metric::WanBytesReceived,
        Metric::WifiClients,
        Metric::OpticalRxDbm,
        Metric::OpticalTxDbm,
        Metric::CellularRsrpDbm,
        Metric::CellularRssiDbm,
        Metric::CellularSinrDb,
    ];

    pub fn code(self) -> i16 {
        // The declaration order is the stored code.
        self as i16
    }

    pub fn from_code(code: i16) -> Option<Metric> {
        Self::ALL.iter().copied().find(|m| m.code() == code)
    }

    pub fn name(self) -> &'static str {
        match self {
            Metric::UptimeSeconds => "uptime_seconds",
            Metric::CpuPercent => "cpu_percent",
            Metric::MemoryTotalKib => "memory_total_kib",
            Metric::MemoryFreeKib => "memory_free_kib",
            Metric::WanBytesSent => "wan_bytes_sent",
            Metric::WanBytesReceived => "wan_bytes_received",
            Metric::WifiClients => "wifi_clients",
            Metric::OpticalRxDbm => "optical_rx_dbm",
            Metric::OpticalTxDbm => "optical_tx_dbm",
            Metric::CellularRsrpDbm => "cellular_rsrp_dbm",
            Metric::CellularRssiDbm => "cellular_rssi_dbm",
            Metric::CellularSinrDb => "cellular_sinr_db",
        }
    }

    pub fn from_name(name: &str) -> Option<Metric> {
        Self::ALL.iter().copied().find(|m| m.name() == name)
    }
}

/// The figures of a device the adapter could read, in `Metric` order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HealthFigures(pub Vec<(Metric, f64)>);

impl HealthFigures {
    /// The figures of an adapter's `health` report.
    pub fn of(report: &crate::plugins::HealthReport) -> Self {
        let unsigned = |v: Option<u64>| v.map(|v| v as f64);
        let figures = [
            (Metric::UptimeSeconds, unsigned(report.uptime_seconds)),
            (Metric::CpuPercent, report.cpu_percent.map(f64::from)),
            (Metric::MemoryTotalKib, unsigned(report.memory_total_kib)),
            (Metric::MemoryFreeKib, unsigned(report.memory_free_kib)),
            (Metric::WanBytesSent, unsigned(report.wan_bytes_sent)),
            (Metric::WanBytesReceived, unsigned(report.wan_bytes_received)),
            (Metric::WifiClients, report.wifi_clients.map(f64::from)),
            (Metric::OpticalRxDbm, report.optical_rx_dbm),
            (Metric::OpticalTxDbm, report.optical_tx_dbm),
            (Metric::CellularRsrpDbm, report.cellular_rsrp_dbm),
        ];
        Self::finite(figures)
    }

    /// The figures of an adapter's `radio.cellular` report.
    pub fn of_cellular(report: &crate::plugins::CellularReport) -> Self {
        Self::finite([
            (Metric::CellularRssiDbm, report.cellular_rssi_dbm),
            (Metric::CellularSinrDb, report.cellular_sinr_db),
        ])
    }

    fn finite(figures: impl IntoIterator<Item = (Metric, Option<f64>)>) -> Self {
        // A NaN or infinite figure (a firmware's "-inf" dBm with no fibre) is no figure.
        HealthFigures(figures.into_iter().filter_map(|(m, v)| v.filter(|v| v.is_finite()).map(|v| (m, v))).collect())
    }

    /// These figures with `newer`'s laid over them: a figure `newer` has replaces this one's, the
    /// others stay. How the reports of one round add up: a provision's `health` and `radio`
    /// calls, several provisions. (A later round replaces an earlier one's whole.)
    pub fn overlaid(&self, newer: &HealthFigures) -> HealthFigures {
        let mut figures: Vec<(Metric, f64)> =
            self.0.iter().filter(|(metric, _)| !newer.0.iter().any(|(m, _)| m == metric)).copied().collect();
        figures.extend(newer.0.iter().copied());
        figures.sort_by_key(|(metric, _)| *metric);
        HealthFigures(figures)
    }

    /// `newer` laid over `older`, if there was an older.
    pub fn overlay(older: Option<&HealthFigures>, newer: &HealthFigures) -> HealthFigures {
        older.map_or_else(|| newer.clone(), |older| older.overlaid(newer))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// One stored figure.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    pub device_pk: crate::store::DevicePk,
    pub metric: Metric,
    /// Epoch milliseconds.
    pub at: i64,
    pub value: f64,
}

pub const HOUR_MS: i64 = 3_600_000;

/// The first millisecond of the hour `at` falls in.
pub fn hour_of(at: i64) -> i64 {
    at.div_euclid(HOUR_MS) * HOUR_MS
}

/// What a batch of points adds to one hour of one figure of one device.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HourlyDelta {
    pub device_pk: crate::store::DevicePk,
    pub metric: Metric,
    pub hour: i64,
    pub min: f64,
    pub max: f64,
    pub sum: f64,
    pub count: i64,
}

/// The hourly roll-up of a batch, one delta per device, figure and hour: an upsert may touch
/// each row once per statement (PostgreSQL refuses a second), so the batch is folded first.
pub fn hourly(points: &[Point]) -> Vec<HourlyDelta> {
    let mut deltas: std::collections::BTreeMap<(i64, Metric, i64), HourlyDelta> = Default::default();
    for p in points {
        let hour = hour_of(p.at);
        deltas
            .entry((p.device_pk.0, p.metric, hour))
            .and_modify(|d| {
                d.min = d.min.min(p.value);
                d.max = d.max.max(p.value);
                d.sum += p.value;
                d.count += 1;
            })
            .or_insert(HourlyDelta {
                device_pk: p.device_pk,
                metric: p.metric,
                hour,
                min: p.value,
                max: p.value,
                sum: p.value,
                count: 1,
            });
    }
    deltas.into_values().collect()
}

/// `[health]`: presence and the metrics' time series.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HealthSettings {
    /// A device is offline once this many of its periodic Informs are missed …
    pub missed_intervals: u32,
    /// … and never sooner than this after its last Inform, in seconds (also the grace of a
    /// device whose interval Roost has not read).
    #[serde(with = "crate::config::seconds")]
    pub min_offline_after: Duration,
    /// How often presence changes are looked for (`device.online` / `device.offline`).
    #[serde(with = "crate::config::seconds")]
    pub presence_interval: Duration,
    /// How often buffered health points are written, in one batch.
    #[serde(with = "crate::config::seconds")]
    pub flush_interval: Duration,
    /// Points held for the next write at most; past it the oldest are dropped (and counted in
    /// the log), so a database that is down costs bounded memory.
    pub max_buffered_points: usize,
    /// How long raw points are kept.
    #[serde(with = "crate::config::seconds")]
    pub raw_retention: Duration,
    /// How long hourly roll-ups are kept.
    #[serde(with = "crate::config::seconds")]
    pub hourly_retention: Duration,
}

impl Default for HealthSettings {
    fn default() -> Self {
        Self {
            missed_intervals: 2,
            min_offline_after: Duration::from_secs(10 * 60),
            presence_interval: Duration::from_secs(30),
            flush_interval: Duration::from_secs(10),
            max_buffered_points: 1_000_000,
            raw_retention: Duration::from_secs(48 * 3600),
            hourly_retention: Duration::from_secs(90 * 24 * 3600),
        }
    }
}

/// How long after its last Inform a device counts as offline: its periodic interval times the
/// missed intervals, with room for the Inform that ends the grace to arrive, and at least the
/// least grace (also that of a device whose interval is not known). [`OfflineGrace::after`] is
/// the rule; the Inform applies it in SQL (`store::devices`), since the interval it needs is in
/// the row the Inform updates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OfflineGrace {
    /// Milliseconds of grace per second of periodic interval (the missed intervals × 1000).
    pub per_interval_second_ms: i64,
    /// The least grace, in milliseconds.
    pub min_ms: i64,
}

/// A device on time for the Inform that ends its grace is not offline for the seconds that
/// Inform takes to arrive: the interval part of the grace gets this much more.
pub const INFORM_JITTER_MS: i64 = 60_000;

impl OfflineGrace {
    pub fn of(settings: &HealthSettings) -> Self {
        OfflineGrace {
            per_interval_second_ms: i64::from(settings.missed_intervals) * 1000,
            min_ms: i64::try_from(settings.min_offline_after.as_millis()).unwrap_or(i64::MAX),
        }
    }

    /// The grace, in milliseconds, of a device of this periodic interval (seconds).
    pub fn after(&self, interval_s: Option<i64>) -> i64 {
        let by_interval =
            interval_s.map(|s| s.saturating_mul(self.per_interval_second_ms).saturating_add(INFORM_JITTER_MS));
        by_interval.map_or(self.min_ms, |ms| ms.max(self.min_ms))
    }
}

impl Default for OfflineGrace {
    fn default() -> Self {
        Self::of(&HealthSettings::default())
    }
}

/// Where a series' points come from, and how they are bucketed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeriesSource {
    /// Every raw point, as reported.
    Raw,
    /// Raw points in buckets of this many milliseconds (shorter than an hour).
    RawBuckets(i64),
    /// Hourly roll-ups in buckets of this many milliseconds (whole hours).
    Hourly(i64),
}

/// A metrics query, checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeriesQuery {
    pub from: i64,
    pub to: i64,
    pub source: SeriesSource,
}

/// The most buckets (or raw points per figure) one answer holds.
pub const MAX_POINTS: i64 = 10_000;

/// Why a metrics query was refused: (field, message).
pub type QueryError = (&'static str, String);

/// Checks a query: `from` before `to`; `step` (if any) a whole number of seconds, shorter than an
/// hour (buckets of raw points, which are kept `raw_retention`) or whole hours (of the hourly
/// roll-ups); no more than [`MAX_POINTS`] buckets. Without a step: the raw points, or the hourly
/// roll-ups for a range that reaches past the raw retention.
pub fn series_query(
    from: i64,
    to: i64,
    step: Option<&str>,
    now: i64,
    raw_retention: Duration,
) -> Result<SeriesQuery, QueryError> {
    if from >= to {
        return Err(("from", "must be before `to`".into()));
    }
    // A range that starts a little before the retention (a client's clock, the time its request
    // took) only has a partial first bucket: points are pruned once a minute.
    let raw_since = now - i64::try_from(raw_retention.as_millis()).unwrap_or(i64::MAX) - HOUR_MS;
    let step_ms = match step {
        None if from >= raw_since => return Ok(SeriesQuery { from, to, source: SeriesSource::Raw }),
        None => HOUR_MS,
        Some(step) => parse_step(step)
            .ok_or_else(|| ("step", format!("{step:?} is not a duration (seconds, or a number with s, m, h or d)")))?,
    };
    if (to - from) / step_ms > MAX_POINTS {
        return Err(("step", format!("more than {MAX_POINTS} buckets: use a longer step or a shorter range")));
    }
    let source = if step_ms < HOUR_MS {
        if from < raw_since {
            return Err((
                "step",
                format!(
                    "steps under an hour read raw points, kept {} hours: use a step of whole hours",
                    raw_retention.as_secs() / 3600
                ),
            ));
        }
        SeriesSource::RawBuckets(step_ms)
    } else if step_ms % HOUR_MS == 0 {
        SeriesSource::Hourly(step_ms)
    } else {
        return Err(("step", "a step of an hour or more must be whole hours".into()));
    };
    Ok(SeriesQuery { from, to, source })
}

/// A step: seconds, or a number with `s`, `m`, `h` or `d`; in milliseconds, at least a second.
pub fn parse_step(text: &str) -> Option<i64> {
    let text = text.trim();
    let (number, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => text.split_at(i),
        None => (text, "s"),
    };
    let seconds_per: i64 = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return None,
    };
    let n: i64 = number.parse().ok().filter(|n| *n > 0)?;
    n.checked_mul(seconds_per)?.checked_mul(1000)
}

/// The figures a `names` list asks for (comma-separated; empty or absent: all).
pub fn metrics_named(names: Option<&str>) -> Result<Vec<Metric>, QueryError> {
    let Some(names) = names.map(str::trim).filter(|n| !n.is_empty()) else { return Ok(Metric::ALL.to_vec()) };
    let mut metrics = Vec::new();
    for name in names.split(',').map(str::trim) {
        let metric = Metric::from_name(name).ok_or_else(|| {
            let known: Vec<&str> = Metric::ALL.iter().map(|m| m.name()).collect();
            ("names", format!("no health figure is named {name:?}; there are {}", known.join(", ")))
        })?;
        if !metrics.contains(&metric) {
            metrics.push(metric);
        }
    }
    Ok(metrics)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::DevicePk;

    #[test]
    fn codes_are_the_declaration_order_and_names_round_trip() {
        for (i, m) in Metric::ALL.iter().enumerate() {
            assert_eq!(m.code(), i as i16);
            assert_eq!(Metric::from_code(m.code()), Some(*m));
            assert_eq!(Metric::from_name(m.name()), Some(*m));
        }
        assert_eq!(Metric::from_code(12), None);
        // Stored codes never move: the figures added by roost:plugin 0.1.1 come after 0.1.0's.
        assert_eq!((Metric::CellularRsrpDbm.code(), Metric::CellularSinrDb.code()), (9, 11));
    }

    #[test]
    fn the_reports_of_a_round_add_up_figure_by_figure() {
        let report = crate::plugins::HealthReport {
            uptime_seconds: Some(100),
            cpu_percent: None,
            memory_total_kib: None,
            memory_free_kib: None,
            wan_bytes_sent: None,
            wan_bytes_received: None,
            wifi_clients: None,
            optical_rx_dbm: None,
            optical_tx_dbm: None,
            cellular_rsrp_dbm: Some(-97.0),
        };
        let health = HealthFigures::of(&report);
        let radio = HealthFigures::of_cellular(&crate::plugins::CellularReport {
            cellular_rssi_dbm: Some(-43.7),
            cellular_sinr_db: Some(f64::NAN),
        });
        // Either order gives one set, in `Metric` order.
        let together =
            vec![(Metric::UptimeSeconds, 100.0), (Metric::CellularRsrpDbm, -97.0), (Metric::CellularRssiDbm, -43.7)];
        assert_eq!(health.overlaid(&radio).0, together);
        assert_eq!(radio.overlaid(&health).0, together);
        // A later report of a figure replaces the earlier one; the others stay.
        let later = HealthFigures(vec![(Metric::UptimeSeconds, 400.0)]);
        assert_eq!(
            HealthFigures::overlay(Some(&health.overlaid(&radio)), &later).0,
            vec![(Metric::UptimeSeconds, 400.0), (Metric::CellularRsrpDbm, -97.0), (Metric::CellularRssiDbm, -43.7),]
        );
        assert_eq!(HealthFigures::overlay(None, &later), later);
    }

    #[test]
    fn a_report_keeps_the_figures_the_device_has_and_drops_non_finite_ones() {
        let report = crate::plugins::HealthReport {
            uptime_seconds: Some(3211),
            cpu_percent: Some(3),
            memory_total_kib: None,
            memory_free_kib: Some(292_952),
            wan_bytes_sent: None,
            wan_bytes_received: None,
            wifi_clients: Some(0),
            optical_rx_dbm: Some(f64::NEG_INFINITY),
            optical_tx_dbm: Some(2.36),
            cellular_rsrp_dbm: Some(f64::NAN),
        };
        assert_eq!(
            HealthFigures::of(&report).0,
            vec![
                (Metric::UptimeSeconds, 3211.0),
                (Metric::CpuPercent, 3.0),
                (Metric::MemoryFreeKib, 292_952.0),
                (Metric::WifiClients, 0.0),
                (Metric::OpticalTxDbm, 2.36),
            ]
        );
    }

    #[test]
    fn a_batch_folds_into_one_delta_per_device_figure_and_hour() {
        let p = |device, metric, at, value| Point { device_pk: DevicePk(device), metric, at, value };
        let points = [
            p(1, Metric::CpuPercent, 10 * HOUR_MS + 5, 10.0),
            p(1, Metric::CpuPercent, 10 * HOUR_MS + 60_000, 30.0),
            p(1, Metric::CpuPercent, 11 * HOUR_MS, 7.0),
            p(2, Metric::CpuPercent, 10 * HOUR_MS + 1, 50.0),
            p(1, Metric::WifiClients, 10 * HOUR_MS + 2, 4.0),
        ];
        let deltas = hourly(&points);
        assert_eq!(deltas.len(), 4);
        let first = deltas
            .iter()
            .find(|d| d.device_pk == DevicePk(1) && d.metric == Metric::CpuPercent && d.hour == 10 * HOUR_MS)
            .unwrap();
        assert_eq!((first.min, first.max, first.sum, first.count), (10.0, 30.0, 40.0, 2));
        assert!(deltas.iter().any(|d| d.hour == 11 * HOUR_MS && d.count == 1 && d.min == 7.0));
    }

    #[test]
    fn steps_parse_in_seconds_or_with_a_unit() {
        assert_eq!(parse_step("300"), Some(300_000));
        assert_eq!(parse_step("5m"), Some(300_000));
        assert_eq!(parse_step("1h"), Some(HOUR_MS));
        assert_eq!(parse_step("2d"), Some(2 * 86_400_000));
        for bad in ["", "0", "-5m", "5 m", "1w", "h", "1.5h", "99999999999999999999d"] {
            assert_eq!(parse_step(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_query_reads_raw_points_within_their_retention_and_roll_ups_beyond() {
        let now = 100 * 24 * HOUR_MS;
        let kept = Duration::from_secs(48 * 3600);
        let day_ago = now - 24 * HOUR_MS;
        assert_eq!(series_query(day_ago, now, None, now, kept).unwrap().source, SeriesSource::Raw);
        assert_eq!(
            series_query(day_ago, now, Some("5m"), now, kept).unwrap().source,
            SeriesSource::RawBuckets(300_000)
        );
        assert_eq!(series_query(day_ago, now, Some("1h"), now, kept).unwrap().source, SeriesSource::Hourly(HOUR_MS));
        let month_ago = now - 30 * 24 * HOUR_MS;
        assert_eq!(
            series_query(month_ago, now, Some("1d"), now, kept).unwrap().source,
            SeriesSource::Hourly(86_400_000)
        );
        // Without a step, a range past the raw retention reads the roll-ups.
        assert_eq!(series_query(month_ago, now, None, now, kept).unwrap().source, SeriesSource::Hourly(HOUR_MS));
        // A range starting just before the retention still reads raw points.
        assert_eq!(series_query(now - 48 * HOUR_MS - 5, now, None, now, kept).unwrap().source, SeriesSource::Raw);
        for (from, step, field) in [
            (now - 3 * 365 * 24 * HOUR_MS, None, "step"),
            (month_ago, Some("5m"), "step"),
            (day_ago, Some("90m"), "step"),
            (day_ago, Some("1s"), "step"),
            (now, None, "from"),
        ] {
            assert_eq!(series_query(from, now, step, now, kept).unwrap_err().0, field, "{step:?}");
        }
    }

    #[test]
    fn names_pick_figures_and_an_unknown_one_is_named() {
        assert_eq!(metrics_named(None).unwrap().len(), Metric::ALL.len());
        assert_eq!(
            metrics_named(Some("cpu_percent, wifi_clients,cpu_percent")).unwrap(),
            vec![Metric::CpuPercent, Metric::WifiClients]
        );
        let (field, message) = metrics_named(Some("cpu")).unwrap_err();
        assert_eq!(field, "names");
        assert!(message.contains("\"cpu\"") && message.contains("cpu_percent"), "{message}");
        assert!(message.contains("cellular_sinr_db"), "every name is offered: {message}");
    }

    #[test]
    fn the_default_grace_is_two_intervals_and_ten_minutes_at_least() {
        let grace = OfflineGrace::default();
        assert_eq!(grace, OfflineGrace { per_interval_second_ms: 2000, min_ms: 600_000 });
        assert_eq!(grace.after(None), 600_000, "an interval not known: the least grace");
        assert_eq!(grace.after(Some(60)), 600_000, "two minutes and a jitter is less than the least");
        assert_eq!(grace.after(Some(3600)), 2 * 3_600_000 + INFORM_JITTER_MS);
    }
}
