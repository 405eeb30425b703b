//! The consumer's API over real loopback TCP (issue 11): graceful and forced shutdown under load,
//! checked by sequence numbers (SPEC §8.5); handlers that fail (§7.7); hooks and per-connection
//! context (§7.1).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{check_sequences, event, events, wait_until, Event};
use framepipe::consumer::{
    BoxError, ConnectionInfo, ConnectionReport, Consumer, Delivery, Handler, Json, OnHandlerError,
    PeerAddr,
};
use framepipe::producer::{Error as ProducerError, Producer, Report as ProducerReport};

/// Events each streaming producer offers: far more than the consumer handles before the shutdown.
const ENDLESS: u64 = 1_000_000;

/// What a handler saw: (connection id, producer, seq, frame index).
type Seen = Arc<Mutex<Vec<(u64, u32, u64, u64)>>>;

/// An event with a body of about 1 KiB, so few frames sit in each connection's queue and read block.
fn big_event(producer: u32, seq: u64) -> Event {
    Event {
        note: "b".repeat(1_000),
        ..event(producer, seq)
    }
}

/// Starts a producer streaming `count` big events; returns its outcome and its final counters.
fn stream_producer(
    addr: std::net::SocketAddr,
    producer: u32,
    count: u64,
) -> tokio::task::JoinHandle<(
    Result<ProducerReport, ProducerError>,
    framepipe::producer::Snapshot,
)> {
    tokio::spawn(async move {
        let conn = Producer::connect(addr).await.unwrap();
        let stats = conn.stats();
        let source = futures::stream::iter((0..count).map(move |seq| big_event(producer, seq)));
        let result = conn.send_json(source).await;
        (result, stats.snapshot())
    })
}

/// The producer each connection carried, from what its handler saw.
fn producers_by_connection(seen: &[(u64, u32, u64, u64)]) -> BTreeMap<u64, u32> {
    let mut map = BTreeMap::new();
    for &(conn, producer, seq, frame) in seen {
        assert_eq!(
            seq, frame,
            "connection {conn}: seq {seq} arrived as frame {frame}"
        );
        let first = *map.entry(conn).or_insert(producer);
        assert_eq!(first, producer, "connection {conn} carried two producers");
    }
    map
}

/// A producer ended by a graceful shutdown: `Rejected` with `shutting_down`, naming as the first
/// frame not read exactly the number of frames its connection's handler saw (SPEC §8.5.3).
fn assert_shut_down(
    outcome: &(
        Result<ProducerReport, ProducerError>,
        framepipe::producer::Snapshot,
    ),
    handled: u64,
) {
    let (result, snap) = outcome;
    let Err(e) = result else {
        panic!("a streaming producer finished: {result:?}")
    };
    let ProducerError::Rejected { notice, .. } = e else {
        panic!("expected a shutting_down notice, got {e}")
    };
    assert_eq!(e.code(), "shutting_down", "{e}");
    assert!(e.is_retryable());
    assert_eq!(notice.frame, handled, "{e}");
    assert!(e.frames_written() >= handled, "{e}");
    assert_eq!(e.frames_written(), snap.frames_written);
    assert_eq!(e.frames_written() + e.never_sent(), snap.frames_encoded);
}

// SPEC §8.5.1: nothing read from a transport is dropped; each producer learns exactly which frames
// were handled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_under_load_loses_nothing_read() {
    const STREAMING: u32 = 4;
    const SHORT: u64 = 30;
    let consumer = Consumer::builder()
        .budget(8 * 1024)
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let addr = consumer.local_addr().unwrap();
    let (stats, seen): (_, Seen) = (consumer.stats(), Arc::default());
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn({
        let seen = seen.clone();
        let handler = move |d: Delivery<Event>| {
            let seen = seen.clone();
            async move {
                tokio::time::sleep(Duration::from_millis(1 + d.item.seq % 3)).await;
                let record = (d.connection().id, d.item.producer, d.item.seq, d.frame);
                seen.lock().unwrap().push(record);
            }
        };
        consumer.serve_until(Json::<Event>::new(), handler, async move {
            let _ = stop_rx.await;
        })
    });
    // Producer 0 finishes before the shutdown; the others stream without end.
    let short = stream_producer(addr, 0, SHORT);
    let _ = short.await;
    let streams: Vec<_> = (1..=STREAMING)
        .map(|p| stream_producer(addr, p, ENDLESS))
        .collect();
    wait_until(
        "every streaming connection to be handled",
        Duration::from_secs(20),
        || {
            let seen = seen.lock().unwrap();
            let producers: BTreeSet<u32> = seen.iter().map(|s| s.1).collect();
            producers.len() == 1 + STREAMING as usize && seen.len() > 200
        },
    )
    .await;
    stop_tx.send(()).unwrap();
    let report = tokio::time::timeout(Duration::from_secs(20), server)
        .await
        .expect("a graceful shutdown ends")
        .unwrap();

    let shutdown = report.shutdown.expect("a shutdown was started");
    assert!(!shutdown.forced, "{shutdown:?}");
    let seen = seen.lock().unwrap().clone();
    let producers = producers_by_connection(&seen);
    let handled = check_sequences(&seen.iter().map(|s| (s.0, s.2)).collect::<Vec<_>>());
    assert_eq!(report.connections.len(), 1 + STREAMING as usize);
    for conn in &report.connections {
        assert_eq!(
            (conn.unhandled, conn.errors, conn.forced),
            (0, 0, false),
            "{conn:?}"
        );
        assert_eq!(conn.frames_read, conn.frames + conn.errors, "{conn:?}");
        assert_eq!(conn.frames, handled[&conn.id], "{conn:?}");
    }
    let snap = &report.snapshot;
    assert_eq!(snap.frames_unhandled, 0);
    assert_eq!(snap.frames_handled, seen.len() as u64);
    assert_eq!(snap.frames_delivered, snap.frames_handled);
    assert_eq!(stats.open_connections(), 0);

    let short_conn = producers.iter().find(|(_, p)| **p == 0).unwrap().0;
    assert_eq!(handled[short_conn], SHORT);
    for (p, task) in (1..=STREAMING).zip(streams) {
        let outcome = task.await.unwrap();
        let conn = producers.iter().find(|(_, q)| **q == p).unwrap().0;
        assert_shut_down(&outcome, handled[conn]);
    }
}

// SPEC §8.5.2: a second `shutdown()` forces it; frames read and not handled are counted, and no
// connection vanishes from the report.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_shutdown_forces_and_counts_unhandled_frames() {
    const PRODUCERS: u32 = 3;
    const STUCK_PRODUCER: u32 = 2;
    const STUCK_AT: u64 = 20;
    let consumer = Consumer::builder()
        .budget(8 * 1024)
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let addr = consumer.local_addr().unwrap();
    let (stats, shutdown, seen): (_, _, Seen) =
        (consumer.stats(), consumer.shutdown_handle(), Arc::default());
    let server = tokio::spawn({
        let seen = seen.clone();
        consumer.serve(Json::<Event>::new(), move |d: Delivery<Event>| {
            let seen = seen.clone();
            async move {
                if (d.item.producer, d.item.seq) == (STUCK_PRODUCER, STUCK_AT) {
                    std::future::pending::<()>().await;
                }
                tokio::time::sleep(Duration::from_millis(1 + d.item.seq % 3)).await;
                let record = (d.connection().id, d.item.producer, d.item.seq, d.frame);
                seen.lock().unwrap().push(record);
            }
        })
    });
    let streams: Vec<_> = (1..=PRODUCERS)
        .map(|p| stream_producer(addr, p, ENDLESS))
        .collect();
    wait_until(
        "the stuck handler and the others to run",
        Duration::from_secs(20),
        || {
            let seen = seen.lock().unwrap();
            (1..=PRODUCERS).all(|p| seen.iter().filter(|s| s.1 == p).count() as u64 >= STUCK_AT)
        },
    )
    .await;
    assert!(!shutdown.shutdown(), "the first call drains");
    wait_until(
        "the connections not stuck to close",
        Duration::from_secs(20),
        || stats.open_connections() == 1,
    )
    .await;
    assert!(shutdown.shutdown(), "the second call forces");
    let report = tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .expect("a forced shutdown ends at once")
        .unwrap();

    assert!(report.shutdown.expect("started").forced);
    let seen = seen.lock().unwrap().clone();
    let producers = producers_by_connection(&seen);
    let handled = check_sequences(&seen.iter().map(|s| (s.0, s.2)).collect::<Vec<_>>());
    assert_eq!(report.connections.len(), PRODUCERS as usize, "{report:#?}");
    let stuck = producers
        .iter()
        .find(|(_, p)| **p == STUCK_PRODUCER)
        .unwrap()
        .0;
    let mut unhandled = 0;
    for conn in &report.connections {
        assert_eq!(conn.frames, handled[&conn.id], "{conn:?}");
        assert_eq!(
            conn.frames_read,
            conn.frames + conn.errors + conn.unhandled,
            "frames read = handled + refused + unhandled: {conn:?}"
        );
        if conn.id == *stuck {
            assert!(conn.forced, "{conn:?}");
            assert_eq!(conn.frames, STUCK_AT);
            // The stuck frame, and any read after it.
            assert!(conn.unhandled >= 1, "{conn:?}");
        } else {
            assert_eq!((conn.unhandled, conn.forced), (0, false), "{conn:?}");
        }
        unhandled += conn.unhandled;
    }
    assert_eq!(report.snapshot.frames_unhandled, unhandled);
    for (p, task) in (1..=PRODUCERS).zip(streams) {
        let outcome = task.await.unwrap();
        let conn = producers.iter().find(|(_, q)| **q == p).unwrap().0;
        if p == STUCK_PRODUCER {
            // SPEC §8.5.2: told, by a notice, which frame was the first not handled.
            let e = outcome.0.expect_err("the forced connection failed");
            assert!(e.is_retryable(), "{e}");
            match &e {
                ProducerError::Rejected { notice, .. } => {
                    assert_eq!(
                        (notice.error.as_str(), notice.frame),
                        ("shutting_down", STUCK_AT),
                        "{e}"
                    )
                }
                other => panic!("expected a shutting_down notice, got {other}"),
            }
        } else {
            assert_shut_down(&outcome, handled[conn]);
        }
    }
}

/// Serves one connection with `handler` under `policy`, while a producer sends `count` events.
async fn serve_one<F, Fut>(
    policy: OnHandlerError,
    count: u64,
    handler: F,
) -> (
    Result<ProducerReport, ProducerError>,
    framepipe::consumer::Report,
)
where
    F: Fn(Delivery<Event>) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<(), BoxError>> + Send + 'static,
{
    let consumer = Consumer::builder()
        .max_connections(Some(1))
        .on_handler_error(policy)
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let addr = consumer.local_addr().unwrap();
    let server = tokio::spawn(consumer.serve(Json::<Event>::new(), handler));
    let conn = Producer::connect(addr).await.unwrap();
    let sent = conn.send_json(events(1, count)).await;
    let report = tokio::time::timeout(Duration::from_secs(20), server)
        .await
        .expect("the consumer ends with its one connection")
        .unwrap();
    (sent, report)
}

// SPEC §7.7.1: the producer is told exactly which frame failed; later frames are counted unhandled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_handler_closes_the_connection_naming_the_frame() {
    const FAIL_AT: u64 = 17;
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    let (sent, report) = serve_one(OnHandlerError::Close, 2_000, move |d| {
        let record = record.clone();
        async move {
            if d.item.seq == FAIL_AT {
                return Err(format!("cannot store event {}", d.item.seq).into());
            }
            record.lock().unwrap().push((d.connection().id, d.item.seq));
            Ok(())
        }
    })
    .await;
    let e = sent.expect_err("the producer is rejected");
    let ProducerError::Rejected { notice, .. } = &e else {
        panic!("expected Rejected, got {e}")
    };
    assert_eq!((e.code(), notice.frame), ("handler_failed", FAIL_AT), "{e}");
    assert!(notice.message.contains("cannot store event 17"), "{e}");
    assert!(e.is_retryable());
    let seen = seen.lock().unwrap().clone();
    assert_eq!(check_sequences(&seen)[&1], FAIL_AT);
    let conn = &report.connections[0];
    assert_eq!(
        (conn.frames, conn.handler_errors, conn.errors),
        (FAIL_AT, 1, 1),
        "{conn:?}"
    );
    assert_eq!(conn.unhandled, conn.frames_read - FAIL_AT - 1, "{conn:?}");
    assert!(
        conn.error.as_deref().unwrap().contains("frame 17"),
        "{conn:?}"
    );
    assert_eq!(report.snapshot.handler_errors, 1);
    assert_eq!(report.snapshot.frames_unhandled, conn.unhandled);
}

// SPEC §7.7.2: errors are counted and the connection goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_handler_under_continue_goes_on() {
    const COUNT: u64 = 400;
    let handled = Arc::new(Mutex::new(Vec::new()));
    let record = handled.clone();
    let (sent, report) = serve_one(OnHandlerError::Continue, COUNT, move |d| {
        let record = record.clone();
        async move {
            if d.item.seq % 2 == 1 {
                return Err("odd events are refused".into());
            }
            record.lock().unwrap().push(d.item.seq);
            Ok(())
        }
    })
    .await;
    let sent = sent.expect("the producer goes on to the end");
    assert!(sent.confirmed);
    assert_eq!(sent.snapshot.frames_written, COUNT);
    let handled = handled.lock().unwrap().clone();
    assert_eq!(handled, (0..COUNT).step_by(2).collect::<Vec<_>>());
    let conn = &report.connections[0];
    let half = COUNT / 2;
    assert_eq!(
        (
            conn.frames,
            conn.handler_errors,
            conn.errors,
            conn.unhandled,
            conn.frames_read
        ),
        (half, half, half, 0, COUNT),
        "{conn:?}"
    );
    assert_eq!(conn.error, None);
    assert_eq!(report.snapshot.handler_errors, half);
}

// The ingest service with its output on a full disk: the first write fails, the producer is
// told at once instead of being confirmed (SPEC §7.7.1).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handler_writing_to_dev_full_closes_with_a_notice() {
    if !std::path::Path::new("/dev/full").exists() {
        eprintln!("no /dev/full here: skipped");
        return;
    }
    let (sent, report) = serve_one(OnHandlerError::Close, 1_000, |d| async move {
        use std::io::Write;
        let mut out = std::fs::OpenOptions::new().append(true).open("/dev/full")?;
        writeln!(out, "{}", serde_json::to_string(&d.item)?)?;
        Ok(())
    })
    .await;
    let e = sent.expect_err("a full disk is not confirmed");
    let ProducerError::Rejected { notice, .. } = &e else {
        panic!("expected Rejected, got {e}")
    };
    assert_eq!((e.code(), notice.frame), ("handler_failed", 0), "{e}");
    assert!(notice.message.contains("No space left on device"), "{e}");
    let conn = &report.connections[0];
    assert_eq!((conn.frames, conn.handler_errors), (0, 1), "{conn:?}");
    assert_eq!(conn.unhandled, conn.frames_read - 1, "{conn:?}");
}

// SPEC §7.7.3: a handler that panics ends its connection; the report keeps its counts and the
// producer is told which frame failed rather than seeing a clean close (which would confirm it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn panicking_handler_closes_with_a_notice_and_keeps_the_counts() {
    const PANIC_AT: u64 = 10;
    let (sent, report) = serve_one(OnHandlerError::Continue, 1_000, |d| async move {
        assert_ne!(
            d.item.seq, PANIC_AT,
            "the handler panics on event {}",
            d.item.seq
        );
        Ok(())
    })
    .await;
    let e = sent.expect_err("the frames after the panic were not handled");
    let ProducerError::Rejected { notice, .. } = &e else {
        panic!("expected Rejected, got {e}")
    };
    assert_eq!(
        (e.code(), notice.frame),
        ("handler_failed", PANIC_AT),
        "{e}"
    );
    assert!(notice.message.contains("panicked"), "{e}");
    let conn = &report.connections[0];
    assert_eq!(
        (conn.frames, conn.handler_errors),
        (PANIC_AT, 1),
        "{conn:?}"
    );
    assert_eq!(conn.unhandled, conn.frames_read - PANIC_AT - 1, "{conn:?}");
    assert!(
        conn.error.as_deref().unwrap().contains("panicked"),
        "{conn:?}"
    );
    assert_eq!(report.snapshot.frames_unhandled, conn.unhandled);
}

/// Records what the hooks and the handler saw, in order.
#[derive(Debug, Clone, PartialEq)]
enum Seen4 {
    Open(u64, PeerAddr),
    Frame(u64, u32),
    Close(u64, PeerAddr, u64),
}

struct Recorder(Arc<Mutex<Vec<Seen4>>>);

impl Handler<Event> for Recorder {
    async fn handle(&self, d: Delivery<Event>) -> Result<(), BoxError> {
        // The connection comes with the delivery: no closure variable captures it.
        let id = d.connection().id;
        assert_eq!(d.peer(), &d.connection().peer);
        self.0
            .lock()
            .unwrap()
            .push(Seen4::Frame(id, d.item.producer));
        Ok(())
    }

    fn on_open(&self, conn: &ConnectionInfo) {
        self.0
            .lock()
            .unwrap()
            .push(Seen4::Open(conn.id, conn.peer.clone()));
    }

    fn on_close(&self, conn: &ConnectionInfo, report: &ConnectionReport) {
        assert_eq!((report.id, &report.peer), (conn.id, &conn.peer));
        let close = Seen4::Close(conn.id, conn.peer.clone(), report.frames);
        self.0.lock().unwrap().push(close);
    }
}

// SPEC §7.1: each connection is opened and closed once, with its id and peer, around its frames.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hooks_see_each_connection_once_with_its_id_and_peer() {
    const PRODUCERS: u32 = 3;
    const COUNT: u64 = 40;
    let consumer = Consumer::builder()
        .max_connections(Some(u64::from(PRODUCERS)))
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let addr = consumer.local_addr().unwrap();
    let log = Arc::new(Mutex::new(Vec::new()));
    let server = tokio::spawn(consumer.serve_with(Json::<Event>::new(), Recorder(log.clone())));
    let mut locals = BTreeMap::new();
    let mut sends = Vec::new();
    for p in 0..PRODUCERS {
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        locals.insert(p, PeerAddr::Tcp(tcp.local_addr().unwrap()));
        let conn = Producer::builder().on(tcp, PeerAddr::Tcp(addr));
        sends.push(tokio::spawn(conn.send_json(events(p, COUNT))));
    }
    for send in sends {
        assert!(send.await.unwrap().unwrap().confirmed);
    }
    let report = tokio::time::timeout(Duration::from_secs(20), server)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(report.connections.len(), PRODUCERS as usize);

    let log = log.lock().unwrap().clone();
    let ids: BTreeSet<u64> = report.connections.iter().map(|c| c.id).collect();
    assert_eq!(ids, (1..=u64::from(PRODUCERS)).collect());
    for id in ids {
        let mine: Vec<&Seen4> = log
            .iter()
            .filter(|s| matches!(s, Seen4::Open(i, _) | Seen4::Frame(i, _) | Seen4::Close(i, ..) if *i == id))
            .collect();
        let Seen4::Open(_, peer) = mine[0] else {
            panic!("connection {id} did not begin with on_open: {mine:?}")
        };
        let producer = *locals
            .iter()
            .find(|(_, a)| *a == peer)
            .expect("a producer's address")
            .0;
        assert_eq!(mine.len() as u64, COUNT + 2, "{mine:?}");
        assert!(mine[1..=COUNT as usize]
            .iter()
            .all(|s| **s == Seen4::Frame(id, producer)));
        assert_eq!(
            *mine.last().unwrap(),
            &Seen4::Close(id, peer.clone(), COUNT)
        );
    }
}

// SPEC §8.5.2: `shutdown_timeout` forces a drain that does not end, without a second signal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_timeout_forces_a_stuck_drain() {
    const TIMEOUT: Duration = Duration::from_millis(300);
    let consumer = Consumer::builder()
        .shutdown_timeout(TIMEOUT)
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let addr = consumer.local_addr().unwrap();
    let (stats, shutdown) = (consumer.stats(), consumer.shutdown_handle());
    let server = tokio::spawn(consumer.serve(
        Json::<Event>::new(),
        |d: Delivery<Event>| async move {
            if d.item.seq == 5 {
                std::future::pending::<()>().await;
            }
        },
    ));
    let producer = stream_producer(addr, 1, ENDLESS);
    wait_until("the handler to be stuck", Duration::from_secs(10), || {
        stats.frames_handled() == 5 && stats.frames_delivered() >= 6
    })
    .await;
    let started = std::time::Instant::now();
    assert!(!shutdown.shutdown());
    let report = tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .expect("shutdown_timeout forces it")
        .unwrap();
    let took = started.elapsed();
    assert!(took >= TIMEOUT && took < TIMEOUT * 10, "{took:?}");
    assert!(report.shutdown.unwrap().forced);
    let conn = &report.connections[0];
    assert_eq!((conn.frames, conn.forced), (5, true), "{conn:?}");
    assert_eq!(conn.frames_read, conn.frames + conn.unhandled, "{conn:?}");
    assert!(shutdown.is_forced());
    assert!(producer.await.unwrap().0.is_err());
}
