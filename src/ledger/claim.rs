//! Claims: the delegations a delivery of this process owns, which recovery leaves
//! alone, shared by a ledger's clones.

use std::collections::HashMap;
use std::sync::{Arc, MutexGuard};

use crate::event::DelegationId;

use super::{Inner, Ledger};

/// A claim that a delivery of this process owns a delegation: while one is held,
/// recovery leaves the delegation alone. Dropping it ends the claim. See
/// [`Ledger::claim`].
#[derive(Debug)]
#[must_use = "the claim ends when it is dropped"]
pub struct Claim {
    inner: Arc<Inner>,
    id: DelegationId,
}

impl Claim {
    /// The claimed delegation.
    pub fn id(&self) -> &DelegationId {
        &self.id
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
    pub fn claim(&self, id: &DelegationId) -> Claim {
        *self.inner.live().entry(id.clone()).or_insert(0) += 1;
        Claim {
            inner: Arc::clone(&self.inner),
            id: id.clone(),
        }
    }

    /// Whether a delivery of this process has claimed `id` ([`Ledger::claim`]).
    pub fn is_claimed(&self, id: &DelegationId) -> bool {
        self.inner.live().contains_key(id)
    }
}
