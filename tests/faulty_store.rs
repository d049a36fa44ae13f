//! The fault-injecting store's own promises: it is deterministic (the same seed
//! gives the same run), its tears cut records at seeded positions, and its random
//! fault rates hold.
//!
//! The model test drives `Faulty` through injected one-shot faults only, so these
//! were written to kill mutants of its generator that nothing else noticed.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod support;

use std::collections::BTreeSet;

use delegation_log::store::{Append, AppendError, Expect, Faulty, Store};
use delegation_log::{DelegationId, StorageError};
use support::numbered as id;

/// Appends `record` as the first record of `id`, with a head summary.
fn first(store: &Faulty, id: &DelegationId, record: &[u8]) -> Result<(), AppendError> {
    store.append(&[Append {
        id,
        expect: Expect::Empty,
        record,
        head: b"head of seq 1",
    }])
}

/// Appends one 200-byte record, tears it in a crash, and returns the length it
/// was cut to.
fn torn_length(seed: u64) -> usize {
    let store = Faulty::seeded(seed);
    first(&store, &id(0), &[7u8; 200]).unwrap();
    assert!(store.crash_tearing());
    let stream = store.history(&id(0)).unwrap();
    assert_eq!(stream.entries.len(), 1);
    // Torn: the record reached the disk without its head.
    assert_eq!(stream.head, None);
    assert_eq!(store.head(&id(0)).unwrap(), None);
    stream.entries[0].bytes.len()
}

/// Which of `n` appends and flushes fail at these rates.
fn failures(seed: u64, write: u16, flush: u16, n: usize) -> Vec<(bool, bool)> {
    let store = Faulty::seeded(seed).with_rates(write, flush);
    (0..n)
        .map(|i| {
            let wrote = first(&store, &id(i), b"r").is_err();
            (wrote, store.flush().is_err())
        })
        .collect()
}

#[test]
fn tears_cut_records_at_many_seeded_positions() {
    let cuts: Vec<usize> = (0..100).map(torn_length).collect();
    assert!(cuts.iter().all(|&cut| cut < 200), "{cuts:?}");
    let distinct: BTreeSet<usize> = cuts.iter().copied().collect();
    assert!(
        distinct.len() > 40,
        "only {} distinct cuts: {cuts:?}",
        distinct.len()
    );
    assert_eq!(cuts, (0..100).map(torn_length).collect::<Vec<_>>());
}

#[test]
fn the_same_seed_gives_the_same_faults_and_another_seed_others() {
    let first = failures(42, 300, 300, 400);
    assert_eq!(first, failures(42, 300, 300, 400));
    assert_ne!(first, failures(43, 300, 300, 400));
}

#[test]
fn random_fault_rates_hold() {
    let runs = failures(9, 500, 0, 2_000);
    let writes = runs.iter().filter(|(w, _)| *w).count();
    assert!(
        (850..1_150).contains(&writes),
        "{writes} of 2000 writes failed at 50%"
    );
    assert!(runs.iter().all(|(_, f)| !f), "flushes failed at rate 0");

    let runs = failures(9, 0, 100, 2_000);
    let flushes = runs.iter().filter(|(_, f)| *f).count();
    assert!(
        (120..280).contains(&flushes),
        "{flushes} of 2000 flushes failed at 10%"
    );
    assert!(runs.iter().all(|(w, _)| !w), "writes failed at rate 0");

    assert!(failures(9, 1_000, 1_000, 50).iter().all(|&(w, f)| w && f));
    assert!(failures(9, 0, 0, 50).iter().all(|&(w, f)| !w && !f));
}

/// Seeds recorded in regression files and fuzz corpora must replay the same run
/// in later versions, so the generator's output is pinned, not just its shape.
#[test]
fn a_seed_replays_the_same_tears_across_versions() {
    let cuts: Vec<usize> = (0..8).map(torn_length).collect();
    assert_eq!(cuts, GOLDEN_CUTS);
}

const GOLDEN_CUTS: [usize; 8] = [135, 65, 110, 53, 178, 18, 192, 87];

/// The random fault rate is pinned the same way: at one per thousand, this seed
/// fails exactly these appends, run after run.
#[test]
fn a_seed_replays_the_same_random_faults_across_versions() {
    let failed: Vec<usize> = failures(9, 1, 0, 5_000)
        .iter()
        .enumerate()
        .filter_map(|(i, (write, _))| write.then_some(i))
        .collect();
    assert_eq!(failed, GOLDEN_FAILED_WRITES);
}

const GOLDEN_FAILED_WRITES: [usize; 8] = [382, 759, 1069, 2297, 2322, 2835, 3570, 3599];

/// One-shot faults, at the store's level: a failed write writes nothing (not even
/// part of a group) and leaves nothing pending; a failed flush makes nothing
/// durable, though its appends stay visible until the crash.
#[test]
fn injected_faults_write_nothing_and_make_nothing_durable() {
    use delegation_log::Error;
    use delegation_log::store::Fault;

    let store = Faulty::seeded(1);
    store.inject(Fault::FailWrite);
    let (a, b) = (id(1), id(2));
    let group = [
        Append {
            id: &a,
            expect: Expect::Empty,
            record: b"a1",
            head: b"a",
        },
        Append {
            id: &b,
            expect: Expect::Empty,
            record: b"b1",
            head: b"b",
        },
    ];
    match store.append(&group) {
        Err(AppendError::Store(Error::Storage(StorageError::Io(e)))) => {
            assert!(e.to_string().contains("injected write failure"), "{e}");
        }
        other => panic!("expected an injected I/O error, got {other:?}"),
    }
    assert_eq!(store.pending(), 0);
    assert!(store.history(&a).unwrap().entries.is_empty());
    assert_eq!(store.head(&b).unwrap(), None);

    // The fault was one-shot: the same group now lands, as one pending write.
    store.append(&group).unwrap();
    assert_eq!(store.pending(), 2);
    store.inject(Fault::FailFlush);
    assert!(matches!(
        store.flush(),
        Err(Error::Storage(StorageError::Io(_)))
    ));
    assert_eq!(
        store.pending(),
        0,
        "a failed flush keeps its appends pending"
    );
    assert_eq!(store.history(&a).unwrap().entries.len(), 1);
    store.crash();
    assert!(store.history(&a).unwrap().entries.is_empty());
    assert_eq!(store.head(&b).unwrap(), None);
}
