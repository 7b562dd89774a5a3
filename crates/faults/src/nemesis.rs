//! The nemesis: the faults a scenario inflicts on the processes it started (SIGKILL,
//! SIGSTOP/SIGCONT, restart with the same argv), each written down with its time so a failure
//! can be matched to the fault. It signals only pids it is given and reaps nothing: the
//! owner of the `Child` waits for it.

use serde::Serialize;

use crate::unix_ns;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FaultKind {
    Kill,
    Pause,
    Resume,
    Restart,
}

/// One fault, when it was inflicted and on what.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Fault {
    pub at_unix_ns: u64,
    pub kind: FaultKind,
    pub pid: u32,
    /// The role's name as the scenario calls it ("worker w3").
    pub target: String,
}

#[derive(Debug, thiserror::Error)]
#[error("cannot {kind:?} {target} (pid {pid}): {source}")]
pub struct NemesisError {
    kind: FaultKind,
    target: String,
    pid: u32,
    source: std::io::Error,
}

/// The faults of one scenario, in the order inflicted.
#[derive(Debug, Default)]
pub struct Nemesis {
    pub faults: Vec<Fault>,
}

impl Nemesis {
    pub fn new() -> Self {
        Self::default()
    }

    /// SIGKILL: the process gets no chance to flush or say goodbye.
    pub fn kill(&mut self, pid: u32, target: &str) -> Result<(), NemesisError> {
        self.signal(pid, target, FaultKind::Kill, libc::SIGKILL)
    }

    /// SIGSTOP: the process holds its sockets and leases but does nothing.
    pub fn pause(&mut self, pid: u32, target: &str) -> Result<(), NemesisError> {
        self.signal(pid, target, FaultKind::Pause, libc::SIGSTOP)
    }

    pub fn resume(&mut self, pid: u32, target: &str) -> Result<(), NemesisError> {
        self.signal(pid, target, FaultKind::Resume, libc::SIGCONT)
    }

    /// Starts `target` again with its argv (by `spawn`, which the scenario owns: it knows how
    /// its processes are watched) and records the restart under the new pid.
    pub fn restart<T>(
        &mut self,
        target: &str,
        argv: &[&str],
        spawn: impl FnOnce(&[&str]) -> T,
        pid_of: impl Fn(&T) -> u32,
    ) -> T {
        let started = spawn(argv);
        self.record(pid_of(&started), target, FaultKind::Restart);
        started
    }

    /// When the first fault of `kind` was inflicted.
    pub fn first(&self, kind: FaultKind) -> Option<u64> {
        self.faults
            .iter()
            .find(|f| f.kind == kind)
            .map(|f| f.at_unix_ns)
    }

    fn signal(
        &mut self,
        pid: u32,
        target: &str,
        kind: FaultKind,
        signal: libc::c_int,
    ) -> Result<(), NemesisError> {
        let raw = libc::pid_t::try_from(pid).map_err(|_| NemesisError {
            kind,
            target: target.to_string(),
            pid,
            source: std::io::Error::from(std::io::ErrorKind::InvalidInput),
        })?;
        // SAFETY: kill(2) takes plain integers and touches no memory of ours.
        if unsafe { libc::kill(raw, signal) } != 0 {
            return Err(NemesisError {
                kind,
                target: target.to_string(),
                pid,
                source: std::io::Error::last_os_error(),
            });
        }
        self.record(pid, target, kind);
        Ok(())
    }

    fn record(&mut self, pid: u32, target: &str, kind: FaultKind) {
        self.faults.push(Fault {
            at_unix_ns: unix_ns(),
            kind,
            pid,
            target: target.to_string(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;
    use std::time::Duration;

    fn state(pid: u32) -> char {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        stat.rsplit(')')
            .next()
            .unwrap()
            .trim()
            .chars()
            .next()
            .unwrap()
    }

    #[test]
    fn pause_resume_and_kill_reach_the_process_and_are_logged_in_order() {
        let mut child = Command::new("sleep").arg("30").spawn().unwrap();
        let pid = child.id();
        let mut nemesis = Nemesis::new();
        nemesis.pause(pid, "sleeper").unwrap();
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(state(pid), 'T', "stopped");
        nemesis.resume(pid, "sleeper").unwrap();
        nemesis.kill(pid, "sleeper").unwrap();
        let status = child.wait().unwrap();
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(libc::SIGKILL));
        let kinds: Vec<FaultKind> = nemesis.faults.iter().map(|f| f.kind).collect();
        assert_eq!(
            kinds,
            vec![FaultKind::Pause, FaultKind::Resume, FaultKind::Kill]
        );
        assert!(nemesis
            .faults
            .windows(2)
            .all(|w| w[0].at_unix_ns <= w[1].at_unix_ns));
    }

    #[test]
    fn a_signal_to_a_gone_process_is_an_error_naming_it() {
        let mut child = Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        let err = Nemesis::new().kill(pid, "done").unwrap_err();
        assert!(err.to_string().contains("done (pid"), "{err}");
    }

    #[test]
    fn a_restart_runs_the_same_argv_and_records_the_new_pid() {
        let mut nemesis = Nemesis::new();
        let mut child = nemesis.restart(
            "echo",
            &["true"],
            |argv| Command::new(argv[0]).spawn().unwrap(),
            |c| c.id(),
        );
        assert!(child.wait().unwrap().success());
        assert_eq!(nemesis.faults[0].pid, child.id());
        assert!(nemesis.first(FaultKind::Restart).is_some());
    }
}
