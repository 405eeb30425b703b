//! framepipe: stream bulk length-prefixed JSON payloads between services over plain TCP.
//!
//! This crate gathers the workspace's crates under one name and hosts the examples, integration tests
//! and benchmarks:
//!
//! - [`codec`]: the wire format (SPEC.md §1–§4) as `tokio_util` codecs, raw and typed.
//! - [`flow`]: byte-budgeted bounded queues and per-stage memory gauges (SPEC.md §5).
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
pub use framepipe_flow as flow;

pub mod reference;

/// The code blocks of `README.md`, compiled and run as doctests so the README cannot rot.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
