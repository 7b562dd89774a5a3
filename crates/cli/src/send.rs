//! `plumbline send`: turns Giles-style flags into a [`SendPlan`], connects, runs the open-loop
//! sender and reports target against achieved. The pacing itself is plumbline-load's; reading
//! seed files into records happens here, once, before the clock starts.

use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, ensure, Context, Result};
use bytes::Bytes;
use plumbline_core::frame::{FrameCodec, FrameReader, DEFAULT_MAX_FRAME, HEADER_LEN};
use plumbline_core::header;
use plumbline_core::secret::redact_url;
use plumbline_core::Shutdown;
use plumbline_load::schedule::parse_rate;
use plumbline_load::sender::{self, Framing, Payloads, SendPlan, SendTally};
use plumbline_load::{KeyDist, Shape, Workload};
use plumbline_measure::record::{
    Command, PerSecond, Record, RunRecord, SegmentFigures, SendSection,
};
use plumbline_measure::report::{pct_above, per_s, secs};
use plumbline_measure::{Live, RunInfo};
use plumbline_transport::broker::{connect_producer, FramePublisher};
use plumbline_transport::config::TransportConfig;
use plumbline_transport::tcp;

use crate::args::{Format, SendArgs, SendFraming};
use crate::bench::Verdict;
use crate::brokers::{self, ProducerReport};
use crate::progress::{Follow, RunProgress};
use crate::session::{Outcome, Session};

/// Most bytes of files loaded for replay.
const MAX_FILE_BYTES: u64 = 1 << 30;

pub fn run(args: &SendArgs, shutdown: &Shutdown) -> Result<Verdict> {
    let limits = args.limits.for_command(Command::Send)?;
    let (payloads, payload_bytes) = payloads(args)?;
    let framing = match args.framing.unwrap_or(if args.gen.is_some() {
        SendFraming::Plumbline
    } else {
        SendFraming::Raw
    }) {
        SendFraming::Raw => Framing::Raw,
        SendFraming::Plumbline => Framing::Plumbline {
            source: (header::unix_now_ns() as u32) ^ std::process::id().rotate_left(16),
        },
    };
    let wire_bytes = HEADER_LEN
        + payload_bytes
        + if matches!(framing, Framing::Plumbline { .. }) {
            header::HEADER_LEN
        } else {
            0
        };
    let shape = shape(args, wire_bytes)?;
    shape.validate()?;
    let duration = args.duration.or(shape.duration());
    let finite_records = matches!(&payloads, Payloads::Records { repeat: false, .. });
    ensure!(
        args.messages.is_some() || duration.is_some() || finite_records || args.dry_run,
        "nothing says when to stop: give --messages, --duration or a shape with its own length"
    );
    if args.dry_run {
        print!("{}", shape.describe(wire_bytes));
        if let Some(rate) = shape.mean_rate() {
            println!(
                "mean {rate:.1} msgs/s, {:.3} MB/s at {wire_bytes} bytes per message",
                rate * wire_bytes as f64 / 1e6
            );
        }
        return Ok(Verdict::Passed);
    }
    ensure!(
        !args.host.is_empty() || args.to.is_some(),
        "--host or --to is required: where to send"
    );
    let connections = args.connections.unwrap_or(args.host.len().max(1));
    ensure!(
        connections > 0,
        "--connections 0: need at least one connection"
    );
    ensure!(
        connections <= 1024,
        "--connections {connections}: at most 1024"
    );
    let share = args.split;
    let clock = args
        .clock_ref
        .as_deref()
        .map(crate::clock::measure)
        .transpose()?;
    let plan = SendPlan {
        shape: shape.clone(),
        payloads,
        framing,
        messages: args.messages,
        duration,
        late_after: args.late_after,
        share,
        start_at_unix_ns: args.start_at,
        clock_offset_ns: clock
            .as_ref()
            .map_or(0, |c| (c.offset_s * 1e9).round() as i64),
    };
    // This sender's part of the whole schedule.
    let expected = args
        .messages
        .or_else(|| {
            let rate = shape.mean_rate()?;
            Some((rate * duration?.as_secs_f64()).round() as u64)
        })
        .map(|n| share.count(n));
    let session = Session::start("send", &args.out, None)?;
    let live = session.live();
    live.begin_run(RunInfo {
        label: format!(
            "send to {}",
            args.to.clone().unwrap_or_else(|| args.host.join(","))
        ),
        workers: connections,
        total: expected,
        target_per_s: shape.mean_rate().map(|r| share.rate(r)),
    });
    // Nothing here sees messages come out at the far end.
    live.in_flight_unknown();
    let (tally, mut errors, broker) = match &args.to {
        None => {
            let mut streams = Vec::with_capacity(connections);
            for c in 0..connections {
                let host = &args.host[c % args.host.len()];
                streams.push(tcp::connect(host, args.connect_timeout)?);
            }
            let progress = progress(args, expected, connections, "connection(s)", live);
            let open = |c: usize| {
                tcp::connect(&args.host[c % args.host.len()], args.connect_timeout)
                    .map_err(std::io::Error::other)
            };
            let reconnect = sender::Reconnect {
                open: &open,
                within: args.connect_timeout,
            };
            let (tally, errors) = progress.track(|| {
                sender::send_reconnecting(
                    &plan,
                    streams,
                    args.reconnect.then_some(&reconnect),
                    shutdown,
                    live,
                )
            });
            progress.finish("");
            let errors: Vec<String> = errors.iter().map(ToString::to_string).collect();
            (tally, errors, None)
        }
        Some(url) => {
            let config: TransportConfig = url.parse().context("--to")?;
            let options = brokers::options(
                &args.broker,
                "send",
                DEFAULT_MAX_FRAME,
                args.connect_timeout,
            );
            let mut publishers = Vec::with_capacity(connections);
            for _ in 0..connections {
                let producer = connect_producer(&config, &options)
                    .with_context(|| format!("--to {config}"))?;
                publishers.push(FramePublisher::new(producer, DEFAULT_MAX_FRAME));
            }
            let progress = progress(args, expected, connections, "producer(s)", live);
            let (tally, errors) = progress
                .track(|| sender::send(&plan, publishers.iter_mut().collect(), shutdown, live));
            progress.finish("");
            let mut errors: Vec<String> = errors.iter().map(ToString::to_string).collect();
            for publisher in &mut publishers {
                if let Err(e) = publisher.finish(brokers::FINISH_TIMEOUT) {
                    errors.push(format!("{config}: {e}"));
                }
            }
            let stats: Vec<_> = publishers.iter().map(|p| p.producer().stats()).collect();
            let kafka_broker = brokers::identify(&config, &options);
            (
                tally,
                errors,
                Some(ProducerReport::new(&config, &stats, kafka_broker)),
            )
        }
    };
    // As shown everywhere: without a URL's password.
    let to = redact_url(&args.to.clone().unwrap_or_else(|| args.host.join(",")));
    let run = RunRecord {
        items: expected,
        lost: broker.as_ref().map_or(0, |b| b.failed),
        ..record(&tally, &shape, &plan, connections, shutdown.requested(), to)
    };
    let send = run.send.as_ref().expect("a send's record has its section");
    print!("{}", text(&run, send));
    if let Some(broker) = &broker {
        print!("{}", broker.text());
        if broker.failed > 0 {
            errors.push(format!(
                "the broker refused or never acknowledged {} message(s)",
                broker.failed
            ));
        }
    }
    let broker = broker.map(|b| serde_json::to_value(&b)).transpose()?;
    let run = RunRecord {
        send: Some(SendSection {
            broker,
            clock,
            ..send.clone()
        }),
        ..run
    };
    let interrupted = run.interrupted;
    let record = Record {
        seed: args.gen.is_some().then_some(args.seed),
        runs: vec![run],
        ..Record::new(
            Command::Send,
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
            "shape": shape.describe(wire_bytes),
            "messages": args.messages,
            "duration_s": duration.map(|d| d.as_secs_f64()),
            "connections": connections,
            "wire_bytes": wire_bytes,
            "late_after_s": args.late_after.as_secs_f64(),
        }),
        seeds: record.seed.into_iter().collect(),
        detail: serde_json::to_value(&record)?,
    })?;
    // A failed connection ends the run badly, but only after what was sent is reported.
    Ok(if !errors.is_empty() {
        Verdict::Failed(errors)
    } else if interrupted {
        Verdict::Interrupted
    } else {
        Verdict::Passed
    }
    .held_to(limits, &record))
}

fn progress<'a>(
    args: &SendArgs,
    expected: Option<u64>,
    connections: usize,
    what: &str,
    live: &'a Live,
) -> RunProgress<'a> {
    RunProgress::new(
        args.quiet,
        expected,
        format!("sending over {connections} {what}"),
        live,
        Follow::In,
    )
}

/// What to send, and the mean payload size.
fn payloads(args: &SendArgs) -> Result<(Payloads, usize)> {
    // Seed 003's feeder (a peak in MB/s, no payload named) pushes opaque dataset rows: random
    // bytes of --size stand in for them.
    let feeder = args.max_mbps.is_some() && args.shape.is_none() && args.file.is_empty();
    let gen = args.gen.or(feeder.then_some(Format::Random));
    match (gen, args.file.is_empty()) {
        (Some(_), false) => bail!("--gen and --file both say what to send: pick one"),
        (None, true) => bail!("nothing to send: give --gen nonces|votes|random or --file FILE"),
        (Some(format), true) => {
            let keys: KeyDist = args.keys.parse().context("--keys")?;
            let workload = match format {
                Format::Nonces => Workload::Nonces {
                    size: args.size,
                    partitions: args.partitions,
                },
                Format::Votes => Workload::votes(&args.letters)?,
                Format::Random => Workload::Random {
                    size: args.size,
                    keys: args.partitions,
                },
            };
            workload.validate(keys)?;
            let size = workload.payload_size();
            Ok((
                Payloads::Generated {
                    workload,
                    keys,
                    seed: args.seed,
                },
                size,
            ))
        }
        (None, false) => {
            let records = load_records(args)?;
            if let Some(n) = args
                .messages
                .filter(|&n| !args.repeat && n > records.len() as u64)
            {
                bail!(
                    "--messages {n}, but the files hold {} messages: add --repeat to send them \
                     again, or ask for at most {}",
                    records.len(),
                    records.len()
                );
            }
            let mean = records.iter().map(Bytes::len).sum::<usize>() / records.len();
            Ok((
                Payloads::Records {
                    records: Arc::new(records),
                    repeat: args.repeat,
                },
                mean,
            ))
        }
    }
}

/// Reads every `--file` into message payloads, as Giles would: fixed `--msg-size` records or
/// length-prefixed frames with `--binary`, one message per line without.
fn load_records(args: &SendArgs) -> Result<Vec<Bytes>> {
    let mut total = 0u64;
    for path in &args.file {
        let meta =
            std::fs::metadata(path).with_context(|| format!("reading {}", path.display()))?;
        ensure!(meta.is_file(), "{} is not a regular file", path.display());
        total += meta.len();
    }
    ensure!(
        total <= MAX_FILE_BYTES,
        "the files hold {total} bytes; at most {MAX_FILE_BYTES} are loaded for replay"
    );
    let mut records = Vec::new();
    for path in &args.file {
        let bytes = Bytes::from(
            std::fs::read(path).with_context(|| format!("reading {}", path.display()))?,
        );
        match (args.binary, args.msg_size, args.variable_size) {
            (true, Some(size), false) => fixed_records(path, &bytes, size, &mut records)?,
            (true, _, _) => {
                for frame in FrameReader::new(&bytes[..], FrameCodec::default()) {
                    records.push(frame.with_context(|| format!("reading {}", path.display()))?);
                }
            }
            (false, _, _) => records.extend(
                bytes
                    .split(|&b| b == b'\n')
                    .filter(|line| !line.is_empty())
                    .map(|line| bytes.slice_ref(line.strip_suffix(b"\r").unwrap_or(line))),
            ),
        }
    }
    ensure!(!records.is_empty(), "the files hold no messages");
    Ok(records)
}

/// Giles' fixed-size records: each `size` bytes, a 4-byte length of `size - 4`, then the payload.
fn fixed_records(path: &Path, bytes: &Bytes, size: usize, out: &mut Vec<Bytes>) -> Result<()> {
    ensure!(
        size > HEADER_LEN && size - HEADER_LEN <= DEFAULT_MAX_FRAME,
        "--msg-size {size} must be more than the {HEADER_LEN}-byte header and at most {} in all",
        DEFAULT_MAX_FRAME + HEADER_LEN
    );
    ensure!(
        bytes.len().is_multiple_of(size),
        "--msg-size {size} does not divide {}'s {} bytes (use --variable-size for frames of \
         different sizes)",
        path.display(),
        bytes.len()
    );
    for (i, record) in bytes.chunks(size).enumerate() {
        let announced = u32::from_be_bytes(record[..HEADER_LEN].try_into().expect("4 bytes"));
        ensure!(
            announced as usize == size - HEADER_LEN,
            "{}: the record at byte offset {} announces {announced} bytes, but --msg-size {size} \
             means {}",
            path.display(),
            i * size,
            size - HEADER_LEN
        );
        out.push(bytes.slice_ref(&record[HEADER_LEN..]));
    }
    Ok(())
}

/// The load shape from `--shape`, `--rate` or Giles' batch flags, in that order.
fn shape(args: &SendArgs, wire_bytes: usize) -> Result<Shape> {
    let rate = args
        .rate
        .as_deref()
        .map(parse_rate)
        .transpose()
        .context("--rate")?;
    let need_rate = |name: &str| match rate {
        Some(Some(r)) => Ok(r),
        _ => bail!("--shape {name} needs --rate RATE/s"),
    };
    let need_duration = |name: &str| {
        args.duration
            .with_context(|| format!("--shape {name} needs --duration"))
    };
    // Seed 003's feeder names no shape: a peak in MB/s is its day.
    let implied = args.max_mbps.is_some().then_some("day-night");
    let Some(spec) = args.shape.as_deref().or(implied) else {
        return Ok(match rate {
            Some(None) => Shape::Max,
            Some(Some(rate)) => Shape::Constant { rate },
            None => Shape::Batch {
                size: args.batch_size,
                interval: args.interval,
            },
        });
    };
    let (name, arg) = spec.split_once(':').unwrap_or((spec, ""));
    Ok(match name {
        "constant" => Shape::Constant {
            rate: need_rate(name)?,
        },
        "max" => Shape::Max,
        "batch" => Shape::Batch {
            size: args.batch_size,
            interval: args.interval,
        },
        "poisson" => Shape::Poisson {
            rate: need_rate(name)?,
            seed: args.seed,
        },
        "ramp" => {
            let (from, to) = arg.split_once("..").with_context(|| {
                format!("--shape {spec}: write ramp:FROM..TO, e.g. ramp:100/s..1000/s")
            })?;
            Shape::Ramp {
                from: ramp_end(from)?,
                to: ramp_end(to)?,
                over: need_duration(name)?,
            }
        }
        "steps" => Shape::Steps(
            arg.split(',')
                .map(|step| {
                    let (rate, length) = step.split_once('@').with_context(|| {
                        format!("step {step:?}: write RATE@DURATION, e.g. 1000/s@10s")
                    })?;
                    let rate = parse_rate(rate)?
                        .with_context(|| format!("step {step:?}: a step needs a finite rate"))?;
                    Ok((rate, plumbline_core::duration::parse_duration(length)?))
                })
                .collect::<Result<_>>()?,
        ),
        "csv" => {
            let text = std::fs::read_to_string(arg)
                .with_context(|| format!("reading rate CSV {arg:?}"))?;
            Shape::from_csv(&text)?
        }
        "day-night" => {
            let max_rate = match (args.max_mbps, rate) {
                (Some(mbps), _) => mbps * 1e6 / wire_bytes as f64,
                (None, Some(Some(rate))) => rate,
                _ => bail!("--shape day-night needs --max-mbps MB/s (or --rate for the peak)"),
            };
            Shape::DayNight {
                breakpoints: args.day_night.breakpoints,
                cycles: args.day_night.cycles,
                duration: need_duration(name)?,
                max_rate,
            }
        }
        other => bail!(
            "--shape {other:?}: use constant, batch, max, poisson, ramp:FROM..TO, \
             steps:RATE@DUR,..., csv:FILE or day-night"
        ),
    })
}

/// One end of a ramp: a rate, where 0 is allowed (a ramp may start or end silent) and `max`
/// is not (a ramp needs numbers to interpolate).
fn ramp_end(text: &str) -> Result<f64> {
    match parse_rate(text) {
        Ok(Some(rate)) => Ok(rate),
        Ok(None) => bail!("a ramp runs between two rates, not to or from {text:?}"),
        Err(plumbline_load::ShapeError::Rate(0.0)) => Ok(0.0),
        Err(e) => Err(e.into()),
    }
}

/// What a send measured, as its run record: its ideal is the time the schedule planned, so
/// overhead is how far the sender fell behind it; it sees no results (`delivered` is null, its
/// latency unmeasured), its section holds the lateness (write start − deadline).
fn record(
    tally: &SendTally,
    shape: &Shape,
    plan: &SendPlan,
    connections: usize,
    interrupted: bool,
    to: String,
) -> RunRecord {
    let share = plan.share;
    let elapsed_s = tally.elapsed.as_secs_f64();
    // Achieved is measured over the window the target implies: until the first message not
    // sent would have been due (for Giles' batches, the end of the last interval), or the
    // time actually taken if that was longer. A share is one thread of the whole schedule.
    let (index, of) = share.thread(0, 1);
    let planned = shape
        .schedule(index, of)
        .offset(tally.sent)
        .or(plan.duration)
        .map_or(elapsed_s, |d| d.as_secs_f64());
    let window = if interrupted {
        elapsed_s
    } else {
        planned.max(elapsed_s)
    };
    let achieved_per_s = per_s(tally.sent as f64, window);
    let target_per_s = shape.mean_rate().map(|r| share.rate(r));
    // Seconds the run covered completely (a last, partial second would look slow).
    let per_second = PerSecond::of(&tally.per_second, tally.elapsed.as_secs() as usize);
    let segments = shape
        .segments()
        .iter()
        .zip(&tally.per_segment)
        .map(|(s, &count)| {
            let len = (s.end - s.start).as_secs_f64();
            let achieved = count as f64 / len;
            let target = share.rate(s.rate);
            SegmentFigures {
                start_s: s.start.as_secs_f64(),
                end_s: s.end.as_secs_f64(),
                target_per_s: target,
                achieved_per_s: achieved,
                error_pct: pct_above(achieved, target),
            }
        })
        .collect();
    let planned_s = target_per_s
        .filter(|&rate| rate > 0.0)
        .map(|rate| tally.sent as f64 / rate);
    RunRecord {
        sent: Some(tally.sent),
        target_per_s,
        achieved_per_s,
        interrupted,
        send: Some(SendSection {
            to,
            bytes: tally.bytes,
            rate_error_pct: target_per_s.and_then(|t| pct_above(achieved_per_s, t)),
            per_second,
            late_after_s: plan.late_after.as_secs_f64(),
            late: tally.late,
            lateness_s: tally.lateness.summary(),
            write_s: tally.write_time.as_secs_f64(),
            stalls: tally.stalls,
            stall_s: tally.stall_time.as_secs_f64(),
            segments,
            peak_rss_mb: peak_rss_bytes().map(|b| b as f64 / 1e6),
            reconnects: tally.reconnects,
            at_risk: tally.at_risk,
            broker: None,
            split: (share.of() > 1).then(|| share.to_string()),
            late_start_s: plan
                .start_at_unix_ns
                .map(|_| tally.late_start.as_secs_f64()),
            clock: None,
        }),
        ..RunRecord::new(connections, elapsed_s)
    }
    .with_ideal(planned_s)
}

/// A start later than this after `--start-at` is reported (the wait itself ends within µs).
const START_LATE: f64 = 0.001;

/// What `send` prints.
fn text(run: &RunRecord, send: &SendSection) -> String {
    let messages = run.sent.unwrap_or(0);
    let mut out = format!(
        "sent {} messages ({:.1} MB) over {} connection(s) in {:.3}s{}\n",
        messages,
        send.bytes as f64 / 1e6,
        run.workers,
        run.wall_s,
        if run.interrupted {
            " (interrupted)"
        } else {
            ""
        }
    );
    if let Some(split) = &send.split {
        out += &format!("share {split} of the schedule: its targets below are this share's\n");
    }
    if let Some(late) = send.late_start_s.filter(|&s| s > START_LATE) {
        out += &format!(
            "started {} after --start-at (set up late): what was due meanwhile went out late\n",
            secs(late)
        );
    }
    if send.reconnects > 0 {
        out += &format!(
            "reconnected {} time(s); at most {} message(s) were lost in the breaks (the \
             receiver's sequence numbers count them)\n",
            send.reconnects, send.at_risk
        );
    }
    match (run.target_per_s, send.rate_error_pct) {
        (Some(t), Some(e)) => {
            out += &format!(
                "rate: target {t:.1} msg/s, achieved {:.1} msg/s ({e:+.2}%)\n",
                run.achieved_per_s
            )
        }
        _ => {
            out += &format!(
                "rate: as fast as possible, achieved {:.1} msg/s\n",
                run.achieved_per_s
            )
        }
    }
    if let Some(p) = &send.per_second {
        out += &format!(
            "per second ({} full seconds): p1 {} p50 {} p99 {}\n",
            p.seconds, p.p1, p.p50, p.p99
        );
    }
    if run.target_per_s.is_some() {
        out += &format!(
            "late (> {}): {} of {}; lateness p50 {} p99 {} max {}\n",
            secs(send.late_after_s),
            send.late,
            messages,
            secs(send.lateness_s.p50),
            secs(send.lateness_s.p99),
            secs(send.lateness_s.max)
        );
    }
    out += &format!(
        "socket writes: {} in all; {} stalls (> 1ms) took {} (time blocked by the receiver or broker)\n",
        secs(send.write_s),
        send.stalls,
        secs(send.stall_s)
    );
    if let Some(mb) = send.peak_rss_mb {
        out += &format!("peak memory: {mb:.1} MB resident\n");
    }
    if !send.segments.is_empty() {
        out += &format!(
            "{:>9} {:>9} {:>12} {:>12} {:>8}\n",
            "start_s", "end_s", "target/s", "achieved/s", "error"
        );
        for s in &send.segments {
            out += &format!(
                "{:>9.3} {:>9.3} {:>12.1} {:>12.1} {:>8}\n",
                s.start_s,
                s.end_s,
                s.target_per_s,
                s.achieved_per_s,
                s.error_pct.map_or("-".into(), |e| format!("{e:+.2}%"))
            );
        }
    }
    out
}

/// Peak resident set size of this process, from `/proc/self/status` (`VmHWM`).
fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}
