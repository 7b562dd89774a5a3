//! Announcements: a role process's machine-readable channel to whatever started it.
//!
//! `--announce FILE|-` on the cluster's initializer (and the pipeline's collector and
//! distributor) writes one JSON object per line per event: where it listens once bound, that it
//! takes load, and per-worker figures when it is done. The engines read the same type back
//! ([`Announcement::parse`]), so nothing parses the human log lines on stderr, which stay for
//! people. What an event means to a run is the reader's business, not this module's.

use std::fmt;
use std::io::Write;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use crate::node::wire::WorkerStats;

/// One event of a role, one JSON line on the announce channel, tagged by `event`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Announcement {
    /// The initializer's control plane is bound: joiners join at `control`, `plumbline
    /// shutdown` asks `external`.
    ClusterListening {
        control: String,
        external: Option<String>,
    },
    /// The cluster formed and takes sources at `sources` (Prometheus scrapes `metrics`);
    /// `workers` own partitions in this order (the initializer first, then joiners as they
    /// joined).
    ClusterReady {
        sources: String,
        metrics: Option<String>,
        workers: Vec<String>,
    },
    /// The running cluster's membership starts to change (a worker joined, or is leaving):
    /// `moving` partitions are on their way so that `workers` will own them.
    ClusterChanging { workers: Vec<String>, moving: u32 },
    /// The running cluster's membership changed (a worker joined or left) and every moving
    /// partition's state has moved: `workers` own partitions now; `moved` partitions changed
    /// hands in `took_s`, the longest held for `longest_pause_s`.
    ClusterChanged {
        workers: Vec<String>,
        moved: u32,
        took_s: f64,
        longest_pause_s: f64,
    },
    /// The cluster shut down with every accepted item accounted for: what each worker did, in
    /// the order of [`Announcement::ClusterReady`]'s `workers`.
    ClusterDone { workers: Vec<WorkerStats> },
    /// The pipeline's collector is bound: workers send results to `results`, the distributor
    /// connects for ACKs to `acks`.
    CollectorListening { results: String, acks: String },
    /// The pipeline's distributor is bound: the workers of each task type connect to its
    /// endpoint.
    DistributorListening { tasks: Vec<TaskEndpoint> },
}

/// Where the workers of one task type connect.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskEndpoint {
    pub task_type: String,
    pub endpoint: String,
}

impl Announcement {
    /// One announce line (without its newline), as [`Announcer::announce`] wrote it.
    pub fn parse(line: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(line)
    }
}

/// Where a role's announcements go: nowhere (the default), stdout (`-`) or a file. Cheap to
/// clone; each announcement is written and flushed whole, so a reader sees complete lines.
#[derive(Clone, Default)]
pub struct Announcer(Option<Arc<Mutex<Box<dyn Write + Send>>>>);

impl fmt::Debug for Announcer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_some() {
            "Announcer(on)"
        } else {
            "Announcer(off)"
        })
    }
}

impl Announcer {
    /// Announces to what `--announce` names: `-` for stdout, else a file created (or emptied)
    /// now; without the flag, nowhere.
    pub fn open(target: Option<&str>) -> std::io::Result<Self> {
        let out: Box<dyn Write + Send> = match target {
            None => return Ok(Self::default()),
            Some("-") => Box::new(std::io::stdout()),
            Some(path) => Box::new(std::fs::File::create(path)?),
        };
        Ok(Self::to(out))
    }

    /// Announces to any writer (tests, an in-process reader).
    pub fn to(out: Box<dyn Write + Send>) -> Self {
        Self(Some(Arc::new(Mutex::new(out))))
    }

    /// Writes `event` as one JSON line. A channel that fails (its reader gone) is said on
    /// stderr and the role runs on: the announcements are for its starter, not its work.
    pub fn announce(&self, event: &Announcement) {
        let Some(out) = &self.0 else {
            return;
        };
        let mut line = serde_json::to_string(event).expect("announcements serialize");
        line.push('\n');
        let mut out = out.lock().unwrap_or_else(|p| p.into_inner());
        if let Err(e) = out.write_all(line.as_bytes()).and_then(|()| out.flush()) {
            tracing::warn!(
                "the --announce channel failed ({e}); announcing goes on on stderr only"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer whose bytes the test reads back.
    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().write(buf)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn every_kind() -> Vec<Announcement> {
        vec![
            Announcement::ClusterListening {
                control: "127.0.0.1:6000".into(),
                external: Some("127.0.0.1:6001".into()),
            },
            Announcement::ClusterReady {
                sources: "127.0.0.1:7000".into(),
                metrics: None,
                workers: vec!["initializer".into(), "w2".into()],
            },
            Announcement::ClusterDone {
                workers: vec![WorkerStats {
                    name: "w2".into(),
                    items: 26,
                    results: 26,
                    ..WorkerStats::default()
                }],
            },
            Announcement::CollectorListening {
                results: "tcp://127.0.0.1:5558".into(),
                acks: "tcp://127.0.0.1:5559".into(),
            },
            Announcement::DistributorListening {
                tasks: vec![TaskEndpoint {
                    task_type: "C".into(),
                    endpoint: "tcp://127.0.0.1:5557".into(),
                }],
            },
        ]
    }

    #[test]
    fn every_announcement_is_one_json_line_that_reads_back_as_itself() {
        let written = Shared::default();
        let announcer = Announcer::to(Box::new(written.clone()));
        for event in every_kind() {
            announcer.announce(&event);
        }
        let text = String::from_utf8(written.0.lock().unwrap().clone()).unwrap();
        let read: Vec<Announcement> = text
            .lines()
            .map(|line| Announcement::parse(line).unwrap())
            .collect();
        assert_eq!(read, every_kind());
        assert!(text.starts_with(r#"{"event":"cluster_listening","control":"127.0.0.1:6000""#));
    }

    #[test]
    fn a_line_that_is_no_announcement_is_an_error_not_a_guess() {
        assert!(Announcement::parse("[initializer] control on 127.0.0.1:6000").is_err());
        assert!(Announcement::parse(r#"{"event":"cluster_exploded"}"#).is_err());
        assert!(Announcement::parse(r#"{"event":"cluster_ready","sources":"x"}"#).is_err());
    }
}
