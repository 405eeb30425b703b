//! The NATS side of the comparison (compare/nats/README.md): a publisher of the reference workload
//! and a subscriber that parses each message into records, fast or slow, each printing one JSON
//! line of what it did. `run.sh` starts nats-server, runs both under `/usr/bin/time`, and runs the
//! framepipe binaries on the same workload beside them.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::{Parser, Subcommand};
use framepipe::producer::generator;
use framepipe::reference::Record;
use futures::StreamExt;

#[derive(Debug, Parser)]
struct Args {
    /// The NATS server.
    #[arg(long, default_value = "nats://127.0.0.1:4333")]
    url: String,

    /// The subject.
    #[arg(long, default_value = "framepipe.compare")]
    subject: String,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Publish COUNT reference frames (50 records each), serialized one by one as framepipe's
    /// typed producer does, then flush.
    Pub {
        #[arg(long, default_value_t = 50_000)]
        count: u64,
        #[arg(long, default_value_t = 50)]
        records_per_frame: usize,
    },
    /// Receive until COUNT messages arrived or none came for --idle-secs, parsing each into
    /// records after sleeping --delay-ms.
    Sub {
        #[arg(long, default_value_t = 50_000)]
        count: u64,
        #[arg(long, default_value_t = 0)]
        delay_ms: u64,
        /// The client's subscription buffer, in messages [default: async-nats's].
        #[arg(long)]
        capacity: Option<usize>,
        #[arg(long, default_value_t = 5)]
        idle_secs: u64,
    },
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    match args.command {
        Command::Pub {
            count,
            records_per_frame,
        } => publish(&args.url, args.subject, count, records_per_frame).await,
        Command::Sub {
            count,
            delay_ms,
            capacity,
            idle_secs,
        } => {
            let idle = Duration::from_secs(idle_secs);
            let delay = Duration::from_millis(delay_ms);
            subscribe(&args.url, args.subject, count, delay, capacity, idle).await
        }
    }
}

async fn publish(
    url: &str,
    subject: String,
    count: u64,
    records_per_frame: usize,
) -> Result<(), Box<dyn std::error::Error>> {
    let client = async_nats::connect(url).await?;
    let frames = generator::reference_frames(count, records_per_frame);
    futures::pin_mut!(frames);
    let started = Instant::now();
    let mut bytes = 0u64;
    while let Some(records) = frames.next().await {
        let body = Bytes::from(serde_json::to_vec(&*records)?);
        bytes += body.len() as u64;
        client.publish(subject.clone(), body).await?;
    }
    client.flush().await?;
    let secs = started.elapsed().as_secs_f64();
    let line = serde_json::json!({
        "role": "nats-publisher", "published": count, "bytes": bytes, "secs": secs,
        "mb_per_s": bytes as f64 / 1e6 / secs,
    });
    println!("{line}");
    Ok(())
}

async fn subscribe(
    url: &str,
    subject: String,
    count: u64,
    delay: Duration,
    capacity: Option<usize>,
    idle: Duration,
) -> Result<(), Box<dyn std::error::Error>> {
    let slow_events = Arc::new(AtomicU64::new(0));
    let seen = slow_events.clone();
    let mut options = async_nats::ConnectOptions::new().event_callback(move |event| {
        let seen = seen.clone();
        async move {
            if let async_nats::Event::SlowConsumer(_) = event {
                seen.fetch_add(1, Relaxed);
            }
        }
    });
    if let Some(capacity) = capacity {
        options = options.subscription_capacity(capacity);
    }
    let client = options.connect(url).await?;
    let mut sub = client.subscribe(subject).await?;
    client.flush().await?;
    eprintln!("ready");
    let (mut received, mut records, mut bytes) = (0u64, 0u64, 0u64);
    let mut first: Option<Instant> = None;
    let mut last = Instant::now();
    while received < count {
        let message = match tokio::time::timeout(idle, sub.next()).await {
            Ok(Some(message)) => message,
            Ok(None) | Err(_) => break,
        };
        first.get_or_insert_with(Instant::now);
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        let batch: Vec<Record> = serde_json::from_slice(&message.payload)?;
        records += batch.len() as u64;
        bytes += message.payload.len() as u64;
        received += 1;
        last = Instant::now();
    }
    let secs = first.map_or(0.0, |f| last.duration_since(f).as_secs_f64());
    let line = serde_json::json!({
        "role": "nats-subscriber", "expected": count, "received": received,
        "lost": count - received, "records": records, "bytes": bytes, "secs": secs,
        "mb_per_s": bytes as f64 / 1e6 / secs.max(1e-9),
        "slow_consumer_events": slow_events.load(Relaxed), "delay_ms": delay.as_millis() as u64,
        "capacity": capacity,
    });
    println!("{line}");
    Ok(())
}
