//! What a pipeline holds, published through the [`metrics`] facade (SPEC §11.1).
//!
//! framepipe records; the application chooses the exporter. Counters (frames, bytes, connections,
//! errors) are recorded by the producer and consumer crates as things happen. The figures that are
//! *levels* (bytes in each stage and in the socket queues, their peaks since start, memory, and the
//! scheduler's lag) are published by a [`Publisher`], a task the application starts once with
//! [`spawn_publisher`] after installing its recorder:
//!
//! ```no_run
//! # async fn run() {
//! // 1. install a recorder (here none: every figure is dropped), 2. start the publisher.
//! let _publisher = framepipe_flow::metrics::spawn_publisher(framepipe_flow::metrics::LAG_PROBE);
//! # }
//! ```
//!
//! Without a recorder every `metrics` call is a no-op: a library user who installs none pays one
//! branch per recorded event. Handles are registered when a producer or consumer is built, so
//! install the recorder first.
//!
//! Levels are process-wide sums over every live [`Monitor`] published with
//! [`Monitor::publish_as`], labelled by `side` (`producer`, `consumer`) and `stage`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use metrics::{describe_gauge, describe_histogram, gauge, histogram, Unit};
use tokio::task::JoinHandle;

use crate::{probe, MemoryPool, Monitor, StageGauge};

/// The publisher's period, and the timer whose lateness is the scheduler lag: 100 ms.
pub const LAG_PROBE: Duration = Duration::from_millis(100);

/// Bytes held by one stage, summed over the process (gauge; labels `side`, `stage`).
pub const STAGE_BYTES: &str = "framepipe_stage_bytes";
/// The most bytes one stage held at once since the process started (gauge; `side`, `stage`).
pub const STAGE_PEAK_BYTES: &str = "framepipe_stage_peak_bytes";
/// Time senders waited for room in a stage (summary in seconds; `side`, `stage`).
pub const BLOCKED_SECONDS: &str = "framepipe_blocked_seconds";
/// Bytes in the kernel's socket queues (gauge; `side`, `queue` = `send` or `recv`).
pub const SOCKET_QUEUE_BYTES: &str = "framepipe_socket_queue_bytes";
/// Bytes in every stage and socket queue of one side (gauge; `side`).
pub const IN_FLIGHT_BYTES: &str = "framepipe_in_flight_bytes";
/// The most in-flight bytes seen by the publisher since start (gauge; `side`).
pub const PEAK_IN_FLIGHT_BYTES: &str = "framepipe_peak_in_flight_bytes";
/// Bytes reserved from memory pools now (gauge; `side`).
pub const MEMORY_RESERVED_BYTES: &str = "framepipe_memory_reserved_bytes";
/// The limits of the memory pools (gauge; `side`).
pub const MEMORY_LIMIT_BYTES: &str = "framepipe_memory_limit_bytes";
/// The process's peak resident memory, kept by the kernel (gauge).
pub const PEAK_RSS_BYTES: &str = "framepipe_process_peak_resident_memory_bytes";
/// How late a [`LAG_PROBE`] timer fired (summary in seconds).
pub const SCHEDULER_LAG_SECONDS: &str = "framepipe_scheduler_lag_seconds";

/// Every live published monitor, and the peaks seen so far.
#[derive(Default)]
struct Registry {
    monitors: Vec<(&'static str, Weak<crate::snapshot::Inner>)>,
    pools: Vec<(&'static str, Weak<crate::pool::Inner>)>,
    stage_peaks: HashMap<(&'static str, &'static str), usize>,
    in_flight_peaks: HashMap<&'static str, usize>,
}

static REGISTRY: Mutex<Option<Registry>> = Mutex::new(None);

fn with_registry<T>(f: impl FnOnce(&mut Registry) -> T) -> T {
    let mut guard = REGISTRY.lock().unwrap_or_else(|e| e.into_inner());
    f(guard.get_or_insert_with(Registry::default))
}

impl Monitor {
    /// Includes this monitor's stages and sockets in the process-wide levels a [`Publisher`]
    /// publishes, labelled `side`, and records its stages' blocked time as
    /// [`BLOCKED_SECONDS`]. Costs one weak reference in a process-wide list (dropped monitors are
    /// pruned here and at each publication, so the list holds live monitors only).
    pub fn publish_as(self, side: &'static str) -> Self {
        for stage in self.stages() {
            stage.record_blocked_as(side);
        }
        let weak = Arc::downgrade(&self.inner);
        with_registry(|r| {
            r.monitors.retain(|(_, m)| m.strong_count() > 0);
            r.monitors.push((side, weak));
        });
        self
    }
}

impl MemoryPool {
    /// Includes this pool's reservations and limit in the process-wide levels a [`Publisher`]
    /// publishes as [`MEMORY_RESERVED_BYTES`] and [`MEMORY_LIMIT_BYTES`], labelled `side`.
    pub fn publish_as(self, side: &'static str) -> Self {
        let weak = Arc::downgrade(&self.inner);
        with_registry(|r| {
            r.pools.retain(|(_, p)| p.strong_count() > 0);
            r.pools.push((side, weak));
        });
        self
    }
}

impl StageGauge {
    fn record_blocked_as(&self, side: &'static str) {
        let name = self.snapshot().name;
        self.set_blocked_histogram(histogram!(BLOCKED_SECONDS, "side" => side, "stage" => name));
    }
}

/// Sums of one side's live monitors.
#[derive(Default)]
struct SideLevels {
    stages: HashMap<&'static str, (usize, usize)>,
    send: usize,
    recv: usize,
}

/// Publishes every level once: stage bytes and peaks, socket queues, in-flight bytes, the process's
/// resident memory. What [`Publisher`] does each period; call it yourself to publish on demand.
///
/// Costs a lock, one reading per live monitor (two `ioctl`s per socket), a few `/proc` reads and a
/// gauge update per figure.
pub fn publish() {
    let levels = with_registry(|r| {
        r.monitors.retain(|(_, m)| m.strong_count() > 0);
        let mut sides: HashMap<&'static str, SideLevels> = HashMap::new();
        for (side, monitor) in &r.monitors {
            let Some(inner) = monitor.upgrade() else {
                continue;
            };
            let monitor = Monitor { inner };
            let levels = sides.entry(side).or_default();
            for stage in monitor.stages() {
                let s = stage.snapshot();
                let entry = levels.stages.entry(s.name).or_default();
                entry.0 += s.bytes;
                entry.1 = entry.1.max(s.peak_bytes);
            }
            let sockets = monitor.sockets().queues();
            levels.send += sockets.send_queue_bytes.unwrap_or(0);
            levels.recv += sockets.recv_queue_bytes.unwrap_or(0);
        }
        r.pools.retain(|(_, p)| p.strong_count() > 0);
        let mut pools: HashMap<&'static str, (usize, usize)> = HashMap::new();
        for (side, pool) in &r.pools {
            if let Some(inner) = pool.upgrade() {
                let pool = MemoryPool { inner };
                let entry = pools.entry(side).or_default();
                entry.0 += pool.in_use();
                entry.1 += pool.limit();
            }
        }
        let sides = sides
            .into_iter()
            .map(|(side, levels)| {
                let in_flight =
                    levels.stages.values().map(|v| v.0).sum::<usize>() + levels.send + levels.recv;
                let peak = r.in_flight_peaks.entry(side).or_default();
                *peak = (*peak).max(in_flight);
                let peak_in_flight = *peak;
                let stages: Vec<_> = levels
                    .stages
                    .iter()
                    .map(|(&stage, &(bytes, own_peak))| {
                        let peak = r.stage_peaks.entry((side, stage)).or_default();
                        *peak = (*peak).max(bytes).max(own_peak);
                        (stage, bytes, *peak)
                    })
                    .collect();
                (side, stages, levels, in_flight, peak_in_flight)
            })
            .collect::<Vec<_>>();
        (sides, pools)
    });
    let (levels, pools) = levels;
    for (side, (reserved, limit)) in pools {
        gauge!(MEMORY_RESERVED_BYTES, "side" => side).set(reserved as f64);
        gauge!(MEMORY_LIMIT_BYTES, "side" => side).set(limit as f64);
    }
    for (side, stages, levels, in_flight, peak_in_flight) in levels {
        for (stage, bytes, peak) in stages {
            gauge!(STAGE_BYTES, "side" => side, "stage" => stage).set(bytes as f64);
            gauge!(STAGE_PEAK_BYTES, "side" => side, "stage" => stage).set(peak as f64);
        }
        gauge!(SOCKET_QUEUE_BYTES, "side" => side, "queue" => "send").set(levels.send as f64);
        gauge!(SOCKET_QUEUE_BYTES, "side" => side, "queue" => "recv").set(levels.recv as f64);
        gauge!(IN_FLIGHT_BYTES, "side" => side).set(in_flight as f64);
        gauge!(PEAK_IN_FLIGHT_BYTES, "side" => side).set(peak_in_flight as f64);
    }
    if let Ok(peak) = probe::peak_rss_bytes() {
        gauge!(PEAK_RSS_BYTES).set(peak as f64);
    }
}

/// Describes the metrics published here (unit and help text) to the installed recorder.
/// [`spawn_publisher`] calls it.
pub fn describe() {
    describe_gauge!(
        STAGE_BYTES,
        Unit::Bytes,
        "Bytes held by a pipeline stage now, summed over the process."
    );
    describe_gauge!(
        STAGE_PEAK_BYTES,
        Unit::Bytes,
        "Most bytes a pipeline stage held at once since start."
    );
    describe_histogram!(
        BLOCKED_SECONDS,
        Unit::Seconds,
        "Time senders waited for room in a stage."
    );
    describe_gauge!(
        SOCKET_QUEUE_BYTES,
        Unit::Bytes,
        "Bytes in the kernel's socket send or receive queues."
    );
    describe_gauge!(
        IN_FLIGHT_BYTES,
        Unit::Bytes,
        "Bytes in every stage and socket queue of one side."
    );
    describe_gauge!(
        PEAK_IN_FLIGHT_BYTES,
        Unit::Bytes,
        "Most in-flight bytes of one side seen since start."
    );
    describe_gauge!(
        MEMORY_RESERVED_BYTES,
        Unit::Bytes,
        "Bytes reserved from memory pools now."
    );
    describe_gauge!(
        MEMORY_LIMIT_BYTES,
        Unit::Bytes,
        "The limits of the memory pools."
    );
    describe_gauge!(
        PEAK_RSS_BYTES,
        Unit::Bytes,
        "Peak resident memory of the process (VmHWM)."
    );
    describe_histogram!(
        SCHEDULER_LAG_SECONDS,
        Unit::Seconds,
        "How late a 100 ms timer fired: the async runtime's analogue of event-loop lag."
    );
}

/// A running publisher: a Tokio task that sleeps `every`, records how late it woke as
/// [`SCHEDULER_LAG_SECONDS`], then calls [`publish`] and collects the standard `process_*`
/// metrics (CPU seconds, resident memory, open file descriptors: the `metrics-process` crate).
/// Dropping it stops the task.
#[derive(Debug)]
#[must_use = "the publisher stops when this guard is dropped"]
pub struct Publisher {
    task: JoinHandle<()>,
}

impl Drop for Publisher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Describes every metric, then starts a [`Publisher`] that publishes every `every`
/// ([`LAG_PROBE`], 100 ms, is what the binaries use). Costs one task; each period costs what
/// [`publish`] does plus a few `/proc` reads.
///
/// # Panics
/// If `every` is zero, or if called outside a Tokio runtime.
pub fn spawn_publisher(every: Duration) -> Publisher {
    assert!(!every.is_zero(), "the publish interval must not be zero");
    describe();
    let process = metrics_process::Collector::default();
    process.describe();
    let task = tokio::spawn(async move {
        let lag = histogram!(SCHEDULER_LAG_SECONDS);
        loop {
            let asked = Instant::now() + every;
            tokio::time::sleep(every).await;
            lag.record(
                Instant::now()
                    .saturating_duration_since(asked)
                    .as_secs_f64(),
            );
            publish();
            process.collect();
        }
    });
    Publisher { task }
}
