//! Consumer settings, every one with its default and the memory it bounds (SPEC §7.1).

use std::fmt;
use std::time::Duration;

use framepipe_codec::limits::HEADER_LEN;
use framepipe_codec::OversizePolicy;
use framepipe_flow::queue::QueueLimits;
use framepipe_flow::socket::{self, SocketOptions};
use framepipe_flow::MemoryPool;
use tokio::net::ToSocketAddrs;

use crate::{Consumer, Error, SlowDown};

/// Default size of the blocks the socket is read into: 256 KiB (SPEC §7.1.5).
pub const DEFAULT_READ_CHUNK: usize = 256 * 1024;
/// Default time a connection closed on an error keeps discarding input so the producer can read
/// the rejection notice: 2 s (SPEC §6.3).
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(2);
/// Default interval at which the stages are sampled for the in-flight peak: 10 ms (SPEC §5.3).
pub const DEFAULT_SAMPLE_INTERVAL: Duration = Duration::from_millis(10);

/// Default time a connection may stay silent between frames before it is closed: 120 s (SPEC §7.6).
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(120);
/// Default time a frame may take to arrive once its first byte has: 30 s (SPEC §7.6).
pub const DEFAULT_FRAME_TIMEOUT: Duration = Duration::from_secs(30);
/// Default most connections served at once; more are refused with a notice: 256 (SPEC §7.6).
pub const DEFAULT_MAX_OPEN_CONNECTIONS: usize = 256;
/// Default cap on the bytes buffered across all connections: 128 MiB (SPEC §7.6).
pub const DEFAULT_MEMORY_LIMIT: usize = 128 * 1024 * 1024;

/// Settings for a consumer. `Default` gives the values of SPEC §7.1.
///
/// ```no_run
/// # async fn f() -> Result<(), framepipe_consumer::Error> {
/// use std::time::Duration;
/// use framepipe_consumer::{Consumer, Raw, SlowDown};
///
/// let consumer = Consumer::builder()
///     .budget(8 * 1024 * 1024)
///     .slow_down(SlowDown::none().delay(Duration::from_millis(2)))
///     .max_connections(Some(1))
///     .bind("127.0.0.1:7000")
///     .await?;
/// let report = consumer.serve(Raw, |frame| async move {
///     println!("{} bytes from {}", frame.item.len(), frame.peer);
/// }).await;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Builder {
    pub(crate) codec: framepipe_codec::Builder,
    pub(crate) queue: QueueLimits,
    pub(crate) socket: SocketOptions,
    pub(crate) slow: SlowDown,
    pub(crate) max_connections: Option<u64>,
    pub(crate) read_chunk: usize,
    pub(crate) drain_timeout: Duration,
    pub(crate) sample_interval: Duration,
    pub(crate) idle_timeout: Option<Duration>,
    pub(crate) frame_timeout: Option<Duration>,
    pub(crate) max_open_connections: usize,
    pub(crate) memory_limit: usize,
}

impl Default for Builder {
    fn default() -> Self {
        Builder {
            codec: framepipe_codec::Builder::default(),
            queue: QueueLimits::default(),
            socket: SocketOptions::default(),
            slow: SlowDown::default(),
            max_connections: None,
            read_chunk: DEFAULT_READ_CHUNK,
            drain_timeout: DEFAULT_DRAIN_TIMEOUT,
            sample_interval: DEFAULT_SAMPLE_INTERVAL,
            idle_timeout: Some(DEFAULT_IDLE_TIMEOUT),
            frame_timeout: Some(DEFAULT_FRAME_TIMEOUT),
            max_open_connections: DEFAULT_MAX_OPEN_CONNECTIONS,
            memory_limit: DEFAULT_MEMORY_LIMIT,
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
    pub fn max_frame_length(&mut self, bytes: u32) -> &mut Self {
        self.codec.max_frame_length(bytes);
        self
    }

    /// What to do with a frame over `max_frame_length` (default [`OversizePolicy::Close`]: send a
    /// rejection notice and close the connection; `Skip` discards it unbuffered and goes on).
    pub fn oversize_policy(&mut self, policy: OversizePolicy) -> &mut Self {
        self.codec.oversize_policy(policy);
        self
    }

    /// All codec settings at once (SPEC §2).
    pub fn codec(&mut self, codec: framepipe_codec::Builder) -> &mut Self {
        self.codec = codec;
        self
    }

    /// Byte budget of each connection's queue between the reader and the handler (default 4 MiB).
    ///
    /// The memory it bounds: frames read and not yet handled, per connection. When it is full the
    /// connection's socket is not read, and the producer is slowed through TCP.
    pub fn budget(&mut self, bytes: usize) -> &mut Self {
        self.queue = self.queue.max_bytes(bytes);
        self
    }

    /// Both limits of each connection's queue (default 4 MiB and 1,024 frames).
    pub fn queue_limits(&mut self, limits: QueueLimits) -> &mut Self {
        self.queue = limits;
        self
    }

    /// TCP options for accepted connections (default: [`SocketOptions::default`]).
    pub fn socket_options(&mut self, options: SocketOptions) -> &mut Self {
        self.socket = options;
        self
    }

    /// Slow the handler down deliberately (default: full speed).
    pub fn slow_down(&mut self, slow: SlowDown) -> &mut Self {
        self.slow = slow;
        self
    }

    /// Accept this many connections, then stop accepting and return from
    /// [`Consumer::serve`] once they have all ended (default `None`: serve until shut down).
    pub fn max_connections(&mut self, n: Option<u64>) -> &mut Self {
        self.max_connections = n;
        self
    }

    /// Size of the blocks the socket is read into (default 256 KiB; at least 32 KiB).
    ///
    /// Frames are split off a block without copying, and a block is reused once every frame in it has
    /// been dropped (SPEC §7.1.5). The memory it bounds: what is read ahead of the frame being
    /// assembled (one block), and up to 4 retired buffers (at most `budget` bytes) kept for reuse per
    /// connection. Smaller blocks mean more partial frames copied between blocks and more read calls.
    pub fn read_chunk(&mut self, bytes: usize) -> &mut Self {
        self.read_chunk = bytes.max(4 * framepipe_codec::limits::RESERVE_STEP);
        self
    }

    /// How long a connection closed on an error keeps discarding input, so the producer can read the
    /// rejection notice before the connection is reset (default 2 s).
    pub fn drain_timeout(&mut self, timeout: Duration) -> &mut Self {
        self.drain_timeout = timeout;
        self
    }

    /// How long a connection may send nothing while no frame is in progress before it is closed
    /// with [`Error::IdleTimeout`] (default 120 s; `None`: never). A peer that connects and never
    /// sends, or vanishes without closing, holds a connection slot and its socket until then.
    ///
    /// Time the reader spends not reading because the connection's queue is full (backpressure)
    /// does not count.
    pub fn idle_timeout(&mut self, timeout: Option<Duration>) -> &mut Self {
        self.idle_timeout = timeout;
        self
    }

    /// How long a frame may take to arrive once its first byte has (default 30 s; `None`: no
    /// limit). A frame still incomplete then closes the connection with [`Error::FrameTimeout`]:
    /// this bounds how long a peer that stops or trickles mid-frame holds the frame's memory. At the
    /// default a 16 MiB frame needs at least 0.56 MB/s; raise it for large frames over slow links.
    ///
    /// Time the reader spends waiting for room in the queue or in the memory limit does not count.
    pub fn frame_timeout(&mut self, timeout: Option<Duration>) -> &mut Self {
        self.frame_timeout = timeout;
        self
    }

    /// Most connections served at once (default 256; at least 1). A connection beyond it is
    /// accepted, sent a `connection_limit` notice (SPEC §6.3) and closed, and
    /// [`Error::ConnectionLimit`] is logged; those open are not affected.
    ///
    /// The memory it bounds: per connection a task, a socket (its kernel buffers, §5.2) and, once
    /// data arrives, a read block (`read_chunk`). Each also needs a file descriptor: keep it well
    /// under the process's `RLIMIT_NOFILE`.
    pub fn max_open_connections(&mut self, n: usize) -> &mut Self {
        self.max_open_connections = n.max(1);
        self
    }

    /// Cap on the bytes buffered across all connections together: read and not yet framed, queued,
    /// or being handled (default 128 MiB; at least `max_frame_length` + 4, checked by `bind`).
    ///
    /// When it is reached, readers wait (and so stop reading their sockets, which slows their
    /// producers through TCP) instead of allocating. A reader reserves a whole frame once its header
    /// has arrived, so a frame that began always completes; reading ahead beyond the frame in
    /// progress is only done while `max_frame_length` + 4 bytes would remain free (SPEC §7.6).
    /// Not counted: the unfilled part of each connection's current read block (at most `read_chunk`
    /// each) and the allocator's own overhead.
    pub fn memory_limit(&mut self, bytes: usize) -> &mut Self {
        self.memory_limit = bytes;
        self
    }

    /// The cap on bytes buffered across all connections.
    pub fn get_memory_limit(&self) -> usize {
        self.memory_limit
    }

    /// How often the stages are sampled for the in-flight peak (default 10 ms).
    pub fn sample_interval(&mut self, interval: Duration) -> &mut Self {
        self.sample_interval = interval.max(Duration::from_millis(1));
        self
    }

    /// The codec settings.
    pub fn get_codec(&self) -> framepipe_codec::Builder {
        self.codec
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

    /// Starts listening on `addr` with these settings.
    ///
    /// Must be called inside a Tokio runtime: it starts the task that samples the stages.
    pub async fn bind<A>(&self, addr: A) -> Result<Consumer, Error>
    where
        A: ToSocketAddrs + fmt::Display,
    {
        let frame = u64::from(self.codec.get_max_frame_length()) + HEADER_LEN as u64;
        if (self.memory_limit as u64) < frame {
            return Err(Error::Config(format!(
                "memory_limit {} is smaller than one frame of max_frame_length {} plus its \
                 4-byte header, so such a frame could never be read; raise memory_limit to at \
                 least {frame} or lower max_frame_length",
                self.memory_limit,
                self.codec.get_max_frame_length()
            )));
        }
        if self.memory_limit > MemoryPool::MAX_LIMIT {
            return Err(Error::Config(format!(
                "memory_limit {} is over the largest supported, {}",
                self.memory_limit,
                MemoryPool::MAX_LIMIT
            )));
        }
        let shown = addr.to_string();
        let listener = socket::bind(addr, &self.socket)
            .await
            .map_err(|source| Error::Bind {
                addr: shown,
                source,
            })?;
        Ok(Consumer::new(listener, *self))
    }
}
