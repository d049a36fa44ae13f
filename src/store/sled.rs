//! The default store, on sled.
//!
//! Two trees: `records`, keyed by [`key::record`], holding encoded records; and
//! `heads`, keyed by [`key::prefix`], holding each delegation's [`Head`]. A third,
//! `meta`, holds the store's format version, so that a store written by a newer
//! crate is refused at open rather than misread.
//!
//! Appends use `compare_and_swap` on the record's key: of several writers racing
//! for the same seq, exactly one finds the slot empty. The head is then raised
//! with `fetch_and_update`, which never lowers it.
//!
//! A group ([`Store::append_all`]) is one sled transaction over both trees. sled
//! runs a transaction under a process-wide write lock that every other tree
//! operation takes for reading once any transaction has run, so no
//! `compare_and_swap` interleaves with its checks and writes; and it seals the
//! transaction's writes as one batch in its log, which recovery replays whole or
//! not at all.
//!
//! Beside sled's files, the store keeps `delegation-log.acked`: how many records
//! a completed flush has made durable, over the store's life (8 bytes big-endian,
//! then a CRC-32 of them). sled can lose whole delegations to damage in its files
//! without an error, records and heads together, which no chain or head can see;
//! an audit compares the records it finds with this count, so such a loss becomes a
//! finding. The count is written after the flush it describes and at most every
//! [`ACKED_INTERVAL`], so it may lag what is durable, never lead it.

use std::io::Write as _;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{Append, Entry, Expect, Head, Store, Stream, key};
use crate::envelope;
use crate::error::{Error, Result};
use crate::event::DelegationId;

const FORMAT_KEY: &[u8] = b"format";

/// How long an open waits for a lock that a just-closed handle still holds before
/// it reports [`Error::Locked`].
pub const LOCK_WAIT: Duration = Duration::from_secs(2);

/// The file, inside the store's directory, that counts acknowledged records.
pub const ACKED_FILE: &str = "delegation-log.acked";

/// The longest the acknowledged count waits before it is rewritten after a flush.
pub const ACKED_INTERVAL: Duration = Duration::from_millis(100);

/// The count of records made durable, kept outside sled's files.
#[derive(Debug)]
struct Acked {
    db: sled::Db,
    /// sled's data file, synced after each durable flush: sled's own `flush` ends
    /// in `sync_file_range` on Linux, which reaches neither the device cache nor
    /// the file's metadata, so it survives a process crash but not a power cut.
    data: std::fs::File,
    /// The store's directory, synced after the count file is renamed into it.
    dir: PathBuf,
    /// How many `sync_data` calls durable flushes have made.
    syncs: AtomicU64,
    file: PathBuf,
    /// The count read at open.
    base: u64,
    /// Appends since open.
    appended: AtomicU64,
    /// The count last written, and when.
    written: Mutex<(u64, Option<Instant>)>,
}

impl Acked {
    fn read(file: &Path) -> Result<u64> {
        let bytes = match std::fs::read(file) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(Error::Io(e)),
        };
        let corrupt = |reason: String| Error::Corrupt {
            key: file.display().to_string(),
            reason,
        };
        let (count, crc) = bytes
            .split_first_chunk::<8>()
            .ok_or_else(|| corrupt(format!("{} bytes, not 12", bytes.len())))?;
        let crc: [u8; 4] = crc
            .try_into()
            .map_err(|_| corrupt(format!("{} bytes, not 12", bytes.len())))?;
        if crc32fast::hash(count) != u32::from_be_bytes(crc) {
            return Err(corrupt("checksum mismatch".to_owned()));
        }
        Ok(u64::from_be_bytes(*count))
    }

    /// Writes `count` if it is more than was written, atomically (a new file,
    /// synced, then renamed over the old one).
    fn write(&self, count: u64, force: bool) -> Result<()> {
        let mut written = self.written.lock().unwrap_or_else(|p| p.into_inner());
        let due = force || written.1.is_none_or(|at| at.elapsed() >= ACKED_INTERVAL);
        if count <= written.0 || !due {
            return Ok(());
        }
        let mut bytes = count.to_be_bytes().to_vec();
        bytes.extend_from_slice(&crc32fast::hash(&count.to_be_bytes()).to_be_bytes());
        let staged = self.file.with_extension("acked.new");
        let mut out = std::fs::File::create(&staged)?;
        out.write_all(&bytes)?;
        out.sync_all()?;
        std::fs::rename(&staged, &self.file)?;
        // The rename is an entry of the directory: sync it too, or a power cut
        // may keep the old count (a lagging count is safe, but it is not exact).
        std::fs::File::open(&self.dir)?.sync_all()?;
        *written = (count, Some(Instant::now()));
        Ok(())
    }

    /// Flushes sled and, for `sync`, its data file to the device; then records
    /// what that flush covered.
    fn flush(&self, force: bool, sync: bool) -> std::result::Result<(), Error> {
        let covered = self.appended.load(Ordering::SeqCst);
        self.db.flush().map_err(|e| sled_error(e, &self.file))?;
        if sync {
            self.data.sync_data()?;
            self.syncs.fetch_add(1, Ordering::SeqCst);
        }
        self.write(self.base.saturating_add(covered), force)
    }
}

impl Drop for Acked {
    fn drop(&mut self) {
        // The last handle is going: flush, and leave the exact count behind. A
        // failure here leaves the count lagging, which is safe.
        let _ = self.flush(true, true);
    }
}

/// A store in a sled database on disk.
///
/// sled allows one open per path; a second open, in this process or another, gets
/// [`Error::Locked`]. Clone the [`Ledger`](crate::Ledger) to share it.
#[derive(Clone, Debug)]
pub struct Sled {
    db: sled::Db,
    records: sled::Tree,
    heads: sled::Tree,
    path: PathBuf,
    acked: Arc<Acked>,
}

impl Sled {
    /// Opens (or creates) the store at `path`.
    ///
    /// # Errors
    /// [`Error::Locked`] if the path is still open after [`LOCK_WAIT`]; [`Error::OpenPanicked`] if
    /// sled panicked on damaged files; [`Error::UnknownVersion`] for a store written
    /// in a newer format; an I/O error otherwise.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        Self::open_with_cache(path, Self::DEFAULT_CACHE_BYTES)
    }

    /// Opens the store at `path` only if one is there: a read never creates a
    /// store.
    ///
    /// # Errors
    /// [`Error::NotAStore`] if `path` is missing or holds no store (no sled `conf`
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
            return Err(Error::NotAStore {
                path: path.to_path_buf(),
            });
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
                Err(Error::Locked { .. }) if started.elapsed() < LOCK_WAIT => {
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
            let meta = db.open_tree("meta").map_err(|e| sled_error(e, &path))?;
            let version = envelope::VERSION;
            match meta
                .compare_and_swap(FORMAT_KEY, None as Option<&[u8]>, Some(&[version][..]))
                .map_err(|e| sled_error(e, &path))?
            {
                Ok(()) => {}
                Err(found) => match found.current.as_deref() {
                    Some([found]) if *found <= version => {}
                    Some([found]) => {
                        return Err(Error::UnknownVersion {
                            key: "meta/format".to_owned(),
                            found: *found,
                        });
                    }
                    _ => {
                        return Err(Error::Corrupt {
                            key: "meta/format".to_owned(),
                            reason: "format marker is not one byte".to_owned(),
                        });
                    }
                },
            }
            let file = path.join(ACKED_FILE);
            let base = Acked::read(&file)?;
            Ok(Self {
                records: db.open_tree("records").map_err(|e| sled_error(e, &path))?,
                heads: db.open_tree("heads").map_err(|e| sled_error(e, &path))?,
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
            Err(panic) => Err(Error::OpenPanicked {
                path,
                message: panic_message(panic.as_ref()),
            }),
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

    fn head_seq(&self, id: &DelegationId) -> Result<Option<u64>> {
        match self.records.scan_prefix(key::prefix(id)).next_back() {
            None => Ok(None),
            Some(item) => {
                let (raw, _) = item.map_err(|e| sled_error(e, &self.path))?;
                let (_, seq) = key::parse(&raw).map_err(|reason| corrupt_key(&raw, reason))?;
                Ok(Some(seq))
            }
        }
    }
}

/// Maps a sled error to the crate's error.
fn sled_error(error: sled::Error, path: &Path) -> Error {
    match error {
        sled::Error::Io(io) if is_lock_failure(&io) => Error::Locked {
            path: path.to_path_buf(),
        },
        sled::Error::Io(io) => Error::Io(io),
        sled::Error::Corruption { at, .. } => Error::Corrupt {
            key: format!("sled file offset {at:?}"),
            reason: "sled reported corruption".to_owned(),
        },
        other => Error::Storage(other.to_string()),
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

impl Store for Sled {
    fn append(&self, id: &DelegationId, expect: Expect, record: &[u8], head: Head) -> Result<()> {
        let conflict = |actual| Error::Conflict {
            id: id.clone(),
            expected: expect,
            actual,
        };
        if let Expect::At(seq) = expect {
            let present = self
                .records
                .contains_key(key::record(id, seq))
                .map_err(|e| sled_error(e, &self.path))?;
            if !present {
                return Err(conflict(self.head_seq(id)?));
            }
        }
        let swapped = self
            .records
            .compare_and_swap(
                key::record(id, expect.next()),
                None as Option<&[u8]>,
                Some(record),
            )
            .map_err(|e| sled_error(e, &self.path))?;
        if swapped.is_err() {
            return Err(conflict(self.head_seq(id)?));
        }
        let encoded = head.encode();
        self.heads
            .fetch_and_update(key::prefix(id), |old| match old.and_then(Head::decode) {
                Some(old) if old.seq >= head.seq => Some(old.encode().to_vec()),
                _ => Some(encoded.to_vec()),
            })
            .map_err(|e| sled_error(e, &self.path))?;
        self.acked.appended.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    fn append_all(&self, appends: &[Append<'_>]) -> Result<()> {
        use sled::Transactional as _;
        use sled::transaction::{ConflictableTransactionError, TransactionError};

        if appends.is_empty() {
            return Ok(());
        }
        let written = (&self.records, &self.heads).transaction(|(records, heads)| {
            for (at, append) in appends.iter().enumerate() {
                let follows = match append.expect {
                    Expect::Empty => true,
                    Expect::At(seq) => records.get(key::record(append.id, seq))?.is_some(),
                };
                let next = key::record(append.id, append.expect.next());
                if !follows || records.get(&next)?.is_some() {
                    return Err(ConflictableTransactionError::Abort(at));
                }
                records.insert(next, append.record)?;
                let prefix = key::prefix(append.id);
                let raise = match heads.get(&prefix)?.as_deref().and_then(Head::decode) {
                    Some(old) => old.seq < append.head.seq,
                    None => true,
                };
                if raise {
                    heads.insert(prefix, &append.head.encode()[..])?;
                }
            }
            Ok(())
        });
        match written {
            Ok(()) => {
                let count = u64::try_from(appends.len()).unwrap_or(u64::MAX);
                self.acked.appended.fetch_add(count, Ordering::SeqCst);
                Ok(())
            }
            Err(TransactionError::Abort(at)) => {
                let append = appends.get(at).copied().ok_or_else(|| {
                    Error::Storage("a transaction aborted on an append it does not have".to_owned())
                })?;
                Err(Error::Conflict {
                    id: append.id.clone(),
                    expected: append.expect,
                    actual: self.head_seq(append.id)?,
                })
            }
            Err(TransactionError::Storage(error)) => Err(sled_error(error, &self.path)),
        }
    }

    fn history(&self, id: &DelegationId) -> Result<Stream> {
        let mut entries = Vec::with_capacity(2);
        for item in self.records.scan_prefix(key::prefix(id)) {
            let (raw, value) = item.map_err(|e| sled_error(e, &self.path))?;
            let (found, seq) = key::parse(&raw).map_err(|reason| corrupt_key(&raw, reason))?;
            if &found != id {
                return Err(corrupt_key(&raw, format!("key of `{found}` under `{id}`")));
            }
            entries.push(Entry {
                seq,
                bytes: value.to_vec(),
            });
        }
        let head = self
            .heads
            .get(key::prefix(id))
            .map_err(|e| sled_error(e, &self.path))?;
        let head = match head {
            None => None,
            Some(raw) => Some(Head::decode(&raw).ok_or_else(|| Error::Corrupt {
                key: format!("head of `{id}`"),
                reason: format!("{} bytes, not {}", raw.len(), Head::LEN),
            })?),
        };
        Ok(Stream {
            id: id.clone(),
            entries,
            head,
        })
    }

    fn scan(&self) -> Box<dyn Iterator<Item = Result<Stream>> + Send + '_> {
        Box::new(Scan {
            store: self,
            records: self.records.iter().peekable(),
            heads: self.heads.iter().peekable(),
        })
    }

    fn flush(&self) -> Result<()> {
        self.acked.flush(false, true)
    }

    fn flush_crash_safe(&self) -> Result<()> {
        self.acked.flush(false, false)
    }
}

/// A merge of the records tree, grouped by delegation, with the heads tree.
struct Scan<'a> {
    store: &'a Sled,
    records: std::iter::Peekable<sled::Iter>,
    heads: std::iter::Peekable<sled::Iter>,
}

impl Scan<'_> {
    /// The prefix of the next record key, or an error for an unreadable one.
    fn next_record_prefix(&mut self) -> Option<Result<(Vec<u8>, DelegationId)>> {
        let peeked = self.records.peek()?;
        match peeked {
            Err(_) => match self.records.next() {
                Some(Err(e)) => Some(Err(sled_error(e, &self.store.path))),
                _ => None,
            },
            Ok((raw, _)) => match key::parse(raw) {
                Ok((id, _)) => Some(Ok((key::prefix(&id), id))),
                Err(reason) => {
                    let error = corrupt_key(raw, reason);
                    self.records.next();
                    Some(Err(error))
                }
            },
        }
    }

    fn take_head(&mut self, prefix: &[u8], id: &DelegationId) -> Result<Option<Head>> {
        match self.heads.peek() {
            Some(Ok((raw, _))) if raw.as_ref() == prefix => {}
            _ => return Ok(None),
        }
        match self.heads.next() {
            Some(Ok((_, value))) => Head::decode(&value)
                .map(Some)
                .ok_or_else(|| Error::Corrupt {
                    key: format!("head of `{id}`"),
                    reason: format!("{} bytes, not {}", value.len(), Head::LEN),
                }),
            Some(Err(e)) => Err(sled_error(e, &self.store.path)),
            None => Ok(None),
        }
    }

    /// A head whose key sorts before the next records: a delegation whose records
    /// are all gone.
    fn orphan_head(&mut self, before: Option<&[u8]>) -> Option<Result<Stream>> {
        let is_orphan = match (self.heads.peek()?, before) {
            (Err(_), _) => true,
            (Ok((raw, _)), Some(before)) => raw.as_ref() < before,
            (Ok(_), None) => true,
        };
        if !is_orphan {
            return None;
        }
        Some(match self.heads.next()? {
            Err(e) => Err(sled_error(e, &self.store.path)),
            Ok((raw, value)) => match key::parse_head(&raw) {
                Err(reason) => Err(corrupt_key(&raw, reason)),
                Ok(id) => match Head::decode(&value) {
                    None => Err(Error::Corrupt {
                        key: format!("head of `{id}`"),
                        reason: format!("{} bytes, not {}", value.len(), Head::LEN),
                    }),
                    Some(head) => Ok(Stream {
                        id,
                        entries: Vec::new(),
                        head: Some(head),
                    }),
                },
            },
        })
    }
}

impl Iterator for Scan<'_> {
    type Item = Result<Stream>;

    fn next(&mut self) -> Option<Result<Stream>> {
        let (prefix, id) = match self.next_record_prefix() {
            None => return self.orphan_head(None),
            Some(Err(error)) => return Some(Err(error)),
            Some(Ok(found)) => found,
        };
        if let Some(orphan) = self.orphan_head(Some(&prefix)) {
            return Some(orphan);
        }
        let mut entries = Vec::with_capacity(2);
        while let Some(Ok((raw, _))) = self.records.peek() {
            if !raw.starts_with(&prefix) {
                break;
            }
            let Some(Ok((raw, value))) = self.records.next() else {
                break;
            };
            match key::parse(&raw) {
                Ok((_, seq)) => entries.push(Entry {
                    seq,
                    bytes: value.to_vec(),
                }),
                Err(reason) => return Some(Err(corrupt_key(&raw, reason))),
            }
        }
        Some(
            self.take_head(&prefix, &id)
                .map(|head| Stream { id, entries, head }),
        )
    }
}
