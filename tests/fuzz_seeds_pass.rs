//! Guards that every committed fuzz seed still passes its target's check, on
//! stable: stored bytes decode without panic and round-trip (`decode`), operation
//! scripts agree with the shared model (`ops`), and `verify`'s verdict is stable
//! and a clean log survives import then export (`verify`).
//!
//! Every file under `fuzz/corpus/<target>/` is decoded the way libFuzzer hands it
//! to the target (`arbitrary_take_rest` for structured targets) and run through
//! the same check as `fuzz/fuzz_targets/<target>.rs`, so the seeds and every
//! reduced crash added to them guard `cargo test` without nightly.
#![cfg(feature = "fuzzing")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::path::{Path, PathBuf};

use arbitrary::{Arbitrary, Unstructured};
use delegation_log::fuzzing::{self, Script};

fn corpus(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no seeds in {}", dir.display());
    files
        .into_iter()
        .map(|path| {
            let bytes = std::fs::read(&path).unwrap();
            (path, bytes)
        })
        .collect()
}

#[test]
fn every_decode_seed_decodes_without_panic_and_round_trips() {
    for (_path, bytes) in corpus("decode") {
        fuzzing::decode_record(&bytes);
    }
}

#[test]
fn every_ops_seed_runs_against_the_model() {
    for (path, bytes) in corpus("ops") {
        let Ok(script) = Script::arbitrary_take_rest(Unstructured::new(&bytes)) else {
            continue;
        };
        println!("{}: {script:?}", path.display());
        fuzzing::ops_with_crashes(script);
    }
}

#[test]
fn every_verify_seed_gets_a_stable_verdict_that_survives_import_and_export() {
    for (_path, bytes) in corpus("verify") {
        fuzzing::verify_jsonl(&bytes);
    }
}
