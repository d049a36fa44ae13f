//! Format 1: records and heads in two trees, each head the last record's seq and
//! chain hash. Read, never written: a store of format 1 is upcast when read and
//! migrated to format 3 by [`Sled::migrate`](super::Sled::migrate).

use super::{corrupt_key, read_error};
use crate::error::ReadError;
use crate::event::DelegationId;
use crate::store::{Entry, Head, Stream, key};

/// The two trees of format 1.
#[derive(Clone, Debug)]
pub(super) struct Trees {
    pub(super) records: sled::Tree,
    pub(super) heads: sled::Tree,
}

/// The trees' names.
pub(super) const RECORDS: &str = "records";
/// The heads tree's name.
pub(super) const HEADS: &str = "heads";

impl Trees {
    /// One delegation's records and head.
    pub(super) fn history(&self, id: &DelegationId) -> Result<Stream, ReadError> {
        let mut entries = Vec::with_capacity(2);
        for item in self.records.scan_prefix(key::prefix(id)) {
            let (raw, value) = item.map_err(read_error)?;
            let (found, seq) = key::parse(&raw).map_err(|reason| corrupt_key(&raw, reason))?;
            if &found != id {
                return Err(corrupt_key(&raw, format!("key of `{found}` under `{id}`")));
            }
            entries.push(Entry {
                seq,
                bytes: value.to_vec(),
            });
        }
        Ok(Stream {
            id: id.clone(),
            entries,
            head: self.stored_head(id)?,
        })
    }

    /// One delegation's head. Format 1 wrote a record before its head, so a
    /// process killed between the two left a delegation whose record has no head
    /// yet: its head is then the last record's seq with an empty summary, which
    /// tells the ledger to fold the history. [`Trees::history`] shows the head
    /// as stored.
    pub(super) fn head(&self, id: &DelegationId) -> Result<Option<Head>, ReadError> {
        if let Some(head) = self.stored_head(id)? {
            return Ok(Some(head));
        }
        match self.records.scan_prefix(key::prefix(id)).next_back() {
            None => Ok(None),
            Some(item) => {
                let (raw, _) = item.map_err(read_error)?;
                let (_, seq) = key::parse(&raw).map_err(|reason| corrupt_key(&raw, reason))?;
                Ok(Some(Head {
                    seq,
                    summary: Vec::new(),
                }))
            }
        }
    }

    /// One delegation's head as stored in the heads tree.
    fn stored_head(&self, id: &DelegationId) -> Result<Option<Head>, ReadError> {
        let raw = self.heads.get(key::prefix(id)).map_err(read_error)?;
        raw.map(|raw| decode_head(id, &raw)).transpose()
    }

    /// Every delegation.
    pub(super) fn scan(&self) -> Scan {
        Scan {
            records: self.records.iter().peekable(),
            heads: self.heads.iter().peekable(),
        }
    }
}

/// A format 1 head: exactly a seq and a 32-byte chain hash.
fn decode_head(id: &DelegationId, raw: &[u8]) -> Result<Head, ReadError> {
    Head::decode(raw)
        .filter(|head| head.summary.len() == 32)
        .ok_or_else(|| ReadError::Corrupt {
            key: format!("head of `{id}`"),
            reason: format!("{} bytes, not 40", raw.len()),
        })
}

/// A merge of the records tree, grouped by delegation, with the heads tree.
pub(super) struct Scan {
    records: std::iter::Peekable<sled::Iter>,
    heads: std::iter::Peekable<sled::Iter>,
}

impl Scan {
    /// The prefix of the next record key, or an error for an unreadable one.
    fn next_record_prefix(&mut self) -> Option<Result<(Vec<u8>, DelegationId), ReadError>> {
        let peeked = self.records.peek()?;
        match peeked {
            Err(_) => match self.records.next() {
                Some(Err(e)) => Some(Err(read_error(e))),
                _ => None,
            },
            Ok((raw, _)) => match key::parse(raw) {
                Ok((id, _)) => Some(Ok((key::prefix(&id), id))),
                Err(reason) => {
                    let error = corrupt_key(raw, reason);
                    self.records.next();
                    Some(Err(error))
                }
            },
        }
    }

    fn take_head(&mut self, prefix: &[u8], id: &DelegationId) -> Result<Option<Head>, ReadError> {
        match self.heads.peek() {
            Some(Ok((raw, _))) if raw.as_ref() == prefix => {}
            _ => return Ok(None),
        }
        match self.heads.next() {
            Some(Ok((_, value))) => decode_head(id, &value).map(Some),
            Some(Err(e)) => Err(read_error(e)),
            None => Ok(None),
        }
    }

    /// A head whose key sorts before the next records: a delegation whose records
    /// are all gone.
    fn orphan_head(&mut self, before: Option<&[u8]>) -> Option<Result<Stream, ReadError>> {
        let is_orphan = match (self.heads.peek()?, before) {
            (Err(_), _) => true,
            (Ok((raw, _)), Some(before)) => raw.as_ref() < before,
            (Ok(_), None) => true,
        };
        if !is_orphan {
            return None;
        }
        Some(match self.heads.next()? {
            Err(e) => Err(read_error(e)),
            Ok((raw, value)) => match key::parse_head(&raw) {
                Err(reason) => Err(corrupt_key(&raw, reason)),
                Ok(id) => decode_head(&id, &value).map(|head| Stream {
                    id,
                    entries: Vec::new(),
                    head: Some(head),
                }),
            },
        })
    }
}

impl Iterator for Scan {
    type Item = Result<Stream, ReadError>;

    fn next(&mut self) -> Option<Result<Stream, ReadError>> {
        let (prefix, id) = match self.next_record_prefix() {
            None => return self.orphan_head(None),
            Some(Err(error)) => return Some(Err(error)),
            Some(Ok(found)) => found,
        };
        if let Some(orphan) = self.orphan_head(Some(&prefix)) {
            return Some(orphan);
        }
        let mut entries = Vec::with_capacity(2);
        while let Some(Ok((raw, _))) = self.records.peek() {
            if !raw.starts_with(&prefix) {
                break;
            }
            let Some(Ok((raw, value))) = self.records.next() else {
                break;
            };
            match key::parse(&raw) {
                Ok((_, seq)) => entries.push(Entry {
                    seq,
                    bytes: value.to_vec(),
                }),
                Err(reason) => return Some(Err(corrupt_key(&raw, reason))),
            }
        }
        Some(
            self.take_head(&prefix, &id)
                .map(|head| Stream { id, entries, head }),
        )
    }
}
