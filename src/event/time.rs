//! The instant of a record, `at` and `not_before`: UTC to the nanosecond, written
//! as RFC 3339 with the fewest exact fractional digits.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// An instant, in UTC, to the nanosecond.
///
/// Its text form is RFC 3339 in UTC with a `Z`, and with the fewest fractional digits
/// (0, 3, 6 or 9) that hold the instant exactly: `2026-06-07T01:32:07.250Z`. Parsing
/// accepts any RFC 3339 timestamp, offsets included, and normalizes it to UTC.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(DateTime<Utc>);

/// Why a string is not an RFC 3339 timestamp.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("`{text}` is not an RFC 3339 timestamp: {reason}")]
pub struct InvalidTimestamp {
    /// The refused text.
    pub text: String,
    /// What the parser objected to.
    pub reason: String,
}

impl Timestamp {
    /// The instant `nanos` nanoseconds after the Unix epoch.
    pub fn from_unix_nanos(nanos: i64) -> Self {
        Self(DateTime::from_timestamp_nanos(nanos))
    }

    /// Nanoseconds since the Unix epoch, or `None` outside the years 1677 to 2262.
    pub fn unix_nanos(&self) -> Option<i64> {
        self.0.timestamp_nanos_opt()
    }

    /// The instant as a chrono `DateTime`.
    pub fn as_datetime(&self) -> DateTime<Utc> {
        self.0
    }

    /// The time from `earlier` to `self`, or zero if `earlier` is later.
    pub fn since(&self, earlier: Timestamp) -> std::time::Duration {
        (self.0 - earlier.0).to_std().unwrap_or_default()
    }

    /// The instant `wait` after this one; the latest instant there is when that
    /// is beyond what a timestamp holds.
    pub fn after(&self, wait: std::time::Duration) -> Timestamp {
        chrono::TimeDelta::from_std(wait)
            .ok()
            .and_then(|wait| self.0.checked_add_signed(wait))
            .map_or(Timestamp(DateTime::<Utc>::MAX_UTC), Timestamp)
    }
}

impl From<DateTime<Utc>> for Timestamp {
    fn from(at: DateTime<Utc>) -> Self {
        Self(at)
    }
}

impl FromStr for Timestamp {
    type Err = InvalidTimestamp;

    fn from_str(text: &str) -> Result<Self, InvalidTimestamp> {
        DateTime::parse_from_rfc3339(text)
            .map(|at| Self(at.with_timezone(&Utc)))
            .map_err(|e| InvalidTimestamp {
                text: text.to_owned(),
                reason: e.to_string(),
            })
    }
}

impl Timestamp {
    /// The text form ([`Display`](fmt::Display)), in a string of its own.
    pub(crate) fn text(&self) -> String {
        self.0.to_rfc3339_opts(SecondsFormat::AutoSi, true)
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text())
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_normalize_to_utc_with_the_fewest_exact_digits() {
        let at: Timestamp = "2026-06-07T03:32:07.250+02:00".parse().unwrap();
        assert_eq!(at.to_string(), "2026-06-07T01:32:07.250Z");
        let at: Timestamp = "2026-06-07T01:32:07Z".parse().unwrap();
        assert_eq!(at.to_string(), "2026-06-07T01:32:07Z");
    }
}
