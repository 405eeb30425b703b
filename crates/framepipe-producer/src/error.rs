//! The producer's one error type (SPEC §6.4).

use std::io;

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

    /// The peer closed or reset the connection while frames were still being written.
    #[error(
        "the consumer closed the connection after {frames_written} frames ({bytes_written} bytes) \
         were written; delivery of those frames is unknown and the rest were not sent: {source}"
    )]
    PeerClosed {
        /// Frames written to the socket before the failure.
        frames_written: u64,
        /// Bytes written to the socket before the failure.
        bytes_written: u64,
        /// What the system said (`ECONNRESET`, `EPIPE`, or end of stream).
        source: io::Error,
    },

    /// Any other I/O failure on the connection.
    #[error(
        "I/O error after {frames_written} frames were written; delivery of those frames is \
         unknown and the rest were not sent: {source}"
    )]
    Io {
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
            | Error::Io { frames_written, .. } => *frames_written,
        }
    }

    /// Maps a write failure to [`Error::PeerClosed`] or [`Error::Io`].
    pub(crate) fn from_write(source: io::Error, frames_written: u64, bytes_written: u64) -> Self {
        match source.kind() {
            io::ErrorKind::ConnectionReset
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::UnexpectedEof => Error::PeerClosed {
                frames_written,
                bytes_written,
                source,
            },
            _ => Error::Io {
                frames_written,
                source,
            },
        }
    }
}
