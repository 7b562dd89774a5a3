//! `plumbline inspect`: decodes a framed file and summarizes it, so a user can check a file before
//! replaying it. Bad frames stop it with the byte offset; bad payloads are counted and named.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::BufReader;

use anyhow::{bail, Context, Result};
use plumbline_core::frame::{FrameCodec, FrameReader};
use plumbline_core::payload::{nonce_selector, Vote};

use crate::args::{Format, InspectArgs};

pub fn run(args: &InspectArgs) -> Result<()> {
    anyhow::ensure!(
        args.partitions > 0,
        "--partitions 0: need at least 1 partition"
    );
    let file =
        File::open(&args.file).with_context(|| format!("opening {}", args.file.display()))?;
    let codec = FrameCodec::new(args.max_frame as usize);
    let mut frames = 0u64;
    let mut bytes = 0u64;
    let mut totals: BTreeMap<String, u64> = BTreeMap::new();
    let mut bad_payloads = 0u64;
    let mut first_bad = None;
    for frame in FrameReader::new(BufReader::new(file), codec) {
        let frame = frame.with_context(|| format!("reading {}", args.file.display()))?;
        frames += 1;
        bytes += frame.len() as u64;
        let decoded = match args.format {
            Format::Votes => Vote::decode(&frame).map(|v| {
                *totals.entry(char::from(v.letter).to_string()).or_default() += u64::from(v.count);
                format!("{} {}", char::from(v.letter), v.count)
            }),
            Format::Nonces => nonce_selector(&frame).map(|s| {
                let partition = s % args.partitions;
                *totals.entry(format!("p{partition:02}")).or_default() += 1;
                format!("selector {s} partition {partition} ({} bytes)", frame.len())
            }),
            Format::Random => Ok(format!("{} bytes", frame.len())),
        };
        match decoded {
            Ok(line) if args.print => println!("{line}"),
            Ok(_) => {}
            Err(e) => {
                bad_payloads += 1;
                first_bad.get_or_insert(format!("frame {frames}: {e}"));
            }
        }
    }
    println!("{frames} frames, {bytes} payload bytes");
    if !totals.is_empty() {
        let what = if args.format == Format::Votes {
            "totals"
        } else {
            "items per partition"
        };
        let line: Vec<String> = totals.iter().map(|(k, v)| format!("{k}=>{v}")).collect();
        println!("{what}: {}", line.join(" "));
    }
    if let Some(first) = first_bad {
        bail!(
            "{bad_payloads} payloads are not {:?}: first at {first}",
            args.format
        );
    }
    Ok(())
}
