//! A TCP proxy that injects faults, to see what a producer and a consumer do when the network
//! misbehaves: resets that land mid-frame, pauses, a throttled link, partitions.
//!
//! ```sh
//! cargo run --release --example consumer -- --listen 127.0.0.1:7000                   # terminal 1
//! cargo run --release --example chaos_proxy -- --listen 127.0.0.1:7001 \
//!     --upstream 127.0.0.1:7000 --reset-every 1MiB                                      # terminal 2
//! cargo run --release --example producer -- --connect 127.0.0.1:7001 --frames 2000      # terminal 3
//! ```
//!
//! Faults act on the forward direction (client → upstream, the producer's frames); what comes back
//! (notices) is copied as it comes. Ctrl-C prints what was done (`--summary-json`: as one JSON
//! object on stdout too).

mod chaos;
mod support;

use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::Parser;
use tokio::net::TcpListener;

use chaos::{Faults, Tally};

/// Forward TCP connections to an upstream address, injecting faults.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:7001")]
    listen: SocketAddr,

    /// Address to forward each connection to.
    #[arg(long, default_value = "127.0.0.1:7000")]
    upstream: SocketAddr,

    /// Reset both sides of a connection after about this many forwarded bytes (e.g. 1MiB): the
    /// cut lands anywhere, mid-frame or mid-header.
    #[arg(long, value_parser = support::parse_size)]
    reset_every: Option<usize>,

    /// Spread of --reset-every, as a fraction (0.1: each cut drawn within ±10%).
    #[arg(long, default_value_t = 0.1)]
    jitter: f64,

    /// Pause forwarding every this many bytes (e.g. 4MiB)...
    #[arg(long, value_parser = support::parse_size, requires = "pause")]
    pause_every: Option<usize>,

    /// ...for this long (e.g. 500ms).
    #[arg(long, value_parser = support::parse_interval)]
    pause: Option<Duration>,

    /// Forward at most this many bytes per second (e.g. 10MiB).
    #[arg(long, value_parser = support::parse_size)]
    rate: Option<usize>,

    /// Start a partition this long after the start, and after each partition ends (e.g. 10s)...
    #[arg(long, value_parser = support::parse_interval, requires = "partition_for")]
    partition_every: Option<Duration>,

    /// ...and let it last this long (e.g. 5s): open connections are reset, new ones refused.
    #[arg(long, value_parser = support::parse_interval)]
    partition_for: Option<Duration>,

    /// ...this many times (default: for as long as the proxy runs).
    #[arg(long, requires = "partition_every")]
    partitions: Option<u64>,

    /// Seed of the jitter (default: from the clock; printed, so a run can be repeated).
    #[arg(long)]
    seed: Option<u64>,

    /// Print the summary as one JSON object on stdout as well.
    #[arg(long)]
    summary_json: bool,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    support::init_logging(None, support::LogFormat::Pretty);
    let seed = args.seed.unwrap_or_else(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64)
    });
    let faults = Faults {
        reset_every: args.reset_every.map(|n| n as u64),
        jitter: args.jitter,
        pause_every: args.pause_every.map(|n| n as u64),
        pause: args.pause.unwrap_or_default(),
        rate: args.rate.map(|n| n as u64),
        partition_every: args.partition_every,
        partition_for: args.partition_for.unwrap_or_default(),
        partitions: args.partitions,
        seed,
    };
    let listener = match TcpListener::bind(args.listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("chaos_proxy: cannot listen on {}: {e}", args.listen);
            return std::process::ExitCode::from(2);
        }
    };
    tracing::info!(listen = %args.listen, upstream = %args.upstream, seed, ?faults, "forwarding");
    let tally = Arc::new(Tally::default());
    tokio::select! {
        () = chaos::run(listener, args.upstream, faults, tally.clone()) => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    let t = &*tally;
    eprintln!(
        "chaos_proxy: {} connections ({} refused in a partition); injected {} resets, {} pauses, \
         {} partitions; forwarded {} bytes, {} back; seed {seed}",
        t.connections.load(Relaxed),
        t.refused.load(Relaxed),
        t.resets.load(Relaxed),
        t.pauses.load(Relaxed),
        t.partitions.load(Relaxed),
        t.bytes_forward.load(Relaxed),
        t.bytes_back.load(Relaxed),
    );
    if args.summary_json {
        let mut json = serde_json::to_value(t).expect("counters serialize");
        json["seed"] = seed.into();
        println!("{json}");
    }
    std::process::ExitCode::SUCCESS
}
