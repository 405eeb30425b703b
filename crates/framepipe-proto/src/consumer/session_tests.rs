//! The consumer core in session mode, driven by hand with made-up instants (SPEC §10).

use std::time::{Duration, Instant};

use bytes::{BufMut, BytesMut};
use framepipe_codec::session::{
    Control, Hello, Pacing, ResumeSecret, SessionFramer, SessionId, Unit,
};
use framepipe_codec::Builder;
use framepipe_flow::MemoryPool;

use super::*;
use crate::Error;

struct Rig {
    conn: ConsumerConn,
    pool: MemoryPool,
    seqs: Vec<u64>,
    failed: Option<Error>,
    hello: Option<Hello>,
}

impl Rig {
    fn new(now: Instant) -> Rig {
        let pool = MemoryPool::new(16 << 20, 4 << 20);
        Rig {
            conn: ConsumerConn::new(ConsumerConfig::default(), &pool, now),
            pool,
            seqs: Vec::new(),
            failed: None,
            hello: None,
        }
    }

    /// Feeds `bytes` and hands on what comes out, until the core wants more input or something else.
    fn feed(&mut self, now: Instant, bytes: &[u8]) -> ReadOp {
        let mut sent = 0;
        loop {
            match self.conn.poll_read(now) {
                ReadOp::Deliver => {
                    while let Some(event) = self.conn.poll_event() {
                        match event {
                            Event::Frame(f) => self.seqs.push(f.seq.expect("numbered")),
                            Event::Hello(h) => self.hello = Some(h),
                            Event::Failed(e) => self.failed = Some(e),
                            Event::FrameError(e) => panic!("{e}"),
                        }
                    }
                }
                ReadOp::Reserve { bytes } => {
                    let r = self.pool.try_acquire(bytes).expect("room");
                    self.conn.grant_memory(now, r);
                }
                ReadOp::Read { limit } if sent < bytes.len() => {
                    let n = limit.min(bytes.len() - sent);
                    self.conn.read_buf().put_slice(&bytes[sent..sent + n]);
                    self.conn.handle_read(now, n);
                    sent += n;
                }
                op => return op,
            }
        }
    }

    /// The control frames the core has to write, taken.
    fn written(&mut self, now: Instant) -> Vec<Control> {
        let mut wire = BytesMut::new();
        while let Transmit::Bytes(b) = self.conn.poll_transmit() {
            wire.extend_from_slice(b);
            let n = b.len();
            self.conn.handle_written(now, n);
        }
        let mut framer = SessionFramer::new(Builder::new());
        let mut out = Vec::new();
        while let Some(unit) = framer.next_unit(&mut wire).expect("well formed") {
            match unit {
                Unit::Control { control, .. } => out.push(control),
                Unit::Data(f) => panic!("a data frame from the consumer: {f:?}"),
            }
        }
        out
    }
}

fn hello(next: u64) -> BytesMut {
    Control::Hello(Hello {
        version: 1,
        session: SessionId::from_u128(9),
        next,
        max_frame_length: 1 << 20,
        pacing: Pacing {
            ack_every: 3,
            ack_interval_ms: 10,
            heartbeat_ms: 500,
        },
        secret: Some(ResumeSecret::from_bytes([1; 16])),
    })
    .to_frame()
    .unwrap()
}

fn data(n: usize) -> BytesMut {
    let mut wire = BytesMut::new();
    for _ in 0..n {
        wire.put_slice(b"\x00\x00\x00\x02[]");
    }
    wire
}

/// A rig whose session is open from frame 0: the hello, `frames` data frames and `then`, fed and
/// accepted as a new session.
fn opened(t0: Instant, frames: usize, then: &[u8]) -> Rig {
    let mut rig = Rig::new(t0);
    let mut wire = hello(0);
    wire.extend_from_slice(&data(frames));
    wire.extend_from_slice(then);
    rig.feed(t0, &wire);
    rig.conn.accept_session(
        t0,
        SessionStart {
            next: 0,
            handled: 0,
        },
    );
    rig
}

/// While the table makes a hello wait (the previous connection's frames are with the application),
/// heartbeats tell the producer the consumer is alive; the welcome follows them (SPEC §10.6.1).
#[test]
fn heartbeats_go_out_while_the_welcome_waits_for_the_table() {
    let t0 = Instant::now();
    let mut rig = Rig::new(t0);
    assert_eq!(rig.feed(t0, &hello(0)), ReadOp::Handshake);
    assert!(
        rig.written(t0).is_empty(),
        "nothing before a heartbeat interval"
    );
    let beat = rig.conn.poll_upkeep().expect("a heartbeat is due");
    assert_eq!(
        beat,
        t0 + Duration::from_millis(500),
        "at the hello's pacing"
    );
    rig.conn.handle_upkeep(beat);
    assert_eq!(rig.written(beat), [Control::Heartbeat]);
    let again = rig.conn.poll_upkeep().expect("and again");
    assert_eq!(again, beat + Duration::from_millis(500));
    rig.conn.handle_upkeep(again);
    rig.conn.accept_session(
        again,
        SessionStart {
            next: 0,
            handled: 0,
        },
    );
    let out = rig.written(again);
    assert!(
        matches!(&out[..], [Control::Heartbeat, Control::Welcome(w)] if w.next == 0),
        "{out:?}"
    );
}

/// A hello the table refuses is answered by the notice, then FIN: the core no longer asks for the
/// table's answer (it did, for ever, before issue 22's refusals: a busy loop).
#[test]
fn a_refused_hello_is_answered_by_its_notice_and_never_asked_again() {
    let t0 = Instant::now();
    let mut rig = Rig::new(t0);
    assert_eq!(rig.feed(t0, &hello(0)), ReadOp::Handshake);
    let notice = framepipe_codec::Notice::new(crate::codes::SESSION_DENIED, 0, 0, "not yours");
    rig.conn.reject(t0, notice);
    assert_eq!(rig.conn.poll_read(t0), ReadOp::Transmit);
    let out = rig.written(t0);
    assert!(
        matches!(&out[..], [Control::Notice(n)] if n.error == "session_denied"),
        "{out:?}"
    );
    assert_eq!(rig.conn.poll_transmit(), Transmit::Fin);
}

#[test]
fn a_hello_waits_for_the_table_then_frames_are_numbered_from_the_welcome() {
    let t0 = Instant::now();
    let mut rig = Rig::new(t0);
    let mut wire = hello(5);
    wire.extend_from_slice(&data(4));
    assert_eq!(rig.feed(t0, &wire), ReadOp::Handshake);
    assert_eq!(rig.hello.map(|h| h.next), Some(5));
    assert!(rig.seqs.is_empty(), "nothing numbered before the answer");
    // The table knows the session: frames 5 and 6 were handled (unacknowledged) before.
    rig.conn.accept_session(
        t0,
        SessionStart {
            next: 5,
            handled: 7,
        },
    );
    rig.feed(t0, &[]);
    assert_eq!(rig.seqs, [7, 8], "5 and 6 were dropped as duplicates");
    assert_eq!(rig.conn.duplicates(), 2);
    let out = rig.written(t0);
    assert!(
        matches!(&out[..], [Control::Welcome(w)] if w.next == 5 && w.pacing.ack_every == 3),
        "{out:?}"
    );
}

#[test]
fn acks_come_every_ack_every_frames_on_catching_up_and_after_ack_interval() {
    let t0 = Instant::now();
    let mut rig = opened(t0, 10, &[]);
    rig.feed(t0, &[]);
    rig.written(t0); // the welcome
    rig.conn.handle_handled(t0, 2);
    assert!(
        rig.written(t0).is_empty(),
        "2 of ack_every 3, and 8 more arrived"
    );
    assert_eq!(rig.conn.poll_upkeep(), Some(t0 + Duration::from_millis(10)));
    rig.conn.handle_handled(t0, 3);
    assert_eq!(rig.written(t0), [Control::Ack { next: 3 }]);
    rig.conn.handle_handled(t0, 4);
    let t1 = t0 + Duration::from_millis(10);
    rig.conn.handle_upkeep(t1);
    assert_eq!(rig.written(t1), [Control::Ack { next: 4 }], "the interval");
    rig.conn.handle_handled(t1, 10);
    assert_eq!(rig.written(t1), [Control::Ack { next: 10 }], "caught up");
}

#[test]
fn a_heartbeat_after_silence_and_a_silent_producer_is_unresponsive_after_three() {
    let t0 = Instant::now();
    let mut rig = opened(t0, 0, &[]);
    rig.feed(t0, &[]);
    rig.written(t0);
    let beat = t0 + Duration::from_millis(500);
    assert_eq!(rig.conn.poll_upkeep(), Some(beat));
    rig.conn.handle_upkeep(beat);
    assert_eq!(rig.written(beat), [Control::Heartbeat]);
    let dead = t0 + Duration::from_millis(1_500);
    while rig.conn.poll_timeout() < Some(dead) {
        let at = rig.conn.poll_timeout().unwrap();
        rig.conn.handle_timeout(at);
        rig.written(at);
    }
    rig.conn.handle_timeout(dead);
    rig.feed(dead, &[]);
    match rig.failed.take() {
        Some(Error::Unresponsive { silent }) => assert_eq!(silent, Duration::from_millis(1_500)),
        other => panic!("{other:?}"),
    }
}

#[test]
fn the_producers_goodbye_is_answered_with_a_final_ack_once_every_frame_is_handled() {
    let t0 = Instant::now();
    let mut rig = opened(t0, 2, &Control::Goodbye { next: 2 }.to_frame().unwrap());
    assert_eq!(rig.feed(t0, &[]), ReadOp::AwaitApp);
    rig.conn.handle_handled(t0, 2);
    rig.conn.handle_app_done(t0);
    let out = rig.written(t0);
    assert_eq!(
        out[1..],
        [Control::Ack { next: 2 }, Control::Goodbye { next: 2 }]
    );
    assert_eq!(rig.conn.poll_transmit(), Transmit::Fin);
}

#[test]
fn a_goodbye_that_disagrees_with_the_frames_received_is_a_mismatch_told_in_a_control_notice() {
    let t0 = Instant::now();
    let mut rig = opened(t0, 2, &Control::Goodbye { next: 3 }.to_frame().unwrap());
    rig.feed(t0, &[]);
    assert!(matches!(rig.failed, Some(Error::SessionMismatch { .. })));
    rig.conn.handle_app_done(t0);
    let out = rig.written(t0);
    assert!(
        matches!(out.last(), Some(Control::Notice(n)) if n.error == "session_mismatch"),
        "{out:?}"
    );
}

#[test]
fn a_plain_stream_is_read_as_before_by_a_consumer_that_offers_sessions() {
    let t0 = Instant::now();
    let mut rig = Rig::new(t0);
    let mut got = Vec::new();
    let wire = data(3);
    let mut sent = 0;
    while sent < wire.len() {
        match rig.conn.poll_read(t0) {
            ReadOp::Read { limit } => {
                let n = limit.min(wire.len() - sent);
                rig.conn.read_buf().put_slice(&wire[sent..sent + n]);
                rig.conn.handle_read(t0, n);
                sent += n;
            }
            ReadOp::Reserve { bytes } => {
                let r = rig.pool.try_acquire(bytes).unwrap();
                rig.conn.grant_memory(t0, r);
            }
            ReadOp::Deliver => {
                while let Some(Event::Frame(f)) = rig.conn.poll_event() {
                    got.push((f.seq, f.frame.index));
                }
            }
            op => panic!("{op:?}"),
        }
    }
    while let Some(Event::Frame(f)) = rig.conn.poll_event() {
        got.push((f.seq, f.frame.index));
    }
    assert!(!rig.conn.is_session());
    assert_eq!(got, [(None, 0), (None, 1), (None, 2)]);
}
