//! Health points between sessions and their batched write: a session that ends with fresh
//! figures hands them here, and a timer writes everything buffered in one transaction
//! (`store::metrics::insert`), so the periodic Inform never waits on a metrics write. A device
//! whose figures are what it reported last (figures younger than the preset's max-age, a
//! replayed run) adds nothing.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::Mutex;

use super::{HealthFigures, Point};
use crate::store::DevicePk;

pub struct MetricsBuffer {
    points: Mutex<VecDeque<Point>>,
    /// The figures each device last reported, to tell fresh ones from a repeat. Per process: a
    /// replica that never saw a device (or after this cache let it go) stores its first report
    /// again, at its own time: one more point of the same figures.
    last: moka::sync::Cache<DevicePk, Arc<HealthFigures>>,
    max_points: usize,
    dropped: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for MetricsBuffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricsBuffer").field("max_points", &self.max_points).finish_non_exhaustive()
    }
}

impl MetricsBuffer {
    pub fn new(max_points: usize) -> Self {
        MetricsBuffer {
            points: Mutex::new(VecDeque::new()),
            last: moka::sync::Cache::builder()
                .max_capacity(2_000_000)
                .time_to_idle(std::time::Duration::from_secs(24 * 3600))
                .build(),
            max_points: max_points.max(1),
            dropped: Default::default(),
        }
    }

    /// Offers a session's figures, taken at `at`; whether they were buffered (they differ from
    /// what the device reported last).
    pub fn offer(&self, device_pk: DevicePk, at: i64, figures: &Arc<HealthFigures>) -> bool {
        if figures.is_empty() || self.last.get(&device_pk).is_some_and(|last| *last == **figures) {
            return false;
        }
        self.last.insert(device_pk, figures.clone());
        let points = figures.0.iter().map(|&(metric, value)| Point { device_pk, metric, at, value });
        let mut buffered = self.points.lock().unwrap_or_else(|e| e.into_inner());
        buffered.extend(points);
        self.trim(&mut buffered);
        true
    }

    /// Everything buffered, for a write.
    pub fn take(&self) -> Vec<Point> {
        let mut buffered = self.points.lock().unwrap_or_else(|e| e.into_inner());
        std::mem::take(&mut *buffered).into()
    }

    /// Puts back points a write failed to store, before any buffered since.
    pub fn put_back(&self, points: Vec<Point>) {
        let mut buffered = self.points.lock().unwrap_or_else(|e| e.into_inner());
        let newer = std::mem::replace(&mut *buffered, VecDeque::from(points));
        buffered.extend(newer);
        self.trim(&mut buffered);
    }

    /// Points dropped because the buffer was full, since the last call.
    pub fn take_dropped(&self) -> u64 {
        self.dropped.swap(0, std::sync::atomic::Ordering::Relaxed)
    }

    pub fn len(&self) -> usize {
        self.points.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn trim(&self, buffered: &mut VecDeque<Point>) {
        let excess = buffered.len().saturating_sub(self.max_points);
        if excess > 0 {
            // The oldest go first: the newest figures are what an operator looks at.
            buffered.drain(..excess);
            self.dropped.fetch_add(excess as u64, std::sync::atomic::Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::Metric;

    fn figures(cpu: f64) -> Arc<HealthFigures> {
        Arc::new(HealthFigures(vec![(Metric::UptimeSeconds, 100.0), (Metric::CpuPercent, cpu)]))
    }

    #[test]
    fn a_repeated_report_adds_nothing_and_a_changed_one_adds_every_figure() {
        let buffer = MetricsBuffer::new(100);
        assert!(buffer.offer(DevicePk(1), 1_000, &figures(5.0)));
        assert!(!buffer.offer(DevicePk(1), 2_000, &figures(5.0)), "the same figures again");
        assert!(buffer.offer(DevicePk(2), 2_000, &figures(5.0)), "another device");
        assert!(buffer.offer(DevicePk(1), 3_000, &figures(6.0)));
        assert!(!buffer.offer(DevicePk(3), 3_000, &Arc::new(HealthFigures::default())), "no figures");
        let points = buffer.take();
        assert_eq!(points.len(), 6);
        assert!(points.iter().all(|p| p.at != 2_000 || p.device_pk == DevicePk(2)));
        assert!(buffer.is_empty());
    }

    #[test]
    fn a_full_buffer_drops_the_oldest_points_and_counts_them() {
        let buffer = MetricsBuffer::new(3);
        buffer.offer(DevicePk(1), 1, &figures(1.0));
        buffer.offer(DevicePk(2), 2, &figures(1.0));
        assert_eq!(buffer.take_dropped(), 1);
        let points = buffer.take();
        assert_eq!(points.iter().map(|p| p.at).collect::<Vec<_>>(), [1, 2, 2]);
        // Points a failed write puts back go before newer ones, within the same bound.
        buffer.offer(DevicePk(3), 3, &figures(1.0));
        buffer.put_back(points);
        assert_eq!(buffer.take().iter().map(|p| p.at).collect::<Vec<_>>(), [2, 3, 3]);
        assert_eq!(buffer.take_dropped(), 2);
    }
}
