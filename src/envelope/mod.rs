//! The stored form of a record: a versioned, checksummed binary envelope; and, in
//! [`head`], the stored summary of a delegation.
//!
//! Every version shares one header, every integer in it big-endian:
//!
//! | offset | size | field |
//! | --- | --- | --- |
//! | 0 | 1 | format version |
//! | 1 | 4 | CRC-32 (IEEE) of every byte from offset 5 to the end |
//! | 5 | 32 | the record's chain hash |
//! | 37 | rest | the record without its hash |
//!
//! The versions differ in the body:
//!
//! - **Version 2**, which [`encode`] writes: the record as postcard 1.x (varint
//!   integers, length-prefixed UTF-8 strings) of a private mirror of its fields,
//!   in the order delegation, seq, at, event. An instant is its Unix seconds and
//!   nanoseconds, so every instant a [`Timestamp`](crate::event::Timestamp) holds
//!   fits; a task is its compact JSON text (serde_json's key order).
//! - **Version 1**: the record as compact JSON in serde's field order. It is still
//!   read, to the same [`Record`] it was written from, and written only by
//!   [`encode_v1`], for fixtures and migration tests.
//!
//! Decoding is strict: the body must be exactly what the encoder of its version
//! writes for the record it holds, so every stored record has one byte form and
//! what decodes re-encodes to the same bytes. A version-2 body must also pass the
//! rules the ledger checks before it writes ([`Event::validate`]), so it never
//! yields a record the ledger would have refused. An unknown version is refused as
//! such, so a newer store opened by an older crate fails loudly rather than
//! misreading.
//!
//! [`Event::validate`]: crate::event::Event::validate
//!
//! Not part of the crate's API: public, and hidden from its documentation, for the
//! crate's own tests, fuzz targets and benchmarks, which build and damage stored
//! bytes directly. `docs/store-format.md` documents the bytes for outside readers.

mod binary;
pub mod head;
#[cfg(test)]
pub(crate) mod testing;
mod v1;

pub(crate) use self::binary::{EventRef, RecordRef};

use crate::event::{ChainHash, Record};

/// The format version this crate writes.
pub const VERSION: u8 = 2;

/// The oldest format version this crate reads.
const V1: u8 = 1;

/// The size of the fixed header before the body, in every format version.
pub const HEADER_LEN: usize = 1 + 4 + 32;

/// Why stored bytes are not a record (or, from [`head::decode`], not a head).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// Fewer bytes than the header needs.
    #[error("truncated: {len} bytes, shorter than the header")]
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
    /// The body is not a record (or not a head), or one that breaks a rule of the
    /// format.
    #[error("body is not a record: {0}")]
    Body(String),
    /// The body is a record, but not in the one byte form the encoder writes.
    #[error("body is not in canonical form")]
    NonCanonical,
    /// The record carries a hash inside its body, where none belongs.
    #[error("body carries a hash field")]
    HashInBody,
}

/// Encodes `record`, whose `hash` must be set, in the current format version
/// ([`VERSION`]).
///
/// A record without a hash is encoded with the all-zero hash, which no chain
/// produces, so audit will report it. A `null` task is written as no task, as
/// the log stores, hashes and exports it.
pub fn encode(record: &Record) -> Vec<u8> {
    let out = header(VERSION, record, TYPICAL_LEN);
    let mut out = binary::write_body(record, out);
    write_checksum(&mut out);
    out
}

/// Encodes `record` in format version 1, JSON, exactly as crates that wrote
/// version 1 did.
///
/// For fixtures, tests and migration tests only: the store writes [`encode`]'s
/// version. [`decode`] reads what this writes back to the same record.
#[doc(hidden)]
pub fn encode_v1(record: &Record) -> Vec<u8> {
    let body = v1::body(record);
    let mut out = header(V1, record, HEADER_LEN + body.len());
    out.extend_from_slice(&body);
    write_checksum(&mut out);
    out
}

/// A record's header (`version`, a checksum to fill in, the hash) in a buffer of
/// `capacity`, for the body to follow.
fn header(version: u8, record: &Record, capacity: usize) -> Vec<u8> {
    let hash = record.hash.unwrap_or(ChainHash([0; 32]));
    let mut out = Vec::with_capacity(capacity);
    out.push(version);
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&hash.0);
    out
}

/// The buffer an encoding starts with: enough for a typical record or head
/// (under 140 bytes) without growing; a larger one (a long task) grows once or
/// twice.
const TYPICAL_LEN: usize = 192;

/// Decodes stored bytes of any known format version (1 or 2) into a record with
/// its hash. Both versions decode to the same [`Record`] for the same record.
///
/// # Errors
/// A [`DecodeError`] naming the first thing wrong, checked in this order: the
/// version, the length, the checksum, then the body; never a panic.
pub fn decode(bytes: &[u8]) -> Result<Record, DecodeError> {
    let (&version, _) = bytes
        .split_first()
        .ok_or(DecodeError::Truncated { len: 0 })?;
    let read_body: fn(&[u8]) -> Result<Record, DecodeError> = match version {
        V1 => v1::read,
        VERSION => binary::read,
        found => return Err(DecodeError::UnknownVersion { found }),
    };
    let rest = checked(bytes, HEADER_LEN)?;
    let (hash, body) = rest
        .split_first_chunk::<32>()
        .ok_or(DecodeError::Truncated { len: bytes.len() })?;
    let record = read_body(body)?;
    Ok(Record {
        hash: Some(ChainHash(*hash)),
        ..record
    })
}

/// Decodes stored bytes of the current format version in place: `Some` exactly
/// where [`decode`] gives a record of version 2, and then the same record, its
/// texts borrowed from `bytes` ([`RecordRef`]). `None` for anything else, a
/// record of version 1 included, which [`decode`] reads (or says what is
/// wrong with): for readers that go through many records and own none of them.
pub(crate) fn decode_lent(bytes: &[u8]) -> Option<RecordRef<'_>> {
    if bytes.first() != Some(&VERSION) {
        return None;
    }
    let rest = checked(bytes, HEADER_LEN).ok()?;
    let (hash, body) = rest.split_first_chunk::<32>()?;
    let record = binary::read_lent(body)?;
    Some(RecordRef {
        hash: ChainHash(*hash),
        ..record
    })
}

/// Writes the CRC-32 of `bytes[5..]` into `bytes[1..5]`, big-endian.
fn write_checksum(bytes: &mut [u8]) {
    let checksum = crc32fast::hash(bytes.get(5..).unwrap_or_default());
    if let Some(slot) = bytes.get_mut(1..5) {
        slot.copy_from_slice(&checksum.to_be_bytes());
    }
}

/// The bytes after the version and the checksum, once `bytes` is known to be at
/// least `header_len` long and its checksum matches.
fn checked(bytes: &[u8], header_len: usize) -> Result<&[u8], DecodeError> {
    let truncated = DecodeError::Truncated { len: bytes.len() };
    if bytes.len() < header_len {
        return Err(truncated);
    }
    let (stored, rest) = bytes
        .get(1..)
        .and_then(<[u8]>::split_first_chunk::<4>)
        .ok_or(truncated)?;
    let stored = u32::from_be_bytes(*stored);
    let computed = crc32fast::hash(rest);
    if stored != computed {
        return Err(DecodeError::Checksum { stored, computed });
    }
    Ok(rest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{
        DelegationId, Delivered, Event, Failed, FailureReason, Queued, Remote, RemoteKind,
        TaskState, Timestamp,
    };

    fn sealed(seq: u64, event: Event) -> Record {
        let mut record = Record {
            delegation: "d-1".parse().unwrap(),
            seq,
            event,
            at: Timestamp::from_unix_nanos(1_780_000_000_123_000_000),
            hash: None,
        };
        record.hash = Some(record.chain_hash(&ChainHash::GENESIS));
        record
    }

    fn sample() -> Record {
        sealed(
            2,
            Event::failed(FailureReason::HttpStatus(503), Some("busy".into())).unwrap(),
        )
    }

    /// A record of each kind, with and without each optional field, and every
    /// failure reason.
    fn samples() -> Vec<Record> {
        let retry = Queued {
            task: Some(serde_json::json!({"review": "pr-42", "lines": [1, 2.5, null]})),
            retry_of: Some("d-0".parse().unwrap()),
            attempt: Some(2),
            not_before: Some(Timestamp::from_unix_nanos(1_780_000_001_000_000_001)),
            ..Queued::new("planner", "http://127.0.0.1:8080/a2a")
        };
        let remote = Remote {
            kind: RemoteKind::Task,
            task_id: Some("t-1".into()),
            context_id: Some("c-1".into()),
            state: Some(TaskState::Other("TASK_STATE_WORKING".into())),
        };
        let mut records = vec![
            sealed(1, Event::queued("planner", "reviewer")),
            sealed(1, Event::Queued(retry)),
            sealed(2, Event::delivered(None).unwrap()),
            sealed(2, Event::delivered_with(Some(204), Some(remote)).unwrap()),
            sealed(
                2,
                Event::delivered_with(Some(200), Some(Remote::message())).unwrap(),
            ),
        ];
        for reason in [
            FailureReason::TargetOffline,
            FailureReason::HttpStatus(503),
            FailureReason::RpcError(-32601),
            FailureReason::RpcError(i64::MIN),
            FailureReason::Rejected,
            FailureReason::BadResponse,
            FailureReason::MarshalError,
            FailureReason::Timeout,
            FailureReason::Interrupted,
        ] {
            records.push(sealed(2, Event::failed(reason, None).unwrap()));
            records.push(sealed(
                2,
                Event::failed(reason, Some("ø\n".into())).unwrap(),
            ));
        }
        records
    }

    /// Seals `body` under `version` with a valid checksum.
    fn resealed(version: u8, hash: [u8; 32], body: &[u8]) -> Vec<u8> {
        let mut bytes = vec![version, 0, 0, 0, 0];
        bytes.extend_from_slice(&hash);
        bytes.extend_from_slice(body);
        write_checksum(&mut bytes);
        bytes
    }

    #[test]
    fn encoded_records_decode_to_themselves() {
        for record in samples() {
            let bytes = encode(&record);
            assert_eq!(bytes.first(), Some(&VERSION));
            assert_eq!(decode(&bytes), Ok(record));
        }
    }

    #[test]
    fn version_1_records_decode_to_the_same_record() {
        for record in samples() {
            let bytes = encode_v1(&record);
            assert_eq!(bytes.first(), Some(&1));
            assert_eq!(decode(&bytes).as_ref(), Ok(&record));
            assert_eq!(decode(&bytes), decode(&encode(&record)));
        }
    }

    #[test]
    fn a_record_without_a_hash_is_sealed_with_the_zero_hash() {
        let record = Record {
            hash: None,
            ..sample()
        };
        let decoded = decode(&encode(&record)).unwrap();
        assert_eq!(decoded.hash, Some(ChainHash([0; 32])));
    }

    #[test]
    fn a_null_task_is_stored_as_no_task() {
        let with_null = sealed(
            1,
            Event::Queued(Queued {
                task: Some(serde_json::Value::Null),
                ..Queued::new("a", "b")
            }),
        );
        let without = sealed(1, Event::queued("a", "b"));
        assert_eq!(encode(&with_null), encode(&without));
        assert_eq!(decode(&encode(&with_null)), Ok(without));
    }

    #[test]
    fn every_instant_a_timestamp_holds_round_trips() {
        use chrono::{DateTime, Utc};
        let leap = "2016-12-31T23:59:60.5Z".parse::<Timestamp>().unwrap();
        for at in [
            Timestamp::from(DateTime::<Utc>::MIN_UTC),
            Timestamp::from(DateTime::<Utc>::MAX_UTC),
            Timestamp::from_unix_nanos(i64::MIN),
            Timestamp::from_unix_nanos(i64::MAX),
            Timestamp::from_unix_nanos(-1),
            "2262-04-12T00:00:00Z".parse().unwrap(),
            "0000-01-01T00:00:00Z".parse().unwrap(),
            leap,
        ] {
            let record = Record { at, ..sample() };
            assert_eq!(decode(&encode(&record)), Ok(record), "{at}");
        }
    }

    /// Flips every bit of `bytes` in turn: a flip in the version byte must be an
    /// unknown version, any other a checksum mismatch. Shared by the record and
    /// head codecs, whose envelopes both start with a version and a CRC.
    pub(super) fn assert_every_bit_flip_is_typed<T: std::fmt::Debug>(
        bytes: &[u8],
        decode: impl Fn(&[u8]) -> Result<T, DecodeError>,
    ) {
        for bit in 0..bytes.len() * 8 {
            let mut flipped = bytes.to_vec();
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
    fn every_single_bit_flip_is_a_typed_error() {
        for bytes in [encode(&sample()), encode_v1(&sample())] {
            assert_every_bit_flip_is_typed(&bytes, decode);
        }
    }

    #[test]
    fn every_truncation_is_a_typed_error() {
        for bytes in [encode(&sample()), encode_v1(&sample())] {
            for len in 0..bytes.len() {
                let err =
                    decode(bytes.get(..len).unwrap()).expect_err("a truncation must not decode");
                assert!(
                    matches!(
                        err,
                        DecodeError::Truncated { .. } | DecodeError::Checksum { .. }
                    ),
                    "{len}: {err}"
                );
            }
        }
    }

    #[test]
    fn non_canonical_bodies_are_refused_even_with_a_valid_checksum() {
        let record = sample();
        let body = serde_json::to_string_pretty(&Record {
            hash: None,
            ..record.clone()
        })
        .unwrap();
        let pretty = resealed(1, [7; 32], body.as_bytes());
        assert_eq!(decode(&pretty), Err(DecodeError::NonCanonical));

        let body = binary::body(&record);
        let mut trailing = body.clone();
        trailing.push(0);
        assert_eq!(
            decode(&resealed(VERSION, [7; 32], &trailing)),
            Err(DecodeError::NonCanonical)
        );
        // The id's length, 3, as a two-byte varint: the same value, not minimal.
        let (&length, rest) = body.split_first().unwrap();
        assert_eq!(length, 3);
        let mut padded = vec![0x83, 0x00];
        padded.extend_from_slice(rest);
        assert_eq!(
            decode(&resealed(VERSION, [7; 32], &padded)),
            Err(DecodeError::NonCanonical)
        );
    }

    #[test]
    fn a_v2_body_that_breaks_a_rule_is_refused_as_such() {
        // The mirror itself holds no rules: a 2xx delivered status, written
        // through the binary form directly, must not decode.
        let record = sealed(
            2,
            Event::Delivered(Delivered {
                http_status: Some(503),
                remote: None,
            }),
        );
        let bytes = encode(&record);
        assert!(
            matches!(decode(&bytes), Err(DecodeError::Body(reason)) if reason.contains("503")),
            "{:?}",
            decode(&bytes)
        );
        let failed_2xx = sealed(
            2,
            Event::Failed(Failed {
                reason: FailureReason::HttpStatus(200),
                detail: None,
            }),
        );
        assert!(matches!(
            decode(&encode(&failed_2xx)),
            Err(DecodeError::Body(_))
        ));
        let retry_without_attempt = sealed(
            1,
            Event::Queued(Queued {
                retry_of: Some(DelegationId::try_from("x").unwrap()),
                ..Queued::new("a", "b")
            }),
        );
        assert!(matches!(
            decode(&encode(&retry_without_attempt)),
            Err(DecodeError::Body(_))
        ));
        let long_detail = sealed(
            2,
            Event::Failed(Failed {
                reason: FailureReason::Timeout,
                detail: Some("x".repeat(crate::event::MAX_TEXT_BYTES + 1)),
            }),
        );
        assert!(matches!(
            decode(&encode(&long_detail)),
            Err(DecodeError::Body(_))
        ));
    }

    #[test]
    fn unknown_versions_are_refused_before_anything_else() {
        for version in (0..=u8::MAX).filter(|v| ![1, 2].contains(v)) {
            assert_eq!(
                decode(&[version]),
                Err(DecodeError::UnknownVersion { found: version })
            );
        }
        assert_eq!(decode(&[]), Err(DecodeError::Truncated { len: 0 }));
        assert_eq!(decode(&[2, 0]), Err(DecodeError::Truncated { len: 2 }));
    }

    #[test]
    fn version_2_is_smaller_than_version_1() {
        for record in samples() {
            assert!(
                encode(&record).len() < encode_v1(&record).len(),
                "{record:?}"
            );
        }
    }
}
