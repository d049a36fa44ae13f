//! What the dispatcher costs, against an in-process transport that answers at once:
//! `delegate` latency; throughput of whole delegations (queued, delivered, both
//! recorded) with 1, 8 and 64 concurrent callers; and the dispatcher's overhead
//! over recording the same two events with the ledger directly, printed as a ratio
//! measured in the same run. Each is measured in memory, on sled with buffered
//! durability, and on sled with durable (flushed, group-committed) records.
//!
//! `cargo bench --bench dispatch -- --warm-up-time 1 --measurement-time 3`. The load
//! average is printed to stderr at the start and the end; `-- --test` runs each
//! benchmark once and prints nothing extra (the ratio rounds are left out).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

#[path = "common/mod.rs"]
mod common;

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group};
use delegation_log::dispatch::{Dispatcher, Request};
use delegation_log::ledger::Options;
use delegation_log::store::Memory;
use delegation_log::transport::Immediate;
use delegation_log::{DelegationId, Durability, Event, Ledger};
use tokio::runtime::Runtime;

/// A ledger of the named kind; the temp dir lives as long as the ledger is used.
struct Setup {
    name: &'static str,
    ledger: Ledger,
    _dir: Option<tempfile::TempDir>,
}

fn setups() -> Vec<Setup> {
    let sled = |durability| {
        let dir = tempfile::tempdir().unwrap();
        let ledger = Ledger::open_with(
            dir.path().join("log"),
            Options::new().durability(durability),
        )
        .unwrap();
        (ledger, Some(dir))
    };
    let (buffered, buffered_dir) = sled(Durability::Buffered);
    let (durable, durable_dir) = sled(Durability::Durable);
    vec![
        Setup {
            name: "memory",
            ledger: Ledger::with_store(Arc::new(Memory::new()), Options::new()),
            _dir: None,
        },
        Setup {
            name: "sled-buffered",
            ledger: buffered,
            _dir: buffered_dir,
        },
        Setup {
            name: "sled-durable",
            ledger: durable,
            _dir: durable_dir,
        },
    ]
}

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn request() -> Request {
    Request::new("bench", "in-process").task("review PR 42")
}

fn delegate_latency(c: &mut Criterion) {
    let rt = runtime();
    let mut group = c.benchmark_group("delegate");
    group.sample_size(30);
    for setup in setups() {
        let dispatcher =
            rt.block_on(async { Dispatcher::new(setup.ledger.clone(), Immediate::accepting()) });
        group.bench_function(setup.name, |b| {
            b.iter(|| black_box(rt.block_on(dispatcher.delegate(request())).unwrap()));
        });
        rt.block_on(dispatcher.shutdown()).unwrap();
    }
    group.finish();
}

/// `total` whole delegations split among `callers` tasks; each waits for its own
/// outcomes to be recorded.
async fn run_callers(dispatcher: &Dispatcher, callers: u64, total: u64) {
    let mut set = tokio::task::JoinSet::new();
    for caller in 0..callers {
        let dispatcher = dispatcher.clone();
        let share = total / callers + u64::from(caller < total % callers);
        set.spawn(async move {
            let mut receipts = Vec::with_capacity(usize::try_from(share).unwrap());
            for _ in 0..share {
                receipts.push(dispatcher.delegate(request()).await.unwrap());
            }
            for receipt in receipts {
                receipt.settled().await.unwrap();
            }
        });
    }
    while let Some(joined) = set.join_next().await {
        joined.unwrap();
    }
}

fn throughput(c: &mut Criterion) {
    let rt = runtime();
    let mut group = c.benchmark_group("throughput");
    group.sample_size(10);
    group.throughput(Throughput::Elements(1));
    for setup in setups() {
        let dispatcher =
            rt.block_on(async { Dispatcher::new(setup.ledger.clone(), Immediate::accepting()) });
        for callers in [1u64, 8, 64] {
            group.bench_with_input(
                BenchmarkId::new(setup.name, format!("{callers}-callers")),
                &callers,
                |b, &callers| {
                    b.iter_custom(|iters| {
                        let start = Instant::now();
                        rt.block_on(run_callers(&dispatcher, callers, iters.max(callers)));
                        start.elapsed()
                    });
                },
            );
        }
        rt.block_on(dispatcher.shutdown()).unwrap();
    }
    group.finish();
}

/// Records queued then delivered directly, as a caller without the dispatcher would.
fn ledger_direct(ledger: &Ledger, n: u64, round: u64) -> Duration {
    let start = Instant::now();
    for i in 0..n {
        let id: DelegationId = format!("direct-{round}-{i}").parse().unwrap();
        ledger
            .record(&id, Event::queued("bench", "in-process"))
            .unwrap();
        ledger
            .record(&id, Event::delivered(Some(200)).unwrap())
            .unwrap();
    }
    start.elapsed()
}

/// The same through the dispatcher, one delegation at a time, awaiting each outcome.
fn dispatched(rt: &Runtime, dispatcher: &Dispatcher, n: u64) -> Duration {
    let start = Instant::now();
    rt.block_on(async {
        for _ in 0..n {
            let receipt = dispatcher.delegate(request()).await.unwrap();
            receipt.settled().await.unwrap();
        }
    });
    start.elapsed()
}

fn overhead(c: &mut Criterion) {
    let rt = runtime();
    let mut group = c.benchmark_group("overhead");
    group.sample_size(20);
    let mut ratios = Vec::new();
    for setup in setups() {
        let dispatcher =
            rt.block_on(async { Dispatcher::new(setup.ledger.clone(), Immediate::accepting()) });
        let mut round = 0;
        group.bench_function(BenchmarkId::new("ledger-direct", setup.name), |b| {
            b.iter_custom(|iters| {
                round += 1;
                ledger_direct(&setup.ledger, iters, round)
            });
        });
        group.bench_function(BenchmarkId::new("dispatcher", setup.name), |b| {
            b.iter_custom(|iters| dispatched(&rt, &dispatcher, iters));
        });

        // The ratio, from interleaved rounds of the same size in this run (not in a
        // smoke run).
        if common::smoke() {
            rt.block_on(dispatcher.shutdown()).unwrap();
            continue;
        }
        let n = if setup.name == "sled-durable" {
            200
        } else {
            2000
        };
        let mut direct = Vec::new();
        let mut through = Vec::new();
        for r in 0..5 {
            direct.push(ledger_direct(&setup.ledger, n, 1_000_000 + r));
            through.push(dispatched(&rt, &dispatcher, n));
        }
        direct.sort();
        through.sort();
        let per = |d: Duration| d.as_secs_f64() * 1e6 / n as f64;
        let median =
            |sorted: &[Duration]| sorted.get(sorted.len() / 2).copied().unwrap_or_default();
        let (d, t) = (per(median(&direct)), per(median(&through)));
        ratios.push(format!(
            "{:<14} ledger direct {d:8.1} µs, dispatcher {t:8.1} µs per delegation: ratio {:.2}",
            setup.name,
            t / d
        ));
        rt.block_on(dispatcher.shutdown()).unwrap();
    }
    group.finish();
    if ratios.is_empty() {
        return;
    }
    println!(
        "\ndispatcher overhead over the ledger (queued + delivered, medians of 5 interleaved rounds):"
    );
    for line in ratios {
        println!("  {line}");
    }
}

criterion_group!(benches, delegate_latency, throughput, overhead);

fn main() {
    common::load_average("dispatch", "start");
    benches();
    Criterion::default().configure_from_args().final_summary();
    common::load_average("dispatch", "end");
}
