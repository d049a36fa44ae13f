//! The body of format version 2: the record without its hash, as postcard 1.x of a
//! private mirror of its fields; and the mirrors of the event parts the
//! [head](super::head) shares.
//!
//! The public types' serde forms are the portable JSON ones (internally tagged
//! enums, RFC 3339 strings), which postcard cannot carry, so postcard writes these
//! mirrors instead. Their field and variant order is the stored format (postcard
//! writes fields in order, and a variant as its index): changing it needs a new
//! format version. The mirrors hold no rules; reading converts a mirror to the
//! public types and then checks [`Event::validate`](crate::event::Event::validate),
//! the rules the ledger checks before it writes.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::DecodeError;
use crate::event::{self, DelegationId, InvalidEvent, Record, TaskState, Timestamp};

/// The version-2 body of `record`, whatever its hash. A `null` task is written as
/// no task.
#[cfg(test)]
pub(super) fn body(record: &Record) -> Vec<u8> {
    write_body(record, Vec::new())
}

/// `out` with the version-2 body of `record` appended (see [`body`]).
pub(super) fn write_body(record: &Record, out: Vec<u8>) -> Vec<u8> {
    let task = task_text(record);
    write(&Body::of(record, task.as_deref()), out)
}

/// The stored text of a queued record's task: compact JSON; none for a `null`
/// task, which is written as no task.
fn task_text(record: &Record) -> Option<String> {
    match &record.event {
        event::Event::Queued(queued) => queued
            .task
            .as_ref()
            .filter(|task| !task.is_null())
            // A parsed JSON value always serializes; an empty text, which would
            // not, is refused by `read` rather than lost.
            .map(|task| serde_json::to_string(task).unwrap_or_default()),
        _ => None,
    }
}

/// `out` with the postcard of a mirror appended. Postcard fails only on what the
/// mirrors never hold (sequences of unknown length, self-describing values); an
/// empty body, which that would leave, is refused when read rather than lost.
pub(super) fn write<T: Serialize>(mirror: &T, mut out: Vec<u8>) -> Vec<u8> {
    let len = out.len();
    if postcard::serialize_with_flavor(mirror, Append(&mut out)).is_err() {
        out.truncate(len);
    }
    out
}

/// A postcard output that appends to a buffer it borrows.
struct Append<'a>(&'a mut Vec<u8>);

impl postcard::ser_flavors::Flavor for Append<'_> {
    type Output = ();

    fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
        self.0.extend_from_slice(data);
        Ok(())
    }

    fn try_push(&mut self, byte: u8) -> postcard::Result<()> {
        self.0.push(byte);
        Ok(())
    }

    fn finalize(self) -> postcard::Result<()> {
        Ok(())
    }
}

/// Whether `mirror` encodes to exactly `stored`: the canonical-form check of
/// every read, done by encoding against the stored bytes, byte by byte, with
/// nothing allocated; it stops at the first difference.
pub(super) fn encodes_to<T: Serialize>(mirror: &T, stored: &[u8]) -> bool {
    postcard::serialize_with_flavor(mirror, Compare { rest: stored }).is_ok()
}

/// A postcard output that compares what is written with `rest` and consumes it:
/// it fails at the first byte that differs, and at the end if bytes remain.
struct Compare<'a> {
    rest: &'a [u8],
}

impl postcard::ser_flavors::Flavor for Compare<'_> {
    type Output = ();

    fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
        match self.rest.strip_prefix(data) {
            Some(rest) => {
                self.rest = rest;
                Ok(())
            }
            // Postcard has no "differs"; the error is only ever read as "no".
            None => Err(postcard::Error::SerializeBufferFull),
        }
    }

    fn try_push(&mut self, byte: u8) -> postcard::Result<()> {
        self.try_extend(&[byte])
    }

    fn finalize(self) -> postcard::Result<()> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(postcard::Error::SerializeBufferFull)
        }
    }
}

/// Postcard bytes as a mirror, without the rules of the format.
pub(super) fn from_bytes<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, DecodeError> {
    postcard::from_bytes(bytes).map_err(|e| DecodeError::Body(e.to_string()))
}

/// Reads a version-2 body, strictly: it must hold a record that passes
/// [`Event::validate`](crate::event::Event::validate), and be exactly what
/// [`write_body`] writes for it. The record comes back without its hash.
pub(super) fn read(bytes: &[u8]) -> Result<Record, DecodeError> {
    let mirror: Body<'_> = from_bytes(bytes)?;
    let record = Record {
        delegation: id("delegation", mirror.delegation)?,
        seq: mirror.seq,
        at: mirror.at.timestamp("at")?,
        event: mirror.event.into_event()?,
        hash: None,
    };
    record.event.validate().map_err(broken)?;
    let task = task_text(&record);
    if !encodes_to(&Body::of(&record, task.as_deref()), bytes) {
        return Err(DecodeError::NonCanonical);
    }
    Ok(record)
}

/// `text` as the delegation id in `field`.
pub(super) fn id(field: &str, text: &str) -> Result<DelegationId, DecodeError> {
    DelegationId::try_from(text).map_err(|e| DecodeError::Body(format!("`{field}`: {e}")))
}

/// Checks `text` as the delegation id in `field` (as [`id`] does), without
/// taking it.
pub(super) fn check_id(field: &str, text: &str) -> Result<(), DecodeError> {
    event::rules::id(text).map_err(|e| DecodeError::Body(format!("`{field}`: {e}")))
}

/// A rule of the format that the decoded event breaks.
pub(super) fn broken(rule: InvalidEvent) -> DecodeError {
    DecodeError::Body(rule.to_string())
}

/// A record without its hash.
#[derive(Serialize, Deserialize)]
struct Body<'a> {
    delegation: &'a str,
    seq: u64,
    at: Instant,
    #[serde(borrow)]
    event: Event<'a>,
}

impl<'a> Body<'a> {
    /// The mirror of `record`, with `task` as the queued task's JSON text.
    fn of(record: &'a Record, task: Option<&'a str>) -> Self {
        let event = match &record.event {
            event::Event::Queued(queued) => Event::Queued(Queued {
                source: &queued.source,
                target: &queued.target,
                task,
                retry_of: queued.retry_of.as_ref().map(DelegationId::as_str),
                attempt: queued.attempt,
                not_before: queued.not_before.map(Instant::of),
            }),
            event::Event::Delivered(delivered) => {
                Event::Delivered(Delivered::of(delivered.http_status, &delivered.remote))
            }
            event::Event::Failed(failed) => Event::Failed(Failed::of(failed)),
        };
        Body {
            delegation: record.delegation.as_str(),
            seq: record.seq,
            at: Instant::of(record.at),
            event,
        }
    }
}

/// [`event::Event`], in the order of [`event::EventKind::ALL`].
#[derive(Serialize, Deserialize)]
enum Event<'a> {
    Queued(#[serde(borrow)] Queued<'a>),
    Delivered(#[serde(borrow)] Delivered<'a>),
    Failed(#[serde(borrow)] Failed<'a>),
}

impl Event<'_> {
    /// The event, its fields converted but its rules not yet checked.
    fn into_event(self) -> Result<event::Event, DecodeError> {
        Ok(match self {
            Event::Queued(queued) => event::Event::Queued(event::Queued {
                source: queued.source.to_owned(),
                target: queued.target.to_owned(),
                task: queued
                    .task
                    .map(serde_json::from_str)
                    .transpose()
                    .map_err(|e| DecodeError::Body(format!("the task is not JSON: {e}")))?,
                retry_of: queued
                    .retry_of
                    .map(|text| id("retry_of", text))
                    .transpose()?,
                attempt: queued.attempt,
                not_before: queued
                    .not_before
                    .map(|at| at.timestamp("not_before"))
                    .transpose()?,
            }),
            Event::Delivered(delivered) => event::Event::Delivered(delivered.into_event()),
            Event::Failed(failed) => event::Event::Failed(failed.into_event()),
        })
    }
}

/// [`event::Queued`].
#[derive(Serialize, Deserialize)]
struct Queued<'a> {
    source: &'a str,
    target: &'a str,
    /// The task's compact JSON text, as `serde_json::to_string` writes it; never
    /// `null`.
    #[serde(borrow)]
    task: Option<&'a str>,
    #[serde(borrow)]
    retry_of: Option<&'a str>,
    attempt: Option<u64>,
    not_before: Option<Instant>,
}

/// [`event::Delivered`], and the fields of a delivered
/// [`Outcome`](crate::delegation::Outcome).
#[derive(Clone, Copy, Serialize, Deserialize)]
pub(super) struct Delivered<'a> {
    http_status: Option<u16>,
    #[serde(borrow)]
    remote: Option<Remote<'a>>,
}

impl<'a> Delivered<'a> {
    /// The mirror of a delivery's fields.
    pub(super) fn of(http_status: Option<u16>, remote: &'a Option<event::Remote>) -> Self {
        Delivered {
            http_status,
            remote: remote.as_ref().map(Remote::of),
        }
    }

    /// The delivery, its rules not yet checked.
    pub(super) fn into_event(self) -> event::Delivered {
        event::Delivered {
            http_status: self.http_status,
            remote: self.remote(),
        }
    }

    /// The rules of [`event::Delivered`], checked on the borrowed fields.
    pub(super) fn check(&self) -> Result<(), DecodeError> {
        let texts = self
            .remote
            .map(|remote| [remote.task_id, remote.context_id, remote.state]);
        event::rules::delivered(self.http_status, texts).map_err(broken)
    }

    /// The status the target answered.
    pub(super) fn http_status(&self) -> Option<u16> {
        self.http_status
    }

    /// What the agent answered, owned.
    pub(super) fn remote(&self) -> Option<event::Remote> {
        self.remote.map(Remote::into_remote)
    }
}

/// [`event::Failed`].
#[derive(Clone, Copy, Serialize, Deserialize)]
pub(super) struct Failed<'a> {
    reason: Reason,
    #[serde(borrow)]
    detail: Option<&'a str>,
}

impl<'a> Failed<'a> {
    /// The mirror of `failed`.
    pub(super) fn of(failed: &'a event::Failed) -> Self {
        Failed {
            reason: Reason::of(failed.reason),
            detail: failed.detail.as_deref(),
        }
    }

    /// The failure, its rules not yet checked.
    pub(super) fn into_event(self) -> event::Failed {
        event::Failed {
            reason: self.reason.into_reason(),
            detail: self.detail.map(str::to_owned),
        }
    }

    /// The rules of [`event::Failed`], checked on the borrowed fields.
    pub(super) fn check(&self) -> Result<(), DecodeError> {
        event::rules::failed(self.reason.into_reason(), self.detail).map_err(broken)
    }

    /// Why delivery failed.
    pub(super) fn reason(&self) -> event::FailureReason {
        self.reason.into_reason()
    }

    /// The error detail, borrowed.
    pub(super) fn detail(&self) -> Option<&'a str> {
        self.detail
    }
}

/// [`event::Remote`].
#[derive(Clone, Copy, Serialize, Deserialize)]
struct Remote<'a> {
    kind: RemoteKind,
    #[serde(borrow)]
    task_id: Option<&'a str>,
    #[serde(borrow)]
    context_id: Option<&'a str>,
    /// The state's name in the log, [`TaskState::as_str`]: read back by
    /// [`TaskState::from_log`], so a state outside the log's vocabulary stays
    /// [`TaskState::Other`], as it came.
    #[serde(borrow)]
    state: Option<&'a str>,
}

impl<'a> Remote<'a> {
    fn of(remote: &'a event::Remote) -> Self {
        Remote {
            kind: match remote.kind {
                event::RemoteKind::Message => RemoteKind::Message,
                event::RemoteKind::Task => RemoteKind::Task,
            },
            task_id: remote.task_id.as_deref(),
            context_id: remote.context_id.as_deref(),
            state: remote.state.as_ref().map(TaskState::as_str),
        }
    }

    fn into_remote(self) -> event::Remote {
        event::Remote {
            kind: match self.kind {
                RemoteKind::Message => event::RemoteKind::Message,
                RemoteKind::Task => event::RemoteKind::Task,
            },
            task_id: self.task_id.map(str::to_owned),
            context_id: self.context_id.map(str::to_owned),
            state: self.state.map(TaskState::from_log),
        }
    }
}

/// [`event::RemoteKind`].
#[derive(Clone, Copy, Serialize, Deserialize)]
enum RemoteKind {
    Message,
    Task,
}

/// [`event::FailureReason`], each code with its reason.
#[derive(Clone, Copy, Serialize, Deserialize)]
enum Reason {
    TargetOffline,
    HttpStatus(u16),
    RpcError(i64),
    Rejected,
    BadResponse,
    MarshalError,
    Timeout,
    Interrupted,
}

impl Reason {
    fn of(reason: event::FailureReason) -> Self {
        use event::FailureReason as F;
        match reason {
            F::TargetOffline => Reason::TargetOffline,
            F::HttpStatus(code) => Reason::HttpStatus(code),
            F::RpcError(code) => Reason::RpcError(code),
            F::Rejected => Reason::Rejected,
            F::BadResponse => Reason::BadResponse,
            F::MarshalError => Reason::MarshalError,
            F::Timeout => Reason::Timeout,
            F::Interrupted => Reason::Interrupted,
        }
    }

    fn into_reason(self) -> event::FailureReason {
        use event::FailureReason as F;
        match self {
            Reason::TargetOffline => F::TargetOffline,
            Reason::HttpStatus(code) => F::HttpStatus(code),
            Reason::RpcError(code) => F::RpcError(code),
            Reason::Rejected => F::Rejected,
            Reason::BadResponse => F::BadResponse,
            Reason::MarshalError => F::MarshalError,
            Reason::Timeout => F::Timeout,
            Reason::Interrupted => F::Interrupted,
        }
    }
}

/// A [`Timestamp`] as chrono counts it: whole seconds since the Unix epoch, and
/// nanoseconds past them (from 1e9 up to 2e9 during a leap second). Every instant
/// chrono holds fits, past the year 2262 where `i64` nanoseconds end.
#[derive(Clone, Copy, Serialize, Deserialize)]
pub(super) struct Instant(i64, u32);

impl Instant {
    /// The mirror of `at`.
    pub(super) fn of(at: Timestamp) -> Self {
        let at = at.as_datetime();
        Instant(at.timestamp(), at.timestamp_subsec_nanos())
    }

    /// The instant, if chrono holds it; `field` names it in the error.
    pub(super) fn timestamp(self, field: &str) -> Result<Timestamp, DecodeError> {
        let Instant(secs, nanos) = self;
        DateTime::<Utc>::from_timestamp(secs, nanos)
            .map(Timestamp::from)
            .ok_or_else(|| {
                DecodeError::Body(format!(
                    "`{field}` is not an instant: {secs} s and {nanos} ns"
                ))
            })
    }
}
