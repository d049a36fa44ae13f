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

#[cfg(test)]
mod tests {
    use super::*;

    fn failed(event: &Event) -> (FailureReason, String) {
        match event {
            Event::Failed(Failed { reason, detail }) => {
                (*reason, detail.clone().unwrap_or_default())
            }
            other => panic!("not failed: {other:?}"),
        }
    }

    #[test]
    fn an_acceptance_is_delivered_with_its_status() {
        assert_eq!(
            event(Ok(Accepted::status(202))),
            Event::delivered(Some(202)).unwrap_or_else(|e| panic!("{e}"))
        );
    }

    #[test]
    fn a_failure_keeps_its_reason_and_detail() {
        let (reason, detail) = failed(&event(Err(Failure::status(503, "busy"))));
        assert_eq!(
            (reason, detail.as_str()),
            (FailureReason::HttpStatus(503), "busy")
        );
    }

    #[test]
    fn an_acceptance_with_a_status_outside_2xx_is_a_marshal_error_not_a_refused_record() {
        let (reason, detail) = failed(&event(Ok(Accepted::status(500))));
        assert_eq!(reason, FailureReason::MarshalError);
        assert!(
            detail.starts_with("the transport broke the status rules: "),
            "{detail}"
        );
    }

    #[test]
    fn a_failure_with_a_2xx_status_is_a_marshal_error_not_a_refused_record() {
        let built = Failure::new(FailureReason::HttpStatus(204), "no content");
        let (reason, detail) = failed(&event(Err(built)));
        assert_eq!(reason, FailureReason::MarshalError);
        assert!(
            detail.starts_with("the transport broke the status rules: "),
            "{detail}"
        );

        let (reason, detail) = failed(&event(Err(Failure::status(204, "no content"))));
        assert_eq!(reason, FailureReason::MarshalError);
        assert!(
            detail.contains("transport reported 2xx status 204 as a failure"),
            "{detail}"
        );
    }

    #[test]
    fn an_outcome_is_described_in_a_few_words() {
        assert_eq!(describe(&event(Ok(Accepted::default()))), "delivered");
        assert_eq!(
            describe(&event(Err(Failure::timeout("late")))),
            "failed: timeout"
        );
    }
}
