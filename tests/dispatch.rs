//! Guards the dispatcher's promises with in-process transports: every delegation
//! that `delegate` acknowledged ends in a recorded outcome once `shutdown` returns;
//! no delivery runs after it; concurrency stays within its bound; an outcome that
//! cannot be recorded is surfaced, not swallowed; ids are refused when taken; and
//! both recovery policies leave a visible trace in the log.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod delivery_support;
mod support;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use delegation_log::dispatch::{self, Dispatcher, Options, Recovery, Request};
use delegation_log::event::ReasonCode;
use delegation_log::store::{Fault, Faulty};
use delegation_log::transport::{Accepted, BoxFuture, Failure, Immediate, Message, Transport};
use delegation_log::{Error, Event, EventKind, FailureReason, Ledger, StatusKind};
use delivery_support::{memory_ledger, recording};
use support::id;

/// A transport that never answers, counting the sends in flight and the most seen
/// at once.
#[derive(Default)]
struct Silent {
    in_flight: Arc<AtomicUsize>,
    most: Arc<AtomicUsize>,
}

struct InFlight(Arc<AtomicUsize>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Transport for Silent {
    fn send(&self, _message: Message) -> BoxFuture<'_, Result<Accepted, Failure>> {
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.most.fetch_max(now, Ordering::SeqCst);
        let guard = InFlight(Arc::clone(&self.in_flight));
        Box::pin(async move {
            let _guard = guard;
            std::future::pending().await
        })
    }
}

/// A transport that answers 200 once its gate opens.
struct Gated(Arc<tokio::sync::Semaphore>);

impl Transport for Gated {
    fn send(&self, _message: Message) -> BoxFuture<'_, Result<Accepted, Failure>> {
        let gate = Arc::clone(&self.0);
        Box::pin(async move {
            let _open = gate.acquire().await;
            Ok(Accepted::status(200))
        })
    }
}

#[tokio::test]
async fn delegate_returns_a_queued_receipt_and_shutdown_leaves_it_settled() {
    let ledger = memory_ledger();
    let dispatcher = Dispatcher::new(ledger.clone(), Immediate::accepting());
    let receipt = dispatcher
        .delegate(Request::new("planner", "reviewer").id(id("t-1")))
        .await
        .unwrap();
    assert_eq!(receipt.status, StatusKind::Queued);
    assert_eq!(
        serde_json::to_value(&receipt).unwrap(),
        serde_json::json!({"id": "t-1", "status": "queued", "queued_at": "2026-06-07T01:32:07Z"})
    );
    let stats = dispatcher.shutdown().await.unwrap();
    assert_eq!((stats.queued, stats.delivered, stats.failed), (1, 1, 0));
    let kinds: Vec<_> = ledger
        .history(&id("t-1"))
        .unwrap()
        .iter()
        .map(|r| r.event.kind())
        .collect();
    assert_eq!(kinds, [EventKind::Queued, EventKind::Delivered]);
}

#[tokio::test]
async fn a_receipt_can_await_its_own_outcome() {
    let dispatcher = Dispatcher::new(
        memory_ledger(),
        Immediate::new(|_| Err(Failure::status(502, "bad gateway"))),
    );
    let receipt = dispatcher
        .delegate(Request::new("planner", "reviewer"))
        .await
        .unwrap();
    let settled = receipt.settled().await.unwrap();
    assert_eq!(
        settled.outcome,
        delegation_log::Outcome::Failed(delegation_log::event::Failed {
            reason: FailureReason::HttpStatus(502),
            detail: Some("bad gateway".into()),
        })
    );
    assert_eq!(settled.seq, 2);
    dispatcher.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_taken_id_is_refused_with_the_ledgers_typed_error() {
    let ledger = memory_ledger();
    let dispatcher = Dispatcher::new(ledger.clone(), Immediate::accepting());
    dispatcher
        .delegate(Request::new("planner", "reviewer").id(id("same")))
        .await
        .unwrap();
    let second = dispatcher
        .delegate(Request::new("planner", "other").id(id("same")))
        .await;
    // `IllegalTransition` while the first is queued, `AlreadySettled` once it is
    // delivered: either way a refusal that wrote nothing.
    assert!(
        matches!(&second, Err(dispatch::Error::Ledger(e)) if e.is_refusal()),
        "{second:?}"
    );
    dispatcher.shutdown().await.unwrap();
    assert_eq!(ledger.history(&id("same")).unwrap().len(), 2);
    assert_eq!(
        ledger.status(&id("same")).unwrap().target.as_deref(),
        Some("reviewer")
    );
}

#[tokio::test]
async fn generated_ids_are_distinct() {
    let dispatcher = Dispatcher::new(memory_ledger(), Immediate::accepting());
    let mut ids = std::collections::HashSet::new();
    for _ in 0..200 {
        let receipt = dispatcher
            .delegate(Request::new("planner", "reviewer"))
            .await
            .unwrap();
        assert!(ids.insert(receipt.id.clone()), "{} repeated", receipt.id);
    }
    dispatcher.shutdown().await.unwrap();
}

#[tokio::test]
async fn an_unencodable_task_is_queued_then_failed_as_marshal_error() {
    let ledger = memory_ledger();
    let dispatcher = Dispatcher::new(ledger.clone(), Immediate::accepting());
    // JSON object keys must be strings; a tuple key cannot be encoded.
    let task: HashMap<(u8, u8), u8> = HashMap::from([((1, 2), 3)]);
    let receipt = dispatcher
        .delegate(Request::new("planner", "reviewer").task(&task))
        .await
        .unwrap();
    let id = receipt.id.clone();
    dispatcher.shutdown().await.unwrap();
    let status = ledger.status(&id).unwrap();
    assert_eq!(status.reason, Some(ReasonCode::MarshalError));
    assert_eq!(
        status.error_detail.as_deref(),
        Some("the task could not be encoded as JSON: key must be a string")
    );
}

#[tokio::test]
async fn after_shutdown_no_delivery_runs_and_every_delegation_is_settled() {
    let ledger = memory_ledger();
    let silent = Arc::new(Silent::default());
    let dispatcher = Dispatcher::with_options(
        ledger.clone(),
        Arc::clone(&silent),
        Options::new()
            .deadline(Duration::from_millis(40))
            .concurrency(4),
    );
    let mut ids = Vec::new();
    for _ in 0..16 {
        ids.push(
            dispatcher
                .delegate(Request::new("planner", "silent"))
                .await
                .unwrap()
                .id,
        );
    }
    let stats = dispatcher.shutdown().await.unwrap();
    assert_eq!(silent.in_flight.load(Ordering::SeqCst), 0);
    assert!(
        silent.most.load(Ordering::SeqCst) <= 4,
        "concurrency bound broken"
    );
    assert_eq!((stats.queued, stats.failed), (16, 16));
    for id in &ids {
        let status = ledger.status(id).unwrap();
        assert_eq!(status.reason, Some(ReasonCode::Timeout), "{id}");
        assert_eq!(
            status.error_detail.as_deref(),
            Some("no answer within the delivery deadline of 40ms")
        );
    }
    assert!(ledger.queued().unwrap().is_empty());
    let late = dispatcher.delegate(Request::new("planner", "silent")).await;
    assert!(matches!(late, Err(dispatch::Error::Closed)));
}

#[tokio::test]
async fn an_outcome_that_cannot_be_recorded_is_surfaced_by_its_receipt_and_by_shutdown() {
    let store = Arc::new(Faulty::seeded(1));
    let ledger = Ledger::with_store(store.clone(), delegation_log::ledger::Options::new());
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let dispatcher = Dispatcher::new(ledger.clone(), Gated(Arc::clone(&gate)));
    let receipt = dispatcher
        .delegate(Request::new("planner", "reviewer").id(id("doomed")))
        .await
        .unwrap();
    store.inject(Fault::FailWrite);
    gate.add_permits(1);

    let shutdown = dispatcher.shutdown().await;
    let Err(dispatch::Error::Drained(unrecorded)) = shutdown else {
        panic!("shutdown hid the failure: {shutdown:?}");
    };
    assert_eq!(unrecorded.len(), 1);
    assert_eq!(unrecorded[0].id, Some(id("doomed")));
    assert_eq!(unrecorded[0].outcome, "delivered");
    assert!(
        unrecorded[0]
            .cause
            .to_string()
            .contains("injected write failure")
    );
    assert_eq!(dispatcher.stats().unrecorded, 1);

    let settled = receipt.settled().await;
    assert!(
        matches!(settled, Err(dispatch::Error::Unrecorded(_))),
        "{settled:?}"
    );
    // The ledger is poisoned; reopened, the log still says queued, and recovery
    // will settle it.
    assert!(matches!(
        ledger.record(&id("doomed"), Event::delivered(None).unwrap()),
        Err(Error::Poisoned { .. })
    ));
    let reopened = Ledger::with_store(store.clone(), delegation_log::ledger::Options::new());
    assert_eq!(
        reopened.status(&id("doomed")).unwrap().status,
        StatusKind::Queued
    );
}

#[tokio::test]
async fn redeliver_recovery_fails_the_original_and_resends_under_its_message_id() {
    let ledger = memory_ledger();
    ledger
        .record(&id("lost"), Event::queued("planner", "reviewer"))
        .unwrap();
    // A redelivery id that is already taken is skipped.
    ledger
        .record(&id("lost.r1"), Event::queued("planner", "reviewer"))
        .unwrap();
    ledger
        .record(&id("lost.r1"), Event::delivered(None).unwrap())
        .unwrap();

    let (transport, seen) = recording();
    let dispatcher = Dispatcher::new(ledger.clone(), transport);
    let report = dispatcher.recover(Recovery::Redeliver).await;
    assert!(report.is_complete(), "{:?}", report.failed);
    let recovered = report.recovered;
    assert_eq!(recovered.len(), 1);
    assert_eq!(recovered[0].id, id("lost"));
    assert_eq!(
        recovered[0].redelivery.as_ref().map(|r| r.id.clone()),
        Some(id("lost.r2"))
    );
    dispatcher.shutdown().await.unwrap();

    let original = ledger.status(&id("lost")).unwrap();
    assert_eq!(original.reason, Some(ReasonCode::Interrupted));
    assert_eq!(
        original.error_detail.as_deref(),
        Some("redelivered as lost.r2")
    );
    assert_eq!(
        ledger.status(&id("lost.r2")).unwrap().status,
        StatusKind::Delivered
    );
    assert_eq!(*seen.lock().unwrap(), [(id("lost.r2"), id("lost"))]);
}

#[tokio::test]
async fn interrupt_recovery_settles_pending_delegations_as_interrupted() {
    let ledger = memory_ledger();
    ledger
        .record(&id("lost"), Event::queued("planner", "reviewer"))
        .unwrap();
    let dispatcher = Dispatcher::new(ledger.clone(), Immediate::accepting());
    let report = dispatcher.recover(Recovery::Interrupt).await;
    assert!(report.is_complete(), "{:?}", report.failed);
    let recovered = report.recovered;
    assert_eq!(recovered.len(), 1);
    assert!(recovered[0].redelivery.is_none());
    assert_eq!(
        ledger.status(&id("lost")).unwrap().reason,
        Some(ReasonCode::Interrupted)
    );
    dispatcher.shutdown().await.unwrap();
}

/// Recovery once the dispatcher has delegated leaves its live delegations alone
/// (they are claimed) and settles only what no live delivery owns. It used to be
/// refused outright (`RecoverTooLate`), a guard that a race could slip past.
#[tokio::test]
async fn recovery_after_delegating_settles_only_what_no_live_delivery_owns() {
    let ledger = memory_ledger();
    ledger
        .record(&id("orphan"), Event::queued("planner", "reviewer"))
        .unwrap();
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let dispatcher = Dispatcher::new(ledger.clone(), Gated(Arc::clone(&gate)));
    let receipt = dispatcher
        .delegate(Request::new("planner", "reviewer").id(id("live")))
        .await
        .unwrap();
    let report = dispatcher.recover(Recovery::Interrupt).await;
    assert!(report.is_complete(), "{:?}", report.failed);
    let recovered: Vec<_> = report.recovered.into_iter().map(|r| r.id).collect();
    assert_eq!(recovered, [id("orphan")]);
    gate.add_permits(1);
    receipt.settled().await.unwrap();
    dispatcher.shutdown().await.unwrap();
    assert_eq!(
        ledger.status(&id("live")).unwrap().status,
        StatusKind::Delivered
    );
}

#[tokio::test]
async fn dropping_a_dispatcher_without_shutdown_aborts_its_deliveries_and_says_so() {
    let ledger = memory_ledger();
    let silent = Arc::new(Silent::default());
    let dispatcher = Dispatcher::new(ledger.clone(), Arc::clone(&silent));
    let receipt = dispatcher
        .delegate(Request::new("planner", "silent").id(id("dropped")))
        .await
        .unwrap();
    drop(dispatcher);
    let settled = receipt.settled().await;
    assert!(
        matches!(&settled, Err(dispatch::Error::Abandoned(abandoned)) if *abandoned == id("dropped")),
        "{settled:?}"
    );
    assert_eq!(silent.in_flight.load(Ordering::SeqCst), 0);
    // Still queued, for recovery to settle.
    assert_eq!(
        ledger.status(&id("dropped")).unwrap().status,
        StatusKind::Queued
    );
    // The aborted delivery ends its claim (as its task is dropped), so recovery
    // in this very process settles it.
    let mut recovered = Vec::new();
    for _ in 0..200 {
        recovered = ledger.recover().unwrap();
        if !recovered.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(recovered, [id("dropped")]);
}

#[tokio::test]
async fn a_delegate_call_dropped_midway_still_ends_delivered_after_shutdown() {
    let ledger = memory_ledger();
    let dispatcher = Dispatcher::new(ledger.clone(), Immediate::accepting());
    // The first delegation takes the dispatcher's lease (none here, but asked
    // on a blocking thread), and a call dropped while it waits for that has
    // queued nothing, promised nothing: take it first, so that the one poll
    // below reaches the recording of `queued`.
    dispatcher
        .delegate(Request::new("planner", "reviewer").id(id("patient")))
        .await
        .unwrap();
    // Polled once (admission starts on a blocking thread), then dropped.
    let _ = tokio::time::timeout(
        Duration::ZERO,
        dispatcher.delegate(Request::new("planner", "reviewer").id(id("impatient"))),
    )
    .await;
    dispatcher.shutdown().await.unwrap();
    assert_eq!(
        ledger.status(&id("impatient")).unwrap().status,
        StatusKind::Delivered
    );
}

/// Hardening review: `shutdown` had no time limit, so 50k delegations to a dead
/// target at an 8 s deadline held it for about 1.7 h. Past its timeout, shutdown
/// cuts off what still runs or waits for a slot, and records each as `failed` /
/// `interrupted`: bounded, and nothing left `queued`.
#[tokio::test]
async fn shutdown_past_its_timeout_interrupts_and_records_every_delivery_it_cuts_off() {
    let ledger = memory_ledger();
    let dispatcher = Dispatcher::with_options(
        ledger.clone(),
        Silent::default(),
        Options::new()
            .deadline(Duration::from_secs(3600))
            .concurrency(2)
            .shutdown_timeout(Some(Duration::from_millis(200))),
    );
    let mut receipts = Vec::new();
    for n in 0..20 {
        let request = Request::new("planner", "silent").id(id(&format!("cut-{n}")));
        receipts.push(dispatcher.delegate(request).await.unwrap());
    }
    let stats = dispatcher.shutdown().await.unwrap();
    assert_eq!((stats.queued, stats.failed, stats.delivered), (20, 20, 0));
    for receipt in receipts {
        let id = receipt.id.clone();
        let settled = receipt.settled().await.unwrap();
        let delegation_log::Outcome::Failed(failed) = settled.outcome else {
            panic!("{id} was not failed");
        };
        assert_eq!(failed.reason, FailureReason::Interrupted);
        assert!(
            failed
                .detail
                .unwrap()
                .contains("shutdown cut the delivery off after waiting 200ms")
        );
        let status = ledger.status(&id).unwrap();
        assert_eq!(status.status, StatusKind::Failed);
        assert_eq!(
            status.target_received,
            Some(delegation_log::Received::Unknown)
        );
    }
    assert!(ledger.queued().unwrap().is_empty());
}

/// A transport whose every send panics.
struct Panicking;

impl Transport for Panicking {
    fn send(&self, _message: Message) -> BoxFuture<'_, Result<Accepted, Failure>> {
        Box::pin(async { panic!("the transport broke") })
    }
}

/// A delivery that panics is an outcome that was not recorded: its receipt and
/// `shutdown` both say so, naming the delegation and the panic, and the
/// delegation stays `queued`, unclaimed, for recovery to settle.
#[tokio::test]
async fn a_delivery_that_panics_is_surfaced_by_its_receipt_and_by_shutdown() {
    let ledger = memory_ledger();
    let dispatcher = Dispatcher::new(ledger.clone(), Panicking);
    let receipt = dispatcher
        .delegate(Request::new("planner", "reviewer").id(id("fragile")))
        .await
        .unwrap();
    let shutdown = dispatcher.shutdown().await;
    let Err(dispatch::Error::Drained(unrecorded)) = shutdown else {
        panic!("shutdown hid the panic: {shutdown:?}");
    };
    assert_eq!(unrecorded.len(), 1);
    assert_eq!(unrecorded[0].id, Some(id("fragile")));
    assert!(
        unrecorded[0]
            .cause
            .to_string()
            .contains("the transport broke"),
        "{}",
        unrecorded[0].cause
    );
    let settled = receipt.settled().await;
    assert!(
        matches!(&settled, Err(dispatch::Error::Unrecorded(u)) if u.id == Some(id("fragile"))),
        "{settled:?}"
    );
    assert_eq!(
        ledger.status(&id("fragile")).unwrap().status,
        StatusKind::Queued
    );
    assert_eq!(ledger.recover().unwrap(), [id("fragile")]);
}

/// `delegate` and `shutdown` at the same moment, many times over: the delegation is
/// either refused (`Closed`, nothing written) or admitted, and then settled by the
/// time `shutdown` returns. Admission and the drain never miss each other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delegation_racing_shutdown_is_refused_or_settled_never_left_queued() {
    let mut left = Vec::new();
    for trial in 0..300 {
        let ledger = memory_ledger();
        let dispatcher = Dispatcher::new(ledger.clone(), Immediate::accepting());
        let racer = id(&format!("race-{trial}"));
        let delegating = {
            let dispatcher = dispatcher.clone();
            let racer = racer.clone();
            tokio::spawn(async move {
                dispatcher
                    .delegate(Request::new("planner", "reviewer").id(racer))
                    .await
            })
        };
        let stats = dispatcher.shutdown().await.unwrap();
        let status = ledger.status(&racer).unwrap().status;
        match delegating.await.unwrap() {
            Ok(_) if status == StatusKind::Delivered && stats.delivered == 1 => {}
            Err(dispatch::Error::Closed) if status == StatusKind::NotFound => {}
            other => left.push(format!("trial {trial}: {other:?}, {status:?}, {stats:?}")),
        }
    }
    assert!(left.is_empty(), "{}", left.join("\n"));
}
