//! The framing state machine shared by the raw and typed decoders.
//!
//! ```text
//!            header complete, len <= max            body complete
//!   ┌──────┐ ─────────────────────────────► ┌──────┐ ──────────────► deliver, back to Head
//!   │ Head │                                │ Body │
//!   └──────┘ ──────────────┐                └──────┘
//!      ▲     len > max,    │ len > max, policy Close: FrameTooLarge (header left unconsumed)
//!      │     policy Skip   ▼
//!      │              ┌──────┐
//!      └──────────────│ Skip │  discards bytes as they arrive, never buffers them
//!   all bytes skipped └──────┘
//! ```
//!
//! SPEC §3 describes the same machine normatively.

use bytes::{Buf, BytesMut};

use crate::error::{Error, FramePart};
use crate::limits::{HEADER_LEN, RESERVE_STEP};
use crate::{Builder, OversizePolicy};

/// Where a delivered frame sits in the stream.
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
    Skip { meta: FrameMeta64, remaining: u64 },
}

/// Like [`FrameMeta`] but with a length that may exceed `usize` on small targets.
#[derive(Debug, Clone, Copy)]
struct FrameMeta64 {
    index: u64,
    offset: u64,
    len: u64,
}

/// Splits a byte stream into frame bodies without copying them.
#[derive(Debug, Clone)]
pub(crate) struct FrameDecoder {
    config: Builder,
    state: State,
    /// Index the next frame header will get.
    next_index: u64,
    /// Bytes consumed from the stream so far (headers, bodies and skipped bytes).
    consumed: u64,
}

impl FrameDecoder {
    pub(crate) fn new(config: Builder) -> Self {
        FrameDecoder {
            config,
            state: State::Head,
            next_index: 0,
            consumed: 0,
        }
    }

    pub(crate) fn config(&self) -> &Builder {
        &self.config
    }

    /// Frames seen so far: delivered, rejected as frame-local errors, or skipped.
    pub(crate) fn frames_seen(&self) -> u64 {
        self.next_index
    }

    /// Bytes of the stream consumed so far.
    pub(crate) fn bytes_consumed(&self) -> u64 {
        self.consumed
    }

    /// Bytes still missing from the frame in progress when `buffered` bytes are buffered.
    pub(crate) fn at_head(&self) -> bool {
        matches!(self.state, State::Head)
    }

    pub(crate) fn is_skipping(&self) -> bool {
        matches!(self.state, State::Skip { .. })
    }

    pub(crate) fn bytes_needed(&self, buffered: usize) -> u64 {
        let buffered = buffered as u64;
        match self.state {
            State::Head => (HEADER_LEN as u64).saturating_sub(buffered),
            State::Body(meta) => (meta.len as u64).saturating_sub(buffered),
            // Skipped bytes are discarded as they arrive: none of them stay buffered.
            State::Skip { remaining, .. } => remaining,
        }
    }

    /// Advances the state machine over `src`.
    ///
    /// Returns `Ok(Some(meta))` when a whole body of `meta.len` bytes sits at the front of `src`. The
    /// caller must then call [`FrameDecoder::finish`] with the same `src` after taking exactly
    /// `meta.len` bytes off its front. `Ok(None)` means more bytes are needed.
    pub(crate) fn poll_body(&mut self, src: &mut BytesMut) -> Result<Option<FrameMeta>, Error> {
        loop {
            match self.state {
                State::Head => {
                    if src.len() < HEADER_LEN {
                        return Ok(None);
                    }
                    // SPEC §1.1: 4-byte big-endian unsigned length.
                    let announced = u32::from_be_bytes([src[0], src[1], src[2], src[3]]);
                    let offset = self.consumed;
                    let index = self.next_index;
                    // SPEC §2.1: the limit is checked before anything is reserved.
                    if announced > self.config.get_max_frame_length() {
                        let (length, max) =
                            (u64::from(announced), self.config.get_max_frame_length());
                        // SPEC §3.5: a stream that starts with another protocol is named as such.
                        let header = [src[0], src[1], src[2], src[3]];
                        if offset == 0 {
                            if let Some(looks_like) = crate::error::foreign_protocol(header) {
                                return Err(Error::NotFramepipe {
                                    looks_like,
                                    header,
                                    length,
                                    max,
                                });
                            }
                        }
                        match self.config.get_oversize_policy() {
                            // SPEC §3.3: the header stays unconsumed, so the error repeats.
                            OversizePolicy::Close => {
                                return Err(Error::FrameTooLarge {
                                    frame: index,
                                    offset,
                                    length,
                                    max,
                                })
                            }
                            OversizePolicy::Skip => {
                                self.take(src, HEADER_LEN);
                                self.next_index += 1;
                                let meta = FrameMeta64 {
                                    index,
                                    offset,
                                    len: length,
                                };
                                self.state = State::Skip {
                                    meta,
                                    remaining: length,
                                };
                                self.skip_available(src);
                                return Err(Error::FrameSkipped {
                                    frame: index,
                                    offset,
                                    length,
                                    max,
                                });
                            }
                        }
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
                    if src.len() >= meta.len {
                        return Ok(Some(meta));
                    }
                    reserve_towards_body(src, meta.len);
                    return Ok(None);
                }
                State::Skip { .. } => {
                    if !self.skip_available(src) {
                        return Ok(None);
                    }
                }
            }
        }
    }

    /// Completes a frame whose body the caller has just taken off the front of `src`.
    ///
    /// Applies the retained-capacity rule (SPEC §2.3): after a frame larger than the retained capacity,
    /// or whenever the buffer has grown past it, `src` is replaced by a fresh buffer of the retained
    /// capacity (if what is left in it is small). Looking at the frame and not only at the spare capacity
    /// matters: a buffer grown to fit a large body exactly has no spare capacity left, yet still points
    /// into the large allocation, and `BytesMut::reserve` would reclaim all of it for the next small
    /// frames once the body is dropped.
    pub(crate) fn finish(&mut self, src: &mut BytesMut, meta: FrameMeta) {
        self.consumed += meta.len as u64;
        self.state = State::Head;
        let retained = self.config.get_retained_capacity();
        let large = HEADER_LEN + meta.len > retained || src.capacity() > retained;
        if large && src.len() <= retained / 2 {
            let mut fresh = BytesMut::with_capacity(retained);
            fresh.extend_from_slice(src);
            *src = fresh;
        }
    }

    /// At end of stream: `Ok(())` if the stream ended between frames, else [`Error::Truncated`]
    /// (SPEC §3.4). Call only after [`FrameDecoder::poll_body`] returned `Ok(None)`.
    pub(crate) fn check_eof(&self, src: &BytesMut) -> Result<(), Error> {
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
            // Skipped bytes went straight through; nothing to shrink beyond what reads allocated.
            true
        } else {
            self.state = State::Skip { meta, remaining };
            false
        }
    }
}

/// Makes room for more of a body of `body_len` bytes whose first `src.len()` bytes have arrived
/// (SPEC §2.2).
///
/// Nothing happens while there is room for at least `min(missing, RESERVE_STEP)` more bytes. Otherwise
/// the buffer grows by `min(missing, max(received, RESERVE_STEP))`: never by more than has already
/// arrived (or one step), so an untrusted announced length cannot make us allocate, yet a large body
/// needs only a logarithmic number of reallocations and the last one fits the body exactly. The
/// allocation is exact rather than `Vec`-style doubling, so capacity stays within
/// `2 × received + RESERVE_STEP` and a large body does not end up in a buffer twice its size. While
/// the new buffer is filled the old one still exists: at most `3 × received + 2 × RESERVE_STEP` for an
/// instant.
fn reserve_towards_body(src: &mut BytesMut, body_len: usize) {
    let received = src.len();
    let missing = body_len - received;
    if src.capacity() - received >= missing.min(RESERVE_STEP) {
        return;
    }
    let want = missing.min(received.max(RESERVE_STEP));
    if src.try_reclaim(want) {
        return;
    }
    // One copy of what has arrived, as `reserve` would make, into an allocation of the exact size.
    let mut grown = BytesMut::with_capacity(received + want);
    grown.extend_from_slice(src);
    *src = grown;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::DEFAULT_RETAINED_CAPACITY;

    fn frame(body: &[u8]) -> Vec<u8> {
        let mut v = (body.len() as u32).to_be_bytes().to_vec();
        v.extend_from_slice(body);
        v
    }

    fn config(max: u32, policy: OversizePolicy) -> Builder {
        *Builder::new().max_frame_length(max).oversize_policy(policy)
    }

    /// Decodes every complete frame in `src`, returning bodies.
    fn drain(dec: &mut FrameDecoder, src: &mut BytesMut) -> Result<Vec<Vec<u8>>, Error> {
        let mut out = Vec::new();
        while let Some(meta) = dec.poll_body(src)? {
            out.push(src.split_to(meta.len).to_vec());
            dec.finish(src, meta);
        }
        Ok(out)
    }

    #[test]
    fn zero_length_frames_are_frames() {
        // SPEC §1.1: N = 0 is a valid frame with an empty body.
        let mut dec = FrameDecoder::new(Builder::new());
        let mut src = BytesMut::from(&[frame(b""), frame(b"x"), frame(b"")].concat()[..]);
        let bodies = drain(&mut dec, &mut src).unwrap();
        assert_eq!(bodies, [b"".to_vec(), b"x".to_vec(), b"".to_vec()]);
        assert_eq!(dec.frames_seen(), 3);
        assert_eq!(dec.bytes_consumed(), 13);
        assert!(dec.check_eof(&src).is_ok());
    }

    #[test]
    fn close_policy_reports_index_offset_and_repeats() {
        // SPEC §3.3, §4: two good frames (9 + 4 bytes), then one announcing max + 1.
        let mut dec = FrameDecoder::new(config(5, OversizePolicy::Close));
        let bytes = [
            frame(b"hello"),
            frame(b""),
            6u32.to_be_bytes().to_vec(),
            b"abc".to_vec(),
        ]
        .concat();
        let mut src = BytesMut::from(&bytes[..]);
        let err = drain(&mut dec, &mut src).unwrap_err();
        match err {
            Error::FrameTooLarge {
                frame,
                offset,
                length,
                max,
            } => assert_eq!((frame, offset, length, max), (2, 13, 6, 5)),
            other => panic!("unexpected {other:?}"),
        }
        // The header is not consumed: the same error comes back, nothing was buffered for the body.
        assert_eq!(src.len(), 7);
        assert!(matches!(
            dec.poll_body(&mut src),
            Err(Error::FrameTooLarge { frame: 2, .. })
        ));
    }

    #[test]
    fn limit_is_inclusive() {
        let mut dec = FrameDecoder::new(config(5, OversizePolicy::Close));
        let mut src = BytesMut::from(&frame(b"12345")[..]);
        assert_eq!(drain(&mut dec, &mut src).unwrap(), [b"12345".to_vec()]);
    }

    #[test]
    fn skip_policy_discards_without_buffering_and_continues() {
        // SPEC §3.3: a 100-byte frame over a 10-byte limit, arriving in 7-byte pieces.
        let mut dec = FrameDecoder::new(config(10, OversizePolicy::Skip));
        let stream = [frame(b"a"), frame(&[b'z'; 100]), frame(b"b")].concat();
        let mut src = BytesMut::new();
        let mut bodies = Vec::new();
        let mut skipped = Vec::new();
        for chunk in stream.chunks(7) {
            src.extend_from_slice(chunk);
            loop {
                match drain(&mut dec, &mut src) {
                    Ok(b) => {
                        bodies.extend(b);
                        break;
                    }
                    Err(e) => {
                        assert!(e.is_frame_local());
                        skipped.push((e.frame_index(), e.offset()));
                    }
                }
            }
            // Never more than one piece plus a partial header is held.
            assert!(src.len() < 7 + HEADER_LEN, "held {} bytes", src.len());
        }
        assert_eq!(bodies, [b"a".to_vec(), b"b".to_vec()]);
        assert_eq!(skipped, [(Some(1), Some(5))]);
        assert_eq!(dec.frames_seen(), 3);
        assert_eq!(dec.bytes_consumed(), stream.len() as u64);
        assert!(dec.check_eof(&src).is_ok());
    }

    #[test]
    fn eof_between_frames_is_clean_and_inside_one_is_truncated() {
        // SPEC §3.4.
        let cases: [(&[u8], FramePart, u64, u64, u64); 4] = [
            (&[0, 0], FramePart::Header, 0, 4, 2),
            (&[0, 0, 0, 9, b'a', b'b'], FramePart::Body, 0, 9, 2),
            (&[0, 0, 0, 1, b'a', 0, 0, 0], FramePart::Header, 5, 4, 3),
            (&[0, 0, 0, 1, b'a', 0, 0, 0, 3], FramePart::Body, 5, 3, 0),
        ];
        for (bytes, want_part, want_offset, want_expected, want_received) in cases {
            let mut dec = FrameDecoder::new(Builder::new());
            let mut src = BytesMut::from(bytes);
            drain(&mut dec, &mut src).unwrap();
            match dec.check_eof(&src) {
                Err(Error::Truncated {
                    part,
                    offset,
                    expected,
                    received,
                    ..
                }) => assert_eq!(
                    (part, offset, expected, received),
                    (want_part, want_offset, want_expected, want_received),
                    "{bytes:?}"
                ),
                other => panic!("{bytes:?}: unexpected {other:?}"),
            }
        }
    }

    #[test]
    fn eof_while_skipping_is_truncated() {
        let mut dec = FrameDecoder::new(config(1, OversizePolicy::Skip));
        let mut src = BytesMut::from(&[0, 0, 0, 50, 1, 2, 3][..]);
        assert!(matches!(
            dec.poll_body(&mut src),
            Err(Error::FrameSkipped { length: 50, .. })
        ));
        assert!(matches!(dec.poll_body(&mut src), Ok(None)));
        assert!(matches!(
            dec.check_eof(&src),
            Err(Error::Truncated {
                expected: 50,
                received: 3,
                part: FramePart::Body,
                ..
            })
        ));
    }

    #[test]
    fn reservation_follows_received_bytes_not_the_announced_length() {
        // SPEC §2.2: announce 4 GiB - 1 with the limit at the format maximum.
        let mut dec = FrameDecoder::new(config(u32::MAX, OversizePolicy::Close));
        let mut src = BytesMut::from(&[0xFF, 0xFF, 0xFF, 0xFF, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10][..]);
        assert!(dec.poll_body(&mut src).unwrap().is_none());
        let bound = |received: usize| 2 * received + RESERVE_STEP + HEADER_LEN;
        // (The test's own `extend_from_slice` plays the reader and may double the buffer too.)
        assert!(
            src.capacity() <= bound(10),
            "capacity {} after 10 bytes",
            src.capacity()
        );
        // Keep feeding 64 KiB pieces: the buffer stays within twice what arrived plus one step.
        let piece = vec![0u8; 64 * 1024];
        for _ in 0..16 {
            src.extend_from_slice(&piece);
            assert!(dec.poll_body(&mut src).unwrap().is_none());
            assert!(
                src.capacity() <= bound(src.len()),
                "capacity {} for {} bytes",
                src.capacity(),
                src.len()
            );
        }
    }

    #[test]
    fn large_frame_buffer_is_released_at_the_next_boundary() {
        // SPEC §2.3: a 1 MiB frame grows the buffer; finishing it swaps in a retained-size buffer.
        let mut dec = FrameDecoder::new(Builder::new());
        let big = frame(&vec![7u8; 1 << 20]);
        let mut src = BytesMut::new();
        for chunk in big.chunks(64 * 1024) {
            src.extend_from_slice(chunk);
            assert!(dec.poll_body(&mut src).unwrap().is_none() || src.len() == 1 << 20);
        }
        src.extend_from_slice(&[0, 0]); // half of the next header
        assert!(src.capacity() > DEFAULT_RETAINED_CAPACITY);
        let bodies = drain(&mut dec, &mut src).unwrap();
        assert_eq!(bodies.len(), 1);
        assert_eq!(src.capacity(), DEFAULT_RETAINED_CAPACITY);
        assert_eq!(&src[..], &[0, 0], "leftover bytes survive the swap");
    }

    #[test]
    fn buffers_within_the_retained_capacity_are_left_alone() {
        let mut dec = FrameDecoder::new(Builder::new());
        let mut src = BytesMut::with_capacity(100_000);
        src.extend_from_slice(&frame(&[1; 60_901]));
        let ptr = src.as_ptr();
        drain(&mut dec, &mut src).unwrap();
        assert_eq!(src.as_ptr(), ptr.wrapping_add(60_905), "no reallocation");
    }
}
