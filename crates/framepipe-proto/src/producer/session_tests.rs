//! The session producer core driven by hand with made-up instants (SPEC §10).

use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use framepipe_codec::session::{
    Control, Pacing, ResumeSecret, SessionFramer, SessionId, Unit, Welcome,
};
use framepipe_codec::{Builder, Notice};

use super::*;
use crate::{codes, Error};

const ID: u128 = 0xfeed;

fn session(t0: Instant) -> ProducerSession {
    let mut config =
        SessionConfig::new(SessionId::from_u128(ID), ResumeSecret::from_bytes([3; 16]));
    config.budget = 1_000;
    config.pacing = Pacing {
        ack_every: 4,
        ack_interval_ms: 10,
        heartbeat_ms: 1_000,
    };
    ProducerSession::new(config, t0)
}

pub(super) fn frame(n: u8) -> OutFrame {
    OutFrame::with_header([0, 0, 0, 1], Bytes::from(vec![n]))
}

/// Writes everything the core gathers, and decodes it.
pub(super) fn drain(conn: &mut SessionConn, now: Instant) -> Vec<Unit> {
    let mut wire = BytesMut::new();
    loop {
        let mut iov = IoVecs::new();
        if conn.poll_transmit(&mut iov) != WriteOp::Write {
            break;
        }
        for s in iov.as_slices() {
            wire.extend_from_slice(s);
        }
        let n = iov.total();
        conn.handle_written(now, n);
    }
    let mut framer = SessionFramer::new(Builder::new());
    let mut units = Vec::new();
    while let Some(unit) = framer.next_unit(&mut wire).expect("well formed") {
        units.push(unit);
    }
    units
}

pub(super) fn reply(conn: &mut SessionConn, now: Instant, control: Control) {
    let wire = control.to_frame().expect("encodes");
    let buf = conn.read_buf().expect("reading");
    buf[..wire.len()].copy_from_slice(&wire);
    conn.handle_read(now, wire.len());
}

fn welcome(next: u64, heartbeat_ms: u32) -> Control {
    Control::Welcome(Welcome {
        version: 1,
        session: SessionId::from_u128(ID),
        next,
        pacing: Pacing {
            ack_every: 4,
            ack_interval_ms: 10,
            heartbeat_ms,
        },
    })
}

fn bodies(units: &[Unit]) -> Vec<u8> {
    units
        .iter()
        .filter_map(|u| match u {
            Unit::Data(f) => Some(f.body[0]),
            Unit::Control { .. } => None,
        })
        .collect()
}

#[test]
fn the_hello_goes_first_and_no_frame_before_the_welcome_then_frames_from_its_next() {
    let t0 = Instant::now();
    let mut conn = SessionConn::new(session(t0), SessionConnConfig::default(), t0);
    for n in 0..3 {
        assert!(conn.wants_frame(5));
        conn.push_frame(t0, frame(n));
    }
    let units = drain(&mut conn, t0);
    assert!(
        matches!(&units[..], [Unit::Control { control: Control::Hello(h), offset: 0 }] if h.next == 0),
        "{units:?}"
    );
    reply(&mut conn, t0, welcome(0, 1_000));
    assert_eq!(bodies(&drain(&mut conn, t0)), [0, 1, 2]);
    // The connection is lost; the consumer had handled frame 0: the next resumes at 1.
    let mut conn = SessionConn::new(conn.into_session(), SessionConnConfig::default(), t0);
    drain(&mut conn, t0);
    reply(&mut conn, t0, welcome(1, 1_000));
    assert_eq!(bodies(&drain(&mut conn, t0)), [1, 2]);
    assert_eq!(conn.session().delivered(), 1);
    assert_eq!(conn.session().counts().connections, 2);
}

/// A consumer whose table makes the hello wait sends heartbeats: they keep the connection alive
/// past the liveness deadline, and the welcome then starts the frames (SPEC §10.6.1).
#[test]
fn heartbeats_before_the_welcome_keep_the_connection_alive() {
    let t0 = Instant::now();
    let mut conn = SessionConn::new(session(t0), SessionConnConfig::default(), t0);
    conn.push_frame(t0, frame(7));
    drain(&mut conn, t0);
    // Without word from the consumer the connection would be dead at t0 + 3 s (three of the
    // proposed 1 s heartbeat intervals); a heartbeat at t0 + 2 s moves that to t0 + 5 s.
    let step_to = |conn: &mut SessionConn, until: Instant| {
        while let Some(at) = conn.poll_timeout().filter(|&at| at <= until) {
            conn.handle_timeout(at);
            drain(conn, at);
            assert!(conn.poll_event().is_none(), "alive at {:?}", at - t0);
        }
    };
    let t1 = t0 + Duration::from_secs(2);
    step_to(&mut conn, t1);
    reply(&mut conn, t1, Control::Heartbeat);
    assert!(
        conn.poll_event().is_none(),
        "a heartbeat is welcome before the welcome"
    );
    let t2 = t0 + Duration::from_millis(4_900);
    step_to(&mut conn, t2);
    reply(&mut conn, t2, welcome(0, 1_000));
    assert_eq!(bodies(&drain(&mut conn, t2)), [7]);
}

#[test]
fn a_heartbeat_after_a_heartbeat_interval_of_silence_and_unresponsive_after_three() {
    let t0 = Instant::now();
    let mut conn = SessionConn::new(session(t0), SessionConnConfig::default(), t0);
    drain(&mut conn, t0);
    reply(&mut conn, t0, welcome(0, 200));
    assert_eq!(conn.poll_timeout(), Some(t0 + Duration::from_millis(200)));
    let t1 = t0 + Duration::from_millis(200);
    conn.handle_timeout(t1);
    let units = drain(&mut conn, t1);
    assert!(
        matches!(
            &units[..],
            [Unit::Control {
                control: Control::Heartbeat,
                ..
            }]
        ),
        "{units:?}"
    );
    // Liveness: three heartbeat intervals after the welcome, the last thing heard.
    let dead = t0 + Duration::from_millis(600);
    while conn.poll_timeout() < Some(dead) {
        let at = conn.poll_timeout().unwrap();
        conn.handle_timeout(at);
        drain(&mut conn, at);
    }
    assert_eq!(conn.poll_timeout(), Some(dead));
    conn.handle_timeout(dead);
    match conn.poll_event() {
        Some(SessionEvent::Lost {
            error: Error::Unresponsive { silent },
            retry: true,
            ..
        }) => assert_eq!(silent, Duration::from_millis(600)),
        other => panic!("{other:?}"),
    }
}

#[test]
fn acks_release_budget_and_the_goodbye_exchange_completes_the_session() {
    let t0 = Instant::now();
    let mut conn = SessionConn::new(session(t0), SessionConnConfig::default(), t0);
    drain(&mut conn, t0);
    reply(&mut conn, t0, welcome(0, 1_000));
    let mut pushed = 0u8;
    while conn.wants_frame(5) {
        conn.push_frame(t0, frame(pushed));
        pushed += 1;
    }
    assert_eq!(
        pushed, 200,
        "a 1,000-byte budget holds 200 frames of 5 bytes"
    );
    drain(&mut conn, t0);
    reply(&mut conn, t0, Control::Ack { next: 50 });
    assert!(conn.wants_frame(5), "the ack gave budget back");
    conn.finish(t0);
    let units = drain(&mut conn, t0);
    assert!(matches!(
        units.last(),
        Some(Unit::Control {
            control: Control::Goodbye { next: 200 },
            ..
        })
    ));
    assert_eq!(conn.state(), SessionState::Ending);
    reply(&mut conn, t0, Control::Goodbye { next: 200 });
    assert!(matches!(conn.poll_event(), Some(SessionEvent::Complete)));
    let s = conn.into_session();
    assert!(s.is_complete());
    assert_eq!((s.delivered(), s.unacked(), s.never_sent()), (200, 0, 0));
}

#[test]
fn a_shutting_down_notice_is_worth_a_retry_and_a_handler_failure_is_not() {
    for (code, retry) in [
        (codes::SHUTTING_DOWN, true),
        ("frame_timeout", true),
        (codes::HANDLER_FAILED, false),
        (codes::SESSION_DENIED, false),
    ] {
        let t0 = Instant::now();
        let mut conn = SessionConn::new(session(t0), SessionConnConfig::default(), t0);
        drain(&mut conn, t0);
        reply(&mut conn, t0, welcome(0, 1_000));
        reply(
            &mut conn,
            t0,
            Control::Notice(Notice::new(code, 0, 0, "why")),
        );
        match conn.poll_event() {
            Some(SessionEvent::Lost {
                error: Error::Rejected(n),
                retry: r,
                ..
            }) => assert_eq!((n.error.as_str(), r), (code, retry)),
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn a_welcome_before_what_is_retained_is_out_of_sequence_and_final() {
    let t0 = Instant::now();
    let mut s = session(t0);
    s.push(frame(0));
    s.push(frame(1));
    s.release(1).unwrap();
    let mut conn = SessionConn::new(s, SessionConnConfig::default(), t0);
    drain(&mut conn, t0);
    reply(&mut conn, t0, welcome(0, 1_000));
    assert!(matches!(
        conn.poll_event(),
        Some(SessionEvent::Lost {
            error: Error::OutOfSequence { what: "resume", .. },
            retry: false,
            ..
        })
    ));
}

#[test]
fn reconnects_follow_the_backoff_and_give_up_at_reconnect_timeout_with_the_counts() {
    let t0 = Instant::now();
    let mut s = session(t0);
    for n in 0..3 {
        s.push(frame(n));
    }
    s.wrote(0);
    let mut now = t0;
    let mut delays = Vec::new();
    let err = loop {
        match s.next_attempt(now, 0.0) {
            Ok(at) => {
                delays.push((at - now).as_millis());
                now = at;
            }
            Err(e) => break e,
        }
    };
    assert_eq!(
        &delays[..6],
        [100, 250, 500, 1_000, 2_500, 5_000],
        "{delays:?}"
    );
    assert_eq!(
        now,
        t0 + DEFAULT_RECONNECT_TIMEOUT,
        "the last attempt at the deadline"
    );
    match err {
        Error::ReconnectTimeout {
            delivered,
            unacked,
            never_sent,
            ..
        } => assert_eq!((delivered, unacked, never_sent), (0, 1, 2)),
        other => panic!("{other:?}"),
    }
    assert!(err_text(t0)
        .contains("0 frames delivered (acknowledged), 1 sent but not acknowledged, 2 never sent"));
}

fn err_text(t0: Instant) -> String {
    let mut s = session(t0);
    for n in 0..3 {
        s.push(frame(n));
    }
    s.wrote(0);
    let late = t0 + DEFAULT_RECONNECT_TIMEOUT;
    s.next_attempt(late, 0.0).unwrap_err().to_string()
}

#[test]
fn the_disconnect_policy_drops_a_connection_the_consumer_stopped_taking_bytes_from() {
    let t0 = Instant::now();
    let config = SessionConnConfig {
        stall_timeout: Some(Duration::from_secs(1)),
        ..SessionConnConfig::default()
    };
    let mut conn = SessionConn::new(session(t0), config, t0);
    drain(&mut conn, t0);
    reply(&mut conn, t0, welcome(0, 60_000));
    conn.push_frame(t0, frame(1));
    // The consumer takes nothing: the frame waits, and the stall deadline runs from the push.
    let dead = t0 + Duration::from_secs(1);
    assert_eq!(conn.poll_timeout(), Some(dead));
    conn.handle_timeout(dead);
    match conn.poll_event() {
        Some(SessionEvent::Lost {
            error: Error::Stalled { waited },
            reset: true,
            retry: true,
        }) => assert_eq!(waited, Duration::from_secs(1)),
        other => panic!("{other:?}"),
    }
}

#[test]
fn blocking_is_the_default_a_consumer_alive_but_slow_keeps_its_connection() {
    let t0 = Instant::now();
    let mut conn = SessionConn::new(session(t0), SessionConnConfig::default(), t0);
    drain(&mut conn, t0);
    reply(&mut conn, t0, welcome(0, 1_000));
    conn.push_frame(t0, frame(1));
    // Nothing is written for a minute, but the consumer's heartbeats keep arriving.
    let mut now = t0;
    for _ in 0..60 {
        now += Duration::from_secs(1);
        conn.handle_timeout(now);
        reply(&mut conn, now, Control::Heartbeat);
    }
    assert!(conn.poll_event().is_none(), "still connected");
    assert_eq!(
        conn.bytes_pending(),
        5 + 4,
        "the frame waits, and one heartbeat (4 bytes)"
    );
}
