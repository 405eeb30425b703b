//! Live counters of a consumer, over all its connections, and its reports (SPEC §7.5).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use framepipe_flow::{
    FlowSnapshot, MemoryPool, Monitor, PeerAddr, PoolSnapshot, SocketSet, StageGauge,
};
use serde::Serialize;

use crate::metrics::{self, Metrics};
use crate::{ConnectionInfo, Error};

/// A live view of a consumer: totals over all connections. Cheap to clone.
///
/// Stages, in order after the transports' receive queues: `reading` (bytes read and not yet handed
/// to the application: partial frames, and whole frames waiting for room in the queue), `queue`
/// (framed, waiting for the handler; every connection's queue reports here), `handling` (frames
/// handed to the application whose [`Delivery`](crate::Delivery) has not been dropped).
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
    frames_delivered: AtomicU64,
    bytes_delivered: AtomicU64,
    frames_handled: AtomicU64,
    bytes_handled: AtomicU64,
    handler_errors: AtomicU64,
    frames_unhandled: AtomicU64,
    errors: AtomicU64,
    slowed_nanos: AtomicU64,
    sessions_opened: AtomicU64,
    sessions_resumed: AtomicU64,
    sessions_refused: AtomicU64,
    duplicates_dropped: AtomicU64,
    first_accept: OnceLock<Instant>,
    last_close: Mutex<Option<Instant>>,
    reading: StageGauge,
    queue: StageGauge,
    handling: StageGauge,
    monitor: Monitor,
    memory: MemoryPool,
    metrics: Metrics,
}

/// One reading of [`Stats`]. Serializes to JSON.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Snapshot {
    /// Seconds since the consumer started listening.
    pub secs: f64,
    /// Seconds from the first connection accepted until the last one closed (or until now while any
    /// is open): the time the throughput figures are measured over.
    pub busy_secs: f64,
    /// Connections accepted so far (refused ones not included).
    pub connections_accepted: u64,
    /// Connections open now.
    pub connections_open: u64,
    /// Connections refused because `max_open_connections` were open (SPEC §7.6).
    pub connections_refused: u64,
    /// Frames read from transports (including frames later refused).
    pub frames_read: u64,
    /// Bytes read from transports.
    pub bytes_read: u64,
    /// Frames handed to the application: to handlers, or yielded by connection streams.
    pub frames_delivered: u64,
    /// Wire bytes (headers included) of the frames delivered.
    pub bytes_delivered: u64,
    /// Frames whose handler returned `Ok` ([`Consumer::serve`](crate::Consumer::serve) only).
    pub frames_handled: u64,
    /// Wire bytes of the frames handled.
    pub bytes_handled: u64,
    /// Handlers that returned an error.
    pub handler_errors: u64,
    /// Frames read from a transport that no handler finished: dropped after a handler's error closed
    /// their connection, or by a forced shutdown. A graceful shutdown leaves none.
    pub frames_unhandled: u64,
    /// Errors: frames refused, connections closed on an error, and handler errors.
    pub errors: u64,
    /// Time spent deliberately slowing down ([`SlowDown`](crate::SlowDown)), summed over
    /// connections, in milliseconds.
    pub slowed_ms: u64,
    /// Sessions this consumer began (a hello for a session it did not know, SPEC §10.4).
    pub sessions: u64,
    /// Connections that resumed a session this consumer knew.
    pub session_resumes: u64,
    /// Hellos refused (SPEC §10.4.5, §10.8): without the session's secret, resuming beyond what
    /// was handled, superseded while waiting, the table full or the store failing.
    pub sessions_refused: u64,
    /// Frames of a session that arrived again and were dropped, not handed on (SPEC §10.5).
    pub duplicates_dropped: u64,
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
        )
        .publish_as("consumer");
        let memory = memory.publish_as("consumer");
        let counter = || AtomicU64::new(0);
        Stats {
            inner: Arc::new(Inner {
                started: Instant::now(),
                connections_accepted: counter(),
                connections_open: counter(),
                connections_refused: counter(),
                frames_read: counter(),
                bytes_read: counter(),
                frames_delivered: counter(),
                bytes_delivered: counter(),
                frames_handled: counter(),
                bytes_handled: counter(),
                handler_errors: counter(),
                frames_unhandled: counter(),
                errors: counter(),
                slowed_nanos: counter(),
                sessions_opened: counter(),
                sessions_resumed: counter(),
                sessions_refused: counter(),
                duplicates_dropped: counter(),
                first_accept: OnceLock::new(),
                last_close: Mutex::new(None),
                reading,
                queue,
                handling,
                monitor,
                memory,
                metrics: Metrics::register(),
            }),
        }
    }

    /// Reads every counter and stage now (two `ioctl`s per open connection and two small `/proc`
    /// reads). Changes nothing: the in-flight peak is the sampler's (every `sample_interval`) or
    /// the value now, whichever is larger.
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
            frames_delivered: i.frames_delivered.load(Relaxed),
            bytes_delivered: i.bytes_delivered.load(Relaxed),
            frames_handled: i.frames_handled.load(Relaxed),
            bytes_handled: i.bytes_handled.load(Relaxed),
            handler_errors: i.handler_errors.load(Relaxed),
            frames_unhandled: i.frames_unhandled.load(Relaxed),
            errors: i.errors.load(Relaxed),
            slowed_ms: i.slowed_nanos.load(Relaxed) / 1_000_000,
            sessions: i.sessions_opened.load(Relaxed),
            session_resumes: i.sessions_resumed.load(Relaxed),
            sessions_refused: i.sessions_refused.load(Relaxed),
            duplicates_dropped: i.duplicates_dropped.load(Relaxed),
            flow: i.monitor.read(),
            memory: i.memory.snapshot(),
        }
    }

    /// The socket queues only (two `ioctl`s per socket, no `/proc` reads): cheaper than a snapshot.
    pub fn socket_queues(&self) -> framepipe_flow::SocketQueues {
        self.inner.monitor.sockets().queues()
    }

    /// Frames handed to the application so far.
    pub fn frames_delivered(&self) -> u64 {
        self.inner.frames_delivered.load(Relaxed)
    }

    /// Frames whose handler returned `Ok` so far.
    pub fn frames_handled(&self) -> u64 {
        self.inner.frames_handled.load(Relaxed)
    }

    /// Wire bytes of the frames handled so far.
    pub fn bytes_handled(&self) -> u64 {
        self.inner.bytes_handled.load(Relaxed)
    }

    /// Connections open now.
    pub fn open_connections(&self) -> u64 {
        self.inner.connections_open.load(Relaxed)
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

    pub(crate) fn add_refused(&self) {
        self.inner.connections_refused.fetch_add(1, Relaxed);
        self.inner.metrics.connections_refused.increment(1);
    }

    pub(crate) fn refused(&self) -> u64 {
        self.inner.connections_refused.load(Relaxed)
    }

    pub(crate) fn connection_opened(&self) {
        self.inner.first_accept.get_or_init(Instant::now);
        self.inner.connections_accepted.fetch_add(1, Relaxed);
        self.inner.connections_open.fetch_add(1, Relaxed);
        self.inner.metrics.connections.increment(1);
        self.inner.metrics.connections_open.increment(1.0);
    }

    pub(crate) fn connection_closed(&self) {
        *self
            .inner
            .last_close
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
        self.inner.connections_open.fetch_sub(1, Relaxed);
        self.inner.metrics.connections_open.decrement(1.0);
    }

    pub(crate) fn add_read(&self, bytes: usize) {
        self.inner.bytes_read.fetch_add(bytes as u64, Relaxed);
        self.inner.metrics.bytes_received.increment(bytes as u64);
    }

    pub(crate) fn add_framed(&self) {
        self.inner.frames_read.fetch_add(1, Relaxed);
        self.inner.metrics.frames_received.increment(1);
    }

    pub(crate) fn add_handed_out(&self, wire_bytes: usize) {
        self.inner.frames_delivered.fetch_add(1, Relaxed);
        self.inner
            .bytes_delivered
            .fetch_add(wire_bytes as u64, Relaxed);
        self.inner.metrics.frames_delivered.increment(1);
    }

    pub(crate) fn add_handled(&self, wire_bytes: usize) {
        self.inner.frames_handled.fetch_add(1, Relaxed);
        self.inner
            .bytes_handled
            .fetch_add(wire_bytes as u64, Relaxed);
        self.inner.metrics.frames_handled.increment(1);
        self.inner
            .metrics
            .bytes_handled
            .increment(wire_bytes as u64);
    }

    pub(crate) fn add_handler_error(&self) {
        self.inner.handler_errors.fetch_add(1, Relaxed);
        self.add_error("handler");
    }

    pub(crate) fn add_unhandled(&self, frames: u64) {
        self.inner.frames_unhandled.fetch_add(frames, Relaxed);
        self.inner.metrics.frames_unhandled.increment(frames);
    }

    /// Counts an error; `code` labels it in the metrics ([`Error::code`], or `handler`).
    pub(crate) fn add_error(&self, code: &'static str) {
        self.inner.errors.fetch_add(1, Relaxed);
        metrics::record_error(code);
    }

    pub(crate) fn add_session_opened(&self) {
        self.inner.sessions_opened.fetch_add(1, Relaxed);
        self.inner.metrics.sessions.increment(1);
    }

    pub(crate) fn add_session_resumed(&self) {
        self.inner.sessions_resumed.fetch_add(1, Relaxed);
        self.inner.metrics.session_resumes.increment(1);
    }

    /// Counts a refused hello; `code` (its notice's) labels it in the metrics.
    pub(crate) fn add_session_refused(&self, code: &'static str) {
        self.inner.sessions_refused.fetch_add(1, Relaxed);
        ::metrics::counter!(crate::metrics::SESSIONS_REFUSED, "code" => code).increment(1);
    }

    pub(crate) fn add_duplicates(&self, frames: u64) {
        self.inner.duplicates_dropped.fetch_add(frames, Relaxed);
        self.inner.metrics.duplicates_dropped.increment(frames);
    }

    pub(crate) fn add_slowed(&self, waited: Duration) {
        let nanos = u64::try_from(waited.as_nanos()).unwrap_or(u64::MAX);
        self.inner.slowed_nanos.fetch_add(nanos, Relaxed);
    }
}

/// Keeps the `reading` gauge equal to the bytes one connection holds before its queue.
#[derive(Debug)]
pub(crate) struct ReadingGauge {
    gauge: StageGauge,
    shown: usize,
}

impl ReadingGauge {
    pub(crate) fn new(stats: &Stats) -> Self {
        ReadingGauge {
            gauge: stats.reading_gauge().clone(),
            shown: 0,
        }
    }

    pub(crate) fn set(&mut self, now: usize) {
        if now > self.shown {
            self.gauge.grow(now - self.shown);
        } else {
            self.gauge.shrink(self.shown - now);
        }
        self.shown = now;
    }
}

impl Drop for ReadingGauge {
    fn drop(&mut self) {
        self.set(0);
    }
}

/// What one connection did. The counts add up: `frames_read` = `frames` + `handler_errors` +
/// frames refused + `unhandled`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ConnectionReport {
    /// The connection's number in this consumer.
    pub id: u64,
    /// The producer's address.
    pub peer: PeerAddr,
    /// Frames whose handler returned `Ok`.
    pub frames: u64,
    /// Wire bytes of those frames.
    pub bytes: u64,
    /// Frames read from the transport (delivered, refused or skipped). A frame still arriving
    /// when the connection was rejected or forcibly closed was not read and is not counted.
    pub frames_read: u64,
    /// Frames refused (frame-local errors), handler errors, plus one if the connection ended on an
    /// error.
    pub errors: u64,
    /// Handlers that returned an error.
    pub handler_errors: u64,
    /// Frames read from the transport that no handler finished: after a handler's error closed the
    /// connection, or at a forced shutdown (0 after a graceful one).
    pub unhandled: u64,
    /// The shutdown was forced while the connection was open.
    pub forced: bool,
    /// How long the connection lasted, in seconds.
    pub secs: f64,
    /// Why the connection ended early, if it did.
    pub error: Option<String>,
}

impl ConnectionReport {
    pub(crate) fn new(info: &ConnectionInfo) -> Self {
        ConnectionReport {
            id: info.id,
            peer: info.peer.clone(),
            frames: 0,
            bytes: 0,
            frames_read: 0,
            errors: 0,
            handler_errors: 0,
            unhandled: 0,
            forced: false,
            secs: 0.0,
            error: None,
        }
    }

    /// Counts an error item of the connection's stream, and logs it: a fatal one (the last item)
    /// once at WARN, the first frame-local one at WARN and later ones at DEBUG.
    pub(crate) fn note_error(&mut self, e: &Error) {
        self.errors += 1;
        let (peer, connection) = (&self.peer, self.id);
        if e.is_fatal() {
            tracing::warn!(%peer, connection, frames = self.frames, "closing connection: {e}");
            self.error = Some(e.to_string());
        } else if self.errors == 1 {
            tracing::warn!(%peer, connection, "frame dropped, connection goes on: {e}");
        } else {
            tracing::debug!(%peer, connection, "frame dropped, connection goes on: {e}");
        }
    }
}

/// How a graceful shutdown went.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ShutdownReport {
    /// It was forced (a second signal, or `shutdown_timeout`): some frames may be unhandled.
    pub forced: bool,
    /// Seconds from its start until every connection had closed.
    pub secs: f64,
}

/// What a consumer did, returned by [`Consumer::serve`](crate::Consumer::serve).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// Totals and stage peaks over all connections.
    #[serde(flatten)]
    pub snapshot: Snapshot,
    /// Each connection that ended, in the order they ended.
    pub connections: Vec<ConnectionReport>,
    /// The shutdown, if one was started.
    pub shutdown: Option<ShutdownReport>,
}
