//! Live figures of a running command, for whoever watches it while it runs: the progress line,
//! the `--ui` page and `/metrics`, and the per-second timeline a report plots.
//!
//! Writers on the hot path only bump atomics; latencies and per-worker counts arrive in batches
//! ([`Live::add_latencies`], [`Live::set_per_worker`]) a few times a second, so watching costs the
//! run nothing measurable. [`Live::tick`] (once a second, from one [`Ticker`] thread) turns the
//! counters into a [`Tick`]: rates over the last second and that second's latency percentiles,
//! and closes the run's latency interval ([`LatencyInterval`], the report's `.hlog`).
//! This module does not serve or draw anything.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::hlog::LatencyInterval;
use crate::Recorder;

/// The shortest last tick worth a rate.
pub const MIN_PARTIAL: Duration = Duration::from_millis(250);

/// Ticks kept for the report's timeline: a day at one a second. Older ticks are dropped, and
/// the count of dropped ticks is kept so the timeline says where it starts.
const MAX_TICKS: usize = 86_400;

/// Notes kept for watchers (the latest ones): a page lists them, it does not archive them.
pub const MAX_NOTES: usize = 50;

/// Something that happened to the run, as watchers see it as it happens: a membership change
/// ("4 → 3 members (graceful)"), say.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Note {
    /// Seconds since the command started (the timeline's clock).
    pub t_s: f64,
    pub text: String,
}

/// What the current run is, as watchers should label it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RunInfo {
    /// e.g. "run 3/12: 1000 x 10ms sleep count on 2 thread(s)".
    pub label: String,
    pub workers: usize,
    /// Items the run will take, when it is finite.
    pub total: Option<u64>,
    /// Items per second the load is paced at; `None` when unpaced (a batch).
    pub target_per_s: Option<f64>,
}

/// One second of a run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Tick {
    /// Seconds since the command started.
    pub t_s: f64,
    pub target_per_s: Option<f64>,
    /// Items put in (sent, generated, routed) per second over this tick.
    pub in_per_s: f64,
    /// Items completed (delivered, received, acknowledged) per second over this tick.
    pub out_per_s: f64,
    /// Sends that started later than the late threshold, during this tick.
    pub late: u64,
    /// Items in but not yet out at the end of the tick (lag).
    pub in_flight: u64,
    /// This tick's latency percentiles, seconds; `None` when no latency arrived.
    pub p50_s: Option<f64>,
    pub p99_s: Option<f64>,
}

/// Everything a watcher shows, taken at one instant.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LiveSnapshot {
    pub run: RunInfo,
    pub elapsed_s: f64,
    pub items_in: u64,
    pub items_out: u64,
    pub in_flight: u64,
    pub late: u64,
    /// Latency since the run began, seconds (zeros before any arrived).
    pub p50_s: f64,
    pub p99_s: f64,
    pub latency_count: u64,
    pub per_worker: Vec<u64>,
    /// Each worker's name, in the order of `per_worker` (its index where it has no name).
    #[serde(default)]
    pub worker_names: Vec<String>,
    /// `(partition label, items)`.
    pub per_partition: Vec<(String, u64)>,
    /// The latest ticks, oldest first (at most `recent` of them, as asked).
    pub recent: Vec<Tick>,
    /// The latest notes, oldest first (at most [`MAX_NOTES`]).
    #[serde(default)]
    pub notes: Vec<Note>,
}

/// One worker as watchers see it: its name (the `worker` label of every per-worker series) and
/// what it reported; a figure the worker does not report is `None` and left out.
#[derive(Clone, Debug, Default)]
pub struct WorkerFigures {
    pub name: String,
    pub items: u64,
    /// Results delivered to the sink, items it could not apply, results it could not deliver
    /// (a cluster's workers report them).
    pub results: Option<u64>,
    pub rejected: Option<u64>,
    pub undelivered: Option<u64>,
    /// What its items' work cost (a cluster's workers report it).
    pub step: Option<Recorder>,
}

impl WorkerFigures {
    /// A worker known by its place only: its index is its name.
    fn numbered(index: usize, items: u64) -> Self {
        Self {
            name: index.to_string(),
            items,
            ..Self::default()
        }
    }
}

#[derive(Default)]
pub(crate) struct Window {
    /// Latencies of earlier runs since the last tick (the tick's percentiles count them too).
    tick_before: Recorder,
    /// The run's latencies since the last tick or the run's start: its open interval.
    interval: Recorder,
    /// When the open interval began, seconds since the command started.
    interval_start_s: f64,
    /// When the command started on the wall clock, seconds since the UNIX epoch (the
    /// intervals' timestamps).
    start_unix_s: f64,
    /// The run's closed intervals, oldest first (at most [`MAX_TICKS`]).
    intervals: VecDeque<LatencyInterval>,
    /// Latencies since the run began.
    pub(crate) run: Recorder,
}

impl Window {
    /// A new run's latency starts at `now_s`; what came before stays for the tick.
    fn start_run(&mut self, now_s: f64) {
        self.tick_before.merge(&self.interval);
        self.interval.clear();
        self.interval_start_s = now_s;
        self.intervals.clear();
        self.run.clear();
    }

    /// Closes the tick and the open interval at `now_s`; returns the tick's p50 and p99.
    fn close_tick(&mut self, now_s: f64) -> (Option<f64>, Option<f64>) {
        self.tick_before.merge(&self.interval);
        let s = (self.tick_before.count() > 0).then(|| self.tick_before.summary());
        self.tick_before.clear();
        self.close_interval(now_s);
        (s.as_ref().map(|s| s.p50), s.as_ref().map(|s| s.p99))
    }

    /// Closes the open interval at `now_s`; an interval without latencies is left out.
    fn close_interval(&mut self, now_s: f64) {
        if self.interval.count() > 0 {
            if self.intervals.len() == MAX_TICKS {
                self.intervals.pop_front();
            }
            self.intervals.push_back(self.open_interval(now_s));
        }
        self.interval.clear();
        self.interval_start_s = now_s;
    }

    /// The open interval as it stands at `now_s`.
    fn open_interval(&self, now_s: f64) -> LatencyInterval {
        LatencyInterval::new(
            self.start_unix_s + self.interval_start_s,
            now_s - self.interval_start_s,
            &self.interval,
        )
    }
}

/// The counters as the last tick saw them. Signed: `begin_run` zeroes the counters and moves
/// these below zero by what was counted since the tick, so the next tick still counts it.
struct Last {
    at: Instant,
    items_in: i64,
    items_out: i64,
    late: i64,
}

/// The shared live state of one command. Create one, hand `&Live` to the parts that run, and
/// read it from watchers.
pub struct Live {
    start: Instant,
    /// Items put in: sent by a sender, generated by a bench, routed by an initializer.
    pub items_in: AtomicU64,
    /// Items out: delivered to a sink, received, acknowledged.
    pub items_out: AtomicU64,
    /// Sends that started later than their deadline allowed.
    pub late: AtomicU64,
    /// Set when `items_in` or `items_out` is not counted by anyone, so in-flight is unknown.
    in_flight_unknown: AtomicBool,
    /// Source connections closed for bad input, closed for a stalled frame, refused over the
    /// cap: counted by a cluster initializer, which says so with [`Live::counts_sources`].
    pub source_errors: AtomicU64,
    pub source_slow: AtomicU64,
    pub source_refused: AtomicU64,
    pub(crate) counts_sources: AtomicBool,
    run: Mutex<RunInfo>,
    pub(crate) latency: Mutex<Window>,
    pub(crate) workers: Mutex<Vec<WorkerFigures>>,
    per_partition: Mutex<Vec<(String, u64)>>,
    ticks: Mutex<(VecDeque<Tick>, u64)>,
    notes: Mutex<VecDeque<Note>>,
    last: Mutex<Last>,
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl std::fmt::Debug for Live {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Live")
            .field("items_in", &self.items_in)
            .field("items_out", &self.items_out)
            .field("late", &self.late)
            .finish_non_exhaustive()
    }
}

impl Default for Live {
    fn default() -> Self {
        Self::new()
    }
}

impl Live {
    pub fn new() -> Self {
        let now = Instant::now();
        let start_unix_s = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        Self {
            start: now,
            items_in: AtomicU64::new(0),
            items_out: AtomicU64::new(0),
            late: AtomicU64::new(0),
            in_flight_unknown: AtomicBool::new(false),
            source_errors: AtomicU64::new(0),
            source_slow: AtomicU64::new(0),
            source_refused: AtomicU64::new(0),
            counts_sources: AtomicBool::new(false),
            run: Mutex::default(),
            latency: Mutex::new(Window {
                start_unix_s,
                ..Window::default()
            }),
            workers: Mutex::default(),
            per_partition: Mutex::default(),
            ticks: Mutex::default(),
            notes: Mutex::default(),
            last: Mutex::new(Last {
                at: now,
                items_in: 0,
                items_out: 0,
                late: 0,
            }),
        }
    }

    /// Starts a new run: relabels (a URL's password in the label shows as `***` to every
    /// watcher), zeroes the counters and the run's latency. The timeline keeps going (a
    /// bench's runs follow each other on it).
    pub fn begin_run(&self, info: RunInfo) {
        *lock(&self.workers) = (0..info.workers)
            .map(|i| WorkerFigures::numbered(i, 0))
            .collect();
        *lock(&self.run) = RunInfo {
            label: plumbline_core::secret::redact_url(&info.label),
            ..info
        };
        lock(&self.per_partition).clear();
        // The run's latency starts over; the current second's values stay for its tick.
        lock(&self.latency).start_run(self.start.elapsed().as_secs_f64());
        let mut last = lock(&self.last);
        last.items_in -= self.items_in.swap(0, Ordering::Relaxed) as i64;
        last.items_out -= self.items_out.swap(0, Ordering::Relaxed) as i64;
        last.late -= self.late.swap(0, Ordering::Relaxed) as i64;
    }

    /// Declares that one side is not counted here (a receiver sees only what comes out, a
    /// plain TCP sender only what goes in), so in-flight is reported as 0, not made up.
    pub fn in_flight_unknown(&self) {
        self.in_flight_unknown.store(true, Ordering::Relaxed);
    }

    /// Moves a batch of latencies in and clears `batch` for reuse.
    pub fn add_latencies(&self, batch: &mut Recorder) {
        if batch.count() == 0 {
            return;
        }
        let mut window = lock(&self.latency);
        window.interval.merge(batch);
        window.run.merge(batch);
        batch.clear();
    }

    /// A copy of the run's latencies so far (since [`Live::begin_run`]): a caller keeps it to
    /// tell later values from these ([`Recorder::since`]), as a capacity trial leaves its
    /// warm-up out. Writers hand latencies over every [`FEED_EVERY`], so a copy lags by that.
    pub fn run_latency(&self) -> Recorder {
        lock(&self.latency).run.clone()
    }

    /// The run's latency so far as intervals: one per tick (the last one open, up to now), each
    /// holding the values handed over in it (writers hand them over every [`FEED_EVERY`], so a
    /// value may fall in the interval after the one it was measured in). Seconds without
    /// latencies have none; a run longer than a day keeps its last day.
    pub fn run_intervals(&self) -> Vec<LatencyInterval> {
        let window = lock(&self.latency);
        let mut intervals: Vec<_> = window.intervals.iter().cloned().collect();
        if window.interval.count() > 0 {
            intervals.push(window.open_interval(self.start.elapsed().as_secs_f64()));
        }
        intervals
    }

    /// Declares that sources are counted here (`source_errors`, …), so watchers show them.
    pub fn counts_sources(&self) {
        self.counts_sources.store(true, Ordering::Relaxed);
    }

    /// Items per worker, for workers known by their place (a worker keeps the name it has).
    pub fn set_per_worker(&self, counts: &[u64]) {
        let mut workers = lock(&self.workers);
        workers.truncate(counts.len());
        for (i, &items) in counts.iter().enumerate() {
            match workers.get_mut(i) {
                Some(w) => w.items = items,
                None => workers.push(WorkerFigures::numbered(i, items)),
            }
        }
    }

    /// Every worker's figures, in the order watchers list them.
    pub fn set_workers(&self, workers: Vec<WorkerFigures>) {
        *lock(&self.workers) = workers;
    }

    pub fn set_per_partition(&self, counts: Vec<(String, u64)>) {
        *lock(&self.per_partition) = counts;
    }

    fn in_flight(&self, items_in: u64, items_out: u64) -> u64 {
        if self.in_flight_unknown.load(Ordering::Relaxed) {
            0
        } else {
            items_in.saturating_sub(items_out)
        }
    }

    /// Closes the current second: appends a [`Tick`] to the timeline and returns it.
    pub fn tick(&self) -> Tick {
        // Held while the counters are read, so a `begin_run` cannot fall between the two.
        let mut last = lock(&self.last);
        let now = Instant::now();
        let items_in = self.items_in.load(Ordering::Relaxed);
        let items_out = self.items_out.load(Ordering::Relaxed);
        let late = self.late.load(Ordering::Relaxed);
        let t_s = now.duration_since(self.start).as_secs_f64();
        let (p50_s, p99_s) = lock(&self.latency).close_tick(t_s);
        let dt = now.duration_since(last.at).as_secs_f64().max(1e-9);
        let since = |now: u64, then: i64| (now as i64 - then).max(0) as u64;
        let tick = Tick {
            t_s,
            target_per_s: lock(&self.run).target_per_s,
            in_per_s: since(items_in, last.items_in) as f64 / dt,
            out_per_s: since(items_out, last.items_out) as f64 / dt,
            late: since(late, last.late),
            in_flight: self.in_flight(items_in, items_out),
            p50_s,
            p99_s,
        };
        *last = Last {
            at: now,
            items_in: items_in as i64,
            items_out: items_out as i64,
            late: late as i64,
        };
        drop(last);
        let mut ticks = lock(&self.ticks);
        if ticks.0.len() == MAX_TICKS {
            ticks.0.pop_front();
            ticks.1 += 1;
        }
        ticks.0.push_back(tick.clone());
        tick
    }

    /// The figures as they stand, with the latest `recent` ticks.
    pub fn snapshot(&self, recent: usize) -> LiveSnapshot {
        let items_in = self.items_in.load(Ordering::Relaxed);
        let items_out = self.items_out.load(Ordering::Relaxed);
        let (p50_s, p99_s, latency_count) = {
            let window = lock(&self.latency);
            let s = window.run.summary();
            (s.p50, s.p99, s.count)
        };
        let (per_worker, worker_names) = lock(&self.workers)
            .iter()
            .map(|w| (w.items, w.name.clone()))
            .unzip();
        let ticks = lock(&self.ticks);
        LiveSnapshot {
            run: lock(&self.run).clone(),
            elapsed_s: self.start.elapsed().as_secs_f64(),
            items_in,
            items_out,
            in_flight: self.in_flight(items_in, items_out),
            late: self.late.load(Ordering::Relaxed),
            p50_s,
            p99_s,
            latency_count,
            per_worker,
            worker_names,
            per_partition: lock(&self.per_partition).clone(),
            recent: ticks
                .0
                .iter()
                .skip(ticks.0.len().saturating_sub(recent))
                .cloned()
                .collect(),
            notes: lock(&self.notes).iter().cloned().collect(),
        }
    }

    /// Tells watchers what just happened (a redacted URL's password stays `***`); only the
    /// latest [`MAX_NOTES`] are kept.
    pub fn note(&self, text: impl Into<String>) {
        let note = Note {
            t_s: self.start.elapsed().as_secs_f64(),
            text: plumbline_core::secret::redact_url(&text.into()),
        };
        let mut notes = lock(&self.notes);
        if notes.len() == MAX_NOTES {
            notes.pop_front();
        }
        notes.push_back(note);
    }

    /// Time since the last tick (or the start).
    pub fn since_last_tick(&self) -> Duration {
        lock(&self.last).at.elapsed()
    }

    /// The whole timeline, and how many older ticks were dropped from its start.
    pub fn timeline(&self) -> (Vec<Tick>, u64) {
        let ticks = lock(&self.ticks);
        (ticks.0.iter().cloned().collect(), ticks.1)
    }
}

/// One writer's latencies on their way to its run's histogram and to [`Live`]: each value is
/// recorded once, into a batch that [`LatencyFeed::publish`] hands over whole (merging a batch
/// walks the whole histogram, so callers publish every [`FEED_EVERY`] or so, never per item).
#[derive(Debug)]
pub struct LatencyFeed {
    total: Recorder,
    batch: Recorder,
    published: Instant,
}

impl Default for LatencyFeed {
    fn default() -> Self {
        Self {
            total: Recorder::new(),
            batch: Recorder::new(),
            published: Instant::now(),
        }
    }
}

/// How often writers publish their latencies.
pub const FEED_EVERY: Duration = Duration::from_millis(100);

impl LatencyFeed {
    pub fn record_ns(&mut self, ns: u64) {
        self.batch.record_ns(ns);
    }

    /// Adds the batch to the run's histogram and hands it to `live`.
    pub fn publish(&mut self, live: &Live) {
        self.published = Instant::now();
        if self.batch.count() > 0 {
            self.total.merge(&self.batch);
            live.add_latencies(&mut self.batch);
        }
    }

    /// Publishes if [`FEED_EVERY`] has passed since the last time; says whether it did (so the
    /// caller can hand over its other figures at the same pace).
    pub fn publish_if_due(&mut self, live: &Live) -> bool {
        let due = self.published.elapsed() >= FEED_EVERY;
        if due {
            self.publish(live);
        }
        due
    }

    /// Publishes the rest; returns every latency recorded.
    pub fn finish(mut self, live: &Live) -> Recorder {
        self.publish(live);
        self.total
    }
}

/// Calls [`Live::tick`] once a second on its own thread until dropped; the last partial
/// second is ticked on drop so the timeline reaches the end of the run, unless it is shorter
/// than [`MIN_PARTIAL`] (a rate over a few milliseconds would be noise).
pub struct Ticker {
    stop: Arc<(Mutex<bool>, std::sync::Condvar)>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Ticker {
    pub fn start(live: Arc<Live>) -> Self {
        let stop = Arc::new((Mutex::new(false), std::sync::Condvar::new()));
        let signal = stop.clone();
        let thread = std::thread::Builder::new()
            .name("live-ticker".into())
            .spawn(move || {
                let (flag, cvar) = &*signal;
                // Deadlines from one start, so ticks do not drift by the time a tick takes.
                let start = Instant::now();
                let mut n = 1u32;
                let mut stopped = lock(flag);
                // Checked before each wait too: a stop that came first would find no waiter.
                while !*stopped {
                    let due = start + Duration::from_secs(n.into());
                    let wait = due.saturating_duration_since(Instant::now());
                    stopped = cvar
                        .wait_timeout(stopped, wait)
                        .unwrap_or_else(|p| p.into_inner())
                        .0;
                    if *stopped {
                        break;
                    }
                    if Instant::now() >= due {
                        live.tick();
                        // After a stall, the next tick is a whole second away, not a burst of
                        // the missed ones.
                        n = start.elapsed().as_secs() as u32 + 1;
                    }
                }
                drop(stopped);
                if live.since_last_tick() >= MIN_PARTIAL {
                    live.tick();
                }
            })
            .expect("spawning the ticker thread");
        Self {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        *lock(&self.stop.0) = true;
        self.stop.1.notify_all();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tick_turns_counters_into_rates_and_window_percentiles() {
        let live = Live::new();
        live.begin_run(RunInfo {
            label: "r".into(),
            workers: 2,
            total: Some(100),
            target_per_s: Some(50.0),
        });
        live.items_in.store(40, Ordering::Relaxed);
        live.items_out.store(30, Ordering::Relaxed);
        let mut batch = Recorder::new();
        (1..=100).for_each(|ms| batch.record_ns(ms * 1_000_000));
        live.add_latencies(&mut batch);
        assert_eq!(batch.count(), 0, "the batch is cleared for reuse");
        std::thread::sleep(Duration::from_millis(20));
        let tick = live.tick();
        assert_eq!(tick.in_flight, 10);
        assert!(tick.in_per_s > tick.out_per_s && tick.out_per_s > 0.0);
        assert!((tick.p99_s.unwrap() - 0.099).abs() < 0.001);
        assert_eq!(tick.target_per_s, Some(50.0));
        let next = live.tick();
        assert_eq!(next.p99_s, None, "a tick's window is only its own second");
        assert_eq!(next.in_per_s, 0.0);
        let snap = live.snapshot(1);
        assert_eq!(snap.recent, vec![next]);
        assert!(
            (snap.p99_s - 0.099).abs() < 0.001,
            "the run keeps its latency"
        );
        assert_eq!(snap.per_worker, vec![0, 0]);
    }

    #[test]
    fn a_runs_intervals_hold_its_latencies_once_and_only_its_own() {
        let live = Live::new();
        let mut batch = Recorder::new();
        let mut add = |ms: std::ops::RangeInclusive<u64>| {
            ms.for_each(|ms| batch.record_ns(ms * 1_000_000));
            live.add_latencies(&mut batch);
        };
        add(1..=5); // an earlier run's, in the same second as the next run's start
        live.begin_run(RunInfo::default());
        add(1..=10);
        let first = live.tick();
        assert_eq!(live.run_intervals().len(), 1);
        assert!(first.p99_s.unwrap() >= 0.0099, "the tick counts both runs");
        live.tick(); // a second without latencies has no interval
        add(100..=199);
        let intervals = live.run_intervals();
        assert_eq!(
            intervals.iter().map(|i| i.count).collect::<Vec<_>>(),
            [10, 100],
            "the open interval is included, the earlier run's values are not"
        );
        assert!(intervals[0].start_unix_s <= intervals[1].start_unix_s);
        assert!(intervals[0].start_unix_s > 1.6e9 && intervals[0].length_s > 0.0);
        let mut merged = Recorder::new();
        intervals
            .iter()
            .for_each(|i| merged.merge(&i.recorder().unwrap()));
        assert_eq!(merged.summary(), live.run_latency().summary());
        live.tick();
        assert_eq!(live.run_intervals().len(), 2, "closing it adds no other");
        live.begin_run(RunInfo::default());
        assert!(live.run_intervals().is_empty());
    }

    #[test]
    fn a_label_naming_a_url_shows_it_without_its_password() {
        let live = Live::new();
        live.begin_run(RunInfo {
            label: "send to redis://:hunter2@h:1/s".into(),
            ..RunInfo::default()
        });
        assert_eq!(live.snapshot(0).run.label, "send to redis://:***@h:1/s");
    }

    #[test]
    fn a_new_run_starts_from_zero_but_the_timeline_goes_on() {
        let live = Live::new();
        live.items_out.store(7, Ordering::Relaxed);
        live.tick();
        live.begin_run(RunInfo::default());
        assert_eq!(live.snapshot(10).items_out, 0);
        assert_eq!(live.tick().out_per_s, 0.0, "no negative rate across runs");
        assert_eq!(live.timeline().0.len(), 2);
    }

    #[test]
    fn runs_inside_one_second_all_count_in_its_tick() {
        let live = Live::new();
        for _ in 0..3 {
            live.begin_run(RunInfo::default());
            live.items_out.store(100, Ordering::Relaxed);
            live.late.store(2, Ordering::Relaxed);
        }
        let tick = live.tick();
        // `late` is a count, carried the same way as the items behind the rates.
        assert_eq!(tick.late, 6, "every run's late sends, not the last run's");
        assert!(tick.out_per_s > 0.0);
        let next = live.tick();
        assert_eq!((next.late, next.out_per_s), (0, 0.0), "and only once");
    }

    #[test]
    fn a_feed_records_once_for_its_run_and_for_watchers() {
        let live = Live::new();
        let mut feed = LatencyFeed::default();
        (1..=10).for_each(|ms| feed.record_ns(ms * 1_000_000));
        feed.publish(&live);
        feed.record_ns(50_000_000);
        assert_eq!(
            live.snapshot(0).latency_count,
            10,
            "the unpublished one is not seen yet"
        );
        let total = feed.finish(&live);
        assert_eq!(total.count(), 11);
        assert_eq!(live.snapshot(0).latency_count, 11);
    }

    #[test]
    fn a_feed_publishes_when_due_and_not_before() {
        let live = Live::new();
        let mut feed = LatencyFeed::default();
        feed.record_ns(1_000_000);
        assert!(!feed.publish_if_due(&live), "a fresh feed is not due");
        assert_eq!(live.snapshot(0).latency_count, 0);
        std::thread::sleep(FEED_EVERY + Duration::from_millis(10));
        assert!(feed.publish_if_due(&live));
        assert_eq!(live.snapshot(0).latency_count, 1);
        assert!(
            !feed.publish_if_due(&live),
            "due again only after another interval"
        );
    }

    #[test]
    fn notes_reach_the_snapshot_in_order_and_only_the_latest_are_kept() {
        let live = Live::new();
        assert!(live.snapshot(1).notes.is_empty());
        for i in 0..MAX_NOTES + 2 {
            live.note(format!("change {i}"));
        }
        let notes = live.snapshot(1).notes;
        assert_eq!(notes.len(), MAX_NOTES);
        assert_eq!(notes[0].text, "change 2", "the oldest went first");
        assert_eq!(
            notes.last().unwrap().text,
            format!("change {}", MAX_NOTES + 1)
        );
        assert!(notes.windows(2).all(|w| w[0].t_s <= w[1].t_s));
        live.note("joined redis://u:secret@h:1/s");
        assert!(!live
            .snapshot(1)
            .notes
            .last()
            .unwrap()
            .text
            .contains("secret"));
    }

    #[test]
    fn with_one_side_uncounted_in_flight_is_zero_not_made_up() {
        let live = Live::new();
        live.in_flight_unknown();
        live.items_out.store(5, Ordering::Relaxed);
        assert_eq!(live.tick().in_flight, 0);
    }

    #[test]
    fn the_ticker_closes_a_partial_second_on_drop_unless_it_is_a_sliver() {
        let live = Arc::new(Live::new());
        drop(Ticker::start(live.clone()));
        assert_eq!(
            live.timeline().0.len(),
            0,
            "a few microseconds make no tick"
        );
        let ticker = Ticker::start(live.clone());
        std::thread::sleep(MIN_PARTIAL + Duration::from_millis(50));
        drop(ticker);
        assert_eq!(live.timeline().0.len(), 1);
    }
}
