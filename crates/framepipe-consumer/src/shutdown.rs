//! Graceful shutdown as a signal, not an abort (SPEC §8.5).

use std::sync::Arc;

use tokio::sync::watch;

/// Where a consumer is in shutting down.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Phase {
    /// Accepting and reading.
    Running,
    /// Not accepting; each connection completes the frame in progress, hands every frame read to
    /// the handler, tells its producer (`shutting_down` notice) and closes.
    Draining,
    /// Stop now: handlers still running are dropped, frames not handled are counted as unhandled.
    Forced,
}

/// Starts a consumer's graceful shutdown from anywhere (a signal handler, another task). Cheap to
/// clone; get one with [`Consumer::shutdown_handle`](crate::Consumer::shutdown_handle).
///
/// The first [`shutdown`](Shutdown::shutdown) drains: no new connections are accepted, no new frame
/// is read, every frame already read is handed to the handler, and each producer is told with a
/// `shutting_down` notice naming the first frame not read. A second call, [`force`](Shutdown::force),
/// or the builder's `shutdown_timeout` (default 30 s) forces it: handlers still running are dropped,
/// the frames not handled are counted in the report as `unhandled`, and the connections are closed
/// at once (TCP ones reset, so no producer takes the close as confirmation).
#[derive(Debug, Clone)]
pub struct Shutdown {
    tx: Arc<watch::Sender<Phase>>,
}

impl Default for Shutdown {
    fn default() -> Self {
        Shutdown {
            tx: Arc::new(watch::Sender::new(Phase::Running)),
        }
    }
}

impl Shutdown {
    /// Starts draining; if draining already, forces. Returns `true` if this call forced it.
    pub fn shutdown(&self) -> bool {
        let mut forced = false;
        self.tx.send_modify(|p| {
            *p = match *p {
                Phase::Running => Phase::Draining,
                _ => {
                    forced = true;
                    Phase::Forced
                }
            }
        });
        forced
    }

    /// Forces the shutdown now.
    pub fn force(&self) {
        self.tx.send_replace(Phase::Forced);
    }

    /// `true` once [`shutdown`](Self::shutdown) or [`force`](Self::force) has been called.
    pub fn is_shutting_down(&self) -> bool {
        *self.tx.borrow() != Phase::Running
    }

    /// `true` once the shutdown has been forced.
    pub fn is_forced(&self) -> bool {
        *self.tx.borrow() == Phase::Forced
    }

    pub(crate) fn subscribe(&self) -> watch::Receiver<Phase> {
        self.tx.subscribe()
    }
}

/// Waits until the shutdown is forced (never, if the handle is gone).
pub(crate) async fn forced(phase: &mut watch::Receiver<Phase>) {
    if phase.wait_for(|p| *p == Phase::Forced).await.is_err() {
        std::future::pending::<()>().await;
    }
}
