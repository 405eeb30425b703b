//! The set of live sockets whose kernel queues count as a pipeline stage (SPEC §5.3).

use std::fmt;
use std::sync::{Arc, Mutex, Weak};

use serde::Serialize;
use tokio::net::TcpStream;

use crate::probe;

/// Sockets whose send and receive queues are measured together.
///
/// Holds only weak references: registering a socket never keeps it open, and a socket disappears from
/// the set when its last `Arc` is dropped. Cheap to clone (an `Arc`).
#[derive(Clone, Default)]
pub struct SocketSet {
    inner: Arc<Mutex<Vec<Weak<TcpStream>>>>,
}

impl fmt::Debug for SocketSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SocketSet")
            .field("queues", &self.queues())
            .finish()
    }
}

/// Bytes sitting in the kernel's socket queues, summed over the sockets of a [`SocketSet`].
///
/// `None` means the figure cannot be read on this system (see [`probe`]), not zero.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct SocketQueues {
    /// Live sockets measured.
    pub sockets: usize,
    /// Written by the application, not yet acknowledged by the peer (`SIOCOUTQ`).
    pub send_queue_bytes: Option<usize>,
    /// Arrived, not yet read by the application (`FIONREAD`).
    pub recv_queue_bytes: Option<usize>,
}

impl SocketQueues {
    /// Both queues together, counting an unavailable figure as zero.
    pub fn total(&self) -> usize {
        self.send_queue_bytes.unwrap_or(0) + self.recv_queue_bytes.unwrap_or(0)
    }
}

impl SocketSet {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a socket; it leaves the set by itself when it is dropped.
    pub fn register(&self, socket: &Arc<TcpStream>) {
        let mut sockets = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        sockets.retain(|w| w.strong_count() > 0);
        sockets.push(Arc::downgrade(socket));
    }

    /// Reads both queues of every live socket: two `ioctl`s per socket, under a short lock.
    pub fn queues(&self) -> SocketQueues {
        let mut sockets = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        sockets.retain(|w| w.strong_count() > 0);
        let mut out = SocketQueues {
            sockets: 0,
            send_queue_bytes: Some(0),
            recv_queue_bytes: Some(0),
        };
        for socket in sockets.iter().filter_map(Weak::upgrade) {
            out.sockets += 1;
            out.send_queue_bytes = sum(out.send_queue_bytes, probe::unsent_bytes(&*socket).ok());
            out.recv_queue_bytes = sum(out.recv_queue_bytes, probe::unread_bytes(&*socket).ok());
        }
        out
    }
}

fn sum(a: Option<usize>, b: Option<usize>) -> Option<usize> {
    Some(a? + b?)
}
