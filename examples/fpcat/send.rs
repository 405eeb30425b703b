//! `fpcat send`: JSON Lines from stdin to frames, in a session or (`--plain`) on one connection.

use std::process::ExitCode;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Instant;

use framepipe::producer::{Error, Producer, Session};
use framepipe::proto::Error as ProtoError;

use crate::support::lines::{json_frames, LineCounts, LineOptions};
use crate::support::{self, close, feed, send_session, Signals, EXIT_FORCED, EXIT_INTERRUPTED};
use crate::SendArgs;

/// Sends stdin's lines; the exit status says how it went (see `fpcat --help`).
pub(crate) async fn run(args: SendArgs) -> ExitCode {
    let mut signals = match Signals::new() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("fpcat: error: cannot install signal handlers: {e}");
            return ExitCode::from(2);
        }
    };
    if args.lines_per_frame == 0 {
        eprintln!("fpcat: error: --lines-per-frame must be at least 1");
        return ExitCode::from(2);
    }
    let counts = Arc::new(LineCounts::default());
    let options = LineOptions {
        lines_per_frame: args.lines_per_frame,
        skip_bad: args.skip_bad,
        max_line: args.max_line,
    };
    let frames = json_frames(tokio::io::stdin(), options, counts.clone(), "fpcat");
    let started = Instant::now();
    let (outcome, bytes) = if args.plain {
        plain(&args, frames, &mut signals).await
    } else {
        session(&args, frames, &mut signals).await
    };
    let secs = started.elapsed().as_secs_f64();
    let (lines, values, bad) = (
        counts.lines.load(Relaxed),
        counts.values.load(Relaxed),
        counts.bad.load(Relaxed),
    );
    // Plain: written in full (confirmed only if the exit status is 0); session: acknowledged.
    let frames_were = if args.plain { "written" } else { "delivered" };
    eprintln!(
        "fpcat: {} lines read, {} values taken, {} frames {frames_were}, {} bad lines; {} in {secs:.2} s: {:.1} MB/s, {:.0} lines/s",
        support::thousands(lines),
        support::thousands(values),
        support::thousands(outcome.frames),
        support::thousands(bad),
        support::mb(bytes),
        bytes as f64 / 1e6 / secs.max(1e-9),
        values as f64 / secs.max(1e-9),
    );
    if let Some(e) = &outcome.error {
        eprintln!("fpcat: error: {e}");
    }
    match outcome.code {
        0 if bad > 0 || counts.read_error.load(Relaxed) > 0 => ExitCode::from(65),
        code => ExitCode::from(code),
    }
}

/// How the sending ended: frames delivered (session) or written (plain), an error to print, the
/// exit status.
struct Outcome {
    frames: u64,
    error: Option<String>,
    code: u8,
}

async fn session(
    args: &SendArgs,
    frames: impl futures::Stream<Item = bytes::Bytes>,
    signals: &mut Signals,
) -> (Outcome, u64) {
    let settings = Producer::builder().budget(args.budget);
    let session = match args.tls.client() {
        Ok(None) => settings.session(args.addr.clone()),
        Ok(Some(tls)) => settings.session_tls(args.addr.clone(), tls),
        Err(e) => return (not_sent(e), 0),
    };
    let session = session.reconnect_timeout(args.reconnect_timeout);
    let stats = session.stats();
    let send = |s: Session, src| s.send_raw(src);
    let end = send_session(
        "fpcat",
        session,
        frames,
        send,
        signals,
        args.shutdown_timeout,
    )
    .await;
    let progress = stats.session_progress().unwrap_or_default();
    let bytes = stats.snapshot().bytes_written;
    let frames = progress.delivered;
    let outcome = match end.result {
        Some(Ok(_)) if end.interrupted => Outcome {
            frames,
            error: None,
            code: EXIT_INTERRUPTED,
        },
        Some(Ok(_)) => Outcome {
            frames,
            error: None,
            code: 0,
        },
        None => Outcome {
            frames,
            error: Some(format!(
                "the session was abandoned: {} frames delivered, {} sent and not acknowledged, {} \
                 never sent",
                progress.delivered, progress.unacked, progress.never_sent
            )),
            code: EXIT_FORCED,
        },
        Some(Err(e)) => {
            let code = match &e {
                Error::Session {
                    source: ProtoError::ReconnectTimeout { .. },
                    ..
                } if progress.connections == 0 => 2,
                Error::Session {
                    source: ProtoError::ReconnectTimeout { .. },
                    ..
                } => 4,
                Error::Session {
                    source: ProtoError::Rejected(_),
                    ..
                } => 3,
                _ => 5,
            };
            Outcome {
                frames,
                error: Some(e.to_string()),
                code,
            }
        }
    };
    (outcome, bytes)
}

async fn plain(
    args: &SendArgs,
    frames: impl futures::Stream<Item = bytes::Bytes>,
    signals: &mut Signals,
) -> (Outcome, u64) {
    let settings = Producer::builder().budget(args.budget);
    match args.tls.client() {
        Ok(None) => match settings.connect(&args.addr).await {
            Ok(conn) => send_plain(args, frames, signals, conn).await,
            Err(e) => (not_sent(e.to_string()), 0),
        },
        Ok(Some(tls)) => match settings.connect_tls(&args.addr, tls).await {
            Ok(conn) => send_plain(args, frames, signals, conn).await,
            Err(e) => (not_sent(e.to_string()), 0),
        },
        Err(e) => (not_sent(e), 0),
    }
}

/// Nothing was sent: the connection could not be made, or the TLS settings could not be used.
fn not_sent(error: String) -> Outcome {
    Outcome {
        frames: 0,
        error: Some(error),
        code: 2,
    }
}

/// `--plain` once connected.
async fn send_plain<T>(
    args: &SendArgs,
    frames: impl futures::Stream<Item = bytes::Bytes>,
    signals: &mut Signals,
    conn: framepipe::producer::Connection<T>,
) -> (Outcome, u64)
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let stats = conn.stats();
    let sender = conn.raw_sender();
    let waited = std::sync::atomic::AtomicU64::new(0);
    let interrupted = tokio::select! {
        () = feed(&sender, frames, None, &waited) => false,
        name = signals.recv() => {
            tracing::info!("fpcat: {name}: no more lines read; sending those read (again to force)");
            true
        }
    };
    let closed = close(
        "fpcat",
        &sender,
        signals,
        interrupted,
        args.shutdown_timeout,
    )
    .await;
    let cut_short = closed.cut_short();
    let snap = stats.snapshot();
    let frames = snap.frames_written;
    let outcome = match closed.result {
        Ok(report) if report.confirmed && interrupted => Outcome {
            frames,
            error: None,
            code: EXIT_INTERRUPTED,
        },
        Ok(report) if report.confirmed => Outcome {
            frames,
            error: None,
            code: 0,
        },
        Ok(_) => Outcome {
            frames,
            error: Some("every frame was written, but the consumer did not confirm".into()),
            code: if cut_short { EXIT_FORCED } else { 5 },
        },
        Err(e) => {
            let code = match &e {
                Error::Rejected { .. } => 3,
                Error::PeerClosed { .. } => 4,
                Error::Deadline { .. } => EXIT_FORCED,
                _ => 5,
            };
            Outcome {
                frames,
                error: Some(e.to_string()),
                code,
            }
        }
    };
    (outcome, snap.bytes_written)
}
