//! The consumer's one error type (SPEC §7.4).

use std::io;
use std::net::SocketAddr;

/// What went wrong on the consumer side.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The listening socket could not be set up.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address as given.
        addr: String,
        /// What the system said.
        source: io::Error,
    },

    /// A frame from `peer` was refused (SPEC §3, §4). If [`framepipe_codec::Error::is_frame_local`]
    /// is `true` only that frame was lost and the connection goes on; otherwise the connection was
    /// closed, after a rejection notice to the producer (SPEC §6.3) where one makes sense.
    #[error("{peer}: {source}")]
    Frame {
        /// The producer's address.
        peer: SocketAddr,
        /// The decoding error, naming the frame and its byte offset.
        source: framepipe_codec::Error,
    },

    /// Reading from `peer` failed; the connection is closed.
    #[error("{peer}: reading failed: {source}")]
    Io {
        /// The producer's address.
        peer: SocketAddr,
        /// What the system said.
        source: io::Error,
    },
}

impl Error {
    /// `true` if the connection ended because of this error; `false` if only one frame was lost.
    pub fn is_fatal(&self) -> bool {
        match self {
            Error::Frame { source, .. } => !source.is_frame_local(),
            Error::Bind { .. } | Error::Io { .. } => true,
        }
    }

    /// The producer's address, for errors on a connection.
    pub fn peer(&self) -> Option<SocketAddr> {
        match self {
            Error::Frame { peer, .. } | Error::Io { peer, .. } => Some(*peer),
            Error::Bind { .. } => None,
        }
    }
}
