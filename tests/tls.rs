//! TLS and mutual TLS over loopback (SPEC §12), with certificates made in the test: sessions and
//! plain connections, a producer without TLS at a TLS port and one with TLS at a plaintext port
//! (each fails at once, saying so, on both sides), client certificates required and refused, and a
//! foreign TLS peer (Python's `ssl`) speaking the plain format both ways.

mod tls_support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use framepipe::consumer::tls::{ClientAuth, TlsServer};
use framepipe::consumer::{Consumer, Delivery, Raw};
use framepipe::producer::tls::TlsClient;
use framepipe::producer::Producer;
use tls_support::Pki;

fn stamped(i: u64) -> Bytes {
    Bytes::from(format!(
        "{{\"stamp\":{i},\"pad\":\"{}\"}}",
        "x".repeat(2_000)
    ))
}

type Seen = Arc<Mutex<Vec<u64>>>;

/// Serves `consumer`, recording each frame's stamp.
fn record<L: framepipe::consumer::Listener>(
    consumer: Consumer<L>,
) -> (Seen, tokio::task::JoinHandle<framepipe::consumer::Report>) {
    let seen = Seen::default();
    let s = seen.clone();
    let served = tokio::spawn(consumer.serve(Raw, move |d: Delivery<Bytes>| {
        let s = s.clone();
        async move {
            let v: serde_json::Value = serde_json::from_slice(&d.item).unwrap();
            s.lock().unwrap().push(v["stamp"].as_u64().unwrap());
        }
    }));
    (seen, served)
}

fn server(pki: &Pki, client_ca: Option<ClientAuth>) -> TlsServer {
    let ca = pki.path("ca.pem");
    let client_ca = client_ca.map(|auth| (ca.as_path(), auth));
    TlsServer::from_pem(
        pki.path("consumer.pem"),
        pki.path("consumer.key"),
        client_ca,
    )
    .unwrap()
}

fn client(pki: &Pki, cert: Option<&str>) -> TlsClient {
    let (pem, key) = cert.map_or((None, None), |name| {
        (
            Some(pki.path(&format!("{name}.pem"))),
            Some(pki.path(&format!("{name}.key"))),
        )
    });
    let pair = pem.as_deref().zip(key.as_deref());
    TlsClient::from_pem(pki.path("ca.pem"), pair).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_and_a_plain_connection_over_tls_and_mutual_tls() {
    let pki = Pki::new("both-modes");
    for auth in [None, Some(ClientAuth::Required)] {
        let consumer = Consumer::builder()
            .bind_tls("127.0.0.1:0", server(&pki, auth))
            .await
            .unwrap();
        let addr = consumer.local_addr().unwrap();
        let shutdown = consumer.shutdown_handle();
        let (seen, served) = record(consumer);
        let cert = auth.map(|_| "producer");
        // A session: the server name is the address's host, 127.0.0.1.
        let session = Producer::builder().session_tls(addr.to_string(), client(&pki, cert));
        let source = futures::stream::iter((0..500).map(stamped));
        let report = session
            .send_raw(source)
            .await
            .expect("the session completes");
        assert_eq!(report.progress.delivered, 500, "{auth:?}");
        // A plain connection, to the name `localhost`.
        let tls = client(&pki, cert).server_name("localhost").unwrap();
        let conn = Producer::builder()
            .connect_tls(&format!("localhost:{}", addr.port()), tls)
            .await
            .expect("connected over TLS");
        let sent = conn
            .send_raw(futures::stream::iter((500..1_000).map(stamped)))
            .await
            .unwrap();
        assert!(sent.confirmed, "{auth:?}");
        shutdown.shutdown();
        served.await.unwrap();
        assert_eq!(
            *seen.lock().unwrap(),
            (0..1_000).collect::<Vec<_>>(),
            "{auth:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_producer_without_tls_at_a_tls_port_fails_at_once_saying_so() {
    let pki = Pki::new("plain-at-tls");
    let consumer = Consumer::builder()
        .bind_tls("127.0.0.1:0", server(&pki, None))
        .await
        .unwrap();
    let addr = consumer.local_addr().unwrap();
    let (seen, _served) = record(consumer);
    let started = Instant::now();
    let err = Producer::builder()
        .session(addr.to_string())
        .send_raw(futures::stream::iter((0..10).map(stamped)))
        .await
        .expect_err("refused");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(err.code(), "tls_required", "{err}");
    assert!(
        err.to_string().contains("accepts TLS connections only"),
        "{err}"
    );
    assert!(seen.lock().unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_producer_at_a_plaintext_port_fails_at_once_saying_so() {
    let pki = Pki::new("tls-at-plain");
    let consumer = Consumer::builder().bind("127.0.0.1:0").await.unwrap();
    let addr = consumer.local_addr().unwrap();
    let (_seen, _served) = record(consumer);
    let started = Instant::now();
    let err = Producer::builder()
        .session_tls(addr.to_string(), client(&pki, None))
        .send_raw(futures::stream::iter((0..10).map(stamped)))
        .await
        .expect_err("not TLS");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert!(err.to_string().contains("does not speak TLS"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_refuses_a_producer_without_a_certificate_or_with_a_foreign_one() {
    let pki = Pki::new("mtls-refusals");
    let consumer = Consumer::builder()
        .bind_tls("127.0.0.1:0", server(&pki, Some(ClientAuth::Required)))
        .await
        .unwrap();
    let addr = consumer.local_addr().unwrap();
    let (seen, _served) = record(consumer);
    let intruder = TlsClient::from_pem(
        pki.path("ca.pem"),
        Some((&pki.path("intruder.pem"), &pki.path("intruder.key"))),
    )
    .unwrap();
    for (who, tls) in [
        ("no certificate", client(&pki, None)),
        ("a foreign CA's", intruder),
    ] {
        let started = Instant::now();
        let err = Producer::builder()
            .session_tls(addr.to_string(), tls)
            .reconnect_timeout(Duration::from_secs(30))
            .send_raw(futures::stream::iter((0..10).map(stamped)))
            .await
            .expect_err("refused");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{who}: {:?}",
            started.elapsed()
        );
        let text = err.to_string().to_lowercase();
        assert!(
            text.contains("certificate") || text.contains("alert"),
            "{who}: {err}"
        );
    }
    assert!(seen.lock().unwrap().is_empty());
}

/// Python's `ssl` module: `mode` is `send` (connect, write `frames` frames of the plain format, read
/// until the consumer closes) or `recv` (listen, print the port, read frames until the end and
/// print how many). Skipped with a message if python3 is missing.
fn python(mode: &str, pki: &Pki, arg: &str) -> Option<std::process::Child> {
    let script = r#"
import json, socket, ssl, struct, sys
mode, d, arg = sys.argv[1], sys.argv[2], sys.argv[3]
if mode == "send":
    ctx = ssl.create_default_context(cafile=d + "/ca.pem")
    host, port = arg.rsplit(":", 1)
    with socket.create_connection((host, int(port))) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost") as s:
            for i in range(300):
                body = json.dumps({"stamp": i, "from": "python"}).encode()
                s.sendall(struct.pack(">I", len(body)) + body)
            s.shutdown(socket.SHUT_WR) if hasattr(s, "shutdown") else None
            while s.recv(4096):
                pass
else:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(d + "/consumer.pem", d + "/consumer.key")
    srv = socket.create_server(("127.0.0.1", 0))
    print(srv.getsockname()[1], flush=True)
    conn, _ = srv.accept()
    with ctx.wrap_socket(conn, server_side=True) as s:
        buf, frames = b"", 0
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
            while len(buf) >= 4 and len(buf) >= 4 + struct.unpack(">I", buf[:4])[0]:
                n = struct.unpack(">I", buf[:4])[0]
                json.loads(buf[4:4 + n]); buf = buf[4 + n:]; frames += 1
        print(frames, flush=True)
"#;
    match std::process::Command::new("python3")
        .args(["-c", script, mode, pki.dir.to_str().unwrap(), arg])
        .stdout(std::process::Stdio::piped())
        .spawn()
    {
        Ok(child) => Some(child),
        Err(e) => {
            eprintln!("SKIPPED: python3 is not available ({e}): the foreign TLS peer is not tried");
            None
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_tls_peer_speaking_the_plain_format_both_ways() {
    use std::io::{BufRead, BufReader};
    let pki = Pki::new("foreign");
    // Python sends to our TLS consumer.
    let consumer = Consumer::builder()
        .bind_tls("127.0.0.1:0", server(&pki, None))
        .await
        .unwrap();
    let addr = consumer.local_addr().unwrap();
    let shutdown = consumer.shutdown_handle();
    let (seen, served) = record(consumer);
    let Some(child) = python("send", &pki, &format!("127.0.0.1:{}", addr.port())) else {
        return;
    };
    let out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    shutdown.shutdown();
    served.await.unwrap();
    assert_eq!(*seen.lock().unwrap(), (0..300).collect::<Vec<_>>());
    // Our TLS producer sends to Python.
    let mut child = python("recv", &pki, "-").expect("python3 ran a moment ago");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let port: u16 = lines.next().unwrap().unwrap().trim().parse().unwrap();
    let tls = client(&pki, None).server_name("localhost").unwrap();
    let conn = Producer::builder()
        .connect_tls(&format!("127.0.0.1:{port}"), tls)
        .await
        .unwrap();
    let sent = conn
        .send_raw(futures::stream::iter((0..200).map(stamped)))
        .await
        .unwrap();
    assert_eq!(sent.snapshot.frames_written, 200);
    let counted = tokio::task::spawn_blocking(move || lines.next().unwrap().unwrap())
        .await
        .unwrap();
    assert_eq!(counted.trim(), "200");
    let _ = child.wait();
}

/// A measurement, not a check (BENCHMARKS.md, issue 22): the time from `connect_tls` to a connected
/// TLS stream (TCP connect and TLS 1.3 handshake on loopback), in one process, the median and the
/// slowest of 50 after the first, and the first alone (which also seeds aws-lc's random generator).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement: cargo test --release --test tls -- --ignored --nocapture"]
async fn handshake_time() {
    let pki = Pki::new("timing");
    let consumer = Consumer::builder()
        .bind_tls("127.0.0.1:0", server(&pki, Some(ClientAuth::Required)))
        .await
        .unwrap();
    let addr = consumer.local_addr().unwrap().to_string();
    let (_seen, _served) = record(consumer);
    let tls = client(&pki, Some("producer"));
    let mut times = Vec::new();
    for _ in 0..51 {
        let t = Instant::now();
        let conn = Producer::builder()
            .connect_tls(&addr, tls.clone())
            .await
            .unwrap();
        times.push(t.elapsed());
        let sent = conn.send_raw(futures::stream::iter([stamped(0)])).await;
        assert!(sent.unwrap().confirmed);
    }
    let first = times.remove(0);
    times.sort();
    eprintln!(
        "mutual TLS connect + handshake: first {first:?}; then median {:?}, slowest {:?} of {}",
        times[times.len() / 2],
        times[times.len() - 1],
        times.len()
    );
}

/// An example binary (`cargo test` builds them beside the tests; a test run alone builds it here).
fn example(name: &str) -> std::path::PathBuf {
    let exe = std::env::current_exe().unwrap();
    let path = exe
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("examples")
        .join(name);
    if !path.exists() {
        let status = std::process::Command::new(env!("CARGO"))
            .args(["build", "--example", name])
            .status()
            .unwrap();
        assert!(status.success(), "cargo build --example {name}");
    }
    path
}

/// The binaries' flags (README, "Between hosts"): a mutual-TLS consumer and producer, then a
/// producer without TLS at the same port, which exits 3 saying `tls_required`.
#[test]
fn the_binaries_speak_mutual_tls_and_refuse_plaintext() {
    use std::process::{Command, Stdio};
    let pki = Pki::new("binaries");
    let p = |name: &str| pki.path(name).display().to_string();
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let addr = format!("127.0.0.1:{port}");
    let consumer = Command::new(example("consumer"))
        .args(["--listen", &addr, "--connections", "1", "--summary-json"])
        .args([
            "--tls-cert",
            &p("consumer.pem"),
            "--tls-key",
            &p("consumer.key"),
        ])
        .args(["--tls-client-ca", &p("ca.pem")])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let producer = |tls: &[&str]| {
        let started = Instant::now();
        loop {
            let out = Command::new(example("producer"))
                .args([
                    "--connect",
                    &addr,
                    "--frames",
                    "50",
                    "--reconnect-timeout",
                    "2s",
                ])
                .args(tls)
                .output()
                .unwrap();
            let text = String::from_utf8_lossy(&out.stderr).into_owned();
            let refused_tcp = text.contains("cannot connect") && text.contains("refused");
            if out.status.success() || !refused_tcp || started.elapsed() > Duration::from_secs(20) {
                return (out.status.code(), text);
            }
            std::thread::sleep(Duration::from_millis(100)); // the consumer is not listening yet
        }
    };
    // Without TLS first: refused by a notice, and not counted as the one connection.
    let (code, text) = producer(&[]);
    assert_eq!(code, Some(3), "{text}");
    assert!(text.contains("tls_required"), "{text}");
    let (ca, cert, key) = (p("ca.pem"), p("producer.pem"), p("producer.key"));
    let (code, text) = producer(&["--tls-ca", &ca, "--tls-cert", &cert, "--tls-key", &key]);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("50 delivered (acknowledged)"), "{text}");
    let out = consumer.wait_with_output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["frames"], 50, "{summary}");
}
