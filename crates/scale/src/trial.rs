//! One capacity trial's verdict: did the system sustain the rate it was offered?
//!
//! Theodolite's test: after a warm-up, the lag (items due minus items done) must not trend
//! upwards faster than a limit; plumbline adds losses, an optional p99 from the intended send
//! time, and a check that the sender really offered the rate, because a trial the sender could
//! not drive says nothing about the system (it is `SenderBound`, never a capacity). Running the
//! trial and taking the figures is the engines' work; this is the judgement on the figures.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::show::{Num, Secs};
use crate::trend;

/// What an engine measured in one trial's measurement window (after its warm-up).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrialFigures {
    /// Target rate, items/s.
    pub rate: f64,
    /// Items/s the source actually emitted in the window.
    pub achieved: f64,
    /// `(t s, due − done)` samples over the window; `done` counts each item once.
    pub lag: Vec<(f64, f64)>,
    /// p99 latency from the intended send time, seconds (`None`: not measured).
    pub p99_s: Option<f64>,
    pub lost: u64,
    /// Counted for the record; a redelivery is not a capacity failure (at-least-once systems
    /// redeliver by design), and `lag` must not count it as done.
    pub duplicated: u64,
    /// The system held the source back (its queues were full, its socket would not take
    /// more): a shortfall in `achieved` is then the system's, judged by the lag, not the
    /// sender's.
    #[serde(default)]
    pub source_held_back: bool,
}

/// How fast the lag may grow before a trial fails.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LagSlope {
    /// A fraction of the trial's rate per second (`"1%"`: at 500/s, 5/s per s).
    Relative(f64),
    /// Items/s per second whatever the rate (`"5/s"`).
    Absolute(f64),
}

impl LagSlope {
    fn value(&self) -> f64 {
        match *self {
            LagSlope::Relative(v) | LagSlope::Absolute(v) => v,
        }
    }

    /// The limit in items/s per second for a trial at `rate`.
    pub fn limit(&self, rate: f64) -> f64 {
        match *self {
            LagSlope::Relative(fraction) => fraction * rate,
            LagSlope::Absolute(per_s) => per_s,
        }
    }
}

impl Default for LagSlope {
    fn default() -> Self {
        LagSlope::Relative(0.01)
    }
}

/// A lag-slope limit that does not parse, naming what was typed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LagSlopeError {
    #[error("lag slope {0:?}: expected a percentage of the rate (\"1%\") or items/s per second (\"5/s\")")]
    Form(String),
    #[error("lag slope {0:?}: the limit must be a positive, finite number")]
    Value(String),
}

impl FromStr for LagSlope {
    type Err = LagSlopeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        let (number, make): (&str, fn(f64) -> LagSlope) = if let Some(n) = t.strip_suffix('%') {
            (n, |pct| LagSlope::Relative(pct / 100.0))
        } else if let Some(n) = t.strip_suffix("/s") {
            (n, LagSlope::Absolute)
        } else {
            return Err(LagSlopeError::Form(s.to_owned()));
        };
        let value: f64 = number
            .trim()
            .parse()
            .map_err(|_| LagSlopeError::Form(s.to_owned()))?;
        if !positive(value) {
            return Err(LagSlopeError::Value(s.to_owned()));
        }
        Ok(make(value))
    }
}

impl fmt::Display for LagSlope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            LagSlope::Relative(fraction) => write!(f, "{}%", fraction * 100.0),
            LagSlope::Absolute(per_s) => write!(f, "{per_s}/s"),
        }
    }
}

/// The service-level objective a trial must meet to pass.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Slo {
    pub max_lag_slope: LagSlope,
    /// p99 latency limit, seconds (`None`: latency is not judged).
    pub p99: Option<f64>,
    /// The fraction of the target rate the sender must achieve for the trial to count.
    pub min_achieved: f64,
}

impl Default for Slo {
    fn default() -> Self {
        Slo {
            max_lag_slope: LagSlope::default(),
            p99: None,
            min_achieved: 0.99,
        }
    }
}

impl Slo {
    /// Checks the figures a user sets: a zero p99 limit would fail every trial, a minimum
    /// share above 1 make every trial sender-bound.
    pub fn validate(&self) -> Result<(), SloError> {
        if !positive(self.max_lag_slope.value()) {
            return Err(SloError::LagSlope(self.max_lag_slope));
        }
        if let Some(p99) = self.p99.filter(|&p| !positive(p)) {
            return Err(SloError::P99(p99));
        }
        if !(positive(self.min_achieved) && self.min_achieved <= 1.0) {
            return Err(SloError::MinAchieved(self.min_achieved));
        }
        Ok(())
    }
}

/// An SLO that cannot judge a trial, naming the figure.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SloError {
    #[error("SLO: the lag-slope limit {0} must be positive and finite")]
    LagSlope(LagSlope),
    #[error("SLO: the p99 limit {0} s must be positive and finite")]
    P99(f64),
    #[error(
        "SLO: the share of the rate the sender must achieve, {0}, must be above 0 and at most 1"
    )]
    MinAchieved(f64),
}

fn positive(x: f64) -> bool {
    x.is_finite() && x > 0.0
}

/// The first condition a trial failed, with its figures.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "why", rename_all = "kebab-case")]
pub enum Why {
    /// Items were lost: no rate is sustained if items go missing.
    Lost { lost: u64 },
    /// The lag samples give no trend (fewer than 2, or all at one time): unjudged is not passed.
    NoLagTrend { samples: usize },
    /// The lag grew faster than the limit (items/s per second).
    LagGrows { slope: f64, limit: f64 },
    /// The SLO has a p99 limit but the trial measured no latency.
    NoP99 { limit: f64 },
    /// p99 latency over the limit, seconds.
    P99 { p99: f64, limit: f64 },
}

impl fmt::Display for Why {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Why::Lost { lost } => write!(f, "{lost} items lost"),
            Why::NoLagTrend { samples } => write!(
                f,
                "too few lag samples for a trend ({samples}; need 2 at different times)"
            ),
            Why::LagGrows { slope, limit } => write!(
                f,
                "lag grows {}/s per s, limit {}/s per s",
                Num(slope),
                Num(limit)
            ),
            Why::NoP99 { limit } => {
                write!(
                    f,
                    "no latency measured to check the p99 limit {}",
                    Secs(limit)
                )
            }
            Why::P99 { p99, limit } => write!(f, "p99 {}, limit {}", Secs(p99), Secs(limit)),
        }
    }
}

/// A trial's outcome.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "verdict", rename_all = "kebab-case")]
pub enum Verdict {
    Pass,
    Fail(Why),
    /// The sender emitted only `achieved` items/s: the trial judged the sender, not the system.
    SenderBound {
        achieved: f64,
    },
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Verdict::Pass => f.write_str("pass"),
            Verdict::Fail(why) => write!(f, "fail: {why}"),
            Verdict::SenderBound { achieved } => write!(
                f,
                "sender-bound: the sender achieved only {}/s",
                Num(*achieved)
            ),
        }
    }
}

/// A verdict with the lag trend it was judged on (for the trial's record).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Judged {
    pub verdict: Verdict,
    /// Items/s per second; `None` when the samples give no trend.
    pub lag_slope: Option<f64>,
}

/// Judges a trial: sender-bound first (whatever else happened, the system was not offered the
/// rate, unless the system itself held the source back), then losses, the lag trend and p99, naming the first condition that failed. The SLO
/// is the caller's to [`Slo::validate`] once, where it is read.
pub fn judge(figures: &TrialFigures, slo: &Slo) -> Judged {
    let lag_slope = trend::slope(&figures.lag);
    let verdict = verdict(figures, slo, lag_slope);
    Judged { verdict, lag_slope }
}

fn verdict(figures: &TrialFigures, slo: &Slo, lag_slope: Option<f64>) -> Verdict {
    // Asked this way round so a NaN figure fails the check rather than passing it.
    let offered = figures.achieved >= slo.min_achieved * figures.rate;
    if !offered && !figures.source_held_back {
        return Verdict::SenderBound {
            achieved: figures.achieved,
        };
    }
    if figures.lost > 0 {
        return Verdict::Fail(Why::Lost { lost: figures.lost });
    }
    let Some(slope) = lag_slope else {
        return Verdict::Fail(Why::NoLagTrend {
            samples: figures.lag.len(),
        });
    };
    let limit = slo.max_lag_slope.limit(figures.rate);
    if slope > limit {
        return Verdict::Fail(Why::LagGrows { slope, limit });
    }
    match (slo.p99, figures.p99_s) {
        (None, _) => Verdict::Pass,
        (Some(limit), None) => Verdict::Fail(Why::NoP99 { limit }),
        (Some(limit), Some(p99)) => {
            let within = p99 <= limit; // a NaN p99 is not
            if within {
                Verdict::Pass
            } else {
                Verdict::Fail(Why::P99 { p99, limit })
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A failed trial, for the searches' tests.
    pub(crate) fn lag_failure() -> Verdict {
        Verdict::Fail(Why::LagGrows {
            slope: 50.0,
            limit: 10.0,
        })
    }

    /// A trial at 1000/s that the system kept up with: the sender achieved the rate, nothing
    /// lost, lag flat at 50 over 10 s, p99 20 ms.
    fn healthy() -> TrialFigures {
        TrialFigures {
            rate: 1000.0,
            achieved: 999.5,
            lag: (0..=10).map(|t| (f64::from(t), 50.0)).collect(),
            p99_s: Some(0.020),
            lost: 0,
            duplicated: 0,
            source_held_back: false,
        }
    }

    fn growing(per_s: f64) -> Vec<(f64, f64)> {
        (0..=10)
            .map(|t| (f64::from(t), per_s * f64::from(t)))
            .collect()
    }

    #[test]
    fn a_trial_that_keeps_up_passes() {
        let judged = judge(&healthy(), &Slo::default());
        assert_eq!(judged.verdict, Verdict::Pass);
        assert_eq!(judged.lag_slope, Some(0.0));
    }

    #[test]
    fn lag_growing_faster_than_one_percent_of_the_rate_fails_with_its_figures() {
        let mut t = healthy();
        t.lag = growing(12.0);
        let judged = judge(&t, &Slo::default());
        let Verdict::Fail(Why::LagGrows { slope, limit }) = judged.verdict else {
            panic!("expected a lag failure, got {:?}", judged.verdict);
        };
        assert!((slope - 12.0).abs() < 1e-9);
        assert_eq!(limit, 10.0);
        // Just under the limit passes.
        t.lag = growing(9.0);
        assert_eq!(judge(&t, &Slo::default()).verdict, Verdict::Pass);
    }

    #[test]
    fn an_absolute_limit_does_not_scale_with_the_rate() {
        let slo = Slo {
            max_lag_slope: LagSlope::Absolute(5.0),
            ..Slo::default()
        };
        let mut t = healthy();
        t.lag = growing(6.0);
        assert!(matches!(
            judge(&t, &slo).verdict,
            Verdict::Fail(Why::LagGrows { limit, .. }) if limit == 5.0
        ));
    }

    #[test]
    fn a_draining_backlog_passes() {
        let mut t = healthy();
        t.lag = growing(-40.0);
        assert_eq!(judge(&t, &Slo::default()).verdict, Verdict::Pass);
    }

    #[test]
    fn a_short_sender_is_sender_bound_whatever_else_failed() {
        let mut t = healthy();
        t.achieved = 980.0;
        t.lost = 7;
        t.lag = growing(500.0);
        t.p99_s = Some(9.0);
        let judged = judge(&t, &Slo::default());
        assert_eq!(judged.verdict, Verdict::SenderBound { achieved: 980.0 });
        // The trend is still recorded.
        assert!((judged.lag_slope.unwrap() - 500.0).abs() < 1e-9);
        t.achieved = f64::NAN;
        assert!(matches!(
            judge(&t, &Slo::default()).verdict,
            Verdict::SenderBound { .. }
        ));
    }

    #[test]
    fn a_source_the_system_held_back_is_the_systems_shortfall_judged_by_the_lag() {
        let mut t = healthy();
        t.achieved = 600.0;
        t.lag = growing(400.0);
        t.source_held_back = true;
        assert!(matches!(
            judge(&t, &Slo::default()).verdict,
            Verdict::Fail(Why::LagGrows { .. })
        ));
    }

    #[test]
    fn a_loss_fails_before_the_lag_and_the_latency_are_looked_at() {
        let mut t = healthy();
        t.lost = 3;
        t.lag = growing(500.0);
        assert_eq!(
            judge(&t, &Slo::default()).verdict,
            Verdict::Fail(Why::Lost { lost: 3 })
        );
    }

    #[test]
    fn duplicates_alone_do_not_fail_a_trial() {
        let mut t = healthy();
        t.duplicated = 12;
        assert_eq!(judge(&t, &Slo::default()).verdict, Verdict::Pass);
    }

    #[test]
    fn too_few_lag_samples_fail_rather_than_pass() {
        for lag in [vec![], vec![(1.0, 0.0)], vec![(2.0, 0.0), (2.0, 1.0)]] {
            let mut t = healthy();
            let samples = lag.len();
            t.lag = lag;
            let judged = judge(&t, &Slo::default());
            assert_eq!(judged.verdict, Verdict::Fail(Why::NoLagTrend { samples }));
            assert_eq!(judged.lag_slope, None);
        }
    }

    #[test]
    fn p99_is_judged_only_when_the_slo_has_a_limit() {
        let strict = Slo {
            p99: Some(0.010),
            ..Slo::default()
        };
        assert_eq!(
            judge(&healthy(), &strict).verdict,
            Verdict::Fail(Why::P99 {
                p99: 0.020,
                limit: 0.010
            })
        );
        let loose = Slo {
            p99: Some(0.050),
            ..Slo::default()
        };
        assert_eq!(judge(&healthy(), &loose).verdict, Verdict::Pass);
        let mut unmeasured = healthy();
        unmeasured.p99_s = None;
        assert_eq!(judge(&unmeasured, &Slo::default()).verdict, Verdict::Pass);
        assert_eq!(
            judge(&unmeasured, &loose).verdict,
            Verdict::Fail(Why::NoP99 { limit: 0.050 })
        );
    }

    #[test]
    fn the_lag_is_judged_before_the_latency() {
        let mut t = healthy();
        t.lag = growing(50.0);
        let strict = Slo {
            p99: Some(0.010),
            ..Slo::default()
        };
        assert!(matches!(
            judge(&t, &strict).verdict,
            Verdict::Fail(Why::LagGrows { .. })
        ));
    }

    #[test]
    fn failures_read_as_sentences_with_their_figures() {
        let lag = Why::LagGrows {
            slope: 312.4,
            limit: 20.0,
        };
        assert_eq!(lag.to_string(), "lag grows 312/s per s, limit 20/s per s");
        let p99 = Why::P99 {
            p99: 0.25,
            limit: 0.1,
        };
        assert_eq!(p99.to_string(), "p99 250 ms, limit 100 ms");
        assert_eq!(Why::Lost { lost: 3 }.to_string(), "3 items lost");
        assert_eq!(
            Verdict::SenderBound { achieved: 950.0 }.to_string(),
            "sender-bound: the sender achieved only 950/s"
        );
        assert_eq!(
            Verdict::Fail(Why::NoLagTrend { samples: 1 }).to_string(),
            "fail: too few lag samples for a trend (1; need 2 at different times)"
        );
    }

    #[test]
    fn lag_slope_limits_parse_from_percent_or_per_second() {
        assert_eq!("1%".parse(), Ok(LagSlope::Relative(0.01)));
        assert_eq!(" 2.5 % ".parse(), Ok(LagSlope::Relative(0.025)));
        assert_eq!("5/s".parse(), Ok(LagSlope::Absolute(5.0)));
        for form in ["", "5", "5/m", "%", "one%", "5 per s"] {
            assert_eq!(
                form.parse::<LagSlope>(),
                Err(LagSlopeError::Form(form.into())),
                "{form:?}"
            );
        }
        for value in ["0%", "-1%", "inf/s", "NaN/s"] {
            assert_eq!(
                value.parse::<LagSlope>(),
                Err(LagSlopeError::Value(value.into())),
                "{value:?}"
            );
        }
        let err = "5".parse::<LagSlope>().unwrap_err().to_string();
        assert!(err.contains("\"5\"") && err.contains("\"1%\""), "{err}");
    }

    #[test]
    fn an_slo_that_cannot_judge_is_refused_by_name() {
        assert_eq!(Slo::default().validate(), Ok(()));
        let cases = [
            (
                Slo {
                    max_lag_slope: LagSlope::Absolute(-1.0),
                    ..Slo::default()
                },
                "lag-slope limit -1/s",
            ),
            (
                Slo {
                    p99: Some(0.0),
                    ..Slo::default()
                },
                "p99 limit 0 s",
            ),
            (
                Slo {
                    min_achieved: 1.5,
                    ..Slo::default()
                },
                "achieve, 1.5,",
            ),
        ];
        for (slo, named) in cases {
            let err = slo.validate().unwrap_err().to_string();
            assert!(err.contains(named), "{err:?} should name {named:?}");
        }
    }

    #[test]
    fn lag_slope_limits_print_as_they_parse() {
        for typed in ["1%", "5/s", "0.5%", "12.5/s"] {
            let parsed: LagSlope = typed.parse().unwrap();
            assert_eq!(parsed.to_string(), typed);
        }
        assert_eq!(LagSlope::default().limit(500.0), 5.0);
    }

    #[test]
    fn verdicts_serialize_as_flat_records_and_read_back() {
        let fail = Verdict::Fail(Why::LagGrows {
            slope: 12.0,
            limit: 10.0,
        });
        let json = serde_json::to_value(&fail).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"verdict": "fail", "why": "lag-grows", "slope": 12.0, "limit": 10.0})
        );
        for v in [
            Verdict::Pass,
            fail,
            Verdict::SenderBound { achieved: 980.0 },
            Verdict::Fail(Why::Lost { lost: 2 }),
        ] {
            let back: Verdict = serde_json::from_str(&serde_json::to_string(&v).unwrap()).unwrap();
            assert_eq!(back, v);
        }
        let slo: Slo =
            serde_json::from_value(serde_json::to_value(Slo::default()).unwrap()).unwrap();
        assert_eq!(slo, Slo::default());
    }
}
