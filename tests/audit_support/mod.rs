//! Helpers shared by the audit and store tests: log lines, hashing, a fixed clock,
//! changes to a closed sled store (raw edits, forged heads, a rewrite in format
//! 1 or 2, a copy), and record bytes sealed behind a valid checksum. It opens
//! sled with `support::raw_sled`, so a test that includes it includes `support`
//! too.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing
)]

use delegation_log::audit::{self, Kind, Verdict};
use delegation_log::{ChainHash, ManualClock, Record};
use std::collections::HashMap;

use crate::support::raw_sled;

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

/// Each violation as (line, kind, message).
pub fn messages(verdict: &Verdict) -> Vec<(u64, Kind, &str)> {
    verdict
        .violations
        .iter()
        .map(|violation| (violation.line, violation.kind, violation.message.as_str()))
        .collect()
}

/// Asserts that violation `index` of `verdict` says `text`, showing what it says
/// when it does not.
pub fn assert_says(verdict: &Verdict, index: usize, text: &str) {
    let message = &verdict.violations[index].message;
    assert!(
        message.contains(text),
        "violation {index} says {message:?}, not {text:?}"
    );
}

/// Rewrites a closed sled store's keys directly, as damage or an attacker would,
/// then flushes. Format 3 keeps a delegation's head and records in one value
/// under one key; the closure gets a [`Keys`] view of it twice, as the records
/// and as the heads, that reads and edits each record under `key::record` and
/// each head under `key::head`, as format 2 stored them.
pub fn raw(path: &std::path::Path, change: impl FnOnce(&Keys, &Keys)) {
    let db = raw_sled(path);
    let keys = Keys {
        tree: db.open_tree("delegations").unwrap(),
    };
    change(&keys, &keys);
    db.flush().unwrap();
}

/// A format 3 tree seen as format 2's keys: a record under `key::record(id,
/// seq)` is the seq-th frame of `id`'s value, its head under `key::head(id)` the
/// value's head (its seq, then its summary, as `Head::encode` gives it). An edit
/// rewrites the delegation's value: its head as it is (or seq 0 and no summary
/// if there is none), then its records in seq order, whatever their seqs. So an
/// edit that leaves records and head out of step (a record removed, one put
/// beyond the head, a head without records) writes a value whose framing
/// disagrees with its head, as damage would.
pub struct Keys {
    /// The `delegations` tree.
    pub tree: sled::Tree,
}

/// A delegation's value, taken apart: its head (seq and summary), and its
/// records by seq.
type Parts = (
    Option<(u64, Vec<u8>)>,
    std::collections::BTreeMap<u64, Vec<u8>>,
);

impl Keys {
    /// The value of `key` as format 2 stored it.
    pub fn get(&self, key: impl AsRef<[u8]>) -> sled::Result<Option<sled::IVec>> {
        let (id, seq) = delegation_log::store::key::parse(key.as_ref()).unwrap();
        let (head, records) = self.parts(&id);
        Ok(if seq == 0 {
            head.map(|(seq, summary)| {
                let mut out = seq.to_be_bytes().to_vec();
                out.extend_from_slice(&summary);
                sled::IVec::from(out)
            })
        } else {
            records
                .get(&seq)
                .map(|bytes| sled::IVec::from(bytes.as_slice()))
        })
    }

    /// Puts `value` under `key`, as format 2 stored it.
    pub fn insert(
        &self,
        key: impl AsRef<[u8]>,
        value: impl AsRef<[u8]>,
    ) -> sled::Result<Option<sled::IVec>> {
        let old = self.get(key.as_ref())?;
        self.edit(key.as_ref(), Some(value.as_ref()));
        Ok(old)
    }

    /// Removes `key`, as format 2 stored it.
    pub fn remove(&self, key: impl AsRef<[u8]>) -> sled::Result<Option<sled::IVec>> {
        let old = self.get(key.as_ref())?;
        self.edit(key.as_ref(), None);
        Ok(old)
    }

    fn edit(&self, key: &[u8], value: Option<&[u8]>) {
        let (id, seq) = delegation_log::store::key::parse(key).unwrap();
        let (mut head, mut records) = self.parts(&id);
        match (seq, value) {
            (0, Some(value)) => {
                let (seq, summary) = value.split_at(8);
                head = Some((
                    u64::from_be_bytes(seq.try_into().unwrap()),
                    summary.to_vec(),
                ));
            }
            (0, None) => head = None,
            (seq, Some(value)) => {
                records.insert(seq, value.to_vec());
            }
            (seq, None) => {
                records.remove(&seq);
            }
        }
        let key = delegation_log::store::key::prefix(&id);
        if head.is_none() && records.is_empty() {
            self.tree.remove(key).unwrap();
            return;
        }
        let (seq, summary) = head.unwrap_or((0, Vec::new()));
        self.tree
            .insert(key, value_bytes(seq, &summary, records.values()))
            .unwrap();
    }

    /// `id`'s value taken apart, reading its frames as far as they go.
    fn parts(&self, id: &delegation_log::DelegationId) -> Parts {
        let mut records = std::collections::BTreeMap::new();
        let Some(raw) = self
            .tree
            .get(delegation_log::store::key::prefix(id))
            .unwrap()
        else {
            return (None, records);
        };
        assert_eq!(raw[0], 1, "value version");
        let seq = u64::from_be_bytes(raw[1..9].try_into().unwrap());
        let len = u32::from_be_bytes(raw[9..13].try_into().unwrap()) as usize;
        let summary = raw[13..13 + len].to_vec();
        let mut rest = &raw[13 + len..];
        let mut at = 0;
        while rest.len() >= 4 {
            let len = u32::from_be_bytes(rest[..4].try_into().unwrap()) as usize;
            if rest.len() < 4 + len {
                break;
            }
            at += 1;
            records.insert(at, rest[4..4 + len].to_vec());
            rest = &rest[4 + len..];
        }
        (Some((seq, summary)), records)
    }
}

/// A format 3 value, written out here from `docs/store-format.md` (not by the
/// crate's encoder): version 1, the head's big-endian seq, the summary's
/// big-endian `u32` length and the summary, then each record's `u32` length and
/// bytes.
pub fn value_bytes<'a>(
    seq: u64,
    summary: &[u8],
    records: impl IntoIterator<Item = &'a Vec<u8>>,
) -> Vec<u8> {
    let mut out = vec![1u8];
    out.extend_from_slice(&seq.to_be_bytes());
    out.extend_from_slice(&(summary.len() as u32).to_be_bytes());
    out.extend_from_slice(summary);
    for record in records {
        out.extend_from_slice(&(record.len() as u32).to_be_bytes());
        out.extend_from_slice(record);
    }
    out
}

/// The head summary of delegation `id` in the closed sled store at `path`, with
/// `change` applied to the delegation it describes, re-encoded: a head that lies.
pub fn forge_head(
    path: &std::path::Path,
    id: &delegation_log::DelegationId,
    change: impl FnOnce(&mut delegation_log::Delegation),
) {
    use delegation_log::store::{Head, key};
    raw(path, |log, _| {
        let stored = Head::decode(&log.get(key::head(id)).unwrap().unwrap()).unwrap();
        let mut summary = delegation_log::envelope::head::decode(&stored.summary).unwrap();
        change(&mut summary);
        let forged = Head {
            seq: summary.seq,
            summary: delegation_log::envelope::head::encode(&summary),
        };
        log.insert(key::head(id), forged.encode()).unwrap();
    });
}

/// The audit of the sled store at `path`, against [`clock`].
pub fn audited(path: &std::path::Path) -> Verdict {
    audit::audit_path(path, &clock()).unwrap()
}

/// Rewrites the closed sled store at `path` in format 2, as ledger v2 wrote it
/// before format 3: one tree, `log`, each record under `key::record`, each head
/// under `key::head` (seq 0), format marker 2.
pub fn downgrade_to_v2(path: &std::path::Path) {
    let db = raw_sled(path);
    rewrite_in_v2(&db);
    db.flush().unwrap();
}

/// As [`raw`], for a store of format 2, or of format 3 first rewritten in format
/// 2 ([`downgrade_to_v2`]): its one tree `log`, given twice, as the records and
/// as the heads.
pub fn raw_v2(path: &std::path::Path, change: impl FnOnce(&sled::Tree, &sled::Tree)) {
    let db = raw_sled(path);
    if db
        .tree_names()
        .iter()
        .any(|name| name.as_ref() == b"delegations")
    {
        rewrite_in_v2(&db);
    }
    let log = db.open_tree("log").unwrap();
    change(&log, &log);
    db.flush().unwrap();
}

/// Rewrites the open store `db` of format 3 or 4 in format 2.
fn rewrite_in_v2(db: &sled::Db) {
    use delegation_log::store::key;
    let delegations = db.open_tree("delegations").unwrap();
    let log = db.open_tree("log").unwrap();
    let keys = Keys {
        tree: delegations.clone(),
    };
    for item in delegations.iter() {
        let (raw, _) = item.unwrap();
        let id = key::parse_head(&raw).unwrap();
        let (head, records) = keys.parts(&id);
        let (seq, summary) = head.unwrap();
        let mut value = seq.to_be_bytes().to_vec();
        value.extend_from_slice(&summary);
        log.insert(key::head(&id), value).unwrap();
        for (seq, bytes) in records {
            log.insert(key::record(&id, seq), bytes).unwrap();
        }
    }
    drop(keys);
    drop(delegations);
    db.drop_tree("delegations").unwrap();
    db.drop_tree("index").unwrap();
    db.open_tree("meta")
        .unwrap()
        .insert("format", &[2u8][..])
        .unwrap();
}

/// Rewrites the closed sled store at `path` of format 4 in format 3, as the
/// crate wrote it before the index: the tree `index` dropped, marker 3.
pub fn downgrade_to_v3(path: &std::path::Path) {
    let db = raw_sled(path);
    db.drop_tree("index").unwrap();
    db.open_tree("meta")
        .unwrap()
        .insert("format", &[3u8][..])
        .unwrap();
    db.flush().unwrap();
}

/// Rewrites the closed sled store at `path` in format 1, as every version before
/// ledger v2 wrote it: records in a `records` tree in the version 1 envelope,
/// heads of a seq and the last chain hash in a `heads` tree, format marker 1.
pub fn downgrade_to_v1(path: &std::path::Path) {
    use delegation_log::envelope;
    use delegation_log::store::{Head, key};
    let db = raw_sled(path);
    rewrite_in_v2(&db);
    let log = db.open_tree("log").unwrap();
    let records = db.open_tree("records").unwrap();
    let heads = db.open_tree("heads").unwrap();
    for item in log.iter() {
        let (raw, value) = item.unwrap();
        let (id, seq) = key::parse(&raw).unwrap();
        if seq == 0 {
            let head = Head::decode(&value).unwrap();
            let summary = envelope::head::decode(&head.summary).unwrap();
            let legacy = Head {
                seq: head.seq,
                summary: summary.hash.0.to_vec(),
            };
            heads.insert(key::prefix(&id), legacy.encode()).unwrap();
        } else {
            let record = envelope::decode(&value).unwrap();
            records.insert(raw, envelope::encode_v1(&record)).unwrap();
        }
    }
    drop(log);
    db.drop_tree("log").unwrap();
    db.open_tree("meta")
        .unwrap()
        .insert("format", &[1u8][..])
        .unwrap();
    db.flush().unwrap();
}

/// As [`raw`], for a store of format 1: its `records` and `heads` trees.
pub fn raw_v1(path: &std::path::Path, change: impl FnOnce(&sled::Tree, &sled::Tree)) {
    let db = raw_sled(path);
    change(
        &db.open_tree("records").unwrap(),
        &db.open_tree("heads").unwrap(),
    );
    db.flush().unwrap();
}

/// Copies the directory `from` (a closed store, say) to `to`, recursively.
pub fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let target = to.join(path.file_name().unwrap());
        if path.is_dir() {
            copy_dir(&path, &target);
        } else {
            std::fs::copy(&path, &target).unwrap();
        }
    }
}

/// Seals `body` behind a record header of `version` with a valid checksum and
/// the chain hash `hash`, as the envelope stores a record.
pub fn sealed_bytes(version: u8, hash: [u8; 32], body: &[u8]) -> Vec<u8> {
    let mut bytes = vec![version, 0, 0, 0, 0];
    bytes.extend_from_slice(&hash);
    bytes.extend_from_slice(body);
    let checksum = crc32fast::hash(&bytes[5..]);
    bytes[1..5].copy_from_slice(&checksum.to_be_bytes());
    bytes
}

/// Applies byte edits to `body`, as proptest draws them: each an index (taken
/// modulo one past the end), an operation (0 overwrite, 1 insert, 2 remove, or
/// append where there is nothing to overwrite or remove) and a byte.
pub fn edit(body: &mut Vec<u8>, edits: &[(proptest::sample::Index, u8, u8)]) {
    for (at, op, byte) in edits {
        let at = at.index(body.len() + 1);
        match op {
            0 if at < body.len() => body[at] = *byte,
            1 => body.insert(at, *byte),
            _ if at < body.len() => {
                body.remove(at);
            }
            _ => body.push(*byte),
        }
    }
}
