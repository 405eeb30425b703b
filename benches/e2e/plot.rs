//! SVG plots of the summaries (plotters' SVG backend):
//!
//! - `throughput.svg`: median MB/s of every stack on every case, as horizontal bars with the min–max
//!   range as a whisker and the figures written beside each bar;
//! - `growth.svg`: MB/s against stream length (log scale), one line per stack;
//! - `growth-rss.svg`: peak RSS of producer (solid) and consumer (dashed) against stream length, per
//!   stack.
//!
//! The growth plots are drawn only when the `growth` workload has results.

use std::path::{Path, PathBuf};

use plotters::coord::combinators::WithKeyPoints;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::report::{thousands, CaseSummary, Spread};
use crate::workload::{Stack, Workload};

const FONT: &str = "sans-serif";
const WIDTH: u32 = 1100;

/// Each stack's colour, the same in every plot.
fn colour(stack: Stack) -> RGBColor {
    match stack {
        Stack::Framepipe => RGBColor(31, 119, 180),
        Stack::FramepipeDecode2 => RGBColor(148, 103, 189),
        Stack::Baseline => RGBColor(230, 120, 20),
        Stack::PlainTcp => RGBColor(44, 160, 44),
    }
}

/// Every stack in legend order.
const STACKS: [Stack; 4] = [
    Stack::Framepipe,
    Stack::FramepipeDecode2,
    Stack::Baseline,
    Stack::PlainTcp,
];

fn err(e: impl std::fmt::Display) -> String {
    format!("plotting failed: {e}")
}

/// Draws every plot there is data for into `dir`; returns the files written.
pub(crate) fn draw_all(cases: &[CaseSummary], dir: &Path) -> Result<Vec<PathBuf>, String> {
    // plotters sets text with ab_glyph (the examples' PNG pictures need it): the typeface is the
    // one kept in fixtures/fonts/, so the charts draw the same on any machine.
    static FONT: &[u8] = include_bytes!("../../fixtures/fonts/DejaVuSans.ttf");
    plotters::style::register_font("sans-serif", FontStyle::Normal, FONT)
        .map_err(|_| "plotting failed: the font could not be loaded".to_string())?;
    let mut written = Vec::new();
    let path = dir.join("throughput.svg");
    if throughput(cases, &path)? {
        written.push(path);
    }
    let growth: Vec<&CaseSummary> = cases
        .iter()
        .filter(|c| c.workload == Workload::Growth)
        .collect();
    if growth.iter().any(|c| c.stacks.iter().any(|s| s.ok > 0)) {
        let path = dir.join("growth.svg");
        growth_throughput(&growth, &path)?;
        written.push(path);
        let path = dir.join("growth-rss.svg");
        growth_rss(&growth, &path)?;
        written.push(path);
    }
    Ok(written)
}

/// One bar of the throughput plot.
struct Bar {
    label: String,
    stack: Stack,
    mbps: Spread,
    fps: f64,
}

/// Horizontal bars, one per case and stack, top to bottom in run order. `false` if nothing to draw.
fn throughput(cases: &[CaseSummary], path: &Path) -> Result<bool, String> {
    let bars: Vec<Bar> = cases
        .iter()
        .flat_map(|c| {
            c.stacks.iter().filter_map(move |s| {
                Some(Bar {
                    label: format!("{}: {}", c.label(), s.stack),
                    stack: s.stack,
                    mbps: s.mbps?,
                    fps: s.fps?.median,
                })
            })
        })
        .collect();
    if bars.is_empty() {
        return Ok(false);
    }
    let n = bars.len();
    let height = 150 + 34 * n as u32;
    let root = SVGBackend::new(path, (WIDTH, height)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let x_max = bars.iter().map(|b| b.mbps.max).fold(0.0, f64::max) * 1.45;
    // Row i is drawn at segment n-1-i so the first case is at the top.
    let y_of = |i: usize| n - 1 - i;
    let labels: Vec<String> = bars.iter().map(|b| b.label.clone()).collect();
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "End-to-end throughput, loopback (median; whisker: min–max over runs)",
            (FONT, 22),
        )
        .margin(16)
        .x_label_area_size(50)
        .y_label_area_size(300)
        .build_cartesian_2d(0.0..x_max, (0..n - 1).into_segmented())
        .map_err(err)?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .y_labels(n)
        .y_label_formatter(&|v| match v {
            SegmentValue::CenterOf(y) | SegmentValue::Exact(y) if *y < n => {
                labels[n - 1 - *y].clone()
            }
            _ => String::new(),
        })
        .x_label_formatter(&|x| thousands(*x))
        .x_desc("MB/s at the consumer (wire bytes incl. headers; 1 MB = 10^6 bytes)")
        .light_line_style(TRANSPARENT)
        .label_style((FONT, 14))
        .axis_desc_style((FONT, 15))
        .draw()
        .map_err(err)?;

    for stack in STACKS {
        if !bars.iter().any(|b| b.stack == stack) {
            continue;
        }
        let c = colour(stack);
        chart
            .draw_series(
                bars.iter()
                    .enumerate()
                    .filter(|(_, b)| b.stack == stack)
                    .map(|(i, b)| {
                        let y = y_of(i);
                        let mut r = Rectangle::new(
                            [
                                (0.0, SegmentValue::Exact(y)),
                                (b.mbps.median, SegmentValue::Exact(y + 1)),
                            ],
                            c.filled(),
                        );
                        r.set_margin(5, 5, 0, 0);
                        r
                    }),
            )
            .map_err(err)?
            .label(stack.name())
            .legend(move |(x, y)| Rectangle::new([(x, y - 6), (x + 16, y + 6)], c.filled()));
    }
    chart
        .draw_series(bars.iter().enumerate().map(|(i, b)| {
            let y = SegmentValue::CenterOf(y_of(i));
            PathElement::new(
                vec![(b.mbps.min, y.clone()), (b.mbps.max, y)],
                BLACK.stroke_width(2),
            )
        }))
        .map_err(err)?;
    let text = TextStyle::from((FONT, 13).into_font()).pos(Pos::new(HPos::Left, VPos::Center));
    chart
        .draw_series(bars.iter().enumerate().map(|(i, b)| {
            Text::new(
                format!("{:.1} MB/s, {} frames/s", b.mbps.median, thousands(b.fps)),
                (
                    b.mbps.max.max(b.mbps.median) + x_max * 0.01,
                    SegmentValue::CenterOf(y_of(i)),
                ),
                text.clone(),
            )
        }))
        .map_err(err)?;
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .label_font((FONT, 14))
        .draw()
        .map_err(err)?;
    root.present().map_err(err)?;
    Ok(true)
}

/// The x axis of the growth plots: the frame counts, padded, on a log scale, with a tick at each
/// measured count and nowhere else.
fn frame_axis(growth: &[&CaseSummary]) -> WithKeyPoints<LogCoord<f64>> {
    let counts: Vec<f64> = growth.iter().map(|c| c.frames as f64).collect();
    let lo = counts.iter().copied().fold(f64::MAX, f64::min);
    let hi = counts.iter().copied().fold(0.0, f64::max);
    ((lo / 1.6)..(hi * 1.6)).log_scale().with_key_points(counts)
}

/// MB/s against frames in the stream, one line per stack, with min–max whiskers.
fn growth_throughput(growth: &[&CaseSummary], path: &Path) -> Result<(), String> {
    let root = SVGBackend::new(path, (WIDTH, 620)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let y_max = growth
        .iter()
        .flat_map(|c| c.stacks.iter().filter_map(|s| s.mbps.map(|m| m.max)))
        .fold(0.0, f64::max)
        * 1.25;
    let records = growth[0].records_per_frame;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!(
                "Throughput vs stream length ({records}-record frames, typed; median, whisker: min–max)"
            ),
            (FONT, 22),
        )
        .margin(16)
        .x_label_area_size(50)
        .y_label_area_size(70)
        .build_cartesian_2d(frame_axis(growth), 0.0..y_max.max(1.0))
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("frames in the stream (log scale)")
        .y_desc("MB/s at the consumer")
        .y_label_formatter(&|y| format!("{y:.0}"))
        .x_label_formatter(&|x| thousands(*x))
        .light_line_style(TRANSPARENT)
        .label_style((FONT, 14))
        .axis_desc_style((FONT, 15))
        .draw()
        .map_err(err)?;
    for stack in STACKS {
        let points: Vec<(f64, Spread)> = growth
            .iter()
            .filter_map(|c| Some((c.frames as f64, c.stack(stack)?.mbps?)))
            .collect();
        if points.is_empty() {
            continue;
        }
        let c = colour(stack);
        chart
            .draw_series(LineSeries::new(
                points.iter().map(|(x, s)| (*x, s.median)),
                c.stroke_width(3),
            ))
            .map_err(err)?
            .label(stack.name())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 22, y)], c.stroke_width(3)));
        chart
            .draw_series(
                points
                    .iter()
                    .map(|(x, s)| Circle::new((*x, s.median), 5, c.filled())),
            )
            .map_err(err)?;
        chart
            .draw_series(
                points.iter().map(|(x, s)| {
                    PathElement::new(vec![(*x, s.min), (*x, s.max)], c.stroke_width(2))
                }),
            )
            .map_err(err)?;
        // framepipe's figures above its points, the others' below, so close lines stay legible.
        let (v_pos, nudge) = match stack {
            Stack::Framepipe | Stack::FramepipeDecode2 => (VPos::Bottom, 0.015),
            _ => (VPos::Top, -0.015),
        };
        let text = TextStyle::from((FONT, 13).into_font())
            .color(&c)
            .pos(Pos::new(HPos::Left, v_pos));
        chart
            .draw_series(points.iter().map(|(x, s)| {
                Text::new(
                    format!(" {:.0}", s.median),
                    (*x, s.median + y_max * nudge),
                    text.clone(),
                )
            }))
            .map_err(err)?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .label_font((FONT, 14))
        .draw()
        .map_err(err)?;
    root.present().map_err(err)
}

/// Peak RSS of each side against frames in the stream: producer solid with circles, consumer dashed
/// with triangles, one colour per stack.
fn growth_rss(growth: &[&CaseSummary], path: &Path) -> Result<(), String> {
    let root = SVGBackend::new(path, (WIDTH, 620)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let y_max = growth
        .iter()
        .flat_map(|c| {
            c.stacks.iter().flat_map(|s| {
                [s.producer_rss_mb, s.consumer_rss_mb]
                    .into_iter()
                    .flatten()
                    .map(|m| m.max)
            })
        })
        .fold(0.0, f64::max)
        * 1.3;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "Peak RSS vs stream length (median over runs; producer solid, consumer dashed)",
            (FONT, 22),
        )
        .margin(16)
        .x_label_area_size(50)
        .y_label_area_size(70)
        .build_cartesian_2d(frame_axis(growth), 0.0..y_max.max(1.0))
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("frames in the stream (log scale)")
        .y_desc("peak RSS, MB (VmHWM; 1 MB = 10^6 bytes)")
        .y_label_formatter(&|y| format!("{y:.0}"))
        .x_label_formatter(&|x| thousands(*x))
        .light_line_style(TRANSPARENT)
        .label_style((FONT, 14))
        .axis_desc_style((FONT, 15))
        .draw()
        .map_err(err)?;
    for stack in STACKS {
        let producer: Vec<(f64, f64)> = growth
            .iter()
            .filter_map(|c| Some((c.frames as f64, c.stack(stack)?.producer_rss_mb?.median)))
            .collect();
        let consumer: Vec<(f64, f64)> = growth
            .iter()
            .filter_map(|c| Some((c.frames as f64, c.stack(stack)?.consumer_rss_mb?.median)))
            .collect();
        if producer.is_empty() && consumer.is_empty() {
            continue;
        }
        let c = colour(stack);
        let line = c.stroke_width(3);
        chart
            .draw_series(LineSeries::new(producer.iter().copied(), line))
            .map_err(err)?
            .label(format!("{stack} producer"))
            .legend(move |(x, y)| {
                EmptyElement::at((x, y))
                    + PathElement::new(vec![(0, 0), (22, 0)], line)
                    + Circle::new((11, 0), 4, c.filled())
            });
        chart
            .draw_series(producer.iter().map(|p| Circle::new(*p, 5, c.filled())))
            .map_err(err)?;
        chart
            .draw_series(DashedLineSeries::new(consumer.iter().copied(), 10, 6, line))
            .map_err(err)?
            .label(format!("{stack} consumer"))
            .legend(move |(x, y)| {
                EmptyElement::at((x, y))
                    + PathElement::new(vec![(0, 0), (7, 0)], line)
                    + PathElement::new(vec![(15, 0), (22, 0)], line)
                    + TriangleMarker::new((11, 0), 5, c.filled())
            });
        chart
            .draw_series(
                consumer
                    .iter()
                    .map(|p| TriangleMarker::new(*p, 6, c.filled())),
            )
            .map_err(err)?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .label_font((FONT, 14))
        .draw()
        .map_err(err)?;
    root.present().map_err(err)
}
