//! The sink: where results land and are measured.
//!
//! Records end-to-end latency (result time − intended send time) into one HDR recorder, counts
//! results per worker, notices lost and duplicated sequence numbers with a [`SeqTracker`], and
//! keeps each state key's latest value so a run's final state can
//! be checked. Watchers see it through [`Live`]: the delivered count at once, latencies and
//! per-worker counts every [`FEED_EVERY`] of run time. It does not print or decide whether a run
//! passed.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use plumbline_measure::{LatencyFeed, Live, Recorder, SeqTracker, FEED_EVERY};

use crate::app::Output;

/// One result as it reaches the sink.
#[derive(Clone, Copy, Debug)]
pub struct Delivery {
    pub seq: u64,
    pub intended_ns: u64,
    /// When the worker emitted the result, on the run clock.
    pub done_ns: u64,
    pub worker: usize,
    pub output: Output,
}

/// Collects deliveries of one run.
#[derive(Debug)]
pub struct Sink {
    latency: LatencyFeed,
    per_worker: Vec<u64>,
    seqs: SeqTracker,
    delivered: u64,
    final_state: BTreeMap<u32, u64>,
    last_ns: u64,
    /// When latencies were last handed to [`Live`], on the run clock.
    published_ns: u64,
}

/// What a sink saw.
#[derive(Clone, Debug)]
pub struct SinkReport {
    pub latency: Recorder,
    pub per_worker: Vec<u64>,
    pub delivered: u64,
    /// Latest value of every state key (letter byte or partition).
    pub final_state: BTreeMap<u32, u64>,
    /// When the last result was emitted, on the run clock.
    pub last_ns: u64,
    seqs: SeqTracker,
}

impl Sink {
    /// A sink for results of `workers` workers.
    pub fn new(workers: usize) -> Self {
        Self {
            latency: LatencyFeed::default(),
            per_worker: vec![0; workers],
            seqs: SeqTracker::new(),
            delivered: 0,
            final_state: BTreeMap::new(),
            last_ns: 0,
            published_ns: 0,
        }
    }

    /// Takes one delivery and tells `live` (the delivered count now, the rest every
    /// [`FEED_EVERY`], timed by the deliveries' own timestamps so no clock is read here).
    pub fn deliver(&mut self, d: Delivery, live: &Live) {
        self.latency
            .record_ns(d.done_ns.saturating_sub(d.intended_ns));
        self.last_ns = self.last_ns.max(d.done_ns);
        if let Some(count) = self.per_worker.get_mut(d.worker) {
            *count += 1;
        }
        self.seqs.record(0, d.seq);
        if let Some((key, value)) = d.output.state() {
            self.final_state.insert(key, value);
        }
        self.delivered += 1;
        live.items_out.store(self.delivered, Ordering::Relaxed);
        if d.done_ns >= self.published_ns + FEED_EVERY.as_nanos() as u64 {
            self.publish(live);
            self.published_ns = d.done_ns;
        }
    }

    /// Hands what watchers have not seen yet to `live`.
    fn publish(&mut self, live: &Live) {
        self.latency.publish(live);
        live.set_per_worker(&self.per_worker);
    }

    /// Ends the run; `live` gets the last latencies first.
    pub fn finish(self, live: &Live) -> SinkReport {
        live.set_per_worker(&self.per_worker);
        SinkReport {
            latency: self.latency.finish(live),
            per_worker: self.per_worker,
            delivered: self.delivered,
            final_state: self.final_state,
            last_ns: self.last_ns,
            seqs: self.seqs,
        }
    }
}

impl SinkReport {
    /// How many of the sequence numbers `0..sent` never arrived.
    pub fn lost(&self, sent: u64) -> u64 {
        self.seqs.summary(Some(sent)).lost
    }

    /// Deliveries of a sequence number already delivered.
    pub fn duplicates(&self) -> u64 {
        let s = self.seqs.summary(None);
        s.duplicates + s.too_late
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delivery(seq: u64) -> Delivery {
        Delivery {
            seq,
            intended_ns: 0,
            done_ns: 1_000,
            worker: (seq % 2) as usize,
            output: Output::Count {
                partition: (seq % 3) as u32,
                count: seq,
            },
        }
    }

    #[test]
    fn counts_losses_and_duplicates_by_sequence_number() {
        let live = Live::new();
        let mut sink = Sink::new(2);
        for seq in (0..130).filter(|s| s % 10 != 3) {
            sink.deliver(delivery(seq), &live);
        }
        sink.deliver(delivery(4), &live);
        let report = sink.finish(&live);
        assert_eq!(report.lost(130), 13);
        assert_eq!(report.duplicates(), 1);
        assert_eq!(report.delivered, 118);
        assert_eq!(live.items_out.load(Ordering::Relaxed), 118);
        assert_eq!(report.per_worker.iter().sum::<u64>(), 118);
        assert_eq!(report.final_state[&2], 128);
    }

    #[test]
    fn latency_counts_from_the_intended_send_time() {
        let live = Live::new();
        let mut sink = Sink::new(1);
        let mut d = delivery(0);
        d.intended_ns = 2_000_000;
        d.done_ns = 5_000_000;
        sink.deliver(d, &live);
        let summary = sink.finish(&live).latency.summary();
        assert!((summary.max - 0.003).abs() < 1e-5, "{}", summary.max);
    }
}
