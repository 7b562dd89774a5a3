//! `plumbline receive` (the seeds' `data_receiver`): listens, serves every connection on its own
//! thread through the worker crate's [`Receiver`], and stops on `--expect`, `--idle-timeout` or
//! Ctrl-C, then prints (and with `--json` writes) the summary. Decoding and measuring are the
//! receiver's; this file only runs the listener and decides when the run is over.

use std::collections::HashMap;
use std::net::{Shutdown as SocketShutdown, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{Context, Result};
use plumbline_core::Shutdown;
use plumbline_load::schedule::parse_rate;
use plumbline_measure::report::secs;
use plumbline_measure::RunInfo;
use plumbline_report::Run;
use plumbline_transport::broker::{connect_consumer, BrokerIdentity, ConsumerStats, FrameSource};
use plumbline_transport::config::TransportConfig;
use plumbline_transport::tcp;
use plumbline_worker::receiver::{Framing, ReceiveSummary, Receiver, ReceiverConfig};

use crate::args::{ReceiveArgs, ReceiveFraming};
use crate::bench::Verdict;
use crate::brokers;
use crate::progress::{Follow, RunProgress};
use crate::session::{Outcome, Session};

pub fn run(args: &ReceiveArgs, shutdown: &Shutdown) -> Result<Verdict> {
    let throttle = args
        .throttle
        .as_deref()
        .map(parse_rate)
        .transpose()
        .context("--throttle")?
        .flatten();
    let session = Session::start("receive", &args.out, None)?;
    let live = session.live().clone();
    live.begin_run(RunInfo {
        label: match (&args.from, &args.listen) {
            (Some(url), _) => format!("receive from {url}"),
            (None, listen) => format!("receive on {}", listen.as_deref().unwrap_or("?")),
        },
        workers: 1,
        total: args.expect,
        target_per_s: None,
    });
    // A receiver sees only what arrives.
    live.in_flight_unknown();
    let receiver = Receiver::with_live(
        ReceiverConfig {
            framing: match args.framing {
                ReceiveFraming::Auto => Framing::Auto,
                ReceiveFraming::Raw => Framing::Raw,
                ReceiveFraming::Plumbline => Framing::Plumbline,
            },
            max_frame: args.max_frame as usize,
            print: args.print,
            throttle,
            track_results: false,
        },
        live.clone(),
    );
    let progress = RunProgress::new(
        args.quiet || args.print,
        args.expect,
        "receiving".into(),
        &live,
        Follow::Out,
    );
    let consumed = progress.track(|| match (&args.from, &args.listen) {
        (Some(url), _) => serve_broker(args, url, &receiver, shutdown).map(Some),
        (None, Some(listen)) => serve_tcp(args, listen, &receiver, shutdown).map(|()| None),
        (None, None) => Err(anyhow::anyhow!(
            "--listen or --from is required: where to receive"
        )),
    })?;
    progress.finish("");
    let summary = receiver.summary(args.expect);
    print!("{}", text(&summary));
    if let Some((stats, kafka_broker)) = &consumed {
        println!(
            "broker: {} delivered ({} redelivered), {} acknowledged, {} above --max-frame skipped, {} empty skipped, {} dropped by the client",
            stats.delivered, stats.redelivered, stats.acked, stats.oversized, stats.empty, stats.dropped
        );
        if let Some(broker) = kafka_broker {
            print!("{}", broker.text());
        }
    }
    let mut json = serde_json::to_value(&summary)?;
    if let Some((stats, kafka_broker)) = &consumed {
        json["broker"] = serde_json::to_value(stats)?;
        if let Some(broker) = kafka_broker {
            json["kafka_broker"] = serde_json::to_value(broker)?;
        }
    }
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&json)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    session.finish(Outcome {
        runs: vec![report_run(args, &summary)],
        resolved: serde_json::json!({
            "listen": args.listen,
            "from": args.from,
            "expect": args.expect,
            "max_frame": args.max_frame,
            "throttle": args.throttle,
        }),
        seeds: Vec::new(),
        detail: json,
    })?;
    let mut failures = Vec::new();
    if consumed.is_some() && summary.bad_connections > 0 {
        failures.push(format!(
            "the consumer failed: {}",
            summary.bad_reasons.join("; ")
        ));
    }
    if let Some(n) = args.expect {
        if summary.frames < n {
            failures.push(format!(
                "expected {n} messages, received {}",
                summary.frames
            ));
        }
    }
    if summary.sequence.lost > 0 || summary.sequence.duplicates > 0 {
        failures.push(format!(
            "{} messages lost, {} duplicated",
            summary.sequence.lost, summary.sequence.duplicates
        ));
    }
    Ok(if failures.is_empty() {
        Verdict::Passed
    } else {
        Verdict::Failed(failures)
    })
}

/// Whether the run is over: Ctrl-C, `--expect` reached, or `--idle-timeout` passed.
fn over(args: &ReceiveArgs, receiver: &Receiver, shutdown: &Shutdown) -> bool {
    shutdown.requested()
        || args.expect.is_some_and(|n| receiver.frames() >= n)
        || args.idle_timeout.is_some_and(|t| receiver.idle() >= t)
}

/// The receive as one report row: no ideal (the sender set the pace), latency from each
/// message's intended send time.
fn report_run(args: &ReceiveArgs, s: &ReceiveSummary) -> Run {
    Run {
        label: "receive".into(),
        group: format!("receive from {}", args.from.as_deref().unwrap_or("tcp")),
        workers: 1,
        items: s.frames,
        wall_s: s.duration_s,
        ideal_s: None,
        overhead_pct: None,
        speedup: None,
        ideal_speedup: None,
        items_per_s: s.frames_per_s,
        lost: s.sequence.lost,
        duplicates: s.sequence.duplicates,
        latency_s: (s.latency_s.count > 0).then(|| s.latency_s.clone()),
        per_worker: Vec::new(),
    }
}

/// Listens on `listen` and serves every connection until the run is over.
fn serve_tcp(
    args: &ReceiveArgs,
    listen: &str,
    receiver: &Receiver,
    shutdown: &Shutdown,
) -> Result<()> {
    let listener = tcp::listen(listen)?;
    listener.set_nonblocking(true)?;
    eprintln!("listening on {}", listener.local_addr()?);
    // Open connections by id, to cut them at the end; each removes itself when it ends.
    let open: Mutex<HashMap<u64, TcpStream>> = Mutex::new(HashMap::new());
    let mut next_id = 0u64;
    std::thread::scope(|scope| -> Result<()> {
        loop {
            match tcp::accept_or_nap(&listener) {
                Ok(Some((stream, peer))) => {
                    let clone = match stream.try_clone() {
                        Ok(clone) => clone,
                        Err(e) => {
                            eprintln!("warning: dropped the connection from {peer}: {e}");
                            continue;
                        }
                    };
                    let id = next_id;
                    next_id += 1;
                    open.lock().expect("no panics while held").insert(id, clone);
                    let (receiver, open) = (&receiver, &open);
                    let started = std::thread::Builder::new()
                        .name(format!("conn-{peer}"))
                        .spawn_scoped(scope, move || {
                            receiver.serve(stream, &peer.to_string());
                            open.lock().expect("no panics while held").remove(&id);
                        });
                    if let Err(e) = started {
                        eprintln!("warning: dropped the connection from {peer}: {e}");
                        open.lock().expect("no panics while held").remove(&id);
                    }
                    continue;
                }
                Ok(None) => {}
                Err(e) => eprintln!("warning: accept failed: {e}"),
            }
            if over(args, receiver, shutdown) {
                break;
            }
        }
        // Unblock every connection thread; the scope then joins them.
        receiver.stop();
        for stream in open.lock().expect("no panics while held").values() {
            let _ = stream.shutdown(SocketShutdown::Both);
        }
        Ok(())
    })
}

/// Consumes from the broker at `url` until the run is over; returns what the consumer saw,
/// and which Kafka broker it was.
fn serve_broker(
    args: &ReceiveArgs,
    url: &str,
    receiver: &Receiver,
    shutdown: &Shutdown,
) -> Result<(ConsumerStats, Option<BrokerIdentity>)> {
    let config: TransportConfig = url.parse().context("--from")?;
    let options = brokers::options(
        &args.broker,
        "receive",
        args.max_frame as usize,
        args.connect_timeout,
    );
    let consumer =
        connect_consumer(&config, &options).with_context(|| format!("--from {config}"))?;
    eprintln!(
        "consuming from {config} ({}) in group '{}'",
        config.guarantee(),
        options.group
    );
    let kafka_broker = brokers::identify(&config, &options);
    let stop = AtomicBool::new(false);
    let mut source = FrameSource::new(consumer, || stop.load(Ordering::Relaxed));
    std::thread::scope(|scope| {
        let reader = scope.spawn(|| receiver.serve(&mut source, &config.to_string()));
        while !reader.is_finished() && !over(args, receiver, shutdown) {
            std::thread::sleep(Duration::from_millis(20));
        }
        receiver.stop();
        stop.store(true, Ordering::Relaxed);
    });
    Ok((source.stats(), kafka_broker))
}

fn text(s: &ReceiveSummary) -> String {
    let mut out =
        format!(
        "received {} messages ({:.1} MB of payload) on {} connection(s) in {:.3}s: {:.1} msg/s, \
         {:.2} MB/s\n",
        s.frames, s.bytes as f64 / 1e6, s.connections, s.duration_s, s.frames_per_s, s.mb_per_s
    );
    if s.latency_s.count > 0 {
        out += &format!(
            "latency (receive - intended send): p50 {} p99 {} p99.9 {} max {}\n",
            secs(s.latency_s.p50),
            secs(s.latency_s.p99),
            secs(s.latency_s.p999),
            secs(s.latency_s.max)
        );
        let q = &s.sequence;
        out += &format!(
            "sequence: {} lost, {} duplicated, {} out of order, {} too late to tell ({} source(s))\n",
            q.lost, q.duplicates, q.reordered, q.too_late, q.sources
        );
        if !q.missing.is_empty() {
            out += &format!("never arrived (first runs): {}\n", q.missing.join(", "));
        }
    }
    if s.bad_connections > 0 {
        out += &format!("bad connections: {}\n", s.bad_connections);
        for reason in &s.bad_reasons {
            out += &format!("  {reason}\n");
        }
    }
    out
}
