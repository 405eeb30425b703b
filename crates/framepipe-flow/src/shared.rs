//! A socket shared through an `Arc`: one owner reads and writes it while probes hold the other
//! references (SPEC §5.3).
//!
//! A driver generic over `AsyncRead + AsyncWrite` owns its transport, yet the sampler must read the
//! same socket's kernel queues from another task, and an error path may want to reset it. Tokio's
//! sockets do their I/O through `&self` ([`TcpStream::poll_read_ready`], [`TcpStream::try_io`]), so
//! `Shared` keeps the socket in an `Arc`, gives the I/O traits to its one owner, and hands clones of
//! the `Arc` to whoever probes ([`Shared::get_ref`], [`SocketSet::register`](crate::SocketSet::register)).
//!
//! ```text
//!   driver ──owns──▶ Shared<TcpStream> ──Arc──┐
//!                                             ├──▶ TcpStream (the socket)
//!   SocketSet ──Weak<dyn SocketProbe>─────────┘
//! ```

use std::io::{self, IoSlice};
use std::net::Shutdown;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use socket2::SockRef;
use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};
use tokio::net::TcpStream;
#[cfg(unix)]
use tokio::net::UnixStream;

/// A socket shared through an `Arc`, usable as `AsyncRead + AsyncWrite` by one owner while probes
/// hold the other references.
///
/// Implemented for [`TcpStream`] and (on Unix) [`tokio::net::UnixStream`]. Reads and writes cost what
/// the socket's own do: no allocation, one `recv`/`send`/`sendmsg` system call per call that moves
/// bytes, and at most one more (finding the socket not ready) before the task waits; as with Tokio's
/// sockets, a partial read or write clears readiness without that extra call. `poll_flush` does
/// nothing (the kernel has the bytes); `poll_shutdown` sends FIN (`shutdown(SHUT_WR)`) once, and a
/// later call succeeds without another system call.
///
/// The owner should be the only one reading and writing: two tasks doing I/O on the same socket
/// would steal each other's wake-ups. Probes, socket options and `peer_addr` through other clones of
/// the `Arc` are fine.
#[derive(Debug)]
pub struct Shared<S> {
    stream: Arc<S>,
    /// Our direction was shut down by `poll_shutdown`.
    write_shut: bool,
}

impl<S> Shared<S> {
    /// Puts `stream` in an `Arc` (one allocation).
    pub fn new(stream: S) -> Self {
        Shared {
            stream: Arc::new(stream),
            write_shut: false,
        }
    }

    /// The shared socket: clone it to probe the socket's queues from elsewhere, or call its
    /// `&self` methods (`peer_addr`, socket options) directly.
    pub fn get_ref(&self) -> &Arc<S> {
        &self.stream
    }
}

/// Whether a read that filled only part of the buffer shows the socket drained, and a write that
/// took only part of its bytes shows it full, so that readiness can be cleared without another
/// system call. True of the edge-triggered selectors Tokio's own sockets rely on for this (epoll,
/// kqueue), but not of mio's forced `poll(2)` mode (tokio#5866): same conditions as Tokio's.
#[allow(unexpected_cfgs)]
const PARTIAL_MEANS_NOT_READY: bool = cfg!(all(
    not(mio_unsupported_force_poll_poll),
    any(
        target_os = "android",
        target_os = "illumos",
        target_os = "linux",
        target_os = "dragonfly",
        target_os = "freebsd",
        target_os = "ios",
        target_os = "macos",
        target_os = "netbsd",
        target_os = "openbsd",
    )
));

/// Flags for `send`/`sendmsg`: `MSG_NOSIGNAL` on Linux, so writing to a closed connection is an
/// `EPIPE` error rather than a `SIGPIPE` (as Tokio's own TCP sockets do, and Unix ones do not).
#[cfg(target_os = "linux")]
const SEND_FLAGS: std::ffi::c_int = libc::MSG_NOSIGNAL;
#[cfg(not(target_os = "linux"))]
const SEND_FLAGS: std::ffi::c_int = 0;

/// The outcome of one system call made inside `try_io`, when its result is turned into a
/// `WouldBlock` to clear the readiness Tokio holds for the socket.
fn done_or_retry(result: io::Result<usize>, moved: usize) -> Option<io::Result<usize>> {
    match result {
        Ok(n) => Some(Ok(n)),
        // A partial transfer reported as `WouldBlock` so `try_io` cleared readiness: it still moved
        // `moved` bytes.
        Err(e) if e.kind() == io::ErrorKind::WouldBlock && moved > 0 => Some(Ok(moved)),
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
            ) =>
        {
            None
        }
        Err(e) => Some(Err(e)),
    }
}

/// The result `try_io` should see for a transfer of `n` bytes out of `len`: a partial one is
/// reported as `WouldBlock` where that shows the socket is no longer ready (see
/// [`PARTIAL_MEANS_NOT_READY`]), so readiness is cleared as Tokio's own sockets do.
fn partial_clears(n: usize, len: usize) -> io::Result<usize> {
    if PARTIAL_MEANS_NOT_READY && 0 < n && n < len {
        Err(io::ErrorKind::WouldBlock.into())
    } else {
        Ok(n)
    }
}

/// `AsyncRead` and `AsyncWrite` for `Shared<$socket>`, where `$socket` has Tokio's readiness API.
macro_rules! shared_io {
    ($socket:ty) => {
        impl AsyncRead for Shared<$socket> {
            /// Waits for readability, then one `recv(2)` straight into the unfilled part of `buf`
            /// (which need not be initialised); no allocation, no copy.
            fn poll_read(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                buf: &mut ReadBuf<'_>,
            ) -> Poll<io::Result<()>> {
                let stream = &*self.stream;
                if buf.remaining() == 0 {
                    return Poll::Ready(Ok(()));
                }
                loop {
                    ready!(stream.poll_read_ready(cx))?;
                    // SAFETY: `recv` only writes into the slice, never de-initialises it.
                    let unfilled = unsafe { buf.unfilled_mut() };
                    let len = unfilled.len();
                    let mut moved = 0;
                    let result = stream.try_io(Interest::READABLE, || {
                        moved = SockRef::from(stream).recv(unfilled)?;
                        partial_clears(moved, len)
                    });
                    if let Some(result) = done_or_retry(result, moved) {
                        let n = result?;
                        // SAFETY: `recv` initialised the first `n` bytes of the unfilled part.
                        unsafe { buf.assume_init(n) };
                        buf.advance(n);
                        return Poll::Ready(Ok(()));
                    }
                }
            }
        }

        impl AsyncWrite for Shared<$socket> {
            /// Waits for writability, then one `send(2)` (`MSG_NOSIGNAL` on Linux: a closed peer is
            /// an `EPIPE` error, not a signal); no allocation, no copy.
            fn poll_write(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                buf: &[u8],
            ) -> Poll<io::Result<usize>> {
                let stream = &*self.stream;
                loop {
                    ready!(stream.poll_write_ready(cx))?;
                    let mut moved = 0;
                    let result = stream.try_io(Interest::WRITABLE, || {
                        moved = SockRef::from(stream).send_with_flags(buf, SEND_FLAGS)?;
                        partial_clears(moved, buf.len())
                    });
                    if let Some(result) = done_or_retry(result, moved) {
                        return Poll::Ready(result);
                    }
                }
            }

            /// Waits for writability, then one `sendmsg(2)` of all the slices (`MSG_NOSIGNAL` on
            /// Linux); no allocation, no copy.
            fn poll_write_vectored(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                bufs: &[IoSlice<'_>],
            ) -> Poll<io::Result<usize>> {
                let stream = &*self.stream;
                loop {
                    ready!(stream.poll_write_ready(cx))?;
                    let mut moved = 0;
                    let result = stream.try_io(Interest::WRITABLE, || {
                        moved = SockRef::from(stream).send_vectored_with_flags(bufs, SEND_FLAGS)?;
                        Ok(moved)
                    });
                    if let Some(result) = done_or_retry(result, moved) {
                        return Poll::Ready(result);
                    }
                }
            }

            fn is_write_vectored(&self) -> bool {
                true
            }

            /// Nothing to do: a socket has no user-space buffer.
            fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
                Poll::Ready(Ok(()))
            }

            /// `shutdown(SHUT_WR)`: the peer reads end of stream once it has read everything
            /// written before. The first call makes the system call; later ones return `Ok` at once.
            fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
                let this = self.get_mut();
                if !this.write_shut {
                    SockRef::from(&*this.stream).shutdown(Shutdown::Write)?;
                    this.write_shut = true;
                }
                Poll::Ready(Ok(()))
            }
        }
    };
}

shared_io!(TcpStream);
#[cfg(unix)]
shared_io!(UnixStream);
