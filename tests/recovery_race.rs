//! Guards that recovery never takes a live delivery for a dead one: `delegate` and
//! `recover` run at the same moment, on the same dispatcher, on a second
//! dispatcher over the same ledger, or straight on the ledger, many times over, and
//! a delegation that a dispatcher of this process is delivering is never settled
//! as `interrupted`. It is delivered, as its transport says.
//!
//! One definition runs 150 trials of each recoverer on memory and on
//! PostgreSQL (as many, on one schema, a new ledger per trial; there the
//! dispatchers hold leases and claim, and the ledger's own recovery takes over
//! only what expired leases left). Needs `DATABASE_URL` for the PostgreSQL case
//! (`bash .ci/postgres`); under `CI=true` its absence fails.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod delivery_support;
#[cfg(feature = "postgres")]
mod pg_support;

use std::time::Duration;

use delegation_log::dispatch::{Dispatcher, Recovery, Request};
use delegation_log::transport::{Accepted, BoxFuture, Failure, Message, Transport};
use delegation_log::{DelegationId, Ledger, StatusKind};
use delivery_support::memory_ledger;

const TRIALS: usize = 150;

/// A target that accepts after a short wait: the delivery is live meanwhile.
struct Slow;

impl Transport for Slow {
    fn send(&self, _message: Message) -> BoxFuture<'_, Result<Accepted, Failure>> {
        Box::pin(async {
            tokio::time::sleep(Duration::from_millis(3)).await;
            Ok(Accepted::status(200))
        })
    }
}

/// Who runs the recovery that races the delegation.
#[derive(Clone, Copy, Debug)]
enum Recoverer {
    SameDispatcher(Recovery),
    OtherDispatcher(Recovery),
    Ledger,
}

/// Races one delegation against `recoverer`, `trials` times, each on a ledger
/// from `ledger`; returns the trials in which recovery settled the live
/// delegation.
async fn race(recoverer: Recoverer, trials: usize, ledger: &dyn Fn() -> Ledger) -> Vec<String> {
    let mut settled_live = Vec::new();
    for trial in 0..trials {
        let ledger = ledger();
        let dispatcher = Dispatcher::new(ledger.clone(), Slow);
        let other = Dispatcher::new(ledger.clone(), Slow);
        let id: DelegationId = format!("live-{recoverer:?}-{trial}").parse().unwrap();
        let delegate = {
            let dispatcher = dispatcher.clone();
            let id = id.clone();
            tokio::spawn(async move {
                dispatcher
                    .delegate(Request::new("planner", "reviewer").id(id))
                    .await
            })
        };
        let recover = {
            let dispatcher = dispatcher.clone();
            let other = other.clone();
            let ledger = ledger.clone();
            tokio::spawn(async move {
                match recoverer {
                    Recoverer::SameDispatcher(policy) => {
                        let _ = dispatcher.recover(policy).await;
                    }
                    Recoverer::OtherDispatcher(policy) => {
                        let _ = other.recover(policy).await;
                    }
                    Recoverer::Ledger => {
                        let _ = tokio::task::spawn_blocking(move || ledger.recover()).await;
                    }
                }
            })
        };
        let receipt = delegate.await.unwrap().unwrap();
        recover.await.unwrap();
        let _ = receipt.settled().await;
        let _ = dispatcher.shutdown().await;
        let _ = other.shutdown().await;
        let status = ledger.status(&id).unwrap();
        if status.status != StatusKind::Delivered {
            settled_live.push(format!(
                "{recoverer:?} trial {trial}: {:?} {:?}",
                status.status, status.reason
            ));
        }
    }
    settled_live
}

/// Defect 7 of the adversarial review: `delegate` and `recover` at the same moment
/// on a new dispatcher let recovery settle the live delegation as interrupted (256
/// times in 300), and the `RecoverTooLate` guard never fired.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recovery_racing_a_delegation_never_settles_the_live_delivery() {
    every_recoverer(TRIALS, &memory_ledger).await;
}

/// The same races on a PostgreSQL ledger shared by the two dispatchers.
#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgresql_recovery_racing_a_delegation_never_settles_the_live_delivery() {
    let Some(schema) = pg_support::fresh("recovery_race") else {
        return;
    };
    let store = schema.store.clone();
    let ledger = move || {
        Ledger::with_store(
            store.clone(),
            delegation_log::ledger::Options::new().clock(delegation_log::ManualClock::default()),
        )
    };
    every_recoverer(TRIALS, &ledger).await;
}

/// Races every kind of recoverer `trials` times on ledgers from `ledger`, and
/// asserts no live delegation was settled by recovery.
async fn every_recoverer(trials: usize, ledger: &dyn Fn() -> Ledger) {
    let mut settled_live = Vec::new();
    for recoverer in [
        Recoverer::SameDispatcher(Recovery::Interrupt),
        Recoverer::SameDispatcher(Recovery::Redeliver),
        Recoverer::OtherDispatcher(Recovery::Interrupt),
        Recoverer::OtherDispatcher(Recovery::Redeliver),
        Recoverer::Ledger,
    ] {
        settled_live.extend(race(recoverer, trials, ledger).await);
    }
    assert!(
        settled_live.is_empty(),
        "recovery settled {} live delegation(s) in 5 x {trials} trials:\n{}",
        settled_live.len(),
        settled_live.join("\n")
    );
}
