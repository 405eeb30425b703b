//! Serving connections with a handler, and shutting down without losing a frame (SPEC §7.7, §8.5).

use std::collections::HashMap;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::shutdown::{forced, Phase};
use crate::slow::Pacer;
use crate::stats::{ConnectionReport, Report, ShutdownReport, Stats};
use crate::{
    BoxError, Connection, Consumer, Delivery, Handler, HandlerResult, Listener, Mode,
    OnHandlerError,
};

impl<L: Listener> Consumer<L> {
    /// Serves connections until [`Builder::max_connections`](crate::Builder::max_connections) have
    /// been accepted and have ended, or until shut down through a [`Shutdown`](crate::Shutdown)
    /// handle: each connection's frames are decoded by `mode` and passed, in order, to `handler`,
    /// slowed down as configured. Connections are served concurrently, each in its own task.
    ///
    /// `handler` is an async closure; its future returns `()` or a `Result` (see [`Handler`]; use
    /// [`serve_with`](Self::serve_with) for a type implementing it, with per-connection hooks).
    /// Errors are logged with `tracing` (with the producer's address and the connection's id) and
    /// counted; a fatal one ends only its connection. A handler's error is handled by the
    /// [`OnHandlerError`] policy.
    pub async fn serve<M, F, Fut>(self, mode: M, handler: F) -> Report
    where
        M: Mode,
        F: Fn(Delivery<M::Item>) -> Fut + Send + Sync + 'static,
        Fut: Future + Send,
        Fut::Output: HandlerResult,
    {
        self.serve_with_until(mode, handler, std::future::pending())
            .await
    }

    /// Like [`Consumer::serve`], and shuts down gracefully when `signal` completes: see
    /// [`serve_with_until`](Self::serve_with_until).
    pub async fn serve_until<M, F, Fut, S>(self, mode: M, handler: F, signal: S) -> Report
    where
        M: Mode,
        F: Fn(Delivery<M::Item>) -> Fut + Send + Sync + 'static,
        Fut: Future + Send,
        Fut::Output: HandlerResult,
        S: Future<Output = ()>,
    {
        self.serve_with_until(mode, handler, signal).await
    }

    /// Like [`Consumer::serve`], with any [`Handler`] (a type of your own, with hooks).
    pub async fn serve_with<M, H>(self, mode: M, handler: H) -> Report
    where
        M: Mode,
        H: Handler<M::Item>,
    {
        self.serve_with_until(mode, handler, std::future::pending())
            .await
    }

    /// Like [`Consumer::serve_with`], and also shuts down gracefully when `signal` completes
    /// (SPEC §8.5): no more connections are accepted; each connection completes the frame in
    /// progress, reads nothing after it, hands every frame it has read to the handler, sends its
    /// producer a `shutting_down` notice naming the first frame not read, and closes. Nothing read
    /// from a transport is dropped. The report comes back when every connection has closed, or when
    /// the shutdown is forced: by a second signal through the [`Shutdown`](crate::Shutdown) handle,
    /// or once `shutdown_timeout` (default 30 s) has passed.
    pub async fn serve_with_until<M, H, S>(mut self, mode: M, handler: H, signal: S) -> Report
    where
        M: Mode,
        H: Handler<M::Item>,
        S: Future<Output = ()>,
    {
        let mode = Arc::new(mode);
        let handler = Arc::new(handler);
        let mut phase = self.subscribe();
        let mut signal = std::pin::pin!(signal);
        let mut signalled = false;
        let mut tasks = JoinSet::new();
        let mut serving = HashMap::new();
        let mut reports = Vec::new();
        let mut accepted = 0u64;
        let mut listening = true;
        // Tokio's clock, so that `shutdown_timeout` follows a paused clock in tests (SPEC §8.1.2).
        let mut shutdown_began: Option<tokio::time::Instant> = None;
        loop {
            let now_phase = *phase.borrow_and_update();
            if now_phase != Phase::Running && shutdown_began.is_none() {
                shutdown_began = Some(tokio::time::Instant::now());
                // Open now: a connection that saw the shutdown first may have closed already.
                tracing::info!(
                    open = self.stats.open_connections(),
                    "shutting down: no new connections; finishing the frames already read"
                );
            }
            let accepting = listening
                && now_phase == Phase::Running
                && self.config.max_connections.is_none_or(|n| accepted < n);
            if !accepting && tasks.is_empty() {
                break;
            }
            let force_at = shutdown_began
                .filter(|_| now_phase == Phase::Draining)
                .map(|t| t + self.config.shutdown_timeout);
            tokio::select! {
                conn = self.accept_shared(mode.clone()), if accepting => match conn {
                    Ok(Some(conn)) => {
                        accepted += 1;
                        let info = conn.info().clone();
                        tracing::info!(peer = %info.peer, connection = info.id, "connection accepted");
                        self.seeds = self.seeds.wrapping_add(0x9E37_79B9_7F4A_7C15);
                        let task = tasks.spawn(serve_connection(
                            conn,
                            handler.clone(),
                            self.config.slow,
                            self.config.on_handler_error,
                            self.stats.clone(),
                            self.seeds,
                            self.subscribe(),
                        ));
                        serving.insert(task.id(), info);
                    }
                    Ok(None) => listening = false,
                    Err(e) => {
                        // Out of file descriptors and the like: wait a little rather than spin.
                        tracing::warn!("accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
                Some(done) = tasks.join_next_with_id(), if !tasks.is_empty() => {
                    match done {
                        Ok((id, report)) => {
                            serving.remove(&id);
                            reports.push(report);
                        }
                        Err(e) => {
                            // A handler panicked: the connection's report says so.
                            if let Some(info) = serving.remove(&e.id()) {
                                let mut report = ConnectionReport::new(&info);
                                report.error = Some(format!("the handler panicked: {e}"));
                                tracing::error!(peer = %info.peer, connection = info.id, "the handler panicked: {e}");
                                reports.push(report);
                            }
                        }
                    }
                }
                () = &mut signal, if !signalled => {
                    signalled = true;
                    self.shutdown.shutdown();
                }
                _ = phase.changed() => {}
                () = sleep_until(force_at), if force_at.is_some() => {
                    tracing::warn!(open = tasks.len(), "shutdown_timeout passed: forcing the shutdown");
                    self.shutdown.force();
                }
            }
        }
        let shutdown = shutdown_began.map(|began| ShutdownReport {
            forced: self.shutdown.is_forced(),
            secs: began.elapsed().as_secs_f64(),
        });
        Report {
            snapshot: self.stats.snapshot(),
            connections: reports,
            shutdown,
        }
    }
}

async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Hands one connection's frames to the handler, in order, at the configured pace, and reports.
async fn serve_connection<M, H>(
    mut conn: Connection<M>,
    handler: Arc<H>,
    slow: crate::SlowDown,
    policy: OnHandlerError,
    stats: Stats,
    seed: u64,
    mut phase: watch::Receiver<Phase>,
) -> ConnectionReport
where
    M: Mode,
    H: Handler<M::Item>,
{
    let info = conn.info().clone();
    // In the connection's task: a hook that panics ends this connection, not the consumer.
    handler.on_open(&info);
    let mut report = ConnectionReport::new(&info);
    let mut pacer = Pacer::new(slow, seed);
    loop {
        let next = tokio::select! {
            biased;
            () = forced(&mut phase) => {
                report.forced = true;
                let (frame, offset) = conn.next_frame();
                conn.reject_forced(frame, offset);
                break;
            }
            next = conn.next() => next,
        };
        let Some(next) = next else { break };
        let delivery = match next {
            Ok(delivery) => delivery,
            Err(e) => {
                report.note_error(&e);
                continue;
            }
        };
        let (frame, offset, len) = (delivery.frame, delivery.offset, delivery.wire_bytes);
        // The frame counts against the memory limit until the handler returns, at least.
        let _held = delivery.held.clone();
        let handled = tokio::select! {
            biased;
            () = forced(&mut phase) => {
                report.unhandled += 1;
                report.forced = true;
                conn.reject_forced(frame, offset);
                break;
            }
            handled = AssertUnwindSafe(async {
                stats.add_slowed(pacer.before(len).await);
                handler.handle(delivery).await
            }).catch_unwind() => handled,
        };
        // SPEC §7.7.3: a panic ends the connection whatever the policy, like a failure under
        // `Close`: the producer is told which frame, and the report keeps its counts.
        let panicked = handled.is_err();
        match handled.unwrap_or_else(|panic| Err(panic_error(&*panic))) {
            Ok(()) => {
                report.frames += 1;
                report.bytes += len as u64;
                stats.add_handled(len);
            }
            Err(e) => {
                stats.add_handler_error();
                report.handler_errors += 1;
                report.errors += 1;
                let closing = panicked || policy == OnHandlerError::Close;
                if closing || report.handler_errors == 1 {
                    tracing::warn!(peer = %info.peer, connection = info.id, frame,
                        "handler failed{}: {e}", if closing { "; closing the connection" } else { "; going on" });
                } else {
                    tracing::debug!(peer = %info.peer, connection = info.id, frame, "handler failed: {e}");
                }
                if closing {
                    report.error = Some(format!("the handler failed on frame {frame}: {e}"));
                    conn.reject(frame, offset, &e.to_string());
                    break;
                }
            }
        }
    }
    let (unhandled, frames_read) = conn.finish().await;
    report.unhandled += unhandled;
    report.frames_read = frames_read;
    report.secs = info.accepted_at.elapsed().as_secs_f64();
    stats.add_unhandled(report.unhandled);
    tracing::info!(
        peer = %info.peer,
        connection = info.id,
        frames = report.frames,
        bytes = report.bytes,
        errors = report.errors,
        unhandled = report.unhandled,
        "connection ended"
    );
    handler.on_close(&info, &report);
    report
}

/// A handler's panic as an error, with its message when it has one.
fn panic_error(panic: &(dyn std::any::Any + Send)) -> BoxError {
    let message = panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("a panic without a message");
    format!("the handler panicked: {message}").into()
}
