//! The shape of a search: it names its next trial or its outcome, and takes each trial's
//! verdict; [`run`] drives one over an oracle. Which trial comes next is the search's own
//! logic ([`crate::search`]); running trials is the engines'.

use crate::trial::{Verdict, Why};

/// What to do next.
#[derive(Clone, Debug, PartialEq)]
pub enum Step<P, O> {
    /// Run a trial at this point (a rate, a worker count) and record its verdict.
    Try(P),
    /// The search is over.
    Done(O),
}

/// A search over trials at points `P` ending in an `Outcome`.
pub trait TrialSearch {
    type Point: Copy;
    type Outcome;

    /// The next trial to run, or the outcome once the search is over.
    fn next(&self) -> Step<Self::Point, Self::Outcome>;

    /// Records the verdict of the trial at `at` (the point `next` asked for).
    fn record(&mut self, at: Self::Point, verdict: &Verdict);
}

/// Runs `search` to its end, asking `oracle` for each trial's verdict.
pub fn run<S: TrialSearch>(
    mut search: S,
    mut oracle: impl FnMut(S::Point) -> Verdict,
) -> S::Outcome {
    loop {
        match search.next() {
            Step::Try(at) => {
                let verdict = oracle(at);
                search.record(at, &verdict);
            }
            Step::Done(outcome) => return outcome,
        }
    }
}

/// The first sender-bound trial: where, and what the sender achieved (items/s).
pub(crate) fn sender_bound<P: Copy>(trials: &[(P, Verdict)]) -> Option<(P, f64)> {
    trials.iter().find_map(|t| match t.1 {
        Verdict::SenderBound { achieved } => Some((t.0, achieved)),
        _ => None,
    })
}

/// Why the trial at `at` failed, as " (reason)" for a sentence ("" if it did not).
pub(crate) fn failure_at<P: PartialEq>(trials: &[(P, Verdict)], at: P) -> String {
    let why: Option<&Why> = trials.iter().find_map(|t| match &t.1 {
        Verdict::Fail(why) if t.0 == at => Some(why),
        _ => None,
    });
    why.map_or(String::new(), |why| format!(" ({why})"))
}
