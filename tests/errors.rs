//! Error paths over loopback: what each side reports when the other misbehaves or goes away
//! (SPEC §4, §6.3, §6.4, §7).

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use bytes::Bytes;
use framepipe::consumer::{Consumer, Json, Raw};
use framepipe::producer::{generator, Error, Producer};
use serde::{Deserialize, Serialize};

/// The reference frame, as the JavaScript producer writes it.
const SEED_50: &[u8] = include_bytes!("../fixtures/seed-frame-50.bin");

/// Upper bound for any one step; a hang fails instead of blocking the suite.
const LIMIT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Stamped {
    seq: u64,
    payload: String,
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

/// One frame on the wire (SPEC §1.1), built by hand.
fn frame(body: &[u8]) -> Vec<u8> {
    let mut wire = (body.len() as u32).to_be_bytes().to_vec();
    wire.extend_from_slice(body);
    wire
}

// ---------------------------------------------------------------------------------------------
// Connecting.
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn connecting_to_a_port_nobody_listens_on_is_a_connect_error_naming_the_address() {
    // A port that was free a moment ago: bind it, note it, release it.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let err = tokio::time::timeout(LIMIT, Producer::connect(addr.as_str()))
        .await
        .expect("a refused connection fails at once")
        .expect_err("nobody listens there");
    let shown = err.to_string();
    assert!(
        shown.contains(&addr),
        "the message names the address: {shown}"
    );
    assert_eq!(err.frames_written(), 0);
    match err {
        Error::Connect { addr: a, source } => {
            assert_eq!(a, addr);
            assert_eq!(source.kind(), io::ErrorKind::ConnectionRefused, "{source}");
        }
        other => panic!("expected Error::Connect, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// A frame over the consumer's limit (SPEC §3.3, §6.3).
// ---------------------------------------------------------------------------------------------

/// Frames the handler received, with their index, by producer address.
type ByPeer = HashMap<SocketAddr, Vec<(u64, Bytes)>>;

/// A `MakeWriter` target: every formatted log line is appended to a shared buffer.
#[derive(Clone, Default)]
struct LogBuffer(Arc<Mutex<Vec<u8>>>);

impl Write for LogBuffer {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl LogBuffer {
    fn lines(&self) -> Vec<String> {
        String::from_utf8_lossy(&self.0.lock().unwrap())
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

// current_thread: every task runs on this thread, so the thread-local subscriber set below sees the
// consumer's log lines.
#[tokio::test(flavor = "current_thread")]
async fn an_oversized_frame_is_rejected_with_a_notice_and_other_connections_go_on() {
    const LIMIT_BYTES: u32 = 1000;
    const SMALL_BEFORE: usize = 3;
    const SMALL_BODY: usize = 100;
    const BIG_BODY: usize = 5000;
    const GOOD_FRAMES: u64 = 200;

    let logs = LogBuffer::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer({
            let logs = logs.clone();
            move || logs.clone()
        })
        .with_ansi(false)
        .with_max_level(tracing::Level::DEBUG)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let consumer = Consumer::builder()
        .max_frame_length(LIMIT_BYTES)
        .max_connections(Some(2))
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let addr = consumer.local_addr().unwrap();
    let seen: Arc<Mutex<ByPeer>> = Arc::default();
    let server = tokio::spawn({
        let seen = seen.clone();
        consumer.serve(Raw, move |d| {
            let seen = seen.clone();
            async move {
                seen.lock()
                    .unwrap()
                    .entry(d.peer().socket_addr().unwrap())
                    .or_default()
                    .push((d.frame, d.item));
            }
        })
    });

    // The misbehaving producer: small frames, one over the limit, then more small ones.
    let small = |i: usize| Bytes::from(vec![b'a' + i as u8; SMALL_BODY]);
    let mut bad_bodies: Vec<Bytes> = (0..SMALL_BEFORE).map(small).collect();
    bad_bodies.push(Bytes::from(vec![b'X'; BIG_BODY]));
    bad_bodies.extend((SMALL_BEFORE..SMALL_BEFORE + 3).map(small));
    let bad = async {
        Producer::connect(addr)
            .await
            .unwrap()
            .send_raw(futures::stream::iter(bad_bodies.clone()))
            .await
    };
    // The well-behaved producer, at the same time, on the same consumer.
    let good_items: Vec<Stamped> = (0..GOOD_FRAMES)
        .map(|seq| Stamped {
            seq,
            payload: "y".repeat((seq % 50) as usize),
        })
        .collect();
    let good = async {
        Producer::connect(addr)
            .await
            .unwrap()
            .send_json(futures::stream::iter(good_items.clone()))
            .await
    };
    let (bad, good) = tokio::time::timeout(LIMIT, async { tokio::join!(bad, good) })
        .await
        .expect("both producers finished in time");

    // SPEC §6.3: the producer learns which frame was refused, and why.
    let err = bad.expect_err("the consumer refused a frame");
    let shown = err.to_string();
    assert!(
        err.frames_written() >= SMALL_BEFORE as u64,
        "frames before the big one were written: {shown}"
    );
    match &err {
        Error::Rejected {
            frames_written,
            notice,
            ..
        } => {
            assert!(*frames_written >= SMALL_BEFORE as u64);
            assert_eq!(notice.error, "frame_too_large", "{notice:?}");
            assert_eq!(notice.frame, SMALL_BEFORE as u64, "{notice:?}");
            assert_eq!(
                notice.offset,
                (SMALL_BEFORE * (4 + SMALL_BODY)) as u64,
                "{notice:?}"
            );
            assert!(
                notice
                    .message
                    .contains(&format!("max_frame_length {LIMIT_BYTES}")),
                "the notice mentions the limit: {notice:?}"
            );
            assert!(
                notice.message.contains(&BIG_BODY.to_string()),
                "the notice mentions the announced length: {notice:?}"
            );
        }
        other => panic!("expected Error::Rejected, got {other:?}"),
    }
    assert!(shown.contains("frame_too_large"), "{shown}");
    assert!(
        shown.contains(&format!("rejected frame {SMALL_BEFORE}")),
        "{shown}"
    );

    let good = good.expect("the well-behaved producer was served completely");
    assert!(good.confirmed);
    assert_eq!(good.snapshot.frames_written, GOOD_FRAMES);

    // SPEC §7: the consumer ended the bad connection only, and kept serving the other.
    let report = tokio::time::timeout(LIMIT, server)
        .await
        .expect("the consumer returned after its two connections")
        .unwrap();
    assert_eq!(report.connections.len(), 2, "{report:?}");
    let (failed, served): (Vec<_>, Vec<_>) =
        report.connections.iter().partition(|c| c.error.is_some());
    assert_eq!((failed.len(), served.len()), (1, 1), "{report:?}");
    let (failed, served) = (failed[0], served[0]);
    assert_ne!(failed.peer, served.peer);
    let why = failed.error.as_deref().unwrap();
    assert!(
        why.contains(&format!("max_frame_length {LIMIT_BYTES}")),
        "the report says which limit: {why}"
    );
    assert!(why.contains(&BIG_BODY.to_string()), "{why}");
    assert_eq!(
        (failed.frames, failed.errors),
        (SMALL_BEFORE as u64, 1),
        "{failed:?}"
    );
    assert_eq!(
        (served.frames, served.errors, served.error.as_deref()),
        (GOOD_FRAMES, 0, None),
        "{served:?}"
    );
    assert_eq!(served.bytes, good.snapshot.bytes_written);

    // The handler got exactly the frames before the big one from the bad connection, and every frame
    // of the good one, in order.
    let seen = std::mem::take(&mut *seen.lock().unwrap());
    assert_eq!(seen.len(), 2, "deliveries came from two peers");
    let from_bad = &seen[&failed.peer.socket_addr().unwrap()];
    assert_eq!(from_bad.len(), SMALL_BEFORE);
    for (i, (index, body)) in from_bad.iter().enumerate() {
        assert_eq!(*index, i as u64);
        assert_eq!(body, &bad_bodies[i], "bad connection frame {i}");
    }
    let from_good = &seen[&served.peer.socket_addr().unwrap()];
    assert_eq!(from_good.len() as u64, GOOD_FRAMES);
    for (i, (index, body)) in from_good.iter().enumerate() {
        assert_eq!(*index, i as u64);
        let item: Stamped = serde_json::from_slice(body).unwrap();
        assert_eq!(item, good_items[i], "good connection frame {i}");
    }

    // Logged once by the consumer, at WARN, with the producer's address (the producer logs its
    // own end of it).
    let lines = logs.lines();
    let rejections: Vec<&String> = lines
        .iter()
        .filter(|l| l.contains("framepipe_consumer"))
        .filter(|l| l.contains(&format!("max_frame_length {LIMIT_BYTES}")))
        .collect();
    assert_eq!(rejections.len(), 1, "logged exactly once: {lines:#?}");
    let line = rejections[0];
    assert!(line.contains(" WARN "), "logged at WARN: {line}");
    assert!(
        line.contains(&format!("peer={}", failed.peer)),
        "with the producer's address as a field: {line}"
    );
    let warnings = lines
        .iter()
        .filter(|l| l.contains(" WARN ") && l.contains("framepipe_consumer"))
        .count();
    assert_eq!(warnings, 1, "nothing else warned: {lines:#?}");
    let errors = lines.iter().filter(|l| l.contains(" ERROR ")).count();
    assert_eq!(errors, 0, "{lines:#?}");
}

// ---------------------------------------------------------------------------------------------
// The consumer going away mid-stream (SPEC §6.4).
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_that_disconnects_mid_stream_ends_the_producer_with_frames_written() {
    const TOTAL: u64 = 10_000;
    const READ: usize = 300_000;

    // A plain reader that takes a few hundred KB and then closes with data still unread.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let reader: JoinHandle<io::Result<Vec<u8>>> = thread::spawn(move || {
        let (mut stream, _) = listener.accept()?;
        stream.set_read_timeout(Some(LIMIT))?;
        let mut got = vec![0u8; READ];
        stream.read_exact(&mut got)?;
        drop(stream);
        Ok(got)
    });

    let result = tokio::time::timeout(LIMIT, async {
        Producer::connect(addr)
            .await
            .unwrap()
            .send_json(generator::reference_frames(TOTAL, 50))
            .await
    })
    .await
    .expect("the producer noticed the disconnection in time");
    let got = join(reader).await;
    // What the reader took was the start of the stream of reference frames.
    assert!(got[..] == SEED_50.repeat(READ / SEED_50.len() + 1)[..READ]);

    let err = result.expect_err("the consumer went away before the end");
    let frames_written = err.frames_written();
    let shown = err.to_string();
    assert!(
        frames_written >= (READ / SEED_50.len()) as u64,
        "the frames the reader took were written: {shown}"
    );
    assert!(frames_written < TOTAL, "{shown}");
    assert!(
        shown.contains(&format!("after {frames_written} frames")),
        "the message says how many frames were written: {shown}"
    );
    assert!(
        shown.contains("delivery of those frames is unknown"),
        "the message says delivery is unknown: {shown}"
    );
    match &err {
        Error::PeerClosed {
            bytes_written,
            source,
            ..
        } => {
            assert!(*bytes_written >= READ as u64, "{shown}");
            assert!(*bytes_written >= frames_written * SEED_50.len() as u64);
            assert!(*bytes_written < TOTAL * SEED_50.len() as u64);
            assert!(
                matches!(
                    source.kind(),
                    io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe
                ),
                "{source:?}"
            );
        }
        Error::Io { .. } => {}
        other => panic!("expected Error::PeerClosed or Error::Io, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Frame-local errors (SPEC §3.2, §4.1).
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frame_local_errors_drop_one_frame_and_the_connection_goes_on() {
    let consumer = Consumer::builder()
        .max_connections(Some(1))
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let addr = consumer.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let server = tokio::spawn({
        let seen = seen.clone();
        consumer.serve(Json::<Stamped>::new(), move |d| {
            let seen = seen.clone();
            async move { seen.lock().unwrap().push((d.frame, d.item)) }
        })
    });

    let first = Stamped {
        seq: 0,
        payload: "first".into(),
    };
    let last = Stamped {
        seq: 3,
        payload: "last".into(),
    };
    let wire = [
        frame(&serde_json::to_vec(&first).unwrap()),
        frame(br#"{"seq": 1, "payload": "#), // InvalidJson: cut short
        frame(b""),                          // EmptyFrame
        frame(&serde_json::to_vec(&last).unwrap()),
    ]
    .concat();
    let writer: JoinHandle<io::Result<()>> = thread::spawn(move || {
        let mut stream = TcpStream::connect(addr)?;
        stream.write_all(&wire)?;
        Ok(()) // dropped: closed after the last byte
    });

    let report = tokio::time::timeout(LIMIT, server)
        .await
        .expect("the consumer returned after its one connection")
        .unwrap();
    join(writer).await;

    let seen = std::mem::take(&mut *seen.lock().unwrap());
    assert_eq!(seen, vec![(0, first), (3, last)]);
    assert_eq!(report.connections.len(), 1, "{report:?}");
    let conn = &report.connections[0];
    assert_eq!(
        (conn.frames, conn.errors, conn.error.as_deref()),
        (2, 2, None),
        "{conn:?}"
    );
    assert_eq!(report.snapshot.errors, 2);
    assert_eq!(report.snapshot.frames_read, 4);
    assert_eq!(report.snapshot.frames_handled, 2);
}
