//! Connections whose kernel queues can be read: the [`SocketProbe`] trait, for TCP and Unix domain
//! stream sockets (SPEC §5.3).

use std::io;
use tokio::net::TcpStream;
#[cfg(unix)]
use tokio::net::UnixStream;

use crate::probe;

/// A connection whose kernel queues can be read (SPEC §5.3).
///
/// A [`SocketSet`](crate::SocketSet) holds probes (weakly) and sums them. A transport that has no
/// such queues (a `tokio::io::duplex` pipe, a TLS stream whose socket is out of reach) is not a probe:
/// register it with [`SocketSet::register_unprobed`](crate::SocketSet::register_unprobed) so the
/// totals read as unavailable instead of as zero.
///
/// Each method is one system call on Linux and does not wait; elsewhere the queue readings fail with
/// [`io::ErrorKind::Unsupported`] (see [`probe`]).
pub trait SocketProbe: Send + Sync + 'static {
    /// Bytes written and not yet acknowledged by the peer (`SIOCOUTQ`).
    ///
    /// On a Unix domain stream socket, the bytes written that the peer has not yet read, counted as
    /// the kernel's memory for them: per-buffer overhead included (a small write can count double),
    /// and a buffer counts in full until the peer has read all of it. An upper bound on the bytes.
    fn unsent_bytes(&self) -> io::Result<usize>;

    /// Bytes arrived and not yet read (`FIONREAD`). Exact payload bytes for TCP and Unix sockets.
    fn unread_bytes(&self) -> io::Result<usize>;

    /// Make the coming close a reset (`SO_LINGER` 0) so the kernel drops what it still holds for the
    /// peer at once instead of trying to deliver it.
    ///
    /// The default fails with [`io::ErrorKind::Unsupported`]: a Unix socket, for one, has nothing to
    /// drop (what it wrote already sits in the peer's receive queue).
    fn reset_on_close(&self) -> io::Result<()> {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "this transport cannot reset its connection on close",
        ))
    }
}

impl SocketProbe for TcpStream {
    /// `ioctl(SIOCOUTQ)`: sent-but-unacknowledged plus not-yet-sent bytes.
    fn unsent_bytes(&self) -> io::Result<usize> {
        probe::unsent_bytes(self)
    }

    /// `ioctl(FIONREAD)`.
    fn unread_bytes(&self) -> io::Result<usize> {
        probe::unread_bytes(self)
    }

    /// `setsockopt(SO_LINGER, 0)`: one system call; the close that follows sends RST and discards
    /// the send queue.
    fn reset_on_close(&self) -> io::Result<()> {
        socket2::SockRef::from(self).set_linger(Some(std::time::Duration::ZERO))
    }
}

#[cfg(unix)]
impl SocketProbe for UnixStream {
    /// `ioctl(SIOCOUTQ)`: the kernel memory holding what the peer has not read (see the trait).
    fn unsent_bytes(&self) -> io::Result<usize> {
        probe::unsent_bytes(self)
    }

    /// `ioctl(FIONREAD)`: exact bytes arrived and not read.
    fn unread_bytes(&self) -> io::Result<usize> {
        probe::unread_bytes(self)
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use std::sync::Arc;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn unix_probes_see_bytes_written_and_not_read() {
        // SPEC §5.3: SIOCOUTQ and FIONREAD on a Unix stream socket.
        let (mut tx, mut rx) = UnixStream::pair().unwrap();
        assert_eq!(
            (tx.unsent_bytes().unwrap(), rx.unread_bytes().unwrap()),
            (0, 0)
        );
        tx.write_all(&[7u8; 1000]).await.unwrap();
        tx.write_all(&[8u8; 1000]).await.unwrap();
        // No network in between: the bytes are in the peer's queue as soon as the write returns.
        assert_eq!(rx.unread_bytes().unwrap(), 2000);
        let unsent = tx.unsent_bytes().unwrap();
        assert!(
            (2000..2000 + 2 * 4096).contains(&unsent),
            "kernel memory for 2 × 1000 bytes: {unsent}"
        );
        let mut buf = [0u8; 1500];
        rx.read_exact(&mut buf).await.unwrap();
        assert_eq!(rx.unread_bytes().unwrap(), 500);
        // The first buffer was read in full and freed; the second still counts whole.
        let after = tx.unsent_bytes().unwrap();
        assert!(after >= 1000 && after < unsent, "{after} after {unsent}");
        rx.read_exact(&mut buf[..500]).await.unwrap();
        assert_eq!(
            (tx.unsent_bytes().unwrap(), rx.unread_bytes().unwrap()),
            (0, 0)
        );
        // Nothing to reset on a Unix socket.
        let err = tx.reset_on_close().unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::Unsupported);
    }

    #[tokio::test]
    async fn a_tcp_reset_on_close_reaches_the_peer_as_a_reset() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let tx = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (mut rx, _) = listener.accept().await.unwrap();
        let probe: Arc<dyn SocketProbe> = Arc::new(tx);
        probe.reset_on_close().unwrap();
        drop(probe);
        let mut buf = [0u8; 8];
        let err = rx.read(&mut buf).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::ConnectionReset);
    }
}
