//! Live counters of a consumer, over all its connections, and its report (SPEC §7.5).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use framepipe_flow::{FlowSnapshot, MemoryPool, Monitor, PoolSnapshot, SocketSet, StageGauge};
use serde::Serialize;

/// A live view of a consumer: totals over all connections. Cheap to clone.
///
/// Stages, in order after the sockets' receive queues: `reading` (bytes read from sockets and not
/// yet framed: partial frames, and a whole frame waiting for room in the queue), `queue` (framed,
/// waiting for the handler; every connection's queue reports here), `handling` (frames being decoded
/// and handled).
#[derive(Debug, Clone)]
pub struct Stats {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    started: Instant,
    connections_accepted: AtomicU64,
    connections_open: AtomicU64,
    connections_refused: AtomicU64,
    frames_read: AtomicU64,
    bytes_read: AtomicU64,
    frames_handled: AtomicU64,
    bytes_handled: AtomicU64,
    errors: AtomicU64,
    slowed_nanos: AtomicU64,
    first_accept: OnceLock<Instant>,
    last_close: Mutex<Option<Instant>>,
    reading: StageGauge,
    queue: StageGauge,
    handling: StageGauge,
    monitor: Monitor,
    memory: MemoryPool,
}

/// One reading of [`Stats`]. Serializes to JSON.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Snapshot {
    /// Seconds since the consumer started listening.
    pub secs: f64,
    /// Seconds from the first connection accepted until the last one closed (or until now while any
    /// is open): the time the throughput figures are measured over.
    pub busy_secs: f64,
    /// Connections accepted so far.
    pub connections_accepted: u64,
    /// Connections open now.
    pub connections_open: u64,
    /// Connections refused because `max_open_connections` were open (SPEC §7.6).
    pub connections_refused: u64,
    /// Frames framed off sockets (including frames later refused by the mode).
    pub frames_read: u64,
    /// Bytes read from sockets.
    pub bytes_read: u64,
    /// Frames handed to handlers (or yielded by connection streams).
    pub frames_handled: u64,
    /// Wire bytes (headers included) of the frames handed over.
    pub bytes_handled: u64,
    /// Errors: frames refused and connections closed on an error.
    pub errors: u64,
    /// Time spent deliberately slowing down ([`SlowDown`](crate::SlowDown)), summed over
    /// connections, in milliseconds.
    pub slowed_ms: u64,
    /// Every stage, the socket queues and the process's memory.
    pub flow: FlowSnapshot,
    /// The memory limit across connections: bytes reserved now and at most, and how often and
    /// how long readers waited for room (SPEC §7.6).
    pub memory: PoolSnapshot,
}

impl Stats {
    pub(crate) fn new(sockets: SocketSet, memory: MemoryPool) -> Self {
        let reading = StageGauge::new("reading");
        let queue = StageGauge::new("queue");
        let handling = StageGauge::new("handling");
        let monitor = Monitor::new(
            vec![reading.clone(), queue.clone(), handling.clone()],
            sockets,
        );
        Stats {
            inner: Arc::new(Inner {
                started: Instant::now(),
                connections_accepted: AtomicU64::new(0),
                connections_open: AtomicU64::new(0),
                connections_refused: AtomicU64::new(0),
                frames_read: AtomicU64::new(0),
                bytes_read: AtomicU64::new(0),
                frames_handled: AtomicU64::new(0),
                bytes_handled: AtomicU64::new(0),
                errors: AtomicU64::new(0),
                slowed_nanos: AtomicU64::new(0),
                first_accept: OnceLock::new(),
                last_close: Mutex::new(None),
                reading,
                queue,
                handling,
                monitor,
                memory,
            }),
        }
    }

    /// Reads every counter and stage now (two `ioctl`s per open connection and two small `/proc`
    /// reads), and updates the in-flight peak.
    pub fn snapshot(&self) -> Snapshot {
        let i = &self.inner;
        let open = i.connections_open.load(Relaxed);
        let busy_secs = i.first_accept.get().map_or(0.0, |first| {
            let end = match *i.last_close.lock().unwrap_or_else(|e| e.into_inner()) {
                Some(last) if open == 0 => last,
                _ => Instant::now(),
            };
            end.saturating_duration_since(*first).as_secs_f64()
        });
        Snapshot {
            secs: i.started.elapsed().as_secs_f64(),
            busy_secs,
            connections_accepted: i.connections_accepted.load(Relaxed),
            connections_open: open,
            connections_refused: i.connections_refused.load(Relaxed),
            frames_read: i.frames_read.load(Relaxed),
            bytes_read: i.bytes_read.load(Relaxed),
            frames_handled: i.frames_handled.load(Relaxed),
            bytes_handled: i.bytes_handled.load(Relaxed),
            errors: i.errors.load(Relaxed),
            slowed_ms: i.slowed_nanos.load(Relaxed) / 1_000_000,
            flow: i.monitor.sample(),
            memory: i.memory.snapshot(),
        }
    }

    /// The socket queues only (two `ioctl`s per socket, no `/proc` reads): cheaper than a snapshot.
    pub fn socket_queues(&self) -> framepipe_flow::SocketQueues {
        self.inner.monitor.sockets().queues()
    }

    /// Frames handed over so far.
    pub fn frames_handled(&self) -> u64 {
        self.inner.frames_handled.load(Relaxed)
    }

    /// Wire bytes of the frames handed over so far.
    pub fn bytes_handled(&self) -> u64 {
        self.inner.bytes_handled.load(Relaxed)
    }

    pub(crate) fn monitor(&self) -> &Monitor {
        &self.inner.monitor
    }

    pub(crate) fn reading_gauge(&self) -> &StageGauge {
        &self.inner.reading
    }

    pub(crate) fn queue_gauge(&self) -> &StageGauge {
        &self.inner.queue
    }

    pub(crate) fn handling_gauge(&self) -> &StageGauge {
        &self.inner.handling
    }

    pub(crate) fn open_connections(&self) -> u64 {
        self.inner.connections_open.load(Relaxed)
    }

    pub(crate) fn add_refused(&self) {
        self.inner.connections_refused.fetch_add(1, Relaxed);
    }

    pub(crate) fn refused(&self) -> u64 {
        self.inner.connections_refused.load(Relaxed)
    }

    pub(crate) fn connection_opened(&self) {
        self.inner.first_accept.get_or_init(Instant::now);
        self.inner.connections_accepted.fetch_add(1, Relaxed);
        self.inner.connections_open.fetch_add(1, Relaxed);
    }

    pub(crate) fn connection_closed(&self) {
        *self
            .inner
            .last_close
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
        self.inner.connections_open.fetch_sub(1, Relaxed);
    }

    pub(crate) fn add_read(&self, bytes: usize) {
        self.inner.bytes_read.fetch_add(bytes as u64, Relaxed);
    }

    pub(crate) fn add_framed(&self) {
        self.inner.frames_read.fetch_add(1, Relaxed);
    }

    pub(crate) fn add_handled(&self, wire_bytes: usize) {
        self.inner.frames_handled.fetch_add(1, Relaxed);
        self.inner
            .bytes_handled
            .fetch_add(wire_bytes as u64, Relaxed);
    }

    pub(crate) fn add_error(&self) {
        self.inner.errors.fetch_add(1, Relaxed);
    }

    pub(crate) fn add_slowed(&self, waited: Duration) {
        let nanos = u64::try_from(waited.as_nanos()).unwrap_or(u64::MAX);
        self.inner.slowed_nanos.fetch_add(nanos, Relaxed);
    }
}

/// What one connection did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ConnectionReport {
    /// The producer's address.
    pub peer: SocketAddr,
    /// Frames handed to the handler.
    pub frames: u64,
    /// Wire bytes of those frames.
    pub bytes: u64,
    /// Frames refused, plus one if the connection ended on an error.
    pub errors: u64,
    /// How long the connection lasted, in seconds.
    pub secs: f64,
    /// Why the connection ended early, if it did.
    pub error: Option<String>,
}

/// What a consumer did, returned by [`Consumer::serve`](crate::Consumer::serve).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// Totals and stage peaks over all connections.
    #[serde(flatten)]
    pub snapshot: Snapshot,
    /// Each connection that ended, in the order they ended.
    pub connections: Vec<ConnectionReport>,
}
