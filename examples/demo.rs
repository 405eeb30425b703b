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
use framepipe::consumer::{Consumer, Json, Report, Shutdown, SlowDown};
use framepipe::producer::{generator, Error, Producer};
use framepipe::reference::Record;
use support::{
    close, feed, mib, parse_interval, parse_size, stage_list, thousands, Closed, ConsumerCounts,
    ProducerCounts, Signals, Summary, EXIT_FORCED, EXIT_INTERRUPTED,
};

/// Producer → slow consumer on an ephemeral loopback port, showing backpressure hold memory flat.
///
/// The consumer sleeps --delay-ms before each frame and stalls --stall-ms every --stall-every
/// frames; the producer's source is polled only when its queue has room. A line per interval shows
/// the bytes in every stage on both sides; the summary compares the peak in-flight bytes with the
/// budgets and socket queues.
///
/// SIGINT (Ctrl-C) or SIGTERM stops the producer taking frames from its source; what it queued is
/// written and handled within --shutdown-timeout, then the consumer shuts down. A second signal
/// forces both. The summaries are printed either way.
///
/// Exit status: 0 done and the in-flight bound held; 2 cannot listen or connect; 3 the producer
/// failed; 4 the in-flight bytes exceeded the bound; 130 stopped by a signal after a clean drain
/// (and the bound held); 131 stopped by a signal and the drain was forced or ran out of
/// --shutdown-timeout. 4 wins over the others, 131 over 3, and 3 over 130.
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

    /// After a signal, how long the producer may take to write and have handled what it queued
    /// (e.g. 10s); the consumer's drain gets as long again.
    #[arg(long, default_value = "10s", value_parser = parse_interval, value_name = "SECS")]
    shutdown_timeout: Duration,

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

/// Per-interval samples of (frames handled, RSS) for the RSS drift line.
type RssSamples = Arc<std::sync::Mutex<Vec<(u64, u64)>>>;

async fn run(args: Args, bar: Option<indicatif::ProgressBar>) -> ExitCode {
    // Before anything else: until the handlers are installed, a signal kills the process.
    let mut signals = match Signals::new() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("demo: error: cannot install signal handlers: {e}");
            return ExitCode::from(2);
        }
    };
    let slow = SlowDown::none()
        .delay(Duration::from_millis(args.delay_ms))
        .stall(Duration::from_millis(args.stall_ms), args.stall_every);
    let consumer = match Consumer::builder()
        .budget(args.budget)
        .slow_down(slow)
        .max_connections(Some(1))
        .shutdown_timeout(args.shutdown_timeout)
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
    let shutdown = consumer.shutdown_handle();
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
    let waited_ms = Arc::new(AtomicU64::new(0));
    let rss_samples = RssSamples::default();
    let reporter = tokio::spawn(report_loop(
        producer_stats.clone(),
        consumer_stats,
        bar.clone(),
        args.stats_interval,
        rss_samples.clone(),
        waited_ms.clone(),
    ));

    // The producer: the source through a `Sender` until it ends or a signal comes, then close.
    let sender = conn.sender::<Arc<Vec<Record>>>();
    let source = generator::reference_frames(args.frames, args.records_per_frame);
    let interrupted = tokio::select! {
        () = feed(&sender, source, None, &waited_ms) => false,
        name = signals.recv() => {
            tracing::info!(
                "demo: {name}: the producer takes no more frames; what it queued is written and \
                 handled within {:?}, then the consumer shuts down (send it again to force)",
                args.shutdown_timeout
            );
            true
        }
    };
    let closed = close(
        "demo",
        &sender,
        &mut signals,
        interrupted,
        args.shutdown_timeout,
    )
    .await;
    drop(sender);
    let served = finish_consumer(server, &shutdown, &mut signals, closed.interrupted).await;
    reporter.abort();
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    let ps = producer_stats.snapshot();
    let waited_ms = waited_ms.load(Relaxed);
    report(
        &args,
        &ps,
        &served,
        &closed,
        records.load(Relaxed),
        waited_ms,
        &rss_samples,
    )
}

/// Waits for the consumer's report. After a signal its shutdown is started (its one connection
/// has usually ended by then, and `serve` returns at once); a further signal forces it.
async fn finish_consumer(
    server: tokio::task::JoinHandle<Report>,
    shutdown: &Shutdown,
    signals: &mut Signals,
    interrupted: bool,
) -> Report {
    if interrupted {
        shutdown.shutdown();
    }
    let mut server = std::pin::pin!(server);
    tokio::select! {
        served = &mut server => return served.expect("consumer task"),
        name = signals.recv() => {
            tracing::warn!("demo: {name}: forcing the consumer's shutdown");
            shutdown.force();
        }
    }
    server.await.expect("consumer task")
}

/// A stats line every `every`: both sides' stages, the sockets between them and the RSS.
async fn report_loop(
    p: framepipe::producer::Stats,
    c: framepipe::consumer::Stats,
    bar: Option<indicatif::ProgressBar>,
    every: Duration,
    rss_samples: RssSamples,
    waited_ms: Arc<AtomicU64>,
) {
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
            waited_ms.load(Relaxed),
        );
    }
}

/// Prints both summaries and the backpressure check, and picks the exit status.
fn report(
    args: &Args,
    ps: &framepipe::producer::Snapshot,
    served: &Report,
    closed: &Closed,
    records: u64,
    waited_ms: u64,
    rss_samples: &RssSamples,
) -> ExitCode {
    let cs = &served.snapshot;
    let sent = &closed.result;
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
    )
    .interrupted(closed.interrupted)
    .producer(ProducerCounts {
        items_sent: ps.items_sent,
        frames_encoded: ps.frames_encoded,
        frames_written: ps.frames_written,
        never_sent: sent
            .as_ref()
            .map_or_else(Error::never_sent, |_| 0)
            .max(ps.frames_unwritten()),
        confirmed: sent.as_ref().is_ok_and(|r| r.confirmed),
        close_forced: closed.cut_short(),
        waited_for_room_ms: waited_ms,
    });
    let consumer = Summary::new(
        "consumer",
        cs.frames_handled,
        Some(records),
        cs.bytes_handled,
        cs.busy_secs,
        &cs.flow,
        args.budget,
        cs.errors,
        served.connections.iter().find_map(|c| c.error.clone()),
    )
    .interrupted(closed.interrupted)
    .consumer(ConsumerCounts {
        connections: cs.connections_accepted,
        connections_refused: cs.connections_refused,
        frames_read: cs.frames_read,
        frames_delivered: cs.frames_delivered,
        frames_handled: cs.frames_handled,
        frames_unhandled: cs.frames_unhandled,
        handler_errors: cs.handler_errors,
        shutdown_forced: served.shutdown.is_some_and(|s| s.forced),
        shutdown_secs: served.shutdown.map(|s| s.secs),
    });
    eprintln!("{}\n{}", producer.human(), consumer.human());
    let within_bound = check_bound(args, ps, cs, waited_ms);
    print_rss_drift(&rss_samples.lock().unwrap());
    if args.summary_json {
        let both = serde_json::json!({ "producer": producer, "consumer": consumer });
        println!("{both}");
    }
    let forced = closed.cut_short()
        || consumer
            .consumer
            .as_ref()
            .is_some_and(|c| c.shutdown_forced);
    if !within_bound {
        eprintln!("demo: error: in-flight bytes exceeded the bound");
        return ExitCode::from(4);
    }
    if forced {
        if let Err(e) = sent {
            eprintln!("demo: error: {e}");
        }
        return ExitCode::from(EXIT_FORCED);
    }
    match (sent, closed.interrupted) {
        (Err(e), _) => {
            eprintln!("demo: error: {e}");
            ExitCode::from(3)
        }
        (Ok(_), true) => ExitCode::from(EXIT_INTERRUPTED),
        (Ok(_), false) => ExitCode::SUCCESS,
    }
}

/// The claim of the demo, checked on the figures just measured: the peak bytes in flight on both
/// sides stay within the budgets, the socket queues and one frame at each hand-off.
fn check_bound(
    args: &Args,
    ps: &framepipe::producer::Snapshot,
    cs: &framepipe::consumer::Snapshot,
    waited_ms: u64,
) -> bool {
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
        waited_ms,
    );
    in_flight <= bound
}

/// RSS a quarter of the way in and at the end: flat if memory is bounded.
fn print_rss_drift(rss: &[(u64, u64)]) {
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
}
