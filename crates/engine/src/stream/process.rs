//! The stream engine's compute workers as processes (psbench's HighThroughputExecutor and
//! process pools): each a `plumbline stream-compute` child, fed by a thread of the run (its
//! bridge) over the child's stdin and answering on its stdout.
//!
//! ```text
//!  dispatcher ──task──▶ bridge w ──frame: stream message──▶ stdin  plumbline stream-compute
//!      ▲                  │ ◀──frame: seq, end, error────── stdout   (proxy: get + delete in
//!      └──Report──────────┘                                           its own store client)
//! ```
//!
//! The wire is the core frame codec (4-byte big-endian length + payload): first the parent's
//! [`Setup`] (JSON; the store's password travels on the private pipe, never on a command
//! line), then the child's [`Hello`] once its store is open, then per task the stream message
//! itself (header + data or key) and the reply: seq (8), the task's end on the host's
//! monotonic clock in ns (8), the data's error as text (the rest; empty when none). A task's
//! end is taken in the child, as a thread worker takes it, so latency means the same for both.
//! A child that exits, closes its output or answers nonsense is reported dead by name; this
//! does not count, time the run or acknowledge anything.

use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{ChildStdin, Command};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use bytes::{BufMut, Bytes, BytesMut};
use crossbeam_channel::{bounded, Receiver, RecvTimeoutError, Sender};
use plumbline_core::frame::{FrameCodec, FrameReader};
use plumbline_core::secret::Secret;
use plumbline_core::Shutdown;
use plumbline_transport::store::{open_store, Store};
use serde::{Deserialize, Serialize};

use super::compute::{run_task, timer, ComputeWorker, Done, Report, RunStart, Task};
use crate::child::{Proc, SETTLE};

/// The hidden subcommand a compute process runs.
pub const SUBCOMMAND: &str = "stream-compute";
/// Largest frame on the pipes: a stream message of the largest data plus its header (the
/// parent is trusted; the cap only refuses a broken length).
const MAX_FRAME: usize = (1 << 30) + (1 << 20);
/// How often a bridge waiting for a task or a reply looks at its child and the run.
const WATCH: Duration = Duration::from_millis(50);
/// How long a child whose output closed gets to exit before it is called hung and killed.
const EXIT_GRACE: Duration = Duration::from_secs(1);

/// What a compute process is told once, before any task.
#[derive(Debug, Serialize, Deserialize)]
pub struct Setup {
    /// The store URL (proxy mode), or none (data by value).
    pub store: Option<String>,
    pub password: Option<String>,
    pub tls_ca: Option<PathBuf>,
    pub connect_timeout_ms: u64,
    pub max_payload: usize,
    pub task_sleep_ns: u64,
}

/// A compute process's first word: it is ready (its store open), and who it is.
#[derive(Debug, Serialize, Deserialize)]
struct Hello {
    pid: u32,
}

/// The host's monotonic clock (CLOCK_MONOTONIC) in ns: one clock for every process of the
/// host, so a child's task end and the run's start compare.
pub(crate) fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime only writes the timespec it is given, which lives for the call.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64).saturating_mul(1_000_000_000) + ts.tv_nsec as u64
}

/// Writes one frame of `payload` (no copy of it into a buffer: data frames are large).
fn write_frame(out: &mut impl Write, payload: &[u8]) -> std::io::Result<()> {
    FrameCodec::new(MAX_FRAME)
        .check_len(payload.len())
        .map_err(std::io::Error::other)?;
    out.write_all(&(payload.len() as u32).to_be_bytes())?;
    out.write_all(payload)
}

/// A task's reply: seq, its end on the monotonic clock, and the data's error.
fn reply(seq: u64, end_ns: u64, error: Option<&str>) -> Bytes {
    let error = error.unwrap_or("");
    let mut out = BytesMut::with_capacity(16 + error.len());
    out.put_u64(seq);
    out.put_u64(end_ns);
    out.put_slice(error.as_bytes());
    out.freeze()
}

/// (seq, end ns, error) of a reply.
fn parse_reply(frame: &[u8]) -> Option<(u64, u64, Option<String>)> {
    if frame.len() < 16 {
        return None;
    }
    let at = |i: usize| u64::from_be_bytes(frame[i..i + 8].try_into().expect("8 bytes"));
    let error = std::str::from_utf8(&frame[16..]).ok()?;
    Some((at(0), at(8), (!error.is_empty()).then(|| error.to_string())))
}

/// `plumbline stream-compute`: one compute process. Reads its [`Setup`] and then tasks from
/// `input`, answers on `output`, until `input` ends (the run is over).
pub fn serve(input: impl Read, output: impl Write) -> Result<()> {
    let mut output = BufWriter::new(output);
    let mut frames = FrameReader::new(input, FrameCodec::new(MAX_FRAME));
    let setup = frames
        .next()
        .context("the stream gave no setup")?
        .context("reading the setup")?;
    let setup: Setup = serde_json::from_slice(&setup).context("reading the setup")?;
    let options = plumbline_transport::broker::ClientOptions {
        connect_timeout: Duration::from_millis(setup.connect_timeout_ms),
        max_payload: setup.max_payload,
        password: setup.password.map(Secret::new),
        tls_ca: setup.tls_ca,
        ..Default::default()
    };
    let mut store: Option<Box<dyn Store>> = setup
        .store
        .as_deref()
        .map(|url| open_store(url, &options).with_context(|| format!("the store {url}")))
        .transpose()?;
    let hello = serde_json::to_vec(&Hello {
        pid: std::process::id(),
    })?;
    write_frame(&mut output, &hello)?;
    output.flush()?;
    let sleep = Duration::from_nanos(setup.task_sleep_ns);
    let mut timer = timer();
    for frame in frames {
        let frame = frame.context("reading a task")?;
        let (seq, _, size) = super::parse(&frame).context("a task without the stream header")?;
        let error = run_task(
            store.as_mut(),
            frame.slice(super::HEAD..),
            size,
            &mut timer,
            sleep,
        );
        write_frame(&mut output, &reply(seq, monotonic_ns(), error.as_deref()))?;
        output.flush()?;
    }
    Ok(())
}

/// A started, ready compute process and the bridge's ends of its pipes.
pub(crate) struct ComputeProcess {
    worker: usize,
    /// Shared with its watchdog, which kills it once the run gives up on it.
    proc: Arc<Proc>,
    stdin: ChildStdin,
    /// Its stdout's frames, read by a thread of their own (so waiting for one can time out).
    replies: Receiver<Result<Bytes, String>>,
    pid: u32,
}

/// Starts `n` compute processes from `exe`, all at once, and waits until each has its store
/// open; the first that fails ends the start (the others are killed), named.
pub(crate) fn start(exe: &Path, n: usize, setup: &Setup) -> Result<Vec<ComputeProcess>> {
    let setup = serde_json::to_vec(setup)?;
    let started = (0..n)
        .map(|worker| spawn(exe, worker, &setup))
        .collect::<Result<Vec<_>>>()?;
    started
        .into_iter()
        .map(|(worker, proc, stdin, replies)| {
            let hello = wait(&replies, Instant::now() + SETTLE);
            let hello: Hello = match hello {
                Some(Ok(frame)) => serde_json::from_slice(&frame)
                    .with_context(|| format!("compute process {worker} said something else"))?,
                Some(Err(e)) => bail!("compute process {worker}: {e}"),
                None => bail!(
                    "compute process {worker} ({}) was not ready within {SETTLE:?}: {}",
                    proc.what(),
                    proc.last_lines(3).join(" | ")
                ),
            };
            Ok(ComputeProcess {
                worker,
                proc: Arc::new(proc),
                stdin,
                replies,
                pid: hello.pid,
            })
        })
        .collect()
}

type Started = (usize, Proc, ChildStdin, Receiver<Result<Bytes, String>>);

/// Starts compute process `worker` and writes it `setup`.
fn spawn(exe: &Path, worker: usize, setup: &[u8]) -> Result<Started> {
    use std::os::unix::process::CommandExt as _;
    let mut command = Command::new(exe);
    command.arg(SUBCOMMAND);
    // Its own process group: a Ctrl-C at the terminal is the run's to handle (finish the
    // tasks in flight), not each child's.
    command.process_group(0);
    let what = format!("`plumbline {SUBCOMMAND}` (compute process {worker})");
    let (proc, mut stdin, stdout) = Proc::spawn_piped(command, what)?;
    let (tx, replies) = bounded(1);
    std::thread::spawn(move || {
        for frame in FrameReader::new(stdout, FrameCodec::new(MAX_FRAME)) {
            let failed = frame.is_err();
            if tx.send(frame.map_err(|e| e.to_string())).is_err() || failed {
                return;
            }
        }
    });
    write_frame(&mut stdin, setup)
        .with_context(|| format!("setting up compute process {worker}"))?;
    Ok((worker, proc, stdin, replies))
}

/// The next frame from `replies` before `deadline`: `None` on time out or when the output
/// ended.
fn wait(
    replies: &Receiver<Result<Bytes, String>>,
    deadline: Instant,
) -> Option<Result<Bytes, String>> {
    replies
        .recv_timeout(deadline.saturating_duration_since(Instant::now()))
        .ok()
}

/// Why waiting on a compute process ended without its reply.
enum Gone {
    /// The run gave up on it (the dispatcher timed out).
    Abandoned,
    /// It died or broke: the error naming it.
    Died(String),
}

impl ComputeProcess {
    fn name(&self) -> String {
        format!("compute process {} (pid {})", self.worker, self.pid)
    }

    /// The error for a child that is gone: its exit status (killing it if it is still there
    /// after [`EXIT_GRACE`]) and its last words.
    fn died(&self, how: &str) -> String {
        let deadline = Instant::now() + EXIT_GRACE;
        let status = loop {
            match self.proc.exited() {
                Ok(Some(status)) => break status.to_string(),
                Ok(None) if Instant::now() < deadline => std::thread::sleep(WATCH),
                _ => {
                    self.proc.kill();
                    break "killed: it stopped answering".to_string();
                }
            }
        };
        let said = self.proc.last_lines(3).join(" | ");
        format!(
            "{} {how} mid-run ({status}){}",
            self.name(),
            if said.is_empty() {
                String::new()
            } else {
                format!(": {said}")
            }
        )
    }

    /// Waits for the reply to the task in flight.
    fn reply(&self, abandon: &Shutdown) -> Result<Bytes, Gone> {
        loop {
            match self.replies.recv_timeout(WATCH) {
                Ok(Ok(frame)) => return Ok(frame),
                Ok(Err(e)) => {
                    return Err(Gone::Died(self.died(&format!("broke its output ({e})"))))
                }
                Err(RecvTimeoutError::Disconnected) => return Err(Gone::Died(self.died("died"))),
                Err(RecvTimeoutError::Timeout) if abandon.requested() => {
                    return Err(Gone::Abandoned)
                }
                Err(RecvTimeoutError::Timeout) => {}
            }
        }
    }

    /// Runs `task` in the child: its report.
    fn run(&mut self, task: Task, start: &RunStart, abandon: &Shutdown) -> Result<Done, Gone> {
        if write_frame(&mut self.stdin, &task.delivery.payload).is_err() {
            return Err(Gone::Died(self.died("died")));
        }
        let frame = self.reply(abandon)?;
        match parse_reply(&frame) {
            Some((seq, end_ns, error)) if seq == task.seq => Ok(Done {
                delivery: task.delivery,
                seq,
                worker: self.worker,
                latency_ns: end_ns
                    .saturating_sub(start.monotonic_ns)
                    .saturating_sub(task.intended_ns),
                error,
            }),
            _ => {
                self.proc.kill();
                Err(Gone::Died(format!(
                    "{} answered task {} with something else; killed",
                    self.name(),
                    task.seq
                )))
            }
        }
    }
}

impl ComputeProcess {
    /// Serves tasks until they close (true) or it is gone (false; reported, unless the run
    /// gave up on it).
    fn work(
        &mut self,
        tasks: &Receiver<Task>,
        done: &Sender<Report>,
        start: &RunStart,
        abandon: &Shutdown,
    ) -> bool {
        loop {
            let task = match tasks.recv_timeout(WATCH) {
                Ok(task) => task,
                Err(RecvTimeoutError::Timeout) => {
                    // Idle, it may still have died: say so now, not at its next task.
                    if matches!(self.proc.exited(), Ok(Some(_)) | Err(_)) {
                        let _ = done.send(Report::Died(self.died("died")));
                        return false;
                    }
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => return true,
            };
            match self.run(task, start, abandon) {
                Ok(d) => {
                    if done.send(Report::Done(d)).is_err() {
                        return false;
                    }
                }
                Err(Gone::Died(why)) => {
                    if !abandon.requested() {
                        let _ = done.send(Report::Died(why));
                    }
                    return false;
                }
                Err(Gone::Abandoned) => return false,
            }
        }
    }
}

impl ComputeWorker for ComputeProcess {
    fn pid(&self) -> u32 {
        self.pid
    }

    fn serve(
        mut self: Box<Self>,
        tasks: Receiver<Task>,
        done: Sender<Report>,
        start: &RunStart,
        abandon: &Shutdown,
    ) {
        // A child that stops reading (stopped, wedged) would hold a task's write forever:
        // once the run gives up, it is killed, which ends the write.
        let finished = Shutdown::new();
        let watchdog = {
            let (proc, abandon, finished) = (self.proc.clone(), abandon.clone(), finished.clone());
            std::thread::spawn(move || {
                while !finished.requested() {
                    if abandon.requested() {
                        proc.kill();
                        return;
                    }
                    std::thread::sleep(WATCH);
                }
            })
        };
        let closed = self.work(&tasks, &done, start, abandon);
        finished.request();
        let _ = watchdog.join();
        if closed {
            // Its input closed, it exits; one that does not, or fails, is named.
            let ComputeProcess { proc, stdin, .. } = *self;
            drop(stdin);
            if let Err(e) = proc.wait_exit(SETTLE) {
                let _ = done.send(Report::Died(format!("{e:#}")));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reply_carries_seq_end_and_the_error() {
        let r = reply(7, 123, None);
        assert_eq!(parse_reply(&r), Some((7, 123, None)));
        let r = reply(8, 5, Some("2 bytes where 3 were sent"));
        assert_eq!(
            parse_reply(&r),
            Some((8, 5, Some("2 bytes where 3 were sent".into())))
        );
        assert_eq!(parse_reply(&r[..15]), None, "too short");
    }

    #[test]
    fn a_compute_process_answers_each_task_with_its_end_on_the_monotonic_clock() {
        let setup = Setup {
            store: None,
            password: None,
            tls_ca: None,
            connect_timeout_ms: 1000,
            max_payload: 1024,
            task_sleep_ns: 0,
        };
        let mut input = Vec::new();
        write_frame(&mut input, &serde_json::to_vec(&setup).unwrap()).unwrap();
        for (seq, data) in [(0u64, &b"abc"[..]), (1, b"ab")] {
            let mut task = Vec::new();
            task.extend_from_slice(&seq.to_be_bytes());
            task.extend_from_slice(&0u64.to_be_bytes());
            task.extend_from_slice(&3u64.to_be_bytes());
            task.extend_from_slice(data);
            write_frame(&mut input, &task).unwrap();
        }
        let before = monotonic_ns();
        let mut output = Vec::new();
        serve(&input[..], &mut output).unwrap();
        let frames: Vec<Bytes> = FrameReader::new(&output[..], FrameCodec::new(MAX_FRAME))
            .map(Result::unwrap)
            .collect();
        assert_eq!(frames.len(), 3, "hello, then a reply per task");
        let hello: Hello = serde_json::from_slice(&frames[0]).unwrap();
        assert_eq!(hello.pid, std::process::id());
        let (seq, end, error) = parse_reply(&frames[1]).unwrap();
        assert_eq!((seq, error), (0, None));
        assert!(end >= before && end <= monotonic_ns());
        let (seq, _, error) = parse_reply(&frames[2]).unwrap();
        assert_eq!(seq, 1);
        assert_eq!(error.as_deref(), Some("2 bytes where 3 were sent"));
    }

    #[test]
    fn a_compute_process_without_its_setup_fails_naming_it() {
        let error = serve(&[][..], Vec::new()).unwrap_err();
        assert!(format!("{error:#}").contains("setup"), "{error:#}");
    }
}
