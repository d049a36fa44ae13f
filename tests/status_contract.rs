//! Guards the status contract: what a sender's `check_task_status` sees for each
//! state, as JSON, with every field always present, and a retry's two more
//! (`attempt`, `retry_of`) present only on a retry. Times come from a manual
//! clock, so the snapshots are exact.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::sync::Arc;
use std::time::Duration;

use delegation_log::ledger::Options;
use delegation_log::store::Memory;
use delegation_log::{Event, FailureReason, Ledger, ManualClock, StatusKind};

fn ledger() -> (Ledger, ManualClock) {
    let clock = ManualClock::default();
    let ledger = Ledger::with_store(Arc::new(Memory::new()), Options::new().clock(clock.clone()));
    (ledger, clock)
}

fn settle(outcome: Option<Event>) -> serde_json::Value {
    let (ledger, clock) = ledger();
    let id = "task-7".parse().unwrap();
    ledger
        .record(&id, Event::queued("planner", "http://127.0.0.1:8080/a2a"))
        .unwrap();
    clock.advance(Duration::from_millis(1250));
    if let Some(outcome) = outcome {
        ledger.record(&id, outcome).unwrap();
    }
    serde_json::to_value(ledger.status(&id).unwrap()).unwrap()
}

#[test]
fn a_queued_delegation_reports_queued_with_no_outcome() {
    insta::assert_json_snapshot!(settle(None));
}

#[test]
fn a_delivered_delegation_reports_its_2xx_status() {
    insta::assert_json_snapshot!(settle(Some(Event::delivered(Some(202)).unwrap())));
}

#[test]
fn a_failed_delegation_reports_reason_status_and_detail() {
    let outcomes = [
        FailureReason::TargetOffline,
        FailureReason::HttpStatus(503),
        FailureReason::MarshalError,
        FailureReason::Timeout,
        FailureReason::Interrupted,
    ]
    .map(|reason| {
        let detail = format!("detail for {reason}");
        settle(Some(Event::failed(reason, Some(detail)).unwrap()))
    });
    insta::assert_json_snapshot!(outcomes);
}

#[test]
fn an_unknown_id_is_its_own_answer_not_an_error() {
    let (ledger, _) = ledger();
    let status = ledger.status(&"never-seen".parse().unwrap()).unwrap();
    assert_eq!(status.status, StatusKind::NotFound);
    insta::assert_json_snapshot!(status);
}

#[test]
fn a_retry_reports_its_attempt_and_the_delegation_it_retries() {
    let (ledger, clock) = ledger();
    let original = "task-7".parse().unwrap();
    let retry = "task-7.r1".parse().unwrap();
    ledger
        .record(
            &original,
            Event::queued("planner", "http://127.0.0.1:8080/a2a"),
        )
        .unwrap();
    clock.advance(Duration::from_millis(1250));
    ledger
        .retry(
            &original,
            delegation_log::event::Failed {
                reason: FailureReason::Interrupted,
                detail: Some("redelivered as task-7.r1".into()),
            },
            &retry,
            delegation_log::event::Queued::new("planner", "http://127.0.0.1:8080/a2a"),
        )
        .unwrap();
    let statuses = [
        ledger.status(&original).unwrap(),
        ledger.status(&retry).unwrap(),
    ];
    assert_eq!(statuses[1].status, StatusKind::Queued);
    insta::assert_json_snapshot!(statuses);
}
