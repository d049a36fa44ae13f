//! Guards "a long-running dispatcher recovers what a dead peer left" (issue 14):
//! with `Options::recover_every`, a dispatcher that is already running settles
//! (here: redelivers) a delegation a dead dispatcher left in flight once that
//! dispatcher's lease has run out, without being called again or restarted; it
//! leaves its own live delivery alone, reports the pass, and stops with
//! shutdown. Checked from the log (statuses, two records each, nothing queued,
//! the audit and the claims clean) and from what the target saw (each
//! `messageId`, and the delegation under it).
//!
//! On PostgreSQL, two dispatchers, each on a store connection of its own (two
//! processes' views), share one schema, and one is dropped mid-delivery without
//! shutdown: its heartbeat stops, and its lease runs out by the server's clock.
//! On sled, the dead dispatcher is one of the same process (its lock admits no
//! other), dropped the same way. A delegation periodic recovery cannot settle
//! is reported, to `next_recovery` or else by `shutdown`, never dropped. Needs `DATABASE_URL` (`bash .ci/postgres`) for
//! the PostgreSQL case; under `CI=true` its absence fails.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

#[cfg(feature = "postgres")]
mod pg_support;
mod store_support;
mod support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use delegation_log::dispatch::{Dispatcher, Options, Recovery, Request};
use delegation_log::event::ReasonCode;
use delegation_log::transport::{Accepted, BoxFuture, Failure, Message, Transport};
use delegation_log::{Ledger, StatusKind};
use support::id;
use tokio::sync::Semaphore;

/// Each dispatcher's lease: long enough that no heartbeat on a loaded machine
/// is late enough to let it lapse (one is due every third of it).
const LEASE: Duration = Duration::from_secs(3);
/// The survivor's recovery period.
const EVERY: Duration = Duration::from_millis(150);
/// How long any wait may take before the test fails.
const PATIENCE: Duration = Duration::from_secs(20);

/// A target that holds every answer until released, and keeps what it was
/// sent: (messageId, delegation) of each request, in order.
#[derive(Clone)]
struct Target {
    gate: Arc<Semaphore>,
    seen: Arc<Mutex<Vec<(String, String)>>>,
}

impl Default for Target {
    fn default() -> Self {
        Target {
            gate: Arc::new(Semaphore::new(0)),
            seen: Arc::default(),
        }
    }
}

impl Transport for Target {
    fn send(&self, message: Message) -> BoxFuture<'_, Result<Accepted, Failure>> {
        self.seen.lock().unwrap().push((
            message.message_id.to_string(),
            message.delegation.to_string(),
        ));
        Box::pin(async move {
            if let Ok(permit) = self.gate.acquire().await {
                permit.forget();
            }
            Ok(Accepted::status(200))
        })
    }
}

impl Target {
    fn seen(&self) -> Vec<(String, String)> {
        let mut seen = self.seen.lock().unwrap().clone();
        seen.sort();
        seen
    }
}

/// Polls `check` every 20 ms until it holds; fails after [`PATIENCE`].
async fn until(what: &str, mut check: impl FnMut() -> bool) {
    let start = Instant::now();
    while !check() {
        assert!(
            start.elapsed() < PATIENCE,
            "not within {PATIENCE:?}: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The case, on any store: `survivor` and `dead` are two ledgers over one log
/// (the same one on sled). `lease_matters` says whether the takeover must wait
/// for the dead dispatcher's lease (a shared store).
async fn a_running_dispatcher_recovers_a_dead_peers_delivery_without_a_restart(
    survivor: Ledger,
    dead: Ledger,
    lease_matters: bool,
) {
    let target = Target::default();
    let options = Options::new().lease(LEASE).deadline(PATIENCE);
    let running = Dispatcher::with_options(
        survivor.clone(),
        target.clone(),
        options
            .recover_every(Some(EVERY))
            .recovery(Recovery::Redeliver),
    );
    // The survivor runs, with a delivery of its own in flight; it is not
    // called again until shutdown.
    let own = running
        .delegate(Request::new("survivor", "held").id(id("own")))
        .await
        .unwrap();
    let peer = Dispatcher::with_options(dead, target.clone(), options);
    peer.delegate(
        Request::new("peer", "held")
            .id(id("orphan"))
            .task("review PR 42"),
    )
    .await
    .unwrap();
    until("both deliveries reached the target", || {
        target.seen.lock().unwrap().len() == 2
    })
    .await;

    // The peer dies mid-delivery: no shutdown, its heartbeat stops.
    drop(peer);
    let died = Instant::now();
    let report = tokio::time::timeout(PATIENCE, running.next_recovery())
        .await
        .expect("periodic recovery reported within the patience")
        .expect("a report, not the end of the timer");
    let after = died.elapsed();
    if lease_matters {
        assert!(
            // The peer's next renewal was due at most a third of a lease
            // after its last, so about two thirds of its lease were left at
            // its death; asserting one third allows that renewal to be a
            // third of a lease late.
            after >= LEASE / 3,
            "taken over {after:?} after the death, too soon for a lease of {LEASE:?}"
        );
    }
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    assert_eq!(report.recovered.len(), 1, "{:?}", report.recovered);
    let recovered = report.recovered.into_iter().next().unwrap();
    assert_eq!(recovered.id, id("orphan"));
    let redelivery = recovered.redelivery.expect("redelivered");
    assert_eq!(redelivery.id, id("orphan.r1"));
    // Its own live delivery was left alone.
    assert_eq!(
        survivor.status(&id("own")).unwrap().status,
        StatusKind::Queued
    );
    until("the redelivery reached the target", || {
        target.seen.lock().unwrap().len() == 3
    })
    .await;

    target.gate.add_permits(1 << 20);
    assert_eq!(redelivery.settled().await.unwrap().id, id("orphan.r1"));
    assert_eq!(own.settled().await.unwrap().id, id("own"));
    let stats = running.shutdown().await.unwrap();
    assert_eq!((stats.queued, stats.delivered), (2, 2), "{stats:?}");
    assert!(
        running.next_recovery().await.is_none(),
        "shutdown ends the reports"
    );

    // The log: the orphan settled once, as redelivered; nothing queued; each
    // delegation two records; the audit clean.
    let orphan = survivor.status(&id("orphan")).unwrap();
    assert_eq!(orphan.status, StatusKind::Failed);
    assert_eq!(orphan.reason, Some(ReasonCode::Interrupted));
    assert_eq!(
        orphan.error_detail.as_deref(),
        Some("redelivered as orphan.r1")
    );
    let retry = survivor.delegation(&id("orphan.r1")).unwrap().unwrap();
    assert_eq!(retry.retry_of, Some(id("orphan")));
    assert_eq!(retry.attempt, 2);
    for delegation in ["own", "orphan", "orphan.r1"] {
        assert_eq!(
            survivor.history(&id(delegation)).unwrap().len(),
            2,
            "{delegation}"
        );
    }
    assert_eq!(
        survivor.status(&id("orphan.r1")).unwrap().status,
        StatusKind::Delivered
    );
    assert!(survivor.queued().unwrap().is_empty());
    let verdict = survivor.audit().unwrap();
    assert!(verdict.is_clean(), "{}", verdict.to_plain());

    // The target: its own task once; the orphan's twice, under one messageId.
    assert_eq!(
        target.seen(),
        vec![
            ("orphan".to_owned(), "orphan".to_owned()),
            ("orphan".to_owned(), "orphan.r1".to_owned()),
            ("own".to_owned(), "own".to_owned()),
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_sled_a_running_dispatcher_recovers_a_dropped_dispatchers_delivery() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::open(dir.path().join("log")).unwrap();
    a_running_dispatcher_recovers_a_dead_peers_delivery_without_a_restart(
        ledger.clone(),
        ledger,
        false,
    )
    .await;
}

#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres_a_running_dispatcher_recovers_a_dead_peers_delivery_once_its_lease_ran_out() {
    use delegation_log::store::{Connect, Postgres};

    let Some(schema) = pg_support::fresh("periodic") else {
        return;
    };
    let process = || {
        let store = Postgres::connect_with(&schema.url, Connect::new().schema(schema.name.clone()))
            .unwrap();
        Ledger::with_store(Arc::new(store), Default::default())
    };
    a_running_dispatcher_recovers_a_dead_peers_delivery_without_a_restart(
        process(),
        process(),
        true,
    )
    .await;
    // Every claim released; only the dead dispatcher's lease is left, run out.
    assert_eq!(
        schema.query("SELECT count(*) FROM claims"),
        vec![vec![Some("0".into())]]
    );
    assert_eq!(
        schema.query("SELECT count(*), bool_and(lease_until < now()) FROM dispatchers"),
        vec![vec![Some("1".into()), Some("t".into())]]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_recover_every_there_is_no_timer_and_no_report() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::open(dir.path().join("log")).unwrap();
    let target = Target::default();
    target.gate.add_permits(1 << 20);
    let dispatcher = Dispatcher::new(ledger.clone(), target.clone());
    // A dropped dispatcher's delegation: queued, and nothing settles it.
    let gate = Target::default();
    let stuck = Dispatcher::new(ledger.clone(), gate.clone());
    stuck
        .delegate(Request::new("peer", "held").id(id("orphan")))
        .await
        .unwrap();
    drop(stuck);
    dispatcher
        .delegate(Request::new("me", "quick").id(id("mine")))
        .await
        .unwrap();
    assert!(dispatcher.next_recovery().await.is_none());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        ledger.status(&id("orphan")).unwrap().status,
        StatusKind::Queued
    );
    dispatcher.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_periodic_recovery_cannot_settle_is_reported_to_next_recovery_or_else_by_shutdown() {
    use delegation_log::dispatch::Error;
    use delegation_log::store::{Append, Expect, Memory, Store};

    let store = Arc::new(Memory::new());
    // Bytes that are no record (version 1, then garbage): damage recovery
    // reports by id, on every pass.
    store
        .append(&[Append {
            id: &id("damaged"),
            expect: Expect::Empty,
            record: b"\x01 not a record",
            head: b"",
        }])
        .unwrap();
    // Counting scans (each recovery pass scans once) shows when a later pass
    // has begun; the memory store is wrapped to count them.
    let hooked = Arc::new(store_support::Hooked::over(store));
    let ledger = Ledger::with_store(hooked.clone(), Default::default());
    let target = Target::default();
    target.gate.add_permits(1 << 20);
    let dispatcher =
        Dispatcher::with_options(ledger, target, Options::new().recover_every(Some(EVERY)));
    // The first delegation starts the timer.
    dispatcher
        .delegate(Request::new("me", "quick").id(id("mine")))
        .await
        .unwrap();
    let report = tokio::time::timeout(PATIENCE, dispatcher.next_recovery())
        .await
        .unwrap()
        .unwrap();
    assert!(report.recovered.is_empty());
    let failed: Vec<_> = report.failed.iter().map(|f| f.id.clone()).collect();
    assert_eq!(failed, vec![Some(id("damaged"))]);
    // Passes go on; what nobody took, shutdown returns (a pass under way when
    // shutdown begins runs to its end first).
    let scans = hooked.scans();
    until("another pass began", || hooked.scans() > scans).await;
    match dispatcher.shutdown().await {
        Err(Error::Unrecovered(left)) => {
            assert!(!left.is_empty());
            assert!(left.iter().all(|f| f.id == Some(id("damaged"))), "{left:?}");
        }
        other => panic!("shutdown answered {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pass_under_way_when_shutdown_begins_runs_to_its_end_and_reports_what_it_settled() {
    use std::sync::atomic::{AtomicBool, Ordering};

    use delegation_log::store::Memory;

    // The orphan's settling write is slow, so that shutdown begins while the
    // pass is in it.
    let armed = Arc::new(AtomicBool::new(false));
    let entered = Arc::new(AtomicBool::new(false));
    let hooked = store_support::Hooked::over(Arc::new(Memory::new())).on_append({
        let (armed, entered) = (armed.clone(), entered.clone());
        move |memory, appends| {
            if armed.load(Ordering::SeqCst) && appends.iter().any(|a| a.id.as_str() == "orphan") {
                entered.store(true, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(400));
            }
            delegation_log::store::Store::append(memory, appends)
        }
    });
    let ledger = Ledger::with_store(Arc::new(hooked), Default::default());
    let stuck = Dispatcher::new(ledger.clone(), Target::default());
    stuck
        .delegate(Request::new("peer", "held").id(id("orphan")))
        .await
        .unwrap();
    drop(stuck);
    armed.store(true, Ordering::SeqCst);

    let target = Target::default();
    target.gate.add_permits(1 << 20);
    let dispatcher = Dispatcher::with_options(
        ledger.clone(),
        target,
        Options::new().recover_every(Some(EVERY)),
    );
    // The first delegation starts the timer.
    dispatcher
        .delegate(Request::new("me", "quick").id(id("mine")))
        .await
        .unwrap();
    until("a pass is settling the orphan", || {
        entered.load(Ordering::SeqCst)
    })
    .await;
    // Shutdown begins while the pass is in the orphan's write; the caller is
    // taking reports meanwhile, as `mcp` does.
    let (stopped, report) = tokio::time::timeout(PATIENCE, async {
        tokio::join!(dispatcher.shutdown(), dispatcher.next_recovery())
    })
    .await
    .unwrap();
    stopped.unwrap();

    // The pass wrote its outcome, and its report says so.
    let status = ledger.status(&id("orphan")).unwrap();
    assert_eq!(status.status, StatusKind::Failed);
    assert_eq!(status.reason, Some(ReasonCode::Interrupted));
    let report = report.expect("the pass's report");
    let recovered: Vec<_> = report.recovered.iter().map(|r| r.id.clone()).collect();
    assert_eq!(recovered, vec![id("orphan")], "{report:?}");
    assert!(report.failed.is_empty(), "{report:?}");
}
