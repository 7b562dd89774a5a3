//! The initializer's view of the cluster, handed to [`Live`]: watchers read it there, through
//! the one Prometheus writer (`--metrics`, served by a [`super::MetricsServer`], and `--ui`
//! show the same exposition).
//!
//! Items in and per partition are counted where they are routed (the initializer sees every
//! item); items out, results, rejections and the step-latency histograms come from each
//! worker's stats (joiners report once a second), labelled by the worker's name. Nothing here
//! serves or formats anything.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use plumbline_measure::{Live, WorkerFigures};

use super::partition_label;
use super::wire::WorkerStats;
use crate::App;

pub(super) struct Metrics {
    app: App,
    /// Items accepted from sources, for the closing account (watchers read `Live`'s).
    pub items_in: AtomicU64,
    partitions: Vec<AtomicU64>,
    workers: Mutex<BTreeMap<String, WorkerStats>>,
    /// The same as watchers see them, each decoded once as it arrives (a step histogram is
    /// serialized in the stats).
    figures: Mutex<BTreeMap<String, WorkerFigures>>,
    /// Worker names in cluster order (joiners of a running cluster at the end), for
    /// per-worker counts in [`Live`].
    order: Mutex<Vec<String>>,
    live: Arc<Live>,
}

impl Metrics {
    pub fn new(app: App, partitions: u32, names: &[String], live: Arc<Live>) -> Self {
        live.counts_sources();
        let metrics = Self {
            app,
            order: Mutex::new(names.to_vec()),
            live,
            items_in: AtomicU64::new(0),
            partitions: (0..partitions).map(|_| AtomicU64::new(0)).collect(),
            figures: Mutex::default(),
            workers: Mutex::default(),
        };
        // Every worker is listed from the start, at zero.
        for name in names {
            metrics.update(WorkerStats {
                name: name.clone(),
                ..WorkerStats::default()
            });
        }
        metrics
    }

    /// Adds one source read's per-partition counts (and zeroes them for the next read).
    pub fn routed(&self, counts: &mut [u64]) {
        let mut total = 0;
        for (shared, count) in self.partitions.iter().zip(counts.iter_mut()) {
            if *count > 0 {
                shared.fetch_add(*count, Ordering::Relaxed);
                total += std::mem::take(count);
            }
        }
        self.items_in.fetch_add(total, Ordering::Relaxed);
        self.live.items_in.fetch_add(total, Ordering::Relaxed);
    }

    /// A source connection was refused over `--max-connections`.
    pub fn source_refused(&self) {
        self.live.source_refused.fetch_add(1, Ordering::Relaxed);
    }

    /// A source connection was closed for bad input (`stalled`: because a frame stalled).
    pub fn source_failed(&self, stalled: bool) {
        self.live.source_errors.fetch_add(1, Ordering::Relaxed);
        if stalled {
            self.live.source_slow.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A worker joined the running cluster: it is counted from now on.
    pub fn add_worker(&self, name: &str) {
        let mut order = self.order.lock().unwrap_or_else(|p| p.into_inner());
        if !order.iter().any(|n| n == name) {
            order.push(name.to_string());
        }
        drop(order);
        self.update(WorkerStats {
            name: name.to_string(),
            ..WorkerStats::default()
        });
    }

    /// A worker's latest stats: watchers see every worker's, by name, in cluster order.
    pub fn update(&self, stats: WorkerStats) {
        let seen = figures(&stats);
        let mut workers = self.workers.lock().unwrap_or_else(|p| p.into_inner());
        workers.insert(stats.name.clone(), stats);
        drop(workers);
        let mut all = self.figures.lock().unwrap_or_else(|p| p.into_inner());
        all.insert(seen.name.clone(), seen);
        let figures: Vec<WorkerFigures> = self
            .order
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter_map(|name| all.get(name).cloned())
            .collect();
        drop(all);
        self.live
            .items_out
            .store(figures.iter().map(|w| w.items).sum(), Ordering::Relaxed);
        self.live.set_workers(figures);
        self.live.set_per_partition(
            self.partitions
                .iter()
                .enumerate()
                .map(|(p, n)| {
                    (
                        partition_label(self.app, p as u32),
                        n.load(Ordering::Relaxed),
                    )
                })
                .collect(),
        );
    }

    /// Every worker's latest stats, in cluster order.
    pub fn workers(&self) -> Vec<WorkerStats> {
        let workers = self.workers.lock().unwrap_or_else(|p| p.into_inner());
        self.order
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter_map(|name| workers.get(name).cloned())
            .collect()
    }

    /// Items every worker reports processed (applied or rejected).
    pub fn items_processed(&self) -> u64 {
        self.workers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .map(|w| w.items)
            .sum()
    }

    /// One line for the log.
    pub fn summary(&self) -> String {
        let workers = self.workers.lock().unwrap_or_else(|p| p.into_inner());
        let per: Vec<String> = workers
            .values()
            .map(|w| format!("{} {} items", w.name, w.items))
            .collect();
        format!(
            "{} items in; {}; {} source errors ({} stalled frames); {} sources refused",
            self.items_in.load(Ordering::Relaxed),
            per.join(", "),
            self.live.source_errors.load(Ordering::Relaxed),
            self.live.source_slow.load(Ordering::Relaxed),
            self.live.source_refused.load(Ordering::Relaxed)
        )
    }
}

/// A worker's stats as watchers see them. A step histogram that does not decode (a joiner of
/// another build) is left out rather than shown as empty.
fn figures(w: &WorkerStats) -> WorkerFigures {
    WorkerFigures {
        name: w.name.clone(),
        items: w.items,
        results: Some(w.results),
        rejected: Some(w.rejected),
        undelivered: Some(w.undelivered),
        step: w.step.as_ref().and_then(|s| s.recorder().ok()),
    }
}
