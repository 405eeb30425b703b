//! The consumer's connection core (SPEC §8.3).
//!
//! [`ConsumerConn`] is one accepted connection without its transport. A driver runs it like this:
//!
//! ```text
//!  loop:
//!    while let Some(event) = conn.poll_event()  → hand frames to the application (may wait: backpressure)
//!    match conn.poll_read(now):
//!      Read { limit }     → read ≤ limit bytes into conn.read_buf(), or sleep until conn.poll_timeout()
//!                           → conn.handle_read(now, n) / conn.handle_timeout(now)
//!      Reserve { bytes }  → pool.acquire(bytes).await → conn.grant_memory(now, reservation)
//!      AwaitApp           → close the application's queue; when it has finished → conn.handle_app_done(now)
//!      Transmit           → write conn.poll_transmit() → conn.handle_written / handle_fin_sent
//!      Discard            → read and drop → conn.handle_discarded(now, n)
//!      Close              → drop the transport
//! ```
//!
//! The application may at any time ask it to [`shutdown`](ConsumerConn::shutdown) (stop at the next
//! frame boundary), [`reject`](ConsumerConn::reject) (its handler failed: send a notice and close) or
//! [`abandon`](ConsumerConn::abandon) it.

mod close;
mod config;
mod conn;
mod event;
mod reader;
mod session;
#[cfg(test)]
mod session_tests;
#[cfg(test)]
mod tests;

pub use config::{
    ConsumerConfig, DEFAULT_DRAIN_TIMEOUT, DEFAULT_FRAME_TIMEOUT, DEFAULT_IDLE_TIMEOUT,
    DEFAULT_READ_CHUNK, NOTICE_TIMEOUT,
};
pub use conn::{ConsumerConn, State};
pub use event::{Event, InFrame, ReadBuf, ReadOp, Transmit};
pub use session::SessionStart;
