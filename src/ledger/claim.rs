//! Claims: the delegations a delivery of this process owns, which recovery leaves
//! alone, shared by a ledger's clones; on a shared store, also a row under a lease.

use std::collections::HashMap;
use std::sync::{Arc, MutexGuard};

use crate::error::{Error, Result};
use crate::event::{DelegationId, Event, Queued};
use crate::store::{Claimed, Owner};

use super::lease::Lease;
use super::write::Recorded;
use super::{Inner, Ledger};

/// A claim that a delivery of this process owns a delegation: while one is held,
/// recovery leaves the delegation alone. Dropping it ends the claim in this
/// process; [`Claim::release`] also ends it in a shared store. See
/// [`Ledger::claim`] and [`Ledger::claim_leased`].
#[derive(Debug)]
#[must_use = "the claim ends when it is dropped"]
pub struct Claim {
    inner: Arc<Inner>,
    id: DelegationId,
    /// On a store shared by several processes: the lease and the owner the
    /// claim's row was written for.
    leased: Option<(Lease, Owner)>,
}

impl Claim {
    /// The claimed delegation.
    pub fn id(&self) -> &DelegationId {
        &self.id
    }

    /// The owner the claim is held as in a shared store; `None` for a claim of
    /// this process only.
    pub fn owner(&self) -> Option<Owner> {
        self.leased.as_ref().map(|(_, owner)| *owner)
    }

    /// Whether a delivery under this claim may start now: always for a claim of
    /// this process only; on a shared store, while the lease it was made under
    /// is live ([`Lease::holds`]). Once it is not, another dispatcher may take
    /// the delegation over, so nothing may be sent.
    pub fn may_deliver(&self) -> bool {
        self.leased
            .as_ref()
            .is_none_or(|(lease, owner)| lease.holds(*owner))
    }

    /// Ends the claim, in the shared store too (one statement; call it off the
    /// async threads): once the outcome is recorded, or `queued` was refused. A
    /// claim another dispatcher took over meanwhile is left to it.
    ///
    /// # Errors
    /// A storage error; the claim has ended in this process all the same, and
    /// its row, which names a settled delegation, is never taken over.
    pub fn release(mut self) -> Result<()> {
        match self.leased.take() {
            Some((lease, owner)) => match lease.store().ownership() {
                Some(ownership) => ownership.release(owner, &self.id),
                None => Ok(()),
            },
            None => Ok(()),
        }
    }
}

impl Claim {
    /// Ends the claim once this claim's own write settled its delegation (its
    /// outcome won, or its retry pair was written): on a store whose settling
    /// appends end claims themselves
    /// ([`Ownership::settlement_releases`](crate::store::Ownership::settlement_releases),
    /// with the hints written with the appends:
    /// [`Store::hints_with_appends`](crate::store::Store::hints_with_appends)),
    /// that write ended the row, and this ends the claim in this process only;
    /// otherwise it is [`Claim::release`]. After a lost race or a failed
    /// write, release instead: another writer's settlement ended only the
    /// claim there was when it committed.
    ///
    /// # Errors
    /// As for [`Claim::release`].
    pub fn settled(self) -> Result<()> {
        let released = self.leased.as_ref().is_some_and(|(lease, _)| {
            let store = lease.store();
            store.hints_with_appends()
                && store
                    .ownership()
                    .is_some_and(|ownership| ownership.settlement_releases())
        });
        if released {
            return Ok(());
        }
        self.release()
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        let mut live = self.inner.live();
        if let Some(count) = live.get_mut(&self.id) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                live.remove(&self.id);
            }
        }
    }
}

impl Inner {
    pub(super) fn live(&self) -> MutexGuard<'_, HashMap<DelegationId, usize>> {
        // Every change under the lock is a single insert, increment or removal,
        // so a poisoned lock still guards a consistent map.
        self.live.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Ledger {
    /// Claims delegation `id` for a delivery of this process: until the returned
    /// [`Claim`] is dropped, recovery in this process leaves `id` alone. Claim
    /// before recording `queued`, and drop the claim once the outcome is recorded
    /// (or `queued` was refused): then no recovery can take a live delivery for a
    /// dead one. Claims nest; `id` stays claimed while any claim on it lives.
    ///
    /// On a store shared by several processes this claims nothing in the store:
    /// use [`Ledger::claim_leased`] there.
    pub fn claim(&self, id: &DelegationId) -> Claim {
        *self.inner.live().entry(id.clone()).or_insert(0) += 1;
        Claim {
            inner: Arc::clone(&self.inner),
            id: id.clone(),
            leased: None,
        }
    }

    /// Claims delegation `id` as [`Ledger::claim`] does and, under a `lease` (a
    /// store shared by several processes), in the store for the lease's owner
    /// too, so that recovery in other processes leaves it alone while the lease
    /// lives. Without a lease it is [`Ledger::claim`]. One statement: call it
    /// off the async threads, before recording `queued`. For a new delegation,
    /// [`Ledger::queue_leased`] claims it with its `queued` instead.
    ///
    /// # Errors
    /// [`Error::Claimed`] if another dispatcher with a live lease claims `id`;
    /// [`Error::LeaseExpired`] if the lease has run out; a storage error.
    /// Nothing is claimed then.
    pub fn claim_leased(&self, id: &DelegationId, lease: Option<&Lease>) -> Result<Claim> {
        let mut claim = self.claim(id);
        let Some(lease) = lease else {
            return Ok(claim);
        };
        let Some(ownership) = lease.store().ownership() else {
            return Ok(claim);
        };
        let owner = lease.owner();
        match ownership.claim(owner, id)? {
            Claimed::Yes => {
                claim.leased = Some((lease.clone(), owner));
                Ok(claim)
            }
            Claimed::Taken => Err(Error::Claimed { id: id.clone() }),
            Claimed::LeaseExpired => Err(Error::LeaseExpired { id: id.clone() }),
        }
    }

    /// Records `queued` for a new delegation `id` under a claim of it: what
    /// [`Ledger::claim_leased`] and then [`Ledger::record`] do, with the claim
    /// released if `queued` is refused. On a store that writes claims with its
    /// appends ([`Store::claims_with_appends`], PostgreSQL) the claim goes in
    /// the write of `queued` ([`Store::append_claimed`]): one statement, and the
    /// claim and `queued` commit together or not at all. Without a lease it is
    /// [`Ledger::claim`] and [`Ledger::record`]. Call it off the async threads.
    ///
    /// # Errors
    /// As for [`Ledger::claim_leased`] ([`Error::Claimed`],
    /// [`Error::LeaseExpired`]) and [`Ledger::record`]. After a refusal neither
    /// the claim nor `queued` is written. After a storage error whose outcome
    /// is unknown (the ledger is then poisoned) both may have been; the claim
    /// is then released, best effort, so that another dispatcher's recovery
    /// can take the delegation over instead of waiting for this lease to end.
    ///
    /// [`Store::claims_with_appends`]: crate::store::Store::claims_with_appends
    /// [`Store::append_claimed`]: crate::store::Store::append_claimed
    pub fn queue_leased(
        &self,
        id: &DelegationId,
        queued: Queued,
        lease: Option<&Lease>,
    ) -> Result<(Recorded, Claim)> {
        let queued = Event::Queued(queued);
        let with_append = lease.filter(|lease| {
            lease.store().ownership().is_some() && self.inner.store.claims_with_appends()
        });
        let Some(lease) = with_append else {
            let claim = self.claim_leased(id, lease)?;
            return match self.record(id, queued) {
                Ok(recorded) => Ok((recorded, claim)),
                Err(error) => {
                    let _ = claim.release();
                    Err(error)
                }
            };
        };
        // Claimed in this process first, so that recovery here leaves `id`
        // alone from before its `queued` is written.
        let mut claim = self.claim(id);
        let owner = lease.owner();
        let recorded = match self.record_as(id, queued, Some(owner)) {
            Ok(recorded) => recorded,
            Err(error) => {
                if self.check_poisoned().is_err() {
                    // Perhaps written, claim and all: let recovery have it.
                    if let Some(ownership) = lease.store().ownership() {
                        let _ = ownership.release(owner, id);
                    }
                }
                return Err(error);
            }
        };
        claim.leased = Some((lease.clone(), owner));
        Ok((recorded, claim))
    }

    /// Whether a delivery of this process has claimed `id` ([`Ledger::claim`]).
    pub fn is_claimed(&self, id: &DelegationId) -> bool {
        self.inner.live().contains_key(id)
    }
}
