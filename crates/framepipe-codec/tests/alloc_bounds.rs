//! Allocation bounds, measured with a counting global allocator (SPEC §2.2, §2.3), and the framer's
//! lack of any buffer policy (SPEC §3.1).
//!
//! The allocator counts every thread, so this binary holds a single `#[test]` that runs its scenarios
//! one after another. Run with `--nocapture` to see the figures.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

use bytes::BytesMut;
use framepipe_codec::limits::{DEFAULT_RETAINED_CAPACITY, HEADER_LEN, RESERVE_STEP};
use framepipe_codec::{Builder, Error, Framer, RawCodec};
use futures::executor::block_on;
use futures::StreamExt;
use tokio_util::codec::{Decoder, FramedRead};

struct Counting;

static ALLOCATED: AtomicUsize = AtomicUsize::new(0);
static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn grew(n: usize) {
    ALLOCATED.fetch_add(n, Relaxed);
    let live = LIVE.fetch_add(n, Relaxed) + n;
    PEAK.fetch_max(live, Relaxed);
}

// SAFETY: defers every operation to `System` unchanged and only counts sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        grew(layout.size());
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if new_size > layout.size() {
            grew(new_size - layout.size());
        } else {
            LIVE.fetch_sub(layout.size() - new_size, Relaxed);
        }
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// What a piece of work allocated: bytes in all, and the peak of live bytes above the starting level.
#[derive(Debug, Clone, Copy)]
struct Usage {
    allocated: usize,
    peak_above_start: usize,
}

fn measure<R>(work: impl FnOnce() -> R) -> (R, Usage) {
    let start_live = LIVE.load(Relaxed);
    PEAK.store(start_live, Relaxed);
    let start_allocated = ALLOCATED.load(Relaxed);
    let out = work();
    let usage = Usage {
        allocated: ALLOCATED.load(Relaxed) - start_allocated,
        peak_above_start: PEAK.load(Relaxed) - start_live,
    };
    (out, usage)
}

/// `FramedRead`'s initial read buffer (tokio-util's INITIAL_CAPACITY).
const FRAMED_READ_BUFFER: usize = 8 * 1024;

fn hostile_header_then(body_bytes: usize) -> Vec<u8> {
    let mut v = vec![0xFF; HEADER_LEN];
    v.resize(HEADER_LEN + body_bytes, b'x');
    v
}

fn frame(body: &[u8]) -> Vec<u8> {
    [&(body.len() as u32).to_be_bytes()[..], body].concat()
}

/// SPEC §2.2: announcing 0xFFFFFFFF bytes and sending 10 costs about 10 bytes plus a constant.
fn announced_u32_max_sending_ten() {
    let input = hostile_header_then(10);

    // With the default limit the header alone is refused: the decoder allocates nothing.
    let mut buf = BytesMut::from(&input[..]);
    let mut codec = RawCodec::new();
    let (res, usage) = measure(|| codec.decode(&mut buf));
    assert!(matches!(res, Err(Error::FrameTooLarge { .. })));
    eprintln!("0xFFFFFFFF + 10 bytes, default limit, decoder alone: {usage:?}");
    assert_eq!(usage.allocated, 0);

    // With the limit raised to the format maximum the decoder must wait for the body, so this is the
    // real test: it may only reserve in proportion to what arrived.
    let codec = Builder::new().max_frame_length(u32::MAX).raw_codec();
    let mut buf = BytesMut::from(&input[..]);
    let mut decoder = codec.clone();
    let (res, usage) = measure(|| decoder.decode(&mut buf));
    assert!(matches!(res, Ok(None)));
    eprintln!("0xFFFFFFFF + 10 bytes, limit 4 GiB - 1, decoder alone: {usage:?}");
    assert!(usage.allocated <= input.len() + RESERVE_STEP, "{usage:?}");

    // The whole path a consumer takes: FramedRead over a reader that delivers 14 bytes then EOF.
    let (res, usage) =
        measure(|| block_on(FramedRead::new(&input[..], codec.clone()).collect::<Vec<_>>()));
    assert_eq!(res.len(), 1);
    assert!(matches!(
        res[0],
        Err(Error::Truncated {
            expected: 4_294_967_295,
            received: 10,
            ..
        })
    ));
    eprintln!("0xFFFFFFFF + 10 bytes, limit 4 GiB - 1, FramedRead to EOF: {usage:?}");
    assert!(
        usage.allocated <= FRAMED_READ_BUFFER + RESERVE_STEP + 1024,
        "{usage:?}"
    );
}

/// SPEC §2.2: while a huge announced body trickles in, memory follows what arrived.
fn announced_u32_max_sending_one_mib() {
    let input = hostile_header_then(1 << 20);
    let codec = Builder::new().max_frame_length(u32::MAX).raw_codec();
    let (res, usage) = measure(|| block_on(FramedRead::new(&input[..], codec).collect::<Vec<_>>()));
    assert!(matches!(
        res[0],
        Err(Error::Truncated {
            received: 1_048_576,
            ..
        })
    ));
    eprintln!("0xFFFFFFFF + 1 MiB, limit 4 GiB - 1, FramedRead to EOF: {usage:?}");
    assert!(
        // Capacity <= 2 x received + one step; old and new buffers coexist while it grows.
        usage.peak_above_start <= 3 * input.len() + 2 * RESERVE_STEP + FRAMED_READ_BUFFER,
        "{usage:?}"
    );
}

/// SPEC §2.3: after a 16 MiB frame is decoded and dropped, the reader keeps only the retained capacity.
fn buffer_shrinks_after_a_16_mib_frame() {
    let big = vec![b'7'; 16 * 1024 * 1024];
    let input = [frame(&big), frame(b"[1]"), frame(b"[2]")].concat();
    let mut framed = FramedRead::new(&input[..], RawCodec::new());
    let before = LIVE.load(Relaxed);

    let (body, usage) = measure(|| block_on(framed.next()).unwrap().unwrap());
    assert_eq!(body.len(), big.len());
    eprintln!("16 MiB frame through FramedRead: {usage:?}");
    // Exact growth: the last buffer fits the frame, so even with the previous buffer still alive
    // during the final copy the peak stays near two frames (doubling growth would reach three).
    assert!(
        usage.peak_above_start <= 2 * big.len() + 2 * RESERVE_STEP + FRAMED_READ_BUFFER,
        "{usage:?}"
    );
    drop(body);

    let small = block_on(framed.next()).unwrap().unwrap();
    assert_eq!(&small[..], b"[1]");
    let capacity = framed.read_buffer().capacity();
    let live_after = LIVE.load(Relaxed).saturating_sub(before);
    eprintln!(
        "after dropping it: read buffer capacity {capacity}, live bytes above start {live_after}"
    );
    assert!(capacity <= DEFAULT_RETAINED_CAPACITY, "capacity {capacity}");
    assert!(
        live_after <= DEFAULT_RETAINED_CAPACITY + 4096,
        "live {live_after}"
    );
    assert_eq!(&block_on(framed.next()).unwrap().unwrap()[..], b"[2]");
    assert!(block_on(framed.next()).is_none());
}

/// The framer owns no memory policy: it allocates nothing for an announced length, and splitting
/// frames off a buffer costs at most `bytes`' small shared header, once per buffer.
fn the_framer_allocates_nothing_for_bodies() {
    let input = hostile_header_then(10);
    let mut framer = Builder::new().max_frame_length(u32::MAX).framer();
    let mut buf = BytesMut::from(&input[..]);
    let capacity = buf.capacity();
    let (res, usage) = measure(|| framer.next_frame(&mut buf));
    assert!(matches!(res, Ok(None)));
    eprintln!("0xFFFFFFFF + 10 bytes, limit 4 GiB - 1, framer: {usage:?}");
    assert_eq!(usage.allocated, 0);
    assert_eq!(buf.capacity(), capacity - HEADER_LEN);

    // 1,000 frames of 1 KiB split off one buffer: no body is copied.
    let body = vec![b'7'; 1024];
    let stream = frame(&body).repeat(1000);
    let mut buf = BytesMut::from(&stream[..]);
    let mut framer = Framer::new(Builder::new());
    let (frames, usage) = measure(|| {
        let mut frames = Vec::with_capacity(1000);
        while let Some(frame) = framer.next_frame(&mut buf).unwrap() {
            frames.push(frame);
        }
        frames
    });
    assert_eq!(frames.len(), 1000);
    eprintln!("1,000 frames of 1 KiB, framer: {usage:?}");
    let frames_vec = 1000 * std::mem::size_of::<framepipe_codec::Frame>();
    assert!(usage.allocated <= frames_vec + 64, "{usage:?}");
}

#[test]
fn allocation_is_bounded_by_bytes_received() {
    announced_u32_max_sending_ten();
    announced_u32_max_sending_one_mib();
    buffer_shrinks_after_a_16_mib_frame();
    the_framer_allocates_nothing_for_bodies();
}
