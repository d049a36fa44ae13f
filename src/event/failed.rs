//! The `failed` event: why delivery ended without the target accepting the task,
//! and the error detail, in the portable form's flat fields.

use serde::{Deserialize, Serialize};

use super::limits::check_text;
use super::{FailureReason, InvalidEvent, ReasonCode};

/// The payload of a `failed` event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "WireFailed", into = "WireFailed")]
pub struct Failed {
    /// Why delivery failed.
    pub reason: FailureReason,
    /// The human-readable error detail (the platform's `error_detail`).
    pub detail: Option<String>,
}

#[derive(Serialize, Deserialize)]
struct WireFailed {
    reason: ReasonCode,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    http_status: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    rpc_code: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    detail: Option<String>,
}

impl Failed {
    /// [`Event::validate`](super::Event::validate) of this `failed`.
    pub(crate) fn validate(&self) -> Result<(), InvalidEvent> {
        validate_fields(self.reason, self.detail.as_deref())
    }
}

/// [`Failed::validate`] on the fields of a `failed`, borrowed.
pub(crate) fn validate_fields(
    reason: FailureReason,
    detail: Option<&str>,
) -> Result<(), InvalidEvent> {
    if let Some(detail) = detail {
        check_text("detail", detail)?;
    }
    reason.validate()
}

impl TryFrom<WireFailed> for Failed {
    type Error = InvalidEvent;

    fn try_from(wire: WireFailed) -> Result<Self, InvalidEvent> {
        let reason = match (wire.reason, wire.http_status, wire.rpc_code) {
            (ReasonCode::HttpStatus, Some(code), None) => FailureReason::HttpStatus(code),
            (ReasonCode::HttpStatus, None, _) => return Err(InvalidEvent::MissingStatus),
            (ReasonCode::RpcError, None, Some(code)) => FailureReason::RpcError(code),
            (ReasonCode::RpcError, _, None) => return Err(InvalidEvent::MissingRpcCode),
            (_, Some(code), _) => {
                return Err(InvalidEvent::UnexpectedStatus {
                    reason: wire.reason,
                    code,
                });
            }
            (_, None, Some(code)) => {
                return Err(InvalidEvent::UnexpectedRpcCode {
                    reason: wire.reason,
                    code,
                });
            }
            (ReasonCode::TargetOffline, None, None) => FailureReason::TargetOffline,
            (ReasonCode::Rejected, None, None) => FailureReason::Rejected,
            (ReasonCode::BadResponse, None, None) => FailureReason::BadResponse,
            (ReasonCode::MarshalError, None, None) => FailureReason::MarshalError,
            (ReasonCode::Timeout, None, None) => FailureReason::Timeout,
            (ReasonCode::Interrupted, None, None) => FailureReason::Interrupted,
        };
        reason.validate()?;
        Ok(Failed {
            reason,
            detail: wire.detail,
        })
    }
}

impl From<Failed> for WireFailed {
    fn from(failed: Failed) -> Self {
        WireFailed {
            reason: failed.reason.code(),
            http_status: failed.reason.http_status(),
            rpc_code: failed.reason.rpc_code(),
            detail: failed.detail,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Event;

    #[test]
    fn failed_events_round_trip_through_the_portable_form() {
        let event = Event::failed(FailureReason::HttpStatus(503), Some("busy".into())).unwrap();
        let json = serde_json::to_string(&event).unwrap();
        assert_eq!(
            json,
            r#"{"event":"failed","reason":"http_status","http_status":503,"detail":"busy"}"#
        );
        assert_eq!(serde_json::from_str::<Event>(&json).unwrap(), event);
    }

    #[test]
    fn rpc_errors_carry_their_code_and_nothing_else_does() {
        let event = Event::failed(
            FailureReason::RpcError(-32601),
            Some("Method not found".into()),
        )
        .unwrap();
        let json = serde_json::to_string(&event).unwrap();
        assert_eq!(
            json,
            r#"{"event":"failed","reason":"rpc_error","rpc_code":-32601,"detail":"Method not found"}"#
        );
        assert_eq!(serde_json::from_str::<Event>(&json).unwrap(), event);
        for refused in [
            r#"{"event":"failed","reason":"rpc_error"}"#,
            r#"{"event":"failed","reason":"rpc_error","rpc_code":-32601,"http_status":500}"#,
            r#"{"event":"failed","reason":"timeout","rpc_code":-32601}"#,
            r#"{"event":"failed","reason":"rpc_error","rpc_code":"-32601"}"#,
            r#"{"event":"failed","reason":"rpc_error","rpc_code":-32601.5}"#,
        ] {
            assert!(serde_json::from_str::<Event>(refused).is_err(), "{refused}");
        }
    }
}
