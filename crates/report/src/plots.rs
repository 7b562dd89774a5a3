//! The report's plots, drawn in Rust with plotters: each chart once as SVG (inlined in
//! `index.html`) and once as PNG, from a [`RunDoc`] alone.
//!
//! Charts: the scaling curve (speedup vs workers, with the ideal line and the key-distribution
//! ideal), overhead per run, latency percentiles (HDR plot), items per worker, and for runs with a
//! timeline the rate (target vs in vs out) and lag (in-flight, late sends) per second; for a
//! capacity search also the demand plot and each trial's lag ([`crate::capacity`]); for an
//! elastic run its lag and members with each change marked ([`crate::elastic`]). A chart
//! with nothing to show is skipped, not drawn empty. Text uses an embedded DejaVu Sans, so no
//! system font is needed.

use std::path::Path;
use std::sync::Once;

use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use plotters::style::FontStyle;

use crate::capacity;
use crate::doc::RunDoc;
use crate::elastic;

/// Every PNG is this many pixels; the SVGs have the same user-space size.
pub const SIZE: (u32, u32) = (960, 540);

/// At most this many runs get a latency curve, so the HDR plot stays readable.
const MAX_CURVES: usize = 12;

pub(crate) const TITLE: (&str, u32) = ("sans-serif", 22);

const FONT: &[u8] = include_bytes!("../assets/DejaVuSans.ttf");

const COLORS: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(23, 190, 207),
];

pub(crate) fn color(i: usize) -> RGBColor {
    COLORS[i % COLORS.len()]
}

/// One drawn chart.
pub struct Plot {
    /// File stem: `scaling` → `scaling.svg`, `scaling.png`.
    pub name: &'static str,
    pub title: &'static str,
    pub svg: String,
}

pub(crate) type Drawn = Result<(), String>;

fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // The font is compiled in; failing to parse it is a build defect, not a user error.
        plotters::style::register_font("sans-serif", FontStyle::Normal, FONT)
            .map_err(|_| ())
            .expect("the embedded DejaVu Sans parses");
    });
}

/// Draws every chart the document has data for; PNGs go to `dir`.
pub fn draw_all(doc: &RunDoc, dir: &Path) -> Result<Vec<Plot>, String> {
    register_font();
    type Draw<DB> = fn(&RunDoc, &DrawingArea<DB, Shift>) -> Drawn;
    type Chart = (&'static str, &'static str, fn(&RunDoc) -> bool);
    let charts: [Chart; 9] = [
        ("scaling", "Scaling: speedup vs workers", has_scaling),
        ("overhead", "Overhead over the ideal, per run", has_overhead),
        ("latency", "Latency by percentile (HDR)", has_latency),
        ("balance", "Items per worker, per run", has_balance),
        ("rate", "Rate per second: target, in, out", has_timeline),
        ("lag", "In flight and late sends per second", has_timeline),
        (
            "demand",
            "Demand: the fewest workers per load",
            capacity::has_demand,
        ),
        ("trials", "Lag over time, per trial", capacity::has_trials),
        (
            "elastic",
            "Lag and members over the run, each change marked",
            elastic::has_elastic,
        ),
    ];
    fn pick<DB: DrawingBackend>(name: &str) -> Draw<DB> {
        match name {
            "scaling" => scaling,
            "overhead" => overhead,
            "latency" => latency,
            "balance" => balance,
            "rate" => rate,
            "demand" => capacity::demand,
            "trials" => capacity::trials,
            "elastic" => elastic::timeline,
            _ => lag,
        }
    }
    let mut plots = Vec::new();
    for (name, title, wanted) in charts {
        if !wanted(doc) {
            continue;
        }
        let mut svg = String::new();
        {
            let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
            root.fill(&WHITE).map_err(|e| e.to_string())?;
            pick::<SVGBackend>(name)(doc, &root).map_err(|e| format!("{name}.svg: {e}"))?;
            root.present().map_err(|e| e.to_string())?;
        }
        let png = dir.join(format!("{name}.png"));
        {
            let root = BitMapBackend::new(&png, SIZE).into_drawing_area();
            root.fill(&WHITE).map_err(|e| e.to_string())?;
            pick::<BitMapBackend>(name)(doc, &root).map_err(|e| format!("{name}.png: {e}"))?;
            root.present()
                .map_err(|e| format!("writing {}: {e}", png.display()))?;
        }
        plots.push(Plot { name, title, svg });
    }
    Ok(plots)
}

fn has_scaling(doc: &RunDoc) -> bool {
    groups(doc)
        .iter()
        .any(|(_, runs)| runs.iter().filter(|r| r.speedup.is_some()).count() >= 2)
}

fn has_overhead(doc: &RunDoc) -> bool {
    doc.runs.iter().any(|r| r.overhead_pct.is_some())
}

fn has_latency(doc: &RunDoc) -> bool {
    doc.runs
        .iter()
        .any(|r| r.latency_s.as_ref().is_some_and(|l| l.count > 0))
}

fn has_balance(doc: &RunDoc) -> bool {
    doc.runs.iter().any(|r| r.per_worker.len() > 1)
}

/// Two seconds or more, and something counted in them (a run whose parts are other processes
/// may count nothing here).
fn has_timeline(doc: &RunDoc) -> bool {
    doc.timeline.len() >= 2
        && doc
            .timeline
            .iter()
            .any(|t| t.in_per_s > 0.0 || t.out_per_s > 0.0 || t.in_flight > 0)
}

/// Runs by group, groups in order of first appearance.
fn groups(doc: &RunDoc) -> Vec<(&str, Vec<&crate::Run>)> {
    let mut out: Vec<(&str, Vec<&crate::Run>)> = Vec::new();
    for run in &doc.runs {
        match out.iter_mut().find(|(g, _)| *g == run.group) {
            Some((_, runs)) => runs.push(run),
            None => out.push((&run.group, vec![run])),
        }
    }
    out
}

pub(crate) fn err<E: std::fmt::Display>(e: E) -> String {
    e.to_string()
}

fn scaling<DB: DrawingBackend>(doc: &RunDoc, root: &DrawingArea<DB, Shift>) -> Drawn {
    let groups = groups(doc);
    let max_workers = doc.runs.iter().map(|r| r.workers).max().unwrap_or(1).max(2) as f64;
    let max_speedup = doc
        .runs
        .iter()
        .filter_map(|r| r.speedup)
        .fold(max_workers, f64::max);
    let mut chart = ChartBuilder::on(root)
        .caption("Scaling: speedup vs workers", TITLE)
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(56)
        .build_cartesian_2d(0.8f64..max_workers + 0.2, 0f64..max_speedup * 1.1)
        .map_err(err)?;
    // A capacity curve's speedup is of capacities, a bench's of wall times.
    let speedup = if doc.runs.iter().any(|r| r.capacity_per_s.is_some()) {
        "speedup (capacity ÷ 1-worker capacity)"
    } else {
        "speedup (1-worker wall ÷ wall)"
    };
    chart
        .configure_mesh()
        .x_desc("workers")
        .y_desc(speedup)
        .draw()
        .map_err(err)?;
    let grey = RGBColor(120, 120, 120);
    chart
        .draw_series(DashedLineSeries::new(
            [(1.0, 1.0), (max_workers, max_workers)],
            8,
            6,
            grey.stroke_width(2),
        ))
        .map_err(err)?
        .label("ideal: speedup = workers")
        .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], grey.stroke_width(2)));
    for (i, (group, runs)) in groups.iter().enumerate() {
        let mut points: Vec<(f64, f64)> = runs
            .iter()
            .filter_map(|r| r.speedup.map(|s| (r.workers as f64, s)))
            .collect();
        if points.len() < 2 {
            continue;
        }
        points.sort_by(|a, b| a.0.total_cmp(&b.0));
        let c = color(i);
        let mut keyed: Vec<(f64, f64)> = runs
            .iter()
            .filter_map(|r| r.ideal_speedup.map(|s| (r.workers as f64, s)))
            .collect();
        keyed.sort_by(|a, b| a.0.total_cmp(&b.0));
        // The key-distribution ideal only says something where it falls below the worker count.
        if keyed.iter().any(|(w, s)| s + 1e-9 < *w) {
            chart
                .draw_series(DashedLineSeries::new(
                    keyed,
                    3,
                    4,
                    c.mix(0.6).stroke_width(2),
                ))
                .map_err(err)?
                .label(format!("{group}: key-distribution ideal"))
                .legend(move |(x, y)| {
                    PathElement::new([(x, y), (x + 20, y)], c.mix(0.6).stroke_width(2))
                });
        }
        chart
            .draw_series(LineSeries::new(points.clone(), c.stroke_width(3)))
            .map_err(err)?
            .label(group.to_string())
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], c.stroke_width(3)));
        chart
            .draw_series(points.iter().map(|&p| Circle::new(p, 5, c.filled())))
            .map_err(err)?;
    }
    legend(&mut chart, SeriesLabelPosition::UpperLeft)
}

pub(crate) fn legend<'a, DB: DrawingBackend + 'a, CT: CoordTranslate>(
    chart: &mut ChartContext<'a, DB, CT>,
    at: SeriesLabelPosition,
) -> Drawn {
    chart
        .configure_series_labels()
        .position(at)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.3))
        .label_font(("sans-serif", 13))
        .draw()
        .map_err(err)
}

fn overhead<DB: DrawingBackend>(doc: &RunDoc, root: &DrawingArea<DB, Shift>) -> Drawn {
    let values: Vec<(usize, f64)> = doc
        .runs
        .iter()
        .enumerate()
        .filter_map(|(i, r)| r.overhead_pct.map(|o| (i, o)))
        .collect();
    let lo = values.iter().map(|v| v.1).fold(0.0, f64::min);
    let hi = values.iter().map(|v| v.1).fold(0.0, f64::max).max(1.0);
    let pad = (hi - lo) * 0.1;
    let n = doc.runs.len();
    let mut chart = per_run_chart(
        root,
        "Overhead over the ideal, per run",
        n,
        (lo - pad)..(hi + pad),
        "run (see the table)",
        "overhead %",
    )?;
    chart
        .draw_series(values.iter().map(|&(i, o)| {
            let c = if o > 5.0 { color(3) } else { color(0) };
            Rectangle::new([(i as f64 - 0.35, 0.0), (i as f64 + 0.35, o)], c.filled())
        }))
        .map_err(err)?;
    chart
        .draw_series(values.iter().map(|&(i, o)| {
            Text::new(
                format!("{o:+.2}%"),
                (i as f64, o),
                ("sans-serif", 12).into_font().color(&BLACK).pos(Pos::new(
                    HPos::Center,
                    if o >= 0.0 { VPos::Bottom } else { VPos::Top },
                )),
            )
        }))
        .map_err(err)?;
    Ok(())
}

/// Axes of a per-run chart: runs 1..=n as bars centred on whole x values, against `y`.
fn per_run_chart<'a, DB: DrawingBackend>(
    root: &'a DrawingArea<DB, Shift>,
    title: &str,
    n: usize,
    y: std::ops::Range<f64>,
    x_desc: &str,
    y_desc: &str,
) -> Result<Chart2d<'a, DB>, String> {
    let mut chart = ChartBuilder::on(root)
        .caption(title, TITLE)
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(64)
        .build_cartesian_2d(-0.5f64..n as f64 - 0.5, y)
        .map_err(err)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(n.min(30))
        .x_label_formatter(&run_number)
        .x_desc(x_desc)
        .y_desc(y_desc)
        .draw()
        .map_err(err)?;
    Ok(chart)
}

/// Run numbers (1-based, as in the table) under bars centred on whole x values.
fn run_number(x: &f64) -> String {
    if (x - x.round()).abs() < 1e-6 && *x >= -1e-6 {
        format!("{}", x.round() as usize + 1)
    } else {
        String::new()
    }
}

/// x of an HDR plot: the number of nines, so 90 % → 1, 99 % → 2, 99.9 % → 3.
fn nines(percentile: f64) -> f64 {
    -(1.0 - (percentile / 100.0).min(0.999_999)).log10()
}

fn latency<DB: DrawingBackend>(doc: &RunDoc, root: &DrawingArea<DB, Shift>) -> Drawn {
    let curves: Vec<(String, Vec<(f64, f64)>)> = doc
        .runs
        .iter()
        .filter_map(|r| {
            let rec = r.latency_s.as_ref()?.recorder().ok()?;
            (rec.count() > 0).then(|| {
                let points = rec
                    .percentile_curve()
                    .into_iter()
                    .map(|(p, s)| (nines(p), s * 1e3))
                    .collect();
                (r.label.clone(), points)
            })
        })
        .take(MAX_CURVES)
        .collect();
    // Past 1/count of the tail the curve is flat at the maximum: stop the axis there.
    let most = doc
        .runs
        .iter()
        .filter_map(|r| r.latency_s.as_ref().map(|l| l.count))
        .max()
        .unwrap_or(1);
    let max_x = (most as f64).log10().ceil().clamp(2.0, 6.0);
    let curves: Vec<(String, Vec<(f64, f64)>)> = curves
        .into_iter()
        .map(|(label, points)| {
            (
                label,
                points.into_iter().map(|(x, y)| (x.min(max_x), y)).collect(),
            )
        })
        .collect();
    let max_y = curves
        .iter()
        .flat_map(|(_, c)| c.iter().map(|p| p.1))
        .fold(0.001, f64::max);
    let mut chart = ChartBuilder::on(root)
        .caption("Latency by percentile (HDR)", TITLE)
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(64)
        .build_cartesian_2d(0f64..max_x, 0f64..max_y * 1.05)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_labels(max_x as usize + 1)
        .x_label_formatter(&|x| {
            let p = 100.0 * (1.0 - 10f64.powf(-x));
            format!("{}%", trim_float(p))
        })
        .x_desc("percentile")
        .y_desc("latency (ms)")
        .draw()
        .map_err(err)?;
    for (i, (label, points)) in curves.into_iter().enumerate() {
        let c = color(i);
        chart
            .draw_series(LineSeries::new(points, c.stroke_width(2)))
            .map_err(err)?
            .label(label)
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], c.stroke_width(2)));
    }
    legend(&mut chart, SeriesLabelPosition::UpperLeft)
}

fn trim_float(v: f64) -> String {
    let text = format!("{v:.4}");
    text.trim_end_matches('0').trim_end_matches('.').to_string()
}

fn balance<DB: DrawingBackend>(doc: &RunDoc, root: &DrawingArea<DB, Shift>) -> Drawn {
    let n = doc.runs.len();
    let max = doc
        .runs
        .iter()
        .flat_map(|r| r.per_worker.iter().copied())
        .max()
        .unwrap_or(1)
        .max(1) as f64;
    let mut chart = per_run_chart(
        root,
        "Items per worker, per run",
        n,
        0f64..max * 1.1,
        "run (bars: workers in order; line: an even split)",
        "items",
    )?;
    for (i, run) in doc.runs.iter().enumerate() {
        let k = run.per_worker.len();
        if k == 0 {
            continue;
        }
        let width = 0.8 / k as f64;
        chart
            .draw_series(run.per_worker.iter().enumerate().map(|(w, &items)| {
                let x0 = i as f64 - 0.4 + w as f64 * width;
                Rectangle::new(
                    [(x0, 0.0), (x0 + width * 0.9, items as f64)],
                    color(w).filled(),
                )
            }))
            .map_err(err)?;
        let even = run.per_worker.iter().sum::<u64>() as f64 / k as f64;
        chart
            .draw_series(std::iter::once(PathElement::new(
                [(i as f64 - 0.45, even), (i as f64 + 0.45, even)],
                BLACK.stroke_width(2),
            )))
            .map_err(err)?;
    }
    Ok(())
}

pub(crate) type Chart2d<'a, DB> = ChartContext<'a, DB, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

/// Axes of a timeline chart: seconds since start against `y_desc` from 0 to `max_y`.
fn timeline_chart<'a, DB: DrawingBackend>(
    root: &'a DrawingArea<DB, Shift>,
    title: &str,
    max_t: f64,
    max_y: f64,
    y_desc: &str,
) -> Result<Chart2d<'a, DB>, String> {
    let mut chart = ChartBuilder::on(root)
        .caption(title, TITLE)
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(72)
        .build_cartesian_2d(0f64..max_t, 0f64..max_y * 1.1)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("seconds since start")
        .y_desc(y_desc)
        .draw()
        .map_err(err)?;
    Ok(chart)
}

fn rate<DB: DrawingBackend>(doc: &RunDoc, root: &DrawingArea<DB, Shift>) -> Drawn {
    let t = &doc.timeline;
    let max_t = t.last().map_or(1.0, |k| k.t_s).max(1.0);
    let max_y = t
        .iter()
        .flat_map(|k| [k.in_per_s, k.out_per_s, k.target_per_s.unwrap_or(0.0)])
        .fold(1.0, f64::max);
    let mut chart = timeline_chart(
        root,
        "Rate per second: target, in, out",
        max_t,
        max_y,
        "items per second",
    )?;
    let targets: Vec<(f64, f64)> = t
        .iter()
        .filter_map(|k| k.target_per_s.map(|r| (k.t_s, r)))
        .collect();
    if !targets.is_empty() {
        let grey = RGBColor(90, 90, 90);
        chart
            .draw_series(DashedLineSeries::new(targets, 8, 5, grey.stroke_width(2)))
            .map_err(err)?
            .label("target")
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], grey.stroke_width(2)));
    }
    type Series = (&'static str, fn(&plumbline_measure::Tick) -> f64, RGBColor);
    let series: [Series; 2] = [
        ("in (sent)", |k| k.in_per_s, color(0)),
        ("out (done)", |k| k.out_per_s, color(1)),
    ];
    for (label, value, c) in series {
        chart
            .draw_series(LineSeries::new(
                t.iter().map(|k| (k.t_s, value(k))),
                c.stroke_width(2),
            ))
            .map_err(err)?
            .label(label)
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], c.stroke_width(2)));
    }
    legend(&mut chart, SeriesLabelPosition::LowerRight)
}

fn lag<DB: DrawingBackend>(doc: &RunDoc, root: &DrawingArea<DB, Shift>) -> Drawn {
    let t = &doc.timeline;
    let max_t = t.last().map_or(1.0, |k| k.t_s).max(1.0);
    let max_y = t
        .iter()
        .flat_map(|k| [k.in_flight, k.late])
        .max()
        .unwrap_or(1)
        .max(1) as f64;
    let mut chart = timeline_chart(
        root,
        "In flight and late sends per second",
        max_t,
        max_y,
        "items",
    )?;
    let late = color(3);
    chart
        .draw_series(t.iter().filter(|k| k.late > 0).map(|k| {
            Rectangle::new(
                [(k.t_s - 0.9, 0.0), (k.t_s, k.late as f64)],
                late.mix(0.5).filled(),
            )
        }))
        .map_err(err)?
        .label("late sends in the second")
        .legend(move |(x, y)| {
            Rectangle::new([(x, y - 5), (x + 20, y + 5)], late.mix(0.5).filled())
        });
    let c = color(4);
    chart
        .draw_series(LineSeries::new(
            t.iter().map(|k| (k.t_s, k.in_flight as f64)),
            c.stroke_width(2),
        ))
        .map_err(err)?
        .label("in flight (in − out)")
        .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], c.stroke_width(2)));
    legend(&mut chart, SeriesLabelPosition::UpperRight)
}
