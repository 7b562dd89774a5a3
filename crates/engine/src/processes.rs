//! Worker processes as an engine (`--cluster processes`): one run measured the way the
//! threads run is, so one table compares the two.
//!
//! It starts `plumbline worker` processes (an initializer and `workers - 1` joiners) on free
//! loopback ports, receives their results in-process with the network receiver, sends the
//! run's generated load with the open-loop sender (plumbline framing, so latency counts from
//! each item's intended send time), shuts the cluster down, and takes per-worker counts from
//! the initializer's closing announcement (`--announce`: its bound addresses and figures as
//! typed events, never its log lines). The per-item work timing stays inside the workers, so `work_s`
//! is empty for process runs.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

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
use crate::{Engine, Load, RunFigures};

/// An initializer and `workers - 1` joiners, each a `plumbline worker` process started from
/// `exe` (the plumbline binary).
#[derive(Clone, Debug)]
pub struct Processes {
    pub cluster: ClusterConfig,
    pub exe: PathBuf,
}

impl Engine for Processes {
    fn workers(&self) -> usize {
        self.cluster.workers
    }

    fn describe(&self) -> String {
        format!("{} process(es)", self.cluster.workers)
    }

    fn run(&self, load: &Load, live: &Arc<Live>, stop: &Shutdown) -> Result<RunFigures> {
        run(&self.exe, &self.cluster, load, stop, live)
    }
}

fn run(
    exe: &Path,
    cluster: &ClusterConfig,
    load: &Load,
    stop: &Shutdown,
    live: &Arc<Live>,
) -> Result<RunFigures> {
    ensure!(
        !matches!(load.workload, Workload::Random { .. }),
        "--cluster processes needs nonces or votes: workers find the key inside the payload"
    );
    ensure!(
        cluster.step != Step::Sequential,
        "a sequential run has no cluster"
    );
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
            continuity: false,
            // Its own workers, on loopback: no cap, no deadline.
            max_connections: usize::MAX,
            intake: None,
        },
        live.clone(),
    ));
    spawn_sink(listener, receiver.clone());

    let app = match cluster.app {
        App::Votes => "votes",
        App::Count => "sleepy",
    };
    let (delay, work, partitions) = (
        plumbline_core::duration::Human(cluster.delay).to_string(),
        cluster.work.to_string(),
        cluster.partitions.to_string(),
    );
    let mut common = vec![
        "worker",
        "--app",
        app,
        "--delay",
        &delay,
        "--work",
        &work,
        "--partitions",
        &partitions,
        "--out",
        &sink,
    ];
    if cluster.step == Step::Balanced {
        common.push("--balanced");
    }
    let count = cluster.workers.to_string();
    let mut init_args = common.clone();
    init_args.extend([
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
    let init = Proc::start_announcing(exe, &init_args)?;
    let (control, external) = init.wait_announced("its control address", |event| match event {
        Announcement::ClusterListening {
            control,
            external: Some(external),
        } => Some((control.clone(), external.clone())),
        _ => None,
    })?;
    let mut joiners = Vec::new();
    for w in 1..cluster.workers {
        let name = format!("w{}", w + 1);
        let mut args = common.clone();
        args.extend(["--control", &control, "--name", &name]);
        joiners.push(Proc::start(exe, &args)?);
    }
    let (source, names) =
        init.wait_announced("the cluster's source address", |event| match event {
            Announcement::ClusterReady {
                sources, workers, ..
            } => Some((sources.clone(), workers.clone())),
            _ => None,
        })?;

    let send_plan = load.send_plan();
    let connection = plumbline_transport::tcp::connect(&source, SETTLE)?;
    let (tally, errors) = sender::send(&send_plan, vec![connection], stop, live);
    if let Some(error) = errors.into_iter().next() {
        bail!("sending to the cluster: {error}");
    }
    // The wall counts from the schedule's origin, as the threads engine's does from its start
    // line: connecting and building the generator are set-up, like the cluster's formation.
    let (sent, start) = (tally.sent, tally.origin);
    while receiver.frames() < sent && !stop.requested() {
        if receiver.idle() > SETTLE {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let wall = receiver
        .last_arrival()
        .map_or(Duration::ZERO, |last| last.saturating_duration_since(start));
    shutdown_cluster(&external)?;
    let done = init.wait_announced("its per-worker figures", |event| match event {
        Announcement::ClusterDone { workers } => Some(workers.clone()),
        _ => None,
    })?;
    init.wait_exit(SETTLE)?;
    for joiner in &joiners {
        joiner.wait_exit(SETTLE)?;
    }
    Ok(RunFigures {
        per_worker: per_worker(&names, &done),
        final_state: (cluster.step == Step::Partitioned)
            .then(|| state_of(cluster.app, &receiver.results())),
        ..RunFigures::received(wall, sent, receiver.summary(Some(sent)), stop.requested())
    })
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
