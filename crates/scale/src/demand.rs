//! The demand metric: the fewest workers that sustain a load.
//!
//! Either read off capacities already searched ([`fewest_workers`]), or searched directly for
//! one load with [`DemandSearch`], a pure state machine that bisects an ordered list of worker
//! counts over a trial oracle (monotone in workers: if N pass, more pass too). Running the
//! trials and starting the workers is the engines' work.

use serde::{Deserialize, Serialize};

use crate::show::{Num, Workers};
use crate::step::{self, TrialSearch};
use crate::trial::Verdict;

/// The fewest workers whose capacity is at least `load` (`None` capacities never are).
pub fn fewest_workers(load: f64, capacities: &[(usize, Option<f64>)]) -> Option<usize> {
    capacities
        .iter()
        .filter(|(_, c)| c.is_some_and(|c| c >= load))
        .map(|(workers, _)| *workers)
        .min()
}

/// Worker counts a demand search cannot run over.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DemandError {
    #[error("demand search: the load {0}/s must be a rate above 0")]
    Load(f64),
    #[error("demand search: no worker counts to try")]
    NoCounts,
    #[error("demand search: worker counts must rise strictly from 1 or more, got {0:?}")]
    Order(Vec<usize>),
}

/// What to do next: try a worker count, or the outcome.
pub type DemandStep = crate::step::Step<usize, DemandOutcome>;

/// Where a demand search ended.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DemandOutcome {
    /// The load, items/s.
    pub load: f64,
    /// The fewest workers that passed (`None`: none of the counts did, or the sender could not
    /// offer the load).
    pub workers: Option<usize>,
    /// Every trial in the order run: (workers, verdict).
    pub trials: Vec<(usize, Verdict)>,
    /// The worker count whose trial was sender-bound: the load is beyond the sender, so no
    /// count can be judged at it.
    pub sender_bound_at: Option<usize>,
    /// Stopped from outside before the answer was known.
    pub stopped: bool,
    pub why_stopped: String,
}

/// Bisects worker counts for the fewest that pass one load.
#[derive(Clone, Debug)]
pub struct DemandSearch {
    load: f64,
    counts: Vec<usize>,
    trials: Vec<(usize, Verdict)>,
}

impl DemandSearch {
    /// `counts` rising strictly, e.g. `[1, 2, 4, 8]`.
    pub fn new(load: f64, counts: Vec<usize>) -> Result<DemandSearch, DemandError> {
        if !(load.is_finite() && load > 0.0) {
            return Err(DemandError::Load(load));
        }
        if counts.is_empty() {
            return Err(DemandError::NoCounts);
        }
        if counts[0] == 0 || counts.windows(2).any(|w| w[0] >= w[1]) {
            return Err(DemandError::Order(counts));
        }
        Ok(DemandSearch {
            load,
            counts,
            trials: Vec::new(),
        })
    }

    /// Ends the search from outside with the trials so far; `why` says what stopped it.
    pub fn stop(&self, why: impl Into<String>) -> DemandOutcome {
        self.outcome(None, None, true, why.into())
    }

    /// Indices into `counts`: the most workers that failed, and the fewest that passed above
    /// it (`counts.len()` when none did). Counts not in the list are ignored.
    fn bracket(&self) -> (Option<usize>, usize) {
        let index = |w: usize| self.counts.binary_search(&w).ok();
        let failed = self
            .trials
            .iter()
            .filter(|t| matches!(t.1, Verdict::Fail(_)))
            .filter_map(|t| index(t.0))
            .max();
        let passed = self
            .trials
            .iter()
            .filter(|t| t.1 == Verdict::Pass)
            .filter_map(|t| index(t.0))
            .filter(|&i| failed.map_or(true, |f| i > f))
            .min()
            .unwrap_or(self.counts.len());
        (failed, passed)
    }

    fn outcome(
        &self,
        workers: Option<usize>,
        sender_bound_at: Option<usize>,
        stopped: bool,
        why: String,
    ) -> DemandOutcome {
        DemandOutcome {
            load: self.load,
            workers,
            trials: self.trials.clone(),
            sender_bound_at,
            stopped,
            why_stopped: why,
        }
    }
}

impl TrialSearch for DemandSearch {
    type Point = usize;
    type Outcome = DemandOutcome;

    fn next(&self) -> DemandStep {
        if let Some((workers, achieved)) = step::sender_bound(&self.trials) {
            let why = format!(
                "the sender achieved only {}/s of {}/s (with {})",
                Num(achieved),
                Num(self.load),
                Workers(workers)
            );
            return DemandStep::Done(self.outcome(None, Some(workers), false, why));
        }
        let (failed, passed) = self.bracket();
        let lo = failed.map_or(0, |i| i + 1);
        if lo < passed {
            return DemandStep::Try(self.counts[(lo + passed) / 2]);
        }
        let load = Num(self.load);
        match self.counts.get(passed) {
            Some(&workers) => {
                let why = match failed {
                    Some(f) => format!(
                        "{load}/s needs {} ({} fall short)",
                        Workers(workers),
                        Workers(self.counts[f])
                    ),
                    None => format!("{load}/s needs {}, the fewest tried", Workers(workers)),
                };
                DemandStep::Done(self.outcome(Some(workers), None, false, why))
            }
            None => {
                let most = self.counts[self.counts.len() - 1];
                let why = format!(
                    "{load}/s is beyond even {}{}",
                    Workers(most),
                    step::failure_at(&self.trials, most)
                );
                DemandStep::Done(self.outcome(None, None, false, why))
            }
        }
    }

    fn record(&mut self, workers: usize, verdict: &Verdict) {
        self.trials.push((workers, verdict.clone()));
    }
}

/// Runs a whole demand search, asking `oracle` for the verdict with each worker count.
pub fn find_demand(
    load: f64,
    counts: Vec<usize>,
    oracle: impl FnMut(usize) -> Verdict,
) -> Result<DemandOutcome, DemandError> {
    Ok(step::run(DemandSearch::new(load, counts)?, oracle))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trial::tests::lag_failure as fail;

    /// Each worker sustains 100/s.
    fn hundred_each(load: f64) -> impl FnMut(usize) -> Verdict {
        move |workers| {
            if workers as f64 * 100.0 >= load {
                Verdict::Pass
            } else {
                fail()
            }
        }
    }

    #[test]
    fn the_fewest_workers_are_read_off_the_capacities() {
        let capacities = [
            (1, Some(98.0)),
            (2, Some(196.0)),
            (4, None),
            (8, Some(780.0)),
        ];
        assert_eq!(fewest_workers(50.0, &capacities), Some(1));
        assert_eq!(fewest_workers(196.0, &capacities), Some(2));
        // 4 workers failed every rate: 8 is the answer, not 4.
        assert_eq!(fewest_workers(300.0, &capacities), Some(8));
        assert_eq!(fewest_workers(800.0, &capacities), None);
        assert_eq!(fewest_workers(10.0, &[]), None);
    }

    #[test]
    fn the_search_bisects_the_counts_for_the_fewest_that_pass() {
        let counts = vec![1, 2, 4, 8, 16];
        for (load, want) in [
            (50.0, Some(1)),
            (150.0, Some(2)),
            (300.0, Some(4)),
            (1600.0, Some(16)),
            (2000.0, None),
        ] {
            let outcome = find_demand(load, counts.clone(), hundred_each(load)).unwrap();
            assert_eq!(outcome.workers, want, "load {load}");
            // ⌈log2(6)⌉ = 3 trials at most for five counts.
            assert!(outcome.trials.len() <= 3, "{:?}", outcome.trials);
            assert!(!outcome.stopped && outcome.sender_bound_at.is_none());
        }
    }

    #[test]
    fn the_outcome_says_why_in_a_sentence() {
        let counts = vec![1, 2, 4, 8];
        let outcome = find_demand(300.0, counts.clone(), hundred_each(300.0)).unwrap();
        assert_eq!(
            outcome.why_stopped,
            "300/s needs 4 workers (2 workers fall short)"
        );
        let outcome = find_demand(50.0, counts.clone(), hundred_each(50.0)).unwrap();
        assert_eq!(outcome.why_stopped, "50/s needs 1 worker, the fewest tried");
        let outcome = find_demand(900.0, counts, hundred_each(900.0)).unwrap();
        assert_eq!(
            outcome.why_stopped,
            "900/s is beyond even 8 workers (lag grows 50/s per s, limit 10/s per s)"
        );
    }

    #[test]
    fn a_sender_bound_trial_ends_the_search_without_an_answer() {
        let outcome = find_demand(5000.0, vec![1, 2, 4, 8], |_| Verdict::SenderBound {
            achieved: 3000.0,
        })
        .unwrap();
        assert_eq!(outcome.workers, None);
        // The first trial, at the middle count.
        assert_eq!(outcome.sender_bound_at, Some(4));
        assert_eq!(outcome.trials.len(), 1);
        assert!(
            outcome.why_stopped.contains("3000/s of 5000/s"),
            "{}",
            outcome.why_stopped
        );
    }

    #[test]
    fn a_stopped_search_keeps_its_trials() {
        let mut search = DemandSearch::new(300.0, vec![1, 2, 4]).unwrap();
        search.record(2, &fail());
        let outcome = search.stop("worker 3 died");
        assert!(outcome.stopped);
        assert_eq!((outcome.workers, outcome.trials.len()), (None, 1));
    }

    #[test]
    fn the_load_must_be_a_rate_and_worker_counts_must_rise_strictly() {
        assert_eq!(
            DemandSearch::new(1.0, vec![]).unwrap_err(),
            DemandError::NoCounts
        );
        for load in [0.0, -5.0, f64::INFINITY] {
            assert_eq!(
                DemandSearch::new(load, vec![1]).unwrap_err(),
                DemandError::Load(load)
            );
        }
        for bad in [vec![0, 1], vec![2, 2], vec![4, 2, 8]] {
            assert_eq!(
                DemandSearch::new(1.0, bad.clone()).unwrap_err(),
                DemandError::Order(bad)
            );
        }
    }

    proptest::proptest! {
        #[test]
        fn the_search_finds_the_fewest_that_pass_in_logarithmic_trials(
            counts in proptest::collection::btree_set(1usize..200, 1..40),
            needed in 1usize..220,
        ) {
            let counts: Vec<usize> = counts.into_iter().collect();
            let outcome = find_demand(100.0, counts.clone(), |w| {
                if w >= needed { Verdict::Pass } else { fail() }
            })
            .unwrap();
            proptest::prop_assert_eq!(outcome.workers, counts.iter().copied().find(|&w| w >= needed));
            let bound = (counts.len() + 1).next_power_of_two().trailing_zeros() as usize;
            proptest::prop_assert!(outcome.trials.len() <= bound, "{:?}", outcome.trials);
            let mut tried: Vec<usize> = outcome.trials.iter().map(|t| t.0).collect();
            tried.sort_unstable();
            tried.dedup();
            proptest::prop_assert_eq!(tried.len(), outcome.trials.len(), "a count tried twice");
        }
    }

    #[test]
    fn a_single_count_is_tried_once() {
        let outcome = find_demand(150.0, vec![3], hundred_each(150.0)).unwrap();
        assert_eq!((outcome.workers, outcome.trials.len()), (Some(3), 1));
    }
}
