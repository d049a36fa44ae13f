//! Guards the retry fields of `EVENT-LOG-FORMAT.md` (`retry_of`, `attempt`,
//! `not_before` on `queued`) and the verdict kind `retry_link`, clause by clause:
//! a retry must name a delegation that failed on an earlier line, that no earlier
//! line already retried, and its `attempt` must be one more than that
//! delegation's; `attempt` without `retry_of` (or below 2) is `malformed`; and
//! `retry_link` comes last in precedence. The ledger writes a retry only with the
//! failure it retries (`Ledger::retry`) and refuses every broken link; `audit`
//! judges a store's retries the same way; and `export` writes an original's
//! failure before its retry, whatever the store's order, and otherwise keeps the
//! store's order.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod audit_support;
mod support;

use std::sync::Arc;

use audit_support::{assert_says, clock, delivered, failed, hashed, log, queued, verify};
use delegation_log::audit::Kind;
use delegation_log::delegation::Fold;
use delegation_log::event::{Failed, Queued};
use delegation_log::ledger::Options;
use delegation_log::store::{Append, Expect, Memory, Store};
use delegation_log::{Error, Event, FailureReason, Ledger, ManualClock, Record, StatusKind};
use support::id;

/// A `queued` line retrying `of` as attempt `attempt`.
fn retry(id: &str, of: &str, attempt: u64) -> String {
    format!(
        r#"{{"delegation":"{id}","seq":1,"event":"queued","source":"planner","target":"reviewer","retry_of":"{of}","attempt":{attempt},"at":"2026-06-07T01:32:10Z"}}"#
    )
}

/// Each violation as (line, kind name).
fn kinds(lines: &[String]) -> Vec<(u64, String)> {
    verify(&log(lines))
        .violations
        .iter()
        .map(|violation| (violation.line, violation.kind.as_str().to_owned()))
        .collect()
}

fn at(line: u64, kind: &str) -> Vec<(u64, String)> {
    vec![(line, kind.to_owned())]
}

fn link(line: u64) -> Vec<(u64, String)> {
    at(line, "retry_link")
}

fn message(lines: &[String]) -> String {
    verify(&log(lines)).violations[0].message.clone()
}

#[test]
fn a_retry_naming_no_delegation_is_a_retry_link_violation() {
    assert_eq!(kinds(&[retry("x.r1", "x", 2)]), link(1));
    // Nor may a retry name itself.
    assert_eq!(kinds(&[retry("x", "x", 2)]), link(1));
}

#[test]
fn a_retry_of_a_delegation_that_has_not_failed_on_an_earlier_line_is_a_retry_link_violation() {
    // Queued, not yet failed: the failure comes on a later line.
    let lines = [queued("x", 1), retry("x.r1", "x", 2), failed("x", 2)];
    assert_eq!(kinds(&lines), link(2));
    assert!(
        message(&lines).contains("has not failed: it is queued"),
        "{}",
        message(&lines)
    );
    // Delivered is no failure.
    let lines = [queued("x", 1), delivered("x", 2), retry("x.r1", "x", 2)];
    assert_eq!(kinds(&lines), link(3));
}

#[test]
fn a_second_retry_of_one_delegation_is_a_retry_link_violation() {
    let lines = [
        queued("x", 1),
        failed("x", 2),
        retry("x.r1", "x", 2),
        retry("x.r2", "x", 2),
    ];
    assert_eq!(kinds(&lines), link(4));
    assert!(message(&lines).contains("`x.r1` already retried"));
}

#[test]
fn a_retry_whose_attempt_is_not_one_more_than_its_originals_is_a_retry_link_violation() {
    assert_eq!(
        kinds(&[queued("x", 1), failed("x", 2), retry("x.r1", "x", 3)]),
        link(3)
    );
    // Along a chain: x.r1 is attempt 2, so its retry is attempt 3.
    let chain = |attempt| {
        kinds(&[
            queued("x", 1),
            failed("x", 2),
            retry("x.r1", "x", 2),
            failed("x.r1", 2),
            retry("x.r2", "x.r1", attempt),
        ])
    };
    assert_eq!(chain(2), link(5));
    assert_eq!(chain(3), vec![]);
}

#[test]
fn attempt_without_retry_of_or_below_2_and_retry_of_without_attempt_are_malformed() {
    let base = r#""delegation":"x","seq":1,"event":"queued","source":"planner","target":"reviewer","at":"2026-06-07T01:32:07Z""#;
    for fields in [
        r#","attempt":2"#,
        r#","retry_of":"o","attempt":1"#,
        r#","retry_of":"o","attempt":0"#,
        r#","retry_of":"o","attempt":-2"#,
        r#","retry_of":"o","attempt":2.5"#,
        r#","retry_of":"o","attempt":"2""#,
        r#","retry_of":"o""#,
        r#","retry_of":null,"attempt":2"#,
        r#","retry_of":"o","attempt":null"#,
        r#","retry_of":"","attempt":2"#,
        r#","retry_of":7,"attempt":2"#,
        r#","not_before":"tomorrow""#,
        r#","not_before":null"#,
    ] {
        let line = format!("{{{base}{fields}}}");
        assert_eq!(
            kinds(std::slice::from_ref(&line)),
            at(1, "malformed"),
            "{line}"
        );
    }
}

#[test]
fn a_chain_of_retries_with_not_before_verifies_clean() {
    let lines = [
        queued("x", 1),
        failed("x", 2),
        retry("x.r1", "x", 2).replace(
            r#""attempt":2"#,
            r#""attempt":2,"not_before":"2026-06-07T03:32:10+02:00""#,
        ),
        failed("x.r1", 2),
        retry("x.r2", "x.r1", 3),
        delivered("x.r2", 2),
    ];
    let verdict = verify(&log(&hashed(&lines)));
    assert!(verdict.is_clean(), "{}", verdict.to_plain());
    assert_eq!(
        (
            verdict.states.failed,
            verdict.states.delivered,
            verdict.delegations
        ),
        (2, 1, 3)
    );
}

#[test]
fn retry_link_comes_last_in_precedence_and_a_rejected_retry_is_not_applied() {
    // A bad hash outranks a bad link.
    let mut tampered: serde_json::Value =
        serde_json::from_str(&hashed(&[retry("x.r1", "x", 2)])[0]).unwrap();
    tampered["hash"] = serde_json::Value::String("0".repeat(64));
    assert_eq!(kinds(&[tampered.to_string()]), at(1, "broken_chain"));
    // So does a bad seq.
    let late = retry("x.r1", "x", 2).replace(r#""seq":1"#, r#""seq":2"#);
    assert_eq!(kinds(&[late]), at(1, "sequence"));
    // The rejected retry is not applied: its outcome is judged as the
    // delegation's first record.
    assert_eq!(
        kinds(&[retry("x.r1", "x", 2), delivered("x.r1", 2)]),
        vec![(1, "retry_link".to_owned()), (2, "sequence".to_owned())]
    );
}

fn memory_ledger() -> (Arc<Memory>, Ledger) {
    let store = Arc::new(Memory::new());
    let ledger = Ledger::with_store(store.clone(), Options::new().clock(ManualClock::default()));
    (store, ledger)
}

fn interrupted(detail: &str) -> Failed {
    Failed {
        reason: FailureReason::Interrupted,
        detail: Some(detail.to_owned()),
    }
}

#[test]
fn the_ledger_writes_a_retry_only_with_the_failure_it_retries() {
    let (store, ledger) = memory_ledger();
    let (x, r1) = (id("x"), id("x.r1"));
    ledger
        .record(&x, Event::queued("planner", "reviewer"))
        .unwrap();
    let snapshot = |store: &Memory| store.scan().map(|s| s.unwrap()).collect::<Vec<_>>();
    let before = snapshot(&store);

    // On its own, a retry is refused.
    let alone = Event::Queued(Queued {
        retry_of: Some(x.clone()),
        attempt: Some(2),
        ..Queued::new("planner", "reviewer")
    });
    assert!(matches!(
        ledger.record(&r1, alone),
        Err(Error::RetryLink { .. })
    ));
    // A retry that says it retries another delegation, or another attempt.
    let other = Queued {
        retry_of: Some(id("y")),
        ..Queued::new("planner", "reviewer")
    };
    assert!(matches!(
        ledger.retry(&x, interrupted("r"), &r1, other),
        Err(Error::RetryLink { .. })
    ));
    let wrong = Queued {
        attempt: Some(3),
        ..Queued::new("planner", "reviewer")
    };
    assert!(matches!(
        ledger.retry(&x, interrupted("r"), &r1, wrong),
        Err(Error::RetryLink { .. })
    ));
    // A delegation retrying itself; a retry of what does not exist.
    assert!(matches!(
        ledger.retry(&x, interrupted("r"), &x, Queued::new("p", "t")),
        Err(Error::RetryLink { .. })
    ));
    assert!(matches!(
        ledger.retry(&id("ghost"), interrupted("r"), &r1, Queued::new("p", "t")),
        Err(Error::IllegalTransition { .. })
    ));
    assert_eq!(snapshot(&store), before, "a refused retry wrote something");

    let retried = ledger
        .retry(
            &x,
            interrupted("redelivered as x.r1"),
            &r1,
            Queued::new("planner", "reviewer"),
        )
        .unwrap();
    assert_eq!(retried.attempt, 2);
    assert_eq!(retried.failed.at, retried.queued.at);
    assert_eq!(ledger.status(&x).unwrap().status, StatusKind::Failed);
    let retry = ledger.delegation(&r1).unwrap().unwrap();
    assert_eq!((retry.retry_of, retry.attempt), (Some(x.clone()), 2));

    // Settled once, retried once: a second retry finds the original settled, and
    // a retry id that exists is refused.
    let before = snapshot(&store);
    assert!(matches!(
        ledger.retry(&x, interrupted("again"), &id("x.r9"), Queued::new("p", "t")),
        Err(Error::AlreadySettled { .. })
    ));
    ledger
        .record(&id("taken"), Event::queued("p", "t"))
        .unwrap();
    let before_taken = snapshot(&store);
    assert!(matches!(
        ledger.retry(&r1, interrupted("r"), &id("taken"), Queued::new("p", "t")),
        Err(Error::IllegalTransition { .. })
    ));
    assert_eq!(snapshot(&store), before_taken);
    assert_ne!(before, before_taken);

    let verdict = ledger.audit().unwrap();
    assert!(verdict.is_clean(), "{}", verdict.to_plain());
}

/// Appends `record` to the store as it is, chained to what the store holds: a
/// record the ledger itself would refuse to write.
fn plant(store: &Memory, mut record: Record) {
    let stream = store.history(&record.delegation).unwrap();
    let mut fold = Fold::new(record.delegation.clone());
    for entry in &stream.entries {
        fold.apply(&delegation_log::envelope::decode(&entry.bytes).unwrap())
            .unwrap();
    }
    record.hash = Some(record.chain_hash(&fold.hash()));
    fold.apply(&record).unwrap();
    let head = delegation_log::envelope::head::encode(fold.delegation().unwrap());
    store
        .append(&[Append {
            id: &record.delegation.clone(),
            expect: Expect::after(stream.entries.last().map_or(0, |e| e.seq)),
            record: &delegation_log::envelope::encode(&record),
            head: &head,
        }])
        .unwrap();
}

fn retry_record(id_: &str, of: &str, attempt: u64) -> Record {
    serde_json::from_str(&retry(id_, of, attempt)).unwrap()
}

#[test]
fn audit_reports_stored_retries_whose_original_is_missing_not_failed_or_retried_twice() {
    let (store, ledger) = memory_ledger();
    ledger
        .record(&id("queued"), Event::queued("p", "t"))
        .unwrap();
    ledger
        .record(&id("failed"), Event::queued("p", "t"))
        .unwrap();
    ledger
        .record(
            &id("failed"),
            Event::failed(FailureReason::Timeout, None).unwrap(),
        )
        .unwrap();
    plant(&store, retry_record("r-missing", "ghost", 2));
    plant(&store, retry_record("r-of-queued", "queued", 2));
    plant(&store, retry_record("r-first", "failed", 2));
    plant(&store, retry_record("r-second", "failed", 2));
    plant(&store, retry_record("r-attempt", "r-first", 2));

    let verdict = delegation_log::audit::audit(store.as_ref(), &clock()).unwrap();
    let found: Vec<(String, Kind)> = verdict
        .violations
        .iter()
        .map(|v| (v.delegation.clone().unwrap(), v.kind))
        .collect();
    let mut expected: Vec<(String, Kind)> = ["r-attempt", "r-missing", "r-second", "r-of-queued"]
        .iter()
        .map(|d| ((*d).to_owned(), Kind::RetryLink))
        .collect();
    // In scan order: by id length, then bytes.
    expected.sort_by_key(|(d, _)| (d.len(), d.clone()));
    // r-first is pending, so r-attempt's original has not failed either.
    assert_eq!(found, expected, "{}", verdict.to_plain());
    let messages = verdict.to_plain();
    assert!(
        messages.contains("retries `ghost`, which the store does not hold"),
        "{messages}"
    );
    assert!(messages.contains("`r-first` already retried"), "{messages}");
    assert!(
        messages.contains("has not failed: it is queued"),
        "{messages}"
    );
}

#[test]
fn audit_reports_a_retry_with_the_wrong_attempt() {
    let (store, ledger) = memory_ledger();
    ledger.record(&id("x"), Event::queued("p", "t")).unwrap();
    ledger
        .record(
            &id("x"),
            Event::failed(FailureReason::Timeout, None).unwrap(),
        )
        .unwrap();
    plant(&store, retry_record("x.r1", "x", 3));
    let verdict = ledger.audit().unwrap();
    assert_eq!(verdict.violations.len(), 1, "{}", verdict.to_plain());
    assert_eq!(verdict.violations[0].kind, Kind::RetryLink);
    assert_says(&verdict, 0, "attempt 3, but `x` is attempt 1");
}

#[test]
fn export_writes_an_originals_failure_before_its_retry_whatever_the_store_order() {
    let (_, ledger) = memory_ledger();
    // In the store's order (length first) each retry comes before its original.
    let ids = ["a-long-original-id", "retry-one", "r2"];
    ledger
        .record(&id(ids[0]), Event::queued("planner", "reviewer"))
        .unwrap();
    ledger
        .retry(
            &id(ids[0]),
            interrupted("once"),
            &id(ids[1]),
            Queued::new("planner", "reviewer"),
        )
        .unwrap();
    ledger
        .retry(
            &id(ids[1]),
            interrupted("twice"),
            &id(ids[2]),
            Queued::new("planner", "reviewer"),
        )
        .unwrap();
    ledger
        .record(&id("zz"), Event::queued("planner", "reviewer"))
        .unwrap();
    let order: Vec<_> = ledger
        .store()
        .scan()
        .map(|s| s.unwrap().id.to_string())
        .collect();
    assert_eq!(order, ["r2", "zz", "retry-one", "a-long-original-id"]);

    let mut exported = Vec::new();
    let counts = ledger.export(&mut exported).unwrap();
    assert_eq!((counts.records, counts.delegations), (6, 4));
    let lines: Vec<Record> = String::from_utf8(exported.clone())
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let written: Vec<_> = lines.iter().map(|r| r.delegation.to_string()).collect();
    assert_eq!(
        written,
        [
            "zz",
            "a-long-original-id",
            "a-long-original-id",
            "retry-one",
            "retry-one",
            "r2"
        ]
    );
    let verdict = delegation_log::audit::verify(exported.as_slice(), &clock()).unwrap();
    assert!(verdict.is_clean(), "{}", verdict.to_plain());

    // The export imports into an empty store and exports to the same bytes.
    let (_, copy) = memory_ledger();
    let imported = copy.import(exported.as_slice()).unwrap();
    assert_eq!(imported.stored, 6);
    let mut again = Vec::new();
    copy.export(&mut again).unwrap();
    assert_eq!(again, exported);
    assert!(copy.audit().unwrap().is_clean());
}

#[test]
fn export_keeps_the_store_order_for_a_retry_whose_original_comes_first() {
    let (_, ledger) = memory_ledger();
    // In the store's order (length first, then bytes) the original comes first,
    // so nothing needs holding back: the export is the store's order.
    ledger
        .record(&id("a"), Event::queued("planner", "reviewer"))
        .unwrap();
    ledger
        .retry(
            &id("a"),
            interrupted("once"),
            &id("bb"),
            Queued::new("planner", "reviewer"),
        )
        .unwrap();
    ledger
        .record(&id("cc"), Event::queued("planner", "reviewer"))
        .unwrap();

    let mut exported = Vec::new();
    ledger.export(&mut exported).unwrap();
    let written: Vec<String> = String::from_utf8(exported)
        .unwrap()
        .lines()
        .map(|line| {
            serde_json::from_str::<Record>(line)
                .unwrap()
                .delegation
                .to_string()
        })
        .collect();
    assert_eq!(written, ["a", "a", "bb", "cc"]);
}
