//! framepipe in one process: a producer sends reference frames over loopback to a deliberately slow
//! consumer, and the memory of every stage is shown while it runs and at the end.
//!
//! ```sh
//! cargo run --release --example demo
//! ```

mod support;

use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use framepipe::consumer::{Consumer, Json, SlowDown};
use framepipe::producer::{generator, Producer};
use framepipe::reference::Record;
use support::{mib, parse_interval, parse_size, stage_list, thousands, Summary};

/// Producer → slow consumer on an ephemeral loopback port, showing backpressure hold memory flat.
///
/// The consumer sleeps --delay-ms before each frame and stalls --stall-ms every --stall-every
/// frames; the producer's source is polled only when its queue has room. A line per interval shows
/// the bytes in every stage on both sides; the summary compares the peak in-flight bytes with the
/// budgets and socket queues.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Frames to send.
    #[arg(long, default_value_t = 5_000)]
    frames: u64,

    /// Copies of the reference record in each frame (50: 60,901-byte frames).
    #[arg(long, default_value_t = 50)]
    records_per_frame: usize,

    /// Consumer: sleep this many milliseconds before handling each frame.
    #[arg(long, default_value_t = 2, value_name = "N")]
    delay_ms: u64,

    /// Consumer: stall this many milliseconds every --stall-every frames.
    #[arg(long, default_value_t = 1500, value_name = "S")]
    stall_ms: u64,

    /// Consumer: stall before every K-th frame.
    #[arg(long, default_value_t = 2_000, value_name = "K")]
    stall_every: u64,

    /// Byte budget of the producer's queue and of the consumer's queue, each (e.g. 4MiB).
    #[arg(long, default_value = "4MiB", value_parser = parse_size, value_name = "BYTES")]
    budget: usize,

    /// Interval between stats lines (e.g. 1, 0.5s, 250ms).
    #[arg(long, default_value = "1s", value_parser = parse_interval, value_name = "SECS")]
    stats_interval: Duration,

    /// Print both summaries as one JSON object on stdout as well.
    #[arg(long)]
    summary_json: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let bar = support::progress_bar(Some(args.frames));
    support::init_logging(bar.clone());
    // Two worker threads: the producer and the consumer each get a core, as in two processes.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(run(args, bar))
}

async fn run(args: Args, bar: Option<indicatif::ProgressBar>) -> ExitCode {
    let slow = SlowDown::none()
        .delay(Duration::from_millis(args.delay_ms))
        .stall(Duration::from_millis(args.stall_ms), args.stall_every);
    let consumer = match Consumer::builder()
        .budget(args.budget)
        .slow_down(slow)
        .max_connections(Some(1))
        .bind("127.0.0.1:0")
        .await
    {
        Ok(c) => c,
        Err(e) => {
            eprintln!("demo: error: {e}");
            return ExitCode::from(2);
        }
    };
    let addr = consumer.local_addr().expect("bound");
    let consumer_stats = consumer.stats();
    let records = Arc::new(AtomicU64::new(0));
    let server = tokio::spawn({
        let records = records.clone();
        consumer.serve(Json::<Vec<Record>>::new(), move |d| {
            records.fetch_add(d.item.len() as u64, Relaxed);
            std::future::ready(())
        })
    });

    let conn = match Producer::builder().budget(args.budget).connect(addr).await {
        Ok(c) => c,
        Err(e) => {
            eprintln!("demo: error: {e}");
            return ExitCode::from(2);
        }
    };
    tracing::info!(
        "demo: {} frames of {} records to {addr}; consumer delay {} ms, stall {} ms every {} frames; \
         budget {} per side; socket buffers {:?}",
        thousands(args.frames),
        args.records_per_frame,
        args.delay_ms,
        args.stall_ms,
        args.stall_every,
        mib(args.budget as u64),
        conn.buffer_sizes().ok(),
    );
    let producer_stats = conn.stats();
    let rss_samples = Arc::new(std::sync::Mutex::new(Vec::new()));
    let reporter = tokio::spawn({
        let (p, c, bar, every) = (
            producer_stats.clone(),
            consumer_stats.clone(),
            bar.clone(),
            args.stats_interval,
        );
        let rss_samples = rss_samples.clone();
        async move {
            let mut ticker = tokio::time::interval(Duration::from_millis(100));
            let mut next_line = every;
            loop {
                ticker.tick().await;
                if let Some(bar) = &bar {
                    bar.set_position(c.frames_handled());
                }
                if p.elapsed() < next_line {
                    continue;
                }
                next_line += every;
                let (ps, cs) = (p.snapshot(), c.snapshot());
                if let Some(rss) = ps.flow.rss_bytes {
                    rss_samples.lock().unwrap().push((cs.frames_handled, rss));
                }
                tracing::info!(
                    "pulled {} handled {} | producer: {} | socket send {} → recv {} | consumer: {} | \
                     in flight {} | RSS {} | producer blocked {} ms",
                    thousands(ps.items_sent),
                    thousands(cs.frames_handled),
                    stage_list(&ps.flow.stages),
                    mib(ps.flow.sockets.send_queue_bytes.unwrap_or(0) as u64),
                    mib(cs.flow.sockets.recv_queue_bytes.unwrap_or(0) as u64),
                    stage_list(&cs.flow.stages),
                    mib((ps.flow.in_flight_bytes + cs.flow.in_flight_bytes) as u64),
                    ps.flow.rss_bytes.map_or("n/a".into(), mib),
                    ps.flow.stages.iter().map(|s| s.blocked_ms).sum::<u64>(),
                );
            }
        }
    });

    let sent = conn
        .send_json(generator::reference_frames(
            args.frames,
            args.records_per_frame,
        ))
        .await;
    let served = server.await.expect("consumer task");
    reporter.abort();
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }

    let ps = producer_stats.snapshot();
    let cs = &served.snapshot;
    let producer = Summary::new(
        "producer",
        ps.frames_written,
        Some(ps.frames_written * args.records_per_frame as u64),
        ps.bytes_written,
        ps.secs,
        &ps.flow,
        args.budget,
        u64::from(sent.is_err()),
        sent.as_ref().err().map(|e| e.to_string()),
    );
    let consumer = Summary::new(
        "consumer",
        cs.frames_handled,
        Some(records.load(Relaxed)),
        cs.bytes_handled,
        cs.busy_secs,
        &cs.flow,
        args.budget,
        cs.errors,
        served.connections.iter().find_map(|c| c.error.clone()),
    );
    eprintln!("{}\n{}", producer.human(), consumer.human());

    // The claim of the demo, checked on the figures just measured.
    let socket_peaks =
        ps.flow.peak_send_queue_bytes.unwrap_or(0) + cs.flow.peak_recv_queue_bytes.unwrap_or(0);
    let frame = ps.bytes_encoded / ps.frames_encoded.max(1);
    // SPEC §5.4, with the default write batch and read block.
    let batch_and_block = (framepipe::producer::DEFAULT_WRITE_BATCH_BYTES
        + framepipe::consumer::DEFAULT_READ_CHUNK) as u64;
    let bound = 2 * args.budget as u64 + socket_peaks as u64 + 4 * frame + batch_and_block;
    let in_flight = (ps.flow.peak_in_flight_bytes + cs.flow.peak_in_flight_bytes) as u64;
    eprintln!(
        "backpressure: {} of data went through {} in flight at most (per-side peaks added); bound: \
         budgets 2 × {} + socket queue peaks {} + one frame in hand at 4 hand-offs + write batch \
         and read block = {}; producer waited {} ms for room",
        support::mb(ps.bytes_written),
        mib(in_flight),
        mib(args.budget as u64),
        mib(socket_peaks as u64),
        mib(bound),
        ps.flow.stages.iter().map(|s| s.blocked_ms).sum::<u64>(),
    );
    let rss = rss_samples.lock().unwrap().clone();
    if rss.len() >= 4 {
        let first = rss[rss.len() / 4];
        let last = rss[rss.len() - 1];
        eprintln!(
            "RSS: {} after {} frames, {} after {} frames ({:+.1}%)",
            mib(first.1),
            thousands(first.0),
            mib(last.1),
            thousands(last.0),
            (last.1 as f64 / first.1 as f64 - 1.0) * 100.0
        );
    }
    if args.summary_json {
        let both = serde_json::json!({ "producer": producer, "consumer": consumer });
        println!("{both}");
    }
    match (&sent, in_flight <= bound) {
        (Err(e), _) => {
            eprintln!("demo: error: {e}");
            ExitCode::from(3)
        }
        (Ok(_), false) => {
            eprintln!("demo: error: in-flight bytes exceeded the bound");
            ExitCode::from(4)
        }
        (Ok(_), true) => ExitCode::SUCCESS,
    }
}
