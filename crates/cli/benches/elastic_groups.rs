//! Benchmark: what a broker consumer group pays when members leave under load (issue 15),
//! measured in one run on real brokers (redis-server, nats-server with JetStream, tansu) and
//! real `plumbline worker --in URL` member processes.
//!
//! `cargo bench -p plumbline --features kafka --bench elastic_groups` runs `plumbline elastic`
//! at 150/s of 10 ms items (75 % of two members' capacity) on each broker twice:
//! 1. **shrink**: 4 members, 2 of them stopped gracefully (SIGTERM) 2 s in;
//! 2. **kill**: 4 members, 1 of them killed (SIGKILL, as a crash) 2 s in;
//!
//! and prints each change's pause, lag peak and recovery, beside the drain time the members
//! left need for that peak with their spare capacity (`peak ÷ (members × 100/s − 150/s)`):
//! recovery ÷ drain is what the broker's handover adds on top of the backlog itself. It also
//! prints the items lost and duplicated. It exits 1 when a graceful leave lost an item, the
//! one outcome no broker here may have; a kill's loss is reported (tansu 0.6 may never hand a
//! killed member's partitions over: it expires members only on a missed heartbeat seen in a
//! later join). A broker whose server is not installed is skipped with a line saying so.

use std::process::{Command, ExitCode};

use plumbline_servers::{Kind, Server};
use serde_json::Value;

const PLUMBLINE: &str = env!("CARGO_BIN_EXE_plumbline");
/// Items per second offered, and what one member finishes per second (10 ms items).
const RATE: f64 = 150.0;
const PER_MEMBER: f64 = 100.0;

/// One shrink of the group: its schedule and how members leave.
struct Case {
    name: &'static str,
    workers: &'static str,
    leave: &'static str,
}

const CASES: [Case; 2] = [
    Case {
        name: "shrink 4 -> 2",
        workers: "4@0s,2@2s",
        leave: "graceful",
    },
    Case {
        name: "kill 1 of 4",
        workers: "4@0s,3@2s",
        leave: "kill",
    },
];

fn main() -> ExitCode {
    println!(
        "{:<10} {:<14} {:>7} {:>9} {:>10} {:>9} {:>12} {:>5} {:>5}",
        "broker", "change", "pause", "lag peak", "recovered", "drain", "rec ÷ drain", "lost", "dup"
    );
    let mut ok = true;
    for (label, kind) in [
        ("redis", Kind::Redis),
        ("jetstream", Kind::NatsJetStream),
        ("kafka", Kind::Kafka),
    ] {
        let server = match Server::start(kind) {
            Ok(server) => server,
            Err(e) => {
                println!("{label:<10} skipped: {e}");
                continue;
            }
        };
        for (n, case) in CASES.iter().enumerate() {
            let cluster = match kind {
                Kind::Redis => format!("redis://{}/shrink{n}", server.addr),
                Kind::NatsJetStream => format!("nats://{}/shrink{n}?jetstream=1", server.addr),
                _ => format!("kafka://{}/shrink{n}", server.addr),
            };
            match run(&cluster, case) {
                Ok(run) => ok &= print(label, case, &run),
                Err(e) => {
                    println!("{label:<10} {:<14} failed: {e}", case.name);
                    ok = false;
                }
            }
        }
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Runs one case; the run of its record (written even when the run found a loss).
fn run(cluster: &str, case: &Case) -> Result<Value, String> {
    let dir = std::env::temp_dir().join(format!("plumbline-elastic-groups-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let json = dir.join("run.json");
    let _ = std::fs::remove_file(&json);
    let output = Command::new(PLUMBLINE)
        .args(["elastic", "--cluster", cluster, "--delay", "10ms", "--rate"])
        .arg(format!("{RATE}/s"))
        .args(["--workers", case.workers, "--leave", case.leave])
        .args(["--duration", "16s", "--no-report", "--quiet", "--json"])
        .arg(&json)
        .output()
        .map_err(|e| format!("starting {PLUMBLINE}: {e}"))?;
    let text = std::fs::read_to_string(&json).map_err(|_| {
        format!(
            "no run record ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        )
    })?;
    let record: Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
    Ok(record["runs"][0].clone())
}

/// Prints one case's row; false when a graceful leave lost items.
fn print(label: &str, case: &Case, run: &Value) -> bool {
    let change = &run["elastic"]["changes"][0];
    let to = change["to"].as_f64().unwrap_or(0.0);
    let peak = change["lag_peak"].as_f64().unwrap_or(f64::NAN);
    let drain = peak / (to * PER_MEMBER - RATE);
    let recovered = change["recovered_s"].as_f64();
    let lost = run["lost"].as_u64().unwrap_or(u64::MAX);
    println!(
        "{label:<10} {:<14} {:>6.3}s {:>9.0} {:>10} {:>8.2}s {:>12} {:>5} {:>5}",
        case.name,
        change["pause_s"].as_f64().unwrap_or(f64::NAN),
        peak,
        recovered.map_or("never".into(), |s| format!("{s:.2}s")),
        drain,
        match recovered {
            // A peak the spare capacity drains in a sample or two has no ratio worth printing.
            Some(s) if drain >= 0.1 => format!("{:.2}", s / drain),
            _ => "-".into(),
        },
        lost,
        run["duplicates"].as_u64().unwrap_or(u64::MAX),
    );
    case.leave != "graceful" || lost == 0
}
