//! How long a session's producer waits before each reconnect attempt (SPEC §10.1).

use std::time::Duration;

/// The default ladder of delays before the first, second, … reconnect attempt (SPEC §10.1).
pub const DEFAULT_STEPS: [Duration; 5] = [
    Duration::from_millis(100),
    Duration::from_millis(250),
    Duration::from_millis(500),
    Duration::from_secs(1),
    Duration::from_millis(2500),
];

/// The default longest delay between two attempts: 5 s (SPEC §10.1).
pub const DEFAULT_MAX_DELAY: Duration = Duration::from_secs(5);

/// The default spread of each delay: ±10% (SPEC §10.1).
pub const DEFAULT_JITTER: f64 = 0.1;

/// The delays between reconnect attempts: a ladder of steps, then doubling from its last step,
/// never over `max_delay`, each spread by ± `jitter` (SPEC §10.1).
///
/// It holds no clock and no random source: the driver draws a `spread` in [−1, 1] for each attempt
/// and sleeps [`Backoff::delay`], so tests can name every delay exactly. Builders take and return
/// `self`; a `Backoff` is cheap to clone.
///
/// ```
/// use std::time::Duration;
/// use framepipe_proto::backoff::Backoff;
///
/// let b = Backoff::default();
/// let ms = |n| b.base_delay(n).as_millis();
/// assert_eq!((0..7).map(ms).collect::<Vec<_>>(), [100, 250, 500, 1000, 2500, 5000, 5000]);
/// assert_eq!(b.delay(0, 1.0), Duration::from_millis(110)); // +10%
/// assert_eq!(b.delay(0, -1.0), Duration::from_millis(90)); // −10%
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Backoff {
    steps: Vec<Duration>,
    max_delay: Duration,
    jitter: f64,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            steps: DEFAULT_STEPS.to_vec(),
            max_delay: DEFAULT_MAX_DELAY,
            jitter: DEFAULT_JITTER,
        }
    }
}

impl Backoff {
    /// The default policy: [`DEFAULT_STEPS`], [`DEFAULT_MAX_DELAY`], [`DEFAULT_JITTER`].
    pub fn new() -> Self {
        Backoff::default()
    }

    /// The delays before the first attempts, in order (default [`DEFAULT_STEPS`]). With an empty
    /// ladder every attempt waits `max_delay`.
    pub fn steps(mut self, steps: impl Into<Vec<Duration>>) -> Self {
        self.steps = steps.into();
        self
    }

    /// The longest delay between two attempts (default 5 s), jitter included.
    pub fn max_delay(mut self, max: Duration) -> Self {
        self.max_delay = max;
        self
    }

    /// The spread of each delay as a fraction, clamped to [0, 1] (default 0.1: ±10%).
    pub fn jitter(mut self, fraction: f64) -> Self {
        self.jitter = if fraction.is_nan() {
            0.0
        } else {
            fraction.clamp(0.0, 1.0)
        };
        self
    }

    /// The delay before attempt `attempt` (0: the first reconnect), before jitter: the ladder's
    /// step, or after the ladder its last step doubled once per attempt beyond it, capped at
    /// `max_delay`.
    pub fn base_delay(&self, attempt: u32) -> Duration {
        let index = attempt as usize;
        let base = match self.steps.get(index) {
            Some(step) => *step,
            None => match self.steps.last() {
                None => self.max_delay,
                Some(last) => {
                    // Past 31 doublings any step is over any sensible cap; saturating keeps it so.
                    let doublings = (index + 1 - self.steps.len()).min(31) as u32;
                    last.saturating_mul(1u32 << doublings)
                }
            },
        };
        base.min(self.max_delay)
    }

    /// The delay before attempt `attempt`, spread by `spread` (clamped to [−1, 1]; the driver draws
    /// it uniformly): `base × (1 + jitter × spread)`, at most `max_delay`.
    pub fn delay(&self, attempt: u32, spread: f64) -> Duration {
        let spread = if spread.is_nan() {
            0.0
        } else {
            spread.clamp(-1.0, 1.0)
        };
        let factor = 1.0 + self.jitter * spread;
        self.base_delay(attempt).mul_f64(factor).min(self.max_delay)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn the_default_ladder_doubles_to_the_cap() {
        let b = Backoff::default();
        let delays: Vec<u128> = (0..8).map(|n| b.base_delay(n).as_millis()).collect();
        assert_eq!(delays, [100, 250, 500, 1000, 2500, 5000, 5000, 5000]);
        assert_eq!(b.base_delay(u32::MAX), DEFAULT_MAX_DELAY);
    }

    #[test]
    fn a_ladder_of_its_own_and_a_higher_cap() {
        let b = Backoff::new()
            .steps([Duration::from_millis(10)])
            .max_delay(Duration::from_millis(75))
            .jitter(0.0);
        let delays: Vec<u128> = (0..5).map(|n| b.delay(n, 1.0).as_millis()).collect();
        assert_eq!(delays, [10, 20, 40, 75, 75]);
        let empty = Backoff::new().steps(Vec::new()).jitter(0.0);
        assert_eq!(empty.delay(0, 0.0), DEFAULT_MAX_DELAY);
    }

    #[test]
    fn jitter_never_passes_the_cap_and_bad_inputs_are_clamped() {
        let b = Backoff::default().jitter(7.0);
        assert_eq!(b.delay(10, 1.0), DEFAULT_MAX_DELAY);
        assert_eq!(b.delay(0, f64::NAN), Duration::from_millis(100));
        assert_eq!(b.delay(0, -3.0), Duration::ZERO); // jitter clamped to 1: 100 ms × 0
    }

    proptest! {
        #[test]
        fn every_delay_is_within_its_jitter_and_the_cap(attempt in 0u32..64, spread in -1.0f64..=1.0, jitter in 0.0f64..=1.0) {
            let b = Backoff::default().jitter(jitter);
            let base = b.base_delay(attempt).as_secs_f64();
            let got = b.delay(attempt, spread).as_secs_f64();
            prop_assert!(got <= DEFAULT_MAX_DELAY.as_secs_f64() + 1e-9);
            prop_assert!(got >= base * (1.0 - jitter) - 1e-9);
            prop_assert!(got <= base * (1.0 + jitter) + 1e-9);
            prop_assert!(b.base_delay(attempt) <= b.base_delay(attempt + 1));
        }
    }
}
