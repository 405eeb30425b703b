//! The framepipe producer: any async [`Stream`](futures::Stream) of payloads, or items sent as they
//! come through a [`Sender`], as length-prefixed frames on any transport, with memory bounded in
//! bytes at every stage.
//!
//! ```text
//!  source / Sender ──► encode ──► queue (byte budget) ──► driver (ProducerConn) ──► transport ──► consumer
//!        ▲                           │ full                      │ not writable
//!        └──── not polled / reserve waits ◄──────────────────────┘
//! ```
//!
//! - [`Producer::builder`] / [`Builder`]: every setting with its default (SPEC.md §6.1); `connect`
//!   (TCP), `connect_unix`, or `on` for any transport.
//! - [`Connection::send_json`]: items of any `T: Serialize`, one compact JSON frame each.
//! - [`Connection::send_raw`]: [`bytes::Bytes`] bodies, written with their header without copying.
//! - [`Connection::sender`]: a cloneable [`Sender`] that reserves room before taking an item
//!   (`reserve`, `try_reserve`), implements `futures::Sink`, batches with a `linger` if asked
//!   ([`Batching`]), and closes gracefully with a report ([`Sender::close`], `close_within`).
//! - [`Stats`]: live counters, stage gauges, socket queues and RSS; [`Report`] at the end.
//! - [`reference`](mod@reference) and [`generator`]: the reference record and a stream of reference
//!   frames, as used by the demo and the benchmarks.
//!
//! The per-connection protocol lives in [`framepipe_proto::producer::ProducerConn`], a state
//! machine without I/O; this crate drives it.
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
mod connector;
mod driver;
mod encoder;
mod error;
pub mod generator;
pub mod metrics;
mod queue;
pub mod reference;
mod sender;
mod session;
mod session_driver;
mod stats;
#[cfg(feature = "tls")]
pub mod tls;

pub use builder::{
    Builder, Producer, DEFAULT_CLOSE_TIMEOUT, DEFAULT_STALL_TIMEOUT, DEFAULT_WRITE_BATCH_BYTES,
};
pub use bytes::Bytes;
pub use connection::Connection;
pub use connector::{connect_fn, Connect, Connecting, Link, TcpConnect, Transport, UnixConnect};
pub use encoder::{Batching, DEFAULT_BATCH_BYTES, DEFAULT_LINGER, ENCODE_CHUNK};
pub use error::Error;
pub use framepipe_flow::{PeerAddr, Shared, DEFAULT_SAMPLE_INTERVAL};
pub use sender::{Permit, RawPermit, RawSender, Sender};
pub use session::{ResumeTimes, Session, SessionReport};
pub use stats::{Report, SessionProgress, Snapshot, Stats};
