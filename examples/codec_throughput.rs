//! Single-thread throughput of the codecs on the reference frame (60,901-byte body, 50 records).
//!
//! ```sh
//! cargo run --release --example codec_throughput [-- SECONDS_PER_RUN]
//! ```
//!
//! Each operation runs three times for SECONDS_PER_RUN (default 1.0) and the median is printed, in MB/s
//! of body bytes (1 MB = 10^6 bytes) and µs per frame. Decoding is timed over a buffer already holding
//! the frames, so it measures the codec and not a memcpy into the buffer. This is a quick figure; the
//! criterion benchmarks are the reference.

use std::hint::black_box;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use framepipe::codec::{JsonCodec, RawCodec};
use framepipe::reference::{reference_batch, Record, RECORDS_PER_FRAME};
use tokio_util::codec::{Decoder, Encoder};

/// Frames per timed batch for the decoders (about 61 MB of input).
const FRAMES_PER_BATCH: usize = 1000;

/// Calls `op` for `budget` of wall-clock time; frames per second over the time `op` reports. `op`
/// processes `frames_per_call` frames and returns how long the part being measured took (set-up such
/// as refilling an input buffer is left out).
fn rate(budget: Duration, frames_per_call: usize, mut op: impl FnMut() -> Duration) -> f64 {
    let wall = Instant::now();
    let mut spent = Duration::ZERO;
    let mut frames = 0usize;
    while wall.elapsed() < budget {
        spent += op();
        frames += frames_per_call;
    }
    frames as f64 / spent.as_secs_f64()
}

fn median_of_three(
    budget: Duration,
    frames_per_call: usize,
    mut op: impl FnMut() -> Duration,
) -> f64 {
    let mut r: Vec<f64> = (0..3)
        .map(|_| rate(budget, frames_per_call, &mut op))
        .collect();
    r.sort_by(f64::total_cmp);
    r[1]
}

/// Times `f` on its own.
fn time(f: impl FnOnce()) -> Duration {
    let start = Instant::now();
    f();
    start.elapsed()
}

fn main() {
    let secs: f64 = std::env::args()
        .nth(1)
        .map(|s| s.parse().expect("SECONDS_PER_RUN must be a number"))
        .unwrap_or(1.0);
    let budget = Duration::from_secs_f64(secs);
    let batch = reference_batch(RECORDS_PER_FRAME);
    let body = serde_json::to_vec(&batch).expect("reference batch serializes");
    let mut wire = BytesMut::new();
    for _ in 0..FRAMES_PER_BATCH {
        RawCodec::new()
            .encode(&body[..], &mut wire)
            .expect("encodes");
    }

    let mut out = BytesMut::with_capacity(128 * 1024);
    let mut copy = vec![0u8; body.len()];
    let memcpy = median_of_three(budget, 1, || {
        time(|| copy.copy_from_slice(black_box(&body[..])))
    });
    black_box(&copy);
    // Where the source body sits relative to the destination matters: when (dst - src) mod 4096 is
    // small, as for two page-aligned buffers and a body written 4 bytes in after its header, the CPU's
    // copy suffers 4K aliasing and runs an order of magnitude slower. Measure both placements:
    // (dst - src) mod 4096 = 256 (typical) and = 4 (two page-aligned buffers).
    let mut raw = RawCodec::new();
    let mut raw_encode_at = |delta: usize| {
        let mut arena = vec![0u8; body.len() + 8192];
        let dst = out.as_ptr() as usize + 4; // where the body lands, after the header
        let start = (dst
            .wrapping_sub(delta)
            .wrapping_sub(arena.as_ptr() as usize))
            % 4096;
        arena[start..start + body.len()].copy_from_slice(&body);
        let src = &arena[start..start + body.len()];
        median_of_three(budget, 1, || {
            out.clear();
            time(|| raw.encode(black_box(src), &mut out).unwrap())
        })
    };
    let raw_encode = raw_encode_at(256);
    let raw_encode_aliased = raw_encode_at(4);
    let mut typed = JsonCodec::<Vec<Record>>::new();
    let typed_encode = median_of_three(budget, 1, || {
        out.clear();
        time(|| typed.encode(black_box(&batch), &mut out).unwrap())
    });
    let raw_decode = median_of_three(budget, FRAMES_PER_BATCH, || {
        let mut buf = wire.clone();
        let mut codec = RawCodec::new();
        time(|| {
            while let Some(frame) = codec.decode(&mut buf).unwrap() {
                black_box(frame);
            }
        })
    });
    let typed_decode = median_of_three(budget, FRAMES_PER_BATCH, || {
        let mut buf = wire.clone();
        let mut codec = JsonCodec::<Vec<Record>>::new();
        time(|| {
            while let Some(frame) = codec.decode(&mut buf).unwrap() {
                black_box(frame);
            }
        })
    });

    println!(
        "reference frame: {} body bytes, {RECORDS_PER_FRAME} records; median of 3 runs of {secs} s, one thread",
        body.len()
    );
    println!("{:<20} {:>10} {:>10}", "operation", "MB/s", "µs/frame");
    for (name, fps) in [
        ("memcpy (ref.)", memcpy),
        ("raw encode", raw_encode),
        ("raw enc. 4K-aliased", raw_encode_aliased),
        ("raw decode", raw_decode),
        ("typed encode", typed_encode),
        ("typed decode", typed_decode),
    ] {
        let mbps = fps * body.len() as f64 / 1e6;
        println!("{name:<20} {mbps:>10.0} {:>10.2}", 1e6 / fps);
    }
}
