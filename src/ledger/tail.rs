//! Following a ledger across processes by polling: a key-set of each delegation's
//! last seq seen, compared with the log at each poll, so no commit order matters.
//!
//! A reader that tails a shared log by one growing sequence skips the rows whose
//! transactions commit after a later number is already visible (Marten's
//! hazard). A [`Tail`] keeps no global position: it remembers, for every
//! delegation, the last seq it has handed out, and each [`Tail::poll`] reads
//! every delegation whole and in step with its head ([`Store::scan`]) and hands
//! out the records past that seq. A delegation's records become visible in seq
//! order (an append is conditional on the head before it), so what a poll sees
//! of one delegation is always a prefix of its history: a record that commits
//! late is simply found by the next poll, and none is handed out twice.
//!
//! Cost: each poll reads the whole log, and the key-set holds one entry per
//! delegation.
//!
//! [`Store::scan`]: crate::store::Store::scan

use std::collections::HashMap;

use crate::error::ReadError;
use crate::event::{DelegationId, Record, Seq};

use super::Ledger;
use super::stream::{Chain, decode_stream, fold_records};

/// A reader's place in a log: the last seq it has seen of each delegation.
#[derive(Clone, Debug, Default)]
pub struct Tail {
    seen: HashMap<DelegationId, Seq>,
}

impl Tail {
    /// A tail that has seen nothing: its first poll hands out the whole log.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many delegations it has seen.
    pub fn delegations(&self) -> usize {
        self.seen.len()
    }

    /// The records of `ledger` this tail has not handed out yet: for each
    /// delegation, in the store's order, its records past the last seq seen, in
    /// seq order; each decoded and checked as `export` checks it (envelope, key,
    /// chain, head).
    ///
    /// # Errors
    /// [`ReadError::Storage`], or [`ReadError::Corrupt`] (or
    /// [`ReadError::UnknownVersion`]) for a damaged delegation: the poll then
    /// hands out nothing and the tail stays where it was, so the next poll tries
    /// again; [`ReadError::Poisoned`] on a poisoned ledger.
    pub fn poll(&mut self, ledger: &Ledger) -> Result<Vec<Record>, ReadError> {
        ledger.check_poisoned()?;
        // What this poll moved, so that a failed poll hands out nothing and
        // leaves the tail where it was.
        let mut moved: Vec<(DelegationId, Seq)> = Vec::new();
        let polled = self.poll_moving(ledger, &mut moved);
        if polled.is_err() {
            for (id, seen) in moved {
                if seen == 0 {
                    self.seen.remove(&id);
                } else {
                    self.seen.insert(id, seen);
                }
            }
        }
        polled
    }

    fn poll_moving(
        &mut self,
        ledger: &Ledger,
        moved: &mut Vec<(DelegationId, Seq)>,
    ) -> Result<Vec<Record>, ReadError> {
        let format = ledger.format();
        let mut fresh = Vec::new();
        for stream in ledger.store().scan() {
            let stream = stream?;
            let seen = self.seen.get(&stream.id).copied().unwrap_or(0);
            let last = stream.entries.last().map_or(0, |entry| entry.seq);
            if last <= seen {
                continue;
            }
            let records = decode_stream(&stream)?;
            fold_records(&stream, &records, Chain::Verify, format)?;
            fresh.extend(records.into_iter().filter(|record| record.seq > seen));
            moved.push((stream.id.clone(), seen));
            self.seen.insert(stream.id, last);
        }
        Ok(fresh)
    }
}
