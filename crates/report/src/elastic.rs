//! The chart only `elastic` has: the group's lag over the run against its members, each
//! membership change marked where it was applied (`4→3 graceful`), so a change's pause, lag
//! peak and recovery read off one picture; the `rate` chart beside it shows what was offered
//! and done per second. It draws from the run record in [`RunDoc::detail`]; nothing here
//! measures or judges.

use plotters::coord::Shift;
use plotters::prelude::*;
use plumbline_measure::record::{ElasticSection, Record};

use crate::doc::RunDoc;
use crate::plots::{color, err, legend, Drawn, TITLE};

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

/// Lag (left axis) and members (right axis) over the run, a dashed line at each change.
pub(crate) fn timeline<DB: DrawingBackend>(doc: &RunDoc, root: &DrawingArea<DB, Shift>) -> Drawn {
    let e = section(doc).ok_or("not an elastic run")?;
    let end = e.lag.iter().map(|p| p.0).fold(1.0, f64::max);
    let top = e.lag.iter().map(|p| p.1).fold(1.0, f64::max) * 1.1;
    let start = e
        .changes
        .first()
        .map_or_else(|| doc.runs.first().map_or(1, |r| r.workers), |c| c.from);
    let steps: Vec<(f64, usize)> = e.changes.iter().map(|c| (c.at_s, c.to)).collect();
    let line = members(start, &steps, end);
    let most = line.iter().map(|p| p.1).fold(1.0, f64::max) + 1.0;
    let mut chart = ChartBuilder::on(root)
        .caption("Lag and members over the run, each change marked", TITLE)
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(72)
        .right_y_label_area_size(56)
        .build_cartesian_2d(0f64..end, 0f64..top)
        .map_err(err)?
        .set_secondary_coord(0f64..end, 0f64..most);
    chart
        .configure_mesh()
        .x_desc("seconds since the first item")
        .y_desc("lag (items due, not done)")
        .draw()
        .map_err(err)?;
    chart
        .configure_secondary_axes()
        .y_desc("members")
        .y_labels(most as usize + 1)
        .y_label_formatter(&|v| format!("{v:.0}"))
        .draw()
        .map_err(err)?;
    let grey = RGBColor(110, 110, 110);
    for (i, c) in e.changes.iter().enumerate() {
        chart
            .draw_series(DashedLineSeries::new(
                [(c.at_s, 0.0), (c.at_s, top)],
                6,
                4,
                grey.stroke_width(1),
            ))
            .map_err(err)?;
        chart
            .draw_series(std::iter::once(Text::new(
                format!("{}→{} {}", c.from, c.to, c.how),
                // Three rows, so the labels of changes close together do not overlap.
                (c.at_s, top * (0.98 - 0.06 * (i % 3) as f64)),
                ("sans-serif", 13).into_font().color(&grey),
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
                    autoscale: None,
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
