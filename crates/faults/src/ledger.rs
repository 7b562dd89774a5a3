//! The checker every scenario ends with, in the manner of Jepsen's total-queue: from the ids a
//! run attempted, the ids whose send was acknowledged and every id received (with repeats), it
//! says what was lost, duplicated, unexpected or recovered. Valid only after a full drain; it
//! does not decide when a run is drained, and it reads files but runs nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde::Serialize;
use serde_json::Value;

/// The three sets a run produces. `received` keeps every delivery, so repeats count.
#[derive(Debug, Default, Clone)]
pub struct Ledger {
    attempted: BTreeSet<u64>,
    acknowledged: BTreeSet<u64>,
    received: BTreeMap<u64, u32>,
}

/// What the checker found. Only `lost` and `unexpected` make a run invalid; the rest is
/// reported because at-least-once delivery is allowed to repeat.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    /// Acknowledged, never received.
    pub lost: u64,
    /// Deliveries beyond the first, over all ids.
    pub duplicated: u64,
    /// Received, never attempted: something made it up.
    pub unexpected: u64,
    /// Attempted without an acknowledgement, yet received (Jepsen's indeterminate sends).
    pub recovered: u64,
    /// Acknowledged and received.
    pub ok: u64,
    /// The most deliveries of one id (0 when nothing arrived).
    pub max_deliveries: u32,
    /// Up to [`SAMPLE`] of the lost ids, lowest first, for the failure message.
    pub lost_ids: Vec<u64>,
}

/// How many lost ids a [`Check`] names.
pub const SAMPLE: usize = 10;

impl Check {
    /// Nothing acknowledged went missing and nothing arrived that was never sent.
    pub fn valid(&self) -> bool {
        self.lost == 0 && self.unexpected == 0
    }
}

impl Ledger {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn attempt(&mut self, id: u64) {
        self.attempted.insert(id);
    }

    /// An acknowledged send was also attempted.
    pub fn acknowledge(&mut self, id: u64) {
        self.attempted.insert(id);
        self.acknowledged.insert(id);
    }

    pub fn receive(&mut self, id: u64) {
        *self.received.entry(id).or_default() += 1;
    }

    /// Every id in `ids` attempted and acknowledged: a source whose sends all succeed (a task
    /// list the distributor issued).
    pub fn acknowledged_all(mut self, ids: impl IntoIterator<Item = u64>) -> Self {
        ids.into_iter().for_each(|id| self.acknowledge(id));
        self
    }

    pub fn received_all(mut self, ids: impl IntoIterator<Item = u64>) -> Self {
        ids.into_iter().for_each(|id| self.receive(id));
        self
    }

    pub fn check(&self) -> Check {
        let mut check = Check::default();
        for &id in &self.acknowledged {
            if self.received.contains_key(&id) {
                check.ok += 1;
            } else {
                check.lost += 1;
                if check.lost_ids.len() < SAMPLE {
                    check.lost_ids.push(id);
                }
            }
        }
        for (id, &times) in &self.received {
            check.duplicated += u64::from(times - 1);
            check.max_deliveries = check.max_deliveries.max(times);
            if !self.attempted.contains(id) {
                check.unexpected += 1;
            } else if !self.acknowledged.contains(id) {
                check.recovered += 1;
            }
        }
        check
    }
}

/// The complete records of a line-oriented log, and whether its last line was cut short.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Jsonl {
    pub rows: Vec<Value>,
    /// The file ended inside a record (no final newline, and not valid JSON): a writer killed
    /// mid-write. That record is not in `rows`.
    pub truncated_tail: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} line {line}: not JSON ({source}): {text:?}")]
    Malformed {
        path: String,
        line: usize,
        text: String,
        source: serde_json::Error,
    },
    #[error("{path} line {line}: no unsigned integer field {field:?}")]
    NoId {
        path: String,
        line: usize,
        field: String,
    },
}

impl Jsonl {
    /// Parses JSONL text. A bad line anywhere but an unterminated last one is an error naming
    /// it: only a kill can cut a line, and only the last.
    pub fn parse(text: &str, path: &str) -> Result<Self, LedgerError> {
        let mut out = Jsonl::default();
        let ends_cleanly = text.is_empty() || text.ends_with('\n');
        let lines: Vec<&str> = text.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            match serde_json::from_str(line) {
                Ok(row) => out.rows.push(row),
                Err(_) if i + 1 == lines.len() && !ends_cleanly => out.truncated_tail = true,
                Err(source) => {
                    return Err(LedgerError::Malformed {
                        path: path.to_string(),
                        line: i + 1,
                        text: line.chars().take(80).collect(),
                        source,
                    })
                }
            }
        }
        Ok(out)
    }

    /// Reads a JSONL file; a file not yet created is empty (a role killed before its first
    /// write).
    pub fn read(path: &Path) -> Result<Self, LedgerError> {
        match std::fs::read_to_string(path) {
            Ok(text) => Self::parse(&text, &path.display().to_string()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(source) => Err(LedgerError::Read {
                path: path.display().to_string(),
                source,
            }),
        }
    }

    /// The unsigned integer `field` of every row (the collector's `id`), in file order.
    pub fn ids(&self, field: &str) -> Result<Vec<u64>, LedgerError> {
        self.rows
            .iter()
            .enumerate()
            .map(|(i, row)| {
                row.get(field)
                    .and_then(Value::as_u64)
                    .ok_or_else(|| LedgerError::NoId {
                        path: String::new(),
                        line: i + 1,
                        field: field.to_string(),
                    })
            })
            .collect()
    }
}

/// The ids in plain text lines such as `receive --print` writes, one record a line, by
/// `parse`; an unterminated last line is left out (cut by a kill), as in [`Jsonl::parse`].
pub fn line_ids(text: &str, parse: impl Fn(&str) -> Option<u64>) -> Vec<u64> {
    let complete = match text.rfind('\n') {
        Some(end) => &text[..end],
        None => "",
    };
    complete.lines().filter_map(parse).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_clean_drain_is_valid_with_nothing_to_report() {
        let check = Ledger::new()
            .acknowledged_all(0..100)
            .received_all(0..100)
            .check();
        assert!(check.valid());
        assert_eq!(check.ok, 100);
        assert_eq!(
            (check.lost, check.duplicated, check.max_deliveries),
            (0, 0, 1)
        );
    }

    #[test]
    fn an_acknowledged_id_never_received_is_lost_and_named() {
        let check = Ledger::new()
            .acknowledged_all(0..5)
            .received_all([0, 1, 3])
            .check();
        assert!(!check.valid());
        assert_eq!(check.lost, 2);
        assert_eq!(check.lost_ids, vec![2, 4]);
    }

    #[test]
    fn repeats_are_duplicates_and_unsent_ids_are_unexpected() {
        let mut ledger = Ledger::new().acknowledged_all(0..3);
        ledger.attempt(7);
        let check = ledger.received_all([0, 1, 1, 1, 2, 7, 99]).check();
        assert_eq!(check.duplicated, 2);
        assert_eq!(check.max_deliveries, 3);
        assert_eq!(check.unexpected, 1);
        assert_eq!(check.recovered, 1, "7 was attempted, not acknowledged");
        assert!(!check.valid());
    }

    #[test]
    fn an_unacknowledged_attempt_that_never_arrives_is_not_lost() {
        let mut ledger = Ledger::new();
        ledger.attempt(1);
        assert!(ledger.check().valid());
    }

    #[test]
    fn a_truncated_last_line_is_tolerated_and_flagged() {
        let text = "{\"id\":1}\n{\"id\":2}\n{\"id\":";
        let log = Jsonl::parse(text, "r.jsonl").unwrap();
        assert_eq!(log.ids("id").unwrap(), vec![1, 2]);
        assert!(log.truncated_tail);
        let whole = Jsonl::parse("{\"id\":1}\n", "r.jsonl").unwrap();
        assert!(!whole.truncated_tail);
    }

    #[test]
    fn a_bad_line_before_the_end_is_an_error_naming_it() {
        let err = Jsonl::parse("{\"id\":1}\n{oops\n{\"id\":3}\n", "r.jsonl").unwrap_err();
        assert!(err.to_string().contains("r.jsonl line 2"), "{err}");
        let err = Jsonl::parse("{\"id\":1}\n{oops\n", "r.jsonl").unwrap_err();
        assert!(
            err.to_string().contains("line 2"),
            "a terminated line was written whole"
        );
    }

    #[test]
    fn a_row_without_the_id_field_is_named() {
        let log = Jsonl::parse("{\"id\":1}\n{\"x\":2}\n", "r").unwrap();
        assert!(log.ids("id").unwrap_err().to_string().contains("line 2"));
    }

    #[test]
    fn a_missing_file_is_an_empty_log() {
        let log = Jsonl::read(Path::new("/nonexistent/plumbline/results.jsonl")).unwrap();
        assert!(log.rows.is_empty());
    }

    #[test]
    fn print_lines_drop_an_unterminated_tail() {
        let ids = line_ids("a 1\na 2\na 3", |l| l.split(' ').nth(1)?.parse().ok());
        assert_eq!(ids, vec![1, 2]);
    }

    proptest! {
        /// Whatever was delivered, the counts partition the deliveries: every received id is
        /// ok, recovered or unexpected once, and the rest of the deliveries are duplicates.
        #[test]
        fn counts_account_for_every_delivery(
            acked in proptest::collection::btree_set(0u64..50, 0..50),
            deliveries in proptest::collection::vec(0u64..60, 0..200),
        ) {
            let check = Ledger::new()
                .acknowledged_all(acked.iter().copied())
                .received_all(deliveries.iter().copied())
                .check();
            let distinct: BTreeSet<u64> = deliveries.iter().copied().collect();
            prop_assert_eq!(check.ok + check.recovered + check.unexpected, distinct.len() as u64);
            prop_assert_eq!(check.duplicated + distinct.len() as u64, deliveries.len() as u64);
            prop_assert_eq!(check.ok + check.lost, acked.len() as u64);
        }

        /// Cutting a JSONL file anywhere loses at most the record being written.
        #[test]
        fn a_cut_anywhere_keeps_every_complete_record(n in 1u64..20, cut in 0usize..400) {
            let text: String = (0..n).map(|i| format!("{{\"id\":{i}}}\n")).collect();
            let cut = cut.min(text.len());
            let log = Jsonl::parse(&text[..cut], "r").unwrap();
            let whole = text[..cut].matches('\n').count() as u64;
            let ids = log.ids("id").unwrap();
            prop_assert!(ids.len() as u64 >= whole && ids.len() as u64 <= whole + 1);
            let n = ids.len() as u64;
            prop_assert_eq!(ids, (0..n).collect::<Vec<_>>());
        }
    }
}
