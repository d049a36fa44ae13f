//! The event itself: one of `queued`, `delivered` or `failed`, its constructors,
//! and the field rules every event is checked against before it is written.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::{Delivered, Failed, FailureReason, InvalidEvent, Queued, Remote};

/// The three kinds of event, without their fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// See [`Queued`].
    Queued,
    /// See [`Delivered`].
    Delivered,
    /// See [`Failed`].
    Failed,
}

impl EventKind {
    /// Every kind, in lifecycle order.
    pub const ALL: [EventKind; 3] = [EventKind::Queued, EventKind::Delivered, EventKind::Failed];

    /// The kind's name in the log: `queued`, `delivered` or `failed`.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Queued => "queued",
            EventKind::Delivered => "delivered",
            EventKind::Failed => "failed",
        }
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Something that happened to a delegation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// The sender handed the task over; delivery has not finished.
    Queued(Queued),
    /// The target accepted the task.
    Delivered(Delivered),
    /// Delivery ended without the target accepting the task.
    Failed(Failed),
}

impl Event {
    /// The event's kind.
    pub fn kind(&self) -> EventKind {
        match self {
            Event::Queued(_) => EventKind::Queued,
            Event::Delivered(_) => EventKind::Delivered,
            Event::Failed(_) => EventKind::Failed,
        }
    }

    /// A `queued` event with no task body.
    pub fn queued(source: impl Into<String>, target: impl Into<String>) -> Self {
        Event::Queued(Queued::new(source, target))
    }

    /// A `delivered` event, with the 2xx status the target answered, if any.
    ///
    /// # Errors
    /// [`InvalidEvent::DeliveredStatus`] if `http_status` is not a 2xx
    /// ([`http_status::Code::is_success`](super::http_status::Code::is_success)).
    pub fn delivered(http_status: Option<u16>) -> Result<Self, InvalidEvent> {
        Self::delivered_with(http_status, None)
    }

    /// A `delivered` event carrying what the agent answered: a message, or a task
    /// with its id and state.
    ///
    /// # Errors
    /// [`InvalidEvent::DeliveredStatus`] if `http_status` is not a 2xx
    /// ([`http_status::Code::is_success`](super::http_status::Code::is_success)).
    pub fn delivered_with(
        http_status: Option<u16>,
        remote: Option<Remote>,
    ) -> Result<Self, InvalidEvent> {
        let delivered = Delivered {
            http_status,
            remote,
        };
        delivered.validate()?;
        Ok(Event::Delivered(delivered))
    }

    /// A `failed` event with its reason and the error detail, if any.
    ///
    /// # Errors
    /// [`InvalidEvent::FailedStatus`] if the reason is an HTTP status that is a 2xx
    /// ([`http_status::Code::is_success`](super::http_status::Code::is_success)).
    pub fn failed(reason: FailureReason, detail: Option<String>) -> Result<Self, InvalidEvent> {
        reason.validate()?;
        Ok(Event::Failed(Failed { reason, detail }))
    }

    /// Checks the rules that the types alone cannot: status codes in their ranges,
    /// a retry's `attempt` (present when and only when `retry_of` is, and at least
    /// 2), and the limits on tasks ([`MAX_TASK_DEPTH`], [`MAX_TASK_BYTES`]) and texts
    /// ([`MAX_TEXT_BYTES`]). The ledger checks them before it writes anything, and
    /// `verify` by the same rule, so the log never holds what it could not read
    /// back. The depth is measured without recursion, so even a task nested far
    /// too deep is refused without exhausting the stack.
    ///
    /// # Errors
    /// The first rule the event breaks.
    ///
    /// [`MAX_TASK_DEPTH`]: super::MAX_TASK_DEPTH
    /// [`MAX_TASK_BYTES`]: super::MAX_TASK_BYTES
    /// [`MAX_TEXT_BYTES`]: super::MAX_TEXT_BYTES
    pub fn validate(&self) -> Result<(), InvalidEvent> {
        match self {
            Event::Queued(queued) => queued.validate(),
            Event::Delivered(delivered) => delivered.validate(),
            Event::Failed(failed) => failed.validate(),
        }
    }

    /// The event in its one stored form: a `null` task is no task, as the log
    /// stores, hashes and exports it.
    pub fn normalized(mut self) -> Self {
        if let Event::Queued(queued) = &mut self
            && queued.task.as_ref().is_some_and(serde_json::Value::is_null)
        {
            queued.task = None;
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_codes_outside_their_ranges_are_refused() {
        assert_eq!(
            Event::delivered(Some(503)),
            Err(InvalidEvent::DeliveredStatus(503))
        );
        assert_eq!(
            Event::failed(FailureReason::HttpStatus(204), None),
            Err(InvalidEvent::FailedStatus(204))
        );
        let missing = r#"{"event":"failed","reason":"http_status"}"#;
        assert!(serde_json::from_str::<Event>(missing).is_err());
        let unexpected = r#"{"event":"failed","reason":"timeout","http_status":500}"#;
        assert!(serde_json::from_str::<Event>(unexpected).is_err());
    }
}
