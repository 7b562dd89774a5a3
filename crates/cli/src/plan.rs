//! The one place that turns what the user asked for into a validated bench plan.
//!
//! A preset (built-in or a TOML file) supplies every value; flags override them; then every value
//! is checked with a message naming it, and everything derivable is derived here, once: the run
//! matrix, the partition map's load per worker under the actual keys, each run's ideal time, and
//! the final state a correct run must end in. Running the plan is `bench.rs`'s job.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use plumbline_core::duration::parse_duration;
use plumbline_engine::external::External;
use plumbline_engine::pipeline::{self, Pipeline};
use plumbline_engine::processes::Processes;
use plumbline_engine::threads::Threads;
use plumbline_engine::{Engine, EngineKind, Load};
use plumbline_load::schedule::parse_rate;
use plumbline_load::{Generator, KeyDist, Workload};
use plumbline_measure::ideal::{even_split, ideal, Ideal, IdealInput};
use plumbline_worker::app::PartitionState;
use plumbline_worker::{App, ClusterConfig, PartitionMap, Step, Work};
use serde::Deserialize;

use crate::args::{BenchArgs, MatrixArgs};

/// The built-in presets, by name.
pub const PRESETS: [(&str, &str); 5] = [
    ("scaling", include_str!("../../../presets/scaling.toml")),
    ("alphabet", include_str!("../../../presets/alphabet.toml")),
    (
        "alphabet-hot",
        include_str!("../../../presets/alphabet-hot.toml"),
    ),
    (
        "sequential",
        include_str!("../../../presets/sequential.toml"),
    ),
    (
        "throughput",
        include_str!("../../../presets/throughput.toml"),
    ),
];

/// Most worker threads one run may start.
const MAX_WORKERS: usize = 4096;
/// Most items one run may send: the sink's loss bitmap takes items / 8 bytes (125 MB here).
const MAX_ITEMS: u64 = 1_000_000_000;
/// Largest capacity of one queue (crossbeam reserves every slot up front).
const MAX_CAPACITY: usize = 65_536;
/// Most bytes the queues of one run may hold at once, slots and payloads together.
const MAX_QUEUED_BYTES: u64 = 1 << 30;
/// Largest preset or experiment file read.
const MAX_PRESET_BYTES: u64 = 64 * 1024;

/// A preset as written in TOML; fields it leaves out take these defaults.
#[derive(Clone, Debug, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Preset {
    pub description: String,
    pub workload: String,
    pub size: usize,
    pub partitions: u32,
    pub letters: String,
    pub keys: String,
    pub items: Vec<u64>,
    pub delay: Vec<String>,
    pub workers: Vec<usize>,
    pub work: Vec<String>,
    pub step: Vec<String>,
    pub seed: u64,
    pub capacity: usize,
    /// Items per second sent into the cluster ("max": all due at the start, a batch).
    pub rate: String,
    /// Where workers run: threads, processes, or both to compare.
    pub cluster: Vec<String>,
}

impl Default for Preset {
    fn default() -> Self {
        Self {
            description: String::new(),
            workload: "nonces".into(),
            size: 1024,
            partitions: 60,
            letters: plumbline_load::workload::ALPHABET.into(),
            keys: "uniform".into(),
            items: vec![1000],
            delay: vec!["10ms".into()],
            workers: vec![1],
            work: vec!["sleep".into()],
            step: vec!["balanced".into()],
            seed: 7,
            capacity: 1024,
            rate: "max".into(),
            cluster: vec!["threads".into()],
        }
    }
}

impl Preset {
    /// A built-in preset by name, or a TOML file by path.
    pub fn load(name: &str) -> Result<Self> {
        let (source, text) = match PRESETS.iter().find(|(n, _)| *n == name) {
            Some((_, text)) => (format!("built-in preset '{name}'"), text.to_string()),
            None if Path::new(name).exists() => (
                format!("preset file {name}"),
                read_bounded(Path::new(name), "preset")?,
            ),
            None => bail!(
                "no preset '{name}': use one of {} or a path to a TOML file",
                PRESETS.map(|(n, _)| n).join(", ")
            ),
        };
        toml::from_str(&text).with_context(|| format!("{source} is not a valid preset"))
    }
}

/// Reads a small TOML file (a preset, an experiment file): a regular file of at most
/// [`MAX_PRESET_BYTES`]; `what` names it in errors.
pub fn read_bounded(path: &Path, what: &str) -> Result<String> {
    let meta =
        std::fs::metadata(path).with_context(|| format!("reading {what} {}", path.display()))?;
    ensure!(
        meta.is_file(),
        "{what} {} is not a regular file",
        path.display()
    );
    ensure!(
        meta.len() <= MAX_PRESET_BYTES,
        "{what} {} is {} bytes; a {what} is at most {MAX_PRESET_BYTES}",
        path.display(),
        meta.len()
    );
    std::fs::read_to_string(path).with_context(|| format!("reading {what} {}", path.display()))
}

/// Whether `name` is a built-in preset's (the pipeline table included), not a file's path.
pub fn built_in(name: &str) -> bool {
    name == "pipeline" || PRESETS.iter().any(|(n, _)| *n == name)
}

/// One run of the matrix, ready to execute.
#[derive(Clone, Debug)]
pub struct RunPlan {
    pub cluster: ClusterConfig,
    pub items: u64,
    pub ideal: Ideal,
    /// The final state a correct run ends in (stateful steps only).
    pub expected_state: Option<BTreeMap<u32, u64>>,
    /// Where its workers run.
    pub engine: EngineKind,
}

/// A validated bench.
#[derive(Clone, Debug)]
pub struct BenchPlan {
    pub preset: String,
    pub workload: Workload,
    pub keys: KeyDist,
    pub seed: u64,
    /// Items per second into the cluster; `None`: a batch, every item due at the start.
    pub rate: Option<f64>,
    pub runs: Vec<RunPlan>,
    /// The preset with every flag applied, as the report's reproducibility metadata.
    pub resolved: serde_json::Value,
}

/// What a command sets about its runs beyond the matrix: `bench` takes all three from its
/// flags; `capacity` its worker counts, and a batch of its own to estimate the ideal from.
#[derive(Clone, Debug, Default)]
pub struct RunShape {
    pub items: Option<Vec<u64>>,
    pub workers: Option<Vec<usize>>,
    pub rate: Option<String>,
}

impl RunShape {
    pub fn of(args: &BenchArgs) -> Self {
        Self {
            items: args.items.clone(),
            workers: args.workers.clone(),
            rate: args.rate.clone(),
        }
    }
}

impl BenchPlan {
    /// Merges `args` and `shape` over the preset, validates, and derives every run.
    pub fn build(args: &MatrixArgs, shape: &RunShape, cores: usize) -> Result<Self> {
        let mut p = Preset::load(&args.preset)?;
        macro_rules! take {
            ($from:ident: $($field:ident),*) => {
                $( if let Some(v) = &$from.$field { p.$field = v.clone(); } )*
            };
        }
        take!(args: work, step, keys, workload, size, letters, partitions, capacity, seed, cluster);
        take!(shape: items, workers, rate);
        let kinds: Vec<EngineKind> = p
            .cluster
            .iter()
            .map(|c| c.parse().map_err(|e| anyhow::anyhow!("--cluster: {e}")))
            .collect::<Result<_>>()?;
        ensure!(!kinds.is_empty(), "--cluster needs a value");
        let rate = parse_rate(&p.rate).context("--rate")?;
        let delays: Vec<Duration> = match &args.delay {
            Some(d) => d.clone(),
            None => p
                .delay
                .iter()
                .map(|d| parse_duration(d).with_context(|| format!("preset delay {d:?}")))
                .collect::<Result<_>>()?,
        };

        ensure!(!p.items.is_empty(), "--items needs at least one value");
        ensure!(!delays.is_empty(), "--delay needs at least one value");
        ensure!(!p.workers.is_empty(), "--workers needs at least one value");
        for &items in &p.items {
            ensure!(items > 0, "--items {items}: a run needs at least 1 item");
            ensure!(
                items <= MAX_ITEMS,
                "--items {items}: at most {MAX_ITEMS} items per run"
            );
        }
        for &workers in &p.workers {
            ensure!(
                workers > 0,
                "--workers {workers}: a run needs at least 1 worker"
            );
            ensure!(
                workers <= MAX_WORKERS,
                "--workers {workers}: at most {MAX_WORKERS} worker threads per run"
            );
        }
        ensure!(
            (1..=MAX_CAPACITY).contains(&p.capacity),
            "--capacity {}: a queue holds between 1 and {MAX_CAPACITY} items",
            p.capacity
        );
        let works: Vec<Work> = parse_all(&p.work, "--work")?;
        let steps: Vec<Step> = p
            .step
            .iter()
            .map(|s| s.parse::<Step>().map_err(anyhow::Error::msg))
            .collect::<Result<_>>()
            .context("--step")?;
        ensure!(
            !works.is_empty() && !steps.is_empty(),
            "--work and --step need a value"
        );
        let keys: KeyDist = p.keys.parse().context("--keys")?;
        let (workload, app) = match p.workload.as_str() {
            "nonces" => (
                Workload::Nonces {
                    size: p.size,
                    partitions: p.partitions,
                },
                App::Count,
            ),
            "votes" => (Workload::votes(&p.letters)?, App::Votes),
            "random" => (
                Workload::Random {
                    size: p.size,
                    keys: p.partitions,
                },
                App::Count,
            ),
            other => bail!("--workload {other:?}: use nonces, votes or random"),
        };
        workload.validate(keys)?;
        if kinds.contains(&EngineKind::Processes) {
            ensure!(
                !matches!(workload, Workload::Random { .. }),
                "--cluster processes needs nonces or votes: worker processes find each key \
                 inside its payload"
            );
        }
        if kinds.contains(&EngineKind::Pipeline) {
            steps
                .iter()
                .try_for_each(|&step| pipeline::check_step(step))?;
        }
        let most_workers = p.workers.iter().copied().max().unwrap_or(1);
        let queued = queued_bytes(p.capacity, most_workers, workload.payload_size());
        ensure!(
            queued <= MAX_QUEUED_BYTES,
            "--capacity {} with {most_workers} workers and {}-byte payloads: the queues could \
             hold {queued} bytes, more than {MAX_QUEUED_BYTES}; lower --capacity",
            p.capacity,
            workload.payload_size()
        );

        let worker_counts: BTreeSet<usize> = p.workers.iter().copied().collect();
        let mut runs = Vec::new();
        for &items in &p.items {
            let reference =
                Reference::compute(&workload, keys, p.seed, items, app, &worker_counts)?;
            for &delay in &delays {
                for &work in &works {
                    for (&step, engine) in
                        steps.iter().flat_map(|s| kinds.iter().map(move |k| (s, k)))
                    {
                        // A plain loop has no cluster: it runs once, whatever --cluster says.
                        if step == Step::Sequential && *engine != kinds[0] {
                            continue;
                        }
                        let counts: Vec<usize> = if step == Step::Sequential {
                            vec![1]
                        } else {
                            p.workers.clone()
                        };
                        for workers in counts {
                            let cluster = ClusterConfig {
                                workers,
                                step,
                                app,
                                partitions: workload.partitions(),
                                work,
                                delay,
                                capacity: p.capacity,
                            };
                            let last_due =
                                rate.map(|r| Duration::from_secs_f64((items - 1) as f64 / r));
                            let ideal = run_ideal(
                                &cluster,
                                &planned(&cluster, items, &reference.load),
                                cores,
                                last_due,
                            );
                            runs.push(RunPlan {
                                cluster,
                                items,
                                ideal,
                                expected_state: (step != Step::Balanced)
                                    .then(|| reference.state.clone()),
                                engine: if step == Step::Sequential {
                                    EngineKind::Threads
                                } else {
                                    engine.clone()
                                },
                            });
                        }
                    }
                }
            }
        }
        p.delay = delays
            .iter()
            .map(|d| plumbline_core::duration::Human(*d).to_string())
            .collect();
        Ok(Self {
            preset: args.preset.clone(),
            workload,
            keys,
            seed: p.seed,
            rate,
            runs,
            resolved: serde_json::to_value(&p).context("recording the resolved preset")?,
        })
    }

    /// The ideal of `run` had it sent the first `items` messages of the load as a batch: at
    /// best, a capacity trial of that many items is done as fast as its own items' busiest
    /// owner (same seed, so the same keys as the trial sends).
    pub fn batch_ideal_of(&self, run: &RunPlan, items: u64, cores: usize) -> Result<Ideal> {
        let workers = run.cluster.workers;
        let mut owners = OwnerLoad::new(self.workload.partitions(), [workers]);
        if run.cluster.step == Step::Partitioned {
            let mut generator = Generator::new(self.workload.clone(), self.keys, self.seed, items)?;
            for seq in 0..items {
                owners.add(generator.parts(seq).0);
            }
        }
        Ok(run_ideal(
            &run.cluster,
            &planned(&run.cluster, items, &owners.load),
            cores,
            None,
        ))
    }

    /// What a run of `items` sends (the same messages for every run with that item count).
    pub fn load(&self, items: u64) -> Load {
        Load {
            workload: self.workload.clone(),
            keys: self.keys,
            seed: self.seed,
            items,
            shape: plumbline_load::Shape::at(self.rate),
        }
    }

    /// The engine that runs `run`: `exe` is the plumbline binary, for worker processes.
    pub fn engine(run: &RunPlan, exe: &Path) -> Box<dyn Engine> {
        match &run.engine {
            EngineKind::Threads => Box::new(Threads(run.cluster.clone())),
            EngineKind::Processes => {
                Box::new(Processes::new(run.cluster.clone(), exe.to_path_buf()))
            }
            EngineKind::Pipeline => Box::new(Pipeline {
                cluster: run.cluster.clone(),
                exe: exe.to_path_buf(),
                threads: 1,
            }),
            EngineKind::Group(url) => Box::new(External::group(url, &run.cluster, exe)),
        }
    }

    /// How the keys were chosen, for reports.
    pub fn keys_label(&self) -> String {
        match &self.workload {
            Workload::Votes { letters } => format!("letters {}", String::from_utf8_lossy(letters)),
            _ => self.keys.to_string(),
        }
    }
}

/// Worst case of what a run's queues hold: a queue per worker (partitioned) full of messages,
/// and the results queue full of deliveries.
fn queued_bytes(capacity: usize, workers: usize, payload: usize) -> u64 {
    let message = (std::mem::size_of::<plumbline_core::Message>() + payload) as u64;
    let delivery = std::mem::size_of::<plumbline_worker::sink::Delivery>() as u64;
    let capacity = capacity as u64;
    workers as u64 * capacity * message
        + capacity * plumbline_worker::cluster::RESULTS_PER_SLOT as u64 * delivery
}

fn parse_all<T: std::str::FromStr>(values: &[String], flag: &str) -> Result<Vec<T>>
where
    T::Err: std::error::Error + Send + Sync + 'static,
{
    values
        .iter()
        .map(|v| v.parse::<T>().with_context(|| flag.to_string()))
        .collect()
}

/// Items per worker: partitioned from the actual keys (`owned`, by worker count), balanced the
/// even split a perfect balancer would reach.
fn planned(cluster: &ClusterConfig, items: u64, owned: &BTreeMap<usize, Vec<u64>>) -> Vec<u64> {
    match cluster.step {
        Step::Partitioned => owned[&cluster.workers].clone(),
        Step::Balanced => even_split(items, cluster.workers),
        Step::Sequential => vec![items],
    }
}

/// The ideal of a run of `cluster` whose workers get `planned` items each.
fn run_ideal(
    cluster: &ClusterConfig,
    planned: &[u64],
    cores: usize,
    last_due: Option<Duration>,
) -> Ideal {
    ideal(&IdealInput {
        per_worker: planned,
        delay: cluster.delay,
        cpu_per_item: cluster.work.cpu_time(cluster.delay),
        cores,
        partitions: (cluster.step == Step::Partitioned).then_some(cluster.partitions),
        last_due,
    })
}

/// Items per worker under the partition map, for each worker count, as keys are added.
struct OwnerLoad {
    maps: Vec<(usize, PartitionMap)>,
    load: BTreeMap<usize, Vec<u64>>,
}

impl OwnerLoad {
    fn new(partitions: u32, worker_counts: impl IntoIterator<Item = usize>) -> Self {
        let maps: Vec<(usize, PartitionMap)> = worker_counts
            .into_iter()
            .map(|w| (w, PartitionMap::round_robin(partitions, w)))
            .collect();
        let load = maps.iter().map(|&(w, _)| (w, vec![0; w])).collect();
        Self { maps, load }
    }

    fn add(&mut self, key: u32) {
        for (w, map) in &self.maps {
            self.load.get_mut(w).expect("one entry per count")[map.owner_of_key(key)] += 1;
        }
    }
}

/// What replaying a run's load tells us before running it.
struct Reference {
    /// Items per worker under the partition map, for every worker count of the matrix.
    load: BTreeMap<usize, Vec<u64>>,
    /// The final state of a sequential, lossless application of the load.
    state: BTreeMap<u32, u64>,
}

impl Reference {
    fn compute(
        workload: &Workload,
        keys: KeyDist,
        seed: u64,
        items: u64,
        app: App,
        worker_counts: &BTreeSet<usize>,
    ) -> Result<Self> {
        let mut owners = OwnerLoad::new(workload.partitions(), worker_counts.iter().copied());
        let mut state = PartitionState::default();
        let mut last = BTreeMap::new();
        let single = PartitionMap::round_robin(workload.partitions(), 1);
        for message in Generator::new(workload.clone(), keys, seed, items)? {
            owners.add(message.key);
            let output = app
                .apply(&mut state, single.partition_of(message.key), &message)
                .context("the generated load does not fit its application")?;
            if let Some((key, value)) = output.state() {
                last.insert(key, value);
            }
        }
        Ok(Self {
            load: owners.load,
            state: last,
        })
    }
}
