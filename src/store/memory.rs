//! An in-memory store.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, MutexGuard};

use super::{Append, Entry, Expect, Head, Store, Stream, key};
use crate::error::{Error, Result};
use crate::event::DelegationId;

/// One delegation's records and head, as the in-memory stores keep them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Slot {
    pub(crate) entries: Vec<Entry>,
    pub(crate) head: Option<Head>,
}

/// Delegations in key order, exactly as sled orders them.
pub(crate) type Image = BTreeMap<Vec<u8>, (DelegationId, Slot)>;

/// Appends to an image, with the same checks as every store.
pub(crate) fn append(
    image: &mut Image,
    id: &DelegationId,
    expect: Expect,
    record: &[u8],
    head: Head,
) -> Result<()> {
    let slot = slot(image, id);
    let actual = slot.entries.last().map(|entry| entry.seq);
    if actual
        != match expect {
            Expect::Empty => None,
            Expect::At(seq) => Some(seq),
        }
    {
        return Err(Error::Conflict {
            id: id.clone(),
            expected: expect,
            actual,
        });
    }
    push(slot, expect.next(), record, Some(head));
    Ok(())
}

/// Appends a group to an image, all or nothing: every expectation is checked (in
/// order, each against the appends before it) before anything is written.
pub(crate) fn append_all(image: &mut Image, appends: &[Append<'_>]) -> Result<()> {
    let mut heads: HashMap<&DelegationId, Option<crate::event::Seq>> = HashMap::new();
    for append in appends {
        let actual = match heads.get(append.id) {
            Some(seq) => *seq,
            None => image
                .get(&key::prefix(append.id))
                .and_then(|(_, slot)| slot.entries.last())
                .map(|entry| entry.seq),
        };
        let expected = match append.expect {
            Expect::Empty => None,
            Expect::At(seq) => Some(seq),
        };
        if actual != expected {
            return Err(Error::Conflict {
                id: append.id.clone(),
                expected: append.expect,
                actual,
            });
        }
        heads.insert(append.id, Some(append.expect.next()));
    }
    for append in appends {
        push(
            slot(image, append.id),
            append.expect.next(),
            append.record,
            Some(append.head),
        );
    }
    Ok(())
}

/// Writes a record into a slot without any check, as a disk writes what it is told.
pub(crate) fn push(slot: &mut Slot, seq: crate::event::Seq, record: &[u8], head: Option<Head>) {
    slot.entries.push(Entry {
        seq,
        bytes: record.to_vec(),
    });
    if let Some(head) = head
        && slot.head.is_none_or(|old| old.seq < head.seq)
    {
        slot.head = Some(head);
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
        head: slot.and_then(|slot| slot.head),
    }
}

/// Every stream of an image, from a snapshot of its ids.
pub(crate) fn scan<'a, F>(
    ids: Vec<DelegationId>,
    read: F,
) -> Box<dyn Iterator<Item = Result<Stream>> + Send + 'a>
where
    F: Fn(&DelegationId) -> Result<Stream> + Send + 'a,
{
    Box::new(ids.into_iter().map(move |id| read(&id)))
}

/// A store that lives in memory and is gone when dropped. `flush` does nothing.
#[derive(Debug, Default)]
pub struct Memory {
    image: Mutex<Image>,
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
}

impl Store for Memory {
    fn append(&self, id: &DelegationId, expect: Expect, record: &[u8], head: Head) -> Result<()> {
        append(&mut self.image(), id, expect, record, head)
    }

    fn append_all(&self, appends: &[Append<'_>]) -> Result<()> {
        append_all(&mut self.image(), appends)
    }

    fn history(&self, id: &DelegationId) -> Result<Stream> {
        Ok(stream(&self.image(), id))
    }

    fn scan(&self) -> Box<dyn Iterator<Item = Result<Stream>> + Send + '_> {
        let ids = self.image().values().map(|(id, _)| id.clone()).collect();
        scan(ids, move |id| self.history(id))
    }

    fn flush(&self) -> Result<()> {
        Ok(())
    }
}
