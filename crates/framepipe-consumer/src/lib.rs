//! The framepipe consumer: accepts connections on any transport, frames and decodes what arrives,
//! and hands it to a handler through byte-budgeted queues, optionally slowed down on purpose to
//! show backpressure.
//!
//! ```text
//!  producer ──► transport ──► driver (ConsumerConn) ──► queue (byte budget) ──► decode ──► handler
//!                  ▲ window closes      │ not read            │ full                 (SlowDown)
//!                  └────────────────────┘ ◄───────────────────┘
//! ```
//!
//! - [`Consumer::builder`] / [`Builder`]: every setting with its default (SPEC.md §7.1); `bind`
//!   (TCP), `bind_unix`, or `listener` for any [`Listener`] ([`Incoming`] for in-memory pipes).
//! - [`Consumer::serve`]: a [`Handler`] per frame (any async closure, or a type with per-connection
//!   hooks), connections concurrently, order kept within a connection; a handler may fail, and
//!   [`OnHandlerError`] says what that does. [`Consumer::accept`]: a connection as a
//!   [`futures::Stream`] of frames instead.
//! - Graceful shutdown: [`Consumer::serve_until`] or a [`Shutdown`] handle stop accepting, hand
//!   every frame already read to the handler, tell each producer, and return the report; a second
//!   signal or `shutdown_timeout` forces it (SPEC.md §8.5).
//! - Modes: [`Raw`] (`Bytes`, with [`Delivery::json`] for borrowed typed decoding), [`Validate`]
//!   (checked JSON, as `Bytes`) or [`Json<T>`] (parsed).
//! - [`SlowDown`]: fixed delay, frames/s or bytes/s, jitter, stalls.
//! - [`Stats`]: live counters, stage gauges, socket queues and RSS; [`Report`] at the end.
//! - Sessions (SPEC §10), served by default: acks, resume across connections, heartbeats, a
//!   table of sessions that only their owner (the producer holding the session's resume secret)
//!   can resume; [`SessionStore`] and [`FileStore`] keep a session's position across restarts.
//!
//! Bad input never takes down more than its connection: a frame-local error drops one frame, a fatal
//! one closes the connection after telling the producer why (SPEC.md §6.3); other connections go on.
//! The per-connection protocol lives in [`framepipe_proto::consumer::ConsumerConn`], a state
//! machine without I/O; this crate drives it.
#![warn(
    missing_docs,
    missing_debug_implementations,
    rust_2018_idioms,
    unreachable_pub
)]

mod builder;
mod connection;
mod consumer;
mod decode;
mod delivery;
mod driver;
mod driver_session;
mod error;
mod handler;
mod health;
mod listener;
pub mod metrics;
mod mode;
mod serve;
mod session_store;
mod sessions;
mod shutdown;
mod slow;
mod stats;
#[cfg(feature = "tls")]
pub mod tls;

pub use builder::{
    Builder, DEFAULT_DRAIN_TIMEOUT, DEFAULT_FRAME_TIMEOUT, DEFAULT_IDLE_TIMEOUT,
    DEFAULT_MAX_OPEN_CONNECTIONS, DEFAULT_MEMORY_LIMIT, DEFAULT_READ_CHUNK,
    DEFAULT_SHUTDOWN_TIMEOUT,
};
pub use bytes::Bytes;
pub use connection::Connection;
pub use consumer::Consumer;
pub use decode::MAX_DECODE_WORKERS;
pub use delivery::{ConnectionInfo, Delivery};
pub use error::Error;
pub use framepipe_flow::{PeerAddr, DEFAULT_SAMPLE_INTERVAL};
pub use handler::{BoxError, Handler, HandlerResult, OnHandlerError};
pub use health::{Health, Readiness};
pub use listener::{Accepted, Incoming, Listener};
pub use mode::{Json, Mode, Raw, Validate};
pub use session_store::{FileStore, SessionStore, StoredSession};
pub use sessions::{DEFAULT_MAX_SESSIONS, DEFAULT_SESSION_EXPIRY};
pub use shutdown::Shutdown;
pub use slow::SlowDown;
pub use stats::{ConnectionReport, Report, ShutdownReport, Snapshot, Stats};
