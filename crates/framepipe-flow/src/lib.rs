//! Flow accounting for framepipe: byte-budgeted bounded queues and per-stage memory gauges.
//!
//! Every stage of a framepipe pipeline is joined to the next by a [`queue`] bounded in **bytes** as
//! well as items (a one-item queue of 1 GiB frames is not bounded), and reports what it holds through a
//! [`StageGauge`]. When a downstream stage is slow its queue fills, the upstream `send` waits, and
//! memory stays flat; the gauges show where the bytes are and how long producers waited.
//!
//! The kernel's socket queues are stages too: [`SocketSet`] sums the connections that are a
//! [`SocketProbe`] (TCP and Unix domain sockets; [`probe`] reads them) and reports the figures as
//! unavailable while a connection over another transport is open. A [`Monitor`] puts every stage, the
//! sockets and the process's RSS into one [`FlowSnapshot`], and its [`Sampler`] records the peaks.
//! [`Shared`] lets a connection own its socket as `AsyncRead + AsyncWrite` while the set probes it,
//! and [`PeerAddr`] names the other end whatever the transport. [`socket`] holds the options both
//! ends apply. A [`MemoryPool`] caps the bytes buffered across many connections.
//!
//! ```
//! use framepipe_flow::{queue, StageGauge};
//!
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let limits = queue::QueueLimits::default().max_bytes(1000);
//! let (tx, mut rx) = queue::channel(limits, StageGauge::new("encoded"));
//! tx.send(vec![0u8; 600], 600).await.unwrap();
//! assert_eq!(tx.gauge().snapshot().bytes, 600);
//! assert_eq!(rx.recv().await.unwrap().len(), 600);
//! assert_eq!(rx.gauge().snapshot().bytes, 0);
//! # });
//! ```
#![warn(
    missing_docs,
    missing_debug_implementations,
    rust_2018_idioms,
    unreachable_pub
)]

mod gauge;
pub mod metrics;
mod peer;
pub mod pool;
pub mod probe;
pub mod queue;
mod sampler;
mod shared;
mod snapshot;
pub mod socket;
mod socket_probe;
mod sockets;
#[cfg(feature = "tls")]
pub mod tls;

pub use gauge::{StageGauge, StageSnapshot};
pub use peer::PeerAddr;
pub use pool::{MemoryPool, PoolSnapshot, Reservation};
pub use sampler::{Sampler, DEFAULT_SAMPLE_INTERVAL};
pub use shared::Shared;
pub use snapshot::{FlowSnapshot, Monitor};
pub use socket_probe::SocketProbe;
pub use sockets::{SocketQueues, SocketSet, Unprobed};
