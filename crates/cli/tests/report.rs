//! Issue 7 end to end: the report folder `bench` writes by default, `plumbline report` and
//! `plumbline compare`, and their bad input, all through the real binary.

mod common;

use std::path::{Path, PathBuf};

use common::{exclusive, plumbline, plumbline_in, scratch, stderr, stdout, workdir, Scratch};
use serde_json::Value;

/// Width and height of a PNG, decoded (not just its header read).
fn png_size(path: &Path) -> (u32, u32) {
    let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut reader = png::Decoder::new(file).read_info().unwrap();
    let mut pixels = vec![0; reader.output_buffer_size()];
    let frame = reader.next_frame(&mut pixels).unwrap();
    // A blank canvas would mean nothing was drawn: a plot has many colours.
    let distinct: std::collections::HashSet<&[u8]> = pixels[..frame.buffer_size()]
        .chunks(frame.color_type.samples())
        .collect();
    assert!(distinct.len() > 8, "{} is nearly blank", path.display());
    (frame.width, frame.height)
}

/// Runs the default preset, scaled down, in a working folder of its own; returns that folder
/// (the report goes with it) and the report folder bench named in it.
fn default_bench() -> (Scratch, PathBuf) {
    let _cpu = exclusive();
    let cwd = workdir();
    let out = plumbline_in(
        &cwd,
        &["bench", "--quiet", "--items", "200", "--delay", "2ms"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    let index = err
        .lines()
        .find_map(|l| l.strip_prefix("report: "))
        .unwrap_or_else(|| panic!("bench did not name its report folder: {err}"));
    let index = cwd.join(index);
    assert!(index.ends_with("index.html"), "{}", index.display());
    let dir = index.parent().unwrap().to_path_buf();
    (cwd, dir)
}

/// HdrHistogram's interval log of `path`: each interval's start (s from the log's base),
/// length and histogram, read with the crate's own reader.
fn read_hlog(path: &Path) -> Vec<(f64, f64, hdrhistogram::Histogram<u64>)> {
    use base64::Engine;
    use hdrhistogram::serialization::interval_log::{IntervalLogIterator, LogEntry};
    let text = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    IntervalLogIterator::new(&text)
        .filter_map(|entry| match entry.unwrap() {
            LogEntry::Interval(h) => Some(h),
            _ => None,
        })
        .map(|h| {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(h.encoded_histogram())
                .unwrap();
            let hist = hdrhistogram::serialization::Deserializer::new()
                .deserialize(&mut &bytes[..])
                .unwrap();
            (
                h.start_timestamp().as_secs_f64(),
                h.duration().as_secs_f64(),
                hist,
            )
        })
        .collect()
}

#[test]
fn issue16_each_run_has_an_interval_log_that_adds_up_to_its_latency() {
    let _cpu = exclusive();
    let dir = scratch("hlog-report");
    let report = dir.join("report");
    // Paced over ~3 s, so the run spans several one-second intervals.
    let out = plumbline(&[
        "bench",
        "--quiet",
        "--items",
        "900",
        "--delay",
        "1ms",
        "--workers",
        "1,2",
        "--rate",
        "300/s",
        "--report",
        report.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let doc: Value =
        serde_json::from_str(&std::fs::read_to_string(report.join("run.json")).unwrap()).unwrap();
    let runs = doc["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 2);
    for (i, run) in runs.iter().enumerate() {
        let path = report.join(format!("latency-{}.hlog", i + 1));
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.contains("#[StartTime: ") && text.contains("#[BaseTime: "),
            "{text}"
        );
        let intervals = read_hlog(&path);
        assert!(
            intervals.len() >= 2,
            "{} intervals: {text}",
            intervals.len()
        );
        assert!(
            intervals
                .windows(2)
                .all(|w| w[0].0 + w[0].1 <= w[1].0 + 1e-3),
            "intervals in order, not overlapping: {text}"
        );
        let mut merged = hdrhistogram::Histogram::<u64>::new(3).unwrap();
        for (_, length, hist) in &intervals {
            assert!(*length > 0.0 && *length < 1.5, "{length}");
            merged.add(hist).unwrap();
        }
        let latency = &run["latency_s"];
        assert_eq!(
            merged.len(),
            latency["count"].as_u64().unwrap(),
            "the intervals hold every value of run {}, once",
            i + 1
        );
        let p99 = merged.value_at_quantile(0.99) as f64 / 1e9;
        let run_p99 = latency["p99"].as_f64().unwrap();
        assert!(
            (p99 - run_p99).abs() <= run_p99 * 1e-3,
            "run {}: merged p99 {p99} vs the run's {run_p99}",
            i + 1
        );
    }
}

#[test]
fn issue7_bench_names_its_report_folder_and_the_plots_decode_at_their_size() {
    let (_cwd, dir) = default_bench();
    assert!(
        dir.file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with("bench-"),
        "a timestamped folder: {}",
        dir.display()
    );
    for plot in ["scaling", "overhead", "latency", "balance"] {
        assert_eq!(
            png_size(&dir.join(format!("{plot}.png"))),
            (960, 540),
            "{plot}"
        );
        let svg = std::fs::read_to_string(dir.join(format!("{plot}.svg"))).unwrap();
        assert!(svg.contains("<svg") && svg.contains("</svg>"), "{plot}.svg");
    }
    let doc: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("run.json")).unwrap()).unwrap();
    let runs = doc["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 3, "the default preset's 1, 2 and 10 workers");
    let workers: Vec<u64> = runs
        .iter()
        .map(|r| r["workers"].as_u64().unwrap())
        .collect();
    assert_eq!(workers, [1, 2, 10]);
    // The scaling curve's data: speedup rises with workers, under the ideal line.
    let speedups: Vec<f64> = runs
        .iter()
        .map(|r| r["speedup"].as_f64().unwrap())
        .collect();
    assert!(
        speedups[0] == 1.0 && speedups[1] > 1.3 && speedups[2] > speedups[1],
        "{speedups:?}"
    );
    assert!(speedups[2] <= 10.5, "{speedups:?}");
    // Histograms travel whole (HdrHistogram V2, base64), and the metadata says how to rerun.
    assert!(runs[0]["latency_s"]["hdr"].as_str().unwrap().len() > 20);
    let meta = &doc["meta"];
    assert_eq!(meta["kind"], "bench");
    assert!(meta["command"]
        .as_array()
        .unwrap()
        .iter()
        .any(|a| a == "--items"));
    assert_eq!(meta["resolved"]["items"], serde_json::json!([200]));
    assert_eq!(meta["resolved"]["delay"], serde_json::json!(["2ms"]));
    assert!(meta["host"]["cores"].as_u64().unwrap() >= 1);
    assert!(meta["host"]["memory_bytes"].as_u64().unwrap() > 0);
    assert!(!meta["git_commit"].as_str().unwrap().is_empty());
    assert!(meta["started_at"].as_str().unwrap() <= meta["ended_at"].as_str().unwrap());
    let csv = std::fs::read_to_string(dir.join("runs.csv")).unwrap();
    assert_eq!(csv.lines().count(), 4);
    let html = std::fs::read_to_string(dir.join("index.html")).unwrap();
    // The four per-run charts, and the rate and lag charts once the timeline has two ticks
    // (a run slowed past 2 s by a busy machine has them).
    let ticks = doc["timeline"].as_array().map_or(0, Vec::len);
    let charts = if ticks >= 2 { 6 } else { 4 };
    assert_eq!(html.matches("<figure").count(), charts, "{ticks} ticks");
    assert!(html.contains("--items"), "the page shows the command line");

    // Round trip: re-rendering from run.json alone rewrites the same run.json.
    let before = std::fs::read_to_string(dir.join("run.json")).unwrap();
    std::fs::remove_file(dir.join("scaling.png")).unwrap();
    let out = plumbline(&["report", dir.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("rendered 3 run(s)"),
        "{}",
        stdout(&out)
    );
    assert!(
        std::fs::read_to_string(dir.join("run.json")).unwrap() == before,
        "run.json changed when re-rendered"
    );
    assert_eq!(png_size(&dir.join("scaling.png")), (960, 540));

    // compare: a report against itself passes ...
    let out = plumbline(&["compare", dir.to_str().unwrap(), dir.to_str().unwrap()]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert!(
        stdout(&out).contains("no run got worse"),
        "{}",
        stdout(&out)
    );
    // ... and one whose 2-worker run lost 1 pp of overhead fails, naming it.
    let worse = scratch("worse-report");
    let mut doc = doc;
    let run = &mut doc["runs"][1];
    let overhead = run["overhead_pct"].as_f64().unwrap() + 1.0;
    run["overhead_pct"] = overhead.into();
    let label = run["label"].as_str().unwrap().to_string();
    std::fs::write(worse.join("run.json"), serde_json::to_string(&doc).unwrap()).unwrap();
    let out = plumbline(&["compare", dir.to_str().unwrap(), worse.to_str().unwrap()]);
    assert_eq!(
        out.status.code(),
        Some(99),
        "worse is a breach: {}",
        stdout(&out)
    );
    let err = stderr(&out);
    assert!(
        err.contains(&label) && err.contains("limit 0.5 pp"),
        "{err}"
    );
    assert!(stdout(&out).contains("WORSE"), "{}", stdout(&out));
    // A looser gate lets the same difference through.
    let out = plumbline(&[
        "compare",
        dir.to_str().unwrap(),
        worse.to_str().unwrap(),
        "--max-overhead-increase",
        "2pp",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn issue7_report_on_a_folder_without_run_json_names_the_folder() {
    let dir = scratch("empty-report");
    let out = plumbline(&["report", dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains(&format!("{} has no run.json", dir.display())),
        "{err}"
    );
    let out = plumbline(&["compare", dir.to_str().unwrap(), dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("has no run.json"), "{}", stderr(&out));
}

#[test]
fn issue7_a_corrupt_run_json_is_refused_with_where_it_broke() {
    let dir = scratch("corrupt-report");
    std::fs::write(
        dir.join("run.json"),
        "{\"format\": \"plumbline-report/1\", \"meta\": ",
    )
    .unwrap();
    let out = plumbline(&["report", dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("run.json is not a valid plumbline report"),
        "{err}"
    );
    assert!(err.contains("line 1 column"), "says where: {err}");
    assert!(!err.contains("panicked"), "{err}");
    std::fs::write(dir.join("run.json"), "[1, 2, 3]").unwrap();
    let out = plumbline(&["report", dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("not a valid plumbline report"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn issue7_compare_thresholds_are_checked_when_parsed() {
    let dir = scratch("threshold");
    let out = plumbline(&[
        "compare",
        dir.to_str().unwrap(),
        dir.to_str().unwrap(),
        "--max-p99-increase",
        "lots",
    ]);
    assert_eq!(out.status.code(), Some(2), "a usage error");
    assert!(
        stderr(&out).contains("\"lots\" is not a threshold"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn issue7_a_paced_send_and_its_receiver_report_the_timeline() {
    let _cpu = exclusive();
    let dir = scratch("paced-report");
    let (send_dir, receive_dir) = (dir.join("send"), dir.join("receive"));
    let receiving = common::Receiving::start(&[
        "--expect",
        "1500",
        "--report",
        receive_dir.to_str().unwrap(),
    ]);
    let out = plumbline(&[
        "send",
        "--quiet",
        "--host",
        &receiving.addr,
        "--gen",
        "nonces",
        "--rate",
        "500/s",
        "--messages",
        "1500",
        "--report",
        send_dir.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let (code, _, err) = receiving.finish();
    assert_eq!(code, Some(0), "{err}");
    let send: Value =
        serde_json::from_str(&std::fs::read_to_string(send_dir.join("run.json")).unwrap()).unwrap();
    let ticks = send["timeline"].as_array().unwrap();
    assert!(ticks.len() >= 2, "{ticks:?}");
    // Full seconds of a 500/s send: the target, and an achieved rate close to it.
    let first = &ticks[0];
    assert_eq!(first["target_per_s"], 500.0);
    let achieved = first["in_per_s"].as_f64().unwrap();
    assert!(
        (achieved - 500.0).abs() < 100.0,
        "second 1 sent {achieved}/s"
    );
    assert_eq!(send["runs"][0]["items"], 1500);
    assert!((send["runs"][0]["ideal_s"].as_f64().unwrap() - 3.0).abs() < 1e-9);
    for plot in ["rate", "lag", "latency", "overhead"] {
        assert_eq!(
            png_size(&send_dir.join(format!("{plot}.png"))),
            (960, 540),
            "{plot}"
        );
    }
    let receive: Value =
        serde_json::from_str(&std::fs::read_to_string(receive_dir.join("run.json")).unwrap())
            .unwrap();
    assert_eq!(receive["meta"]["kind"], "receive");
    assert_eq!(receive["runs"][0]["items"], 1500);
    assert_eq!(receive["runs"][0]["lost"], 0);
    let out_rate = receive["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["out_per_s"].as_f64().unwrap())
        .fold(0.0, f64::max);
    assert!(
        out_rate > 300.0,
        "the receiver saw at most {out_rate}/s in a second"
    );
    assert!(receive_dir.join("rate.png").exists());
}

/// Issue 17: `merge` of three hosts' report folders (three receivers here, one machine): the
/// merged row's p99 is the p99 of all their samples, as a direct merge of the raw histograms
/// gives it, and its counts are the sum.
#[test]
fn issue17_merge_of_three_reports_has_the_p99_of_all_samples() {
    let _cpu = exclusive();
    let dir = scratch("merge");
    let folders: Vec<PathBuf> = (0..3).map(|i| dir.join(format!("host{i}"))).collect();
    for (i, folder) in folders.iter().enumerate() {
        let receiving =
            common::Receiving::start(&["--expect", "600", "--report", folder.to_str().unwrap()]);
        // A different rate per host, so their latency distributions differ.
        let rate = format!("{}/s", 300 * (i + 1));
        let out = common::send_nonces(&receiving.addr, &rate, 600);
        assert!(out.status.success(), "{}", stderr(&out));
        let (code, _, err) = receiving.finish();
        assert_eq!(code, Some(0), "{err}");
    }
    let merged = dir.join("merged");
    let mut args = vec!["merge"];
    args.extend(folders.iter().map(|f| f.to_str().unwrap()));
    args.extend(["--out", merged.to_str().unwrap()]);
    let out = plumbline(&args);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("merged 3 reports"),
        "{}",
        stdout(&out)
    );
    let doc: Value =
        serde_json::from_str(&std::fs::read_to_string(merged.join("run.json")).unwrap()).unwrap();
    let runs = doc["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 4, "three hosts' rows and the merged one");
    let all = &runs[3];
    assert_eq!(all["label"], "all hosts: receive");
    assert_eq!(all["items"], 1800);
    assert_eq!(all["lost"], 0);
    let mut direct = plumbline_measure::Recorder::new();
    for folder in &folders {
        let doc: Value =
            serde_json::from_str(&std::fs::read_to_string(folder.join("run.json")).unwrap())
                .unwrap();
        let latency: plumbline_measure::LatencySummary =
            serde_json::from_value(doc["runs"][0]["latency_s"].clone()).unwrap();
        direct.merge(&latency.recorder().unwrap());
    }
    let direct = direct.summary();
    assert_eq!(all["latency_s"]["count"], 1800);
    assert_eq!(all["latency_s"]["p99"].as_f64().unwrap(), direct.p99);
    assert!(merged.join("index.html").exists() && merged.join("latency-3.hgrm").exists());

    let out = plumbline(&["merge", folders[0].to_str().unwrap(), "--out", "x"]);
    assert_eq!(out.status.code(), Some(2), "one report is not a merge");
    let out = plumbline(&[
        "merge",
        folders[0].to_str().unwrap(),
        dir.join("nothing").to_str().unwrap(),
        "--out",
        merged.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("nothing"), "{}", stderr(&out));
}
