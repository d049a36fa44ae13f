//! A driver for profilers (callgrind, `perf record`), not a benchmark: it runs one
//! ledger operation in a loop, with nothing of criterion around it, so a profile
//! shows only the ledger. `BENCHMARKS.md` quotes its instruction counts.
//!
//! The raw commands write and read exactly what the ledger writes (each record and
//! its head, the same keys and bytes), captured from a scratch store the ledger
//! wrote, as `benches/ledger.rs`'s baselines are (`benches/common/capture.rs`).
//!
//! ```sh
//! cargo bench --bench profile --no-run   # prints the binary's path
//! P=target/release/deps/profile-…        # that path
//! $P build  /tmp/store 5000              # 5000 delegations, 10k records (untimed setup)
//! CG="valgrind --tool=callgrind --toggle-collect=*measured_*"
//! $CG $P replay /tmp/store 0;      $CG $P raw-iter /tmp/store 0
//! $CG $P audit /tmp/store 0
//! $CG $P status /tmp/store 5000;   $CG $P raw-get /tmp/store 5000
//! $CG $P record /tmp/new1 2000;    $CG $P raw-insert /tmp/new2 2000
//! $CG $P raw-batch /tmp/new3 2000; $CG $P raw-exact /tmp/new4 2000
//! ```
//!
//! `dispatch-memory` runs N whole lifecycles through a dispatcher over an
//! in-memory ledger, one at a time, on a 2-worker runtime (the loop of
//! `benches/dispatch.rs`'s overhead group), and `ledger-memory` the same
//! lifecycles with the bare ledger; each prints the wall clock per lifecycle
//! (PATH is unused). Under callgrind, take the difference of two N to cancel
//! the setup; under `perf stat`, read the context switches.
//!
//! `record-durable-8` and `-64` record durably on 8 or 64 threads and print the
//! rate and the syncs it took (group commit). `status` and `raw-get` first make an unmeasured pass over the same keys, so
//! that sled's cache is as warm as in criterion's runs. `raw-get` gets each
//! delegation's head (the key `status` reads); `raw-insert` inserts each event's
//! record and head, one `insert` each; `raw-batch` writes them as one
//! `apply_batch` per event; `raw-exact` inserts exactly the keys and values the
//! ledger wrote (in store format 3, one insert of the delegation's key per
//! event). Run with no command (as `cargo bench` does), it prints this usage and
//! exits; under `-- --test`, it exits silently.
#![allow(missing_docs)]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::path::Path;
#[path = "common/mod.rs"]
mod common;

use delegation_log::ledger::Options;
use delegation_log::{DelegationId, Durability, Ledger, ManualClock};

use common::capture::{Captured, Op, apply, apply_batched, capture};
use common::{id, outcome, queued};

fn buffered() -> Options {
    Options::new()
        .durability(Durability::Buffered)
        .clock(ManualClock::default())
}

/// `n` delegations, two records each, recorded with the ledger's normal API.
fn build(path: &Path, n: u64) {
    common::build_store(path, n);
}

fn open_ledger(path: &Path) -> Ledger {
    Ledger::open_with(path, buffered()).unwrap()
}

/// What the ledger writes for a lifecycle, captured from a scratch store (untimed).
fn captured() -> Captured {
    let dir = tempfile::tempdir().unwrap();
    capture(&dir.path().join("log"), 2)
}

// Each `measured_*` function is the part a profile should count: run callgrind
// with `--toggle-collect='*measured_*'` to leave out opening and setup.

#[inline(never)]
fn measured_replay(ledger: &Ledger) -> usize {
    let mut delegations = 0;
    for delegation in ledger.replay() {
        std::hint::black_box(delegation.unwrap());
        delegations += 1;
    }
    delegations
}

#[inline(never)]
fn measured_audit(ledger: &Ledger) -> u64 {
    let verdict = ledger.audit().unwrap();
    assert!(verdict.is_clean());
    verdict.records
}

/// Every entry of every tree, as `benches/ledger.rs`'s replay baseline.
#[inline(never)]
fn measured_raw_iter(db: &sled::Db) -> u64 {
    common::iterate_all(db).0
}

#[inline(never)]
fn measured_status(ledger: &Ledger, ids: &[DelegationId]) {
    for id in ids {
        std::hint::black_box(ledger.status(id).unwrap());
    }
}

#[inline(never)]
fn measured_raw_get(heads: &[(sled::Tree, Vec<u8>)]) {
    for (tree, key) in heads {
        std::hint::black_box(tree.get(key).unwrap().unwrap());
    }
}

#[inline(never)]
fn measured_record(ledger: &Ledger, n: u64) {
    for i in 0..n {
        let id = id(i);
        ledger.record(&id, queued()).unwrap();
        ledger.record(&id, outcome(i)).unwrap();
    }
}

/// `n` lifecycles, durable, on `threads` threads sharing one ledger (group
/// commit); prints the time and how many syncs of the data file they took.
#[inline(never)]
fn measured_record_durable(path: &Path, n: u64, threads: u64) {
    let store = std::sync::Arc::new(delegation_log::store::Sled::open(path).unwrap());
    let options = Options::new()
        .durability(Durability::Durable)
        .clock(ManualClock::default());
    let ledger = Ledger::with_store(store.clone(), options);
    let start = std::time::Instant::now();
    std::thread::scope(|scope| {
        for t in 0..threads {
            let ledger = &ledger;
            scope.spawn(move || {
                for i in (t..n).step_by(usize::try_from(threads).unwrap()) {
                    let id = id(i);
                    ledger.record(&id, queued()).unwrap();
                    ledger.record(&id, outcome(i)).unwrap();
                }
            });
        }
    });
    let elapsed = start.elapsed();
    println!(
        "{} records on {threads} threads in {elapsed:.2?}: {:.0} records/s, {} syncs",
        2 * n,
        2.0 * n as f64 / elapsed.as_secs_f64(),
        store.syncs()
    );
}

#[inline(never)]
fn measured_raw_write(trees: &[sled::Tree], events: &[Vec<Op>], write: fn(&[sled::Tree], &[Op])) {
    for event in events {
        write(trees, event);
    }
}

/// Runs `f` outside the measured part.
#[inline(never)]
fn warm_up(f: impl FnOnce()) {
    f();
}

/// Every event's writes for `n` lifecycles, in the order the ledger makes them.
fn events(captured: &Captured, n: u64) -> Vec<Vec<Op>> {
    (0..n).flat_map(|i| captured.lifecycle(i)).collect()
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (command, path, n) = match args.as_slice() {
        [command, path, n] => (command.as_str(), Path::new(path), n.parse::<u64>().unwrap()),
        // A smoke run (`-- --test`) prints nothing.
        _ if common::smoke() => return,
        _ => {
            println!(
                "usage: profile (build|replay|audit|raw-iter|status|raw-get|record|record-durable-1|record-durable-8|record-durable-64|raw-insert|raw-batch|raw-exact|dispatch-memory|ledger-memory) PATH N"
            );
            return;
        }
    };
    let ids = || (0..n).map(id).collect::<Vec<_>>();
    match command {
        "build" => build(path, n),
        "replay" => println!("{} delegations", measured_replay(&open_ledger(path))),
        "audit" => println!("{} records", measured_audit(&open_ledger(path))),
        "raw-iter" => println!(
            "{} entries",
            measured_raw_iter(&common::support::raw_sled(path))
        ),
        // Each after an unmeasured pass over the same keys, so that the profile,
        // like criterion's many iterations, sees sled's cache warm.
        "status" => {
            let (ledger, ids) = (open_ledger(path), ids());
            warm_up(|| ids.iter().for_each(|id| drop(ledger.status(id).unwrap())));
            measured_status(&ledger, &ids);
        }
        "raw-get" => {
            let captured = captured();
            let db = common::support::raw_sled(path);
            let heads: Vec<(sled::Tree, Vec<u8>)> = (0..n)
                .map(|i| {
                    let (tree, key) = captured.head(i);
                    (db.open_tree(&captured.trees[tree]).unwrap(), key)
                })
                .collect();
            warm_up(|| {
                for (tree, key) in &heads {
                    tree.get(key).unwrap().unwrap();
                }
            });
            measured_raw_get(&heads);
        }
        "record" => measured_record(&open_ledger(path), n),
        "record-durable-1" => measured_record_durable(path, n, 1),
        "record-durable-8" => measured_record_durable(path, n, 8),
        "record-durable-64" => measured_record_durable(path, n, 64),
        "raw-exact" => {
            let captured = captured();
            let events: Vec<Vec<Op>> = (0..n).flat_map(|i| captured.exact_lifecycle(i)).collect();
            let (_db, trees) = captured.raw(path);
            measured_raw_write(&trees, &events, apply);
        }
        "raw-insert" | "raw-batch" => {
            let captured = captured();
            let events = events(&captured, n);
            let (_db, trees) = captured.raw(path);
            let write = if command == "raw-insert" {
                apply
            } else {
                apply_batched
            };
            measured_raw_write(&trees, &events, write);
        }
        "dispatch-memory" => {
            let per = measured_dispatch_memory(n);
            println!("{n} lifecycles through the dispatcher, in memory: {per:.1} µs each");
        }
        "ledger-memory" => {
            let per = measured_ledger_memory(n);
            println!("{n} lifecycles through the bare ledger, in memory: {per:.1} µs each");
        }
        other => println!("unknown command `{other}`"),
    }
}

/// `n` whole lifecycles (`queued`, then `delivered`) through a dispatcher over an
/// in-memory ledger, one at a time, each awaited, on a 2-worker runtime as in
/// `benches/dispatch.rs`; answers the wall-clock µs per lifecycle.
#[inline(never)]
fn measured_dispatch_memory(n: u64) -> f64 {
    use delegation_log::dispatch::{Dispatcher, Request};
    use delegation_log::transport::Immediate;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let ledger = Ledger::with_store(
        std::sync::Arc::new(delegation_log::store::Memory::new()),
        Options::new(),
    );
    runtime.block_on(async {
        let dispatcher = Dispatcher::new(ledger, Immediate::accepting());
        let start = std::time::Instant::now();
        for _ in 0..n {
            let receipt = dispatcher
                .delegate(Request::new("bench", "in-process").task("review PR 42"))
                .await
                .unwrap();
            receipt.settled().await.unwrap();
        }
        let elapsed = start.elapsed();
        dispatcher.shutdown().await.unwrap();
        elapsed.as_secs_f64() * 1e6 / n as f64
    })
}

/// The same `n` lifecycles recorded with the bare in-memory ledger.
#[inline(never)]
fn measured_ledger_memory(n: u64) -> f64 {
    let ledger = Ledger::with_store(
        std::sync::Arc::new(delegation_log::store::Memory::new()),
        Options::new(),
    );
    let start = std::time::Instant::now();
    for i in 0..n {
        let id = id(i);
        ledger
            .record(&id, delegation_log::Event::queued("bench", "in-process"))
            .unwrap();
        ledger
            .record(&id, delegation_log::Event::delivered(Some(200)).unwrap())
            .unwrap();
    }
    start.elapsed().as_secs_f64() * 1e6 / n as f64
}
