//! Guards the audit code where cargo-mutants found, or could find, mutants that the
//! other audit suites let survive: the exact line-length limit of `verify`, its
//! byte count and retry on interrupted reads, the field rules for `null`, the
//! wording of each sequence finding, late records of set-aside delegations (the
//! state they settled in, and the store order that decides whether to look them
//! up), and, for a store's audit, how often progress is reported and how the
//! redundant head is matched against the last two stored records.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod audit_support;

use std::io::{self, Read};
use std::path::Path;

use audit_support::{
    audited, clock, delivered, downgrade_to_v1, failed, found, id, log, queued, raw, raw_v1, verify,
};
use delegation_log::audit::{self, AuditError, Kind, Options};
use delegation_log::lifecycle::State;
use delegation_log::store::{Head, key};
use delegation_log::{Event, Ledger, ManualClock};

const SIXTEEN_MIB: usize = 16 * 1024 * 1024;

/// `line` padded with spaces (which JSON allows after a value) to `len` bytes.
fn padded(line: &str, len: usize) -> String {
    let mut out = line.to_owned();
    out.push_str(&" ".repeat(len - line.len()));
    out
}

#[test]
fn a_line_of_exactly_sixteen_mebibytes_is_read_and_one_byte_more_is_malformed() {
    assert_eq!(audit::MAX_LINE, SIXTEEN_MIB);
    let exact = log(&[padded(&queued("a", 1), SIXTEEN_MIB), delivered("a", 2)]);
    let verdict = verify(&exact);
    assert!(verdict.is_clean(), "{:?}", verdict.violations);
    assert_eq!((verdict.records, verdict.states.delivered), (2, 1));

    let over = log(&[
        queued("a", 1),
        padded(&delivered("a", 2), SIXTEEN_MIB + 1),
        failed("b", 1),
    ]);
    let verdict = verify(&over);
    let messages: Vec<(u64, Kind, &str)> = verdict
        .violations
        .iter()
        .map(|v| (v.line, v.kind, v.message.as_str()))
        .collect();
    assert_eq!(
        messages[0],
        (2, Kind::Malformed, "line longer than 16777216 bytes")
    );
    assert_eq!(verdict.records, 3);
}

#[test]
fn progress_ends_at_the_number_of_bytes_read() {
    let text = log(&[queued("a", 1), delivered("a", 2), queued("b", 1)]);
    let mut seen = Vec::new();
    audit::verify_with(text.as_bytes(), &clock(), Options::default(), &mut |n| {
        seen.push(n);
    })
    .unwrap();
    assert_eq!(
        seen.last().copied(),
        Some(u64::try_from(text.len()).unwrap())
    );
}

/// A reader that is interrupted before every chunk it hands out.
struct Interrupting<'a> {
    data: &'a [u8],
    interrupt: bool,
}

impl Read for Interrupting<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.interrupt = !self.interrupt;
        if self.interrupt {
            return Err(io::Error::from(io::ErrorKind::Interrupted));
        }
        let n = buf.len().min(self.data.len()).min(7);
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

#[test]
fn an_interrupted_read_is_retried_and_another_read_error_is_an_io_error() {
    let text = log(&[queued("a", 1), delivered("a", 2)]);
    let reader = Interrupting {
        data: text.as_bytes(),
        interrupt: false,
    };
    let verdict = audit::verify(reader, &clock()).unwrap();
    assert!(verdict.is_clean());
    assert_eq!(verdict.records, 2);

    struct Broken;
    impl Read for Broken {
        fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
            Err(io::Error::other("disk gone"))
        }
    }
    assert!(matches!(
        audit::verify(Broken, &clock()),
        Err(AuditError::Io(_))
    ));
}

#[test]
fn an_empty_log_is_a_clean_verdict_on_nothing() {
    let verdict = verify("");
    assert!(verdict.is_clean());
    assert_eq!((verdict.records, verdict.delegations), (0, 0));
}

#[test]
fn a_null_http_status_or_detail_is_malformed_not_absent() {
    let lines = [
        queued("a", 1),
        r#"{"delegation":"a","seq":2,"event":"delivered","http_status":null,"at":"2026-06-07T01:32:08Z"}"#.to_owned(),
        queued("b", 1),
        r#"{"delegation":"b","seq":2,"event":"failed","reason":"timeout","detail":null,"at":"2026-06-07T01:32:09Z"}"#.to_owned(),
    ];
    let verdict = verify(&log(&lines));
    assert_eq!(
        found(&verdict),
        [(2, Kind::Malformed), (4, Kind::Malformed)]
    );
    assert!(
        verdict.violations[0]
            .message
            .contains("`http_status` is null")
    );
    assert!(verdict.violations[1].message.contains("`detail` is null"));
}

#[test]
fn each_sequence_finding_says_which_rule_it_breaks() {
    let lines = [
        queued("a", 2),
        queued("b", 0),
        queued("c", -3),
        queued("d", 1),
        queued("d", 1),
        queued("e", 1),
        delivered("e", 3),
    ];
    let verdict = verify(&log(&lines));
    let messages: Vec<(u64, Kind, &str)> = verdict
        .violations
        .iter()
        .map(|v| (v.line, v.kind, v.message.as_str()))
        .collect();
    assert_eq!(
        messages,
        [
            (
                1,
                Kind::Sequence,
                "seq 2, expected 1 (a delegation's first record is seq 1)"
            ),
            (
                2,
                Kind::Sequence,
                "seq 0, expected 1 (a delegation's first record is seq 1)"
            ),
            (
                3,
                Kind::Sequence,
                "seq -3, expected 1 (a seq is a positive integer)"
            ),
            (
                5,
                Kind::Sequence,
                "seq 1, expected 2 (a repeat of an earlier seq)"
            ),
            (
                7,
                Kind::Sequence,
                "seq 3, expected 2 (a gap: records are missing before it)"
            ),
        ]
    );
}

#[test]
fn a_late_record_of_a_set_aside_delegation_is_judged_against_the_state_it_settled_in() {
    // In store order (`a` < `b` < `cc`), then late records for each settled one:
    // `b` is the greatest id so far, `a` sorts before it.
    let lines = [
        queued("a", 1),
        delivered("a", 2),
        queued("b", 1),
        failed("b", 2),
        queued("cc", 1),
        failed("b", 3),
        delivered("a", 3),
        delivered("a", 5),
        queued("b", 1),
    ];
    let verdict = verify(&log(&lines));
    let seen: Vec<(u64, Kind, Option<State>)> = verdict
        .violations
        .iter()
        .map(|v| (v.line, v.kind, v.state))
        .collect();
    assert_eq!(
        seen,
        [
            (6, Kind::IllegalTransition, Some(State::Failed)),
            (7, Kind::IllegalTransition, Some(State::Delivered)),
            (8, Kind::Sequence, Some(State::Delivered)),
            (9, Kind::Sequence, Some(State::Failed)),
        ]
    );
    assert_eq!(
        verdict.violations[1].message,
        "already settled as delivered; delivered refused"
    );
    assert_eq!(
        (
            verdict.states.delivered,
            verdict.states.failed,
            verdict.states.queued
        ),
        (1, 1, 1)
    );
}

#[test]
fn a_late_record_of_the_last_delegation_in_store_order_is_still_looked_up() {
    let lines = [
        queued("a", 1),
        delivered("a", 2),
        queued("b", 1),
        delivered("b", 2),
        failed("b", 3),
    ];
    let verdict = verify(&log(&lines));
    assert_eq!(found(&verdict), [(5, Kind::IllegalTransition)]);
    assert_eq!(verdict.violations[0].state, Some(State::Delivered));
}

#[test]
fn a_missing_hash_says_whether_hashes_are_required_or_the_log_is_hashed() {
    let plain = log(&[queued("a", 1)]);
    let required = audit::verify_with(
        plain.as_bytes(),
        &clock(),
        Options {
            require_hashes: true,
        },
        &mut |_| {},
    )
    .unwrap();
    assert_eq!(found(&required), [(1, Kind::BrokenChain)]);
    assert!(
        required.violations[0]
            .message
            .contains("hashes are required")
    );

    let mut mixed = audit_support::hashed(&[queued("a", 1)]);
    mixed.push(delivered("a", 2));
    let verdict = verify(&log(&mixed));
    assert_eq!(found(&verdict), [(2, Kind::BrokenChain)]);
    assert!(
        verdict.violations[0]
            .message
            .contains("the log is hashed (its first record has one)"),
        "{}",
        verdict.violations[0].message
    );
}

/// A sled store in which `a` has records 1 (queued) and 2 (delivered), followed
/// by `b` with record 1; and a closure to rewrite its trees directly.
fn store(path: &Path) {
    let ledger = Ledger::open_with(
        path,
        delegation_log::Options::new().clock(ManualClock::default()),
    )
    .unwrap();
    ledger
        .record(&id("a"), Event::queued("planner", "reviewer"))
        .unwrap();
    ledger
        .record(&id("a"), Event::delivered(Some(200)).unwrap())
        .unwrap();
    ledger
        .record(&id("b"), Event::queued("planner", "reviewer"))
        .unwrap();
}

fn hash_of(records: &sled::Tree, seq: u64) -> delegation_log::ChainHash {
    let bytes = records.get(key::record(&id("a"), seq)).unwrap().unwrap();
    delegation_log::envelope::decode(&bytes)
        .unwrap()
        .hash
        .unwrap()
}

#[test]
fn a_store_audit_reports_progress_once_at_the_end_when_small() {
    let dir = tempfile::tempdir().unwrap();
    store(dir.path());
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
    store(dir.path());
    downgrade_to_v1(dir.path());
    raw_v1(dir.path(), |records, heads| {
        let second = records.remove(key::record(&id("a"), 2)).unwrap().unwrap();
        records.insert(key::record(&id("a"), 3), second).unwrap();
        let head = Head {
            seq: 1,
            summary: hash_of(records, 1).0.to_vec(),
        };
        heads
            .insert(key::prefix(&id("a")), head.encode().to_vec())
            .unwrap();
    });
    let verdict = audited(dir.path());
    assert_eq!(
        found(&verdict),
        [(2, Kind::Malformed), (2, Kind::BrokenChain)]
    );
    assert!(
        verdict.violations[1]
            .message
            .contains("does not match the records ending at seq 3"),
        "{}",
        verdict.violations[1].message
    );
}

#[test]
fn a_head_one_behind_with_the_wrong_hash_is_a_broken_chain_in_format_1() {
    let dir = tempfile::tempdir().unwrap();
    store(dir.path());
    downgrade_to_v1(dir.path());
    raw_v1(dir.path(), |records, heads| {
        let head = Head {
            seq: 1,
            summary: hash_of(records, 2).0.to_vec(),
        };
        heads
            .insert(key::prefix(&id("a")), head.encode().to_vec())
            .unwrap();
    });
    assert_eq!(found(&audited(dir.path())), [(2, Kind::BrokenChain)]);
}

#[test]
fn a_lone_record_past_seq_one_without_a_head_is_a_broken_chain() {
    let dir = tempfile::tempdir().unwrap();
    store(dir.path());
    raw(dir.path(), |records, heads| {
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
    assert!(
        verdict.violations[1]
            .message
            .contains("no head, but the records reach seq 2")
    );
}

/// Format 1 wrote a record before its head, so a first record alone without a
/// head is what a process killed between the two left.
#[test]
fn a_lone_first_record_without_a_head_is_benign_in_format_1() {
    let dir = tempfile::tempdir().unwrap();
    store(dir.path());
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
    store(dir.path());
    raw(dir.path(), |_, heads| {
        heads.remove(key::head(&id("b"))).unwrap();
    });
    let verdict = audited(dir.path());
    assert_eq!(found(&verdict), [(3, Kind::BrokenChain)]);
    assert!(
        verdict.violations[0]
            .message
            .contains("no head, but the records reach seq 1")
    );
}

#[test]
fn a_head_ahead_of_the_records_names_the_lost_seqs() {
    let dir = tempfile::tempdir().unwrap();
    store(dir.path());
    raw(dir.path(), |_, heads| {
        for (name, seq) in [("a", 4), ("b", 2)] {
            let mut head =
                Head::decode(&heads.get(key::head(&id(name))).unwrap().unwrap()).unwrap();
            head.seq = seq;
            heads.insert(key::head(&id(name)), head.encode()).unwrap();
        }
    });
    let verdict = audited(dir.path());
    let messages: Vec<(u64, Kind, &str)> = verdict
        .violations
        .iter()
        .map(|v| (v.line, v.kind, v.message.as_str()))
        .collect();
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
fn export_counts_the_records_and_delegations_it_writes() {
    let ledger = Ledger::with_store(
        std::sync::Arc::new(delegation_log::store::Memory::new()),
        delegation_log::Options::new(),
    );
    let text = log(&[queued("a", 1), delivered("a", 2), queued("b", 1)]);
    assert_eq!(ledger.import(text.as_bytes()).unwrap().stored, 3);
    let mut out = Vec::new();
    let exported = ledger.export(&mut out).unwrap();
    assert_eq!((exported.records, exported.delegations), (3, 2));
    assert_eq!(String::from_utf8(out).unwrap().lines().count(), 3);
}

#[test]
fn import_names_the_first_line_of_a_delegation_already_stored() {
    let ledger = Ledger::with_store(
        std::sync::Arc::new(delegation_log::store::Memory::new()),
        delegation_log::Options::new(),
    );
    ledger
        .record(&id("b"), Event::queued("planner", "reviewer"))
        .unwrap();
    let text = log(&[queued("a", 1), delivered("a", 2), queued("b", 1)]);
    match ledger.import(text.as_bytes()) {
        Err(AuditError::Exists { line, delegation }) => {
            assert_eq!((line, delegation), (3, id("b")));
        }
        other => panic!("expected Exists, got {other:?}"),
    }
    assert!(ledger.history(&id("a")).unwrap().is_empty());
}

#[test]
fn import_reads_a_log_with_crlf_line_ends() {
    let ledger = Ledger::with_store(
        std::sync::Arc::new(delegation_log::store::Memory::new()),
        delegation_log::Options::new(),
    );
    let text = format!("{}\r\n{}\r\n", queued("a", 1), delivered("a", 2));
    assert_eq!(ledger.import(text.as_bytes()).unwrap().stored, 2);
    assert_eq!(ledger.history(&id("a")).unwrap().len(), 2);
}
