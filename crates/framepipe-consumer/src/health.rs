//! Whether a consumer should be sent more work: liveness and readiness for load balancers and
//! orchestrators (SPEC §11.2).

use std::sync::Weak;

use framepipe_flow::MemoryPool;
use serde::Serialize;

use crate::{Shutdown, Stats};

/// Answers readiness questions about one consumer from anywhere (an HTTP handler, a health
/// check). Cheap to clone; get one with [`Consumer::health`](crate::Consumer::health). It does not
/// keep the consumer alive.
#[derive(Debug, Clone)]
pub struct Health {
    pub(crate) stats: Stats,
    pub(crate) shutdown: Shutdown,
    pub(crate) memory: MemoryPool,
    pub(crate) max_open_connections: usize,
    /// The most a new connection may need at once: one whole frame at the frame length limit.
    pub(crate) frame_bytes: usize,
    pub(crate) alive: Weak<()>,
}

/// One readiness reading ([`Health::readiness`]). Serializes to JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Readiness {
    /// Ready for another connection: accepting, under the connection limit and with room for a
    /// whole frame under the memory limit (SPEC §11.2).
    pub ready: bool,
    /// The consumer exists and is not shutting down.
    pub accepting: bool,
    /// Connections open now.
    pub open_connections: u64,
    /// The connection limit (`max_open_connections`).
    pub max_open_connections: usize,
    /// Bytes reserved from the memory limit now.
    pub memory_in_use: usize,
    /// The memory limit (`memory_limit`).
    pub memory_limit: usize,
}

impl Health {
    /// Reads readiness now (a few atomic loads; does not wait).
    ///
    /// Not ready when the consumer has been dropped or is shutting down, when
    /// `max_open_connections` are open (another would be refused), or when less than one whole
    /// frame at the frame length limit is free under `memory_limit` (another connection's reader
    /// would wait for room, and its producer would stall).
    pub fn readiness(&self) -> Readiness {
        let accepting = self.alive.strong_count() > 0 && !self.shutdown.is_shutting_down();
        let open_connections = self.stats.open_connections();
        let memory_in_use = self.memory.in_use();
        let memory_limit = self.memory.limit();
        let under_connections = open_connections < self.max_open_connections as u64;
        let room = memory_limit.saturating_sub(memory_in_use) >= self.frame_bytes;
        Readiness {
            ready: accepting && under_connections && room,
            accepting,
            open_connections,
            max_open_connections: self.max_open_connections,
            memory_in_use,
            memory_limit,
        }
    }
}
