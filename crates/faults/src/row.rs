//! The fault suite's record: each scenario appends one JSON row
//! `{scenario, title, verdict, lost, duplicated, peak_rss_mb, detect_s, note}` to
//! `faults.jsonl`, and `scripts/test` prints them as one table. A scenario that panics still
//! writes its row, with verdict `fail`. It asserts nothing itself.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Row {
    pub scenario: u32,
    pub title: String,
    /// `pass` or `fail`.
    pub verdict: &'static str,
    pub lost: Option<u64>,
    pub duplicated: Option<u64>,
    pub peak_rss_mb: Option<f64>,
    /// How long the system took to notice the fault, where the scenario measures it.
    pub detect_s: Option<f64>,
    /// What was scaled down or left out, and why.
    pub note: String,
}

/// One scenario's row in the making; written when [`Scenario::pass`] is called, or as a
/// failure when the scenario is dropped without it (a failed assertion unwinding).
pub struct Scenario {
    file: PathBuf,
    row: Row,
    written: bool,
}

impl Scenario {
    /// `dir` is the artifacts folder (`target/test-artifacts`), created if missing.
    pub fn begin(dir: &Path, scenario: u32, title: &str) -> Self {
        Self {
            file: dir.join("faults.jsonl"),
            row: Row {
                scenario,
                title: title.to_string(),
                verdict: "fail",
                lost: None,
                duplicated: None,
                peak_rss_mb: None,
                detect_s: None,
                note: String::new(),
            },
            written: false,
        }
    }

    pub fn lost(&mut self, n: u64) -> &mut Self {
        self.row.lost = Some(n);
        self
    }

    pub fn duplicated(&mut self, n: u64) -> &mut Self {
        self.row.duplicated = Some(n);
        self
    }

    pub fn peak_rss_mb(&mut self, mb: f64) -> &mut Self {
        self.row.peak_rss_mb = Some((mb * 10.0).round() / 10.0);
        self
    }

    pub fn detect_s(&mut self, s: f64) -> &mut Self {
        self.row.detect_s = Some((s * 1000.0).round() / 1000.0);
        self
    }

    pub fn note(&mut self, note: &str) -> &mut Self {
        self.row.note = note.to_string();
        self
    }

    /// Every assertion held: writes the row as a pass.
    pub fn pass(&mut self) {
        self.row.verdict = "pass";
        self.write();
    }

    fn write(&mut self) {
        self.written = true;
        let Ok(mut line) = serde_json::to_vec(&self.row) else {
            return;
        };
        line.push(b'\n');
        if let Some(dir) = self.file.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        // One write of a short line in append mode: rows of tests running at once never mix.
        let _ = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.file)
            .and_then(|mut f| f.write_all(&line));
    }
}

impl Drop for Scenario {
    fn drop(&mut self) {
        if !self.written {
            self.write();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::Jsonl;

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("faults-row-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn a_passing_scenario_writes_its_figures_and_a_dropped_one_writes_a_failure() {
        let d = dir("both");
        let mut s = Scenario::begin(&d, 8, "kill -9 a worker");
        s.lost(0)
            .duplicated(3)
            .peak_rss_mb(12.345)
            .detect_s(0.1234)
            .note("scaled");
        s.pass();
        drop(Scenario::begin(&d, 9, "pause"));
        let rows = Jsonl::read(&d.join("faults.jsonl")).unwrap().rows;
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0]["verdict"], "pass");
        assert_eq!(rows[0]["peak_rss_mb"], 12.3);
        assert_eq!(rows[0]["detect_s"], 0.123);
        assert_eq!(rows[1]["scenario"], 9);
        assert_eq!(rows[1]["verdict"], "fail");
        assert_eq!(rows[1]["lost"], serde_json::Value::Null);
    }
}
