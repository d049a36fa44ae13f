//! The stored form of a record: a versioned, checksummed binary envelope.
//!
//! Format version 1, every integer big-endian:
//!
//! | offset | size | field |
//! | --- | --- | --- |
//! | 0 | 1 | format version, `1` |
//! | 1 | 4 | CRC-32 (IEEE) of every byte from offset 5 to the end |
//! | 5 | 32 | the record's chain hash |
//! | 37 | rest | the record without its hash, as compact JSON (serde's field order) |
//!
//! Decoding is strict: the body must be exactly what [`encode`] writes for the record
//! it holds, so every stored record has one byte form and what decodes re-encodes to
//! the same bytes. An unknown version is refused as such, so a newer store opened
//! by an older crate fails loudly rather than misreading.

use crate::event::{ChainHash, Record};

/// The format version this crate writes.
pub const VERSION: u8 = 1;

/// The size of the fixed header before the JSON body.
pub const HEADER_LEN: usize = 1 + 4 + 32;

/// Why stored bytes are not a record.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// Fewer bytes than the header needs.
    #[error("truncated: {len} bytes, the header alone needs {HEADER_LEN}")]
    Truncated {
        /// How many bytes there were.
        len: usize,
    },
    /// A format version this crate does not know.
    #[error("unknown format version {found} (this crate reads up to {VERSION})")]
    UnknownVersion {
        /// The version byte found.
        found: u8,
    },
    /// The checksum does not match the bytes.
    #[error("checksum mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    Checksum {
        /// The checksum in the header.
        stored: u32,
        /// The checksum of the bytes.
        computed: u32,
    },
    /// The body is not a record.
    #[error("body is not a record: {0}")]
    Body(String),
    /// The body is a record, but not in the one byte form the encoder writes.
    #[error("body is not in canonical form")]
    NonCanonical,
    /// The record carries a hash inside its body, where none belongs.
    #[error("body carries a hash field")]
    HashInBody,
}

/// Encodes `record`, whose `hash` must be set, in the current format version.
///
/// A record without a hash is encoded with the all-zero hash, which no chain
/// produces, so audit will report it.
pub fn encode(record: &Record) -> Vec<u8> {
    let hash = record.hash.unwrap_or(ChainHash([0; 32]));
    let mut out = Vec::with_capacity(HEADER_LEN + 160);
    out.push(VERSION);
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&hash.0);
    write_body(record, &mut out);
    let checksum = crc32fast::hash(out.get(5..).unwrap_or_default());
    if let Some(slot) = out.get_mut(1..5) {
        slot.copy_from_slice(&checksum.to_be_bytes());
    }
    out
}

fn write_body(record: &Record, out: &mut Vec<u8>) {
    let body = Record {
        hash: None,
        ..record.clone()
    };
    // Serializing a record to a Vec cannot fail: every field is a string, an
    // integer or a parsed JSON value.
    let _ = serde_json::to_writer(out, &body);
}

/// Decodes stored bytes of any known format version into a record with its hash.
///
/// # Errors
/// A [`DecodeError`] naming the first thing wrong; never a panic.
pub fn decode(bytes: &[u8]) -> Result<Record, DecodeError> {
    let (&version, rest) = bytes
        .split_first()
        .ok_or(DecodeError::Truncated { len: 0 })?;
    match version {
        1 => decode_v1(bytes, rest),
        found => Err(DecodeError::UnknownVersion { found }),
    }
}

fn decode_v1(bytes: &[u8], rest: &[u8]) -> Result<Record, DecodeError> {
    let truncated = || DecodeError::Truncated { len: bytes.len() };
    let (stored, rest) = rest.split_first_chunk::<4>().ok_or_else(truncated)?;
    let stored = u32::from_be_bytes(*stored);
    let computed = crc32fast::hash(rest);
    let (hash, body) = rest.split_first_chunk::<32>().ok_or_else(truncated)?;
    if stored != computed {
        return Err(DecodeError::Checksum { stored, computed });
    }
    let record: Record =
        serde_json::from_slice(body).map_err(|e| DecodeError::Body(e.to_string()))?;
    if record.hash.is_some() {
        return Err(DecodeError::HashInBody);
    }
    let mut canonical = Vec::with_capacity(body.len());
    write_body(&record, &mut canonical);
    if canonical != body {
        return Err(DecodeError::NonCanonical);
    }
    Ok(Record {
        hash: Some(ChainHash(*hash)),
        ..record
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Event, FailureReason, Timestamp};

    fn sample() -> Record {
        let mut record = Record {
            delegation: "d-1".parse().unwrap(),
            seq: 2,
            event: Event::failed(FailureReason::HttpStatus(503), Some("busy".into())).unwrap(),
            at: Timestamp::from_unix_nanos(1_780_000_000_123_000_000),
            hash: None,
        };
        record.hash = Some(record.chain_hash(&ChainHash::GENESIS));
        record
    }

    #[test]
    fn encoded_records_decode_to_themselves() {
        let record = sample();
        assert_eq!(decode(&encode(&record)), Ok(record));
    }

    #[test]
    fn every_single_bit_flip_is_a_typed_error() {
        let bytes = encode(&sample());
        for bit in 0..bytes.len() * 8 {
            let mut flipped = bytes.clone();
            if let Some(byte) = flipped.get_mut(bit / 8) {
                *byte ^= 1 << (bit % 8);
            }
            let err = decode(&flipped).expect_err("a flipped bit must not decode");
            if bit < 8 {
                assert!(matches!(err, DecodeError::UnknownVersion { .. }), "{err}");
            } else {
                assert!(
                    matches!(err, DecodeError::Checksum { .. }),
                    "bit {bit}: {err}"
                );
            }
        }
    }

    #[test]
    fn every_truncation_is_a_typed_error() {
        let bytes = encode(&sample());
        for len in 0..bytes.len() {
            let err = decode(bytes.get(..len).unwrap()).expect_err("a truncation must not decode");
            assert!(
                matches!(
                    err,
                    DecodeError::Truncated { .. } | DecodeError::Checksum { .. }
                ),
                "{len}: {err}"
            );
        }
    }

    #[test]
    fn non_canonical_bodies_are_refused_even_with_a_valid_checksum() {
        let record = sample();
        let mut bytes = encode(&record);
        bytes.truncate(HEADER_LEN);
        let body = serde_json::to_string_pretty(&Record {
            hash: None,
            ..record
        })
        .unwrap();
        bytes.extend_from_slice(body.as_bytes());
        let checksum = crc32fast::hash(&bytes[5..]);
        bytes[1..5].copy_from_slice(&checksum.to_be_bytes());
        assert_eq!(decode(&bytes), Err(DecodeError::NonCanonical));
    }
}

/// TEMPORARY stub until the codec branch lands.
pub mod head {
    use super::DecodeError;
    use crate::delegation::Delegation;
    /// stub
    pub fn encode(_d: &Delegation) -> Vec<u8> {
        todo!()
    }
    /// stub
    pub fn decode(_b: &[u8]) -> Result<Delegation, DecodeError> {
        todo!()
    }
}
