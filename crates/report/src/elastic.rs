//! The chart only `elastic` has: on one time axis, the load offered and done per second above,
//! the group's lag against its members below, each membership change marked where it was
//! applied (`4→3 graceful`), so a change's pause, lag peak and recovery, and the load that
//! drove an autoscaler's decision, read off one picture. It draws from the run record in [`RunDoc::detail`]; nothing here
//! measures or judges.

use plotters::coord::Shift;
use plotters::prelude::*;
use plumbline_measure::record::{ElasticSection, Record};

use crate::doc::RunDoc;
use crate::plots::{color, err, legend, Chart2d, Drawn, TITLE};

/// The elastic section of the document's one run, if it is an elastic run.
fn section(doc: &RunDoc) -> Option<ElasticSection> {
    let record: Record = serde_json::from_value(doc.detail.clone()).ok()?;
    record.runs.into_iter().next()?.elastic
}

pub(crate) fn has_elastic(doc: &RunDoc) -> bool {
    section(doc).is_some_and(|e| e.lag.len() >= 2)
}

/// Members over `[0, end]`: `start` until the first change, then each change's count, as the
/// corners of a step line.
fn members(start: usize, changes: &[(f64, usize)], end: f64) -> Vec<(f64, f64)> {
    let mut line = vec![(0.0, start as f64)];
    let mut now = start as f64;
    for &(at, to) in changes {
        line.push((at, now));
        now = to as f64;
        line.push((at, now));
    }
    line.push((end, now));
    line
}

/// On one time axis: offered and done per second above (when the record has them), lag (left
/// axis) and members (right axis) below, a dashed line at each change in both.
pub(crate) fn timeline<DB: DrawingBackend>(doc: &RunDoc, root: &DrawingArea<DB, Shift>) -> Drawn {
    let e = section(doc).ok_or("not an elastic run")?;
    let end = e
        .lag
        .iter()
        .map(|p| p.0)
        .chain(e.flow.iter().map(|p| p.0))
        .fold(1.0, f64::max);
    let root = root
        .titled(
            "Offered, done, lag and members over the run, each change marked",
            TITLE,
        )
        .map_err(err)?;
    let below = if e.flow.is_empty() {
        root
    } else {
        let (above, below) = root.split_vertically((38).percent());
        flow(&e, &above, end)?;
        below
    };
    lag_and_members(doc, &e, &below, end)
}

/// One panel's coordinates, 0..`end` seconds by 0..`top`, with room on the right for a
/// second axis, so stacked panels share their time axis pixel for pixel.
fn panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    (end, top): (f64, f64),
    x_labels: u32,
) -> Result<Chart2d<'_, DB>, String> {
    ChartBuilder::on(area)
        .margin(16)
        .x_label_area_size(x_labels)
        .y_label_area_size(72)
        .right_y_label_area_size(56)
        .build_cartesian_2d(0f64..end, 0f64..top)
        .map_err(err)
}

/// A panel's grid and axis names; only the lowest panel names the time axis. Drawn after a
/// second axis is set, so the left axis's labels stay on the left.
fn mesh<DB: DrawingBackend>(
    chart: &mut Chart2d<'_, DB>,
    x_desc: Option<&str>,
    y_desc: &str,
) -> Drawn {
    let mut mesh = chart.configure_mesh();
    mesh.y_desc(y_desc);
    if let Some(x) = x_desc {
        mesh.x_desc(x);
    }
    mesh.draw().map_err(err)
}

/// The dashed line of each change, from 0 to `top` on the chart's left axis.
fn mark_changes<DB: DrawingBackend>(
    chart: &mut Chart2d<'_, DB>,
    e: &ElasticSection,
    top: f64,
) -> Drawn {
    for c in &e.changes {
        chart
            .draw_series(DashedLineSeries::new(
                [(c.at_s, 0.0), (c.at_s, top)],
                6,
                4,
                GREY.stroke_width(1),
            ))
            .map_err(err)?;
    }
    Ok(())
}

const GREY: RGBColor = RGBColor(110, 110, 110);

/// Items due (offered) and done per second.
fn flow<DB: DrawingBackend>(e: &ElasticSection, area: &DrawingArea<DB, Shift>, end: f64) -> Drawn {
    let top = e.flow.iter().flat_map(|p| [p.1, p.2]).fold(1.0, f64::max) * 1.1;
    let mut chart = panel(area, (end, top), 28)?;
    mesh(&mut chart, None, "items per second")?;
    mark_changes(&mut chart, e, top)?;
    type Series = (&'static str, fn(&(f64, f64, f64)) -> f64, RGBColor);
    let series: [Series; 2] = [
        ("offered (due)", |p| p.1, RGBColor(90, 90, 90)),
        ("done", |p| p.2, color(1)),
    ];
    for (label, value, c) in series {
        chart
            .draw_series(LineSeries::new(
                e.flow.iter().map(|p| (p.0, value(p))),
                c.stroke_width(2),
            ))
            .map_err(err)?
            .label(label)
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], c.stroke_width(2)));
    }
    legend(&mut chart, SeriesLabelPosition::UpperRight)
}

/// Lag (left axis) and members (right axis), each change labelled (`4→3 graceful`).
fn lag_and_members<DB: DrawingBackend>(
    doc: &RunDoc,
    e: &ElasticSection,
    area: &DrawingArea<DB, Shift>,
    end: f64,
) -> Drawn {
    let top = e.lag.iter().map(|p| p.1).fold(1.0, f64::max) * 1.1;
    let start = e
        .changes
        .first()
        .map_or_else(|| doc.runs.first().map_or(1, |r| r.workers), |c| c.from);
    let steps: Vec<(f64, usize)> = e.changes.iter().map(|c| (c.at_s, c.to)).collect();
    let line = members(start, &steps, end);
    let most = line.iter().map(|p| p.1).fold(1.0, f64::max) + 1.0;
    let mut chart = panel(area, (end, top), 44)?.set_secondary_coord(0f64..end, 0f64..most);
    mesh(
        &mut chart,
        Some("seconds since the first item"),
        "lag (items due, not done)",
    )?;
    chart
        .configure_secondary_axes()
        .y_desc("members")
        .y_labels(most as usize + 1)
        .y_label_formatter(&|v| format!("{v:.0}"))
        .draw()
        .map_err(err)?;
    mark_changes(&mut chart, e, top)?;
    for (i, c) in e.changes.iter().enumerate() {
        chart
            .draw_series(std::iter::once(Text::new(
                format!("{}→{} {}", c.from, c.to, c.how),
                // Three rows, so the labels of changes close together do not overlap.
                (c.at_s, top * (0.98 - 0.06 * (i % 3) as f64)),
                ("sans-serif", 13).into_font().color(&GREY),
            )))
            .map_err(err)?;
    }
    let lag = color(3);
    chart
        .draw_series(LineSeries::new(e.lag.iter().copied(), lag.stroke_width(2)))
        .map_err(err)?
        .label("lag")
        .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], lag.stroke_width(2)));
    let members = color(0);
    chart
        .draw_secondary_series(LineSeries::new(line, members.stroke_width(3)))
        .map_err(err)?
        .label("members")
        .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], members.stroke_width(3)));
    legend(&mut chart, SeriesLabelPosition::LowerRight)
}

#[cfg(test)]
mod tests {
    use super::*;
    use plumbline_measure::record::{Command, ElasticChange, RunRecord};
    use plumbline_measure::report::Host;

    fn elastic_doc(lag: Vec<(f64, f64)>) -> RunDoc {
        let change = ElasticChange {
            from: 4,
            to: 3,
            how: "graceful".into(),
            at_s: 1.0,
            pause_s: 0.1,
            slowest_share: Some(0.5),
            lag_before: 2.0,
            lag_peak: 40.0,
            recover_lag: 4.0,
            recovered_s: Some(2.0),
            reaction_s: None,
        };
        let record = Record {
            runs: vec![RunRecord {
                elastic: Some(ElasticSection {
                    cluster: "redis://127.0.0.1:6379/jobs".into(),
                    schedule: "4@0s,3@1s".into(),
                    leave: "graceful".into(),
                    shape: "constant".into(),
                    peak_per_s: 100.0,
                    cut: false,
                    changes: vec![change],
                    lag,
                    flow: vec![(1.0, 100.0, 98.0), (2.0, 100.0, 60.0), (3.0, 100.0, 142.0)],
                    autoscale: None,
                    continuity: None,
                    migrations: Vec::new(),
                }),
                ..RunRecord::new(4, 4.0)
            }],
            ..Record::new(Command::Elastic, vec!["plumbline".into()], Host::current())
        };
        RunDoc::from_record(&record)
    }

    #[test]
    fn an_elastic_run_is_drawn_with_its_changes_marked_and_other_runs_are_not() {
        let dir = std::env::temp_dir().join(format!("plumbline-elastic-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let doc = elastic_doc(vec![(0.0, 1.0), (1.5, 40.0), (3.0, 2.0)]);
        let plots = crate::plots::draw_all(&doc, &dir).unwrap();
        let plot = plots.iter().find(|p| p.name == "elastic").expect("drawn");
        assert!(plot.svg.contains("4→3 graceful"), "the change is marked");
        assert!(
            plot.svg.contains("offered (due)"),
            "the flow is drawn above"
        );
        assert!(dir.join("elastic.png").exists());
        assert!(
            !has_elastic(&elastic_doc(vec![(0.0, 1.0)])),
            "one sample is no line"
        );
        assert!(!has_elastic(&crate::doc::tests::doc_with(&[(
            "a", 1.0, 1.0
        )])));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn members_step_at_each_change_and_hold_to_the_end() {
        assert_eq!(
            members(4, &[(1.0, 3), (5.0, 5)], 9.0),
            [
                (0.0, 4.0),
                (1.0, 4.0),
                (1.0, 3.0),
                (5.0, 3.0),
                (5.0, 5.0),
                (9.0, 5.0)
            ]
        );
        assert_eq!(members(2, &[], 3.0), [(0.0, 2.0), (3.0, 2.0)]);
    }
}
