//! How the dispatcher names delegations: a fresh id for each new one, and
//! `<first>.r<n>` for a redelivery, shortened with a hash when it would be too long.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use super::Error;
use crate::event::{DelegationId, MAX_ID_LEN};

/// Fresh ids: `d-<ms since the epoch, hex>-<counter>-<32 random bits>`.
pub(super) struct Fresh {
    next: AtomicU64,
    seed: RandomState,
}

impl Fresh {
    pub(super) fn new() -> Self {
        Fresh {
            next: AtomicU64::new(0),
            seed: RandomState::new(),
        }
    }

    /// A fresh id: milliseconds since the epoch, a counter, and 32 random bits.
    pub(super) fn next(&self) -> Result<DelegationId, Error> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        let mut hasher = self.seed.build_hasher();
        hasher.write_u128(nanos);
        hasher.write_u64(n);
        hasher.write_u32(std::process::id());
        let random = hasher.finish() & 0xffff_ffff;
        let millis = nanos / 1_000_000;
        Ok(DelegationId::try_from(format!(
            "d-{millis:x}-{n:x}-{random:08x}"
        ))?)
    }
}

/// The id of redelivery `n` of a task whose first attempt is `first`: `first.r<n>`,
/// or, when that passes [`MAX_ID_LEN`], the longest prefix of `first` that fits
/// (cut at a character boundary), `~`, the first 16 hex digits of SHA-256 of
/// `first`, and `.r<n>`.
pub(super) fn redelivery(first: &DelegationId, n: u64) -> Result<DelegationId, Error> {
    use sha2::{Digest, Sha256};

    let suffix = format!(".r{n}");
    let plain = format!("{first}{suffix}");
    if plain.len() <= MAX_ID_LEN {
        return Ok(DelegationId::try_from(plain)?);
    }
    let digest = Sha256::digest(first.as_str().as_bytes());
    let hash: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
    let text = first.as_str();
    let mut cut = MAX_ID_LEN
        .saturating_sub(suffix.len() + 1 + hash.len())
        .min(text.len());
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    let prefix = text.get(..cut).unwrap_or_default();
    Ok(DelegationId::try_from(format!("{prefix}~{hash}{suffix}"))?)
}
