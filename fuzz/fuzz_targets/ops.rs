//! Operation sequences with crashes, torn writes and failures on the
//! fault-injecting store, checked against a model.
#![no_main]

use delegation_log::fuzzing::{Script, ops_with_crashes};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|script: Script| ops_with_crashes(script));
