//! What a producer connection core needs to know, with the defaults of SPEC §6.1.

use std::time::Duration;

/// Default most bytes gathered into one vectored write: 256 KiB (SPEC §6.1).
pub const DEFAULT_WRITE_BATCH_BYTES: usize = 256 * 1024;
/// Default time to wait, after the last frame, for the consumer to close its end: 30 s (SPEC §6.2).
pub const DEFAULT_CLOSE_TIMEOUT: Duration = Duration::from_secs(30);
/// Default longest time the consumer may accept no bytes while there are bytes to write: 60 s
/// (SPEC §6.2.2–3).
pub const DEFAULT_STALL_TIMEOUT: Duration = Duration::from_secs(60);
/// How long to wait, after a write failed or stalled, for the consumer's notice that may say why:
/// 200 ms (SPEC §6.2.4).
pub const REPLY_GRACE: Duration = Duration::from_millis(200);
/// Most frames gathered into one vectored write: 64 (two slices each, `MAX_IOV` 128).
pub const MAX_BATCH_FRAMES: usize = 64;

/// Settings of one producer connection core. `Default` gives SPEC §6.1's values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProducerConfig {
    /// Most bytes taken for one vectored write (plus one frame).
    pub write_batch_bytes: usize,
    /// Longest time the consumer may accept nothing while bytes wait (`None`: no limit).
    pub stall_timeout: Option<Duration>,
    /// Time to wait after FIN for the consumer to close its end.
    pub close_timeout: Duration,
    /// How often to read the kernel's send queue after FIN (`SIOCOUTQ`), to tell a consumer that
    /// stopped reading from one that is slow to close (SPEC §6.2.3); `None` where the transport has
    /// no such probe.
    pub probe_interval: Option<Duration>,
}

impl Default for ProducerConfig {
    fn default() -> Self {
        ProducerConfig {
            write_batch_bytes: DEFAULT_WRITE_BATCH_BYTES,
            stall_timeout: Some(DEFAULT_STALL_TIMEOUT),
            close_timeout: DEFAULT_CLOSE_TIMEOUT,
            probe_interval: None,
        }
    }
}
