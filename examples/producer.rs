//! Sends reference frames to a framepipe consumer and reports throughput and memory at every stage.
//!
//! ```sh
//! cargo run --release --example consumer            # terminal 1
//! cargo run --release --example producer            # terminal 2
//! ```

mod support;

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use framepipe::producer::{generator, Error, Producer, Stats};
use futures::StreamExt;
use support::{parse_interval, parse_size, stats_line, Summary};

/// Send frames of reference records (fixtures/sample-record.json) to a framepipe consumer.
///
/// Each frame is a JSON array of --records-per-frame copies of the record (50 copies: 60,901 bytes,
/// byte-identical to the JavaScript producer). Prints a stats line every --stats-interval and a
/// summary at the end. Exit status: 0 sent and confirmed; 2 cannot connect; 3 a frame was rejected by
/// the consumer; 4 the consumer closed the connection early; 5 any other failure (among them a
/// consumer that stopped reading for --stall-timeout, or a peer that is not a framepipe consumer).
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Address of the consumer.
    #[arg(long, default_value = "127.0.0.1:7000")]
    connect: String,

    /// Frames to send.
    #[arg(long, default_value_t = 50_000)]
    frames: u64,

    /// Copies of the reference record in each frame.
    #[arg(long, default_value_t = 50)]
    records_per_frame: usize,

    /// Send at most this many frames per second [default: as fast as the consumer takes them].
    #[arg(long, value_name = "FRAMES_PER_S")]
    rate: Option<f64>,

    /// Byte budget of the queue between encoder and writer (e.g. 4194304, 4MiB, 512KiB).
    #[arg(long, default_value = "4MiB", value_parser = parse_size, value_name = "BYTES")]
    budget: usize,

    /// Give up when the consumer accepts no bytes for this long while frames wait (e.g. 60s, 500ms;
    /// `off` waits for ever). Pauses of the source do not count.
    #[arg(long, default_value = "60s", value_parser = parse_timeout, value_name = "SECS")]
    stall_timeout: Timeout,

    /// Interval between stats lines (e.g. 1, 0.5s, 250ms).
    #[arg(long, default_value = "1s", value_parser = parse_interval, value_name = "SECS")]
    stats_interval: Duration,

    /// Print the summary as one JSON object on stdout as well.
    #[arg(long)]
    summary_json: bool,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args = Args::parse();
    let bar = support::progress_bar(Some(args.frames));
    support::init_logging(bar.clone());

    let conn = match Producer::builder()
        .budget(args.budget)
        .stall_timeout(args.stall_timeout.0)
        .connect(&args.connect)
        .await
    {
        Ok(conn) => conn,
        Err(e) => return fail(&e),
    };
    let stats = conn.stats();
    tracing::info!(
        "producer: connected to {}; sending {} frames of {} records; budget {}; socket buffers {:?}",
        args.connect,
        support::thousands(args.frames),
        args.records_per_frame,
        support::mib(args.budget as u64),
        conn.buffer_sizes().ok()
    );
    let reporter = tokio::spawn(report_loop(stats.clone(), args.stats_interval, bar.clone()));

    let source = generator::reference_frames(args.frames, args.records_per_frame);
    let mut ticker = args.rate.filter(|r| *r > 0.0).map(|rate| {
        let mut t = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
        t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        t
    });
    let paced = futures::stream::unfold(
        (source, ticker.take()),
        |(mut src, mut ticker)| async move {
            if let Some(t) = ticker.as_mut() {
                t.tick().await;
            }
            let item = src.next().await?;
            Some((item, (src, ticker)))
        },
    );
    let result = conn.send_json(paced).await;
    reporter.abort();
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }

    let snap = stats.snapshot();
    let error = result.as_ref().err().map(|e| e.to_string());
    let summary = Summary::new(
        "producer",
        snap.frames_written,
        Some(snap.frames_written * args.records_per_frame as u64),
        snap.bytes_written,
        snap.secs,
        &snap.flow,
        args.budget,
        u64::from(result.is_err()),
        error,
    );
    eprintln!("{}", summary.human());
    if args.summary_json {
        println!(
            "{}",
            serde_json::to_string(&summary).expect("summary serializes")
        );
    }
    match result {
        Ok(report) if report.confirmed => ExitCode::SUCCESS,
        Ok(_) => {
            eprintln!(
                "producer: every frame was written, but the consumer did not confirm by closing"
            );
            ExitCode::from(5)
        }
        Err(e) => fail(&e),
    }
}

/// A duration, or `None` for `off` (clap treats a bare `Option` as "flag may be absent").
#[derive(Debug, Clone, Copy)]
struct Timeout(Option<Duration>);

/// `off` (or `0`), else a duration as `parse_interval` reads it.
fn parse_timeout(s: &str) -> Result<Timeout, String> {
    match s.trim() {
        "off" | "0" => Ok(Timeout(None)),
        t => parse_interval(t).map(|d| Timeout(Some(d))),
    }
}

fn fail(e: &Error) -> ExitCode {
    eprintln!("producer: error: {e}");
    ExitCode::from(match e {
        Error::Connect { .. } => 2,
        Error::Rejected { .. } => 3,
        Error::PeerClosed { .. } => 4,
        _ => 5,
    })
}

async fn report_loop(stats: Stats, every: Duration, bar: Option<indicatif::ProgressBar>) {
    let mut ticker = tokio::time::interval(Duration::from_millis(100));
    let mut last = stats.snapshot();
    let mut next_line = every;
    loop {
        ticker.tick().await;
        if let Some(bar) = &bar {
            bar.set_position(stats.frames_written());
        }
        if stats.elapsed() < next_line {
            continue;
        }
        next_line += every;
        let now = stats.snapshot();
        tracing::info!(
            "{}",
            stats_line(
                "producer",
                now.frames_written,
                now.bytes_written,
                now.frames_written - last.frames_written,
                now.bytes_written - last.bytes_written,
                now.secs - last.secs,
                &now.flow,
            )
        );
        last = now;
    }
}
