//! The connection cores' one error type (SPEC §8.6).

use std::io;
use std::time::Duration;

use framepipe_codec::Notice;

/// Why a connection core ended a connection. The consumer and producer crates wrap it in their own
/// errors, adding the peer's address and their counts.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Consumer: a frame broke the wire format and the stream cannot be resynchronised (SPEC §3).
    #[error(transparent)]
    Frame(framepipe_codec::Error),

    /// Consumer: nothing arrived for `idle` while no frame was in progress (`idle_timeout`, SPEC §7.6).
    #[error(
        "closed after {} s without data between frames (idle_timeout; the peer connected and went \
         quiet, or vanished without closing)",
        idle.as_secs_f64()
    )]
    IdleTimeout {
        /// How long it was idle.
        idle: Duration,
    },

    /// Consumer: frame `frame` was not complete `waited` after it began (`frame_timeout`, SPEC §7.6).
    #[error(
        "frame {frame} was still incomplete {} s after it began ({buffered} bytes buffered, \
         {missing} more due; frame_timeout): the peer sends too slowly or stopped mid-frame",
        waited.as_secs_f64()
    )]
    FrameTimeout {
        /// Index of the incomplete frame in the stream.
        frame: u64,
        /// Bytes of it buffered (a body being skipped buffers none).
        buffered: u64,
        /// Bytes still due to complete it (the rest of the header, if that was incomplete).
        missing: u64,
        /// Time since it began, not counting time spent waiting for memory.
        waited: Duration,
    },

    /// Producer: the consumer refused a frame, or the connection, and said why (SPEC §6.3).
    #[error("the consumer refused frame {} ({}): {}", .0.frame, .0.error, .0.message)]
    Rejected(Notice),

    /// Producer: the consumer closed its end while this side still had frames to send or might
    /// send more (SPEC §6.2.6), or reset the connection.
    #[error("the consumer closed the connection: {source}")]
    PeerClosed {
        /// `UnexpectedEof` for an orderly close, else what the system said (`ECONNRESET`, `EPIPE`).
        source: io::Error,
    },

    /// Producer: the consumer accepted no bytes for `waited` while there were bytes to send, or the
    /// kernel's send queue did not go down for that long after the last frame (SPEC §6.2.2–3).
    #[error("the consumer accepted no bytes for {:.1} s (its TCP window stayed closed)", waited.as_secs_f64())]
    Stalled {
        /// How long nothing was accepted.
        waited: Duration,
    },

    /// Producer: the consumer sent back bytes that cannot be a notice (SPEC §6.3.4).
    #[error("the consumer sent {received} bytes that are not a framepipe notice (starts with \"{preview}\")")]
    UnexpectedReply {
        /// Bytes read before deciding (at most 4 + `MAX_NOTICE_LENGTH`).
        received: usize,
        /// The first of them, escaped for display.
        preview: String,
    },

    /// Producer: a graceful close did not finish writing by its deadline (SPEC §6.2.5).
    #[error("the close deadline of {:.1} s passed with frames still unwritten", after.as_secs_f64())]
    Deadline {
        /// The deadline, counted from when the close began.
        after: Duration,
    },

    /// Session producer: the consumer named a sequence number outside what this side holds (SPEC
    /// §10.2): an ack beyond the frames accepted, or a resume point before the oldest frame retained
    /// (frames it had already acknowledged) or beyond the frames accepted.
    #[error(
        "the consumer's {what} names frame {next}, but this producer retains frames {first}..{accepted} \
         (frames before {first} were acknowledged; none from {accepted} on were accepted yet)"
    )]
    OutOfSequence {
        /// `"ack"` or `"resume"`.
        what: &'static str,
        /// The sequence number the consumer sent.
        next: u64,
        /// The oldest frame retained.
        first: u64,
        /// One past the last frame accepted.
        accepted: u64,
    },

    /// Session producer: the consumer acknowledged, or asked to resume at, a frame this producer
    /// never wrote (SPEC §10.2.5): a consumer cannot have handled it, so nothing is released and
    /// the session fails (a forged welcome or ack must never pass for a delivery).
    #[error(
        "the consumer's {what} names frame {next}, but this producer has written only the frames \
         below {written}: a consumer cannot have handled a frame it was never sent"
    )]
    NotWritten {
        /// `"ack"`, `"resume"` or `"goodbye"`.
        what: &'static str,
        /// The sequence number the consumer sent.
        next: u64,
        /// One past the last frame written in full on any connection.
        written: u64,
    },

    /// Session, either side: nothing at all (no frame, ack or heartbeat) arrived from the peer for
    /// `silent`, three heartbeat intervals (SPEC §10.6): the peer is declared stuck or gone.
    #[error(
        "nothing arrived from the peer for {:.1} s, not even a heartbeat: it is stuck or gone",
        silent.as_secs_f64()
    )]
    Unresponsive {
        /// How long nothing arrived.
        silent: Duration,
    },

    /// Session, either side: the peer's handshake or goodbye does not fit this session (SPEC §10.4,
    /// §10.7): another protocol version, a welcome for another session, a goodbye that disagrees
    /// with the frames received.
    #[error("the peer's {what}")]
    SessionMismatch {
        /// What does not fit, with the figures.
        what: String,
    },

    /// Session producer: no connection could be made, or resumed, for `reconnect_timeout`
    /// (SPEC §10.1). Says what became of every frame accepted.
    #[error(
        "gave up reconnecting after {:.1} s and {attempts} attempts: {delivered} frames delivered \
         (acknowledged), {unacked} sent but not acknowledged, {never_sent} never sent",
        after.as_secs_f64()
    )]
    ReconnectTimeout {
        /// Time since the session last had a connection.
        after: Duration,
        /// Attempts made in that time.
        attempts: u32,
        /// Frames the consumer acknowledged: handled.
        delivered: u64,
        /// Frames written at least once and not acknowledged: they may or may not have been handled.
        unacked: u64,
        /// Frames accepted and never written.
        never_sent: u64,
    },

    /// Reading or writing the transport failed.
    #[error("{0}")]
    Io(io::Error),
}

impl Error {
    /// A short stable name, as sent in a notice (SPEC §6.3): the codec's code for frame errors, else
    /// `idle_timeout`, `frame_timeout`, the notice's own code for `Rejected`, `peer_closed`,
    /// `stalled`, `unexpected_reply`, `deadline`, `out_of_sequence`, `unresponsive`,
    /// `session_mismatch`, `reconnect_timeout` or `io`.
    pub fn code(&self) -> &str {
        match self {
            Error::Frame(e) => e.code(),
            Error::IdleTimeout { .. } => "idle_timeout",
            Error::FrameTimeout { .. } => "frame_timeout",
            Error::Rejected(notice) => &notice.error,
            Error::PeerClosed { .. } => "peer_closed",
            Error::Stalled { .. } => "stalled",
            Error::UnexpectedReply { .. } => "unexpected_reply",
            Error::Deadline { .. } => "deadline",
            Error::OutOfSequence { .. } | Error::NotWritten { .. } => "out_of_sequence",
            Error::Unresponsive { .. } => "unresponsive",
            Error::SessionMismatch { .. } => "session_mismatch",
            Error::ReconnectTimeout { .. } => "reconnect_timeout",
            Error::Io(_) => "io",
        }
    }

    /// The notice a consumer sends before closing on this error, if one makes sense (SPEC §6.3): a
    /// framing error or a timeout; not a failed read. For a timeout the consumer core then names
    /// the frame awaited and its offset, which this error does not carry.
    pub fn notice(&self) -> Option<Notice> {
        match self {
            Error::Frame(e) => Some(Notice::from_error(e)),
            Error::IdleTimeout { .. }
            | Error::Unresponsive { .. }
            | Error::SessionMismatch { .. } => {
                Some(Notice::new(self.code(), 0, 0, self.to_string()))
            }
            Error::FrameTimeout { frame, .. } => {
                Some(Notice::new(self.code(), *frame, 0, self.to_string()))
            }
            _ => None,
        }
    }
}
