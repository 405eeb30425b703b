//! The producer's per-connection protocol as a state machine without I/O (SPEC §8.4).

use std::collections::VecDeque;
use std::io;
use std::time::{Duration, Instant};

use super::config::{ProducerConfig, MAX_BATCH_FRAMES, REPLY_GRACE};
use super::out_frame::{IoVecs, OutFrame};
use super::reply::{Reply, ReplyReader};
use crate::timer::{Timer, TimerTable};
use crate::Error;

/// Where a producer connection is in its life (SPEC §8.4):
///
/// ```text
///  Sending ──(finish: no more frames)──► Flushing ──(all written: FIN)──► Closing ──(peer closes)──► Done (confirmed)
///     │                                     │                              │ (close_timeout)────────► Done (unconfirmed)
///     │ (write error, stall)                │                              │ (notice, reply, reset,
///     └──────────────► Failing (reply_grace: the consumer's notice may say why) ──► Done (failed)  stall)
///   (notice, unexpected reply, end of stream from the consumer: Done (failed) at once)
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Taking frames and writing them.
    Sending,
    /// No more frames will come: writing what was taken, then FIN.
    Flushing,
    /// FIN sent: waiting for the consumer to close its end, which confirms it finished.
    Closing,
    /// A write failed or stalled: waiting up to [`REPLY_GRACE`] for a notice that says why.
    Failing,
    /// Over: the last event was `Closed` or `Failed`.
    Done,
}

/// What the driver writes next, from [`ProducerConn::poll_transmit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteOp {
    /// Write the gathered slices, then call `handle_written`.
    Write,
    /// Shut down the writing direction (FIN), then call `handle_fin_sent`.
    Fin,
    /// Nothing to write now.
    Idle,
}

/// What the producer core tells its driver and application.
#[derive(Debug)]
pub enum Event {
    /// Finished: every frame taken was written and FIN sent; `confirmed` if the consumer then
    /// closed its end (a framepipe consumer does once its application has handled every frame).
    Closed {
        /// The consumer closed its end after the last frame.
        confirmed: bool,
    },
    /// Failed. `reset`: close with `SO_LINGER` 0 so the kernel drops what it still holds for a
    /// consumer that is not taking it (stalls, replies that are not a notice).
    Failed {
        /// Why.
        error: Error,
        /// Reset rather than close.
        reset: bool,
    },
    /// The batching window (`linger`) of the frame being gathered has passed: make it a frame now.
    FlushBatch,
}

/// The producer core's deadlines (SPEC §8.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ProducerTimer {
    /// The consumer has accepted nothing for `stall_timeout` while bytes wait (SPEC §6.2.2).
    Stall,
    /// After FIN, the consumer has not closed its end within `close_timeout` (SPEC §6.2.3).
    Close,
    /// Time to read the kernel's send queue again while closing (SPEC §6.2.3).
    Probe,
    /// The wait for a notice after a failed or stalled write is over (SPEC §6.2.4).
    ReplyGrace,
    /// The application's deadline for a graceful close (SPEC §6.2.5).
    Deadline,
    /// The batch being gathered must become a frame (SPEC §6.6).
    Linger,
}

impl Timer for ProducerTimer {
    const ALL: &'static [Self] = &[
        ProducerTimer::Stall,
        ProducerTimer::Close,
        ProducerTimer::Probe,
        ProducerTimer::ReplyGrace,
        ProducerTimer::Deadline,
        ProducerTimer::Linger,
    ];

    fn index(self) -> usize {
        self as usize
    }
}

/// One producer connection without its transport (SPEC §8.4): frames and time go in; bytes to
/// write, the next deadline and events come out. It reads no clock and owns no socket.
///
/// Memory: the frames taken and not yet written (at most `write_batch_bytes` plus one frame, or one
/// frame if larger) and one reply buffer of [`REPLY_BUFFER`](super::REPLY_BUFFER) bytes.
#[derive(Debug)]
pub struct ProducerConn {
    config: ProducerConfig,
    state: State,
    out: VecDeque<OutFrame>,
    /// Bytes of the front frame already written.
    front_done: usize,
    /// Bytes in `out` not yet written.
    pending: usize,
    frames_taken: u64,
    frames_written: u64,
    bytes_written: u64,
    reply: ReplyReader,
    timers: TimerTable<ProducerTimer, 6>,
    /// Since when bytes have waited without the transport taking any (SPEC §6.2.2).
    stall_since: Option<Instant>,
    /// The kernel's send queue at the last probe, and since when it has not gone down.
    unsent: usize,
    unsent_since: Option<Instant>,
    probe_due: bool,
    /// The error a `Failing` connection ends with unless a notice arrives first.
    failing: Option<(Error, bool)>,
    close_began: Option<Instant>,
    events: VecDeque<Event>,
}

impl ProducerConn {
    /// A connection just made, at `now`.
    pub fn new(config: ProducerConfig, _now: Instant) -> Self {
        ProducerConn {
            config,
            state: State::Sending,
            out: VecDeque::with_capacity(MAX_BATCH_FRAMES),
            front_done: 0,
            pending: 0,
            frames_taken: 0,
            frames_written: 0,
            bytes_written: 0,
            reply: ReplyReader::new(),
            timers: TimerTable::default(),
            stall_since: None,
            unsent: 0,
            unsent_since: None,
            probe_due: false,
            failing: None,
            close_began: None,
            events: VecDeque::new(),
        }
    }

    /// Where the connection is.
    pub fn state(&self) -> State {
        self.state
    }

    /// Frames written to the transport in full.
    pub fn frames_written(&self) -> u64 {
        self.frames_written
    }

    /// Bytes written to the transport (a frame cut short counts in part).
    pub fn bytes_written(&self) -> u64 {
        self.bytes_written
    }

    /// Frames taken and not written in full (the `writing` stage).
    pub fn frames_pending(&self) -> u64 {
        self.frames_taken - self.frames_written
    }

    /// Bytes taken and not yet written (the `writing` stage).
    pub fn bytes_pending(&self) -> usize {
        self.pending
    }

    /// Whether the core takes another frame now: while sending, and while the write batch has room
    /// (`write_batch_bytes`, [`MAX_BATCH_FRAMES`]). Frames taken leave the application's budget.
    pub fn wants_frames(&self) -> bool {
        self.state == State::Sending
            && self.pending < self.config.write_batch_bytes
            && self.out.len() < MAX_BATCH_FRAMES
    }

    /// Takes `frame` for writing at `now`.
    pub fn push_frame(&mut self, now: Instant, frame: OutFrame) {
        debug_assert!(
            self.state == State::Sending,
            "frame pushed in {:?}",
            self.state
        );
        self.pending += frame.wire_len();
        self.frames_taken += 1;
        self.out.push_back(frame);
        if self.pending > 0 && self.stall_since.is_none() {
            self.progress(now);
        }
    }

    /// No more frames will be taken (the source ended, or the application closed): write the rest,
    /// then FIN (SPEC §6.2.3).
    pub fn finish(&mut self, now: Instant) {
        if self.state == State::Sending {
            self.state = State::Flushing;
            self.close_began.get_or_insert(now);
        }
    }

    /// The application's deadline for a graceful close: at `deadline` frames still unwritten are
    /// abandoned (`Error::Deadline`, with a reset), and a consumer that has not closed its end is
    /// no longer waited for (SPEC §6.2.5).
    pub fn set_deadline(&mut self, now: Instant, deadline: Instant) {
        if self.state != State::Done {
            self.close_began.get_or_insert(now);
            self.timers.set(ProducerTimer::Deadline, deadline);
        }
    }

    /// Starts the batching window: [`Event::FlushBatch`] comes at `at` unless stopped.
    pub fn start_linger(&mut self, at: Instant) {
        self.timers.set_if_unset(ProducerTimer::Linger, at);
    }

    /// The batch became a frame before its window passed.
    pub fn stop_linger(&mut self) {
        self.timers.stop(ProducerTimer::Linger);
    }

    /// Gathers the unwritten bytes into `iov` and says what to do with the transport.
    pub fn poll_transmit<'a>(&'a self, iov: &mut IoVecs<'a>) -> WriteOp {
        match self.state {
            State::Sending | State::Flushing if !self.out.is_empty() => {
                let mut skip = self.front_done;
                for frame in &self.out {
                    if iov.is_full() {
                        break;
                    }
                    frame.push_slices(skip, iov);
                    skip = 0;
                }
                WriteOp::Write
            }
            State::Flushing => WriteOp::Fin,
            _ => WriteOp::Idle,
        }
    }

    /// `n` bytes of the gathered slices were written at `now`.
    pub fn handle_written(&mut self, now: Instant, n: usize) {
        if n == 0 {
            return self.handle_write_error(now, io::ErrorKind::WriteZero.into());
        }
        self.pending -= n;
        self.bytes_written += n as u64;
        let mut left = self.front_done + n;
        while let Some(front) = self.out.front() {
            let len = front.wire_len();
            if left < len {
                break;
            }
            left -= len;
            self.frames_written += 1;
            self.out.pop_front();
        }
        self.front_done = left;
        self.progress(now);
    }

    /// The transport took bytes (or bytes began to wait) at `now`: the stall clock restarts while
    /// bytes wait, and stops when none do (an idle source is never a stall).
    fn progress(&mut self, now: Instant) {
        match (self.pending, self.config.stall_timeout) {
            (0, _) | (_, None) => {
                self.stall_since = None;
                self.timers.stop(ProducerTimer::Stall);
            }
            (_, Some(limit)) => {
                self.stall_since = Some(now);
                self.timers.set(ProducerTimer::Stall, now + limit);
            }
        }
    }

    /// Writing failed: wait [`REPLY_GRACE`] for a notice that may say why.
    pub fn handle_write_error(&mut self, now: Instant, err: io::Error) {
        self.fail_after_grace(now, from_io(err), false);
    }

    /// FIN was sent: wait for the consumer to close its end (SPEC §6.2.3).
    pub fn handle_fin_sent(&mut self, now: Instant) {
        if self.state != State::Flushing {
            return;
        }
        self.state = State::Closing;
        self.timers.stop(ProducerTimer::Stall);
        self.timers
            .set(ProducerTimer::Close, now + self.config.close_timeout);
        if let (Some(every), Some(_)) = (self.config.probe_interval, self.config.stall_timeout) {
            self.unsent_since = Some(now);
            self.timers.set(ProducerTimer::Probe, now + every);
        }
    }

    /// Where to read the consumer's reply into; `None` once it is decided or the connection is over.
    pub fn reply_buf(&mut self) -> Option<&mut [u8]> {
        if self.state == State::Done {
            return None;
        }
        self.reply.unfilled()
    }

    /// `n` bytes of reply were read at `now` (`0`: the consumer closed its end).
    pub fn handle_reply(&mut self, now: Instant, n: usize) {
        match self.reply.handle(n) {
            Reply::More => {}
            Reply::Notice(notice) => self.fail(Error::Rejected(notice), false),
            Reply::Unexpected { received, preview } => {
                self.fail(Error::UnexpectedReply { received, preview }, true)
            }
            Reply::Closed => self.peer_closed(now),
        }
    }

    /// The consumer closed its end with nothing before it (SPEC §6.2.6).
    fn peer_closed(&mut self, _now: Instant) {
        match self.state {
            State::Closing => self.done(true),
            // Everything was written and no more will come: as good as closing.
            State::Flushing if self.out.is_empty() => self.done(true),
            State::Failing => self.end_failing(),
            State::Sending | State::Flushing => {
                let source = io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the consumer closed its end while this producer was still sending",
                );
                self.fail(Error::PeerClosed { source }, false)
            }
            State::Done => {}
        }
    }

    /// Reading the reply failed (usually a reset).
    pub fn handle_reply_error(&mut self, _now: Instant, err: io::Error) {
        match self.state {
            State::Failing => self.end_failing(),
            State::Done => {}
            _ => self.fail(from_io(err), false),
        }
    }

    /// Whether the driver should read the kernel's send queue now ([`handle_unsent`](Self::handle_unsent)).
    pub fn take_probe_due(&mut self) -> bool {
        std::mem::take(&mut self.probe_due)
    }

    /// A reading of the kernel's send queue (`SIOCOUTQ`) at `now`, while closing: if it has not gone
    /// down for `stall_timeout` while not zero, the consumer is not reading (SPEC §6.2.3).
    pub fn handle_unsent(&mut self, now: Instant, bytes: usize) {
        if self.state != State::Closing {
            return;
        }
        if bytes == 0 || bytes < self.unsent {
            self.unsent_since = Some(now);
        }
        self.unsent = bytes;
        let since = *self.unsent_since.get_or_insert(now);
        let waited = now.saturating_duration_since(since);
        match self.config.stall_timeout {
            Some(limit) if bytes > 0 && waited >= limit => {
                self.fail(Error::Stalled { waited }, true);
            }
            _ => {
                if let Some(every) = self.config.probe_interval {
                    self.timers.set(ProducerTimer::Probe, now + every);
                }
            }
        }
    }

    /// The earliest deadline: call [`handle_timeout`](Self::handle_timeout) then.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next()
    }

    /// The driver's sleep reached a deadline: applies every timer expired at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(timer) = self.timers.take_expired(now) {
            match timer {
                ProducerTimer::Stall => {
                    let since = self.stall_since.unwrap_or(now);
                    let waited = now.saturating_duration_since(since);
                    self.fail_after_grace(now, Error::Stalled { waited }, true);
                }
                ProducerTimer::Close => self.done(false),
                ProducerTimer::Probe => self.probe_due = true,
                ProducerTimer::ReplyGrace => self.end_failing(),
                ProducerTimer::Deadline => match self.state {
                    State::Sending | State::Flushing => {
                        let after = now.saturating_duration_since(self.close_began.unwrap_or(now));
                        self.fail(Error::Deadline { after }, true);
                    }
                    State::Closing => self.done(false),
                    State::Failing => self.end_failing(),
                    State::Done => {}
                },
                ProducerTimer::Linger => self.events.push_back(Event::FlushBatch),
            }
        }
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    fn fail_after_grace(&mut self, now: Instant, error: Error, reset: bool) {
        if !matches!(
            self.state,
            State::Sending | State::Flushing | State::Closing
        ) {
            return;
        }
        if self.reply.unfilled().is_none() {
            return self.fail(error, reset); // the reply was decided: no notice can follow
        }
        self.timers.clear();
        self.timers
            .set(ProducerTimer::ReplyGrace, now + REPLY_GRACE);
        self.failing = Some((error, reset));
        self.state = State::Failing;
    }

    fn end_failing(&mut self) {
        if let Some((error, reset)) = self.failing.take() {
            self.fail(error, reset);
        }
    }

    fn fail(&mut self, error: Error, reset: bool) {
        if self.state == State::Done {
            return;
        }
        self.state = State::Done;
        self.timers.clear();
        self.failing = None;
        self.events.push_back(Event::Failed { error, reset });
    }

    fn done(&mut self, confirmed: bool) {
        if self.state == State::Done {
            return;
        }
        self.state = State::Done;
        self.timers.clear();
        self.events.push_back(Event::Closed { confirmed });
    }

    /// Time since the close began (`finish` or `set_deadline`), for reports.
    pub fn closing_for(&self, now: Instant) -> Option<Duration> {
        self.close_began.map(|t| now.saturating_duration_since(t))
    }
}

/// A reset, broken pipe or end of stream is the consumer closing; anything else is plain I/O.
pub(super) fn from_io(err: io::Error) -> Error {
    match err.kind() {
        io::ErrorKind::ConnectionReset
        | io::ErrorKind::BrokenPipe
        | io::ErrorKind::ConnectionAborted
        | io::ErrorKind::UnexpectedEof => Error::PeerClosed { source: err },
        _ => Error::Io(err),
    }
}
