//! Stored record and head decoding: no panic, and what decodes re-encodes to the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| delegation_log::fuzzing::decode_record(data));
