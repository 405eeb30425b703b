//! The one piece of the producer that touches a transport: it runs a connection core
//! ([`ProducerConn`]) over any `AsyncRead + AsyncWrite`, taking frames from the queue (SPEC §8.1).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use framepipe_flow::{PeerAddr, Sampler, SocketProbe};
use framepipe_proto::producer::{Event, IoVecs, OutFrame, ProducerConn, WriteOp};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

use crate::error::Progress;
use crate::queue::{FrameSink, SendQueue};
use crate::stats::{Report, Stats};
use crate::Error;

/// Drives one producer connection to its end. A future: poll it (or spawn it) and it returns the
/// report, or the error that ended the connection.
pub(crate) struct Driver<T> {
    pub(crate) io: T,
    pub(crate) core: ProducerConn,
    pub(crate) queue: Arc<SendQueue>,
    pub(crate) stats: Stats,
    pub(crate) peer: PeerAddr,
    pub(crate) probe: Option<Arc<dyn SocketProbe>>,
    pub(crate) sleep: Pin<Box<Sleep>>,
    /// Frames the core had taken when last reported to the `writing` gauge.
    pub(crate) writing_shown: usize,
    /// The queue has no more frames to give.
    pub(crate) finished: bool,
    pub(crate) _sampler: Sampler,
    /// Kept while the connection lives: its place in the socket set (unprobed transports).
    pub(crate) _registration: Option<framepipe_flow::Unprobed>,
}

fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

/// The plain core as the queue's sink: it takes frames while its write batch has room.
struct Plain<'a> {
    core: &'a mut ProducerConn,
    now: Instant,
}

impl FrameSink for Plain<'_> {
    fn admits(&self, _len: usize) -> bool {
        self.core.wants_frames()
    }

    fn push(&mut self, frame: OutFrame) {
        self.core.push_frame(self.now, frame);
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> Driver<T> {
    /// One pass over everything that can make progress; `true` if anything did.
    fn step(&mut self, cx: &mut Context<'_>) -> bool {
        let mut progress = self.take_frames(cx);
        progress |= self.write(cx);
        progress |= self.read_reply(cx);
        if self.core.take_probe_due() {
            if let Some(Ok(unsent)) = self.probe.as_ref().map(|p| p.unsent_bytes()) {
                self.core.handle_unsent(now(), unsent);
            }
            progress = true;
        }
        if let Some(at) = self.core.poll_timeout() {
            let at = tokio::time::Instant::from_std(at);
            if self.sleep.deadline() != at {
                self.sleep.as_mut().reset(at);
            }
            if self.sleep.as_mut().poll(cx).is_ready() {
                self.core.handle_timeout(now());
                progress = true;
            }
        }
        self.show_writing();
        progress
    }

    /// Moves frames from the queue into the core while it has room (SPEC §6.2.2).
    fn take_frames(&mut self, cx: &mut Context<'_>) -> bool {
        if self.finished {
            return false;
        }
        let now = now();
        let taken = self.queue.take(
            cx,
            &mut Plain {
                core: &mut self.core,
                now,
            },
        );
        if let (Some(at), Some(linger)) = (taken.linger_from, self.queue.linger()) {
            self.core.start_linger(at + linger);
        }
        if let Some(deadline) = taken.deadline {
            self.core.set_deadline(now, deadline);
        }
        if taken.finished {
            self.finished = true;
            self.core.finish(now);
        }
        taken.frames > 0
            || taken.finished
            || taken.linger_from.is_some()
            || taken.deadline.is_some()
    }

    /// Writes what the core gathers: one vectored write, or FIN.
    fn write(&mut self, cx: &mut Context<'_>) -> bool {
        let Driver { io, core, .. } = self;
        let mut iov = IoVecs::new();
        let written = match core.poll_transmit(&mut iov) {
            WriteOp::Write => Pin::new(&mut *io).poll_write_vectored(cx, iov.as_slices()),
            WriteOp::Fin => {
                return match Pin::new(io).poll_shutdown(cx) {
                    Poll::Ready(Ok(())) => {
                        core.handle_fin_sent(now());
                        true
                    }
                    Poll::Ready(Err(e)) => {
                        core.handle_write_error(now(), e);
                        true
                    }
                    Poll::Pending => false,
                };
            }
            WriteOp::Idle => return false,
        };
        match written {
            Poll::Ready(Ok(n)) => {
                core.handle_written(now(), n);
                self.stats
                    .set_written(self.core.frames_written(), self.core.bytes_written());
                if self.core.bytes_pending() == 0 {
                    self.queue.notify_drained();
                }
                true
            }
            Poll::Ready(Err(e)) => {
                core.handle_write_error(now(), e);
                true
            }
            Poll::Pending => false,
        }
    }

    /// Reads the consumer's reply into the core's buffer (SPEC §6.3), until it is decided.
    fn read_reply(&mut self, cx: &mut Context<'_>) -> bool {
        let Driver { io, core, .. } = self;
        let Some(buf) = core.reply_buf() else {
            return false;
        };
        let mut buf = ReadBuf::new(buf);
        match Pin::new(io).poll_read(cx, &mut buf) {
            Poll::Ready(Ok(())) => {
                let n = buf.filled().len();
                core.handle_reply(now(), n);
                true
            }
            Poll::Ready(Err(e)) => {
                core.handle_reply_error(now(), e);
                true
            }
            Poll::Pending => false,
        }
    }

    fn show_writing(&mut self) {
        let pending = self.core.bytes_pending();
        let gauge = self.stats.writing_gauge();
        if pending > self.writing_shown {
            gauge.grow(pending - self.writing_shown);
        } else {
            gauge.shrink(self.writing_shown - pending);
        }
        self.writing_shown = pending;
    }

    fn progress(&self) -> Progress {
        Progress {
            frames_written: self.core.frames_written(),
            bytes_written: self.core.bytes_written(),
            never_sent: self
                .stats
                .frames_encoded()
                .saturating_sub(self.core.frames_written()),
        }
    }

    /// The connection's outcome from the core's last event.
    fn end(&mut self, event: Event) -> Option<Result<Report, Error>> {
        let outcome = match event {
            Event::FlushBatch => {
                self.queue.flush_batch();
                return None;
            }
            Event::Closed { confirmed } => Ok(confirmed),
            Event::Failed { error, reset } => Err((error, reset)),
        };
        // The peaks are the sampler's; a connection that ends between two samples (a failure in
        // its first milliseconds) records what it holds now, before the queue is emptied (§5.3).
        self.stats.monitor().record();
        // Frames still queued (and a batch being gathered) will never be sent; the senders learn
        // the queue is closed. Done first, so the counts below include them.
        self.queue.fail();
        self.stats
            .set_written(self.core.frames_written(), self.core.bytes_written());
        // Nothing is being written any more.
        self.stats.writing_gauge().shrink(self.writing_shown);
        self.writing_shown = 0;
        Some(match outcome {
            Ok(confirmed) => {
                if !confirmed {
                    tracing::warn!(
                        peer = %self.peer,
                        frames = self.core.frames_written(),
                        "the consumer did not close its end in time; every frame was written, but \
                         that it handled them all is not confirmed"
                    );
                }
                tracing::info!(peer = %self.peer, frames = self.core.frames_written(), confirmed,
                    "connection closed");
                Ok(Report {
                    snapshot: self.stats.snapshot(),
                    confirmed,
                })
            }
            Err((error, reset)) => {
                if reset {
                    if let Some(probe) = &self.probe {
                        let _ = probe.reset_on_close();
                    }
                }
                let error = Error::from_core(&self.peer, self.progress(), error);
                tracing::warn!(peer = %self.peer, code = error.code(), "connection failed: {error}");
                crate::metrics::record_error(error.code());
                Err(error)
            }
        })
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> Future for Driver<T> {
    type Output = Result<Report, Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        loop {
            let mut progress = this.step(cx);
            while let Some(event) = this.core.poll_event() {
                if let Some(result) = this.end(event) {
                    return Poll::Ready(result);
                }
                // A batch made a frame: take it on the next pass.
                progress = true;
            }
            if !progress {
                return Poll::Pending;
            }
        }
    }
}
