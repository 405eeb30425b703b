//! The codecs' read-buffer policy: how the buffer grows towards a body (SPEC §2.2) and when it is
//! replaced after a large frame (SPEC §2.3).
//!
//! [`RawCodec`](crate::RawCodec) and [`JsonCodec`](crate::JsonCodec) apply it around a
//! [`Framer`], which itself never touches the buffer's memory. Readers that manage their own
//! buffers use the framer alone and make these decisions themselves.

use bytes::BytesMut;

use crate::limits::RESERVE_STEP;
use crate::{Builder, Framer};

/// What a decoder does to its read buffer between the framer's steps.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ReadPolicy {
    /// Capacity the buffer may keep between frames (SPEC §2.3).
    retained_capacity: usize,
}

impl ReadPolicy {
    pub(crate) fn new(config: &Builder) -> Self {
        ReadPolicy {
            retained_capacity: config.get_retained_capacity(),
        }
    }

    /// After the framer returned `Ok(None)`: if a body is being awaited, makes room for more of it
    /// in bounded steps (SPEC §2.2); otherwise (a partial header, a body being skipped) leaves the
    /// buffer alone.
    pub(crate) fn before_read(&self, framer: &Framer, src: &mut BytesMut) {
        if let Some(body_len) = framer.body_awaited() {
            reserve_towards_body(src, body_len);
        }
    }

    /// After a frame of `wire_len` bytes (header and body) was taken off the front of `src`:
    /// applies the retained-capacity rule (SPEC §2.3).
    ///
    /// After a frame larger than the retained capacity, or whenever the buffer has grown past it,
    /// `src` is replaced by a fresh buffer of the retained capacity (if what is left in it fits in
    /// half of that; otherwise at a later boundary). Looking at the frame and not only at the spare
    /// capacity matters: a buffer grown to fit a large body exactly has no spare capacity left, yet
    /// still points into the large allocation, and `BytesMut::reserve` would reclaim all of it for
    /// the next small frames once the body is dropped. Costs one allocation of the retained capacity
    /// and a copy of the bytes left over, only when it applies.
    pub(crate) fn after_frame(&self, src: &mut BytesMut, wire_len: usize) {
        let retained = self.retained_capacity;
        let large = wire_len > retained || src.capacity() > retained;
        if large && src.len() <= retained / 2 {
            let mut fresh = BytesMut::with_capacity(retained);
            fresh.extend_from_slice(src);
            *src = fresh;
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
    let missing = body_len.saturating_sub(received);
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
    use crate::limits::{DEFAULT_RETAINED_CAPACITY, HEADER_LEN};
    use crate::OversizePolicy;

    fn frame(body: &[u8]) -> Vec<u8> {
        let mut v = (body.len() as u32).to_be_bytes().to_vec();
        v.extend_from_slice(body);
        v
    }

    /// A framer and the policy, stepped together as the codecs do; returns the frames' bodies.
    fn drain(framer: &mut Framer, policy: ReadPolicy, src: &mut BytesMut) -> Vec<bytes::Bytes> {
        let mut out = Vec::new();
        loop {
            match framer.next_frame(src).unwrap() {
                Some(frame) => {
                    policy.after_frame(src, frame.wire_len());
                    out.push(frame.body);
                }
                None => {
                    policy.before_read(framer, src);
                    return out;
                }
            }
        }
    }

    #[test]
    fn reservation_follows_received_bytes_not_the_announced_length() {
        // SPEC §2.2: announce 4 GiB - 1 with the limit at the format maximum.
        let config = Builder::new()
            .max_frame_length(u32::MAX)
            .oversize_policy(OversizePolicy::Close);
        let (mut framer, policy) = (config.framer(), ReadPolicy::new(&config));
        let mut src = BytesMut::from(&[0xFF, 0xFF, 0xFF, 0xFF, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10][..]);
        assert!(drain(&mut framer, policy, &mut src).is_empty());
        let bound = |received: usize| 2 * received + RESERVE_STEP + HEADER_LEN;
        // It did reserve ahead (one step), but no more.
        assert!(src.capacity() >= 10 + RESERVE_STEP, "{}", src.capacity());
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
            assert!(drain(&mut framer, policy, &mut src).is_empty());
            assert!(
                src.capacity() <= bound(src.len()),
                "capacity {} for {} bytes",
                src.capacity(),
                src.len()
            );
        }
    }

    #[test]
    fn nothing_is_reserved_for_a_header_or_a_skipped_body() {
        let config = Builder::new()
            .max_frame_length(10)
            .oversize_policy(OversizePolicy::Skip);
        let (mut framer, policy) = (config.framer(), ReadPolicy::new(&config));
        let mut src = BytesMut::from(&[0, 0][..]);
        policy.before_read(&framer, &mut src);
        assert_eq!(src.capacity(), 2);
        let mut src = BytesMut::from(&[0, 0, 1, 0, 1][..]);
        assert!(framer.next_frame(&mut src).is_err()); // 256 > 10: skipped
        policy.before_read(&framer, &mut src);
        assert!(src.is_empty());
        assert!(src.capacity() <= 1, "capacity {}", src.capacity());
    }

    #[test]
    fn large_frame_buffer_is_released_at_the_next_boundary() {
        // SPEC §2.3: a 1 MiB frame grows the buffer; finishing it swaps in a retained-size buffer.
        let config = Builder::new();
        let (mut framer, policy) = (config.framer(), ReadPolicy::new(&config));
        let big = frame(&vec![7u8; 1 << 20]);
        let mut src = BytesMut::new();
        let (most, last) = big.split_at(big.len() - 100);
        for chunk in most.chunks(64 * 1024) {
            src.extend_from_slice(chunk);
            assert!(drain(&mut framer, policy, &mut src).is_empty());
        }
        assert!(src.capacity() > DEFAULT_RETAINED_CAPACITY);
        // The end of the body arrives with half of the next header.
        src.extend_from_slice(last);
        src.extend_from_slice(&[0, 0]);
        let bodies = drain(&mut framer, policy, &mut src);
        assert_eq!(bodies.len(), 1);
        assert_eq!(src.capacity(), DEFAULT_RETAINED_CAPACITY);
        assert_eq!(&src[..], &[0, 0], "leftover bytes survive the swap");
    }

    #[test]
    fn the_swap_waits_while_the_leftover_is_large() {
        // SPEC §2.3.1: bytes read past the frame must fit in half the retained capacity.
        let policy = ReadPolicy::new(&Builder::new().retained_capacity(100));
        let mut src = BytesMut::with_capacity(1000);
        src.extend_from_slice(&[1; 51]);
        policy.after_frame(&mut src, 500);
        assert_eq!(src.capacity(), 1000, "51 bytes left over: not yet");
        src.truncate(50);
        policy.after_frame(&mut src, 10);
        assert_eq!(
            src.capacity(),
            100,
            "the buffer is still over the retained capacity"
        );
        assert_eq!(&src[..], &[1; 50]);
    }

    #[test]
    fn buffers_within_the_retained_capacity_are_left_alone() {
        let config = Builder::new();
        let (mut framer, policy) = (config.framer(), ReadPolicy::new(&config));
        let mut src = BytesMut::with_capacity(100_000);
        src.extend_from_slice(&frame(&[1; 60_901]));
        let ptr = src.as_ptr();
        assert_eq!(drain(&mut framer, policy, &mut src).len(), 1);
        assert_eq!(src.as_ptr(), ptr.wrapping_add(60_905), "no reallocation");
    }
}
