//! The ledger: the crate's public face over a [`Store`].
//!
//! Every write goes through [`Ledger::record`] (or [`Ledger::settle`], or, for a
//! retry, [`Ledger::retry`]): it reads the delegation's **head**, one get, which
//! holds its summary (state, outcome, times, last seq and chain hash); resumes a
//! [`Fold`] from it; builds the new record, which the fold (and through it the
//! lifecycle machine) must accept; and appends the record and the new head in one
//! atomic write, conditional on the head it read. Nothing re-reads history on the
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

mod appender;

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};

use crate::clock::{Clock, SystemClock};
use crate::delegation::{Delegation, Fold, Outcome, Status, Violation};
use crate::envelope;
use crate::error::{Error, Result};
use crate::event::{DelegationId, Event, Failed, FailureReason, Queued, Record, Seq, Timestamp};
use crate::lifecycle::{Refusal, State};
use crate::store::{self, AppendError, Expect, Head, Store, Stream, Stripes};

use self::appender::{Appender, Owned, Written};

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

/// What [`Ledger::record`] acknowledged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recorded {
    /// The record's seq.
    pub seq: Seq,
    /// Its timestamp.
    pub at: Timestamp,
    /// The delegation's state after it.
    pub state: State,
}

/// What [`migrate`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Migration {
    /// Delegations rewritten; 0 if the store was already in the current format.
    pub delegations: u64,
    /// Records rewritten.
    pub records: u64,
    /// Whether the store was already in the current format and was left alone.
    pub already_current: bool,
}

/// Migrates the sled store at `path` to the current format, in place.
///
/// Every delegation is read and checked as `audit` checks it (every chain hash
/// recomputed, the head against the records); any damage stops the migration
/// before anything changes, naming the delegation. Each record is rewritten in
/// the current envelope (the chain hash is over the record, not its bytes, so
/// every hash stays valid and `export` writes the same bytes before and after),
/// with a head holding its summary. The switch is one synced write after
/// everything else is synced: a crash at any point leaves the store either as it
/// was or migrated, and running it again finishes the job. See
/// [`store::Sled::migrate`].
///
/// ```
/// # let dir = tempfile::tempdir()?;
/// # let path = dir.path().join("log");
/// # drop(delegation_log::Ledger::open(&path)?);
/// let migration = delegation_log::migrate(&path)?;
/// assert!(migration.already_current);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # Errors
/// [`Error::NotAStore`] if there is no store at `path`; [`Error::Corrupt`] (or
/// [`Error::UnknownVersion`]) for a damaged delegation, with the store left as it
/// was; a storage error.
pub fn migrate(path: impl AsRef<Path>) -> Result<Migration> {
    let mut records = 0u64;
    let migrated = store::Sled::migrate(path, &mut |stream, format| {
        let decoded = decode_stream(stream)?;
        let fold = fold_records(stream, &decoded, Chain::Verify, format)?;
        let mut entries = Vec::with_capacity(decoded.len());
        for record in &decoded {
            let bytes = envelope::encode(record);
            if envelope::decode(&bytes).as_ref() != Ok(record) {
                return Err(Error::Corrupt {
                    key: format!("delegation `{}` seq {}", record.delegation, record.seq),
                    reason: "the record does not survive re-encoding".to_owned(),
                });
            }
            entries.push(store::Entry {
                seq: record.seq,
                bytes,
            });
        }
        records += u64::try_from(entries.len()).unwrap_or(u64::MAX);
        let head = fold.delegation().map(|delegation| Head {
            seq: delegation.seq,
            summary: envelope::head::encode(delegation),
        });
        Ok(store::sled::Migrated { entries, head })
    })?;
    Ok(Migration {
        delegations: migrated.unwrap_or(0),
        records,
        already_current: migrated.is_none(),
    })
}

/// What [`Ledger::settle`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Settlement {
    /// This outcome was recorded: it won.
    Won(Recorded),
    /// The delegation had already settled; this outcome was refused and nothing
    /// was written. The outcome that won, as the delegation's head holds it.
    Lost {
        /// The outcome that won.
        outcome: Outcome,
        /// The seq of its record.
        seq: Seq,
        /// When it was recorded.
        at: Timestamp,
    },
}

/// What [`Ledger::retry`] acknowledged: the original's failure and the retry's
/// `queued`, written together.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Retried {
    /// The original's `failed` record.
    pub failed: Recorded,
    /// The retry's `queued` record.
    pub queued: Recorded,
    /// Which attempt the retry is.
    pub attempt: crate::event::Attempt,
}

/// A delegation that recovery found and could not settle, and why.
#[derive(Debug, thiserror::Error)]
#[error("{}: {error}", .id.as_ref().map_or_else(|| "an unreadable delegation".to_owned(), |id| format!("delegation `{id}`")))]
pub struct Unrecovered {
    /// The delegation, when it could be told (a damaged store key names none).
    pub id: Option<DelegationId>,
    /// Why it was not settled: damage in its history, or a failed write.
    pub error: Error,
}

/// What [`Ledger::recover_all`] did: every delegation it settled, and every one it
/// could not, each with its own error.
#[derive(Debug, Default)]
pub struct Report {
    /// Settled as `failed` / `interrupted`, in store order.
    pub settled: Vec<DelegationId>,
    /// Not settled: damaged or not written, in store order.
    pub failed: Vec<Unrecovered>,
}

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
    poisoned: OnceLock<String>,
    /// Delegations a delivery of this process owns, with how many claims each.
    live: Mutex<HashMap<DelegationId, usize>>,
    /// Orders the writers of one delegation within the process: a writer holds its
    /// delegation's stripe from reading the history to the end of its append, so
    /// a reader that takes the stripe sees no append half done.
    stripes: Stripes,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inner").finish_non_exhaustive()
    }
}

impl Inner {
    fn live(&self) -> MutexGuard<'_, HashMap<DelegationId, usize>> {
        // Every change under the lock is a single insert, increment or removal,
        // so a poisoned lock still guards a consistent map.
        self.live.lock().unwrap_or_else(|p| p.into_inner())
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

/// How many times `record` re-reads after losing a race before it gives up. Each
/// lost race means another record landed, and a delegation holds at most two, so
/// a correct store never comes near this.
const MAX_CONFLICTS: usize = 16;

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
    /// [`Error::NotAStore`] if there is no store at `path`; otherwise as for
    /// [`store::Sled::open`].
    pub fn open_existing(path: impl AsRef<Path>) -> Result<Self> {
        Ok(Self::with_store(
            Arc::new(store::Sled::open_existing(path)?),
            Options::default(),
        ))
    }

    /// A ledger over any store.
    pub fn with_store(store: Arc<dyn Store>, options: Options) -> Self {
        Ledger {
            inner: Arc::new(Inner {
                store,
                options,
                commit: GroupCommit::default(),
                appender: Appender::default(),
                poisoned: OnceLock::new(),
                live: Mutex::new(HashMap::new()),
                stripes: Stripes::default(),
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

    /// Records `event` for delegation `id`, if the lifecycle allows it.
    ///
    /// The timestamp is the clock's, raised if need be to the delegation's last
    /// timestamp, so that a delegation's times never run backwards. In durable mode
    /// this returns only after a flush covers the record.
    ///
    /// A retry (a `queued` with `retry_of`) is refused here: it is written only
    /// together with the failure it retries, by [`Ledger::retry`].
    ///
    /// # Errors
    /// - [`Error::IllegalTransition`], [`Error::AlreadySettled`],
    ///   [`Error::InvalidEvent`] or [`Error::RetryLink`] if the event is refused;
    ///   nothing is written.
    /// - [`Error::Corrupt`] if the delegation's history is damaged; nothing is
    ///   written.
    /// - [`Error::Poisoned`] after an earlier write or flush failed.
    /// - A storage error if the write or flush fails; the ledger is then poisoned.
    pub fn record(&self, id: &DelegationId, event: Event) -> Result<Recorded> {
        self.check_poisoned()?;
        event.validate()?;
        if let Event::Queued(Queued {
            retry_of: Some(original),
            ..
        }) = &event
        {
            return Err(Error::RetryLink {
                id: id.clone(),
                reason: format!(
                    "a retry of `{original}` is written only with the failure it retries \
                     (Ledger::retry)"
                ),
            });
        }
        match self.append_event(id, event.normalized())? {
            Appended::Recorded(recorded) => Ok(recorded),
            Appended::Refused { error, .. } => Err(error),
        }
    }

    /// Records an outcome (`delivered` or `failed`) for delegation `id`, and when
    /// the delegation has already settled, says which outcome won instead of
    /// failing: what every writer racing to settle a delegation wants to know.
    /// The winner comes from the same read of the head that refused this outcome.
    ///
    /// # Errors
    /// As for [`Ledger::record`], except [`Error::AlreadySettled`], which is
    /// [`Settlement::Lost`] here.
    pub fn settle(&self, id: &DelegationId, outcome: Event) -> Result<Settlement> {
        self.check_poisoned()?;
        if let Event::Queued(_) = outcome {
            return Err(crate::event::InvalidEvent::NotAnOutcome.into());
        }
        outcome.validate()?;
        match self.append_event(id, outcome.normalized())? {
            Appended::Recorded(recorded) => Ok(Settlement::Won(recorded)),
            Appended::Refused {
                error,
                winner: Some(winner),
            } => match (winner.outcome, winner.settled_at) {
                (Some(outcome), Some(at)) => Ok(Settlement::Lost {
                    outcome,
                    seq: winner.seq,
                    at,
                }),
                _ => Err(error),
            },
            Appended::Refused { error, .. } => Err(error),
        }
    }

    /// The one write of one event: read the head, decide, append record and head
    /// together, under `id`'s writer stripe; then wait for the commit.
    fn append_event(&self, id: &DelegationId, event: Event) -> Result<Appended> {
        let writing = self.inner.stripes.lock(id);
        let (appended, written) = self.write_retrying(|| {
            let fold = self.resume(id)?;
            let at = self.stamp(&fold);
            let next = match next_record(&fold, event.clone(), at) {
                Ok(next) => next,
                Err(error @ Error::AlreadySettled { .. }) => {
                    let winner = fold.into_delegation().map(Box::new);
                    return Ok((Appended::Refused { error, winner }, Ok(None)));
                }
                Err(error) => return Err(error),
            };
            let (recorded, append) = next.into_append(id, &fold);
            let written = self.append(vec![append]);
            Ok((Appended::Recorded(recorded), written))
        })?;
        // The append is whole: the flush is shared.
        drop(writing);
        if let Appended::Recorded(_) = appended {
            self.commit(written)?;
        }
        Ok(appended)
    }

    /// Settles delegation `original` as `failed` and queues `retry` as its retry,
    /// in one atomic write: a crash keeps both records or neither, so no original
    /// ever points at a retry that does not exist, and no retry exists whose
    /// original did not fail.
    ///
    /// The ledger fills in the retry's `retry_of` (`original`) and `attempt` (one
    /// more than the original's, which is 1 unless it is itself a retry); if
    /// `queued` already carries either, it must say the same. Both records pass
    /// the lifecycle machine first (the original must be `queued`, the retry must
    /// not exist), and both get the same timestamp. In durable mode this returns
    /// only after a flush covers both.
    ///
    /// # Errors
    /// - [`Error::AlreadySettled`] or [`Error::IllegalTransition`] (naming the
    ///   original) if the original is not `queued`; [`Error::IllegalTransition`]
    ///   (naming the retry) if the retry already exists; [`Error::InvalidEvent`] or
    ///   [`Error::RetryLink`] for a refused event. Nothing is written.
    /// - [`Error::Corrupt`] if either history is damaged; nothing is written.
    /// - [`Error::Poisoned`], or a storage error (which poisons the ledger), as for
    ///   [`Ledger::record`].
    pub fn retry(
        &self,
        original: &DelegationId,
        failed: Failed,
        retry: &DelegationId,
        queued: Queued,
    ) -> Result<Retried> {
        self.check_poisoned()?;
        let failed = Event::Failed(failed);
        failed.validate()?;
        let link = |reason: String| Error::RetryLink {
            id: retry.clone(),
            reason,
        };
        if retry == original {
            return Err(link("a delegation cannot retry itself".to_owned()));
        }
        if let Some(other) = queued.retry_of.as_ref().filter(|other| *other != original) {
            return Err(link(format!(
                "it says it retries `{other}`, but it is written as the retry of `{original}`"
            )));
        }
        let writing = self.inner.stripes.lock_all([original, retry]);
        let (retried, written) = self.write_retrying(|| {
            let fold = self.resume(original)?;
            let retry_fold = self.resume(retry)?;
            let at = self.stamp(&fold).max(self.stamp(&retry_fold));
            let settled = next_record(&fold, failed.clone(), at)?;
            let attempt = fold
                .delegation()
                .map_or(1, |delegation| delegation.attempt)
                .saturating_add(1);
            if let Some(said) = queued.attempt.filter(|said| *said != attempt) {
                return Err(link(format!(
                    "it says attempt {said}, but `{original}` is attempt {}, so this is attempt {attempt}",
                    attempt - 1
                )));
            }
            let event = Event::Queued(Queued {
                retry_of: Some(original.clone()),
                attempt: Some(attempt),
                ..queued.clone()
            });
            event.validate()?;
            let queued_next = next_record(&retry_fold, event.normalized(), at)?;
            let (failed, settled) = settled.into_append(original, &fold);
            let (queued, queued_next) = queued_next.into_append(retry, &retry_fold);
            let written = self.append(vec![settled, queued_next]);
            let retried = Retried {
                failed,
                queued,
                attempt,
            };
            Ok((retried, written))
        })?;
        drop(writing);
        self.commit(written)?;
        Ok(retried)
    }

    /// The first attempt of delegation `id`'s task: `id` itself, or, for a retry,
    /// the delegation its chain of `retry_of` links starts from. This is the
    /// message id a redelivery keeps, read from the log, so it holds across any
    /// number of crashes. `None` if the log has never seen `id`.
    ///
    /// # Errors
    /// A storage error; [`Error::Corrupt`] if a history on the way is damaged, or
    /// a link names a delegation the log does not hold or one whose attempt is not
    /// one less.
    pub fn first_attempt(&self, id: &DelegationId) -> Result<Option<DelegationId>> {
        let Some(mut current) = self.delegation(id)? else {
            return Ok(None);
        };
        // Each link goes to an attempt one lower, so the walk ends.
        while let Some(previous) = current.retry_of.clone() {
            let broken = |reason: String| Error::Corrupt {
                key: format!("delegation `{}`", current.id),
                reason,
            };
            let Some(earlier) = self.delegation(&previous)? else {
                return Err(broken(format!(
                    "it retries `{previous}`, which the log does not hold"
                )));
            };
            if earlier.attempt.saturating_add(1) != current.attempt {
                return Err(broken(format!(
                    "it is attempt {}, but `{previous}`, which it retries, is attempt {}",
                    current.attempt, earlier.attempt
                )));
            }
            current = earlier;
        }
        Ok(Some(current.id))
    }

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

    /// A record's timestamp: the clock's now, raised to the delegation's last
    /// timestamp so that its times never run backwards.
    fn stamp(&self, fold: &Fold) -> Timestamp {
        let now = self.clock().now();
        match fold.delegation() {
            Some(d) => now.max(d.settled_at.unwrap_or(d.queued_at)),
            None => now,
        }
    }

    /// Runs `attempt` (read, decide, write) until its write is not refused for a
    /// lost race on a head, at most [`MAX_CONFLICTS`] times: the one retry site of
    /// every write. The attempt's own errors (a refusal, damage) pass through; a
    /// failed write poisons the ledger. Returns the attempt's value and what
    /// its write came to (`None` for no write).
    fn write_retrying<T>(
        &self,
        mut attempt: impl FnMut() -> Result<(T, Result<Option<Written>, AppendError>)>,
    ) -> Result<(T, Option<Written>)> {
        let mut conflicts = 0;
        loop {
            let (value, written) = attempt()?;
            match written {
                Ok(written) => return Ok((value, written)),
                Err(AppendError::Conflict { id, .. }) => {
                    conflicts += 1;
                    if conflicts >= MAX_CONFLICTS {
                        return Err(Error::Conflict {
                            id,
                            attempts: conflicts,
                        });
                    }
                }
                // Damage found by the store's checks before writing, or a store
                // that takes no writes: nothing was written, and the ledger is as
                // sound as it was.
                Err(damaged @ AppendError::Damaged { .. }) => return Err(damaged.into()),
                Err(AppendError::Store(error @ Error::NeedsMigration { .. })) => return Err(error),
                // A failed write may be partly visible: serve nothing more.
                Err(AppendError::Store(error)) => return Err(self.poison(error)),
            }
        }
    }

    /// Appends to the store, atomically, in a group with the appends of writers
    /// that arrive at the same time ([`appender`]).
    fn append(&self, appends: Vec<Owned>) -> std::result::Result<Option<Written>, AppendError> {
        self.inner
            .appender
            .append(
                self.inner.store.as_ref(),
                &self.inner.commit,
                self.inner.options.durability,
                appends,
            )
            .map(Some)
    }

    /// In durable (or crash-safe) mode, waits for a flush that covers `written`
    /// (the one its writer ran in its turn, or a later one).
    fn commit(&self, written: Option<Written>) -> Result<()> {
        let level = self.inner.options.durability;
        let Some(written) = written.filter(|_| level != Durability::Buffered) else {
            return Ok(());
        };
        written
            .flushed
            .unwrap_or_else(|| {
                self.inner
                    .commit
                    .wait_for(written.ticket, self.inner.store.as_ref(), level)
            })
            .map_err(|error| self.poison(error))
    }

    /// Makes every acknowledged event durable now, on the device (as
    /// [`Durability::Durable`]), whatever the durability mode.
    ///
    /// # Errors
    /// A storage error; the ledger is then poisoned.
    pub fn flush(&self) -> Result<()> {
        self.check_poisoned()?;
        self.inner
            .commit
            .wait(self.inner.store.as_ref(), Durability::Durable)
            .map_err(|error| self.poison(error))
    }

    /// The status of delegation `id`; [`StatusKind::NotFound`](crate::StatusKind)
    /// if the log has never seen it. One read: the delegation's head.
    ///
    /// # Errors
    /// A storage error, or [`Error::Corrupt`] if its history is damaged.
    pub fn status(&self, id: &DelegationId) -> Result<Status> {
        self.check_poisoned()?;
        Ok(match self.resume(id)?.into_delegation() {
            Some(delegation) => delegation.into_status(),
            None => Status::not_found(id.clone()),
        })
    }

    /// Delegation `id` rebuilt from its records, or `None` if it has none.
    ///
    /// # Errors
    /// A storage error, or [`Error::Corrupt`] if its history is damaged.
    pub fn delegation(&self, id: &DelegationId) -> Result<Option<Delegation>> {
        Ok(self.read(id)?.1.into_delegation())
    }

    /// The records of delegation `id`, in order, each checked.
    ///
    /// # Errors
    /// A storage error, or [`Error::Corrupt`] if its history is damaged.
    pub fn history(&self, id: &DelegationId) -> Result<Vec<Record>> {
        Ok(self.read(id)?.0)
    }

    /// Every delegation, rebuilt from the log alone, one at a time in store order.
    /// A damaged delegation gives an error item and the replay goes on.
    ///
    /// A poisoned ledger yields one [`Error::Poisoned`] and nothing else.
    pub fn replay(&self) -> impl Iterator<Item = Result<Delegation>> + '_ {
        let poisoned = self.check_poisoned().err();
        let scan: Box<dyn Iterator<Item = Result<Stream>> + Send + '_> = if poisoned.is_some() {
            Box::new(std::iter::empty())
        } else {
            self.inner.store.scan()
        };
        poisoned
            .map(Err)
            .into_iter()
            .chain(scan.filter_map(|stream| {
                stream
                    .and_then(|stream| fold_stream(&stream, self.format()))
                    .map(|(_, fold)| fold.into_delegation())
                    .transpose()
            }))
    }

    /// Settles every delegation still `queued` as `failed` with reason
    /// [`FailureReason::Interrupted`]: the recovery for a process that died
    /// mid-delivery. Delegations a delivery of
    /// this process has [claimed](Ledger::claim) are live, not dead, and are left
    /// alone, so recovery may run at any time, even while a dispatcher delivers.
    ///
    /// A delegation that another writer settles meanwhile is left as it settled.
    ///
    /// # Errors
    /// A storage error; delegations settled before it stay settled. A damaged
    /// delegation does not keep the others queued: every readable one is settled
    /// first, then the first damage met is returned. [`Ledger::recover_all`] says
    /// what happened to each.
    pub fn recover(&self) -> Result<Vec<DelegationId>> {
        let (settled, damaged, unwritten) = self.recover_parts();
        match unwritten.into_iter().chain(damaged).next() {
            Some(failure) => Err(failure.error),
            None => Ok(settled),
        }
    }

    /// As [`Ledger::recover`], but it reports every delegation it could not
    /// settle, with its id and its own error, instead of the first error.
    pub fn recover_all(&self) -> Report {
        let (settled, mut failed, unwritten) = self.recover_parts();
        failed.extend(unwritten);
        Report { settled, failed }
    }

    /// Recovery: what it settled, what it could not read, and what it could not
    /// write.
    fn recover_parts(&self) -> (Vec<DelegationId>, Vec<Unrecovered>, Vec<Unrecovered>) {
        let (orphans, damaged) = self.orphans();
        let mut settled = Vec::with_capacity(orphans.len());
        let mut unwritten = Vec::new();
        for delegation in orphans {
            if self.is_claimed(&delegation.id) {
                continue;
            }
            let event = Event::Failed(Failed {
                reason: FailureReason::Interrupted,
                detail: Some("the process stopped before the outcome was known".to_owned()),
            });
            match self.record(&delegation.id, event) {
                Ok(_) => settled.push(delegation.id),
                Err(Error::AlreadySettled { .. }) => {}
                Err(error) => unwritten.push(Unrecovered {
                    id: Some(delegation.id),
                    error,
                }),
            }
        }
        (settled, damaged, unwritten)
    }

    /// Every delegation a dead process left: `queued` and not claimed by a live
    /// delivery of this process, in store order; and every delegation whose
    /// history could not be read, with its error.
    pub(crate) fn orphans(&self) -> (Vec<Delegation>, Vec<Unrecovered>) {
        let mut orphans = Vec::new();
        let mut damaged = Vec::new();
        // A poisoned ledger reads nothing, so it recovers nothing.
        if let Err(error) = self.check_poisoned() {
            damaged.push(Unrecovered { id: None, error });
            return (orphans, damaged);
        }
        for stream in self.inner.store.scan() {
            let stream = match stream {
                Ok(stream) => stream,
                Err(error) => {
                    damaged.push(Unrecovered { id: None, error });
                    continue;
                }
            };
            match fold_stream(&stream, self.format()).map(|(_, fold)| fold.into_delegation()) {
                Ok(Some(delegation))
                    if delegation.state == State::Queued && !self.is_claimed(&delegation.id) =>
                {
                    orphans.push(delegation);
                }
                Ok(_) => {}
                Err(error) => damaged.push(Unrecovered {
                    id: Some(stream.id),
                    error,
                }),
            }
        }
        (orphans, damaged)
    }

    /// Every delegation still `queued`, in store order.
    ///
    /// # Errors
    /// The first storage error or damaged delegation met.
    pub fn pending(&self) -> Result<Vec<Delegation>> {
        let mut pending = Vec::new();
        for delegation in self.replay() {
            let delegation = delegation?;
            if delegation.state == State::Queued {
                pending.push(delegation);
            }
        }
        Ok(pending)
    }

    /// Reads, decodes and folds one delegation's whole history, and checks its
    /// head against it: what `history`, `delegation` and recovery read.
    fn read(&self, id: &DelegationId) -> Result<(Vec<Record>, Fold)> {
        self.check_poisoned()?;
        fold_stream(&self.inner.store.history(id)?, self.format())
    }

    /// The store's format ([`Store::format`]).
    fn format(&self) -> u8 {
        self.inner.store.format()
    }

    /// The fold of `id` as its head describes it, one read: where every write
    /// starts, and what `status` answers from. A store of format 1, whose heads
    /// hold no summary, is folded from its history instead.
    fn resume(&self, id: &DelegationId) -> Result<Fold> {
        let Some(head) = self.inner.store.head(id)? else {
            return Ok(Fold::trusting(id.clone()));
        };
        match summary(id, &head, self.format())? {
            Some(delegation) => Ok(Fold::resume(delegation)),
            None => Ok(self.read(id)?.1),
        }
    }

    /// [`Error::Poisoned`] once a write or flush has failed. Reads refuse too: what
    /// the store shows after a failed flush may include writes that never became
    /// durable, and a crash would undo them, so the ledger serves nothing until it
    /// is reopened and reads only what survived.
    pub(crate) fn check_poisoned(&self) -> Result<()> {
        match self.inner.poisoned.get() {
            Some(cause) => Err(Error::Poisoned {
                cause: cause.clone(),
            }),
            None => Ok(()),
        }
    }

    /// Poisons the ledger with `error` as the cause, and returns the error.
    pub(crate) fn poison(&self, error: Error) -> Error {
        let _ = self.inner.poisoned.set(error.to_string());
        error
    }
}

/// What one event's write came to.
enum Appended {
    /// Written and committed.
    Recorded(Recorded),
    /// Refused as already settled: nothing was written. The delegation as its
    /// head says, which holds the outcome that won.
    Refused {
        error: Error,
        winner: Option<Box<Delegation>>,
    },
}

/// A record ready to append: the record that follows `fold` with `event` at `at`,
/// checked by the fold (and through it by the lifecycle machine), with its chain
/// hash, its encoding, and the head it leads to.
struct Next {
    recorded: Recorded,
    bytes: Vec<u8>,
    head: Vec<u8>,
}

impl Next {
    /// What this record acknowledges once written, and its append after `fold`.
    fn into_append(self, id: &DelegationId, fold: &Fold) -> (Recorded, Owned) {
        let append = Owned {
            id: id.clone(),
            expect: Expect::after(fold.seq()),
            record: self.bytes,
            head: self.head,
        };
        (self.recorded, append)
    }
}

/// Builds the record that follows `fold`, if the fold allows it, and the head
/// after it. The chain hash is computed from the fold's last hash: no history is
/// read.
fn next_record(fold: &Fold, event: Event, at: Timestamp) -> Result<Next> {
    let id = fold.id();
    let mut record = Record {
        delegation: id.clone(),
        seq: fold.seq().saturating_add(1),
        event,
        at,
        hash: None,
    };
    let refused = |violation| match violation {
        Violation::Illegal(refusal) => Error::refused(id, refusal),
        other => Error::Corrupt {
            key: format!("delegation `{id}`"),
            reason: other.to_string(),
        },
    };
    // Checked before it has a hash, so the fold does not hash it a second time to
    // compare: the hash below is the chain's by construction.
    let state = fold.check(&record).map_err(refused)?;
    record.hash = Some(record.chain_hash(&fold.hash()));
    let mut after = fold.clone();
    after.apply(&record).map_err(refused)?;
    let head = after
        .delegation()
        .map(envelope::head::encode)
        .ok_or_else(|| {
            refused(Violation::Illegal(Refusal::IllegalTransition {
                from: fold.state(),
                event: record.event.kind(),
            }))
        })?;
    Ok(Next {
        recorded: Recorded {
            seq: record.seq,
            at,
            state,
        },
        bytes: envelope::encode(&record),
        head,
    })
}

/// Decodes a head's summary: the delegation as of its last record (without its
/// task), checked against the head's key and seq. `None` for a head of format 1,
/// which holds only the last chain hash.
pub(crate) fn summary(id: &DelegationId, head: &Head, format: u8) -> Result<Option<Delegation>> {
    if format < store::HEAD_FORMAT {
        return Ok(None);
    }
    let where_ = || format!("head of `{id}`");
    let delegation =
        envelope::head::decode(&head.summary).map_err(|e| Error::decode(where_(), e))?;
    if &delegation.id != id || delegation.seq != head.seq {
        return Err(Error::Corrupt {
            key: where_(),
            reason: format!(
                "it is stored as the head of seq {}, but says `{}` seq {}",
                head.seq, delegation.id, delegation.seq
            ),
        });
    }
    Ok(Some(delegation))
}

/// Decodes and folds a stream of a store in `format`, checking its head.
fn fold_stream(stream: &Stream, format: u8) -> Result<(Vec<Record>, Fold)> {
    let records = decode_stream(stream)?;
    let fold = fold_records(stream, &records, Chain::Trust, format)?;
    Ok((records, fold))
}

/// Decodes a stream's entries, checking each against its key.
pub(crate) fn decode_stream(stream: &Stream) -> Result<Vec<Record>> {
    stream
        .entries
        .iter()
        .map(|entry| {
            let where_ = || format!("delegation `{}` seq {}", stream.id, entry.seq);
            let record = envelope::decode(&entry.bytes).map_err(|e| Error::decode(where_(), e))?;
            if record.delegation != stream.id || record.seq != entry.seq {
                return Err(Error::Corrupt {
                    key: where_(),
                    reason: format!(
                        "record says delegation `{}` seq {}",
                        record.delegation, record.seq
                    ),
                });
            }
            Ok(record)
        })
        .collect()
}

/// Whether a fold recomputes every chain hash.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Chain {
    /// Recompute and compare each record's hash: audit and export.
    Verify,
    /// Take each stored hash as the chain's: the ledger's reads (the bytes still
    /// pass their checksum, strict decoding, sequence, lifecycle and head checks).
    Trust,
}

/// Folds decoded records and checks the head against them.
///
/// # Errors
/// [`Error::Corrupt`] for a record the fold refuses, or a head that disagrees
/// with the records ([`head_disagrees`]).
pub(crate) fn fold_records(
    stream: &Stream,
    records: &[Record],
    chain: Chain,
    format: u8,
) -> Result<Fold> {
    let mut fold = match chain {
        Chain::Verify => Fold::new(stream.id.clone()),
        Chain::Trust => Fold::trusting(stream.id.clone()),
    };
    let mut previous = None;
    for record in records {
        let before = (fold.seq(), fold.hash());
        fold.apply(record).map_err(|violation| Error::Corrupt {
            key: format!("delegation `{}` seq {}", stream.id, record.seq),
            reason: violation.to_string(),
        })?;
        previous = Some(before);
    }
    match head_disagrees(stream, &fold, previous, format)? {
        None => Ok(fold),
        Some(reason) => Err(Error::Corrupt {
            key: format!("delegation `{}`", stream.id),
            reason,
        }),
    }
}

/// Why a stream's head disagrees with its folded records, if it does.
///
/// A head of format 2 was written with its record in one atomic write, so it
/// must describe exactly the delegation the records fold to: same state,
/// outcome, times, seq and hash. A head of format 1 was written after its
/// record, so it may lag by one (a process killed between the two, for a record
/// it never acknowledged), and a single record may have none. `previous` is the
/// (seq, hash) before the last record.
///
/// # Errors
/// [`Error::Corrupt`] for a head whose summary does not decode.
pub(crate) fn head_disagrees(
    stream: &Stream,
    fold: &Fold,
    previous: Option<(Seq, crate::event::ChainHash)>,
    format: u8,
) -> Result<Option<String>> {
    let last = (fold.seq(), fold.hash());
    let Some(head) = &stream.head else {
        let benign =
            stream.entries.is_empty() || (format < store::HEAD_FORMAT && stream.entries.len() == 1);
        return Ok((!benign).then(|| format!("no head, but the records reach seq {}", last.0)));
    };
    if head.seq > last.0 {
        return Ok(Some(format!(
            "the head says seq {}, but the records end at seq {}: records were lost",
            head.seq, last.0
        )));
    }
    // The usual case, without decoding the head: its bytes are exactly the head
    // the folded delegation encodes to (one byte form, so it would decode to
    // that delegation). Anything else is decoded below, and told field by field.
    if format >= store::HEAD_FORMAT
        && let Some(folded) = fold.delegation()
        && folded.seq == head.seq
        && envelope::head::is_encoding_of(&head.summary, folded)
    {
        return Ok(None);
    }
    let Some(said) = summary(&stream.id, head, format)? else {
        let hash = head.summary.as_slice();
        let at = |(seq, h): (Seq, crate::event::ChainHash)| seq == head.seq && h.0 == hash;
        return Ok((!at(last) && !previous.is_some_and(at)).then(|| {
            format!(
                "the head says seq {}, which does not match the records ending at seq {}",
                head.seq, last.0
            )
        }));
    };
    let folded = fold.delegation().map(|delegation| Delegation {
        task: None,
        ..delegation.clone()
    });
    if folded.is_none() {
        return Ok(Some(format!(
            "the head says seq {}, but there are no records",
            head.seq
        )));
    }
    let Some(folded) = folded.filter(|folded| *folded != said) else {
        return Ok(None);
    };
    Ok(Some(format!(
        "the head disagrees with the history ({}): the head says {} at seq {}, the \
         records say {} at seq {}",
        differences(&said, &folded).join(", "),
        describe(Some(&said)),
        said.seq,
        describe(Some(&folded)),
        last.0
    )))
}

/// The fields in which two summaries of one delegation differ.
fn differences(a: &Delegation, b: &Delegation) -> Vec<&'static str> {
    let fields = [
        ("state", a.state != b.state),
        ("outcome", a.outcome != b.outcome),
        ("seq", a.seq != b.seq),
        ("hash", a.hash != b.hash),
        ("queued_at", a.queued_at != b.queued_at),
        ("settled_at", a.settled_at != b.settled_at),
        ("source", a.source != b.source),
        ("target", a.target != b.target),
        ("retry_of", a.retry_of != b.retry_of),
        ("attempt", a.attempt != b.attempt),
        ("not_before", a.not_before != b.not_before),
    ];
    fields
        .into_iter()
        .filter_map(|(name, differs)| differs.then_some(name))
        .collect()
}

/// A delegation's state and outcome in a few words, for head findings.
fn describe(delegation: Option<&Delegation>) -> String {
    let Some(delegation) = delegation else {
        return "nothing".to_owned();
    };
    let status = delegation.status();
    match status.reason {
        Some(reason) => format!("{} ({reason})", delegation.state.as_str()),
        None => delegation.state.as_str().to_owned(),
    }
}

/// Group commit: writers that finish their appends while a flush runs share the
/// next one, so a burst of N durable writers costs about two flushes, not N.
#[derive(Default)]
struct GroupCommit {
    state: Mutex<Commit>,
    flushed: Condvar,
}

#[derive(Default)]
struct Commit {
    /// Appends completed so far; a write's ticket is this count after its append
    /// (after its group's, for appends written in a group).
    written: u64,
    /// Appends covered by a completed flush that reached the device.
    durable: u64,
    /// Appends covered by a completed flush of either level.
    flushed: u64,
    /// Whether a writer is flushing now.
    flushing: bool,
    /// Set forever by a failed flush.
    failed: Option<String>,
}

impl GroupCommit {
    fn lock(&self) -> MutexGuard<'_, Commit> {
        // The counters are updated under the lock in single assignments, so a
        // poisoned lock still guards consistent values.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits until a flush of at least `level` that started after this call has
    /// completed, running it if no one else is. Whatever was appended before the
    /// call is then durable at that level. Writers that arrive while a flush runs
    /// share the next one.
    fn wait(&self, store: &dyn Store, level: Durability) -> Result<()> {
        let ticket = self.appended(1);
        self.wait_for(ticket, store, level)
    }

    /// Counts `appends` just written, and returns their ticket: a flush that
    /// starts from now on covers them. A group of appends written together gets
    /// one ticket, so the first of its writers to wait flushes them all.
    fn appended(&self, appends: u64) -> u64 {
        let mut commit = self.lock();
        commit.written = commit.written.saturating_add(appends);
        commit.written
    }

    /// Waits until a flush of at least `level` covers the appends of `ticket`,
    /// running it if no one else is. Writers that arrive while a flush runs share
    /// the next one.
    fn wait_for(&self, ticket: u64, store: &dyn Store, level: Durability) -> Result<()> {
        let commit = self.lock();
        self.until(commit, ticket, store, level)
    }

    fn until<'a>(
        &'a self,
        mut commit: MutexGuard<'a, Commit>,
        ticket: u64,
        store: &dyn Store,
        level: Durability,
    ) -> Result<()> {
        let synced = level == Durability::Durable;
        loop {
            if let Some(cause) = &commit.failed {
                return Err(Error::Poisoned {
                    cause: cause.clone(),
                });
            }
            let covered = if synced {
                commit.durable
            } else {
                commit.flushed
            };
            if covered >= ticket {
                return Ok(());
            }
            if commit.flushing {
                commit = self.flushed.wait(commit).unwrap_or_else(|p| p.into_inner());
                continue;
            }
            commit.flushing = true;
            let covers = commit.written;
            drop(commit);
            let result = if synced {
                store.flush()
            } else {
                store.flush_crash_safe()
            };
            commit = self.lock();
            commit.flushing = false;
            match result {
                Ok(()) => {
                    commit.flushed = commit.flushed.max(covers);
                    if synced {
                        commit.durable = commit.durable.max(covers);
                    }
                }
                Err(error) => {
                    commit.failed = Some(error.to_string());
                    self.flushed.notify_all();
                    return Err(error);
                }
            }
            self.flushed.notify_all();
        }
    }
}
