//! Results: one [`Row`] per run per stack per case, `results.csv`, and the tables printed at the end.
//!
//! Throughput is the consumer's: wire bytes (headers included) over the consumer's elapsed time,
//! accept → end of stream; 1 MB = 10^6 bytes, for memory too. Tables give the median over the
//! successful runs, with the min–max range for throughput; memory and CPU are medians. A failed run
//! is a CSV row with `status` = `failed` and its reason, and is named under its table.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::Path;

use crate::child::{RunOutcome, SideReport};
use crate::workload::{Payload, Stack, Workload};

/// One run of one stack on one case.
#[derive(Debug, Clone)]
pub(crate) struct Row {
    /// The workload family.
    pub(crate) workload: Workload,
    /// Typed or raw at the consumer.
    pub(crate) payload: Payload,
    /// Frames in the stream.
    pub(crate) frames: u64,
    /// Records per frame.
    pub(crate) records_per_frame: usize,
    /// Which stack ran.
    pub(crate) stack: Stack,
    /// 1-based run number.
    pub(crate) run: usize,
    /// Both sides' reports, or why the run failed.
    pub(crate) result: Result<RunOutcome, String>,
}

impl Row {
    /// MB/s (10^6 bytes) at the consumer, if the run succeeded.
    pub(crate) fn mbps(&self) -> Option<f64> {
        self.result
            .as_ref()
            .ok()
            .map(|o| o.consumer.wire_bytes as f64 / 1e6 / o.consumer.elapsed_s)
    }

    /// Frames per second at the consumer, if the run succeeded.
    pub(crate) fn fps(&self) -> Option<f64> {
        self.result
            .as_ref()
            .ok()
            .map(|o| o.consumer.frames as f64 / o.consumer.elapsed_s)
    }

    /// The case this row belongs to: rows with the same key are summarised together.
    fn key(&self) -> (Workload, u64, usize) {
        (self.workload, self.frames, self.records_per_frame)
    }
}

// ---------------------------------------------------------------------------------------------
// CSV
// ---------------------------------------------------------------------------------------------

/// The CSV columns, in order.
const COLUMNS: [&str; 19] = [
    "workload",
    "payload",
    "frames",
    "records_per_frame",
    "stack",
    "run",
    "status",
    "wire_bytes",
    "mbps",
    "fps",
    "consumer_elapsed_s",
    "consumer_user_s",
    "consumer_sys_s",
    "consumer_peak_rss_bytes",
    "producer_elapsed_s",
    "producer_user_s",
    "producer_sys_s",
    "producer_peak_rss_bytes",
    "error",
];

/// Writes `rows` to `path` as CSV (header line first), replacing the file.
pub(crate) fn write_csv(path: &Path, rows: &[Row]) -> std::io::Result<()> {
    let mut out = COLUMNS.join(",");
    out.push('\n');
    for row in rows {
        let mut fields = vec![
            row.workload.name().to_string(),
            row.payload.name().to_string(),
            row.frames.to_string(),
            row.records_per_frame.to_string(),
            row.stack.name().to_string(),
            row.run.to_string(),
        ];
        match &row.result {
            Ok(o) => {
                fields.push("ok".into());
                fields.push(o.consumer.wire_bytes.to_string());
                fields.push(format!("{:.3}", row.mbps().unwrap_or(f64::NAN)));
                fields.push(format!("{:.1}", row.fps().unwrap_or(f64::NAN)));
                for side in [&o.consumer, &o.producer] {
                    fields.push(format!("{:.9}", side.elapsed_s));
                    fields.push(format!("{:.6}", side.user_s));
                    fields.push(format!("{:.6}", side.sys_s));
                    fields.push(side.peak_rss_bytes.to_string());
                }
                fields.push(String::new());
            }
            Err(e) => {
                fields.push("failed".into());
                fields.extend(std::iter::repeat_n(String::new(), 11));
                fields.push(e.replace(['\n', '\r'], " "));
            }
        }
        let line: Vec<String> = fields.iter().map(|f| csv_field(f)).collect();
        out += &line.join(",");
        out.push('\n');
    }
    std::fs::write(path, out)
}

/// Quotes a field if it holds a comma, quote or line break.
fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// Reads a CSV written by [`write_csv`] (columns are found by name, so extra columns are ignored).
pub(crate) fn read_csv(path: &Path) -> Result<Vec<Row>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut records = parse_csv(&text).into_iter();
    let header = records
        .next()
        .ok_or_else(|| format!("{} is empty", path.display()))?;
    let index: HashMap<&str, usize> = header
        .iter()
        .enumerate()
        .map(|(i, name)| (name.as_str(), i))
        .collect();
    if let Some(missing) = COLUMNS.iter().find(|c| !index.contains_key(**c)) {
        return Err(format!(
            "{} has no {missing:?} column; is it a results.csv of this benchmark?",
            path.display()
        ));
    }
    let mut rows = Vec::new();
    for (line, rec) in records.enumerate() {
        if rec.iter().all(|f| f.is_empty()) {
            continue;
        }
        let at = |name: &str| rec.get(index[name]).map_or("", String::as_str);
        let bad = |name: &str| format!("line {}: bad {name} {:?}", line + 2, at(name));
        let num = |name: &str| at(name).parse::<f64>().map_err(|_| bad(name));
        let int = |name: &str| at(name).parse::<u64>().map_err(|_| bad(name));
        let workload = Workload::from_name(at("workload")).ok_or_else(|| bad("workload"))?;
        let stack = Stack::from_name(at("stack")).ok_or_else(|| bad("stack"))?;
        let payload = match at("payload") {
            "typed" => Payload::Typed,
            "raw" => Payload::Raw,
            "prepared" => Payload::Prepared,
            _ => return Err(bad("payload")),
        };
        let frames = int("frames")?;
        let result = match at("status") {
            "ok" => {
                let wire_bytes = int("wire_bytes")?;
                let side = |who: &str| -> Result<SideReport, String> {
                    Ok(SideReport {
                        frames,
                        wire_bytes,
                        elapsed_s: num(&format!("{who}_elapsed_s"))?,
                        user_s: num(&format!("{who}_user_s"))?,
                        sys_s: num(&format!("{who}_sys_s"))?,
                        peak_rss_bytes: int(&format!("{who}_peak_rss_bytes"))?,
                    })
                };
                Ok(RunOutcome {
                    consumer: side("consumer")?,
                    producer: side("producer")?,
                })
            }
            "failed" => Err(at("error").to_string()),
            _ => return Err(bad("status")),
        };
        rows.push(Row {
            workload,
            payload,
            frames,
            records_per_frame: int("records_per_frame")? as usize,
            stack,
            run: int("run")? as usize,
            result,
        });
    }
    Ok(rows)
}

/// Splits CSV text into records of fields (RFC 4180 quoting).
fn parse_csv(text: &str) -> Vec<Vec<String>> {
    let mut records = Vec::new();
    let mut record = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                field.push('"');
                chars.next();
            }
            ('"', true) => quoted = false,
            ('"', false) if field.is_empty() => quoted = true,
            (',', false) => record.push(std::mem::take(&mut field)),
            ('\r', false) => {}
            ('\n', false) => {
                record.push(std::mem::take(&mut field));
                records.push(std::mem::take(&mut record));
            }
            (c, _) => field.push(c),
        }
    }
    if !field.is_empty() || !record.is_empty() {
        record.push(field);
        records.push(record);
    }
    records
}

// ---------------------------------------------------------------------------------------------
// Summaries
// ---------------------------------------------------------------------------------------------

/// Median, smallest and largest of a set of runs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Spread {
    /// The median (mean of the middle two for an even count).
    pub(crate) median: f64,
    /// The smallest value.
    pub(crate) min: f64,
    /// The largest value.
    pub(crate) max: f64,
}

impl Spread {
    /// `None` for no values.
    fn of(mut values: Vec<f64>) -> Option<Spread> {
        if values.is_empty() {
            return None;
        }
        values.sort_by(f64::total_cmp);
        let n = values.len();
        let median = if n % 2 == 1 {
            values[n / 2]
        } else {
            (values[n / 2 - 1] + values[n / 2]) / 2.0
        };
        Some(Spread {
            median,
            min: values[0],
            max: values[n - 1],
        })
    }
}

/// One stack's runs on one case.
#[derive(Debug, Clone)]
pub(crate) struct StackSummary {
    /// The stack.
    pub(crate) stack: Stack,
    /// Runs that succeeded.
    pub(crate) ok: usize,
    /// Why each failed run failed, with its run number.
    pub(crate) failures: Vec<(usize, String)>,
    /// MB/s at the consumer (`None` if no run succeeded, as for all figures below).
    pub(crate) mbps: Option<Spread>,
    /// Frames per second at the consumer.
    pub(crate) fps: Option<Spread>,
    /// Producer peak RSS, MB.
    pub(crate) producer_rss_mb: Option<Spread>,
    /// Consumer peak RSS, MB.
    pub(crate) consumer_rss_mb: Option<Spread>,
    /// Producer CPU seconds (user + system).
    pub(crate) producer_cpu_s: Option<Spread>,
    /// Consumer CPU seconds (user + system).
    pub(crate) consumer_cpu_s: Option<Spread>,
}

/// Every stack's runs on one case.
#[derive(Debug, Clone)]
pub(crate) struct CaseSummary {
    /// The workload family.
    pub(crate) workload: Workload,
    /// Typed or raw.
    pub(crate) payload: Payload,
    /// Frames in the stream.
    pub(crate) frames: u64,
    /// Records per frame.
    pub(crate) records_per_frame: usize,
    /// Bytes per frame on the wire, if any run succeeded.
    pub(crate) frame_wire_len: Option<u64>,
    /// The stacks, in the workload's order.
    pub(crate) stacks: Vec<StackSummary>,
}

impl CaseSummary {
    /// The stack's summary, if it ran.
    pub(crate) fn stack(&self, stack: Stack) -> Option<&StackSummary> {
        self.stacks.iter().find(|s| s.stack == stack)
    }

    /// A short label: `reference`, `growth 500k`.
    pub(crate) fn label(&self) -> String {
        crate::workload::case_label(self.workload, self.frames)
    }

    /// framepipe's median MB/s and frames/s over the ratio base's, if both have succeeded runs.
    pub(crate) fn ratio(&self) -> Option<(f64, f64)> {
        let base = self.stack(self.workload.ratio_base())?;
        let fp = self.stack(self.workload.ratio_stack())?;
        Some((
            fp.mbps?.median / base.mbps?.median,
            fp.fps?.median / base.fps?.median,
        ))
    }
}

/// Groups rows by case (in the order cases first appear) and stack (in the workload's order).
pub(crate) fn summarise(rows: &[Row]) -> Vec<CaseSummary> {
    let mut keys = Vec::new();
    for row in rows {
        if !keys.contains(&row.key()) {
            keys.push(row.key());
        }
    }
    keys.into_iter()
        .map(|key| {
            let case_rows: Vec<&Row> = rows.iter().filter(|r| r.key() == key).collect();
            let (workload, frames, records_per_frame) = key;
            let frame_wire_len = case_rows
                .iter()
                .find_map(|r| r.result.as_ref().ok())
                .map(|o| o.consumer.wire_bytes / o.consumer.frames.max(1));
            let stacks = workload
                .stacks()
                .iter()
                .copied()
                .filter(|s| case_rows.iter().any(|r| r.stack == *s))
                .map(|stack| summarise_stack(stack, &case_rows))
                .collect();
            CaseSummary {
                workload,
                payload: case_rows[0].payload,
                frames,
                records_per_frame,
                frame_wire_len,
                stacks,
            }
        })
        .collect()
}

fn summarise_stack(stack: Stack, rows: &[&Row]) -> StackSummary {
    let mine: Vec<&Row> = rows.iter().copied().filter(|r| r.stack == stack).collect();
    let ok: Vec<&RunOutcome> = mine.iter().filter_map(|r| r.result.as_ref().ok()).collect();
    let over = |f: &dyn Fn(&RunOutcome) -> f64| Spread::of(ok.iter().map(|o| f(o)).collect());
    StackSummary {
        stack,
        ok: ok.len(),
        failures: mine
            .iter()
            .filter_map(|r| r.result.as_ref().err().map(|e| (r.run, e.clone())))
            .collect(),
        mbps: Spread::of(mine.iter().filter_map(|r| r.mbps()).collect()),
        fps: Spread::of(mine.iter().filter_map(|r| r.fps()).collect()),
        producer_rss_mb: over(&|o| o.producer.peak_rss_bytes as f64 / 1e6),
        consumer_rss_mb: over(&|o| o.consumer.peak_rss_bytes as f64 / 1e6),
        producer_cpu_s: over(&|o| o.producer.cpu_s()),
        consumer_cpu_s: over(&|o| o.consumer.cpu_s()),
    }
}

// ---------------------------------------------------------------------------------------------
// Tables
// ---------------------------------------------------------------------------------------------

/// One case as a Markdown table with a title line above and the ratio and any failures below.
pub(crate) fn table(case: &CaseSummary) -> String {
    let runs = case
        .stacks
        .iter()
        .map(|s| s.ok + s.failures.len())
        .max()
        .unwrap_or(0);
    let base = case.workload.ratio_base();
    let mut out = format!(
        "## {}: {} frames × {} record{}{}, {}; {} run{}\n\n",
        case.label(),
        thousands(case.frames as f64),
        case.records_per_frame,
        if case.records_per_frame == 1 { "" } else { "s" },
        case.frame_wire_len.map_or(String::new(), |n| format!(
            " ({} B per frame on the wire)",
            thousands(n as f64)
        )),
        case.payload.describe(),
        runs,
        if runs == 1 { "" } else { "s" },
    );
    let header = [
        "stack".to_string(),
        "MB/s median (min–max)".to_string(),
        "frames/s median (min–max)".to_string(),
        "producer peak RSS MB".to_string(),
        "consumer peak RSS MB".to_string(),
        "producer CPU s (user+sys)".to_string(),
        "consumer CPU s (user+sys)".to_string(),
        format!("MB/s ratio to {base}"),
    ];
    let base_mbps = case.stack(base).and_then(|s| s.mbps).map(|m| m.median);
    let mut body: Vec<[String; 8]> = Vec::new();
    for s in &case.stacks {
        let one = |v: Option<Spread>, decimals: usize| {
            v.map_or("—".to_string(), |v| format!("{:.*}", decimals, v.median))
        };
        let failed = if s.failures.is_empty() {
            String::new()
        } else {
            format!(
                " ({} of {} runs FAILED)",
                s.failures.len(),
                s.ok + s.failures.len()
            )
        };
        body.push([
            format!("{}{failed}", s.stack),
            s.mbps.map_or("—".to_string(), |m| match s.ok {
                1 => format!("{:.1}", m.median),
                _ => format!("{:.1} ({:.1}–{:.1})", m.median, m.min, m.max),
            }),
            s.fps.map_or("—".to_string(), |f| match s.ok {
                1 => thousands(f.median),
                _ => format!(
                    "{} ({}–{})",
                    thousands(f.median),
                    thousands(f.min),
                    thousands(f.max)
                ),
            }),
            one(s.producer_rss_mb, 1),
            one(s.consumer_rss_mb, 1),
            one(s.producer_cpu_s, 2),
            one(s.consumer_cpu_s, 2),
            match (s.mbps, base_mbps) {
                (Some(m), Some(b)) => format!("{:.2}×", m.median / b),
                _ => "—".to_string(),
            },
        ]);
    }
    out += &markdown(&header, &body);
    if let (Some((mbps, fps)), Some(fp), Some(b)) = (
        case.ratio(),
        case.stack(case.workload.ratio_stack()),
        case.stack(base),
    ) {
        let mb = format!(
            "{mbps:.2}× MB/s ({:.1} vs {:.1})",
            fp.mbps.map_or(0.0, |m| m.median),
            b.mbps.map_or(0.0, |m| m.median)
        );
        let fr = format!(
            "{fps:.2}× frames/s ({} vs {})",
            thousands(fp.fps.map_or(0.0, |f| f.median)),
            thousands(b.fps.map_or(0.0, |f| f.median))
        );
        // Small frames are about per-frame cost: lead with frames/s there.
        let (first, second) = if case.workload == Workload::Small {
            (fr, mb)
        } else {
            (mb, fr)
        };
        let top = case.workload.ratio_stack();
        let _ = writeln!(out, "\n{top} / {base} (medians): {first}, {second}");
    }
    let failures: Vec<String> = case
        .stacks
        .iter()
        .flat_map(|s| {
            s.failures
                .iter()
                .map(move |(run, why)| format!("FAILED: {} run {run}: {why}", s.stack))
        })
        .collect();
    if !failures.is_empty() {
        let _ = writeln!(out, "\n{}", failures.join("\n"));
    }
    out
}

/// Renders a Markdown table with columns padded to line up in a terminal (numbers right-aligned).
pub(crate) fn markdown<const N: usize>(header: &[String; N], body: &[[String; N]]) -> String {
    let width = |i: usize| {
        body.iter()
            .map(|r| r[i].chars().count())
            .chain([header[i].chars().count()])
            .max()
            .unwrap_or(0)
    };
    let widths: Vec<usize> = (0..N).map(width).collect();
    let line = |cells: &[String; N], right: bool| {
        let mut s = String::from("|");
        for (i, cell) in cells.iter().enumerate() {
            let pad = widths[i] - cell.chars().count();
            if right && i > 0 {
                let _ = write!(s, " {}{cell} |", " ".repeat(pad));
            } else {
                let _ = write!(s, " {cell}{} |", " ".repeat(pad));
            }
        }
        s.push('\n');
        s
    };
    let mut out = line(header, false);
    out.push('|');
    for (i, w) in widths.iter().enumerate() {
        if i == 0 {
            let _ = write!(out, " {} |", "-".repeat(*w));
        } else {
            let _ = write!(out, " {}: |", "-".repeat(w.saturating_sub(1)));
        }
    }
    out.push('\n');
    for row in body {
        out += &line(row, true);
    }
    out
}

/// `1,234,567` (rounded to a whole number).
pub(crate) fn thousands(v: f64) -> String {
    let s = format!("{:.0}", v.max(0.0));
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}
