//! The producer's connection core (SPEC §8.4).
//!
//! [`ProducerConn`] is one producer connection without its transport. A driver runs it like this,
//! doing whichever steps can make progress, and sleeping otherwise:
//!
//! ```text
//!  while conn.wants_frames()          → conn.push_frame(now, frame) from the application's queue
//!  (queue closed and empty)           → conn.finish(now)
//!  conn.poll_transmit(&mut iov):
//!    Write → write_vectored(iov)      → conn.handle_written(now, n) / handle_write_error(now, e)
//!    Fin   → shutdown(Write)          → conn.handle_fin_sent(now)
//!  conn.reply_buf()                   → read into it → conn.handle_reply(now, n) / handle_reply_error
//!  conn.take_probe_due()              → conn.handle_unsent(now, SIOCOUTQ)
//!  sleep until conn.poll_timeout()    → conn.handle_timeout(now)
//!  conn.poll_event():  Closed { confirmed } | Failed { error, reset } | FlushBatch
//! ```

mod config;
mod conn;
mod out_frame;
mod reply;
mod session;
mod session_conn;
#[cfg(test)]
mod session_hostile_tests;
#[cfg(test)]
mod session_tests;
#[cfg(test)]
mod tests;

pub use config::{
    ProducerConfig, DEFAULT_CLOSE_TIMEOUT, DEFAULT_STALL_TIMEOUT, DEFAULT_WRITE_BATCH_BYTES,
    MAX_BATCH_FRAMES, REPLY_GRACE,
};
pub use conn::{Event, ProducerConn, State, WriteOp};
pub use out_frame::{IoVecs, OutFrame, MAX_IOV};
pub use reply::{PREVIEW_BYTES, REPLY_BUFFER};
pub use session::{ProducerSession, SessionConfig, SessionCounts, DEFAULT_RECONNECT_TIMEOUT};
pub use session_conn::{
    SessionConn, SessionConnConfig, SessionEvent, SessionState, SESSION_READ_CHUNK,
};
