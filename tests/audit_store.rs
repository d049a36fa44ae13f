//! Guards `audit` of a store from its own records: checksums, keys against
//! records, chain hashes, seq gaps, the redundant head (lost records, the last one
//! included, named by their seqs; the benign lag of one in format 1, matched
//! against the last two stored records only, and no lag at all in format 2; a
//! record alone without a head), damage the store cannot open past as a typed
//! error, progress reported once at the end for a small store, and
//! `export`/`import` around a store (counts, the first line of a delegation the
//! store already has, CRLF line ends). The head cases were written to kill
//! mutants that cargo-mutants found surviving. Damage that format 3 cannot
//! hold (a head apart from its records: records lost under a head, a head
//! without records, a bad record key) is made in a store rewritten in format 2,
//! whose reader still serves the audit; in format 3 the same damage is a value
//! whose framing disagrees with its head, a malformed finding naming the
//! delegation (`a_misframed_value_is_malformed_naming_its_delegation_and_the_audit_goes_on`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod audit_support;
mod support;

use std::path::Path;
use std::sync::Arc;

use audit_support::{
    assert_says, audited, clock, delivered, downgrade_to_v1, forge_head, found, log, messages,
    queued, raw, raw_v1, raw_v2,
};
use delegation_log::audit::{self, AuditError, Kind};
use delegation_log::ledger::Options;
use delegation_log::store::{Faulty, Head, Memory, key};
use delegation_log::{ChainHash, Durability, Event, Ledger, ManualClock};
use support::id;

/// A sled store with `a` (delivered), `b` (pending), `c` (delivered): records at
/// positions 1-2, 3, 4-5.
fn store(path: &Path) {
    store_of(path, &[("a", true), ("b", false), ("c", true)]);
}

/// A sled store of the delegations named, in that order, each queued and, where
/// `true`, delivered with status 200.
fn store_of(path: &Path, delegations: &[(&str, bool)]) {
    let ledger = Ledger::open_with(path, Options::new().clock(ManualClock::default())).unwrap();
    for &(name, settle) in delegations {
        ledger
            .record(&id(name), Event::queued("planner", "reviewer"))
            .unwrap();
        if settle {
            ledger
                .record(&id(name), Event::delivered(Some(200)).unwrap())
                .unwrap();
        }
    }
}

/// A sled store of `a` (delivered, records at positions 1-2) and `b` (pending,
/// at 3): the smallest with a settled delegation, and one after it.
fn two(path: &Path) {
    store_of(path, &[("a", true), ("b", false)]);
}

/// The memory ledger the import and export tests write through.
fn memory_ledger() -> Ledger {
    Ledger::with_store(Arc::new(Memory::new()), Options::new())
}

#[test]
fn a_healthy_store_audits_clean_with_counts_and_pending_ages() {
    let dir = tempfile::tempdir().unwrap();
    store(dir.path());
    let verdict = audited(dir.path());
    assert!(verdict.is_clean(), "{}", verdict.to_plain());
    assert_eq!((verdict.records, verdict.delegations), (5, 3));
    assert_eq!((verdict.states.queued, verdict.states.delivered), (1, 2));
    assert_eq!(verdict.pending[0].delegation.as_str(), "b");
    assert_eq!(verdict.pending[0].age_seconds, 3600);
}

#[test]
fn a_damaged_record_is_malformed_at_its_scan_position() {
    let dir = tempfile::tempdir().unwrap();
    store(dir.path());
    raw(dir.path(), |records, _| {
        let key = key::record(&id("c"), 1);
        let mut bytes = records.get(&key).unwrap().unwrap().to_vec();
        let last = bytes.len() - 3;
        bytes[last] ^= 0x20;
        records.insert(key, bytes).unwrap();
    });
    let verdict = audited(dir.path());
    assert_eq!(found(&verdict)[0], (4, Kind::Malformed));
    assert_says(&verdict, 0, "checksum");
}

#[test]
fn a_record_under_another_key_is_malformed() {
    let dir = tempfile::tempdir().unwrap();
    store(dir.path());
    raw(dir.path(), |records, _| {
        let a1 = records.get(key::record(&id("a"), 1)).unwrap().unwrap();
        records.insert(key::record(&id("b"), 1), a1).unwrap();
    });
    let verdict = audited(dir.path());
    assert_eq!(found(&verdict), [(3, Kind::Malformed)]);
}

#[test]
fn a_lost_middle_record_is_a_sequence_gap() {
    let dir = tempfile::tempdir().unwrap();
    store(dir.path());
    raw_v2(dir.path(), |records, _| {
        records.remove(key::record(&id("a"), 1)).unwrap();
    });
    // The delegation's gap, and the store-wide count of acknowledged records
    // (one past the last stored record) both see the loss.
    assert_eq!(
        found(&audited(dir.path())),
        [(1, Kind::Sequence), (5, Kind::Sequence)]
    );
}

#[test]
fn a_lost_last_record_is_caught_by_the_head() {
    let dir = tempfile::tempdir().unwrap();
    store(dir.path());
    raw_v2(dir.path(), |records, _| {
        records.remove(key::record(&id("c"), 2)).unwrap();
    });
    let verdict = audited(dir.path());
    assert_eq!(found(&verdict), [(4, Kind::Sequence), (5, Kind::Sequence)]);
    assert_eq!(verdict.violations[0].delegation.as_deref(), Some("c"));
    assert_eq!(verdict.violations[1].delegation, None);
}

#[test]
fn a_delegation_with_every_record_lost_is_caught_by_its_orphan_head() {
    let dir = tempfile::tempdir().unwrap();
    store(dir.path());
    raw_v2(dir.path(), |records, _| {
        records.remove(key::record(&id("b"), 1)).unwrap();
    });
    let verdict = audited(dir.path());
    assert_eq!(found(&verdict), [(3, Kind::Sequence), (5, Kind::Sequence)]);
    assert_says(&verdict, 0, "every record was lost");
    assert_says(&verdict, 1, "at least 1 record was lost");
}

/// In a store of format 1 (its `records` and `heads` trees), sets `a`'s head to
/// seq `seq` with the chain hash of its record `hashed`, as format 1 wrote heads.
fn set_v1_head_of_a(records: &sled::Tree, heads: &sled::Tree, seq: u64, hashed: u64) {
    let record = records.get(key::record(&id("a"), hashed)).unwrap().unwrap();
    let hash = delegation_log::envelope::decode(&record)
        .unwrap()
        .hash
        .unwrap();
    let head = Head {
        seq,
        summary: hash.0.to_vec(),
    };
    heads.insert(key::prefix(&id("a")), head.encode()).unwrap();
}

/// Format 1 wrote a record, then its head: a head one behind, with the hash of
/// the record before the last, is what a process killed between the two left.
#[test]
fn a_head_lagging_by_one_with_the_previous_hash_is_benign_in_format_1() {
    let dir = tempfile::tempdir().unwrap();
    store(dir.path());
    downgrade_to_v1(dir.path());
    raw_v1(dir.path(), |records, heads| {
        set_v1_head_of_a(records, heads, 1, 1)
    });
    assert!(audited(dir.path()).is_clean());
}

/// Format 2 writes a record and its head in one atomic write: a head one behind
/// is damage, whose status would lie.
#[test]
fn a_head_lagging_by_one_is_a_broken_chain_in_format_2() {
    let dir = tempfile::tempdir().unwrap();
    store(dir.path());
    let ledger = Ledger::open(dir.path()).unwrap();
    let lagging = ledger.store().history(&id("a")).unwrap();
    drop(ledger);
    let first = {
        let mut fold = delegation_log::delegation::Fold::new(id("a"));
        let record = delegation_log::envelope::decode(&lagging.entries[0].bytes).unwrap();
        fold.apply(&record).unwrap();
        Head {
            seq: 1,
            summary: delegation_log::envelope::head::encode(fold.delegation().unwrap()),
        }
    };
    raw_v2(dir.path(), |_, heads| {
        heads.insert(key::head(&id("a")), first.encode()).unwrap();
    });
    let verdict = audited(dir.path());
    assert_eq!(found(&verdict), [(2, Kind::BrokenChain)]);
    assert_says(&verdict, 0, "the head disagrees with the history");
    // Named by both seqs, as a head behind the records, not field by field.
    assert_says(
        &verdict,
        0,
        "the head says seq 1, but the records reach seq 2",
    );
}

/// A record's key and its body must name the same seq, even where the seq the
/// body names is the next one the fold takes: format 2 keeps each record under
/// its own key, so record 2 can sit at seq 3, its head still at seq 2.
#[test]
fn a_record_stored_under_another_seq_is_malformed_though_it_folds_in_format_2() {
    let dir = tempfile::tempdir().unwrap();
    two(dir.path());
    raw_v2(dir.path(), |records, _| {
        let second = records.remove(key::record(&id("a"), 2)).unwrap().unwrap();
        records.insert(key::record(&id("a"), 3), second).unwrap();
    });
    let verdict = audited(dir.path());
    assert_eq!(found(&verdict), [(2, Kind::Malformed)]);
    assert_says(
        &verdict,
        0,
        "stored under `a` seq 3, but the record says `a` seq 2",
    );
}

#[test]
fn a_store_audit_reports_progress_once_at_the_end_when_small() {
    let dir = tempfile::tempdir().unwrap();
    two(dir.path());
    let mut seen = Vec::new();
    audit::audit_path_observed(dir.path(), &clock(), &mut |n| seen.push(n)).unwrap();
    assert_eq!(seen, [3]);
}

/// Format 1's benign lag is one record, on the record before the last: not a
/// head two behind.
#[test]
fn a_head_over_a_record_moved_past_a_gap_is_a_broken_chain_not_a_benign_lag() {
    // `a` keeps record 1 and the head written with it, and its record 2 now sits
    // at seq 3: the head is two behind the last record, though it matches the one
    // before the last.
    let dir = tempfile::tempdir().unwrap();
    two(dir.path());
    downgrade_to_v1(dir.path());
    raw_v1(dir.path(), |records, heads| {
        let second = records.remove(key::record(&id("a"), 2)).unwrap().unwrap();
        records.insert(key::record(&id("a"), 3), second).unwrap();
        set_v1_head_of_a(records, heads, 1, 1);
    });
    let verdict = audited(dir.path());
    assert_eq!(
        found(&verdict),
        [(2, Kind::Malformed), (2, Kind::BrokenChain)]
    );
    assert_says(&verdict, 1, "does not match the records ending at seq 3");
}

#[test]
fn a_head_one_behind_with_the_wrong_hash_is_a_broken_chain_in_format_1() {
    let dir = tempfile::tempdir().unwrap();
    two(dir.path());
    downgrade_to_v1(dir.path());
    raw_v1(dir.path(), |records, heads| {
        set_v1_head_of_a(records, heads, 1, 2)
    });
    assert_eq!(found(&audited(dir.path())), [(2, Kind::BrokenChain)]);
}

#[test]
fn a_lone_record_past_seq_one_without_a_head_is_a_broken_chain() {
    let dir = tempfile::tempdir().unwrap();
    two(dir.path());
    raw_v2(dir.path(), |records, heads| {
        records.remove(key::record(&id("a"), 1)).unwrap();
        heads.remove(key::head(&id("a"))).unwrap();
    });
    let verdict = audited(dir.path());
    // The removed record is also one fewer than the store's acknowledged count,
    // reported one past the last stored record.
    assert_eq!(
        found(&verdict),
        [
            (1, Kind::Sequence),
            (1, Kind::BrokenChain),
            (3, Kind::Sequence)
        ]
    );
    assert_says(&verdict, 1, "no head, but the records reach seq 2");
}

/// Format 1 wrote a record before its head, so a first record alone without a
/// head is what a process killed between the two left.
#[test]
fn a_lone_first_record_without_a_head_is_benign_in_format_1() {
    let dir = tempfile::tempdir().unwrap();
    two(dir.path());
    downgrade_to_v1(dir.path());
    raw_v1(dir.path(), |_, heads| {
        heads.remove(key::prefix(&id("b"))).unwrap();
    });
    assert!(audited(dir.path()).is_clean());
}

/// Format 2 writes each record with its head, so a record without one is
/// damage: `status`, which reads only the head, would say `not_found`.
#[test]
fn a_lone_first_record_without_a_head_is_a_broken_chain_in_format_2() {
    let dir = tempfile::tempdir().unwrap();
    two(dir.path());
    raw_v2(dir.path(), |_, heads| {
        heads.remove(key::head(&id("b"))).unwrap();
    });
    let verdict = audited(dir.path());
    assert_eq!(found(&verdict), [(3, Kind::BrokenChain)]);
    assert_says(&verdict, 0, "no head, but the records reach seq 1");
}

#[test]
fn a_head_ahead_of_the_records_names_the_lost_seqs() {
    let dir = tempfile::tempdir().unwrap();
    two(dir.path());
    raw_v2(dir.path(), |_, heads| {
        for (name, seq) in [("a", 4), ("b", 2)] {
            let mut head =
                Head::decode(&heads.get(key::head(&id(name))).unwrap().unwrap()).unwrap();
            head.seq = seq;
            heads.insert(key::head(&id(name)), head.encode()).unwrap();
        }
    });
    let verdict = audited(dir.path());
    let messages = messages(&verdict);
    assert_eq!(
        messages,
        [
            (
                2,
                Kind::Sequence,
                "the head says seq 4, but the records end at seq 2: records 3..=4 were lost"
            ),
            (
                3,
                Kind::Sequence,
                "the head says seq 2, but the records end at seq 1: record 2 was lost"
            ),
        ]
    );
}

#[test]
fn a_head_with_a_wrong_hash_is_a_broken_chain() {
    let dir = tempfile::tempdir().unwrap();
    store(dir.path());
    forge_head(dir.path(), &id("a"), |head| head.hash = ChainHash([7; 32]));
    let verdict = audited(dir.path());
    assert_eq!(found(&verdict), [(2, Kind::BrokenChain)]);
    assert_says(&verdict, 0, "(hash)");
}

/// A head whose summary lies about the outcome (the records say delivered, the
/// head says failed) is named: `status`, which reads only the head, would lie.
#[test]
fn a_head_that_lies_about_the_outcome_is_a_broken_chain_and_history_reads_refuse_it() {
    let dir = tempfile::tempdir().unwrap();
    store(dir.path());
    forge_head(dir.path(), &id("c"), |head| {
        head.state = delegation_log::lifecycle::State::Failed;
        head.outcome = Some(delegation_log::Outcome::Failed(
            delegation_log::event::Failed {
                reason: delegation_log::FailureReason::Timeout,
                detail: None,
            },
        ));
    });
    let verdict = audited(dir.path());
    assert_eq!(found(&verdict), [(5, Kind::BrokenChain)]);
    assert!(
        verdict.violations[0]
            .message
            .starts_with("the head disagrees with the history (state, outcome)"),
        "{}",
        verdict.violations[0].message
    );
    let ledger = Ledger::open(dir.path()).unwrap();
    assert!(matches!(
        ledger.history(&id("c")),
        Err(delegation_log::ReadError::Corrupt { .. })
    ));
}

/// `status` reads the head alone and trusts its checksum for its byte form (the
/// hot path checks the checksum, the body and the fold's rules, but does not
/// re-encode); the audit, which compares every head with the encoding of its
/// records' fold, still finds a head forged in another byte form. Here `b`'s
/// head says attempt 1 as the two-byte varint `81 00` instead of `01`, with a
/// valid checksum.
#[test]
fn a_head_in_another_byte_form_answers_status_and_is_found_by_the_audit() {
    let dir = tempfile::tempdir().unwrap();
    store(dir.path());
    raw(dir.path(), |log, _| {
        let stored = Head::decode(&log.get(key::head(&id("b"))).unwrap().unwrap()).unwrap();
        let mut summary = stored.summary.clone();
        // The body: id, state, source, target (each text a one-byte length and its
        // bytes), retry_of (`00`, none), then attempt.
        let mut at = 5;
        for field in [1, 0, 1, 1] {
            at += if field == 1 {
                1 + summary[at] as usize
            } else {
                1
            };
        }
        assert_eq!(
            summary[at..at + 2],
            [0x00, 0x01],
            "retry_of none, attempt 1"
        );
        summary.splice(at + 1..at + 2, [0x81, 0x00]);
        let checksum = crc32fast::hash(&summary[5..]);
        summary[1..5].copy_from_slice(&checksum.to_be_bytes());
        assert_eq!(
            delegation_log::envelope::head::decode(&summary),
            Err(delegation_log::envelope::DecodeError::NonCanonical)
        );
        let forged = Head {
            seq: stored.seq,
            summary,
        };
        log.insert(key::head(&id("b")), forged.encode()).unwrap();
    });
    let ledger = Ledger::open(dir.path()).unwrap();
    let status = ledger.status(&id("b")).unwrap();
    assert_eq!(status.status, delegation_log::StatusKind::Queued);
    drop(ledger);
    let verdict = audited(dir.path());
    assert_eq!(
        found(&verdict),
        [(3, Kind::Malformed)],
        "{}",
        verdict.to_plain()
    );
    assert_says(&verdict, 0, "head of `b`");
}

#[test]
fn a_rewritten_record_with_a_valid_envelope_breaks_the_chain() {
    let dir = tempfile::tempdir().unwrap();
    store(dir.path());
    raw(dir.path(), |records, _| {
        let key = key::record(&id("a"), 2);
        let mut record =
            delegation_log::envelope::decode(&records.get(&key).unwrap().unwrap()).unwrap();
        record.event = Event::delivered(Some(201)).unwrap();
        records
            .insert(key, delegation_log::envelope::encode(&record))
            .unwrap();
    });
    assert_eq!(found(&audited(dir.path())), [(2, Kind::BrokenChain)]);
}

#[test]
fn a_damaged_key_is_malformed_and_the_audit_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    store(dir.path());
    raw_v2(dir.path(), |records, _| {
        records.insert([0u8, 1, b'a'], b"junk".to_vec()).unwrap();
    });
    let verdict = audited(dir.path());
    assert_eq!(found(&verdict), [(1, Kind::Malformed)]);
    assert_eq!(verdict.records, 6);
    assert_eq!(verdict.delegations, 3);
}

#[test]
fn a_misframed_value_is_malformed_naming_its_delegation_and_the_audit_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    store(dir.path());
    raw(dir.path(), |records, _| {
        records.remove(key::record(&id("a"), 2)).unwrap();
    });
    let verdict = audited(dir.path());
    let messages = messages(&verdict);
    assert_eq!(
        messages
            .iter()
            .filter(|(_, kind, _)| *kind == Kind::Malformed)
            .map(|(_, _, message)| *message)
            .collect::<Vec<_>>(),
        ["delegation `a`: the head says seq 2, and the value holds 1 records"],
        "{messages:?}"
    );
    // The other delegations are read and counted; the lost record shows against
    // the acknowledged count.
    let plain = verdict.to_plain();
    assert!(
        plain.contains("delegations: 2 (queued 1, delivered 1"),
        "{plain}"
    );
    assert!(
        messages
            .iter()
            .any(|(_, kind, message)| *kind == Kind::Sequence && message.contains("lost")),
        "{messages:?}"
    );
}

#[test]
fn a_store_that_cannot_be_opened_is_a_typed_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    std::fs::create_dir(&path).unwrap();
    std::fs::write(path.join("conf"), b"\xff\xfe garbage").unwrap();
    std::fs::write(path.join("db"), vec![0xa5u8; 4096]).unwrap();
    let err = audit::audit_path(&path, &clock()).unwrap_err();
    assert!(matches!(err, AuditError::Store(_)), "{err}");
}

#[test]
fn auditing_a_missing_path_is_an_error_and_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nothing-here");
    assert!(matches!(
        audit::audit_path(&path, &clock()),
        Err(AuditError::Io(_))
    ));
    assert!(!path.exists());
}

#[test]
fn a_torn_unacknowledged_write_is_reported_not_hidden() {
    let store = Arc::new(Faulty::seeded(3));
    let options = Options::new().durability(Durability::Buffered);
    let ledger = Ledger::with_store(store.clone(), options.clock(ManualClock::default()));
    ledger.record(&id("a"), Event::queued("p", "r")).unwrap();
    ledger.flush().unwrap();
    ledger
        .record(&id("a"), Event::delivered(None).unwrap())
        .unwrap();
    assert!(store.crash_tearing());
    let verdict = audit::audit(store.as_ref(), &clock()).unwrap();
    assert_eq!(found(&verdict), [(2, Kind::Malformed)]);
}

#[test]
fn ledger_audit_uses_the_ledgers_store_and_clock() {
    let ledger = Ledger::with_store(Arc::new(Memory::new()), Options::new().clock(clock()));
    ledger.record(&id("a"), Event::queued("p", "r")).unwrap();
    let verdict = ledger.audit().unwrap();
    assert!(verdict.is_clean());
    assert_eq!(verdict.pending[0].age_seconds, 0);
}

#[test]
fn export_refuses_a_damaged_store() {
    let dir = tempfile::tempdir().unwrap();
    store(dir.path());
    raw(dir.path(), |records, _| {
        records.remove(key::record(&id("c"), 2)).unwrap();
    });
    let ledger = Ledger::open(dir.path()).unwrap();
    let err = ledger.export(std::io::sink()).unwrap_err();
    assert!(
        matches!(err, delegation_log::Error::Corrupt { .. }),
        "{err}"
    );
}

#[test]
fn import_then_export_gives_back_the_same_records() {
    let dir = tempfile::tempdir().unwrap();
    store(&dir.path().join("one"));
    let one = Ledger::open(dir.path().join("one")).unwrap();
    let mut first = Vec::new();
    one.export(&mut first).unwrap();
    let two = Ledger::open(dir.path().join("two")).unwrap();
    let imported = two.import(&first[..]).unwrap();
    assert_eq!(imported.stored, 5);
    let mut second = Vec::new();
    two.export(&mut second).unwrap();
    assert_eq!(
        String::from_utf8(first).unwrap(),
        String::from_utf8(second).unwrap()
    );
    assert!(two.audit().unwrap().is_clean());
}

#[test]
fn import_of_a_log_with_a_violation_stores_nothing() {
    let ledger = memory_ledger();
    let text = log(&[
        queued("a", 1),
        delivered("a", 2),
        queued("b", 1),
        delivered("b", 3),
    ]);
    let imported = ledger.import(text.as_bytes()).unwrap();
    assert_eq!(imported.stored, 0);
    assert_eq!(found(&imported.verdict), [(4, Kind::Sequence)]);
    assert_eq!(ledger.audit().unwrap().records, 0);
}

#[test]
fn import_computes_hashes_for_an_unhashed_log() {
    let ledger = memory_ledger();
    let text = log(&[queued("a", 1), delivered("a", 2)]);
    assert_eq!(ledger.import(text.as_bytes()).unwrap().stored, 2);
    let mut out = Vec::new();
    ledger.export(&mut out).unwrap();
    let out = String::from_utf8(out).unwrap();
    assert!(out.lines().all(|line| line.contains("\"hash\":")));
    assert!(audit::verify(out.as_bytes(), &clock()).unwrap().is_clean());
}

#[test]
fn import_refuses_delegations_the_store_already_has_and_stores_nothing() {
    let ledger = memory_ledger();
    ledger.record(&id("b"), Event::queued("p", "r")).unwrap();
    let text = log(&[queued("a", 1), delivered("a", 2), queued("b", 1)]);
    // The refusal names the delegation and the first line of it.
    match ledger.import(text.as_bytes()) {
        Err(AuditError::Exists { line, delegation }) => {
            assert_eq!((line, delegation), (3, id("b")));
        }
        other => panic!("expected Exists, got {other:?}"),
    }
    assert!(ledger.history(&id("a")).unwrap().is_empty());
    assert_eq!(ledger.audit().unwrap().records, 1);
    // Delegations it does not have are fine.
    assert_eq!(
        ledger
            .import(log(&[queued("a", 1)]).as_bytes())
            .unwrap()
            .stored,
        1
    );
}

#[test]
fn export_counts_the_records_and_delegations_it_writes() {
    let ledger = memory_ledger();
    let text = log(&[queued("a", 1), delivered("a", 2), queued("b", 1)]);
    assert_eq!(ledger.import(text.as_bytes()).unwrap().stored, 3);
    let mut out = Vec::new();
    let exported = ledger.export(&mut out).unwrap();
    assert_eq!((exported.records, exported.delegations), (3, 2));
    assert_eq!(String::from_utf8(out).unwrap().lines().count(), 3);
}

#[test]
fn import_reads_a_log_with_crlf_line_ends() {
    let ledger = memory_ledger();
    let text = format!("{}\r\n{}\r\n", queued("a", 1), delivered("a", 2));
    assert_eq!(ledger.import(text.as_bytes()).unwrap().stored, 2);
    assert_eq!(ledger.history(&id("a")).unwrap().len(), 2);
}

/// Ledger v2's split of work: the ledger's reads trust each stored hash (the
/// bytes still pass their checksum, strict decoding, sequence, lifecycle and head
/// checks), and recomputing the chain is the audit's job. A record re-sealed with
/// a valid checksum but a forged hash reads as it says, and `audit` and `export`
/// both refuse it, naming the chain.
#[test]
fn a_resealed_record_with_a_forged_hash_reads_but_audit_and_export_name_the_broken_chain() {
    use delegation_log::envelope;
    let dir = tempfile::tempdir().unwrap();
    store(dir.path());
    raw(dir.path(), |records, heads| {
        let key = key::record(&id("c"), 2);
        let mut record = envelope::decode(&records.get(&key).unwrap().unwrap()).unwrap();
        let forged = ChainHash([7; 32]);
        record.hash = Some(forged);
        records.insert(key, envelope::encode(&record)).unwrap();
        let _ = heads;
    });
    forge_head(dir.path(), &id("c"), |head| head.hash = ChainHash([7; 32]));
    let verdict = audited(dir.path());
    assert_eq!(found(&verdict), [(5, Kind::BrokenChain)]);
    let ledger = Ledger::open(dir.path()).unwrap();
    let status = ledger.status(&id("c")).unwrap();
    assert_eq!(status.status, delegation_log::StatusKind::Delivered);
    let exported = ledger.export(Vec::new());
    assert!(
        matches!(&exported, Err(delegation_log::Error::Corrupt { reason, .. }) if reason.contains("chain")),
        "{exported:?}"
    );
}

/// Retried delegations are judged record by record (their links against the
/// store); one whose tasks ride along audits clean all the same: the head keeps
/// no task, and the comparison leaves it out.
#[test]
fn a_retried_delegation_that_carries_its_task_audits_clean() {
    use delegation_log::event::{Failed, FailureReason, Queued};

    let ledger = memory_ledger();
    let task = serde_json::json!({"review": "pr-42"});
    let queued = || Queued {
        task: Some(task.clone()),
        ..Queued::new("planner", "http://127.0.0.1:9/a2a")
    };
    ledger.record(&id("t"), Event::Queued(queued())).unwrap();
    let failed = Failed {
        reason: FailureReason::TargetOffline,
        detail: None,
    };
    ledger
        .retry(&id("t"), failed, &id("t.r1"), queued())
        .unwrap();
    ledger
        .record(&id("t.r1"), Event::delivered(None).unwrap())
        .unwrap();
    let verdict = ledger.audit().unwrap();
    assert!(verdict.is_clean(), "{}", verdict.to_plain());
}
