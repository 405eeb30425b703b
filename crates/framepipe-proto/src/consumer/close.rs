//! The end of a consumer connection: notices, a session's last control frames, FIN and draining
//! (SPEC §6.3, §8.3.4).

use std::io;
use std::time::Instant;

use super::config::NOTICE_TIMEOUT;
use super::conn::{ConsumerConn, ConsumerTimer, State};
use super::event::Transmit;
use super::session::SessionPart;
use framepipe_codec::Notice;

impl ConsumerConn {
    pub(super) fn start_notice(&mut self, now: Instant, notice: Notice) {
        match &mut self.session {
            // SPEC §9.3: in a session the notice is a control frame, after any ack due.
            Some(session) => session.push_notice(notice),
            None => {
                self.transmit = notice.to_frame().freeze();
                self.transmitted = 0;
            }
        }
        self.start_final(now);
    }

    /// Writes what is queued (a notice, a session's last ack and goodbye), then FIN, within
    /// [`NOTICE_TIMEOUT`].
    pub(super) fn start_final(&mut self, now: Instant) {
        self.timers.clear();
        self.timers.set(ConsumerTimer::Notice, now + NOTICE_TIMEOUT);
        self.state = State::Notifying;
    }

    /// What to write next: a session's control frames (welcome, acks, heartbeats, its notice or
    /// goodbye) whenever there are any, else a plain stream's notice, then FIN.
    pub fn poll_transmit(&self) -> Transmit<'_> {
        if let Some(out) = self.session.as_ref().and_then(SessionPart::output) {
            return Transmit::Bytes(out);
        }
        match self.state {
            State::Notifying if self.transmitted < self.transmit.len() => {
                Transmit::Bytes(&self.transmit[self.transmitted..])
            }
            State::Notifying => Transmit::Fin,
            _ => Transmit::Nothing,
        }
    }

    /// `n` bytes of [`Transmit::Bytes`] were written.
    pub fn handle_written(&mut self, now: Instant, n: usize) {
        match &mut self.session {
            Some(session) if session.output().is_some() => session.written(now, n),
            _ => self.transmitted = (self.transmitted + n).min(self.transmit.len()),
        }
        self.arm_heartbeat(now);
    }

    /// Writing failed: the producer cannot be told; the connection closes. In a session, whose
    /// acks are written while frames are read, the connection is lost instead: nothing more is read
    /// or written, the frames read are still handed on, and the producer resumes on another
    /// connection (SPEC §10.6.4).
    pub fn handle_write_error(&mut self, _now: Instant, _err: io::Error) {
        if let Some(s) = &mut self.session {
            s.stop_writing();
        }
        let reading = matches!(self.state, State::Reading | State::Finishing);
        if reading && self.session_lost_quietly() {
            return self.end_input(None);
        }
        if self.state == State::Flushing && self.session.is_some() {
            return; // the application finishes its frames; then the connection closes
        }
        self.timers.clear();
        self.state = State::Closed;
    }

    /// Our direction is shut down (FIN sent): drain until the peer closes or `drain_timeout`.
    pub fn handle_fin_sent(&mut self, now: Instant) {
        if self.state == State::Notifying {
            self.timers.clear();
            self.timers
                .set(ConsumerTimer::Drain, now + self.config.drain_timeout);
            self.state = State::Draining;
        }
    }

    /// `n` bytes were read and thrown away while draining; `0` is the end of stream.
    pub fn handle_discarded(&mut self, _now: Instant, n: usize) {
        if n == 0 && self.state == State::Draining {
            self.timers.clear();
            self.state = State::Closed;
        }
    }
}
