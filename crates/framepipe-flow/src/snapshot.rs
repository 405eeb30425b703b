//! A whole pipeline's memory at one instant: every stage, the socket queues and the process (SPEC §5.3).

use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;

use serde::Serialize;

use crate::{probe, SocketQueues, SocketSet, StageGauge, StageSnapshot};

/// One reading of every stage of a pipeline. Serializes to JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FlowSnapshot {
    /// Each stage's gauge, in pipeline order.
    pub stages: Vec<StageSnapshot>,
    /// The kernel's socket queues.
    pub sockets: SocketQueues,
    /// Bytes in all stages and socket queues now.
    pub in_flight_bytes: usize,
    /// The most in-flight bytes seen by any sample so far.
    pub peak_in_flight_bytes: usize,
    /// The largest socket send queue total seen by any sample so far.
    pub peak_send_queue_bytes: usize,
    /// The largest socket receive queue total seen by any sample so far.
    pub peak_recv_queue_bytes: usize,
    /// Resident memory of the process now; `None` where it cannot be read.
    pub rss_bytes: Option<u64>,
    /// Peak resident memory of the process so far (kept by the kernel); `None` where unavailable.
    pub peak_rss_bytes: Option<u64>,
}

/// Reads a fixed list of stages and a [`SocketSet`] together, and keeps the peak of their sum.
///
/// The per-stage peaks are exact (each gauge keeps its own); the peak of the *sum* is as good as the
/// sampling: call [`Monitor::sample`] often (framepipe's producer and consumer sample every 10 ms).
/// Cheap to clone (an `Arc`).
#[derive(Debug, Clone)]
pub struct Monitor {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    stages: Vec<StageGauge>,
    sockets: SocketSet,
    peak_in_flight: AtomicUsize,
    peak_send: AtomicUsize,
    peak_recv: AtomicUsize,
}

impl Monitor {
    /// Watches `stages` (reported in this order) and `sockets`.
    pub fn new(stages: Vec<StageGauge>, sockets: SocketSet) -> Self {
        Monitor {
            inner: Arc::new(Inner {
                stages,
                sockets,
                peak_in_flight: AtomicUsize::new(0),
                peak_send: AtomicUsize::new(0),
                peak_recv: AtomicUsize::new(0),
            }),
        }
    }

    /// Reads everything now and updates the in-flight peak.
    ///
    /// Costs two `ioctl`s per live socket and two small `/proc` reads: tens of microseconds.
    pub fn sample(&self) -> FlowSnapshot {
        let stages: Vec<StageSnapshot> = self.inner.stages.iter().map(|g| g.snapshot()).collect();
        let sockets = self.inner.sockets.queues();
        let in_flight_bytes = stages.iter().map(|s| s.bytes).sum::<usize>() + sockets.total();
        let peak = self
            .inner
            .peak_in_flight
            .fetch_max(in_flight_bytes, Relaxed);
        let send = sockets.send_queue_bytes.unwrap_or(0);
        let recv = sockets.recv_queue_bytes.unwrap_or(0);
        let peak_send = self.inner.peak_send.fetch_max(send, Relaxed).max(send);
        let peak_recv = self.inner.peak_recv.fetch_max(recv, Relaxed).max(recv);
        FlowSnapshot {
            stages,
            sockets,
            in_flight_bytes,
            peak_in_flight_bytes: peak.max(in_flight_bytes),
            peak_send_queue_bytes: peak_send,
            peak_recv_queue_bytes: peak_recv,
            rss_bytes: probe::rss_bytes().ok(),
            peak_rss_bytes: probe::peak_rss_bytes().ok(),
        }
    }

    /// The sockets this monitor measures.
    pub fn sockets(&self) -> &SocketSet {
        &self.inner.sockets
    }

    /// The stages this monitor reads.
    pub fn stages(&self) -> &[StageGauge] {
        &self.inner.stages
    }
}
