//! One frame handed to the application, and the connection it came from (SPEC §7.2).

use std::fmt;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use bytes::Bytes;
use framepipe_codec::session::SessionId;
use framepipe_flow::{PeerAddr, Reservation, StageGauge};
use serde::Deserialize;

use crate::sessions::Lease;

/// Who a connection is with: given to handlers with every [`Delivery`] and to the connection hooks
/// ([`Handler::on_open`](crate::Handler::on_open), [`Handler::on_close`](crate::Handler::on_close)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionInfo {
    /// Number of the connection in this consumer, from 1 in the order accepted.
    pub id: u64,
    /// The producer's address.
    pub peer: PeerAddr,
    /// When it was accepted.
    pub accepted_at: Instant,
}

/// One frame handed to the handler.
///
/// A delivery holds the frame's share of the consumer's memory limit (SPEC §7.6) and counts in the
/// `handling` stage until it is dropped, so the accounting stays true while the application keeps
/// it; under [`Consumer::serve`](crate::Consumer::serve) the share is also held until the handler
/// has returned, whatever the handler kept of the delivery. An item moved out and kept after both
/// is no longer counted.
pub struct Delivery<I> {
    /// The decoded body.
    pub item: I,
    /// 0-based index of the frame in its connection's stream.
    pub frame: u64,
    /// Byte offset of the frame's header in its connection's stream.
    pub offset: u64,
    /// Bytes the frame took on the wire, header included.
    pub wire_bytes: usize,
    /// The frame's sequence number in its session (SPEC §9.1.4): the same frame keeps it across
    /// reconnects, and each is handed on once. `None` on a plain connection.
    pub sequence: Option<u64>,
    pub(crate) connection: Arc<ConnectionInfo>,
    pub(crate) held: Held,
    /// The connection's hold on its session (a session's frame only).
    pub(crate) session: Option<Arc<OnceLock<Lease>>>,
}

impl<I: fmt::Debug> fmt::Debug for Delivery<I> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Delivery")
            .field("connection", &self.connection.id)
            .field("peer", &self.connection.peer)
            .field("frame", &self.frame)
            .field("offset", &self.offset)
            .field("wire_bytes", &self.wire_bytes)
            .field("item", &self.item)
            .finish()
    }
}

impl<I> Delivery<I> {
    /// The connection the frame came from.
    pub fn connection(&self) -> &ConnectionInfo {
        &self.connection
    }

    /// The producer's address.
    pub fn peer(&self) -> &PeerAddr {
        &self.connection.peer
    }

    /// The session the frame belongs to (`None` on a plain connection).
    pub fn session(&self) -> Option<SessionId> {
        Some(self.session.as_ref()?.get()?.slot.id())
    }

    /// Commits, in the consumer's [`SessionStore`](crate::SessionStore), that every frame of the
    /// session up to and including this one was handled (SPEC §10.3); the producer is then sent an
    /// ack for them. Call it once the frame's output is durable, or from a store whose `commit` makes
    /// the output durable with the position (exactly-once across consumer restarts).
    ///
    /// Blocks for the store's commit (a [`FileStore`](crate::FileStore): two `fsync`s); committing
    /// every Nth frame is enough, the position being cumulative. With a store, frames are
    /// acknowledged only once committed, so a session whose frames are never committed stops when
    /// the producer's budget is full, and it ends only once its last frame is committed.
    ///
    /// # Errors
    /// `Unsupported` on a plain connection or without a store; the store's own error otherwise.
    pub fn commit(&self) -> std::io::Result<()> {
        let (Some(seq), Some(lease)) = (self.sequence, self.session.as_ref().and_then(|s| s.get()))
        else {
            return Err(std::io::Error::new(
                std::io::ErrorKind::Unsupported,
                "not a session's frame: nothing to commit",
            ));
        };
        lease.slot.commit(seq + 1)
    }
}

impl Delivery<Bytes> {
    /// Parses the body as one JSON value of `T` (SPEC §1.2), which may borrow from it: `&str` and
    /// `Cow<str>` fields point into the frame's bytes, with no copy (a string with escapes is copied
    /// into a `Cow::Owned`). Errors name the frame and its offset, like the typed mode's.
    ///
    /// Costs a UTF-8 check and a parse of the body; allocates only what `T` owns.
    ///
    /// ```
    /// # fn f(delivery: framepipe_consumer::Delivery<bytes::Bytes>) -> Result<(), framepipe_codec::Error> {
    /// #[derive(serde::Deserialize)]
    /// struct EventRef<'a> { kind: &'a str, #[serde(borrow)] note: std::borrow::Cow<'a, str> }
    ///
    /// let events: Vec<EventRef<'_>> = delivery.json()?;
    /// # Ok(()) }
    /// ```
    pub fn json<'a, T: Deserialize<'a>>(&'a self) -> Result<T, framepipe_codec::Error> {
        framepipe_codec::parse_json_body(&self.item, self.frame, self.offset)
    }
}

/// What a delivery holds until dropped: its share of the memory limit and its place in the
/// `handling` stage. Shared (one small allocation per frame), so that the serve loop can hold it
/// until the handler returns even when the handler's future captured only `item` (a closure that
/// uses `d.item` alone captures that field, not the delivery, and drops the rest at once).
#[derive(Clone)]
pub(crate) struct Held {
    _inner: Arc<HeldInner>,
}

struct HeldInner {
    _memory: Reservation,
    handling: StageGauge,
    bytes: usize,
}

impl Held {
    pub(crate) fn new(memory: Reservation, handling: StageGauge, bytes: usize) -> Self {
        handling.add(bytes);
        Held {
            _inner: Arc::new(HeldInner {
                _memory: memory,
                handling,
                bytes,
            }),
        }
    }
}

impl Drop for HeldInner {
    fn drop(&mut self) {
        self.handling.remove(self.bytes);
    }
}
