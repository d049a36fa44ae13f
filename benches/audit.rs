//! Throughput and peak memory of `verify` (JSON Lines) and `audit` (sled store),
//! against a raw sled iteration over the same records.
//!
//! Logs are generated here, not committed: N records are N/2 delegations, each
//! `queued` then `delivered`, hashed, in the store's order (what `export` writes).
//! Peak memory is measured with a counting global allocator: the peak of live heap
//! bytes during the call, above what was live before it.
//!
//! `cargo bench --bench audit` runs criterion at 10k and 100k records, then one
//! timed pass and a peak-memory figure at 10k, 100k and 1M
//! (`AUDIT_BENCH=memory` for the second part alone). The floor for `audit` is a
//! raw sled iteration of the two trees it reads; sled's page cache grows with
//! what is read, so `audit - raw` is the audit's own memory.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    missing_docs
)]

use std::io::{BufWriter, Write};
use std::path::Path;
use std::time::Instant;

use criterion::{BenchmarkId, Criterion, Throughput};
use delegation_log::audit;
use delegation_log::store::{Expect, Head, Sled, Store};
use delegation_log::{ChainHash, DelegationId, Event, ManualClock, Record, Timestamp};
use peak_alloc::PeakAlloc;

#[global_allocator]
static PEAK: PeakAlloc = PeakAlloc;

struct Fixture {
    _dir: tempfile::TempDir,
    log: std::path::PathBuf,
    db: std::path::PathBuf,
}

fn records(n: usize) -> impl Iterator<Item = Record> {
    (0..n / 2).flat_map(|d| {
        let id: DelegationId = format!("delegation-{d:08}").parse().unwrap();
        let at = Timestamp::from_unix_nanos(1_780_795_927_000_000_000 + d as i64 * 1_000_000);
        let mut queued = Record {
            delegation: id.clone(),
            seq: 1,
            event: Event::queued("planner", "http://127.0.0.1:8080/a2a"),
            at,
            hash: None,
        };
        queued.hash = Some(queued.chain_hash(&ChainHash::GENESIS));
        let mut delivered = Record {
            delegation: id,
            seq: 2,
            event: Event::delivered(Some(200)).unwrap(),
            at,
            hash: None,
        };
        delivered.hash = Some(delivered.chain_hash(&queued.hash.unwrap()));
        [queued, delivered]
    })
}

fn fixture(n: usize) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log.jsonl");
    let db = dir.path().join("db");
    let mut out = BufWriter::new(std::fs::File::create(&log).unwrap());
    let store = Sled::open(&db).unwrap();
    for record in records(n) {
        serde_json::to_writer(&mut out, &record).unwrap();
        out.write_all(b"\n").unwrap();
        let head = Head {
            seq: record.seq,
            hash: record.hash.unwrap(),
        };
        let bytes = delegation_log::envelope::encode(&record);
        store
            .append(
                &record.delegation,
                Expect::after(record.seq - 1),
                &bytes,
                head,
            )
            .unwrap();
    }
    out.flush().unwrap();
    store.flush().unwrap();
    Fixture { _dir: dir, log, db }
}

fn verify(path: &Path) -> u64 {
    let file = std::fs::File::open(path).unwrap();
    let verdict = audit::verify(file, &ManualClock::default()).unwrap();
    assert!(verdict.is_clean());
    verdict.records
}

fn audit_store(store: &Sled) -> u64 {
    let verdict = audit::audit(store, &ManualClock::default()).unwrap();
    assert!(verdict.is_clean());
    verdict.records
}

/// The floor: iterate the raw trees an audit reads (records, and the heads it
/// checks them against), touching every value, decoding nothing, with the same
/// page cache as `audit_path`, so that "audit − raw" is the audit's own memory.
fn raw_iteration(path: &Path) -> u64 {
    let db = sled::Config::new()
        .path(path)
        .cache_capacity(Sled::SCAN_CACHE_BYTES)
        .open()
        .unwrap();
    let mut bytes = 0u64;
    for name in ["records", "heads"] {
        let tree = db.open_tree(name).unwrap();
        for item in tree.iter() {
            let (_, value) = item.unwrap();
            bytes += value.len() as u64;
        }
    }
    bytes
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

fn memory_report() {
    println!("\n== one pass each, peak live heap above the starting level");
    let mut rows = Vec::new();
    let sizes: &[usize] = if smoke() {
        &[1_000, 2_000]
    } else {
        &[10_000, 100_000, 1_000_000]
    };
    for &n in sizes {
        let fixture = fixture(n);
        let (_, verify_peak, verify_s) = peak(|| verify(&fixture.log));
        let (_, raw_peak, raw_s) = peak(|| raw_iteration(&fixture.db));
        // As the CLI audits: `audit_path`, which caps sled's page cache.
        let (_, audit_peak, audit_s) = peak(|| {
            let verdict = audit::audit_path(&fixture.db, &ManualClock::default()).unwrap();
            assert!(verdict.is_clean());
            verdict.records
        });
        println!(
            "{n:>9} records | verify {:>8.0} rec/s peak {:>10} B | audit {:>8.0} rec/s peak {:>10} B | raw sled iter {:>8.0} rec/s peak {:>10} B | audit - raw {:>10} B",
            n as f64 / verify_s,
            verify_peak,
            n as f64 / audit_s,
            audit_peak,
            n as f64 / raw_s,
            raw_peak,
            audit_peak as i64 - raw_peak as i64,
        );
        rows.push((n, verify_peak, audit_peak, raw_peak));
    }
    let (_, v100k, a100k, r100k) = rows[rows.len() - 2];
    let (_, v1m, a1m, r1m) = rows[rows.len() - 1];
    println!(
        "ratios largest / next: verify {:.3}, audit {:.3}, raw sled iteration {:.3}, audit above raw {:.3}",
        v1m as f64 / v100k as f64,
        a1m as f64 / a100k as f64,
        r1m as f64 / r100k as f64,
        (a1m as f64 - r1m as f64) / (a100k as f64 - r100k as f64),
    );
}

/// Whether this is a smoke run (`cargo bench -- --test`), where logs stay tiny.
fn smoke() -> bool {
    std::env::args().any(|arg| arg == "--test")
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
        let store = Sled::open(&fixture.db).unwrap();
        group.bench_with_input(BenchmarkId::new("audit", n), &store, |b, s| {
            b.iter(|| audit_store(s))
        });
        drop(store);
        group.bench_with_input(BenchmarkId::new("raw_sled_iter", n), &fixture, |b, f| {
            b.iter(|| raw_iteration(&f.db))
        });
        group.finish();
    }
}

fn main() {
    // `AUDIT_BENCH=memory cargo bench --bench audit` runs only the memory report.
    if std::env::var("AUDIT_BENCH").as_deref() != Ok("memory") {
        let mut criterion = Criterion::default().configure_from_args();
        throughput(&mut criterion);
        criterion.final_summary();
    }
    memory_report();
}
