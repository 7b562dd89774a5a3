//! Helpers shared by the end-to-end tests: run the real `plumbline` binary in a scratch folder.

#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::{Mutex, MutexGuard};

static CPU: Mutex<()> = Mutex::new(());

/// Held by every test that times a run or loads the cores, so such tests of one binary do not
/// run at once and skew each other's figures on a 2-core machine.
pub fn exclusive() -> MutexGuard<'static, ()> {
    CPU.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

pub fn plumbline(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_plumbline"))
        .args(args)
        .output()
        .expect("the plumbline binary runs")
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A fresh scratch folder for one test.
pub fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("plumbline-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs `bench` with `args` plus `--json` and returns the parsed report.
pub fn bench_json(name: &str, args: &[&str]) -> serde_json::Value {
    let _cpu = exclusive();
    let path = scratch(name).join("bench.json");
    let mut all = vec!["bench", "--quiet", "--json", path.to_str().unwrap()];
    all.extend_from_slice(args);
    let out = plumbline(&all);
    assert!(
        out.status.success(),
        "bench failed: {}\n{}",
        stderr(&out),
        stdout(&out)
    );
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

/// A `plumbline receive` running in the background on a free loopback port.
pub struct Receiving {
    pub child: std::process::Child,
    pub addr: String,
    stderr: std::io::BufReader<std::process::ChildStderr>,
}

impl Receiving {
    pub fn start(extra: &[&str]) -> Self {
        use std::io::BufRead;
        let mut child = Command::new(env!("CARGO_BIN_EXE_plumbline"))
            .args(["receive", "--listen", "127.0.0.1:0", "--quiet"])
            .args(extra)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("receive starts");
        let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
        let mut line = String::new();
        stderr.read_line(&mut line).unwrap();
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line: {line:?}"))
            .to_string();
        Self {
            child,
            addr,
            stderr,
        }
    }

    /// Waits for the receiver to end; returns (exit code, stdout, rest of stderr).
    pub fn finish(mut self) -> (Option<i32>, String, String) {
        use std::io::Read;
        let mut err = String::new();
        self.stderr.read_to_string(&mut err).unwrap();
        let out = self.child.wait_with_output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            err,
        )
    }
}
