//! Events, failure reasons, and the record that carries an event into the log.
//!
//! A delegation's history is a short list of [`Record`]s: one [`Queued`], then at
//! most one outcome, [`Delivered`] or [`Failed`]. The serde form of a record is the
//! portable JSON form of `EVENT-LOG-FORMAT.md`, so the same types read the store's
//! records and an auditor's JSON Lines.
//!
//! One file per idea:
//!
//! - `id`: [`DelegationId`], [`Seq`], [`Attempt`].
//! - `time`: [`Timestamp`].
//! - `kind`: [`Event`] and [`EventKind`], and the field rules every event is
//!   checked against ([`Event::validate`]).
//! - `queued`, `delivered`, `failed`: each event's payload.
//! - `remote`: what an agent answered to a delivered task ([`Remote`], [`TaskState`]).
//! - `reason`: [`FailureReason`], its name in the log, and whether the target may
//!   have the task ([`Received`]).
//! - [`http_status`]: the 2xx rule, written once: what `delivered` carries and a
//!   failure never does.
//! - `limits`: how large a task or a text field may be.
//! - `invalid`: [`InvalidEvent`], the rule an event breaks.
//! - `record`: [`Record`], one event as the log holds it, and its chain hash.
//! - `chain`: [`ChainHash`].
//! - `canonical`: the RFC 8785 bytes a record's chain hash covers.

mod canonical;
mod chain;
mod delivered;
mod failed;
pub mod http_status;
mod id;
mod invalid;
mod kind;
mod limits;
mod queued;
mod reason;
mod record;
mod remote;
mod time;

pub use self::chain::ChainHash;
pub use self::delivered::Delivered;
pub use self::failed::Failed;
pub use self::id::{Attempt, DelegationId, InvalidId, MAX_ID_LEN, Seq};
pub use self::invalid::InvalidEvent;
pub use self::kind::{Event, EventKind};
pub(crate) use self::limits::check_task;
/// The rules of each event, on its fields borrowed (for decoders).
pub(crate) mod rules {
    pub(crate) use super::delivered::validate_fields as delivered;
    pub(crate) use super::failed::validate_fields as failed;
    pub(crate) use super::id::check as id;
    pub(crate) use super::queued::validate_fields as queued;
}
pub(crate) use self::canonical::{Unhashed, UnhashedEvent, to_vec_direct as canonical_direct};
pub use self::limits::{MAX_TASK_BYTES, MAX_TASK_DEPTH, MAX_TEXT_BYTES};
pub use self::queued::Queued;
pub use self::reason::{FailureReason, ReasonCode, Received};
pub use self::record::Record;
pub(crate) use self::record::chain;
pub use self::remote::{Remote, RemoteKind, TaskState};
pub use self::time::{InvalidTimestamp, Timestamp};
