//! Guards the index behind `pending`, `dead` and a task's attempts: its hints
//! are written before the appends they describe and never trusted, each one
//! verified against the delegation's head. A stale hint (an open hint of a
//! delegation since settled, a dead hint of an attempt since retried, a hint
//! whose append never happened, an unhint lost to a crash) is never listed, so
//! the index's answers are a full scan's answers; a retry waiting for its
//! `not_before` is pending with its `retry_at`; and a task's attempts read the
//! same from any attempt's id. Each test runs over memory, fault-injecting,
//! sled and (with the `postgres` feature and a server) PostgreSQL stores.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

#[cfg(feature = "postgres")]
mod pg_support;
mod support;

use std::sync::Arc;
use std::time::Duration;

use delegation_log::event::{Failed, Queued};
use delegation_log::ledger::Options;
use delegation_log::ledger::Waiting;
use delegation_log::store::index::Set;
use delegation_log::store::{Faulty, Hint, Memory, Sled, Store};
use delegation_log::{Clock, Event, FailureReason, Ledger, ManualClock, StatusKind, Timestamp};
use support::id;

/// Runs `check` on a ledger with a manual clock over an empty store of every
/// kind, with the store itself for raw hint writes.
fn each_ledger(check: impl Fn(&Ledger, &ManualClock, &Arc<dyn Store>)) {
    let dir = tempfile::tempdir().unwrap();
    #[allow(unused_mut)]
    let mut stores: Vec<(&str, Arc<dyn Store>)> = vec![
        ("memory", Arc::new(Memory::new())),
        ("faulty", Arc::new(Faulty::seeded(3))),
        ("sled", Arc::new(Sled::open(dir.path().join("db")).unwrap())),
    ];
    #[cfg(feature = "postgres")]
    let schema = pg_support::fresh("index_hints");
    #[cfg(feature = "postgres")]
    if let Some(schema) = &schema {
        stores.push(("postgres", schema.store.clone()));
    }
    for (name, store) in stores {
        eprintln!("store: {name}");
        assert!(store.index().is_some(), "{name} keeps an index");
        let clock = ManualClock::default();
        let ledger = Ledger::with_store(store.clone(), Options::new().clock(clock.clone()));
        check(&ledger, &clock, &store);
    }
}

fn queued(target: &str) -> Event {
    Event::Queued(Queued::new("planner", target))
}

fn failed(detail: &str) -> Failed {
    Failed {
        reason: FailureReason::TargetOffline,
        detail: Some(detail.to_owned()),
    }
}

fn offline(detail: &str) -> Event {
    Event::Failed(failed(detail))
}

fn pending_ids(ledger: &Ledger) -> Vec<String> {
    let mut ids: Vec<String> = ledger
        .pending(None)
        .unwrap()
        .into_iter()
        .map(|p| p.id.to_string())
        .collect();
    ids.sort();
    ids
}

fn dead_ids(ledger: &Ledger) -> Vec<String> {
    let mut ids: Vec<String> = ledger
        .dead()
        .unwrap()
        .into_iter()
        .map(|d| d.last.to_string())
        .collect();
    ids.sort();
    ids
}

fn hinted(store: &Arc<dyn Store>, set: Set) -> Vec<String> {
    let mut ids: Vec<String> = store
        .index()
        .unwrap()
        .hinted(set)
        .map(|id| id.unwrap().to_string())
        .collect();
    ids.sort();
    ids
}

#[test]
fn a_stale_open_hint_for_a_settled_delegation_is_not_listed() {
    each_ledger(|ledger, _, store| {
        let (a, b) = (id("a"), id("b"));
        ledger.record(&a, queued("t")).unwrap();
        ledger.record(&b, queued("t")).unwrap();
        ledger
            .record(&a, Event::delivered(Some(200)).unwrap())
            .unwrap();
        assert_eq!(hinted(store, Set::Open), ["b"], "settling removes the hint");
        // As if the removal after the settling append had been lost.
        store
            .index()
            .unwrap()
            .hint(&[Hint::Open(a.clone())])
            .unwrap();
        assert_eq!(hinted(store, Set::Open), ["a", "b"]);
        assert_eq!(pending_ids(ledger), ["b"]);
    });
}

#[test]
fn a_stale_dead_hint_for_a_retried_original_is_not_listed() {
    each_ledger(|ledger, _, store| {
        let (a, retry, c) = (id("a"), id("a.r1"), id("c"));
        ledger.record(&a, queued("t")).unwrap();
        ledger
            .retry(&a, failed("down"), &retry, Queued::new("planner", "t"))
            .unwrap();
        ledger.record(&c, queued("t")).unwrap();
        ledger.record(&c, offline("down")).unwrap();
        assert_eq!(
            hinted(store, Set::Dead),
            ["c"],
            "a retried failure is not dead"
        );
        store
            .index()
            .unwrap()
            .hint(&[Hint::Dead(a.clone())])
            .unwrap();
        assert_eq!(dead_ids(ledger), ["c"]);
        assert_eq!(pending_ids(ledger), ["a.r1"]);
    });
}

#[test]
fn a_hint_whose_append_never_happened_is_not_listed() {
    each_ledger(|ledger, _, store| {
        let ghost = id("ghost");
        store
            .index()
            .unwrap()
            .hint(&[
                Hint::Open(ghost.clone()),
                Hint::Dead(ghost.clone()),
                Hint::Link {
                    from: ghost.clone(),
                    to: id("nobody"),
                },
            ])
            .unwrap();
        assert!(pending_ids(ledger).is_empty());
        assert!(dead_ids(ledger).is_empty());
        assert!(ledger.attempts(&ghost).unwrap().is_none());
    });
}

#[test]
fn a_link_to_a_delegation_that_does_not_retry_it_is_not_followed() {
    each_ledger(|ledger, _, store| {
        let (a, b) = (id("a"), id("b"));
        ledger.record(&a, queued("t")).unwrap();
        ledger.record(&a, offline("down")).unwrap();
        ledger.record(&b, queued("t")).unwrap();
        store
            .index()
            .unwrap()
            .hint(&[Hint::Link {
                from: a.clone(),
                to: b.clone(),
            }])
            .unwrap();
        let attempts = ledger.attempts(&a).unwrap().unwrap();
        assert_eq!((attempts.latest.as_str(), attempts.count), ("a", 1));
        assert!(attempts.exhausted);
        assert_eq!(dead_ids(ledger), ["a"]);
        // A task never retried: its status reads as it always has.
        assert!(ledger.task_status(&a).unwrap().attempts.is_none());
    });
}

/// The crash the contract allows: the settling append is durable, the removal
/// of the open hint after it is lost. Made on the fault-injecting store (a
/// durable ledger flushes before it removes the hint; the crash loses what was
/// not flushed).
#[test]
fn a_crash_between_the_settling_append_and_the_unhint_leaves_a_correct_answer() {
    let store = Arc::new(Faulty::seeded(5));
    let ledger = Ledger::with_store(store.clone(), Options::new());
    let (a, b) = (id("a"), id("b"));
    ledger.record(&a, queued("t")).unwrap();
    ledger.record(&b, queued("t")).unwrap();
    ledger.record(&a, Event::delivered(None).unwrap()).unwrap();
    ledger.record(&b, offline("down")).unwrap();
    store.crash();
    let ledger = Ledger::with_store(store.clone(), Options::new());
    let store: Arc<dyn Store> = store;
    // a's removal was flushed by b's settling; b's, the last write, was lost.
    assert_eq!(
        hinted(&store, Set::Open),
        ["b"],
        "the last removal was lost"
    );
    assert!(pending_ids(&ledger).is_empty());
    assert_eq!(dead_ids(&ledger), ["b"]);
    assert_eq!(ledger.status(&a).unwrap().status, StatusKind::Delivered);
}

/// And the crash before: a hint written, its append lost.
#[test]
fn a_crash_after_a_hint_and_before_its_append_lists_nothing() {
    let store = Arc::new(Faulty::seeded(6));
    let ledger = Ledger::with_store(
        store.clone(),
        Options::new().durability(delegation_log::Durability::Buffered),
    );
    let a = id("a");
    ledger.record(&a, queued("t")).unwrap();
    store.flush().unwrap();
    ledger.record(&a, offline("down")).unwrap();
    // Tears the last append: the dead hint written before it is durable.
    assert!(store.crash_tearing());
    let store_dyn: Arc<dyn Store> = store.clone();
    assert_eq!(hinted(&store_dyn, Set::Dead), ["a"]);
    let ledger = Ledger::with_store(store_dyn, Options::new());
    // The head is still the `queued` one: the stale dead hint is not listed,
    // and the delegation is pending.
    assert!(ledger.dead().unwrap().is_empty());
    assert_eq!(pending_ids(&ledger), ["a"]);
}

#[test]
fn pending_lists_a_retry_waiting_with_its_retry_at_and_then_in_flight() {
    each_ledger(|ledger, clock, _| {
        let (a, retry) = (id("a"), id("a.r1"));
        ledger.record(&a, queued("http://agent/a2a")).unwrap();
        clock.advance(Duration::from_secs(5));
        let at = Timestamp::from_unix_nanos(clock.now().unix_nanos().unwrap() + 60_000_000_000);
        ledger
            .retry(
                &a,
                failed("down"),
                &retry,
                Queued {
                    not_before: Some(at),
                    ..Queued::new("planner", "http://agent/a2a")
                },
            )
            .unwrap();
        clock.advance(Duration::from_secs(10));
        let pending = ledger.pending(None).unwrap();
        assert_eq!(pending.len(), 1);
        let entry = &pending[0];
        assert_eq!((entry.id.as_str(), entry.first.as_str()), ("a.r1", "a"));
        assert_eq!(
            (entry.attempt, entry.target.as_str()),
            (2, "http://agent/a2a")
        );
        assert_eq!(entry.waiting, Waiting::RetryAt(at));
        assert_eq!(entry.age, Duration::from_secs(10));
        let attempts = ledger.attempts(&a).unwrap().unwrap();
        assert_eq!(attempts.next_attempt_at, Some(at));
        assert!(!attempts.exhausted);

        assert!(
            ledger
                .pending(Some(Duration::from_secs(11)))
                .unwrap()
                .is_empty()
        );
        clock.advance(Duration::from_secs(60));
        let pending = ledger.pending(Some(Duration::from_secs(11))).unwrap();
        assert_eq!(pending[0].waiting, Waiting::InFlight);
        assert_eq!(ledger.attempts(&a).unwrap().unwrap().next_attempt_at, None);
    });
}

#[test]
fn a_tasks_attempts_read_the_same_from_its_first_middle_and_last_id() {
    each_ledger(|ledger, clock, _| {
        let ids = [id("t"), id("t.r1"), id("t.r2")];
        ledger.record(&ids[0], queued("x")).unwrap();
        for pair in ids.windows(2) {
            clock.advance(Duration::from_secs(1));
            ledger
                .retry(
                    &pair[0],
                    failed("down"),
                    &pair[1],
                    Queued::new("planner", "x"),
                )
                .unwrap();
        }
        clock.advance(Duration::from_secs(1));
        ledger.record(&ids[2], offline("still down")).unwrap();
        let from_first = ledger.attempts(&ids[0]).unwrap().unwrap();
        for other in &ids[1..] {
            assert_eq!(
                ledger.attempts(other).unwrap().unwrap(),
                from_first,
                "{other}"
            );
        }
        assert_eq!(from_first.first.as_str(), "t");
        assert_eq!(from_first.latest.as_str(), "t.r2");
        assert_eq!(from_first.latest_status, StatusKind::Failed);
        assert_eq!(from_first.count, 3);
        assert!(from_first.exhausted);
        let failure = from_first.last_failure.unwrap();
        assert_eq!(
            (failure.id.as_str(), failure.detail.as_deref()),
            ("t.r2", Some("still down"))
        );

        let dead = ledger.dead().unwrap();
        assert_eq!(dead.len(), 1);
        assert_eq!(
            (dead[0].first.as_str(), dead[0].last.as_str()),
            ("t", "t.r2")
        );
        assert_eq!(dead[0].attempts, 3);
        // The task's status, from its first id, is its latest attempt's, with
        // the task's attempts; `status` of an id stays that delegation's own.
        let status = ledger.task_status(&ids[0]).unwrap();
        assert_eq!(status.id.as_str(), "t.r2");
        assert_eq!(status.status, StatusKind::Failed);
        assert_eq!(status.attempts.unwrap().latest.as_str(), "t.r2");
        let own = ledger.status(&ids[0]).unwrap();
        assert_eq!(own.id, ids[0]);
        assert!(own.attempts.is_none());
    });
}

#[test]
fn a_delivered_task_is_neither_pending_nor_dead() {
    each_ledger(|ledger, _, store| {
        let (a, retry) = (id("a"), id("a.r1"));
        ledger.record(&a, queued("x")).unwrap();
        ledger
            .retry(&a, failed("down"), &retry, Queued::new("planner", "x"))
            .unwrap();
        ledger
            .record(&retry, Event::delivered(None).unwrap())
            .unwrap();
        assert!(pending_ids(ledger).is_empty());
        assert!(dead_ids(ledger).is_empty());
        assert!(hinted(store, Set::Open).is_empty());
        assert!(hinted(store, Set::Dead).is_empty());
        let attempts = ledger.attempts(&a).unwrap().unwrap();
        assert_eq!(
            (attempts.count, attempts.latest_status),
            (2, StatusKind::Delivered)
        );
        assert!(!attempts.exhausted);
    });
}

/// Recovery's cleaning pass removes only dead hints that can never be true
/// again (of a delivered or retried delegation). Open hints stay: one of a
/// settled delegation is left out by `pending`'s check of the head, and one
/// whose delegation has no head yet, or is still `queued`, may belong to a
/// writer between its hint and its append.
#[test]
fn cleaning_removes_only_dead_hints_that_can_never_be_true_again() {
    each_ledger(|ledger, _, store| {
        let (a, b, c, retry) = (id("a"), id("b"), id("c"), id("c.r1"));
        ledger.record(&a, queued("t")).unwrap();
        ledger.record(&a, Event::delivered(None).unwrap()).unwrap();
        ledger.record(&b, queued("t")).unwrap();
        ledger.record(&c, queued("t")).unwrap();
        ledger
            .retry(&c, failed("down"), &retry, Queued::new("planner", "t"))
            .unwrap();
        let index = store.index().unwrap();
        index
            .hint(&[
                Hint::Open(a.clone()),
                Hint::Dead(a.clone()),
                Hint::Dead(b.clone()),
                Hint::Dead(c.clone()),
                Hint::Open(id("in-the-making")),
            ])
            .unwrap();
        assert_eq!(ledger.clean_index().unwrap(), 2);
        assert_eq!(
            hinted(store, Set::Open),
            ["a", "b", "c.r1", "in-the-making"]
        );
        assert_eq!(hinted(store, Set::Dead), ["b"]);
        assert_eq!(pending_ids(ledger), ["b", "c.r1"]);
        assert!(dead_ids(ledger).is_empty());
    });
}

/// Found by the model test (`proptest-regressions/ledger_agrees_with_model.txt`): a settlement
/// lost with a failed flush, seen again by a reopened ledger, must not cost its
/// delegation the open hint. `queued` is durable; recovery's settlement is
/// written, but its flush fails and poisons the ledger; a ledger reopened
/// over the same store reads the lost settlement as if it were there and
/// recovers (and cleans); a flush, then a crash: the delegation is `queued`
/// again, and `pending` must list it.
#[test]
fn a_settlement_lost_with_a_failed_flush_does_not_cost_its_delegation_the_open_hint() {
    use delegation_log::store::Fault;

    let faulty = Arc::new(Faulty::seeded(7));
    let store: Arc<dyn Store> = faulty.clone();
    let clock = ManualClock::default();
    let options = || Options::new().clock(clock.clone());
    let a = id("a");
    let ledger = Ledger::with_store(store.clone(), options());
    ledger.record(&a, queued("t")).unwrap();
    faulty.inject(Fault::FailFlush);
    assert!(ledger.recover().is_err(), "the settlement's flush fails");
    drop(ledger);

    let reopened = Ledger::with_store(store.clone(), options());
    assert_eq!(reopened.status(&a).unwrap().status, StatusKind::Failed);
    reopened.recover().unwrap();
    assert!(pending_ids(&reopened).is_empty());
    reopened.flush().unwrap();
    drop(reopened);
    faulty.crash();

    let after = Ledger::with_store(store, options());
    assert_eq!(after.status(&a).unwrap().status, StatusKind::Queued);
    assert_eq!(pending_ids(&after), ["a"]);
}
