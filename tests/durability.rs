//! Guards promise 4 on the simulated store: in durable mode an acknowledged event
//! survives a crash; a failed flush poisons the ledger until it is reopened (so a
//! lost write is never acknowledged); buffered mode may lose the unflushed tail but
//! never leaves a half state, and an explicit flush makes it whole; a poisoned
//! ledger refuses reads too, so it never shows an outcome a crash can undo;
//! concurrent durable writers share flushes, and writers arriving during another
//! writer's turn queue for the next one rather than append alongside it; and on
//! sled a durable acknowledgement waits for a sync of the data file to the device.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod store_support;
mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use delegation_log::ledger::Options;
use delegation_log::store::{Append, Fault, Faulty, Memory, Store};
use delegation_log::{
    Durability, Error, Event, Ledger, ManualClock, ReadError, StatusKind, StorageError,
};
use store_support::Hooked;
use support::numbered as id;

fn options(durability: Durability) -> Options {
    Options::new()
        .durability(durability)
        .clock(ManualClock::default())
}

#[test]
fn durable_acknowledgements_survive_a_crash() {
    let store = Arc::new(Faulty::seeded(5));
    let ledger = Ledger::with_store(store.clone(), options(Durability::Durable));
    for n in 0..10 {
        ledger.record(&id(n), Event::queued("s", "t")).unwrap();
        if n % 2 == 0 {
            ledger
                .record(&id(n), Event::delivered(None).unwrap())
                .unwrap();
        }
    }
    assert_eq!(
        store.pending(),
        0,
        "durable mode acknowledges only flushed appends"
    );
    store.crash();
    let reopened = Ledger::with_store(store, options(Durability::Durable));
    for n in 0..10 {
        let expected = if n % 2 == 0 {
            StatusKind::Delivered
        } else {
            StatusKind::Queued
        };
        assert_eq!(reopened.status(&id(n)).unwrap().status, expected);
    }
}

#[test]
fn a_failed_flush_poisons_the_ledger_until_it_is_reopened() {
    let store = Arc::new(Faulty::seeded(5));
    let ledger = Ledger::with_store(store.clone(), options(Durability::Durable));
    ledger.record(&id(1), Event::queued("s", "t")).unwrap();
    store.inject(Fault::FailFlush);
    let failed = ledger.record(&id(2), Event::queued("s", "t"));
    assert!(
        matches!(failed, Err(Error::Storage(StorageError::Io(_)))),
        "{failed:?}"
    );
    let refused = ledger.record(&id(3), Event::queued("s", "t"));
    match refused {
        Err(Error::Poisoned { cause }) => {
            // The cause is the flush's own error, typed, not a description of it.
            let Error::Storage(StorageError::Io(io)) = &*cause else {
                panic!("the cause should be the flush's I/O error: {cause:?}");
            };
            assert!(io.to_string().contains("injected flush failure"), "{io}")
        }
        other => panic!("expected Poisoned, got {other:?}"),
    }
    assert!(matches!(ledger.flush(), Err(Error::Poisoned { .. })));
    // Reads are refused too: the unacknowledged write is visible live but not
    // durable, and a read must not serve it.
    assert!(matches!(
        ledger.status(&id(1)),
        Err(ReadError::Poisoned { .. })
    ));
    store.crash();
    let reopened = Ledger::with_store(store, options(Durability::Durable));
    assert_eq!(
        reopened.status(&id(2)).unwrap().status,
        StatusKind::NotFound
    );
    reopened.record(&id(3), Event::queued("s", "t")).unwrap();
}

#[test]
fn a_failed_write_poisons_the_ledger_and_writes_nothing() {
    let store = Arc::new(Faulty::seeded(5));
    let ledger = Ledger::with_store(store.clone(), options(Durability::Buffered));
    store.inject(Fault::FailWrite);
    assert!(matches!(
        ledger.record(&id(1), Event::queued("s", "t")),
        Err(Error::Storage(StorageError::Io(_)))
    ));
    assert!(matches!(
        ledger.record(&id(1), Event::queued("s", "t")),
        Err(Error::Poisoned { .. })
    ));
    assert!(matches!(
        ledger.status(&id(1)),
        Err(ReadError::Poisoned { .. })
    ));
    let reopened = Ledger::with_store(store, options(Durability::Buffered));
    assert_eq!(
        reopened.status(&id(1)).unwrap().status,
        StatusKind::NotFound
    );
}

/// A write that never reached the store (a server that is down: the store
/// says so with `AppendError::Unsent`) is an error and nothing more: the
/// ledger is not poisoned, and once the store answers again the same write
/// goes through.
#[test]
fn a_write_that_never_reached_the_store_fails_without_poisoning_the_ledger() {
    use delegation_log::store::AppendError;
    let down = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let flag = down.clone();
    let store = Hooked::over(Arc::new(Memory::new())).on_append(move |inner, appends| {
        if flag.load(Ordering::SeqCst) {
            return Err(AppendError::Unsent(Error::Storage(StorageError::from(
                std::io::Error::from(std::io::ErrorKind::ConnectionRefused),
            ))));
        }
        inner.append(appends)
    });
    let ledger = Ledger::with_store(Arc::new(store), options(Durability::Durable));
    let failed = ledger.record(&id(1), Event::queued("s", "t"));
    assert!(
        matches!(failed, Err(Error::Storage(StorageError::Io(_)))),
        "{failed:?}"
    );
    assert_eq!(ledger.status(&id(1)).unwrap().status, StatusKind::NotFound);
    down.store(false, Ordering::SeqCst);
    ledger.record(&id(1), Event::queued("s", "t")).unwrap();
    assert_eq!(ledger.status(&id(1)).unwrap().status, StatusKind::Queued);
}

#[test]
fn buffered_mode_loses_only_the_unflushed_tail_on_a_crash() {
    let store = Arc::new(Faulty::seeded(5));
    let ledger = Ledger::with_store(store.clone(), options(Durability::Buffered));
    ledger.record(&id(1), Event::queued("s", "t")).unwrap();
    ledger.flush().unwrap();
    ledger
        .record(&id(1), Event::delivered(None).unwrap())
        .unwrap();
    ledger.record(&id(2), Event::queued("s", "t")).unwrap();
    store.crash();
    let reopened = Ledger::with_store(store, options(Durability::Buffered));
    assert_eq!(reopened.status(&id(1)).unwrap().status, StatusKind::Queued);
    assert_eq!(
        reopened.status(&id(2)).unwrap().status,
        StatusKind::NotFound
    );
    assert_eq!(reopened.history(&id(1)).unwrap().len(), 1);
}

#[test]
fn concurrent_durable_writers_share_flushes() {
    // A memory store whose flush is slow, as a disk's is, and counted.
    let flushes = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&flushes);
    let store = Hooked::over(Arc::new(Memory::new())).on_flush(move |_| {
        counted.fetch_add(1, Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(5));
        Ok(())
    });
    let ledger = Ledger::with_store(Arc::new(store), options(Durability::Durable));
    let writers = 32;
    std::thread::scope(|scope| {
        for n in 0..writers {
            let ledger = &ledger;
            scope.spawn(move || ledger.record(&id(n), Event::queued("s", "t")).unwrap());
        }
    });
    let flushes = flushes.load(Ordering::SeqCst);
    assert!(flushes >= 1);
    assert!(
        flushes < writers,
        "{flushes} flushes for {writers} writers: no sharing"
    );
    for n in 0..writers {
        assert_eq!(ledger.status(&id(n)).unwrap().status, StatusKind::Queued);
    }
}

/// A failed flush fails every writer whose appends it was to cover, and none is
/// acknowledged: the writer that ran it gets the store's error, and every
/// writer waiting on it gets `Poisoned` with that very error as the cause.
#[test]
fn a_failed_group_flush_fails_every_writer_waiting_on_it_with_its_error() {
    // The first flush is slow, so that writers queue behind it, and fails.
    let writers = 8;
    let store = Hooked::over(Arc::new(Memory::new())).on_flush(move |_| {
        std::thread::sleep(Duration::from_millis(20));
        Err(std::io::Error::other("the disk went away").into())
    });
    let ledger = Ledger::with_store(Arc::new(store), options(Durability::Durable));
    let answers: Vec<_> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..writers)
            .map(|n| {
                let ledger = &ledger;
                scope.spawn(move || ledger.record(&id(n), Event::queued("s", "t")))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut ran = 0;
    for answer in &answers {
        match answer {
            Err(Error::Storage(StorageError::Io(io))) => {
                ran += 1;
                assert_eq!(io.to_string(), "the disk went away");
            }
            Err(Error::Poisoned { cause }) => {
                let Error::Storage(StorageError::Io(io)) = &**cause else {
                    panic!("the cause should be the flush's error: {cause:?}");
                };
                assert_eq!(io.to_string(), "the disk went away");
            }
            other => panic!("a writer was answered {other:?} after a failed flush"),
        }
    }
    assert_eq!(
        ran, 1,
        "exactly one writer ran the failed flush: {answers:?}"
    );
}

/// Writers that arrive while another writer's turn is appending queue for the
/// next turn, whose writer makes their appends one after another: the store is
/// never asked for two appends at once, however the writers arrive.
#[test]
fn writers_arriving_during_a_turn_queue_for_the_next_instead_of_appending_alongside() {
    // A memory store whose append is slow, as a disk's write is, and which
    // notes the most appends it was making at once.
    let (making, most) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let store = Hooked::over(Arc::new(Memory::new())).on_append({
        let (making, most) = (Arc::clone(&making), Arc::clone(&most));
        move |inner, appends| {
            most.fetch_max(making.fetch_add(1, Ordering::SeqCst) + 1, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(20));
            let appended = inner.append(appends);
            making.fetch_sub(1, Ordering::SeqCst);
            appended
        }
    });
    let ledger = Ledger::with_store(Arc::new(store), options(Durability::Durable));
    let writers = 8;
    std::thread::scope(|scope| {
        for n in 0..writers {
            let ledger = &ledger;
            scope.spawn(move || ledger.record(&id(n), Event::queued("s", "t")).unwrap());
        }
    });
    assert_eq!(
        most.load(Ordering::SeqCst),
        1,
        "appends made alongside each other"
    );
    for n in 0..writers {
        assert_eq!(ledger.status(&id(n)).unwrap().status, StatusKind::Queued);
    }
}

/// Ledger v2: "durable" means on the device. On sled, a durable acknowledgement
/// comes only after sled's flush and one `fdatasync` of its data file (sled's own
/// flush ends in `sync_file_range`, which survives a process crash, not a power
/// cut); concurrent writers share the sync. `CrashSafe` and `Buffered` never sync.
#[test]
fn durable_acknowledgements_wait_for_a_sync_of_the_data_file_and_share_it() {
    use delegation_log::store::Sled;
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Sled::open(dir.path().join("log")).unwrap());
    let ledger = Ledger::with_store(store.clone(), options(Durability::Durable));
    let before = store.syncs();
    ledger.record(&id(0), Event::queued("s", "t")).unwrap();
    assert!(store.syncs() > before, "acknowledged before any sync");

    // 16 writers, 10 durable records each: every one waits for a sync, and they
    // share them.
    let before = store.syncs();
    std::thread::scope(|scope| {
        for writer in 0..16 {
            let ledger = ledger.clone();
            scope.spawn(move || {
                for n in 0..10 {
                    let id = id(1000 + writer * 100 + n);
                    ledger.record(&id, Event::queued("s", "t")).unwrap();
                }
            });
        }
    });
    let syncs = store.syncs() - before;
    assert!((1..=160).contains(&syncs), "{syncs} syncs for 160 records");
    println!("160 durable records from 16 writers took {syncs} syncs");

    for (durability, name) in [
        (Durability::CrashSafe, "crash-safe"),
        (Durability::Buffered, "buffered"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Sled::open(dir.path().join("log")).unwrap());
        let ledger = Ledger::with_store(store.clone(), options(durability));
        for n in 0..10 {
            ledger.record(&id(n), Event::queued("s", "t")).unwrap();
        }
        assert_eq!(store.syncs(), 0, "{name} mode synced");
        // An explicit flush always reaches the device.
        ledger.flush().unwrap();
        assert_eq!(store.syncs(), 1, "{name}: Ledger::flush did not sync");
    }
}

/// The store's half of the promise above, without a ledger: on sled,
/// `Store::flush` syncs the data file to the device once per call, and
/// `flush_crash_safe` never does; appends alone never sync.
#[test]
fn a_sled_flush_syncs_the_data_file_and_a_crash_safe_flush_does_not() {
    use delegation_log::store::{Expect, Sled};
    let dir = tempfile::tempdir().unwrap();
    let store = Sled::open(dir.path().join("log")).unwrap();
    for n in 0..10 {
        store
            .append(&[Append {
                id: &id(n),
                expect: Expect::Empty,
                record: b"r",
                head: b"h",
            }])
            .unwrap();
    }
    assert_eq!(store.syncs(), 0, "an append synced");
    store.flush_crash_safe().unwrap();
    assert_eq!(store.syncs(), 0, "a crash-safe flush synced");
    store.flush().unwrap();
    assert_eq!(store.syncs(), 1);
    store.flush().unwrap();
    assert_eq!(store.syncs(), 2);
}

// Regression (tests/ledger_agrees_with_model.rs): buffered `Ledger::flush` said Ok
// without flushing the store.
#[test]
fn an_explicit_flush_in_buffered_mode_makes_buffered_events_survive_a_crash() {
    let store = Arc::new(Faulty::seeded(1));
    let ledger = Ledger::with_store(store.clone(), options(Durability::Buffered));
    let id = "d".parse().unwrap();
    ledger
        .record(&id, Event::queued("planner", "reviewer"))
        .unwrap();
    ledger.flush().unwrap();
    assert_eq!(store.pending(), 0, "the flush did not reach the store");
    store.crash();
    let ledger = Ledger::with_store(store.clone(), options(Durability::Buffered));
    assert_eq!(ledger.status(&id).unwrap().status, StatusKind::Queued);
}

// Regression (with the one above): a flush that never reached the store hid its failure.
#[test]
fn an_explicit_flush_reports_a_failing_store_and_poisons_the_ledger() {
    let store = Arc::new(Faulty::seeded(1));
    let ledger = Ledger::with_store(store.clone(), options(Durability::Durable));
    store.inject(Fault::FailFlush);
    assert!(matches!(
        ledger.flush(),
        Err(Error::Storage(StorageError::Io(_)))
    ));
    let id = "d".parse().unwrap();
    assert!(matches!(
        ledger.record(&id, Event::queued("planner", "reviewer")),
        Err(Error::Poisoned { .. })
    ));
}

// Regression (hardening review, defect 11): a poisoned ledger served what a crash undid.
#[test]
fn a_poisoned_ledger_refuses_reads_that_could_show_an_unacknowledged_outcome() {
    let store = Arc::new(Faulty::seeded(1));
    let durable = || Ledger::with_store(store.clone(), options(Durability::Durable));
    let ledger = durable();
    let id = "d".parse().unwrap();
    ledger
        .record(&id, Event::queued("planner", "reviewer"))
        .unwrap();
    store.inject(Fault::FailFlush);
    assert!(
        ledger
            .record(&id, Event::delivered(Some(200)).unwrap())
            .is_err()
    );
    let poisoned = |result: Result<(), Error>| matches!(result, Err(Error::Poisoned { .. }));
    let refused = |result: Result<(), ReadError>| matches!(result, Err(ReadError::Poisoned { .. }));
    assert!(refused(ledger.status(&id).map(drop)));
    assert!(refused(ledger.delegation(&id).map(drop)));
    assert!(refused(ledger.history(&id).map(drop)));
    assert!(refused(ledger.queued().map(drop)));
    assert!(poisoned(ledger.recover().map(drop)));
    assert!(poisoned(ledger.export(Vec::new()).map(drop)));
    let replayed: Vec<_> = ledger.replay().collect();
    assert_eq!(replayed.len(), 1);
    assert!(matches!(replayed[0], Err(ReadError::Poisoned { .. })));
    assert!(matches!(
        ledger.audit(),
        Err(delegation_log::AuditError::Store(Error::Poisoned { .. }))
    ));

    store.crash();
    let reopened = durable();
    assert_eq!(reopened.status(&id).unwrap().status, StatusKind::Queued);
}
