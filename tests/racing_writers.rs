//! Guards promise 3 under contention: K tokio tasks race to settle one delegation,
//! on a multi-thread runtime against the sled store and, from the same
//! definition, against PostgreSQL (feature `postgres`, `DATABASE_URL` from
//! `bash .ci/postgres`; without a server it says how to start one and passes
//! over, under `CI=true` it fails). Exactly one wins, every other writer gets
//! `AlreadySettled`, and the log holds exactly one terminal record. A reader
//! racing the writers always gets a true status, never a false `Corrupt` (sled
//! reads a delegation's records and head apart).
//! A writer that loses the race for a head to another process sharing the store
//! reads the head again and is judged against the winner; one that keeps losing
//! gives up with `Conflict`, without poisoning the ledger or writing anything.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

#[cfg(feature = "postgres")]
mod pg_support;
mod store_support;

use std::sync::Arc;

use delegation_log::event::EventKind;
use delegation_log::ledger::Options;
use delegation_log::lifecycle::State;
use delegation_log::store::{AppendError, Memory, Store};
use delegation_log::{
    DelegationId, Durability, Error, Event, FailureReason, Ledger, Outcome, Settlement, StatusKind,
};
use store_support::Hooked;
use tokio::sync::Barrier;

const ROUNDS: usize = 1_000;

/// Rounds on PostgreSQL, where every write is a durable commit on a server.
#[cfg(feature = "postgres")]
const PG_ROUNDS: usize = 100;

fn outcome(writer: usize) -> Event {
    match writer % 3 {
        0 => Event::delivered(Some(200)).unwrap(),
        1 => Event::failed(FailureReason::HttpStatus(500 + (writer % 99) as u16), None).unwrap(),
        _ => Event::failed(FailureReason::Timeout, Some(format!("writer {writer}"))).unwrap(),
    }
}

/// The race on a sled ledger.
async fn race(writers: usize) {
    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::open_with(
        dir.path().join("log"),
        Options::new().durability(Durability::Buffered),
    )
    .unwrap();
    race_on(&[ledger], writers, ROUNDS).await;
}

/// The race on PostgreSQL, on a schema of its own, as between processes: each
/// writer has a ledger of its own (so no ledger orders them in memory), over
/// three stores with connections of their own; only the database decides.
#[cfg(feature = "postgres")]
async fn race_postgres(writers: usize) {
    use delegation_log::store::{Connect, Postgres};
    let Some(schema) = pg_support::fresh("race") else {
        return;
    };
    let mut stores = vec![schema.store.clone()];
    for _ in 0..2 {
        let store = Postgres::connect_with(&schema.url, Connect::new().schema(schema.name.clone()));
        stores.push(Arc::new(store.unwrap()));
    }
    let ledgers: Vec<Ledger> = (0..writers)
        .map(|writer| {
            Ledger::with_store(
                stores[writer % stores.len()].clone(),
                Options::new().durability(Durability::Buffered),
            )
        })
        .collect();
    race_on(&ledgers, writers, PG_ROUNDS).await;
    // The database's side: one head per round, each at seq 2 over two records.
    let rows = schema
        .query("SELECT (SELECT count(*) FROM heads WHERE seq = 2), (SELECT count(*) FROM records)");
    assert_eq!(
        rows,
        vec![vec![
            Some(PG_ROUNDS.to_string()),
            Some((2 * PG_ROUNDS).to_string())
        ]]
    );
}

/// `rounds` rounds of `writers` writers racing to settle one delegation; writer
/// `w` writes through `ledgers[w % ledgers.len()]`.
async fn race_on(ledgers: &[Ledger], writers: usize, rounds: usize) {
    let ledger = &ledgers[0];
    for round in 0..rounds {
        let id: DelegationId = format!("race-{writers}-{round}").parse().unwrap();
        ledger
            .record(&id, Event::queued("planner", "target"))
            .unwrap();
        let barrier = Arc::new(Barrier::new(writers + 1));
        let reader = {
            let (ledger, id, barrier) = (ledger.clone(), id.clone(), barrier.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                for _ in 0..4 {
                    let status = ledger.status(&id);
                    assert!(status.is_ok(), "a read racing the writers: {status:?}");
                    let history = ledger.history(&id);
                    assert!(history.is_ok(), "a read racing the writers: {history:?}");
                    tokio::task::yield_now().await;
                }
            })
        };
        let tasks: Vec<_> = (0..writers)
            .map(|writer| {
                let ledger = ledgers[writer % ledgers.len()].clone();
                let (id, barrier) = (id.clone(), barrier.clone());
                tokio::spawn(async move {
                    barrier.wait().await;
                    (writer, ledger.record(&id, outcome(writer)))
                })
            })
            .collect();
        let mut winners = Vec::new();
        for task in tasks {
            match task.await.unwrap() {
                (writer, Ok(recorded)) => {
                    assert_eq!(recorded.seq, 2);
                    winners.push(writer);
                }
                (_, Err(Error::AlreadySettled { state, event, .. })) => {
                    assert!(state.is_settled());
                    assert_ne!(event, EventKind::Queued);
                }
                (_, Err(other)) => panic!("round {round}: unexpected error {other}"),
            }
        }
        reader.await.unwrap();
        assert_eq!(winners.len(), 1, "round {round}: winners {winners:?}");
        let history = ledger.history(&id).unwrap();
        assert_eq!(
            history.len(),
            2,
            "round {round}: exactly one terminal record"
        );
        assert_eq!(history[1].event, outcome(winners[0]));
        let status = ledger.delegation(&id).unwrap().unwrap();
        assert!(matches!(status.state, State::Delivered | State::Failed));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_racing_writers_settle_once() {
    race(2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn eight_racing_writers_settle_once() {
    race(8).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixty_four_racing_writers_settle_once() {
    race(64).await;
}

#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_racing_writers_settle_once_on_postgres() {
    race_postgres(2).await;
}

#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn eight_racing_writers_settle_once_on_postgres() {
    race_postgres(8).await;
}

#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixty_four_racing_writers_settle_once_on_postgres() {
    race_postgres(64).await;
}

/// A writer whose append loses the race for the head (another process sharing
/// the store wrote first) reads the head again and is judged against the
/// winner: its outcome is refused, and `settle` names the outcome that won.
#[test]
fn a_writer_that_loses_the_race_for_the_head_reads_again_and_learns_the_winner() {
    let shared = Arc::new(Memory::new());
    let other = Ledger::with_store(shared.clone(), Options::new());
    let id: DelegationId = "contested".parse().unwrap();
    other
        .record(&id, Event::queued("planner", "target"))
        .unwrap();
    // A store shared with the other writer: on this ledger's first append, the
    // other writer's append lands first, so this one loses the race for the head.
    let (winner, winning) = (other.clone(), id.clone());
    let race = std::sync::Mutex::new(Some(move || {
        winner
            .record(&winning, Event::delivered(Some(200)).unwrap())
            .unwrap();
    }));
    let store = Hooked::over(shared.clone()).on_append(move |inner, appends| {
        if let Some(other) = race.lock().unwrap().take() {
            other();
        }
        inner.append(appends)
    });
    let ledger = Ledger::with_store(Arc::new(store), Options::new());
    let lost = ledger
        .settle(&id, Event::failed(FailureReason::Timeout, None).unwrap())
        .unwrap();
    let Settlement::Lost { outcome, seq, .. } = lost else {
        panic!("the writer that lost the race won: {lost:?}");
    };
    assert_eq!(seq, 2);
    assert!(
        matches!(
            outcome,
            Outcome::Delivered {
                http_status: Some(200),
                ..
            }
        ),
        "{outcome:?}"
    );
    assert_eq!(ledger.history(&id).unwrap().len(), 2);
    assert_eq!(ledger.status(&id).unwrap().status, StatusKind::Delivered);
}

/// A write that loses the race for its head every time gives up after 16
/// attempts with `Conflict`, and neither poisons the ledger nor writes anything.
#[test]
fn a_write_that_keeps_losing_the_race_gives_up_with_conflict_after_16_attempts() {
    // A store whose head always moves before the write lands.
    let always_ahead = Hooked::over(Arc::new(Memory::new())).on_append(|_, appends| {
        let first = appends.first().unwrap();
        Err(AppendError::Conflict {
            id: first.id.clone(),
            expected: first.expect,
            actual: Some(7),
        })
    });
    let ledger = Ledger::with_store(Arc::new(always_ahead), Options::new());
    let id: DelegationId = "never".parse().unwrap();
    let error = ledger
        .record(&id, Event::queued("planner", "target"))
        .unwrap_err();
    assert!(
        matches!(&error, Error::Conflict { id: named, attempts: 16 } if *named == id),
        "{error:?}"
    );
    // A lost race is not a failed write: the ledger still serves.
    assert_eq!(ledger.status(&id).unwrap().status, StatusKind::NotFound);
}

/// Two ledgers over one remote store, as two processes sharing a server: each
/// writes on the heads it wrote last, unread.
fn remote_pair() -> (Ledger, Ledger, Arc<Hooked>, Arc<Hooked>) {
    let shared = Arc::new(Memory::new());
    let (a, b) = (
        Arc::new(Hooked::over(shared.clone()).remote()),
        Arc::new(Hooked::over(shared).remote()),
    );
    (
        Ledger::with_store(a.clone(), Options::new()),
        Ledger::with_store(b.clone(), Options::new()),
        a,
        b,
    )
}

/// On a remote store a ledger writes a lifecycle without reading a head: the
/// `queued` of a new delegation on no head, its outcome on the head the
/// `queued` wrote. The log is as if every head had been read.
#[test]
fn on_a_remote_store_a_lifecycle_reads_no_head_and_logs_the_same() {
    let (ledger, _, store, _) = remote_pair();
    let id: DelegationId = "unread".parse().unwrap();
    ledger
        .record(&id, Event::queued("planner", "target"))
        .unwrap();
    let settled = ledger
        .settle(&id, Event::delivered(Some(200)).unwrap())
        .unwrap();
    assert!(
        matches!(settled, Settlement::Won(ref r) if r.seq == 2),
        "{settled:?}"
    );
    assert_eq!(store.head_reads(), 0, "no head was read to write");
    assert_eq!(ledger.status(&id).unwrap().status, StatusKind::Delivered);
    assert_eq!(ledger.history(&id).unwrap().len(), 2);
    assert!(ledger.audit().unwrap().is_clean());
}

/// A remembered head that another process moved is a lost race, never a write
/// past it: the ledger reads the head, learns the winner, and writes nothing;
/// and it forgets that head, so its next write there starts from a read
/// instead of sending an append bound to lose.
#[test]
fn a_remembered_head_another_process_moved_is_read_again_and_the_winner_learned() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let shared = Arc::new(Memory::new());
    let appends = Arc::new(AtomicUsize::new(0));
    let counted = appends.clone();
    let store = Hooked::over(shared.clone())
        .remote()
        .on_append(move |inner, group| {
            counted.fetch_add(1, Ordering::SeqCst);
            inner.append(group)
        });
    let mine = Ledger::with_store(Arc::new(store), Options::new());
    let theirs = Ledger::with_store(Arc::new(Hooked::over(shared).remote()), Options::new());
    let id: DelegationId = "moved".parse().unwrap();
    mine.record(&id, Event::queued("planner", "target"))
        .unwrap();
    theirs
        .settle(&id, Event::delivered(Some(200)).unwrap())
        .unwrap();
    let lost = mine
        .settle(&id, Event::failed(FailureReason::Timeout, None).unwrap())
        .unwrap();
    assert!(
        matches!(
            lost,
            Settlement::Lost {
                seq: 2,
                outcome: Outcome::Delivered { .. },
                ..
            }
        ),
        "{lost:?}"
    );
    assert_eq!(mine.history(&id).unwrap().len(), 2);
    let sent = appends.load(Ordering::SeqCst);
    let again = mine
        .settle(&id, Event::failed(FailureReason::Timeout, None).unwrap())
        .unwrap();
    assert!(
        matches!(again, Settlement::Lost { seq: 2, .. }),
        "{again:?}"
    );
    assert_eq!(
        appends.load(Ordering::SeqCst),
        sent,
        "decided on a read: no append sent"
    );
    assert!(mine.audit().unwrap().is_clean());
}

/// A `queued` written unread on no head, for a delegation another process
/// already queued, is refused exactly as if the head had been read first; a
/// remembered head that refuses an event is not believed (the refusal names
/// the state the log holds, not the one remembered); and a retry whose
/// original another process settled is refused naming the state the log
/// holds.
#[test]
fn a_guess_of_no_head_or_an_old_head_refuses_only_what_the_log_refuses() {
    let (mine, theirs, _, _) = remote_pair();
    let reference = Ledger::with_store(Arc::new(Memory::new()), Options::new());
    let id: DelegationId = "twice".parse().unwrap();
    for ledger in [&theirs, &reference] {
        ledger
            .record(&id, Event::queued("planner", "target"))
            .unwrap();
    }
    let guessed = mine
        .record(&id, Event::queued("planner", "target"))
        .unwrap_err();
    let read = reference
        .record(&id, Event::queued("planner", "target"))
        .unwrap_err();
    assert_eq!(guessed.to_string(), read.to_string());

    // `mine` remembers `settled` queued, which refuses a second `queued`; the
    // log holds it delivered, which refuses it too, naming `delivered`.
    let settled: DelegationId = "settled".parse().unwrap();
    mine.record(&settled, Event::queued("planner", "target"))
        .unwrap();
    reference
        .record(&settled, Event::queued("planner", "target"))
        .unwrap();
    for ledger in [&theirs, &reference] {
        ledger
            .settle(&settled, Event::delivered(Some(200)).unwrap())
            .unwrap();
    }
    let guessed = mine
        .record(&settled, Event::queued("planner", "target"))
        .unwrap_err();
    let read = reference
        .record(&settled, Event::queued("planner", "target"))
        .unwrap_err();
    assert_eq!(guessed.to_string(), read.to_string());

    // `mine` remembers `original` queued; `theirs` settles it meanwhile.
    let original: DelegationId = "original".parse().unwrap();
    mine.record(&original, Event::queued("planner", "target"))
        .unwrap();
    theirs
        .settle(&original, Event::delivered(Some(200)).unwrap())
        .unwrap();
    let failed = match Event::failed(FailureReason::Timeout, None).unwrap() {
        Event::Failed(failed) => failed,
        other => panic!("{other:?}"),
    };
    let queued = match Event::queued("planner", "target") {
        Event::Queued(queued) => queued,
        other => panic!("{other:?}"),
    };
    let retry: DelegationId = "original.2".parse().unwrap();
    let error = mine.retry(&original, failed, &retry, queued).unwrap_err();
    assert!(
        matches!(
            &error,
            Error::AlreadySettled {
                state: State::Delivered,
                ..
            }
        ),
        "{error:?}"
    );
    assert_eq!(mine.status(&retry).unwrap().status, StatusKind::NotFound);
    assert!(mine.audit().unwrap().is_clean());
}
