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

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

use super::{Entry, Expect, Head, Store, Stream, key};
use crate::envelope;
use crate::error::{Error, Result};
use crate::event::DelegationId;

const FORMAT_KEY: &[u8] = b"format";

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
}

impl Sled {
    /// Opens (or creates) the store at `path`.
    ///
    /// # Errors
    /// [`Error::Locked`] if the path is already open; [`Error::OpenPanicked`] if
    /// sled panicked on damaged files; [`Error::UnknownVersion`] for a store written
    /// in a newer format; an I/O error otherwise.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        Self::open_with_cache(path, Self::DEFAULT_CACHE_BYTES)
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
        let path = path.as_ref().to_path_buf();
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
            Ok(Self {
                records: db.open_tree("records").map_err(|e| sled_error(e, &path))?,
                heads: db.open_tree("heads").map_err(|e| sled_error(e, &path))?,
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
        Ok(())
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
        self.db
            .flush()
            .map(|_| ())
            .map_err(|e| sled_error(e, &self.path))
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
