//! Sends reference frames to a framepipe consumer and reports throughput and memory at every stage.
//!
//! ```sh
//! cargo run --release --example consumer            # terminal 1
//! cargo run --release --example producer            # terminal 2
//! ```

#[path = "producer/source.rs"]
mod source;
#[path = "producer/summary.rs"]
mod summary;
mod support;

use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use clap::Parser;
use framepipe::codec::session::Pacing;
use framepipe::producer::{generator, Producer, Session, Stats};
use futures::StreamExt;
use source::RawSource;
use summary::{fail, finish, finish_session};
use support::stamp::Body;
use support::{
    close, feed, parse_interval, parse_size, parse_timeout, send_session, stats_line, Closed,
    Handle, Signals, Timeout, EXIT_INTERRUPTED,
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
    #[arg(long, default_value = "512KiB", value_parser = parse_size, value_name = "BYTES")]
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
    #[arg(long, conflicts_with_all = ["payload", "jsonl"])]
    stamp: bool,

    /// Send this file's bytes (one JSON value, checked once) as the body of each of --frames
    /// frames: the transport without the cost of serializing, with your own payload.
    #[arg(long, value_name = "FILE", conflicts_with = "jsonl")]
    payload: Option<std::path::PathBuf>,

    /// Send each line of this JSON Lines file as one frame (--frames is ignored). Each line is
    /// checked to be one JSON value; at a bad line the producer stops, sends the lines before it and
    /// exits 65 (see `fpcat send --skip-bad` to go on).
    #[arg(long, value_name = "FILE")]
    jsonl: Option<std::path::PathBuf>,

    /// Print the summary as one JSON object on stdout as well.
    #[arg(long)]
    summary_json: bool,

    #[command(flatten)]
    observe: support::Observe,

    #[command(flatten)]
    tls: support::tls::ClientTls,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args = Args::parse();
    // Before anything else: until the handlers are installed, a signal kills the process.
    let signals = match Signals::new() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("producer: error: cannot install signal handlers: {e}");
            return ExitCode::from(5);
        }
    };
    let bar = support::progress_bar(args.jsonl.is_none().then_some(args.frames));
    support::init_logging(bar.clone(), args.observe.log_format);
    // Before anything is built: metrics handles are registered with this recorder.
    let _endpoint = match support::observe::start_if(
        args.observe.metrics.as_deref(),
        false,
        "producer",
    )
    .await
    {
        Ok(endpoint) => endpoint,
        Err(code) => return code,
    };
    let raw = match (&args.payload, &args.jsonl) {
        (Some(path), _) => source::payload(path, args.frames).map(Some),
        (None, Some(path)) => source::jsonl(path).await.map(Some),
        (None, None) => Ok(None),
    };
    let raw = match raw {
        Ok(raw) => raw,
        Err(e) => {
            eprintln!("producer: error: {e}");
            return ExitCode::from(2);
        }
    };
    let what = raw.as_ref().map_or_else(
        || {
            let (n, r) = (support::thousands(args.frames), args.records_per_frame);
            format!("{n} frames of {r} records")
        },
        |raw| raw.what.clone(),
    );
    let lines = raw.as_ref().and_then(|r| r.lines.clone());
    let code = if args.plain {
        run_plain(&args, signals, bar, raw, &what).await
    } else {
        run_session(&args, signals, bar, raw, &what).await
    };
    bad_lines(lines.as_deref()).unwrap_or(code)
}

/// Exit 65 (after the summary) if a `--jsonl` line was bad or the file could not be read to its end.
fn bad_lines(lines: Option<&support::lines::LineCounts>) -> Option<ExitCode> {
    let lines = lines?;
    let bad = lines.bad.load(Relaxed) + lines.read_error.load(Relaxed);
    (bad > 0).then(|| {
        eprintln!("producer: error: --jsonl stopped at a line it could not send");
        ExitCode::from(65)
    })
}

/// `--plain`: one connection in the simple format.
async fn run_plain(
    args: &Args,
    mut signals: Signals,
    bar: Option<indicatif::ProgressBar>,
    raw: Option<RawSource>,
    what: &str,
) -> ExitCode {
    let settings = Producer::builder()
        .budget(args.budget)
        .stall_timeout(args.stall_timeout.0);
    let tls = match args.tls.client() {
        Ok(tls) => tls,
        Err(e) => {
            eprintln!("producer: error: {e}");
            return ExitCode::from(2);
        }
    };
    match tls {
        None => {
            let conn = tokio::select! {
                conn = settings.connect(&args.connect) => conn,
                name = signals.recv() => return interrupted_connecting(name),
            };
            match conn {
                Ok(conn) => {
                    let buffers = format!("socket buffers {:?}", conn.buffer_sizes().ok());
                    send_plain(args, signals, bar, raw, what, conn, &buffers).await
                }
                Err(e) => fail(&e),
            }
        }
        Some(tls) => {
            let conn = tokio::select! {
                conn = settings.connect_tls(&args.connect, tls) => conn,
                name = signals.recv() => return interrupted_connecting(name),
            };
            match conn {
                Ok(conn) => send_plain(args, signals, bar, raw, what, conn, "over TLS").await,
                Err(e) => fail(&e),
            }
        }
    }
}

fn interrupted_connecting(name: &str) -> ExitCode {
    eprintln!("producer: {name} while connecting: nothing was sent");
    ExitCode::from(EXIT_INTERRUPTED)
}

/// `--plain` once connected: sends, closes, and prints the summary.
async fn send_plain<T>(
    args: &Args,
    mut signals: Signals,
    bar: Option<indicatif::ProgressBar>,
    raw: Option<RawSource>,
    what: &str,
    conn: framepipe::producer::Connection<T>,
    link: &str,
) -> ExitCode
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let stats = conn.stats();
    tracing::info!(
        "producer: connected to {}; sending {what}; budget {}; {link}",
        args.connect,
        support::mib(args.budget as u64),
    );
    let reporter = tokio::spawn(report_loop(stats.clone(), args.stats_interval, bar.clone()));
    let plot = match start_plot(args, &stats) {
        Ok(plot) => plot,
        Err(code) => return code,
    };
    // The connection's driver runs in a task; this task feeds it through the handle.
    let (closed, waited_ms) = match raw {
        Some(raw) => {
            feed_and_close(args, &mut signals, &stats, conn.raw_sender(), raw.bodies).await
        }
        None => {
            feed_and_close(
                args,
                &mut signals,
                &stats,
                conn.sender::<Body>(),
                bodies(args),
            )
            .await
        }
    };
    reporter.abort();
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    let raw = args.payload.is_some() || args.jsonl.is_some();
    // The summary first: its peak RSS is the transfer's, not the drawing's.
    let code = finish(args, &stats, closed, waited_ms, raw);
    finish_plot(args, plot, what, args.budget);
    code
}

/// `--plot`: starts sampling `stats`, or exit status 2 for a bad file name.
fn start_plot(args: &Args, stats: &Stats) -> Result<Option<support::plot::Recording>, ExitCode> {
    let stats = stats.clone();
    let read = move || {
        let s = stats.snapshot();
        support::plot::one_side(s.bytes_written, s.flow)
    };
    support::plot::start_if(args.observe.plot.as_deref(), read).map_err(|e| {
        eprintln!("producer: error: {e}");
        ExitCode::from(2)
    })
}

/// `--plot`: draws what was sampled, against `budget`.
fn finish_plot(args: &Args, plot: Option<support::plot::Recording>, what: &str, budget: usize) {
    let mode = if args.plain { "plain" } else { "session" };
    let title = format!(
        "producer ({mode}): {what}, budget {}",
        support::mib(args.budget as u64)
    );
    support::plot::finish_if(plot, "producer", &title, budget as u64);
}

/// Feeds `source` through `sender` until it ends or a signal comes, then closes (SPEC §6.7).
async fn feed_and_close<H: Handle>(
    args: &Args,
    signals: &mut Signals,
    stats: &Stats,
    sender: H,
    source: impl futures::Stream<Item = H::Item>,
) -> (Closed, u64) {
    let waited_ms = AtomicU64::new(0);
    let interrupted = tokio::select! {
        () = feed(&sender, source, pace(args), &waited_ms) => false,
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
        signals,
        interrupted,
        args.shutdown_timeout,
    )
    .await;
    (closed, waited_ms.load(Relaxed))
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
    raw: Option<RawSource>,
    what: &str,
) -> ExitCode {
    let settings = Producer::builder().budget(args.budget);
    let session = match args.tls.client() {
        Ok(None) => settings.session(args.connect.clone()),
        Ok(Some(tls)) => settings.session_tls(args.connect.clone(), tls),
        Err(e) => {
            eprintln!("producer: error: {e}");
            return ExitCode::from(2);
        }
    };
    let mut session = session.reconnect_timeout(args.reconnect_timeout);
    if let Some(n) = args.ack_every {
        session = session.pacing(Pacing {
            ack_every: n,
            ..Pacing::default()
        });
    }
    let stats = session.stats();
    let id = session.id().to_string();
    tracing::info!(
        "producer: session {} to {}; sending {what}; budget {} (and as much again retained until \
         acknowledged)",
        session.id(),
        args.connect,
        support::mib(args.budget as u64),
    );
    let reporter = tokio::spawn(report_loop(stats.clone(), args.stats_interval, bar.clone()));
    let plot = match start_plot(args, &stats) {
        Ok(plot) => plot,
        Err(code) => return code,
    };
    let (who, timeout) = ("producer", args.shutdown_timeout);
    let end = match raw {
        Some(raw) => {
            let source = paced(raw.bodies, pace(args));
            let send = |s: Session, src| s.send_raw(src);
            send_session(who, session, source, send, &mut signals, timeout).await
        }
        None => {
            let source = paced(bodies(args), pace(args));
            let send = |s: Session, src| s.send_json(src);
            send_session(who, session, source, send, &mut signals, timeout).await
        }
    };
    reporter.abort();
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    // The queue's budget, and as much again retained until acknowledged (SPEC §10.2).
    let code = finish_session(args, &stats, id, end);
    finish_plot(args, plot, what, 2 * args.budget);
    code
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
