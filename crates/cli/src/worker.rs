//! `plumbline worker` and `plumbline shutdown`: machida-style flags turned into a
//! [`NodeConfig`], and the shutdown client. The cluster itself is plumbline-worker's `node`.
//! An initializer refuses to start with its control plane beyond loopback and no token
//! (protected mode), and says at start which data-plane listeners are open to the network.

use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, ensure, Context, Result};
use plumbline_core::Shutdown;
use plumbline_measure::{Live, RunInfo};
use plumbline_transport::tcp::is_loopback;
use plumbline_worker::announce::Announcer;
use plumbline_worker::node::wire::{recv_hello, Control};
use plumbline_worker::node::{self, protect, NodeConfig, Role};
use plumbline_worker::{App, Work};

use crate::args::{ReportArgs, ShrinkArgs, ShutdownArgs, WorkerArgs};
use crate::bench::Verdict;
use crate::brokers;
use crate::session::{warn_if_exposed, Session};

pub fn run(args: &WorkerArgs, stop: &Shutdown) -> Result<Verdict> {
    let config = config(args)?;
    if let Role::Initializer {
        source,
        control,
        data,
        external,
        metrics,
        token,
        ..
    } = &config.role
    {
        // Before the --ui page binds: the node checks its own listeners again as it starts.
        let mut guarded = protect::control_plane(control, external.as_deref(), metrics.as_deref());
        guarded.extend(args.ui.as_deref().map(|addr| protect::Guarded {
            flag: "--ui",
            addr,
            exposes: "anyone who reaches it could read the cluster's live page and /metrics",
        }));
        protect::require_token(&guarded, token.is_some(), is_loopback).map_err(|e| anyhow!(e))?;
        // Allowed with a token: said all the same (the --ui page warns for itself).
        for listener in guarded.iter().filter(|l| l.flag != "--ui") {
            warn_if_exposed(
                listener.flag,
                listener.addr,
                "--token guards it, but its traffic is not encrypted",
            );
        }
        warn_exposed(source, data);
    }
    if let Role::Joiner { .. } = config.role {
        // A joiner blocks on its data connection; Ctrl-C leaves the cluster at once (the
        // initializer then reports this worker dead, which is the truth).
        let stop = stop.clone();
        std::thread::spawn(move || loop {
            if stop.requested() {
                tracing::warn!("interrupted: leaving the cluster");
                std::process::exit(130);
            }
            std::thread::sleep(Duration::from_millis(50));
        });
    }
    let ui = ReportArgs {
        report: None,
        ui: args.ui.clone(),
    };
    // Held until the node ends: the page serves as long as the worker runs.
    let _session = match &args.ui {
        Some(_) => {
            let (label, workers) = match &config.role {
                Role::Initializer { .. } => (
                    format!(
                        "cluster of {} worker(s), {} app",
                        args.worker_count, args.app
                    ),
                    args.worker_count,
                ),
                Role::Consumer {
                    source, options, ..
                } => (
                    format!(
                        "{} in group '{}' on {source}, {} app",
                        config.name, options.group, args.app
                    ),
                    1,
                ),
                Role::Joiner { .. } => {
                    bail!("--ui is the initializer's: only it sees the whole cluster")
                }
            };
            let session = Session::with_live("worker", &ui, None, config.live.clone())?;
            session.live().begin_run(RunInfo {
                label,
                workers,
                total: None,
                target_per_s: None,
            });
            Some(session)
        }
        None => None,
    };
    node::run(&config, stop)?;
    Ok(Verdict::Passed)
}

/// The start-up warning for the initializer's data-plane listeners that are not on loopback.
/// The control plane (--control, --external, --metrics, --ui) is refused there without a
/// token instead, by protected mode.
fn warn_exposed(source: &str, data: &str) {
    warn_if_exposed(
        "--in",
        source,
        "anyone who reaches it can feed the cluster items",
    );
    warn_if_exposed(
        "--data",
        data,
        "the cluster's items cross the network unencrypted (only joiners admitted on --control \
         get a ticket for it)",
    );
}

/// The initializer's `--metrics`, served by the live page's HTTP server (plumbline-ui), which
/// the worker crate cannot reach itself.
#[derive(Debug)]
struct UiMetrics;

impl node::MetricsServer for UiMetrics {
    fn serve(
        &self,
        listener: std::net::TcpListener,
        live: Arc<Live>,
        token: Option<String>,
    ) -> std::result::Result<Box<dyn Send>, String> {
        match plumbline_ui::serve_metrics(listener, live, token) {
            Ok(server) => Ok(Box::new(server)),
            Err(e) => Err(e.to_string()),
        }
    }
}

fn config(args: &WorkerArgs) -> Result<NodeConfig> {
    let app = match args.app.as_str() {
        "sleepy" | "sleepy_python" => App::Count,
        "votes" | "alphabet_partitioned" | "alphabet" => App::Votes,
        other => bail!("--app {other:?}: use sleepy (seed 000) or votes (seed 002)"),
    };
    let partitions = match (app, args.partitions) {
        (App::Votes, None | Some(26)) => 26,
        (App::Votes, Some(p)) => bail!("--partitions {p}: votes have one partition per letter, 26"),
        (App::Count, None) => 60,
        (App::Count, Some(p)) => {
            ensure!(p > 0, "--partitions 0: need at least one partition");
            p
        }
    };
    let delay = match (args.delay, args.delay_ms) {
        (Some(_), Some(_)) => bail!("give --delay or --delay_ms, not both"),
        (Some(d), None) => d,
        (None, Some(ms)) => Duration::from_millis(ms),
        (None, None) => Duration::ZERO,
    };
    let work: Work = args.work.parse().context("--work")?;
    if args.my_control.is_some() || args.my_data.is_some() {
        tracing::info!("--my-control/--my-data are accepted for machida compatibility; workers connect to the initializer and need no listeners");
    }
    let broker_in = args.input.as_deref().filter(|i| i.contains("://"));
    let role = if let Some(url) = broker_in {
        ensure!(
            !args.cluster_initializer,
            "--in {url} is a broker: its consumer group shares the work, so there is no \
             initializer; drop --cluster-initializer"
        );
        let source = url.parse().context("--in")?;
        Role::Consumer {
            options: brokers::listening(
                brokers::options(
                    &args.broker,
                    "worker",
                    args.max_frame as usize,
                    args.connect_timeout,
                ),
                &source,
                &args.intake,
                args.max_frame,
            )?,
            source,
            idle_timeout: args.idle_timeout,
        }
    } else if args.cluster_initializer {
        ensure!(
            !args.join_running,
            "--join-running is a joiner's: the initializer forms the cluster"
        );
        ensure!(
            args.worker_count >= 1,
            "--worker-count 0: a cluster has at least its initializer"
        );
        ensure!(
            args.worker_count <= 256,
            "--worker-count {}: at most 256",
            args.worker_count
        );
        Role::Initializer {
            source: args
                .input
                .clone()
                .context("the initializer needs --in ADDR for its sources")?,
            control: args
                .control
                .clone()
                .unwrap_or_else(|| "127.0.0.1:6000".into()),
            data: args.data.clone(),
            external: args.external.clone(),
            metrics: args.metrics.clone(),
            worker_count: args.worker_count,
            token: args.token.as_ref().map(|t| t.expose().to_string()),
            max_sources: args.intake.max_connections,
            intake: crate::receive::intake_limits(&args.intake, args.max_frame)?,
        }
    } else {
        if args.input.is_some()
            || args.metrics.is_some()
            || args.external.is_some()
            || args.announce.is_some()
        {
            tracing::info!("--in, --metrics, --external and --announce are the initializer's; this worker ignores them");
        }
        Role::Joiner {
            control: args
                .control
                .clone()
                .context("a joining worker needs --control, the initializer's control address")?,
            token: args.token.as_ref().map(|t| t.expose().to_string()),
            running: args.join_running,
        }
    };
    let default_name = if args.cluster_initializer && broker_in.is_none() {
        "initializer".to_string()
    } else {
        format!("worker-{}", std::process::id())
    };
    let name = args.name.clone().unwrap_or(default_name);
    let mut role = role;
    if let Role::Consumer { options, .. } = &mut role {
        options.consumer = name.clone();
    }
    ensure!(
        node::valid_name(&name),
        "--name {name:?}: a worker name is 1 to 64 of A-Z a-z 0-9 _ . -"
    );
    Ok(NodeConfig {
        name,
        app,
        partitions,
        work,
        delay,
        out: args.out.clone(),
        out_options: brokers::options(
            &args.broker,
            "worker-out",
            args.max_frame as usize,
            args.connect_timeout,
        ),
        ok: args.ok,
        versions: args.result_versions,
        balanced: args.balanced,
        role,
        max_frame: args.max_frame as usize,
        connect_timeout: args.connect_timeout,
        live: Arc::new(Live::new()),
        metrics_server: Some(Arc::new(UiMetrics)),
        announce: Announcer::open(args.announce.as_deref()).context("--announce")?,
        plant: match args.plant_fault.as_deref() {
            Some("drop") => Some(node::PlantedFault::Drop),
            Some("double") => Some(node::PlantedFault::Double),
            _ => None,
        },
    })
}

pub fn shutdown(args: &ShutdownArgs) -> Result<Verdict> {
    let token = args.token.as_ref().map(|t| t.expose().to_string());
    ask(
        &args.addr,
        args.timeout,
        "shutdown",
        Control::Shutdown { token },
    )
}

/// `plumbline shrink ADDR --worker NAME`.
pub fn shrink(args: &ShrinkArgs) -> Result<Verdict> {
    let token = args.token.as_ref().map(|t| t.expose().to_string());
    let request = Control::Shrink {
        worker: args.worker.clone(),
        token,
    };
    ask(&args.addr, args.timeout, "shrink", request)
}

/// Sends one request to the initializer's external port and prints its answer.
fn ask(addr: &str, timeout: Duration, what: &str, request: Control) -> Result<Verdict> {
    let addrs = plumbline_transport::tcp::resolve(addr)?;
    let stream = TcpStream::connect_timeout(&addrs[0], timeout)
        .with_context(|| format!("the cluster at {addr} does not answer"))?;
    request.send(&mut &stream)?;
    // One deadline for the whole reply, named when it passes ("no reply within 5s").
    match recv_hello(&stream, timeout, "reply") {
        Ok(Control::Reply { ok: true, message }) => {
            println!("{addr}: {message}");
            Ok(Verdict::Passed)
        }
        Ok(Control::Reply { ok: false, message }) => bail!("{addr}: {message}"),
        Ok(other) => bail!("{addr}: unexpected answer: a {}", other.kind()),
        Err(e) => bail!("{addr} did not answer the {what}: {e}"),
    }
}
