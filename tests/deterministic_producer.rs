//! The producer's deadlines, replies and ends on the deterministic harness (`tests/harness`): a
//! framepipe producer against a raw peer (or a real consumer) in memory, on a paused clock, with
//! every deadline asserted to the nanosecond (SPEC §6.2, §6.3, §6.4, §8.4).

mod harness;

use std::io;
use std::time::Duration;

use bytes::Bytes;
use framepipe::codec::Notice;
use framepipe::producer::Error;
use framepipe::proto::producer::REPLY_GRACE;
use futures::{Stream, StreamExt};
use harness::{
    at_once, bodies, body, consumer_settings, now_all, one_at_a_time, paced, pair,
    producer_settings, raw_consumer, send_then_wait, Clock, Cut, Dir, Pair, Recorder, Schedule,
};
use tokio::sync::oneshot;

const STALL: Duration = Duration::from_secs(5);
/// A frame of [`endless`] on the wire.
const WIRE: u64 = 1004;

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn ms(ms: u64) -> Duration {
    Duration::from_millis(ms)
}

/// Frames of 1,000 bytes for ever: the producer always has more to write.
fn endless() -> impl Stream<Item = Bytes> + Send + 'static {
    futures::stream::iter((0u64..).map(|seq| body(seq, 1000)))
}

/// (frames_written, bytes_written, never_sent) of an error that ended a connection.
fn counts(err: &Error) -> (u64, u64, u64) {
    let bytes = match err {
        Error::PeerClosed { bytes_written, .. } | Error::Stalled { bytes_written, .. } => {
            *bytes_written
        }
        _ => 0,
    };
    (err.frames_written(), bytes, err.never_sent())
}

#[tokio::test(start_paused = true)]
async fn a_consumer_that_stops_reading_ends_the_producer_with_stalled_after_the_reply_grace() {
    // SPEC §6.2.2, §6.2.4: the consumer reads 100 kB at 3 s (more than the pipes hold, so the
    // producer writes then) and never again; stall_timeout later, and the reply grace after that,
    // the producer fails with Stalled, waited == stall_timeout.
    const READ: usize = 100_000;
    let clock = Clock::start();
    let p = producer_settings().stall_timeout(Some(STALL));
    let (producer, mut peer, _link) = raw_consumer(p, &Schedule::new().capacity(4096));
    let (failed, told) = oneshot::channel::<()>();
    let reader = tokio::spawn(async move {
        tokio::time::sleep(secs(3)).await;
        let first = peer.read_exact(READ).await.unwrap();
        told.await.unwrap();
        let rest = peer.read_to_end().await;
        (first, rest)
    });
    let err = producer.send_raw(endless()).await.expect_err("stalled");
    assert_eq!(clock.now(), secs(3) + STALL + REPLY_GRACE, "{err}");
    match &err {
        Error::Stalled { waited, .. } => assert_eq!(*waited, STALL),
        other => panic!("expected Stalled, got {other:?}"),
    }
    failed.send(()).unwrap();
    let (first, rest) = reader.await.unwrap();
    assert_eq!(
        first[4..12],
        0u64.to_be_bytes(),
        "the stream from its first frame"
    );
    let (frames, bytes, never_sent) = counts(&err);
    // What the producer counts as written is exactly what the consumer can read.
    assert_eq!(bytes, (READ + rest.bytes.len()) as u64);
    assert_eq!(frames, bytes / WIRE);
    assert!(never_sent > 0, "frames waited in the queue: {err}");
    assert!(err.is_retryable());
}

#[tokio::test(start_paused = true)]
async fn an_idle_source_is_not_a_stall() {
    // SPEC §6.2.2: the stall clock runs only while bytes wait; pauses of 2.5 s (5 stall timeouts)
    // between frames are no stall, and the close is confirmed once the consumer has handled all 3.
    let clock = Clock::start();
    let p = producer_settings().stall_timeout(Some(ms(500)));
    let Pair {
        producer, consumer, ..
    } = pair(p, consumer_settings(), &Schedule::new());
    let recorder = Recorder::new(clock);
    let serving = tokio::spawn(consumer.serve_with(framepipe::consumer::Raw, recorder.clone()));
    let b = bodies(3, 10);
    let source = paced(
        vec![
            (Duration::ZERO, b[0].clone()),
            (ms(2500), b[1].clone()),
            (ms(2500), b[2].clone()),
        ],
        false,
    );
    let report = producer.send_raw(source).await.expect("no stall");
    assert!(report.confirmed);
    assert_eq!(clock.now(), secs(5));
    assert_eq!(report.snapshot.frames_written, 3);
    assert_eq!(recorder.seqs(), [0, 1, 2]);
    assert_eq!(serving.await.unwrap().connections[0].bytes, 3 * 14);
}

#[tokio::test(start_paused = true)]
async fn a_consumer_that_never_closes_leaves_the_report_unconfirmed_at_close_timeout() {
    // SPEC §6.2.3: every frame is read, FIN arrives, and the consumer holds the connection open.
    let clock = Clock::start();
    let p = producer_settings().close_timeout(secs(7));
    let (producer, mut peer, _link) = raw_consumer(p, &Schedule::new());
    let reader = tokio::spawn(async move {
        let got = peer.read_to_end().await;
        (got, peer) // kept open
    });
    let report = producer
        .send_raw(at_once(bodies(3, 100), false))
        .await
        .unwrap();
    assert!(!report.confirmed);
    assert_eq!(clock.now(), secs(7));
    assert_eq!(report.snapshot.frames_written, 3);
    let (got, _peer) = reader.await.unwrap();
    assert_eq!(
        (got.bytes.len(), clock.at(got.at)),
        (3 * 104, Duration::ZERO)
    );
}

#[tokio::test(start_paused = true)]
async fn a_consumer_that_closes_within_close_timeout_confirms_when_it_closes() {
    let clock = Clock::start();
    let p = producer_settings().close_timeout(secs(7));
    let (producer, mut peer, _link) = raw_consumer(p, &Schedule::new());
    tokio::spawn(async move {
        peer.read_to_end().await;
        tokio::time::sleep(secs(3)).await;
    });
    let report = producer
        .send_raw(at_once(bodies(3, 100), false))
        .await
        .unwrap();
    assert!(report.confirmed);
    assert_eq!(clock.now(), secs(3));
}

/// A consumer that reads two frames, answers with a notice and closes; the notice reaches the
/// producer `delay` later, while the producer's next write fails at once.
async fn notice_after_a_write_error(delay: Duration) -> (Error, Duration) {
    let clock = Clock::start();
    let slow_replies = Schedule::new().delay(Dir::Down, 0, delay);
    let (producer, mut peer, _link) = raw_consumer(producer_settings(), &slow_replies);
    tokio::spawn(async move {
        peer.read_exact(2 * WIRE as usize).await.unwrap();
        let notice = Notice::new("handler_failed", 2, 2 * WIRE, "frame 2 failed");
        peer.send(&notice.to_frame()).await.unwrap();
    });
    let err = producer.send_raw(endless()).await.expect_err("failed");
    (err, clock.now())
}

#[tokio::test(start_paused = true)]
async fn a_notice_within_the_reply_grace_after_a_write_error_says_why() {
    // SPEC §6.2.4: the write fails at 0 s; the notice, 150 ms later, names the reason.
    let (err, at) = notice_after_a_write_error(ms(150)).await;
    assert_eq!(at, ms(150));
    match &err {
        Error::Rejected { notice, .. } => {
            assert_eq!((notice.error.as_str(), notice.frame), ("handler_failed", 2))
        }
        other => panic!("expected Rejected, got {other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn without_a_notice_within_the_reply_grace_the_write_error_is_reported() {
    // SPEC §6.2.4: the notice would come 250 ms after the write error, past the 200 ms grace.
    let (err, at) = notice_after_a_write_error(ms(250)).await;
    assert_eq!(at, REPLY_GRACE);
    match &err {
        Error::PeerClosed { source, .. } => {
            assert_eq!(source.kind(), io::ErrorKind::BrokenPipe, "{err}")
        }
        other => panic!("expected PeerClosed, got {other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn a_consumer_closing_its_end_mid_stream_fails_the_producer_at_once() {
    // SPEC §6.2.6: the consumer reads the 5 frames written, and closes its end at 1 s while the
    // producer could still send: PeerClosed (UnexpectedEof) at 1 s, 5 written, none unsent.
    let clock = Clock::start();
    let p = one_at_a_time(producer_settings());
    let (producer, mut peer, _link) = raw_consumer(p, &Schedule::new());
    let consumer = tokio::spawn(async move {
        peer.read_exact(5 * 104).await.unwrap();
        tokio::time::sleep(secs(1)).await;
        peer.finish().await.unwrap();
        peer.read_to_end().await
    });
    let ended = send_then_wait(producer.raw_sender(), now_all(bodies(5, 100))).await;
    assert_eq!(clock.at(ended.at), secs(1));
    let err = ended.outcome.expect_err("the consumer closed");
    match &err {
        Error::PeerClosed { source, .. } => {
            assert_eq!(source.kind(), io::ErrorKind::UnexpectedEof)
        }
        other => panic!("expected PeerClosed, got {other:?}"),
    }
    assert_eq!(counts(&err), (5, 5 * 104, 0));
    assert!(consumer.await.unwrap().bytes.is_empty(), "nothing after");
}

#[tokio::test(start_paused = true)]
async fn frames_that_could_not_be_written_when_the_consumer_closed_are_never_sent() {
    // SPEC §6.2.6, §6.4: pipes of 1 KiB hold a few of the 10 frames; the consumer reads nothing
    // and closes its end at 1 s. Written: exactly what it can still read; the rest never sent.
    let clock = Clock::start();
    let p = one_at_a_time(producer_settings());
    let (producer, mut peer, _link) = raw_consumer(p, &Schedule::new().capacity(1024));
    let (failed, told) = oneshot::channel::<()>();
    let consumer = tokio::spawn(async move {
        tokio::time::sleep(secs(1)).await;
        peer.finish().await.unwrap();
        told.await.unwrap();
        peer.read_to_end().await
    });
    let ended = send_then_wait(producer.raw_sender(), now_all(bodies(10, 1000))).await;
    assert_eq!(clock.at(ended.at), secs(1));
    let err = ended.outcome.expect_err("the consumer closed");
    assert!(matches!(err, Error::PeerClosed { .. }), "{err:?}");
    failed.send(()).unwrap();
    let got = consumer.await.unwrap();
    let (frames, bytes, never_sent) = counts(&err);
    assert_eq!(bytes, got.bytes.len() as u64);
    assert_eq!(frames, bytes / WIRE);
    assert_eq!(never_sent, 10 - frames);
    assert!(never_sent > 0, "{err}");
}

#[tokio::test(start_paused = true)]
async fn close_within_resets_at_its_deadline_and_counts_the_frames_never_sent() {
    // SPEC §6.2.5: the consumer never reads; the pipes hold 2 KiB of the 10 kB accepted.
    let clock = Clock::start();
    let (producer, mut peer, _link) =
        raw_consumer(producer_settings(), &Schedule::new().capacity(1024));
    let sender = producer.raw_sender();
    for b in bodies(10, 1000) {
        sender.send(b).await.unwrap();
    }
    let err = sender.close_within(secs(3)).await.expect_err("deadline");
    assert_eq!(clock.now(), secs(3));
    match &err {
        Error::Deadline { after, .. } => assert_eq!(*after, secs(3)),
        other => panic!("expected Deadline, got {other:?}"),
    }
    let got = peer.read_to_end().await;
    let frames = err.frames_written();
    assert_eq!(frames, got.bytes.len() as u64 / WIRE);
    assert_eq!(err.never_sent(), 10 - frames);
    assert!(err.never_sent() > 0 && err.is_retryable(), "{err}");
}

#[tokio::test(start_paused = true)]
async fn close_within_returns_an_unconfirmed_report_when_only_the_close_is_awaited() {
    // SPEC §6.2.5: everything is written at once; the consumer reads it all and never closes.
    let clock = Clock::start();
    let (producer, mut peer, _link) = raw_consumer(producer_settings(), &Schedule::new());
    let reader = tokio::spawn(async move { (peer.read_to_end().await, peer) });
    let sender = producer.raw_sender();
    for b in bodies(3, 100) {
        sender.send(b).await.unwrap();
    }
    let report = sender.close_within(secs(3)).await.expect("a report");
    assert!(!report.confirmed);
    assert_eq!(clock.now(), secs(3));
    assert_eq!(report.snapshot.frames_written, 3);
    assert_eq!(reader.await.unwrap().0.bytes.len(), 3 * 104);
}

#[tokio::test(start_paused = true)]
async fn a_notice_with_an_unknown_code_is_still_a_rejection() {
    // SPEC §6.3.3: a newer consumer's code; the notice is read by the lenient rule.
    let notice = Notice::new(
        "connection_limit",
        0,
        0,
        "this consumer serves at most 1 connection at a time; try again later",
    );
    let (producer, mut peer, _link) = raw_consumer(producer_settings(), &Schedule::new());
    let wire = notice.to_frame();
    tokio::spawn(async move {
        peer.send(&wire).await.unwrap();
        peer.finish().await.unwrap();
        peer.read_to_end().await // drains until the producer closes (SPEC §6.3.2)
    });
    let clock = Clock::start();
    let err = producer.send_raw(endless()).await.expect_err("refused");
    assert_eq!(clock.now(), Duration::ZERO);
    match &err {
        Error::Rejected { notice: got, .. } => assert_eq!(got, &notice),
        other => panic!("expected Rejected, got {other:?}"),
    }
    assert!(err.to_string().contains("connection_limit"), "{err}");
}

/// The producer's error when the link is cut `how` in the middle of frame 1.
async fn cut_mid_frame(how: Cut) -> (Error, Duration, harness::Received) {
    let clock = Clock::start();
    let cut = Schedule::new().cut(Dir::Up, WIRE + 500, how);
    let (producer, mut peer, _link) = raw_consumer(producer_settings(), &cut);
    let reader = tokio::spawn(async move { peer.read_to_end().await });
    let err = producer.send_raw(endless()).await.expect_err("cut");
    (err, clock.now(), reader.await.unwrap())
}

#[tokio::test(start_paused = true)]
async fn a_connection_reset_mid_frame_ends_the_producer_with_peer_closed_at_once() {
    // SPEC §6.4: the consumer's side sees 1,504 bytes, then the reset.
    let (err, at, got) = cut_mid_frame(Cut::Reset).await;
    assert_eq!(at, Duration::ZERO);
    match &err {
        Error::PeerClosed { source, .. } => {
            assert_eq!(source.kind(), io::ErrorKind::ConnectionReset)
        }
        other => panic!("expected PeerClosed, got {other:?}"),
    }
    assert!(err.frames_written() >= 1, "{err}");
    assert_eq!(got.bytes.len() as u64, WIRE + 500);
    assert_eq!(got.end.unwrap_err().kind(), io::ErrorKind::ConnectionReset);
}

#[tokio::test(start_paused = true)]
async fn a_connection_closed_mid_frame_ends_the_producer_with_peer_closed_at_once() {
    let (err, at, got) = cut_mid_frame(Cut::Close).await;
    assert_eq!(at, Duration::ZERO);
    assert!(matches!(err, Error::PeerClosed { .. }), "{err:?}");
    assert_eq!(got.bytes.len() as u64, WIRE + 500);
    assert!(got.end.is_ok(), "end of stream");
}

/// SPEC §6.2.6: a producer that "could still send" learns at once that the connection ended. A
/// stream source waiting for its next item (a channel, a timer) is such a producer; `send_raw`
/// should return as soon as the connection has ended.
#[tokio::test(start_paused = true)]
async fn a_stream_source_waiting_for_its_next_item_learns_the_connection_ended_at_once() {
    let notice = Notice::new("shutting_down", 1, 104, "the consumer is shutting down");
    let (producer, mut peer, _link) = raw_consumer(producer_settings(), &Schedule::new());
    tokio::spawn(async move {
        peer.read_exact(104).await.unwrap();
        peer.send(&notice.to_frame()).await.unwrap();
        peer.finish().await.unwrap();
        peer.read_to_end().await
    });
    let clock = Clock::start();
    let hour = secs(3600);
    let sent = tokio::time::timeout(hour, producer.send_raw(at_once(bodies(1, 100), true))).await;
    assert_eq!(
        clock.now(),
        Duration::ZERO,
        "returned only after {:?}",
        clock.now()
    );
    let err = sent.unwrap().expect_err("rejected");
    assert_eq!(err.code(), "shutting_down");
}

#[tokio::test(start_paused = true)]
async fn a_connection_failing_between_two_samples_still_reports_its_peak_in_flight() {
    // SPEC §5.3.5: the sampler ticks once an hour here; the consumer reads nothing and closes its
    // end at 1 s, with most of the 100 frames still queued. The peak in flight counts them.
    let p = producer_settings().sample_interval(Duration::from_secs(3600));
    let (producer, mut peer, _link) = raw_consumer(p, &Schedule::new().capacity(1024));
    let stats = producer.stats();
    let consumer = tokio::spawn(async move {
        tokio::time::sleep(secs(1)).await;
        peer.finish().await.unwrap();
    });
    // The frames come after the sampler's first tick (at once, on its start).
    let later = futures::stream::once(tokio::time::sleep(ms(10)))
        .flat_map(|()| futures::stream::iter(bodies(100, 1000)));
    let err = producer
        .send_raw(later)
        .await
        .expect_err("the consumer closed");
    consumer.await.unwrap();
    assert!(err.never_sent() >= 80, "{err}");
    let snap = stats.snapshot();
    assert_eq!(
        snap.flow.in_flight_bytes, 0,
        "nothing is held after the end"
    );
    // What was accepted and not written was held when it ended (the socket is unprobed here).
    let held = snap.bytes_encoded - snap.bytes_written;
    assert!(held > 80 * WIRE, "{snap:?}");
    assert!(
        snap.flow.peak_in_flight_bytes as u64 >= held,
        "peak in flight {} B, {held} B accepted and not written",
        snap.flow.peak_in_flight_bytes
    );
}
