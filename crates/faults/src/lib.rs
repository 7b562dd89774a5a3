//! The fault suite's harness (issue 13), used only by `crates/cli/tests/faults.rs`: it sits
//! beside the real `plumbline` processes a scenario runs, never inside them.
//!
//! - [`ledger`]: a Jepsen total-queue checker over the ids a run attempted, had acknowledged
//!   and received, fed from the JSONL files the tools already write (a truncated last line, as a
//!   `kill -9` mid-write leaves, is tolerated and counted).
//! - [`nemesis`]: SIGKILL, SIGSTOP/SIGCONT and restart with the same argv, each fault
//!   timestamped so a failure can be matched to the fault that caused it.
//! - [`proxy`]: a TCP fault proxy whose drops, resets and delays follow a seed, so a failing run
//!   replays exactly.
//! - [`sampler`]: RSS, open file descriptors and CPU of a process from `/proc`, a few times a
//!   second, with peak and growth.
//! - [`row`]: the one JSON row each scenario appends to `target/test-artifacts/faults.jsonl`.
//!
//! It starts no servers (`plumbline-servers` does) and knows no plumbline protocol.

pub mod ledger;
pub mod nemesis;
pub mod proxy;
pub mod row;
pub mod sampler;

/// Now, in nanoseconds since the UNIX epoch: the clock the tools' own records use.
pub fn unix_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}
