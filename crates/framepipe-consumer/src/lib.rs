//! The framepipe consumer: accepts TCP connections, frames and decodes what arrives, and hands it to
//! a handler through byte-budgeted queues, optionally slowed down on purpose to show backpressure.
//!
//! ```text
//!  producer ──► socket receive queue ──► reader ──► queue (byte budget) ──► decode ──► handler
//!                  ▲ window closes           │ not read      │ full                (SlowDown)
//!                  └─────────────────────────┘ ◄─────────────┘
//! ```
//!
//! - [`Consumer::builder`] / [`Builder`]: every setting with its default (SPEC.md §7.1).
//! - [`Consumer::serve`]: a handler closure per frame, connections concurrently, order kept within a
//!   connection. [`Consumer::accept`]: a connection as a [`futures::Stream`] of frames instead.
//! - Modes: [`Raw`] (`Bytes`), [`Validate`] (checked JSON, as `Bytes`) or [`Json<T>`] (parsed).
//! - [`SlowDown`]: fixed delay, frames/s or bytes/s, jitter, stalls.
//! - [`Stats`]: live counters, stage gauges, socket queues and RSS; [`Report`] at the end.
//!
//! Bad input never takes down more than its connection: a frame-local error drops one frame, a fatal
//! one closes the connection after telling the producer why (SPEC.md §6.3); other connections go on.
#![warn(
    missing_docs,
    missing_debug_implementations,
    rust_2018_idioms,
    unreachable_pub
)]

mod builder;
mod connection;
mod error;
mod mode;
mod read_buffer;
mod reader;
mod server;
mod slow;
mod stats;

pub use builder::{
    Builder, DEFAULT_DRAIN_TIMEOUT, DEFAULT_FRAME_TIMEOUT, DEFAULT_IDLE_TIMEOUT,
    DEFAULT_MAX_OPEN_CONNECTIONS, DEFAULT_MEMORY_LIMIT, DEFAULT_READ_CHUNK,
    DEFAULT_SAMPLE_INTERVAL,
};
pub use connection::{Connection, Delivery};
pub use error::Error;
pub use mode::{Json, Mode, Raw, Validate};
pub use server::Consumer;
pub use slow::SlowDown;
pub use stats::{ConnectionReport, Report, Snapshot, Stats};
