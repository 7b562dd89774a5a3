//! Issue 14 §2 end to end: one run record. `bench --json` on threads and on the task pipeline
//! write the same schema, read back here as the one Rust type, and `report` and `compare` read
//! those files too, refusing an older or unknown schema by its version (tests/fixtures holds
//! documents the last version wrote).

mod common;

use std::path::{Path, PathBuf};

use common::{exclusive, plumbline, scratch, stderr, stdout};
use plumbline_measure::report::{BenchReport, SCHEMA};

/// Runs `bench --json` with `args` and returns the file it wrote.
fn bench(dir: &Path, name: &str, args: &[&str]) -> PathBuf {
    let _cpu = exclusive();
    let path = dir.join(name);
    let mut all = vec![
        "bench",
        "-q",
        "--no-report",
        "--json",
        path.to_str().unwrap(),
    ];
    all.extend_from_slice(args);
    let out = plumbline(&all);
    assert!(out.status.success(), "{}\n{}", stderr(&out), stdout(&out));
    path
}

fn read(path: &Path) -> BenchReport {
    BenchReport::parse(&std::fs::read(path).unwrap())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn bench_and_the_pipeline_table_write_one_schema_read_as_one_type() {
    let dir = scratch("record-one-type");
    let threads = read(&bench(
        &dir,
        "threads.json",
        &["--items", "20", "--delay", "1ms", "--workers", "1,2"],
    ));
    let pipeline_json = bench(
        &dir,
        "pipeline.json",
        &[
            "--preset",
            "pipeline",
            "--items",
            "20",
            "--workers",
            "1",
            "--threads",
            "1",
            "--delay",
            "1ms",
        ],
    );
    let pipeline = read(&pipeline_json);
    for doc in [&threads, &pipeline] {
        assert_eq!(doc.schema, SCHEMA);
        for run in &doc.runs {
            assert_eq!((run.items, run.delivered, run.lost), (20, 20, 0), "{run:?}");
            // 20 × 1 ms over at most 2 slots: between 10 and 20 ms, and the wall time above it.
            assert!(
                (0.0099..=0.0201).contains(&run.ideal_s),
                "ideal {}",
                run.ideal_s
            );
            assert!(run.wall_s >= run.ideal_s, "{run:?}");
            let overhead = run.overhead_pct.expect("a non-zero ideal has an overhead");
            assert!(
                (overhead - (run.wall_s / run.ideal_s - 1.0) * 100.0).abs() < 1e-6,
                "one formula, in percent: {overhead}"
            );
        }
    }
    assert_eq!(threads.runs.len(), 2);
    assert!(threads.runs.iter().all(|r| r.pipeline.is_none()));
    assert!(threads.seed.is_some(), "generated load has a seed");
    let run = &pipeline.runs[0];
    assert_eq!((run.cluster.as_str(), run.workers), ("pipeline", 1));
    assert_eq!(run.ideal_s, 0.02, "⌈20 tasks ÷ 1 slot⌉ × 1 ms");
    let figures = run
        .pipeline
        .as_ref()
        .expect("a pipeline run has its figures");
    assert_eq!(figures.threads_per_worker, 1);
    assert_eq!((figures.failed, figures.seed_wall_s), (0, None));
    assert_eq!(figures.distributor["acked"], 20);
    assert_eq!(run.per_worker, [20]);
    assert_eq!(pipeline.seed, None, "the pipeline's tasks are not random");
    // Its report rows keep runs of other thread counts apart, and show no latency it lacks.
    let file = pipeline_json.to_str().unwrap();
    let out = plumbline(&["compare", file, file]);
    assert!(out.status.success(), "{}", stderr(&out));
    let table = stdout(&out);
    let row = table
        .lines()
        .find(|l| l.contains("pipeline (none) x 1 thread(s) on 1"))
        .unwrap_or_else(|| panic!("{table}"));
    // The distributor times each task to its first ACK: the pipeline's p99 is compared too.
    assert!(row.contains("ms "), "a p99 in the compare row: {row}");
}

#[test]
fn report_and_compare_read_run_records_and_refuse_other_schemas_by_version() {
    let dir = scratch("record-read");
    let base = bench(
        &dir,
        "base.json",
        &["--items", "20", "--delay", "1ms", "--workers", "1,2"],
    );
    let path = |p: &Path| p.to_str().unwrap().to_string();
    let out = plumbline(&["compare", &path(&base), &path(&base)]);
    assert!(out.status.success(), "{}", stderr(&out));
    let table = stdout(&out);
    assert!(
        table.contains(" on 2 ") && table.contains("no run got worse"),
        "{table}"
    );
    let rendered = dir.join("rendered");
    let out = plumbline(&["report", &path(&base), "--out", &path(&rendered)]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(rendered.join("index.html").exists() && rendered.join("run.json").exists());
    let out = plumbline(&["report", &path(&base)]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("--out DIR"), "{}", stderr(&out));

    // A record without a schema (bench --json before versions) and one of an unknown version.
    let mut doc: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&base).unwrap()).unwrap();
    doc.as_object_mut().unwrap().remove("schema");
    let old = dir.join("old.json");
    std::fs::write(&old, doc.to_string()).unwrap();
    doc["schema"] = "plumbline.run/7".into();
    let future = dir.join("future.json");
    std::fs::write(&future, doc.to_string()).unwrap();
    for (file, version) in [(&old, "plumbline.run/1"), (&future, "plumbline.run/7")] {
        for args in [
            vec!["compare".to_string(), path(&base), path(file)],
            vec!["report".into(), path(file), "--out".into(), path(&rendered)],
        ] {
            let out = plumbline(&args.iter().map(String::as_str).collect::<Vec<_>>());
            assert_eq!(out.status.code(), Some(1), "{args:?}");
            let err = stderr(&out);
            assert!(
                err.contains(version) && err.contains("this plumbline reads plumbline.run/2"),
                "{args:?}: {err}"
            );
            assert!(!err.contains("panicked"), "{err}");
        }
    }

    // A report folder's run.json of another format is refused by its version too.
    let folder = dir.join("folder");
    std::fs::create_dir_all(&folder).unwrap();
    let mut run_json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(rendered.join("run.json")).unwrap()).unwrap();
    run_json["format"] = "plumbline-report/0".into();
    std::fs::write(folder.join("run.json"), run_json.to_string()).unwrap();
    let out = plumbline(&["compare", &path(&folder), &path(&base)]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains(
            "is format \"plumbline-report/0\"; this plumbline reads \"plumbline-report/1\""
        ),
        "{}",
        stderr(&out)
    );
}

#[test]
fn documents_written_before_plumbline_run_2_are_read_or_refused_by_their_version() {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let at = |name: &str| fixtures.join(name).to_str().unwrap().to_string();
    // A report folder of the last version: its run.json rows did not change, so it is read.
    let folder = at("report-v1");
    let out = plumbline(&["compare", &folder, &folder]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains(" on 2 "), "{}", stdout(&out));
    let rendered = scratch("record-v1").join("rendered");
    let out = plumbline(&["report", &folder, "--out", rendered.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(rendered.join("index.html").exists());
    // The last version's `bench --json`, of the thread presets and of the pipeline table.
    for name in ["record-v1-bench.json", "record-v1-pipeline.json"] {
        let out = plumbline(&["compare", &folder, &at(name)]);
        assert_eq!(out.status.code(), Some(1), "{name}");
        let err = stderr(&out);
        assert!(
            err.contains(&format!("{name} is not a run record this plumbline reads"))
                && err.contains("plumbline.run/1"),
            "{err}"
        );
    }
}
