//! The charts only `capacity` has: the demand plot (each load asked with `--loads` → the
//! fewest workers that sustained it) and the lag of every trial over time, one panel per
//! worker count. [`CapacityCharts`] is what `run.json` keeps for them (the search itself is in
//! `detail`); drawing is plotters', as for the other charts. Nothing here searches or judges.

use plotters::coord::Shift;
use plotters::prelude::*;
use plumbline_measure::record::Demand;
use serde::{Deserialize, Serialize};

use crate::doc::RunDoc;
use crate::plots::{color, err, legend, Drawn, TITLE};

/// Trials drawn per panel at most (the last ones, which bracket the capacity), so a legend
/// stays readable.
const MAX_LINES: usize = 8;
/// Panels (worker counts) drawn at most.
const MAX_PANELS: usize = 6;

/// What a capacity search leaves for its charts.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CapacityCharts {
    pub demand: Vec<Demand>,
    pub trials: Vec<TrialLag>,
}

/// One trial's lag (items due by the schedule but not done) over its run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrialLag {
    pub curve: String,
    pub workers: usize,
    /// Items/s offered.
    pub rate: f64,
    /// `pass`, `fail` or `sender-bound`.
    pub verdict: String,
    /// Where the judged window starts, seconds after the first item.
    pub warmup_s: f64,
    /// `(seconds after the first item, lag)`.
    pub lag: Vec<(f64, f64)>,
}

pub(crate) fn has_demand(doc: &RunDoc) -> bool {
    doc.capacity.as_ref().is_some_and(|c| !c.demand.is_empty())
}

pub(crate) fn has_trials(doc: &RunDoc) -> bool {
    doc.capacity
        .as_ref()
        .is_some_and(|c| c.trials.iter().any(|t| t.lag.len() >= 2))
}

/// Load against the fewest workers, a line per curve; a load no worker count sustained is a
/// cross above the most workers measured.
pub(crate) fn demand<DB: DrawingBackend>(doc: &RunDoc, root: &DrawingArea<DB, Shift>) -> Drawn {
    let points = doc.capacity.as_ref().map_or(&[][..], |c| &c.demand[..]);
    let measured = doc.runs.iter().map(|r| r.workers).max().unwrap_or(1);
    let top = points
        .iter()
        .filter_map(|p| p.workers)
        .fold(measured, usize::max) as f64
        + 1.0;
    let max_load = points.iter().map(|p| p.load).fold(1.0, f64::max);
    let mut chart = ChartBuilder::on(root)
        .caption("Demand: the fewest workers per load", TITLE)
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(56)
        .build_cartesian_2d(0f64..max_load * 1.1, 0f64..top + 0.5)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("load (items/s)")
        .y_desc("fewest workers that sustain it")
        .y_label_formatter(&|y| {
            if (y - top).abs() < 1e-9 {
                "more".into()
            } else if (y - y.round()).abs() < 1e-9 {
                format!("{y:.0}")
            } else {
                String::new()
            }
        })
        .draw()
        .map_err(err)?;
    let mut curves: Vec<&str> = Vec::new();
    for p in points {
        if !curves.contains(&p.curve.as_str()) {
            curves.push(&p.curve);
        }
    }
    for (i, curve) in curves.into_iter().enumerate() {
        let c = color(i);
        let mut line: Vec<(f64, f64)> = points
            .iter()
            .filter(|p| p.curve == curve)
            .filter_map(|p| p.workers.map(|w| (p.load, w as f64)))
            .collect();
        line.sort_by(|a, b| a.0.total_cmp(&b.0));
        chart
            .draw_series(LineSeries::new(line.clone(), c.stroke_width(3)))
            .map_err(err)?
            .label(curve.to_string())
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], c.stroke_width(3)));
        chart
            .draw_series(line.iter().map(|&p| Circle::new(p, 5, c.filled())))
            .map_err(err)?;
        chart
            .draw_series(
                points
                    .iter()
                    .filter(|p| p.curve == curve && p.workers.is_none())
                    .map(|p| Cross::new((p.load, top), 7, c.stroke_width(3))),
            )
            .map_err(err)?;
    }
    legend(&mut chart, SeriesLabelPosition::UpperLeft)
}

/// Lag over each trial, one panel per curve and worker count, a line per trial labelled with
/// its rate and verdict; the dashed line is where the warm-up ends and the judged window
/// starts.
pub(crate) fn trials<DB: DrawingBackend>(doc: &RunDoc, root: &DrawingArea<DB, Shift>) -> Drawn {
    let trials = doc.capacity.as_ref().map_or(&[][..], |c| &c.trials[..]);
    let mut panels: Vec<(&str, usize)> = Vec::new();
    for t in trials {
        if !panels.contains(&(t.curve.as_str(), t.workers)) {
            panels.push((&t.curve, t.workers));
        }
    }
    panels.truncate(MAX_PANELS);
    let (title, body) = root.split_vertically(36);
    title
        .titled("Lag over time, per trial", TITLE)
        .map_err(err)?;
    let cols = panels.len().clamp(1, 3);
    let rows = panels.len().div_ceil(cols).max(1);
    let areas = body.split_evenly((rows, cols));
    for (area, (curve, workers)) in areas.iter().zip(panels) {
        let mine: Vec<&TrialLag> = trials
            .iter()
            .filter(|t| t.curve == curve && t.workers == workers)
            .collect();
        let mine = &mine[mine.len().saturating_sub(MAX_LINES)..];
        panel(area, workers, mine)?;
    }
    Ok(())
}

fn panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    workers: usize,
    trials: &[&TrialLag],
) -> Drawn {
    let points = || trials.iter().flat_map(|t| t.lag.iter());
    let max_t = points().map(|p| p.0).fold(1.0, f64::max);
    let lo = points().map(|p| p.1).fold(0.0, f64::min);
    let hi = points().map(|p| p.1).fold(1.0, f64::max);
    let mut chart = ChartBuilder::on(area)
        .caption(format!("{workers} worker(s)"), ("sans-serif", 15))
        .margin(8)
        .x_label_area_size(32)
        .y_label_area_size(48)
        .build_cartesian_2d(0f64..max_t, lo..hi * 1.1)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("s into the trial")
        .y_desc("lag (due − done)")
        .label_style(("sans-serif", 11))
        .axis_desc_style(("sans-serif", 12))
        .draw()
        .map_err(err)?;
    let grey = RGBColor(120, 120, 120);
    if let Some(warmup) = trials.first().map(|t| t.warmup_s) {
        chart
            .draw_series(DashedLineSeries::new(
                [(warmup, lo), (warmup, hi * 1.1)],
                6,
                4,
                grey.stroke_width(1),
            ))
            .map_err(err)?;
    }
    for (i, t) in trials.iter().enumerate() {
        let c = color(i);
        chart
            .draw_series(LineSeries::new(t.lag.iter().copied(), c.stroke_width(2)))
            .map_err(err)?
            .label(format!("{:.1}/s {}", t.rate, t.verdict))
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 14, y)], c.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.3))
        .label_font(("sans-serif", 10))
        .draw()
        .map_err(err)
}
