//! One step of a run, as the model takes it first and the system under test
//! then: a record, a race, a flush, a crash, a reopen, a fault or a retry.

use std::time::Duration;

use crate::event::{Event, FailureReason};
use crate::store::Fault;

/// One transition of the ledger and its store, as the model and the system
/// under test both take it.
#[derive(Clone, Debug)]
pub enum Transition {
    /// Records one event: `queued` (delegate), an outcome (deliver, fail, or a
    /// duplicate outcome), or an invalid event.
    Record {
        /// The pool slot of the delegation.
        id: usize,
        /// The event.
        event: Event,
    },
    /// Threads race to record these outcomes for one delegation, one thread each.
    Race {
        /// The pool slot of the delegation.
        id: usize,
        /// The racing outcomes.
        outcomes: Vec<Event>,
    },
    /// `Ledger::flush`.
    Flush,
    /// Crash: the store keeps only its durable image; the ledger is reopened.
    Crash,
    /// Crash tearing the last unflushed append; the ledger is reopened.
    TornCrash,
    /// Drop the ledger and open a new one over the same store, without a crash.
    Reopen,
    /// `Ledger::recover`.
    Recover,
    /// Arm a one-shot fault of the store.
    Inject(Fault),
    /// `Ledger::retry`, as the dispatcher calls it: delegation `id` fails with
    /// `reason`, and its next attempt, `to`, is queued (a copy of `id`'s
    /// `queued`) with `not_before` = now + `backoff`, in one write.
    Retry {
        /// The pool slot of the failing attempt.
        id: usize,
        /// The pool slot of the next attempt.
        to: usize,
        /// Why the attempt failed.
        reason: FailureReason,
        /// How long the next attempt waits.
        backoff: Duration,
    },
    /// Time passes on the manual clock (beyond the millisecond of every step).
    AdvanceClock(Duration),
}
