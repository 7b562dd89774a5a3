//! The embedded cluster as an engine: N worker threads of this process
//! (`plumbline_worker::ClusterConfig`), fed from the load's paced messages in-process.

use std::sync::Arc;

use plumbline_core::Shutdown;
use plumbline_measure::Live;
use plumbline_worker::{ClusterConfig, RunOutcome, Step};

use crate::{Engine, Load, RunFigures};

/// N worker threads, partitioned, balanced or the sequential baseline.
#[derive(Clone, Debug)]
pub struct Threads(pub ClusterConfig);

impl Engine for Threads {
    fn workers(&self) -> usize {
        self.0.workers
    }

    fn describe(&self) -> String {
        match self.0.step {
            Step::Sequential => "a plain loop".into(),
            _ => format!("{} thread(s)", self.0.workers),
        }
    }

    fn run(&self, load: &Load, live: &Arc<Live>, stop: &Shutdown) -> anyhow::Result<RunFigures> {
        Ok(self.0.run(load.messages()?, stop, live)?.into())
    }
}

impl From<RunOutcome> for RunFigures {
    fn from(o: RunOutcome) -> Self {
        Self {
            wall: o.wall,
            sent: o.sent,
            delivered: o.sink.delivered,
            lost: o.sink.lost(o.sent),
            duplicates: o.sink.duplicates(),
            latency: o.sink.latency.summary(),
            work: o.work.summary(),
            per_worker: o.sink.per_worker.clone(),
            final_state: Some(o.sink.final_state.clone()),
            rejected: o.rejected,
            first_rejection: o.first_rejection,
            interrupted: o.interrupted,
            continuity: None,
        }
    }
}
