//! plumbline-scale: the pure logic of `plumbline capacity`, between the engines that run trials
//! and the report that shows them.
//!
//! [`trend`] fits the lag trend, [`trial`] judges one trial against its SLO, [`search`] finds one
//! worker count's capacity over a trial oracle, and [`demand`] reads the fewest workers for a
//! load off the capacities; [`step`] is the shape of a search ([`TrialSearch`]: next trial,
//! record its verdict). [`autoscale`] is Kubernetes' HPA rule for experiments where workers
//! come and go, and [`change`] their schedule and what each membership change cost. The ideal a search starts from is measure's (`plumbline_measure::ideal`,
//! the one ideal computation). No I/O, clocks or threads: running a trial is the engines' work.

pub mod autoscale;
pub mod change;
pub mod demand;
pub mod search;
mod show;
pub mod step;
pub mod trend;
pub mod trial;

pub use demand::fewest_workers;
pub use search::{
    find_capacity, CapacitySearch, SearchConfig, SearchConfigError, SearchOutcome, Step,
};
pub use step::TrialSearch;
pub use trial::{
    judge, Judged, LagSlope, LagSlopeError, Slo, SloError, TrialFigures, Verdict, Why,
};
