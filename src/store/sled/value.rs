//! Format 3's one value per delegation: its head, then its records, framed.
//!
//! ```text
//! version   u8        1
//! seq       u64 BE    the head's seq: the seq of the last record
//! summary   u32 BE length, then the ledger's opaque summary
//! records   for seq 1..=seq: u32 BE length, then the record's bytes
//! ```
//!
//! Every integer is big-endian. Records carry no seq of their own: the n-th frame
//! is seq n, and there are exactly as many frames as the head's seq, with nothing
//! after the last. A value whose framing disagrees with that (a length that runs
//! past the end, a frame too few or too many, bytes left over) is damaged, and
//! every read says so as [`ReadError::Corrupt`] naming the delegation; an unknown
//! version byte is [`ReadError::UnknownVersion`]. A head is read from the prefix alone
//! ([`head`]), so that `status` decodes no record.
//!
//! Not part of the crate's API: public, and hidden from its documentation, for
//! the crate's own tests, which read and damage stored values directly.

use crate::error::ReadError;
use crate::event::{DelegationId, Seq};
use crate::store::{Entry, Head};

/// The version byte that opens every value of this layout.
pub const VERSION: u8 = 1;

/// The bytes before the summary: version, seq and the summary's length.
const PREFIX: usize = 1 + 8 + 4;

/// A value's head, and its records still framed, borrowed from the value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Parsed<'a> {
    /// The head's seq.
    pub seq: Seq,
    /// The head's summary.
    pub summary: &'a [u8],
    /// The records' frames, in seq order, checked to be exactly `seq` of them.
    pub records: &'a [u8],
}

impl<'a> Parsed<'a> {
    /// The head.
    pub fn head(&self) -> Head {
        Head {
            seq: self.seq,
            summary: self.summary.to_vec(),
        }
    }

    /// The records, each under its seq.
    pub fn entries(&self) -> Vec<Entry> {
        self.frames()
            .map(|(seq, bytes)| Entry {
                seq,
                bytes: bytes.to_vec(),
            })
            .collect()
    }

    /// The records, each under its seq, borrowed from the value.
    pub fn frames(&self) -> Frames<'a> {
        Frames {
            rest: self.records,
            seq: 0,
        }
    }
}

/// The records of a [`Parsed`] value, in seq order, each borrowed with its seq.
#[derive(Clone, Debug)]
pub struct Frames<'a> {
    rest: &'a [u8],
    seq: Seq,
}

impl<'a> Iterator for Frames<'a> {
    type Item = (Seq, &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        // `parse` checked the frames; a frame that would not split ends the walk.
        let (bytes, after) = frame(self.rest)?;
        self.rest = after;
        self.seq += 1;
        Some((self.seq, bytes))
    }
}

/// The value of a delegation whose head is `seq` with `summary`, and whose
/// records are the frames `records` (as [`Parsed::records`] holds them)
/// followed by `next`, if any.
pub fn encode(seq: Seq, summary: &[u8], records: &[u8], next: Option<&[u8]>) -> Vec<u8> {
    let extra = next.map_or(0, |next| 4 + next.len());
    let mut out = Vec::with_capacity(PREFIX + summary.len() + records.len() + extra);
    out.push(VERSION);
    out.extend_from_slice(&seq.to_be_bytes());
    out.extend_from_slice(&length(summary).to_be_bytes());
    out.extend_from_slice(summary);
    out.extend_from_slice(records);
    if let Some(next) = next {
        push_frame(&mut out, next);
    }
    out
}

/// The value of a delegation with `head` and `entries`, which must be seqs
/// 1..=`head.seq` in order (a migration writes it whole).
///
/// # Errors
/// [`ReadError::Corrupt`] naming `id` if the entries' seqs are not exactly
/// 1..=`head.seq`: that layout cannot hold them.
pub fn encode_whole(
    id: &DelegationId,
    head: &Head,
    entries: &[Entry],
) -> Result<Vec<u8>, ReadError> {
    let mut records = Vec::with_capacity(entries.iter().map(|e| 4 + e.bytes.len()).sum());
    for (at, entry) in (1..).zip(entries) {
        if entry.seq != at {
            return Err(corrupt(
                id,
                format!("record seq {} where seq {at} belongs", entry.seq),
            ));
        }
        push_frame(&mut records, &entry.bytes);
    }
    let count = u64::try_from(entries.len()).unwrap_or(u64::MAX);
    if count != head.seq {
        return Err(corrupt(
            id,
            format!("{count} records under a head at seq {}", head.seq),
        ));
    }
    Ok(encode(head.seq, &head.summary, &records, None))
}

/// The head of the value `raw` of `id`, read from its prefix alone.
///
/// # Errors
/// [`ReadError::UnknownVersion`] for a version byte other than [`VERSION`];
/// [`ReadError::Corrupt`] naming `id` for a value too short for its head.
pub fn head(id: &DelegationId, raw: &[u8]) -> Result<Head, ReadError> {
    let (seq, summary, _) = split_head(id, raw)?;
    Ok(Head {
        seq,
        summary: summary.to_vec(),
    })
}

/// The head of the value `raw` of `id`, read from its prefix alone and
/// borrowed from it: its seq and summary.
///
/// # Errors
/// As for [`head`].
pub fn head_ref<'a>(id: &DelegationId, raw: &'a [u8]) -> Result<(Seq, &'a [u8]), ReadError> {
    split_head(id, raw).map(|(seq, summary, _)| (seq, summary))
}

/// The seq of the head of the value `raw` of `id`, without copying anything.
///
/// # Errors
/// As for [`head`].
pub fn head_seq(id: &DelegationId, raw: &[u8]) -> Result<Seq, ReadError> {
    split_head(id, raw).map(|(seq, _, _)| seq)
}

/// The value `raw` of `id`, every frame checked against the head.
///
/// # Errors
/// As for [`head`]; [`ReadError::Corrupt`] naming `id` for framing that is
/// truncated or disagrees with the head's seq.
pub fn parse<'a>(id: &DelegationId, raw: &'a [u8]) -> Result<Parsed<'a>, ReadError> {
    check_frames(raw).map_err(|damage| damage.named(id))
}

/// The value `raw`, checked as [`parse`] checks it, without naming its
/// delegation: `None` exactly where [`parse`] gives an error. For a scan that
/// reads the value in place and, should it be damaged, asks [`parse`] for the
/// error.
pub fn parse_lent(raw: &[u8]) -> Option<Parsed<'_>> {
    check_frames(raw).ok()
}

/// The value `raw` of `id` as a head and its records.
///
/// # Errors
/// As for [`parse`].
pub fn decode(id: &DelegationId, raw: &[u8]) -> Result<(Head, Vec<Entry>), ReadError> {
    let parsed = parse(id, raw)?;
    Ok((parsed.head(), parsed.entries()))
}

/// What is wrong with a value, before it is told with its delegation's id.
enum Damage {
    Empty,
    Version(u8),
    /// Too short for its head: the value's length.
    TooShort(usize),
    /// The frame of this record runs past the end, with this many bytes left.
    Runs(Seq, usize),
    /// The head's seq, and the number of frames.
    Count(Seq, Seq),
}

impl Damage {
    fn named(self, id: &DelegationId) -> ReadError {
        match self {
            Damage::Empty => corrupt(id, "the value is empty".to_owned()),
            Damage::Version(found) => ReadError::UnknownVersion {
                key: format!("delegation `{id}`"),
                found,
            },
            Damage::TooShort(len) => corrupt(id, format!("{len} bytes, too short for its head")),
            Damage::Runs(record, left) => corrupt(
                id,
                format!(
                    "the frame of record {record} runs past the end of the value ({left} bytes left)"
                ),
            ),
            Damage::Count(seq, count) => corrupt(
                id,
                format!("the head says seq {seq}, and the value holds {count} records"),
            ),
        }
    }
}

/// [`parse`], its damage not yet named.
fn check_frames(raw: &[u8]) -> Result<Parsed<'_>, Damage> {
    let (seq, summary, records) = split_raw(raw)?;
    let mut rest = records;
    let mut count: Seq = 0;
    while !rest.is_empty() {
        let Some((_, after)) = frame(rest) else {
            return Err(Damage::Runs(count + 1, rest.len()));
        };
        count += 1;
        rest = after;
    }
    if count != seq {
        return Err(Damage::Count(seq, count));
    }
    Ok(Parsed {
        seq,
        summary,
        records,
    })
}

/// Version, seq, summary and the rest of the value.
fn split_head<'a>(
    id: &DelegationId,
    raw: &'a [u8],
) -> Result<(Seq, &'a [u8], &'a [u8]), ReadError> {
    split_raw(raw).map_err(|damage| damage.named(id))
}

/// [`split_head`], its damage not yet named.
fn split_raw(raw: &[u8]) -> Result<(Seq, &[u8], &[u8]), Damage> {
    let Some((&version, rest)) = raw.split_first() else {
        return Err(Damage::Empty);
    };
    if version != VERSION {
        return Err(Damage::Version(version));
    }
    let too_short = || Damage::TooShort(raw.len());
    let (seq, rest) = rest.split_first_chunk::<8>().ok_or_else(too_short)?;
    let (len, rest) = rest.split_first_chunk::<4>().ok_or_else(too_short)?;
    let len = usize::try_from(u32::from_be_bytes(*len)).map_err(|_| too_short())?;
    let (summary, records) = rest.split_at_checked(len).ok_or_else(too_short)?;
    Ok((u64::from_be_bytes(*seq), summary, records))
}

/// The first frame of `bytes` and what follows it; `None` if it is cut short.
fn frame(bytes: &[u8]) -> Option<(&[u8], &[u8])> {
    let (len, rest) = bytes.split_first_chunk::<4>()?;
    let len = usize::try_from(u32::from_be_bytes(*len)).ok()?;
    rest.split_at_checked(len)
}

fn push_frame(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&length(bytes).to_be_bytes());
    out.extend_from_slice(bytes);
}

/// A length as framed. Records and summaries are far below 4 GiB (the ledger
/// bounds a task's size); a longer one could not be framed, and saturates, so
/// that its value fails to parse rather than misread.
fn length(bytes: &[u8]) -> u32 {
    u32::try_from(bytes.len()).unwrap_or(u32::MAX)
}

fn corrupt(id: &DelegationId, reason: String) -> ReadError {
    ReadError::Corrupt {
        key: format!("delegation `{id}`"),
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id() -> DelegationId {
        "d".parse().unwrap()
    }

    #[test]
    fn a_value_with_two_records_decodes_to_its_head_and_records() {
        let one = encode(1, b"s1", &[], Some(b"r1"));
        let parsed = parse(&id(), &one).unwrap();
        let two = encode(2, b"s2", parsed.records, Some(b"second"));
        let (head, entries) = decode(&id(), &two).unwrap();
        assert_eq!(head.seq, 2);
        assert_eq!(head.summary, b"s2");
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0].bytes, b"r1");
        assert_eq!(entries[1].seq, 2);
        assert_eq!(entries[1].bytes, b"second");
    }

    #[test]
    fn every_truncation_of_a_value_is_a_typed_error_naming_the_delegation() {
        let one = encode(1, b"summary", &[], Some(b"record one"));
        let records = parse(&id(), &one).unwrap().records.to_vec();
        let value = encode(2, b"summary", &records, Some(b"record two"));
        for cut in 0..value.len() {
            match parse(&id(), &value[..cut]) {
                Err(ReadError::Corrupt { key, .. }) => assert_eq!(key, "delegation `d`"),
                other => panic!("cut at {cut}: {other:?}"),
            }
        }
    }

    #[test]
    fn a_truncated_frame_is_named_by_its_record_and_the_bytes_left() {
        let one = encode(1, b"summary", &[], Some(b"record one"));
        let records = parse(&id(), &one).unwrap().records.to_vec();
        let value = encode(2, b"summary", &records, Some(b"record two"));
        // The last byte of record two's frame cut off.
        match parse(&id(), &value[..value.len() - 1]) {
            Err(ReadError::Corrupt { reason, .. }) => assert!(
                reason.starts_with("the frame of record 2 runs past the end of the value"),
                "{reason}"
            ),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn an_unknown_version_byte_is_refused_as_such() {
        let mut value = encode(1, b"s", &[], Some(b"r"));
        value[0] = 9;
        assert!(matches!(
            head(&id(), &value),
            Err(ReadError::UnknownVersion { found: 9, .. })
        ));
    }
}
