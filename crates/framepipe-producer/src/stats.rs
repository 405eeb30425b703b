//! Live counters of a producer connection, and the report it ends with (SPEC §6.5).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use framepipe_flow::{FlowSnapshot, Monitor, SocketSet, StageGauge};
use serde::Serialize;

use crate::metrics::{Metrics, SessionSeen};

/// A live view of one producer connection. Cheap to clone; read it from any task while the
/// connection runs (the example binaries print it every second).
///
/// Stages, in order: `encoded` (items gathered into a batch not yet made a frame; 0 without
/// batching), `queue` (frames accepted and waiting for the writer: the byte budget), `writing`
/// (frames taken by the writer, not yet fully written), then the socket's send queue.
#[derive(Debug, Clone)]
pub struct Stats {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    started: Instant,
    items_sent: AtomicU64,
    frames_encoded: AtomicU64,
    bytes_encoded: AtomicU64,
    frames_written: AtomicU64,
    bytes_written: AtomicU64,
    encoded: StageGauge,
    queue: StageGauge,
    writing: StageGauge,
    retained: StageGauge,
    monitor: Monitor,
    /// A session's progress, kept up to date by its driver (SPEC §10), and what was recorded.
    session: std::sync::Mutex<Option<(SessionProgress, SessionSeen)>>,
    metrics: Metrics,
}

/// Where a session is, as its driver last saw it ([`Stats::session_progress`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct SessionProgress {
    /// Frames accepted into the session.
    pub accepted: u64,
    /// Frames the consumer acknowledged: handled.
    pub delivered: u64,
    /// Frames written at least once and not acknowledged.
    pub unacked: u64,
    /// Frames accepted and never written.
    pub never_sent: u64,
    /// Connections welcomed.
    pub connections: u64,
    /// Connections lost, or attempts failed, after which the session tried again.
    pub reconnects: u64,
    /// Connections that resumed the session.
    pub resumes: u64,
}

impl SessionProgress {
    /// Where `session` is now.
    pub(crate) fn of(session: &framepipe_proto::producer::ProducerSession) -> Self {
        let counts = session.counts();
        SessionProgress {
            accepted: session.accepted(),
            delivered: session.delivered(),
            unacked: session.unacked(),
            never_sent: session.never_sent(),
            connections: counts.connections,
            reconnects: counts.reconnects,
            resumes: counts.resumes,
        }
    }
}

/// One reading of [`Stats`]. Serializes to JSON.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Snapshot {
    /// Seconds since the connection was made.
    pub secs: f64,
    /// Items accepted for sending: payloads taken from the source stream, or sent through a
    /// [`Sender`](crate::Sender) (with batching, several items make one frame).
    pub items_sent: u64,
    /// Frames made and accepted into the queue.
    pub frames_encoded: u64,
    /// Wire bytes (headers included) of the frames encoded.
    pub bytes_encoded: u64,
    /// Frames handed to the transport in full ("written": whether the consumer processed them is
    /// what `Report::confirmed` and the errors say).
    pub frames_written: u64,
    /// Bytes handed to the transport.
    pub bytes_written: u64,
    /// Every stage, the socket queues and the process's memory.
    pub flow: FlowSnapshot,
}

impl Snapshot {
    /// Frames accepted and not written in full: if the connection has ended, these were never sent.
    pub fn frames_unwritten(&self) -> u64 {
        self.frames_encoded.saturating_sub(self.frames_written)
    }
}

impl Stats {
    pub(crate) fn new(sockets: SocketSet) -> Self {
        Self::with_stages(sockets, false)
    }

    /// A session's stats (SPEC §10): its stages are `encoded`, `queue` and `retained` (frames
    /// accepted into the session and not acknowledged, whether written or not: the session's
    /// budget); frames being written are part of `retained`.
    pub(crate) fn for_session(sockets: SocketSet) -> Self {
        Self::with_stages(sockets, true)
    }

    fn with_stages(sockets: SocketSet, session: bool) -> Self {
        let encoded = StageGauge::new("encoded");
        let queue = StageGauge::new("queue");
        let writing = StageGauge::new("writing");
        let retained = StageGauge::new("retained");
        let last = if session { &retained } else { &writing };
        let monitor = Monitor::new(vec![encoded.clone(), queue.clone(), last.clone()], sockets)
            .publish_as("producer");
        let counter = || AtomicU64::new(0);
        Stats {
            inner: Arc::new(Inner {
                started: Instant::now(),
                items_sent: counter(),
                frames_encoded: counter(),
                bytes_encoded: counter(),
                frames_written: counter(),
                bytes_written: counter(),
                encoded,
                queue,
                writing,
                retained,
                monitor,
                session: std::sync::Mutex::new(None),
                metrics: Metrics::register(),
            }),
        }
    }

    /// Reads every counter and stage now (two `ioctl`s and two small `/proc` reads). Changes
    /// nothing: peaks are the sampler's (every `sample_interval`) or the value now, if larger.
    pub fn snapshot(&self) -> Snapshot {
        let i = &self.inner;
        Snapshot {
            secs: i.started.elapsed().as_secs_f64(),
            items_sent: i.items_sent.load(Relaxed),
            frames_encoded: i.frames_encoded.load(Relaxed),
            bytes_encoded: i.bytes_encoded.load(Relaxed),
            frames_written: i.frames_written.load(Relaxed),
            bytes_written: i.bytes_written.load(Relaxed),
            flow: i.monitor.read(),
        }
    }

    /// The socket queues only (two `ioctl`s per socket, no `/proc` reads): cheaper than a snapshot.
    pub fn socket_queues(&self) -> framepipe_flow::SocketQueues {
        self.inner.monitor.sockets().queues()
    }

    /// Frames written to the transport in full so far.
    pub fn frames_written(&self) -> u64 {
        self.inner.frames_written.load(Relaxed)
    }

    /// Frames accepted into the queue so far.
    pub fn frames_encoded(&self) -> u64 {
        self.inner.frames_encoded.load(Relaxed)
    }

    /// Items accepted so far.
    pub fn items_sent(&self) -> u64 {
        self.inner.items_sent.load(Relaxed)
    }

    /// Wire bytes of the frames encoded so far.
    pub fn bytes_encoded(&self) -> u64 {
        self.inner.bytes_encoded.load(Relaxed)
    }

    /// Bytes written to the transport so far.
    pub fn bytes_written(&self) -> u64 {
        self.inner.bytes_written.load(Relaxed)
    }

    /// Time since the connection was made.
    pub fn elapsed(&self) -> Duration {
        self.inner.started.elapsed()
    }

    pub(crate) fn monitor(&self) -> &Monitor {
        &self.inner.monitor
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

    /// A session's progress (`None` for a plain connection): what the consumer acknowledged, what
    /// waits for an ack, what was never sent, and the reconnects so far. Readable while the session
    /// runs and after it was abandoned.
    pub fn session_progress(&self) -> Option<SessionProgress> {
        let session = self.inner.session.lock().unwrap_or_else(|e| e.into_inner());
        session.map(|(progress, _)| progress)
    }

    /// Keeps the session's progress, and records what it did since the last call.
    pub(crate) fn set_session_progress(
        &self,
        session: &framepipe_proto::producer::ProducerSession,
    ) {
        let progress = SessionProgress::of(session);
        let counts = session.counts();
        let mut shown = self.inner.session.lock().unwrap_or_else(|e| e.into_inner());
        let mut seen = shown.map(|(_, seen)| seen).unwrap_or_default();
        self.inner
            .metrics
            .session(&mut seen, progress, counts.acks, counts.resent);
        *shown = Some((progress, seen));
    }

    pub(crate) fn retained_gauge(&self) -> &StageGauge {
        &self.inner.retained
    }

    pub(crate) fn add_items(&self, items: u64) {
        self.inner.items_sent.fetch_add(items, Relaxed);
        self.inner.metrics.items.increment(items);
    }

    pub(crate) fn add_encoded(&self, wire_bytes: usize) {
        self.inner.frames_encoded.fetch_add(1, Relaxed);
        self.inner
            .bytes_encoded
            .fetch_add(wire_bytes as u64, Relaxed);
        self.inner.metrics.frames_encoded.increment(1);
    }

    /// Sets the written totals (they only grow), and records the growth.
    pub(crate) fn set_written(&self, frames: u64, bytes: u64) {
        let frames_before = self.inner.frames_written.swap(frames, Relaxed);
        let bytes_before = self.inner.bytes_written.swap(bytes, Relaxed);
        let m = &self.inner.metrics;
        m.frames_sent
            .increment(frames.saturating_sub(frames_before));
        m.bytes_sent.increment(bytes.saturating_sub(bytes_before));
    }
}

/// What a producer connection did, returned when it has closed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// The final counters and stage peaks. Every frame accepted was written
    /// (`frames_written == frames_encoded`): a connection that could not write them all ends with an
    /// error that says how many were never sent.
    #[serde(flatten)]
    pub snapshot: Snapshot,
    /// `true` if the consumer closed its end after this producer had written everything and sent
    /// FIN. A framepipe consumer closes only once its handler has returned for every frame of the
    /// connection, so `true` means every frame was handled (SPEC §6.2.3); a plain reader closes once
    /// it has read them. `false`: it did not close within `close_timeout` (or the close deadline),
    /// so delivery is not confirmed.
    pub confirmed: bool,
}
