//! What the user typed: clap structs for every subcommand, nothing validated beyond syntax.
//!
//! Turning these into a runnable plan (merging a preset, checking ranges, deriving ideals) is
//! `plan.rs`'s job, so the same rules apply whether a value came from a flag or a preset file.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use plumbline_core::duration::parse_duration;

const EXAMPLES: &str = "\
Examples:
  plumbline bench                                   # 1000 x 10 ms tasks on 1, 2, 10 workers
  plumbline bench --preset alphabet --delay 20ms    # seed 002's votes, scaled down
  plumbline bench --preset alphabet-hot             # one hot key: no speedup, and why
  plumbline bench --work spin --workers 1,2,10      # CPU-bound items against the machine's cores
  plumbline bench --preset throughput --json out.json
  plumbline bench --rate 150/s --items 1500 --workers 1,2     # paced: latency vs load
  plumbline gen votes -o fake_votes.msg             # the seed's 468-byte file
  plumbline gen nonces --count 1024 --size 1024 --seed 7 -o nonces.bin
  plumbline inspect fake_votes.msg --format votes";

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
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a scaling matrix (workers x delay x items x work x step) on the embedded local cluster
    #[command(after_help = EXAMPLES)]
    Bench(BenchArgs),
    /// Write a framed workload file in the seeds' formats (4-byte big-endian length + payload)
    Gen(GenArgs),
    /// Decode a framed file and summarize (or print) its messages
    Inspect(InspectArgs),
}

/// Flags of `bench`. Every matrix flag overrides the preset's value.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Built-in preset (scaling, alphabet, alphabet-hot, sequential, throughput) or a TOML file
    #[arg(long, default_value = "scaling")]
    pub preset: String,
    /// List the built-in presets and exit
    #[arg(long)]
    pub list_presets: bool,
    /// Items per run, comma-separated (e.g. 100,1000)
    #[arg(long, value_delimiter = ',')]
    pub items: Option<Vec<u64>>,
    /// Per-item work delay, comma-separated (e.g. 10ms,500us,0)
    #[arg(long, value_delimiter = ',', value_parser = parse_duration)]
    pub delay: Option<Vec<Duration>>,
    /// Worker counts, comma-separated (e.g. 1,2,10)
    #[arg(long, value_delimiter = ',')]
    pub workers: Option<Vec<usize>>,
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
    /// Items per second into the cluster (e.g. 500/s); max (default) sends the batch at once
    #[arg(long)]
    pub rate: Option<String>,
    /// Write every run as JSON to this file
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// No progress bar
    #[arg(long, short)]
    pub quiet: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Nonces,
    Votes,
    Random,
}

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
