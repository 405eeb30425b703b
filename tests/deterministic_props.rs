//! Properties on the deterministic harness (`tests/harness`; STYLE §10): a framepipe producer and
//! consumer joined in memory, each case on a fresh current-thread runtime with a paused clock.
//!
//! 1. For any frame sizes, any split of the byte stream into pieces, any pipe capacity and any
//!    stalls shorter than every timeout, the handler sees exactly the frames sent, in order, and
//!    the producer's report is confirmed exactly when the last stall ends (SPEC §7.1.2, §6.2.3).
//! 2. For a stall longer than the consumer's timeouts at any byte offset, the idle deadline (at a
//!    frame boundary) or the frame deadline (inside a frame) fires exactly when specified, and the
//!    producer's notice names the frame awaited (SPEC §7.6.1–2, §6.3.1).
//! 3. For a consumer that stops reading at any time, after any amount, the producer fails with
//!    `Stalled` exactly `stall_timeout` after its last progress, plus the reply grace (SPEC §6.2.2).

mod harness;

use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use framepipe::consumer::Raw;
use framepipe::producer::Error;
use framepipe::proto::producer::REPLY_GRACE;
use harness::{
    at_once, body, consumer_settings, pair, producer_settings, raw_consumer, Clock, Dir, Pair,
    Recorder, Schedule,
};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::Index;

/// Every timeout of property 1; its stalls add up to at most 6 s.
const TIMEOUT: Duration = Duration::from_secs(10);
const IDLE: Duration = Duration::from_secs(7);
const FRAME: Duration = Duration::from_secs(5);
const STALL: Duration = Duration::from_secs(3);

/// Runs `test` on a fresh current-thread runtime whose clock starts paused.
fn paused<F: Future>(test: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap()
        .block_on(test)
}

fn sent(sizes: &[usize]) -> Vec<Bytes> {
    sizes
        .iter()
        .enumerate()
        .map(|(seq, &len)| body(seq as u64, len))
        .collect()
}

/// Where each frame's header begins, and the end of the stream.
fn starts(sizes: &[usize]) -> (Vec<u64>, u64) {
    let mut at = 0;
    let starts = sizes
        .iter()
        .map(|&len| {
            let start = at;
            at += 4 + len as u64;
            start
        })
        .collect();
    (starts, at)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn any_split_and_stalls_below_the_timeouts_deliver_every_frame_in_order(
        sizes in vec(8usize..3000, 1..30),
        splits in vec(any::<Index>(), 0..20),
        stalls in vec((any::<Index>(), 1u64..1000), 0..6),
        capacity in 64usize..65536,
    ) {
        let (_, total) = starts(&sizes);
        let mut schedule = Schedule::new().capacity(capacity);
        for at in &splits {
            schedule = schedule.split(Dir::Up, at.index(total as usize) as u64);
        }
        let mut stalled = Duration::ZERO;
        for (at, ms) in &stalls {
            let d = Duration::from_millis(*ms);
            schedule = schedule.stall(Dir::Up, at.index(total as usize) as u64, d);
            stalled += d;
        }
        let bodies = sent(&sizes);
        let (report, at, seen) = paused(async {
            let clock = Clock::start();
            let c = consumer_settings()
                .idle_timeout(Some(TIMEOUT))
                .frame_timeout(Some(TIMEOUT));
            let p = producer_settings().stall_timeout(Some(TIMEOUT));
            let Pair { producer, consumer, .. } = pair(p, c, &schedule);
            let recorder = Recorder::new(clock);
            let serving = tokio::spawn(consumer.serve_with(Raw, recorder.clone()));
            let report = producer.send_raw(at_once(bodies.clone(), false)).await;
            let at = clock.now();
            serving.await.unwrap();
            (report, at, recorder.seen())
        });
        let report = report.map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert!(report.confirmed);
        prop_assert_eq!(at, stalled, "confirmed when the last stall ended");
        prop_assert_eq!(seen.len(), bodies.len());
        for (i, (seen, body)) in seen.iter().zip(&bodies).enumerate() {
            prop_assert_eq!(seen.frame, i as u64);
            prop_assert_eq!(&seen.body, body);
        }
    }

    #[test]
    fn a_stall_over_a_consumer_timeout_ends_the_connection_exactly_when_specified(
        sizes in vec(8usize..2000, 1..20),
        at in any::<Index>(),
    ) {
        let (starts, total) = starts(&sizes);
        let k = at.index(total as usize) as u64;
        // At a boundary the idle deadline runs; inside a frame (its header included) the frame's.
        let (code, deadline, awaited) = match starts.binary_search(&k) {
            Ok(j) => ("idle_timeout", IDLE, j),
            Err(j) => ("frame_timeout", FRAME, j - 1),
        };
        let schedule = Schedule::new().stall(Dir::Up, k, Duration::from_secs(1000));
        let bodies = sent(&sizes);
        let (result, at, seqs) = paused(async {
            let clock = Clock::start();
            let c = consumer_settings().idle_timeout(Some(IDLE)).frame_timeout(Some(FRAME));
            let Pair { producer, consumer, .. } = pair(producer_settings(), c, &schedule);
            let recorder = Recorder::new(clock);
            tokio::spawn(consumer.serve_with(Raw, recorder.clone()));
            let result = producer.send_raw(at_once(bodies, false)).await;
            (result, clock.now(), recorder.seqs())
        });
        prop_assert_eq!(at, deadline);
        match result {
            Err(Error::Rejected { notice, .. }) => {
                prop_assert_eq!(
                    (notice.error.as_str(), notice.frame, notice.offset),
                    (code, awaited as u64, starts[awaited])
                );
            }
            other => prop_assert!(false, "expected Rejected, got {:?}", other),
        }
        prop_assert_eq!(seqs, (0..awaited as u64).collect::<Vec<_>>());
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn a_consumer_that_stops_reading_stalls_the_producer_exactly_stall_timeout_after_progress(
        size in 8usize..3000,
        capacity in 256usize..8192,
        extra in 1usize..20_000,
        read_at in 0u64..3000,
    ) {
        // Before the stall timeout (else the producer has already stalled), more than the pipes
        // and the pumps can hold (2 pipes and 6 pieces of at most `capacity`), so the producer
        // writes while the consumer reads.
        let read = 8 * capacity + extra;
        let read_at = Duration::from_millis(read_at);
        let (result, at, read_after) = paused(async {
            let clock = Clock::start();
            let p = producer_settings().stall_timeout(Some(STALL));
            let (producer, mut peer, _link) = raw_consumer(p, &Schedule::new().capacity(capacity));
            let (failed, told) = tokio::sync::oneshot::channel::<()>();
            let reader = tokio::spawn(async move {
                tokio::time::sleep(read_at).await;
                peer.read_exact(read).await.unwrap();
                told.await.unwrap();
                peer.read_to_end().await.bytes.len()
            });
            let endless = futures::stream::iter((0u64..).map(move |seq| body(seq, size)));
            let result = producer.send_raw(endless).await;
            let at = clock.now();
            failed.send(()).unwrap();
            (result, at, reader.await.unwrap())
        });
        prop_assert_eq!(at, read_at + STALL + REPLY_GRACE);
        match result {
            Err(Error::Stalled { waited, frames_written, bytes_written, .. }) => {
                prop_assert_eq!(waited, STALL);
                prop_assert_eq!(bytes_written, (read + read_after) as u64);
                prop_assert_eq!(frames_written, bytes_written / (4 + size as u64));
            }
            other => prop_assert!(false, "expected Stalled, got {:?}", other),
        }
    }
}
