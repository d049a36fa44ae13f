//! Migration: rewriting a sled store of an older format in the current one, in
//! place, checking every delegation as `audit` does first.

use std::path::Path;

use crate::envelope;
use crate::error::{Error, Result};
use crate::store::{self, Head};

use super::stream::{Chain, decode_stream, fold_records};
use crate::store::Hint;

/// What [`migrate`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Migration {
    /// Delegations rewritten; 0 if the store was already in the current format.
    pub delegations: u64,
    /// Records rewritten.
    pub records: u64,
    /// Whether the store was already in the current format and was left alone.
    pub already_current: bool,
}

/// Migrates the sled store at `path` to the current format, in place.
///
/// Every delegation is read and checked as `audit` checks it (every chain hash
/// recomputed, the head against the records); any damage stops the migration
/// before anything changes, naming the delegation. Each record is rewritten in
/// the current envelope (the chain hash is over the record, not its bytes, so
/// every hash stays valid and `export` writes the same bytes before and after),
/// with a head holding its summary. The switch is one synced write after
/// everything else is synced: a crash at any point leaves the store either as it
/// was or migrated, and running it again finishes the job. See
/// [`store::Sled::migrate`].
///
/// ```
/// # let dir = tempfile::tempdir()?;
/// # let path = dir.path().join("log");
/// # drop(delegation_log::Ledger::open(&path)?);
/// let migration = delegation_log::migrate(&path)?;
/// assert!(migration.already_current);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # Errors
/// [`OpenError::NotAStore`](crate::OpenError::NotAStore) if there is no store at `path`; [`Error::Corrupt`] (or
/// [`Error::UnknownVersion`]) for a damaged delegation, with the store left as it
/// was; a storage error.
pub fn migrate(path: impl AsRef<Path>) -> Result<Migration> {
    let mut records = 0u64;
    let migrated = store::Sled::migrate(path, &mut |stream, format| {
        let decoded = decode_stream(stream)?;
        let fold = fold_records(stream, &decoded, Chain::Verify, format)?;
        let mut entries = Vec::with_capacity(decoded.len());
        for record in &decoded {
            let bytes = envelope::encode(record);
            if envelope::decode(&bytes).as_ref() != Ok(record) {
                return Err(Error::Corrupt {
                    key: format!("delegation `{}` seq {}", record.delegation, record.seq),
                    reason: "the record does not survive re-encoding".to_owned(),
                });
            }
            entries.push(store::Entry {
                seq: record.seq,
                bytes,
            });
        }
        records += u64::try_from(entries.len()).unwrap_or(u64::MAX);
        let head = fold.delegation().map(|delegation| Head {
            seq: delegation.seq,
            summary: envelope::head::encode(delegation),
        });
        let hints = fold.delegation().map(Hint::standing).unwrap_or_default();
        Ok(store::sled::Migrated {
            entries,
            head,
            hints,
        })
    })?;
    Ok(Migration {
        delegations: migrated.unwrap_or(0),
        records,
        already_current: migrated.is_none(),
    })
}
