//! The producer's one error type (SPEC §6.4).

use std::io;
use std::time::Duration;

use framepipe_codec::Notice;
use framepipe_flow::PeerAddr;
use framepipe_proto::codes;

/// Why a producer stopped before sending everything, or could not take an item.
///
/// Every variant that ends a connection says how many frames were written before the failure
/// ([`Error::frames_written`]) and how many accepted frames were never sent ([`Error::never_sent`]).
/// "Written" means handed to the kernel; whether the consumer processed them is unknown unless the
/// variant says otherwise.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The connection could not be made (refused, unreachable, name not resolved).
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        /// The address as given.
        addr: String,
        /// What the system said.
        source: io::Error,
    },

    /// A payload could not be turned into a frame: serialization failed or its body exceeds this
    /// producer's `max_frame_length`. Nothing of it was sent. From a stream (`send_json`), frames
    /// before it were sent and the connection was closed cleanly; the rest of the stream was not.
    /// From a [`Sender`](crate::Sender), only this item was refused and the connection goes on.
    #[error(
        "frame {frame} could not be encoded, so it was not sent ({frames_written} frames before it \
         were written): {source}"
    )]
    Encode {
        /// 0-based index of the payload among those accepted.
        frame: u64,
        /// Frames written before it.
        frames_written: u64,
        /// The codec's error.
        source: framepipe_codec::Error,
    },

    /// The consumer refused a frame, or the connection, and closed it, saying why (SPEC §6.3). The
    /// frames before `notice.frame` were handled by the consumer (a framepipe consumer sends the
    /// notice after its handler has finished with them); that frame and later ones were not.
    #[error(
        "the consumer at {peer} rejected frame {} ({}) after {frames_written} frames were written \
         ({never_sent} accepted frames never sent): {}",
        notice.frame, notice.error, notice.message
    )]
    Rejected {
        /// The consumer's address.
        peer: PeerAddr,
        /// Frames this producer had written when it learned of the rejection.
        frames_written: u64,
        /// Frames accepted and not written.
        never_sent: u64,
        /// The consumer's notice.
        notice: Notice,
    },

    /// The consumer closed or reset the connection while frames were still to be written, or
    /// closed its end while this producer could still send more (SPEC §6.2.6), or reset it after
    /// the last frame before confirming.
    #[error(
        "the consumer at {peer} closed the connection after {frames_written} frames \
         ({bytes_written} bytes) were written; delivery of those frames is unknown and \
         {never_sent} accepted frames were never sent: {source}"
    )]
    PeerClosed {
        /// The consumer's address.
        peer: PeerAddr,
        /// Frames written to the transport before the failure.
        frames_written: u64,
        /// Bytes written before the failure (a frame cut short counts in part).
        bytes_written: u64,
        /// Frames accepted and not written.
        never_sent: u64,
        /// What the system said (`ECONNRESET`, `EPIPE`), or `UnexpectedEof` for an orderly close.
        source: io::Error,
    },

    /// The consumer accepted no bytes at all for `stall_timeout` while this producer had bytes to
    /// write: its TCP window stayed closed, while sending or, after the last frame, while the
    /// kernel still held unacknowledged bytes (SPEC §6.2). The connection was reset.
    #[error(
        "the consumer at {peer} accepted no bytes for {:.1} s (its TCP window stayed closed), so \
         the connection was closed; delivery of the {frames_written} frames ({bytes_written} bytes) \
         written is unknown and {never_sent} accepted frames were never sent; if the consumer may \
         pause that long, raise stall_timeout",
        waited.as_secs_f64()
    )]
    Stalled {
        /// The consumer's address.
        peer: PeerAddr,
        /// Frames written before the stall.
        frames_written: u64,
        /// Bytes written before the stall.
        bytes_written: u64,
        /// Frames accepted and not written.
        never_sent: u64,
        /// How long nothing was accepted (at least `stall_timeout`).
        waited: Duration,
    },

    /// The consumer sent back bytes that cannot be a notice (SPEC §6.3): usually the address is not
    /// a framepipe consumer (an HTTP server answering `400 Bad Request`, say). The connection was
    /// reset.
    #[error(
        "the consumer at {peer} sent {received} bytes that are not a framepipe notice (starts \
         with \"{preview}\"); is it a framepipe consumer? the connection was closed; delivery of \
         the {frames_written} frames written is unknown"
    )]
    UnexpectedReply {
        /// The consumer's address.
        peer: PeerAddr,
        /// Frames written before the reply was read.
        frames_written: u64,
        /// Bytes read before deciding (at most 4 + `MAX_NOTICE_LENGTH`).
        received: usize,
        /// The first bytes read (at most 32), printable ASCII as is and anything else escaped.
        preview: String,
    },

    /// A close with a deadline ([`Sender::close_within`](crate::Sender::close_within)) ran out with
    /// frames still unwritten; the connection was reset (SPEC §6.2.5).
    #[error(
        "closing the connection to {peer} took longer than its deadline of {:.1} s: \
         {frames_written} frames were written, {never_sent} accepted frames were never sent",
        after.as_secs_f64()
    )]
    Deadline {
        /// The consumer's address.
        peer: PeerAddr,
        /// Frames written.
        frames_written: u64,
        /// Frames accepted and not written.
        never_sent: u64,
        /// The deadline.
        after: Duration,
    },

    /// [`Sender::try_reserve`](crate::Sender::try_reserve): the queue holds its whole byte budget
    /// (or its most frames), so the item was not taken. Try again later, or wait with `reserve`.
    #[error(
        "the producer's queue is full ({queued_bytes} bytes queued, budget {budget}); the item was \
         not taken"
    )]
    Full {
        /// Bytes queued and promised to permits.
        queued_bytes: usize,
        /// The byte budget.
        budget: usize,
    },

    /// The sender is closed: `close` was called, every handle was dropped, or the connection
    /// ended. The connection's own outcome comes from `close`.
    #[error("the producer is closed: {0}")]
    Closed(&'static str),

    /// A session failed (SPEC §10): it gave up reconnecting (`reconnect_timeout`), or the consumer
    /// said something a new connection would not change (a handler that failed, a frame refused,
    /// a resume point this producer no longer holds). Says what became of every frame.
    #[error("session {session}: {source}{}", counts(source, *delivered, *unacked, *never_sent))]
    Session {
        /// The session's fingerprint (`SessionId::fingerprint`): never the whole id (SPEC §10.4.6).
        session: String,
        /// Frames acknowledged: handled by the consumer.
        delivered: u64,
        /// Frames written at least once and not acknowledged.
        unacked: u64,
        /// Frames accepted and never written.
        never_sent: u64,
        /// Why, from the session core.
        source: framepipe_proto::Error,
    },

    /// Any other I/O failure on the connection.
    #[error(
        "I/O error on the connection to {peer} after {frames_written} frames were written; \
         delivery of those frames is unknown and {never_sent} accepted frames were never sent: \
         {source}"
    )]
    Io {
        /// The consumer's address.
        peer: PeerAddr,
        /// Frames written before the failure.
        frames_written: u64,
        /// Frames accepted and not written.
        never_sent: u64,
        /// What the system said.
        source: io::Error,
    },
}

/// The counts a session error adds, unless its source already says them.
fn counts(
    source: &framepipe_proto::Error,
    delivered: u64,
    unacked: u64,
    never_sent: u64,
) -> String {
    match source {
        framepipe_proto::Error::ReconnectTimeout { .. } => String::new(),
        _ => format!(
            "; {delivered} frames delivered (acknowledged), {unacked} sent but not acknowledged, \
             {never_sent} never sent"
        ),
    }
}

/// Counts carried by the errors that end a connection.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Progress {
    pub(crate) frames_written: u64,
    pub(crate) bytes_written: u64,
    pub(crate) never_sent: u64,
}

impl Error {
    /// Frames written to the transport before the failure (0 for errors that end no connection).
    pub fn frames_written(&self) -> u64 {
        match self {
            Error::Encode { frames_written, .. }
            | Error::Rejected { frames_written, .. }
            | Error::PeerClosed { frames_written, .. }
            | Error::Stalled { frames_written, .. }
            | Error::UnexpectedReply { frames_written, .. }
            | Error::Deadline { frames_written, .. }
            | Error::Io { frames_written, .. } => *frames_written,
            Error::Connect { .. } | Error::Full { .. } | Error::Closed(_) => 0,
            Error::Session {
                delivered, unacked, ..
            } => delivered + unacked,
        }
    }

    /// Frames accepted for sending that were never written in full.
    pub fn never_sent(&self) -> u64 {
        match self {
            Error::Rejected { never_sent, .. }
            | Error::PeerClosed { never_sent, .. }
            | Error::Stalled { never_sent, .. }
            | Error::Deadline { never_sent, .. }
            | Error::Io { never_sent, .. }
            | Error::Session { never_sent, .. } => *never_sent,
            _ => 0,
        }
    }

    /// A short stable name: `connect`, `encode`, the notice's own code for `Rejected` (such as
    /// `frame_too_large` or `shutting_down`), `peer_closed`, `stalled`, `unexpected_reply`,
    /// `deadline`, `full`, `closed`, `io`, or a session's error code (`reconnect_timeout`,
    /// `out_of_sequence`, a notice's code, …).
    pub fn code(&self) -> &str {
        match self {
            Error::Connect { .. } => "connect",
            Error::Encode { .. } => "encode",
            Error::Rejected { notice, .. } => &notice.error,
            Error::PeerClosed { .. } => "peer_closed",
            Error::Stalled { .. } => "stalled",
            Error::UnexpectedReply { .. } => "unexpected_reply",
            Error::Deadline { .. } => "deadline",
            Error::Full { .. } => "full",
            Error::Closed(_) => "closed",
            Error::Io { .. } => "io",
            Error::Session { source, .. } => source.code(),
        }
    }

    /// `true` if sending again (on a new connection, or after a pause) may work: the consumer was
    /// unreachable, went away, stalled, is shutting down, had too many connections or timed this
    /// one out, or the queue was momentarily full. `false` for what would fail the same way again:
    /// a payload that cannot be encoded, a frame the consumer refuses, a peer that is not a
    /// framepipe consumer, a closed sender. A notice's code decides by the one rule of
    /// `framepipe_proto::codes::retry` (SPEC §6.3.5), which sessions resume by too.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Connect { .. }
            | Error::PeerClosed { .. }
            | Error::Stalled { .. }
            | Error::Deadline { .. }
            | Error::Full { .. }
            | Error::Io { .. } => true,
            // The one rule for notices (SPEC §6.3.5), shared with the session's resume.
            Error::Rejected { notice, .. } => codes::retry(&notice.error) != codes::Retry::Never,
            Error::Encode { .. } | Error::UnexpectedReply { .. } | Error::Closed(_) => false,
            // A session that gave up reconnecting may get through later, and so may one whose
            // consumer's application refused a frame (`Retry::Later`); the rest would not.
            Error::Session { source, .. } => match source {
                framepipe_proto::Error::ReconnectTimeout { .. } => true,
                framepipe_proto::Error::Rejected(notice) => {
                    codes::retry(&notice.error) != codes::Retry::Never
                }
                _ => false,
            },
        }
    }

    /// The error that ended a connection, from what its core reported.
    pub(crate) fn from_core(peer: &PeerAddr, p: Progress, e: framepipe_proto::Error) -> Error {
        let peer = peer.clone();
        let Progress {
            frames_written,
            bytes_written,
            never_sent,
        } = p;
        match e {
            framepipe_proto::Error::Rejected(notice) => Error::Rejected {
                peer,
                frames_written,
                never_sent,
                notice,
            },
            framepipe_proto::Error::PeerClosed { source } => Error::PeerClosed {
                peer,
                frames_written,
                bytes_written,
                never_sent,
                source,
            },
            framepipe_proto::Error::Stalled { waited } => Error::Stalled {
                peer,
                frames_written,
                bytes_written,
                never_sent,
                waited,
            },
            framepipe_proto::Error::UnexpectedReply { received, preview } => {
                Error::UnexpectedReply {
                    peer,
                    frames_written,
                    received,
                    preview,
                }
            }
            framepipe_proto::Error::Deadline { after } => Error::Deadline {
                peer,
                frames_written,
                never_sent,
                after,
            },
            framepipe_proto::Error::Io(source) => Error::Io {
                peer,
                frames_written,
                never_sent,
                source,
            },
            other => Error::Io {
                peer,
                frames_written,
                never_sent,
                source: io::Error::other(other),
            },
        }
    }
}
