//! A whole pipeline's memory at one instant: every stage, the socket queues and the process (SPEC §5.3).

use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;

use serde::Serialize;

use crate::{probe, SocketQueues, SocketSet, StageGauge, StageSnapshot};

/// One reading of every stage of a pipeline. Serializes to JSON.
///
/// Socket figures are `None` when they cannot be read (not on Linux, or a connection over a
/// transport that cannot be probed is open: SPEC §5.3), never zero.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FlowSnapshot {
    /// Each stage's gauge, in pipeline order.
    pub stages: Vec<StageSnapshot>,
    /// The kernel's socket queues.
    pub sockets: SocketQueues,
    /// Bytes in all stages and socket queues now. A socket queue that cannot be read counts as zero,
    /// so when `sockets` shows a `None` this is a lower bound.
    pub in_flight_bytes: usize,
    /// The most in-flight bytes seen by any sample so far (or now, if more).
    pub peak_in_flight_bytes: usize,
    /// The largest socket send queue total seen by any sample so far (or now, if more); `None` if it
    /// has never been readable.
    pub peak_send_queue_bytes: Option<usize>,
    /// The largest socket receive queue total seen by any sample so far (or now, if more); `None` if
    /// it has never been readable.
    pub peak_recv_queue_bytes: Option<usize>,
    /// Resident memory of the process now; `None` where it cannot be read.
    pub rss_bytes: Option<u64>,
    /// Peak resident memory of the process so far (kept by the kernel); `None` where unavailable.
    pub peak_rss_bytes: Option<u64>,
}

/// Reads a fixed list of stages and a [`SocketSet`] together, and keeps the peak of their sum.
///
/// The per-stage peaks are exact (each gauge keeps its own); the peak of the *sum*, and of the socket
/// queues, is as good as the sampling: one sampler per monitor ([`Monitor::spawn_sampler`], every
/// [`DEFAULT_SAMPLE_INTERVAL`](crate::DEFAULT_SAMPLE_INTERVAL) by default) records them with
/// [`Monitor::sample`], and everything else reads with [`Monitor::read`], which changes nothing.
/// Cheap to clone (an `Arc`).
///
/// ```
/// use framepipe_flow::{Monitor, SocketSet, StageGauge};
///
/// let queue = StageGauge::new("queue");
/// let monitor = Monitor::new(vec![queue.clone()], SocketSet::new());
/// queue.grow(500);
/// assert_eq!(monitor.read().peak_in_flight_bytes, 500); // the value now
/// queue.shrink(500);
/// assert_eq!(monitor.read().peak_in_flight_bytes, 0); // read recorded nothing
/// queue.grow(300);
/// monitor.sample();
/// queue.shrink(300);
/// assert_eq!(monitor.read().peak_in_flight_bytes, 300); // sample did
/// ```
#[derive(Debug, Clone)]
pub struct Monitor {
    pub(crate) inner: Arc<Inner>,
}

#[derive(Debug)]
pub(crate) struct Inner {
    stages: Vec<StageGauge>,
    sockets: SocketSet,
    peak_in_flight: AtomicUsize,
    peak_send: OptionalPeak,
    peak_recv: OptionalPeak,
}

impl Monitor {
    /// Watches `stages` (reported in this order) and `sockets`.
    pub fn new(stages: Vec<StageGauge>, sockets: SocketSet) -> Self {
        Monitor {
            inner: Arc::new(Inner {
                stages,
                sockets,
                peak_in_flight: AtomicUsize::new(0),
                peak_send: OptionalPeak::default(),
                peak_recv: OptionalPeak::default(),
            }),
        }
    }

    /// Reads everything and records the in-flight and socket-queue peaks. Only the sampler should
    /// call it ([`Monitor::spawn_sampler`]); to look, use [`Monitor::read`].
    ///
    /// Costs two `ioctl`s per live socket, two small `/proc` reads (tens of microseconds) and one
    /// `Vec` of stage readings.
    pub fn sample(&self) -> FlowSnapshot {
        self.snapshot(true)
    }

    /// Reads everything without recording anything: each peak is the larger of the recorded peak and
    /// the value now. No side effect, so any number of readers may call it.
    ///
    /// Same cost as [`Monitor::sample`].
    pub fn read(&self) -> FlowSnapshot {
        self.snapshot(false)
    }

    /// Records the in-flight and socket-queue peaks without building a snapshot: what the sampler
    /// does every `sample_interval`. Costs two `ioctl`s per live socket and a few atomic loads; no
    /// allocation, no `/proc` read (peak RSS is kept by the kernel, §5.3).
    pub fn record(&self) {
        let inner = &*self.inner;
        let sockets = inner.sockets.queues();
        let in_flight: usize =
            inner.stages.iter().map(StageGauge::bytes).sum::<usize>() + sockets.total();
        inner.peak_in_flight.fetch_max(in_flight, Relaxed);
        let (send, recv) = peak_readings(&sockets);
        inner.peak_send.with(send, true);
        inner.peak_recv.with(recv, true);
    }

    fn snapshot(&self, record: bool) -> FlowSnapshot {
        let inner = &*self.inner;
        let stages: Vec<StageSnapshot> = inner.stages.iter().map(|g| g.snapshot()).collect();
        let sockets = inner.sockets.queues();
        // SPEC §5.3: an unreadable socket queue counts as zero in the sum.
        let in_flight_bytes = stages.iter().map(|s| s.bytes).sum::<usize>() + sockets.total();
        let peak_in_flight = if record {
            inner.peak_in_flight.fetch_max(in_flight_bytes, Relaxed)
        } else {
            inner.peak_in_flight.load(Relaxed)
        };
        let (send, recv) = peak_readings(&sockets);
        FlowSnapshot {
            stages,
            sockets,
            in_flight_bytes,
            peak_in_flight_bytes: peak_in_flight.max(in_flight_bytes),
            peak_send_queue_bytes: inner.peak_send.with(send, record),
            peak_recv_queue_bytes: inner.peak_recv.with(recv, record),
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

/// The socket queue readings a peak may take: none while no socket is open. A sum over no socket is
/// 0 but measured nothing, and a run served only over pipes would otherwise report a peak of 0 from
/// a sample taken before its first pipe opened (SPEC §5.3.4).
fn peak_readings(sockets: &SocketQueues) -> (Option<usize>, Option<usize>) {
    if sockets.sockets == 0 {
        return (None, None);
    }
    (sockets.send_queue_bytes, sockets.recv_queue_bytes)
}

/// The peak of a figure that may be unavailable: holds `peak + 1`, and 0 while no reading has been
/// available, so one atomic does it.
#[derive(Debug, Default)]
struct OptionalPeak(AtomicUsize);

impl OptionalPeak {
    /// The larger of the recorded peak and `now`, recording `now` if `record`.
    fn with(&self, now: Option<usize>, record: bool) -> Option<usize> {
        let encoded = now.map_or(0, |n| n.saturating_add(1));
        let before = if record {
            self.0.fetch_max(encoded, Relaxed)
        } else {
            self.0.load(Relaxed)
        };
        before.max(encoded).checked_sub(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io;

    struct Fixed(usize);

    impl crate::SocketProbe for Fixed {
        fn unsent_bytes(&self) -> io::Result<usize> {
            Ok(self.0)
        }
        fn unread_bytes(&self) -> io::Result<usize> {
            Ok(1)
        }
    }

    #[test]
    fn read_records_nothing_and_sample_records_the_peaks() {
        let stage = StageGauge::new("queue");
        let sockets = SocketSet::new();
        let monitor = Monitor::new(vec![stage.clone()], sockets.clone());
        let probe: Arc<dyn crate::SocketProbe> = Arc::new(Fixed(100));
        sockets.register(probe.clone());
        stage.grow(1000);
        let now = monitor.read();
        assert_eq!(
            (now.in_flight_bytes, now.peak_in_flight_bytes),
            (1101, 1101)
        );
        assert_eq!(now.peak_send_queue_bytes, Some(100));
        stage.shrink(1000);
        drop(probe);
        let later = monitor.read();
        assert_eq!((later.in_flight_bytes, later.peak_in_flight_bytes), (0, 0));
        // Nothing recorded and no socket open: no reading yet.
        assert_eq!(later.peak_send_queue_bytes, None);

        let probe: Arc<dyn crate::SocketProbe> = Arc::new(Fixed(100));
        sockets.register(probe.clone());
        stage.grow(1000);
        monitor.sample();
        stage.shrink(1000);
        drop(probe);
        let later = monitor.read();
        assert_eq!(
            (later.in_flight_bytes, later.peak_in_flight_bytes),
            (0, 1101)
        );
        assert_eq!(
            (later.peak_send_queue_bytes, later.peak_recv_queue_bytes),
            (Some(100), Some(1))
        );
    }

    #[test]
    fn socket_peaks_are_unavailable_until_a_reading_is() {
        // SPEC §5.3: never reported as zero.
        let sockets = SocketSet::new();
        let monitor = Monitor::new(Vec::new(), sockets.clone());
        // A sample before the first connection opens measures no socket: it records no peak (CI
        // once saw a consumer served over pipes report a peak of 0 from such a sample).
        monitor.sample();
        monitor.record();
        let pipe = sockets.register_unprobed();
        let s = monitor.sample();
        assert_eq!(
            (
                s.sockets.send_queue_bytes,
                s.peak_send_queue_bytes,
                s.peak_recv_queue_bytes
            ),
            (None, None, None)
        );
        let json = serde_json::to_value(&s).unwrap();
        assert!(json["peak_send_queue_bytes"].is_null(), "{json}");
        drop(pipe);
        let probe: Arc<dyn crate::SocketProbe> = Arc::new(Fixed(7));
        sockets.register(probe.clone());
        monitor.sample();
        let pipe = sockets.register_unprobed();
        // Unavailable now, but a peak was recorded while it was readable.
        let s = monitor.read();
        assert_eq!(
            (s.sockets.send_queue_bytes, s.peak_send_queue_bytes),
            (None, Some(7))
        );
        drop(pipe);
    }
}
