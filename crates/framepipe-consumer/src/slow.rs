//! Making the handler deliberately slow: delay, rate, jitter and stalls (SPEC §7.3).

use std::time::Duration;

use tokio::time::Instant;

/// How to slow the handler down, so backpressure can be seen working. `Default` is full speed.
///
/// Every setting applies per connection, before each frame is handed to the handler; they add up.
///
/// ```
/// use std::time::Duration;
/// use framepipe_consumer::SlowDown;
///
/// // 2 ms per frame plus up to 1 ms of jitter, and a 500 ms stall every 1,000 frames.
/// let slow = SlowDown::default()
///     .delay(Duration::from_millis(2))
///     .jitter(Duration::from_millis(1))
///     .stall(Duration::from_millis(500), 1000);
/// assert!(!slow.is_none());
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct SlowDown {
    delay: Duration,
    jitter: Duration,
    frames_per_sec: Option<f64>,
    bytes_per_sec: Option<f64>,
    stall: Option<(Duration, u64)>,
}

impl SlowDown {
    /// Full speed (the default).
    pub fn none() -> Self {
        Self::default()
    }

    /// Sleep this long before every frame (default 0).
    pub fn delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }

    /// Add a random sleep, uniform in `0..=jitter`, before every frame (default 0).
    pub fn jitter(mut self, jitter: Duration) -> Self {
        self.jitter = jitter;
        self
    }

    /// Hand over at most this many frames per second (default: unlimited). Paced evenly, with no
    /// burst credit: an idle period does not allow a burst afterwards. Non-positive means unlimited.
    pub fn frames_per_sec(mut self, rate: f64) -> Self {
        self.frames_per_sec = (rate > 0.0).then_some(rate);
        self
    }

    /// Hand over at most this many wire bytes per second (default: unlimited), paced like
    /// [`SlowDown::frames_per_sec`].
    pub fn bytes_per_sec(mut self, rate: f64) -> Self {
        self.bytes_per_sec = (rate > 0.0).then_some(rate);
        self
    }

    /// Stall for `duration` before every `every`-th frame (frames `every`, `2 × every`, …; default
    /// none). `every == 0` turns stalls off.
    pub fn stall(mut self, duration: Duration, every: u64) -> Self {
        self.stall = (every > 0 && !duration.is_zero()).then_some((duration, every));
        self
    }

    /// `true` if nothing is slowed.
    pub fn is_none(&self) -> bool {
        *self == Self::default()
    }
}

/// Applies a [`SlowDown`] to one connection's frames.
#[derive(Debug)]
pub(crate) struct Pacer {
    slow: SlowDown,
    frames: u64,
    next_frame_at: Option<Instant>,
    next_byte_at: Option<Instant>,
    rng: u64,
}

impl Pacer {
    pub(crate) fn new(slow: SlowDown, seed: u64) -> Self {
        Pacer {
            slow,
            frames: 0,
            next_frame_at: None,
            next_byte_at: None,
            // xorshift needs a non-zero state.
            rng: seed | 1,
        }
    }

    /// Waits as the settings say before the next frame of `wire_bytes`; returns the time waited.
    pub(crate) async fn before(&mut self, wire_bytes: usize) -> Duration {
        if self.slow.is_none() {
            return Duration::ZERO;
        }
        let start = Instant::now();
        self.frames += 1;
        if let Some((duration, every)) = self.slow.stall {
            if self.frames % every == 0 {
                tokio::time::sleep(duration).await;
            }
        }
        let mut wait = self.slow.delay;
        if !self.slow.jitter.is_zero() {
            let nanos = self.slow.jitter.as_nanos() as u64;
            wait += Duration::from_nanos(self.next_random() % (nanos + 1));
        }
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        if let Some(rate) = self.slow.frames_per_sec {
            let due = pace(&mut self.next_frame_at, 1.0 / rate);
            tokio::time::sleep_until(due).await;
        }
        if let Some(rate) = self.slow.bytes_per_sec {
            let due = pace(&mut self.next_byte_at, wire_bytes as f64 / rate);
            tokio::time::sleep_until(due).await;
        }
        start.elapsed()
    }

    /// xorshift64: plenty for jitter, and no dependency.
    fn next_random(&mut self) -> u64 {
        let mut x = self.rng;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng = x;
        x
    }
}

/// When the next item may go, for an even pace of `secs` per item, and advances the schedule.
fn pace(next: &mut Option<Instant>, secs: f64) -> Instant {
    let now = Instant::now();
    let due = next.map_or(now, |n| n.max(now));
    *next = Some(due + Duration::from_secs_f64(secs.max(0.0)));
    due
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn delay_and_stalls_add_up() {
        let slow = SlowDown::none()
            .delay(Duration::from_millis(2))
            .stall(Duration::from_millis(100), 5);
        let mut pacer = Pacer::new(slow, 1);
        let start = Instant::now();
        for _ in 0..10 {
            pacer.before(100).await;
        }
        // 10 × 2 ms + 2 stalls (frames 5 and 10) × 100 ms.
        assert_eq!(start.elapsed(), Duration::from_millis(220));
    }

    #[tokio::test(start_paused = true)]
    async fn rates_pace_evenly_without_burst_credit() {
        let mut pacer = Pacer::new(SlowDown::none().frames_per_sec(100.0), 1);
        let start = Instant::now();
        for _ in 0..11 {
            pacer.before(1).await;
        }
        assert_eq!(start.elapsed(), Duration::from_millis(100));
        // Idle for a second: no burst afterwards.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let idle_end = Instant::now();
        pacer.before(1).await;
        pacer.before(1).await;
        assert_eq!(idle_end.elapsed(), Duration::from_millis(10));

        let mut bytes = Pacer::new(SlowDown::none().bytes_per_sec(1000.0), 1);
        let start = Instant::now();
        bytes.before(500).await; // goes at once, books 0.5 s
        bytes.before(500).await; // waits 0.5 s
        bytes.before(1).await; // waits another 0.5 s
        assert_eq!(start.elapsed(), Duration::from_millis(1000));
    }

    #[tokio::test(start_paused = true)]
    async fn jitter_stays_within_its_bound_and_varies() {
        let mut pacer = Pacer::new(SlowDown::none().jitter(Duration::from_millis(10)), 42);
        let mut waits = Vec::new();
        for _ in 0..50 {
            waits.push(pacer.before(1).await);
        }
        assert!(waits.iter().all(|w| *w <= Duration::from_millis(10)));
        // Tokio's timer has millisecond resolution, so waits land on whole milliseconds.
        let distinct: std::collections::BTreeSet<_> = waits.iter().collect();
        assert!(distinct.len() >= 5, "{waits:?}");
    }

    #[tokio::test]
    async fn full_speed_never_sleeps() {
        let mut pacer = Pacer::new(SlowDown::none(), 1);
        assert_eq!(pacer.before(1_000_000).await, Duration::ZERO);
    }
}
