//! An in-memory store, gone when dropped; and its image of the delegations, with the
//! checked append and the hints, which the fault-injecting store shares.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, MutexGuard};

use super::index::{self, Hint, Index, Set};
use super::{Append, AppendError, Entry, Head, Store, Stream, key};
use crate::error::{ReadError, Result};
use crate::event::{DelegationId, Seq};

/// One delegation's records and head, as the in-memory stores keep them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Slot {
    pub(crate) entries: Vec<Entry>,
    pub(crate) head: Option<Head>,
}

/// Delegations in key order, exactly as sled orders them.
pub(crate) type Image = BTreeMap<Vec<u8>, (DelegationId, Slot)>;

/// Appends a group to an image, all or nothing, with the checks of every store:
/// each expectation is checked (in order, each against the appends before it) and
/// each record slot must be free, before anything is written.
pub(crate) fn append(image: &mut Image, appends: &[Append<'_>]) -> Result<(), AppendError> {
    let mut heads: HashMap<&DelegationId, Option<Seq>> = HashMap::new();
    for append in appends {
        let slot = image.get(&key::prefix(append.id)).map(|(_, slot)| slot);
        let actual = match heads.get(append.id) {
            Some(seq) => *seq,
            None => slot
                .and_then(|slot| slot.head.as_ref())
                .map(|head| head.seq),
        };
        if actual != append.expect.seq() {
            return Err(AppendError::Conflict {
                id: append.id.clone(),
                expected: append.expect,
                actual,
            });
        }
        let next = append.expect.next();
        let has = |seq| slot.is_some_and(|slot| slot.entries.iter().any(|entry| entry.seq == seq));
        // Within a group, a record appended earlier is there by the time this one is.
        let earlier = heads.contains_key(append.id);
        if let Some(last) = append.expect.seq().filter(|last| !earlier && !has(*last)) {
            return Err(AppendError::missing(append.id, last));
        }
        if has(next) {
            return Err(AppendError::occupied(append.id, next));
        }
        heads.insert(append.id, Some(next));
    }
    for append in appends {
        let seq = append.expect.next();
        push(
            slot(image, append.id),
            seq,
            append.record,
            Some(Head {
                seq,
                summary: append.head.to_vec(),
            }),
        );
    }
    Ok(())
}

/// Writes a record into a slot without any check, as a disk writes what it is told.
pub(crate) fn push(slot: &mut Slot, seq: Seq, record: &[u8], head: Option<Head>) {
    let at = slot.entries.partition_point(|entry| entry.seq < seq);
    let entry = Entry {
        seq,
        bytes: record.to_vec(),
    };
    match slot.entries.get_mut(at) {
        Some(same) if same.seq == seq => *same = entry,
        _ => slot.entries.insert(at, entry),
    }
    if head.is_some() {
        slot.head = head;
    }
}

/// The slot of `id` in an image, created empty if needed.
pub(crate) fn slot<'a>(image: &'a mut Image, id: &DelegationId) -> &'a mut Slot {
    &mut image
        .entry(key::prefix(id))
        .or_insert_with(|| (id.clone(), Slot::default()))
        .1
}

/// A delegation's stream from an image.
pub(crate) fn stream(image: &Image, id: &DelegationId) -> Stream {
    let slot = image.get(&key::prefix(id)).map(|(_, slot)| slot);
    Stream {
        id: id.clone(),
        entries: slot.map(|slot| slot.entries.clone()).unwrap_or_default(),
        head: slot.and_then(|slot| slot.head.clone()),
    }
}

/// Every stream of an image, from a snapshot of its ids.
pub(crate) fn scan<'a, F>(
    ids: Vec<DelegationId>,
    read: F,
) -> Box<dyn Iterator<Item = Result<Stream, ReadError>> + Send + 'a>
where
    F: Fn(&DelegationId) -> Result<Stream, ReadError> + Send + 'a,
{
    Box::new(ids.into_iter().map(move |id| read(&id)))
}

/// The index as the in-memory stores keep it: [`index::key`] to value, in key
/// order, as sled keeps its `index` tree.
pub(crate) type Hints = BTreeMap<Vec<u8>, Vec<u8>>;

/// Writes `hints` into an in-memory index.
pub(crate) fn hint(into: &mut Hints, hints: &[Hint]) {
    for hint in hints {
        let (key, value) = index::key::hint(hint);
        into.insert(key, value);
    }
}

/// Removes `hints` from an in-memory index.
pub(crate) fn unhint(from: &mut Hints, hints: &[Hint]) {
    for hint in hints {
        from.remove(&index::key::hint(hint).0);
    }
}

/// The ids hinted in `set`, from a snapshot of an in-memory index.
pub(crate) fn hinted(hints: &Hints, set: Set) -> Vec<Result<DelegationId, ReadError>> {
    let kind = index::key::set(set);
    hints
        .range(vec![kind]..)
        .take_while(|(key, _)| key.first() == Some(&kind))
        .map(|(key, _)| index::key::entry_id(key.get(1..).unwrap_or_default(), key))
        .collect()
}

/// The link from `from` in an in-memory index.
pub(crate) fn link(hints: &Hints, from: &DelegationId) -> Result<Option<DelegationId>, ReadError> {
    let key = index::key::of(index::key::LINK, from);
    hints
        .get(&key)
        .map(|to| index::key::entry_id(to, &key))
        .transpose()
}

/// A store that lives in memory and is gone when dropped. `flush` does nothing.
#[derive(Debug, Default)]
pub struct Memory {
    image: Mutex<Image>,
    hints: Mutex<Hints>,
}

impl Memory {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn image(&self) -> MutexGuard<'_, Image> {
        // A panic while holding the lock cannot leave the map half-updated: every
        // mutation is a single push or insert. So a poisoned lock is still sound.
        self.image
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn hints(&self) -> MutexGuard<'_, Hints> {
        // As for the image: every mutation is a single insert or removal.
        self.hints
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Index for Memory {
    fn hint(&self, hints: &[Hint]) -> Result<()> {
        hint(&mut self.hints(), hints);
        Ok(())
    }

    fn unhint(&self, hints: &[Hint]) -> Result<()> {
        unhint(&mut self.hints(), hints);
        Ok(())
    }

    fn hinted(
        &self,
        set: Set,
    ) -> Box<dyn Iterator<Item = Result<DelegationId, ReadError>> + Send + '_> {
        Box::new(hinted(&self.hints(), set).into_iter())
    }

    fn link(&self, from: &DelegationId) -> Result<Option<DelegationId>, ReadError> {
        link(&self.hints(), from)
    }
}

impl Store for Memory {
    fn append(&self, appends: &[Append<'_>]) -> Result<(), AppendError> {
        append(&mut self.image(), appends)
    }

    fn head(&self, id: &DelegationId) -> Result<Option<Head>, ReadError> {
        Ok(self
            .image()
            .get(&key::prefix(id))
            .and_then(|(_, slot)| slot.head.clone()))
    }

    fn history(&self, id: &DelegationId) -> Result<Stream, ReadError> {
        Ok(stream(&self.image(), id))
    }

    fn scan(&self) -> Box<dyn Iterator<Item = Result<Stream, ReadError>> + Send + '_> {
        let ids = self.image().values().map(|(id, _)| id.clone()).collect();
        scan(ids, move |id| self.history(id))
    }

    fn flush(&self) -> Result<()> {
        Ok(())
    }

    fn index(&self) -> Option<&dyn Index> {
        Some(self)
    }
}
