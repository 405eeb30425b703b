//! One accepted connection as a `Stream` of decoded frames (SPEC §7.1).

use std::fmt;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use framepipe_flow::queue::Receiver;
use framepipe_flow::Reservation;
use futures::Stream;
use tokio::task::JoinHandle;

use crate::reader::Msg;
use crate::stats::Stats;
use crate::{Error, Mode};

/// One frame handed to the handler.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery<I> {
    /// The producer's address.
    pub peer: SocketAddr,
    /// 0-based index of the frame in its connection's stream.
    pub frame: u64,
    /// Bytes the frame took on the wire, header included.
    pub wire_bytes: usize,
    /// The decoded body.
    pub item: I,
}

/// The frames of one connection, in order, decoded by mode `M`.
///
/// A reader task fills a byte-budgeted queue from the socket; this stream takes from that queue and
/// decodes. If the stream is not polled the queue fills and the reader stops reading the socket:
/// the producer is slowed by how fast this stream is consumed. Frame-local errors are yielded as
/// `Err` items and the stream goes on; a fatal error is the last item. Dropping the stream closes the
/// connection.
pub struct Connection<M: Mode> {
    peer: SocketAddr,
    rx: Receiver<Msg>,
    mode: Arc<M>,
    stats: Stats,
    reader: JoinHandle<()>,
    open: bool,
    /// The memory-limit share of the frame last yielded: given back when the next is asked for
    /// (SPEC §7.6), so a frame counts while it is handled.
    handed_out: Option<Reservation>,
}

impl<M: Mode> fmt::Debug for Connection<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("peer", &self.peer)
            .field("mode", &self.mode.name())
            .field("queue", &self.rx)
            .finish()
    }
}

impl<M: Mode> Connection<M> {
    pub(crate) fn new(
        peer: SocketAddr,
        rx: Receiver<Msg>,
        mode: Arc<M>,
        stats: Stats,
        reader: JoinHandle<()>,
    ) -> Self {
        stats.connection_opened();
        Connection {
            peer,
            rx,
            mode,
            stats,
            reader,
            open: true,
            handed_out: None,
        }
    }

    /// The producer's address.
    pub fn peer_addr(&self) -> SocketAddr {
        self.peer
    }

    fn close(&mut self) {
        if std::mem::take(&mut self.open) {
            self.stats.connection_closed();
        }
    }
}

impl<M: Mode> Stream for Connection<M> {
    type Item = Result<Delivery<M::Item>, Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        this.handed_out = None;
        let msg = match this.rx.poll_recv(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(None) => {
                this.close();
                return Poll::Ready(None);
            }
            Poll::Ready(Some(msg)) => msg,
        };
        let raw = match msg {
            Ok(raw) => raw,
            Err(e) => {
                this.stats.add_error();
                return Poll::Ready(Some(Err(e)));
            }
        };
        let wire_bytes = raw.wire_len();
        this.handed_out = Some(raw.memory);
        match this.mode.decode(raw.body, raw.frame, raw.offset) {
            Ok(item) => {
                this.stats.add_handled(wire_bytes);
                Poll::Ready(Some(Ok(Delivery {
                    peer: this.peer,
                    frame: raw.frame,
                    wire_bytes,
                    item,
                })))
            }
            Err(source) => {
                this.stats.add_error();
                Poll::Ready(Some(Err(Error::Frame {
                    peer: this.peer,
                    source,
                })))
            }
        }
    }
}

impl<M: Mode> Drop for Connection<M> {
    fn drop(&mut self) {
        self.reader.abort();
        self.close();
    }
}
