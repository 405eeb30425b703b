//! The producer side of the `producer` and `demo` examples: feeding a source through a `Sender`,
//! and closing on signals (the first: finish within a deadline; the second: at once).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use std::future::Future;

use bytes::Bytes;
use framepipe::producer::{
    Error, Permit, RawPermit, RawSender, Report, Sender, Session, SessionReport,
};
use futures::future::BoxFuture;
use futures::stream::TakeUntil;
use futures::{FutureExt, Stream, StreamExt};
use serde::Serialize;
use tokio::sync::oneshot;

use super::Signals;

/// How a producer connection was closed.
#[derive(Debug)]
pub struct Closed {
    /// The connection's outcome.
    pub result: Result<Report, Error>,
    /// A signal came, before or during the close.
    pub interrupted: bool,
    /// A second signal forced the close.
    pub forced: bool,
}

impl Closed {
    /// The close did not finish its work: forced, or the deadline ran out before every frame was
    /// written (`Deadline`) or before the consumer confirmed.
    pub fn cut_short(&self) -> bool {
        self.forced
            || matches!(self.result, Err(Error::Deadline { .. }))
            || (self.interrupted && self.result.as_ref().is_ok_and(|r| !r.confirmed))
    }
}

/// What [`feed`] and [`close`] need of a sender handle: the typed [`Sender`] and the [`RawSender`].
pub trait Handle: Clone + Send + Sync + 'static {
    /// What it sends.
    type Item;
    /// Room for one item.
    type Permit;
    /// Room now, or `Full`.
    fn try_reserve(&self) -> Result<Self::Permit, Error>;
    /// Room, once there is some.
    fn reserve(&self) -> impl Future<Output = Result<Self::Permit, Error>> + Send;
    /// Sends `item` in the room of `permit`.
    fn send(permit: Self::Permit, item: Self::Item) -> Result<(), Error>;
    /// `close()` without a deadline, else `close_within(deadline)`.
    fn close_by(self, deadline: Option<Duration>) -> BoxFuture<'static, Result<Report, Error>>;
}

impl<T: Serialize + Send + 'static> Handle for Sender<T> {
    type Item = T;
    type Permit = Permit<T>;
    fn try_reserve(&self) -> Result<Permit<T>, Error> {
        Sender::try_reserve(self)
    }
    fn reserve(&self) -> impl Future<Output = Result<Permit<T>, Error>> + Send {
        Sender::reserve(self)
    }
    fn send(permit: Permit<T>, item: T) -> Result<(), Error> {
        permit.send(item)
    }
    fn close_by(self, deadline: Option<Duration>) -> BoxFuture<'static, Result<Report, Error>> {
        match deadline {
            Some(d) => self.close_within(d).boxed(),
            None => self.close().boxed(),
        }
    }
}

impl Handle for RawSender {
    type Item = Bytes;
    type Permit = RawPermit;
    fn try_reserve(&self) -> Result<RawPermit, Error> {
        RawSender::try_reserve(self)
    }
    fn reserve(&self) -> impl Future<Output = Result<RawPermit, Error>> + Send {
        RawSender::reserve(self)
    }
    fn send(permit: RawPermit, item: Bytes) -> Result<(), Error> {
        permit.send(item)
    }
    fn close_by(self, deadline: Option<Duration>) -> BoxFuture<'static, Result<Report, Error>> {
        match deadline {
            Some(d) => self.close_within(d).boxed(),
            None => self.close().boxed(),
        }
    }
}

/// Sends every item of `source` through `sender`, until the source or the connection ends, at
/// most one per tick of `pace` if given. Room is reserved before the source is polled, so a full
/// queue stops the source (SPEC §6.7); the time spent waiting for room is added to `waited_ms`.
///
/// The pacing wait comes before the reservation, so no permit is held across it: a permit held
/// while the connection ends makes `Permit::send` deadlock (see the note in `service_export.rs`).
pub async fn feed<H: Handle>(
    sender: &H,
    source: impl Stream<Item = H::Item>,
    mut pace: Option<tokio::time::Interval>,
    waited_ms: &AtomicU64,
) {
    let mut source = std::pin::pin!(source);
    loop {
        if let Some(tick) = pace.as_mut() {
            tick.tick().await;
        }
        let asked = Instant::now();
        let permit = match sender.try_reserve() {
            Ok(permit) => permit,
            Err(Error::Full { .. }) => match sender.reserve().await {
                Ok(permit) => {
                    waited_ms.fetch_add(asked.elapsed().as_millis() as u64, Relaxed);
                    permit
                }
                Err(_) => return, // the connection ended: `close` says why
            },
            Err(_) => return,
        };
        let Some(item) = source.next().await else {
            return; // dropping the permit gives its room back
        };
        if H::send(permit, item).is_err() {
            return;
        }
    }
}

/// Closes the connection behind `sender` and waits for its outcome: without a deadline unless
/// `interrupted`, within `timeout` once a signal has come, and at once on the next signal
/// (`close_within(0)`: what is not written by then is never sent, and the connection is reset).
pub async fn close<H: Handle>(
    who: &str,
    sender: &H,
    signals: &mut Signals,
    mut interrupted: bool,
    timeout: Duration,
) -> Closed {
    let mut closing = sender.clone().close_by(interrupted.then_some(timeout));
    let mut forced = false;
    loop {
        tokio::select! {
            biased;
            result = &mut closing => return Closed { result, interrupted, forced },
            name = signals.recv(), if !forced => {
                // The close in progress is dropped: only one close waits for the outcome, so
                // the error, if any, comes back here.
                closing = if interrupted {
                    tracing::warn!("{who}: {name} again: forcing the close");
                    forced = true;
                    sender.clone().close_by(Some(Duration::ZERO))
                } else {
                    tracing::info!("{who}: {name}: finishing within {timeout:?} (again to force)");
                    interrupted = true;
                    sender.clone().close_by(Some(timeout))
                };
            }
        }
    }
}

/// How a session ended ([`send_session`]).
#[derive(Debug)]
pub struct SessionEnd {
    /// The session's outcome; `None` if it was abandoned (a second signal, or the shutdown
    /// timeout after the first).
    pub result: Option<Result<SessionReport, Error>>,
    /// A signal came.
    pub interrupted: bool,
    /// The session was abandoned before it ended.
    pub forced: bool,
}

/// The items of a session's source, cut short by the first signal.
pub type Stoppable<S> = TakeUntil<S, oneshot::Receiver<()>>;

/// Sends `source` in `session` (SPEC §10) with `send` (`Session::send_json` or `send_raw`). The first signal stops taking items from the source:
/// the session sends what it took and waits for every acknowledgement, for up to `timeout`; a second
/// signal, or the timeout, abandons it (the session's `Stats::session_progress` then says what was
/// delivered, unacknowledged and never sent).
pub async fn send_session<S, F, Fut>(
    who: &str,
    session: Session,
    source: S,
    send: F,
    signals: &mut Signals,
    timeout: Duration,
) -> SessionEnd
where
    S: Stream,
    F: FnOnce(Session, Stoppable<S>) -> Fut,
    Fut: Future<Output = Result<SessionReport, Error>>,
{
    let (stop, stopped) = oneshot::channel::<()>();
    let mut stop = Some(stop);
    let mut sending = std::pin::pin!(send(session, source.take_until(stopped)));
    let mut give_up: Option<tokio::time::Instant> = None;
    let (mut interrupted, mut forced) = (false, false);
    let result = loop {
        let deadline = async {
            match give_up {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            result = &mut sending => break Some(result),
            name = signals.recv() => {
                if interrupted {
                    tracing::warn!("{who}: {name} again: abandoning the session");
                    forced = true;
                    break None;
                }
                interrupted = true;
                give_up = Some(tokio::time::Instant::now() + timeout);
                if let Some(stop) = stop.take() {
                    let _ = stop.send(());
                }
                tracing::info!(
                    "{who}: {name}: no more frames taken from the source; sending those taken and \
                     waiting for their acknowledgement, for up to {timeout:?} (send it again to \
                     force)"
                );
            }
            () = deadline => {
                tracing::warn!("{who}: --shutdown-timeout ran out: abandoning the session");
                forced = true;
                break None;
            }
        }
    };
    SessionEnd {
        result,
        interrupted,
        forced,
    }
}
