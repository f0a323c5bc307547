//! Load statistics: sessions completed, failures, and session latency percentiles, both
//! cumulative and per reporting window.
//!
//! Latencies are kept as microseconds in plain vectors (4 bytes a session: a million sessions
//! cost 4 MB) and sorted when a summary is asked for, which is every few seconds at most.

use std::fmt;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::session::SessionReport;

#[derive(Debug)]
struct Samples {
    all: Vec<u32>,
    window: Vec<u32>,
    window_failures: u64,
    window_start: Instant,
}

/// Counters every device's sessions feed.
#[derive(Debug)]
pub struct Stats {
    started: Instant,
    sessions: AtomicU64,
    failures: AtomicU64,
    /// TLS handshakes of every session, full and resumed: how many paid for a key exchange and
    /// a certificate check.
    tls_full: AtomicU64,
    tls_resumed: AtomicU64,
    samples: Mutex<Samples>,
}

/// Numbers over some period; `Display` writes one greppable `key=value` line.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    pub elapsed: Duration,
    /// Sessions the ACS ended properly.
    pub sessions: u64,
    /// Sessions that ended in an error (HTTP status, timeout, refused connection, …).
    pub failures: u64,
    /// Successful sessions per second over `elapsed`.
    pub rate: f64,
    /// Latency percentiles of successful sessions, Inform to end.
    pub p50: Duration,
    pub p99: Duration,
    pub max: Duration,
}

impl Default for Stats {
    fn default() -> Self {
        Self::new()
    }
}

impl Stats {
    pub fn new() -> Self {
        let now = Instant::now();
        Self {
            started: now,
            sessions: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            tls_full: AtomicU64::new(0),
            tls_resumed: AtomicU64::new(0),
            samples: Mutex::new(Samples { all: Vec::new(), window: Vec::new(), window_failures: 0, window_start: now }),
        }
    }

    fn samples(&self) -> std::sync::MutexGuard<'_, Samples> {
        match self.samples.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    pub fn record(&self, report: &SessionReport) {
        for &resumed in &report.tls_resumed {
            (if resumed { &self.tls_resumed } else { &self.tls_full }).fetch_add(1, Ordering::Relaxed);
        }
        let mut samples = self.samples();
        if report.is_ok() {
            self.sessions.fetch_add(1, Ordering::Relaxed);
            let micros = u32::try_from(report.duration.as_micros()).unwrap_or(u32::MAX);
            samples.all.push(micros);
            samples.window.push(micros);
        } else {
            self.failures.fetch_add(1, Ordering::Relaxed);
            samples.window_failures += 1;
        }
    }

    pub fn sessions(&self) -> u64 {
        self.sessions.load(Ordering::Relaxed)
    }

    pub fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }

    /// TLS handshakes so far, as (full, resumed).
    pub fn tls_handshakes(&self) -> (u64, u64) {
        (self.tls_full.load(Ordering::Relaxed), self.tls_resumed.load(Ordering::Relaxed))
    }

    /// Everything since the fleet started.
    pub fn total(&self) -> Summary {
        let samples = self.samples();
        summarize(self.started.elapsed(), &samples.all, self.failures())
    }

    /// Since the previous call (or the start), and starts a new window.
    pub fn take_window(&self) -> Summary {
        let mut samples = self.samples();
        let now = Instant::now();
        let summary = summarize(now.duration_since(samples.window_start), &samples.window, samples.window_failures);
        samples.window.clear();
        samples.window_failures = 0;
        samples.window_start = now;
        summary
    }
}

fn summarize(elapsed: Duration, latencies: &[u32], failures: u64) -> Summary {
    let mut sorted = latencies.to_vec();
    sorted.sort_unstable();
    let micros = |v: Option<&u32>| Duration::from_micros(v.copied().map_or(0, u64::from));
    let sessions = sorted.len() as u64;
    let seconds = elapsed.as_secs_f64();
    Summary {
        elapsed,
        sessions,
        failures,
        rate: if seconds > 0.0 { sessions as f64 / seconds } else { 0.0 },
        p50: micros(percentile(&sorted, 0.50)),
        p99: micros(percentile(&sorted, 0.99)),
        max: micros(sorted.last()),
    }
}

/// Nearest-rank percentile of sorted samples.
fn percentile(sorted: &[u32], p: f64) -> Option<&u32> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (p * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.clamp(1, sorted.len()) - 1)
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        write!(
            f,
            "sessions={} sessions_per_s={:.1} p50_ms={:.1} p99_ms={:.1} max_ms={:.1} failures={} elapsed_s={:.1}",
            self.sessions,
            self.rate,
            ms(self.p50),
            ms(self.p99),
            ms(self.max),
            self.failures,
            self.elapsed.as_secs_f64()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let samples: Vec<u32> = (1..=100).collect();
        assert_eq!(percentile(&samples, 0.5), Some(&50));
        assert_eq!(percentile(&samples, 0.99), Some(&99));
        assert_eq!(percentile(&[7], 0.99), Some(&7));
        assert_eq!(percentile(&[], 0.5), None);
        let s = summarize(Duration::from_secs(10), &samples.iter().map(|v| v * 1000).collect::<Vec<_>>(), 3);
        assert_eq!(
            s.to_string(),
            "sessions=100 sessions_per_s=10.0 p50_ms=50.0 p99_ms=99.0 max_ms=100.0 failures=3 elapsed_s=10.0"
        );
    }
}
