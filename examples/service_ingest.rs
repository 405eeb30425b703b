//! An ingest service: accepts framepipe connections whose frames are JSON arrays of events, and
//! appends every event to a file as one JSON line. A write that fails fails the handler, and the
//! producer is told which frame was not stored. Ctrl-C or SIGTERM shuts down without losing a frame
//! that was read; a second one forces it.
//!
//! ```sh
//! cargo run --release --example service_ingest -- --out events.jsonl      # terminal 1
//! cargo run --release --example service_export -- --events 20000         # terminal 2
//! ```

use std::borrow::Cow;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use framepipe::consumer::{
    BoxError, Bytes, ConnectionInfo, ConnectionReport, Consumer, Delivery, Handler, Raw, Shutdown,
};
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::Mutex;

/// Store events sent by framepipe producers as JSON lines.
///
/// A frame whose events cannot be written (disk full, say) closes its connection, and the producer
/// is told which frame was not stored. Ctrl-C (SIGINT) or SIGTERM stops accepting connections and
/// reading frames, stores every frame already read and tells each producer the first frame it did
/// not read; a second signal, or --shutdown-timeout, forces it.
///
/// Exit status: 0 never (it runs until stopped); 2 cannot listen or open --out; 130 stopped by
/// SIGINT or SIGTERM after every frame read was stored or refused; 131 the shutdown was forced (a
/// second signal, or --shutdown-timeout): frames read were dropped.
#[derive(Debug, Parser)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:7100")]
    listen: String,

    /// File the events are appended to, one JSON object a line.
    #[arg(long, default_value = "events.jsonl")]
    out: PathBuf,

    /// How long the shutdown may take before it is forced, in seconds.
    #[arg(long, default_value_t = 30.0, value_name = "SECS")]
    shutdown_timeout: f64,
}

/// One event as it arrives, borrowed from the frame's bytes: its strings are not copied (unless
/// they hold escapes; `Cow` takes both, where `&str` would fail on `"a\"b"`).
#[derive(Debug, Deserialize, Serialize)]
struct Event<'a> {
    id: u64,
    #[serde(borrow)]
    kind: Cow<'a, str>,
    at_ms: u64,
    #[serde(borrow)]
    user: Cow<'a, str>,
}

/// The handler: one per service, shared by every connection (frames of one connection come in
/// order, connections run concurrently, hence the lock on the file).
struct Ingest {
    out: Mutex<tokio::fs::File>,
    events: Arc<AtomicU64>,
}

impl Handler<Bytes> for Ingest {
    async fn handle(&self, frame: Delivery<Bytes>) -> Result<(), BoxError> {
        // The body is a JSON array of events (the exporter batches them). A frame that is not is
        // refused like a failed write: the producer learns its number.
        let events: Vec<Event<'_>> = frame.json()?;
        let mut lines = Vec::with_capacity(frame.item.len() + events.len());
        for event in &events {
            serde_json::to_writer(&mut lines, event)?;
            lines.push(b'\n');
        }
        let mut out = self.out.lock().await;
        out.write_all(&lines).await?;
        // tokio's File writes in the background: `flush` waits for the write and returns its
        // error (ENOSPC on /dev/full), so an Err here means this frame was not stored.
        out.flush().await?;
        self.events.fetch_add(events.len() as u64, Relaxed);
        Ok(())
    }

    fn on_open(&self, conn: &ConnectionInfo) {
        tracing::info!("connection {} from {}", conn.id, conn.peer);
    }

    fn on_close(&self, conn: &ConnectionInfo, report: &ConnectionReport) {
        tracing::info!(
            "connection {} from {} ended: {} frames stored, {} unhandled{}",
            conn.id,
            conn.peer,
            report.frames,
            report.unhandled,
            report
                .error
                .as_deref()
                .map_or(String::new(), |e| format!("; {e}"))
        );
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .init();
    // Installed first: from here on SIGINT and SIGTERM do not kill the process.
    let (Ok(mut sigint), Ok(mut sigterm)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        eprintln!("ingest: error: cannot install signal handlers");
        return ExitCode::from(2);
    };

    let out = match tokio::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&args.out)
        .await
    {
        Ok(f) => f,
        Err(e) => {
            eprintln!("ingest: error: cannot open {}: {e}", args.out.display());
            return ExitCode::from(2);
        }
    };
    let settings =
        Consumer::builder().shutdown_timeout(Duration::from_secs_f64(args.shutdown_timeout));
    let consumer = match settings.bind(&args.listen).await {
        Ok(c) => c,
        Err(e) => {
            eprintln!("ingest: error: {e}");
            return ExitCode::from(2);
        }
    };
    tracing::info!(
        "ingest: listening on {}, appending to {}",
        args.listen,
        args.out.display()
    );

    // First signal: drain (stop accepting, store every frame already read, tell each producer
    // which frame was the first not read). Second signal: force.
    let shutdown: Shutdown = consumer.shutdown_handle();
    tokio::spawn(async move {
        for _ in 0..2 {
            tokio::select! {
                _ = sigint.recv() => {}
                _ = sigterm.recv() => {}
            }
            let forced = shutdown.shutdown();
            tracing::info!(
                "ingest: {}",
                if forced {
                    "forcing the shutdown"
                } else {
                    "shutting down (again to force)"
                }
            );
        }
    });

    let events = Arc::new(AtomicU64::new(0));
    let ingest = Ingest {
        out: Mutex::new(out),
        events: events.clone(),
    };
    let report = consumer.serve_with(Raw, ingest).await;

    let s = &report.snapshot;
    let forced = report.shutdown.is_some_and(|s| s.forced);
    eprintln!(
        "ingest: {} events stored from {} frames; {} frames refused (handler errors), {} read and \
         not stored (unhandled), {} connections{}",
        events.load(Relaxed),
        s.frames_handled,
        s.handler_errors,
        s.frames_unhandled,
        s.connections_accepted,
        report.shutdown.map_or(String::new(), |sh| format!(
            "; shutdown {} in {:.2} s",
            if sh.forced { "forced" } else { "drained" },
            sh.secs
        )),
    );
    ExitCode::from(if forced { 131 } else { 130 })
}
