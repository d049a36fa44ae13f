//! The index: hints of which delegations are open, which are dead, and which
//! attempt retries which, so that a sender's questions ("what is still
//! pending?", "what gave up?", "what came after this attempt?") are answered
//! without a scan of the whole log.
//!
//! # Hints, verified
//!
//! The index is **not** part of the log, and it is not written atomically with
//! it: on sled that would need an `apply_batch` on every append, two device
//! writes where a single-key append costs none of its own. Instead the ledger
//! keeps this contract:
//!
//! - a hint is written **before** the append it describes ([`Index::hint`]),
//!   as plain single-key writes, so that whenever the append is in the store,
//!   so is its hint (on sled because recovery keeps the log's order: see
//!   [`Sled`](super::Sled));
//! - an *open* hint is removed **after** the append that settles it
//!   ([`Index::unhint`]);
//! - every reader verifies each hint against the delegation's head, the
//!   authority: *open* ⇔ the head is `queued`; *link X → Y* ⇔ Y's head says
//!   `retry_of == X`; *dead X* ⇔ X's head is `failed` and X has no valid link.
//!
//! So a hint may be stale (its append failed, or a crash came before its
//! removal), never missing: an answer from the index can never be wrong, and
//! never incomplete. A stale hint costs one read until something cleans it.
//!
//! A store where a few more rows in the append's write cost nothing extra
//! (PostgreSQL, whose append is one statement either way) writes the hints
//! with the append instead
//! ([`Store::hints_with_appends`](super::Store::hints_with_appends)): then a
//! hint is there exactly when its append is, which keeps the contract above
//! the stronger.

use crate::delegation::Delegation;
use crate::error::{ReadError, Result};
use crate::event::DelegationId;
use crate::lifecycle::State;

/// One hint of the index.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Hint {
    /// The delegation may be open: `queued`, not settled (a retry waiting for
    /// its `not_before` included). Removed only by the write that settles it,
    /// which a store may rely on ([`Store::append_hinted`](super::Store::append_hinted)).
    Open(DelegationId),
    /// The delegation may be dead: `failed`, and not retried.
    Dead(DelegationId),
    /// `to` may be the retry of `from` (the log links only backwards, by
    /// `retry_of`; this is the forward link).
    Link {
        /// The failed attempt.
        from: DelegationId,
        /// Its retry.
        to: DelegationId,
    },
}

impl Hint {
    /// The hints of a delegation as it stands (what a migration writes): open
    /// if `queued`, dead if `failed` (a migration drops the dead hint of an
    /// attempt that is retried), and the link from the attempt it retries.
    pub(crate) fn standing(delegation: &Delegation) -> Vec<Hint> {
        let id = &delegation.id;
        let mut hints = Vec::with_capacity(2);
        match delegation.state {
            State::Queued => hints.push(Hint::Open(id.clone())),
            State::Failed => hints.push(Hint::Dead(id.clone())),
            State::Initial | State::Delivered => {}
        }
        if let Some(original) = &delegation.retry_of {
            hints.push(Hint::Link {
                from: original.clone(),
                to: id.clone(),
            });
        }
        hints
    }
}

/// A set of hints [`Index::hinted`] lists.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Set {
    /// [`Hint::Open`].
    Open,
    /// [`Hint::Dead`].
    Dead,
}

/// The index a store keeps beside its log ([`Store::index`](super::Store::index)).
///
/// Every method is a plain write or read of the index alone; none is atomic with
/// an append. Writers call [`Index::hint`] before the append a hint describes and
/// [`Index::unhint`] after the append that makes it stale, unless the store
/// writes them with the append itself
/// ([`Store::hints_with_appends`](super::Store::hints_with_appends)); readers
/// verify every hint against the heads (see the [module docs](self)).
pub trait Index: Send + Sync {
    /// Writes `hints`; writing a hint that is there already changes nothing.
    /// A [`Hint::Link`] replaces any link from the same `from`.
    ///
    /// Written before the append they describe: once this returns, a crash that
    /// keeps the append keeps the hints.
    ///
    /// # Errors
    /// A storage error; some of the hints may have been written. The append they
    /// describe must not be made.
    fn hint(&self, hints: &[Hint]) -> Result<()>;

    /// Removes `hints` (a [`Hint::Link`] by its `from` alone); removing one that
    /// is not there changes nothing.
    ///
    /// # Errors
    /// A storage error; the hints left are stale, which readers tolerate.
    fn unhint(&self, hints: &[Hint]) -> Result<()>;

    /// Every delegation hinted in `set`, in the index's order. A damaged index
    /// entry gives an error item and the listing goes on.
    fn hinted(
        &self,
        set: Set,
    ) -> Box<dyn Iterator<Item = Result<DelegationId, ReadError>> + Send + '_>;

    /// The delegation hinted as the retry of `from`, one read.
    ///
    /// # Errors
    /// [`ReadError::Storage`], or [`ReadError::Corrupt`] for a stored link that
    /// does not hold an id.
    fn link(&self, from: &DelegationId) -> Result<Option<DelegationId>, ReadError>;
}

/// The index's keys, as the sled and in-memory stores write them: one byte for
/// the kind (`o` open, `d` dead, `l` link) and the id's bytes; a link's value
/// is the retry's id.
pub(crate) mod key {
    use super::{Hint, Set};
    use crate::error::ReadError;
    use crate::event::DelegationId;

    /// The kind byte of an open hint.
    pub(crate) const OPEN: u8 = b'o';
    /// The kind byte of a dead hint.
    pub(crate) const DEAD: u8 = b'd';
    /// The kind byte of a link.
    pub(crate) const LINK: u8 = b'l';

    /// The key of `kind` for `id`.
    pub(crate) fn of(kind: u8, id: &DelegationId) -> Vec<u8> {
        let bytes = id.as_str().as_bytes();
        let mut out = Vec::with_capacity(1 + bytes.len());
        out.push(kind);
        out.extend_from_slice(bytes);
        out
    }

    /// The key of `hint`, and its value (a link's retry id; empty otherwise).
    pub(crate) fn hint(hint: &Hint) -> (Vec<u8>, Vec<u8>) {
        match hint {
            Hint::Open(id) => (of(OPEN, id), Vec::new()),
            Hint::Dead(id) => (of(DEAD, id), Vec::new()),
            Hint::Link { from, to } => (of(LINK, from), to.as_str().as_bytes().to_vec()),
        }
    }

    /// The kind byte of `set`.
    pub(crate) fn set(set: Set) -> u8 {
        match set {
            Set::Open => OPEN,
            Set::Dead => DEAD,
        }
    }

    /// The id in a key or a link's value (without its kind byte).
    pub(crate) fn id(bytes: &[u8]) -> Result<DelegationId, String> {
        let text = std::str::from_utf8(bytes).map_err(|e| format!("id is not UTF-8: {e}"))?;
        DelegationId::try_from(text).map_err(|e| e.to_string())
    }

    /// The id an index entry under `key` holds in `bytes` (its key without the
    /// kind byte, or a link's value), or the damage of the entry.
    pub(crate) fn entry_id(bytes: &[u8], key: &[u8]) -> Result<DelegationId, ReadError> {
        id(bytes).map_err(|reason| {
            ReadError::corrupt(format!("index key {}", crate::store::key::hex(key)), reason)
        })
    }
}
