//! The 2-core limit of a typed stream, and each stack's distance from it (issue 14).
//!
//! A typed stream cannot cost less than serializing its records once, parsing them once, and the
//! kernel copying the bytes through a socket. Measured in the same invocation:
//!
//! - **serialize-only**: `serde_json::to_writer` of the case's batch into a reused buffer, once per
//!   frame, on one thread (its CPU time from `CLOCK_THREAD_CPUTIME_ID`; the median of three passes);
//! - **parse-only**: `serde_json::from_slice::<Vec<Record>>` of the body, once per frame, the same way;
//! - **the kernel's copies**: the `plain-tcp` stack on the `raw` workload (the same number of frames of
//!   the same size), both processes' CPU (user + system), median of its runs.
//!
//! Serialize-only and parse-only run in a child process of their own (`--role components`), so the
//! heap they allocate from is as fresh as the stacks' processes' are.
//!
//! Spread over 2 cores, their sum is the least wall-clock time the stream can take here; the limit is
//! the wire bytes over that time. A stack's *overhead* is the CPU both its processes used beyond
//! that sum, as a share of all they used. Streams sent as prepared bytes (`payload`, `parallel`)
//! serialize nothing, so their limit leaves serialize-only out.

use std::fmt::Write as _;
use std::hint::black_box;
use std::process::{Command, ExitCode, Stdio};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use framepipe::reference::{reference_batch, Record};

use crate::child::ChildArgs;
use crate::report::{markdown, CaseSummary};
use crate::workload::{body, Payload, Stack, Workload};

/// What serializing and parsing the stream cost on one thread, in CPU seconds.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub(crate) struct Components {
    /// Frames each figure is for.
    pub(crate) frames: u64,
    /// Serialize-only CPU seconds.
    pub(crate) serialize_s: f64,
    /// Parse-only CPU seconds.
    pub(crate) parse_s: f64,
}

/// This thread's CPU time.
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec through a valid pointer; the clock id is a constant.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(
        rc, 0,
        "CLOCK_THREAD_CPUTIME_ID is always available on Linux"
    );
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// The median CPU time of three passes of `op`.
fn median_cpu(mut op: impl FnMut()) -> f64 {
    let mut passes: Vec<f64> = (0..3)
        .map(|_| {
            let start = thread_cpu();
            op();
            (thread_cpu() - start).as_secs_f64()
        })
        .collect();
    passes.sort_by(f64::total_cmp);
    passes[1]
}

/// Measures serialize-only and parse-only for `frames` frames of `records_per_frame` records, in a
/// child process.
pub(crate) fn measure(frames: u64, records_per_frame: usize) -> Result<Components, String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this executable: {e}"))?;
    let out = Command::new(exe)
        .args(["--role", "components"])
        .args(["--frames", &frames.to_string()])
        .args(["--records-per-frame", &records_per_frame.to_string()])
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("cannot start the components child: {e}"))?;
    if !out.status.success() {
        return Err(format!("the components child failed: {}", out.status));
    }
    serde_json::from_slice(&out.stdout).map_err(|e| format!("the components child's report: {e}"))
}

/// The `main` of the components child: measures, prints one JSON line.
pub(crate) fn components_main(args: &ChildArgs) -> ExitCode {
    let components = measure_here(args.frames, args.records_per_frame);
    println!(
        "{}",
        serde_json::to_string(&components).expect("a report serializes")
    );
    ExitCode::SUCCESS
}

/// Measures in this process.
fn measure_here(frames: u64, records_per_frame: usize) -> Components {
    let batch = reference_batch(records_per_frame);
    let bytes = body(records_per_frame);
    let mut out = Vec::with_capacity(bytes.len() + 64);
    let serialize_s = median_cpu(|| {
        for _ in 0..frames {
            out.clear();
            serde_json::to_writer(&mut out, &batch).expect("the batch serializes");
            black_box(&out);
        }
    });
    let parse_s = median_cpu(|| {
        for _ in 0..frames {
            let parsed: Vec<Record> = serde_json::from_slice(&bytes).expect("the body parses");
            black_box(parsed);
        }
    });
    Components {
        frames,
        serialize_s,
        parse_s,
    }
}

/// The typed cases the limit is drawn for, and whether their producer serializes.
fn limited(case: &CaseSummary) -> Option<bool> {
    match (case.workload, case.payload) {
        (Workload::Reference, Payload::Typed) => Some(true),
        (Workload::Payload | Workload::Parallel, Payload::Prepared) => Some(false),
        _ => None,
    }
}

/// The table of each typed reference-sized case against its limit, if the run has the `raw`
/// workload's plain TCP copy of the same stream to take the kernel's share from.
pub(crate) fn table(cases: &[CaseSummary], c: &Components) -> Option<String> {
    let kernel = cases
        .iter()
        .filter(|case| case.workload == Workload::Raw && case.frames == c.frames)
        .find_map(|case| {
            let plain = case.stack(Stack::PlainTcp)?;
            Some(plain.producer_cpu_s?.median + plain.consumer_cpu_s?.median)
        })?;
    let mut body_rows: Vec<[String; 7]> = Vec::new();
    for case in cases.iter().filter(|case| case.frames == c.frames) {
        let Some(serializes) = limited(case) else {
            continue;
        };
        let work = if serializes { c.serialize_s } else { 0.0 } + c.parse_s + kernel;
        let wire_mb = case.frame_wire_len? as f64 * case.frames as f64 / 1e6;
        let limit = wire_mb / (work / 2.0);
        for s in &case.stacks {
            let (Some(mbps), Some(p), Some(q)) = (s.mbps, s.producer_cpu_s, s.consumer_cpu_s)
            else {
                continue;
            };
            let cpu = p.median + q.median;
            body_rows.push([
                case.label(),
                s.stack.to_string(),
                format!("{:.1}", mbps.median),
                format!("{limit:.1}"),
                format!("{:.0}%", 100.0 * mbps.median / limit),
                format!("{cpu:.2}"),
                format!("{:.0}%", 100.0 * (cpu - work) / cpu),
            ]);
        }
    }
    if body_rows.is_empty() {
        return None;
    }
    let mut out = String::from("## The 2-core limit\n\n");
    let _ = writeln!(
        out,
        "Per {} frames, on one thread: serialize-only {:.2} s, parse-only {:.2} s; the kernel's \
         copies (plain-tcp, both processes) {kernel:.2} s. Limit = wire bytes / (their sum / 2); \
         overhead = CPU beyond their sum, as a share of the stack's CPU (both processes).\n",
        c.frames, c.serialize_s, c.parse_s
    );
    let header = [
        "case",
        "stack",
        "MB/s median",
        "limit MB/s",
        "of the limit",
        "CPU s (both)",
        "overhead",
    ]
    .map(String::from);
    out += &markdown(&header, &body_rows);
    Some(out)
}
