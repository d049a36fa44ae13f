//! Why a delivery failed, the reason's name in the log, and whether the target
//! may have received the task: what a sender needs before it retries.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::InvalidEvent;
use super::http_status::Code;

/// Why a delivery failed. [`FailureReason::received`] says, for each, whether the
/// target may have the task.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FailureReason {
    /// The target could not be reached: connection refused, unknown host, or a reset
    /// before the request was sent.
    TargetOffline,
    /// The target or a proxy answered with this non-2xx status.
    HttpStatus(u16),
    /// A 2xx answer carrying a JSON-RPC error object with this code: the agent did
    /// not take the task (unknown method, invalid params, unsupported version, …).
    RpcError(i64),
    /// The agent received the task and refused it (an A2A task in state
    /// `rejected`).
    Rejected,
    /// A 2xx answer that is not a JSON-RPC response to this request: not JSON,
    /// neither `result` nor `error`, or another `id`.
    BadResponse,
    /// The task could not be encoded for sending.
    MarshalError,
    /// No answer came within the delivery deadline.
    Timeout,
    /// The process stopped before the outcome was known; written by recovery.
    Interrupted,
}

/// A failure reason's name in the log, without the status code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReasonCode {
    /// See [`FailureReason::TargetOffline`].
    TargetOffline,
    /// See [`FailureReason::HttpStatus`].
    HttpStatus,
    /// See [`FailureReason::RpcError`].
    RpcError,
    /// See [`FailureReason::Rejected`].
    Rejected,
    /// See [`FailureReason::BadResponse`].
    BadResponse,
    /// See [`FailureReason::MarshalError`].
    MarshalError,
    /// See [`FailureReason::Timeout`].
    Timeout,
    /// See [`FailureReason::Interrupted`].
    Interrupted,
}

impl ReasonCode {
    /// The reason's name in the log, such as `target_offline`.
    pub fn as_str(self) -> &'static str {
        match self {
            ReasonCode::TargetOffline => "target_offline",
            ReasonCode::HttpStatus => "http_status",
            ReasonCode::RpcError => "rpc_error",
            ReasonCode::Rejected => "rejected",
            ReasonCode::BadResponse => "bad_response",
            ReasonCode::MarshalError => "marshal_error",
            ReasonCode::Timeout => "timeout",
            ReasonCode::Interrupted => "interrupted",
        }
    }
}

impl fmt::Display for ReasonCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether the target may have received a task whose delivery failed: what the
/// sender needs to know before it retries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Received {
    /// The target cannot have it; a retry cannot duplicate the task.
    No,
    /// The target answered, so it (or a proxy in front of it) saw the request.
    Yes,
    /// Nobody knows; a retry may duplicate the task, so receivers should drop
    /// repeats of the same message id.
    Unknown,
}

impl FailureReason {
    /// The reason's name in the log.
    pub fn code(self) -> ReasonCode {
        match self {
            FailureReason::TargetOffline => ReasonCode::TargetOffline,
            FailureReason::HttpStatus(_) => ReasonCode::HttpStatus,
            FailureReason::RpcError(_) => ReasonCode::RpcError,
            FailureReason::Rejected => ReasonCode::Rejected,
            FailureReason::BadResponse => ReasonCode::BadResponse,
            FailureReason::MarshalError => ReasonCode::MarshalError,
            FailureReason::Timeout => ReasonCode::Timeout,
            FailureReason::Interrupted => ReasonCode::Interrupted,
        }
    }

    /// The HTTP status, for [`FailureReason::HttpStatus`].
    pub fn http_status(self) -> Option<u16> {
        match self {
            FailureReason::HttpStatus(code) => Some(code),
            _ => None,
        }
    }

    /// The JSON-RPC error code, for [`FailureReason::RpcError`].
    pub fn rpc_code(self) -> Option<i64> {
        match self {
            FailureReason::RpcError(code) => Some(code),
            _ => None,
        }
    }

    /// Whether the target may have received the task, by the table of
    /// `EVENT-LOG-FORMAT.md`:
    ///
    /// | reason | received |
    /// | --- | --- |
    /// | `target_offline`, `marshal_error` | no |
    /// | `http_status` 3xx, 4xx, 501, 503 | no: refused before anyone took the task |
    /// | `http_status`, any other code | unknown |
    /// | `rpc_error` | no, except -32603 (internal error): unknown |
    /// | `rejected` | yes: the agent took it, then refused it |
    /// | `bad_response`, `timeout`, `interrupted` | unknown |
    pub fn received(self) -> Received {
        match self {
            FailureReason::TargetOffline | FailureReason::MarshalError => Received::No,
            FailureReason::HttpStatus(300..=499 | 501 | 503) => Received::No,
            FailureReason::HttpStatus(_) => Received::Unknown,
            FailureReason::RpcError(INTERNAL_ERROR) => Received::Unknown,
            FailureReason::RpcError(_) => Received::No,
            FailureReason::Rejected => Received::Yes,
            FailureReason::BadResponse | FailureReason::Timeout | FailureReason::Interrupted => {
                Received::Unknown
            }
        }
    }

    pub(super) fn validate(self) -> Result<(), InvalidEvent> {
        match self {
            FailureReason::HttpStatus(code) if Code(code).is_success() => {
                Err(InvalidEvent::FailedStatus(code))
            }
            _ => Ok(()),
        }
    }
}

/// JSON-RPC's "internal error": the agent may have taken the task before failing.
const INTERNAL_ERROR: i64 = -32603;

impl fmt::Display for FailureReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FailureReason::HttpStatus(code) => write!(f, "http_status {code}"),
            FailureReason::RpcError(code) => write!(f, "rpc_error {code}"),
            other => f.write_str(other.code().as_str()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_reason_says_whether_the_target_may_have_the_task() {
        assert_eq!(FailureReason::TargetOffline.received(), Received::No);
        assert_eq!(FailureReason::MarshalError.received(), Received::No);
        assert_eq!(FailureReason::HttpStatus(503).received(), Received::No);
        assert_eq!(FailureReason::HttpStatus(404).received(), Received::No);
        assert_eq!(FailureReason::HttpStatus(301).received(), Received::No);
        assert_eq!(FailureReason::HttpStatus(501).received(), Received::No);
        assert_eq!(FailureReason::HttpStatus(500).received(), Received::Unknown);
        assert_eq!(FailureReason::HttpStatus(502).received(), Received::Unknown);
        assert_eq!(FailureReason::HttpStatus(504).received(), Received::Unknown);
        assert_eq!(FailureReason::RpcError(-32601).received(), Received::No);
        assert_eq!(FailureReason::RpcError(-32009).received(), Received::No);
        assert_eq!(
            FailureReason::RpcError(-32603).received(),
            Received::Unknown
        );
        assert_eq!(FailureReason::Rejected.received(), Received::Yes);
        assert_eq!(FailureReason::BadResponse.received(), Received::Unknown);
        assert_eq!(FailureReason::Timeout.received(), Received::Unknown);
        assert_eq!(FailureReason::Interrupted.received(), Received::Unknown);
    }
}
