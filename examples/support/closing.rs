//! The producer side of the `producer` and `demo` examples: feeding a source through a `Sender`,
//! and closing on signals (the first: finish within a deadline; the second: at once).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use framepipe::producer::{Error, Report, Sender};
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
