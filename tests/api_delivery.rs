//! A `Delivery` over real loopback TCP (issue 11): it holds its share of the memory limit until it is
//! dropped, so readers wait rather than exceed the limit while the application keeps frames
//! (SPEC §7.6); and it decodes into borrowed types pointing into its body (SPEC §7.2).

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use common::{event, wait_until, EventRef};
use framepipe::consumer::{Consumer, Delivery, Raw, Stats};
use framepipe::producer::Producer;
use futures::StreamExt;

const FRAMES: u64 = 200;
const BODY: usize = 1_000;
const MAX_FRAME: u32 = 2 * 1024;
const MEMORY_LIMIT: usize = 24 * 1024;

fn bodies() -> impl futures::Stream<Item = Bytes> {
    futures::stream::iter((0..FRAMES).map(|i| Bytes::from(vec![b'0' + (i % 10) as u8; BODY])))
}

/// Checks, several times over 100 ms, that the pool holds at least what is kept and never more than
/// its limit, and that readers have waited for room.
async fn assert_kept_is_counted(stats: &Stats, kept_bytes: usize) {
    for _ in 0..10 {
        let memory = stats.snapshot().memory;
        assert!(
            memory.in_use >= kept_bytes,
            "{kept_bytes} bytes kept by the application, {memory:?}"
        );
        assert!(memory.peak <= MEMORY_LIMIT, "{memory:?}");
        assert!(memory.waits > 0, "readers must have waited: {memory:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

// SPEC §7.6: deliveries kept by a handler keep their memory; the reader waits instead of reading on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_kept_by_the_handler_hold_their_memory() {
    let consumer = Consumer::builder()
        .max_frame_length(MAX_FRAME)
        .memory_limit(MEMORY_LIMIT)
        .max_connections(Some(1))
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let addr = consumer.local_addr().unwrap();
    let stats = consumer.stats();
    let kept: Arc<Mutex<Vec<Delivery<Bytes>>>> = Arc::default();
    let keep = Arc::new(AtomicBool::new(true));
    let server = tokio::spawn({
        let (kept, keep) = (kept.clone(), keep.clone());
        consumer.serve(Raw, move |d: Delivery<Bytes>| {
            if keep.load(Ordering::SeqCst) {
                kept.lock().unwrap().push(d);
            }
            std::future::ready(())
        })
    });
    let producer = tokio::spawn(Producer::connect(addr).await.unwrap().send_raw(bodies()));
    // Wait until the handler has stopped getting frames: memory is full.
    let mut last = u64::MAX;
    loop {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let now = stats.frames_handled();
        if now == last && now > 0 {
            break;
        }
        last = now;
    }
    let kept_bytes: usize = kept.lock().unwrap().iter().map(|d| d.wire_bytes).sum();
    assert_eq!(kept.lock().unwrap().len() as u64, last);
    assert!(last < FRAMES, "the limit must have stopped the reader");
    assert!(kept_bytes > MEMORY_LIMIT / 2, "{kept_bytes}");
    assert_kept_is_counted(&stats, kept_bytes).await;

    keep.store(false, Ordering::SeqCst);
    let dropping = std::mem::take(&mut *kept.lock().unwrap());
    drop(dropping); // the connection may run to its end while these are being dropped
    let sent = producer.await.unwrap().unwrap();
    assert!(sent.confirmed);
    let report = server.await.unwrap();
    assert_eq!(report.connections[0].frames, FRAMES);
    // Every delivery is dropped and the connection is over: nothing is held.
    let memory = stats.snapshot().memory;
    assert_eq!(memory.in_use, 0, "{memory:?}");
    assert!(memory.peak <= MEMORY_LIMIT, "{memory:?}");
}

// SPEC §7.6: the same through `Consumer::accept`, a stream the application polls itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_kept_from_an_accepted_stream_hold_their_memory() {
    let mut consumer = Consumer::builder()
        .max_frame_length(MAX_FRAME)
        .memory_limit(MEMORY_LIMIT)
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let addr = consumer.local_addr().unwrap();
    let stats = consumer.stats();
    let producer = tokio::spawn(Producer::connect(addr).await.unwrap().send_raw(bodies()));
    let mut conn = consumer.accept(Raw).await.unwrap();
    let mut kept = Vec::new();
    while let Ok(next) = tokio::time::timeout(Duration::from_millis(300), conn.next()).await {
        kept.push(next.expect("the stream goes on").expect("a frame"));
    }
    let kept_bytes: usize = kept.iter().map(|d| d.wire_bytes).sum();
    assert!(
        (kept.len() as u64) < FRAMES,
        "the limit must have stopped the reader"
    );
    assert!(kept_bytes > MEMORY_LIMIT / 2, "{kept_bytes}");
    assert_kept_is_counted(&stats, kept_bytes).await;

    let mut frames = kept.len() as u64;
    for (i, d) in kept.iter().enumerate() {
        assert_eq!((d.frame, d.offset), (i as u64, (i * (BODY + 4)) as u64));
    }
    drop(kept);
    while let Some(next) = conn.next().await {
        let d = next.unwrap();
        assert_eq!(d.frame, frames);
        frames += 1;
    }
    assert_eq!(frames, FRAMES);
    let sent = producer.await.unwrap().unwrap();
    assert!(sent.confirmed, "the stream was read to its end");
    wait_until("the pool to empty", Duration::from_secs(5), || {
        stats.snapshot().memory.in_use == 0
    })
    .await;
}

// SPEC §7.2: `Delivery<Bytes>::json` decodes `&str` fields that point into the frame's body.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn borrowed_decode_points_into_the_body() {
    const BATCHES: u64 = 50;
    const PER_BATCH: u64 = 10;
    let consumer = Consumer::builder()
        .max_connections(Some(1))
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let addr = consumer.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let server = tokio::spawn({
        let seen = seen.clone();
        consumer.serve(Raw, move |d: Delivery<Bytes>| {
            let decoded = d.json::<Vec<EventRef<'_>>>().map(|events| {
                let body = d.item.as_ptr_range();
                let mut seen = seen.lock().unwrap();
                for e in events {
                    let inside = body.contains(&e.note.as_ptr())
                        && body.contains(&e.note.as_ptr().wrapping_add(e.note.len() - 1));
                    seen.push((e.producer, e.seq, e.note.len(), inside));
                }
            });
            std::future::ready(decoded)
        })
    });
    let batches = futures::stream::iter((0..BATCHES).map(|b| {
        (0..PER_BATCH)
            .map(|i| event(7, b * PER_BATCH + i))
            .collect::<Vec<_>>()
    }));
    let sent = Producer::connect(addr)
        .await
        .unwrap()
        .send_json(batches)
        .await
        .unwrap();
    assert!(sent.confirmed);
    let report = server.await.unwrap();
    assert_eq!(report.connections[0].frames, BATCHES);
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len() as u64, BATCHES * PER_BATCH);
    for (i, &(producer, seq, len, inside)) in seen.iter().enumerate() {
        assert_eq!(
            (producer, seq, len),
            (7, i as u64, event(7, seq).note.len())
        );
        assert!(inside, "event {seq}'s note was copied, not borrowed");
    }
}
