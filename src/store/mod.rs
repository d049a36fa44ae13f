//! Where records live: a small trait and its implementations.
//!
//! A [`Store`] keeps opaque bytes under (delegation, seq) and knows nothing of
//! events or lifecycles; the [`Ledger`](crate::Ledger) decides what may be written.
//! Beside its records, each delegation has a **head**: the seq of its last record
//! and an opaque summary the ledger writes with it (state, outcome, times, chain
//! hash), so that a status is one read. The trait is what the ledger needs and no
//! more:
//!
//! - [`Store::append`]: an atomic, conditional write of several keys: for each
//!   delegation of the group, its next record and its new head, all or nothing,
//!   each checked against the head its writer read;
//! - [`Store::head`]: one get ([`Store::read_head`] lends the head instead of
//!   copying it, where the store can);
//! - [`Store::history`] and [`Store::scan`]: a read of one delegation, or a scan
//!   of all of them, each delegation read whole and in step with its head (on
//!   sled's format 3, one key holds a delegation's head and records);
//!   [`Store::scan_lent`] is the scan with each delegation lent as the store
//!   read it ([`Lent`]), for replay, which reads it in place;
//! - [`Store::flush`], for durability;
//! - [`Store::index`], hints beside the log of what is open, dead and retried
//!   ([`Index`]), written before the appends they describe (or with them, on a
//!   store that says [`Store::hints_with_appends`]) and verified against the
//!   heads by every reader, so that `pending` and `dead` need no scan;
//! - [`Store::remote`], which tells the ledger that reads cost a round trip,
//!   so that it writes on the heads it remembers.
//!
//! Implementations:
//! - [`Sled`]: the default, on disk.
//! - [`Memory`]: in memory, for tests and short-lived use.
//! - [`Faulty`]: in memory with seeded faults (failed writes and flushes, crashes,
//!   torn writes), for deterministic crash tests.
//!
//! - [`Postgres`] (feature `postgres`): on a PostgreSQL server, for several
//!   processes sharing one ledger: `append` is one transaction that raises each
//!   head with a conditional update and inserts each record under a unique
//!   (delegation, seq). It is the one store with [`Store::ownership`]: leases
//!   and claims, so that several dispatchers can share it.

mod faulty;
pub mod index;
mod memory;
pub mod ownership;
#[cfg(feature = "postgres")]
pub mod postgres;
pub mod sled;
mod stripes;
pub(crate) mod thread;

use std::fmt;

pub use self::faulty::{Fault, Faulty};
pub use self::index::{Hint, Index};
pub use self::memory::Memory;
pub use self::ownership::{Claimed, Owner, Ownership};
#[cfg(feature = "postgres")]
pub use self::postgres::{
    Connect, DEFAULT_CONNECTIONS, MAX_CONNECTIONS, Postgres, PostgresError, STATEMENT_TIMEOUT,
};
pub use self::sled::Sled;
pub(crate) use self::stripes::Stripes;
use crate::error::{Error, ReadError, Result, StorageError};
use crate::event::{DelegationId, Seq};

/// The format of the heads every store of this crate writes ([`Store::format`]):
/// each head holds its delegation's summary, written atomically with its record.
pub const HEAD_FORMAT: u8 = 2;

/// What the writer believes a delegation's head to be when it appends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Expect {
    /// The delegation has no head (no records): the append is seq 1.
    Empty,
    /// The delegation's head is at this seq: the append is seq + 1.
    At(Seq),
}

impl Expect {
    /// The seq the append will have.
    pub fn next(self) -> Seq {
        match self {
            Expect::Empty => 1,
            Expect::At(seq) => seq.saturating_add(1),
        }
    }

    /// The expectation for a delegation whose last seq is `seq` (0 for none).
    pub fn after(seq: Seq) -> Self {
        if seq == 0 {
            Expect::Empty
        } else {
            Expect::At(seq)
        }
    }

    /// The head seq this expects, `None` for no head.
    pub fn seq(self) -> Option<Seq> {
        match self {
            Expect::Empty => None,
            Expect::At(seq) => Some(seq),
        }
    }
}

impl fmt::Display for Expect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expect::Empty => f.write_str("no records"),
            Expect::At(seq) => write!(f, "head at seq {seq}"),
        }
    }
}

/// A delegation's head as a store keeps it: the seq of the record it was written
/// with, and the ledger's summary of the delegation at that record.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Head {
    /// The seq of the record written with this head.
    pub seq: Seq,
    /// The ledger's encoded summary (opaque to the store). In a store of format 1,
    /// which kept no summary, the 32 bytes of the last record's chain hash.
    pub summary: Vec<u8>,
}

impl Head {
    /// The head's stored value: big-endian seq, then the summary.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(8 + self.summary.len());
        out.extend_from_slice(&self.seq.to_be_bytes());
        out.extend_from_slice(&self.summary);
        out
    }

    /// The inverse of [`Head::encode`]; `None` for fewer than 8 bytes.
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        let (seq, summary) = bytes.split_first_chunk::<8>()?;
        Some(Head {
            seq: u64::from_be_bytes(*seq),
            summary: summary.to_vec(),
        })
    }
}

/// One stored record, still encoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The seq from the record's key.
    pub seq: Seq,
    /// The encoded record (see [`envelope`](crate::envelope)).
    pub bytes: Vec<u8>,
}

/// One delegation's stored records, in seq order, with its head.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stream {
    /// The delegation.
    pub id: DelegationId,
    /// Its records, in key order.
    pub entries: Vec<Entry>,
    /// Its head, if the store has one.
    pub head: Option<Head>,
}

impl Stream {
    /// Whether the head and the last record were written together: the head's seq
    /// is the last record's (or there is neither).
    pub fn in_step(&self) -> bool {
        self.head.as_ref().map(|head| head.seq) == self.entries.last().map(|entry| entry.seq)
    }
}

/// One delegation as [`Store::scan_lent`] gives it: what the store read, lent
/// as the store holds it (sled's own buffers, in the sled store) instead of
/// copied into a [`Stream`]. [`Lent::view`] reads it in place;
/// [`Lent::into_stream`] gives the [`Stream`] that [`Store::scan`] gives, with
/// the same errors.
#[derive(Debug)]
pub struct Lent(Lending);

#[derive(Debug)]
enum Lending {
    /// Read whole, as [`Store::scan`] reads it.
    Stream(Stream),
    /// A key and value of sled's format 3 or 4, as sled lends them: not yet
    /// parsed or copied.
    Value {
        key: ::sled::IVec,
        value: ::sled::IVec,
    },
}

impl From<Stream> for Lent {
    fn from(stream: Stream) -> Self {
        Lent(Lending::Stream(stream))
    }
}

impl Lent {
    /// A delegation's key and value in sled's format 3 or 4.
    pub(crate) fn value(key: ::sled::IVec, value: ::sled::IVec) -> Self {
        Lent(Lending::Value { key, value })
    }

    /// The delegation read in place: its id, head and records borrowed from what
    /// the store read. `None` if its key or the framing of its value is damaged
    /// (then [`Lent::into_stream`] gives the error).
    pub fn view(&self) -> Option<StreamRef<'_>> {
        match &self.0 {
            Lending::Stream(stream) => Some(StreamRef {
                id: stream.id.as_str(),
                head: stream
                    .head
                    .as_ref()
                    .map(|head| (head.seq, head.summary.as_slice())),
                records: Records::Entries(&stream.entries),
            }),
            Lending::Value { key, value } => {
                let id = key::parse_head_lent(key)?;
                let parsed = self::sled::value::parse_lent(value)?;
                Some(StreamRef {
                    id,
                    head: Some((parsed.seq, parsed.summary)),
                    records: Records::Frames(parsed.frames()),
                })
            }
        }
    }

    /// The delegation as [`Store::scan`] gives it.
    ///
    /// # Errors
    /// As for the item of [`Store::scan`]: [`ReadError::Corrupt`] for a key or
    /// a value that does not parse.
    pub fn into_stream(self) -> Result<Stream, ReadError> {
        match self.0 {
            Lending::Stream(stream) => Ok(stream),
            Lending::Value { key, value } => self::sled::stream_of(&key, &value),
        }
    }
}

/// One delegation's stored records and head, borrowed from what the store read
/// ([`Lent::view`]).
#[derive(Clone, Debug)]
pub struct StreamRef<'a> {
    /// The delegation's id, checked as a [`DelegationId`] is.
    pub id: &'a str,
    /// Its head's seq and summary, if it has one.
    pub head: Option<(Seq, &'a [u8])>,
    records: Records<'a>,
}

impl<'a> StreamRef<'a> {
    /// Its records, in key order, each with the seq of its key.
    pub fn records(&self) -> impl Iterator<Item = (Seq, &'a [u8])> + use<'a> {
        self.records.clone()
    }
}

/// The records of a [`StreamRef`].
#[derive(Clone, Debug)]
enum Records<'a> {
    Entries(&'a [Entry]),
    Frames(self::sled::value::Frames<'a>),
}

impl<'a> Iterator for Records<'a> {
    type Item = (Seq, &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        match self {
            Records::Entries(entries) => {
                let (entry, rest) = entries.split_first()?;
                *entries = rest;
                Some((entry.seq, entry.bytes.as_slice()))
            }
            Records::Frames(frames) => frames.next(),
        }
    }
}

/// One append of a group written by [`Store::append`]: `record` as seq
/// `expect.next()` of `id`, and `head` as its new head summary.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Append<'a> {
    /// The delegation.
    pub id: &'a DelegationId,
    /// What the writer believes its head to be.
    pub expect: Expect,
    /// The encoded record.
    pub record: &'a [u8],
    /// The encoded summary of the new head.
    pub head: &'a [u8],
}

/// Why [`Store::append`] wrote nothing.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AppendError {
    /// A delegation's head is not what its writer read: another writer appended
    /// first. Read the head again and decide again.
    #[error("delegation `{id}`: expected {expected}, found head {actual:?}")]
    Conflict {
        /// The delegation.
        id: DelegationId,
        /// The head the writer expected.
        expected: Expect,
        /// The head's seq found, `None` for no head.
        actual: Option<Seq>,
    },
    /// The checks before the write found damage: a record already in the slot
    /// the head says is free, or no record where the head says the last one is.
    /// Nothing was written.
    #[error("delegation `{id}` seq {seq}: {reason}")]
    Damaged {
        /// The delegation.
        id: DelegationId,
        /// The seq whose slot is wrong.
        seq: Seq,
        /// What is wrong with it.
        reason: String,
    },
    /// The store failed. A write that failed part way may have left some of its
    /// keys visible that a crash would undo: the caller must treat the store as
    /// suspect (the ledger poisons itself). A store that refuses every write
    /// ([`Error::NeedsMigration`]) says so here
    /// too, before writing anything.
    #[error(transparent)]
    Store(#[from] Error),
    /// The store failed before any of the group reached it: it could not be
    /// reached, or it said it never ran the write. Nothing was written, and
    /// the store is as sound as it was, so the ledger passes the error on
    /// without poisoning itself. (A PostgreSQL server that is down.)
    #[error(transparent)]
    Unsent(Error),
    /// The write reached the store and failed there, and the store knows that
    /// nothing of the group was written: the server refused or cancelled it
    /// (a statement timeout), or, when the connection failed with the write
    /// in flight, the store made sure on a new connection that it was not
    /// written (the PostgreSQL store does so). The store is as
    /// sound as it was, so the ledger passes the error on without poisoning
    /// itself.
    #[error(transparent)]
    Undone(Error),
    /// The claim [`Store::append_claimed`] was to write with the group is held
    /// by another owner whose lease is live ([`Claimed::Taken`]): the id is in
    /// use. Nothing was written, claim included.
    #[error("delegation `{id}` is claimed by another dispatcher whose lease is live")]
    Claimed {
        /// The delegation.
        id: DelegationId,
    },
    /// The owner [`Store::append_claimed`] was to claim for has no live lease
    /// ([`Claimed::LeaseExpired`]). Nothing was written, claim included.
    #[error("the owner's lease ran out before it could claim `{id}`")]
    LeaseExpired {
        /// The delegation it was claiming.
        id: DelegationId,
    },
}

/// What [`Store::read_head`] lends a head to: its seq and summary, borrowed.
pub type LentHead<'a> = dyn FnMut(Seq, &[u8]) -> Result<(), ReadError> + 'a;

/// The storage behind a ledger.
///
/// Implementations must be safe to call from many threads, and `append` must be
/// atomic: of several appends with the same expectation, at most one succeeds.
pub trait Store: Send + Sync + 'static {
    /// Writes every append of `appends`, all or nothing. Each is checked against
    /// its own expectation (in order, so a group may append twice to one
    /// delegation): the delegation's head must be at `expect`, the record the
    /// head names must be there, and the record slot `expect.next()` must be free.
    /// If any check fails, nothing is written. A crash keeps all of the group or
    /// none of it, records and heads together. An empty group writes nothing.
    ///
    /// # Errors
    /// [`AppendError::Conflict`] for the first append whose delegation's head is
    /// not its expectation; [`AppendError::Damaged`] if its records are not where
    /// its head says; [`AppendError::Store`] if the write failed,
    /// [`AppendError::Unsent`] if it failed before anything reached the store,
    /// or [`AppendError::Undone`] if it failed and the store knows that nothing
    /// of it was written.
    /// Nothing is written by a refused or unsent group; a failed write may have
    /// written part of it.
    fn append(&self, appends: &[Append<'_>]) -> Result<(), AppendError>;

    /// [`Store::append`], with the index changes that describe the group made
    /// in the same atomic write: `hints` are written and `stale` removed if and
    /// only if the appends are. The ledger calls it with hints only on a store
    /// that says [`Store::hints_with_appends`]; it writes the hints of any
    /// other store around the append ([`Index::hint`], [`Index::unhint`]), and
    /// passes none here. The default ignores the hints and appends, which is
    /// right for every store that does not say so. A store overrides both
    /// methods or neither (a wrapper forwards both or neither).
    ///
    /// A removed [`Hint::Open`] in `stale` means the group settles that
    /// delegation: the ledger removes an open hint only with the write that
    /// settles it, and a store may rely on it (PostgreSQL ends the settled
    /// delegation's claim in the same write:
    /// [`Ownership::settlement_releases`]). Pass none for any other reason.
    ///
    /// # Errors
    /// As for [`Store::append`]; nothing of a refused group is written, hints
    /// included.
    fn append_hinted(
        &self,
        appends: &[Append<'_>],
        hints: &[Hint],
        stale: &[Hint],
    ) -> Result<(), AppendError> {
        let _ = (hints, stale);
        self.append(appends)
    }

    /// [`Store::append_hinted`], with `owner`'s claim on each delegation the
    /// group starts (each append that expects [`Expect::Empty`]: its first
    /// record, a `queued`) in the same atomic write, as
    /// [`Ownership::claim`] would take it: a free claim, one already the
    /// owner's, or one whose owner's lease ran out becomes `owner`'s. (One
    /// exception: a claim another owner commits while this write runs, too late
    /// for it to see, also becomes `owner`'s. That owner's own `queued` then
    /// loses the race for the head, and its release ends only its own claim.) The
    /// claims and the appends commit together or not at all, so a `queued`
    /// written so always has its claim.
    ///
    /// The ledger calls it only on a store that says
    /// [`Store::claims_with_appends`], in place of an [`Ownership::claim`]
    /// before the append. The default claims nothing and is
    /// [`Store::append_hinted`]. A store overrides both methods or neither.
    ///
    /// # Errors
    /// [`AppendError::LeaseExpired`] if `owner`'s lease is not live;
    /// [`AppendError::Claimed`] if another owner with a live lease claims a
    /// delegation the group starts; otherwise as for
    /// [`Store::append_hinted`]. Nothing of a refused group is written, claims
    /// included.
    fn append_claimed(
        &self,
        appends: &[Append<'_>],
        hints: &[Hint],
        stale: &[Hint],
        owner: Owner,
    ) -> Result<(), AppendError> {
        let _ = owner;
        self.append_hinted(appends, hints, stale)
    }

    /// Whether this store writes claims with its appends
    /// ([`Store::append_claimed`]): then the ledger hands a new delegation's
    /// claim to the append of its `queued` ([`Ledger::queue_leased`]) instead of
    /// an [`Ownership::claim`] of its own before it. `false` by default.
    ///
    /// [`Ledger::queue_leased`]: crate::Ledger::queue_leased
    fn claims_with_appends(&self) -> bool {
        false
    }

    /// Whether this store writes the index's hints of an append in the append
    /// itself, atomically with it ([`Store::append_hinted`]): then the ledger
    /// hands them to the append instead of calling [`Index::hint`] before it
    /// and [`Index::unhint`] after it, and a hint is there exactly when its
    /// append is (the [`Index`] contract, held the stronger). `false` by
    /// default, and for any store without an index.
    fn hints_with_appends(&self) -> bool {
        false
    }

    /// Whether each call is a round trip to a server that other processes
    /// share, such as PostgreSQL. Then a ledger writes on the heads it wrote
    /// last itself, without reading them again, and a new delegation's first
    /// record without reading that it has none: the append checks the head it
    /// expects in the same write, so a guess gone stale is refused as a lost
    /// race, and the ledger reads the head and decides again. `false` (the
    /// default) for a store in this process, whose reads cost less than a copy
    /// kept beside them would.
    fn remote(&self) -> bool {
        false
    }

    /// `id`'s head, one read; `None` if it has none.
    ///
    /// # Errors
    /// [`ReadError::Storage`], or [`ReadError::Corrupt`] for a head too short
    /// to hold its seq.
    fn head(&self, id: &DelegationId) -> Result<Option<Head>, ReadError>;

    /// `id`'s head, one read, lent to `read` as its seq and summary instead of
    /// copied out: what `status` reads. `Ok(None)` if it has none (and `read` is
    /// not called); otherwise what `read` returned. The default reads
    /// [`Store::head`]; a store that can lend its own buffer does.
    ///
    /// # Errors
    /// As for [`Store::head`], or what `read` returned.
    fn read_head(
        &self,
        id: &DelegationId,
        read: &mut LentHead<'_>,
    ) -> Result<Option<()>, ReadError> {
        match self.head(id)? {
            Some(head) => read(head.seq, &head.summary).map(Some),
            None => Ok(None),
        }
    }

    /// One delegation's records and head, read in step: no append of its writers
    /// is half seen. Empty if it has none.
    ///
    /// # Errors
    /// [`ReadError::Storage`], or [`ReadError::Corrupt`] for keys that do not
    /// parse.
    fn history(&self, id: &DelegationId) -> Result<Stream, ReadError>;

    /// Every delegation, one at a time, in the store's order, each as
    /// [`Store::history`] would read it. A damaged key gives an error item, and the
    /// scan goes on past it.
    fn scan(&self) -> Box<dyn Iterator<Item = Result<Stream, ReadError>> + Send + '_>;

    /// [`Store::scan`], each delegation lent as the store read it instead of
    /// copied out ([`Lent`]): what replay reads, in place. The same
    /// delegations in the same order, with the same error items. The default
    /// lends what [`Store::scan`] reads; a store that can lend its own buffers
    /// does.
    fn scan_lent(&self) -> Box<dyn Iterator<Item = Result<Lent, ReadError>> + Send + '_> {
        Box::new(self.scan().map(|stream| stream.map(Lent::from)))
    }

    /// Makes every append so far durable on the device: it survives a process
    /// crash and a power cut. ([`Durability::Durable`](crate::Durability))
    ///
    /// # Errors
    /// A storage error; the caller must then treat unflushed appends as lost.
    fn flush(&self) -> Result<()>;

    /// Makes every append so far survive a crash of this process, but not
    /// necessarily a power cut: handed to the operating system, not synced to the
    /// device. ([`Durability::CrashSafe`](crate::Durability)) A store that cannot
    /// tell the two apart does the full [`Store::flush`], which is never weaker.
    ///
    /// # Errors
    /// As for [`Store::flush`].
    fn flush_crash_safe(&self) -> Result<()> {
        self.flush()
    }

    /// The format the store's heads are in: 2 ([`HEAD_FORMAT`]), where each head
    /// holds its delegation's summary and was written atomically with its
    /// record; or 1, for a sled store awaiting [`Sled::migrate`], whose heads
    /// hold only the last chain hash, were written after their records, and may
    /// lag by one. (A sled store's own format, the layout of its trees, is
    /// [`Sled::store_format`].)
    fn format(&self) -> u8 {
        HEAD_FORMAT
    }

    /// Leases and claims, for a store that several processes share
    /// ([`Ownership`]); `None` (the default) for a store one process holds at a
    /// time, where the ledger's in-process claims say what is live.
    fn ownership(&self) -> Option<&dyn Ownership> {
        None
    }

    /// The store's index of open, dead and retried delegations ([`Index`]), or
    /// `None` (the default) for a store that keeps none: then the ledger
    /// answers `pending`, `dead` and the forward links of a chain by a scan,
    /// which is slower and just as right. A store that keeps an index must have
    /// a hint for every append written since it was created (or migrated):
    /// a store written without hints, by an older crate, keeps none until it is
    /// migrated.
    fn index(&self) -> Option<&dyn Index> {
        None
    }
}

impl AppendError {
    /// The damage of a record slot that is taken though the head says it is free.
    pub(crate) fn occupied(id: &DelegationId, seq: Seq) -> Self {
        AppendError::Damaged {
            id: id.clone(),
            seq,
            reason: "a record is stored beyond the head: the head was lost or the record \
                 was never acknowledged"
                .to_owned(),
        }
    }

    /// The damage of a head whose last record is not there.
    pub(crate) fn missing(id: &DelegationId, seq: Seq) -> Self {
        AppendError::Damaged {
            id: id.clone(),
            seq,
            reason: "the head says this is the last record, and it is not there: records \
                 were lost"
                .to_owned(),
        }
    }
}

impl From<StorageError> for AppendError {
    fn from(error: StorageError) -> Self {
        AppendError::Store(error.into())
    }
}

impl From<AppendError> for Error {
    fn from(error: AppendError) -> Self {
        match error {
            AppendError::Conflict { id, .. } => Error::Conflict { id, attempts: 1 },
            AppendError::Damaged { id, seq, reason } => Error::Corrupt {
                key: format!("delegation `{id}` seq {seq}"),
                reason,
            },
            AppendError::Store(error) | AppendError::Unsent(error) | AppendError::Undone(error) => {
                error
            }
            AppendError::Claimed { id } => Error::Claimed { id },
            AppendError::LeaseExpired { id } => Error::LeaseExpired { id },
        }
    }
}

/// Key layout shared by the stores: `u16` big-endian id length, then the id's
/// bytes ([`key::prefix`]): in sled's format 3, a delegation's one key, and in
/// format 1 the key of its head. Formats 1 and 2 keyed each record by the prefix
/// and its `u64` big-endian seq ([`key::record`]), format 2 its head by seq 0
/// ([`key::head`]). The length prefix keeps `ab` from matching the prefix of
/// `abc`; big-endian seqs keep a delegation's records in order, after its head.
///
/// Not part of the crate's API: public, and hidden from its documentation, for
/// the crate's own tests, which read and damage stored keys directly.
#[doc(hidden)]
pub mod key {
    use crate::event::{DelegationId, MAX_ID_LEN, Seq};

    /// The key of `id` in sled's format 3 (its one key, holding its head and
    /// records); in formats 1 and 2, the prefix shared by every record of `id`
    /// and its head (and, in format 1, the key of its head in the heads tree).
    pub fn prefix(id: &DelegationId) -> Vec<u8> {
        let bytes = id.as_str().as_bytes();
        let mut out = Vec::with_capacity(2 + bytes.len() + 8);
        // Ids are at most 256 bytes, so the length always fits in a u16.
        let len = u16::try_from(bytes.len()).unwrap_or(u16::MAX);
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(bytes);
        out
    }

    /// [`prefix`] of `id`, written into `buf` instead of a new buffer: the
    /// bytes of `buf` it fills. (An id is at most 256 bytes, so its key fits.)
    pub fn prefix_in<'b>(id: &DelegationId, buf: &'b mut [u8; 2 + MAX_ID_LEN]) -> &'b [u8] {
        let bytes = id.as_str().as_bytes();
        let len = u16::try_from(bytes.len()).unwrap_or(u16::MAX);
        let end = 2 + bytes.len().min(MAX_ID_LEN);
        if let Some((head, rest)) = buf.split_first_chunk_mut::<2>() {
            *head = len.to_be_bytes();
            let n = bytes.len().min(rest.len());
            if let (Some(to), Some(from)) = (rest.get_mut(..n), bytes.get(..n)) {
                to.copy_from_slice(from);
            }
        }
        buf.get(..end).unwrap_or_default()
    }

    /// The key of `id`'s head: its prefix and seq 0, which no record has, so a
    /// prefix scan meets the head first and then the records in order.
    pub fn head(id: &DelegationId) -> Vec<u8> {
        record(id, 0)
    }

    /// The key of record `seq` of `id`.
    pub fn record(id: &DelegationId, seq: Seq) -> Vec<u8> {
        let mut out = prefix(id);
        out.extend_from_slice(&seq.to_be_bytes());
        out
    }

    /// Splits a record key into id and seq.
    ///
    /// # Errors
    /// A description of what is wrong with the key.
    pub fn parse(key: &[u8]) -> Result<(DelegationId, Seq), String> {
        let (len, rest) = key
            .split_first_chunk::<2>()
            .ok_or_else(|| "key shorter than its length prefix".to_owned())?;
        let len = usize::from(u16::from_be_bytes(*len));
        if len == 0 || len > MAX_ID_LEN {
            return Err(format!("id length {len} outside 1..={MAX_ID_LEN}"));
        }
        let (id, seq) = rest
            .split_at_checked(len)
            .ok_or_else(|| "key shorter than its id".to_owned())?;
        let seq: [u8; 8] = seq
            .try_into()
            .map_err(|_| format!("seq field is {} bytes, not 8", seq.len()))?;
        let id = std::str::from_utf8(id).map_err(|e| format!("id is not UTF-8: {e}"))?;
        let id = DelegationId::try_from(id).map_err(|e| e.to_string())?;
        Ok((id, u64::from_be_bytes(seq)))
    }

    /// Parses a key that is a prefix without a seq: a format 3 delegation's key,
    /// or a format 1 head's.
    ///
    /// # Errors
    /// A description of what is wrong with the key.
    pub fn parse_head(key: &[u8]) -> Result<DelegationId, String> {
        let (len, id) = key
            .split_first_chunk::<2>()
            .ok_or_else(|| "head key shorter than its length prefix".to_owned())?;
        if usize::from(u16::from_be_bytes(*len)) != id.len() {
            return Err("head key length prefix does not match".to_owned());
        }
        let id = std::str::from_utf8(id).map_err(|e| format!("id is not UTF-8: {e}"))?;
        DelegationId::try_from(id).map_err(|e| e.to_string())
    }

    /// The id of a key that is a prefix without a seq, borrowed from it: `None`
    /// exactly where [`parse_head`] gives an error (the id it gives is this
    /// text).
    pub fn parse_head_lent(key: &[u8]) -> Option<&str> {
        let (len, id) = key.split_first_chunk::<2>()?;
        if usize::from(u16::from_be_bytes(*len)) != id.len() {
            return None;
        }
        let id = std::str::from_utf8(id).ok()?;
        crate::event::rules::id(id).ok()?;
        Some(id)
    }

    /// Lowercase hex of a raw key, for error messages.
    pub fn hex(key: &[u8]) -> String {
        key.iter().map(|b| format!("{b:02x}")).collect()
    }
}
