//! The producer's byte-budgeted queue between the application and the connection's driver, with
//! permits reserved before an item is taken (SPEC §6.1, §6.7).
//!
//! ```text
//!   reserve() ──(room: queued + promised < budget)──► Permit ──send(item)──► encode ──► frames ──► driver
//!       ▲ waits while full                                                     (batch)
//!       └────────────── a frame taken by the driver makes room ◄──────────────────┘
//! ```
//!
//! A permit promises the size of the last frame encoded; when its item is sent the real size is
//! counted instead. The queue therefore holds at most `budget` bytes, plus, for each permit
//! outstanding, how much its frame is larger than the one before (a frame larger than the whole
//! budget is granted only when the queue is empty, and travels alone).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Waker};
use std::time::Instant;

use framepipe_proto::producer::OutFrame;
use serde::Serialize;
use tokio::sync::Notify;

use crate::encoder::{Batching, PayloadEncoder};
use crate::stats::Stats;
use crate::Error;

/// The queue shared by a connection's senders and its driver.
#[derive(Debug)]
pub(crate) struct SendQueue {
    state: Mutex<State>,
    /// Serializes typed items; one per connection, so its chunk is shared by every sender.
    encoder: Mutex<PayloadEncoder>,
    /// Wakes `reserve` when room is made or the queue closes.
    room: Notify,
    /// Wakes `flush` when every frame accepted has been taken by the driver and written.
    drained: Notify,
    budget: usize,
    max_items: usize,
    batching: Option<Batching>,
    stats: Stats,
}

#[derive(Debug)]
struct State {
    frames: VecDeque<OutFrame>,
    frames_bytes: usize,
    batch_bytes: usize,
    permits: usize,
    promised: usize,
    /// Bytes the next frame is expected to take: the last frame's.
    estimate: usize,
    /// No more frames are accepted (close, every sender dropped, or the connection ended).
    closed: Option<&'static str>,
    driver: Option<Waker>,
    /// The driver, woken by `close` even while it is not waiting for frames (blocked writing to a
    /// consumer that does not read), so that a close deadline starts at once (SPEC §6.2.5).
    closer: Option<Waker>,
    /// A batch was opened at this instant: the driver starts its linger.
    linger_from: Option<Instant>,
    /// The application's deadline for closing.
    deadline: Option<Instant>,
    /// The connection has ended.
    failed: bool,
    /// Tasks waiting in `grant`: room is announced only when someone waits.
    waiting: usize,
    /// Items and frames accepted so far.
    items: u64,
    accepted: u64,
}

/// One grant of room: the estimate it promised.
#[derive(Debug)]
pub(crate) struct Grant(usize);

/// Counts a task waiting in `grant`, until it stops (returns or is cancelled).
struct Waiting<'a>(&'a SendQueue);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.lock().waiting -= 1;
    }
}

/// Where the driver puts the frames it takes from the queue: a connection core.
pub(crate) trait FrameSink {
    /// Whether a frame of `len` wire bytes is taken now (`0`: whether any would be).
    fn admits(&self, len: usize) -> bool;
    /// Takes `frame`.
    fn push(&mut self, frame: OutFrame);
}

/// What the driver found in the queue on one visit ([`SendQueue::take`]).
#[derive(Debug, Default)]
pub(crate) struct Taken {
    /// Frames handed to the driver.
    pub(crate) frames: usize,
    /// Closed and empty: no frame will come.
    pub(crate) finished: bool,
    /// A batch opened at this instant since the last visit: its linger starts.
    pub(crate) linger_from: Option<Instant>,
    /// The application's close deadline, newly set.
    pub(crate) deadline: Option<Instant>,
}

impl SendQueue {
    pub(crate) fn new(
        budget: usize,
        max_items: usize,
        max_frame_length: u32,
        batching: Option<Batching>,
        stats: Stats,
    ) -> Arc<Self> {
        Arc::new(SendQueue {
            state: Mutex::new(State {
                frames: VecDeque::new(),
                frames_bytes: 0,
                batch_bytes: 0,
                permits: 0,
                promised: 0,
                estimate: 1,
                closed: None,
                driver: None,
                closer: None,
                linger_from: None,
                deadline: None,
                failed: false,
                waiting: 0,
                items: 0,
                accepted: 0,
            }),
            encoder: Mutex::new(PayloadEncoder::new(max_frame_length)),
            room: Notify::new(),
            drained: Notify::new(),
            budget: budget.max(1),
            max_items: max_items.max(1),
            batching,
            stats,
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn lock_encoder(&self) -> MutexGuard<'_, PayloadEncoder> {
        self.encoder.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Room now, or `Ok(None)`; `Err(Closed)` once closed.
    pub(crate) fn try_grant(&self) -> Result<Option<Grant>, Error> {
        let mut s = self.lock();
        if let Some(why) = s.closed {
            return Err(Error::Closed(why));
        }
        let held = s.frames_bytes + s.batch_bytes + s.promised;
        let fits = held + s.estimate <= self.budget || held == 0;
        if !fits || s.frames.len() + s.permits >= self.max_items {
            return Ok(None);
        }
        s.permits += 1;
        let estimate = s.estimate;
        s.promised += estimate;
        Ok(Some(Grant(estimate)))
    }

    /// Waits for room (SPEC §6.7).
    ///
    /// # Backpressure
    /// Waits while the queue holds its budget; holds nothing meanwhile. Cancelling the wait loses
    /// nothing.
    pub(crate) async fn grant(&self) -> Result<Grant, Error> {
        // The usual case, room now, costs one lock and no registration with `room`.
        if let Some(grant) = self.try_grant()? {
            return Ok(grant);
        }
        let mut waiting_since = None;
        loop {
            let notified = self.room.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let granted = self.try_grant();
            if !matches!(granted, Ok(None)) {
                // The time spent waiting is the `queue` stage's `blocked_ms` (SPEC §5.1.5).
                if let Some(since) = waiting_since {
                    self.stats
                        .queue_gauge()
                        .add_blocked(Instant::elapsed(&since));
                }
                return granted.map(|g| g.expect("not None"));
            }
            waiting_since.get_or_insert_with(Instant::now);
            self.lock().waiting += 1;
            let _waiting = Waiting(self);
            notified.await;
        }
    }

    /// Bytes queued and promised, for `Full`.
    pub(crate) fn queued_bytes(&self) -> usize {
        let s = self.lock();
        s.frames_bytes + s.batch_bytes + s.promised
    }

    pub(crate) fn budget(&self) -> usize {
        self.budget
    }

    /// The batching window, if batching is on.
    pub(crate) fn linger(&self) -> Option<std::time::Duration> {
        self.batching.map(|b| b.get_linger())
    }

    /// A permit given back unused.
    pub(crate) fn release(&self, grant: Grant) {
        {
            let mut s = self.lock();
            s.permits -= 1;
            s.promised -= grant.0;
        }
        self.room.notify_waiters();
    }

    /// Encodes `item` under `grant` and queues it (or adds it to the batch). Never waits.
    ///
    /// The encoder's lock is held from the check that the queue is open until the item is counted
    /// in, so `close` (which sends the batch) sees every item accepted before it.
    pub(crate) fn send_json<T: Serialize + ?Sized>(
        &self,
        grant: Grant,
        item: &T,
    ) -> Result<(), Error> {
        let mut encoder = self.lock_encoder();
        // The state's lock is released before `release` takes it again.
        let closed = self.lock().closed;
        if let Some(why) = closed {
            self.release(grant);
            return Err(Error::Closed(why));
        }
        let (frame, opened) = match self.batching {
            None => match encoder.encode_json(item) {
                Ok(frame) => (Some(frame), false),
                Err(e) => return Err(self.refuse(grant, e)),
            },
            Some(batching) => match encoder.batch_json(item, batching.get_max_bytes()) {
                Ok(batched) => (batched.sent.map(|(f, _)| f), batched.opened),
                Err(e) => return Err(self.refuse(grant, e)),
            },
        };
        self.accept(grant, frame, encoder.batch_bytes(), opened);
        Ok(())
    }

    /// Queues a raw body under `grant`. Never waits.
    pub(crate) fn send_raw(&self, grant: Grant, body: bytes::Bytes) -> Result<(), Error> {
        let encoder = self.lock_encoder();
        // The state's lock is released before `release` takes it again.
        let closed = self.lock().closed;
        if let Some(why) = closed {
            self.release(grant);
            return Err(Error::Closed(why));
        }
        let frame = match encoder.encode_raw(body) {
            Ok(frame) => frame,
            Err(e) => return Err(self.refuse(grant, e)),
        };
        self.accept(grant, Some(frame), encoder.batch_bytes(), false);
        Ok(())
    }

    fn refuse(&self, grant: Grant, source: framepipe_codec::Error) -> Error {
        let frame = self.lock().items;
        self.release(grant);
        Error::Encode {
            frame,
            frames_written: self.stats.frames_written(),
            source,
        }
    }

    /// Counts the item in, replaces the grant's promise with what was queued, wakes the driver.
    fn accept(&self, grant: Grant, frame: Option<OutFrame>, batch_bytes: usize, opened: bool) {
        let mut s = self.lock();
        s.permits -= 1;
        s.promised -= grant.0;
        s.items += 1;
        self.stats.add_items(1);
        let batch_before = std::mem::replace(&mut s.batch_bytes, batch_bytes);
        self.stats.encoded_gauge().shrink(batch_before);
        self.stats.encoded_gauge().grow(batch_bytes);
        if opened {
            s.linger_from = Some(tokio::time::Instant::now().into_std());
        }
        if let Some(frame) = frame {
            self.push(&mut s, frame);
        }
        let waker = s.driver.take();
        drop(s);
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    fn push(&self, s: &mut State, frame: OutFrame) {
        let len = frame.wire_len();
        s.estimate = len.max(1);
        s.frames_bytes += len;
        s.accepted += 1;
        self.stats.add_encoded(len);
        self.stats.queue_gauge().add(len);
        s.frames.push_back(frame);
    }

    /// The driver's one visit to the queue per pass, under one lock: frames while `sink` admits
    /// them (asked with each frame's length before it is taken), the linger and deadline news, and,
    /// when the queue is empty, its waker to be woken by the next frame or the close.
    pub(crate) fn take(&self, cx: &mut Context<'_>, sink: &mut impl FrameSink) -> Taken {
        let mut taken = Taken::default();
        let mut s = self.lock();
        taken.linger_from = s.linger_from.take();
        taken.deadline = s.deadline.take();
        if !s.closer.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            s.closer = Some(cx.waker().clone());
        }
        while let Some(len) = s.frames.front().map(OutFrame::wire_len) {
            if !sink.admits(len) {
                break;
            }
            let frame = s.frames.pop_front().expect("a front frame");
            s.frames_bytes -= len;
            self.stats.queue_gauge().remove(len);
            taken.frames += 1;
            sink.push(frame);
        }
        if s.frames.is_empty() && sink.admits(0) {
            if s.closed.is_some() && s.batch_bytes == 0 {
                taken.finished = true;
            } else if !s.driver.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                s.driver = Some(cx.waker().clone());
            }
        }
        let waiting = s.waiting > 0;
        drop(s);
        if taken.frames > 0 && waiting {
            self.room.notify_waiters();
        }
        taken
    }

    /// The batch's linger is over: it becomes a frame now.
    pub(crate) fn flush_batch(&self) {
        let mut encoder = self.lock_encoder();
        if self.lock().failed {
            return; // `fail` took the batch
        }
        let Some((frame, _items)) = encoder.take_batch() else {
            return;
        };
        let mut s = self.lock();
        self.stats.encoded_gauge().shrink(s.batch_bytes);
        s.batch_bytes = 0;
        self.push(&mut s, frame);
    }

    /// The application's close deadline, if one was set since the last look; registers `cx` to be
    /// woken when one is (a session's driver looks even while it has no connection).
    pub(crate) fn poll_deadline(&self, cx: &mut Context<'_>) -> Option<Instant> {
        let mut s = self.lock();
        if !s.closer.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            s.closer = Some(cx.waker().clone());
        }
        s.deadline.take()
    }

    /// No more items are taken; the batch, if any, goes out as a frame. `deadline`: the driver
    /// abandons what is not written by then.
    pub(crate) fn close(&self, why: &'static str, deadline: Option<Instant>) {
        self.flush_batch();
        let (waker, closer) = {
            let mut s = self.lock();
            s.closed.get_or_insert(why);
            if deadline.is_some() {
                s.deadline = deadline;
            }
            (s.driver.take(), s.closer.take())
        };
        self.room.notify_waiters();
        for waker in [waker, closer].into_iter().flatten() {
            waker.wake();
        }
    }

    /// The connection is over: frames left are never sent (they are dropped now), and how many
    /// they were is returned. A batch being gathered becomes a frame first, so that it is counted
    /// among the frames never sent (SPEC §6.6.4).
    pub(crate) fn fail(&self) -> u64 {
        self.flush_batch();
        let dropped = {
            let mut s = self.lock();
            s.closed.get_or_insert("the connection has ended");
            s.failed = true;
            let dropped = s.frames.len() as u64;
            for frame in s.frames.drain(..) {
                self.stats.queue_gauge().remove(frame.wire_len());
            }
            s.frames_bytes = 0;
            dropped
        };
        self.room.notify_waiters();
        self.drained.notify_waiters();
        dropped
    }

    /// `true` once no more items are taken.
    pub(crate) fn is_closed(&self) -> bool {
        self.lock().closed.is_some()
    }

    /// Frames accepted so far.
    pub(crate) fn accepted(&self) -> u64 {
        self.lock().accepted
    }

    /// The driver wrote everything it had and the queue is empty: wakes `flush`.
    pub(crate) fn notify_drained(&self) {
        self.drained.notify_waiters();
    }

    /// Waits until every frame accepted before the call has been written, or the connection ends.
    pub(crate) async fn flush(&self) {
        // Items in a batch are sent now rather than at the end of its linger.
        self.flush_batch();
        if let Some(waker) = self.lock().driver.take() {
            waker.wake();
        }
        let target = self.accepted();
        loop {
            let notified = self.drained.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.stats.frames_written() >= target || self.lock().failed {
                return;
            }
            notified.await;
        }
    }
}

/// Takes the items of `source` into `queue`, each only once a permit for it is granted (SPEC
/// §6.2.1), queued with `send`; closes the queue when the source ends. Returns early, `Ok`, when the
/// connection (or session) ended first: its driver says why. An item `send` refuses stops it.
pub(crate) async fn pump<S, F>(queue: &SendQueue, source: S, send: F) -> Result<(), Error>
where
    S: futures::Stream,
    F: Fn(&SendQueue, Grant, S::Item) -> Result<(), Error>,
{
    use futures::StreamExt;
    let mut source = std::pin::pin!(source);
    loop {
        let Ok(grant) = queue.grant().await else {
            return Ok(());
        };
        let Some(item) = source.next().await else {
            queue.release(grant);
            break;
        };
        if let Err(e) = send(queue, grant, item) {
            queue.close("an item could not be encoded", None);
            return Err(e);
        }
    }
    queue.close("the source ended", None);
    Ok(())
}
