//! Guards "a follower never stalls the ledger": `Ledger::follow` hands out every
//! acknowledged record, as the log holds it, and a follower that is slow or never
//! reads only falls behind, told how many records it missed, while every writer
//! finishes (unlike sled's `watch_prefix`, whose unread subscriber blocks writers
//! after 1024 events). Also `Tail`, the key-set poll: each record once, in seq
//! order per delegation. And the same feed served on a store's socket to other
//! processes (`feed`): a client that never reads while 10,000 records are
//! written stalls no writer, and when it reads it is told how many records the
//! feed dropped and still gets every record once, in seq order; a stale socket
//! file is replaced; a store path too long for a socket address is served.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::mpsc;
use std::time::Duration;

use delegation_log::event::Queued;
use delegation_log::ledger::Options;
use delegation_log::ledger::{FOLLOW_CAPACITY, FollowError, Follower, Tail};
use delegation_log::store::Memory;
use delegation_log::{DelegationId, Durability, Event, FailureReason, Ledger, Record};

const WRITES: usize = 10_000;

/// Delegation `n`, its number at a fixed width, so that ids sort as they were
/// written (`support::numbered` does not).
fn id(n: usize) -> DelegationId {
    format!("t-{n:05}").parse().unwrap()
}

/// Writes `WRITES` queued records on another thread; panics unless they all
/// finish before the deadline.
fn write_all_within(ledger: &Ledger, deadline: Duration) {
    let (done, finished) = mpsc::channel();
    let writer = ledger.clone();
    std::thread::spawn(move || {
        for n in 0..WRITES {
            writer
                .record(&id(n), Event::queued("planner", "http://127.0.0.1:9/a2a"))
                .unwrap();
        }
        done.send(()).unwrap();
    });
    finished
        .recv_timeout(deadline)
        .expect("the writes stalled behind a follower");
}

fn sled_ledger(dir: &tempfile::TempDir) -> Ledger {
    Ledger::open_with(
        dir.path().join("log"),
        Options::new().durability(Durability::Buffered),
    )
    .unwrap()
}

#[test]
fn a_follower_that_never_reads_never_stalls_writers_and_reports_its_lag() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = sled_ledger(&dir);
    let mut stopped = ledger.follow();
    write_all_within(&ledger, Duration::from_secs(120));

    let missed = (WRITES - FOLLOW_CAPACITY) as u64;
    assert_eq!(stopped.try_recv(), Err(FollowError::Lagged { missed }));
    // It goes on from the oldest record still held, to the last one, in order.
    let held: Vec<Record> = std::iter::from_fn(|| stopped.try_recv().ok()).collect();
    assert_eq!(held.len(), FOLLOW_CAPACITY);
    let expected: Vec<DelegationId> = (WRITES - FOLLOW_CAPACITY..WRITES).map(id).collect();
    let got: Vec<DelegationId> = held.iter().map(|r| r.delegation.clone()).collect();
    assert_eq!(got, expected);
    assert_eq!(stopped.try_recv(), Err(FollowError::Empty));
    // What it missed is in the log.
    assert_eq!(ledger.history(&id(0)).unwrap().len(), 1);
}

#[test]
fn a_slow_follower_misses_only_what_it_is_told_and_can_catch_up_from_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = sled_ledger(&dir);
    let mut slow = ledger.follow();
    let (done, finished) = mpsc::channel::<()>();
    let reader = std::thread::spawn(move || {
        let (mut got, mut missed) = (Vec::new(), 0u64);
        let mut writers_done = false;
        loop {
            match slow.try_recv() {
                Ok(record) => {
                    got.push(record.delegation);
                    // Slow by design: a pause every 64 records.
                    if got.len() % 64 == 0 {
                        std::thread::sleep(Duration::from_millis(2));
                    }
                }
                Err(FollowError::Lagged { missed: n }) => missed += n,
                Err(FollowError::Empty) if writers_done => return (got, missed),
                Err(FollowError::Empty) => {
                    writers_done = finished.recv_timeout(Duration::from_millis(1)).is_ok();
                }
                Err(e) => panic!("{e}"),
            }
        }
    });
    write_all_within(&ledger, Duration::from_secs(120));
    done.send(()).unwrap();
    let (got, missed) = reader.join().unwrap();

    assert_eq!(
        got.len() as u64 + missed,
        WRITES as u64,
        "every record is got or counted missed"
    );
    // Got in write order, none twice.
    assert!(got.windows(2).all(|w| w[0] < w[1]), "out of order or twice");
    // Catch up: whatever was missed, the log has.
    let seen: std::collections::HashSet<_> = got.into_iter().collect();
    for n in (0..WRITES).filter(|n| !seen.contains(&id(*n))) {
        assert_eq!(ledger.history(&id(n)).unwrap().len(), 1);
    }
}

#[test]
fn a_follower_gets_each_record_exactly_as_the_log_holds_it() {
    let ledger = Ledger::with_store(Arc::new(Memory::new()), Options::new());
    let mut follower: Follower = ledger.follow();
    let (a, b) = ("a".parse().unwrap(), "a.r1".parse().unwrap());
    ledger
        .record(&a, Event::queued("planner", "http://127.0.0.1:9/a2a"))
        .unwrap();
    ledger
        .retry(
            &a,
            match Event::failed(FailureReason::TargetOffline, None).unwrap() {
                Event::Failed(failed) => failed,
                _ => unreachable!(),
            },
            &b,
            Queued::new("planner", "http://127.0.0.1:9/a2a"),
        )
        .unwrap();
    ledger
        .record(&b, Event::delivered(Some(200)).unwrap())
        .unwrap();
    // A refused event feeds nothing.
    assert!(
        ledger
            .record(&b, Event::delivered(Some(200)).unwrap())
            .is_err()
    );

    let got: Vec<Record> = std::iter::from_fn(|| follower.try_recv().ok()).collect();
    let mut logged = ledger.history(&a).unwrap();
    logged.extend(ledger.history(&b).unwrap());
    let order = |r: &Record| (r.at, r.delegation.clone(), r.seq);
    let (mut got_sorted, mut logged) = (got.clone(), logged);
    got_sorted.sort_by_key(order);
    logged.sort_by_key(order);
    assert_eq!(got_sorted, logged);
    assert!(got.iter().all(|r| r.hash.is_some()));
    assert_eq!(follower.try_recv(), Err(FollowError::Empty));
    drop(ledger);
    assert_eq!(follower.try_recv(), Err(FollowError::Closed));
}

#[test]
fn a_tail_hands_out_each_record_once_in_seq_order_per_delegation() {
    let ledger = Ledger::with_store(Arc::new(Memory::new()), Options::new());
    let mut tail = Tail::new();
    assert!(tail.poll(&ledger).unwrap().is_empty());
    let mut printed: HashMap<DelegationId, Vec<u64>> = HashMap::new();
    for round in 0..3 {
        for n in 0..20 {
            let id = id(n);
            let event = if round == 0 {
                Event::queued("planner", "http://127.0.0.1:9/a2a")
            } else {
                Event::delivered(Some(200)).unwrap()
            };
            // The third round is refused (settled): nothing new to hand out.
            let _ = ledger.record(&id, event);
        }
        for record in tail.poll(&ledger).unwrap() {
            printed
                .entry(record.delegation)
                .or_default()
                .push(record.seq);
        }
    }
    assert_eq!(printed.len(), 20);
    assert!(printed.values().all(|seqs| seqs == &[1, 2]), "{printed:?}");
    assert_eq!(tail.delegations(), 20);
}

/// The feed served on a store's socket to another process
/// (`delegation_log::feed`), here read in-process.
#[cfg(all(feature = "feed", unix))]
mod served {
    use std::collections::HashMap;
    use std::time::Duration;

    use delegation_log::feed::{Client, Message, SOCKET, Server};
    use delegation_log::{DelegationId, Event, Seq};

    use super::{WRITES, id, sled_ledger, write_all_within};

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
    }

    /// Reads records until `count` distinct ones came; panics on a duplicate or
    /// a seq out of order. Returns how many the feed said were missed.
    fn read_every(client: &mut Client, count: usize) -> u64 {
        let mut last: HashMap<DelegationId, Seq> = HashMap::new();
        let (mut got, mut missed) = (0, 0);
        while got < count {
            match client
                .next_message()
                .unwrap()
                .expect("the feed ended early")
            {
                Message::Record(record) => {
                    let before = last.insert(record.delegation.clone(), record.seq);
                    assert_eq!(
                        before.unwrap_or(0) + 1,
                        record.seq,
                        "{} twice or out of order",
                        record.delegation
                    );
                    got += 1;
                }
                Message::Missed { records } => missed += records,
                other => panic!("{other:?}"),
            }
        }
        missed
    }

    #[test]
    fn a_feed_client_that_never_reads_never_stalls_writers_and_still_gets_every_record_once() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = sled_ledger(&dir);
        let db = dir.path().join("log");
        let runtime = runtime();
        let server = runtime.block_on(Server::start(&ledger, &db)).unwrap();
        // Connected, hello read, and then not read while every write is made.
        let mut stopped = Client::connect(&db).unwrap();
        write_all_within(&ledger, Duration::from_secs(120));

        let missed = read_every(&mut stopped, WRITES);
        assert!(missed > 0, "the feed should have dropped records for it");
        runtime.block_on(server.close());
        assert!(matches!(
            stopped.next_message().unwrap(),
            Some(Message::End { .. })
        ));
        assert!(!db.join(SOCKET).exists(), "the socket is removed on close");
        // Nothing more: the ledger's history is what was sent.
        assert_eq!(ledger.history(&id(WRITES - 1)).unwrap().len(), 1);
    }

    #[test]
    fn a_store_whose_socket_path_is_too_long_for_an_address_is_served_all_the_same() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("x".repeat(120));
        let ledger = delegation_log::Ledger::open(&db).unwrap();
        assert!(db.join(SOCKET).as_os_str().len() > 107);
        let runtime = runtime();
        let server = runtime.block_on(Server::start(&ledger, &db)).unwrap();
        let mut client = Client::connect(&db).unwrap();
        ledger
            .record(&id(1), Event::queued("planner", "http://127.0.0.1:9/a2a"))
            .unwrap();
        assert_eq!(read_every(&mut client, 1), 0);
        runtime.block_on(server.close());
        assert!(!db.join(SOCKET).exists());
    }

    #[test]
    fn a_stale_socket_file_is_replaced_and_a_server_removes_only_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = sled_ledger(&dir);
        let db = dir.path().join("log");
        // What a killed server leaves: a socket file nobody listens on.
        drop(std::os::unix::net::UnixListener::bind(db.join(SOCKET)).unwrap());
        assert!(matches!(
            Client::connect(&db),
            Err(delegation_log::feed::Error::NotServed { .. })
        ));
        let runtime = runtime();
        let first = runtime.block_on(Server::start(&ledger, &db)).unwrap();
        let mut client = Client::connect(&db).unwrap();
        ledger
            .record(&id(1), Event::queued("planner", "http://127.0.0.1:9/a2a"))
            .unwrap();
        assert_eq!(read_every(&mut client, 1), 0);
        // A later server replaces the socket; the first one, dropped, leaves it.
        let second = runtime.block_on(Server::start(&ledger, &db)).unwrap();
        drop(first);
        assert!(db.join(SOCKET).exists());
        assert!(Client::connect(&db).is_ok());
        runtime.block_on(second.close());
        assert!(!db.join(SOCKET).exists());
    }
}
