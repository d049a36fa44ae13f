//! Opening a sled store: waiting out a lock a just-closed handle still holds,
//! and telling from its trees and its marker which format the store is in.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::acked::Acked;
use super::{ACKED_FILE, DELEGATIONS, FORMAT, FORMAT_KEY, INDEX, Layout, Sled, sled_error, v1, v2};
use crate::error::{Error, OpenError, Result};
use crate::store::Stripes;

/// How long an open waits for a lock that a just-closed handle still holds before
/// it reports [`OpenError::Locked`].
pub const LOCK_WAIT: Duration = Duration::from_secs(2);

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
            let (layout, index) = open_layout(&db, &path)?;
            let file = path.join(ACKED_FILE);
            let base = Acked::read(&file)?;
            Ok(Self {
                layout,
                index,
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
/// store, and opens its trees (with the tree `index` for format 4). A store of
/// format 3 or 4 that still has an older
/// format's trees was migrated by a process that stopped before it dropped them
/// (its marker switched to 3 only once the new tree was complete and synced):
/// they are dropped now. (Likewise a store of format 2 still holding format 1's
/// trees, left by a migration of an older crate.)
///
/// A store without a marker is new only if it holds no tree of any format. One
/// that holds the trees of one format lost its marker to damage: it is read as
/// that format, and nothing is written or dropped. One that holds the trees of
/// several is refused.
fn open_layout(db: &sled::Db, path: &Path) -> Result<(Layout, Option<sled::Tree>)> {
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
            let trees = [
                (1u8, has(v1::RECORDS) || has(v1::HEADS)),
                (2, has(v2::LOG)),
                (3, has(DELEGATIONS) && !has(INDEX)),
                (FORMAT, has(DELEGATIONS) && has(INDEX)),
            ];
            let mut present = trees
                .iter()
                .filter(|(_, has)| *has)
                .map(|(format, _)| *format);
            match (present.next(), present.next()) {
                (None, _) => {
                    // A new store: claim it for this format. A racing opener in
                    // this process is impossible (sled's lock), so the swap only
                    // guards against a marker written since the read.
                    let swapped = meta
                        .compare_and_swap(FORMAT_KEY, None as Option<&[u8]>, Some(&[FORMAT][..]))
                        .map_err(|e| sled_error(e, path))?;
                    match swapped {
                        Ok(()) => return open_indexed(db, path),
                        Err(current) => current.current.map(|c| c.to_vec()).unwrap_or_default(),
                    }
                }
                (Some(1), None) => return Ok((open_v1(db, path)?, None)),
                (Some(2), None) => return Ok((open_v2(db, path)?, None)),
                (Some(3), None) => return Ok((open_delegations(db, path)?, None)),
                (Some(_), None) => return open_indexed(db, path),
                (Some(_), Some(_)) => {
                    return Err(Error::Corrupt {
                        key: "meta/format".to_owned(),
                        reason: "the format marker is missing, and the store holds the trees of \
                                 several formats: not guessing which is the store"
                            .to_owned(),
                    });
                }
            }
        }
    };
    let drop_trees = |names: &[&str]| -> Result<()> {
        for old in names {
            if has(old) {
                db.drop_tree(old).map_err(|e| sled_error(e, path))?;
            }
        }
        Ok(())
    };
    match found.as_slice() {
        [FORMAT] => {
            drop_trees(&[v1::RECORDS, v1::HEADS, v2::LOG])?;
            open_indexed(db, path)
        }
        // The tree `index` of a migration to format 4 that stopped before its
        // marker switched is left for the next migration, which clears it.
        [3] => {
            drop_trees(&[v1::RECORDS, v1::HEADS, v2::LOG])?;
            Ok((open_delegations(db, path)?, None))
        }
        [2] => {
            drop_trees(&[v1::RECORDS, v1::HEADS])?;
            Ok((open_v2(db, path)?, None))
        }
        [1] => Ok((open_v1(db, path)?, None)),
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

/// The trees of format 4.
fn open_indexed(db: &sled::Db, path: &Path) -> Result<(Layout, Option<sled::Tree>)> {
    let index = db.open_tree(INDEX).map_err(|e| sled_error(e, path))?;
    Ok((open_delegations(db, path)?, Some(index)))
}

/// The tree of formats 3 and 4.
fn open_delegations(db: &sled::Db, path: &Path) -> Result<Layout> {
    Ok(Layout::Delegations(
        db.open_tree(DELEGATIONS).map_err(|e| sled_error(e, path))?,
    ))
}

/// The tree of format 2.
fn open_v2(db: &sled::Db, path: &Path) -> Result<Layout> {
    Ok(Layout::Log(v2::Log {
        tree: db.open_tree(v2::LOG).map_err(|e| sled_error(e, path))?,
    }))
}

/// The trees of format 1.
fn open_v1(db: &sled::Db, path: &Path) -> Result<Layout> {
    Ok(Layout::Legacy(v1::Trees {
        records: db.open_tree(v1::RECORDS).map_err(|e| sled_error(e, path))?,
        heads: db.open_tree(v1::HEADS).map_err(|e| sled_error(e, path))?,
    }))
}
