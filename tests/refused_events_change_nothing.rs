//! Guards promise 3's "a refused event changes no byte", over random sequences of
//! events across the delegations of the shared reference model
//! (`delegation_log::fuzzing::Model`, feature `fuzzing`): each event is taken by
//! the model first, then by a ledger over the memory store
//! (`fuzzing::Subject::on_store`), whose answer must be the model's. A refusal
//! (an illegal transition, or any event on a settled delegation) must leave every
//! stored byte as it was, and a settled delegation refuses every further event
//! with `AlreadySettled`, its status never changing again. After each event the
//! model's invariants hold too: live state equals the model, and `replay()`
//! equals live.
#![cfg(feature = "fuzzing")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod record_strategies;

use std::sync::Arc;

use delegation_log::fuzzing::{Model, POOL, Subject, Transition, pool_id};
use delegation_log::ledger::Options;
use delegation_log::store::{Memory, Store, Stream};
use delegation_log::{Durability, Error, Event, Ledger};
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;
use record_strategies::lifecycle_event as event;

/// Events for delegations of the model's pool, by slot.
fn events() -> impl Strategy<Value = Vec<(usize, Event)>> {
    proptest::collection::vec((0..POOL, event()), 1..60)
}

/// The model, and a ledger over a memory store that follows it.
struct Run {
    model: Model,
    subject: Subject,
    store: Arc<Memory>,
    /// A second ledger over the same store, to read what the subject wrote.
    reader: Ledger,
}

impl Run {
    fn new() -> Self {
        let model = Model::new(Durability::Durable);
        let store = Arc::new(Memory::new());
        Run {
            subject: Subject::on_store(store.clone(), &model),
            reader: Ledger::with_store(store.clone(), Options::new()),
            model,
            store,
        }
    }

    /// Records `event` for the delegation in pool slot `slot`: the model takes it,
    /// then the subject, which panics on an answer other than the model's, or on
    /// a refusal that changed any stored byte (`fuzzing::Subject`'s
    /// postconditions); then the model's invariants are checked.
    fn record(&mut self, slot: usize, event: &Event) {
        let transition = Transition::Record {
            id: slot,
            event: event.clone(),
        };
        self.model.apply(&transition);
        self.subject.apply(&self.model, transition);
        self.subject.check_invariants(&self.model);
    }

    /// Every stored byte, delegation by delegation.
    fn dump(&self) -> Vec<Stream> {
        self.store.scan().map(Result::unwrap).collect()
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(
            "proptest-regressions/refused_events_change_nothing.txt",
        ))),
        ..ProptestConfig::default()
    })]

    /// A refused event leaves the log byte-for-byte unchanged: `Run::record`
    /// compares every stored byte before and after each event the model refuses.
    #[test]
    fn a_refused_event_leaves_the_log_byte_for_byte_unchanged(events in events()) {
        let mut run = Run::new();
        for (slot, event) in &events {
            run.record(*slot, event);
        }
    }

    /// Once settled, a delegation refuses every event with `AlreadySettled`, no
    /// stored byte changes, and its status never changes again.
    #[test]
    fn a_settled_delegation_refuses_every_event_and_keeps_its_status(
        events in events(),
        extra in proptest::collection::vec(event(), 1..8),
    ) {
        let mut run = Run::new();
        for (slot, event) in &events {
            run.record(*slot, event);
        }
        for slot in 0..POOL {
            let id = pool_id(slot);
            if !run.reader.delegation(&id).unwrap().is_some_and(|d| d.state.is_settled()) {
                continue;
            }
            let status = run.reader.status(&id).unwrap();
            let bytes = run.dump();
            for event in &extra {
                let refused = run.reader.record(&id, event.clone());
                let is_already_settled = matches!(refused, Err(Error::AlreadySettled { .. }));
                prop_assert!(is_already_settled, "{:?}", refused);
                // And the model, and the ledger that follows it, agree.
                run.record(slot, event);
                prop_assert_eq!(&run.reader.status(&id).unwrap(), &status);
                prop_assert_eq!(&run.dump(), &bytes, "a refused event changed the log");
            }
        }
    }
}
