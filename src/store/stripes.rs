//! Striped locks: one mutex per hash of a delegation id, so that writers of one
//! delegation queue behind each other while writers of others rarely meet.

use std::sync::{Mutex, MutexGuard};

use crate::event::DelegationId;

/// How many stripes: enough that unrelated writers rarely share one.
const STRIPES: usize = 64;

/// Striped locks, one stripe per hash of a delegation id. The locks guard no
/// data: holding a stripe is a promise the holder's code keeps.
pub(crate) struct Stripes([Mutex<()>; STRIPES]);

impl Default for Stripes {
    fn default() -> Self {
        Stripes(std::array::from_fn(|_| Mutex::new(())))
    }
}

impl std::fmt::Debug for Stripes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stripes").finish_non_exhaustive()
    }
}

/// The guards of every stripe a group of delegations needs, held together.
pub(crate) type Held<'a> = Vec<MutexGuard<'a, ()>>;

impl Stripes {
    fn index(id: &DelegationId) -> usize {
        use std::hash::{Hash, Hasher};
        // Stable within the process is all that matters: stripes are never stored.
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        id.hash(&mut hasher);
        usize::try_from(hasher.finish() % STRIPES as u64).unwrap_or(0)
    }

    fn stripe(&self, index: usize) -> MutexGuard<'_, ()> {
        // `index % STRIPES` is always a stripe; the spare only satisfies the types.
        static SPARE: Mutex<()> = Mutex::new(());
        let stripe = self.0.get(index % STRIPES).unwrap_or(&SPARE);
        // The lock guards no data, so a poisoned one is as good as any.
        stripe.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Locks `id`'s stripe.
    pub(crate) fn lock(&self, id: &DelegationId) -> MutexGuard<'_, ()> {
        self.stripe(Self::index(id))
    }

    /// Locks the stripes of several delegations, in index order, each once, so
    /// that two groups never wait for each other in a circle.
    pub(crate) fn lock_all<'a, 'b>(
        &'a self,
        ids: impl IntoIterator<Item = &'b DelegationId>,
    ) -> Held<'a> {
        let mut indexes: Vec<usize> = ids.into_iter().map(Self::index).collect();
        indexes.sort_unstable();
        indexes.dedup();
        indexes
            .into_iter()
            .map(|index| self.stripe(index))
            .collect()
    }
}
