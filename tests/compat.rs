//! Compatibility with simple writers and readers of the wire format (SPEC §1.1, §1.3).
//!
//! The peer in each test is built only from `std::net`, `std::thread` and the format itself
//! (`u32` big-endian length, then that many bytes): never from the crates under test. It stands in for
//! the existing services that speak the format, such as a Node.js writer doing
//! `socket.write(uint32BE(len) + JSON.stringify(batch))` and then `socket.end()`.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use bytes::Bytes;
use framepipe::consumer::{Consumer, Delivery, Json, Mode, Raw, Report, Validate};
use framepipe::producer::{generator, Producer};
use framepipe::reference::{reference_batch, Record};
use serde::Serialize;
use serde_json::json;

/// Written by a JavaScript producer: `uint32BE(1219) + JSON.stringify([record])`.
const SEED_1: &[u8] = include_bytes!("../fixtures/seed-frame-1.bin");
/// The reference frame: `uint32BE(60901) + JSON.stringify(Array(50).fill(record))`.
const SEED_50: &[u8] = include_bytes!("../fixtures/seed-frame-50.bin");

/// Upper bound for any one test; a hang fails instead of blocking the suite.
const LIMIT: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------------------------
// The plain peers.
// ---------------------------------------------------------------------------------------------

/// One frame on the wire, built the way a plain writer builds it (SPEC §1.1).
fn frame(body: &[u8]) -> Vec<u8> {
    let len = u32::try_from(body.len()).expect("test bodies fit a u32");
    let mut wire = len.to_be_bytes().to_vec();
    wire.extend_from_slice(body);
    wire
}

/// Where the plain writer cuts the concatenated stream into separate `write` calls, so that the
/// consumer sees headers and bodies arriving in odd pieces: headers a byte at a time, headers split
/// in half, a header sent with the last byte of the previous frame, bodies in uneven chunks.
fn cut_points(frames: &[Vec<u8>]) -> Vec<usize> {
    let mut cuts = Vec::new();
    let mut start = 0;
    for (i, f) in frames.iter().enumerate() {
        let len = f.len();
        match i % 3 {
            // Header byte at a time, then the body in one write.
            0 => cuts.extend([start + 1, start + 2, start + 3, start + 4]),
            // Header in two halves; body cut in its middle.
            1 => cuts.extend([start + 2, start + 4 + (len - 4) / 2]),
            // Last byte of the previous frame together with this header and one body byte.
            _ => cuts.extend([start.saturating_sub(1), start + 5]),
        }
        start += len;
    }
    cuts.push(start);
    cuts.retain(|&c| c > 0 && c <= start);
    cuts.sort_unstable();
    cuts.dedup();
    cuts
}

/// A plain writer on its own thread: connects, writes every frame back to back in the pieces
/// [`cut_points`] gives (long pieces further cut into 4,093-byte writes), then closes.
/// Returns the number of `write` calls it made.
fn plain_writer(addr: SocketAddr, frames: Vec<Vec<u8>>) -> JoinHandle<io::Result<usize>> {
    thread::spawn(move || {
        let mut stream = TcpStream::connect(addr)?;
        // Each write goes out as its own segment, so the pieces reach the consumer as pieces.
        stream.set_nodelay(true)?;
        let wire = frames.concat();
        let mut writes = 0;
        let mut from = 0;
        for to in cut_points(&frames) {
            for piece in wire[from..to].chunks(4093) {
                stream.write_all(piece)?;
                writes += 1;
                if piece.len() < 8 {
                    // Not synchronization: a short, bounded pause so that the consumer most likely
                    // reads this small piece on its own (a partial header). Correctness does not
                    // depend on it.
                    thread::sleep(Duration::from_millis(2));
                }
            }
            from = to;
        }
        assert_eq!(from, wire.len(), "every byte was written");
        // Like `socket.end()`: FIN after the last byte.
        drop(stream);
        Ok(writes)
    })
}

/// What a plain reader saw on one connection.
#[derive(Debug)]
struct Captured {
    /// Every byte received, in order.
    wire: Vec<u8>,
    /// The bodies, split with `read_exact` on the length headers.
    bodies: Vec<Vec<u8>>,
}

/// A plain reader on its own thread: accepts one connection, reads frames with `read_exact`
/// (4-byte big-endian length, then the body) until a clean end of stream, then closes its socket.
fn plain_reader() -> (SocketAddr, JoinHandle<io::Result<Captured>>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind the plain reader");
    let addr = listener.local_addr().unwrap();
    let handle = thread::spawn(move || {
        let (mut stream, _) = listener.accept()?;
        stream.set_read_timeout(Some(LIMIT))?;
        let mut captured = Captured {
            wire: Vec::new(),
            bodies: Vec::new(),
        };
        loop {
            let mut header = [0u8; 4];
            // End of stream is clean only before the first byte of a header (SPEC §3.4).
            if stream.read(&mut header[..1])? == 0 {
                break;
            }
            stream.read_exact(&mut header[1..])?;
            let len = u32::from_be_bytes(header) as usize;
            let mut body = vec![0u8; len];
            stream.read_exact(&mut body)?;
            captured.wire.extend_from_slice(&header);
            captured.wire.extend_from_slice(&body);
            captured.bodies.push(body);
        }
        // Closing our end tells the producer everything was read (SPEC §6.2).
        drop(stream);
        Ok(captured)
    });
    (addr, handle)
}

/// Joins a peer thread without blocking the runtime, failing on a hang or a panic.
async fn join<T: Send + 'static>(handle: JoinHandle<io::Result<T>>) -> T {
    let joined = tokio::time::timeout(LIMIT, tokio::task::spawn_blocking(move || handle.join()))
        .await
        .expect("the plain peer finished in time")
        .expect("spawn_blocking");
    joined
        .expect("the plain peer did not panic")
        .expect("the plain peer's I/O succeeded")
}

// ---------------------------------------------------------------------------------------------
// A plain writer feeding the consumer (SPEC §1.3, §7).
// ---------------------------------------------------------------------------------------------

/// Serves one connection from a plain writer sending `frames`, in `mode`; returns what the handler
/// received, in the order it received it, and the consumer's report.
async fn consume_plain<M: Mode>(mode: M, frames: Vec<Vec<u8>>) -> (Vec<Delivery<M::Item>>, Report) {
    let consumer = Consumer::builder()
        .max_connections(Some(1))
        .bind("127.0.0.1:0")
        .await
        .expect("bind the consumer");
    let addr = consumer.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let server = tokio::spawn({
        let seen = seen.clone();
        consumer.serve(mode, move |d| {
            let seen = seen.clone();
            async move { seen.lock().unwrap().push(d) }
        })
    });
    let writer = plain_writer(addr, frames);
    let report = tokio::time::timeout(LIMIT, server)
        .await
        .expect("the consumer returned after its one connection")
        .expect("the consumer task did not panic");
    let writes = join(writer).await;
    assert!(writes > 1, "the writer made several writes ({writes})");
    let seen = std::mem::take(&mut *seen.lock().unwrap());
    (seen, report)
}

/// Checks the parts of the consumer's report that do not depend on the mode.
fn check_report(report: &Report, frames: &[Vec<u8>]) {
    let wire_len: usize = frames.iter().map(Vec::len).sum();
    assert_eq!(report.connections.len(), 1, "{report:?}");
    let conn = &report.connections[0];
    assert_eq!(
        (conn.frames, conn.errors, conn.error.as_deref()),
        (frames.len() as u64, 0, None),
        "{conn:?}"
    );
    assert_eq!(conn.bytes, wire_len as u64);
    assert_eq!(report.snapshot.bytes_read, wire_len as u64);
    assert_eq!(report.snapshot.frames_read, frames.len() as u64);
    assert_eq!(report.snapshot.frames_handled, frames.len() as u64);
    assert_eq!(report.snapshot.errors, 0);
}

/// Checks the per-frame labels of the deliveries: one per frame, in order, from the writer.
fn check_deliveries<I>(seen: &[Delivery<I>], frames: &[Vec<u8>], report: &Report) {
    assert_eq!(seen.len(), frames.len());
    for (i, (d, f)) in seen.iter().zip(frames).enumerate() {
        assert_eq!(d.frame, i as u64, "frame {i} delivered in order");
        assert_eq!(d.wire_bytes, f.len(), "frame {i} wire bytes");
        assert_eq!(d.peer(), &report.connections[0].peer, "frame {i} peer");
    }
}

/// JSON bodies as a JavaScript writer would produce them, plus the fixture frames.
fn json_frames() -> Vec<Vec<u8>> {
    let mut frames = vec![SEED_1.to_vec()];
    for i in 0..20u32 {
        let value = json!({
            "seq": i,
            "name": format!("item-{i}"),
            "tags": ["a", "b\"quoted\"", "ünïcödé ✓"],
            "ratio": f64::from(i) / 7.0,
            "nested": {"deep": [[[i]]], "none": null, "flag": i % 2 == 0},
        });
        frames.push(frame(&serde_json::to_vec(&value).unwrap()));
        if i == 9 {
            frames.push(SEED_50.to_vec());
        }
    }
    // Whitespace around the value is allowed (SPEC §1.2), and scalars are JSON values too.
    frames.push(frame(b" \t\r\n[1, 2, 3]\n"));
    frames.push(frame(b"\"just a string\""));
    frames.push(frame(b"0"));
    frames.push(SEED_50.to_vec());
    frames
}

/// Raw mode takes any bytes: the JSON frames plus an empty body (SPEC §1.1.3) and non-JSON bytes.
fn raw_frames() -> Vec<Vec<u8>> {
    let mut frames = json_frames();
    frames.insert(3, frame(b""));
    frames.insert(7, frame(&[0x00, 0xff, 0xfe, b'{', 0x80]));
    frames.push(frame(b"not json at all"));
    frames.push(frame(b""));
    frames
}

#[test]
fn the_fixtures_are_frames_of_the_format() {
    // SPEC §1.3: the headers are the big-endian lengths of the bodies that follow.
    assert_eq!(&SEED_1[..4], &1219u32.to_be_bytes());
    assert_eq!(SEED_1.len(), 4 + 1219);
    assert_eq!(&SEED_50[..4], &60_901u32.to_be_bytes());
    assert_eq!(SEED_50.len(), 4 + 60_901);
    let cuts = cut_points(&[SEED_1.to_vec(), SEED_50.to_vec(), SEED_1.to_vec()]);
    assert_eq!(cuts.last(), Some(&(2 * SEED_1.len() + SEED_50.len())));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_writer_is_read_in_raw_mode_byte_for_byte() {
    // SPEC §1.1, §1.3, §7: every body arrives unchanged and in order, whatever the write pieces.
    let frames = raw_frames();
    let (seen, report) = consume_plain(Raw, frames.clone()).await;
    check_report(&report, &frames);
    check_deliveries(&seen, &frames, &report);
    for (i, (d, f)) in seen.iter().zip(&frames).enumerate() {
        assert_eq!(&d.item[..], &f[4..], "frame {i} body");
    }
    // The fixture frames in particular.
    assert_eq!(&seen[0].item[..], &SEED_1[4..]);
    let seed_50 = frames.iter().position(|f| f == SEED_50).unwrap();
    assert_eq!(&seen[seed_50].item[..], &SEED_50[4..]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_writer_is_read_in_validate_mode() {
    // SPEC §1.2, §7: well-formed JSON bodies pass validation and are handed on unchanged.
    let frames = json_frames();
    let (seen, report) = consume_plain(Validate, frames.clone()).await;
    check_report(&report, &frames);
    check_deliveries(&seen, &frames, &report);
    for (i, (d, f)) in seen.iter().zip(&frames).enumerate() {
        assert_eq!(&d.item[..], &f[4..], "frame {i} body");
        // And it really is the JSON that was written.
        let got: serde_json::Value = serde_json::from_slice(&d.item).unwrap();
        let sent: serde_json::Value = serde_json::from_slice(&f[4..]).unwrap();
        assert_eq!(got, sent, "frame {i} value");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_writers_fixture_frames_decode_to_the_reference_batches() {
    // SPEC §1.3: the JavaScript producer's frames decode to the reference batch.
    let frames = vec![
        SEED_1.to_vec(),
        SEED_50.to_vec(),
        SEED_50.to_vec(),
        SEED_1.to_vec(),
        SEED_50.to_vec(),
    ];
    let (seen, report) = consume_plain(Json::<Vec<Record>>::new(), frames.clone()).await;
    check_report(&report, &frames);
    check_deliveries(&seen, &frames, &report);
    let one = reference_batch(1);
    let fifty = reference_batch(50);
    for (i, (d, f)) in seen.iter().zip(&frames).enumerate() {
        let expected = if f == SEED_1 { &one } else { &fifty };
        assert_eq!(d.item.len(), expected.len(), "frame {i} record count");
        assert!(d.item == *expected, "frame {i} is the reference batch");
    }
}

// ---------------------------------------------------------------------------------------------
// The producer feeding a plain reader (SPEC §1.4, §6).
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Serialize)]
struct Item {
    seq: u64,
    label: String,
    score: f64,
    tags: Vec<&'static str>,
    maybe: Option<bool>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_json_writes_compact_json_a_plain_reader_can_split() {
    // SPEC §1.2.2, §1.4: each item is one frame whose body is exactly serde_json's compact output.
    let items: Vec<Item> = (0..200u64)
        .map(|seq| Item {
            seq,
            label: format!("label {seq} \"quoted\" \u{e9}\u{2713}\n"),
            score: seq as f64 * 1.25 - 3.0,
            tags: ["x"; 3][..(seq % 4) as usize].to_vec(),
            maybe: (seq % 3 != 0).then_some(seq % 2 == 0),
        })
        .collect();
    let expected: Vec<Vec<u8>> = items
        .iter()
        .map(|item| serde_json::to_vec(item).unwrap())
        .collect();
    let (addr, reader) = plain_reader();
    let report = tokio::time::timeout(LIMIT, async {
        Producer::connect(addr)
            .await
            .expect("connect to the plain reader")
            .send_json(futures::stream::iter(items))
            .await
    })
    .await
    .expect("the producer finished in time")
    .expect("the producer succeeded");
    let captured = join(reader).await;

    assert_eq!(captured.bodies.len(), expected.len());
    for (i, (got, want)) in captured.bodies.iter().zip(&expected).enumerate() {
        assert_eq!(got, want, "frame {i} body is compact serde_json");
        assert!(
            !got.contains(&b'\n'),
            "frame {i}: compact JSON has no raw newline"
        );
    }
    let wire_len: u64 = expected.iter().map(|b| 4 + b.len() as u64).sum();
    assert!(
        report.confirmed,
        "the plain reader closed after reading everything"
    );
    assert_eq!(report.snapshot.frames_written, expected.len() as u64);
    assert_eq!(report.snapshot.bytes_written, wire_len);
    assert_eq!(captured.wire.len() as u64, wire_len);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_raw_bodies_arrive_unchanged() {
    // SPEC §1.1: raw bodies, including an empty one and a 1 MiB one, arrive byte for byte.
    let big: Vec<u8> = (0..1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    let bodies: Vec<Bytes> = vec![
        Bytes::from_static(b"[1,2,3]"),
        Bytes::new(),
        Bytes::from(big),
        Bytes::from_static(&[0, 1, 2, 0xff, 0xfe]),
        Bytes::new(),
        Bytes::copy_from_slice(&SEED_50[4..]),
        Bytes::from_static(b"last"),
    ];
    let (addr, reader) = plain_reader();
    let report = tokio::time::timeout(LIMIT, async {
        Producer::connect(addr)
            .await
            .expect("connect to the plain reader")
            .send_raw(futures::stream::iter(bodies.clone()))
            .await
    })
    .await
    .expect("the producer finished in time")
    .expect("the producer succeeded");
    let captured = join(reader).await;

    assert_eq!(captured.bodies.len(), bodies.len());
    for (i, (got, want)) in captured.bodies.iter().zip(&bodies).enumerate() {
        assert_eq!(got.len(), want.len(), "frame {i} length");
        assert!(got[..] == want[..], "frame {i} body unchanged");
    }
    let expected_wire: Vec<u8> = bodies.iter().flat_map(|b| frame(b)).collect();
    assert!(
        captured.wire == expected_wire,
        "the whole stream is as a plain writer would write it"
    );
    assert!(report.confirmed);
    assert_eq!(report.snapshot.frames_written, bodies.len() as u64);
    assert_eq!(report.snapshot.bytes_written, expected_wire.len() as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reference_frames_are_byte_identical_to_the_javascript_producers() {
    // SPEC §1.3: serde, with the record's fields in order, writes what JSON.stringify writes.
    let (addr, reader) = plain_reader();
    let report = tokio::time::timeout(LIMIT, async {
        Producer::connect(addr)
            .await
            .expect("connect to the plain reader")
            .send_json(generator::reference_frames(3, 50))
            .await
    })
    .await
    .expect("the producer finished in time")
    .expect("the producer succeeded");
    let captured = join(reader).await;

    assert_eq!(captured.bodies.len(), 3);
    for (i, body) in captured.bodies.iter().enumerate() {
        assert_eq!(body.len(), SEED_50.len() - 4, "frame {i} length");
        assert!(body[..] == SEED_50[4..], "frame {i} is the reference frame");
    }
    assert!(captured.wire == SEED_50.repeat(3), "headers included");
    assert!(report.confirmed);
    assert_eq!(report.snapshot.frames_written, 3);
    assert_eq!(report.snapshot.bytes_written, 3 * SEED_50.len() as u64);
}
