//! The framepipe producer: any async [`Stream`](futures::Stream) of payloads, sent as length-prefixed
//! frames on a TCP connection, with memory bounded in bytes at every stage.
//!
//! ```text
//!  source stream ──► encode ──► queue (byte budget) ──► writer ──► socket send queue ──► consumer
//!        ▲                          │ full                  │ not writable
//!        └──── not polled ◄─────────┘ ◄─────────────────────┘
//! ```
//!
//! - [`Producer::builder`] / [`Builder`]: every setting with its default (SPEC.md §6.1).
//! - [`Connection::send_json`]: items of any `T: Serialize`, one compact JSON frame each.
//! - [`Connection::send_raw`]: [`bytes::Bytes`] bodies, written with their header without copying.
//! - [`Stats`]: live counters, stage gauges, socket queues and RSS; [`Report`] at the end.
//! - [`reference`](mod@reference) and [`generator`]: the reference record and a stream of reference
//!   frames, as used by the demo and the benchmarks.
//!
//! ```no_run
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), framepipe_producer::Error> {
//! use framepipe_producer::{generator, Producer};
//!
//! let conn = Producer::connect("127.0.0.1:7000").await?;
//! let report = conn.send_json(generator::reference_frames(1_000, 50)).await?;
//! eprintln!("{} frames, {} bytes", report.snapshot.frames_written, report.snapshot.bytes_written);
//! # Ok(()) }
//! ```
#![warn(
    missing_docs,
    missing_debug_implementations,
    rust_2018_idioms,
    unreachable_pub
)]

mod builder;
mod connection;
mod error;
mod frame;
pub mod generator;
pub mod reference;
mod reply;
mod stats;
mod writer;

pub use builder::{
    Builder, Producer, DEFAULT_CLOSE_TIMEOUT, DEFAULT_SAMPLE_INTERVAL, DEFAULT_STALL_TIMEOUT,
    DEFAULT_WRITE_BATCH_BYTES,
};
pub use connection::Connection;
pub use error::Error;
pub use frame::ENCODE_CHUNK;
pub use stats::{Report, Snapshot, Stats};
