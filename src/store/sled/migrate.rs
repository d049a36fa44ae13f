//! Migrating a store of format 1, 2 or 3 to format 4 in place: every delegation
//! checked and rewritten, the marker switched only once the new trees are whole.

use std::path::Path;

use super::{DELEGATIONS, FORMAT, FORMAT_KEY, INDEX, Layout, Sled, index, v1, v2, value};
use crate::error::{Error, Result};
use crate::store::index::Hint;
use crate::store::{Entry, Head, Store, Stream, key};

impl Sled {
    /// Migrates a store of format 1, 2 or 3 at `path` to format 4, in place.
    ///
    /// Every delegation's stream goes through `convert` (given the stream and the
    /// format of its heads, [`Store::format`]), which checks it and returns its
    /// records re-encoded, its new head, and its hints. From format 1 or 2, the
    /// records and head land in the new tree `delegations` as one key; a store
    /// of format 3 keeps its tree as it is. The hints land in the tree `index`
    /// (cleared first; a dead hint of a delegation that another one retries is
    /// dropped at the end). Only when every delegation is there, flushed and
    /// synced, does the format marker switch to 4 (one write, synced); then the
    /// old trees are dropped. A crash before the switch leaves the store in its
    /// old format, as it was (the partial new trees are cleared by the next
    /// attempt); a crash after it leaves format 4, and the next open drops the
    /// old trees. Hints are idempotent, so a second attempt writes the same
    /// index. Returns how many delegations were migrated; `None` for a store
    /// already in format 4, which is left alone.
    ///
    /// # Errors
    /// As for [`Sled::open_existing`]; the first error of `convert` or of a scan,
    /// which stops the migration with the store still in its old format;
    /// [`Error::Corrupt`] for a converted delegation whose records are not seqs 1
    /// to its head's; a storage error.
    pub fn migrate(
        path: impl AsRef<Path>,
        convert: &mut dyn FnMut(&Stream, u8) -> Result<Migrated>,
    ) -> Result<Option<u64>> {
        let store = Self::open_existing(path)?;
        let rewrite = match (&store.layout, &store.index) {
            (Layout::Delegations(_), Some(_)) => return Ok(None),
            (Layout::Delegations(_), None) => false,
            (Layout::Log(_) | Layout::Legacy(_), _) => true,
        };
        let heads = store.format();
        let error = |e| store.sled_error(e);
        if rewrite {
            store.db.drop_tree(DELEGATIONS).map_err(error)?;
        }
        store.db.drop_tree(INDEX).map_err(error)?;
        let tree = store.db.open_tree(DELEGATIONS).map_err(error)?;
        let index = store.db.open_tree(INDEX).map_err(error)?;
        let mut copy = || -> Result<u64> {
            let mut migrated = 0u64;
            let mut retried = Vec::new();
            for stream in store.scan() {
                let stream = stream?;
                let converted = convert(&stream, heads)?;
                match &converted.head {
                    Some(_) if !rewrite => {}
                    Some(head) => {
                        let value = value::encode_whole(&stream.id, head, &converted.entries)?;
                        tree.insert(key::prefix(&stream.id), value).map_err(error)?;
                    }
                    None if converted.entries.is_empty() => {}
                    None => {
                        return Err(Error::Corrupt {
                            key: format!("delegation `{}`", stream.id),
                            reason: "records without a head".to_owned(),
                        });
                    }
                }
                index::write(&index, &converted.hints).map_err(error)?;
                retried.extend(converted.hints.iter().filter_map(|hint| match hint {
                    Hint::Link { from, .. } => Some(Hint::Dead(from.clone())),
                    Hint::Open(_) | Hint::Dead(_) => None,
                }));
                migrated += 1;
            }
            index::remove(&index, &retried).map_err(error)?;
            Ok(migrated)
        };
        let migrated = match copy() {
            Ok(migrated) => migrated,
            Err(failure) => {
                // The store is still in its old format; the partial copy is
                // garbage. If dropping it fails too, the next attempt drops it
                // first.
                if rewrite {
                    let _ = store.db.drop_tree(DELEGATIONS);
                }
                let _ = store.db.drop_tree(INDEX);
                return Err(failure);
            }
        };
        store.acked.flush(true, true)?;
        let meta = store.db.open_tree("meta").map_err(error)?;
        meta.insert(FORMAT_KEY, &[FORMAT][..]).map_err(error)?;
        store.acked.flush(true, true)?;
        for old in [v1::RECORDS, v1::HEADS, v2::LOG] {
            store.db.drop_tree(old).map_err(error)?;
        }
        store.acked.flush(true, true)?;
        Ok(Some(migrated))
    }
}

/// One delegation as [`Sled::migrate`] writes it in the new format.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Migrated {
    /// Its hints: open if it is `queued`, dead if it is `failed`, and the link
    /// from the attempt it retries (see [`Index`]).
    ///
    /// [`Index`]: crate::store::Index
    pub hints: Vec<Hint>,
    /// Its records, re-encoded, each under its seq: seqs 1 to the head's.
    pub entries: Vec<Entry>,
    /// Its new head, if it has records.
    pub head: Option<Head>,
}
