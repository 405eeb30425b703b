//! Per-stage memory gauges: bytes held now, the peak, items, and time spent blocked.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use serde::Serialize;

/// Live counters for one stage of a pipeline (a queue, a socket buffer, …).
///
/// Cheap to clone (an `Arc`) and to update (relaxed atomics): the writer side of a stage updates it on
/// every item, and a reporter reads [`StageGauge::snapshot`] whenever it likes.
#[derive(Debug, Clone)]
pub struct StageGauge {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    name: &'static str,
    bytes: AtomicUsize,
    peak_bytes: AtomicUsize,
    items: AtomicUsize,
    blocked_nanos: AtomicU64,
    /// Where blocked time is also recorded once the stage is published (SPEC §11.1).
    blocked_metric: OnceLock<metrics::Histogram>,
}

/// A point-in-time reading of a [`StageGauge`], ready to print or serialize as JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct StageSnapshot {
    /// The stage's name.
    pub name: &'static str,
    /// Bytes held by the stage now.
    pub bytes: usize,
    /// Most bytes the stage has held at once.
    pub peak_bytes: usize,
    /// Items held by the stage now.
    pub items: usize,
    /// Total time producers spent waiting for this stage to have room, in milliseconds.
    pub blocked_ms: u64,
}

impl StageGauge {
    /// A gauge reading zero.
    pub fn new(name: &'static str) -> Self {
        StageGauge {
            inner: Arc::new(Inner {
                name,
                bytes: AtomicUsize::new(0),
                peak_bytes: AtomicUsize::new(0),
                items: AtomicUsize::new(0),
                blocked_nanos: AtomicU64::new(0),
                blocked_metric: OnceLock::new(),
            }),
        }
    }

    /// Records `bytes` (one item) entering the stage.
    pub fn add(&self, bytes: usize) {
        let now = self.inner.bytes.fetch_add(bytes, Relaxed) + bytes;
        self.inner.peak_bytes.fetch_max(now, Relaxed);
        self.inner.items.fetch_add(1, Relaxed);
    }

    /// Records `bytes` (one item) leaving the stage.
    pub fn remove(&self, bytes: usize) {
        self.inner.bytes.fetch_sub(bytes, Relaxed);
        self.inner.items.fetch_sub(1, Relaxed);
    }

    /// Records a stage that holds bytes but not discrete items (a read buffer) growing by `bytes`.
    pub fn grow(&self, bytes: usize) {
        let now = self.inner.bytes.fetch_add(bytes, Relaxed) + bytes;
        self.inner.peak_bytes.fetch_max(now, Relaxed);
    }

    /// The opposite of [`StageGauge::grow`].
    pub fn shrink(&self, bytes: usize) {
        self.inner.bytes.fetch_sub(bytes, Relaxed);
    }

    /// Adds time a producer spent waiting for room.
    pub fn add_blocked(&self, waited: Duration) {
        let nanos = u64::try_from(waited.as_nanos()).unwrap_or(u64::MAX);
        self.inner.blocked_nanos.fetch_add(nanos, Relaxed);
        if let Some(metric) = self.inner.blocked_metric.get() {
            metric.record(waited.as_secs_f64());
        }
    }

    /// Records every later [`StageGauge::add_blocked`] in `metric` too (the first call wins).
    pub(crate) fn set_blocked_histogram(&self, metric: metrics::Histogram) {
        let _ = self.inner.blocked_metric.set(metric);
    }

    /// Bytes held now.
    pub fn bytes(&self) -> usize {
        self.inner.bytes.load(Relaxed)
    }

    /// The current reading.
    pub fn snapshot(&self) -> StageSnapshot {
        StageSnapshot {
            name: self.inner.name,
            bytes: self.inner.bytes.load(Relaxed),
            peak_bytes: self.inner.peak_bytes.load(Relaxed),
            items: self.inner.items.load(Relaxed),
            blocked_ms: self.inner.blocked_nanos.load(Relaxed) / 1_000_000,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracks_current_peak_items_and_blocked_time() {
        let g = StageGauge::new("queue");
        g.add(100);
        g.add(50);
        g.remove(100);
        g.add_blocked(Duration::from_millis(7));
        let s = g.snapshot();
        assert_eq!(
            (s.bytes, s.peak_bytes, s.items, s.blocked_ms),
            (50, 150, 1, 7)
        );
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(
            json,
            r#"{"name":"queue","bytes":50,"peak_bytes":150,"items":1,"blocked_ms":7}"#
        );
    }
}
