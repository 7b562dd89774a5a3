//! Benchmark: plumbline's open-loop sender and receiver against a plain buffered-write loop,
//! 1 KiB frames over one loopback TCP connection, measured in the same run.
//!
//! `cargo bench -p plumbline --bench send_vs_raw [-- FRAMES]` prints frames/s of
//! 1. raw: a `BufWriter` (64 KiB) writing length-prefixed 1 KiB frames to a reader that only
//!    drains the socket (the ceiling of the machine's loopback);
//! 2. plumbline: `send --gen nonces --rate max` framing (header with seq and intended time) into
//!    `receive` (decoding every frame, latency and sequence accounting);
//!
//! and the ratio 2 ÷ 1. Issue 3's goal: at least 0.60.

use std::io::{BufWriter, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use plumbline_core::Shutdown;
use plumbline_load::sender::{send, Framing, Payloads, SendPlan};
use plumbline_load::{KeyDist, Shape, Workload};
use plumbline_worker::receiver::{Framing as ReceiveFraming, Receiver, ReceiverConfig};

const PAYLOAD: usize = 1024;

fn main() {
    let frames: u64 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(3_000_000);
    // Alternate the two, three rounds each, and compare medians: the first run of a process
    // and a busy neighbour both skew single runs on a 2-core VM.
    let (mut raw, mut ours) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        raw.push(raw_loop(frames));
        ours.push(plumbline(frames));
    }
    let (raw, ours) = (median(raw), median(ours));
    println!(
        "1 KiB frames, one loopback connection, {frames} frames a run, median of {ROUNDS} runs"
    );
    println!("raw buffered-write loop -> draining reader: {raw:>10.0} frames/s");
    println!("plumbline send -> plumbline receive:       {ours:>10.0} frames/s");
    println!(
        "ratio plumbline / raw: {:.2} (goal: at least 0.60)",
        ours / raw
    );
}

const ROUNDS: usize = 3;

fn median(mut runs: Vec<f64>) -> f64 {
    runs.sort_by(f64::total_cmp);
    runs[runs.len() / 2]
}

/// A listener on a free loopback port and a connected client.
fn pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (server, _) = listener.accept().unwrap();
    (client, server)
}

fn raw_loop(frames: u64) -> f64 {
    let (client, mut server) = pair();
    let reader = std::thread::spawn(move || {
        let mut buf = vec![0u8; 256 * 1024];
        let mut total = 0u64;
        loop {
            match server.read(&mut buf) {
                Ok(0) | Err(_) => return total,
                Ok(n) => total += n as u64,
            }
        }
    });
    let payload = vec![7u8; PAYLOAD];
    let start = Instant::now();
    let mut out = BufWriter::with_capacity(64 * 1024, client);
    for _ in 0..frames {
        out.write_all(&(PAYLOAD as u32).to_be_bytes()).unwrap();
        out.write_all(&payload).unwrap();
    }
    drop(out);
    let bytes = reader.join().unwrap();
    assert_eq!(bytes, frames * (4 + PAYLOAD as u64));
    frames as f64 / start.elapsed().as_secs_f64()
}

fn plumbline(frames: u64) -> f64 {
    let (client, server) = pair();
    let receiver = Receiver::new(ReceiverConfig {
        framing: ReceiveFraming::Auto,
        max_frame: 8 * 1024 * 1024,
        print: false,
        throttle: None,
        track_results: false,
        continuity: false,
        max_connections: 1,
        intake: None,
        clock_offset_ns: 0,
    });
    let plan = SendPlan {
        shape: Shape::Max,
        payloads: Payloads::Generated {
            workload: Workload::Nonces {
                size: PAYLOAD,
                partitions: 60,
            },
            keys: KeyDist::Uniform,
            seed: 7,
        },
        framing: Framing::Plumbline { source: 1 },
        messages: Some(frames),
        duration: None,
        late_after: Duration::from_millis(1),
        share: plumbline_load::Share::WHOLE,
        start_at_unix_ns: None,
        clock_offset_ns: 0,
    };
    let start = Instant::now();
    std::thread::scope(|scope| {
        scope.spawn(|| receiver.serve(server, "bench"));
        let (_, errors) = send(
            &plan,
            vec![client],
            &Shutdown::new(),
            &plumbline_measure::Live::new(),
        );
        assert!(errors.is_empty(), "{errors:?}");
    });
    let elapsed = start.elapsed();
    let summary = receiver.summary(Some(frames));
    assert_eq!(summary.frames, frames);
    assert_eq!(summary.sequence.lost, 0);
    frames as f64 / elapsed.as_secs_f64()
}
