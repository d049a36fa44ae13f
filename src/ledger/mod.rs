//! The ledger: the crate's public face over a [`Store`].
//!
//! Every write goes through [`Ledger::record`] (or [`Ledger::settle`], or, for a
//! retry, [`Ledger::retry`]): it reads the delegation's **head**, one get, which
//! holds its summary (state, outcome, times, last seq and chain hash); resumes a
//! [`Fold`](crate::delegation::Fold) from it; builds the new record, which the
//! fold (and through it the lifecycle machine) must accept; and appends the
//! record and the new head in one atomic write, conditional on the head it read. Nothing re-reads history on the
//! way. A refused event writes nothing.
//!
//! `status` is that one read of the head. `history`, `delegation` and `replay`
//! fold the records themselves and check the head against them, so a head that
//! disagrees with its history is an error, never a silently wrong answer; `audit`
//! does the same for every delegation, and recomputes every chain hash.
//!
//! # Recovery and live deliveries
//!
//! A ledger keeps, in memory and shared by its clones, the set of delegations that
//! a delivery of this process owns ([`Ledger::claim`]). A
//! [`Dispatcher`](crate::Dispatcher) claims an id before it records `queued` and
//! lets go once the outcome is recorded. Recovery ([`Ledger::recover`], and the
//! dispatcher's redelivery) settles only what is `queued` and unclaimed: the
//! store's lock means one process, so such a delegation belongs to no live
//! delivery, only to a process that died. A `queued` recorded with
//! [`Ledger::record`] directly is not claimed, and recovery settles it.
//!
//! On a store shared by several processes (PostgreSQL), a dispatcher holds a
//! [`Lease`] ([`Ledger::lease`]) and claims each delegation in the store too
//! ([`Ledger::claim_leased`], or with its `queued`: [`Ledger::queue_leased`]); recovery then takes over only what dead owners
//! (whose lease ran out) or nobody claimed. See `store::postgres`.
//!
//! # Where each part lives
//!
//! - here: [`Ledger`], its [`Options`] and [`Durability`], and opening one;
//! - `write`: [`Ledger::record`], [`Ledger::settle`], [`Ledger::retry`], and the one
//!   loop that retries a write that lost the race for a head;
//! - `next`: the record that follows a fold, checked by the lifecycle machine;
//! - `appender` and `commit`: group append, and group commit (durability);
//! - `read`: [`Ledger::status`], [`Ledger::history`], [`Ledger::replay`] and the
//!   other reads;
//! - `chain`: [`Ledger::attempts`], a task's attempts from any attempt's id;
//! - `pending`: [`Ledger::pending`] and [`Ledger::dead`], from the index;
//! - `index`: the hints each record needs, and reading them back verified;
//! - `stream`: a stored stream decoded, folded, and checked against its head;
//! - `claim`, `lease` and `recovery`: what a live delivery owns, a dispatcher's
//!   lease on a shared store, and settling what a dead process left;
//! - `follow`: [`Ledger::follow`], every acknowledged record of this process, on
//!   a bounded feed that never makes a writer wait;
//! - `tail`: [`Tail`], following a log other processes write, by polling;
//! - `poison`: refusing everything after a failed write or flush;
//! - `migrate`: rewriting a store of an older format.

mod appender;
mod chain;
mod claim;
mod commit;
mod follow;
mod index;
mod known;
mod lease;
mod lent;
mod migrate;
mod next;
mod pending;
mod poison;
mod read;
mod recovery;
mod stream;
mod tail;
mod write;

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};

use crate::clock::{Clock, SystemClock};
use crate::error::{Error, Result, Shared};
use crate::event::DelegationId;
use crate::store::{self, Store, Stripes};

use self::appender::Appender;
use self::commit::GroupCommit;
use self::follow::Feed;
use self::known::Known;

pub use self::claim::Claim;
pub use self::follow::{FOLLOW_CAPACITY, FollowError, Follower};
pub(crate) use self::index::Hints;
pub use self::lease::{Lease, Renewal};
pub(crate) use self::lent::LentFold;
pub use self::migrate::{Migration, migrate};
pub use self::pending::{Dead, Pending, Waiting};
pub(crate) use self::recovery::{INTERRUPTED, Taken};
pub use self::recovery::{RECOVERY_LEASE, Report, Unrecovered};
pub(crate) use self::stream::{Chain, decode_stream, fold_records, head_disagrees};
pub use self::tail::Tail;
pub use self::write::{Recorded, Retried, Settlement};
pub use crate::delegation::{Attempts, LastFailure};

/// When `record` acknowledges an event.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Durability {
    /// After a flush that reached the device covers it: on sled, sled's flush and
    /// then one `fdatasync` of its data file. Concurrent writers share one flush
    /// and one sync (group commit). What `record` acknowledged survives `kill -9`
    /// and a power cut.
    #[default]
    Durable,
    /// After a flush that handed it to the operating system covers it, without
    /// syncing the device: on sled, its flush alone (which ends in
    /// `sync_file_range` on Linux). What `record` acknowledged survives `kill -9`,
    /// not a power cut. Cheaper than [`Durability::Durable`] where syncs are slow.
    CrashSafe,
    /// As soon as the store has it; the store flushes in its own time (sled: every
    /// 500 ms). A crash may lose the last moments of acknowledged events.
    Buffered,
}

/// How to open a ledger.
#[derive(Clone)]
pub struct Options {
    durability: Durability,
    clock: Arc<dyn Clock>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            durability: Durability::Durable,
            clock: Arc::new(SystemClock),
        }
    }
}

impl std::fmt::Debug for Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Options")
            .field("durability", &self.durability)
            .finish_non_exhaustive()
    }
}

impl Options {
    /// Durable, with the system clock.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets when `record` acknowledges.
    pub fn durability(mut self, durability: Durability) -> Self {
        self.durability = durability;
        self
    }

    /// Sets where timestamps come from.
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }
}

/// An append-only, replayable log of delegations. Cheap to clone; clones share the
/// store.
///
/// ```
/// use delegation_log::{Event, FailureReason, Ledger, StatusKind};
///
/// let dir = tempfile::tempdir()?;
/// let ledger = Ledger::open(dir.path().join("log"))?;
/// let id = "task-1".parse()?;
/// ledger.record(&id, Event::queued("planner", "http://127.0.0.1:9/a2a"))?;
/// ledger.record(&id, Event::failed(FailureReason::TargetOffline, Some("connection refused".into()))?)?;
///
/// let status = ledger.status(&id)?;
/// assert_eq!(status.status, StatusKind::Failed);
/// // A second outcome is refused, and changes nothing.
/// assert!(ledger.record(&id, Event::delivered(Some(200))?).is_err());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct Ledger {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn Store>,
    options: Options,
    commit: GroupCommit,
    /// Writes the appends of writers that arrive together in one turn, and one
    /// flush for them.
    appender: Appender,
    poisoned: OnceLock<Shared<Error>>,
    /// Delegations a delivery of this process owns, with how many claims each.
    live: Mutex<HashMap<DelegationId, usize>>,
    /// Orders the writers of one delegation within the process: a writer holds its
    /// delegation's stripe from reading the history to the end of its append, so
    /// a reader that takes the stripe sees no append half done.
    stripes: Stripes,
    /// Hands each acknowledged record to the followers ([`Ledger::follow`]).
    feed: Feed,
    /// On a remote store ([`Store::remote`]), the heads this ledger wrote last
    /// of the delegations it left open, which its next writes start from.
    known: Option<Known>,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inner").finish_non_exhaustive()
    }
}

impl std::fmt::Debug for Ledger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ledger")
            .field("options", &self.inner.options)
            .field("poisoned", &self.inner.poisoned.get())
            .finish_non_exhaustive()
    }
}

#[cfg(feature = "postgres")]
impl Ledger {
    /// Opens a durable ledger on the PostgreSQL server at `url`, in the default
    /// schema (feature `postgres`).
    ///
    /// # Errors
    /// As for [`Postgres::connect`](crate::store::Postgres::connect).
    pub fn open_url(url: &str) -> Result<Self> {
        Self::open_url_with(url, Options::default())
    }

    /// Opens a ledger with `options` on the PostgreSQL server at `url`, in the
    /// default schema (feature `postgres`).
    ///
    /// # Errors
    /// As for [`Postgres::connect`](crate::store::Postgres::connect).
    pub fn open_url_with(url: &str, options: Options) -> Result<Self> {
        Ok(Self::with_store(
            Arc::new(crate::store::Postgres::connect(url)?),
            options,
        ))
    }
}

impl Ledger {
    /// Opens (or creates) a durable ledger in a sled store at `path`.
    ///
    /// # Errors
    /// As for [`store::Sled::open`].
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        Self::open_with(path, Options::default())
    }

    /// Opens (or creates) a ledger in a sled store at `path` with `options`.
    ///
    /// # Errors
    /// As for [`store::Sled::open`].
    pub fn open_with(path: impl AsRef<Path>, options: Options) -> Result<Self> {
        Ok(Self::with_store(
            Arc::new(store::Sled::open(path)?),
            options,
        ))
    }

    /// Opens a durable ledger in the sled store at `path`, which must exist: what
    /// read-only tools use, so that a wrong path never becomes a new, empty store.
    ///
    /// # Errors
    /// [`OpenError::NotAStore`](crate::OpenError::NotAStore) if there is no store at `path`; otherwise as for
    /// [`store::Sled::open`].
    pub fn open_existing(path: impl AsRef<Path>) -> Result<Self> {
        Ok(Self::with_store(
            Arc::new(store::Sled::open_existing(path)?),
            Options::default(),
        ))
    }

    /// A ledger over any store.
    pub fn with_store(store: Arc<dyn Store>, options: Options) -> Self {
        let known = store.remote().then(Known::default);
        Ledger {
            inner: Arc::new(Inner {
                known,
                store,
                options,
                commit: GroupCommit::default(),
                appender: Appender::default(),
                poisoned: OnceLock::new(),
                live: Mutex::new(HashMap::new()),
                stripes: Stripes::default(),
                feed: Feed::default(),
            }),
        }
    }

    /// The store underneath.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.inner.store
    }

    /// The clock that stamps records.
    pub fn clock(&self) -> &dyn Clock {
        self.inner.options.clock.as_ref()
    }
}
