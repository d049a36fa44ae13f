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
        match self.rest.split_at_checked(data.len()) {
            Some((stored, rest)) if same(stored, data) => {
                self.rest = rest;
                Ok(())
            }
            // Postcard has no "differs"; the error is only ever read as "no".
            _ => Err(postcard::Error::SerializeBufferFull),
        }
    }

    fn try_push(&mut self, byte: u8) -> postcard::Result<()> {
        match self.rest.split_first() {
            Some((&stored, rest)) if stored == byte => {
                self.rest = rest;
                Ok(())
            }
            _ => Err(postcard::Error::SerializeBufferFull),
        }
    }

    fn finalize(self) -> postcard::Result<()> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(postcard::Error::SerializeBufferFull)
        }
    }
}

/// Whether two slices of one length hold the same bytes. Postcard writes a
/// field at a time, most of them a few bytes (varints, tags), which a loop
/// compares in fewer steps than a call to `memcmp`; longer ones (texts) take
/// the slice comparison.
fn same(a: &[u8], b: &[u8]) -> bool {
    if a.len() <= 16 {
        a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x == y)
    } else {
        a == b
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

/// A version-2 record read in place ([`read_lent`]): its texts borrowed from the
/// stored bytes, its instants converted, and its task parsed. The hash is the
/// envelope's.
#[derive(Debug)]
pub(crate) struct RecordRef<'a> {
    /// The delegation it names, checked as a [`DelegationId`] is.
    pub(crate) delegation: &'a str,
    /// Its seq.
    pub(crate) seq: u64,
    /// When it was recorded.
    pub(crate) at: Timestamp,
    /// Its chain hash, from the envelope.
    pub(crate) hash: event::ChainHash,
    /// What happened.
    pub(crate) event: EventRef<'a>,
}

/// The event of a [`RecordRef`].
#[derive(Debug)]
pub(crate) enum EventRef<'a> {
    /// A `queued`.
    Queued(QueuedRef<'a>),
    /// A `delivered`, as the body holds it.
    Delivered(Delivered<'a>),
    /// A `failed`, as the body holds it.
    Failed(Failed<'a>),
}

impl EventRef<'_> {
    /// Which kind of event it is.
    pub(crate) fn kind(&self) -> event::EventKind {
        match self {
            EventRef::Queued(_) => event::EventKind::Queued,
            EventRef::Delivered(_) => event::EventKind::Delivered,
            EventRef::Failed(_) => event::EventKind::Failed,
        }
    }
}

impl RecordRef<'_> {
    /// The chain hash of this record after `previous`, as
    /// [`Record::chain_hash`] computes it for the same record; `None` where
    /// its canonical bytes need the generic canonicalizer (a seq, attempt or
    /// code beyond 2^53), which only the owned record can give.
    pub(crate) fn chain_hash(&self, previous: &event::ChainHash) -> Option<event::ChainHash> {
        let remote;
        let fields = match &self.event {
            EventRef::Queued(queued) => event::UnhashedEvent::Queued {
                source: queued.source,
                target: queued.target,
                task: queued.task.as_ref(),
                retry_of: queued.retry_of,
                attempt: queued.attempt,
                not_before: queued.not_before,
            },
            EventRef::Delivered(delivered) => {
                remote = delivered.remote();
                event::UnhashedEvent::Delivered {
                    http_status: delivered.http_status(),
                    remote: remote.as_ref(),
                }
            }
            EventRef::Failed(failed) => event::UnhashedEvent::Failed {
                reason: failed.reason(),
                detail: failed.detail(),
            },
        };
        let canonical = event::canonical_direct(&event::Unhashed {
            delegation: self.delegation,
            seq: self.seq,
            at: self.at,
            event: fields,
        })?;
        Some(event::chain(previous, &canonical))
    }
}

/// [`event::Queued`], its texts borrowed.
#[derive(Debug)]
pub(crate) struct QueuedRef<'a> {
    pub(crate) source: &'a str,
    pub(crate) target: &'a str,
    /// The task, parsed from its stored text; never `null`.
    pub(crate) task: Option<serde_json::Value>,
    /// For a retry, the id it retries, checked as a [`DelegationId`] is.
    pub(crate) retry_of: Option<&'a str>,
    pub(crate) attempt: Option<u64>,
    pub(crate) not_before: Option<Timestamp>,
}

/// Reads a version-2 body in place, exactly as strictly as [`read`]: `Some`
/// exactly where [`read`] gives a record, and then the same record, its texts
/// borrowed (the task is parsed, as [`read`] parses it). Where it gives
/// `None`, [`read`] says why. The hash is left as the all-zero hash, for the
/// envelope to fill in.
pub(super) fn read_lent(bytes: &[u8]) -> Option<RecordRef<'_>> {
    let mirror: Body<'_> = postcard::from_bytes(bytes).ok()?;
    check_id("delegation", mirror.delegation).ok()?;
    let at = mirror.at.timestamp("at").ok()?;
    let (event, not_before) = match mirror.event {
        Event::Queued(queued) => {
            let task = match queued.task {
                Some(text) => Some(serde_json::from_str::<serde_json::Value>(text).ok()?),
                None => None,
            };
            if let Some(text) = queued.retry_of {
                check_id("retry_of", text).ok()?;
            }
            let not_before = match queued.not_before {
                Some(at) => Some(at.timestamp("not_before").ok()?),
                None => None,
            };
            event::rules::queued(
                queued.source,
                queued.target,
                queued.retry_of.is_some(),
                queued.attempt,
                task.as_ref(),
            )
            .ok()?;
            // The one byte form of the task: the text `read` re-encodes it to
            // (`task_text`), which a `null` never has.
            if let (Some(text), Some(task)) = (queued.task, &task)
                && (task.is_null() || !writes_as(task, text))
            {
                return None;
            }
            let queued = QueuedRef {
                source: queued.source,
                target: queued.target,
                task,
                retry_of: queued.retry_of,
                attempt: queued.attempt,
                not_before,
            };
            (EventRef::Queued(queued), not_before)
        }
        Event::Delivered(delivered) => {
            delivered.check().ok()?;
            (EventRef::Delivered(delivered), None)
        }
        Event::Failed(failed) => {
            failed.check().ok()?;
            (EventRef::Failed(failed), None)
        }
    };
    // The byte form, as `read` checks it: the mirror of the record converted
    // (its instants back from chrono's; the remote's state and the reason are
    // their own mirrors again, by `TaskState::from_log` and `Reason::of`).
    let canonical = Body {
        delegation: mirror.delegation,
        seq: mirror.seq,
        at: Instant::of(at),
        event: match (&event, mirror.event) {
            (EventRef::Queued(_), Event::Queued(queued)) => Event::Queued(Queued {
                not_before: not_before.map(Instant::of),
                ..queued
            }),
            (_, other) => other,
        },
    };
    if !encodes_to(&canonical, bytes) {
        return None;
    }
    Some(RecordRef {
        delegation: mirror.delegation,
        seq: mirror.seq,
        at,
        hash: event::ChainHash([0; 32]),
        event,
    })
}

/// Whether `task` is written by serde_json as exactly `text` (as
/// `serde_json::to_string` writes it), compared as it is written, with nothing
/// allocated.
fn writes_as(task: &serde_json::Value, text: &str) -> bool {
    let mut compare = CompareText {
        rest: text.as_bytes(),
    };
    serde_json::to_writer(&mut compare, task).is_ok() && compare.rest.is_empty()
}

/// An output that compares what is written with `rest` and consumes it, failing
/// at the first byte that differs.
struct CompareText<'a> {
    rest: &'a [u8],
}

impl std::io::Write for CompareText<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self.rest.strip_prefix(buf) {
            Some(rest) => {
                self.rest = rest;
                Ok(buf.len())
            }
            None => Err(std::io::ErrorKind::InvalidData.into()),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
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
#[derive(Clone, Copy, Serialize, Deserialize)]
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
#[derive(Clone, Copy, Serialize, Deserialize)]
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
#[derive(Clone, Copy, Serialize, Deserialize)]
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
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub(crate) struct Delivered<'a> {
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
    pub(crate) fn into_event(self) -> event::Delivered {
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
    pub(crate) fn http_status(&self) -> Option<u16> {
        self.http_status
    }

    /// What the agent answered, owned.
    pub(crate) fn remote(&self) -> Option<event::Remote> {
        self.remote.map(Remote::into_remote)
    }
}

/// [`event::Failed`].
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub(crate) struct Failed<'a> {
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
    pub(crate) fn into_event(self) -> event::Failed {
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
    pub(crate) fn reason(&self) -> event::FailureReason {
        self.reason.into_reason()
    }

    /// The error detail, borrowed.
    pub(crate) fn detail(&self) -> Option<&'a str> {
        self.detail
    }
}

/// [`event::Remote`].
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
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
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
enum RemoteKind {
    Message,
    Task,
}

/// [`event::FailureReason`], each code with its reason.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
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
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
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
