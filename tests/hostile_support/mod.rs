//! What the hostile-peer suite (`tests/hostile.rs`) runs its cases with: the consumer's child
//! process as the parent sees it, the well-behaved producer and the peers' helpers.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

use bytes::Bytes;
use framepipe::codec::Notice;
use framepipe::producer::Producer;
use serde_json::Value;

/// The consumer's memory limit in every case but the many-connections one: its budget.
pub(crate) const MEMORY_LIMIT: usize = 8 * 1024 * 1024;
/// Frames up to 2 MiB are accepted, so "10 bytes of a 1 MiB frame" is a frame in progress.
pub(crate) const MAX_FRAME: u32 = 2 * 1024 * 1024;
/// The allowance over the budget the issue sets for the whole process.
pub(crate) const SLACK: u64 = 8 * 1024 * 1024;
/// Frames the well-behaved producer sends in each case.
pub(crate) const GOOD_FRAMES: u64 = 300;

pub(crate) static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

// ---------------------------------------------------------------------------------------------
// The consumer's process
// ---------------------------------------------------------------------------------------------

/// Settings for the consumer process, passed through the environment.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) memory_limit: usize,
    pub(crate) budget: usize,
    pub(crate) idle_ms: u64,
    pub(crate) frame_ms: u64,
    pub(crate) max_open: usize,
    pub(crate) delay_ms: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            memory_limit: MEMORY_LIMIT,
            budget: 4 * 1024 * 1024,
            idle_ms: 1_500,
            frame_ms: 1_000,
            max_open: framepipe::consumer::DEFAULT_MAX_OPEN_CONNECTIONS,
            delay_ms: 0,
        }
    }
}

/// A field of `/proc/<pid>/status`, in KiB.
pub(crate) fn status_kb(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{field} not in /proc/{pid}/status"))
}

/// The consumer process, as the parent sees it.
pub(crate) struct ConsumerProcess {
    pub(crate) child: Child,
    pub(crate) stdin: Option<ChildStdin>,
    pub(crate) lines: mpsc::Receiver<String>,
    pub(crate) stderr: thread::JoinHandle<String>,
    pub(crate) addr: SocketAddr,
    pub(crate) settings: Settings,
    pub(crate) rss_listening_kb: u64,
}

/// What the consumer process said when it stopped.
pub(crate) struct Outcome {
    pub(crate) report: Value,
    pub(crate) log: String,
    pub(crate) out_of_order: u64,
    pub(crate) hwm_kb: u64,
    pub(crate) rss_listening_kb: u64,
    pub(crate) settings: Settings,
}

impl ConsumerProcess {
    pub(crate) fn start(settings: Settings) -> Self {
        let env = format!(
            "memory_limit={},budget={},idle_ms={},frame_ms={},max_open={},delay_ms={}",
            settings.memory_limit,
            settings.budget,
            settings.idle_ms,
            settings.frame_ms,
            settings.max_open,
            settings.delay_ms
        );
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "consumer_process",
                "--ignored",
                "--nocapture",
                "--test-threads",
                "1",
            ])
            .env("FRAMEPIPE_HOSTILE_CHILD", env)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("re-run this test binary as the consumer");
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let (tx, lines) = mpsc::channel();
        thread::spawn(move || {
            for line in stdout.lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut stderr = child.stderr.take().unwrap();
        let stderr = thread::spawn(move || {
            let mut s = String::new();
            let _ = stderr.read_to_string(&mut s);
            s
        });
        let stdin = child.stdin.take();
        let mut this = ConsumerProcess {
            child,
            stdin,
            lines,
            stderr,
            addr: "0.0.0.0:0".parse().unwrap(),
            settings,
            rss_listening_kb: 0,
        };
        this.addr = this.expect("ADDR").parse().unwrap();
        this.rss_listening_kb = this.expect("RSS").parse().unwrap();
        this
    }

    /// The value of the next line starting with `key`, skipping libtest's own lines.
    pub(crate) fn expect(&mut self, key: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self
                .lines
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("the consumer process never said {key}"));
            // libtest may have printed "test consumer_process ... " on the same line.
            if let Some((_, v)) = line.split_once(&format!("{key} ")) {
                return v.to_owned();
            }
        }
    }

    pub(crate) fn open_connections(&self) -> Option<u64> {
        // Read from /proc: the sockets the child has in ESTABLISHED state on its port.
        let n = self.sockets_on_port("01")?.count();
        Some(n as u64)
    }

    /// Connections waiting in the listener's accept queue (its `rx_queue` in `/proc/net/tcp`):
    /// closed or reset by their peer before the consumer took them, so not ESTABLISHED.
    pub(crate) fn unaccepted(&self) -> Option<u64> {
        let mut listeners = self.sockets_on_port("0A")?;
        let queues = listeners.next()?[4].clone();
        u64::from_str_radix(queues.split_once(':')?.1, 16).ok()
    }

    /// The fields of each line of `/proc/net/tcp` with local port `self.addr`'s and state `state`.
    fn sockets_on_port(&self, state: &str) -> Option<impl Iterator<Item = Vec<String>>> {
        let port = self.addr.port();
        let table = std::fs::read_to_string("/proc/net/tcp").ok()?;
        let state = state.to_owned();
        let lines: Vec<Vec<String>> = table
            .lines()
            .skip(1)
            .map(|l| l.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
            .filter(|f| {
                f.len() > 4
                    && f[3] == state
                    && u16::from_str_radix(f[1].rsplit(':').next().unwrap_or(""), 16).ok()
                        == Some(port)
            })
            .collect();
        Some(lines.into_iter())
    }

    pub(crate) fn stop(mut self) -> Outcome {
        drop(self.stdin.take());
        let out_of_order = self.expect("OUT_OF_ORDER").parse().unwrap();
        let report = serde_json::from_str(&self.expect("REPORT")).unwrap();
        let hwm_kb = self.expect("HWM").parse().unwrap();
        let status = self.child.wait().unwrap();
        assert!(status.success(), "the consumer process failed: {status}");
        Outcome {
            report,
            log: self.stderr.join().unwrap(),
            out_of_order,
            hwm_kb,
            rss_listening_kb: self.rss_listening_kb,
            settings: self.settings,
        }
    }
}

impl Outcome {
    /// The report of the connection from `peer`.
    pub(crate) fn connection(&self, peer: SocketAddr) -> &Value {
        self.report["connections"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["peer"] == peer.to_string())
            .unwrap_or_else(|| {
                panic!(
                    "no report for {peer}: {:#}\nlog:\n{}",
                    self.report["connections"], self.log
                )
            })
    }

    /// Asserts that the connection from `peer` ended on an error naming it and containing `what`,
    /// and that a WARN line with `peer=` said so.
    pub(crate) fn assert_closed_with(&self, peer: SocketAddr, what: &str) {
        let c = self.connection(peer);
        let err = c["error"]
            .as_str()
            .unwrap_or_else(|| panic!("the connection from {peer} ended without an error: {c:#}"));
        assert!(err.contains(&peer.to_string()), "names the peer: {err}");
        assert!(err.contains(what), "names the violation ({what}): {err}");
        self.assert_logged(peer, what);
    }

    /// Asserts that a WARN line names `peer` and contains `what`.
    pub(crate) fn assert_logged(&self, peer: SocketAddr, what: &str) {
        let line = format!("peer={peer}");
        assert!(
            self.log
                .lines()
                .any(|l| l.contains("WARN") && l.contains(&line) && l.contains(what)),
            "a WARN line with {line} and {what:?}; the log was:\n{}",
            self.log
        );
    }

    /// Asserts that the good producer's connection delivered every frame, in order, and that the
    /// process stayed within budget + 8 MiB. Returns (peak RSS growth, peak RSS) in KiB.
    pub(crate) fn assert_good_and_bounded(&self, good: SocketAddr, case: &str) -> (u64, u64) {
        let c = self.connection(good);
        assert_eq!(
            c["frames"], GOOD_FRAMES,
            "{case}: good producer intact: {c:#}"
        );
        assert_eq!(c["errors"], 0, "{case}: {c:#}");
        assert_eq!(self.out_of_order, 0, "{case}: frames out of order");
        let grew = self.hwm_kb.saturating_sub(self.rss_listening_kb);
        let bound = (self.settings.memory_limit as u64 + SLACK) / 1024;
        eprintln!(
            "[{case}] consumer RSS: {} KiB listening, peak {} KiB (+{grew} KiB; bound budget {} \
             KiB + 8 MiB = {bound} KiB); memory limit peak {} B, waits {}",
            self.rss_listening_kb,
            self.hwm_kb,
            self.settings.memory_limit / 1024,
            self.report["memory"]["peak"],
            self.report["memory"]["waits"],
        );
        assert!(
            grew <= bound,
            "{case}: consumer grew {grew} KiB, over budget + 8 MiB ({bound} KiB)"
        );
        let peak = self.report["memory"]["peak"].as_u64().unwrap();
        assert!(peak <= self.settings.memory_limit as u64, "{case}: {peak}");
        (grew, self.hwm_kb)
    }
}

// ---------------------------------------------------------------------------------------------
// Peers
// ---------------------------------------------------------------------------------------------

/// A well-behaved framepipe producer sending `GOOD_FRAMES` sequence-stamped frames of ~10 KB,
/// started before the attack and finishing during or after it. Returns its local address and a
/// handle that yields the frames it wrote.
pub(crate) fn good_producer(addr: SocketAddr) -> (SocketAddr, thread::JoinHandle<u64>) {
    let (tx, rx) = mpsc::channel();
    let handle = thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let conn = Producer::builder().connect(addr).await.unwrap();
            tx.send(()).unwrap();
            let pad = "x".repeat(10_000);
            let frames = (0..GOOD_FRAMES).map(move |seq| {
                Bytes::from(format!(r#"{{"seq":{seq},"pad":"{pad}"}}"#).into_bytes())
            });
            // Paced a little, so it is still sending while the attack runs.
            let paced = futures::StreamExt::then(futures::stream::iter(frames), |f| async {
                tokio::time::sleep(Duration::from_millis(2)).await;
                f
            });
            let report = conn
                .send_raw(paced)
                .await
                .expect("the good producer finishes");
            report.snapshot.frames_written
        })
    });
    rx.recv_timeout(Duration::from_secs(10))
        .expect("good producer connected");
    // Its address, as the consumer sees it: the one socket connected to the consumer so far.
    let clients = sockets_connected_to(addr.port());
    assert_eq!(clients.len(), 1, "{clients:?}");
    (clients[0], handle)
}

/// Local addresses of established IPv4 sockets whose remote port is `port`, from `/proc/net/tcp`.
pub(crate) fn sockets_connected_to(port: u16) -> Vec<SocketAddr> {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
    let parse = |hex: &str| -> Option<SocketAddr> {
        let (ip, port) = hex.split_once(':')?;
        let ip = u32::from_str_radix(ip, 16).ok()?;
        let port = u16::from_str_radix(port, 16).ok()?;
        // /proc/net/tcp shows the address in host byte order (little-endian here).
        let ip = std::net::Ipv4Addr::from(ip.swap_bytes());
        Some(SocketAddr::from((ip, port)))
    };
    table
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            if f.len() < 4 || f[3] != "01" {
                return None;
            }
            let (local, remote) = (parse(f[1])?, parse(f[2])?);
            (remote.port() == port).then_some(local)
        })
        .collect()
}

/// One frame on the wire (SPEC §1.1).
pub(crate) fn frame(body: &[u8]) -> Vec<u8> {
    let mut v = (body.len() as u32).to_be_bytes().to_vec();
    v.extend_from_slice(body);
    v
}

/// Connects, returning the stream and its local address (the consumer's name for it).
pub(crate) fn connect(addr: SocketAddr) -> (TcpStream, SocketAddr) {
    let s = TcpStream::connect(addr).unwrap();
    let local = s.local_addr().unwrap();
    (s, local)
}

/// Reads what the consumer sends until it closes (or 10 s), and parses it as a notice.
pub(crate) fn read_notice(s: &mut TcpStream) -> Option<Notice> {
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
    Notice::parse_frame(&got)
}

/// Runs `attack` against a fresh consumer with `settings` while a good producer streams, then
/// stops the consumer and returns what it said.
pub(crate) fn case(settings: Settings, attack: impl FnOnce(SocketAddr)) -> (Outcome, SocketAddr) {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let consumer = ConsumerProcess::start(settings);
    let (good, producer) = good_producer(consumer.addr);
    attack(consumer.addr);
    let written = producer.join().expect("good producer thread");
    assert_eq!(written, GOOD_FRAMES);
    // Let the consumer take every connection and finish handling before it is stopped.
    let deadline = Instant::now() + Duration::from_secs(20);
    let busy = |c: &ConsumerProcess| {
        c.open_connections().unwrap_or(0) > 0 || c.unaccepted().unwrap_or(0) > 0
    };
    while busy(&consumer) && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(50));
    }
    (consumer.stop(), good)
}

/// Sends `bytes` on a new connection and returns the notice read back and the local address.
pub(crate) fn send_and_read_notice(addr: SocketAddr, bytes: &[u8]) -> (Option<Notice>, SocketAddr) {
    let (mut s, local) = connect(addr);
    s.write_all(bytes).unwrap();
    (read_notice(&mut s), local)
}
