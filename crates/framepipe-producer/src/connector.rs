//! Where a session's connections come from (SPEC §8.1.3, §10): a [`Connect`] opens a new transport
//! for each attempt — TCP, a Unix domain socket, an in-memory pipe, a TLS stream — and the session
//! driver runs the same protocol over whichever it gets.

use std::fmt;
use std::future::Future;
use std::io;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;

use framepipe_flow::socket::{self, SocketOptions};
use framepipe_flow::{PeerAddr, Shared, SocketProbe};
use tokio::io::{AsyncRead, AsyncWrite};

/// A byte stream a session runs over: anything that reads and writes asynchronously.
pub trait Transport: AsyncRead + AsyncWrite + Unpin + Send + 'static {}

impl<T> Transport for T where T: AsyncRead + AsyncWrite + Unpin + Send + 'static {}

/// One connection a [`Connect`] opened: its transport, the consumer's address, and, for sockets
/// whose kernel queues can be read, their probe (SPEC §5.3), which also closes the connection with
/// a reset when the session drops it.
pub struct Link {
    pub(crate) io: Box<dyn Transport>,
    pub(crate) peer: PeerAddr,
    pub(crate) probe: Option<Arc<dyn SocketProbe>>,
}

impl Link {
    /// A connection over `io` to the consumer named `peer`. Its kernel queues are reported as
    /// unavailable, never 0, unless [`with_probe`](Self::with_probe) gives a probe.
    pub fn new(io: impl Transport, peer: PeerAddr) -> Link {
        Link {
            io: Box::new(io),
            peer,
            probe: None,
        }
    }

    /// The probe of the socket under the transport (for a TLS stream, its TCP socket's): the
    /// session then reports the socket's queues and resets the connection when it drops it.
    pub fn with_probe(mut self, probe: Arc<dyn SocketProbe>) -> Link {
        self.probe = Some(probe);
        self
    }

    /// The consumer's address.
    pub fn peer(&self) -> &PeerAddr {
        &self.peer
    }
}

impl fmt::Debug for Link {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Link")
            .field("peer", &self.peer)
            .field("probed", &self.probe.is_some())
            .finish()
    }
}

/// A connection being opened.
pub type Connecting = Pin<Box<dyn Future<Output = io::Result<Link>> + Send>>;

/// Opens a session's connections: called for the first connection and again after each one is
/// lost, following the backoff (SPEC §10.1). A failure counts as a failed attempt, except one of
/// kind [`io::ErrorKind::InvalidData`]: the peer answered in another protocol or could not be
/// trusted (a consumer without TLS, a certificate that does not verify), which ends the session at
/// once, since every attempt would fail the same way.
///
/// Implemented for TCP ([`TcpConnect`], what [`Builder::session`](crate::Builder::session) uses),
/// Unix domain sockets ([`UnixConnect`]) and any closure returning a future of a [`Link`]
/// ([`connect_fn`]).
pub trait Connect: Send + Sync + 'static {
    /// Opens a new connection to the consumer.
    fn connect(&self) -> Connecting;

    /// How logs and errors name the consumer (its address).
    fn target(&self) -> String;
}

impl fmt::Debug for dyn Connect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Connect({})", self.target())
    }
}

/// TCP to an address (resolved anew at each attempt), with the builder's socket options.
#[derive(Debug, Clone)]
pub struct TcpConnect {
    addr: String,
    socket: SocketOptions,
}

impl TcpConnect {
    /// Connections to `addr` (`host:port`) with `socket` options (SPEC §5.2).
    pub fn new(addr: impl Into<String>, socket: SocketOptions) -> Self {
        TcpConnect {
            addr: addr.into(),
            socket,
        }
    }
}

impl Connect for TcpConnect {
    fn connect(&self) -> Connecting {
        let (addr, options) = (self.addr.clone(), self.socket);
        Box::pin(async move {
            let stream = socket::connect(addr.as_str(), &options).await?;
            let peer = PeerAddr::Tcp(stream.peer_addr()?);
            let io = Shared::new(stream);
            let probe: Arc<dyn SocketProbe> = io.get_ref().clone();
            Ok(Link::new(io, peer).with_probe(probe))
        })
    }

    fn target(&self) -> String {
        self.addr.clone()
    }
}

/// A Unix domain socket at a path, with the builder's socket options.
#[derive(Debug, Clone)]
pub struct UnixConnect {
    path: PathBuf,
    socket: SocketOptions,
}

impl UnixConnect {
    /// Connections to the socket at `path` with `socket` options (SPEC §5.2).
    pub fn new(path: impl Into<PathBuf>, socket: SocketOptions) -> Self {
        UnixConnect {
            path: path.into(),
            socket,
        }
    }
}

impl Connect for UnixConnect {
    fn connect(&self) -> Connecting {
        let (path, options) = (self.path.clone(), self.socket);
        Box::pin(async move {
            let stream = socket::connect_unix(&path, &options).await?;
            let io = Shared::new(stream);
            let probe: Arc<dyn SocketProbe> = io.get_ref().clone();
            Ok(Link::new(io, PeerAddr::Unix(Some(path))).with_probe(probe))
        })
    }

    fn target(&self) -> String {
        format!("unix:{}", self.path.display())
    }
}

/// A [`Connect`] from a closure, named `target` in logs and errors: each call of `open` opens one
/// connection.
///
/// ```
/// use framepipe_producer::{connect_fn, Link, PeerAddr, Producer};
///
/// // Each attempt opens an in-memory pipe; a test hands the other end to a consumer.
/// let (to_consumer, _ends) = tokio::sync::mpsc::unbounded_channel();
/// let connect = connect_fn("pipe", move || {
///     let (ours, theirs) = tokio::io::duplex(64 * 1024);
///     let sent = to_consumer.send(theirs);
///     async move {
///         sent.map_err(|_| std::io::Error::other("the consumer is gone"))?;
///         Ok(Link::new(ours, PeerAddr::Other("pipe".into())))
///     }
/// });
/// let session = Producer::builder().session_with(connect);
/// # drop(session);
/// ```
pub fn connect_fn<F, Fut>(target: impl Into<String>, open: F) -> impl Connect
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = io::Result<Link>> + Send + 'static,
{
    ConnectFn {
        target: target.into(),
        open,
    }
}

struct ConnectFn<F> {
    target: String,
    open: F,
}

impl<F, Fut> Connect for ConnectFn<F>
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = io::Result<Link>> + Send + 'static,
{
    fn connect(&self) -> Connecting {
        Box::pin((self.open)())
    }

    fn target(&self) -> String {
        self.target.clone()
    }
}
