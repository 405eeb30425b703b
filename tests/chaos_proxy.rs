//! The chaos proxy (`examples/chaos_proxy.rs`) over loopback: it forwards faithfully when asked for
//! no faults, and each fault does what its flag says.

#[path = "../examples/chaos/mod.rs"]
mod chaos;

use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use chaos::{Faults, Tally};
use framepipe::consumer::{Consumer, Delivery, Raw};
use framepipe::producer::Producer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A proxy with `faults` in front of `upstream`: its address and its counters.
async fn proxy(upstream: SocketAddr, faults: Faults) -> (SocketAddr, Arc<Tally>) {
    chaos::spawn(upstream, faults)
        .await
        .expect("a loopback port")
}

/// A raw upstream that accepts one connection and reads it to its end: the bytes and how it ended.
async fn reading_upstream() -> (
    SocketAddr,
    tokio::task::JoinHandle<(Vec<u8>, std::io::Result<()>)>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let (mut conn, _) = listener.accept().await.unwrap();
        let mut got = Vec::new();
        let end = conn.read_to_end(&mut got).await.map(|_| ());
        (got, end)
    });
    (addr, task)
}

fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i % 251) as u8).collect()
}

#[tokio::test]
async fn without_faults_a_framepipe_stream_is_confirmed_through_the_proxy() {
    let consumer = Consumer::builder().bind("127.0.0.1:0").await.unwrap();
    let upstream = consumer.local_addr().unwrap();
    let served = tokio::spawn(consumer.serve(Raw, |_: Delivery<Bytes>| async {}));
    let (addr, tally) = proxy(upstream, Faults::default()).await;
    let bodies = (0..200u32).map(|i| Bytes::from(format!("[{i}]")));
    let report = Producer::builder()
        .connect(addr)
        .await
        .unwrap()
        .send_raw(futures::stream::iter(bodies))
        .await
        .unwrap();
    assert!(
        report.confirmed,
        "the consumer's close came back through the proxy"
    );
    assert_eq!(report.snapshot.frames_written, 200);
    assert_eq!(tally.resets.load(Relaxed), 0);
    assert_eq!(
        tally.bytes_forward.load(Relaxed),
        report.snapshot.bytes_written
    );
    served.abort();
}

#[tokio::test]
async fn reset_every_cuts_at_exactly_that_byte_and_resets_both_sides() {
    let (upstream, received) = reading_upstream().await;
    let faults = Faults {
        reset_every: Some(3_000),
        ..Faults::default()
    };
    let (addr, tally) = proxy(upstream, faults).await;
    let mut client = TcpStream::connect(addr).await.unwrap();
    let sent = pattern(10_000);
    let _ = client.write_all(&sent).await; // may fail once the reset arrives
    let (got, end) = received.await.unwrap();
    assert_eq!(got, sent[..3_000], "exactly 3,000 bytes forwarded");
    let err = end.expect_err("the upstream sees a reset, not an end of stream");
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionReset);
    let mut rest = Vec::new();
    let back = client.read_to_end(&mut rest).await;
    assert_eq!(
        back.expect_err("the client sees a reset").kind(),
        std::io::ErrorKind::ConnectionReset
    );
    assert_eq!(tally.resets.load(Relaxed), 1);
}

#[tokio::test]
async fn jitter_draws_each_cut_within_its_range() {
    // ±10% of 5,000: every cut between 4,500 and 5,500, and not all at one byte.
    let mut cuts = Vec::new();
    for seed in 0..8 {
        let (upstream, received) = reading_upstream().await;
        let faults = Faults {
            reset_every: Some(5_000),
            jitter: 0.1,
            seed,
            ..Faults::default()
        };
        let (addr, _) = proxy(upstream, faults).await;
        let mut client = TcpStream::connect(addr).await.unwrap();
        let _ = client.write_all(&pattern(20_000)).await;
        cuts.push(received.await.unwrap().0.len());
    }
    assert!(cuts.iter().all(|c| (4_500..=5_500).contains(c)), "{cuts:?}");
    assert!(cuts.iter().any(|c| *c != cuts[0]), "{cuts:?}");
}

#[tokio::test]
async fn pauses_hold_the_bytes_back_then_forward_them_all() {
    let (upstream, received) = reading_upstream().await;
    let faults = Faults {
        pause_every: Some(1_000),
        pause: Duration::from_millis(150),
        ..Faults::default()
    };
    let (addr, tally) = proxy(upstream, faults).await;
    let started = Instant::now();
    let mut client = TcpStream::connect(addr).await.unwrap();
    let sent = pattern(2_500);
    client.write_all(&sent).await.unwrap();
    client.shutdown().await.unwrap();
    let (got, end) = received.await.unwrap();
    end.unwrap();
    assert_eq!(got, sent);
    assert_eq!(tally.pauses.load(Relaxed), 2, "after 1,000 and 2,000 bytes");
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_partition_resets_open_connections_and_refuses_new_ones() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((conn, _)) = listener.accept().await {
            held.push(conn); // accepted, never read: the proxy decides
        }
    });
    let faults = Faults {
        partition_every: Some(Duration::from_millis(300)),
        partition_for: Duration::from_secs(60),
        ..Faults::default()
    };
    let (addr, tally) = proxy(upstream, faults).await;
    let mut open = TcpStream::connect(addr).await.unwrap();
    let mut buf = [0u8; 1];
    let err = open
        .read(&mut buf)
        .await
        .expect_err("reset at the partition");
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionReset);
    assert_eq!(tally.partitions.load(Relaxed), 1);
    let mut late = TcpStream::connect(addr).await.unwrap();
    let err = late
        .read(&mut buf)
        .await
        .expect_err("refused during the partition");
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionReset);
    assert_eq!(tally.refused.load(Relaxed), 1);
    assert_eq!(tally.resets.load(Relaxed), 1);
}
