//! Compatibility: stores and records written in every format version stay
//! readable, and a store of format 1 or 2 migrates to format 3 without changing
//! a record.
//!
//! `tests/fixtures/v1/` is a committed sled store written by
//! `examples/make_fixture.rs` in format version 1, and `tests/fixtures/v1-answers/`
//! one written after the agent's answer (`rpc_code`, `remote`) joined the format;
//! `tests/fixtures/v2/` is a store of format 2 (one tree, a key per record and
//! per head), `tests/fixtures/v3/` the same delegations in format 3 (one key
//! per delegation), and `tests/fixtures/v4/` in format 4 (format 3 and its index
//! of open, dead and retried delegations). Formats 1 to 3 are migration
//! fixtures: they read, refuse writes, and migrate. Every later version of this
//! crate must open it and read exactly the statuses and histories pinned here. The
//! encoded bytes of one record of each kind are pinned too, in version 1 and in
//! version 2, and those of a head of each state, so that an accidental change of
//! the stored encoding fails loudly; an intended one needs a new format version, a
//! new fixture directory, and an upcast of the old one.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod audit_support;
mod support;

use std::path::Path;

use audit_support::copy_dir;
use delegation_log::delegation::Fold;
use delegation_log::event::{Delivered, Failed, Queued, Remote, RemoteKind, TaskState};
use delegation_log::{ChainHash, Event, FailureReason, Ledger, Record, Timestamp, envelope};

/// Opens a private copy, since sled may rewrite files when it opens them.
fn open_fixture(version: &str) -> (tempfile::TempDir, Ledger) {
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join(version);
    copy_dir(
        &Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(version),
        &copy,
    );
    let ledger = Ledger::open(&copy).unwrap();
    (dir, ledger)
}

#[test]
fn the_v1_fixture_store_opens_with_its_exact_statuses_and_histories() {
    let (_dir, ledger) = open_fixture("v1");
    let delegations: Vec<_> = ledger.replay().map(Result::unwrap).collect();
    assert_eq!(delegations.len(), 11);
    let statuses: Vec<_> = delegations.iter().map(|d| d.status()).collect();
    insta::assert_json_snapshot!("v1_statuses", statuses);
    let histories: Vec<Vec<Record>> = delegations
        .iter()
        .map(|d| ledger.history(&d.id).unwrap())
        .collect();
    insta::assert_json_snapshot!("v1_histories", histories);
    for delegation in &delegations {
        assert_eq!(ledger.status(&delegation.id).unwrap(), delegation.status());
    }
    assert!(ledger.queued().unwrap().len() == 1);
}

#[test]
fn the_v1_fixture_with_agent_answers_opens_with_its_exact_statuses_and_histories() {
    let (_dir, ledger) = open_fixture("v1-answers");
    let delegations: Vec<_> = ledger.replay().map(Result::unwrap).collect();
    assert_eq!(delegations.len(), 18);
    let statuses: Vec<_> = delegations.iter().map(|d| d.status()).collect();
    insta::assert_json_snapshot!("v1_answers_statuses", statuses);
    let histories: Vec<Vec<Record>> = delegations
        .iter()
        .map(|d| ledger.history(&d.id).unwrap())
        .collect();
    insta::assert_json_snapshot!("v1_answers_histories", histories);
    for delegation in &delegations {
        assert_eq!(ledger.status(&delegation.id).unwrap(), delegation.status());
    }
    let verdict = ledger.audit().unwrap();
    assert!(verdict.is_clean(), "{}", verdict.to_plain());
}

/// The store format of the fixture `version`, opened on its own copy.
fn store_format(version: &str) -> u8 {
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join(version);
    copy_dir(
        &Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(version),
        &copy,
    );
    delegation_log::store::Sled::open(&copy)
        .unwrap()
        .store_format()
}

#[test]
fn the_v2_v3_and_v4_fixture_stores_open_with_the_exact_statuses_and_histories_of_v2() {
    for (version, format) in [("v2", 2u8), ("v3", 3), ("v4", 4)] {
        assert_eq!(store_format(version), format);
        the_fixture_opens_with_the_v2_statuses_and_histories(version);
    }
}

fn the_fixture_opens_with_the_v2_statuses_and_histories(version: &str) {
    let (_dir, ledger) = open_fixture(version);
    assert_eq!(ledger.store().format(), 2);
    let delegations: Vec<_> = ledger.replay().map(Result::unwrap).collect();
    assert_eq!(delegations.len(), 20);
    let statuses: Vec<_> = delegations.iter().map(|d| d.status()).collect();
    insta::assert_json_snapshot!("v2_statuses", statuses);
    let histories: Vec<Vec<Record>> = delegations
        .iter()
        .map(|d| ledger.history(&d.id).unwrap())
        .collect();
    insta::assert_json_snapshot!("v2_histories", histories);
    for delegation in &delegations {
        assert_eq!(ledger.status(&delegation.id).unwrap(), delegation.status());
    }
    let verdict = ledger.audit().unwrap();
    assert!(verdict.is_clean(), "{}", verdict.to_plain());
    index_answers_as_a_scan(&ledger, version);
}

/// `pending` and `dead` (from the index in format 4, from a scan before it)
/// list exactly what a replay of the log says is queued, and failed and not
/// retried.
fn index_answers_as_a_scan(ledger: &Ledger, version: &str) {
    let delegations: Vec<_> = ledger.replay().map(Result::unwrap).collect();
    let mut queued: Vec<_> = ledger.queued().unwrap().into_iter().map(|d| d.id).collect();
    let mut pending: Vec<_> = ledger
        .pending(None)
        .unwrap()
        .into_iter()
        .map(|p| p.id)
        .collect();
    queued.sort();
    pending.sort();
    assert_eq!(pending, queued, "{version}");
    let retried: Vec<_> = delegations
        .iter()
        .filter_map(|d| d.retry_of.clone())
        .collect();
    let mut failed: Vec<_> = delegations
        .iter()
        .filter(|d| d.state == delegation_log::lifecycle::State::Failed && !retried.contains(&d.id))
        .map(|d| d.id.clone())
        .collect();
    let mut dead: Vec<_> = ledger.dead().unwrap().into_iter().map(|d| d.last).collect();
    failed.sort();
    dead.sort();
    assert_eq!(dead, failed, "{version}");
    assert!(!dead.is_empty() && !pending.is_empty(), "{version}");
}

/// Each v1 fixture, and the v2 and v3 ones: writes are refused until migration;
/// migration keeps every record (the export, the portable form, is byte for byte
/// the same), every status, and a clean audit; then the store is in format 4,
/// answers `pending` and `dead` from its index as a scan does, takes writes,
/// and a second migration finds nothing to do.
#[test]
fn each_v1_v2_and_v3_fixture_refuses_writes_then_migrates_to_the_same_export() {
    for (version, format) in [("v1", 1u8), ("v1-answers", 1), ("v2", 2), ("v3", 3)] {
        assert_eq!(store_format(version), format);
        let (dir, ledger) = open_fixture(version);
        let mut before = Vec::new();
        ledger.export(&mut before).unwrap();
        let statuses: Vec<_> = ledger.replay().map(|d| d.unwrap().status()).collect();
        let pending = ledger.queued().unwrap();
        let write = ledger.record(&pending[0].id, Event::delivered(None).unwrap());
        assert!(
            matches!(
                write,
                Err(delegation_log::Error::NeedsMigration { found, .. }) if found == format
            ),
            "{version}: {write:?}"
        );
        drop(ledger);

        let path = dir.path().join(version);
        let migration = delegation_log::migrate(&path).unwrap();
        assert_eq!(migration.delegations as usize, statuses.len(), "{version}");
        let ledger = Ledger::open(&path).unwrap();
        assert_eq!(ledger.store().format(), 2);
        let mut after = Vec::new();
        ledger.export(&mut after).unwrap();
        assert_eq!(after, before, "{version}: migration changed the export");
        let migrated: Vec<_> = ledger.replay().map(|d| d.unwrap().status()).collect();
        assert_eq!(migrated, statuses, "{version}");
        for status in &statuses {
            assert_eq!(&ledger.status(&status.id).unwrap(), status);
        }
        assert!(ledger.audit().unwrap().is_clean());
        assert!(ledger.store().index().is_some(), "{version}");
        index_answers_as_a_scan(&ledger, version);
        ledger
            .record(&pending[0].id, Event::delivered(None).unwrap())
            .unwrap();
        drop(ledger);
        let store = delegation_log::store::Sled::open(&path).unwrap();
        assert_eq!(store.store_format(), 4, "{version}");
        drop(store);
        assert!(delegation_log::migrate(&path).unwrap().already_current);
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn sealed(delegation: &str, seq: u64, event: Event) -> Record {
    let mut record = Record {
        delegation: delegation.parse().unwrap(),
        seq,
        event,
        at: "2026-06-07T01:32:07.250Z".parse::<Timestamp>().unwrap(),
        hash: None,
    };
    record.hash = Some(record.chain_hash(&ChainHash::GENESIS));
    record
}

/// One record of each kind, with and without each optional field.
fn pinned_records() -> [Record; 8] {
    [
        sealed(
            "pin",
            1,
            Event::Queued(Queued {
                source: "planner".into(),
                target: "reviewer".into(),
                task: Some(serde_json::json!({"review": "pr-42"})),
                retry_of: None,
                attempt: None,
                not_before: None,
            }),
        ),
        sealed("pin", 1, Event::queued("planner", "reviewer")),
        sealed(
            "pin",
            2,
            Event::Delivered(Delivered {
                http_status: Some(200),
                remote: None,
            }),
        ),
        sealed(
            "pin",
            2,
            Event::Delivered(Delivered {
                http_status: None,
                remote: None,
            }),
        ),
        sealed(
            "pin",
            2,
            Event::Delivered(Delivered {
                http_status: Some(200),
                remote: Some(Remote {
                    kind: RemoteKind::Task,
                    task_id: Some("t-1".into()),
                    context_id: Some("c-1".into()),
                    state: Some(TaskState::Working),
                }),
            }),
        ),
        sealed(
            "pin",
            2,
            Event::Failed(Failed {
                reason: FailureReason::RpcError(-32601),
                detail: Some("Method not found".into()),
            }),
        ),
        sealed(
            "pin",
            2,
            Event::Failed(Failed {
                reason: FailureReason::HttpStatus(503),
                detail: Some("busy".into()),
            }),
        ),
        sealed(
            "pin",
            2,
            Event::Failed(Failed {
                reason: FailureReason::TargetOffline,
                detail: None,
            }),
        ),
    ]
}

#[test]
fn the_v1_encoding_of_each_record_kind_is_pinned() {
    let pinned: Vec<String> = pinned_records()
        .iter()
        .map(|record| {
            let bytes = envelope::encode_v1(record);
            assert_eq!(envelope::decode(&bytes).as_ref(), Ok(record));
            format!(
                "{} {}\n{}",
                record.event.kind(),
                String::from_utf8_lossy(&bytes[envelope::HEADER_LEN..]),
                hex(&bytes)
            )
        })
        .collect();
    insta::assert_snapshot!("v1_record_encodings", pinned.join("\n\n"));
}

#[test]
fn the_v2_encoding_of_each_record_kind_is_pinned() {
    let pinned: Vec<String> = pinned_records()
        .iter()
        .map(|record| {
            let bytes = envelope::encode(record);
            assert_eq!(bytes[0], 2);
            assert_eq!(envelope::decode(&bytes).as_ref(), Ok(record));
            format!(
                "{} ({} bytes, {} in version 1)\n{}",
                record.event.kind(),
                bytes.len(),
                envelope::encode_v1(record).len(),
                hex(&bytes)
            )
        })
        .collect();
    insta::assert_snapshot!("v2_record_encodings", pinned.join("\n\n"));
}

#[test]
fn the_head_encoding_of_each_state_is_pinned() {
    let records = pinned_records();
    let [queued, _, _, _, delivered, failed, _, _] = &records;
    let pinned: Vec<String> = [vec![queued], vec![queued, delivered], vec![queued, failed]]
        .into_iter()
        .map(|history| {
            let mut fold = Fold::trusting(queued.delegation.clone());
            for record in history {
                fold.apply(record).unwrap();
            }
            let delegation = fold.into_delegation().unwrap();
            let bytes = envelope::head::encode(&delegation);
            assert_eq!(bytes[0], envelope::head::VERSION);
            let decoded = envelope::head::decode(&bytes).unwrap();
            assert_eq!(decoded.task, None);
            assert_eq!(decoded.status(), delegation.status());
            format!(
                "{} ({} bytes)\n{}",
                delegation.state,
                bytes.len(),
                hex(&bytes)
            )
        })
        .collect();
    insta::assert_snapshot!("head_encodings", pinned.join("\n\n"));
}
