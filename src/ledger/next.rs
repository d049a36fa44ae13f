//! The record that follows a delegation's fold: checked by the fold (and through
//! it by the lifecycle machine), chained to the last hash, encoded with its head.

use crate::delegation::{Fold, NotNext};
use crate::envelope;
use crate::error::{Error, Result};
use crate::event::{DelegationId, Event, Record, Timestamp};
use crate::lifecycle::Refusal;
use crate::store::Expect;

use super::appender::Owned;
use super::write::Recorded;

/// A record ready to append: the record that follows `fold` with `event` at `at`,
/// checked by the fold (and through it by the lifecycle machine), with its chain
/// hash, its encoding, and the head it leads to.
pub(super) struct Next {
    recorded: Recorded,
    bytes: Vec<u8>,
    head: Vec<u8>,
    record: Record,
}

impl Next {
    /// What this record acknowledges once written, its append after `fold`, and
    /// the record itself (for the followers, once acknowledged).
    pub(super) fn into_append(self, id: &DelegationId, fold: &Fold) -> (Recorded, Owned, Record) {
        let append = Owned {
            id: id.clone(),
            expect: Expect::after(fold.seq()),
            record: self.bytes,
            head: self.head,
        };
        (self.recorded, append, self.record)
    }
}

/// Builds the record that follows `fold`, if the fold allows it, and the head
/// after it. The chain hash is computed from the fold's last hash: no history is
/// read.
pub(super) fn next_record(fold: &Fold, event: Event, at: Timestamp) -> Result<Next> {
    let id = fold.id();
    let mut record = Record {
        delegation: id.clone(),
        seq: fold.seq().saturating_add(1),
        event,
        at,
        hash: None,
    };
    let refused = |not_next| match not_next {
        NotNext::Illegal(refusal) => Error::refused(id, refusal),
        other => Error::Corrupt {
            key: format!("delegation `{id}`"),
            reason: other.to_string(),
        },
    };
    // Checked before it has a hash, so the fold does not hash it a second time to
    // compare: the hash below is the chain's by construction.
    let state = fold.check(&record).map_err(refused)?;
    record.hash = Some(record.chain_hash(&fold.hash()));
    let mut after = fold.clone();
    after.apply(&record).map_err(refused)?;
    let head = after
        .delegation()
        .map(envelope::head::encode)
        .ok_or_else(|| {
            refused(NotNext::Illegal(Refusal::IllegalTransition {
                from: fold.state(),
                event: record.event.kind(),
            }))
        })?;
    Ok(Next {
        recorded: Recorded {
            seq: record.seq,
            at,
            state,
        },
        bytes: envelope::encode(&record),
        head,
        record,
    })
}
