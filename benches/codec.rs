//! Criterion micro-benchmarks of framepipe's codecs against the stack a Rust user would otherwise
//! write: `tokio_util::codec::LengthDelimitedCodec` plus `serde_json`.
//!
//! ```sh
//! cargo bench --bench codec                          # everything, about 3 minutes
//! cargo bench --bench codec -- --quick               # criterion's quick mode: all of it in ~10 s
//! cargo bench --bench codec -- --quick decode_typed  # one group (the filter is a regex on the id)
//! cargo bench --bench codec -- '60.9KB'              # one size, every group
//! cargo bench --bench codec -- 'encode_typed/framepipe/' # one stack in one group
//! ```
//!
//! Benchmark ids are `GROUP/STACK/SIZE`. Each group times one operation on one frame at four body
//! sizes, framepipe first and then the comparison stack, so the two sit side by side in the output;
//! throughput is reported in body bytes (`Throughput::Bytes`, the 4-byte header not counted):
//!
//! | group          | `framepipe`                          | `tokio-util+serde_json`                        |
//! |----------------|--------------------------------------|------------------------------------------------|
//! | `encode_raw`   | `RawCodec::encode(Bytes)`            | `LengthDelimitedCodec::encode(Bytes)`          |
//! | `decode_raw`   | `RawCodec::decode`                   | `LengthDelimitedCodec::decode`                 |
//! | `encode_typed` | `JsonCodec::encode(&value)`          | `serde_json::to_vec`, then `LengthDelimitedCodec::encode(Bytes::from(vec))` |
//! | `decode_typed` | `JsonCodec::<T>::decode`             | `LengthDelimitedCodec::decode`, then `serde_json::from_slice::<T>` |
//!
//! A sixth group, `decode_borrowed`, parses one body into owned `Vec<Record>` and into borrowed
//! `Vec<RecordRef<'_>>` (what `Delivery::json` gives a handler), at 1.2 KB, 60.9 KB and 1 MB.
//!
//! A fifth group, `decode_bound`, parses the reference body into `Vec<Record>` four ways (serde_json
//! from bytes, serde_json from `str` after one UTF-8 check as framepipe does, sonic-rs, and serde_json
//! building nothing) to show what bounds typed decoding.
//!
//! `decode_typed` has a third function, `framepipe (RawCodec+parse_json_body)`:
//! `RawCodec::decode_frame` then `framepipe::codec::parse_json_body`, the path the framepipe consumer
//! takes (it queues raw bodies and parses them after the queue). In the raw groups the comparison stack is tokio-util alone
//! (the name is kept so that one filter selects one stack everywhere).
//!
//! Sizes (the `SIZE` part of the id) and payloads; raw bodies are the compact JSON of the typed values:
//!
//! - `64B`: `Vec<Friend>`, the reference record's first two friends, 67 bytes of JSON;
//! - `1.2KB`: `Vec<Record>` of 1 reference record, 1,219 bytes (`fixtures/seed-frame-1.bin`);
//! - `60.9KB`: `Vec<Record>` of 50, the reference frame, 60,901 bytes (`fixtures/seed-frame-50.bin`);
//! - `1MB`: `Vec<Record>` of 821, 999,979 bytes.
//!
//! # Why the comparison is fair
//!
//! - Both stacks use the same limits: 4-byte big-endian length, 16 MiB maximum frame (framepipe's
//!   default; `LengthDelimitedCodec` is configured to match, its own default being 8 MiB). framepipe
//!   runs with every default, as a user would, including its retained-capacity rule (SPEC §2.3),
//!   which after a frame over 256 KiB gives the buffer back and starts the next one at 256 KiB: the
//!   `1MB` figures include that cost, as they would in a real stream.
//! - The comparison code is what a Rust user would write, without handicaps: one codec per stack,
//!   built once and reused; each encoder writes into its own reused buffer, cleared at the start of
//!   every iteration; `serde_json::to_vec` and `serde_json::from_slice` called directly.
//! - Decoders get the same input: one complete frame, built once outside the timed region and cloned
//!   for every iteration by criterion's `iter_batched_ref` setup, which is not timed (batches are
//!   capped at 1 MiB of input, so large frames do not pile up in memory). What a decode path returns
//!   is dropped outside the timed region, the same for every path.
//! - On glibc, `main` first tells the allocator to keep freed memory mapped
//!   ([`keep_freed_memory_mapped`]), so timed allocations are not charged the page faults that
//!   criterion's allocate-a-batch, free-a-batch pattern would otherwise cause; this is a warmed-up
//!   process's steady state, for both stacks. `FRAMEPIPE_BENCH_MALLOC_DEFAULTS=1` keeps glibc's defaults.
//! - Before timing, each size checks that the stacks do the same work: the encoders write identical
//!   bytes, and every decode path gives back the original value (or body).
//! - Both stacks parse with serde_json (framepipe checks the body's UTF-8 once, then parses it as
//!   `str`); framepipe's opt-in `sonic` feature changes its typed encoder
//!   (`cargo bench --features sonic --bench codec`).
//!
//! The machine this runs on matters more than anything here: numbers are for comparing the two
//! stacks within one run, not across machines.

use std::fmt::Debug;
use std::hint::black_box;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use criterion::measurement::WallTime;
use criterion::{BatchSize, BenchmarkGroup, BenchmarkId, Criterion, Throughput};
use framepipe::codec::{parse_json_body, JsonCodec, RawCodec};
use framepipe::reference::{reference_batch, Friend, Record, RecordRef, RECORDS_PER_FRAME};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio_util::codec::{Decoder, Encoder, LengthDelimitedCodec};

/// The function name of framepipe's codecs in every group.
const FRAMEPIPE: &str = "framepipe";
/// The function name of the comparison stack in every group.
const COMPARISON: &str = "tokio-util+serde_json";
/// The third `decode_typed` function: the framepipe consumer's path.
const FRAMEPIPE_RAW_THEN_PARSE: &str = "framepipe (RawCodec+parse_json_body)";

/// Largest frame for both stacks: framepipe's default (SPEC §2).
const MAX_FRAME_LENGTH: usize = 16 * 1024 * 1024;
/// The 4-byte big-endian length in front of every body.
const HEADER_LEN: usize = 4;

/// Label of the smallest size (a `Vec<Friend>`, see [`small_payload`]).
const SMALL_LABEL: &str = "64B";
/// The record sizes: label and number of copies of the reference record.
const RECORD_SIZES: [(&str, usize); 3] =
    [("1.2KB", 1), ("60.9KB", RECORDS_PER_FRAME), ("1MB", 821)];

/// Bytes of cloned input frames criterion may hold at once in `iter_batched_ref` (one batch).
const BATCH_INPUT_BYTES: usize = 1024 * 1024;

/// The `64B` payload: the reference record's first two friends,
/// `[{"id":0,"name":"shauna juarez"},{"id":1,"name":"alvarado bright"}]` (67 bytes).
fn small_payload() -> Vec<Friend> {
    Record::reference().friends[..2].to_vec()
}

/// A record payload: `copies` copies of the reference record.
fn record_payload(copies: usize) -> Vec<Record> {
    reference_batch(copies)
}

/// The compact JSON of `value`: the raw body for its size, and what both typed encoders write.
fn json_body<T: Serialize>(value: &T) -> Bytes {
    Bytes::from(serde_json::to_vec(value).expect("payload serializes"))
}

/// Every size's raw body, smallest first.
fn raw_bodies() -> Vec<(&'static str, Bytes)> {
    let mut bodies = vec![(SMALL_LABEL, json_body(&small_payload()))];
    bodies.extend(
        RECORD_SIZES
            .iter()
            .map(|&(label, copies)| (label, json_body(&record_payload(copies)))),
    );
    // The record bodies are the JavaScript producer's bytes (the fixtures' test vectors).
    assert_eq!(
        &bodies[1].1[..],
        &include_bytes!("../fixtures/seed-frame-1.bin")[HEADER_LEN..]
    );
    assert_eq!(
        &bodies[2].1[..],
        &include_bytes!("../fixtures/seed-frame-50.bin")[HEADER_LEN..]
    );
    bodies
}

/// One complete frame holding `body`, built by hand (independently of both codecs).
fn frame_of(body: &[u8]) -> BytesMut {
    let mut frame = BytesMut::with_capacity(HEADER_LEN + body.len());
    frame.put_u32(u32::try_from(body.len()).expect("body under 4 GiB"));
    frame.put_slice(body);
    frame
}

/// The comparison codec, as a user matching framepipe's wire format would configure it.
fn comparison_codec() -> LengthDelimitedCodec {
    LengthDelimitedCodec::builder()
        .length_field_length(HEADER_LEN)
        .big_endian()
        .max_frame_length(MAX_FRAME_LENGTH)
        .new_codec()
}

/// Sets throughput and timing for the next benchmarks of `group` from the body size: small bodies
/// get criterion's 100 samples, large ones fewer (each iteration takes milliseconds) so the whole
/// run stays near 3 minutes.
fn configure(group: &mut BenchmarkGroup<'_, WallTime>, body_len: usize) {
    let (sample_size, warm_up) = match body_len {
        0..=4096 => (100, Duration::from_millis(500)),
        4097..=262_144 => (50, Duration::from_secs(1)),
        _ => (20, Duration::from_secs(1)),
    };
    group
        .throughput(Throughput::Bytes(body_len as u64))
        .sample_size(sample_size)
        .warm_up_time(warm_up)
        .measurement_time(Duration::from_secs(3));
}

/// Inputs per `iter_batched_ref` batch: as many cloned frames as fit in [`BATCH_INPUT_BYTES`] (at
/// least 1, at most 10,000): 1 MB frames go one at a time and a batch's inputs stay about cache-sized,
/// as a frame just read from a socket would be, while small frames still amortise the timer over
/// hundreds of iterations.
fn batch_size(frame_len: usize) -> BatchSize {
    BatchSize::NumIterations((BATCH_INPUT_BYTES / frame_len).clamp(1, 10_000) as u64)
}

fn encode_raw(c: &mut Criterion) {
    let mut group = c.benchmark_group("encode_raw");
    for (label, body) in raw_bodies() {
        configure(&mut group, body.len());

        let mut framepipe = RawCodec::new();
        let mut comparison = comparison_codec();
        let (mut a, mut b) = (BytesMut::new(), BytesMut::new());
        framepipe.encode(body.clone(), &mut a).expect("encodes");
        comparison.encode(body.clone(), &mut b).expect("encodes");
        assert_eq!(a, b, "{label}: both stacks write the same frame");
        assert_eq!(a, frame_of(&body), "{label}: the frame is header + body");

        let mut buf = BytesMut::new();
        group.bench_with_input(BenchmarkId::new(FRAMEPIPE, label), &body, |bench, body| {
            bench.iter(|| {
                buf.clear();
                framepipe.encode(body.clone(), &mut buf).expect("encodes");
                buf.len()
            })
        });
        let mut buf = BytesMut::new();
        group.bench_with_input(BenchmarkId::new(COMPARISON, label), &body, |bench, body| {
            bench.iter(|| {
                buf.clear();
                comparison.encode(body.clone(), &mut buf).expect("encodes");
                buf.len()
            })
        });
    }
    group.finish();
}

fn decode_raw(c: &mut Criterion) {
    let mut group = c.benchmark_group("decode_raw");
    for (label, body) in raw_bodies() {
        configure(&mut group, body.len());
        let frame = frame_of(&body);
        let batch = batch_size(frame.len());

        let mut framepipe = RawCodec::new();
        let mut comparison = comparison_codec();
        let a = framepipe.decode(&mut frame.clone()).expect("decodes");
        let b = comparison.decode(&mut frame.clone()).expect("decodes");
        assert_eq!(a.as_deref(), Some(&body[..]), "{label}: framepipe");
        assert_eq!(b.as_deref(), Some(&body[..]), "{label}: comparison");

        group.bench_with_input(
            BenchmarkId::new(FRAMEPIPE, label),
            &frame,
            |bench, frame| {
                bench.iter_batched_ref(
                    || frame.clone(),
                    |src| {
                        framepipe
                            .decode(src)
                            .expect("decodes")
                            .expect("a whole frame")
                    },
                    batch,
                )
            },
        );
        group.bench_with_input(
            BenchmarkId::new(COMPARISON, label),
            &frame,
            |bench, frame| {
                bench.iter_batched_ref(
                    || frame.clone(),
                    |src| {
                        comparison
                            .decode(src)
                            .expect("decodes")
                            .expect("a whole frame")
                    },
                    batch,
                )
            },
        );
    }
    group.finish();
}

fn encode_typed(c: &mut Criterion) {
    let mut group = c.benchmark_group("encode_typed");
    encode_typed_size(&mut group, SMALL_LABEL, &small_payload());
    for (label, copies) in RECORD_SIZES {
        encode_typed_size(&mut group, label, &record_payload(copies));
    }
    group.finish();
}

/// `encode_typed` at one size: `value` framed by each stack into a reused, cleared buffer.
fn encode_typed_size<T: Serialize>(
    group: &mut BenchmarkGroup<'_, WallTime>,
    label: &str,
    value: &T,
) {
    let body = json_body(value);
    configure(group, body.len());

    let mut framepipe = JsonCodec::<T>::new();
    let mut comparison = comparison_codec();
    let (mut a, mut b) = (BytesMut::new(), BytesMut::new());
    framepipe.encode(value, &mut a).expect("encodes");
    let json = serde_json::to_vec(value).expect("serializes");
    comparison
        .encode(Bytes::from(json), &mut b)
        .expect("encodes");
    assert_eq!(a, b, "{label}: both stacks write the same frame");
    assert_eq!(a, frame_of(&body), "{label}: the frame is header + body");

    let mut buf = BytesMut::new();
    group.bench_with_input(BenchmarkId::new(FRAMEPIPE, label), value, |bench, value| {
        bench.iter(|| {
            buf.clear();
            framepipe
                .encode(black_box(value), &mut buf)
                .expect("encodes");
            buf.len()
        })
    });
    let mut buf = BytesMut::new();
    group.bench_with_input(
        BenchmarkId::new(COMPARISON, label),
        value,
        |bench, value| {
            bench.iter(|| {
                buf.clear();
                let json = serde_json::to_vec(black_box(value)).expect("serializes");
                comparison
                    .encode(Bytes::from(json), &mut buf)
                    .expect("encodes");
                buf.len()
            })
        },
    );
}

fn decode_typed(c: &mut Criterion) {
    let mut group = c.benchmark_group("decode_typed");
    decode_typed_size(&mut group, SMALL_LABEL, &small_payload());
    for (label, copies) in RECORD_SIZES {
        decode_typed_size(&mut group, label, &record_payload(copies));
    }
    group.finish();
}

/// `decode_typed` at one size: one frame holding `value`'s JSON, parsed back into a `T` by each path.
fn decode_typed_size<T: Serialize + DeserializeOwned + PartialEq + Debug>(
    group: &mut BenchmarkGroup<'_, WallTime>,
    label: &str,
    value: &T,
) {
    let body = json_body(value);
    configure(group, body.len());
    let frame = frame_of(&body);
    let batch = batch_size(frame.len());

    let mut framepipe = JsonCodec::<T>::new();
    let mut framepipe_raw = RawCodec::new();
    let mut comparison = comparison_codec();

    // framepipe's consumer: split the frame off with its index and offset, parse it later, labelling
    // errors with that index and offset as `framepipe_consumer` does.
    let mut raw_then_parse = move |src: &mut BytesMut| -> T {
        let frame = framepipe_raw
            .decode_frame(src)
            .expect("decodes")
            .expect("a whole frame");
        parse_json_body(&frame.body, frame.index, frame.offset).expect("parses")
    };
    let mut comparison_decode = move |src: &mut BytesMut| -> T {
        let body = comparison
            .decode(src)
            .expect("decodes")
            .expect("a whole frame");
        serde_json::from_slice(&body).expect("parses")
    };

    // Every path gives back the value (checked once, outside timing).
    let decoded = framepipe.decode(&mut frame.clone()).expect("decodes");
    assert_eq!(decoded.as_ref(), Some(value), "{label}: {FRAMEPIPE}");
    let decoded = raw_then_parse(&mut frame.clone());
    assert_eq!(&decoded, value, "{label}: {FRAMEPIPE_RAW_THEN_PARSE}");
    let decoded = comparison_decode(&mut frame.clone());
    assert_eq!(&decoded, value, "{label}: {COMPARISON}");

    group.bench_with_input(
        BenchmarkId::new(FRAMEPIPE, label),
        &frame,
        |bench, frame| {
            bench.iter_batched_ref(
                || frame.clone(),
                |src| {
                    framepipe
                        .decode(src)
                        .expect("decodes")
                        .expect("a whole frame")
                },
                batch,
            )
        },
    );
    group.bench_with_input(
        BenchmarkId::new(FRAMEPIPE_RAW_THEN_PARSE, label),
        &frame,
        |bench, frame| bench.iter_batched_ref(|| frame.clone(), &mut raw_then_parse, batch),
    );
    group.bench_with_input(
        BenchmarkId::new(COMPARISON, label),
        &frame,
        |bench, frame| bench.iter_batched_ref(|| frame.clone(), &mut comparison_decode, batch),
    );
}

/// One way of parsing a body into records; returns how many it built.
type Parse = fn(&[u8]) -> usize;

/// `decode_bound`, at the reference frame only: what bounds typed decoding (BENCHMARKS.md). Not a
/// comparison of stacks but of ways to parse the same body into the same `Vec<Record>`, plus a parse
/// that builds nothing, which is as fast as any typed decode with serde_json could be.
fn decode_bound(c: &mut Criterion) {
    let mut group = c.benchmark_group("decode_bound");
    let batch = record_payload(RECORDS_PER_FRAME);
    let body = json_body(&batch);
    configure(&mut group, body.len());
    let paths: [(&str, Parse); 4] = [
        ("serde_json::from_slice", |b| {
            serde_json::from_slice::<Vec<Record>>(b)
                .expect("parses")
                .len()
        }),
        ("utf8 check + serde_json::from_str (framepipe)", |b| {
            let text = std::str::from_utf8(b).expect("UTF-8");
            serde_json::from_str::<Vec<Record>>(text)
                .expect("parses")
                .len()
        }),
        ("sonic_rs::from_slice", |b| {
            sonic_rs::from_slice::<Vec<Record>>(b)
                .expect("parses")
                .len()
        }),
        ("serde_json IgnoredAny (nothing built)", |b| {
            serde_json::from_slice::<serde::de::IgnoredAny>(b).expect("parses");
            0
        }),
    ];
    for (name, parse) in paths {
        assert!(name.contains("IgnoredAny") || parse(&body) == RECORDS_PER_FRAME);
        // The decoded value is dropped inside the timed region, as a handler would drop it.
        group.bench_with_input(BenchmarkId::new(name, "60.9KB"), &body, |bench, body| {
            bench.iter(|| parse(black_box(body)))
        });
    }
    group.finish();
}

/// `decode_borrowed`: the consumer's typed paths for one frame already split off the stream, at the
/// record sizes: owned (`parse_json_body::<Vec<Record>>`, what `Json<Vec<Record>>` does) against
/// borrowed (`parse_json_body::<Vec<RecordRef<'_>>>`, what `Delivery::json` does: strings without
/// escapes point into the frame instead of being copied). Same UTF-8 check and parser; the
/// difference is the allocations. Decoded values are dropped inside the timed region.
fn decode_borrowed(c: &mut Criterion) {
    let mut group = c.benchmark_group("decode_borrowed");
    for (label, copies) in [("1.2KB", 1), ("60.9KB", RECORDS_PER_FRAME), ("1MB", 821)] {
        let body = json_body(&record_payload(copies));
        configure(&mut group, body.len());
        let owned = parse_json_body::<Vec<Record>>(&body, 0, 0).expect("parses");
        let borrowed = parse_json_body::<Vec<RecordRef<'_>>>(&body, 0, 0).expect("parses");
        assert_eq!(owned.len(), copies);
        assert_eq!(
            serde_json::to_vec(&borrowed).unwrap(),
            serde_json::to_vec(&owned).unwrap(),
            "both read the same records"
        );
        group.bench_with_input(
            BenchmarkId::new("owned Vec<Record>", label),
            &body,
            |b, body| {
                b.iter(|| {
                    parse_json_body::<Vec<Record>>(black_box(body), 0, 0)
                        .expect("parses")
                        .len()
                })
            },
        );
        group.bench_with_input(
            BenchmarkId::new("borrowed Vec<RecordRef>", label),
            &body,
            |b, body| {
                b.iter(|| {
                    parse_json_body::<Vec<RecordRef<'_>>>(black_box(body), 0, 0)
                        .expect("parses")
                        .len()
                })
            },
        );
    }
    group.finish();
}

/// Keeps memory freed by one batch mapped for the next (glibc only), unless
/// `FRAMEPIPE_BENCH_MALLOC_DEFAULTS` is set.
///
/// With glibc's defaults, the heap is trimmed back to the kernel whenever more than 128 KiB at its top
/// is free, and blocks over 128 KiB are `mmap`ped. Criterion's batches allocate and free far more than
/// that, so without this every batch would fault its pages in again, and an allocation timed inside a
/// decode (a `LengthDelimitedCodec` read buffer, framepipe's fresh buffer after a frame over 256 KiB,
/// the decoded records) would be charged a page fault of a microsecond or more that a warmed-up
/// process does not pay. Both stacks run under the same allocator settings.
fn keep_freed_memory_mapped() {
    if std::env::var_os("FRAMEPIPE_BENCH_MALLOC_DEFAULTS").is_some() {
        return;
    }
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // Never trim; `mmap` only blocks over 32 MiB (glibc's largest allowed threshold), so the
        // 1 MB frames come from the heap and are reused like everything else.
        const TRIM_THRESHOLD: libc::c_int = 1 << 30;
        const MMAP_THRESHOLD: libc::c_int = 32 * 1024 * 1024;
        // SAFETY: `mallopt` only changes allocator tuning parameters; it is called before any other
        // thread exists, and both values are within glibc's accepted ranges.
        unsafe {
            libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD);
            libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
        }
    }
}

/// What `criterion_group!` and `criterion_main!` expand to, written out because the macros' `pub fn`
/// has no doc comment (the workspace denies `missing_docs`).
fn main() {
    keep_freed_memory_mapped();
    let mut criterion = Criterion::default().configure_from_args();
    encode_raw(&mut criterion);
    decode_raw(&mut criterion);
    encode_typed(&mut criterion);
    decode_typed(&mut criterion);
    decode_bound(&mut criterion);
    decode_borrowed(&mut criterion);
    criterion.final_summary();
}
