//! The producer against hostile "consumers" over loopback (issue 6; SPEC §6.2–§6.4): one that
//! accepts and never reads, one that answers in another protocol or with noise, one that resets in
//! the middle of a frame. Each must end the producer with a typed error that names the peer, with
//! memory bounded by the producer's budget.
//!
//! The peers are plain `std::net` sockets, not the framepipe consumer. The producer runs in a child
//! process (this test binary re-run with `--exact hostile_child` and the scenario in
//! `FRAMEPIPE_HOSTILE_CHILD`), so its memory can be measured on its own: the flow snapshot's
//! in-flight peak (SPEC §5.3) and the kernel's `VmHWM`, compared with an idle child of the same
//! binary. The figures are printed (`--nocapture`) and appear in every assertion message.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::process::{Command, Stdio};
use std::sync::{mpsc, OnceLock};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use framepipe::codec::{Notice, MAX_NOTICE_LENGTH};
use framepipe::producer::{generator, Error, Producer};
use serde::{Deserialize, Serialize};

/// Environment variable naming the scenario a child runs; without it `hostile_child` does nothing.
const CHILD_ENV: &str = "FRAMEPIPE_HOSTILE_CHILD";
/// Environment variable with the hostile peer's address.
const ADDR_ENV: &str = "FRAMEPIPE_HOSTILE_ADDR";
/// The line of the child's stdout that carries its outcome.
const OUTCOME_PREFIX: &str = "HOSTILE_OUTCOME ";

/// The producer's queue budget in every child.
const BUDGET: usize = 1024 * 1024;
/// What the producer may use beyond its budget, by either measure (socket queues, the frame being
/// offered, the write batch, the reply buffer, encode chunks, allocator and runtime overhead).
const SLACK: u64 = 8 * 1024 * 1024;
/// The stall timeout of the stall scenarios: short, so the tests are quick.
const STALL: Duration = Duration::from_secs(1);
/// Frames offered in the scenarios that should never get to send them all: 6 GB of reference frames.
const ENDLESS: u64 = 100_000;
/// Frames of the short stream, which fits the kernel's socket buffers (about 120 KB).
const SHORT: u64 = 2;
/// The reference frame on the wire (header and body).
const REFERENCE_WIRE: usize = include_bytes!("../fixtures/seed-frame-50.bin").len();
/// Most a child may take, however loaded the machine; a hang fails instead of blocking the suite.
const CHILD_LIMIT: Duration = Duration::from_secs(40);
/// Most noise the noisy peer sends (in 1 MiB writes), unless the producer goes away first.
const NOISE_LIMIT: usize = 64 * 1024 * 1024;
/// The answer of an HTTP server to bytes it cannot parse.
const HTTP_400: &[u8] = b"HTTP/1.1 400 Bad Request\r\n\r\n";

/// What a child saw, printed as one JSON line on its stdout.
#[derive(Debug, Serialize, Deserialize)]
struct Outcome {
    /// `Ok`, or the error's variant name.
    variant: String,
    /// The error's message (empty if none).
    message: String,
    frames_written: u64,
    bytes_written: u64,
    /// `UnexpectedReply::received`.
    reply_received: Option<usize>,
    /// `UnexpectedReply::preview`.
    reply_preview: Option<String>,
    /// Seconds from connecting to the producer's return.
    secs: f64,
    /// The flow snapshot's in-flight peak (stages and socket queues).
    peak_in_flight_bytes: usize,
    /// The peak of each producer stage.
    stage_peaks: Vec<(String, usize)>,
    peak_send_queue_bytes: usize,
    /// `VmHWM` of the child when the producer returned.
    vm_hwm_bytes: u64,
}

// ---------------------------------------------------------------------------------------------
// The child: runs one scenario's producer and prints what happened.
// ---------------------------------------------------------------------------------------------

#[test]
#[ignore = "the producer side of the other tests in this file, run by them in a child process"]
fn hostile_child() {
    let Ok(scenario) = std::env::var(CHILD_ENV) else {
        return;
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let outcome = runtime.block_on(child(&scenario));
    println!(
        "{OUTCOME_PREFIX}{}",
        serde_json::to_string(&outcome).unwrap()
    );
}

async fn child(scenario: &str) -> Outcome {
    let source = generator::reference_frames(
        if scenario == "stall_closing" {
            SHORT
        } else {
            ENDLESS
        },
        50,
    );
    if scenario == "baseline" {
        // The same binary and runtime with nothing sent: what the scenarios are measured against.
        drop(source);
        return Outcome {
            variant: "Ok".into(),
            message: String::new(),
            frames_written: 0,
            bytes_written: 0,
            reply_received: None,
            reply_preview: None,
            secs: 0.0,
            peak_in_flight_bytes: 0,
            stage_peaks: Vec::new(),
            peak_send_queue_bytes: 0,
            vm_hwm_bytes: vm_hwm(),
        };
    }
    let addr: SocketAddr = std::env::var(ADDR_ENV).unwrap().parse().unwrap();
    let builder = Producer::builder().budget(BUDGET);
    let builder = match scenario {
        // Only the stall timeout can end these.
        "stall" => builder.stall_timeout(Some(STALL)),
        "stall_closing" => builder
            .stall_timeout(Some(STALL))
            .close_timeout(Duration::from_secs(600)),
        // The default stall timeout (60 s) is longer than a child may take: only what the test is
        // about can end these in time.
        "http" | "noise" | "reset" => builder,
        other => panic!("unknown scenario {other:?}"),
    };
    let conn = builder.connect(addr).await.expect("connects");
    let stats = conn.stats();
    let result = conn.send_json(source).await;
    let snap = stats.snapshot();
    let (variant, message) = match &result {
        Ok(report) => (
            format!("Ok(confirmed: {})", report.confirmed),
            String::new(),
        ),
        Err(e) => (variant(e).to_owned(), e.to_string()),
    };
    let (reply_received, reply_preview) = match &result {
        Err(Error::UnexpectedReply {
            received, preview, ..
        }) => (Some(*received), Some(preview.clone())),
        _ => (None, None),
    };
    Outcome {
        variant,
        message,
        frames_written: snap.frames_written,
        bytes_written: snap.bytes_written,
        reply_received,
        reply_preview,
        secs: snap.secs,
        peak_in_flight_bytes: snap.flow.peak_in_flight_bytes,
        stage_peaks: snap
            .flow
            .stages
            .iter()
            .map(|s| (s.name.to_string(), s.peak_bytes))
            .collect(),
        peak_send_queue_bytes: snap.flow.peak_send_queue_bytes.unwrap_or(0),
        vm_hwm_bytes: vm_hwm(),
    }
}

fn variant(e: &Error) -> &'static str {
    match e {
        Error::Connect { .. } => "Connect",
        Error::Encode { .. } => "Encode",
        Error::Rejected { .. } => "Rejected",
        Error::PeerClosed { .. } => "PeerClosed",
        Error::Stalled { .. } => "Stalled",
        Error::UnexpectedReply { .. } => "UnexpectedReply",
        Error::Io { .. } => "Io",
        _ => "unknown",
    }
}

fn vm_hwm() -> u64 {
    framepipe::flow::probe::peak_rss_bytes().expect("VmHWM is readable (Linux)")
}

// ---------------------------------------------------------------------------------------------
// The parent: runs a child against a peer and checks its outcome.
// ---------------------------------------------------------------------------------------------

/// Runs `scenario` in a child process against `addr` and returns what it printed.
fn run_child(scenario: &str, addr: Option<SocketAddr>) -> Outcome {
    let mut command = Command::new(std::env::current_exe().unwrap());
    command
        .args([
            "--exact",
            "hostile_child",
            "--nocapture",
            "--ignored",
            "--test-threads",
            "1",
        ])
        .env(CHILD_ENV, scenario)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(addr) = addr {
        command.env(ADDR_ENV, addr.to_string());
    }
    let child = command.spawn().expect("the test binary runs again");
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || tx.send(child.wait_with_output()));
    let output = match rx.recv_timeout(CHILD_LIMIT) {
        Ok(output) => output.expect("the child's output"),
        Err(_) => {
            // The child we started, by its id.
            // SAFETY: kill has no memory-safety preconditions.
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
            panic!("the {scenario} child did not end within {CHILD_LIMIT:?}: the producer hung");
        }
    };
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let line = stdout
        .lines()
        .find_map(|l| l.split_once(OUTCOME_PREFIX).map(|(_, json)| json))
        .unwrap_or_else(|| {
            panic!(
                "the {scenario} child printed no outcome ({})\n{stdout}\n{stderr}",
                output.status
            )
        });
    serde_json::from_str(line).expect("the outcome parses")
}

/// `VmHWM` of an idle child, measured once per run.
fn baseline_hwm() -> u64 {
    static BASELINE: OnceLock<u64> = OnceLock::new();
    *BASELINE.get_or_init(|| {
        let hwm = run_child("baseline", None).vm_hwm_bytes;
        eprintln!("baseline: idle child VmHWM {}", mib(hwm));
        hwm
    })
}

fn mib(bytes: u64) -> String {
    format!("{:.2} MiB", bytes as f64 / (1024.0 * 1024.0))
}

/// Prints the figures and checks both memory bounds; returns the figures for messages.
fn check_memory(scenario: &str, outcome: &Outcome) -> String {
    let baseline = baseline_hwm();
    let above = outcome.vm_hwm_bytes.saturating_sub(baseline);
    let bound = BUDGET as u64 + SLACK;
    let figures = format!(
        "{scenario}: {} in {:.2} s after {} frames ({} bytes); flow peak in flight {} \
         (stages {:?}, socket send queue peak {}); VmHWM {} = idle {} + {}; bound budget {} + {} = {}",
        outcome.variant,
        outcome.secs,
        outcome.frames_written,
        outcome.bytes_written,
        mib(outcome.peak_in_flight_bytes as u64),
        outcome.stage_peaks,
        mib(outcome.peak_send_queue_bytes as u64),
        mib(outcome.vm_hwm_bytes),
        mib(baseline),
        mib(above),
        mib(BUDGET as u64),
        mib(SLACK),
        mib(bound),
    );
    eprintln!("{figures}");
    // Stage peaks are exact; the in-flight sum is sampled (every 10 ms) and a fast failure can
    // end before a sample.
    assert!(
        outcome.stage_peaks.iter().any(|(_, peak)| *peak > 0),
        "the flow snapshot saw the producer's bytes: {figures}"
    );
    assert!(
        outcome.peak_in_flight_bytes as u64 <= bound,
        "in-flight peak within budget + slack: {figures}"
    );
    assert!(
        above <= bound,
        "process memory within the idle child + budget + slack: {figures}"
    );
    figures
}

/// Checks what every hostile scenario's error says.
fn check_error(outcome: &Outcome, expected: &str, peer: SocketAddr, figures: &str) {
    assert_eq!(outcome.variant, expected, "{figures}\n{}", outcome.message);
    let message = &outcome.message;
    assert!(
        message.contains(&format!("the consumer at {peer} ")),
        "the message names the consumer's address {peer}: {message}"
    );
    assert!(
        message.contains("delivery of") && message.contains("unknown"),
        "the message says delivery is unknown: {message}"
    );
    assert!(
        outcome.frames_written < ENDLESS,
        "the producer stopped early: {figures}"
    );
}

mod producer_hostile_support;
use producer_hostile_support::*;

// ---------------------------------------------------------------------------------------------
// The scenarios.
// ---------------------------------------------------------------------------------------------

#[test]
fn a_consumer_that_accepts_and_never_reads_ends_the_producer_with_stalled() {
    // SPEC §6.2.2: the socket takes nothing for stall_timeout while frames wait.
    let peer = Peer::spawn(true, hold);
    let addr = peer.addr;
    let outcome = run_child("stall", Some(addr));
    peer.finish();
    let figures = check_memory("never reads", &outcome);
    check_error(&outcome, "Stalled", addr, &figures);
    assert!(
        outcome.message.contains("accepted no bytes for"),
        "{}",
        outcome.message
    );
    assert!(
        outcome.secs >= STALL.as_secs_f64(),
        "not before the stall timeout: {figures}"
    );
    assert!(
        outcome.secs < 20.0,
        "within a few seconds of the stall timeout: {figures}"
    );
    // The producer wrote until the window closed, then stopped: about its kernel send buffer and
    // the peer's receive buffer, far less than the stream.
    assert!(
        outcome.bytes_written > 0 && outcome.bytes_written < 16 * 1024 * 1024,
        "{figures}"
    );
}

#[test]
fn a_consumer_that_never_reads_a_short_stream_ends_the_producer_with_stalled_while_closing() {
    // SPEC §6.2.3: every frame fits the kernel's buffers, so the writer finishes; the bytes are
    // never acknowledged, and the stall timeout (not the 600 s close timeout) ends the wait.
    let peer = Peer::spawn(true, hold);
    let addr = peer.addr;
    let outcome = run_child("stall_closing", Some(addr));
    peer.finish();
    let figures = check_memory("never reads, short stream", &outcome);
    check_error(&outcome, "Stalled", addr, &figures);
    assert_eq!(
        outcome.frames_written, SHORT,
        "every frame was written, so it stalled while closing: {figures}"
    );
    assert!(
        outcome.secs >= STALL.as_secs_f64() && outcome.secs < 20.0,
        "{figures}"
    );
}

#[test]
fn an_http_server_answering_400_ends_the_producer_with_unexpected_reply() {
    // SPEC §6.3.3: "HTTP" announces a 1.2 GB notice, so it is not one.
    let peer = Peer::spawn(true, |mut stream, until| {
        let mut request = [0u8; 1024];
        let got = stream.read(&mut request)?;
        stream.write_all(HTTP_400)?;
        stream.shutdown(Shutdown::Write)?;
        hold(stream, until)?;
        Ok(got)
    });
    let addr = peer.addr;
    let outcome = run_child("http", Some(addr));
    let request = peer.finish();
    let figures = check_memory("HTTP 400", &outcome);
    check_error(&outcome, "UnexpectedReply", addr, &figures);
    assert!(request > 0, "the producer sent the start of a frame");
    let shown = r#"(starts with "HTTP/1.1 400 Bad Request\r\n\r\n")"#;
    assert!(
        outcome.message.contains(shown),
        "the message shows the reply: {}",
        outcome.message
    );
    assert!(
        outcome.message.contains("is it a framepipe consumer?"),
        "{}",
        outcome.message
    );
    let received = outcome.reply_received.unwrap();
    assert!(
        (4..=HTTP_400.len()).contains(&received),
        "decided within the response: {received} bytes; {figures}"
    );
    assert!(
        outcome.secs < 20.0,
        "well before the stall timeout: {figures}"
    );
}

#[test]
fn a_consumer_sending_endless_noise_ends_the_producer_with_unexpected_reply() {
    // SPEC §6.3.3: the reply buffer never grows with what the peer sends.
    let peer = Peer::spawn(false, |mut stream, _| {
        stream.set_write_timeout(Some(PEER_LIMIT))?;
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let mut block = vec![0u8; 1024 * 1024];
        let mut sent = 0;
        while sent < NOISE_LIMIT {
            noise(&mut state, &mut block);
            match stream.write_all(&block) {
                Ok(()) => sent += block.len(),
                // The producer reset the connection: what it came to.
                Err(_) => break,
            }
        }
        Ok(sent)
    });
    let addr = peer.addr;
    let outcome = run_child("noise", Some(addr));
    let sent = peer.finish();
    let figures = check_memory("noise", &outcome);
    eprintln!(
        "noise: the peer wrote {} before the producer reset",
        mib(sent as u64)
    );
    check_error(&outcome, "UnexpectedReply", addr, &figures);
    let received = outcome.reply_received.unwrap();
    assert!(
        (4..=4 + MAX_NOTICE_LENGTH as usize).contains(&received),
        "read at most one notice's worth: {received} bytes; {figures}"
    );
    let preview = outcome.reply_preview.as_deref().unwrap();
    assert!(
        preview.contains("\\x") && preview.chars().count() <= 4 * 32 + 1,
        "a short, escaped preview: {preview}"
    );
    assert!(
        sent < NOISE_LIMIT,
        "the producer closed the connection instead of reading on: {figures}"
    );
}

#[test]
fn a_consumer_that_resets_mid_frame_ends_the_producer_with_peer_closed() {
    // SPEC §6.4: half of the first frame is read, then the connection is reset.
    let half = REFERENCE_WIRE / 2;
    let peer = Peer::spawn(true, move |mut stream, _| {
        let mut got = vec![0u8; half];
        stream.read_exact(&mut got)?;
        reset(stream);
        Ok(got.len())
    });
    let addr = peer.addr;
    let outcome = run_child("reset", Some(addr));
    let read = peer.finish();
    let figures = check_memory("reset mid-frame", &outcome);
    check_error(&outcome, "PeerClosed", addr, &figures);
    assert!(
        outcome.message.contains(&format!(
            "after {} frames ({} bytes) were written",
            outcome.frames_written, outcome.bytes_written
        )),
        "the message says how much was written: {}",
        outcome.message
    );
    assert!(
        outcome.bytes_written >= read as u64,
        "what the peer read was written: {figures}"
    );
    assert!(
        outcome.secs < 20.0,
        "well before the stall timeout: {figures}"
    );
}

// ---------------------------------------------------------------------------------------------
// What must not change: a notice is still a rejection. (An idle source is not a stall:
// `deterministic_producer.rs`, exactly, on a paused clock.)
// ---------------------------------------------------------------------------------------------

/// A well-formed notice with a code this producer does not know, as a newer consumer might send
/// when it is at its connection limit, is still a rejection (SPEC §6.3), not an unexpected reply.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notice_with_an_unknown_code_is_still_a_rejection() {
    let notice = Notice {
        error: "connection_limit".into(),
        frame: 0,
        offset: 0,
        message: "this consumer serves at most 1 connection at a time; try again later".into(),
    };
    let wire = notice.to_frame();
    let (listener, addr) = listener(false);
    let peer: JoinHandle<io::Result<()>> = thread::spawn(move || {
        let (mut stream, _) = listener.accept()?;
        stream.write_all(&wire)?;
        stream.shutdown(Shutdown::Write)?;
        // Drain for a while so closing does not reset before the notice is read (SPEC §6.3.2).
        stream.set_read_timeout(Some(Duration::from_secs(2)))?;
        let mut sink = [0u8; 64 * 1024];
        while let Ok(n) = stream.read(&mut sink) {
            if n == 0 {
                break;
            }
        }
        Ok(())
    });
    let err = tokio::time::timeout(CHILD_LIMIT, async {
        Producer::connect(addr)
            .await
            .unwrap()
            .send_json(generator::reference_frames(ENDLESS, 50))
            .await
    })
    .await
    .expect("finished in time")
    .expect_err("the consumer refused the connection");
    tokio::task::spawn_blocking(move || peer.join())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    match &err {
        Error::Rejected { notice: got, .. } => assert_eq!(got, &notice),
        other => panic!("expected Error::Rejected, got {other:?}: {other}"),
    }
    assert!(err.to_string().contains("connection_limit"), "{err}");
}
