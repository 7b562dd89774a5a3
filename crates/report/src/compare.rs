//! `plumbline compare BASE NEW`: the two reports' runs side by side, matched by label, and the
//! verdict a CI gate needs (did overhead or p99 latency get worse, or a capacity drop, more
//! than allowed?).
//!
//! A run in BASE missing from NEW is a regression too: a gate cannot pass on what it did not
//! measure. Runs only in NEW are listed and do not fail. This module does not read files.

use std::fmt::Write as _;

use crate::doc::{Run, RunDoc};
use plumbline_measure::report::{pct_above, secs};

/// What may get worse before `compare` fails.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Thresholds {
    /// Percentage points of overhead (new − base).
    pub max_overhead_increase_pp: f64,
    /// Percent of the base p99 latency.
    pub max_p99_increase_pct: f64,
    /// Percent of the base capacity (`capacity` rows).
    pub max_capacity_drop_pct: f64,
}

/// One run of BASE against its namesake in NEW.
#[derive(Debug, Clone, PartialEq)]
pub struct RunDiff {
    pub label: String,
    pub base_overhead_pct: Option<f64>,
    pub new_overhead_pct: Option<f64>,
    pub base_p99_s: Option<f64>,
    pub new_p99_s: Option<f64>,
    pub base_items_per_s: f64,
    pub new_items_per_s: f64,
    /// Why this run fails the gate; empty when it passes.
    pub breaches: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Comparison {
    pub diffs: Vec<RunDiff>,
    /// Runs of BASE that NEW lacks.
    pub missing: Vec<String>,
    /// Runs of NEW that BASE lacks.
    pub added: Vec<String>,
    /// Labels a report holds more than once: runs cannot be matched by them.
    pub ambiguous: Vec<String>,
}

fn p99(run: &Run) -> Option<f64> {
    run.latency_s
        .as_ref()
        .filter(|l| l.count > 0)
        .map(|l| l.p99)
}

/// Whether two reports can be compared at all: runs of one command only (a bench's runs are
/// not a send's, nor a capacity point a bench run). `Err` says what each report holds.
pub fn comparable(base: &RunDoc, new: &RunDoc) -> Result<(), String> {
    let (b, n) = (&base.meta.kind, &new.meta.kind);
    if b == n {
        Ok(())
    } else {
        Err(format!(
            "the base holds a `{b}` report and the new a `{n}` report: compare two runs of \
             the same command"
        ))
    }
}

pub fn compare(base: &RunDoc, new: &RunDoc, limits: Thresholds) -> Comparison {
    let mut diffs = Vec::new();
    let mut missing = Vec::new();
    let mut ambiguous = Vec::new();
    for (which, doc) in [("base", base), ("new", new)] {
        let mut seen = std::collections::HashSet::new();
        for run in &doc.runs {
            if !seen.insert(&run.label) {
                ambiguous.push(format!(
                    "{}: the {which} report has this label twice",
                    run.label
                ));
            }
        }
    }
    for b in &base.runs {
        let Some(n) = new.runs.iter().find(|n| n.label == b.label) else {
            missing.push(b.label.clone());
            continue;
        };
        let mut breaches = Vec::new();
        match (b.overhead_pct, n.overhead_pct) {
            (Some(bo), Some(no)) if no - bo > limits.max_overhead_increase_pp => {
                breaches.push(format!(
                    "overhead {bo:+.2} % → {no:+.2} % (+{:.2} pp, limit {} pp)",
                    no - bo,
                    limits.max_overhead_increase_pp
                ))
            }
            // A gate cannot pass on what the new run did not measure.
            (Some(_), None) => {
                breaches.push("overhead measured in the base, not in the new".into())
            }
            _ => {}
        }
        match (p99(b), p99(n)) {
            (Some(bp), Some(np)) => match pct_above(np, bp) {
                Some(up) if up > limits.max_p99_increase_pct => breaches.push(format!(
                    "p99 {} → {} (+{up:.1} %, limit {} %)",
                    secs(bp),
                    secs(np),
                    limits.max_p99_increase_pct
                )),
                _ => {}
            },
            (Some(_), None) => breaches.push("latency measured in the base, not in the new".into()),
            _ => {}
        }
        match (b.capacity_per_s, n.capacity_per_s) {
            (Some(bc), Some(nc)) => {
                // How far the new capacity is below the base, as a share of the base.
                let drop = (bc - nc) / bc * 100.0;
                if drop > limits.max_capacity_drop_pct {
                    breaches.push(format!(
                        "capacity {bc:.1}/s → {nc:.1}/s (−{drop:.1} %, limit {} %)",
                        limits.max_capacity_drop_pct
                    ))
                }
            }
            (Some(_), None) => {
                breaches.push("a capacity found in the base, none in the new".into())
            }
            _ => {}
        }
        diffs.push(RunDiff {
            label: b.label.clone(),
            base_overhead_pct: b.overhead_pct,
            new_overhead_pct: n.overhead_pct,
            base_p99_s: p99(b),
            new_p99_s: p99(n),
            base_items_per_s: b.items_per_s,
            new_items_per_s: n.items_per_s,
            breaches,
        });
    }
    let added = new
        .runs
        .iter()
        .filter(|n| !base.runs.iter().any(|b| b.label == n.label))
        .map(|n| n.label.clone())
        .collect();
    Comparison {
        diffs,
        missing,
        added,
        ambiguous,
    }
}

impl Comparison {
    pub fn passed(&self) -> bool {
        self.missing.is_empty()
            && self.ambiguous.is_empty()
            && self.diffs.iter().all(|d| d.breaches.is_empty())
    }

    /// Every failure, one line each.
    pub fn failures(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .diffs
            .iter()
            .flat_map(|d| d.breaches.iter().map(move |b| format!("{}: {b}", d.label)))
            .collect();
        out.extend(
            self.missing
                .iter()
                .map(|m| format!("{m}: in the base report but not in the new one")),
        );
        out.extend(self.ambiguous.iter().cloned());
        out
    }

    /// The side-by-side table.
    pub fn table(&self) -> String {
        let pct = |v: Option<f64>| v.map_or("–".into(), |v| format!("{v:+.2}%"));
        let lat = |v: Option<f64>| v.map_or("–".into(), secs);
        let mut out = format!(
            "{:<44} {:>9} {:>9} {:>8} | {:>10} {:>10} {:>7} | {:>10} {:>7}  verdict\n",
            "run", "ovh base", "ovh new", "Δ pp", "p99 base", "p99 new", "Δ", "items/s", "Δ"
        );
        for d in &self.diffs {
            let dpp = match (d.base_overhead_pct, d.new_overhead_pct) {
                (Some(b), Some(n)) => format!("{:+.2}", n - b),
                _ => "–".into(),
            };
            let change = |up: Option<f64>| up.map_or("–".into(), |up| format!("{up:+.1}%"));
            let dp99 = change(
                d.base_p99_s
                    .zip(d.new_p99_s)
                    .and_then(|(b, n)| pct_above(n, b)),
            );
            let drate = change(pct_above(d.new_items_per_s, d.base_items_per_s));
            let _ = writeln!(
                out,
                "{:<44} {:>9} {:>9} {:>8} | {:>10} {:>10} {:>7} | {:>10.1} {:>7}  {}",
                clip(&d.label, 44),
                pct(d.base_overhead_pct),
                pct(d.new_overhead_pct),
                dpp,
                lat(d.base_p99_s),
                lat(d.new_p99_s),
                dp99,
                d.new_items_per_s,
                drate,
                if d.breaches.is_empty() { "ok" } else { "WORSE" }
            );
        }
        for m in &self.missing {
            let _ = writeln!(out, "{:<44} missing from the new report", clip(m, 44));
        }
        for a in &self.added {
            let _ = writeln!(out, "{:<44} new (not in the base report)", clip(a, 44));
        }
        out
    }
}

/// Keeps a label's end, where runs of one group differ ("… on 10").
fn clip(text: &str, width: usize) -> String {
    let count = text.chars().count();
    if count <= width {
        text.to_string()
    } else {
        let kept: String = text.chars().skip(count - (width - 1)).collect();
        format!("…{kept}")
    }
}

/// Parses `0.5pp` or `0.5` (percentage points).
pub fn parse_pp(text: &str) -> Result<f64, String> {
    parse_with_unit(text, "pp")
}

/// Parses `10%` or `10` (percent).
pub fn parse_pct(text: &str) -> Result<f64, String> {
    parse_with_unit(text, "%")
}

fn parse_with_unit(text: &str, unit: &str) -> Result<f64, String> {
    let number = text.trim().strip_suffix(unit).unwrap_or(text.trim()).trim();
    match number.parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
        _ => Err(format!(
            "{text:?} is not a threshold: expected a number ≥ 0, optionally followed by {unit:?}"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doc::tests::doc_with;

    const LIMITS: Thresholds = Thresholds {
        max_overhead_increase_pp: 0.5,
        max_p99_increase_pct: 10.0,
        max_capacity_drop_pct: 5.0,
    };

    #[test]
    fn a_capacity_drop_beyond_the_limit_fails_and_losing_the_capacity_too() {
        let with = |capacity: Option<f64>| {
            let mut doc = doc_with(&[("a", 1.0, 0.010)]);
            doc.runs[0].capacity_per_s = capacity;
            doc
        };
        let base = with(Some(400.0));
        assert!(compare(&base, &with(Some(381.0)), LIMITS).passed());
        assert!(compare(&base, &with(Some(450.0)), LIMITS).passed());
        let c = compare(&base, &with(Some(379.0)), LIMITS);
        assert_eq!(
            c.failures(),
            ["a: capacity 400.0/s → 379.0/s (−5.2 %, limit 5 %)"]
        );
        assert!(!compare(&base, &with(None), LIMITS).passed());
    }

    #[test]
    fn reports_of_two_commands_are_not_compared() {
        let base = doc_with(&[("a", 1.0, 0.010)]);
        let mut new = base.clone();
        assert_eq!(comparable(&base, &new), Ok(()));
        new.meta.kind = "send".into();
        assert_eq!(
            comparable(&base, &new).unwrap_err(),
            "the base holds a `bench` report and the new a `send` report: compare two runs of \
             the same command"
        );
    }

    #[test]
    fn identical_reports_pass() {
        let doc = doc_with(&[("a", 1.0, 0.010), ("b", 2.0, 0.020)]);
        let c = compare(&doc, &doc, LIMITS);
        assert!(c.passed(), "{:?}", c.failures());
        assert_eq!(c.diffs.len(), 2);
    }

    #[test]
    fn overhead_up_by_more_than_the_limit_fails_naming_the_run() {
        let base = doc_with(&[("a", 1.0, 0.010)]);
        let ok = doc_with(&[("a", 1.4, 0.010)]);
        let worse = doc_with(&[("a", 1.6, 0.010)]);
        assert!(compare(&base, &ok, LIMITS).passed());
        let c = compare(&base, &worse, LIMITS);
        assert!(!c.passed());
        assert!(
            c.failures()[0].starts_with("a: overhead"),
            "{:?}",
            c.failures()
        );
    }

    #[test]
    fn p99_up_by_more_than_the_limit_fails() {
        let base = doc_with(&[("a", 1.0, 0.010)]);
        assert!(compare(&base, &doc_with(&[("a", 1.0, 0.0109)]), LIMITS).passed());
        let c = compare(&base, &doc_with(&[("a", 1.0, 0.0125)]), LIMITS);
        assert!(c.failures()[0].contains("p99"), "{:?}", c.failures());
    }

    #[test]
    fn a_run_missing_from_new_fails_and_a_new_run_does_not() {
        let base = doc_with(&[("a", 1.0, 0.010), ("b", 1.0, 0.010)]);
        let new = doc_with(&[("a", 1.0, 0.010), ("c", 9.0, 0.010)]);
        let c = compare(&base, &new, LIMITS);
        assert_eq!(c.missing, vec!["b".to_string()]);
        assert_eq!(c.added, vec!["c".to_string()]);
        assert!(!c.passed());
        assert!(c.table().contains("missing from the new report"));
    }

    #[test]
    fn long_labels_keep_the_end_that_tells_runs_apart() {
        let label = "1000 nonces x 0.01s sleep balanced threads (uniform) on 10";
        assert_eq!(clip(label, 12), "…form) on 10");
        assert_eq!(clip(label, 12).chars().count(), 12);
        assert_eq!(clip("short", 12), "short");
    }

    #[test]
    fn a_figure_the_new_run_lacks_fails_and_so_does_a_repeated_label() {
        let base = doc_with(&[("a", 1.0, 0.010)]);
        let mut new = base.clone();
        new.runs[0].overhead_pct = None;
        new.runs[0].latency_s = None;
        let failures = compare(&base, &new, LIMITS).failures();
        assert_eq!(failures.len(), 2, "{failures:?}");
        assert!(failures[0].contains("overhead measured in the base, not in the new"));
        let mut twice = base.clone();
        twice.runs.push(twice.runs[0].clone());
        let c = compare(&base, &twice, LIMITS);
        assert!(!c.passed());
        assert!(
            c.failures()[0].contains("the new report has this label twice"),
            "{:?}",
            c.failures()
        );
    }

    #[test]
    fn thresholds_parse_with_or_without_units() {
        assert_eq!(parse_pp("0.5pp"), Ok(0.5));
        assert_eq!(parse_pp("2"), Ok(2.0));
        assert_eq!(parse_pct("10%"), Ok(10.0));
        assert!(parse_pct("-1%").unwrap_err().contains("\"-1%\""));
        assert!(parse_pp("lots").is_err());
    }
}
