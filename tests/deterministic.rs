//! The consumer's deadlines, notices, shutdown and handler errors on the deterministic harness
//! (`tests/harness`): a producer and a consumer joined in memory on a paused clock, so every
//! deadline is asserted to the nanosecond and the file runs in milliseconds (SPEC §7.6, §7.7, §8).
//! The producer's side is in `deterministic_producer.rs`, the properties in `deterministic_props.rs`.

mod harness;

use std::time::Duration;

use framepipe::consumer::{self, OnHandlerError, Raw};
use framepipe::flow::queue::QueueLimits;
use framepipe::producer::Error;
use futures::StreamExt;
use harness::{
    at_once, bodies, body, consumer_settings, frame, now_all, one_at_a_time, paced, pair,
    producer_settings, raw_producer, send_then_wait, Clock, Dir, Pair, Recorder, Schedule,
};

const IDLE: Duration = Duration::from_secs(10);
const FRAME: Duration = Duration::from_secs(8);
const ZERO: Duration = Duration::ZERO;

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn ms(ms: u64) -> Duration {
    Duration::from_millis(ms)
}

/// The notice of a `Rejected` error, as (code, frame, offset), and the error's counts.
fn rejected(err: &Error) -> ((&str, u64, u64), (u64, u64)) {
    match err {
        Error::Rejected {
            notice,
            frames_written,
            never_sent,
            ..
        } => (
            (notice.error.as_str(), notice.frame, notice.offset),
            (*frames_written, *never_sent),
        ),
        other => panic!("expected Error::Rejected, got {other:?}: {other}"),
    }
}

#[tokio::test(start_paused = true)]
async fn idle_timeout_fires_exactly_idle_timeout_after_the_last_frame_handed_on() {
    // SPEC §7.6.1, §8.2: the idle clock restarts with each frame handed on; the notice names the
    // first frame not read, so the producer knows the 4 before it were handled (SPEC §6.4).
    let clock = Clock::start();
    let c = consumer_settings().idle_timeout(Some(IDLE));
    let Pair {
        producer, consumer, ..
    } = pair(one_at_a_time(producer_settings()), c, &Schedule::new());
    let recorder = Recorder::new(clock);
    let serving = tokio::spawn(consumer.serve_with(Raw, recorder.clone()));
    let b = bodies(4, 100);
    let items = vec![
        (ZERO, b[0].clone()),
        (ZERO, b[1].clone()),
        (ZERO, b[2].clone()),
        (secs(4), b[3].clone()),
    ];
    let ended = send_then_wait(producer.raw_sender(), items).await;
    assert_eq!(clock.at(ended.at), secs(4) + IDLE);
    let err = ended.outcome.expect_err("closed when idle");
    assert_eq!(rejected(&err), (("idle_timeout", 4, 4 * 104), (4, 0)));
    assert!(err.is_retryable());
    let report = serving.await.unwrap();
    let at: Vec<Duration> = recorder.seen().iter().map(|s| s.at).collect();
    assert_eq!(at, [ZERO, ZERO, ZERO, secs(4)]);
    assert_eq!(recorder.seqs(), [0, 1, 2, 3]);
    let conn = &report.connections[0];
    assert_eq!(conn.frames, 4);
    let why = conn.error.as_deref().unwrap();
    assert!(why.contains("closed after 10 s without data"), "{why}");
}

#[tokio::test(start_paused = true)]
async fn time_spent_with_the_queue_full_is_not_idle_time() {
    // SPEC §7.6.1: while the queue is full the reader does not read, and that is not idleness.
    // One frame fits the queue; the handler keeps frame 0 for 25 s, 2.5 idle timeouts.
    let clock = Clock::start();
    let c = consumer_settings()
        .idle_timeout(Some(IDLE))
        .queue_limits(QueueLimits::default().max_items(1));
    let Pair {
        producer, consumer, ..
    } = pair(one_at_a_time(producer_settings()), c, &Schedule::new());
    let recorder = Recorder::new(clock).hold_frame(0, secs(25));
    let serving = tokio::spawn(consumer.serve_with(Raw, recorder.clone()));
    let ended = send_then_wait(producer.raw_sender(), now_all(bodies(5, 100))).await;
    // The last frame was handed on when the handler let go of frame 0, at 25 s.
    assert_eq!(clock.at(ended.at), secs(25) + IDLE);
    let err = ended.outcome.expect_err("closed when idle");
    assert_eq!(rejected(&err), (("idle_timeout", 5, 5 * 104), (5, 0)));
    let at: Vec<Duration> = recorder.seen().iter().map(|s| s.at).collect();
    assert_eq!(at, [ZERO, secs(25), secs(25), secs(25), secs(25)]);
    assert_eq!(serving.await.unwrap().connections[0].frames, 5);
}

#[tokio::test(start_paused = true)]
async fn frame_timeout_fires_exactly_frame_timeout_after_the_frame_began() {
    // SPEC §7.6.2: frame 1's first half arrives at 0 s and the link stalls for 100 s; the producer
    // is told at 8 s which frame, and that frame 0 was handled.
    let clock = Clock::start();
    let c = consumer_settings().frame_timeout(Some(FRAME));
    let stall = Schedule::new().stall(Dir::Up, 104 + 50, secs(100));
    let Pair {
        producer, consumer, ..
    } = pair(producer_settings(), c, &stall);
    let recorder = Recorder::new(clock);
    let serving = tokio::spawn(consumer.serve_with(Raw, recorder.clone()));
    let err = producer
        .send_raw(at_once(bodies(3, 100), false))
        .await
        .expect_err("the frame deadline closed the connection");
    assert_eq!(clock.now(), FRAME, "{err}");
    assert_eq!(rejected(&err), (("frame_timeout", 1, 104), (3, 0)));
    assert_eq!(recorder.seqs(), [0]);
    let report = serving.await.unwrap();
    let why = report.connections[0].error.clone().unwrap();
    assert!(why.contains("frame 1 was still incomplete 8 s"), "{why}");
    assert!(why.contains("(46 bytes buffered, 54 more due"), "{why}");
}

#[tokio::test(start_paused = true)]
async fn the_frame_deadline_does_not_count_time_spent_waiting_for_memory() {
    // SPEC §7.6.2, §7.6.4: the memory limit holds one frame; frame 1's header arrives while the
    // application holds frame 0 for 5 s, so its reservation waits 5 s, and its deadline moves 5 s.
    let clock = Clock::start();
    let c = consumer_settings()
        .max_frame_length(1000)
        .memory_limit(1004 + 8)
        .frame_timeout(Some(FRAME))
        .idle_timeout(None);
    let (mut consumer, mut peer, _link) = raw_producer(c, &Schedule::new());
    let mut wire = frame(&body(0, 1000));
    wire.extend_from_slice(&frame(&body(1, 1000))[..4 + 6]);
    peer.send(&wire).await.unwrap();
    let mut conn = consumer.accept(Raw).await.unwrap();
    let first = conn.next().await.unwrap().unwrap();
    assert_eq!((first.frame, clock.now()), (0, ZERO));
    tokio::time::sleep(secs(5)).await;
    drop(first);
    let err = conn.next().await.unwrap().expect_err("the frame deadline");
    assert_eq!(clock.now(), secs(5) + FRAME, "{err}");
    match err {
        consumer::Error::FrameTimeout {
            frame,
            buffered,
            missing,
            waited,
            ..
        } => assert_eq!((frame, buffered, missing, waited), (1, 6, 994, FRAME)),
        other => panic!("expected FrameTimeout, got {other:?}"),
    }
    assert!(conn.next().await.is_none(), "the error is the last item");
    let got = peer.read_to_end().await;
    let notice = got.notice().expect("a notice, then FIN");
    assert_eq!(
        (notice.error.as_str(), notice.frame, notice.offset),
        ("frame_timeout", 1, 1004)
    );
    assert_eq!(clock.at(got.at), secs(5) + FRAME);
}

#[tokio::test(start_paused = true)]
async fn a_peer_that_connects_and_never_sends_is_closed_exactly_at_idle_timeout() {
    // SPEC §7.6.1: nothing at all arrives; the notice names frame 0.
    let clock = Clock::start();
    let c = consumer_settings().idle_timeout(Some(IDLE));
    let (consumer, mut peer, _link) = raw_producer(c, &Schedule::new());
    let serving = tokio::spawn(consumer.serve_with(Raw, Recorder::new(clock)));
    let got = peer.read_to_end().await;
    assert_eq!(clock.at(got.at), IDLE);
    let notice = got.notice().expect("one notice, then FIN");
    assert_eq!(
        (notice.error.as_str(), notice.frame, notice.offset),
        ("idle_timeout", 0, 0)
    );
    drop(peer);
    let conn = &serving.await.unwrap().connections[0];
    assert_eq!(conn.frames, 0);
    assert!(conn.error.as_deref().unwrap().contains("(idle_timeout;"));
}

#[tokio::test(start_paused = true)]
async fn a_peer_trickling_a_byte_every_300_ms_hits_the_frame_deadline_exactly() {
    // SPEC §7.6.2: progress does not restart the frame's clock; 26 bytes of 1,000 by 8 s.
    let clock = Clock::start();
    let c = consumer_settings().frame_timeout(Some(FRAME));
    let (mut consumer, mut peer, _link) = raw_producer(c, &Schedule::new());
    let trickle = tokio::spawn(async move {
        peer.send(&1000u32.to_be_bytes()).await.unwrap();
        let mut sent = 0;
        while clock.now() < secs(20) {
            tokio::time::sleep(ms(300)).await;
            if peer.send(b" ").await.is_err() {
                break;
            }
            sent += 1;
        }
        sent
    });
    let mut conn = consumer.accept(Raw).await.unwrap();
    let err = conn.next().await.unwrap().expect_err("the frame deadline");
    assert_eq!(clock.now(), FRAME);
    match err {
        consumer::Error::FrameTimeout {
            frame,
            buffered,
            missing,
            waited,
            ..
        } => assert_eq!((frame, buffered, missing, waited), (0, 26, 974, FRAME)),
        other => panic!("expected FrameTimeout, got {other:?}"),
    }
    drop(conn);
    assert!(trickle.await.unwrap() >= 26);
}

#[tokio::test(start_paused = true)]
async fn a_peer_that_never_closes_is_cut_exactly_drain_timeout_after_the_fin() {
    // SPEC §6.3.2: after the notice and FIN the consumer discards input (here 1 KiB every 300 ms)
    // until the peer closes or drain_timeout passes; this peer never closes.
    let clock = Clock::start();
    let drain = secs(2);
    let c = consumer_settings()
        .max_frame_length(1000)
        .drain_timeout(drain);
    let (consumer, mut peer, link) = raw_producer(c, &Schedule::new());
    let recorder = Recorder::new(clock);
    let serving = tokio::spawn(consumer.serve_with(Raw, recorder.clone()));
    let mut wire = frame(&body(0, 100));
    wire.extend_from_slice(&2000u32.to_be_bytes());
    peer.send(&wire).await.unwrap();
    let got = peer.read_to_end().await;
    assert_eq!(clock.at(got.at), ZERO, "notice and FIN at once");
    let notice = got.notice().expect("one notice");
    assert_eq!(
        (notice.error.as_str(), notice.frame, notice.offset),
        ("frame_too_large", 1, 104)
    );
    let mut sent_before_the_cut = 0;
    while clock.now() < secs(3) {
        tokio::time::sleep(ms(300)).await;
        if peer.send(&[0xAB; 1024]).await.is_ok() && clock.now() < drain {
            sent_before_the_cut += 1024;
        }
    }
    let report = serving.await.unwrap();
    let closed = link.dropped_at(Dir::Down).expect("the consumer let go");
    assert_eq!(clock.at(closed), drain);
    assert_eq!(sent_before_the_cut, 6 * 1024);
    assert!(link.passed(Dir::Up) >= 104 + 4 + 6 * 1024);
    assert_eq!(recorder.seqs(), [0]);
    assert_eq!(report.connections[0].frames, 1);
}

#[tokio::test(start_paused = true)]
async fn a_frame_over_max_frame_length_is_refused_after_the_frames_before_it_are_handled() {
    // SPEC §3.3, §6.3.1: frame 5 is over the consumer's limit; the notice comes once the handler
    // has finished frames 0-4 (1 s each), naming frame 5 and its offset.
    let clock = Clock::start();
    let c = consumer_settings().max_frame_length(1000);
    let Pair {
        producer, consumer, ..
    } = pair(producer_settings(), c, &Schedule::new());
    let recorder = Recorder::new(clock).hold_each(secs(1));
    let serving = tokio::spawn(consumer.serve_with(Raw, recorder.clone()));
    let mut sent = bodies(5, 100);
    sent.push(body(5, 5000));
    sent.extend((6..9).map(|seq| body(seq, 100)));
    let err = producer
        .send_raw(at_once(sent, false))
        .await
        .expect_err("refused");
    assert_eq!(clock.now(), secs(5), "{err}");
    // Every frame fit the pipes, so all 9 were written; none was never sent.
    assert_eq!(rejected(&err), (("frame_too_large", 5, 5 * 104), (9, 0)));
    assert!(!err.is_retryable());
    assert_eq!(recorder.seqs(), [0, 1, 2, 3, 4]);
    assert_eq!(recorder.handled(), [0, 1, 2, 3, 4]);
    let report = serving.await.unwrap();
    let conn = &report.connections[0];
    assert_eq!((conn.frames, conn.errors, conn.frames_read), (5, 1, 6));
    assert!(conn
        .error
        .as_deref()
        .unwrap()
        .contains("announces 5000 bytes"));
}

#[tokio::test(start_paused = true)]
async fn graceful_shutdown_hands_every_frame_read_to_the_handler() {
    // SPEC §8.5.1: a frame every 10 ms, handled in 30 ms each, so 133 frames wait when the shutdown
    // comes at 2.005 s, in the middle of frame 200 (its second half is held back until 2.020 s).
    // Frame 200 is completed, nothing after it is read, every frame read is handled, in order,
    // and then the producer is told: `shutting_down`, frame 201.
    let clock = Clock::start();
    let wire = 104u64;
    let stall = Schedule::new().stall(Dir::Up, 200 * wire + 52, ms(20));
    let Pair {
        producer, consumer, ..
    } = pair(producer_settings(), consumer_settings(), &stall);
    let shutdown = consumer.shutdown_handle();
    let recorder = Recorder::new(clock).hold_each(ms(30));
    let serving = tokio::spawn(consumer.serve_with(Raw, recorder.clone()));
    let source = paced(
        (0..400)
            .map(|seq| (if seq == 0 { ZERO } else { ms(10) }, body(seq, 100)))
            .collect(),
        false,
    );
    tokio::spawn(async move {
        tokio::time::sleep(ms(2005)).await;
        assert!(!shutdown.shutdown(), "the first call drains");
    });
    let err = producer.send_raw(source).await.expect_err("shutting down");
    assert_eq!(clock.now(), ms(201 * 30), "the handler finished frame 200");
    let ((code, next, offset), _) = rejected(&err);
    assert_eq!((code, next, offset), ("shutting_down", 201, 201 * wire));
    assert!(err.is_retryable());
    assert_eq!(recorder.seqs(), (0..201).collect::<Vec<_>>());
    assert_eq!(recorder.handled().len() as u64, next);
    let report = serving.await.unwrap();
    assert!(!report.shutdown.unwrap().forced);
    let conn = &report.connections[0];
    assert_eq!(
        (conn.frames, conn.frames_read, conn.unhandled),
        (201, 201, 0)
    );
    assert_eq!(report.snapshot.frames_unhandled, 0);
}

#[tokio::test(start_paused = true)]
async fn a_second_shutdown_forces_and_the_report_counts_the_unhandled_frames() {
    // SPEC §8.5.2: 10 frames read at once, 1 s each; the first shutdown at 0.5 s waits for them,
    // the second at 2.5 s drops the handler of frame 2 and counts frames 2-9 as unhandled.
    let clock = Clock::start();
    let (result, handled) = forced_shutdown(false).await;
    assert_eq!(clock.now(), ms(2500), "forced at once");
    let (report, ended) = result;
    assert!(report.shutdown.unwrap().forced);
    let conn = &report.connections[0];
    assert_eq!((conn.frames, conn.unhandled, conn.forced), (2, 8, true));
    assert_eq!(report.snapshot.frames_unhandled, 8);
    assert_eq!(handled, [0, 1]);
    // The producer's sender was open: not a confirmation. (Which error it gets is not settled:
    // see `a_forced_shutdown_never_tells_the_producer_that_unhandled_frames_were_handled`.)
    assert!(ended.is_err(), "{ended:?}");
}

/// Serves 10 frames of 1 s each; shuts down at 0.5 s and forces at 2.5 s. The producer's sender
/// stays open, or, if `finished`, it has closed (FIN sent) and waits for the consumer's close.
/// Returns the consumer's report, the producer's outcome and the frames handled.
async fn forced_shutdown(
    finished: bool,
) -> (
    (consumer::Report, Result<framepipe::producer::Report, Error>),
    Vec<u64>,
) {
    let Pair {
        producer, consumer, ..
    } = pair(
        one_at_a_time(producer_settings()),
        consumer_settings(),
        &Schedule::new(),
    );
    let shutdown = consumer.shutdown_handle();
    let recorder = Recorder::new(Clock::start()).hold_each(secs(1));
    let serving = tokio::spawn(consumer.serve_with(Raw, recorder.clone()));
    let sender = producer.raw_sender();
    let sending = tokio::spawn(async move {
        if finished {
            for b in bodies(10, 100) {
                sender.send(b).await.unwrap();
            }
            sender.close().await
        } else {
            send_then_wait(sender, now_all(bodies(10, 100)))
                .await
                .outcome
        }
    });
    tokio::time::sleep(ms(500)).await;
    assert!(!shutdown.shutdown(), "the first call drains");
    tokio::time::sleep(secs(2)).await;
    assert!(shutdown.shutdown(), "the second call forces");
    let report = serving.await.unwrap();
    let outcome = sending.await.unwrap();
    ((report, outcome), recorder.handled())
}

/// SPEC §6.2.3, §6.4, §8.5.2: a forced shutdown must not tell a producer that frames were handled
/// when they were not. It does, two ways: a producer that had finished reads the forced close as
/// the confirmation (`confirmed: true`, 2 of 10 handled); and a producer still sending may get a
/// `shutting_down` notice naming frame 10 (a race in the consumer's driver between the forced
/// phase and the application's `Done`). Repeated, since the second is a race.
#[tokio::test(start_paused = true)]
async fn a_forced_shutdown_never_tells_the_producer_that_unhandled_frames_were_handled() {
    for finished in [false, true] {
        for round in 0..50 {
            let ((_, outcome), handled) = forced_shutdown(finished).await;
            let case = format!("finished {finished}, round {round}: {handled:?} handled");
            match outcome {
                Ok(report) => assert!(!report.confirmed, "{case}"),
                Err(Error::Rejected { notice, .. }) => {
                    assert!(notice.frame <= handled.len() as u64, "{case}: {notice:?}")
                }
                Err(_) => {}
            }
        }
    }
}

/// SPEC §8.5.2, §8.1.2: `shutdown_timeout` forces the shutdown exactly that long after it began.
/// `serve` measures it with `std::time::Instant`, so on a paused clock it fires when real time says
/// (here at once, 100 virtual seconds after the start), not at 130 s.
#[tokio::test(start_paused = true)]
async fn a_graceful_shutdown_is_forced_exactly_shutdown_timeout_after_it_began() {
    let clock = Clock::start();
    let c = consumer_settings().shutdown_timeout(secs(30));
    let Pair {
        producer, consumer, ..
    } = pair(one_at_a_time(producer_settings()), c, &Schedule::new());
    let shutdown = consumer.shutdown_handle();
    let recorder = Recorder::new(clock).hold_frame(0, secs(1000));
    let serving = tokio::spawn(consumer.serve_with(Raw, recorder.clone()));
    tokio::spawn(send_then_wait(
        producer.raw_sender(),
        now_all(bodies(1, 100)),
    ));
    tokio::time::sleep(secs(100)).await;
    shutdown.shutdown();
    let report = serving.await.unwrap();
    assert_eq!(clock.now(), secs(130));
    assert!(report.shutdown.unwrap().forced);
}

#[tokio::test(start_paused = true)]
async fn a_failing_handler_under_close_names_the_frame_and_nothing_after_it_is_handled() {
    // SPEC §7.7.1: frames take 100 ms; frame 4 fails at 0.5 s. Frames 0-3 were handled, 5-9 read
    // and not handled; the producer's notice says frame 4.
    let clock = Clock::start();
    let Pair {
        producer, consumer, ..
    } = pair(
        one_at_a_time(producer_settings()),
        consumer_settings(),
        &Schedule::new(),
    );
    let recorder = Recorder::new(clock).hold_each(ms(100)).fail(4);
    let serving = tokio::spawn(consumer.serve_with(Raw, recorder.clone()));
    let ended = send_then_wait(producer.raw_sender(), now_all(bodies(10, 100))).await;
    assert_eq!(clock.at(ended.at), ms(500));
    let err = ended.outcome.expect_err("the handler failed");
    assert_eq!(rejected(&err), (("handler_failed", 4, 4 * 104), (10, 0)));
    assert!(err.is_retryable());
    assert_eq!(recorder.seqs(), [0, 1, 2, 3, 4]);
    assert_eq!(recorder.handled(), [0, 1, 2, 3]);
    let report = serving.await.unwrap();
    let conn = &report.connections[0];
    assert_eq!(
        (
            conn.frames,
            conn.handler_errors,
            conn.unhandled,
            conn.frames_read
        ),
        (4, 1, 5, 10)
    );
}

#[tokio::test(start_paused = true)]
async fn a_failing_handler_under_continue_loses_that_frame_only() {
    // SPEC §7.7.2: the connection goes on; the producer's close is confirmed after the 10th frame.
    let clock = Clock::start();
    let c = consumer_settings().on_handler_error(OnHandlerError::Continue);
    let Pair {
        producer, consumer, ..
    } = pair(producer_settings(), c, &Schedule::new());
    let recorder = Recorder::new(clock).hold_each(ms(100)).fail(4);
    let serving = tokio::spawn(consumer.serve_with(Raw, recorder.clone()));
    let report = producer
        .send_raw(at_once(bodies(10, 100), false))
        .await
        .expect("served to the end");
    assert!(report.confirmed);
    assert_eq!(clock.now(), secs(1));
    assert_eq!(recorder.seqs(), (0..10).collect::<Vec<_>>());
    assert_eq!(recorder.handled(), [0, 1, 2, 3, 5, 6, 7, 8, 9]);
    let conn = &serving.await.unwrap().connections[0];
    assert_eq!(
        (conn.frames, conn.handler_errors, conn.unhandled),
        (9, 1, 0)
    );
    assert_eq!(conn.error, None);
}
