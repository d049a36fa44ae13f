//! `--metrics-addr 127.0.0.1:PORT` (feature `metrics`): serves the dispatcher's
//! metrics in the Prometheus text format at `http://ADDR/metrics` while the
//! command runs.

use std::net::SocketAddr;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};

/// The latency histogram's buckets, in seconds: loopback answers, remote agents,
/// and the default 8 s deadline.
const LATENCY_BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

use super::Failure;

/// Installs the Prometheus recorder and starts its HTTP listener on `addr` (on a
/// thread of its own). An address that cannot be bound is a usage error.
pub(crate) fn serve(addr: SocketAddr) -> Result<(), Failure> {
    PrometheusBuilder::new()
        .with_http_listener(addr)
        .set_buckets_for_metric(
            Matcher::Full("delegation_delivery_seconds".to_owned()),
            &LATENCY_BUCKETS,
        )
        .map_err(|e| Failure::Unusable(format!("cannot set the latency buckets: {e}")))?
        .install()
        .map_err(|e| Failure::Unusable(format!("cannot serve metrics on {addr}: {e}")))?;
    metrics::describe_counter!(
        "delegation_outcomes_total",
        "Recorded outcomes of deliveries, by outcome and (for failed) reason."
    );
    metrics::describe_histogram!(
        "delegation_delivery_seconds",
        metrics::Unit::Seconds,
        "Time from a delegation's acknowledged queued to its recorded outcome."
    );
    metrics::describe_gauge!(
        "delegation_queue_depth",
        "Deliveries queued and not yet settled, those waiting for a slot included."
    );
    Ok(())
}
