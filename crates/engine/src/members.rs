//! The running copies of a spawn command that make up the system under test: started, watched
//! for deaths, and resized mid-run (grown, or shrunk by a graceful leave or by `kill -9`, as a
//! crash would) when a worker schedule or the autoscaler says so ([`Members::watch`]), each
//! change noted on the live page and logged with its time.
//!
//! A member stopped on purpose leaves the watched set before it is asked to go, so only the
//! others' exits are deaths. Shrinking stops the newest members first (what Kubernetes'
//! ReplicaSet prefers; the TCP cluster's initializer, the oldest, is never shrunk). How a
//! member leaves gracefully is the group's [`Farewell`]: a signal for a broker group's member,
//! a shrink asked of the TCP cluster's initializer. What the load is, and what a change costs,
//! are not here: the engines send and receive; `plumbline_scale::change` reads the cost off the
//! samples.

use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use plumbline_core::Shutdown;
use plumbline_measure::Live;

use crate::child::{Proc, SETTLE};
use crate::scaling::Scaler;

/// Stderr lines of a dead member quoted in the error.
const LAST_WORDS: usize = 5;
/// How often the watcher looks at the group (and asks the scaler).
const TICK: Duration = Duration::from_millis(20);

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

impl Change {
    /// How members came or went, in the record's word: `join`, or how they left.
    pub fn how(&self, leave: Leave) -> String {
        match self.to < self.from {
            true => leave.to_string(),
            false => "join".into(),
        }
    }
}

/// How a member is asked to leave gracefully.
#[derive(Clone, Debug)]
pub(crate) enum Farewell {
    /// SIGTERM: a broker group's member stops taking work, acks what it holds, leaves.
    Signal,
    /// `plumbline shrink`: the TCP cluster's initializer (its external port at `external`)
    /// moves the member's partitions, state and all, to the others and retires it; the member
    /// exits once they moved. `name` is the worker name of copy `index`.
    Shrink {
        external: String,
        name: fn(usize) -> String,
    },
}

/// The members of one run.
pub(crate) struct Members<S: Fn(usize, usize) -> Result<Proc>> {
    /// Starts copy `index` of a group of `workers`.
    start: S,
    /// Oldest first, each with its index.
    running: Mutex<Vec<(usize, Proc)>>,
    started: Mutex<usize>,
    /// Members on their way out (a graceful stop takes up to its grace), reaped at the end.
    leaving: Mutex<Vec<JoinHandle<()>>>,
    changes: Mutex<Vec<Change>>,
    grace: Duration,
    farewell: Farewell,
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
            farewell: Farewell::Signal,
        };
        members.grow(workers, workers)?;
        Ok(members)
    }

    /// Members leave gracefully as `farewell` says (a signal unless told).
    pub fn with_farewell(mut self, farewell: Farewell) -> Self {
        self.farewell = farewell;
        self
    }

    fn grow(&self, more: usize, workers: usize) -> Result<()> {
        for _ in 0..more {
            let index = {
                let mut started = lock(&self.started);
                *started += 1;
                *started - 1
            };
            let copy = (self.start)(index, workers)?;
            lock(&self.running).push((index, copy));
        }
        Ok(())
    }

    /// Members running now.
    pub fn count(&self) -> usize {
        lock(&self.running).len()
    }

    /// Runs `f` on every running member (waiting for a readiness line, say).
    pub fn each(&self, f: impl Fn(&Proc) -> Result<()>) -> Result<()> {
        lock(&self.running).iter().try_for_each(|(_, p)| f(p))
    }

    /// `f` of the oldest running member (the TCP cluster's initializer).
    pub fn oldest<T>(&self, f: impl FnOnce(&Proc) -> Result<T>) -> Result<T> {
        match lock(&self.running).first() {
            Some((_, oldest)) => f(oldest),
            None => bail!("no member is running"),
        }
    }

    /// Grows or shrinks to `workers` at `at` (since the load started); new members wait for
    /// nothing: the change's pause is theirs to show.
    pub fn resize(&self, workers: usize, leave: Leave, at: Duration) -> Result<()> {
        let from = self.count();
        if workers > from {
            self.grow(workers - from, workers)?;
        } else {
            let going: Vec<(usize, Proc)> = {
                let mut running = lock(&self.running);
                let keep = workers.min(running.len());
                running.split_off(keep)
            };
            for (index, member) in going.into_iter().rev() {
                match leave {
                    Leave::Kill => member.kill(),
                    Leave::Graceful => self.see_out(index, member)?,
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

    /// Asks copy `index` to leave as the farewell says and reaps it on a thread of its own
    /// (a signalled member takes up to the grace, a shrunk one until its partitions moved).
    fn see_out(&self, index: usize, member: Proc) -> Result<()> {
        let grace = self.grace;
        let handle = match &self.farewell {
            Farewell::Signal => std::thread::spawn(move || {
                let _ = member.stop(grace);
            }),
            Farewell::Shrink { external, name } => {
                let name = name(index);
                ask_shrink(external, &name)?;
                std::thread::spawn(move || {
                    if member.wait_exit(SETTLE).is_err() {
                        let _ = member.stop(grace);
                    }
                })
            }
        };
        lock(&self.leaving).push(handle);
        Ok(())
    }

    /// Until `watching` clears: applies what `scaler` says every tick (noting each change on
    /// `live`), and passes a stop the user asked for on to `halt`. A member that dies, or a
    /// resize that fails, halts the run; the reason is returned.
    pub fn watch(
        &self,
        mut scaler: Option<&mut Scaler>,
        leave: Leave,
        (live, start): (&Live, Instant),
        (stop, halt, watching): (&Shutdown, &Shutdown, &AtomicBool),
    ) -> Option<String> {
        while watching.load(Ordering::Relaxed) {
            if stop.requested() {
                halt.request();
            }
            let now = start.elapsed();
            let done = live.items_out.load(Ordering::Relaxed);
            let lag = live.items_in.load(Ordering::Relaxed).saturating_sub(done);
            let resize = scaler
                .as_mut()
                .and_then(|s| s.tick(now, self.count(), lag as f64, done));
            if let Some(workers) = resize {
                let from = self.count();
                let how = Change {
                    at: now,
                    from,
                    to: workers,
                }
                .how(leave);
                live.note(format!("{from} → {workers} members ({how})"));
                if let Err(e) = self.resize(workers, leave, now) {
                    halt.request();
                    return Some(format!("resizing the group to {workers}: {e:#}"));
                }
            }
            if let Some(dead) = self.first_dead() {
                halt.request();
                return Some(dead);
            }
            std::thread::sleep(TICK);
        }
        None
    }

    /// The first running member that has exited, named with its status and last words.
    pub fn first_dead(&self) -> Option<String> {
        lock(&self.running).iter().find_map(|(_, copy)| {
            let status = copy.exited().ok().flatten()?;
            let words = copy.last_lines(LAST_WORDS);
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
            .try_for_each(|(_, m)| m.stop(self.grace).map(drop));
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

/// Asks the TCP cluster's initializer at `external` to shrink worker `name` away.
fn ask_shrink(external: &str, name: &str) -> Result<()> {
    use plumbline_worker::node::wire::{Control, ControlReader};
    let stream = std::net::TcpStream::connect(external)
        .with_context(|| format!("asking the cluster at {external} to shrink {name}"))?;
    Control::Shrink {
        worker: name.into(),
        token: None,
    }
    .send(&mut &stream)?;
    match ControlReader::new(&stream).recv() {
        Ok(Control::Reply { ok: true, .. }) => Ok(()),
        Ok(Control::Reply { ok: false, message }) => bail!("shrinking {name}: {message}"),
        Ok(other) => bail!("shrinking {name}: the cluster answered a {}", other.kind()),
        Err(e) => bail!("shrinking {name}: no answer from the cluster ({e})"),
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
        let change = |from, to| Change {
            at: Duration::ZERO,
            from,
            to,
        };
        assert_eq!(change(2, 4).how(Leave::Kill), "join");
        assert_eq!(change(4, 2).how(Leave::Kill), "kill");
        assert_eq!(change(4, 3).how(Leave::Graceful), "graceful");
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
        assert_eq!(members.first_dead(), None, "stopped on purpose: no death");
        let what: Vec<String> = lock(&members.running)
            .iter()
            .map(|(_, p)| p.what().into())
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
        lock(&members.running)[0].1.kill();
        std::thread::sleep(Duration::from_millis(100));
        assert!(members
            .first_dead()
            .is_some_and(|d| d.starts_with("sleeper 0 exited mid-run")));
        members.stop_all().unwrap();
        assert_eq!(members.count(), 0);
    }
}
