//! What can go wrong when delegating, settling or shutting down, and the outcome
//! that was decided but could not be written.

use crate::event::DelegationId;

/// What can go wrong when delegating, settling or shutting down.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The ledger refused or failed to record `queued`; nothing is delivered.
    ///
    /// # Handling
    /// For [`crate::Error::IllegalTransition`] the id is taken: the delegation
    /// already exists, so ask for its status. For a storage error, see
    /// [`crate::Error`].
    #[error(transparent)]
    Ledger(#[from] crate::Error),

    /// The dispatcher is shut down and takes no more delegations.
    ///
    /// # Handling
    /// A bug in the caller's ordering: delegate before shutting down.
    #[error("the dispatcher is shut down")]
    Closed,

    /// A delivery's outcome could not be recorded; its delegation stays `queued`
    /// in the log until recovery settles it.
    ///
    /// # Handling
    /// If the failure poisoned the ledger (reads answer `Poisoned`), reopen it
    /// and recover. If it did not (the store knew that nothing was written:
    /// a server that was down, or refused the write), the next recovery over
    /// the same ledger settles it.
    #[error("{0}")]
    Unrecorded(Unrecorded),

    /// `shutdown` drained every delivery, and some outcomes could not be recorded.
    ///
    /// # Handling
    /// As for [`Error::Unrecorded`], for each.
    #[error("{} outcome(s) could not be recorded; first: {}", .0.len(), .0.first().map(ToString::to_string).unwrap_or_default())]
    Drained(Vec<Unrecorded>),

    /// `shutdown` drained every delivery, and periodic recovery
    /// ([`Options::recover_every`](super::Options::recover_every)) could not
    /// settle these delegations, in reports nobody took with
    /// [`Dispatcher::next_recovery`](super::Dispatcher::next_recovery). Each
    /// is left as it was (`queued`), for the next recovery. Returned only if
    /// every outcome was recorded (else [`Error::Drained`]).
    ///
    /// # Handling
    /// For each, see its error; run `delegation-log recover` once the cause is
    /// fixed.
    #[error("periodic recovery could not settle {} delegation(s); first: {}", .0.len(), .0.first().map(ToString::to_string).unwrap_or_default())]
    Unrecovered(Vec<super::Unrecovered>),

    /// The dispatcher was dropped before this delegation settled: its delivery was
    /// aborted and it stays `queued` until recovery settles it.
    ///
    /// # Handling
    /// Call [`Dispatcher::shutdown`](super::Dispatcher::shutdown) before dropping a
    /// dispatcher.
    #[error("delegation `{0}` was abandoned: the dispatcher was dropped before it settled")]
    Abandoned(DelegationId),

    /// Shutdown cut the task off while its next attempt waited out its backoff.
    /// Nothing is lost: the attempt `id` is queued in the log, not to be sent
    /// before `not_before`, and unclaimed once shutdown ends.
    ///
    /// # Handling
    /// Run [`Dispatcher::recover`](super::Dispatcher::recover) in the next
    /// process: it resumes the attempt at its time (see the
    /// [module docs](super#retries)).
    #[error(
        "shutdown cut `{id}` off while it waited to be retried; it stays queued, not before {not_before}, for recovery"
    )]
    Deferred {
        /// The queued attempt.
        id: DelegationId,
        /// When it may be sent.
        not_before: crate::event::Timestamp,
    },

    /// Every redelivery id tried for a delegation was taken: other writers kept
    /// recording under the ids this dispatcher picked. Its delegation stays
    /// `queued`, and a later recovery tries again.
    ///
    /// # Handling
    /// Writers outside this dispatcher are using its id scheme: find them.
    #[error("no free redelivery id for `{original}` after {tries} tries")]
    NoRedeliveryId {
        /// The delegation to redeliver.
        original: DelegationId,
        /// How many ids were tried.
        tries: usize,
    },

    /// A generated id is not a valid delegation id. Generated ids are far below
    /// the limit, and redelivery ids are kept within it, so this does not happen.
    ///
    /// # Handling
    /// A bug in this crate: report it.
    #[error(transparent)]
    InvalidId(#[from] crate::event::InvalidId),
}

impl From<crate::ReadError> for Error {
    fn from(error: crate::ReadError) -> Self {
        Error::Ledger(error.into())
    }
}

/// An outcome that was decided but could not be written.
#[derive(Clone, Debug, thiserror::Error)]
#[error("outcome of delegation `{}` not recorded ({outcome}): {cause}", .id.as_ref().map_or("<unknown>", DelegationId::as_str))]
pub struct Unrecorded {
    /// The delegation, when known.
    pub id: Option<DelegationId>,
    /// The outcome that was due, in words (`delivered`, `failed: timeout`, …).
    pub outcome: String,
    /// Why it was not recorded: the ledger's error (most likely a storage
    /// failure, which poisoned it).
    #[source]
    pub cause: std::sync::Arc<crate::Error>,
}
