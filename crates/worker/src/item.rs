//! One worker's per-item step: pay the item's controlled cost, then apply it to its partition's
//! state. Shared by the embedded cluster's worker threads and the worker processes; where items
//! come from and where results go are theirs.

use std::time::{Duration, Instant};

use plumbline_core::Message;
use plumbline_measure::Recorder;

use crate::app::{App, Output, PartitionState, StateError};
use crate::work::{Work, WorkTimer};

/// The state and timer of one worker.
#[derive(Debug)]
pub struct ItemWorker {
    /// `None`: stateless balanced tasks, each result is `ok`.
    app: Option<App>,
    partitions: u32,
    delay: Duration,
    timer: WorkTimer,
    state: PartitionState,
    /// What each item's work actually cost.
    pub work: Recorder,
    /// Items that could not be applied (malformed payloads), and the first reason.
    pub rejected: u64,
    pub first_rejection: Option<String>,
}

impl ItemWorker {
    pub fn new(app: Option<App>, partitions: u32, work: Work, delay: Duration) -> Self {
        Self {
            app,
            partitions: partitions.max(1),
            delay,
            timer: WorkTimer::new(work),
            state: PartitionState::default(),
            work: Recorder::new(),
            rejected: 0,
            first_rejection: None,
        }
    }

    /// Takes a partition's state out to move it to its new owner (see [`PartitionState::take`]).
    pub fn take_state(&mut self, partition: u32) -> Vec<u8> {
        self.state.take(partition, self.partitions)
    }

    /// Installs a moved partition's state, `adjust` added to each value (0 but for a planted
    /// fault).
    pub fn install_state(&mut self, state: &[u8], adjust: i64) -> Result<usize, StateError> {
        self.state.install(state, adjust)
    }

    /// Works on one item; `None` if it was rejected (counted, with the first reason kept).
    pub fn handle(&mut self, message: &Message) -> Option<Output> {
        self.handle_while(message, |_| {})
    }

    /// Works on one item, running `meanwhile` (the worker's pending output and bookkeeping,
    /// given the work times so far) once, inside the item's wait where it has one
    /// ([`WorkTimer::run_as_while`]).
    pub fn handle_while(
        &mut self,
        message: &Message,
        meanwhile: impl FnOnce(&Recorder),
    ) -> Option<Output> {
        if self.delay.is_zero() {
            meanwhile(&self.work);
        } else {
            let start = Instant::now();
            let work = &self.work;
            self.timer.run_while(self.delay, || meanwhile(work));
            self.work.record_ns(start.elapsed().as_nanos() as u64);
        }
        let Some(app) = self.app else {
            return Some(Output::Done);
        };
        match app.apply(&mut self.state, message.key % self.partitions, message) {
            Ok(output) => Some(output),
            Err(e) => {
                self.rejected += 1;
                self.first_rejection.get_or_insert_with(|| e.to_string());
                None
            }
        }
    }
}
