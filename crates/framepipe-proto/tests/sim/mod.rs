//! A deterministic simulation of one session: a producer core and consumer cores joined by
//! in-memory byte pipes on a made-up clock, with connections cut at chosen byte offsets in either
//! direction (inside frames, headers, hellos, welcomes and acks alike), a consumer application that
//! reports what it handled in batches, and a session table that remembers what was handled.
//!
//! No I/O and no runtime: every run with the same `Plan` is the same run.

use std::collections::VecDeque;
use std::io;
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes};
use framepipe_codec::session::{ResumeSecret, SessionId};
use framepipe_flow::MemoryPool;
use framepipe_proto::consumer::{
    ConsumerConfig, ConsumerConn, Event, ReadOp, SessionStart, Transmit,
};
use framepipe_proto::producer::{
    IoVecs, OutFrame, ProducerSession, SessionConfig, SessionConn, SessionConnConfig, SessionEvent,
    WriteOp,
};

/// Where a connection is cut.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Cut {
    /// Cut the consumer-to-producer direction (acks, welcome) rather than the producer's.
    pub(crate) backwards: bool,
    /// After this many bytes of that direction on the connection.
    pub(crate) at: usize,
}

/// One simulated run.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    /// Body sizes of the frames the producer sends, in order.
    pub(crate) bodies: Vec<usize>,
    /// One cut per connection, in order; connections after the last cut are not cut.
    pub(crate) cuts: Vec<Cut>,
    /// The producer's retention budget.
    pub(crate) budget: usize,
    /// Acks every this many frames.
    pub(crate) ack_every: u32,
    /// The application reports what it handled after this many frames (or when it runs dry).
    pub(crate) report_every: u64,
    /// Most bytes a read or a write moves at once.
    pub(crate) chunk: usize,
    /// Run as with a session store that commits only when the application reports: the welcome
    /// names the last position reported (committed), not the last handled, and a connection's end
    /// reports nothing. Frames handled after the last report arrive again and must be dropped.
    pub(crate) store: bool,
}

/// What a run did.
#[derive(Debug, Default)]
pub(crate) struct Outcome {
    /// Sequence numbers handed to the application, in order.
    pub(crate) handled: Vec<u64>,
    /// Frames dropped as duplicates by the consumer cores.
    pub(crate) duplicates: u64,
    /// Connections made.
    pub(crate) connections: u64,
    /// The producer session's end.
    pub(crate) complete: bool,
    pub(crate) delivered: u64,
    pub(crate) unacked: u64,
    pub(crate) never_sent: u64,
    pub(crate) resumes: u64,
    /// Connections that were welcomed.
    pub(crate) welcomed: u64,
    pub(crate) reconnects: u64,
    /// The error a session ended with, if it did not complete.
    pub(crate) error: Option<String>,
}

/// The consumer's session table for the one session: what the application handled, and what it
/// reported (committed) and so may be acknowledged.
#[derive(Debug, Default)]
struct Slot {
    handled: u64,
    reported: u64,
}

struct Consumer {
    conn: ConsumerConn,
    pool: MemoryPool,
    /// Frames handed on and not yet reported as handled.
    unreported: u64,
    /// The producer's bytes not yet read, and whether the producer's direction has ended.
    inbox: VecDeque<u8>,
    eof: bool,
}

/// Runs `plan`: the session over as many connections as it takes.
pub(crate) fn run(plan: &Plan) -> Outcome {
    let t0 = Instant::now();
    let mut now = t0;
    let id = SessionId::from_u128(0x5e55_1011);
    let mut config = SessionConfig::new(id, ResumeSecret::from_bytes([9; 16]));
    config.budget = plan.budget;
    config.pacing.ack_every = plan.ack_every;
    config.reconnect_timeout = Duration::from_secs(3600);
    let mut session = Some(ProducerSession::new(config, now));
    let mut out = Outcome::default();
    let mut slot = Slot::default();
    let mut next_body = 0usize;
    let payload = Bytes::from(vec![b'7'; plan.bodies.iter().copied().max().unwrap_or(0)]);
    for attempt in 0.. {
        assert!(attempt < plan.cuts.len() + 50, "no end in sight: {out:?}");
        let cut = plan.cuts.get(attempt).copied();
        out.connections += 1;
        let mut producer = SessionConn::new(
            session.take().expect("given back"),
            SessionConnConfig::default(),
            now,
        );
        let pool = MemoryPool::new(8 << 20, 1 << 20);
        let mut consumer = Consumer {
            conn: ConsumerConn::new(ConsumerConfig::default(), &pool, now),
            pool,
            unreported: 0,
            inbox: VecDeque::new(),
            eof: false,
        };
        let mut back: VecDeque<u8> = VecDeque::new();
        let (mut sent, mut sent_back) = (0usize, 0usize);
        let mut ended = None;
        for _step in 0..1_000_000 {
            let mut progress = false;
            // The source: frames while the budget has room.
            while next_body < plan.bodies.len() {
                let frame = frame_of(&payload, plan.bodies[next_body]);
                if !producer.wants_frame(frame.wire_len()) {
                    break;
                }
                producer.push_frame(now, frame);
                next_body += 1;
                progress = true;
            }
            if next_body == plan.bodies.len() && !producer.session().is_finished() {
                producer.finish(now);
                progress = true;
            }
            // Producer → consumer, cut where planned.
            let mut iov = IoVecs::new();
            if producer.poll_transmit(&mut iov) == WriteOp::Write {
                let bytes: Vec<u8> = iov.as_slices().iter().flat_map(|s| s.to_vec()).collect();
                let mut n = bytes.len().min(plan.chunk);
                let limit = cut.filter(|c| !c.backwards).map(|c| c.at);
                if let Some(at) = limit {
                    n = n.min(at - sent.min(at));
                }
                if n == 0 {
                    producer.handle_write_error(now, io::ErrorKind::ConnectionReset.into());
                } else {
                    consumer.inbox.extend(&bytes[..n]);
                    sent += n;
                    producer.handle_written(now, n);
                }
                progress = true;
            }
            progress |= consumer.step(now, plan, &mut slot, &mut out);
            // Consumer → producer, cut where planned.
            if let Transmit::Bytes(bytes) = consumer.conn.poll_transmit() {
                let mut n = bytes.len().min(plan.chunk);
                if let Some(at) = cut.filter(|c| c.backwards).map(|c| c.at) {
                    n = n.min(at - sent_back.min(at));
                }
                if n == 0 {
                    consumer
                        .conn
                        .handle_write_error(now, io::ErrorKind::ConnectionReset.into());
                    producer.handle_read_error(now, io::ErrorKind::ConnectionReset.into());
                } else {
                    back.extend(&bytes[..n]);
                    sent_back += n;
                    consumer.conn.handle_written(now, n);
                }
                progress = true;
            } else if consumer.conn.poll_transmit() == Transmit::Fin {
                consumer.conn.handle_fin_sent(now);
                progress = true;
            }
            if !back.is_empty() {
                if let Some(buf) = producer.read_buf() {
                    let n = back.len().min(buf.len()).min(plan.chunk);
                    for (i, b) in back.drain(..n).enumerate() {
                        buf[i] = b;
                    }
                    producer.handle_read(now, n);
                    progress = true;
                }
            }
            if let Some(event) = producer.poll_event() {
                ended = Some(event);
                break;
            }
            if !progress && consumer.unreported > 0 {
                // A store commits on a timer when nothing else happens.
                consumer.report(now, &mut slot);
                progress = true;
            }
            if !progress {
                // Nothing moves: the clock goes to the next deadline.
                let next = [
                    producer.poll_timeout(),
                    consumer.conn.poll_timeout(),
                    consumer.conn.poll_upkeep(),
                ]
                .into_iter()
                .flatten()
                .min()
                .expect("a stuck simulation has a deadline");
                now = now.max(next);
                producer.handle_timeout(now);
                consumer.conn.handle_timeout(now);
            }
        }
        let event = ended.expect("the connection ended");
        // The consumer's side of the connection ends: what it read is handled, then it is gone.
        consumer.finish(now, plan, &mut slot, &mut out);
        out.duplicates += consumer.conn.duplicates();
        let mut s = producer.into_session();
        match event {
            SessionEvent::Complete => {
                out.complete = true;
                session = Some(s);
                break;
            }
            SessionEvent::Lost { retry: true, .. } => match s.next_attempt(now, 0.0) {
                Ok(at) => {
                    now = at;
                    session = Some(s);
                }
                Err(e) => {
                    out.error = Some(e.to_string());
                    session = Some(s);
                    break;
                }
            },
            SessionEvent::Lost { error, .. } => {
                out.error = Some(error.to_string());
                session = Some(s);
                break;
            }
            SessionEvent::FlushBatch => unreachable!("no batching here"),
        }
    }
    let s = session.expect("kept");
    out.delivered = s.delivered();
    out.unacked = s.unacked();
    out.never_sent = s.never_sent();
    out.resumes = s.counts().resumes;
    out.welcomed = s.counts().connections;
    out.reconnects = s.counts().reconnects;
    out
}

fn frame_of(payload: &Bytes, len: usize) -> OutFrame {
    OutFrame::with_header((len as u32).to_be_bytes(), payload.slice(..len))
}

impl Consumer {
    /// Everything the consumer core can do now; `true` if anything happened.
    fn step(&mut self, now: Instant, plan: &Plan, slot: &mut Slot, out: &mut Outcome) -> bool {
        let mut progress = false;
        for _ in 0..64 {
            match self.conn.poll_read(now) {
                ReadOp::Deliver => self.deliver(now, plan, slot, out),
                ReadOp::Handshake => {
                    let next = if plan.store {
                        slot.reported
                    } else {
                        slot.handled
                    };
                    let hello_next = self.conn.session_hello().expect("hello").next;
                    // An unknown session (none handled yet) resumes where the producer is.
                    let next = next.max(hello_next);
                    let handled = slot.handled.max(next);
                    self.conn
                        .accept_session(now, SessionStart { next, handled });
                    self.report(now, slot);
                }
                ReadOp::Reserve { bytes } => {
                    let r = self.pool.try_acquire(bytes).expect("room in the pool");
                    self.conn.grant_memory(now, r);
                }
                ReadOp::Read { limit } => {
                    if self.inbox.is_empty() && !self.eof {
                        return progress;
                    }
                    let n = limit.min(plan.chunk).min(self.inbox.len());
                    let bytes: Vec<u8> = self.inbox.drain(..n).collect();
                    self.conn.read_buf().put_slice(&bytes);
                    self.conn.handle_read(now, n);
                }
                ReadOp::AwaitApp => {
                    self.report(now, slot);
                    self.conn.handle_app_done(now);
                }
                ReadOp::Discard => {
                    if self.inbox.is_empty() && !self.eof {
                        return progress;
                    }
                    let n = self.inbox.len();
                    self.inbox.clear();
                    self.conn.handle_discarded(now, n);
                }
                ReadOp::Transmit | ReadOp::Close => return progress,
            }
            progress = true;
        }
        progress
    }

    /// The application handles each frame at once, in order, and reports in batches.
    fn deliver(&mut self, now: Instant, plan: &Plan, slot: &mut Slot, out: &mut Outcome) {
        while let Some(event) = self.conn.poll_event() {
            match event {
                Event::Frame(f) => {
                    let seq = f.seq.expect("a session frame is numbered");
                    assert_eq!(seq, slot.handled, "frames reach the handler in order");
                    out.handled.push(seq);
                    slot.handled = seq + 1;
                    self.unreported += 1;
                    if self.unreported >= plan.report_every {
                        self.report(now, slot);
                    }
                }
                Event::Hello(_) | Event::FrameError(_) | Event::Failed(_) => {}
            }
        }
        if self.inbox.is_empty() && !plan.store {
            self.report(now, slot); // ran dry
        }
    }

    fn report(&mut self, now: Instant, slot: &mut Slot) {
        self.unreported = 0;
        slot.reported = slot.handled;
        self.conn.handle_handled(now, slot.reported);
    }

    /// The connection is gone: frames handed on are handled and reported; the core closes.
    fn finish(&mut self, now: Instant, plan: &Plan, slot: &mut Slot, out: &mut Outcome) {
        self.conn
            .handle_read_error(now, io::ErrorKind::ConnectionReset.into());
        self.deliver(now, plan, slot, out);
        if !plan.store {
            self.report(now, slot);
        }
        self.conn.abandon();
    }
}
