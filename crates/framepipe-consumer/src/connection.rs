//! One accepted connection as a `Stream` of decoded frames (SPEC §7.1).

use std::fmt;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{ready, Context, Poll};

use framepipe_codec::Notice;
use framepipe_flow::queue::Receiver;
use framepipe_proto::codes;
use futures::Stream;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::decode::{DecodePool, Meta, Taken, Window};
use crate::delivery::Held;
use crate::driver::{AppCmd, DriverEnd, Msg};
use crate::sessions::Lease;
use crate::stats::Stats;
use crate::{ConnectionInfo, Delivery, Error, Mode};

/// The frames of one connection, in order, decoded by mode `M`.
///
/// A driver task reads the transport into a byte-budgeted queue; this stream takes from that queue
/// and decodes. If the stream is not polled the queue fills and the driver stops reading: the
/// producer is slowed by how fast this stream is consumed. Frame-local errors are yielded as `Err`
/// items and the stream goes on; a fatal error is the last item.
///
/// The connection is closed once the stream has ended (after its last item, the producer is told the
/// connection is over, so a producer's `confirmed` means every frame was taken from this stream), or
/// when it is dropped (at once, with frames not yet taken dropped; a TCP connection is then reset,
/// so that a producer waiting for the close does not take it as confirmation).
pub struct Connection<M: Mode> {
    info: Arc<ConnectionInfo>,
    rx: Receiver<Msg>,
    mode: Arc<M>,
    stats: Stats,
    app: Option<mpsc::UnboundedSender<AppCmd>>,
    driver: Option<JoinHandle<DriverEnd>>,
    /// Index and offset of the first frame this stream has not yielded.
    next: (u64, u64),
    /// The connection's session once its hello is answered (SPEC §10): what the application has
    /// handled is recorded there, and acknowledged from there.
    session: Arc<OnceLock<Lease>>,
    /// Sequence number of the last frame yielded in a session, not yet known to be handled.
    yielded: Option<u64>,
    /// Frames in decode on the consumer's workers (SPEC §7.8); `None`: decoded in `poll_next`.
    window: Option<Window<M::Item>>,
}

impl<M: Mode> fmt::Debug for Connection<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("id", &self.info.id)
            .field("peer", &self.info.peer)
            .field("mode", &self.mode.name())
            .field("queue", &self.rx)
            .finish()
    }
}

impl<M: Mode> Connection<M> {
    pub(crate) fn new(
        info: Arc<ConnectionInfo>,
        rx: Receiver<Msg>,
        mode: Arc<M>,
        stats: Stats,
        app: mpsc::UnboundedSender<AppCmd>,
        driver: JoinHandle<DriverEnd>,
        session: Arc<OnceLock<Lease>>,
    ) -> Self {
        Connection {
            info,
            rx,
            mode,
            stats,
            app: Some(app),
            driver: Some(driver),
            next: (0, 0),
            session,
            yielded: None,
            window: None,
        }
    }

    /// Decodes on `decoders` (SPEC §7.8), unless the mode has nothing to offload.
    pub(crate) fn decode_on(mut self, decoders: Option<&Arc<DecodePool>>) -> Self {
        self.window = decoders
            .filter(|_| self.mode.offload())
            .map(|pool| Window::new(pool.clone()));
        self
    }

    /// Who the connection is with.
    pub fn info(&self) -> &ConnectionInfo {
        &self.info
    }

    /// The producer's address.
    pub fn peer_addr(&self) -> &framepipe_flow::PeerAddr {
        &self.info.peer
    }

    /// Refuses to go on after frame `frame` failed (SPEC §7.7): nothing more is read from the peer,
    /// and the producer is sent a `handler_failed` notice naming `frame` and `message`. Frames
    /// read before the notice stay in the stream: drop it to discard them, or poll it to the end.
    pub fn reject(&mut self, frame: u64, offset: u64, message: &str) {
        self.send_notice(Notice::new(
            codes::HANDLER_FAILED,
            frame,
            offset,
            format!(
                "the consumer's handler failed on frame {frame}, so the connection was closed; \
                 frames before it were handled, it and later ones were not: {message}"
            ),
        ));
    }

    /// Index and byte offset of the first frame this stream has not yielded yet.
    pub(crate) fn next_frame(&self) -> (u64, u64) {
        self.next
    }

    /// The shutdown was forced with frame `frame` (at `offset`) not handled: the producer is told,
    /// with a `shutting_down` notice, that the frames before it were handled and no others (SPEC §8.5.2).
    pub(crate) fn reject_forced(&mut self, frame: u64, offset: u64) {
        self.send_notice(Notice::new(
            codes::SHUTTING_DOWN,
            frame,
            offset,
            format!(
                "the consumer's shutdown was forced: the frames before frame {frame} were handled, \
                 frame {frame} and later ones were not"
            ),
        ));
    }

    /// The application's last word: close with `notice`. No `Done` follows.
    fn send_notice(&mut self, notice: Notice) {
        if let Some(app) = self.app.take() {
            let _ = app.send(AppCmd::Reject(notice));
        }
    }

    /// Ends the connection from the application's side and waits for it to close: frames left in
    /// the queue are dropped. Returns how many frames read from the transport were never handed
    /// out by this stream, and how many were read in all.
    pub(crate) async fn finish(mut self) -> (u64, u64) {
        // Take what is left (never handled) so the driver, which may be waiting for room, can go
        // on; the queue ends when the driver closes it. Frames in decode first: they hold budget.
        let mut left = self.window.as_mut().map_or(0, Window::clear);
        while let Some(msg) = self.rx.recv().await {
            left += u64::from(msg.is_ok());
        }
        self.done();
        let end = match self.driver.take() {
            Some(driver) => driver.await.unwrap_or_default(),
            None => DriverEnd::default(),
        };
        (left + end.dropped, end.frames_read)
    }

    /// Tells the driver the application has finished with every frame.
    fn done(&mut self) {
        if let Some(app) = self.app.take() {
            let _ = app.send(AppCmd::Done);
        }
    }
}

impl<M: Mode> Stream for Connection<M> {
    type Item = Result<Delivery<M::Item>, Error>;

    /// In a session (SPEC §10.5), a frame counts as handled, and may be acknowledged, once the next
    /// item is asked for or the stream has ended: under [`Consumer::serve`](crate::Consumer::serve),
    /// once its handler has returned. A frame after which the stream is dropped, or a connection
    /// rejected, is not handled: the producer sends it again.
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if let Some(seq) = this.yielded.take() {
            if let Some(lease) = this.session.get() {
                lease.slot.set_handled(seq);
            }
        }
        let taken = match &mut this.window {
            // SPEC §7.8: decoded on the workers, handed out in wire order.
            Some(window) => window.poll_next(&mut this.rx, &this.mode, cx),
            None => this.rx.poll_recv(cx).map(|msg| {
                msg.map(|msg| match msg {
                    Ok(raw) => {
                        let (meta, body) = Meta::split(raw);
                        let item = this.mode.decode(body, meta.index, meta.offset);
                        Taken::Frame(meta, item)
                    }
                    Err(e) => Taken::Error(e),
                })
            }),
        };
        match ready!(taken) {
            None => {
                this.done();
                Poll::Ready(None)
            }
            Some(Taken::Error(e)) => Poll::Ready(Some(Err(this.frame_error(e)))),
            Some(Taken::Frame(meta, item)) => Poll::Ready(Some(this.hand_out(meta, item))),
        }
    }
}

impl<M: Mode> Connection<M> {
    /// An error read in the frame's place: the stream goes on after it.
    fn frame_error(&mut self, e: Error) -> Error {
        if let Error::Frame { source, .. } = &e {
            if let (Some(index), Some(offset)) = (source.frame_index(), source.offset()) {
                let skipped = match source {
                    framepipe_codec::Error::FrameSkipped { length, .. } => 4 + length,
                    _ => 0,
                };
                self.next = (index + 1, offset + skipped);
            }
        }
        self.stats.add_error(e.code());
        e
    }

    /// A frame, decoded or refused by the mode.
    fn hand_out(
        &mut self,
        meta: Meta,
        item: Result<M::Item, framepipe_codec::Error>,
    ) -> Result<Delivery<M::Item>, Error> {
        let (index, offset, wire_bytes) = (meta.index, meta.offset, meta.wire_bytes);
        self.yielded = meta.seq;
        self.next = (index + 1, offset + wire_bytes as u64);
        let held = Held::new(meta.memory, self.stats.handling_gauge().clone(), wire_bytes);
        match item {
            Ok(item) => {
                self.stats.add_handed_out(wire_bytes);
                Ok(Delivery {
                    item,
                    frame: index,
                    offset,
                    wire_bytes,
                    sequence: meta.seq,
                    session: meta.seq.map(|_| self.session.clone()),
                    connection: self.info.clone(),
                    held,
                })
            }
            Err(source) => {
                let error = Error::Frame {
                    peer: self.info.peer.clone(),
                    source,
                };
                self.stats.add_error(error.code());
                Err(error)
            }
        }
    }
}
