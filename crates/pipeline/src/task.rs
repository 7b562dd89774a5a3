//! Task types and tasks: what the distributor hands out (seed 001's `TaskType` and `Task`).
//!
//! A [`Task`] is the distributor-side producer of one task type: it makes the work descriptor
//! for each new dispatch, says when it has issued everything, and names the task types that must
//! be complete before its own may start. [`SleepTask`] is the built-in one: N descriptors of a
//! known delay, as the seed's examples. Executing tasks is the worker's business
//! (`worker.rs`), and redelivering them the distributor's (`lease.rs`).

use std::collections::BTreeSet;
use std::fmt;
use std::time::Duration;

use plumbline_core::work::Work;
use plumbline_measure::ideal::batch_ideal;
use serde_json::{json, Value};

/// The name of a kind of task: 1–64 characters of `A-Z a-z 0-9 _ - .`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TaskType(String);

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("'{0}' is not a task type: use 1-64 characters of A-Z a-z 0-9 _ - .")]
pub struct BadTaskType(pub String);

impl TaskType {
    pub fn new(name: &str) -> Result<Self, BadTaskType> {
        let ok = !name.is_empty()
            && name.len() <= 64
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b));
        if ok {
            Ok(Self(name.to_string()))
        } else {
            Err(BadTaskType(name.to_string()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TaskType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The distributor's producer of one task type.
///
/// Called only from the distributor's loop, one call at a time. A redelivery resends the
/// descriptor `handle` made the first time: `handle` is called once per task, not per attempt.
pub trait Task: Send {
    fn task_type(&self) -> &TaskType;

    /// Task types whose every task must be complete and ACKed before this one's first dispatch.
    fn dependencies(&self) -> Vec<TaskType> {
        Vec::new()
    }

    /// Makes the descriptor of the next task, to be sent to `worker`. Only called while
    /// [`Task::is_complete`] is false.
    fn handle(&mut self, worker: &str) -> Value;

    /// True once the task has issued everything it will.
    fn is_complete(&self) -> bool;

    /// How many tasks it issues in all, if known: a release schedule needs it, to release
    /// no more tasks than there are.
    fn total(&self) -> Option<u64> {
        None
    }

    /// What the whole task type should ideally cost on `threads` parallel threads, if known:
    /// the denominator of the run's overhead.
    fn ideal(&self, _threads: u32) -> Option<Duration> {
        None
    }
}

/// `count` tasks of `delay` each, descriptor `{"workload": seconds, "work": "sleep"}` like the
/// seed's (`work` says how to spend the delay, see [`Work`]). Tasks whose 1-based number is in
/// `poison` carry `"crash": true`, which plumbline's worker answers by aborting its process: a
/// task that kills every worker it reaches, for testing redelivery limits.
#[derive(Debug, Clone)]
pub struct SleepTask {
    task_type: TaskType,
    dependencies: Vec<TaskType>,
    count: u64,
    issued: u64,
    delay: Duration,
    work: Work,
    poison: BTreeSet<u64>,
}

impl SleepTask {
    pub fn new(task_type: TaskType, count: u64, delay: Duration, work: Work) -> Self {
        Self {
            task_type,
            dependencies: Vec::new(),
            count,
            issued: 0,
            delay,
            work,
            poison: BTreeSet::new(),
        }
    }

    pub fn after(mut self, dependencies: Vec<TaskType>) -> Self {
        self.dependencies = dependencies;
        self
    }

    pub fn poison(mut self, numbers: impl IntoIterator<Item = u64>) -> Self {
        self.poison.extend(numbers);
        self
    }

    pub fn count(&self) -> u64 {
        self.count
    }
}

impl Task for SleepTask {
    fn task_type(&self) -> &TaskType {
        &self.task_type
    }

    fn dependencies(&self) -> Vec<TaskType> {
        self.dependencies.clone()
    }

    fn handle(&mut self, _worker: &str) -> Value {
        self.issued += 1;
        let mut data = json!({
            "workload": self.delay.as_secs_f64(),
            "work": self.work.to_string(),
        });
        if self.poison.contains(&self.issued) {
            data["crash"] = Value::Bool(true);
        }
        data
    }

    fn is_complete(&self) -> bool {
        self.issued >= self.count
    }

    fn total(&self) -> Option<u64> {
        Some(self.count)
    }

    /// Every thread busy from the first task to the last: ⌈count / threads⌉ delays.
    fn ideal(&self, threads: u32) -> Option<Duration> {
        Some(batch_ideal(self.count, u64::from(threads), self.delay))
    }
}

/// What a worker does with a descriptor in the built-in format, parsed once per task.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Workload {
    pub delay: Duration,
    pub work: Work,
    pub crash: bool,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum BadWorkload {
    #[error("task data has no 'workload' number of seconds (got {0})")]
    Missing(String),
    #[error("task workload of {0} s is not a delay between 0 and 3600 s")]
    Range(f64),
    #[error("task data: {0}")]
    Work(#[from] plumbline_core::work::WorkError),
}

impl Workload {
    pub fn from_data(data: &Value) -> Result<Self, BadWorkload> {
        let secs = data
            .get("workload")
            .and_then(Value::as_f64)
            .ok_or_else(|| BadWorkload::Missing(truncated(data)))?;
        if !(0.0..=3600.0).contains(&secs) {
            return Err(BadWorkload::Range(secs));
        }
        let work = match data.get("work").and_then(Value::as_str) {
            Some(w) => w.parse()?,
            None => Work::Sleep,
        };
        Ok(Self {
            delay: Duration::from_secs_f64(secs),
            work,
            crash: data.get("crash") == Some(&Value::Bool(true)),
        })
    }
}

fn truncated(data: &Value) -> String {
    let mut text = data.to_string();
    if text.len() > 80 {
        let cut = (0..=80)
            .rev()
            .find(|&i| text.is_char_boundary(i))
            .unwrap_or(0);
        text.truncate(cut);
        text.push('…');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_types_are_checked() {
        assert!(TaskType::new("C").is_ok());
        assert!(TaskType::new("first_task-2.b").is_ok());
        for bad in ["", "a b", "é", &"x".repeat(65)] {
            assert!(TaskType::new(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn sleep_task_issues_count_descriptors_and_marks_poison() {
        let mut task = SleepTask::new(
            TaskType::new("C").unwrap(),
            3,
            Duration::from_millis(10),
            Work::Sleep,
        )
        .poison([2]);
        let mut got = Vec::new();
        while !task.is_complete() {
            got.push(Workload::from_data(&task.handle("w")).unwrap());
        }
        assert_eq!(got.len(), 3);
        assert_eq!(got[0].delay, Duration::from_millis(10));
        assert_eq!(
            got.iter().map(|w| w.crash).collect::<Vec<_>>(),
            [false, true, false]
        );
        assert_eq!(task.ideal(2), Some(Duration::from_millis(20)));
    }

    #[test]
    fn bad_descriptors_are_named() {
        let err = Workload::from_data(&json!({"load": 1}))
            .unwrap_err()
            .to_string();
        assert!(err.contains("workload") && err.contains("load"), "{err}");
        let err = Workload::from_data(&json!({"workload": -1.0})).unwrap_err();
        assert_eq!(err, BadWorkload::Range(-1.0));
        let err = Workload::from_data(&json!({"workload": 0.1, "work": "nap"})).unwrap_err();
        assert!(err.to_string().contains("nap"), "{err}");
    }
}
