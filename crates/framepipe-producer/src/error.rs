//! The producer's one error type (SPEC §6.4).

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use framepipe_codec::Notice;

/// Why a producer stopped before sending its whole stream.
///
/// Every variant after [`Error::Connect`] says how many frames were written to the socket before the
/// failure ([`Error::frames_written`]). "Written" means handed to the kernel; whether the peer
/// processed them is unknown unless the variant says otherwise.
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
    /// producer's `max_frame_length`. Frames before it were sent and the connection was closed
    /// cleanly; the payload and the rest of the stream were not sent.
    #[error(
        "frame {frame} could not be encoded, so it and the rest of the stream were not sent \
         ({frames_written} frames before it were written): {source}"
    )]
    Encode {
        /// 0-based index of the payload in the stream.
        frame: u64,
        /// Frames written before it.
        frames_written: u64,
        /// The codec's error.
        source: framepipe_codec::Error,
    },

    /// The consumer refused a frame and closed the connection, saying why (SPEC §6.3). The frames
    /// before the refused one were read by the consumer; the refused frame and everything after it
    /// were not processed.
    #[error(
        "the consumer rejected frame {} ({}) after {frames_written} frames were written: {}",
        notice.frame, notice.error, notice.message
    )]
    Rejected {
        /// Frames this producer had written when it learned of the rejection.
        frames_written: u64,
        /// The consumer's notice.
        notice: Notice,
    },

    /// The peer closed or reset the connection while frames were still being written (or, after
    /// the last frame, reset it before confirming).
    #[error(
        "the consumer at {peer} closed the connection after {frames_written} frames \
         ({bytes_written} bytes) were written; delivery of those frames is unknown and the rest \
         were not sent: {source}"
    )]
    PeerClosed {
        /// The consumer's address.
        peer: SocketAddr,
        /// Frames written to the socket before the failure.
        frames_written: u64,
        /// Bytes written to the socket before the failure (a frame cut short counts in part).
        bytes_written: u64,
        /// What the system said (`ECONNRESET`, `EPIPE`, or end of stream).
        source: io::Error,
    },

    /// The consumer accepted no bytes at all for `stall_timeout` while this producer had bytes to
    /// write: its TCP window stayed closed, while sending or, after the last frame, while the
    /// kernel still held unacknowledged bytes (SPEC §6.2). The connection was reset, so bytes the
    /// kernel still held were dropped.
    #[error(
        "the consumer at {peer} accepted no bytes for {:.1} s (its TCP window stayed closed), so \
         the connection was closed; delivery of the {frames_written} frames ({bytes_written} bytes) \
         written is unknown and the rest were not sent; if the consumer may pause that long, raise \
         stall_timeout",
        waited.as_secs_f64()
    )]
    Stalled {
        /// The consumer's address.
        peer: SocketAddr,
        /// Frames written to the socket before the stall.
        frames_written: u64,
        /// Bytes written to the socket before the stall.
        bytes_written: u64,
        /// How long nothing was accepted (at least `stall_timeout`).
        waited: Duration,
    },

    /// The consumer sent back bytes that cannot be a rejection notice (SPEC §6.3): the first four
    /// announce more than [`MAX_NOTICE_LENGTH`](framepipe_codec::MAX_NOTICE_LENGTH) bytes, the body
    /// is not a notice, or the stream ended inside one. Usually the address is not a framepipe
    /// consumer (an HTTP server answering `400 Bad Request`, say). The connection was reset.
    #[error(
        "the consumer at {peer} sent {received} bytes that are not a framepipe rejection notice \
         (starts with \"{preview}\"); is it a framepipe consumer? the connection was closed; \
         delivery of the {frames_written} frames written is unknown"
    )]
    UnexpectedReply {
        /// The consumer's address.
        peer: SocketAddr,
        /// Frames written to the socket before the reply was read.
        frames_written: u64,
        /// Bytes read from the consumer before deciding (at most 4 + `MAX_NOTICE_LENGTH`; it may
        /// have sent more, which was not read).
        received: usize,
        /// The first bytes read (at most 32), printable ASCII as is and anything else escaped
        /// (`\r`, `\x00`); ends with `…` if more were read.
        preview: String,
    },

    /// Any other I/O failure on the connection.
    #[error(
        "I/O error on the connection to {peer} after {frames_written} frames were written; \
         delivery of those frames is unknown and the rest were not sent: {source}"
    )]
    Io {
        /// The consumer's address.
        peer: SocketAddr,
        /// Frames written to the socket before the failure.
        frames_written: u64,
        /// What the system said.
        source: io::Error,
    },
}

impl Error {
    /// Frames written to the socket before the failure (0 for [`Error::Connect`]).
    pub fn frames_written(&self) -> u64 {
        match self {
            Error::Connect { .. } => 0,
            Error::Encode { frames_written, .. }
            | Error::Rejected { frames_written, .. }
            | Error::PeerClosed { frames_written, .. }
            | Error::Stalled { frames_written, .. }
            | Error::UnexpectedReply { frames_written, .. }
            | Error::Io { frames_written, .. } => *frames_written,
        }
    }

    /// Maps a write or read failure to [`Error::PeerClosed`] or [`Error::Io`].
    pub(crate) fn from_io(
        source: io::Error,
        peer: SocketAddr,
        frames_written: u64,
        bytes_written: u64,
    ) -> Self {
        match source.kind() {
            io::ErrorKind::ConnectionReset
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::UnexpectedEof => Error::PeerClosed {
                peer,
                frames_written,
                bytes_written,
                source,
            },
            _ => Error::Io {
                peer,
                frames_written,
                source,
            },
        }
    }
}
