//! The sink: where results land and are measured.
//!
//! Records end-to-end latency (result time − intended send time) into one HDR recorder, counts
//! results per worker, notices lost and duplicated sequence numbers with a bitmap (n/8 bytes, no
//! per-message allocation), and keeps each state key's latest value so a run's final state can
//! be checked. It does not print or decide whether a run passed.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

use plumbline_measure::Recorder;

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
    latency: Recorder,
    per_worker: Vec<u64>,
    seen: Vec<u64>,
    delivered: u64,
    duplicates: u64,
    out_of_range: u64,
    final_state: BTreeMap<u32, u64>,
    last_ns: u64,
}

/// What a sink saw.
#[derive(Clone, Debug)]
pub struct SinkReport {
    pub latency: Recorder,
    pub per_worker: Vec<u64>,
    pub delivered: u64,
    /// Deliveries of a sequence number seen before, or outside `0..expected`.
    pub duplicates: u64,
    /// Latest value of every state key (letter byte or partition).
    pub final_state: BTreeMap<u32, u64>,
    /// When the last result was emitted, on the run clock.
    pub last_ns: u64,
    seen: Vec<u64>,
}

impl Sink {
    /// A sink expecting sequence numbers `0..expected` from `workers` workers.
    pub fn new(expected: u64, workers: usize) -> Self {
        Self {
            latency: Recorder::new(),
            per_worker: vec![0; workers],
            seen: vec![0; expected.div_ceil(64) as usize],
            delivered: 0,
            duplicates: 0,
            out_of_range: 0,
            final_state: BTreeMap::new(),
            last_ns: 0,
        }
    }

    /// Takes one delivery; bumps `progress` for watchers.
    pub fn deliver(&mut self, d: Delivery, progress: &AtomicU64) {
        self.latency
            .record_ns(d.done_ns.saturating_sub(d.intended_ns));
        self.last_ns = self.last_ns.max(d.done_ns);
        if let Some(count) = self.per_worker.get_mut(d.worker) {
            *count += 1;
        }
        match self.seen.get_mut((d.seq / 64) as usize) {
            Some(word) if *word & (1 << (d.seq % 64)) != 0 => self.duplicates += 1,
            Some(word) => *word |= 1 << (d.seq % 64),
            None => self.out_of_range += 1,
        }
        if let Some((key, value)) = d.output.state() {
            self.final_state.insert(key, value);
        }
        self.delivered += 1;
        progress.store(self.delivered, Ordering::Relaxed);
    }

    pub fn finish(self) -> SinkReport {
        SinkReport {
            latency: self.latency,
            per_worker: self.per_worker,
            delivered: self.delivered,
            duplicates: self.duplicates + self.out_of_range,
            final_state: self.final_state,
            last_ns: self.last_ns,
            seen: self.seen,
        }
    }
}

impl SinkReport {
    /// How many of the sequence numbers `0..sent` never arrived.
    pub fn lost(&self, sent: u64) -> u64 {
        let full_words = (sent / 64) as usize;
        let mut arrived: u64 = self.seen[..full_words.min(self.seen.len())]
            .iter()
            .map(|w| u64::from(w.count_ones()))
            .sum();
        if sent % 64 != 0 {
            if let Some(word) = self.seen.get(full_words) {
                arrived += u64::from((word & ((1u64 << (sent % 64)) - 1)).count_ones());
            }
        }
        sent - arrived
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
        let progress = AtomicU64::new(0);
        let mut sink = Sink::new(130, 2);
        for seq in (0..130).filter(|s| s % 10 != 3) {
            sink.deliver(delivery(seq), &progress);
        }
        sink.deliver(delivery(4), &progress);
        sink.deliver(delivery(500), &progress);
        let report = sink.finish();
        assert_eq!(report.lost(130), 13);
        assert_eq!(report.lost(64), 7);
        assert_eq!(report.duplicates, 2);
        assert_eq!(report.delivered, 119);
        assert_eq!(progress.load(Ordering::Relaxed), 119);
        assert_eq!(report.per_worker.iter().sum::<u64>(), 119);
        assert_eq!(report.final_state[&2], 500);
    }

    #[test]
    fn latency_counts_from_the_intended_send_time() {
        let progress = AtomicU64::new(0);
        let mut sink = Sink::new(1, 1);
        let mut d = delivery(0);
        d.intended_ns = 2_000_000;
        d.done_ns = 5_000_000;
        sink.deliver(d, &progress);
        let summary = sink.finish().latency.summary();
        assert!((summary.max - 0.003).abs() < 1e-5, "{}", summary.max);
    }
}
