//! The chaos proxy's engine: forwards TCP connections to an upstream address and injects faults
//! into them. Used by `examples/chaos_proxy.rs` and by `tests/chaos_proxy.rs`.
//!
//! Faults act on the **forward** direction (client → upstream: the producer's frames); the return
//! direction (notices, acks) is copied as it comes, and ends with its connection.
//!
//! - **Reset** every `reset_every` forwarded bytes, ± `jitter` (drawn per connection): exactly that
//!   many bytes are forwarded, then both sockets are closed with `SO_LINGER` 0, so each side sees a
//!   connection reset. The cut lands anywhere, mid-frame or mid-header.
//! - **Pause** forwarding for `pause` every `pause_every` forwarded bytes.
//! - **Throttle** forwarding to `rate` bytes per second.
//! - **Partition** every `partition_every`, for `partition_for`: connections open at its start are
//!   reset, and connections made during it are accepted and reset at once.
#![allow(dead_code, unreachable_pub)] // the example and the test each use part of it

use std::io;
use std::net::{Shutdown, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};
use serde::Serialize;
use socket2::SockRef;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::time::Instant;

/// Bytes read from one side before they are written to the other.
const CHUNK: usize = 64 * 1024;

/// The faults to inject. `Faults::default()` injects none: a plain forwarding proxy.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    /// Reset each connection after about this many forwarded bytes.
    pub reset_every: Option<u64>,
    /// Spread of `reset_every`, as a fraction: 0.1 draws each cut in ±10%.
    pub jitter: f64,
    /// Pause forwarding every this many bytes…
    pub pause_every: Option<u64>,
    /// …for this long.
    pub pause: Duration,
    /// Forward at most this many bytes per second.
    pub rate: Option<u64>,
    /// Start a partition this long after the previous one ended (or after the start)…
    pub partition_every: Option<Duration>,
    /// …and let it last this long…
    pub partition_for: Duration,
    /// …this many times (`None`: for as long as the proxy runs).
    pub partitions: Option<u64>,
    /// Seed of the jitter: the same seed cuts the same connections at the same bytes.
    pub seed: u64,
}

/// A proxy with `faults` in front of `upstream`, on a loopback port of its own, running in a task:
/// its address and its counters.
pub async fn spawn(upstream: SocketAddr, faults: Faults) -> io::Result<(SocketAddr, Arc<Tally>)> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let tally = Arc::new(Tally::default());
    tokio::spawn(run(listener, upstream, faults, tally.clone()));
    Ok((addr, tally))
}

/// What the proxy did, counted as it happens.
#[derive(Debug, Default, Serialize)]
pub struct Tally {
    /// Connections accepted (including those refused during a partition).
    pub connections: AtomicU64,
    /// Connections accepted during a partition and reset at once.
    pub refused: AtomicU64,
    /// Resets injected by `reset_every` or at a partition's start.
    pub resets: AtomicU64,
    /// Pauses injected.
    pub pauses: AtomicU64,
    /// Partitions begun.
    pub partitions: AtomicU64,
    /// Bytes forwarded client → upstream.
    pub bytes_forward: AtomicU64,
    /// Bytes copied upstream → client.
    pub bytes_back: AtomicU64,
}

/// Accepts connections on `listener` and forwards each to `upstream` with `faults`, until the task
/// is dropped. Counts into `tally`.
pub async fn run(listener: TcpListener, upstream: SocketAddr, faults: Faults, tally: Arc<Tally>) {
    let (partition_tx, partition) = watch::channel(false);
    if let Some(every) = faults.partition_every {
        tokio::spawn(partitions(
            every,
            faults.partition_for,
            faults.partitions,
            partition_tx,
            tally.clone(),
        ));
    }
    let mut rng = SmallRng::seed_from_u64(faults.seed);
    loop {
        let Ok((client, peer)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        tally.connections.fetch_add(1, Relaxed);
        if *partition.borrow() {
            tally.refused.fetch_add(1, Relaxed);
            tracing::info!(%peer, "partitioned: connection reset");
            reset(&client);
            continue;
        }
        let cut = faults
            .reset_every
            .map(|n| jittered(&mut rng, n, faults.jitter));
        let conn = Conn {
            faults: faults.clone(),
            tally: tally.clone(),
            partition: partition.clone(),
            cut,
        };
        tokio::spawn(async move {
            match TcpStream::connect(upstream).await {
                Ok(up) => conn.forward(client, up, peer).await,
                Err(e) => {
                    tracing::warn!(%peer, "upstream {upstream} refused: {e}; connection reset");
                    reset(&client);
                }
            }
        });
    }
}

/// `n` ± `jitter` × `n`, at least 1.
fn jittered(rng: &mut SmallRng, n: u64, jitter: f64) -> u64 {
    let spread = (n as f64 * jitter.clamp(0.0, 1.0)) as i64;
    let delta = if spread > 0 {
        rng.random_range(-spread..=spread)
    } else {
        0
    };
    (n as i64 + delta).max(1) as u64
}

async fn partitions(
    every: Duration,
    lasting: Duration,
    count: Option<u64>,
    on: watch::Sender<bool>,
    tally: Arc<Tally>,
) {
    for _ in 0..count.unwrap_or(u64::MAX) {
        tokio::time::sleep(every).await;
        tally.partitions.fetch_add(1, Relaxed);
        tracing::info!(
            ?lasting,
            "partition begins: open connections reset, new ones refused"
        );
        on.send_replace(true);
        tokio::time::sleep(lasting).await;
        on.send_replace(false);
        tracing::info!("partition ends");
    }
    // The last partition is over; connections watch `on`, so it stays open for the proxy's life.
    std::future::pending::<()>().await;
}

/// Closes `stream` with `SO_LINGER` 0 once its last handle is dropped: the peer sees a reset.
fn reset(stream: &TcpStream) {
    let _ = SockRef::from(stream).set_linger(Some(Duration::ZERO));
}

/// One forwarded connection.
struct Conn {
    faults: Faults,
    tally: Arc<Tally>,
    partition: watch::Receiver<bool>,
    /// Forwarded bytes after which the connection is reset.
    cut: Option<u64>,
}

/// Why forwarding stopped.
enum End {
    /// The client closed its sending side: passed on as a FIN.
    Eof,
    /// A fault: reset both sides.
    Reset(&'static str),
    /// A read or write failed: passed on to the upstream as a reset, not counted as a fault.
    Failed,
}

impl Conn {
    async fn forward(mut self, client: TcpStream, up: TcpStream, peer: SocketAddr) {
        // Shared, not split: tokio's owned write halves send a FIN when dropped, which would come
        // before an injected reset.
        let (client, up) = (Arc::new(client), Arc::new(up));
        let back = tokio::spawn(copy_back(up.clone(), client.clone(), self.tally.clone()));
        let mut partition = self.partition.clone();
        let end = tokio::select! {
            end = self.pump(&client, &up) => end,
            _ = partition.wait_for(|on| *on) => End::Reset("partition"),
        };
        match end {
            End::Eof => {
                let _ = SockRef::from(&*up).shutdown(Shutdown::Write);
                let _ = back.await; // until the upstream closes its end
            }
            End::Reset(why) => {
                self.tally.resets.fetch_add(1, Relaxed);
                tracing::info!(%peer, why, "connection reset");
                reset(&client);
                reset(&up);
                back.abort();
            }
            End::Failed => {
                // The client failed (a reset, most often): the upstream is told the same way.
                reset(&up);
                back.abort();
            }
        }
    }

    /// Forwards client → upstream with the faults, until the client's end of stream or a fault.
    async fn pump(&mut self, from: &TcpStream, to: &TcpStream) -> End {
        let mut buf = vec![0u8; CHUNK];
        let mut forwarded = 0u64;
        let mut next_pause = self.faults.pause_every;
        let started = Instant::now();
        loop {
            let limit = [self.cut, next_pause]
                .into_iter()
                .flatten()
                .fold(CHUNK as u64, |want, at| want.min(at - forwarded));
            let n = match read(from, &mut buf[..limit as usize]).await {
                Ok(0) => return End::Eof,
                Ok(n) => n,
                Err(_) => return End::Failed,
            };
            if write_all(to, &buf[..n]).await.is_err() {
                return End::Failed;
            }
            forwarded += n as u64;
            self.tally.bytes_forward.fetch_add(n as u64, Relaxed);
            if self.cut == Some(forwarded) {
                return End::Reset("reset_every");
            }
            if next_pause == Some(forwarded) {
                self.tally.pauses.fetch_add(1, Relaxed);
                tokio::time::sleep(self.faults.pause).await;
                next_pause = self.faults.pause_every.map(|k| forwarded + k);
            }
            if let Some(rate) = self.faults.rate {
                let due = started + Duration::from_secs_f64(forwarded as f64 / rate as f64);
                tokio::time::sleep_until(due).await;
            }
        }
    }
}

/// Copies upstream → client until either ends, then passes the end on (FIN).
async fn copy_back(from: Arc<TcpStream>, to: Arc<TcpStream>, tally: Arc<Tally>) {
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = match read(&from, &mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if write_all(&to, &buf[..n]).await.is_err() {
            break;
        }
        tally.bytes_back.fetch_add(n as u64, Relaxed);
    }
    let _ = SockRef::from(&*to).shutdown(Shutdown::Write);
}

/// One read from a shared stream: waits for readability, then `read(2)`.
async fn read(from: &TcpStream, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        from.readable().await?;
        match from.try_read(buf) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            done => return done,
        }
    }
}

/// All of `bytes` to a shared stream.
async fn write_all(to: &TcpStream, mut bytes: &[u8]) -> io::Result<()> {
    while !bytes.is_empty() {
        to.writable().await?;
        match to.try_write(bytes) {
            Ok(n) => bytes = &bytes[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
