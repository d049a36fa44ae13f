//! A driver for profilers (callgrind, `perf record`), not a benchmark: it runs one
//! ledger operation in a loop, with nothing of criterion around it, so a profile
//! shows only the ledger. `BENCHMARKS.md` quotes its instruction counts.
//!
//! ```sh
//! cargo bench --bench profile --no-run   # prints the binary's path
//! P=target/release/deps/profile-…        # that path
//! $P build  /tmp/store 5000              # 5000 delegations, 10k records (untimed setup)
//! CG="valgrind --tool=callgrind --toggle-collect=*measured_*"
//! $CG $P replay /tmp/store 0;      $CG $P raw-iter /tmp/store 0
//! $CG $P status /tmp/store 5000;   $CG $P raw-get /tmp/store 5000
//! $CG $P record /tmp/new1 2000;    $CG $P raw-insert /tmp/new2 2000
//! ```
//!
//! Run with no command (as `cargo bench` does), it prints this usage and exits;
//! under `-- --test`, it exits silently.
#![allow(missing_docs)]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::path::Path;
#[path = "common/mod.rs"]
mod common;

use delegation_log::store;
use delegation_log::{
    ChainHash, Clock as _, DelegationId, Durability, Ledger, ManualClock, Options, Record, envelope,
};

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

fn open_raw(path: &Path) -> (sled::Db, sled::Tree) {
    let db = common::open_raw(path, None);
    let records = db.open_tree("records").unwrap();
    (db, records)
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
fn measured_raw_get(records: &sled::Tree, keys: &[Vec<u8>]) {
    for key in keys {
        std::hint::black_box(records.get(key).unwrap().unwrap());
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

#[inline(never)]
fn measured_raw_insert(records: &sled::Tree, batch: &[(Vec<u8>, Vec<u8>)]) {
    for (key, bytes) in batch {
        records.insert(key.as_slice(), bytes.as_slice()).unwrap();
    }
}

/// The keys and bytes the ledger writes for `n` lifecycles.
fn lifecycle_bytes(n: u64) -> Vec<(Vec<u8>, Vec<u8>)> {
    let at = ManualClock::default().now();
    let mut out = Vec::new();
    for i in 0..n {
        let id = id(i);
        let mut previous = ChainHash::GENESIS;
        for (seq, event) in [(1, queued()), (2, outcome(i))] {
            let mut record = Record {
                delegation: id.clone(),
                seq,
                event,
                at,
                hash: None,
            };
            previous = record.chain_hash(&previous);
            record.hash = Some(previous);
            out.push((store::key::record(&id, seq), envelope::encode(&record)));
        }
    }
    out
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (command, path, n) = match args.as_slice() {
        [command, path, n] => (command.as_str(), Path::new(path), n.parse::<u64>().unwrap()),
        // A smoke run (`-- --test`) prints nothing.
        _ if common::smoke() => return,
        _ => {
            println!(
                "usage: profile (build|replay|raw-iter|status|raw-get|record|raw-insert) PATH N"
            );
            return;
        }
    };
    let ids = || (0..n).map(id).collect::<Vec<_>>();
    match command {
        "build" => build(path, n),
        "replay" => println!("{} delegations", measured_replay(&open_ledger(path))),
        "raw-iter" => println!("{} entries", measured_raw_iter(&open_raw(path).0)),
        "status" => measured_status(&open_ledger(path), &ids()),
        "raw-get" => {
            let keys: Vec<Vec<u8>> = ids().iter().map(|id| store::key::record(id, 2)).collect();
            measured_raw_get(&open_raw(path).1, &keys);
        }
        "record" => measured_record(&Ledger::open_with(path, buffered()).unwrap(), n),
        "raw-insert" => measured_raw_insert(&open_raw(path).1, &lifecycle_bytes(n)),
        other => println!("unknown command `{other}`"),
    }
}
