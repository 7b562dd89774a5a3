//! Fuzz target for every decoder of outside bytes: the frame decoder (through both the iterator
//! and the batch reader), then each frame as a plumbline header, a vote and a nonce, and the
//! whole input as a stream of cluster control messages and of task pipeline messages (with the
//! built-in task descriptor read from every task).
//!
//! Run: `cargo install cargo-fuzz`, then `RUSTC_BOOTSTRAP=1 cargo fuzz run frames` in this
//! folder (cargo-fuzz needs nightly flags; RUSTC_BOOTSTRAP lets the stable toolchain take them).
//! CI builds it with plain `cargo build` so it never rots.

#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use plumbline_core::frame::{FrameCodec, FrameReader};
use plumbline_core::header::Header;
use plumbline_core::payload::{nonce_selector, Vote};
use plumbline_pipeline::wire::{Message, MessageReader};
use plumbline_pipeline::Workload;
use plumbline_worker::node::wire::ControlReader;

fuzz_target!(|data: &[u8]| {
    let codec = FrameCodec::new(64 * 1024);
    let frames: Vec<Bytes> = FrameReader::new(data, codec).map_while(Result::ok).collect();
    let mut batched = Vec::new();
    let mut reader = FrameReader::new(data, codec);
    while let Ok(true) = reader.read_batch(&mut batched) {}
    assert_eq!(frames, batched, "the two read paths agree");
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
    let mut pipeline = MessageReader::new(data);
    while let Ok(message) = pipeline.recv() {
        if let Message::Task { data, .. } = message {
            let _ = Workload::from_data(&data);
        }
    }
});
