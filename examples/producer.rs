//! Sends reference frames to a framepipe consumer and reports throughput and memory at every stage.
//!
//! ```sh
//! cargo run --release --example consumer            # terminal 1
//! cargo run --release --example producer            # terminal 2
//! ```

mod support;

use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use clap::Parser;
use framepipe::codec::session::Pacing;
use framepipe::producer::{generator, Error, Producer, Stats};
use framepipe::proto::Error as ProtoError;
use futures::StreamExt;
use support::stamp::Body;
use support::{
    close, feed, parse_interval, parse_size, parse_timeout, send_session, stats_line, Closed,
    ProducerCounts, ProducerSessionCounts, SessionEnd, Signals, Summary, Timeout, EXIT_FORCED,
    EXIT_INTERRUPTED,
};

/// Send frames of reference records (fixtures/sample-record.json) to a framepipe consumer.
///
/// Each frame is a JSON array of --records-per-frame copies of the record (50 copies: 60,901 bytes,
/// byte-identical to the JavaScript producer). Prints a stats line every --stats-interval and a
/// summary at the end.
///
/// By default the frames go in a session (SPEC §10): numbered, kept until the consumer acknowledges
/// them, and sent again on a new connection if one fails (with backoff, for up to
/// --reconnect-timeout); the consumer drops what it already has, so each frame is handled once.
/// --plain sends the simple format (`u32 BE length + JSON`), for plain readers.
///
/// SIGINT (Ctrl-C) or SIGTERM stops taking frames from the source; the frames already taken are
/// written and their acknowledgement (plain: the consumer's confirmation) awaited, within
/// --shutdown-timeout. A second signal forces the end: the summary counts what was delivered, what
/// was sent and not acknowledged, and what was never sent.
///
/// Exit status: 0 sent and confirmed (every frame acknowledged); 2 cannot connect; 3 a frame or the
/// session was rejected by the consumer (which says which frame, and why); 4 the consumer closed
/// the connection early (plain), or the session gave up reconnecting after --reconnect-timeout;
/// 5 any other failure (among them a consumer that stopped reading for --stall-timeout, or a peer
/// that is not a framepipe consumer); 130 stopped by a signal, every frame taken was written and
/// confirmed; 131 stopped by a signal, and --shutdown-timeout ran out or a second signal forced the
/// end before that.
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

    /// Plain mode: give up when the consumer accepts no bytes for this long while frames wait (e.g.
    /// 60s, 500ms; `off` waits for ever). Pauses of the source do not count. A session waits for as
    /// long as the consumer shows it is alive (its acks and heartbeats).
    #[arg(long, default_value = "60s", value_parser = parse_timeout, value_name = "SECS")]
    stall_timeout: Timeout,

    /// After a signal, how long writing the queued frames and waiting for the consumer's
    /// confirmation may take before the connection is reset (e.g. 10s).
    #[arg(long, default_value = "10s", value_parser = parse_interval, value_name = "SECS")]
    shutdown_timeout: Duration,

    /// Interval between stats lines (e.g. 1, 0.5s, 250ms).
    #[arg(long, default_value = "1s", value_parser = parse_interval, value_name = "SECS")]
    stats_interval: Duration,

    /// Send the simple format, without a session: for plain readers (a Node service, Twisted's
    /// Int32StringReceiver, npm frame-stream). A failed connection then loses what was in flight.
    #[arg(long)]
    plain: bool,

    /// Session: give up when no connection can be made or resumed for this long (e.g. 60s).
    #[arg(long, default_value = "60s", value_parser = parse_interval, value_name = "SECS")]
    reconnect_timeout: Duration,

    /// Session: ask the consumer to acknowledge at least every N frames [default: the consumer's
    /// choice, 32].
    #[arg(long, value_name = "N")]
    ack_every: Option<u32>,

    /// Put each frame's number in it, `{"stamp":N,"records":[...]}`, for `consumer --verify`.
    #[arg(long)]
    stamp: bool,

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
    if !args.plain {
        return run_session(&args, signals, bar).await;
    }

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
    let sender = conn.sender::<Body>();
    let source = bodies(&args);
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

/// The frames to send: reference arrays, stamped with their number if `--stamp`.
fn bodies(args: &Args) -> impl futures::Stream<Item = Body> {
    let stamp = args.stamp;
    generator::reference_frames(args.frames, args.records_per_frame)
        .enumerate()
        .map(move |(i, records)| {
            if stamp {
                Body::Stamped {
                    stamp: i as u64,
                    records,
                }
            } else {
                Body::Plain(records)
            }
        })
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

/// The default: the frames in a session (SPEC §10), across as many connections as it takes.
async fn run_session(
    args: &Args,
    mut signals: Signals,
    bar: Option<indicatif::ProgressBar>,
) -> ExitCode {
    let mut session = Producer::builder()
        .budget(args.budget)
        .session(args.connect.clone())
        .reconnect_timeout(args.reconnect_timeout);
    if let Some(n) = args.ack_every {
        session = session.pacing(Pacing {
            ack_every: n,
            ..Pacing::default()
        });
    }
    let stats = session.stats();
    let id = session.id().to_string();
    tracing::info!(
        "producer: session {} to {}; sending {} frames of {} records; budget {} (and as much \
         again retained until acknowledged)",
        session.id(),
        args.connect,
        support::thousands(args.frames),
        args.records_per_frame,
        support::mib(args.budget as u64),
    );
    let reporter = tokio::spawn(report_loop(stats.clone(), args.stats_interval, bar.clone()));
    let source = paced(bodies(args), pace(args));
    let end = send_session(
        "producer",
        session,
        source,
        &mut signals,
        args.shutdown_timeout,
    )
    .await;
    reporter.abort();
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    finish_session(args, &stats, id, end)
}

/// `source`, one item per tick of `pace` if there is one.
fn paced<S: futures::Stream + Unpin>(
    source: S,
    pace: Option<tokio::time::Interval>,
) -> impl futures::Stream<Item = S::Item> {
    futures::stream::unfold((source, pace), |(mut source, mut pace)| async move {
        if let Some(tick) = pace.as_mut() {
            tick.tick().await;
        }
        let item = source.next().await?;
        Some((item, (source, pace)))
    })
}

/// A session's summary and exit status.
fn finish_session(args: &Args, stats: &Stats, session: String, end: SessionEnd) -> ExitCode {
    let SessionEnd {
        result,
        interrupted,
        forced,
    } = end;
    let progress = stats.session_progress().unwrap_or_default();
    let (snap, times) = match &result {
        Some(Ok(report)) => (report.snapshot.clone(), report.resume_times),
        _ => (stats.snapshot(), None),
    };
    let error = match &result {
        Some(Err(e)) => Some(e.to_string()),
        None => Some(format!(
            "the session was abandoned: {} frames delivered, {} sent and not acknowledged, {} \
             never sent",
            progress.delivered, progress.unacked, progress.never_sent
        )),
        Some(Ok(_)) => None,
    };
    let complete = matches!(&result, Some(Ok(r)) if r.complete);
    let summary = Summary::new(
        "producer",
        progress.delivered,
        Some(progress.delivered * args.records_per_frame as u64),
        snap.bytes_written,
        snap.secs,
        &snap.flow,
        // The queue's budget, and as much again retained until acknowledged (SPEC §10.2).
        2 * args.budget,
        u64::from(!complete),
        error,
    )
    .interrupted(interrupted)
    .producer(ProducerCounts {
        items_sent: snap.items_sent,
        frames_encoded: snap.frames_encoded,
        frames_written: snap.frames_written,
        never_sent: progress.never_sent,
        confirmed: complete,
        close_forced: forced,
        // The library polls a session's source: its wait for room is the queue stage's.
        waited_for_room_ms: snap
            .flow
            .stages
            .iter()
            .find(|s| s.name == "queue")
            .map_or(0, |s| s.blocked_ms),
    })
    .producer_session(ProducerSessionCounts::new(
        session,
        snap.items_sent,
        progress,
        times,
    ));
    eprintln!("{}", summary.human());
    if args.summary_json {
        println!(
            "{}",
            serde_json::to_string(&summary).expect("summary serializes")
        );
    }
    match result {
        Some(Ok(_)) if interrupted => ExitCode::from(EXIT_INTERRUPTED),
        Some(Ok(_)) => ExitCode::SUCCESS,
        None => ExitCode::from(EXIT_FORCED),
        Some(Err(e)) => {
            eprintln!("producer: error: {e}");
            ExitCode::from(match &e {
                Error::Session { source, .. } => match source {
                    ProtoError::ReconnectTimeout { .. } if progress.connections == 0 => 2,
                    ProtoError::ReconnectTimeout { .. } => 4,
                    ProtoError::Rejected(_) => 3,
                    _ => 5,
                },
                Error::Encode { .. } => 5,
                _ => 5,
            })
        }
    }
}
