//! Guards the loss sled can hide: damage to its files can make whole delegations,
//! records and heads together, vanish without an error, which no chain or head can
//! see. The sled store keeps a count of acknowledged records outside sled's files;
//! an audit that finds fewer records than that reports the loss, and a damaged
//! count is a typed error, never a silent reset.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod store_support;
mod support;

use std::path::Path;

use delegation_log::audit::{Kind, audit_path};
use delegation_log::ledger::Options;
use delegation_log::store::key;
use delegation_log::store::sled::ACKED_FILE;
use delegation_log::{Error, Event, Ledger, ManualClock};
use support::numbered as id;

/// Ten delegations, each queued then delivered: twenty acknowledged records.
fn write_store(path: &Path) {
    let ledger = Ledger::open_with(path, Options::new().clock(ManualClock::default())).unwrap();
    for n in 0..10 {
        ledger.record(&id(n), Event::queued("s", "t")).unwrap();
        ledger
            .record(&id(n), Event::delivered(Some(200)).unwrap())
            .unwrap();
    }
}

#[test]
fn a_store_that_lost_nothing_audits_clean_against_its_count() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log");
    write_store(&path);
    let verdict = audit_path(&path, &ManualClock::default()).unwrap();
    assert!(verdict.is_clean(), "{}", verdict.to_plain());
    assert_eq!(verdict.records, 20);
}

#[test]
fn whole_delegations_vanishing_from_sled_are_reported_as_lost_records() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log");
    write_store(&path);
    {
        // What damage to sled's files did in the sweeps: records and heads of
        // whole delegations gone, everything else intact and consistent.
        let db = support::raw_sled(&path);
        let delegations = db.open_tree("delegations").unwrap();
        for n in [3, 7] {
            delegations.remove(key::prefix(&id(n))).unwrap();
        }
        db.flush().unwrap();
    }
    let verdict = audit_path(&path, &ManualClock::default()).unwrap();
    assert!(!verdict.is_clean());
    assert_eq!(verdict.records, 16);
    let [finding] = verdict.violations.as_slice() else {
        panic!("one finding expected: {}", verdict.to_plain());
    };
    assert_eq!(finding.kind, Kind::Sequence);
    assert_eq!(finding.delegation, None);
    assert!(
        finding.message.contains("at least 4 records were lost"),
        "{}",
        finding.message
    );
    insta::assert_snapshot!(verdict.to_plain());
}

#[test]
fn a_damaged_count_is_a_typed_error_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log");
    write_store(&path);
    let file = path.join(ACKED_FILE);
    let mut bytes = std::fs::read(&file).unwrap();
    bytes[3] ^= 0x10;
    std::fs::write(&file, &bytes).unwrap();
    match Ledger::open(&path) {
        Err(Error::Corrupt { key, reason }) => {
            assert!(key.ends_with(ACKED_FILE), "{key}");
            assert_eq!(reason, "checksum mismatch");
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
}

#[test]
fn the_count_covers_every_record_once_the_store_is_closed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log");
    write_store(&path);
    let store = delegation_log::store::Sled::open(&path).unwrap();
    assert_eq!(store.acknowledged_at_open(), 20);
}
