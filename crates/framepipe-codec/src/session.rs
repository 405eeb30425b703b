//! The bytes of session mode (SPEC §9): control frames between the data frames of a stream, and the
//! framer that tells them apart.
//!
//! A data frame of a session is byte for byte a plain frame (a 4-byte big-endian length with its top
//! bit clear, then the body). A control frame sets that top bit: its first byte is `0x80 | kind`, the
//! next three its payload length (at most [`MAX_CONTROL_LENGTH`]).
//!
//! ```text
//! data frame:     0NNNNNNN NNNNNNNN NNNNNNNN NNNNNNNN   body: N bytes       N < 2^31
//! control frame:  1KKKKKKK LLLLLLLL LLLLLLLL LLLLLLLL   payload: L bytes    L <= 4,096
//! ```
//!
//! A session stream opens with a hello, whose first byte is [`HELLO_FIRST_BYTE`] (`0x81`); a plain
//! stream that a consumer with default limits accepts never starts with that byte (SPEC §9.2), so a
//! consumer can serve both on one port by looking at the first byte ([`starts_session`]).
//!
//! This module only reads and writes the bytes; what the frames ask of each side (handshake, acks,
//! resume) belongs to the session cores.
//!
//! [`MAX_CONTROL_LENGTH`]: crate::limits::MAX_CONTROL_LENGTH

mod control;
mod framer;

pub use control::{
    Control, Hello, Kind, Pacing, ResumeSecret, SessionId, Welcome, CONTROL_BIT, FLAG_SECRET,
    HELLO_FIRST_BYTE, MAGIC, PROTOCOL_VERSION, SECRET_LEN,
};
pub use framer::{SessionFramer, Unit};

/// `true` if a stream whose first byte is `first` is a session stream (SPEC §9.2.1): the first byte
/// of a hello. Any other first byte starts a plain stream.
///
/// ```
/// use framepipe_codec::session::starts_session;
///
/// assert!(starts_session(0x81));
/// assert!(!starts_session(0x00)); // a plain frame's length
/// ```
pub fn starts_session(first: u8) -> bool {
    first == HELLO_FIRST_BYTE
}

#[cfg(test)]
mod tests;
