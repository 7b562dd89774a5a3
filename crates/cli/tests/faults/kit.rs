//! What the scenarios share beyond `common`: their row in the suite's table, a DWC run (the
//! distributor, its collector writing `--results`, and workers) whose collector ledger the
//! checker reads, and small readers of the tools' JSON.

use std::path::{Path, PathBuf};
use std::time::Duration;

use plumbline_faults::ledger::{Check, Jsonl, Ledger};
use plumbline_faults::row::Scenario;
use serde_json::Value;

use crate::common::{pipeline_distributor, pipeline_worker, Node, PipelineCollector};

/// The row of scenario `n`, written to `target/test-artifacts/faults.jsonl` when the test
/// passes or unwinds.
pub fn scenario(n: u32, title: &str) -> Scenario {
    let artifacts = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("../test-artifacts");
    Scenario::begin(&artifacts, n, title)
}

pub fn json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{} was not written: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

pub fn u(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a count: {v}"))
}

pub fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

/// A DWC run: a collector recording every result, a distributor writing its report.
pub struct Dwc {
    pub collector: PipelineCollector,
    pub dist: Node,
    pub endpoint: String,
    pub report_at: PathBuf,
    pub results_at: PathBuf,
}

impl Dwc {
    pub fn start(dir: &Path, distributor: &[&str]) -> Self {
        Self::start_with(dir, &[], distributor)
    }

    /// With `collector` flags too.
    pub fn start_with(dir: &Path, collector: &[&str], distributor: &[&str]) -> Self {
        let results_at = dir.join("results.jsonl");
        let mut flags = vec!["--results", results_at.to_str().unwrap()];
        flags.extend_from_slice(collector);
        let collector = PipelineCollector::start(&flags);
        let report_at = dir.join("report.json");
        let (dist, endpoint) = pipeline_distributor(&collector.acks, &report_at, distributor);
        Self {
            collector,
            dist,
            endpoint,
            report_at,
            results_at,
        }
    }

    pub fn worker(&self, name: &str, extra: &[&str]) -> Node {
        pipeline_worker(&self.endpoint, &self.collector.results, name, extra)
    }

    /// The distributor's exit code (within `secs`) and its report.
    pub fn finish(&mut self, secs: u64) -> (Option<i32>, Value) {
        let code = self.dist.exit_code(secs);
        (code, json(&self.report_at))
    }
}

/// The ids of a collector's `--results` files (one per collector life), every line a delivery.
pub fn collected(files: &[&Path]) -> (Vec<u64>, bool) {
    let mut ids = Vec::new();
    let mut truncated = false;
    for file in files {
        let log = Jsonl::read(file).unwrap();
        truncated |= log.truncated_tail;
        ids.extend(log.ids("id").unwrap());
    }
    (ids, truncated)
}

/// The checker over a DWC run: every id the distributor ACKed (`acked` of them, numbered from
/// the lowest collected) must be in the collector's ledger.
pub fn check_dwc(issued: impl IntoIterator<Item = u64>, files: &[&Path]) -> Check {
    let (ids, _) = collected(files);
    Ledger::new()
        .acknowledged_all(issued)
        .received_all(ids)
        .check()
}

/// Waits until `path` holds at least `lines` complete lines (a run's progress as its ledger
/// shows it), up to 30 s.
pub fn wait_for_lines(path: &Path, lines: usize) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let n = std::fs::read_to_string(path)
            .map(|t| t.matches('\n').count())
            .unwrap_or(0);
        if n >= lines {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{} has {n} of {lines} lines",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}
