//! The hostile-peer suite (issue 6, SPEC §7.6): broken and malicious peers against the real consumer
//! over loopback. Every case checks three things:
//!
//! 1. the consumer reports a clear, typed error naming the peer and the violation: in its report
//!    (the connection's `error`) and in its WARN log line, and, where it closes the connection, in the
//!    notice the peer receives (SPEC §6.3);
//! 2. other connections keep flowing: a well-behaved framepipe producer runs alongside and all its
//!    frames arrive, in order;
//! 3. the consumer's memory stays within its budget (its `memory_limit`) + 8 MiB, *measured*: the
//!    consumer runs in a child process (this test binary re-executed, see [`consumer_process`]) whose
//!    peak RSS (`VmHWM`) is read from the kernel and compared with its RSS once it was listening.
//!
//! The cases run one at a time (a lock), so their timeouts are not at the mercy of each other's CPU
//! use. The figures are printed; `cargo test --test hostile -- --nocapture` shows them.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use framepipe::codec::Notice;
use framepipe::consumer::{Consumer, Json};
use serde_json::Value;

mod hostile_support;
use hostile_support::*;

/// Not a test: the consumer's side of every case, run in a child process by [`Child::start`]. Does
/// nothing unless `FRAMEPIPE_HOSTILE_CHILD` is set.
#[test]
#[ignore = "run by the hostile tests in a child process"]
fn consumer_process() {
    let Ok(settings) = std::env::var("FRAMEPIPE_HOSTILE_CHILD") else {
        return;
    };
    let get = |key: &str| -> u64 {
        settings
            .split(',')
            .find_map(|kv| kv.strip_prefix(&format!("{key}=")))
            .unwrap_or_else(|| panic!("{key} missing from {settings}"))
            .parse()
            .unwrap()
    };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_max_level(tracing::Level::WARN)
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let consumer = Consumer::builder()
            .max_frame_length(MAX_FRAME)
            .memory_limit(get("memory_limit") as usize)
            .budget(get("budget") as usize)
            .idle_timeout(Some(Duration::from_millis(get("idle_ms"))))
            .frame_timeout(Some(Duration::from_millis(get("frame_ms"))))
            .max_open_connections(get("max_open") as usize)
            .drain_timeout(Duration::from_millis(500))
            .bind("127.0.0.1:0")
            .await
            .unwrap();
        let delay = Duration::from_millis(get("delay_ms"));
        let stats = consumer.stats();
        println!("ADDR {}", consumer.local_addr().unwrap());
        println!("RSS {}", status_kb(std::process::id(), "VmRSS:"));
        // Stops when the parent closes our stdin.
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        thread::spawn(move || {
            let _ = std::io::stdin().read_to_end(&mut Vec::new());
            let _ = stop_tx.send(());
        });
        // Frames carrying a "seq" must arrive in order on their connection.
        let out_of_order = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let counted = out_of_order.clone();
        let report = consumer
            .serve_until(
                Json::<Value>::new(),
                move |d| {
                    let counted = counted.clone();
                    async move {
                        if let Some(seq) = d.item.get("seq").and_then(Value::as_u64) {
                            if seq != d.frame {
                                counted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            }
                        }
                        if !delay.is_zero() {
                            tokio::time::sleep(delay).await;
                        }
                    }
                },
                async move {
                    let _ = stop_rx.await;
                    // Let connections still being handled finish, so each one is reported.
                    let until = Instant::now() + Duration::from_secs(20);
                    while stats.snapshot().connections_open > 0 && Instant::now() < until {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                },
            )
            .await;
        println!(
            "OUT_OF_ORDER {}",
            out_of_order.load(std::sync::atomic::Ordering::Relaxed)
        );
        println!("REPORT {}", serde_json::to_string(&report).unwrap());
        println!("HWM {}", status_kb(std::process::id(), "VmHWM:"));
    });
}

// ---------------------------------------------------------------------------------------------
// Cases
// ---------------------------------------------------------------------------------------------

#[test]
fn length_0xffffffff_is_refused_from_the_header() {
    let mut peer = None;
    let (out, good) = case(Settings::default(), |addr| {
        let (notice, local) = send_and_read_notice(addr, &[0xFF, 0xFF, 0xFF, 0xFF, 1, 2, 3]);
        let notice = notice.expect("a notice before the close");
        assert_eq!(notice.error, "frame_too_large");
        peer = Some(local);
    });
    let peer = peer.unwrap();
    out.assert_closed_with(peer, "announces 4294967295 bytes");
    out.assert_good_and_bounded(good, "length 0xFFFFFFFF");
}

#[test]
fn length_limit_plus_one_is_refused() {
    let mut peer = None;
    let (out, good) = case(Settings::default(), |addr| {
        let header = (MAX_FRAME + 1).to_be_bytes();
        let (notice, local) = send_and_read_notice(addr, &header);
        assert_eq!(notice.expect("a notice").error, "frame_too_large");
        peer = Some(local);
    });
    out.assert_closed_with(
        peer.unwrap(),
        &format!(
            "announces {} bytes, over max_frame_length {MAX_FRAME}",
            MAX_FRAME + 1
        ),
    );
    out.assert_good_and_bounded(good, "length limit + 1");
}

#[test]
fn garbage_bytes_close_the_connection_with_a_typed_error() {
    let mut peer = None;
    let (out, good) = case(Settings::default(), |addr| {
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        let garbage: Vec<u8> = (0..65_536)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect();
        let (notice, local) = send_and_read_notice(addr, &garbage);
        let notice = notice.expect("a notice");
        assert!(
            ["frame_too_large", "not_framepipe"].contains(&notice.error.as_str()),
            "{notice:?}"
        );
        peer = Some(local);
    });
    out.assert_closed_with(peer.unwrap(), "over max_frame_length");
    out.assert_good_and_bounded(good, "garbage");
}

#[test]
fn an_http_request_is_told_it_is_not_a_framepipe_stream() {
    let mut peer = None;
    let (out, good) = case(Settings::default(), |addr| {
        let (notice, local) =
            send_and_read_notice(addr, b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n");
        assert_eq!(notice.expect("a notice").error, "not_framepipe");
        peer = Some(local);
    });
    out.assert_closed_with(peer.unwrap(), "not a framepipe stream");
    out.assert_closed_with(peer.unwrap(), "look like an HTTP request");
    let err = out.connection(peer.unwrap())["error"].as_str().unwrap();
    assert!(!err.starts_with("frame too large"), "{err}");
    out.assert_good_and_bounded(good, "HTTP request");
}

#[test]
fn a_non_utf8_body_loses_that_frame_only() {
    let mut peer = None;
    let (out, good) = case(Settings::default(), |addr| {
        let (mut s, local) = connect(addr);
        peer = Some(local);
        let mut bytes = frame(b"[\"caf\xe9\"]");
        bytes.extend(frame(br#"{"after":1}"#));
        s.write_all(&bytes).unwrap();
        s.shutdown(Shutdown::Write).unwrap();
        assert_eq!(
            read_notice(&mut s),
            None,
            "frame-local: no notice, a clean close"
        );
    });
    let c = out.connection(peer.unwrap());
    assert_eq!(
        (c["frames"].as_u64(), c["errors"].as_u64()),
        (Some(1), Some(1))
    );
    assert!(c["error"].is_null(), "{c:#}");
    out.assert_logged(peer.unwrap(), "invalid UTF-8 at line 1 column 6");
    out.assert_good_and_bounded(good, "non-UTF-8 body");
}

#[test]
fn json_nested_10000_deep_loses_that_frame_only() {
    let mut peer = None;
    let (out, good) = case(Settings::default(), |addr| {
        let (mut s, local) = connect(addr);
        peer = Some(local);
        let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        let mut bytes = frame(deep.as_bytes());
        bytes.extend(frame(br#"{"after":1}"#));
        s.write_all(&bytes).unwrap();
        s.shutdown(Shutdown::Write).unwrap();
        assert_eq!(read_notice(&mut s), None);
    });
    let c = out.connection(peer.unwrap());
    assert_eq!(
        (c["frames"].as_u64(), c["errors"].as_u64()),
        (Some(1), Some(1))
    );
    out.assert_logged(peer.unwrap(), "recursion limit exceeded");
    out.assert_good_and_bounded(good, "10,000-deep JSON");
}

/// A peer that stops reading its socket and keeps sending: once refused it is drained for
/// `drain_timeout` (0.5 s here) and then cut off, its input discarded unbuffered.
#[test]
fn a_peer_that_never_reads_and_keeps_sending_is_cut_off_after_the_drain() {
    let mut peer = None;
    let (out, good) = case(Settings::default(), |addr| {
        let (mut s, local) = connect(addr);
        peer = Some(local);
        let socket = socket2::SockRef::from(&s);
        socket.set_recv_buffer_size(4096).unwrap();
        s.write_all(&(MAX_FRAME + 1).to_be_bytes()).unwrap();
        let started = Instant::now();
        let chunk = vec![0xAB; 64 * 1024];
        let mut sent = 0usize;
        let ended = loop {
            if started.elapsed() > Duration::from_secs(10) {
                break false;
            }
            match s.write(&chunk) {
                Ok(n) => sent += n,
                Err(_) => break true,
            }
        };
        eprintln!(
            "[never reads] cut off after {:?}, {sent} bytes sent meanwhile",
            started.elapsed()
        );
        assert!(ended, "the consumer closed the connection");
    });
    out.assert_closed_with(peer.unwrap(), "over max_frame_length");
    out.assert_good_and_bounded(good, "never reads, keeps sending");
}

#[test]
fn a_thousand_idle_connections_meet_the_connection_limit() {
    let settings = Settings {
        idle_ms: 5_000,
        ..Settings::default()
    };
    let limit = settings.max_open;
    let mut first_refused = None;
    let mut refused = 0u64;
    let (out, good) = case(settings, |addr| {
        let started = Instant::now();
        let mut pending: Vec<(TcpStream, SocketAddr)> = (0..1_000)
            .map(|_| {
                let (s, local) = connect(addr);
                s.set_nonblocking(true).unwrap();
                (s, local)
            })
            .collect();
        let connected = started.elapsed();
        // Refusals arrive at once; those still silent after a while are being served. Read until
        // the refusals stop for a second, up to 3 s from the last connect, or 4.5 s from the
        // first, before the idle timeout (5 s) ends the served ones.
        let mut buf = [0u8; 4096];
        let (window, mut changed) = (Instant::now(), Instant::now());
        let settled = |refused: u64, changed: Instant| {
            refused >= (1_000 - limit) as u64 && changed.elapsed() > Duration::from_secs(1)
        };
        while window.elapsed() < Duration::from_secs(3)
            && started.elapsed() < Duration::from_millis(4_500)
            && !settled(refused, changed)
        {
            let before = refused;
            pending.retain_mut(|(s, local)| match s.read(&mut buf) {
                Ok(n) if n > 0 => {
                    let notice = Notice::parse_frame(&buf[..n]).expect("a whole notice");
                    assert_eq!(notice.error, "connection_limit");
                    assert!(notice.message.contains(&local.to_string()), "{notice:?}");
                    first_refused.get_or_insert(*local);
                    refused += 1;
                    false
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => true,
                other => panic!("{other:?}"),
            });
            if refused != before {
                changed = Instant::now();
            }
            thread::sleep(Duration::from_millis(50));
        }
        eprintln!(
            "[1,000 idle] connected in {connected:?}; {refused} refused with a notice, {} served",
            pending.len()
        );
        // The good producer holds a slot while it runs.
        assert!(pending.len() <= limit, "{}", pending.len());
        assert!(refused >= (1_000 - limit) as u64, "{refused}");
        // Served idle connections are closed by the idle timeout.
        for (s, _) in pending.iter_mut().take(3) {
            s.set_nonblocking(false).unwrap();
            assert_eq!(read_notice(s).expect("a notice").error, "idle_timeout");
        }
    });
    assert_eq!(out.report["connections_refused"].as_u64(), Some(refused));
    out.assert_logged(
        first_refused.unwrap(),
        "max_open_connections (256) are open",
    );
    out.assert_good_and_bounded(good, "1,000 idle connections");
}

#[test]
fn a_connect_disconnect_flood_leaves_the_consumer_serving() {
    let (out, good) = case(Settings::default(), |addr| {
        let started = Instant::now();
        for i in 0..2_000 {
            let s = TcpStream::connect(addr).unwrap();
            if i % 2 == 0 {
                // Half of them reset instead of closing.
                socket2::SockRef::from(&s)
                    .set_linger(Some(Duration::ZERO))
                    .unwrap();
            }
            drop(s);
        }
        eprintln!("[flood] 2,000 connects in {:?}", started.elapsed());
    });
    let accepted = out.report["connections_accepted"].as_u64().unwrap();
    assert!(accepted > 1_000, "{accepted}");
    assert_eq!(out.report["connections_open"].as_u64(), Some(0));
    out.assert_good_and_bounded(good, "connect/disconnect flood");
}

/// SPEC §7.6: many connections sending 1 MiB frames at once into a slow handler. Their queue
/// budgets (6 × 4 MiB) exceed the memory limit (16 MiB): readers wait instead, and every frame
/// still arrives. (What the limit does not count, about 1 MiB per busy connection here, is in
/// SPEC §7.6.4.)
#[test]
fn many_connections_of_large_frames_stay_under_the_memory_limit() {
    const CONNS: usize = 6;
    const FRAMES: usize = 8;
    let settings = Settings {
        delay_ms: 5,
        memory_limit: 16 * 1024 * 1024,
        ..Settings::default()
    };
    let mut peers = HashMap::new();
    let (out, good) = case(settings, |addr| {
        // 1 MiB on the wire that parses to a small value, so the handler's copy stays small.
        let body = format!(r#"{{"blob":1}}{}"#, " ".repeat(1_048_000));
        let wire: Vec<u8> = (0..FRAMES).flat_map(|_| frame(body.as_bytes())).collect();
        let wire = std::sync::Arc::new(wire);
        let senders: Vec<_> = (0..CONNS)
            .map(|_| {
                let (mut s, local) = connect(addr);
                let wire = wire.clone();
                (
                    local,
                    thread::spawn(move || {
                        s.write_all(&wire).unwrap();
                        s.shutdown(Shutdown::Write).unwrap();
                        // Wait for the consumer's close.
                        let _ = s.read(&mut [0u8; 16]);
                    }),
                )
            })
            .collect();
        for (local, t) in senders {
            t.join().unwrap();
            peers.insert(local, ());
        }
    });
    for peer in peers.keys() {
        let c = out.connection(*peer);
        assert_eq!(c["frames"].as_u64(), Some(FRAMES as u64), "{c:#}");
        assert_eq!(c["errors"].as_u64(), Some(0), "{c:#}");
    }
    let waits = out.report["memory"]["waits"].as_u64().unwrap();
    assert!(waits > 0, "readers waited for the memory limit");
    out.assert_good_and_bounded(good, "6 connections × 1 MiB frames");
}
