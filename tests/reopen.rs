//! Guards promises 1 and 4 across a clean restart: what a ledger acknowledged is
//! there, unchanged, after the store is closed and opened again; a store can be
//! open only once at a time, with a clear error instead of a hang; and recovery
//! after a restart settles every readable delegation left queued, even when
//! another is damaged.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::collections::BTreeMap;

use std::sync::Arc;

use delegation_log::ledger::Options;
use delegation_log::store::Faulty;
use delegation_log::{
    DelegationId, Durability, Error, Event, FailureReason, Ledger, ManualClock, OpenError,
    ReadError, Status, StatusKind,
};

fn statuses(ledger: &Ledger, ids: &[DelegationId]) -> BTreeMap<DelegationId, Status> {
    ids.iter()
        .map(|id| (id.clone(), ledger.status(id).unwrap()))
        .collect()
}

#[test]
fn reopening_the_store_gives_every_status_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log");
    let ids: Vec<DelegationId> = (0..60).map(|n| format!("d-{n}").parse().unwrap()).collect();
    let before = {
        let ledger = Ledger::open(&path).unwrap();
        for (n, id) in ids.iter().enumerate() {
            ledger
                .record(id, Event::queued("planner", format!("agent-{}", n % 7)))
                .unwrap();
            let outcome = match n % 4 {
                0 => Some(Event::delivered(Some(200)).unwrap()),
                1 => Some(
                    Event::failed(FailureReason::HttpStatus(503), Some("busy".into())).unwrap(),
                ),
                2 => Some(Event::failed(FailureReason::TargetOffline, None).unwrap()),
                _ => None,
            };
            if let Some(outcome) = outcome {
                ledger.record(id, outcome).unwrap();
            }
        }
        statuses(&ledger, &ids)
    };
    let ledger = Ledger::open(&path).unwrap();
    assert_eq!(statuses(&ledger, &ids), before);
    let replayed: BTreeMap<DelegationId, Status> = ledger
        .replay()
        .map(|d| {
            let d = d.unwrap();
            (d.id.clone(), d.status())
        })
        .collect();
    assert_eq!(replayed, before);
}

#[test]
fn a_second_open_of_the_same_path_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log");
    let first = Ledger::open(&path).unwrap();
    match Ledger::open(&path) {
        Err(Error::Open(OpenError::Locked { path: locked })) => assert_eq!(locked, path),
        other => panic!("expected Locked, got {other:?}"),
    }
    drop(first);
}

#[test]
fn recovery_after_reopen_settles_what_was_left_queued() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log");
    let id: DelegationId = "in-flight".parse().unwrap();
    {
        let ledger = Ledger::open(&path).unwrap();
        ledger
            .record(&id, Event::queued("planner", "slow-agent"))
            .unwrap();
    }
    let ledger = Ledger::open(&path).unwrap();
    assert_eq!(ledger.recover().unwrap(), vec![id.clone()]);
    let status = ledger.status(&id).unwrap();
    assert_eq!(
        status.reason,
        Some(delegation_log::event::ReasonCode::Interrupted)
    );
    assert!(ledger.queued().unwrap().is_empty());
}

// Regression (tests/ledger_agrees_with_model.rs): one damaged delegation stopped
// `recover` settling the others.
#[test]
fn recover_settles_every_readable_delegation_even_when_another_is_damaged() {
    let store = Arc::new(Faulty::seeded(1));
    let ledger = Ledger::with_store(store.clone(), buffered());
    let torn = "a".parse().unwrap();
    ledger
        .record(&torn, Event::queued("planner", "reviewer"))
        .unwrap();
    assert!(store.crash_tearing());
    let ledger = Ledger::with_store(store.clone(), buffered());
    let intact = "b".parse().unwrap();
    ledger
        .record(&intact, Event::queued("planner", "reviewer"))
        .unwrap();

    assert!(matches!(ledger.recover(), Err(Error::Corrupt { .. })));
    assert_eq!(ledger.status(&intact).unwrap().status, StatusKind::Failed);
    assert!(matches!(
        ledger.history(&torn),
        Err(ReadError::Corrupt { .. })
    ));
    // The torn `queued` never got its head: `status`, which reads the head, has
    // never heard of it, and neither has anyone it was acknowledged to durably.
    assert_eq!(ledger.status(&torn).unwrap().status, StatusKind::NotFound);
}

/// Buffered, with a fixed clock.
fn buffered() -> Options {
    Options::new()
        .durability(Durability::Buffered)
        .clock(ManualClock::default())
}
