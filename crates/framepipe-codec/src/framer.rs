//! The framing state machine (SPEC §3.1), apart from any buffer policy.
//!
//! ```text
//!            header complete, len <= max            body complete
//!   ┌──────┐ ─────────────────────────────► ┌──────┐ ──────────────► deliver, back to Head
//!   │ Head │                                │ Body │
//!   └──────┘ ──────────────┐                └──────┘
//!      ▲     len > max,    │ len > max, policy Close: FrameTooLarge (header left unconsumed)
//!      │     policy Skip   │ len > max at byte 0 and another protocol's bytes: NotFramepipe
//!      │                   ▼
//!      │              ┌──────┐
//!      └──────────────│ Skip │  discards bytes as they arrive, never buffers them
//!   all bytes skipped └──────┘
//! ```
//!
//! SPEC §3 describes the same machine normatively. How the read buffer grows and when it is
//! replaced (SPEC §2.2, §2.3) is the codecs' business (`read_policy.rs`), not the framer's.

use bytes::{Buf, Bytes, BytesMut};

use crate::error::{foreign_protocol, Error, FramePart};
use crate::limits::HEADER_LEN;
use crate::{Builder, OversizePolicy};

/// A frame split off the stream by a [`Framer`] or [`RawCodec::decode_frame`](crate::RawCodec::decode_frame).
///
/// The body shares the read buffer's allocation (no copy); holding it keeps that allocation alive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// Index of the frame in the stream: the number of frames before it, counting skipped and
    /// rejected ones (SPEC §3.1.3).
    pub index: u64,
    /// Byte offset of the frame's header in the stream.
    pub offset: u64,
    /// The body, without its header.
    pub body: Bytes,
}

impl Frame {
    /// Bytes the frame took on the wire: its body and its 4-byte header.
    pub fn wire_len(&self) -> usize {
        HEADER_LEN + self.body.len()
    }
}

/// Where a whole body waiting at the front of the buffer sits in the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FrameMeta {
    /// Index of the frame in the stream (frames before it, including skipped ones).
    pub(crate) index: u64,
    /// Byte offset of its header in the stream.
    pub(crate) offset: u64,
    /// Body length.
    pub(crate) len: usize,
}

#[derive(Debug, Clone, Copy)]
enum State {
    /// Waiting for the 4 header bytes at the front of the buffer.
    Head,
    /// Header consumed; waiting until `meta.len` body bytes are at the front of the buffer.
    Body(FrameMeta),
    /// Discarding an oversized body; `remaining` bytes of it are still to come.
    Skip { meta: SkipMeta, remaining: u64 },
}

/// Like [`FrameMeta`] but with a length that may exceed `usize` on small targets.
#[derive(Debug, Clone, Copy)]
struct SkipMeta {
    index: u64,
    offset: u64,
    len: u64,
}

/// Splits a byte stream into frames (SPEC §3.1), and does nothing else.
///
/// The framer reads the 4-byte headers, checks each announced length against `max_frame_length`
/// before anything else (SPEC §2.1), applies the oversize policy (SPEC §3.3), names a stream in
/// another protocol (SPEC §3.5), tells a clean end of stream from a truncated one (SPEC §3.4), and
/// keeps each frame's index and byte offset. It owns no buffer: it works on the caller's `BytesMut`,
/// only ever taking bytes off its front.
///
/// # Costs
/// - **No copy and no buffer policy.** A body is split off the front of the caller's buffer
///   (`BytesMut::split_to`, then `freeze`) and shares its allocation. The framer never reserves,
///   grows, shrinks or replaces the buffer, whatever length a peer announces: how much to read and
///   where to keep it is entirely the caller's choice. (The first split of a buffer that has never
///   been shared makes `bytes` allocate its small reference-count header; nothing else is
///   allocated.)
/// - **State:** a few words; no allocation of its own.
///
/// [`RawCodec`](crate::RawCodec) and [`JsonCodec`](crate::JsonCodec) are this framer plus the read
/// buffer policy of SPEC §2.2 (bounded read-ahead) and §2.3 (retained capacity), for use with
/// `FramedRead`. Use the framer directly when you manage read buffers yourself (the framepipe
/// consumer reads into reusable blocks).
///
/// ```
/// use bytes::BytesMut;
/// use framepipe_codec::{Builder, Error, Framer};
///
/// let mut framer = Builder::new().max_frame_length(1024).framer();
/// let mut buf = BytesMut::with_capacity(64);
/// buf.extend_from_slice(b"\x00\x00\x00\x03[1]\x00\x00\x00\x05[2");
/// let first = framer.next_frame(&mut buf)?.expect("a whole frame");
/// assert_eq!((first.index, first.offset, &first.body[..]), (0, 0, &b"[1]"[..]));
/// assert_eq!(framer.next_frame(&mut buf)?, None); // 2 of 5 body bytes so far
/// assert_eq!(framer.bytes_needed(buf.len()), 3);
/// assert_eq!(framer.frame_in_progress(), 1);
/// assert!(framer.check_eof(&buf).is_err()); // ending here would cut frame 1 short
/// buf.extend_from_slice(b",3]");
/// let second = framer.next_frame(&mut buf)?.expect("a whole frame");
/// assert_eq!((second.index, second.offset, second.wire_len()), (1, 7, 9));
/// framer.check_eof(&buf)?; // a clean end here
/// # Ok::<(), Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Framer {
    config: Builder,
    state: State,
    /// Index the next frame header will get.
    next_index: u64,
    /// Bytes consumed from the stream so far (headers, bodies and skipped bytes).
    consumed: u64,
}

impl Framer {
    /// A framer with `config`'s `max_frame_length` and `oversize_policy`; `retained_capacity` does
    /// not concern it. Same as [`Builder::framer`].
    pub fn new(config: Builder) -> Self {
        Framer {
            config,
            state: State::Head,
            next_index: 0,
            consumed: 0,
        }
    }

    /// The settings this framer was made with.
    pub fn config(&self) -> &Builder {
        &self.config
    }

    /// Splits the next whole frame off the front of `src` without copying it
    /// (`BytesMut::split_to`, then `freeze`).
    ///
    /// Returns `Ok(None)` when more bytes are needed (what is buffered stays in `src`, except a
    /// skipped body's bytes, which are discarded as they arrive), or an error (SPEC §3, §4):
    /// [`Error::FrameTooLarge`] and [`Error::NotFramepipe`] are fatal and repeat if called again;
    /// [`Error::FrameSkipped`] is frame-local and the next call carries on.
    pub fn next_frame(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, Error> {
        let Some(meta) = self.poll_body(src)? else {
            return Ok(None);
        };
        let body = src.split_to(meta.len).freeze();
        self.finish(meta);
        Ok(Some(Frame {
            index: meta.index,
            offset: meta.offset,
            body,
        }))
    }

    /// At end of stream: `Ok(())` if the stream ended at a frame boundary with nothing buffered,
    /// else [`Error::Truncated`] naming the part cut short (SPEC §3.4).
    ///
    /// Call it once [`next_frame`](Self::next_frame) has returned `Ok(None)` for the final bytes.
    pub fn check_eof(&self, src: &BytesMut) -> Result<(), Error> {
        let (frame, offset, part, expected, received) = match self.state {
            State::Head if src.is_empty() => return Ok(()),
            State::Head => (
                self.next_index,
                self.consumed,
                FramePart::Header,
                HEADER_LEN as u64,
                src.len() as u64,
            ),
            State::Body(meta) => (
                meta.index,
                meta.offset,
                FramePart::Body,
                meta.len as u64,
                src.len() as u64,
            ),
            State::Skip { meta, remaining } => (
                meta.index,
                meta.offset,
                FramePart::Body,
                meta.len,
                meta.len - remaining,
            ),
        };
        Err(Error::Truncated {
            frame,
            offset,
            part,
            expected,
            received,
        })
    }

    /// Bytes still to arrive before the frame in progress is complete, given that `buffered` bytes
    /// are in the buffer after [`next_frame`](Self::next_frame) returned `Ok(None)`: the rest of a
    /// header (the header's length is not known until it is complete), or the rest of a body
    /// (being skipped or not).
    ///
    /// It reports what the peer *announced*: reserving it before the bytes arrive is the caller's
    /// risk, bounded by `max_frame_length`.
    pub fn bytes_needed(&self, buffered: usize) -> u64 {
        let buffered = buffered as u64;
        match self.state {
            State::Head => (HEADER_LEN as u64).saturating_sub(buffered),
            State::Body(meta) => (meta.len as u64).saturating_sub(buffered),
            // Skipped bytes are discarded as they arrive: none of them stay buffered.
            State::Skip { remaining, .. } => remaining,
        }
    }

    /// `true` if a frame is in progress (part of it has arrived, or it is being skipped), given that
    /// `buffered` bytes are in the buffer after [`next_frame`](Self::next_frame) returned `Ok(None)`;
    /// `false` at a frame boundary. Readers use it to tell an idle peer from one that stopped
    /// mid-frame.
    pub fn mid_frame(&self, buffered: usize) -> bool {
        buffered > 0 || !matches!(self.state, State::Head)
    }

    /// `true` while an oversized body is being discarded as it arrives (`OversizePolicy::Skip`,
    /// SPEC §3.3): the frame is in progress although none of it stays buffered.
    pub fn is_skipping(&self) -> bool {
        matches!(self.state, State::Skip { .. })
    }

    /// Frames seen so far: delivered, rejected or skipped (a frame counts once its header is read).
    pub fn frames_seen(&self) -> u64 {
        self.next_index
    }

    /// Bytes of the stream consumed so far: headers, bodies split off, skipped bytes.
    pub fn bytes_consumed(&self) -> u64 {
        self.consumed
    }

    /// Index of the frame in progress (its header read, its body not yet whole), or, at a frame
    /// boundary, the index the next frame will have: what an error about the frame being awaited,
    /// such as a frame timeout, should name (SPEC §3.1.3).
    pub fn frame_in_progress(&self) -> u64 {
        match self.state {
            State::Head => self.next_index,
            State::Body(meta) => meta.index,
            State::Skip { meta, .. } => meta.index,
        }
    }

    /// Length of the body being awaited, if a header within the limit has been read and its body is
    /// not yet whole: the read policy grows the buffer towards it (SPEC §2.2).
    pub(crate) fn body_awaited(&self) -> Option<usize> {
        match self.state {
            State::Body(meta) => Some(meta.len),
            State::Head | State::Skip { .. } => None,
        }
    }

    /// Advances the state machine over `src`.
    ///
    /// Returns `Ok(Some(meta))` when a whole body of `meta.len` bytes sits at the front of `src`.
    /// The caller then takes it off, with [`Framer::next_frame`]'s split or with
    /// [`Framer::discard_body`] once it has parsed the body in place. `Ok(None)` means more bytes are
    /// needed.
    pub(crate) fn poll_body(&mut self, src: &mut BytesMut) -> Result<Option<FrameMeta>, Error> {
        loop {
            match self.state {
                State::Head => {
                    if src.len() < HEADER_LEN {
                        return Ok(None);
                    }
                    // SPEC §1.1: 4-byte big-endian unsigned length.
                    let header = [src[0], src[1], src[2], src[3]];
                    let announced = u32::from_be_bytes(header);
                    let offset = self.consumed;
                    let index = self.next_index;
                    // SPEC §2.1: the limit is checked before anything else happens.
                    let max = self.config.get_max_frame_length();
                    if announced > max {
                        return Err(self.oversized(src, header, index, offset, max));
                    }
                    self.take(src, HEADER_LEN);
                    self.next_index += 1;
                    self.state = State::Body(FrameMeta {
                        index,
                        offset,
                        len: announced as usize,
                    });
                }
                State::Body(meta) => {
                    return Ok((src.len() >= meta.len).then_some(meta));
                }
                State::Skip { .. } => {
                    if !self.skip_available(src) {
                        return Ok(None);
                    }
                }
            }
        }
    }

    /// Takes off the front of `src` the body [`Framer::poll_body`] just reported, once the caller has
    /// read it in place, and completes the frame.
    pub(crate) fn discard_body(&mut self, src: &mut BytesMut, meta: FrameMeta) {
        src.advance(meta.len);
        self.finish(meta);
    }

    /// Completes a frame whose body the caller has taken off the front of the buffer.
    /// Counts `bytes` of the stream that were not a frame (a session's control frame, SPEC §9.1.4)
    /// as consumed, at a frame boundary: offsets stay true, frame indices do not move.
    pub(crate) fn consume_between_frames(&mut self, bytes: usize) {
        debug_assert!(matches!(self.state, State::Head));
        self.consumed += bytes as u64;
    }

    /// `true` at a frame boundary: no header read whose body is still awaited or being skipped.
    pub(crate) fn at_boundary(&self) -> bool {
        matches!(self.state, State::Head)
    }

    fn finish(&mut self, meta: FrameMeta) {
        debug_assert!(matches!(self.state, State::Body(m) if m == meta));
        self.consumed += meta.len as u64;
        self.state = State::Head;
    }

    /// The error for a header announcing more than `max` bytes; under `Skip`, also consumes the
    /// header and starts discarding the body.
    fn oversized(
        &mut self,
        src: &mut BytesMut,
        header: [u8; HEADER_LEN],
        index: u64,
        offset: u64,
        max: u32,
    ) -> Error {
        let length = u64::from(u32::from_be_bytes(header));
        // SPEC §3.5: a stream that starts with another protocol is named as such, whatever the policy.
        if offset == 0 {
            if let Some(looks_like) = foreign_protocol(header) {
                return Error::NotFramepipe {
                    looks_like,
                    header,
                    length,
                    max,
                };
            }
        }
        match self.config.get_oversize_policy() {
            // SPEC §3.3: the header stays unconsumed, so the error repeats.
            OversizePolicy::Close => Error::FrameTooLarge {
                frame: index,
                offset,
                length,
                max,
            },
            OversizePolicy::Skip => {
                self.take(src, HEADER_LEN);
                self.next_index += 1;
                let meta = SkipMeta {
                    index,
                    offset,
                    len: length,
                };
                self.state = State::Skip {
                    meta,
                    remaining: length,
                };
                self.skip_available(src);
                Error::FrameSkipped {
                    frame: index,
                    offset,
                    length,
                    max,
                }
            }
        }
    }

    fn take(&mut self, src: &mut BytesMut, n: usize) {
        src.advance(n);
        self.consumed += n as u64;
    }

    /// Discards what is available of a skipped body; `true` once it is gone entirely.
    fn skip_available(&mut self, src: &mut BytesMut) -> bool {
        let State::Skip { meta, remaining } = self.state else {
            return true;
        };
        // `n <= src.len()`, so it fits in usize.
        let n = remaining.min(src.len() as u64) as usize;
        self.take(src, n);
        let remaining = remaining - n as u64;
        if remaining == 0 {
            self.state = State::Head;
            true
        } else {
            self.state = State::Skip { meta, remaining };
            false
        }
    }
}

#[cfg(test)]
mod tests;
