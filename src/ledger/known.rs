//! The heads a ledger on a remote store wrote last, by delegation: its next
//! write to one of them starts from the head it wrote, not from a read of it.
//!
//! A guess, checked by the write itself: every append names the head it
//! expects, and the store refuses it if the head moved (another process wrote
//! first), as a lost race; the ledger then reads the head and decides again.
//! Only open delegations are kept (a settled one is written again only by a
//! retry), at most [`CAPACITY`] of them; past that the memory starts afresh,
//! which costs reads, never answers.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use crate::event::DelegationId;
use crate::store::Head;

/// How many heads are kept at most.
pub(super) const CAPACITY: usize = 1 << 16;

/// The heads this ledger wrote last, of the delegations it left open.
#[derive(Debug, Default)]
pub(super) struct Known {
    heads: Mutex<HashMap<DelegationId, Head>>,
}

impl Known {
    fn lock(&self) -> MutexGuard<'_, HashMap<DelegationId, Head>> {
        // Every change under the lock is one insert, removal or clear, so a
        // poisoned lock still guards a consistent map.
        self.heads.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The head this ledger last wrote for `id`, if it left `id` open.
    pub(super) fn get(&self, id: &DelegationId) -> Option<Head> {
        self.lock().get(id).cloned()
    }

    /// Keeps `head` as `id`'s, once an append that wrote it is acknowledged and
    /// left `id` open; forgets `id` if it settled it (`head` is `None`).
    pub(super) fn wrote(&self, id: &DelegationId, head: Option<Head>) {
        let mut heads = self.lock();
        match head {
            Some(head) => {
                if heads.len() >= CAPACITY && !heads.contains_key(id) {
                    heads.clear();
                }
                heads.insert(id.clone(), head);
            }
            None => {
                heads.remove(id);
            }
        }
    }

    /// Forgets `id`'s head: it was read from the store instead, or a write
    /// on it failed.
    pub(super) fn forget(&self, id: &DelegationId) {
        self.lock().remove(id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: usize) -> DelegationId {
        format!("d{n}").parse().unwrap()
    }

    fn head(seq: u64) -> Head {
        Head {
            seq,
            summary: vec![1, 2, 3],
        }
    }

    #[test]
    fn a_settled_delegation_is_forgotten_and_an_open_one_kept() {
        let known = Known::default();
        known.wrote(&id(1), Some(head(1)));
        assert_eq!(known.get(&id(1)), Some(head(1)));
        known.wrote(&id(1), None);
        assert_eq!(known.get(&id(1)), None);
    }

    #[test]
    fn below_its_capacity_every_open_delegation_is_kept_until_forgotten() {
        let known = Known::default();
        for n in 0..3 {
            known.wrote(&id(n), Some(head(1)));
        }
        known.wrote(&id(1), Some(head(2)));
        assert_eq!(known.get(&id(0)), Some(head(1)));
        assert_eq!(known.get(&id(1)), Some(head(2)));
        assert_eq!(known.get(&id(2)), Some(head(1)));
        known.forget(&id(1));
        assert_eq!(known.get(&id(1)), None);
        assert_eq!(known.get(&id(2)), Some(head(1)));
    }

    #[test]
    fn past_its_capacity_the_memory_starts_afresh_and_keeps_the_newest() {
        let known = Known::default();
        for n in 0..CAPACITY {
            known.wrote(&id(n), Some(head(1)));
        }
        known.wrote(&id(CAPACITY), Some(head(1)));
        assert_eq!(known.lock().len(), 1);
        assert_eq!(known.get(&id(CAPACITY)), Some(head(1)));
        assert_eq!(known.get(&id(0)), None);
    }
}
