//! Events, failure reasons, and the record that carries an event into the log.
//!
//! A delegation's history is a short list of [`Record`]s: one [`Queued`], then at
//! most one outcome, [`Delivered`] or [`Failed`]. The serde form of a record is the
//! portable JSON form of `EVENT-LOG-FORMAT.md`, so the same types read the store's
//! records and an auditor's JSON Lines.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};

/// A record's position in its delegation's history: 1 for `queued`, then one more
/// for each record after it.
pub type Seq = u64;

/// The longest delegation id the log accepts, in bytes.
pub const MAX_ID_LEN: usize = 256;

/// Which attempt at a task a delegation is: 1 for the first, then one more for
/// each retry (a `queued` with `retry_of`). A delegation without `attempt` is
/// attempt 1.
pub type Attempt = u64;

/// The deepest nesting of arrays and objects a task may have: a scalar is depth
/// 0, `[1]` depth 1.
pub const MAX_TASK_DEPTH: usize = 64;

/// The largest task, in bytes of its compact JSON.
pub const MAX_TASK_BYTES: usize = 4 * 1024 * 1024;

/// The longest text field (`source`, `target`, `detail`, and the strings of
/// `remote`), in bytes.
///
/// With [`MAX_TASK_BYTES`], this keeps every record the log stores well within the
/// line limit of `verify` and `import`
/// ([`audit::MAX_LINE`](crate::audit::MAX_LINE)), escaping included: what the
/// ledger stores, an export carries and an import takes back.
pub const MAX_TEXT_BYTES: usize = 64 * 1024;

/// The id of one delegation: 1 to [`MAX_ID_LEN`] bytes of UTF-8.
///
/// ```
/// use delegation_log::DelegationId;
///
/// let id: DelegationId = "task-42".parse()?;
/// assert_eq!(id.as_str(), "task-42");
/// assert!("".parse::<DelegationId>().is_err());
/// # Ok::<(), delegation_log::event::InvalidId>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct DelegationId(String);

/// Why a string is not a [`DelegationId`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("a delegation id must be 1 to {MAX_ID_LEN} bytes, not {len}")]
pub struct InvalidId {
    /// The length, in bytes, of the refused id.
    pub len: usize,
}

impl DelegationId {
    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for DelegationId {
    type Error = InvalidId;

    fn try_from(id: String) -> Result<Self, InvalidId> {
        if id.is_empty() || id.len() > MAX_ID_LEN {
            return Err(InvalidId { len: id.len() });
        }
        Ok(Self(id))
    }
}

impl TryFrom<&str> for DelegationId {
    type Error = InvalidId;

    fn try_from(id: &str) -> Result<Self, InvalidId> {
        Self::try_from(id.to_owned())
    }
}

impl FromStr for DelegationId {
    type Err = InvalidId;

    fn from_str(id: &str) -> Result<Self, InvalidId> {
        Self::try_from(id)
    }
}

impl From<DelegationId> for String {
    fn from(id: DelegationId) -> String {
        id.0
    }
}

impl AsRef<str> for DelegationId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for DelegationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

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

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.to_rfc3339_opts(SecondsFormat::AutoSi, true))
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
    /// [`InvalidEvent::DeliveredStatus`] if `http_status` is outside 200..=299.
    pub fn delivered(http_status: Option<u16>) -> Result<Self, InvalidEvent> {
        Self::delivered_with(http_status, None)
    }

    /// A `delivered` event carrying what the agent answered: a message, or a task
    /// with its id and state.
    ///
    /// # Errors
    /// [`InvalidEvent::DeliveredStatus`] if `http_status` is outside 200..=299.
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
    /// [`InvalidEvent::FailedStatus`] if the reason is an HTTP status inside 200..=299.
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

fn check_text(field: &'static str, text: &str) -> Result<(), InvalidEvent> {
    if text.len() > MAX_TEXT_BYTES {
        return Err(InvalidEvent::TextTooLong {
            field,
            bytes: text.len(),
        });
    }
    Ok(())
}

/// The rule of the format page: `attempt` is required when and only when
/// `retry_of` is present, and is at least 2.
fn check_retry(
    retry_of: Option<&DelegationId>,
    attempt: Option<Attempt>,
) -> Result<(), InvalidEvent> {
    match (retry_of, attempt) {
        (None, None) => Ok(()),
        (Some(_), None) => Err(InvalidEvent::MissingAttempt),
        (None, Some(attempt)) => Err(InvalidEvent::UnexpectedAttempt { attempt }),
        (Some(_), Some(attempt)) if attempt < 2 => Err(InvalidEvent::AttemptTooLow { attempt }),
        (Some(_), Some(_)) => Ok(()),
    }
}

/// Checks a task's depth without recursion, then its encoded size.
pub(crate) fn check_task(task: &serde_json::Value) -> Result<(), InvalidEvent> {
    use serde_json::Value;
    let mut stack = vec![(task, 0usize)];
    while let Some((value, depth)) = stack.pop() {
        let children: Box<dyn Iterator<Item = &Value>> = match value {
            Value::Array(items) => Box::new(items.iter()),
            Value::Object(map) => Box::new(map.values()),
            _ => continue,
        };
        let depth = depth + 1;
        if depth > MAX_TASK_DEPTH {
            return Err(InvalidEvent::TaskTooDeep);
        }
        stack.extend(children.map(|child| (child, depth)));
    }
    let mut counter = Counter(0);
    // Writing to a counter fails only if serde_json fails, which it cannot for a
    // parsed value; the count is what matters.
    let _ = serde_json::to_writer(&mut counter, task);
    if counter.0 > MAX_TASK_BYTES {
        return Err(InvalidEvent::TaskTooLarge { bytes: counter.0 });
    }
    Ok(())
}

/// Counts the bytes written to it.
struct Counter(usize);

impl std::io::Write for Counter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 = self.0.saturating_add(buf.len());
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

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

    /// [`Event::validate`] of this `queued`.
    pub(crate) fn validate(&self) -> Result<(), InvalidEvent> {
        check_text("source", &self.source)?;
        check_text("target", &self.target)?;
        check_retry(self.retry_of.as_ref(), self.attempt)?;
        match &self.task {
            Some(task) => check_task(task),
            None => Ok(()),
        }
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

impl Delivered {
    /// [`Event::validate`] of this `delivered`.
    pub(crate) fn validate(&self) -> Result<(), InvalidEvent> {
        if let Some(remote) = &self.remote {
            for text in [&remote.task_id, &remote.context_id].into_iter().flatten() {
                check_text("remote", text)?;
            }
            if let Some(state) = &remote.state {
                check_text("remote", state.as_str())?;
            }
        }
        match self.http_status {
            Some(code) if !(200..=299).contains(&code) => Err(InvalidEvent::DeliveredStatus(code)),
            _ => Ok(()),
        }
    }
}

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
    /// [`Event::validate`] of this `failed`.
    pub(crate) fn validate(&self) -> Result<(), InvalidEvent> {
        if let Some(detail) = &self.detail {
            check_text("detail", detail)?;
        }
        self.reason.validate()
    }
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

    fn validate(self) -> Result<(), InvalidEvent> {
        match self {
            FailureReason::HttpStatus(code) if (200..=299).contains(&code) => {
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

/// An event that breaks a field rule of the format, whatever the state.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidEvent {
    /// `delivered` carried a status outside 200..=299.
    #[error("a delivered event's http_status must be within 200..=299, not {0}")]
    DeliveredStatus(u16),
    /// `failed` with reason `http_status` carried a 2xx status.
    #[error("a failed event's http_status must be outside 200..=299, not {0}")]
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

/// A SHA-256 digest chaining a record to the one before it in its delegation.
///
/// `hash(n) = SHA-256(hex(hash(n-1)) ‖ "\n" ‖ JCS(record n without hash))`, with
/// 64 zeros standing for `hex(hash(0))`. `docs/hash-chain.md` spells it out.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChainHash(pub [u8; 32]);

impl ChainHash {
    /// What the first record of a delegation chains to: 32 zero bytes.
    pub const GENESIS: ChainHash = ChainHash([0; 32]);

    /// Lowercase hex, 64 characters.
    pub fn to_hex(&self) -> String {
        let mut out = String::with_capacity(64);
        for byte in self.0 {
            for nibble in [byte >> 4, byte & 0x0f] {
                // A nibble is always below 16, so `from_digit` always succeeds.
                out.push(char::from_digit(u32::from(nibble), 16).unwrap_or('0'));
            }
        }
        out
    }

    /// Parses 64 lowercase hex digits.
    pub fn from_hex(text: &str) -> Option<Self> {
        let bytes = text.as_bytes();
        if bytes.len() != 64 {
            return None;
        }
        let mut out = [0u8; 32];
        for (slot, pair) in out.iter_mut().zip(bytes.chunks_exact(2)) {
            let [high, low] = pair else { return None };
            *slot = (hex_value(*high)? << 4) | hex_value(*low)?;
        }
        Some(ChainHash(out))
    }
}

fn hex_value(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        _ => None,
    }
}

impl fmt::Debug for ChainHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ChainHash({})", self.to_hex())
    }
}

impl fmt::Display for ChainHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl Serialize for ChainHash {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for ChainHash {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        ChainHash::from_hex(&text)
            .ok_or_else(|| serde::de::Error::custom("hash must be 64 lowercase hex digits"))
    }
}

/// One event of one delegation, as the log holds it.
///
/// Its serde form is one line of the portable JSON Lines format.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// Which delegation.
    pub delegation: DelegationId,
    /// Its position in the delegation's history, from 1.
    pub seq: Seq,
    /// What happened.
    #[serde(flatten)]
    pub event: Event,
    /// When it was recorded.
    pub at: Timestamp,
    /// The chain hash; always present in the store, optional in JSON Lines.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash: Option<ChainHash>,
}

impl Record {
    /// The canonical bytes behind the hash: RFC 8785 (JCS) JSON of the record
    /// without its `hash` field.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(256);
        match self.write_canonical(&mut out) {
            Ok(()) => out,
            Err(NotFast) => self.canonical_bytes_generic(),
        }
    }

    /// JCS through the generic canonicalizer, which sorts keys at run time.
    fn canonical_bytes_generic(&self) -> Vec<u8> {
        let unhashed = UnhashedRecord {
            delegation: &self.delegation,
            seq: self.seq,
            event: &self.event,
            at: self.at,
        };
        // JCS of a value that serde_json can always represent: the record's own
        // fields are strings, integers and an already-parsed JSON task.
        serde_json_canonicalizer::to_vec(&unhashed).unwrap_or_default()
    }

    /// JCS written directly, the keys in the order JCS sorts them: `at`,
    /// `attempt`, `delegation`, `detail`, `event`, `http_status`, `not_before`,
    /// `reason`, `remote`, `retry_of`, `rpc_code`, `seq`, `source`, `target`,
    /// `task`. Strings are escaped as serde_json escapes them, which is what JCS
    /// asks; integers up to 2^53 are their decimal digits in both. A seq or an
    /// attempt beyond 2^53 (which JCS writes as a rounded double) is left to the
    /// generic path; a task is canonicalized by it in place.
    fn write_canonical(&self, out: &mut Vec<u8>) -> Result<(), NotFast> {
        const MAX_EXACT: Seq = 1 << 53;
        if self.seq > MAX_EXACT {
            return Err(NotFast);
        }
        let string = |out: &mut Vec<u8>, text: &str| {
            serde_json::to_writer(&mut *out, text).map_err(|_| NotFast)
        };
        let (attempt, not_before, retry_of) = match &self.event {
            Event::Queued(queued) => (queued.attempt, queued.not_before, queued.retry_of.as_ref()),
            _ => (None, None, None),
        };
        out.extend_from_slice(b"{\"at\":\"");
        out.extend_from_slice(self.at.to_string().as_bytes());
        out.push(b'"');
        if let Some(attempt) = attempt {
            if attempt > MAX_EXACT {
                return Err(NotFast);
            }
            out.extend_from_slice(b",\"attempt\":");
            out.extend_from_slice(attempt.to_string().as_bytes());
        }
        out.extend_from_slice(b",\"delegation\":");
        string(out, self.delegation.as_str())?;
        let (detail, http_status, reason, remote, rpc_code) = match &self.event {
            Event::Queued(_) => (None, None, None, None, None),
            Event::Delivered(delivered) => (
                None,
                delivered.http_status,
                None,
                delivered.remote.as_ref(),
                None,
            ),
            Event::Failed(failed) => (
                failed.detail.as_deref(),
                failed.reason.http_status(),
                Some(failed.reason.code()),
                None,
                failed.reason.rpc_code(),
            ),
        };
        if let Some(detail) = detail {
            out.extend_from_slice(b",\"detail\":");
            string(out, detail)?;
        }
        out.extend_from_slice(b",\"event\":\"");
        out.extend_from_slice(self.event.kind().as_str().as_bytes());
        out.push(b'"');
        if let Some(code) = http_status {
            out.extend_from_slice(b",\"http_status\":");
            out.extend_from_slice(code.to_string().as_bytes());
        }
        if let Some(not_before) = not_before {
            out.extend_from_slice(b",\"not_before\":\"");
            out.extend_from_slice(not_before.to_string().as_bytes());
            out.push(b'"');
        }
        if let Some(reason) = reason {
            out.extend_from_slice(b",\"reason\":\"");
            out.extend_from_slice(reason.as_str().as_bytes());
            out.push(b'"');
        }
        if let Some(remote) = remote {
            out.extend_from_slice(b",\"remote\":");
            serde_json_canonicalizer::to_writer(remote, &mut *out).map_err(|_| NotFast)?;
        }
        if let Some(retry_of) = retry_of {
            out.extend_from_slice(b",\"retry_of\":");
            string(out, retry_of.as_str())?;
        }
        if let Some(code) = rpc_code {
            // JCS writes integers beyond 2^53 as rounded doubles: the generic path.
            if code.unsigned_abs() > MAX_EXACT {
                return Err(NotFast);
            }
            out.extend_from_slice(b",\"rpc_code\":");
            out.extend_from_slice(code.to_string().as_bytes());
        }
        out.extend_from_slice(b",\"seq\":");
        out.extend_from_slice(self.seq.to_string().as_bytes());
        if let Event::Queued(queued) = &self.event {
            out.extend_from_slice(b",\"source\":");
            string(out, &queued.source)?;
            out.extend_from_slice(b",\"target\":");
            string(out, &queued.target)?;
            if let Some(task) = queued.task.as_ref().filter(|task| !task.is_null()) {
                out.extend_from_slice(b",\"task\":");
                serde_json_canonicalizer::to_writer(task, &mut *out).map_err(|_| NotFast)?;
            }
        }
        out.push(b'}');
        Ok(())
    }

    /// The chain hash of this record, given the hash of the record before it
    /// ([`ChainHash::GENESIS`] for the first).
    pub fn chain_hash(&self, previous: &ChainHash) -> ChainHash {
        let mut digest = Sha256::new();
        digest.update(previous.to_hex().as_bytes());
        digest.update(b"\n");
        digest.update(self.canonical_bytes());
        ChainHash(digest.finalize().into())
    }
}

/// The fast JCS writer does not apply; the generic one does.
struct NotFast;

#[derive(Serialize)]
struct UnhashedRecord<'a> {
    delegation: &'a DelegationId,
    seq: Seq,
    #[serde(flatten)]
    event: &'a Event,
    at: Timestamp,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_outside_one_to_256_bytes_are_refused() {
        assert!(DelegationId::try_from("").is_err());
        assert!(DelegationId::try_from("a".repeat(256)).is_ok());
        assert_eq!(
            DelegationId::try_from("a".repeat(257)),
            Err(InvalidId { len: 257 })
        );
    }

    #[test]
    fn timestamps_normalize_to_utc_with_the_fewest_exact_digits() {
        let at: Timestamp = "2026-06-07T03:32:07.250+02:00".parse().unwrap();
        assert_eq!(at.to_string(), "2026-06-07T01:32:07.250Z");
        let at: Timestamp = "2026-06-07T01:32:07Z".parse().unwrap();
        assert_eq!(at.to_string(), "2026-06-07T01:32:07Z");
    }

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
                retry_of: retry_of.map(|id| DelegationId(id.to_owned())),
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

    fn any_text() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        prop_oneof![
            "[a-z0-9:/._-]{1,12}",
            any::<String>().prop_filter("ids are non-empty", |s| !s.is_empty()),
            Just("\"\\/\u{0}\u{1f}\u{7f}\u{2028}é😀\t\n\r\u{8}\u{c}".to_owned()),
        ]
    }

    fn any_remote() -> impl proptest::strategy::Strategy<Value = Remote> {
        use proptest::prelude::*;
        let state = prop_oneof![
            Just(TaskState::Working),
            Just(TaskState::InputRequired),
            Just(TaskState::Rejected),
            any_text().prop_map(TaskState::Other),
        ];
        (
            prop_oneof![Just(RemoteKind::Message), Just(RemoteKind::Task)],
            proptest::option::of(any_text()),
            proptest::option::of(any_text()),
            proptest::option::of(state),
        )
            .prop_map(|(kind, task_id, context_id, state)| Remote {
                kind,
                task_id,
                context_id,
                state,
            })
    }

    fn any_record() -> impl proptest::strategy::Strategy<Value = Record> {
        use proptest::prelude::*;
        let task = prop_oneof![
            Just(None),
            Just(Some(
                serde_json::json!({"b": [1, 2.5, -0.0, 1e21, null], "a": "x", "é": {"z": true, "A": 1}})
            )),
            any::<(i64, f64, String)>().prop_map(|(i, f, s)| {
                Some(serde_json::json!({"s": s, "i": i, "f": if f.is_finite() { f } else { 0.5 }}))
            }),
        ];
        let reason = prop_oneof![
            Just(FailureReason::TargetOffline),
            (300u16..=599).prop_map(FailureReason::HttpStatus),
            prop_oneof![Just(-32601i64), Just(-32603), any::<i64>()]
                .prop_map(FailureReason::RpcError),
            Just(FailureReason::Rejected),
            Just(FailureReason::BadResponse),
            Just(FailureReason::MarshalError),
            Just(FailureReason::Timeout),
            Just(FailureReason::Interrupted),
        ];
        let attempt = prop_oneof![
            2u64..=5,
            2u64..=u64::MAX,
            (1u64 << 53) - 2..=(1u64 << 53) + 2
        ];
        let retry = proptest::option::of((any_text(), attempt));
        let not_before = proptest::option::of(prop_oneof![
            Just(1_780_795_927_000_000_000i64),
            Just(1_780_795_927_000_000_001i64),
            any::<i64>(),
        ]);
        let event = prop_oneof![
            (any_text(), any_text(), task, retry, not_before).prop_map(
                |(source, target, task, retry, not_before)| {
                    let (retry_of, attempt) = match retry {
                        Some((of, attempt)) => (
                            DelegationId::try_from(of.chars().take(64).collect::<String>()).ok(),
                            Some(attempt),
                        ),
                        None => (None, None),
                    };
                    Event::Queued(Queued {
                        source,
                        target,
                        task,
                        attempt: attempt.filter(|_| retry_of.is_some()),
                        retry_of,
                        not_before: not_before.map(Timestamp::from_unix_nanos),
                    })
                }
            ),
            (
                proptest::option::of(200u16..=299),
                proptest::option::of(any_remote())
            )
                .prop_map(|(http_status, remote)| Event::Delivered(Delivered {
                    http_status,
                    remote
                })),
            (reason, proptest::option::of(any_text()))
                .prop_map(|(reason, detail)| Event::Failed(Failed { reason, detail })),
        ];
        let seq = prop_oneof![1u64..=3, any::<u64>(), (1u64 << 53) - 2..=(1u64 << 53) + 2];
        let at = prop_oneof![
            Just(1_780_795_927_000_000_000i64),
            Just(1_780_795_927_250_000_000i64),
            any::<i64>(),
        ];
        (any_text(), seq, event, at).prop_map(|(id, seq, event, at)| Record {
            delegation: DelegationId::try_from(id.chars().take(64).collect::<String>())
                .unwrap_or_else(|_| DelegationId("x".to_owned())),
            seq,
            event,
            at: Timestamp::from_unix_nanos(at),
            hash: None,
        })
    }

    proptest::proptest! {
        #![proptest_config(proptest::test_runner::Config {
            cases: 512,
            failure_persistence: Some(Box::new(
                proptest::test_runner::FileFailurePersistence::Direct(
                    "proptest-regressions/event-canonical-bytes.txt",
                ),
            )),
            ..proptest::test_runner::Config::default()
        })]

        #[test]
        fn the_direct_jcs_writer_agrees_with_the_generic_canonicalizer(record in any_record()) {
            let direct = String::from_utf8(record.canonical_bytes());
            let generic = String::from_utf8(record.canonical_bytes_generic());
            proptest::prop_assert_eq!(direct, generic);
        }
    }

    #[test]
    fn chain_hashes_round_trip_through_hex() {
        let hash = ChainHash([0xab; 32]);
        assert_eq!(ChainHash::from_hex(&hash.to_hex()), Some(hash));
        assert_eq!(ChainHash::from_hex("AB"), None);
        assert_eq!(ChainHash::from_hex(&"A".repeat(64)), None);
    }
}
