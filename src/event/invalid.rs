//! Why an event is refused whatever the state: the field rules of the format, as
//! one error a caller can branch on.

use super::http_status::Code;
use super::{Attempt, MAX_TASK_BYTES, MAX_TASK_DEPTH, MAX_TEXT_BYTES, ReasonCode};

/// An event that breaks a field rule of the format, whatever the state.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidEvent {
    /// `delivered` carried a status outside [`Code::SUCCESS`], 200..=299.
    #[error("a delivered event's http_status must be within {success:?}, not {0}", success = Code::SUCCESS)]
    DeliveredStatus(u16),
    /// `failed` with reason `http_status` carried a 2xx status, one of [`Code::SUCCESS`].
    #[error("a failed event's http_status must be outside {success:?}, not {0}", success = Code::SUCCESS)]
    FailedStatus(u16),
    /// `failed` with reason `http_status` carried no status.
    #[error("reason `http_status` requires the field http_status")]
    MissingStatus,
    /// `failed` with another reason carried a status.
    #[error("reason `{reason}` must not carry http_status (found {code})")]
    UnexpectedStatus {
        /// The reason that carried it.
        reason: ReasonCode,
        /// The status it carried.
        code: u16,
    },
    /// A task nested deeper than [`MAX_TASK_DEPTH`].
    #[error("the task is nested deeper than {MAX_TASK_DEPTH} levels")]
    TaskTooDeep,
    /// A task whose compact JSON is larger than [`MAX_TASK_BYTES`].
    #[error("the task is {bytes} bytes of JSON, over the limit of {MAX_TASK_BYTES}")]
    TaskTooLarge {
        /// Its size.
        bytes: usize,
    },
    /// A text field longer than [`MAX_TEXT_BYTES`].
    #[error("`{field}` is {bytes} bytes, over the limit of {MAX_TEXT_BYTES}")]
    TextTooLong {
        /// Which field.
        field: &'static str,
        /// Its length.
        bytes: usize,
    },
    /// `failed` with reason `rpc_error` carried no `rpc_code`.
    #[error("reason `rpc_error` requires the field rpc_code")]
    MissingRpcCode,
    /// `failed` with another reason carried an `rpc_code`.
    #[error("reason `{reason}` must not carry rpc_code (found {code})")]
    UnexpectedRpcCode {
        /// The reason that carried it.
        reason: ReasonCode,
        /// The code it carried.
        code: i64,
    },
    /// `queued` with `retry_of` carried no `attempt`.
    #[error("a retry (`retry_of`) requires the field attempt")]
    MissingAttempt,
    /// `queued` without `retry_of` carried an `attempt`.
    #[error("attempt {attempt} without retry_of: only a retry carries attempt")]
    UnexpectedAttempt {
        /// The attempt it carried.
        attempt: Attempt,
    },
    /// A retry's `attempt` was below 2 (the delegation it retries is at least
    /// attempt 1).
    #[error("a retry's attempt is at least 2, not {attempt}")]
    AttemptTooLow {
        /// The attempt it carried.
        attempt: Attempt,
    },

    /// An outcome was asked for, and the event is `queued`.
    #[error("`queued` is not an outcome: settle takes `delivered` or `failed`")]
    NotAnOutcome,
}
