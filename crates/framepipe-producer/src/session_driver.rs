//! The driver of a session producer (SPEC §10): connects, runs a [`SessionConn`] over the
//! connection, and when it is lost waits out the backoff and connects again, until the session
//! is complete or gives up.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use framepipe_flow::{Sampler, SocketProbe, SocketSet, Unprobed};
use framepipe_proto::producer::{
    IoVecs, OutFrame, ProducerSession, SessionConn, SessionConnConfig, SessionEvent, WriteOp,
};
use rand::{rngs::SmallRng, RngExt, SeedableRng};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

use crate::connector::{Connect, Connecting, Link, Transport};
use crate::queue::{FrameSink, SendQueue};
use crate::session::SessionReport;
use crate::stats::Stats;
use crate::Error;

/// Where the driver is.
enum Phase {
    /// Waiting for the next attempt (`sleep`).
    Waiting,
    Connecting(Connecting),
    /// Boxed: the core is a few hundred bytes, the other phases a pointer.
    Running(Box<Running>),
    Over,
}

/// A connection and its session core.
struct Running {
    io: Box<dyn Transport>,
    /// The socket under the transport, if it can be probed (and reset).
    probe: Option<Arc<dyn SocketProbe>>,
    /// Counts the connection as unprobed while it lives, when there is no probe.
    _unprobed: Option<Unprobed>,
    conn: SessionConn,
}

impl Running {
    /// Makes the coming close a reset, where the transport can (SPEC §10.6).
    fn reset_on_close(&self) {
        if let Some(probe) = &self.probe {
            let _ = probe.reset_on_close();
        }
    }
}

/// Drives a session to its end. A future: it returns the session's report, or the error that
/// ended it.
pub(crate) struct SessionDriver {
    /// Opens each connection.
    connect: Arc<dyn Connect>,
    /// How logs and errors name the consumer.
    pub(crate) addr: String,
    pub(crate) conn_config: SessionConnConfig,
    pub(crate) queue: Arc<SendQueue>,
    pub(crate) stats: Stats,
    pub(crate) sockets: SocketSet,
    pub(crate) session: Option<ProducerSession>,
    phase: Phase,
    sleep: Pin<Box<Sleep>>,
    rng: SmallRng,
    /// The queue has no more frames to give.
    finished: bool,
    /// Bytes shown in the `retained` stage.
    retained_shown: usize,
    /// Bytes written on the connections before the current one.
    bytes_before: u64,
    /// The last connection whose welcome was logged.
    welcomed_logged: u64,
    /// Time from each lost connection to the welcome of the next (SPEC §10.1).
    pub(crate) outages: Vec<Duration>,
    /// The application's close deadline (`Sender::close_within`): the session is abandoned then.
    deadline: Option<(Instant, Pin<Box<Sleep>>)>,
    /// When the close began, for the error.
    closing_since: Option<Instant>,
    _sampler: Sampler,
}

fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

/// The session core as the queue's sink: it takes a frame when the retention has room for it.
struct Retaining<'a> {
    conn: &'a mut SessionConn,
    now: Instant,
}

impl FrameSink for Retaining<'_> {
    fn admits(&self, len: usize) -> bool {
        self.conn.wants_frame(len)
    }

    fn push(&mut self, frame: OutFrame) {
        self.conn.push_frame(self.now, frame);
    }
}

impl SessionDriver {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        connect: Arc<dyn Connect>,
        conn_config: SessionConnConfig,
        queue: Arc<SendQueue>,
        stats: Stats,
        sockets: SocketSet,
        session: ProducerSession,
        sampler: Sampler,
    ) -> Self {
        let connecting = connect.connect();
        SessionDriver {
            addr: connect.target(),
            connect,
            conn_config,
            queue,
            stats,
            sockets,
            session: Some(session),
            phase: Phase::Connecting(connecting),
            sleep: Box::pin(tokio::time::sleep_until(tokio::time::Instant::now())),
            rng: SmallRng::from_rng(&mut rand::rng()),
            finished: false,
            retained_shown: 0,
            bytes_before: 0,
            welcomed_logged: 0,
            outages: Vec::new(),
            deadline: None,
            closing_since: None,
            _sampler: sampler,
        }
    }

    /// The session, wherever it is now.
    fn session(&self) -> &ProducerSession {
        match &self.phase {
            Phase::Running(r) => r.conn.session(),
            _ => self.session.as_ref().expect("held while not running"),
        }
    }

    /// The connection attempt or the connection failed: wait for the next attempt, or give up.
    fn lost(&mut self, error: String) -> Option<Result<SessionReport, Error>> {
        let now = now();
        let spread = self.rng.random_range(-1.0..=1.0);
        let session = self.session.as_mut().expect("given back");
        let result = session.next_attempt(now, spread);
        self.stats.set_session_progress(session);
        match result {
            Ok(at) => {
                tracing::warn!(addr = %self.addr, session = %session.id(),
                    retry_in_ms = at.saturating_duration_since(now).as_millis() as u64,
                    "session connection lost: {error}");
                self.sleep.as_mut().reset(at.into());
                self.phase = Phase::Waiting;
                None
            }
            Err(e) => Some(Err(self.fail(e))),
        }
    }

    fn fail(&mut self, source: framepipe_proto::Error) -> Error {
        // Frames still queued were taken from the source and never reached the session.
        let dropped = self.queue.fail();
        self.phase = Phase::Over;
        let s = self.session.as_ref().expect("given back");
        let error = Error::Session {
            session: s.id().to_string(),
            delivered: s.delivered(),
            unacked: s.unacked(),
            never_sent: s.never_sent() + dropped,
            source,
        };
        tracing::warn!(addr = %self.addr, session = %s.id(), code = error.code(), "{error}");
        crate::metrics::record_error(error.code());
        error
    }

    /// A connection was made: its session core starts with a hello.
    fn connected(&mut self, link: Link) {
        let Link { io, probe, .. } = link;
        let unprobed = match &probe {
            Some(probe) => {
                self.sockets.register(probe.clone());
                None
            }
            None => Some(self.sockets.register_unprobed()),
        };
        let session = self.session.take().expect("held while connecting");
        let mut conn = SessionConn::new(session, self.conn_config, now());
        if self.finished {
            conn.finish(now());
        }
        self.phase = Phase::Running(Box::new(Running {
            io,
            probe,
            _unprobed: unprobed,
            conn,
        }));
    }

    /// One pass over a running connection; `true` if anything moved.
    fn step(&mut self, cx: &mut Context<'_>) -> bool {
        let Phase::Running(running) = &mut self.phase else {
            return false;
        };
        let Running { io, conn, .. } = &mut **running;
        let now = now();
        let mut progress = false;
        if !self.finished {
            let taken = self.queue.take(cx, &mut Retaining { conn, now });
            if let (Some(at), Some(linger)) = (taken.linger_from, self.queue.linger()) {
                conn.start_linger(at + linger);
            }
            if let Some(at) = taken.deadline {
                self.deadline = Some((at, Box::pin(tokio::time::sleep_until(at.into()))));
                self.closing_since.get_or_insert(now);
            }
            if taken.finished {
                self.finished = true;
                conn.finish(now);
            }
            progress |= taken.frames > 0 || taken.finished || taken.linger_from.is_some();
        }
        let mut iov = IoVecs::new();
        if conn.poll_transmit(&mut iov) == WriteOp::Write {
            match Pin::new(&mut *io).poll_write_vectored(cx, iov.as_slices()) {
                Poll::Ready(Ok(n)) => {
                    conn.handle_written(now, n);
                    progress = true;
                }
                Poll::Ready(Err(e)) => {
                    conn.handle_write_error(now, e);
                    progress = true;
                }
                Poll::Pending => {}
            }
        }
        if let Some(buf) = conn.read_buf() {
            let mut buf = ReadBuf::new(buf);
            match Pin::new(&mut *io).poll_read(cx, &mut buf) {
                Poll::Ready(Ok(())) => {
                    let n = buf.filled().len();
                    conn.handle_read(now, n);
                    progress = true;
                }
                Poll::Ready(Err(e)) => {
                    conn.handle_read_error(now, e);
                    progress = true;
                }
                Poll::Pending => {}
            }
        }
        if let Some(at) = conn.poll_timeout() {
            let at = tokio::time::Instant::from_std(at);
            if self.sleep.deadline() != at {
                self.sleep.as_mut().reset(at);
            }
            if self.sleep.as_mut().poll(cx).is_ready() {
                conn.handle_timeout(now);
                progress = true;
            }
        }
        self.show();
        progress
    }

    /// The `retained` stage, the written counters and the time the last resume took.
    fn show(&mut self) {
        let Phase::Running(running) = &mut self.phase else {
            return;
        };
        let conn = &mut running.conn;
        if let Some(outage) = conn.take_outage() {
            self.outages.push(outage);
        }
        let s = conn.session();
        let connection = s.counts().connections;
        if connection > self.welcomed_logged {
            self.welcomed_logged = connection;
            tracing::info!(addr = %self.addr, session = %s.id(), connection,
                next = s.delivered(), "{}", if connection == 1 { "session begun" } else { "session resumed" });
        }
        let retained = s.retention().bytes();
        let gauge = self.stats.retained_gauge();
        if retained > self.retained_shown {
            gauge.grow(retained - self.retained_shown);
        } else {
            gauge.shrink(self.retained_shown - retained);
        }
        self.retained_shown = retained;
        let written_once = s.accepted() - s.never_sent();
        self.stats
            .set_written(written_once, self.bytes_before + conn.bytes_written());
        self.stats.set_session_progress(s);
    }

    /// What the running connection's event means for the session.
    fn on_event(&mut self, event: SessionEvent) -> Option<Result<SessionReport, Error>> {
        let Phase::Running(_) = &self.phase else {
            return None;
        };
        match event {
            SessionEvent::FlushBatch => {
                self.queue.flush_batch();
                None
            }
            SessionEvent::Complete => {
                let Phase::Running(running) = std::mem::replace(&mut self.phase, Phase::Over)
                else {
                    unreachable!()
                };
                let conn = running.conn;
                self.bytes_before += conn.bytes_written();
                self.session = Some(conn.into_session());
                self.stats.monitor().record();
                let s = self.session.as_ref().expect("given back");
                tracing::info!(addr = %self.addr, session = %s.id(), delivered = s.delivered(),
                    "session complete");
                Some(Ok(self.report(true)))
            }
            SessionEvent::Lost {
                error,
                reset,
                retry,
            } => {
                let Phase::Running(running) = std::mem::replace(&mut self.phase, Phase::Over)
                else {
                    unreachable!()
                };
                if reset {
                    running.reset_on_close();
                }
                let Running { io, conn, .. } = *running;
                self.bytes_before += conn.bytes_written();
                self.session = Some(conn.into_session());
                drop(io);
                if retry {
                    self.lost(error.to_string())
                } else {
                    Some(Err(self.fail(error)))
                }
            }
        }
    }

    /// Watches the application's close deadline, in any phase: `Some` once it has passed.
    fn poll_deadline(&mut self, cx: &mut Context<'_>) -> Option<Result<SessionReport, Error>> {
        if let Some(at) = self.queue.poll_deadline(cx) {
            self.deadline = Some((at, Box::pin(tokio::time::sleep_until(at.into()))));
            self.closing_since.get_or_insert(now());
        }
        let (_, sleep) = self.deadline.as_mut()?;
        sleep.as_mut().poll(cx).is_ready().then(|| {
            let after = now().saturating_duration_since(self.closing_since.unwrap_or_else(now));
            if let Phase::Running(running) = std::mem::replace(&mut self.phase, Phase::Over) {
                running.reset_on_close(); // what it holds is abandoned
                let conn = running.conn;
                self.bytes_before += conn.bytes_written();
                self.session = Some(conn.into_session());
            }
            Err(self.fail(framepipe_proto::Error::Deadline { after }))
        })
    }

    pub(crate) fn report(&self, complete: bool) -> SessionReport {
        SessionReport::new(&self.stats, self.session(), complete, &self.outages)
    }
}

impl Future for SessionDriver {
    type Output = Result<SessionReport, Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        loop {
            if !matches!(this.phase, Phase::Over) {
                if let Some(end) = this.poll_deadline(cx) {
                    return Poll::Ready(end);
                }
            }
            match &mut this.phase {
                Phase::Over => return Poll::Pending,
                Phase::Waiting => {
                    if this.sleep.as_mut().poll(cx).is_pending() {
                        return Poll::Pending;
                    }
                    this.phase = Phase::Connecting(this.connect.connect());
                }
                Phase::Connecting(fut) => match fut.as_mut().poll(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(Ok(link)) => this.connected(link),
                    Poll::Ready(Err(e)) if e.kind() == std::io::ErrorKind::InvalidData => {
                        // The peer is not what this side speaks to (not TLS, a certificate that
                        // does not verify): another attempt would fail the same way.
                        let error = framepipe_proto::Error::Io(e);
                        return Poll::Ready(Err(this.fail(error)));
                    }
                    Poll::Ready(Err(e)) => {
                        let error = format!("cannot connect to {}: {e}", this.addr);
                        if let Some(end) = this.lost(error) {
                            return Poll::Ready(end);
                        }
                    }
                },
                Phase::Running(_) => {
                    let progress = this.step(cx);
                    let event = match &mut this.phase {
                        Phase::Running(running) => running.conn.poll_event(),
                        _ => None,
                    };
                    if let Some(event) = event {
                        if let Some(end) = this.on_event(event) {
                            return Poll::Ready(end);
                        }
                        continue;
                    }
                    if !progress {
                        return Poll::Pending;
                    }
                }
            }
        }
    }
}
