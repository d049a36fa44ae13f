//! What a transport's answer means for the log: the `delivered` or `failed` event
//! it is recorded as, and that event in a few words.

use crate::event::{Event, Failed, FailureReason};
use crate::transport::{Accepted, Failure};

/// The event for a delivery's outcome. A transport that breaks the status rules
/// (a 2xx failure, a non-2xx acceptance) gets `failed` / `marshal_error` with the
/// contradiction as the detail, never a refused record.
pub(super) fn event(outcome: Result<Accepted, Failure>) -> Event {
    let event = match outcome {
        Ok(accepted) => {
            Event::delivered_with(accepted.http_status, accepted.remote).map_err(|e| e.to_string())
        }
        Err(failure) => {
            Event::failed(failure.reason, Some(failure.detail)).map_err(|e| e.to_string())
        }
    };
    event.unwrap_or_else(|contradiction| {
        Event::Failed(Failed {
            reason: FailureReason::MarshalError,
            detail: Some(format!(
                "the transport broke the status rules: {contradiction}"
            )),
        })
    })
}

/// `delivered`, or `failed: <reason>`.
pub(super) fn describe(event: &Event) -> String {
    match event {
        Event::Failed(failed) => format!("failed: {}", failed.reason),
        other => other.kind().to_string(),
    }
}
