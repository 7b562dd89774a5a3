//! Thresholds: k6-style absolute limits a run is held to (`--threshold 'p99<20ms'`,
//! `'overhead<1%'`, `'capacity>0.95ideal'`), parsed from the flag's words and checked against
//! the finished run record. A breach is a finding about the system under test, not an error of
//! plumbline's: the command line gives it its own exit code. Nothing here runs or measures;
//! which commands take which metric is [`Threshold::fits`].

use std::fmt;
use std::str::FromStr;

use plumbline_core::duration::parse_duration;

use crate::record::{Command, Record, RunRecord};
use crate::LatencySummary;

/// What a threshold limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Metric {
    /// A latency figure of every run (intended send time → result).
    Latency(Quantile),
    /// Every run's wall time over its ideal, in percent.
    Overhead,
    Lost,
    Duplicates,
    /// Every run's achieved rate, items/s.
    Achieved,
    /// Every run's wall time.
    Wall,
    /// Each worker count's capacity (`capacity` only), items/s.
    Capacity,
}

/// A figure of a latency summary.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Quantile {
    Min,
    P50,
    P90,
    P95,
    P99,
    P999,
    Max,
    Mean,
}

impl Quantile {
    fn of(self, l: &LatencySummary) -> f64 {
        match self {
            Self::Min => l.min,
            Self::P50 => l.p50,
            Self::P90 => l.p90,
            Self::P95 => l.p95,
            Self::P99 => l.p99,
            Self::P999 => l.p999,
            Self::Max => l.max,
            Self::Mean => l.mean,
        }
    }
}

impl FromStr for Metric {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "min" => Self::Latency(Quantile::Min),
            "p50" | "median" => Self::Latency(Quantile::P50),
            "p90" => Self::Latency(Quantile::P90),
            "p95" => Self::Latency(Quantile::P95),
            "p99" => Self::Latency(Quantile::P99),
            "p999" | "p99.9" => Self::Latency(Quantile::P999),
            "max" => Self::Latency(Quantile::Max),
            "mean" | "avg" => Self::Latency(Quantile::Mean),
            "overhead" => Self::Overhead,
            "lost" => Self::Lost,
            "duplicates" => Self::Duplicates,
            "achieved" => Self::Achieved,
            "wall" => Self::Wall,
            "capacity" => Self::Capacity,
            other => {
                return Err(format!(
                    "'{other}' is no metric: use min, p50, p90, p95, p99, p999, max, mean \
                     (latency), overhead, lost, duplicates, achieved, wall or capacity"
                ))
            }
        })
    }
}

/// How a figure is compared with its limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Lt,
    Le,
    Gt,
    Ge,
}

impl Op {
    fn holds(self, value: f64, limit: f64) -> bool {
        match self {
            Self::Lt => value < limit,
            Self::Le => value <= limit,
            Self::Gt => value > limit,
            Self::Ge => value >= limit,
        }
    }

    fn word(self) -> &'static str {
        match self {
            Self::Lt => "<",
            Self::Le => "<=",
            Self::Gt => ">",
            Self::Ge => ">=",
        }
    }
}

/// The limit: a figure in the metric's unit (seconds, percent, items, items/s), or a share of
/// the run's own reference (`0.95ideal`: of the ideal capacity; `0.99target`: of the rate
/// asked for).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Limit {
    Absolute(f64),
    OfIdeal(f64),
    OfTarget(f64),
}

/// One `--threshold`.
#[derive(Clone, Debug, PartialEq)]
pub struct Threshold {
    pub metric: Metric,
    pub op: Op,
    pub limit: Limit,
    /// As given, for messages.
    text: String,
}

impl fmt::Display for Threshold {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl FromStr for Threshold {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let text: String = s.split_whitespace().collect();
        let at = text
            .find(['<', '>'])
            .ok_or_else(|| format!("'{s}': a threshold is METRIC<LIMIT or METRIC>LIMIT"))?;
        let (name, rest) = text.split_at(at);
        let (op, value) = match rest.split_at(1) {
            ("<", v) => v.strip_prefix('=').map_or((Op::Lt, v), |v| (Op::Le, v)),
            (_, v) => v.strip_prefix('=').map_or((Op::Gt, v), |v| (Op::Ge, v)),
        };
        let metric: Metric = name.parse().map_err(|e| format!("'{s}': {e}"))?;
        let limit = limit(metric, value).map_err(|e| format!("'{s}': {e}"))?;
        Ok(Self {
            metric,
            op,
            limit,
            text,
        })
    }
}

/// The limit of `metric` written `value`.
fn limit(metric: Metric, value: &str) -> Result<Limit, String> {
    let number = |v: &str| {
        v.parse::<f64>()
            .ok()
            .filter(|n| n.is_finite() && *n >= 0.0)
            .ok_or_else(|| format!("'{v}' is not a number at least 0"))
    };
    let share = |v: &str, of: &str| v.strip_suffix(of).map(number).transpose();
    match metric {
        Metric::Latency(_) | Metric::Wall => parse_duration(value)
            .map(|d| Limit::Absolute(d.as_secs_f64()))
            .map_err(|e| format!("'{value}': a time with its unit (20ms, 1.5s): {e}")),
        Metric::Overhead => match value.strip_suffix('%') {
            Some(pct) => number(pct).map(Limit::Absolute),
            None => Err(format!("'{value}': overhead is a percentage (1%)")),
        },
        Metric::Lost | Metric::Duplicates => number(value).map(Limit::Absolute),
        Metric::Achieved => match share(value, "target")? {
            Some(f) => Ok(Limit::OfTarget(f)),
            None => number(value.strip_suffix("/s").unwrap_or(value)).map(Limit::Absolute),
        },
        Metric::Capacity => match share(value, "ideal")? {
            Some(f) => Ok(Limit::OfIdeal(f)),
            None => number(value.strip_suffix("/s").unwrap_or(value)).map(Limit::Absolute),
        },
    }
}

impl Threshold {
    /// Whether `command`'s record has this metric: `capacity` alone has capacities, and its
    /// runs are search trials (meant to fail at the top), so it takes no per-run limit.
    pub fn fits(&self, command: Command) -> Result<(), String> {
        match (self.metric, command) {
            (Metric::Capacity, Command::Capacity) => Ok(()),
            (Metric::Capacity, _) => Err(format!(
                "--threshold {self}: only `capacity` measures a capacity"
            )),
            (_, Command::Capacity) => Err(format!(
                "--threshold {self}: capacity's runs are its search's trials; limit the \
                 capacity (capacity>0.9ideal), or set the trials' SLO (--slo-p99)"
            )),
            _ => Ok(()),
        }
    }

    /// Every breach of this threshold in `record`, each naming the run or worker count and
    /// the figure.
    pub fn breaches(&self, record: &Record) -> Vec<String> {
        if self.metric == Metric::Capacity {
            let curves = record.capacity.iter().flat_map(|c| &c.curves);
            return curves
                .flat_map(|curve| curve.points.iter().map(move |p| (curve, p)))
                .filter_map(|(curve, point)| {
                    let at = format!("{} at {} workers", curve.label, point.workers);
                    let value = point.capacity.unwrap_or(0.0);
                    let limit = match self.limit {
                        Limit::OfIdeal(f) => f * point.ideal_rate?,
                        Limit::Absolute(v) => v,
                        Limit::OfTarget(_) => return None,
                    };
                    self.judge(value, limit, &at, |v| format!("{v:.1}/s"))
                })
                .collect();
        }
        let several = record.runs.len() > 1;
        record
            .runs
            .iter()
            .enumerate()
            .filter_map(|(i, run)| {
                let at = match several {
                    true => format!("run {} ({} workers)", i + 1, run.workers),
                    false => format!("{} workers", run.workers),
                };
                self.check_run(run, &at)
            })
            .collect()
    }

    fn check_run(&self, run: &RunRecord, at: &str) -> Option<String> {
        let absolute = match self.limit {
            Limit::Absolute(v) => v,
            Limit::OfTarget(f) => match run.target_per_s {
                Some(target) => f * target,
                None => return Some(format!("{self} ({at}): the run had no target rate")),
            },
            Limit::OfIdeal(_) => return None,
        };
        match self.metric {
            Metric::Latency(_) if run.latency_s.count == 0 => {
                Some(format!("{self} ({at}): no latency was measured"))
            }
            Metric::Latency(q) => self.judge(q.of(&run.latency_s), absolute, at, seconds),
            Metric::Wall => self.judge(run.wall_s, absolute, at, seconds),
            Metric::Overhead => match run.overhead_pct {
                Some(pct) => self.judge(pct, absolute, at, |v| format!("{v:.2}%")),
                None => Some(format!(
                    "{self} ({at}): the run has no ideal to compare with"
                )),
            },
            Metric::Lost => self.judge(run.lost as f64, absolute, at, |v| format!("{v}")),
            Metric::Duplicates => {
                self.judge(run.duplicates as f64, absolute, at, |v| format!("{v}"))
            }
            Metric::Achieved => {
                self.judge(run.achieved_per_s, absolute, at, |v| format!("{v:.1}/s"))
            }
            Metric::Capacity => None,
        }
    }

    /// `None` when `value` keeps the limit; else the breach in words.
    fn judge(
        &self,
        value: f64,
        limit: f64,
        at: &str,
        show: impl Fn(f64) -> String,
    ) -> Option<String> {
        (!self.op.holds(value, limit)).then(|| {
            format!(
                "threshold {self} breached ({at}): {} is not {} {}",
                show(value),
                self.op.word(),
                show(limit)
            )
        })
    }
}

/// A time in seconds the way a limit is written: `1.250s`, `20.31ms`, `850.0µs`.
fn seconds(v: f64) -> String {
    match v {
        v if v >= 1.0 => format!("{v:.3}s"),
        v if v >= 1e-3 => format!("{:.2}ms", v * 1e3),
        v => format!("{:.1}µs", v * 1e6),
    }
}

/// Every breach of `thresholds` in `record`, in the order the thresholds were given.
pub fn breaches(thresholds: &[Threshold], record: &Record) -> Vec<String> {
    thresholds.iter().flat_map(|t| t.breaches(record)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{CapacityCurve, CapacityPoint, CapacitySection};
    use crate::report::Host;
    use crate::Recorder;

    fn run(workers: usize, latencies_ms: &[u64]) -> RunRecord {
        let mut recorder = Recorder::new();
        for &ms in latencies_ms {
            recorder.record_ns(ms * 1_000_000);
        }
        let mut run = RunRecord::new(workers, 2.0).with_ideal(Some(1.98));
        run.latency_s = recorder.summary();
        run.target_per_s = Some(100.0);
        run.achieved_per_s = 98.0;
        run
    }

    fn record(command: Command, runs: Vec<RunRecord>) -> Record {
        Record {
            runs,
            ..Record::new(command, Vec::new(), Host::current())
        }
    }

    fn t(s: &str) -> Threshold {
        s.parse().unwrap()
    }

    #[test]
    fn a_threshold_reads_metric_operator_and_a_limit_in_the_metrics_unit() {
        assert_eq!(t("p99<20ms").limit, Limit::Absolute(0.02));
        assert_eq!(t(" p95 <= 1.5s ").op, Op::Le);
        assert_eq!(t("overhead<1%").limit, Limit::Absolute(1.0));
        assert_eq!(t("lost==0".replace("==", "<=").as_str()).op, Op::Le);
        assert_eq!(t("achieved>=0.99target").limit, Limit::OfTarget(0.99));
        assert_eq!(t("achieved>950/s").limit, Limit::Absolute(950.0));
        assert_eq!(t("capacity>0.95ideal").limit, Limit::OfIdeal(0.95));
        assert_eq!(t("p99<20ms").to_string(), "p99<20ms");
    }

    #[test]
    fn a_threshold_that_cannot_be_read_says_what_is_wrong() {
        for (bad, says) in [
            ("p99", "METRIC<LIMIT"),
            ("p98<20ms", "no metric"),
            ("p99<20", "unit"),
            ("overhead<1", "percentage"),
            ("lost<-1", "at least 0"),
            ("capacity>0.9ideals", "not a number"),
        ] {
            let error = bad.parse::<Threshold>().unwrap_err();
            assert!(error.contains(says), "{bad}: {error}");
        }
    }

    #[test]
    fn every_run_is_held_to_the_limit_and_a_breach_names_the_run_and_the_figure() {
        let doc = record(
            Command::Bench,
            vec![run(1, &[5, 6, 7]), run(4, &[5, 40, 41])],
        );
        assert!(t("p99<50ms").breaches(&doc).is_empty());
        let breached = t("p99<20ms").breaches(&doc);
        assert_eq!(breached.len(), 1, "{breached:?}");
        assert!(
            breached[0].contains("run 2 (4 workers)")
                && breached[0].contains("ms is not < 20.00ms"),
            "{}",
            breached[0]
        );
        // Overhead 2 ÷ 1.98: 1.01 %.
        assert!(t("overhead<2%").breaches(&doc).is_empty());
        assert_eq!(t("overhead<1%").breaches(&doc).len(), 2);
        assert!(t("achieved>=0.98target").breaches(&doc).is_empty());
        assert_eq!(t("achieved>=0.99target").breaches(&doc).len(), 2);
        assert!(t("lost<=0").breaches(&doc).is_empty());
        // HDR keeps 3 significant digits: 5 ms reads back within 0.1 %.
        assert!(t("min>=4.99ms").breaches(&doc).is_empty());
        assert_eq!(t("min>5.01ms").breaches(&doc).len(), 2);
    }

    #[test]
    fn a_run_without_the_figure_breaches_rather_than_passes() {
        let doc = record(Command::Receive, vec![run(1, &[])]);
        assert!(t("p99<1s").breaches(&doc)[0].contains("no latency was measured"));
        let mut no_ideal = run(1, &[1]);
        no_ideal.overhead_pct = None;
        let doc = record(Command::Send, vec![no_ideal]);
        assert!(t("overhead<5%").breaches(&doc)[0].contains("no ideal"));
    }

    #[test]
    fn capacity_is_judged_per_worker_count_against_its_ideal_and_fits_only_capacity() {
        let point = |workers, capacity, ideal| CapacityPoint {
            workers,
            engine: "threads".into(),
            ideal_rate: Some(ideal),
            ideal_limit: crate::Limit::Workers,
            capacity: Some(capacity),
            capacity_vs_ideal: Some(capacity / ideal),
            efficiency: None,
            limited_by: "workers".into(),
            search: serde_json::Value::Null,
            trials: Vec::new(),
        };
        let mut doc = record(Command::Capacity, Vec::new());
        doc.capacity = Some(CapacitySection {
            slo: serde_json::Value::Null,
            resolution: 0.05,
            warmup_s: 1.0,
            window_s: 2.0,
            curves: vec![CapacityCurve {
                label: "10 ms".into(),
                points: vec![point(1, 98.0, 100.0), point(2, 180.0, 200.0)],
            }],
            demand: Vec::new(),
            error: None,
        });
        let breached = t("capacity>0.95ideal").breaches(&doc);
        assert_eq!(breached.len(), 1);
        assert!(
            breached[0].contains("10 ms at 2 workers"),
            "{}",
            breached[0]
        );
        assert!(t("capacity>=90/s").breaches(&doc).is_empty());
        assert!(t("capacity>0.9ideal").fits(Command::Capacity).is_ok());
        assert!(t("capacity>0.9ideal").fits(Command::Bench).is_err());
        assert!(t("p99<1s")
            .fits(Command::Capacity)
            .unwrap_err()
            .contains("--slo-p99"));
    }
}
