//! The experiment engines: every way plumbline runs N workers, behind one [`Engine`] trait, so
//! a command (bench, capacity) is args → plan → engine → figures, whichever engine it names.
//!
//! An engine takes a [`Load`] (what to send and when: the open-loop schedule every engine's
//! source follows, so latency from the intended send time means the same everywhere), runs it
//! to the end, bumps the run's [`Live`] figures as items go in and results come out (what
//! progress bars, the live page and a capacity trial's lag sampler read), and returns
//! [`RunFigures`]. It does not judge the figures (loss, state, SLOs are the caller's), print,
//! or write reports.
//!
//! Engines: [`threads::Threads`] (the embedded cluster, one process),
//! [`processes::Processes`] (an initializer and joiners as `plumbline worker` processes over
//! loopback TCP) and [`pipeline::Pipeline`] (seed 001's task pipeline: distributor and
//! collector in-process, `plumbline pipeline worker` processes). [`child`] starts and watches
//! such processes.

pub mod child;
pub mod pipeline;
pub mod processes;
pub mod threads;
pub mod trial;

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use plumbline_core::{Message, Shutdown};
use plumbline_load::{Generator, KeyDist, Shape, Workload};
use plumbline_measure::{LatencySummary, Live};

/// One way of running workers. The contract:
/// - `run` sends every message of `load` on its schedule (open loop: a late message is sent
///   late, never skipped) unless `stop` is requested, and returns once every result is in or
///   the engine gave up waiting for the missing ones (they count as lost, never as delivered);
/// - it adds each item taken to `live.items_in` and each result to `live.items_out`, and hands
///   latencies to `live` as it goes;
/// - it starts whatever it needs (threads, processes) and leaves nothing running when it
///   returns, on success or error; an error names the part that failed.
pub trait Engine {
    /// Workers it runs.
    fn workers(&self) -> usize;
    /// What runs, for labels: "4 threads", "2 processes".
    fn describe(&self) -> String;
    fn run(&self, load: &Load, live: &Arc<Live>, stop: &Shutdown) -> anyhow::Result<RunFigures>;
}

/// The closed set of engines a `--cluster` word names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum EngineKind {
    Threads,
    Processes,
    Pipeline,
}

impl FromStr for EngineKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "threads" => Ok(Self::Threads),
            "processes" => Ok(Self::Processes),
            "pipeline" => Ok(Self::Pipeline),
            other => Err(format!(
                "'{other}' is not a cluster: use threads, processes or pipeline"
            )),
        }
    }
}

impl fmt::Display for EngineKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Threads => "threads",
            Self::Processes => "processes",
            Self::Pipeline => "pipeline",
        })
    }
}

/// What a run sends: `items` generated messages at `rate` per second (`None`: a batch, every
/// item due at the start).
#[derive(Clone, Debug)]
pub struct Load {
    pub workload: Workload,
    pub keys: KeyDist,
    pub seed: u64,
    pub items: u64,
    pub rate: Option<f64>,
}

impl Load {
    /// The load's shape, as the open-loop sender takes it.
    pub fn shape(&self) -> Shape {
        self.rate
            .map_or(Shape::Max, |rate| Shape::Constant { rate })
    }

    /// The generated messages, each stamped with its intended send time from the shape's
    /// schedule (the one the network sender paces by), for an in-process source.
    pub fn messages(&self) -> anyhow::Result<impl Iterator<Item = Message> + Send> {
        let mut schedule = self.shape().schedule(0, 1);
        let paced = self.rate.is_some();
        Ok(
            Generator::new(self.workload.clone(), self.keys, self.seed, self.items)?.map(
                move |mut m| {
                    if paced {
                        let due = schedule.offset(m.seq).unwrap_or_default();
                        m.intended_ns = u64::try_from(due.as_nanos()).unwrap_or(u64::MAX);
                    }
                    m
                },
            ),
        )
    }
}

/// One run's measurements, whichever engine ran it.
#[derive(Clone, Debug)]
pub struct RunFigures {
    /// From the run's start to the last result.
    pub wall: Duration,
    /// Messages the source handed to the workers.
    pub sent: u64,
    pub delivered: u64,
    pub lost: u64,
    pub duplicates: u64,
    /// Intended send time → result.
    pub latency: LatencySummary,
    /// What one item's work actually cost (empty where the workers time it themselves).
    pub work: LatencySummary,
    pub per_worker: Vec<u64>,
    /// Latest value per state key (stateful steps).
    pub final_state: Option<BTreeMap<u32, u64>>,
    pub rejected: u64,
    pub first_rejection: Option<String>,
    pub interrupted: bool,
}
