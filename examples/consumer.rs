//! Accepts framepipe connections and handles their frames, optionally slowed down on purpose, and
//! reports throughput and memory at every stage.
//!
//! ```sh
//! cargo run --release --example consumer -- --delay-ms 2   # terminal 1
//! cargo run --release --example producer -- --frames 2000  # terminal 2
//! ```

mod support;

use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use framepipe::consumer::{Consumer, Json, Mode, Raw, SlowDown, Stats, Validate};
use framepipe::reference::Record;
use support::{parse_interval, parse_size, stats_line, Summary};

/// Accept framepipe connections and handle their frames, optionally slowed down on purpose.
///
/// Prints a stats line every --stats-interval and a summary when it stops: after --connections
/// connections have ended, or on Ctrl-C. Exit status: 0 every connection ended cleanly; 2 cannot
/// listen; 3 at least one connection ended on an error (each is logged once with its peer address).
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

    /// Exit after this many connections have ended [default: run until Ctrl-C].
    #[arg(long, value_name = "N")]
    connections: Option<u64>,

    /// Byte budget of each connection's queue between reader and handler (e.g. 4MiB).
    #[arg(long, default_value = "4MiB", value_parser = parse_size, value_name = "BYTES")]
    budget: usize,

    /// Largest frame body accepted; a larger frame closes its connection after telling the
    /// producer why.
    #[arg(long, default_value = "16MiB", value_parser = parse_size, value_name = "BYTES")]
    max_frame_length: usize,

    /// Interval between stats lines (e.g. 1, 0.5s, 250ms).
    #[arg(long, default_value = "1s", value_parser = parse_interval, value_name = "SECS")]
    stats_interval: Duration,

    /// Print the summary as one JSON object on stdout as well.
    #[arg(long)]
    summary_json: bool,
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
    let bar = support::progress_bar(None);
    support::init_logging(bar.clone());

    let slow = SlowDown::none()
        .delay(Duration::from_millis(args.delay_ms))
        .jitter(Duration::from_millis(args.jitter_ms))
        .frames_per_sec(args.rate.unwrap_or(0.0))
        .stall(Duration::from_millis(args.stall_ms), args.stall_every);
    let consumer = match Consumer::builder()
        .budget(args.budget)
        .max_frame_length(max_frame_length)
        .slow_down(slow)
        .max_connections(args.connections)
        .bind(&args.listen)
        .await
    {
        Ok(c) => c,
        Err(e) => {
            eprintln!("consumer: error: {e}");
            return ExitCode::from(2);
        }
    };
    tracing::info!(
        "consumer: listening on {} ({:?} mode, budget {}, {:?})",
        consumer
            .local_addr()
            .map_or(args.listen.clone(), |a| a.to_string()),
        args.mode,
        support::mib(args.budget as u64),
        slow
    );
    let stats = consumer.stats();
    let reporter = tokio::spawn(report_loop(stats.clone(), args.stats_interval, bar.clone()));
    let records = Arc::new(AtomicU64::new(0));
    let report = match args.mode {
        ModeArg::Typed => {
            let records = records.clone();
            serve(consumer, Json::<Vec<Record>>::new(), move |batch| {
                records.fetch_add(batch.len() as u64, Relaxed);
            })
            .await
        }
        ModeArg::Raw => serve(consumer, Raw, |_| {}).await,
        ModeArg::Validate => serve(consumer, Validate, |_| {}).await,
    };
    reporter.abort();
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }

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
    let summary = Summary::new(
        "consumer",
        s.frames_handled,
        (args.mode == ModeArg::Typed).then(|| records.load(Relaxed)),
        s.bytes_handled,
        s.busy_secs,
        &s.flow,
        args.budget,
        s.errors,
        error.clone(),
    );
    eprintln!("{}", summary.human());
    if args.summary_json {
        println!(
            "{}",
            serde_json::to_string(&summary).expect("summary serializes")
        );
    }
    match error {
        Some(e) => {
            eprintln!("consumer: error: {e}");
            ExitCode::from(3)
        }
        None => ExitCode::SUCCESS,
    }
}

/// Serves until the configured number of connections have ended, or Ctrl-C.
async fn serve<M: Mode>(
    consumer: Consumer,
    mode: M,
    each: impl Fn(M::Item) + Send + Sync + 'static,
) -> framepipe::consumer::Report {
    let each = Arc::new(each);
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("consumer: Ctrl-C: closing connections");
    };
    consumer
        .serve_until(
            mode,
            move |delivery| {
                each(delivery.item);
                std::future::ready(())
            },
            ctrl_c,
        )
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
