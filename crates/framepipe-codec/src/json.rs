//! The typed codec: one JSON value per frame, through serde_json.

use std::fmt;
use std::marker::PhantomData;

use bytes::{BufMut, BytesMut};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio_util::codec::{Decoder, Encoder};

use crate::frame_writer::FrameWriter;
use crate::framer::FrameMeta;
use crate::limits::HEADER_LEN;
use crate::read_policy::ReadPolicy;
use crate::{Builder, Error, Framer};

/// Decodes frames into `T: DeserializeOwned` and encodes any `Serialize` item as a frame (SPEC §1.2).
///
/// The body of each frame is exactly one UTF-8 JSON value (RFC 8259); whitespace around it is allowed,
/// anything else after it is an error. Encoding writes compact JSON, which for a struct whose fields
/// are declared in the same order is byte-identical to JavaScript's `JSON.stringify`.
///
/// # Costs
/// - **Decoding** parses the body where it lies in the read buffer: no copy of the body, and only the
///   allocations `T`'s `Deserialize` makes. JSON nesting deeper than 128 levels is rejected (serde_json's
///   recursion limit) instead of overflowing the stack.
/// - **Encoding** serializes straight into the destination buffer behind a 4-byte placeholder and then
///   patches the length in: no intermediate `Vec`, no second copy. If serialization fails or the body
///   exceeds `max_frame_length`, the buffer is restored and nothing is written.
/// - The read buffer follows the same policy as [`RawCodec`](crate::RawCodec)'s: bounded read-ahead
///   (SPEC §2.2) and at most `retained_capacity` kept between frames (SPEC §2.3).
///
/// # Errors
/// A body that is empty, not valid JSON, or the wrong shape for `T` gives a frame-local error
/// ([`Error::is_frame_local`]): the frame has been consumed and the next `decode` continues with the
/// next frame. `FramedRead` ends its stream after any error; wrap the codec in
/// [`Lenient`](crate::Lenient) to keep reading after frame-local ones.
///
/// ```
/// use bytes::BytesMut;
/// use framepipe_codec::JsonCodec;
/// use serde::{Deserialize, Serialize};
/// use tokio_util::codec::{Decoder, Encoder};
///
/// #[derive(Serialize, Deserialize, Debug, PartialEq)]
/// struct Point { x: i32, y: i32 }
///
/// let mut codec = JsonCodec::<Vec<Point>>::new();
/// let mut buf = BytesMut::new();
/// codec.encode(&vec![Point { x: 1, y: 2 }], &mut buf).unwrap();
/// assert_eq!(&buf[..], b"\x00\x00\x00\x0f[{\"x\":1,\"y\":2}]");
/// assert_eq!(codec.decode(&mut buf).unwrap(), Some(vec![Point { x: 1, y: 2 }]));
/// ```
pub struct JsonCodec<T> {
    framer: Framer,
    read: ReadPolicy,
    writer: FrameWriter,
    // `fn() -> T`: the codec owns no `T`, so it is Send + Sync whatever `T` is.
    _item: PhantomData<fn() -> T>,
}

impl<T> fmt::Debug for JsonCodec<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JsonCodec")
            .field("item", &std::any::type_name::<T>())
            .field("framer", &self.framer)
            .field("read", &self.read)
            .field("writer", &self.writer)
            .finish()
    }
}

impl<T> Clone for JsonCodec<T> {
    fn clone(&self) -> Self {
        JsonCodec {
            framer: self.framer.clone(),
            read: self.read,
            writer: self.writer.clone(),
            _item: PhantomData,
        }
    }
}

impl<T> Default for JsonCodec<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> JsonCodec<T> {
    /// A typed codec with every default (SPEC §2).
    pub fn new() -> Self {
        Self::with_config(Builder::default())
    }

    /// A [`Builder`] for non-default limits.
    pub fn builder() -> Builder {
        Builder::default()
    }

    pub(crate) fn with_config(config: Builder) -> Self {
        JsonCodec {
            framer: Framer::new(config),
            read: ReadPolicy::new(&config),
            writer: FrameWriter::new(config),
            _item: PhantomData,
        }
    }

    /// The settings this codec was built with.
    pub fn config(&self) -> &Builder {
        self.framer.config()
    }

    /// Frames the decoder has seen so far (delivered, skipped or rejected).
    pub fn frames_decoded(&self) -> u64 {
        self.framer.frames_seen()
    }

    /// Bytes of the input stream the decoder has consumed so far.
    pub fn bytes_decoded(&self) -> u64 {
        self.framer.bytes_consumed()
    }
}

/// Maps a serde_json failure on a frame body to the crate's error, keeping line and column.
fn body_error(meta: FrameMeta, source: serde_json::Error) -> Error {
    let (frame, offset, length) = (meta.index, meta.offset, meta.len as u64);
    let (line, column) = (source.line(), source.column());
    match source.classify() {
        serde_json::error::Category::Data => Error::UnexpectedJson {
            frame,
            offset,
            length,
            line,
            column,
            source,
        },
        // Syntax, premature end of the value inside the body, or (impossible for a slice) I/O.
        _ => Error::InvalidJson {
            frame,
            offset,
            length,
            line,
            column,
            source,
        },
    }
}

/// Parses one frame body exactly as [`JsonCodec`] does (SPEC §1.2, §3.2), for code that splits frames
/// with [`RawCodec`](crate::RawCodec) and parses them later (the framepipe consumer parses after its
/// queue, so the queue holds wire bytes).
///
/// `frame` (0-based index) and `offset` (byte offset of the frame's header in its stream) only label
/// the error: a [`Frame`](crate::Frame)'s `index` and `offset`.
///
/// `T` may borrow from the body (`&'de str`, `#[serde(borrow)] Cow<'de, str>`, `&'de RawValue`):
/// a string without escapes is then a slice of the frame's bytes, not a copy. The whole body is
/// checked to be UTF-8 once, before parsing (SPEC §3.2).
///
/// ```
/// use framepipe_codec::{parse_json_body, Error};
///
/// let v: Vec<u32> = parse_json_body(b"[1,2]", 0, 0)?;
/// assert_eq!(v, [1, 2]);
/// let err = parse_json_body::<Vec<u32>>(b"[1,", 3, 120).unwrap_err();
/// assert!(matches!(err, Error::InvalidJson { frame: 3, offset: 120, .. }));
///
/// // Borrowed: `name` points into the body.
/// #[derive(serde::Deserialize)]
/// struct Tag<'a> { name: &'a str }
/// let body = br#"{"name":"t1"}"#;
/// let tag: Tag<'_> = parse_json_body(body, 0, 0)?;
/// assert_eq!(tag.name, "t1");
/// # Ok::<(), Error>(())
/// ```
pub fn parse_json_body<'de, T: Deserialize<'de>>(
    body: &'de [u8],
    frame: u64,
    offset: u64,
) -> Result<T, Error> {
    parse_body(
        body,
        FrameMeta {
            index: frame,
            offset,
            len: body.len(),
        },
    )
}

fn parse_body<'de, T: Deserialize<'de>>(body: &'de [u8], meta: FrameMeta) -> Result<T, Error> {
    if body.is_empty() {
        return Err(Error::EmptyFrame {
            frame: meta.index,
            offset: meta.offset,
        });
    }
    // SPEC §3.2: the whole body is checked to be UTF-8 first (std's validator runs at tens of GB/s),
    // then parsed as `str`, so serde_json does not re-validate every string it copies: a fifth less
    // CPU per frame for string-heavy records (BENCHMARKS.md). It also makes the check complete:
    // serde_json's slice reader does not validate the UTF-8 of strings it skips.
    match std::str::from_utf8(body) {
        Ok(text) => serde_json::from_str(text).map_err(|e| body_error(meta, e)),
        Err(e) => Err(utf8_error(meta, body, e.valid_up_to())),
    }
}

/// The error for a body that is not UTF-8, located like serde_json locates its own errors (1-based
/// line, and column in bytes within that line).
fn utf8_error(meta: FrameMeta, body: &[u8], valid_up_to: usize) -> Error {
    let before = &body[..valid_up_to];
    let line = 1 + before.iter().filter(|&&b| b == b'\n').count();
    let column = 1 + valid_up_to
        - before
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |i| i + 1);
    let source = <serde_json::Error as serde::de::Error>::custom(format_args!(
        "invalid UTF-8 at line {line} column {column} (body byte {valid_up_to})"
    ));
    Error::InvalidJson {
        frame: meta.index,
        offset: meta.offset,
        length: meta.len as u64,
        line,
        column,
        source,
    }
}

impl<T: DeserializeOwned> Decoder for JsonCodec<T> {
    type Item = T;
    type Error = Error;

    /// Returns the next value, `Ok(None)` if more bytes are needed, or an error (SPEC §3, §4).
    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<T>, Error> {
        let Some(meta) = self.framer.poll_body(src)? else {
            self.read.before_read(&self.framer, src);
            return Ok(None);
        };
        // SPEC §3.2: parse in place, then consume the body whatever the outcome, so an invalid
        // body costs only its own frame.
        let parsed = parse_body(&src[..meta.len], meta);
        self.framer.discard_body(src, meta);
        self.read.after_frame(src, HEADER_LEN + meta.len);
        parsed.map(Some)
    }

    /// Like `decode`, and at end of stream reports [`Error::Truncated`] if it ended mid-frame.
    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<T>, Error> {
        match self.decode(src)? {
            Some(item) => Ok(Some(item)),
            None => self.framer.check_eof(src).map(|()| None),
        }
    }
}

/// Serializes `item` as compact JSON at the end of `dst` (SPEC §1.4): with serde_json, or with
/// sonic-rs under the `sonic` feature (the same bytes; see the feature's note in `Cargo.toml`).
#[cfg(not(feature = "sonic"))]
pub(crate) fn serialize_into<I: Serialize + ?Sized>(
    dst: &mut BytesMut,
    item: &I,
) -> Result<(), Error> {
    serde_json::to_writer(dst.writer(), item).map_err(Error::Serialize)
}

/// Serializes `item` as compact JSON at the end of `dst` (SPEC §1.4): with serde_json, or with
/// sonic-rs under the `sonic` feature (the same bytes; see the feature's note in `Cargo.toml`).
#[cfg(feature = "sonic")]
pub(crate) fn serialize_into<I: Serialize + ?Sized>(
    dst: &mut BytesMut,
    item: &I,
) -> Result<(), Error> {
    sonic_rs::to_writer(dst.writer(), item).map_err(|e| {
        // Keep one error type whichever serializer ran: the message is what matters here
        // (serialization errors carry no position).
        Error::Serialize(<serde_json::Error as serde::ser::Error>::custom(e))
    })
}

impl<T, I: Serialize> Encoder<I> for JsonCodec<T> {
    type Error = Error;

    /// Serializes `item` as compact JSON straight into `dst`, behind its header (SPEC §1.4).
    ///
    /// Writes nothing and fails with [`Error::Serialize`] or [`Error::BodyTooLarge`] if the item
    /// cannot be serialized or its JSON exceeds `max_frame_length`. The JSON is written before its
    /// length is known, so a too-large item briefly occupies its full size in `dst`.
    fn encode(&mut self, item: I, dst: &mut BytesMut) -> Result<(), Error> {
        self.writer
            .encode_with(dst, |dst| serialize_into(dst, &item))
    }
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use super::*;
    use crate::limits::{DEFAULT_RETAINED_CAPACITY, RESERVE_STEP};

    /// A record that borrows its strings from the frame's body.
    #[derive(Debug, Deserialize)]
    struct Borrowed<'a> {
        #[serde(borrow)]
        cow: Cow<'a, str>,
        name: &'a str,
    }

    /// `true` if `text` lies entirely within `body`'s bytes.
    fn points_into(body: &[u8], text: &str) -> bool {
        let range = body.as_ptr_range();
        let start = text.as_ptr();
        range.contains(&start) && start.wrapping_add(text.len()) <= range.end
    }

    #[test]
    fn borrowed_fields_point_into_the_body() {
        let body = br#"{"cow":"plain","name":"sensor-1"}"#;
        let record: Borrowed<'_> = parse_json_body(body, 0, 0).unwrap();
        assert_eq!((&*record.cow, record.name), ("plain", "sensor-1"));
        assert!(matches!(record.cow, Cow::Borrowed(_)));
        assert!(points_into(body, &record.cow));
        assert!(points_into(body, record.name));
    }

    #[test]
    fn an_escaped_string_is_unescaped_into_an_owned_cow() {
        let body = br#"{"cow":"a\"b\u00e9\n","name":"t1"}"#;
        let record: Borrowed<'_> = parse_json_body(body, 0, 0).unwrap();
        assert_eq!(record.cow, "a\"b\u{e9}\n");
        assert!(matches!(record.cow, Cow::Owned(_)));
        assert!(points_into(body, record.name));
        // A `&str` cannot hold an unescaped copy: the wrong shape for the type, frame-local.
        let err =
            parse_json_body::<Borrowed<'_>>(br#"{"cow":"x","name":"a\nb"}"#, 4, 40).unwrap_err();
        assert!(
            matches!(
                err,
                Error::UnexpectedJson {
                    frame: 4,
                    offset: 40,
                    ..
                }
            ),
            "{err:?}"
        );
    }

    #[test]
    fn borrowed_parsing_still_checks_the_whole_body_is_utf8() {
        // SPEC §3.2: even a string the type ignores.
        let body = b"{\"cow\":\"x\",\"name\":\"y\",\"extra\":\"\xff\"}";
        let err = parse_json_body::<Borrowed<'_>>(body, 1, 9).unwrap_err();
        match err {
            Error::InvalidJson {
                frame: 1,
                offset: 9,
                line: 1,
                column: 32,
                ref source,
                ..
            } => assert!(source.to_string().contains("body byte 31"), "{source}"),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn the_typed_codec_applies_the_read_policy() {
        // SPEC §2.2 while a body arrives, §2.3 after it: a 1 MiB JSON string, then half a header.
        let mut codec = JsonCodec::<String>::new();
        let mut body = vec![b'"'; 1 << 20];
        body[1..(1 << 20) - 1].fill(b'x');
        let mut src = BytesMut::from(&(body.len() as u32).to_be_bytes()[..]);
        src.extend_from_slice(&body[..10]);
        assert_eq!(codec.decode(&mut src).unwrap(), None);
        assert!(src.capacity() >= 10 + RESERVE_STEP, "{}", src.capacity());
        for piece in body[10..].chunks(64 * 1024) {
            src.extend_from_slice(piece);
            if let Some(text) = codec.decode(&mut src).unwrap() {
                assert_eq!(text.len(), (1 << 20) - 2);
            }
        }
        assert_eq!(codec.frames_decoded(), 1);
        assert!(src.is_empty());
        assert_eq!(src.capacity(), DEFAULT_RETAINED_CAPACITY);
    }
}
