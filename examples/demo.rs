//! framepipe in one process: a producer sends reference frames over loopback to a deliberately slow
//! consumer, and the memory of every stage is shown while it runs and at the end.
//!
//! ```sh
//! cargo run --release --example demo
//! ```

#[path = "chaos/mod.rs"]
mod chaos;
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
    close, feed, mib, parse_interval, parse_size, send_session, stage_list, thousands,
    ConsumerCounts, ConsumerSessionCounts, ProducerCounts, ProducerSessionCounts, SessionEnd,
    Signals, Summary, EXIT_FORCED, EXIT_INTERRUPTED,
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
}

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
        .max_connections(args.plain.then_some(1))
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
    let upstream = consumer.local_addr().expect("bound");
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

    tracing::info!(
        "demo: {} frames of {} records to {addr}{}; {}; consumer delay {} ms, stall {} ms every {} \
         frames; budget {} per side",
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
    );
    let waited_ms = Arc::new(AtomicU64::new(0));
    let rss_samples = RssSamples::default();
    let source = generator::reference_frames(args.frames, args.records_per_frame);
    let (sent, producer_stats) = if args.plain {
        let conn = match Producer::builder().budget(args.budget).connect(addr).await {
            Ok(c) => c,
            Err(e) => {
                eprintln!("demo: error: {e}");
                return ExitCode::from(2);
            }
        };
        let stats = conn.stats();
        let reporter = spawn_reporter(
            &args,
            &stats,
            &consumer_stats,
            &bar,
            &rss_samples,
            &waited_ms,
        );
        let sent = send_plain(&args, conn, source, &mut signals, &waited_ms).await;
        reporter.abort();
        (sent, stats)
    } else {
        let session = Producer::builder()
            .budget(args.budget)
            .session(addr.to_string())
            .reconnect_timeout(args.reconnect_timeout);
        let stats = session.stats();
        let reporter = spawn_reporter(
            &args,
            &stats,
            &consumer_stats,
            &bar,
            &rss_samples,
            &waited_ms,
        );
        let end = send_session("demo", session, source, &mut signals, args.shutdown_timeout).await;
        reporter.abort();
        (sent_from_session(&stats, end), stats)
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
    if let Some(tally) = &tally {
        eprintln!(
            "chaos proxy: {} connections, {} resets injected",
            tally.connections.load(Relaxed),
            tally.resets.load(Relaxed)
        );
    }
    let ps = producer_stats.snapshot();
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
    conn: framepipe::producer::Connection<framepipe::flow::Shared<tokio::net::TcpStream>>,
    source: impl futures::Stream<Item = Arc<Vec<Record>>>,
    signals: &mut Signals,
    waited_ms: &AtomicU64,
) -> Sent {
    let sender = conn.sender::<Arc<Vec<Record>>>();
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

/// Prints both summaries and the backpressure check, and picks the exit status.
fn report(
    args: &Args,
    ps: &framepipe::producer::Snapshot,
    served: &Report,
    sent: &Sent,
    records: u64,
    waited_ms: u64,
    rss_samples: &RssSamples,
) -> ExitCode {
    let cs = &served.snapshot;
    let retained = if sent.session.is_some() {
        args.budget
    } else {
        0
    };
    let producer = Summary::new(
        "producer",
        ps.frames_written,
        Some(ps.frames_written * args.records_per_frame as u64),
        ps.bytes_written,
        ps.secs,
        &ps.flow,
        args.budget + retained,
        u64::from(sent.error.is_some()),
        sent.error.clone(),
    )
    .interrupted(sent.interrupted)
    .producer(ProducerCounts {
        items_sent: ps.items_sent,
        frames_encoded: ps.frames_encoded,
        frames_written: ps.frames_written,
        never_sent: if sent.session.is_some() {
            sent.never_sent
        } else {
            sent.never_sent.max(ps.frames_unwritten())
        },
        confirmed: sent.confirmed,
        close_forced: sent.forced,
        waited_for_room_ms: waited_ms,
    });
    let producer = match &sent.session {
        Some(counts) => producer.producer_session(counts.clone()),
        None => producer,
    };
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
    .interrupted(sent.interrupted)
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
    })
    .consumer_session(
        ConsumerSessionCounts {
            sessions: cs.sessions,
            resumes: cs.session_resumes,
            duplicates_dropped: cs.duplicates_dropped,
        },
        None,
    );
    eprintln!("{}\n{}", producer.human(), consumer.human());
    let within_bound = check_bound(args, ps, cs, waited_ms, retained);
    print_rss_drift(&rss_samples.lock().unwrap());
    if args.summary_json {
        let both = serde_json::json!({ "producer": producer, "consumer": consumer });
        println!("{both}");
    }
    let forced = sent.forced
        || consumer
            .consumer
            .as_ref()
            .is_some_and(|c| c.shutdown_forced);
    if !within_bound {
        eprintln!("demo: error: in-flight bytes exceeded the bound");
        return ExitCode::from(4);
    }
    if forced {
        if let Some(e) = &sent.error {
            eprintln!("demo: error: {e}");
        }
        return ExitCode::from(EXIT_FORCED);
    }
    match (&sent.error, sent.interrupted) {
        (Some(e), _) => {
            eprintln!("demo: error: {e}");
            ExitCode::from(3)
        }
        (None, true) => ExitCode::from(EXIT_INTERRUPTED),
        (None, false) => ExitCode::SUCCESS,
    }
}

/// The claim of the demo, checked on the figures just measured: the peak bytes in flight on both
/// sides stay within the budgets, the socket queues and one frame at each hand-off.
fn check_bound(
    args: &Args,
    ps: &framepipe::producer::Snapshot,
    cs: &framepipe::consumer::Snapshot,
    waited_ms: u64,
    retained: usize,
) -> bool {
    let socket_peaks =
        ps.flow.peak_send_queue_bytes.unwrap_or(0) + cs.flow.peak_recv_queue_bytes.unwrap_or(0);
    let frame = ps.bytes_encoded / ps.frames_encoded.max(1);
    // SPEC §5.4, with the default write batch and read block.
    let batch_and_block = (framepipe::producer::DEFAULT_WRITE_BATCH_BYTES
        + framepipe::consumer::DEFAULT_READ_CHUNK) as u64;
    // A session's frames stay retained until acknowledged: as much again as its queue (SPEC §10.2).
    let bound =
        (2 * args.budget + retained) as u64 + socket_peaks as u64 + 4 * frame + batch_and_block;
    let in_flight = (ps.flow.peak_in_flight_bytes + cs.flow.peak_in_flight_bytes) as u64;
    eprintln!(
        "backpressure: {} of data went through {} in flight at most (per-side peaks added); bound: \
         budgets 2 × {}{} + socket queue peaks {} + one frame in hand at 4 hand-offs + write batch \
         and read block = {}; producer waited {} ms for room",
        support::mb(ps.bytes_written),
        mib(in_flight),
        mib(args.budget as u64),
        if retained > 0 {
            format!(" + retained {}", mib(retained as u64))
        } else {
            String::new()
        },
        mib(socket_peaks as u64),
        mib(bound),
        waited_ms,
    );
    in_flight <= bound
}

/// Time the source waited for room in the queue: the `queue` stage's blocked time.
fn queue_blocked_ms(flow: &framepipe::flow::FlowSnapshot) -> u64 {
    flow.stages
        .iter()
        .find(|s| s.name == "queue")
        .map_or(0, |s| s.blocked_ms)
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
