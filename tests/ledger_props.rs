//! Guards promises 2 and 3 over random sequences of events across several
//! delegations: live state equals replayed state and a reference model; a refused
//! event leaves the log byte-for-byte unchanged; settled states absorb every event;
//! and every delegation's seqs are contiguous from 1.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use delegation_log::ledger::Options;
use delegation_log::lifecycle::State;
use delegation_log::store::{Memory, Store, Stream};
use delegation_log::{DelegationId, Error, Event, FailureReason, Ledger, ManualClock};
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;

const IDS: usize = 5;

fn event() -> impl Strategy<Value = Event> {
    let reason = prop_oneof![
        Just(FailureReason::TargetOffline),
        (300u16..600).prop_map(FailureReason::HttpStatus),
        Just(FailureReason::MarshalError),
        Just(FailureReason::Timeout),
        Just(FailureReason::Interrupted),
    ];
    prop_oneof![
        3 => ("[a-z]{1,8}", "[a-z]{1,8}").prop_map(|(s, t)| Event::queued(s, t)),
        2 => proptest::option::of(200u16..300).prop_map(|code| Event::delivered(code).unwrap()),
        2 => (reason, proptest::option::of("[ -~]{0,16}"))
            .prop_map(|(reason, detail)| Event::failed(reason, detail).unwrap()),
    ]
}

fn ops() -> impl Strategy<Value = Vec<(usize, Event)>> {
    proptest::collection::vec((0..IDS, event()), 1..60)
}

fn id(n: usize) -> DelegationId {
    format!("delegation-{n}").parse().unwrap()
}

/// The reference: what the lifecycle page says, written without the machine.
fn model_next(state: State, event: &Event) -> Option<State> {
    match (state, event) {
        (State::Initial, Event::Queued(_)) => Some(State::Queued),
        (State::Queued, Event::Delivered(_)) => Some(State::Delivered),
        (State::Queued, Event::Failed(_)) => Some(State::Failed),
        _ => None,
    }
}

fn dump(store: &Memory) -> Vec<Stream> {
    store.scan().map(Result::unwrap).collect()
}

struct Run {
    ledger: Ledger,
    store: Arc<Memory>,
    model: BTreeMap<usize, State>,
}

impl Run {
    fn new() -> Self {
        let store = Arc::new(Memory::new());
        let ledger =
            Ledger::with_store(store.clone(), Options::new().clock(ManualClock::default()));
        Run {
            ledger,
            store,
            model: BTreeMap::new(),
        }
    }

    /// Applies one event, checking it against the model; returns whether it was accepted.
    fn apply(&mut self, n: usize, event: &Event) -> Result<bool, TestCaseError> {
        let before = self.model.get(&n).copied().unwrap_or(State::Initial);
        let bytes_before = dump(&self.store);
        let result = self.ledger.record(&id(n), event.clone());
        match (model_next(before, event), result) {
            (Some(next), Ok(recorded)) => {
                prop_assert_eq!(recorded.state, next);
                self.model.insert(n, next);
                Ok(true)
            }
            (None, Err(error)) => {
                prop_assert!(
                    error.is_refusal(),
                    "refused with a non-refusal error: {}",
                    error
                );
                if before.is_settled() {
                    let is_already_settled = matches!(error, Error::AlreadySettled { .. });
                    prop_assert!(is_already_settled, "{}", error);
                }
                prop_assert_eq!(
                    dump(&self.store),
                    bytes_before,
                    "a refused event changed the log"
                );
                Ok(false)
            }
            (expected, got) => Err(TestCaseError::fail(format!(
                "{n}: {event:?} in {before}: model says {expected:?}, ledger says {got:?}"
            ))),
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(
            "proptest-regressions/ledger_props.txt",
        ))),
        ..ProptestConfig::default()
    })]

    /// Live state equals replayed state, and both equal the reference model.
    #[test]
    fn live_state_equals_replayed_state(ops in ops()) {
        let mut run = Run::new();
        for (n, event) in &ops {
            run.apply(*n, event)?;
        }
        let replayed: BTreeMap<DelegationId, _> = run
            .ledger
            .replay()
            .map(|d| { let d = d.unwrap(); (d.id.clone(), d) })
            .collect();
        for n in 0..IDS {
            let live = run.ledger.delegation(&id(n)).unwrap();
            prop_assert_eq!(live.as_ref(), replayed.get(&id(n)));
            let state = live.map_or(State::Initial, |d| d.state);
            prop_assert_eq!(state, run.model.get(&n).copied().unwrap_or(State::Initial));
        }
    }

    /// A refused event leaves the log byte-for-byte unchanged: `Run::apply` compares
    /// every stored byte before and after each refusal.
    #[test]
    fn a_refused_event_leaves_the_log_byte_for_byte_unchanged(ops in ops()) {
        let mut run = Run::new();
        for (n, event) in &ops {
            run.apply(*n, event)?;
        }
    }

    /// Once settled, a delegation refuses every event with `AlreadySettled` and its
    /// status never changes again.
    #[test]
    fn terminal_states_absorb_every_event(ops in ops(), extra in proptest::collection::vec(event(), 1..8)) {
        let mut run = Run::new();
        for (n, event) in &ops {
            run.apply(*n, event)?;
        }
        for n in 0..IDS {
            if !run.model.get(&n).is_some_and(|s| s.is_settled()) {
                continue;
            }
            let status = run.ledger.status(&id(n)).unwrap();
            for event in &extra {
                let refused = run.ledger.record(&id(n), event.clone());
                let is_already_settled = matches!(refused, Err(Error::AlreadySettled { .. }));
                prop_assert!(is_already_settled);
                prop_assert_eq!(&run.ledger.status(&id(n)).unwrap(), &status);
            }
        }
    }

    /// Every delegation's records carry seqs 1, 2, … with no gap or repeat, and the
    /// clock's time never runs backwards within a delegation.
    #[test]
    fn seqs_are_contiguous(ops in ops()) {
        let mut run = Run::new();
        for (n, event) in &ops {
            run.apply(*n, event)?;
        }
        for n in 0..IDS {
            let history = run.ledger.history(&id(n)).unwrap();
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
