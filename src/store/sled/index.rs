//! The tree `index` of format 4: the [`Index`] of a sled store, each hint one
//! plain insert or removal of its key ([`index::key`]), never batched with an
//! append (see the [store's docs](super) for why the order of sled's log is
//! enough).

use super::Sled;
use crate::error::{ReadError, Result};
use crate::event::DelegationId;
use crate::store::index::{self, Hint, Index, Set};

/// Inserts `hints` into `tree`, one key each.
pub(super) fn write(tree: &sled::Tree, hints: &[Hint]) -> sled::Result<()> {
    for hint in hints {
        let (key, value) = index::key::hint(hint);
        tree.insert(key, value)?;
    }
    Ok(())
}

/// Removes `hints` from `tree`, one key each.
pub(super) fn remove(tree: &sled::Tree, hints: &[Hint]) -> sled::Result<()> {
    for hint in hints {
        tree.remove(index::key::hint(hint).0)?;
    }
    Ok(())
}

impl Sled {
    /// The tree `index`, or [`ReadError::NeedsMigration`] for a store without one.
    fn index_tree(&self) -> Result<&sled::Tree, ReadError> {
        self.index
            .as_ref()
            .ok_or_else(|| ReadError::NeedsMigration {
                path: self.path().to_path_buf(),
                found: self.store_format(),
            })
    }
}

impl Index for Sled {
    fn hint(&self, hints: &[Hint]) -> Result<()> {
        write(self.index_tree()?, hints).map_err(|e| self.sled_error(e))
    }

    fn unhint(&self, hints: &[Hint]) -> Result<()> {
        remove(self.index_tree()?, hints).map_err(|e| self.sled_error(e))
    }

    fn hinted(
        &self,
        set: Set,
    ) -> Box<dyn Iterator<Item = Result<DelegationId, ReadError>> + Send + '_> {
        let tree = match self.index_tree() {
            Ok(tree) => tree,
            Err(error) => return Box::new(std::iter::once(Err(error))),
        };
        Box::new(
            tree.scan_prefix([index::key::set(set)])
                .keys()
                .map(move |raw| {
                    let raw = raw.map_err(super::read_error)?;
                    index::key::entry_id(raw.get(1..).unwrap_or_default(), &raw)
                }),
        )
    }

    fn link(&self, from: &DelegationId) -> Result<Option<DelegationId>, ReadError> {
        let key = index::key::of(index::key::LINK, from);
        self.index_tree()?
            .get(&key)
            .map_err(super::read_error)?
            .map(|to| index::key::entry_id(&to, &key))
            .transpose()
    }
}
