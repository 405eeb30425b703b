//! framepipe in one process: a producer sends reference frames over loopback to a deliberately slow
//! consumer, and the memory of every stage is shown while it runs and at the end.
//!
//! ```sh
//! cargo run --release --example demo
//! ```

#[path = "chaos/mod.rs"]
mod chaos;
#[path = "demo/report.rs"]
mod report;
#[path = "demo/serving.rs"]
mod serving;
mod support;

use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use framepipe::consumer::{Consumer, Report, Shutdown, SlowDown};
use framepipe::producer::{generator, Error, Producer};
use framepipe::reference::Record;
use report::{queue_blocked_ms, report};
use serving::{serve_consumer, DemoTls, Serving};
use support::plot::{Reading, Recording};
use support::{
    close, feed, mib, parse_interval, parse_size, send_session, stage_list, thousands,
    ProducerSessionCounts, SessionEnd, Signals,
};

/// Producer → slow consumer on an ephemeral loopback port, showing backpressure hold memory flat.
///
/// The consumer sleeps --delay-ms before each frame and stalls --stall-ms every --stall-every
/// frames; the producer's source is polled only when its queue has room. A line per interval shows
/// the bytes in every stage on both sides; the summary compares the peak in-flight bytes with the
/// budgets and socket queues.
///
/// The producer sends in a session (SPEC §10) unless --plain: with --reset-every BYTES a chaos proxy
/// between the two resets the connection every so many bytes, and the session resumes each time
/// without losing or repeating a frame (the summaries count resets, resumes and duplicates).
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

    /// Byte budget of the producer's queue and of the consumer's queue, each (e.g. 512KiB, 4MiB).
    #[arg(long, default_value = "512KiB", value_parser = parse_size, value_name = "BYTES")]
    budget: usize,

    /// After a signal, how long the producer may take to write and have handled what it queued
    /// (e.g. 10s); the consumer's drain gets as long again.
    #[arg(long, default_value = "10s", value_parser = parse_interval, value_name = "SECS")]
    shutdown_timeout: Duration,

    /// Interval between stats lines (e.g. 1, 0.5s, 250ms).
    #[arg(long, default_value = "1s", value_parser = parse_interval, value_name = "SECS")]
    stats_interval: Duration,

    /// Send the simple format, without a session.
    #[arg(long)]
    plain: bool,

    /// Put a chaos proxy between producer and consumer that resets the connection after about
    /// this many bytes (±10%), again and again (e.g. 8MiB): a session resumes each time.
    #[arg(long, value_parser = parse_size, value_name = "BYTES")]
    reset_every: Option<usize>,

    /// Session: give up when no connection can be made or resumed for this long.
    #[arg(long, default_value = "60s", value_parser = parse_interval, value_name = "SECS")]
    reconnect_timeout: Duration,

    /// Print both summaries as one JSON object on stdout as well.
    #[arg(long)]
    summary_json: bool,

    #[command(flatten)]
    observe: support::Observe,

    /// UNSAFE, for comparison: every budget and memory limit becomes 1 TiB (an unbounded queue is
    /// a queue whose bound is never reached), so nothing holds the producer back and memory grows
    /// with the consumer's backlog. A watchdog stops the process (exit 4) if RSS passes 1 GiB.
    #[arg(long)]
    unbounded: bool,

    #[command(flatten)]
    tls: DemoTls,
}

/// `--unbounded`: the budgets and memory limit, never reached.
const UNBOUNDED: usize = 1 << 40;
/// The budget each queue is given: `--budget`, or [`UNBOUNDED`] with `--unbounded`.
fn budget_in_effect(args: &Args) -> usize {
    if args.unbounded {
        UNBOUNDED
    } else {
        args.budget
    }
}

/// `--unbounded`: the RSS at which the watchdog stops the run.
const SAFETY_RSS: u64 = 1 << 30;

/// What the producer's side came to, in either mode.
struct Sent {
    error: Option<String>,
    confirmed: bool,
    never_sent: u64,
    forced: bool,
    interrupted: bool,
    session: Option<ProducerSessionCounts>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let bar = support::progress_bar(Some(args.frames));
    support::init_logging(bar.clone(), args.observe.log_format);
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
    // Before anything is built: metrics handles are registered with this recorder.
    let endpoint =
        match support::observe::start_if(args.observe.metrics.as_deref(), true, "demo").await {
            Ok(endpoint) => endpoint,
            Err(code) => return code,
        };
    let slow = SlowDown::none()
        .delay(Duration::from_millis(args.delay_ms))
        .stall(Duration::from_millis(args.stall_ms), args.stall_every);
    let budget = budget_in_effect(&args);
    let mut builder = Consumer::builder().budget(budget);
    if args.unbounded {
        builder = builder.memory_limit(UNBOUNDED);
    }
    let tls = match args.tls.settings() {
        Ok(tls) => tls,
        Err(e) => {
            eprintln!("demo: error: {e}");
            return ExitCode::from(2);
        }
    };
    let builder = builder
        .slow_down(slow)
        .max_connections(args.plain.then_some(1))
        .shutdown_timeout(args.shutdown_timeout);
    let records = Arc::new(AtomicU64::new(0));
    let (serving, tls_client) = match tls {
        None => (
            builder
                .bind("127.0.0.1:0")
                .await
                .map(|c| serve_consumer(c, records.clone())),
            None,
        ),
        Some((server, client)) => (
            builder
                .bind_tls("127.0.0.1:0", server)
                .await
                .map(|c| serve_consumer(c, records.clone())),
            Some(client),
        ),
    };
    let Serving {
        addr: upstream,
        health,
        stats: consumer_stats,
        shutdown,
        server,
    } = match serving {
        Ok(serving) => serving,
        Err(e) => {
            eprintln!("demo: error: {e}");
            return ExitCode::from(2);
        }
    };
    let (addr, tally) = match args.reset_every {
        Some(bytes) => {
            let faults = chaos::Faults {
                reset_every: Some(bytes as u64),
                jitter: 0.1,
                seed: 1,
                ..chaos::Faults::default()
            };
            let (addr, tally) = chaos::spawn(upstream, faults)
                .await
                .expect("a loopback port");
            (addr, Some(tally))
        }
        None => (upstream, None),
    };
    if let Some(endpoint) = &endpoint {
        endpoint.set_health(health);
    }

    tracing::info!(
        "demo: {} frames of {} records to {addr}{}; {}; consumer delay {} ms, stall {} ms every {} \
         frames; budget {} per side{}",
        thousands(args.frames),
        args.records_per_frame,
        args.reset_every.map_or(String::new(), |b| format!(
            " through a chaos proxy resetting every {}",
            mib(b as u64)
        )),
        if args.plain { "plain" } else { "session" },
        args.delay_ms,
        args.stall_ms,
        args.stall_every,
        mib(args.budget as u64),
        if args.unbounded {
            ", NOT ENFORCED (--unbounded)"
        } else {
            ""
        },
    );
    let waited_ms = Arc::new(AtomicU64::new(0));
    let rss_samples = RssSamples::default();
    let source = generator::reference_frames(args.frames, args.records_per_frame);
    let (sent, producer_stats, plot) = if args.plain {
        let settings = Producer::builder().budget(budget);
        let connected = match tls_client {
            None => settings.connect(addr).await.map(|c| {
                let stats = c.stats();
                (c.sender::<Arc<Vec<Record>>>(), stats)
            }),
            Some(tls) => settings.connect_tls(&addr.to_string(), tls).await.map(|c| {
                let stats = c.stats();
                (c.sender::<Arc<Vec<Record>>>(), stats)
            }),
        };
        let (sender, stats) = match connected {
            Ok(connected) => connected,
            Err(e) => {
                eprintln!("demo: error: {e}");
                return ExitCode::from(2);
            }
        };
        let reporter = spawn_reporter(
            &args,
            &stats,
            &consumer_stats,
            &bar,
            &rss_samples,
            &waited_ms,
        );
        let plot = start_plot(&args, &stats, &consumer_stats);
        let sent = send_plain(&args, sender, source, &mut signals, &waited_ms).await;
        reporter.abort();
        (sent, stats, plot)
    } else {
        let settings = Producer::builder().budget(budget);
        let session = match tls_client {
            None => settings.session(addr.to_string()),
            Some(tls) => settings.session_tls(addr.to_string(), tls),
        };
        let session = session.reconnect_timeout(args.reconnect_timeout);
        let stats = session.stats();
        let reporter = spawn_reporter(
            &args,
            &stats,
            &consumer_stats,
            &bar,
            &rss_samples,
            &waited_ms,
        );
        let plot = start_plot(&args, &stats, &consumer_stats);
        let send = |s: framepipe::producer::Session, src| s.send_json(src);
        let timeout = args.shutdown_timeout;
        let end = send_session("demo", session, source, send, &mut signals, timeout).await;
        reporter.abort();
        (sent_from_session(&stats, end), stats, plot)
    };
    let served = finish_consumer(
        server,
        &shutdown,
        &mut signals,
        sent.interrupted || !args.plain,
    )
    .await;
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    // The producer's snapshot (its peak RSS among it) is taken before the plot is drawn.
    let ps = producer_stats.snapshot();
    support::plot::finish_if(plot, "demo", &plot_title(&args), args.budget as u64);
    if let Some(tally) = &tally {
        eprintln!(
            "chaos proxy: {} connections, {} resets injected",
            tally.connections.load(Relaxed),
            tally.resets.load(Relaxed)
        );
    }
    // A session's source is polled by the library: its wait for room is the queue stage's.
    let waited_ms = if args.plain {
        waited_ms.load(Relaxed)
    } else {
        queue_blocked_ms(&ps.flow)
    };
    report(
        &args,
        &ps,
        &served,
        &sent,
        records.load(Relaxed),
        waited_ms,
        &rss_samples,
    )
}

/// `--plot`: samples both sides (and, with `--unbounded`, starts the RSS watchdog).
fn start_plot(
    args: &Args,
    producer: &framepipe::producer::Stats,
    consumer: &framepipe::consumer::Stats,
) -> Option<Recording> {
    let (p, c) = (producer.clone(), consumer.clone());
    let read = move || {
        let (ps, cs) = (p.snapshot(), c.snapshot());
        let sides = vec![("producer ", ps.flow), ("consumer ", cs.flow)];
        Reading {
            bytes: cs.bytes_handled,
            sides,
        }
    };
    let plot = support::plot::start_if(args.observe.plot.as_deref(), read).unwrap_or_else(|e| {
        eprintln!("demo: {e}");
        None
    });
    if args.unbounded {
        let (picture, title) = (plot.as_ref().map(Recording::plot), plot_title(args));
        let budget = args.budget as u64;
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(20)).await;
                let rss = framepipe::flow::probe::rss_bytes().unwrap_or(0);
                if rss > SAFETY_RSS {
                    eprintln!(
                        "demo: --unbounded safety stop: RSS {} passed {}; stopping the run",
                        mib(rss),
                        mib(SAFETY_RSS)
                    );
                    if let Some(Ok(path)) = picture.map(|p| p.draw(&title, budget)) {
                        eprintln!("demo: plot written to {}", path.display());
                    }
                    std::process::exit(4);
                }
            }
        });
    }
    plot
}

fn plot_title(args: &Args) -> String {
    format!(
        "demo{}: {} frames, budget {} per side{}, consumer delay {} ms, stall {} ms every {}",
        if args.plain { " (plain)" } else { "" },
        thousands(args.frames),
        mib(args.budget as u64),
        if args.unbounded {
            " NOT ENFORCED (--unbounded)"
        } else {
            ""
        },
        args.delay_ms,
        args.stall_ms,
        args.stall_every,
    )
}

fn spawn_reporter(
    args: &Args,
    producer: &framepipe::producer::Stats,
    consumer: &framepipe::consumer::Stats,
    bar: &Option<indicatif::ProgressBar>,
    rss_samples: &RssSamples,
    waited_ms: &Arc<AtomicU64>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(report_loop(
        producer.clone(),
        consumer.clone(),
        bar.clone(),
        args.stats_interval,
        rss_samples.clone(),
        waited_ms.clone(),
    ))
}

/// The plain producer: the source through a `Sender` until it ends or a signal comes, then close.
async fn send_plain(
    args: &Args,
    sender: framepipe::producer::Sender<Arc<Vec<Record>>>,
    source: impl futures::Stream<Item = Arc<Vec<Record>>>,
    signals: &mut Signals,
    waited_ms: &AtomicU64,
) -> Sent {
    let interrupted = tokio::select! {
        () = feed(&sender, source, None, waited_ms) => false,
        name = signals.recv() => {
            tracing::info!(
                "demo: {name}: the producer takes no more frames; what it queued is written and \
                 handled within {:?}, then the consumer shuts down (send it again to force)",
                args.shutdown_timeout
            );
            true
        }
    };
    let closed = close("demo", &sender, signals, interrupted, args.shutdown_timeout).await;
    let forced = closed.cut_short();
    Sent {
        error: closed.result.as_ref().err().map(|e| e.to_string()),
        confirmed: closed.result.as_ref().is_ok_and(|r| r.confirmed),
        never_sent: closed.result.as_ref().map_or_else(Error::never_sent, |_| 0),
        forced,
        interrupted: closed.interrupted,
        session: None,
    }
}

/// What a session's end says, for the summaries.
fn sent_from_session(stats: &framepipe::producer::Stats, end: SessionEnd) -> Sent {
    let p = stats.session_progress().unwrap_or_default();
    let times = end
        .result
        .as_ref()
        .and_then(|r| r.as_ref().ok()?.resume_times);
    let error = match &end.result {
        Some(Err(e)) => Some(e.to_string()),
        None => Some(format!(
            "the session was abandoned: {} frames delivered, {} sent and not acknowledged, {} \
             never sent",
            p.delivered, p.unacked, p.never_sent
        )),
        Some(Ok(_)) => None,
    };
    let session = match &end.result {
        Some(Ok(r)) => r.session.clone(),
        Some(Err(Error::Session { session, .. })) => session.clone(),
        _ => String::new(),
    };
    Sent {
        confirmed: matches!(&end.result, Some(Ok(r)) if r.complete),
        error,
        never_sent: p.never_sent,
        forced: end.forced,
        interrupted: end.interrupted,
        session: Some(ProducerSessionCounts::new(
            session,
            stats.items_sent(),
            p,
            times,
        )),
    }
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
            waited_ms.load(Relaxed).max(queue_blocked_ms(&ps.flow)),
        );
    }
}
