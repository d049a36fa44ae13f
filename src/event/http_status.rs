//! The one rule the log holds about HTTP status codes: a 2xx means the target
//! accepted the task. Events, their errors and every transport decide it here.

use std::ops::RangeInclusive;

/// The success statuses, 200 to 299: the only statuses a `delivered` event may
/// carry, and never the status of a `failed` one.
pub const SUCCESS: RangeInclusive<u16> = 200..=299;

/// Whether `code` is a 2xx: a delivery accepted with it is
/// [`Delivered`](super::Delivered), and a failure never carries it
/// ([`FailureReason::HttpStatus`](super::FailureReason::HttpStatus) is non-2xx).
///
/// ```
/// use delegation_log::event::http_status;
///
/// assert!(http_status::is_success(200) && http_status::is_success(299));
/// assert!(!http_status::is_success(199) && !http_status::is_success(300));
/// ```
pub const fn is_success(code: u16) -> bool {
    code >= *SUCCESS.start() && code <= *SUCCESS.end()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Event, FailureReason, InvalidEvent};

    #[test]
    fn success_is_exactly_200_to_299() {
        for code in [0, 100, 199, 300, 304, 404, 500, 599, u16::MAX] {
            assert!(!is_success(code), "{code}");
        }
        for code in [200, 201, 202, 204, 250, 299] {
            assert!(is_success(code), "{code}");
        }
    }

    #[test]
    fn delivered_takes_only_a_success_and_failed_only_anything_else() {
        for code in [199, 200, 204, 299, 300, 503] {
            assert_eq!(
                Event::delivered(Some(code)).is_ok(),
                is_success(code),
                "{code}"
            );
            assert_eq!(
                Event::failed(FailureReason::HttpStatus(code), None).is_ok(),
                !is_success(code),
                "{code}"
            );
        }
    }

    #[test]
    fn the_refusals_name_the_success_range() {
        assert_eq!(
            InvalidEvent::DeliveredStatus(503).to_string(),
            "a delivered event's http_status must be within 200..=299, not 503"
        );
        assert_eq!(
            InvalidEvent::FailedStatus(204).to_string(),
            "a failed event's http_status must be outside 200..=299, not 204"
        );
    }
}
