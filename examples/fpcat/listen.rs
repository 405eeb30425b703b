//! `fpcat listen`: each frame received, checked to be JSON, written as one line on stdout.
//!
//! Lines go through a 64 KiB buffer, flushed every 10 ms and at the end; a frame counts as handled
//! (and a session acknowledges it) once it is in that buffer. A slow reader of stdout makes the
//! writes wait, the handler with them, and backpressure reaches the senders.

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use framepipe::consumer::{Consumer, Delivery, Listener, OnHandlerError, Shutdown, Validate};
use tokio::io::{AsyncWriteExt, BufWriter, Stdout};
use tokio::sync::Mutex;

use crate::support::{self, Signals, EXIT_FORCED, EXIT_INTERRUPTED};
use crate::ListenArgs;

type Out = Arc<Mutex<BufWriter<Stdout>>>;

/// Serves until `--connections` have ended or a signal; the exit status says how it went.
pub(crate) async fn run(args: ListenArgs) -> ExitCode {
    let signals = match Signals::new() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("fpcat: error: cannot install signal handlers: {e}");
            return ExitCode::from(2);
        }
    };
    let Ok(max_frame_length) = u32::try_from(args.max_frame_length) else {
        eprintln!("fpcat: error: --max-frame-length must be below 4 GiB");
        return ExitCode::from(2);
    };
    let tls = match args.tls.server() {
        Ok(tls) => tls,
        Err(e) => {
            eprintln!("fpcat: error: {e}");
            return ExitCode::from(2);
        }
    };
    let settings = Consumer::builder()
        .max_frame_length(max_frame_length)
        .budget(args.budget)
        .max_connections(args.connections)
        .on_handler_error(OnHandlerError::Close);
    let bound = match tls {
        None => settings.bind(&args.addr).await.map(|c| {
            let addr = c.local_addr();
            (Box::pin(serve(c, signals)) as Serving, addr, "")
        }),
        Some(tls) => settings.bind_tls(&args.addr, tls).await.map(|c| {
            let addr = c.local_addr();
            (Box::pin(serve(c, signals)) as Serving, addr, " (TLS)")
        }),
    };
    match bound {
        Ok((serving, addr, tls)) => {
            if let Ok(addr) = addr {
                eprintln!("fpcat: listening on {addr}{tls}");
            }
            serving.await
        }
        Err(e) => {
            eprintln!("fpcat: error: {e}");
            ExitCode::from(2)
        }
    }
}

type Serving = std::pin::Pin<Box<dyn std::future::Future<Output = ExitCode> + Send>>;

/// Writes every frame `consumer` receives as a line on stdout until it stops; the exit status.
async fn serve<L: Listener>(consumer: Consumer<L>, signals: Signals) -> ExitCode {
    let out: Out = Arc::new(Mutex::new(BufWriter::with_capacity(
        64 * 1024,
        tokio::io::stdout(),
    )));
    let stdout_gone = Arc::new(AtomicBool::new(false));
    let interrupted = Arc::new(AtomicBool::new(false));
    let shutdown = consumer.shutdown_handle();
    let watcher = tokio::spawn(on_signals(signals, shutdown.clone(), interrupted.clone()));
    let flusher = tokio::spawn(flush_every(out.clone(), Duration::from_millis(10)));
    let (handler_out, gone) = (out.clone(), stdout_gone.clone());
    let report = consumer
        .serve(Validate, move |d: Delivery<Bytes>| {
            let (out, gone, shutdown) = (handler_out.clone(), gone.clone(), shutdown.clone());
            async move {
                let written = write_line(&out, &d.item).await;
                if written.is_err() && !gone.swap(true, Relaxed) {
                    // Nowhere to write: stop taking frames; those not written are not acknowledged.
                    shutdown.shutdown();
                }
                written
            }
        })
        .await;
    watcher.abort();
    flusher.abort();
    let flushed = out.lock().await.flush().await;
    let s = &report.snapshot;
    eprintln!(
        "fpcat: {} frames written as lines ({}) from {} connections; {} errors",
        support::thousands(s.frames_handled),
        support::mb(s.bytes_handled),
        s.connections_accepted,
        s.errors,
    );
    if stdout_gone.load(Relaxed) || flushed.is_err() {
        eprintln!("fpcat: error: stdout was closed; the frames not written were not acknowledged");
        return ExitCode::from(5);
    }
    match report.shutdown {
        Some(s) if s.forced => ExitCode::from(EXIT_FORCED),
        _ if interrupted.load(Relaxed) => ExitCode::from(EXIT_INTERRUPTED),
        _ if s.errors > 0 => ExitCode::from(5),
        _ => ExitCode::SUCCESS,
    }
}

/// Writes `body` and a newline. A valid JSON body has newlines only as whitespace between tokens,
/// so they become spaces and the line stays the same JSON value.
async fn write_line(out: &Out, body: &[u8]) -> std::io::Result<()> {
    let mut out = out.lock().await;
    if body.iter().any(|&b| b == b'\n' || b == b'\r') {
        let line: Vec<u8> = body
            .iter()
            .map(|&b| if b == b'\n' || b == b'\r' { b' ' } else { b })
            .collect();
        out.write_all(&line).await?;
    } else {
        out.write_all(body).await?;
    }
    out.write_all(b"\n").await
}

async fn flush_every(out: Out, every: Duration) {
    let mut ticker = tokio::time::interval(every);
    loop {
        ticker.tick().await;
        if out.lock().await.flush().await.is_err() {
            return;
        }
    }
}

async fn on_signals(mut signals: Signals, shutdown: Shutdown, interrupted: Arc<AtomicBool>) {
    let name = signals.recv().await;
    interrupted.store(true, Relaxed);
    tracing::info!("fpcat: {name}: writing the frames already read, then exiting (again to force)");
    shutdown.shutdown();
    let name = signals.recv().await;
    tracing::warn!("fpcat: {name} again: forcing the shutdown");
    shutdown.force();
}
