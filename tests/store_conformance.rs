//! Guards the `Store` contract that the ledger relies on, for every implementation
//! (sled, memory, fault-injecting): appends land at the expected seq and nowhere
//! else, a stale expectation is a `Conflict` that writes nothing, ids that are
//! prefixes of each other stay apart, scans come in key order one delegation at a
//! time with their heads, and the head never moves backwards.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::sync::Arc;

use delegation_log::store::{Expect, Faulty, Head, Memory, Sled, Store};
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
