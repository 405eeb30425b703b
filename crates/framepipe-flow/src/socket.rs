//! Socket options as documented settings, and the connect/bind helpers that apply them, for TCP and
//! Unix domain stream sockets (SPEC §5.2).
//!
//! | Option | TCP | Unix domain stream socket |
//! |---|---|---|
//! | `send_buffer` | `SO_SNDBUF`: bytes not yet acknowledged | `SO_SNDBUF`: on Linux, what bounds the bytes the peer has not yet read |
//! | `recv_buffer` | `SO_RCVBUF`: bytes not yet read, and the window | `SO_RCVBUF`: set, but Linux does not use it for stream sockets |
//! | `nodelay`, `keepalive` | applied | do not apply (no Nagle, no vanishing peer on one host) |

use std::io;
use std::net::SocketAddr;
#[cfg(unix)]
use std::path::Path;
use std::time::Duration;

use socket2::{SockRef, TcpKeepalive};
use tokio::net::{lookup_host, TcpListener, TcpSocket, TcpStream, ToSocketAddrs};
#[cfg(unix)]
use tokio::net::{UnixListener, UnixSocket, UnixStream};

/// Default requested send buffer: 1 MiB (SPEC §5.2). It was 256 KiB until issue 14: a producer
/// whose consumer is the bottleneck then wrote in pieces as the window opened, and spent 15–25% more
/// CPU (in the kernel's send path) than with 1 MiB or autotuning (BENCHMARKS.md).
pub const DEFAULT_SEND_BUFFER: u32 = 1024 * 1024;
/// Default requested receive buffer: 256 KiB (SPEC §5.2).
pub const DEFAULT_RECV_BUFFER: u32 = 256 * 1024;
/// Default keepalive idle time: 60 s (SPEC §5.2).
pub const DEFAULT_KEEPALIVE: Duration = Duration::from_secs(60);
/// Listen backlog used by [`bind`] and [`bind_unix`].
pub const LISTEN_BACKLOG: u32 = 1024;

/// Options applied to every framepipe socket. `Default` gives the values of SPEC §5.2.
///
/// TCP sockets take all four; Unix domain stream sockets take the buffer sizes only (see the module
/// documentation for what each bounds there).
///
/// Small kernel buffers are the default on purpose: the kernel's socket queues are a stage of the
/// pipeline like any other, and with Linux autotuning they may grow to several megabytes per
/// connection (`net.ipv4.tcp_wmem`/`tcp_rmem`), hiding backpressure and memory the process does not
/// see in its RSS. With 1 MiB requested for sending and 256 KiB for receiving (Linux doubles a requested
/// size for its bookkeeping), a slow consumer stops the producer after about 2.5 MiB of kernel
/// buffering in both directions together. Set `None` to give the kernel its autotuning back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SocketOptions {
    send_buffer: Option<u32>,
    recv_buffer: Option<u32>,
    nodelay: bool,
    keepalive: Option<Duration>,
}

impl Default for SocketOptions {
    fn default() -> Self {
        SocketOptions {
            send_buffer: Some(DEFAULT_SEND_BUFFER),
            recv_buffer: Some(DEFAULT_RECV_BUFFER),
            nodelay: true,
            keepalive: Some(DEFAULT_KEEPALIVE),
        }
    }
}

impl SocketOptions {
    /// `SO_SNDBUF` to request, in bytes (default 1 MiB); `None` leaves the kernel's autotuning on.
    ///
    /// Bounds the bytes written but not yet acknowledged by the peer (the kernel doubles the request).
    pub fn send_buffer(mut self, bytes: Option<u32>) -> Self {
        self.send_buffer = bytes;
        self
    }

    /// `SO_RCVBUF` to request, in bytes (default 256 KiB); `None` leaves the kernel's autotuning on.
    ///
    /// Bounds the bytes received but not yet read, and so the TCP window offered to the peer. Set
    /// before `connect`/`listen`, so the window scale is chosen to match.
    pub fn recv_buffer(mut self, bytes: Option<u32>) -> Self {
        self.recv_buffer = bytes;
        self
    }

    /// `TCP_NODELAY` (default on). framepipe writes whole frames and coalesces small ones itself, so
    /// Nagle's algorithm would only add latency to the last frame of a burst.
    pub fn nodelay(mut self, on: bool) -> Self {
        self.nodelay = on;
        self
    }

    /// TCP keepalive idle time (default 60 s); `None` turns keepalive off. Detects a peer that
    /// vanished without closing while this side only reads (a consumer) or is blocked writing.
    pub fn keepalive(mut self, idle: Option<Duration>) -> Self {
        self.keepalive = idle;
        self
    }

    /// The requested send buffer.
    pub fn get_send_buffer(&self) -> Option<u32> {
        self.send_buffer
    }

    /// The requested receive buffer.
    pub fn get_recv_buffer(&self) -> Option<u32> {
        self.recv_buffer
    }

    /// Whether `TCP_NODELAY` is set.
    pub fn get_nodelay(&self) -> bool {
        self.nodelay
    }

    /// The keepalive idle time.
    pub fn get_keepalive(&self) -> Option<Duration> {
        self.keepalive
    }

    fn apply_buffers(&self, socket: SockRef<'_>) -> io::Result<()> {
        if let Some(bytes) = self.send_buffer {
            socket.set_send_buffer_size(bytes as usize)?;
        }
        if let Some(bytes) = self.recv_buffer {
            socket.set_recv_buffer_size(bytes as usize)?;
        }
        Ok(())
    }

    /// Applies the per-connection options (`TCP_NODELAY`, keepalive) to a connected stream. [`connect`]
    /// does this itself; call it on streams from [`TcpListener::accept`] (buffer sizes are inherited
    /// from a listener made by [`bind`]).
    pub fn apply_connected(&self, stream: &TcpStream) -> io::Result<()> {
        stream.set_nodelay(self.nodelay)?;
        let sock = SockRef::from(stream);
        match self.keepalive {
            Some(idle) => sock.set_tcp_keepalive(&TcpKeepalive::new().with_time(idle))?,
            None => sock.set_keepalive(false)?,
        }
        Ok(())
    }

    /// Applies the buffer sizes to a connected Unix domain stream socket. [`connect_unix`] does this
    /// itself; call it on streams from [`UnixListener::accept`]: on Linux an accepted Unix socket does
    /// not inherit the listener's sizes (on the BSDs and macOS it does). Up to two system calls.
    #[cfg(unix)]
    pub fn apply_connected_unix(&self, stream: &UnixStream) -> io::Result<()> {
        self.apply_buffers(SockRef::from(stream))
    }
}

/// What the kernel actually granted for a socket's buffers, in bytes (Linux reports double the
/// request: half is its bookkeeping).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct BufferSizes {
    /// `SO_SNDBUF` as read back.
    pub send: usize,
    /// `SO_RCVBUF` as read back.
    pub recv: usize,
}

/// Reads back the buffer sizes the kernel granted to `stream`: a TCP or Unix socket, or anything
/// else [`SockRef`] can borrow (an `Arc` of one too). Two system calls.
pub fn buffer_sizes<'s, S>(stream: &'s S) -> io::Result<BufferSizes>
where
    SockRef<'s>: From<&'s S>,
{
    let sock = SockRef::from(stream);
    Ok(BufferSizes {
        send: sock.send_buffer_size()?,
        recv: sock.recv_buffer_size()?,
    })
}

/// Resolves `addr` and connects to the first address that accepts, with `options` applied (buffer
/// sizes before connecting, so the window scale matches).
///
/// Waits for name resolution and the TCP handshake. The error names every address tried.
pub async fn connect(addr: impl ToSocketAddrs, options: &SocketOptions) -> io::Result<TcpStream> {
    let mut last_err = None;
    let mut tried = Vec::new();
    for target in lookup_host(addr).await? {
        tried.push(target);
        match connect_one(target, options).await {
            Ok(stream) => return Ok(stream),
            Err(e) => last_err = Some(e),
        }
    }
    Err(match last_err {
        Some(e) => io::Error::new(e.kind(), format!("connecting to {}: {e}", list(&tried))),
        None => io::Error::new(
            io::ErrorKind::InvalidInput,
            "the address resolved to nothing",
        ),
    })
}

async fn connect_one(target: SocketAddr, options: &SocketOptions) -> io::Result<TcpStream> {
    let socket = if target.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    options.apply_buffers(SockRef::from(&socket))?;
    let stream = socket.connect(target).await?;
    options.apply_connected(&stream)?;
    Ok(stream)
}

/// Binds a listener on `addr` (the first address it resolves to) with `options`' buffer sizes, which
/// accepted connections inherit, and `SO_REUSEADDR` so a restarted consumer can bind at once.
pub async fn bind(addr: impl ToSocketAddrs, options: &SocketOptions) -> io::Result<TcpListener> {
    let target = lookup_host(addr).await?.next().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "the address resolved to nothing",
        )
    })?;
    let socket = if target.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    options.apply_buffers(SockRef::from(&socket))?;
    socket
        .bind(target)
        .map_err(|e| io::Error::new(e.kind(), format!("binding {target}: {e}")))?;
    socket.listen(LISTEN_BACKLOG)
}

/// Binds a Unix domain stream listener at `path` with `options`' buffer sizes, listening with a
/// backlog of [`LISTEN_BACKLOG`]. Connections accepted on Linux do not inherit the sizes: apply them
/// with [`SocketOptions::apply_connected_unix`].
///
/// If a file already exists at `path` (a socket left by a process that ended without removing it,
/// say), this fails with [`io::ErrorKind::AddrInUse`] and removes nothing: whether the file is stale
/// is for the application to decide. The listener does not remove its file when dropped either.
///
/// Does not wait. Must be called within a Tokio runtime (the listener registers with its reactor).
#[cfg(unix)]
pub fn bind_unix(path: impl AsRef<Path>, options: &SocketOptions) -> io::Result<UnixListener> {
    let path = path.as_ref();
    let socket = UnixSocket::new_stream()?;
    options.apply_buffers(SockRef::from(&socket))?;
    socket.bind(path).map_err(|e| {
        let hint = if e.kind() == io::ErrorKind::AddrInUse {
            "; if no process listens there, the file is stale: remove it and bind again"
        } else {
            ""
        };
        io::Error::new(
            e.kind(),
            format!("binding unix:{}: {e}{hint}", path.display()),
        )
    })?;
    socket.listen(LISTEN_BACKLOG)
}

/// Connects to the Unix domain stream listener at `path`, with `options`' buffer sizes applied (on
/// Linux the connecting side's `send_buffer` is what bounds the bytes its peer has not yet read).
///
/// Waits for the connection to complete: no time on Linux, where a full backlog fails at once with
/// `WouldBlock` (as with Tokio's `UnixStream::connect`). The error names the path.
#[cfg(unix)]
pub async fn connect_unix(
    path: impl AsRef<Path>,
    options: &SocketOptions,
) -> io::Result<UnixStream> {
    let path = path.as_ref();
    let socket = UnixSocket::new_stream()?;
    options.apply_buffers(SockRef::from(&socket))?;
    socket.connect(path).await.map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("connecting to unix:{}: {e}", path.display()),
        )
    })
}

fn list(addrs: &[SocketAddr]) -> String {
    addrs
        .iter()
        .map(|a| a.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn buffers_are_applied_and_inherited_by_accepted_sockets() {
        let opts = SocketOptions::default()
            .send_buffer(Some(64 * 1024))
            .recv_buffer(Some(96 * 1024));
        let listener = bind("127.0.0.1:0", &opts).await.unwrap();
        let client = connect(listener.local_addr().unwrap(), &opts)
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        opts.apply_connected(&server).unwrap();
        for stream in [&client, &server] {
            assert_granted_64k_96k(buffer_sizes(stream).unwrap());
            assert!(stream.nodelay().unwrap());
            assert!(SockRef::from(stream).keepalive().unwrap());
        }
    }

    #[tokio::test]
    async fn a_refused_connection_names_the_address() {
        // Bind and drop to find a port nobody listens on.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let err = connect(("127.0.0.1", port), &SocketOptions::default())
            .await
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused);
        assert!(
            err.to_string().contains(&format!("127.0.0.1:{port}")),
            "{err}"
        );
    }

    /// A request of 64 KiB (send) and 96 KiB (receive) was granted: Linux doubles the request;
    /// other systems grant it as is.
    fn assert_granted_64k_96k(sizes: BufferSizes) {
        assert!(
            sizes.send >= 64 * 1024 && sizes.send <= 2 * 64 * 1024,
            "{sizes:?}"
        );
        assert!(
            sizes.recv >= 96 * 1024 && sizes.recv <= 2 * 96 * 1024,
            "{sizes:?}"
        );
    }

    /// A path for a test socket, removed first.
    #[cfg(unix)]
    fn socket_path(name: &str) -> std::path::PathBuf {
        let path =
            std::env::temp_dir().join(format!("framepipe-{name}-{}.sock", std::process::id()));
        let _ = std::fs::remove_file(&path);
        path
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn unix_sockets_take_the_buffer_sizes() {
        // SPEC §5.2: buffer sizes apply to Unix sockets; accepted ones need them applied on Linux.
        let opts = SocketOptions::default()
            .send_buffer(Some(64 * 1024))
            .recv_buffer(Some(96 * 1024));
        let path = socket_path("bufs");
        let listener = bind_unix(&path, &opts).unwrap();
        let client = connect_unix(&path, &opts).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        opts.apply_connected_unix(&server).unwrap();
        for stream in [&client, &server] {
            assert_granted_64k_96k(buffer_sizes(stream).unwrap());
        }
        drop(listener);
        std::fs::remove_file(&path).unwrap();
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn a_stale_unix_socket_file_is_reported_not_removed() {
        let path = socket_path("stale");
        // A listener that ended without removing its file.
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        let err = bind_unix(&path, &SocketOptions::default()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
        let msg = err.to_string();
        assert!(msg.contains(&format!("unix:{}", path.display())), "{msg}");
        assert!(msg.contains("stale"), "{msg}");
        assert!(path.exists(), "the file is left for the application");
        let err = connect_unix(&path, &SocketOptions::default())
            .await
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused);
        assert!(err.to_string().contains("connecting to unix:"), "{err}");
        std::fs::remove_file(&path).unwrap();
    }
}
