//! The default store, on sled.
//!
//! Format 2 keeps everything in one tree, `log`: each delegation's head under
//! [`key::head`] (seq 0) and its records under [`key::record`], so a prefix scan
//! reads the head and then the history, and a record and its head are one
//! `apply_batch`, which sled seals as one batch in its log: recovery replays it
//! whole or not at all, and readers never see half of it (sled applies a batch
//! under its write lock). A per-id lock (striped mutexes) orders the writers of one
//! delegation between reading the head and writing the batch; sled's file lock
//! means one process, so that is every writer. A second tree, `meta`, holds the
//! store's format, so that a store written by a newer crate is refused at open
//! rather than misread.
//!
//! A store of format 1 (records and heads in two trees) opens for reading, its
//! records upcast as they are read, and refuses writes with
//! [`Error::NeedsMigration`] until [`Sled::migrate`] rewrites it in place.
//!
//! Beside sled's files, the store keeps `delegation-log.acked`: how many records
//! a completed flush has made durable, over the store's life (8 bytes big-endian,
//! then a CRC-32 of them). sled can lose whole delegations to damage in its files
//! without an error, records and heads together, which no chain or head can see;
//! an audit compares the records it finds with this count, so such a loss becomes a
//! finding. The count is written after the flush it describes and at most every
//! [`ACKED_INTERVAL`], so it may lag what is durable, never lead it.

mod acked;
mod legacy;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use self::acked::Acked;
use super::{Append, AppendError, Entry, Head, Store, Stream, Stripes, key};
use crate::error::{Error, OpenError, Result, StorageError};
use crate::event::{DelegationId, Seq};

const FORMAT_KEY: &[u8] = b"format";

/// The store format this crate writes: one tree, heads at seq 0.
pub const FORMAT: u8 = 2;

/// The tree of format 2.
const LOG: &str = "log";

/// How long an open waits for a lock that a just-closed handle still holds before
/// it reports [`OpenError::Locked`].
pub const LOCK_WAIT: Duration = Duration::from_secs(2);

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
    path: PathBuf,
    acked: Arc<Acked>,
    /// Orders the writers of one delegation, and lets a reader wait out a write.
    locks: Arc<Stripes>,
}

/// Where the store keeps its records: the format it was written in.
#[derive(Clone, Debug)]
enum Layout {
    /// Format 2: one tree.
    Log(sled::Tree),
    /// Format 1: two trees, read only.
    Legacy(legacy::Trees),
}

impl Sled {
    /// Opens (or creates) the store at `path`.
    ///
    /// # Errors
    /// [`OpenError::Locked`] if the path is still open after [`LOCK_WAIT`]; [`OpenError::Panicked`] if
    /// sled panicked on damaged files; [`Error::UnknownVersion`] for a store written
    /// in a newer format; an I/O error otherwise.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        Self::open_with_cache(path, Self::DEFAULT_CACHE_BYTES)
    }

    /// Opens the store at `path` only if one is there: a read never creates a
    /// store.
    ///
    /// # Errors
    /// [`OpenError::NotAStore`] if `path` is missing or holds no store (no sled `conf`
    /// and `db` files); otherwise as for [`Sled::open`].
    pub fn open_existing(path: impl AsRef<Path>) -> Result<Self> {
        Self::open_existing_with_cache(path, Self::DEFAULT_CACHE_BYTES)
    }

    /// As [`Sled::open_existing`], with the page cache of
    /// [`Sled::open_with_cache`].
    ///
    /// # Errors
    /// As for [`Sled::open_existing`].
    pub fn open_existing_with_cache(path: impl AsRef<Path>, cache_bytes: u64) -> Result<Self> {
        let path = path.as_ref();
        if !Self::is_store(path) {
            return Err(OpenError::NotAStore {
                path: path.to_path_buf(),
            }
            .into());
        }
        Self::open_with_cache(path, cache_bytes)
    }

    /// Whether `path` is a directory holding a sled store (its `conf` and `db`
    /// files).
    pub fn is_store(path: &Path) -> bool {
        path.join("conf").is_file() && path.join("db").is_file()
    }

    /// sled's page cache size when none is given: 1 GiB, sled's own default.
    pub const DEFAULT_CACHE_BYTES: u64 = 1024 * 1024 * 1024;

    /// The page cache size audits use: a full scan reads every page once, so a
    /// small cache costs little and keeps an audit's memory flat however large the
    /// store.
    pub const SCAN_CACHE_BYTES: u64 = 4 * 1024 * 1024;

    /// Opens (or creates) the store at `path`, with sled's page cache capped at
    /// `cache_bytes`. The cache holds pages read or written; a full scan with a
    /// large cache grows the process by about the store's size.
    ///
    /// # Errors
    /// As for [`Sled::open`].
    pub fn open_with_cache(path: impl AsRef<Path>, cache_bytes: u64) -> Result<Self> {
        let path = path.as_ref();
        let started = Instant::now();
        loop {
            match Self::open_once(path, cache_bytes) {
                // sled releases its file lock from a background thread shortly
                // after the last handle drops, so a reopen right after a close can
                // find it still held for a moment.
                Err(Error::Open(OpenError::Locked { .. })) if started.elapsed() < LOCK_WAIT => {
                    std::thread::sleep(Duration::from_millis(10));
                }
                result => return result,
            }
        }
    }

    fn open_once(path: &Path, cache_bytes: u64) -> Result<Self> {
        let path = path.to_path_buf();
        let opened = catch_unwind(AssertUnwindSafe(|| -> Result<Self> {
            let db = sled::Config::new()
                .path(&path)
                .cache_capacity(cache_bytes)
                .open()
                .map_err(|e| sled_error(e, &path))?;
            let layout = open_layout(&db, &path)?;
            let file = path.join(ACKED_FILE);
            let base = Acked::read(&file)?;
            Ok(Self {
                layout,
                locks: Arc::new(Stripes::default()),
                acked: Arc::new(Acked {
                    db: db.clone(),
                    data: std::fs::File::open(path.join("db"))?,
                    dir: path.clone(),
                    syncs: AtomicU64::new(0),
                    file,
                    base,
                    appended: AtomicU64::new(0),
                    written: Mutex::new((base, None)),
                }),
                db,
                path: path.clone(),
            })
        }));
        match opened {
            Ok(result) => result,
            Err(panic) => Err(OpenError::Panicked {
                path,
                message: panic_message(panic.as_ref()),
            }
            .into()),
        }
    }

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
        sled::Error::Io(io) => StorageError::Io(io).into(),
        sled::Error::Corruption { at, .. } => Error::Corrupt {
            key: format!("sled file offset {at:?}"),
            reason: "sled reported corruption".to_owned(),
        },
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

fn corrupt_key(raw: &[u8], reason: String) -> Error {
    Error::Corrupt {
        key: format!("key {}", key::hex(raw)),
        reason,
    }
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(text) = panic.downcast_ref::<&str>() {
        (*text).to_owned()
    } else if let Some(text) = panic.downcast_ref::<String>() {
        text.clone()
    } else {
        "unknown panic".to_owned()
    }
}

/// Reads the store's format from `meta`, writing the current one into a new
/// store, and opens its trees. A store of format 2 that still has format 1's
/// trees was migrated by a process that stopped before it dropped them (its
/// marker switched to 2 only once the new tree was complete and synced): they are
/// dropped now.
///
/// A store without a marker is new only if it holds no tree of either format.
/// One that holds trees of one format lost its marker to damage: it is read as
/// that format, and nothing is written or dropped. One that holds both is refused.
fn open_layout(db: &sled::Db, path: &Path) -> Result<Layout> {
    let meta = db.open_tree("meta").map_err(|e| sled_error(e, path))?;
    let has = |tree: &str| {
        db.tree_names()
            .iter()
            .any(|name| name.as_ref() == tree.as_bytes())
    };
    let found = meta.get(FORMAT_KEY).map_err(|e| sled_error(e, path))?;
    let found = match found.as_deref() {
        Some(found) => found.to_vec(),
        None => {
            let legacy = has(legacy::RECORDS) || has(legacy::HEADS);
            match (legacy, has(LOG)) {
                (false, false) => {
                    // A new store: claim it for this format. A racing opener in
                    // this process is impossible (sled's lock), so the swap only
                    // guards against a marker written since the read.
                    let swapped = meta
                        .compare_and_swap(FORMAT_KEY, None as Option<&[u8]>, Some(&[FORMAT][..]))
                        .map_err(|e| sled_error(e, path))?;
                    match swapped {
                        Ok(()) => vec![FORMAT],
                        Err(current) => current.current.map(|c| c.to_vec()).unwrap_or_default(),
                    }
                }
                (true, false) => return open_legacy(db, path),
                (false, true) => return open_log(db, path),
                (true, true) => {
                    return Err(Error::Corrupt {
                        key: "meta/format".to_owned(),
                        reason: "the format marker is missing, and the store holds the trees of \
                                 both formats: not guessing which is the store"
                            .to_owned(),
                    });
                }
            }
        }
    };
    match found.as_slice() {
        [FORMAT] => {
            for old in [legacy::RECORDS, legacy::HEADS] {
                if has(old) {
                    db.drop_tree(old).map_err(|e| sled_error(e, path))?;
                }
            }
            open_log(db, path)
        }
        [1] => open_legacy(db, path),
        [found] => Err(Error::UnknownVersion {
            key: "meta/format".to_owned(),
            found: *found,
        }),
        _ => Err(Error::Corrupt {
            key: "meta/format".to_owned(),
            reason: "format marker is not one byte".to_owned(),
        }),
    }
}

/// The tree of format 2.
fn open_log(db: &sled::Db, path: &Path) -> Result<Layout> {
    Ok(Layout::Log(
        db.open_tree(LOG).map_err(|e| sled_error(e, path))?,
    ))
}

/// The trees of format 1.
fn open_legacy(db: &sled::Db, path: &Path) -> Result<Layout> {
    Ok(Layout::Legacy(legacy::Trees {
        records: db
            .open_tree(legacy::RECORDS)
            .map_err(|e| sled_error(e, path))?,
        heads: db
            .open_tree(legacy::HEADS)
            .map_err(|e| sled_error(e, path))?,
    }))
}

/// A head as stored, checked to hold at least its seq.
fn decode_head(id: &DelegationId, raw: &[u8]) -> Result<Head> {
    Head::decode(raw).ok_or_else(|| Error::Corrupt {
        key: format!("head of `{id}`"),
        reason: format!("{} bytes, too short for its seq", raw.len()),
    })
}

/// The seq of a stored head, without copying its summary.
fn head_seq(id: &DelegationId, raw: &[u8]) -> Result<Seq> {
    raw.first_chunk::<8>()
        .map(|seq| u64::from_be_bytes(*seq))
        .ok_or_else(|| Error::Corrupt {
            key: format!("head of `{id}`"),
            reason: format!("{} bytes, too short for its seq", raw.len()),
        })
}

impl Sled {
    fn log(&self) -> Result<&sled::Tree> {
        match &self.layout {
            Layout::Log(log) => Ok(log),
            Layout::Legacy(_) => Err(Error::NeedsMigration {
                path: self.path.clone(),
                found: 1,
            }),
        }
    }

    fn sled_error(&self, error: sled::Error) -> Error {
        sled_error(error, &self.path)
    }

    /// One delegation's head and records, by a prefix scan of the log tree.
    fn read_history(&self, log: &sled::Tree, id: &DelegationId) -> Result<Stream> {
        let mut stream = Stream {
            id: id.clone(),
            entries: Vec::with_capacity(2),
            head: None,
        };
        for item in log.scan_prefix(key::prefix(id)) {
            let (raw, value) = item.map_err(|e| self.sled_error(e))?;
            let (found, seq) = key::parse(&raw).map_err(|reason| corrupt_key(&raw, reason))?;
            if &found != id {
                return Err(corrupt_key(&raw, format!("key of `{found}` under `{id}`")));
            }
            if seq == 0 {
                stream.head = Some(decode_head(id, &value)?);
            } else {
                stream.entries.push(Entry {
                    seq,
                    bytes: value.to_vec(),
                });
            }
        }
        Ok(stream)
    }

    /// Migrates a store of format 1 at `path` to format 2, in place: every
    /// delegation's stream goes through `convert`, which returns its records
    /// re-encoded and its new head, and lands in the new tree in one batch. Only
    /// when every delegation is there, flushed and synced, does the format marker
    /// switch to 2 (one write, synced); then the old trees are dropped. A crash
    /// before the switch leaves the store in format 1, as it was (the partial new
    /// tree is cleared by the next attempt); a crash after it leaves format 2,
    /// and the next open drops the old trees. Returns how many delegations were
    /// migrated; `None` for a store already in format 2, which is left alone.
    ///
    /// # Errors
    /// As for [`Sled::open_existing`]; the first error of `convert` or of a scan,
    /// which stops the migration with the store still in format 1; a storage
    /// error.
    pub fn migrate(
        path: impl AsRef<Path>,
        convert: &mut dyn FnMut(&Stream) -> Result<Migrated>,
    ) -> Result<Option<u64>> {
        let store = Self::open_existing(path)?;
        let Layout::Legacy(trees) = &store.layout else {
            return Ok(None);
        };
        let error = |e| store.sled_error(e);
        store.db.drop_tree(LOG).map_err(error)?;
        let log = store.db.open_tree(LOG).map_err(error)?;
        let mut copy = || -> Result<u64> {
            let mut migrated = 0u64;
            for stream in trees.scan(&store) {
                let stream = stream?;
                let converted = convert(&stream)?;
                let mut batch = sled::Batch::default();
                for entry in &converted.entries {
                    batch.insert(key::record(&stream.id, entry.seq), entry.bytes.as_slice());
                }
                if let Some(head) = &converted.head {
                    batch.insert(key::head(&stream.id), head.encode());
                }
                log.apply_batch(batch).map_err(error)?;
                migrated += 1;
            }
            Ok(migrated)
        };
        let migrated = match copy() {
            Ok(migrated) => migrated,
            Err(failure) => {
                // The store is still in format 1; the partial copy is garbage. If
                // dropping it fails too, the next attempt drops it first.
                let _ = store.db.drop_tree(LOG);
                return Err(failure);
            }
        };
        store.acked.flush(true, true)?;
        let meta = store.db.open_tree("meta").map_err(error)?;
        meta.insert(FORMAT_KEY, &[FORMAT][..]).map_err(error)?;
        store.acked.flush(true, true)?;
        for old in [legacy::RECORDS, legacy::HEADS] {
            store.db.drop_tree(old).map_err(error)?;
        }
        store.acked.flush(true, true)?;
        Ok(Some(migrated))
    }
}

/// One delegation as [`Sled::migrate`] writes it in the new format.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Migrated {
    /// Its records, re-encoded, each under its seq.
    pub entries: Vec<Entry>,
    /// Its new head, if it has records.
    pub head: Option<Head>,
}

impl Store for Sled {
    fn append(&self, appends: &[Append<'_>]) -> Result<(), AppendError> {
        let log = self.log()?;
        if appends.is_empty() {
            return Ok(());
        }
        let _writing = self.locks.lock_all(appends.iter().map(|append| append.id));
        let mut batch = sled::Batch::default();
        let mut raised: Vec<(&DelegationId, Seq)> = Vec::with_capacity(appends.len());
        for append in appends {
            let id = append.id;
            let actual = match raised.iter().rev().find(|(raised, _)| *raised == id) {
                Some((_, seq)) => Some(*seq),
                None => log
                    .get(key::head(id))
                    .map_err(|e| self.sled_error(e))?
                    .map(|raw| head_seq(id, &raw))
                    .transpose()?,
            };
            if actual != append.expect.seq() {
                return Err(AppendError::Conflict {
                    id: id.clone(),
                    expected: append.expect,
                    actual,
                });
            }
            let next = append.expect.next();
            let earlier = raised.iter().any(|(raised, _)| *raised == id);
            if let Some(last) = append.expect.seq().filter(|_| !earlier) {
                let there = log
                    .contains_key(key::record(id, last))
                    .map_err(|e| self.sled_error(e))?;
                if !there {
                    return Err(AppendError::missing(id, last));
                }
            }
            let record = key::record(id, next);
            if log.contains_key(&record).map_err(|e| self.sled_error(e))? {
                return Err(AppendError::occupied(id, next));
            }
            batch.insert(record, append.record);
            let head = Head {
                seq: next,
                summary: append.head.to_vec(),
            };
            batch.insert(key::head(id), head.encode());
            raised.push((id, next));
        }
        log.apply_batch(batch).map_err(|e| self.sled_error(e))?;
        let count = u64::try_from(appends.len()).unwrap_or(u64::MAX);
        self.acked.appended.fetch_add(count, Ordering::SeqCst);
        Ok(())
    }

    fn head(&self, id: &DelegationId) -> Result<Option<Head>> {
        match &self.layout {
            Layout::Log(log) => log
                .get(key::head(id))
                .map_err(|e| self.sled_error(e))?
                .map(|raw| decode_head(id, &raw))
                .transpose(),
            Layout::Legacy(trees) => trees.head(self, id),
        }
    }

    fn history(&self, id: &DelegationId) -> Result<Stream> {
        match &self.layout {
            Layout::Log(log) => {
                // A scan reads key by key, so a batch could land between the head
                // and the records; under the writers' lock none is half seen.
                let _quiet = self.locks.lock(id);
                self.read_history(log, id)
            }
            Layout::Legacy(trees) => trees.history(self, id),
        }
    }

    fn scan(&self) -> Box<dyn Iterator<Item = Result<Stream>> + Send + '_> {
        match &self.layout {
            Layout::Log(log) => Box::new(Scan {
                store: self,
                items: log.iter().peekable(),
            }),
            Layout::Legacy(trees) => Box::new(trees.scan(self)),
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
            Layout::Log(_) => FORMAT,
            Layout::Legacy(_) => 1,
        }
    }
}

/// The log tree, grouped by delegation: a head, then its records.
struct Scan<'a> {
    store: &'a Sled,
    items: std::iter::Peekable<sled::Iter>,
}

impl Iterator for Scan<'_> {
    type Item = Result<Stream>;

    fn next(&mut self) -> Option<Result<Stream>> {
        let id = match self.items.peek()? {
            Err(_) => {
                let error = self.items.next()?.err()?;
                return Some(Err(self.store.sled_error(error)));
            }
            Ok((raw, _)) => match key::parse(raw) {
                Ok((id, _)) => id,
                Err(reason) => {
                    let error = corrupt_key(raw, reason);
                    self.items.next();
                    return Some(Err(error));
                }
            },
        };
        let prefix = key::prefix(&id);
        let mut stream = Stream {
            id,
            entries: Vec::with_capacity(2),
            head: None,
        };
        let mut damage = None;
        while let Some(Ok((raw, _))) = self.items.peek() {
            if raw.len() != prefix.len() + 8 || !raw.starts_with(&prefix) {
                break;
            }
            let Some(Ok((raw, value))) = self.items.next() else {
                break;
            };
            let seq = raw
                .get(prefix.len()..)
                .and_then(|seq| seq.first_chunk::<8>())
                .map_or(0, |seq| u64::from_be_bytes(*seq));
            if seq == 0 {
                // A damaged head is the delegation's one error item: its records
                // are passed over with it.
                match decode_head(&stream.id, &value) {
                    Ok(head) => stream.head = Some(head),
                    Err(error) => damage = Some(error),
                }
            } else {
                stream.entries.push(Entry {
                    seq,
                    bytes: value.to_vec(),
                });
            }
        }
        if let Some(error) = damage {
            return Some(Err(error));
        }
        if stream.in_step() {
            return Some(Ok(stream));
        }
        // Read key by key, a writer's batch may have landed halfway: read the
        // delegation again, whole, under its writers' lock.
        Some(self.store.history(&stream.id))
    }
}
