//! The index's answers equal a full scan's answers: for random sequences of
//! `record`, `settle` and `retry` (some waiting for a `not_before`), with
//! injected failed appends, index writes and flushes, and crashes of the fault-injecting store
//! between them, `pending` and `dead` (served from the hints, verified against
//! the heads) list exactly what a scan of the whole log says is `queued`, and
//! `failed` and not retried; and a task's attempts, read from any attempt's id,
//! are what the scan's `retry_of` links say.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use delegation_log::event::{Failed, Queued};
use delegation_log::ledger::Options;
use delegation_log::lifecycle::State;
use delegation_log::store::{Fault, Faulty, Memory, Store};
use delegation_log::{
    Clock, Delegation, DelegationId, Event, FailureReason, Ledger, ManualClock, Timestamp,
};
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;

#[derive(Clone, Debug)]
enum Op {
    /// Queue a new delegation.
    New,
    /// Settle the n-th delegation made so far as delivered.
    Deliver(usize),
    /// Settle it as failed.
    Fail(usize),
    /// Fail it and queue its retry, waiting this many seconds (0: none).
    Retry(usize, u8),
    /// Move the clock.
    Advance(u8),
    /// The next append fails.
    FailWrite,
    /// The next write of the index fails.
    FailHint,
    /// The next flush fails.
    FailFlush,
    /// The process dies: what was not flushed is lost; a new ledger opens.
    Crash,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => Just(Op::New),
        3 => any::<usize>().prop_map(Op::Deliver),
        3 => any::<usize>().prop_map(Op::Fail),
        4 => (any::<usize>(), 0u8..3).prop_map(|(n, wait)| Op::Retry(n, wait * 30)),
        2 => any::<u8>().prop_map(Op::Advance),
        1 => Just(Op::FailWrite),
        1 => Just(Op::FailHint),
        1 => Just(Op::FailFlush),
        1 => Just(Op::Crash),
    ]
}

/// What a scan of the whole log says: every delegation, by id.
fn scan(ledger: &Ledger) -> HashMap<DelegationId, Delegation> {
    ledger
        .replay()
        .map(|delegation| {
            let delegation = delegation.unwrap();
            (delegation.id.clone(), delegation)
        })
        .collect()
}

fn sorted(mut ids: Vec<String>) -> Vec<String> {
    ids.sort();
    ids
}

/// Checks the index's answers against the scan's.
fn check(ledger: &Ledger, clock: &ManualClock) {
    let all = scan(ledger);
    let retried: HashMap<&DelegationId, &Delegation> = all
        .values()
        .filter_map(|d| d.retry_of.as_ref().map(|original| (original, d)))
        .collect();
    let queued = sorted(
        all.values()
            .filter(|d| d.state == State::Queued)
            .map(|d| d.id.to_string())
            .collect(),
    );
    let pending = ledger.pending(None).unwrap();
    assert_eq!(
        sorted(pending.iter().map(|p| p.id.to_string()).collect()),
        queued,
        "pending"
    );
    let dead = sorted(
        all.values()
            .filter(|d| d.state == State::Failed && !retried.contains_key(&d.id))
            .map(|d| d.id.to_string())
            .collect(),
    );
    assert_eq!(
        sorted(
            ledger
                .dead()
                .unwrap()
                .into_iter()
                .map(|d| d.last.to_string())
                .collect()
        ),
        dead,
        "dead"
    );
    let now = clock.now();
    for delegation in all.values() {
        let mut first = delegation;
        while let Some(original) = &first.retry_of {
            first = &all[original];
        }
        let mut latest = first;
        let mut count = 1;
        while let Some(next) = retried.get(&latest.id) {
            latest = next;
            count += 1;
        }
        let attempts = ledger.attempts(&delegation.id).unwrap().unwrap();
        assert_eq!(attempts.first, first.id, "{}", delegation.id);
        assert_eq!(attempts.latest, latest.id, "{}", delegation.id);
        assert_eq!(attempts.count, count, "{}", delegation.id);
        assert_eq!(attempts.exhausted, latest.state == State::Failed);
        let waiting = latest
            .not_before
            .filter(|at| latest.state == State::Queued && *at > now);
        assert_eq!(attempts.next_attempt_at, waiting, "{}", delegation.id);
    }
}

fn run(ops: &[Op], store: Arc<dyn Store>, faulty: Option<&Faulty>) {
    let clock = ManualClock::default();
    let open = || Ledger::with_store(store.clone(), Options::new().clock(clock.clone()));
    let mut ledger = open();
    let mut made: Vec<DelegationId> = Vec::new();
    let failed = || Failed {
        reason: FailureReason::TargetOffline,
        detail: None,
    };
    for op in ops {
        let pick = |n: &usize| made.get(n % made.len().max(1)).cloned();
        let result = match op {
            Op::New => {
                let id: DelegationId = format!("d{}", made.len()).parse().unwrap();
                made.push(id.clone());
                ledger
                    .record(&id, Event::Queued(Queued::new("p", "t")))
                    .map(drop)
            }
            Op::Deliver(n) => match pick(n) {
                Some(id) => ledger
                    .settle(&id, Event::delivered(None).unwrap())
                    .map(drop),
                None => Ok(()),
            },
            Op::Fail(n) => match pick(n) {
                Some(id) => ledger.settle(&id, Event::Failed(failed())).map(drop),
                None => Ok(()),
            },
            Op::Retry(n, wait) => match pick(n) {
                Some(id) => {
                    let retry: DelegationId = format!("{id}.r").parse().unwrap();
                    made.push(retry.clone());
                    let not_before = (*wait > 0).then(|| {
                        Timestamp::from_unix_nanos(
                            clock.now().unix_nanos().unwrap() + i64::from(*wait) * 1_000_000_000,
                        )
                    });
                    let queued = Queued {
                        not_before,
                        ..Queued::new("p", "t")
                    };
                    ledger.retry(&id, failed(), &retry, queued).map(drop)
                }
                None => Ok(()),
            },
            Op::Advance(secs) => {
                clock.advance(Duration::from_secs(u64::from(*secs)));
                Ok(())
            }
            Op::FailWrite => {
                if let Some(faulty) = faulty {
                    faulty.inject(Fault::FailWrite);
                }
                Ok(())
            }
            Op::FailFlush => {
                if let Some(faulty) = faulty {
                    faulty.inject(Fault::FailFlush);
                }
                Ok(())
            }
            Op::FailHint => {
                if let Some(faulty) = faulty {
                    faulty.inject(Fault::FailHint);
                }
                Ok(())
            }
            Op::Crash => {
                if let Some(faulty) = faulty {
                    faulty.crash();
                }
                ledger = open();
                Ok(())
            }
        };
        // A refused event changes nothing; a failed write or flush poisons the
        // ledger, and the process restarts: what was not durable is gone.
        let poisoned = matches!(
            result,
            Err(delegation_log::Error::Poisoned { .. } | delegation_log::Error::Storage(_))
        ) || matches!(
            ledger.pending(None),
            Err(delegation_log::ReadError::Poisoned { .. })
        );
        if poisoned {
            if let Some(faulty) = faulty {
                faulty.crash();
            }
            ledger = open();
        }
        check(&ledger, &clock);
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(
            "proptest-regressions/index_agrees_with_scan.txt",
        ))),
        cases: 256,
        ..ProptestConfig::default()
    })]

    /// The index's answers equal a full scan's answers, on a store without
    /// faults.
    #[test]
    fn the_indexs_answers_equal_a_full_scans_answers(ops in prop::collection::vec(op(), 1..40)) {
        run(&ops, Arc::new(Memory::new()), None);
    }

    /// The index's answers equal a full scan's answers, with failed writes and
    /// flushes and crashes between the operations.
    #[test]
    fn the_indexs_answers_equal_a_full_scans_answers_through_faults_and_crashes(
        ops in prop::collection::vec(op(), 1..40),
        seed in any::<u64>(),
    ) {
        let faulty = Arc::new(Faulty::seeded(seed));
        run(&ops, faulty.clone(), Some(&faulty));
    }
}
