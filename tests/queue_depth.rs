//! Guards the delivery metrics (feature `metrics`) across a retry: a retry
//! waiting out its backoff is queued in the log, so it counts in
//! `delegation_queue_depth` until it settles, and its delivery time runs from its
//! `queued` being acknowledged, backoff included. Read through the Prometheus
//! recorder the CLI installs, as a scrape would read it.
#![cfg(feature = "metrics")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use delegation_log::dispatch::{Dispatcher, Options, Request, Retry};
use delegation_log::store::Memory;
use delegation_log::transport::{Accepted, Failure, Immediate};
use delegation_log::{DelegationId, Ledger, Outcome};
use metrics_exporter_prometheus::PrometheusBuilder;
use support::prometheus_samples;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_waiting_out_its_backoff_is_in_the_queue_depth_and_its_time() {
    let recorder = PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    metrics::set_global_recorder(recorder).unwrap();

    let ledger = Ledger::with_store(
        Arc::new(Memory::new()),
        delegation_log::ledger::Options::new(),
    );
    // The first attempt is refused with a 503 (retried by default), the second
    // accepted.
    let calls = Arc::new(AtomicUsize::new(0));
    let counting = Arc::clone(&calls);
    let transport = Immediate::new(move |_| {
        if counting.fetch_add(1, Ordering::SeqCst) == 0 {
            Err(Failure::status(503, "busy"))
        } else {
            Ok(Accepted::status(200))
        }
    });
    // Long enough (at least half of it) for the checks below to see the retry
    // waiting, on a loaded machine.
    let backoff = Duration::from_secs(4);
    let policy = Retry::new().max_attempts(2).backoff(backoff).jitter_seed(5);
    let dispatcher =
        Dispatcher::with_options(ledger.clone(), transport, Options::new().retry(policy));
    let receipt = dispatcher
        .delegate(Request::new("planner", "reviewer").id("busy".parse().unwrap()))
        .await
        .unwrap();

    // The first attempt failed and the retry is queued, waiting out its backoff
    // (equal jitter: at least half of it).
    let retry: DelegationId = "busy.r1".parse().unwrap();
    let until = Instant::now() + Duration::from_secs(20);
    while ledger.delegation(&retry).unwrap().is_none() {
        assert!(Instant::now() < until, "the retry was never queued");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Once the first attempt's outcome is counted (just after the retry is
    // written), the retry, still in its backoff, is the one delivery queued.
    let failed = "delegation_outcomes_total{outcome=\"failed\",reason=\"http_status\"}";
    loop {
        let waiting = prometheus_samples(&handle.render());
        assert_eq!(calls.load(Ordering::SeqCst), 1, "the retry is not sent yet");
        if waiting.get(failed) == Some(&1.0) && waiting.get("delegation_queue_depth") == Some(&1.0)
        {
            break;
        }
        assert!(
            Instant::now() < until,
            "the retry in its backoff is not in the queue depth: {waiting:#?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    let settled = receipt.settled().await.unwrap();
    dispatcher.shutdown().await.unwrap();
    assert!(
        matches!(settled.outcome, Outcome::Delivered { .. }),
        "{settled:?}"
    );
    let after = prometheus_samples(&handle.render());
    assert_eq!(after["delegation_queue_depth"], 0.0, "{after:#?}");
    assert_eq!(
        after["delegation_outcomes_total{outcome=\"delivered\"}"], 1.0,
        "{after:#?}"
    );
    // The retry's time in the queue includes its backoff (at least half of it).
    let delivered = after["delegation_delivery_seconds_sum{outcome=\"delivered\"}"];
    assert!(
        delivered >= backoff.as_secs_f64() / 2.0,
        "delivered after {delivered} s, backoff {backoff:?}: {after:#?}"
    );
}
