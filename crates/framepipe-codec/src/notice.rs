//! The rejection notice: the one frame a consumer may send back before closing (SPEC §6.3), and the
//! one rule for reading it.

use bytes::{BufMut, BytesMut};
use serde::{Deserialize, Serialize};

use crate::limits::HEADER_LEN;
use crate::{parse_json_body, Error};

/// Largest notice body a producer reads: 4 KiB (SPEC §6.3). A longer body is not a notice.
pub const MAX_NOTICE_LENGTH: u32 = 4096;

/// Why a consumer closed a connection, sent back to the producer as a single frame in the usual wire
/// format (SPEC §6.3).
///
/// The forward direction is unchanged: a producer that never reads its socket (such as a plain
/// JavaScript writer) is unaffected, and a framepipe producer that reads a notice reports
/// *which* frame was refused and why instead of a bare "connection reset".
///
/// Deserializing is lenient, by the rule of [`Notice::read`]: `error` is required, `frame`, `offset`
/// and `message` default to 0 and empty, unknown fields are ignored.
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
    #[serde(default)]
    pub frame: u64,
    /// Byte offset of the refused frame's header in the stream.
    #[serde(default)]
    pub offset: u64,
    /// The consumer's error message, for people.
    #[serde(default)]
    pub message: String,
}

/// What the first bytes a consumer sent back are (SPEC §6.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NoticeRead {
    /// A prefix of a notice: read on.
    Incomplete,
    /// A whole notice; bytes after it are ignored.
    Notice(Notice),
    /// Not a notice, whatever follows.
    NotNotice,
}

impl Notice {
    /// A notice with `code` ([`Error::code`], or a newer one such as `connection_limit`), the refused
    /// frame's index and header offset, and `message`, cut at a character boundary so that the
    /// notice's body stays within [`MAX_NOTICE_LENGTH`] once serialized (with JSON escapes counted).
    ///
    /// Only the message is cut: a code so long that it alone does not fit (codes are short names)
    /// gives a frame that is over the limit, which a producer reads as no notice at all.
    pub fn new(code: &str, frame: u64, offset: u64, message: impl Into<String>) -> Notice {
        let mut notice = Notice {
            error: code.to_owned(),
            frame,
            offset,
            message: String::new(),
        };
        let mut message = message.into();
        // The body without the message's characters (it holds the message's two quotes).
        let fixed = notice.body().len();
        let budget = (MAX_NOTICE_LENGTH as usize).saturating_sub(fixed);
        let mut used = 0;
        let cut = message
            .char_indices()
            .find(|&(_, c)| {
                used += json_len(c);
                used > budget
            })
            .map(|(i, _)| i);
        if let Some(cut) = cut {
            message.truncate(cut);
        }
        notice.message = message;
        notice
    }

    /// The notice for a decoding error; errors without a frame index get frame and offset 0. The
    /// message is the error's, cut to fit as by [`Notice::new`].
    pub fn from_error(err: &Error) -> Notice {
        Notice::new(
            err.code(),
            err.frame_index().unwrap_or(0),
            err.offset().unwrap_or(0),
            err.to_string(),
        )
    }

    /// The notice as one frame: 4-byte length, then compact JSON. Allocates the frame once (and the
    /// body once while serializing).
    pub fn to_frame(&self) -> BytesMut {
        let body = self.body();
        let mut out = BytesMut::with_capacity(HEADER_LEN + body.len());
        out.put_u32(body.len() as u32);
        out.put_slice(&body);
        out
    }

    /// The notice's body: compact JSON.
    pub(crate) fn body(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a Notice always serializes")
    }

    /// The notice a whole body holds, by the rule of [`Notice::read`], if it is one. Its text
    /// comes from the peer: control characters in `error` and `message` are escaped
    /// ([`escape_text`](crate::escape_text)), so that no newline or terminal escape from a peer
    /// reaches a log line or a report raw (SPEC §6.3.3).
    pub(crate) fn from_body(body: &[u8]) -> Option<Notice> {
        let mut notice = parse_json_body::<Notice>(body, 0, 0).ok()?;
        if let std::borrow::Cow::Owned(error) = crate::escape_text(&notice.error) {
            notice.error = error;
        }
        if let std::borrow::Cow::Owned(message) = crate::escape_text(&notice.message) {
            notice.message = message;
        }
        Some(notice)
    }

    /// Decides what `bytes`, the first bytes a consumer sent back, are (SPEC §6.3.3, §6.3.4). The
    /// only rule for reading a notice; it looks at no more than `4 + MAX_NOTICE_LENGTH` bytes, so a
    /// reader needs one buffer of that size and no more.
    ///
    /// - Fewer than 4 bytes, or a header of at most [`MAX_NOTICE_LENGTH`] whose body has not all
    ///   arrived: [`NoticeRead::Incomplete`].
    /// - A header over [`MAX_NOTICE_LENGTH`]: [`NoticeRead::NotNotice`], decided from those 4 bytes.
    /// - A whole body that is one UTF-8 JSON object (SPEC §1.2, §3.2) with a string `error`:
    ///   [`NoticeRead::Notice`]. `frame`, `offset` and `message` default to 0 and empty, unknown
    ///   codes and fields are accepted (a newer consumer's notice is still a rejection), and bytes
    ///   after the body are ignored. Any other whole body: [`NoticeRead::NotNotice`].
    ///
    /// ```
    /// use framepipe_codec::{Notice, NoticeRead};
    ///
    /// let wire = b"\x00\x00\x00\x1c{\"error\":\"connection_limit\"}";
    /// assert_eq!(Notice::read(&wire[..10]), NoticeRead::Incomplete);
    /// let NoticeRead::Notice(notice) = Notice::read(wire) else { panic!("a notice") };
    /// assert_eq!((notice.error.as_str(), notice.frame), ("connection_limit", 0));
    /// assert_eq!(Notice::read(b"HTTP/1.1 400"), NoticeRead::NotNotice);
    /// ```
    pub fn read(bytes: &[u8]) -> NoticeRead {
        let Some(header) = bytes.get(..HEADER_LEN) else {
            return NoticeRead::Incomplete;
        };
        let len = u32::from_be_bytes(header.try_into().expect("4 bytes"));
        if len > MAX_NOTICE_LENGTH {
            return NoticeRead::NotNotice;
        }
        let Some(body) = bytes.get(HEADER_LEN..HEADER_LEN + len as usize) else {
            return NoticeRead::Incomplete;
        };
        match Notice::from_body(body) {
            Some(notice) => NoticeRead::Notice(notice),
            None => NoticeRead::NotNotice,
        }
    }

    /// The notice `bytes` hold if they are exactly one whole notice frame (by the rule of
    /// [`Notice::read`]), else `None`.
    pub fn parse_frame(bytes: &[u8]) -> Option<Notice> {
        let header: [u8; HEADER_LEN] = bytes.get(..HEADER_LEN)?.try_into().ok()?;
        if bytes.len() as u64 != HEADER_LEN as u64 + u64::from(u32::from_be_bytes(header)) {
            return None;
        }
        match Notice::read(bytes) {
            NoticeRead::Notice(notice) => Some(notice),
            NoticeRead::Incomplete | NoticeRead::NotNotice => None,
        }
    }
}

/// Bytes `c` takes inside a JSON string as serde_json writes it: `"` and `\` and the control
/// characters with a short escape take 2, other control characters 6 (`\u001f`), anything else its
/// UTF-8 length.
fn json_len(c: char) -> usize {
    match c {
        '"' | '\\' | '\u{8}' | '\u{c}' | '\n' | '\r' | '\t' => 2,
        '\0'..='\u{1f}' => 6,
        c => c.len_utf8(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMIT: usize = MAX_NOTICE_LENGTH as usize;

    fn notice(error: &str) -> Notice {
        Notice::new(error, 3, 312, "frame 3 at byte 312 announces 5000 bytes")
    }

    fn wire(body: &[u8]) -> Vec<u8> {
        let mut wire = (body.len() as u32).to_be_bytes().to_vec();
        wire.extend_from_slice(body);
        wire
    }

    /// `bytes` read as arriving in two pieces split at every offset: `Incomplete` until the end (or
    /// until the bytes decide), then the same as for the whole.
    fn read_at_every_split(bytes: &[u8]) -> NoticeRead {
        let whole = Notice::read(bytes);
        for cut in 0..bytes.len() {
            match Notice::read(&bytes[..cut]) {
                NoticeRead::Incomplete => {}
                early => assert_eq!(early, whole, "decided at {cut} of {}", bytes.len()),
            }
        }
        whole
    }

    #[test]
    fn a_whole_notice_is_a_notice_whatever_its_code() {
        for code in [
            "frame_too_large",
            "connection_limit",
            "a_code_from_the_future",
        ] {
            let n = notice(code);
            let wire = n.to_frame();
            assert_eq!(read_at_every_split(&wire), NoticeRead::Notice(n));
        }
    }

    #[test]
    fn a_notice_with_missing_or_extra_fields_still_reads_as_one() {
        let wire = wire(br#"{"error":"connection_limit","message":"busy","retry_ms":500}"#);
        let expected = Notice::new("connection_limit", 0, 0, "busy");
        assert_eq!(
            read_at_every_split(&wire),
            NoticeRead::Notice(expected.clone())
        );
        assert_eq!(Notice::parse_frame(&wire), Some(expected));
    }

    #[test]
    fn bytes_after_a_whole_notice_are_ignored() {
        let n = notice("truncated");
        let mut wire = n.to_frame().to_vec();
        wire.extend_from_slice(b"trailing");
        assert_eq!(Notice::read(&wire), NoticeRead::Notice(n));
        // … but a frame followed by anything is not exactly one notice frame.
        assert_eq!(Notice::parse_frame(&wire), None);
    }

    #[test]
    fn a_header_over_the_notice_limit_is_decided_from_four_bytes() {
        assert_eq!(Notice::read(b"HTT"), NoticeRead::Incomplete);
        assert_eq!(Notice::read(b"HTTP"), NoticeRead::NotNotice);
        assert_eq!(
            read_at_every_split(b"HTTP/1.1 400 Bad Request\r\n\r\n"),
            NoticeRead::NotNotice
        );
        let over = (MAX_NOTICE_LENGTH + 1).to_be_bytes();
        assert_eq!(Notice::read(&over), NoticeRead::NotNotice);
        assert_eq!(
            Notice::read(&MAX_NOTICE_LENGTH.to_be_bytes()),
            NoticeRead::Incomplete
        );
    }

    #[test]
    fn a_whole_frame_that_is_not_a_notice_is_not_one() {
        for body in [
            &b""[..],
            b"{}",
            b"[1,2,3]",
            br#"{"error":7}"#,
            b"\xff\xfe not json",
            // SPEC §3.2: the whole body must be UTF-8, even a field the notice ignores.
            b"{\"error\":\"x\",\"extra\":\"\xff\"}",
            br#"{"error":"x"} {}"#,
        ] {
            let wire = wire(body);
            assert_eq!(
                read_at_every_split(&wire),
                NoticeRead::NotNotice,
                "{body:?}"
            );
            assert_eq!(Notice::parse_frame(&wire), None, "{body:?}");
        }
    }

    #[test]
    fn the_longest_notice_fits_what_is_read() {
        let body = format!(
            r#"{{"error":"x","frame":0,"offset":0,"message":"{}"}}"#,
            "m".repeat(LIMIT - 47)
        );
        assert_eq!(body.len(), LIMIT);
        let wire = wire(body.as_bytes());
        assert_eq!(wire.len(), HEADER_LEN + LIMIT);
        assert!(matches!(Notice::read(&wire), NoticeRead::Notice(_)));
        assert!(Notice::parse_frame(&wire).is_some());
        assert_eq!(
            Notice::read(&wire[..wire.len() - 1]),
            NoticeRead::Incomplete
        );
    }

    #[test]
    fn only_a_whole_well_formed_notice_frame_parses() {
        let n = Notice::from_error(&Error::EmptyFrame {
            frame: 2,
            offset: 9,
        });
        assert_eq!((n.error.as_str(), n.frame, n.offset), ("empty_frame", 2, 9));
        let wire = n.to_frame();
        assert_eq!(Notice::parse_frame(&wire).as_ref(), Some(&n));
        assert_eq!(Notice::parse_frame(&wire[..wire.len() - 1]), None);
        let mut longer = wire.to_vec();
        longer.push(b' ');
        assert_eq!(Notice::parse_frame(&longer), None);
        assert_eq!(Notice::parse_frame(b"\x00\x00\x00\x02{}"), None);
        assert_eq!(Notice::parse_frame(b"\xff\xff\xff\xff"), None);
        assert_eq!(Notice::parse_frame(b"\x00\x00"), None);
    }

    #[test]
    fn a_long_message_is_cut_to_the_longest_that_fits() {
        // Each message repeats one character whose JSON form takes `width` bytes: the body must fit
        // MAX_NOTICE_LENGTH, with less than one more character's room to spare.
        for (unit, width) in [
            ("m", 1),
            ("\u{e9}", 2),
            ("\u{1F600}", 4),
            ("\"", 2),
            ("\n", 2),
            ("\u{1}", 6),
        ] {
            let n = Notice::new("frame_too_large", u64::MAX, u64::MAX, unit.repeat(5000));
            let body_len = n.to_frame().len() - HEADER_LEN;
            assert!(body_len <= LIMIT, "{unit:?}: {body_len}");
            assert!(
                body_len + width > LIMIT,
                "{unit:?}: {body_len}, cut too short"
            );
            assert!(n.message.chars().all(|c| c.to_string() == unit));
            // Read back, control characters come escaped (SPEC §6.3.3).
            let read = Notice {
                message: crate::escape_text(&n.message).into_owned(),
                ..n.clone()
            };
            assert_eq!(Notice::parse_frame(&n.to_frame()), Some(read), "{unit:?}");
        }
        // A message that fits is kept whole.
        let short = Notice::new("x", 1, 2, "a \"quoted\"\tmessage\u{1}");
        assert_eq!(short.message, "a \"quoted\"\tmessage\u{1}");
    }
}

#[cfg(test)]
mod peer_text {
    use super::*;

    #[test]
    fn a_peers_newlines_and_escapes_never_reach_a_message_raw() {
        // SPEC §6.3.3: the attack in issue 22 — a notice whose text forges a log line and clears
        // the terminal.
        let body = br#"{"error":"bad\ncode","message":"ok\nWARN forged line\u001b[2J\u0085"}"#;
        let mut wire = (body.len() as u32).to_be_bytes().to_vec();
        wire.extend_from_slice(body);
        let NoticeRead::Notice(notice) = Notice::read(&wire) else {
            panic!("a notice")
        };
        assert_eq!(notice.error, r"bad\ncode");
        assert_eq!(notice.message, r"ok\nWARN forged line\u{1b}[2J\u{85}");
        assert!(!notice.message.chars().any(char::is_control));
    }
}
