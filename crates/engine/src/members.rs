//! The running copies of a spawn command that make up the system under test: started, watched
//! for deaths, and resized mid-run (grown, or shrunk by a graceful stop or by `kill -9`, as a
//! crash would) when a worker schedule says so, each change logged with its time.
//!
//! A member stopped on purpose leaves the watched set before its signal, so only the others'
//! exits are deaths. Shrinking stops the newest members first (what Kubernetes' ReplicaSet
//! prefers). What the load is, and what a change costs, are not here: [`crate::external`]
//! sends and receives; `plumbline_scale::change` reads the cost off the samples.

use std::fmt;
use std::str::FromStr;
use std::sync::Mutex;
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::Result;

use crate::child::Proc;

/// How members leave when the schedule shrinks the group.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Leave {
    /// SIGTERM: the member stops taking work, finishes (and acks) what it holds, leaves the group.
    Graceful,
    /// SIGKILL: gone mid-item, unacked work left for the group to reclaim.
    Kill,
}

impl FromStr for Leave {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "graceful" => Ok(Self::Graceful),
            "kill" => Ok(Self::Kill),
            other => Err(format!(
                "'{other}': members leave `graceful` (SIGTERM) or by `kill` (SIGKILL)"
            )),
        }
    }
}

impl fmt::Display for Leave {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Graceful => "graceful",
            Self::Kill => "kill",
        })
    }
}

/// One membership change as applied.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Change {
    /// Since the load started.
    pub at: Duration,
    pub from: usize,
    pub to: usize,
}

/// The members of one run.
pub(crate) struct Members<S: Fn(usize, usize) -> Result<Proc>> {
    /// Starts copy `index` of a group of `workers`.
    start: S,
    running: Mutex<Vec<Proc>>,
    started: Mutex<usize>,
    /// Members on their way out (a graceful stop takes up to its grace), reaped at the end.
    leaving: Mutex<Vec<JoinHandle<()>>>,
    changes: Mutex<Vec<Change>>,
    grace: Duration,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl<S: Fn(usize, usize) -> Result<Proc>> Members<S> {
    /// Starts `workers` copies.
    pub fn start(workers: usize, grace: Duration, start: S) -> Result<Self> {
        let members = Self {
            start,
            running: Mutex::new(Vec::new()),
            started: Mutex::new(0),
            leaving: Mutex::new(Vec::new()),
            changes: Mutex::new(Vec::new()),
            grace,
        };
        members.grow(workers, workers)?;
        Ok(members)
    }

    fn grow(&self, more: usize, workers: usize) -> Result<()> {
        for _ in 0..more {
            let index = {
                let mut started = lock(&self.started);
                *started += 1;
                *started - 1
            };
            let copy = (self.start)(index, workers)?;
            lock(&self.running).push(copy);
        }
        Ok(())
    }

    /// Members running now.
    pub fn count(&self) -> usize {
        lock(&self.running).len()
    }

    /// Runs `f` on every running member (waiting for a readiness line, say).
    pub fn each(&self, f: impl Fn(&Proc) -> Result<()>) -> Result<()> {
        lock(&self.running).iter().try_for_each(f)
    }

    /// Grows or shrinks to `workers` at `at` (since the load started); new members wait for
    /// nothing: the change's pause is theirs to show.
    pub fn resize(&self, workers: usize, leave: Leave, at: Duration) -> Result<()> {
        let from = self.count();
        if workers > from {
            self.grow(workers - from, workers)?;
        } else {
            let going: Vec<Proc> = {
                let mut running = lock(&self.running);
                let keep = workers.min(running.len());
                running.split_off(keep)
            };
            let grace = self.grace;
            for member in going.into_iter().rev() {
                match leave {
                    Leave::Kill => member.kill(),
                    Leave::Graceful => {
                        let handle = std::thread::spawn(move || {
                            let _ = member.stop(grace);
                        });
                        lock(&self.leaving).push(handle);
                    }
                }
            }
        }
        lock(&self.changes).push(Change {
            at,
            from,
            to: workers,
        });
        Ok(())
    }

    /// The first running member that has exited, named with its status and last words.
    pub fn first_dead(&self, last_words: usize) -> Option<String> {
        lock(&self.running).iter().find_map(|copy| {
            let status = copy.exited().ok().flatten()?;
            let words = copy.last_lines(last_words);
            let said = if words.is_empty() {
                String::new()
            } else {
                format!("; its last words: {}", words.join(" | "))
            };
            Some(format!(
                "{} exited mid-run with {status}{said}",
                copy.what()
            ))
        })
    }

    /// Stops every member (SIGTERM, then a kill after the grace) and reaps those leaving.
    pub fn stop_all(&self) -> Result<()> {
        let running = std::mem::take(&mut *lock(&self.running));
        let stopped = running
            .iter()
            .try_for_each(|m| m.stop(self.grace).map(drop));
        for handle in std::mem::take(&mut *lock(&self.leaving)) {
            let _ = handle.join();
        }
        stopped
    }

    /// The changes applied, in order.
    pub fn changes(&self) -> Vec<Change> {
        lock(&self.changes).clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    fn sleeper(index: usize, _workers: usize) -> Result<Proc> {
        let mut command = Command::new("sleep");
        command.arg("30");
        Proc::spawn(command, format!("sleeper {index}"))
    }

    #[test]
    fn a_leave_is_graceful_or_kill() {
        assert_eq!("kill".parse::<Leave>(), Ok(Leave::Kill));
        assert_eq!(
            Leave::Graceful.to_string().parse::<Leave>(),
            Ok(Leave::Graceful)
        );
        assert!("drain".parse::<Leave>().unwrap_err().contains("graceful"));
    }

    #[test]
    fn members_grow_shrink_newest_first_and_only_unplanned_exits_are_deaths() {
        let members = Members::start(2, Duration::from_millis(200), sleeper).unwrap();
        assert_eq!(members.count(), 2);
        members
            .resize(4, Leave::Kill, Duration::from_secs(1))
            .unwrap();
        assert_eq!(members.count(), 4);
        members
            .resize(1, Leave::Kill, Duration::from_secs(2))
            .unwrap();
        assert_eq!(members.count(), 1);
        members
            .resize(2, Leave::Graceful, Duration::from_secs(3))
            .unwrap();
        members
            .resize(1, Leave::Graceful, Duration::from_secs(4))
            .unwrap();
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(members.first_dead(3), None, "stopped on purpose: no death");
        let what: Vec<String> = lock(&members.running)
            .iter()
            .map(|p| p.what().into())
            .collect();
        assert_eq!(what, ["sleeper 0"], "the oldest stays");
        assert_eq!(
            members
                .changes()
                .iter()
                .map(|c| (c.from, c.to))
                .collect::<Vec<_>>(),
            [(2, 4), (4, 1), (1, 2), (2, 1)]
        );
        lock(&members.running)[0].kill();
        std::thread::sleep(Duration::from_millis(100));
        assert!(members
            .first_dead(3)
            .is_some_and(|d| d.starts_with("sleeper 0 exited mid-run")));
        members.stop_all().unwrap();
        assert_eq!(members.count(), 0);
    }
}
