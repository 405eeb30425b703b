//! Sessions end to end over loopback (SPEC §10): a session producer and a consumer, through the
//! chaos proxy (`examples/chaos_proxy.rs`) that resets the connection every so many bytes, pauses
//! it, or partitions the link. Every frame carries its own number (a stamp independent of the
//! session layer's counters); the handler must see each stamp exactly once, in order.

#[path = "../examples/chaos/mod.rs"]
mod chaos;

use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use chaos::{Faults, Tally};
use framepipe::consumer::{Consumer, Delivery, Raw};
use framepipe::producer::{Producer, SessionReport};

/// A proxy with `faults` in front of `upstream`: its address and its counters.
async fn proxy(upstream: SocketAddr, faults: Faults) -> (SocketAddr, Arc<Tally>) {
    chaos::spawn(upstream, faults)
        .await
        .expect("a loopback port")
}

/// Frame `i`: its stamp, padded to about `size` bytes.
fn stamped(i: u64, size: usize) -> Bytes {
    let head = format!("{{\"stamp\":{i},\"pad\":\"");
    let pad = size.saturating_sub(head.len() + 2);
    Bytes::from(format!("{head}{}\"}}", "x".repeat(pad)))
}

fn stamp_of(body: &[u8]) -> u64 {
    let v: serde_json::Value = serde_json::from_slice(body).expect("a stamped frame");
    v["stamp"].as_u64().expect("a stamp")
}

/// What the consumer's handler saw: stamps in the order handled, and sequence numbers.
#[derive(Default)]
struct Seen {
    stamps: Vec<u64>,
    sequences: Vec<u64>,
}

/// Runs `frames` stamped frames of `size` bytes through a proxy with `faults`; returns the
/// producer's report, what the handler saw, the proxy's tally and the consumer's snapshot.
async fn run(
    frames: u64,
    size: usize,
    faults: Faults,
) -> (
    SessionReport,
    Seen,
    Arc<Tally>,
    framepipe::consumer::Snapshot,
) {
    run_slow(frames, size, faults, Duration::ZERO).await
}

/// Serves `consumer` with a handler that records each frame's stamp and sequence number in `seen`,
/// after sleeping `delay` (if not zero).
fn serve_recording(
    consumer: Consumer,
    seen: Arc<Mutex<Seen>>,
    delay: Duration,
) -> tokio::task::JoinHandle<framepipe::consumer::Report> {
    tokio::spawn(consumer.serve(Raw, move |d: Delivery<Bytes>| {
        let seen = seen.clone();
        async move {
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            let mut s = seen.lock().unwrap();
            s.stamps.push(stamp_of(&d.item));
            s.sequences.push(d.sequence.expect("a session frame"));
        }
    }))
}

/// Like [`run`], with a handler that takes `delay` per frame.
async fn run_slow(
    frames: u64,
    size: usize,
    faults: Faults,
    delay: Duration,
) -> (
    SessionReport,
    Seen,
    Arc<Tally>,
    framepipe::consumer::Snapshot,
) {
    let consumer = Consumer::builder().bind("127.0.0.1:0").await.unwrap();
    let upstream = consumer.local_addr().unwrap();
    let stats = consumer.stats();
    let shutdown = consumer.shutdown_handle();
    let seen = Arc::new(Mutex::new(Seen::default()));
    let served = serve_recording(consumer, seen.clone(), delay);
    let (addr, tally) = proxy(upstream, faults).await;
    let bodies = (0..frames).map(move |i| stamped(i, size));
    let report = Producer::builder()
        .session(addr.to_string())
        .reconnect_timeout(Duration::from_secs(30))
        .send_raw(futures::stream::iter(bodies))
        .await
        .expect("the session completes");
    shutdown.shutdown();
    served.await.unwrap();
    let seen = Arc::try_unwrap(seen).ok().unwrap().into_inner().unwrap();
    (report, seen, tally, stats.snapshot())
}

fn assert_exactly_once(n: u64, report: &SessionReport, seen: &Seen) {
    let all: Vec<u64> = (0..n).collect();
    assert_eq!(seen.stamps.len() as u64, n, "frames handled");
    assert_eq!(seen.stamps, all, "every stamp once, in order");
    assert_eq!(seen.sequences, all, "sequence numbers follow the stamps");
    assert!(report.complete, "{report:?}");
    assert_eq!(
        (
            report.progress.delivered,
            report.progress.unacked,
            report.progress.never_sent
        ),
        (n, 0, 0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_faults_one_connection_delivers_everything_once() {
    let (report, seen, _tally, snap) = run(2_000, 200, Faults::default()).await;
    eprintln!(
        "no faults: acks {}, connections {}",
        report.acks, report.progress.connections
    );
    assert_exactly_once(2_000, &report, &seen);
    assert_eq!(
        (report.progress.connections, report.progress.resumes),
        (1, 0)
    );
    assert_eq!(snap.sessions, 1);
    assert_eq!(snap.duplicates_dropped, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resets_every_64_kib_lose_and_duplicate_nothing() {
    let faults = Faults {
        reset_every: Some(64 * 1024),
        jitter: 0.5,
        seed: 12,
        ..Faults::default()
    };
    let (report, seen, tally, snap) = run(4_000, 300, faults).await;
    assert_exactly_once(4_000, &report, &seen);
    let resets = tally.resets.load(Relaxed);
    eprintln!(
        "resets {resets}, connections {}, resumes {}, resent {}, duplicates dropped {}, resume {:?}",
        report.progress.connections, report.progress.resumes, report.resent, snap.duplicates_dropped, report.resume_times
    );
    assert!(resets >= 10, "resets injected: {resets}");
    assert_eq!(report.progress.resumes, report.progress.connections - 1);
    assert!(
        report.progress.resumes >= resets.min(report.progress.connections),
        "{report:?}"
    );
    assert_eq!(snap.session_resumes, report.progress.resumes);
    let times = report.resume_times.expect("resumes were timed");
    assert_eq!(times.count as u64, report.progress.resumes);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pauses_of_the_link_slow_the_session_and_lose_nothing() {
    let faults = Faults {
        pause_every: Some(32 * 1024),
        pause: Duration::from_millis(30),
        seed: 3,
        ..Faults::default()
    };
    let (report, seen, tally, _snap) = run(3_000, 200, faults).await;
    assert_exactly_once(3_000, &report, &seen);
    assert!(tally.pauses.load(Relaxed) >= 10);
}

/// A 5 s partition in the middle of a throttled run: the producer's attempts are refused until it
/// ends, then the session resumes where the consumer is (SPEC §10.1: the attempts 100 ms, 250 ms,
/// 500 ms, 1 s, 2.5 s, 5 s after the loss put the resume about 9.4 s after it). About 12 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_five_second_partition_is_outlasted_and_nothing_is_lost() {
    let faults = Faults {
        rate: Some(400_000),
        partition_every: Some(Duration::from_millis(800)),
        partition_for: Duration::from_secs(5),
        partitions: Some(1),
        seed: 5,
        ..Faults::default()
    };
    let started = std::time::Instant::now();
    let (report, seen, tally, _snap) = run(10_000, 200, faults).await;
    assert_exactly_once(10_000, &report, &seen);
    assert!(tally.partitions.load(Relaxed) >= 1);
    assert!(report.progress.resumes >= 1, "{report:?}");
    let times = report.resume_times.expect("timed");
    eprintln!("partition: {report:?} in {:?}", started.elapsed());
    assert!(
        times.max_ms >= 5_000.0,
        "the resume waited out the partition: {times:?}"
    );
}

/// A slow handler (2 ms a frame) keeps a queue of frames when the connection is reset: the next
/// connection is welcomed only once they are handled, and nothing is handled twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resets_with_a_slow_handler_hand_nothing_on_twice() {
    let faults = Faults {
        reset_every: Some(2 * 1024 * 1024),
        jitter: 0.1,
        seed: 9,
        ..Faults::default()
    };
    let (report, seen, tally, snap) = run_slow(600, 20_000, faults, Duration::from_millis(2)).await;
    eprintln!(
        "slow: resets {}, handled {}, {report:?}, dup {}",
        tally.resets.load(Relaxed),
        seen.stamps.len(),
        snap.duplicates_dropped
    );
    assert_exactly_once(600, &report, &seen);
}

/// An application stuck on one frame for far longer than the liveness deadline while the link is
/// reset: each new connection waits for the old one's frames to be handled, and the consumer's
/// heartbeats meanwhile keep the producer from giving it up (SPEC §10.6.1), so the session outlasts
/// a stall of more than four liveness deadlines. `reconnect_timeout` still bounds the wait for a
/// welcome, heartbeats or not (SPEC §10.6.5), so it is longer than the stall here. The pacing leaves
/// each heartbeat 600 ms of slack through the proxy on a loaded machine (with 100 ms heartbeats,
/// 200 ms of slack was one late wake-up from a spurious failure).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_before_the_welcome_outlast_an_application_stuck_longer_than_liveness() {
    let consumer = Consumer::builder().bind("127.0.0.1:0").await.unwrap();
    let upstream = consumer.local_addr().unwrap();
    let shutdown = consumer.shutdown_handle();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let handled = seen.clone();
    let served = tokio::spawn(consumer.serve(Raw, move |d: Delivery<Bytes>| {
        let handled = handled.clone();
        async move {
            let stamp = stamp_of(&d.item);
            if stamp == 0 {
                tokio::time::sleep(Duration::from_secs(4)).await; // stuck
            }
            handled.lock().unwrap().push(stamp);
        }
    }));
    let faults = Faults {
        reset_every: Some(24 * 1024),
        ..Faults::default()
    };
    let (addr, tally) = proxy(upstream, faults).await;
    let pacing = framepipe::codec::session::Pacing {
        heartbeat_ms: 300, // liveness: 900 ms
        ..Default::default()
    };
    let bodies = (0..200).map(|i| stamped(i, 1_000));
    let report = Producer::builder()
        .session(addr.to_string())
        .pacing(pacing)
        .reconnect_timeout(Duration::from_secs(10))
        .send_raw(futures::stream::iter(bodies))
        .await
        .expect("the session outlasts the stuck application");
    assert!(tally.resets.load(Relaxed) >= 1, "the link was reset");
    assert_eq!(report.progress.delivered, 200);
    shutdown.shutdown();
    served.await.unwrap();
    assert_eq!(*seen.lock().unwrap(), (0..200).collect::<Vec<u64>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_thousand_frames_with_a_reset_every_mebibyte_lose_and_repeat_nothing() {
    let faults = Faults {
        reset_every: Some(1 << 20),
        jitter: 0.1,
        seed: 20_000,
        ..Faults::default()
    };
    let started = std::time::Instant::now();
    let (report, seen, tally, snap) = run(20_000, 3_000, faults).await;
    let resets = tally.resets.load(Relaxed);
    let times = report.resume_times.expect("resumes were timed");
    eprintln!(
        "20k: {} frames, {resets} resets, {} resumes, {} resent, {} duplicates dropped, resume \
         p50 {:.0} ms p99 {:.0} ms, {:?}",
        seen.stamps.len(),
        report.progress.resumes,
        report.resent,
        snap.duplicates_dropped,
        times.p50_ms,
        times.p99_ms,
        started.elapsed()
    );
    assert_exactly_once(20_000, &report, &seen);
    assert!(resets >= 20, "resets injected: {resets}");
}

/// A consumer shut down gracefully mid-session sends a final ack and a `shutting_down` notice
/// (SPEC §10.7.5); the producer keeps trying, and a new consumer on the same port takes the session
/// over where the first acknowledged: between them every stamp is handled once, in order, even
/// without a session store — nothing was left unacknowledged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graceful_consumer_restart_hands_every_frame_on_once() {
    let first = Consumer::builder().bind("127.0.0.1:0").await.unwrap();
    let addr = first.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Seen::default()));
    let first_shutdown = first.shutdown_handle();
    let first_served = serve_recording(first, seen.clone(), Duration::from_micros(300));
    let bodies = (0..3_000u64).map(|i| stamped(i, 2_000));
    let producer = tokio::spawn(
        Producer::builder()
            .session(addr.to_string())
            .reconnect_timeout(Duration::from_secs(30))
            .send_raw(futures::stream::iter(bodies)),
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    first_shutdown.shutdown();
    let first_report = first_served.await.unwrap();
    let handled_first = seen.lock().unwrap().stamps.len();
    assert!(
        handled_first > 0 && handled_first < 3_000,
        "{handled_first}"
    );
    assert!(first_report.shutdown.is_some_and(|s| !s.forced));
    let second = Consumer::builder().bind(addr).await.unwrap();
    let second_shutdown = second.shutdown_handle();
    let second_served = serve_recording(second, seen.clone(), Duration::from_micros(300));
    let report = producer.await.unwrap().expect("the session completes");
    second_shutdown.shutdown();
    let second_report = second_served.await.unwrap();
    let seen = Arc::try_unwrap(seen).ok().unwrap().into_inner().unwrap();
    eprintln!(
        "graceful restart: {handled_first} handled by the first consumer, {} by the second; {report:?}",
        seen.stamps.len() - handled_first
    );
    assert_exactly_once(3_000, &report, &seen);
    assert_eq!(
        second_report.snapshot.sessions, 1,
        "a new consumer: the session is new to it"
    );
    assert!(report.progress.resumes >= 1);
}

/// A raw session producer's connection: writes a hello for `session` resuming at `next`, reads the
/// welcome, and returns the stream and the welcome's `next`.
async fn raw_session(addr: SocketAddr, session: u128, next: u64) -> (tokio::net::TcpStream, u64) {
    use framepipe::codec::session::{
        Control, Hello, Pacing, ResumeSecret, SessionFramer, SessionId, Unit,
    };
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let hello = Control::Hello(Hello {
        version: 1,
        session: SessionId::from_u128(session),
        next,
        max_frame_length: 1 << 20,
        pacing: Pacing::default(),
        secret: Some(ResumeSecret::from_bytes([0x5e; 16])),
    });
    stream.write_all(&hello.to_frame().unwrap()).await.unwrap();
    let mut framer = SessionFramer::new(framepipe::codec::Builder::new());
    let mut buf = bytes::BytesMut::new();
    loop {
        if let Some(Unit::Control {
            control: Control::Welcome(w),
            ..
        }) = framer.next_unit(&mut buf).unwrap()
        {
            return (stream, w.next);
        }
        assert!(stream.read_buf(&mut buf).await.unwrap() > 0, "a welcome");
    }
}

/// A second connection of a session while the first is still open (its producer gave up on it,
/// the consumer has not noticed): the second takes the session over, the first reads nothing more
/// and is closed, its frames already read are handled, and only then is the second welcomed, at
/// the first frame not handled (SPEC §10.8.1).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_connection_of_a_session_takes_it_over_from_a_half_open_first() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let consumer = Consumer::builder().bind("127.0.0.1:0").await.unwrap();
    let addr = consumer.local_addr().unwrap();
    let stats = consumer.stats();
    let shutdown = consumer.shutdown_handle();
    let seen = Arc::new(Mutex::new(Seen::default()));
    let served = serve_recording(consumer, seen.clone(), Duration::ZERO);
    let frame = |i: u64| {
        let body = stamped(i, 100);
        let mut wire = (body.len() as u32).to_be_bytes().to_vec();
        wire.extend_from_slice(&body);
        wire
    };
    let (mut first, next) = raw_session(addr, 77, 0).await;
    assert_eq!(next, 0);
    for i in 0..10 {
        first.write_all(&frame(i)).await.unwrap();
    }
    // Wait until the ten are handled; the first connection stays open and says nothing more.
    for _ in 0..200 {
        if seen.lock().unwrap().stamps.len() == 10 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (mut second, next) = raw_session(addr, 77, 0).await;
    assert_eq!(next, 10, "welcomed at the first frame not handled");
    for i in 10..20 {
        second.write_all(&frame(i)).await.unwrap();
    }
    // The first connection was closed by the consumer (reset): reading it ends.
    let mut rest = Vec::new();
    let ended = tokio::time::timeout(Duration::from_secs(5), first.read_to_end(&mut rest)).await;
    assert!(ended.is_ok(), "the superseded connection is closed");
    for _ in 0..200 {
        if seen.lock().unwrap().stamps.len() == 20 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    drop(second);
    shutdown.shutdown();
    served.await.unwrap();
    let seen = seen.lock().unwrap();
    assert_eq!(seen.stamps, (0..20).collect::<Vec<_>>());
    assert_eq!(seen.sequences, (0..20).collect::<Vec<_>>());
    let snap = stats.snapshot();
    assert_eq!((snap.sessions, snap.session_resumes), (1, 1));
}

/// The long variant of the chaos figure: 20,000 reference-sized frames (60.9 KB, 1.2 GB)
/// with a reset about every 1 MiB, so most frames are cut at least once on the wire. Several
/// minutes, most of them backoffs: `cargo test --release --test sessions -- --ignored`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "long: about 1,000 resets; run with --ignored"]
async fn long_twenty_thousand_reference_frames_with_a_reset_every_mebibyte() {
    let faults = Faults {
        reset_every: Some(1 << 20),
        jitter: 0.1,
        seed: 60_900,
        ..Faults::default()
    };
    let started = std::time::Instant::now();
    let (report, seen, tally, snap) = run(20_000, 60_900, faults).await;
    let times = report.resume_times.expect("resumes were timed");
    eprintln!(
        "long: {} frames, {} resets, {} resumes, {} resent, {} duplicates dropped, resume p50 {:.0} \
         ms p99 {:.0} ms, {:?}",
        seen.stamps.len(),
        tally.resets.load(Relaxed),
        report.progress.resumes,
        report.resent,
        snap.duplicates_dropped,
        times.p50_ms,
        times.p99_ms,
        started.elapsed()
    );
    assert_exactly_once(20_000, &report, &seen);
}

/// The sender handle in a session (SPEC §6.7, §10): items sent as they come through a proxy that
/// resets the connection every 64 KiB; `close` returns once every frame is acknowledged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sender_in_a_session_resumes_across_resets_and_close_confirms() {
    let consumer = Consumer::builder().bind("127.0.0.1:0").await.unwrap();
    let upstream = consumer.local_addr().unwrap();
    let shutdown = consumer.shutdown_handle();
    let seen = Arc::new(Mutex::new(Seen::default()));
    let served = serve_recording(consumer, seen.clone(), Duration::ZERO);
    let faults = Faults {
        reset_every: Some(64 * 1024),
        jitter: 0.5,
        seed: 4,
        ..Faults::default()
    };
    let (addr, tally) = proxy(upstream, faults).await;
    let sender = Producer::builder().session(addr.to_string()).raw_sender();
    let stats = sender.stats();
    for i in 0..3_000 {
        sender.send(stamped(i, 300)).await.unwrap();
    }
    let report = sender.close().await.expect("every frame acknowledged");
    assert!(report.confirmed);
    let progress = stats.session_progress().expect("a session");
    shutdown.shutdown();
    served.await.unwrap();
    let seen = Arc::try_unwrap(seen).ok().unwrap().into_inner().unwrap();
    assert_eq!(seen.stamps, (0..3_000).collect::<Vec<_>>());
    assert_eq!(progress.delivered, 3_000);
    assert!(tally.resets.load(Relaxed) >= 5);
    assert_eq!(progress.resumes, progress.connections - 1);
}

/// `close_within` abandons a session whose consumer does not get through its frames in time, and
/// the error says what became of every frame.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_within_abandons_a_session_at_its_deadline_and_counts_every_frame() {
    let consumer = Consumer::builder().bind("127.0.0.1:0").await.unwrap();
    let addr = consumer.local_addr().unwrap();
    let served = tokio::spawn(consumer.serve(Raw, |_: Delivery<Bytes>| async {
        tokio::time::sleep(Duration::from_secs(3_600)).await; // never done in time
    }));
    let sender = Producer::builder().session(addr.to_string()).raw_sender();
    for i in 0..100 {
        sender.send(stamped(i, 300)).await.unwrap();
    }
    let started = std::time::Instant::now();
    let e = sender
        .close_within(Duration::from_millis(300))
        .await
        .expect_err("the deadline passes first");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    let framepipe::producer::Error::Session {
        delivered,
        unacked,
        never_sent,
        source,
        ..
    } = &e
    else {
        panic!("{e}")
    };
    assert_eq!(source.code(), "deadline", "{e}");
    assert_eq!(delivered + unacked + never_sent, 100, "{e}");
    assert_eq!(*delivered, 0, "the handler never returned: {e}");
    served.abort();
}

/// Frames still queued before the session's retention when it is abandoned count as never sent
/// (SPEC §10.7.4): the error accounts for every frame the sender accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_abandoned_session_counts_the_frames_still_queued_as_never_sent() {
    let consumer = Consumer::builder().bind("127.0.0.1:0").await.unwrap();
    let addr = consumer.local_addr().unwrap();
    let served = tokio::spawn(consumer.serve(Raw, |_: Delivery<Bytes>| async {
        tokio::time::sleep(Duration::from_secs(3_600)).await; // never acknowledges
    }));
    // 16 KiB retained and 16 KiB queued: 4 KB frames fill both, so some never leave the queue.
    let sender = Producer::builder()
        .budget(16 * 1024)
        .session(addr.to_string())
        .raw_sender();
    for i in 0..6 {
        sender.send(stamped(i, 4_000)).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(200)).await; // the retention fills
    let e = sender
        .close_within(Duration::from_millis(300))
        .await
        .expect_err("the deadline passes first");
    let framepipe::producer::Error::Session {
        unacked,
        never_sent,
        ..
    } = &e
    else {
        panic!("{e}")
    };
    assert!(*never_sent > 0, "some frames were still queued: {e}");
    assert_eq!(unacked + never_sent, 6, "{e}");
    served.abort();
}
