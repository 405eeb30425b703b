//! The session producer core against a consumer that lies (SPEC §10.2.5, §10.4.5, §10.6.5): each
//! attack of issue 22 that the core alone must stop.

use std::time::{Duration, Instant};

use framepipe_codec::session::{Control, Pacing, ResumeSecret, SessionId, Unit, Welcome};

use super::session_tests::{drain, frame, reply};
use super::*;
use crate::Error;

const ID: u128 = 0xbad;
const SECRET: ResumeSecret = ResumeSecret::from_bytes([42; 16]);

fn session(t0: Instant, reconnect_timeout: Duration) -> ProducerSession {
    let mut config = SessionConfig::new(SessionId::from_u128(ID), SECRET);
    config.budget = 1_000;
    config.reconnect_timeout = reconnect_timeout;
    ProducerSession::new(config, t0)
}

/// A welcome for this file's session (the other tests' is for theirs).
fn welcome(next: u64) -> Control {
    Control::Welcome(Welcome {
        version: 1,
        session: SessionId::from_u128(ID),
        next,
        pacing: Pacing {
            ack_every: 4,
            ack_interval_ms: 10,
            heartbeat_ms: 1_000,
        },
    })
}

/// A core welcomed at 0 that has accepted `accepted` frames of which the first `written` are
/// written (the rest wait for the consumer's window).
fn streaming(t0: Instant, accepted: u8, written: u8) -> SessionConn {
    let mut conn = SessionConn::new(session(t0, Duration::from_secs(10)), Default::default(), t0);
    drain(&mut conn, t0);
    reply(&mut conn, t0, welcome(0));
    for n in 0..written {
        conn.push_frame(t0, frame(n));
    }
    drain(&mut conn, t0);
    for n in written..accepted {
        conn.push_frame(t0, frame(n));
    }
    conn
}

fn lost(conn: &mut SessionConn) -> (Error, bool) {
    match conn.poll_event() {
        Some(SessionEvent::Lost { error, retry, .. }) => (error, retry),
        other => panic!("expected the connection lost, got {other:?}"),
    }
}

#[test]
fn an_ack_beyond_what_was_written_is_a_protocol_error_and_releases_nothing() {
    // Issue 22: a forged ack must never pass for a delivery. 3 frames written, 5 accepted.
    let t0 = Instant::now();
    let mut conn = streaming(t0, 5, 3);
    reply(&mut conn, t0, Control::Ack { next: 4 });
    let (error, retry) = lost(&mut conn);
    assert!(
        matches!(
            error,
            Error::NotWritten {
                what: "ack",
                next: 4,
                written: 3
            }
        ),
        "{error:?}"
    );
    assert!(!retry);
    assert_eq!(error.code(), "out_of_sequence");
    let s = conn.into_session();
    assert_eq!((s.delivered(), s.unacked(), s.never_sent()), (0, 3, 2));
}

#[test]
fn a_forged_welcome_resuming_ahead_of_what_was_written_releases_nothing() {
    // Issue 22: a welcome resuming 5 ahead made the producer release 5 frames it never wrote and
    // report them confirmed.
    let t0 = Instant::now();
    let conn = streaming(t0, 8, 3);
    let mut conn = SessionConn::new(conn.into_session(), Default::default(), t0);
    drain(&mut conn, t0);
    reply(&mut conn, t0, welcome(8));
    let (error, retry) = lost(&mut conn);
    assert!(
        matches!(
            error,
            Error::NotWritten {
                what: "resume",
                next: 8,
                written: 3
            }
        ),
        "{error:?}"
    );
    assert!(!retry);
    let s = conn.into_session();
    assert_eq!((s.delivered(), s.unacked(), s.never_sent()), (0, 3, 5));
    assert_eq!(s.retention().len(), 8, "every frame still retained");
}

#[test]
fn heartbeats_without_a_welcome_do_not_outlast_reconnect_timeout() {
    // Issue 22: a fake consumer that only sends heartbeats kept a producer waiting for ever.
    let t0 = Instant::now();
    let timeout = Duration::from_secs(10);
    let mut conn = SessionConn::new(session(t0, timeout), Default::default(), t0);
    conn.push_frame(t0, frame(1));
    drain(&mut conn, t0);
    // A heartbeat from the consumer every 500 ms; the producer's own deadlines as they come.
    let mut now = t0;
    let event = loop {
        now += Duration::from_millis(500);
        while let Some(due) = conn.poll_timeout().filter(|&due| due <= now) {
            conn.handle_timeout(due);
            drain(&mut conn, due);
        }
        if let Some(event) = conn.poll_event() {
            break event;
        }
        reply(&mut conn, now, Control::Heartbeat);
        assert!(now - t0 < timeout * 2, "still waiting at {:?}", now - t0);
    };
    let (error, retry) = match event {
        SessionEvent::Lost { error, retry, .. } => (error, retry),
        other => panic!("{other:?}"),
    };
    assert!(!retry, "the session gives up");
    match error {
        Error::ReconnectTimeout {
            after, never_sent, ..
        } => assert_eq!((after, never_sent), (timeout, 1)),
        other => panic!("{other:?}"),
    }
}

#[test]
fn the_reconnect_deadline_counts_from_when_the_session_lost_its_connection() {
    // Time spent on earlier attempts counts: a connection that opens 8 s into a 10 s outage has 2 s
    // to be welcomed.
    let t0 = Instant::now();
    let conn = streaming(t0, 2, 2);
    let mut s = conn.into_session();
    let lost_at = t0 + Duration::from_secs(1);
    s.next_attempt(lost_at, 0.0).unwrap();
    let opened = lost_at + Duration::from_secs(8);
    let mut conn = SessionConn::new(s, Default::default(), opened);
    drain(&mut conn, opened);
    assert_eq!(conn.poll_timeout(), Some(lost_at + Duration::from_secs(10)));
}

#[test]
fn every_hello_of_the_session_carries_its_secret() {
    // SPEC §10.4.5.
    let t0 = Instant::now();
    let mut conn = SessionConn::new(session(t0, Duration::from_secs(10)), Default::default(), t0);
    let hello = |units: &[Unit]| match units {
        [Unit::Control {
            control: Control::Hello(h),
            ..
        }, ..] => *h,
        other => panic!("{other:?}"),
    };
    assert_eq!(hello(&drain(&mut conn, t0)).secret, Some(SECRET));
    reply(&mut conn, t0, welcome(0));
    let mut conn = SessionConn::new(conn.into_session(), Default::default(), t0);
    assert_eq!(hello(&drain(&mut conn, t0)).secret, Some(SECRET));
}
