//! Fuzz target for every decoder of outside bytes: the frame decoder (through the iterator, the
//! batch reader, and the batch reader under a listener's intake limits and byte budget; it is
//! also the sender's `--variable-size` file reader, which reads `send --binary` files through
//! `FrameReader`), then each frame as a plumbline header, a vote and a nonce, and the whole input
//! as a stream of cluster control messages and of task pipeline messages (with the built-in task
//! descriptor read from every task), and as a clock exchange's request and reply datagram.
//! Seeds are in `corpus/frames/`.
//!
//! Run: `cargo install cargo-fuzz`, then `RUSTC_BOOTSTRAP=1 cargo fuzz run frames` in this
//! folder (cargo-fuzz needs nightly flags; RUSTC_BOOTSTRAP lets the stable toolchain take them).
//! CI builds it with plain `cargo build` so it never rots.

#![no_main]

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use plumbline_core::frame::{FrameCodec, FrameReader};
use plumbline_core::header::Header;
use plumbline_core::intake::{ByteBudget, IntakeLimits};
use plumbline_core::payload::{nonce_selector, Vote};
use plumbline_pipeline::wire::{Message, MessageReader};
use plumbline_transport::clock;
use plumbline_pipeline::Workload;
use plumbline_worker::node::wire::ControlReader;

fuzz_target!(|data: &[u8]| {
    let codec = FrameCodec::new(64 * 1024);
    let frames: Vec<Bytes> = FrameReader::new(data, codec).map_while(Result::ok).collect();
    let mut batched = Vec::new();
    let mut reader = FrameReader::new(data, codec);
    while let Ok(true) = reader.read_batch(&mut batched) {}
    assert_eq!(frames, batched, "the two read paths agree");
    let budget = Arc::new(ByteBudget::new(128 * 1024));
    let limits = IntakeLimits::new(Duration::from_secs(30), 0, budget.clone());
    let mut limited = FrameReader::new(data, codec).limited(&limits);
    let mut guarded = Vec::new();
    while let Ok(true) = limited.read_batch(&mut guarded) {}
    drop(limited);
    assert_eq!(frames, guarded, "the intake limits change no frame of a fast stream");
    for frame in frames {
        assert!(frame.len() <= 64 * 1024);
        if let Ok((_, payload)) = Header::read(&frame) {
            assert_eq!(payload.len() + plumbline_core::header::HEADER_LEN, frame.len());
        }
        let _ = Vote::decode(&frame);
        let _ = nonce_selector(&frame);
    }
    let mut control = ControlReader::new(data);
    while control.recv().is_ok() {}
    if let Some(t1) = clock::read_request(data) {
        assert_eq!(clock::request(t1)[..], data[..], "a request is its one encoding");
    }
    if let Some((t1, t2, t3)) = clock::read_reply(data) {
        assert_eq!(clock::reply(t1, t2, t3)[..], data[..], "a reply is its one encoding");
    }
    let mut pipeline = MessageReader::new(data);
    while let Ok(message) = pipeline.recv() {
        if let Message::Task { data, .. } = message {
            let _ = Workload::from_data(&data);
        }
    }
});
