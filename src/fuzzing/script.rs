//! The fuzzer's scripts: the operations it picks, each the model's transition,
//! and a whole script run step by step through the model and the subject.

use arbitrary::Arbitrary;

use super::model::Model;
use super::pool::FIRST_SLOTS;
use super::subject::Subject;
use super::transition::Transition;
use crate::event::{Delivered, Event, Failed, FailureReason, Queued};
use crate::ledger::Durability;
use crate::store::Fault;

/// A failure reason, as the fuzzer picks it.
#[derive(Clone, Copy, Debug, Arbitrary)]
pub enum Reason {
    /// [`FailureReason::TargetOffline`].
    TargetOffline,
    /// [`FailureReason::HttpStatus`]; 2xx codes make the event invalid.
    HttpStatus(u16),
    /// [`FailureReason::MarshalError`].
    MarshalError,
    /// [`FailureReason::Timeout`].
    Timeout,
    /// [`FailureReason::Interrupted`].
    Interrupted,
}

impl From<Reason> for FailureReason {
    fn from(reason: Reason) -> Self {
        match reason {
            Reason::TargetOffline => FailureReason::TargetOffline,
            Reason::HttpStatus(code) => FailureReason::HttpStatus(code),
            Reason::MarshalError => FailureReason::MarshalError,
            Reason::Timeout => FailureReason::Timeout,
            Reason::Interrupted => FailureReason::Interrupted,
        }
    }
}

/// One operation. Delegations are picked from the model's pool, [`pool_id`]`(id)`.
///
/// [`pool_id`]: super::pool_id
#[derive(Clone, Debug, Arbitrary)]
pub enum Op {
    /// Records `queued`, with a task when `task` is set.
    Queue {
        /// Which delegation.
        id: u8,
        /// Whether to carry a task.
        task: bool,
    },
    /// Records `delivered`; a status outside 2xx makes the event invalid.
    Deliver {
        /// Which delegation.
        id: u8,
        /// The status.
        http_status: Option<u16>,
    },
    /// Records `failed`.
    Fail {
        /// Which delegation.
        id: u8,
        /// Why.
        reason: Reason,
        /// Whether to carry a detail.
        detail: bool,
    },
    /// `Ledger::flush`.
    Flush,
    /// Crash: the store keeps only its durable image; the ledger is reopened.
    Crash,
    /// Crash tearing the last unflushed append; the ledger is reopened.
    CrashTearing,
    /// Drop the ledger and open a new one over the same store, without a crash.
    Reopen,
    /// `Ledger::recover`.
    Recover,
    /// Arm a failure of the next append.
    FailWrite,
    /// Arm a failure of the next flush.
    FailFlush,
}

/// A whole run: the durability mode, the store's seed, and the operations.
#[derive(Clone, Debug, Arbitrary)]
pub struct Script {
    /// Buffered mode instead of durable.
    pub buffered: bool,
    /// The fault-injecting store's seed (it picks where tears cut).
    pub seed: u64,
    /// The operations, of which at most [`MAX_OPS`] run.
    pub ops: Vec<Op>,
}

/// How many operations of a script run, so that every execution stays fast.
pub const MAX_OPS: usize = 64;

impl Op {
    /// The model's transition for this operation.
    fn transition(self) -> Transition {
        // The encoding of the committed seeds: four slots.
        let slot = |id: u8| usize::from(id) % FIRST_SLOTS;
        match self {
            Op::Queue { id, task } => Transition::Record {
                id: slot(id),
                event: Event::Queued(Queued {
                    task: task.then(|| serde_json::json!({ "op": id })),
                    ..Queued::new("planner", "reviewer")
                }),
            },
            Op::Deliver { id, http_status } => Transition::Record {
                id: slot(id),
                event: Event::Delivered(Delivered {
                    http_status,
                    remote: None,
                }),
            },
            Op::Fail { id, reason, detail } => Transition::Record {
                id: slot(id),
                event: Event::Failed(Failed {
                    reason: reason.into(),
                    detail: detail.then(|| "detail \u{2713}".to_owned()),
                }),
            },
            Op::Flush => Transition::Flush,
            Op::Crash => Transition::Crash,
            Op::CrashTearing => Transition::TornCrash,
            Op::Reopen => Transition::Reopen,
            Op::Recover => Transition::Recover,
            Op::FailWrite => Transition::Inject(Fault::FailWrite),
            Op::FailFlush => Transition::Inject(Fault::FailFlush),
        }
    }
}

/// Runs `script` against a ledger over a [`Faulty`] store, step by step against
/// the [`Model`]: each operation is a [`Transition`] the model takes first, then
/// the [`Subject`], whose answer and invariants are checked against the model's.
///
/// # Panics
/// On a broken promise: see [`Subject`] for every postcondition and invariant.
///
/// [`Faulty`]: crate::store::Faulty
pub fn ops_with_crashes(script: Script) {
    let durability = if script.buffered {
        Durability::Buffered
    } else {
        Durability::Durable
    };
    let mut model = Model::new(durability);
    let mut subject = Subject::new(script.seed, &model);
    for op in script.ops.into_iter().take(MAX_OPS) {
        let transition = op.transition();
        model.apply(&transition);
        subject.apply(&model, transition);
        subject.check_invariants(&model);
    }
}
