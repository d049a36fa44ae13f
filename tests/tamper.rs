//! Guards tamper evidence on an export: each edit an attacker or an accident can
//! make to a hashed export is reported, on the line it touched, or (where the
//! JSON Lines alone cannot show it) is visible in the verdict as documented in
//! `docs/audit.md`; and the store's head catches a lost last record.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod audit_support;
mod support;

use audit_support::{assert_says, clock, found, messages};
use delegation_log::audit::{self, Kind, Options};
use delegation_log::ledger::Options as LedgerOptions;
use delegation_log::store::key;
use delegation_log::{Event, FailureReason, Ledger, ManualClock};

/// A sled store of three settled delegations and one pending, and its export:
/// line 1-2 `a`, 3-4 `b`, 5 `c` (pending), 6-7 `d`.
fn exported(dir: &std::path::Path) -> Vec<String> {
    let ledger =
        Ledger::open_with(dir, LedgerOptions::new().clock(ManualClock::default())).unwrap();
    for (id, outcome) in [
        ("a", Some(Event::delivered(Some(200)).unwrap())),
        (
            "b",
            Some(Event::failed(FailureReason::Timeout, Some("slow".into())).unwrap()),
        ),
        ("c", None),
        ("d", Some(Event::delivered(None).unwrap())),
    ] {
        let id = id.parse().unwrap();
        ledger
            .record(&id, Event::queued("planner", "reviewer"))
            .unwrap();
        if let Some(outcome) = outcome {
            ledger.record(&id, outcome).unwrap();
        }
    }
    let mut out = Vec::new();
    ledger.export(&mut out).unwrap();
    String::from_utf8(out)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn verify(lines: &[String]) -> audit::Verdict {
    audit::verify(lines.join("\n").as_bytes(), &clock()).unwrap()
}

#[test]
fn an_untouched_export_verifies_clean() {
    let dir = tempfile::tempdir().unwrap();
    let lines = exported(dir.path());
    assert_eq!(lines.len(), 7);
    let verdict = verify(&lines);
    assert!(verdict.is_clean(), "{}", verdict.to_plain());
    assert_eq!(verdict.pending.len(), 1);
}

#[test]
fn editing_a_field_of_one_record_breaks_its_chain_on_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let mut lines = exported(dir.path());
    lines[3] = lines[3].replace("\"detail\":\"slow\"", "\"detail\":\"fast\"");
    assert_eq!(found(&verify(&lines)), [(4, Kind::BrokenChain)]);
    let mut lines = exported(dir.path().join("again").as_path());
    lines[0] = lines[0].replace("\"target\":\"reviewer\"", "\"target\":\"mallory\"");
    // The first record is rejected; the second is then judged against nothing.
    assert_eq!(
        found(&verify(&lines)),
        [(1, Kind::BrokenChain), (2, Kind::Sequence)]
    );
}

#[test]
fn editing_the_timestamp_is_caught_even_in_another_notation_of_another_instant() {
    let dir = tempfile::tempdir().unwrap();
    let mut lines = exported(dir.path());
    let at = "2026-06-07T01:32:07Z";
    assert!(lines[1].contains(at));
    // Same instant, other notation: still clean (the hash covers the instant).
    let same = lines
        .clone()
        .into_iter()
        .map(|l| l.replace(at, "2026-06-07T03:32:07.000+02:00"))
        .collect::<Vec<_>>();
    assert!(verify(&same).is_clean());
    lines[1] = lines[1].replace(at, "2026-06-07T01:32:08Z");
    assert_eq!(found(&verify(&lines)), [(2, Kind::BrokenChain)]);
}

#[test]
fn deleting_a_middle_record_is_a_sequence_violation_on_the_next_line_of_that_delegation() {
    let dir = tempfile::tempdir().unwrap();
    let mut lines = exported(dir.path());
    lines.remove(2); // b's queued
    assert_eq!(found(&verify(&lines)), [(3, Kind::Sequence)]);
}

#[test]
fn deleting_a_delegations_last_record_shows_it_pending_in_the_export_and_is_caught_by_the_stores_head()
 {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let mut lines = exported(&path);
    lines.remove(6); // d's delivered
    let verdict = verify(&lines);
    // From the JSON Lines alone the chain is still whole: no violation, but `d`
    // now stands out as pending.
    assert!(verdict.is_clean());
    let pending: Vec<&str> = verdict
        .pending
        .iter()
        .map(|p| p.delegation.as_str())
        .collect();
    assert_eq!(pending, ["c", "d"]);
    // The same deletion in the store is caught by its head, and by the store's
    // count of acknowledged records (one past the last stored record).
    {
        let db = support::raw_sled(&path);
        let records = audit_support::Keys {
            tree: db.open_tree("delegations").unwrap(),
        };
        records
            .remove(key::record(&"d".parse().unwrap(), 2))
            .unwrap();
        db.flush().unwrap();
    }
    let verdict = audit::audit_path(&path, &clock()).unwrap();
    // In format 3 the head and the records are one value: with its last record
    // cut out, the value's framing disagrees with its head, which names the
    // delegation.
    assert_eq!(
        found(&verdict),
        [(6, Kind::Malformed), (7, Kind::Sequence)],
        "{:?}",
        messages(&verdict)
    );
    assert_says(&verdict, 1, "at least 1 record was lost");
    assert_says(
        &verdict,
        0,
        "delegation `d`: the head says seq 2, and the value holds 1 records",
    );
}

#[test]
fn reordering_two_records_of_one_delegation_is_a_sequence_violation() {
    let dir = tempfile::tempdir().unwrap();
    let mut lines = exported(dir.path());
    lines.swap(2, 3);
    assert_eq!(found(&verify(&lines)), [(3, Kind::Sequence)]);
}

#[test]
fn reordering_records_of_different_delegations_changes_nothing_the_format_cares_about() {
    let dir = tempfile::tempdir().unwrap();
    let mut lines = exported(dir.path());
    lines.swap(1, 2); // a's delivered after b's queued: interleaving is allowed
    assert!(verify(&lines).is_clean());
}

#[test]
fn stripping_some_hashes_is_a_broken_chain_on_each_stripped_line() {
    let dir = tempfile::tempdir().unwrap();
    let mut lines = exported(dir.path());
    for n in [2, 5] {
        let mut value: serde_json::Value = serde_json::from_str(&lines[n]).unwrap();
        value.as_object_mut().unwrap().remove("hash");
        lines[n] = value.to_string();
    }
    assert_eq!(
        found(&verify(&lines)),
        [
            (3, Kind::BrokenChain),
            (4, Kind::Sequence),
            (6, Kind::BrokenChain),
            (7, Kind::Sequence)
        ]
    );
}

#[test]
fn stripping_every_hash_is_caught_when_hashes_are_required() {
    let dir = tempfile::tempdir().unwrap();
    let lines: Vec<String> = exported(dir.path())
        .iter()
        .map(|line| {
            let mut value: serde_json::Value = serde_json::from_str(line).unwrap();
            value.as_object_mut().unwrap().remove("hash");
            value.to_string()
        })
        .collect();
    // A log without hashes is a legal log...
    assert!(verify(&lines).is_clean());
    // ...so an auditor expecting an export requires them.
    let text = lines.join("\n");
    let options = Options {
        require_hashes: true,
    };
    let verdict = audit::verify_with(text.as_bytes(), &clock(), options, &mut |_| {}).unwrap();
    assert_eq!(verdict.violations[0].line, 1);
    assert!(
        verdict
            .violations
            .iter()
            .all(|v| matches!(v.kind, Kind::BrokenChain | Kind::Sequence))
    );
    let broken: Vec<u64> = verdict
        .violations
        .iter()
        .filter(|v| v.kind == Kind::BrokenChain)
        .map(|v| v.line)
        .collect();
    assert_eq!(broken, [1, 3, 5, 6]);
}
