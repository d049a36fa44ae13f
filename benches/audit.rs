//! Throughput and peak memory of `verify` (JSON Lines) and `audit` (sled store),
//! against a raw sled iteration over the same store.
//!
//! Logs are generated here, not committed: N records are N/2 delegations, each
//! `queued` then an outcome (alternately `delivered` and `failed`), recorded with
//! the ledger's normal API (`Ledger::record`, buffered, on a manual clock that moves
//! 1 ms per delegation), then exported with `Ledger::export` for `verify`.
//! Peak memory is measured with a counting global allocator: the peak of live heap
//! bytes during the call, above what was live before it.
//!
//! `cargo bench --bench audit` runs criterion at 10k and 100k records, then one
//! timed pass and a peak-memory figure at 10k, 100k and 1M, and the ratios of the
//! 1M peaks to the 100k ones (`AUDIT_BENCH=memory` for the second part alone). The
//! floor for `audit` is a raw sled iteration of every tree of the store, with the
//! same page cache; sled's page cache grows with what is read, so `audit - raw` is
//! the audit's own memory. The load average is printed to stderr at the start and
//! the end; `-- --test` runs everything over tiny logs and prints nothing extra.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    missing_docs
)]

#[path = "common/mod.rs"]
mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput};
use delegation_log::ledger::Options;
use delegation_log::store::Sled;
use delegation_log::{Durability, Ledger, ManualClock, audit};
use peak_alloc::PeakAlloc;

use common::smoke;

#[global_allocator]
static PEAK: PeakAlloc = PeakAlloc;

struct Fixture {
    _dir: tempfile::TempDir,
    log: std::path::PathBuf,
    db: std::path::PathBuf,
}

/// `n` records (`n / 2` lifecycles) recorded by the ledger into a store, and
/// exported from it as JSON Lines.
fn fixture(n: usize) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log.jsonl");
    let db = dir.path().join("db");
    let clock = ManualClock::default();
    let ledger = Ledger::open_with(
        &db,
        Options::new()
            .durability(Durability::Buffered)
            .clock(clock.clone()),
    )
    .unwrap();
    for d in 0..(n / 2) as u64 {
        common::record_lifecycle(&ledger, d);
        clock.advance(Duration::from_millis(1));
    }
    ledger.flush().unwrap();
    let exported = ledger.export(std::fs::File::create(&log).unwrap()).unwrap();
    assert_eq!(exported.records, n as u64);
    drop(ledger);
    Fixture { _dir: dir, log, db }
}

fn verify(path: &Path) -> u64 {
    let file = std::fs::File::open(path).unwrap();
    let verdict = audit::verify(file, &ManualClock::default()).unwrap();
    assert!(verdict.is_clean());
    verdict.records
}

fn audit_ledger(ledger: &Ledger) -> u64 {
    let verdict = ledger.audit().unwrap();
    assert!(verdict.is_clean());
    verdict.records
}

/// The floor: iterate every tree of the store, touching every key and value,
/// decoding nothing, with the same page cache as `audit_path`, so that
/// "audit − raw" is the audit's own memory.
fn raw_iteration(path: &Path) -> u64 {
    let db = common::support::raw_sled_with_cache(path, Sled::SCAN_CACHE_BYTES);
    common::iterate_all(&db).1
}

/// Peak live heap bytes above the starting level while `f` runs.
fn peak<T>(f: impl FnOnce() -> T) -> (T, usize, f64) {
    let before = PEAK.current_usage();
    PEAK.reset_peak_usage();
    let start = Instant::now();
    let out = f();
    let seconds = start.elapsed().as_secs_f64();
    (out, PEAK.peak_usage().saturating_sub(before), seconds)
}

/// `10000` as `10k`, `1000000` as `1M`.
fn size(n: usize) -> String {
    match n {
        n if n >= 1_000_000 && n.is_multiple_of(1_000_000) => format!("{}M", n / 1_000_000),
        n if n >= 1_000 && n.is_multiple_of(1_000) => format!("{}k", n / 1_000),
        n => n.to_string(),
    }
}

/// One pass of each at every size, with its peak memory, then the growth of the
/// peaks from the next-to-largest size (100k) to the largest (1M). Silent in a
/// smoke run, which runs the same code over two tiny logs.
fn memory_report() {
    let quiet = smoke();
    let say = |line: String| {
        if !quiet {
            println!("{line}");
        }
    };
    say("\n== one pass each, peak live heap above the starting level".to_owned());
    let mut rows = Vec::new();
    let sizes: &[usize] = if quiet {
        &[1_000, 2_000]
    } else {
        &[10_000, 100_000, 1_000_000]
    };
    for &n in sizes {
        let fixture = fixture(n);
        let (_, verify_peak, verify_s) = peak(|| verify(&fixture.log));
        let (_, raw_peak, raw_s) = peak(|| raw_iteration(&fixture.db));
        // As the CLI audits: `audit_path`, which caps sled's page cache.
        let (records, audit_peak, audit_s) = peak(|| {
            let verdict = audit::audit_path(&fixture.db, &ManualClock::default()).unwrap();
            assert!(verdict.is_clean());
            verdict.records
        });
        assert_eq!(records, n as u64);
        say(format!(
            "{n:>9} records | verify {:>8.0} rec/s peak {:>10} B | audit {:>8.0} rec/s peak {:>10} B | raw sled iter {:>8.0} rec/s peak {:>10} B | audit - raw {:>10} B",
            n as f64 / verify_s,
            verify_peak,
            n as f64 / audit_s,
            audit_peak,
            n as f64 / raw_s,
            raw_peak,
            audit_peak as i64 - raw_peak as i64,
        ));
        rows.push((n, verify_peak, audit_peak, raw_peak));
    }
    let (small, v_small, a_small, r_small) = rows[rows.len() - 2];
    let (large, v_large, a_large, r_large) = rows[rows.len() - 1];
    let ratio = |large: usize, small: usize| large as f64 / small as f64;
    say(format!(
        "peak at {} / peak at {}: audit {:.3} (goal <= 1.2), raw sled iteration {:.3}, verify {:.3}, audit above raw {:.3}",
        size(large),
        size(small),
        ratio(a_large, a_small),
        ratio(r_large, r_small),
        ratio(v_large, v_small),
        (a_large as f64 - r_large as f64) / (a_small as f64 - r_small as f64),
    ));
}

fn throughput(c: &mut Criterion) {
    let sizes: &[usize] = if smoke() {
        &[1_000]
    } else {
        &[10_000, 100_000]
    };
    for &n in sizes {
        let fixture = fixture(n);
        let mut group = c.benchmark_group("audit");
        group.sample_size(10);
        group.throughput(Throughput::Elements(n as u64));
        group.bench_with_input(BenchmarkId::new("verify", n), &fixture, |b, f| {
            b.iter(|| verify(&f.log))
        });
        // Both on a store opened once, with sled's default cache, and read once
        // untimed before their samples: criterion runs a benchmark's closure
        // afresh for every sample, so a store opened inside it would start each
        // sample cold (see `benches/ledger.rs`, `warm`).
        let ledger = std::cell::OnceCell::new();
        group.bench_with_input(BenchmarkId::new("audit", n), &fixture, |b, f| {
            let ledger = ledger.get_or_init(|| {
                let ledger = common::buffered(&f.db);
                audit_ledger(&ledger);
                ledger
            });
            b.iter(|| assert_eq!(audit_ledger(ledger), n as u64))
        });
        // The ledger lets go of the store before the raw side opens it.
        drop(ledger);
        let raw = std::cell::OnceCell::new();
        group.bench_with_input(BenchmarkId::new("raw_sled_iter", n), &fixture, |b, f| {
            let db = raw.get_or_init(|| {
                let db = common::support::raw_sled(&f.db);
                common::iterate_all(&db);
                db
            });
            b.iter(|| common::iterate_all(db))
        });
        group.finish();
    }
}

fn main() {
    common::load_average("audit", "start");
    // `AUDIT_BENCH=memory cargo bench --bench audit` runs only the memory report.
    if std::env::var("AUDIT_BENCH").as_deref() != Ok("memory") {
        let mut criterion = Criterion::default().configure_from_args();
        throughput(&mut criterion);
        criterion.final_summary();
    }
    memory_report();
    common::load_average("audit", "end");
}
