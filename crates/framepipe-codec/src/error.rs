//! The crate's one error type.

use std::fmt;
use std::io;

use crate::escape_preview;

/// Which part of a frame a truncated stream ended in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FramePart {
    /// The 4-byte length header.
    Header,
    /// The body announced by the header.
    Body,
}

impl fmt::Display for FramePart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FramePart::Header => "header",
            FramePart::Body => "body",
        })
    }
}

/// Everything that can go wrong while framing, encoding or decoding (SPEC §4).
///
/// Decoding errors carry the frame's index (how many frames preceded it in the stream, counting
/// skipped and rejected ones) and the byte offset of its header in the stream, so a log line can be
/// matched against a capture.
///
/// Errors are either **frame-local** ([`is_frame_local`](Error::is_frame_local)): the offending frame
/// has been consumed in full and decoding the next frame works normally; or **fatal**: the stream
/// cannot be resynchronised and should be closed. Note that `tokio_util::codec::FramedRead` ends its
/// stream after *any* decoder error; wrap the codec in [`Lenient`](crate::Lenient) to receive
/// frame-local errors as items and keep reading.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A header announced more than `max_frame_length` bytes under [`OversizePolicy::Close`]
    /// (SPEC §3.3). Fatal.
    ///
    /// [`OversizePolicy::Close`]: crate::OversizePolicy::Close
    #[error(
        "frame {frame} at byte {offset} announces {length} bytes, over max_frame_length {max}; \
         closing the stream (raise max_frame_length, at most 4294967295, or use OversizePolicy::Skip)"
    )]
    FrameTooLarge {
        /// Index of the frame in the stream.
        frame: u64,
        /// Byte offset of the frame's header in the stream.
        offset: u64,
        /// Body length the header announced.
        length: u64,
        /// The decoder's `max_frame_length`.
        max: u32,
    },

    /// The stream's first four bytes are over `max_frame_length` and read as the start of another
    /// protocol (an HTTP request or response, a TLS or SSH handshake) or as text, so the peer is not
    /// speaking framepipe at all (SPEC §3.5). Fatal, under either oversize policy: nothing was
    /// buffered or skipped.
    #[error(
        "not a framepipe stream: its first 4 bytes \"{shown}\" look like {looks_like}, not a frame \
         length (as one they would announce {length} bytes, over max_frame_length {max}); a \
         framepipe stream starts with a 4-byte big-endian length",
        shown = escape_preview(header, header.len())
    )]
    NotFramepipe {
        /// What the bytes look like: `"an HTTP request"`, `"a TLS handshake"`, `"text"`, ….
        looks_like: &'static str,
        /// The first four bytes of the stream.
        header: [u8; 4],
        /// Body length those bytes announce when read as a header.
        length: u64,
        /// The decoder's `max_frame_length`.
        max: u32,
    },
    /// A header announced more than `max_frame_length` bytes under [`OversizePolicy::Skip`]: the
    /// body is being discarded as it arrives (SPEC §3.3). Frame-local.
    ///
    /// [`OversizePolicy::Skip`]: crate::OversizePolicy::Skip
    #[error(
        "frame {frame} at byte {offset} announces {length} bytes, over max_frame_length {max}; \
         discarding its body and continuing (raise max_frame_length to accept such frames)"
    )]
    FrameSkipped {
        /// Index of the frame in the stream.
        frame: u64,
        /// Byte offset of the frame's header in the stream.
        offset: u64,
        /// Body length the header announced (and that will be discarded).
        length: u64,
        /// The decoder's `max_frame_length`.
        max: u32,
    },

    /// The stream ended inside a frame's header or body (SPEC §3.4). Fatal.
    #[error(
        "stream ended inside frame {frame} at byte {offset}: got {received} of {expected} {part} \
         bytes (the peer closed or was cut off mid-frame)"
    )]
    Truncated {
        /// Index of the frame in the stream.
        frame: u64,
        /// Byte offset of the frame's header in the stream.
        offset: u64,
        /// Whether the header or the body was cut short.
        part: FramePart,
        /// Bytes that part should have had.
        expected: u64,
        /// Bytes of that part that arrived.
        received: u64,
    },

    /// A control frame of a session stream is malformed (SPEC §9.5): an unknown kind, a payload over
    /// `MAX_CONTROL_LENGTH` or shorter than its layout, a hello without the magic, an unsupported
    /// version, or a notice that is not one. Fatal.
    #[error("bad control frame at byte {offset}: {what}")]
    BadControl {
        /// Byte offset of the control frame's header in the stream.
        offset: u64,
        /// What is wrong, with the bytes concerned shown escaped.
        what: String,
    },

    /// Typed mode received a zero-length frame, which holds no JSON value (SPEC §3.2). Frame-local.
    #[error(
        "frame {frame} at byte {offset} is empty, which is not a JSON value \
         (typed mode needs one JSON value per frame; use the raw codec to accept empty frames)"
    )]
    EmptyFrame {
        /// Index of the frame in the stream.
        frame: u64,
        /// Byte offset of the frame's header in the stream.
        offset: u64,
    },

    /// Typed mode received a body that is not one well-formed UTF-8 JSON value: a syntax error,
    /// invalid UTF-8, nesting deeper than 128, or trailing bytes after the value (SPEC §3.2).
    /// Frame-local.
    #[error("frame {frame} at byte {offset}: body of {length} bytes is not valid JSON: {source}")]
    InvalidJson {
        /// Index of the frame in the stream.
        frame: u64,
        /// Byte offset of the frame's header in the stream.
        offset: u64,
        /// Body length.
        length: u64,
        /// Line of the error within the body, as serde_json reports it (1-based).
        line: usize,
        /// Column of the error within that line, as serde_json reports it (1-based).
        column: usize,
        /// serde_json's description.
        source: serde_json::Error,
    },

    /// Typed mode received well-formed JSON that does not match the type being decoded (a missing
    /// field, a string where a number was expected, …). Frame-local.
    #[error(
        "frame {frame} at byte {offset}: JSON body of {length} bytes does not match the expected \
         type: {source}"
    )]
    UnexpectedJson {
        /// Index of the frame in the stream.
        frame: u64,
        /// Byte offset of the frame's header in the stream.
        offset: u64,
        /// Body length.
        length: u64,
        /// Line of the mismatch within the body (1-based).
        line: usize,
        /// Column of the mismatch within that line (1-based).
        column: usize,
        /// serde_json's description.
        source: serde_json::Error,
    },

    /// An encoder was asked to write a body over its `max_frame_length` (SPEC §1.4). Nothing was
    /// written to the destination buffer.
    #[error(
        "cannot encode a body of {length} bytes: over max_frame_length {max} \
         (raise max_frame_length, at most 4294967295; the receiving side must accept it too)"
    )]
    BodyTooLarge {
        /// Length of the body that was refused.
        length: u64,
        /// The encoder's `max_frame_length`.
        max: u32,
    },

    /// serde_json could not serialize the item (for example a map with non-string keys). Nothing was
    /// written to the destination buffer.
    #[error("cannot serialize the item as JSON: {0}")]
    Serialize(#[source] serde_json::Error),

    /// The underlying I/O failed. Produced by `FramedRead`/`FramedWrite`, never by the codecs.
    #[error(transparent)]
    Io(#[from] io::Error),
}

impl Error {
    /// `true` if only the current frame was lost: its bytes have been consumed in full and the decoder
    /// is ready for the next frame (SPEC §4.1).
    pub fn is_frame_local(&self) -> bool {
        matches!(
            self,
            Error::FrameSkipped { .. }
                | Error::EmptyFrame { .. }
                | Error::InvalidJson { .. }
                | Error::UnexpectedJson { .. }
        )
    }

    /// A short stable name for the kind of error, as used in a rejection [`Notice`](crate::Notice)
    /// (SPEC §6.3): `frame_too_large`, `not_framepipe`, `frame_skipped`, `truncated`, `empty_frame`, `invalid_json`,
    /// `unexpected_json`, `body_too_large`, `serialize` or `io`.
    pub fn code(&self) -> &'static str {
        match self {
            Error::FrameTooLarge { .. } => "frame_too_large",
            Error::NotFramepipe { .. } => "not_framepipe",
            Error::FrameSkipped { .. } => "frame_skipped",
            Error::Truncated { .. } => "truncated",
            Error::BadControl { .. } => "bad_control",
            Error::EmptyFrame { .. } => "empty_frame",
            Error::InvalidJson { .. } => "invalid_json",
            Error::UnexpectedJson { .. } => "unexpected_json",
            Error::BodyTooLarge { .. } => "body_too_large",
            Error::Serialize(_) => "serialize",
            Error::Io(_) => "io",
        }
    }

    /// Index of the frame the error concerns, for decoding errors.
    pub fn frame_index(&self) -> Option<u64> {
        match *self {
            Error::FrameTooLarge { frame, .. }
            | Error::FrameSkipped { frame, .. }
            | Error::Truncated { frame, .. }
            | Error::EmptyFrame { frame, .. }
            | Error::InvalidJson { frame, .. }
            | Error::UnexpectedJson { frame, .. } => Some(frame),
            Error::NotFramepipe { .. } => Some(0),
            Error::BadControl { .. }
            | Error::BodyTooLarge { .. }
            | Error::Serialize(_)
            | Error::Io(_) => None,
        }
    }

    /// Byte offset in the stream of the header of the frame the error concerns, for decoding errors.
    pub fn offset(&self) -> Option<u64> {
        match *self {
            Error::FrameTooLarge { offset, .. }
            | Error::FrameSkipped { offset, .. }
            | Error::Truncated { offset, .. }
            | Error::EmptyFrame { offset, .. }
            | Error::InvalidJson { offset, .. }
            | Error::UnexpectedJson { offset, .. } => Some(offset),
            Error::NotFramepipe { .. } => Some(0),
            Error::BadControl { offset, .. } => Some(offset),
            Error::BodyTooLarge { .. } | Error::Serialize(_) | Error::Io(_) => None,
        }
    }
}

/// What the first four bytes of a stream look like, if they are another protocol's or text rather
/// than a frame length (SPEC §3.5). Only asked of a first header that is over the limit.
pub(crate) fn foreign_protocol(header: [u8; 4]) -> Option<&'static str> {
    const HTTP_METHODS: [&[u8; 4]; 9] = [
        b"GET ", b"POST", b"PUT ", b"HEAD", b"DELE", b"OPTI", b"PATC", b"CONN", b"TRAC",
    ];
    if HTTP_METHODS.contains(&&header) {
        Some("an HTTP request")
    } else if &header == b"HTTP" {
        Some("an HTTP response")
    } else if &header == b"PRI " {
        Some("an HTTP/2 connection preface")
    } else if header[0] == 0x16 && header[1] == 0x03 && header[2] <= 0x04 {
        Some("a TLS handshake (is the peer using TLS?)")
    } else if &header == b"SSH-" {
        Some("an SSH handshake")
    } else if header
        .iter()
        .all(|&b| b.is_ascii_graphic() || matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
    {
        Some(if matches!(header[0], b'{' | b'[' | b'"') {
            "JSON text (sent without length headers?)"
        } else {
            "text"
        })
    } else {
        None
    }
}

impl From<Error> for io::Error {
    /// I/O errors are unwrapped; a truncated stream becomes [`io::ErrorKind::UnexpectedEof`];
    /// encoder refusals become [`io::ErrorKind::InvalidInput`]; everything else the peer sent
    /// becomes [`io::ErrorKind::InvalidData`]. The original error stays available as the source.
    fn from(err: Error) -> io::Error {
        let kind = match &err {
            Error::Io(_) => {
                let Error::Io(io) = err else { unreachable!() };
                return io;
            }
            Error::Truncated { .. } => io::ErrorKind::UnexpectedEof,
            Error::BodyTooLarge { .. } | Error::Serialize(_) => io::ErrorKind::InvalidInput,
            _ => io::ErrorKind::InvalidData,
        };
        io::Error::new(kind, err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_conversion_keeps_kind_and_source() {
        let trunc = Error::Truncated {
            frame: 3,
            offset: 99,
            part: FramePart::Body,
            expected: 10,
            received: 4,
        };
        let io: io::Error = trunc.into();
        assert_eq!(io.kind(), io::ErrorKind::UnexpectedEof);
        let inner = io.get_ref().unwrap().downcast_ref::<Error>().unwrap();
        assert_eq!(inner.frame_index(), Some(3));
        assert_eq!(inner.offset(), Some(99));

        let original = io::Error::new(io::ErrorKind::ConnectionReset, "reset");
        let io: io::Error = Error::Io(original).into();
        assert_eq!(io.kind(), io::ErrorKind::ConnectionReset);

        let io: io::Error = Error::BodyTooLarge { length: 5, max: 4 }.into();
        assert_eq!(io.kind(), io::ErrorKind::InvalidInput);
        let io: io::Error = Error::EmptyFrame {
            frame: 0,
            offset: 0,
        }
        .into();
        assert_eq!(io.kind(), io::ErrorKind::InvalidData);
    }

    #[test]
    fn other_protocols_are_named() {
        assert_eq!(foreign_protocol(*b"GET "), Some("an HTTP request"));
        assert_eq!(foreign_protocol(*b"HTTP"), Some("an HTTP response"));
        assert_eq!(
            foreign_protocol([0x16, 0x03, 0x01, 0x02]),
            Some("a TLS handshake (is the peer using TLS?)")
        );
        assert_eq!(
            foreign_protocol(*b"{\"a\""),
            Some("JSON text (sent without length headers?)")
        );
        assert_eq!(foreign_protocol(*b"abcd"), Some("text"));
        assert_eq!(foreign_protocol([0xff, 0xff, 0xff, 0xff]), None);
        assert_eq!(foreign_protocol([0x00, 0x00, 0x01, 0x00]), None);
        let e = Error::NotFramepipe {
            looks_like: "an HTTP request",
            header: *b"GET ",
            length: 1_195_725_856,
            max: 16_777_216,
        };
        let msg = e.to_string();
        assert!(
            msg.starts_with(
                "not a framepipe stream: its first 4 bytes \"GET \" look like an HTTP request"
            ),
            "{msg}"
        );
        assert!(msg.contains("1195725856"), "{msg}");
        assert!(!e.is_frame_local());
        assert_eq!(e.code(), "not_framepipe");
        let tls = Error::NotFramepipe {
            looks_like: "a TLS handshake",
            header: [0x16, 0x03, 0x01, 0x02],
            length: 0,
            max: 0,
        };
        assert!(
            tls.to_string().contains("\"\\x16\\x03\\x01\\x02\""),
            "{tls}"
        );
        // The whole message, exactly: the bytes escaped and quoted, nothing cut.
        let quote = Error::NotFramepipe {
            looks_like: "JSON text (sent without length headers?)",
            header: *b"\"a\\\n",
            length: 576_740_362,
            max: 16_777_216,
        };
        assert_eq!(
            quote.to_string(),
            "not a framepipe stream: its first 4 bytes \"\\\"a\\\\\\n\" look like JSON text (sent \
             without length headers?), not a frame length (as one they would announce 576740362 \
             bytes, over max_frame_length 16777216); a framepipe stream starts with a 4-byte \
             big-endian length"
        );
    }

    #[test]
    fn messages_name_the_setting_to_change() {
        let e = Error::FrameTooLarge {
            frame: 7,
            offset: 1234,
            length: 20_971_520,
            max: 16_777_216,
        };
        let msg = e.to_string();
        assert!(msg.contains("frame 7 at byte 1234"), "{msg}");
        assert!(msg.contains("20971520"), "{msg}");
        assert!(msg.contains("max_frame_length 16777216"), "{msg}");
        assert!(msg.contains("raise max_frame_length"), "{msg}");
        assert!(!e.is_frame_local());
        let e = Error::FrameSkipped {
            frame: 7,
            offset: 1234,
            length: 20_971_520,
            max: 16_777_216,
        };
        assert!(e.is_frame_local());
        assert!(e.to_string().contains("discarding"));
    }
}
