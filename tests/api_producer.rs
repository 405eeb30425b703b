//! The producer's sender handle over real loopback TCP (issue 11, SPEC §6.6, §6.7): shared by many
//! tasks, failing fast when the budget is full, as a `Sink`, batching with a linger, and closing with
//! a report that means what it says (SPEC §6.2.3, §6.2.5).

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{check_sequences, event, Event};
use framepipe::consumer::{Consumer, Delivery, Json, Report as ConsumerReport};
use framepipe::producer::{Batching, Error as ProducerError, Producer, Sender};
use futures::StreamExt;
use tokio::sync::watch;
use tokio::task::JoinHandle;

type Seen = Arc<Mutex<Vec<(u32, u64)>>>;

/// A consumer of one connection recording (producer, seq) of each event once its handler has
/// slept `delay` and, if given, waited for `gate` to open.
async fn recording_consumer(
    delay: Duration,
    gate: Option<watch::Receiver<bool>>,
) -> (std::net::SocketAddr, Seen, JoinHandle<ConsumerReport>) {
    let consumer = Consumer::builder()
        .max_connections(Some(1))
        .budget(16 * 1024)
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let addr = consumer.local_addr().unwrap();
    let seen: Seen = Arc::default();
    let server = tokio::spawn({
        let seen = seen.clone();
        consumer.serve(Json::<Event>::new(), move |d: Delivery<Event>| {
            let (seen, mut gate) = (seen.clone(), gate.clone());
            async move {
                if let Some(gate) = &mut gate {
                    gate.wait_for(|open| *open).await.unwrap();
                }
                if !delay.is_zero() {
                    tokio::time::sleep(delay).await;
                }
                seen.lock().unwrap().push((d.item.producer, d.item.seq));
            }
        })
    });
    (addr, seen, server)
}

/// Sends with `try_reserve` until the queue is full and stays full; returns how many were taken.
///
/// A `Full` alone does not mean the socket is stalled: a writer kept off the CPU for a few
/// milliseconds lets the queue fill while the kernel buffers still have room. Only a queue still full
/// after waiting [`STILL_FULL`] twice in a row, long enough for any writer to empty it, is stalled.
async fn fill_until_full(sender: &Sender<Event>) -> (u64, ProducerError) {
    const STILL_FULL: Duration = Duration::from_millis(100);
    let mut refused_in_a_row = 0;
    let mut seq = 0u64;
    while seq < 1_000_000 {
        match sender.try_reserve() {
            Ok(permit) => {
                permit.send(event(1, seq)).unwrap();
                seq += 1;
                refused_in_a_row = 0;
                if seq % 64 == 0 {
                    tokio::time::sleep(Duration::from_millis(1)).await; // let the driver write
                }
            }
            Err(e) if refused_in_a_row == 2 => return (seq, e),
            Err(_) => {
                refused_in_a_row += 1;
                tokio::time::sleep(STILL_FULL).await;
            }
        }
    }
    panic!("the queue never filled although the consumer is stalled");
}

// SPEC §6.7: clones of one sender in many tasks; every event arrives exactly once, in each task's
// order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_tasks_share_one_sender() {
    const TASKS: u32 = 8;
    const EACH: u64 = 1_250;
    let (addr, seen, server) = recording_consumer(Duration::ZERO, None).await;
    let sender = Producer::connect(addr).await.unwrap().sender::<Event>();
    let tasks: Vec<_> = (0..TASKS)
        .map(|task| {
            let sender = sender.clone();
            tokio::spawn(async move {
                for seq in 0..EACH {
                    sender.send(event(task, seq)).await.unwrap();
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let report = sender.close().await.unwrap();
    assert!(report.confirmed);
    let total = u64::from(TASKS) * EACH;
    let snap = &report.snapshot;
    assert_eq!(
        (snap.items_sent, snap.frames_encoded, snap.frames_written),
        (total, total, total)
    );
    server.await.unwrap();
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len() as u64, total);
    let counts = check_sequences(&seen);
    assert_eq!(counts.len(), TASKS as usize);
    assert!(counts.values().all(|n| *n == EACH), "{counts:?}");
}

// SPEC §6.7.1: `try_reserve` fails fast with `Full` while the consumer is stalled, and keeps failing;
// `reserve` waits instead, and nothing accepted is lost once the consumer goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn try_reserve_is_full_while_the_consumer_is_stalled() {
    const BUDGET: usize = 32 * 1024;
    let (open, gate) = watch::channel(false);
    let (addr, seen, server) = recording_consumer(Duration::ZERO, Some(gate)).await;
    let conn = Producer::builder()
        .budget(BUDGET)
        .connect(addr)
        .await
        .unwrap();
    let sender = conn.sender::<Event>();
    let (taken, e) = fill_until_full(&sender).await;
    assert!(
        matches!(e, ProducerError::Full { budget: BUDGET, .. }),
        "{e}"
    );
    assert!(e.is_retryable() && e.code() == "full", "{e}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let again = sender.try_reserve().expect_err("still stalled, still full");
    assert_eq!(again.code(), "full");
    // A waiting `reserve` is served once the consumer goes on.
    let waiting = tokio::spawn({
        let sender = sender.clone();
        async move { sender.send(event(1, taken)).await }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(
        !waiting.is_finished(),
        "reserve waits while the budget is full"
    );
    open.send(true).unwrap();
    waiting.await.unwrap().unwrap();
    let report = sender.close().await.unwrap();
    assert!(report.confirmed);
    assert_eq!(report.snapshot.items_sent, taken + 1);
    server.await.unwrap();
    let seen = seen.lock().unwrap().clone();
    assert_eq!(check_sequences(&seen)[&1], taken + 1);
}

// SPEC §6.7.3: the sender as a `Sink` for `StreamExt::forward`; a clone kept aside gets the report.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sender_is_a_sink_for_forward() {
    const COUNT: u64 = 3_000;
    let (addr, seen, server) = recording_consumer(Duration::ZERO, None).await;
    let sender = Producer::connect(addr).await.unwrap().sender::<Event>();
    let source = futures::stream::iter((0..COUNT).map(|seq| Ok(event(4, seq))));
    source.forward(sender.clone()).await.unwrap();
    assert!(sender.is_closed(), "forward closes the sink at the end");
    let report = sender
        .close()
        .await
        .expect("the report is kept for every handle");
    assert!(report.confirmed);
    assert_eq!(report.snapshot.frames_written, COUNT);
    server.await.unwrap();
    assert_eq!(check_sequences(&seen.lock().unwrap())[&4], COUNT);
}

/// A consumer of one connection whose frames are batches: records each frame's events.
async fn batch_consumer() -> (
    std::net::SocketAddr,
    Arc<Mutex<Vec<Vec<u64>>>>,
    JoinHandle<ConsumerReport>,
) {
    let consumer = Consumer::builder()
        .max_connections(Some(1))
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let addr = consumer.local_addr().unwrap();
    let frames: Arc<Mutex<Vec<Vec<u64>>>> = Arc::default();
    let server = tokio::spawn({
        let frames = frames.clone();
        consumer.serve(Json::<Vec<Event>>::new(), move |d: Delivery<Vec<Event>>| {
            frames
                .lock()
                .unwrap()
                .push(d.item.iter().map(|e| e.seq).collect());
            std::future::ready(())
        })
    });
    (addr, frames, server)
}

// SPEC §6.6.1: items sent one at a time, 1 ms apart, gather into frames for 10 ms each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn linger_gathers_items_sent_one_by_one() {
    const ITEMS: u64 = 200;
    const LINGER: Duration = Duration::from_millis(10);
    let (addr, frames, server) = batch_consumer().await;
    let batching = Batching::new().linger(LINGER);
    let conn = Producer::builder()
        .batching(Some(batching))
        .connect(addr)
        .await;
    let sender = conn.unwrap().sender::<Event>();
    let start = Instant::now();
    for seq in 0..ITEMS {
        sender.send(event(1, seq)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let elapsed = start.elapsed();
    let report = sender.close().await.unwrap();
    assert!(report.confirmed);
    server.await.unwrap();
    let frames = frames.lock().unwrap().clone();
    let items: Vec<u64> = frames.iter().flatten().copied().collect();
    assert_eq!(items, (0..ITEMS).collect::<Vec<_>>());
    let snap = &report.snapshot;
    assert_eq!(snap.items_sent, ITEMS);
    assert_eq!(snap.frames_encoded, frames.len() as u64);
    assert_eq!(snap.frames_written, frames.len() as u64);
    // Every frame but the last gathers for its whole linger, so there are at most elapsed / linger
    // + 1 of them (+ 1 more for the last item reaching the driver after `elapsed`), however slow the
    // 1 ms sleeps run: about 24 on an idle machine, against 200 if items were not gathered. The
    // linger, not the 64 KiB size (some 600 of these items), ends them: more than one.
    let sizes: Vec<usize> = frames.iter().map(Vec::len).collect();
    let most = elapsed.as_millis() / LINGER.as_millis() + 2;
    assert!(frames.len() as u128 <= most, "{elapsed:?}: {sizes:?}");
    assert!(frames.len() >= 2, "{sizes:?}");
}

// SPEC §6.6.1: `close` sends the batch being gathered at once, without waiting for its linger.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_flushes_the_pending_batch() {
    let (addr, frames, server) = batch_consumer().await;
    let batching = Batching::new().linger(Duration::from_secs(10));
    let conn = Producer::builder()
        .batching(Some(batching))
        .connect(addr)
        .await;
    let sender = conn.unwrap().sender::<Event>();
    for seq in 0..3 {
        sender.send(event(1, seq)).await.unwrap();
    }
    let start = Instant::now();
    let report = sender.close().await.unwrap();
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
    assert!(report.confirmed);
    assert_eq!(
        (report.snapshot.items_sent, report.snapshot.frames_written),
        (3, 1)
    );
    server.await.unwrap();
    assert_eq!(*frames.lock().unwrap(), vec![vec![0, 1, 2]]);
}

// SPEC §6.2.3: `confirmed` comes only once the consumer's handler has returned for every frame.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_confirms_only_after_every_handler_returned() {
    const COUNT: u64 = 300;
    let consumer = Consumer::builder()
        .max_connections(Some(1))
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let addr = consumer.local_addr().unwrap();
    let handled = Arc::new(AtomicU64::new(0));
    let server = tokio::spawn({
        let handled = handled.clone();
        consumer.serve(Json::<Event>::new(), move |d: Delivery<Event>| {
            let handled = handled.clone();
            async move {
                tokio::time::sleep(Duration::from_millis(1 + d.item.seq % 2)).await;
                handled.fetch_add(1, Ordering::SeqCst);
            }
        })
    });
    let sender = Producer::connect(addr).await.unwrap().sender::<Event>();
    for seq in 0..COUNT {
        sender.send(event(1, seq)).await.unwrap();
    }
    // Every frame is written long before the handlers are done.
    sender.flush().await;
    let written_at = handled.load(Ordering::SeqCst);
    let report = sender.close().await.unwrap();
    let at_confirm = handled.load(Ordering::SeqCst);
    assert!(report.confirmed);
    assert!(
        written_at < COUNT,
        "the test needs the handlers to lag: {written_at}"
    );
    assert_eq!(at_confirm, COUNT, "confirmed before every handler returned");
    assert_eq!(server.await.unwrap().connections[0].frames, COUNT);
}

// SPEC §6.2.5: `close_within` on a consumer that stopped reading gives up at its deadline and says
// exactly how many frames were written and how many never sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_within_a_deadline_counts_what_was_never_sent() {
    const DEADLINE: Duration = Duration::from_millis(300);
    let (open, gate) = watch::channel(false);
    let (addr, seen, server) = recording_consumer(Duration::ZERO, Some(gate)).await;
    let conn = Producer::builder()
        .budget(64 * 1024)
        .connect(addr)
        .await
        .unwrap();
    let stats = conn.stats();
    let sender = conn.sender::<Event>();
    let (taken, _) = fill_until_full(&sender).await;
    let start = Instant::now();
    let e = sender.close_within(DEADLINE).await.expect_err("stalled");
    let took = start.elapsed();
    assert!(took >= DEADLINE && took < DEADLINE * 10, "{took:?}");
    assert!(matches!(e, ProducerError::Deadline { .. }), "{e}");
    assert!(e.is_retryable() && e.code() == "deadline", "{e}");
    assert!(e.never_sent() > 0, "{e}");
    let snap = stats.snapshot();
    assert_eq!((snap.items_sent, snap.frames_encoded), (taken, taken));
    assert_eq!(e.frames_written(), snap.frames_written);
    assert_eq!(e.frames_written() + e.never_sent(), taken, "{e}");
    // The consumer, let go, handles at most what was written.
    open.send(true).unwrap();
    let report = tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .unwrap()
        .unwrap();
    let handled = check_sequences(&seen.lock().unwrap()).get(&1).copied();
    assert_eq!(report.connections[0].frames, handled.unwrap_or(0));
    assert!(handled.unwrap_or(0) <= e.frames_written(), "{e}");
}

// SPEC §6.7: the handles can be used from spawned tasks: `send(&self)` holds `&Sender` across an
// await, so the futures are `Send` only if the handles are `Sync`. Fails to compile otherwise.
#[test]
fn handles_are_send_and_sync() {
    fn send_sync<T: Send + Sync>() {}
    fn spawnable<F: std::future::Future + Send>(_: F) {}
    send_sync::<Sender<Event>>();
    send_sync::<framepipe::producer::RawSender>();
    send_sync::<framepipe::producer::Permit<Event>>();
    send_sync::<framepipe::consumer::Shutdown>();
    send_sync::<Delivery<Event>>();
    fn check(sender: Sender<Event>, raw: framepipe::producer::RawSender) {
        spawnable(async move { sender.send(event(0, 0)).await });
        spawnable(async move { raw.send(bytes::Bytes::new()).await });
    }
    let _ = check;
}

/// A permit sent after the connection was closed returns `Closed` at once: it once took the queue's
/// lock twice and hung its thread for ever (SPEC §6.7.1).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_permit_sent_after_the_sender_closed_returns_closed_instead_of_hanging() {
    let (pipe, _other_end) = tokio::io::duplex(1024);
    let sender = Producer::builder()
        .on(pipe, framepipe::flow::PeerAddr::other("pipe"))
        .sender::<u32>();
    let permit = sender.reserve().await.unwrap();
    let closer = sender.clone();
    let closing = tokio::spawn(closer.close_within(Duration::from_millis(10)));
    while !sender.is_closed() {
        tokio::task::yield_now().await;
    }
    let sent = tokio::task::spawn_blocking(move || permit.send(7));
    let sent = tokio::time::timeout(Duration::from_secs(2), sent)
        .await
        .expect("Permit::send returns at once")
        .unwrap();
    assert!(matches!(sent, Err(ProducerError::Closed(_))), "{sent:?}");
    let _ = closing.await;
}
