//! Guards `docs/store-format.md`: what the sled store keeps on disk and how it
//! reads what it finds there.
//!
//! - Keys: the big-endian length prefix and the id (format 3's one key per
//!   delegation); formats 1 and 2's record keys add the big-endian seq, a head at
//!   seq 0 before every record; parse errors at both id length bounds, each with
//!   its reason; keys printed as lowercase hex.
//! - Values (format 3): version 1, the head's seq, its summary framed, then each
//!   record framed, in seq order; every append rewrites the one value with
//!   exactly its head and the records so far (checked byte for byte against a
//!   value written out by the tests, and for any appends by a property test); a
//!   value that is truncated anywhere, or whose framing disagrees with its head,
//!   is a typed error naming the delegation in `head` (where the head itself is
//!   cut), `history` and the scan, which goes on, and a write onto it is refused
//!   as damage and changes nothing; an unknown version byte is `UnknownVersion`;
//!   every bit flip is caught by the framing or by the ledger's checks.
//! - Heads (`Head::encode`, formats 1 and 2): the big-endian seq, then the
//!   ledger's opaque summary; a head too short for its seq does not decode.
//! - The format marker and the trees: a new store is marked 3 and keeps one tree,
//!   `delegations`; stores of formats 1 and 2 open, read, and refuse every append
//!   with `NeedsMigration` naming their format; a newer marker is refused, a
//!   marker that is not one byte is corruption; a store of format 3 (or 2) drops
//!   the older trees a migration left behind.
//! - Reads of what is there in the older formats, by their readers: heads without
//!   records, records without heads and records beyond their head are read as
//!   stored, in key order, with `history` and the scan agreeing; a key that does
//!   not parse is an error for its place in the scan, which goes on.
//! - The store's directory: its path and a size that grows with its records; a
//!   path that is a file is an I/O error at open.
//!
//! Most of these tests were written to kill mutants that cargo-mutants found
//! surviving the store contract suite (`store_conformance.rs`), which leaves
//! these details implicit.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod audit_support;
mod support;

use std::path::Path;

use delegation_log::event::MAX_ID_LEN;
use delegation_log::store::{Append, AppendError, Expect, Head, Sled, Store, Stream, key};
use delegation_log::{DelegationId, Error, ReadError, StorageError};
use support::id;

/// The summary written with seq `seq`, its bytes `fill`.
fn summary(seq: u64, fill: u8) -> Vec<u8> {
    vec![fill; 3 + seq as usize]
}

fn head(seq: u64, fill: u8) -> Head {
    Head {
        seq,
        summary: summary(seq, fill),
    }
}

/// A format 1 head: the seq and a 32-byte chain hash.
fn legacy_head(seq: u64, fill: u8) -> Head {
    Head {
        seq,
        summary: vec![fill; 32],
    }
}

/// One append whose head is `head(expect.next(), fill)`.
fn one(
    store: &Sled,
    id: &DelegationId,
    expect: Expect,
    record: &[u8],
    fill: u8,
) -> Result<(), AppendError> {
    let summary = summary(expect.next(), fill);
    store.append(&[Append {
        id,
        expect,
        record,
        head: &summary,
    }])
}

/// Writes a store of format 2 at `path`, closed again: each delegation named
/// gets `count` records, the head of seq `n` filled with `n`.
fn written(path: &Path, names: &[&str], count: u64) {
    let store = Sled::open(path).unwrap();
    for name in names {
        for seq in 1..=count {
            let fill = u8::try_from(seq).unwrap();
            let record = format!("r{seq}");
            one(
                &store,
                &id(name),
                Expect::after(seq - 1),
                record.as_bytes(),
                fill,
            )
            .unwrap();
        }
    }
}

/// As [`written`], then rewritten in format 2 (one tree `log`, a key per record
/// and per head), as ledger v2 wrote it before format 3.
fn written_v2(path: &Path, names: &[&str], count: u64) {
    written(path, names, count);
    audit_support::downgrade_to_v2(path);
}

/// The raw value of `name` in the closed format 3 store at `path`.
fn stored_value(path: &Path, name: &str) -> Option<Vec<u8>> {
    let db = support::raw_sled(path);
    let tree = db.open_tree("delegations").unwrap();
    tree.get(key::prefix(&id(name)))
        .unwrap()
        .map(|v| v.to_vec())
}

/// Puts `value` under `name`'s key in the format 3 store at `path`.
fn put_value(path: &Path, name: &str, value: &[u8]) {
    raw(path, |db| {
        db.open_tree("delegations")
            .unwrap()
            .insert(key::prefix(&id(name)), value)
            .unwrap();
    });
}

/// Writes straight into sled's trees, as damage or an older crate would.
fn raw(path: &Path, change: impl FnOnce(&sled::Db)) {
    let db = support::raw_sled(path);
    change(&db);
    db.flush().unwrap();
}

/// Sets the store's format marker, `meta/format`, to `marker`.
fn mark(db: &sled::Db, marker: &[u8]) {
    db.open_tree("meta")
        .unwrap()
        .insert("format", marker)
        .unwrap();
}

/// Writes a store of format 1, as the crate before ledger v2 did: records in
/// `records` under `key::record`, heads in `heads` under `key::prefix`, each
/// a seq and a 32-byte hash; `(id, records, head seq)`, the head filled with
/// the head's seq.
fn legacy(path: &Path, streams: &[(&str, u64, Option<u64>)]) {
    raw(path, |db| {
        mark(db, &[1]);
        let records = db.open_tree("records").unwrap();
        let heads = db.open_tree("heads").unwrap();
        for &(name, count, head) in streams {
            for seq in 1..=count {
                records
                    .insert(key::record(&id(name), seq), name.as_bytes())
                    .unwrap();
            }
            if let Some(seq) = head {
                heads
                    .insert(key::prefix(&id(name)), legacy_head(seq, seq as u8).encode())
                    .unwrap();
            }
        }
    });
}

fn scanned(store: &Sled) -> Vec<Result<Stream, String>> {
    store
        .scan()
        .map(|item| item.map_err(|e| e.to_string()))
        .collect()
}

/// Each stream of a scan as (id, seqs of its records, seq of its head).
fn summarised(store: &Sled) -> Vec<(String, Vec<u64>, Option<u64>)> {
    store
        .scan()
        .map(|stream| {
            let stream = stream.unwrap();
            (
                stream.id.to_string(),
                stream.entries.iter().map(|e| e.seq).collect(),
                stream.head.map(|h| h.seq),
            )
        })
        .collect()
}

/// Each stream of a scan as (id, its head).
fn scanned_heads(store: &Sled) -> Vec<(String, Option<Head>)> {
    store
        .scan()
        .map(|stream| {
            let stream = stream.unwrap();
            (stream.id.to_string(), stream.head)
        })
        .collect()
}

/// The names of the trees of the closed store at `path`, sorted.
fn trees(path: &Path) -> Vec<String> {
    tree_names(&support::raw_sled(path))
}

fn tree_names(db: &sled::Db) -> Vec<String> {
    let mut names: Vec<String> = db
        .tree_names()
        .iter()
        .map(|name| String::from_utf8_lossy(name).into_owned())
        .collect();
    names.sort();
    names
}

// ---- keys

#[test]
fn a_key_is_the_length_prefix_the_id_then_the_big_endian_seq() {
    assert_eq!(key::prefix(&id("ab")), vec![0, 2, b'a', b'b']);
    assert_eq!(
        key::record(&id("ab"), 0x0102),
        vec![0, 2, b'a', b'b', 0, 0, 0, 0, 0, 0, 1, 2]
    );
    let long = "x".repeat(200);
    let prefix = key::prefix(&id(&long));
    assert_eq!(
        &prefix[..2],
        &u16::try_from(long.len()).unwrap().to_be_bytes()
    );
    assert_eq!(prefix.len(), 2 + long.len());
}

#[test]
fn a_head_key_is_the_prefix_and_seq_zero_before_every_record() {
    assert_eq!(
        key::head(&id("ab")),
        vec![0, 2, b'a', b'b', 0, 0, 0, 0, 0, 0, 0, 0]
    );
    assert_eq!(key::head(&id("ab")), key::record(&id("ab"), 0));
    assert!(key::head(&id("ab")) < key::record(&id("ab"), 1));
    assert_eq!(key::parse(&key::head(&id("ab"))), Ok((id("ab"), 0)));
}

#[test]
fn a_record_key_parses_back_to_its_id_and_seq_at_both_id_length_bounds() {
    for text in ["a".to_owned(), "z".repeat(MAX_ID_LEN)] {
        let key = key::record(&id(&text), 77);
        assert_eq!(key::parse(&key), Ok((id(&text), 77)));
    }
}

#[test]
fn a_record_key_with_a_bad_length_or_seq_field_is_refused_with_the_reason() {
    let err = key::parse(&[0]).unwrap_err();
    assert!(err.contains("shorter than its length prefix"), "{err}");

    let mut zero = vec![0, 0];
    zero.extend_from_slice(&5u64.to_be_bytes());
    let err = key::parse(&zero).unwrap_err();
    assert!(err.contains("id length 0 outside"), "{err}");

    let too_long = u16::try_from(MAX_ID_LEN + 1).unwrap();
    let mut over = too_long.to_be_bytes().to_vec();
    over.extend(std::iter::repeat_n(b'a', MAX_ID_LEN + 1));
    over.extend_from_slice(&5u64.to_be_bytes());
    let err = key::parse(&over).unwrap_err();
    assert!(err.contains("id length 257 outside"), "{err}");

    let err = key::parse(&[0, 5, b'a', b'b']).unwrap_err();
    assert!(err.contains("shorter than its id"), "{err}");

    let err = key::parse(&key::prefix(&id("ab"))).unwrap_err();
    assert!(err.contains("seq field is 0 bytes, not 8"), "{err}");

    let err = key::parse(&[0, 1, 0xff, 0, 0, 0, 0, 0, 0, 0, 1]).unwrap_err();
    assert!(err.contains("not UTF-8"), "{err}");
}

#[test]
fn a_head_key_parses_only_when_its_length_prefix_matches() {
    assert_eq!(key::parse_head(&key::prefix(&id("abc"))), Ok(id("abc")));
    let err = key::parse_head(&[0]).unwrap_err();
    assert!(err.contains("shorter than its length prefix"), "{err}");
    let err = key::parse_head(&[0, 2, b'a']).unwrap_err();
    assert!(err.contains("does not match"), "{err}");
    let err = key::parse_head(&[0, 1, b'a', b'b']).unwrap_err();
    assert!(err.contains("does not match"), "{err}");
    let err = key::parse_head(&[0, 1, 0xff]).unwrap_err();
    assert!(err.contains("not UTF-8"), "{err}");
}

#[test]
fn a_key_prints_as_lowercase_hex() {
    assert_eq!(key::hex(&[0x00, 0x0a, 0xff, 0x42]), "000aff42");
    assert_eq!(key::hex(&[]), "");
}

// ---- heads

#[test]
fn a_head_encodes_as_big_endian_seq_then_its_summary_and_decodes_back() {
    let summary: Vec<u8> = (1..=45u8).collect();
    let head = Head {
        seq: 0x0102_0304_0506_0708,
        summary: summary.clone(),
    };
    let encoded = head.encode();
    assert_eq!(encoded.len(), 8 + summary.len());
    assert_eq!(&encoded[..8], &[1, 2, 3, 4, 5, 6, 7, 8]);
    assert_eq!(&encoded[8..], &summary[..]);
    assert_eq!(Head::decode(&encoded), Some(head));

    let empty = Head {
        seq: 3,
        summary: Vec::new(),
    };
    assert_eq!(empty.encode(), 3u64.to_be_bytes().to_vec());
    assert_eq!(Head::decode(&empty.encode()), Some(empty));
}

/// Format 1's heads had one length (seq and a 32-byte hash); format 2's summary
/// is opaque, so only a head too short for its seq fails to decode (format 1's
/// length check lives on in its reader: see
/// `a_head_of_the_wrong_length_is_corruption_in_a_format_1_store`).
#[test]
fn a_head_shorter_than_its_seq_does_not_decode() {
    let encoded = Head {
        seq: 9,
        summary: vec![7; 32],
    }
    .encode();
    assert_eq!(Head::decode(&[]), None);
    assert_eq!(Head::decode(&encoded[..7]), None);
    assert_eq!(
        Head::decode(&encoded[..8]),
        Some(Head {
            seq: 9,
            summary: Vec::new()
        })
    );
    let mut long = encoded.clone();
    long.push(0);
    assert_eq!(
        Head::decode(&long),
        Some(Head {
            seq: 9,
            summary: long[8..].to_vec()
        })
    );
}

// ---- the format marker and the trees

#[test]
fn a_new_store_is_marked_with_format_4_and_keeps_one_tree_of_delegations_and_its_index() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Sled::open(dir.path()).unwrap();
        assert_eq!(store.store_format(), 4);
        assert_eq!(store.format(), 2, "the heads' format");
        one(&store, &id("a"), Expect::Empty, b"r", 1).unwrap();
    }
    let db = support::raw_sled(dir.path());
    let format = db.open_tree("meta").unwrap().get("format").unwrap();
    assert_eq!(format.as_deref(), Some(&[4u8][..]));
    let names = tree_names(&db);
    assert!(names.contains(&"delegations".to_owned()), "{names:?}");
    assert!(names.contains(&"index".to_owned()), "{names:?}");
    let index: Vec<_> = db
        .open_tree("index")
        .unwrap()
        .iter()
        .keys()
        .map(|key| key.unwrap().to_vec())
        .collect();
    assert!(index.is_empty(), "a raw append writes no hint: {index:?}");
    for old in ["log", "records", "heads"] {
        assert!(!names.contains(&old.to_owned()), "{names:?}");
    }
}

/// Format 4 is current; formats 1 to 3, before it, open (read only); a newer
/// one is refused.
#[test]
fn a_store_marked_with_an_older_format_opens_and_a_newer_one_is_refused() {
    for (marker, heads) in [(4u8, 2u8), (3, 2), (2, 2), (1, 1)] {
        let dir = tempfile::tempdir().unwrap();
        raw(dir.path(), |db| mark(db, &[marker]));
        let store = Sled::open(dir.path()).unwrap();
        assert_eq!((store.store_format(), store.format()), (marker, heads));
    }

    let newer = tempfile::tempdir().unwrap();
    raw(newer.path(), |db| mark(db, &[5]));
    match Sled::open(newer.path()) {
        Err(Error::UnknownVersion { key, found }) => {
            assert_eq!((key.as_str(), found), ("meta/format", 5));
        }
        other => panic!("expected UnknownVersion, got {other:?}"),
    }
}

#[test]
fn a_format_marker_that_is_not_one_byte_is_corruption() {
    let dir = tempfile::tempdir().unwrap();
    raw(dir.path(), |db| mark(db, &[1, 1]));
    match Sled::open(dir.path()) {
        Err(Error::Corrupt { key, reason }) => {
            assert_eq!(key, "meta/format");
            assert!(reason.contains("not one byte"), "{reason}");
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
}

/// The stand-in for format 1's "an append never lowers or replaces an equal
/// head": each append rewrites its delegation's one value with exactly its own
/// head (seq `expect.next()`, its summary, even a shorter one) and the records so
/// far plus its own, framed, under `key::prefix` in the one tree `delegations`,
/// and nothing else. The value is compared with one written out from
/// `docs/store-format.md` by the tests' own code.
#[test]
fn a_head_and_its_records_are_one_value_under_the_format_3_key() {
    let dir = tempfile::tempdir().unwrap();
    let a = id("a");
    {
        let store = Sled::open(dir.path()).unwrap();
        one(&store, &a, Expect::Empty, b"one", 1).unwrap();
        assert_eq!(store.head(&a).unwrap(), Some(head(1, 1)));
        // A shorter summary replaces a longer one.
        store
            .append(&[Append {
                id: &a,
                expect: Expect::At(1),
                record: b"two",
                head: b"s",
            }])
            .unwrap();
        assert_eq!(
            store.head(&a).unwrap(),
            Some(Head {
                seq: 2,
                summary: b"s".to_vec()
            })
        );
        one(&store, &a, Expect::At(2), b"three", 3).unwrap();
    }
    let db = support::raw_sled(dir.path());
    let tree: Vec<(Vec<u8>, Vec<u8>)> = db
        .open_tree("delegations")
        .unwrap()
        .iter()
        .map(|item| {
            let (k, v) = item.unwrap();
            (k.to_vec(), v.to_vec())
        })
        .collect();
    let records = [b"one".to_vec(), b"two".to_vec(), b"three".to_vec()];
    let value = audit_support::value_bytes(3, &summary(3, 3), &records);
    assert_eq!(tree, vec![(key::prefix(&a), value)]);
}

/// A retry's two appends (and any group of several delegations) are one
/// `apply_batch`: both values are written, or, if any expectation fails,
/// neither.
#[test]
fn a_group_of_several_delegations_writes_each_one_value() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (id("a"), id("b"));
    {
        let store = Sled::open(dir.path()).unwrap();
        one(&store, &a, Expect::Empty, b"a1", 1).unwrap();
        let (s2, s1) = (summary(2, 2), summary(1, 1));
        store
            .append(&[
                Append {
                    id: &a,
                    expect: Expect::At(1),
                    record: b"a2",
                    head: &s2,
                },
                Append {
                    id: &b,
                    expect: Expect::Empty,
                    record: b"b1",
                    head: &s1,
                },
            ])
            .unwrap();
    }
    let records = [b"a1".to_vec(), b"a2".to_vec()];
    assert_eq!(
        stored_value(dir.path(), "a"),
        Some(audit_support::value_bytes(2, &summary(2, 2), &records))
    );
    assert_eq!(
        stored_value(dir.path(), "b"),
        Some(audit_support::value_bytes(
            1,
            &summary(1, 1),
            &[b"b1".to_vec()]
        ))
    );
}

#[test]
fn a_format_2_store_reads_but_refuses_every_append_until_migrated() {
    let dir = tempfile::tempdir().unwrap();
    written_v2(dir.path(), &["a"], 2);
    let store = Sled::open(dir.path()).unwrap();
    assert_eq!((store.store_format(), store.format()), (2, 2));
    let before = store.history(&id("a")).unwrap();
    assert_eq!(before.entries.len(), 2);
    assert_eq!(before.head, Some(head(2, 2)));
    assert_eq!(store.head(&id("a")).unwrap(), Some(head(2, 2)));
    for (who, expect) in [("a", Expect::At(2)), ("new", Expect::Empty)] {
        match one(&store, &id(who), expect, b"r", 1) {
            Err(AppendError::Store(Error::NeedsMigration { path, found })) => {
                assert_eq!((path.as_path(), found), (dir.path(), 2));
            }
            other => panic!("{who}: expected NeedsMigration, got {other:?}"),
        }
    }
    assert_eq!(store.history(&id("a")).unwrap(), before);
    assert_eq!(store.head(&id("new")).unwrap(), None);
    assert_eq!(store.scan().count(), 1);
    drop(store);
    assert!(
        !trees(dir.path()).contains(&"delegations".to_owned()),
        "a refused append created the format 3 tree"
    );
}

#[test]
fn a_format_1_store_reads_but_refuses_every_append_until_migrated() {
    let dir = tempfile::tempdir().unwrap();
    legacy(dir.path(), &[("a", 2, Some(2))]);
    let store = Sled::open(dir.path()).unwrap();
    assert_eq!(store.format(), 1);
    let before = store.history(&id("a")).unwrap();
    assert_eq!(before.entries.len(), 2);
    assert_eq!(before.head, Some(legacy_head(2, 2)));
    for (who, expect) in [("a", Expect::At(2)), ("new", Expect::Empty)] {
        match one(&store, &id(who), expect, b"r", 1) {
            Err(AppendError::Store(Error::NeedsMigration { path, found })) => {
                assert_eq!((path.as_path(), found), (dir.path(), 1));
            }
            other => panic!("{who}: expected NeedsMigration, got {other:?}"),
        }
    }
    assert_eq!(store.history(&id("a")).unwrap(), before);
    assert_eq!(store.head(&id("new")).unwrap(), None);
    assert_eq!(store.scan().count(), 1);
    drop(store);
    assert!(
        !trees(dir.path()).contains(&"log".to_owned()),
        "a refused append created the format 2 tree"
    );
}

/// A migration of an older crate that switched the marker to 2 and stopped
/// before dropping format 1's trees leaves them behind; the next open drops
/// them. (Format 3's twin: `a_format_3_store_drops_the_older_trees_a_migration_left`.)
#[test]
fn a_format_2_store_drops_the_format_1_trees_a_migration_left() {
    let dir = tempfile::tempdir().unwrap();
    legacy(dir.path(), &[("a", 1, Some(1))]);
    raw(dir.path(), |db| mark(db, &[2]));
    {
        let store = Sled::open(dir.path()).unwrap();
        assert_eq!(store.store_format(), 2);
        assert_eq!(store.scan().count(), 0);
    }
    let names = trees(dir.path());
    assert!(!names.contains(&"records".to_owned()), "{names:?}");
    assert!(!names.contains(&"heads".to_owned()), "{names:?}");
}

/// A migration that switched the marker to 3 and stopped before dropping the
/// old trees leaves them behind; the next open drops them, and reads only the
/// new tree.
#[test]
fn a_format_3_store_drops_the_older_trees_a_migration_left() {
    let dir = tempfile::tempdir().unwrap();
    legacy(dir.path(), &[("a", 1, Some(1))]);
    raw(dir.path(), |db| {
        db.open_tree("log")
            .unwrap()
            .insert(key::head(&id("b")), head(1, 1).encode())
            .unwrap();
        mark(db, &[3]);
    });
    {
        let store = Sled::open(dir.path()).unwrap();
        assert_eq!(store.store_format(), 3);
        assert_eq!(store.scan().count(), 0);
    }
    let names = trees(dir.path());
    for old in ["log", "records", "heads"] {
        assert!(!names.contains(&old.to_owned()), "{names:?}");
    }
}

// ---- reads of what is there

#[test]
fn a_value_too_short_for_its_head_is_corruption_in_head_history_and_scan() {
    let dir = tempfile::tempdir().unwrap();
    written(dir.path(), &["a", "b"], 1);
    put_value(dir.path(), "a", &[1u8, 2, 3]);
    let store = Sled::open(dir.path()).unwrap();
    let err = store.head(&id("a")).unwrap_err().to_string();
    assert!(err.contains("3 bytes, too short for its head"), "{err}");
    assert!(err.contains("delegation `a`"), "{err}");
    let err = store.history(&id("a")).unwrap_err().to_string();
    assert!(err.contains("3 bytes, too short for its head"), "{err}");
    // One error for the damaged delegation, then the scan goes on.
    let scan = scanned(&store);
    assert_eq!(scan.len(), 2, "{scan:?}");
    let err = scan[0].as_ref().unwrap_err();
    assert!(err.contains("3 bytes, too short for its head"), "{err}");
    assert_eq!(scan[1].as_ref().unwrap().head, Some(head(1, 1)));
}

/// Format 2's twin, read by its reader.
#[test]
fn a_head_of_the_wrong_length_is_corruption_in_head_history_and_scan_in_a_format_2_store() {
    let dir = tempfile::tempdir().unwrap();
    written_v2(dir.path(), &["a", "b"], 1);
    raw(dir.path(), |db| {
        db.open_tree("log")
            .unwrap()
            .insert(key::head(&id("a")), &[1u8, 2, 3][..])
            .unwrap();
    });
    let store = Sled::open(dir.path()).unwrap();
    let err = store.head(&id("a")).unwrap_err().to_string();
    assert!(err.contains("3 bytes, too short for its seq"), "{err}");
    let err = store.history(&id("a")).unwrap_err().to_string();
    assert!(err.contains("3 bytes, too short for its seq"), "{err}");
    let scan = scanned(&store);
    assert_eq!(scan.len(), 2, "{scan:?}");
    let err = scan[0].as_ref().unwrap_err();
    assert!(err.contains("3 bytes, too short for its seq"), "{err}");
    assert_eq!(scan[1].as_ref().unwrap().head, Some(head(1, 1)));
}

/// Every cut of a stored value short of its end, and every value whose framing
/// disagrees with its head (a frame too many, a frame too few, a length that
/// runs past the end, bytes left over), is a typed error naming the delegation
/// in `history` and the scan, never a panic; a cut inside the head is one in
/// `head` too, and an unknown version byte is `UnknownVersion`. A write onto
/// such a value is refused as damage and changes nothing.
#[test]
fn a_truncated_or_misframed_value_is_a_typed_error_naming_the_delegation() {
    let dir = tempfile::tempdir().unwrap();
    written(dir.path(), &["a", "b"], 2);
    let whole = stored_value(dir.path(), "a").unwrap();
    let head_len = 1 + 8 + 4 + summary(2, 2).len();
    let mut misframed: Vec<(String, Vec<u8>)> = (0..whole.len())
        .map(|cut| (format!("cut at {cut}"), whole[..cut].to_vec()))
        .collect();
    let records = [b"r1".to_vec(), b"r2".to_vec()];
    misframed.push((
        "a frame too many".into(),
        audit_support::value_bytes(1, &summary(2, 2), &records),
    ));
    misframed.push((
        "a frame too few".into(),
        audit_support::value_bytes(3, &summary(2, 2), &records),
    ));
    let mut long = whole.clone();
    long[head_len..head_len + 4].copy_from_slice(&1000u32.to_be_bytes());
    misframed.push(("a length past the end".into(), long));
    let mut extra = whole.clone();
    extra.push(0);
    misframed.push(("a byte left over".into(), extra));
    for (what, value) in &misframed {
        put_value(dir.path(), "a", value);
        let store = Sled::open(dir.path()).unwrap();
        match store.history(&id("a")) {
            Err(ReadError::Corrupt { key, .. }) => assert_eq!(key, "delegation `a`", "{what}"),
            other => panic!("{what}: {other:?}"),
        }
        let scan = scanned(&store);
        assert_eq!(scan.len(), 2, "{what}: {scan:?}");
        assert!(
            scan[0].as_ref().unwrap_err().contains("delegation `a`"),
            "{what}"
        );
        assert_eq!(scan[1].as_ref().unwrap().entries.len(), 2, "{what}");
        if value.len() < head_len {
            assert!(store.head(&id("a")).is_err(), "{what}");
        }
        let expect = match store.head(&id("a")) {
            Ok(Some(head)) => Expect::At(head.seq),
            _ => Expect::At(2),
        };
        match one(&store, &id("a"), expect, b"r3", 3) {
            Err(AppendError::Damaged { id: at, .. }) => assert_eq!(at, id("a"), "{what}"),
            Err(AppendError::Conflict { .. }) if value.len() < head_len => {}
            other => panic!("{what}: a write onto damage gave {other:?}"),
        }
        drop(store);
        assert_eq!(
            stored_value(dir.path(), "a").as_ref(),
            Some(value),
            "{what}"
        );
    }
    let mut newer = whole.clone();
    newer[0] = 2;
    put_value(dir.path(), "a", &newer);
    let store = Sled::open(dir.path()).unwrap();
    assert!(matches!(
        store.head(&id("a")),
        Err(ReadError::UnknownVersion { found: 2, .. })
    ));
    assert!(matches!(
        store.history(&id("a")),
        Err(ReadError::UnknownVersion { found: 2, .. })
    ));
}

/// Every single-bit flip of a stored value is caught: by the store's framing
/// (a typed error naming the delegation), or, where the framing still holds, by
/// the ledger, whose records and head carry checksums and a chain: `history` or
/// `status` refuses it, or the audit reports it. A value whose framing holds is
/// loaded, exactly as decoded, into a memory store under a ledger. None panics,
/// and none reads as the original.
#[test]
fn every_bit_flip_of_a_stored_value_is_a_typed_error_or_an_audit_finding() {
    use delegation_log::store::sled::value;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log");
    let a = id("a");
    {
        let ledger = delegation_log::Ledger::open(&path).unwrap();
        ledger
            .record(&a, delegation_log::Event::queued("p", "t"))
            .unwrap();
        ledger
            .record(&a, delegation_log::Event::delivered(Some(200)).unwrap())
            .unwrap();
    }
    let whole = stored_value(&path, "a").unwrap();
    let mut caught = [0u32; 3];
    for byte in 0..whole.len() {
        for bit in 0..8 {
            let mut flipped = whole.clone();
            flipped[byte] ^= 1 << bit;
            let (head, entries) = match value::decode(&a, &flipped) {
                Ok(decoded) => decoded,
                Err(ReadError::Corrupt { key, .. }) => {
                    assert_eq!(key, "delegation `a`");
                    caught[0] += 1;
                    continue;
                }
                Err(ReadError::UnknownVersion { found, .. }) => {
                    assert_eq!(byte, 0, "{found}");
                    caught[0] += 1;
                    continue;
                }
                Err(other) => panic!("byte {byte} bit {bit}: {other}"),
            };
            let memory = delegation_log::store::Memory::new();
            for entry in &entries {
                let last = entry.seq == head.seq;
                memory
                    .append(&[Append {
                        id: &a,
                        expect: Expect::after(entry.seq - 1),
                        record: &entry.bytes,
                        head: if last { &head.summary } else { b"" },
                    }])
                    .unwrap();
            }
            let ledger = delegation_log::Ledger::with_store(
                std::sync::Arc::new(memory),
                delegation_log::ledger::Options::new(),
            );
            if ledger.history(&a).is_err() || ledger.status(&a).is_err() {
                caught[1] += 1;
            } else {
                let verdict = ledger.audit().unwrap();
                assert!(!verdict.is_clean(), "byte {byte} bit {bit} went unseen");
                caught[2] += 1;
            }
        }
    }
    assert!(caught[0] > 0 && caught[1] > 0, "{caught:?}");
    println!("{caught:?} flips caught by the framing / refused by reads / found by the audit");
}
#[test]
fn a_head_of_the_wrong_length_is_corruption_in_a_format_1_store() {
    let dir = tempfile::tempdir().unwrap();
    legacy(dir.path(), &[("a", 1, Some(1))]);
    raw(dir.path(), |db| {
        db.open_tree("heads")
            .unwrap()
            .insert(key::prefix(&id("a")), &[1u8, 2, 3][..])
            .unwrap();
    });
    let store = Sled::open(dir.path()).unwrap();
    assert_eq!(store.format(), 1);
    let err = store.history(&id("a")).unwrap_err().to_string();
    assert!(err.contains("3 bytes, not 40"), "{err}");
    let err = store.head(&id("a")).unwrap_err().to_string();
    assert!(err.contains("3 bytes, not 40"), "{err}");
    let scan = scanned(&store);
    assert_eq!(scan.len(), 1);
    let err = scan[0].as_ref().unwrap_err();
    assert!(err.contains("3 bytes, not 40"), "{err}");
}

/// What a scan gives of `b` and `d` with two records each, around heads without
/// records for `a` (seq 3), `c` (4) and `e` (5).
fn heads_around_b_and_d() -> Vec<(String, Vec<u64>, Option<u64>)> {
    vec![
        ("a".into(), vec![], Some(3)),
        ("b".into(), vec![1, 2], Some(2)),
        ("c".into(), vec![], Some(4)),
        ("d".into(), vec![1, 2], Some(2)),
        ("e".into(), vec![], Some(5)),
    ]
}

#[test]
fn a_scan_reports_heads_without_records_in_key_order_around_the_others_in_a_format_2_store() {
    let dir = tempfile::tempdir().unwrap();
    written_v2(dir.path(), &["b", "d"], 2);
    raw(dir.path(), |db| {
        let log = db.open_tree("log").unwrap();
        for (name, seq) in [("a", 3u64), ("c", 4), ("e", 5)] {
            log.insert(key::head(&id(name)), &head(seq, 9).encode()[..])
                .unwrap();
        }
    });
    let store = Sled::open(dir.path()).unwrap();
    assert_eq!(summarised(&store), heads_around_b_and_d());
    assert_eq!(store.history(&id("c")).unwrap().head, Some(head(4, 9)));
}

#[test]
fn a_scan_reports_heads_without_records_in_key_order_in_a_format_1_store() {
    let dir = tempfile::tempdir().unwrap();
    legacy(
        dir.path(),
        &[
            ("a", 0, Some(3)),
            ("b", 2, Some(2)),
            ("c", 0, Some(4)),
            ("d", 2, Some(2)),
            ("e", 0, Some(5)),
        ],
    );
    let store = Sled::open(dir.path()).unwrap();
    assert_eq!(summarised(&store), heads_around_b_and_d());
    assert_eq!(store.head(&id("c")).unwrap(), Some(legacy_head(4, 4)));
}

/// A record beyond its head, found while scanning key by key, is read again
/// whole: the scan gives the delegation exactly as `history` does.
#[test]
fn a_scan_gives_a_delegation_out_of_step_as_history_reads_it_in_a_format_2_store() {
    let dir = tempfile::tempdir().unwrap();
    written_v2(dir.path(), &["a", "b"], 2);
    raw(dir.path(), |db| {
        db.open_tree("log")
            .unwrap()
            .insert(key::record(&id("a"), 3), &b"beyond"[..])
            .unwrap();
    });
    let store = Sled::open(dir.path()).unwrap();
    let streams: Vec<Stream> = store.scan().map(Result::unwrap).collect();
    assert_eq!(streams.len(), 2);
    assert_eq!(streams[0], store.history(&id("a")).unwrap());
    assert_eq!(
        streams[0].entries.iter().map(|e| e.seq).collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
    assert_eq!(streams[0].head, Some(head(2, 2)));
    assert!(!streams[0].in_step());
    assert_eq!(streams[1], store.history(&id("b")).unwrap());
}

/// A key of the `delegations` tree that is not a length-prefixed id is an
/// error for its place in the scan, which goes on.
#[test]
fn a_scan_reports_damaged_keys_and_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    written(dir.path(), &["b"], 1);
    let value = stored_value(dir.path(), "b").unwrap();
    let mut long = key::prefix(&id("b"));
    long.push(0);
    raw(dir.path(), |db| {
        let tree = db.open_tree("delegations").unwrap();
        // Sorts before `b`'s key; right after it (`b`'s prefix and a byte
        // more); and after everything.
        for bad in [&[0u8, 1][..], &long[..], &[0u8, 5, b'a'][..]] {
            tree.insert(bad, &value[..]).unwrap();
        }
    });
    let store = Sled::open(dir.path()).unwrap();
    let scan = scanned(&store);
    assert_eq!(scan.len(), 4, "{scan:?}");
    let err = scan[0].as_ref().unwrap_err();
    assert!(err.contains("key 0001:"), "{err}");
    assert_eq!(scan[1].as_ref().unwrap().id, id("b"));
    assert_eq!(scan[1].as_ref().unwrap().head, Some(head(1, 1)));
    assert_eq!(scan[1].as_ref().unwrap().entries.len(), 1);
    let err = scan[2].as_ref().unwrap_err();
    assert!(err.contains("key 00016200:"), "{err}");
    let err = scan[3].as_ref().unwrap_err();
    assert!(err.contains("key 000561"), "{err}");
}

#[test]
fn a_scan_reports_damaged_keys_and_goes_on_in_a_format_2_store() {
    let dir = tempfile::tempdir().unwrap();
    written_v2(dir.path(), &["b"], 1);
    let mut long_seq = key::prefix(&id("b"));
    long_seq.extend_from_slice(&[0xff; 9]);
    raw(dir.path(), |db| {
        let log = db.open_tree("log").unwrap();
        // Sorts before `b`'s keys; right after them, under `b`'s prefix with
        // a seq of 9 bytes; and after everything.
        for bad in [&[0u8, 1][..], &long_seq[..], &[0u8, 5, b'a'][..]] {
            log.insert(bad, &head(1, 1).encode()[..]).unwrap();
        }
    });
    let store = Sled::open(dir.path()).unwrap();
    let scan = scanned(&store);
    assert_eq!(scan.len(), 4, "{scan:?}");
    let err = scan[0].as_ref().unwrap_err();
    assert!(err.contains("key 0001:"), "{err}");
    assert_eq!(scan[1].as_ref().unwrap().id, id("b"));
    assert_eq!(scan[1].as_ref().unwrap().head, Some(head(1, 1)));
    assert_eq!(scan[1].as_ref().unwrap().entries.len(), 1);
    let err = scan[2].as_ref().unwrap_err();
    assert!(err.contains("seq field is 9 bytes, not 8"), "{err}");
    let err = scan[3].as_ref().unwrap_err();
    assert!(err.contains("key 000561"), "{err}");
}

#[test]
fn a_scan_reports_damaged_head_keys_and_goes_on_in_a_format_1_store() {
    let dir = tempfile::tempdir().unwrap();
    legacy(dir.path(), &[("b", 1, Some(1))]);
    raw(dir.path(), |db| {
        let heads = db.open_tree("heads").unwrap();
        // Sorts before `b`'s records, and after them.
        for bad in [&[0u8, 1][..], &[0u8, 5, b'a'][..]] {
            heads.insert(bad, &legacy_head(1, 1).encode()[..]).unwrap();
        }
    });
    let store = Sled::open(dir.path()).unwrap();
    let scan = scanned(&store);
    assert_eq!(scan.len(), 3, "{scan:?}");
    let err = scan[0].as_ref().unwrap_err();
    assert!(err.contains("key 0001:"), "{err}");
    assert_eq!(scan[1].as_ref().unwrap().id, id("b"));
    assert_eq!(scan[1].as_ref().unwrap().head, Some(legacy_head(1, 1)));
    let err = scan[2].as_ref().unwrap_err();
    assert!(err.contains("key 000561"), "{err}");
}

#[test]
fn a_scan_gives_a_delegation_without_a_head_none_and_leaves_the_next_head_alone_in_a_format_2_store()
 {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Sled::open(dir.path()).unwrap();
        one(&store, &id("a"), Expect::Empty, b"r", 1).unwrap();
        one(&store, &id("b"), Expect::Empty, b"r", 2).unwrap();
    }
    audit_support::downgrade_to_v2(dir.path());
    raw(dir.path(), |db| {
        db.open_tree("log")
            .unwrap()
            .remove(key::head(&id("a")))
            .unwrap();
    });
    let store = Sled::open(dir.path()).unwrap();
    assert_eq!(
        scanned_heads(&store),
        vec![("a".into(), None), ("b".into(), Some(head(1, 2)))]
    );
    assert_eq!(store.head(&id("a")).unwrap(), None);
    assert_eq!(store.history(&id("a")).unwrap().head, None);
    assert_eq!(store.history(&id("a")).unwrap().entries.len(), 1);
}

/// In format 1 a record was written before its head, so a delegation may have
/// a record and no head: the scan and `history` show the head as stored
/// (none); `head()` stands in the last record's seq with an empty summary.
#[test]
fn a_scan_gives_a_delegation_without_a_head_none_in_a_format_1_store() {
    let dir = tempfile::tempdir().unwrap();
    legacy(dir.path(), &[("a", 1, None), ("b", 1, Some(1))]);
    let store = Sled::open(dir.path()).unwrap();
    assert_eq!(
        scanned_heads(&store),
        vec![("a".into(), None), ("b".into(), Some(legacy_head(1, 1)))]
    );
    assert_eq!(
        store.head(&id("a")).unwrap(),
        Some(Head {
            seq: 1,
            summary: Vec::new()
        })
    );
    assert_eq!(store.head(&id("b")).unwrap(), Some(legacy_head(1, 1)));
    let history = store.history(&id("a")).unwrap();
    assert_eq!(history.entries.len(), 1);
    assert_eq!(history.head, None, "history must show the head as stored");
}

#[test]
fn history_and_scan_keep_ids_that_share_a_text_prefix_apart_in_a_format_1_store() {
    let dir = tempfile::tempdir().unwrap();
    legacy(
        dir.path(),
        &[("ab", 2, Some(2)), ("abc", 3, Some(3)), ("b", 1, Some(1))],
    );
    let store = Sled::open(dir.path()).unwrap();
    let history = store.history(&id("ab")).unwrap();
    assert_eq!(history.entries.len(), 2);
    assert!(history.entries.iter().all(|e| e.bytes == b"ab"));
    assert_eq!(history.head, Some(legacy_head(2, 2)));
    assert_eq!(summarised(&store).len(), 3);
    assert_eq!(
        summarised(&store)
            .into_iter()
            .map(|(id, seqs, _)| (id, seqs.len()))
            .collect::<Vec<_>>(),
        vec![("b".into(), 1), ("ab".into(), 2), ("abc".into(), 3)]
    );
}

// ---- the store's directory

#[test]
fn a_store_reports_its_path_and_a_size_that_grows_with_its_records() {
    let dir = tempfile::tempdir().unwrap();
    let store = Sled::open(dir.path()).unwrap();
    assert_eq!(store.path(), dir.path());
    let a = id("a");
    for seq in 1..=50u64 {
        let expect = Expect::after(seq - 1);
        let summary = summary(seq, 1);
        store
            .append(&[Append {
                id: &a,
                expect,
                record: &[7u8; 4096],
                head: &summary,
            }])
            .unwrap();
    }
    store.flush().unwrap();
    assert!(store.size_on_disk().unwrap() > 100 * 1024);
}

#[test]
fn opening_a_path_that_is_a_file_is_an_io_error_not_a_lock() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, b"plain file").unwrap();
    match Sled::open(&file) {
        Err(Error::Storage(StorageError::Io(_))) => {}
        other => panic!("expected an I/O error, got {other:?}"),
    }
}

// ---- the one value, for any appends

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig {
        cases: 64,
        failure_persistence: Some(Box::new(
            proptest::test_runner::FileFailurePersistence::Direct(
                "proptest-regressions/store_format.txt",
            ),
        )),
        ..proptest::prelude::ProptestConfig::default()
    })]

    /// For any sequence of appends (to a few delegations, records and summaries
    /// of any bytes, each alone or two delegations in one group), each
    /// delegation's one stored value decodes to exactly the records written, in
    /// order under seqs 1, 2, …, and the head of its last append; and it is byte
    /// for byte the value written out from `docs/store-format.md`; `history`,
    /// `head` and the scan read the same, before and after a reopen.
    #[test]
    fn any_appends_decode_from_the_one_value_to_exactly_the_records_and_head_written(
        appends in proptest::collection::vec(
            (
                0usize..3,
                proptest::collection::vec(proptest::prelude::any::<u8>(), 0..40),
                proptest::collection::vec(proptest::prelude::any::<u8>(), 0..20),
                proptest::prelude::any::<bool>(),
            ),
            1..12,
        )
    ) {
        use delegation_log::store::sled::value;
        let names = ["a", "ab", "b"];
        let dir = tempfile::tempdir().unwrap();
        let mut written: Vec<(Vec<Vec<u8>>, Vec<u8>)> = vec![(Vec::new(), Vec::new()); 3];
        {
            let store = Sled::open(dir.path()).unwrap();
            let mut pending: Option<(usize, Vec<u8>, Vec<u8>)> = None;
            for (who, record, summary, paired) in appends {
                match pending.take() {
                    Some((first, r, sm)) if first != who => {
                        let (ia, ib) = (id(names[first]), id(names[who]));
                        let ea = Expect::after(written[first].0.len() as u64);
                        let eb = Expect::after(written[who].0.len() as u64);
                        store.append(&[
                            Append { id: &ia, expect: ea, record: &r, head: &sm },
                            Append { id: &ib, expect: eb, record: &record, head: &summary },
                        ]).unwrap();
                        written[first].0.push(r);
                        written[first].1 = sm;
                        written[who].0.push(record);
                        written[who].1 = summary;
                        continue;
                    }
                    Some((first, r, sm)) => {
                        let ia = id(names[first]);
                        let ea = Expect::after(written[first].0.len() as u64);
                        store.append(&[Append { id: &ia, expect: ea, record: &r, head: &sm }]).unwrap();
                        written[first].0.push(r);
                        written[first].1 = sm;
                    }
                    None => {}
                }
                if paired {
                    pending = Some((who, record, summary));
                } else {
                    let ia = id(names[who]);
                    let ea = Expect::after(written[who].0.len() as u64);
                    store.append(&[Append { id: &ia, expect: ea, record: &record, head: &summary }]).unwrap();
                    written[who].0.push(record);
                    written[who].1 = summary;
                }
            }
            if let Some((first, r, sm)) = pending {
                let ia = id(names[first]);
                let ea = Expect::after(written[first].0.len() as u64);
                store.append(&[Append { id: &ia, expect: ea, record: &r, head: &sm }]).unwrap();
                written[first].0.push(r);
                written[first].1 = sm;
            }
        }
        for (name, (records, summary)) in names.iter().zip(&written) {
            let stored = stored_value(dir.path(), name);
            if records.is_empty() {
                proptest::prop_assert_eq!(stored, None);
                continue;
            }
            let stored = stored.unwrap();
            let seq = records.len() as u64;
            proptest::prop_assert_eq!(
                &stored,
                &audit_support::value_bytes(seq, summary, records)
            );
            let (head, entries) = value::decode(&id(name), &stored).unwrap();
            proptest::prop_assert_eq!(&head, &Head { seq, summary: summary.clone() });
            proptest::prop_assert_eq!(
                entries.iter().map(|e| (e.seq, e.bytes.clone())).collect::<Vec<_>>(),
                (1..).zip(records.iter().cloned()).collect::<Vec<_>>()
            );
            let store = Sled::open(dir.path()).unwrap();
            let history = store.history(&id(name)).unwrap();
            proptest::prop_assert_eq!(&history.entries, &entries);
            proptest::prop_assert_eq!(history.head.as_ref(), Some(&head));
            proptest::prop_assert_eq!(store.head(&id(name)).unwrap(), Some(head));
            let scanned: Vec<Stream> = store.scan().map(Result::unwrap).collect();
            proptest::prop_assert!(scanned.contains(&history));
        }
    }
}
