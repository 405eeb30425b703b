//! framepipe's connection cores without I/O: each side's per-connection protocol as a plain state
//! machine, in the style of quinn-proto (SPEC.md §8).
//!
//! A core owns no socket, spawns no task and reads no clock. Bytes and time go in
//! (`handle_read(now, n)`, `handle_reply(now, n)`, `handle_timeout(now)`); out come bytes to write
//! (`poll_transmit`), the next deadline (`poll_timeout`) and events (`poll_event`). Every deadline a
//! connection has lives in its core's one [`TimerTable`] (a session's `reconnect_timeout` too, while
//! a connection waits for its welcome). Two waits are not a connection's and live in the session
//! producer's driver: the backoff between a lost connection and the next attempt (when there is no
//! connection, so no core), and the application's close deadline (`Sender::close_within`), which
//! spans connections. A small async driver per side (in the `framepipe-consumer` and
//! `framepipe-producer` crates) is the only code that touches a transport, and any
//! `AsyncRead + AsyncWrite` will do; tests drive the cores directly with made-up instants.
//!
//! - [`consumer::ConsumerConn`]: framing, the memory limit, the idle and frame deadlines, notices,
//!   graceful shutdown and the close sequence of one accepted connection (SPEC §8.3).
//! - [`producer::ProducerConn`]: the write batch, stalls, the consumer's reply, FIN and the wait for
//!   the consumer's close of one producer connection (SPEC §8.4).
//! - [`backoff::Backoff`]: the delays between a session's reconnect attempts (SPEC §10.1).
//! - [`retention::Retention`]: a session producer's unacknowledged frames, which are its byte budget
//!   (SPEC §10.2).
//!
//! ```
//! use std::time::{Duration, Instant};
//! use framepipe_flow::MemoryPool;
//! use framepipe_proto::consumer::{ConsumerConfig, ConsumerConn, Event, ReadOp};
//! use bytes::BufMut;
//!
//! let t0 = Instant::now();
//! let pool = MemoryPool::new(1 << 20, 64 * 1024);
//! let mut conn = ConsumerConn::new(ConsumerConfig::default(), &pool, t0);
//! let wire = b"\x00\x00\x00\x02[]";
//! let mut sent = 0;
//! while sent < wire.len() {
//!     match conn.poll_read(t0) {
//!         ReadOp::Read { limit } => {
//!             let n = limit.min(wire.len() - sent);
//!             conn.read_buf().put_slice(&wire[sent..sent + n]);
//!             conn.handle_read(t0, n);
//!             sent += n;
//!         }
//!         ReadOp::Reserve { bytes } => {
//!             let r = pool.try_acquire(bytes).expect("the pool has room");
//!             conn.grant_memory(t0, r);
//!         }
//!         other => unreachable!("{other:?}"),
//!     }
//! }
//! let Some(Event::Frame(frame)) = conn.poll_event() else { panic!() };
//! assert_eq!(&frame.frame.body[..], b"[]");
//! // Nothing more arrives: the idle deadline (120 s by default) is the next thing to happen.
//! assert!(matches!(conn.poll_read(t0), ReadOp::Read { .. }));
//! assert_eq!(conn.poll_timeout(), Some(t0 + Duration::from_secs(120)));
//! ```
#![warn(
    missing_docs,
    missing_debug_implementations,
    rust_2018_idioms,
    unreachable_pub
)]

pub mod backoff;
pub mod codes;
pub mod consumer;
mod error;
pub mod producer;
mod read_buffer;
pub mod retention;
pub mod session;
mod timer;

pub use error::Error;
pub use timer::{Timer, TimerTable};
