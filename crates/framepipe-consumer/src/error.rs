//! The consumer's one error type (SPEC §7.4).

use std::io;
use std::time::Duration;

use framepipe_flow::PeerAddr;

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
        peer: PeerAddr,
        /// The decoding error, naming the frame and its byte offset.
        source: framepipe_codec::Error,
    },

    /// `peer` sent nothing for `idle` while no frame was in progress (`idle_timeout`, SPEC §7.6);
    /// the connection was closed after a notice.
    #[error(
        "{peer}: closed after {} s without data between frames (idle_timeout; the peer connected \
         and went quiet, or vanished without closing)",
        idle.as_secs_f64()
    )]
    IdleTimeout {
        /// The producer's address.
        peer: PeerAddr,
        /// How long it was idle.
        idle: Duration,
    },

    /// Frame `frame` from `peer` was not complete `waited` after it began (`frame_timeout`,
    /// SPEC §7.6): the peer sends too slowly or stopped mid-frame. The connection was closed after a
    /// notice; frames before it were delivered.
    #[error(
        "{peer}: frame {frame} was still incomplete {} s after it began ({buffered} bytes \
         buffered, {missing} more due; frame_timeout): the peer sends too slowly or stopped \
         mid-frame",
        waited.as_secs_f64()
    )]
    FrameTimeout {
        /// The producer's address.
        peer: PeerAddr,
        /// Index of the incomplete frame in the stream.
        frame: u64,
        /// Bytes of it buffered (a body being skipped buffers none).
        buffered: u64,
        /// Bytes still due to complete it (the rest of the header, if that was incomplete).
        missing: u64,
        /// Time since it began, not counting time the reader waited for memory.
        waited: Duration,
    },

    /// A connection from `peer` was refused because `limit` connections were open
    /// (`max_open_connections`, SPEC §7.6). The peer was sent a notice and the connection closed.
    #[error(
        "refused connection from {peer}: max_open_connections ({limit}) are open; it was sent a \
         connection_limit notice and closed"
    )]
    ConnectionLimit {
        /// The refused peer's address.
        peer: PeerAddr,
        /// The limit.
        limit: usize,
    },

    /// The settings cannot work together; nothing was bound.
    #[error("invalid consumer settings: {0}")]
    Config(String),

    /// Reading from `peer` failed; the connection is closed.
    #[error("{peer}: reading failed: {source}")]
    Io {
        /// The producer's address.
        peer: PeerAddr,
        /// What the system said.
        source: io::Error,
    },
}

impl Error {
    /// The connection error for what the core reported.
    pub(crate) fn from_core(peer: &PeerAddr, e: framepipe_proto::Error) -> Error {
        let peer = peer.clone();
        match e {
            framepipe_proto::Error::Frame(source) => Error::Frame { peer, source },
            framepipe_proto::Error::IdleTimeout { idle } => Error::IdleTimeout { peer, idle },
            framepipe_proto::Error::FrameTimeout {
                frame,
                buffered,
                missing,
                waited,
            } => Error::FrameTimeout {
                peer,
                frame,
                buffered,
                missing,
                waited,
            },
            framepipe_proto::Error::Io(source) => Error::Io { peer, source },
            other => Error::Io {
                peer,
                source: io::Error::other(other),
            },
        }
    }

    /// A short stable name for the error, as sent in a notice (SPEC §6.3): the codec's code for
    /// frame errors, else `idle_timeout`, `frame_timeout`, `connection_limit`, `io`, `bind` or
    /// `config`.
    pub fn code(&self) -> &'static str {
        match self {
            Error::Frame { source, .. } => source.code(),
            Error::IdleTimeout { .. } => "idle_timeout",
            Error::FrameTimeout { .. } => "frame_timeout",
            Error::ConnectionLimit { .. } => "connection_limit",
            Error::Io { .. } => "io",
            Error::Bind { .. } => "bind",
            Error::Config(_) => "config",
        }
    }

    /// `true` if the connection ended because of this error; `false` if only one frame was lost.
    pub fn is_fatal(&self) -> bool {
        match self {
            Error::Frame { source, .. } => !source.is_frame_local(),
            Error::Bind { .. }
            | Error::Io { .. }
            | Error::IdleTimeout { .. }
            | Error::FrameTimeout { .. }
            | Error::ConnectionLimit { .. }
            | Error::Config(_) => true,
        }
    }

    /// `true` if trying again may work: a connection ended by a timeout, an I/O error or the
    /// connection limit; binding where the address may become free. `false` for a frame the
    /// consumer will refuse again and for settings that cannot work.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Frame { .. } | Error::Config(_) => false,
            Error::Bind { .. }
            | Error::Io { .. }
            | Error::IdleTimeout { .. }
            | Error::FrameTimeout { .. }
            | Error::ConnectionLimit { .. } => true,
        }
    }

    /// The producer's address, for errors on a connection.
    pub fn peer(&self) -> Option<&PeerAddr> {
        match self {
            Error::Frame { peer, .. }
            | Error::Io { peer, .. }
            | Error::IdleTimeout { peer, .. }
            | Error::FrameTimeout { peer, .. }
            | Error::ConnectionLimit { peer, .. } => Some(peer),
            Error::Bind { .. } | Error::Config(_) => None,
        }
    }
}
