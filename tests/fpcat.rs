//! `fpcat` (examples/fpcat.rs): JSON Lines checked and grouped into frames, sent in a session
//! through a proxy that resets the connection, and written out again line for line; bad lines
//! reported by number, not sent, and said by the exit status.

#[path = "../examples/chaos/mod.rs"]
mod chaos;
#[path = "../examples/support/lines.rs"]
#[allow(dead_code, unreachable_pub)]
mod lines;
#[path = "tls_support/mod.rs"]
mod tls_support;

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};

/// The example binary: `cargo test` builds it beside the tests; a test run alone builds it here.
fn fpcat() -> PathBuf {
    static BUILT: std::sync::Once = std::sync::Once::new();
    let exe = std::env::current_exe().unwrap();
    let path = exe
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("examples/fpcat");
    BUILT.call_once(|| {
        if !path.exists() {
            let status = std::process::Command::new(env!("CARGO"))
                .args(["build", "--example", "fpcat"])
                .status()
                .unwrap();
            assert!(status.success(), "cargo build --example fpcat");
        }
    });
    assert!(path.exists(), "{} is missing", path.display());
    path
}

/// The listener, and what it writes, read as it comes (a full pipe would stop it: backpressure).
struct Listener {
    child: Child,
    out: tokio::task::JoinHandle<String>,
}

/// Starts `fpcat listen` on a free port: the listener and its address.
async fn listen() -> (Listener, String) {
    listen_with(&[]).await
}

/// Starts `fpcat listen` on a free port with `args` too.
async fn listen_with(args: &[&str]) -> (Listener, String) {
    let mut child = Command::new(fpcat())
        .args(["listen", "127.0.0.1:0"])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap()).lines();
    let first = stderr.next_line().await.unwrap().expect("a first line");
    let addr = first
        .strip_prefix("fpcat: listening on ")
        .expect(&first)
        .trim_end_matches(" (TLS)")
        .to_string();
    tokio::spawn(async move { while let Ok(Some(_)) = stderr.next_line().await {} });
    let mut stdout = child.stdout.take().unwrap();
    let out = tokio::spawn(async move {
        let mut out = String::new();
        stdout.read_to_string(&mut out).await.unwrap();
        out
    });
    (Listener { child, out }, addr)
}

/// Runs `fpcat send ADDR ARGS` with `input` on stdin: (exit status, stderr).
async fn send(addr: &str, args: &[&str], input: Vec<u8>) -> (i32, String) {
    let mut child = Command::new(fpcat())
        .arg("send")
        .arg(addr)
        .args(args)
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    tokio::spawn(async move {
        stdin.write_all(&input).await.unwrap();
    });
    let out = child.wait_with_output().await.unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Stops the listener with SIGINT and returns what it wrote.
async fn stop(listener: Listener) -> String {
    let Listener { mut child, out } = listener;
    // SAFETY: kill has no memory-safety preconditions; the pid is our live child's.
    unsafe { libc::kill(child.id().unwrap() as i32, libc::SIGINT) };
    let out = out.await.unwrap();
    let code = child.wait().await.unwrap().code();
    assert_eq!(code, Some(130), "a signal ends it");
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_line_arrives_once_in_order_across_connection_resets() {
    let (listener, addr) = listen().await;
    let faults = chaos::Faults {
        reset_every: Some(64 * 1024),
        ..chaos::Faults::default()
    };
    let (proxy, tally) = chaos::spawn(addr.parse().unwrap(), faults).await.unwrap();
    let input: String = (0..20_000)
        .map(|i| format!("{{\"n\":{i},\"text\":\"line {i} of the test\"}}\n"))
        .collect();
    let (code, stderr) = send(&proxy.to_string(), &[], input.clone().into_bytes()).await;
    assert_eq!(code, 0, "{stderr}");
    assert!(
        tally.resets.load(Relaxed) >= 5,
        "the proxy reset the connection"
    );
    let out = stop(listener).await;
    assert_eq!(out, input, "every line once, in order");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_line_is_reported_by_number_not_sent_and_said_by_the_exit_status() {
    let input = b"1\n2\n3\n{\n4\n".to_vec();
    let (listener, addr) = listen().await;
    let (code, stderr) = send(&addr, &["--lines-per-frame", "2"], input.clone()).await;
    assert_eq!(code, 65, "{stderr}");
    assert!(stderr.contains("fpcat: line 4: "), "{stderr}");
    let (code, stderr) = send(
        &addr,
        &["--lines-per-frame", "2", "--skip-bad", "--plain"],
        input,
    )
    .await;
    assert_eq!(code, 65, "{stderr}");
    // Stopped at line 4 after sending what came before; skipped it and went on.
    assert_eq!(stop(listener).await, "[1,2]\n[3]\n[1,2]\n[3,4]\n");
}

/// A frame's JSON may span lines (pretty-printed by another producer): it comes out as one line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_multi_line_frame_from_another_producer_comes_out_as_one_line() {
    let (listener, addr) = listen().await;
    let body = Bytes::from_static(b"{\n  \"a\": [1,\r\n 2]\n}");
    let report = framepipe::producer::Producer::builder()
        .connect(&addr)
        .await
        .unwrap()
        .send_raw(futures::stream::iter([body]))
        .await
        .unwrap();
    assert!(report.confirmed);
    assert_eq!(stop(listener).await, "{   \"a\": [1,   2] }\n");
}

/// The frame bodies `input` makes, and the bad lines counted.
async fn frames(input: &str, lines_per_frame: usize, skip_bad: bool) -> (Vec<String>, u64) {
    let counts = Arc::new(lines::LineCounts::default());
    let options = lines::LineOptions {
        lines_per_frame,
        skip_bad,
        max_line: 64,
    };
    let bodies: Vec<Bytes> = lines::json_frames(input.as_bytes(), options, counts.clone(), "test")
        .collect()
        .await;
    let bodies = bodies
        .iter()
        .map(|b| String::from_utf8(b.to_vec()).unwrap())
        .collect();
    (bodies, counts.bad.load(Relaxed))
}

#[tokio::test]
async fn lines_become_frames_and_bad_ones_stop_or_are_skipped() {
    let input = "{\"a\":1}\r\n\n[2]\nnot json\n3\n";
    assert_eq!(
        frames(input, 1, false).await,
        (vec!["{\"a\":1}".into(), "[2]".into()], 1)
    );
    assert_eq!(
        frames(input, 1, true).await,
        (vec!["{\"a\":1}".into(), "[2]".into(), "3".into()], 1)
    );
    assert_eq!(
        frames(input, 2, true).await,
        (vec!["[{\"a\":1},[2]]".into(), "[3]".into()], 1)
    );
    // The batch gathered before a bad line is sent before stopping.
    assert_eq!(
        frames("1\n2\n3\n{\n", 2, false).await,
        (vec!["[1,2]".into(), "[3]".into()], 1)
    );
    let long = format!("\"{}\"\n4\n", "x".repeat(100));
    assert_eq!(frames(&long, 1, true).await, (vec!["4".into()], 1));
}

/// `fpcat send` and `fpcat listen` over TLS (SPEC §12), in a session and plain: the lines arrive, and
/// a sender without TLS is refused with `tls_required`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lines_over_tls_and_a_sender_without_tls_refused() {
    let pki = tls_support::Pki::new("fpcat");
    let p = |name: &str| pki.path(name).display().to_string();
    let (cert, key, ca) = (p("consumer.pem"), p("consumer.key"), p("ca.pem"));
    let (listener, addr) = listen_with(&["--tls-cert", &cert, "--tls-key", &key]).await;
    let (code, err) = send(
        &addr,
        &["--tls-ca", &ca],
        b"{\"n\":1}\n{\"n\":2}\n".to_vec(),
    )
    .await;
    assert_eq!(code, 0, "{err}");
    let (code, err) = send(
        &addr,
        &["--plain", "--tls-ca", &ca],
        b"{\"n\":3}\n".to_vec(),
    )
    .await;
    assert_eq!(code, 0, "{err}");
    let (code, err) = send(&addr, &[], b"{\"n\":4}\n".to_vec()).await;
    assert_ne!(code, 0, "{err}");
    assert!(err.contains("tls_required"), "{err}");
    let out = stop(listener).await;
    assert_eq!(out, "{\"n\":1}\n{\"n\":2}\n{\"n\":3}\n");
}
