//! Sends reference frames to a framepipe consumer and reports throughput and memory at every stage.
//!
//! ```sh
//! cargo run --release --example consumer            # terminal 1
//! cargo run --release --example producer            # terminal 2
//! ```

mod support;

use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use framepipe::producer::{generator, Error, Producer, Stats};
use framepipe::reference::Record;
use support::{
    close, feed, parse_interval, parse_size, parse_timeout, stats_line, Closed, ProducerCounts,
    Signals, Summary, Timeout, EXIT_FORCED, EXIT_INTERRUPTED,
};

/// Send frames of reference records (fixtures/sample-record.json) to a framepipe consumer.
///
/// Each frame is a JSON array of --records-per-frame copies of the record (50 copies: 60,901 bytes,
/// byte-identical to the JavaScript producer). Prints a stats line every --stats-interval and a
/// summary at the end.
///
/// SIGINT (Ctrl-C) or SIGTERM stops taking frames from the source; the frames already queued are
/// written and the consumer's confirmation awaited, within --shutdown-timeout. A second signal
/// forces the close: frames not yet written are never sent (the summary counts them).
///
/// Exit status: 0 sent and confirmed; 2 cannot connect; 3 a frame was rejected by the consumer
/// (which says which frame, and why: `shutting_down` if it was stopped); 4 the consumer closed the
/// connection early; 5 any other failure (among them a consumer that stopped reading for
/// --stall-timeout, or a peer that is not a framepipe consumer); 130 stopped by a signal, every
/// frame taken was written and confirmed; 131 stopped by a signal, and --shutdown-timeout ran out or
/// a second signal forced the close before that.
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

    /// After a signal, how long writing the queued frames and waiting for the consumer's
    /// confirmation may take before the connection is reset (e.g. 10s).
    #[arg(long, default_value = "10s", value_parser = parse_interval, value_name = "SECS")]
    shutdown_timeout: Duration,

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
    // Before anything else: until the handlers are installed, a signal kills the process.
    let mut signals = match Signals::new() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("producer: error: cannot install signal handlers: {e}");
            return ExitCode::from(5);
        }
    };
    let bar = support::progress_bar(Some(args.frames));
    support::init_logging(bar.clone());

    let settings = Producer::builder()
        .budget(args.budget)
        .stall_timeout(args.stall_timeout.0);
    let conn = tokio::select! {
        conn = settings.connect(&args.connect) => match conn {
            Ok(conn) => conn,
            Err(e) => return fail(&e),
        },
        name = signals.recv() => {
            eprintln!("producer: {name} while connecting: nothing was sent");
            return ExitCode::from(EXIT_INTERRUPTED);
        }
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

    // The connection's driver runs in a task; this task feeds it through the handle.
    let sender = conn.sender::<Arc<Vec<Record>>>();
    let source = generator::reference_frames(args.frames, args.records_per_frame);
    let waited_ms = AtomicU64::new(0);
    let interrupted = tokio::select! {
        () = feed(&sender, source, pace(&args), &waited_ms) => false,
        name = signals.recv() => {
            tracing::info!(
                "producer: {name}: no more frames taken from the source; writing the {} queued \
                 and waiting for the consumer to confirm, for up to {:?} (send it again to force)",
                stats.frames_encoded() - stats.frames_written(),
                args.shutdown_timeout
            );
            true
        }
    };
    let closed = close(
        "producer",
        &sender,
        &mut signals,
        interrupted,
        args.shutdown_timeout,
    )
    .await;
    drop(sender);
    reporter.abort();
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    finish(&args, &stats, closed, waited_ms.load(Relaxed))
}

/// One tick per frame at `--rate`, if set.
fn pace(args: &Args) -> Option<tokio::time::Interval> {
    args.rate.filter(|r| *r > 0.0).map(|rate| {
        let mut t = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
        t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        t
    })
}

/// Prints the summary and picks the exit status.
fn finish(args: &Args, stats: &Stats, closed: Closed, waited_ms: u64) -> ExitCode {
    let cut_short = closed.cut_short();
    let Closed {
        result,
        interrupted,
        ..
    } = closed;
    let snap = match &result {
        Ok(report) => report.snapshot.clone(),
        Err(_) => stats.snapshot(),
    };
    let never_sent = match &result {
        Ok(_) => 0,
        Err(e) => e.never_sent().max(snap.frames_unwritten()),
    };
    let confirmed = result.as_ref().is_ok_and(|r| r.confirmed);
    let summary = Summary::new(
        "producer",
        snap.frames_written,
        Some(snap.frames_written * args.records_per_frame as u64),
        snap.bytes_written,
        snap.secs,
        &snap.flow,
        args.budget,
        u64::from(result.is_err()),
        result.as_ref().err().map(|e| e.to_string()),
    )
    .interrupted(interrupted)
    .producer(ProducerCounts {
        items_sent: snap.items_sent,
        frames_encoded: snap.frames_encoded,
        frames_written: snap.frames_written,
        never_sent,
        confirmed,
        close_forced: cut_short,
        waited_for_room_ms: waited_ms,
    });
    eprintln!("{}", summary.human());
    if args.summary_json {
        println!(
            "{}",
            serde_json::to_string(&summary).expect("summary serializes")
        );
    }
    match result {
        Ok(_) if confirmed && interrupted => ExitCode::from(EXIT_INTERRUPTED),
        Ok(_) if confirmed => ExitCode::SUCCESS,
        Ok(_) if interrupted => {
            eprintln!(
                "producer: every frame taken was written, but the consumer did not confirm within \
                 --shutdown-timeout"
            );
            ExitCode::from(EXIT_FORCED)
        }
        Ok(_) => {
            eprintln!(
                "producer: every frame was written, but the consumer did not confirm by closing"
            );
            ExitCode::from(5)
        }
        Err(e @ Error::Deadline { .. }) => {
            eprintln!("producer: error: {e}");
            ExitCode::from(EXIT_FORCED)
        }
        Err(e) => fail(&e),
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
