//! The consumer core driven by hand: bytes, reads of any size and made-up instants (SPEC §8.3).

use std::time::{Duration, Instant};

use bytes::BufMut;
use framepipe_codec::{Error as CodecError, Notice, NoticeRead, OversizePolicy};
use framepipe_flow::MemoryPool;
use proptest::prelude::*;

use super::*;
use crate::{codes, Error};

fn frame(body: &[u8]) -> Vec<u8> {
    let mut v = (body.len() as u32).to_be_bytes().to_vec();
    v.extend_from_slice(body);
    v
}

/// A consumer core and what it has said, fed by hand.
struct Rig {
    conn: ConsumerConn,
    pool: MemoryPool,
    bodies: Vec<(u64, u64, Vec<u8>)>,
    frame_errors: Vec<CodecError>,
    failed: Option<Error>,
}

impl Rig {
    fn new(config: ConsumerConfig, now: Instant) -> Rig {
        let pool = MemoryPool::new(64 << 20, 16 << 20);
        Rig {
            conn: ConsumerConn::new(config, &pool, now),
            pool,
            bodies: Vec::new(),
            frame_errors: Vec::new(),
            failed: None,
        }
    }

    fn deliver(&mut self) {
        while let Some(event) = self.conn.poll_event() {
            match event {
                Event::Frame(f) => {
                    assert_eq!(
                        f.memory.bytes(),
                        f.frame.wire_len(),
                        "a frame carries its bytes"
                    );
                    self.bodies
                        .push((f.frame.index, f.frame.offset, f.frame.body.to_vec()));
                }
                Event::FrameError(e) => self.frame_errors.push(e),
                Event::Failed(e) => self.failed = Some(e),
                Event::Hello(h) => panic!("a plain test got a hello: {h:?}"),
            }
        }
    }

    /// Offers `bytes` at `now` in reads of at most `max_read`, as the core grants them; returns how
    /// many it took before it stopped wanting input.
    fn feed(&mut self, now: Instant, bytes: &[u8], max_read: usize) -> usize {
        let mut sent = 0;
        while sent < bytes.len() {
            match self.conn.poll_read(now) {
                ReadOp::Deliver => self.deliver(),
                ReadOp::Reserve { bytes } => {
                    let r = self.pool.try_acquire(bytes).expect("room in the pool");
                    self.conn.grant_memory(now, r);
                }
                ReadOp::Read { limit } => {
                    let n = limit.min(max_read).min(bytes.len() - sent);
                    self.conn.read_buf().put_slice(&bytes[sent..sent + n]);
                    self.conn.handle_read(now, n);
                    sent += n;
                }
                _ => break,
            }
        }
        self.deliver();
        sent
    }

    /// Ends the stream at `now`.
    fn eof(&mut self, now: Instant) {
        loop {
            match self.conn.poll_read(now) {
                ReadOp::Deliver => self.deliver(),
                ReadOp::Reserve { bytes } => {
                    let r = self.pool.try_acquire(bytes).expect("room in the pool");
                    self.conn.grant_memory(now, r);
                }
                ReadOp::Read { .. } => {
                    self.conn.handle_read(now, 0);
                    self.deliver();
                    return;
                }
                _ => return,
            }
        }
    }

    /// Writes what the core transmits until it asks for FIN; returns the bytes.
    fn transmitted(&mut self, now: Instant) -> Vec<u8> {
        let mut out = Vec::new();
        loop {
            match self.conn.poll_transmit() {
                Transmit::Bytes(b) => {
                    let b = b.to_vec();
                    self.conn.handle_written(now, b.len());
                    out.extend(b);
                }
                Transmit::Fin => {
                    self.conn.handle_fin_sent(now);
                    return out;
                }
                Transmit::Nothing => return out,
            }
        }
    }

    /// The notice sent after the application finished, with the connection left draining.
    fn notice_after_app_done(&mut self, now: Instant) -> Notice {
        assert_eq!(self.conn.poll_read(now), ReadOp::AwaitApp);
        self.conn.handle_app_done(now);
        assert_eq!(self.conn.poll_read(now), ReadOp::Transmit);
        let wire = self.transmitted(now);
        assert_eq!(self.conn.state(), State::Draining);
        match Notice::read(&wire) {
            NoticeRead::Notice(n) => n,
            other => panic!("not a notice: {other:?}"),
        }
    }
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

#[test]
fn frames_come_out_in_order_with_their_index_and_offset() {
    let t0 = Instant::now();
    let mut rig = Rig::new(ConsumerConfig::default(), t0);
    let wire = [frame(b"[1]"), frame(b""), frame(b"{\"a\":2}")].concat();
    assert_eq!(rig.feed(t0, &wire, 5), wire.len());
    assert_eq!(
        rig.bodies,
        [
            (0, 0, b"[1]".to_vec()),
            (1, 7, b"".to_vec()),
            (2, 11, b"{\"a\":2}".to_vec())
        ]
    );
    assert_eq!(rig.conn.bytes_read(), wire.len() as u64);
}

#[test]
fn the_first_read_takes_only_a_header_so_a_silent_peer_costs_no_block() {
    let t0 = Instant::now();
    let mut rig = Rig::new(ConsumerConfig::default(), t0);
    assert_eq!(rig.conn.poll_read(t0), ReadOp::Reserve { bytes: 4 });
    let r = rig.pool.try_acquire(4).unwrap();
    rig.conn.grant_memory(t0, r);
    assert_eq!(rig.conn.poll_read(t0), ReadOp::Read { limit: 4 });
    assert_eq!(
        rig.pool.in_use(),
        4,
        "no read-ahead before the peer has sent anything"
    );
}

#[test]
fn the_idle_deadline_runs_from_the_last_frame_handed_on_and_fires_exactly() {
    let t0 = Instant::now();
    let config = ConsumerConfig {
        idle_timeout: Some(secs(120)),
        ..ConsumerConfig::default()
    };
    let mut rig = Rig::new(config, t0);
    let t1 = t0 + secs(7);
    rig.feed(t1, &frame(b"[]"), usize::MAX);
    assert!(matches!(rig.conn.poll_read(t1), ReadOp::Read { .. }));
    assert_eq!(rig.conn.poll_timeout(), Some(t1 + secs(120)));
    rig.conn
        .handle_timeout(t1 + secs(120) - Duration::from_nanos(1));
    assert_eq!(rig.conn.state(), State::Reading);
    rig.conn.handle_timeout(t1 + secs(120));
    rig.deliver();
    assert!(
        matches!(rig.failed, Some(Error::IdleTimeout { idle }) if idle == secs(120)),
        "{:?}",
        rig.failed
    );
    // SPEC §6.3.1, §6.4: it names the first frame not read, so the producer knows frame 0 was
    // handled.
    let notice = rig.notice_after_app_done(t1 + secs(120));
    assert_eq!(
        (notice.error.as_str(), notice.frame, notice.offset),
        ("idle_timeout", 1, 6)
    );
}

#[test]
fn the_frame_deadline_excludes_time_spent_waiting_for_memory() {
    let t0 = Instant::now();
    let config = ConsumerConfig {
        frame_timeout: Some(secs(30)),
        ..ConsumerConfig::default()
    };
    let mut rig = Rig::new(config, t0);
    // A header announcing 1 MiB and 6 bytes of its body.
    let mut wire = (1u32 << 20).to_be_bytes().to_vec();
    wire.extend_from_slice(b"abcdef");
    rig.feed(t0, &wire[..4], usize::MAX);
    // The body must be reserved whole before it is read; the pool makes us wait 5 s.
    let ReadOp::Reserve { bytes } = rig.conn.poll_read(t0) else {
        panic!("expected a reservation")
    };
    assert_eq!(bytes, 1 << 20);
    let r = rig.pool.try_acquire(bytes).unwrap();
    rig.conn.grant_memory(t0 + secs(5), r);
    rig.feed(t0 + secs(5), &wire[4..], usize::MAX);
    assert!(matches!(
        rig.conn.poll_read(t0 + secs(5)),
        ReadOp::Read { .. }
    ));
    assert_eq!(rig.conn.poll_timeout(), Some(t0 + secs(35)));
    rig.conn.handle_timeout(t0 + secs(35));
    rig.deliver();
    match rig.failed {
        Some(Error::FrameTimeout {
            frame,
            buffered,
            missing,
            waited,
        }) => assert_eq!(
            (frame, buffered, missing, waited),
            (0, 6, (1 << 20) - 6, secs(30))
        ),
        ref other => panic!("{other:?}"),
    }
    let notice = rig.notice_after_app_done(t0 + secs(35));
    assert_eq!(
        (notice.error.as_str(), notice.frame, notice.offset),
        ("frame_timeout", 0, 0)
    );
}

#[test]
fn a_frame_deadline_notice_names_the_frame_in_progress_and_its_offset() {
    // SPEC §6.3.1: frame 2 (at byte 13) is cut short in its header, then in its body.
    for cut in [1, 4, 7] {
        let t0 = Instant::now();
        let config = ConsumerConfig {
            frame_timeout: Some(secs(30)),
            ..ConsumerConfig::default()
        };
        let mut rig = Rig::new(config, t0);
        let mut wire = [frame(b"[1]"), frame(b"[]"), frame(b"[1,2]")].concat();
        wire.truncate(13 + cut);
        rig.feed(t0, &wire, usize::MAX);
        assert!(matches!(rig.conn.poll_read(t0), ReadOp::Read { .. }));
        rig.conn.handle_timeout(t0 + secs(30));
        rig.deliver();
        assert!(matches!(
            rig.failed,
            Some(Error::FrameTimeout { frame: 2, .. })
        ));
        let notice = rig.notice_after_app_done(t0 + secs(30));
        assert_eq!(
            (notice.error.as_str(), notice.frame, notice.offset),
            ("frame_timeout", 2, 13),
            "cut {cut} bytes into frame 2"
        );
    }
}

#[test]
fn an_oversized_frame_ends_the_connection_after_the_frames_before_it_with_a_notice() {
    let t0 = Instant::now();
    let config = ConsumerConfig {
        codec: framepipe_codec::Builder::new().max_frame_length(10),
        drain_timeout: secs(2),
        ..ConsumerConfig::default()
    };
    let mut rig = Rig::new(config, t0);
    let wire = [frame(b"ok"), frame(&[b'x'; 11]), frame(b"never")].concat();
    rig.feed(t0, &wire, 3);
    assert_eq!(rig.bodies.len(), 1);
    assert!(matches!(
        rig.failed,
        Some(Error::Frame(CodecError::FrameTooLarge {
            frame: 1,
            offset: 6,
            ..
        }))
    ));
    let notice = rig.notice_after_app_done(t0);
    assert_eq!(
        (notice.error.as_str(), notice.frame, notice.offset),
        ("frame_too_large", 1, 6)
    );
    // Draining: discard until the peer closes or the drain deadline.
    assert_eq!(rig.conn.poll_read(t0), ReadOp::Discard);
    assert_eq!(rig.conn.poll_timeout(), Some(t0 + secs(2)));
    rig.conn.handle_discarded(t0, 100);
    assert_eq!(rig.conn.state(), State::Draining);
    rig.conn.handle_timeout(t0 + secs(2));
    assert_eq!(rig.conn.poll_read(t0 + secs(2)), ReadOp::Close);
}

#[test]
fn a_clean_end_of_stream_closes_once_the_application_is_done_and_without_a_notice() {
    let t0 = Instant::now();
    let mut rig = Rig::new(ConsumerConfig::default(), t0);
    rig.feed(t0, &frame(b"[]"), usize::MAX);
    rig.eof(t0);
    assert!(rig.failed.is_none());
    assert_eq!(rig.conn.poll_read(t0), ReadOp::AwaitApp);
    assert_eq!(rig.conn.poll_transmit(), Transmit::Nothing);
    rig.conn.handle_app_done(t0);
    assert_eq!(rig.conn.poll_read(t0), ReadOp::Close);
}

#[test]
fn an_end_of_stream_inside_a_frame_is_truncated_and_sends_no_notice() {
    let t0 = Instant::now();
    let mut rig = Rig::new(ConsumerConfig::default(), t0);
    rig.feed(t0, &frame(b"abcdef")[..7], usize::MAX);
    rig.eof(t0);
    assert!(matches!(
        rig.failed,
        Some(Error::Frame(CodecError::Truncated {
            expected: 6,
            received: 3,
            ..
        }))
    ));
    rig.conn.handle_app_done(t0);
    assert_eq!(rig.conn.poll_read(t0), ReadOp::Close);
}

#[test]
fn shutdown_at_a_boundary_names_the_first_frame_not_read() {
    let t0 = Instant::now();
    let mut rig = Rig::new(ConsumerConfig::default(), t0);
    rig.feed(t0, &[frame(b"a"), frame(b"b")].concat(), usize::MAX);
    rig.conn.shutdown(t0);
    assert_eq!(rig.conn.state(), State::Flushing);
    let notice = rig.notice_after_app_done(t0);
    assert_eq!(
        (notice.error.as_str(), notice.frame, notice.offset),
        (codes::SHUTTING_DOWN, 2, 10)
    );
}

#[test]
fn shutdown_mid_frame_completes_that_frame_and_reads_nothing_after_it() {
    let t0 = Instant::now();
    let mut rig = Rig::new(ConsumerConfig::default(), t0);
    let wire = [frame(b"first"), frame(b"second"), frame(b"third")].concat();
    rig.feed(t0, &wire[..12], usize::MAX); // "first" and 3 bytes of "second"
    rig.conn.shutdown(t0);
    assert_eq!(rig.conn.state(), State::Finishing);
    // Offered everything else, it takes exactly the rest of "second".
    let taken = rig.feed(t0, &wire[12..], usize::MAX);
    assert_eq!(taken, 7);
    let bodies: Vec<_> = rig.bodies.iter().map(|b| b.2.clone()).collect();
    assert_eq!(bodies, [b"first".to_vec(), b"second".to_vec()]);
    assert_eq!(rig.notice_after_app_done(t0).frame, 2);
}

#[test]
fn a_rejection_drops_what_was_not_handed_on_and_sends_its_notice() {
    let t0 = Instant::now();
    let mut rig = Rig::new(ConsumerConfig::default(), t0);
    let wire = [frame(b"a"), frame(b"b")].concat();
    assert!(matches!(rig.conn.poll_read(t0), ReadOp::Reserve { .. }));
    // Feed without delivering, then reject: the undelivered frames and their memory go.
    let mut sent = 0;
    while sent < wire.len() {
        match rig.conn.poll_read(t0) {
            ReadOp::Reserve { bytes } => {
                let r = rig.pool.try_acquire(bytes).unwrap();
                rig.conn.grant_memory(t0, r);
            }
            ReadOp::Read { limit } => {
                let n = limit.min(wire.len() - sent);
                rig.conn.read_buf().put_slice(&wire[sent..sent + n]);
                rig.conn.handle_read(t0, n);
                sent += n;
            }
            ReadOp::Deliver => break,
            other => panic!("{other:?}"),
        }
    }
    let notice = Notice::new(codes::HANDLER_FAILED, 0, 0, "disk full");
    assert_eq!(
        rig.conn.reject(t0, notice.clone()),
        2,
        "both frames were read, neither handed on"
    );
    assert!(rig.conn.poll_event().is_none());
    assert_eq!(rig.pool.in_use(), 0, "every reservation was given back");
    assert_eq!(rig.conn.poll_read(t0), ReadOp::Transmit);
    let wire = rig.transmitted(t0);
    assert_eq!(Notice::read(&wire), NoticeRead::Notice(notice));
}

#[test]
fn a_refused_connection_writes_its_notice_then_drains_until_the_deadline() {
    let t0 = Instant::now();
    let pool = MemoryPool::new(1 << 20, 1 << 10);
    let notice = Notice::new(codes::CONNECTION_LIMIT, 0, 0, "busy");
    let config = ConsumerConfig {
        drain_timeout: Duration::from_millis(500),
        ..ConsumerConfig::default()
    };
    let mut conn = ConsumerConn::refusing(config, &pool, t0, notice);
    assert_eq!(conn.poll_read(t0), ReadOp::Transmit);
    let Transmit::Bytes(b) = conn.poll_transmit() else {
        panic!()
    };
    let n = b.len();
    conn.handle_written(t0, n);
    assert_eq!(conn.poll_transmit(), Transmit::Fin);
    conn.handle_fin_sent(t0 + secs(1) / 2);
    assert_eq!(conn.poll_timeout(), Some(t0 + secs(1)));
    conn.handle_timeout(t0 + secs(1));
    assert_eq!(conn.state(), State::Closed);
}

#[test]
fn a_notice_the_peer_does_not_take_within_a_second_is_given_up() {
    let t0 = Instant::now();
    let pool = MemoryPool::new(1 << 20, 1 << 10);
    let notice = Notice::new(codes::CONNECTION_LIMIT, 0, 0, "busy");
    let mut conn = ConsumerConn::refusing(ConsumerConfig::default(), &pool, t0, notice);
    assert_eq!(conn.poll_timeout(), Some(t0 + NOTICE_TIMEOUT));
    conn.handle_timeout(t0 + NOTICE_TIMEOUT);
    assert_eq!(conn.poll_read(t0 + NOTICE_TIMEOUT), ReadOp::Close);
}

#[test]
fn skipped_frames_are_frame_local_and_reading_goes_on() {
    let t0 = Instant::now();
    let config = ConsumerConfig {
        codec: framepipe_codec::Builder::new()
            .max_frame_length(4)
            .oversize_policy(OversizePolicy::Skip),
        ..ConsumerConfig::default()
    };
    let mut rig = Rig::new(config, t0);
    let wire = [frame(b"a"), frame(&[b'z'; 100]), frame(b"b")].concat();
    assert_eq!(rig.feed(t0, &wire, 7), wire.len());
    assert_eq!(rig.bodies.iter().map(|b| b.0).collect::<Vec<_>>(), [0, 2]);
    assert!(matches!(
        rig.frame_errors[..],
        [CodecError::FrameSkipped { frame: 1, .. }]
    ));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// SPEC §8.3: whatever the frame sizes and however the bytes are split into reads, the frames
    /// come out whole, in order, with their indices and offsets, and the memory they hold is
    /// exactly their bytes.
    #[test]
    fn any_split_gives_the_frames_sent(
        bodies in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..3000), 1..40),
        max_read in 1usize..5000,
        read_chunk in 32usize * 1024..100 * 1024,
    ) {
        let t0 = Instant::now();
        let config = ConsumerConfig { read_chunk, ..ConsumerConfig::default() };
        let mut rig = Rig::new(config, t0);
        let wire: Vec<u8> = bodies.iter().flat_map(|b| frame(b)).collect();
        prop_assert_eq!(rig.feed(t0, &wire, max_read), wire.len());
        rig.eof(t0);
        prop_assert!(rig.failed.is_none());
        let mut offset = 0u64;
        prop_assert_eq!(rig.bodies.len(), bodies.len());
        for (i, (got, sent)) in rig.bodies.iter().zip(&bodies).enumerate() {
            prop_assert_eq!(got, &(i as u64, offset, sent.clone()));
            offset += 4 + sent.len() as u64;
        }
        prop_assert_eq!(rig.pool.in_use(), 0);
    }
}
