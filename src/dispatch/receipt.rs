//! What a caller holds once a delegation is queued: the [`Receipt`], and through it
//! the [`Settled`] outcome, once it is recorded.

use serde::Serialize;
use tokio::sync::oneshot;

use super::{Error, Unrecorded};
use crate::delegation::{Outcome, StatusKind};
use crate::event::{DelegationId, Seq, Timestamp};

/// Where a delivery sends its recorded outcome (or why it has none) to its receipt.
pub(super) type Settle = oneshot::Sender<Result<Settled, Unrecorded>>;

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
    settled: oneshot::Receiver<Result<Settled, Unrecorded>>,
}

impl Receipt {
    /// The receipt of `id`, queued at `queued_at`, settled through `settled`.
    pub(super) fn queued(
        id: DelegationId,
        queued_at: Timestamp,
        settled: oneshot::Receiver<Result<Settled, Unrecorded>>,
    ) -> Self {
        Receipt {
            id,
            status: StatusKind::Queued,
            queued_at,
            settled,
        }
    }

    /// Waits for the delegation's outcome to be recorded.
    ///
    /// # Errors
    /// [`Error::Unrecorded`] if the outcome could not be written;
    /// [`Error::Abandoned`] if the dispatcher was dropped first.
    pub async fn settled(self) -> Result<Settled, Error> {
        match self.settled.await {
            Ok(Ok(settled)) => Ok(settled),
            Ok(Err(unrecorded)) => Err(Error::Unrecorded(unrecorded)),
            Err(_) => Err(Error::Abandoned(self.id)),
        }
    }
}

/// A recorded outcome.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settled {
    /// The delegation.
    pub id: DelegationId,
    /// How it ended.
    pub outcome: Outcome,
    /// The seq of the outcome's record.
    pub seq: Seq,
    /// When the outcome was recorded.
    pub at: Timestamp,
}
