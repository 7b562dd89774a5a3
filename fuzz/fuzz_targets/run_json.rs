//! Fuzz target for the report decoder: `run.json` and run records (`bench --json`, schema
//! `plumbline.run/2`) come from files a user passes to `plumbline report` and `compare`, so any
//! bytes must give a document or an error, never a panic; a document that decodes must survive
//! a re-encode (what `report` writes back).
//!
//! Run: `RUSTC_BOOTSTRAP=1 cargo fuzz run run_json` in this folder (see frames.rs).

#![no_main]

use libfuzzer_sys::fuzz_target;
use plumbline_report::RunDoc;

fuzz_target!(|data: &[u8]| {
    if let Ok(doc) = RunDoc::parse(data) {
        let again = RunDoc::parse(doc.to_json().as_bytes()).expect("what we write, we read");
        assert_eq!(again.runs.len(), doc.runs.len());
    }
});
