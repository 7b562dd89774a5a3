//! The capacity search for one worker count: the highest open-loop rate that passes its trial.
//!
//! A pure state machine over a trial oracle: [`TrialSearch::next`] says which rate to try,
//! [`TrialSearch::record`] takes the verdict. It tries the start (the ideal estimate), grows
//! ×1.5 while trials pass and shrinks ×0.7 while they fail until a pass and a failure bracket
//! the capacity, then bisects the bracket (geometrically: the resolution is relative) until it
//! is within the resolution. Every state is derived from the trials so far: the bracket is the
//! lowest failing rate and the highest pass below it, so no rate at or above a failure is ever
//! tried again. Running trials, and timing them, is the engines' work.

use serde::{Deserialize, Serialize};

use crate::show::Num;
use crate::step::{self, TrialSearch};
use crate::trial::Verdict;

/// Growth factor while every trial passes.
const GROW: f64 = 1.5;
/// Shrink factor while every trial fails.
const SHRINK: f64 = 0.7;
/// The highest start, floor or lower bound accepted, items/s. With at most [`MAX_TRIALS`]
/// growth steps no rate can overflow (1e12 × 1.5^1000 ≈ 1e188).
pub const MAX_RATE: f64 = 1e12;
/// The most trials one search may be allowed.
pub const MAX_TRIALS: u32 = 1000;
/// Default relative resolution: the search stops when the bracket is within 2 % of its pass.
pub const DEFAULT_RESOLUTION: f64 = 0.02;
/// Default trial budget: a search from 20× off the capacity needs about 16.
pub const DEFAULT_MAX_TRIALS: u32 = 30;
/// Default floor as a fraction of the start: a system 100× below its ideal is reported as
/// failing, not searched further.
pub const DEFAULT_FLOOR_FRACTION: f64 = 0.01;

/// What one search is given.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SearchConfig {
    /// The first rate tried (the ideal estimate), items/s.
    pub start: f64,
    /// Relative resolution: done when (hi − lo) ≤ resolution × lo.
    pub resolution: f64,
    /// The lowest rate worth trying, items/s (> 0).
    pub floor: f64,
    /// A rate known to pass (the previous worker count's capacity): the search starts no lower
    /// and shrinks no lower until this rate itself has failed (then the hint was wrong, and
    /// the search goes on below it).
    pub lower_bound: Option<f64>,
    /// A rate expected to fail (the ideal plus the resolution): once a trial has passed and
    /// none has failed, it is tried before growing ×1.5, so a system that reaches its ideal
    /// is bracketed in two trials instead of six. Tried, never trusted: if it passes, the
    /// search grows on from it.
    #[serde(default)]
    pub ceiling: Option<f64>,
    pub max_trials: u32,
}

impl SearchConfig {
    /// The default search from `start`: 2 % resolution, floor at 1 % of the start, no lower
    /// bound, 30 trials.
    pub fn starting_at(start: f64) -> SearchConfig {
        SearchConfig {
            start,
            resolution: DEFAULT_RESOLUTION,
            floor: start * DEFAULT_FLOOR_FRACTION,
            lower_bound: None,
            ceiling: None,
            max_trials: DEFAULT_MAX_TRIALS,
        }
    }

    fn validate(&self) -> Result<(), SearchConfigError> {
        let rate = |what: &'static str, value: f64| {
            if value.is_finite() && value > 0.0 && value <= MAX_RATE {
                Ok(())
            } else {
                Err(SearchConfigError::Rate { what, value })
            }
        };
        rate("start", self.start)?;
        rate("floor", self.floor)?;
        if let Some(lb) = self.lower_bound {
            rate("lower bound", lb)?;
        }
        if let Some(ceiling) = self.ceiling {
            rate("ceiling", ceiling)?;
        }
        if self.start < self.floor {
            return Err(SearchConfigError::StartBelowFloor {
                start: self.start,
                floor: self.floor,
            });
        }
        if !(self.resolution.is_finite() && self.resolution > 0.0) {
            return Err(SearchConfigError::Resolution(self.resolution));
        }
        if !(1..=MAX_TRIALS).contains(&self.max_trials) {
            return Err(SearchConfigError::MaxTrials(self.max_trials));
        }
        Ok(())
    }
}

/// A search configuration that cannot run, naming the bad figure.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SearchConfigError {
    #[error("capacity search: {what} {value}/s must be a rate above 0 and at most {MAX_RATE}/s")]
    Rate { what: &'static str, value: f64 },
    #[error("capacity search: start {start}/s is below the floor {floor}/s")]
    StartBelowFloor { start: f64, floor: f64 },
    #[error("capacity search: resolution {0} must be a positive fraction (0.02 is 2 %)")]
    Resolution(f64),
    #[error("capacity search: max trials {0} must be between 1 and {MAX_TRIALS}")]
    MaxTrials(u32),
}

/// What to do next: try a rate (items/s), or the outcome.
pub type Step = crate::step::Step<f64, SearchOutcome>;

/// Where a search ended.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SearchOutcome {
    /// The highest rate that passed (below every failure), items/s; `None` if none passed.
    pub capacity: Option<f64>,
    /// `(highest pass or 0, lowest failure)`: the capacity lies in `[lo, hi)`.
    pub bracket: (f64, Option<f64>),
    /// Every trial in the order run.
    pub trials: Vec<(f64, Verdict)>,
    /// The rate at which the sender fell short: the capacity is at least `capacity`, and how
    /// much more is unknown.
    pub sender_bound_at: Option<f64>,
    /// The search stopped before the bracket reached the resolution (out of trials, or
    /// stopped from outside).
    pub exhausted: bool,
    pub why_stopped: String,
}

/// The capacity search state machine; see the module docs.
#[derive(Clone, Debug)]
pub struct CapacitySearch {
    cfg: SearchConfig,
    trials: Vec<(f64, Verdict)>,
}

impl CapacitySearch {
    pub fn new(cfg: SearchConfig) -> Result<CapacitySearch, SearchConfigError> {
        cfg.validate()?;
        Ok(CapacitySearch {
            cfg,
            trials: Vec::new(),
        })
    }

    /// Ends the search from outside (a time budget spent, a worker that died) with the
    /// bracket reached so far; `why` says what stopped it.
    pub fn stop(&self, why: impl Into<String>) -> SearchOutcome {
        self.outcome(None, true, why.into())
    }

    /// The lowest failing rate, and the highest pass below it (passes above a failure are
    /// noise the search does not build on).
    fn bracket(&self) -> (Option<f64>, Option<f64>) {
        let hi = self
            .trials
            .iter()
            .filter(|(_, v)| matches!(v, Verdict::Fail(_)))
            .map(|t| t.0)
            .reduce(f64::min);
        let lo = self
            .trials
            .iter()
            .filter(|(r, v)| *v == Verdict::Pass && hi.is_none_or(|hi| *r < hi))
            .map(|t| t.0)
            .reduce(f64::max);
        (lo, hi)
    }

    /// The rate to try after `hi` failed with nothing passed yet: ×0.7, but not below the
    /// floor, nor below the lower bound while that has not failed. `None` at the floor.
    fn shrink_from(&self, hi: f64) -> Option<f64> {
        let mut rate = (hi * SHRINK).max(self.cfg.floor);
        if let Some(lb) = self.cfg.lower_bound.filter(|&lb| lb < hi) {
            rate = rate.max(lb);
        }
        (rate < hi).then_some(rate)
    }

    fn outcome(&self, sender_bound_at: Option<f64>, exhausted: bool, why: String) -> SearchOutcome {
        let (lo, hi) = self.bracket();
        SearchOutcome {
            capacity: lo,
            bracket: (lo.unwrap_or(0.0), hi),
            trials: self.trials.clone(),
            sender_bound_at,
            exhausted,
            why_stopped: why,
        }
    }
}

impl TrialSearch for CapacitySearch {
    type Point = f64;
    type Outcome = SearchOutcome;

    fn next(&self) -> Step {
        let (lo, hi) = self.bracket();
        if let Some((rate, achieved)) = step::sender_bound(&self.trials) {
            let short = format!(
                "the sender achieved only {}/s of {}/s",
                Num(achieved),
                Num(rate)
            );
            let why = match lo {
                Some(lo) => format!("{short}: the capacity is at least {}/s", Num(lo)),
                None => format!("{short}, before any trial passed"),
            };
            return Step::Done(self.outcome(Some(rate), false, why));
        }
        let try_next = match (lo, hi) {
            (Some(lo), Some(hi)) if hi - lo <= self.cfg.resolution * lo => {
                let why = format!(
                    "bracketed within {}%: {}",
                    Num(self.cfg.resolution * 100.0),
                    describe(Some(lo), Some(hi))
                );
                return Step::Done(self.outcome(None, false, why));
            }
            (Some(lo), Some(hi)) => lo * (hi / lo).sqrt(),
            (Some(lo), None) => match self.cfg.ceiling {
                Some(ceiling) if ceiling > lo => ceiling.min(lo * GROW),
                _ => lo * GROW,
            },
            (None, Some(hi)) => match self.shrink_from(hi) {
                Some(rate) => rate,
                None => {
                    let why = step::failure_at(&self.trials, hi);
                    let why = format!("fails even the lowest rate {}/s{why}", Num(hi));
                    return Step::Done(self.outcome(None, false, why));
                }
            },
            (None, None) => self.cfg.start.max(self.cfg.lower_bound.unwrap_or(0.0)),
        };
        if self.trials.len() >= self.cfg.max_trials as usize {
            let why = format!(
                "ran out of trials ({}): {}",
                self.cfg.max_trials,
                describe(lo, hi)
            );
            return Step::Done(self.outcome(None, true, why));
        }
        Step::Try(try_next)
    }

    fn record(&mut self, rate: f64, verdict: &Verdict) {
        self.trials.push((rate, verdict.clone()));
    }
}

/// The bracket in words: "1000/s passes, 1500/s fails".
fn describe(lo: Option<f64>, hi: Option<f64>) -> String {
    match (lo, hi) {
        (Some(lo), Some(hi)) => format!("{}/s passes, {}/s fails", Num(lo), Num(hi)),
        (Some(lo), None) => format!("{}/s passes, no rate failed yet", Num(lo)),
        (None, Some(hi)) => format!("nothing passed, {}/s fails", Num(hi)),
        (None, None) => "no trial judged".to_owned(),
    }
}

/// Runs a whole search, asking `oracle` for each trial's verdict.
pub fn find_capacity(
    cfg: SearchConfig,
    oracle: impl FnMut(f64) -> Verdict,
) -> Result<SearchOutcome, SearchConfigError> {
    Ok(step::run(CapacitySearch::new(cfg)?, oracle))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trial::tests::lag_failure as fail;
    use proptest::prelude::*;

    /// A system that sustains every rate up to `threshold` and no more.
    fn monotone(threshold: f64) -> impl FnMut(f64) -> Verdict {
        move |rate| {
            if rate <= threshold {
                Verdict::Pass
            } else {
                fail()
            }
        }
    }

    fn rates(outcome: &SearchOutcome) -> Vec<f64> {
        outcome.trials.iter().map(|t| t.0).collect()
    }

    /// No trial at or above a rate that already failed, nor at or below one that passed.
    fn wasted_trial(outcome: &SearchOutcome) -> Option<(f64, f64)> {
        let trials = &outcome.trials;
        trials.iter().enumerate().find_map(|(i, (earlier, v))| {
            trials[i + 1..]
                .iter()
                .find(|(later, _)| match v {
                    Verdict::Pass => later <= earlier,
                    _ => later >= earlier,
                })
                .map(|later| (*earlier, later.0))
        })
    }

    #[test]
    fn an_ideal_start_on_a_system_that_meets_it_grows_once_then_bisects() {
        let outcome = find_capacity(SearchConfig::starting_at(1000.0), monotone(1000.0)).unwrap();
        let c = outcome.capacity.unwrap();
        assert!((1000.0 / 1.02..=1000.0).contains(&c), "capacity {c}");
        assert_eq!(&rates(&outcome)[..2], &[1000.0, 1500.0]);
        let hi = outcome.bracket.1.unwrap();
        assert_eq!(outcome.bracket.0, c);
        assert!(hi > 1000.0 && hi - c <= 0.02 * c);
        assert!(!outcome.exhausted && outcome.sender_bound_at.is_none());
        assert!(
            outcome.why_stopped.contains("bracketed within 2%"),
            "{}",
            outcome.why_stopped
        );
    }

    #[test]
    fn a_start_above_the_capacity_shrinks_until_a_pass() {
        let outcome = find_capacity(SearchConfig::starting_at(1000.0), monotone(400.0)).unwrap();
        for (tried, want) in rates(&outcome).iter().zip([1000.0, 700.0, 490.0, 343.0]) {
            assert!(
                (tried - want).abs() < 1e-9,
                "tried {tried}, expected {want}"
            );
        }
        let c = outcome.capacity.unwrap();
        assert!((400.0 / 1.02..=400.0).contains(&c), "capacity {c}");
    }

    #[test]
    fn a_system_at_its_ideal_is_bracketed_by_the_ceiling_in_two_trials() {
        let cfg = SearchConfig {
            ceiling: Some(1020.0),
            ..SearchConfig::starting_at(1000.0)
        };
        let outcome = find_capacity(cfg.clone(), monotone(1005.0)).unwrap();
        assert_eq!(rates(&outcome), [1000.0, 1020.0]);
        assert_eq!(outcome.capacity, Some(1000.0));
        // A ceiling that passes is grown from, not trusted.
        let outcome = find_capacity(cfg, monotone(1400.0)).unwrap();
        assert_eq!(&rates(&outcome)[..3], &[1000.0, 1020.0, 1530.0]);
    }

    #[test]
    fn shrinking_stops_at_a_lower_bound_known_to_pass() {
        let cfg = SearchConfig {
            lower_bound: Some(900.0),
            ..SearchConfig::starting_at(1000.0)
        };
        let outcome = find_capacity(cfg, monotone(950.0)).unwrap();
        assert_eq!(&rates(&outcome)[..2], &[1000.0, 900.0]);
        let c = outcome.capacity.unwrap();
        assert!((950.0 / 1.02..=950.0).contains(&c), "capacity {c}");
    }

    #[test]
    fn a_lower_bound_above_the_start_is_where_the_search_starts() {
        let cfg = SearchConfig {
            lower_bound: Some(1200.0),
            ..SearchConfig::starting_at(1000.0)
        };
        let outcome = find_capacity(cfg, monotone(2000.0)).unwrap();
        assert_eq!(rates(&outcome)[0], 1200.0);
    }

    #[test]
    fn a_lower_bound_that_fails_after_all_is_searched_below() {
        // More workers made it slower: the previous count's capacity no longer passes.
        let cfg = SearchConfig {
            lower_bound: Some(900.0),
            ..SearchConfig::starting_at(1000.0)
        };
        let outcome = find_capacity(cfg, monotone(300.0)).unwrap();
        assert_eq!(&rates(&outcome)[..3], &[1000.0, 900.0, 630.0]);
        let c = outcome.capacity.unwrap();
        assert!((300.0 / 1.02..=300.0).contains(&c), "capacity {c}");
    }

    #[test]
    fn a_system_that_fails_everything_is_reported_at_the_floor_with_its_figures() {
        let cfg = SearchConfig {
            floor: 50.0,
            ..SearchConfig::starting_at(1000.0)
        };
        let outcome = find_capacity(cfg, |_| fail()).unwrap();
        assert_eq!(outcome.capacity, None);
        assert_eq!(outcome.bracket, (0.0, Some(50.0)));
        assert_eq!(*rates(&outcome).last().unwrap(), 50.0);
        assert!(outcome.trials.len() <= 10, "{:?}", rates(&outcome));
        assert!(!outcome.exhausted);
        assert_eq!(
            outcome.why_stopped,
            "fails even the lowest rate 50/s (lag grows 50/s per s, limit 10/s per s)"
        );
    }

    #[test]
    fn a_sender_that_falls_short_ends_the_search_at_the_highest_pass() {
        let oracle = |rate: f64| {
            if rate > 1200.0 {
                Verdict::SenderBound { achieved: 1200.0 }
            } else {
                Verdict::Pass
            }
        };
        let outcome = find_capacity(SearchConfig::starting_at(1000.0), oracle).unwrap();
        assert_eq!(rates(&outcome), [1000.0, 1500.0]);
        assert_eq!(outcome.capacity, Some(1000.0));
        assert_eq!(outcome.sender_bound_at, Some(1500.0));
        assert_eq!(outcome.bracket, (1000.0, None));
        assert_eq!(
            outcome.why_stopped,
            "the sender achieved only 1200/s of 1500/s: the capacity is at least 1000/s"
        );
    }

    #[test]
    fn a_sender_bound_first_trial_reports_no_capacity() {
        let outcome = find_capacity(SearchConfig::starting_at(1000.0), |_| {
            Verdict::SenderBound { achieved: 10.0 }
        })
        .unwrap();
        assert_eq!(outcome.capacity, None);
        assert_eq!(outcome.trials.len(), 1);
        assert!(outcome.why_stopped.ends_with("before any trial passed"));
    }

    #[test]
    fn running_out_of_trials_reports_the_bracket_reached() {
        let cfg = SearchConfig {
            max_trials: 4,
            ..SearchConfig::starting_at(100.0)
        };
        let outcome = find_capacity(cfg, monotone(1e9)).unwrap();
        assert_eq!(rates(&outcome), [100.0, 150.0, 225.0, 337.5]);
        assert!(outcome.exhausted);
        assert_eq!(outcome.capacity, Some(337.5));
        assert_eq!(outcome.bracket, (337.5, None));
        assert_eq!(
            outcome.why_stopped,
            "ran out of trials (4): 338/s passes, no rate failed yet"
        );
    }

    #[test]
    fn a_search_stopped_from_outside_keeps_its_trials_and_bracket() {
        let mut search = CapacitySearch::new(SearchConfig::starting_at(1000.0)).unwrap();
        search.record(1000.0, &Verdict::Pass);
        search.record(1500.0, &fail());
        let outcome = search.stop("worker 2 exited with status 1");
        assert_eq!(outcome.bracket, (1000.0, Some(1500.0)));
        assert_eq!(outcome.capacity, Some(1000.0));
        assert!(outcome.exhausted);
        assert_eq!(outcome.trials.len(), 2);
        assert_eq!(outcome.why_stopped, "worker 2 exited with status 1");
    }

    #[test]
    fn a_noisy_pass_above_a_failure_is_not_built_on() {
        let mut search = CapacitySearch::new(SearchConfig::starting_at(1000.0)).unwrap();
        search.record(1000.0, &fail());
        search.record(1200.0, &Verdict::Pass);
        let Step::Try(next) = search.next() else {
            panic!("the search should go on");
        };
        assert_eq!(next, 700.0);
    }

    #[test]
    fn configurations_that_cannot_run_are_refused_by_name() {
        let base = SearchConfig::starting_at(1000.0);
        let cases = [
            (
                SearchConfig {
                    start: 0.0,
                    ..base.clone()
                },
                "start 0/s",
            ),
            (
                SearchConfig {
                    floor: f64::NAN,
                    ..base.clone()
                },
                "floor NaN/s",
            ),
            (
                SearchConfig {
                    lower_bound: Some(-1.0),
                    ..base.clone()
                },
                "lower bound -1/s",
            ),
            (
                SearchConfig {
                    floor: 2000.0,
                    ..base.clone()
                },
                "below the floor 2000/s",
            ),
            (
                SearchConfig {
                    resolution: 0.0,
                    ..base.clone()
                },
                "resolution 0",
            ),
            (
                SearchConfig {
                    max_trials: 0,
                    ..base.clone()
                },
                "max trials 0",
            ),
            (
                SearchConfig {
                    start: 1e13,
                    floor: 1.0,
                    ..base
                },
                "at most 1000000000000/s",
            ),
        ];
        for (cfg, named) in cases {
            let err = CapacitySearch::new(cfg).unwrap_err().to_string();
            assert!(err.contains(named), "{err:?} should name {named:?}");
        }
    }

    #[test]
    fn an_outcome_serializes_and_reads_back() {
        let outcome = find_capacity(SearchConfig::starting_at(1000.0), monotone(800.0)).unwrap();
        let json = serde_json::to_string(&outcome).unwrap();
        let back: SearchOutcome = serde_json::from_str(&json).unwrap();
        assert_eq!(back, outcome);
    }

    /// Log-uniform rates from 1/s to 1M/s.
    fn rate() -> impl Strategy<Value = f64> {
        (0f64..6.0).prop_map(|e| 10f64.powf(e))
    }

    /// A factor from 1/20 to 20.
    fn factor() -> impl Strategy<Value = f64> {
        (-1f64..1.0).prop_map(|e| 20f64.powf(e))
    }

    proptest! {
        #[test]
        fn a_monotone_system_is_found_within_the_resolution(
            threshold in rate(),
            start in factor(),
            floor in 0f64..1.0,
            // Up to 3× the threshold: a hint from the previous worker count may be wrong.
            lower_bound in proptest::option::of(0.05f64..3.0),
            // A ceiling hint, right or wrong.
            ceiling in proptest::option::of(1.0f64..1.5),
        ) {
            let start = threshold * start;
            let cfg = SearchConfig {
                floor: start * floor.max(1e-3),
                lower_bound: lower_bound.map(|f| f * threshold),
                ceiling: ceiling.map(|f| f * start),
                ..SearchConfig::starting_at(start)
            };
            let floor = cfg.floor;
            let outcome = find_capacity(cfg, monotone(threshold)).unwrap();
            match outcome.capacity {
                Some(c) => {
                    prop_assert!(c <= threshold, "capacity {c} above {threshold}");
                    prop_assert!(c >= threshold / 1.02, "capacity {c} too far below {threshold}");
                }
                None => prop_assert!(threshold < floor, "none found above the floor {floor}"),
            }
            prop_assert!(!outcome.exhausted);
            prop_assert!(outcome.trials.len() <= 16, "{} trials: {:?}", outcome.trials.len(), rates(&outcome));
            prop_assert_eq!(wasted_trial(&outcome), None);
        }

        #[test]
        fn a_sender_bound_search_never_reports_more_than_the_sender_reached(
            threshold in rate(),
            sender in rate(),
            start in factor(),
        ) {
            let start = threshold * start;
            let oracle = |rate: f64| {
                if rate > sender {
                    Verdict::SenderBound { achieved: sender }
                } else if rate <= threshold {
                    Verdict::Pass
                } else {
                    fail()
                }
            };
            let outcome = find_capacity(SearchConfig::starting_at(start), oracle).unwrap();
            if let Some(c) = outcome.capacity {
                prop_assert!(c <= sender && c <= threshold, "capacity {c}");
            }
            if let Some(at) = outcome.sender_bound_at {
                prop_assert!(at > sender);
                prop_assert_eq!(outcome.trials.last().map(|t| t.0), Some(at));
            }
            prop_assert!(outcome.trials.len() <= 16);
        }
    }
}
