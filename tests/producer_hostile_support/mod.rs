//! The peers of the producer's hostile suite (`tests/producer_hostile.rs`): consumers that never
//! read, answer garbage or reset, on sockets with small buffers.
#![allow(dead_code)]

use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::mpsc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

/// `SO_RCVBUF` requested by the peers that stop reading (the kernel doubles it), so the producer's
/// writes stop soon.
pub(crate) const PEER_RCVBUF: libc::c_int = 16 * 1024;
/// How long a peer holds its socket at most.
pub(crate) const PEER_LIMIT: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------------------------
// The hostile peers.
// ---------------------------------------------------------------------------------------------

/// A listener on a free loopback port whose accepted sockets have a small receive buffer.
pub(crate) fn listener(small_rcvbuf: bool) -> (TcpListener, SocketAddr) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    if small_rcvbuf {
        // Inherited by accepted sockets; set before any SYN arrives, so the window matches.
        set_int(&listener, libc::SOL_SOCKET, libc::SO_RCVBUF, PEER_RCVBUF);
    }
    let addr = listener.local_addr().unwrap();
    (listener, addr)
}

pub(crate) fn set_int(
    socket: &impl AsRawFd,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) {
    // SAFETY: `value` outlives the call and its size is passed.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            level,
            name,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "setsockopt: {}", io::Error::last_os_error());
}

/// Closes `stream` with a reset (`SO_LINGER` 0), as a crashing peer would.
pub(crate) fn reset(stream: TcpStream) {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: `linger` outlives the call and its size is passed.
    let rc = unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "setsockopt: {}", io::Error::last_os_error());
    drop(stream);
}

/// A peer that accepts one connection, does `then` with it and returns its result, running on a
/// thread; `done` tells it the child has ended, for peers that hold their socket until then.
pub(crate) struct Peer<T> {
    pub(crate) addr: SocketAddr,
    pub(crate) done: mpsc::Sender<()>,
    pub(crate) thread: JoinHandle<io::Result<T>>,
}

impl<T: Send + 'static> Peer<T> {
    pub(crate) fn spawn(
        small_rcvbuf: bool,
        then: impl FnOnce(TcpStream, &mpsc::Receiver<()>) -> io::Result<T> + Send + 'static,
    ) -> Self {
        let (listener, addr) = listener(small_rcvbuf);
        let (done, until) = mpsc::channel();
        let thread = thread::spawn(move || {
            let (stream, _) = listener.accept()?;
            then(stream, &until)
        });
        Peer { addr, done, thread }
    }

    pub(crate) fn finish(self) -> T {
        let _ = self.done.send(());
        self.thread
            .join()
            .expect("the peer did not panic")
            .expect("the peer's I/O succeeded")
    }
}

/// Holds `stream` without reading until the child has ended.
pub(crate) fn hold(stream: TcpStream, until: &mpsc::Receiver<()>) -> io::Result<()> {
    let _ = until.recv_timeout(PEER_LIMIT);
    drop(stream);
    Ok(())
}

/// xorshift64*: noise without a dependency.
pub(crate) fn noise(state: &mut u64, out: &mut [u8]) {
    for chunk in out.chunks_mut(8) {
        *state ^= *state >> 12;
        *state ^= *state << 25;
        *state ^= *state >> 27;
        let word = state.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes();
        chunk.copy_from_slice(&word[..chunk.len()]);
    }
}
