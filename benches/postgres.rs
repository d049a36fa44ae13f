//! The ledger on PostgreSQL against raw SQL of the very same rows, on the same
//! server, in the same run (feature `postgres`, `DATABASE_URL` from
//! `bash .ci/postgres`):
//!
//! - `record`: [`Ledger::record`] of a `queued` (durable: one transaction, committed
//!   with `synchronous_commit = on`) against the same two rows (the record's bytes
//!   and its head's summary, as the ledger wrote them) inserted by hand in one
//!   transaction of prepared statements (`raw_insert_record_and_head`, equal
//!   atomicity: the goal's baseline), and against the record row alone in
//!   autocommit (`raw_insert_record`, the "single-row durable INSERT");
//! - `status`: [`Ledger::status`] against a prepared `SELECT` of the head row
//!   (`raw_select_head`).
//!
//! - `replay`: [`Ledger::replay`] of 500 settled delegations (two records
//!   each: the store's paged scan, decoded, folded and checked against each
//!   head) against one prepared `SELECT` of the same record and head rows in the
//!   same key order (`raw_select_records_and_heads`, nothing decoded).
//!
//! - `lease`: what a dispatcher's lease costs a delivery on PostgreSQL: the check
//!   before each send ([`Claim::may_deliver`](delegation_log::ledger::Claim::may_deliver),
//!   a local deadline: `lease_check_local`) against asking the server
//!   (`lease_check_server`, a prepared `SELECT lease_until > now()`), and the claim
//!   written before `queued` and released (`claim_and_release`, two
//!   statements; a dispatcher's outcome now ends its claim in the outcome's
//!   own statement, so only a refused `queued` pays the release) against
//!   `ledger_record_queued`.
//!
//! One writer at a time; the ratios are in `BENCHMARKS.md` ratios first. Run with
//! `cargo bench --features postgres --bench postgres`; `-- --test` runs each once.
//! Without `DATABASE_URL` it says how to start a server and measures nothing;
//! under `CI=true` that fails.
#![allow(missing_docs)]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

#[path = "../tests/pg_support/mod.rs"]
mod pg_support;

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};

use criterion::{Criterion, criterion_group};
use delegation_log::ledger::Options;
use delegation_log::{DelegationId, Event, Ledger};

fn id(prefix: &str, n: u64) -> DelegationId {
    format!("{prefix}-{n:08}").parse().unwrap()
}

fn queued() -> Event {
    Event::queued("planner", "http://127.0.0.1:8080/a2a")
}

/// The raw client, with the ledger's schema as its search path.
fn raw_client(schema: &pg_support::Schema) -> postgres::Client {
    let mut client = postgres::Client::connect(&schema.url, postgres::NoTls).unwrap();
    client
        .batch_execute(&format!(
            "SET search_path = {}; SET synchronous_commit = on;",
            schema.name
        ))
        .unwrap();
    client
}

fn benches(c: &mut Criterion) {
    let Some(schema) = pg_support::fresh("bench") else {
        return;
    };
    let ledger = Ledger::with_store(schema.store.clone(), Options::new());
    // One row of each kind as the ledger writes them, for the raw baselines.
    ledger.record(&id("sample", 0), queued()).unwrap();
    let mut client = raw_client(&schema);
    let row = client
        .query_one(
            "SELECT r.bytes, h.summary FROM records r JOIN heads h USING (delegation)",
            &[],
        )
        .unwrap();
    let (record, summary): (Vec<u8>, Vec<u8>) = (row.get(0), row.get(1));

    let mut group = c.benchmark_group("record");
    let (recorded, next) = (AtomicU64::new(0), AtomicU64::new(0));
    group.bench_function("ledger_record_queued", |b| {
        b.iter(|| {
            let n = recorded.fetch_add(1, Ordering::Relaxed);
            black_box(ledger.record(&id("ledger", n), queued()).unwrap());
        });
    });
    let insert_record = client
        .prepare("INSERT INTO records (delegation, seq, bytes) VALUES ($1, 1, $2)")
        .unwrap();
    let insert_head = client
        .prepare("INSERT INTO heads (delegation, seq, summary) VALUES ($1, 1, $2)")
        .unwrap();
    group.bench_function("raw_insert_record_and_head", |b| {
        b.iter(|| {
            let n = next.fetch_add(1, Ordering::Relaxed);
            let key = id("raw", n).as_str().as_bytes().to_vec();
            let mut tx = client.transaction().unwrap();
            tx.execute(&insert_record, &[&key, &record]).unwrap();
            tx.execute(&insert_head, &[&key, &summary]).unwrap();
            tx.commit().unwrap();
        });
    });
    group.bench_function("raw_insert_record", |b| {
        b.iter(|| {
            let n = next.fetch_add(1, Ordering::Relaxed);
            let key = id("single", n).as_str().as_bytes().to_vec();
            client.execute(&insert_record, &[&key, &record]).unwrap();
        });
    });
    group.finish();

    let mut group = c.benchmark_group("status");
    let written = recorded.load(Ordering::Relaxed).max(1);
    let read = AtomicU64::new(0);
    group.bench_function("ledger_status", |b| {
        b.iter(|| {
            let n = read.fetch_add(1, Ordering::Relaxed) % written;
            black_box(ledger.status(&id("ledger", n)).unwrap());
        });
    });
    let select_head = client
        .prepare("SELECT seq, summary FROM heads WHERE delegation = $1")
        .unwrap();
    group.bench_function("raw_select_head", |b| {
        b.iter(|| {
            let n = read.fetch_add(1, Ordering::Relaxed) % written;
            let key = id("ledger", n).as_str().as_bytes().to_vec();
            black_box(client.query_opt(&select_head, &[&key]).unwrap());
        });
    });
    group.finish();

    replay(c);

    let mut group = c.benchmark_group("lease");
    let lease = ledger
        .lease(std::time::Duration::from_secs(60))
        .unwrap()
        .unwrap();
    let held = ledger.claim_leased(&id("held", 0), Some(&lease)).unwrap();
    group.bench_function("lease_check_local", |b| {
        b.iter(|| black_box(held.may_deliver()));
    });
    let check = client
        .prepare("SELECT lease_until > now() FROM dispatchers WHERE id = $1")
        .unwrap();
    let owner = lease.owner().as_bytes().to_vec();
    group.bench_function("lease_check_server", |b| {
        b.iter(|| {
            let row = client.query_one(&check, &[&owner]).unwrap();
            black_box(row.get::<_, bool>(0))
        });
    });
    let claimed = AtomicU64::new(0);
    group.bench_function("claim_and_release", |b| {
        b.iter(|| {
            let n = claimed.fetch_add(1, Ordering::Relaxed);
            let claim = ledger.claim_leased(&id("claim", n), Some(&lease)).unwrap();
            claim.release().unwrap();
        });
    });
    group.bench_function("ledger_record_queued", |b| {
        b.iter(|| {
            let n = recorded.fetch_add(1, Ordering::Relaxed);
            black_box(ledger.record(&id("ledger", n), queued()).unwrap());
        });
    });
    group.finish();
    drop(held);
    lease.retire().unwrap();
}

/// How many settled delegations the `replay` group reads.
const REPLAYED: u64 = 500;

/// `replay`: the ledger's replay against a raw `SELECT` of the same rows, on a
/// schema of its own that holds exactly [`REPLAYED`] settled delegations.
fn replay(c: &mut Criterion) {
    let Some(schema) = pg_support::fresh("bench_replay") else {
        return;
    };
    let ledger = Ledger::with_store(schema.store.clone(), Options::new());
    for n in 0..REPLAYED {
        let id = id("replay", n);
        ledger.record(&id, queued()).unwrap();
        ledger
            .record(&id, Event::delivered(Some(200)).unwrap())
            .unwrap();
    }
    let mut client = raw_client(&schema);
    let mut group = c.benchmark_group("replay");
    group.throughput(criterion::Throughput::Elements(REPLAYED * 2));
    group.bench_function("ledger_replay", |b| {
        b.iter(|| {
            let replayed = ledger.replay().map(Result::unwrap).count();
            assert_eq!(replayed as u64, REPLAYED);
        });
    });
    let select = client
        .prepare(
            "SELECT r.delegation, r.seq, r.bytes, h.seq, h.summary
             FROM records r JOIN heads h USING (delegation)
             ORDER BY octet_length(r.delegation), r.delegation, r.seq",
        )
        .unwrap();
    group.bench_function("raw_select_records_and_heads", |b| {
        b.iter(|| {
            let rows = client.query(&select, &[]).unwrap();
            assert_eq!(rows.len() as u64, REPLAYED * 2);
            black_box(rows);
        });
    });
    group.finish();
}

criterion_group!(group, benches);

fn main() {
    group();
    Criterion::default().configure_from_args().final_summary();
}
