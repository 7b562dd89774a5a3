//! `plumbline stream` (seed 004, psbench's stream_scaling): how a broker stream scales with
//! bulk data, sent by value ("default") or by reference through a store ("proxy").
//!
//! ```text
//!  generator ──(data | key+size)──▶ broker stream ──▶ dispatcher ──one task each──▶ compute workers
//!      │ proxy: put(key, data)                        (≤ 1 in flight per worker)    │ proxy: get, delete
//!      └──────────────────────────────▶ store ◀──────────────────────────────────────┘
//! ```
//!
//! This file only wires args → a plan per experiment (a fresh stream and prefix, the store for
//! proxy mode, psbench's load: `--task-count` items of `--data-size-bytes` offered at compute
//! workers ÷ `--task-sleep` per second; psbench's `--executor` as threads or processes) → the
//! stream engine (`plumbline_engine::stream`, which runs generator, dispatcher and compute
//! workers) → the run record, psbench's CSV and table.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{bail, ensure, Context, Result};
use plumbline_core::Shutdown;
use plumbline_engine::stream::{ComputeWorkers, Method, Stream, StreamFigures};
use plumbline_engine::{Load, RunFigures};
use plumbline_load::{KeyDist, Workload};
use plumbline_measure::record::{Command, Record, RunRecord, StreamSection};
use plumbline_measure::report::{per_s, secs};
use plumbline_measure::RunInfo;
use plumbline_transport::config::TransportConfig;

use crate::args::{Executor, ParslExecutor, PsConnector, StreamArgs, StreamKind, StreamMethod};
use crate::bench::Verdict;
use crate::session::{Outcome, Session};

/// psbench's `RunResult` columns under its names, then what psbench lacks.
const CSV_HEADER: &str = "executor,connector,stream,data_size_bytes,task_count,task_sleep,method,workers,completed_tasks,start_submit_tasks_timestamp,end_tasks_done_timestamp,repeat,makespan_s,ideal_s,overhead_pct,lost,duplicates,latency_p50_s,latency_p99_s,latency_max_s,broker_bytes,broker_bytes_per_item,store_bytes,leaked_keys,error";

/// One experiment as psbench's CSV row. Its `workers` are psbench's (`--max-workers`: the
/// compute workers and the dispatcher's one more); `executor` is how plumbline ran them
/// (`thread` or `process`); `connector` is the store of proxy mode (empty without one).
fn csv(args: &StreamArgs, run: &RunRecord, s: &StreamSection) -> String {
    let connector = args
        .ps_connector
        .map_or(String::new(), |c| format!("{c:?}").to_lowercase());
    // psbench's `--stream` word, as given.
    let stream = clap::ValueEnum::to_possible_value(&args.stream)
        .map_or_else(|| s.stream.clone(), |v| v.get_name().to_string());
    let fields = [
        s.executor.clone(),
        connector,
        stream,
        s.data_size_bytes.to_string(),
        run.items.unwrap_or(0).to_string(),
        s.task_sleep_s.to_string(),
        s.stream_method.clone(),
        (run.workers + 1).to_string(),
        run.delivered.unwrap_or(0).to_string(),
        format!("{:.6}", s.start_submit_tasks_timestamp),
        format!("{:.6}", s.end_tasks_done_timestamp),
        s.repeat.to_string(),
        format!("{:.6}", run.wall_s),
        format!("{:.6}", run.ideal_s.unwrap_or(0.0)),
        run.overhead_pct
            .map_or(String::new(), |o| format!("{o:.3}")),
        run.lost.to_string(),
        run.duplicates.to_string(),
        format!("{:.6}", run.latency_s.p50),
        format!("{:.6}", run.latency_s.p99),
        format!("{:.6}", run.latency_s.max),
        s.broker_bytes.to_string(),
        format!("{:.1}", s.broker_bytes_per_item),
        s.store_bytes.to_string(),
        s.leaked_keys.to_string(),
        s.error.clone().unwrap_or_default(),
    ];
    fields
        .iter()
        .map(|f| plumbline_report::csv_field(f))
        .collect::<Vec<_>>()
        .join(",")
}

pub fn run(args: &StreamArgs, shutdown: &Shutdown) -> Result<Verdict> {
    ensure!(
        args.data_size_bytes.iter().all(|&s| s > 0 && s <= 1 << 30),
        "--data-size-bytes: each size must be 1 byte to 1 GiB"
    );
    // A store folder made here (none named) is removed when this returns.
    let (store_url, _made_store) = store_url(args)?;
    let exe = std::env::current_exe().context("finding the plumbline binary")?;
    let compute = compute_workers(args, exe)?;
    let limits = args.limits.for_command(Command::Stream)?;
    let session = Session::start("stream", &args.out, None)?;
    let mut record = Record::new(
        Command::Stream,
        crate::session::command_line(),
        plumbline_measure::report::Host::current(),
    );
    let mut n = 0;
    println!(
        "{:>8} {:>9} {:>6} {:>10} {:>10} {:>9} {:>9} {:>10} {:>12} {:>12}",
        "method",
        "size",
        "done",
        "makespan",
        "ideal",
        "overhead",
        "p99",
        "broker/item",
        "store MB",
        "leaked keys"
    );
    for &method in &args.stream_method {
        for &size in &args.data_size_bytes {
            for repeat in 0..args.repeat {
                if shutdown.requested() {
                    break;
                }
                n += 1;
                let stream = Stream {
                    config: stream_config(args, n)?,
                    store: (method == StreamMethod::Proxy).then(|| store_url.clone()),
                    method: match method {
                        StreamMethod::Default => Method::Default,
                        StreamMethod::Proxy => Method::Proxy,
                    },
                    prefix: format!("plumbline-{}-{n}-", std::process::id()),
                    workers: (args.max_workers - 1) as usize,
                    compute: compute.clone(),
                    task_sleep: args.task_sleep,
                    connect_timeout: args.connect_timeout,
                    password: args.login.password.clone(),
                    tls_ca: args.login.tls_ca.clone(),
                };
                // psbench's items: `size` bytes of data, seeded by the repetition.
                let load = Load {
                    workload: Workload::Random { size, keys: 1 },
                    keys: KeyDist::Uniform,
                    seed: repeat,
                    items: args.task_count,
                    shape: plumbline_load::Shape::at(stream.offered_rate()),
                };
                session.live().begin_run(RunInfo {
                    label: format!(
                        "experiment {n}: {} x {} B by {method:?} over {:?} on {} compute {}",
                        args.task_count,
                        size,
                        args.stream,
                        stream.workers,
                        compute.noun()
                    ),
                    workers: stream.workers,
                    total: Some(args.task_count),
                    target_per_s: load.shape.mean_rate(),
                });
                let (figures, extra) = stream.experiment(&load, session.live(), shutdown)?;
                let run = run_record(&stream, &load, &figures, extra)
                    .with_intervals(session.live().run_intervals());
                let s = run.stream.as_ref().expect("a stream run has its section");
                println!(
                    "{:>8} {:>9} {:>6} {:>10} {:>10} {:>9} {:>9} {:>10.0}B {:>12.1} {:>12}{}",
                    s.stream_method,
                    size,
                    format!("{}/{}", run.delivered.unwrap_or(0), args.task_count),
                    secs(run.wall_s),
                    secs(run.ideal_s.unwrap_or(0.0)),
                    run.overhead_pct.map_or("-".into(), |o| format!("{o:.2}%")),
                    secs(run.latency_s.p99),
                    s.broker_bytes_per_item,
                    s.store_bytes as f64 / 1e6,
                    s.leaked_keys,
                    s.error
                        .as_deref()
                        .map(|e| format!("  ({e})"))
                        .unwrap_or_default()
                );
                if let Some(path) = &args.csv_file {
                    append_csv(path, &csv(args, &run, s))?;
                }
                record.runs.push(run);
            }
        }
    }
    if let Some(path) = &args.json {
        std::fs::write(path, record.to_json())
            .with_context(|| format!("writing {}", path.display()))?;
    }
    session.finish(Outcome {
        runs: plumbline_report::rows(&record),
        resolved: serde_json::json!({
            "stream": format!("{:?}", args.stream).to_lowercase(),
            "stream_servers": args.stream_servers,
            "stream_method": args.stream_method.iter().map(|m| format!("{m:?}").to_lowercase()).collect::<Vec<_>>(),
            "data_size_bytes": args.data_size_bytes,
            "task_count": args.task_count,
            "task_sleep_s": args.task_sleep.as_secs_f64(),
            "max_workers": args.max_workers,
            "executor": compute.executor(),
            "repeat": args.repeat,
            "ps_connector": format!("{:?}", args.ps_connector).to_lowercase(),
        }),
        seeds: (0..args.repeat).collect(),
        detail: serde_json::to_value(&record)?,
    })?;
    let failures: Vec<String> = record
        .runs
        .iter()
        .filter_map(|r| Some((r, r.stream.as_ref()?)))
        .filter(|(r, s)| r.lost > 0 || s.leaked_keys > 0 || s.error.is_some())
        .map(|(r, s)| {
            format!(
                "{} {} B: {} of {} lost, {} keys leaked{}",
                s.stream_method,
                s.data_size_bytes,
                r.lost,
                args.task_count,
                s.leaked_keys,
                s.error
                    .as_deref()
                    .map(|e| format!(": {e}"))
                    .unwrap_or_default()
            )
        })
        .collect();
    Ok(Verdict::of(shutdown.requested(), failures).held_to(limits, &record))
}

/// One experiment as its run record: its ideal the stream engine's, latency from each item's
/// intended emission to its task's end.
fn run_record(stream: &Stream, load: &Load, f: &RunFigures, extra: StreamFigures) -> RunRecord {
    let wall_s = f.wall.as_secs_f64();
    RunRecord {
        items: Some(load.items),
        sent: Some(f.sent),
        delivered: Some(f.delivered),
        lost: f.lost,
        duplicates: f.duplicates,
        target_per_s: load.shape.mean_rate(),
        achieved_per_s: per_s(f.delivered as f64, wall_s),
        latency_s: f.latency.clone(),
        latency_intervals: Vec::new(),
        interrupted: f.interrupted,
        stream: Some(StreamSection {
            stream: stream.config.kind().to_string(),
            stream_method: format!("{:?}", stream.method).to_lowercase(),
            data_size_bytes: load.workload.payload_size(),
            task_sleep_s: stream.task_sleep.as_secs_f64(),
            repeat: load.seed,
            broker_bytes: extra.broker_bytes,
            broker_bytes_per_item: extra.broker_bytes as f64 / load.items.max(1) as f64,
            store_bytes: extra.store_bytes,
            leaked_keys: extra.leaked_keys,
            error: extra.error,
            start_submit_tasks_timestamp: extra.started_unix_s,
            end_tasks_done_timestamp: extra.started_unix_s + wall_s,
            executor: stream.compute.executor().to_string(),
            compute_pids: extra.pids,
        }),
        per_worker: f.per_worker.clone(),
        ..RunRecord::new(stream.workers, wall_s)
    }
    .with_ideal(Some(stream.ideal(load).as_secs_f64()))
}

/// How psbench's `--executor` (and `--parsl-executor`) run the compute workers on this host:
/// threads, or processes of `exe`. Globus Compute runs them elsewhere: refused, naming what
/// to use instead.
fn compute_workers(args: &StreamArgs, exe: PathBuf) -> Result<ComputeWorkers> {
    const GLOBUS: &str = "--executor globus: plumbline runs compute workers locally, as \
        threads or processes of this host, never on a Globus Compute endpoint; for worker \
        processes use --executor parsl --parsl-executor htex-local (or --executor process), \
        for threads --executor thread";
    let processes = match (args.executor, args.parsl_executor) {
        (Some(Executor::Globus), _) => bail!(GLOBUS),
        _ if args.globus_compute_endpoint.is_some() => bail!(GLOBUS),
        (Some(Executor::Parsl) | None, Some(parsl)) => parsl == ParslExecutor::HtexLocal,
        (Some(Executor::Parsl), None) => bail!(
            "--executor parsl needs --parsl-executor thread or htex-local (as psbench's does)"
        ),
        (Some(other), Some(_)) => bail!(
            "--parsl-executor goes with --executor parsl, not --executor {}",
            format!("{other:?}").to_lowercase()
        ),
        (Some(Executor::Process), None) => true,
        (Some(Executor::Thread) | None, None) => false,
    };
    Ok(match processes {
        true => ComputeWorkers::Processes { exe },
        false => ComputeWorkers::Threads,
    })
}

/// Appends `row`; a new file gets the header first, and a file whose header is another is
/// refused (a row under the wrong columns would be read wrong).
fn append_csv(path: &Path, row: &str) -> Result<()> {
    let new = !path.exists();
    if !new {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        if let Some(header) = text.lines().next().filter(|h| *h != CSV_HEADER) {
            bail!(
                "--csv-file {}: its columns ({}…) are not this plumbline's (psbench's, then \
                 plumbline's own): give a new file",
                path.display(),
                header.chars().take(40).collect::<String>()
            );
        }
    }
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    if new {
        writeln!(file, "{CSV_HEADER}")?;
    }
    writeln!(file, "{row}").with_context(|| format!("writing {}", path.display()))
}

/// The broker URL of experiment `n`: a fresh stream, topic or subject each time.
fn stream_config(args: &StreamArgs, n: usize) -> Result<TransportConfig> {
    let server = loopback(args, &args.stream_servers);
    let name = format!("plumbline-stream-{}-{n}", std::process::id());
    let (scheme, mode) = match args.stream {
        StreamKind::Redis => ("redis", Some("mode=pubsub")),
        StreamKind::RedisStreams => ("redis", Some("mode=streams")),
        StreamKind::Kafka => ("kafka", None),
        StreamKind::Nats => ("nats", None),
        StreamKind::Jetstream => ("nats", Some("jetstream=1")),
    };
    let query: Vec<&str> = mode
        .into_iter()
        .chain(tls(args).then_some("tls=1"))
        .collect();
    let url = match query.is_empty() {
        true => format!("{scheme}://{server}/{name}"),
        false => format!("{scheme}://{server}/{name}?{}", query.join("&")),
    };
    url.parse()
        .with_context(|| format!("--stream-servers {}", args.stream_servers))
}

/// Whether the stream and a Redis store are reached over TLS: `--tls`, or a `--tls-ca` given
/// (a CA makes no sense in plaintext, which would silently not be what was meant).
fn tls(args: &StreamArgs) -> bool {
    args.tls || args.login.tls_ca.is_some()
}

/// `localhost` as 127.0.0.1 (whatever IPv6 resolution says), except over TLS, where the name
/// is what the server's certificate is checked against.
fn loopback(args: &StreamArgs, host: &str) -> String {
    match tls(args) {
        true => host.to_string(),
        false => host.replace("localhost", "127.0.0.1"),
    }
}

/// The store URL proxy mode uses, and the folder made for a file store when `--ps-dir` names
/// none (removed with what is in it when dropped; a folder the user named is left alone).
fn store_url(args: &StreamArgs) -> Result<(String, Option<tempfile::TempDir>)> {
    let redis_stream = matches!(args.stream, StreamKind::Redis | StreamKind::RedisStreams);
    let connector = args.ps_connector.unwrap_or(if redis_stream {
        PsConnector::Redis
    } else {
        PsConnector::File
    });
    Ok(match connector {
        PsConnector::File => match &args.ps_dir {
            Some(dir) => (format!("file://{}", dir.display()), None),
            None => {
                let made = tempfile::Builder::new()
                    .prefix("plumbline-store-")
                    .tempdir()
                    .context("making the file store's folder under the temp dir")?;
                (format!("file://{}", made.path().display()), Some(made))
            }
        },
        PsConnector::Redis => {
            let (host, port) = match (&args.ps_host, args.ps_port) {
                (Some(h), Some(p)) => (h.clone(), p),
                (None, None) if redis_stream => {
                    let (h, p) = args
                        .stream_servers
                        .rsplit_once(':')
                        .context("--stream-servers is not host:port")?;
                    (h.to_string(), p.parse().context("--stream-servers port")?)
                }
                _ => bail!("--ps-connector redis needs --ps-host and --ps-port"),
            };
            let scheme = if tls(args) { "rediss" } else { "redis" };
            (format!("{scheme}://{}:{port}", loopback(args, &host)), None)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser as _;

    fn compute(flags: &[&str]) -> Result<ComputeWorkers> {
        let line = ["plumbline", "stream"].iter().chain(flags);
        match crate::args::Cli::try_parse_from(line).unwrap().command {
            crate::args::Command::Stream(args) => compute_workers(&args, "exe".into()),
            _ => unreachable!("a stream command line"),
        }
    }

    #[test]
    fn psbenchs_executors_run_compute_workers_as_threads_or_processes() {
        let processes = ComputeWorkers::Processes { exe: "exe".into() };
        for (flags, expected) in [
            (&[][..], ComputeWorkers::Threads),
            (&["--executor", "thread"], ComputeWorkers::Threads),
            (&["--executor", "process"], processes.clone()),
            (
                &["--executor", "parsl", "--parsl-executor", "thread"],
                ComputeWorkers::Threads,
            ),
            (
                &["--executor", "parsl", "--parsl-executor", "htex-local"],
                processes.clone(),
            ),
            (&["--parsl-executor", "htex-local"], processes.clone()),
        ] {
            assert_eq!(compute(flags).unwrap(), expected, "{flags:?}");
        }
    }

    #[test]
    fn globus_and_half_given_executors_are_refused_saying_what_to_use() {
        for flags in [
            &["--executor", "globus"][..],
            &["--executor", "globus", "--globus-compute-endpoint", "ABCD"],
            &["--globus-compute-endpoint", "ABCD"],
        ] {
            let e = compute(flags).unwrap_err().to_string();
            assert!(
                e.contains("locally") && e.contains("--parsl-executor htex-local"),
                "{flags:?}: {e}"
            );
        }
        let e = compute(&["--executor", "parsl"]).unwrap_err().to_string();
        assert!(e.contains("needs --parsl-executor"), "{e}");
        let e = compute(&["--executor", "thread", "--parsl-executor", "thread"]).unwrap_err();
        assert!(e.to_string().contains("not --executor thread"), "{e}");
    }
}
