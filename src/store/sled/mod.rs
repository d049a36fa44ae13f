//! The default store, on sled.
//!
//! Format 3 keeps each delegation under one key of the tree `delegations`: its
//! length-prefixed id ([`key::prefix`]), whose value is its head (seq and the
//! ledger's summary) followed by its records, framed, in seq order (see
//! [`value`]). A delegation holds a few records (queued, then delivered or
//! failed; a retry is a new delegation), so an append rewrites its value: under
//! the delegation's stripe lock (striped mutexes, which order its writers; sled's
//! file lock means one process, so that is every writer) it reads the value,
//! checks the writer's expectation against the head and the framing against the
//! head, and writes the old records, the new record and the new head with one
//! `compare_and_swap` of that one key, atomic by itself: readers and recovery
//! see all of it or none. sled's `apply_batch` seals and writes its log buffer
//! before and after every batch (two device writes each); a single-key write
//! shares sled's log buffer with other writes, like any insert. Only an append
//! that spans several delegations (a retry writes its original's outcome and
//! its own `queued` together) is one `apply_batch` of their keys.
//!
//! Format 4 is format 3 and a tree `index`: the hints of [`Index`] (open,
//! dead, and forward links), each a plain single-key insert or removal, never
//! in a batch with an append. A hint is inserted before the append it describes
//! and an open hint removed after the append that settles it. That order is
//! enough, with no atomic write, because sled's recovery keeps a prefix of its
//! log: it never recovers a later write when an earlier one was lost ("we must
//! not recover the later segment when its predecessor was lost in the crash",
//! `sled-0.34.7/src/pagecache/segment.rs`, lines 30 to 55, its "unstable
//! tail"). Both trees share that one log, so whenever an append survives a
//! crash, the hint written before it survives too; a hint whose append was
//! lost, or whose removal was, is stale, and readers verify every hint against
//! the heads (see [`index`](super::index)). A store of format 3, written
//! without hints, opens for reading (the ledger then answers by scans) and
//! refuses writes with [`Error::NeedsMigration`] until [`Sled::migrate`] builds
//! its index, in one scan.
//!
//! A second tree, `meta`, holds the store's format, so that a store written by a
//! newer crate is refused at open rather than misread. Stores of format 1
//! (records and heads in two trees, `v1.rs`) and format 2 (records and heads
//! under their own keys in one tree, `log`, `v2.rs`) open for reading, and refuse
//! writes with [`Error::NeedsMigration`] until [`Sled::migrate`] rewrites them
//! in place.
//!
//! Beside sled's files, the store keeps `delegation-log.acked`: how many records
//! a completed flush has made durable, over the store's life (8 bytes big-endian,
//! then a CRC-32 of them). sled can lose whole delegations to damage in its files
//! without an error, records and heads together, which no chain or head can see;
//! an audit compares the records it finds with this count, so such a loss becomes a
//! finding. The count is written after the flush it describes and at most every
//! [`ACKED_INTERVAL`], so it may lag what is durable, never lead it.

mod acked;
mod index;
mod migrate;
mod open;
mod v1;
mod v2;
#[doc(hidden)]
pub mod value;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use self::acked::Acked;
pub use self::migrate::Migrated;
pub use self::open::LOCK_WAIT;
use super::index::Index;
use super::{Append, AppendError, Head, Lent, Store, Stream, Stripes, key};
use crate::error::{Error, OpenError, ReadError, Result, StorageError};
use crate::event::{DelegationId, MAX_ID_LEN, Seq};

const FORMAT_KEY: &[u8] = b"format";

/// The store format this crate writes (the marker in `meta`): one key per
/// delegation, in the tree `delegations`, and the hints of the tree `index`.
/// Formats 1, 2 and 3 are read, and migrated.
pub const FORMAT: u8 = 4;

/// The tree of formats 3 and 4.
const DELEGATIONS: &str = "delegations";

/// The tree format 4 adds to format 3.
const INDEX: &str = "index";

/// The file, inside the store's directory, that counts acknowledged records.
pub const ACKED_FILE: &str = "delegation-log.acked";

/// The longest the acknowledged count waits before it is rewritten after a flush.
pub const ACKED_INTERVAL: Duration = Duration::from_millis(100);

/// A store in a sled database on disk.
///
/// sled allows one open per path; a second open, in this process or another, gets
/// [`OpenError::Locked`]. Clone the [`Ledger`](crate::Ledger) to share it.
#[derive(Clone, Debug)]
pub struct Sled {
    db: sled::Db,
    layout: Layout,
    /// The tree `index`, in a store of format 4; `None` in older formats.
    index: Option<sled::Tree>,
    path: PathBuf,
    acked: Arc<Acked>,
    /// Orders the writers of one delegation, and lets a reader wait out a write.
    locks: Arc<Stripes>,
}

/// Where the store keeps its records: the format it was written in.
#[derive(Clone, Debug)]
enum Layout {
    /// Formats 3 and 4: one key per delegation (format 4 when the store has
    /// its index).
    Delegations(sled::Tree),
    /// Format 2: one tree, a key per record and one per head; read only.
    Log(v2::Log),
    /// Format 1: two trees, read only.
    Legacy(v1::Trees),
}

impl Sled {
    /// How many times durable flushes have synced sled's data file to the device
    /// (`File::sync_data`) since the store was opened: one per group commit.
    pub fn syncs(&self) -> u64 {
        self.acked.syncs.load(Ordering::SeqCst)
    }

    /// How many records completed flushes had made durable when the store was
    /// opened, by the count kept in [`ACKED_FILE`] (0 if there is none). A store
    /// that holds fewer records than this has lost some.
    pub fn acknowledged_at_open(&self) -> u64 {
        self.acked.base
    }

    /// The store's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Bytes on disk, as sled counts them.
    ///
    /// # Errors
    /// An I/O error.
    pub fn size_on_disk(&self) -> Result<u64> {
        self.db
            .size_on_disk()
            .map_err(|e| sled_error(e, &self.path))
    }
}

/// Maps a sled error to the crate's error.
fn sled_error(error: sled::Error, path: &Path) -> Error {
    match error {
        sled::Error::Io(io) if is_lock_failure(&io) => OpenError::Locked {
            path: path.to_path_buf(),
        }
        .into(),
        other => read_error(other).into(),
    }
}

/// Maps a sled error met in a read (where a lock is never taken) to the read's
/// error.
fn read_error(error: sled::Error) -> ReadError {
    match error {
        sled::Error::Io(io) => StorageError::from(io).into(),
        sled::Error::Corruption { at, .. } => ReadError::corrupt(
            format!("sled file offset {at:?}"),
            "sled reported corruption",
        ),
        other => StorageError::engine(other).into(),
    }
}

/// sled reports a held file lock as `WouldBlock`, wrapped in an `Other` error
/// whose text says it could not acquire the lock.
fn is_lock_failure(io: &std::io::Error) -> bool {
    io.kind() == std::io::ErrorKind::WouldBlock
        || io
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<std::io::Error>())
            .is_some_and(|inner| inner.kind() == std::io::ErrorKind::WouldBlock)
        || io.to_string().contains("could not acquire lock")
}

fn corrupt_key(raw: &[u8], reason: String) -> ReadError {
    ReadError::corrupt(format!("key {}", key::hex(raw)), reason)
}
impl Sled {
    /// The tree of format 4, or [`Error::NeedsMigration`] for an older store.
    fn delegations(&self) -> Result<&sled::Tree> {
        match (&self.layout, &self.index) {
            (Layout::Delegations(tree), Some(_)) => Ok(tree),
            _ => Err(Error::NeedsMigration {
                path: self.path.clone(),
                found: self.store_format(),
            }),
        }
    }

    /// The format of the store on disk, as its marker says: 4 (one key per
    /// delegation and an index, the one this crate writes), 3 (one key per
    /// delegation, no index), 2 (one tree, a key per record and per head) or 1
    /// (two trees). Formats 1 to 3 are read only.
    /// ([`Store::format`] is the format of the *heads*, which formats 2 to 4
    /// share.)
    pub fn store_format(&self) -> u8 {
        match self.layout {
            Layout::Delegations(_) if self.index.is_some() => FORMAT,
            Layout::Delegations(_) => 3,
            Layout::Log(_) => 2,
            Layout::Legacy(_) => 1,
        }
    }

    fn sled_error(&self, error: sled::Error) -> Error {
        sled_error(error, &self.path)
    }

    /// One append to one delegation: one `compare_and_swap` of its key.
    fn append_one(&self, tree: &sled::Tree, append: &Append<'_>) -> Result<(), AppendError> {
        let id = append.id;
        let key = key::prefix(id);
        let old = tree.get(&key).map_err(|e| self.sled_error(e))?;
        let new = next_value(id, old.as_deref(), append)?;
        let swapped = tree
            .compare_and_swap(&key, old.as_ref(), Some(new))
            .map_err(|e| self.sled_error(e))?;
        match swapped {
            Ok(()) => Ok(()),
            // Under the delegation's stripe no writer of this process can come
            // between the read and the swap, and sled's lock keeps out others;
            // should one have, it is a conflict, named by the head it wrote.
            Err(current) => Err(AppendError::Conflict {
                id: id.clone(),
                expected: append.expect,
                actual: current
                    .current
                    .map(|raw| value::head_seq(id, &raw))
                    .transpose()
                    .map_err(|e| damaged(id, 0, e))?,
            }),
        }
    }

    /// Appends to several delegations (or several times to one): one
    /// `apply_batch` of their keys.
    fn append_batch(&self, tree: &sled::Tree, appends: &[Append<'_>]) -> Result<(), AppendError> {
        let mut values: Vec<(&DelegationId, Vec<u8>, Vec<u8>)> = Vec::with_capacity(appends.len());
        for append in appends {
            let id = append.id;
            let new = match values.iter().position(|(written, _, _)| *written == id) {
                Some(at) => {
                    let (_, _, earlier) = values.swap_remove(at);
                    next_value(id, Some(&earlier), append)?
                }
                None => {
                    let old = tree.get(key::prefix(id)).map_err(|e| self.sled_error(e))?;
                    next_value(id, old.as_deref(), append)?
                }
            };
            values.push((id, key::prefix(id), new));
        }
        let mut batch = sled::Batch::default();
        for (_, key, value) in values {
            batch.insert(key, value);
        }
        tree.apply_batch(batch).map_err(|e| self.sled_error(e))?;
        Ok(())
    }
}

/// The value of `append`'s delegation after it, from the value `old` before it:
/// the expectation checked against the stored head, and the stored records
/// against the head.
fn next_value(
    id: &DelegationId,
    old: Option<&[u8]>,
    append: &Append<'_>,
) -> Result<Vec<u8>, AppendError> {
    let (actual, raw) = match old {
        Some(raw) => (
            Some(value::head_seq(id, raw).map_err(|e| damaged(id, 0, e))?),
            Some(raw),
        ),
        None => (None, None),
    };
    if actual != append.expect.seq() {
        return Err(AppendError::Conflict {
            id: id.clone(),
            expected: append.expect,
            actual,
        });
    }
    let next = append.expect.next();
    let records = match raw {
        None => &[][..],
        Some(raw) => {
            value::parse(id, raw)
                .map_err(|e| damaged(id, actual.unwrap_or(0), e))?
                .records
        }
    };
    Ok(value::encode(
        next,
        append.head,
        records,
        Some(append.record),
    ))
}

/// The damage found in a stored value before writing: [`AppendError::Damaged`]
/// at the head's `seq` (0 if the head does not decode); an unknown version is
/// passed on as itself.
fn damaged(id: &DelegationId, seq: Seq, error: ReadError) -> AppendError {
    match error {
        ReadError::Corrupt { reason, .. } => AppendError::Damaged {
            id: id.clone(),
            seq,
            reason: format!("the stored value is damaged: {reason}"),
        },
        other => AppendError::Store(other.into()),
    }
}

impl Store for Sled {
    fn append(&self, appends: &[Append<'_>]) -> Result<(), AppendError> {
        let tree = self.delegations()?;
        let _writing = self.locks.lock_all(appends.iter().map(|append| append.id));
        match appends {
            [] => return Ok(()),
            [one] => self.append_one(tree, one)?,
            many => self.append_batch(tree, many)?,
        }
        let count = u64::try_from(appends.len()).unwrap_or(u64::MAX);
        self.acked.appended.fetch_add(count, Ordering::SeqCst);
        Ok(())
    }

    fn head(&self, id: &DelegationId) -> Result<Option<Head>, ReadError> {
        match &self.layout {
            Layout::Delegations(tree) => tree
                .get(key::prefix(id))
                .map_err(read_error)?
                .map(|raw| value::head(id, &raw))
                .transpose(),
            Layout::Log(log) => log.head(id),
            Layout::Legacy(trees) => trees.head(id),
        }
    }

    fn read_head(
        &self,
        id: &DelegationId,
        read: &mut super::LentHead<'_>,
    ) -> Result<Option<()>, ReadError> {
        match &self.layout {
            // The summary is read where sled keeps it, in the value it lends.
            Layout::Delegations(tree) => {
                let mut buf = [0; 2 + MAX_ID_LEN];
                let Some(raw) = tree.get(key::prefix_in(id, &mut buf)).map_err(read_error)? else {
                    return Ok(None);
                };
                let (seq, summary) = value::head_ref(id, &raw)?;
                read(seq, summary).map(Some)
            }
            _ => match self.head(id)? {
                Some(head) => read(head.seq, &head.summary).map(Some),
                None => Ok(None),
            },
        }
    }

    fn history(&self, id: &DelegationId) -> Result<Stream, ReadError> {
        match &self.layout {
            // One key: a read sees an append whole or not at all.
            Layout::Delegations(tree) => {
                let raw = tree.get(key::prefix(id)).map_err(read_error)?;
                stream(id.clone(), raw.as_deref())
            }
            Layout::Log(log) => log.history(id),
            Layout::Legacy(trees) => trees.history(id),
        }
    }

    fn scan(&self) -> Box<dyn Iterator<Item = Result<Stream, ReadError>> + Send + '_> {
        match &self.layout {
            Layout::Delegations(tree) => Box::new(tree.iter().map(|item| {
                let (raw, value) = item.map_err(read_error)?;
                stream_of(&raw, &value)
            })),
            Layout::Log(log) => Box::new(log.scan()),
            Layout::Legacy(trees) => Box::new(trees.scan()),
        }
    }

    fn scan_lent(&self) -> Box<dyn Iterator<Item = Result<Lent, ReadError>> + Send + '_> {
        match &self.layout {
            // Each key and value as sled lends them: nothing is copied.
            Layout::Delegations(tree) => Box::new(tree.iter().map(|item| {
                let (raw, value) = item.map_err(read_error)?;
                Ok(Lent::value(raw, value))
            })),
            _ => Box::new(self.scan().map(|stream| stream.map(Lent::from))),
        }
    }

    fn flush(&self) -> Result<()> {
        self.acked.flush(false, true)
    }

    fn flush_crash_safe(&self) -> Result<()> {
        self.acked.flush(false, false)
    }

    fn format(&self) -> u8 {
        match self.layout {
            Layout::Delegations(_) | Layout::Log(_) => super::HEAD_FORMAT,
            Layout::Legacy(_) => 1,
        }
    }

    fn index(&self) -> Option<&dyn Index> {
        self.index.as_ref().map(|_| self as &dyn Index)
    }
}

/// The stream of a key and value of format 3 or 4, as [`Store::scan`] reads it.
pub(super) fn stream_of(raw: &[u8], value: &[u8]) -> Result<Stream, ReadError> {
    let id = key::parse_head(raw).map_err(|reason| corrupt_key(raw, reason))?;
    stream(id, Some(value))
}

/// The stream of `id` from its value, if it has one.
fn stream(id: DelegationId, raw: Option<&[u8]>) -> Result<Stream, ReadError> {
    let Some(raw) = raw else {
        return Ok(Stream {
            id,
            entries: Vec::new(),
            head: None,
        });
    };
    let (head, entries) = value::decode(&id, raw)?;
    Ok(Stream {
        id,
        entries,
        head: Some(head),
    })
}
