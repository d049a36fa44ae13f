//! The `queued` event: who handed what to whom, and for a retry, which failed
//! delegation it retries and which attempt it is.

use serde::{Deserialize, Serialize};

use super::limits::{check_task, check_text};
use super::{Attempt, DelegationId, InvalidEvent, Timestamp};

/// The payload of a `queued` event.
///
/// A retry (a new delegation for a task whose delegation failed) carries
/// `retry_of`, the failed delegation, and `attempt`, one more than that
/// delegation's; the format page's `retry_link` verdict checks both. Only
/// [`Ledger::retry`](crate::Ledger::retry) writes one, together with the failure
/// it retries.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "WireQueued")]
pub struct Queued {
    /// Who delegated.
    pub source: String,
    /// To whom: an agent name or URL.
    pub target: String,
    /// What was delegated, as any JSON value. `null` is the same as no task: the
    /// ledger stores neither, and a log line's `"task": null` reads as none.
    #[serde(default, skip_serializing_if = "no_task")]
    pub task: Option<serde_json::Value>,
    /// For a retry: the failed delegation it retries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_of: Option<DelegationId>,
    /// For a retry: which attempt it is, at least 2. Present when and only when
    /// `retry_of` is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempt: Option<Attempt>,
    /// Not to be sent before this instant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_before: Option<Timestamp>,
}

impl Queued {
    /// A first attempt from `source` to `target`, with no task.
    pub fn new(source: impl Into<String>, target: impl Into<String>) -> Self {
        Queued {
            source: source.into(),
            target: target.into(),
            task: None,
            retry_of: None,
            attempt: None,
            not_before: None,
        }
    }

    /// Which attempt this is: `attempt`, or 1 for a delegation without one.
    pub fn attempt(&self) -> Attempt {
        self.attempt.unwrap_or(1)
    }

    /// [`Event::validate`](super::Event::validate) of this `queued`.
    pub(crate) fn validate(&self) -> Result<(), InvalidEvent> {
        validate_fields(
            &self.source,
            &self.target,
            self.retry_of.is_some(),
            self.attempt,
            self.task.as_ref(),
        )
    }
}

/// [`Queued::validate`] on the fields of a `queued`, borrowed: what a decoder
/// checks before it owns anything. `retry_of` says whether the event has one.
pub(crate) fn validate_fields(
    source: &str,
    target: &str,
    retry_of: bool,
    attempt: Option<Attempt>,
    task: Option<&serde_json::Value>,
) -> Result<(), InvalidEvent> {
    check_text("source", source)?;
    check_text("target", target)?;
    check_retry_link(retry_of, attempt)?;
    match task {
        Some(task) => check_task(task),
        None => Ok(()),
    }
}

#[derive(Deserialize)]
struct WireQueued {
    source: String,
    target: String,
    #[serde(default)]
    task: Option<serde_json::Value>,
    #[serde(default)]
    retry_of: Option<DelegationId>,
    #[serde(default)]
    attempt: Option<Attempt>,
    #[serde(default)]
    not_before: Option<Timestamp>,
}

impl TryFrom<WireQueued> for Queued {
    type Error = InvalidEvent;

    fn try_from(wire: WireQueued) -> Result<Self, InvalidEvent> {
        check_retry(wire.retry_of.as_ref(), wire.attempt)?;
        Ok(Queued {
            source: wire.source,
            target: wire.target,
            task: wire.task,
            retry_of: wire.retry_of,
            attempt: wire.attempt,
            not_before: wire.not_before,
        })
    }
}

/// Whether a task is absent from the stored form: none, or `null`.
fn no_task(task: &Option<serde_json::Value>) -> bool {
    task.as_ref().is_none_or(serde_json::Value::is_null)
}

/// The rule of the format page: `attempt` is required when and only when
/// `retry_of` is present, and is at least 2.
pub(super) fn check_retry(
    retry_of: Option<&DelegationId>,
    attempt: Option<Attempt>,
) -> Result<(), InvalidEvent> {
    check_retry_link(retry_of.is_some(), attempt)
}

/// [`check_retry`], given whether there is a `retry_of`.
fn check_retry_link(retry_of: bool, attempt: Option<Attempt>) -> Result<(), InvalidEvent> {
    match (retry_of, attempt) {
        (false, None) => Ok(()),
        (true, None) => Err(InvalidEvent::MissingAttempt),
        (false, Some(attempt)) => Err(InvalidEvent::UnexpectedAttempt { attempt }),
        (true, Some(attempt)) if attempt < 2 => Err(InvalidEvent::AttemptTooLow { attempt }),
        (true, Some(_)) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Event;

    #[test]
    fn a_retry_carries_an_attempt_of_at_least_2_and_nothing_else_does() {
        let retry = r#"{"event":"queued","source":"a","target":"b","retry_of":"x","attempt":2,"not_before":"2026-06-07T03:32:07+02:00"}"#;
        let event: Event = serde_json::from_str(retry).unwrap();
        assert_eq!(
            serde_json::to_string(&event).unwrap(),
            r#"{"event":"queued","source":"a","target":"b","retry_of":"x","attempt":2,"not_before":"2026-06-07T01:32:07Z"}"#
        );
        assert_eq!(event.validate(), Ok(()));
        for refused in [
            r#"{"event":"queued","source":"a","target":"b","attempt":2}"#,
            r#"{"event":"queued","source":"a","target":"b","retry_of":"x"}"#,
            r#"{"event":"queued","source":"a","target":"b","retry_of":"x","attempt":1}"#,
            r#"{"event":"queued","source":"a","target":"b","retry_of":"","attempt":2}"#,
        ] {
            assert!(serde_json::from_str::<Event>(refused).is_err(), "{refused}");
        }
        let built = |retry_of: Option<&str>, attempt| {
            Event::Queued(Queued {
                retry_of: retry_of.map(|id| DelegationId::try_from(id).unwrap()),
                attempt,
                ..Queued::new("a", "b")
            })
            .validate()
        };
        assert_eq!(built(Some("x"), None), Err(InvalidEvent::MissingAttempt));
        assert_eq!(
            built(None, Some(2)),
            Err(InvalidEvent::UnexpectedAttempt { attempt: 2 })
        );
        assert_eq!(
            built(Some("x"), Some(0)),
            Err(InvalidEvent::AttemptTooLow { attempt: 0 })
        );
        assert_eq!(built(Some("x"), Some(3)), Ok(()));
    }
}
