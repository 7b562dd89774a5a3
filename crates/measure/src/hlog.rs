//! HdrHistogram interval logs (`.hlog`): a run's latency as one histogram per interval, in the
//! format HdrHistogram's own tools read (HistogramLogProcessor, HistogramLogAnalyzer, hdr-plot).
//!
//! [`crate::Live`] closes an interval at each tick of the timeline, from the same batches of
//! latencies the run's histogram is merged from; this module holds what one interval is and
//! writes a run's intervals as a log (the `hdrhistogram` crate's interval-log writer, V2
//! compressed histograms). It does not measure, and it does not choose the intervals' length.

use std::time::{Duration, SystemTime};

use hdrhistogram::serialization::interval_log::IntervalLogWriterBuilder;
use hdrhistogram::serialization::V2DeflateSerializer;
use serde::{Deserialize, Serialize};

use crate::recorder::HdrError;
use crate::Recorder;

/// The latencies handed over during one interval of a run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LatencyInterval {
    /// When the interval began, seconds since the UNIX epoch.
    pub start_unix_s: f64,
    pub length_s: f64,
    pub count: u64,
    /// HdrHistogram V2, base64, nanoseconds (as [`crate::LatencySummary::hdr`]).
    pub hdr: String,
}

impl LatencyInterval {
    /// The interval from `start_unix_s` for `length_s` holding `latency`.
    pub fn new(start_unix_s: f64, length_s: f64, latency: &Recorder) -> Self {
        Self {
            start_unix_s,
            length_s,
            count: latency.count(),
            hdr: latency.encoded(),
        }
    }

    pub fn recorder(&self) -> Result<Recorder, HdrError> {
        Recorder::decode(&self.hdr)
    }
}

/// The values of the log's "interval max" column are nanoseconds divided by this: milliseconds,
/// what HdrHistogram's Java writer puts there by default.
const MAX_VALUE_DIVISOR: f64 = 1e6;

/// `intervals` (oldest first) as an interval log. The first interval's start is the log's
/// StartTime and BaseTime, so the intervals' timestamps count from 0 (the Java reader takes
/// them as offsets when both are given, with no guessing).
pub fn interval_log(intervals: &[LatencyInterval]) -> Result<String, HdrError> {
    let at = |s: f64| Duration::from_secs_f64(s.max(0.0));
    let first = intervals.first().map_or(0.0, |i| i.start_unix_s);
    let started = SystemTime::UNIX_EPOCH + at(first);
    let mut out = Vec::new();
    let mut serializer = V2DeflateSerializer::new();
    // Two writers: the crate writes no legend line, which Java's writer puts between the
    // headers and the intervals (readers skip it; humans read it).
    IntervalLogWriterBuilder::new()
        .add_comment("[Histogram log format version 1.3]")
        .add_comment("[plumbline latency, values in nanoseconds]")
        .with_start_time(started)
        .with_base_time(started)
        .begin_log_with(&mut out, &mut serializer)
        .expect("writing to memory cannot fail");
    out.extend_from_slice(
        b"\"StartTimestamp\",\"Interval_Length\",\"Interval_Max\",\"Interval_Compressed_Histogram\"\n",
    );
    let mut writer = IntervalLogWriterBuilder::new()
        .with_max_value_divisor(MAX_VALUE_DIVISOR)
        .begin_log_with(&mut out, &mut serializer)
        .expect("writing to memory cannot fail");
    for interval in intervals {
        let recorder = interval.recorder()?;
        writer
            .write_histogram(
                recorder.histogram(),
                at(interval.start_unix_s - first),
                at(interval.length_s),
                None,
            )
            .expect("a histogram within its own bounds compresses into memory");
    }
    Ok(String::from_utf8(out).expect("the log is ASCII"))
}

#[cfg(test)]
mod tests {
    use hdrhistogram::serialization::interval_log::{IntervalLogIterator, LogEntry};
    use hdrhistogram::serialization::Deserializer;
    use hdrhistogram::Histogram;

    use super::*;

    #[test]
    fn the_log_reads_back_as_the_intervals_with_their_times() {
        let (mut a, mut b) = (Recorder::new(), Recorder::new());
        (1..=100u64).for_each(|ms| a.record_ns(ms * 1_000_000));
        (1..=10u64).for_each(|s| b.record_ns(s * 1_000_000_000));
        let intervals = [
            LatencyInterval::new(1_700_000_002.5, 1.0, &a),
            LatencyInterval::new(1_700_000_004.0, 0.5, &b),
        ];
        let log = interval_log(&intervals).unwrap();
        assert!(
            log.starts_with("#[Histogram log format version 1.3]\n"),
            "{log}"
        );
        assert!(log.contains("#[StartTime: 1700000002.500 (seconds since epoch)]"));
        assert!(log.contains("#[BaseTime: 1700000002.500 (seconds since epoch)]"));
        let mut seen = Vec::new();
        let mut base = None;
        for entry in IntervalLogIterator::new(log.as_bytes()) {
            match entry.unwrap() {
                LogEntry::BaseTime(t) => base = Some(t),
                LogEntry::StartTime(_) => {}
                LogEntry::Interval(h) => {
                    let bytes = base64::Engine::decode(
                        &base64::engine::general_purpose::STANDARD,
                        h.encoded_histogram(),
                    )
                    .unwrap();
                    let hist: Histogram<u64> =
                        Deserializer::new().deserialize(&mut &bytes[..]).unwrap();
                    seen.push((
                        h.start_timestamp().as_secs_f64(),
                        h.duration().as_secs_f64(),
                        h.max(),
                        hist.len(),
                    ));
                }
            }
        }
        assert_eq!(base, Some(Duration::from_millis(1_700_000_002_500)));
        assert_eq!(seen.len(), 2);
        assert_eq!((seen[0].0, seen[0].1, seen[0].3), (0.0, 1.0, 100));
        assert!((seen[0].2 - 100.0).abs() < 0.1, "max in ms: {}", seen[0].2);
        assert_eq!((seen[1].0, seen[1].1, seen[1].3), (1.5, 0.5, 10));
    }

    #[test]
    fn an_interval_that_is_not_a_histogram_is_an_error() {
        let bad = LatencyInterval {
            start_unix_s: 0.0,
            length_s: 1.0,
            count: 1,
            hdr: "not base64!".into(),
        };
        assert!(matches!(interval_log(&[bad]), Err(HdrError::Base64(_))));
    }
}
