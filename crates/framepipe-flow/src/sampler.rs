//! The one way a [`Monitor`]'s peaks are recorded: a task that samples it at a fixed interval
//! (SPEC §5.3).

use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;

use crate::Monitor;

/// Default interval between two samples of a [`Monitor`]: 10 ms (SPEC §5.3).
///
/// A sample costs a few microseconds (two `ioctl`s per socket and some atomic loads; no `/proc` read), so 10 ms
/// costs well under 1 % of a core, and a peak of the in-flight sum that lasts 10 ms is seen.
pub const DEFAULT_SAMPLE_INTERVAL: Duration = Duration::from_millis(10);

/// A running sampler: a Tokio task that calls [`Monitor::record`] at a fixed interval. Dropping it
/// stops the task (it is aborted, at its next wait).
///
/// Made by [`Monitor::spawn_sampler`].
#[derive(Debug)]
#[must_use = "the sampler stops when this guard is dropped"]
pub struct Sampler {
    task: JoinHandle<()>,
}

impl Drop for Sampler {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Monitor {
    /// Starts a Tokio task that calls [`Monitor::record`] every `every` (the first sample at once;
    /// ticks missed while the runtime was busy are not made up: `MissedTickBehavior::Delay`). The
    /// task stops when the returned guard is dropped.
    ///
    /// Costs one task and a clone of this monitor (an `Arc`); each sample costs what
    /// [`Monitor::record`] does. Start one sampler per monitor: two would only sample more often.
    ///
    /// # Panics
    /// If `every` is zero, or if called outside a Tokio runtime.
    pub fn spawn_sampler(&self, every: Duration) -> Sampler {
        assert!(!every.is_zero(), "the sample interval must not be zero");
        let monitor = self.clone();
        let task = tokio::spawn(async move {
            let mut ticker = tokio::time::interval(every);
            ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
            loop {
                ticker.tick().await;
                monitor.record();
            }
        });
        Sampler { task }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{SocketSet, StageGauge};

    #[tokio::test]
    async fn samples_until_dropped() {
        let stage = StageGauge::new("queue");
        let monitor = Monitor::new(vec![stage.clone()], SocketSet::new());
        let sampler = monitor.spawn_sampler(Duration::from_millis(2));
        stage.grow(700);
        tokio::time::sleep(Duration::from_millis(30)).await;
        stage.shrink(700);
        assert_eq!(
            monitor.read().peak_in_flight_bytes,
            700,
            "sampled while held"
        );

        drop(sampler);
        tokio::time::sleep(Duration::from_millis(10)).await; // let the abort land
        stage.grow(900);
        tokio::time::sleep(Duration::from_millis(30)).await;
        stage.shrink(900);
        assert_eq!(
            monitor.read().peak_in_flight_bytes,
            700,
            "no sampling after drop"
        );
    }

    #[test]
    #[should_panic(expected = "must not be zero")]
    fn a_zero_interval_is_refused() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let _guard = rt.enter();
        let _sampler = Monitor::new(Vec::new(), SocketSet::new()).spawn_sampler(Duration::ZERO);
    }
}
