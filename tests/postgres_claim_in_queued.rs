//! Guards the claim written in the statement of a new delegation's `queued`
//! on PostgreSQL ([`Ledger::queue_leased`], `Store::append_claimed`): the
//! claim and `queued` commit together or not at all. A write under a lease
//! that ran out is refused as `LeaseExpired`, and one on an id another live
//! owner claims as `Claimed`, each writing neither the record nor the claim;
//! a dead owner's claim passes to the writer of `queued`; of dispatchers racing
//! on one id exactly one writes it, and the store then holds one `queued` and
//! one claim, the winner's. Needs `DATABASE_URL` (`bash .ci/postgres`); under
//! `CI=true` its absence fails.
#![cfg(feature = "postgres")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod pg_support;
mod support;

use std::sync::{Arc, Barrier};
use std::time::Duration;

use delegation_log::event::Queued;
use delegation_log::ledger::Lease;
use delegation_log::store::{Connect, Owner, Postgres};
use delegation_log::{DelegationId, Error, Event, Ledger, StatusKind};
use pg_support::Schema;
use support::id;

/// A ledger over `schema` through a store of its own: another process's view.
fn process(schema: &Schema) -> Ledger {
    let store =
        Postgres::connect_with(&schema.url, Connect::new().schema(schema.name.clone())).unwrap();
    Ledger::with_store(Arc::new(store), Default::default())
}

fn lease(ledger: &Ledger) -> Lease {
    ledger.lease(Duration::from_secs(60)).unwrap().unwrap()
}

fn queued() -> Queued {
    Queued::new("planner", "t")
}

/// The claims, as (delegation text, owner hex).
fn claims(schema: &Schema) -> Vec<(String, String)> {
    schema
        .query(
            "SELECT convert_from(delegation, 'UTF8'), encode(owner, 'hex') FROM claims ORDER BY 1",
        )
        .into_iter()
        .map(|row| (row[0].clone().unwrap(), row[1].clone().unwrap()))
        .collect()
}

/// The owner (hex) of `x`'s claim, if it has one.
fn claim_of(schema: &Schema, x: &DelegationId) -> Option<String> {
    claims(schema)
        .into_iter()
        .find(|(delegation, _)| *delegation == x.to_string())
        .map(|(_, owner)| owner)
}

/// How many records and heads `x` has.
fn stored(schema: &Schema, x: &DelegationId) -> (i64, i64) {
    let count = |table: &str| -> i64 {
        schema.query(&format!(
            "SELECT count(*) FROM {table} WHERE delegation = convert_to('{x}', 'UTF8')"
        ))[0][0]
            .clone()
            .unwrap()
            .parse()
            .unwrap()
    };
    (count("records"), count("heads"))
}

#[test]
fn a_new_delegation_is_queued_with_its_claim_and_its_outcome_ends_it() {
    let Some(schema) = pg_support::fresh("claim_in_queued") else {
        return;
    };
    let ledger = process(&schema);
    let lease = lease(&ledger);
    let x = id("with-claim");
    let (recorded, claim) = ledger.queue_leased(&x, queued(), Some(&lease)).unwrap();
    assert_eq!(recorded.seq, 1);
    assert_eq!(claim.owner(), Some(lease.owner()));
    assert!(ledger.is_claimed(&x), "claimed in this process too");
    assert_eq!(
        claims(&schema),
        vec![(x.to_string(), lease.owner().to_string())]
    );
    assert_eq!(stored(&schema, &x), (1, 1));
    ledger
        .settle(&x, Event::delivered(Some(200)).unwrap())
        .unwrap();
    claim.settled().unwrap();
    assert!(claims(&schema).is_empty(), "the outcome's write ended it");
    assert!(!ledger.is_claimed(&x));
}

#[test]
fn queued_under_a_lease_that_ran_out_writes_neither_record_nor_claim() {
    let Some(schema) = pg_support::fresh("claim_in_queued_expired") else {
        return;
    };
    let ledger = process(&schema);
    let lease = lease(&ledger);
    schema.expire(lease.owner());
    let x = id("expired");
    let refused = ledger.queue_leased(&x, queued(), Some(&lease));
    assert!(
        matches!(&refused, Err(Error::LeaseExpired { id }) if *id == x),
        "{refused:?}"
    );
    assert_eq!(stored(&schema, &x), (0, 0), "no record, no head");
    assert!(claims(&schema).is_empty(), "no claim");
    assert!(!ledger.is_claimed(&x), "nor in this process");
    assert!(
        ledger.store().head(&x).unwrap().is_none(),
        "no head to read"
    );
    // The ledger is sound: a new lease writes it.
    let next = self::lease(&ledger);
    let (recorded, _claim) = ledger.queue_leased(&x, queued(), Some(&next)).unwrap();
    assert_eq!(recorded.seq, 1);
    assert_eq!(
        claims(&schema),
        vec![(x.to_string(), next.owner().to_string())]
    );
}

#[test]
fn queued_on_an_id_another_live_owner_claims_writes_neither_record_nor_claim() {
    let Some(schema) = pg_support::fresh("claim_in_queued_taken") else {
        return;
    };
    let (a, b) = (process(&schema), process(&schema));
    let (lease_a, lease_b) = (lease(&a), lease(&b));
    // A claimed `x` and has not written its `queued` yet.
    let x = id("taken");
    let _held = a.claim_leased(&x, Some(&lease_a)).unwrap();
    let refused = b.queue_leased(&x, queued(), Some(&lease_b));
    assert!(
        matches!(&refused, Err(Error::Claimed { id }) if *id == x),
        "{refused:?}"
    );
    assert_eq!(stored(&schema, &x), (0, 0), "no record, no head");
    assert_eq!(
        claims(&schema),
        vec![(x.to_string(), lease_a.owner().to_string())],
        "A's claim stays A's, and B wrote none"
    );
    assert!(!b.is_claimed(&x));

    // A queued `y` with its claim: B's `queued` of it is refused as claimed
    // too, and changes nothing.
    let y = id("queued-by-a");
    let (_, _claim_y) = a.queue_leased(&y, queued(), Some(&lease_a)).unwrap();
    let refused = b.queue_leased(&y, queued(), Some(&lease_b));
    assert!(
        matches!(&refused, Err(Error::Claimed { id }) if *id == y),
        "{refused:?}"
    );
    assert_eq!(stored(&schema, &y), (1, 1));
    assert_eq!(claim_of(&schema, &y), Some(lease_a.owner().to_string()));

    // A's own second `queued` of `y` is a lost race for the id (it exists),
    // and leaves A's claim of the live delivery alone.
    let again = a.queue_leased(&y, queued(), Some(&lease_a));
    assert!(
        matches!(&again, Err(Error::IllegalTransition { .. })),
        "{again:?}"
    );
    assert_eq!(stored(&schema, &y), (1, 1));
    assert_eq!(claim_of(&schema, &y), Some(lease_a.owner().to_string()));
}

#[test]
fn a_dead_owners_claim_passes_to_the_writer_of_queued() {
    let Some(schema) = pg_support::fresh("claim_in_queued_dead") else {
        return;
    };
    let (a, b) = (process(&schema), process(&schema));
    let (lease_a, lease_b) = (lease(&a), lease(&b));
    // A claimed `x`, then died before its `queued`: its lease runs out.
    let x = id("of-the-dead");
    drop(a.claim_leased(&x, Some(&lease_a)).unwrap());
    schema.expire(lease_a.owner());
    let (recorded, claim) = b.queue_leased(&x, queued(), Some(&lease_b)).unwrap();
    assert_eq!(recorded.seq, 1);
    assert_eq!(claim.owner(), Some(lease_b.owner()));
    assert_eq!(stored(&schema, &x), (1, 1));
    assert_eq!(
        claims(&schema),
        vec![(x.to_string(), lease_b.owner().to_string())]
    );
    assert_eq!(b.status(&x).unwrap().status, StatusKind::Queued);
}

#[test]
fn of_dispatchers_racing_on_one_id_one_writes_it_with_one_claim() {
    let Some(schema) = pg_support::fresh("claim_in_queued_race") else {
        return;
    };
    const RACERS: usize = 6;
    const ROUNDS: usize = 20;
    let ledgers: Vec<(Ledger, Lease)> = (0..RACERS)
        .map(|_| {
            let ledger = process(&schema);
            let lease = lease(&ledger);
            (ledger, lease)
        })
        .collect();
    for round in 0..ROUNDS {
        let x = id(&format!("raced-{round}"));
        let barrier = Barrier::new(RACERS);
        let answers: Vec<(Owner, Result<(), Error>)> = std::thread::scope(|scope| {
            let racers: Vec<_> = ledgers
                .iter()
                .map(|(ledger, lease)| {
                    let (x, barrier) = (&x, &barrier);
                    scope.spawn(move || {
                        barrier.wait();
                        let answer = ledger
                            .queue_leased(x, queued(), Some(lease))
                            // Keep no claim in this process past the round.
                            .map(drop);
                        (lease.owner(), answer)
                    })
                })
                .collect();
            racers.into_iter().map(|r| r.join().unwrap()).collect()
        });
        let winners: Vec<Owner> = answers
            .iter()
            .filter(|(_, answer)| answer.is_ok())
            .map(|(owner, _)| *owner)
            .collect();
        assert_eq!(winners.len(), 1, "round {round}: {answers:?}");
        for (_, answer) in answers.iter().filter(|(_, answer)| answer.is_err()) {
            assert!(
                matches!(
                    answer,
                    Err(Error::Claimed { .. } | Error::IllegalTransition { .. })
                ),
                "round {round}: a loser gets a typed refusal: {answer:?}"
            );
        }
        assert_eq!(stored(&schema, &x), (1, 1), "round {round}: one `queued`");
        assert_eq!(
            claim_of(&schema, &x),
            Some(winners[0].to_string()),
            "round {round}: one claim, the winner's"
        );
    }
}
