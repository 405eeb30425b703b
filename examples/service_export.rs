//! An exporter: events are made one at a time, as requests would make them, and pass through a
//! `tokio::sync::mpsc` channel to a task that sends them to an ingest service through the
//! producer's `Sender`, gathered into frames of many events (batching with a linger). Ctrl-C or
//! SIGTERM stops taking events, writes what was accepted within a deadline and reports; a second
//! one cuts the close short.
//!
//! ```sh
//! cargo run --release --example service_ingest -- --out events.jsonl      # terminal 1
//! cargo run --release --example service_export -- --events 20000         # terminal 2
//! ```

use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::Parser;
use framepipe::producer::{Batching, Error, Producer, Report, Sender};
use serde::Serialize;
use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio::sync::mpsc;

/// Send events to a framepipe ingest service, batched, in a session (SPEC §10): if the connection
/// fails, the exporter reconnects and sends again what the service has not acknowledged, and the
/// service drops what it already stored (`--plain`: one plain connection, as before).
///
/// Ctrl-C (SIGINT) or SIGTERM stops taking events; those accepted are written and confirmed
/// within --shutdown-timeout. A second signal cuts the close short: what is not written is never
/// sent, and the report counts it.
///
/// Exit status: 0 every event sent and confirmed stored; 2 cannot connect (plain; a session keeps
/// trying for --reconnect-timeout, then fails with 5); 3 the service refused a
/// frame (it says which: frames before it were stored); 4 the service closed the connection; 5
/// any other failure; 130 stopped by a signal, and every event taken was sent and confirmed; 131
/// stopped by a signal, and the close ran out of --shutdown-timeout or was forced.
#[derive(Debug, Parser)]
struct Args {
    /// Address of the ingest service.
    #[arg(long, default_value = "127.0.0.1:7100")]
    connect: String,

    /// Events to make, then stop (0: until stopped).
    #[arg(long, default_value_t = 20_000)]
    events: u64,

    /// Events made per second.
    #[arg(long, default_value_t = 5_000.0)]
    rate: f64,

    /// Longest an event waits for others to share its frame, in milliseconds.
    #[arg(long, default_value_t = 5)]
    linger_ms: u64,

    /// A frame is sent once its events take this many bytes.
    #[arg(long, default_value_t = 64 * 1024)]
    batch_bytes: usize,

    /// After a signal, how long writing what was accepted and waiting for the service to confirm
    /// may take, in seconds.
    #[arg(long, default_value_t = 10.0, value_name = "SECS")]
    shutdown_timeout: f64,

    /// One plain connection, without a session: a failed connection loses what was in flight.
    #[arg(long)]
    plain: bool,

    /// Session: give up when no connection can be made or resumed for this long, in seconds.
    #[arg(long, default_value_t = 60.0, value_name = "SECS")]
    reconnect_timeout: f64,
}

/// One event as sent: a frame's body is a JSON array of them.
#[derive(Debug, Serialize)]
struct Event {
    id: u64,
    kind: &'static str,
    at_ms: u64,
    user: String,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .init();
    let (Ok(mut sigint), Ok(mut sigterm)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        eprintln!("export: error: cannot install signal handlers");
        return ExitCode::from(2);
    };

    let settings = Producer::builder().batching(Some(
        Batching::new()
            .max_bytes(args.batch_bytes)
            .linger(Duration::from_millis(args.linger_ms)),
    ));
    let sender = if args.plain {
        match settings.connect(&args.connect).await {
            Ok(conn) => conn.sender::<Event>(),
            Err(e) => {
                eprintln!("export: error: {e}");
                return ExitCode::from(2);
            }
        }
    } else {
        settings
            .session(args.connect.clone())
            .reconnect_timeout(Duration::from_secs_f64(args.reconnect_timeout))
            .sender::<Event>()
    };

    // The event source: one event at a time into a bounded channel, as request handlers would.
    let (tx, mut rx) = mpsc::channel::<Event>(1024);
    let generator = tokio::spawn(generate(tx, args.events, args.rate));

    let mut seen = Forwarding::default();
    let interrupted = tokio::select! {
        () = forward(&mut rx, &sender, &mut seen) => false,
        () = signalled(&mut sigint, &mut sigterm) => true,
    };
    generator.abort();
    let not_taken = seen.in_hand + rx.len() as u64;

    // Close: stop taking events, write the batch and the queue, FIN, wait for the service to
    // close its end (it does once it has stored every frame). After a signal, within a deadline;
    // a (further) signal closes with a deadline of now: what is not written is never sent.
    let deadline = Duration::from_secs_f64(args.shutdown_timeout);
    if interrupted {
        tracing::info!("export: stopping: sending what was accepted (again to force)");
    }
    let closing = {
        let sender = sender.clone();
        async move {
            match interrupted {
                true => sender.close_within(deadline).await,
                false => sender.close().await,
            }
        }
    };
    let mut forced = false;
    let result = tokio::select! {
        result = closing => result,
        () = signalled(&mut sigint, &mut sigterm) => {
            forced = true;
            sender.clone().close_within(Duration::ZERO).await
        }
    };
    let stats = sender.stats().snapshot();
    print_report(&result, &stats, not_taken, seen.full);
    exit_status(&result, interrupted || forced)
}

/// The next SIGINT or SIGTERM.
async fn signalled(sigint: &mut Signal, sigterm: &mut Signal) {
    tokio::select! {
        _ = sigint.recv() => {}
        _ = sigterm.recv() => {}
    }
}

/// Makes `count` events (0: for ever), `rate` a second, one at a time.
async fn generate(tx: mpsc::Sender<Event>, count: u64, rate: f64) {
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate.max(1.0)));
    for id in 0.. {
        if count > 0 && id == count {
            break;
        }
        tick.tick().await;
        let at_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let event = Event {
            id,
            kind: if id % 10 == 0 { "purchase" } else { "click" },
            at_ms,
            user: format!("user-{}", id % 97),
        };
        // Waits while the channel is full: backpressure reaches the source.
        if tx.send(event).await.is_err() {
            break;
        }
    }
}

/// What `forward` saw: the times the queue was full, and whether it holds an event not accepted.
#[derive(Debug, Default)]
struct Forwarding {
    full: u64,
    in_hand: u64,
}

/// Moves events from the channel to the connection until the channel is done or the connection
/// ends. While the connection is backed up this waits for room holding one event (`in_hand`), and
/// the others wait in the channel, where they hold up the generator.
///
/// The event is taken before room is reserved, and sent as soon as the permit comes: a `Permit`
/// must not be held across an `.await` during which the connection may end, because `Permit::send`
/// on a connection that has ended deadlocks (a bug of `framepipe-producer`'s queue, reported).
async fn forward(rx: &mut mpsc::Receiver<Event>, sender: &Sender<Event>, seen: &mut Forwarding) {
    while let Some(event) = rx.recv().await {
        seen.in_hand = 1;
        let permit = match sender.try_reserve() {
            Ok(permit) => permit,
            // The queue holds its byte budget: wait for room (a request handler that cannot wait
            // would answer "busy" here instead).
            Err(Error::Full { .. }) => {
                seen.full += 1;
                match sender.reserve().await {
                    Ok(permit) => permit,
                    Err(_) => return,
                }
            }
            // Closed: the connection ended; `close` says why.
            Err(_) => return,
        };
        if permit.send(event).is_err() {
            return;
        }
        seen.in_hand = 0;
    }
}

fn print_report(
    result: &Result<Report, Error>,
    s: &framepipe::producer::Snapshot,
    not_taken: u64,
    full: u64,
) {
    let never_sent = result.as_ref().map_or_else(Error::never_sent, |_| 0);
    eprintln!(
        "export: {} events accepted into {} frames ({:.1} a frame); {} frames written, {} never \
         sent; {}; {} events made and never accepted; the queue was full {} times",
        s.items_sent,
        s.frames_encoded,
        s.items_sent as f64 / s.frames_encoded.max(1) as f64,
        s.frames_written,
        never_sent,
        match result {
            Ok(r) if r.confirmed => "confirmed: the service stored every frame",
            Ok(_) => "not confirmed: the service did not close its end in time",
            Err(_) => "not confirmed",
        },
        not_taken,
        full,
    );
    if let Err(e) = result {
        eprintln!("export: error: {e}");
    }
}

fn exit_status(result: &Result<Report, Error>, interrupted: bool) -> ExitCode {
    ExitCode::from(match result {
        Ok(r) if r.confirmed => {
            if interrupted {
                130
            } else {
                0
            }
        }
        Ok(_) | Err(Error::Deadline { .. }) if interrupted => 131,
        Err(Error::Connect { .. }) => 2,
        Err(Error::Rejected { .. }) => 3,
        Err(Error::PeerClosed { .. }) => 4,
        _ => 5,
    })
}
