//! What a Prometheus scrapes at `GET /metrics` (text format 0.0.4): counters and histograms kept
//! in memory by this process (a replica reports its own; Prometheus sums them), and gauges read
//! at scrape time (live sessions, database pools).
//!
//! The periodic-Inform path touches only atomics: a label of a fixed set is an index into an
//! array, found by comparing a handful of strings; no lock, no allocation, no statement.
//! Families whose labels are open (task names) are counted off that path, under a lock, and
//! their labels are bounded all the same: a value outside the known set counts as `other`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// A counter whose one label takes values of a fixed set (and `other`).
#[derive(Debug)]
pub struct Labeled {
    label: &'static str,
    values: &'static [&'static str],
    /// One per value, then `other`.
    counts: Box<[AtomicU64]>,
}

impl Labeled {
    pub fn new(label: &'static str, values: &'static [&'static str]) -> Self {
        Self { label, values, counts: (0..=values.len()).map(|_| AtomicU64::new(0)).collect() }
    }

    pub fn inc(&self, value: &str) {
        self.add(value, 1);
    }

    pub fn add(&self, value: &str, n: u64) {
        let index = self.values.iter().position(|v| *v == value).unwrap_or(self.values.len());
        self.counts[index].fetch_add(n, Ordering::Relaxed);
    }

    #[cfg(test)]
    fn get(&self, value: &str) -> u64 {
        let index = self.values.iter().position(|v| *v == value).unwrap_or(self.values.len());
        self.counts[index].load(Ordering::Relaxed)
    }

    pub fn render(&self, out: &mut String, name: &str, help: &str) {
        header(out, name, help, "counter");
        for (value, count) in self.values.iter().chain(std::iter::once(&"other")).zip(self.counts.iter()) {
            let _ = writeln!(out, "{name}{{{}=\"{value}\"}} {}", self.label, count.load(Ordering::Relaxed));
        }
    }
}

/// A counter over two open labels, each bounded to its known values (others count as `other`).
#[derive(Debug)]
pub struct Pairs {
    labels: [&'static str; 2],
    known: [&'static [&'static str]; 2],
    counts: Mutex<BTreeMap<[&'static str; 2], u64>>,
}

impl Pairs {
    pub fn new(labels: [&'static str; 2], known: [&'static [&'static str]; 2]) -> Self {
        Self { labels, known, counts: Mutex::default() }
    }

    pub fn inc(&self, first: &str, second: &str) {
        let bound = |known: &'static [&'static str], value: &str| -> &'static str {
            known.iter().find(|k| **k == value).copied().unwrap_or("other")
        };
        let key = [bound(self.known[0], first), bound(self.known[1], second)];
        if let Ok(mut counts) = self.counts.lock() {
            *counts.entry(key).or_default() += 1;
        }
    }

    #[cfg(test)]
    fn get(&self, first: &str, second: &str) -> u64 {
        self.counts
            .lock()
            .ok()
            .and_then(|c| c.iter().find(|(k, _)| k[0] == first && k[1] == second).map(|(_, n)| *n))
            .unwrap_or(0)
    }

    pub fn render(&self, out: &mut String, name: &str, help: &str) {
        header(out, name, help, "counter");
        let Ok(counts) = self.counts.lock() else { return };
        for ([first, second], count) in counts.iter() {
            let [a, b] = self.labels;
            let _ = writeln!(out, "{name}{{{a}=\"{first}\",{b}=\"{second}\"}} {count}");
        }
    }
}

/// A histogram of durations, in seconds, over fixed buckets.
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    /// Observations at or under each bound (not cumulative: summed when rendered).
    buckets: Box<[AtomicU64]>,
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl Histogram {
    pub fn new(bounds: &'static [f64]) -> Self {
        Self {
            bounds,
            buckets: (0..bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            count: AtomicU64::new(0),
            sum_micros: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, duration: Duration) {
        let seconds = duration.as_secs_f64();
        if let Some(index) = self.bounds.iter().position(|bound| seconds <= *bound) {
            self.buckets[index].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_micros.fetch_add(u64::try_from(duration.as_micros()).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    pub fn render(&self, out: &mut String, name: &str, help: &str) {
        header(out, name, help, "histogram");
        let mut cumulative = 0;
        for (bound, bucket) in self.bounds.iter().zip(self.buckets.iter()) {
            cumulative += bucket.load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {cumulative}");
        }
        // `observe` counts its bucket before the total: a scrape between the two must not show
        // fewer observations in all than in the buckets.
        let count = self.count.load(Ordering::Relaxed).max(cumulative);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let _ = writeln!(out, "{name}_sum {}", self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6);
        let _ = writeln!(out, "{name}_count {count}");
    }
}

fn header(out: &mut String, name: &str, help: &str, kind: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// A counter read at scrape time from elsewhere (the store's, the provisioner's).
pub fn counter(out: &mut String, name: &str, help: &str, samples: &[(&str, u64)]) {
    series(out, name, help, "counter", samples);
}

/// A gauge's value, read at scrape time.
pub fn gauge(out: &mut String, name: &str, help: &str, samples: &[(&str, f64)]) {
    series(out, name, help, "gauge", samples);
}

/// A family and its samples, each with its labels (`a="x",b="y"`, or none).
fn series<T: std::fmt::Display>(out: &mut String, name: &str, help: &str, kind: &str, samples: &[(&str, T)]) {
    header(out, name, help, kind);
    for (labels, value) in samples {
        if labels.is_empty() {
            let _ = writeln!(out, "{name} {value}");
        } else {
            let _ = writeln!(out, "{name}{{{labels}}} {value}");
        }
    }
}

/// The Inform event codes of TR-069 (Table 7) and the `M` events of the RPCs Roost sends.
const EVENTS: &[&str] = &[
    "0 BOOTSTRAP",
    "1 BOOT",
    "2 PERIODIC",
    "3 SCHEDULED",
    "4 VALUE CHANGE",
    "5 KICKED",
    "6 CONNECTION REQUEST",
    "7 TRANSFER COMPLETE",
    "8 DIAGNOSTICS COMPLETE",
    "9 REQUEST DOWNLOAD",
    "10 AUTONOMOUS TRANSFER COMPLETE",
    "11 DU STATE CHANGE COMPLETE",
    "12 AUTONOMOUS DU STATE CHANGE COMPLETE",
    "13 WAKEUP",
    "14 HEARTBEAT",
    "M Reboot",
    "M ScheduleInform",
    "M Download",
    "M ScheduleDownload",
    "M Upload",
    "M ChangeDUState",
];

/// How a CWMP session ended.
const SESSION_ENDS: &[&str] = &["completed", "timed_out", "replaced", "malformed"];

/// Why a CPE's request was refused before it reached a session.
const REFUSALS: &[&str] = &["challenged", "throttled", "too_large", "busy"];

/// The outcomes of a connection request ([`crate::cwmp::connection_request::Outcome::label`]).
const CONNECTION_REQUEST_OUTCOMES: &[&str] =
    &["accepted", "sent", "no_url", "no_credentials", "unauthorized", "throttled", "status", "unreachable"];

/// How a connection request travels: HTTP, or UDP through the device's NAT (TR-111).
const CONNECTION_REQUEST_TRANSPORTS: &[&str] = &["http", "udp"];

/// What the STUN server did with a datagram (`cwmp::stun`).
const STUN_OUTCOMES: &[&str] = &[
    "answered",
    "keepalive",
    "bound",
    "challenged",
    "malformed",
    "bad_integrity",
    "replayed",
    "unknown_device",
    "busy",
];

/// How a task ends (its names are [`crate::tasks::TASK_NAMES`]).
const TASK_OUTCOMES: &[&str] = &["done", "fault"];

const LISTENERS: &[&str] = &["cwmp", "http"];

/// How a webhook delivery attempt ended: delivered (2xx), failed (to be retried), or gone (its
/// event or webhook no longer exists).
const WEBHOOK_OUTCOMES: &[&str] = &["delivered", "failed", "gone"];

/// Which way a signal between replicas went (PostgreSQL NOTIFY, `replicas.rs`): sent to the
/// others (the NOTIFY issued), or received from one of them and applied here.
const REPLICA_SIGNAL_DIRECTIONS: &[&str] = &["sent", "received"];

/// What kind of fault was recorded on a device ([`crate::fault_code::FaultKind`]).
pub const FAULT_KINDS: &[&str] = &["cpe", "plugin", "provisioning"];

/// A database statement's time, from sent to answered: most take well under a millisecond on
/// SQLite, a few on PostgreSQL across a network.
pub const STATEMENT_SECONDS: &[f64] =
    &[0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0];

/// A CWMP session's length, from its Inform to its end: most are tens of milliseconds; a
/// discovery or a provision run seconds.
const SESSION_SECONDS: &[f64] = &[0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0];

/// The process's counters.
#[derive(Debug)]
pub struct Metrics {
    pub sessions_started: AtomicU64,
    pub sessions_ended: Labeled,
    pub session_seconds: Histogram,
    pub informs: Labeled,
    pub cpe_refusals: Labeled,
    pub connection_requests: Pairs,
    pub tasks: Pairs,
    pub tls_handshake_failures: Labeled,
    pub stun: Labeled,
    pub webhook_deliveries: Labeled,
    pub replica_signals: Pairs,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            sessions_started: AtomicU64::new(0),
            sessions_ended: Labeled::new("outcome", SESSION_ENDS),
            session_seconds: Histogram::new(SESSION_SECONDS),
            informs: Labeled::new("event", EVENTS),
            cpe_refusals: Labeled::new("reason", REFUSALS),
            connection_requests: Pairs::new(
                ["transport", "outcome"],
                [CONNECTION_REQUEST_TRANSPORTS, CONNECTION_REQUEST_OUTCOMES],
            ),
            tasks: Pairs::new(["name", "outcome"], [crate::tasks::TASK_NAMES, TASK_OUTCOMES]),
            tls_handshake_failures: Labeled::new("listener", LISTENERS),
            stun: Labeled::new("outcome", STUN_OUTCOMES),
            webhook_deliveries: Labeled::new("outcome", WEBHOOK_OUTCOMES),
            replica_signals: Pairs::new(
                ["direction", "signal"],
                [REPLICA_SIGNAL_DIRECTIONS, crate::replicas::SIGNAL_KINDS],
            ),
        }
    }
}

impl Metrics {
    /// The text a scrape returns, counters first, then `gauges` (read by the caller now).
    pub fn render(&self, gauges: impl FnOnce(&mut String)) -> String {
        let mut out = String::with_capacity(8 * 1024);
        header(&mut out, "roost_cwmp_sessions_started_total", "CWMP sessions opened (an Inform accepted)", "counter");
        let _ = writeln!(out, "roost_cwmp_sessions_started_total {}", self.sessions_started.load(Ordering::Relaxed));
        self.sessions_ended.render(&mut out, "roost_cwmp_sessions_ended_total", "CWMP sessions ended, by how");
        self.session_seconds.render(
            &mut out,
            "roost_cwmp_session_duration_seconds",
            "CWMP sessions that completed, from the Inform to the end",
        );
        self.informs.render(&mut out, "roost_cwmp_informs_total", "Inform events received, by event code");
        self.cpe_refusals.render(
            &mut out,
            "roost_cwmp_refused_total",
            "CPE requests refused before any session work, by reason",
        );
        self.connection_requests.render(
            &mut out,
            "roost_connection_requests_total",
            "Connection requests sent to devices, by transport and outcome",
        );
        self.tasks.render(&mut out, "roost_tasks_finished_total", "Tasks that ended in a session, by name and outcome");
        self.tls_handshake_failures.render(
            &mut out,
            "roost_tls_handshake_failures_total",
            "TLS handshakes that failed or timed out, by listener",
        );
        self.stun.render(
            &mut out,
            "roost_stun_requests_total",
            "STUN datagrams received, by what became of them (bound: a device's UDP binding recorded)",
        );
        self.webhook_deliveries.render(
            &mut out,
            "roost_webhook_deliveries_total",
            "Webhook delivery attempts, by outcome (on the replica that holds the events lease)",
        );
        self.replica_signals.render(
            &mut out,
            "roost_replica_signals_total",
            "Signals between replicas on PostgreSQL (cache drops, finished tasks, wake-ups), by direction and signal",
        );
        header(&mut out, "roost_build_info", "The running version", "gauge");
        let _ = writeln!(out, "roost_build_info{{version=\"{}\"}} 1", env!("CARGO_PKG_VERSION"));
        gauges(&mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_label_outside_the_known_set_counts_as_other() {
        let events = Labeled::new("event", EVENTS);
        events.inc("2 PERIODIC");
        events.inc("2 PERIODIC");
        events.inc("X 00D09E BOOT");
        assert_eq!(events.get("2 PERIODIC"), 2);
        assert_eq!(events.get("anything else"), 1, "`other`");
        let mut out = String::new();
        events.render(&mut out, "roost_cwmp_informs_total", "h");
        assert!(out.contains("roost_cwmp_informs_total{event=\"2 PERIODIC\"} 2\n"), "{out}");
        assert!(out.contains("roost_cwmp_informs_total{event=\"other\"} 1\n"), "{out}");
        assert!(out.starts_with("# HELP roost_cwmp_informs_total h\n# TYPE roost_cwmp_informs_total counter\n"));
    }

    #[test]
    fn histogram_buckets_are_cumulative_with_sum_and_count() {
        let h = Histogram::new(&[0.01, 0.1, 1.0]);
        for ms in [5, 50, 60, 2000] {
            h.observe(Duration::from_millis(ms));
        }
        let mut out = String::new();
        h.render(&mut out, "x_seconds", "h");
        for line in [
            "x_seconds_bucket{le=\"0.01\"} 1",
            "x_seconds_bucket{le=\"0.1\"} 3",
            "x_seconds_bucket{le=\"1\"} 3",
            "x_seconds_bucket{le=\"+Inf\"} 4",
            "x_seconds_sum 2.115",
            "x_seconds_count 4",
        ] {
            assert!(out.lines().any(|l| l == line), "{line} in\n{out}");
        }
    }

    #[test]
    fn pairs_bound_both_labels() {
        let tasks = Pairs::new(["name", "outcome"], [crate::tasks::TASK_NAMES, TASK_OUTCOMES]);
        tasks.inc("reboot", "done");
        tasks.inc("reboot", "done");
        tasks.inc("<script>", "done");
        assert_eq!(tasks.get("reboot", "done"), 2);
        assert_eq!(tasks.get("other", "done"), 1);
        let mut out = String::new();
        tasks.render(&mut out, "t", "h");
        assert!(out.contains("t{name=\"reboot\",outcome=\"done\"} 2\n"), "{out}");
        assert!(!out.contains("script"), "an unknown name never becomes a label: {out}");
    }
}
