//! Format 2: one tree, `log`, each delegation's head under [`key::head`] (seq 0)
//! and its records under [`key::record`], a record and its head written as one
//! `apply_batch`. Read, never written: a store of format 2 refuses appends with
//! [`Error::NeedsMigration`](crate::Error::NeedsMigration) and is migrated to
//! format 3 by [`Sled::migrate`](super::Sled::migrate).

use super::{corrupt_key, read_error};
use crate::error::ReadError;
use crate::event::{DelegationId, Seq};
use crate::store::{Entry, Head, Stream, key};

/// The tree of format 2.
pub(super) const LOG: &str = "log";

/// The tree of format 2.
#[derive(Clone, Debug)]
pub(super) struct Log {
    pub(super) tree: sled::Tree,
}

impl Log {
    /// One delegation's head and records, by a prefix scan.
    pub(super) fn history(&self, id: &DelegationId) -> Result<Stream, ReadError> {
        let mut stream = Stream {
            id: id.clone(),
            entries: Vec::with_capacity(2),
            head: None,
        };
        for item in self.tree.scan_prefix(key::prefix(id)) {
            let (raw, value) = item.map_err(read_error)?;
            let (found, seq) = key::parse(&raw).map_err(|reason| corrupt_key(&raw, reason))?;
            if &found != id {
                return Err(corrupt_key(&raw, format!("key of `{found}` under `{id}`")));
            }
            if seq == 0 {
                stream.head = Some(decode_head(id, &value)?);
            } else {
                stream.entries.push(Entry {
                    seq,
                    bytes: value.to_vec(),
                });
            }
        }
        Ok(stream)
    }

    /// One delegation's head, one get.
    pub(super) fn head(&self, id: &DelegationId) -> Result<Option<Head>, ReadError> {
        self.tree
            .get(key::head(id))
            .map_err(read_error)?
            .map(|raw| decode_head(id, &raw))
            .transpose()
    }

    /// Every delegation.
    pub(super) fn scan(&self) -> Scan {
        Scan {
            log: self.clone(),
            items: self.tree.iter().peekable(),
        }
    }
}

/// A head as stored, checked to hold at least its seq.
fn decode_head(id: &DelegationId, raw: &[u8]) -> Result<Head, ReadError> {
    Head::decode(raw).ok_or_else(|| ReadError::Corrupt {
        key: format!("head of `{id}`"),
        reason: format!("{} bytes, too short for its seq", raw.len()),
    })
}

/// The log tree, grouped by delegation: a head, then its records.
pub(super) struct Scan {
    log: Log,
    items: std::iter::Peekable<sled::Iter>,
}

impl Iterator for Scan {
    type Item = Result<Stream, ReadError>;

    fn next(&mut self) -> Option<Result<Stream, ReadError>> {
        let id = match self.items.peek()? {
            Err(_) => {
                let error = self.items.next()?.err()?;
                return Some(Err(read_error(error)));
            }
            Ok((raw, _)) => match key::parse(raw) {
                Ok((id, _)) => id,
                Err(reason) => {
                    let error = corrupt_key(raw, reason);
                    self.items.next();
                    return Some(Err(error));
                }
            },
        };
        let prefix = key::prefix(&id);
        let mut stream = Stream {
            id,
            entries: Vec::with_capacity(2),
            head: None,
        };
        let mut damage = None;
        while let Some(Ok((raw, _))) = self.items.peek() {
            if raw.len() != prefix.len() + 8 || !raw.starts_with(&prefix) {
                break;
            }
            let Some(Ok((raw, value))) = self.items.next() else {
                break;
            };
            let seq: Seq = raw
                .get(prefix.len()..)
                .and_then(|seq| seq.first_chunk::<8>())
                .map_or(0, |seq| u64::from_be_bytes(*seq));
            if seq == 0 {
                // A damaged head is the delegation's one error item: its records
                // are passed over with it.
                match decode_head(&stream.id, &value) {
                    Ok(head) => stream.head = Some(head),
                    Err(error) => damage = Some(error),
                }
            } else {
                stream.entries.push(Entry {
                    seq,
                    bytes: value.to_vec(),
                });
            }
        }
        if let Some(error) = damage {
            return Some(Err(error));
        }
        if stream.in_step() {
            return Some(Ok(stream));
        }
        // The store is read only, so nothing can be landing: a delegation out of
        // step is read again whole, as `history` gives it.
        Some(self.log.history(&stream.id))
    }
}
