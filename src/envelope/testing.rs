//! For unit tests only: a delegation's history sealed as the ledger writes it,
//! for tests that damage stored bytes and compare two ways of reading them.

use crate::delegation::Fold;
use crate::event::{DelegationId, Event, Record, Timestamp};

/// The records of `events` as the history of `id` (chained, encoded), and its
/// head's summary, as the ledger writes them. Record `seq` is stamped
/// 250 ns after the one before.
pub(crate) fn sealed(id: &str, events: Vec<Event>) -> (DelegationId, Vec<Vec<u8>>, Vec<u8>) {
    let id: DelegationId = id.parse().expect("a test's delegation id");
    let mut fold = Fold::new(id.clone());
    let mut records = Vec::new();
    for (event, seq) in events.into_iter().zip(1..) {
        let mut record = Record {
            delegation: id.clone(),
            seq,
            event,
            at: Timestamp::from_unix_nanos(1_780_000_000_000_000_000 + seq as i64 * 250),
            hash: None,
        };
        record.hash = Some(record.chain_hash(&fold.hash()));
        fold.apply(&record).expect("a test's history is legal");
        records.push(super::encode(&record));
    }
    let summary = super::head::encode(fold.delegation().expect("a test's history is not empty"));
    (id, records, summary)
}
