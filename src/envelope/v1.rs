//! The body of format version 1: the record without its hash, as compact JSON in
//! serde's field order (the portable form of `EVENT-LOG-FORMAT.md`).

use super::DecodeError;
use crate::event::Record;

/// The version-1 body of `record`, whatever its hash.
pub(super) fn body(record: &Record) -> Vec<u8> {
    let unhashed = Record {
        hash: None,
        ..record.clone()
    };
    let mut out = Vec::with_capacity(160);
    // Serializing a record to a Vec cannot fail: every field is a string, an
    // integer or a parsed JSON value.
    let _ = serde_json::to_writer(&mut out, &unhashed);
    out
}

/// Reads a version-1 body, strictly: it must be exactly what [`body`] writes for
/// the record it holds. The record comes back without its hash.
pub(super) fn read(body_bytes: &[u8]) -> Result<Record, DecodeError> {
    let record: Record =
        serde_json::from_slice(body_bytes).map_err(|e| DecodeError::Body(e.to_string()))?;
    if record.hash.is_some() {
        return Err(DecodeError::HashInBody);
    }
    if body(&record) != body_bytes {
        return Err(DecodeError::NonCanonical);
    }
    Ok(record)
}
