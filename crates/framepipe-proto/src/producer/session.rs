//! A session producer's state across its connections (SPEC §10): the frames retained, where each
//! connection resumes, the reconnect schedule and the counts of a report.

use std::time::{Duration, Instant};

use framepipe_codec::session::{Hello, Pacing, ResumeSecret, SessionId, Welcome, PROTOCOL_VERSION};

use super::OutFrame;
use crate::backoff::Backoff;
use crate::retention::{Released, Retention};
use crate::session::default_pacing;
use crate::Error;

/// Default time a session keeps trying to reconnect before it gives up: 60 s (SPEC §10.1).
pub const DEFAULT_RECONNECT_TIMEOUT: Duration = Duration::from_secs(60);

/// What a session producer is set up with. `SessionConfig::new(id, secret)` gives SPEC §10's
/// defaults.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// The session's identity, chosen at random for its life.
    pub session: SessionId,
    /// The session's resume secret, chosen at random for its life and sent in every hello; never
    /// shown (SPEC §10.4.5).
    pub secret: ResumeSecret,
    /// Sequence number of its first frame (0 for a new session).
    pub first: u64,
    /// Most bytes of frames retained until acknowledged: the byte budget (SPEC §10.2).
    pub budget: usize,
    /// The pacing proposed in the hello (0 in a field: the consumer's choice).
    pub pacing: Pacing,
    /// The `max_frame_length` announced in the hello.
    pub max_frame_length: u32,
    /// Delays between reconnect attempts (SPEC §10.1).
    pub backoff: Backoff,
    /// How long the session may go without a connection before it gives up (SPEC §10.1).
    pub reconnect_timeout: Duration,
}

impl SessionConfig {
    /// Defaults for session `session` with resume secret `secret` (both drawn at random by the
    /// caller: the core has no random source): a budget of
    /// `framepipe_flow::queue::DEFAULT_MAX_BYTES` (512 KiB), the default pacing, 16 MiB frames, the
    /// default backoff and [`DEFAULT_RECONNECT_TIMEOUT`].
    pub fn new(session: SessionId, secret: ResumeSecret) -> Self {
        SessionConfig {
            session,
            secret,
            first: 0,
            budget: framepipe_flow::queue::DEFAULT_MAX_BYTES,
            pacing: default_pacing(),
            max_frame_length: framepipe_codec::limits::DEFAULT_MAX_FRAME_LENGTH,
            backoff: Backoff::new(),
            reconnect_timeout: DEFAULT_RECONNECT_TIMEOUT,
        }
    }
}

/// A session's counts over all its connections.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SessionCounts {
    /// Connections that were welcomed.
    pub connections: u64,
    /// Connections lost (or that failed to open) after which the session tried again.
    pub reconnects: u64,
    /// Welcomes after the first: the session resumed on a new connection.
    pub resumes: u64,
    /// Frames written again after a resume.
    pub resent: u64,
    /// Acks received.
    pub acks: u64,
}

/// A session producer's state that outlives its connections (SPEC §10.2): the retention (its byte
/// budget), how far frames were ever written, and when to try connecting again. One
/// [`SessionConn`](super::SessionConn) at a time borrows it by value and gives it back.
#[derive(Debug, Clone)]
pub struct ProducerSession {
    config: SessionConfig,
    retention: Retention,
    finished: bool,
    /// One past the highest sequence number written in full on any connection.
    sent: u64,
    counts: SessionCounts,
    /// Since when the session has had no welcomed connection.
    lost_at: Option<Instant>,
    /// Reconnect attempts since the last welcome.
    attempt: u32,
    /// Time from the last lost connection to the welcome that resumed the session.
    outage: Option<Duration>,
}

impl ProducerSession {
    /// A new session at `now`, not yet connected.
    pub fn new(config: SessionConfig, now: Instant) -> Self {
        ProducerSession {
            retention: Retention::new(config.budget, config.first),
            sent: config.first,
            config,
            finished: false,
            counts: SessionCounts::default(),
            lost_at: Some(now),
            attempt: 0,
            outage: None,
        }
    }

    /// The session's identity.
    pub fn id(&self) -> SessionId {
        self.config.session
    }

    /// Its settings.
    pub fn config(&self) -> &SessionConfig {
        &self.config
    }

    /// The frames accepted and not acknowledged.
    pub fn retention(&self) -> &Retention {
        &self.retention
    }

    /// Whether a frame of `len` wire bytes may be accepted now (SPEC §10.2.2).
    pub fn has_room(&self, len: usize) -> bool {
        !self.finished && self.retention.has_room(len)
    }

    /// Accepts `frame` and returns its sequence number. Check [`has_room`](Self::has_room) first.
    pub fn push(&mut self, frame: OutFrame) -> u64 {
        debug_assert!(!self.finished, "a frame pushed after finish");
        self.retention.push(frame)
    }

    /// No more frames will be accepted: the session ends once every frame is acknowledged.
    pub fn finish(&mut self) {
        self.finished = true;
    }

    /// `finish` was called.
    pub fn is_finished(&self) -> bool {
        self.finished
    }

    /// Finished, and every frame acknowledged.
    pub fn is_complete(&self) -> bool {
        self.finished && self.retention.is_empty()
    }

    /// Frames accepted so far.
    pub fn accepted(&self) -> u64 {
        self.retention.next() - self.config.first
    }

    /// Frames the consumer acknowledged: handled (SPEC §9.3).
    pub fn delivered(&self) -> u64 {
        self.retention.first() - self.config.first
    }

    /// Frames written in full at least once and not acknowledged.
    pub fn unacked(&self) -> u64 {
        self.sent.saturating_sub(self.retention.first())
    }

    /// Frames accepted and never written in full.
    pub fn never_sent(&self) -> u64 {
        self.retention.next() - self.sent.max(self.retention.first())
    }

    /// The counts over all connections.
    pub fn counts(&self) -> SessionCounts {
        self.counts
    }

    /// The hello a new connection opens with: resume from the oldest frame retained.
    pub fn hello(&self) -> Hello {
        Hello {
            version: PROTOCOL_VERSION,
            session: self.config.session,
            next: self.retention.first(),
            max_frame_length: self.config.max_frame_length,
            pacing: self.config.pacing,
            secret: Some(self.config.secret),
        }
    }

    /// One past the last frame written in full on any connection: no ack or welcome may name a
    /// later frame (SPEC §10.2.5).
    pub fn written(&self) -> u64 {
        self.sent
    }

    /// `Err` if the consumer's `what` (an ack, a resume point, a goodbye) names a frame beyond
    /// those written: nothing is released then (SPEC §10.2.5).
    pub(crate) fn check_written(&self, what: &'static str, next: u64) -> Result<(), Error> {
        if next > self.sent {
            return Err(Error::NotWritten {
                what,
                next,
                written: self.sent,
            });
        }
        Ok(())
    }

    /// When the session gives up if no connection is welcomed before (`reconnect_timeout` after
    /// it last had one, SPEC §10.1); `None` while a connection is welcomed. A connection still
    /// waiting for its welcome then is lost, whatever the peer sends meanwhile (SPEC §10.6.5).
    pub fn give_up_at(&self) -> Option<Instant> {
        self.lost_at.map(|t| t + self.config.reconnect_timeout)
    }

    /// The error of a session that gave up at `now` ([`Error::ReconnectTimeout`]): what became of
    /// every frame.
    pub fn gave_up(&self, now: Instant) -> Error {
        let lost_at = self.lost_at.unwrap_or(now);
        Error::ReconnectTimeout {
            after: now.saturating_duration_since(lost_at),
            attempts: self.attempt,
            delivered: self.delivered(),
            unacked: self.unacked(),
            never_sent: self.never_sent(),
        }
    }

    /// A welcome arrived at `now` (SPEC §10.4): frames before its `next` are released, the rest
    /// will be sent again from there. Returns how many frames are sent again.
    pub(crate) fn welcomed(&mut self, now: Instant, welcome: &Welcome) -> Result<u64, Error> {
        if welcome.version != PROTOCOL_VERSION || welcome.session != self.config.session {
            return Err(Error::SessionMismatch {
                what: format!(
                    "welcome is for session {} version {}, but this is session {} version {}",
                    welcome.session, welcome.version, self.config.session, PROTOCOL_VERSION
                ),
            });
        }
        self.check_written("resume", welcome.next)?;
        self.retention.resume(welcome.next)?;
        let resent = self.sent.saturating_sub(welcome.next);
        if self.counts.connections > 0 {
            self.counts.resumes += 1;
            self.outage = self.lost_at.map(|t| now.saturating_duration_since(t));
        }
        self.counts.connections += 1;
        self.counts.resent += resent;
        self.lost_at = None;
        self.attempt = 0;
        Ok(resent)
    }

    /// An ack (or the consumer's goodbye) arrived.
    pub(crate) fn count_ack(&mut self) {
        self.counts.acks += 1;
    }

    /// Releases the frames before `next` (SPEC §10.2.3).
    pub(crate) fn release(&mut self, next: u64) -> Result<Released, Error> {
        self.retention.ack(next)
    }

    /// Frame `seq` was written in full.
    pub(crate) fn wrote(&mut self, seq: u64) {
        self.sent = self.sent.max(seq + 1);
    }

    /// The connection was lost, or an attempt to open one failed, at `now`: when to try next
    /// (SPEC §10.1), with `spread` in [−1, 1] drawn by the driver for the jitter. The last attempt
    /// is made when `reconnect_timeout` runs out; after it the session gives up with
    /// [`Error::ReconnectTimeout`], which says what became of every frame.
    pub fn next_attempt(&mut self, now: Instant, spread: f64) -> Result<Instant, Error> {
        let lost_at = *self.lost_at.get_or_insert(now);
        let give_up = lost_at + self.config.reconnect_timeout;
        if now >= give_up {
            return Err(self.gave_up(now));
        }
        let delay = self.config.backoff.delay(self.attempt, spread);
        self.attempt += 1;
        self.counts.reconnects += 1;
        Ok((now + delay).min(give_up))
    }

    /// The time from the connection lost last to the welcome that resumed the session, once: the
    /// time to resume (`None` after the first connection, and once taken).
    pub fn take_outage(&mut self) -> Option<Duration> {
        self.outage.take()
    }

    /// Attempts made since the session last had a connection.
    pub fn attempts(&self) -> u32 {
        self.attempt
    }
}
