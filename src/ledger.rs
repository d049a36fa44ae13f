//! The ledger: the crate's public face over a [`Store`].
//!
//! Every write goes through [`Ledger::record`]: it folds the delegation's history,
//! builds the new record, asks the [`Fold`] (and through it the lifecycle machine)
//! whether the record may follow, and only then appends with the expected head. A
//! refused event writes nothing. Every read folds the same way, so `status`,
//! `history` and `replay` are derived from the log alone.

use std::path::Path;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};

use crate::clock::{Clock, SystemClock};
use crate::delegation::{Delegation, Fold, Status};
use crate::envelope;
use crate::error::{Error, Result};
use crate::event::{DelegationId, Event, Record, Seq, Timestamp};
use crate::lifecycle::State;
use crate::store::{self, Expect, Head, Store, Stream};

/// When `record` acknowledges an event.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Durability {
    /// After a flush covers it. Concurrent writers share one flush (group commit).
    /// What `record` acknowledged survives `kill -9` and power loss.
    #[default]
    Durable,
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
    poisoned: OnceLock<String>,
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
                poisoned: OnceLock::new(),
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
    /// # Errors
    /// - [`Error::IllegalTransition`], [`Error::AlreadySettled`] or
    ///   [`Error::InvalidEvent`] if the event is refused; nothing is written.
    /// - [`Error::Corrupt`] if the delegation's history is damaged; nothing is
    ///   written.
    /// - [`Error::Poisoned`] after an earlier write or flush failed.
    /// - A storage error if the write or flush fails; the ledger is then poisoned.
    pub fn record(&self, id: &DelegationId, event: Event) -> Result<Recorded> {
        self.check_poisoned()?;
        event.validate()?;
        let event = event.normalized();
        let mut conflicts = 0;
        let recorded = loop {
            let (_, fold) = self.read(id)?;
            let now = self.clock().now();
            let at = match fold.delegation() {
                Some(d) => now.max(d.settled_at.unwrap_or(d.queued_at)),
                None => now,
            };
            let mut record = Record {
                delegation: id.clone(),
                seq: fold.seq().saturating_add(1),
                event: event.clone(),
                at,
                hash: None,
            };
            // Checked before it has a hash, so the fold does not hash it a second
            // time to compare: the hash below is the chain's by construction.
            let state = fold.check(&record).map_err(|violation| match violation {
                crate::delegation::Violation::Illegal(refusal) => Error::refused(id, refusal),
                other => Error::Corrupt {
                    key: format!("delegation `{id}`"),
                    reason: other.to_string(),
                },
            })?;
            let hash = record.chain_hash(&fold.hash());
            record.hash = Some(hash);
            let head = Head {
                seq: record.seq,
                hash,
            };
            let bytes = envelope::encode(&record);
            match self
                .inner
                .store
                .append(id, Expect::after(fold.seq()), &bytes, head)
            {
                Ok(()) => {
                    break Recorded {
                        seq: record.seq,
                        at,
                        state,
                    };
                }
                Err(conflict @ Error::Conflict { .. }) => {
                    conflicts += 1;
                    if conflicts >= MAX_CONFLICTS {
                        return Err(conflict);
                    }
                }
                Err(error) => return Err(self.poison(error)),
            }
        };
        if self.inner.options.durability == Durability::Durable {
            self.inner
                .commit
                .wait(self.inner.store.as_ref())
                .map_err(|error| self.poison(error))?;
        }
        Ok(recorded)
    }

    /// Makes every acknowledged event durable now, whatever the durability mode.
    ///
    /// # Errors
    /// A storage error; the ledger is then poisoned.
    pub fn flush(&self) -> Result<()> {
        self.check_poisoned()?;
        self.inner
            .commit
            .wait(self.inner.store.as_ref())
            .map_err(|error| self.poison(error))
    }

    /// The status of delegation `id`; [`StatusKind::NotFound`](crate::StatusKind)
    /// if the log has never seen it.
    ///
    /// # Errors
    /// A storage error, or [`Error::Corrupt`] if its history is damaged.
    pub fn status(&self, id: &DelegationId) -> Result<Status> {
        Ok(match self.delegation(id)? {
            Some(delegation) => delegation.status(),
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
                    .and_then(|stream| match fold_stream(&stream) {
                        Err(_) if raced(&stream) => self.read(&stream.id),
                        result => result,
                    })
                    .map(|(_, fold)| fold.into_delegation())
                    .transpose()
            }))
    }

    /// Settles every delegation still `queued` as `failed` with reason
    /// [`FailureReason::Interrupted`](crate::FailureReason::Interrupted): the
    /// recovery for a process that died mid-delivery. Run it right after opening,
    /// before any delivery starts: the store's lock guarantees that whatever is
    /// pending then belonged to a dead process.
    ///
    /// A delegation that another writer settles meanwhile is left as it settled.
    ///
    /// # Errors
    /// A storage error; delegations settled before it stay settled. A damaged
    /// delegation does not keep the others queued: every readable one is settled
    /// first, then the first damage met is returned.
    pub fn recover(&self) -> Result<Vec<DelegationId>> {
        let mut pending = Vec::new();
        let mut damage = None;
        for delegation in self.replay() {
            match delegation {
                Ok(delegation) if delegation.state == State::Queued => pending.push(delegation),
                Ok(_) => {}
                Err(error) => {
                    damage.get_or_insert(error);
                }
            }
        }
        let mut settled = Vec::with_capacity(pending.len());
        for delegation in pending {
            let event = Event::Failed(crate::event::Failed {
                reason: crate::FailureReason::Interrupted,
                detail: Some("the process stopped before the outcome was known".to_owned()),
            });
            match self.record(&delegation.id, event) {
                Ok(_) => settled.push(delegation.id),
                Err(Error::AlreadySettled { .. }) => {}
                Err(error) => return Err(error),
            }
        }
        match damage {
            Some(error) => Err(error),
            None => Ok(settled),
        }
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

    /// Reads, decodes and folds one delegation: every read of the ledger goes
    /// through here. A store may read records and head apart (sled does), so a
    /// writer can slip a record and its head in between: the head then looks
    /// ahead of the records. The record is already there, so a second read sees
    /// it; only a head that stays ahead means loss.
    fn read(&self, id: &DelegationId) -> Result<(Vec<Record>, Fold)> {
        self.check_poisoned()?;
        let mut attempt = 0;
        loop {
            let stream = self.inner.store.history(id)?;
            match fold_stream(&stream) {
                Err(_) if raced(&stream) && attempt < READ_RETRIES => attempt += 1,
                result => return result,
            }
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
    fn poison(&self, error: Error) -> Error {
        let _ = self.inner.poisoned.set(error.to_string());
        error
    }
}

/// How many times a read is repeated when its head looks ahead of its records.
const READ_RETRIES: usize = 3;

/// Whether a stream's head is ahead of its records, as a concurrent append can
/// make it look.
fn raced(stream: &Stream) -> bool {
    let last = stream.entries.last().map_or(0, |entry| entry.seq);
    stream.head.is_some_and(|head| head.seq > last)
}

/// Decodes and folds a stream, checking its head.
fn fold_stream(stream: &Stream) -> Result<(Vec<Record>, Fold)> {
    let records = decode_stream(stream)?;
    let fold = fold_records(stream, &records)?;
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

/// Folds decoded records and checks the redundant head against the last one.
///
/// The head may lag the records by one: a process killed between appending a
/// record and raising the head leaves that, for a record it never acknowledged.
/// A head ahead of the records means records were lost.
pub(crate) fn fold_records(stream: &Stream, records: &[Record]) -> Result<Fold> {
    let mut fold = Fold::new(stream.id.clone());
    let mut previous = None;
    for record in records {
        let before = (fold.seq(), fold.hash());
        fold.apply(record).map_err(|violation| Error::Corrupt {
            key: format!("delegation `{}` seq {}", stream.id, record.seq),
            reason: violation.to_string(),
        })?;
        previous = Some(before);
    }
    let last = (fold.seq(), fold.hash());
    let head_ok = match stream.head {
        Some(head) => (head.seq, head.hash) == last || Some((head.seq, head.hash)) == previous,
        None => records.len() <= 1,
    };
    if !head_ok {
        let head = stream.head.map_or_else(
            || "no head".to_owned(),
            |h| format!("head at seq {}", h.seq),
        );
        return Err(Error::Corrupt {
            key: format!("delegation `{}`", stream.id),
            reason: format!(
                "{head}, but the records end at seq {}: records were lost or altered",
                fold.seq()
            ),
        });
    }
    Ok(fold)
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
    /// Appends completed so far; a writer's ticket is this count after its append.
    written: u64,
    /// Appends covered by a completed flush.
    durable: u64,
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

    /// Waits until a flush that started after this call has completed, running it
    /// if no one else is. Whatever was appended before the call is then durable.
    fn wait(&self, store: &dyn Store) -> Result<()> {
        let mut commit = self.lock();
        commit.written += 1;
        let ticket = commit.written;
        self.until(commit, ticket, store)
    }

    fn until<'a>(
        &'a self,
        mut commit: MutexGuard<'a, Commit>,
        ticket: u64,
        store: &dyn Store,
    ) -> Result<()> {
        loop {
            if let Some(cause) = &commit.failed {
                return Err(Error::Poisoned {
                    cause: cause.clone(),
                });
            }
            if commit.durable >= ticket {
                return Ok(());
            }
            if commit.flushing {
                commit = self.flushed.wait(commit).unwrap_or_else(|p| p.into_inner());
                continue;
            }
            commit.flushing = true;
            let covers = commit.written;
            drop(commit);
            let result = store.flush();
            commit = self.lock();
            commit.flushing = false;
            match result {
                Ok(()) => commit.durable = commit.durable.max(covers),
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
