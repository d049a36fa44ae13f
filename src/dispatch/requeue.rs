//! Writing a task's next attempt: a free `<first>.r<n>` id, claimed, then the
//! failed attempt's `failed` and the next one's `queued` in one atomic write.

use super::{Error, Inner, ids};
use crate::event::{Attempt, DelegationId, Failed, Queued};
use crate::ledger::{Claim, Lease, Retried};

/// How many ids are tried for one next attempt when each is taken by another
/// writer between the look at the log and the write.
pub(super) const ID_TRIES: usize = 16;

/// The attempt being settled and the task it belongs to.
pub(super) struct Failing<'a> {
    /// The attempt that failed (or is settled as failed), still `queued`.
    pub(super) id: &'a DelegationId,
    /// Which attempt it is.
    pub(super) attempt: Attempt,
    /// The task's first attempt: its id is the A2A `messageId` and the stem of
    /// every next attempt's id.
    pub(super) first: &'a DelegationId,
}

/// What writing the next attempt came to.
pub(super) enum Requeued {
    /// Written: the next attempt's id, its claim, and both records.
    Queued {
        id: DelegationId,
        claim: Claim,
        retried: Retried,
    },
    /// The failing attempt was settled by another writer first; nothing was
    /// written.
    Settled,
}

impl Inner {
    /// On a blocking thread: picks the first `<first>.r<n>` (from the failing
    /// attempt's number up) that the log does not hold, claims it (under
    /// `lease` on a shared store), and writes `failed(id)` for the failing
    /// attempt and `queued` for the next in one write ([`Ledger::retry`]).
    ///
    /// [`Ledger::retry`]: crate::Ledger::retry
    pub(super) fn requeue(
        &self,
        failing: &Failing<'_>,
        lease: Option<&Lease>,
        failed: impl Fn(&DelegationId) -> Failed,
        queued: &Queued,
    ) -> Result<Requeued, Error> {
        // One pass over the numbers, from the failing attempt's up: a number
        // whose id the log holds is skipped; one that another writer takes
        // between the look and the write is a lost race, and the next is tried.
        let mut lost_races = 0;
        for n in failing.attempt..=Attempt::MAX {
            let id = ids::redelivery(failing.first, n)?;
            if !self.ledger.store().history(&id)?.entries.is_empty() {
                continue;
            }
            let claim = match self.ledger.claim_leased(&id, lease) {
                Ok(claim) => claim,
                // Another live dispatcher holds this id: a lost race for it.
                Err(crate::Error::Claimed { .. }) => {
                    lost_races += 1;
                    if lost_races == ID_TRIES {
                        break;
                    }
                    continue;
                }
                Err(error) => return Err(error.into()),
            };
            match self
                .ledger
                .retry(failing.id, failed(&id), &id, queued.clone())
            {
                Ok(retried) => return Ok(Requeued::Queued { id, claim, retried }),
                Err(
                    crate::Error::AlreadySettled { id: refused, .. }
                    | crate::Error::IllegalTransition { id: refused, .. },
                ) if refused == *failing.id => {
                    let _ = claim.release();
                    return Ok(Requeued::Settled);
                }
                Err(
                    crate::Error::AlreadySettled { id: refused, .. }
                    | crate::Error::IllegalTransition { id: refused, .. },
                ) if refused == id => {
                    let _ = claim.release();
                    lost_races += 1;
                    if lost_races == ID_TRIES {
                        break;
                    }
                }
                Err(error) => {
                    let _ = claim.release();
                    return Err(error.into());
                }
            }
        }
        Err(Error::NoRedeliveryId {
            original: failing.id.clone(),
            tries: ID_TRIES,
        })
    }
}
