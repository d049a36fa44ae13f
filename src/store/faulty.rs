//! An in-memory store with seeded faults, for deterministic crash tests.
//!
//! It keeps two images: the **live** one, which reads see, and the **durable** one,
//! which is what survives a crash. An append changes the live image and joins the
//! pending list; a flush copies the pending appends into the durable image. A crash
//! throws the live image away and starts again from the durable one.
//!
//! A group written by [`Store::append`] (records with their heads) is one pending
//! write: a flush makes all of it durable, a crash loses all of it. A torn crash
//! models a disk worse than sled's recovery assumes: the last pending write of a
//! single record reaches the durable image cut short and without its head, so
//! that tests can check that such damage is found; a group of several is dropped
//! whole, as sled's recovery drops a batch it did not seal.
//!
//! Its index ([`Index`]) is kept the same way, in the same order: a hint or its
//! removal joins the pending list like an append, so a crash keeps a prefix of
//! the writes, in order, as sled's recovery does. [`Fault::FailHint`] fails
//! the next index write, and the random write failures
//! ([`Faulty::with_rates`]) hit index writes as they hit appends.

use std::sync::{Mutex, MutexGuard};

use super::index::{Hint, Index, Set};
use super::memory::{self, Hints, Image};
use super::{Append, AppendError, Expect, Head, Store, Stream, key};
use crate::error::{Error, ReadError, Result};
use crate::event::DelegationId;

/// A fault to inject into the next matching operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Fault {
    /// The next append fails with an I/O error and writes nothing.
    FailWrite,
    /// The next write of the index (a hint written or removed, [`Index`])
    /// fails with an I/O error and writes nothing.
    FailHint,
    /// The next flush fails with an I/O error and makes nothing durable.
    FailFlush,
}

#[derive(Clone, Debug)]
struct Pending {
    id: DelegationId,
    expect: Expect,
    record: Vec<u8>,
    head: Vec<u8>,
}

/// One write not yet flushed.
#[derive(Clone, Debug)]
enum Write {
    /// A group of [`Store::append`].
    Group(Vec<Pending>),
    /// [`Index::hint`].
    Hint(Vec<Hint>),
    /// [`Index::unhint`].
    Unhint(Vec<Hint>),
}

#[derive(Debug)]
struct State {
    live: Image,
    durable: Image,
    live_hints: Hints,
    durable_hints: Hints,
    /// Writes not yet flushed, in order.
    pending: Vec<Write>,
    armed: Vec<Fault>,
    rng: u64,
    write_fail_per_mille: u16,
    flush_fail_per_mille: u16,
}

impl State {
    /// splitmix64: small, seeded and good enough to pick faults.
    fn next(&mut self) -> u64 {
        self.rng = self.rng.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn roll(&mut self, per_mille: u16) -> bool {
        per_mille > 0 && self.next() % 1000 < u64::from(per_mille)
    }

    fn take(&mut self, fault: Fault) -> bool {
        match self.armed.iter().position(|armed| *armed == fault) {
            Some(at) => {
                self.armed.remove(at);
                true
            }
            None => false,
        }
    }
}

/// A seeded, fault-injecting store with separate live and durable images.
///
/// The same seed and the same calls give the same run.
///
/// ```
/// use delegation_log::store::{Fault, Faulty};
///
/// let store = Faulty::seeded(7);
/// store.inject(Fault::FailFlush);
/// // ... drive a ledger over `store`, then:
/// store.crash();
/// ```
#[derive(Debug)]
pub struct Faulty {
    state: Mutex<State>,
}

impl Default for Faulty {
    fn default() -> Self {
        Self::seeded(0)
    }
}

impl Faulty {
    /// A store with no random faults, whose tears are chosen by `seed`.
    pub fn seeded(seed: u64) -> Self {
        Self {
            state: Mutex::new(State {
                live: Image::new(),
                durable: Image::new(),
                live_hints: Hints::new(),
                durable_hints: Hints::new(),
                pending: Vec::new(),
                armed: Vec::new(),
                rng: seed,
                write_fail_per_mille: 0,
                flush_fail_per_mille: 0,
            }),
        }
    }

    /// Makes appends and flushes fail at random, at these rates per thousand.
    pub fn with_rates(self, write_fail_per_mille: u16, flush_fail_per_mille: u16) -> Self {
        {
            let mut state = self.state();
            state.write_fail_per_mille = write_fail_per_mille;
            state.flush_fail_per_mille = flush_fail_per_mille;
        }
        self
    }

    /// Arms a one-shot fault for the next matching operation.
    pub fn inject(&self, fault: Fault) {
        self.state().armed.push(fault);
    }

    /// Simulates a crash: every unflushed append is lost.
    pub fn crash(&self) {
        let mut state = self.state();
        state.live = state.durable.clone();
        state.live_hints = state.durable_hints.clone();
        state.pending.clear();
        state.armed.clear();
    }

    /// Simulates a crash during the last unflushed write: the writes before it
    /// reached the disk, and it reaches the durable image torn, cut at a seeded
    /// length, without its head. A group of several appends is never torn apart:
    /// as the last write it is lost whole. Returns whether there was a pending
    /// write to tear.
    ///
    /// Hints written after the torn append are lost with it; those before it
    /// reached the disk.
    pub fn crash_tearing(&self) -> bool {
        let mut state = self.state();
        let Some(at) = state
            .pending
            .iter()
            .rposition(|write| matches!(write, Write::Group(_)))
        else {
            drop(state);
            self.crash();
            return false;
        };
        state.pending.truncate(at.saturating_add(1));
        let Some(Write::Group(mut last)) = state.pending.pop() else {
            drop(state);
            self.crash();
            return false;
        };
        let before = std::mem::take(&mut state.pending);
        let State {
            durable,
            durable_hints,
            ..
        } = &mut *state;
        make_durable(durable, durable_hints, before);
        let single = last.len() == 1;
        let Some(last) = last.pop().filter(|_| single) else {
            drop(state);
            self.crash();
            return true;
        };
        let len = u64::try_from(last.record.len().max(1)).unwrap_or(1);
        let cut = usize::try_from(state.next() % len).unwrap_or(0);
        let torn = last.record.get(..cut).unwrap_or_default();
        let slot = memory::slot(&mut state.durable, &last.id);
        memory::push(slot, last.expect.next(), torn, None);
        drop(state);
        self.crash();
        true
    }

    /// How many appends are not yet durable (a group counts each of its appends).
    pub fn pending(&self) -> usize {
        self.state()
            .pending
            .iter()
            .map(|write| match write {
                Write::Group(group) => group.len(),
                Write::Hint(_) | Write::Unhint(_) => 0,
            })
            .sum()
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // Every mutation under the lock is completed before it is released, so a
        // poisoned lock still guards a consistent state.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Copies flushed writes into the durable image and index, in order.
fn make_durable(durable: &mut Image, hints: &mut Hints, writes: Vec<Write>) {
    for write in writes {
        match write {
            Write::Group(group) => make_group_durable(durable, group),
            Write::Hint(written) => memory::hint(hints, &written),
            Write::Unhint(removed) => memory::unhint(hints, &removed),
        }
    }
}

/// Copies one flushed group into the durable image.
fn make_group_durable(durable: &mut Image, group: Vec<Pending>) {
    for write in group {
        let slot = memory::slot(durable, &write.id);
        let seq = write.expect.next();
        let head = Head {
            seq,
            summary: write.head,
        };
        memory::push(slot, seq, &write.record, Some(head));
    }
}

fn injected(what: &str) -> Error {
    std::io::Error::other(format!("injected {what} failure")).into()
}

impl Store for Faulty {
    fn append(&self, appends: &[Append<'_>]) -> Result<(), AppendError> {
        let mut state = self.state();
        let rate = state.write_fail_per_mille;
        if state.take(Fault::FailWrite) || state.roll(rate) {
            return Err(injected("write").into());
        }
        memory::append(&mut state.live, appends)?;
        if !appends.is_empty() {
            let group = appends
                .iter()
                .map(|append| Pending {
                    id: append.id.clone(),
                    expect: append.expect,
                    record: append.record.to_vec(),
                    head: append.head.to_vec(),
                })
                .collect();
            state.pending.push(Write::Group(group));
        }
        Ok(())
    }

    fn head(&self, id: &DelegationId) -> Result<Option<Head>, ReadError> {
        Ok(self
            .state()
            .live
            .get(&key::prefix(id))
            .and_then(|(_, slot)| slot.head.clone()))
    }

    fn history(&self, id: &DelegationId) -> Result<Stream, ReadError> {
        Ok(memory::stream(&self.state().live, id))
    }

    fn scan(&self) -> Box<dyn Iterator<Item = Result<Stream, ReadError>> + Send + '_> {
        let ids = self
            .state()
            .live
            .values()
            .map(|(id, _)| id.clone())
            .collect();
        memory::scan(ids, move |id| self.history(id))
    }

    fn flush(&self) -> Result<()> {
        let mut state = self.state();
        let rate = state.flush_fail_per_mille;
        let pending = std::mem::take(&mut state.pending);
        if state.take(Fault::FailFlush) || state.roll(rate) {
            // As after a failed fsync, the dirty pages are gone: the pending appends
            // stay visible in the live image but never become durable.
            return Err(injected("flush"));
        }
        let State {
            durable,
            durable_hints,
            ..
        } = &mut *state;
        make_durable(durable, durable_hints, pending);
        Ok(())
    }

    fn index(&self) -> Option<&dyn Index> {
        Some(self)
    }
}

impl Faulty {
    /// Whether the next index write fails, by an armed fault or the random
    /// write rate.
    fn write_fails(state: &mut State) -> bool {
        let rate = state.write_fail_per_mille;
        state.take(Fault::FailHint) || state.roll(rate)
    }
}

impl Index for Faulty {
    fn hint(&self, hints: &[Hint]) -> Result<()> {
        let mut state = self.state();
        if Self::write_fails(&mut state) {
            return Err(injected("hint write"));
        }
        memory::hint(&mut state.live_hints, hints);
        state.pending.push(Write::Hint(hints.to_vec()));
        Ok(())
    }

    fn unhint(&self, hints: &[Hint]) -> Result<()> {
        let mut state = self.state();
        if Self::write_fails(&mut state) {
            return Err(injected("hint removal"));
        }
        memory::unhint(&mut state.live_hints, hints);
        state.pending.push(Write::Unhint(hints.to_vec()));
        Ok(())
    }

    fn hinted(
        &self,
        set: Set,
    ) -> Box<dyn Iterator<Item = Result<DelegationId, ReadError>> + Send + '_> {
        Box::new(memory::hinted(&self.state().live_hints, set).into_iter())
    }

    fn link(&self, from: &DelegationId) -> Result<Option<DelegationId>, ReadError> {
        memory::link(&self.state().live_hints, from)
    }
}
