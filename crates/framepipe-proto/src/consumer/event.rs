//! What a consumer core hands its driver: frames and errors for the application, and what to do
//! next with the transport.

use bytes::{buf::Limit, BytesMut};
use framepipe_codec::Frame;
use framepipe_flow::Reservation;

use crate::Error;

/// A whole frame and its share of the consumer's memory limit (SPEC §7.6). Dropping it gives the
/// memory back, so keep the reservation with the frame until the application is done with it.
#[derive(Debug)]
pub struct InFrame {
    /// The frame: index, offset and body (split off the read buffer, not copied).
    pub frame: Frame,
    /// The bytes it holds of the memory limit.
    pub memory: Reservation,
    /// Its sequence number in a session (SPEC §9.1.4); `None` in a plain stream.
    pub seq: Option<u64>,
}

/// Something for the application, in stream order.
#[derive(Debug)]
pub enum Event {
    /// A session's hello (SPEC §10.4): the connection reads nothing more until the session table
    /// answers with [`ConsumerConn::accept_session`] or the connection is rejected.
    ///
    /// [`ConsumerConn::accept_session`]: crate::consumer::ConsumerConn::accept_session
    Hello(framepipe_codec::session::Hello),
    /// A whole frame.
    Frame(InFrame),
    /// A frame was refused but the connection goes on (SPEC §4.1).
    FrameError(framepipe_codec::Error),
    /// The connection failed: no frame follows. The core closes it, after a notice where one makes
    /// sense, once the application has finished with the frames before it.
    Failed(Error),
}

/// What the driver does next with the transport's input, from [`ConsumerConn::poll_read`].
///
/// [`ConsumerConn::poll_read`]: crate::consumer::ConsumerConn::poll_read
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadOp {
    /// Deliver the pending events first ([`ConsumerConn::poll_event`]).
    ///
    /// [`ConsumerConn::poll_event`]: crate::consumer::ConsumerConn::poll_event
    Deliver,
    /// Read at most `limit` bytes into [`ConsumerConn::read_buf`], then call `handle_read`; or wait
    /// until the deadline ([`ConsumerConn::poll_timeout`]) and call `handle_timeout`.
    ///
    /// [`ConsumerConn::read_buf`]: crate::consumer::ConsumerConn::read_buf
    /// [`ConsumerConn::poll_timeout`]: crate::consumer::ConsumerConn::poll_timeout
    Read {
        /// Most bytes the read may take.
        limit: usize,
    },
    /// Wait for `bytes` more of the memory limit (`MemoryPool::acquire`), then hand the reservation
    /// to `grant_memory`. The frame deadline does not run meanwhile.
    Reserve {
        /// Bytes to wait for.
        bytes: usize,
    },
    /// A session's hello is waiting for the session table's answer: call `accept_session`, or
    /// `reject` the connection.
    Handshake,
    /// No more input is wanted: close the application's queue and wait until the application has
    /// finished with every frame handed on, then call `handle_app_done`.
    AwaitApp,
    /// Write what [`ConsumerConn::poll_transmit`] gives; read nothing meanwhile.
    ///
    /// [`ConsumerConn::poll_transmit`]: crate::consumer::ConsumerConn::poll_transmit
    Transmit,
    /// Read and throw away what arrives (draining after a notice), calling `handle_discarded`.
    Discard,
    /// The connection is over: drop the transport.
    Close,
}

/// What the driver writes next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transmit<'a> {
    /// These bytes; then call `handle_written` with how many were taken.
    Bytes(&'a [u8]),
    /// Shut down the writing direction (FIN), then call `handle_fin_sent`.
    Fin,
    /// Nothing.
    Nothing,
}

/// The read buffer's free part, limited to what the read may take.
pub type ReadBuf<'a> = Limit<&'a mut BytesMut>;
