//! The consumer: accepts connections and serves them (SPEC §7.1).

use std::future::Future;
use std::io;
use std::net::{Shutdown, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use framepipe_codec::limits::HEADER_LEN;
use framepipe_flow::queue;
use framepipe_flow::MemoryPool;
use framepipe_flow::SocketSet;
use futures::StreamExt;
use tokio::net::TcpListener;
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio::task::{JoinHandle, JoinSet};

use crate::builder::Builder;
use crate::reader::{drain, read_frames, ReaderConfig};
use crate::slow::Pacer;
use crate::stats::{ConnectionReport, Report, Stats};
use crate::{Connection, Delivery, Error, Mode};

/// A listening consumer. Make one with [`Consumer::builder`]; then either [`Consumer::serve`] with a
/// handler, or take connections one at a time with [`Consumer::accept`].
#[derive(Debug)]
pub struct Consumer {
    listener: TcpListener,
    config: Builder,
    sockets: SocketSet,
    stats: Stats,
    sampler: JoinHandle<()>,
    seeds: AtomicU64,
    memory: MemoryPool,
    /// Bounds the refused connections still being drained (SPEC §7.6).
    refusing: Arc<Semaphore>,
    last_refusal_log: Mutex<Option<Instant>>,
}

/// Most refused connections kept open at once to let their producers read the notice; beyond
/// that they are closed straight after it is written.
const MAX_REFUSALS_DRAINING: usize = 32;

impl Drop for Consumer {
    fn drop(&mut self) {
        self.sampler.abort();
    }
}

impl Consumer {
    /// Settings with every default; finish with [`Builder::bind`].
    pub fn builder() -> Builder {
        Builder::default()
    }

    pub(crate) fn new(listener: TcpListener, config: Builder) -> Self {
        let sockets = SocketSet::new();
        // `Builder::bind` checked that a whole frame fits the limit.
        let frame = config.codec.get_max_frame_length() as usize + HEADER_LEN;
        let memory = MemoryPool::new(config.memory_limit, frame);
        let stats = Stats::new(sockets.clone(), memory.clone());
        let sampler = tokio::spawn({
            let monitor = stats.monitor().clone();
            let every = config.sample_interval;
            async move {
                let mut ticker = tokio::time::interval(every);
                ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    ticker.tick().await;
                    monitor.sample();
                }
            }
        });
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64);
        Consumer {
            listener,
            config,
            sockets,
            stats,
            sampler,
            seeds: AtomicU64::new(seed),
            memory,
            refusing: Arc::new(Semaphore::new(MAX_REFUSALS_DRAINING)),
            last_refusal_log: Mutex::new(None),
        }
    }

    /// The address it listens on (useful after binding port 0).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// A live view of the consumer's counters and stages.
    pub fn stats(&self) -> Stats {
        self.stats.clone()
    }

    /// Waits for the next connection and starts reading it.
    ///
    /// The returned stream yields its frames in order; it is as fast as it is polled (no
    /// [`SlowDown`](crate::SlowDown) applies: that belongs to [`Consumer::serve`]).
    pub async fn accept<M: Mode>(&self, mode: M) -> io::Result<Connection<M>> {
        self.accept_shared(Arc::new(mode)).await
    }

    async fn accept_shared<M: Mode>(&self, mode: Arc<M>) -> io::Result<Connection<M>> {
        let (stream, peer) = loop {
            let (stream, peer) = self.listener.accept().await?;
            if self.stats.open_connections() < self.config.max_open_connections as u64 {
                break (stream, peer);
            }
            self.refuse(stream, peer);
        };
        if let Err(e) = self.config.socket.apply_connected(&stream) {
            tracing::debug!(%peer, "socket options not applied: {e}");
        }
        let stream = Arc::new(stream);
        self.sockets.register(&stream);
        let (tx, rx) = queue::channel(self.config.queue, self.stats.queue_gauge().clone());
        let config = ReaderConfig {
            codec: self.config.codec,
            read_chunk: self.config.read_chunk,
            spare_bytes: self.config.get_queue_limits().get_max_bytes(),
            drain_timeout: self.config.drain_timeout,
            idle_timeout: self.config.idle_timeout,
            frame_timeout: self.config.frame_timeout,
        };
        let reader = tokio::spawn(read_frames(
            stream,
            peer,
            tx,
            config,
            self.stats.clone(),
            self.memory.clone(),
        ));
        Ok(Connection::new(peer, rx, mode, self.stats.clone(), reader))
    }

    /// Refuses a connection over `max_open_connections` (SPEC §7.6): writes a `connection_limit`
    /// notice, closes our direction, and lets the producer read it before the socket is dropped.
    /// Never waits: the notice goes into the new socket's empty send buffer.
    fn refuse(&self, stream: TcpStream, peer: SocketAddr) {
        self.stats.add_refused();
        let err = Error::ConnectionLimit {
            peer,
            limit: self.config.max_open_connections,
        };
        let now = Instant::now();
        let mut last = self
            .last_refusal_log
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if last.is_none_or(|at| now.duration_since(at) >= Duration::from_secs(1)) {
            *last = Some(now);
            let refused = self.stats.refused();
            tracing::warn!(%peer, refused_so_far = refused, "{err}");
        } else {
            tracing::debug!(%peer, "{err}");
        }
        drop(last);
        let _ = stream.try_write(&err.notice().to_frame());
        let _ = socket2::SockRef::from(&stream).shutdown(Shutdown::Write);
        // Closing with unread input would reset the connection and could discard the notice: keep
        // a bounded number open until their producers close or the drain timeout passes.
        if let Ok(permit) = self.refusing.clone().try_acquire_owned() {
            let timeout = self.config.drain_timeout;
            tokio::spawn(async move {
                drain(&stream, timeout).await;
                drop(permit);
            });
        }
    }

    /// Serves connections until [`Builder::max_connections`] have been accepted and have ended (or
    /// forever): each connection's frames are decoded by `mode` and passed, in order, to `handler`,
    /// slowed down as configured. Connections are served concurrently, each in its own task.
    ///
    /// Errors are logged with `tracing` (with the producer's address) and counted; a fatal one ends
    /// only its connection.
    pub async fn serve<M, F, Fut>(self, mode: M, handler: F) -> Report
    where
        M: Mode,
        F: Fn(Delivery<M::Item>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.serve_until(mode, handler, std::future::pending())
            .await
    }

    /// Like [`Consumer::serve`], and also stops when `shutdown` completes: no more connections are
    /// accepted and those open are closed at once (their frames not yet handled are dropped, which the
    /// report shows).
    pub async fn serve_until<M, F, Fut, S>(self, mode: M, handler: F, shutdown: S) -> Report
    where
        M: Mode,
        F: Fn(Delivery<M::Item>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
        S: Future<Output = ()>,
    {
        let mode = Arc::new(mode);
        let handler = Arc::new(handler);
        let mut tasks = JoinSet::new();
        let mut reports = Vec::new();
        let mut accepted = 0u64;
        let mut shutdown = std::pin::pin!(shutdown);
        loop {
            let accepting = self.config.max_connections.is_none_or(|n| accepted < n);
            if !accepting && tasks.is_empty() {
                break;
            }
            tokio::select! {
                conn = self.accept_shared(mode.clone()), if accepting => match conn {
                    Ok(conn) => {
                        accepted += 1;
                        tracing::info!(peer = %conn.peer_addr(), "connection accepted");
                        let seed = self.seeds.fetch_add(0x9E37_79B9_7F4A_7C15, Relaxed);
                        tasks.spawn(serve_connection(conn, handler.clone(), self.config, self.stats.clone(), seed));
                    }
                    Err(e) => {
                        // Out of file descriptors and the like: wait a little rather than spin.
                        tracing::warn!("accept failed: {e}");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    }
                },
                Some(done) = tasks.join_next(), if !tasks.is_empty() => {
                    if let Ok(report) = done {
                        reports.push(report);
                    }
                }
                () = &mut shutdown => {
                    tasks.abort_all();
                    while let Some(done) = tasks.join_next().await {
                        if let Ok(report) = done {
                            reports.push(report);
                        }
                    }
                    break;
                }
            }
        }
        Report {
            snapshot: self.stats.snapshot(),
            connections: reports,
        }
    }
}

/// Hands one connection's frames to the handler, in order, at the configured pace.
async fn serve_connection<M, F, Fut>(
    mut conn: Connection<M>,
    handler: Arc<F>,
    config: Builder,
    stats: Stats,
    seed: u64,
) -> ConnectionReport
where
    M: Mode,
    F: Fn(Delivery<M::Item>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let peer = conn.peer_addr();
    let started = Instant::now();
    let mut pacer = Pacer::new(config.slow, seed);
    let mut report = ConnectionReport {
        peer,
        frames: 0,
        bytes: 0,
        errors: 0,
        secs: 0.0,
        error: None,
    };
    let handling = stats.handling_gauge().clone();
    while let Some(next) = conn.next().await {
        match next {
            Ok(delivery) => {
                let len = delivery.wire_bytes;
                handling.add(len);
                stats.add_slowed(pacer.before(len).await);
                handler(delivery).await;
                handling.remove(len);
                report.frames += 1;
                report.bytes += len as u64;
            }
            Err(e) if e.is_fatal() => {
                report.errors += 1;
                tracing::warn!(%peer, frames = report.frames, "closing connection: {e}");
                report.error = Some(e.to_string());
            }
            Err(e) => {
                report.errors += 1;
                if report.errors == 1 {
                    tracing::warn!(%peer, "frame dropped, connection goes on: {e}");
                } else {
                    tracing::debug!(%peer, "frame dropped, connection goes on: {e}");
                }
            }
        }
    }
    report.secs = started.elapsed().as_secs_f64();
    tracing::info!(
        %peer,
        frames = report.frames,
        bytes = report.bytes,
        errors = report.errors,
        "connection ended"
    );
    report
}
