//! The run record, schema [`SCHEMA`]: one document type ([`Record`]) for every run of every
//! command — bench and its pipeline table, stream, send, receive, and capacity's trials.
//!
//! A [`RunRecord`] holds the figures every run has, each under one name (items sent and
//! delivered, lost, duplicates, wall, ideal, overhead by the one formula, target and achieved
//! rate, latency with its HdrHistogram), and one typed section for what only its command
//! measures. Every field, its unit and the versioning rule are in docs/run-record.md: renaming,
//! retyping or removing a field is a new version, and [`Record::parse`] refuses any version but
//! this one by name. Producing the figures is the commands' job; the table is in [`crate::report`].

use serde::{Deserialize, Serialize};

use crate::report::{overhead_pct, Host};
use crate::{LatencyInterval, LatencySummary, Limit, Recorder, SeqSummary};

/// What `schema` says in every run record this version writes.
pub const SCHEMA: &str = "plumbline.run/3";

/// The command that wrote a record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Command {
    /// `bench`, the pipeline table (`--preset pipeline`) included.
    Bench,
    Send,
    Receive,
    Stream,
    Capacity,
    Elastic,
}

impl std::fmt::Display for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Command::Bench => "bench",
            Command::Send => "send",
            Command::Receive => "receive",
            Command::Stream => "stream",
            Command::Capacity => "capacity",
            Command::Elastic => "elastic",
        })
    }
}

/// The document: which command ran, how to run it again, where, and its runs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// [`SCHEMA`].
    pub schema: String,
    pub plumbline_version: String,
    pub command: Command,
    /// The command line, passwords in URLs shown as `***`.
    pub command_line: Vec<String>,
    /// The preset the runs came from (bench, capacity); null for the other commands.
    pub preset: Option<String>,
    /// The seed of the generated load; null when the load is not random.
    pub seed: Option<u64>,
    pub host: Host,
    pub runs: Vec<RunRecord>,
    /// Capacity's curves and demand (its trials are `runs`); null for the other commands.
    pub capacity: Option<CapacitySection>,
}

/// One run: the figures every run has, and the section of the command that made it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    /// Worker threads or processes; send: connections; stream: compute workers.
    pub workers: usize,
    /// Items the run was to handle; null when open-ended.
    pub items: Option<u64>,
    /// Items sent into the system under test; null where the command sends none (receive).
    pub sent: Option<u64>,
    /// Results that came back, each counted once; null where the command sees none (send).
    pub delivered: Option<u64>,
    /// Items sent and never delivered.
    pub lost: u64,
    /// Items delivered more than once.
    pub duplicates: u64,
    pub wall_s: f64,
    /// What the run takes with zero overhead; null when no ideal is known.
    pub ideal_s: Option<f64>,
    /// [`overhead_pct`] of `wall_s` over `ideal_s`; null without a positive ideal.
    pub overhead_pct: Option<f64>,
    /// The rate the load was offered at; null for a batch or as fast as possible.
    pub target_per_s: Option<f64>,
    /// Results ÷ wall where the command sees results; send and capacity trials: what the
    /// sender achieved.
    pub achieved_per_s: f64,
    /// Intended send time → result; `count` 0 where not measured.
    pub latency_s: LatencySummary,
    /// `latency_s` one interval (second) at a time, as [`RunRecord::with_intervals`] keeps
    /// them; empty where the run has none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub latency_intervals: Vec<LatencyInterval>,
    /// Items each worker handled; empty when not known.
    pub per_worker: Vec<u64>,
    /// Cut short by Ctrl-C.
    pub interrupted: bool,
    pub bench: Option<BenchSection>,
    pub pipeline: Option<PipelineFigures>,
    pub stream: Option<StreamSection>,
    pub send: Option<SendSection>,
    pub receive: Option<ReceiveSection>,
    pub trial: Option<TrialSection>,
    pub elastic: Option<ElasticSection>,
}

impl RunRecord {
    /// A run of `workers` that took `wall_s`, with no other figure yet: commands fill in what
    /// they measured with struct update syntax, and the ideal with [`RunRecord::with_ideal`].
    pub fn new(workers: usize, wall_s: f64) -> Self {
        Self {
            workers,
            items: None,
            sent: None,
            delivered: None,
            lost: 0,
            duplicates: 0,
            wall_s,
            ideal_s: None,
            overhead_pct: None,
            target_per_s: None,
            achieved_per_s: 0.0,
            latency_s: Recorder::new().summary(),
            latency_intervals: Vec::new(),
            per_worker: Vec::new(),
            interrupted: false,
            bench: None,
            pipeline: None,
            stream: None,
            send: None,
            receive: None,
            trial: None,
            elastic: None,
        }
    }

    /// The run's latency intervals ([`crate::Live::run_intervals`]), kept only when they hold
    /// exactly `latency_s`'s values: a run whose latency is not what watchers saw (a capacity
    /// trial leaves its warm-up out) has none rather than intervals that disagree with it.
    pub fn with_intervals(self, intervals: Vec<LatencyInterval>) -> Self {
        let count: u64 = intervals.iter().map(|i| i.count).sum();
        Self {
            latency_intervals: match count == self.latency_s.count && count > 0 {
                true => intervals,
                false => Vec::new(),
            },
            ..self
        }
    }

    /// The ideal and the overhead over it, by the one formula.
    pub fn with_ideal(self, ideal_s: Option<f64>) -> Self {
        Self {
            ideal_s,
            overhead_pct: ideal_s.and_then(|ideal| overhead_pct(self.wall_s, ideal)),
            ..self
        }
    }

    /// A pipeline worker's threads; `None` for the other clusters (a thread or process each).
    pub fn threads_per_worker(&self) -> Option<u32> {
        self.pipeline.as_ref().map(|p| p.threads_per_worker)
    }
}

/// What a bench matrix run has beyond every run's figures (the pipeline table's too).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BenchSection {
    pub delay_s: f64,
    /// `sleep`, `spin` or `hybrid:F`.
    pub work: String,
    /// `partitioned`, `balanced` or `sequential`.
    pub step: String,
    /// The engine: `threads`, `processes`, `pipeline`, a broker group's URL, …
    pub cluster: String,
    pub workload: String,
    pub keys: String,
    /// What bounds the ideal: the worker count, the key distribution, or the cores.
    pub limit: Limit,
    /// The ideal had keys been spread perfectly evenly.
    pub even_spread_ideal_s: f64,
    /// The ideal with a core per worker: the busiest worker's items × delay.
    pub busiest_worker_s: f64,
    /// Wall time of the 1-worker run of the same configuration ÷ this wall time.
    pub speedup: Option<f64>,
    /// `speedup / workers`.
    pub efficiency: Option<f64>,
    /// `achieved_per_s` ÷ that of the plain-loop run of the same load.
    pub vs_sequential: Option<f64>,
    /// Payload megabytes (10^6 bytes) delivered per second.
    pub mb_per_s: f64,
    /// What one item's work actually cost (the precision of the work model).
    pub work_s: LatencySummary,
    /// Items a worker could not apply (malformed payloads).
    pub rejected: u64,
    /// Whether the final state matched what the sent items imply (null for stateless steps).
    pub state_ok: Option<bool>,
    /// The final state in short, or what did not match.
    pub state: String,
}

/// The figures of a task pipeline run (`cluster: pipeline`) beyond a bench run's.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PipelineFigures {
    /// Threads each worker process runs: the run has `workers × threads_per_worker` slots.
    pub threads_per_worker: u32,
    /// Tasks sent to a worker, redeliveries included.
    pub dispatches: u64,
    /// Tasks sent again after a lease expired or a worker left.
    pub redelivered: u64,
    /// Tasks given up after their last delivery.
    pub failed: u64,
    /// Seed 001's published wall time for this tasks × workers × threads (10 ms tasks only).
    pub seed_wall_s: Option<f64>,
    /// Seed 001's published overhead, in percent.
    pub seed_overhead_pct: Option<f64>,
    /// The distributor's own report (`pipeline distributor --json`), unabridged.
    pub distributor: serde_json::Value,
}

/// One `stream` experiment (seed 004) beyond every run's figures.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StreamSection {
    /// The broker: `redis`, `kafka` or `nats`.
    pub stream: String,
    /// `default` (data by value) or `proxy` (by reference through the store).
    pub stream_method: String,
    pub data_size_bytes: usize,
    pub task_sleep_s: f64,
    /// Which repetition of this method and size, from 0.
    pub repeat: u64,
    /// Bytes of stream messages (data or key), and their mean per item.
    pub broker_bytes: u64,
    pub broker_bytes_per_item: f64,
    /// Bytes put into the store (proxy).
    pub store_bytes: u64,
    /// Store keys of this run left after it (must be 0).
    pub leaked_keys: u64,
    /// Why the run ended early, if it did.
    pub error: Option<String>,
    /// psbench's timestamps (UNIX seconds): the clock's start, just before the first item was
    /// due, and the last task's end (start + `wall_s`); 0 in records written before them.
    #[serde(default)]
    pub start_submit_tasks_timestamp: f64,
    #[serde(default)]
    pub end_tasks_done_timestamp: f64,
    /// How the compute workers ran: `thread` (threads of plumbline's process) or `process`
    /// (a child process each); `thread` in records written before it.
    #[serde(default = "thread")]
    pub executor: String,
    /// Each compute worker's process id, as the worker itself reported it (threads: all
    /// plumbline's); empty in records written before it.
    #[serde(default)]
    pub compute_pids: Vec<u32>,
}

/// The executor of stream records written before they said.
fn thread() -> String {
    "thread".into()
}

/// What `send` measured beyond every run's figures.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SendSection {
    /// Where it sent: the `--to` URL, or the `--host` addresses.
    pub to: String,
    pub bytes: u64,
    /// `(achieved_per_s ÷ target_per_s − 1) × 100`; null without a target.
    pub rate_error_pct: Option<f64>,
    /// Per-second sent counts over the run's full seconds.
    pub per_second: Option<PerSecond>,
    pub late_after_s: f64,
    /// Messages whose write started more than `late_after_s` past their deadline.
    pub late: u64,
    /// Write start − deadline of every message.
    pub lateness_s: LatencySummary,
    /// Time inside socket writes, and writes slower than 1 ms (the peer pushed back).
    pub write_s: f64,
    pub stalls: u64,
    pub stall_s: f64,
    /// The shape's segments: target against achieved.
    pub segments: Vec<SegmentFigures>,
    /// The sender process's peak resident memory (Linux), to show it stays bounded.
    pub peak_rss_mb: Option<f64>,
    /// Connections broken and opened again (`--reconnect`), and the messages written to them
    /// since their last flush: at most that many were lost in the breaks.
    pub reconnects: u64,
    pub at_risk: u64,
    /// With `--to`: what the broker acknowledged, and how fast.
    pub broker: Option<serde_json::Value>,
    /// `--split I/N`: this sender's share of a schedule N senders emit together (its target
    /// rates are its share's); null alone.
    #[serde(default)]
    pub split: Option<String>,
    /// `--start-at`: how many seconds after that time the schedule started (0 on time);
    /// null without one.
    #[serde(default)]
    pub late_start_s: Option<f64>,
    /// `--clock-ref`: this host's clock against the reference's; its stamps are on the
    /// reference's clock.
    #[serde(default)]
    pub clock: Option<ClockSection>,
}

/// How far this host's clock was from the run's reference (`--clock-ref`), measured before
/// the run; its stamps (send) or arrivals (receive) were moved onto the reference's clock.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClockSection {
    /// The `plumbline clock` responder asked.
    pub reference: String,
    /// Reference − this host, s: what was added to this host's times.
    pub offset_s: f64,
    /// The true offset is within ±this, s (half the best exchange's round trip).
    pub uncertainty_s: f64,
    /// Exchanges that came back.
    pub samples: usize,
}

/// Per-second achieved rate over a send's full seconds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PerSecond {
    pub seconds: usize,
    pub p1: u64,
    pub p50: u64,
    pub p99: u64,
}

impl PerSecond {
    /// The spread of `counts` (messages in each second) over the first `full_seconds`, the
    /// seconds a run covered completely (a last, partial second would look slow); `None`
    /// without one.
    pub fn of(counts: &[u64], full_seconds: usize) -> Option<PerSecond> {
        let seconds = counts.len().min(full_seconds);
        (seconds > 0).then(|| {
            let mut counts = counts[..seconds].to_vec();
            counts.sort_unstable();
            let at = |q: f64| counts[((counts.len() - 1) as f64 * q).round() as usize];
            PerSecond {
                seconds,
                p1: at(0.01),
                p50: at(0.5),
                p99: at(0.99),
            }
        })
    }
}

/// One segment of a send's shape.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SegmentFigures {
    pub start_s: f64,
    pub end_s: f64,
    pub target_per_s: f64,
    pub achieved_per_s: f64,
    pub error_pct: Option<f64>,
}

/// What `receive` measured beyond every run's figures (`delivered` is its unique messages).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReceiveSection {
    /// Where it received: the `--from` URL or the `--listen` address.
    pub from: String,
    /// Every frame, duplicates and raw frames included, and their payload bytes.
    pub frames: u64,
    pub bytes: u64,
    pub mb_per_s: f64,
    pub connections: u64,
    /// Refused because `--max-connections` were open.
    pub refused_connections: u64,
    pub bad_connections: u64,
    /// Of the bad connections, those closed because a frame stalled.
    pub slow_connections: u64,
    /// Times a connection waited for buffer because the budget was spent.
    pub budget_waits: u64,
    pub bad_reasons: Vec<String>,
    /// Loss and order accounting of plumbline-framed frames, its loss and duplicates being
    /// the run's `lost` and `duplicates`.
    pub sequence: Sequence,
    /// With `--continuity`: what the state check found.
    #[serde(default)]
    pub continuity: Option<crate::continuity::ContinuityReport>,
    /// Frames arriving in each full second from the first frame on.
    #[serde(default)]
    pub per_second: Option<PerSecond>,
    /// `--clock-ref`: this host's clock against the reference's; latency is on the
    /// reference's clock.
    #[serde(default)]
    pub clock: Option<ClockSection>,
    /// With `--from`: what the consumer saw of the broker.
    pub broker: Option<serde_json::Value>,
    pub kafka_broker: Option<serde_json::Value>,
}

/// A [`SeqSummary`] less the loss and duplicates a run record holds once, at its top.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Sequence {
    pub sources: usize,
    /// Plumbline-framed frames received, repeats included.
    pub received: u64,
    pub reordered: u64,
    pub too_late: u64,
    pub untracked: u64,
    /// The first missing sequence numbers, as ranges (`"17"`, `"20-31"`).
    pub missing: Vec<String>,
}

impl From<&SeqSummary> for Sequence {
    fn from(s: &SeqSummary) -> Self {
        Self {
            sources: s.sources,
            received: s.received,
            reordered: s.reordered,
            too_late: s.too_late,
            untracked: s.untracked,
            missing: s.missing.clone(),
        }
    }
}

/// One capacity trial: the run at `target_per_s` and how it was judged. A trial cut past its
/// window counts its unfinished items in `lost`, which its verdict does not judge.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrialSection {
    /// The curve (`capacity`'s `curves[].label`) and engine the trial ran on.
    pub curve: String,
    pub engine: String,
    /// The lag trend over the window, items/s per second, and the limit it was judged by.
    pub lag_slope: Option<f64>,
    pub lag_limit: f64,
    pub mean_in_flight: f64,
    /// Stopped past its window before every item was done.
    pub cut: bool,
    /// `pass`, `fail` or `sender-bound`, and why (null on a pass).
    pub verdict: String,
    pub why: Option<String>,
}

/// What only an `elastic` run has: the group's schedule and what each change cost.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ElasticSection {
    /// The group: a broker's URL, its password shown as `***`, or `processes` (the TCP
    /// cluster).
    pub cluster: String,
    /// `COUNT@TIME,…` as given.
    pub schedule: String,
    /// How members left when the group shrank: `graceful` or `kill`.
    pub leave: String,
    /// The load offered: `constant` or `day-night` (seed 003's day, `target_per_s` its mean).
    #[serde(default)]
    pub shape: String,
    /// The highest rate the shape asks for (a constant's rate; the day's noon).
    #[serde(default)]
    pub peak_per_s: f64,
    /// Stopped 1 s plus a quarter of the load's length (on a broker group, at least its
    /// redelivery time and 2 s) after the load ended with items not done: `lost` then counts
    /// those too.
    pub cut: bool,
    pub changes: Vec<ElasticChange>,
    /// (seconds since the first item, items due and not done), every sample.
    pub lag: Vec<(f64, f64)>,
    /// (end of each second since the first item, items due in it, items done in it): the
    /// offered load and the done rate from the same samples as `lag`.
    #[serde(default)]
    pub flow: Vec<(f64, f64, f64)>,
    /// With `--autoscale`: the autoscaler's setup and every decision it took.
    #[serde(default)]
    pub autoscale: Option<AutoscaleSection>,
    /// On the TCP cluster's keyed state: whether every key's results advanced one step per
    /// item across the migrations (no reset, gap or repeat).
    #[serde(default)]
    pub continuity: Option<crate::continuity::ContinuityReport>,
    /// The TCP cluster's partition migrations, each as it settled (empty for a broker group,
    /// which moves partitions itself).
    #[serde(default)]
    pub migrations: Vec<ElasticMigration>,
}

/// One migration of the TCP cluster's partitions (their state moving with them).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ElasticMigration {
    /// When it settled, seconds since the load started.
    pub at_s: f64,
    /// Workers owning partitions after it.
    pub workers: usize,
    /// Partitions that changed hands.
    pub moved: u32,
    /// From the membership change to the last state installed.
    pub took_s: f64,
    /// The longest one partition's items were held while its state moved: the pause its
    /// keys saw.
    pub longest_hold_s: f64,
}

/// The HPA emulation of one elastic run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AutoscaleSection {
    /// `MIN..MAX` replicas.
    pub range: String,
    /// Items of lag per replica it aims for (KEDA's `lagThreshold`), or (with a busy
    /// target) `None`.
    #[serde(default)]
    pub lag_per_replica: Option<f64>,
    /// The busy fraction of each replica it aims for (HPA's utilisation target), if that is
    /// its target.
    #[serde(default)]
    pub busy_target: Option<f64>,
    pub sync_s: f64,
    pub scale_up_window_s: f64,
    pub scale_down_window_s: f64,
    /// One per sync period, in order.
    pub decisions: Vec<AutoscaleDecision>,
    /// Replicas integrated over the load's duration, and the ideal: the offered rate times
    /// one item's cost (the replicas a perfect scaler would run), over the same time.
    pub replica_seconds: f64,
    pub ideal_replica_seconds: f64,
    /// Seconds during which lag was above the target times the members running: the SLO
    /// the autoscaler was set to keep, broken (`None` with a busy target).
    #[serde(default)]
    pub over_target_s: Option<f64>,
}

/// One sync period: what the autoscaler saw and decided.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AutoscaleDecision {
    /// Since the load started.
    pub at_s: f64,
    pub lag: f64,
    /// With a busy target: the replicas' mean busy fraction over the sync period.
    #[serde(default)]
    pub busy: Option<f64>,
    pub from: usize,
    pub to: usize,
    /// What the metric alone asked for.
    pub recommended: usize,
    /// `metric`, `within tolerance`, `stabilized`, `rate limited` or `bounded`.
    pub reason: String,
}

/// One membership change, as applied and measured.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ElasticChange {
    pub from: usize,
    pub to: usize,
    /// `join`, or how members left.
    pub how: String,
    /// Since the load started.
    pub at_s: f64,
    /// The longest time, until the next change, that nothing finished while items waited.
    pub pause_s: f64,
    pub lag_before: f64,
    pub lag_peak: f64,
    /// The lowest share of the items due in any 1 s after the change (until the next) that
    /// the group finished in it: below 1, it fell behind even where no pause shows (a
    /// partial stall); null when no whole second with items due followed.
    #[serde(default)]
    pub slowest_share: Option<f64>,
    /// Lag (items) at or under which the change counts as recovered.
    pub recover_lag: f64,
    /// From the change until lag was back under `recover_lag`; null when it never was before
    /// the next change or the end.
    pub recovered_s: Option<f64>,
    /// With `--autoscale`: how long lag had been above the target (per member before the
    /// change) when the change came; null when it answered no backlog.
    #[serde(default)]
    pub reaction_s: Option<f64>,
}

/// What `capacity` found beyond its trials.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CapacitySection {
    /// The SLO a trial passes: lag-slope limit, optional p99, the share of the rate the
    /// sender must achieve.
    pub slo: serde_json::Value,
    pub resolution: f64,
    pub warmup_s: f64,
    pub window_s: f64,
    pub curves: Vec<CapacityCurve>,
    pub demand: Vec<Demand>,
    /// What ended the experiment early, if anything did.
    pub error: Option<String>,
}

/// One engine and load over its worker counts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CapacityCurve {
    pub label: String,
    pub points: Vec<CapacityPoint>,
}

/// One worker count's search.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CapacityPoint {
    pub workers: usize,
    pub engine: String,
    /// What a zero-overhead engine sustains, items/s (null: unknown cost), and what bounds it.
    pub ideal_rate: Option<f64>,
    pub ideal_limit: Limit,
    /// The highest rate that passed, items/s.
    pub capacity: Option<f64>,
    pub capacity_vs_ideal: Option<f64>,
    /// capacity ÷ (workers × the curve's 1-worker capacity).
    pub efficiency: Option<f64>,
    /// What limited it: workers, keys, cores, sender, or overhead.
    pub limited_by: String,
    /// How the search ended: the bracket reached, trials run, why it stopped.
    pub search: serde_json::Value,
    /// Its trials: indices into the document's `runs`.
    pub trials: Vec<usize>,
}

/// The fewest workers measured that sustain a load.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Demand {
    pub curve: String,
    pub load: f64,
    /// `None`: no worker count measured did.
    pub workers: Option<usize>,
}

/// Why a document is not a run record this version reads.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("not JSON: {0}")]
    NotJson(serde_json::Error),
    #[error(
        "no \"schema\" field: a run record of plumbline.run/1 (before versioned schemas); \
         this plumbline reads {SCHEMA}: run the command again"
    )]
    Unversioned,
    #[error("schema {found}; this plumbline reads {SCHEMA}: run the command again")]
    Schema { found: String },
    #[error("not a valid {SCHEMA} document: {0}")]
    Invalid(serde_json::Error),
}

impl Record {
    /// An empty document of this schema.
    pub fn new(command: Command, command_line: Vec<String>, host: Host) -> Self {
        Self {
            schema: SCHEMA.to_string(),
            plumbline_version: env!("CARGO_PKG_VERSION").to_string(),
            command,
            command_line,
            preset: None,
            seed: None,
            host,
            runs: Vec::new(),
            capacity: None,
        }
    }

    /// Reads a run record, checking its schema before its fields, so an older or newer document
    /// is refused by its version rather than by whichever field changed.
    pub fn parse(bytes: &[u8]) -> Result<Self, RecordError> {
        Self::from_value(serde_json::from_slice(bytes).map_err(RecordError::NotJson)?)
    }

    /// [`Record::parse`] of a document already read as JSON.
    pub fn from_value(value: serde_json::Value) -> Result<Self, RecordError> {
        match value.get("schema") {
            None => Err(RecordError::Unversioned),
            Some(serde_json::Value::String(s)) if s == SCHEMA => {
                serde_json::from_value(value).map_err(RecordError::Invalid)
            }
            Some(other) => Err(RecordError::Schema {
                found: other
                    .as_str()
                    .map_or_else(|| other.to_string(), str::to_string),
            }),
        }
    }

    /// The document as `--json` writes it.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a run record always serializes") + "\n"
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A bench run of 52 votes × 0.5 s on `workers` that took `wall_s`.
    pub(crate) fn bench_run(workers: usize, wall_s: f64) -> RunRecord {
        let ideal = 26.0 / workers as f64;
        RunRecord {
            items: Some(52),
            sent: Some(52),
            delivered: Some(52),
            achieved_per_s: 52.0 / wall_s,
            per_worker: vec![52 / workers as u64; workers],
            bench: Some(BenchSection {
                delay_s: 0.5,
                work: "sleep".into(),
                step: "partitioned".into(),
                cluster: "threads".into(),
                workload: "votes".into(),
                keys: "letters".into(),
                limit: Limit::Workers,
                even_spread_ideal_s: ideal,
                busiest_worker_s: ideal,
                speedup: None,
                efficiency: None,
                vs_sequential: None,
                mb_per_s: 0.0,
                work_s: Recorder::new().summary(),
                rejected: 0,
                state_ok: None,
                state: String::new(),
            }),
            ..RunRecord::new(workers, wall_s)
        }
        .with_ideal(Some(ideal))
    }

    pub(crate) fn record(runs: Vec<RunRecord>) -> Record {
        let host = Host {
            cores: 2,
            os: "linux".into(),
            arch: "x86_64".into(),
            hostname: None,
            memory_bytes: None,
            kernel: None,
        };
        Record {
            preset: Some("alphabet".into()),
            seed: Some(0),
            runs,
            ..Record::new(Command::Bench, vec![], host)
        }
    }

    #[test]
    fn json_round_trips() {
        // The documented field names are pinned end to end in crates/cli/tests/record.rs.
        let doc = record(vec![bench_run(2, 13.01)]);
        assert_eq!(Record::parse(doc.to_json().as_bytes()).unwrap(), doc);
    }

    #[test]
    fn the_overhead_is_the_one_formula_and_null_without_an_ideal() {
        let run = RunRecord::new(1, 1.5);
        assert_eq!(run.clone().with_ideal(None).overhead_pct, None);
        assert_eq!(run.clone().with_ideal(Some(0.0)).overhead_pct, None);
        let o = run.with_ideal(Some(1.0)).overhead_pct.unwrap();
        assert!((o - 50.0).abs() < 1e-9, "{o}");
    }

    #[test]
    fn another_schema_is_refused_by_its_version() {
        let mut doc = serde_json::to_value(record(vec![bench_run(1, 26.0)])).unwrap();
        doc["schema"] = "plumbline.run/2".into();
        let e = Record::parse(doc.to_string().as_bytes()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "schema plumbline.run/2; this plumbline reads plumbline.run/3: run the command again"
        );
        doc.as_object_mut().unwrap().remove("schema");
        let e = Record::parse(doc.to_string().as_bytes()).unwrap_err();
        assert!(e.to_string().contains("plumbline.run/1"), "{e}");
        // A document of this schema missing a field is named as invalid, not as another version.
        let mut doc = serde_json::to_value(record(vec![bench_run(1, 26.0)])).unwrap();
        doc["runs"][0].as_object_mut().unwrap().remove("wall_s");
        let e = Record::parse(doc.to_string().as_bytes()).unwrap_err();
        assert!(e.to_string().contains("missing field `wall_s`"), "{e}");
    }

    #[test]
    fn a_receive_sequence_holds_loss_and_duplicates_once_at_the_top() {
        let summary = SeqSummary {
            sources: 1,
            received: 10,
            lost: 2,
            duplicates: 1,
            ..SeqSummary::default()
        };
        let shown = serde_json::to_value(Sequence::from(&summary)).unwrap();
        assert_eq!(shown["received"], 10);
        assert!(shown.get("lost").is_none() && shown.get("duplicates").is_none());
    }
}
