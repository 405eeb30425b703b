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
//! never straddle blocks and the codec never has to grow the buffer for them. Longer frames are left
//! to the codec's growth rule (SPEC §2.2), which never allocates ahead of the bytes received.

use std::collections::VecDeque;

use bytes::{BufMut, BytesMut};
use framepipe_codec::limits::RESERVE_STEP;

/// Retired blocks kept for reuse: 4. Blocks still pinned by queued frames count too; when the list is
/// full the oldest is let go (its memory is freed when its last frame is dropped). Idle spares cost at
/// most 4 blocks (1 MiB at the default block size) per connection.
pub(crate) const MAX_SPARE_BLOCKS: usize = 4;

/// The read buffer of one connection.
#[derive(Debug)]
pub(crate) struct ReadBuffer {
    buf: BytesMut,
    spares: VecDeque<BytesMut>,
    block: usize,
    blocks_allocated: u64,
    /// `buf` is a block (or a buffer the codec grew), not the empty buffer a connection starts with.
    holds_block: bool,
}

impl ReadBuffer {
    /// A buffer that reads into blocks of `block` bytes (at least twice `RESERVE_STEP`).
    pub(crate) fn new(block: usize) -> Self {
        ReadBuffer {
            buf: BytesMut::new(),
            spares: VecDeque::with_capacity(MAX_SPARE_BLOCKS),
            block: block.max(2 * RESERVE_STEP),
            blocks_allocated: 0,
            holds_block: false,
        }
    }

    /// The bytes read and not yet split off, for the codec.
    pub(crate) fn bytes_mut(&mut self) -> &mut BytesMut {
        &mut self.buf
    }

    /// Bytes read and not yet split off.
    pub(crate) fn len(&self) -> usize {
        self.buf.len()
    }

    /// Blocks allocated so far (the rest of the blocks used were reused).
    #[cfg(test)]
    pub(crate) fn blocks_allocated(&self) -> u64 {
        self.blocks_allocated
    }

    /// Makes room for the next read, given that the frame in progress still needs `needed` bytes
    /// (`RawCodec::bytes_needed`), and returns how many bytes that read may take.
    ///
    /// For a frame that fits in a block, the read leaves `RESERVE_STEP` bytes of room unless the frame
    /// itself needs them: the frame that the read leaves incomplete then finds room, and the codec does
    /// not grow the buffer for it (SPEC §2.2 grows only when less than `RESERVE_STEP` is left); the
    /// next call moves it to a new block if it does not fit. A block is also left once no more than
    /// `RESERVE_STEP` of it remains, so reads never shrink to a few bytes near its end. Costs at most one copy of the partial
    /// frame, and an allocation only when no spare block is free.
    pub(crate) fn prepare_read(&mut self, needed: u64) -> usize {
        let len = self.buf.len();
        let needed = usize::try_from(needed).unwrap_or(usize::MAX).max(1);
        let fits_in_block = len.saturating_add(needed) <= self.block;
        if fits_in_block {
            let room = self.buf.capacity() - len;
            if room < needed || room <= RESERVE_STEP {
                self.next_block();
            }
            let room = self.buf.capacity() - self.buf.len();
            room.saturating_sub(RESERVE_STEP).max(needed).min(room)
        } else {
            // A frame longer than a block: the codec grows the buffer as its bytes arrive.
            if self.buf.capacity() == len {
                self.next_block();
            }
            self.buf.capacity() - self.buf.len()
        }
    }

    /// Reads into the buffer with `read`, at most `limit` bytes (as returned by `prepare_read`).
    pub(crate) fn read_with<R>(
        &mut self,
        limit: usize,
        read: impl FnOnce(&mut bytes::buf::Limit<&mut BytesMut>) -> R,
    ) -> R {
        let mut limited = (&mut self.buf).limit(limit);
        read(&mut limited)
    }

    /// Moves what is buffered (the start of a frame, under a block long) to a free block.
    fn next_block(&mut self) {
        let block = self.block;
        let free = self.spares.iter_mut().position(|b| b.try_reclaim(block));
        let mut next = match free {
            Some(i) => self.spares.remove(i).expect("index from position"),
            None => {
                self.blocks_allocated += 1;
                BytesMut::with_capacity(block)
            }
        };
        debug_assert!(next.is_empty());
        next.extend_from_slice(&self.buf);
        let mut old = std::mem::replace(&mut self.buf, next);
        if std::mem::replace(&mut self.holds_block, true) {
            old.clear();
            if self.spares.len() == MAX_SPARE_BLOCKS {
                self.spares.pop_front();
            }
            self.spares.push_back(old);
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
        let mut rb = ReadBuffer::new(BLOCK);
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
        assert!(rb.blocks_allocated() <= 4, "{}", rb.blocks_allocated());
    }

    #[test]
    fn a_frame_that_would_straddle_moves_to_a_new_block_with_its_start() {
        let mut rb = ReadBuffer::new(BLOCK);
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
        let mut rb = ReadBuffer::new(BLOCK);
        assert_eq!(read(&mut rb, 4, 60_000, 1), BLOCK - RESERVE_STEP);
        let _frame = rb.bytes_mut().split_to(BLOCK - RESERVE_STEP).freeze();
        // Exactly RESERVE_STEP left: the next read goes to a new block, not into the last 8 KiB.
        assert_eq!(rb.prepare_read(4), BLOCK - RESERVE_STEP);
        assert_eq!(rb.blocks_allocated(), 2);
    }

    #[test]
    fn reads_leave_room_so_the_codec_need_not_grow_the_buffer() {
        let mut rb = ReadBuffer::new(BLOCK);
        let limit = rb.prepare_read(4);
        assert_eq!(limit, BLOCK - RESERVE_STEP);
        // Unless the frame in progress needs that room itself.
        let mut rb = ReadBuffer::new(BLOCK);
        assert_eq!(rb.prepare_read(BLOCK as u64), BLOCK);
    }

    #[test]
    fn frames_longer_than_a_block_are_left_to_the_codec() {
        let mut rb = ReadBuffer::new(BLOCK);
        read(&mut rb, 4, 10, 0);
        let before = rb.bytes_mut().as_ptr();
        let limit = rb.prepare_read(1 << 20);
        assert_eq!(rb.bytes_mut().as_ptr(), before, "not moved");
        assert_eq!(limit, BLOCK - 10);
    }
}
