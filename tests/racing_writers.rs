//! Guards promise 3 under contention: K tokio tasks race to settle one delegation,
//! on a multi-thread runtime against the sled store. Exactly one wins, every other
//! writer gets `AlreadySettled`, and the log holds exactly one terminal record.
//! A reader racing the writers always gets a true status, never a false `Corrupt`
//! (sled reads a delegation's records and head apart).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::sync::Arc;

use delegation_log::event::EventKind;
use delegation_log::lifecycle::State;
use delegation_log::{DelegationId, Durability, Error, Event, FailureReason, Ledger, Options};
use tokio::sync::Barrier;

const ROUNDS: usize = 1_000;

fn outcome(writer: usize) -> Event {
    match writer % 3 {
        0 => Event::delivered(Some(200)).unwrap(),
        1 => Event::failed(FailureReason::HttpStatus(500 + (writer % 99) as u16), None).unwrap(),
        _ => Event::failed(FailureReason::Timeout, Some(format!("writer {writer}"))).unwrap(),
    }
}

async fn race(writers: usize) {
    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::open_with(
        dir.path().join("log"),
        Options::new().durability(Durability::Buffered),
    )
    .unwrap();
    for round in 0..ROUNDS {
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
                let (ledger, id, barrier) = (ledger.clone(), id.clone(), barrier.clone());
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
