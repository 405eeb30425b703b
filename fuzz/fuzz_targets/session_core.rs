//! The session cores against a hostile peer (SPEC §10): arbitrary bytes from a "producer" into a
//! consumer core that offers sessions, or from a "consumer" into a session producer core, in chunks
//! of arbitrary size, interleaved with the core's own work and with time passing.
//!
//! Input: byte 0 = side (even: the consumer core, odd: the producer core); byte 1 = chunk size − 1;
//! byte 2 = milliseconds to advance the clock between chunks; the rest is the peer's bytes.
//! Asserts: no panic; the consumer core never holds more than its memory limit; frames it hands on
//! are numbered consecutively; the producer core retains no more than its budget plus one frame,
//! and its counts add up to the frames it accepted.
#![no_main]

use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes};
use framepipe_codec::session::{ResumeSecret, SessionId};
use framepipe_flow::MemoryPool;
use framepipe_proto::consumer::{ConsumerConfig, ConsumerConn, Event, ReadOp, SessionStart};
use framepipe_proto::producer::{
    IoVecs, OutFrame, ProducerSession, SessionConfig, SessionConn, SessionConnConfig, WriteOp,
};
use libfuzzer_sys::fuzz_target;

const MEMORY: usize = 1 << 20;
const BUDGET: usize = 4_096;

fuzz_target!(|data: &[u8]| {
    let [side, chunk, tick, peer @ ..] = data else {
        return;
    };
    let step = *chunk as usize + 1;
    let tick = Duration::from_millis(u64::from(*tick));
    if side % 2 == 0 {
        consumer(peer, step, tick);
    } else {
        producer(peer, step, tick);
    }
});

fn consumer(peer: &[u8], step: usize, tick: Duration) {
    let mut now = Instant::now();
    let pool = MemoryPool::new(MEMORY, MEMORY / 4);
    let mut config = ConsumerConfig::default();
    config.codec = config.codec.max_frame_length(64 * 1024);
    let mut conn = ConsumerConn::new(config, &pool, now);
    let mut expected_seq: Option<u64> = None;
    let mut pieces = peer.chunks(step);
    let mut handled = 0u64;
    for _ in 0..100_000 {
        assert!(pool.in_use() <= MEMORY, "over the memory limit");
        match conn.poll_read(now) {
            ReadOp::Deliver => {
                while let Some(event) = conn.poll_event() {
                    if let Event::Frame(f) = event {
                        if let Some(seq) = f.seq {
                            assert!(expected_seq.is_none_or(|e| e == seq), "numbered in order");
                            expected_seq = Some(seq + 1);
                            handled = seq + 1;
                        }
                    }
                }
                conn.handle_handled(now, handled);
            }
            ReadOp::Handshake => {
                let next = conn.session_hello().map_or(0, |h| h.next);
                expected_seq = Some(next);
                handled = next;
                conn.accept_session(now, SessionStart { next, handled: next });
            }
            ReadOp::Reserve { bytes } => match pool.try_acquire(bytes) {
                Some(r) => conn.grant_memory(now, r),
                None => return,
            },
            ReadOp::Read { limit } => {
                let Some(piece) = pieces.next() else {
                    conn.handle_read(now, 0);
                    continue;
                };
                let n = piece.len().min(limit);
                conn.read_buf().put_slice(&piece[..n]);
                conn.handle_read(now, n);
                now += tick;
                conn.handle_timeout(now);
            }
            ReadOp::AwaitApp => conn.handle_app_done(now),
            ReadOp::Transmit => match conn.poll_transmit() {
                framepipe_proto::consumer::Transmit::Bytes(b) => {
                    let n = b.len();
                    conn.handle_written(now, n)
                }
                framepipe_proto::consumer::Transmit::Fin => conn.handle_fin_sent(now),
                framepipe_proto::consumer::Transmit::Nothing => return,
            },
            ReadOp::Discard => conn.handle_discarded(now, 0),
            ReadOp::Close => return,
        }
        // Control frames written while reading.
        if let framepipe_proto::consumer::Transmit::Bytes(b) = conn.poll_transmit() {
            let n = b.len();
            conn.handle_written(now, n);
        }
    }
}

fn producer(peer: &[u8], step: usize, tick: Duration) {
    let mut now = Instant::now();
    let mut config = SessionConfig::new(SessionId::from_u128(7), ResumeSecret::from_bytes([7; 16]));
    config.budget = BUDGET;
    let session = ProducerSession::new(config, now);
    let mut conn = SessionConn::new(session, SessionConnConfig::default(), now);
    let body = Bytes::from_static(&[b'1'; 300]);
    let mut pushed = 0u64;
    for piece in peer.chunks(step) {
        while pushed < 1_000 {
            let frame = OutFrame::with_header(300u32.to_be_bytes(), body.clone());
            if !conn.wants_frame(frame.wire_len()) {
                break;
            }
            conn.push_frame(now, frame);
            pushed += 1;
        }
        let mut iov = IoVecs::new();
        if conn.poll_transmit(&mut iov) == WriteOp::Write {
            let n = iov.total().min(step * 7);
            conn.handle_written(now, n);
        }
        let Some(buf) = conn.read_buf() else {
            break;
        };
        let n = piece.len().min(buf.len());
        buf[..n].copy_from_slice(&piece[..n]);
        conn.handle_read(now, n);
        now += tick;
        conn.handle_timeout(now);
        let s = conn.session();
        assert!(s.retention().bytes() <= BUDGET + 304, "over the budget");
        assert_eq!(s.delivered() + s.unacked() + s.never_sent(), s.accepted());
        if conn.poll_event().is_some() {
            break;
        }
    }
}
