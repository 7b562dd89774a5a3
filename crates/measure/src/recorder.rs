//! Latency recording: one HDR histogram per thread, merged once at the end of a run.
//!
//! Values are nanoseconds with 3 significant digits from 1 ns to one hour; larger values are
//! clamped to the top (and still counted). Recording never allocates, so it is safe on the hot
//! path. Summaries carry the histogram in HdrHistogram's V2 serialized form (base64), so reports
//! from separate runs or hosts can be merged exactly.

use base64::Engine;
use hdrhistogram::serialization::{Deserializer, Serializer, V2Serializer};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

const MAX_NS: u64 = 3_600_000_000_000;

/// A per-thread latency histogram in nanoseconds.
#[derive(Clone, Debug)]
pub struct Recorder {
    hist: Histogram<u64>,
}

impl Default for Recorder {
    fn default() -> Self {
        Self::new()
    }
}

impl Recorder {
    pub fn new() -> Self {
        Self {
            hist: Histogram::new_with_bounds(1, MAX_NS, 3).expect("valid static bounds"),
        }
    }

    /// Records one value; values above an hour count as an hour.
    pub fn record_ns(&mut self, ns: u64) {
        self.hist.saturating_record(ns.clamp(1, MAX_NS));
    }

    /// Adds another recorder's values (same bounds, so this cannot fail).
    pub fn merge(&mut self, other: &Recorder) {
        self.hist.add(&other.hist).expect("same bounds");
    }

    /// The values recorded since `earlier`, a copy of this recorder taken before; `None` if
    /// `earlier` holds values this does not (it was not an earlier copy).
    pub fn since(&self, earlier: &Recorder) -> Option<Recorder> {
        let mut later = self.clone();
        later.hist.subtract(&earlier.hist).ok()?;
        Some(later)
    }

    pub fn count(&self) -> u64 {
        self.hist.len()
    }

    /// Forgets every value (keeps the allocation).
    pub fn clear(&mut self) {
        self.hist.reset();
    }

    /// The percentile curve an HDR plot draws: `(percentile, seconds)` points, denser towards
    /// the tail (HdrHistogram's quantile iteration, 5 steps per halving of the distance to 100 %).
    pub fn percentile_curve(&self) -> Vec<(f64, f64)> {
        self.hist
            .iter_quantiles(5)
            .map(|v| {
                (
                    v.quantile_iterated_to() * 100.0,
                    v.value_iterated_to() as f64 / 1e9,
                )
            })
            .collect()
    }

    /// The percentile distribution in HdrHistogram's `.hgrm` text form (what its Java
    /// `outputPercentileDistribution` prints and its plotters read), values in milliseconds,
    /// 5 steps per halving of the distance to 100 %.
    pub fn hgrm(&self) -> String {
        let ms = |ns: f64| ns / 1e6;
        let mut out = format!(
            "{:>12} {:>14} {:>10} {:>14}\n\n",
            "Value", "Percentile", "TotalCount", "1/(1-Percentile)"
        );
        let mut total = 0u64;
        for v in self.hist.iter_quantiles(5) {
            total += v.count_since_last_iteration();
            let (value, q) = (ms(v.value_iterated_to() as f64), v.quantile_iterated_to());
            if q < 1.0 {
                out.push_str(&format!(
                    "{value:12.3} {q:1.12} {total:10} {:14.2}\n",
                    1.0 / (1.0 - q)
                ));
            } else {
                out.push_str(&format!("{value:12.3} {q:1.12} {total:10}\n"));
            }
        }
        let (mean, stdev, max) = match self.hist.is_empty() {
            true => (0.0, 0.0, 0.0),
            false => (self.hist.mean(), self.hist.stdev(), self.hist.max() as f64),
        };
        out.push_str(&format!(
            "#[Mean    = {:12.3}, StdDeviation   = {:12.3}]\n",
            ms(mean),
            ms(stdev)
        ));
        out.push_str(&format!(
            "#[Max     = {:12.3}, Total count    = {:12}]\n",
            ms(max),
            self.hist.len()
        ));
        out.push_str(&format!(
            "#[Buckets = {:12}, SubBuckets     = {:12}]\n",
            self.hist.buckets(),
            // What 3 significant digits take: 2 × 10³ rounded up to a power of 2.
            2048
        ));
        out
    }

    /// How many values fall in each range `(bounds_ns[i-1], bounds_ns[i]]` (ascending bounds,
    /// nanoseconds), in one pass over the histogram: a Prometheus histogram's buckets before
    /// they are summed up. A value is placed by the lowest value HDR holds as equal to it, so a
    /// value recorded exactly at a bound counts at or below it; values above the last bound
    /// are in no range (only in the total).
    pub fn counts_within(&self, bounds_ns: &[u64]) -> Vec<u64> {
        let mut counts = vec![0; bounds_ns.len()];
        for v in self.hist.iter_recorded() {
            let value = self.hist.lowest_equivalent(v.value_iterated_to());
            if let Some(count) = counts.get_mut(bounds_ns.partition_point(|&b| b < value)) {
                *count += v.count_at_value();
            }
        }
        counts
    }

    /// The sum of the recorded values, in nanoseconds (from the histogram's mean).
    pub fn sum_ns(&self) -> f64 {
        self.hist.mean() * self.hist.len() as f64
    }

    pub fn summary(&self) -> LatencySummary {
        let s = |ns: u64| ns as f64 / 1e9;
        let q = |quantile: f64| {
            if self.hist.is_empty() {
                0.0
            } else {
                s(self.hist.value_at_quantile(quantile))
            }
        };
        LatencySummary {
            count: self.hist.len(),
            min: if self.hist.is_empty() {
                0.0
            } else {
                s(self.hist.min())
            },
            p50: q(0.5),
            p90: q(0.9),
            p95: q(0.95),
            p99: q(0.99),
            p999: q(0.999),
            max: if self.hist.is_empty() {
                0.0
            } else {
                s(self.hist.max())
            },
            mean: if self.hist.is_empty() {
                0.0
            } else {
                self.hist.mean() / 1e9
            },
            hdr: self.encoded(),
        }
    }

    /// The histogram in HdrHistogram's V2 serialized form, base64 (what [`Recorder::decode`]
    /// reads back).
    pub fn encoded(&self) -> String {
        let mut bytes = Vec::new();
        V2Serializer::new()
            .serialize(&self.hist, &mut bytes)
            .expect("serializing to memory cannot fail");
        base64::engine::general_purpose::STANDARD.encode(bytes)
    }

    /// A recorder from [`Recorder::encoded`] text (or any V2 histogram within its bounds).
    pub fn decode(hdr: &str) -> Result<Recorder, HdrError> {
        let bytes = base64::engine::general_purpose::STANDARD.decode(hdr)?;
        let hist: Histogram<u64> = Deserializer::new()
            .deserialize(&mut &bytes[..])
            .map_err(HdrError::Format)?;
        let mut recorder = Recorder::new();
        recorder.hist.add(&hist).map_err(|_| HdrError::Range)?;
        Ok(recorder)
    }

    /// The histogram itself, for writers of HdrHistogram's own formats.
    pub(crate) fn histogram(&self) -> &Histogram<u64> {
        &self.hist
    }
}

/// Percentiles in seconds, plus the full histogram (HdrHistogram V2, base64).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LatencySummary {
    pub count: u64,
    /// The fastest (0 in records written before it).
    #[serde(default)]
    pub min: f64,
    pub p50: f64,
    pub p90: f64,
    /// 0 in records written before it.
    #[serde(default)]
    pub p95: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
    pub mean: f64,
    pub hdr: String,
}

#[derive(Debug, thiserror::Error)]
pub enum HdrError {
    #[error("latency histogram is not valid base64: {0}")]
    Base64(#[from] base64::DecodeError),
    #[error("latency histogram is not an HdrHistogram V2 blob: {0:?}")]
    Format(hdrhistogram::serialization::DeserializeError),
    #[error("latency histogram holds values outside 1 ns ..= 1 h")]
    Range,
}

impl LatencySummary {
    /// Rebuilds the recorder the summary was taken from.
    pub fn recorder(&self) -> Result<Recorder, HdrError> {
        Recorder::decode(&self.hdr)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_hgrm_text_is_hdrhistograms_percentile_distribution_in_milliseconds() {
        let mut r = Recorder::new();
        for ms in 1..=1000u64 {
            r.record_ns(ms * 1_000_000);
        }
        let text = r.hgrm();
        let mut lines = text.lines();
        assert_eq!(
            lines.next().unwrap().split_whitespace().collect::<Vec<_>>(),
            ["Value", "Percentile", "TotalCount", "1/(1-Percentile)"]
        );
        let rows: Vec<Vec<f64>> = text
            .lines()
            .filter(|l| l.starts_with(' ') && !l.trim_start().starts_with('V'))
            .map(|l| l.split_whitespace().map(|w| w.parse().unwrap()).collect())
            .collect();
        let last = rows.last().unwrap();
        assert_eq!(last.len(), 3, "the 100 % row has no 1/(1-p)");
        assert!((last[0] - 1000.0).abs() < 1.0 && last[1] == 1.0 && last[2] == 1000.0);
        let median = rows.iter().find(|r| r[1] >= 0.5).unwrap();
        assert!((median[0] - 500.0).abs() < 1.0, "{median:?}");
        assert!(
            rows.windows(2).all(|w| w[0][2] <= w[1][2]),
            "counts only grow"
        );
        assert!(text.contains("Total count    =         1000]"), "{text}");
    }

    use super::*;

    #[test]
    fn percentiles_come_out_in_seconds() {
        let mut r = Recorder::new();
        for ms in 1..=100u64 {
            r.record_ns(ms * 1_000_000);
        }
        let s = r.summary();
        assert_eq!(s.count, 100);
        assert!((s.p50 - 0.050).abs() < 0.0001, "{}", s.p50);
        assert!((s.p99 - 0.099).abs() < 0.0001, "{}", s.p99);
        assert!((s.max - 0.100).abs() < 0.0001, "{}", s.max);
    }

    #[test]
    fn summaries_round_trip_and_merge_exactly() {
        let mut a = Recorder::new();
        let mut b = Recorder::new();
        (1..1000).for_each(|v| a.record_ns(v * 1000));
        (1..10).for_each(|v| b.record_ns(v * 1_000_000_000));
        let restored = a.summary().recorder().unwrap();
        assert_eq!(restored.summary(), a.summary());
        let mut merged = a.summary().recorder().unwrap();
        merged.merge(&b.summary().recorder().unwrap());
        a.merge(&b);
        assert_eq!(merged.summary(), a.summary());
        assert_eq!(merged.count(), 1008);
    }

    #[test]
    fn the_values_since_an_earlier_copy_are_the_later_ones_only() {
        let mut r = Recorder::new();
        (1..=100u64).for_each(|_| r.record_ns(1_000_000_000));
        let earlier = r.clone();
        (1..=100u64).for_each(|_| r.record_ns(1_000_000));
        let later = r.since(&earlier).unwrap();
        assert_eq!(later.count(), 100);
        assert!((later.summary().max - 0.001).abs() < 1e-5);
        // A recorder that is no earlier copy has nothing to take away.
        assert!(earlier.since(&r).is_none());
    }

    #[test]
    fn the_percentile_curve_rises_to_the_maximum() {
        let mut r = Recorder::new();
        (1..=1000u64).for_each(|us| r.record_ns(us * 1000));
        let curve = r.percentile_curve();
        assert!(curve.len() > 10);
        assert!(curve
            .windows(2)
            .all(|w| w[0].0 <= w[1].0 && w[0].1 <= w[1].1));
        let (p, v) = *curve.last().unwrap();
        assert_eq!(p, 100.0);
        assert!((v - 0.001).abs() < 0.00001, "{v}");
        r.clear();
        assert_eq!(r.count(), 0);
    }

    #[test]
    fn extremes_are_clamped_not_lost() {
        let mut r = Recorder::new();
        r.record_ns(0);
        r.record_ns(u64::MAX);
        assert_eq!(r.count(), 2);
        assert!(r.summary().max >= 3599.0);
        assert_eq!(Recorder::new().summary().p99, 0.0);
    }

    #[test]
    fn counts_within_place_each_value_in_the_first_range_that_holds_it() {
        let mut r = Recorder::new();
        for ns in [
            5,
            10,
            10,
            11,
            1_000_000,
            10_000_000,
            10_000_001,
            99_000_000_000,
        ] {
            r.record_ns(ns);
        }
        // At 10 ms HDR's 3 digits hold 10_000_001 as equal to 10_000_000.
        assert_eq!(
            r.counts_within(&[10, 1_000_000, 10_000_000, 1_000_000_000]),
            [3, 2, 2, 0]
        );
        assert_eq!(Recorder::new().counts_within(&[1, 2]), [0, 0]);
    }

    #[test]
    fn garbage_histograms_are_errors() {
        let mut s = Recorder::new().summary();
        s.hdr = "not base64!".into();
        assert!(matches!(s.recorder(), Err(HdrError::Base64(_))));
        s.hdr = "AAAA".into();
        assert!(matches!(s.recorder(), Err(HdrError::Format(_))));
    }
}
