//! The consumer's per-connection protocol as a state machine without I/O (SPEC §8.3).

use std::collections::VecDeque;
use std::io;
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes};
use framepipe_codec::limits::HEADER_LEN;
use framepipe_codec::session::Unit;
use framepipe_codec::Notice;
use framepipe_flow::{MemoryPool, Reservation};

use super::config::ConsumerConfig;
use super::event::{Event, InFrame, ReadBuf, ReadOp};
use super::reader::Reader;
use super::session::{Numbered, SessionPart};
use crate::read_buffer::ReadBuffer;
use crate::timer::{Timer, TimerTable};
use crate::{codes, Error};

/// Where a consumer connection is in its life (SPEC §8.3). The diagram:
///
/// ```text
///  Reading ──(shutdown, mid-frame)──► Finishing ──(frame complete)──┐
///     │ ──(shutdown, at a boundary)──────────────────────────────────┤
///     │ ──(end of stream, fatal error, timeout)──────────────────────┤
///     │                                                              ▼
///     │                                         Flushing (the application finishes the frames
///     │                                              │    handed on; no input is read)
///     │          ┌──(a notice is due)────────────────┤──(none: clean end, I/O error)──► Closed
///     │          ▼                                   │
///     └─(reject)► Notifying (write the notice, FIN) ──► Draining (discard input until the peer
///                                                         closes or drain_timeout) ──► Closed
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Reading frames and handing them on.
    Reading,
    /// Shutting down: reading only to complete the frame in progress; no frame is begun.
    Finishing,
    /// No more input is read; waiting for the application to finish the frames handed on, then
    /// closing, after a notice if one is due.
    Flushing,
    /// Writing a notice, then the end of our direction (FIN).
    Notifying,
    /// Notice sent: discarding input until the peer closes or `drain_timeout` passes, so closing
    /// with unread bytes does not reset the connection before the notice is read (SPEC §6.3.2).
    Draining,
    /// Over: the transport can be dropped.
    Closed,
}

/// The consumer core's deadlines (SPEC §8.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ConsumerTimer {
    /// Nothing has arrived between frames for `idle_timeout` (SPEC §7.6.1).
    Idle,
    /// The frame in progress is not complete `frame_timeout` after it began (SPEC §7.6.2).
    Frame,
    /// Writing the notice takes longer than [`NOTICE_TIMEOUT`].
    Notice,
    /// Draining after the notice ends (`drain_timeout`, SPEC §6.3.2).
    Drain,
    /// A session's handled frames have waited `ack_interval` for their ack (SPEC §10.5).
    Ack,
    /// A session connection has written nothing for a heartbeat interval (SPEC §10.6).
    Heartbeat,
}

impl Timer for ConsumerTimer {
    const ALL: &'static [Self] = &[
        ConsumerTimer::Idle,
        ConsumerTimer::Frame,
        ConsumerTimer::Notice,
        ConsumerTimer::Drain,
        ConsumerTimer::Ack,
        ConsumerTimer::Heartbeat,
    ];

    fn index(self) -> usize {
        self as usize
    }
}

/// One consumer connection without its transport: bytes and time go in, frames, notices, deadlines
/// and what to do next come out (SPEC §8.3). It reads no clock and owns no socket; a driver moves
/// bytes between it and the transport and sleeps until [`poll_timeout`](Self::poll_timeout).
///
/// Memory: the read buffer (SPEC §7.1.5) and its reservation from the consumer's memory pool
/// (SPEC §7.6): what is buffered plus, once a header has arrived, the rest of that frame, plus up to
/// one block of read-ahead when the pool can spare it. Each frame leaves with its share.
#[derive(Debug)]
pub struct ConsumerConn {
    pub(super) config: ConsumerConfig,
    pub(super) state: State,
    pub(super) framer: Reader,
    pub(super) rbuf: ReadBuffer,
    pub(super) pool: MemoryPool,
    /// Covers the bytes in `rbuf`, the rest of the frame in progress and any read-ahead granted.
    pub(super) held: Reservation,
    pub(super) timers: TimerTable<ConsumerTimer, 6>,
    pub(super) events: VecDeque<Event>,
    /// Wire bytes of the frames in `events`.
    pub(super) events_bytes: usize,
    /// Events were produced since the last `poll_read`: the idle clock restarts once they are
    /// handed on (time spent waiting for the application's queue is not idle time).
    pub(super) emitted: bool,
    pub(super) idle_since: Instant,
    pub(super) frame_began: Option<Instant>,
    /// Time the frame in progress spent waiting for memory (not counted against it).
    pub(super) frame_paused: Duration,
    pub(super) reserving_since: Option<Instant>,
    pub(super) granted: usize,
    pub(super) eof: bool,
    /// The notice to send once the application has finished (`Flushing`).
    pub(super) pending_notice: Option<Notice>,
    /// The notice being written, and how much of it has been.
    pub(super) transmit: Bytes,
    pub(super) transmitted: usize,
    pub(super) bytes_read: u64,
    /// Session state, once the first byte said the stream is one (SPEC §9.2).
    pub(super) session: Option<SessionPart>,
}

impl ConsumerConn {
    /// A connection that has just been accepted, at `now`. Allocates nothing until data arrives.
    pub fn new(config: ConsumerConfig, pool: &MemoryPool, now: Instant) -> Self {
        let rbuf = Self::read_buffer(&config, pool);
        ConsumerConn {
            config,
            state: State::Reading,
            framer: Reader::plain(config.codec),
            rbuf,
            pool: pool.clone(),
            held: pool.reservation(),
            timers: TimerTable::default(),
            events: VecDeque::new(),
            events_bytes: 0,
            emitted: false,
            idle_since: now,
            frame_began: None,
            frame_paused: Duration::ZERO,
            reserving_since: None,
            granted: 0,
            eof: false,
            pending_notice: None,
            transmit: Bytes::new(),
            transmitted: 0,
            bytes_read: 0,
            session: None,
        }
    }

    /// A connection refused at once with `notice` (e.g. `connection_limit`, SPEC §7.6.3): it writes
    /// the notice, ends its direction, drains and closes; it reads no frame.
    pub fn refusing(
        config: ConsumerConfig,
        pool: &MemoryPool,
        now: Instant,
        notice: Notice,
    ) -> Self {
        let mut conn = Self::new(config, pool, now);
        conn.start_notice(now, notice);
        conn
    }

    fn read_buffer(config: &ConsumerConfig, pool: &MemoryPool) -> ReadBuffer {
        ReadBuffer::new(
            config.read_chunk,
            config.spare_bytes,
            Some(pool.reservation()),
        )
    }

    /// Where the connection is.
    pub fn state(&self) -> State {
        self.state
    }

    /// Bytes this connection holds that the application has not been handed yet: its read buffer
    /// and the frames waiting in its events (the consumer's `reading` stage).
    pub fn buffered(&self) -> usize {
        self.rbuf.len() + self.events_bytes
    }

    /// Bytes read from the transport so far.
    pub fn bytes_read(&self) -> u64 {
        self.bytes_read
    }

    /// Frames begun so far, whether delivered, refused or skipped; also the index of the first
    /// frame not read once input has ended.
    pub fn frames_seen(&self) -> u64 {
        self.framer.frames_seen()
    }

    /// The next event for the application, in stream order.
    pub fn poll_event(&mut self) -> Option<Event> {
        let event = self.events.pop_front()?;
        if let Event::Frame(f) = &event {
            self.events_bytes -= f.frame.wire_len();
        }
        Some(event)
    }

    /// The earliest deadline: call [`handle_timeout`](Self::handle_timeout) then.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next()
    }

    /// What to do next with the transport's input (SPEC §8.3). Arms the idle or frame deadline for
    /// the wait that follows.
    pub fn poll_read(&mut self, now: Instant) -> ReadOp {
        if !self.events.is_empty() {
            return ReadOp::Deliver;
        }
        // A hello refused (`reject`) is answered by its notice, not by the table again.
        let refused = matches!(
            self.state,
            State::Notifying | State::Draining | State::Closed
        );
        if !refused
            && self
                .session
                .as_ref()
                .is_some_and(SessionPart::awaiting_accept)
        {
            return ReadOp::Handshake;
        }
        match self.state {
            State::Reading | State::Finishing => self.plan_read(now),
            State::Flushing => ReadOp::AwaitApp,
            State::Notifying => ReadOp::Transmit,
            State::Draining => ReadOp::Discard,
            State::Closed => ReadOp::Close,
        }
    }

    fn plan_read(&mut self, now: Instant) -> ReadOp {
        if std::mem::take(&mut self.emitted) {
            self.idle_since = now;
        }
        let buffered = self.rbuf.len();
        self.arm_read_deadline(now);
        // SPEC §7.6.4: the whole frame in progress is reserved before reading (waiting if need be);
        // a body being skipped needs only a block at a time.
        let needed = self.framer.bytes_needed(self.rbuf.bytes());
        let due = usize::try_from(needed).unwrap_or(usize::MAX).max(1);
        let due = if self.framer.is_skipping() {
            due.min(self.config.read_chunk)
        } else {
            due
        };
        // A frame whose header has been consumed carries the header's bytes too.
        let header = if self.framer.header_consumed() && !self.framer.is_skipping() {
            HEADER_LEN
        } else {
            0
        };
        let required = (header + buffered)
            .saturating_add(due)
            .min(self.pool.limit());
        if self.held.bytes() < required {
            self.reserving_since.get_or_insert(now);
            return ReadOp::Reserve {
                bytes: required - self.held.bytes(),
            };
        }
        let mut limit = if self.framer.mid_frame(self.rbuf.bytes()) {
            self.rbuf.prepare_read(needed)
        } else {
            self.rbuf.prepare_head_read()
        };
        if self.state == State::Finishing {
            // Shutting down: nothing past the frame in progress is read (SPEC §8.5).
            limit = limit.min(due);
        }
        // Read-ahead is optional: taken only if the pool keeps a whole frame free (SPEC §7.6.4).
        let want = (header + buffered).saturating_add(limit);
        if self.held.bytes() > want {
            self.held.shrink_to(want.max(required));
        } else {
            self.held.try_grow_keeping(want);
        }
        self.granted = limit.min(self.held.bytes() - header - buffered);
        ReadOp::Read {
            limit: self.granted,
        }
    }

    /// SPEC §7.6.1–2: mid-frame the frame deadline runs (armed once per frame); between frames the
    /// idle deadline does, counted from the last byte read or the last frame handed on.
    fn arm_read_deadline(&mut self, now: Instant) {
        if self.framer.mid_frame(self.rbuf.bytes()) {
            self.timers.stop(ConsumerTimer::Idle);
            if self.frame_began.is_none() {
                self.frame_began = Some(now);
                self.frame_paused = Duration::ZERO;
                if let Some(t) = self.config.frame_timeout {
                    self.timers.set(ConsumerTimer::Frame, now + t);
                }
            }
        } else {
            self.frame_began = None;
            self.timers.stop(ConsumerTimer::Frame);
            match self.idle_limit() {
                Some(t) if self.state == State::Reading => {
                    self.timers.set(ConsumerTimer::Idle, self.idle_since + t)
                }
                _ => self.timers.stop(ConsumerTimer::Idle),
            }
        }
    }

    /// Memory the driver waited for after [`ReadOp::Reserve`]; the wait does not count against the
    /// frame deadline.
    pub fn grant_memory(&mut self, now: Instant, reservation: Reservation) {
        self.held.absorb(reservation);
        if let Some(since) = self.reserving_since.take() {
            let waited = now.saturating_duration_since(since);
            self.frame_paused += waited;
            self.timers.extend(ConsumerTimer::Frame, waited);
        }
    }

    /// Where the driver reads into after [`ReadOp::Read`]: the read buffer's free part, limited to
    /// the granted bytes.
    pub fn read_buf(&mut self) -> ReadBuf<'_> {
        self.rbuf.bytes_mut().limit(self.granted)
    }

    /// `n` bytes were read into [`read_buf`](Self::read_buf) at `now`; `0` is the end of stream.
    /// Frames them; frames and frame-local errors become events.
    pub fn handle_read(&mut self, now: Instant, n: usize) {
        debug_assert!(n <= self.granted, "read {n} of {} granted", self.granted);
        self.granted = 0;
        if !matches!(self.state, State::Reading | State::Finishing) {
            return;
        }
        if n == 0 {
            self.eof = true;
        } else {
            self.bytes_read += n as u64;
            self.idle_since = now;
        }
        self.frame_out(now);
    }

    /// Splits every whole frame off the read buffer (SPEC §3.1), then applies end of stream or the
    /// end of a shutdown's last frame.
    pub(super) fn frame_out(&mut self, now: Instant) {
        self.detect_mode();
        loop {
            match self.framer.next(self.rbuf.bytes_mut()) {
                Ok(Some(Unit::Data(frame))) => {
                    let len = frame.wire_len();
                    // The frame's bytes were reserved before they were read; they go with it.
                    let memory = self.held.split(len.min(self.held.bytes()));
                    self.frame_began = None;
                    self.timers.stop(ConsumerTimer::Frame);
                    let seq = match self.number_frame() {
                        Numbered::Plain => None,
                        Numbered::Seq(seq) => Some(seq),
                        Numbered::Duplicate => continue, // dropped, its memory with it
                    };
                    self.events_bytes += len;
                    self.events
                        .push_back(Event::Frame(InFrame { frame, memory, seq }));
                    self.emitted = true;
                }
                Ok(Some(Unit::Control { control, offset })) => {
                    if !self.on_control(now, control, offset) {
                        return;
                    }
                }
                Ok(None) => break,
                Err(e) if e.is_frame_local() => {
                    self.events.push_back(Event::FrameError(e));
                    self.emitted = true;
                }
                Err(e) => {
                    let notice = !self.eof;
                    return self.fail(Error::Frame(e), notice);
                }
            }
        }
        if self.eof {
            match self.framer.check_eof(self.rbuf.bytes_mut()) {
                Ok(()) => self.end_input(None),
                // A session's frame cut short arrives again on the next connection (SPEC §10.6.4).
                Err(_) if self.session_lost_quietly() => self.end_input(None),
                Err(e) => self.fail(Error::Frame(e), false),
            }
        } else if self.state == State::Finishing && !self.framer.mid_frame(self.rbuf.bytes()) {
            let notice = self.shutdown_notice();
            self.end_input(Some(notice));
        }
    }

    /// Reading failed: the connection ends without a notice, after the frames before.
    pub fn handle_read_error(&mut self, _now: Instant, err: io::Error) {
        self.granted = 0;
        let reading = matches!(self.state, State::Reading | State::Finishing);
        // SPEC §10.6.4: a session's connection lost is resumed on another: no error to report.
        if reading && self.session_lost_quietly() {
            return self.end_input(None);
        }
        match self.state {
            State::Reading | State::Finishing => self.fail(Error::Io(err), false),
            State::Draining => self.state = State::Closed,
            _ => {}
        }
    }

    /// The driver's sleep reached a deadline: applies every timer expired at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(timer) = self.timers.take_expired(now) {
            match (timer, self.state) {
                (ConsumerTimer::Idle, State::Reading) => {
                    let idle = now.saturating_duration_since(self.idle_since);
                    let err = match self.session {
                        Some(_) => Error::Unresponsive { silent: idle },
                        None => Error::IdleTimeout { idle },
                    };
                    self.fail_awaiting(err);
                }
                (ConsumerTimer::Ack | ConsumerTimer::Heartbeat, _) => self.upkeep(now, timer),
                (ConsumerTimer::Frame, State::Reading | State::Finishing) => {
                    let buffered = self.rbuf.len();
                    let began = self.frame_began.unwrap_or(now);
                    let waited = now.saturating_duration_since(began) - self.frame_paused;
                    let err = Error::FrameTimeout {
                        frame: self.framer.frame_in_progress(),
                        buffered: buffered as u64,
                        missing: self.framer.bytes_needed(self.rbuf.bytes()),
                        waited,
                    };
                    self.fail_awaiting(err);
                }
                (ConsumerTimer::Notice, State::Notifying)
                | (ConsumerTimer::Drain, State::Draining) => self.state = State::Closed,
                _ => {}
            }
        }
    }

    /// Ends reading with `err` as the last event; a notice follows once the application is done, if
    /// `notice` and the error has one.
    fn fail(&mut self, err: Error, notice: bool) {
        let notice = if notice { err.notice() } else { None };
        self.events.push_back(Event::Failed(err));
        self.end_input(notice);
    }

    /// Ends reading on a timeout: its notice names the frame awaited and its header's offset
    /// (SPEC §6.3.1), so the producer learns that every frame before it was handled (SPEC §6.4).
    fn fail_awaiting(&mut self, err: Error) {
        let frame = self.framer.frame_in_progress();
        // The framer tells where the frame in progress began only through the error an end of
        // stream would be here (SPEC §3.4); at a frame boundary it is where the next one begins.
        let offset = match self.framer.check_eof(self.rbuf.bytes_mut()) {
            Err(framepipe_codec::Error::Truncated { offset, .. }) => offset,
            _ => self.framer.bytes_consumed(),
        };
        let notice = err
            .notice()
            .map(|n| Notice::new(&n.error, frame, offset, n.message));
        self.events.push_back(Event::Failed(err));
        self.end_input(notice);
    }

    /// No more input: frees the read buffer (frames already split off keep their own memory) and
    /// waits for the application (`Flushing`).
    pub(super) fn end_input(&mut self, notice: Option<Notice>) {
        self.rbuf = Self::read_buffer(&self.config, &self.pool);
        self.held.shrink_to(0);
        self.timers.stop(ConsumerTimer::Idle);
        self.timers.stop(ConsumerTimer::Frame);
        self.pending_notice = notice;
        self.state = State::Flushing;
    }

    fn shutdown_notice(&self) -> Notice {
        let next = self.framer.frames_seen();
        Notice::new(
            codes::SHUTTING_DOWN,
            next,
            self.framer.bytes_consumed(),
            format!(
                "the consumer is shutting down: the {next} frames before frame {next} were read and \
                 handed to its application; frame {next} and later were not read"
            ),
        )
    }

    /// Asks the connection to stop at the next frame boundary (graceful shutdown, SPEC §8.5): the
    /// frame in progress is completed, nothing after it is read, every frame read is handed on,
    /// and the producer is told with a `shutting_down` notice naming the first frame not read.
    pub fn shutdown(&mut self, _now: Instant) {
        if self.state != State::Reading {
            return;
        }
        self.timers.stop(ConsumerTimer::Idle);
        if self.framer.mid_frame(self.rbuf.bytes()) {
            self.state = State::Finishing;
        } else {
            let notice = self.shutdown_notice();
            self.end_input(Some(notice));
        }
    }

    /// Stops reading at once, without a notice: another connection took the session over
    /// (SPEC §10.8). Frames already split off are still handed on; a frame in progress is dropped
    /// (it will arrive again on the new connection).
    pub fn stop_reading(&mut self, _now: Instant) {
        if matches!(self.state, State::Reading | State::Finishing) {
            self.end_input(None);
        }
    }

    /// The application has finished with every frame handed on (its queue is empty and its last
    /// frame handled): the connection closes, after its notice if one is due.
    pub fn handle_app_done(&mut self, now: Instant) {
        if self.state == State::Flushing {
            match self.pending_notice.take() {
                Some(notice) => self.start_notice(now, notice),
                None if self.session_ends_cleanly() => self.start_goodbye(now),
                None => self.state = State::Closed,
            }
        }
    }

    /// The application refuses to go on (its handler failed under the close policy, SPEC §7.7):
    /// nothing more is read or handed on, and the producer is sent `notice`. Returns how many
    /// frames read were dropped without being handed on.
    pub fn reject(&mut self, now: Instant, notice: Notice) -> u64 {
        if !matches!(
            self.state,
            State::Reading | State::Finishing | State::Flushing
        ) {
            return 0;
        }
        let dropped = self.drop_events();
        self.rbuf = Self::read_buffer(&self.config, &self.pool);
        self.held.shrink_to(0);
        self.start_notice(now, notice);
        dropped
    }

    /// The application went away, or the shutdown was forced: the connection closes at once,
    /// without a notice. Returns how many frames read were dropped without being handed on.
    pub fn abandon(&mut self) -> u64 {
        let dropped = self.drop_events();
        self.timers.clear();
        self.state = State::Closed;
        dropped
    }

    fn drop_events(&mut self) -> u64 {
        let frames = self
            .events
            .iter()
            .filter(|e| matches!(e, Event::Frame(_)))
            .count();
        self.events.clear();
        self.events_bytes = 0;
        frames as u64
    }
}
