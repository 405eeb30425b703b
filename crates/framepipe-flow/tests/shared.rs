//! `Shared` sockets over real loopback TCP and Unix domain sockets: bulk exchange both ways, end of
//! stream, and queue probes read through other clones of the `Arc` (SPEC §5.3).
#![cfg(unix)]

use std::io::IoSlice;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::time::{Duration, Instant};

use framepipe_flow::socket::{self, SocketOptions};
use framepipe_flow::{Shared, SocketProbe, SocketSet};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpStream, UnixStream};

const TEN_MB: usize = 10 * 1024 * 1024;

/// `len` bytes that differ from `seed`'s at most offsets, so a lost, repeated or swapped block shows.
fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i % 251) as u8 ^ seed ^ (i >> 16) as u8)
        .collect()
}

async fn tcp_pair(options: &SocketOptions) -> (Shared<TcpStream>, Shared<TcpStream>) {
    let listener = socket::bind("127.0.0.1:0", options).await.unwrap();
    let (a, b) = tokio::join!(
        socket::connect(listener.local_addr().unwrap(), options),
        listener.accept()
    );
    (Shared::new(a.unwrap()), Shared::new(b.unwrap().0))
}

fn unix_pair() -> (Shared<UnixStream>, Shared<UnixStream>) {
    let (a, b) = UnixStream::pair().unwrap();
    (Shared::new(a), Shared::new(b))
}

/// Writes `data` with `write_vectored` (two uneven slices a call, so writes end mid-slice), then
/// shuts down, twice.
async fn write_vectored_all(w: &mut (impl AsyncWrite + Unpin), data: &[u8]) {
    let mut at = 0;
    while at < data.len() {
        let mid = (at + 3_001).min(data.len());
        let end = (mid + 61_003).min(data.len());
        let n = w
            .write_vectored(&[IoSlice::new(&data[at..mid]), IoSlice::new(&data[mid..end])])
            .await
            .unwrap();
        assert!(n > 0);
        at += n;
    }
    w.shutdown().await.unwrap();
    w.shutdown().await.unwrap(); // idempotent
}

/// Both ends send 10 MB at once and read the other's until end of stream: `a` with `write_vectored`
/// and `b` with one `write_all` (partial writes), `b` reading with `tokio::io::copy` (8 KiB reads into
/// an initialised buffer) and `a` with `read_to_end` (large reads into uninitialised capacity, often
/// partial).
async fn exchange<T>(a: T, b: T)
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    assert!(a.is_write_vectored());
    let (from_a, from_b) = (pattern(TEN_MB, 0x5a), pattern(TEN_MB, 0xc3));
    let (mut a_read, mut a_write) = tokio::io::split(a);
    let (mut b_read, mut b_write) = tokio::io::split(b);
    let (mut at_a, mut at_b) = (Vec::new(), Vec::new());
    let started = Instant::now();
    let ((), (), got_a, got_b) = tokio::join!(
        write_vectored_all(&mut a_write, &from_a),
        async {
            b_write.write_all(&from_b).await.unwrap();
            b_write.shutdown().await.unwrap();
        },
        a_read.read_to_end(&mut at_a),
        tokio::io::copy(&mut b_read, &mut at_b),
    );
    assert_eq!(
        (got_a.unwrap() as u64, got_b.unwrap()),
        (TEN_MB as u64, TEN_MB as u64)
    );
    assert!(at_b == from_a, "b received what a sent, in order");
    assert!(at_a == from_b, "a received what b sent, in order");
    // After end of stream, reads keep returning 0.
    assert_eq!(a_read.read(&mut [0u8; 16]).await.unwrap(), 0);
    eprintln!("10 MB each way in {:?}", started.elapsed());
}

#[tokio::test]
async fn shared_tcp_streams_exchange_10_mb_each_way() {
    let (a, b) = tcp_pair(&SocketOptions::default()).await;
    exchange(a, b).await;
}

#[tokio::test]
async fn shared_unix_streams_exchange_10_mb_each_way() {
    let (a, b) = unix_pair();
    exchange(a, b).await;
}

/// Polls `check` until it holds or 5 s pass; the kernel may take a moment to settle (a delayed ACK).
async fn eventually(what: &str, mut check: impl FnMut() -> Option<String>) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match check() {
            None => return,
            Some(state) if Instant::now() > deadline => panic!("{what}: {state}"),
            Some(_) => tokio::time::sleep(Duration::from_millis(5)).await,
        }
    }
}

/// Writes from `tx` until the socket stops taking bytes (nobody reads `rx`), counting them.
async fn fill(tx: &mut (impl AsyncWrite + Unpin), written: &AtomicUsize) {
    let block = pattern(64 * 1024, 1);
    loop {
        let write = tx.write(&block);
        match tokio::time::timeout(Duration::from_millis(200), write).await {
            Ok(n) => written.fetch_add(n.unwrap(), Relaxed),
            Err(_) => return, // full: the kernel holds everything written
        };
    }
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn probes_through_other_clones_see_what_was_written_and_not_read_tcp() {
    // SPEC §5.3: small buffers, so the receiver's queue fills and bytes stay in the sender's.
    let options = SocketOptions::default()
        .send_buffer(Some(64 * 1024))
        .recv_buffer(Some(64 * 1024));
    let (mut tx, mut rx) = tcp_pair(&options).await;
    let sockets = SocketSet::new();
    sockets.register(tx.get_ref().clone());
    sockets.register(rx.get_ref().clone());
    let (tx_probe, rx_probe) = (tx.get_ref().clone(), rx.get_ref().clone());
    let written = AtomicUsize::new(0);
    fill(&mut tx, &written).await;
    let written = written.load(Relaxed);

    let mut read = 0;
    for take in [0, 100_000] {
        let mut buf = vec![0u8; take];
        rx.read_exact(&mut buf).await.unwrap();
        read += take;
        let (tx_probe, rx_probe, sockets) = (tx_probe.clone(), rx_probe.clone(), sockets.clone());
        // Read from another task, through the other clones, while the connection owns `tx`/`rx`.
        tokio::spawn(eventually(
            "queues hold what was written and not read",
            move || {
                let (unsent, unread) = (
                    tx_probe.unsent_bytes().unwrap(),
                    rx_probe.unread_bytes().unwrap(),
                );
                let q = sockets.queues();
                // Before any read the receiver's queue is full and the rest waits in the sender's.
                let ok = (read > 0 || unsent > 0)
                    && unread > 0
                    && unsent + unread == written - read
                    && q.total() == written - read;
                (!ok).then(|| {
                    format!("written {written} read {read}: unsent {unsent} unread {unread} {q:?}")
                })
            },
        ))
        .await
        .unwrap();
    }
    assert_eq!(sockets.queues().sockets, 2);
    drop((tx, tx_probe));
    assert_eq!(
        sockets.queues().sockets,
        1,
        "a dropped socket leaves the set"
    );
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn probes_through_other_clones_see_what_was_written_and_not_read_unix() {
    let (mut tx, mut rx) = unix_pair();
    let sockets = SocketSet::new();
    sockets.register(tx.get_ref().clone());
    sockets.register(rx.get_ref().clone());
    let (tx_probe, rx_probe) = (tx.get_ref().clone(), rx.get_ref().clone());
    let written = AtomicUsize::new(0);
    fill(&mut tx, &written).await;
    let written = written.load(Relaxed);
    let mut buf = vec![0u8; 100_000];
    rx.read_exact(&mut buf).await.unwrap();
    let unread = written - buf.len();
    let (unsent, got) = tokio::spawn(async move {
        (
            tx_probe.unsent_bytes().unwrap(),
            rx_probe.unread_bytes().unwrap(),
        )
    })
    .await
    .unwrap();
    // FIONREAD is exact; SIOCOUTQ counts the kernel's memory for the same bytes (see SocketProbe).
    assert_eq!(got, unread);
    eprintln!("written {written}, unread {unread}, unsent {unsent}");
    assert!(
        unsent >= unread && unsent < 2 * unread + 4096,
        "unsent {unsent} unread {unread}"
    );
    let q = sockets.queues();
    assert_eq!(
        (q.sockets, q.recv_queue_bytes, q.send_queue_bytes),
        (2, Some(unread), Some(unsent))
    );
}

/// `a` shuts its direction down: `b` reads what came before, then end of stream, and can still
/// answer.
async fn half_close<T: AsyncRead + AsyncWrite + Unpin>(mut a: T, mut b: T) {
    a.write_all(b"last words").await.unwrap();
    a.shutdown().await.unwrap();
    let mut got = Vec::new();
    b.read_to_end(&mut got).await.unwrap();
    assert_eq!(got, b"last words");
    b.write_all(b"reply").await.unwrap();
    b.shutdown().await.unwrap();
    let mut reply = Vec::new();
    a.read_to_end(&mut reply).await.unwrap();
    assert_eq!(reply, b"reply");
    a.shutdown().await.unwrap(); // a second shutdown, after the peer closed too, is still Ok
}

#[tokio::test]
async fn shutdown_gives_the_peer_end_of_stream_and_it_can_still_answer() {
    let (a, b) = tcp_pair(&SocketOptions::default()).await;
    half_close(a, b).await;
    let (a, b) = unix_pair();
    half_close(a, b).await;
}

/// Sends are made with `MSG_NOSIGNAL`: with `SIGPIPE` at its default action (death), writing to a
/// closed Unix peer is an `EPIPE` error. Were it a signal, this test binary would die.
#[cfg(target_os = "linux")]
#[tokio::test]
async fn writing_to_a_closed_unix_peer_is_an_error_not_a_signal() {
    let (mut a, b) = unix_pair();
    drop(b);
    // SAFETY: `signal` has no memory-safety preconditions; the previous action is put back.
    let before = unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    let result = a.write_all(&[0u8; 1024]).await;
    unsafe { libc::signal(libc::SIGPIPE, before) };
    assert_eq!(result.unwrap_err().kind(), std::io::ErrorKind::BrokenPipe);
}
