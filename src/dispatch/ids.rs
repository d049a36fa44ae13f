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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn id(text: &str) -> DelegationId {
        text.parse().unwrap()
    }

    #[test]
    fn a_redelivery_is_the_first_attempts_id_and_its_number() {
        assert_eq!(redelivery(&id("task-7"), 1).unwrap(), id("task-7.r1"));
        assert_eq!(redelivery(&id("task-7"), 12).unwrap(), id("task-7.r12"));
    }

    #[test]
    fn a_redelivery_of_a_long_id_fits_and_long_ids_with_one_prefix_stay_distinct() {
        let a = id(&format!("{}a", "x".repeat(MAX_ID_LEN - 1)));
        let b = id(&format!("{}b", "x".repeat(MAX_ID_LEN - 1)));
        let (ra, rb) = (redelivery(&a, 2).unwrap(), redelivery(&b, 2).unwrap());
        assert!(ra.as_str().len() <= MAX_ID_LEN, "{ra}");
        assert!(ra.as_str().ends_with(".r2"), "{ra}");
        assert_ne!(ra, rb);
    }

    #[test]
    fn a_long_id_is_cut_at_a_character_boundary() {
        let wide = id(&"é".repeat(MAX_ID_LEN / 2));
        for n in [1, 10, 100, u64::MAX] {
            let redelivered = redelivery(&wide, n).unwrap();
            assert!(redelivered.as_str().len() <= MAX_ID_LEN, "{redelivered}");
            // The longest whole-character prefix that fits: a suffix of at most
            // 22 bytes (`.r` and 20 digits), `~` and 16 hex digits leave 217
            // bytes, one of which may fall inside a character.
            let (prefix, _) = redelivered.as_str().split_once('~').unwrap();
            assert!(wide.as_str().starts_with(prefix), "{redelivered}");
            assert!(prefix.len() >= MAX_ID_LEN - 40, "{redelivered}");
        }
    }

    #[test]
    fn fresh_ids_are_distinct() {
        let fresh = Fresh::new();
        let ids: std::collections::HashSet<_> = (0..1000).map(|_| fresh.next().unwrap()).collect();
        assert_eq!(ids.len(), 1000);
    }
}
