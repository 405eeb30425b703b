//! One connection of a session producer as a state machine without I/O (SPEC §10.4–§10.7).

use std::collections::VecDeque;
use std::io;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use framepipe_codec::session::{Control, SessionFramer, Unit, CONTROL_BIT};
use framepipe_codec::{escape_preview, Builder, Notice, NoticeRead};

use super::conn::from_io;
use super::session::ProducerSession;
use super::{IoVecs, OutFrame, WriteOp, DEFAULT_WRITE_BATCH_BYTES, PREVIEW_BYTES};
use crate::session::Timing;
use crate::timer::{Timer, TimerTable};
use crate::{codes, Error};

/// Bytes read from the consumer at a time: its control frames are at most 4 + 4,096 bytes.
pub const SESSION_READ_CHUNK: usize = 4 * 1024;

/// Settings of one session connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionConnConfig {
    /// Most bytes gathered into one vectored write (plus one frame).
    pub write_batch_bytes: usize,
    /// The slow-consumer policy (SPEC §10.6): `None` blocks for as long as the consumer shows it is
    /// alive (the default); `Some(d)` drops the connection, to resume on a new one, when the
    /// consumer has taken no byte for `d` while bytes wait.
    pub stall_timeout: Option<Duration>,
}

impl Default for SessionConnConfig {
    fn default() -> Self {
        SessionConnConfig {
            write_batch_bytes: DEFAULT_WRITE_BATCH_BYTES,
            stall_timeout: None,
        }
    }
}

/// Where a session connection is (SPEC §10.4–§10.7):
///
/// ```text
///  Greeting (hello written; no frame until the welcome) ──(welcome)──► Streaming
///  Streaming ──(finished, every frame written: goodbye)──► Ending ──(consumer's goodbye)──► Done (Complete)
///  any ──(lost: end of stream, reset, silence, stall, notice)──► Done (Lost)
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionState {
    /// The hello is written; waiting for the welcome.
    Greeting,
    /// Writing frames from where the consumer resumed, taking new ones as the budget allows.
    Streaming,
    /// Every frame written and the goodbye sent: waiting for the consumer's goodbye.
    Ending,
    /// Over: the last event was `Complete` or `Lost`.
    Done,
}

/// What a session connection tells its driver.
#[derive(Debug)]
pub enum SessionEvent {
    /// The session is over: every frame was acknowledged and the consumer said goodbye.
    Complete,
    /// The connection is over and the session is not. `retry`: resume on a new connection
    /// (SPEC §10.1); otherwise the session fails with `error`. `reset`: close with `SO_LINGER` 0.
    Lost {
        /// Why.
        error: Error,
        /// Close with a reset.
        reset: bool,
        /// Worth another connection.
        retry: bool,
    },
    /// The batching window (`linger`) of the frame being gathered has passed.
    FlushBatch,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SessionTimer {
    /// Nothing heard from the consumer for the liveness deadline (or no welcome in time).
    Liveness,
    /// Nothing written for a heartbeat interval.
    Heartbeat,
    /// Bytes waited `stall_timeout` without progress (the disconnect policy).
    Stall,
    /// The batch being gathered must become a frame.
    Linger,
    /// No welcome by `reconnect_timeout` after the session last had one (SPEC §10.6.5).
    GiveUp,
}

impl Timer for SessionTimer {
    const ALL: &'static [Self] = &[
        SessionTimer::Liveness,
        SessionTimer::Heartbeat,
        SessionTimer::Stall,
        SessionTimer::Linger,
        SessionTimer::GiveUp,
    ];

    fn index(self) -> usize {
        self as usize
    }
}

/// One connection of a session producer, without its transport (SPEC §10.4–§10.7). It owns the
/// [`ProducerSession`] while it lives; [`into_session`](Self::into_session) gives it back for the
/// next connection.
///
/// Writes the hello, waits for the welcome, then writes the retained frames from the consumer's
/// resume point on, and new frames as they are pushed, with heartbeats when it has written nothing
/// for a while and a goodbye once finished. Reads the consumer's control frames: acks release
/// retained frames (and so budget), a notice or silence ends the connection.
///
/// Memory: the session's retention (its budget), a few control frames being written, and a read
/// buffer of at most one control frame plus [`SESSION_READ_CHUNK`].
#[derive(Debug)]
pub struct SessionConn {
    session: ProducerSession,
    config: SessionConnConfig,
    state: SessionState,
    timing: Timing,
    /// Control frames to write, before the next data frame begins.
    ctrl: BytesMut,
    ctrl_done: usize,
    /// Sequence number of the next data frame to write, and how much of it is written.
    cursor: u64,
    front_done: usize,
    /// Data bytes from `cursor` on not yet written.
    unwritten: usize,
    reader: SessionFramer,
    rbuf: BytesMut,
    scratch: Box<[u8]>,
    timers: TimerTable<SessionTimer, 5>,
    last_heard: Instant,
    /// The highest ack received: frames below it are released once written.
    acked_ahead: u64,
    events: VecDeque<SessionEvent>,
    bytes_written: u64,
    frames_written: u64,
}

impl SessionConn {
    /// A connection just made at `now` for `session`: its hello is the first thing to write.
    pub fn new(session: ProducerSession, config: SessionConnConfig, now: Instant) -> Self {
        let timing = Timing::from(session.config().pacing);
        let mut ctrl = BytesMut::new();
        Control::Hello(session.hello())
            .encode(&mut ctrl)
            .expect("a hello always encodes");
        let mut timers = TimerTable::default();
        timers.set(SessionTimer::Liveness, now + timing.liveness);
        if let Some(at) = session.give_up_at() {
            timers.set(SessionTimer::GiveUp, at);
        }
        SessionConn {
            cursor: session.retention().first(),
            session,
            config,
            state: SessionState::Greeting,
            timing,
            ctrl,
            ctrl_done: 0,
            front_done: 0,
            unwritten: 0,
            // Only control frames are expected: any data frame is refused by its length.
            reader: SessionFramer::new(Builder::new().max_frame_length(0)),
            rbuf: BytesMut::new(),
            scratch: vec![0; SESSION_READ_CHUNK].into_boxed_slice(),
            timers,
            last_heard: now,
            acked_ahead: 0,
            events: VecDeque::new(),
            bytes_written: 0,
            frames_written: 0,
        }
    }

    /// Ends the connection and gives the session back.
    pub fn into_session(self) -> ProducerSession {
        self.session
    }

    /// The session.
    pub fn session(&self) -> &ProducerSession {
        &self.session
    }

    /// The time this connection's welcome came after the session's previous connection was lost
    /// ([`ProducerSession::take_outage`]), once.
    pub fn take_outage(&mut self) -> Option<std::time::Duration> {
        self.session.take_outage()
    }

    /// Where the connection is.
    pub fn state(&self) -> SessionState {
        self.state
    }

    /// Bytes written on this connection.
    pub fn bytes_written(&self) -> u64 {
        self.bytes_written
    }

    /// Data frames written in full on this connection (resent ones included).
    pub fn frames_written(&self) -> u64 {
        self.frames_written
    }

    /// Bytes waiting to be written: control frames and data from the resume point on.
    pub fn bytes_pending(&self) -> usize {
        self.ctrl.len() - self.ctrl_done + self.unwritten
    }

    /// Whether a frame of `len` wire bytes may be pushed now: the session is not finished, the
    /// connection is not over, and the retention has room (SPEC §10.2.2).
    pub fn wants_frame(&self, len: usize) -> bool {
        matches!(self.state, SessionState::Greeting | SessionState::Streaming)
            && self.session.has_room(len)
    }

    /// Accepts `frame` into the session at `now`; it is written once the frames before it are.
    /// Returns its sequence number.
    pub fn push_frame(&mut self, now: Instant, frame: OutFrame) -> u64 {
        let len = frame.wire_len();
        let seq = self.session.push(frame);
        if self.state == SessionState::Streaming {
            self.unwritten += len;
            self.arm_stall(now);
        }
        seq
    }

    /// No more frames will be pushed: once every frame is written the goodbye follows (SPEC §10.7).
    pub fn finish(&mut self, now: Instant) {
        self.session.finish();
        self.maybe_goodbye(now);
    }

    /// Starts the batching window: [`SessionEvent::FlushBatch`] comes at `at` unless stopped.
    pub fn start_linger(&mut self, at: Instant) {
        self.timers.set_if_unset(SessionTimer::Linger, at);
    }

    /// The batch became a frame before its window passed.
    pub fn stop_linger(&mut self) {
        self.timers.stop(SessionTimer::Linger);
    }

    /// Gathers what to write into `iov`: pending control frames at a frame boundary, then data
    /// frames from the resume point on, up to `write_batch_bytes`.
    pub fn poll_transmit<'a>(&'a self, iov: &mut IoVecs<'a>) -> WriteOp {
        if self.state == SessionState::Done {
            return WriteOp::Idle;
        }
        let ctrl_first = self.front_done == 0 && self.ctrl_done < self.ctrl.len();
        if ctrl_first {
            iov.push(&self.ctrl[self.ctrl_done..]);
        }
        if matches!(self.state, SessionState::Streaming | SessionState::Ending) {
            let mut skip = self.front_done;
            let mut gathered = 0;
            for frame in self.session.retention().from_seq(self.cursor) {
                if iov.is_full() || gathered >= self.config.write_batch_bytes {
                    break;
                }
                frame.push_slices(skip, iov);
                gathered += frame.wire_len() - skip;
                skip = 0;
            }
        }
        if iov.total() == 0 {
            WriteOp::Idle
        } else {
            WriteOp::Write
        }
    }

    /// `n` bytes of what [`poll_transmit`](Self::poll_transmit) gathered were written at `now`.
    /// Nothing may happen to the connection between the two calls.
    pub fn handle_written(&mut self, now: Instant, n: usize) {
        if n == 0 {
            return self.handle_write_error(now, io::ErrorKind::WriteZero.into());
        }
        self.bytes_written += n as u64;
        let mut left = n;
        if self.front_done == 0 && self.ctrl_done < self.ctrl.len() {
            let c = left.min(self.ctrl.len() - self.ctrl_done);
            self.ctrl_done += c;
            left -= c;
            if self.ctrl_done == self.ctrl.len() {
                self.ctrl.clear();
                self.ctrl_done = 0;
            }
        }
        self.unwritten -= left;
        let mut done = self.front_done + left;
        let mut whole = 0;
        for frame in self.session.retention().from_seq(self.cursor) {
            if done < frame.wire_len() {
                break;
            }
            done -= frame.wire_len();
            whole += 1;
        }
        self.front_done = done;
        if whole > 0 {
            self.cursor += whole;
            self.frames_written += whole;
            self.session.wrote(self.cursor - 1);
            if self.acked_ahead > self.session.retention().first() {
                let _ = self.release_written(); // within what was accepted: cannot fail
            }
        }
        self.timers
            .set(SessionTimer::Heartbeat, now + self.timing.heartbeat);
        self.arm_stall(now);
        self.maybe_goodbye(now);
    }

    /// Writing failed: the connection is lost; the session resumes on another.
    pub fn handle_write_error(&mut self, _now: Instant, err: io::Error) {
        self.lost(from_io(err), false, true);
    }

    /// Where to read the consumer's bytes into; `None` once the connection is over.
    pub fn read_buf(&mut self) -> Option<&mut [u8]> {
        (self.state != SessionState::Done).then_some(&mut self.scratch[..])
    }

    /// `n` bytes were read into [`read_buf`](Self::read_buf) at `now`; `0` is the end of stream.
    pub fn handle_read(&mut self, now: Instant, n: usize) {
        if self.state == SessionState::Done {
            return;
        }
        if n == 0 {
            let source = io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the consumer closed the connection before the session ended",
            );
            return self.lost(Error::PeerClosed { source }, false, true);
        }
        self.rbuf.extend_from_slice(&self.scratch[..n]);
        self.last_heard = now;
        self.timers
            .set(SessionTimer::Liveness, now + self.timing.liveness);
        if self.state == SessionState::Greeting && self.rbuf[0] & CONTROL_BIT == 0 {
            return self.plain_reply();
        }
        while self.state != SessionState::Done {
            match self.reader.next_unit(&mut self.rbuf) {
                Ok(Some(Unit::Control { control, offset })) => {
                    self.on_control(now, control, offset)
                }
                Ok(Some(Unit::Data(frame))) => {
                    let what = format!(
                        "a data frame at offset {} came from the consumer, which sends only control frames",
                        frame.offset
                    );
                    let err = framepipe_codec::Error::BadControl {
                        offset: frame.offset,
                        what,
                    };
                    self.lost(Error::Frame(err), true, false);
                }
                Ok(None) => break,
                Err(e) => self.lost(Error::Frame(e), true, false),
            }
        }
    }

    /// Before the welcome, a reply whose first byte is not a control frame's is a plain notice
    /// (SPEC §6.3): a consumer that refused the connection before reading it (`connection_limit`),
    /// or one that does not serve sessions and refused the hello as a frame. Anything else is not
    /// a framepipe consumer.
    fn plain_reply(&mut self) {
        match Notice::read(&self.rbuf) {
            NoticeRead::Incomplete => {}
            NoticeRead::Notice(notice) => {
                let retry = codes::retry(&notice.error) == codes::Retry::Resume;
                self.lost(Error::Rejected(notice), false, retry);
            }
            NoticeRead::NotNotice => {
                let received = self.rbuf.len();
                let preview = escape_preview(&self.rbuf, PREVIEW_BYTES);
                self.lost(Error::UnexpectedReply { received, preview }, true, false);
            }
        }
    }

    /// Reading failed (usually a reset): the connection is lost. An error of kind `InvalidData` (a
    /// TLS transport's: the consumer refused this producer's certificate with an alert, or sent
    /// something that is not TLS) would come back on every connection, so the session fails with
    /// it; any other is resumed (SPEC §12.3).
    pub fn handle_read_error(&mut self, _now: Instant, err: io::Error) {
        let retry = err.kind() != io::ErrorKind::InvalidData;
        self.lost(from_io(err), false, retry);
    }

    fn on_control(&mut self, now: Instant, control: Control, offset: u64) {
        let result = match (control, self.state) {
            (Control::Welcome(w), SessionState::Greeting) => {
                self.session.welcomed(now, &w).map(|_| {
                    self.timing = Timing::from(w.pacing);
                    self.cursor = w.next;
                    self.front_done = 0;
                    self.recount();
                    self.state = SessionState::Streaming;
                    self.timers.stop(SessionTimer::GiveUp);
                    let live_until = self.last_heard + self.timing.liveness;
                    self.timers.set(SessionTimer::Liveness, live_until);
                    self.timers
                        .set(SessionTimer::Heartbeat, now + self.timing.heartbeat);
                    self.arm_stall(now);
                    self.maybe_goodbye(now);
                })
            }
            (Control::Ack { next }, SessionState::Streaming | SessionState::Ending) => {
                self.ack(next)
            }
            (Control::Goodbye { next }, SessionState::Ending) => self.goodbye_received(next),
            // Before the welcome too: the consumer is alive while its table decides (SPEC §10.6.1).
            (
                Control::Heartbeat,
                SessionState::Greeting | SessionState::Streaming | SessionState::Ending,
            ) => Ok(()),
            (Control::Notice(notice), _) => {
                let retry = codes::retry(&notice.error) == codes::Retry::Resume;
                return self.lost(Error::Rejected(notice), false, retry);
            }
            (control, state) => Err(Error::Frame(framepipe_codec::Error::BadControl {
                offset,
                what: format!(
                    "a {} frame came from the consumer while this producer was {state:?}",
                    control.kind().name()
                ),
            })),
        };
        if let Err(e) = result {
            self.lost(e, true, false);
        }
    }

    /// An ack (SPEC §10.5). It may cover frames not yet sent again on this connection (the consumer
    /// had them from an earlier one). Those are still written — the consumer numbers frames by
    /// their order on the connection, so none may be skipped — and are released once written.
    fn ack(&mut self, next: u64) -> Result<(), Error> {
        // Never beyond what was written: a consumer cannot have handled more (SPEC §10.2.3).
        self.session.check_written("ack", next)?;
        self.session.count_ack();
        self.acked_ahead = self.acked_ahead.max(next);
        self.release_written()
    }

    /// Releases what the acks cover, up to the frames written in full.
    fn release_written(&mut self) -> Result<(), Error> {
        let upto = self.acked_ahead.min(self.cursor);
        if upto > self.session.retention().first() {
            self.session.release(upto)?;
        }
        Ok(())
    }

    /// Data bytes from the cursor on, not yet written.
    fn recount(&mut self) {
        let from_cursor: usize = self
            .session
            .retention()
            .from_seq(self.cursor)
            .map(OutFrame::wire_len)
            .sum();
        self.unwritten = from_cursor - self.front_done;
    }

    fn goodbye_received(&mut self, next: u64) -> Result<(), Error> {
        let accepted = self.session.retention().next();
        if next != accepted {
            return Err(Error::SessionMismatch {
                what: format!(
                    "goodbye says {next} frames were handled, but the session has {accepted}"
                ),
            });
        }
        self.session.check_written("goodbye", next)?;
        self.session.count_ack();
        self.session.release(next)?;
        self.state = SessionState::Done;
        self.timers.clear();
        self.events.push_back(SessionEvent::Complete);
        Ok(())
    }

    /// Every frame written after `finish`: the goodbye says how many there are.
    fn maybe_goodbye(&mut self, now: Instant) {
        let retention = self.session.retention();
        if self.state == SessionState::Streaming
            && self.session.is_finished()
            && self.cursor == retention.next()
        {
            let next = retention.next();
            Control::Goodbye { next }
                .encode(&mut self.ctrl)
                .expect("a goodbye always encodes");
            self.state = SessionState::Ending;
            self.arm_stall(now);
        }
    }

    /// The disconnect policy's clock: runs while bytes wait, restarts on progress.
    fn arm_stall(&mut self, now: Instant) {
        match self.config.stall_timeout {
            Some(limit) if self.bytes_pending() > 0 => {
                self.timers.set(SessionTimer::Stall, now + limit)
            }
            _ => self.timers.stop(SessionTimer::Stall),
        }
    }

    /// The earliest deadline: call [`handle_timeout`](Self::handle_timeout) then.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next()
    }

    /// Applies every deadline expired at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(timer) = self.timers.take_expired(now) {
            match timer {
                SessionTimer::Liveness => {
                    let silent = now.saturating_duration_since(self.last_heard);
                    self.lost(Error::Unresponsive { silent }, true, true);
                }
                SessionTimer::Heartbeat => {
                    if self.ctrl.is_empty() {
                        Control::Heartbeat
                            .encode(&mut self.ctrl)
                            .expect("a heartbeat always encodes");
                    }
                    self.timers
                        .set(SessionTimer::Heartbeat, now + self.timing.heartbeat);
                }
                SessionTimer::Stall => {
                    let waited = self.config.stall_timeout.unwrap_or_default();
                    self.lost(Error::Stalled { waited }, true, true);
                }
                SessionTimer::Linger => self.events.push_back(SessionEvent::FlushBatch),
                SessionTimer::GiveUp => {
                    // Heartbeats without a welcome do not keep a session waiting for ever.
                    let error = self.session.gave_up(now);
                    self.lost(error, true, false);
                }
            }
        }
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<SessionEvent> {
        self.events.pop_front()
    }

    fn lost(&mut self, error: Error, reset: bool, retry: bool) {
        if self.state == SessionState::Done {
            return;
        }
        self.state = SessionState::Done;
        self.timers.clear();
        self.events.push_back(SessionEvent::Lost {
            error,
            reset,
            retry,
        });
    }
}
