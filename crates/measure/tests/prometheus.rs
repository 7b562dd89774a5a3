//! The one Prometheus writer against the strict reader: what a `Live` holds comes out as a
//! valid exposition with the same families and labels for every source, and a histogram
//! summed across workers the PromQL way gives plumbline's own p99 within a bucket.

#[path = "exposition/mod.rs"]
mod exposition;

use std::sync::atomic::Ordering;

use exposition::{histogram_quantile, parse_exposition, sum_by_le};
use plumbline_measure::exposition::{bounds_s, prometheus};
use plumbline_measure::{Live, Recorder, RunInfo, WorkerFigures};

fn worker(name: &str, items: u64, step: Recorder) -> WorkerFigures {
    WorkerFigures {
        name: name.into(),
        items,
        results: Some(items),
        rejected: Some(0),
        undelivered: Some(1),
        step: Some(step),
    }
}

/// Two workers whose steps differ: one about 10 ms, one slower with a long tail.
fn two_workers() -> (Recorder, Recorder) {
    let (mut fast, mut slow) = (Recorder::new(), Recorder::new());
    (0..5_000u64).for_each(|i| fast.record_ns(10_000_000 + i * 300));
    (0..3_000u64).for_each(|i| slow.record_ns(12_000_000 + i * i * 10));
    (fast, slow)
}

#[test]
fn a_cluster_initializers_figures_are_a_valid_exposition_labelled_by_worker_name() {
    let live = Live::new();
    live.begin_run(RunInfo {
        label: "cluster \"votes\" \\ of\n2".into(),
        workers: 0,
        total: None,
        target_per_s: None,
    });
    live.counts_sources();
    live.items_in.store(8_000, Ordering::Relaxed);
    live.items_out.store(8_000, Ordering::Relaxed);
    live.source_slow.store(2, Ordering::Relaxed);
    let (fast, slow) = two_workers();
    live.set_workers(vec![
        worker("initializer", 5_000, fast),
        worker("roo", 3_000, slow),
    ]);
    live.set_per_partition(vec![
        ("a".into(), 7_000),
        ("b".into(), 1_000),
        ("a".into(), 0),
    ]);
    let text = prometheus(&live);
    let m = parse_exposition(&text);
    let at = |series: &str| {
        *m.get(series)
            .unwrap_or_else(|| panic!("no {series} in\n{text}"))
    };
    assert_eq!(at("plumbline_worker_items_total{worker=\"roo\"}"), 3_000.0);
    assert_eq!(
        at("plumbline_worker_results_total{worker=\"initializer\"}"),
        5_000.0
    );
    assert_eq!(
        at("plumbline_worker_undelivered_total{worker=\"roo\"}"),
        1.0
    );
    assert_eq!(at("plumbline_step_seconds_count{worker=\"roo\"}"), 3_000.0);
    assert_eq!(
        at("plumbline_step_seconds_bucket{worker=\"roo\",le=\"+Inf\"}"),
        3_000.0
    );
    // HDR's 3 digits hold 10 ms to 10.0024 ms as one value: the first 9 steps are at 10 ms.
    assert_eq!(
        at("plumbline_step_seconds_bucket{worker=\"initializer\",le=\"0.01\"}"),
        9.0
    );
    let sum = at("plumbline_step_seconds_sum{worker=\"initializer\"}");
    assert!((sum - 5_000.0 * 0.01075).abs() < 0.1, "{sum}");
    assert_eq!(
        at("plumbline_partition_items_total{partition=\"a\"}"),
        7_000.0
    );
    assert_eq!(at("plumbline_source_slow_total"), 2.0);
    assert_eq!(at("plumbline_source_errors_total"), 0.0);
    assert_eq!(at("plumbline_in_flight"), 0.0);
    assert_eq!(
        at("plumbline_run_info{label=\"cluster \\\"votes\\\" \\\\ of\\n2\"}"),
        1.0
    );
    // No end-to-end latency reached this process: no latency family rather than zeros.
    assert!(!text.contains("plumbline_latency_seconds"), "{text}");
    // Every histogram has the same fixed bounds, then +Inf.
    let le_count = text
        .lines()
        .filter(|l| l.starts_with("plumbline_step_seconds_bucket{worker=\"roo\""))
        .count();
    assert_eq!(le_count, bounds_s().len() + 1);
}

#[test]
fn a_benchs_figures_use_the_same_families_with_workers_by_index() {
    let live = Live::new();
    live.begin_run(RunInfo {
        label: "run 1/1".into(),
        workers: 2,
        total: Some(1_000),
        target_per_s: Some(250.0),
    });
    live.items_in.store(50, Ordering::Relaxed);
    live.items_out.store(42, Ordering::Relaxed);
    live.late.store(3, Ordering::Relaxed);
    live.set_per_worker(&[30, 12]);
    let mut batch = Recorder::new();
    (1..=100).for_each(|ms| batch.record_ns(ms * 1_000_000));
    live.add_latencies(&mut batch);
    live.tick();
    let text = prometheus(&live);
    let m = parse_exposition(&text);
    let at = |series: &str| {
        *m.get(series)
            .unwrap_or_else(|| panic!("no {series} in\n{text}"))
    };
    assert_eq!(at("plumbline_worker_items_total{worker=\"1\"}"), 12.0);
    assert_eq!(at("plumbline_latency_seconds_count"), 100.0);
    assert_eq!(at("plumbline_latency_seconds_bucket{le=\"0.05\"}"), 50.0);
    assert_eq!(at("plumbline_latency_seconds_bucket{le=\"0.1\"}"), 100.0);
    assert!((at("plumbline_latency_seconds_sum") - 5.05).abs() < 0.01);
    let p99 = histogram_quantile(0.99, &sum_by_le(&m, "plumbline_latency_seconds", |_| true));
    assert!((p99.unwrap() - 0.099).abs() < 0.02, "{p99:?}");
    assert_eq!(at("plumbline_in_flight"), 8.0);
    assert_eq!(at("plumbline_target_rate_per_second"), 250.0);
    assert_eq!(at("plumbline_items_planned"), 1_000.0);
    // What only a cluster reports is left out, not made up.
    for absent in [
        "plumbline_source_",
        "plumbline_step_seconds",
        "plumbline_worker_results",
    ] {
        assert!(!text.contains(absent), "{absent} in\n{text}");
    }
}

#[test]
fn the_step_summed_across_two_workers_by_le_gives_plumblines_p99_within_its_bucket() {
    let (fast, slow) = two_workers();
    let live = Live::new();
    live.set_workers(vec![
        worker("a", 5_000, fast.clone()),
        worker("b", 3_000, slow.clone()),
    ]);
    let m = parse_exposition(&prometheus(&live));
    let summed = sum_by_le(&m, "plumbline_step_seconds", |_| true);
    assert_eq!(summed.last(), Some(&(f64::INFINITY, 8_000.0)));
    let promql = histogram_quantile(0.99, &summed).expect("a quantile");
    let mut merged = fast;
    merged.merge(&slow);
    let ours = merged.summary().p99;
    let bounds = bounds_s();
    let upper = bounds.partition_point(|&b| b < ours);
    let width = bounds[upper] - bounds[upper - 1];
    assert!(
        (promql - ours).abs() <= width,
        "histogram_quantile {promql} vs HDR p99 {ours} (bucket width {width})"
    );
    // Either worker alone is far from it: the sum is what gives the cluster's p99.
    let one = sum_by_le(&m, "plumbline_step_seconds", |l| l[0].1 == "a");
    assert!(histogram_quantile(0.99, &one).unwrap() < ours - width);
}

#[test]
fn an_empty_live_is_still_a_valid_exposition() {
    let text = prometheus(&Live::new());
    let m = parse_exposition(&text);
    assert_eq!(m["plumbline_rate_out_per_second"], 0.0);
    assert_eq!(m["plumbline_run_info{label=\"\"}"], 1.0);
    for absent in [
        "plumbline_target_rate_per_second",
        "plumbline_items_planned",
        "plumbline_latency_seconds",
        "plumbline_worker_items_total",
        "plumbline_partition_items_total",
    ] {
        assert!(!text.contains(absent), "{absent} in\n{text}");
    }
}

#[test]
fn the_reader_rejects_each_kind_of_malformed_exposition() {
    const H: &str = "# HELP h_seconds x\n# TYPE h_seconds histogram\n";
    let bad = [
        ("a sample before its TYPE", "c_total 1\n".to_string()),
        (
            "a counter without _total",
            "# HELP c x\n# TYPE c counter\nc 1\n".into(),
        ),
        (
            "a duplicate series",
            "# HELP g x\n# TYPE g gauge\ng{a=\"1\",b=\"2\"} 1\ng{b=\"2\",a=\"1\"} 2\n".into(),
        ),
        (
            "a bad escape",
            "# HELP g x\n# TYPE g gauge\ng{a=\"\\t\"} 1\n".into(),
        ),
        (
            "a family reopened",
            "# HELP g x\n# TYPE g gauge\ng 1\n# HELP f x\n# TYPE f gauge\nf 1\n# HELP g x\n".into(),
        ),
        (
            "buckets not cumulative",
            format!("{H}h_seconds_bucket{{le=\"1\"}} 2\nh_seconds_bucket{{le=\"+Inf\"}} 1\nh_seconds_sum 1\nh_seconds_count 1\n"),
        ),
        (
            "no +Inf bucket",
            format!("{H}h_seconds_bucket{{le=\"1\"}} 1\nh_seconds_sum 1\nh_seconds_count 1\n"),
        ),
        (
            "+Inf other than _count",
            format!("{H}h_seconds_bucket{{le=\"+Inf\"}} 2\nh_seconds_sum 1\nh_seconds_count 1\n"),
        ),
        (
            "no _sum",
            format!("{H}h_seconds_bucket{{le=\"+Inf\"}} 1\nh_seconds_count 1\n"),
        ),
    ];
    for (what, text) in bad {
        let outcome = std::panic::catch_unwind(|| parse_exposition(&text));
        assert!(outcome.is_err(), "{what} was accepted:\n{text}");
    }
    let good = format!("{H}h_seconds_bucket{{le=\"1\"}} 1\nh_seconds_bucket{{le=\"+Inf\"}} 2\nh_seconds_sum 3\nh_seconds_count 2\n");
    assert_eq!(parse_exposition(&good)["h_seconds_count"], 2.0);
}
