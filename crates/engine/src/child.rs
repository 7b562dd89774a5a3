//! Child processes for the engines that run parts as processes: start one (`plumbline` or,
//! for an external system, any command), wait for what it says (a typed [`Announcement`] on
//! its stdout for plumbline's roles started with `--announce -`, or a line on its stderr for
//! a command that has no such channel), notice it exiting, wait for its exit or stop it
//! (SIGTERM, then a kill after a grace period); or talk to it over its stdin and stdout
//! ([`Proc::spawn_piped`]). It does not decide what a child's exit means
//! to a run.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStdin, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use plumbline_worker::announce::Announcement;

/// How long a child may take to say what is waited for.
pub const SETTLE: Duration = Duration::from_secs(30);

/// Stderr lines kept per child: the latest, so a chatty child costs bounded memory and its
/// last words are there for the error that names it.
const KEEP_LINES: usize = 1024;

/// Announcements kept per child, the latest: a role makes a handful, and an elastic
/// cluster's initializer two more per membership change, so a long run drops its oldest
/// (read long before) to stay bounded.
const KEEP_ANNOUNCEMENTS: usize = 256;

/// What a child announced, in order, each when it was read, or the first line of its stdout
/// that was no announcement.
type Announced = Arc<Mutex<VecDeque<(Instant, Result<Announcement, String>)>>>;

/// A child process whose latest stderr lines (and, if it announces, its announcements) are
/// kept; killed when dropped.
pub struct Proc {
    child: Mutex<Child>,
    lines: Arc<Mutex<VecDeque<String>>>,
    announced: Announced,
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

    /// Starts a plumbline role with `--announce -` added, its stdout read as announcements
    /// (see [`Proc::wait_announced`]).
    pub fn start_announcing(exe: &std::path::Path, args: &[&str]) -> Result<Self> {
        let mut command = Command::new(exe);
        command.args(args).args(["--announce", "-"]);
        let what = args.iter().take(2).copied().collect::<Vec<_>>().join(" ");
        let what = format!("`plumbline {what}`");
        let mut child = Self::spawn_with(command, what.clone(), Stdio::null(), Stdio::piped())
            .with_context(|| format!("starting {}", exe.display()))?;
        let stdout = child
            .child
            .get_mut()
            .unwrap_or_else(|p| p.into_inner())
            .stdout
            .take()
            .context("the child's stdout")?;
        let keep = child.announced.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let mut announced = keep.lock().unwrap_or_else(|p| p.into_inner());
                if announced.len() == KEEP_ANNOUNCEMENTS {
                    announced.pop_front();
                }
                let event = Announcement::parse(&line).map_err(|e| format!("{line:?} ({e})"));
                let bad = event.is_err();
                announced.push_back((Instant::now(), event));
                if bad {
                    return;
                }
            }
        });
        Ok(child)
    }

    /// Starts `command` (its stdin and stdout closed, stderr kept), named `what` in errors.
    pub fn spawn(command: Command, what: String) -> Result<Self> {
        Self::spawn_with(command, what, Stdio::null(), Stdio::null())
    }

    /// Starts `command` (stderr kept, as [`Proc::spawn`]) with its stdin and stdout as pipes
    /// the caller talks to it over.
    pub fn spawn_piped(command: Command, what: String) -> Result<(Self, ChildStdin, ChildStdout)> {
        let proc = Self::spawn_with(command, what, Stdio::piped(), Stdio::piped())?;
        let (stdin, stdout) = {
            let mut child = proc.child.lock().unwrap_or_else(|p| p.into_inner());
            (child.stdin.take(), child.stdout.take())
        };
        match (stdin, stdout) {
            (Some(stdin), Some(stdout)) => Ok((proc, stdin, stdout)),
            _ => bail!("{}: no pipes to it", proc.what),
        }
    }

    fn spawn_with(mut command: Command, what: String, stdin: Stdio, stdout: Stdio) -> Result<Self> {
        let mut child = command
            .stdin(stdin)
            .stdout(stdout)
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
            announced: Arc::default(),
            what,
        })
    }

    /// What it is, as errors name it.
    pub fn what(&self) -> &str {
        &self.what
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.lock().unwrap_or_else(|p| p.into_inner()).id()
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
        self.wait(&format!("{marker:?}"), || {
            let lines = self.lines.lock().unwrap_or_else(|p| p.into_inner());
            Ok(lines
                .iter()
                .find(|l| l.contains(marker))
                .map(|line| line.split(marker).nth(1).unwrap_or("").trim().to_string()))
        })
    }

    /// The first announcement `pick` takes (of a child started with
    /// [`Proc::start_announcing`]); `what` names the event in the error when none comes.
    pub fn wait_announced<T>(
        &self,
        what: &str,
        mut pick: impl FnMut(&Announcement) -> Option<T>,
    ) -> Result<T> {
        self.wait(what, || {
            let announced = self.announced.lock().unwrap_or_else(|p| p.into_inner());
            for (_, event) in announced.iter() {
                match event {
                    Ok(event) => {
                        if let Some(found) = pick(event) {
                            return Ok(Some(found));
                        }
                    }
                    Err(line) => bail!("{} announced something unreadable: {line}", self.what),
                }
            }
            Ok(None)
        })
    }

    /// Every announcement kept (the latest [`KEEP_ANNOUNCEMENTS`]), each with when it was
    /// read.
    pub fn announcements(&self) -> Vec<(Instant, Announcement)> {
        let announced = self.announced.lock().unwrap_or_else(|p| p.into_inner());
        announced
            .iter()
            .filter_map(|(at, event)| Some((*at, event.as_ref().ok()?.clone())))
            .collect()
    }

    /// Polls `found` until it finds something, the child reports an error or exits, or
    /// [`SETTLE`] passes.
    fn wait<T>(&self, what: &str, mut found: impl FnMut() -> Result<Option<T>>) -> Result<T> {
        let deadline = Instant::now() + SETTLE;
        loop {
            if let Some(found) = found()? {
                return Ok(found);
            }
            let error = {
                let lines = self.lines.lock().unwrap_or_else(|p| p.into_inner());
                lines.iter().find(|l| l.starts_with("error:")).cloned()
            };
            if let Some(error) = error {
                bail!("{} failed: {error}", self.what);
            }
            if let Some(status) = self.exited()? {
                // What it said before it went, then a last look at what it announced.
                std::thread::sleep(Duration::from_millis(50));
                if let Some(found) = found()? {
                    return Ok(found);
                }
                bail!(
                    "{} exited ({status}) before {what}: {}",
                    self.what,
                    self.last_lines(3).join(" | ")
                );
            }
            ensure!(
                Instant::now() < deadline,
                "no {what} from {} within {SETTLE:?}",
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
