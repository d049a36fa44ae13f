//! Tracing of deliveries (feature `tracing`): one `delegation` span per delivery,
//! with its id, target and attempt, and its outcome and reason once recorded.
//!
//! The span covers the delivery from its slot wait to its recorded outcome, and
//! ends with one `settled` event in it, so a subscriber that prints events (the
//! CLI's `--log-format`) prints one line per delegation with every field. Without
//! the feature, every call here is a no-op the compiler removes.

use super::delivery::Delivery;
use super::{Settled, Unrecorded};

/// The span of one delivery.
pub(super) struct Span {
    #[cfg(feature = "tracing")]
    span: tracing::Span,
}

impl Span {
    /// A `delegation` span for `delivery`.
    #[cfg_attr(not(feature = "tracing"), allow(unused_variables))]
    pub(super) fn of(delivery: &Delivery) -> Self {
        Span {
            #[cfg(feature = "tracing")]
            span: tracing::info_span!(
                "delegation",
                id = %delivery.id,
                target = %delivery.target,
                attempt = delivery.attempt,
                outcome = tracing::field::Empty,
                reason = tracing::field::Empty,
            ),
        }
    }

    /// Runs `work` inside the span.
    pub(super) async fn around<F: Future>(&self, work: F) -> F::Output {
        #[cfg(feature = "tracing")]
        {
            use tracing::Instrument as _;
            work.instrument(self.span.clone()).await
        }
        #[cfg(not(feature = "tracing"))]
        {
            work.await
        }
    }

    /// Records how the delivery ended: `delivered`, `failed` with its reason, or
    /// `unrecorded` when the outcome could not be written (a warning).
    #[cfg_attr(not(feature = "tracing"), allow(unused_variables))]
    pub(super) fn settled(&self, ended: &Result<Settled, Unrecorded>) {
        #[cfg(feature = "tracing")]
        {
            use crate::delegation::Outcome;
            let span = &self.span;
            match ended {
                Ok(Settled {
                    outcome: Outcome::Delivered { .. },
                    ..
                }) => {
                    span.record("outcome", "delivered");
                    tracing::info!(parent: span, "settled");
                }
                Ok(Settled {
                    outcome: Outcome::Failed(failed),
                    ..
                }) => {
                    span.record("outcome", "failed");
                    span.record("reason", failed.reason.code().as_str());
                    tracing::info!(parent: span, detail = failed.detail.as_deref(), "settled");
                }
                Err(unrecorded) => {
                    span.record("outcome", "unrecorded");
                    tracing::warn!(parent: span, cause = %unrecorded.cause, "settled, and the outcome could not be recorded");
                }
            }
        }
    }
}
