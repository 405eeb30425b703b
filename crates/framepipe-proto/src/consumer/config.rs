//! What a consumer connection core needs to know, with the defaults of SPEC §7.1 and §7.6.

use std::time::Duration;

/// Default size of the blocks the transport is read into: 256 KiB (SPEC §7.1.5).
pub const DEFAULT_READ_CHUNK: usize = 256 * 1024;
/// Default time a connection closed with a notice keeps discarding input so the producer can read
/// the notice: 2 s (SPEC §6.3).
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(2);
/// Default time a connection may stay silent between frames before it is closed: 120 s (SPEC §7.6).
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(120);
/// Default time a frame may take to arrive once its first byte has: 30 s (SPEC §7.6).
pub const DEFAULT_FRAME_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest time spent writing a notice before giving up on it: 1 s (SPEC §6.3). A notice is under
/// 4 KiB and goes into an empty send buffer unless the producer stopped reading.
pub const NOTICE_TIMEOUT: Duration = Duration::from_secs(1);

/// Settings of one consumer connection core. `Default` gives SPEC §7.1's values.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ConsumerConfig {
    /// Frame limits and oversize policy (SPEC §2).
    pub codec: framepipe_codec::Builder,
    /// Size of the blocks the transport is read into (SPEC §7.1.5).
    pub read_chunk: usize,
    /// Most bytes of retired read buffers kept for reuse (the connection's queue budget).
    pub spare_bytes: usize,
    /// Silence allowed between frames (`None`: no limit).
    pub idle_timeout: Option<Duration>,
    /// Time a frame may take once begun (`None`: no limit).
    pub frame_timeout: Option<Duration>,
    /// Time spent discarding input after a notice, before closing.
    pub drain_timeout: Duration,
    /// Whether a stream that opens with a hello is read as a session (SPEC §9.2), and the pacing
    /// this side proposes for acks and heartbeats (SPEC §10.4). `None`: every stream is plain.
    /// Must be `None` when `codec`'s `max_frame_length` is 2^31 or more (SPEC §9.2.3).
    pub sessions: Option<framepipe_codec::session::Pacing>,
}

impl Default for ConsumerConfig {
    fn default() -> Self {
        ConsumerConfig {
            codec: framepipe_codec::Builder::default(),
            read_chunk: DEFAULT_READ_CHUNK,
            spare_bytes: framepipe_flow::queue::DEFAULT_MAX_BYTES,
            idle_timeout: Some(DEFAULT_IDLE_TIMEOUT),
            frame_timeout: Some(DEFAULT_FRAME_TIMEOUT),
            drain_timeout: DEFAULT_DRAIN_TIMEOUT,
            sessions: Some(crate::session::default_pacing()),
        }
    }
}
