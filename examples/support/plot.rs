//! `--plot FILE` (`.svg` or `.png`): a picture of a run. On top, throughput over time; below, the
//! memory of every stage stacked (queues, socket queues, retention, and the rest of the process's
//! RSS, so the top of the stack is RSS), with the budget drawn as a line. Intervals in which no
//! byte moved are shaded as stalls in both.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use framepipe::flow::FlowSnapshot;
use plotters::coord::Shift;
use plotters::prelude::*;
use tokio::task::JoinHandle;

/// How often a running plot samples.
pub const PLOT_SAMPLE: Duration = Duration::from_millis(100);

/// One reading of the sides being drawn: bytes moved so far, and each side's flow with a label.
pub struct Reading {
    /// Bytes moved so far (handled, or written).
    pub bytes: u64,
    /// Each side's snapshot, with the prefix of its stage names (`""` for one side).
    pub sides: Vec<(&'static str, FlowSnapshot)>,
}

struct Sample {
    secs: f64,
    bytes: u64,
    /// (layer, bytes): stages, then socket queues.
    layers: Vec<(String, u64)>,
    rss: u64,
}

/// A plot being recorded; [`Recording::finish`] draws it.
pub struct Recording {
    plot: Plot,
    task: JoinHandle<()>,
}

/// Where a recording goes and what it has sampled; cheap to clone, draws at any time.
#[derive(Clone)]
pub struct Plot {
    path: PathBuf,
    samples: Arc<Mutex<Vec<Sample>>>,
}

/// `--plot FILE`: a name ending in `.svg` or `.png`.
pub fn parse_plot_path(s: &str) -> Result<PathBuf, String> {
    match Path::new(s).extension().and_then(|e| e.to_str()) {
        Some("svg") | Some("png") => Ok(PathBuf::from(s)),
        _ => Err(format!("{s:?}: the name must end in .svg or .png")),
    }
}

/// `--plot PATH` if given: checks the extension, then samples `read` every [`PLOT_SAMPLE`].
pub fn start_if(
    path: Option<&Path>,
    read: impl Fn() -> Reading + Send + 'static,
) -> Result<Option<Recording>, String> {
    let Some(path) = path else { return Ok(None) };
    let path = parse_plot_path(&path.to_string_lossy()).map_err(|e| format!("--plot {e}"))?;
    let samples = Arc::new(Mutex::new(Vec::new()));
    let kept = samples.clone();
    let task = tokio::spawn(async move {
        let started = Instant::now();
        let mut ticker = tokio::time::interval(PLOT_SAMPLE);
        loop {
            ticker.tick().await;
            let sample = sample(started.elapsed().as_secs_f64(), read());
            kept.lock().unwrap().push(sample);
        }
    });
    Ok(Some(Recording {
        plot: Plot { path, samples },
        task,
    }))
}

fn sample(secs: f64, reading: Reading) -> Sample {
    let mut layers = Vec::new();
    let (mut sockets, mut rss) = (0u64, 0u64);
    for (prefix, flow) in &reading.sides {
        for stage in &flow.stages {
            layers.push((format!("{prefix}{}", stage.name), stage.bytes as u64));
        }
        sockets += flow.sockets.total() as u64;
        rss = rss.max(flow.rss_bytes.unwrap_or(0));
    }
    layers.push(("socket queues".into(), sockets));
    Sample {
        secs,
        bytes: reading.bytes,
        layers,
        rss,
    }
}

impl Recording {
    /// Stops sampling and draws the picture: `title` on top, `budget` (bytes) as a line.
    pub fn finish(self, title: &str, budget: u64) -> Result<PathBuf, String> {
        self.task.abort();
        self.plot.draw(title, budget)
    }

    /// A handle that can draw what was sampled so far.
    pub fn plot(&self) -> Plot {
        self.plot.clone()
    }
}

impl Plot {
    /// Draws what was sampled so far: `title` on top, `budget` (bytes) as a line.
    pub fn draw(&self, title: &str, budget: u64) -> Result<PathBuf, String> {
        let samples = std::mem::take(&mut *self.samples.lock().unwrap());
        if samples.len() < 2 {
            return Err("--plot: the run was too short to draw".into());
        }
        let path = self.path.clone();
        register_font()?;
        let drawn = if path.extension().is_some_and(|e| e == "png") {
            let root = BitMapBackend::new(&path, (1200, 800)).into_drawing_area();
            draw(&root, &samples, title, budget)
        } else {
            let root = SVGBackend::new(&path, (1200, 800)).into_drawing_area();
            draw(&root, &samples, title, budget)
        };
        drawn.map_err(|e| format!("--plot {}: {e}", path.display()))?;
        Ok(path)
    }
}

/// The text of both formats is set in DejaVu Sans, kept in the repository
/// (`fixtures/fonts/`, with its licence) so a picture draws the same on any machine.
fn register_font() -> Result<(), String> {
    static FONT: &[u8] = include_bytes!("../../fixtures/fonts/DejaVuSans.ttf");
    plotters::style::register_font("sans-serif", FontStyle::Normal, FONT)
        .map_err(|_| "--plot: the font could not be loaded".to_string())
}

type DrawResult = Result<(), Box<dyn std::error::Error>>;

fn draw<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    samples: &[Sample],
    title: &str,
    budget: u64,
) -> DrawResult
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE)?;
    let root = root.titled(title, ("sans-serif", 22))?;
    let (top, bottom) = root.split_vertically(260);
    let end = samples.last().map_or(1.0, |s| s.secs).max(0.1);
    let rates: Vec<(f64, f64)> = samples
        .windows(2)
        .map(|w| {
            let mb = w[1].bytes.saturating_sub(w[0].bytes) as f64 / 1e6;
            (w[1].secs, mb / (w[1].secs - w[0].secs).max(1e-9))
        })
        .collect();
    let stalls: Vec<(f64, f64)> = samples
        .windows(2)
        .filter(|w| w[1].bytes == w[0].bytes && w[0].bytes > 0)
        .map(|w| (w[0].secs, w[1].secs))
        .collect();
    let top_rate = rates.iter().map(|r| r.1).fold(1.0, f64::max) * 1.1;
    let mut chart = ChartBuilder::on(&top)
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..end, 0.0..top_rate)?;
    chart
        .configure_mesh()
        .y_desc("MB/s")
        .x_desc("seconds")
        .draw()?;
    shade(&mut chart, &stalls, top_rate)?;
    chart
        .draw_series(LineSeries::new(rates, BLUE.stroke_width(2)))?
        .label("throughput")
        .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], BLUE));
    chart
        .configure_series_labels()
        .border_style(BLACK)
        .background_style(WHITE.mix(0.8))
        .draw()?;
    draw_memory(&bottom, samples, &stalls, end, budget)
}

fn shade<DB: DrawingBackend>(
    chart: &mut ChartContext<
        '_,
        DB,
        Cartesian2d<plotters::coord::types::RangedCoordf64, plotters::coord::types::RangedCoordf64>,
    >,
    stalls: &[(f64, f64)],
    height: f64,
) -> DrawResult
where
    DB::ErrorType: 'static,
{
    let grey = RGBColor(200, 200, 200).mix(0.5).filled();
    chart.draw_series(
        stalls
            .iter()
            .map(|&(a, b)| Rectangle::new([(a, 0.0), (b, height)], grey)),
    )?;
    Ok(())
}

fn draw_memory<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    samples: &[Sample],
    stalls: &[(f64, f64)],
    end: f64,
    budget: u64,
) -> DrawResult
where
    DB::ErrorType: 'static,
{
    const MIB: f64 = 1024.0 * 1024.0;
    let names: Vec<String> = samples[0].layers.iter().map(|l| l.0.clone()).collect();
    // Cumulative tops: each layer on the ones before it, then the rest of RSS up to RSS.
    let tops: Vec<Vec<f64>> = samples
        .iter()
        .map(|s| {
            let mut sum = 0.0;
            let mut tops: Vec<f64> = s
                .layers
                .iter()
                .map(|l| {
                    sum += l.1 as f64 / MIB;
                    sum
                })
                .collect();
            tops.push(sum.max(s.rss as f64 / MIB));
            tops
        })
        .collect();
    let highest = tops
        .iter()
        .filter_map(|t| t.last().copied())
        .fold(budget as f64 / MIB, f64::max)
        * 1.1;
    let mut chart = ChartBuilder::on(area)
        .margin(10)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..end, 0.0..highest)?;
    chart
        .configure_mesh()
        .y_desc("MiB")
        .x_desc("seconds")
        .draw()?;
    shade(&mut chart, stalls, highest)?;
    let mut labels = names;
    labels.push("rest of RSS".into());
    // Drawn from the top layer down, so each lower one covers its part.
    for (i, label) in labels.iter().enumerate().rev() {
        let color = Palette99::pick(i).mix(0.8);
        let points: Vec<(f64, f64)> = samples
            .iter()
            .zip(&tops)
            .map(|(s, t)| (s.secs, t[i]))
            .collect();
        chart
            .draw_series(AreaSeries::new(points, 0.0, color.filled()))?
            .label(label.as_str())
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 15, y + 5)], color.filled()));
    }
    let line = [(0.0, budget as f64 / MIB), (end, budget as f64 / MIB)];
    chart
        .draw_series(LineSeries::new(line, RED.stroke_width(2)))?
        .label("budget (each queue)")
        .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], RED));
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .border_style(BLACK)
        .background_style(WHITE.mix(0.8))
        .draw()?;
    Ok(())
}

/// Draws `plot` if there is one, saying where (or why not) on stderr as `who`.
pub fn finish_if(plot: Option<Recording>, who: &str, title: &str, budget: u64) {
    match plot.map(|p| p.finish(title, budget)) {
        Some(Ok(path)) => eprintln!("{who}: plot written to {}", path.display()),
        Some(Err(e)) => eprintln!("{who}: {e}"),
        None => {}
    }
}

/// A reading of one side: `bytes` moved and its flow.
pub fn one_side(bytes: u64, flow: FlowSnapshot) -> Reading {
    Reading {
        bytes,
        sides: vec![("", flow)],
    }
}
