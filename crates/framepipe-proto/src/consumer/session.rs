//! A consumer connection in session mode (SPEC §10.4–§10.7): the hello, numbering and duplicates,
//! acks, heartbeats and the goodbye. The parts of the connection that do not depend on the mode
//! (reading, memory, deadlines, notices) are `conn.rs`'s.

use std::time::Instant;

use bytes::BytesMut;
use framepipe_codec::session::{starts_session, Control, Hello, Welcome, PROTOCOL_VERSION};
use framepipe_codec::Notice;

use super::conn::{ConsumerConn, ConsumerTimer, State};
use super::event::Event;
use crate::session::{settle, Timing, MAX_SEQUENCE};
use crate::Error;

/// Where a session connection resumes, decided by the consumer's session table from the hello
/// ([`ConsumerConn::accept_session`], SPEC §10.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionStart {
    /// The welcome's `next`: the first frame not acknowledged, where the producer resumes.
    pub next: u64,
    /// The first frame not yet handed to the handler: frames numbered below it that arrive again
    /// are dropped as duplicates (SPEC §10.5). At least `next`.
    pub handled: u64,
}

/// What the numbering made of a data frame.
pub(super) enum Numbered {
    /// A plain stream: frames are not numbered.
    Plain,
    /// A session's frame, to be handed on.
    Seq(u64),
    /// A frame the handler already has: dropped and counted.
    Duplicate,
}

/// A connection's session state.
#[derive(Debug)]
pub(super) struct SessionPart {
    hello: Option<Hello>,
    accepted: bool,
    timing: Timing,
    /// Sequence number of the next data frame to arrive.
    next_seq: u64,
    /// Frames below this are duplicates.
    dup_below: u64,
    duplicates: u64,
    /// Handled (as the application reported) and acknowledged positions.
    handled: u64,
    acked: u64,
    /// The producer said goodbye: the session ends once its frames are handled.
    goodbye: bool,
    /// The connection was lost before the goodbye.
    lost: bool,
    /// Control frames to write, and how much of them is written.
    out: BytesMut,
    out_done: usize,
    /// A write failed: nothing more is written.
    write_failed: bool,
}

impl SessionPart {
    fn new(timing: Timing) -> Self {
        SessionPart {
            hello: None,
            accepted: false,
            timing,
            next_seq: 0,
            dup_below: 0,
            duplicates: 0,
            handled: 0,
            acked: 0,
            goodbye: false,
            lost: false,
            out: BytesMut::new(),
            out_done: 0,
            write_failed: false,
        }
    }

    /// A hello arrived and the table has not answered yet.
    pub(super) fn awaiting_accept(&self) -> bool {
        self.hello.is_some() && !self.accepted
    }

    /// Control frames waiting to be written.
    pub(super) fn output(&self) -> Option<&[u8]> {
        (self.out_done < self.out.len()).then(|| &self.out[self.out_done..])
    }

    pub(super) fn written(&mut self, _now: Instant, n: usize) {
        self.out_done = (self.out_done + n).min(self.out.len());
        if self.out_done == self.out.len() {
            self.out.clear();
            self.out_done = 0;
        }
    }

    /// A write failed: what is queued is dropped and nothing more is queued.
    pub(super) fn stop_writing(&mut self) {
        self.write_failed = true;
        self.out.clear();
        self.out_done = 0;
    }

    fn push(&mut self, control: Control) {
        if self.write_failed {
            return;
        }
        control
            .encode(&mut self.out)
            .expect("a control frame made here always encodes");
    }

    pub(super) fn push_notice(&mut self, notice: Notice) {
        self.push(Control::Notice(notice));
    }
}

impl ConsumerConn {
    /// At the first byte of a consumer that offers sessions: a hello's first byte makes the stream
    /// a session stream (SPEC §9.2).
    pub(super) fn detect_mode(&mut self) {
        let Some(own) = self.config.sessions else {
            return;
        };
        if self.session.is_none()
            && self.framer.bytes_consumed() == 0
            && self
                .rbuf
                .bytes()
                .first()
                .is_some_and(|&b| starts_session(b))
        {
            self.framer.switch_to_session(self.config.codec);
            self.session = Some(SessionPart::new(Timing::from(own)));
        }
    }

    /// Numbers the data frame just split off (SPEC §9.1.4) and drops it if the handler has it.
    pub(super) fn number_frame(&mut self) -> Numbered {
        let Some(s) = &mut self.session else {
            return Numbered::Plain;
        };
        let seq = s.next_seq;
        s.next_seq += 1;
        if seq < s.dup_below {
            s.duplicates += 1;
            Numbered::Duplicate
        } else {
            Numbered::Seq(seq)
        }
    }

    /// A control frame from the producer. Returns whether framing goes on.
    pub(super) fn on_control(&mut self, now: Instant, control: Control, offset: u64) -> bool {
        let Some(s) = &mut self.session else {
            return true; // a plain stream has no control frames
        };
        let err = match control {
            Control::Hello(hello) if s.hello.is_none() => {
                if hello.next > MAX_SEQUENCE {
                    Error::SessionMismatch {
                        what: format!(
                            "hello resumes at frame {}, beyond the largest sequence number {}",
                            hello.next, MAX_SEQUENCE
                        ),
                    }
                } else if hello.version != PROTOCOL_VERSION {
                    Error::SessionMismatch {
                        what: format!(
                            "hello speaks session protocol version {}; this consumer speaks {}",
                            hello.version, PROTOCOL_VERSION
                        ),
                    }
                } else {
                    s.hello = Some(hello);
                    // Heartbeats from now on, at the pacing the welcome will carry (SPEC §10.6.1).
                    let own = self.config.sessions.unwrap_or_default();
                    s.timing = Timing::from(settle(hello.pacing, own));
                    self.events.push_back(Event::Hello(hello));
                    self.emitted = true;
                    self.arm_heartbeat(now);
                    return false; // the table decides before any frame is numbered
                }
            }
            Control::Heartbeat if s.accepted => return true,
            Control::Goodbye { next } if s.accepted && next == s.next_seq => {
                s.goodbye = true;
                self.end_input(None);
                return false;
            }
            Control::Goodbye { next } if s.accepted => Error::SessionMismatch {
                what: format!(
                    "goodbye says frames up to {next} were sent, but frames up to {} arrived",
                    s.next_seq
                ),
            },
            other => Error::Frame(framepipe_codec::Error::BadControl {
                offset,
                what: format!(
                    "a {} frame came from the producer where it has no place",
                    other.kind().name()
                ),
            }),
        };
        let _ = now;
        let notice = err.notice();
        self.events.push_back(Event::Failed(err));
        self.end_input(notice);
        false
    }

    /// A welcomed session connection ends quietly when its transport fails or ends mid-frame: the
    /// producer resumes on a new connection, so this is no error (SPEC §10.6.4). Counted in
    /// [`lost`](Self::lost).
    pub(super) fn session_lost_quietly(&mut self) -> bool {
        match &mut self.session {
            Some(s) if s.accepted => {
                s.lost = true;
                true
            }
            _ => false,
        }
    }

    /// The session's connection was lost (a reset, an end of stream without a goodbye or mid-frame)
    /// and ended quietly, for the producer to resume.
    pub fn lost(&self) -> bool {
        self.session.as_ref().is_some_and(|s| s.lost)
    }

    /// The producer said goodbye and the session ended cleanly (or is ending): it can be forgotten.
    pub fn session_ended(&self) -> bool {
        self.session_ends_cleanly()
    }

    /// Whether the connection is a session's (its first byte was a hello's).
    pub fn is_session(&self) -> bool {
        self.session.is_some()
    }

    /// The session's hello, once it has arrived.
    pub fn session_hello(&self) -> Option<&Hello> {
        self.session.as_ref()?.hello.as_ref()
    }

    /// Frames of a session that arrived again and were dropped (SPEC §10.5).
    pub fn duplicates(&self) -> u64 {
        self.session.as_ref().map_or(0, |s| s.duplicates)
    }

    /// The session's acknowledged position: the last ack (or welcome) queued to be written.
    pub fn acked(&self) -> Option<u64> {
        self.session
            .as_ref()
            .filter(|s| s.accepted)
            .map(|s| s.acked)
    }

    /// Sequence number the next data frame of the session will have.
    pub fn next_seq(&self) -> Option<u64> {
        self.session.as_ref().map(|s| s.next_seq)
    }

    /// The session table's answer to the hello ([`ReadOp::Handshake`]): the welcome is written,
    /// with the pacing settled from the hello's proposal and the consumer's own (SPEC §10.4), and
    /// frames are read from `start.next` on.
    ///
    /// [`ReadOp::Handshake`]: super::ReadOp::Handshake
    pub fn accept_session(&mut self, now: Instant, start: SessionStart) {
        let own = self.config.sessions.unwrap_or_default();
        let Some(s) = self.session.as_mut().filter(|s| s.awaiting_accept()) else {
            return;
        };
        let hello = s.hello.expect("awaiting_accept");
        debug_assert!(start.next <= start.handled, "{start:?}");
        let pacing = settle(hello.pacing, own);
        s.accepted = true;
        s.timing = Timing::from(pacing);
        s.next_seq = start.next;
        s.dup_below = start.handled.max(start.next);
        s.handled = start.next;
        s.acked = start.next;
        s.push(Control::Welcome(Welcome {
            version: PROTOCOL_VERSION,
            session: hello.session,
            next: start.next,
            pacing,
        }));
        self.arm_heartbeat(now);
        self.frame_out(now);
    }

    /// The application has handled every frame of the session below `handled` (with a session
    /// store: committed it). An ack follows when `ack_every` frames await one or the application
    /// has caught up with what arrived; else within `ack_interval` (SPEC §10.5).
    pub fn handle_handled(&mut self, now: Instant, handled: u64) {
        let open = matches!(
            self.state,
            State::Reading | State::Finishing | State::Flushing
        );
        let Some(s) = self.session.as_mut().filter(|s| s.accepted && open) else {
            return;
        };
        s.handled = s.handled.max(handled);
        if s.handled <= s.acked {
            return;
        }
        if s.handled - s.acked >= s.timing.ack_every || s.handled >= s.next_seq {
            self.send_ack(now);
        } else {
            let at = now + s.timing.ack_interval;
            self.timers.set_if_unset(ConsumerTimer::Ack, at);
        }
    }

    fn send_ack(&mut self, now: Instant) {
        if let Some(s) = &mut self.session {
            if s.handled > s.acked {
                s.acked = s.handled;
                s.push(Control::Ack { next: s.handled });
            }
        }
        self.timers.stop(ConsumerTimer::Ack);
        self.arm_heartbeat(now);
    }

    /// The next deadline of a session's acks and heartbeats, which run while the driver waits for
    /// the application or for memory: call [`handle_upkeep`](Self::handle_upkeep) then.
    pub fn poll_upkeep(&self) -> Option<Instant> {
        let ack = self.timers.get(ConsumerTimer::Ack);
        let heartbeat = self.timers.get(ConsumerTimer::Heartbeat);
        ack.into_iter().chain(heartbeat).min()
    }

    /// Applies the session's ack and heartbeat deadlines expired at `now`, and no other.
    pub fn handle_upkeep(&mut self, now: Instant) {
        for timer in [ConsumerTimer::Ack, ConsumerTimer::Heartbeat] {
            if self.timers.get(timer).is_some_and(|at| at <= now) {
                self.timers.stop(timer);
                self.upkeep(now, timer);
            }
        }
    }

    /// An ack or heartbeat deadline passed.
    pub(super) fn upkeep(&mut self, now: Instant, timer: ConsumerTimer) {
        match timer {
            ConsumerTimer::Ack => self.send_ack(now),
            _ => {
                let open = matches!(
                    self.state,
                    State::Reading | State::Finishing | State::Flushing
                );
                if let Some(s) = self.session.as_mut().filter(|s| s.hello.is_some() && open) {
                    if s.output().is_none() {
                        s.push(Control::Heartbeat);
                    }
                }
                self.arm_heartbeat(now);
            }
        }
    }

    /// Something was written or queued: the heartbeat is due a heartbeat interval later. From the
    /// hello on, also while the welcome waits for the session table (SPEC §10.6.1).
    pub(super) fn arm_heartbeat(&mut self, now: Instant) {
        let open = matches!(
            self.state,
            State::Reading | State::Finishing | State::Flushing
        );
        if let Some(s) = self.session.as_ref().filter(|s| s.hello.is_some() && open) {
            let at = now + s.timing.heartbeat;
            self.timers.set(ConsumerTimer::Heartbeat, at);
        }
    }

    /// The silence allowed between frames: `idle_timeout`, and in a session at most the liveness
    /// deadline, three heartbeat intervals (SPEC §10.6).
    pub(super) fn idle_limit(&self) -> Option<std::time::Duration> {
        let liveness = self.session.as_ref().map(|s| s.timing.liveness);
        match (self.config.idle_timeout, liveness) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The producer said goodbye: the session ends with the consumer's own once its frames are
    /// handled.
    pub(super) fn session_ends_cleanly(&self) -> bool {
        self.session.as_ref().is_some_and(|s| s.goodbye)
    }

    /// The consumer's goodbye, its final ack (SPEC §10.7), then FIN.
    pub(super) fn start_goodbye(&mut self, now: Instant) {
        if let Some(s) = &mut self.session {
            s.acked = s.handled;
            s.push(Control::Goodbye { next: s.handled });
        }
        self.start_final(now);
    }
}
