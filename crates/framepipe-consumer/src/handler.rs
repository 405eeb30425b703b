//! What the application does with each frame, and what its errors do (SPEC §7.7).

use std::future::Future;

use crate::{ConnectionInfo, ConnectionReport, Delivery};

/// A handler's error: anything that is an error will do.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What a consumer does with each frame, with hooks for a connection's start and end.
///
/// Any closure `Fn(Delivery<T>) -> impl Future` is a handler; its future may return `()` (it cannot
/// fail) or `Result<(), E>` for any error `E`. Implement the trait on a type of your own to use the
/// hooks. Frames of one connection are handled one at a time, in order; connections are handled
/// concurrently, so `handle` may run for several connections at once.
///
/// ```
/// use framepipe_consumer::{BoxError, ConnectionInfo, ConnectionReport, Delivery, Handler};
///
/// struct Ingest;
///
/// impl Handler<Vec<u32>> for Ingest {
///     async fn handle(&self, d: Delivery<Vec<u32>>) -> Result<(), BoxError> {
///         if d.item.is_empty() {
///             return Err(format!("frame {} of connection {} is empty", d.frame, d.connection().id).into());
///         }
///         Ok(())
///     }
///
///     fn on_open(&self, conn: &ConnectionInfo) {
///         println!("connection {} from {}", conn.id, conn.peer);
///     }
///
///     fn on_close(&self, conn: &ConnectionInfo, report: &ConnectionReport) {
///         println!("connection {} handled {} frames", conn.id, report.frames);
///     }
/// }
/// ```
pub trait Handler<T>: Send + Sync + 'static {
    /// Handles one frame. An error is handled by the consumer's [`OnHandlerError`] policy.
    fn handle(&self, delivery: Delivery<T>) -> impl Future<Output = Result<(), BoxError>> + Send;

    /// Called when a connection is accepted, before its first frame.
    fn on_open(&self, _connection: &ConnectionInfo) {}

    /// Called when a connection has ended, with its report.
    fn on_close(&self, _connection: &ConnectionInfo, _report: &ConnectionReport) {}
}

/// What a handler closure's future may return: `()` or `Result<(), E>`.
pub trait HandlerResult {
    /// As a result.
    fn into_result(self) -> Result<(), BoxError>;
}

impl HandlerResult for () {
    fn into_result(self) -> Result<(), BoxError> {
        Ok(())
    }
}

impl<E: Into<BoxError>> HandlerResult for Result<(), E> {
    fn into_result(self) -> Result<(), BoxError> {
        self.map_err(Into::into)
    }
}

impl<T, F, Fut> Handler<T> for F
where
    T: Send + 'static,
    F: Fn(Delivery<T>) -> Fut + Send + Sync + 'static,
    Fut: Future + Send,
    Fut::Output: HandlerResult,
{
    fn handle(&self, delivery: Delivery<T>) -> impl Future<Output = Result<(), BoxError>> + Send {
        let fut = self(delivery);
        async move { fut.await.into_result() }
    }
}

/// What a handler's error does (SPEC §7.7).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum OnHandlerError {
    /// The connection is closed: the producer is sent a `handler_failed` notice naming the frame,
    /// and frames after it are not handled (they are counted as `unhandled`). The producer fails with
    /// `Rejected`, knowing exactly which frames were handled. The default: nothing is lost silently.
    #[default]
    Close,
    /// The error is logged and counted, and the connection goes on with the next frame. The frame
    /// is lost as far as the producer knows.
    Continue,
}
