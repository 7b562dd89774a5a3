//! The pipeline's wire protocol is language-neutral: `examples/python/worker.py`, written with
//! nothing but Python's standard library, works a plumbline distributor's tasks side by side with
//! a plumbline worker.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{pipeline_distributor, pipeline_worker, scratch, PipelineCollector};

const PYTHON_WORKER: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../examples/python/worker.py"
);

/// A Python process that is killed if the test fails before it exits.
struct Python(Option<Child>);

impl Python {
    fn start(args: &[&str]) -> Self {
        let child = Command::new("python3")
            .arg(PYTHON_WORKER)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("this test needs python3 on the PATH (CI installs it); cannot run it: {e}")
            });
        Self(Some(child))
    }

    /// Waits (up to `secs`) for the exit; returns the code and everything it printed.
    fn finish(mut self, secs: u64) -> (Option<i32>, String) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        let child = self.0.as_mut().unwrap();
        while child.try_wait().unwrap().is_none() {
            assert!(
                Instant::now() < deadline,
                "the Python worker did not exit within {secs} s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let out = self.0.take().unwrap().wait_with_output().unwrap();
        let printed = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.code(), printed)
    }
}

impl Drop for Python {
    fn drop(&mut self) {
        if let Some(child) = &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[test]
fn a_python_worker_joins_a_plumbline_distributor() {
    let dir = scratch("pipeline-python");
    let report_path = dir.join("report.json");
    // The run's token, as every role (the Python worker too) is given it.
    let secret = dir.join("token");
    std::fs::write(&secret, "python-run\n").unwrap();
    let token = format!("file:{}", secret.display());
    let collector = PipelineCollector::start(&["--token", &token]);
    let (results_at, acks_at) = (&collector.results, &collector.acks);
    let (mut distributor, workers_at) = pipeline_distributor(
        acks_at,
        &report_path,
        &[
            "--task",
            "C:50",
            "--delay",
            "5ms",
            "--workers",
            "2",
            "--token",
            &token,
        ],
    );

    let python = Python::start(&[
        "--endpoint",
        &workers_at,
        "--collector",
        results_at,
        "--name",
        "py",
        "--token-file",
        secret.to_str().unwrap(),
    ]);
    let mut rust = pipeline_worker(&workers_at, results_at, "rs", &["--token", &token]);

    assert_eq!(distributor.exit_code(60), Some(0), "{}", distributor.log());
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report_path).unwrap()).unwrap();
    assert_eq!(report["acked"], 50, "{report:#}");
    assert_eq!(report["lost"], 0, "{report:#}");
    assert_eq!(report["failed"], serde_json::json!([]), "{report:#}");
    let workers = report["workers"].as_array().unwrap();
    let py = workers
        .iter()
        .find(|w| w["name"] == "py")
        .unwrap_or_else(|| panic!("no worker named py in {report:#}"));
    assert!(py["dispatched"].as_u64().unwrap() > 0, "{report:#}");
    assert!(py["acked"].as_u64().unwrap() > 0, "{report:#}");

    let (code, printed) = python.finish(20);
    assert_eq!(code, Some(0), "{printed}");
    assert!(printed.contains("finished - handled"), "{printed}");
    assert_eq!(rust.exit_code(20), Some(0), "{}", rust.log());
    rust.wait_for("finished - handled");
}
