//! Attacks on sessions over loopback (issue 22, SPEC §10.2.5, §10.4.5, §10.6.5, §6.3.3): a peer that
//! knows a session's id (it used to be logged in full) and connects as its producer, and fake
//! consumers that lie to a real producer. Each test fails on the tree before resume secrets.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use framepipe::codec::session::{
    Control, Hello, Pacing, ResumeSecret, SessionFramer, SessionId, Unit, Welcome,
};
use framepipe::codec::Notice;
use framepipe::consumer::{Consumer, Delivery, Raw};
use framepipe::producer::Producer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Frame `i`'s body: its stamp.
fn stamped(i: u64) -> Bytes {
    Bytes::from(format!("{{\"stamp\":{i}}}"))
}

fn data_frame(body: &[u8]) -> Vec<u8> {
    let mut wire = (body.len() as u32).to_be_bytes().to_vec();
    wire.extend_from_slice(body);
    wire
}

/// An attacker's connection: a hello for `session` resuming at `next` with `secret`, and what the
/// consumer answered first (heartbeats skipped; `None` if it closed or said nothing for 10 s).
async fn attack(
    addr: SocketAddr,
    session: SessionId,
    next: u64,
    secret: Option<ResumeSecret>,
) -> (TcpStream, Option<Control>) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let hello = Control::Hello(Hello {
        version: 1,
        session,
        next,
        max_frame_length: 1 << 20,
        pacing: Pacing::default(),
        secret,
    });
    stream.write_all(&hello.to_frame().unwrap()).await.unwrap();
    let mut framer = SessionFramer::new(framepipe::codec::Builder::new().max_frame_length(0));
    let mut buf = BytesMut::new();
    loop {
        match framer.next_unit(&mut buf) {
            Ok(Some(Unit::Control {
                control: Control::Heartbeat,
                ..
            })) => continue,
            Ok(Some(Unit::Control { control, .. })) => return (stream, Some(control)),
            Ok(_) => {}
            Err(e) => panic!("the consumer sent something else: {e}"),
        }
        match tokio::time::timeout(Duration::from_secs(10), stream.read_buf(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => {}
            _ => return (stream, None),
        }
    }
}

fn notice_code(answer: &Option<Control>) -> &str {
    match answer {
        Some(Control::Notice(n)) => &n.error,
        other => panic!("expected a notice, got {other:?}"),
    }
}

/// A consumer that records the stamps its handler sees.
async fn recording_consumer() -> (
    SocketAddr,
    Arc<Mutex<Vec<u64>>>,
    framepipe::consumer::Shutdown,
    tokio::task::JoinHandle<framepipe::consumer::Report>,
) {
    let consumer = Consumer::builder().bind("127.0.0.1:0").await.unwrap();
    let addr = consumer.local_addr().unwrap();
    let shutdown = consumer.shutdown_handle();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    let served = tokio::spawn(consumer.serve(Raw, move |d: Delivery<Bytes>| {
        let s = s.clone();
        async move {
            let v: serde_json::Value = serde_json::from_slice(&d.item).unwrap();
            s.lock().unwrap().push(v["stamp"].as_u64().unwrap());
        }
    }));
    (addr, seen, shutdown, served)
}

async fn wait_for(seen: &Mutex<Vec<u64>>, n: usize) {
    let start = Instant::now();
    while seen.lock().unwrap().len() < n {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "{n} frames handled"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Takeover attempts on a live session by a peer that knows its id: with no secret, with a guessed
/// one, injecting forged frames, skipping ahead by 20, and jumping to 2^62. Each is refused with its
/// own notice; the real producer's session goes on, complete, and the handler sees exactly its
/// frames, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn knowing_a_session_id_is_not_enough_to_take_it_over_skip_or_jump() {
    let (addr, seen, shutdown, served) = recording_consumer().await;
    let session = Producer::builder()
        .session(addr.to_string())
        .reconnect_timeout(Duration::from_secs(10));
    let id = session.id();
    let sender = session.raw_sender();
    for i in 0..10 {
        sender.send(stamped(i)).await.unwrap();
    }
    wait_for(&seen, 10).await;
    let guessed = ResumeSecret::from_bytes([0xaa; 16]);
    for (next, secret, code) in [
        (10, None, "session_denied"),
        (10, Some(guessed), "session_denied"),
        (0, Some(guessed), "session_denied"),
        (30, Some(guessed), "session_denied"),
        (1 << 62, None, "session_denied"),
    ] {
        let (mut stream, answer) = attack(addr, id, next, secret).await;
        assert_eq!(notice_code(&answer), code, "hello at {next}");
        // Forged frames after the refusal are read by nobody.
        for forged in 1_000..1_020 {
            let _ = stream.write_all(&data_frame(&stamped(forged))).await;
        }
    }
    for i in 10..20 {
        sender.send(stamped(i)).await.unwrap();
    }
    let report = sender.close().await.expect("the session completes");
    assert!(report.confirmed);
    shutdown.shutdown();
    let consumer = served.await.unwrap();
    assert_eq!(*seen.lock().unwrap(), (0..20).collect::<Vec<_>>());
    assert_eq!(consumer.snapshot.session_resumes, 0, "nobody resumed it");
    assert_eq!(consumer.snapshot.sessions_refused, 5);
}

/// The owner itself cannot move the position forward either: a hello with the right secret
/// resuming beyond what was handled is a mismatch, refused, and the session is untouched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hello_with_the_secret_never_moves_the_position_forward() {
    let (addr, seen, shutdown, served) = recording_consumer().await;
    let id = SessionId::from_u128(0x0a11ce);
    let secret = Some(ResumeSecret::from_bytes([0x11; 16]));
    let (mut owner, answer) = attack(addr, id, 0, secret).await;
    assert!(
        matches!(answer, Some(Control::Welcome(Welcome { next: 0, .. }))),
        "{answer:?}"
    );
    for i in 0..5 {
        owner.write_all(&data_frame(&stamped(i))).await.unwrap();
    }
    wait_for(&seen, 5).await;
    for next in [6, 25, 1 << 62] {
        let (_, answer) = attack(addr, id, next, secret).await;
        assert_eq!(notice_code(&answer), "session_mismatch", "hello at {next}");
    }
    // The owner's connection still serves the session.
    for i in 5..8 {
        owner.write_all(&data_frame(&stamped(i))).await.unwrap();
    }
    wait_for(&seen, 8).await;
    // Resuming where it stands is what a producer does: welcomed at 8.
    let (_, answer) = attack(addr, id, 5, secret).await;
    assert!(
        matches!(answer, Some(Control::Welcome(Welcome { next: 8, .. }))),
        "{answer:?}"
    );
    shutdown.shutdown();
    let _ = served.await;
    assert_eq!(*seen.lock().unwrap(), (0..8).collect::<Vec<_>>());
}

/// A fake consumer: accepts, reads the hello, and then does what `act` says with the connection.
async fn fake_consumer<F, Fut>(act: F) -> SocketAddr
where
    F: Fn(TcpStream, Hello) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let act = Arc::new(act);
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let act = act.clone();
            tokio::spawn(async move {
                let mut framer = SessionFramer::new(framepipe::codec::Builder::new());
                let mut buf = BytesMut::new();
                let hello = loop {
                    if let Ok(Some(Unit::Control {
                        control: Control::Hello(h),
                        ..
                    })) = framer.next_unit(&mut buf)
                    {
                        break h;
                    }
                    if stream.read_buf(&mut buf).await.unwrap_or(0) == 0 {
                        return;
                    }
                };
                act(stream, hello).await;
            });
        }
    });
    addr
}

/// Sends a heartbeat every 100 ms and never a welcome, reading and dropping what comes.
async fn heartbeats_only(mut stream: TcpStream, _hello: Hello) {
    let beat = Control::Heartbeat.to_frame().unwrap();
    let mut sink = vec![0u8; 64 * 1024];
    loop {
        if stream.write_all(&beat).await.is_err() {
            return;
        }
        match tokio::time::timeout(Duration::from_millis(100), stream.read(&mut sink)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return,
            _ => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fake_consumer_sending_only_heartbeats_cannot_hold_a_producer_past_reconnect_timeout() {
    let addr = fake_consumer(heartbeats_only).await;
    let started = Instant::now();
    let sender = Producer::builder()
        .session(addr.to_string())
        .reconnect_timeout(Duration::from_secs(2))
        .raw_sender();
    sender.send(stamped(0)).await.unwrap();
    let closed = tokio::time::timeout(Duration::from_secs(30), sender.close()).await;
    let err = closed
        .expect("the session gives up")
        .expect_err("never welcomed");
    let waited = started.elapsed();
    assert_eq!(err.code(), "reconnect_timeout", "{err}");
    assert!(waited >= Duration::from_secs(2), "{waited:?}");
    assert!(
        waited < Duration::from_secs(10),
        "gave up at {waited:?}, not near 2 s"
    );
    assert_eq!(err.never_sent(), 1, "{err}");
}

/// Welcomes at `next` = 5 although nothing was written, then acknowledges everything.
async fn welcome_ahead(mut stream: TcpStream, hello: Hello) {
    let welcome = Control::Welcome(Welcome {
        version: 1,
        session: hello.session,
        next: hello.next + 5,
        pacing: Pacing {
            ack_every: 1,
            ack_interval_ms: 10,
            heartbeat_ms: 1_000,
        },
    });
    let _ = stream.write_all(&welcome.to_frame().unwrap()).await;
    let mut sink = vec![0u8; 64 * 1024];
    while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {}
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_welcome_resuming_ahead_is_a_protocol_error_never_a_delivery() {
    let addr = fake_consumer(welcome_ahead).await;
    let sender = Producer::builder()
        .session(addr.to_string())
        .reconnect_timeout(Duration::from_secs(5))
        .raw_sender();
    for i in 0..5 {
        sender.send(stamped(i)).await.unwrap();
    }
    let closed = tokio::time::timeout(Duration::from_secs(20), sender.close()).await;
    let err = closed.expect("ends").expect_err("not confirmed");
    assert_eq!(err.code(), "out_of_sequence", "{err}");
    let text = err.to_string();
    assert!(text.contains("0 frames delivered"), "{text}");
    assert!(text.contains("5 never sent"), "{text}");
}

/// Refuses the hello with a notice whose text forges a log line and clears the terminal.
async fn notice_with_escapes(mut stream: TcpStream, _hello: Hello) {
    let notice = Notice::new(
        "handler_failed",
        0,
        0,
        "ok\n2026-12-07T00:00:00Z  INFO forged: all frames delivered\u{1b}[2J\u{1b}]0;owned\u{7}",
    );
    let _ = stream
        .write_all(&Control::Notice(notice).to_frame().unwrap())
        .await;
    let _ = stream.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peers_notice_text_reaches_errors_escaped() {
    let addr = fake_consumer(notice_with_escapes).await;
    let sender = Producer::builder()
        .session(addr.to_string())
        .reconnect_timeout(Duration::from_secs(5))
        .raw_sender();
    sender.send(stamped(0)).await.unwrap();
    let err = tokio::time::timeout(Duration::from_secs(20), sender.close())
        .await
        .expect("ends")
        .expect_err("refused");
    let text = err.to_string();
    assert!(!text.chars().any(char::is_control), "{text:?}");
    assert!(text.contains(r"ok\n2026-12-07"), "{text}");
    assert!(text.contains(r"\u{1b}[2J"), "{text}");
}
