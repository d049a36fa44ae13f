//! The bytes the chain hashes: a record's canonical JSON (RFC 8785), which the
//! crate writes directly for speed, is exactly what a generic JCS canonicalizer
//! (serde_json_canonicalizer) writes for the record without its hash, for any
//! record. RFC 8785's own vectors are checked beside the writer, in
//! `src/event/canonical.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod record_strategies;

use delegation_log::Record;
use proptest::test_runner::{Config, FileFailurePersistence};
use record_strategies::record;

proptest::proptest! {
    #![proptest_config(Config {
        cases: 512,
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(
            "proptest-regressions/event-canonical-bytes.txt",
        ))),
        ..Config::default()
    })]

    #[test]
    fn canonical_bytes_are_what_a_generic_jcs_canonicalizer_writes(record in record()) {
        let unhashed = Record { hash: None, ..record.clone() };
        let direct = String::from_utf8(record.canonical_bytes());
        let generic = String::from_utf8(serde_json_canonicalizer::to_vec(&unhashed).unwrap());
        proptest::prop_assert_eq!(direct, generic);
    }
}
