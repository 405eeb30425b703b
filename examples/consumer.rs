//! Accepts framepipe connections and handles their frames, optionally slowed down on purpose, and
//! reports throughput and memory at every stage.
//!
//! ```sh
//! cargo run --release --example consumer -- --delay-ms 2   # terminal 1
//! cargo run --release --example producer -- --frames 2000  # terminal 2
//! ```

mod support;

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::{Parser, ValueEnum};
use framepipe::consumer::{
    Consumer, Delivery, Json, Listener, Mode, OnHandlerError, Raw, Report, Shutdown, SlowDown,
    Stats, Validate,
};
use framepipe::reference::Record;
use support::observe;
use support::stamp::{stamp_of, Stamped, Verifier, VerifyCounts};
use support::{
    parse_interval, parse_size, parse_timeout, stats_line, ConsumerCounts, ConsumerSessionCounts,
    Signals, Summary, Timeout, EXIT_FORCED, EXIT_INTERRUPTED,
};

/// Accept framepipe connections and handle their frames, optionally slowed down on purpose.
///
/// Prints a stats line every --stats-interval and a summary when it stops: after --connections
/// connections have ended, or on SIGINT (Ctrl-C) or SIGTERM. The first signal drains: no new
/// connections, every frame already read is handled, each producer is told (a `shutting_down`
/// notice naming the first frame not read); a second signal, or --shutdown-timeout, forces it.
///
/// Exit status: 0 every connection ended cleanly; 2 cannot listen (or invalid settings); 3 at least
/// one connection ended on an error (each is logged once with its peer address), or --verify found
/// a stamp missing, repeated or out of order; 130 stopped by a
/// signal after a clean drain (nothing read was left unhandled); 131 stopped by a signal and the
/// drain was forced (second signal or --shutdown-timeout): frames read were left unhandled. 131
/// wins over 3, and 3 over 130.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:7000")]
    listen: String,

    /// Sleep this many milliseconds before handling each frame.
    #[arg(long, default_value_t = 0, value_name = "N")]
    delay_ms: u64,

    /// Handle at most this many frames per second, per connection [default: unlimited].
    #[arg(long, value_name = "FRAMES_PER_S")]
    rate: Option<f64>,

    /// Add a random sleep of 0..=N milliseconds before each frame.
    #[arg(long, default_value_t = 0, value_name = "N")]
    jitter_ms: u64,

    /// Stall for S milliseconds every --stall-every frames.
    #[arg(long, default_value_t = 0, value_name = "S")]
    stall_ms: u64,

    /// Stall before every K-th frame (with --stall-ms).
    #[arg(long, default_value_t = 0, value_name = "K")]
    stall_every: u64,

    /// How frames are decoded: typed (parsed into reference records), raw (bytes, unchecked) or
    /// validate (checked to be JSON, not built).
    #[arg(long, value_enum, default_value_t = ModeArg::Typed)]
    mode: ModeArg,

    /// Threads that parse frame bodies, shared by all connections; each connection's frames are
    /// still handed to the handler one at a time, in wire order (1: parsed on the handler's
    /// thread; worth 2 or more when typed parsing is the bottleneck and a core is free).
    #[arg(long, default_value_t = 1, value_name = "K",
          value_parser = clap::value_parser!(u16).range(1..=framepipe::consumer::MAX_DECODE_WORKERS as i64))]
    decode_workers: u16,

    /// Exit after this many connections have ended [default: run until SIGINT or SIGTERM].
    #[arg(long, value_name = "N")]
    connections: Option<u64>,

    /// Byte budget of each connection's queue between reader and handler (e.g. 512KiB, 4MiB).
    #[arg(long, default_value = "512KiB", value_parser = parse_size, value_name = "BYTES")]
    budget: usize,

    /// Largest frame body accepted; a larger frame closes its connection after telling the
    /// producer why.
    #[arg(long, default_value = "16MiB", value_parser = parse_size, value_name = "BYTES")]
    max_frame_length: usize,

    /// Cap on the bytes buffered across all connections (read, queued or being handled); at it,
    /// readers wait instead of allocating. At least --max-frame-length + 4.
    #[arg(long, default_value = "128MiB", value_parser = parse_size, value_name = "BYTES")]
    memory_limit: usize,

    /// Close a connection that sends nothing for this long between frames (e.g. 120s; `off`:
    /// never). Time spent not reading because the queue is full does not count.
    #[arg(long, default_value = "120s", value_parser = parse_timeout, value_name = "SECS")]
    idle_timeout: Timeout,

    /// Close a connection whose frame is still incomplete this long after its first byte (e.g.
    /// 30s; `off`: no limit).
    #[arg(long, default_value = "30s", value_parser = parse_timeout, value_name = "SECS")]
    frame_timeout: Timeout,

    /// Most connections served at once; more are refused with a `connection_limit` notice.
    #[arg(long, default_value_t = 256, value_name = "N")]
    max_open_connections: usize,

    /// What a handler error does: close (the connection is closed and its producer told which
    /// frame failed) or continue (logged and counted; the producer is not told).
    #[arg(long, value_enum, default_value_t = OnErrorArg::Close)]
    on_handler_error: OnErrorArg,

    /// Make the handler fail on every K-th frame of each connection (0: never), to try
    /// --on-handler-error.
    #[arg(long, default_value_t = 0, value_name = "K")]
    fail_every: u64,

    /// How long the drain after the first signal may take before it is forced (e.g. 30s).
    #[arg(long, default_value = "30s", value_parser = parse_interval, value_name = "SECS")]
    shutdown_timeout: Duration,

    /// Interval between stats lines (e.g. 1, 0.5s, 250ms).
    #[arg(long, default_value = "1s", value_parser = parse_interval, value_name = "SECS")]
    stats_interval: Duration,

    /// Check the stamps of `producer --stamp` frames (`{"stamp":N,"records":[...]}`, from one
    /// producer): the summary counts stamps missing, duplicated and out of order, independently of
    /// the session layer's own counters. Works in every --mode.
    #[arg(long)]
    verify: bool,

    /// Print the summary as one JSON object on stdout as well.
    #[arg(long)]
    summary_json: bool,

    #[command(flatten)]
    observe: support::Observe,

    #[command(flatten)]
    tls: support::tls::ServerTls,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum OnErrorArg {
    Close,
    Continue,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ModeArg {
    Typed,
    Raw,
    Validate,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args = Args::parse();
    let Ok(max_frame_length) = u32::try_from(args.max_frame_length) else {
        eprintln!("consumer: error: --max-frame-length must be below 4 GiB");
        return ExitCode::from(2);
    };
    // Before anything else: until the handlers are installed, a signal kills the process.
    let signals = match Signals::new() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("consumer: error: cannot install signal handlers: {e}");
            return ExitCode::from(2);
        }
    };
    let bar = support::progress_bar(None);
    support::init_logging(bar.clone(), args.observe.log_format);
    // Before the consumer is built: its metrics handles are registered with this recorder.
    let endpoint = match observe::start_if(args.observe.metrics.as_deref(), true, "consumer").await
    {
        Ok(endpoint) => endpoint,
        Err(code) => return code,
    };

    let slow = SlowDown::none()
        .delay(Duration::from_millis(args.delay_ms))
        .jitter(Duration::from_millis(args.jitter_ms))
        .frames_per_sec(args.rate.unwrap_or(0.0))
        .stall(Duration::from_millis(args.stall_ms), args.stall_every);
    let tls = match args.tls.server() {
        Ok(tls) => tls,
        Err(e) => {
            eprintln!("consumer: error: {e}");
            return ExitCode::from(2);
        }
    };
    let settings = Consumer::builder()
        .budget(args.budget)
        .max_frame_length(max_frame_length)
        .memory_limit(args.memory_limit)
        .idle_timeout(args.idle_timeout.0)
        .frame_timeout(args.frame_timeout.0)
        .max_open_connections(args.max_open_connections)
        .on_handler_error(match args.on_handler_error {
            OnErrorArg::Close => OnHandlerError::Close,
            OnErrorArg::Continue => OnHandlerError::Continue,
        })
        .shutdown_timeout(args.shutdown_timeout)
        .slow_down(slow)
        .max_connections(args.connections)
        .decode_workers(usize::from(args.decode_workers));
    match tls {
        None => match settings.bind(&args.listen).await {
            Ok(c) => run(c, args, signals, bar, endpoint, slow).await,
            Err(e) => cannot_listen(&e),
        },
        Some(tls) => {
            let with = match args.tls.tls_client_ca {
                Some(_) => "mutual TLS",
                None => "TLS",
            };
            tracing::info!("consumer: serving {with}");
            match settings.bind_tls(&args.listen, tls).await {
                Ok(c) => run(c, args, signals, bar, endpoint, slow).await,
                Err(e) => cannot_listen(&e),
            }
        }
    }
}

fn cannot_listen(e: &framepipe::consumer::Error) -> ExitCode {
    eprintln!("consumer: error: {e}");
    ExitCode::from(2)
}

/// Serves with `consumer` until it stops, and prints the summary.
async fn run<L: Listener>(
    consumer: Consumer<L>,
    args: Args,
    signals: Signals,
    bar: Option<indicatif::ProgressBar>,
    endpoint: Option<observe::Endpoint>,
    slow: SlowDown,
) -> ExitCode {
    tracing::info!(
        "consumer: listening on {} ({:?} mode, {} decode worker(s), budget {}, memory limit {}, {:?})",
        consumer
            .listen_addr()
            .map_or(args.listen.clone(), |a| a.to_string()),
        args.mode,
        args.decode_workers,
        support::mib(args.budget as u64),
        support::mib(args.memory_limit as u64),
        slow
    );
    if let Some(endpoint) = &endpoint {
        endpoint.set_health(consumer.health());
    }
    let stats = consumer.stats();
    let interrupted = Arc::new(AtomicBool::new(false));
    let watcher = tokio::spawn(on_signals(
        signals,
        consumer.shutdown_handle(),
        interrupted.clone(),
    ));
    let reporter = tokio::spawn(report_loop(stats.clone(), args.stats_interval, bar.clone()));
    let read = {
        let stats = stats.clone();
        move || {
            let s = stats.snapshot();
            support::plot::one_side(s.bytes_handled, s.flow)
        }
    };
    let plot = match support::plot::start_if(args.observe.plot.as_deref(), read) {
        Ok(plot) => plot,
        Err(e) => {
            eprintln!("consumer: error: {e}");
            return ExitCode::from(2);
        }
    };
    let records = Arc::new(AtomicU64::new(0));
    let verifier = Arc::new(Mutex::new(Verifier::default()));
    let fail_every = args.fail_every;
    let seen = verifier.clone();
    let see = move |stamp| seen.lock().unwrap_or_else(|e| e.into_inner()).see(stamp);
    let report = match (args.mode, args.verify) {
        (ModeArg::Typed, false) => {
            let records = records.clone();
            serve(consumer, Json::<Vec<Record>>::new(), fail_every, move |b| {
                records.fetch_add(b.len() as u64, Relaxed);
            })
            .await
        }
        (ModeArg::Typed, true) => {
            let records = records.clone();
            serve(consumer, Json::<Stamped>::new(), fail_every, move |b| {
                records.fetch_add(b.records.len() as u64, Relaxed);
                see(Some(b.stamp));
            })
            .await
        }
        (ModeArg::Raw, verify) => {
            serve(consumer, Raw, fail_every, move |b| {
                if verify {
                    see(stamp_of(&b));
                }
            })
            .await
        }
        (ModeArg::Validate, verify) => {
            serve(consumer, Validate, fail_every, move |b| {
                if verify {
                    see(stamp_of(&b));
                }
            })
            .await
        }
    };
    let verified = args
        .verify
        .then(|| verifier.lock().unwrap_or_else(|e| e.into_inner()).counts());
    reporter.abort();
    watcher.abort();
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    let title = format!(
        "consumer, {:?} mode, budget {}, delay {} ms",
        args.mode,
        support::mib(args.budget as u64),
        args.delay_ms
    );
    support::plot::finish_if(plot, "consumer", &title, args.budget as u64);
    let records = (args.mode == ModeArg::Typed).then(|| records.load(Relaxed));
    finish(&args, &report, records, verified, interrupted.load(Relaxed))
}

/// Prints the summary and picks the exit status.
fn finish(
    args: &Args,
    report: &Report,
    records: Option<u64>,
    verified: Option<VerifyCounts>,
    interrupted: bool,
) -> ExitCode {
    let s = &report.snapshot;
    let failed: Vec<_> = report
        .connections
        .iter()
        .filter(|c| c.error.is_some())
        .collect();
    let error = failed.first().map(|c| {
        format!(
            "{} of {} connections ended on an error; first: {}",
            failed.len(),
            report.connections.len(),
            c.error.as_deref().unwrap_or_default()
        )
    });
    let forced = report.shutdown.is_some_and(|s| s.forced);
    let summary = Summary::new(
        "consumer",
        s.frames_handled,
        records,
        s.bytes_handled,
        s.busy_secs,
        &s.flow,
        args.budget,
        s.errors,
        error.clone(),
    )
    .interrupted(interrupted)
    .consumer(ConsumerCounts {
        connections: s.connections_accepted,
        connections_refused: s.connections_refused,
        frames_read: s.frames_read,
        frames_delivered: s.frames_delivered,
        frames_handled: s.frames_handled,
        frames_unhandled: s.frames_unhandled,
        handler_errors: s.handler_errors,
        shutdown_forced: forced,
        shutdown_secs: report.shutdown.map(|s| s.secs),
    })
    .consumer_session(
        ConsumerSessionCounts {
            sessions: s.sessions,
            resumes: s.session_resumes,
            sessions_refused: s.sessions_refused,
            duplicates_dropped: s.duplicates_dropped,
        },
        verified,
    );
    eprintln!("{}", summary.human());
    if args.summary_json {
        println!(
            "{}",
            serde_json::to_string(&summary).expect("summary serializes")
        );
    }
    if let Some(e) = &error {
        eprintln!("consumer: error: {e}");
    }
    let bad_stamps = verified.is_some_and(|v| {
        v.stamps_missing + v.stamps_duplicated + v.stamps_out_of_order + v.frames_unstamped > 0
    });
    if bad_stamps {
        eprintln!("consumer: error: --verify: the stamps are not every number once, in order");
    }
    if forced {
        eprintln!(
            "consumer: the shutdown was forced: {} frames read were not handled",
            s.frames_unhandled
        );
        ExitCode::from(EXIT_FORCED)
    } else if error.is_some() || bad_stamps {
        ExitCode::from(3)
    } else if interrupted {
        ExitCode::from(EXIT_INTERRUPTED)
    } else {
        ExitCode::SUCCESS
    }
}

/// The first SIGINT/SIGTERM drains, the second forces (the library's `Shutdown` does both).
async fn on_signals(mut signals: Signals, shutdown: Shutdown, interrupted: Arc<AtomicBool>) {
    let name = signals.recv().await;
    interrupted.store(true, Relaxed);
    tracing::info!(
        "consumer: {name}: draining: no new connections, handling every frame already read \
         (send it again to force)"
    );
    shutdown.shutdown();
    let name = signals.recv().await;
    tracing::warn!("consumer: {name} again: forcing the shutdown");
    shutdown.force();
}

/// Serves until the configured number of connections have ended, or the shutdown completes.
/// With `fail_every` K > 0 the handler fails on every K-th frame of a connection.
async fn serve<L: Listener, M: Mode>(
    consumer: Consumer<L>,
    mode: M,
    fail_every: u64,
    each: impl Fn(M::Item) + Send + Sync + 'static,
) -> Report {
    let each = Arc::new(each);
    consumer
        .serve(mode, move |d: Delivery<M::Item>| {
            let failed = fail_every > 0 && (d.frame + 1) % fail_every == 0;
            if !failed {
                each(d.item);
            }
            std::future::ready(if failed {
                Err(format!(
                    "--fail-every {fail_every}: frame {} fails",
                    d.frame
                ))
            } else {
                Ok(())
            })
        })
        .await
}

async fn report_loop(stats: Stats, every: Duration, bar: Option<indicatif::ProgressBar>) {
    let mut ticker = tokio::time::interval(Duration::from_millis(100));
    let start = tokio::time::Instant::now();
    let mut last = stats.snapshot();
    let mut next_line = every;
    loop {
        ticker.tick().await;
        if let Some(bar) = &bar {
            bar.set_position(stats.frames_handled());
        }
        if start.elapsed() < next_line {
            continue;
        }
        next_line += every;
        let now = stats.snapshot();
        if now.connections_open == 0 && now.frames_handled == last.frames_handled {
            last = now;
            continue; // idle: nothing to say
        }
        tracing::info!(
            "{}",
            stats_line(
                "consumer",
                now.frames_handled,
                now.bytes_handled,
                now.frames_handled - last.frames_handled,
                now.bytes_handled - last.bytes_handled,
                now.secs - last.secs,
                &now.flow,
            )
        );
        last = now;
    }
}
