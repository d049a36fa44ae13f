//! Ownership of deliveries across processes: leases that dispatchers renew, and
//! claims that say which dispatcher owns a `queued` delegation, kept beside the log.
//!
//! A store shared by several processes (PostgreSQL) offers this through
//! [`Store::ownership`](super::Store::ownership); a store one process holds at a
//! time (sled, by its file lock; the in-memory stores) offers none, and the
//! ledger's in-process claims ([`Ledger::claim`](crate::Ledger::claim)) are all
//! the ownership it needs.
//!
//! Every lease time is the server's (`now()` where the store runs), never a host
//! clock, so hosts whose clocks disagree still agree on whose lease ran out.
//! Claims and leases are not events: they are kept out of the log, out of
//! `audit` and out of the export.

use std::time::Duration;

use crate::error::Result;
use crate::event::DelegationId;

/// A dispatcher's identity in a shared store: 16 random bytes, new for every
/// lease a process takes (a dispatcher whose lease ran out takes a new one).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Owner([u8; 16]);

impl Owner {
    /// A fresh owner id: the time, the process id and a random seed, hashed.
    pub fn fresh() -> Self {
        use std::hash::{BuildHasher, Hasher};
        use std::sync::atomic::{AtomicU64, Ordering};

        static NEXT: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        let half = |salt: u64| {
            let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
            hasher.write_u128(nanos);
            hasher.write_u32(std::process::id());
            hasher.write_u64(NEXT.fetch_add(1, Ordering::Relaxed));
            hasher.write_u64(salt);
            hasher.finish().to_be_bytes()
        };
        let mut bytes = [0; 16];
        let (high, low) = bytes.split_at_mut(8);
        high.copy_from_slice(&half(1));
        low.copy_from_slice(&half(2));
        Owner(bytes)
    }

    /// The owner with these bytes.
    pub fn from_bytes(bytes: [u8; 16]) -> Self {
        Owner(bytes)
    }

    /// Its 16 bytes.
    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }
}

impl std::fmt::Display for Owner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl std::fmt::Debug for Owner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Owner({self})")
    }
}

/// What a claim attempt came to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Claimed {
    /// The delegation is now claimed by the owner (it was free, already the
    /// owner's, or held by an owner whose lease had run out).
    Yes,
    /// Another owner with a live lease holds it: the id is in use.
    Taken,
    /// The owner's own lease has run out (or was never taken): it may claim
    /// nothing until it takes a new lease.
    LeaseExpired,
}

/// Leases and claims, in a store shared by several processes.
///
/// Every method is one statement (one round trip); none touches the log.
pub trait Ownership: Send + Sync {
    /// Takes a lease for `owner` that runs out `lease` after the server's now.
    ///
    /// # Errors
    /// A storage error.
    fn register(&self, owner: Owner, lease: Duration) -> Result<()>;

    /// Renews `owner`'s lease to `lease` after the server's now, if it has not
    /// run out: `false` if it had (or `owner` never registered), and then it
    /// stays out: take a new lease under a new owner.
    ///
    /// # Errors
    /// A storage error; the lease is then as it was.
    fn renew(&self, owner: Owner, lease: Duration) -> Result<bool>;

    /// Ends `owner`'s lease at once (a clean shutdown): whatever it still
    /// claims may be taken over right away.
    ///
    /// # Errors
    /// A storage error.
    fn retire(&self, owner: Owner) -> Result<()>;

    /// Claims delegation `id` for `owner`, before its `queued` is written, so
    /// that a `queued` delegation always has an owner. See [`Claimed`]. (A
    /// store that writes claims with its appends takes a new delegation's in
    /// the write of its `queued`:
    /// [`Store::append_claimed`](super::Store::append_claimed).)
    ///
    /// # Errors
    /// A storage error; nothing is claimed.
    fn claim(&self, owner: Owner, id: &DelegationId) -> Result<Claimed>;

    /// Ends `owner`'s claim on `id` (once its outcome is recorded); a claim
    /// another owner took over meanwhile is left alone.
    ///
    /// # Errors
    /// A storage error.
    fn release(&self, owner: Owner, id: &DelegationId) -> Result<()>;

    /// Takes over, for `owner` (whose own lease must be live), those of
    /// `candidates` that no live dispatcher owns: claimed by an owner whose
    /// lease ran out, by `owner` itself, or by nobody. One statement moves the
    /// claims and counts each takeover; claims another taker holds locked at
    /// the moment are skipped (`FOR UPDATE SKIP LOCKED`), so of racing takers
    /// exactly one gets each delegation. Answers the delegations taken.
    ///
    /// # Errors
    /// A storage error; nothing is taken.
    fn take_over(&self, owner: Owner, candidates: &[DelegationId]) -> Result<Vec<DelegationId>>;

    /// Whether the append that settles a delegation ends its claim in the same
    /// write, whoever holds it: then a claim whose own write settled its
    /// delegation needs no [`Ownership::release`] of its own
    /// ([`Claim::settled`](crate::ledger::Claim::settled)). The store knows a
    /// settling append by the open hint it removes, so this holds only where
    /// the hints are written with the appends
    /// ([`Store::hints_with_appends`](super::Store::hints_with_appends)).
    /// `false` by default.
    fn settlement_releases(&self) -> bool {
        false
    }
}
