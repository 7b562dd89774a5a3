//! Issue 14 §2 end to end: one run record. Every command's `--json` (bench and the pipeline
//! table, send, receive, stream, capacity) is read back here as the one Rust type, `report`
//! and `compare` read each of those files, `compare` refuses two commands' records by name, and
//! older or unknown schemas are refused by their version (tests/fixtures holds documents the
//! earlier versions wrote).

mod common;

use std::path::{Path, PathBuf};

use common::{exclusive, plumbline, scratch, stderr, stdout, Receiving};
use plumbline_measure::record::{Command, Record, SCHEMA};
use plumbline_servers::{Kind, Server};

/// Runs `plumbline ARGS --json DIR/NAME`, asserting it passed, and returns the file.
fn json_of(dir: &Path, name: &str, args: &[&str]) -> PathBuf {
    let path = dir.join(name);
    let mut all = args.to_vec();
    all.extend_from_slice(&["--json", path.to_str().unwrap()]);
    let out = plumbline(&all);
    assert!(out.status.success(), "{}\n{}", stderr(&out), stdout(&out));
    path
}

/// Runs `bench --json` with `args` and returns the file it wrote.
fn bench(dir: &Path, name: &str, args: &[&str]) -> PathBuf {
    let _cpu = exclusive();
    let mut all = vec!["bench", "-q", "--no-report"];
    all.extend_from_slice(args);
    json_of(dir, name, &all)
}

fn read(path: &Path) -> Record {
    Record::parse(&std::fs::read(path).unwrap())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// What every command's record must say the same way: its schema, its command, and each run's
/// overhead by the one formula from its wall and ideal.
fn assert_one_schema(record: &Record, command: Command) {
    assert_eq!(record.schema, SCHEMA);
    assert_eq!(record.command, command);
    assert!(!record.runs.is_empty(), "{command}: no runs");
    for run in &record.runs {
        let expected = run
            .ideal_s
            .filter(|&i| i > 0.0)
            .map(|i| (run.wall_s / i - 1.0) * 100.0);
        match (run.overhead_pct, expected) {
            (Some(o), Some(e)) => assert!((o - e).abs() < 1e-6, "{command}: {o} vs {e}"),
            (o, e) => assert_eq!(o, e, "{command}: overhead without an ideal"),
        }
        let sections = [
            run.bench.is_some(),
            run.stream.is_some(),
            run.send.is_some(),
            run.receive.is_some(),
            run.trial.is_some(),
            run.elastic.is_some(),
        ];
        assert_eq!(
            sections.iter().filter(|&&s| s).count(),
            1,
            "{command}: one section per run: {run:?}"
        );
    }
}

/// `report FILE --out DIR` renders the record, and `compare FILE FILE` passes on it.
fn assert_report_and_compare_read(file: &Path, dir: &Path) {
    let rendered = dir.join(format!(
        "{}-rendered",
        file.file_stem().unwrap().to_string_lossy()
    ));
    let out = plumbline(&["report", path(file), "--out", path(&rendered)]);
    assert!(out.status.success(), "{}: {}", file.display(), stderr(&out));
    assert!(rendered.join("index.html").exists());
    let out = plumbline(&["compare", path(file), path(file)]);
    assert!(out.status.success(), "{}: {}", file.display(), stderr(&out));
    assert!(
        stdout(&out).contains("no run got worse"),
        "{}",
        stdout(&out)
    );
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
        assert_one_schema(doc, Command::Bench);
        for run in &doc.runs {
            assert_eq!(
                (run.items, run.delivered, run.lost),
                (Some(20), Some(20), 0),
                "{run:?}"
            );
            // 20 × 1 ms over at most 2 slots: between 10 and 20 ms, and the wall time above it.
            let ideal = run.ideal_s.unwrap();
            assert!((0.0099..=0.0201).contains(&ideal), "ideal {ideal}");
            assert!(run.wall_s >= ideal, "{run:?}");
            assert!(
                run.overhead_pct.is_some(),
                "a non-zero ideal has an overhead"
            );
        }
    }
    assert_eq!(threads.runs.len(), 2);
    assert!(threads.runs.iter().all(|r| r.pipeline.is_none()));
    assert!(threads.seed.is_some(), "generated load has a seed");
    assert!(threads.runs[0].latency_s.count == 20 && !threads.runs[0].latency_s.hdr.is_empty());
    let run = &pipeline.runs[0];
    let bench = run.bench.as_ref().expect("the pipeline table is a bench");
    assert_eq!((bench.cluster.as_str(), run.workers), ("pipeline", 1));
    assert_eq!(run.ideal_s, Some(0.02), "⌈20 tasks ÷ 1 slot⌉ × 1 ms");
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
    let file = path(&pipeline_json);
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
fn send_receive_stream_and_capacity_write_the_same_schema_and_report_and_compare_read_them() {
    let dir = scratch("record-every-command");
    let bench_json = bench(
        &dir,
        "bench.json",
        &["--items", "20", "--delay", "1ms", "--workers", "1"],
    );
    let _cpu = exclusive();
    // send → receive over loopback, 300 paced messages.
    let receive_json = dir.join("receive.json");
    let receiving = Receiving::start(&[
        "--expect",
        "300",
        "--idle-timeout",
        "10s",
        "--json",
        path(&receive_json),
    ]);
    let send_json = json_of(
        &dir,
        "send.json",
        &[
            "send",
            "--host",
            &receiving.addr,
            "--gen",
            "nonces",
            "--rate",
            "1000/s",
            "--messages",
            "300",
            "--quiet",
        ],
    );
    let (code, out, err) = receiving.finish();
    assert_eq!(code, Some(0), "{out}\n{err}");
    let send = read(&send_json);
    assert_one_schema(&send, Command::Send);
    let sent = &send.runs[0];
    assert_eq!(
        (sent.items, sent.sent, sent.delivered),
        (Some(300), Some(300), None)
    );
    assert_eq!(sent.target_per_s, Some(1000.0));
    // The schedule planned 300 ÷ 1000/s: the ideal, against which the sender fell behind.
    assert!((sent.ideal_s.unwrap() - 0.3).abs() < 1e-9, "{sent:?}");
    let section = sent.send.as_ref().unwrap();
    assert_eq!(section.lateness_s.count, 300, "every send's lateness");
    let receive = read(&receive_json);
    assert_one_schema(&receive, Command::Receive);
    let received = &receive.runs[0];
    assert_eq!((received.sent, received.delivered), (None, Some(300)));
    assert_eq!((received.lost, received.duplicates), (0, 0));
    assert_eq!(received.latency_s.count, 300);
    assert_eq!(received.receive.as_ref().unwrap().frames, 300);

    // capacity: one worker count, short trials; the runs are its trials.
    let capacity_json = json_of(
        &dir,
        "capacity.json",
        &[
            "capacity",
            "--quiet",
            "--no-report",
            "--workers",
            "1",
            "--delay",
            "10ms",
            "--warmup",
            "300ms",
            "--window",
            "1s",
        ],
    );
    let capacity = read(&capacity_json);
    assert_one_schema(&capacity, Command::Capacity);
    let section = capacity.capacity.as_ref().expect("capacity's section");
    let point = &section.curves[0].points[0];
    assert!(point.capacity.is_some(), "{point:?}");
    assert_eq!(point.trials.len(), capacity.runs.len());
    for &i in &point.trials {
        let trial = &capacity.runs[i];
        let judged = trial.trial.as_ref().unwrap();
        assert!(["pass", "fail", "sender-bound"].contains(&judged.verdict.as_str()));
        assert_eq!(judged.why.is_none(), judged.verdict == "pass", "{trial:?}");
        assert!(trial.target_per_s.is_some() && trial.latency_s.count > 0);
    }

    let mut files = vec![
        bench_json.clone(),
        send_json.clone(),
        receive_json,
        capacity_json,
    ];

    // stream (seed 004) on a Redis server of its own.
    match Server::for_test(Kind::Redis, "record: stream") {
        Some(server) => {
            let stream_json = json_of(
                &dir,
                "stream.json",
                &[
                    "stream",
                    "--stream",
                    "redis",
                    "--stream-servers",
                    &server.addr,
                    "--stream-method",
                    "default",
                    "proxy",
                    "--data-size-bytes",
                    "1000",
                    "--task-count",
                    "6",
                    "--task-sleep",
                    "10ms",
                    "--max-workers",
                    "3",
                ],
            );
            let stream = read(&stream_json);
            assert_one_schema(&stream, Command::Stream);
            for run in &stream.runs {
                assert_eq!(
                    (run.items, run.sent, run.delivered),
                    (Some(6), Some(6), Some(6))
                );
                // 2 compute workers of 10 ms tasks: offered at 200/s.
                assert_eq!(run.target_per_s, Some(200.0), "{run:?}");
                assert_eq!(run.latency_s.count, 6);
            }
            files.push(stream_json);
        }
        None => eprintln!("skipping the stream record: no redis-server"),
    }

    for file in &files {
        assert_report_and_compare_read(file, &dir);
    }
    // Runs of two commands do not compare: said by name, not a table of missing runs.
    let out = plumbline(&["compare", path(&bench_json), path(&send_json)]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("the base holds a `bench` report and the new a `send` report"),
        "{err}"
    );
}

#[test]
fn report_and_compare_read_run_records_and_refuse_other_schemas_by_version() {
    let dir = scratch("record-read");
    let base = bench(
        &dir,
        "base.json",
        &["--items", "20", "--delay", "1ms", "--workers", "1,2"],
    );
    let out = plumbline(&["compare", path(&base), path(&base)]);
    assert!(out.status.success(), "{}", stderr(&out));
    let table = stdout(&out);
    assert!(
        table.contains(" on 2 ") && table.contains("no run got worse"),
        "{table}"
    );
    let rendered = dir.join("rendered");
    let out = plumbline(&["report", path(&base), "--out", path(&rendered)]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(rendered.join("index.html").exists() && rendered.join("run.json").exists());
    let out = plumbline(&["report", path(&base)]);
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
            vec!["compare", path(&base), path(file)],
            vec!["report", path(file), "--out", path(&rendered)],
        ] {
            let out = plumbline(&args);
            assert_eq!(out.status.code(), Some(1), "{args:?}");
            let err = stderr(&out);
            assert!(
                err.contains(version) && err.contains("this plumbline reads plumbline.run/3"),
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
    let out = plumbline(&["compare", path(&folder), path(&base)]);
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
fn documents_written_before_plumbline_run_3_are_read_or_refused_by_their_version() {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let at = |name: &str| fixtures.join(name).to_str().unwrap().to_string();
    // A report folder of an earlier version: its run.json rows did not change, so it is read.
    let folder = at("report-v1");
    let out = plumbline(&["compare", &folder, &folder]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains(" on 2 "), "{}", stdout(&out));
    let rendered_dir = scratch("record-v1");
    let rendered = rendered_dir.join("rendered");
    let out = plumbline(&["report", &folder, "--out", rendered.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(rendered.join("index.html").exists());
    // Earlier `bench --json` files: version 1 (no schema: the thread presets and the pipeline
    // table) and plumbline.run/2.
    for (name, version) in [
        ("record-v1-bench.json", "plumbline.run/1"),
        ("record-v1-pipeline.json", "plumbline.run/1"),
        ("record-v2-bench.json", "schema plumbline.run/2"),
    ] {
        let out = plumbline(&["compare", &folder, &at(name)]);
        assert_eq!(out.status.code(), Some(1), "{name}");
        let err = stderr(&out);
        assert!(
            err.contains(&format!("{name} is not a run record this plumbline reads"))
                && err.contains(version)
                && err.contains("this plumbline reads plumbline.run/3"),
            "{err}"
        );
    }
}
