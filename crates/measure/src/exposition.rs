//! The one Prometheus writer: every `/metrics` plumbline serves (a `--ui` live page, a cluster
//! initializer's `--metrics`) is [`prometheus`] of a [`Live`], so the families, their labels
//! (`worker` is the worker's name where it has one, its index otherwise) and their buckets are
//! the same wherever they are scraped.
//!
//! Written with prometheus-client's text encoder (exposition 0.0.4). Latency and the step are
//! histograms derived from the HDR recorders at the fixed bounds of [`bounds_s`]: cumulative
//! counts ending in `+Inf`, `_sum` and `_count`, so a scraper can sum them across workers by
//! `le` and take `histogram_quantile` of the sum. Counters restart from zero when a new run
//! begins (a bench's runs), which Prometheus reads as a counter reset. Families with no value
//! yet (no target, no latency, no workers, no partitions, no sources) are left out rather than
//! reported as 0. This module serves nothing and keeps nothing between scrapes.

use std::sync::atomic::Ordering;
use std::sync::OnceLock;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use crate::live::{lock, Live};
use crate::Recorder;

/// The `Content-Type` of what [`prometheus`] writes.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// Mantissas of the bucket bounds in each decade: neighbours differ by at most a third, so a
/// quantile read from the buckets is off by at most a third of its value.
const PER_DECADE: [&str; 10] = ["1", "1.25", "1.5", "2", "2.5", "3", "4", "5", "6", "8"];

/// The upper bounds (`le`, seconds) of every histogram: [`PER_DECADE`] in each decade from
/// 1 µs to 100 s (81 bounds), then `+Inf`. Fixed, so buckets of different workers and
/// different scrapes can be summed.
pub fn bounds_s() -> &'static [f64] {
    static BOUNDS: OnceLock<Vec<f64>> = OnceLock::new();
    BOUNDS.get_or_init(|| {
        // Parsed from decimal text, so each bound prints as written ("0.0125", not 0.0125000…1).
        (-6..2)
            .flat_map(|exp| PER_DECADE.iter().map(move |m| format!("{m}e{exp}")))
            .chain(std::iter::once("1e2".to_string()))
            .map(|text| text.parse().expect("a decimal number"))
            .collect()
    })
}

/// [`bounds_s`] in nanoseconds, for [`Recorder::counts_within`].
fn bounds_ns() -> &'static [u64] {
    static BOUNDS: OnceLock<Vec<u64>> = OnceLock::new();
    BOUNDS.get_or_init(|| {
        bounds_s()
            .iter()
            .map(|s| (s * 1e9).round() as u64)
            .collect()
    })
}

/// A histogram as the exposition writes it: per-bound counts (not yet summed up; the encoder
/// sums them and adds `+Inf`), the sum in seconds and the count.
#[derive(Clone, Debug, PartialEq)]
pub struct Buckets {
    pub counts: Vec<(f64, u64)>,
    pub sum_s: f64,
    pub count: u64,
}

impl Buckets {
    pub fn of(recorder: &Recorder) -> Self {
        let counts = recorder.counts_within(bounds_ns());
        Self {
            counts: bounds_s().iter().copied().zip(counts).collect(),
            sum_s: recorder.sum_ns() / 1e9,
            count: recorder.count(),
        }
    }
}

/// One worker's series: `worker` label and what it reported.
#[derive(Debug)]
struct WorkerSeries {
    name: String,
    items: u64,
    results: Option<u64>,
    rejected: Option<u64>,
    undelivered: Option<u64>,
    step: Option<Buckets>,
}

/// Everything one scrape writes, read out of [`Live`] at one instant (so the encoder holds no
/// lock of the run's).
#[derive(Debug)]
struct Scrape {
    label: String,
    elapsed_s: f64,
    planned: Option<u64>,
    target_per_s: Option<f64>,
    items_in: u64,
    items_out: u64,
    late: u64,
    in_flight: u64,
    rate_in: f64,
    rate_out: f64,
    latency: Option<Buckets>,
    workers: Vec<WorkerSeries>,
    partitions: Vec<(String, u64)>,
    /// Source connections closed for bad input, for a stalled frame, refused over the cap.
    sources: Option<[u64; 3]>,
}

impl Scrape {
    fn of(live: &Live) -> Self {
        let s = live.snapshot(1);
        let latency = {
            let window = lock(&live.latency);
            (window.run.count() > 0).then(|| Buckets::of(&window.run))
        };
        let workers = lock(&live.workers)
            .iter()
            .map(|w| WorkerSeries {
                name: w.name.clone(),
                items: w.items,
                results: w.results,
                rejected: w.rejected,
                undelivered: w.undelivered,
                step: w.step.as_ref().map(Buckets::of),
            })
            .collect();
        let sources = live.counts_sources.load(Ordering::Relaxed).then(|| {
            [&live.source_errors, &live.source_slow, &live.source_refused]
                .map(|n| n.load(Ordering::Relaxed))
        });
        let latest = s.recent.last();
        Self {
            elapsed_s: s.elapsed_s,
            planned: s.run.total,
            target_per_s: s.run.target_per_s.filter(|t| t.is_finite()),
            label: s.run.label,
            items_in: s.items_in,
            items_out: s.items_out,
            late: s.late,
            in_flight: s.in_flight,
            rate_in: latest.map_or(0.0, |t| t.in_per_s),
            rate_out: latest.map_or(0.0, |t| t.out_per_s),
            latency,
            workers,
            partitions: merge_partitions(s.per_partition),
            sources,
        }
    }
}

/// Opens a family: its HELP and TYPE, once, before its samples.
fn family<'s>(
    encoder: &'s mut DescriptorEncoder,
    name: &'s str,
    help: &str,
    kind: MetricType,
) -> Result<MetricEncoder<'s>, Error> {
    encoder.encode_descriptor(name, help, None, kind)
}

type Error = std::fmt::Error;

/// A family's samples labelled by one label (`worker`, `partition`, `label`), one each.
fn labelled<V: EncodeMetric>(
    mut metric: MetricEncoder,
    label: &'static str,
    samples: impl IntoIterator<Item = (String, V)>,
) -> Result<(), Error> {
    for (value, sample) in samples {
        let labels = [(label, value)];
        sample.encode(metric.encode_family(&labels)?)?;
    }
    Ok(())
}

fn histogram(metric: &mut MetricEncoder, b: &Buckets) -> Result<(), Error> {
    metric.encode_histogram::<NoLabelSet>(b.sum_s, b.count, &b.counts, None)
}

impl Collector for Scrape {
    fn encode(&self, mut e: DescriptorEncoder) -> Result<(), Error> {
        use MetricType::{Counter, Gauge, Histogram};
        let e = &mut e;
        labelled(
            family(
                e,
                "plumbline_run_info",
                "The run being watched, named by its label; always 1.",
                Gauge,
            )?,
            "label",
            [(self.label.clone(), ConstGauge::new(1i64))],
        )?;
        ConstGauge::new(self.elapsed_s).encode(family(
            e,
            "plumbline_elapsed_seconds",
            "Seconds since the command started.",
            Gauge,
        )?)?;
        if let Some(planned) = self.planned {
            ConstGauge::new(planned).encode(family(
                e,
                "plumbline_items_planned",
                "Items the current run will take, when it is finite.",
                Gauge,
            )?)?;
        }
        if let Some(target) = self.target_per_s {
            ConstGauge::new(target).encode(family(
                e,
                "plumbline_target_rate_per_second",
                "Items per second the load is paced at (absent when unpaced).",
                Gauge,
            )?)?;
        }
        for (name, help, value) in [
            (
                "plumbline_items_in",
                "Items put in (sent, generated, routed) since the current run began.",
                self.items_in,
            ),
            (
                "plumbline_items_out",
                "Items out (delivered, received, acknowledged, processed) since the current run began.",
                self.items_out,
            ),
            (
                "plumbline_late_sends",
                "Sends that started later than their deadline allowed, since the current run began.",
                self.late,
            ),
        ] {
            ConstCounter::new(value).encode(family(e, name, help, Counter)?)?;
        }
        ConstGauge::new(self.in_flight).encode(family(
            e,
            "plumbline_in_flight",
            "Items in but not yet out (0 when nothing counts items in).",
            Gauge,
        )?)?;
        for (name, help, value) in [
            (
                "plumbline_rate_in_per_second",
                "Items in per second over the latest one-second tick (0 before the first tick).",
                self.rate_in,
            ),
            (
                "plumbline_rate_out_per_second",
                "Items out per second over the latest one-second tick (0 before the first tick).",
                self.rate_out,
            ),
        ] {
            ConstGauge::new(value).encode(family(e, name, help, Gauge)?)?;
        }
        if let Some(latency) = &self.latency {
            histogram(
                &mut family(
                    e,
                    "plumbline_latency_seconds",
                    "End-to-end latency since the current run began, seconds.",
                    Histogram,
                )?,
                latency,
            )?;
        }
        self.encode_workers(e)?;
        if !self.partitions.is_empty() {
            labelled(
                family(
                    e,
                    "plumbline_partition_items",
                    "Items per partition since the current run began.",
                    Counter,
                )?,
                "partition",
                (self.partitions.iter()).map(|(p, n)| (p.clone(), ConstCounter::new(*n))),
            )?;
        }
        if let Some(sources) = self.sources {
            let families = [
                (
                    "plumbline_source_errors",
                    "Source connections closed for bad input.",
                ),
                (
                    "plumbline_source_slow",
                    "Source connections closed for a stalled frame (--read-timeout, --min-rate).",
                ),
                (
                    "plumbline_source_refused",
                    "Source connections refused over --max-connections.",
                ),
            ];
            for ((name, help), value) in families.into_iter().zip(sources) {
                ConstCounter::new(value).encode(family(e, name, help, Counter)?)?;
            }
        }
        Ok(())
    }
}

impl Scrape {
    /// The `worker`-labelled families; each only where some worker reports its figure.
    fn encode_workers(&self, e: &mut DescriptorEncoder) -> Result<(), Error> {
        if self.workers.is_empty() {
            return Ok(());
        }
        type Field = fn(&WorkerSeries) -> Option<u64>;
        let counts: [(&str, &str, Field); 4] = [
            (
                "plumbline_worker_items",
                "Items each worker handled since the current run began.",
                |w| Some(w.items),
            ),
            (
                "plumbline_worker_results",
                "Results each worker delivered to the sink.",
                |w| w.results,
            ),
            (
                "plumbline_worker_rejected",
                "Items each worker could not apply.",
                |w| w.rejected,
            ),
            (
                "plumbline_worker_undelivered",
                "Results each worker could not deliver.",
                |w| w.undelivered,
            ),
        ];
        for (name, help, field) in counts {
            if self.workers.iter().all(|w| field(w).is_none()) {
                continue;
            }
            let samples = (self.workers.iter())
                .filter_map(|w| field(w).map(|n| (w.name.clone(), ConstCounter::new(n))));
            labelled(
                family(e, name, help, MetricType::Counter)?,
                "worker",
                samples,
            )?;
        }
        if self.workers.iter().any(|w| w.step.is_some()) {
            let mut m = family(
                e,
                "plumbline_step_seconds",
                "What one item's work cost on each worker, seconds.",
                MetricType::Histogram,
            )?;
            for w in &self.workers {
                if let Some(step) = &w.step {
                    let labels = [("worker", w.name.clone())];
                    histogram(&mut m.encode_family(&labels)?, step)?;
                }
            }
        }
        Ok(())
    }
}

/// Sums repeated partition labels, first-seen order: the same series twice is invalid.
fn merge_partitions(counts: Vec<(String, u64)>) -> Vec<(String, u64)> {
    let mut merged: Vec<(String, u64)> = Vec::with_capacity(counts.len());
    for (label, items) in counts {
        match merged.iter_mut().find(|(l, _)| *l == label) {
            Some((_, n)) => *n = n.saturating_add(items),
            None => merged.push((label, items)),
        }
    }
    merged
}

/// The Prometheus text exposition (version 0.0.4) of what `live` holds now.
pub fn prometheus(live: &Live) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Scrape::of(live)));
    let mut text = String::with_capacity(4096);
    // Writing to a String fails only if an encoder refuses a value, which these never are.
    prometheus_client::encoding::prometheus_text::encode(&mut text, &registry)
        .expect("encoding into a String");
    text
}
