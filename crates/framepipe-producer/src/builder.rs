//! Producer settings, every one with its default and the memory it bounds (SPEC §6.1).

use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use framepipe_codec::limits::DEFAULT_MAX_FRAME_LENGTH;
use framepipe_flow::queue::QueueLimits;
use framepipe_flow::socket::{self, SocketOptions};
use framepipe_flow::{PeerAddr, Shared, SocketProbe, DEFAULT_SAMPLE_INTERVAL};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpStream, ToSocketAddrs, UnixStream};

use crate::{Batching, Connection, Error};

pub use framepipe_proto::producer::{
    DEFAULT_CLOSE_TIMEOUT, DEFAULT_STALL_TIMEOUT, DEFAULT_WRITE_BATCH_BYTES,
};

/// Settings for producer connections. `Default` gives the values of SPEC §6.1. Setters take and
/// return the builder by value, so a builder can be kept in a variable and used for any number of
/// connections.
///
/// ```no_run
/// # async fn f() -> Result<(), framepipe_producer::Error> {
/// use framepipe_producer::Producer;
///
/// let settings = Producer::builder().budget(8 * 1024 * 1024);
/// let conn = settings.connect("127.0.0.1:7000").await?;
/// let report = conn.send_json(futures::stream::iter(vec![vec![1, 2, 3]; 10])).await?;
/// println!("{} frames", report.snapshot.frames_written);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Builder {
    pub(crate) queue: QueueLimits,
    pub(crate) max_frame_length: u32,
    pub(crate) write_batch_bytes: usize,
    pub(crate) socket: SocketOptions,
    pub(crate) close_timeout: Duration,
    pub(crate) stall_timeout: Option<Duration>,
    pub(crate) sample_interval: Duration,
    pub(crate) batching: Option<Batching>,
}

impl Default for Builder {
    fn default() -> Self {
        Builder {
            queue: QueueLimits::default(),
            max_frame_length: DEFAULT_MAX_FRAME_LENGTH,
            write_batch_bytes: DEFAULT_WRITE_BATCH_BYTES,
            socket: SocketOptions::default(),
            close_timeout: DEFAULT_CLOSE_TIMEOUT,
            stall_timeout: Some(DEFAULT_STALL_TIMEOUT),
            sample_interval: DEFAULT_SAMPLE_INTERVAL,
            batching: None,
        }
    }
}

impl Builder {
    /// Settings with every default.
    pub fn new() -> Self {
        Self::default()
    }

    /// Byte budget of the queue between the application and the writer (default 512 KiB).
    ///
    /// The memory it bounds: frames accepted and waiting to be written. When it is full the source
    /// stream is not polled and [`Sender::reserve`](crate::Sender::reserve) waits. A frame larger
    /// than the budget travels alone (SPEC §5.1, §6.7).
    pub fn budget(mut self, bytes: usize) -> Self {
        self.queue = self.queue.max_bytes(bytes);
        self
    }

    /// Both limits of the queue (default 512 KiB and 1,024 frames).
    pub fn queue_limits(mut self, limits: QueueLimits) -> Self {
        self.queue = limits;
        self
    }

    /// Largest frame body this producer sends (default 16 MiB, at most 4 GiB − 1).
    ///
    /// A payload whose body is longer fails with [`Error::Encode`] before anything of it is written.
    /// Set it to the consumer's limit to find out before the consumer does.
    pub fn max_frame_length(mut self, bytes: u32) -> Self {
        self.max_frame_length = bytes;
        self
    }

    /// Most bytes the writer gathers into one vectored write (default 256 KiB; at least 1).
    ///
    /// The memory it bounds: frames taken from the queue and not yet written (one frame, if a frame
    /// is larger). Larger batches mean fewer system calls when frames are small.
    pub fn write_batch_bytes(mut self, bytes: usize) -> Self {
        self.write_batch_bytes = bytes.max(1);
        self
    }

    /// Gather items sent through a [`Sender`](crate::Sender) or a stream into frames that are JSON
    /// arrays, up to a size or a time (SPEC §6.6; default: off, one item per frame).
    pub fn batching(mut self, batching: Option<Batching>) -> Self {
        self.batching = batching;
        self
    }

    /// TCP options (default: [`SocketOptions::default`], 256 KiB send and receive buffers,
    /// `TCP_NODELAY`, 60 s keepalive).
    pub fn socket_options(mut self, options: SocketOptions) -> Self {
        self.socket = options;
        self
    }

    /// How long to wait after the last frame for the consumer to close its end, which confirms it
    /// handled everything (default 30 s). On timeout the report says `confirmed: false`.
    pub fn close_timeout(mut self, timeout: Duration) -> Self {
        self.close_timeout = timeout;
        self
    }

    /// Longest time the consumer may accept no bytes at all while this producer has bytes to write
    /// (default 60 s, [`DEFAULT_STALL_TIMEOUT`]; `None` waits for ever; at least 1 ms).
    ///
    /// What it bounds: the time a connection can hang on a consumer that stopped reading (its TCP
    /// window stays closed), while sending and, after the last frame, while the kernel still holds
    /// bytes the consumer has not acknowledged (read with `SIOCOUTQ`, so on Linux sockets only;
    /// elsewhere `close_timeout` alone bounds that wait). When it runs out the connection is reset
    /// and the producer fails with [`Error::Stalled`]. Memory stays bounded either way (the queue's
    /// budget and the socket buffers); this bounds the time. It never fires while the source simply
    /// has nothing to send, and any progress, however slow, restarts it.
    pub fn stall_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.stall_timeout = timeout.map(|t| t.max(Duration::from_millis(1)));
        self
    }

    /// How often the stages are sampled for the in-flight peak (default 10 ms).
    pub fn sample_interval(mut self, interval: Duration) -> Self {
        self.sample_interval = interval.max(Duration::from_millis(1));
        self
    }

    /// The queue limits.
    pub fn get_queue_limits(&self) -> QueueLimits {
        self.queue
    }

    /// The frame length limit.
    pub fn get_max_frame_length(&self) -> u32 {
        self.max_frame_length
    }

    /// The write batch size.
    pub fn get_write_batch_bytes(&self) -> usize {
        self.write_batch_bytes
    }

    /// The stall timeout (`None`: disabled).
    pub fn get_stall_timeout(&self) -> Option<Duration> {
        self.stall_timeout
    }

    /// The socket options.
    pub fn get_socket_options(&self) -> SocketOptions {
        self.socket
    }

    /// Connects to TCP `addr` with these settings.
    ///
    /// Waits for name resolution and the TCP handshake; fails with [`Error::Connect`]. Must be
    /// called inside a Tokio runtime.
    pub async fn connect<A>(self, addr: A) -> Result<Connection<Shared<TcpStream>>, Error>
    where
        A: ToSocketAddrs + fmt::Display,
    {
        let shown = addr.to_string();
        let connect_error = |source| Error::Connect {
            addr: shown.clone(),
            source,
        };
        let stream = socket::connect(addr, &self.socket).await.map_err(|e| {
            let error = connect_error(e);
            tracing::warn!(addr = %shown, code = error.code(), "{error}");
            crate::metrics::record_error(error.code());
            error
        })?;
        let peer = stream.peer_addr().map_err(connect_error)?;
        tracing::info!(%peer, "connected");
        let io = Shared::new(stream);
        let probe: Arc<dyn SocketProbe> = io.get_ref().clone();
        Ok(Connection::new(io, PeerAddr::Tcp(peer), Some(probe), self))
    }

    /// Connects to the Unix domain socket at `path` (SPEC §5.2).
    pub async fn connect_unix(
        self,
        path: impl AsRef<Path>,
    ) -> Result<Connection<Shared<UnixStream>>, Error> {
        let path = path.as_ref();
        let stream = socket::connect_unix(path, &self.socket)
            .await
            .map_err(|source| Error::Connect {
                addr: format!("unix:{}", path.display()),
                source,
            })?;
        let io = Shared::new(stream);
        let probe: Arc<dyn SocketProbe> = io.get_ref().clone();
        let peer = PeerAddr::Unix(Some(path.to_path_buf()));
        Ok(Connection::new(io, peer, Some(probe), self))
    }

    /// A connection over any transport that is already connected (an in-memory pipe in tests, a
    /// TLS stream, …), to the consumer named `peer`. Its kernel queues are reported as unavailable.
    pub fn on<T>(self, io: T, peer: PeerAddr) -> Connection<T>
    where
        T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        Connection::new(io, peer, None, self)
    }
}

/// Entry point: `Producer::builder()`.
#[derive(Debug, Clone, Copy)]
pub struct Producer;

impl Producer {
    /// Settings with every default; finish with [`Builder::connect`].
    pub fn builder() -> Builder {
        Builder::default()
    }

    /// Connects with every default.
    pub async fn connect<A>(addr: A) -> Result<Connection<Shared<TcpStream>>, Error>
    where
        A: ToSocketAddrs + fmt::Display,
    {
        Builder::default().connect(addr).await
    }
}
