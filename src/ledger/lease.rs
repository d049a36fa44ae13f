//! A dispatcher's lease on a store that several processes share: taken, renewed,
//! and checked before every delivery, as a monotonic deadline no later than the server's.
//!
//! The server decides when a lease runs out (`lease_until`, its own `now()`).
//! This process keeps its own deadline for the lease: the instant *before* the
//! last successful renewal was sent, plus the lease. The server's `now()` at
//! that renewal came later, so this deadline ends no later than the server's
//! (clock rates aside, which drift by far less than a lease in a lease), and a
//! delivery started before it began while the lease was live everywhere.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::error::Result;
use crate::store::{Owner, Store};

use super::Ledger;

/// A dispatcher's lease on a shared store ([`Ledger::lease`]). Cheap to clone;
/// clones share it.
#[derive(Clone)]
pub struct Lease {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn Store>,
    duration: Duration,
    state: Mutex<State>,
}

/// The owner the lease is held as, and until when this process counts on it.
#[derive(Clone, Copy)]
struct State {
    owner: Owner,
    until: Instant,
}

/// What [`Lease::renew`] came to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Renewal {
    /// The lease was live and now runs for another lease from the server's now.
    Renewed,
    /// The lease had run out: other dispatchers may have taken over what the old
    /// owner claimed. A new lease was taken under a new owner.
    Replaced {
        /// The owner whose lease ran out.
        expired: Owner,
        /// The new owner.
        now: Owner,
    },
}

impl std::fmt::Debug for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lease")
            .field("owner", &self.owner())
            .field("duration", &self.inner.duration)
            .finish_non_exhaustive()
    }
}

impl Ledger {
    /// Takes a lease of `duration` for a dispatcher, if the store is shared by
    /// several processes ([`Store::ownership`]); `None` for a store one process
    /// holds at a time (sled, memory), where in-process claims are enough.
    ///
    /// # Errors
    /// A storage error: no lease was taken.
    pub fn lease(&self, duration: Duration) -> Result<Option<Lease>> {
        let store = Arc::clone(self.store());
        let Some(ownership) = store.ownership() else {
            return Ok(None);
        };
        let owner = Owner::fresh();
        let sent = Instant::now();
        ownership.register(owner, duration)?;
        Ok(Some(Lease {
            inner: Arc::new(Inner {
                store: Arc::clone(&store),
                duration,
                state: Mutex::new(State {
                    owner,
                    until: sent + duration,
                }),
            }),
        }))
    }
}

impl Lease {
    /// The owner this lease is held as now.
    pub fn owner(&self) -> Owner {
        self.state().owner
    }

    /// How long each renewal makes the lease run.
    pub fn duration(&self) -> Duration {
        self.inner.duration
    }

    /// Whether `owner` is this lease's owner and its lease is live by this
    /// process's deadline: what a delivery claimed under `owner` asks before it
    /// sends anything.
    pub fn holds(&self, owner: Owner) -> bool {
        let state = self.state();
        state.owner == owner && Instant::now() < state.until
    }

    /// Renews the lease on the server; if it had run out there, takes a new one
    /// under a new owner. A heartbeat calls this every third of the lease.
    ///
    /// # Errors
    /// A storage error: the lease is as it was, and this process's deadline for
    /// it is not moved, so it stops delivering once that passes.
    pub fn renew(&self) -> Result<Renewal> {
        let Some(ownership) = self.inner.store.ownership() else {
            return Ok(Renewal::Renewed);
        };
        let owner = self.owner();
        let sent = Instant::now();
        if ownership.renew(owner, self.inner.duration)? {
            let mut state = self.state();
            if state.owner == owner {
                state.until = sent + self.inner.duration;
            }
            return Ok(Renewal::Renewed);
        }
        // Out already: nothing under the old owner may start from now on.
        self.state().until = sent;
        let fresh = Owner::fresh();
        let sent = Instant::now();
        ownership.register(fresh, self.inner.duration)?;
        *self.state() = State {
            owner: fresh,
            until: sent + self.inner.duration,
        };
        Ok(Renewal::Replaced {
            expired: owner,
            now: fresh,
        })
    }

    /// Ends the lease at once (a clean shutdown, once every delivery is
    /// recorded): what it still claims may be taken over right away.
    ///
    /// # Errors
    /// A storage error; the lease then runs out in its own time.
    pub fn retire(&self) -> Result<()> {
        let owner = {
            let mut state = self.state();
            state.until = Instant::now();
            state.owner
        };
        match self.inner.store.ownership() {
            Some(ownership) => ownership.retire(owner),
            None => Ok(()),
        }
    }

    /// The store the lease is on.
    pub(super) fn store(&self) -> &Arc<dyn Store> {
        &self.inner.store
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // Every change under the lock is one assignment: a poisoned lock still
        // guards a whole state.
        self.inner.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}
