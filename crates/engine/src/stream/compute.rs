//! The stream engine's compute workers: the one task step every compute worker runs (resolve
//! the data, check its size, sleep the task time), the closed set of ways they run
//! ([`ComputeWorkers`]), and the thread worker. The dispatcher hands a worker one task at a
//! time and reads back a [`Report`]; how a process worker is fed is `process.rs`'s. It does not
//! count, time the run, or acknowledge anything: that is the dispatcher's.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use bytes::Bytes;
use crossbeam_channel::{Receiver, Sender};
use plumbline_core::Shutdown;
use plumbline_transport::broker::Delivery;
use plumbline_transport::store::Store;
use plumbline_worker::work::{Work, WorkTimer};

/// How the compute workers run: psbench's executor, as this host runs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ComputeWorkers {
    /// Threads of this process (psbench's thread pools: `--executor thread`, Parsl's
    /// ThreadPoolExecutor).
    Threads,
    /// One `plumbline stream-compute` child process each, started from `exe` and fed over
    /// its stdin and stdout (psbench's process pools: `--executor process`, Parsl's
    /// HighThroughputExecutor).
    Processes { exe: PathBuf },
}

impl ComputeWorkers {
    /// The executor word the run record and psbench's CSV give: `thread` or `process`.
    pub fn executor(&self) -> &'static str {
        match self {
            Self::Threads => "thread",
            Self::Processes { .. } => "process",
        }
    }

    /// What they are, for labels: `threads` or `processes`.
    pub fn noun(&self) -> &'static str {
        match self {
            Self::Threads => "threads",
            Self::Processes { .. } => "processes",
        }
    }
}

/// A task handed to a compute worker: the delivery (acked when done) and its header.
pub(crate) struct Task {
    pub delivery: Delivery,
    pub seq: u64,
    pub intended_ns: u64,
    pub size: usize,
}

/// What a compute worker says to the dispatcher.
pub(crate) enum Report {
    /// A task ended (with its data wrong, if `error`).
    Done(Done),
    /// The worker is gone mid-run (a compute process died): why, naming it. Its task in
    /// flight, if any, is lost.
    Died(String),
}

/// One finished task.
pub(crate) struct Done {
    pub delivery: Delivery,
    pub seq: u64,
    /// Which compute worker ran it, from 0.
    pub worker: usize,
    /// Task end − intended emission.
    pub latency_ns: u64,
    pub error: Option<String>,
}

/// One task's work on a compute worker: resolve `body` (proxy, with a store: `body` is the
/// key; get the data, then delete it), check it is `size` bytes, sleep `sleep` on `timer`.
/// What was wrong with the data, if anything; the sleep happens either way, as psbench's
/// task would have slept.
pub(crate) fn run_task(
    store: Option<&mut Box<dyn Store>>,
    body: Bytes,
    size: usize,
    timer: &mut WorkTimer,
    sleep: Duration,
) -> Option<String> {
    let resolved: Result<Bytes, String> = match store {
        Some(store) => std::str::from_utf8(&body)
            .map_err(|_| "a proxy key that is not text".to_string())
            .and_then(|key| {
                let data = store.get(key).map_err(|e| e.to_string())?;
                store.delete(key).map_err(|e| e.to_string())?;
                Ok(data)
            }),
        None => Ok(body),
    };
    let error = match resolved {
        Ok(data) if data.len() == size => None,
        Ok(data) => Some(format!("{} bytes where {size} were sent", data.len())),
        Err(e) => Some(e),
    };
    timer.run(sleep);
    error
}

/// A new timer for a compute worker's sleeps.
pub(crate) fn timer() -> WorkTimer {
    WorkTimer::new(Work::Sleep)
}

/// The run's start, on this process's clock and on the host's monotonic clock (the one a
/// compute process's task end is taken on).
pub(crate) struct RunStart {
    pub instant: Instant,
    pub monotonic_ns: u64,
}

impl RunStart {
    pub fn now() -> Self {
        Self {
            instant: Instant::now(),
            monotonic_ns: super::process::monotonic_ns(),
        }
    }
}

/// A started compute worker, ready for tasks (its store open). The contract: `serve` takes
/// tasks from `tasks` one at a time (so at most one is in flight on it) until `tasks` is
/// closed and reports each on `done` as [`Report::Done`], its latency from the task's
/// intended emission to its end (after the sleep) on the run's clock from `start`; a worker
/// that can no longer work reports [`Report::Died`] once, naming itself, and returns; once
/// `abandon` is requested it may return without its task in flight's report. It leaves
/// nothing running when it returns.
pub(crate) trait ComputeWorker: Send {
    /// The process it runs in.
    fn pid(&self) -> u32;
    fn serve(
        self: Box<Self>,
        tasks: Receiver<Task>,
        done: Sender<Report>,
        start: &RunStart,
        abandon: &Shutdown,
    );
}

/// Compute worker `worker` as a thread of this process, with its own store connection.
pub(crate) struct ThreadWorker {
    pub worker: usize,
    pub store: Option<Box<dyn Store>>,
    pub sleep: Duration,
}

impl ComputeWorker for ThreadWorker {
    fn pid(&self) -> u32 {
        std::process::id()
    }

    fn serve(
        mut self: Box<Self>,
        tasks: Receiver<Task>,
        done: Sender<Report>,
        start: &RunStart,
        _abandon: &Shutdown,
    ) {
        let mut timer = timer();
        for task in tasks.iter() {
            let body = task.delivery.payload.slice(super::HEAD..);
            let error = run_task(self.store.as_mut(), body, task.size, &mut timer, self.sleep);
            let end_ns = start.instant.elapsed().as_nanos() as u64;
            let report = Done {
                delivery: task.delivery,
                seq: task.seq,
                worker: self.worker,
                latency_ns: end_ns.saturating_sub(task.intended_ns),
                error,
            };
            if done.send(Report::Done(report)).is_err() {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_task_checks_the_size_of_its_data_by_value() {
        let mut timer = timer();
        let ok = run_task(
            None,
            Bytes::from_static(b"abc"),
            3,
            &mut timer,
            Duration::ZERO,
        );
        assert_eq!(ok, None);
        let short = run_task(
            None,
            Bytes::from_static(b"ab"),
            3,
            &mut timer,
            Duration::ZERO,
        );
        assert_eq!(short.as_deref(), Some("2 bytes where 3 were sent"));
    }

    #[test]
    fn a_proxy_task_takes_its_data_out_of_the_store() {
        let dir = std::env::temp_dir().join(format!("plumbline-compute-{}", std::process::id()));
        let url = format!("file://{}", dir.display());
        let options = plumbline_transport::broker::ClientOptions::default();
        let mut store = plumbline_transport::store::open_store(&url, &options).unwrap();
        store.put("k1", b"data").unwrap();
        let mut timer = timer();
        let body = Bytes::from_static(b"k1");
        assert_eq!(
            run_task(Some(&mut store), body, 4, &mut timer, Duration::ZERO),
            None
        );
        assert_eq!(store.count("k").unwrap(), 0, "resolved data is deleted");
        let again = run_task(
            Some(&mut store),
            Bytes::from_static(b"k1"),
            4,
            &mut timer,
            Duration::ZERO,
        );
        assert!(again.is_some(), "a key resolved twice is missing");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn the_executor_word_says_threads_or_processes() {
        assert_eq!(ComputeWorkers::Threads.executor(), "thread");
        let processes = ComputeWorkers::Processes {
            exe: "plumbline".into(),
        };
        assert_eq!(processes.executor(), "process");
    }
}
