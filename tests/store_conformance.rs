//! Guards the `Store` contract (heads of format 2, "ledger v2") that the ledger relies on,
//! for every implementation (sled, memory, fault-injecting): an `Expect` names the
//! head it expects and the seq its append will have, and reads as words; appends
//! land at the expected seq and nowhere else, a stale expectation is an
//! `AppendError::Conflict` that names the head the store has and writes nothing,
//! ids that are prefixes of each other stay apart in `history` and in the scan,
//! scans come in key order one delegation at a time with their heads. A group append writes all of its records and heads or none, against
//! each one's own expectation (in order, so a group may append twice to one
//! delegation), and a crash or a torn write never splits it.
//!
//! Format 1's "the head never moves backwards" (heads raised after their records
//! with max-logic) no longer exists: a record and its head are one atomic write.
//! Its stand-in here is "the head is always exactly the last append's, written
//! with it": `head()` and `history().head` (and the scan's) are
//! `Head { seq: expect.next(), summary }` of the last append, and a reader never
//! sees a record without its head or a head without its record (`in_step`), even
//! while writers append. A record slot already taken though the head says it is
//! free (damage, made here by a torn crash or a raw write) is an
//! `AppendError::Damaged` naming the delegation and the seq, and writes nothing.
//!
//! Each contract test runs against sled, memory, fault-injecting and, with the
//! `postgres` feature and a server (`DATABASE_URL`, from `bash .ci/postgres`),
//! PostgreSQL, on a fresh schema per test. Without a server the PostgreSQL case
//! says how to start one and passes over; under `CI=true` it fails. What only
//! the PostgreSQL store does is guarded by `postgres_store.rs`.
//!
//! What only the sled store does (its keys, head encoding, format marker, trees
//! and reads of damage) is guarded by `store_format.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

#[cfg(feature = "postgres")]
mod pg_support;
mod store_support;
mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use delegation_log::store::{Append, AppendError, Expect, Faulty, Head, Memory, Sled, Store, key};
use delegation_log::{DelegationId, Error, ReadError};
use support::id;

/// The summary the tests write with the head of seq `seq`: opaque bytes whose
/// length varies with the seq, so that a store that pads or cuts them shows.
fn summary(seq: u64) -> Vec<u8> {
    format!("summary of seq {seq}{}", "+".repeat(seq as usize % 5)).into_bytes()
}

fn head(seq: u64) -> Head {
    Head {
        seq,
        summary: summary(seq),
    }
}

/// One append of a group, whose head summary is `summary(expect.next())`.
fn append<'a>(
    id: &'a DelegationId,
    expect: Expect,
    record: &'a [u8],
    head: &'a [u8],
) -> Append<'a> {
    Append {
        id,
        expect,
        record,
        head,
    }
}

/// A single append (a one-element group) with the summary of its seq.
fn one(
    store: &dyn Store,
    id: &DelegationId,
    expect: Expect,
    record: &[u8],
) -> Result<(), AppendError> {
    let head = summary(expect.next());
    store.append(&[append(id, expect, record, &head)])
}

/// The delegation, the expectation and the head found of an append refused
/// as a conflict; any other answer fails the test.
fn conflict(answer: Result<(), AppendError>) -> (DelegationId, Expect, Option<u64>) {
    match answer {
        Err(AppendError::Conflict {
            id,
            expected,
            actual,
        }) => (id, expected, actual),
        other => panic!("expected a conflict, got {other:?}"),
    }
}

/// Runs `attempt(0)` to `attempt(racers - 1)` on as many threads at once, and
/// counts those that succeeded.
fn race(racers: usize, attempt: impl Fn(usize) -> bool + Sync) -> usize {
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..racers)
            .map(|n| {
                let attempt = &attempt;
                scope.spawn(move || attempt(n))
            })
            .collect();
        handles
            .into_iter()
            .map(|handle| handle.join().unwrap())
            .filter(|won| *won)
            .count()
    })
}

/// Runs `check` on an empty store of every kind: sled, memory, faulty and (with
/// the feature and a server) PostgreSQL on a schema of its own.
fn each_store(check: impl Fn(&dyn Store)) {
    let dir = tempfile::tempdir().unwrap();
    let sled = Sled::open(dir.path().join("db")).unwrap();
    #[allow(unused_mut)]
    let mut stores: Vec<(&str, Arc<dyn Store>)> = vec![
        ("sled", Arc::new(sled)),
        ("memory", Arc::new(Memory::new())),
        ("faulty", Arc::new(Faulty::seeded(1))),
    ];
    #[cfg(feature = "postgres")]
    let schema = pg_support::fresh("conformance");
    #[cfg(feature = "postgres")]
    if let Some(schema) = &schema {
        stores.push(("postgres", schema.store.clone()));
    }
    for (name, store) in stores {
        eprintln!("store: {name}");
        assert_eq!(store.format(), 2, "{name}");
        check(store.as_ref());
    }
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
fn an_expectation_names_the_head_seq_it_expects() {
    assert_eq!(Expect::Empty.seq(), None);
    assert_eq!(Expect::At(1).seq(), Some(1));
    assert_eq!(Expect::At(9).seq(), Some(9));
}

#[test]
fn an_expectation_reads_as_words() {
    assert_eq!(Expect::Empty.to_string(), "no records");
    assert_eq!(Expect::At(3).to_string(), "head at seq 3");
}

#[test]
fn appends_land_at_the_expected_seq_and_a_stale_expectation_conflicts() {
    each_store(|store| {
        let a = id("a");
        one(store, &a, Expect::Empty, b"one").unwrap();
        one(store, &a, Expect::At(1), b"two").unwrap();
        for stale in [Expect::Empty, Expect::At(1), Expect::At(5)] {
            assert_eq!(
                conflict(one(store, &a, stale, b"stale")),
                (a.clone(), stale, Some(2))
            );
        }
        let stream = store.history(&a).unwrap();
        let seqs: Vec<_> = stream
            .entries
            .iter()
            .map(|e| (e.seq, e.bytes.clone()))
            .collect();
        assert_eq!(seqs, vec![(1, b"one".to_vec()), (2, b"two".to_vec())]);
        assert_eq!(stream.head, Some(head(2)));
        // A delegation with no head: the conflict says so.
        match one(store, &id("b"), Expect::At(3), b"stale") {
            Err(AppendError::Conflict { actual, .. }) => assert_eq!(actual, None),
            other => panic!("expected a conflict, got {other:?}"),
        }
        assert_eq!(store.head(&id("b")).unwrap(), None);
    });
}

#[test]
fn ids_that_prefix_each_other_stay_apart() {
    each_store(|store| {
        for (name, count) in [("ab", 2u64), ("abc", 3), ("b", 1)] {
            for seq in 1..=count {
                one(store, &id(name), Expect::after(seq - 1), name.as_bytes()).unwrap();
            }
        }
        let ab = store.history(&id("ab")).unwrap();
        assert_eq!(ab.entries.len(), 2);
        assert!(ab.entries.iter().all(|e| e.bytes == b"ab"), "{ab:?}");
        assert_eq!(ab.head, Some(head(2)));
        assert_eq!(store.history(&id("abc")).unwrap().entries.len(), 3);
        assert_eq!(store.head(&id("abc")).unwrap(), Some(head(3)));
        assert!(store.history(&id("a")).unwrap().entries.is_empty());
        assert_eq!(store.head(&id("a")).unwrap(), None);
        let scanned: Vec<(String, usize)> = store
            .scan()
            .map(|stream| {
                let stream = stream.unwrap();
                (stream.id.to_string(), stream.entries.len())
            })
            .collect();
        assert_eq!(
            scanned,
            vec![("b".into(), 1), ("ab".into(), 2), ("abc".into(), 3)]
        );
    });
}

#[test]
fn scans_yield_each_delegation_once_in_key_order_with_its_head() {
    each_store(|store| {
        for name in ["zeta", "alpha", "mid", "a"] {
            one(store, &id(name), Expect::Empty, name.as_bytes()).unwrap();
        }
        one(store, &id("mid"), Expect::At(1), b"mid2").unwrap();
        let streams: Vec<_> = store.scan().map(Result::unwrap).collect();
        let ids: Vec<&str> = streams.iter().map(|s| s.id.as_str()).collect();
        // Length-prefixed keys order by length first, then bytes.
        assert_eq!(ids, vec!["a", "mid", "zeta", "alpha"]);
        let mid = &streams[1];
        assert_eq!(mid.entries.len(), 2);
        assert_eq!(mid.head, Some(head(2)));
        assert!(streams.iter().all(|s| s.in_step()), "{streams:?}");
    });
}

/// The stand-in for format 1's "the head never moves backwards": the head is
/// always exactly the last append's, seq and summary, whatever the summaries
/// were; and `head()`, `history().head` and the scan's head agree.
#[test]
fn the_head_is_always_exactly_the_last_appends_written_with_it() {
    each_store(|store| {
        let a = id("a");
        assert_eq!(store.head(&a).unwrap(), None);
        assert_eq!(store.history(&a).unwrap().head, None);
        // Summaries that shrink, grow, repeat and are empty: the store keeps each
        // as given, never the larger or the earlier one.
        let summaries: [&[u8]; 5] = [b"long summary at one", b"", b"x", b"x", &[0xff; 300]];
        for (n, written) in summaries.iter().enumerate() {
            let seq = n as u64 + 1;
            store
                .append(&[append(&a, Expect::after(seq - 1), b"record", written)])
                .unwrap();
            let expected = Head {
                seq,
                summary: written.to_vec(),
            };
            assert_eq!(store.head(&a).unwrap(), Some(expected.clone()), "seq {seq}");
            let stream = store.history(&a).unwrap();
            assert_eq!(stream.head, Some(expected), "seq {seq}");
            assert!(stream.in_step(), "seq {seq}: {stream:?}");
            assert_eq!(stream.entries.len(), n + 1);
        }
    });
}

#[test]
fn head_is_the_head_history_and_scan_read() {
    each_store(|store| {
        let names = ["a", "b", "ab", "long-delegation-id"];
        for (n, name) in names.iter().enumerate() {
            for seq in 1..=n as u64 + 1 {
                one(store, &id(name), Expect::after(seq - 1), b"r").unwrap();
            }
        }
        // A group moves two heads at once.
        let (b2, a2) = (summary(3), summary(2));
        store
            .append(&[
                append(&id("b"), Expect::At(2), b"b3", &b2),
                append(&id("a"), Expect::At(1), b"a2", &a2),
            ])
            .unwrap();
        let scanned: Vec<_> = store.scan().map(Result::unwrap).collect();
        assert_eq!(scanned.len(), names.len());
        for stream in &scanned {
            let head = store.head(&stream.id).unwrap();
            assert!(head.is_some(), "{}", stream.id);
            assert_eq!(head, stream.head, "scan of {}", stream.id);
            assert_eq!(
                head,
                store.history(&stream.id).unwrap().head,
                "{}",
                stream.id
            );
            assert_eq!(
                head.map(|h| h.seq),
                stream.entries.last().map(|e| e.seq),
                "{}",
                stream.id
            );
        }
        assert_eq!(store.head(&id("a")).unwrap(), Some(head(2)));
        assert_eq!(store.head(&id("b")).unwrap(), Some(head(3)));
        assert_eq!(store.head(&id("nobody")).unwrap(), None);
        assert_eq!(store.history(&id("nobody")).unwrap().head, None);
    });
}

#[test]
fn racing_appends_for_one_seq_let_exactly_one_through() {
    each_store(|store| {
        let a = id("race");
        one(store, &a, Expect::Empty, b"queued").unwrap();
        let wins = race(8, |n| {
            let n = [u8::try_from(n).unwrap()];
            store.append(&[append(&a, Expect::At(1), &n, &n)]).is_ok()
        });
        assert_eq!(wins, 1);
        let stream = store.history(&a).unwrap();
        assert_eq!(stream.entries.len(), 2);
        // The head is the winner's, written with its record.
        let winner = stream.entries[1].bytes.clone();
        assert_eq!(
            stream.head,
            Some(Head {
                seq: 2,
                summary: winner
            })
        );
    });
}

/// Of writers racing to start one delegation, alone or as the later append of
/// a group, exactly one commits; every other gets a conflict naming the
/// winner's head, and nothing of its group is written.
#[test]
fn racing_first_appends_let_exactly_one_through_and_name_the_winner() {
    each_store(|store| {
        let s1 = summary(1);
        for round in 0..10 {
            let a = id(&format!("first-{round}"));
            let own: Vec<DelegationId> = (0..8).map(|n| id(&format!("own-{round}-{n}"))).collect();
            let answers = std::sync::Mutex::new(Vec::new());
            let wins = race(own.len(), |n| {
                let record = [u8::try_from(n).unwrap()];
                let answer = if n % 2 == 0 {
                    store.append(&[append(&a, Expect::Empty, &record, &s1)])
                } else {
                    store.append(&[
                        append(&own[n], Expect::Empty, b"own", &s1),
                        append(&a, Expect::Empty, &record, &s1),
                    ])
                };
                let won = answer.is_ok();
                answers.lock().unwrap().push((n, answer));
                won
            });
            assert_eq!(wins, 1, "round {round}");
            let stream = store.history(&a).unwrap();
            assert_eq!(stream.entries.len(), 1, "round {round}");
            let winner = usize::from(stream.entries[0].bytes[0]);
            for (n, answer) in answers.into_inner().unwrap() {
                if n == winner {
                    assert!(answer.is_ok(), "round {round}: the winner {n}: {answer:?}");
                } else {
                    assert_eq!(
                        conflict(answer),
                        (a.clone(), Expect::Empty, Some(1)),
                        "round {round}: racer {n}"
                    );
                }
                let written = !store.history(&own[n]).unwrap().entries.is_empty();
                assert_eq!(
                    written,
                    n == winner && n % 2 == 1,
                    "round {round}: racer {n}'s own"
                );
            }
        }
    });
}

/// No reader sees half of an append: while writers append to a few delegations,
/// every `history` and every stream of a `scan` has its head at its last record.
#[test]
fn readers_never_see_half_an_append_while_writers_append() {
    each_store(|store| {
        let ids: Vec<DelegationId> = (0..3).map(|n| id(&format!("busy-{n}"))).collect();
        let finished = AtomicUsize::new(0);
        std::thread::scope(|scope| {
            for a in &ids {
                let finished = &finished;
                scope.spawn(move || {
                    for seq in 1..=150u64 {
                        one(store, a, Expect::after(seq - 1), b"record").unwrap();
                    }
                    finished.fetch_add(1, Ordering::SeqCst);
                });
            }
            for _ in 0..2 {
                let (ids, finished) = (&ids, &finished);
                scope.spawn(move || {
                    while finished.load(Ordering::SeqCst) < ids.len() {
                        for a in ids {
                            let stream = store.history(a).unwrap();
                            assert!(stream.in_step(), "history half seen: {stream:?}");
                            let head = store.head(a).unwrap().map(|h| h.seq);
                            assert!(
                                head >= stream.head.as_ref().map(|h| h.seq),
                                "head() went back behind an earlier history"
                            );
                        }
                        for stream in store.scan() {
                            let stream = stream.unwrap();
                            assert!(stream.in_step(), "scan half seen: {stream:?}");
                        }
                    }
                });
            }
        });
        for a in &ids {
            assert_eq!(store.head(a).unwrap(), Some(head(150)));
        }
    });
}

#[test]
fn the_faulty_store_loses_exactly_the_unflushed_tail_on_a_crash() {
    let store = Faulty::seeded(3);
    one(&store, &id("kept"), Expect::Empty, b"k").unwrap();
    store.flush().unwrap();
    one(&store, &id("lost"), Expect::Empty, b"l").unwrap();
    assert_eq!(store.pending(), 1);
    store.crash();
    assert_eq!(store.history(&id("kept")).unwrap().entries.len(), 1);
    assert_eq!(store.head(&id("kept")).unwrap(), Some(head(1)));
    assert!(store.history(&id("lost")).unwrap().entries.is_empty());
    assert_eq!(store.head(&id("lost")).unwrap(), None);
}

#[test]
fn the_faulty_store_tears_the_last_pending_write_the_same_way_for_the_same_seed() {
    let torn = |seed| {
        let store = Faulty::seeded(seed);
        one(&store, &id("a"), Expect::Empty, b"first record").unwrap();
        one(&store, &id("b"), Expect::Empty, b"second record, torn").unwrap();
        assert!(store.crash_tearing());
        assert_eq!(store.head(&id("b")).unwrap(), None);
        (
            store.history(&id("a")).unwrap(),
            store.history(&id("b")).unwrap(),
        )
    };
    let (a, b) = torn(11);
    assert_eq!(a.entries[0].bytes, b"first record");
    assert_eq!(a.head, Some(head(1)));
    assert!(b.entries[0].bytes.len() < b"second record, torn".len());
    assert_eq!(b.head, None);
    assert!(!b.in_step(), "a torn record is a record without its head");
    assert_eq!(torn(11), (a, b));
}

/// `result` is the damage of a record already under `(at, seq)`, a slot the head
/// says is free, named as such.
fn expect_occupied(result: Result<(), AppendError>, at: &DelegationId, seq: u64) {
    match result {
        Err(AppendError::Damaged {
            id,
            seq: found,
            reason,
        }) => {
            assert_eq!((&id, found), (at, seq), "{reason}");
            assert!(reason.contains("beyond the head"), "{id} {seq}: {reason}");
        }
        other => panic!("expected Damaged for an occupied slot, got {other:?}"),
    }
}

/// A record beyond the head (here: torn in a crash, so written without its head)
/// takes the slot the head says is free; appending there with the expectation the
/// head gives is damage, not a conflict, and writes nothing, even of a group.
#[test]
fn an_append_into_an_occupied_slot_is_corruption_and_writes_nothing() {
    for seed in 0..8 {
        let store = Faulty::seeded(seed);
        let (a, b) = (id("a"), id("b"));
        one(&store, &a, Expect::Empty, b"a1").unwrap();
        store.flush().unwrap();
        one(&store, &a, Expect::At(1), b"a2, torn in the crash").unwrap();
        assert!(store.crash_tearing());
        let before = store.history(&a).unwrap();
        assert_eq!(before.head, Some(head(1)), "seed {seed}");
        assert_eq!(before.entries.len(), 2, "seed {seed}: no torn record");

        // The stale expectation the head gives: seq 2 is taken.
        expect_occupied(one(&store, &a, Expect::At(1), b"a2 again"), &a, 2);
        // The same inside a group, after an append that would have succeeded.
        let (b1, a2) = (summary(1), summary(2));
        expect_occupied(
            store.append(&[
                append(&b, Expect::Empty, b"b1", &b1),
                append(&a, Expect::At(1), b"a2 again", &a2),
            ]),
            &a,
            2,
        );
        assert_eq!(store.history(&a).unwrap(), before, "seed {seed}");
        assert_eq!(store.head(&a).unwrap(), Some(head(1)));
        assert!(store.history(&b).unwrap().entries.is_empty());
        assert_eq!(store.head(&b).unwrap(), None);
        assert_eq!(
            store.pending(),
            0,
            "seed {seed}: a refused append is pending"
        );
        // Past the damage, the expectation of the record is a conflict, not a
        // write: the head is what decides.
        assert!(matches!(
            one(&store, &a, Expect::At(2), b"a3"),
            Err(AppendError::Conflict {
                actual: Some(1),
                ..
            })
        ));
    }

    // A delegation whose first record was torn has no head: `Empty` finds seq 1
    // taken.
    let store = Faulty::seeded(4);
    one(&store, &id("c"), Expect::Empty, b"c1, torn").unwrap();
    assert!(store.crash_tearing());
    assert_eq!(store.head(&id("c")).unwrap(), None);
    let before = store.history(&id("c")).unwrap();
    expect_occupied(
        one(&store, &id("c"), Expect::Empty, b"c1 again"),
        &id("c"),
        1,
    );
    assert_eq!(store.history(&id("c")).unwrap(), before);
}

/// On sled, the same damage made by a raw write of a record without its head:
/// in format 3 a record and its head are one value, so the stray record is a
/// frame beyond the head, and the value's framing disagrees with its head. The
/// reads say so, naming the delegation; an append, alone or in a group, is
/// damage naming the delegation and its head's seq, and writes nothing.
#[test]
fn an_append_into_an_occupied_slot_is_corruption_on_sled_too() {
    let dir = tempfile::tempdir().unwrap();
    let a = id("a");
    {
        let store = Sled::open(dir.path()).unwrap();
        one(&store, &a, Expect::Empty, b"a1").unwrap();
    }
    let value = |path: &std::path::Path| {
        let db = support::raw_sled(path);
        let tree = db.open_tree("delegations").unwrap();
        tree.get(key::prefix(&a)).unwrap().map(|v| v.to_vec())
    };
    {
        let db = support::raw_sled(dir.path());
        let tree = db.open_tree("delegations").unwrap();
        let mut stray = tree.get(key::prefix(&a)).unwrap().unwrap().to_vec();
        stray.extend_from_slice(&5u32.to_be_bytes());
        stray.extend_from_slice(b"stray");
        tree.insert(key::prefix(&a), stray).unwrap();
        db.flush().unwrap();
    }
    let before = value(dir.path());
    let store = Sled::open(dir.path()).unwrap();
    match store.history(&a) {
        Err(ReadError::Corrupt { key, reason }) => {
            assert_eq!(key, "delegation `a`");
            assert!(reason.contains("holds 2 records"), "{reason}");
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
    assert_eq!(store.head(&a).unwrap(), Some(head(1)));
    let expect_damaged = |result: Result<(), AppendError>| match result {
        Err(AppendError::Damaged { id, seq, reason }) => {
            assert_eq!((&id, seq), (&a, 1), "{reason}");
            assert!(reason.contains("holds 2 records"), "{reason}");
        }
        other => panic!("expected Damaged, got {other:?}"),
    };
    expect_damaged(one(&store, &a, Expect::At(1), b"a2"));
    let (b1, a2) = (summary(1), summary(2));
    expect_damaged(store.append(&[
        append(&id("b"), Expect::Empty, b"b1", &b1),
        append(&a, Expect::At(1), b"a2", &a2),
    ]));
    assert_eq!(store.head(&a).unwrap(), Some(head(1)));
    assert!(store.history(&id("b")).unwrap().entries.is_empty());
    assert_eq!(store.head(&id("b")).unwrap(), None);
    drop(store);
    assert_eq!(
        value(dir.path()),
        before,
        "a refused append changed the value"
    );
}

#[test]
fn a_group_append_writes_every_record_or_none() {
    each_store(|store| {
        let (a, b) = (id("a"), id("b"));
        one(store, &a, Expect::Empty, b"a1").unwrap();
        let (s1, s2) = (summary(1), summary(2));
        // The second expectation is stale: nothing of the group is written.
        let stale = [
            append(&a, Expect::At(1), b"a2", &s2),
            append(&b, Expect::At(1), b"b2", &s2),
        ];
        assert_eq!(
            conflict(store.append(&stale)),
            (b.clone(), Expect::At(1), None)
        );
        assert_eq!(store.history(&a).unwrap().entries.len(), 1);
        assert!(store.history(&b).unwrap().entries.is_empty());
        assert_eq!(store.history(&a).unwrap().head, Some(head(1)));
        assert_eq!(store.head(&a).unwrap(), Some(head(1)));
        assert_eq!(store.head(&b).unwrap(), None);

        store
            .append(&[
                append(&a, Expect::At(1), b"a2", &s2),
                append(&b, Expect::Empty, b"b1", &s1),
            ])
            .unwrap();
        let (a_stream, b_stream) = (store.history(&a).unwrap(), store.history(&b).unwrap());
        assert_eq!(a_stream.entries[1].bytes, b"a2");
        assert_eq!(a_stream.head, Some(head(2)));
        assert_eq!(b_stream.entries[0].bytes, b"b1");
        assert_eq!(b_stream.head, Some(head(1)));
        store.append(&[]).unwrap();
        assert_eq!(store.history(&a).unwrap(), a_stream);
    });
}

#[test]
fn a_group_may_append_to_one_delegation_twice_in_order() {
    each_store(|store| {
        let a = id("a");
        let (s1, s2, s3) = (summary(1), summary(2), summary(3));
        store
            .append(&[
                append(&a, Expect::Empty, b"one", &s1),
                append(&a, Expect::At(1), b"two", &s2),
            ])
            .unwrap();
        let stream = store.history(&a).unwrap();
        let records: Vec<_> = stream
            .entries
            .iter()
            .map(|e| (e.seq, &e.bytes[..]))
            .collect();
        assert_eq!(records, vec![(1, &b"one"[..]), (2, &b"two"[..])]);
        // The head is the second append's, not the first's.
        assert_eq!(stream.head, Some(head(2)));
        assert_eq!(store.head(&a).unwrap(), Some(head(2)));
        // And again, from a head, with another delegation between the two.
        let c = id("c");
        store
            .append(&[
                append(&a, Expect::At(2), b"three", &s3),
                append(&c, Expect::Empty, b"c1", &s1),
                append(&a, Expect::At(3), b"four", &summary(4)),
            ])
            .unwrap();
        assert_eq!(store.history(&a).unwrap().entries.len(), 4);
        assert_eq!(store.head(&a).unwrap(), Some(head(4)));
        assert_eq!(store.head(&c).unwrap(), Some(head(1)));
        // Out of order, the second expectation fails against the first: a
        // conflict whose actual head is the first append's, and nothing is written.
        assert_eq!(
            conflict(store.append(&[
                append(&id("b"), Expect::Empty, b"one", &s1),
                append(&id("b"), Expect::Empty, b"again", &s1),
            ])),
            (id("b"), Expect::Empty, Some(1))
        );
        // Reversed, the first append's expectation is already wrong.
        assert!(matches!(
            store.append(&[
                append(&id("b"), Expect::At(1), b"two", &s2),
                append(&id("b"), Expect::Empty, b"one", &s1),
            ]),
            Err(AppendError::Conflict { .. })
        ));
        assert!(store.history(&id("b")).unwrap().entries.is_empty());
        assert_eq!(store.head(&id("b")).unwrap(), None);
        // A later append of a group starting a delegation another write
        // already started: a conflict naming that write's head, and nothing
        // of the group written.
        assert_eq!(
            conflict(store.append(&[
                append(&id("d"), Expect::Empty, b"d1", &s1),
                append(&a, Expect::Empty, b"one again", &s1),
            ])),
            (a.clone(), Expect::Empty, Some(4))
        );
        assert!(store.history(&id("d")).unwrap().entries.is_empty());
        assert_eq!(store.head(&a).unwrap(), Some(head(4)));
    });
}

#[test]
fn racing_group_appends_on_one_head_let_exactly_one_through() {
    each_store(|store| {
        let original = id("original");
        one(store, &original, Expect::Empty, b"queued").unwrap();
        let retries: Vec<DelegationId> = (0..8).map(|n| id(&format!("retry-{n}"))).collect();
        let (s1, s2) = (summary(1), summary(2));
        let wins = race(retries.len(), |n| {
            store
                .append(&[
                    append(&original, Expect::At(1), b"failed", &s2),
                    append(&retries[n], Expect::Empty, b"queued", &s1),
                ])
                .is_ok()
        });
        assert_eq!(wins, 1);
        assert_eq!(store.history(&original).unwrap().entries.len(), 2);
        let written = retries
            .iter()
            .filter(|retry| !store.history(retry).unwrap().entries.is_empty())
            .count();
        assert_eq!(written, 1, "a losing group left its retry behind");
        let headed = retries
            .iter()
            .filter(|retry| store.head(retry).unwrap().is_some())
            .count();
        assert_eq!(headed, 1, "a losing group left a head behind");
    });
}

#[test]
fn the_faulty_store_keeps_or_loses_a_group_whole_in_a_crash_or_a_tear() {
    let (a, b) = (id("a"), id("b"));
    let (s1, s2) = (summary(1), summary(2));
    let group = |store: &Faulty| {
        one(store, &a, Expect::Empty, b"a1").unwrap();
        store.flush().unwrap();
        store
            .append(&[
                append(&a, Expect::At(1), b"a2", &s2),
                append(&b, Expect::Empty, b"b1", &s1),
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
    let heads = |store: &Faulty| (store.head(&a).unwrap(), store.head(&b).unwrap());

    let store = Faulty::seeded(1);
    group(&store);
    store.crash();
    assert_eq!(lengths(&store), (1, 0));
    assert_eq!(heads(&store), (Some(head(1)), None));

    for seed in 0..16 {
        let store = Faulty::seeded(seed);
        group(&store);
        assert!(store.crash_tearing());
        assert_eq!(
            lengths(&store),
            (1, 0),
            "seed {seed}: a tear split the group"
        );
        assert_eq!(heads(&store), (Some(head(1)), None), "seed {seed}");
    }

    let store = Faulty::seeded(2);
    group(&store);
    store.flush().unwrap();
    store.crash();
    assert_eq!(lengths(&store), (2, 1));
    assert_eq!(heads(&store), (Some(head(2)), Some(head(1))));
}

#[test]
fn a_flushed_group_survives_reopening_a_sled_store() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let (a, b) = (id("a"), id("b"));
    let (s1, s2) = (summary(1), summary(2));
    {
        let store = Sled::open(&path).unwrap();
        one(&store, &a, Expect::Empty, b"a1").unwrap();
        store
            .append(&[
                append(&a, Expect::At(1), b"a2", &s2),
                append(&b, Expect::Empty, b"b1", &s1),
            ])
            .unwrap();
        store.flush().unwrap();
    }
    let store = Sled::open(&path).unwrap();
    assert_eq!(store.format(), 2);
    assert_eq!(store.history(&a).unwrap().head, Some(head(2)));
    assert_eq!(store.head(&a).unwrap(), Some(head(2)));
    assert_eq!(store.head(&b).unwrap(), Some(head(1)));
    assert_eq!(store.history(&b).unwrap().entries[0].bytes, b"b1");
    assert_eq!(store.acknowledged_at_open(), 3);
}

#[test]
fn group_and_single_appends_racing_for_one_head_let_exactly_one_through() {
    each_store(|store| {
        let (s1, s2) = (summary(1), summary(2));
        for round in 0..20 {
            let original = id(&format!("original-{round}"));
            let retry = id(&format!("retry-{round}"));
            one(store, &original, Expect::Empty, b"queued").unwrap();
            let wins = race(4, |n| {
                if n % 2 == 0 {
                    one(store, &original, Expect::At(1), b"delivered").is_ok()
                } else {
                    store
                        .append(&[
                            append(&original, Expect::At(1), b"failed", &s2),
                            append(&retry, Expect::Empty, b"queued", &s1),
                        ])
                        .is_ok()
                }
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
            assert_eq!(
                store.head(&retry).unwrap().is_some(),
                retried,
                "round {round}"
            );
        }
    });
}

/// `AppendError` becomes the crate's `Error` as the ledger reports it: a lost race
/// is `Conflict` with one attempt, a store failure passes through.
#[test]
fn an_append_error_converts_into_the_crates_error() {
    let conflict = AppendError::Conflict {
        id: id("a"),
        expected: Expect::At(1),
        actual: Some(2),
    };
    assert!(
        conflict.to_string().contains("expected head at seq 1"),
        "{conflict}"
    );
    match Error::from(conflict) {
        Error::Conflict {
            id: which,
            attempts,
        } => assert_eq!((which, attempts), (id("a"), 1)),
        other => panic!("expected Conflict, got {other:?}"),
    }
    let corrupt = AppendError::Store(Error::Corrupt {
        key: "k".into(),
        reason: "r".into(),
    });
    assert!(matches!(Error::from(corrupt), Error::Corrupt { .. }));
}
