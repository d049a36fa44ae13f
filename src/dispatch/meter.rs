//! Metrics of deliveries (feature `metrics`), through the `metrics` facade, for
//! whatever recorder the program installs (the CLI's Prometheus endpoint):
//!
//! - `delegation_outcomes_total` (counter), labels `outcome` (`delivered`,
//!   `failed`, `unrecorded`) and, for `failed`, `reason` (`target_offline`, …);
//! - `delegation_delivery_seconds` (histogram), label `outcome`: from the start
//!   of the delivery (`queued` acknowledged) to its recorded outcome;
//! - `delegation_queue_depth` (gauge): deliveries queued and not yet settled,
//!   those waiting for a slot and retries waiting out their backoff included.
//!
//! Without the feature, every call here is a no-op the compiler removes.

use super::{Settled, Unrecorded};

/// One delivery, counted in the queue depth from [`Meter::start`] until it is
/// dropped, whichever way the delivery ends (an abandoned one included).
pub(super) struct Meter {
    #[cfg(feature = "metrics")]
    started: std::time::Instant,
}

impl Meter {
    /// A delivery starts: one more in the queue.
    pub(super) fn start() -> Self {
        #[cfg(feature = "metrics")]
        metrics::gauge!("delegation_queue_depth").increment(1.0);
        Meter {
            #[cfg(feature = "metrics")]
            started: std::time::Instant::now(),
        }
    }

    /// Counts how the delivery ended, and how long it took.
    #[cfg_attr(not(feature = "metrics"), allow(unused_variables))]
    pub(super) fn settled(&self, ended: &Result<Settled, Unrecorded>) {
        #[cfg(feature = "metrics")]
        {
            use crate::delegation::Outcome;
            let outcome = match ended {
                Ok(Settled {
                    outcome: Outcome::Delivered { .. },
                    ..
                }) => {
                    metrics::counter!("delegation_outcomes_total", "outcome" => "delivered")
                        .increment(1);
                    "delivered"
                }
                Ok(Settled {
                    outcome: Outcome::Failed(failed),
                    ..
                }) => {
                    let reason = failed.reason.code().as_str();
                    metrics::counter!("delegation_outcomes_total", "outcome" => "failed", "reason" => reason)
                        .increment(1);
                    "failed"
                }
                Err(_) => {
                    metrics::counter!("delegation_outcomes_total", "outcome" => "unrecorded")
                        .increment(1);
                    "unrecorded"
                }
            };
            metrics::histogram!("delegation_delivery_seconds", "outcome" => outcome)
                .record(self.started.elapsed().as_secs_f64());
        }
    }
}

impl Drop for Meter {
    fn drop(&mut self) {
        #[cfg(feature = "metrics")]
        metrics::gauge!("delegation_queue_depth").decrement(1.0);
    }
}
