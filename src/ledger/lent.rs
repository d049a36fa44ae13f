//! A fold over records read in place: what replay and the audit fold each
//! delegation with, without copying a record out of the store's buffers.

use crate::delegation::{Delegation, Outcome};
use crate::envelope::{self, EventRef, RecordRef};
use crate::event::{ChainHash, DelegationId, Seq};
use crate::lifecycle::{self, State};

/// A [`Fold`](crate::delegation::Fold) over records read in place ([`envelope::decode_lent`]): what
/// replay and the audit fold each delegation with. Where [`Fold`](crate::delegation::Fold) copies each record's fields into its
/// delegation as it applies it, this keeps the records it applied (a `queued`
/// and at most one outcome, the most a history holds) and builds the
/// [`Delegation`] once, at the end, from the same fields.
///
/// It checks what [`Fold::check`](crate::delegation::Fold::check) checks, in the same way: the delegation, the
/// sequence, the lifecycle machine and, if it verifies the chain, the hash.
/// Anything it does not take as the
/// common case (a refused record, an outcome before a `queued`, a second of
/// either) ends it with `None`: the caller then folds the records with
/// [`Fold`](crate::delegation::Fold), which says what is wrong.
pub(crate) struct LentFold<'a> {
    id: &'a str,
    state: State,
    seq: Seq,
    /// The chain hash of the last applied record.
    hash: ChainHash,
    /// Whether each record's hash is recomputed and compared, as
    /// [`Fold::new`](crate::delegation::Fold::new) does, or taken as stored, as [`Fold::trusting`](crate::delegation::Fold::trusting) does.
    verify_chain: bool,
    queued: Option<RecordRef<'a>>,
    outcome: Option<RecordRef<'a>>,
}

impl<'a> LentFold<'a> {
    /// An empty fold for the delegation `id` that takes each stored hash as
    /// the chain's ([`Fold::trusting`](crate::delegation::Fold::trusting)): what replay folds with.
    pub(crate) fn trusting(id: &'a str) -> Self {
        LentFold {
            id,
            state: State::Initial,
            seq: 0,
            hash: ChainHash::GENESIS,
            verify_chain: false,
            queued: None,
            outcome: None,
        }
    }

    /// An empty fold for the delegation `id` that recomputes every record's
    /// chain hash and compares it with the stored one ([`Fold::new`](crate::delegation::Fold::new)): what
    /// the audit folds with.
    pub(crate) fn verifying(id: &'a str) -> Self {
        LentFold {
            verify_chain: true,
            ..LentFold::trusting(id)
        }
    }

    /// The seq of the last applied record, 0 for none.
    pub(crate) fn seq(&self) -> Seq {
        self.seq
    }

    /// The state after the records applied so far.
    pub(crate) fn state(&self) -> State {
        self.state
    }

    /// Applies `record`, as [`Fold::apply`](crate::delegation::Fold::apply) would; `None` if it would refuse it
    /// (or the history is not the common case, above).
    pub(crate) fn apply(&mut self, record: RecordRef<'a>) -> Option<()> {
        if record.delegation != self.id || record.seq != self.seq.saturating_add(1) {
            return None;
        }
        let next = lifecycle::step(self.state, record.event.kind()).ok()?;
        if self.verify_chain && record.chain_hash(&self.hash)? != record.hash {
            return None;
        }
        let slot = match record.event {
            EventRef::Queued(_) => &mut self.queued,
            EventRef::Delivered(_) | EventRef::Failed(_) if self.queued.is_some() => {
                &mut self.outcome
            }
            EventRef::Delivered(_) | EventRef::Failed(_) => return None,
        };
        if slot.is_some() {
            return None;
        }
        self.state = next;
        self.seq = record.seq;
        self.hash = record.hash;
        *slot = Some(record);
        Some(())
    }

    /// Whether `summary` is exactly the head stored for the delegation folded
    /// so far ([`envelope::head::is_encoding_of`] it), checked without building
    /// the delegation. `false` before any record.
    pub(crate) fn is_head(&self, summary: &[u8]) -> bool {
        self.queued.as_ref().is_some_and(|queued| {
            envelope::head::is_head_of(summary, queued, self.outcome.as_ref(), self.state)
        })
    }

    /// The delegation, as [`Fold::into_delegation`](crate::delegation::Fold::into_delegation) gives it for the same
    /// records; `None` before any record.
    pub(crate) fn into_delegation(self) -> Option<Delegation> {
        let queued = self.queued?;
        let EventRef::Queued(fields) = queued.event else {
            return None;
        };
        let (settled_at, outcome, seq, hash) = match self.outcome {
            None => (None, None, queued.seq, queued.hash),
            Some(record) => {
                let outcome = match record.event {
                    EventRef::Delivered(delivered) => Outcome::Delivered {
                        http_status: delivered.http_status(),
                        remote: delivered.remote(),
                    },
                    EventRef::Failed(failed) => Outcome::Failed(failed.into_event()),
                    EventRef::Queued(_) => return None,
                };
                (Some(record.at), Some(outcome), record.seq, record.hash)
            }
        };
        Some(Delegation {
            id: DelegationId::try_from(self.id).ok()?,
            state: self.state,
            source: fields.source.to_owned(),
            target: fields.target.to_owned(),
            task: fields.task,
            retry_of: fields
                .retry_of
                .map(DelegationId::try_from)
                .transpose()
                .ok()?,
            attempt: fields.attempt.unwrap_or(1),
            not_before: fields.not_before,
            queued_at: queued.at,
            settled_at,
            outcome,
            seq,
            hash,
        })
    }
}
