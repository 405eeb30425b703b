//! A session producer (SPEC §10): a stream of payloads to one consumer across as many connections
//! as it takes, each frame handled exactly once, in order, while the consumer process lives.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use framepipe_codec::session::{Pacing, ResumeSecret, SessionId};
use framepipe_flow::SocketSet;
use framepipe_proto::backoff::Backoff;
use framepipe_proto::producer::{ProducerSession, SessionConfig, SessionConnConfig};
use futures::Stream;
use serde::Serialize;

use crate::builder::Builder;
use crate::connector::{Connect, TcpConnect, UnixConnect};
use crate::queue::{Grant, SendQueue};
use crate::sender::{spawn_driver, LastHandle};
use crate::session_driver::SessionDriver;
use crate::stats::{Report, SessionProgress, Snapshot, Stats};
use crate::Error;
use crate::{RawSender, Sender};

/// A session to a consumer, not yet started: set it up, then [`send_json`](Session::send_json) or
/// [`send_raw`](Session::send_raw). Made by [`Builder::session`].
///
/// ```no_run
/// # async fn f() -> Result<(), framepipe_producer::Error> {
/// use std::time::Duration;
/// use framepipe_producer::{generator, Producer};
///
/// let session = Producer::builder()
///     .session("127.0.0.1:7000")
///     .reconnect_timeout(Duration::from_secs(30));
/// let report = session.send_json(generator::reference_frames(1_000, 50)).await?;
/// assert_eq!(report.progress.delivered, 1_000); // every frame acknowledged: handled by the consumer
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Session {
    connect: Arc<dyn Connect>,
    builder: Builder,
    config: SessionConfig,
    conn: SessionConnConfig,
    stats: Stats,
    sockets: SocketSet,
}

impl Builder {
    /// A session to the consumer at TCP `addr` (SPEC §10), with these settings: frames are
    /// numbered, kept until the consumer acknowledges them, and sent again after a connection fails,
    /// on a new connection, after a backoff; the consumer drops the ones it already has.
    ///
    /// Memory: the queue's budget ([`Builder::budget`]) and as much again for the frames retained
    /// until acknowledged (the session's budget, [`Session::budget`]).
    pub fn session(self, addr: impl Into<String>) -> Session {
        let connect = TcpConnect::new(addr, self.socket);
        self.session_with(connect)
    }

    /// A session to the consumer at the Unix domain socket `path` (SPEC §5.2, §10), as
    /// [`session`](Self::session) is over TCP.
    pub fn session_unix(self, path: impl Into<std::path::PathBuf>) -> Session {
        let connect = UnixConnect::new(path, self.socket);
        self.session_with(connect)
    }

    /// A session over any transport: `connect` opens each of its connections, the first and one
    /// after each that is lost (an in-memory pipe in tests, a TLS stream, …; see
    /// [`connect_fn`](crate::connect_fn)). Otherwise as [`session`](Self::session).
    pub fn session_with(self, connect: impl Connect) -> Session {
        let sockets = SocketSet::new();
        // Both from the thread's CSPRNG (ChaCha, seeded by the operating system): the secret is
        // what keeps the session the producer's own (SPEC §10.4.5).
        let mut config = SessionConfig::new(
            SessionId::from_u128(rand::random()),
            ResumeSecret::from_bytes(rand::random()),
        );
        config.budget = self.queue.get_max_bytes();
        config.max_frame_length = self.max_frame_length;
        Session {
            connect: Arc::new(connect),
            config,
            conn: SessionConnConfig {
                write_batch_bytes: self.write_batch_bytes,
                stall_timeout: None,
            },
            stats: Stats::for_session(sockets.clone()),
            sockets,
            builder: self,
        }
    }
}

impl Session {
    /// The session's identity, chosen at random.
    pub fn id(&self) -> SessionId {
        self.config.session
    }

    /// A live view of the session's counters and stages (`encoded`, `queue`, `retained`).
    pub fn stats(&self) -> Stats {
        self.stats.clone()
    }

    /// Most bytes of frames kept until acknowledged (default: the queue's budget, 512 KiB). The
    /// source is not polled while it is full, so acks are part of the backpressure (SPEC §10.2).
    pub fn budget(mut self, bytes: usize) -> Self {
        self.config.budget = bytes.max(1);
        self
    }

    /// How long the session may go without a connection before it gives up with an error that
    /// says what became of every frame (default 60 s, SPEC §10.1).
    pub fn reconnect_timeout(mut self, timeout: Duration) -> Self {
        self.config.reconnect_timeout = timeout;
        self
    }

    /// The delays between reconnect attempts (default 100 ms, 250 ms, 500 ms, 1 s, 2.5 s, then
    /// 5 s, ±10%; SPEC §10.1).
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.config.backoff = backoff;
        self
    }

    /// The pacing proposed to the consumer: acks every `ack_every` frames or `ack_interval_ms`,
    /// heartbeats after `heartbeat_ms` of silence; 0 leaves a field to the consumer (default 32
    /// frames, 20 ms, 5 s; SPEC §10.4).
    pub fn pacing(mut self, pacing: Pacing) -> Self {
        self.config.pacing = pacing;
        self
    }

    /// The slow-consumer policy (SPEC §10.6): `None` (the default) waits for as long as the
    /// consumer shows it is alive; `Some(d)` drops a connection on which the consumer has taken no
    /// byte for `d` while bytes wait, and resumes on a new one.
    pub fn disconnect_stalled_after(mut self, stall: Option<Duration>) -> Self {
        self.conn.stall_timeout = stall;
        self
    }

    /// Sends every item of `source` as one typed frame (compact JSON), across as many connections
    /// as it takes, and returns once the consumer has acknowledged every frame and said goodbye.
    ///
    /// # Backpressure and memory
    /// `source` is polled only while the queue has room, and the queue drains only while the
    /// session's retention has room: frames leave the retention when the consumer acknowledges
    /// them. While no connection is up, nothing is taken.
    ///
    /// # Errors
    /// [`Error::Session`] when the session gives up (`reconnect_timeout`) or the consumer refuses
    /// it for good, with how many frames were delivered, unacknowledged and never sent;
    /// [`Error::Encode`] for an item that cannot be encoded (after the frames before it).
    pub async fn send_json<S>(self, source: S) -> Result<SessionReport, Error>
    where
        S: Stream,
        S::Item: Serialize,
    {
        self.send_stream(source, |queue, grant, item| queue.send_json(grant, &item))
            .await
    }

    /// Sends every item of `source` as one frame whose body is the item's bytes, unchanged, like
    /// [`send_json`](Self::send_json).
    pub async fn send_raw<S>(self, source: S) -> Result<SessionReport, Error>
    where
        S: Stream<Item = Bytes>,
    {
        self.send_stream(source, |queue, grant, body| queue.send_raw(grant, body))
            .await
    }

    /// A handle for sending typed items as they come (SPEC §6.7), in this session: the same
    /// [`Sender`] as a plain connection's — `reserve`, `try_reserve` (which fails at once with
    /// [`Error::Full`] while the queue holds its budget), `Sink`, `close`, `close_within` — over a
    /// session that reconnects. Its driver runs in a task of its own; must be called inside a Tokio
    /// runtime.
    ///
    /// `close` returns once every frame is acknowledged (`Report::confirmed`); `close_within`
    /// abandons the session at its deadline with [`Error::Session`], which says what was delivered,
    /// unacknowledged and never sent. [`Stats::session_progress`] has the session's counts at any
    /// time.
    pub fn sender<I: Serialize>(self) -> Sender<I> {
        Sender::new(self.spawn())
    }

    /// A handle for sending raw bodies as they come, in this session; like [`Session::sender`].
    pub fn raw_sender(self) -> RawSender {
        RawSender::new(self.spawn())
    }

    fn spawn(self) -> Arc<LastHandle> {
        let stats = self.stats.clone();
        let (queue, driver) = self.split();
        let driver = async move {
            let report = driver.await?;
            Ok(Report {
                snapshot: report.snapshot,
                confirmed: report.complete,
            })
        };
        spawn_driver(queue, stats, driver)
    }

    /// The session's queue and its driver, not yet running.
    fn split(self) -> (Arc<SendQueue>, SessionDriver) {
        let queue = SendQueue::new(
            self.builder.queue.get_max_bytes(),
            self.builder.queue.get_max_items(),
            self.builder.max_frame_length,
            self.builder.batching,
            self.stats.clone(),
        );
        let sampler = self
            .stats
            .monitor()
            .spawn_sampler(self.builder.sample_interval);
        let now = tokio::time::Instant::now().into_std();
        let driver = SessionDriver::new(
            self.connect,
            self.conn,
            queue.clone(),
            self.stats.clone(),
            self.sockets,
            ProducerSession::new(self.config, now),
            sampler,
        );
        (queue, driver)
    }

    async fn send_stream<S, F>(self, source: S, send: F) -> Result<SessionReport, Error>
    where
        S: Stream,
        F: Fn(&SendQueue, Grant, S::Item) -> Result<(), Error>,
    {
        let (queue, driver) = self.split();
        let produce = crate::queue::pump(&queue, source, send);
        let mut produce = std::pin::pin!(produce);
        let mut driver = std::pin::pin!(driver);
        let (produced, sent) = tokio::select! {
            biased;
            produced = &mut produce => (produced, driver.await),
            sent = &mut driver => (Ok(()), sent),
        };
        let report = sent?;
        produced.map(|()| report)
    }
}

/// Time to resume after a lost connection: from the loss to the welcome of the next connection.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ResumeTimes {
    /// Resumes measured.
    pub count: usize,
    /// Median, in milliseconds.
    pub p50_ms: f64,
    /// 99th percentile (nearest rank), in milliseconds.
    pub p99_ms: f64,
    /// Longest, in milliseconds.
    pub max_ms: f64,
}

impl ResumeTimes {
    fn of(outages: &[Duration]) -> Option<Self> {
        let mut ms: Vec<f64> = outages.iter().map(|d| d.as_secs_f64() * 1e3).collect();
        ms.sort_by(f64::total_cmp);
        let rank = |q: f64| ms[((q * ms.len() as f64).ceil() as usize).clamp(1, ms.len()) - 1];
        (!ms.is_empty()).then(|| ResumeTimes {
            count: ms.len(),
            p50_ms: rank(0.5),
            p99_ms: rank(0.99),
            max_ms: ms[ms.len() - 1],
        })
    }
}

/// What a session did. Serializes to JSON.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SessionReport {
    /// The final counters and stage peaks (`frames_written` counts frames written at least once;
    /// `bytes_written` every byte, resent ones included).
    #[serde(flatten)]
    pub snapshot: Snapshot,
    /// The session's fingerprint (`SessionId::fingerprint`): never the whole id (SPEC §10.4.6).
    pub session: String,
    /// Items taken from the source.
    pub pulled: u64,
    /// What became of the frames, and the connections it took.
    #[serde(flatten)]
    pub progress: SessionProgress,
    /// Frames written again after a resume.
    pub resent: u64,
    /// Acks received.
    pub acks: u64,
    /// Time to resume after each lost connection, when there was one.
    pub resume_times: Option<ResumeTimes>,
    /// Every frame was acknowledged and the consumer said goodbye.
    pub complete: bool,
}

impl SessionReport {
    pub(crate) fn new(
        stats: &Stats,
        session: &ProducerSession,
        complete: bool,
        outages: &[Duration],
    ) -> Self {
        let counts = session.counts();
        let snapshot = stats.snapshot();
        SessionReport {
            session: session.id().to_string(),
            pulled: snapshot.items_sent,
            progress: SessionProgress::of(session),
            resent: counts.resent,
            acks: counts.acks,
            resume_times: ResumeTimes::of(outages),
            complete,
            snapshot,
        }
    }
}
