//! Guards `docs/store-format.md`: what the sled store keeps on disk and how it
//! reads what it finds there.
//!
//! - Keys: the big-endian length prefix, the id, the big-endian seq; a head at seq
//!   0, before every record; parse errors at both id length bounds, each with its
//!   reason; keys printed as lowercase hex.
//! - Heads: the big-endian seq, then the ledger's opaque summary; a head too short
//!   for its seq does not decode.
//! - The format marker and the trees: a new store is marked 2 and keeps records and
//!   heads in the one tree `log`, each head written in the same batch as its
//!   record and nothing else; a store of format 1 opens, reads, and refuses every
//!   append until migrated; a newer marker is refused, a marker that is not one
//!   byte is corruption; a format 2 store drops the format 1 trees a migration
//!   left behind.
//! - Reads of what is there: a head too short is corruption in `head`, `history`
//!   and the scan; heads without records, records without heads and records beyond
//!   their head are read as stored, in key order, with `history` and the scan
//!   agreeing; a key that does not parse is an error for its place in the scan,
//!   which goes on. Each of these has a format 1 twin, since sled still reads that
//!   format.
//! - The store's directory: its path and a size that grows with its records; a
//!   path that is a file is an I/O error at open.
//!
//! Format 1's "heads never go backwards" (a head raised after its record with
//! max-logic) is gone with format 2's single write; its stand-in here is
//! `a_head_and_its_record_are_written_together_under_the_format_2_keys`. Most of
//! these tests were written to kill mutants that cargo-mutants found surviving
//! the store contract suite (`store_conformance.rs`), which leaves these details
//! implicit.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::path::Path;

use delegation_log::event::MAX_ID_LEN;
use delegation_log::store::{Append, AppendError, Expect, Head, Sled, Store, Stream, key};
use delegation_log::{DelegationId, Error, StorageError};

fn id(text: &str) -> DelegationId {
    text.parse().unwrap()
}

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

/// Writes straight into sled's trees, as damage or an older crate would.
fn raw(path: &Path, change: impl FnOnce(&sled::Db)) {
    let db = sled::open(path).unwrap();
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
fn a_new_store_is_marked_with_format_2_and_keeps_one_tree_of_records() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Sled::open(dir.path()).unwrap();
        assert_eq!(store.format(), 2);
        one(&store, &id("a"), Expect::Empty, b"r", 1).unwrap();
    }
    let db = sled::open(dir.path()).unwrap();
    let format = db.open_tree("meta").unwrap().get("format").unwrap();
    assert_eq!(format.as_deref(), Some(&[2u8][..]));
    let names = tree_names(&db);
    assert!(names.contains(&"log".to_owned()), "{names:?}");
    assert!(!names.contains(&"records".to_owned()), "{names:?}");
    assert!(!names.contains(&"heads".to_owned()), "{names:?}");
}

/// Format 2 is current; format 1, the one before it, opens (read only); a
/// newer one is refused.
#[test]
fn a_store_marked_with_an_older_format_opens_and_a_newer_one_is_refused() {
    let current = tempfile::tempdir().unwrap();
    raw(current.path(), |db| mark(db, &[2]));
    assert_eq!(Sled::open(current.path()).unwrap().format(), 2);

    let older = tempfile::tempdir().unwrap();
    raw(older.path(), |db| mark(db, &[1]));
    assert_eq!(Sled::open(older.path()).unwrap().format(), 1);

    let newer = tempfile::tempdir().unwrap();
    raw(newer.path(), |db| mark(db, &[3]));
    match Sled::open(newer.path()) {
        Err(Error::UnknownVersion { key, found }) => {
            assert_eq!((key.as_str(), found), ("meta/format", 3));
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
/// head": each append writes its record under `key::record` and replaces the
/// head under `key::head` with exactly its own (seq `expect.next()`, its
/// summary, even a shorter one), in the one tree `log`, and nothing else.
#[test]
fn a_head_and_its_record_are_written_together_under_the_format_2_keys() {
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
    let db = sled::open(dir.path()).unwrap();
    let log: Vec<(Vec<u8>, Vec<u8>)> = db
        .open_tree("log")
        .unwrap()
        .iter()
        .map(|item| {
            let (k, v) = item.unwrap();
            (k.to_vec(), v.to_vec())
        })
        .collect();
    let mut head_value = 3u64.to_be_bytes().to_vec();
    head_value.extend_from_slice(&summary(3, 3));
    assert_eq!(
        log,
        vec![
            (key::head(&a), head_value),
            (key::record(&a, 1), b"one".to_vec()),
            (key::record(&a, 2), b"two".to_vec()),
            (key::record(&a, 3), b"three".to_vec()),
        ]
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
    let db = sled::open(dir.path()).unwrap();
    assert!(
        !tree_names(&db).contains(&"log".to_owned()),
        "a refused append created the format 2 tree"
    );
}

/// A migration that switched the marker to 2 and stopped before dropping
/// format 1's trees leaves them behind; the next open drops them.
#[test]
fn a_format_2_store_drops_the_format_1_trees_a_migration_left() {
    let dir = tempfile::tempdir().unwrap();
    legacy(dir.path(), &[("a", 1, Some(1))]);
    raw(dir.path(), |db| mark(db, &[2]));
    {
        let store = Sled::open(dir.path()).unwrap();
        assert_eq!(store.format(), 2);
        assert_eq!(store.scan().count(), 0);
    }
    let db = sled::open(dir.path()).unwrap();
    let names = tree_names(&db);
    assert!(!names.contains(&"records".to_owned()), "{names:?}");
    assert!(!names.contains(&"heads".to_owned()), "{names:?}");
}

// ---- reads of what is there

#[test]
fn a_head_of_the_wrong_length_is_corruption_in_head_history_and_scan() {
    let dir = tempfile::tempdir().unwrap();
    written(dir.path(), &["a", "b"], 1);
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
    // One error for the damaged delegation, then the scan goes on.
    let scan = scanned(&store);
    assert_eq!(scan.len(), 2, "{scan:?}");
    let err = scan[0].as_ref().unwrap_err();
    assert!(err.contains("3 bytes, too short for its seq"), "{err}");
    assert_eq!(scan[1].as_ref().unwrap().head, Some(head(1, 1)));
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
fn a_scan_reports_heads_without_records_in_key_order_around_the_others() {
    let dir = tempfile::tempdir().unwrap();
    written(dir.path(), &["b", "d"], 2);
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
fn a_scan_gives_a_delegation_out_of_step_as_history_reads_it() {
    let dir = tempfile::tempdir().unwrap();
    written(dir.path(), &["a", "b"], 2);
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

#[test]
fn a_scan_reports_damaged_keys_and_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    written(dir.path(), &["b"], 1);
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
fn a_scan_gives_a_delegation_without_a_head_none_and_leaves_the_next_head_alone() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Sled::open(dir.path()).unwrap();
        one(&store, &id("a"), Expect::Empty, b"r", 1).unwrap();
        one(&store, &id("b"), Expect::Empty, b"r", 2).unwrap();
    }
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
