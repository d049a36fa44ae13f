//! What a caller holds once a delegation is queued: the [`Receipt`], and through it
//! the [`Settled`] outcome, once it is recorded.

use serde::Serialize;
use tokio::sync::oneshot;

use super::Error;
use crate::delegation::{Outcome, StatusKind};
use crate::event::{Attempt, DelegationId, Seq, Timestamp};

/// Where a delivery sends the recorded outcome of its task's last attempt (or
/// why it has none) to its receipt.
pub(super) type Settle = oneshot::Sender<Result<Settled, Error>>;

/// What [`Dispatcher::delegate`](super::Dispatcher::delegate) answers: the
/// delegation is queued and durable.
///
/// Its JSON form is `{"id":…,"status":"queued","queued_at":…}`.
#[derive(Debug, Serialize)]
pub struct Receipt {
    /// The delegation's id.
    pub id: DelegationId,
    /// Always [`StatusKind::Queued`].
    pub status: StatusKind,
    /// When `queued` was recorded.
    pub queued_at: Timestamp,
    #[serde(skip)]
    settled: oneshot::Receiver<Result<Settled, Error>>,
}

impl Receipt {
    /// The receipt of `id`, queued at `queued_at`, settled through `settled`.
    pub(super) fn queued(
        id: DelegationId,
        queued_at: Timestamp,
        settled: oneshot::Receiver<Result<Settled, Error>>,
    ) -> Self {
        Receipt {
            id,
            status: StatusKind::Queued,
            queued_at,
            settled,
        }
    }

    /// Waits for the task's final outcome to be recorded: with a retry policy,
    /// the outcome of its last attempt, after every retry
    /// ([`Settled::attempt`] and [`Settled::id`] say which).
    ///
    /// # Errors
    /// [`Error::Unrecorded`] if an outcome could not be written;
    /// [`Error::Deferred`] if shutdown cut the task off while it waited to
    /// retry (the retry is queued, for recovery); [`Error::Abandoned`] if the
    /// dispatcher was dropped first.
    pub async fn settled(self) -> Result<Settled, Error> {
        match self.settled.await {
            Ok(ended) => ended,
            Err(_) => Err(Error::Abandoned(self.id)),
        }
    }
}

/// A recorded outcome: of a task's last attempt, when a receipt answers it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settled {
    /// The delegation that settled: the receipt's own id for a first attempt,
    /// the last retry's (`<first>.r<n>`) otherwise.
    pub id: DelegationId,
    /// How it ended.
    pub outcome: Outcome,
    /// The seq of the outcome's record.
    pub seq: Seq,
    /// When the outcome was recorded.
    pub at: Timestamp,
    /// Which attempt at the task settled: 1 for the first.
    pub attempt: Attempt,
}
