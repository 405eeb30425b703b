//! The producer side of the `producer` and `demo` examples: feeding a source through a `Sender`,
//! and closing on signals (the first: finish within a deadline; the second: at once).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use framepipe::producer::{Error, Report, Sender, Session, SessionReport};
use futures::future::BoxFuture;
use futures::{FutureExt, Stream, StreamExt};
use serde::Serialize;

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

/// Sends every item of `source` through `sender`, until the source or the connection ends, at
/// most one per tick of `pace` if given. Room is reserved before the source is polled, so a full
/// queue stops the source (SPEC §6.7); the time spent waiting for room is added to `waited_ms`.
///
/// The pacing wait comes before the reservation, so no permit is held across it: a permit held
/// while the connection ends makes `Permit::send` deadlock (see the note in `service_export.rs`).
pub async fn feed<T: Serialize>(
    sender: &Sender<T>,
    source: impl Stream<Item = T>,
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
        if permit.send(item).is_err() {
            return;
        }
    }
}

/// Closes the connection behind `sender` and waits for its outcome: without a deadline unless
/// `interrupted`, within `timeout` once a signal has come, and at once on the next signal
/// (`close_within(0)`: what is not written by then is never sent, and the connection is reset).
pub async fn close<T: 'static>(
    who: &str,
    sender: &Sender<T>,
    signals: &mut Signals,
    mut interrupted: bool,
    timeout: Duration,
) -> Closed {
    let mut closing: BoxFuture<'static, Result<Report, Error>> = if interrupted {
        sender.clone().close_within(timeout).boxed()
    } else {
        sender.clone().close().boxed()
    };
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
                    sender.clone().close_within(Duration::ZERO).boxed()
                } else {
                    tracing::info!("{who}: {name}: finishing within {timeout:?} (again to force)");
                    interrupted = true;
                    sender.clone().close_within(timeout).boxed()
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

/// Sends `source` in `session` (SPEC §10). The first signal stops taking items from the source:
/// the session sends what it took and waits for every acknowledgement, for up to `timeout`; a second
/// signal, or the timeout, abandons it (the session's `Stats::session_progress` then says what was
/// delivered, unacknowledged and never sent).
pub async fn send_session<T: Serialize>(
    who: &str,
    session: Session,
    source: impl Stream<Item = T>,
    signals: &mut Signals,
    timeout: Duration,
) -> SessionEnd {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let mut stop = Some(stop);
    let mut sending = std::pin::pin!(session.send_json(source.take_until(stopped)));
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
