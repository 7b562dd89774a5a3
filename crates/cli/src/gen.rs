//! `plumbline gen`: writes a workload as a framed file the seeds' tools (and `plumbline`) read.
//!
//! Only generation and framing; the formats themselves live in plumbline-core and -load.

use std::fs::File;
use std::io::{self, BufWriter, Write};

use anyhow::{Context, Result};
use plumbline_core::frame::FrameCodec;
use plumbline_core::payload::LETTERS;
use plumbline_load::{Generator, KeyDist, Workload};

use plumbline_core::Shutdown;

use crate::args::{Format, GenArgs};
use crate::bench::Verdict;

/// Writes the file; Ctrl-C stops after the frame being written, leaving a valid shorter file.
pub fn run(args: &GenArgs, shutdown: &Shutdown) -> Result<Verdict> {
    let keys: KeyDist = args.keys.parse().context("--keys")?;
    let (workload, default_count) = match args.format {
        Format::Nonces => (
            Workload::Nonces {
                size: args.size,
                partitions: args.partitions,
            },
            1024,
        ),
        Format::Votes => (
            Workload::votes(&args.letters)?,
            LETTERS as u64 * args.rounds,
        ),
        Format::Random => (
            Workload::Random {
                size: args.size,
                keys: args.partitions,
            },
            1024,
        ),
    };
    let count = args.count.unwrap_or(default_count);
    let messages = Generator::new(workload, keys, args.seed, count)?;
    let codec = FrameCodec::default();
    let to_stdout = args.output.as_os_str() == "-";
    let sink: Box<dyn Write> = if to_stdout {
        Box::new(io::stdout().lock())
    } else {
        Box::new(
            File::create(&args.output)
                .with_context(|| format!("creating {}", args.output.display()))?,
        )
    };
    let mut out = BufWriter::with_capacity(64 * 1024, sink);
    let mut bytes = 0u64;
    let mut frame = Vec::new();
    let mut written = 0u64;
    for message in messages.take_while(|_| !shutdown.requested()) {
        frame.clear();
        codec.encode_into(&message.payload, &mut frame)?;
        out.write_all(&frame)
            .with_context(|| format!("writing {}", args.output.display()))?;
        bytes += frame.len() as u64;
        written += 1;
    }
    out.flush()
        .with_context(|| format!("writing {}", args.output.display()))?;
    if !to_stdout {
        crate::logs::result(format_args!(
            "wrote {written} frames ({bytes} bytes) to {}",
            args.output.display()
        ));
    }
    Ok(Verdict::of(written < count, Vec::new()))
}
