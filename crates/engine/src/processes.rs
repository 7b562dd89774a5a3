//! Worker processes as an engine (`--cluster processes`): one run measured the way the
//! threads run is, so one table compares the two; and, elastic, the TCP cluster grown and
//! shrunk mid-run with its state.
//!
//! It starts `plumbline worker` processes (an initializer and `workers - 1` joiners) on free
//! loopback ports, receives their results in-process with the network receiver, sends the
//! run's generated load with the open-loop sender (plumbline framing, so latency counts from
//! each item's intended send time), shuts the cluster down, and takes per-worker counts from
//! the initializer's closing announcement (`--announce`: its bound addresses and figures as
//! typed events, never its log lines). The per-item work timing stays inside the workers, so
//! `work_s` is empty for process runs.
//!
//! Elastic ([`Processes::elastic`]): a worker the schedule or the autoscaler adds starts with
//! `--join-running`, and one it removes (the newest first; never the initializer, which
//! routes every item) is shrunk through the initializer's control port, which moves its
//! partitions' state to the others before it leaves ([`crate::members::Farewell::Shrink`]);
//! the results carry versions and the receiver checks every key's state stays continuous.
//! Members leave gracefully only: a killed worker takes its partitions' state with it, and
//! the initializer ends the run on a death.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use plumbline_core::Shutdown;
use plumbline_load::sender;
use plumbline_load::Workload;
use plumbline_measure::Live;
use plumbline_worker::announce::Announcement;
use plumbline_worker::node::wire::WorkerStats;
use plumbline_worker::receiver::{Framing as ReceiveFraming, Receiver, ReceiverConfig};
use plumbline_worker::{App, ClusterConfig, Step};

use crate::child::{Proc, SETTLE};
use crate::members::{Farewell, Leave, Members};
use crate::scaling::{Elastic, Migration, Scaling};
use crate::{Engine, Load, RunFigures};

/// How long a member leaving gracefully gets to exit before it is killed.
const GRACE: Duration = Duration::from_secs(2);

/// An initializer and `workers - 1` joiners, each a `plumbline worker` process started from
/// `exe` (the plumbline binary).
#[derive(Debug)]
pub struct Processes {
    pub cluster: ClusterConfig,
    pub exe: PathBuf,
    /// Grows and shrinks mid-run as this says (see the module's notes).
    pub elastic: Option<Elastic>,
}

impl Processes {
    pub fn new(cluster: ClusterConfig, exe: PathBuf) -> Self {
        Self {
            cluster,
            exe,
            elastic: None,
        }
    }

    /// Runs start with the scaling's first count and resize as it says; members leave
    /// gracefully (a kill is refused: the TCP cluster cannot hand a dead worker's state on).
    pub fn elastic(mut self, scaling: Scaling, leave: Leave) -> Result<Self> {
        ensure!(
            leave == Leave::Graceful,
            "--leave {leave}: the TCP cluster's members leave gracefully (a shrink hands their \
             partitions' state over); a killed worker's state dies with it and the cluster \
             stops. Kill members of a broker group (--cluster redis://…, nats://…, kafka://…)"
        );
        self.cluster.workers = scaling.start();
        self.elastic = Some(Elastic::new(scaling, leave));
        Ok(self)
    }
}

impl Engine for Processes {
    fn workers(&self) -> usize {
        self.cluster.workers
    }

    fn describe(&self) -> String {
        format!("{} process(es)", self.cluster.workers)
    }

    fn elastic(&self) -> Option<&Elastic> {
        self.elastic.as_ref()
    }

    fn run(&self, load: &Load, live: &Arc<Live>, stop: &Shutdown) -> Result<RunFigures> {
        ensure!(
            !matches!(load.workload, Workload::Random { .. }),
            "--cluster processes needs nonces or votes: workers find the key inside the payload"
        );
        ensure!(
            self.cluster.step != Step::Sequential,
            "a sequential run has no cluster"
        );
        let checked = self.elastic.is_some() && self.cluster.step == Step::Partitioned;
        let listener = TcpListener::bind("127.0.0.1:0").context("binding the bench's sink")?;
        let sink = listener.local_addr()?.to_string();
        // Results report to the bench's Live as they arrive: latencies and items out, live.
        let receiver = Arc::new(Receiver::with_live(
            ReceiverConfig {
                framing: ReceiveFraming::Plumbline,
                max_frame: plumbline_core::frame::DEFAULT_MAX_FRAME,
                print: false,
                throttle: None,
                track_results: true,
                continuity: checked,
                // Its own workers, on loopback: no cap, no deadline.
                max_connections: usize::MAX,
                intake: None,
                clock_offset_ns: 0,
            },
            live.clone(),
        ));
        spawn_sink(listener, receiver.clone());
        let common = common_args(&self.cluster, &sink, checked);
        let common: Vec<&str> = common.iter().map(String::as_str).collect();
        let formed = self.cluster.workers;
        // The initializer's control and external addresses, once it has bound them.
        let bound: OnceLock<(String, String)> = OnceLock::new();
        let members = Members::start(formed, GRACE, |index, _| {
            start_worker(&self.exe, &common, (index, formed), &bound)
        })?;
        let (_, external) = bound.get().context("the initializer's addresses")?.clone();
        let members = members.with_farewell(Farewell::Shrink {
            external: external.clone(),
            name: worker_name,
        });
        let (source, names) = members.oldest(|init| {
            init.wait_announced("the cluster's source address", |event| match event {
                Announcement::ClusterReady {
                    sources, workers, ..
                } => Some((sources.clone(), workers.clone())),
                _ => None,
            })
        })?;

        let send_plan = load.send_plan();
        let connection = plumbline_transport::tcp::connect(&source, SETTLE)?;
        // Stops the sender and the wait when the user does or a worker dies.
        let halt = Shutdown::new();
        let watching = AtomicBool::new(true);
        let mut scaler = self.elastic.as_ref().map(Elastic::scaler);
        let started = Instant::now();
        let (tally, errors, death) = std::thread::scope(|scope| {
            let watcher = scope.spawn(|| {
                members.watch(
                    scaler.as_mut(),
                    Leave::Graceful,
                    (live, started),
                    (stop, &halt, &watching),
                )
            });
            let (tally, errors) = sender::send(&send_plan, vec![connection], &halt, live);
            while receiver.frames() < tally.sent && !halt.requested() {
                if receiver.idle() > SETTLE {
                    break;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            watching.store(false, Ordering::Relaxed);
            let death = watcher.join().expect("the watcher does not panic");
            (tally, errors, death)
        });
        if let (Some(elastic), Some(scaler)) = (&self.elastic, &scaler) {
            elastic.ran(members.changes(), scaler);
            elastic.migrated(members.oldest(|init| Ok(migrations(init, started)))?);
        }
        if let Some(dead) = death {
            bail!("{dead}");
        }
        if let Some(error) = errors.into_iter().next() {
            bail!("sending to the cluster: {error}");
        }
        // The wall counts from the schedule's origin, as the threads engine's does from its
        // start line: connecting and building the generator are set-up, like the cluster's
        // formation.
        let (sent, start) = (tally.sent, tally.origin);
        let wall = receiver
            .last_arrival()
            .map_or(Duration::ZERO, |last| last.saturating_duration_since(start));
        shutdown_cluster(&external)?;
        let done = members.oldest(|init| {
            init.wait_announced("its per-worker figures", |event| match event {
                Announcement::ClusterDone { workers } => Some(workers.clone()),
                _ => None,
            })
        })?;
        members.each(|worker| worker.wait_exit(SETTLE))?;
        members.stop_all()?;
        let summary = receiver.summary(Some(sent));
        Ok(RunFigures {
            per_worker: match self.elastic {
                // Every worker that ever took part, in the order they joined.
                Some(_) => done.iter().map(|w| w.items).collect(),
                None => per_worker(&names, &done),
            },
            final_state: (self.cluster.step == Step::Partitioned)
                .then(|| state_of(self.cluster.app, &receiver.results())),
            ..RunFigures::received(wall, sent, summary, stop.requested())
        })
    }
}

/// The migrations the initializer announced as settled, timed from `start`.
fn migrations(init: &Proc, start: Instant) -> Vec<Migration> {
    init.announcements()
        .into_iter()
        .filter_map(|(at, event)| match event {
            Announcement::ClusterChanged {
                workers,
                moved,
                took_s,
                longest_pause_s,
            } => Some(Migration {
                at: at.saturating_duration_since(start),
                workers: workers.len(),
                moved,
                took: Duration::try_from_secs_f64(took_s).unwrap_or_default(),
                longest_hold: Duration::try_from_secs_f64(longest_pause_s).unwrap_or_default(),
            }),
            _ => None,
        })
        .collect()
}

/// The worker name of copy `index`: the initializer's own, then `w2`, `w3`, … (never reused,
/// so a joiner after a shrink is a new name).
fn worker_name(index: usize) -> String {
    match index {
        0 => "initializer".into(),
        _ => format!("w{}", index + 1),
    }
}

/// What every worker of the cluster is started with.
fn common_args(cluster: &ClusterConfig, sink: &str, checked: bool) -> Vec<String> {
    let app = match cluster.app {
        App::Votes => "votes",
        App::Count => "sleepy",
    };
    let mut args: Vec<String> = [
        "worker",
        "--app",
        app,
        "--delay",
        &plumbline_core::duration::Human(cluster.delay).to_string(),
        "--work",
        &cluster.work.to_string(),
        "--partitions",
        &cluster.partitions.to_string(),
        "--out",
        sink,
    ]
    .map(String::from)
    .to_vec();
    if cluster.step == Step::Balanced {
        args.push("--balanced".into());
    }
    if checked && cluster.app == App::Votes {
        // A vote total moves by more than one per item: its version is its count.
        args.push("--result-versions".into());
    }
    args
}

/// Starts copy `index` of a cluster formed by `formed` workers: the initializer (which binds
/// its ports, told in `bound`), a joiner of the formation, or, after it, a `--join-running`
/// one.
fn start_worker(
    exe: &Path,
    common: &[&str],
    (index, formed): (usize, usize),
    bound: &OnceLock<(String, String)>,
) -> Result<Proc> {
    let name = worker_name(index);
    if index == 0 {
        let count = formed.to_string();
        let mut args = common.to_vec();
        args.extend([
            "--name",
            &name,
            "--in",
            "127.0.0.1:0",
            "--control",
            "127.0.0.1:0",
            "--data",
            "127.0.0.1:0",
            "--external",
            "127.0.0.1:0",
            "--cluster-initializer",
            "--worker-count",
            &count,
        ]);
        let init = Proc::start_announcing(exe, &args)?;
        let addresses = init.wait_announced("its control address", |event| match event {
            Announcement::ClusterListening {
                control,
                external: Some(external),
            } => Some((control.clone(), external.clone())),
            _ => None,
        })?;
        let _ = bound.set(addresses);
        return Ok(init);
    }
    let (control, _) = bound.get().context("the initializer starts first")?;
    let mut args = common.to_vec();
    args.extend(["--control", control, "--name", &name]);
    if index >= formed {
        args.push("--join-running");
    }
    Proc::start(exe, &args)
}

/// Accepts the workers' result connections and serves each on its own thread.
fn spawn_sink(listener: TcpListener, receiver: Arc<Receiver>) {
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let receiver = receiver.clone();
            std::thread::spawn(move || receiver.serve(stream, "worker"));
        }
    });
}

fn shutdown_cluster(external: &str) -> Result<()> {
    use plumbline_worker::node::wire::{Control, ControlReader};
    let stream =
        std::net::TcpStream::connect(external).context("asking the cluster to shut down")?;
    Control::Shutdown { token: None }.send(&mut &stream)?;
    match ControlReader::new(&stream).recv() {
        Ok(Control::Reply { ok: true, .. }) => Ok(()),
        _ => bail!("the cluster refused to shut down"),
    }
}

/// Items per worker in the cluster's order (the initializer first); a worker missing from the
/// closing figures did none.
fn per_worker(names: &[String], done: &[WorkerStats]) -> Vec<u64> {
    names
        .iter()
        .map(|name| done.iter().find(|w| w.name == *name).map_or(0, |w| w.items))
        .collect()
}

/// Results' labels back to the plan's state keys: letters for votes, partitions for counts.
fn state_of(app: App, results: &BTreeMap<String, u64>) -> BTreeMap<u32, u64> {
    results
        .iter()
        .filter_map(|(label, &value)| {
            let key = match app {
                App::Votes => u32::from(*label.as_bytes().first()?),
                App::Count => label.parse().ok()?,
            };
            Some((key, value))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_worker_counts_follow_the_cluster_order_by_name_and_a_silent_worker_did_none() {
        let names = ["initializer", "w2", "w3"].map(String::from);
        let done = [("w2", 26), ("initializer", 27)].map(|(name, items)| WorkerStats {
            name: name.into(),
            items,
            ..WorkerStats::default()
        });
        assert_eq!(per_worker(&names, &done), [27, 26, 0]);
    }
}
