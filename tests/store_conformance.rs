//! Guards the `Store` contract that the ledger relies on, for every implementation
//! (sled, memory, fault-injecting): appends land at the expected seq and nowhere
//! else, a stale expectation is a `Conflict` that writes nothing, ids that are
//! prefixes of each other stay apart, scans come in key order one delegation at a
//! time with their heads, and the head never moves backwards. A group append
//! (`append_all`) writes all of its records or none, against each one's own
//! expectation, and a crash or a torn write never splits it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::sync::Arc;

use delegation_log::store::{Append, Expect, Faulty, Head, Memory, Sled, Store};
use delegation_log::{ChainHash, DelegationId, Error};

fn head(seq: u64) -> Head {
    Head {
        seq,
        hash: ChainHash([seq as u8; 32]),
    }
}

fn id(text: &str) -> DelegationId {
    text.parse().unwrap()
}

fn each_store(check: impl Fn(&dyn Store)) {
    let dir = tempfile::tempdir().unwrap();
    let sled = Sled::open(dir.path().join("db")).unwrap();
    let stores: Vec<(&str, Arc<dyn Store>)> = vec![
        ("sled", Arc::new(sled)),
        ("memory", Arc::new(Memory::new())),
        ("faulty", Arc::new(Faulty::seeded(1))),
    ];
    for (name, store) in stores {
        eprintln!("store: {name}");
        check(store.as_ref());
    }
}

#[test]
fn appends_land_at_the_expected_seq_and_a_stale_expectation_conflicts() {
    each_store(|store| {
        let a = id("a");
        store.append(&a, Expect::Empty, b"one", head(1)).unwrap();
        store.append(&a, Expect::At(1), b"two", head(2)).unwrap();
        for stale in [Expect::Empty, Expect::At(1), Expect::At(5)] {
            match store.append(&a, stale, b"stale", head(9)) {
                Err(Error::Conflict { expected, .. }) => assert_eq!(expected, stale),
                other => panic!("{stale}: expected a conflict, got {other:?}"),
            }
        }
        let stream = store.history(&a).unwrap();
        let seqs: Vec<_> = stream
            .entries
            .iter()
            .map(|e| (e.seq, e.bytes.clone()))
            .collect();
        assert_eq!(seqs, vec![(1, b"one".to_vec()), (2, b"two".to_vec())]);
        assert_eq!(stream.head, Some(head(2)));
    });
}

#[test]
fn ids_that_prefix_each_other_stay_apart() {
    each_store(|store| {
        store
            .append(&id("ab"), Expect::Empty, b"ab", head(1))
            .unwrap();
        store
            .append(&id("abc"), Expect::Empty, b"abc", head(1))
            .unwrap();
        store
            .append(&id("abc"), Expect::At(1), b"abc2", head(2))
            .unwrap();
        assert_eq!(store.history(&id("ab")).unwrap().entries.len(), 1);
        assert_eq!(store.history(&id("abc")).unwrap().entries.len(), 2);
        assert!(store.history(&id("a")).unwrap().entries.is_empty());
    });
}

#[test]
fn scans_yield_each_delegation_once_in_key_order_with_its_head() {
    each_store(|store| {
        for name in ["zeta", "alpha", "mid", "a"] {
            store
                .append(&id(name), Expect::Empty, name.as_bytes(), head(1))
                .unwrap();
        }
        store
            .append(&id("mid"), Expect::At(1), b"mid2", head(2))
            .unwrap();
        let streams: Vec<_> = store.scan().map(Result::unwrap).collect();
        let ids: Vec<&str> = streams.iter().map(|s| s.id.as_str()).collect();
        // Length-prefixed keys order by length first, then bytes.
        assert_eq!(ids, vec!["a", "mid", "zeta", "alpha"]);
        let mid = &streams[1];
        assert_eq!(mid.entries.len(), 2);
        assert_eq!(mid.head, Some(head(2)));
    });
}

#[test]
fn racing_appends_for_one_seq_let_exactly_one_through() {
    each_store(|store| {
        let a = id("race");
        store.append(&a, Expect::Empty, b"queued", head(1)).unwrap();
        let wins = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..8)
                .map(|n| {
                    let a = &a;
                    scope.spawn(move || store.append(a, Expect::At(1), &[n], head(2)).is_ok())
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap())
                .filter(|won| *won)
                .count()
        });
        assert_eq!(wins, 1);
        assert_eq!(store.history(&a).unwrap().entries.len(), 2);
    });
}

#[test]
fn the_faulty_store_loses_exactly_the_unflushed_tail_on_a_crash() {
    let store = Faulty::seeded(3);
    store
        .append(&id("kept"), Expect::Empty, b"k", head(1))
        .unwrap();
    store.flush().unwrap();
    store
        .append(&id("lost"), Expect::Empty, b"l", head(1))
        .unwrap();
    assert_eq!(store.pending(), 1);
    store.crash();
    assert_eq!(store.history(&id("kept")).unwrap().entries.len(), 1);
    assert!(store.history(&id("lost")).unwrap().entries.is_empty());
}

#[test]
fn the_faulty_store_tears_the_last_pending_write_the_same_way_for_the_same_seed() {
    let torn = |seed| {
        let store = Faulty::seeded(seed);
        store
            .append(&id("a"), Expect::Empty, b"first record", head(1))
            .unwrap();
        store
            .append(&id("b"), Expect::Empty, b"second record, torn", head(1))
            .unwrap();
        assert!(store.crash_tearing());
        (
            store.history(&id("a")).unwrap(),
            store.history(&id("b")).unwrap(),
        )
    };
    let (a, b) = torn(11);
    assert_eq!(a.entries[0].bytes, b"first record");
    assert!(b.entries[0].bytes.len() < b"second record, torn".len());
    assert_eq!(b.head, None);
    assert_eq!(torn(11), (a, b));
}

fn append<'a>(id: &'a DelegationId, expect: Expect, record: &'a [u8], seq: u64) -> Append<'a> {
    Append {
        id,
        expect,
        record,
        head: head(seq),
    }
}

#[test]
fn a_group_append_writes_every_record_or_none() {
    each_store(|store| {
        let (a, b) = (id("a"), id("b"));
        store.append(&a, Expect::Empty, b"a1", head(1)).unwrap();
        // The second expectation is stale: nothing of the group is written.
        let stale = [
            append(&a, Expect::At(1), b"a2", 2),
            append(&b, Expect::At(1), b"b2", 2),
        ];
        match store.append_all(&stale) {
            Err(Error::Conflict {
                id: refused,
                expected,
                actual,
            }) => assert_eq!(
                (refused, expected, actual),
                (b.clone(), Expect::At(1), None)
            ),
            other => panic!("expected a conflict on b, got {other:?}"),
        }
        assert_eq!(store.history(&a).unwrap().entries.len(), 1);
        assert!(store.history(&b).unwrap().entries.is_empty());
        assert_eq!(store.history(&a).unwrap().head, Some(head(1)));

        store
            .append_all(&[
                append(&a, Expect::At(1), b"a2", 2),
                append(&b, Expect::Empty, b"b1", 1),
            ])
            .unwrap();
        let (a_stream, b_stream) = (store.history(&a).unwrap(), store.history(&b).unwrap());
        assert_eq!(a_stream.entries[1].bytes, b"a2");
        assert_eq!(a_stream.head, Some(head(2)));
        assert_eq!(b_stream.entries[0].bytes, b"b1");
        assert_eq!(b_stream.head, Some(head(1)));
        store.append_all(&[]).unwrap();
    });
}

#[test]
fn a_group_may_append_to_one_delegation_twice_in_order() {
    each_store(|store| {
        let a = id("a");
        store
            .append_all(&[
                append(&a, Expect::Empty, b"one", 1),
                append(&a, Expect::At(1), b"two", 2),
            ])
            .unwrap();
        let stream = store.history(&a).unwrap();
        assert_eq!(stream.entries.len(), 2);
        assert_eq!(stream.head, Some(head(2)));
        // Out of order, the second expectation fails against the first.
        assert!(matches!(
            store.append_all(&[
                append(&id("b"), Expect::Empty, b"one", 1),
                append(&id("b"), Expect::Empty, b"again", 1),
            ]),
            Err(Error::Conflict { .. })
        ));
        assert!(store.history(&id("b")).unwrap().entries.is_empty());
    });
}

#[test]
fn racing_group_appends_on_one_head_let_exactly_one_through() {
    each_store(|store| {
        let original = id("original");
        store
            .append(&original, Expect::Empty, b"queued", head(1))
            .unwrap();
        let retries: Vec<DelegationId> = (0..8).map(|n| id(&format!("retry-{n}"))).collect();
        let wins = std::thread::scope(|scope| {
            let handles: Vec<_> = retries
                .iter()
                .map(|retry| {
                    let original = &original;
                    scope.spawn(move || {
                        store
                            .append_all(&[
                                append(original, Expect::At(1), b"failed", 2),
                                append(retry, Expect::Empty, b"queued", 1),
                            ])
                            .is_ok()
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap())
                .filter(|won| *won)
                .count()
        });
        assert_eq!(wins, 1);
        assert_eq!(store.history(&original).unwrap().entries.len(), 2);
        let written = retries
            .iter()
            .filter(|retry| !store.history(retry).unwrap().entries.is_empty())
            .count();
        assert_eq!(written, 1, "a losing group left its retry behind");
    });
}

#[test]
fn the_faulty_store_keeps_or_loses_a_group_whole_in_a_crash_or_a_tear() {
    let (a, b) = (id("a"), id("b"));
    let group = |store: &Faulty| {
        store.append(&a, Expect::Empty, b"a1", head(1)).unwrap();
        store.flush().unwrap();
        store
            .append_all(&[
                append(&a, Expect::At(1), b"a2", 2),
                append(&b, Expect::Empty, b"b1", 1),
            ])
            .unwrap();
        assert_eq!(store.pending(), 2);
    };
    let lengths = |store: &Faulty| {
        (
            store.history(&a).unwrap().entries.len(),
            store.history(&b).unwrap().entries.len(),
        )
    };

    let store = Faulty::seeded(1);
    group(&store);
    store.crash();
    assert_eq!(lengths(&store), (1, 0));

    for seed in 0..16 {
        let store = Faulty::seeded(seed);
        group(&store);
        assert!(store.crash_tearing());
        assert_eq!(
            lengths(&store),
            (1, 0),
            "seed {seed}: a tear split the group"
        );
    }

    let store = Faulty::seeded(2);
    group(&store);
    store.flush().unwrap();
    store.crash();
    assert_eq!(lengths(&store), (2, 1));
}

#[test]
fn a_flushed_group_survives_reopening_a_sled_store() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let (a, b) = (id("a"), id("b"));
    {
        let store = Sled::open(&path).unwrap();
        store.append(&a, Expect::Empty, b"a1", head(1)).unwrap();
        store
            .append_all(&[
                append(&a, Expect::At(1), b"a2", 2),
                append(&b, Expect::Empty, b"b1", 1),
            ])
            .unwrap();
        store.flush().unwrap();
    }
    let store = Sled::open(&path).unwrap();
    assert_eq!(store.history(&a).unwrap().head, Some(head(2)));
    assert_eq!(store.history(&b).unwrap().entries[0].bytes, b"b1");
    assert_eq!(store.acknowledged_at_open(), 3);
}

#[test]
fn group_and_single_appends_racing_for_one_head_let_exactly_one_through() {
    each_store(|store| {
        for round in 0..20 {
            let original = id(&format!("original-{round}"));
            let retry = id(&format!("retry-{round}"));
            store
                .append(&original, Expect::Empty, b"queued", head(1))
                .unwrap();
            let wins = std::thread::scope(|scope| {
                let handles: Vec<_> = (0..4)
                    .map(|n| {
                        let (original, retry) = (&original, &retry);
                        scope.spawn(move || {
                            if n % 2 == 0 {
                                store
                                    .append(original, Expect::At(1), b"delivered", head(2))
                                    .is_ok()
                            } else {
                                store
                                    .append_all(&[
                                        append(original, Expect::At(1), b"failed", 2),
                                        append(retry, Expect::Empty, b"queued", 1),
                                    ])
                                    .is_ok()
                            }
                        })
                    })
                    .collect();
                handles
                    .into_iter()
                    .map(|h| h.join().unwrap())
                    .filter(|won| *won)
                    .count()
            });
            assert_eq!(wins, 1, "round {round}");
            let stream = store.history(&original).unwrap();
            assert_eq!(stream.entries.len(), 2);
            let retried = !store.history(&retry).unwrap().entries.is_empty();
            assert_eq!(
                retried,
                stream.entries[1].bytes == b"failed",
                "round {round}"
            );
        }
    });
}
