//! What the bench targets share: the smoke-run switch, the load-average note, the
//! delegations they record, and opening stores (sled's own handle on one through
//! the tests' `support::raw_sled`). Each target includes this file with
//! `#[path = "common/mod.rs"] mod common;`, so not every target uses every item.
//!
//! Everything on the ledger's side goes through its public API (`Ledger::open_with`,
//! `record`, `status`, `replay`, `audit`, `export`), so the benches do not depend on
//! how the store lays out its keys.
#![allow(dead_code)]

pub mod capture;
// The tests' own helpers (ids, closed ports, sled's handle on a store's files).
#[path = "../../tests/support/mod.rs"]
pub mod support;

use std::path::Path;

use delegation_log::ledger::Options;
use delegation_log::{DelegationId, Durability, Event, FailureReason, Ledger, ManualClock};

/// Whether this is a smoke run (`cargo bench -- --test`, or `cargo test --benches
/// -- --test`): each benchmark runs once over tiny stores, and nothing extra is
/// printed.
pub fn smoke() -> bool {
    std::env::args().any(|arg| arg == "--test")
}

/// Prints the load average to stderr, with the time, outside smoke runs: call it at
/// the start and at the end of a run, so its figures can be read against the load.
pub fn load_average(bench: &str, when: &str) {
    if smoke() {
        return;
    }
    let load = std::fs::read_to_string("/proc/loadavg")
        .map(|text| text.trim().to_owned())
        .unwrap_or_else(|e| format!("unreadable ({e})"));
    eprintln!(
        "[{bench}] load average at {when} ({}): {load}",
        chrono::Utc::now().format("%Y-%m-%d %H:%M:%S UTC")
    );
}

/// Delegation `n`. Fixed width, so that no id is a prefix of another and the
/// digits can be found, and replaced, in a key (see `benches/ledger.rs`).
pub fn id(n: u64) -> DelegationId {
    format!("{ID_PREFIX}{n:0ID_DIGITS$}").parse().unwrap()
}

/// What every id starts with.
pub const ID_PREFIX: &str = "delegation-";

/// How many digits follow [`ID_PREFIX`].
pub const ID_DIGITS: usize = 10;

pub fn queued() -> Event {
    Event::queued("planner", "http://127.0.0.1:8080/a2a")
}

/// The outcome of delegation `n`: alternately `delivered` 200, and `failed` 503
/// with a detail.
pub fn outcome(n: u64) -> Event {
    if n.is_multiple_of(2) {
        Event::delivered(Some(200)).unwrap()
    } else {
        Event::failed(FailureReason::HttpStatus(503), Some("proxy busy".into())).unwrap()
    }
}

/// The clock every ledger runs on: stopped, so that the same events give the same
/// bytes.
pub fn clock() -> ManualClock {
    ManualClock::default()
}

pub fn open(path: &Path, durability: Durability) -> Ledger {
    Ledger::open_with(path, Options::new().durability(durability).clock(clock())).unwrap()
}

pub fn buffered(path: &Path) -> Ledger {
    open(path, Durability::Buffered)
}

pub fn durable(path: &Path) -> Ledger {
    open(path, Durability::Durable)
}

/// `queued`, then the outcome, for delegation `n`.
pub fn record_lifecycle(ledger: &Ledger, n: u64) {
    let id = id(n);
    ledger.record(&id, queued()).unwrap();
    ledger.record(&id, outcome(n)).unwrap();
}

/// Builds, untimed, a store of `delegations` whole lifecycles (two records each)
/// with the ledger's normal API, buffered, and closes it.
pub fn build_store(path: &Path, delegations: u64) {
    let ledger = buffered(path);
    for n in 0..delegations {
        record_lifecycle(&ledger, n);
    }
    ledger.flush().unwrap();
}

/// Every entry of every tree of `db`, touched: how many, and their bytes.
pub fn iterate_all(db: &sled::Db) -> (u64, u64) {
    let (mut entries, mut bytes) = (0u64, 0u64);
    for name in db.tree_names() {
        let tree = db.open_tree(name).unwrap();
        for item in tree.iter() {
            let (key, value) = item.unwrap();
            let (key, value) = std::hint::black_box((key, value));
            entries += 1;
            bytes += (key.len() + value.len()) as u64;
        }
    }
    (entries, bytes)
}
