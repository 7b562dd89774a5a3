//! What the user typed: clap structs for every subcommand, nothing validated beyond syntax.
//!
//! Turning these into a runnable plan (merging a preset, checking ranges, deriving ideals) is
//! `plan.rs`'s job, so the same rules apply whether a value came from a flag or a preset file.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use plumbline_core::duration::parse_duration;
use plumbline_core::secret::Secret;
use plumbline_engine::members::Leave;
use plumbline_load::Share;
use plumbline_measure::record::Command as Recorded;
use plumbline_measure::threshold::Threshold;

const EXAMPLES: &str = "\
Examples:
  plumbline bench                                   # 1000 x 10 ms tasks on 1, 2, 10 workers
  plumbline bench --preset alphabet --delay 20ms    # seed 002's votes, scaled down
  plumbline bench --preset alphabet-hot             # one hot key: no speedup, and why
  plumbline bench --work spin --workers 1,2,10      # CPU-bound items against the machine's cores
  plumbline bench --preset throughput --json out.json
  plumbline bench --rate 150/s --items 1500 --workers 1,2     # paced: latency vs load
  plumbline bench --preset alphabet --delay 50ms --cluster threads,processes
  plumbline bench --preset pipeline                 # seed 001's table: tasks x workers x threads
  plumbline capacity --workers 1,2,4,8               # the highest rate each count sustains
  plumbline run examples/002-alphabet.toml --workers 2   # an experiment file; flags win
  plumbline bench --ui 127.0.0.1:4000               # watch it live in a browser (and /metrics)
  plumbline report plumbline-reports/bench-20261123-104938     # re-render a report folder
  plumbline compare base-report new-report          # exits 99 when overhead or p99 got worse
  plumbline bench --threshold 'p99<20ms' --threshold 'overhead<1%'   # exit 99 on a breach
  plumbline gen votes -o fake_votes.msg             # the seed's 468-byte file
  plumbline gen nonces --count 1024 --size 1024 --seed 7 -o nonces.bin
  plumbline inspect fake_votes.msg --format votes

Exit codes:
  0    success
  1    an error, or a run failed its own checks (items lost, state wrong, a part died)
  2    a usage error (a flag, value or experiment file that cannot be read)
  99   a --threshold breached, or `compare` found a run worse than allowed
  130  interrupted (Ctrl-C or SIGTERM)";

#[derive(Debug, Parser)]
#[command(
    name = "plumbline",
    version,
    about = "Test the plumbing of a cluster's horizontal scaling with work of known cost",
    long_about = "plumbline sends keyed messages through N workers whose per-item cost is known \
                  exactly, and reports wall time against the ideal, overhead, speedup, \
                  efficiency, throughput and latency, so every second of plumbing shows.",
    after_help = EXAMPLES
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// Only results: warnings and errors on stderr, no progress bar (stdout is unchanged)
    #[arg(long, short, global = true)]
    pub quiet: bool,
    /// More log lines on stderr: -v debug, -vv trace (RUST_LOG, when set, wins over -v and -q)
    #[arg(long, short, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a scaling matrix (workers x delay x items x work x step) on the embedded local cluster
    #[command(after_help = EXAMPLES)]
    Bench(BenchArgs),
    /// Find the highest rate each worker count sustains (capacity) and the fewest workers for a
    /// load (demand)
    Capacity(CapacityArgs),
    /// Grow and shrink a broker consumer group, or the TCP cluster with its state, mid-run on a
    /// schedule or an emulated HPA: the pause, lag peak and recovery of each change, and what
    /// was lost or duplicated
    Elastic(ElasticArgs),
    /// Write a framed workload file in the seeds' formats (4-byte big-endian length + payload)
    #[command(after_help = GEN_EXAMPLES)]
    Gen(GenArgs),
    /// Decode a framed file and summarize (or print) its messages
    #[command(after_help = INSPECT_EXAMPLES)]
    Inspect(InspectArgs),
    /// Send messages open-loop on a schedule to TCP receivers (Giles-sender compatible flags)
    #[command(after_help = SEND_EXAMPLES)]
    Send(SendArgs),
    /// Receive frames on TCP, count them and measure latency and losses (the seeds' data_receiver)
    #[command(after_help = RECEIVE_EXAMPLES)]
    Receive(ReceiveArgs),
    /// Run one worker process of a cluster (Wallaroo's machida flags)
    #[command(after_help = WORKER_EXAMPLES)]
    Worker(WorkerArgs),
    /// Ask a cluster to finish what it has and exit (the seeds' cluster_shutdown)
    #[command(after_help = SHUTDOWN_EXAMPLES)]
    Shutdown(ShutdownArgs),
    /// Shrink a running cluster: a worker hands its partitions (and their state) to the others
    /// and leaves
    #[command(after_help = SHRINK_EXAMPLES)]
    Shrink(ShrinkArgs),
    /// Task pipelines (seed 001): a distributor, workers that ask for tasks, a collector that ACKs
    #[command(subcommand)]
    Pipeline(PipelineCommand),
    /// Stream scaling (seed 004, psbench): a generator, a broker stream, a dispatcher and compute
    /// workers; bulk data sent by value or by reference through a store
    #[command(after_help = STREAM_EXAMPLES)]
    Stream(StreamArgs),
    /// One compute process of `stream --executor process`, started by `stream` itself and fed
    /// over its stdin and stdout
    #[command(hide = true)]
    StreamCompute,
    /// Re-render a report folder (plots, runs.csv, index.html) from its run.json
    #[command(after_help = REPORT_EXAMPLES)]
    Report(ReportCmdArgs),
    /// Compare two report folders run by run; exit 99 when NEW is worse than allowed
    #[command(after_help = REPORT_EXAMPLES)]
    Compare(CompareArgs),
    /// Answer clock requests on UDP: the reference other hosts' `--clock-ref` measure their
    /// clock offset against, so latency across hosts is measured on one clock
    #[command(after_help = CLOCK_EXAMPLES)]
    Clock(ClockArgs),
    /// Merge report folders from several hosts into one: every host's rows, and rows they
    /// share merged (counts summed, latency histograms merged), timelines on wall-clock time
    #[command(after_help = MERGE_EXAMPLES)]
    Merge(MergeArgs),
    /// Print a shell's completion script for plumbline
    #[command(after_help = COMPLETIONS_EXAMPLES)]
    Completions(CompletionsArgs),
    /// Print plumbline's man page, or write one per command into a folder
    #[command(after_help = MAN_EXAMPLES)]
    Man(ManArgs),
    /// Run an experiment file: one TOML file naming a command and its flags; flags given after
    /// FILE replace the file's
    #[command(after_help = RUN_EXAMPLES)]
    Run(RunArgs),
}

const RUN_EXAMPLES: &str = "\
An experiment file names its command and gives that command's long flags as keys (kebab-case
or snake_case), with strings, numbers, booleans (switches) or arrays (several values):
  command = \"bench\"
  preset = \"alphabet\"
  delay = \"20ms\"
  workers = [1, 2]
  threshold = [\"overhead<100%\"]
Relative paths in it are relative to its folder. Examples:
  plumbline run examples/002-alphabet.toml
  plumbline run examples/002-alphabet.toml --workers 1,2,4 --json out.json
  plumbline run examples/004-stream.toml --stream-servers localhost:6380";

/// Flags of `run`. Its own --help, so that `run FILE --help` can show FILE's command's.
#[derive(Debug, Args)]
#[command(disable_help_flag = true)]
pub struct RunArgs {
    /// The experiment file (TOML)
    #[arg(value_hint = clap::ValueHint::FilePath, required_unless_present = "help")]
    pub file: Option<PathBuf>,
    /// The command's flags, each replacing the file's value of it (a flag that takes several
    /// values or repeats is replaced whole)
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "FLAGS"
    )]
    pub flags: Vec<std::ffi::OsString>,
    /// Print help; after FILE, its command's (the keys the file may hold)
    #[arg(short, long)]
    pub help: bool,
}

const REPORT_EXAMPLES: &str = "\
Examples:
  plumbline bench --report base                     # a report folder named base
  plumbline report base                             # re-render base/ from base/run.json
  plumbline report base --out /tmp/copy             # render it somewhere else
  plumbline report runs.json --out runs-report      # render a bench --json run record
  plumbline compare base new                        # gate: overhead +0.5 pp, p99 +10 % allowed
  plumbline compare base new --max-overhead-increase 1pp --max-p99-increase 25%
  plumbline compare base.json new.json              # two bench --json run records
  plumbline compare cap-base cap-new --max-capacity-drop 3%   # two capacity report folders";

/// Where a run's figures go besides the terminal: a report folder, a live page.
#[derive(Debug, Clone, Args)]
pub struct ReportArgs {
    /// Write a report folder: run.json, runs.csv, plots (SVG and PNG) and index.html
    #[arg(long, value_name = "DIR")]
    pub report: Option<PathBuf>,
    /// Serve a live page and Prometheus /metrics on ADDR while running (e.g. 127.0.0.1:4000;
    /// port 0 picks one and prints it)
    #[arg(long, value_name = "ADDR")]
    pub ui: Option<String>,
}

const CLOCK_EXAMPLES: &str = "\
Examples (the sender's host is the reference; the receiver on another host corrects to it):
  plumbline clock --listen 0.0.0.0:7123                                   # on host A
  plumbline send --host 10.0.0.2:7002 --gen nonces --rate 1000/s --duration 60s   # on host A
  plumbline receive --listen 0.0.0.0:7002 --clock-ref 10.0.0.1:7123       # on host B";

/// Flags of `clock`.
#[derive(Debug, Args)]
pub struct ClockArgs {
    /// UDP address to answer on (port 0 picks one and prints it)
    #[arg(long, default_value = "127.0.0.1:7123")]
    pub listen: String,
}

const MERGE_EXAMPLES: &str = "\
Examples (one receiver and two senders of one experiment, each on its own host):
  plumbline merge host-a/recv host-b/send host-c/send --out merged
  plumbline merge a/run.json b/run.json --out merged    # run records (--json) work too";

/// Flags of `merge`.
#[derive(Debug, Args)]
pub struct MergeArgs {
    /// Report folders (or their run.json, or a command's --json), one per host
    #[arg(required = true, num_args = 2..)]
    pub reports: Vec<PathBuf>,
    /// The folder to write the merged report into
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
}

/// Flags of `report`.
#[derive(Debug, Args)]
pub struct ReportCmdArgs {
    /// A report folder (holding run.json), or a run record file (`bench --json`) with --out
    pub dir: PathBuf,
    /// Render into this folder instead of DIR (run.json is copied along)
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
}

const COMPLETIONS_EXAMPLES: &str = "\
Examples:
  plumbline completions bash > /etc/bash_completion.d/plumbline
  plumbline completions zsh > \"${fpath[1]}/_plumbline\"
  plumbline completions fish > ~/.config/fish/completions/plumbline.fish";

const MAN_EXAMPLES: &str = "\
Examples:
  plumbline man | man -l -                      # read it now
  plumbline man --out /usr/local/share/man/man1 # plumbline.1, plumbline-bench.1, …";

/// Flags of `completions`.
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to complete in
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

/// Flags of `man`.
#[derive(Debug, Args)]
pub struct ManArgs {
    /// Write plumbline.1 and a page per command (plumbline-bench.1, …) into this folder
    /// instead of printing plumbline.1
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
}

/// Flags of `compare`.
#[derive(Debug, Args)]
pub struct CompareArgs {
    /// The baseline: a report folder, or a run record file (`bench --json`)
    pub base: PathBuf,
    /// The report folder or run record file to judge against it
    pub new: PathBuf,
    /// Fail when a run's overhead grew by more than this many percentage points
    #[arg(long, default_value = "0.5pp", value_parser = plumbline_report::compare::parse_pp)]
    pub max_overhead_increase: f64,
    /// Fail when a run's p99 latency grew by more than this percentage
    #[arg(long, default_value = "10%", value_parser = plumbline_report::compare::parse_pct)]
    pub max_p99_increase: f64,
    /// Fail when a worker count's capacity (`capacity` reports) fell by more than this
    #[arg(long, default_value = "5%", value_parser = plumbline_report::compare::parse_pct)]
    pub max_capacity_drop: f64,
}

const STREAM_EXAMPLES: &str = "\
Examples (seed 004's command as written; start redis-server first):
  plumbline stream --executor parsl --parsl-executor htex-local --parsl-max-workers 4 \\
      --stream-method default proxy --data-size-bytes 100000 1000000 10000000 \\
      --task-count 16 --task-sleep 1.0 \\
      --ps-connector redis --ps-host localhost --ps-port 6379 \\
      --stream redis --stream-servers localhost:6379 --csv-file stream.csv
  plumbline stream --executor parsl --parsl-executor thread --parsl-max-workers 4   # threads
  plumbline stream --executor process --max-workers 4          # compute workers as processes
  plumbline stream --stream kafka --stream-servers localhost:9092 --ps-connector file
  plumbline stream --stream nats --stream-servers localhost:4222 --stream-method proxy";

/// The broker `plumbline stream` streams through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StreamKind {
    /// Redis pub/sub (psbench's Redis stream): at-most-once, no backlog
    Redis,
    /// A Redis stream with a consumer group: at-least-once
    RedisStreams,
    /// A Kafka topic (builds with --features kafka)
    Kafka,
    /// NATS core
    Nats,
    /// A NATS JetStream work queue
    Jetstream,
}

/// psbench's `--executor`: what runs the compute tasks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Executor {
    /// Parsl, as --parsl-executor says
    Parsl,
    /// A thread pool: compute workers as threads
    Thread,
    /// A process pool: compute workers as processes
    Process,
    /// Globus Compute: refused (plumbline runs compute workers on this host)
    Globus,
}

/// psbench's `--parsl-executor`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ParslExecutor {
    /// Parsl's ThreadPoolExecutor: compute workers as threads
    Thread,
    /// Parsl's local HighThroughputExecutor: compute workers as processes
    HtexLocal,
}

/// How the generator hands data to the workers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StreamMethod {
    /// The data itself travels through the stream
    Default,
    /// The data goes to the store; the stream carries its key and size
    Proxy,
}

/// Where proxied data is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PsConnector {
    Redis,
    File,
}

/// Flags of `stream`, named as psbench's stream_scaling names them.
#[derive(Debug, Args)]
pub struct StreamArgs {
    /// Stream methods to run, each a set of experiments
    #[arg(long, value_enum, num_args = 1.., default_values_t = [StreamMethod::Default, StreamMethod::Proxy])]
    pub stream_method: Vec<StreamMethod>,
    /// Payload sizes to run
    #[arg(long, num_args = 1.., default_values_t = [100_000usize, 1_000_000, 10_000_000])]
    pub data_size_bytes: Vec<usize>,
    /// Items per experiment
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub task_count: u64,
    /// Seconds each compute task sleeps (e.g. 1.0, or 200ms)
    #[arg(long, default_value = "1.0", value_parser = parse_seconds)]
    pub task_sleep: Duration,
    /// Workers: one generator plus max-1 compute workers (psbench's --parsl-max-workers)
    #[arg(long, visible_aliases = ["parsl-max-workers", "thread-pool-max-workers",
          "process-pool-max-workers"], default_value_t = 4,
          value_parser = clap::value_parser!(u64).range(2..=1024))]
    pub max_workers: u64,
    /// psbench's task executor, run on this host: thread (compute workers as threads),
    /// process (as processes), parsl (as --parsl-executor says); globus is refused
    /// [default: thread]
    #[arg(long, value_enum)]
    pub executor: Option<Executor>,
    /// psbench's Parsl executor: thread (threads) or htex-local (worker processes fed over
    /// pipes, as a local HighThroughputExecutor's); implies --executor parsl
    #[arg(long, value_enum)]
    pub parsl_executor: Option<ParslExecutor>,
    /// psbench's Globus Compute endpoint: refused, as --executor globus is
    #[arg(long, value_name = "UUID")]
    pub globus_compute_endpoint: Option<String>,
    /// The broker to stream through
    #[arg(long, value_enum, default_value = "redis")]
    pub stream: StreamKind,
    /// The broker's host:port
    #[arg(long, default_value = "localhost:6379")]
    pub stream_servers: String,
    /// Where proxy mode stores data [default: redis when --stream is redis, else file]
    #[arg(long, value_enum)]
    pub ps_connector: Option<PsConnector>,
    /// The Redis store's host [default: the stream's]
    #[arg(long)]
    pub ps_host: Option<String>,
    /// The Redis store's port
    #[arg(long)]
    pub ps_port: Option<u16>,
    /// The file store's folder, left after the run [default: a fresh folder under the temp
    /// dir, removed after the run]
    #[arg(long)]
    pub ps_dir: Option<PathBuf>,
    /// Runs of each experiment
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=100))]
    pub repeat: u64,
    /// Append one row per run to this CSV file (header written when the file is new)
    #[arg(long)]
    pub csv_file: Option<PathBuf>,
    /// Write every run's figures as JSON
    #[arg(long)]
    pub json: Option<PathBuf>,
    #[command(flatten)]
    pub out: ReportArgs,
    /// Keep retrying the broker and the store this long
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub connect_timeout: Duration,
    /// No progress line (the global -q/--quiet, accepted after the command too)
    #[arg(from_global)]
    pub quiet: bool,
    /// Reach the stream and the Redis store over TLS only (implied by --tls-ca)
    #[arg(long)]
    pub tls: bool,
    #[command(flatten, next_help_heading = "Broker and store login")]
    pub login: LoginArgs,
    #[command(flatten)]
    pub limits: ThresholdArgs,
}

/// Seconds as psbench takes them (`1.0`), or a duration (`200ms`).
pub fn parse_seconds(text: &str) -> Result<Duration, String> {
    match text.parse::<f64>() {
        Ok(s) if s.is_finite() && (0.0..=3600.0).contains(&s) => Ok(Duration::from_secs_f64(s)),
        Ok(s) => Err(format!("{s} seconds: use 0 to 3600")),
        Err(_) => parse_duration(text).map_err(|e| e.to_string()),
    }
}

const PIPELINE_EXAMPLES: &str = "\
Examples (seed 001's single-threaded example: 100 tasks of 10 ms; start them in any order):
  plumbline pipeline collector
  plumbline pipeline distributor --task C:100 --delay 10ms
  plumbline pipeline worker --task-type C
Two task types, the second after the first (seed 001's dependencies example):
  plumbline pipeline distributor --task first:500 --task second:500:first --workers 2
  plumbline pipeline worker --task-type first
  plumbline pipeline worker --task-type second --threads 10
The whole table of seed 001, every role a process on loopback:
  plumbline bench --preset pipeline";

/// The roles of a task pipeline, each its own process.
#[derive(Debug, Subcommand)]
pub enum PipelineCommand {
    /// Hand tasks to workers that ask, until every task is ACKed; print the run's overhead
    #[command(after_help = PIPELINE_EXAMPLES)]
    Distributor(DistributorArgs),
    /// Ask the distributor for tasks, execute them, send results to the collector
    #[command(after_help = PIPELINE_EXAMPLES)]
    Worker(PipelineWorkerArgs),
    /// Receive results, ACK each to the distributor, report at the end
    #[command(after_help = PIPELINE_EXAMPLES)]
    Collector(CollectorArgs),
}

/// The seed's endpoints: workers on ipc://worker.ipc, results on 5558, ACKs on 5551.
pub const WORKER_ENDPOINT: &str = "ipc://worker.ipc";
pub const COLLECTOR_ENDPOINT: &str = "tcp://127.0.0.1:5558";
pub const COLLECTOR_ACK_ENDPOINT: &str = "tcp://127.0.0.1:5551";

#[derive(Debug, Args)]
pub struct DistributorArgs {
    /// Where workers connect (bound): tcp://host:port or ipc://path
    #[arg(long, default_value = WORKER_ENDPOINT)]
    pub endpoint: String,
    /// The collector's ACK endpoint (connected)
    #[arg(long, default_value = COLLECTOR_ACK_ENDPOINT)]
    pub collector_ack: String,
    /// A task type as TYPE:COUNT[:DEPENDENCY+DEPENDENCY…]; repeat for more types
    #[arg(long = "task", default_value = "C:100")]
    pub tasks: Vec<String>,
    /// Each task's workload (the descriptor's "workload")
    #[arg(long, default_value = "10ms", value_parser = parse_duration)]
    pub delay: Duration,
    /// How workers spend it: sleep, spin or hybrid[:F]
    #[arg(long, default_value = "sleep")]
    pub work: String,
    /// Workers (of all types) that must join before the first task goes out
    #[arg(long, default_value_t = 1)]
    pub workers: usize,
    /// Time from dispatch to ACK before a task goes out again
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub lease: Duration,
    /// Deliveries of a task before it goes to the failed list (counted when it ends a worker
    /// while running alone: tasks a dead worker held go out again one at a time)
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub max_deliver: u32,
    /// End the run with an error when the collector is unreachable this long
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub collector_timeout: Duration,
    /// End the run with an error when the workers have not all joined this long
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub join_timeout: Duration,
    /// Once running, end the run with an error (and its report) when a task type with work
    /// has had no worker this long
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub rejoin_timeout: Duration,
    /// Release tasks open-loop at this rate (e.g. 200/s; all types together, in id order):
    /// task k goes out no earlier than k / rate after the start, and its latency counts from
    /// then. max: every task at the start, as fast as the workers' credits allow
    #[arg(long, default_value = "max")]
    pub rate: String,
    /// Mark the N-th task of every type as poison: plumbline's worker crashes on it (testing)
    #[arg(long)]
    pub poison: Vec<u64>,
    /// The run's shared secret, as file:PATH or env:VAR (every role of the run is given the
    /// same): peers whose hello lacks it are refused and logged
    #[arg(long, value_name = "SOURCE", value_parser = SecretSource)]
    pub token: Option<Secret>,
    /// Resume a run whose distributor died: the collector's --results file of that run; tasks
    /// it holds a result for count as done and only the others go out (same --task list)
    #[arg(long, value_name = "LEDGER")]
    pub resume: Option<PathBuf>,
    /// Write the report as JSON to this file
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Write where it listens as a JSON line to FILE (- for stdout, and then its report goes
    /// to stderr) for the program that started it
    #[arg(long, value_name = "FILE|-")]
    pub announce: Option<String>,
    #[command(flatten)]
    pub out: ReportArgs,
    /// No progress bar (the global -q/--quiet, accepted after the command too)
    #[arg(from_global)]
    pub quiet: bool,
}

#[derive(Debug, Args)]
pub struct PipelineWorkerArgs {
    /// The distributor's endpoint for this task type (connected)
    #[arg(long, default_value = WORKER_ENDPOINT)]
    pub endpoint: String,
    /// The collector's result endpoint (connected)
    #[arg(long, default_value = COLLECTOR_ENDPOINT)]
    pub collector: String,
    /// The task type this worker executes
    #[arg(long, default_value = "C")]
    pub task_type: String,
    /// Threads executing tasks (1: a single-threaded worker)
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub threads: u32,
    /// Tasks held beyond one per thread, so the next is waiting when one finishes [default: one
    /// per thread]
    #[arg(long, value_parser = clap::value_parser!(u32).range(0..=1000))]
    pub prefetch: Option<u32>,
    /// Spend this per task instead of the descriptor's workload (a slow or fast worker; the
    /// distributor's ideal, reckoned from the descriptors, then no longer holds)
    #[arg(long, value_parser = parse_duration)]
    pub delay: Option<Duration>,
    /// Spend it this way instead of the descriptor's: sleep, spin or hybrid[:F]
    #[arg(long)]
    pub work: Option<String>,
    /// This worker's name (default worker-PID)
    #[arg(long)]
    pub name: Option<String>,
    /// Keep retrying the distributor and the collector this long
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub connect_timeout: Duration,
    /// After losing the distributor mid-run, reconnect with backoff for this long (0: exit)
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub reconnect_timeout: Duration,
    /// The run's shared secret, as file:PATH or env:VAR (every role of the run is given the
    /// same): peers whose hello lacks it are refused and logged
    #[arg(long, value_name = "SOURCE", value_parser = SecretSource)]
    pub token: Option<Secret>,
}

#[derive(Debug, Args)]
pub struct CollectorArgs {
    /// Where workers send results (bound)
    #[arg(long, default_value = COLLECTOR_ENDPOINT)]
    pub endpoint: String,
    /// Where the distributor connects for ACKs (bound)
    #[arg(long, default_value = COLLECTOR_ACK_ENDPOINT)]
    pub ack_endpoint: String,
    /// End the run (writing what was recorded, exit 1) when the distributor went away
    /// without ending it and has not come back this long
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub distributor_timeout: Duration,
    /// The run's shared secret, as file:PATH or env:VAR (every role of the run is given the
    /// same): peers whose hello lacks it are refused and logged
    #[arg(long, value_name = "SOURCE", value_parser = SecretSource)]
    pub token: Option<Secret>,
    /// Write every result as a JSON line (id, type, attempt, worker, start/finish ns, duplicate)
    #[arg(long)]
    pub results: Option<PathBuf>,
    /// Write the summary as JSON to this file
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Write where it listens as a JSON line to FILE (- for stdout, and then its report goes
    /// to stderr) for the program that started it
    #[arg(long, value_name = "FILE|-")]
    pub announce: Option<String>,
}

const WORKER_EXAMPLES: &str = "\
Examples (seed 002, two workers on one host):
  plumbline receive --listen 127.0.0.1:7002 --print
  plumbline worker --application-module alphabet_partitioned --delay 500ms \\
      --in 127.0.0.1:7010 --out 127.0.0.1:7002 --metrics 127.0.0.1:5001 \\
      --control 127.0.0.1:6000 --data 127.0.0.1:6001 --external 127.0.0.1:5050 \\
      --cluster-initializer --worker-count 2
  plumbline worker --application-module alphabet_partitioned --delay 500ms \\
      --out 127.0.0.1:7002 --control 127.0.0.1:6000 --name roo
  plumbline send --host 127.0.0.1:7010 --file fake_votes.msg --batch-size 26 \\
      --interval 10_000_000 --messages 52 --binary --msg-size 9 --repeat --no-write
  plumbline shutdown 127.0.0.1:5050
Seed 000's sleepy app as two members of a Kafka consumer group (a key stays in one partition):
  plumbline receive --listen 127.0.0.1:7002 --expect 2000
  plumbline worker --in kafka://127.0.0.1:9092/nonces --delay 10ms --out 127.0.0.1:7002 --name w1
  plumbline worker --in kafka://127.0.0.1:9092/nonces --delay 10ms --out 127.0.0.1:7002 --name w2
  plumbline send --to kafka://127.0.0.1:9092/nonces --gen nonces --rate max --messages 2000";

/// What a listener of outside frames allows its peers (`receive --listen` and `--from
/// tcp://`, the initializer's `--in`, a worker's `--in tcp://`), so hostile or broken peers cannot hold it open or exhaust its memory.
#[derive(Clone, Debug, Args)]
pub struct IntakeArgs {
    /// Connections served at once; further ones are refused (closed at once) and counted
    #[arg(long, default_value_t = plumbline_core::intake::DEFAULT_MAX_CONNECTIONS,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=1_000_000))]
    pub max_connections: usize,
    /// Longest a frame may take from its first byte to its last; a connection whose frame is
    /// late is closed and named (a quiet connection between frames is never closed)
    #[arg(long, default_value = "30s", value_parser = parse_positive_duration)]
    pub read_timeout: Duration,
    /// Least bytes/s a frame must average once it has taken 5 s (or --read-timeout, if
    /// shorter); slower connections are closed and named. 0: no minimum
    #[arg(long, default_value_t = plumbline_core::intake::DEFAULT_MIN_RATE)]
    pub min_rate: u64,
    /// Bytes of unfinished frames all connections may buffer together beyond 16 KiB each;
    /// a connection that needs more waits for it (within its --read-timeout). At least
    /// --max-frame
    #[arg(long, default_value_t = plumbline_core::intake::DEFAULT_BUFFER_BUDGET as u64)]
    pub buffer_budget: u64,
}

/// A duration above zero (a zero deadline would close every connection at its first byte).
fn parse_positive_duration(text: &str) -> Result<Duration, String> {
    match parse_duration(text).map_err(|e| e.to_string())? {
        Duration::ZERO => Err("must be above zero".into()),
        d => Ok(d),
    }
}

/// Flags of `worker`, named as Wallaroo's `machida` names them.
#[derive(Debug, Args)]
pub struct WorkerArgs {
    /// sleepy (seed 000: nonces, 60 partitions, a count per partition) or votes (seed 002)
    #[arg(long, visible_alias = "application-module", default_value = "sleepy")]
    pub app: String,
    /// Cost of each item (e.g. 500ms, 5ms, 0)
    #[arg(long, value_parser = parse_duration)]
    pub delay: Option<Duration>,
    /// Cost of each item in milliseconds (seed 000's --delay_ms)
    #[arg(long = "delay_ms", visible_alias = "delay-ms")]
    pub delay_ms: Option<u64>,
    /// Work model: sleep, spin or hybrid[:F]
    #[arg(long, default_value = "sleep")]
    pub work: String,
    /// Source: the initializer's listener (host:port), or a broker URL (redis://, nats://,
    /// kafka://; see `send --help`) this worker consumes from as a member of --group, with no
    /// initializer
    #[arg(long = "in")]
    pub input: Option<String>,
    /// The sink every worker sends its results to (host:port of a receiver, or a broker URL);
    /// without it results are counted and dropped
    #[arg(long)]
    pub out: Option<String>,
    /// Broker workers: exit once nothing arrived for this long after the first message
    /// (default: run until Ctrl-C)
    #[arg(long, value_parser = parse_duration)]
    pub idle_timeout: Option<Duration>,
    #[command(flatten, next_help_heading = "Brokers (--in URL, --out URL)")]
    pub broker: BrokerArgs,
    /// Emit `ok` per item instead of the application's result
    #[arg(long)]
    pub ok: bool,
    /// Append each key's item count to vote results (`z=>6@3`: total 6 after 3 votes), so
    /// `receive --continuity` can check state that moves by more than one per item
    #[arg(long)]
    pub result_versions: bool,
    /// Load-balanced tasks: the initializer deals items to the workers in turn, no keyed state
    #[arg(long)]
    pub balanced: bool,
    /// Initializer: the control address to listen on. Others: the initializer's control address
    #[arg(long)]
    pub control: Option<String>,
    /// Initializer: the data address to listen on
    #[arg(long, default_value = "127.0.0.1:6001")]
    pub data: String,
    /// Accepted for machida compatibility: workers connect to the initializer, so need no
    /// listener of their own
    #[arg(long)]
    pub my_control: Option<String>,
    /// Accepted for machida compatibility (see --my-control)
    #[arg(long)]
    pub my_data: Option<String>,
    /// Initializer: where `plumbline shutdown` connects
    #[arg(long)]
    pub external: Option<String>,
    /// Initializer: write its events as JSON lines to FILE (- for stdout) for the program that
    /// started it: the bound addresses once listening and once ready, every worker's figures
    /// once shut down
    #[arg(long, value_name = "FILE|-")]
    pub announce: Option<String>,
    /// This worker's name
    #[arg(long, visible_alias = "worker-name")]
    pub name: Option<String>,
    /// This worker forms the cluster and takes the sources
    #[arg(long)]
    pub cluster_initializer: bool,
    /// Workers in the cluster, the initializer included
    #[arg(long, default_value_t = 1)]
    pub worker_count: usize,
    /// A joiner: join a cluster that is already running; partitions move to it with their
    /// state, with no item lost or applied twice (without it, a late worker is refused)
    #[arg(long)]
    pub join_running: bool,
    /// Tests only: plant a fault in every partition state this worker installs (drop: as if
    /// the last item were lost in the move; double: as if applied twice), for the
    /// continuity checker to catch
    #[arg(long, hide = true, value_parser = ["drop", "double"])]
    pub plant_fault: Option<String>,
    /// Initializer: serve Prometheus metrics of the whole cluster here (others ignore it)
    #[arg(long)]
    pub metrics: Option<String>,
    /// Initializer: serve the whole cluster's live page (items in and out, per worker, per
    /// partition) and its /metrics on ADDR, e.g. 127.0.0.1:4000. A broker member (--in URL):
    /// its own (taken, done, held unacked, per partition, latency)
    #[arg(long, value_name = "ADDR")]
    pub ui: Option<String>,
    /// Partitions (sleepy: default 60; votes: 26, one per letter)
    #[arg(long)]
    pub partitions: Option<u32>,
    /// The cluster's token, as file:PATH or env:VAR (never the secret itself on the command
    /// line). The initializer demands it of every joiner, of `shutdown` and of /metrics
    /// scrapers from other hosts, and needs it to put --control, --external, --metrics or --ui
    /// beyond loopback; a joiner presents it
    #[arg(long, value_name = "SOURCE", value_parser = SecretSource)]
    pub token: Option<Secret>,
    /// Largest input frame accepted, in bytes (at most 1 GiB)
    #[arg(long, default_value_t = plumbline_core::frame::DEFAULT_MAX_FRAME as u64,
          value_parser = clap::value_parser!(u64).range(1..=plumbline_core::frame::MAX_FRAME_LIMIT))]
    pub max_frame: u64,
    /// Keep retrying the initializer and the sink this long
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub connect_timeout: Duration,
    /// Limits on source connections (the initializer's --in, or --in tcp://)
    #[command(
        flatten,
        next_help_heading = "Source connections (initializer, --in tcp://)"
    )]
    pub intake: IntakeArgs,
}

const SHUTDOWN_EXAMPLES: &str = "\
Examples:
  plumbline shutdown 127.0.0.1:5050
  plumbline shutdown 10.0.0.5:5050 --token file:cluster.token";

const SHRINK_EXAMPLES: &str = "\
Examples (seed 002's cluster grown by a third worker, then shrunk back):
  plumbline worker --app votes --delay 500ms --out 127.0.0.1:7002 --control 127.0.0.1:6000 \\
      --name ozzie --join-running
  plumbline shrink 127.0.0.1:5050 --worker ozzie
The worker hands over each partition it owns once it applied the items routed before; items
that arrive meanwhile wait at the initializer. It exits once its partitions have moved.";

/// Flags of `shrink`.
#[derive(Debug, Args)]
pub struct ShrinkArgs {
    /// The initializer's --external address
    pub addr: String,
    /// The worker that leaves (its --name); not the initializer, which routes every item
    #[arg(long)]
    pub worker: String,
    /// The cluster's token, as file:PATH or env:VAR
    #[arg(long, value_name = "SOURCE", value_parser = SecretSource)]
    pub token: Option<Secret>,
    /// How long to wait for an answer
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub timeout: Duration,
}

/// Flags of `shutdown`.
#[derive(Debug, Args)]
pub struct ShutdownArgs {
    /// The initializer's --external address
    pub addr: String,
    /// The cluster's token, as file:PATH or env:VAR
    #[arg(long, value_name = "SOURCE", value_parser = SecretSource)]
    pub token: Option<Secret>,
    /// How long to wait for an answer
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub timeout: Duration,
}

/// What runs, as `bench` and `capacity` both take it: a preset and the flags that override
/// its values.
#[derive(Debug, Clone, Args)]
pub struct MatrixArgs {
    /// Built-in preset (scaling, alphabet, alphabet-hot, sequential, throughput, pipeline) or a
    /// TOML file (a path relative to an experiment file is relative to its folder)
    #[arg(long, default_value = "scaling", value_hint = clap::ValueHint::FilePath)]
    pub preset: String,
    /// Per-item work delay, comma-separated (e.g. 10ms,500us,0)
    #[arg(long, value_delimiter = ',', value_parser = parse_duration)]
    pub delay: Option<Vec<Duration>>,
    /// Work models: sleep, spin, hybrid[:F] (comma-separated)
    #[arg(long, value_delimiter = ',')]
    pub work: Option<Vec<String>>,
    /// Steps: partitioned, balanced, sequential (comma-separated)
    #[arg(long, value_delimiter = ',')]
    pub step: Option<Vec<String>>,
    /// Key distribution: uniform, zipf:S, hot:SHARE
    #[arg(long)]
    pub keys: Option<String>,
    /// Workload: nonces, votes or random
    #[arg(long)]
    pub workload: Option<String>,
    /// Payload bytes of nonces and random payloads
    #[arg(long)]
    pub size: Option<usize>,
    /// Letters of the votes workload (e.g. a for the hot-key exercise)
    #[arg(long)]
    pub letters: Option<String>,
    /// Partitions of nonces and random payloads
    #[arg(long)]
    pub partitions: Option<u32>,
    /// Capacity of every bounded queue in the cluster
    #[arg(long)]
    pub capacity: Option<usize>,
    /// Seed of the generated load
    #[arg(long)]
    pub seed: Option<u64>,
    /// Where workers run: threads, processes (worker processes over loopback), pipeline
    /// (seed 001's task pipeline: pipeline worker processes, balanced only), several of those
    /// to compare; or a broker URL (redis://HOST:PORT/STREAM, nats://…?jetstream=1,
    /// kafka://…): a consumer group of `plumbline worker --in URL` members
    #[arg(long, value_delimiter = ',')]
    pub cluster: Option<Vec<String>>,
}

/// Flags of `bench`. Every matrix flag overrides the preset's value.
#[derive(Debug, Args)]
pub struct BenchArgs {
    #[command(flatten)]
    pub matrix: MatrixArgs,
    /// List the built-in presets and exit
    #[arg(long)]
    pub list_presets: bool,
    /// Items per run, comma-separated (e.g. 100,1000)
    #[arg(long, value_delimiter = ',')]
    pub items: Option<Vec<u64>>,
    /// Worker counts, comma-separated (e.g. 1,2,10)
    #[arg(long, value_delimiter = ',')]
    pub workers: Option<Vec<usize>>,
    /// Items per second into the cluster (e.g. 500/s); max (default) sends the batch at once
    #[arg(long)]
    pub rate: Option<String>,
    /// Threads per pipeline worker, comma-separated (the pipeline preset; default 1,10)
    #[arg(long, value_delimiter = ',')]
    pub threads: Option<Vec<u32>>,
    #[command(flatten)]
    pub output: OutputArgs,
}

/// A duration with its unit (`90s`, `2h`), or a bare number of seconds (`7200`).
fn parse_duration_or_seconds(text: &str) -> Result<Duration, String> {
    match text.trim().parse::<f64>() {
        Ok(secs) => Duration::try_from_secs_f64(secs).map_err(|e| format!("{text:?} seconds: {e}")),
        Err(_) => parse_duration(text).map_err(|e| e.to_string()),
    }
}

/// Furthest ahead and behind a `--start-at` may be: further is a unit mistake, or a
/// schedule whose whole past would go out at once.
const START_AT_AHEAD: Duration = Duration::from_secs(24 * 3600);
const START_AT_BEHIND: Duration = Duration::from_secs(60);

/// `--start-at`: `+DURATION` from now or a UNIX time in seconds, as UNIX nanoseconds.
fn parse_start_at(text: &str) -> Result<u64, String> {
    let now = plumbline_core::header::unix_now_ns();
    let at = match text.trim().strip_prefix('+') {
        Some(rest) => now + parse_duration(rest).map_err(|e| e.to_string())?.as_nanos() as u64,
        None => match text.trim().parse::<f64>() {
            Ok(secs) if secs.is_finite() && secs >= 0.0 => (secs * 1e9) as u64,
            _ => {
                return Err(format!(
                    "'{text}': give a UNIX time in seconds or +DURATION (+5s)"
                ))
            }
        },
    };
    if at > now + START_AT_AHEAD.as_nanos() as u64 {
        return Err(format!(
            "'{text}' is more than 24 h ahead: a UNIX time in seconds?"
        ));
    }
    if at + (START_AT_BEHIND.as_nanos() as u64) < now {
        return Err(format!(
            "'{text}' passed {:.0} s ago",
            (now - at) as f64 / 1e9
        ));
    }
    Ok(at)
}

/// `--threshold`: absolute limits the finished run is held to.
#[derive(Debug, Args, Default)]
pub struct ThresholdArgs {
    /// Hold the run to a limit, k6-style, checked once the report is written; a breach exits
    /// 99 (an error exits 1). METRIC<LIMIT, <=, >, >=: latency min, p50, p90, p95, p99, p999,
    /// max, mean (20ms), overhead (1%), lost, duplicates (0), achieved (950/s or 0.99target),
    /// wall (10s), capacity (`capacity` only: 400/s or 0.95ideal). Repeat for more
    #[arg(long = "threshold", value_name = "LIMIT")]
    pub thresholds: Vec<Threshold>,
}

impl ThresholdArgs {
    /// The limits, once each is known to fit what `command` records.
    pub fn for_command(&self, command: Recorded) -> anyhow::Result<&[Threshold]> {
        for threshold in &self.thresholds {
            threshold.fits(command).map_err(anyhow::Error::msg)?;
        }
        Ok(&self.thresholds)
    }
}

/// Where a matrix command's figures go: `bench` and `capacity` alike.
#[derive(Debug, Args)]
pub struct OutputArgs {
    /// Write the whole result as JSON to this file
    #[arg(long)]
    pub json: Option<PathBuf>,
    #[command(flatten)]
    pub out: ReportArgs,
    /// Write no report folder (by default: plumbline-reports/<command>-<time>/)
    #[arg(long, conflicts_with = "report")]
    pub no_report: bool,
    /// No progress bar or progress lines (the global -q/--quiet, accepted after the command too)
    #[arg(from_global)]
    pub quiet: bool,
    #[command(flatten)]
    pub limits: ThresholdArgs,
}

const CAPACITY_EXAMPLES: &str = "\
Examples:
  plumbline capacity                                  # 10 ms tasks on 1, 2, 4 threads
  plumbline capacity --workers 1,2,4,8 --json curve.json
  plumbline capacity --preset alphabet-hot --step partitioned   # flat: limited by one key
  plumbline capacity --work spin --workers 1,2,4      # stops at the cores
  plumbline capacity --cluster processes --slo-p99 50ms
  plumbline capacity --cluster redis://127.0.0.1:6379/jobs   # a Redis consumer group
  plumbline capacity --to redis://127.0.0.1:6379/in --from redis://127.0.0.1:6379/out \\
      --spawn 'python3 examples/python/consumer_group.py' --per-item 10ms --workers 1,2,4
  plumbline capacity --loads 150/s,300/s,600/s        # and the fewest workers for each load";

/// Flags of `capacity`: for each worker count, the highest open-loop rate sustained.
#[derive(Debug, Args)]
#[command(after_help = CAPACITY_EXAMPLES)]
pub struct CapacityArgs {
    #[command(flatten)]
    pub matrix: MatrixArgs,
    /// Worker counts, comma-separated (default 1,2,4)
    #[arg(long, value_delimiter = ',')]
    pub workers: Option<Vec<usize>>,
    /// Search resolution, relative (2%: the bracket is within 2 % of its pass)
    #[arg(long, default_value = "2%")]
    pub resolution: String,
    /// Each trial's warm-up, not judged
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub warmup: Duration,
    /// Each trial's measurement window, judged
    #[arg(long, default_value = "3s", value_parser = parse_duration)]
    pub window: Duration,
    /// Largest lag growth that still passes: a share of the rate per second (1%) or
    /// items/s per second (5/s)
    #[arg(long, default_value = "1%")]
    pub lag_slope: String,
    /// p99 latency from the intended send time that a trial must stay under
    #[arg(long, value_parser = parse_duration)]
    pub slo_p99: Option<Duration>,
    /// The share of the rate the sender must achieve, else the trial is sender-bound
    #[arg(long, default_value = "99%")]
    pub min_achieved: String,
    /// First rate tried (default: the ideal estimate for each worker count)
    #[arg(long)]
    pub start: Option<String>,
    /// Trials per worker count at most
    #[arg(long, default_value_t = 30)]
    pub max_trials: u32,
    /// Stop the whole search after this long, reporting the brackets reached
    #[arg(long, default_value = "30m", value_parser = parse_duration)]
    pub max_duration: Duration,
    /// Loads to find the fewest workers for (the demand metric), e.g. 200/s,400/s
    #[arg(long, value_delimiter = ',')]
    pub loads: Option<Vec<String>>,
    #[command(flatten)]
    pub output: OutputArgs,
    /// Your own system: send the load here (any URL send --to takes), with --from and --spawn
    #[arg(long, requires_all = ["from", "spawn"], conflicts_with = "cluster")]
    pub to: Option<String>,
    /// Your own system: read its results here (a broker URL, or tcp://HOST:PORT to listen on)
    #[arg(long, requires = "to")]
    pub from: Option<String>,
    /// Your own system: the command starting one worker, run once per worker (each copy gets
    /// PLUMBLINE_WORKER_INDEX, PLUMBLINE_WORKERS, PLUMBLINE_IN and PLUMBLINE_OUT, and {index},
    /// {workers}, {in}, {out}, {run} (the trial's name, e.g. for a fresh group) filled in)
    #[arg(long, requires = "to")]
    pub spawn: Option<String>,
    /// Your own system: what one item costs a worker, for the ideal (without it, a short probe
    /// picks the first rate and capacity is judged against the 1-worker capacity)
    #[arg(long, requires = "to", value_parser = parse_duration)]
    pub per_item: Option<Duration>,
}

/// Seed 003's day/night shape: how finely and how often the day repeats over `--duration`.
#[derive(Debug, Clone, Copy, Args)]
pub struct DayNightArgs {
    /// Day/night: breakpoints per cycle (24 = the seed's hours; more = smoother)
    #[arg(long, default_value_t = 24)]
    pub breakpoints: usize,
    /// Day/night: cycles in --duration
    #[arg(long, visible_alias = "n_cycles", default_value_t = 1)]
    pub cycles: usize,
}

/// The load shapes `elastic` offers a group: one rate all along, or seed 003's day.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ElasticShape {
    Constant,
    DayNight,
}

const ELASTIC_EXAMPLES: &str = "\
Examples:
  plumbline elastic --cluster redis://127.0.0.1:6379/jobs --workers 2@0s,4@5s,1@10s --rate 300/s
  plumbline elastic --cluster 'nats://127.0.0.1:4222/jobs?jetstream=1' --workers 4@0s,3@5s \\
      --leave kill --duration 12s --json kill.json     # kill -9 one of 4 members at 5 s
  plumbline elastic --cluster kafka://127.0.0.1:9092/jobs --workers 4@0s,2@6s --delay 20ms
  plumbline elastic --cluster redis://127.0.0.1:6379/jobs --workers 1@0s --autoscale 1..6 \
      --lag-target 20 --rate 300/s --duration 30s   # HPA on lag, 10x faster than Kubernetes
  plumbline elastic --cluster redis://127.0.0.1:6379/jobs --workers 1@0s --autoscale 1..6 \
      --shape day-night --cycles 2 --rate 400/s --duration 40s   # seed 003's day, peak 400/s
  plumbline elastic --cluster redis://127.0.0.1:6379/jobs --workers 1@0s --autoscale 1..6 \
      --busy-target 0.7 --rate 300/s --duration 30s   # HPA on utilisation: each member 70 % busy
  plumbline elastic --cluster processes --step partitioned --workers 2@0s,4@5s,2@10s \
      --delay 5ms --rate 300/s   # the TCP cluster: partitions move with their state, checked";

/// Flags of `elastic`: a consumer group resized mid-run.
#[derive(Debug, Args)]
#[command(after_help = ELASTIC_EXAMPLES)]
pub struct ElasticArgs {
    #[command(flatten)]
    pub matrix: MatrixArgs,
    /// Worker counts over the run: COUNT@TIME, comma-separated, the first at 0s
    /// (e.g. 2@0s,4@20s,1@40s); with --autoscale, the count it starts from (e.g. 1@0s)
    #[arg(long)]
    pub workers: String,
    /// Let Kubernetes' HPA rule choose the count between MIN..MAX replicas, every sync period,
    /// on the group's total lag (KEDA's Kafka scaler: desired = ceil(lag ÷ --lag-target)) or
    /// its members' busy fraction (--busy-target), with HPA's tolerance, stabilization windows and rate policies. An emulation on one
    /// machine, to see what a scaling policy would do before running it on a cluster
    #[arg(long, value_name = "MIN..MAX")]
    pub autoscale: Option<String>,
    /// Items of lag per replica the autoscaler aims for (KEDA's lagThreshold)
    #[arg(long, default_value_t = 50.0, requires = "autoscale")]
    pub lag_target: f64,
    /// Aim for this busy fraction of each replica instead of a lag (HPA's CPU utilisation
    /// target, e.g. 0.7: desired = ceil(replicas × busy ÷ 0.7)); a member's busy fraction is
    /// the known cost of the items it finished in the sync period over its time
    #[arg(
        long,
        value_name = "FRACTION",
        requires = "autoscale",
        conflicts_with = "lag_target"
    )]
    pub busy_target: Option<f64>,
    /// Kubernetes' periods and windows divided by this (10: sync 1.5 s, scale-down window
    /// 30 s), so an experiment takes seconds, not hours
    #[arg(long, default_value_t = 10, requires = "autoscale",
          value_parser = clap::value_parser!(u32).range(1..=3600))]
    pub autoscale_speed: u32,
    /// Items per second, steady for the whole run (with --shape day-night: the peak)
    #[arg(long, default_value = "200/s")]
    pub rate: String,
    /// constant (--rate all along) or day-night (seed 003's 24 hours of traffic, --cycles
    /// times over --duration, peaking at --rate)
    #[arg(long, value_enum, default_value = "constant")]
    pub shape: ElasticShape,
    #[command(flatten)]
    pub day_night: DayNightArgs,
    /// How long the load runs (every change must come before it ends)
    #[arg(long, default_value = "15s", value_parser = parse_duration)]
    pub duration: Duration,
    /// How members leave when the group shrinks: graceful (SIGTERM: finish, ack, leave the
    /// group; on the TCP cluster, a shrink that hands the partitions' state over) or kill
    /// (SIGKILL, as a crash; broker groups only)
    #[arg(long, default_value = "graceful", value_parser = clap::value_parser!(Leave))]
    pub leave: Leave,
    /// Lag (items) at or under which a change has recovered [default: twice the lag before
    /// it, and at least 50 ms of the rate; with --autoscale, --lag-target × the new count]
    #[arg(long)]
    pub recover_lag: Option<f64>,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Nonces,
    Votes,
    Random,
}

const GEN_EXAMPLES: &str = "\
Examples:
  plumbline gen votes -o fake_votes.msg          # seed 002's 468-byte file: 26 letters x 2 rounds
  plumbline gen votes --letters a --rounds 10 -o hot.msg          # one hot key
  plumbline gen nonces --count 1024 --size 1024 --seed 7 -o nonces.bin   # seed 000's sender file
  plumbline gen random --count 100000 --size 512 --keys zipf:1.1 -o zipf.bin
  plumbline gen nonces --count 10 -o - | plumbline inspect /dev/stdin --format nonces";

const INSPECT_EXAMPLES: &str = "\
Examples:
  plumbline inspect fake_votes.msg --format votes          # counts, sizes, the letters' totals
  plumbline inspect nonces.bin --format nonces --print     # every message
  plumbline inspect capture.bin --max-frame 65536          # refuse a frame over 64 KiB";

/// Flags of `gen`.
#[derive(Debug, Args)]
pub struct GenArgs {
    /// What to generate
    #[arg(value_enum)]
    pub format: Format,
    /// Output file, or - for standard output
    #[arg(short, long)]
    pub output: PathBuf,
    /// Messages to write [default: 1024; votes: 26 per round]
    #[arg(long)]
    pub count: Option<u64>,
    /// Payload bytes of nonces and random payloads (a nonce needs at least 4)
    #[arg(long, default_value_t = 1024)]
    pub size: usize,
    /// Seed of the generated load
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// Key distribution of nonces and random payloads: uniform, zipf:S, hot:SHARE
    #[arg(long, default_value = "uniform")]
    pub keys: String,
    /// Partitions the nonce selectors spread over
    #[arg(long, default_value_t = 60)]
    pub partitions: u32,
    /// Letters of the votes (a for the hot-key exercise)
    #[arg(long, default_value = "abcdefghijklmnopqrstuvwxyz")]
    pub letters: String,
    /// Rounds of votes: 26 messages each, votes of round r count r
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub rounds: u64,
}

/// Flags of `inspect`.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// A framed file (4-byte big-endian length + payload per message)
    pub file: PathBuf,
    /// How to read each payload
    #[arg(long, value_enum, default_value = "random")]
    pub format: Format,
    /// Largest frame accepted, in bytes (at most 1 GiB)
    #[arg(long, default_value_t = plumbline_core::frame::DEFAULT_MAX_FRAME as u64,
          value_parser = clap::value_parser!(u64).range(1..=plumbline_core::frame::MAX_FRAME_LIMIT))]
    pub max_frame: u64,
    /// Partitions of the nonce selectors
    #[arg(long, default_value_t = 60)]
    pub partitions: u32,
    /// Print every message, not only the summary
    #[arg(long)]
    pub print: bool,
}

const SEND_EXAMPLES: &str = "\
Examples:
  # Seed 000's sender, as written (Pony runtime flags are accepted and ignored):
  plumbline send --host 127.0.0.1:7010 --file nonces.bin --batch-size 20 --interval 100_000 \\
      --messages 2000000 --msg-size 1028 --binary --repeat --ponythreads=1 --ponynoblock
  plumbline send --host 127.0.0.1:7010 --gen nonces --rate 2000/s --duration 30s
  plumbline send --host 127.0.0.1:7010 --rate max --messages 1000000     # as fast as possible
  plumbline send --shape day-night --breakpoints 48 --cycles 2 --duration 60s --max-mbps 15 --dry-run
  # One schedule from two hosts (run the same line on each, with its own --split):
  plumbline send --host 10.0.0.9:7002 --gen nonces --rate 20000/s --duration 60s \\
      --split 1/2 --start-at 1764892800";

const RECEIVE_EXAMPLES: &str = "\
Examples:
  plumbline receive --listen 127.0.0.1:7002 --print           # the seeds' data_receiver
  plumbline receive --listen 127.0.0.1:7002 --expect 2000000 --json recv.json
  plumbline receive --listen 127.0.0.1:7002 --throttle 1000/s  # a deliberately slow consumer";

/// Flags of `send`. The first group is Giles' sender's; the rest are plumbline's.
#[derive(Debug, Args)]
pub struct SendArgs {
    /// Receivers to connect to, comma-separated; messages go round-robin over the connections
    #[arg(long, value_delimiter = ',')]
    pub host: Vec<String>,
    /// Send to a broker instead (redis://, nats://, kafka://, tcp:// URL; see BROKERS below),
    /// one producer per --connections, waiting for the broker's acks at the end
    #[arg(long, conflicts_with = "host")]
    pub to: Option<String>,
    #[command(flatten)]
    pub out: ReportArgs,
    #[command(flatten, next_help_heading = "Brokers")]
    pub broker: BrokerArgs,
    /// Files to replay, comma-separated, read in order
    #[arg(long, value_delimiter = ',')]
    pub file: Vec<PathBuf>,
    /// Messages to send in all
    #[arg(long)]
    pub messages: Option<u64>,
    /// Messages per interval (Giles pacing)
    #[arg(long, default_value_t = 500)]
    pub batch_size: u64,
    /// Nanoseconds between batches (`_` separators and unit suffixes like 100us accepted)
    #[arg(long, default_value = "5_000_000", value_parser = parse_interval)]
    pub interval: Duration,
    /// Start over at the end of the files
    #[arg(long)]
    pub repeat: bool,
    /// Files hold length-prefixed binary frames (otherwise: one message per line)
    #[arg(long)]
    pub binary: bool,
    /// Bytes of each record in a binary file, its 4-byte header included
    #[arg(long)]
    pub msg_size: Option<usize>,
    /// Read each binary record's own length instead of --msg-size
    #[arg(long)]
    pub variable_size: bool,
    /// Accepted for Giles compatibility; plumbline keeps no log of sent messages
    #[arg(long)]
    pub no_write: bool,
    /// Constant rate, e.g. 2000/s, or max for as fast as possible (replaces batch pacing)
    #[arg(long)]
    pub rate: Option<String>,
    /// Stop scheduling after this long (a bare number is seconds, as seed 003's feeder takes it)
    #[arg(long, value_parser = parse_duration_or_seconds)]
    pub duration: Option<Duration>,
    /// Generate load instead of reading files
    #[arg(long, value_enum)]
    pub gen: Option<Format>,
    /// Payload bytes of generated nonces and random payloads
    #[arg(long, default_value_t = 1024)]
    pub size: usize,
    /// Seed of generated load
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// Key distribution of generated nonces and random payloads
    #[arg(long, default_value = "uniform")]
    pub keys: String,
    /// Letters of generated votes
    #[arg(long, default_value = "abcdefghijklmnopqrstuvwxyz")]
    pub letters: String,
    /// Partitions of generated nonces
    #[arg(long, default_value_t = 60)]
    pub partitions: u32,
    /// Connections (one sending thread each) [default: one per --host]
    #[arg(long, visible_alias = "threads")]
    pub connections: Option<usize>,
    /// Load shape: constant, batch, poisson, ramp:FROM..TO, steps:RATE@DUR,..., csv:FILE, day-night
    #[arg(long)]
    pub shape: Option<String>,
    #[command(flatten)]
    pub day_night: DayNightArgs,
    /// Day/night: peak megabytes (10^6 bytes) per second, converted by the message size;
    /// without --shape it means day-night (seed 003's feeder: --max_mbps 15 --duration 7200
    /// --breakpoints 200 --n_cycles 6)
    #[arg(long, visible_alias = "max_mbps")]
    pub max_mbps: Option<f64>,
    /// raw (payload only) or plumbline (header with seq and intended send time)
    /// [default: plumbline for --gen, raw for files]
    #[arg(long, value_enum)]
    pub framing: Option<SendFraming>,
    /// A message written later than this after its deadline counts as late
    #[arg(long, default_value = "1ms", value_parser = parse_duration)]
    pub late_after: Duration,
    /// Keep retrying refused connections this long
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub connect_timeout: Duration,
    /// A --host connection that breaks mid-run is opened again (backoff, for up to
    /// --connect-timeout per break) and the schedule goes on; without it a break ends the run
    #[arg(long)]
    pub reconnect: bool,
    /// Measure this host's clock against a `plumbline clock` reference first and stamp
    /// messages on the reference's clock (for receivers on other hosts)
    #[arg(long, value_name = "ADDR")]
    pub clock_ref: Option<String>,
    /// This sender's share I/N of the schedule N senders (on N hosts) emit together: each
    /// sends every Nth message of the one schedule, under its own source ids, so a receiver
    /// counts losses and duplicates across them exactly. Give every sender the same flags
    /// and --start-at
    #[arg(long, value_name = "I/N", default_value = "1/1")]
    pub split: Share,
    /// Start the schedule at this UNIX time (seconds, e.g. 1764892800.5) or this long from
    /// now (+5s); a sender set up later starts at once, sends what was due late, and says
    /// how late it started. Needs the hosts' clocks in step (NTP)
    #[arg(long, value_name = "TIME", value_parser = parse_start_at)]
    pub start_at: Option<u64>,
    /// Print the schedule and exit without sending
    #[arg(long)]
    pub dry_run: bool,
    /// Write the send report as JSON
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// No progress bar (the global -q/--quiet, accepted after the command too)
    #[arg(from_global)]
    pub quiet: bool,
    #[command(flatten)]
    pub limits: ThresholdArgs,
}

/// How plumbline uses a broker, for every command that takes a broker URL. The URL itself
/// (`--to`, `--from`, `--in`) says which broker and where:
///   tcp://HOST:PORT                       plumbline's frames, no broker (at-most-once)
///   redis://HOST:PORT/NAME[?mode=streams] a Redis stream, consumer groups (at-least-once)
///   redis://HOST:PORT/NAME?mode=pubsub    a Redis channel (at-most-once)
///   nats://HOST:PORT/SUBJECT              NATS core, queue groups (at-most-once)
///   nats://HOST:PORT/SUBJECT?jetstream=1  a JetStream work queue (at-least-once)
///   kafka://HOST:PORT[,HOST:PORT]/TOPIC   a Kafka topic, consumer groups (at-least-once;
///                                         builds with `--features kafka`)
/// Any of them may name a user (`redis://USER@…`), ask for TLS (`rediss://`, `?tls=1`) and,
/// for Kafka, SASL (`?sasl=PLAIN|SCRAM-SHA-256|SCRAM-SHA-512`); the password goes in
/// --password, so it never shows in a process list.
#[derive(Debug, Args, Clone)]
pub struct BrokerArgs {
    /// Consumer group: consumers in one group share the messages
    #[arg(long, default_value = "plumbline")]
    pub group: String,
    /// Give a message a consumer took but never acked to another after this long (Redis
    /// streams' claim idle time, JetStream's AckWait; Kafka uses its session timeout)
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub redeliver_after: Duration,
    /// Messages a consumer may hold unacked (JetStream pull batch, Redis read count)
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub prefetch: u64,
    /// Refuse a stream or topic that does not exist instead of creating it
    #[arg(long)]
    pub no_create: bool,
    /// Partitions of a Kafka topic plumbline creates
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(i32).range(1..=10_000))]
    pub topic_partitions: i32,
    #[command(flatten)]
    pub login: LoginArgs,
}

/// How a client proves itself to a broker (or a Redis store) and checks it back: every
/// command that connects to one takes these.
#[derive(Clone, Debug, Args)]
pub struct LoginArgs {
    /// The broker password (or NATS token), as file:PATH or env:VAR; it takes the place of
    /// one in the URL
    #[arg(long, value_name = "SOURCE", value_parser = SecretSource)]
    pub password: Option<Secret>,
    /// PEM file of the CA a TLS broker's certificate must chain to (default: the system's);
    /// only with a TLS URL
    #[arg(long, value_name = "PATH")]
    pub tls_ca: Option<PathBuf>,
}

/// A secret flag's value: `file:PATH` or `env:VAR`, read as the flags are parsed. Its own
/// error, not clap's "invalid value '…'", which would echo a secret typed in its place.
#[derive(Clone)]
struct SecretSource;

impl clap::builder::TypedValueParser for SecretSource {
    type Value = Secret;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<Secret, clap::Error> {
        Secret::from_source(&value.to_string_lossy()).map_err(|why| {
            let flag = arg.and_then(clap::Arg::get_long).unwrap_or("secret");
            clap::Error::raw(
                clap::error::ErrorKind::ValueValidation,
                format!("--{flag}: {why}\n"),
            )
            .with_cmd(cmd)
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SendFraming {
    Raw,
    Plumbline,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReceiveFraming {
    Auto,
    Raw,
    Plumbline,
}

/// Flags of `receive`.
#[derive(Debug, Args)]
pub struct ReceiveArgs {
    /// Address to listen on (host:port; port 0 picks one and prints it)
    #[arg(long, required_unless_present = "from")]
    pub listen: Option<String>,
    /// Consume from a broker instead (redis://, nats://, kafka://, tcp:// URL; see `send
    /// --help`), acknowledging each batch once counted
    #[arg(long, conflicts_with = "listen")]
    pub from: Option<String>,
    /// Keep retrying an unreachable broker this long
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub connect_timeout: Duration,
    /// Measure this host's clock against a `plumbline clock` reference (run on the sender's
    /// host) first and put arrivals on its clock, so latency from another host's stamps is
    /// true; flagged when the offset is unsure against the latency
    #[arg(long, value_name = "ADDR")]
    pub clock_ref: Option<String>,
    #[command(flatten, next_help_heading = "Brokers")]
    pub broker: BrokerArgs,
    /// Print every message's payload as a line
    #[arg(long)]
    pub print: bool,
    /// Stop after this many messages, each counted once (duplicates are reported, not counted);
    /// fewer at the end is an error
    #[arg(long)]
    pub expect: Option<u64>,
    /// Fail the run on duplicates even where the transport allows them (at-least-once
    /// brokers); over plain TCP and other at-most-once transports they always fail it
    #[arg(long)]
    pub fail_on_duplicates: bool,
    /// Check state continuity: every key's `label=>count` results (a partition's item count,
    /// as the sleepy app writes them; vote totals where every vote counts one) must advance by
    /// exactly one per item, with no reset, gap or repeat, even while partitions move between
    /// workers. Plumbline-framed results only; any violation fails the run, naming the key
    /// and the two results around it
    #[arg(long)]
    pub continuity: bool,
    /// Stop when nothing arrived for this long
    #[arg(long, value_parser = parse_duration)]
    pub idle_timeout: Option<Duration>,
    /// How to read payloads: auto (by each connection's first frame), raw or plumbline
    #[arg(long, value_enum, default_value = "auto")]
    pub framing: ReceiveFraming,
    /// Largest frame accepted, in bytes (at most 1 GiB)
    #[arg(long, default_value_t = plumbline_core::frame::DEFAULT_MAX_FRAME as u64,
          value_parser = clap::value_parser!(u64).range(1..=plumbline_core::frame::MAX_FRAME_LIMIT))]
    pub max_frame: u64,
    /// Read at most this many frames per second per connection (a slow consumer, for testing)
    #[arg(long)]
    pub throttle: Option<String>,
    #[command(flatten, next_help_heading = "Connections (--listen, --from tcp://)")]
    pub intake: IntakeArgs,
    /// Write the summary (with the HDR latency histogram) as JSON
    #[arg(long)]
    pub json: Option<PathBuf>,
    #[command(flatten)]
    pub out: ReportArgs,
    /// No live status line (the global -q/--quiet, accepted after the command too)
    #[arg(from_global)]
    pub quiet: bool,
    #[command(flatten)]
    pub limits: ThresholdArgs,
}

/// Giles' `--interval`: bare nanoseconds (with `_` separators) or a duration with a unit.
pub fn parse_interval(text: &str) -> Result<Duration, String> {
    let plain = text.replace('_', "");
    if let Ok(ns) = plain.parse::<u64>() {
        return Ok(Duration::from_nanos(ns));
    }
    parse_duration(text).map_err(|e| e.to_string())
}
