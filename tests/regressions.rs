//! Named regression tests for bugs the verification suites found, one per bug,
//! each reduced to the smallest sequence that showed it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::sync::Arc;

use delegation_log::StorageError;
use delegation_log::store::{Fault, Faulty, Store};
use delegation_log::{Durability, Error, Event, Ledger, ManualClock, Options, StatusKind};

fn buffered(store: &Arc<Faulty>) -> Ledger {
    let store: Arc<dyn Store> = store.clone();
    Ledger::with_store(
        store,
        Options::new()
            .durability(Durability::Buffered)
            .clock(ManualClock::default()),
    )
}

/// Found by `tests/model.rs`: in buffered mode `Ledger::flush` returned `Ok`
/// without flushing the store (no writer had taken a group-commit ticket), so an
/// event it claimed durable was lost in the next crash.
#[test]
fn an_explicit_flush_in_buffered_mode_makes_buffered_events_survive_a_crash() {
    let store = Arc::new(Faulty::seeded(1));
    let ledger = buffered(&store);
    let id = "d".parse().unwrap();
    ledger
        .record(&id, Event::queued("planner", "reviewer"))
        .unwrap();
    ledger.flush().unwrap();
    assert_eq!(store.pending(), 0, "the flush did not reach the store");
    store.crash();
    let ledger = buffered(&store);
    assert_eq!(ledger.status(&id).unwrap().status, StatusKind::Queued);
}

/// Found with the previous one: an explicit flush that does not reach the store
/// cannot report the store's flush failure either.
#[test]
fn an_explicit_flush_reports_a_failing_store_and_poisons_the_ledger() {
    let store = Arc::new(Faulty::seeded(1));
    let ledger = Ledger::with_store(store.clone(), Options::new().clock(ManualClock::default()));
    store.inject(Fault::FailFlush);
    assert!(matches!(
        ledger.flush(),
        Err(Error::Storage(StorageError::Io(_)))
    ));
    let id = "d".parse().unwrap();
    assert!(matches!(
        ledger.record(&id, Event::queued("planner", "reviewer")),
        Err(Error::Poisoned { .. })
    ));
}

/// Found by `tests/model.rs`: one damaged delegation (here, torn by a crash) made
/// `recover` give up before settling anything, leaving every other delegation of
/// the dead process queued for ever.
#[test]
fn recover_settles_every_readable_delegation_even_when_another_is_damaged() {
    let store = Arc::new(Faulty::seeded(1));
    let ledger = buffered(&store);
    let torn = "a".parse().unwrap();
    ledger
        .record(&torn, Event::queued("planner", "reviewer"))
        .unwrap();
    assert!(store.crash_tearing());
    let ledger = buffered(&store);
    let intact = "b".parse().unwrap();
    ledger
        .record(&intact, Event::queued("planner", "reviewer"))
        .unwrap();

    assert!(matches!(ledger.recover(), Err(Error::Corrupt { .. })));
    assert_eq!(ledger.status(&intact).unwrap().status, StatusKind::Failed);
    assert!(matches!(ledger.history(&torn), Err(Error::Corrupt { .. })));
    // The torn `queued` never got its head: `status`, which reads the head, has
    // never heard of it, and neither has anyone it was acknowledged to durably.
    assert_eq!(ledger.status(&torn).unwrap().status, StatusKind::NotFound);
}

/// Hardening review, defect 11: after a failed flush, `record(delivered)`
/// returned an error, yet `status` said `Delivered`; after the crash that
/// followed it was `Queued`. A poisoned ledger now refuses reads as well as
/// writes, so it never serves a state a crash can undo.
#[test]
fn a_poisoned_ledger_refuses_reads_that_could_show_an_unacknowledged_outcome() {
    let store = Arc::new(Faulty::seeded(1));
    let durable =
        || Ledger::with_store(store.clone(), Options::new().clock(ManualClock::default()));
    let ledger = durable();
    let id = "d".parse().unwrap();
    ledger
        .record(&id, Event::queued("planner", "reviewer"))
        .unwrap();
    store.inject(Fault::FailFlush);
    assert!(
        ledger
            .record(&id, Event::delivered(Some(200)).unwrap())
            .is_err()
    );
    let poisoned = |result: Result<(), Error>| matches!(result, Err(Error::Poisoned { .. }));
    assert!(poisoned(ledger.status(&id).map(drop)));
    assert!(poisoned(ledger.delegation(&id).map(drop)));
    assert!(poisoned(ledger.history(&id).map(drop)));
    assert!(poisoned(ledger.pending().map(drop)));
    assert!(poisoned(ledger.recover().map(drop)));
    assert!(poisoned(ledger.export(Vec::new()).map(drop)));
    let replayed: Vec<_> = ledger.replay().collect();
    assert_eq!(replayed.len(), 1);
    assert!(matches!(replayed[0], Err(Error::Poisoned { .. })));
    assert!(matches!(
        ledger.audit(),
        Err(delegation_log::AuditError::Store(Error::Poisoned { .. }))
    ));

    store.crash();
    let reopened = durable();
    assert_eq!(reopened.status(&id).unwrap().status, StatusKind::Queued);
}
