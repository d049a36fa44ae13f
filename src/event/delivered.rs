//! The `delivered` event: the target accepted the task, with the 2xx status it
//! answered and what the agent said about the task.

use serde::{Deserialize, Serialize};

use super::http_status::Code;
use super::limits::check_text;
use super::{InvalidEvent, Remote};

/// The payload of a `delivered` event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "WireDelivered")]
pub struct Delivered {
    /// The 2xx status the target answered with, when delivery was over HTTP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_status: Option<u16>,
    /// What the agent answered, so that the sender can follow the task it handed
    /// over.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote: Option<Remote>,
}

#[derive(Deserialize)]
struct WireDelivered {
    #[serde(default)]
    http_status: Option<u16>,
    #[serde(default)]
    remote: Option<Remote>,
}

impl TryFrom<WireDelivered> for Delivered {
    type Error = InvalidEvent;

    fn try_from(wire: WireDelivered) -> Result<Self, InvalidEvent> {
        let delivered = Delivered {
            http_status: wire.http_status,
            remote: wire.remote,
        };
        delivered.validate()?;
        Ok(delivered)
    }
}

impl Delivered {
    pub(crate) fn validate(&self) -> Result<(), InvalidEvent> {
        let texts = self.remote.as_ref().map(|remote| {
            [
                remote.task_id.as_deref(),
                remote.context_id.as_deref(),
                remote.state.as_ref().map(super::TaskState::as_str),
            ]
        });
        validate_fields(self.http_status, texts)
    }
}

/// [`Delivered::validate`] on the fields of a `delivered`, borrowed: the status,
/// and the remote's task id, context id and state (as the log names it), if it
/// has a remote.
pub(crate) fn validate_fields(
    http_status: Option<u16>,
    remote: Option<[Option<&str>; 3]>,
) -> Result<(), InvalidEvent> {
    for text in remote.into_iter().flatten().flatten() {
        check_text("remote", text)?;
    }
    match http_status {
        Some(code) if !Code(code).is_success() => Err(InvalidEvent::DeliveredStatus(code)),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use crate::event::{Event, RemoteKind, TaskState};

    #[test]
    fn delivered_events_keep_what_the_agent_answered() {
        let json = r#"{"event":"delivered","http_status":200,"remote":{"kind":"task","task_id":"t-1","context_id":"c-1","state":"TASK_STATE_ODD"}}"#;
        let event: Event = serde_json::from_str(json).unwrap();
        let Event::Delivered(delivered) = &event else {
            panic!("not delivered")
        };
        let remote = delivered.remote.clone().unwrap();
        assert_eq!(remote.kind, RemoteKind::Task);
        assert_eq!(
            remote.state,
            Some(TaskState::Other("TASK_STATE_ODD".into()))
        );
        assert_eq!(serde_json::to_string(&event).unwrap(), json);
        let bad_kind = r#"{"event":"delivered","remote":{"kind":"note"}}"#;
        assert!(serde_json::from_str::<Event>(bad_kind).is_err());
        let no_kind = r#"{"event":"delivered","remote":{"task_id":"t"}}"#;
        assert!(serde_json::from_str::<Event>(no_kind).is_err());
    }
}
