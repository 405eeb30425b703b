//! Where connections come from: TCP, Unix domain sockets, or any stream of transports (SPEC §7.1).

use std::fmt;
use std::future::Future;
use std::io;
use std::sync::Arc;

use framepipe_flow::socket::SocketOptions;
use framepipe_flow::{PeerAddr, Shared, SocketProbe};
use futures::{Stream, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};

/// A connection just accepted: its transport, who is at the other end, and, for sockets, a probe
/// of its kernel queues (SPEC §5.3; `None`: the figures are reported as unavailable).
pub struct Accepted<Io> {
    /// The transport.
    pub io: Io,
    /// The producer.
    pub peer: PeerAddr,
    /// Reads the transport's kernel queues, where it has them.
    pub probe: Option<Arc<dyn SocketProbe>>,
}

impl<Io> fmt::Debug for Accepted<Io> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Accepted")
            .field("peer", &self.peer)
            .field("probed", &self.probe.is_some())
            .finish()
    }
}

/// A source of connections for a [`Consumer`](crate::Consumer): any transport that is
/// `AsyncRead + AsyncWrite` will do (SPEC §8.1).
pub trait Listener: Send + 'static {
    /// The transport of one connection.
    type Io: AsyncRead + AsyncWrite + Unpin + Send + 'static;

    /// Waits for the next connection. An error is logged and accepting goes on after a pause (it
    /// is usually transient, e.g. out of file descriptors); `Ok(None)` means no more will come.
    fn accept(
        &mut self,
        options: &SocketOptions,
    ) -> impl Future<Output = io::Result<Option<Accepted<Self::Io>>>> + Send;

    /// Where it listens, for logs.
    fn local_addr(&self) -> io::Result<PeerAddr>;
}

impl Listener for TcpListener {
    type Io = Shared<TcpStream>;

    async fn accept(&mut self, options: &SocketOptions) -> io::Result<Option<Accepted<Self::Io>>> {
        let (stream, peer) = TcpListener::accept(self).await?;
        if let Err(e) = options.apply_connected(&stream) {
            tracing::debug!(%peer, "socket options not applied: {e}");
        }
        let io = Shared::new(stream);
        let probe: Arc<dyn SocketProbe> = io.get_ref().clone();
        Ok(Some(Accepted {
            io,
            peer: PeerAddr::Tcp(peer),
            probe: Some(probe),
        }))
    }

    fn local_addr(&self) -> io::Result<PeerAddr> {
        TcpListener::local_addr(self).map(PeerAddr::Tcp)
    }
}

impl Listener for UnixListener {
    type Io = Shared<UnixStream>;

    async fn accept(&mut self, options: &SocketOptions) -> io::Result<Option<Accepted<Self::Io>>> {
        let (stream, peer) = UnixListener::accept(self).await?;
        if let Err(e) = options.apply_connected_unix(&stream) {
            tracing::debug!(?peer, "socket options not applied: {e}");
        }
        let io = Shared::new(stream);
        let probe: Arc<dyn SocketProbe> = io.get_ref().clone();
        Ok(Some(Accepted {
            io,
            peer: PeerAddr::from(peer),
            probe: Some(probe),
        }))
    }

    fn local_addr(&self) -> io::Result<PeerAddr> {
        UnixListener::local_addr(self).map(PeerAddr::from)
    }
}

/// Connections from a [`Stream`] of `(transport, peer)` pairs: in-memory pipes
/// (`tokio::io::duplex`) in tests, or transports the application accepted itself. Their kernel
/// queues are reported as unavailable.
pub struct Incoming<S> {
    stream: S,
    name: PeerAddr,
}

impl<S> fmt::Debug for Incoming<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Incoming")
            .field("name", &self.name)
            .finish()
    }
}

impl<S> Incoming<S> {
    /// Connections as `stream` yields them; `name` is what [`Listener::local_addr`] reports.
    pub fn new(stream: S, name: impl Into<std::sync::Arc<str>>) -> Self {
        Incoming {
            stream,
            name: PeerAddr::other(name),
        }
    }
}

impl<S, Io> Listener for Incoming<S>
where
    S: Stream<Item = (Io, PeerAddr)> + Send + Unpin + 'static,
    Io: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Io = Io;

    async fn accept(&mut self, _: &SocketOptions) -> io::Result<Option<Accepted<Io>>> {
        Ok(self.stream.next().await.map(|(io, peer)| Accepted {
            io,
            peer,
            probe: None,
        }))
    }

    fn local_addr(&self) -> io::Result<PeerAddr> {
        Ok(self.name.clone())
    }
}
