//! The set of live connections whose kernel queues count as a pipeline stage (SPEC §5.3).

use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex, Weak};

use serde::Serialize;

use crate::SocketProbe;

/// Connections whose send and receive queues are measured together.
///
/// Holds only weak references: registering a socket never keeps it open, and a socket disappears from
/// the set when its last `Arc` is dropped. Connections over a transport that cannot be probed are
/// counted with an [`Unprobed`] guard instead, and while any is alive the queue totals read as
/// unavailable (`None`): a sum that silently left them out would understate what is in flight.
/// Cheap to clone (an `Arc`).
#[derive(Clone, Default)]
pub struct SocketSet {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    probes: Mutex<Vec<Weak<dyn SocketProbe>>>,
    unprobed: AtomicUsize,
}

impl fmt::Debug for SocketSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SocketSet")
            .field("queues", &self.queues())
            .finish()
    }
}

/// Bytes sitting in the kernel's socket queues, summed over the connections of a [`SocketSet`].
///
/// `None` means the figure cannot be read (on this system, see [`probe`](crate::probe), or because
/// an unprobed connection is open), not zero.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct SocketQueues {
    /// Live probed sockets measured.
    pub sockets: usize,
    /// Written by the application, not yet acknowledged by the peer (`SIOCOUTQ`).
    pub send_queue_bytes: Option<usize>,
    /// Arrived, not yet read by the application (`FIONREAD`).
    pub recv_queue_bytes: Option<usize>,
    /// Open connections whose transport cannot be probed ([`SocketSet::register_unprobed`]); while
    /// there are any, both queue figures are `None`.
    pub unprobed: usize,
}

impl SocketQueues {
    /// Both queues together, counting an unavailable figure as zero (so a lower bound when either is
    /// `None`).
    pub fn total(&self) -> usize {
        self.send_queue_bytes.unwrap_or(0) + self.recv_queue_bytes.unwrap_or(0)
    }
}

/// A connection in a [`SocketSet`] whose transport cannot be probed (a `tokio::io::duplex` pipe, for
/// one). While it is alive the set's queue totals are unavailable; drop it when the connection ends.
///
/// One atomic decrement when dropped.
#[must_use = "the connection counts as unprobed only while the guard is alive"]
pub struct Unprobed {
    set: Arc<Inner>,
}

impl fmt::Debug for Unprobed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Unprobed")
            .field("open", &self.set.unprobed.load(Relaxed))
            .finish()
    }
}

impl Drop for Unprobed {
    fn drop(&mut self) {
        self.set.unprobed.fetch_sub(1, Relaxed);
    }
}

impl SocketSet {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a connection's probe, kept as a `Weak`: it leaves the set by itself when its last `Arc`
    /// is dropped. Pass a clone of the `Arc` the connection's transport lives in (for a
    /// [`Shared`](crate::Shared) socket, `shared.get_ref().clone()`).
    ///
    /// Takes a short lock, drops dead entries and pushes one (amortised, no allocation once the set
    /// has grown to its largest).
    pub fn register(&self, probe: Arc<dyn SocketProbe>) {
        let mut probes = self.inner.probes.lock().unwrap_or_else(|e| e.into_inner());
        probes.retain(|w| w.strong_count() > 0);
        probes.push(Arc::downgrade(&probe));
    }

    /// Counts a connection whose transport cannot be probed until the returned guard is dropped.
    /// One atomic increment.
    pub fn register_unprobed(&self) -> Unprobed {
        self.inner.unprobed.fetch_add(1, Relaxed);
        Unprobed {
            set: self.inner.clone(),
        }
    }

    /// Reads both queues of every live socket: two `ioctl`s per socket, under a short lock. While an
    /// [`Unprobed`] guard is alive no `ioctl` is made and both figures are `None`.
    pub fn queues(&self) -> SocketQueues {
        let mut probes = self.inner.probes.lock().unwrap_or_else(|e| e.into_inner());
        probes.retain(|w| w.strong_count() > 0);
        let unprobed = self.inner.unprobed.load(Relaxed);
        if unprobed > 0 {
            return SocketQueues {
                sockets: probes.len(),
                send_queue_bytes: None,
                recv_queue_bytes: None,
                unprobed,
            };
        }
        let mut out = SocketQueues {
            sockets: 0,
            send_queue_bytes: Some(0),
            recv_queue_bytes: Some(0),
            unprobed: 0,
        };
        for probe in probes.iter().filter_map(Weak::upgrade) {
            out.sockets += 1;
            out.send_queue_bytes = sum(out.send_queue_bytes, probe.unsent_bytes().ok());
            out.recv_queue_bytes = sum(out.recv_queue_bytes, probe.unread_bytes().ok());
        }
        out
    }
}

fn sum(a: Option<usize>, b: Option<usize>) -> Option<usize> {
    Some(a? + b?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io;

    /// A probe with fixed readings.
    struct Fixed(io::Result<usize>, usize);

    impl SocketProbe for Fixed {
        fn unsent_bytes(&self) -> io::Result<usize> {
            match &self.0 {
                Ok(n) => Ok(*n),
                Err(e) => Err(io::Error::new(e.kind(), "fixed")),
            }
        }
        fn unread_bytes(&self) -> io::Result<usize> {
            Ok(self.1)
        }
    }

    #[test]
    fn sums_live_probes_and_forgets_dropped_ones() {
        let set = SocketSet::new();
        let a: Arc<dyn SocketProbe> = Arc::new(Fixed(Ok(10), 1));
        let b: Arc<dyn SocketProbe> = Arc::new(Fixed(Ok(20), 2));
        set.register(a.clone());
        set.register(b.clone());
        let q = set.queues();
        assert_eq!(
            (
                q.sockets,
                q.send_queue_bytes,
                q.recv_queue_bytes,
                q.unprobed
            ),
            (2, Some(30), Some(3), 0)
        );
        assert_eq!(q.total(), 33);
        drop(b);
        assert_eq!(set.queues().send_queue_bytes, Some(10));
        drop(a);
        assert_eq!(
            set.queues(),
            SocketQueues {
                sockets: 0,
                send_queue_bytes: Some(0),
                recv_queue_bytes: Some(0),
                unprobed: 0,
            }
        );
    }

    #[test]
    fn a_probe_that_fails_makes_its_figure_unavailable() {
        // SPEC §5.3: unavailable, never zero.
        let set = SocketSet::new();
        let a: Arc<dyn SocketProbe> = Arc::new(Fixed(Ok(10), 1));
        let b: Arc<dyn SocketProbe> = Arc::new(Fixed(Err(io::ErrorKind::Unsupported.into()), 2));
        set.register(a.clone());
        set.register(b.clone());
        let q = set.queues();
        assert_eq!((q.send_queue_bytes, q.recv_queue_bytes), (None, Some(3)));
    }

    #[test]
    fn an_unprobed_connection_makes_both_figures_unavailable_while_it_lives() {
        // SPEC §5.3.
        let set = SocketSet::new();
        let a: Arc<dyn SocketProbe> = Arc::new(Fixed(Ok(10), 1));
        set.register(a.clone());
        let pipe = set.register_unprobed();
        let other = set.register_unprobed();
        let q = set.queues();
        assert_eq!(
            (
                q.sockets,
                q.send_queue_bytes,
                q.recv_queue_bytes,
                q.unprobed
            ),
            (1, None, None, 2)
        );
        let json = serde_json::to_string(&q).unwrap();
        assert_eq!(
            json,
            r#"{"sockets":1,"send_queue_bytes":null,"recv_queue_bytes":null,"unprobed":2}"#
        );
        drop(pipe);
        assert_eq!(set.queues().unprobed, 1);
        drop(other);
        let q = set.queues();
        assert_eq!((q.send_queue_bytes, q.unprobed), (Some(10), 0));
    }
}
