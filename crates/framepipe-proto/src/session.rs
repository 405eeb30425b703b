//! What both sides of a session agree on (SPEC §10.4–§10.6): the pacing of acks and heartbeats,
//! its defaults, and how a proposal is settled.

use std::time::Duration;

use framepipe_codec::session::Pacing;

/// Default most frames handled between two acks: 32 (SPEC §10.5).
pub const DEFAULT_ACK_EVERY: u32 = 32;
/// Default longest time a handled frame waits for its ack: 20 ms (SPEC §10.5).
pub const DEFAULT_ACK_INTERVAL: Duration = Duration::from_millis(20);
/// Default time a side may send nothing before it sends a heartbeat: 5 s (SPEC §10.6).
pub const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(5);
/// A connection on which nothing arrives for this many heartbeat intervals is declared dead
/// (`Unresponsive`, SPEC §10.6): 3.
pub const LIVENESS_HEARTBEATS: u32 = 3;

/// The largest sequence number a hello may resume from: 2^63 − 1 (SPEC §10.4). Past it a session
/// could run out of numbers; a hello beyond it is `SessionMismatch`.
pub const MAX_SEQUENCE: u64 = (1 << 63) - 1;

/// Bounds a settled pacing is held to: `ack_every` in 1..=65,536 frames, `ack_interval_ms` in
/// 1..=60,000, `heartbeat_ms` in 100..=600,000 (SPEC §10.4).
pub const ACK_EVERY_RANGE: (u32, u32) = (1, 65_536);
/// See [`ACK_EVERY_RANGE`].
pub const ACK_INTERVAL_MS_RANGE: (u32, u32) = (1, 60_000);
/// See [`ACK_EVERY_RANGE`].
pub const HEARTBEAT_MS_RANGE: (u32, u32) = (100, 600_000);

/// The default pacing: acks every [`DEFAULT_ACK_EVERY`] frames or [`DEFAULT_ACK_INTERVAL`],
/// heartbeats after [`DEFAULT_HEARTBEAT`] of silence.
pub fn default_pacing() -> Pacing {
    Pacing {
        ack_every: DEFAULT_ACK_EVERY,
        ack_interval_ms: DEFAULT_ACK_INTERVAL.as_millis() as u32,
        heartbeat_ms: DEFAULT_HEARTBEAT.as_millis() as u32,
    }
}

/// The pacing a consumer settles on from a hello's proposal (SPEC §10.4): each field as proposed,
/// or the consumer's own where the proposal is 0, held to the bounds of [`ACK_EVERY_RANGE`] and its
/// neighbours. The welcome carries the result, and both sides use it.
///
/// ```
/// use framepipe_codec::session::Pacing;
/// use framepipe_proto::session::{default_pacing, settle};
///
/// let proposed = Pacing { ack_every: 0, ack_interval_ms: 5, heartbeat_ms: 1 };
/// let settled = settle(proposed, default_pacing());
/// assert_eq!(settled, Pacing { ack_every: 32, ack_interval_ms: 5, heartbeat_ms: 100 });
/// ```
pub fn settle(proposed: Pacing, own: Pacing) -> Pacing {
    let pick = |p: u32, o: u32, (lo, hi): (u32, u32)| if p == 0 { o } else { p }.clamp(lo, hi);
    Pacing {
        ack_every: pick(proposed.ack_every, own.ack_every, ACK_EVERY_RANGE),
        ack_interval_ms: pick(
            proposed.ack_interval_ms,
            own.ack_interval_ms,
            ACK_INTERVAL_MS_RANGE,
        ),
        heartbeat_ms: pick(proposed.heartbeat_ms, own.heartbeat_ms, HEARTBEAT_MS_RANGE),
    }
}

/// The durations of a settled pacing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// Most frames handled between two acks.
    pub ack_every: u64,
    /// Longest time a handled frame waits for its ack.
    pub ack_interval: Duration,
    /// Silence after which a side sends a heartbeat.
    pub heartbeat: Duration,
    /// Silence from the peer after which the connection is dead: [`LIVENESS_HEARTBEATS`]
    /// heartbeat intervals.
    pub liveness: Duration,
}

impl From<Pacing> for Timing {
    fn from(p: Pacing) -> Self {
        let heartbeat = Duration::from_millis(u64::from(p.heartbeat_ms.max(1)));
        Timing {
            ack_every: u64::from(p.ack_every.max(1)),
            ack_interval: Duration::from_millis(u64::from(p.ack_interval_ms.max(1))),
            heartbeat,
            liveness: heartbeat * LIVENESS_HEARTBEATS,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_proposal_is_kept_within_bounds_and_zero_takes_the_consumers_own() {
        let own = default_pacing();
        let p = Pacing {
            ack_every: 1_000_000,
            ack_interval_ms: 0,
            heartbeat_ms: 700_000,
        };
        let s = settle(p, own);
        assert_eq!(s.ack_every, 65_536);
        assert_eq!(s.ack_interval_ms, 20);
        assert_eq!(s.heartbeat_ms, 600_000);
        let t = Timing::from(s);
        assert_eq!(t.liveness, Duration::from_secs(1_800));
    }
}
