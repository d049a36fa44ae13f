//! Guards the dispatcher's bound on a flood: at most `Options::backlog`
//! deliveries are held at once (queued, waiting for a slot, sending or backing
//! off). Past it, `delegate` waits for a delivery to end before it records
//! anything; a caller that gives up while waiting leaves no trace in the log; a
//! shutdown wakes every waiter with `Closed`; and every delegation that was
//! acknowledged still ends delivered. (`benches/flood.rs` measures the tasks,
//! threads and memory of 100k delegations to a slow target.)
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod delivery_support;
mod support;

use std::sync::Arc;
use std::time::Duration;

use delegation_log::dispatch::{self, Dispatcher, Options, Request};
use delegation_log::transport::{Accepted, BoxFuture, Failure, Message, Transport};
use delegation_log::{Ledger, StatusKind};
use delivery_support::memory_ledger;
use support::id;

/// A transport that answers 200 once per permit its gate is given.
struct Gated(Arc<tokio::sync::Semaphore>);

impl Transport for Gated {
    fn send(&self, _message: Message) -> BoxFuture<'_, Result<Accepted, Failure>> {
        let gate = Arc::clone(&self.0);
        Box::pin(async move {
            gate.acquire().await.unwrap().forget();
            Ok(Accepted::status(200))
        })
    }
}

/// A dispatcher on a fresh memory ledger that sends one delivery at once and
/// holds at most `backlog`, through a [`Gated`] transport; and its ledger and
/// gate (no permits yet: every delivery waits for one).
fn gated(backlog: usize) -> (Dispatcher, Ledger, Arc<tokio::sync::Semaphore>) {
    let ledger = memory_ledger();
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let options = Options::new().concurrency(1).backlog(backlog);
    let dispatcher = Dispatcher::with_options(ledger.clone(), Gated(Arc::clone(&gate)), options);
    (dispatcher, ledger, gate)
}

/// Whether `future` is still pending after the runtime has had time to run
/// everything else that is ready.
async fn still_waiting<F: std::future::Future>(future: F) -> bool {
    tokio::time::timeout(Duration::from_millis(200), future)
        .await
        .is_err()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_backlog_delegate_waits_for_a_delivery_to_end_and_then_records() {
    let (dispatcher, ledger, gate) = gated(3);
    let mut receipts = Vec::new();
    for n in 0..3 {
        let request = Request::new("planner", "reviewer").id(id(&format!("held-{n}")));
        receipts.push(dispatcher.delegate(request).await.unwrap());
    }
    // The fourth finds no room: it records nothing while it waits.
    let fourth = dispatcher.delegate(Request::new("planner", "reviewer").id(id("fourth")));
    tokio::pin!(fourth);
    assert!(still_waiting(&mut fourth).await);
    assert_eq!(
        ledger.status(&id("fourth")).unwrap().status,
        StatusKind::NotFound
    );
    // One delivery ends: its place goes to the fourth, which is then recorded.
    gate.add_permits(1);
    let receipt = fourth.await.unwrap();
    assert_eq!(receipt.status, StatusKind::Queued);
    gate.add_permits(3);
    dispatcher.shutdown().await.unwrap();
    for name in ["held-0", "held-1", "held-2", "fourth"] {
        assert_eq!(
            ledger.status(&id(name)).unwrap().status,
            StatusKind::Delivered,
            "{name}"
        );
    }
    assert_eq!(dispatcher.stats().delivered, 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_that_stops_waiting_for_room_leaves_nothing_in_the_log() {
    let (dispatcher, ledger, gate) = gated(1);
    dispatcher
        .delegate(Request::new("planner", "reviewer").id(id("held")))
        .await
        .unwrap();
    let gave_up = tokio::time::timeout(
        Duration::from_millis(200),
        dispatcher.delegate(Request::new("planner", "reviewer").id(id("impatient"))),
    )
    .await;
    assert!(gave_up.is_err(), "there was no room: it must have waited");
    gate.add_permits(1);
    dispatcher.shutdown().await.unwrap();
    assert_eq!(
        ledger.status(&id("impatient")).unwrap().status,
        StatusKind::NotFound
    );
    assert_eq!(
        ledger.status(&id("held")).unwrap().status,
        StatusKind::Delivered
    );
    assert_eq!(dispatcher.stats().queued, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_refuses_the_callers_waiting_for_room_and_settles_what_it_holds() {
    let (dispatcher, ledger, gate) = gated(1);
    dispatcher
        .delegate(Request::new("planner", "reviewer").id(id("held")))
        .await
        .unwrap();
    let waiting = {
        let dispatcher = dispatcher.clone();
        tokio::spawn(async move {
            dispatcher
                .delegate(Request::new("planner", "reviewer").id(id("waiting")))
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!waiting.is_finished());
    let shutdown = {
        let dispatcher = dispatcher.clone();
        tokio::spawn(async move { dispatcher.shutdown().await })
    };
    // The waiter is refused at once, before the held delivery ends.
    let refused = tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .expect("the waiter was woken")
        .unwrap();
    assert!(
        matches!(refused, Err(dispatch::Error::Closed)),
        "{refused:?}"
    );
    gate.add_permits(1);
    shutdown.await.unwrap().unwrap();
    assert_eq!(
        ledger.status(&id("waiting")).unwrap().status,
        StatusKind::NotFound
    );
    assert_eq!(
        ledger.status(&id("held")).unwrap().status,
        StatusKind::Delivered
    );
}
