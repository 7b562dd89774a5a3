//! Child processes for the benches that run every part as a process: start one (`plumbline`
//! or, for an external system, any command), wait for a line on its stderr (where it says
//! which port it bound), notice it exiting, wait for its exit or stop it (SIGTERM, then a kill
//! after a grace period). It does not decide what a child's exit means to a run.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};

/// How long a child may take to say what is waited for.
pub const SETTLE: Duration = Duration::from_secs(30);

/// Stderr lines kept per child: the latest, so a chatty child costs bounded memory and its
/// last words are there for the error that names it.
const KEEP_LINES: usize = 1024;

/// A child process whose latest stderr lines are kept; killed when dropped.
pub struct Proc {
    child: Mutex<Child>,
    lines: Arc<Mutex<VecDeque<String>>>,
    /// What it is, for errors: "`plumbline worker --in …`", "copy 2 of `python3 app.py`".
    what: String,
}

impl Proc {
    pub fn start(exe: &std::path::Path, args: &[&str]) -> Result<Self> {
        let mut command = Command::new(exe);
        command.args(args);
        let what = args.iter().take(2).copied().collect::<Vec<_>>().join(" ");
        Self::spawn(command, format!("`plumbline {what}`"))
            .with_context(|| format!("starting {}", exe.display()))
    }

    /// Starts `command` (its stdin and stdout closed, stderr kept), named `what` in errors.
    pub fn spawn(mut command: Command, what: String) -> Result<Self> {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {what}"))?;
        let stderr = BufReader::new(child.stderr.take().context("the child's stderr")?);
        let lines = Arc::new(Mutex::new(VecDeque::new()));
        let keep = lines.clone();
        std::thread::spawn(move || {
            for line in stderr.lines().map_while(Result::ok) {
                let mut lines = keep.lock().unwrap_or_else(|p| p.into_inner());
                if lines.len() == KEEP_LINES {
                    lines.pop_front();
                }
                lines.push_back(line);
            }
        });
        Ok(Self {
            child: Mutex::new(child),
            lines,
            what,
        })
    }

    /// What it is, as errors name it.
    pub fn what(&self) -> &str {
        &self.what
    }

    /// Its exit status if it has exited.
    pub fn exited(&self) -> Result<Option<ExitStatus>> {
        let mut child = self.child.lock().unwrap_or_else(|p| p.into_inner());
        child
            .try_wait()
            .with_context(|| format!("watching {}", self.what))
    }

    /// Its last `n` stderr lines, oldest first.
    pub fn last_lines(&self, n: usize) -> Vec<String> {
        let lines = self.lines.lock().unwrap_or_else(|p| p.into_inner());
        lines
            .iter()
            .skip(lines.len().saturating_sub(n))
            .cloned()
            .collect()
    }

    /// Asks it to stop (SIGTERM), kills it if it has not exited after `grace`, and reaps it.
    /// Returns its exit status.
    pub fn stop(&self, grace: Duration) -> Result<ExitStatus> {
        let mut child = self.child.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(status) = child.try_wait()? {
            return Ok(status);
        }
        if let Ok(pid) = libc::pid_t::try_from(child.id()) {
            // SAFETY: kill(2) on our own unreaped child: the pid cannot have been reused.
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Some(status) = child.try_wait()? {
                return Ok(status);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        child
            .kill()
            .with_context(|| format!("killing {}", self.what))?;
        child
            .wait()
            .with_context(|| format!("reaping {}", self.what))
    }

    /// Kills it at once (SIGKILL, as a crash would end it) and reaps it.
    pub fn kill(&self) {
        let mut child = self.child.lock().unwrap_or_else(|p| p.into_inner());
        if let Ok(None) = child.try_wait() {
            let _ = child.kill();
        }
        let _ = child.wait();
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
        self.kill();
    }
}
