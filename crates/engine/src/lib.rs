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
//! loopback TCP), [`pipeline::Pipeline`] (seed 001's task pipeline: distributor and
//! collector in-process, `plumbline pipeline worker` processes) and [`external::External`]
//! (a system outside plumbline between two URLs, its workers N copies of a spawn command; with
//! plumbline's own members, a broker's consumer group) and [`stream::Stream`] (seed 004's
//! stream scaling: a dispatcher and compute workers behind a broker stream). [`child`] starts
//! and watches such processes.

pub mod child;
pub mod external;
pub mod members;
pub mod pipeline;
pub mod processes;
pub mod scaling;
pub mod stream;
pub mod threads;
pub mod trial;

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use plumbline_core::{Message, Shutdown};
use plumbline_load::sender::{Framing, Payloads, SendPlan};
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
    /// An engine that grows and shrinks its group mid-run: how, and what its last run did.
    fn elastic(&self) -> Option<&scaling::Elastic> {
        None
    }
}

/// The closed set of engines a `--cluster` word names.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum EngineKind {
    Threads,
    Processes,
    Pipeline,
    /// A broker's consumer group of `plumbline worker --in URL` members, the load sent to
    /// the URL (as typed: a login in it is the members' too).
    Group(String),
}

impl FromStr for EngineKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "threads" => Ok(Self::Threads),
            "processes" => Ok(Self::Processes),
            "pipeline" => Ok(Self::Pipeline),
            url if url.contains("://") => match url.parse() {
                Ok(plumbline_transport::config::TransportConfig::Tcp { .. }) => Err(format!(
                    "'{url}': a consumer group needs a broker (redis://, nats://, kafka://); \
                     tcp:// has no group"
                )),
                Ok(_) => Ok(Self::Group(url.to_string())),
                Err(e) => Err(e.to_string()),
            },
            other => Err(format!(
                "'{other}' is not a cluster: use threads, processes, pipeline or a broker URL \
                 (redis://HOST:PORT/STREAM, nats://…?jetstream=1, kafka://…) for a consumer group"
            )),
        }
    }
}

impl fmt::Display for EngineKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Threads => f.write_str("threads"),
            Self::Processes => f.write_str("processes"),
            Self::Pipeline => f.write_str("pipeline"),
            // Shown without its password (which then does not round-trip).
            Self::Group(url) => f.write_str(&plumbline_core::secret::redact_url(url)),
        }
    }
}

/// What a run sends: `items` generated messages, due by `shape` (`Shape::Max`: a batch, every
/// item due at the start).
#[derive(Clone, Debug)]
pub struct Load {
    pub workload: Workload,
    pub keys: KeyDist,
    pub seed: u64,
    pub items: u64,
    pub shape: Shape,
}

impl Load {
    /// The load's shape, as the open-loop sender takes it.
    pub fn shape(&self) -> Shape {
        self.shape.clone()
    }

    /// The load as the network sender sends it: plumbline framing (source 1), so a receiver
    /// measures latency from each item's intended send time and counts losses.
    pub fn send_plan(&self) -> SendPlan {
        SendPlan {
            shape: self.shape(),
            payloads: Payloads::Generated {
                workload: self.workload.clone(),
                keys: self.keys,
                seed: self.seed,
            },
            framing: Framing::Plumbline { source: 1 },
            messages: Some(self.items),
            duration: None,
            late_after: Duration::from_millis(1),
            share: plumbline_load::Share::WHOLE,
            start_at_unix_ns: None,
            clock_offset_ns: 0,
        }
    }

    /// The generated messages, each stamped with its intended send time from the shape's
    /// schedule (the one the network sender paces by), for an in-process source.
    pub fn messages(&self) -> anyhow::Result<impl Iterator<Item = Message> + Send> {
        let mut schedule = self.shape().schedule(0, 1);
        let paced = self.shape != Shape::Max;
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
    /// Where the receiver checked keyed state (an elastic TCP cluster): what it found.
    pub continuity: Option<plumbline_measure::continuity::ContinuityReport>,
}

impl RunFigures {
    /// A run whose results a network receiver counted: delivered once each, losses and
    /// duplicates by sequence number; no work timing, per-worker counts or state.
    pub fn received(
        wall: Duration,
        sent: u64,
        summary: plumbline_worker::receiver::ReceiveSummary,
        interrupted: bool,
    ) -> Self {
        Self {
            wall,
            sent,
            delivered: summary.unique,
            lost: summary.sequence.lost,
            duplicates: summary.sequence.duplicates + summary.sequence.too_late,
            latency: summary.latency_s,
            work: plumbline_measure::Recorder::new().summary(),
            per_worker: Vec::new(),
            final_state: None,
            rejected: 0,
            first_rejection: None,
            interrupted,
            continuity: summary.continuity,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::EngineKind;

    #[test]
    fn a_cluster_word_or_broker_url_round_trips_and_tcp_or_nonsense_is_refused() {
        for word in [
            "threads",
            "processes",
            "redis://127.0.0.1:6379/jobs",
            "nats://127.0.0.1:4222/jobs?jetstream=1",
            "kafka://127.0.0.1:9092/jobs",
        ] {
            let kind: EngineKind = word.parse().unwrap();
            assert_eq!(kind.to_string(), word);
        }
        assert!("tcp://127.0.0.1:7000"
            .parse::<EngineKind>()
            .unwrap_err()
            .contains("needs a broker"));
        assert!("redis://127.0.0.1:6379"
            .parse::<EngineKind>()
            .unwrap_err()
            .contains("names no"));
        assert!("fleet"
            .parse::<EngineKind>()
            .unwrap_err()
            .contains("broker URL"));
        let shown = EngineKind::Group("redis://:secret@127.0.0.1:6379/jobs".into()).to_string();
        assert!(!shown.contains("secret"), "{shown}");
    }
}
