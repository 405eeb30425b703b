//! The deterministic test harness (issue 11; STYLE §10, §14): a framepipe producer and consumer —
//! or either of them and a raw peer — joined in memory on a paused Tokio clock.
//!
//! # How it works
//! - [`Link::open`] joins two endpoints ([`End`], `AsyncRead + AsyncWrite`) with `tokio::io::duplex`
//!   pipes and a pump per direction that applies a [`Schedule`] of faults keyed by byte offset:
//!   cut (close both ways, or reset), stall, delay, or only split the stream into pieces
//!   ([`pipe`] says exactly what each does). Endpoint A is the producer's side, B the consumer's;
//!   [`Dir::Up`] is A → B (frames), [`Dir::Down`] B → A (notices, end of stream).
//! - [`pair`] puts a real producer (`Producer::builder().on(a, ..)`) on A and a real consumer
//!   (`Consumer::builder().listener(Incoming::new(..))`, one connection) on B; [`raw_producer`] and
//!   [`raw_consumer`] put a [`RawPeer`] (write given bytes, read what comes back) on one side, for
//!   hostile-peer cases.
//! - Tests run with `#[tokio::test(start_paused = true)]` (current-thread) or, in property tests,
//!   a current-thread runtime built with `start_paused(true)`. The pumps, the cores and the
//!   drivers spend no virtual time of their own (the drivers pass `tokio::time::Instant::now()` to
//!   the cores, SPEC §8.1.2), so the clock moves only when every task waits for a timer, and jumps
//!   to it: a 120 s timeout takes microseconds, and a deadline is asserted to the nanosecond
//!   ([`Clock`]).
//! - [`Recorder`] is a consumer handler that logs every frame it sees, with the virtual time, and
//!   can be told to take time over frames or to fail one.
//!
//! Beware: a task that never waits (a busy loop) stops the clock; a peer that writes without pause
//! never lets a timeout come.

// Each test file uses part of the harness; the items are public to the test crate only.
#![allow(dead_code, unreachable_pub)]

pub mod pipe;

use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use framepipe::codec::Notice;
use framepipe::consumer::{self, BoxError, Consumer, Delivery, Handler, Incoming, PeerAddr};
use framepipe::flow::queue::QueueLimits;
use framepipe::producer::{self, Producer, RawSender};
use futures::{Stream, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

#[allow(unused_imports)] // each test file uses some of them
pub use pipe::{Cut, Dir, End, Fault, Link, Schedule};

/// The connections a harness consumer gets: one, then none.
pub type Conns = futures::stream::Iter<std::vec::IntoIter<(End, PeerAddr)>>;
/// A consumer on the harness's in-memory listener.
pub type MemConsumer = Consumer<Incoming<Conns>>;
/// A producer connection on a harness endpoint.
pub type MemProducer = producer::Connection<End>;

/// Virtual time since the test began.
#[derive(Debug, Clone, Copy)]
pub struct Clock(Instant);

impl Clock {
    /// Starts counting now.
    pub fn start() -> Self {
        Clock(Instant::now())
    }

    /// Virtual time since [`Clock::start`].
    pub fn now(&self) -> Duration {
        Instant::now() - self.0
    }

    /// `at` as time since [`Clock::start`].
    pub fn at(&self, at: Instant) -> Duration {
        at - self.0
    }
}

/// Consumer settings for the harness: the defaults, sampled once a second (the sampler's ticks are
/// timers too; fewer of them, fewer wake-ups).
pub fn consumer_settings() -> consumer::Builder {
    Consumer::builder().sample_interval(Duration::from_secs(1))
}

/// Producer settings for the harness, likewise.
pub fn producer_settings() -> producer::Builder {
    Producer::builder().sample_interval(Duration::from_secs(1))
}

/// `settings` with a queue of one frame, for [`send_then_wait`]: a sender holding its one permit
/// waits in `reserve` until the connection ends.
pub fn one_at_a_time(settings: producer::Builder) -> producer::Builder {
    settings.queue_limits(QueueLimits::default().max_items(1))
}

/// How a producer's connection ended, and when.
#[derive(Debug)]
pub struct Ended {
    /// What `close` returned.
    pub outcome: Result<producer::Report, producer::Error>,
    /// When the connection ended (the sender saw its queue closed).
    pub at: Instant,
}

/// Sends `items` through `sender` (each after its delay), then stays open, able to send more (a
/// permit in hand), until the connection ends; then closes. `sender` must come from
/// [`one_at_a_time`] settings. (A stream source that waits is not used for this: see
/// `a_stream_source_waiting_for_its_next_item_learns_the_connection_ended_at_once`.)
pub async fn send_then_wait(sender: RawSender, items: Vec<(Duration, Bytes)>) -> Ended {
    for (wait, item) in items {
        tokio::time::sleep(wait).await;
        if sender.send(item).await.is_err() {
            break;
        }
    }
    let held = sender.reserve().await;
    assert!(held.is_ok(), "still open after sending: {held:?}");
    let ended = sender.reserve().await;
    assert!(
        matches!(ended, Err(producer::Error::Closed(_))),
        "the second permit waits for the end: {ended:?}"
    );
    let at = Instant::now();
    drop(held);
    Ended {
        outcome: sender.close().await,
        at,
    }
}

/// `bodies` all at once, for [`send_then_wait`].
pub fn now_all(bodies: Vec<Bytes>) -> Vec<(Duration, Bytes)> {
    bodies.into_iter().map(|b| (Duration::ZERO, b)).collect()
}

/// A consumer whose listener yields `io` (named `producer`) once.
pub fn consumer_on(settings: consumer::Builder, io: End) -> MemConsumer {
    let conns = futures::stream::iter(vec![(io, PeerAddr::other("producer"))]);
    settings
        .listener(Incoming::new(conns, "mem"))
        .expect("consumer settings")
}

/// A producer connection on `io`, to a consumer named `consumer`.
pub fn producer_on(settings: producer::Builder, io: End) -> MemProducer {
    settings.on(io, PeerAddr::other("consumer"))
}

/// A real producer and a real consumer, joined by a link.
#[derive(Debug)]
pub struct Pair {
    /// The producer's connection (on endpoint A).
    pub producer: MemProducer,
    /// The consumer (its one connection is endpoint B).
    pub consumer: MemConsumer,
    /// The link between them.
    pub link: Link,
}

/// A producer with `p` and a consumer with `c`, joined by a link with `schedule`.
pub fn pair(p: producer::Builder, c: consumer::Builder, schedule: &Schedule) -> Pair {
    let (a, b, link) = Link::open(schedule);
    Pair {
        producer: producer_on(p, a),
        consumer: consumer_on(c, b),
        link,
    }
}

/// A real consumer with `c`, and a raw peer in the producer's place.
pub fn raw_producer(c: consumer::Builder, schedule: &Schedule) -> (MemConsumer, RawPeer, Link) {
    let (a, b, link) = Link::open(schedule);
    (consumer_on(c, b), RawPeer::new(a), link)
}

/// A real producer with `p`, and a raw peer in the consumer's place.
pub fn raw_consumer(p: producer::Builder, schedule: &Schedule) -> (MemProducer, RawPeer, Link) {
    let (a, b, link) = Link::open(schedule);
    (producer_on(p, a), RawPeer::new(b), link)
}

/// What a raw peer read until the other side closed its end or failed.
#[derive(Debug)]
pub struct Received {
    /// Every byte read.
    pub bytes: Vec<u8>,
    /// `Ok` for an end of stream, else the read's error.
    pub end: io::Result<()>,
    /// When the stream ended.
    pub at: Instant,
}

impl Received {
    /// The bytes as exactly one notice (SPEC §6.3), if they are one.
    pub fn notice(&self) -> Option<Notice> {
        Notice::parse_frame(&self.bytes)
    }
}

/// A peer that is not framepipe: it writes the bytes it is given and reads what comes back.
#[derive(Debug)]
pub struct RawPeer {
    io: End,
}

impl RawPeer {
    fn new(io: End) -> Self {
        RawPeer { io }
    }

    /// Writes all of `bytes`.
    pub async fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.io.write_all(bytes).await
    }

    /// Shuts down its writing direction (FIN); it can still read.
    pub async fn finish(&mut self) -> io::Result<()> {
        self.io.shutdown().await
    }

    /// Reads exactly `n` bytes.
    pub async fn read_exact(&mut self, n: usize) -> io::Result<Vec<u8>> {
        let mut buf = vec![0; n];
        self.io.read_exact(&mut buf).await?;
        Ok(buf)
    }

    /// Reads until end of stream or an error.
    pub async fn read_to_end(&mut self) -> Received {
        let mut bytes = Vec::new();
        let end = self.io.read_to_end(&mut bytes).await.map(drop);
        Received {
            bytes,
            end,
            at: Instant::now(),
        }
    }
}

/// One frame on the wire (SPEC §1.1).
pub fn frame(body: &[u8]) -> Vec<u8> {
    let mut wire = (body.len() as u32).to_be_bytes().to_vec();
    wire.extend_from_slice(body);
    wire
}

/// A body of `len` bytes (at least 8) that carries `seq`: 8 bytes big-endian, then a pattern.
pub fn body(seq: u64, len: usize) -> Bytes {
    assert!(len >= 8, "a body carries its 8-byte sequence number");
    let mut b = seq.to_be_bytes().to_vec();
    b.extend((8..len).map(|i| (seq as usize * 31 + i) as u8));
    Bytes::from(b)
}

/// The sequence number [`body`] put in.
pub fn seq_of(body: &[u8]) -> u64 {
    u64::from_be_bytes(body[..8].try_into().expect("8 bytes"))
}

/// Bodies `0..n` of `len` bytes each.
pub fn bodies(n: u64, len: usize) -> Vec<Bytes> {
    (0..n).map(|seq| body(seq, len)).collect()
}

/// A source that yields each item after waiting its delay (counted from the item before), then
/// ends, or, if `then_wait`, never ends (a producer that goes quiet without closing).
pub fn paced(
    items: Vec<(Duration, Bytes)>,
    then_wait: bool,
) -> impl Stream<Item = Bytes> + Send + 'static {
    let items = futures::stream::iter(items).then(|(wait, item)| async move {
        tokio::time::sleep(wait).await;
        item
    });
    let tail = futures::stream::pending().take(usize::from(then_wait));
    items.chain(tail)
}

/// `bodies` all at once, then quiet (if `then_wait`) or the end.
pub fn at_once(bodies: Vec<Bytes>, then_wait: bool) -> impl Stream<Item = Bytes> + Send + 'static {
    paced(
        bodies.into_iter().map(|b| (Duration::ZERO, b)).collect(),
        then_wait,
    )
}

/// A frame as the handler saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    /// Its index in the connection.
    pub frame: u64,
    /// Its body.
    pub body: Bytes,
    /// When the handler got it.
    pub at: Duration,
}

#[derive(Debug, Default)]
struct Log {
    seen: Vec<Seen>,
    handled: Vec<u64>,
}

/// A consumer handler that logs what it sees and when, taking `hold` over each frame (or what
/// [`Recorder::hold_frame`] says), and failing the frame [`Recorder::fail`] names.
#[derive(Debug, Clone)]
pub struct Recorder {
    clock: Clock,
    hold: Duration,
    holds: Vec<(u64, Duration)>,
    fail: Option<u64>,
    log: Arc<Mutex<Log>>,
}

impl Recorder {
    /// Logs against `clock`; takes no time and never fails.
    pub fn new(clock: Clock) -> Self {
        Recorder {
            clock,
            hold: Duration::ZERO,
            holds: Vec::new(),
            fail: None,
            log: Arc::default(),
        }
    }

    /// Each frame takes `d`.
    pub fn hold_each(mut self, d: Duration) -> Self {
        self.hold = d;
        self
    }

    /// Frame `frame` takes `d`.
    pub fn hold_frame(mut self, frame: u64, d: Duration) -> Self {
        self.holds.push((frame, d));
        self
    }

    /// Frame `frame` fails (after its hold).
    pub fn fail(mut self, frame: u64) -> Self {
        self.fail = Some(frame);
        self
    }

    fn log(&self) -> std::sync::MutexGuard<'_, Log> {
        self.log.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Every frame the handler was given, in order.
    pub fn seen(&self) -> Vec<Seen> {
        self.log().seen.clone()
    }

    /// The frames the handler returned `Ok` for, in order.
    pub fn handled(&self) -> Vec<u64> {
        self.log().handled.clone()
    }

    /// The sequence numbers of the bodies seen, in order.
    pub fn seqs(&self) -> Vec<u64> {
        self.log().seen.iter().map(|s| seq_of(&s.body)).collect()
    }
}

impl Handler<Bytes> for Recorder {
    async fn handle(&self, d: Delivery<Bytes>) -> Result<(), BoxError> {
        let seen = Seen {
            frame: d.frame,
            body: d.item.clone(),
            at: self.clock.now(),
        };
        self.log().seen.push(seen);
        let hold = self
            .holds
            .iter()
            .find(|(f, _)| *f == d.frame)
            .map_or(self.hold, |(_, h)| *h);
        if !hold.is_zero() {
            tokio::time::sleep(hold).await;
        }
        if self.fail == Some(d.frame) {
            return Err(format!("frame {} refused by the test", d.frame).into());
        }
        self.log().handled.push(d.frame);
        Ok(())
    }
}
