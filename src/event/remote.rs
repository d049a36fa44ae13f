//! What an agent answered to a delivered task: a message or a task, with the
//! task's state in one vocabulary for every A2A version.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// What an agent answered to a delivered task: the `remote` object of a
/// `delivered` record.
///
/// ```
/// use delegation_log::event::{Remote, RemoteKind, TaskState};
///
/// let remote: Remote = serde_json::from_str(r#"{"kind":"task","task_id":"t-1","state":"working"}"#)?;
/// assert_eq!(remote.kind, RemoteKind::Task);
/// assert_eq!(remote.state, Some(TaskState::Working));
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Remote {
    /// Whether the agent answered with a message or opened a task.
    pub kind: RemoteKind,
    /// The agent's task id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_id: Option<String>,
    /// The agent's context id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context_id: Option<String>,
    /// The task's state, in one vocabulary for every A2A version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<TaskState>,
}

impl Remote {
    /// An answer that is a message, with no task.
    pub fn message() -> Self {
        Remote {
            kind: RemoteKind::Message,
            task_id: None,
            context_id: None,
            state: None,
        }
    }
}

/// The `kind` of a [`Remote`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RemoteKind {
    /// The agent answered with a message.
    Message,
    /// The agent opened a task.
    Task,
}

/// An A2A task's state, in one vocabulary whichever protocol version sent it: 0.3
/// `"input-required"` and 1.0 `"TASK_STATE_INPUT_REQUIRED"` are both
/// [`TaskState::InputRequired`].
///
/// ```
/// use delegation_log::event::TaskState;
///
/// assert_eq!(TaskState::from_wire("working"), TaskState::Working);
/// assert_eq!(TaskState::from_wire("TASK_STATE_WORKING"), TaskState::Working);
/// assert_eq!(TaskState::from_wire("input-required"), TaskState::InputRequired);
/// assert_eq!(TaskState::Working.as_str(), "working");
/// assert!(TaskState::Rejected.is_terminal() && !TaskState::InputRequired.is_terminal());
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum TaskState {
    /// Received, not yet started.
    Submitted,
    /// In progress.
    Working,
    /// Waiting for the sender's input (interrupted, not terminal).
    InputRequired,
    /// Waiting for authentication (interrupted, not terminal).
    AuthRequired,
    /// Done.
    Completed,
    /// The agent failed it.
    Failed,
    /// Canceled.
    Canceled,
    /// The agent refused it.
    Rejected,
    /// The agent says it does not know.
    Unknown,
    /// A state outside the vocabulary, kept as it came.
    Other(String),
}

impl TaskState {
    /// Reads a state as either A2A version writes it (`working`,
    /// `TASK_STATE_WORKING`, `input-required`, …) or as the log writes it
    /// (`input_required`). Anything else is [`TaskState::Other`], kept as it came.
    pub fn from_wire(text: &str) -> Self {
        let bare = text.strip_prefix("TASK_STATE_").unwrap_or(text);
        let normal = bare.to_ascii_lowercase().replace('-', "_");
        match normal.as_str() {
            "submitted" => TaskState::Submitted,
            "working" => TaskState::Working,
            "input_required" => TaskState::InputRequired,
            "auth_required" => TaskState::AuthRequired,
            "completed" => TaskState::Completed,
            "failed" => TaskState::Failed,
            "canceled" | "cancelled" => TaskState::Canceled,
            "rejected" => TaskState::Rejected,
            "unknown" | "unspecified" => TaskState::Unknown,
            _ => TaskState::Other(text.to_owned()),
        }
    }

    /// The state's name in the log: `submitted`, `working`, `input_required`, …
    pub fn as_str(&self) -> &str {
        match self {
            TaskState::Submitted => "submitted",
            TaskState::Working => "working",
            TaskState::InputRequired => "input_required",
            TaskState::AuthRequired => "auth_required",
            TaskState::Completed => "completed",
            TaskState::Failed => "failed",
            TaskState::Canceled => "canceled",
            TaskState::Rejected => "rejected",
            TaskState::Unknown => "unknown",
            TaskState::Other(text) => text,
        }
    }

    /// Reads a state as the log stores it: the log's own names exactly, and any
    /// other text as [`TaskState::Other`], kept as it came, so that a stored record
    /// re-encodes to the same bytes (`TASK_STATE_WORKING` stays `Other`, where
    /// [`TaskState::from_wire`] would read it as `Working`).
    pub(crate) fn from_log(text: &str) -> Self {
        let state = TaskState::from_wire(text);
        if state.as_str() == text {
            state
        } else {
            TaskState::Other(text.to_owned())
        }
    }

    /// Whether the task can change no more: completed, failed, canceled or rejected.
    pub fn is_terminal(&self) -> bool {
        matches!(
            self,
            TaskState::Completed | TaskState::Failed | TaskState::Canceled | TaskState::Rejected
        )
    }
}

impl fmt::Display for TaskState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for TaskState {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for TaskState {
    /// The log's own vocabulary is read exactly; any other string is
    /// [`TaskState::Other`], so that a record re-encodes to the same bytes.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Ok(TaskState::from_log(&text))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_states_read_both_a2a_vocabularies_and_keep_strangers() {
        for (wire, state) in [
            ("submitted", TaskState::Submitted),
            ("TASK_STATE_SUBMITTED", TaskState::Submitted),
            ("input-required", TaskState::InputRequired),
            ("TASK_STATE_INPUT_REQUIRED", TaskState::InputRequired),
            ("auth-required", TaskState::AuthRequired),
            ("TASK_STATE_AUTH_REQUIRED", TaskState::AuthRequired),
            ("TASK_STATE_CANCELLED", TaskState::Canceled),
            ("canceled", TaskState::Canceled),
            ("TASK_STATE_REJECTED", TaskState::Rejected),
            ("TASK_STATE_UNSPECIFIED", TaskState::Unknown),
            ("unknown", TaskState::Unknown),
            ("paused", TaskState::Other("paused".into())),
        ] {
            assert_eq!(TaskState::from_wire(wire), state, "{wire}");
        }
        // The log's own form reads back exactly; a wire form read from a log is kept.
        let kept: TaskState = serde_json::from_str(r#""TASK_STATE_WORKING""#).unwrap();
        assert_eq!(kept, TaskState::Other("TASK_STATE_WORKING".into()));
        let own: TaskState = serde_json::from_str(r#""input_required""#).unwrap();
        assert_eq!(own, TaskState::InputRequired);
    }
}
