//! framepipe: stream bulk length-prefixed JSON payloads between services over plain TCP.
//!
//! This crate gathers the workspace's crates under one name and hosts the examples, integration tests
//! and benchmarks:
//!
//! - [`codec`]: the wire format (SPEC.md §1–§4) as `tokio_util` codecs, raw and typed.
//! - [`flow`]: byte-budgeted bounded queues, per-stage memory gauges, socket queue and RSS probes,
//!   socket options (SPEC.md §5).
//! - [`proto`]: each side's per-connection protocol as a state machine without I/O (SPEC.md §8).
//! - [`producer`]: any `Stream` of payloads, or items sent through a `Sender`, to frames on a
//!   connection over any transport (SPEC.md §6).
//! - [`consumer`]: accepts connections on any transport and feeds frames to a handler that may
//!   fail, with graceful shutdown (SPEC.md §7).
//! - [`reference`](mod@reference): the reference record and batch used by demos, tests and benchmarks.
//!
//! See `README.md` to run the tests, and `SPEC.md` for the normative wire format.
#![warn(
    missing_docs,
    missing_debug_implementations,
    rust_2018_idioms,
    unreachable_pub
)]

pub use framepipe_codec as codec;
pub use framepipe_consumer as consumer;
pub use framepipe_flow as flow;
pub use framepipe_producer as producer;
pub use framepipe_producer::reference;
pub use framepipe_proto as proto;

/// The code blocks of `README.md`, compiled and run as doctests so the README cannot rot.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
