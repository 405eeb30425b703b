//! The raw codec: frame bodies as `Bytes`, no JSON work.

use bytes::{Bytes, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

use crate::frame_decoder::FrameDecoder;
use crate::frame_encoder::FrameEncoder;
use crate::{Builder, Error};

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
    decoder: FrameDecoder,
    encoder: FrameEncoder,
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
            decoder: FrameDecoder::new(config),
            encoder: FrameEncoder::new(config),
        }
    }

    /// The settings this codec was built with.
    pub fn config(&self) -> &Builder {
        self.decoder.config()
    }

    /// Frames the decoder has seen so far (delivered, skipped or rejected).
    pub fn frames_decoded(&self) -> u64 {
        self.decoder.frames_seen()
    }

    /// Bytes of the input stream the decoder has consumed so far.
    pub fn bytes_decoded(&self) -> u64 {
        self.decoder.bytes_consumed()
    }

    /// `true` while an oversized body is being discarded as it arrives (`OversizePolicy::Skip`,
    /// SPEC §3.3): the frame is in progress although none of it stays buffered.
    pub fn is_skipping(&self) -> bool {
        self.decoder.is_skipping()
    }

    /// `true` if a frame is in progress (part of it has arrived, or it is being skipped), given
    /// that `buffered` bytes are in the buffer after `decode` returned `Ok(None)`; `false` at a frame
    /// boundary. Readers use it to tell an idle peer from one that stopped mid-frame.
    pub fn mid_frame(&self, buffered: usize) -> bool {
        buffered > 0 || !self.decoder.at_head()
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
        self.decoder.bytes_needed(buffered)
    }
}

impl Decoder for RawCodec {
    type Item = Bytes;
    type Error = Error;

    /// Returns the next body, `Ok(None)` if more bytes are needed, or an error (SPEC §3, §4).
    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Bytes>, Error> {
        let Some(meta) = self.decoder.poll_body(src)? else {
            return Ok(None);
        };
        let body = src.split_to(meta.len).freeze();
        self.decoder.finish(src, meta);
        Ok(Some(body))
    }

    /// Like `decode`, and at end of stream reports [`Error::Truncated`] if it ended mid-frame.
    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<Bytes>, Error> {
        match self.decode(src)? {
            Some(body) => Ok(Some(body)),
            None => self.decoder.check_eof(src).map(|()| None),
        }
    }
}

impl Encoder<Bytes> for RawCodec {
    type Error = Error;

    /// Appends the frame to `dst`: one copy of the body. Fails with [`Error::BodyTooLarge`], writing
    /// nothing, if the body is over `max_frame_length`.
    fn encode(&mut self, body: Bytes, dst: &mut BytesMut) -> Result<(), Error> {
        self.encoder.encode_slice(&body, dst)
    }
}

impl Encoder<&[u8]> for RawCodec {
    type Error = Error;

    /// Appends the frame to `dst`: one copy of the body. Fails with [`Error::BodyTooLarge`], writing
    /// nothing, if the body is over `max_frame_length`.
    fn encode(&mut self, body: &[u8], dst: &mut BytesMut) -> Result<(), Error> {
        self.encoder.encode_slice(body, dst)
    }
}
