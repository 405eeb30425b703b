//! The reader's buffer: the socket is read into blocks that are reused once the frames split off
//! them have been dropped (SPEC §7.1.5).
//!
//! Frames are split off the buffer without copying, so a block stays allocated while any frame in it
//! is queued or being handled. Allocating a fresh buffer whenever the current one fills would hand the
//! kernel a stream of new pages to fault in and the allocator a stream of blocks to free: on loopback
//! that cost more CPU than the copy out of the socket itself (BENCHMARKS.md). Instead a filled block
//! is retired to a short list of spares, and the next block is the first spare whose frames have all
//! been dropped (`BytesMut::try_reclaim`), or a new allocation if none is free yet.
//!
//! A frame that does not fit in what is left of a block is moved to the start of the next block
//! (one copy of the part received so far) before more of it is read, so frames up to a block long
//! never straddle blocks. A frame longer than a block moves to a spare buffer that can hold it whole,
//! if one is free, or grows by the codec's rule (SPEC §2.2), which never allocates ahead of the bytes
//! received. The framer ([`framepipe_codec::Framer`]) never grows or replaces the buffer: this is the
//! consumer's whole buffer policy (SPEC §7.1.5), in place of the codecs' (§2.2, §2.3).
//!
//! The very first read of a connection takes at most a header into a buffer of that size, so a
//! connection that never sends, or only closes, costs no block (SPEC §7.1.5).

use std::collections::VecDeque;

#[cfg(test)]
use bytes::BufMut;
use bytes::BytesMut;
use framepipe_codec::limits::{HEADER_LEN, RESERVE_STEP};
use framepipe_flow::Reservation;

/// Retired buffers kept for reuse: at most 4, and at most the connection's queue budget in bytes
/// (`ReadBuffer::new`) or [`KEPT_SPARES`] whole buffers. Buffers still pinned by queued frames count
/// too; a buffer let go is freed when its last frame is dropped (`ReadBuffer::evict`).
pub(crate) const MAX_SPARE_BLOCKS: usize = 4;

/// Whole buffers kept as spares whatever their size, within the memory limit (SPEC §7.1.5).
const KEPT_SPARES: usize = 3;

/// A retired buffer and the size of the allocation behind it.
#[derive(Debug)]
struct Spare {
    buf: BytesMut,
    alloc: usize,
    /// Retired with nothing of a frame in progress in it (not a buffer a frame grew out of).
    whole: bool,
}

/// The read buffer of one connection.
#[derive(Debug)]
pub(crate) struct ReadBuffer {
    buf: BytesMut,
    /// Size of the allocation behind `buf` (0 before the first read).
    alloc: usize,
    spares: VecDeque<Spare>,
    /// Sum of the spares' allocations.
    spare_bytes: usize,
    max_spare_bytes: usize,
    /// Covers the spares' allocations in the consumer's memory limit (SPEC §7.6), if there is one:
    /// a retired buffer is kept only if the limit has room for it.
    spare_memory: Option<Reservation>,
    block: usize,
    allocations: u64,
}

impl ReadBuffer {
    /// A buffer that reads into blocks of `block` bytes (at least 4 × `RESERVE_STEP`) and keeps
    /// retired buffers of at most `max_spare_bytes` in total for reuse, each only if `spare_memory`
    /// (when given) can grow to cover it. Nothing is allocated until the first `prepare_read`.
    pub(crate) fn new(
        block: usize,
        max_spare_bytes: usize,
        spare_memory: Option<Reservation>,
    ) -> Self {
        ReadBuffer {
            buf: BytesMut::new(),
            alloc: 0,
            spares: VecDeque::with_capacity(MAX_SPARE_BLOCKS + 1),
            spare_bytes: 0,
            max_spare_bytes,
            spare_memory,
            block: block.max(4 * RESERVE_STEP),
            allocations: 0,
        }
    }

    /// Makes room for a read at a frame boundary with nothing buffered, and returns how many bytes
    /// that read may take.
    ///
    /// If the buffer has little room left (nothing allocated yet, or a block used up), it is given
    /// up now and the next header is read into a buffer of [`HEADER_LEN`] bytes: the next block is
    /// chosen only once the peer has sent something, when the frames that pin the spares may have
    /// been handled, and a connection that goes quiet (or never sends) holds no block (SPEC §7.1.5).
    /// Costs one more read of 4 bytes per block used up at a frame boundary.
    pub(crate) fn prepare_head_read(&mut self) -> usize {
        let room = self.buf.capacity() - self.buf.len();
        if self.buf.is_empty() && room <= RESERVE_STEP {
            self.replace(BytesMut::with_capacity(HEADER_LEN), 0);
            return HEADER_LEN;
        }
        self.prepare_read(HEADER_LEN as u64)
    }

    /// The bytes read and not yet split off, for the codec.
    pub(crate) fn bytes_mut(&mut self) -> &mut BytesMut {
        &mut self.buf
    }

    /// The bytes read and not yet split off.
    pub(crate) fn bytes(&self) -> &BytesMut {
        &self.buf
    }

    /// Bytes read and not yet split off.
    pub(crate) fn len(&self) -> usize {
        self.buf.len()
    }

    /// Buffers allocated so far (every other buffer used was a reused one).
    #[cfg(test)]
    pub(crate) fn allocations(&self) -> u64 {
        self.allocations
    }

    /// Makes room for the next read, given that the frame in progress still needs `needed` bytes
    /// (`RawCodec::bytes_needed`), and returns how many bytes that read may take.
    ///
    /// - A frame that fits in a block but not in what is left of this one moves (the part received
    ///   so far, one copy) to the next block; so does anything once no more than `RESERVE_STEP` of
    ///   the block is left, so reads never shrink to a few bytes near its end.
    /// - A frame longer than a block moves, once no more than `RESERVE_STEP` bytes of room are left,
    ///   to a spare buffer that can hold all of it, or else to a new block (if at most half a block of
    ///   it has arrived) or a new buffer grown by the codec's rule (SPEC §2.2: by at most the bytes
    ///   received so far, never ahead of them).
    /// - The read leaves `RESERVE_STEP` bytes of room unless the frame needs them, so the codec finds
    ///   room for the frame the read leaves incomplete and never grows the buffer itself.
    /// - The read takes at most one block past the end of the frame in progress, so the buffer never
    ///   holds more than that frame plus a block (SPEC §5.4), however large its allocation.
    ///
    /// Costs at most one copy of the partial frame, and an allocation only when no spare is free.
    pub(crate) fn prepare_read(&mut self, needed: u64) -> usize {
        let len = self.buf.len();
        let needed = usize::try_from(needed).unwrap_or(usize::MAX).max(1);
        let room = self.buf.capacity() - len;
        let total = len.saturating_add(needed);
        if total <= self.block {
            if room < needed || room <= RESERVE_STEP {
                self.switch(self.block, self.block);
            }
        } else if room <= RESERVE_STEP {
            // Little of the frame here yet: a block will do for now. Otherwise grow by what has
            // arrived (with more than half a block received, that is over `2 × RESERVE_STEP`).
            let alloc = if len <= self.block / 2 {
                self.block
            } else {
                len + needed.min(len)
            };
            self.switch(total, alloc);
        }
        let room = self.buf.capacity() - self.buf.len();
        let limit = if needed <= room {
            // Past the frame in progress, read at most a block ahead (SPEC §5.4), even into a
            // buffer grown for a large frame.
            room.saturating_sub(RESERVE_STEP)
                .min(needed.saturating_add(self.block))
                .max(needed)
        } else {
            // More room than RESERVE_STEP is guaranteed above.
            room - RESERVE_STEP
        };
        debug_assert!(limit > 0, "a read of nothing would look like end of stream");
        limit
    }

    /// Reads into the buffer with `read`, at most `limit` bytes (as returned by `prepare_read`).
    #[cfg(test)]
    pub(crate) fn read_with<R>(
        &mut self,
        limit: usize,
        read: impl FnOnce(&mut bytes::buf::Limit<&mut BytesMut>) -> R,
    ) -> R {
        let mut limited = (&mut self.buf).limit(limit);
        read(&mut limited)
    }

    /// Moves what is buffered to the first spare with room for `want` bytes, or to a new buffer of
    /// `alloc` bytes, and retires the current one.
    fn switch(&mut self, want: usize, alloc: usize) {
        let free = self.spares.iter_mut().position(|s| s.buf.try_reclaim(want));
        let (mut next, next_alloc) = match free {
            Some(i) => {
                let spare = self.spares.remove(i).expect("index from position");
                self.spare_bytes -= spare.alloc;
                (spare.buf, spare.alloc)
            }
            None => {
                self.allocations += 1;
                (BytesMut::with_capacity(alloc), alloc)
            }
        };
        debug_assert!(next.is_empty());
        next.extend_from_slice(&self.buf);
        self.replace(next, next_alloc);
    }

    /// Puts `next` (an allocation of `next_alloc` bytes, 0 for a header's buffer) in place of the
    /// current buffer, which is retired to the spares if the limits allow.
    fn replace(&mut self, next: BytesMut, next_alloc: usize) {
        let mut old = std::mem::replace(&mut self.buf, next);
        let old_alloc = std::mem::replace(&mut self.alloc, next_alloc);
        let room = match &mut self.spare_memory {
            Some(memory) => memory.try_grow_keeping(self.spare_bytes + old_alloc),
            None => true,
        };
        if old_alloc > 0 && room {
            let whole = old.is_empty();
            old.clear();
            self.spares.push_back(Spare {
                buf: old,
                alloc: old_alloc,
                whole,
            });
            self.spare_bytes += old_alloc;
            self.evict();
        }
        if let Some(memory) = &mut self.spare_memory {
            memory.shrink_to(self.spare_bytes);
        }
    }
}

impl ReadBuffer {
    /// Lets spares go until at most `MAX_SPARE_BLOCKS` and `max_spare_bytes` remain, except that up
    /// to `KEPT_SPARES` whole buffers stay whatever their size (within the memory limit). A buffer
    /// a frame grew out of goes first, then the oldest.
    ///
    /// With frames larger than the budget, one frame is read while one waits in the queue and one
    /// is handled, so reusing their buffers takes three. Keeping fewer (or the blocks a large frame
    /// grew through instead) made every such frame a fresh allocation, grown by copies and paid
    /// for in page faults: 200,000 to 450,000 minor faults and 1.2× the consumer's CPU for 3,000
    /// frames of 1 MB (SPEC §7.1.5).
    fn evict(&mut self) {
        while self.spares.len() > MAX_SPARE_BLOCKS || self.spare_bytes > self.max_spare_bytes {
            let victim = match self.spares.iter().position(|s| !s.whole) {
                Some(i) => i,
                None if self.spares.len() > MAX_SPARE_BLOCKS || self.spares.len() > KEPT_SPARES => {
                    0
                }
                None => break,
            };
            let gone = self.spares.remove(victim).expect("index in range");
            self.spare_bytes -= gone.alloc;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    const BLOCK: usize = 64 * 1024;

    /// Appends `n` bytes of value `v` as if read from a socket, respecting `prepare_read`.
    fn read(rb: &mut ReadBuffer, needed: u64, n: usize, v: u8) -> usize {
        let limit = rb.prepare_read(needed);
        let n = n.min(limit);
        rb.read_with(limit, |b| b.put_bytes(v, n));
        n
    }

    #[test]
    fn blocks_are_reused_once_their_frames_are_dropped() {
        let mut rb = ReadBuffer::new(BLOCK, 4 * BLOCK, None);
        let mut held: Vec<Bytes> = Vec::new();
        for round in 0..50u8 {
            // A 20,000-byte frame arrives in pieces and is split off.
            let mut got = 0;
            while got < 20_000 {
                got += read(&mut rb, (20_000 - got) as u64, 20_000 - got, round);
            }
            let frame = rb.bytes_mut().split_to(20_000).freeze();
            assert!(frame.iter().all(|&b| b == round), "frame {round} intact");
            held.push(frame);
            if held.len() > 3 {
                held.remove(0); // the handler drops frames a little behind the reader
            }
        }
        // 50 frames of 20 KB is 1 MB through 64 KiB blocks; only a handful were ever allocated.
        assert!(rb.allocations() <= 4, "{}", rb.allocations());
    }

    #[test]
    fn frames_larger_than_the_spare_budget_still_reuse_their_buffers() {
        // SPEC §7.1.5: spares may total at most 32 KiB here, yet the buffers of 200,000-byte frames
        // are kept and serve later frames once dropped, while one frame waits in the queue and one
        // is handled as the next is read (the two before it are still held when it starts).
        const FRAME: usize = 200_000;
        let mut rb = ReadBuffer::new(BLOCK, BLOCK / 2, None);
        let mut held = std::collections::VecDeque::new();
        let mut warm = 0;
        for round in 0..30u8 {
            // As the consumer reads: the header first, at a frame boundary, then the body.
            let limit = rb.prepare_head_read();
            rb.read_with(limit, |b| b.put_slice(&(FRAME as u32).to_be_bytes()));
            let mut got = 0;
            while got < FRAME {
                got += read(&mut rb, (FRAME - got) as u64, 50_000, round);
            }
            let frame = rb.bytes_mut().split_to(HEADER_LEN + FRAME).freeze();
            assert!(
                frame[HEADER_LEN..].iter().all(|&b| b == round),
                "frame {round} intact"
            );
            held.push_back(frame);
            if held.len() > 2 {
                held.pop_front(); // handled
            }
            if round == 2 {
                warm = rb.allocations();
            }
        }
        // Three buffers, each grown through a block and a larger one, for the first three frames;
        // none after. (Keeping one spare, or the blocks instead of the whole buffers: three
        // allocations for every frame, 90 in all.)
        assert_eq!(rb.allocations(), warm, "{warm} allocations warm, then more");
        assert!(warm <= 9, "{warm}");
    }

    #[test]
    fn a_frame_that_would_straddle_moves_to_a_new_block_with_its_start() {
        let mut rb = ReadBuffer::new(BLOCK, 4 * BLOCK, None);
        // One read brings a 50,000-byte frame and the first 6,000 bytes of a 20,000-byte one.
        assert_eq!(read(&mut rb, 4, 56_000, 1), 56_000);
        let first = rb.bytes_mut().split_to(50_000).freeze();
        let before = rb.bytes_mut().as_ptr();
        // 9,536 bytes are left in the block, the second frame needs 14,000 more: move it now.
        let limit = rb.prepare_read(14_000);
        assert_ne!(rb.bytes_mut().as_ptr(), before, "moved to another block");
        assert_eq!(rb.len(), 6_000);
        assert!(
            rb.bytes_mut().iter().all(|&b| b == 1),
            "its start came along"
        );
        assert_eq!(limit, BLOCK - 6_000 - RESERVE_STEP);
        assert!(
            first.iter().all(|&b| b == 1),
            "split-off frames are untouched"
        );
    }

    #[test]
    fn a_nearly_used_block_is_left_before_reading() {
        let mut rb = ReadBuffer::new(BLOCK, 4 * BLOCK, None);
        assert_eq!(read(&mut rb, 4, 60_000, 1), BLOCK - RESERVE_STEP);
        let _frame = rb.bytes_mut().split_to(BLOCK - RESERVE_STEP).freeze();
        // Exactly RESERVE_STEP left: the next read goes to a new block, not into the last 8 KiB.
        assert_eq!(rb.prepare_read(4), BLOCK - RESERVE_STEP);
        assert_eq!(rb.allocations(), 2);
    }

    #[test]
    fn at_a_boundary_without_room_the_next_header_is_read_before_a_block_is_taken() {
        let mut rb = ReadBuffer::new(BLOCK, 4 * BLOCK, None);
        assert_eq!(rb.prepare_head_read(), 4);
        assert_eq!(rb.bytes_mut().capacity(), HEADER_LEN);
        rb.read_with(4, |b| b.put_slice(&[0, 0, 0, 9]));
        // The next read moves the header to a block and reads on.
        assert_eq!(rb.prepare_read(9), BLOCK - HEADER_LEN - RESERVE_STEP);
        assert_eq!(&rb.bytes_mut()[..], &[0, 0, 0, 9]);
        assert_eq!(rb.allocations(), 1);
        assert_eq!(
            rb.spares.len(),
            0,
            "the header's buffer is not kept as a spare"
        );
        // The block used up exactly at a frame boundary is retired before the next header is read.
        rb.read_with(BLOCK, |b| b.put_bytes(1, 9));
        let _frame = rb.bytes_mut().split_to(13);
        rb.read_with(BLOCK, |b| b.put_bytes(0, BLOCK - 13 - RESERVE_STEP));
        let _rest = rb.bytes_mut().split();
        assert_eq!(rb.prepare_head_read(), 4);
        assert_eq!(rb.bytes_mut().capacity(), HEADER_LEN);
        assert_eq!(rb.spares.len(), 1, "the block waits among the spares");
        assert_eq!(rb.allocations(), 1);
    }

    #[test]
    fn reads_leave_room_so_the_codec_need_not_grow_the_buffer() {
        let mut rb = ReadBuffer::new(BLOCK, 4 * BLOCK, None);
        let limit = rb.prepare_read(4);
        assert_eq!(limit, BLOCK - RESERVE_STEP);
        // Unless the frame in progress needs that room itself.
        let mut rb = ReadBuffer::new(BLOCK, 4 * BLOCK, None);
        assert_eq!(rb.prepare_read(BLOCK as u64), BLOCK);
    }

    #[test]
    fn frames_longer_than_a_block_grow_only_when_room_runs_out() {
        let mut rb = ReadBuffer::new(BLOCK, 4 * BLOCK, None);
        read(&mut rb, 4, 10, 0);
        let before = rb.bytes_mut().as_ptr();
        let limit = rb.prepare_read(1 << 20);
        assert_eq!(rb.bytes_mut().as_ptr(), before, "not moved");
        assert_eq!(limit, BLOCK - 10 - RESERVE_STEP);
    }

    /// The real framer over the read buffer: frames of every size (many longer than a block)
    /// arrive in reads of random sizes, some are held for a while as a queue would hold them. Every
    /// frame arrives intact, every read has room (the buffer is this type's to grow, SPEC §7.1.5),
    /// and large buffers are reused.
    #[test]
    fn with_the_framer_frames_arrive_intact_and_large_buffers_are_reused() {
        use framepipe_codec::Framer;

        let mut x = 0x2545_f491_4f6c_dd1du64;
        let mut rand = move |n: usize| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % n as u64) as usize
        };
        let sizes: Vec<usize> = (0..400)
            .map(|i| match i % 4 {
                0 => rand(100),
                1 => rand(3 * BLOCK),
                _ => 150_000 + rand(20),
            })
            .collect();
        let mut wire = Vec::new();
        for (i, &n) in sizes.iter().enumerate() {
            wire.extend_from_slice(&(n as u32).to_be_bytes());
            wire.extend((0..n).map(|j| (i + j) as u8));
        }

        let mut codec = Framer::new(framepipe_codec::Builder::new());
        let mut rb = ReadBuffer::new(BLOCK, 1 << 20, None);
        let (mut pos, mut got, mut held) = (0, 0, VecDeque::new());
        while got < sizes.len() {
            let needed = codec.bytes_needed(rb.len()) as usize;
            let limit = rb.prepare_read(needed as u64);
            // At most a block past the frame in progress, however large the buffer (SPEC §5.4).
            assert!(limit <= needed.max(1) + BLOCK, "{limit} for {needed}");
            // The read fits the room made for it: reading never grows the buffer.
            assert!(limit > 0 && limit <= rb.bytes_mut().capacity() - rb.len());
            let n = limit.min(1 + rand(100_000)).min(wire.len() - pos);
            rb.read_with(limit, |b| b.put_slice(&wire[pos..pos + n]));
            pos += n;
            while let Some(frame) = codec.next_frame(rb.bytes_mut()).unwrap() {
                let body = frame.body;
                assert_eq!(body.len(), sizes[got], "frame {got}");
                assert!(body.iter().enumerate().all(|(j, &b)| b == (got + j) as u8));
                got += 1;
                held.push_back(body);
                if held.len() > 3 {
                    held.pop_front();
                }
            }
            // The spares stay within their bounds: at most 4, at most `max_spare_bytes` in all,
            // or one buffer alone.
            assert!(rb.spares.len() <= MAX_SPARE_BLOCKS);
            assert!(rb.spare_bytes <= 1 << 20 || rb.spares.len() == 1);
            assert_eq!(
                rb.spare_bytes,
                rb.spares.iter().map(|s| s.alloc).sum::<usize>()
            );
        }
        // 400 frames, 42 MB: buffers come from the spares most of the time.
        assert!(rb.allocations() < 150, "{}", rb.allocations());
    }
}
