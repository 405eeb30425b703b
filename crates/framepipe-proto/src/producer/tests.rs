//! The producer core driven by hand: partial writes, replies and made-up instants (SPEC §8.4).

use std::io;
use std::time::{Duration, Instant};

use bytes::Bytes;
use framepipe_codec::Notice;

use super::*;
use crate::Error;

fn frame(body: &'static [u8]) -> OutFrame {
    OutFrame::with_header((body.len() as u32).to_be_bytes(), Bytes::from_static(body))
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Writes at most `max` bytes of what the core transmits; returns them.
fn write(conn: &mut ProducerConn, now: Instant, max: usize) -> Vec<u8> {
    let mut iov = IoVecs::new();
    let op = conn.poll_transmit(&mut iov);
    assert_eq!(op, WriteOp::Write);
    let bytes: Vec<u8> = iov
        .as_slices()
        .iter()
        .flat_map(|s| s.to_vec())
        .take(max)
        .collect();
    conn.handle_written(now, bytes.len());
    bytes
}

fn reply(conn: &mut ProducerConn, now: Instant, bytes: &[u8]) {
    let buf = conn.reply_buf().expect("reading replies");
    buf[..bytes.len()].copy_from_slice(bytes);
    conn.handle_reply(now, bytes.len());
}

fn config() -> ProducerConfig {
    ProducerConfig {
        stall_timeout: Some(Duration::from_secs(60)),
        close_timeout: Duration::from_secs(30),
        ..ProducerConfig::default()
    }
}

#[test]
fn frames_go_out_whole_across_partial_writes_then_fin_then_the_consumers_close_confirms() {
    let t0 = Instant::now();
    let mut conn = ProducerConn::new(config(), t0);
    conn.push_frame(t0, frame(b"[1,2,3]"));
    conn.push_frame(t0, frame(b"{}"));
    let mut wire = write(&mut conn, t0, 5);
    assert_eq!(conn.frames_written(), 0);
    wire.extend(write(&mut conn, t0, 7));
    assert_eq!(conn.frames_written(), 1);
    wire.extend(write(&mut conn, t0, 100));
    assert_eq!(wire, b"\x00\x00\x00\x07[1,2,3]\x00\x00\x00\x02{}");
    assert_eq!((conn.frames_written(), conn.bytes_written()), (2, 17));
    assert_eq!(conn.poll_transmit(&mut IoVecs::new()), WriteOp::Idle);
    conn.finish(t0);
    assert_eq!(conn.poll_transmit(&mut IoVecs::new()), WriteOp::Fin);
    conn.handle_fin_sent(t0);
    assert_eq!(conn.state(), State::Closing);
    conn.handle_reply(t0, 0);
    assert!(matches!(
        conn.poll_event(),
        Some(Event::Closed { confirmed: true })
    ));
}

#[test]
fn the_write_batch_is_bounded() {
    let t0 = Instant::now();
    let mut conn = ProducerConn::new(
        ProducerConfig {
            write_batch_bytes: 20,
            ..config()
        },
        t0,
    );
    conn.push_frame(t0, frame(b"0123456789"));
    assert!(conn.wants_frames());
    conn.push_frame(t0, frame(b"0123456789"));
    assert!(!conn.wants_frames(), "28 bytes pending, over 20");
    write(&mut conn, t0, 20);
    assert!(conn.wants_frames());
}

#[test]
fn a_consumer_that_takes_nothing_is_a_stall_exactly_at_the_deadline_after_the_reply_grace() {
    let t0 = Instant::now();
    let mut conn = ProducerConn::new(config(), t0);
    conn.push_frame(t0, frame(b"[1]"));
    write(&mut conn, t0 + ms(10), 2); // progress restarts the clock
    assert_eq!(
        conn.poll_timeout(),
        Some(t0 + ms(10) + Duration::from_secs(60))
    );
    let stalled = t0 + ms(10) + Duration::from_secs(60);
    conn.handle_timeout(stalled);
    assert_eq!(conn.state(), State::Failing);
    assert_eq!(conn.poll_timeout(), Some(stalled + REPLY_GRACE));
    conn.handle_timeout(stalled + REPLY_GRACE);
    match conn.poll_event() {
        Some(Event::Failed {
            error: Error::Stalled { waited },
            reset: true,
        }) => assert_eq!(waited, Duration::from_secs(60)),
        other => panic!("{other:?}"),
    }
}

#[test]
fn an_idle_source_is_never_a_stall() {
    let t0 = Instant::now();
    let mut conn = ProducerConn::new(config(), t0);
    conn.push_frame(t0, frame(b"[1]"));
    write(&mut conn, t0, 100);
    assert_eq!(conn.poll_timeout(), None);
}

#[test]
fn a_notice_during_the_reply_grace_says_why_the_write_failed() {
    let t0 = Instant::now();
    let mut conn = ProducerConn::new(config(), t0);
    conn.push_frame(t0, frame(b"[1]"));
    conn.handle_write_error(t0, io::ErrorKind::BrokenPipe.into());
    let notice = Notice::new("frame_too_large", 0, 0, "too big");
    reply(&mut conn, t0 + ms(50), &notice.to_frame());
    match conn.poll_event() {
        Some(Event::Failed {
            error: Error::Rejected(n),
            reset: false,
        }) => assert_eq!(n, notice),
        other => panic!("{other:?}"),
    }
    assert!(conn.reply_buf().is_none());
}

#[test]
fn the_consumers_end_of_stream_while_sending_stops_the_producer_at_once() {
    let t0 = Instant::now();
    let mut conn = ProducerConn::new(config(), t0);
    conn.push_frame(t0, frame(b"[1]"));
    write(&mut conn, t0, 100);
    conn.push_frame(t0, frame(b"[2]"));
    conn.handle_reply(t0, 0);
    match conn.poll_event() {
        Some(Event::Failed {
            error: Error::PeerClosed { source },
            ..
        }) => assert_eq!(source.kind(), io::ErrorKind::UnexpectedEof),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        conn.poll_transmit(&mut IoVecs::new()),
        WriteOp::Idle,
        "nothing more is written"
    );
    assert_eq!(conn.frames_pending(), 1);
}

#[test]
fn without_the_consumers_close_the_close_timeout_ends_unconfirmed_exactly() {
    let t0 = Instant::now();
    let mut conn = ProducerConn::new(config(), t0);
    conn.finish(t0);
    assert_eq!(conn.poll_transmit(&mut IoVecs::new()), WriteOp::Fin);
    conn.handle_fin_sent(t0);
    conn.handle_timeout(t0 + Duration::from_secs(30) - Duration::from_nanos(1));
    assert!(conn.poll_event().is_none());
    conn.handle_timeout(t0 + Duration::from_secs(30));
    assert!(matches!(
        conn.poll_event(),
        Some(Event::Closed { confirmed: false })
    ));
}

#[test]
fn after_fin_a_send_queue_that_does_not_go_down_is_a_stall() {
    let t0 = Instant::now();
    let mut conn = ProducerConn::new(
        ProducerConfig {
            probe_interval: Some(ms(10)),
            stall_timeout: Some(Duration::from_secs(1)),
            ..config()
        },
        t0,
    );
    conn.finish(t0);
    conn.handle_fin_sent(t0);
    let mut now;
    let mut unsent = 5000;
    loop {
        now = conn.poll_timeout().unwrap();
        conn.handle_timeout(now);
        if conn.take_probe_due() {
            conn.handle_unsent(now, unsent);
        }
        if let Some(event) = conn.poll_event() {
            match event {
                Event::Failed {
                    error: Error::Stalled { waited },
                    reset: true,
                } => assert_eq!(waited, Duration::from_secs(1)),
                other => panic!("{other:?}"),
            }
            break;
        }
        if now < t0 + ms(300) {
            unsent -= 100; // going down: progress
        }
    }
    assert_eq!(now, t0 + ms(300) + Duration::from_secs(1));
}

#[test]
fn a_deadline_abandons_unwritten_frames_with_a_reset() {
    let t0 = Instant::now();
    let mut conn = ProducerConn::new(config(), t0);
    conn.push_frame(t0, frame(b"[1]"));
    conn.finish(t0);
    conn.set_deadline(t0, t0 + ms(500));
    conn.handle_timeout(t0 + ms(500));
    match conn.poll_event() {
        Some(Event::Failed {
            error: Error::Deadline { after },
            reset: true,
        }) => assert_eq!(after, ms(500)),
        other => panic!("{other:?}"),
    }
    assert_eq!(conn.frames_pending(), 1);
}

#[test]
fn the_linger_window_ends_exactly_once() {
    let t0 = Instant::now();
    let mut conn = ProducerConn::new(config(), t0);
    conn.start_linger(t0 + ms(5));
    conn.start_linger(t0 + ms(9)); // already running: unchanged
    assert_eq!(conn.poll_timeout(), Some(t0 + ms(5)));
    conn.handle_timeout(t0 + ms(5));
    assert!(matches!(conn.poll_event(), Some(Event::FlushBatch)));
    assert!(conn.poll_event().is_none());
    assert_eq!(conn.poll_timeout(), None);
}

#[test]
fn bytes_that_are_not_a_notice_fail_with_a_reset() {
    let t0 = Instant::now();
    let mut conn = ProducerConn::new(config(), t0);
    reply(&mut conn, t0, b"HTTP/1.1 400 Bad Request\r\n\r\n");
    match conn.poll_event() {
        Some(Event::Failed {
            error: Error::UnexpectedReply { received, .. },
            reset: true,
        }) => assert_eq!(received, 28),
        other => panic!("{other:?}"),
    }
}
