//! `--plot` (examples/support/plot.rs): a recorded run is drawn with its throughput, every stage
//! stacked up to RSS, the budget, and the stall shaded; in SVG and PNG.

#[path = "../examples/support/plot.rs"]
#[allow(dead_code, unreachable_pub)]
mod plot;

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use framepipe::flow::{Monitor, SocketSet, StageGauge};

/// Records a made-up run on a paused clock: bytes move for 1 s, stall for 0.5 s, move again,
/// with 3 MiB in the queue throughout.
async fn record(path: &std::path::Path) -> Result<std::path::PathBuf, String> {
    let queue = StageGauge::new("queue");
    queue.grow(3 << 20);
    let monitor = Monitor::new(vec![queue.clone()], SocketSet::new());
    let bytes = Arc::new(AtomicU64::new(0));
    let moved = bytes.clone();
    let read = move || plot::one_side(moved.load(Relaxed), monitor.read());
    let recording = plot::start_if(Some(path), read)?.expect("a recording");
    for tick in 0..25u64 {
        if !(10..15).contains(&tick) {
            bytes.fetch_add(5_000_000, Relaxed);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    recording.finish("a made-up run", 4 << 20)
}

#[tokio::test(start_paused = true)]
async fn a_run_is_drawn_with_throughput_stages_budget_and_stalls() {
    let dir = std::env::temp_dir().join(format!("framepipe-plot-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let svg = record(&dir.join("run.svg")).await.unwrap();
    let text = std::fs::read_to_string(&svg).unwrap();
    for label in [
        "a made-up run",
        "throughput",
        "queue",
        "socket queues",
        "rest of RSS",
        "budget",
    ] {
        assert!(text.contains(label), "{label} is drawn");
    }
    // The stall is shaded: grey rectangles in both panels.
    assert!(text.matches("#C8C8C8").count() >= 2, "the stall is shaded");
    let png = record(&dir.join("run.png")).await.unwrap();
    let bytes = std::fs::read(&png).unwrap();
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
    assert!(bytes.len() > 10_000, "a picture, not an empty image");
    assert!(plot::parse_plot_path("run.jpg").is_err());
    std::fs::remove_dir_all(&dir).unwrap();
}
