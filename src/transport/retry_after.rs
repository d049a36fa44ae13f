//! `Retry-After` (RFC 9110 §10.2.3): how long a target that answered 429 or 503
//! asks the sender to wait, read from delay-seconds or an HTTP-date.

use std::time::Duration;

use chrono::{DateTime, NaiveDateTime, Utc};

/// The wait a `Retry-After` value asks for, as of `now`: `Some(0)` for a date
/// already past; `None` for a value that is neither a number of seconds nor an
/// HTTP-date (a malformed header is ignored, as RFC 9110 lets a recipient do).
///
/// An HTTP-date comes in the three forms a recipient must accept: IMF-fixdate
/// (`Sun, 06 Nov 1994 08:49:37 GMT`), RFC 850 (`Sunday, 06-Nov-94 08:49:37
/// GMT`) and asctime (`Sun Nov  6 08:49:37 1994`).
pub(crate) fn parse(value: &str, now: DateTime<Utc>) -> Option<Duration> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        // More digits than a u64 holds is a very long wait: the longest there is.
        return Some(Duration::from_secs(value.parse().unwrap_or(u64::MAX)));
    }
    let at = date(value)?;
    Some((at - now).to_std().unwrap_or(Duration::ZERO))
}

/// An HTTP-date in any of its three forms, as UTC.
fn date(value: &str) -> Option<DateTime<Utc>> {
    if let Some(fixed) = value.strip_suffix(" GMT") {
        for form in ["%a, %d %b %Y %H:%M:%S", "%A, %d-%b-%y %H:%M:%S"] {
            if let Ok(at) = NaiveDateTime::parse_from_str(fixed, form) {
                return Some(at.and_utc());
            }
        }
        return None;
    }
    // asctime: the day of the month is padded with a space (`Nov  6`).
    let squeezed = value.split_whitespace().collect::<Vec<_>>().join(" ");
    NaiveDateTime::parse_from_str(&squeezed, "%a %b %e %H:%M:%S %Y")
        .ok()
        .map(|at| at.and_utc())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn now() -> DateTime<Utc> {
        "1994-11-06T08:49:30Z".parse().unwrap()
    }

    #[test]
    fn delay_seconds_are_the_wait() {
        assert_eq!(parse("1", now()), Some(Duration::from_secs(1)));
        assert_eq!(parse(" 120 ", now()), Some(Duration::from_secs(120)));
        assert_eq!(parse("0", now()), Some(Duration::ZERO));
    }

    #[test]
    fn a_number_too_large_for_u64_is_the_longest_wait() {
        assert_eq!(
            parse("99999999999999999999999", now()),
            Some(Duration::from_secs(u64::MAX))
        );
    }

    #[test]
    fn each_form_of_http_date_is_the_time_until_it() {
        let seven = Some(Duration::from_secs(7));
        assert_eq!(parse("Sun, 06 Nov 1994 08:49:37 GMT", now()), seven);
        assert_eq!(parse("Sunday, 06-Nov-94 08:49:37 GMT", now()), seven);
        assert_eq!(parse("Sun Nov  6 08:49:37 1994", now()), seven);
    }

    #[test]
    fn a_date_already_past_is_no_wait() {
        assert_eq!(
            parse("Sun, 06 Nov 1994 08:00:00 GMT", now()),
            Some(Duration::ZERO)
        );
    }

    #[test]
    fn anything_else_is_ignored() {
        for value in [
            "",
            "-1",
            "1.5",
            "soon",
            "06 Nov 1994",
            "Sun, 06 Nov 1994 08:49:37 PST",
        ] {
            assert_eq!(parse(value, now()), None, "{value:?}");
        }
    }
}
