//! Guards the store's small building blocks and sled's edge paths that the
//! conformance suite leaves implicit, each test written to kill mutants that
//! cargo-mutants found surviving: the `Expect` arithmetic and wording, the head
//! encoding, the exact key layout (length prefix, id, big-endian seq) and its parse
//! errors at the boundaries, and sled's handling of format markers, heads that
//! must never go backwards, and damage it reads back.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use delegation_log::event::MAX_ID_LEN;
use delegation_log::store::{Expect, Head, key};
use delegation_log::{ChainHash, DelegationId};

fn id(text: &str) -> DelegationId {
    text.parse().unwrap()
}

#[test]
fn an_expectation_names_the_seq_the_append_will_have() {
    assert_eq!(Expect::Empty.next(), 1);
    assert_eq!(Expect::At(1).next(), 2);
    assert_eq!(Expect::At(41).next(), 42);
    assert_eq!(Expect::At(u64::MAX).next(), u64::MAX);
}

#[test]
fn an_expectation_after_seq_zero_is_empty_and_after_any_other_is_that_seq() {
    assert_eq!(Expect::after(0), Expect::Empty);
    assert_eq!(Expect::after(1), Expect::At(1));
    assert_eq!(Expect::after(7), Expect::At(7));
}

#[test]
fn an_expectation_reads_as_words() {
    assert_eq!(Expect::Empty.to_string(), "no records");
    assert_eq!(Expect::At(3).to_string(), "head at seq 3");
}

#[test]
fn a_head_encodes_as_big_endian_seq_then_hash_and_decodes_back() {
    let mut hash = [0u8; 32];
    for (i, byte) in hash.iter_mut().enumerate() {
        *byte = u8::try_from(i).unwrap() + 1;
    }
    let head = Head {
        seq: 0x0102_0304_0506_0708,
        hash: ChainHash(hash),
    };
    let encoded = head.encode();
    assert_eq!(encoded.len(), Head::LEN);
    assert_eq!(&encoded[..8], &[1, 2, 3, 4, 5, 6, 7, 8]);
    assert_eq!(&encoded[8..], &hash);
    assert_eq!(Head::decode(&encoded), Some(head));
}

#[test]
fn a_head_of_the_wrong_length_does_not_decode() {
    let encoded = Head {
        seq: 9,
        hash: ChainHash([7; 32]),
    }
    .encode();
    assert_eq!(Head::decode(&[]), None);
    assert_eq!(Head::decode(&encoded[..7]), None);
    assert_eq!(Head::decode(&encoded[..Head::LEN - 1]), None);
    let mut long = encoded.to_vec();
    long.push(0);
    assert_eq!(Head::decode(&long), None);
}

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

mod sled_store {
    use std::path::Path;

    use delegation_log::ChainHash;
    use delegation_log::Error;
    use delegation_log::store::{Expect, Head, Sled, Store, Stream, key};

    use super::id;

    fn head(seq: u64, fill: u8) -> Head {
        Head {
            seq,
            hash: ChainHash([fill; 32]),
        }
    }

    /// Writes straight into sled's trees, as damage or an older crate would.
    fn raw(path: &Path, change: impl FnOnce(&sled::Db)) {
        let db = sled::open(path).unwrap();
        change(&db);
        db.flush().unwrap();
    }

    fn scanned(store: &Sled) -> Vec<Result<Stream, String>> {
        store
            .scan()
            .map(|item| item.map_err(|e| e.to_string()))
            .collect()
    }

    #[test]
    fn a_store_reports_its_path_and_a_size_that_grows_with_its_records() {
        let dir = tempfile::tempdir().unwrap();
        let store = Sled::open(dir.path()).unwrap();
        assert_eq!(store.path(), dir.path());
        let a = id("a");
        for seq in 1..=50u64 {
            let expect = Expect::after(seq - 1);
            store
                .append(&a, expect, &vec![7u8; 4096], head(seq, 1))
                .unwrap();
        }
        store.flush().unwrap();
        assert!(store.size_on_disk().unwrap() > 100 * 1024);
    }

    #[test]
    fn the_page_cache_is_sleds_default_for_ledgers_and_four_mebibytes_for_audits() {
        // Only memory use shows these, which a test cannot measure reliably; the
        // figures in BENCHMARKS.md were measured with exactly these values.
        assert_eq!(Sled::DEFAULT_CACHE_BYTES, 1_073_741_824);
        assert_eq!(Sled::SCAN_CACHE_BYTES, 4_194_304);
    }

    #[test]
    fn a_store_marked_with_an_older_format_opens_and_a_newer_one_is_refused() {
        let older = tempfile::tempdir().unwrap();
        raw(older.path(), |db| {
            db.open_tree("meta")
                .unwrap()
                .insert("format", &[0u8][..])
                .unwrap();
        });
        Sled::open(older.path()).unwrap();

        let newer = tempfile::tempdir().unwrap();
        raw(newer.path(), |db| {
            db.open_tree("meta")
                .unwrap()
                .insert("format", &[2u8][..])
                .unwrap();
        });
        match Sled::open(newer.path()) {
            Err(Error::UnknownVersion { key, found }) => {
                assert_eq!((key.as_str(), found), ("meta/format", 2));
            }
            other => panic!("expected UnknownVersion, got {other:?}"),
        }
    }

    #[test]
    fn a_format_marker_that_is_not_one_byte_is_corruption() {
        let dir = tempfile::tempdir().unwrap();
        raw(dir.path(), |db| {
            db.open_tree("meta")
                .unwrap()
                .insert("format", &[1u8, 1][..])
                .unwrap();
        });
        match Sled::open(dir.path()) {
            Err(Error::Corrupt { key, reason }) => {
                assert_eq!(key, "meta/format");
                assert!(reason.contains("not one byte"), "{reason}");
            }
            other => panic!("expected Corrupt, got {other:?}"),
        }
    }

    #[test]
    fn opening_a_path_that_is_a_file_is_an_io_error_not_a_lock() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("not-a-dir");
        std::fs::write(&file, b"plain file").unwrap();
        match Sled::open(&file) {
            Err(Error::Io(_)) => {}
            other => panic!("expected an I/O error, got {other:?}"),
        }
    }

    #[test]
    fn a_conflict_names_the_head_the_store_actually_has() {
        let dir = tempfile::tempdir().unwrap();
        let store = Sled::open(dir.path()).unwrap();
        let a = id("a");
        store.append(&a, Expect::Empty, b"one", head(1, 1)).unwrap();
        store.append(&a, Expect::At(1), b"two", head(2, 2)).unwrap();
        for stale in [Expect::Empty, Expect::At(1), Expect::At(5)] {
            match store.append(&a, stale, b"x", head(9, 9)) {
                Err(Error::Conflict {
                    id,
                    expected,
                    actual,
                }) => {
                    assert_eq!((id, expected, actual), (a.clone(), stale, Some(2)));
                }
                other => panic!("expected a conflict for {stale}, got {other:?}"),
            }
        }
        match store.append(&id("b"), Expect::At(3), b"x", head(4, 4)) {
            Err(Error::Conflict { actual, .. }) => assert_eq!(actual, None),
            other => panic!("expected a conflict, got {other:?}"),
        }
    }

    #[test]
    fn an_append_never_lowers_or_replaces_an_equal_head() {
        let dir = tempfile::tempdir().unwrap();
        let store = Sled::open(dir.path()).unwrap();
        let a = id("a");
        store.append(&a, Expect::Empty, b"one", head(5, 1)).unwrap();
        store.append(&a, Expect::At(1), b"two", head(5, 2)).unwrap();
        assert_eq!(store.history(&a).unwrap().head, Some(head(5, 1)));
        store
            .append(&a, Expect::At(2), b"three", head(3, 3))
            .unwrap();
        assert_eq!(store.history(&a).unwrap().head, Some(head(5, 1)));
        store
            .append(&a, Expect::At(3), b"four", head(6, 4))
            .unwrap();
        assert_eq!(store.history(&a).unwrap().head, Some(head(6, 4)));
    }

    #[test]
    fn a_head_of_the_wrong_length_is_corruption_in_history_and_scan() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Sled::open(dir.path()).unwrap();
            store
                .append(&id("a"), Expect::Empty, b"r", head(1, 1))
                .unwrap();
        }
        raw(dir.path(), |db| {
            db.open_tree("heads")
                .unwrap()
                .insert(key::prefix(&id("a")), &[1u8, 2, 3][..])
                .unwrap();
        });
        let store = Sled::open(dir.path()).unwrap();
        let err = store.history(&id("a")).unwrap_err().to_string();
        assert!(err.contains("3 bytes, not 40"), "{err}");
        let scan = scanned(&store);
        assert_eq!(scan.len(), 1);
        let err = scan[0].as_ref().unwrap_err();
        assert!(err.contains("3 bytes, not 40"), "{err}");
    }

    #[test]
    fn a_scan_reports_heads_without_records_in_key_order_around_the_others() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Sled::open(dir.path()).unwrap();
            for name in ["b", "d"] {
                store
                    .append(&id(name), Expect::Empty, b"r1", head(1, 1))
                    .unwrap();
                store
                    .append(&id(name), Expect::At(1), b"r2", head(2, 2))
                    .unwrap();
            }
        }
        raw(dir.path(), |db| {
            let heads = db.open_tree("heads").unwrap();
            for (name, seq) in [("a", 3u64), ("c", 4), ("e", 5)] {
                heads
                    .insert(key::prefix(&id(name)), &head(seq, 9).encode()[..])
                    .unwrap();
            }
        });
        let store = Sled::open(dir.path()).unwrap();
        let summary: Vec<(String, Vec<u64>, Option<u64>)> = store
            .scan()
            .map(|stream| {
                let stream = stream.unwrap();
                (
                    stream.id.to_string(),
                    stream.entries.iter().map(|e| e.seq).collect(),
                    stream.head.map(|h| h.seq),
                )
            })
            .collect();
        let expected: Vec<(String, Vec<u64>, Option<u64>)> = vec![
            ("a".into(), vec![], Some(3)),
            ("b".into(), vec![1, 2], Some(2)),
            ("c".into(), vec![], Some(4)),
            ("d".into(), vec![1, 2], Some(2)),
            ("e".into(), vec![], Some(5)),
        ];
        assert_eq!(summary, expected);
    }

    #[test]
    fn a_scan_reports_damaged_head_keys_and_goes_on() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Sled::open(dir.path()).unwrap();
            store
                .append(&id("b"), Expect::Empty, b"r", head(1, 1))
                .unwrap();
        }
        raw(dir.path(), |db| {
            let heads = db.open_tree("heads").unwrap();
            // Sorts before `b`'s records, and after them.
            for bad in [&[0u8, 1][..], &[0u8, 5, b'a'][..]] {
                heads.insert(bad, &head(1, 1).encode()[..]).unwrap();
            }
        });
        let store = Sled::open(dir.path()).unwrap();
        let scan = scanned(&store);
        assert_eq!(scan.len(), 3, "{scan:?}");
        let err = scan[0].as_ref().unwrap_err();
        assert!(err.contains("key 0001:"), "{err}");
        assert_eq!(scan[1].as_ref().unwrap().id, id("b"));
        assert_eq!(scan[1].as_ref().unwrap().head, Some(head(1, 1)));
        let err = scan[2].as_ref().unwrap_err();
        assert!(err.contains("key 000561"), "{err}");
    }

    #[test]
    fn a_scan_gives_a_delegation_without_a_head_none_and_leaves_the_next_head_alone() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Sled::open(dir.path()).unwrap();
            store
                .append(&id("a"), Expect::Empty, b"r", head(1, 1))
                .unwrap();
            store
                .append(&id("b"), Expect::Empty, b"r", head(1, 2))
                .unwrap();
        }
        raw(dir.path(), |db| {
            db.open_tree("heads")
                .unwrap()
                .remove(key::prefix(&id("a")))
                .unwrap();
        });
        let store = Sled::open(dir.path()).unwrap();
        let heads: Vec<(String, Option<Head>)> = store
            .scan()
            .map(|s| {
                let s = s.unwrap();
                (s.id.to_string(), s.head)
            })
            .collect();
        assert_eq!(
            heads,
            vec![("a".into(), None), ("b".into(), Some(head(1, 2)))]
        );
    }

    #[test]
    fn history_and_scan_keep_ids_that_share_a_text_prefix_apart() {
        let dir = tempfile::tempdir().unwrap();
        let store = Sled::open(dir.path()).unwrap();
        for (name, count) in [("ab", 2u64), ("abc", 3), ("b", 1)] {
            for seq in 1..=count {
                store
                    .append(
                        &id(name),
                        Expect::after(seq - 1),
                        name.as_bytes(),
                        head(seq, 1),
                    )
                    .unwrap();
            }
        }
        let history = store.history(&id("ab")).unwrap();
        assert_eq!(history.entries.len(), 2);
        assert!(history.entries.iter().all(|e| e.bytes == b"ab"));
        let summary: Vec<(String, usize)> = store
            .scan()
            .map(|s| {
                let s = s.unwrap();
                (s.id.to_string(), s.entries.len())
            })
            .collect();
        assert_eq!(
            summary,
            vec![("b".into(), 1), ("ab".into(), 2), ("abc".into(), 3)]
        );
    }
}
