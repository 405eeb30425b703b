//! Live counters of a producer connection, and the report it ends with (SPEC §6.5).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use framepipe_flow::{FlowSnapshot, Monitor, SocketSet, StageGauge};
use serde::Serialize;

/// A live view of one producer connection. Cheap to clone; read it from any task while the
/// connection runs (the example binaries print it every second).
///
/// Stages, in order: `encoded` (a frame made from the latest payload, waiting for room in the queue),
/// `queue` (the byte-budgeted queue), `writing` (frames taken by the writer, not yet fully written),
/// then the socket's send queue.
#[derive(Debug, Clone)]
pub struct Stats {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    started: Instant,
    frames_pulled: AtomicU64,
    frames_encoded: AtomicU64,
    bytes_encoded: AtomicU64,
    frames_written: AtomicU64,
    bytes_written: AtomicU64,
    encoded: StageGauge,
    queue: StageGauge,
    writing: StageGauge,
    monitor: Monitor,
}

/// One reading of [`Stats`]. Serializes to JSON.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Snapshot {
    /// Seconds since the connection was made.
    pub secs: f64,
    /// Payloads taken from the source stream.
    pub frames_pulled: u64,
    /// Frames encoded (equal to `frames_pulled` unless an encode failed).
    pub frames_encoded: u64,
    /// Wire bytes (headers included) of the frames encoded.
    pub bytes_encoded: u64,
    /// Frames written to the socket in full.
    pub frames_written: u64,
    /// Bytes written to the socket.
    pub bytes_written: u64,
    /// Every stage, the socket queues and the process's memory.
    pub flow: FlowSnapshot,
}

impl Stats {
    pub(crate) fn new(sockets: SocketSet) -> Self {
        let encoded = StageGauge::new("encoded");
        let queue = StageGauge::new("queue");
        let writing = StageGauge::new("writing");
        let monitor = Monitor::new(
            vec![encoded.clone(), queue.clone(), writing.clone()],
            sockets,
        );
        Stats {
            inner: Arc::new(Inner {
                started: Instant::now(),
                frames_pulled: AtomicU64::new(0),
                frames_encoded: AtomicU64::new(0),
                bytes_encoded: AtomicU64::new(0),
                frames_written: AtomicU64::new(0),
                bytes_written: AtomicU64::new(0),
                encoded,
                queue,
                writing,
                monitor,
            }),
        }
    }

    /// Reads every counter and stage now (two `ioctl`s and two small `/proc` reads), and updates the
    /// in-flight peak.
    pub fn snapshot(&self) -> Snapshot {
        let i = &self.inner;
        Snapshot {
            secs: i.started.elapsed().as_secs_f64(),
            frames_pulled: i.frames_pulled.load(Relaxed),
            frames_encoded: i.frames_encoded.load(Relaxed),
            bytes_encoded: i.bytes_encoded.load(Relaxed),
            frames_written: i.frames_written.load(Relaxed),
            bytes_written: i.bytes_written.load(Relaxed),
            flow: i.monitor.sample(),
        }
    }

    /// The socket queues only (two `ioctl`s per socket, no `/proc` reads): cheaper than a snapshot.
    pub fn socket_queues(&self) -> framepipe_flow::SocketQueues {
        self.inner.monitor.sockets().queues()
    }

    /// Frames written to the socket in full so far.
    pub fn frames_written(&self) -> u64 {
        self.inner.frames_written.load(Relaxed)
    }

    /// Wire bytes of the frames encoded so far (frames generated from the source).
    pub fn bytes_encoded(&self) -> u64 {
        self.inner.bytes_encoded.load(Relaxed)
    }

    /// Bytes written to the socket so far.
    pub fn bytes_written(&self) -> u64 {
        self.inner.bytes_written.load(Relaxed)
    }

    /// Time since the connection was made.
    pub fn elapsed(&self) -> Duration {
        self.inner.started.elapsed()
    }

    pub(crate) fn encoded_gauge(&self) -> &StageGauge {
        &self.inner.encoded
    }

    pub(crate) fn queue_gauge(&self) -> &StageGauge {
        &self.inner.queue
    }

    pub(crate) fn writing_gauge(&self) -> &StageGauge {
        &self.inner.writing
    }

    pub(crate) fn add_pulled(&self) {
        self.inner.frames_pulled.fetch_add(1, Relaxed);
    }

    pub(crate) fn add_encoded(&self, wire_bytes: usize) {
        self.inner.frames_encoded.fetch_add(1, Relaxed);
        self.inner
            .bytes_encoded
            .fetch_add(wire_bytes as u64, Relaxed);
    }

    pub(crate) fn add_frame_written(&self) {
        self.inner.frames_written.fetch_add(1, Relaxed);
    }

    pub(crate) fn add_bytes_written(&self, bytes: u64) {
        self.inner.bytes_written.fetch_add(bytes, Relaxed);
    }
}

/// What a producer connection did, returned when its stream has been sent.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// The final counters and stage peaks.
    #[serde(flatten)]
    pub snapshot: Snapshot,
    /// `true` if the consumer closed its end after this producer finished, meaning it read every
    /// byte; `false` if it did not close within the producer's `close_timeout` (SPEC §6.2).
    pub confirmed: bool,
}
