//! The raw codec: frame bodies as `Bytes`, no JSON work.

use bytes::{Bytes, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

use crate::frame_writer::FrameWriter;
use crate::read_policy::ReadPolicy;
use crate::{Builder, Error, Frame, Framer};

/// Splits a byte stream into frame bodies (`Bytes`) and writes bodies as frames (SPEC §1).
///
/// Use it with `tokio_util::codec::{FramedRead, FramedWrite, Framed}` like any codec.
///
/// # Costs
/// - **Decoding** copies nothing: each body is split off the read buffer and shares its allocation
///   (one reference-count increment). Before the whole body has arrived the decoder only reserves room
///   in bounded steps that follow the bytes received (SPEC §2.2), never the announced length.
/// - **Encoding** copies the body once, into the destination buffer, after its 4-byte header. To avoid
///   even that copy, write [`frame_header`](crate::frame_header) and the body with one vectored write.
/// - A body held by the caller keeps its read buffer's allocation alive; the decoder itself keeps at
///   most [`retained_capacity`](Builder::retained_capacity) between frames (SPEC §2.3).
///
/// The decoder is a [`Framer`] (SPEC §3.1) plus that read-buffer policy (§2.2, §2.3); a reader that
/// manages its own buffers uses the framer alone.
///
/// ```
/// use bytes::{Bytes, BytesMut};
/// use framepipe_codec::RawCodec;
/// use tokio_util::codec::{Decoder, Encoder};
///
/// let mut codec = RawCodec::new();
/// let mut buf = BytesMut::new();
/// codec.encode(Bytes::from_static(b"[1,2,3]"), &mut buf).unwrap();
/// assert_eq!(&buf[..], b"\x00\x00\x00\x07[1,2,3]");
/// assert_eq!(codec.decode(&mut buf).unwrap(), Some(Bytes::from_static(b"[1,2,3]")));
/// assert_eq!(codec.decode(&mut buf).unwrap(), None); // needs more bytes
/// ```
#[derive(Debug, Clone)]
pub struct RawCodec {
    framer: Framer,
    read: ReadPolicy,
    writer: FrameWriter,
}

impl Default for RawCodec {
    fn default() -> Self {
        Self::new()
    }
}

impl RawCodec {
    /// A raw codec with every default (SPEC §2).
    pub fn new() -> Self {
        Self::with_config(Builder::default())
    }

    /// A [`Builder`] for non-default limits.
    pub fn builder() -> Builder {
        Builder::default()
    }

    pub(crate) fn with_config(config: Builder) -> Self {
        RawCodec {
            framer: Framer::new(config),
            read: ReadPolicy::new(&config),
            writer: FrameWriter::new(config),
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

    /// `true` while an oversized body is being discarded as it arrives (`OversizePolicy::Skip`,
    /// SPEC §3.3): the frame is in progress although none of it stays buffered.
    pub fn is_skipping(&self) -> bool {
        self.framer.is_skipping()
    }

    /// `true` if a frame is in progress (part of it has arrived, or it is being skipped), given
    /// that `buffered` bytes are in the buffer after `decode` returned `Ok(None)`; `false` at a frame
    /// boundary. Readers use it to tell an idle peer from one that stopped mid-frame.
    pub fn mid_frame(&self, buffered: usize) -> bool {
        self.framer.mid_frame(buffered)
    }

    /// Bytes still to arrive before the frame in progress is complete, given that `buffered` bytes
    /// are in the buffer after `decode` returned `Ok(None)`: the rest of a header (the header's length
    /// is not known until it is complete), or the rest of a body (being skipped or not).
    ///
    /// For readers that manage their own buffers: with it they can make room for the whole frame
    /// before reading, instead of letting the decoder grow the buffer step by step (SPEC §2.2). It
    /// reports what the peer *announced*; allocating it before the bytes arrive is the caller's risk,
    /// bounded by `max_frame_length`.
    ///
    /// ```
    /// use bytes::BytesMut;
    /// use framepipe_codec::RawCodec;
    /// use tokio_util::codec::Decoder;
    ///
    /// let mut codec = RawCodec::new();
    /// let mut buf = BytesMut::from(&b"\x00\x00"[..]);
    /// assert!(codec.decode(&mut buf).unwrap().is_none());
    /// assert_eq!(codec.bytes_needed(buf.len()), 2); // the rest of the header
    /// buf.extend_from_slice(b"\x00\x0ahello");
    /// assert!(codec.decode(&mut buf).unwrap().is_none());
    /// assert_eq!(codec.bytes_needed(buf.len()), 5); // 10-byte body, 5 here
    /// ```
    pub fn bytes_needed(&self, buffered: usize) -> u64 {
        self.framer.bytes_needed(buffered)
    }

    /// Like [`decode`](Decoder::decode), with the frame's index and byte offset (SPEC §3.1.3) as
    /// well as its body: no copy of the body, and the same read-buffer policy (SPEC §2.2, §2.3).
    ///
    /// ```
    /// use bytes::BytesMut;
    /// use framepipe_codec::RawCodec;
    ///
    /// let mut codec = RawCodec::new();
    /// let mut buf = BytesMut::from(&b"\x00\x00\x00\x01a\x00\x00\x00\x02bc"[..]);
    /// codec.decode_frame(&mut buf).unwrap();
    /// let frame = codec.decode_frame(&mut buf).unwrap().expect("a whole frame");
    /// assert_eq!((frame.index, frame.offset, &frame.body[..]), (1, 5, &b"bc"[..]));
    /// ```
    pub fn decode_frame(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, Error> {
        let frame = self.framer.next_frame(src)?;
        match &frame {
            Some(frame) => self.read.after_frame(src, frame.wire_len()),
            None => self.read.before_read(&self.framer, src),
        }
        Ok(frame)
    }

    /// Like [`decode_eof`](Decoder::decode_eof), with the frame's index and byte offset: at end of
    /// stream reports [`Error::Truncated`] if it ended mid-frame (SPEC §3.4).
    pub fn decode_frame_eof(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, Error> {
        match self.decode_frame(src)? {
            Some(frame) => Ok(Some(frame)),
            None => self.framer.check_eof(src).map(|()| None),
        }
    }
}

impl Decoder for RawCodec {
    type Item = Bytes;
    type Error = Error;

    /// Returns the next body, `Ok(None)` if more bytes are needed, or an error (SPEC §3, §4).
    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Bytes>, Error> {
        Ok(self.decode_frame(src)?.map(|frame| frame.body))
    }

    /// Like `decode`, and at end of stream reports [`Error::Truncated`] if it ended mid-frame.
    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<Bytes>, Error> {
        Ok(self.decode_frame_eof(src)?.map(|frame| frame.body))
    }
}

impl Encoder<Bytes> for RawCodec {
    type Error = Error;

    /// Appends the frame to `dst`: one copy of the body. Fails with [`Error::BodyTooLarge`], writing
    /// nothing, if the body is over `max_frame_length`.
    fn encode(&mut self, body: Bytes, dst: &mut BytesMut) -> Result<(), Error> {
        self.writer.encode_slice(&body, dst)
    }
}

impl Encoder<&[u8]> for RawCodec {
    type Error = Error;

    /// Appends the frame to `dst`: one copy of the body. Fails with [`Error::BodyTooLarge`], writing
    /// nothing, if the body is over `max_frame_length`.
    fn encode(&mut self, body: &[u8], dst: &mut BytesMut) -> Result<(), Error> {
        self.writer.encode_slice(body, dst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::{DEFAULT_RETAINED_CAPACITY, HEADER_LEN};
    use crate::FramePart;

    fn frame(body: &[u8]) -> Vec<u8> {
        let mut v = (body.len() as u32).to_be_bytes().to_vec();
        v.extend_from_slice(body);
        v
    }

    #[test]
    fn decode_frame_gives_what_decode_gives_with_index_and_offset() {
        let stream = [frame(b"first"), frame(b""), frame(b"[3]")].concat();
        let mut by_frame = RawCodec::new();
        let mut src = BytesMut::from(&stream[..]);
        let mut frames = Vec::new();
        while let Some(frame) = by_frame.decode_frame_eof(&mut src).unwrap() {
            frames.push(frame);
        }
        let mut by_body = RawCodec::new();
        let mut src = BytesMut::from(&stream[..]);
        let mut bodies = Vec::new();
        while let Some(body) = by_body.decode_eof(&mut src).unwrap() {
            bodies.push(body);
        }
        assert_eq!(
            frames.iter().map(|f| f.body.clone()).collect::<Vec<_>>(),
            bodies
        );
        let placed: Vec<(u64, u64)> = frames.iter().map(|f| (f.index, f.offset)).collect();
        assert_eq!(placed, [(0, 0), (1, 9), (2, 13)]);
        assert_eq!(by_frame.frames_decoded(), 3);
        assert_eq!(by_frame.bytes_decoded(), stream.len() as u64);
    }

    #[test]
    fn decode_frame_eof_reports_a_truncated_body() {
        // SPEC §3.4.
        let mut codec = RawCodec::new();
        let mut src = BytesMut::from(&[frame(b"ok"), vec![0, 0, 0, 9, b'x']].concat()[..]);
        assert_eq!(codec.decode_frame_eof(&mut src).unwrap().unwrap().index, 0);
        assert!(matches!(
            codec.decode_frame_eof(&mut src),
            Err(Error::Truncated {
                frame: 1,
                offset: 6,
                part: FramePart::Body,
                expected: 9,
                received: 1,
            })
        ));
        assert!(codec.mid_frame(src.len()));
        assert_eq!(codec.bytes_needed(src.len()), 8);
    }

    #[test]
    fn decode_frame_applies_the_read_policy_the_framer_does_not() {
        // The same 1 MiB frame, received in a buffer of exactly its size plus half a header: the
        // framer leaves that buffer to the caller; the codec replaces it (SPEC §2.3).
        let stream = [frame(&vec![5; 1 << 20]), vec![0, 0]].concat();
        let fill = || {
            let mut src = BytesMut::with_capacity(stream.len());
            src.extend_from_slice(&stream);
            src
        };
        let mut src = fill();
        let frame = Builder::new()
            .framer()
            .next_frame(&mut src)
            .unwrap()
            .unwrap();
        assert_eq!(frame.wire_len(), HEADER_LEN + (1 << 20));
        assert_eq!(src.capacity(), 2);

        let mut src = fill();
        let frame = RawCodec::new().decode_frame(&mut src).unwrap().unwrap();
        assert_eq!(frame.body.len(), 1 << 20);
        assert_eq!(src.capacity(), DEFAULT_RETAINED_CAPACITY);
        assert_eq!(&src[..], &[0, 0]);

        // And it grows the buffer in bounded steps while a body arrives (SPEC §2.2).
        let mut codec = RawCodec::new();
        let mut src = BytesMut::from(&stream[..HEADER_LEN + 10]);
        assert_eq!(codec.decode_frame(&mut src).unwrap(), None);
        assert!(src.capacity() >= 10 + crate::limits::RESERVE_STEP);
    }
}
