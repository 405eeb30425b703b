//! End-to-end benchmark: framepipe's producer and consumer against what a Rust user would write
//! instead (`tokio-util`'s `LengthDelimitedCodec` with serde_json) and, for raw bytes, against a plain
//! TCP copy, over loopback, each side in its own process.
//!
//! ```sh
//! cargo bench --bench e2e                      # everything, 3 runs each (10–20 minutes on 2 cores)
//! cargo bench --bench e2e -- --quick           # tiny counts, one run: a smoke test (< 1 minute)
//! cargo bench --bench e2e -- --workloads reference,raw --runs 5
//! cargo bench --bench e2e -- --plot-only target/e2e/results.csv
//! ```
//!
//! One run is three processes: this one orchestrates and re-executes itself once per side with a
//! hidden `--role` (`child.rs`), so each side's peak RSS and CPU time are its own. Throughput is the
//! consumer's: wire bytes (headers included) over the time from accepting the connection to the end
//! of the stream; 1 MB = 10^6 bytes. Every consumer checks it received exactly the expected frames,
//! bytes and (typed) records; a run that fails any check, errors or times out is reported as failed,
//! and the benchmark then exits non-zero.
//!
//! | Workload | Stream (full / `--quick`) | Stacks | Ratio |
//! |---|---|---|---|
//! | `reference` | 50,000 / 2,000 frames × 50 records (60,905 B), typed | framepipe, tokio-util+serde_json | framepipe ÷ comparison |
//! | `small` | 1,000,000 / 20,000 frames × 1 record, typed | same | same (frames/s first) |
//! | `large` | 3,000 / 100 frames × 821 records (~1 MB), typed | same | same |
//! | `raw` | 50,000 / 2,000 reference frames, no JSON at the consumer | framepipe, plain-tcp, comparison (for information) | framepipe ÷ plain-tcp |
//! | `growth` | 5,000, 50,000, 500,000 / 500, 2,000, 5,000 reference frames, typed | framepipe, comparison | framepipe ÷ comparison |
//! | `payload` | 50,000 / 2,000 reference frames sent as prepared bytes (the sender costs little), typed | framepipe, comparison | framepipe ÷ comparison |
//! | `parallel` | the `payload` stream | framepipe with `decode_workers(2)`, framepipe, comparison | framepipe-decode-2 ÷ comparison |
//!
//! When the run has the `raw` workload (its plain TCP copy gives the kernel's share), the parent
//! also measures serialize-only and parse-only for the same stream and prints each typed
//! reference-sized case against the 2-core limit those make (`limit.rs`).
//!
//! With `--features mimalloc` every process of every stack allocates with mimalloc instead of the
//! system allocator (`cargo bench --bench e2e --features mimalloc -- --workloads parallel`).
//!
//! Output: progress on stderr; the machine and one Markdown table per case on stdout; in `--out`
//! (default `target/e2e`) `results.csv` (one row per run per stack per case) and the plots
//! `throughput.svg`, `growth.svg` and `growth-rss.svg` (`plot.rs`).
//!
//! Files: `workload.rs` what is measured, `child.rs` the processes and their protocol,
//! `framepipe_side.rs` / `baseline.rs` / `plain.rs` the three stacks, `report.rs` the CSV and tables,
//! `plot.rs` the SVGs, `machine.rs` the machine description.

/// `--features mimalloc`: every stack's processes allocate with mimalloc (BENCHMARKS.md).
#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod baseline;
mod child;
mod framepipe_side;
mod limit;
mod machine;
mod plain;
mod plot;
mod report;
mod workload;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;

use child::ChildArgs;
use report::Row;
use workload::{Case, Workload};

/// Runs every run at most this long, plus time in proportion to the stream (see [`deadline`]).
const BASE_DEADLINE: Duration = Duration::from_secs(60);

/// framepipe end-to-end benchmark: framepipe vs tokio-util+serde_json (and a plain TCP copy for raw
/// bytes), producer and consumer in separate processes over loopback.
///
/// Prints progress on stderr and, at the end, the machine and one table per case on stdout; writes
/// results.csv and SVG plots to --out. Exits non-zero if any run failed.
#[derive(Debug, Parser)]
#[command(name = "e2e", bin_name = "cargo bench --bench e2e --")]
struct Args {
    /// Tiny stream lengths and one run: a smoke test (under a minute), not a measurement.
    #[arg(long)]
    quick: bool,

    /// Runs per stack and case; tables show the median and the min–max range [default: 3, or 1
    /// with --quick].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    runs: Option<u32>,

    /// Workloads to run, comma-separated [default: all, in this order].
    #[arg(long, value_enum, value_delimiter = ',', value_name = "LIST")]
    workloads: Vec<Workload>,

    /// Directory for results.csv and the plots [default: target/e2e; with --plot-only, the CSV's
    /// directory].
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,

    /// Do not run anything: re-draw the plots (and print the tables) from this results.csv.
    #[arg(long, value_name = "CSV")]
    plot_only: Option<PathBuf>,

    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,

    /// Self-test of failure reporting: every producer sends one frame fewer than its consumer
    /// expects, so every run must be reported as failed.
    #[arg(long, hide = true)]
    inject_short_producer: bool,

    #[command(flatten)]
    child: ChildArgs,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(role) = args.child.role {
        return child::child_main(role, &args.child);
    }
    let result = match &args.plot_only {
        Some(csv) => plot_only(csv, args.out.as_deref()),
        None => run_all(&args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("e2e: error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Runs the selected workloads, prints the tables, writes the CSV and the plots.
fn run_all(args: &Args) -> Result<ExitCode, String> {
    let runs = args.runs.unwrap_or(if args.quick { 1 } else { 3 }) as usize;
    let mut workloads: Vec<Workload> = Vec::new();
    for w in if args.workloads.is_empty() {
        Workload::ALL.to_vec()
    } else {
        args.workloads.clone()
    } {
        if !workloads.contains(&w) {
            workloads.push(w);
        }
    }
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("target/e2e"));
    std::fs::create_dir_all(&out).map_err(|e| format!("cannot create {}: {e}", out.display()))?;
    let csv = out.join("results.csv");

    let machine = machine::describe();
    eprintln!("e2e: {machine}");
    eprintln!(
        "e2e: {} with {runs} run{} each{}; results in {}",
        workloads
            .iter()
            .map(|w| w.name())
            .collect::<Vec<_>>()
            .join(", "),
        if runs == 1 { "" } else { "s" },
        if args.quick { " (--quick)" } else { "" },
        out.display()
    );
    if args.inject_short_producer {
        eprintln!("e2e: --inject-short-producer: every run is meant to fail");
    }

    let started = Instant::now();
    let mut rows: Vec<Row> = Vec::new();
    for workload in &workloads {
        for case in workload.cases(args.quick) {
            // Stacks take turns within each run, so slow drifts of a shared machine hit all of them.
            for run in 1..=runs {
                for &stack in workload.stacks() {
                    rows.push(run_one(&case, stack, run, runs, args.inject_short_producer));
                }
            }
            // After every case, so an interrupted benchmark keeps what it measured.
            report::write_csv(&csv, &rows)
                .map_err(|e| format!("cannot write {}: {e}", csv.display()))?;
        }
    }
    let failed = rows.iter().filter(|r| r.result.is_err()).count();
    eprintln!(
        "e2e: {} runs in {:.0} s",
        rows.len(),
        started.elapsed().as_secs_f64()
    );

    println!(
        "# framepipe end-to-end benchmark{}\n",
        if args.quick {
            " (--quick: a smoke test, not a measurement)"
        } else {
            ""
        }
    );
    println!("Machine: {machine}\n");
    println!(
        "Loopback TCP; producer and consumer in separate processes, one current-thread Tokio runtime \
         each, default settings everywhere. MB/s = wire bytes (headers included) / consumer time from \
         accept to end of stream; 1 MB = 10^6 bytes (memory too). Peak RSS is VmHWM; CPU is user + \
         system time of the whole process."
    );
    let summaries = report::summarise(&rows);
    for case in &summaries {
        println!("\n{}", report::table(case).trim_end());
    }
    print_limit(&summaries);
    let plots = plot::draw_all(&summaries, &out)?;
    eprintln!(
        "e2e: wrote {}{}",
        csv.display(),
        plots
            .iter()
            .map(|p| format!(", {}", p.display()))
            .collect::<String>()
    );
    if failed > 0 {
        eprintln!(
            "e2e: {failed} of {} runs FAILED; their reasons are under the tables",
            rows.len()
        );
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

/// With the `raw` workload's plain TCP copy in the run, measures serialize-only and parse-only for
/// the same stream and prints each typed reference-sized case against the 2-core limit (`limit.rs`).
fn print_limit(summaries: &[report::CaseSummary]) {
    let Some(raw) = summaries
        .iter()
        .find(|c| c.workload == Workload::Raw && c.stack(workload::Stack::PlainTcp).is_some())
    else {
        return;
    };
    eprintln!("e2e: measuring serialize-only and parse-only for the 2-core limit");
    match limit::measure(raw.frames, raw.records_per_frame) {
        Ok(components) => {
            if let Some(table) = limit::table(summaries, &components) {
                println!("\n{}", table.trim_end());
            }
        }
        Err(e) => eprintln!("e2e: no 2-core limit: {e}"),
    }
}

/// One run of one stack on one case, with a progress line on stderr.
fn run_one(case: &Case, stack: workload::Stack, run: usize, runs: usize, short: bool) -> Row {
    let shape = case.shape;
    eprint!("[{} run {run}/{runs}] {stack}: ", case.label());
    let t = Instant::now();
    let producer_frames = if short {
        shape.frames.saturating_sub(1)
    } else {
        shape.frames
    };
    let result = child::run_once(stack, &shape, producer_frames, deadline(&case.shape));
    let row = Row {
        workload: case.workload,
        payload: shape.payload,
        frames: shape.frames,
        records_per_frame: shape.records_per_frame,
        stack,
        run,
        result,
    };
    match &row.result {
        Ok(o) => eprintln!(
            "{:.1} MB/s, {} frames/s | peak RSS producer {:.1} MB, consumer {:.1} MB | CPU producer \
             {:.2} s, consumer {:.2} s | {:.1} s",
            row.mbps().unwrap_or(0.0),
            report::thousands(row.fps().unwrap_or(0.0)),
            o.producer.peak_rss_bytes as f64 / 1e6,
            o.consumer.peak_rss_bytes as f64 / 1e6,
            o.producer.cpu_s(),
            o.consumer.cpu_s(),
            t.elapsed().as_secs_f64()
        ),
        Err(e) => eprintln!("FAILED: {e}"),
    }
    row
}

/// How long one run may take before both children are killed: [`BASE_DEADLINE`], plus a second per
/// 20 MB on the wire and per 10,000 frames (ten times slower than this benchmark has ever measured
/// on a 2-core machine, so only a hung run reaches it).
fn deadline(shape: &workload::Shape) -> Duration {
    BASE_DEADLINE
        + Duration::from_secs_f64(shape.wire_bytes() as f64 / 20e6 + shape.frames as f64 / 10_000.0)
}

/// `--plot-only`: reads a results.csv, prints its tables and re-draws its plots.
fn plot_only(csv: &Path, out: Option<&Path>) -> Result<ExitCode, String> {
    let rows = report::read_csv(csv)?;
    if rows.is_empty() {
        return Err(format!("{} holds no runs", csv.display()));
    }
    let dir = match out {
        Some(dir) => dir.to_path_buf(),
        None => csv
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map_or_else(|| PathBuf::from("."), Path::to_path_buf),
    };
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    println!("# framepipe end-to-end benchmark (from {})", csv.display());
    let summaries = report::summarise(&rows);
    for case in &summaries {
        println!("\n{}", report::table(case).trim_end());
    }
    let plots = plot::draw_all(&summaries, &dir)?;
    if plots.is_empty() {
        eprintln!(
            "e2e: no plots drawn: {} holds no successful run",
            csv.display()
        );
    } else {
        eprintln!(
            "e2e: wrote {}",
            plots
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    Ok(ExitCode::SUCCESS)
}
