//! A session across a consumer process killed with SIGKILL and started again on the same port (SPEC
//! §10.4.2): the producer reconnects with backoff and resumes where the consumer last acknowledged.
//! Without a session store that is at-least-once: nothing is lost, and the frames the dead process
//! handled without acknowledging them are handled again by the new one.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use bytes::Bytes;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use framepipe::codec::session::{ResumeSecret, SessionId};
use framepipe::consumer::{Consumer, Delivery, Raw, SessionStore, StoredSession};
use framepipe::producer::Producer;

const FRAMES: u64 = 3_000;

/// Not a test: the consumer, in a child process (this test binary re-executed), listening on
/// `FRAMEPIPE_SESSION_CHILD` (an address; port 0 picks one). Prints its address, then `STAMP n` as
/// each frame's handler returns.
#[test]
#[ignore = "run in a child process by a_consumer_killed_and_restarted_loses_nothing"]
fn session_consumer_child() {
    let Some(addr) = std::env::var_os("FRAMEPIPE_SESSION_CHILD") else {
        return;
    };
    let addr = addr.into_string().unwrap();
    let runtime = child_runtime();
    runtime.block_on(async {
        let consumer = Consumer::builder().bind(addr.as_str()).await.unwrap();
        println!("ADDR {}", consumer.local_addr().unwrap());
        consumer
            .serve(Raw, |d: Delivery<Bytes>| async move {
                tokio::time::sleep(Duration::from_micros(500)).await;
                let text = std::str::from_utf8(&d.item).unwrap();
                println!(
                    "STAMP {}",
                    text.trim_start_matches('[').trim_end_matches(']')
                );
            })
            .await;
    });
}

/// A session store over the handler's own output (SPEC §10.3.1): the output is the list of stamps
/// handled, and a commit replaces one file holding the position and the whole output at once
/// (write, then rename), so after a crash both are there or neither is. The process being killed is
/// the crash tested here, so the page cache is durable enough and there is no `fsync`.
struct OutputStore {
    file: PathBuf,
    /// Output handled and not yet committed.
    pending: Mutex<Vec<u64>>,
    /// Output committed.
    committed: Mutex<Vec<u64>>,
}

impl OutputStore {
    fn open(file: PathBuf) -> Self {
        let committed = std::fs::read_to_string(&file)
            .map(|text| text.lines().skip(1).map(|l| l.parse().unwrap()).collect())
            .unwrap_or_default();
        OutputStore {
            file,
            pending: Mutex::default(),
            committed: Mutex::new(committed),
        }
    }

    /// The stamps committed in `file`, in order.
    fn output(file: &Path) -> Vec<u64> {
        Self::open(file.to_path_buf())
            .committed
            .into_inner()
            .unwrap()
    }
}

impl SessionStore for OutputStore {
    /// The first line: the position and the session's secret, as 32 hex digits.
    fn load(&self, _session: SessionId) -> std::io::Result<Option<StoredSession>> {
        let text = match std::fs::read_to_string(&self.file) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let first = text.lines().next().unwrap();
        let (next, secret) = first.split_once(' ').unwrap();
        let secret = u128::from_str_radix(secret, 16).unwrap().to_be_bytes();
        Ok(Some(StoredSession {
            next: next.parse().unwrap(),
            secret: ResumeSecret::from_bytes(secret),
        }))
    }

    fn commit(&self, _session: SessionId, stored: &StoredSession) -> std::io::Result<()> {
        let mut committed = self.committed.lock().unwrap();
        committed.append(&mut self.pending.lock().unwrap());
        let secret = u128::from_be_bytes(*stored.secret.as_bytes());
        let mut text = format!("{} {secret:032x}\n", stored.next);
        for stamp in committed.iter() {
            text += &format!("{stamp}\n");
        }
        let tmp = self.file.with_extension("tmp");
        std::fs::write(&tmp, text)?;
        std::fs::rename(&tmp, &self.file)
    }

    fn forget(&self, _session: SessionId) -> std::io::Result<()> {
        Ok(())
    }
}

/// Not a test: a consumer whose handler's output and position are committed together through
/// `OutputStore` at `FRAMEPIPE_STORE_FILE`, in a child process. Prints its address, then `STAMP n` as
/// each frame is committed.
#[test]
#[ignore = "run in a child process by a_consumer_with_a_store_killed_and_restarted_is_exactly_once"]
fn stored_consumer_child() {
    let (Some(addr), Some(file)) = (
        std::env::var_os("FRAMEPIPE_SESSION_CHILD"),
        std::env::var_os("FRAMEPIPE_STORE_FILE"),
    ) else {
        return;
    };
    let addr = addr.into_string().unwrap();
    let runtime = child_runtime();
    runtime.block_on(async {
        let store = Arc::new(OutputStore::open(PathBuf::from(file)));
        let consumer = Consumer::builder()
            .bind(addr.as_str())
            .await
            .unwrap()
            .session_store(store.clone());
        println!("ADDR {}", consumer.local_addr().unwrap());
        consumer
            .serve(Raw, move |d: Delivery<Bytes>| {
                let store = store.clone();
                async move {
                    tokio::time::sleep(Duration::from_micros(500)).await;
                    let text = std::str::from_utf8(&d.item).unwrap();
                    let stamp: u64 = text.trim_matches(|c| c == '[' || c == ']').parse().unwrap();
                    store.pending.lock().unwrap().push(stamp);
                    d.commit().unwrap();
                    println!("STAMP {stamp}");
                }
            })
            .await;
    });
}

/// The child consumer's runtime: one worker, as a small service would run.
fn child_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap()
}

/// Starts a child consumer on `addr`; its stdout lines arrive on the returned channel.
fn child(addr: &str) -> (Child, mpsc::Receiver<String>) {
    spawn_child("session_consumer_child", addr, None)
}

/// Starts the child test `name` as a consumer on `addr`, with `store` as its output store's file.
fn spawn_child(name: &str, addr: &str, store: Option<&PathBuf>) -> (Child, mpsc::Receiver<String>) {
    let mut command = Command::new(std::env::current_exe().unwrap());
    if let Some(file) = store {
        command.env("FRAMEPIPE_STORE_FILE", file);
    }
    let mut child = command
        .args(["--exact", name, "--ignored", "--nocapture"])
        .args(["--test-threads", "1"])
        .env("FRAMEPIPE_SESSION_CHILD", addr)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("re-run this test binary as the consumer");
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in stdout.lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    (child, lines)
}

/// The child's address, from its first lines.
fn address(lines: &mpsc::Receiver<String>) -> String {
    loop {
        let line = lines
            .recv_timeout(Duration::from_secs(20))
            .expect("the child speaks");
        if let Some((_, a)) = line.split_once("ADDR ") {
            return a.trim().to_owned();
        }
    }
}

fn stamp(line: &str) -> Option<u64> {
    line.split_once("STAMP ")?.1.trim().parse().ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_killed_and_restarted_loses_nothing() {
    let (mut first, first_lines) = child("127.0.0.1:0");
    let addr = address(&first_lines);
    let bodies = (0..FRAMES).map(|i| Bytes::from(format!("[{i}]")));
    let producer = tokio::spawn(
        Producer::builder()
            .session(addr.clone())
            .reconnect_timeout(Duration::from_secs(30))
            .send_raw(futures::stream::iter(bodies)),
    );
    // Let the first consumer handle some, then kill it mid-stream.
    let mut before = Vec::new();
    while before.len() < 500 {
        let line =
            tokio::task::block_in_place(|| first_lines.recv_timeout(Duration::from_secs(20)))
                .expect("the first consumer handles frames");
        before.extend(stamp(&line));
    }
    first.kill().unwrap(); // SIGKILL
    first.wait().unwrap();
    // Every line the dead child wrote, to the end of its pipe: lines still in the pipe count too.
    tokio::task::block_in_place(|| before.extend(first_lines.iter().filter_map(|l| stamp(&l))));
    let (mut second, second_lines) = child(&addr);
    assert_eq!(address(&second_lines), addr, "the same port");
    let report = tokio::time::timeout(Duration::from_secs(60), producer)
        .await
        .expect("the session completes")
        .unwrap()
        .expect("the session completes");
    // The second consumer has handled everything once the producer has its goodbye.
    let mut after = Vec::new();
    while after.last() != Some(&(FRAMES - 1)) {
        let line =
            tokio::task::block_in_place(|| second_lines.recv_timeout(Duration::from_secs(20)))
                .expect("the second consumer handles frames");
        after.extend(stamp(&line));
    }
    second.kill().unwrap();
    second.wait().unwrap();

    assert_eq!(
        before,
        (0..before.len() as u64).collect::<Vec<_>>(),
        "in order"
    );
    let resumed_at = after[0];
    assert_eq!(after, (resumed_at..FRAMES).collect::<Vec<_>>(), "in order");
    assert!(
        resumed_at <= before.len() as u64,
        "nothing lost between the two"
    );
    let again = before.len() as u64 - resumed_at;
    eprintln!(
        "restart: the first consumer handled {}, the second resumed at {resumed_at} ({again} handled \
         again); producer: {} connections, {} reconnects, {} resumes, resume {:?}",
        before.len(),
        report.progress.connections,
        report.progress.reconnects,
        report.progress.resumes,
        report.resume_times
    );
    assert!(report.complete);
    assert_eq!(
        (
            report.progress.delivered,
            report.progress.unacked,
            report.progress.never_sent
        ),
        (FRAMES, 0, 0)
    );
    assert_eq!(report.progress.resumes, 1);
}

/// The same with a session store committed together with the handler's output (SPEC §10.3): the
/// restarted consumer resumes where the store says, and the output has every stamp exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_with_a_store_killed_and_restarted_is_exactly_once() {
    let file = std::env::temp_dir().join(format!("framepipe-output-store-{}", std::process::id()));
    let _ = std::fs::remove_file(&file);
    let (mut first, first_lines) = spawn_child("stored_consumer_child", "127.0.0.1:0", Some(&file));
    let addr = address(&first_lines);
    let bodies = (0..FRAMES).map(|i| Bytes::from(format!("[{i}]")));
    let producer = tokio::spawn(
        Producer::builder()
            .session(addr.clone())
            .reconnect_timeout(Duration::from_secs(30))
            .send_raw(futures::stream::iter(bodies)),
    );
    let mut committed_before = 0;
    while committed_before < 500 {
        let line =
            tokio::task::block_in_place(|| first_lines.recv_timeout(Duration::from_secs(20)))
                .expect("the first consumer commits frames");
        committed_before += usize::from(stamp(&line).is_some());
    }
    first.kill().unwrap(); // SIGKILL, possibly between handling a frame and committing it
    first.wait().unwrap();
    let (mut second, second_lines) = spawn_child("stored_consumer_child", &addr, Some(&file));
    assert_eq!(address(&second_lines), addr, "the same port");
    let report = tokio::time::timeout(Duration::from_secs(60), producer)
        .await
        .expect("the session completes")
        .unwrap()
        .expect("the session completes");
    second.kill().unwrap();
    second.wait().unwrap();
    let output = OutputStore::output(&file);
    let _ = std::fs::remove_file(&file);
    eprintln!(
        "store restart: {} committed before the kill, output {} stamps; producer {} resumes",
        committed_before,
        output.len(),
        report.progress.resumes
    );
    assert_eq!(
        output,
        (0..FRAMES).collect::<Vec<_>>(),
        "every stamp exactly once, in order"
    );
    assert!(report.complete);
    assert_eq!(report.progress.delivered, FRAMES);
}
