//! `pending` and `dead` from the index, against a full scan of the log (the
//! baseline), on one sled store of many delegations of which a few hundred are
//! open and a couple hundred dead.
//!
//! The store is built with the ledger's own API (`record`, `settle`, `retry`,
//! buffered, on a manual clock), so its hints are the ones live writes leave.
//! Its size is `PENDING_BENCH_N` delegations if set; otherwise 1,000,000 if the
//! machine is quiet (`/proc/loadavg` 1-minute average below 2) and 100,000 if
//! not (said on stderr); `-- --test` (a smoke run) uses 3,000. Of them, 300 stay
//! open (100 of those are retries waiting for a `not_before`), 200 are dead
//! (100 plain failures, 100 retries that failed again), and the rest delivered.
//!
//! It prints the ratios first (the best of three timed passes of each), then runs
//! criterion on the same store, with the load average at the start and the end.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    missing_docs
)]

#[path = "common/mod.rs"]
mod common;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use criterion::Criterion;
use delegation_log::event::{Failed, Queued};
use delegation_log::ledger::Options;
use delegation_log::lifecycle::State;
use delegation_log::{
    Clock, DelegationId, Durability, Event, FailureReason, Ledger, ManualClock, Timestamp,
};

use common::{load_average, smoke};

const OPEN: u64 = 300;
const DEAD: u64 = 200;

fn size() -> u64 {
    if let Some(n) = std::env::var("PENDING_BENCH_N")
        .ok()
        .and_then(|n| n.parse().ok())
    {
        return n;
    }
    if smoke() {
        return 3_000;
    }
    let one_minute: f64 = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|text| text.split_whitespace().next()?.parse().ok())
        .unwrap_or(f64::MAX);
    if one_minute < 2.0 {
        1_000_000
    } else {
        eprintln!(
            "[pending] load average {one_minute} is not below 2: building 100,000 \
             delegations, not 1,000,000 (set PENDING_BENCH_N to choose)"
        );
        100_000
    }
}

fn id(n: u64) -> DelegationId {
    common::id(n)
}

/// The store: `n` delegations; every `n / (OPEN + DEAD)`-th is left open or dead.
fn build(n: u64) -> (tempfile::TempDir, Ledger) {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::default();
    let ledger = Ledger::open_with(
        dir.path().join("db"),
        Options::new()
            .durability(Durability::Buffered)
            .clock(clock.clone()),
    )
    .unwrap();
    let every = (n / (OPEN + DEAD)).max(1);
    let failed = || Failed {
        reason: FailureReason::HttpStatus(503),
        detail: Some("busy".to_owned()),
    };
    let started = Instant::now();
    let mut special = 0u64;
    for i in 0..n {
        let id = id(i);
        ledger.record(&id, common::queued()).unwrap();
        clock.advance(Duration::from_millis(1));
        if i % every != 0 || special >= OPEN + DEAD {
            ledger
                .settle(&id, Event::delivered(Some(200)).unwrap())
                .unwrap();
            continue;
        }
        let retry: DelegationId = format!("{id}.r1").parse().unwrap();
        match special % 5 {
            // Open, in flight.
            0 | 1 => {}
            // Open, a retry waiting.
            2 => {
                let later = clock.now().unix_nanos().unwrap() + 3_600_000_000_000;
                let queued = Queued {
                    not_before: Some(Timestamp::from_unix_nanos(later)),
                    ..Queued::new("planner", "http://127.0.0.1:8080/a2a")
                };
                ledger.retry(&id, failed(), &retry, queued).unwrap();
            }
            // Dead, plainly.
            3 => {
                ledger.settle(&id, Event::Failed(failed())).unwrap();
            }
            // Dead after a retry.
            _ => {
                let queued = Queued::new("planner", "http://127.0.0.1:8080/a2a");
                ledger.retry(&id, failed(), &retry, queued).unwrap();
                ledger.settle(&retry, Event::Failed(failed())).unwrap();
            }
        }
        special += 1;
    }
    ledger.store().flush().unwrap();
    if !smoke() {
        eprintln!(
            "[pending] built {n} delegations in {:.1?}",
            started.elapsed()
        );
    }
    (dir, ledger)
}

/// `pending` by a scan: every delegation still queued.
fn pending_by_scan(ledger: &Ledger) -> usize {
    ledger.queued().unwrap().len()
}

/// `dead` by a scan: every delegation failed and not retried.
fn dead_by_scan(ledger: &Ledger) -> usize {
    let mut failed = HashSet::new();
    let mut retried = HashSet::new();
    for delegation in ledger.replay() {
        let delegation = delegation.unwrap();
        if let Some(original) = delegation.retry_of {
            retried.insert(original);
        }
        if delegation.state == State::Failed {
            failed.insert(delegation.id);
        }
    }
    failed.difference(&retried).count()
}

/// The best of three passes of `run`.
fn best(run: impl Fn() -> usize) -> (Duration, usize) {
    (0..3)
        .map(|_| {
            let started = Instant::now();
            let found = run();
            (started.elapsed(), found)
        })
        .min_by_key(|(took, _)| *took)
        .unwrap()
}

fn main() {
    load_average("pending", "start");
    let n = size();
    let (_dir, ledger) = build(n);
    let (index_pending, found) = best(|| ledger.pending(None).unwrap().len());
    let (scan_pending, scanned) = best(|| pending_by_scan(&ledger));
    assert_eq!(found, scanned, "pending: the index and the scan disagree");
    let (index_dead, dead) = best(|| ledger.dead().unwrap().len());
    let (scan_dead, dead_scanned) = best(|| dead_by_scan(&ledger));
    assert_eq!(dead, dead_scanned, "dead: the index and the scan disagree");
    if !smoke() {
        for (what, found, index, scan) in [
            ("pending", found, index_pending, scan_pending),
            ("dead", dead, index_dead, scan_dead),
        ] {
            eprintln!(
                "[pending] {what} over {n} delegations ({found} listed): the scan takes {:.0}x \
                 the index's time (index {index:.2?}, scan {scan:.2?}, best of 3)",
                scan.as_secs_f64() / index.as_secs_f64().max(1e-9),
            );
        }
    }

    let mut criterion = Criterion::default().configure_from_args().sample_size(10);
    let mut group = criterion.benchmark_group(format!("pending-{n}"));
    group.bench_function("pending-index", |b| {
        b.iter(|| ledger.pending(None).unwrap().len())
    });
    group.bench_function("dead-index", |b| b.iter(|| ledger.dead().unwrap().len()));
    if n <= 100_000 || smoke() {
        group.bench_function("pending-scan", |b| b.iter(|| pending_by_scan(&ledger)));
        group.bench_function("dead-scan", |b| b.iter(|| dead_by_scan(&ledger)));
    }
    group.finish();
    criterion.final_summary();
    load_average("pending", "end");
}
