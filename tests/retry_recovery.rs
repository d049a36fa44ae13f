//! Guards "a crash during a backoff loses nothing": the next attempt's `queued`
//! is durable before the backoff starts, so a dispatcher that dies while it
//! waits (dropped: its tasks aborted, as a killed process's are) leaves the
//! retry queued with its `not_before`. Recovery then resumes a retry whose
//! `not_before` is still ahead (it was certainly never sent) and delivers it at
//! its time, under the task's one `messageId`; one whose `not_before` has passed
//! is handled like any orphan. A shutdown whose timeout cuts a backoff short
//! leaves the retry queued too, and says so.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use delegation_log::dispatch::{self, Dispatcher, Options, Recovery, Request, Retry};
use delegation_log::store::Memory;
use delegation_log::transport::{Accepted, Failure, Immediate, Transport};
use delegation_log::{DelegationId, FailureReason, Ledger, ManualClock, Outcome, StatusKind};
use support::id;

/// A target that is offline for its first `refusals` requests, then accepts;
/// it keeps every messageId it was sent.
fn flaky(refusals: usize) -> (impl Transport, Arc<Mutex<Vec<DelegationId>>>) {
    let calls = AtomicUsize::new(0);
    let sent = Arc::new(Mutex::new(Vec::new()));
    let keeping = Arc::clone(&sent);
    let transport = Immediate::new(move |message| {
        keeping.lock().unwrap().push(message.message_id.clone());
        if calls.fetch_add(1, Ordering::SeqCst) < refusals {
            Err(Failure::offline("connection refused"))
        } else {
            Ok(Accepted::status(200))
        }
    });
    (transport, sent)
}

/// A backoff long enough that a loaded machine drops the dispatcher before
/// its retry is due.
fn slow_retry() -> Retry {
    Retry::new()
        .max_attempts(3)
        .backoff(Duration::from_secs(3))
        .max_delay(Duration::from_secs(3))
        .jitter_seed(1)
}

/// Delegates `task` to a target offline once, and waits until its retry
/// `task.r1` is queued; the dispatcher is then in its backoff.
async fn in_backoff(ledger: &Ledger) -> (Dispatcher, dispatch::Receipt) {
    let (transport, _) = flaky(1);
    let dispatcher = Dispatcher::with_options(
        ledger.clone(),
        transport,
        Options::new().retry(slow_retry()),
    );
    let receipt = dispatcher
        .delegate(Request::new("planner", "reviewer").id(id("task")))
        .await
        .unwrap();
    let started = std::time::Instant::now();
    while started.elapsed() < Duration::from_secs(20) {
        if ledger.delegation(&id("task.r1")).unwrap().is_some() {
            return (dispatcher, receipt);
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    panic!("the retry was never queued");
}

#[tokio::test]
async fn a_dispatcher_dropped_during_a_backoff_leaves_the_retry_queued_and_recovery_resumes_it_at_its_time()
 {
    let ledger = Ledger::with_store(
        Arc::new(Memory::new()),
        delegation_log::ledger::Options::new(),
    );
    let (dispatcher, receipt) = in_backoff(&ledger).await;
    drop(dispatcher);
    assert!(matches!(
        receipt.settled().await,
        Err(dispatch::Error::Abandoned(_))
    ));

    // The log: the first attempt failed, the retry queued, not yet due.
    let first = ledger.delegation(&id("task")).unwrap().unwrap();
    assert!(
        matches!(&first.outcome, Some(Outcome::Failed(f)) if f.reason == FailureReason::TargetOffline),
        "{first:?}"
    );
    let retry = ledger.delegation(&id("task.r1")).unwrap().unwrap();
    assert_eq!(retry.state, delegation_log::lifecycle::State::Queued);
    assert_eq!(retry.attempt, 2);
    let not_before = retry.not_before.expect("a retry says when it may be sent");
    assert!(
        not_before > ledger.clock().now(),
        "still ahead: {not_before}"
    );

    // A new dispatcher (the restarted process) recovers: the retry is resumed,
    // not interrupted, and delivered at its time with the first messageId.
    let (transport, sent) = flaky(0);
    let restarted = Dispatcher::new(ledger.clone(), transport);
    let report = restarted.recover(Recovery::Interrupt).await;
    assert!(report.is_complete(), "{:?}", report.failed);
    assert_eq!(report.recovered.len(), 1, "{report:?}");
    let resumed = report
        .recovered
        .into_iter()
        .next()
        .unwrap()
        .resumed
        .expect("resumed, not settled");
    let settled = resumed.settled().await.unwrap();
    assert_eq!(settled.id, id("task.r1"));
    assert_eq!(settled.attempt, 2);
    assert!(matches!(settled.outcome, Outcome::Delivered { .. }));
    assert!(
        ledger.clock().now() >= not_before,
        "not sent before its not_before"
    );
    assert_eq!(*sent.lock().unwrap(), [id("task")]);
    restarted.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_retry_whose_not_before_has_passed_is_recovered_like_any_orphan() {
    // A manual clock the test moves past the retry's not_before.
    let clock = ManualClock::default();
    let ledger = Ledger::with_store(
        Arc::new(Memory::new()),
        delegation_log::ledger::Options::new().clock(clock.clone()),
    );
    let (dispatcher, receipt) = in_backoff(&ledger).await;
    drop(dispatcher);
    // Its task is gone once the receipt says so: the retry's claim with it.
    assert!(matches!(
        receipt.settled().await,
        Err(dispatch::Error::Abandoned(_))
    ));
    clock.advance(Duration::from_secs(60));

    let (transport, sent) = flaky(0);
    let restarted = Dispatcher::new(ledger.clone(), transport);
    let report = restarted.recover(Recovery::Interrupt).await;
    assert!(report.is_complete(), "{:?}", report.failed);
    assert_eq!(report.recovered.len(), 1, "{report:?}");
    assert!(report.recovered[0].resumed.is_none());
    restarted.shutdown().await.unwrap();
    let status = ledger.status(&id("task.r1")).unwrap();
    assert_eq!(status.status, StatusKind::Failed);
    assert_eq!(
        status.reason,
        Some(delegation_log::event::ReasonCode::Interrupted)
    );
    assert!(
        sent.lock().unwrap().is_empty(),
        "nothing resent: it may have been sent"
    );
}

#[tokio::test]
async fn a_shutdown_that_cuts_a_backoff_short_leaves_the_retry_queued_and_says_so() {
    let ledger = Ledger::with_store(
        Arc::new(Memory::new()),
        delegation_log::ledger::Options::new(),
    );
    let (transport, _) = flaky(1);
    let dispatcher = Dispatcher::with_options(
        ledger.clone(),
        transport,
        Options::new()
            .retry(slow_retry())
            .shutdown_timeout(Some(Duration::from_millis(150))),
    );
    let receipt = dispatcher
        .delegate(Request::new("planner", "reviewer").id(id("task")))
        .await
        .unwrap();
    dispatcher.shutdown().await.unwrap();
    let settled = receipt.settled().await;
    assert!(
        matches!(&settled, Err(dispatch::Error::Deferred { id: deferred, .. }) if *deferred == id("task.r1")),
        "{settled:?}"
    );
    assert_eq!(
        ledger.status(&id("task.r1")).unwrap().status,
        StatusKind::Queued
    );
}
