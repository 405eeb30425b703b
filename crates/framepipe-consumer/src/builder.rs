//! Consumer settings, every one with its default and the memory it bounds (SPEC §7.1).

use std::fmt;
use std::path::Path;
use std::time::Duration;

use framepipe_codec::limits::HEADER_LEN;
use framepipe_codec::OversizePolicy;
use framepipe_flow::queue::QueueLimits;
use framepipe_flow::socket::{self, SocketOptions};
use framepipe_flow::{MemoryPool, DEFAULT_SAMPLE_INTERVAL};
use framepipe_proto::consumer::ConsumerConfig;

use crate::sessions::{DEFAULT_MAX_SESSIONS, DEFAULT_SESSION_EXPIRY};
use tokio::net::{TcpListener, ToSocketAddrs, UnixListener};

use crate::decode::MAX_DECODE_WORKERS;
use crate::listener::Listener;
use crate::{Consumer, Error, OnHandlerError, SlowDown};

pub use framepipe_proto::consumer::{
    DEFAULT_DRAIN_TIMEOUT, DEFAULT_FRAME_TIMEOUT, DEFAULT_IDLE_TIMEOUT, DEFAULT_READ_CHUNK,
};

/// Default most connections served at once; more are refused with a notice: 256 (SPEC §7.6).
pub const DEFAULT_MAX_OPEN_CONNECTIONS: usize = 256;
/// Default cap on the bytes buffered across all connections: 128 MiB (SPEC §7.6).
pub const DEFAULT_MEMORY_LIMIT: usize = 128 * 1024 * 1024;
/// Default time a graceful shutdown may take before it is forced: 30 s (SPEC §8.5).
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(30);

/// Settings for a consumer. `Default` gives the values of SPEC §7.1. Setters take and return the
/// builder by value, so a builder can be kept in a variable and used for any number of consumers.
///
/// ```no_run
/// # async fn f() -> Result<(), framepipe_consumer::Error> {
/// use std::time::Duration;
/// use framepipe_consumer::{Consumer, Raw, SlowDown};
///
/// let settings = Consumer::builder()
///     .budget(8 * 1024 * 1024)
///     .slow_down(SlowDown::none().delay(Duration::from_millis(2)))
///     .max_connections(Some(1));
/// let consumer = settings.bind("127.0.0.1:7000").await?;
/// let report = consumer.serve(Raw, |frame: framepipe_consumer::Delivery<bytes::Bytes>| async move {
///     println!("{} bytes from {}", frame.item.len(), frame.peer());
/// }).await;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Builder {
    pub(crate) core: ConsumerConfig,
    pub(crate) queue: QueueLimits,
    pub(crate) socket: SocketOptions,
    pub(crate) slow: SlowDown,
    pub(crate) max_connections: Option<u64>,
    pub(crate) sample_interval: Duration,
    pub(crate) max_open_connections: usize,
    pub(crate) memory_limit: usize,
    pub(crate) on_handler_error: OnHandlerError,
    pub(crate) shutdown_timeout: Duration,
    pub(crate) max_sessions: usize,
    pub(crate) session_expiry: Duration,
    pub(crate) decode_workers: usize,
}

impl Default for Builder {
    fn default() -> Self {
        let queue = QueueLimits::default();
        Builder {
            core: ConsumerConfig {
                spare_bytes: queue.get_max_bytes(),
                ..ConsumerConfig::default()
            },
            queue,
            socket: SocketOptions::default(),
            slow: SlowDown::default(),
            max_connections: None,
            sample_interval: DEFAULT_SAMPLE_INTERVAL,
            max_open_connections: DEFAULT_MAX_OPEN_CONNECTIONS,
            memory_limit: DEFAULT_MEMORY_LIMIT,
            on_handler_error: OnHandlerError::default(),
            shutdown_timeout: DEFAULT_SHUTDOWN_TIMEOUT,
            max_sessions: DEFAULT_MAX_SESSIONS,
            session_expiry: DEFAULT_SESSION_EXPIRY,
            decode_workers: 1,
        }
    }
}

impl Builder {
    /// Settings with every default.
    pub fn new() -> Self {
        Self::default()
    }

    /// Largest frame body accepted (default 16 MiB, SPEC §2.1). Checked from the header, before
    /// anything is allocated for the body.
    pub fn max_frame_length(mut self, bytes: u32) -> Self {
        self.core.codec = self.core.codec.max_frame_length(bytes);
        self
    }

    /// What to do with a frame over `max_frame_length` (default [`OversizePolicy::Close`]: send a
    /// rejection notice and close the connection; `Skip` discards it unbuffered and goes on).
    pub fn oversize_policy(mut self, policy: OversizePolicy) -> Self {
        self.core.codec = self.core.codec.oversize_policy(policy);
        self
    }

    /// All codec settings at once (SPEC §2).
    pub fn codec(mut self, codec: framepipe_codec::Builder) -> Self {
        self.core.codec = codec;
        self
    }

    /// Whether a connection that opens with a hello is served as a session (default `true`, SPEC
    /// §9.2, §10): acks, resume after a connection failure, duplicates dropped. Plain streams are
    /// served either way, on the same port. Sessions need `max_frame_length` under 2^31 (the
    /// builder refuses the combination, SPEC §9.2.3).
    pub fn sessions(mut self, on: bool) -> Self {
        self.core.sessions = on.then(|| {
            self.core
                .sessions
                .unwrap_or_else(framepipe_proto::session::default_pacing)
        });
        self
    }

    /// The pacing this consumer proposes for acks and heartbeats where a producer's hello leaves
    /// the choice to it (default: acks every 32 frames or 20 ms, heartbeats after 5 s of silence;
    /// SPEC §10.4). Turns sessions on.
    pub fn session_pacing(mut self, pacing: framepipe_codec::session::Pacing) -> Self {
        self.core.sessions = Some(pacing);
        self
    }

    /// Most sessions remembered at once (default 1,024, SPEC §10.8). At the bound a new session
    /// takes the place of the one without a connection for longest; if every one has a connection,
    /// the new one is refused with a `session_limit` notice. Each costs a few dozen bytes.
    pub fn max_sessions(mut self, sessions: usize) -> Self {
        self.max_sessions = sessions.max(1);
        self
    }

    /// How long a session without a connection is remembered (default 10 minutes, SPEC §10.8);
    /// a later hello for a forgotten session resumes where its producer says (at-least-once).
    pub fn session_expiry(mut self, expiry: Duration) -> Self {
        self.session_expiry = expiry;
        self
    }

    /// Byte budget of each connection's queue between the reader and the handler (default 512 KiB).
    ///
    /// The memory it bounds: frames read and not yet taken by the handler, per connection. When it
    /// is full the connection's transport is not read, and the producer is slowed through TCP.
    pub fn budget(mut self, bytes: usize) -> Self {
        self.queue = self.queue.max_bytes(bytes);
        self.core.spare_bytes = self.queue.get_max_bytes();
        self
    }

    /// Both limits of each connection's queue (default 512 KiB and 1,024 frames).
    pub fn queue_limits(mut self, limits: QueueLimits) -> Self {
        self.queue = limits;
        self.core.spare_bytes = limits.get_max_bytes();
        self
    }

    /// TCP options for accepted connections (default: [`SocketOptions::default`]).
    pub fn socket_options(mut self, options: SocketOptions) -> Self {
        self.socket = options;
        self
    }

    /// Slow the handler down deliberately (default: full speed).
    pub fn slow_down(mut self, slow: SlowDown) -> Self {
        self.slow = slow;
        self
    }

    /// Accept this many connections, then stop accepting and return from
    /// [`Consumer::serve`] once they have all ended (default `None`: serve until shut down).
    pub fn max_connections(mut self, n: Option<u64>) -> Self {
        self.max_connections = n;
        self
    }

    /// Size of the blocks the transport is read into (default 256 KiB; at least 32 KiB).
    ///
    /// Frames are split off a block without copying, and a block is reused once every frame in it
    /// has been dropped (SPEC §7.1.5). The memory it bounds: what is read ahead of the frame being
    /// assembled (one block), and up to 4 retired buffers (at most `budget` bytes) kept for reuse
    /// per connection. Smaller blocks mean more partial frames copied between blocks and more reads.
    pub fn read_chunk(mut self, bytes: usize) -> Self {
        self.core.read_chunk = bytes.max(4 * framepipe_codec::limits::RESERVE_STEP);
        self
    }

    /// How long a connection closed with a notice keeps discarding input, so the producer can read
    /// the notice before the connection is reset (default 2 s).
    pub fn drain_timeout(mut self, timeout: Duration) -> Self {
        self.core.drain_timeout = timeout;
        self
    }

    /// How long a connection may send nothing while no frame is in progress before it is closed
    /// with [`Error::IdleTimeout`] (default 120 s; `None`: never). A peer that connects and never
    /// sends, or vanishes without closing, holds a connection slot and its socket until then.
    ///
    /// Time the reader spends not reading because the connection's queue is full (backpressure)
    /// does not count.
    pub fn idle_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.core.idle_timeout = timeout;
        self
    }

    /// How long a frame may take to arrive once its first byte has (default 30 s; `None`: no
    /// limit). A frame still incomplete then closes the connection with [`Error::FrameTimeout`]:
    /// this bounds how long a peer that stops or trickles mid-frame holds the frame's memory. At the
    /// default a 16 MiB frame needs at least 0.56 MB/s; raise it for large frames over slow links.
    ///
    /// Time the reader spends waiting for room in the memory limit does not count.
    pub fn frame_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.core.frame_timeout = timeout;
        self
    }

    /// Most connections served at once (default 256; at least 1). A connection beyond it is
    /// accepted, sent a `connection_limit` notice (SPEC §6.3) and closed, and
    /// [`Error::ConnectionLimit`] is logged; those open are not affected.
    ///
    /// The memory it bounds: per connection a task, a socket (its kernel buffers, §5.2) and, once
    /// data arrives, a read block (`read_chunk`). Each also needs a file descriptor: keep it well
    /// under the process's `RLIMIT_NOFILE`.
    pub fn max_open_connections(mut self, n: usize) -> Self {
        self.max_open_connections = n.max(1);
        self
    }

    /// Cap on the bytes buffered across all connections together: read and not yet framed, queued,
    /// or held by a [`Delivery`](crate::Delivery) the application has not dropped (default 128 MiB;
    /// at least `max_frame_length` + 4, checked when binding).
    ///
    /// When it is reached, readers wait (and so stop reading their transports, which slows their
    /// producers) instead of allocating. A reader reserves a whole frame once its header has
    /// arrived, so a frame that began always completes; reading ahead beyond the frame in progress
    /// is only done while `max_frame_length` + 4 bytes would remain free (SPEC §7.6). Not counted:
    /// the unfilled part of each connection's current read block (at most `read_chunk` each) and
    /// the allocator's own overhead.
    pub fn memory_limit(mut self, bytes: usize) -> Self {
        self.memory_limit = bytes;
        self
    }

    /// What a handler's error does (default [`OnHandlerError::Close`]: the connection is closed
    /// with a `handler_failed` notice naming the frame; SPEC §7.7).
    pub fn on_handler_error(mut self, policy: OnHandlerError) -> Self {
        self.on_handler_error = policy;
        self
    }

    /// How long a graceful shutdown may take before it is forced (default 30 s, SPEC §8.5): then
    /// handlers still running are dropped and frames not yet handled are counted as unhandled.
    pub fn shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.shutdown_timeout = timeout;
        self
    }

    /// Threads that decode frame bodies (default 1: each connection decodes in the task that takes
    /// its frames, as the handler asks for them; clamped to 1 ..= [`MAX_DECODE_WORKERS`]; SPEC §7.8).
    ///
    /// With `k` > 1 the consumer starts `k` − 1 helper threads (`framepipe-decode-N`), shared by all
    /// its connections; each connection's task is the `k`-th worker. A connection takes up to 2 × `k`
    /// frames from its queue ahead of the handler, has them decoded at once, and hands them out in
    /// wire order, errors in their place: the handler sees exactly what it would with 1.
    /// [`Raw`](crate::Raw) frames are never sent to the helpers.
    ///
    /// Memory: frames taken ahead stay in their connection's `budget` and in the memory limit until
    /// handed out, so the wire bytes buffered are bounded exactly as with 1. On top, up to 2 × `k`
    /// decoded items per connection wait their turn, against 1.
    ///
    /// Cost: a hand-off to a helper and back per frame (a few microseconds). Worth it for typed
    /// frames of kilobytes or more when a core is free, and with a thread-caching global allocator
    /// (mimalloc, jemalloc): items built on a helper are dropped on the handler's thread, which
    /// glibc's malloc serves slowly enough to cancel the gain (measured in BENCHMARKS.md).
    pub fn decode_workers(mut self, k: usize) -> Self {
        self.decode_workers = k.clamp(1, MAX_DECODE_WORKERS);
        self
    }

    /// How often the stages are sampled for the in-flight peak (default 10 ms).
    pub fn sample_interval(mut self, interval: Duration) -> Self {
        self.sample_interval = interval.max(Duration::from_millis(1));
        self
    }

    /// Threads that decode frame bodies.
    pub fn get_decode_workers(&self) -> usize {
        self.decode_workers
    }

    /// The cap on bytes buffered across all connections.
    pub fn get_memory_limit(&self) -> usize {
        self.memory_limit
    }

    /// The codec settings.
    pub fn get_codec(&self) -> framepipe_codec::Builder {
        self.core.codec
    }

    /// The per-connection queue limits.
    pub fn get_queue_limits(&self) -> QueueLimits {
        self.queue
    }

    /// The socket options.
    pub fn get_socket_options(&self) -> SocketOptions {
        self.socket
    }

    /// The slow-down settings.
    pub fn get_slow_down(&self) -> SlowDown {
        self.slow
    }

    /// Starts listening on TCP `addr` with these settings.
    ///
    /// Must be called inside a Tokio runtime: it starts the task that samples the stages.
    pub async fn bind<A>(self, addr: A) -> Result<Consumer<TcpListener>, Error>
    where
        A: ToSocketAddrs + fmt::Display,
    {
        self.check()?;
        let listener = self.bind_tcp(addr).await?;
        Consumer::new(listener, self)
    }

    /// A TCP listener on `addr` with the socket options.
    async fn bind_tcp<A>(&self, addr: A) -> Result<TcpListener, Error>
    where
        A: ToSocketAddrs + fmt::Display,
    {
        let shown = addr.to_string();
        socket::bind(addr, &self.socket)
            .await
            .map_err(|source| Error::Bind {
                addr: shown,
                source,
            })
    }

    /// Starts listening on TCP `addr` for producers over TLS (SPEC §12): each connection's
    /// handshake, within the `TlsServer`'s deadline, before it is accepted; a producer without TLS
    /// is told so with a `tls_required` notice. Otherwise as [`bind`](Self::bind).
    ///
    /// Memory: rustls's buffers besides the consumer's (SPEC §5.4): up to 16 KiB of plaintext and
    /// one TLS record per direction and connection, handshakes in progress included.
    #[cfg(feature = "tls")]
    pub async fn bind_tls<A>(
        self,
        addr: A,
        tls: crate::tls::TlsServer,
    ) -> Result<Consumer<crate::tls::TlsListener>, Error>
    where
        A: ToSocketAddrs + fmt::Display,
    {
        self.check()?;
        let listener = self.bind_tcp(addr).await?;
        Consumer::new(tls.listener(listener), self)
    }

    /// Starts listening on the Unix domain socket at `path` (SPEC §5.2). A file already at `path`
    /// is an error: remove a stale socket file yourself if that is what it is.
    pub async fn bind_unix(self, path: impl AsRef<Path>) -> Result<Consumer<UnixListener>, Error> {
        self.check()?;
        let path = path.as_ref();
        let listener = socket::bind_unix(path, &self.socket).map_err(|source| Error::Bind {
            addr: format!("unix:{}", path.display()),
            source,
        })?;
        Consumer::new(listener, self)
    }

    /// A consumer on any [`Listener`]: for transports other than TCP and Unix sockets, and for
    /// in-memory pipes in tests ([`Incoming`](crate::Incoming)).
    pub fn listener<L: Listener>(self, listener: L) -> Result<Consumer<L>, Error> {
        self.check()?;
        Consumer::new(listener, self)
    }

    /// The settings cannot work together: `memory_limit` under one frame, or over the largest.
    fn check(&self) -> Result<(), Error> {
        let max = self.core.codec.get_max_frame_length();
        if self.core.sessions.is_some() && max > framepipe_codec::limits::SESSION_MAX_FRAME_LENGTH {
            return Err(Error::Config(format!(
                "max_frame_length {max} is 2^31 or more, so a plain stream's first byte could be \
                 0x81, a session's hello: turn sessions off (`sessions(false)`) or lower \
                 max_frame_length (SPEC §9.2.3)"
            )));
        }
        let frame = u64::from(max) + HEADER_LEN as u64;
        if (self.memory_limit as u64) < frame {
            return Err(Error::Config(format!(
                "memory_limit {} is smaller than one frame of max_frame_length {max} plus its \
                 4-byte header, so such a frame could never be read; raise memory_limit to at \
                 least {frame} or lower max_frame_length",
                self.memory_limit
            )));
        }
        if self.memory_limit > MemoryPool::MAX_LIMIT {
            return Err(Error::Config(format!(
                "memory_limit {} is over the largest supported, {}",
                self.memory_limit,
                MemoryPool::MAX_LIMIT
            )));
        }
        Ok(())
    }
}
