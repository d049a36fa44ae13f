//! Guards "recovery takes over only the dead" on a shared PostgreSQL ledger, from
//! both sides: the log, and the `dispatchers` and `claims` rows the server holds
//! (read with a client of its own). A dispatcher claims before `queued`, and
//! the write of the outcome ends the claim; its heartbeat renews its lease, on a
//! connection of its own, even while every other connection waits for a lock; a lease not renewed
//! runs out by the server's clock, and only then is its delegation taken over; of
//! racing takers (`FOR UPDATE SKIP LOCKED`) exactly one gets each delegation; the
//! old owner's late outcome loses cleanly to the taker's, and the taker's to an old
//! owner that settled first; a dispatcher whose lease ran out sends nothing more
//! under it, and takes a new one. Taking a lease sweeps what dispatchers gone
//! for good (an hour past their lease, or retired) left: their claims on settled
//! or never-queued delegations and then their rows, never a claim on a `queued` delegation nor
//! anything of a live dispatcher. Needs `DATABASE_URL` (`bash .ci/postgres`);
//! under `CI=true` its absence fails.
#![cfg(feature = "postgres")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod pg_support;
mod support;

use std::collections::BTreeSet;
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

use delegation_log::dispatch::{Dispatcher, Options, Recovery, Request};
use delegation_log::event::ReasonCode;
use delegation_log::ledger::{Lease, Renewal};
use delegation_log::store::{Connect, Owner, Postgres};
use delegation_log::transport::{Accepted, BoxFuture, Failure, Message, Transport};
use delegation_log::{DelegationId, Error, Event, Ledger, Settlement, StatusKind};
use pg_support::Schema;
use support::id;
use tokio::sync::Semaphore;

/// A ledger over `schema` through a store of its own: another process's view.
fn process(schema: &Schema) -> Ledger {
    let store =
        Postgres::connect_with(&schema.url, Connect::new().schema(schema.name.clone())).unwrap();
    Ledger::with_store(Arc::new(store), Default::default())
}

/// `owner` as a `bytea` literal.
fn lit(owner: Owner) -> String {
    format!("'\\x{owner}'::bytea")
}

/// Polls `check` every 20 ms until it holds; fails after `limit`.
fn until(limit: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let start = Instant::now();
    while !check() {
        assert!(start.elapsed() < limit, "not within {limit:?}: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Whether `owner`'s lease is live by the server's clock.
fn live(schema: &Schema, owner: Owner) -> bool {
    schema.query(&format!(
        "SELECT count(*) FROM dispatchers WHERE id = {} AND lease_until > now()",
        lit(owner)
    )) == vec![vec![Some("1".into())]]
}

/// The claims, as (delegation text, owner hex, takeovers).
fn claims(schema: &Schema) -> Vec<(String, String, i64)> {
    schema
        .query("SELECT convert_from(delegation, 'UTF8'), encode(owner, 'hex'), takeovers FROM claims ORDER BY 1")
        .into_iter()
        .map(|row| {
            (
                row[0].clone().unwrap(),
                row[1].clone().unwrap(),
                row[2].clone().unwrap().parse().unwrap(),
            )
        })
        .collect()
}

/// Queues `id` as a dispatcher under `lease` would: claimed, then `queued`.
fn queue_under(ledger: &Ledger, lease: &Lease, id: &DelegationId) {
    let claim = ledger.claim_leased(id, Some(lease)).unwrap();
    ledger.record(id, Event::queued("planner", "held")).unwrap();
    // Its process "dies": the claim's row stays, the local claim goes.
    drop(claim);
}

/// A target that holds every answer until released, and keeps every message.
#[derive(Clone)]
struct Held {
    gate: Arc<Semaphore>,
    sent: Arc<Mutex<Vec<DelegationId>>>,
}

impl Default for Held {
    fn default() -> Self {
        Held {
            gate: Arc::new(Semaphore::new(0)),
            sent: Arc::default(),
        }
    }
}

impl Transport for Held {
    fn send(&self, message: Message) -> BoxFuture<'_, Result<Accepted, Failure>> {
        self.sent.lock().unwrap().push(message.delegation.clone());
        Box::pin(async move {
            let permit = self.gate.acquire().await;
            if let Ok(permit) = permit {
                permit.forget();
            }
            Ok(Accepted::status(200))
        })
    }
}

impl Held {
    fn sent(&self) -> Vec<DelegationId> {
        self.sent.lock().unwrap().clone()
    }
}

/// Waits until `owner`'s lease has outlived its first term by the server's
/// clock (its first `lease_until` is past), checking on every look that it
/// never ran out meanwhile: only renewals keep it live that long.
async fn outlives_its_first_term(schema: &Schema, owner: Owner) {
    let look = || {
        let row = schema.query(&format!(
            "SELECT (extract(epoch FROM lease_until) * 1000000)::bigint, \
                    (extract(epoch FROM now()) * 1000000)::bigint, lease_until > now() \
             FROM dispatchers WHERE id = {}",
            lit(owner)
        ));
        let row = row.first().expect("the lease's row");
        let micros = |n: usize| row[n].as_deref().unwrap().parse::<i64>().unwrap();
        (micros(0), micros(1), row[2].as_deref() == Some("t"))
    };
    let (first, _, _) = look();
    let started = Instant::now();
    loop {
        let (_, now, live) = look();
        assert!(live, "the lease ran out while renewed");
        if now > first {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the server's clock never passed {first}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dispatcher_claims_before_queued_renews_its_lease_and_its_outcome_ends_the_claim() {
    let Some(schema) = pg_support::fresh("lease_claims") else {
        return;
    };
    let ledger = Ledger::with_store(schema.store.clone(), Default::default());
    let target = Held::default();
    let dispatcher = Dispatcher::with_options(
        ledger.clone(),
        target.clone(),
        Options::new().lease(Duration::from_secs(3)),
    );
    assert!(dispatcher.lease().is_none(), "taken at first use");
    let receipt = dispatcher
        .delegate(Request::new("planner", "held").id(id("claimed")))
        .await
        .unwrap();
    let owner = dispatcher.lease().unwrap().owner();
    // In flight: its claim names the dispatcher, whose lease is live.
    assert_eq!(
        claims(&schema),
        vec![("claimed".into(), owner.to_string(), 0)]
    );
    assert!(live(&schema, owner));
    // The heartbeat renews it past its first term (the raw client runs on a
    // thread of its own, so it may block here).
    outlives_its_first_term(&schema, owner).await;
    assert!(dispatcher.lease().unwrap().holds(owner));
    assert_eq!(target.sent(), vec![id("claimed")]);
    target.gate.add_permits(1);
    let settled = receipt.settled().await.unwrap();
    assert_eq!(settled.id, id("claimed"));
    // Settled: the claim is gone; shut down: the lease is gone.
    assert!(claims(&schema).is_empty());
    dispatcher.shutdown().await.unwrap();
    assert_eq!(
        schema.query("SELECT count(*) FROM dispatchers"),
        vec![vec![Some("0".into())]]
    );
    assert_eq!(
        ledger.status(&id("claimed")).unwrap().status,
        StatusKind::Delivered
    );
}

#[test]
fn a_lease_not_renewed_runs_out_and_only_then_is_its_delegation_taken_over() {
    let Some(schema) = pg_support::fresh("lease_expiry") else {
        return;
    };
    let (a, b) = (process(&schema), process(&schema));
    // Long enough for the checks below while it is live, on a loaded machine.
    let dead = a.lease(Duration::from_secs(4)).unwrap().unwrap();
    let x = id("x");
    queue_under(&a, &dead, &x);
    let taker = b.lease(Duration::from_secs(30)).unwrap().unwrap();
    let ownership = b.store().ownership().unwrap();
    // Live: not taken, and recovery settles nothing.
    assert_eq!(
        ownership
            .take_over(taker.owner(), std::slice::from_ref(&x))
            .unwrap(),
        vec![]
    );
    assert!(b.recover().unwrap().is_empty());
    assert_eq!(b.status(&x).unwrap().status, StatusKind::Queued);
    assert_eq!(
        claims(&schema),
        vec![("x".into(), dead.owner().to_string(), 0)]
    );
    // Out, by the server's clock: taken, once, and counted.
    until(Duration::from_secs(15), "the lease ran out", || {
        !live(&schema, dead.owner())
    });
    assert!(
        !dead.holds(dead.owner()),
        "this process's deadline ends first"
    );
    assert_eq!(
        ownership
            .take_over(taker.owner(), std::slice::from_ref(&x))
            .unwrap(),
        vec![x.clone()]
    );
    assert_eq!(
        claims(&schema),
        vec![("x".into(), taker.owner().to_string(), 1)]
    );
    // The old owner's renewal finds it out, and takes a new lease.
    let old = dead.owner();
    match dead.renew().unwrap() {
        Renewal::Replaced { expired, now } => {
            assert_eq!(expired, old);
            assert_eq!(now, dead.owner());
            assert!(live(&schema, now));
        }
        other => panic!("expected a new lease, got {other:?}"),
    }
    // Claiming under an expired owner is refused, with nothing written.
    let stale = a.lease(Duration::from_millis(300)).unwrap().unwrap();
    until(Duration::from_secs(5), "the short lease ran out", || {
        !live(&schema, stale.owner())
    });
    match a.claim_leased(&id("late"), Some(&stale)) {
        Err(Error::LeaseExpired { id: refused }) => assert_eq!(refused, id("late")),
        other => panic!("expected LeaseExpired, got {other:?}"),
    }
    // A live owner's claim is refused to others.
    match b.claim_leased(&x, Some(&dead)) {
        Err(Error::Claimed { id: refused }) => assert_eq!(refused, x),
        other => panic!("expected Claimed, got {other:?}"),
    }
    assert_eq!(claims(&schema).len(), 1);
}

#[test]
fn racing_takeovers_give_each_delegation_to_exactly_one_taker() {
    let Some(schema) = pg_support::fresh("lease_race") else {
        return;
    };
    const TAKERS: usize = 6;
    const ORPHANS: usize = 80;
    let a = process(&schema);
    // Long enough that no pause lets it lapse while the orphans are queued;
    // ended on the server below, as a death would.
    let dead = a.lease(Duration::from_secs(60)).unwrap().unwrap();
    let ids: Vec<DelegationId> = (0..ORPHANS).map(|n| id(&format!("o-{n:03}"))).collect();
    for x in &ids {
        queue_under(&a, &dead, x);
    }
    // A third of them claimed by nobody (recorded straight into the log).
    let unclaimed: Vec<DelegationId> = (0..ORPHANS / 3).map(|n| id(&format!("u-{n:03}"))).collect();
    for x in &unclaimed {
        a.record(x, Event::queued("planner", "held")).unwrap();
    }
    schema.expire(dead.owner());
    assert!(!live(&schema, dead.owner()));
    let all: Vec<DelegationId> = ids.iter().chain(&unclaimed).cloned().collect();
    let barrier = Arc::new(Barrier::new(TAKERS));
    let takers: Vec<_> = (0..TAKERS)
        .map(|_| {
            let (ledger, barrier, all) = (process(&schema), Arc::clone(&barrier), all.clone());
            std::thread::spawn(move || {
                let lease = ledger.lease(Duration::from_secs(30)).unwrap().unwrap();
                barrier.wait();
                let taken = ledger
                    .store()
                    .ownership()
                    .unwrap()
                    .take_over(lease.owner(), &all)
                    .unwrap();
                (lease.owner(), taken)
            })
        })
        .collect();
    let mut seen = BTreeSet::new();
    let mut by_owner = Vec::new();
    for taker in takers {
        let (owner, taken) = taker.join().unwrap();
        for x in &taken {
            assert!(seen.insert(x.clone()), "{x} taken twice");
        }
        by_owner.push((owner, taken));
    }
    assert_eq!(seen, all.iter().cloned().collect::<BTreeSet<_>>());
    // The rows agree: each delegation's claim names its one taker, taken once.
    let rows = claims(&schema);
    assert_eq!(rows.len(), all.len());
    for (delegation, owner, takeovers) in rows {
        assert_eq!(takeovers, 1, "{delegation}");
        let taker = by_owner
            .iter()
            .find(|(_, taken)| taken.iter().any(|x| x.as_str() == delegation))
            .unwrap();
        assert_eq!(owner, taker.0.to_string(), "{delegation}");
    }
}

#[test]
fn after_a_takeover_the_late_settlement_loses_cleanly_whichever_comes_second() {
    let Some(schema) = pg_support::fresh("lease_settle") else {
        return;
    };
    let (a, b) = (process(&schema), process(&schema));
    let dead = a.lease(Duration::from_secs(60)).unwrap().unwrap();
    let (x, y) = (id("x"), id("y"));
    queue_under(&a, &dead, &x);
    queue_under(&a, &dead, &y);
    // y: the old owner settles first, while its lease has run out on the
    // server (ended there, as a long pause would).
    schema.expire(dead.owner());
    assert!(!live(&schema, dead.owner()));
    let won = a.settle(&y, Event::delivered(Some(200)).unwrap()).unwrap();
    assert!(matches!(won, Settlement::Won(_)), "{won:?}");
    // The settling write ended y's claim itself: no release was made.
    assert!(
        claims(&schema).iter().all(|claim| claim.0 != "y"),
        "{:?}",
        claims(&schema)
    );
    // The taker takes both, settles x, and loses y to the old owner quietly.
    let taker = b.lease(Duration::from_secs(30)).unwrap().unwrap();
    let report = b.recover_all_leased(Some(&taker));
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    assert_eq!(report.settled, vec![x.clone()]);
    assert_eq!(b.status(&y).unwrap().status, StatusKind::Delivered);
    // x: the old owner's late outcome loses to the taker's interrupted.
    match a.settle(&x, Event::delivered(Some(200)).unwrap()).unwrap() {
        Settlement::Lost { outcome, seq, .. } => {
            assert_eq!(seq, 2);
            assert!(
                format!("{outcome:?}").contains("Interrupted"),
                "{outcome:?}"
            );
        }
        other => panic!("expected the late outcome to lose, got {other:?}"),
    }
    let status = b.status(&x).unwrap();
    assert_eq!(status.reason, Some(ReasonCode::Interrupted));
    for d in [&x, &y] {
        assert_eq!(
            b.history(d).unwrap().len(),
            2,
            "{d}: queued and one outcome"
        );
    }
    // Settled: the write that settled each ended its claim, whoever held it
    // (the taker's on x, the dead owner's on y), so none is left to sweep.
    assert_eq!(claims(&schema), vec![]);
    assert!(b.audit().unwrap().is_clean());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recovery_elsewhere_leaves_a_live_dispatchers_deliveries_alone() {
    let Some(schema) = pg_support::fresh("lease_live") else {
        return;
    };
    let ledger = Ledger::with_store(schema.store.clone(), Default::default());
    let target = Held::default();
    let dispatcher = Dispatcher::with_options(
        ledger.clone(),
        target.clone(),
        Options::new().lease(Duration::from_secs(3)),
    );
    let receipt = dispatcher
        .delegate(Request::new("planner", "held").id(id("live")))
        .await
        .unwrap();
    let owner = dispatcher.lease().unwrap().owner();
    // Other processes recover, both ways, until the heartbeat has renewed
    // the lease past its first term.
    let other = process(&schema);
    let elsewhere = Dispatcher::new(other.clone(), Held::default());
    let renewed = outlives_its_first_term(&schema, owner);
    tokio::pin!(renewed);
    loop {
        let report = elsewhere.recover(Recovery::Redeliver).await;
        assert!(
            report.recovered.is_empty() && report.is_complete(),
            "{report:?}"
        );
        let settled = tokio::task::spawn_blocking({
            let other = other.clone();
            move || other.recover().unwrap()
        })
        .await
        .unwrap();
        assert!(settled.is_empty(), "{settled:?}");
        tokio::select! {
            () = &mut renewed => break,
            () = tokio::time::sleep(Duration::from_millis(100)) => {}
        }
    }
    target.gate.add_permits(1);
    receipt.settled().await.unwrap();
    dispatcher.shutdown().await.unwrap();
    elsewhere.shutdown().await.unwrap();
    assert_eq!(
        ledger.status(&id("live")).unwrap().status,
        StatusKind::Delivered
    );
    assert_eq!(target.sent(), vec![id("live")]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dispatcher_whose_lease_ran_out_sends_nothing_more_under_it() {
    let Some(schema) = pg_support::fresh("lease_lost") else {
        return;
    };
    let ledger = Ledger::with_store(schema.store.clone(), Default::default());
    let target = Held::default();
    let dispatcher = Dispatcher::with_options(
        ledger.clone(),
        target.clone(),
        Options::new().lease(Duration::from_secs(3)).concurrency(1),
    );
    let first = dispatcher
        .delegate(Request::new("planner", "held").id(id("first")))
        .await
        .unwrap();
    // The second waits for the one delivery slot.
    let second = dispatcher
        .delegate(Request::new("planner", "held").id(id("second")))
        .await
        .unwrap();
    let old = dispatcher.lease().unwrap().owner();
    // The server ends the lease (as a long pause would); the heartbeat finds
    // out and takes a new one.
    schema.expire(old);
    let started = Instant::now();
    while dispatcher.lease().unwrap().owner() == old {
        assert!(started.elapsed() < Duration::from_secs(20), "no new lease");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    target.gate.add_permits(1);
    assert_eq!(first.settled().await.unwrap().id, id("first"));
    let second = second.settled().await.unwrap();
    match second.outcome {
        delegation_log::Outcome::Failed(failed) => {
            assert_eq!(failed.reason, delegation_log::FailureReason::Interrupted);
            assert!(failed.detail.unwrap().contains("lease ran out"));
        }
        other => panic!("expected interrupted, got {other:?}"),
    }
    // Only the first was ever sent; new delegations go out under the new lease.
    assert_eq!(target.sent(), vec![id("first")]);
    target.gate.add_permits(1);
    let third = dispatcher
        .delegate(Request::new("planner", "held").id(id("third")))
        .await
        .unwrap();
    assert_eq!(third.settled().await.unwrap().id, id("third"));
    dispatcher.shutdown().await.unwrap();
    assert_eq!(target.sent(), vec![id("first"), id("third")]);
    assert_eq!(
        ledger.status(&id("third")).unwrap().status,
        StatusKind::Delivered
    );
}

#[test]
fn taking_a_lease_sweeps_the_claims_dead_dispatchers_left_on_settled_or_never_queued_delegations() {
    let Some(schema) = pg_support::fresh("sweep") else {
        return;
    };
    let ledger = process(&schema);
    let minute = Duration::from_secs(60);
    let (dead, live) = (
        ledger.lease(minute).unwrap().unwrap(),
        ledger.lease(minute).unwrap().unwrap(),
    );
    let settled_of_dead = id("settled-of-dead");
    let queued_of_dead = id("queued-of-dead");
    let settled_of_live = id("settled-of-live");
    for (lease, id) in [
        (&dead, &settled_of_dead),
        (&dead, &queued_of_dead),
        (&live, &settled_of_live),
    ] {
        queue_under(&ledger, lease, id);
    }
    // Claimed, then its process died before `queued`.
    let never_queued = id("never-queued");
    drop(ledger.claim_leased(&never_queued, Some(&dead)).unwrap());
    for id in [&settled_of_dead, &settled_of_live] {
        ledger
            .record(id, Event::delivered(Some(200)).unwrap())
            .unwrap();
    }
    // The settling writes ended their claims. Put them back as a process that
    // died between a claim and its release leaves one on a settled delegation
    // (its duplicate `queued` was refused), or an older crate's lost release.
    assert_eq!(claims(&schema).len(), 2);
    for (lease, id) in [(&dead, &settled_of_dead), (&live, &settled_of_live)] {
        let hex: String = id.as_str().bytes().map(|b| format!("{b:02x}")).collect();
        schema.execute(&format!(
            "INSERT INTO claims (delegation, owner) VALUES ('\\x{hex}'::bytea, {})",
            lit(lease.owner())
        ));
    }
    // A dispatcher that ended cleanly long ago and claims nothing, and the
    // dead one's lease, which ran out two hours ago (its releases were lost).
    let retired = Owner::fresh();
    schema.execute(&format!(
        "INSERT INTO dispatchers (id, host, pid, started_at, lease_until)
         VALUES ({}, 'gone', 1, now() - interval '3 hours', now() - interval '2 hours');
         UPDATE dispatchers SET lease_until = now() - interval '2 hours' WHERE id = {};",
        lit(retired),
        lit(dead.owner())
    ));
    // A dispatcher whose lease ran out a moment ago is not yet gone for good.
    let recent = Owner::fresh();
    schema.execute(&format!(
        "INSERT INTO dispatchers (id, host, pid, started_at, lease_until)
         VALUES ({}, 'late', 1, now() - interval '1 minute', now() - interval '1 second')",
        lit(recent)
    ));
    assert_eq!(claims(&schema).len(), 4);

    let next = ledger.lease(minute).unwrap().unwrap();
    let left: Vec<String> = claims(&schema).into_iter().map(|claim| claim.0).collect();
    assert_eq!(
        left,
        vec![queued_of_dead.to_string(), settled_of_live.to_string()],
        "only the dead dispatcher's claims on settled and never-queued delegations go"
    );
    let rows = |owner: Owner| {
        schema.query(&format!(
            "SELECT count(*) FROM dispatchers WHERE id = {}",
            lit(owner)
        )) == vec![vec![Some("1".into())]]
    };
    assert!(
        !rows(retired),
        "a dispatcher gone for good that claims nothing goes"
    );
    assert!(
        rows(dead.owner()),
        "one that still claims a queued delegation stays"
    );
    assert!(rows(recent), "one whose lease ran out a moment ago stays");
    assert!(rows(live.owner()));

    // A taker still gets the queued one, and counts the takeover.
    let ownership = ledger.store().ownership().unwrap();
    let taken = ownership
        .take_over(next.owner(), std::slice::from_ref(&queued_of_dead))
        .unwrap();
    assert_eq!(taken, vec![queued_of_dead.clone()]);
    assert_eq!(
        claims(&schema)[0],
        (queued_of_dead.to_string(), next.owner().to_string(), 1)
    );
}

/// PostgreSQL behind a wrapper that forwards neither `append_hinted` nor
/// `hints_with_appends`: the ledger writes its hints around the appends, so
/// no settling append ends a claim, though the ownership is PostgreSQL's.
struct HintsApart(Arc<Postgres>);

impl delegation_log::store::Store for HintsApart {
    fn append(
        &self,
        appends: &[delegation_log::store::Append<'_>],
    ) -> Result<(), delegation_log::store::AppendError> {
        self.0.append(appends)
    }
    fn head(
        &self,
        id: &DelegationId,
    ) -> Result<Option<delegation_log::store::Head>, delegation_log::ReadError> {
        self.0.head(id)
    }
    fn history(
        &self,
        id: &DelegationId,
    ) -> Result<delegation_log::store::Stream, delegation_log::ReadError> {
        self.0.history(id)
    }
    fn scan(
        &self,
    ) -> Box<
        dyn Iterator<Item = Result<delegation_log::store::Stream, delegation_log::ReadError>>
            + Send
            + '_,
    > {
        self.0.scan()
    }
    fn flush(&self) -> delegation_log::Result<()> {
        self.0.flush()
    }
    fn remote(&self) -> bool {
        true
    }
    fn ownership(&self) -> Option<&dyn delegation_log::store::Ownership> {
        self.0.ownership()
    }
    fn index(&self) -> Option<&dyn delegation_log::store::Index> {
        self.0.index()
    }
}

/// A claim whose own write settled its delegation ends without a release only
/// where that write ended the claim row: on PostgreSQL itself, yes; behind a
/// store that writes hints apart from its appends, `Claim::settled` releases.
/// Either way no claim row is left.
#[test]
fn a_settled_claim_is_released_unless_the_settling_write_ended_it() {
    let Some(schema) = pg_support::fresh("settled_claims") else {
        return;
    };
    let pg = Arc::new(
        Postgres::connect_with(&schema.url, Connect::new().schema(schema.name.clone())).unwrap(),
    );
    for (ledger, name) in [
        (Ledger::with_store(pg.clone(), Default::default()), "fused"),
        (
            Ledger::with_store(Arc::new(HintsApart(pg.clone())), Default::default()),
            "apart",
        ),
    ] {
        let lease = ledger.lease(Duration::from_secs(60)).unwrap().unwrap();
        let x = id(name);
        let claim = ledger.claim_leased(&x, Some(&lease)).unwrap();
        ledger.record(&x, Event::queued("planner", "t")).unwrap();
        ledger
            .settle(&x, Event::delivered(Some(200)).unwrap())
            .unwrap();
        let left = claims(&schema).len();
        assert_eq!(
            left,
            usize::from(name == "apart"),
            "{name}: after the outcome"
        );
        claim.settled().unwrap();
        assert_eq!(claims(&schema), vec![], "{name}: after Claim::settled");
        lease.retire().unwrap();
    }
}

/// A dispatcher's lease is renewed on a connection of its own: with every
/// connection of the store held by a read that waits for a lock another session
/// holds, a renewal is still answered at once, and the lease stays live.
#[test]
fn a_lease_is_renewed_while_every_connection_of_the_store_waits_for_a_lock() {
    use delegation_log::store::{Ownership, Store};

    let Some(schema) = pg_support::fresh("renew_held") else {
        return;
    };
    let app = schema.name.clone();
    let store = Arc::new(
        Postgres::connect_with(
            &format!(
                "{}{}application_name={app}",
                schema.url,
                pg_support::sep(&schema.url)
            ),
            Connect::new().schema(schema.name.clone()).connections(2),
        )
        .unwrap(),
    );
    let owner = Owner::fresh();
    // Long enough that the lease outlives the waits below on a slow machine.
    let lease = Duration::from_secs(60);
    store.register(owner, lease).unwrap();
    let ledger = Ledger::with_store(store.clone(), Default::default());
    let queued = id("queued");
    ledger
        .record(&queued, Event::queued("planner", "http://127.0.0.1:9/a2a"))
        .unwrap();

    let held = pg_support::hold(
        &schema.url,
        format!("LOCK TABLE {}.heads IN ACCESS EXCLUSIVE MODE", schema.name),
    );
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let (store, queued) = (store.clone(), queued.clone());
            std::thread::spawn(move || store.head(&queued))
        })
        .collect();
    let waiting = format!(
        "SELECT count(*) FROM pg_stat_activity \
         WHERE application_name = '{app}' AND wait_event_type = 'Lock'"
    );
    until(Duration::from_secs(10), "both connections to wait", || {
        schema.query(&waiting) == vec![vec![Some("2".into())]]
    });

    let (renewed, answer) = std::sync::mpsc::channel();
    let renewer = {
        let store = store.clone();
        std::thread::spawn(move || renewed.send(store.renew(owner, lease)).unwrap())
    };
    let answered = answer.recv_timeout(Duration::from_secs(5));
    let still_waiting = schema.query(&waiting);
    held.release();
    renewer.join().unwrap();
    for reader in readers {
        assert_eq!(reader.join().unwrap().unwrap().unwrap().seq, 1);
    }
    assert!(
        matches!(answered, Ok(Ok(true))),
        "the renewal, while the store's connections waited: {answered:?}"
    );
    assert_eq!(still_waiting, vec![vec![Some("2".into())]]);
    assert!(live(&schema, owner));
}
