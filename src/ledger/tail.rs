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
//! A scan is not one snapshot across delegations (PostgreSQL reads it in pages,
//! each its own), so a poll can read a delegation as `queued`, and then, past a
//! write that failed it and queued its retry, the retry. That retry is held
//! back: a tail never hands out a retry while the attempt it retries was last
//! handed out `queued`, or was itself held back by the same poll. The next poll
//! finds the failure and the retry both, in the store's order, which puts an
//! attempt before its retry. A retry is held back by one poll at most: if the
//! next still finds the attempt it retries `queued`, the log is damaged there
//! (`audit` names it), and the retry is handed out rather than hidden. A
//! one-shot reader calls [`Tail::poll_all`], which hands out what the first
//! poll held back.
//!
//! Cost: each poll reads the whole log, and the key-set holds one entry per
//! delegation, plus one per delegation last handed out `queued`.
//!
//! [`Store::scan`]: crate::store::Store::scan

use std::collections::{HashMap, HashSet};

use crate::error::ReadError;
use crate::event::{DelegationId, Event, Record, Seq};

use super::Ledger;
use super::stream::{Chain, decode_stream, fold_records};

/// A reader's place in a log: the last seq it has seen of each delegation.
#[derive(Clone, Debug, Default)]
pub struct Tail {
    seen: HashMap<DelegationId, Seq>,
    /// The delegations whose last record handed out is `queued`.
    open: HashSet<DelegationId>,
    /// The retries the last poll held back.
    held: HashSet<DelegationId>,
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
        self.poll_holding(ledger, true)
    }

    /// For a reader that reads once: [`Tail::poll`], and, if that held back a
    /// retry (written while the poll read the log), a second poll that holds
    /// nothing back, so that every record of the log as it stood is handed
    /// out, each attempt before its retry.
    ///
    /// # Errors
    /// As for [`Tail::poll`].
    pub fn poll_all(&mut self, ledger: &Ledger) -> Result<Vec<Record>, ReadError> {
        let mut records = self.poll(ledger)?;
        if !self.held.is_empty() {
            records.extend(self.poll_holding(ledger, false)?);
        }
        Ok(records)
    }

    fn poll_holding(&mut self, ledger: &Ledger, hold: bool) -> Result<Vec<Record>, ReadError> {
        ledger.check_poisoned()?;
        // What this poll moved, so that a failed poll hands out nothing and
        // leaves the tail where it was.
        let mut moved: Vec<(DelegationId, Seq, bool)> = Vec::new();
        let mut held = HashSet::new();
        let polled = self.poll_moving(ledger, &mut moved, hold.then_some(&mut held));
        if polled.is_ok() {
            self.held = held;
        } else {
            for (id, seen, open) in moved {
                if open {
                    self.open.insert(id.clone());
                } else {
                    self.open.remove(&id);
                }
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
        moved: &mut Vec<(DelegationId, Seq, bool)>,
        mut held: Option<&mut HashSet<DelegationId>>,
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
            // A retry of an attempt last handed out `queued` (or held back
            // by this poll) was written after this poll read that attempt:
            // it waits for the next poll, once.
            if let Some(held) = held.as_deref_mut()
                && seen == 0
                && !self.held.contains(&stream.id)
                && records.iter().any(|record| match &record.event {
                    Event::Queued(queued) => queued
                        .retry_of
                        .as_ref()
                        .is_some_and(|of| self.open.contains(of) || held.contains(of)),
                    _ => false,
                })
            {
                held.insert(stream.id);
                continue;
            }
            let open = matches!(
                records.last().map(|record| &record.event),
                Some(Event::Queued(_))
            );
            moved.push((stream.id.clone(), seen, self.open.contains(&stream.id)));
            if open {
                self.open.insert(stream.id.clone());
            } else {
                self.open.remove(&stream.id);
            }
            fresh.extend(records.into_iter().filter(|record| record.seq > seen));
            self.seen.insert(stream.id, last);
        }
        Ok(fresh)
    }
}
