//! One event of one delegation as the log holds it: the record, its canonical
//! bytes, and its link in the delegation's hash chain.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{ChainHash, DelegationId, Event, Seq, Timestamp};

/// One event of one delegation, as the log holds it.
///
/// Its serde form is one line of the portable JSON Lines format.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// Which delegation.
    pub delegation: DelegationId,
    /// Its position in the delegation's history, from 1.
    pub seq: Seq,
    /// What happened.
    #[serde(flatten)]
    pub event: Event,
    /// When it was recorded.
    pub at: Timestamp,
    /// The chain hash; always present in the store, optional in JSON Lines.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash: Option<ChainHash>,
}

impl Record {
    /// The canonical bytes behind the hash: RFC 8785 (JCS) JSON of the record
    /// without its `hash` field.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        super::canonical::to_vec(self)
    }

    /// The chain hash of this record, given the hash of the record before it
    /// ([`ChainHash::GENESIS`] for the first).
    pub fn chain_hash(&self, previous: &ChainHash) -> ChainHash {
        chain(previous, &self.canonical_bytes())
    }
}

/// The chain hash of a record whose canonical bytes are `canonical`, given the
/// hash of the record before it.
pub(crate) fn chain(previous: &ChainHash, canonical: &[u8]) -> ChainHash {
    let mut digest = Sha256::new();
    digest.update(previous.hex());
    digest.update(b"\n");
    digest.update(canonical);
    ChainHash(digest.finalize().into())
}
