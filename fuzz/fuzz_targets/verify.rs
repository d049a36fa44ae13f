//! JSON Lines `verify`: no panic, a stable verdict that keeps its own rules, and a
//! clean log that survives import then export.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| delegation_log::fuzzing::verify_jsonl(data));
