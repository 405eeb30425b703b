//! Shared by the `producer`, `consumer` and `demo` examples: logging, the periodic stats line, the
//! progress bar, size and duration parsing, signals and the end-of-run summaries.
#![allow(dead_code, unused_imports, unreachable_pub)] // each example uses part of this module; `pub` is for the examples

/// Built with `--features mimalloc`, the binaries allocate with mimalloc: decoding on several
/// threads (`consumer --decode-workers`) scales with it, not with glibc's malloc (BENCHMARKS.md).
#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod closing;
pub mod lines;
pub mod observe;
pub mod plot;
mod signals;
pub mod stamp;
mod summary;
pub mod tls;

use std::io::{IsTerminal, Write};
use std::time::Duration;

use framepipe::flow::{FlowSnapshot, StageSnapshot};
use indicatif::{ProgressBar, ProgressStyle};
use tracing_subscriber::fmt::MakeWriter;

pub use closing::{close, feed, send_session, Closed, Handle, SessionEnd, Stoppable};
pub use signals::{Signals, EXIT_FORCED, EXIT_INTERRUPTED};
pub use summary::{
    ConsumerCounts, ConsumerSessionCounts, ProducerCounts, ProducerSessionCounts, Summary,
};

/// Parses a byte count: `4194304`, `4MiB`, `4M`, `512KiB`, `1GiB` (K/M/G are binary multiples).
pub fn parse_size(s: &str) -> Result<usize, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let n: usize = digits
        .parse()
        .map_err(|_| format!("{s:?} is not a byte count (examples: 4194304, 4MiB, 512KiB)"))?;
    let mult = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" | "kb" => 1 << 10,
        "m" | "mib" | "mb" => 1 << 20,
        "g" | "gib" | "gb" => 1 << 30,
        other => {
            return Err(format!(
                "unknown unit {other:?} in {s:?} (use KiB, MiB or GiB)"
            ))
        }
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("{s:?} is too large"))
}

/// Parses a duration in seconds, with an optional `ms`/`s` suffix: `1`, `0.5`, `250ms`.
pub fn parse_interval(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let (num, scale) = if let Some(ms) = t.strip_suffix("ms") {
        (ms, 1e-3)
    } else {
        (t.strip_suffix('s').unwrap_or(t), 1.0)
    };
    let v: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a duration (examples: 1, 0.5s, 250ms)"))?;
    if !(v > 0.0 && v.is_finite()) {
        return Err(format!("{s:?} must be a positive duration"));
    }
    Ok(Duration::from_secs_f64(v * scale))
}

/// A duration, or `None` for `off` (clap treats a bare `Option` as "flag may be absent").
#[derive(Debug, Clone, Copy)]
pub struct Timeout(pub Option<Duration>);

/// `off` (or `0`), else a duration as [`parse_interval`] reads it.
pub fn parse_timeout(s: &str) -> Result<Timeout, String> {
    match s.trim() {
        "off" | "0" => Ok(Timeout(None)),
        t => parse_interval(t).map(|d| Timeout(Some(d))),
    }
}

/// `1,234,567`.
pub fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// `12.3 MB` style, decimal units (as MB/s figures are).
pub fn mb(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

/// `4.0 MiB` style, for budgets and memory (`KiB` below 1 MiB, `GiB` from 1 GiB).
pub fn mib(bytes: u64) -> String {
    if bytes >= 1 << 30 {
        format!("{:.1} GiB", bytes as f64 / (1u64 << 30) as f64)
    } else if bytes >= 1 << 20 {
        format!("{:.1} MiB", bytes as f64 / (1u64 << 20) as f64)
    } else {
        format!("{:.0} KiB", bytes as f64 / 1024.0)
    }
}

/// A progress bar on stderr when it is a terminal, `None` otherwise.
pub fn progress_bar(total: Option<u64>) -> Option<ProgressBar> {
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = match total {
        Some(n) => ProgressBar::new(n).with_style(
            ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} frames {msg}")
                .expect("valid template")
                .progress_chars("=> "),
        ),
        None => ProgressBar::new_spinner().with_style(
            ProgressStyle::with_template("{elapsed_precise} {spinner} {pos} frames {msg}")
                .expect("valid template"),
        ),
    };
    bar.enable_steady_tick(Duration::from_millis(200));
    Some(bar)
}

/// Writes log lines above the progress bar (if any) instead of through it.
#[derive(Clone)]
pub struct LogWriter(pub Option<ProgressBar>);

pub struct LogLine(Option<ProgressBar>, Vec<u8>);

impl Write for LogLine {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.1.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for LogLine {
    fn drop(&mut self) {
        let bytes = std::mem::take(&mut self.1);
        match &self.0 {
            Some(bar) => bar.suspend(|| {
                let _ = std::io::stderr().write_all(&bytes);
            }),
            None => {
                let _ = std::io::stderr().write_all(&bytes);
            }
        }
    }
}

impl<'a> MakeWriter<'a> for LogWriter {
    type Writer = LogLine;
    fn make_writer(&'a self) -> LogLine {
        LogLine(self.0.clone(), Vec::new())
    }
}

/// The flags every binary takes for watching a run: `--metrics`, `--log-format`, `--plot`.
#[derive(Debug, clap::Args)]
pub struct Observe {
    /// Serve Prometheus metrics on http://ADDR/metrics, with /healthz and /readyz (port 0 picks
    /// one; the address is logged).
    #[arg(long, value_name = "ADDR")]
    pub metrics: Option<String>,

    /// Log events as readable lines (pretty) or one JSON object per line (json), on stderr.
    #[arg(long, value_enum, default_value_t = LogFormat::Pretty)]
    pub log_format: LogFormat,

    /// Draw the run (`.svg` or `.png`): throughput over time, memory per stage stacked up to RSS,
    /// the budget as a line, stalls shaded.
    #[arg(long, value_name = "FILE", value_parser = plot::parse_plot_path)]
    pub plot: Option<std::path::PathBuf>,
}

/// `--log-format`: how log events are written to stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One readable line per event.
    Pretty,
    /// One JSON object per line: `timestamp`, `level`, `fields` (`message`, `peer`,
    /// `connection`, `session`, `code`, ...).
    Json,
}

/// Logs to stderr (above the bar, if any) in `format`; `RUST_LOG` overrides the default `info`
/// level.
pub fn init_logging(bar: Option<ProgressBar>, format: LogFormat) {
    init_logging_at(bar, format, "info");
}

/// [`init_logging`] with another default level.
pub fn init_logging_at(bar: Option<ProgressBar>, format: LogFormat, level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(LogWriter(bar))
        .with_target(false);
    match format {
        LogFormat::Pretty => builder.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => builder.json().with_ansi(false).init(),
    }
}

/// `queue 3.9 MiB, writing 240 KiB` from a snapshot's stages.
pub fn stage_list(stages: &[StageSnapshot]) -> String {
    stages
        .iter()
        .map(|s| format!("{} {}", s.name, mib(s.bytes as u64)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// One stats line: rate since the previous line, bytes in every stage, socket queues, RSS, blocked.
pub fn stats_line(
    who: &str,
    frames: u64,
    bytes: u64,
    d_frames: u64,
    d_bytes: u64,
    d_secs: f64,
    flow: &FlowSnapshot,
) -> String {
    let blocked: u64 = flow.stages.iter().map(|s| s.blocked_ms).sum();
    format!(
        "{who}: {} frames ({}), {:.0} frames/s, {:.1} MB/s | {} | socket send {} recv {} | \
         in flight {} | RSS {} | blocked {} ms",
        thousands(frames),
        mb(bytes),
        d_frames as f64 / d_secs.max(1e-9),
        d_bytes as f64 / 1e6 / d_secs.max(1e-9),
        stage_list(&flow.stages),
        opt_mib(flow.sockets.send_queue_bytes),
        opt_mib(flow.sockets.recv_queue_bytes),
        mib(flow.in_flight_bytes as u64),
        flow.rss_bytes.map_or("n/a".into(), mib),
        blocked,
    )
}

fn opt_mib(v: Option<usize>) -> String {
    v.map_or("n/a".into(), |b| mib(b as u64))
}
