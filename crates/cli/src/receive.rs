//! `plumbline receive` (the seeds' `data_receiver`): listens, serves every connection on its own
//! thread through the worker crate's [`Receiver`] (at most `--max-connections`, each under the
//! `--read-timeout`/`--min-rate` deadline and the shared `--buffer-budget`), and stops on
//! `--expect` unique messages, `--idle-timeout` or Ctrl-C, then prints (and with `--json`
//! writes) the summary and judges it: loss fails the run, duplicates where the transport
//! promised at-most-once (or with `--fail-on-duplicates`). Decoding and measuring are the
//! receiver's; this file only runs the listener and decides when the run is over.

use std::collections::HashMap;
use std::net::{Shutdown as SocketShutdown, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{Context, Result};
use plumbline_core::intake::{ByteBudget, IntakeLimits};
use plumbline_core::Shutdown;
use plumbline_load::schedule::parse_rate;
use plumbline_measure::record::{
    ClockSection, Command, ReceiveSection, Record, RunRecord, Sequence,
};
use plumbline_measure::report::{per_s, secs};
use plumbline_measure::RunInfo;
use plumbline_transport::broker::{connect_consumer, BrokerIdentity, ConsumerStats, FrameSource};
use plumbline_transport::config::{Guarantee, TransportConfig};
use plumbline_transport::tcp;
use plumbline_worker::receiver::{Framing, ReceiveSummary, Receiver, ReceiverConfig};

use crate::args::{IntakeArgs, ReceiveArgs, ReceiveFraming};
use crate::bench::Verdict;
use crate::brokers;
use crate::progress::{Follow, RunProgress};
use crate::session::{Outcome, Session};

/// The limits `args` set on a listener's connections, checked against the largest frame.
pub fn intake_limits(args: &IntakeArgs, max_frame: u64) -> Result<IntakeLimits> {
    anyhow::ensure!(
        args.buffer_budget >= max_frame,
        "--buffer-budget {} is below --max-frame {max_frame}: a frame of the largest size could \
         never be buffered",
        args.buffer_budget
    );
    let budget = usize::try_from(args.buffer_budget).context("--buffer-budget")?;
    Ok(IntakeLimits::new(
        args.read_timeout,
        args.min_rate,
        std::sync::Arc::new(ByteBudget::new(budget)),
    ))
}

pub fn run(args: &ReceiveArgs, shutdown: &Shutdown) -> Result<Verdict> {
    let limits = args.limits.for_command(Command::Receive)?;
    let intake = intake_limits(&args.intake, args.max_frame)?;
    // Plain TCP promises at-most-once: a duplicate there is a fault, not a redelivery.
    let guarantee = match &args.from {
        Some(url) => url
            .parse::<TransportConfig>()
            .context("--from")?
            .guarantee(),
        None => Guarantee::AtMostOnce,
    };
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
    let clock = args
        .clock_ref
        .as_deref()
        .map(crate::clock::measure)
        .transpose()?;
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
            continuity: args.continuity,
            max_connections: args.intake.max_connections,
            // A broker's frames arrive whole: only a listener's peers are timed.
            intake: args.from.is_none().then_some(intake),
            clock_offset_ns: clock
                .as_ref()
                .map_or(0, |c| (c.offset_s * 1e9).round() as i64),
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
    if let Some(warning) = clock
        .as_ref()
        .and_then(|c| crate::clock::unsure(c, summary.latency_s.p50))
    {
        tracing::warn!("{warning}");
    }
    if let Some((stats, kafka_broker)) = &consumed {
        println!(
            "broker: {} delivered ({} redelivered), {} acknowledged, {} above --max-frame skipped, {} empty skipped, {} dropped by the client",
            stats.delivered, stats.redelivered, stats.acked, stats.oversized, stats.empty, stats.dropped
        );
        if stats.bad_peers + stats.refused > 0 {
            println!(
                "producer connections: {} closed for a bad frame ({} of them stalled), {} refused (--max-connections)",
                stats.bad_peers, stats.stalled, stats.refused
            );
            for reason in &stats.bad_reasons {
                println!("  {reason}");
            }
        }
        if let Some(broker) = kafka_broker {
            print!("{}", broker.text());
        }
    }
    let record = Record {
        runs: vec![record(args, &summary, consumed.as_ref(), clock.as_ref())?
            .with_intervals(live.run_intervals())],
        ..Record::new(
            Command::Receive,
            crate::session::command_line(),
            plumbline_measure::report::Host::current(),
        )
    };
    if let Some(path) = &args.json {
        std::fs::write(path, record.to_json())
            .with_context(|| format!("writing {}", path.display()))?;
    }
    session.finish(Outcome {
        runs: plumbline_report::rows(&record),
        resolved: serde_json::json!({
            "listen": args.listen,
            "from": args.from,
            "expect": args.expect,
            "continuity": args.continuity,
            "max_frame": args.max_frame,
            "throttle": args.throttle,
            "max_connections": args.intake.max_connections,
            "read_timeout_s": args.intake.read_timeout.as_secs_f64(),
            "min_rate": args.intake.min_rate,
            "buffer_budget": args.intake.buffer_budget,
        }),
        seeds: Vec::new(),
        detail: serde_json::to_value(&record)?,
    })?;
    let mut failures = Vec::new();
    if consumed.is_some() && summary.bad_connections > 0 {
        failures.push(format!(
            "the consumer failed: {}",
            summary.bad_reasons.join("; ")
        ));
    }
    failures.extend(judge(
        &summary,
        args.expect,
        guarantee,
        args.fail_on_duplicates,
    ));
    Ok(Verdict::of(false, failures).held_to(limits, &record))
}

/// What is wrong with a finished receive: fewer unique messages than expected, any loss, and
/// duplicates where the transport promised none (or the user asked for none).
fn judge(
    s: &ReceiveSummary,
    expect: Option<u64>,
    guarantee: Guarantee,
    fail_on_duplicates: bool,
) -> Vec<String> {
    let mut failures = Vec::new();
    if let Some(n) = expect.filter(|&n| s.unique < n) {
        failures.push(format!(
            "expected {n} messages, received {} ({} more were duplicates)",
            s.unique,
            s.frames - s.unique
        ));
    }
    if s.sequence.lost > 0 {
        failures.push(format!("{} messages lost", s.sequence.lost));
    }
    if let Some(c) = s.continuity.as_ref().filter(|c| c.violations > 0) {
        failures.push(format!(
            "state continuity broken {} time(s): {}",
            c.violations,
            c.examples.first().map_or("", String::as_str)
        ));
    }
    let dups = s.sequence.duplicates;
    if dups > 0 && guarantee == Guarantee::AtMostOnce {
        failures.push(format!(
            "{dups} messages duplicated by an {guarantee} transport, which never repeats one"
        ));
    } else if dups > 0 && fail_on_duplicates {
        failures.push(format!("{dups} messages duplicated (--fail-on-duplicates)"));
    }
    failures
}

/// Whether the run is over: Ctrl-C, `--expect` unique messages reached, or `--idle-timeout`
/// passed.
fn over(args: &ReceiveArgs, receiver: &Receiver, shutdown: &Shutdown) -> bool {
    shutdown.requested()
        || args.expect.is_some_and(|n| receiver.messages() >= n)
        || args.idle_timeout.is_some_and(|t| receiver.idle() >= t)
}

/// The receive as its run record: no ideal (the sender set the pace), `delivered` its unique
/// messages, latency from each message's intended send time.
fn record(
    args: &ReceiveArgs,
    s: &ReceiveSummary,
    consumed: Option<&(ConsumerStats, Option<BrokerIdentity>)>,
    clock: Option<&ClockSection>,
) -> Result<RunRecord> {
    // As shown everywhere: without a URL's password.
    let from = match (&args.from, &args.listen) {
        (Some(url), _) => plumbline_core::secret::redact_url(url),
        (None, listen) => listen.clone().unwrap_or_default(),
    };
    Ok(RunRecord {
        items: args.expect,
        delivered: Some(s.unique),
        lost: s.sequence.lost,
        duplicates: s.sequence.duplicates,
        achieved_per_s: per_s(s.unique as f64, s.duration_s),
        latency_s: s.latency_s.clone(),
        latency_intervals: Vec::new(),
        receive: Some(ReceiveSection {
            from,
            frames: s.frames,
            bytes: s.bytes,
            mb_per_s: s.mb_per_s,
            connections: s.connections,
            refused_connections: s.refused_connections,
            bad_connections: s.bad_connections,
            slow_connections: s.slow_connections,
            budget_waits: s.budget_waits,
            bad_reasons: s.bad_reasons.clone(),
            sequence: Sequence::from(&s.sequence),
            continuity: s.continuity.clone(),
            per_second: s.per_second.clone(),
            clock: clock.cloned(),
            broker: consumed
                .map(|(stats, _)| serde_json::to_value(stats))
                .transpose()?,
            kafka_broker: consumed
                .and_then(|(_, broker)| broker.as_ref())
                .map(serde_json::to_value)
                .transpose()?,
        }),
        ..RunRecord::new(1, s.duration_s)
    })
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
    crate::logs::result(format_args!("listening on {}", listener.local_addr()?));
    // Open connections by id, to cut them at the end; each removes itself when it ends.
    let open: Mutex<HashMap<u64, TcpStream>> = Mutex::new(HashMap::new());
    let mut next_id = 0u64;
    std::thread::scope(|scope| -> Result<()> {
        loop {
            match tcp::accept_or_nap(&listener) {
                Ok(Some((stream, peer))) => {
                    let Some(slot) = receiver.admit() else {
                        // Closed at once: a flood costs a descriptor for a moment, not a thread.
                        if receiver.refused() == 1 {
                            tracing::warn!(
                                "refused the connection from {peer}: {} are open \
                                 (--max-connections); further refusals are counted",
                                receiver.max_connections()
                            );
                        }
                        continue;
                    };
                    // Reads wake at least this often, so a stalled frame is judged on time.
                    let _ = stream.set_read_timeout(receiver.read_tick());
                    let clone = match stream.try_clone() {
                        Ok(clone) => clone,
                        Err(e) => {
                            tracing::warn!("dropped the connection from {peer}: {e}");
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
                            drop(slot);
                        });
                    if let Err(e) = started {
                        tracing::warn!("dropped the connection from {peer}: {e}");
                        open.lock().expect("no panics while held").remove(&id);
                    }
                    continue;
                }
                Ok(None) => {}
                Err(e) => tracing::warn!("accept failed: {e}"),
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
    let options = brokers::listening(
        brokers::options(
            &args.broker,
            "receive",
            args.max_frame as usize,
            args.connect_timeout,
        ),
        &config,
        &args.intake,
        args.max_frame,
    )?;
    let consumer =
        connect_consumer(&config, &options).with_context(|| format!("--from {config}"))?;
    tracing::info!(
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
    if let Some(p) = &s.per_second {
        out += &format!(
            "per second ({} full seconds): p1 {} p50 {} p99 {}\n",
            p.seconds, p.p1, p.p50, p.p99
        );
    }
    if s.unique != s.frames {
        out += &format!(
            "{} unique, {} duplicates (counted once towards --expect)\n",
            s.unique,
            s.frames - s.unique
        );
    }
    if s.refused_connections > 0 {
        out += &format!(
            "refused connections: {} (over --max-connections)\n",
            s.refused_connections
        );
    }
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
    if let Some(c) = &s.continuity {
        out += &format!(
            "state continuity: {} results on {} keys, {} violation(s), {} redelivered\n",
            c.checked, c.keys, c.violations, c.redelivered
        );
        for example in &c.examples {
            out += &format!("  {example}\n");
        }
        if c.violations > c.examples.len() as u64 {
            out += &format!("  … and {} more\n", c.violations - c.examples.len() as u64);
        }
    }
    if s.budget_waits > 0 {
        out += &format!(
            "connections waited {} times for --buffer-budget\n",
            s.budget_waits
        );
    }
    if s.bad_connections > 0 {
        out += &format!(
            "bad connections: {} ({} closed for a stalled frame: --read-timeout, --min-rate)\n",
            s.bad_connections, s.slow_connections
        );
        for reason in &s.bad_reasons {
            out += &format!("  {reason}\n");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(frames: u64, unique: u64, lost: u64, duplicates: u64) -> ReceiveSummary {
        let mut s: ReceiveSummary = serde_json::from_value(serde_json::json!({
            "frames": frames, "bytes": 0, "duration_s": 1.0, "frames_per_s": 0.0,
            "mb_per_s": 0.0, "unique": unique, "connections": 1, "refused_connections": 0,
            "bad_connections": 0, "slow_connections": 0, "budget_waits": 0, "bad_reasons": [],
            "latency_s": plumbline_measure::Recorder::new().summary(),
            "sequence": plumbline_measure::SeqSummary::default(),
        }))
        .unwrap();
        s.sequence.lost = lost;
        s.sequence.duplicates = duplicates;
        s
    }

    #[test]
    fn duplicates_fail_only_a_transport_that_promised_none_or_when_asked() {
        let redelivered = summary(160, 100, 0, 60);
        let at_least_once = judge(&redelivered, Some(100), Guarantee::AtLeastOnce, false);
        assert!(at_least_once.is_empty(), "{at_least_once:?}");
        let asked = judge(&redelivered, Some(100), Guarantee::AtLeastOnce, true);
        assert_eq!(asked, ["60 messages duplicated (--fail-on-duplicates)"]);
        let tcp = judge(&redelivered, Some(100), Guarantee::AtMostOnce, false);
        assert_eq!(
            tcp,
            ["60 messages duplicated by an at-most-once transport, which never repeats one"]
        );
    }

    #[test]
    fn loss_and_a_short_count_always_fail() {
        let short = summary(95, 90, 10, 5);
        assert_eq!(
            judge(&short, Some(100), Guarantee::AtLeastOnce, false),
            [
                "expected 100 messages, received 90 (5 more were duplicates)",
                "10 messages lost"
            ]
        );
    }
}
