//! The resource sampler: RSS, open file descriptors and CPU time of one process, read from
//! `/proc` a few times a second on a thread of its own, summarised as peak and growth when
//! stopped. Scenarios 2, 11, 17, 19 and 20 assert on it. It reads only; a process that exits
//! just ends the samples.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::Serialize;

/// One reading.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Sample {
    pub at_s: f64,
    pub rss_bytes: u64,
    pub fds: u64,
    /// utime + stime, in seconds.
    pub cpu_s: f64,
}

/// What the samples add up to.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Usage {
    pub samples: usize,
    pub peak_rss_bytes: u64,
    pub first_rss_bytes: u64,
    pub last_rss_bytes: u64,
    pub peak_fds: u64,
    pub last_fds: u64,
    /// CPU seconds per wall second over the samples (1.0 = one core busy).
    pub cpu_share: f64,
}

impl Usage {
    pub fn of(samples: &[Sample]) -> Self {
        let (Some(first), Some(last)) = (samples.first(), samples.last()) else {
            return Usage::default();
        };
        let wall = last.at_s - first.at_s;
        Usage {
            samples: samples.len(),
            peak_rss_bytes: samples.iter().map(|s| s.rss_bytes).max().unwrap_or(0),
            first_rss_bytes: first.rss_bytes,
            last_rss_bytes: last.rss_bytes,
            peak_fds: samples.iter().map(|s| s.fds).max().unwrap_or(0),
            last_fds: last.fds,
            cpu_share: if wall > 0.0 {
                (last.cpu_s - first.cpu_s) / wall
            } else {
                0.0
            },
        }
    }

    pub fn peak_rss_mb(&self) -> f64 {
        self.peak_rss_bytes as f64 / (1 << 20) as f64
    }

    /// Growth of RSS from the first sample after `warmup_s` to the last, as a fraction.
    pub fn growth_after(samples: &[Sample], warmup_s: f64) -> f64 {
        let Some(start) = samples.first().map(|s| s.at_s) else {
            return 0.0;
        };
        let settled: Vec<&Sample> = samples
            .iter()
            .filter(|s| s.at_s - start >= warmup_s)
            .collect();
        match (settled.first(), settled.last()) {
            (Some(a), Some(b)) if a.rss_bytes > 0 => b.rss_bytes as f64 / a.rss_bytes as f64 - 1.0,
            _ => 0.0,
        }
    }
}

/// `VmRSS` of `/proc/PID/status`, in bytes.
pub fn parse_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// utime + stime of `/proc/PID/stat` in clock ticks (fields 14 and 15, counted after the
/// command name, which may itself hold spaces and parentheses).
pub fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    let after = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    // `after` starts at field 3 (state): utime is field 14, so index 11.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// Reads one sample of `pid`, or `None` once it is gone.
pub fn sample(pid: u32, since: Instant) -> Option<Sample> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count() as u64;
    // SAFETY: sysconf takes an integer and reads no memory of ours.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    Some(Sample {
        at_s: since.elapsed().as_secs_f64(),
        rss_bytes: parse_rss(&status)?,
        fds,
        cpu_s: parse_cpu_ticks(&stat)? as f64 / hz,
    })
}

/// A running sampler of one process.
pub struct Sampler {
    samples: Arc<Mutex<Vec<Sample>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Sampler {
    /// Samples `pid` every `every` (a few Hz is plenty: RSS moves in pages, CPU in ticks).
    pub fn start(pid: u32, every: Duration) -> Self {
        let samples = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (out, done) = (samples.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let since = Instant::now();
            while !done.load(Ordering::Relaxed) {
                match sample(pid, since) {
                    Some(s) => out.lock().unwrap_or_else(|p| p.into_inner()).push(s),
                    None => return,
                }
                std::thread::sleep(every);
            }
        });
        Self {
            samples,
            stop,
            thread: Some(thread),
        }
    }

    /// The samples so far.
    pub fn samples(&self) -> Vec<Sample> {
        self.samples
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn usage(&self) -> Usage {
        Usage::of(&self.samples())
    }

    /// Stops sampling and returns every sample.
    pub fn stop(mut self) -> Vec<Sample> {
        self.halt();
        self.samples()
    }

    fn halt(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        self.halt();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rss_is_read_from_the_status_file_in_bytes() {
        let status = "Name:\tx\nVmPeak:\t  9000 kB\nVmRSS:\t    1536 kB\nThreads:\t1\n";
        assert_eq!(parse_rss(status), Some(1536 * 1024));
        assert_eq!(parse_rss("Name:\tx\n"), None);
    }

    #[test]
    fn cpu_ticks_survive_a_command_name_with_spaces_and_parentheses() {
        let stat = "42 (a (b) c) S 1 42 42 0 -1 4194560 100 0 0 0 7 3 0 0 20 0 1 0 5 0 0";
        assert_eq!(parse_cpu_ticks(stat), Some(10));
        assert_eq!(parse_cpu_ticks("42 (x) S 1"), None);
    }

    fn at(at_s: f64, mb: u64, cpu_s: f64) -> Sample {
        Sample {
            at_s,
            rss_bytes: mb << 20,
            fds: mb,
            cpu_s,
        }
    }

    #[test]
    fn usage_has_the_peak_the_cpu_share_and_the_growth_after_warmup() {
        let samples = [
            at(0.0, 10, 0.0),
            at(1.0, 50, 0.5),
            at(2.0, 50, 1.0),
            at(3.0, 55, 1.5),
        ];
        let usage = Usage::of(&samples);
        assert_eq!(usage.peak_rss_mb(), 55.0);
        assert_eq!(usage.peak_fds, 55);
        assert!((usage.cpu_share - 0.5).abs() < 1e-9);
        assert!((Usage::growth_after(&samples, 1.0) - 0.1).abs() < 1e-9);
        assert_eq!(Usage::of(&[]), Usage::default());
    }

    #[test]
    fn a_live_process_is_sampled_and_a_gone_one_ends_the_samples() {
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .unwrap();
        let sampler = Sampler::start(child.id(), Duration::from_millis(20));
        std::thread::sleep(Duration::from_millis(150));
        child.kill().unwrap();
        child.wait().unwrap();
        std::thread::sleep(Duration::from_millis(100));
        let samples = sampler.stop();
        assert!(samples.len() >= 3, "{samples:?}");
        assert!(samples.iter().all(|s| s.rss_bytes > 0 && s.fds >= 3));
    }
}
