//! The ledger against what a user would otherwise do, measured in the same run.
//!
//! Each group pairs the ledger with its baseline, so that the ratio in
//! `BENCHMARKS.md` comes from one run on one (noisy, shared) machine:
//!
//! - `record_buffered`: a full lifecycle (`queued`, then an outcome) per delegation,
//!   against raw sled `insert` of the very same bytes under the very same keys;
//! - `record_durable`: 1, 8 and 64 writer threads with group commit, against a
//!   flush after every insert;
//! - `replay`: stores of 10k, 100k and 1M records, against a raw sled iteration
//!   over the same tree;
//! - `status`: [`Ledger::status`] against a raw sled `get` of the same key;
//! - `sqlite`: one status row per delegation, inserted then updated, at the same
//!   durability as the ledger;
//! - `machine`: [`lifecycle::step`] against a hand-written `match`.
//!
//! Run with `cargo bench --bench ledger`; `BENCHMARK_QUICK=1` leaves out the
//! 1M-record replay store, which takes a while to build. `cargo bench -- --test`
//! runs each benchmark once over tiny stores, as a smoke test.
#![allow(missing_docs)]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::hint::black_box;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use criterion::{
    BatchSize, BenchmarkId, Criterion, SamplingMode, Throughput, criterion_group, criterion_main,
};
use delegation_log::event::EventKind;
use delegation_log::lifecycle::{self, Refusal, State};
use delegation_log::store::{self, Expect, Head, Store, key};
use delegation_log::{
    ChainHash, Clock as _, DelegationId, Durability, Event, FailureReason, Ledger, ManualClock,
    Options, Record, envelope,
};

/// Delegations per timed batch in `record_buffered`.
const BATCH: usize = 1000;

fn id(n: u64) -> DelegationId {
    format!("delegation-{n:010}").parse().unwrap()
}

fn queued() -> Event {
    Event::queued("planner", "http://127.0.0.1:8080/a2a")
}

fn outcome(n: u64) -> Event {
    if n.is_multiple_of(2) {
        Event::delivered(Some(200)).unwrap()
    } else {
        Event::failed(FailureReason::HttpStatus(503), Some("proxy busy".into())).unwrap()
    }
}

/// The clock every ledger in this file runs on, so that the ledger writes exactly
/// the bytes that [`lifecycle_bytes`] computes.
fn clock() -> ManualClock {
    ManualClock::default()
}

fn buffered(path: &Path) -> Ledger {
    Ledger::open_with(
        path,
        Options::new()
            .durability(Durability::Buffered)
            .clock(clock()),
    )
    .unwrap()
}

fn durable(path: &Path) -> Ledger {
    Ledger::open_with(
        path,
        Options::new()
            .durability(Durability::Durable)
            .clock(clock()),
    )
    .unwrap()
}

/// Each record of a lifecycle: its key, its encoded bytes, and the head after it.
type Lifecycle = [(Vec<u8>, Vec<u8>, Head); 2];

/// The two records of delegation `n`'s lifecycle, chained and encoded, with their
/// keys and the head after each: what the ledger writes for it.
fn lifecycle_bytes(n: u64) -> Lifecycle {
    let id = id(n);
    let at = clock().now();
    let mut previous = ChainHash::GENESIS;
    let mut seq = 0;
    [queued(), outcome(n)].map(|event| {
        seq += 1;
        let mut record = Record {
            delegation: id.clone(),
            seq,
            event,
            at,
            hash: None,
        };
        let hash = record.chain_hash(&previous);
        record.hash = Some(hash);
        previous = hash;
        (
            key::record(&id, record.seq),
            envelope::encode(&record),
            Head {
                seq: record.seq,
                hash,
            },
        )
    })
}

fn record_lifecycle(ledger: &Ledger, n: u64) {
    let id = id(n);
    ledger.record(&id, queued()).unwrap();
    ledger.record(&id, outcome(n)).unwrap();
}

fn raw_sled(path: &Path) -> (sled::Db, sled::Tree, sled::Tree) {
    let db = sled::Config::new().path(path).open().unwrap();
    let records = db.open_tree("records").unwrap();
    let heads = db.open_tree("heads").unwrap();
    (db, records, heads)
}

/// Checks, once and untimed, that the ledger writes exactly the bytes the raw
/// baseline inserts.
fn assert_same_bytes(batch: &[Lifecycle]) {
    let dir = tempfile::tempdir().unwrap();
    let ledger = buffered(&dir.path().join("log"));
    for (n, records) in batch.iter().enumerate() {
        record_lifecycle(&ledger, n as u64);
        let stream = ledger.store().history(&id(n as u64)).unwrap();
        assert_eq!(stream.entries.len(), 2);
        for (entry, (record_key, bytes, head)) in stream.entries.iter().zip(records) {
            assert_eq!(&entry.bytes, bytes, "the ledger wrote other bytes");
            assert_eq!(&key::record(&id(n as u64), entry.seq), record_key);
            assert_eq!(entry.seq, head.seq);
        }
        assert_eq!(stream.head, Some(records[1].2));
    }
}

fn record_buffered(c: &mut Criterion) {
    let batch: Vec<_> = (0..BATCH as u64).map(lifecycle_bytes).collect();
    assert_same_bytes(&batch);
    let mut group = c.benchmark_group("record_buffered");
    group.throughput(Throughput::Elements(2 * BATCH as u64));
    group.sample_size(10);
    group.sampling_mode(SamplingMode::Flat);
    group.bench_function("ledger", |b| {
        b.iter_batched(
            || {
                let dir = tempfile::tempdir().unwrap();
                let ledger = buffered(&dir.path().join("log"));
                (dir, ledger)
            },
            |(dir, ledger)| {
                for n in 0..BATCH as u64 {
                    record_lifecycle(&ledger, n);
                }
                (dir, ledger)
            },
            BatchSize::PerIteration,
        );
    });
    group.bench_function("raw_sled_insert", |b| {
        b.iter_batched(
            || {
                let dir = tempfile::tempdir().unwrap();
                let sled = raw_sled(dir.path());
                (dir, sled)
            },
            |(dir, (db, records, heads))| {
                for lifecycle in &batch {
                    for (key, bytes, _) in lifecycle {
                        records.insert(key.as_slice(), bytes.as_slice()).unwrap();
                    }
                }
                (dir, (db, records, heads))
            },
            BatchSize::PerIteration,
        );
    });
    // Not the baseline: what the ledger's writes cost by hand, a record and
    // its head per append, with no reads and no checks.
    group.bench_function("raw_sled_insert_with_heads", |b| {
        let heads_keys: Vec<Vec<u8>> = (0..BATCH as u64).map(|n| key::prefix(&id(n))).collect();
        b.iter_batched(
            || {
                let dir = tempfile::tempdir().unwrap();
                let sled = raw_sled(dir.path());
                (dir, sled)
            },
            |(dir, (db, records, heads))| {
                for (lifecycle, head_key) in batch.iter().zip(&heads_keys) {
                    for (key, bytes, head) in lifecycle {
                        records.insert(key.as_slice(), bytes.as_slice()).unwrap();
                        heads
                            .insert(head_key.as_slice(), &head.encode()[..])
                            .unwrap();
                    }
                }
                (dir, (db, records, heads))
            },
            BatchSize::PerIteration,
        );
    });
    group.finish();
}

/// Runs `iters` units of work split over `threads` threads, and times them from
/// the moment all are ready.
fn threaded(threads: usize, iters: u64, work: impl Fn(u64) + Sync) -> Duration {
    let barrier = Barrier::new(threads + 1);
    let per_thread = iters.div_ceil(threads as u64);
    std::thread::scope(|scope| {
        for t in 0..threads as u64 {
            let (barrier, work) = (&barrier, &work);
            scope.spawn(move || {
                barrier.wait();
                let start = t * per_thread;
                for i in start..(start + per_thread).min(iters) {
                    work(i);
                }
            });
        }
        barrier.wait();
        let started = Instant::now();
        // The scope joins every thread before returning.
        started
    })
    .elapsed()
}

fn record_durable(c: &mut Criterion) {
    let mut group = c.benchmark_group("record_durable");
    group.throughput(Throughput::Elements(2));
    group.sample_size(10);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(4));
    for threads in [1usize, 8, 64] {
        group.bench_with_input(
            BenchmarkId::new("ledger_group_commit", threads),
            &threads,
            |b, &threads| {
                let dir = tempfile::tempdir().unwrap();
                let ledger = durable(&dir.path().join("log"));
                let next = AtomicU64::new(0);
                b.iter_custom(|iters| {
                    let base = next.fetch_add(iters, Ordering::Relaxed);
                    threaded(threads, iters, |i| record_lifecycle(&ledger, base + i))
                });
            },
        );
        // Not a baseline: the same writers in buffered mode, the ceiling that group
        // commit can approach once flushes are fully shared.
        group.bench_with_input(
            BenchmarkId::new("ledger_buffered", threads),
            &threads,
            |b, &threads| {
                let dir = tempfile::tempdir().unwrap();
                let ledger = buffered(&dir.path().join("log"));
                let next = AtomicU64::new(0);
                b.iter_custom(|iters| {
                    let base = next.fetch_add(iters, Ordering::Relaxed);
                    threaded(threads, iters, |i| record_lifecycle(&ledger, base + i))
                });
            },
        );
        group.bench_with_input(
            BenchmarkId::new("raw_sled_flush_per_insert", threads),
            &threads,
            |b, &threads| {
                let dir = tempfile::tempdir().unwrap();
                let (db, records, _) = raw_sled(dir.path());
                let next = AtomicU64::new(0);
                b.iter_custom(|iters| {
                    let base = next.fetch_add(iters, Ordering::Relaxed);
                    threaded(threads, iters, |i| {
                        for (key, bytes, _) in lifecycle_bytes(base + i) {
                            records.insert(key, bytes).unwrap();
                            db.flush().unwrap();
                        }
                    })
                });
            },
        );
    }
    group.finish();
}

/// Builds, untimed, a store of `records` records (two per delegation) in the
/// ledger's own format, through the store's append.
fn build_store(path: &Path, records: u64) {
    let store = store::Sled::open(path).unwrap();
    for n in 0..records / 2 {
        let id = id(n);
        let mut expect = Expect::Empty;
        for (_, bytes, head) in lifecycle_bytes(n) {
            store.append(&id, expect, &bytes, head).unwrap();
            expect = Expect::At(head.seq);
        }
    }
    store.flush().unwrap();
}

/// Whether this is a smoke run (`cargo bench -- --test`), where stores stay tiny.
fn smoke() -> bool {
    std::env::args().any(|arg| arg == "--test")
}

fn replay_sizes() -> Vec<u64> {
    if smoke() {
        vec![1_000]
    } else if std::env::var_os("BENCHMARK_QUICK").is_some() {
        vec![10_000, 100_000]
    } else {
        vec![10_000, 100_000, 1_000_000]
    }
}

fn replay(c: &mut Criterion) {
    let mut group = c.benchmark_group("replay");
    group.sample_size(10);
    group.sampling_mode(SamplingMode::Flat);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(5));
    for records in replay_sizes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        build_store(&path, records);
        group.throughput(Throughput::Elements(records));
        group.bench_with_input(BenchmarkId::new("ledger", records), &records, |b, _| {
            let ledger = Ledger::with_store(
                Arc::new(store::Sled::open(&path).unwrap()),
                Options::new().durability(Durability::Buffered),
            );
            b.iter(|| {
                let mut delegations = 0u64;
                for delegation in ledger.replay() {
                    black_box(delegation.unwrap());
                    delegations += 1;
                }
                assert_eq!(delegations, records / 2);
            });
        });
        group.bench_with_input(
            BenchmarkId::new("raw_sled_iter", records),
            &records,
            |b, _| {
                let (_db, tree, _) = raw_sled(&path);
                b.iter(|| {
                    let mut count = 0u64;
                    for item in tree.iter() {
                        let (key, value) = item.unwrap();
                        black_box((&key, &value));
                        count += 1;
                    }
                    assert_eq!(count, records);
                });
            },
        );
    }
    group.finish();
}

fn status(c: &mut Criterion) {
    let records = if smoke() { 1_000 } else { 100_000 };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log");
    build_store(&path, records);
    let delegations = records / 2;
    let ids: Vec<DelegationId> = (0..delegations).map(id).collect();
    let mut group = c.benchmark_group("status");
    group.throughput(Throughput::Elements(1));
    group.bench_function("ledger", |b| {
        let ledger = Ledger::with_store(
            Arc::new(store::Sled::open(&path).unwrap()),
            Options::new().durability(Durability::Buffered),
        );
        let mut n = 0usize;
        b.iter(|| {
            n = (n + 7919) % ids.len();
            black_box(ledger.status(&ids[n]).unwrap())
        });
    });
    group.bench_function("raw_sled_get", |b| {
        let (_db, records, _) = raw_sled(&path);
        let keys: Vec<Vec<u8>> = ids.iter().map(|id| key::record(id, 2)).collect();
        let mut n = 0usize;
        b.iter(|| {
            n = (n + 7919) % keys.len();
            black_box(records.get(&keys[n]).unwrap().unwrap())
        });
    });
    // Not the baseline: the reads `status` has to make, done by hand (the
    // delegation's records by prefix, and its head).
    group.bench_function("raw_sled_prefix_and_head", |b| {
        let (_db, records, heads) = raw_sled(&path);
        let prefixes: Vec<Vec<u8>> = ids.iter().map(key::prefix).collect();
        let mut n = 0usize;
        b.iter(|| {
            n = (n + 7919) % prefixes.len();
            let found: Vec<_> = records
                .scan_prefix(&prefixes[n])
                .map(|item| item.unwrap())
                .collect();
            black_box((found, heads.get(&prefixes[n]).unwrap()))
        });
    });
    group.finish();
}

/// One status row per delegation, as the platform in the crate's story kept it.
struct Sqlite {
    conn: rusqlite::Connection,
}

impl Sqlite {
    fn open(path: &Path, synchronous: &str) -> Self {
        let conn = rusqlite::Connection::open(path).unwrap();
        conn.pragma_update(None, "journal_mode", "WAL").unwrap();
        conn.pragma_update(None, "synchronous", synchronous)
            .unwrap();
        conn.execute_batch(
            "CREATE TABLE delegations (
                id TEXT PRIMARY KEY,
                status TEXT NOT NULL,
                source TEXT NOT NULL,
                target TEXT NOT NULL,
                reason TEXT,
                http_status INTEGER,
                error_detail TEXT,
                queued_at TEXT NOT NULL,
                settled_at TEXT
            )",
        )
        .unwrap();
        Sqlite { conn }
    }

    fn lifecycle(&self, n: u64) {
        let id = id(n);
        let at = clock().now().to_string();
        self.conn
            .prepare_cached(
                "INSERT INTO delegations (id, status, source, target, queued_at)
                 VALUES (?1, 'queued', ?2, ?3, ?4)",
            )
            .unwrap()
            .execute(rusqlite::params![
                id.as_str(),
                "planner",
                "http://127.0.0.1:8080/a2a",
                at
            ])
            .unwrap();
        let (status, reason, http_status, detail) = if n.is_multiple_of(2) {
            ("delivered", None, Some(200), None)
        } else {
            ("failed", Some("http_status"), Some(503), Some("proxy busy"))
        };
        let changed = self
            .conn
            .prepare_cached(
                "UPDATE delegations
                 SET status = ?2, reason = ?3, http_status = ?4, error_detail = ?5, settled_at = ?6
                 WHERE id = ?1 AND status = 'queued'",
            )
            .unwrap()
            .execute(rusqlite::params![
                id.as_str(),
                status,
                reason,
                http_status,
                detail,
                at
            ])
            .unwrap();
        assert_eq!(changed, 1);
    }
}

fn sqlite(c: &mut Criterion) {
    let mut group = c.benchmark_group("sqlite");
    group.throughput(Throughput::Elements(2));
    group.sample_size(10);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(4));
    for (mode, synchronous) in [("buffered", "NORMAL"), ("durable", "FULL")] {
        group.bench_function(BenchmarkId::new("ledger", mode), |b| {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("log");
            let ledger = if mode == "durable" {
                durable(&path)
            } else {
                buffered(&path)
            };
            let mut n = 0;
            b.iter(|| {
                record_lifecycle(&ledger, n);
                n += 1;
            });
        });
        group.bench_function(BenchmarkId::new("sqlite_row", mode), |b| {
            let dir = tempfile::tempdir().unwrap();
            let sqlite = Sqlite::open(&dir.path().join("log.db"), synchronous);
            let mut n = 0;
            b.iter(|| {
                sqlite.lifecycle(n);
                n += 1;
            });
        });
    }
    group.finish();
}

/// What `lifecycle::step` decides, written as a plain `match`.
fn hand_written(from: State, event: EventKind) -> Result<State, Refusal> {
    match (from, event) {
        (State::Initial, EventKind::Queued) => Ok(State::Queued),
        (State::Queued, EventKind::Delivered) => Ok(State::Delivered),
        (State::Queued, EventKind::Failed) => Ok(State::Failed),
        (state @ (State::Delivered | State::Failed), event) => {
            Err(Refusal::AlreadySettled { state, event })
        }
        (from, event) => Err(Refusal::IllegalTransition { from, event }),
    }
}

fn machine(c: &mut Criterion) {
    let pairs: Vec<(State, EventKind)> = State::ALL
        .iter()
        .flat_map(|&state| EventKind::ALL.iter().map(move |&event| (state, event)))
        .collect();
    for &(state, event) in &pairs {
        assert_eq!(lifecycle::step(state, event), hand_written(state, event));
    }
    let mut group = c.benchmark_group("machine");
    group.throughput(Throughput::Elements(pairs.len() as u64));
    group.bench_function("statig_step", |b| {
        b.iter(|| {
            for &(state, event) in &pairs {
                black_box(lifecycle::step(black_box(state), black_box(event)).ok());
            }
        });
    });
    group.bench_function("hand_written_match", |b| {
        b.iter(|| {
            for &(state, event) in &pairs {
                black_box(hand_written(black_box(state), black_box(event)).ok());
            }
        });
    });
    group.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
}

criterion_group! {
    name = benches;
    config = config();
    targets = machine, record_buffered, status, sqlite, record_durable, replay
}
criterion_main!(benches);
