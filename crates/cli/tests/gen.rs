//! `plumbline gen` and `inspect`: the seed formats, byte for byte, and their bad inputs.

mod common;

use common::{assert_fails, plumbline, scratch, stderr, stdout};

/// The seed 002 script's file: struct.pack('>IsI', 5, letter, round) for rounds 1, 2 over a..z.
fn seed_fake_votes() -> Vec<u8> {
    let mut bytes = Vec::new();
    for round in 1u32..=2 {
        for letter in b'a'..=b'z' {
            bytes.extend_from_slice(&5u32.to_be_bytes());
            bytes.push(letter);
            bytes.extend_from_slice(&round.to_be_bytes());
        }
    }
    bytes
}

#[test]
fn gen_votes_writes_the_seed_file_exactly() {
    let path_dir = scratch("votes");
    let path = path_dir.join("fake_votes.msg");
    let out = plumbline(&["gen", "votes", "-o", path.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(bytes.len(), 468);
    assert_eq!(bytes, seed_fake_votes());
    let out = plumbline(&["inspect", path.to_str().unwrap(), "--format", "votes"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("52 frames"), "{}", stdout(&out));
    assert!(stdout(&out).contains("z=>3"), "{}", stdout(&out));
}

#[test]
fn gen_votes_hot_letter_is_all_a() {
    let path_dir = scratch("hot");
    let path = path_dir.join("hot.msg");
    let out = plumbline(&[
        "gen",
        "votes",
        "--letters",
        "a",
        "-o",
        path.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(bytes.len(), 468);
    assert!(bytes.chunks(9).all(|frame| frame[4] == b'a'));
}

#[test]
fn gen_nonces_matches_the_seed_sender_msg_size() {
    let path_dir = scratch("nonces");
    let path = path_dir.join("nonces.bin");
    let p = path.to_str().unwrap();
    let out = plumbline(&[
        "gen", "nonces", "--count", "1024", "--size", "1024", "--seed", "7", "-o", p,
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(
        bytes.len(),
        1024 * 1028,
        "1028-byte records, as --msg-size 1028"
    );
    for record in bytes.chunks(1028) {
        assert_eq!(&record[..4], &1024u32.to_be_bytes());
        let selector = u32::from_be_bytes(record[4..8].try_into().unwrap());
        assert!(selector < 60_000, "selector {selector} out of 0..60000");
    }
    // Same seed, same file.
    let again_dir = scratch("nonces-again");
    let again = again_dir.join("nonces.bin");
    plumbline(&[
        "gen",
        "nonces",
        "--count",
        "1024",
        "--seed",
        "7",
        "-o",
        again.to_str().unwrap(),
    ]);
    assert_eq!(std::fs::read(&again).unwrap(), bytes);
}

#[test]
fn gen_refuses_a_nonce_too_small_for_its_selector() {
    let path_dir = scratch("small");
    let path = path_dir.join("x.bin");
    let out = plumbline(&["gen", "nonces", "--size", "3", "-o", path.to_str().unwrap()]);
    assert_fails(&out, 1, "a nonce of 3 bytes is too small");
    assert!(!stderr(&out).contains("panicked"));
}

#[test]
fn inspect_names_the_offset_of_a_truncated_frame() {
    let dir = scratch("truncated");
    let path = dir.join("cut.msg");
    let mut bytes = seed_fake_votes();
    bytes.truncate(468 - 3);
    std::fs::write(&path, bytes).unwrap();
    let out = plumbline(&["inspect", path.to_str().unwrap(), "--format", "votes"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("byte offset 459"), "{err}");
    assert!(
        err.contains("announces 5 bytes but the stream ends after 2"),
        "{err}"
    );
}

#[test]
fn inspect_refuses_an_oversized_frame_without_allocating_it() {
    let path_dir = scratch("oversized");
    let path = path_dir.join("big.msg");
    let mut bytes = 9_000_000u32.to_be_bytes().to_vec();
    bytes.extend_from_slice(b"tiny");
    std::fs::write(&path, bytes).unwrap();
    let out = plumbline(&["inspect", path.to_str().unwrap()]);
    assert_fails(
        &out,
        1,
        "frame of 9000000 bytes exceeds the 8388608-byte limit",
    );
}

#[test]
fn gen_and_inspect_refuse_sizes_they_cannot_hold() {
    let path_dir = scratch("huge");
    let path = path_dir.join("x.bin");
    let p = path.to_str().unwrap();
    let out = plumbline(&["gen", "random", "--size", "100000000000", "-o", p]);
    assert_fails(&out, 1, "exceeds the");
    let out = plumbline(&["gen", "votes", "--rounds", "709490156681136601", "-o", p]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let out = plumbline(&["inspect", p, "--max-frame", "100000000000"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}

#[test]
fn inspect_counts_payloads_that_are_not_votes() {
    let path_dir = scratch("notvotes");
    let path = path_dir.join("n.bin");
    plumbline(&[
        "gen",
        "nonces",
        "--count",
        "3",
        "--size",
        "16",
        "-o",
        path.to_str().unwrap(),
    ]);
    let out = plumbline(&["inspect", path.to_str().unwrap(), "--format", "votes"]);
    assert_fails(&out, 1, "3 payloads are not Votes");
}
