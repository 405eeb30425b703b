//! Consumer settings, every one with its default and the memory it bounds (SPEC §7.1).

use std::fmt;
use std::time::Duration;

use framepipe_codec::OversizePolicy;
use framepipe_flow::queue::QueueLimits;
use framepipe_flow::socket::{self, SocketOptions};
use tokio::net::ToSocketAddrs;

use crate::{Consumer, Error, SlowDown};

/// Default size of the blocks the socket is read into: 256 KiB (SPEC §7.1.5).
pub const DEFAULT_READ_CHUNK: usize = 256 * 1024;
/// Default time a connection closed on an error keeps discarding input so the producer can read
/// the rejection notice: 2 s (SPEC §6.3).
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(2);
/// Default interval at which the stages are sampled for the in-flight peak: 10 ms (SPEC §5.3).
pub const DEFAULT_SAMPLE_INTERVAL: Duration = Duration::from_millis(10);

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
