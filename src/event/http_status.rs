//! The one rule the log holds about HTTP status codes: a 2xx means the target
//! accepted the task. Events, their errors and every transport decide it here.

use std::fmt;
use std::ops::RangeInclusive;

/// An HTTP status code as a transport received it, and the rule the log holds
/// about it: [`Code::classify`].
///
/// ```
/// use delegation_log::event::http_status::{Class, Code};
///
/// assert!(Code(200).is_success() && Code(299).is_success());
/// assert!(!Code(199).is_success() && !Code(300).is_success());
/// let Class::NonSuccess(status) = Code(503).classify() else { unreachable!() };
/// assert_eq!(status.get(), 503);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Code(pub u16);

impl Code {
    /// The success statuses, 200 to 299: the only statuses a `delivered` event may
    /// carry, and never the status of a `failed` one.
    pub const SUCCESS: RangeInclusive<u16> = 200..=299;

    /// The rule, said once: a 2xx is a [`Success`] (a delivery accepted with it
    /// is [`Delivered`](super::Delivered)), anything else a [`NonSuccess`] (the
    /// only status [`FailureReason::HttpStatus`](super::FailureReason::HttpStatus)
    /// carries). Code that holds either needs no second look.
    pub const fn classify(self) -> Class {
        if self.0 >= *Self::SUCCESS.start() && self.0 <= *Self::SUCCESS.end() {
            Class::Success(Success(self.0))
        } else {
            Class::NonSuccess(NonSuccess(self.0))
        }
    }

    /// Whether [`Code::classify`] finds a [`Success`], a 2xx.
    pub const fn is_success(self) -> bool {
        matches!(self.classify(), Class::Success(_))
    }
}

/// Which side of the rule a [`Code`] is on: what [`Code::classify`] says.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Class {
    /// A 2xx.
    Success(Success),
    /// Anything but a 2xx.
    NonSuccess(NonSuccess),
}

/// A status within [`Code::SUCCESS`]; only [`Code::classify`] makes one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Success(u16);

/// A status outside [`Code::SUCCESS`]; only [`Code::classify`] makes one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NonSuccess(u16);

impl Success {
    /// The status.
    pub const fn get(self) -> u16 {
        self.0
    }
}

impl NonSuccess {
    /// The status.
    pub const fn get(self) -> u16 {
        self.0
    }
}

impl From<u16> for Code {
    fn from(code: u16) -> Self {
        Code(code)
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl fmt::Display for Success {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl fmt::Display for NonSuccess {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Event, FailureReason, InvalidEvent};

    #[test]
    fn success_is_exactly_200_to_299() {
        for code in [0, 100, 199, 300, 304, 404, 500, 599, u16::MAX] {
            assert!(!Code(code).is_success(), "{code}");
        }
        for code in [200, 201, 202, 204, 250, 299] {
            assert!(Code(code).is_success(), "{code}");
        }
    }

    #[test]
    fn delivered_takes_only_a_success_and_failed_only_anything_else() {
        for code in [199, 200, 204, 299, 300, 503] {
            assert_eq!(
                Event::delivered(Some(code)).is_ok(),
                Code(code).is_success(),
                "{code}"
            );
            assert_eq!(
                Event::failed(FailureReason::HttpStatus(code), None).is_ok(),
                !Code(code).is_success(),
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
