//! Fuzzing the decoders: stored bytes never panic the record or head decoder,
//! and whatever decodes re-encodes to the same bytes.

use crate::envelope;

/// Decodes `bytes` as a stored record, and again as the body of a record of each
/// known format version (1, JSON; 2, postcard) sealed with a valid checksum, so
/// that the fuzzer reaches the strict body decoding without having to forge a
/// CRC-32. Does the same with a delegation's head: `bytes` as a head, and as a
/// head's body sealed with a valid checksum.
///
/// # Panics
/// If bytes that decode do not re-encode to themselves: two byte forms for one
/// record (or head) would let a stored record change without its checksum
/// noticing.
pub fn decode_record(bytes: &[u8]) {
    round_trip(bytes);
    head_round_trip(bytes);
    head_round_trip(&sealed(envelope::head::VERSION, &[], bytes));
    for version in [1, envelope::VERSION] {
        round_trip(&sealed(version, &[0x5a; 32], bytes));
    }
}

/// `body` behind a header of `version` and a valid CRC-32 of all that follows
/// it, `hash` first (a record's chain hash; a head has none).
fn sealed(version: u8, hash: &[u8], body: &[u8]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(5 + hash.len() + body.len());
    bytes.push(version);
    bytes.extend_from_slice(&[0; 4]);
    bytes.extend_from_slice(hash);
    bytes.extend_from_slice(body);
    let checksum = crc32fast::hash(bytes.get(5..).unwrap_or_default());
    if let Some(slot) = bytes.get_mut(1..5) {
        slot.copy_from_slice(&checksum.to_be_bytes());
    }
    bytes
}

/// Decodes `bytes` and, if they hold a record, re-encodes it in the version they
/// were written in.
fn round_trip(bytes: &[u8]) {
    if let Ok(record) = envelope::decode(bytes) {
        let again = match bytes.first() {
            Some(1) => envelope::encode_v1(&record),
            _ => envelope::encode(&record),
        };
        assert!(
            again == bytes,
            "{record:?} decoded from bytes it does not re-encode to"
        );
    }
}

/// Decodes `bytes` as a head and, if they hold one, re-encodes it.
fn head_round_trip(bytes: &[u8]) {
    if let Ok(delegation) = envelope::head::decode(bytes) {
        let again = envelope::head::encode(&delegation);
        assert!(
            again == bytes,
            "{delegation:?} decoded from a head it does not re-encode to"
        );
    }
}
