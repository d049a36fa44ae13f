//! The ledger against what a user would otherwise do, measured in the same run.
//!
//! Each group pairs the ledger with its baselines, so that every ratio in
//! `BENCHMARKS.md` comes from one run on one (noisy, shared) machine:
//!
//! - `record_buffered`: 1000 lifecycles (`queued`, then an outcome) into a fresh
//!   store, against raw sled writes of the very same keys and bytes the ledger
//!   wrote: each record plus its head, two inserts per event
//!   (`raw_sled_insert_with_head`, the goal's baseline), the same as one
//!   `apply_batch` per event (`raw_sled_batch_with_head`), exactly the keys and
//!   values the ledger wrote, one insert each (`raw_sled_insert_exact`: in store
//!   format 3, one insert of the delegation's key per event), and the records
//!   alone (`raw_sled_insert`);
//! - `status`: [`Ledger::status`] against a raw sled `get` of the delegation's head
//!   (`raw_sled_get_head`, the goal's baseline) and of its last record;
//! - `sqlite`: whole lifecycles per second against SQLite used as a careful user
//!   would (a row per delegation updated in place, plus an events table, each
//!   event its own `BEGIN IMMEDIATE` transaction), WAL with `synchronous=NORMAL`
//!   (buffered) and `FULL` (durable), with 1 and 64 writers;
//! - `record_durable`: 1, 8, 64 and 256 writer threads; the ledger durable (group
//!   commit) and buffered (the ceiling), against raw sled writes followed, per
//!   record, by `flush` and `File::sync_data` of sled's `db` file (equal
//!   durability; also with the record's writes as one `apply_batch`, equal
//!   atomicity), by `flush` alone (crash-safe, not power-safe), and against
//!   `write` + `fdatasync` of the record to a plain file (the physical floor),
//!   appended (the file grows, as sled's does) and written in place (it does not,
//!   as SQLite's WAL once it reuses its file);
//! - `replay`: stores of 100k and 1M records; [`Ledger::replay`] (state rebuild)
//!   and [`Ledger::audit`] (the full hash check) against a raw sled iteration of
//!   every tree;
//! - `machine`: [`lifecycle::step`] against a hand-written `match`.
//!
//! The baselines never assume how the store lays out its keys: the bytes they
//! write and read are captured from a store the ledger wrote (see
//! `benches/common/capture.rs`).
//!
//! Run with `cargo bench --bench ledger`; `BENCHMARK_QUICK=1` leaves out the
//! 1M-record replay store. The load average is printed to stderr at the start and
//! at the end. `cargo bench --bench ledger -- --test` runs each benchmark once over
//! tiny stores, as a smoke test, and prints nothing extra.
#![allow(missing_docs)]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

#[path = "common/mod.rs"]
mod common;

use std::cell::OnceCell;
use std::hint::black_box;
use std::io::Write as _;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Barrier, Mutex, OnceLock};
use std::time::{Duration, Instant};

use criterion::{BatchSize, BenchmarkId, Criterion, SamplingMode, Throughput, criterion_group};
use delegation_log::event::EventKind;
use delegation_log::lifecycle::{self, Refusal, State};
use delegation_log::{Clock as _, Event, Ledger};

use common::capture::{Captured, Op, apply, apply_batched, capture, records};
use common::support::raw_sled;
use common::{buffered, clock, durable, id, outcome, queued, record_lifecycle, smoke};

/// Delegations per timed batch in `record_buffered`.
const BATCH: usize = 1000;

/// What the ledger writes for `BATCH` lifecycles, captured once per run.
fn captured() -> &'static Captured {
    static CAPTURED: OnceLock<Captured> = OnceLock::new();
    CAPTURED.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let captured = capture(&dir.path().join("log"), BATCH as u64);
        if !smoke() {
            eprintln!(
                "[ledger] what one lifecycle writes: {}",
                captured.describe()
            );
        }
        captured
    })
}

// ---------------------------------------------------------------------------
// record, buffered
// ---------------------------------------------------------------------------

fn record_buffered(c: &mut Criterion) {
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
    // The goal's baseline: each event's record and its head, the bytes the
    // ledger wrote, one `insert` each (two per event, whatever the layout).
    group.bench_function("raw_sled_insert_with_head", |b| raw_batch(b, apply));
    // The same writes, atomic per tree: one `apply_batch` per event and tree.
    group.bench_function("raw_sled_batch_with_head", |b| raw_batch(b, apply_batched));
    // Exactly the keys and values the ledger wrote, one `insert` each: in store
    // format 3, one insert of the delegation's one key per event.
    group.bench_function("raw_sled_insert_exact", |b| {
        let captured = captured();
        b.iter_batched(
            || {
                let dir = tempfile::tempdir().unwrap();
                let raw = captured.raw(&dir.path().join("raw"));
                (dir, raw)
            },
            |(dir, (db, trees))| {
                for lifecycle in &captured.exact {
                    for event in lifecycle {
                        apply(&trees, event);
                    }
                }
                (dir, (db, trees))
            },
            BatchSize::PerIteration,
        );
    });
    // The records alone, without their heads (the baseline of the first report).
    group.bench_function("raw_sled_insert", |b| {
        raw_batch(b, |trees, ops| {
            for (tree, key, value) in records(ops) {
                trees[tree].insert(key, value).unwrap();
            }
        });
    });
    group.finish();
}

/// `write` of what the ledger wrote for `BATCH` lifecycles, event by event, into a
/// fresh raw sled database.
fn raw_batch(b: &mut criterion::Bencher<'_>, write: fn(&[sled::Tree], &[Op])) {
    let captured = captured();
    b.iter_batched(
        || {
            let dir = tempfile::tempdir().unwrap();
            let raw = captured.raw(&dir.path().join("raw"));
            (dir, raw)
        },
        |(dir, (db, trees))| {
            for lifecycle in &captured.lifecycles {
                for event in lifecycle {
                    write(&trees, event);
                }
            }
            (dir, (db, trees))
        },
        BatchSize::PerIteration,
    );
}

// ---------------------------------------------------------------------------
// Writers on threads
// ---------------------------------------------------------------------------

/// Runs `iters` units of work split over `threads` threads, and times them from
/// the moment all are ready until the last one ends. `work` gets the thread's
/// index and the unit's.
fn threaded(threads: usize, iters: u64, work: impl Fn(usize, u64) + Sync) -> Duration {
    let barrier = Barrier::new(threads + 1);
    let per_thread = iters.div_ceil(threads as u64);
    std::thread::scope(|scope| {
        for t in 0..threads {
            let (barrier, work) = (&barrier, &work);
            scope.spawn(move || {
                barrier.wait();
                let start = t as u64 * per_thread;
                for i in start..(start + per_thread).min(iters) {
                    work(t, i);
                }
            });
        }
        barrier.wait();
        // The scope joins every thread before returning.
        Instant::now()
    })
    .elapsed()
}

/// A benchmark of whole lifecycles on `threads` threads: `work(thread, n)` runs
/// lifecycle `n`, and every `n` is new in the run.
fn lifecycles_on_threads(
    b: &mut criterion::Bencher<'_>,
    threads: usize,
    work: impl Fn(usize, u64) + Sync,
) {
    let next = AtomicU64::new(0);
    b.iter_custom(|iters| {
        let base = next.fetch_add(iters, Ordering::Relaxed);
        threaded(threads, iters, |t, i| work(t, base + i))
    });
}

// ---------------------------------------------------------------------------
// record, durable
// ---------------------------------------------------------------------------

fn writer_counts() -> [usize; 4] {
    [1, 8, 64, 256]
}

fn record_durable(c: &mut Criterion) {
    let mut group = c.benchmark_group("record_durable");
    group.throughput(Throughput::Elements(2));
    group.sample_size(10);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(4));
    for threads in writer_counts() {
        // The ledger, durable: each `record` returns once a flush and a sync cover
        // it; concurrent writers share them (group commit).
        group.bench_with_input(
            BenchmarkId::new("ledger_group_commit", threads),
            &threads,
            |b, &threads| {
                let dir = tempfile::tempdir().unwrap();
                let ledger = durable(&dir.path().join("log"));
                lifecycles_on_threads(b, threads, |_, n| record_lifecycle(&ledger, n));
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
                lifecycles_on_threads(b, threads, |_, n| record_lifecycle(&ledger, n));
            },
        );
        // The goal's baseline, at equal durability: each record's writes (record
        // and head, as the ledger makes them), then `Db::flush` (which ends in
        // `sync_file_range`) and `File::sync_data` of sled's `db` file, per record.
        group.bench_with_input(
            BenchmarkId::new("raw_sled_flush_sync_per_insert", threads),
            &threads,
            |b, &threads| {
                let captured = captured();
                let dir = tempfile::tempdir().unwrap();
                let (db, trees) = captured.raw(&dir.path().join("raw"));
                let file = std::fs::File::open(dir.path().join("raw").join("db")).unwrap();
                lifecycles_on_threads(b, threads, |_, n| {
                    for event in captured.lifecycle(n) {
                        apply(&trees, &event);
                        db.flush().unwrap();
                        file.sync_data().unwrap();
                    }
                });
            },
        );
        // Reference: the same, with each record's writes as one `apply_batch`
        // (atomic, as the ledger's are): what sled charges for a batch, at equal
        // durability.
        group.bench_with_input(
            BenchmarkId::new("raw_sled_batch_flush_sync_per_insert", threads),
            &threads,
            |b, &threads| {
                let captured = captured();
                let dir = tempfile::tempdir().unwrap();
                let (db, trees) = captured.raw(&dir.path().join("raw"));
                let file = std::fs::File::open(dir.path().join("raw").join("db")).unwrap();
                lifecycles_on_threads(b, threads, |_, n| {
                    for event in captured.lifecycle(n) {
                        apply_batched(&trees, &event);
                        db.flush().unwrap();
                        file.sync_data().unwrap();
                    }
                });
            },
        );
        // The first report's baseline: the same without the sync. It survives a
        // crash of the process, not a power cut.
        group.bench_with_input(
            BenchmarkId::new(
                "raw_sled_flush_per_insert_crash_safe_not_power_safe",
                threads,
            ),
            &threads,
            |b, &threads| {
                let captured = captured();
                let dir = tempfile::tempdir().unwrap();
                let (db, trees) = captured.raw(&dir.path().join("raw"));
                lifecycles_on_threads(b, threads, |_, n| {
                    for event in captured.lifecycle(n) {
                        apply(&trees, &event);
                        db.flush().unwrap();
                    }
                });
            },
        );
    }
    // The physical floor: each record's bytes appended to a plain file with
    // `write`, then `fdatasync`, one writer.
    group.bench_with_input(
        BenchmarkId::new("raw_file_write_fdatasync", 1),
        &1,
        |b, &threads| {
            let captured = captured();
            let dir = tempfile::tempdir().unwrap();
            let file = Mutex::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(dir.path().join("log"))
                    .unwrap(),
            );
            lifecycles_on_threads(b, threads, |_, n| {
                let mut file = file.lock().unwrap();
                for event in captured.lifecycle(n) {
                    for (_, _, bytes) in records(&event) {
                        file.write_all(bytes).unwrap();
                    }
                    file.sync_data().unwrap();
                }
            });
        },
    );
    // The same bytes written in place into a file already written to its full
    // length, then `fdatasync`, one writer: a sync that changes none of the
    // file's metadata, as SQLite's WAL does once it reuses its file. Beside the
    // append above, it shows what a growing file adds to each sync.
    group.bench_with_input(
        BenchmarkId::new("raw_file_overwrite_fdatasync", 1),
        &1,
        |b, &threads| {
            const LAP: u64 = 4 << 20;
            let captured = captured();
            let dir = tempfile::tempdir().unwrap();
            let file = std::fs::File::create(dir.path().join("log")).unwrap();
            let zeros = vec![0u8; 1 << 20];
            for _ in 0..(LAP >> 20) + 1 {
                (&file).write_all(&zeros).unwrap();
            }
            file.sync_all().unwrap();
            let at = Mutex::new((file, 0u64));
            lifecycles_on_threads(b, threads, |_, n| {
                use std::os::unix::fs::FileExt as _;
                let mut at = at.lock().unwrap();
                let (file, offset) = &mut *at;
                for event in captured.lifecycle(n) {
                    for (_, _, bytes) in records(&event) {
                        if *offset + bytes.len() as u64 > LAP {
                            *offset = 0;
                        }
                        file.write_all_at(bytes, *offset).unwrap();
                        *offset += bytes.len() as u64;
                    }
                    file.sync_data().unwrap();
                }
            });
        },
    );
    group.finish();
}

// ---------------------------------------------------------------------------
// replay
// ---------------------------------------------------------------------------

fn replay_sizes() -> Vec<u64> {
    if smoke() {
        vec![1_000]
    } else if std::env::var_os("BENCHMARK_QUICK").is_some() {
        vec![100_000]
    } else {
        vec![100_000, 1_000_000]
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
        // Built on first use, so that a run filtered to other groups skips it.
        let built = OnceCell::new();
        let store = || {
            built.get_or_init(|| common::build_store(&path, records / 2));
            path.as_path()
        };
        let replay_all = |ledger: &Ledger| {
            let mut delegations = 0u64;
            for delegation in ledger.replay() {
                black_box(delegation.unwrap());
                delegations += 1;
            }
            assert_eq!(delegations, records / 2);
        };
        // Opened once for both ledger benchmarks, and replayed once untimed (see
        // `warm`).
        let opened = OnceCell::new();
        let ledger = || {
            opened.get_or_init(|| {
                let ledger = buffered(store());
                replay_all(&ledger);
                ledger
            })
        };
        group.throughput(Throughput::Elements(records));
        // State rebuild: every delegation read and folded.
        group.bench_with_input(
            BenchmarkId::new("ledger_state_rebuild", records),
            &records,
            |b, _| {
                let ledger = ledger();
                b.iter(|| replay_all(ledger));
            },
        );
        // The full check: every record decoded, its chain hash recomputed, every
        // head checked against its history.
        group.bench_with_input(
            BenchmarkId::new("ledger_audit_full_check", records),
            &records,
            |b, &records| {
                let ledger = ledger();
                b.iter(|| {
                    let verdict = ledger.audit().unwrap();
                    assert!(verdict.is_clean(), "{}", verdict.to_plain());
                    assert_eq!(verdict.records, records);
                    black_box(verdict)
                });
            },
        );
        // The ledger lets go of the store before the raw side opens it.
        drop(opened);
        // Every entry of every tree of the same store, key and value touched,
        // nothing decoded.
        let raw = OnceCell::new();
        group.bench_with_input(
            BenchmarkId::new("raw_sled_iter", records),
            &records,
            |b, &records| {
                let db = raw.get_or_init(|| {
                    let db = raw_sled(store());
                    common::iterate_all(&db);
                    db
                });
                b.iter(|| {
                    // Store format 3 holds a delegation's records in one entry:
                    // at least one entry per two records here.
                    let (entries, _) = common::iterate_all(db);
                    assert!(entries * 2 >= records);
                });
            },
        );
    }
    group.finish();
}

// ---------------------------------------------------------------------------
// status
// ---------------------------------------------------------------------------

/// The raw side of `status`: the store opened once, and the keys of each
/// delegation's head and last record, as the ledger stored them.
struct RawStatus {
    _db: sled::Db,
    heads: Vec<(sled::Tree, Vec<u8>)>,
    last: Vec<(sled::Tree, Vec<u8>)>,
}

fn status(c: &mut Criterion) {
    let delegations: u64 = if smoke() { 500 } else { 50_000 };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log");
    let ids: Vec<_> = (0..delegations).map(id).collect();
    // Built on first use, so that a run filtered to other groups skips it.
    let built = OnceCell::new();
    let store = || built.get_or_init(|| capture(&path, delegations));
    // Consecutive lookups touch different delegations.
    let stride = |n: &mut usize| {
        *n = (*n + 7919) % ids.len();
        *n
    };
    let mut group = c.benchmark_group("status");
    group.throughput(Throughput::Elements(1));
    // Each side opens the store once and reads every key once, untimed (see
    // `warm`).
    let ledger = OnceCell::new();
    group.bench_function("ledger", |b| {
        let ledger = ledger.get_or_init(|| {
            store();
            let ledger = buffered(&path);
            warm(|| ids.iter().for_each(|id| drop(ledger.status(id).unwrap())));
            ledger
        });
        let mut n = 0usize;
        b.iter(|| black_box(ledger.status(&ids[stride(&mut n)]).unwrap()));
    });
    // The ledger lets go of the store before the raw side opens it.
    drop(ledger);
    let raw = OnceCell::new();
    let raw = || {
        raw.get_or_init(|| {
            let captured = store();
            let db = raw_sled(&path);
            let keys = |key: &dyn Fn(u64) -> (usize, Vec<u8>)| -> Vec<(sled::Tree, Vec<u8>)> {
                (0..delegations)
                    .map(|n| {
                        let (tree, key) = key(n);
                        (db.open_tree(&captured.trees[tree]).unwrap(), key)
                    })
                    .collect()
            };
            let heads = keys(&|n| captured.head(n));
            // Store format 3 keeps records inside their delegation's value: no
            // key of their own to get.
            let last = if captured.last_record(0).is_some() {
                keys(&|n| captured.last_record(n).unwrap())
            } else {
                Vec::new()
            };
            warm(|| {
                for (tree, key) in heads.iter().chain(&last) {
                    tree.get(key).unwrap().unwrap();
                }
            });
            RawStatus {
                _db: db,
                heads,
                last,
            }
        })
    };
    // The goal's baseline: a raw `get` of the delegation's head (the key its
    // outcome rewrote), the bytes as the ledger stored them.
    group.bench_function("raw_sled_get_head", |b| {
        let heads = &raw().heads;
        let mut n = 0usize;
        b.iter(|| {
            let (tree, key) = &heads[stride(&mut n)];
            black_box(tree.get(key).unwrap().unwrap())
        });
    });
    // The baseline of the first report: a raw `get` of the delegation's last
    // record, where it has a key of its own (not in store format 3).
    if captured().last_record(0).is_none() {
        group.finish();
        return;
    }
    group.bench_function("raw_sled_get_last_record", |b| {
        let last = &raw().last;
        let mut n = 0usize;
        b.iter(|| {
            let (tree, key) = &last[stride(&mut n)];
            black_box(tree.get(key).unwrap().unwrap())
        });
    });
    group.finish();
}

/// Runs `read` once, untimed, over every key a read benchmark will touch.
///
/// Criterion runs a benchmark's closure afresh for every sample (and many times
/// while warming up), so a store opened inside it starts each sample with sled's
/// cache cold, and a read benchmark then times sled loading pages from the file
/// as much as the read itself (a raw `get` measured 20–60 µs that way, against
/// about 2 µs warm). The read benchmarks open their store once, outside the
/// samples, and read everything once first, the ledger and its baselines alike:
/// what they time is a read from a store in use.
fn warm(read: impl FnOnce()) {
    read();
}

// ---------------------------------------------------------------------------
// SQLite
// ---------------------------------------------------------------------------

/// SQLite as a careful user would keep delegations: a row per delegation, updated
/// in place, and every event appended to an `events` table in the same
/// transaction. Each event is its own `BEGIN IMMEDIATE` transaction, as each
/// `record` is its own acknowledgement.
struct Sqlite {
    conn: rusqlite::Connection,
}

impl Sqlite {
    /// Creates the schema in a new WAL database at `path`.
    fn create(path: &Path) {
        let conn = rusqlite::Connection::open(path).unwrap();
        conn.pragma_update(None, "journal_mode", "WAL").unwrap();
        conn.execute_batch(
            "CREATE TABLE delegations (
                id TEXT PRIMARY KEY,
                status TEXT NOT NULL,
                source TEXT NOT NULL,
                target TEXT NOT NULL,
                reason TEXT,
                http_status INTEGER,
                rpc_code INTEGER,
                error_detail TEXT,
                queued_at TEXT NOT NULL,
                settled_at TEXT
            );
            CREATE TABLE events (
                delegation TEXT NOT NULL REFERENCES delegations (id),
                seq INTEGER NOT NULL,
                event TEXT NOT NULL,
                at TEXT NOT NULL,
                body TEXT NOT NULL,
                PRIMARY KEY (delegation, seq)
            );",
        )
        .unwrap();
    }

    /// A connection of its own to the database at `path`.
    fn open(path: &Path, synchronous: &str) -> Self {
        let conn = rusqlite::Connection::open(path).unwrap();
        conn.pragma_update(None, "journal_mode", "WAL").unwrap();
        conn.pragma_update(None, "synchronous", synchronous)
            .unwrap();
        conn.busy_timeout(Duration::from_secs(60)).unwrap();
        Sqlite { conn }
    }

    fn append_event(tx: &rusqlite::Transaction<'_>, id: &str, seq: u64, event: &Event, at: &str) {
        tx.prepare_cached(
            "INSERT INTO events (delegation, seq, event, at, body) VALUES (?1, ?2, ?3, ?4, ?5)",
        )
        .unwrap()
        .execute(rusqlite::params![
            id,
            seq,
            event.kind().as_str(),
            at,
            serde_json::to_string(event).unwrap()
        ])
        .unwrap();
    }

    /// Delegation `n`: `queued`, then its outcome, each committed on its own.
    fn lifecycle(&mut self, n: u64) {
        let id = id(n);
        let id = id.as_str();
        let at = clock().now().to_string();
        let immediate = rusqlite::TransactionBehavior::Immediate;

        let event = queued();
        let Event::Queued(q) = &event else {
            unreachable!()
        };
        let tx = self.conn.transaction_with_behavior(immediate).unwrap();
        tx.prepare_cached(
            "INSERT INTO delegations (id, status, source, target, queued_at)
             VALUES (?1, 'queued', ?2, ?3, ?4)",
        )
        .unwrap()
        .execute(rusqlite::params![id, q.source, q.target, at])
        .unwrap();
        Self::append_event(&tx, id, 1, &event, &at);
        tx.commit().unwrap();

        let event = outcome(n);
        let (status, reason, http_status, rpc_code, detail) = match &event {
            Event::Delivered(d) => ("delivered", None, d.http_status, None, None),
            Event::Failed(f) => (
                "failed",
                Some(f.reason.code().as_str()),
                f.reason.http_status(),
                f.reason.rpc_code(),
                f.detail.as_deref(),
            ),
            Event::Queued(_) => unreachable!(),
        };
        let tx = self.conn.transaction_with_behavior(immediate).unwrap();
        let changed = tx
            .prepare_cached(
                "UPDATE delegations
                 SET status = ?2, reason = ?3, http_status = ?4, rpc_code = ?5,
                     error_detail = ?6, settled_at = ?7
                 WHERE id = ?1 AND status = 'queued'",
            )
            .unwrap()
            .execute(rusqlite::params![
                id,
                status,
                reason,
                http_status,
                rpc_code,
                detail,
                at
            ])
            .unwrap();
        assert_eq!(changed, 1);
        Self::append_event(&tx, id, 2, &event, &at);
        tx.commit().unwrap();
    }
}

fn sqlite(c: &mut Criterion) {
    let mut group = c.benchmark_group("sqlite");
    // One element is one whole lifecycle: two acknowledged events.
    group.throughput(Throughput::Elements(1));
    group.sample_size(10);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(4));
    for (mode, synchronous) in [("buffered", "NORMAL"), ("durable", "FULL")] {
        for writers in [1usize, 64] {
            // The ledger: `writers` threads sharing one ledger.
            group.bench_with_input(
                BenchmarkId::new(format!("ledger_{mode}"), writers),
                &writers,
                |b, &writers| {
                    let dir = tempfile::tempdir().unwrap();
                    let path = dir.path().join("log");
                    let ledger: Ledger = if mode == "durable" {
                        durable(&path)
                    } else {
                        buffered(&path)
                    };
                    lifecycles_on_threads(b, writers, |_, n| record_lifecycle(&ledger, n));
                },
            );
            // SQLite: `writers` threads, each with its own connection to the same
            // file.
            group.bench_with_input(
                BenchmarkId::new(
                    format!("sqlite_wal_{}", synchronous.to_lowercase()),
                    writers,
                ),
                &writers,
                |b, &writers| {
                    let dir = tempfile::tempdir().unwrap();
                    let path = dir.path().join("log.db");
                    Sqlite::create(&path);
                    let connections: Vec<Mutex<Sqlite>> = (0..writers)
                        .map(|_| Mutex::new(Sqlite::open(&path, synchronous)))
                        .collect();
                    lifecycles_on_threads(b, writers, |t, n| {
                        connections[t].lock().unwrap().lifecycle(n);
                    });
                },
            );
        }
    }
    group.finish();
}

// ---------------------------------------------------------------------------
// The machine
// ---------------------------------------------------------------------------

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

fn main() {
    common::load_average("ledger", "start");
    benches();
    Criterion::default().configure_from_args().final_summary();
    common::load_average("ledger", "end");
}
