//! Guards how records are numbered and stamped: over random sequences of events
//! across several delegations, every delegation's records carry seqs 1, 2, …
//! with no gap or repeat, and their times never run backwards; each record is
//! stamped by the injected clock, and a clock that runs backwards never makes a
//! delegation settle before it was queued.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod record_strategies;
mod support;

use std::sync::Arc;
use std::time::Duration;

use delegation_log::ledger::Options;
use delegation_log::store::Memory;
use delegation_log::{Clock, Event, Ledger, ManualClock};
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;
use record_strategies::lifecycle_event as event;
use support::numbered as id;

const IDS: usize = 5;

proptest! {
    #![proptest_config(ProptestConfig {
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(
            "proptest-regressions/seqs_and_times_run_forward.txt",
        ))),
        ..ProptestConfig::default()
    })]

    /// Every delegation's records carry seqs 1, 2, … with no gap or repeat, and
    /// their times never run backwards, though the clock jumps back and forth. (Which events
    /// the ledger refuses, and that a refusal writes nothing, is the model's
    /// business: `refused_events_change_nothing.rs`.)
    #[test]
    fn seqs_are_contiguous_and_times_never_run_backwards(
        events in proptest::collection::vec((0..IDS, event(), 0i64..4), 1..60),
    ) {
        let clock = ManualClock::default();
        let start = clock.now().unix_nanos().unwrap();
        let ledger = Ledger::with_store(Arc::new(Memory::new()), Options::new().clock(clock.clone()));
        for (n, event, millis) in &events {
            // The clock jumps back and forth by a few milliseconds.
            clock.set_unix_nanos(start + millis * 1_000_000);
            if let Err(error) = ledger.record(&id(*n), event.clone()) {
                prop_assert!(error.is_refusal(), "refused with a non-refusal error: {}", error);
            }
        }
        for n in 0..IDS {
            let history = ledger.history(&id(n)).unwrap();
            let seqs: Vec<u64> = history.iter().map(|r| r.seq).collect();
            let expected: Vec<u64> = (1..=history.len() as u64).collect();
            prop_assert_eq!(seqs, expected);
            prop_assert!(history.windows(2).all(|w| w[0].at <= w[1].at));
        }
    }
}

#[test]
fn timestamps_follow_the_injected_clock() {
    let clock = ManualClock::default();
    let ledger = Ledger::with_store(Arc::new(Memory::new()), Options::new().clock(clock.clone()));
    let id = id(0);
    let queued = ledger.record(&id, Event::queued("a", "b")).unwrap();
    clock.advance(Duration::from_secs(3));
    let settled = ledger.record(&id, Event::delivered(None).unwrap()).unwrap();
    assert_eq!(settled.at.since(queued.at), Duration::from_secs(3));
}

#[test]
fn a_clock_that_runs_backwards_never_makes_a_delegation_settle_before_it_queued() {
    let clock = ManualClock::default();
    let ledger = Ledger::with_store(Arc::new(Memory::new()), Options::new().clock(clock.clone()));
    let id = id(0);
    let queued = ledger.record(&id, Event::queued("a", "b")).unwrap();
    clock.set_unix_nanos(0);
    let settled = ledger.record(&id, Event::delivered(None).unwrap()).unwrap();
    assert_eq!(settled.at, queued.at);
}
