//! A flood: 100,000 delegations, delegated one after another as fast as
//! `delegate` returns, to a slow target on a sled ledger. Each send takes 20 ms
//! and 64 run at once, so at most 3,200 a second leave, while `delegate`
//! acknowledges several times that. What is measured is what the flood costs the process while it
//! lasts, sampled every 5 ms: the tokio tasks alive, the OS threads, and the heap
//! above what it was before the flood.
//!
//! The bounded dispatcher (`Options::backlog`, default 1024) is compared in the
//! same run with the same dispatcher given no bound (a backlog of
//! `usize::MAX`): what the dispatcher was before the backlog existed, when every
//! acknowledged delegation became a task waiting for a slot. Ratios first.
//!
//! Not criterion: the figures are peaks of resources, not times (the time of each
//! run is printed for context only). `cargo bench --bench flood`; `-- --test` runs
//! 2,000 delegations. The ledger runs `Durability::Buffered`: syncs are not what
//! is measured. The load average is printed at the start and the end.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

#[path = "common/mod.rs"]
mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use delegation_log::dispatch::{DEFAULT_BACKLOG, Dispatcher, Options as DispatchOptions, Request};
use delegation_log::ledger::Options;
use delegation_log::transport::{Accepted, BoxFuture, Failure, Message, Transport};
use delegation_log::{Durability, Ledger, ManualClock};
use peak_alloc::PeakAlloc;

use common::{load_average, smoke};

#[global_allocator]
static PEAK: PeakAlloc = PeakAlloc;

/// A target that takes 20 ms to accept each message.
struct Slow;

impl Transport for Slow {
    fn send(&self, _message: Message) -> BoxFuture<'_, Result<Accepted, Failure>> {
        Box::pin(async {
            tokio::time::sleep(Duration::from_millis(20)).await;
            Ok(Accepted::status(200))
        })
    }
}

/// The OS threads of this process, from `/proc/self/status`.
fn threads() -> usize {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("Threads:"))
                .and_then(|n| n.trim().parse().ok())
        })
        .unwrap_or(0)
}

#[derive(Debug, Default, Clone, Copy)]
struct Peaks {
    tasks: usize,
    threads: usize,
    heap: usize,
    seconds: f64,
}

/// Delegates `n` tasks to the slow target through a dispatcher with `backlog`,
/// then shuts it down; the peaks seen meanwhile.
async fn flood(n: usize, backlog: usize) -> Peaks {
    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::open_with(
        dir.path().join("log"),
        Options::new()
            .durability(Durability::Buffered)
            .clock(ManualClock::default()),
    )
    .unwrap();
    let options = DispatchOptions::new().concurrency(64).backlog(backlog);
    let dispatcher = Dispatcher::with_options(ledger.clone(), Slow, options);
    let runtime = tokio::runtime::Handle::current();
    let base_heap = PEAK.current_usage();
    let running = Arc::new(AtomicBool::new(true));
    let sampler = {
        let running = Arc::clone(&running);
        let runtime = runtime.clone();
        std::thread::spawn(move || {
            let mut peaks = Peaks::default();
            while running.load(Ordering::SeqCst) {
                peaks.tasks = peaks.tasks.max(runtime.metrics().num_alive_tasks());
                peaks.threads = peaks.threads.max(threads());
                peaks.heap = peaks
                    .heap
                    .max(PEAK.current_usage().saturating_sub(base_heap));
                std::thread::sleep(Duration::from_millis(5));
            }
            peaks
        })
    };
    let started = Instant::now();
    for i in 0..n {
        let request = Request::new("planner", "http://127.0.0.1:9/a2a")
            .id(format!("flood-{i:07}").parse().unwrap())
            .task("review PR 42: the whole diff, every file, and the tests");
        dispatcher.delegate(request).await.unwrap();
    }
    let stats = dispatcher.shutdown().await.unwrap();
    let seconds = started.elapsed().as_secs_f64();
    running.store(false, Ordering::SeqCst);
    let mut peaks = sampler.join().unwrap();
    peaks.seconds = seconds;
    assert_eq!(stats.delivered, n as u64, "every delegation delivered");
    peaks
}

fn main() {
    let n = if smoke() { 2_000 } else { 100_000 };
    load_average("flood", "start");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let bounded = runtime.block_on(flood(n, DEFAULT_BACKLOG));
    let unbounded = runtime.block_on(flood(n, usize::MAX));
    load_average("flood", "end");
    if smoke() {
        return;
    }
    let ratio = |a: usize, b: usize| a as f64 / b.max(1) as f64;
    println!("flood of {n} delegations to a 20 ms target, 64 at once");
    println!("| figure | bounded ÷ unbounded | bounded (backlog {DEFAULT_BACKLOG}) | unbounded |");
    println!("| --- | --- | --- | --- |");
    println!(
        "| peak tokio tasks alive | {:.4}× | {} | {} |",
        ratio(bounded.tasks, unbounded.tasks),
        bounded.tasks,
        unbounded.tasks
    );
    println!(
        "| peak OS threads | {:.2}× | {} | {} |",
        ratio(bounded.threads, unbounded.threads),
        bounded.threads,
        unbounded.threads
    );
    println!(
        "| peak heap above the start | {:.3}× | {:.1} MB | {:.1} MB |",
        ratio(bounded.heap, unbounded.heap),
        bounded.heap as f64 / 1e6,
        unbounded.heap as f64 / 1e6
    );
    println!(
        "| wall time (context only) | {:.2}× | {:.1} s | {:.1} s |",
        bounded.seconds / unbounded.seconds,
        bounded.seconds,
        unbounded.seconds
    );
}
