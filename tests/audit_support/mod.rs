//! Helpers shared by the audit tests: log lines, hashing, a fixed clock.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing
)]

use delegation_log::audit::{self, Kind, Verdict};
use delegation_log::{ChainHash, ManualClock, Record};
use std::collections::HashMap;

/// The clock every audit test ages pending delegations against:
/// 2026-06-07T01:32:07Z, plus an hour.
pub fn clock() -> ManualClock {
    let clock = ManualClock::default();
    clock.advance(std::time::Duration::from_secs(3600));
    clock
}

/// A `queued` line.
pub fn queued(id: &str, seq: i64) -> String {
    format!(
        r#"{{"delegation":"{id}","seq":{seq},"event":"queued","source":"planner","target":"reviewer","at":"2026-06-07T01:32:07Z"}}"#
    )
}

/// A `delivered` line.
pub fn delivered(id: &str, seq: i64) -> String {
    format!(
        r#"{{"delegation":"{id}","seq":{seq},"event":"delivered","http_status":200,"at":"2026-06-07T01:32:08Z"}}"#
    )
}

/// A `failed` line, reason `timeout`.
pub fn failed(id: &str, seq: i64) -> String {
    format!(
        r#"{{"delegation":"{id}","seq":{seq},"event":"failed","reason":"timeout","detail":"no answer","at":"2026-06-07T01:32:09Z"}}"#
    )
}

/// Lines joined with `\n`, with a final newline.
pub fn log(lines: &[String]) -> String {
    let mut out = lines.join("\n");
    out.push('\n');
    out
}

/// Adds the right `hash` to every line, chaining per delegation.
pub fn hashed(lines: &[String]) -> Vec<String> {
    let mut heads: HashMap<String, ChainHash> = HashMap::new();
    lines
        .iter()
        .map(|line| {
            let mut record: Record = serde_json::from_str(line).unwrap();
            let previous = heads
                .get(record.delegation.as_str())
                .copied()
                .unwrap_or(ChainHash::GENESIS);
            let hash = record.chain_hash(&previous);
            heads.insert(record.delegation.to_string(), hash);
            record.hash = Some(hash);
            let mut value: serde_json::Value = serde_json::from_str(line).unwrap();
            value["hash"] = serde_json::Value::String(hash.to_hex());
            value.to_string()
        })
        .collect()
}

/// The verdict on `text`.
pub fn verify(text: &str) -> Verdict {
    audit::verify(text.as_bytes(), &clock()).unwrap()
}

/// Each violation as (line, kind).
pub fn found(verdict: &Verdict) -> Vec<(u64, Kind)> {
    verdict
        .violations
        .iter()
        .map(|violation| (violation.line, violation.kind))
        .collect()
}

/// A delegation id from text.
pub fn id(text: &str) -> delegation_log::DelegationId {
    text.parse().unwrap()
}

/// Rewrites a closed sled store's `records` and `heads` trees directly, as damage
/// or an attacker would, then flushes.
pub fn raw(path: &std::path::Path, change: impl FnOnce(&sled::Tree, &sled::Tree)) {
    let db = sled::open(path).unwrap();
    change(
        &db.open_tree("records").unwrap(),
        &db.open_tree("heads").unwrap(),
    );
    db.flush().unwrap();
}

/// The audit of the sled store at `path`, against [`clock`].
pub fn audited(path: &std::path::Path) -> Verdict {
    audit::audit_path(path, &clock()).unwrap()
}
