//! The rejection notice: the one frame a consumer may send back before closing (SPEC §6.3).

use bytes::{BufMut, BytesMut};
use serde::{Deserialize, Serialize};

use crate::limits::HEADER_LEN;
use crate::Error;

/// Largest notice body a producer reads: 4 KiB (SPEC §6.3). A longer body is not a notice.
pub const MAX_NOTICE_LENGTH: u32 = 4096;

/// Why a consumer closed a connection, sent back to the producer as a single frame in the usual wire
/// format (SPEC §6.3).
///
/// The forward direction is unchanged: a producer that never reads its socket (such as a plain
/// JavaScript writer) is unaffected, and a framepipe producer that reads a notice reports
/// *which* frame was refused and why instead of a bare "connection reset".
///
/// ```
/// use framepipe_codec::{Error, Notice};
///
/// let err = Error::FrameTooLarge { frame: 7, offset: 4_200, length: 20_000_000, max: 16_777_216 };
/// let notice = Notice::from_error(&err);
/// assert_eq!(notice.error, "frame_too_large");
/// let wire = notice.to_frame();
/// assert_eq!(Notice::parse_frame(&wire), Some(notice));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notice {
    /// The error's code ([`Error::code`]).
    pub error: String,
    /// 0-based index of the refused frame.
    pub frame: u64,
    /// Byte offset of the refused frame's header in the stream.
    pub offset: u64,
    /// The consumer's error message, for people.
    pub message: String,
}

impl Notice {
    /// The notice for a decoding error; errors without a frame index get frame and offset 0.
    pub fn from_error(err: &Error) -> Notice {
        let mut message = err.to_string();
        // Keep the frame within MAX_NOTICE_LENGTH whatever the message.
        if message.len() > 3000 {
            let mut cut = 3000;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
        }
        Notice {
            error: err.code().to_owned(),
            frame: err.frame_index().unwrap_or(0),
            offset: err.offset().unwrap_or(0),
            message,
        }
    }

    /// The notice as one frame: 4-byte length, then compact JSON.
    pub fn to_frame(&self) -> BytesMut {
        let body = serde_json::to_vec(self).expect("a Notice always serializes");
        let mut out = BytesMut::with_capacity(HEADER_LEN + body.len());
        out.put_u32(body.len() as u32);
        out.put_slice(&body);
        out
    }

    /// Parses a notice from the first bytes a consumer sent back. `None` if they are not exactly one
    /// well-formed notice frame of at most [`MAX_NOTICE_LENGTH`] bytes.
    pub fn parse_frame(bytes: &[u8]) -> Option<Notice> {
        let header: [u8; HEADER_LEN] = bytes.get(..HEADER_LEN)?.try_into().ok()?;
        let len = u32::from_be_bytes(header);
        if len > MAX_NOTICE_LENGTH || bytes.len() != HEADER_LEN + len as usize {
            return None;
        }
        serde_json::from_slice(&bytes[HEADER_LEN..]).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_whole_well_formed_notice_parses() {
        let n = Notice::from_error(&Error::EmptyFrame {
            frame: 2,
            offset: 9,
        });
        let wire = n.to_frame();
        assert_eq!(Notice::parse_frame(&wire).as_ref(), Some(&n));
        assert_eq!(Notice::parse_frame(&wire[..wire.len() - 1]), None);
        let mut longer = wire.to_vec();
        longer.push(b' ');
        assert_eq!(Notice::parse_frame(&longer), None);
        assert_eq!(Notice::parse_frame(b"\x00\x00\x00\x02{}"), None);
        assert_eq!(Notice::parse_frame(b"\xff\xff\xff\xff"), None);
    }
}
