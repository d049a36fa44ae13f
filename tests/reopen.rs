//! Guards promises 1 and 4 across a clean restart: what a ledger acknowledged is
//! there, unchanged, after the store is closed and opened again; and a store can be
//! open only once at a time, with a clear error instead of a hang.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::collections::BTreeMap;

use delegation_log::OpenError;
use delegation_log::{DelegationId, Error, Event, FailureReason, Ledger, Status};

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
    assert!(ledger.pending().unwrap().is_empty());
}
