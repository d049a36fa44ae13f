//! The ledger's side of the store's [`Index`](crate::store::Index): which hints
//! each record needs, written before its append and removed after (or handed
//! to the append, on a store that writes them with it), and each hint read
//! back verified against the heads.

use std::collections::HashMap;

use crate::delegation::Delegation;
use crate::error::{ReadError, Result};
use crate::event::{DelegationId, Event, Queued};
use crate::lifecycle::State;
use crate::store::Hint;

use super::Ledger;

/// The hints of one record of `id`: to write before its append, and to remove
/// after it.
#[derive(Clone, Debug, Default)]
pub(crate) struct Hints {
    pub(crate) before: Vec<Hint>,
    pub(crate) after: Vec<Hint>,
}

impl Hints {
    /// The hints of `event`, appended to `id`:
    /// - a `queued` makes `id` open, and a retry links its original to it and
    ///   (after) ends the original's open and dead hints;
    /// - a `failed` makes `id` dead (before) and ends its open hint (after);
    /// - a `delivered` ends its open hint (after).
    ///
    /// The `failed` that [`Ledger::retry`] writes with its retry is not dead:
    /// `retry` takes only the hints of the retry's `queued`.
    pub(crate) fn of(id: &DelegationId, event: &Event) -> Self {
        match event {
            Event::Queued(Queued { retry_of, .. }) => match retry_of {
                None => Hints {
                    before: vec![Hint::Open(id.clone())],
                    after: Vec::new(),
                },
                Some(original) => Hints {
                    before: vec![
                        Hint::Link {
                            from: original.clone(),
                            to: id.clone(),
                        },
                        Hint::Open(id.clone()),
                    ],
                    after: vec![Hint::Open(original.clone()), Hint::Dead(original.clone())],
                },
            },
            Event::Delivered(_) => Hints {
                before: Vec::new(),
                after: vec![Hint::Open(id.clone())],
            },
            Event::Failed(_) => Hints {
                before: vec![Hint::Dead(id.clone())],
                after: vec![Hint::Open(id.clone())],
            },
        }
    }
}

impl Ledger {
    /// Writes `hints` before the append they describe. A failed write poisons
    /// the ledger, as a failed append does: the store failed.
    pub(crate) fn hint(&self, hints: &[Hint]) -> Result<()> {
        match self.inner.store.index() {
            Some(index) if !hints.is_empty() => index.hint(hints).map_err(|e| self.poison(e)),
            _ => Ok(()),
        }
    }

    /// Writes the hints of an append that must come before it, and answers
    /// `Hints::default()`; or, on a store whose index writes hints with its
    /// appends ([`Store::hints_with_appends`](crate::store::Store::hints_with_appends)),
    /// writes nothing and answers `hints`, to go with the append.
    pub(crate) fn hint_before(&self, hints: &Hints) -> Result<Hints> {
        if self.hints_with_appends() {
            return Ok(hints.clone());
        }
        self.hint(&hints.before)?;
        Ok(Hints::default())
    }

    /// Removes the hints an acknowledged append made stale, unless the store
    /// removed them with it ([`Ledger::hint_before`]).
    pub(crate) fn unhint_after(&self, hints: &Hints) {
        if !self.hints_with_appends() {
            self.unhint(&hints.after);
        }
    }

    fn hints_with_appends(&self) -> bool {
        self.inner.store.hints_with_appends()
    }

    /// Removes `hints` after the append that made them stale. A failure is
    /// left alone: the append is acknowledged, and a stale hint is only a read
    /// that readers verify away.
    pub(crate) fn unhint(&self, hints: &[Hint]) {
        if let Some(index) = self.inner.store.index()
            && !hints.is_empty()
        {
            let _ = index.unhint(hints);
        }
    }

    /// Delegation `id` as its head says (one read), `None` if the log has none.
    pub(super) fn summary_of(&self, id: &DelegationId) -> Result<Option<Delegation>, ReadError> {
        Ok(self.resume(id)?.into_delegation())
    }

    /// The retry of `from`, verified: the delegation the index links `from` to,
    /// if its head says it retries `from` (an index get and a head get). On a
    /// store without an index, `links` is asked instead (built by a scan, once
    /// per question).
    pub(super) fn retry_of(
        &self,
        from: &DelegationId,
        links: &mut Links,
    ) -> Result<Option<Delegation>, ReadError> {
        let to = match self.inner.store.index() {
            Some(index) => index.link(from)?,
            None => links.get(self)?.get(from).cloned(),
        };
        let Some(to) = to else {
            return Ok(None);
        };
        Ok(self
            .summary_of(&to)?
            .filter(|retry| retry.retry_of.as_ref() == Some(from)))
    }
}

impl Ledger {
    /// Removes the stale dead hints of the index, those that can never be true
    /// again: a dead hint whose delegation was delivered or retried. A dead hint
    /// is written again before every plain `failed` it announces, so removing
    /// one loses nothing. Returns how many hints were removed; 0 on a store
    /// without an index. Recovery runs it after settling.
    ///
    /// Open hints stay, even for a delegation whose head reads settled: after a
    /// failed flush, a reopened store may show a settlement that never reached
    /// the disk and that a crash takes back, while the hint's removal, written
    /// later, would reach it; the delegation would then be `queued` with no
    /// hint, and `pending` would never list it again. Nothing writes an open
    /// hint anew, so one is removed only by the write that settles its
    /// delegation, after that write is acknowledged. A stale open hint costs a
    /// read of its head when `pending` is asked, which leaves it out.
    ///
    /// # Errors
    /// A storage error, or [`Error::Corrupt`](crate::Error::Corrupt) for a
    /// damaged head or index entry; the hints removed before it stay removed.
    pub fn clean_index(&self) -> Result<u64> {
        self.check_poisoned()?;
        let Some(index) = self.inner.store.index() else {
            return Ok(0);
        };
        let mut stale = Vec::new();
        let mut links = Links::default();
        for id in index.hinted(crate::store::index::Set::Dead) {
            let id = id?;
            let delivered = self
                .summary_of(&id)?
                .is_some_and(|delegation| delegation.state == State::Delivered);
            if delivered || self.retry_of(&id, &mut links)?.is_some() {
                stale.push(Hint::Dead(id));
            }
        }
        index.unhint(&stale)?;
        Ok(u64::try_from(stale.len()).unwrap_or(u64::MAX))
    }
}

/// The forward links of a store without an index, from one scan made the
/// first time they are asked for.
#[derive(Debug, Default)]
pub(super) struct Links(Option<HashMap<DelegationId, DelegationId>>);

impl Links {
    /// Whether the links were listed (by a scan) rather than read from an
    /// index: then they are as the log was when listed, and a head read since
    /// may be newer.
    pub(super) fn listed(&self) -> bool {
        self.0.is_some()
    }

    fn get(&mut self, ledger: &Ledger) -> Result<&HashMap<DelegationId, DelegationId>, ReadError> {
        if self.0.is_none() {
            let mut links = HashMap::new();
            for delegation in ledger.replay() {
                let delegation = delegation?;
                if let Some(original) = delegation.retry_of {
                    links.insert(original, delegation.id);
                }
            }
            self.0 = Some(links);
        }
        Ok(self.0.get_or_insert_with(HashMap::new))
    }
}
