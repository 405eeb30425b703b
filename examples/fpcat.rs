//! fpcat: netcat for framed JSON. `fpcat send ADDR` reads JSON Lines on stdin and sends one frame
//! per line; `fpcat listen ADDR` writes each frame it receives as one JSON line on stdout.
//!
//! ```sh
//! cargo run --release --example fpcat -- listen 127.0.0.1:7800 > out.jsonl        # terminal 1
//! jq -c '.items[]' in.json | cargo run --release --example fpcat -- send 127.0.0.1:7800
//! cargo install --path . --example fpcat                                          # as a binary
//! ```

#[path = "fpcat/listen.rs"]
mod listen;
#[path = "fpcat/send.rs"]
mod send;
mod support;

use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use support::{parse_interval, parse_size};

/// Netcat for framed JSON: JSON Lines in, framepipe frames over TCP, JSON Lines out.
///
/// By default `send` sends in a session (SPEC §10): a connection that fails is resumed on a new one
/// and nothing is lost or repeated; `--plain` sends the simple format (`u32 BE length + JSON`) for
/// plain readers. `listen` takes either.
///
/// Exit status: 0 done; 2 bad arguments, or cannot connect or listen; 3 the consumer rejected a frame;
/// 4 the session gave up reconnecting (or the consumer closed early, plain); 5 another failure;
/// 65 some input lines were not JSON (reported on stderr with their numbers, and not sent); 130
/// stopped by a signal after sending what was read; 131 stopped by a second signal.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    #[command(subcommand)]
    command: Command,

    /// Log events as readable lines (pretty) or one JSON object per line (json), on stderr.
    /// `RUST_LOG` sets the level (default: warn).
    #[arg(long, value_enum, default_value_t = support::LogFormat::Pretty, global = true)]
    log_format: support::LogFormat,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Read JSON Lines from stdin and send each line (or each --lines-per-frame lines) as a frame.
    Send(SendArgs),
    /// Accept connections and write each frame received as one JSON line on stdout.
    Listen(ListenArgs),
}

#[derive(Debug, clap::Args)]
struct SendArgs {
    /// The consumer's address (host:port).
    addr: String,

    /// Send the simple format on one connection, without a session: a failed connection then
    /// loses what was in flight.
    #[arg(long)]
    plain: bool,

    /// Send N lines as one frame, a JSON array of them.
    #[arg(long, default_value_t = 1, value_name = "N")]
    lines_per_frame: usize,

    /// Go on after a line that is not JSON (it is reported and not sent); the exit status is still
    /// 65.
    #[arg(long)]
    skip_bad: bool,

    /// The longest line accepted; longer ones are bad lines.
    #[arg(long, default_value = "16MiB", value_parser = parse_size, value_name = "BYTES")]
    max_line: usize,

    /// Byte budget of the send queue (a session retains as much again until acknowledged).
    #[arg(long, default_value = "512KiB", value_parser = parse_size, value_name = "BYTES")]
    budget: usize,

    /// Session: give up when no connection can be made or resumed for this long.
    #[arg(long, default_value = "60s", value_parser = parse_interval, value_name = "SECS")]
    reconnect_timeout: Duration,

    /// After a signal, how long sending what was read and waiting for its acknowledgement may take.
    #[arg(long, default_value = "10s", value_parser = parse_interval, value_name = "SECS")]
    shutdown_timeout: Duration,

    #[command(flatten)]
    tls: support::tls::ClientTls,
}

#[derive(Debug, clap::Args)]
struct ListenArgs {
    /// Where to listen (host:port; port 0 picks one, printed on stderr).
    addr: String,

    /// Exit after this many connections have ended [default: run until a signal].
    #[arg(long, value_name = "N")]
    connections: Option<u64>,

    /// The longest frame accepted.
    #[arg(long, default_value = "16MiB", value_parser = parse_size, value_name = "BYTES")]
    max_frame_length: usize,

    /// Byte budget of each connection's queue.
    #[arg(long, default_value = "512KiB", value_parser = parse_size, value_name = "BYTES")]
    budget: usize,

    #[command(flatten)]
    tls: support::tls::ServerTls,
}

fn main() -> ExitCode {
    let args = Args::parse();
    support::init_logging_at(None, args.log_format, "warn");
    // Two workers: reading and checking lines (or writing them) beside the connection's I/O.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(async {
        match args.command {
            Command::Send(a) => send::run(a).await,
            Command::Listen(a) => listen::run(a).await,
        }
    })
}
