//! Where records live: a small trait and its implementations.
//!
//! A [`Store`] keeps opaque record bytes under (delegation, seq) and knows nothing of
//! events or lifecycles; the [`Ledger`](crate::Ledger) decides what may be written.
//! The trait has five operations: append with an expected head, append to several
//! delegations at once (all or nothing, each with its own expected head), read one
//! delegation's history, scan everything in delegation order, and flush. Beside
//! the records, a store keeps a redundant **head** per delegation (its last seq and
//! chain hash), so that losing a delegation's last record is detectable.
//!
//! - [`Sled`]: the default, on disk.
//! - [`Memory`]: in memory, for tests and short-lived use.
//! - [`Faulty`]: in memory with seeded faults (failed writes and flushes, crashes,
//!   torn writes), for deterministic crash tests.
//!
//! A scale-out backend (PostgreSQL, FoundationDB) would implement the same trait:
//! `append` maps onto a conditional insert on (delegation, seq).

mod faulty;
mod memory;
pub mod sled;

use std::fmt;

pub use self::faulty::{Fault, Faulty};
pub use self::memory::Memory;
pub use self::sled::Sled;
use crate::error::Result;
use crate::event::{ChainHash, DelegationId, Seq};

/// What the caller believes a delegation's head to be when it appends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Expect {
    /// The delegation has no records: the append is seq 1.
    Empty,
    /// The delegation's last record is this seq: the append is seq + 1.
    At(Seq),
}

impl Expect {
    /// The seq the append will have.
    pub fn next(self) -> Seq {
        match self {
            Expect::Empty => 1,
            Expect::At(seq) => seq.saturating_add(1),
        }
    }

    /// The expectation for a delegation whose last seq is `seq` (0 for none).
    pub fn after(seq: Seq) -> Self {
        if seq == 0 {
            Expect::Empty
        } else {
            Expect::At(seq)
        }
    }
}

impl fmt::Display for Expect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expect::Empty => f.write_str("no records"),
            Expect::At(seq) => write!(f, "head at seq {seq}"),
        }
    }
}

/// A delegation's redundant head: its last seq and that record's chain hash.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Head {
    /// The seq of the last record.
    pub seq: Seq,
    /// The chain hash of the last record.
    pub hash: ChainHash,
}

impl Head {
    /// The size of an encoded head.
    pub const LEN: usize = 8 + 32;

    /// Big-endian seq, then the hash.
    pub fn encode(&self) -> [u8; Self::LEN] {
        let mut out = [0u8; Self::LEN];
        let (seq, hash) = out.split_at_mut(8);
        seq.copy_from_slice(&self.seq.to_be_bytes());
        hash.copy_from_slice(&self.hash.0);
        out
    }

    /// The inverse of [`Head::encode`]; `None` for bytes of the wrong length.
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        let (seq, hash) = bytes.split_first_chunk::<8>()?;
        let hash: [u8; 32] = hash.try_into().ok()?;
        Some(Head {
            seq: u64::from_be_bytes(*seq),
            hash: ChainHash(hash),
        })
    }
}

/// One stored record, still encoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The seq from the record's key.
    pub seq: Seq,
    /// The encoded record (see [`envelope`](crate::envelope)).
    pub bytes: Vec<u8>,
}

/// One delegation's stored records, in seq order, with its head.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stream {
    /// The delegation.
    pub id: DelegationId,
    /// Its records, in key order.
    pub entries: Vec<Entry>,
    /// Its redundant head, if the store has one.
    pub head: Option<Head>,
}

/// One append of a group written by [`Store::append_all`]: `record` as seq
/// `expect.next()` of `id`, raising its head to `head`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Append<'a> {
    /// The delegation.
    pub id: &'a DelegationId,
    /// What the caller believes its head to be.
    pub expect: Expect,
    /// The encoded record.
    pub record: &'a [u8],
    /// The head after the record.
    pub head: Head,
}

/// The storage behind a ledger.
///
/// Implementations must be safe to call from many threads, and `append` must be
/// atomic: of several appends with the same expectation, at most one succeeds.
pub trait Store: Send + Sync + 'static {
    /// Appends `record` as seq `expect.next()` of `id`, and sets the head to `head`.
    ///
    /// # Errors
    /// [`Error::Conflict`](crate::Error::Conflict) if the delegation's head is not
    /// `expect`; a storage error if the write failed.
    fn append(&self, id: &DelegationId, expect: Expect, record: &[u8], head: Head) -> Result<()>;

    /// Writes every append of `appends`, all or nothing: each is checked against
    /// its own expectation (in order, so a group may append twice to one
    /// delegation), and if any fails, nothing is written. A crash keeps all of the
    /// group or none of it, and a torn write never splits it: this is how one
    /// delegation's failure and the retry that replaces it reach the log together.
    /// An empty group writes nothing.
    ///
    /// # Errors
    /// [`Error::Conflict`](crate::Error::Conflict) for the first append whose
    /// delegation's head is not its expectation (nothing is written); a storage
    /// error if the write failed.
    fn append_all(&self, appends: &[Append<'_>]) -> Result<()>;

    /// One delegation's records and head; empty if it has none.
    ///
    /// # Errors
    /// A storage error, or [`Error::Corrupt`](crate::Error::Corrupt) for keys that
    /// do not parse.
    fn history(&self, id: &DelegationId) -> Result<Stream>;

    /// Every delegation, one at a time, in the store's order. A damaged key gives
    /// an error item, and the scan goes on past it.
    fn scan(&self) -> Box<dyn Iterator<Item = Result<Stream>> + Send + '_>;

    /// Makes every append so far durable on the device: it survives a process
    /// crash and a power cut. ([`Durability::Durable`](crate::Durability))
    ///
    /// # Errors
    /// A storage error; the caller must then treat unflushed appends as lost.
    fn flush(&self) -> Result<()>;

    /// Makes every append so far survive a crash of this process, but not
    /// necessarily a power cut: handed to the operating system, not synced to the
    /// device. ([`Durability::CrashSafe`](crate::Durability)) A store that cannot
    /// tell the two apart does the full [`Store::flush`], which is never weaker.
    ///
    /// # Errors
    /// As for [`Store::flush`].
    fn flush_crash_safe(&self) -> Result<()> {
        self.flush()
    }
}

/// Key layout shared by the stores: `u16` big-endian id length, the id's bytes,
/// then the `u64` big-endian seq. The length prefix keeps `ab` from matching the
/// prefix of `abc`; big-endian seqs keep a delegation's records in order.
pub mod key {
    use crate::event::{DelegationId, MAX_ID_LEN, Seq};

    /// The key prefix shared by every record of `id`, which is also its head's key.
    pub fn prefix(id: &DelegationId) -> Vec<u8> {
        let bytes = id.as_str().as_bytes();
        let mut out = Vec::with_capacity(2 + bytes.len() + 8);
        // Ids are at most 256 bytes, so the length always fits in a u16.
        let len = u16::try_from(bytes.len()).unwrap_or(u16::MAX);
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(bytes);
        out
    }

    /// The key of record `seq` of `id`.
    pub fn record(id: &DelegationId, seq: Seq) -> Vec<u8> {
        let mut out = prefix(id);
        out.extend_from_slice(&seq.to_be_bytes());
        out
    }

    /// Splits a record key into id and seq.
    ///
    /// # Errors
    /// A description of what is wrong with the key.
    pub fn parse(key: &[u8]) -> Result<(DelegationId, Seq), String> {
        let (len, rest) = key
            .split_first_chunk::<2>()
            .ok_or_else(|| "key shorter than its length prefix".to_owned())?;
        let len = usize::from(u16::from_be_bytes(*len));
        if len == 0 || len > MAX_ID_LEN {
            return Err(format!("id length {len} outside 1..={MAX_ID_LEN}"));
        }
        let (id, seq) = rest
            .split_at_checked(len)
            .ok_or_else(|| "key shorter than its id".to_owned())?;
        let seq: [u8; 8] = seq
            .try_into()
            .map_err(|_| format!("seq field is {} bytes, not 8", seq.len()))?;
        let id = std::str::from_utf8(id).map_err(|e| format!("id is not UTF-8: {e}"))?;
        let id = DelegationId::try_from(id).map_err(|e| e.to_string())?;
        Ok((id, u64::from_be_bytes(seq)))
    }

    /// Parses a head key (a prefix without a seq).
    ///
    /// # Errors
    /// A description of what is wrong with the key.
    pub fn parse_head(key: &[u8]) -> Result<DelegationId, String> {
        let (len, id) = key
            .split_first_chunk::<2>()
            .ok_or_else(|| "head key shorter than its length prefix".to_owned())?;
        if usize::from(u16::from_be_bytes(*len)) != id.len() {
            return Err("head key length prefix does not match".to_owned());
        }
        let id = std::str::from_utf8(id).map_err(|e| format!("id is not UTF-8: {e}"))?;
        DelegationId::try_from(id).map_err(|e| e.to_string())
    }

    /// Lowercase hex of a raw key, for error messages.
    pub fn hex(key: &[u8]) -> String {
        key.iter().map(|b| format!("{b:02x}")).collect()
    }
}
