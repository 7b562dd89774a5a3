//! plumbline-scale: the pure logic of `plumbline capacity`, between the engines that run trials
//! and the report that shows them.
//!
//! [`trend`] fits the lag trend, [`trial`] judges one trial against its SLO, [`search`] finds one
//! worker count's capacity over a trial oracle, [`demand`] the fewest workers for a load, and
//! [`ideal`] the capacity a zero-overhead system would reach; [`step`] is the shape both searches
//! share ([`TrialSearch`]: next trial, record its verdict). No I/O, clocks or threads: running
//! a trial is the engines' work.

pub mod demand;
pub mod ideal;
pub mod search;
mod show;
pub mod step;
pub mod trend;
pub mod trial;

pub use demand::{
    fewest_workers, find_demand, DemandError, DemandOutcome, DemandSearch, DemandStep,
};
pub use ideal::{IdealCapacity, IdealError, ItemCost, Limit};
pub use search::{
    find_capacity, CapacitySearch, SearchConfig, SearchConfigError, SearchOutcome, Step,
};
pub use step::TrialSearch;
pub use trial::{
    judge, Judged, LagSlope, LagSlopeError, Slo, SloError, TrialFigures, Verdict, Why,
};
