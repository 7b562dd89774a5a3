//! Experiment files end to end (`plumbline run FILE [FLAGS…]`): every file in `examples/`
//! runs (the broker ones on brokers started on free ports, skipped as the other broker tests
//! are when one is missing), a file gives the same figures as the flags it stands for, a flag
//! given after it replaces the file's value, relative paths in it are its folder's, and a file
//! that cannot be read is refused naming the file, the key and the command.

mod common;

use std::path::{Path, PathBuf};

use common::{
    assert_fails, exclusive, plumbline, record_runs, scratch, stderr, Node, PipelineCollector,
    Receiving,
};
use plumbline_servers::{Kind, Server};
use serde_json::Value;

/// The example files every test below runs: a new one needs a test here.
const EXAMPLES: [&str; 15] = [
    "000-sleepy.toml",
    "001-capacity.toml",
    "001-pipeline.toml",
    "001-roles/collector.toml",
    "001-roles/distributor.toml",
    "001-roles/worker.toml",
    "002-alphabet.toml",
    "002-cluster/initializer.toml",
    "002-cluster/receiver.toml",
    "002-cluster/roo.toml",
    "002-cluster/sender.toml",
    "003-autoscale.toml",
    "003-feeder.toml",
    "003-receiver.toml",
    "004-stream.toml",
];

fn example(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples")
        .join(name);
    path.to_str().unwrap().to_string()
}

/// Runs `plumbline ARGS… --json FILE`, which must succeed; its run record.
fn record(name: &str, args: &[&str]) -> Value {
    let _cpu = exclusive();
    let doc = common::json_of(name, args);
    assert_eq!(doc["schema"], "plumbline.run/3", "{doc:#}");
    doc
}

fn runs(record: &Value) -> Vec<Value> {
    record["runs"].as_array().unwrap().clone()
}

/// What a bench run's plan fixes, whatever the machine's timing.
const PLANNED: [&str; 8] = [
    "/items",
    "/workers",
    "/ideal_s",
    "/sent",
    "/delivered",
    "/bench/cluster",
    "/bench/step",
    "/bench/delay_s",
];

/// Asserts that a file's runs and its flags' runs agree at each of `pointers` (JSON
/// pointers into a run: the figures the plan fixes, not the timing).
fn same_runs(file: &[Value], flags: &[Value], pointers: &[&str]) {
    assert_eq!(file.len(), flags.len(), "{file:#?}\n{flags:#?}");
    for (a, b) in file.iter().zip(flags) {
        for pointer in pointers {
            assert_eq!(
                a.pointer(pointer),
                b.pointer(pointer),
                "{pointer}: {a:#}\n{b:#}"
            );
            assert!(a.pointer(pointer).is_some(), "{pointer} in {a:#}");
        }
    }
}

#[test]
fn every_example_file_is_run_by_a_test_here() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let mut found = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let inner: Vec<PathBuf> = match path.is_dir() {
            true => std::fs::read_dir(&path)
                .unwrap()
                .map(|e| e.unwrap().path())
                .collect(),
            false => vec![path],
        };
        for file in inner {
            if file.extension().is_some_and(|e| e == "toml") {
                let name = file.strip_prefix(&dir).unwrap();
                found.push(name.to_str().unwrap().to_string());
            }
        }
    }
    found.sort();
    assert_eq!(found, EXAMPLES);
}

#[test]
fn seed_000_file_gives_the_figures_of_its_flags() {
    let file = runs(&record(
        "exp-000-file",
        &["run", &example("000-sleepy.toml")],
    ));
    let flags = runs(&record(
        "exp-000-flags",
        &[
            "bench",
            "--workload",
            "nonces",
            "--size",
            "1024",
            "--partitions",
            "60",
            "--items",
            "512",
            "--delay",
            "5ms",
            "--workers",
            "1,2",
            "--step",
            "partitioned",
            "--cluster",
            "processes",
            "--no-report",
        ],
    ));
    same_runs(&file, &flags, &PLANNED);
    assert_eq!(file.len(), 2, "1 and 2 workers: {file:#?}");
    for run in &file {
        assert_eq!(run["delivered"], 512, "{run:#}");
        assert_eq!(run["lost"], 0);
    }
    let ideal = |i: usize| file[i]["ideal_s"].as_f64().unwrap();
    assert!((ideal(0) - 2.56).abs() < 1e-9, "512 x 5 ms: {}", ideal(0));
    assert!(ideal(1) < 0.6 * ideal(0), "two workers share the keys");
}

#[test]
fn seed_001_pipeline_file_gives_the_figures_of_its_flags() {
    let table = runs(&record("exp-001", &["run", &example("001-pipeline.toml")]));
    let flags = runs(&record(
        "exp-001-flags",
        &[
            "bench",
            "--preset",
            "pipeline",
            "--items",
            "100",
            "--workers",
            "1,2",
            "--threads",
            "1,10",
            "--no-report",
        ],
    ));
    same_runs(&table, &flags, &PLANNED);
    let mut ideals: Vec<f64> = table
        .iter()
        .map(|r| r["ideal_s"].as_f64().unwrap())
        .collect();
    ideals.sort_by(f64::total_cmp);
    assert_eq!(ideals, [0.05, 0.1, 0.5, 1.0], "{table:#?}");
    assert!(table
        .iter()
        .all(|r| r["delivered"] == 100 && r["lost"] == 0));
}

#[test]
fn seed_001_capacity_file_searches_as_its_flags_do() {
    let doc = record("exp-001-capacity", &["run", &example("001-capacity.toml")]);
    let flags = record(
        "exp-001-capacity-flags",
        &[
            "capacity",
            "--delay",
            "10ms",
            "--workers",
            "1,2",
            "--warmup",
            "500ms",
            "--window",
            "1s",
            "--resolution",
            "10%",
            "--max-trials",
            "8",
            "--no-report",
            "--quiet",
        ],
    );
    for pointer in [
        "/capacity/resolution",
        "/capacity/warmup_s",
        "/capacity/window_s",
        "/capacity/slo",
        "/capacity/curves/0/points/0/workers",
        "/capacity/curves/0/points/1/workers",
    ] {
        assert_eq!(doc.pointer(pointer), flags.pointer(pointer), "{pointer}");
        assert!(doc.pointer(pointer).is_some(), "{pointer} in {doc:#}");
    }
    let points = doc["capacity"]["curves"][0]["points"].as_array().unwrap();
    let workers: Vec<&Value> = points.iter().map(|p| &p["workers"]).collect();
    assert_eq!(workers, [1, 2], "{doc:#}");
    let ideal = points[0]["ideal_rate"].as_f64().unwrap();
    assert!((ideal - 100.0).abs() < 1e-9, "1 / 10 ms: {ideal}");
    let found = points[0]["capacity"].as_f64().unwrap();
    assert!(found > 0.0 && found <= 110.0, "at most ~the ideal: {found}");
    assert_eq!(doc["capacity"]["resolution"], 0.1);
    assert_eq!(doc["capacity"]["window_s"], 1.0);
}

/// Seed 001's three roles as three files, on free endpoints instead of the seed's (flags after
/// each file): every task ACKed, the ideal the 10 threads of the worker's file give.
#[test]
fn seed_001_role_files_run_the_pipeline() {
    let _cpu = exclusive();
    let dir = scratch("exp-001-roles");
    let file = |role: &str| example(&format!("001-roles/{role}.toml"));
    let collector = PipelineCollector::start_as(&["run", &file("collector")], &[]);
    let report = dir.join("report.json");
    let (mut distributor, endpoint) = common::pipeline_distributor_as(
        &["run", &file("distributor")],
        &collector.acks,
        &report,
        &[],
    );
    let _worker = common::pipeline_worker_as(
        &["run", &file("worker")],
        &endpoint,
        &collector.results,
        "w1",
        &[],
    );
    assert_eq!(distributor.exit_code(60), Some(0), "{}", distributor.log());
    let r: Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(r["acked"], 100, "{r:#}");
    assert_eq!(r["lost"], 0);
    let ideal = r["ideal_s"].as_f64().unwrap();
    assert!(
        (ideal - 0.1).abs() < 1e-9,
        "100 x 10 ms on 10 threads: {r:#}"
    );
}

#[test]
fn seed_002_file_gives_the_figures_of_its_flags_and_flags_after_it_win() {
    let doc = record("exp-002-file", &["run", &example("002-alphabet.toml")]);
    let line: Vec<&str> = doc["command_line"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(line[1..3], ["bench", "--cluster=processes"], "{line:?}");
    assert!(
        line.contains(&"--preset=alphabet"),
        "the file's line: {line:?}"
    );
    let file = runs(&doc);
    let flags = runs(&record(
        "exp-002-flags",
        &[
            "bench",
            "--preset",
            "alphabet",
            "--delay",
            "20ms",
            "--workers",
            "1,2",
            "--cluster",
            "processes",
            "--threshold",
            "overhead<100%",
            "--threshold",
            "lost<=0",
            "--no-report",
        ],
    ));
    same_runs(&file, &flags, &PLANNED);
    let ideals: Vec<f64> = file
        .iter()
        .map(|r| r["ideal_s"].as_f64().unwrap())
        .collect();
    assert_eq!(ideals, [1.04, 0.52]);

    // A several-valued flag and a repeated one given after the file replace its values whole.
    let over = runs(&record(
        "exp-002-over",
        &[
            "run",
            &example("002-alphabet.toml"),
            "--workers",
            "2",
            "--delay",
            "10ms",
            "--threshold",
            "lost<=0",
        ],
    ));
    assert_eq!(over.len(), 1, "--workers 2 replaced [1, 2]: {over:#?}");
    assert_eq!(over[0]["workers"], 2);
    assert_eq!(over[0]["ideal_s"], 0.26);
}

/// A threshold on the command line replaces the file's (clap would otherwise append to a
/// repeated flag, and the file's impossible limit would breach).
#[test]
fn a_repeated_flag_after_the_file_replaces_the_files_list() {
    let dir = scratch("exp-threshold");
    let file = dir.join("tiny.toml");
    std::fs::write(
        &file,
        "command = \"bench\"\nitems = [20]\ndelay = [\"1ms\"]\nworkers = [1]\n\
         threshold = [\"wall<1us\"]\nno-report = true\nquiet = true\n",
    )
    .unwrap();
    let file = file.to_str().unwrap();
    let _cpu = exclusive();
    assert_fails(&plumbline(&["run", file]), 99, "wall");
    let out = plumbline(&["run", file, "--threshold", "wall<10m"]);
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn relative_paths_in_a_file_are_its_folders() {
    let dir = scratch("exp-relative");
    std::fs::create_dir_all(dir.join("presets")).unwrap();
    std::fs::write(
        dir.join("presets/mine.toml"),
        "items = [30]\ndelay = [\"1ms\"]\nworkers = [1]\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("exp.toml"),
        "command = \"bench\"\npreset = \"presets/mine.toml\"\njson = \"out/run.json\"\n\
         no-report = true\nquiet = true\n",
    )
    .unwrap();
    std::fs::create_dir_all(dir.join("out")).unwrap();
    let _cpu = exclusive();
    // The binary runs in another folder (the tests' working folder).
    let out = plumbline(&["run", dir.join("exp.toml").to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let runs = record_runs(&dir.join("out/run.json"));
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0]["items"], 30);
}

/// Seed 002's four terminals as four files: the receiver, the initializer, `roo` joining it
/// and the sender, on free ports instead of the seed's (flags after each file), the sender's
/// votes file found beside it.
#[test]
fn seed_002_cluster_role_files_form_the_cluster_and_count_every_vote() {
    let _cpu = exclusive();
    let dir = scratch("exp-002-cluster");
    for role in ["receiver", "initializer", "roo", "sender"] {
        let name = format!("002-cluster/{role}.toml");
        std::fs::copy(example(&name), dir.join(format!("{role}.toml"))).unwrap();
    }
    let votes = dir.join("fake_votes.msg");
    let out = plumbline(&["gen", "votes", "-o", votes.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let file = |role: &str| {
        dir.join(format!("{role}.toml"))
            .to_str()
            .unwrap()
            .to_string()
    };
    let free = "127.0.0.1:0";

    let receiving = Receiving::start_as(&["run", &file("receiver")], &[]);
    let mut init = Node::spawn(&[
        "run",
        &file("initializer"),
        "--in",
        free,
        "--control",
        free,
        "--data",
        free,
        "--external",
        free,
        "--metrics",
        free,
        "--out",
        &receiving.addr,
    ]);
    let control = init.control_addr();
    let external = init.wait_for("external (shutdown) on ");
    let mut roo = Node::spawn(&[
        "run",
        &file("roo"),
        "--control",
        &control,
        "--out",
        &receiving.addr,
    ]);
    let source = init.wait_for("ready; sources on ");
    // Run from the tests' working folder: fake_votes.msg is found beside sender.toml.
    let out = plumbline(&["run", &file("sender"), "--host", &source, "--quiet"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let (code, text, err) = receiving.finish();
    assert_eq!(
        code,
        Some(0),
        "the receiver expects 52: {err}\n{}",
        init.log()
    );
    common::assert_every_letter_ends_at_3(&text);
    assert!(init.log().contains("roo"), "roo joined: {}", init.log());
    let out = plumbline(&["shutdown", &external]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(init.exit_code(10), Some(0), "{}", init.log());
    assert_eq!(roo.exit_code(10), Some(0), "{}", roo.log());
}

/// The feeder's schedule (`--dry-run` prints it, sending nothing) from the file and from the
/// flags it stands for: the same 24 rows.
#[test]
fn seed_003_feeder_file_plans_the_day_of_its_flags() {
    let file = plumbline(&["run", &example("003-feeder.toml"), "--dry-run"]);
    let mut args = vec!["send", "--host", "127.0.0.1:7002", "--dry-run"];
    args.extend(common::FEEDER_DAY);
    let flags = plumbline(&args);
    assert!(file.status.success(), "{}", stderr(&file));
    assert!(flags.status.success(), "{}", stderr(&flags));
    let rows = common::stdout(&file);
    assert_eq!(
        rows.lines().count(),
        26,
        "a header, 24 breakpoints, the mean: {rows}"
    );
    assert_eq!(rows, common::stdout(&flags));
}

#[test]
fn seed_003_feeder_file_sends_a_day_to_its_receiver_file() {
    let _cpu = exclusive();
    let dir = scratch("exp-003");
    let (recv_json, send_json) = (dir.join("recv.json"), dir.join("send.json"));
    let receiver = example("003-receiver.toml");
    // Free ports instead of the files' 7002: --listen replaces the file's.
    let receiving = Receiving::start_as(
        &["run", &receiver],
        &["--json", recv_json.to_str().unwrap()],
    );
    let out = plumbline(&[
        "run",
        &example("003-feeder.toml"),
        "--host",
        &receiving.addr,
        "--json",
        send_json.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let (code, _, err) = receiving.finish();
    assert_eq!(code, Some(0), "{err}");
    let sent = common::record_run(&send_json)["sent"].as_u64().unwrap();
    assert!((120..=280).contains(&sent), "sent {sent}");
    let received = common::record_run(&recv_json);
    assert_eq!(received["delivered"], sent, "{received:#}");
}

#[test]
fn seed_003_autoscale_file_follows_the_day_on_redis() {
    let Some(server) = Server::for_test(Kind::Redis, "experiment 003-autoscale") else {
        return;
    };
    let cluster = format!("redis://{}/feeder", server.addr);
    let doc = record(
        "exp-003-autoscale",
        &["run", &example("003-autoscale.toml"), "--cluster", &cluster],
    );
    let flags = record(
        "exp-003-autoscale-flags",
        &[
            "elastic",
            "--cluster",
            &cluster,
            "--delay",
            "10ms",
            "--workers",
            "1@0s",
            "--autoscale",
            "1..4",
            "--lag-target",
            "20",
            "--autoscale-speed",
            "200",
            "--shape",
            "day-night",
            "--cycles",
            "1",
            "--rate",
            "300/s",
            "--duration",
            "8s",
            "--threshold",
            "lost<=0",
            "--no-report",
            "--quiet",
        ],
    );
    same_runs(
        &runs(&doc),
        &runs(&flags),
        &[
            "/target_per_s",
            "/elastic/shape",
            "/elastic/peak_per_s",
            "/elastic/autoscale/range",
            "/elastic/autoscale/sync_s",
            "/elastic/autoscale/lag_per_replica",
        ],
    );
    let run = &runs(&doc)[0];
    assert_eq!(run["elastic"]["shape"], "day-night", "{run:#}");
    assert_eq!(run["elastic"]["peak_per_s"], 300.0);
    assert_eq!(run["lost"], 0, "{run:#}");
    assert!(
        run["workers"].as_u64().unwrap() > 1,
        "the morning grows the group: {run:#}"
    );
}

#[test]
fn seed_004_stream_file_runs_both_methods_on_redis() {
    let Some(server) = Server::for_test(Kind::Redis, "experiment 004-stream") else {
        return;
    };
    let port = server.addr.rsplit(':').next().unwrap().to_string();
    let doc = record(
        "exp-004",
        &[
            "run",
            &example("004-stream.toml"),
            "--stream-servers",
            &server.addr,
            "--ps-port",
            &port,
        ],
    );
    let flags = record(
        "exp-004-flags",
        &[
            "stream",
            "--stream-method",
            "default",
            "proxy",
            "--data-size-bytes",
            "10000",
            "100000",
            "--task-count",
            "4",
            "--task-sleep",
            "0.1",
            "--parsl-max-workers",
            "3",
            "--stream",
            "redis",
            "--stream-servers",
            &server.addr,
            "--ps-connector",
            "redis",
            "--ps-host",
            "localhost",
            "--ps-port",
            &port,
            "--quiet",
        ],
    );
    let runs = runs(&doc);
    same_runs(
        &runs,
        &crate::runs(&flags),
        &[
            "/items",
            "/workers",
            "/sent",
            "/delivered",
            "/stream/stream_method",
            "/stream/data_size_bytes",
        ],
    );
    assert_eq!(runs.len(), 4, "2 methods x 2 sizes: {runs:#?}");
    for run in &runs {
        assert_eq!(run["delivered"], 4, "{run:#}");
        assert_eq!(run["workers"], 2, "--parsl-max-workers 3: one generator");
        assert_eq!(run["stream"]["leaked_keys"], 0);
    }
}

/// `run FILE --help` is the help of the file's command: what keys the file may hold.
#[test]
fn help_after_a_file_is_its_commands_help() {
    let out = plumbline(&["run", &example("001-capacity.toml"), "--help"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = common::stdout(&out);
    assert!(text.contains("Usage: plumbline capacity"), "{text}");
    assert!(text.contains("--max-trials"), "{text}");
    let out = plumbline(&["run", "--help"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(common::stdout(&out).contains("Usage: plumbline run"));
}

/// A file written into a scratch folder, and `plumbline run` of it.
fn run_file(name: &str, text: &str) -> (PathBuf, std::process::Output) {
    // The folder lives until the run is over; the path stays for the errors that name it.
    let dir = scratch(name);
    let path = dir.join("exp.toml");
    std::fs::write(&path, text).unwrap();
    let out = plumbline(&["run", path.to_str().unwrap()]);
    (path, out)
}

#[test]
fn an_unknown_key_is_refused_naming_it_the_file_and_the_command() {
    let (path, out) = run_file("exp-unknown", "command = \"capacity\"\nwokers = [1, 2]\n");
    assert_fails(&out, 2, "unknown key `wokers`");
    let err = stderr(&out);
    assert!(err.contains(path.to_str().unwrap()), "{err}");
    assert!(err.contains("`plumbline capacity`"), "{err}");
    assert!(err.contains("did you mean `workers`"), "{err}");
}

#[test]
fn a_bad_value_is_refused_by_the_commands_own_checks() {
    let (path, out) = run_file("exp-value", "command = \"bench\"\nworkers = [\"many\"]\n");
    assert_fails(&out, 2, "invalid value 'many' for '--workers");
    assert!(
        stderr(&out).contains(path.to_str().unwrap()),
        "{}",
        stderr(&out)
    );
    let (_, out) = run_file("exp-switch", "command = \"bench\"\nquiet = 1\n");
    assert_fails(&out, 2, "--quiet is a switch");
    // And the checks after parsing, as a typed flag gets them.
    let (_, out) = run_file(
        "exp-range",
        "command = \"bench\"\nworkers = [0]\nno-report = true\n",
    );
    assert_fails(&out, 1, "--workers 0");
}

#[test]
fn a_malformed_or_missing_file_is_refused_naming_the_file_and_the_line() {
    let (path, out) = run_file(
        "exp-toml",
        "command = \"bench\"\nworkers = [1, 2\nquiet = true\n",
    );
    assert_fails(&out, 2, &format!("{}:3: not valid TOML", path.display()));
    let (_, out) = run_file("exp-command", "workers = [1]\n");
    assert_fails(&out, 2, "names no command");
    let out = plumbline(&["run", "/nonexistent/exp.toml"]);
    assert_fails(&out, 2, "/nonexistent/exp.toml");
}
