//! One run as three processes, and the protocol between them.
//!
//! The parent re-executes its own binary twice with a hidden `--role`, so that each side's peak RSS
//! and CPU time are its own:
//!
//! ```text
//!  parent ──spawn──► consumer child: binds 127.0.0.1:0, prints `LISTEN <port>`, accepts one
//!    │                connection, consumes it to the end, checks it, prints one JSON line
//!    └──spawn──► producer child: connects to <port>, sends the stream, prints one JSON line
//! ```
//!
//! The JSON line ([`SideReport`]) holds `frames`, `wire_bytes`, `elapsed_s`, `user_s`, `sys_s`
//! (`getrusage(RUSAGE_SELF)`: the whole process, setup included) and `peak_rss_bytes` (`VmHWM`). A
//! child that finds anything wrong (wrong frame count, a decode error, a connection error) says why
//! on stderr and exits with status 1; the parent then reports the run as failed, with both children's
//! stderr, and kills whatever is still running. A run that outlives its deadline is killed too.
//!
//! Each child runs one current-thread Tokio runtime (`new_current_thread().enable_all()`), whatever
//! the stack.

use std::hint::black_box;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::process::{Child, ChildStdout, Command, ExitCode, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};
use framepipe::reference::Record;
use serde::{Deserialize, Serialize};

use crate::workload::{Payload, Shape, Stack};
use crate::{baseline, framepipe_side, plain};

/// How long the consumer child may take to start listening.
const LISTEN_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the other child may take to finish once one has failed, before it is killed.
const FAILURE_GRACE: Duration = Duration::from_secs(2);
/// How often the parent looks at its children.
const POLL: Duration = Duration::from_millis(10);
/// Lines of a failed child's stderr quoted in the failure message.
const STDERR_LINES: usize = 20;

/// Which side a child process plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Role {
    /// Listens, accepts one connection and consumes it.
    Consumer,
    /// Connects and sends the stream.
    Producer,
    /// Measures serialize-only and parse-only for the 2-core limit (`limit.rs`).
    Components,
}

impl Role {
    fn name(self) -> &'static str {
        match self {
            Role::Consumer => "consumer",
            Role::Producer => "producer",
            Role::Components => "components",
        }
    }
}

/// The hidden arguments a child is started with. Not for people: the parent writes them.
#[derive(Debug, Clone, Args)]
pub(crate) struct ChildArgs {
    /// Run as one side of a run (set by the parent).
    #[arg(long, hide = true, value_enum)]
    pub(crate) role: Option<Role>,
    /// The stack this child runs.
    #[arg(long, hide = true, requires = "role", value_enum, default_value_t = Stack::Framepipe)]
    stack: Stack,
    /// What the consumer does with bodies.
    #[arg(long, hide = true, requires = "role", value_enum, default_value_t = Payload::Typed)]
    payload: Payload,
    /// Frames to send or to expect.
    #[arg(long, hide = true, requires = "role", default_value_t = 0)]
    pub(crate) frames: u64,
    /// Reference records per frame.
    #[arg(long, hide = true, requires = "role", default_value_t = 0)]
    pub(crate) records_per_frame: usize,
    /// Bytes of each body.
    #[arg(long, hide = true, requires = "role", default_value_t = 0)]
    body_len: u64,
    /// The consumer's port (producer only).
    #[arg(long, hide = true, requires = "role", default_value_t = 0)]
    port: u16,
}

/// What one side reports at the end of a run: one JSON line on its stdout.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub(crate) struct SideReport {
    /// Frames sent (producer) or received and checked (consumer).
    pub(crate) frames: u64,
    /// Bytes on the wire, headers included.
    pub(crate) wire_bytes: u64,
    /// Seconds: consumer from accepting the connection to the end of the stream (the last frame
    /// handled); producer from before connecting until its send call returned.
    pub(crate) elapsed_s: f64,
    /// User CPU seconds of the whole process.
    pub(crate) user_s: f64,
    /// System CPU seconds of the whole process.
    pub(crate) sys_s: f64,
    /// Peak resident memory of the process (`VmHWM`).
    pub(crate) peak_rss_bytes: u64,
}

impl SideReport {
    /// User plus system CPU seconds.
    pub(crate) fn cpu_s(&self) -> f64 {
        self.user_s + self.sys_s
    }

    /// Reads this process's CPU time and peak RSS now.
    fn measure(frames: u64, wire_bytes: u64, elapsed: Duration) -> Result<SideReport, String> {
        let (user_s, sys_s) = cpu_seconds().map_err(|e| format!("getrusage failed: {e}"))?;
        let peak_rss_bytes = framepipe::flow::probe::peak_rss_bytes()
            .map_err(|e| format!("cannot read the peak RSS: {e}"))?;
        Ok(SideReport {
            frames,
            wire_bytes,
            elapsed_s: elapsed.as_secs_f64(),
            user_s,
            sys_s,
            peak_rss_bytes,
        })
    }
}

/// Both sides of one successful run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct RunOutcome {
    /// The producer's report.
    pub(crate) producer: SideReport,
    /// The consumer's report (its figures give the throughput).
    pub(crate) consumer: SideReport,
}

// ---------------------------------------------------------------------------------------------
// Child side
// ---------------------------------------------------------------------------------------------

/// What a consumer saw, accumulated frame by frame. The decoded data is used (record counts and ages
/// are summed), so no work can be optimised away.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Tally {
    frames: u64,
    wire_bytes: u64,
    records: u64,
    age_sum: u64,
}

impl Tally {
    /// Frames counted so far (the index of the next frame).
    pub(crate) fn frames(&self) -> u64 {
        self.frames
    }

    /// Counts one typed frame of `wire_len` bytes on the wire.
    pub(crate) fn typed(&mut self, batch: &[Record], wire_len: usize) {
        self.frames += 1;
        self.wire_bytes += wire_len as u64;
        self.records += batch.len() as u64;
        self.age_sum += batch.iter().map(|r| u64::from(r.age)).sum::<u64>();
        black_box(batch);
    }

    /// Counts one raw frame.
    pub(crate) fn raw(&mut self, body: &[u8], wire_len: usize) {
        self.frames += 1;
        self.wire_bytes += wire_len as u64;
        black_box(body);
    }

    /// Counts bytes read without framing (plain TCP): whole frames are derived from the total.
    pub(crate) fn bytes(&mut self, n: usize, shape: &Shape) {
        self.wire_bytes += n as u64;
        self.frames = self.wire_bytes / shape.frame_wire_len();
    }

    /// Checks the tally against the stream that was meant to arrive.
    fn check(&self, shape: &Shape) -> Result<(), String> {
        if self.frames != shape.frames || self.wire_bytes != shape.wire_bytes() {
            return Err(format!(
                "expected {} frames ({} bytes on the wire), got {} frames ({} bytes)",
                shape.frames,
                shape.wire_bytes(),
                self.frames,
                self.wire_bytes
            ));
        }
        if shape.payload.typed_at_consumer() {
            let records = shape.frames * shape.records_per_frame as u64;
            let age_sum = records * u64::from(Record::reference().age);
            if self.records != records || black_box(self.age_sum) != age_sum {
                return Err(format!(
                    "expected {records} records (ages summing to {age_sum}), got {} (ages {})",
                    self.records, self.age_sum
                ));
            }
        }
        Ok(())
    }
}

/// What a consumer returns: its tally and the time from accept to the end of the stream.
#[derive(Debug)]
pub(crate) struct Consumed {
    /// Frames and bytes seen.
    pub(crate) tally: Tally,
    /// Accept → end of stream.
    pub(crate) elapsed: Duration,
}

/// What a producer returns: frames and bytes it wrote, and the time connect → done.
#[derive(Debug)]
pub(crate) struct Produced {
    /// Frames written.
    pub(crate) frames: u64,
    /// Bytes written, headers included.
    pub(crate) wire_bytes: u64,
    /// Before connect → the send call returned.
    pub(crate) elapsed: Duration,
}

/// Tells the parent where to connect: `LISTEN <port>` on stdout. Consumers call it once bound.
pub(crate) fn announce(addr: SocketAddr) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "LISTEN {}", addr.port());
    let _ = out.flush();
}

/// The `main` of a child process: runs one side, prints its [`SideReport`], exits 0; or says what
/// went wrong on stderr and exits 1.
pub(crate) fn child_main(role: Role, args: &ChildArgs) -> ExitCode {
    if role == Role::Components {
        return crate::limit::components_main(args);
    }
    let who = format!("e2e {} ({})", role.name(), args.stack);
    // framepipe reports problems it recovers from (an unconfirmed close, ...) through `tracing`.
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(tracing::Level::WARN)
        .try_init();
    let shape = Shape {
        payload: args.payload,
        frames: args.frames,
        records_per_frame: args.records_per_frame,
        body_len: args.body_len,
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("{who}: cannot start the Tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match role {
            Role::Consumer => {
                let consumed = match args.stack {
                    Stack::Framepipe => framepipe_side::consume(&shape, 1).await,
                    Stack::FramepipeDecode2 => framepipe_side::consume(&shape, 2).await,
                    Stack::Baseline => baseline::consume(&shape).await,
                    Stack::PlainTcp => plain::consume(&shape).await,
                }?;
                consumed.tally.check(&shape)?;
                SideReport::measure(
                    consumed.tally.frames,
                    consumed.tally.wire_bytes,
                    consumed.elapsed,
                )
            }
            Role::Components => unreachable!("handled above"),
            Role::Producer => {
                let addr = SocketAddr::from(([127, 0, 0, 1], args.port));
                let produced = match args.stack {
                    Stack::Framepipe | Stack::FramepipeDecode2 => {
                        framepipe_side::produce(&shape, addr).await
                    }
                    Stack::Baseline => baseline::produce(&shape, addr).await,
                    Stack::PlainTcp => plain::produce(&shape, addr).await,
                }?;
                if produced.frames != shape.frames || produced.wire_bytes != shape.wire_bytes() {
                    return Err(format!(
                        "meant to send {} frames ({} bytes), sent {} ({} bytes)",
                        shape.frames,
                        shape.wire_bytes(),
                        produced.frames,
                        produced.wire_bytes
                    ));
                }
                SideReport::measure(produced.frames, produced.wire_bytes, produced.elapsed)
            }
        }
    });
    match result {
        Ok(report) => {
            let line = serde_json::to_string(&report).expect("a report serializes");
            let mut out = std::io::stdout().lock();
            if writeln!(out, "{line}").and_then(|()| out.flush()).is_err() {
                eprintln!("{who}: cannot write the report to stdout");
                return ExitCode::FAILURE;
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{who}: error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// User and system CPU seconds of this process, all threads (`getrusage(RUSAGE_SELF)`).
fn cpu_seconds() -> std::io::Result<(f64, f64)> {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage writes one `struct rusage` through the pointer, which points to enough
    // zero-initialised memory for it; on failure it returns -1 and we do not read the struct.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr()) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: the call succeeded, so the struct is initialised (and was zeroed before anyway).
    let usage = unsafe { usage.assume_init() };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    Ok((secs(usage.ru_utime), secs(usage.ru_stime)))
}

// ---------------------------------------------------------------------------------------------
// Parent side
// ---------------------------------------------------------------------------------------------

/// A child process that is killed (and reaped) if it is still running when this is dropped, so no
/// error path of the parent leaves a child behind.
struct Guarded {
    role: Role,
    child: Child,
    /// Lines the child printed on stdout, as they come.
    lines: mpsc::Receiver<String>,
    /// The thread forwarding stdout; done once the child has closed it.
    stdout: Option<JoinHandle<()>>,
    /// The child's whole stderr, once it has closed it.
    stderr: Option<JoinHandle<String>>,
    status: Option<ExitStatus>,
}

impl Guarded {
    /// Starts this binary as `role` for `stack` carrying `shape`.
    fn spawn(role: Role, stack: Stack, shape: &Shape, port: u16) -> Result<Guarded, String> {
        let exe = std::env::current_exe()
            .map_err(|e| format!("cannot find this benchmark's executable: {e}"))?;
        let mut child = Command::new(exe)
            .args(["--role", role.name()])
            .args(["--stack", stack.name()])
            .args(["--payload", shape.payload.name()])
            .args(["--frames", &shape.frames.to_string()])
            .args(["--records-per-frame", &shape.records_per_frame.to_string()])
            .args(["--body-len", &shape.body_len.to_string()])
            .args(["--port", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start the {} child: {e}", role.name()))?;
        let stdout = child.stdout.take().expect("stdout is piped");
        let mut stderr = child.stderr.take().expect("stderr is piped");
        let (tx, lines) = mpsc::channel();
        let stdout = std::thread::spawn(move || forward_lines(stdout, &tx));
        let stderr = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = stderr.read_to_string(&mut text);
            text
        });
        Ok(Guarded {
            role,
            child,
            lines,
            stdout: Some(stdout),
            stderr: Some(stderr),
            status: None,
        })
    }

    /// The exit status, if it has exited (reaps it).
    fn poll(&mut self) -> Result<Option<ExitStatus>, String> {
        if self.status.is_none() {
            self.status = self
                .child
                .try_wait()
                .map_err(|e| format!("cannot wait for the {} child: {e}", self.role.name()))?;
        }
        Ok(self.status)
    }

    fn kill(&mut self) {
        if self.status.is_none() {
            let _ = self.child.kill();
            self.status = self.child.wait().ok();
        }
    }

    /// The child's stderr (the child must have exited or been killed).
    fn stderr(&mut self) -> String {
        self.stderr
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default()
    }

    /// Why this child failed: its exit status and the end of its stderr.
    fn failure(&mut self) -> String {
        let status = match self.status {
            Some(s) if s.code().is_some() => {
                format!("exited with status {}", s.code().unwrap_or(0))
            }
            Some(s) => format!("was killed ({s})"),
            None => "is still running".to_string(),
        };
        let stderr = self.stderr();
        let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
        let tail = &lines[lines.len().saturating_sub(STDERR_LINES)..];
        if tail.is_empty() {
            format!("{} {status} (nothing on stderr)", self.role.name())
        } else {
            format!("{} {status}: {}", self.role.name(), tail.join(" | "))
        }
    }

    /// The JSON report the child printed last (the child must have exited).
    fn report(&mut self) -> Result<SideReport, String> {
        // Every line the child wrote has been forwarded once the thread has seen end of file.
        if let Some(forwarder) = self.stdout.take() {
            let _ = forwarder.join();
        }
        let last = self
            .lines
            .try_iter()
            .filter(|l| l.starts_with('{'))
            .last()
            .ok_or_else(|| format!("{} printed no report", self.role.name()))?;
        serde_json::from_str(&last).map_err(|e| {
            format!(
                "{} printed an unreadable report ({e}): {last}",
                self.role.name()
            )
        })
    }
}

impl Drop for Guarded {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Sends each line of `stdout` down `tx` until the child closes it.
fn forward_lines(stdout: ChildStdout, tx: &mpsc::Sender<String>) {
    for line in BufReader::new(stdout).lines() {
        let Ok(line) = line else { break };
        if tx.send(line).is_err() {
            break;
        }
    }
}

/// Runs `stack` on `shape` once, as two child processes, and returns both reports; or why it failed.
///
/// `producer_frames` is what the producer is told to send: `shape.frames`, except when checking that
/// a short stream is reported as a failure (`--inject-short-producer`).
///
/// Kills both children if the run is not over by `deadline` after it starts, or shortly after one of
/// them fails.
pub(crate) fn run_once(
    stack: Stack,
    shape: &Shape,
    producer_frames: u64,
    deadline: Duration,
) -> Result<RunOutcome, String> {
    let started = Instant::now();
    let mut consumer = Guarded::spawn(Role::Consumer, stack, shape, 0)?;
    let port = match wait_for_port(&mut consumer) {
        Ok(port) => port,
        Err(e) => {
            consumer.kill();
            return Err(format!("{e}; {}", consumer.failure()));
        }
    };
    let producer_shape = Shape {
        frames: producer_frames,
        ..*shape
    };
    let mut producer = Guarded::spawn(Role::Producer, stack, &producer_shape, port)?;

    let mut failed_at: Option<Instant> = None;
    let mut timed_out = false;
    loop {
        let c = consumer.poll()?;
        let p = producer.poll()?;
        if c.is_some() && p.is_some() {
            break;
        }
        let one_failed = [c, p].iter().flatten().any(|s| !s.success());
        if one_failed && failed_at.is_none() {
            failed_at = Some(Instant::now());
        }
        if failed_at.is_some_and(|t| t.elapsed() > FAILURE_GRACE) {
            break;
        }
        if started.elapsed() > deadline {
            timed_out = true;
            break;
        }
        std::thread::sleep(POLL);
    }
    consumer.kill();
    producer.kill();

    let sides = [&mut consumer, &mut producer];
    let mut problems = Vec::new();
    if timed_out {
        problems.push(format!(
            "timed out after {:.1} s; both children killed",
            deadline.as_secs_f64()
        ));
    }
    for side in sides {
        if !side.status.is_some_and(|s| s.success()) {
            problems.push(side.failure());
        }
    }
    if !problems.is_empty() {
        return Err(problems.join("; "));
    }
    let outcome = RunOutcome {
        consumer: consumer.report()?,
        producer: producer.report()?,
    };
    // The consumer checked itself; check what it says against what was asked, too.
    if outcome.consumer.frames != shape.frames || outcome.consumer.wire_bytes != shape.wire_bytes()
    {
        return Err(format!(
            "consumer reported {} frames ({} bytes); expected {} ({} bytes)",
            outcome.consumer.frames,
            outcome.consumer.wire_bytes,
            shape.frames,
            shape.wire_bytes()
        ));
    }
    if outcome.consumer.elapsed_s <= 0.0 {
        return Err("consumer reported no elapsed time".to_string());
    }
    Ok(outcome)
}

/// Waits for the consumer's `LISTEN <port>` line.
fn wait_for_port(consumer: &mut Guarded) -> Result<u16, String> {
    let line = consumer
        .lines
        .recv_timeout(LISTEN_TIMEOUT)
        .map_err(|_| "the consumer did not start listening".to_string())?;
    line.strip_prefix("LISTEN ")
        .and_then(|p| p.trim().parse().ok())
        .ok_or_else(|| format!("the consumer said {line:?} instead of LISTEN <port>"))
}
