//! Child `plumbline` processes for the benches that run every part as a process: start one,
//! wait for a line on its stderr (where it says which port it bound), wait for its exit.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};

/// How long a child may take to say what is waited for.
pub const SETTLE: Duration = Duration::from_secs(30);

/// A child `plumbline` process whose stderr lines are kept; killed when dropped.
pub struct Proc {
    child: Mutex<Child>,
    lines: Arc<Mutex<Vec<String>>>,
    /// What it is, for errors: "a worker process", "the collector".
    what: String,
}

impl Proc {
    pub fn start(exe: &std::path::Path, args: &[&str]) -> Result<Self> {
        let mut child = Command::new(exe)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {}", exe.display()))?;
        let stderr = BufReader::new(child.stderr.take().context("the child's stderr")?);
        let lines = Arc::new(Mutex::new(Vec::new()));
        let keep = lines.clone();
        std::thread::spawn(move || {
            for line in stderr.lines().map_while(Result::ok) {
                keep.lock().unwrap_or_else(|p| p.into_inner()).push(line);
            }
        });
        let what = args.iter().take(2).copied().collect::<Vec<_>>().join(" ");
        Ok(Self {
            child: Mutex::new(child),
            lines,
            what: format!("`plumbline {what}`"),
        })
    }

    /// The rest of the first stderr line containing `marker`.
    pub fn wait_for(&self, marker: &str) -> Result<String> {
        let deadline = Instant::now() + SETTLE;
        loop {
            {
                let lines = self.lines.lock().unwrap_or_else(|p| p.into_inner());
                if let Some(line) = lines.iter().find(|l| l.contains(marker)) {
                    return Ok(line.split(marker).nth(1).unwrap_or("").trim().to_string());
                }
                if let Some(error) = lines.iter().find(|l| l.starts_with("error:")) {
                    bail!("{} failed: {error}", self.what);
                }
            }
            ensure!(
                Instant::now() < deadline,
                "no {marker:?} from {} within {SETTLE:?}",
                self.what
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Its last `n` stderr lines, joined: what it said before it died.
    pub fn last_lines(&self, n: usize) -> String {
        let lines = self.lines.lock().unwrap_or_else(|p| p.into_inner());
        lines[lines.len().saturating_sub(n)..].join(" | ")
    }

    /// How it exited, or `None` while it runs: for watching children during a run.
    pub fn exited(&self) -> Result<Option<std::process::ExitStatus>> {
        let mut child = self.child.lock().unwrap_or_else(|p| p.into_inner());
        child
            .try_wait()
            .with_context(|| format!("watching {}", self.what))
    }

    pub fn wait_exit(&self, within: Duration) -> Result<()> {
        let deadline = Instant::now() + within;
        let mut child = self.child.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if let Some(status) = child.try_wait()? {
                ensure!(status.success(), "{} exited with {status}", self.what);
                return Ok(());
            }
            ensure!(
                Instant::now() < deadline,
                "{} did not exit within {within:?}",
                self.what
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let mut child = self.child.lock().unwrap_or_else(|p| p.into_inner());
        if let Ok(None) = child.try_wait() {
            let _ = child.kill();
        }
        let _ = child.wait();
    }
}
