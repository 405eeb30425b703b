//! Both sides on transports other than TCP (SPEC §8.1.3): Unix domain sockets, with their kernel
//! queues probed (SPEC §5.3.2), and in-memory pipes, whose queues are reported unavailable, never 0
//! (SPEC §5.3.3); and builders kept in a variable and used twice (issue 11's E0716 example).

mod common;

use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

use common::{events, wait_until, Event};
use framepipe::consumer::{Consumer, Delivery, Incoming, Json, PeerAddr, Report, Stats};
use framepipe::flow::SocketQueues;
use framepipe::producer::Producer;
use tokio::sync::watch;
use tokio::task::JoinHandle;

const COUNT: u64 = 1_000;
/// The handler pauses on this frame, so the queues can be read while every connection is open.
const PAUSE_AT: u64 = 50;

/// Serves connections of events; each handler stops on frame [`PAUSE_AT`] until the test lets it go.
fn serve<L: framepipe::consumer::Listener>(
    consumer: Consumer<L>,
) -> (Stats, Pause, JoinHandle<Report>) {
    let stats = consumer.stats();
    let (release, gate) = watch::channel(false);
    let pause = Pause {
        entered: Arc::new(AtomicU64::new(0)),
        release,
    };
    let entered = pause.entered.clone();
    let server = tokio::spawn(
        consumer.serve(Json::<Event>::new(), move |d: Delivery<Event>| {
            let (entered, mut gate) = (entered.clone(), gate.clone());
            async move {
                assert_eq!(d.frame, d.item.seq);
                if d.frame == PAUSE_AT {
                    entered.fetch_add(1, SeqCst);
                    gate.wait_for(|open| *open).await.unwrap();
                }
            }
        }),
    );
    (stats, pause, server)
}

/// Holds every handler on frame [`PAUSE_AT`], so the queues can be read while the connections are
/// open, however slow the machine.
struct Pause {
    entered: Arc<AtomicU64>,
    release: watch::Sender<bool>,
}

impl Pause {
    /// Waits until `n` handlers are held.
    async fn held(&self, n: u64) {
        wait_until("the handlers to pause", Duration::from_secs(20), || {
            self.entered.load(SeqCst) >= n
        })
        .await;
    }

    /// Lets every handler, held now or later, go on.
    fn release(&self) {
        self.release.send_replace(true);
    }
}

fn assert_probed(queues: SocketQueues, sockets: usize) {
    assert_eq!(
        (queues.sockets, queues.unprobed),
        (sockets, 0),
        "{queues:?}"
    );
    assert!(queues.send_queue_bytes.is_some(), "{queues:?}");
    assert!(queues.recv_queue_bytes.is_some(), "{queues:?}");
}

fn assert_unavailable(queues: SocketQueues, unprobed: usize) {
    assert_eq!(
        (queues.sockets, queues.unprobed),
        (0, unprobed),
        "{queues:?}"
    );
    assert_eq!(queues.send_queue_bytes, None, "never 0: {queues:?}");
    assert_eq!(queues.recv_queue_bytes, None, "never 0: {queues:?}");
}

// SPEC §8.1.3, §5.3.2: `bind_unix` and `connect_unix`; the queues of a Unix socket are probed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unix_sockets_on_both_sides_with_probes() {
    let path = common::unix_path("both-sides");
    let consumer = Consumer::builder()
        .max_connections(Some(1))
        .bind_unix(&path)
        .await
        .unwrap();
    assert_eq!(
        consumer.listen_addr().unwrap(),
        PeerAddr::Unix(Some(path.clone()))
    );
    let (stats, pause, server) = serve(consumer);
    let conn = Producer::builder().connect_unix(&path).await.unwrap();
    assert_eq!(conn.peer_addr(), &PeerAddr::Unix(Some(path.clone())));
    let producer_stats = conn.stats();
    let producer = tokio::spawn(conn.send_json(events(1, COUNT)));
    pause.held(1).await;
    assert_probed(stats.socket_queues(), 1);
    assert_probed(producer_stats.socket_queues(), 1);
    let flow = stats.snapshot().flow;
    assert!(flow.peak_recv_queue_bytes.is_some(), "{flow:?}");
    pause.release();

    let sent = producer.await.unwrap().unwrap();
    assert!(sent.confirmed);
    let report = server.await.unwrap();
    let conn = &report.connections[0];
    assert!(matches!(conn.peer, PeerAddr::Unix(_)), "{conn:?}");
    assert_eq!((conn.frames, conn.errors), (COUNT, 0), "{conn:?}");
    assert_eq!(conn.bytes, sent.snapshot.bytes_written);
    std::fs::remove_file(&path).unwrap();
}

// SPEC §8.1.3, §10: a session over a Unix domain socket (`Builder::session_unix`): acknowledged
// frame by frame like one over TCP, with the socket's queues probed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_over_a_unix_socket() {
    let path = common::unix_path("session");
    let consumer = Consumer::builder().bind_unix(&path).await.unwrap();
    let (stats, pause, server) = serve(consumer);
    let session = Producer::builder().session_unix(&path);
    let producer_stats = session.stats();
    let producer = tokio::spawn(session.send_json(events(1, COUNT)));
    pause.held(1).await;
    assert_probed(producer_stats.socket_queues(), 1);
    pause.release();
    let report = producer.await.unwrap().expect("the session completes");
    assert_eq!(report.progress.delivered, COUNT);
    assert_eq!(stats.snapshot().sessions, 1);
    std::fs::remove_file(&path).unwrap();
    drop(server);
}

// SPEC §8.1.3, §5.3.3: `Incoming` over `tokio::io::duplex` pipes and `Producer::builder().on(..)`:
// the queues are reported unavailable on both sides while a pipe is open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_memory_pipes_report_queues_unavailable() {
    const PIPES: u64 = 2;
    let (pipes, incoming) = futures::channel::mpsc::unbounded();
    let consumer = Consumer::builder()
        .max_connections(Some(PIPES))
        .listener(Incoming::new(incoming, "pipes"))
        .unwrap();
    assert_eq!(consumer.listen_addr().unwrap(), PeerAddr::other("pipes"));
    let (stats, pause, server) = serve(consumer);
    let mut producers = Vec::new();
    let mut producer_stats = Vec::new();
    for i in 0..PIPES {
        let (near, far) = tokio::io::duplex(16 * 1024);
        pipes
            .unbounded_send((far, PeerAddr::other(format!("pipe-{i}"))))
            .unwrap();
        let conn = Producer::builder().on(near, PeerAddr::other("consumer"));
        producer_stats.push(conn.stats());
        producers.push(tokio::spawn(conn.send_json(events(i as u32, COUNT))));
    }
    pause.held(PIPES).await;
    assert_unavailable(stats.socket_queues(), PIPES as usize);
    let flow = stats.snapshot().flow;
    assert_eq!(flow.sockets.send_queue_bytes, None, "{flow:?}");
    assert_eq!(flow.peak_send_queue_bytes, None, "{flow:?}");
    assert_eq!(flow.peak_recv_queue_bytes, None, "{flow:?}");
    for s in &producer_stats {
        assert_unavailable(s.socket_queues(), 1);
        assert_eq!(s.snapshot().flow.peak_send_queue_bytes, None);
    }
    pause.release();

    for producer in producers {
        assert!(producer.await.unwrap().unwrap().confirmed);
    }
    let report = server.await.unwrap();
    let mut peers: Vec<String> = report
        .connections
        .iter()
        .map(|c| c.peer.to_string())
        .collect();
    peers.sort();
    assert_eq!(peers, ["pipe-0", "pipe-1"]);
    assert!(report.connections.iter().all(|c| c.frames == COUNT));
    assert_eq!(stats.socket_queues().unprobed, 0, "every pipe is closed");
}

// Issue 11: `let b = Consumer::builder().budget(1 << 20); b.bind(..)` failed with E0716. Builders are
// values now: one kept in a variable makes two consumers, another two producers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn builders_kept_in_a_variable_are_used_twice() {
    let b = Consumer::builder().budget(1 << 20).max_connections(Some(1));
    let first = b.bind("127.0.0.1:0").await.unwrap();
    let second = b.bind("127.0.0.1:0").await.unwrap();
    assert_eq!(b.get_queue_limits().get_max_bytes(), 1 << 20);
    let addrs = [first.local_addr().unwrap(), second.local_addr().unwrap()];
    let servers = [first, second].map(|consumer| {
        let (_, pause, server) = serve(consumer);
        pause.release();
        server
    });

    let p = Producer::builder().budget(1 << 20);
    let mut sends = Vec::new();
    for (i, addr) in addrs.into_iter().enumerate() {
        let conn = p.connect(addr).await.unwrap();
        sends.push(tokio::spawn(conn.send_json(events(i as u32, 100))));
    }
    assert_eq!(p.get_queue_limits().get_max_bytes(), 1 << 20);
    for send in sends {
        assert!(send.await.unwrap().unwrap().confirmed);
    }
    for server in servers {
        assert_eq!(server.await.unwrap().connections[0].frames, 100);
    }
}

// SPEC §6.7, §8.1.3: a `RawSender` over an in-memory pipe: bodies arrive unchanged and in order, and
// `close` is confirmed once the consumer has handled them all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_sender_over_a_pipe() {
    use bytes::Bytes;
    use framepipe::consumer::Raw;
    let (pipes, incoming) = futures::channel::mpsc::unbounded();
    let consumer = Consumer::builder()
        .max_connections(Some(1))
        .listener(Incoming::new(incoming, "pipes"))
        .unwrap();
    let bodies = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let server = tokio::spawn({
        let bodies = bodies.clone();
        consumer.serve(Raw, move |d: Delivery<Bytes>| {
            bodies.lock().unwrap().push(d.item);
            std::future::ready(())
        })
    });
    let (near, far) = tokio::io::duplex(4 * 1024);
    pipes.unbounded_send((far, PeerAddr::other("raw"))).unwrap();
    let sender = Producer::builder()
        .on(near, PeerAddr::other("consumer"))
        .raw_sender();
    let sent: Vec<Bytes> = (0..500u32)
        .map(|i| Bytes::from(format!("body {i} {}", "r".repeat(i as usize % 300))))
        .collect();
    for body in &sent {
        sender.send(body.clone()).await.unwrap();
    }
    let report = sender.close().await.unwrap();
    assert!(report.confirmed);
    assert_eq!(report.snapshot.frames_written, sent.len() as u64);
    assert_eq!(
        server.await.unwrap().connections[0].frames,
        sent.len() as u64
    );
    assert_eq!(*bodies.lock().unwrap(), sent);
}
